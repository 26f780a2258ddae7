"""The symbolic source at scale: reverse accumulation over the IR, evaluated in mpmath.

No timed assertions (speed is measured by ``benchmarks/run.py``); these pin
what makes it scale: the tape is linear in the model's size, the compiled
function is cached, and the values are the exact ones.
"""

from __future__ import annotations

import sys
from pathlib import Path

import mpmath
import numpy as np
import pytest
import sympy

import gradcheck as gc
from gradcheck.sources import autograd, symbolic
from gradcheck.sources.symbolic import formulas, numbers, tape

sys.path.insert(0, str(Path(__file__).parent.parent))
from benchmarks.models import mlp, n_params  # noqa: E402

EXAMPLES = sorted((Path(__file__).parent.parent / "examples").glob("*.yaml"))


def test_tape_grows_linearly_with_the_parameters():
    small, large = mlp(100), mlp(400)
    lines_small = len(tape.record(small).lines)
    lines_large = len(tape.record(large).lines)
    ratio = n_params(large) / n_params(small)
    assert lines_large <= 1.2 * ratio * lines_small


def test_compiled_tape_is_cached_on_the_model():
    model = mlp(60)
    symbolic.tape_gradients(model, model.param_values())
    tape = model.cache["symbolic_tape"]
    symbolic.tape_gradients(model, model.param_values())
    assert model.cache["symbolic_tape"] is tape


@pytest.mark.parametrize("path", EXAMPLES, ids=[p.stem for p in EXAMPLES])
def test_tape_agrees_with_the_inlined_formula(path):
    """The tape's values equal the readable per-element formulas, evaluated in mpmath."""
    model = gc.load(path)
    point = model.param_values()
    got = symbolic.gradients(model, point)
    for name, p in model.params.items():
        f = np.asarray(
            symbolic.formula(model, name).tolist() if p.shape else symbolic.formula(model, name), dtype=object
        )
        rows = symbolic.evaluate_exprs(model, f.reshape(-1).tolist(), point)
        with mpmath.workdps(symbolic.DPS):
            cols = [[r[j] for r in rows] for j in range(f.size)]
            if model.reduction == "none":
                want = np.array([[numbers.to_float(v) for v in c] for c in cols]).T.reshape((-1,) + p.shape)
            else:
                want = np.array([numbers.to_float(numbers.reduce_exact(c, model.reduction)) for c in cols]).reshape(
                    p.shape
                )
        np.testing.assert_array_equal(got.values[name], want)


def test_mlp_matches_autograd():
    model = mlp(300)
    point = model.param_values()
    exact = symbolic.gradients(model, point)
    torch_ = autograd.gradients(model, point, "float64")
    for name in model.params:
        np.testing.assert_allclose(exact.values[name], torch_.values[name], rtol=1e-12, atol=1e-15)


def test_exact_where_float_cancels():
    # (w + 1e16) - 1e16 is w exactly, but not in float64.
    model = gc.Model.from_dict(
        {"params": {"w": 0.3}, "data": {"x": [1.0, 2.0]}, "model": {"loss": "x * ((w + 1e16) - 1e16)**2"}}
    )
    exact = symbolic.gradients(model, model.param_values())
    assert float(exact.values["w"]) == pytest.approx(2 * 0.3 * 1.5, rel=1e-15)


def test_undefined_sample_does_not_poison_the_others():
    model = gc.Model.from_dict(
        {"params": {"w": 1.0}, "data": {"x": [0.0, 2.0]}, "model": {"loss": "log(w * x)"}, "reduction": "none"}
    )
    g = symbolic.gradients(model, model.param_values())
    assert not np.isfinite(g.values["w"][0])
    assert g.values["w"][1] == 1.0


def test_piecewise_functions_evaluate_per_sample():
    model = gc.Model.from_dict(
        {
            "params": {"w": 0.5},
            "data": {"x": [-1.0, 0.0, 2.0]},
            "model": {"loss": "relu(w * x) + abs(w - x) + max(w, x)"},
        }
    )
    g = symbolic.gradients(model, model.param_values())
    # relu': 0, 1/2 (Heaviside(0)), 1 -> x * that = 0, 0, 2; abs': sign(w - x) = 1, 1, -1; max': 1, 1, 0
    assert float(g.values["w"]) == pytest.approx((0 + 0 + 2 + 1 + 1 - 1 + 1 + 1 + 0) / 3, rel=1e-15)


def test_formulas_stay_readable():
    model = gc.load(EXAMPLES[[p.stem for p in EXAMPLES].index("linear")])
    assert str(model.gradient_formula("w")) == "2*x*(b + w*x - y)"
    assert isinstance(model.gradient_formula("b"), sympy.Expr)


