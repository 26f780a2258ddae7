"""Pooling on a changed channel (a :class:`Block` along the channel axis) and max-pool's kink quantity.

Every result is compared against evaluating each perturbed copy of the parameter plainly
(values) or against the kink sides of those plain evaluations (crossings), and the op's
forms against torch and a hand loop.
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch

import gradcheck as gc
from gradcheck import incremental, perturb
from gradcheck.expr import infer_shapes, parse
from gradcheck.ops import OPS
from gradcheck.sources.finite_diff import lines

RNG = np.random.default_rng(31)
# not rounded: a sum of products that is zero in exact arithmetic may round to either side in any order
SPEC = {
    "params": {
        "K": RNG.normal(size=(3, 2, 2, 2)).tolist(),
        "c": (RNG.normal(size=(3, 1, 1)) * 0.3).tolist(),
        "P": RNG.normal(size=(2, 6, 7)).tolist(),
    },
    "data": {
        "x": RNG.normal(size=(2, 2, 6, 7)).tolist(),
        "m": RNG.normal(size=(2, 3, 2, 3)).tolist(),
    },
}

POOL_LOSSES = [
    "sum((maxpool2d(relu(conv2d(x, K) + c), 2) - m) ** 2)",  # the benchmark's shape: conv, relu, pool
    "sum(maxpool2d(conv2d(x, K, padding=1), 3, stride=2) * 0.5)",  # partial windows left out
    "sum(tanh(maxpool2d(conv2d(x, K) + c, 2, stride=1)))",  # overlapping windows
    "sum(avgpool2d(relu(conv2d(x, K)), size=[2, 3]) ** 2) + sum(maxpool2d(conv2d(x, K), size=[1, 2]))",
    "sum(maxpool2d(abs(conv2d(P, K) - c), 2) * m)",  # a kernel over a parameter: no sample axis
    "sum(relu(sum(maxpool2d(relu(conv2d(x, K) + c), 2), axis=0) - 0.2))",  # channels summed: kinks past the block
]


def moved_copies(point, name, idx, vals):
    """Every perturbed copy of ``name``: ``(M, 1) + shape`` (a sample axis to broadcast)."""
    shape = point[name].shape
    block = np.tile(np.asarray(point[name], dtype=vals.dtype).reshape(-1), (idx.size, 1))
    block[np.arange(idx.size), idx] = vals
    return block.reshape((idx.size, 1) + shape)


def rows(point, name, step):
    k = point[name].size
    idx = np.concatenate([np.arange(k), np.arange(k)])
    return idx, point[name].reshape(-1)[idx] + step * np.concatenate([np.ones(k), -np.ones(k)])


def plain_crossings(model, point, name, idx, vals):
    """Per row: a kinked function's side at the moved copy differs from a nonzero side at the point."""
    n = model.n_samples
    before = lines.kink_sides(model, point, "float64", (n,))
    moved = {**point, name: moved_copies(point, name, idx, vals)}
    after = lines.kink_sides(model, moved, "float64", (idx.size, n))
    want = np.zeros(idx.size, dtype=bool)
    for here, there in zip(after, before):
        want |= ((there != 0) & (here != there)).reshape(idx.size, -1).any(axis=1)
    return want


@pytest.mark.parametrize("loss", POOL_LOSSES)
@pytest.mark.parametrize("step", [1e-3, 0.7])
def test_pooled_blocks_equal_plain_evaluation(loss, step):
    model = gc.Model.from_dict({**SPEC, "model": {"loss": loss}})
    point = model.param_values()
    for name in ("K", "c"):
        idx, vals = rows(point, name, step)
        got = perturb.per_sample(model, point, name, idx, vals, "float64")
        want = lines.per_sample(model, {**point, name: moved_copies(point, name, idx, vals)}, "float64")
        want = np.broadcast_to(want, (idx.size, model.n_samples))
        np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12 * np.max(np.abs(want)), err_msg=name)


