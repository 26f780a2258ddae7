"""Finite differences: last-digit accuracy and error estimates that cover the true error.

The exact values come from the symbolic source (mpmath, 40 digits). Every
elementwise function of the op table is checked at a few points inside its
domain, with the complex step (where it applies) and with Richardson
extrapolation, and so is every example model.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import gradcheck as gc
from gradcheck import ops
from gradcheck.sources import finite_diff, symbolic

EXAMPLES = sorted((Path(__file__).parent.parent / "examples").glob("*.yaml"))

# An argument range inside each function's domain (the loss is f(w * x + c)).
DOMAIN = {"log": (0.2, 3.0), "sqrt": (0.2, 3.0), "log1p": (-0.5, 3.0), "asin": (-0.8, 0.8), "acos": (-0.8, 0.8),
          "atanh": (-0.8, 0.8), "acosh": (1.2, 3.0), "tan": (-1.2, 1.2)}  # fmt: skip
UNARY = sorted(name for name, op in ops.FUNCTIONS.items() if op.kind == "elementwise" and op.arity == 1)
BINARY = sorted(name for name, op in ops.FUNCTIONS.items() if op.kind == "elementwise" and op.arity == 2)


def _model(loss: str, lo: float, hi: float, *, samples: int = 3, seed: int = 0) -> gc.Model:
    rng = np.random.default_rng(seed)
    # w * x + c spans [lo, hi] over w in [0.5, 1] and x in [0, 1].
    return gc.Model.from_dict(
        {
            "params": {"w": float(rng.uniform(0.5, 1.0)), "c": lo},
            "data": {"x": rng.uniform(0.0, (hi - lo) / 1.0, samples).tolist()},
            "model": {"loss": loss},
        }
    )


def _check(model: gc.Model, *, rel: float | None, dtype: str = "float64") -> dict[str, str]:
    point = {k: np.asarray(v, dtype=dtype).astype(np.float64) for k, v in model.param_values().items()}
    exact = symbolic.gradients(model, point)
    fd = finite_diff.gradients(model, point, dtype)
    for name in model.params:
        want, got, err = exact.values[name], fd.values[name], fd.errors[name]
        true = np.abs(got - want)
        assert np.all(np.isfinite(got)), (name, got)
        assert np.all(err >= true), f"{name}: estimate {err} below the true error {true}"
        if rel is not None:
            scale = np.maximum(np.abs(want), exact.info["scale"][name])
            assert np.all(true <= rel * scale), f"{name}: {got} vs exact {want} (error {true})"
    return fd.info["method"]


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("fn", UNARY)
def test_every_unary_function(fn, seed):
    lo, hi = DOMAIN.get(fn, (-1.5, 1.5))
    if fn in ("abs", "relu"):
        lo, hi = 0.3, 2.0  # away from the kink
    model = _model(f"{fn}(w * x + c) * x", lo, hi, seed=seed)
    methods = _check(model, rel=1e-13 if fn not in ops.NOT_ANALYTIC else 1e-9)
    assert set(methods.values()) == {"Richardson" if fn in ops.NOT_ANALYTIC else "complex step"}


@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.parametrize("fn", BINARY)
def test_every_binary_function(fn, seed):
    model = _model(f"{fn}(w * x + c, 0.5 * x + 0.2) + {fn}(1.9 - x, w * x)", 0.3, 1.5, seed=seed)
    _check(model, rel=1e-13 if fn not in ops.NOT_ANALYTIC else 1e-9)


@pytest.mark.parametrize("fn", sorted(set(UNARY) - ops.NOT_ANALYTIC))
def test_richardson_alone_is_accurate_and_its_estimate_covers(fn, monkeypatch):
    monkeypatch.setattr(finite_diff, "analytic", lambda model: False)
    lo, hi = DOMAIN.get(fn, (-1.5, 1.5))
    model = _model(f"{fn}(w * x + c) * x", lo, hi)
    assert set(_check(model, rel=1e-9).values()) == {"Richardson"}


@pytest.mark.parametrize("path", EXAMPLES, ids=[p.stem for p in EXAMPLES])
def test_examples(path):
    model = gc.load(path)
    if model.check.dtype == "float32":
        _check(model, rel=1e-4, dtype="float32")
    elif "kink" in path.stem:
        _check(model, rel=None)  # at the kink: the central difference averages both sides
    else:
        assert set(_check(model, rel=1e-13).values()) == {"complex step"}


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_reductions_and_random_points(reduction):
    spec = gc.load(EXAMPLES[[p.stem for p in EXAMPLES].index("mlp")]).source
    rng = np.random.default_rng(3)
    model = gc.Model.from_dict({**spec, "reduction": reduction})
    for _ in range(3):
        at = {k: v + rng.standard_normal(v.shape) for k, v in model.param_values().items()}
        model2 = gc.Model.from_dict({**spec, "reduction": reduction, "params": {k: v.tolist() for k, v in at.items()}})
        _check(model2, rel=1e-13)


def test_float32_is_evaluated_in_float32():
    model = gc.Model.from_dict({"params": {"w": 0.1}, "data": {"x": [1.0, 2.0]}, "model": {"loss": "exp(w * x)"}})
    fd = finite_diff.gradients(model, model.param_values(), "float32")
    exact = symbolic.gradients(model, model.param_values())
    true = abs(float(fd.values["w"]) - float(exact.values["w"]))
    assert fd.info["method"]["w"] == "Richardson"
    assert true <= float(fd.errors["w"]) <= 1e-3 * abs(float(exact.values["w"]))
    assert true > 1e-12  # float32 rounding shows: it was not evaluated in float64


def test_branch_cut_falls_back_to_richardson():
    # sqrt of a negative number: nan in real arithmetic, so the complex step must not be trusted.
    model = gc.Model.from_dict({"params": {"w": -1.0}, "model": {"loss": "sqrt(w)"}})
    fd = finite_diff.gradients(model, model.param_values())
    assert fd.info["method"]["w"] == "Richardson"
    assert np.isnan(fd.values["w"]) or not np.isfinite(fd.errors["w"])


def test_one_sided_keeps_its_signature():
    model = gc.load(EXAMPLES[[p.stem for p in EXAMPLES].index("relu_kink")])
    left, right, err = finite_diff.one_sided(model, model.param_values(), "w")
    assert left.shape == right.shape == err.shape == model.params["w"].shape
