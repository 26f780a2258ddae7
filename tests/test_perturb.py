"""Incremental evaluation of one-element perturbations equals the plain batched evaluation."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings

import gradcheck as gc
from gradcheck import perturb
from gradcheck import strategies as gst
from gradcheck.sources import finite_diff
from gradcheck.sources.finite_diff import lines

EXAMPLES = sorted((Path(__file__).resolve().parents[1] / "examples").glob("*.yaml"))


def plain(model, point, name, idx, vals, dtype):
    """Every perturbed copy of the parameter written out and the whole model evaluated per row."""
    shape = model.params[name].shape
    block = np.tile(np.asarray(point[name], dtype=vals.dtype).reshape(-1), (idx.size, 1))
    block[np.arange(idx.size), idx] = vals
    block = block.reshape(((idx.size, 1) if model.data else (idx.size,)) + shape)
    others = {k: np.asarray(v, dtype=np.dtype(dtype)) for k, v in point.items() if k != name}
    f = lines.per_sample(model, {**others, name: block}, dtype)
    return np.broadcast_to(f, (idx.size, model.n_samples)) if model.data else np.broadcast_to(f, (idx.size,))


def assert_same(model, dtype="float64", step=1e-3, complex_step=False):
    point = {k: np.asarray(p.value, dtype=np.dtype(dtype)).astype(np.float64) for k, p in model.params.items()}
    params = {k: np.asarray(v, dtype=np.dtype(dtype)) for k, v in point.items()}
    for name, p in model.params.items():
        k = p.value.size
        idx = np.concatenate([np.arange(k), np.arange(k)])
        signs = np.concatenate([np.ones(k), -np.ones(k)])
        delta = 1j * 1e-20 * signs if complex_step else step * signs
        work = np.dtype(np.complex128) if complex_step else np.dtype(dtype)
        vals = (point[name].reshape(-1)[idx] + delta).astype(work)
        got = perturb.per_sample(model, params, name, idx, vals, dtype)
        got = np.broadcast_to(got, (idx.size, model.n_samples)) if model.data else np.broadcast_to(got, (idx.size,))
        want = plain(model, point, name, idx, vals, dtype)
        rtol = 1e-5 if dtype == "float32" else 1e-12
        np.testing.assert_allclose(got.real, want.real, rtol=rtol, atol=rtol * np.max(np.abs(want.real)), err_msg=name)
        if complex_step:
            np.testing.assert_allclose(got.imag, want.imag, rtol=1e-12, atol=1e-300, err_msg=name)


@pytest.mark.parametrize("path", EXAMPLES, ids=[p.stem for p in EXAMPLES])
@pytest.mark.parametrize("mode", ["float64", "float32", "complex step"])
def test_examples(path, mode):
    model = gc.load(path)
    if mode == "complex step":
        if not finite_diff.analytic(model):
            pytest.skip("the complex step needs an analytic loss")
        assert_same(model, complex_step=True)
    else:
        assert_same(model, dtype=mode)


@pytest.mark.parametrize(
    "loss",
    [
        "sum(W @ x) + dot(x, W.T @ y) + dot(v, W @ x)",  # matrix @ vector, transpose, dot
        "sum(x @ W.T) * mean(v**2)",  # vector @ matrix
        "W[1, 2] * v[0] + sum(W[0]) - v[-1]",  # indexing
        "sum(softmax(W @ x)) + logsumexp(v) + norm(W[1])",  # no rule: plain fallback
        "sum((W @ W.T) @ y) + sum(s * v)",  # matrix-matrix, scalar broadcast: fallback
        "max(v[0], v[1]) + sum(relu(W @ x - 0.1))",
        "sum(sum(W, axis=0) * x) + dot(mean(W, axis=-1), v) + sum(mean(W, axis=[1, 0], keepdims=True) * W)",
        "sum(sum(W, axis=1, keepdims=True) ** 2) + sum(exp(sum(v, axis=0))) + var(W, axis=0)[1]",
        "sum(max(W, axis=0) * x) + min(v) + sum(softmax(W, axis=0) * log_softmax(W)) + norm(W, axis=1)[0]",
    ],
)
def test_structural_rules_and_fallbacks(loss):
    model = gc.Model.from_dict(
        {
            "params": {"W": [[0.1, -0.2, 0.3], [0.4, 0.5, -0.6]], "v": [0.3, -0.7], "s": 1.5},
            "data": {"x": [[1.0, 2.0, -1.0], [0.5, 0.0, 2.0]], "y": [[0.5, -0.5], [1.0, 2.0]]},
            "model": {"loss": loss},
        }
    )
    assert_same(model)
    assert_same(model, dtype="float32")


@pytest.mark.parametrize("data", [False, True])
def test_a_lower_rank_operand_broadcasts_into_the_perturbed_one(data):
    # x [1, 2, 3] times reshape(w, [2, 1]) (rank 2): the elementwise rule gathers the lower-rank
    # operand at the changed positions (it once took the rank gap for a batch axis and crashed).
    spec = {
        "params": {"x": [[[0.1, 0.2, 0.3], [0.4, 0.5, 0.6]]], "w": [0.3, 0.7]},
        "model": {"loss": "sum(sin(x * reshape(w, [2, 1])))"},
    }
    if data:
        spec["data"] = {"z": [1.0, 2.0]}
        spec["model"] = {"loss": "z * sum(sin(x * reshape(w, [2, 1])))"}
    assert_same(gc.Model.from_dict(spec))


def test_fallback_in_chunks_when_too_dense():
    model = gc.Model.from_dict(
        {
            "params": {"W": np.ones((4, 4)).tolist()},
            "data": {"x": [[1.0] * 4] * 3},
            "model": {"loss": "sum((W @ W) @ x)"},
        }
    )
    params = {"W": np.ones((4, 4))}
    idx = np.arange(16)
    with pytest.raises(perturb.TooDense):
        perturb.per_sample(model, params, "W", idx, np.full(16, 2.0), "float64", max_values=10)
    # finite differences fall back to chunks and still agree
    assert gc.check(model).status == "agree"


@settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))
@given(gst.models(max_depth=3, kinks=True))
def test_random_models(spec):
    assert_same(gc.Model.from_dict(spec))


def plain_crossings(model, point, name, idx, vals, dtype):
    """Old way: evaluate every perturbed copy, compare every kinked function's side with the unperturbed one."""
    shape = model.params[name].shape
    samples = (model.n_samples,) if model.data else ()
    real = {k: np.asarray(v, dtype=np.dtype(dtype)) for k, v in point.items()}
    before = lines.kink_sides(model, real, dtype, samples)
    block = np.tile(real[name].reshape(-1), (idx.size, 1))
    block[np.arange(idx.size), idx] = vals
    block = block.reshape(((idx.size, 1) if model.data else (idx.size,)) + shape)
    after = lines.kink_sides(model, {**real, name: block}, dtype, (idx.size,) + samples)
    out = np.zeros(idx.size, dtype=bool)
    for here, there in zip(after, before):
        out |= ((there != 0) & (here != there)).reshape(idx.size, -1).any(axis=1)
    return out


