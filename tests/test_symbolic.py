"""The symbolic source's formulas: plain symbols, and nothing quadratic in a layer's fan-in.

(The tape at scale and its values: ``test_symbolic_scale.py``.)
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import sympy
from sympy.core.cache import clear_cache

import gradcheck as gc
from gradcheck.sources import symbolic
from gradcheck.sources.symbolic import tape

sys.path.insert(0, str(Path(__file__).parent.parent))
from benchmarks.models import mlp_spec  # noqa: E402

LINEAR = Path(__file__).parent.parent / "examples" / "linear.yaml"


def test_formula_is_in_plain_symbols():
    f = gc.load(LINEAR).gradient_formula("w")
    x, w, b, y = sympy.symbols("x w b y")
    assert f.free_symbols == {x, w, b, y}
    assert f.subs(w, 1) != f
    assert sympy.simplify(f - 2 * x * (x * w + b - y)) == 0


def test_tensor_elements_are_plain_symbols_named_by_index():
    model = gc.Model.from_dict(
        {
            "params": {"W": [[1.0, 2.0], [3.0, 4.0]]},
            "data": {"x": [[1.0, 0.5], [2.0, -1.0]]},
            "model": {"loss": "sum((W @ x)**2)"},
        }
    )
    f = model.gradient_formula("W")
    assert isinstance(f, sympy.Array) and f.shape == (2, 2)
    w01, x0, x1 = sympy.Symbol("W[0, 1]"), sympy.Symbol("x[0]"), sympy.Symbol("x[1]")
    w00 = sympy.Symbol("W[0, 0]")
    assert sympy.simplify(f[0, 1] - 2 * x1 * (w00 * x0 + w01 * x1)) == 0
    assert all(not s.assumptions0.get("real") for s in f[0, 1].free_symbols)


def test_report_formulas_parse_in_plain_symbols():
    report = gc.check(gc.load(LINEAR))
    x, w, b, y = sympy.symbols("x w b y")
    text = report.to_dict()["formulas"]["w"]
    assert sympy.simplify(sympy.sympify(text, locals={"x": x, "w": w, "b": b, "y": y}) - 2 * x * (x * w + b - y)) == 0


def _terms_flattened(monkeypatch: pytest.MonkeyPatch, work) -> int:
    """How many terms the sums SymPy builds while ``work()`` runs hold in all (one Add per sum: linear)."""
    seen = [0]
    original = sympy.Add.flatten.__func__

    def counting(cls, seq):
        out = original(cls, seq)
        seen[0] += len(out[0])
        return out

    clear_cache()
    with monkeypatch.context() as m:
        m.setattr(sympy.Add, "flatten", classmethod(counting))
        work()
    clear_cache()
    return seen[0]


def test_wide_layer_costs_no_more_than_its_parameters(monkeypatch):
    """Recording the tape and the report's formulas grow with the parameters, not with fan-in squared."""
    counts, sizes = [], []
    for inputs in (100, 400):
        model = gc.Model.from_dict(mlp_spec(2, inputs, samples=2))
        sizes.append(sum(p.value.size for p in model.params.values()))
        work = [lambda: tape.record(model), lambda: model.gradient_formula("b1"), lambda: model.gradient_formula("w2")]
        counts.append(sum(_terms_flattened(monkeypatch, w) for w in work))
    # np.matmul's pairwise sums built about inputs**2 / 2 terms per hidden unit (80000 here)
    assert counts[1] <= 1.5 * (sizes[1] / sizes[0]) * counts[0]
    assert counts[1] <= 2 * sizes[1]


def test_wide_layer_formula_is_the_chain_rule_over_entries():
    model = gc.Model.from_dict(mlp_spec(3, 200, samples=2))
    assert symbolic.formula_in_entries(model)
    w2, h, y, y_pred = sympy.Symbol("w2[1]"), sympy.Symbol("h[1]"), sympy.Symbol("y"), sympy.Symbol("y_pred")
    assert sympy.simplify(model.gradient_formula("b1")[1] - 2 * w2 * (1 - h**2) * (y_pred - y)) == 0
    x7 = sympy.Symbol("x[7]")
    assert sympy.simplify(model.gradient_formula("W1")[1, 7] - 2 * w2 * x7 * (1 - h**2) * (y_pred - y)) == 0


@pytest.mark.parametrize("inputs", [6, 40])  # 40: wide sums, evaluated as one dot product per sample
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_layer_weights_match_autograd_for_every_reduction(reduction, inputs):
    """A weight's derivative (adjoint times a data element) is reduced over samples exactly, per sample for none."""
    from gradcheck.sources import autograd

    model = gc.Model.from_dict({**mlp_spec(4, inputs, samples=5), "reduction": reduction})
    point = model.param_values()
    exact = symbolic.gradients(model, point)
    torch_ = autograd.gradients(model, point, "float64")
    for name in model.params:
        assert exact.values[name].shape == torch_.values[name].shape
        np.testing.assert_allclose(exact.values[name], torch_.values[name], rtol=1e-12, atol=1e-15)
    scale = exact.info["scale"]["W1"]
    per_sample = torch_.values["W1"] if reduction == "none" else None
    if per_sample is not None:
        np.testing.assert_allclose(scale, np.abs(per_sample), rtol=1e-12, atol=1e-15)
    else:
        # mean (sum) of |per-sample gradient| bounds |mean (sum) of the per-sample gradients|
        assert np.all(scale >= np.abs(exact.values["W1"]) * (1 - 1e-12))
        assert np.all(scale > 0)


def test_local_partials_reuse_a_shape_for_other_symbols():
    """Derivatives cached by an expression's shape hold for every element of that shape, whatever its names."""
    from gradcheck.sources.symbolic.local import partials

    a, b, c, t = sympy.symbols("a b c t", real=True)
    z1, z0 = sympy.symbols("z1 z0", real=True)  # names that SymPy orders the other way round
    first = partials(sympy.tanh(a + 2 * b) * c, {a, b, c})
    again = partials(sympy.tanh(z1 + 2 * z0) * c, {z1, z0})
    assert sympy.simplify(first[a] - sympy.diff(sympy.tanh(a + 2 * b) * c, a)) == 0
    assert sympy.simplify(again[z1] - (1 - sympy.tanh(z1 + 2 * z0) ** 2) * c) == 0
    assert sympy.simplify(again[z0] - 2 * (1 - sympy.tanh(z1 + 2 * z0) ** 2) * c) == 0
    # with the tape's name for the expression, the derivative that repeats it is written in that name
    named = partials(sympy.tanh(z1 + 2 * z0), {z1, z0}, t)
    assert named == {z1: 1 - t**2, z0: 2 - 2 * t**2}


def test_tape_sums_of_products_as_they_stand():
    """w*w and w*x built without SymPy's canonical form still differentiate right: 2*w and x."""
    from gradcheck.sources.symbolic.local import partials

    w, x, y = sympy.symbols("w x y", real=True)
    e = sympy.Add._from_args((sympy.Mul._from_args((w, w)), sympy.Mul._from_args((w, x)), y))
    assert partials(e, {w, y}) == {w: 2 * w + x, y: 1}
    assert tape.total([tape.times(w, x), tape.times(y, 1), tape.times(x, 3)]) == w * x + y + 3 * x
