"""The layers' backward ops (conv_transpose1d/2d, conv1d/2d_weight, maxpool2d_backward, avgpool2d_backward).

Every form (NumPy, torch, SymPy evaluated in mpmath, mpmath) against torch float64's own
vector-Jacobian products computed here; gradients through the ops three ways against torch's
double backward; the ops as a model's hand-derived ``expected``; shape errors.
"""

from __future__ import annotations

import mpmath
import numpy as np
import pytest
import sympy
import torch
import torch.nn.functional as F

import gradcheck as gc
from gradcheck import interp
from gradcheck.expr import infer_shapes, parse, unparse

SOURCES = ("symbolic", "autograd", "finite_difference")
RNG = np.random.default_rng(11)


def _rand(*shape: int, scale: float = 1.0) -> np.ndarray:
    return np.round(RNG.normal(0.0, scale, shape), 3)


def _t(a: np.ndarray, grad: bool = False) -> torch.Tensor:
    return torch.tensor(a, dtype=torch.float64, requires_grad=grad)


# --- the forms, against torch's own VJPs ------------------------------------------------


def _forms(text: str, env: dict[str, np.ndarray], shapes: dict[str, tuple[int, ...]]) -> dict[str, np.ndarray]:
    """``text`` evaluated by each backend; ``env`` values carry leading batch axes (none for SymPy: batch 1 at most)."""
    node = infer_shapes(parse(text), shapes)
    out = {"numpy": np.asarray(interp.run(node, env, "numpy", np), dtype=np.float64)}
    out["torch"] = interp.run(node, {k: _t(v) for k, v in env.items()}, "torch", torch).numpy()
    with mpmath.workdps(30):
        exact_env = {k: np.asarray(np.frompyfunc(mpmath.mpf, 1, 1)(v), dtype=object) for k, v in env.items()}
        exact = interp.run(node, exact_env, "mpmath", mpmath)
        out["mpmath"] = np.asarray(np.frompyfunc(float, 1, 1)(np.asarray(exact, dtype=object)), dtype=np.float64)
    # SymPy: one sample at a time, on symbols, then the expressions evaluated (as the symbolic source does)
    batch = out["numpy"].shape[: out["numpy"].ndim - len(node.shape)]
    rows = []
    for b in np.ndindex(*batch):
        syms, values, sym_env = [], [], {}
        for k, v in env.items():
            one = v[b] if v.ndim > len(shapes[k]) else v
            arr = np.empty(one.shape, dtype=object)
            for idx in np.ndindex(*one.shape):
                arr[idx] = sympy.Symbol(f"{k}_{'_'.join(map(str, idx))}", real=True)
                syms.append(arr[idx])
                values.append(mpmath.mpf(float(one[idx])))
            sym_env[k] = arr
        exprs = np.asarray(interp.run(node, sym_env, "sympy", sympy), dtype=object)
        fn = sympy.lambdify(syms, list(exprs.reshape(-1)), modules="mpmath")
        with mpmath.workdps(30):
            rows.append(np.array([float(v) for v in fn(*values)]).reshape(exprs.shape))
    out["sympy"] = np.stack(rows).reshape(out["numpy"].shape)
    return out


def _assert_forms(got: dict[str, np.ndarray], want: np.ndarray) -> None:
    assert set(got) == {"numpy", "torch", "sympy", "mpmath"}
    for form, value in got.items():
        np.testing.assert_allclose(value, want, rtol=1e-12, atol=1e-12, err_msg=form)


CONV1D = [(1, 0, 7), (2, 1, 8), (3, 2, 9), (2, 0, 6)]  # stride, padding, input length
CONV2D = [(1, 0, (5, 4)), (2, 1, (6, 5)), ((2, 1), (0, 2), (5, 4)), (3, 1, (7, 6))]


def _lists(v):
    return list(v) if isinstance(v, tuple) else v