KINKED = {
    "params": {"W": [[0.1, -0.2, 0.3], [0.4, 0.5, -0.6]], "v": [0.3, -0.7], "s": 0.05},
    "data": {"x": [[1.0, 2.0, -1.0], [0.5, 0.0, 2.0]]},
    "model": {"h": "relu(W @ x - s)", "loss": "sum(abs(h - 0.2)) + max(v[0], v[1] * 0.4) + min(s, 0.06)"},
}


@pytest.mark.parametrize("name", ["W", "v", "s"])
@pytest.mark.parametrize("step", [1.0, 0.3, 0.05, 1e-3])
def test_kink_crossings(name, step):
    model = gc.Model.from_dict(KINKED)
    point = model.param_values()
    k = point[name].size
    idx = np.concatenate([np.arange(k), np.arange(k)])
    vals = point[name].reshape(-1)[idx] + step * np.concatenate([np.ones(k), -np.ones(k)])
    params = {key: np.asarray(v) for key, v in point.items()}
    got = perturb.crossings(model, params, name, idx, vals, "float64")
    want = plain_crossings(model, point, name, idx, vals, "float64")
    np.testing.assert_array_equal(got, want)
    if step == 1.0:
        assert want.any()  # the test sees crossings, not only their absence


@settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))
@given(gst.models(max_depth=3, kinks=True))
def test_kink_crossings_on_random_models(spec):
    model = gc.Model.from_dict(spec)
    point = model.param_values()
    for name, value in point.items():
        k = value.size
        idx = np.tile(np.arange(k), 4)
        steps = np.repeat([0.5, -0.5, 0.01, -0.01], k)
        vals = value.reshape(-1)[idx] + steps
        params = {key: np.asarray(v) for key, v in point.items()}
        got = perturb.crossings(model, params, name, idx, vals, "float64")
        np.testing.assert_array_equal(got, plain_crossings(model, point, name, idx, vals, "float64"))


