"""The verdict rule (gradcheck.compare) on its own, then end to end on cases that test it."""

from __future__ import annotations

import math

import numpy as np
import pytest

import gradcheck as gc
from gradcheck.compare import STATUSES, Tolerance, judge, worst

TOL = Tolerance(rtol=1e-6, atol=1e-9)


def test_statuses_are_ordered_and_worst_wins():
    assert STATUSES == ("agree", "kink", "undefined", "mismatch")
    assert worst([]) == "agree"
    assert worst(["agree", "kink"]) == "kink"
    assert worst(["kink", "mismatch", "undefined"]) == "mismatch"


def test_defaults_depend_on_dtype_and_can_be_overridden():
    assert Tolerance.for_dtype("float64") == Tolerance(1e-6, 1e-9)
    assert Tolerance.for_dtype("float32").rtol > Tolerance.for_dtype("float64").rtol
    assert Tolerance.for_dtype("float32", rtol=0.5).rtol == 0.5


def test_agree_within_tolerance():
    v = judge(
        {"symbolic": 2.0, "autograd": 2.0 + 1e-7, "finite_difference": 2.0 - 1e-7}, scale=2.0, fd_error=0.0, tol=TOL
    )
    assert (v.status, v.odd_one_out) == ("agree", None)


def test_fd_error_widens_only_the_finite_difference_allowance():
    values = {"symbolic": 1.0, "autograd": 1.0, "finite_difference": 1.001}
    assert judge(values, scale=1.0, fd_error=2e-3, tol=TOL).status == "agree"
    v = judge({**values, "autograd": 1.001}, scale=1.0, fd_error=2e-3, tol=TOL)
    assert (v.status, v.odd_one_out) == ("mismatch", "autograd")


def test_the_odd_one_out_is_named_when_the_others_agree():
    v = judge(
        {"symbolic": -9.0, "autograd": -9.0, "finite_difference": -9.0, "expected": -4.0},
        scale=9.0,
        fd_error=1e-10,
        tol=TOL,
    )
    assert (v.status, v.odd_one_out) == ("mismatch", "expected")
    assert "expected = -4" in v.note


def test_symbolic_is_never_outvoted():
    # autograd and finite differences agree with each other, not with the exact value.
    v = judge({"symbolic": 1.0, "autograd": 0.5, "finite_difference": 0.5}, scale=1.0, fd_error=1e-9, tol=TOL)
    assert v.status == "mismatch"
    assert v.odd_one_out is None
    assert "exact" in v.note and "agree with each other" in v.note


def test_non_finite_float_values_with_a_finite_exact_value():
    v = judge({"symbolic": 1.0, "autograd": math.nan, "finite_difference": math.nan}, scale=1.0, fd_error=0.0, tol=TOL)
    assert v.status == "mismatch" and v.odd_one_out is None
    assert "overflow" in v.note


def test_undefined_when_the_exact_value_is_not_finite():
    v = judge({"symbolic": math.inf, "autograd": math.inf, "finite_difference": 1e12}, scale=0.0, fd_error=0.0, tol=TOL)
    assert v.status == "undefined"
    v = judge(
        {"symbolic": 0.0, "autograd": 0.0, "finite_difference": 0.0},
        scale=0.0,
        fd_error=0.0,
        tol=TOL,
        exact_loss_finite=False,
    )
    assert v.status == "undefined"


def test_kink_accepts_any_value_between_the_one_sided_derivatives():
    values = {"symbolic": -1.0, "autograd": 0.0, "finite_difference": -1.0}
    v = judge(values, scale=2.0, fd_error=1e-9, tol=TOL, kink=(-2.0, 0.0, "relu at its kink"))
    assert (v.status, v.note) == ("kink", "relu at its kink")
    v = judge({**values, "expected": 3.0}, scale=2.0, fd_error=1e-9, tol=TOL, kink=(-2.0, 0.0, "relu at its kink"))
    assert (v.status, v.odd_one_out) == ("mismatch", "expected")


# --- end to end ---------------------------------------------------------------


def _only(report: gc.Report, name: str = "w"):
    return report.points[0].gradients[name]


def test_overflow_the_exact_value_stays_exact():
    # exp(800) overflows float64: autograd gives nan, finite differences nan; d/dw = 1 exactly.
    model = gc.Model.from_dict({"params": {"w": 800.0}, "model": {"loss": "log(1 + exp(w))"}})
    g = _only(gc.check(model))
    assert float(g.values["symbolic"]) == 1.0
    assert not math.isfinite(float(g.values["autograd"]))
    assert (g.status, g.odd_one_out) == ("mismatch", None)
    assert "symbolic value 1 is exact" in g.note
    # The stable form of the same function agrees everywhere.
    stable = gc.Model.from_dict({"params": {"w": 800.0}, "model": {"loss": "softplus(w)"}})
    assert gc.check(stable).status == "agree"


