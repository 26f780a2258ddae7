"""Incremental evaluation of one-element perturbations equals the plain batched evaluation."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings

import gradcheck as gc
from gradcheck import perturb
from gradcheck import strategies as gst
from gradcheck.sources import finite_diff

EXAMPLES = sorted((Path(__file__).resolve().parents[1] / "examples").glob("*.yaml"))


def plain(model, point, name, idx, vals, dtype):
    """Every perturbed copy of the parameter written out and the whole model evaluated per row."""
    shape = model.params[name].shape
    block = np.tile(np.asarray(point[name], dtype=vals.dtype).reshape(-1), (idx.size, 1))
    block[np.arange(idx.size), idx] = vals
    block = block.reshape(((idx.size, 1) if model.data else (idx.size,)) + shape)
    others = {k: np.asarray(v, dtype=np.dtype(dtype)) for k, v in point.items() if k != name}
    f = finite_diff._per_sample(model, {**others, name: block}, dtype)
    return np.broadcast_to(f, (idx.size, model.n_samples)) if model.data else np.broadcast_to(f, (idx.size,))


def assert_same(model, dtype="float64", step=1e-3, complex_step=False):
    point = {k: np.asarray(p.value, dtype=np.dtype(dtype)).astype(np.float64) for k, p in model.params.items()}
    params = {k: np.asarray(v, dtype=np.dtype(dtype)) for k, v in point.items()}
    for name, p in model.params.items():
        k = p.value.size
        idx = np.concatenate([np.arange(k), np.arange(k)])
        signs = np.concatenate([np.ones(k), -np.ones(k)])
        delta = 1j * 1e-20 * signs if complex_step else step * signs
        work = np.dtype(np.complex128) if complex_step else np.dtype(dtype)
        vals = (point[name].reshape(-1)[idx] + delta).astype(work)
        got = perturb.per_sample(model, params, name, idx, vals, dtype)
        got = np.broadcast_to(got, (idx.size, model.n_samples)) if model.data else np.broadcast_to(got, (idx.size,))
        want = plain(model, point, name, idx, vals, dtype)
        rtol = 1e-5 if dtype == "float32" else 1e-12
        np.testing.assert_allclose(got.real, want.real, rtol=rtol, atol=rtol * np.max(np.abs(want.real)), err_msg=name)
        if complex_step:
            np.testing.assert_allclose(got.imag, want.imag, rtol=1e-12, atol=1e-300, err_msg=name)


@pytest.mark.parametrize("path", EXAMPLES, ids=[p.stem for p in EXAMPLES])
@pytest.mark.parametrize("mode", ["float64", "float32", "complex step"])
def test_examples(path, mode):
    model = gc.load(path)
    if mode == "complex step":
        if not finite_diff.analytic(model):
            pytest.skip("the complex step needs an analytic loss")
        assert_same(model, complex_step=True)
    else:
        assert_same(model, dtype=mode)


@pytest.mark.parametrize(
    "loss",
    [
        "sum(W @ x) + dot(x, W.T @ y) + dot(v, W @ x)",  # matrix @ vector, transpose, dot
        "sum(x @ W.T) * mean(v**2)",  # vector @ matrix
        "W[1, 2] * v[0] + sum(W[0]) - v[-1]",  # indexing
        "sum(softmax(W @ x)) + logsumexp(v) + norm(W[1])",  # no rule: plain fallback
        "sum((W @ W.T) @ y) + sum(s * v)",  # matrix-matrix, scalar broadcast: fallback
        "max(v[0], v[1]) + sum(relu(W @ x - 0.1))",
    ],
)
def test_structural_rules_and_fallbacks(loss):
    model = gc.Model.from_dict(
        {
            "params": {"W": [[0.1, -0.2, 0.3], [0.4, 0.5, -0.6]], "v": [0.3, -0.7], "s": 1.5},
            "data": {"x": [[1.0, 2.0, -1.0], [0.5, 0.0, 2.0]], "y": [[0.5, -0.5], [1.0, 2.0]]},
            "model": {"loss": loss},
        }
    )
    assert_same(model)
    assert_same(model, dtype="float32")


def test_fallback_in_chunks_when_too_dense():
    model = gc.Model.from_dict(
        {
            "params": {"W": np.ones((4, 4)).tolist()},
            "data": {"x": [[1.0] * 4] * 3},
            "model": {"loss": "sum((W @ W) @ x)"},
        }
    )
    params = {"W": np.ones((4, 4))}
    idx = np.arange(16)
    with pytest.raises(perturb.TooDense):
        perturb.per_sample(model, params, "W", idx, np.full(16, 2.0), "float64", max_values=10)
    # finite differences fall back to chunks and still agree
    assert gc.check(model).status == "agree"


@settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))
@given(gst.models(max_depth=3, kinks=True))
def test_random_models(spec):
    assert_same(gc.Model.from_dict(spec))