@pytest.mark.parametrize("loss", POOL_LOSSES)
@pytest.mark.parametrize("step", [1.0, 0.2, 0.03, 1e-4])
def test_kink_crossings_through_pooled_blocks(loss, step):
    # relu and the windows' maxima on the changed channel, crossings after the channels are summed: the
    # crossings are those of evaluating every perturbed copy
    model = gc.Model.from_dict({**SPEC, "model": {"loss": loss}})
    point = model.param_values()
    idx, vals = rows(point, "K", step)
    got = perturb.crossings(model, point, "K", idx, vals, "float64")
    want = plain_crossings(model, point, "K", idx, vals)
    np.testing.assert_array_equal(got, want)
    if step == 1.0:
        assert want.any()  # the test sees crossings ...
    if step == 1e-4:
        assert not want.all()  # ... and their absence
    if "c" in loss:
        idx, vals = rows(point, "c", step)
        got = perturb.crossings(model, point, "c", idx, vals, "float64")
        np.testing.assert_array_equal(got, plain_crossings(model, point, "c", idx, vals), err_msg="c")


def test_crossings_only_in_pooling_are_found():
    # the kernel moves a window's argmax without any relu: only maxpool2d can cross, on the changed channel;
    # the ties of the other channel (sign 0 there) change nothing
    x = [[[1.0, 2.0, 5.0, 5.0], [0.0, 0.0, 1.0, 1.0]]]
    o = [[[0.0, 0.5, 0.0, 0.0], [0.0, 0.0, 0.0, 0.0]], [[0.0] * 4, [0.0] * 4]]
    model = gc.Model.from_dict(
        {
            "params": {"K": [[[[1.0]]], [[[-1.0]]]]},
            "data": {"x": [x], "o": [o]},
            "model": {"loss": "sum(maxpool2d(conv2d(x, K) + o, 2))"},
        }
    )
    point = model.param_values()
    idx = np.array([0, 0, 0, 1, 1])
    vals = np.array([0.4, 0.6, -3.0, -0.4, 2.0])
    got = perturb.crossings(model, point, "K", idx, vals, "float64")
    np.testing.assert_array_equal(got, plain_crossings(model, point, "K", idx, vals))
    # by hand: channel 0 is k * x + o, its windows [k, 2k + .5, 0, 0] (top 2.5 at k = 1) and [5k, 5k, k, k]
    # (a tie on top): k = .4, .6 keep every side; k = -3 makes the zeros the top (a tie) and the 5k the bottom.
    # Channel 1 (k = -1): windows [-1, -2, 0, 0] and [-5, -5, -1, -1], ties on top; k = -.4 keeps every side,
    # k = 2 puts 2k on top of window 0
    np.testing.assert_array_equal(got, [False, False, True, False, True])


def _pool_rule(expr, x_shape, base_x, block_axis, pos, vals, samples):
    node = infer_shapes(parse(expr), {"x": x_shape})
    op = OPS[node.op]
    base = op.numpy(np, [base_x], [x_shape], **op.bind(node.attrs))
    ctx = incremental.Context(rows=pos.size, samples=samples, flips=np.zeros(pos.size, dtype=bool))
    value = incremental.Block(base_x, x_shape, block_axis, pos, vals)
    return op, node, ctx, op.incremental(op, node, [value], base, ctx)


@pytest.mark.parametrize("expr", ["maxpool2d(x, 2)", "maxpool2d(x, 3, stride=1)", "avgpool2d(x, size=[1, 2])"])
def test_pool_rule_keeps_one_changed_channel(expr):
    rng = np.random.default_rng(32)
    base_x = rng.normal(size=(2, 3, 5, 6))  # samples + (C, H, W)
    pos = np.array([2, 0, 1, 2])
    vals = base_x[:, pos].transpose(1, 0, 2, 3) + rng.normal(size=(4, 2, 5, 6))  # (M, samples, H, W)
    op, node, ctx, got = _pool_rule(expr, (3, 5, 6), base_x, 0, pos, vals, True)
    assert isinstance(got, incremental.Block) and got.axis == 0
    np.testing.assert_array_equal(got.pos, pos)
    dense = incremental.densify(got, ctx)
    for m in range(4):
        moved = base_x.copy()
        moved[:, pos[m]] = vals[m]
        t = torch.from_numpy(moved)
        size, stride = op.bind(node.attrs)["size"], op.bind(node.attrs)["stride"]
        pool = torch.nn.functional.max_pool2d if node.op == "maxpool2d" else torch.nn.functional.avg_pool2d
        want = pool(t, size, stride if stride is not None else size).numpy()
        np.testing.assert_allclose(dense[m], want, rtol=1e-15, atol=0)


