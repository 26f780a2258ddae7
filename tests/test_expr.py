"""The expression language: parsing, precedence, shapes, and what it refuses."""

from __future__ import annotations

import pytest

from gradcheck.errors import ModelError
from gradcheck.expr import MAX_DEPTH, infer_shapes, parse, unparse


@pytest.mark.parametrize(
    ("text", "tree"),
    [
        ("x * w + b", "add(mul(x, w), b)"),
        ("-x**2", "neg(pow(x, 2))"),
        ("2**-1", "pow(2, neg(1))"),
        ("a**b**c", "pow(a, pow(b, c))"),
        ("a - b - c", "sub(sub(a, b), c)"),
        ("a / b * c", "mul(div(a, b), c)"),
        ("W @ x + b", "add(matmul(W, x), b)"),
        ("M.T[0, 1]", "index(T(M))[0, 1]"),
        ("max(a, b)", "max(a, b)"),
        ("exp(-(x - 1.5e-3))", "exp(neg(sub(x, 1.5e-3)))"),
        ("+a", "a"),
    ],
)
def test_precedence_follows_python(text, tree):
    def show(n):
        if n.op in ("num", "name"):
            return n.text or str(n.value)
        inner = f"{n.op}({', '.join(show(a) for a in n.args)})"
        return inner + (f"[{', '.join(map(str, n.value))}]" if n.op == "index" else "")

    assert show(parse(text)) == tree


@pytest.mark.parametrize(
    "text", ["x * w + b", "-x**2", "(a - b) * (c + d)", "a - (b - c)", "exp(W @ x).T[1]", "(-a)**2"]
)
def test_unparse_round_trips(text):
    assert unparse(parse(unparse(parse(text)))) == unparse(parse(text))


@pytest.mark.parametrize(
    ("text", "message", "offset"),
    [
        ("x +", "expected a number, a name or '\\(', found the end", 3),
        ("x * (w + b", "expected '\\)'", 10),
        ("foo(x)", "unknown function 'foo'", 0),
        ("sinn(x)", "did you mean 'sin'", 0),
        ("max(x, x, x)", "max\\(\\) takes 1 or 2 arguments, got 3", 0),
        ("atan2(x)", "atan2\\(\\) takes 2 arguments, got 1", 0),
        ("x.real", "attribute 'real' is not allowed", 2),
        ("x[i]", "index must be an integer constant", 2),
        ("x == 1", "'==' is not part of the model language", 2),
        ("'a'", "strings are not allowed", 0),
        ("lambda: 1", "unexpected ':'|unexpected character ':'", 6),
        ("1x", "bad number", 0),
        ("", "empty expression", None),
    ],
)
def test_syntax_errors_name_the_position(text, message, offset):
    with pytest.raises(ModelError, match=message) as info:
        parse(text)
    assert info.value.offset == offset
    if offset is not None:
        caret_line = str(info.value).splitlines()[-1]
        assert caret_line.index("^") - 4 == offset


def test_nesting_limit():
    parse("(" * (MAX_DEPTH - 1) + "x" + ")" * (MAX_DEPTH - 1))
    with pytest.raises(ModelError, match="nesting deeper than"):
        parse("(" * (MAX_DEPTH + 1) + "x" + ")" * (MAX_DEPTH + 1))
    with pytest.raises(ModelError, match="nesting deeper than"):
        parse("-" * (MAX_DEPTH + 5) + "x")


def test_dunder_names_are_refused():
    with pytest.raises(ModelError, match="names may not start with '__'|not allowed"):
        parse("__class__")
    with pytest.raises(ModelError, match="unknown function '__import__'"):
        parse("__import__(os)")


@pytest.mark.parametrize(
    ("text", "shape"),
    [
        ("W @ x", (2,)),
        ("x @ W.T", (2,)),
        ("W.T @ W", (3, 3)),
        ("x @ x", ()),
        ("W * x", (2, 3)),
        ("sum(W) + s", ()),
        ("softmax(W @ x)", (2,)),
        ("W[1]", (3,)),
        ("W[1, -1]", ()),
        ("x + s", (3,)),
    ],
)
def test_shapes(text, shape):
    shapes = {"W": (2, 3), "x": (3,), "s": ()}
    assert infer_shapes(parse(text), shapes).shape == shape


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("W @ W", "matching inner sizes.*3 != 2"),
        ("W + y", "do not broadcast"),
        ("dot(x, y)", "dot needs two vectors of one length"),
        ("W[2]", "index 2 is out of range"),
        ("s[0]", "1 indices into a value of shape \\[\\]"),
        ("softmax(s)", "needs a vector"),
    ],
)
def test_shape_errors(text, message):
    shapes = {"W": (2, 3), "x": (3,), "y": (2,), "s": ()}
    with pytest.raises(ModelError, match=message):
        infer_shapes(parse(text), shapes, text)


