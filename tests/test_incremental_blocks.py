"""Block values (one slice along one axis changed per row) equal the plain evaluation at the perturbed point."""

from __future__ import annotations

import numpy as np
import pytest

import gradcheck as gc
from gradcheck import incremental, perturb
from gradcheck.expr import infer_shapes, parse
from gradcheck.ops import OPS
from gradcheck.sources.finite_diff import lines


def plain(model, point, name, idx, vals, dtype="float64"):
    """Every perturbed copy of the parameter written out and the whole model evaluated per row."""
    shape = model.params[name].shape
    block = np.tile(np.asarray(point[name], dtype=vals.dtype).reshape(-1), (idx.size, 1))
    block[np.arange(idx.size), idx] = vals
    block = block.reshape(((idx.size, 1) if model.data else (idx.size,)) + shape)
    others = {k: np.asarray(v, dtype=np.dtype(dtype)) for k, v in point.items() if k != name}
    f = lines.per_sample(model, {**others, name: block}, dtype)
    return np.broadcast_to(f, (idx.size, model.n_samples)) if model.data else np.broadcast_to(f, (idx.size,))


def rows(point, name, step):
    """Every element of ``name`` moved by ``+step`` and by ``-step`` (``step`` may be imaginary)."""
    k = point[name].size
    idx = np.concatenate([np.arange(k), np.arange(k)])
    signs = np.concatenate([np.ones(k), -np.ones(k)])
    return idx, point[name].reshape(-1)[idx] + step * signs


def assert_same(model, step=1e-3):
    point = model.param_values()
    for name in model.params:
        idx, vals = rows(point, name, step)
        got = perturb.per_sample(model, point, name, idx, vals, "float64")
        got = np.broadcast_to(got, (idx.size, model.n_samples)) if model.data else np.broadcast_to(got, (idx.size,))
        want = plain(model, point, name, idx, vals)
        scale = np.max(np.abs(want.real))
        np.testing.assert_allclose(got.real, want.real, rtol=1e-12, atol=1e-12 * scale, err_msg=name)
        if np.iscomplexobj(vals):
            np.testing.assert_allclose(got.imag, want.imag, rtol=1e-9, atol=1e-300, err_msg=name)


RNG = np.random.default_rng(11)
SPEC = {
    "params": {
        "W": RNG.normal(size=(3, 4)).tolist(),
        "U": RNG.normal(size=(2, 4)).tolist(),
        "b": RNG.normal(size=4).tolist(),
        "K": RNG.normal(size=(3, 2, 2, 2)).tolist(),
        "c": RNG.normal(size=(3, 1, 1)).tolist(),
        "P": RNG.normal(size=(2, 4, 5)).tolist(),
    },
    "data": {
        "X": RNG.normal(size=(2, 5, 3)).tolist(),
        "y": RNG.normal(size=(2, 5, 4)).tolist(),
        "z": RNG.normal(size=(2, 3)).tolist(),
        "q": RNG.normal(size=(2, 5)).tolist(),
        "x": RNG.normal(size=(2, 2, 4, 5)).tolist(),
        "m": RNG.normal(size=(2, 3, 4)).tolist(),
    },
}