def test_pool_rule_declines_a_spatial_block():
    # a changed row of the image moves windows of every channel: left to the plain evaluation
    rng = np.random.default_rng(33)
    base_x = rng.normal(size=(2, 3, 4, 4))
    pos = np.array([1, 3])
    vals = rng.normal(size=(2, 2, 3, 4))  # (M, samples, C, W)
    _, _, _, got = _pool_rule("maxpool2d(x, 2)", (3, 4, 4), base_x, 1, pos, vals, True)
    assert got is None


def _by_hand(x, size, stride):
    """``x_j - max(others)`` per window element: (C, oH, oW, kh * kw), the elements row-major."""
    c, h, w = x.shape
    kh, kw = size
    sh, sw = stride
    oh, ow = (h - kh) // sh + 1, (w - kw) // sw + 1
    out = np.empty((c, oh, ow, kh * kw))
    for ch, i, j in itertools.product(range(c), range(oh), range(ow)):
        win = x[ch, i * sh : i * sh + kh, j * sw : j * sw + kw].reshape(-1)
        for e in range(win.size):
            out[ch, i, j, e] = win[e] - max(np.delete(win, e)) if win.size > 1 else 1.0
    return out


@pytest.mark.parametrize(("size", "stride"), [((2, 2), (2, 2)), ((3, 2), (1, 2)), ((1, 1), (1, 1)), ((2, 3), (3, 1))])
def test_maxpool_kink_quantity_by_hand(size, stride):
    rng = np.random.default_rng(34)
    x = rng.integers(-2, 3, size=(2, 7, 8)).astype(float)  # small integers: many ties (quantity 0)
    op = OPS["maxpool2d"]
    got = op.kink(np, [x], [x.shape], size=list(size), stride=list(stride))
    want = _by_hand(x, size, stride)  # (C, oH, oW, k); the quantity is (C, k, oH * oW)
    c, oh, ow, k = want.shape
    assert got.shape == (c, k, oh * ow)
    np.testing.assert_array_equal(got.reshape(c, k, oh, ow).transpose(0, 2, 3, 1), want)
    if size != (1, 1):
        assert (got == 0).any() and (got > 0).any() and (got < 0).any()
    pooled = op.numpy(np, [x], [x.shape], size=list(size), stride=list(stride))
    want = torch.nn.functional.max_pool2d(torch.from_numpy(x)[None], size, stride)[0].numpy()
    np.testing.assert_array_equal(pooled, want)


def test_maxpool_kink_quantity_of_a_window_with_nan():
    x = np.array([[[1.0, np.nan, 3.0, 4.0], [0.0, 2.0, 5.0, -1.0]]])
    got = OPS["maxpool2d"].kink(np, [x], [x.shape], size=2, stride=None)
    assert got.shape == (1, 4, 2)  # (C, window element, window)
    assert np.isnan(got[0, :, 0]).all()  # the window with a nan: no side anywhere
    np.testing.assert_array_equal(got[0, :, 1], [3.0 - 5.0, 4.0 - 5.0, 5.0 - 4.0, -1.0 - 5.0])