def _conv_case(d: int, stride, padding, size):
    """x of one sample, kernel, g for a batch of 2 samples, and torch's VJPs (in x, in the kernel) per sample."""
    sp = (size,) if d == 1 else size
    ksize = (3,) if d == 1 else (3, 2)
    x, k = _rand(2, 2, *sp), _rand(3, 2, *ksize)
    conv = F.conv1d if d == 1 else F.conv2d
    xt, kt = _t(x, True), _t(k, True)
    out = conv(xt, kt, stride=stride, padding=padding)
    g = _rand(*out.shape)
    dx, dk = [], []
    for i in range(2):  # torch's autograd VJP, sample by sample
        ox = conv(xt[i : i + 1], kt, stride=stride, padding=padding)
        gx, gk = torch.autograd.grad(ox, (xt, kt), _t(g[i : i + 1]))
        dx.append(gx[i].numpy())
        dk.append(gk.numpy())
    return x, k, g, sp, ksize, np.stack(dx), np.stack(dk)


@pytest.mark.parametrize("stride, padding, length", CONV1D)
def test_conv_transpose1d_forms_are_torchs_vjp_in_the_input(stride, padding, length):
    x, k, g, sp, ksize, dx, _ = _conv_case(1, stride, padding, length)
    text = f"conv_transpose1d(g, k, stride={stride}, padding={padding}, size={length})"
    _assert_forms(_forms(text, {"g": g, "k": k}, {"g": g.shape[1:], "k": k.shape}), dx)


@pytest.mark.parametrize("stride, padding, size", CONV2D)
def test_conv_transpose2d_forms_are_torchs_vjp_in_the_input(stride, padding, size):
    x, k, g, sp, ksize, dx, _ = _conv_case(2, stride, padding, size)
    text = f"conv_transpose2d(g, k, stride={_lists(stride)}, padding={_lists(padding)}, size={list(size)})"
    _assert_forms(_forms(text, {"g": g, "k": k}, {"g": g.shape[1:], "k": k.shape}), dx)


@pytest.mark.parametrize("stride, padding, length", CONV1D)
def test_conv1d_weight_forms_are_torchs_conv1d_weight(stride, padding, length):
    x, k, g, sp, ksize, _, dk = _conv_case(1, stride, padding, length)
    text = f"conv1d_weight(x, g, {ksize[0]}, stride={stride}, padding={padding})"
    got = _forms(text, {"x": x, "g": g}, {"x": x.shape[1:], "g": g.shape[1:]})
    want = np.stack(
        [torch.nn.grad.conv1d_weight(_t(x[i : i + 1]), k.shape, _t(g[i : i + 1]), stride, padding) for i in range(2)]
    )
    np.testing.assert_allclose(want, dk, rtol=1e-12)  # torch's conv1d_weight is its autograd VJP
    _assert_forms(got, want)


@pytest.mark.parametrize("stride, padding, size", CONV2D)
def test_conv2d_weight_forms_are_torchs_conv2d_weight(stride, padding, size):
    x, k, g, sp, ksize, _, dk = _conv_case(2, stride, padding, size)
    text = f"conv2d_weight(x, g, size={list(ksize)}, stride={_lists(stride)}, padding={_lists(padding)})"
    got = _forms(text, {"x": x, "g": g}, {"x": x.shape[1:], "g": g.shape[1:]})
    want = np.stack(
        [torch.nn.grad.conv2d_weight(_t(x[i : i + 1]), k.shape, _t(g[i : i + 1]), stride, padding) for i in range(2)]
    )
    np.testing.assert_allclose(want, dk, rtol=1e-12)
    _assert_forms(got, want)


def test_conv_transpose_default_size_is_the_smallest_input():
    # stride 2: inputs of length 7 and 8 both give 3 positions (kernel 3, padding 0); the default is 7
    g, k = _rand(1, 2, 3), _rand(2, 1, 3)
    node = infer_shapes(parse("conv_transpose1d(g, k, stride=2)"), {"g": (2, 3), "k": (2, 1, 3)})
    assert node.shape == (1, 7)
    want = torch.nn.grad.conv1d_input((1, 1, 7), _t(k), _t(g), stride=2)
    _assert_forms(_forms("conv_transpose1d(g, k, stride=2)", {"g": g, "k": k}, {"g": (2, 3), "k": (2, 1, 3)}), want)
    longer = torch.nn.grad.conv1d_input((1, 1, 8), _t(k), _t(g), stride=2)
    got = _forms("conv_transpose1d(g, k, stride=2, size=8)", {"g": g, "k": k}, {"g": (2, 3), "k": (2, 1, 3)})
    _assert_forms(got, longer)
    assert longer[0, 0, -1] == 0  # the last input element is in no window


