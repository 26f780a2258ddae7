"""Every entry of the op table through all three sources, against derivatives written by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest

import gradcheck as gc
from gradcheck.ops import FUNCTIONS, OPS


def _sig(x: float) -> float:
    return 1 / (1 + math.exp(-x))


# name -> (points inside the domain, f'(x) written by hand)
UNARY = {
    "exp": ([-1.5, 0.2, 3.0], math.exp),
    "log": ([0.3, 1.0, 7.5], lambda x: 1 / x),
    "log1p": ([-0.5, 1e-3, 4.0], lambda x: 1 / (1 + x)),
    "expm1": ([-2.0, 1e-4, 1.5], math.exp),
    "sqrt": ([0.04, 2.0, 9.0], lambda x: 0.5 / math.sqrt(x)),
    "abs": ([-2.5, 0.7], lambda x: math.copysign(1.0, x)),
    "sin": ([-1.0, 0.5, 2.5], math.cos),
    "cos": ([-1.0, 0.5, 2.5], lambda x: -math.sin(x)),
    "tan": ([-1.0, 0.1, 1.2], lambda x: 1 / math.cos(x) ** 2),
    "asin": ([-0.9, 0.0, 0.5], lambda x: 1 / math.sqrt(1 - x * x)),
    "acos": ([-0.9, 0.0, 0.5], lambda x: -1 / math.sqrt(1 - x * x)),
    "atan": ([-3.0, 0.0, 0.5], lambda x: 1 / (1 + x * x)),
    "sinh": ([-2.0, 0.3, 1.0], math.cosh),
    "cosh": ([-2.0, 0.3, 1.0], math.sinh),
    "tanh": ([-2.0, 0.3, 1.0], lambda x: 1 - math.tanh(x) ** 2),
    "asinh": ([-2.0, 0.3, 10.0], lambda x: 1 / math.sqrt(x * x + 1)),
    "acosh": ([1.2, 3.0, 10.0], lambda x: 1 / math.sqrt(x * x - 1)),
    "atanh": ([-0.9, 0.0, 0.6], lambda x: 1 / (1 - x * x)),
    "sigmoid": ([-4.0, 0.0, 2.5], lambda x: _sig(x) * (1 - _sig(x))),
    "softplus": ([-4.0, 0.0, 2.5], _sig),
    "relu": ([-1.0, 0.5, 3.0], lambda x: 1.0 if x > 0 else 0.0),
    "erf": ([-1.0, 0.0, 0.8], lambda x: 2 / math.sqrt(math.pi) * math.exp(-x * x)),
}


def _grad(report: gc.Report, name: str) -> dict[str, float]:
    g = report.points[0].gradients[name]
    return {src: float(v) for src, v in g.values.items()}


def test_every_function_is_tested_here():
    binary = {"max", "min", "atan2"}
    structural = {"sum", "mean", "var", "dot", "norm", "logsumexp", "softmax", "log_softmax"}
    # tested in tests/test_ops_logic.py
    logic = {"where", "sign", "clamp", "leaky_relu", "elu", "gelu", "silu", "softsign", "square"}
    structure = {"outer", "diag", "trace", "reshape", "flatten", "concat", "stack"}  # tests/test_ops_structure.py
    layers = {"conv1d", "conv2d", "maxpool2d", "avgpool2d"}  # tested in tests/test_ops_layers.py
    backward = {  # tested in tests/test_ops_backward.py
        "conv_transpose1d", "conv_transpose2d", "conv1d_weight", "conv2d_weight", "maxpool2d_backward", "avgpool2d_backward",
    }  # fmt: skip
    helpers = {"expand", "scatter"}  # the vector-Jacobian rules' helpers: tests/test_tensorgrad.py
    assert set(FUNCTIONS) == set(UNARY) | binary | structural | logic | structure | layers | backward | helpers
    assert {n for n, op in OPS.items() if not op.call} == {
        "add",
        "sub",
        "mul",
        "div",
        "pow",
        "neg",
        "matmul",
        "T",
        "index",
        "lt",
        "le",
        "gt",
        "ge",
    }


@pytest.mark.parametrize("name", sorted(UNARY))
def test_unary_function_three_ways(name):
    points, deriv = UNARY[name]
    model = gc.Model.from_dict({"params": {"a": points[0]}, "model": {"loss": f"{name}(a)"}})
    for p in points:
        report = gc.check(model, at={"a": p})
        assert report.status == "agree", report.table()
        values = _grad(report, "a")
        want = deriv(p)
        for src in ("symbolic", "autograd"):
            assert values[src] == pytest.approx(want, rel=1e-12, abs=1e-15), (src, p)
        # Finite differences are within their own error estimate.
        fd_error = float(report.points[0].gradients["a"].fd_error)
        assert abs(values["finite_difference"] - want) <= fd_error + 1e-15, p
        assert fd_error <= 1e-6 * max(1.0, abs(want)), p
        # The exact source matches the hand derivative to float64 rounding.
        assert values["symbolic"] == pytest.approx(want, rel=1e-14, abs=1e-300)


@pytest.mark.parametrize(
    ("expr", "point", "da", "db"),
    [
        ("max(a, b)", (1.0, -2.0), 1.0, 0.0),
        ("min(a, b)", (1.0, -2.0), 0.0, 1.0),
        ("atan2(a, b)", (0.5, 2.0), 2.0 / 4.25, -0.5 / 4.25),
        ("a ** b", (1.5, 2.5), 2.5 * 1.5**1.5, 1.5**2.5 * math.log(1.5)),
        ("a / b", (3.0, -2.0), -0.5, -3.0 / 4.0),
        ("a - b * a", (2.0, 3.0), -2.0, -2.0),
        ("-a**2 + b", (2.0, 3.0), -4.0, 1.0),
    ],
)
def test_binary_three_ways(expr, point, da, db):
    model = gc.Model.from_dict({"params": {"a": point[0], "b": point[1]}, "model": {"loss": expr}})
    report = gc.check(model)
    assert report.status == "agree", report.table()
    for name, want in (("a", da), ("b", db)):
        values = _grad(report, name)
        for src, v in values.items():
            assert v == pytest.approx(want, rel=1e-9, abs=1e-12), (src, name)


V = [0.3, -1.2, 0.7]
C = [0.5, 2.0, -1.0]


def _softmax(v):
    e = [math.exp(x) for x in v]
    s = sum(e)
    return [x / s for x in e]


def _structural_cases():
    s = _softmax(V)
    n = math.sqrt(sum(x * x for x in V))
    c_dot_s = sum(ci * si for ci, si in zip(C, s))
    return [
        ("sum(v * c)", C),
        ("mean(v * c)", [ci / 3 for ci in C]),
        ("dot(v, c)", C),
        ("norm(v)", [x / n for x in V]),
        ("logsumexp(v)", s),
        ("sum(softmax(v) * c)", [si * (ci - c_dot_s) for si, ci in zip(s, C)]),
        ("sum(v**2) / 2", V),
        ("v[1] * 3", [0.0, 3.0, 0.0]),
        ("v[-1]", [0.0, 0.0, 1.0]),
    ]


@pytest.mark.parametrize(("expr", "want"), _structural_cases())
def test_vector_functions_three_ways(expr, want):
    model = gc.Model.from_dict({"params": {"v": V}, "data": {"c": [C]}, "model": {"loss": expr}})
    report = gc.check(model)
    assert report.status == "agree", report.table()
    g = report.points[0].gradients["v"]
    assert g.shape == (3,)
    for src, values in g.values.items():
        np.testing.assert_allclose(values, want, rtol=1e-9, atol=1e-12, err_msg=src)


def test_matmul_and_transpose_three_ways():
    M = [[0.1, -0.2, 0.3], [0.4, 0.5, -0.6]]
    x = [1.0, 2.0, -1.0]
    y = [0.5, -0.5]
    model = gc.Model.from_dict(
        {
            "params": {"M": M},
            "data": {"x": [x], "y": [y]},
            "model": {"r": "M @ x - y", "loss": "dot(r, r) + sum(M.T @ y)"},
        }
    )
    report = gc.check(model)
    assert report.status == "agree", report.table()
    # d/dM of |Mx - y|^2 is 2 (Mx - y) x^T; of sum(M^T y) is y 1^T.
    r = np.array(M) @ np.array(x) - np.array(y)
    want = 2 * np.outer(r, x) + np.outer(y, np.ones(3))
    for src, values in report.points[0].gradients["M"].values.items():
        np.testing.assert_allclose(values, want, rtol=1e-9, atol=1e-12, err_msg=src)


def test_vector_matrix_products():
    model = gc.Model.from_dict(
        {
            "params": {"u": [1.0, -2.0], "M": [[1.0, 2.0, 0.5], [0.0, -1.0, 3.0]]},
            "model": {"loss": "sum(u @ M) + u @ u + M[1, 2] * M[0, 0]"},
        }
    )
    report = gc.check(model)
    assert report.status == "agree", report.table()
    u = report.points[0].gradients["u"].values["symbolic"]
    np.testing.assert_allclose(u, [3.5 + 2.0, 2.0 - 4.0], rtol=1e-15)
    M = report.points[0].gradients["M"].values["symbolic"]
    np.testing.assert_allclose(M, [[1.0 + 3.0, 1.0, 1.0], [-2.0, -2.0, -2.0 + 1.0]], rtol=1e-15)


def test_constants_pi_and_e():
    model = gc.Model.from_dict({"params": {"a": 0.5}, "model": {"loss": "sin(pi * a) * e"}})
    report = gc.check(model)
    assert report.status == "agree"
    assert _grad(report, "a")["symbolic"] == pytest.approx(math.pi * math.cos(math.pi * 0.5) * math.e, abs=1e-15)


def test_docs_table_is_generated_from_the_entries():
    """docs/model-file.md holds exactly ``ops.markdown_table()`` between its markers.

    Regenerate: python -c "import pathlib, gradcheck.ops as o; p = pathlib.Path('docs/model-file.md'); p.write_text(o.replace_table(p.read_text()))"
    """
    from pathlib import Path

    from gradcheck import ops

    text = (Path(__file__).parent.parent / "docs" / "model-file.md").read_text(encoding="utf-8")
    _, _, rest = text.partition(ops.TABLE_BEGIN + "\n")
    table, found, _ = rest.partition(ops.TABLE_END)
    assert found, "markers missing"
    assert table == ops.markdown_table()
    for name in FUNCTIONS:
        assert f"| `{name}(" in table
    assert ops.replace_table(text) == text


def test_every_entry_is_complete():
    from gradcheck import ops

    for name, op in OPS.items():
        assert op.name == name
        for form in (op.numpy, op.torch, op.sympy, op.mpmath, op.shape):
            assert callable(form), name
        assert op.incremental == ops.DENSE or callable(op.incremental), name
        assert op.doc, name
        assert (op.kink is None) == (op.kink_doc == ""), name
        assert op.call or op.symbol, name
        if op.kink is not None:
            assert not op.analytic, name  # a kink is not analytic: no complex step across it