BLOCK_LOSSES = [
    "sum(tanh(X @ W + b) * y)",  # X @ W: a changed column; a lower-rank operand and data gathered; b[j]: a column
    "sum(exp(-(b * X[:, 0:1]) ** 2) + b)",  # a moved vector element against a column: one column of the result
    "sum((W.T @ X.T).T ** 2)",  # W.T @ X.T: a changed row, transposed to a column
    "sum(((X @ W).T @ y) ** 2)",  # a changed row of the left operand: that row of the product
    "sum(y.T @ (X @ W))",  # a changed column of the right operand: that column of the product
    "sum((X @ W) @ b) + sum(U @ (X @ W).T)",  # a changed column on the left, a row on the right: outer products
    "sum(((X @ W) @ U.T) ** 2)",  # a changed column of the left operand times a matrix: an outer product
    "sum(((X @ W).T @ y) * (y.T @ (X @ W)))",  # a changed row times a changed column: densified
    "sum(b @ (X @ W).T) * 0.5",  # a vector times a changed row: every element moves
    "sum((W.T @ X.T) @ q) + sum(q @ (X @ W))",  # a changed row times a vector, a vector times a column: one element
    "sum(tanh(U @ tanh(W.T @ z)) ** 2) + sum(tanh(z @ W) @ U.T)",  # a moved vector element times a matrix
    "(b @ tanh(z @ W)) * sum(q @ X) + dot(W[0], b) * (z @ W[:, 1:4] @ b[0:3])",  # two vectors: a dot product
    "sum(mean(X @ W, axis=0) * b) + sum(sum(tanh(X @ W), axis=1, keepdims=True) * y)",  # reductions over axes
    "mean(sum(exp(X @ W), axis=0, keepdims=True) ** 2) + sum(X @ W, axis=[0, 1])",
    "sum(where(X @ W > 0, X @ W, 0.5 * (X @ W)))",  # a comparison and where, every operand the same block
    "sum(softmax(X @ W, axis=0) * y) + sum(sigmoid(X @ W) * (X @ W))",  # a dense op on a block: densified
    "sum((conv2d(x, K) + c) ** 2) + sum(tanh(conv2d(x, K, padding=1)) * 0.1)",  # the kernel rule's channel block
    "sum(conv2d(x, K, stride=2) * m[0:2, 0:2]) + sum(sin(conv2d(x, K) - m) ** 3)",  # lower-rank data operands
    "sum(cos(conv2d(P, K)) * m)",  # a kernel over a parameter: no sample axis
]


@pytest.mark.parametrize("loss", BLOCK_LOSSES)
@pytest.mark.parametrize("step", [1e-3, 0.7, 1e-20j])
def test_blocks_equal_plain_evaluation(loss, step):
    assert_same(gc.Model.from_dict({**SPEC, "model": {"loss": loss}}), step=step)


@pytest.mark.parametrize(
    "loss",
    [
        "sum(tanh(X @ W) ** 2)",  # parameters only: values without a sample axis
        "sum((X @ W).T @ X)",
        "sum(sum(X @ W, axis=0) * W[0]) + sum(sum(X @ W, axis=1) * X[:, 0]) + sum((W.T @ X.T)[1])",
    ],
)
def test_blocks_without_data(loss):
    spec = {"params": {"W": SPEC["params"]["W"], "X": SPEC["data"]["X"][0]}, "model": {"loss": loss}}
    assert_same(gc.Model.from_dict(spec))
    assert_same(gc.Model.from_dict(spec), step=1e-20j)


KINKED = {
    "params": {"W": (np.round(RNG.normal(size=(3, 4)), 1)).tolist(), "b": [0.1, -0.2, 0.0, 0.3]},
    "data": {"X": np.round(RNG.normal(size=(2, 5, 3)), 1).tolist()},
    "model": {"loss": "sum(relu(X @ W - 0.1 + b) * abs(W.T @ X.T).T)"},
}


@pytest.mark.parametrize("name", ["W", "b"])
@pytest.mark.parametrize("step", [1.0, 0.3, 1e-3])
def test_kink_crossings_through_blocks(name, step):
    # relu and abs of a changed column (row), a bias moving a column: the crossings are those of
    # evaluating every perturbed copy
    model = gc.Model.from_dict(KINKED)
    point = model.param_values()
    idx, vals = rows(point, name, step)
    got = perturb.crossings(model, point, name, idx, vals, "float64")
    shape = model.params[name].shape
    moved = np.tile(point[name].reshape(-1), (idx.size, 1))
    moved[np.arange(idx.size), idx] = vals
    before = lines.kink_sides(model, point, "float64", (2,))
    after = lines.kink_sides(model, {**point, name: moved.reshape((idx.size, 1) + shape)}, "float64", (idx.size, 2))
    want = np.zeros(idx.size, dtype=bool)
    for here, there in zip(after, before):
        want |= ((there != 0) & (here != there)).reshape(idx.size, -1).any(axis=1)
    np.testing.assert_array_equal(got, want)
    if step == 1.0:
        assert want.any()  # the test sees crossings ...
    if step == 1e-3:
        assert not want.all()  # ... and their absence