def test_reduction_rules_follow_their_axes():
    """``sum(v)``, ``mean(v)`` and ``sum(M, axis=...)``: the changed output position moves by the change."""
    from gradcheck import incremental
    from gradcheck.expr import Node, infer_shapes, parse
    from gradcheck.ops import OPS

    sparse = incremental.Sparse(np.arange(3.0), (3,), np.array([0, 2]), np.array([5.0, 7.0]))
    ctx = incremental.Context(2, False)
    for name, want in (("sum", [8.0, 8.0]), ("mean", [8.0 / 3, 8.0 / 3])):
        op = OPS[name]
        node = infer_shapes(parse(f"{name}(v)"), {"v": (3,)})
        base = np.float64(3.0 if name == "sum" else 1.0)
        out = op.incremental(op, node, [sparse], base, ctx)
        np.testing.assert_allclose(out.array, want)
        unknown = Node(node.op, node.args, node.value, node.pos, node.text, node.shape, (("other", 0),))
        assert op.incremental(op, unknown, [sparse], base, ctx) is None  # an attribute it does not know: declined
    M = np.arange(6.0).reshape(2, 3)
    moved = incremental.Sparse(M, (2, 3), np.array([1, 5]), np.array([10.0, -1.0]))  # M[0, 1] = 10, M[1, 2] = -1
    for text, shape, want in (
        ("sum(M, axis=0)", (3,), [M.sum(0) + [0, 9, 0], M.sum(0) + [0, 0, -6]]),
        (
            "mean(M, axis=-1, keepdims=True)",
            (2, 1),
            [M.mean(1, keepdims=True) + [[3], [0]], M.mean(1, keepdims=True) + [[0], [-2]]],
        ),
    ):
        node = infer_shapes(parse(text), {"M": (2, 3)})
        assert node.shape == shape
        op = OPS[node.op]
        base = np.asarray(op.numpy(np, [M], [(2, 3)], **op.bind(node.attrs)))
        out = op.incremental(op, node, [moved], base, incremental.Context(2, False))
        np.testing.assert_allclose(incremental.densify(out, incremental.Context(2, False)), want)


REDUCED_KINKS = {
    "params": {"M": [[0.3, 0.31, -0.2], [0.5, -0.1, 0.45]], "v": [0.2, 0.25]},
    "data": {"x": [[1.0, 0.9, 2.0], [0.5, 1.0, -1.0]]},
    "model": {"loss": "sum(max(M * x, axis=1) * v) + min(M, axis=[0, 1]) + max(v, keepdims=True)[0]"},
}


@pytest.mark.parametrize("name", ["M", "v"])
@pytest.mark.parametrize("step", [0.3, 0.05, 1e-3])
def test_kink_crossings_of_reductions(name, step):
    """``max(v)``/``min(v)`` cross where the maximum changes: the incremental crossings equal the plain ones."""
    model = gc.Model.from_dict(REDUCED_KINKS)
    point = model.param_values()
    k = point[name].size
    idx = np.concatenate([np.arange(k), np.arange(k)])
    vals = point[name].reshape(-1)[idx] + step * np.concatenate([np.ones(k), -np.ones(k)])
    params = {key: np.asarray(v) for key, v in point.items()}
    got = perturb.crossings(model, params, name, idx, vals, "float64")
    want = plain_crossings(model, point, name, idx, vals, "float64")
    np.testing.assert_array_equal(got, want)
    if step == 0.05:
        assert want.any()  # some moves change a maximum (v[0] + 0.05 passes v[1]) ...
        assert not want.all()  # ... and some do not


CONV_LOSSES = [
    "sum(tanh(conv2d(x, K)) * y)",  # the kernel rule
    "sum(conv2d(x, K, stride=2, padding=1)**2)",
    "sum(conv2d(x, K, stride=[1, 2], padding=[2, 0])**2) + sum(conv1d(x[0], k1, stride=2, padding=1))",
    "sum(conv2d(x * U, K)**2)",  # a perturbed input: plain fallback
    "sum(avgpool2d(conv2d(x, K, padding=1), 2)) + sum(maxpool2d(x * U, 2, stride=1)**2)",
    "sum(tanh(conv2d(x * U, K, stride=[2, 1], padding=[1, 2]))[:, :, 2:7] * y)",  # the input rule
    "sum(conv1d(x[1] + U[0], k1, stride=2, padding=1)**2)",  # the input rule, 1-D
    "sum(maxpool2d(x * U, 2)**2) + sum(avgpool2d(tanh(x * U), size=[2, 3], stride=[3, 3]))",  # pool rules
]


