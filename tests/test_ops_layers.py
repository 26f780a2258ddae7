"""conv1d, conv2d, maxpool2d, avgpool2d: all three sources against torch float64 computed here."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import gradcheck as gc
from gradcheck.expr import parse, unparse

SOURCES = ("symbolic", "autograd", "finite_difference")
RNG = np.random.default_rng(7)


def _rand(*shape: int, scale: float = 1.0) -> np.ndarray:
    return np.round(RNG.normal(0.0, scale, shape), 3)


def _torch_grads(fn, params: dict[str, np.ndarray], data: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Gradient of the mean over samples of ``fn(params, one sample)``, in torch float64, sample by sample."""
    p = {k: torch.tensor(v, dtype=torch.float64, requires_grad=True) for k, v in params.items()}
    n = len(next(iter(data.values())))
    total = sum(fn(p, {k: torch.tensor(v[i], dtype=torch.float64) for k, v in data.items()}) for i in range(n)) / n
    grads = torch.autograd.grad(total, list(p.values()))
    return {k: g.numpy() for k, g in zip(p, grads)}


def _check_against_torch(model_text: dict[str, str], fn, params, data, fd_rtol: float = 1e-7) -> gc.Report:
    model = gc.Model.from_dict(
        {
            "params": {k: v.tolist() for k, v in params.items()},
            "data": {k: v.tolist() for k, v in data.items()},
            "model": model_text,
        }
    )
    report = gc.check(model)
    assert report.status == "agree", report.table()
    want = _torch_grads(fn, params, data)
    for name, w in want.items():
        values = report.points[0].gradients[name].values
        for src in SOURCES:
            tol = fd_rtol if src == "finite_difference" else 1e-10
            np.testing.assert_allclose(
                np.asarray(values[src]), w, rtol=tol, atol=tol * np.abs(w).max(), err_msg=f"{name} {src}"
            )
    return report


# --- conv1d -------------------------------------------------------------------


@pytest.mark.parametrize("stride, padding", [(1, 0), (2, 1), (3, 2), ([2], [0])])
def test_conv1d_three_ways_against_torch(stride, padding):
    params = {"k": _rand(3, 2, 3, scale=0.5)}
    data = {"x": _rand(2, 2, 9), "y": _rand(2, 3, 1)}
    kw = f"stride={stride}, padding={padding}"

    def fn(p, s):
        st = stride[0] if isinstance(stride, list) else stride
        pd = padding[0] if isinstance(padding, list) else padding
        out = F.conv1d(s["x"][None], p["k"], stride=st, padding=pd)[0]
        return (torch.tanh(out) * s["y"]).sum()

    _check_against_torch({"loss": f"sum(tanh(conv1d(x, k, {kw})) * y)"}, fn, params, data)


# --- conv2d -------------------------------------------------------------------


CONV2D = [
    ("", {}),
    ("stride=2, padding=1", {"stride": 2, "padding": 1}),
    ("stride=[2, 1], padding=[0, 2]", {"stride": (2, 1), "padding": (0, 2)}),
]


@pytest.mark.parametrize("kw, torch_kw", CONV2D, ids=["plain", "stride2-pad1", "per-axis"])
def test_conv2d_kernel_and_input_three_ways_against_torch(kw, torch_kw):
    # u scales the data, so the input's gradient is checked too; 2 input channels, 3 output channels
    params = {"k": _rand(3, 2, 3, 2, scale=0.5), "u": _rand(2, 5, 6, scale=0.5)}
    data = {"x": _rand(2, 2, 5, 6)}
    sep = ", " if kw else ""

    def fn(p, s):
        out = F.conv2d((s["x"] * p["u"])[None], p["k"], **torch_kw)[0]
        return (torch.sin(out) ** 2).sum()

    _check_against_torch({"c": f"conv2d(x * u, k{sep}{kw})", "loss": "sum(sin(c)**2)"}, fn, params, data)


def test_conv2d_feeds_a_second_layer():
    # a kernel perturbation reaching a second conv (the dense path after the kernel rule)
    params = {"k1": _rand(2, 1, 2, 2, scale=0.5), "k2": _rand(2, 2, 2, 2, scale=0.5)}
    data = {"x": _rand(2, 1, 5, 5)}

    def fn(p, s):
        h = torch.tanh(F.conv2d(s["x"][None], p["k1"], padding=1))
        return F.conv2d(h, p["k2"], stride=2).pow(2).sum()

    _check_against_torch(
        {"h": "tanh(conv2d(x, k1, padding=1))", "loss": "sum(conv2d(h, k2, stride=2)**2)"}, fn, params, data
    )


def test_exact_loss_of_a_conv_is_torchs():
    params = {"k": _rand(2, 2, 2, 2)}
    data = {"x": _rand(2, 2, 4, 3)}
    model = gc.Model.from_dict(
        {
            "params": {"k": params["k"].tolist()},
            "data": {"x": data["x"].tolist()},
            "model": {"loss": "sum(conv2d(x, k, padding=1)**2)"},
        }
    )
    from gradcheck.sources import exact

    got = exact.per_sample_losses(model, {})
    want = (F.conv2d(torch.tensor(data["x"]), torch.tensor(params["k"]), padding=1) ** 2).sum(dim=(1, 2, 3))
    np.testing.assert_allclose(got, want.numpy(), rtol=1e-13)


# --- pools ----------------------------------------------------------------------


POOLS = [
    ("2", {"kernel_size": 2}),
    ("size=[2, 3], stride=1", {"kernel_size": (2, 3), "stride": 1}),
    ("3, stride=[1, 2]", {"kernel_size": 3, "stride": (1, 2)}),
]