def _rule(expr, shapes, args, at, idx, vals, ctx):
    node = infer_shapes(parse(expr), shapes)
    op = OPS[node.op]
    per = [shapes[str(a.value)] for a in node.args]
    base = op.numpy(np, list(args), per, **op.bind(node.attrs))
    parts = list(args)
    parts[at] = incremental.Sparse(args[at], per[at], idx, vals)
    return op, node, per, op.incremental(op, node, parts, base, ctx)


@pytest.mark.parametrize(("expr", "at", "axis"), [("X @ W", 1, 1), ("W @ Y", 0, 0)])
def test_matrix_product_rule_gives_one_changed_slice(expr, at, axis):
    # X @ W with W[i, j] moved changes column j; W @ Y changes row i: the block is that slice, and it is
    # the op's own NumPy form evaluated at the perturbed point
    rng = np.random.default_rng(12)
    X, W, Y = rng.normal(size=(3, 5, 4)), rng.normal(size=(4, 6)), rng.normal(size=(3, 6, 2))
    args = [X, W] if at == 1 else [W, Y]
    shapes = {"X": (5, 4), "W": (4, 6), "Y": (6, 2)}
    idx = np.array([0, 7, 23, 13])
    vals = W.reshape(-1)[idx] + np.array([0.5, -2.0, 1e-3, 3.0])
    ctx = incremental.Context(rows=4, samples=True)
    op, node, per, got = _rule(expr, shapes, args, at, idx, vals, ctx)
    assert isinstance(got, incremental.Block) and got.axis == axis
    np.testing.assert_array_equal(got.pos, idx % 6 if axis == 1 else idx // 6)
    dense = incremental.densify(got, ctx)
    for m in range(4):
        moved = W.reshape(-1).copy()
        moved[idx[m]] = vals[m]
        parts = list(args)
        parts[at] = moved.reshape(W.shape)
        np.testing.assert_allclose(dense[m], op.numpy(np, parts, per), rtol=1e-13, atol=1e-13)


def test_densify_block_puts_each_slice_in_its_row():
    # by hand: base (samples, 2, 3), column pos[m] of row m replaced
    base = np.arange(12.0).reshape(2, 2, 3)
    pos = np.array([2, 0, 1])
    vals = np.arange(100.0, 112.0).reshape(3, 2, 2)  # (M, samples, rest)
    block = incremental.Block(base, (2, 3), 1, pos, vals)
    ctx = incremental.Context(rows=3, samples=True)
    got = incremental.densify(block, ctx)
    assert got.shape == (3, 2, 2, 3)
    for m in range(3):
        want = base.copy()
        want[:, :, pos[m]] = vals[m]
        np.testing.assert_array_equal(got[m], want)
    with pytest.raises(perturb.TooDense):
        incremental.densify(block, incremental.Context(rows=3, samples=True, max_values=10))


def test_chunks_of_rows_equal_one_evaluation():
    # more rows than the probe: the rows go in chunks sized by the widest value, each row as in one call
    model = gc.Model.from_dict({**SPEC, "model": {"loss": "sum(softmax((X @ W) @ W.T, axis=-1) * X)"}})
    point = model.param_values()
    idx = np.tile(np.arange(12), 30)
    t = np.repeat(np.linspace(-0.1, 0.1, 30), 12)
    assert idx.size > 2 * lines.PROBE_ROWS
    got = lines.evaluate(model, point, lines.Lines.elements(model, "W"), idx, t, "float64")
    vals = point["W"].reshape(-1)[idx] + t
    want = plain(model, point, "W", idx, vals)
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12 * np.max(np.abs(want)))


@pytest.mark.parametrize("data", [False, True])
def test_chunks_of_a_loss_the_parameter_does_not_reach(data):
    # every row is the unperturbed loss, in every chunk (the rows once came back as one plain value)
    spec = {"params": {"w": [0.5] * 150}, "model": {"loss": "3.0"}}
    if data:
        spec = {**spec, "data": {"x": [1.0, 2.0]}, "model": {"loss": "sum(x) * 2"}}
    model = gc.Model.from_dict(spec)
    point = model.param_values()
    idx = np.tile(np.arange(150), 2)
    got = lines.evaluate(model, point, lines.Lines.elements(model, "w"), idx, np.full(300, 1e-3), "float64")
    want = [[2.0, 4.0]] if data else [[3.0]]
    np.testing.assert_array_equal(got, np.broadcast_to(want, (300, len(want[0]))))