def test_source_imports_neither_torch_nor_finite_differences():
    for path in Path(symbolic.__file__).parent.glob("*.py"):
        text = path.read_text()
        assert "import torch" not in text and "finite_diff" not in text, path


def test_big_model_formulas_use_the_entries():
    """A scalar parameter of a big model does not inline the whole loss."""
    model = mlp(1000)
    assert symbolic.formula_in_entries(model)
    assert str(model.gradient_formula("b2")) == "2*(-y + y_pred)"
    assert str(model.gradient_formula("w2")[0]) == "2*h[0]*(-y + y_pred)"
    # the report's formulas are the tensor forms (Model.gradient_expression), for every param
    report = gc.check(model)
    assert set(report.formulas) == set(model.params)
    y, y_pred = sympy.symbols("y y_pred")
    assert sympy.sympify(report.formulas["b2"]) - 2 * (y_pred - y) == 0


def test_small_model_formulas_stay_inlined():
    model = gc.load(EXAMPLES[[p.stem for p in EXAMPLES].index("linear")])
    assert not symbolic.formula_in_entries(model)
    assert not any("entries as symbols" in note for note in gc.check(model).notes)


@pytest.mark.parametrize("hidden", [3, 12])
def test_entry_formulas_evaluate_to_the_gradient(hidden, monkeypatch):
    """The chain-rule form, with the entries' values substituted, is the exact derivative."""
    from benchmarks.models import mlp_spec

    monkeypatch.setattr(formulas, "MAX_INLINED_SIZE", 0)  # the chain-rule form even for this small model
    model = gc.Model.from_dict(mlp_spec(hidden, inputs=2, samples=1))
    assert symbolic.formula_in_entries(model)
    point = model.param_values()
    exact = symbolic.gradients(model, point)
    x, y = model.data["x"][0], float(model.data["y"][0])
    h = np.tanh(point["W1"] @ x + point["b1"])
    y_pred = float(point["w2"] @ h + point["b2"])
    subs = {sympy.Symbol("y"): y, sympy.Symbol("y_pred"): y_pred}
    subs.update({sympy.Symbol(f"h[{i}]"): h[i] for i in range(hidden)})
    subs.update({sympy.Symbol(f"x[{i}]"): x[i] for i in range(2)})
    subs.update({sympy.Symbol(f"w2[{i}]"): point["w2"][i] for i in range(hidden)})
    for name in ("b1", "w2", "W1"):
        f = np.asarray(model.gradient_formula(name).tolist(), dtype=object)
        got = np.vectorize(lambda e: float(e.xreplace(subs)))(f)
        np.testing.assert_allclose(got, exact.values[name], rtol=1e-12)


@pytest.mark.parametrize("reduction", ["none", "sum"])
def test_wide_sums_are_exact(reduction):
    """A layer's wide sums (evaluated as exact integer dot products) equal the gradient in exact fractions.

    The inputs cancel (1e16 and -1e16 beside small values) and span exponents from 1e-200
    to 1e16, so any rounding before the last step would show; the exact gradient is
    ``2 * (W @ x)_i * x_j`` per sample, in ``fractions.Fraction`` from the float64 inputs.
    """
    from fractions import Fraction

    rng = np.random.default_rng(11)
    width = 24  # more than codegen.WIDE terms per sum
    W = rng.normal(size=(2, width))
    x = rng.normal(size=(3, width))
    x[0, :2] = [1e16, -1e16]
    x[1, 3] = 1e-200
    x[2, :] *= 2.0 ** rng.integers(-60, 60, size=width)
    model = gc.Model.from_dict(
        {
            "params": {"W": W.tolist()},
            "data": {"x": x.tolist()},
            "model": {"loss": "sum((W @ x)**2)"},
            "reduction": reduction,
        }
    )
    got = symbolic.gradients(model, model.param_values()).values["W"]
    per_sample = []
    for s in range(3):
        xs = [Fraction(float(v)) for v in x[s]]
        h = [sum(Fraction(float(W[i, j])) * xs[j] for j in range(width)) for i in range(2)]
        per_sample.append([[2 * h[i] * xs[j] for j in range(width)] for i in range(2)])
    if reduction == "none":
        want = np.array([[[float(v) for v in row] for row in g] for g in per_sample])
    else:
        want = np.array([[float(sum(g[i][j] for g in per_sample)) for j in range(width)] for i in range(2)])
    np.testing.assert_array_equal(got, want)