def test_cancellation_the_exact_value_is_not_outvoted():
    # (1 - cos w) / w**2 at w = 1e-8: float64 computes 1 - cos(w) = 0, and autograd's
    # backward sin(w)/w**2 - 2(1 - cos w)/w**3 = 1e8, while the exact slope is about -w/12.
    model = gc.Model.from_dict({"params": {"w": 1e-8}, "model": {"loss": "(1 - cos(w)) / w**2"}})
    g = _only(gc.check(model))
    assert float(g.values["symbolic"]) == pytest.approx(-1e-8 / 12, rel=1e-12)
    assert float(g.values["autograd"]) == pytest.approx(1e8, rel=1e-6)
    assert g.status == "mismatch"
    assert g.odd_one_out != "symbolic"
    assert "autograd" in g.note and "exact" in g.note


def test_loss_of_exact_value_at_huge_magnitudes():
    # The symbolic loss is evaluated in 40 digits: 1e20 + w - 1e20 is w exactly.
    model = gc.Model.from_dict({"params": {"w": 0.3}, "model": {"loss": "(1e20 + w - 1e20) * w"}})
    report = gc.check(model)
    assert report.points[0].loss == pytest.approx(0.09, rel=1e-15)
    assert float(_only(report).values["symbolic"]) == pytest.approx(0.6, rel=1e-15)


def test_float32_model_that_is_right_passes():
    # torch.autograd.gradcheck fails every float32 function with its defaults; this must not.
    model = gc.load("examples/mlp.yaml")
    report = gc.check(model, dtype="float32")
    assert report.status == "agree", report.table()
    assert report.dtype == "float32"


def test_float32_wrong_gradient_is_caught():
    model = gc.load("examples/expected_wrong.yaml")
    report = gc.check(model, dtype="float32")
    assert report.status == "mismatch"
    assert _only(report).odd_one_out == "expected"


def test_float32_autograd_error_is_real_but_tolerated():
    model = gc.load("examples/logistic.yaml")
    report = gc.check(model, dtype="float32")
    g = _only(report)
    err = np.max(np.abs(g.values["autograd"] - g.values["symbolic"]))
    assert 0 < err < 1e-4  # float32 rounding is visible, and within the float32 tolerance
    assert report.status == "agree"


@pytest.mark.parametrize(
    ("loss", "params", "function"),
    [
        ("relu(w - 1)**1 * 3 + w", {"w": 1.0}, "relu"),
        ("abs(w)", {"w": 0.0}, "abs"),
        ("max(w, b) + w", {"w": 2.0, "b": 2.0}, "max"),
        ("min(w, 2*b)", {"w": 2.0, "b": 1.0}, "min"),
    ],
)
def test_kinks_are_found_and_explained(loss, params, function):
    model = gc.Model.from_dict({"params": params, "model": {"loss": loss}})
    report = gc.check(model)
    assert report.status == "kink", report.table()
    assert report.ok
    assert not gc.check(model, strict=True).ok
    g = _only(report)
    assert function in g.note and "left derivative" in g.note
    assert "torch" in g.note and "SymPy" in g.note and "central difference" in g.note


def test_smooth_point_of_a_kinked_function_is_not_a_kink():
    # relu(w)**2 has equal one-sided derivatives (0) at w = 0.
    model = gc.Model.from_dict({"params": {"w": 0.0}, "model": {"loss": "relu(w)**2"}})
    assert gc.check(model).status == "agree"


def test_undefined_where_the_derivative_is_infinite():
    model = gc.Model.from_dict({"params": {"w": 0.0}, "model": {"loss": "sqrt(w**2 + w)"}})
    report = gc.check(model)
    assert report.status == "undefined"
    assert not report.ok


def test_undefined_where_the_loss_is_not_finite():
    model = gc.Model.from_dict({"params": {"w": 0.0}, "model": {"loss": "log(w) * w"}})
    assert gc.check(model).status == "undefined"


@pytest.mark.parametrize(
    "spec",
    [
        {"params": {"w": 2.0}, "model": {"loss": "1/(w - w)"}},  # SymPy folds this to zoo
        {"params": {"w": 2.0}, "model": {"loss": "log(w*0) + w"}},
        {"params": {"w": 2.0}, "data": {"x": [1.0, 2.0]}, "model": {"loss": "w*x/(x - x)"}},
    ],
)
def test_expressions_sympy_folds_to_infinity_are_undefined(spec):
    report = gc.check(gc.Model.from_dict(spec))
    assert report.status == "undefined"
    assert "loss is not finite" in _only(report).note