@pytest.mark.parametrize("kind", ["maxpool2d", "avgpool2d"])
@pytest.mark.parametrize("args, torch_kw", POOLS, ids=["size2", "rect-stride1", "positional-stride-per-axis"])
def test_pools_three_ways_against_torch(kind, args, torch_kw):
    params = {"u": _rand(2, 5, 6)}
    data = {"x": _rand(2, 2, 5, 6)}
    pool = F.max_pool2d if kind == "maxpool2d" else F.avg_pool2d

    def fn(p, s):
        return (torch.tanh(pool((s["x"] * p["u"])[None], **torch_kw)[0]) ** 2).sum()

    _check_against_torch({"loss": f"sum(tanh({kind}(x * u, {args}))**2)"}, fn, params, data)


def test_maxpool_tie_is_a_kink_with_each_convention():
    # one 2x2 window whose four elements tie: not differentiable there
    model = gc.Model.from_dict({"params": {"u": [[[1.0, 1.0], [1.0, 1.0]]]}, "model": {"loss": "sum(maxpool2d(u, 2))"}})
    report = gc.check(model)
    g = report.points[0].gradients["u"]
    assert report.status == "kink" and g.status == "kink", report.table()
    assert "maxpool2d(u, size=2)" in g.note and "first maximal element" in g.note
    u = torch.ones(1, 1, 2, 2, dtype=torch.float64, requires_grad=True)
    F.max_pool2d(u, 2).sum().backward()
    np.testing.assert_array_equal(np.asarray(g.values["autograd"]), u.grad.numpy()[0])
    # SymPy's Heaviside(0) = 1/2 and the central difference (the average of the sides 1 and 0) agree
    np.testing.assert_allclose(np.asarray(g.values["symbolic"]), np.full((1, 2, 2), 0.5), rtol=1e-12)
    np.testing.assert_allclose(np.asarray(g.values["finite_difference"]), np.full((1, 2, 2), 0.5), rtol=1e-6)


def test_maxpool_tie_in_one_sample_only():
    x = np.array([[[[1.0, 2.0], [0.5, 0.0]]], [[[3.0, 3.0], [1.0, 2.0]]]])  # sample 1 ties 3 = 3
    model = gc.Model.from_dict(
        {
            "params": {"u": [[[1.0, 1.0], [1.0, 1.0]]]},
            "data": {"x": x.tolist()},
            "model": {"loss": "sum(maxpool2d(x * u, 2))"},
        }
    )
    g = gc.check(model).points[0].gradients["u"]
    assert g.status == "kink" and "sample 1 " in g.note


def test_maxpool_without_ties_is_no_kink():
    model = gc.Model.from_dict(
        {
            "params": {"u": [[[1.0, 1.5], [1.25, 1.0]], [[0.0, 1.0], [2.0, 3.0]]]},
            "model": {"loss": "sum(maxpool2d(u, 2))"},
        }
    )
    report = gc.check(model)
    assert report.status == "agree", report.table()
    want = np.array([[[0.0, 1.0], [0.0, 0.0]], [[0.0, 0.0], [0.0, 1.0]]])
    for src in SOURCES:
        np.testing.assert_allclose(np.asarray(report.points[0].gradients["u"].values[src]), want, atol=1e-8)


# --- the language ---------------------------------------------------------------------


def test_pool_size_is_the_second_positional_argument():
    assert parse("maxpool2d(x, 2)").attrs == (("size", 2),)
    assert parse("avgpool2d(x, 3, stride=1)").attrs == (("size", 3), ("stride", 1))
    assert unparse(parse("maxpool2d(x, 2)")) == "maxpool2d(x, size=2)"
    assert parse("conv2d(x, k, stride=[2, 1])").attrs == (("stride", (2, 1)),)


def _model(loss: str, x_shape, k_shape) -> dict:
    return {
        "params": {"k": np.zeros(k_shape).tolist()},
        "data": {"x": np.zeros((2,) + tuple(x_shape)).tolist()},
        "model": {"loss": loss},
    }


@pytest.mark.parametrize(
    "loss, x_shape, k_shape, match",
    [
        ("sum(conv2d(x, k))", (3, 5, 5), (4, 2, 3, 3), r"takes 2 input channels but the input \[3, 5, 5\] has 3"),
        ("sum(conv2d(x, k, padding=1))", (2, 3, 3), (4, 2, 6, 3), r"larger than the padded input \(6 > 3 \+ 2\*1\)"),
        ("sum(conv2d(x, k, stride=0))", (2, 5, 5), (4, 2, 3, 3), r"stride= must be at least 1, got 0"),
        ("sum(conv1d(x, k, stride=[1, 2]))", (2, 5), (4, 2, 3), r"stride= needs one integer or a list of 1"),
        ("sum(conv2d(x, k))", (2, 5), (4, 2, 3, 3), r"needs an input of shape \[C_in, H, W\], got shape \[2, 5\]"),
        ("sum(maxpool2d(x * k, 7))", (2, 5, 5), (2, 5, 5), r"window \[7, 7\] is larger than the input"),
        ("sum(avgpool2d(x * k))", (2, 5, 5), (2, 5, 5), r"avgpool2d needs a window size"),
    ],
)
def test_shape_errors_name_entry_position_and_fix(loss, x_shape, k_shape, match):
    with pytest.raises(gc.ModelError, match=match) as err:
        gc.Model.from_dict(_model(loss, x_shape, k_shape))
    text = str(err.value)
    assert "model.loss" in text and "^" in text
    assert "sum(" in text.splitlines()[-2]


def test_an_expression_as_pool_size_is_refused():
    with pytest.raises(gc.ModelError, match=r"maxpool2d\(\) takes 1 argument, got 2") as err:
        gc.Model.from_dict(_model("sum(maxpool2d(x, k))", (2, 4, 4), (2, 4, 4)))
    assert "maxpool2d(x, 2)" in str(err.value)