# --- keyword arguments (attributes) ------------------------------------------
# No built-in function takes attributes yet: a test-local op entry exercises the mechanism.


@pytest.fixture
def scaled():
    """``scaled(x, k=1.0, flip=False, axes=None)``: ``k * x`` (``-k * x`` with flip), added for one test."""
    from gradcheck import ops

    def form(x, k, flip, axes):
        return -k * x if flip else k * x

    op = ops.Op(
        "scaled",
        1,
        "elementwise",
        lambda N, x, **a: form(x, **a),
        lambda T, x, **a: form(x, **a),
        lambda S, x, **a: form(x, **a),
        lambda M, x, **a: form(x, **{**a, "k": M.mpf(a["k"])}),
        lambda *shapes, **a: ops.broadcast(*shapes),
        "k times x",
        incremental=ops.OPS["exp"].incremental,
        attrs=(
            ops.Attr("k", 1.0, ("float",)),
            ops.Attr("flip", False, ("bool",)),
            ops.Attr("axes", None, ("int", "ints")),
        ),
        builtin=False,
    )
    ops.OPS["scaled"] = ops.FUNCTIONS["scaled"] = op
    yield op
    del ops.OPS["scaled"], ops.FUNCTIONS["scaled"]


@pytest.mark.parametrize(
    ("text", "attrs", "shown"),
    [
        ("scaled(x)", (), "scaled(x)"),
        ("scaled(x, k=2)", (("k", 2.0),), "scaled(x, k=2.0)"),
        ("scaled(x,k=-1.5e-3)", (("k", -1.5e-3),), "scaled(x, k=-0.0015)"),
        ("scaled(x, flip=True, k=3)", (("flip", True), ("k", 3.0)), "scaled(x, flip=True, k=3.0)"),
        ("scaled(x, axes=[2, -1, 0])", (("axes", (2, -1, 0)),), "scaled(x, axes=[2, -1, 0])"),
        ("scaled(x, axes=-1)", (("axes", -1),), "scaled(x, axes=-1)"),
    ],
)
def test_keyword_arguments_are_stored_and_printed(scaled, text, attrs, shown):
    node = parse(text)
    assert node.op == "scaled"
    assert node.attrs == attrs
    assert unparse(node) == shown
    assert parse(unparse(node)).attrs == attrs


@pytest.mark.parametrize(
    ("text", "message", "offset"),
    [
        (
            "scaled(x, kk=2)",
            r"scaled\(\) got an unknown keyword argument 'kk' — did you mean 'k'\? scaled\(\) takes k=, flip=, axes=",
            10,
        ),
        ("scaled(x, zzz=2)", r"unknown keyword argument 'zzz' — scaled\(\) takes k=, flip=, axes=", 10),
        ("scaled(x, flip=2)", r"scaled\(\): flip= takes True or False, got 2", 15),
        ("scaled(x, k=[1, 2])", r"k= takes a number, got \[1, 2\]", 12),
        ("scaled(x, k=True)", r"k= takes a number, got True", 12),
        ("scaled(x, axes=1.5)", r"axes= takes an integer or a list of integers, got 1.5", 15),
        ("scaled(x, k=x)", r"a keyword argument must be a constant", 12),
        ("scaled(x, k=1, k=2)", r"scaled\(\) got k= twice", 15),
        ("scaled(k=1, x)", r"a positional argument follows a keyword argument", 12),
        ("exp(x, k=1)", r"exp\(\) got an unknown keyword argument 'k' — exp\(\) takes no keyword arguments", 7),
    ],
)
def test_keyword_errors_name_the_position(scaled, text, message, offset):
    with pytest.raises(ModelError, match=message) as info:
        parse(text)
    assert info.value.offset == offset


def test_keyword_attributes_reach_every_source(scaled):
    import numpy as np

    import gradcheck as gc
    from gradcheck.sources.exact import per_sample_losses

    model = gc.Model.from_dict(
        {
            "params": {"w": [0.5, -2.0]},
            "data": {"x": [1.0, 3.0]},
            "model": {"loss": "sum(scaled(w * x, k=2.5, flip=True))"},
        }
    )
    report = gc.check(model)
    assert report.status == "agree", report.table()
    for src, values in report.points[0].gradients["w"].values.items():
        np.testing.assert_allclose(values, [-2.5 * 2.0, -2.5 * 2.0], rtol=1e-12, err_msg=src)
    np.testing.assert_allclose(per_sample_losses(model, model.param_values()), [3.75, 11.25], rtol=1e-15)


def test_equals_signs_outside_calls_are_refused():
    with pytest.raises(ModelError, match="unexpected '='") as info:
        parse("x = 1")
    assert info.value.offset == 2