def test_batched_kernel_and_broadcast_input():
    # perturbations: a batch of kernels against one g; a batch of g against one x
    k = _rand(4, 3, 2, 2, 3)  # 4 kernels [3, 2, 2, 3]
    g = _rand(3, 3, 2)
    shapes = {"g": (3, 3, 2), "k": (3, 2, 2, 3), "x": (2, 4, 4)}
    text = "conv_transpose2d(g, k, stride=[1, 2], padding=[0, 1], size=[4, 4])"
    node = infer_shapes(parse(text), shapes)
    for backend, mod, conv in (("numpy", np, np.asarray), ("torch", torch, _t)):
        got = np.asarray(interp.run(node, {"g": conv(g), "k": conv(k)}, backend, mod))
        for b in range(4):
            want = torch.nn.grad.conv2d_input((1, 2, 4, 4), _t(k[b]), _t(g[None]), stride=(1, 2), padding=(0, 1))
            np.testing.assert_allclose(got[b], want[0].numpy(), rtol=1e-12, atol=1e-14, err_msg=backend)
    x, gs = _rand(2, 4, 4), _rand(5, 3, 3, 2)
    node = infer_shapes(parse("conv2d_weight(x, g, size=[2, 3], stride=[1, 2], padding=[0, 1])"), shapes)
    for backend, mod, conv in (("numpy", np, np.asarray), ("torch", torch, _t)):
        got = np.asarray(interp.run(node, {"x": conv(x), "g": conv(gs)}, backend, mod))
        for b in range(5):
            want = torch.nn.grad.conv2d_weight(_t(x[None]), (3, 2, 2, 3), _t(gs[b : b + 1]), (1, 2), (0, 1))
            np.testing.assert_allclose(got[b], want.numpy(), rtol=1e-12, atol=1e-14, err_msg=backend)


POOLS = [("2", {"kernel_size": 2}), ("[2, 3], stride=1", {"kernel_size": (2, 3), "stride": 1}),
         ("3, stride=[1, 2]", {"kernel_size": 3, "stride": (1, 2)})]  # fmt: skip


def _pool_case(kind: str, torch_kw: dict):
    x = _rand(2, 2, 6, 7)
    xt = _t(x, True)
    pool = F.max_pool2d if kind == "max" else F.avg_pool2d
    out = pool(xt, **torch_kw)
    g = _rand(*out.shape)
    (dx,) = torch.autograd.grad(out, xt, _t(g))  # samples are independent: one VJP for both
    return x, g, dx.numpy()


@pytest.mark.parametrize("args, torch_kw", POOLS, ids=["size2", "rect-stride1", "stride-per-axis"])
def test_maxpool2d_backward_forms_are_torchs_vjp(args, torch_kw):
    x, g, dx = _pool_case("max", torch_kw)
    args = args.replace("[2, 3]", "size=[2, 3]")
    got = _forms(f"maxpool2d_backward(x, g, {args})", {"x": x, "g": g}, {"x": x.shape[1:], "g": g.shape[1:]})
    _assert_forms(got, dx)


@pytest.mark.parametrize("args, torch_kw", POOLS, ids=["size2", "rect-stride1", "stride-per-axis"])
def test_avgpool2d_backward_forms_are_torchs_vjp(args, torch_kw):
    x, g, dx = _pool_case("avg", torch_kw)
    args = args.replace("[2, 3]", "size=[2, 3]")
    got = _forms(f"avgpool2d_backward(g, {args}, shape=[2, 6, 7])", {"g": g}, {"g": g.shape[1:]})
    _assert_forms(got, dx)