@pytest.mark.parametrize("loss", CONV_LOSSES)
@pytest.mark.parametrize("mode", ["float64", "complex step"])
def test_conv_rules_and_fallbacks(loss, mode):
    rng = np.random.default_rng(3)
    model = gc.Model.from_dict(
        {
            "params": {
                "K": rng.normal(size=(3, 2, 3, 2)).tolist(),
                "k1": rng.normal(size=(2, 5, 2)).tolist(),
                "U": rng.normal(size=(2, 5, 6)).tolist(),
            },
            "data": {"x": rng.normal(size=(2, 2, 5, 6)).tolist(), "y": rng.normal(size=(2, 3, 3, 5)).tolist()},
            "model": {"loss": loss},
        }
    )
    if mode == "complex step":
        if not finite_diff.analytic(model):
            assert "maxpool2d" in loss  # the only op here that is not analytic
            pytest.skip("the complex step needs an analytic loss")
        assert_same(model, complex_step=True)
    else:
        assert_same(model)


def test_conv_kernel_rule_changes_one_output_channel():
    # the kernel rule's result is the plain convolution of the perturbed kernel, row by row
    import torch
    import torch.nn.functional as F

    from gradcheck import incremental
    from gradcheck.expr import infer_shapes, parse
    from gradcheck.ops import OPS

    rng = np.random.default_rng(4)
    x, k = rng.normal(size=(3, 2, 6, 5)), rng.normal(size=(4, 2, 3, 2))
    node = infer_shapes(parse("conv2d(x, k, stride=[2, 1], padding=1)"), {"x": (2, 6, 5), "k": (4, 2, 3, 2)})
    op = OPS["conv2d"]
    base = op.numpy(np, [x, k], [(2, 6, 5), (4, 2, 3, 2)], stride=(2, 1), padding=1)
    idx = np.array([0, 17, 47, 30])
    vals = k.reshape(-1)[idx] + np.array([0.5, -1.0, 2.0, 0.25])
    ctx = incremental.Context(rows=4, samples=True)
    got = incremental.conv_kernel(op, node, [x, incremental.Sparse(k, k.shape, idx, vals)], base, ctx)
    assert isinstance(got, incremental.Block) and got.axis == 0  # one output channel per row
    np.testing.assert_array_equal(got.pos, idx // (2 * 3 * 2))
    dense = incremental.densify(got, ctx)
    for m in range(4):
        km = k.copy().reshape(-1)
        km[idx[m]] = vals[m]
        want = F.conv2d(torch.tensor(x), torch.tensor(km.reshape(k.shape)), stride=(2, 1), padding=1).numpy()
        np.testing.assert_allclose(dense[m], want, rtol=1e-12, atol=1e-12)


def _direct(expr, shapes, args, sparse_at, idx, vals, ctx):
    """The op's rule called on its own: operand ``sparse_at`` perturbed at ``idx`` to ``vals``."""
    from gradcheck.expr import infer_shapes, parse
    from gradcheck.ops import OPS

    node = infer_shapes(parse(expr), shapes)
    op = OPS[node.op]
    per = [shapes[str(a.value)] for a in node.args]
    base = op.numpy(np, list(args), per, **op.bind(node.attrs))
    parts = list(args)
    parts[sparse_at] = incremental.Sparse(args[sparse_at], per[sparse_at], idx, vals)
    return op.incremental(op, node, parts, base, ctx)


from gradcheck import incremental  # noqa: E402


@pytest.mark.parametrize(
    ("expr", "stride", "padding"),
    [("conv2d(x, k, stride=[2, 1], padding=1)", (2, 1), (1, 1)), ("conv2d(x, k)", (1, 1), (0, 0))],
)
def test_conv_input_rule_is_the_convolution_of_the_perturbed_input(expr, stride, padding):
    # row by row, the rule's result is torch's convolution of the input with one element moved
    import torch
    import torch.nn.functional as F

    rng = np.random.default_rng(5)
    x, k = rng.normal(size=(3, 2, 6, 5)), rng.normal(size=(4, 2, 3, 2))
    idx = np.array([0, 17, 59, 30, 33])  # corners, the middle, the last element
    delta = np.array([0.5, -1.0, 2.0, 0.25, 1e-3])
    vals = x.reshape(3, -1)[:, idx].T + delta[:, None]  # (M, samples)
    ctx = incremental.Context(rows=5, samples=True)
    got = _direct(expr, {"x": (2, 6, 5), "k": (4, 2, 3, 2)}, [x, k], 0, idx, vals, ctx)
    assert isinstance(got, incremental.Batched)  # the rule did not decline
    for m in range(5):
        xm = x.copy().reshape(3, -1)
        xm[:, idx[m]] = vals[m]
        want = F.conv2d(torch.tensor(xm.reshape(x.shape)), torch.tensor(k), stride=stride, padding=padding).numpy()
        np.testing.assert_allclose(got.array[m], want, rtol=1e-12, atol=1e-12)


def test_conv_input_rule_1d_complex_step():
    import torch
    import torch.nn.functional as F

    rng = np.random.default_rng(6)
    x, k = rng.normal(size=(3, 7)), rng.normal(size=(2, 3, 3))
    idx = np.arange(21)
    vals = x.reshape(-1)[idx] + 1j * 1e-20
    ctx = incremental.Context(rows=21, samples=False)
    got = _direct("conv1d(x, k, stride=2, padding=2)", {"x": (3, 7), "k": (2, 3, 3)}, [x, k], 0, idx, vals, ctx)
    assert isinstance(got, incremental.Batched)
    for m in range(21):
        xm = x.reshape(-1).copy()
        want = F.conv1d(torch.tensor(xm.reshape(1, 3, 7)), torch.tensor(k), stride=2, padding=2).numpy()[0]
        np.testing.assert_allclose(got.array[m].real, want, rtol=1e-12, atol=1e-12)
        # the imaginary part is the derivative times 1e-20: k's taps where the window meets element idx[m]
        dm = np.zeros(21)
        dm[m] = 1.0
        deriv = F.conv1d(torch.tensor(dm.reshape(1, 3, 7)), torch.tensor(k), stride=2, padding=2).numpy()[0]
        np.testing.assert_allclose(got.array[m].imag, deriv * 1e-20, rtol=1e-12, atol=1e-40)


@pytest.mark.parametrize(
    ("expr", "size", "stride"),
    [("maxpool2d(x, 2)", (2, 2), (2, 2)), ("avgpool2d(x, size=[2, 3], stride=[3, 3])", (2, 3), (3, 3))],
)
def test_pool_rule_changes_one_window(expr, size, stride):
    import torch
    import torch.nn.functional as F

    rng = np.random.default_rng(7)
    x = rng.normal(size=(3, 2, 7, 8))  # 7 rows: the last row is in no window
    idx = np.arange(2 * 7 * 8)
    vals = x.reshape(3, -1)[:, idx].T + rng.normal(size=(idx.size, 1)) * 2.0
    ctx = incremental.Context(rows=idx.size, samples=True)
    got = _direct(expr, {"x": (2, 7, 8)}, [x], 0, idx, vals, ctx)
    assert isinstance(got, incremental.Sparse)  # one output position per row
    dense = incremental.densify(got, ctx)
    pool = F.max_pool2d if expr.startswith("max") else F.avg_pool2d
    for m in range(idx.size):
        xm = x.copy().reshape(3, -1)
        xm[:, idx[m]] = vals[m]
        want = pool(torch.tensor(xm.reshape(x.shape)), size, stride).numpy()
        np.testing.assert_allclose(dense[m], want, rtol=1e-12, atol=1e-12)


def test_pool_rule_declines_overlapping_windows():
    x = np.arange(2 * 4 * 4, dtype=float).reshape(2, 4, 4)
    ctx = incremental.Context(rows=1, samples=False)
    assert _direct("avgpool2d(x, 2, stride=1)", {"x": (2, 4, 4)}, [x], 0, np.array([5]), np.array([1.0]), ctx) is None


@pytest.mark.parametrize("step", [1.0, 0.3, 1e-3])
def test_kink_crossings_of_maxpool_rule(step):
    # a moved element overtakes (or falls below) its window's maximum: the rule sees what dense evaluation sees
    rng = np.random.default_rng(8)
    model = gc.Model.from_dict(
        {
            "params": {"U": rng.normal(scale=0.5, size=(2, 4, 5)).round(2).tolist()},
            "data": {"x": rng.normal(size=(3, 2, 4, 5)).round(2).tolist()},
            "model": {"loss": "sum(maxpool2d(x + U, 2)**2)"},
        }
    )
    point = model.param_values()
    k = point["U"].size
    idx = np.concatenate([np.arange(k), np.arange(k)])
    vals = point["U"].reshape(-1)[idx] + step * np.concatenate([np.ones(k), -np.ones(k)])
    params = {key: np.asarray(v) for key, v in point.items()}
    got = perturb.crossings(model, params, "U", idx, vals, "float64")
    want = plain_crossings(model, point, "U", idx, vals, "float64")
    np.testing.assert_array_equal(got, want)
    if step == 1.0:
        assert want.any() and not want.all()
