"""Comparisons, where, sign, clamp and the new activations through all three sources (SPEC section 3.1).

Every expected value is computed here by hand (a formula) or by torch in float64.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

import gradcheck as gc
from gradcheck import interp, perturb
from gradcheck.expr import parse

SOURCES = ("symbolic", "autograd", "finite_difference")


def _check(loss, params, data=None):
    spec = {"params": params, "model": {"loss": loss}}
    if data is not None:
        spec["data"] = data
    return gc.check(gc.Model.from_dict(spec))


def _grad(report, name):
    g = report.points[0].gradients[name]
    return {src: np.asarray(g.values[src], dtype=float) for src in SOURCES}, g


def _assert_three_ways(report, name, want):
    """Symbolic and autograd equal ``want``; finite differences within their own error estimate."""
    values, g = _grad(report, name)
    want = np.asarray(want, dtype=float)
    for src in ("symbolic", "autograd"):
        np.testing.assert_allclose(values[src], want, rtol=1e-12, atol=1e-14, err_msg=src)
    err = np.asarray(g.fd_error, dtype=float)
    assert np.all(np.abs(values["finite_difference"] - want) <= err + 1e-14), (values, want, err)


# --- comparisons ---------------------------------------------------------------

COMPARE = {"<": lambda a, b: a < b, "<=": lambda a, b: a <= b, ">": lambda a, b: a > b, ">=": lambda a, b: a >= b}


@pytest.mark.parametrize("symbol", sorted(COMPARE))
@pytest.mark.parametrize(("a", "b"), [(1.5, -0.5), (-2.0, 0.25)])
def test_comparison_is_an_indicator_with_derivative_zero(symbol, a, b):
    report = _check(f"(a {symbol} b) * a * b", {"a": a, "b": b})
    assert report.status == "agree", report.table()
    holds = 1.0 if COMPARE[symbol](a, b) else 0.0
    assert float(report.points[0].loss) == pytest.approx(holds * a * b, rel=1e-15)
    _assert_three_ways(report, "a", holds * b)
    _assert_three_ways(report, "b", holds * a)


@pytest.mark.parametrize("symbol", sorted(COMPARE))
def test_comparison_at_a_tie_is_a_kink(symbol):
    # d/db of (a OP b) * a * b at a = b = 2: the indicator jumps, one side is of order 1/h
    report = _check(f"(a {symbol} b) * a * b", {"a": 2.0, "b": 2.0})
    statuses = {name: g.status for name, g in report.points[0].gradients.items()}
    assert "kink" in statuses.values(), report.table()
    assert "mismatch" not in statuses.values(), report.table()
    kinked = [g for g in report.points[0].gradients.values() if g.status == "kink"]
    assert f"a {symbol} b" in kinked[0].note
    assert "a comparison carries no gradient" in kinked[0].note
    # torch and SymPy both give the indicator's value times the other factor (derivative of the jump: 0)
    holds = 1.0 if COMPARE[symbol](2.0, 2.0) else 0.0
    for name in ("a", "b"):
        values, _ = _grad(report, name)
        assert values["symbolic"] == pytest.approx(2.0 * holds, abs=1e-15)
        assert values["autograd"] == pytest.approx(2.0 * holds, abs=1e-15)


def test_comparison_binds_looser_than_arithmetic():
    # a + 1 > 2 * b is (a + 1) > (2 * b), as in Python
    report = _check("(a + 1 > 2 * b) * a", {"a": 1.0, "b": 0.75})
    assert float(report.points[0].loss) == pytest.approx(1.0)  # 2 > 1.5
    report = _check("(a + 1 > 2 * b) * a", {"a": 1.0, "b": 1.25})
    assert float(report.points[0].loss) == pytest.approx(0.0)  # 2 > 2.5 is false


# --- where -----------------------------------------------------------------------


def test_where_log_is_clean_where_the_branch_is_not_taken(tmp_path):
    path = tmp_path / "where_log.yaml"
    path.write_text(
        "params:\n  w: 1.5\ndata:\n  x: [-1.0, 2.0, 0.5, -3.0, 4.0]\nmodel:\n  loss: where(x > 0, log(w * x), 0)\n"
    )
    report = gc.check(gc.load(path))
    assert report.status == "agree", report.table()
    xs = np.array([-1.0, 2.0, 0.5, -3.0, 4.0])
    w = 1.5
    # loss per sample: log(w x) where x > 0, else 0; d/dw = 1/w where x > 0 (mean over samples)
    want_loss = np.mean(np.where(xs > 0, np.log(w * np.abs(xs)), 0.0))
    assert float(report.points[0].loss) == pytest.approx(want_loss, rel=1e-14)
    _assert_three_ways(report, "w", np.mean(np.where(xs > 0, 1 / w, 0.0)))


def test_where_on_a_parameter_outside_the_log_domain():
    # the param itself is negative: log(x) is nan in NumPy and torch, complex in mpmath, never chosen
    report = _check("where(x > 0, log(x), 0) + 3 * x", {"x": -1.0})
    assert report.status == "agree", report.table()
    assert float(report.points[0].loss) == pytest.approx(-3.0)
    _assert_three_ways(report, "x", 3.0)


def test_where_broadcasts_over_all_three_and_sends_gradient_to_the_taken_branch():
    v = np.array([0.5, -1.0, 2.0])
    mask = [[1.0, 0.0, 1.0], [0.0, 0.0, 1.0]]
    report = _check("sum(where(m, v**2, s * v))", {"v": v.tolist(), "s": 3.0}, {"m": mask})
    assert report.status == "agree", report.table()
    m = np.array(mask)
    # d/dv: 2v where taken, s where not; d/ds: v where not taken; mean over the two samples
    _assert_three_ways(report, "v", np.mean(np.where(m != 0, 2 * v, 3.0), axis=0))
    _assert_three_ways(report, "s", np.mean(np.sum(np.where(m != 0, 0.0, v), axis=1)))


def test_where_kink_is_its_condition():
    # where(a > 1, a**2, a) is continuous at a = 1 with slopes 1 (left) and 2 (right)
    report = _check("where(a > 1, a**2, a) + b", {"a": 1.0, "b": 1.0})
    g = report.points[0].gradients["a"]
    assert g.status == "kink", report.table()
    assert "a > 1" in g.note
    assert "left derivative 1, right derivative 2" in g.note
    # away from the kink: smooth
    for a, want in ((0.5, 1.0), (1.5, 3.0)):
        report = _check("where(a > 1, a**2, a) + b", {"a": a, "b": 1.0})
        assert report.status == "agree", report.table()
        _assert_three_ways(report, "a", want)


# --- sign and clamp ---------------------------------------------------------------


@pytest.mark.parametrize("a", [-0.5, 2.0])
def test_sign(a):
    report = _check("sign(a) * b", {"a": a, "b": 2.0})
    assert report.status == "agree", report.table()
    _assert_three_ways(report, "a", 0.0)
    _assert_three_ways(report, "b", math.copysign(1.0, a))


@pytest.mark.parametrize(
    ("x", "dx", "dlo", "dhi"), [(-2.0, 0.0, 1.0, 0.0), (0.25, 1.0, 0.0, 0.0), (3.0, 0.0, 0.0, 1.0)]
)
def test_clamp_inside_and_outside(x, dx, dlo, dhi):
    report = _check("clamp(x, lo, hi) * 2", {"x": x, "lo": -1.0, "hi": 1.0})
    assert report.status == "agree", report.table()
    assert float(report.points[0].loss) == pytest.approx(2 * min(max(x, -1.0), 1.0))
    _assert_three_ways(report, "x", 2 * dx)
    _assert_three_ways(report, "lo", 2 * dlo)
    _assert_three_ways(report, "hi", 2 * dhi)


@pytest.mark.parametrize("x", [-1.0, 1.0])
def test_clamp_at_either_bound_is_a_kink(x):
    report = _check("clamp(x, -1, 1) * 2", {"x": x})
    g = report.points[0].gradients["x"]
    assert g.status == "kink", report.table()
    assert "clamp(x, -1, 1)" in g.note
    values, _ = _grad(report, "x")
    assert values["autograd"] == pytest.approx(2.0)  # torch: the bound passes the gradient to x
    assert values["symbolic"] == pytest.approx(1.0)  # SymPy: Heaviside(0) = 1/2
    assert values["finite_difference"] == pytest.approx(1.0, abs=1e-6)  # the average of 0 and 2


# --- activations --------------------------------------------------------------------


def _sig(x):
    return 1 / (1 + math.exp(-x))


ACTIVATIONS = {
    # expression of a -> (points, derivative by hand)
    "leaky_relu(a)": ([-2.0, 0.7], lambda x: 1.0 if x > 0 else 0.01),
    "leaky_relu(a, slope=0.2)": ([-2.0, 0.7], lambda x: 1.0 if x > 0 else 0.2),
    "elu(a)": ([-1.5, 0.4], lambda x: 1.0 if x > 0 else math.exp(x)),
    "elu(a, alpha=2.5)": ([-1.5, 0.4], lambda x: 1.0 if x > 0 else 2.5 * math.exp(x)),
    "gelu(a)": (
        [-1.3, 0.0, 2.1],
        lambda x: 0.5 * (1 + math.erf(x / math.sqrt(2))) + x * math.exp(-x * x / 2) / math.sqrt(2 * math.pi),
    ),
    "silu(a)": ([-3.0, 0.0, 1.7], lambda x: _sig(x) * (1 + x * (1 - _sig(x)))),
    "softsign(a)": ([-2.0, 0.0, 0.5], lambda x: 1 / (1 + abs(x)) ** 2),
    "square(a)": ([-1.5, 0.0, 3.0], lambda x: 2 * x),
}


@pytest.mark.parametrize("expr", sorted(ACTIVATIONS))
def test_activation_three_ways(expr):
    points, deriv = ACTIVATIONS[expr]
    for p in points:
        report = _check(expr, {"a": p})
        assert report.status == "agree", report.table()
        _assert_three_ways(report, "a", deriv(p))


@pytest.mark.parametrize("expr", sorted(ACTIVATIONS))
def test_activation_against_torch_float64(expr):
    torch = pytest.importorskip("torch")
    F = torch.nn.functional
    fns = {
        "leaky_relu(a)": F.leaky_relu,
        "leaky_relu(a, slope=0.2)": lambda t: F.leaky_relu(t, 0.2),
        "elu(a)": F.elu,
        "elu(a, alpha=2.5)": lambda t: F.elu(t, 2.5),
        "gelu(a)": F.gelu,
        "silu(a)": F.silu,
        "softsign(a)": F.softsign,
        "square(a)": torch.square,
    }
    v = [-1.7, -0.3, 0.4, 2.2]
    report = _check(f"sum({expr.replace('(a', '(v')} * c)", {"v": v}, {"c": [[1.0, -2.0, 0.5, 3.0]]})
    assert report.status == "agree", report.table()
    t = torch.tensor(v, dtype=torch.float64, requires_grad=True)
    c = torch.tensor([1.0, -2.0, 0.5, 3.0], dtype=torch.float64)
    loss = (fns[expr](t) * c).sum()
    loss.backward()
    assert float(report.points[0].loss) == pytest.approx(float(loss.detach()), rel=1e-13)
    values, _ = _grad(report, "v")
    np.testing.assert_allclose(values["symbolic"], t.grad.numpy(), rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize(
    ("expr", "torch_at_0", "sympy_at_0"),
    [("leaky_relu(a, slope=0.1)", 0.1, 0.55), ("elu(a, alpha=2)", 2.0, 1.5)],
)
def test_activation_kink_at_zero(expr, torch_at_0, sympy_at_0):
    report = _check(f"{expr} + b", {"a": 0.0, "b": 1.0})
    g = report.points[0].gradients["a"]
    assert g.status == "kink", report.table()
    assert expr.split("(")[0] in g.note
    values, _ = _grad(report, "a")
    assert values["autograd"] == pytest.approx(torch_at_0)
    assert values["symbolic"] == pytest.approx(sympy_at_0)


@pytest.mark.parametrize("expr", ["elu(a)", "softsign(a)"])
def test_smooth_at_zero_where_the_first_derivative_is_continuous(expr):
    # elu with alpha = 1 and softsign: both one-sided derivatives are 1 at 0
    report = _check(f"{expr} + b", {"a": 0.0, "b": 1.0})
    assert report.status == "agree", report.table()
    _assert_three_ways(report, "a", 1.0)


# --- finite differences: the elementwise perturbation rule with three operands ----


@pytest.mark.parametrize(
    "loss",
    [
        "sum(where(m, v * w, w ** 2))",
        "sum(clamp(v, w - 1, 0.5 * w))",
        "sum(where(v > w, leaky_relu(v, slope=0.3), elu(w)))",
    ],
)
def test_incremental_perturbation_equals_plain_evaluation(loss):
    model = gc.Model.from_dict(
        {
            "params": {"v": [0.3, -1.2, 2.0], "w": [1.0, -0.5, 0.25]},
            "data": {"m": [[1.0, 0.0, 1.0], [0.0, 1.0, 0.0]]},
            "model": {"loss": loss},
        }
    )
    point = {k: np.asarray(p.value, dtype=np.float64) for k, p in model.params.items()}
    for name in ("v", "w"):
        idx = np.array([0, 1, 2, 0, 1, 2])
        vals = point[name][idx] + np.array([1e-3] * 3 + [-0.7] * 3)
        got = np.asarray(perturb.per_sample(model, point, name, idx, vals, "float64"))
        for row, (i, val) in enumerate(zip(idx, vals)):
            moved = point[name].copy()
            moved[i] = val
            env = {**point, name: moved, **{k: np.asarray(d) for k, d in model.data.items()}}
            want = interp.evaluate(model.entries, env, "numpy", np, until=model.loss)[model.loss]
            np.testing.assert_allclose(got[row], np.broadcast_to(want, np.shape(got[row])), rtol=1e-13, atol=1e-15)


# --- errors -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "match", "fix"),
    [
        ("a == b", "'==' is not part of the model language", r"\(a <= b\) \* \(a >= b\)"),
        ("a != b", "'!=' is not part of the model language", r"1 - \(a <= b\)"),
        ("a < b < c", "chained comparison `a < b < c`", r"\(a < b\) \* \(b < c\)"),
        ("leaky_relu(x, alpha=1)", "leaky_relu\\(\\) got an unknown keyword argument 'alpha'", "takes slope="),
        ("elu(x, slope=1)", "elu\\(\\) got an unknown keyword argument 'slope'", "takes alpha="),
        ("leaky_relu(x, slope=w)", "a keyword argument must be a constant", "write a number"),
        ("leaky_relu(x, slope=[1, 2])", "slope= takes a number", "leaky_relu\\(x, slope=0.01\\)"),
        ("clamp(x, 1)", "clamp\\(\\) takes 3 arguments, got 2", "clamp"),
        ("where(x > 0, x)", "where\\(\\) takes 3 arguments, got 2", "where"),
    ],
)
def test_syntax_errors_name_position_and_fix(text, match, fix):
    with pytest.raises(gc.ModelError, match=match) as info:
        parse(text)
    assert info.value.fix is not None and __import__("re").search(fix, info.value.fix), info.value.fix
    assert "^" in str(info.value)


def test_errors_in_a_model_file_name_file_and_entry(tmp_path):
    path = tmp_path / "eq.yaml"
    path.write_text("params:\n  a: 1.0\n  b: 2.0\nmodel:\n  loss: a == b\n")
    with pytest.raises(gc.ModelError, match="'==' is not part of the model language") as info:
        gc.load(path)
    text = str(info.value)
    assert "eq.yaml" in text and "loss" in text


def test_where_exact_loss_is_finite_where_the_untaken_branch_is_undefined():
    from gradcheck.sources import exact

    xs = [-1.0, 2.0, 0.0, -3.0]
    model = gc.Model.from_dict(
        {"params": {"w": 2.0}, "data": {"x": xs}, "model": {"loss": "where(x > 0, log(w * x), sqrt(-x))"}}
    )
    got = exact.per_sample_losses(model, {})
    want = [math.sqrt(1.0), math.log(4.0), 0.0, math.sqrt(3.0)]
    np.testing.assert_allclose(got, want, rtol=1e-15, atol=0)


def test_sign_at_zero_is_never_a_mismatch():
    # sign jumps at 0: both one-sided differences are of order 1/h; torch and SymPy give 0
    report = _check("sign(a) * b", {"a": 0.0, "b": 2.0})
    assert report.status in ("agree", "kink"), report.table()
    values, _ = _grad(report, "a")
    assert values["symbolic"] == 0.0
    assert values["autograd"] == 0.0
    _assert_three_ways(report, "b", 0.0)


@pytest.mark.parametrize("text", ["(a < b) < c", "a < (b < c)", "(a + 1 > b) * 2", "where(a >= b, a, -b) <= c"])
def test_unparse_of_comparisons_parses_back_to_the_same_tree(text):
    from gradcheck.expr import unparse

    node = parse(text)
    again = parse(unparse(node))
    assert unparse(again) == unparse(node)
    assert [n.op for n in again.walk()] == [n.op for n in node.walk()]