def test_maxpool2d_backward_ties_go_to_the_first_maximum_in_every_form():
    # each 2x2 window ties: torch sends g to the first maximal element (row-major)
    x = np.array([[[[1.0, 3.0, 2.0, 2.0], [3.0, 0.0, 2.0, 2.0]]]])  # windows: 3 = 3 (first at [0, 1]); all 2s
    g = np.array([[[[5.0, 7.0]]]])
    xt = _t(x, True)
    (dx,) = torch.autograd.grad(F.max_pool2d(xt, 2), xt, _t(g))
    want = np.array([[[[0.0, 5.0, 7.0, 0.0], [0.0, 0.0, 0.0, 0.0]]]])
    np.testing.assert_array_equal(dx.numpy(), want)
    _assert_forms(_forms("maxpool2d_backward(x, g, 2)", {"x": x, "g": g}, {"x": (1, 2, 4), "g": (1, 1, 2)}), want)


def test_nan_stays_in_the_windows_that_hold_it():
    x, g = _rand(2, 1, 4, 4), _rand(2, 1, 2, 2)
    x[0, 0, 1, 1] = np.nan  # sample 0, the top-left window
    with np.errstate(invalid="ignore"):
        got = _forms("maxpool2d_backward(x, g, 2)", {"x": x, "g": g}, {"x": (1, 4, 4), "g": (1, 2, 2)})
    for form in ("numpy", "mpmath"):
        nan = np.isnan(got[form])
        assert nan[0, 0, :2, :2].all() and nan.sum() == 4, form
        np.testing.assert_array_equal(got[form][1], got["sympy"][1])


# --- gradients through the ops, three ways, against torch's double backward --------------


def _check_against_torch(model: dict, fn, params: dict, data: dict) -> gc.Report:
    """All three sources agree, and equal torch float64's gradient of the mean of ``fn`` over samples."""
    model = gc.Model.from_dict(
        {
            "params": {k: v.tolist() for k, v in params.items()},
            "data": {k: v.tolist() for k, v in data.items()},
            **model,
        }
    )
    report = gc.check(model)
    assert report.status == "agree", report.table()
    p = {k: _t(v, True) for k, v in params.items()}
    n = len(next(iter(data.values())))
    total = sum(fn(p, {k: _t(v[i]) for k, v in data.items()}) for i in range(n)) / n
    grads = torch.autograd.grad(total, list(p.values()))
    for (name, want), src in ((item, s) for item in zip(p, grads) for s in SOURCES):
        want = want.numpy()
        got = np.asarray(report.points[0].gradients[name].values[src])
        tol = 1e-7 if src == "finite_difference" else 1e-10
        np.testing.assert_allclose(got, want, rtol=tol, atol=tol * np.abs(want).max(), err_msg=f"{name} {src}")
    return report


