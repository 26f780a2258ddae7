"""outer, diag, trace, reshape, flatten, concat, stack and slices: three sources against torch float64.

Each case is a model text and the same loss written directly in torch (with
torch's own ``outer``, ``diag``, ``cat``, slicing, ...), one sample at a time;
the gradient torch computes from it is the reference for every source.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import gradcheck as gc
from gradcheck.errors import ModelError
from gradcheck.expr import infer_shapes, parse, unparse

RNG = np.random.default_rng(20261128)


def _values(*shape: int) -> np.ndarray:
    return np.round(RNG.uniform(-1.5, 1.5, size=shape), 3)


T = torch
# name -> (loss text, params, data (per-sample arrays, first axis samples), the loss of one sample in torch)
CASES = {
    "outer": (
        "sum(sin(outer(a, b)) * outer(b, a).T)",
        {"a": _values(3), "b": _values(2)},
        {},
        lambda p, d: (T.sin(T.outer(p["a"], p["b"])) * T.outer(p["b"], p["a"]).T).sum(),
    ),
    "outer_data": (
        "sum(tanh(outer(a, x)) ** 2)",
        {"a": _values(2)},
        {"x": _values(4, 3)},
        lambda p, d: (T.tanh(T.outer(p["a"], d["x"])) ** 2).sum(),
    ),
    "diag_vector": (
        "sum(exp(diag(a)) @ b) + sum(diag(a * a) @ diag(a))",
        {"a": _values(3), "b": _values(3)},
        {},
        lambda p, d: (T.exp(T.diag(p["a"])) @ p["b"]).sum() + (T.diag(p["a"] * p["a"]) @ T.diag(p["a"])).sum(),
    ),
    "diag_matrix": (
        "sum(diag(W) ** 3) + sum(diag(W.T * X))",
        {"W": _values(2, 3)},
        {"X": _values(3, 3, 2)},
        lambda p, d: (T.diagonal(p["W"]) ** 3).sum() + T.diagonal(p["W"].T * d["X"]).sum(),
    ),
    "trace": (
        "trace(W @ W) + trace(sin(W)) * trace(W)",
        {"W": _values(3, 3)},
        {},
        lambda p, d: T.trace(p["W"] @ p["W"]) + T.trace(T.sin(p["W"])) * T.trace(p["W"]),
    ),
    "trace_data": (
        "trace(tanh(W @ X)) ** 2",
        {"W": _values(2, 3)},
        {"X": _values(3, 3, 2)},
        lambda p, d: T.trace(T.tanh(p["W"] @ d["X"])) ** 2,
    ),
    "reshape_rank3": (
        "sum(sin(reshape(R, [3, -1])) @ v) + sum(reshape(R, [12]) ** 2)",
        {"R": _values(2, 3, 2), "v": _values(4)},
        {},
        lambda p, d: (T.sin(p["R"].reshape(3, -1)) @ p["v"]).sum() + (p["R"].reshape(12) ** 2).sum(),
    ),
    "reshape_data": (
        "sum(reshape(x * w, shape=[2, 2]) @ v) + sum(cos(reshape(x, [-1, 1, 2]) * v))",
        {"w": _values(4), "v": _values(2)},
        {"x": _values(3, 4)},
        lambda p, d: ((d["x"] * p["w"]).reshape(2, 2) @ p["v"]).sum() + T.cos(d["x"].reshape(-1, 1, 2) * p["v"]).sum(),
    ),
    "flatten": (
        "sum(flatten(R) * flatten(X)) + dot(flatten(R * R), c) + sum(flatten(s) * 3)",
        {"R": _values(2, 3, 2), "c": _values(12), "s": np.array(0.7)},
        {"X": _values(3, 2, 3, 2)},
        lambda p, d: (
            (p["R"].flatten() * d["X"].flatten()).sum()
            + T.dot((p["R"] * p["R"]).flatten(), p["c"])
            + (p["s"].reshape(1) * 3).sum()
        ),
    ),
    "concat_two": (
        "sum(tanh(concat(a, b)) * concat(b, a))",
        {"a": _values(3), "b": _values(2)},
        {},
        lambda p, d: (T.tanh(T.cat([p["a"], p["b"]])) * T.cat([p["b"], p["a"]])).sum(),
    ),
    "concat_three_negative_axis": (
        "sum(sin(concat(W, U, X, axis=-1)) @ v) + sum(concat(W, U * 2, W, axis=1) ** 2)",
        {"W": _values(2, 3), "U": _values(2, 1), "v": _values(6)},
        {"X": _values(3, 2, 2)},
        lambda p, d: (
            (T.sin(T.cat([p["W"], p["U"], d["X"]], dim=-1)) @ p["v"]).sum()
            + (T.cat([p["W"], p["U"] * 2, p["W"]], dim=1) ** 2).sum()
        ),
    ),
    "concat_rank3_axis0": (
        "sum(concat(R, R * R, axis=-3) * Y)",
        {"R": _values(2, 2, 3)},
        {"Y": _values(2, 4, 2, 3)},
        lambda p, d: (T.cat([p["R"], p["R"] * p["R"]], dim=0) * d["Y"]).sum(),
    ),
    "stack_two": (
        "sum(stack(a, c, axis=-1) @ u) + sum(stack(a, c) ** 3)",
        {"a": _values(3), "c": _values(3), "u": _values(2)},
        {},
        lambda p, d: (T.stack([p["a"], p["c"]], dim=-1) @ p["u"]).sum() + (T.stack([p["a"], p["c"]]) ** 3).sum(),
    ),
    "stack_three_negative_axis_data": (
        "sum(cos(stack(W, X, W * 2, axis=-2)) * Z)",
        {"W": _values(2, 3)},
        {"X": _values(3, 2, 3), "Z": _values(3, 2, 3, 3)},
        lambda p, d: (T.cos(T.stack([p["W"], d["X"], p["W"] * 2], dim=-2)) * d["Z"]).sum(),
    ),
    "stack_scalars": (
        "sum(stack(s, s ** 2, 1, x) * v)",
        {"s": np.array(0.6), "v": _values(4)},
        {"x": _values(3)},
        lambda p, d: (T.stack([p["s"], p["s"] ** 2, T.tensor(1.0, dtype=T.float64), d["x"]]) * p["v"]).sum(),
    ),
    "slices_vector": (
        "sum(v[1:3] ** 2) + v[-1] * sum(v[:2]) + sum(sin(v[::2])) + sum(v[-3:-1] * v[2:])",
        {"v": _values(4)},
        {},
        lambda p, d: (
            (p["v"][1:3] ** 2).sum()
            + p["v"][-1] * p["v"][:2].sum()
            + T.sin(p["v"][::2]).sum()
            + (p["v"][-3:-1] * p["v"][2:]).sum()
        ),
    ),
    "slices_matrix": (
        "sum(M[:2, 0] * M[0:2, 1:][:, 1]) + sum(tanh(M[1:, :2]) ** 2) + M[2, -1]",
        {"M": _values(3, 3)},
        {},
        lambda p, d: (
            (p["M"][:2, 0] * p["M"][0:2, 1:][:, 1]).sum() + (T.tanh(p["M"][1:, :2]) ** 2).sum() + p["M"][2, -1]
        ),
    ),
    "slices_rank3_data": (
        "sum(R[0, 1:, ::2] * x[1:]) + sum(R[:, :, 1] @ y[1:])",
        {"R": _values(2, 3, 3)},
        {"x": _values(3, 3), "y": _values(3, 4)},
        lambda p, d: (p["R"][0, 1:, ::2] * d["x"][1:]).sum() + (p["R"][:, :, 1] @ d["y"][1:]).sum(),
    ),
    "slices_of_data_times_params": (
        "sum((X[:, 1:] @ w) ** 2) + sum(X[-1, :] * w[0])",
        {"w": _values(2)},
        {"X": _values(4, 2, 3)},
        lambda p, d: ((d["X"][:, 1:] @ p["w"]) ** 2).sum() + (d["X"][-1, :] * p["w"][0]).sum(),
    ),
}


def _torch_gradients(case: str) -> dict[str, np.ndarray]:
    """d(sum over samples of the loss)/d(params), by torch float64, one sample at a time."""
    _, params, data, loss = CASES[case]
    p = {k: torch.tensor(v, dtype=torch.float64, requires_grad=True) for k, v in params.items()}
    n = len(next(iter(data.values()))) if data else 1
    total = sum(loss(p, {k: torch.tensor(v[i], dtype=torch.float64) for k, v in data.items()}) for i in range(n))
    grads = torch.autograd.grad(total, list(p.values()))
    return {k: g.numpy() for k, g in zip(p, grads)}


def _model(case: str) -> gc.Model:
    text, params, data, _ = CASES[case]
    spec: dict = {"params": {k: v.tolist() for k, v in params.items()}, "model": {"loss": text}, "reduction": "sum"}
    if data:
        spec["data"] = {k: v.tolist() for k, v in data.items()}
    return gc.Model.from_dict(spec)


@pytest.mark.parametrize("case", sorted(CASES))
def test_three_sources_against_torch(case):
    model = _model(case)
    report = gc.check(model, at={k: v for k, v in CASES[case][1].items()})
    assert report.status == "agree", report.table()
    want = _torch_gradients(case)
    for name, grad in want.items():
        g = report.points[0].gradients[name]
        for src in ("symbolic", "autograd"):
            np.testing.assert_allclose(g.values[src], grad, rtol=1e-12, atol=1e-13, err_msg=f"{src} {name}")
        # finite differences (through the incremental rules) are within their own error estimate
        err = np.abs(np.asarray(g.values["finite_difference"]) - grad)
        assert (err <= np.asarray(g.fd_error) + 1e-12).all(), (name, err, g.fd_error)


def test_every_structure_function_has_a_case():
    used = {n.op for text, *_ in CASES.values() for n in parse(text).walk()}
    assert {"outer", "diag", "trace", "reshape", "flatten", "concat", "stack", "index"} <= used


def test_exact_loss_of_structure_ops():
    """The exact (mpmath) per-sample loss equals the torch float64 loss."""
    for case in ("concat_three_negative_axis", "stack_three_negative_axis_data", "slices_rank3_data", "diag_vector"):
        _, params, data, loss = CASES[case]
        p = {k: torch.tensor(v, dtype=torch.float64) for k, v in params.items()}
        n = len(next(iter(data.values()))) if data else 1
        want = sum(
            float(loss(p, {k: torch.tensor(v[i], dtype=torch.float64) for k, v in data.items()})) for i in range(n)
        )
        assert gc.check(_model(case)).points[0].loss == pytest.approx(want, rel=1e-13)


# --- shapes -----------------------------------------------------------------------

SHAPES = {"v": (4,), "w": (3,), "M": (2, 3), "R": (2, 3, 2), "s": ()}


@pytest.mark.parametrize(
    ("text", "shape"),
    [
        ("outer(v, w)", (4, 3)),
        ("diag(v)", (4, 4)),
        ("diag(M)", (2,)),
        ("trace(M @ M.T)", ()),
        ("reshape(R, [3, 4])", (3, 4)),
        ("reshape(R, [-1])", (12,)),
        ("reshape(R, [2, -1, 2])", (2, 3, 2)),
        ("reshape(s, [1, 1])", (1, 1)),
        ("flatten(R)", (12,)),
        ("flatten(s)", (1,)),
        ("concat(v, w)", (7,)),
        ("concat(M, M, M, axis=-1)", (2, 9)),
        ("concat(R, R, axis=1)", (2, 6, 2)),
        ("stack(v, v, v)", (3, 4)),
        ("stack(M, M, axis=-1)", (2, 3, 2)),
        ("stack(M, M, axis=1)", (2, 2, 3)),
        ("stack(s, s)", (2,)),
        ("v[1:3]", (2,)),
        ("v[:2]", (2,)),
        ("v[1:]", (3,)),
        ("v[-3:-1]", (2,)),
        ("v[::3]", (2,)),
        ("v[1:4:2]", (2,)),
        ("M[:, 0]", (2,)),
        ("M[0:2, 1:]", (2, 2)),
        ("R[1, :, 0]", (3,)),
        ("R[:, 1:2]", (2, 1, 2)),
        ("v[0:4]", (4,)),
        ("v[-4:]", (4,)),
    ],
)
def test_shapes(text, shape):
    assert infer_shapes(parse(text), SHAPES).shape == shape


def _error(text: str, pattern: str) -> ModelError:
    spec = {
        "params": {"v": [1.0, 2.0, 3.0, 4.0], "w": [1.0, 2.0, 3.0], "M": [[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]], "s": 1.0},
        "model": {"loss": text},
    }
    with pytest.raises(ModelError, match=pattern) as info:
        gc.Model.from_dict(spec)
    return info.value


@pytest.mark.parametrize(
    ("text", "offset", "pattern"),
    [
        ("sum(v[1:5])", 5, r"slice \[1:5\]: end 5 is out of range for an axis of size 4 — slice bounds of this axis"),
        ("sum(v[-5:])", 5, r"slice \[-5:\]: start -5 is out of range for an axis of size 4 — slice bounds of"),
        ("sum(v[2:2])", 5, r"slice \[2:2\] of an axis of size 4 is empty — a slice must keep at least one element"),
        ("sum(v[3:1])", 5, r"slice \[3:1\] of an axis of size 4 is empty"),
        ("sum(M[0, 1:, 0])", 5, r"3 indices into a value of shape \[2, 3\] — check the shapes"),
        ("sum(M[:, 3])", 5, r"index 3 is out of range for an axis of size 3 — indices of this axis are -3 to 2"),
        ("sum(outer(v, M))", 4, r"outer needs two vectors, got shapes \[4\] and \[2, 3\] — flatten\(x\) makes"),
        ("trace(v)", 0, r"trace needs a matrix, got shape \[4\] — trace\(M\) sums the diagonal"),
        ("sum(diag(s))", 4, r"diag needs a vector .* got shape \[\] — index or reshape"),
        ("sum(reshape(M, [4, 2]))", 4, r"cannot reshape shape \[2, 3\] \(6 elements\) to \[4, 2\] — the new sizes"),
        ("sum(reshape(M, [-1, 4]))", 4, r"cannot reshape shape \[2, 3\] \(6 elements\) to \[-1, 4\]"),
        ("sum(reshape(M, [-1, -1]))", 4, r"reshape to \[-1, -1\]: more than one size is -1 — give every size but one"),
        ("sum(reshape(M, [0, 6]))", 4, r"reshape to \[0, 6\]: sizes must be positive \(or one -1"),
        ("sum(reshape(M, [-2, -3]))", 4, r"reshape to \[-2, -3\]: sizes must be positive"),
        ("sum(reshape(M))", 4, r"reshape needs the new shape — write reshape\(x, \[2, 3\]\)"),
        ("sum(concat(v, M))", 4, r"concat along axis 0 needs shapes that agree on every other axis, got \[4\] and"),
        (
            "sum(concat(M, M, axis=2))",
            4,
            r"concat: axis=2 is out of range for operands of 2 axes — axis is from -2 to 1",
        ),
        ("sum(concat(s, s))", 4, r"concat needs arrays \(vectors or more\), got shapes \[\] and \[\] — stack\(a, b\)"),
        ("sum(stack(v, w))", 4, r"stack needs operands of one shape, got \[4\] and \[3\] — stack puts equal shapes"),
        ("sum(stack(M, M, axis=-4))", 4, r"stack: axis=-4 is out of range for a result of 3 axes — axis is from -3"),
    ],
)
def test_shape_errors_name_entry_position_and_fix(text, offset, pattern):
    err = _error(text, r"model\.loss: shape error: " + pattern)
    assert err.entry == "model.loss"
    assert err.offset == offset


@pytest.mark.parametrize(
    ("text", "offset", "pattern"),
    [
        ("sum(v[::-1])", 8, r"a slice step must be a positive integer, got -1 — write v\[::2\]; reversing"),
        ("sum(v[1:3:0])", 10, r"a slice step must be a positive integer, got 0"),
        ("sum(v[1:x])", 8, r"an index must be an integer constant — write v\[0\] or M\[1, 2\], or slices"),
        ("sum(v[1.5:])", 6, r"an index must be an integer constant"),
        ("sum(v[1:2:3:4])", 11, r"expected '\]', found ':'"),
        ("sum(v : 2)", 6, r"unexpected character ':'"),
        ("sum(v[])", 6, r"an index must be an integer constant"),
        (
            "sum(concat(v, w, [1, 2]))",
            17,
            r"concat\(\) takes no list as an operand — concat: concat\(a, b, \.\.\., axis=0\)",
        ),
        ("sum(exp([1, 2]))", 8, r"exp\(\) takes no list as an operand — exp: exp\(x\)"),
        ("sum(reshape(M, [6], shape=[6]))", 20, r"reshape\(\) got shape= twice"),
        ("sum(reshape(M, [6.5]))", 16, r"a list holds integer constants — write a list such as \[2, 3\] or \[-1, 3\]"),
        ("sum(reshape(M, shape=[x]))", 22, r"a list holds integer constants"),
        ("sum(reshape([6], M))", 17, r"a positional argument follows a keyword argument"),
        ("sum(concat(v))", 4, r"concat\(\) takes at least 2 arguments, got 1"),
        ("sum(concat(v, w, axis=0.5))", 22, r"concat\(\): axis= takes an integer, got 0\.5"),
    ],
)
def test_syntax_errors_name_position_and_fix(text, offset, pattern):
    err = _error(text, r"model\.loss: " + pattern)
    assert err.offset == offset


# --- unparse ----------------------------------------------------------------------


def _ir(node):
    return (node.op, node.text, node.value, node.attrs, tuple(_ir(a) for a in node.args))


@pytest.mark.parametrize(
    "text",
    [
        "v[1:3]",
        "v[:2] + v[1:]",
        "M[:, 0]",
        "M[0:2, 1:]",
        "R[-1, ::2, 1:2:1]",
        "v[-3:-1]",
        "exp(M)[1:][0, :2].T",
        "reshape(R, [3, -1])",
        "reshape(R, shape=[12])",
        "flatten(R)[2:]",
        "concat(a, b, c, axis=-1)",
        "stack(a, -b, a * b, axis=1)",
        "outer(v, w) @ diag(w)",
        "trace(M @ M.T) ** 2",
        "-v[1:3] ** 2",
    ],
)
def test_unparse_round_trip(text):
    node = parse(text)
    again = parse(unparse(node))
    assert _ir(again) == _ir(node)
    assert unparse(again) == unparse(node)


def test_slices_are_stored_on_the_index_node():
    node = parse("M[0:2, 1:, ::2, -1]")
    assert node.op == "index"
    assert dict(node.attrs)["index"] == ((0, 2, None), (1, None, None), (None, None, 2), -1)
    assert parse("reshape(x, [2, 3])").attrs == parse("reshape(x, shape=[2, 3])").attrs == (("shape", (2, 3)),)


@pytest.mark.parametrize("case", sorted(CASES))
def test_incremental_rules_equal_plain_evaluation(case):
    """Each one-element perturbation carried through the ops (``moves``) equals evaluating the moved point plainly."""
    from gradcheck import perturb
    from gradcheck.sources import finite_diff

    model = _model(case)
    point = {k: np.asarray(v, dtype=np.float64) for k, v in CASES[case][1].items()}
    for name, value in point.items():
        idx = np.concatenate([np.arange(value.size), np.arange(value.size)])
        vals = value.reshape(-1)[idx] + np.repeat([0.25, -0.125], value.size)
        got = perturb.per_sample(model, point, name, idx, vals, "float64")
        for row, (i, v) in enumerate(zip(idx, vals)):
            moved = value.copy().reshape(-1)
            moved[i] = v
            want = finite_diff.losses(model, {**point, name: moved.reshape(value.shape)}, "float64")
            np.testing.assert_allclose(np.broadcast_to(got[row], np.shape(want)), want, rtol=1e-12, atol=1e-12)


# --- slices, fuzzed -----------------------------------------------------------------

_BOUND = st.one_of(st.none(), st.integers(-7, 7))


@settings(max_examples=300, deadline=None)
@given(st.integers(1, 5), _BOUND, _BOUND, st.one_of(st.none(), st.integers(-2, 6)))
def test_slices_fuzzed_against_python(size, start, stop, step):
    """Every slice of a vector: NumPy's elements where the bounds lie inside the axis, else a ModelError."""
    text = (
        f"v[{'' if start is None else start}:{'' if stop is None else stop}"
        + ("" if step is None else f":{step}")
        + "]"
    )
    v = np.arange(1.0, size + 1)
    want = v[slice(start, stop, step)] if step != 0 else v[:0]
    inside = all(b is None or -size <= b <= size for b in (start, stop)) and (step is None or 1 <= step <= size)
    model = {"params": {"v": v.tolist()}, "model": {"loss": f"sum({text} * {text})"}}
    if not inside or want.size == 0:
        with pytest.raises(ModelError, match=r"model\.loss: (shape error: slice|a slice step must be a positive)"):
            gc.Model.from_dict(model)
        return
    node = infer_shapes(parse(text), {"v": (size,)})
    assert node.shape == want.shape
    report = gc.check(gc.Model.from_dict(model))
    assert report.points[0].loss == pytest.approx(float(want @ want), rel=1e-15)
    grad = np.zeros(size)
    np.add.at(grad, np.arange(size)[slice(start, stop, step)], 2 * want)
    for src, values in report.points[0].gradients["v"].values.items():
        np.testing.assert_allclose(values, grad, rtol=1e-9, atol=1e-12, err_msg=src)