def test_side_codes_move_as_float_signs_do():
    # every pair of special values: a row moves where sign(after) != sign(before) != 0, nan unequal to all
    special = np.array([2.0, -3.0, 0.0, -0.0, np.nan, np.inf, -np.inf, 1e-310, -1e-310])
    before, after = np.meshgrid(special, special, indexing="ij")
    before, after = before.reshape(-1, 1), after.reshape(-1, 1)  # one row per pair
    ctx = incremental.Context(rows=before.shape[0], samples=False, flips=np.zeros(before.shape[0], dtype=bool))
    ctx.sides_moved(incremental.sides(before), after)
    with np.errstate(invalid="ignore"):
        want = ((np.sign(before) != 0) & (np.sign(after) != np.sign(before)))[:, 0]
    np.testing.assert_array_equal(ctx.flips, want)
    assert want.any() and not want.all()
    np.testing.assert_array_equal(incremental.sides(special), [1, -1, 0, 0, 2, 1, -1, 1, -1])


def test_crossings_of_kinks_before_and_after_the_loss_reads_them():
    # entries: a kinked value read by a later kink (h), one read by nothing kinked (the loss's abs), an
    # entry no kink reads (u): the crossings are those of evaluating every perturbed copy
    model = gc.Model.from_dict(
        {
            **SPEC,
            "model": {
                "h": "maxpool2d(relu(conv2d(x, K) + c), 2)",
                "u": "tanh(conv2d(x, K))",
                "v": "relu(h - 0.3) + sum(u)",
                "loss": "sum(abs(v - m)) + sum(maxpool2d(u, 2))",
            },
        }
    )
    point = model.param_values()
    for step in (1.0, 0.05, 1e-4):
        for name in ("K", "c"):
            idx, vals = rows(point, name, step)
            got = perturb.crossings(model, point, name, idx, vals, "float64")
            np.testing.assert_array_equal(got, plain_crossings(model, point, name, idx, vals), err_msg=name)


@pytest.mark.parametrize("step", [1.0, 0.05, 1e-4])
def test_pooled_blocks_without_data(step):
    # parameters only: blocks without a sample axis, values and crossings as every perturbed copy gives them
    spec = {
        "params": {"K": SPEC["params"]["K"], "c": SPEC["params"]["c"], "P": SPEC["params"]["P"]},
        "model": {"loss": "sum(maxpool2d(relu(conv2d(P, K) + c), 2) ** 2) + sum(abs(maxpool2d(conv2d(P, K), 3)))"},
    }
    model = gc.Model.from_dict(spec)
    point = model.param_values()
    for name in ("K", "c"):
        idx, vals = rows(point, name, step)
        got = perturb.per_sample(model, point, name, idx, vals, "float64")
        moved = moved_copies(point, name, idx, vals)[:, 0]  # no sample axis
        want = lines.per_sample(model, {**point, name: moved}, "float64")
        np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12 * np.max(np.abs(want)), err_msg=name)
        before = lines.kink_sides(model, point, "float64", ())
        after = lines.kink_sides(model, {**point, name: moved}, "float64", (idx.size,))
        crossed = np.zeros(idx.size, dtype=bool)
        for here, there in zip(after, before):
            crossed |= ((there != 0) & (here != there)).reshape(idx.size, -1).any(axis=1)
        np.testing.assert_array_equal(perturb.crossings(model, point, name, idx, vals, "float64"), crossed)
        if step == 1.0 and name == "K":
            assert crossed.any()


@pytest.mark.parametrize("loss", POOL_LOSSES)
def test_kink_crossings_of_fewer_rows_than_channels(loss):
    # two rows, three channels: the unperturbed sides come from the rows' own channels (not the whole input)
    model = gc.Model.from_dict({**SPEC, "model": {"loss": loss}})
    point = model.param_values()
    idx = np.array([1, 17])  # channels 0 and 2
    seen = np.zeros(2, dtype=bool)
    for step in (2.0, 0.2, 0.03, 1e-4):
        vals = point["K"].reshape(-1)[idx] + step * np.array([1.0, -1.0])
        got = perturb.crossings(model, point, "K", idx, vals, "float64")
        want = plain_crossings(model, point, "K", idx, vals)
        np.testing.assert_array_equal(got, want, err_msg=str(step))
        seen |= want
    assert seen.any()