def _vjp(out: torch.Tensor, wrt: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
    (grad,) = torch.autograd.grad(out, wrt, g, create_graph=True)
    return grad


def test_gradients_through_conv_transpose2d():
    params = {"v": _rand(2, 3, 2, scale=0.5), "k": _rand(2, 1, 2, 3, scale=0.5)}
    data = {"y": _rand(2, 1, 5, 4)}

    def fn(p, s):
        x = torch.zeros(1, 1, 5, 4, dtype=torch.float64, requires_grad=True)
        dx = _vjp(F.conv2d(x, p["k"], stride=2, padding=1), x, p["v"][None])[0]
        return (torch.tanh(dx) * s["y"]).sum()

    _check_against_torch(
        {"model": {"loss": "sum(tanh(conv_transpose2d(v, k, stride=2, padding=1, size=[5, 4])) * y)"}},
        fn, params, data,
    )  # fmt: skip


def test_gradients_through_conv1d_weight():
    params = {"u": _rand(2, 7, scale=0.5), "v": _rand(2, 4, scale=0.5)}
    data = {"x": _rand(2, 2, 7), "y": _rand(2, 2, 2, 3)}

    def fn(p, s):
        k = torch.zeros(2, 2, 3, dtype=torch.float64, requires_grad=True)
        dk = _vjp(F.conv1d((s["x"] * p["u"])[None], k, stride=2, padding=1), k, p["v"][None])
        return (torch.sin(dk) * s["y"]).sum()

    _check_against_torch(
        {"model": {"loss": "sum(sin(conv1d_weight(x * u, v, 3, stride=2, padding=1)) * y)"}}, fn, params, data
    )


def test_gradients_through_maxpool2d_backward():
    # in x: piecewise constant (0 away from ties); in g: the routing
    params = {"u": _rand(1, 4, 4), "v": _rand(1, 2, 2)}
    data = {"x": _rand(2, 1, 4, 4), "y": _rand(2, 1, 4, 4)}

    def fn(p, s):
        h = (s["x"] * p["u"])[None]
        return (_vjp(F.max_pool2d(h, 2), h, p["v"][None]) ** 2 * s["y"]).sum()

    report = _check_against_torch({"model": {"loss": "sum(maxpool2d_backward(x * u, v, 2)**2 * y)"}}, fn, params, data)
    np.testing.assert_array_equal(np.asarray(report.points[0].gradients["u"].values["autograd"]), 0.0)


def test_gradients_through_avgpool2d_backward():
    params = {"v": _rand(1, 2, 2)}
    data = {"y": _rand(2, 1, 4, 5)}

    def fn(p, s):
        x = torch.zeros(1, 1, 4, 5, dtype=torch.float64, requires_grad=True)
        return (torch.exp(_vjp(F.avg_pool2d(x, (3, 2), (1, 2)), x, p["v"][None])) * s["y"]).sum()

    _check_against_torch(
        {"model": {"loss": "sum(exp(avgpool2d_backward(v, size=[3, 2], stride=[1, 2], shape=[1, 4, 5])) * y)"}},
        fn, params, data,
    )  # fmt: skip


def test_maxpool2d_backward_at_a_tie_is_a_kink():
    model = gc.Model.from_dict(
        {
            "params": {"u": [[[1.0, 1.0], [0.0, 1.0]]], "v": [[[2.0]]]},
            "model": {"loss": "sum(maxpool2d_backward(u, v, 2) * u)"},
        }
    )
    report = gc.check(model)
    g = report.points[0].gradients["u"]
    assert g.status == "kink", report.table()
    assert "maxpool2d_backward(u, v, size=2)" in g.note and "first maximal element" in g.note
    # torch: v to u[0, 0, 0] (the first of the tied maximum), and the loss's own u term
    u, v = _t(np.array([[[[1.0, 1.0], [0.0, 1.0]]]]), True), _t(np.array([[[[2.0]]]]))
    (_vjp(F.max_pool2d(u, 2), u, v) * u).sum().backward()
    np.testing.assert_array_equal(np.asarray(g.values["autograd"]), u.grad.numpy()[0])
    np.testing.assert_array_equal(np.asarray(g.values["symbolic"]), u.grad.numpy()[0])


# --- the ops as a model's hand-derived ``expected`` ----------------------------------------


def _expected_verdict(spec: dict) -> gc.Report:
    return gc.check(gc.Model.from_dict(spec))


def test_conv2d_gradients_written_with_conv2d_weight_and_conv_transpose2d_agree():
    spec = {
        "params": {"k": _rand(2, 1, 2, 2, scale=0.5).tolist(), "u": _rand(1, 4, 3).tolist()},
        "data": {"x": _rand(2, 1, 4, 3).tolist()},
        "model": {"z": "conv2d(x * u, k, stride=2, padding=1)", "loss": "sum(tanh(z)**2)"},
        "expected": {
            "k": "conv2d_weight(x * u, 2*tanh(z)*(1 - tanh(z)**2), size=[2, 2], stride=2, padding=1)",
            "u": "x * conv_transpose2d(2*tanh(z)*(1 - tanh(z)**2), k, stride=2, padding=1, size=[4, 3])",
        },
    }
    report = _expected_verdict(spec)
    assert report.status == "agree", report.table()
    assert "expected" in report.points[0].gradients["k"].values
    # the forward input's size matters: the default (the smallest input, 2 columns) is not u's shape
    spec["expected"]["u"] = "x * conv_transpose2d(2*tanh(z)*(1 - tanh(z)**2), k, stride=2, padding=1)"
    with pytest.raises(gc.ModelError, match=r"shapes \[1, 4, 3\] and \[1, 4, 2\] do not broadcast"):
        gc.Model.from_dict(spec)


def test_conv1d_gradients_written_with_conv1d_weight_and_conv_transpose1d_agree():
    spec = {
        "params": {"k": _rand(2, 2, 3, scale=0.5).tolist(), "u": _rand(2, 6).tolist()},
        "data": {"x": _rand(2, 2, 6).tolist(), "y": _rand(2, 2, 3).tolist()},
        "model": {"z": "conv1d(x * u, k, stride=2, padding=1)", "loss": "sum((z - y)**2)"},
        "expected": {
            "k": "conv1d_weight(x * u, 2*(z - y), 3, stride=2, padding=1)",
            "u": "x * conv_transpose1d(2*(z - y), k, stride=2, padding=1, size=6)",
        },
    }
    report = _expected_verdict(spec)
    assert report.status == "agree", report.table()
    # a wrong hand derivation (the kernel's gradient without the input scale u) is caught
    spec["expected"]["k"] = "conv1d_weight(x, 2*(z - y), 3, stride=2, padding=1)"
    wrong = _expected_verdict(spec)
    assert wrong.points[0].gradients["k"].status != "agree"
    assert wrong.points[0].gradients["u"].status == "agree"


def test_maxpool2d_gradient_written_with_maxpool2d_backward_agrees():
    spec = {
        "params": {
            "u": [[[0.5, -1.2, 0.3, 0.9], [1.1, 0.2, -0.7, 0.4], [-0.3, 0.8, 1.5, -0.6], [0.6, -0.9, 0.1, 1.3]]]
        },
        "data": {"x": _rand(2, 1, 4, 4).tolist()},
        "model": {"h": "x * u", "p": "maxpool2d(h, 2)", "loss": "sum(sin(p))"},
        "expected": {"u": "x * maxpool2d_backward(h, cos(p), 2)"},
    }
    report = _expected_verdict(spec)
    assert report.status == "agree", report.table()
    # routed by the windows' maxima of x instead of x * u: wrong where u < 0 moves the maximum
    spec["expected"]["u"] = "x * maxpool2d_backward(x, cos(p), 2)"
    assert _expected_verdict(spec).points[0].gradients["u"].status != "agree"


def test_avgpool2d_gradient_written_with_avgpool2d_backward_agrees():
    spec = {
        "params": {"u": _rand(1, 4, 4).tolist()},
        "data": {"x": _rand(2, 1, 4, 4).tolist()},
        "model": {"h": "x * u", "q": "avgpool2d(h, 3, stride=1)", "loss": "sum(q**2)"},
        "expected": {"u": "x * avgpool2d_backward(2*q, 3, stride=1, shape=[1, 4, 4])"},
    }
    report = _expected_verdict(spec)
    assert report.status == "agree", report.table()
    spec["expected"]["u"] = "x * avgpool2d_backward(2*q, 3, stride=1, shape=[1, 4, 4]) * 9"  # the sum's, not the mean's
    assert _expected_verdict(spec).points[0].gradients["u"].status != "agree"


# --- the language -----------------------------------------------------------------------


def test_size_is_positional_and_printed_as_a_keyword():
    assert parse("conv1d_weight(x, g, 3, stride=2)").attrs == (("size", 3), ("stride", 2))
    assert parse("maxpool2d_backward(x, g, 2)").attrs == (("size", 2),)
    assert parse("conv_transpose1d(g, k, 2, 1)").attrs == (("stride", 2), ("padding", 1))
    text = "avgpool2d_backward(g, 2, shape=[1, 4, 4])"
    assert unparse(parse(text)) == "avgpool2d_backward(g, size=2, shape=[1, 4, 4])"
    assert (
        unparse(parse("conv2d_weight(x, g, size=[3, 3], padding=1)")) == "conv2d_weight(x, g, size=[3, 3], padding=1)"
    )


def _spec(loss: str, shapes: dict[str, tuple[int, ...]]) -> dict:
    return {"params": {k: np.zeros(s).tolist() for k, s in shapes.items()}, "model": {"loss": loss}}


@pytest.mark.parametrize(
    "loss, shapes, match",
    [
        ("sum(conv_transpose2d(g, k))", {"g": (3, 4, 4), "k": (2, 1, 3, 3)},
         r"the kernel \[2, 1, 3, 3\] has 2 output channels but g \[3, 4, 4\] has 3"),
        ("sum(conv_transpose1d(g, k))", {"g": (2, 4, 4), "k": (2, 1, 3)},
         r"conv_transpose1d needs a cotangent g of shape \[C_out, L_out\], got shape \[2, 4, 4\]"),
        ("sum(conv_transpose1d(g, k, stride=2, size=9))", {"g": (2, 3), "k": (2, 1, 3)},
         r"size=\[9\] does not fit g \[2, 3\]: conv1d of an input of length 9 .* has 4 positions, not 3"),
        ("sum(conv_transpose1d(g, k, padding=3))", {"g": (2, 2), "k": (2, 1, 3)},
         r"padding=\[3\] leaves no input"),
        ("sum(conv2d_weight(x, g))", {"x": (1, 4, 4), "g": (2, 3, 3)},
         r"conv2d_weight needs the kernel's size: conv2d_weight\(x, g, size=\[3, 3\]\)"),
        ("sum(conv2d_weight(x, g, size=[2, 2], stride=2))", {"x": (1, 4, 4), "g": (2, 3, 3)},
         r"g \[2, 3, 3\] does not fit x \[1, 4, 4\]: conv2d of x .* has \[2, 2\] positions"),
        ("sum(conv1d_weight(x, g, 9))", {"x": (1, 4), "g": (2, 1)},
         r"kernel size \[9\] is larger than the padded input x \[1, 4\]"),
        ("sum(conv2d_weight(x, g, size=[2, 2, 2]))", {"x": (1, 4, 4), "g": (2, 3, 3)},
         r"size= needs one integer or a list of 2"),
        ("sum(maxpool2d_backward(x, g, 2))", {"x": (1, 4, 4), "g": (1, 3, 3)},
         r"g has shape \[1, 3, 3\] but maxpool2d of x \[1, 4, 4\] has shape \[1, 2, 2\]"),
        ("sum(maxpool2d_backward(x, g))", {"x": (1, 4, 4), "g": (1, 2, 2)},
         r"maxpool2d_backward needs a window size"),
        ("sum(avgpool2d_backward(g, 2))", {"g": (1, 2, 2)}, r"avgpool2d_backward needs the forward input's shape"),
        ("sum(avgpool2d_backward(g, 2, shape=[4, 4]))", {"g": (1, 2, 2)},
         r"shape= must be the forward input's \[C, H, W\], got \[4, 4\]"),
        ("sum(avgpool2d_backward(g, 2, shape=[1, 6, 4]))", {"g": (1, 2, 2)},
         r"avgpool2d of an input of shape \[1, 6, 4\] has shape \[1, 3, 2\]"),
    ],
)  # fmt: skip
def test_shape_errors_name_entry_position_and_fix(loss, shapes, match):
    with pytest.raises(gc.ModelError, match=match) as err:
        gc.Model.from_dict(_spec(loss, shapes))
    text = str(err.value)
    assert "model.loss" in text and "^" in text and "shape error" in text


# --- the layers' vector-Jacobian rules: derived formulas, used as ``expected``, agree ----------------


ROUND_TRIP = {
    "conv2d": (
        {"k": (2, 1, 2, 2), "u": (1, 4, 3), "b": (2, 1, 1)}, {"x": (1, 4, 3)},
        {"z": "conv2d(x * u, k, stride=2, padding=1) + b", "loss": "sum(tanh(z)**2)"},
        {"k": "conv2d_weight(x * u, ", "u": "conv_transpose2d("},
    ),
    "conv1d": (
        {"k": (2, 2, 3), "u": (2, 6)}, {"x": (2, 6), "y": (2, 3)},
        {"z": "conv1d(x * u, k, stride=2, padding=1)", "loss": "sum((z - y)**2)"},
        {"k": "conv1d_weight(x * u, ", "u": "stride=2, padding=1, size=6)"},
    ),
    "pools": (
        {"u": (1, 4, 4)}, {"x": (1, 4, 4)},
        {"h": "x * u", "p": "maxpool2d(h, 2)", "q": "avgpool2d(h, 3, stride=1)", "loss": "sum(sin(p)) + sum(q**2)"},
        {"u": "maxpool2d_backward(h, cos(p), size=2)"},
    ),
    "conv_transpose2d": (
        {"v": (2, 3, 2), "k": (2, 1, 2, 3)}, {"y": (1, 5, 4)},
        {"loss": "sum(tanh(conv_transpose2d(v, k, stride=2, padding=1, size=[5, 4])) * y)"},
        {"v": "conv2d(", "k": "conv2d_weight("},
    ),
    "conv1d_weight": (
        {"u": (2, 7), "v": (2, 4)}, {"x": (2, 7), "y": (2, 2, 3)},
        {"loss": "sum(sin(conv1d_weight(x * u, v, 3, stride=2, padding=1)) * y)"},
        {"u": "conv_transpose1d(v, ", "v": "conv1d(x * u, "},
    ),
    "maxpool2d_backward": (
        {"u": (1, 4, 4), "v": (1, 2, 2)}, {"x": (1, 4, 4), "y": (1, 4, 4)},
        {"loss": "sum(maxpool2d_backward(x * u, v, 2)**2 * y)"},
        {"u": "0", "v": "avgpool2d("},
    ),
    "avgpool2d_backward": (
        {"v": (1, 2, 2)}, {"y": (1, 4, 5)},
        {"loss": "sum(exp(avgpool2d_backward(v, size=[3, 2], stride=[1, 2], shape=[1, 4, 5])) * y)"},
        {"v": "avgpool2d(y * exp(avgpool2d_backward(v, "},
    ),
}  # fmt: skip


@pytest.mark.parametrize("case", sorted(ROUND_TRIP))
def test_derived_formulas_use_the_backward_ops_and_agree_as_expected(case):
    params, data, entries, shown = ROUND_TRIP[case]
    spec = {
        "params": {k: _rand(*s).tolist() for k, s in params.items()},
        "data": {k: _rand(2, *s).tolist() for k, s in data.items()},
        "model": entries,
    }
    formulas = {name: gc.Model.from_dict(spec).gradient_expression(name) for name in params}
    for name, part in shown.items():
        assert part in formulas[name] if part != "0" else formulas[name] == "0", formulas[name]
    report = gc.check(gc.Model.from_dict({**spec, "expected": formulas}))
    assert report.status == "agree", report.table()
    for name, grad in report.points[0].gradients.items():
        want = np.asarray(grad.values["autograd"], dtype=float)
        np.testing.assert_allclose(
            np.asarray(grad.values["expected"], dtype=float), want, rtol=1e-9, atol=1e-12, err_msg=name
        )


def test_maxpool2d_backward_with_overlapping_windows_has_no_rule():
    spec = {"params": {"v": _rand(1, 3, 3).tolist()}, "data": {"x": _rand(2, 1, 4, 4).tolist()}}
    spec["model"] = {"loss": "sum(maxpool2d_backward(x, v, 2, stride=1)**2)"}
    with pytest.raises(gc.ModelError, match=r"no tensor-form rule for maxpool2d_backward with overlapping windows"):
        gc.Model.from_dict(spec).gradient_expression("v")


@pytest.mark.parametrize("case", ["conv_transpose2d", "conv1d_weight", "maxpool2d_backward", "avgpool2d_backward"])
def test_second_order_through_the_backward_ops_agrees(case):
    # the Hessian three ways: torch's double backward of its own VJPs, SymPy's, finite differences
    params, data, entries, _ = ROUND_TRIP[case]
    spec = {
        "params": {k: _rand(*s).tolist() for k, s in params.items()},
        "data": {k: _rand(2, *s).tolist() for k, s in data.items()},
        "model": entries,
    }
    report = gc.check(gc.Model.from_dict(spec), order=2)
    assert report.status == "agree" and report.points[0].hessian.status == "agree", report.table()


def test_a_constant_tensor_in_expected_is_accepted_and_its_parts_checked():
    spec = {"params": {"v": [[[1.0, 2.0], [3.0, 4.0]]]}, "model": {"loss": "sum(v)"}}
    report = gc.check(gc.Model.from_dict({**spec, "expected": {"v": "expand(1, shape=[1, 2, 2])"}}))
    assert report.status == "agree", report.table()
    with pytest.raises(gc.ModelError, match="division by zero"):
        gc.Model.from_dict({**spec, "expected": {"v": "expand(1/0, shape=[1, 2, 2])"}})
