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
    methods = _check(model, rel=1e-13 if ops.OPS[fn].analytic else 1e-9)
    assert set(methods.values()) == {"Richardson" if not ops.OPS[fn].analytic else "complex step"}


@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.parametrize("fn", BINARY)
def test_every_binary_function(fn, seed):
    model = _model(f"{fn}(w * x + c, 0.5 * x + 0.2) + {fn}(1.9 - x, w * x)", 0.3, 1.5, seed=seed)
    _check(model, rel=1e-13 if ops.OPS[fn].analytic else 1e-9)


@pytest.mark.parametrize("fn", sorted(f for f in UNARY if ops.OPS[f].analytic))
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


# --- the one evaluator of lines ----------------------------------------------


def _unit(model: gc.Model, name: str, i: int) -> dict[str, np.ndarray]:
    """The direction e_i (flat element i of ``name``), as a one-row direction set."""
    out = {n: np.zeros((1,) + p.shape) for n, p in model.params.items()}
    out[name].reshape(-1)[i] = 1.0
    return out


@pytest.mark.parametrize("path", EXAMPLES, ids=[p.stem for p in EXAMPLES])
def test_element_lines_and_unit_directions_evaluate_alike(path):
    """Incremental (element) and plain (direction) evaluation give the same losses along e_i, real or complex t."""
    model = gc.load(path)
    point = model.param_values()
    for name, p in model.params.items():
        k = p.value.size
        line = np.tile(np.arange(k), 2)
        for t in (np.concatenate([np.full(k, 1e-3), np.full(k, -0.25)]), 1j * np.full(2 * k, 1e-20)):
            got = finite_diff.evaluate(model, point, finite_diff.Lines.elements(model, name), line, t, "float64")
            dirs = {n: np.concatenate([_unit(model, name, i)[n] for i in range(k)]) for n in model.params}
            want = finite_diff.evaluate(model, point, finite_diff.Lines.along(dirs), line, t, "float64")
            assert got.shape == want.shape == (2 * k, model.n_samples if model.data else 1)
            np.testing.assert_allclose(got.real, want.real, rtol=1e-12, atol=1e-12 * np.max(np.abs(want.real)))
            np.testing.assert_allclose(got.imag, want.imag, rtol=1e-12, atol=1e-300)


def test_reduced_along_is_the_reduced_loss_at_the_moved_point():
    model = gc.load(EXAMPLES[[p.stem for p in EXAMPLES].index("mlp")])
    point = model.param_values()
    name = next(iter(model.params))
    lines = finite_diff.Lines.elements(model, name)
    got = finite_diff.reduced_along(model, point, lines, np.array([0, 3]), np.array([0.5, -0.125]), "float64")
    for m, (i, t) in enumerate([(0, 0.5), (3, -0.125)]):
        moved = {k: np.array(v, dtype=float) for k, v in point.items()}
        moved[name].reshape(-1)[i] += t
        assert got[m] == pytest.approx(float(finite_diff.reduced(model, moved, "float64")), rel=1e-13)


def test_chunked_evaluation_gives_the_same_gradients(monkeypatch):
    """Bounding the values held at once (CHUNK_VALUES) changes nothing but memory, for both kinds of line."""
    model = gc.Model.from_dict(
        {
            "params": {"W": (np.arange(16.0).reshape(4, 4) / 20).tolist()},
            "data": {"x": [[1.0, 0.5, -1.0, 2.0]] * 3},
            "model": {"loss": "sum(abs((W @ W) @ x - 1))"},
        }
    )
    point = model.param_values()
    vs = {"W": np.random.default_rng(0).standard_normal((5, 4, 4))}
    whole = finite_diff.gradients(model, point), finite_diff.directional(model, point, vs)
    monkeypatch.setattr(finite_diff.lines, "CHUNK_VALUES", 10)
    chunked = finite_diff.gradients(model, point), finite_diff.directional(model, point, vs)
    np.testing.assert_allclose(chunked[0].values["W"], whole[0].values["W"], rtol=1e-12)
    np.testing.assert_allclose(chunked[1][0], whole[1][0], rtol=1e-12)
    assert chunked[1][2] == whole[1][2] == "Richardson"


def test_steps_stay_inside_the_domain_one_sided_at_an_edge(monkeypatch):
    model = gc.Model.from_dict(
        {
            "params": {"s": {"value": [1e-9, 0.5, 2.0 - 1e-9], "domain": [0.0, 2.0]}},
            "model": {"loss": "sum(exp(s) * s)"},
        }
    )
    point = model.param_values()
    start = finite_diff.start_steps(model, point, "s", "float64")
    assert start.one_sided.tolist() == [True, False, True]
    assert start.side.tolist() == [1.0, 1.0, -1.0]  # into the roomier side
    p = point["s"]
    assert np.all(p + np.where(start.one_sided, start.side, 1.0) * start.h0 <= 2.0)
    assert np.all(p - np.where(start.one_sided, 0.0, start.h0) >= 0.0)
    monkeypatch.setattr(finite_diff, "analytic", lambda model: False)
    exact = np.exp(p) * (1 + p)
    fd = finite_diff.gradients(model, point)
    assert fd.info["method"]["s"] == "Richardson"
    assert np.all(np.abs(fd.values["s"] - exact) <= fd.errors["s"])
    np.testing.assert_allclose(fd.values["s"], exact, rtol=1e-8)


def test_steps_start_below_a_nearby_kink_for_elements_and_directions():
    # abs(w - 0.3) at w = 0.3 + 1e-4: the kink is 1e-4 away, the base step about 0.012.
    model = gc.Model.from_dict({"params": {"w": 0.3 + 1e-4}, "model": {"loss": "abs(w - 0.3) * exp(w)"}})
    point = model.param_values()
    start = finite_diff.start_steps(model, point, "w", "float64")
    assert 0 < float(start.h0[0]) < 1e-4 and not start.crowded.any()
    along = finite_diff.start(model, point, finite_diff.Lines.along({"w": np.array([1.0, -0.5])}), "float64")
    assert np.all((along.h0 > 0) & (along.h0 * np.array([1.0, 0.5]) < 1e-4))
    exact = float(np.exp(point["w"]) * (1 + 1e-4))
    fd = finite_diff.gradients(model, point)
    assert float(fd.values["w"]) == pytest.approx(exact, rel=1e-9)
    value, _err, method = finite_diff.directional(model, point, {"w": np.array([1.0, -0.5])})
    assert method == "Richardson"
    np.testing.assert_allclose(value, [exact, -0.5 * exact], rtol=1e-9)


@pytest.mark.slow
def test_one_sided_on_a_large_parameter():
    """One-sided derivatives of every element are lines too (no dense (4k, k) offsets): a 20000-element tensor."""
    n = 20_000
    model = gc.Model.from_dict(
        {"params": {"w": np.linspace(-1, 1, n).round(3).tolist()}, "model": {"loss": "sum(relu(w))"}}
    )
    left, right, err = finite_diff.one_sided(model, model.param_values(), "w")
    w = model.param_values()["w"]
    np.testing.assert_allclose(right, (w >= 0).astype(float), atol=1e-6)
    np.testing.assert_allclose(left, (w > 0).astype(float), atol=1e-6)
    assert np.all(err < 1e-4)  # rounding: 16 eps |loss| / h with |loss| about 5000
