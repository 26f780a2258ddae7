"""gc.from_torch: PyTorch code traced into a model (issue 13, SPEC section 6).

Exact (symbolic) gradients of the traced model are compared with torch's
own float64 gradients of the user's code, computed here by a loop over the
samples; every mapping in the table is also loaded and checked end to end.
"""

from __future__ import annotations

import math
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

import gradcheck as gc
from gradcheck.trace import trace

REPO = Path(__file__).resolve().parents[1]

pytest_plugins = ["pytester"]


def torch_gradients(fn, params, data):
    """d(mean over samples of fn(params, sample))/d(param), by torch autograd in float64."""
    leaves = {k: v.detach().clone().double().requires_grad_(True) for k, v in params.items()}
    n = next(iter(data.values())).shape[0] if data else 1
    total = sum(fn(leaves, {k: v[i] for k, v in data.items()}) for i in range(n)) / n
    total.backward()
    return {k: v.grad.numpy() for k, v in leaves.items()}


def exact(report, name):
    return np.asarray(report.points[0].gradients[name].values["symbolic"])


def entries(model):
    return {k: model.to_dict()["model"][k] for k in model.entries}


# --- a plain function --------------------------------------------------------------------


def plain(p, s):
    h = torch.tanh(p["W"] @ s["x"] + p["b"])
    z = torch.sigmoid(p["W"].T @ h) * 2.0 + torch.exp(-h[0]) - 1 / (1 + h.sum() ** 2)
    q = torch.softmax(z, dim=0)
    return (q[1] - s["y"]) ** 2 + 0.5 * torch.relu(z).mean() + torch.log1p(h**2).sum() / 3


def plain_case():
    g = torch.Generator().manual_seed(1)
    params = {
        "W": torch.randn(2, 3, generator=g, dtype=torch.float64),
        "b": torch.randn(2, generator=g, dtype=torch.float64),
    }
    data = {
        "x": torch.randn(4, 3, generator=g, dtype=torch.float64),
        "y": torch.rand(4, generator=g, dtype=torch.float64),
    }
    return params, data


def test_a_plain_function_has_torchs_gradients_exactly():
    params, data = plain_case()
    model = gc.from_torch(plain, params=params, data=data)
    assert list(model.params) == ["W", "b"] and list(model.data) == ["x", "y"]
    assert list(model.entries)[-1] == "loss"
    report = gc.check(model)
    assert report.ok, report.table(width=200)
    want = torch_gradients(plain, params, data)
    for name in params:
        np.testing.assert_allclose(exact(report, name), want[name], rtol=1e-10, atol=1e-12)
    assert "torch:plain" in report.points[0].gradients["W"].values  # the user's code joined as against


def test_the_entries_read_as_the_code():
    params, data = plain_case()
    text = entries(gc.from_torch(plain, params=params, data=data))
    assert list(text.items())[:6] == [
        ("matmul1", "W @ x"),
        ("add1", "matmul1 + b"),
        ("tanh1", "tanh(add1)"),
        ("transpose1", "W.T"),
        ("matmul2", "transpose1 @ tanh1"),
        ("sigmoid1", "sigmoid(matmul2)"),
    ]
    assert text["part1"] == "tanh1[0]" and text["div1"] == "1 / add3" and text["softmax1"] == "softmax(sub1)"
    assert text["loss"] == "add4 + div2"


def test_round_trip_through_yaml_gives_identical_values():
    params, data = plain_case()
    model = gc.from_torch(plain, params=params, data=data)
    again = gc.loads(model.to_yaml())
    assert again.to_dict() == model.to_dict()
    a, b = gc.check(model), gc.check(again)
    for name in model.params:
        for source in ("symbolic", "autograd", "finite_difference"):
            np.testing.assert_array_equal(
                a.points[0].gradients[name].values[source], b.points[0].gradients[name].values[source]
            )
    assert a.points[0].loss == b.points[0].loss


# --- an nn.Module through functional_call ------------------------------------------------


def mlp_case():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 1)).double()
    params = {k: v.detach().clone() for k, v in net.named_parameters()}

    def loss(p, s):
        return F.mse_loss(torch.func.functional_call(net, p, (s["x"],)), s["y"])

    g = torch.Generator().manual_seed(2)
    data = {
        "x": torch.randn(5, 3, generator=g, dtype=torch.float64),
        "y": torch.randn(5, 1, generator=g, dtype=torch.float64),
    }
    return loss, params, data


def test_an_nn_module_through_functional_call():
    loss, params, data = mlp_case()
    model = gc.from_torch(loss, params=params, data=data)
    assert list(model.params) == ["p0_weight", "p0_bias", "p2_weight", "p2_bias"]
    assert entries(model) == {
        "linear1": "p0_weight @ x + p0_bias",
        "tanh1": "tanh(linear1)",
        "linear2": "p2_weight @ tanh1 + p2_bias",
        "loss": "mean((linear2 - y) ** 2)",
    }
    report = gc.check(model)
    assert report.ok, report.table(width=200)
    want = torch_gradients(loss, params, data)
    for key, name in zip(params, model.params):
        np.testing.assert_allclose(exact(report, name), want[key], rtol=1e-10, atol=1e-12)
    again = gc.loads(model.to_yaml())
    b = gc.check(again)
    for name in model.params:
        np.testing.assert_array_equal(exact(report, name), exact(b, name))


def test_the_traced_fn_catches_a_custom_op_that_differs():
    class Wrong(torch.autograd.Function):  # tanh forward, a wrong backward
        @staticmethod
        def forward(ctx, x):
            ctx.save_for_backward(x)
            return torch.tanh(x)

        @staticmethod
        def backward(ctx, g):
            (x,) = ctx.saved_tensors
            return g * (1 - torch.tanh(x))  # should be 1 - tanh(x)**2

    calls = {"n": 0}

    def fn(p, s):
        calls["n"] += 1
        h = torch.tanh(p["w"] * s["x"]) if calls["n"] == 1 else Wrong.apply(p["w"] * s["x"])
        return (h - s["y"]) ** 2

    model = gc.from_torch(
        fn, params={"w": torch.tensor(0.7)}, data={"x": torch.tensor([1.0, 2.0]), "y": torch.tensor([0.5, -0.5])}
    )
    report = gc.check(model)
    assert not report.ok and report.points[0].gradients["w"].odd_one_out == "torch:fn"


# --- classifiers and attention ------------------------------------------------------------


def test_cross_entropy_on_index_targets_becomes_one_hot_data():
    torch.manual_seed(3)
    net = nn.Sequential(nn.Linear(3, 5), nn.GELU(approximate="tanh"), nn.Linear(5, 4)).double()
    params = {k: v.detach().clone() for k, v in net.named_parameters()}

    def fn(p, s):
        return F.cross_entropy(torch.func.functional_call(net, p, (s["x"],)), s["label"])

    data = {"x": torch.randn(6, 3, dtype=torch.float64), "label": torch.tensor([0, 3, 1, 1, 2, 3])}
    model = gc.from_torch(fn, params=params, data=data)
    assert model.to_dict()["model"]["loss"] == "logsumexp(linear2) - dot(label_onehot1, linear2)"
    np.testing.assert_array_equal(model.data["label_onehot1"], np.eye(4)[[0, 3, 1, 1, 2, 3]])
    report = gc.check(model)
    assert report.ok, report.table(width=200)
    want = torch_gradients(fn, params, data)
    for key, name in zip(params, model.params):
        np.testing.assert_allclose(exact(report, name), want[key], rtol=1e-10, atol=1e-12)


def test_cross_entropy_on_probabilities_and_a_constant_class():
    def soft(p, s):
        return F.cross_entropy(p["W"] @ s["x"], s["target"])

    def fixed(p, s):
        return F.cross_entropy(p["W"] @ s["x"], torch.tensor(2))

    g = torch.Generator().manual_seed(4)
    params = {"W": torch.randn(3, 2, generator=g, dtype=torch.float64)}
    data = {
        "x": torch.randn(4, 2, generator=g, dtype=torch.float64),
        "target": torch.softmax(torch.randn(4, 3, generator=g, dtype=torch.float64), 1),
    }
    for fn in (soft, fixed):
        model = gc.from_torch(fn, params=params, data=data)
        report = gc.check(model)
        assert report.ok, report.table(width=200)
        np.testing.assert_allclose(exact(report, "W"), torch_gradients(fn, params, data)["W"], rtol=1e-10, atol=1e-12)
    assert entries(gc.from_torch(fixed, params=params, data=data))["loss"] == "logsumexp(matmul1) - matmul1[2]"


@pytest.mark.slow
def test_an_attention_readout():
    def attend(p, s):
        q = p["Wq"] @ s["x"]
        keys = s["X"] @ p["Wk"].T
        weights = torch.softmax(keys @ q / math.sqrt(q.shape[0]), dim=-1)
        return ((weights @ (s["X"] @ p["Wv"].T)).sum() - s["y"]) ** 2

    g = torch.Generator().manual_seed(5)
    params = {k: torch.randn(2, 2, generator=g, dtype=torch.float64) for k in ("Wq", "Wk", "Wv")}
    data = {
        "x": torch.randn(2, 2, generator=g, dtype=torch.float64),
        "X": torch.randn(2, 2, 2, generator=g, dtype=torch.float64),
        "y": torch.randn(2, generator=g, dtype=torch.float64),
    }
    model = gc.from_torch(attend, params=params, data=data)
    report = gc.check(model)
    assert report.ok, report.table(width=200)
    want = torch_gradients(attend, params, data)
    for name in params:
        np.testing.assert_allclose(exact(report, name), want[name], rtol=1e-10, atol=1e-12)


def assert_torchs_gradients_and_round_trip(fn, params, data):
    """Status agree, symbolic gradients equal to torch's float64 ones, the same values after to_yaml/loads."""
    model = gc.from_torch(fn, params=params, data=data)
    report = gc.check(model)
    assert report.status == "agree", report.table(width=200)
    expected = torch_gradients(fn, params, data)
    for key, name in zip(params, model.params):
        np.testing.assert_allclose(exact(report, name), expected[key], rtol=1e-10, atol=1e-12)
    again = gc.check(gc.loads(model.to_yaml()))
    assert again.points[0].loss == report.points[0].loss
    for name in model.params:
        for source in ("symbolic", "autograd", "finite_difference"):
            np.testing.assert_array_equal(
                again.points[0].gradients[name].values[source], report.points[0].gradients[name].values[source]
            )
    return model


def classify(p, s):
    h = F.max_pool2d(torch.relu(F.conv2d(s["image"], p["kernel"], p["kbias"])), 2)
    return F.cross_entropy(F.linear(h.flatten(), p["W"], p["b"]), s["label"])


def test_a_conv_classifier_with_cross_entropy_on_index_targets():
    g = torch.Generator().manual_seed(6)
    params = {
        "kernel": torch.randn(2, 1, 3, 3, generator=g, dtype=torch.float64),
        "kbias": torch.randn(2, generator=g, dtype=torch.float64),
        "W": torch.randn(3, 8, generator=g, dtype=torch.float64),
        "b": torch.randn(3, generator=g, dtype=torch.float64),
    }
    data = {"image": torch.randn(2, 1, 6, 6, generator=g, dtype=torch.float64), "label": torch.tensor([2, 0])}
    model = assert_torchs_gradients_and_round_trip(classify, params, data)
    assert entries(model) == {
        "conv2d1": "conv2d(image, kernel) + reshape(kbias, [2, 1, 1])",
        "relu1": "relu(conv2d1)",
        "max_pool2d1": "maxpool2d(relu1, 2)",
        "flatten1": "flatten(max_pool2d1)",
        "linear1": "W @ flatten1 + b",
        "loss": "logsumexp(linear1) - dot(label_onehot1, linear1)",
    }
    np.testing.assert_array_equal(model.data["label_onehot1"], np.eye(3)[[2, 0]])


def attention(p, s):
    x = s["x"]
    Q, K, V = x @ p["Wq"], x @ p["Wk"], x @ p["Wv"]
    A = torch.softmax(Q @ K.T / math.sqrt(Q.shape[-1]), dim=-1) @ V
    return ((A - s["y"]) ** 2).mean()


def test_an_attention_block():
    g = torch.Generator().manual_seed(7)
    params = {k: torch.randn(2, 2, generator=g, dtype=torch.float64) for k in ("Wq", "Wk", "Wv")}
    data = {
        "x": torch.randn(2, 3, 2, generator=g, dtype=torch.float64),  # 2 samples, sequence 3, width 2
        "y": torch.randn(2, 3, 2, generator=g, dtype=torch.float64),
    }
    model = assert_torchs_gradients_and_round_trip(attention, params, data)
    text = entries(model)
    assert text["matmul4"] == "matmul1 @ transpose1" and text["softmax1"] == "softmax(div1, axis=1)"
    assert text["div1"] == f"matmul4 / {math.sqrt(2)!r}"


# --- names ----------------------------------------------------------------------------


def test_keys_that_are_no_names_are_mapped():
    def fn(p, s):
        return p["0.weight"] * p["exp"] + p["a.b"] * p["a_b"] + p["loss"]

    one = torch.tensor(1.5, dtype=torch.float64)
    model = gc.from_torch(fn, params={"0.weight": one, "exp": one, "a_b": one, "a.b": one, "loss": one})
    assert list(model.params) == ["p0_weight", "exp_2", "a_b", "a_b_2", "loss_2"]
    assert gc.check(model).ok


# --- unsupported code is named ------------------------------------------------------------


def test_an_op_without_a_mapping_is_named_with_the_line():
    def fn(p, s):
        return torch.sort(p["v"]).values.sum()

    with pytest.raises(gc.ModelError, match=r"test_from_torch\.py:\d+:\d+: torch\.sort has no translation") as err:
        gc.from_torch(fn, params={"v": torch.tensor([2.0, 1.0])})
    assert 'torch.sort(p["v"])' in str(err.value)


def test_data_dependent_control_flow_names_the_line():
    def fn(p, s):
        if (p["w"] * s["x"]).sum() > 0:
            return p["w"] ** 2
        return p["w"]

    line = fn.__code__.co_firstlineno + 1
    with pytest.raises(
        gc.ModelError, match=rf"test_from_torch\.py:{line}:\d+: data-dependent control flow: torch\.Tensor\.__bool__"
    ):
        gc.from_torch(fn, params={"w": torch.tensor(1.0)}, data={"x": torch.tensor([1.0, -1.0])})


def test_item_and_in_place_ops_are_named():
    with pytest.raises(gc.ModelError, match=r"torch\.Tensor\.item reads a traced tensor's value"):
        gc.from_torch(lambda p, s: p["w"] * p["w"].item(), params={"w": torch.tensor(1.0)})
    with pytest.raises(gc.ModelError, match=r"torch\.Tensor\.mul_ has no translation .* out of place"):
        gc.from_torch(lambda p, s: p["w"].clone().mul_(2).sum(), params={"w": torch.tensor(1.0)})
    with pytest.raises(gc.ModelError, match=r"torch\.nn\.functional\.conv2d: dilation=2"):
        gc.from_torch(
            lambda p, s: F.conv2d(p["x"], p["k"], dilation=2).sum(),
            params={"x": torch.ones(1, 5, 5), "k": torch.ones(1, 1, 2, 2)},
        )


def test_detach_is_named_with_the_line_and_the_fix():
    def fn(p, s):
        h = torch.tanh(p["w"] * s["x"])
        return (h.detach() * p["w"] - s["y"]) ** 2

    line = fn.__code__.co_firstlineno + 2
    data = {"x": torch.tensor([1.0, 2.0]), "y": torch.tensor([1.0, 2.0])}
    with pytest.raises(
        gc.ModelError,
        match=rf"test_from_torch\.py:{line}:\d+: `detach\(\)` \(torch\.Tensor\.detach\) stops the gradient",
    ) as err:
        gc.from_torch(fn, params={"w": torch.tensor(0.5)}, data=data)
    text = str(err.value)
    assert "h.detach()" in text and "no stop-gradient" in text and "remove it from fn" in text
    with pytest.raises(gc.ModelError, match=r"`\.data` \(torch\.Tensor\.data\.__get__\) stops the gradient"):
        gc.from_torch(lambda p, s: (p["w"] * 2).data * p["w"], params={"w": torch.tensor(0.5)})
    # a constant made outside the traced values may still be detached
    model = gc.from_torch(lambda p, s: p["w"] * torch.tensor(3.0).detach(), params={"w": torch.tensor(0.5)})
    assert exact(gc.check(model), "w") == pytest.approx(3.0, abs=1e-15)


def test_no_grad_around_a_traced_value_is_named_with_the_line_and_the_fix():
    def fn(p, s):
        with torch.no_grad():
            h = torch.tanh(p["w"] * s["x"])
        return (h * p["w"] - s["y"]) ** 2

    line = fn.__code__.co_firstlineno + 2
    data = {"x": torch.tensor([1.0, 2.0]), "y": torch.tensor([1.0, 2.0])}
    with pytest.raises(gc.ModelError, match=rf"test_from_torch\.py:{line}:\d+: .* with gradients off") as err:
        gc.from_torch(fn, params={"w": torch.tensor(0.5)}, data=data)
    assert "remove the no_grad block" in str(err.value)
    # tracing from inside no_grad (a notebook cell, say) is not the same thing: fn itself turns nothing off
    with torch.no_grad():
        model = gc.from_torch(lambda p, s: p["w"] * 3.0, params={"w": torch.tensor(0.5)})
    assert exact(gc.check(model), "w") == pytest.approx(3.0, abs=1e-15)


def test_what_the_new_mappings_cannot_hold_is_named():
    with pytest.raises(gc.ModelError, match=r"torch\.functional\.einsum: the equation 'ij,jk,kl->il'"):
        gc.from_torch(
            lambda p, s: torch.einsum("ij,jk,kl->il", p["A"], p["A"], p["A"]).sum(), params={"A": torch.ones(2, 2)}
        )
    with pytest.raises(gc.ModelError, match=r"torch\.functional\.einsum: the ellipsis"):
        gc.from_torch(lambda p, s: torch.einsum("...i,...i", p["A"], p["A"]).sum(), params={"A": torch.ones(2, 2)})
    with pytest.raises(
        gc.ModelError, match=r"torch\.Tensor\.transpose: transposing a tensor of rank 3 \(only matrices"
    ):
        gc.from_torch(lambda p, s: p["A"].transpose(1, 2).sum(), params={"A": torch.ones(2, 2, 3)})
    with pytest.raises(gc.ModelError, match=r"torch\.permute: transposing a tensor of rank 3"):
        gc.from_torch(lambda p, s: torch.permute(p["A"], (2, 0, 1)).sum(), params={"A": torch.ones(2, 2, 3)})


def test_an_nn_batchnorm_module_in_training_mode_uses_the_batch_statistics():
    torch.manual_seed(4)
    net = nn.Sequential(nn.Linear(2, 3), nn.BatchNorm1d(3), nn.Tanh(), nn.Linear(3, 1)).double()
    params = {k: v.detach().clone() for k, v in net.named_parameters()}
    g = torch.Generator().manual_seed(5)
    # one sample is a batch of 4 rows: batch norm's statistics are over that sample's rows
    data = {
        "x": torch.randn(2, 4, 2, generator=g, dtype=torch.float64),
        "y": torch.randn(2, 4, 1, generator=g, dtype=torch.float64),
    }

    def fn(p, s):
        return F.mse_loss(torch.func.functional_call(net, p, (s["x"],)), s["y"])

    model = gc.from_torch(fn, params=params, data=data)
    assert "mean(linear1, axis=0, keepdims=True)" in model.to_dict()["model"]["batch_norm1"]
    report = gc.check(model)
    assert report.ok, report.table(width=200)
    net.train()
    want = torch_gradients(fn, params, data)
    for key, name in zip(params, model.params):
        np.testing.assert_allclose(exact(report, name), want[key], rtol=1e-10, atol=1e-12)


def test_a_loss_that_is_not_a_scalar_is_refused():
    with pytest.raises(gc.ModelError, match=r"shape \[2\], not one sample's scalar loss"):
        gc.from_torch(lambda p, s: p["v"] * 2, params={"v": torch.tensor([1.0, 2.0])})


# --- each mapping: its text, then loaded and checked against torch ---------------------------


def mapped_values(shapes):
    return {
        k: torch.linspace(-1.0, 1.0, int(np.prod(s)), dtype=torch.float64).reshape(s) + 0.13 for k, s in shapes.items()
    }


def traced_text(fn, shapes):
    """The text of the entry ``fn`` makes from params of ``shapes`` (the one before the final sum)."""
    spec = trace(lambda p, s: fn(p).sum(), params=mapped_values(shapes)).spec
    texts = list(spec["model"].values())
    assert texts[-1].startswith("sum(")
    return texts[-2]


@pytest.mark.parametrize(
    ("fn", "shapes", "want"),
    [
        (lambda p: F.gelu(p["x"]), {"x": (3,)}, "gelu(x)"),
        (lambda p: F.silu(p["x"]), {"x": (3,)}, "silu(x)"),
        (lambda p: F.leaky_relu(p["x"], 0.2), {"x": (3,)}, "leaky_relu(x, slope=0.2)"),
        (lambda p: torch.clamp(p["x"], -0.5, 0.5), {"x": (3,)}, "clamp(x, (-0.5), 0.5)"),
        (lambda p: torch.where(p["x"] > 0, p["x"], 0.0), {"x": (3,)}, "where(gt1, x, 0.0)"),
        (lambda p: (p["x"] > 0.5) * p["x"], {"x": (3,)}, "gt1 * x"),
        (lambda p: p["M"].sum(dim=1, keepdim=True), {"M": (2, 3)}, "sum(M, axis=1, keepdims=True)"),
        (lambda p: p["M"].var(dim=0), {"M": (2, 3)}, "var(M, axis=0) * 2 / 1"),
        (lambda p: F.log_softmax(p["x"], dim=0), {"x": (3,)}, "log_softmax(x)"),
        (lambda p: p["M"][:, 1], {"M": (2, 3)}, "M[:, 1]"),
        (lambda p: p["M"][0:1, 1:], {"M": (2, 3)}, "M[:1, 1:]"),
        (lambda p: p["M"].reshape(3, 2), {"M": (2, 3)}, "reshape(M, [3, 2])"),
        (lambda p: p["M"].flatten(), {"M": (2, 3)}, "flatten(M)"),
        (lambda p: p["M"].permute(1, 0), {"M": (2, 3)}, "M.T"),
        (lambda p: torch.cat([p["x"], p["x"]]), {"x": (3,)}, "concat(x, x)"),
        (lambda p: torch.stack([p["x"], p["x"]], dim=1), {"x": (3,)}, "stack(x, x, axis=1)"),
        (lambda p: torch.outer(p["x"], p["x"]), {"x": (3,)}, "outer(x, x)"),
        (lambda p: torch.diag(p["x"]), {"x": (3,)}, "diag(x)"),
        (
            lambda p: F.conv1d(p["x"], p["k"], p["b"], padding=1),
            {"x": (2, 5), "k": (3, 2, 3), "b": (3,)},
            "conv1d(x, k, padding=1) + reshape(b, [3, 1])",
        ),
        (lambda p: F.conv2d(p["x"], p["k"], stride=2), {"x": (1, 5, 5), "k": (2, 1, 3, 3)}, "conv2d(x, k, stride=2)"),
        (lambda p: F.max_pool2d(p["x"], 2), {"x": (1, 4, 4)}, "maxpool2d(x, 2)"),
        (lambda p: F.avg_pool2d(p["x"], 2, stride=1), {"x": (1, 4, 4)}, "avgpool2d(x, 2, stride=1)"),
        (
            lambda p: F.layer_norm(p["x"], (3,), p["w"], p["b"]),
            {"x": (3,), "w": (3,), "b": (3,)},
            "(x - mean(x)) / sqrt(var(x) + 1e-05) * w + b",
        ),
        (lambda p: torch.bmm(p["A"], p["B"]), {"A": (2, 2, 3), "B": (2, 3, 2)}, "stack(A[0] @ B[0], A[1] @ B[1])"),
        (lambda p: torch.einsum("ij,jk->ik", p["A"], p["B"]), {"A": (2, 3), "B": (3, 2)}, "A @ B"),
        (
            lambda p: torch.einsum("bij,bjk->bik", p["A"], p["B"]),
            {"A": (2, 2, 3), "B": (2, 3, 2)},
            "stack(A[0] @ B[0], A[1] @ B[1])",
        ),
        (lambda p: torch.einsum("ij,kj->ik", [p["A"], p["B"]]), {"A": (2, 3), "B": (4, 3)}, "A @ B.T"),
        (lambda p: torch.einsum("ji,jk->ik", p["A"], p["B"]), {"A": (3, 2), "B": (3, 4)}, "A.T @ B"),
        (lambda p: torch.einsum("i,i", p["x"], p["y"]), {"x": (3,), "y": (3,)}, "dot(x, y)"),
        (lambda p: torch.einsum("ij,ij->i", p["A"], p["B"]), {"A": (2, 3), "B": (2, 3)}, "sum(A * B, axis=1)"),
        (lambda p: torch.einsum("ii", p["A"]), {"A": (3, 3)}, "trace(A)"),
        (
            lambda p: F.batch_norm(p["x"], None, None, p["w"], p["b"], training=True),
            {"x": (4, 3), "w": (3,), "b": (3,)},
            "(x - mean(x, axis=0, keepdims=True)) / sqrt(var(x, axis=0, keepdims=True) + 1e-05) * w + b",
        ),
        (
            lambda p: F.batch_norm(p["x"], None, None, p["w"], p["b"], training=True, eps=1e-3),
            {"x": (4, 2, 3), "w": (2,), "b": (2,)},
            "(x - mean(x, axis=[0, 2], keepdims=True)) / sqrt(var(x, axis=[0, 2], keepdims=True) + 0.001)"
            " * reshape(w, [2, 1]) + reshape(b, [2, 1])",
        ),
        (
            lambda p: F.batch_norm(
                p["x"], torch.tensor([0.1, -0.2, 0.3]).double(), torch.tensor([1.5, 0.7, 2.0]).double(), p["w"]
            ),
            {"x": (4, 3), "w": (3,)},
            "(x - const1) / sqrt(const2 + 1e-05) * w",
        ),
    ],
)
def test_each_mapping_reads_and_checks_as_torch(fn, shapes, want):
    assert traced_text(fn, shapes) == want
    params = mapped_values(shapes)

    def loss(p, s):  # sin: a loss whose gradient is not the same for every element
        return torch.sin(fn(p)).sum()

    model = gc.from_torch(loss, params=params)
    report = gc.check(model)
    assert report.status == "agree", report.table(width=200)
    expected = torch_gradients(loss, params, {})
    for key, name in zip(params, model.params):
        np.testing.assert_allclose(exact(report, name), expected[key], rtol=1e-10, atol=1e-12)


# --- the command line -------------------------------------------------------------------------

FACTORY = textwrap.dedent(
    """
    import torch, torch.nn as nn, torch.nn.functional as F

    def make():
        torch.manual_seed(0)
        net = nn.Sequential(nn.Linear(2, 3), nn.Tanh(), nn.Linear(3, 1)).double()
        params = {k: v.detach().clone() for k, v in net.named_parameters()}
        def loss(p, s):
            return F.mse_loss(torch.func.functional_call(net, p, (s["x"],)), s["y"])
        return loss, params, {"x": torch.randn(3, 2, dtype=torch.float64), "y": torch.randn(3, 1, dtype=torch.float64)}
    """
)


def run_cli(tmp_path, *args):
    (tmp_path / "mynet.py").write_text(FACTORY)
    env = {**os.environ, "PYTHONPATH": str(REPO), "NO_COLOR": "1"}
    return subprocess.run(
        [sys.executable, "-m", "gradcheck", *args], cwd=tmp_path, env=env, capture_output=True, text=True
    )


@pytest.mark.slow
def test_cli_torch_checks_the_traced_model(tmp_path):
    done = run_cli(tmp_path, "--torch", "mynet:make", "--json")
    assert done.returncode == 0, done.stderr
    import json

    report = json.loads(done.stdout)
    assert report["status"] == "agree"
    assert "torch:loss" in json.dumps(report)


@pytest.mark.slow
def test_cli_convert_prints_a_model_file_that_loads(tmp_path):
    done = run_cli(tmp_path, "convert", "mynet:make")
    assert done.returncode == 0, done.stderr
    model = gc.loads(done.stdout)
    assert model.to_dict()["model"]["tanh1"] == "tanh(linear1)"
    (tmp_path / "m.yaml").write_text(done.stdout)
    assert run_cli(tmp_path, "m.yaml").returncode == 0


@pytest.mark.slow
def test_cli_torch_names_a_bad_factory(tmp_path):
    done = run_cli(tmp_path, "--torch", "mynet:nothing")
    assert done.returncode == 2 and "has no attribute 'nothing'" in done.stderr


def test_docs_list_the_table():
    from gradcheck.trace.table import markdown

    text = (REPO / "docs" / "from-torch.md").read_text()
    listed = text.split("<!-- table: generated by gradcheck.trace.table.markdown() -->\n", 1)[1]
    assert listed.split("<!-- end of table -->", 1)[0].rstrip("\n") == markdown().rstrip("\n")


# --- a traced model is a model like any other: it trains, and its file runs under the plugin ---------


def _flat(params):
    return torch.cat([v.reshape(-1) for v in params.values()])


def _unflat(flat, like):
    out, start = {}, 0
    for k, v in like.items():
        out[k] = flat[start : start + v.numel()].reshape(v.shape)
        start += v.numel()
    return out


def _mean_loss(fn, data):
    n = next(iter(data.values())).shape[0]
    return lambda p: sum(fn(p, {k: v[i] for k, v in data.items()}) for i in range(n)) / n


def _trained_by_hand(fn, params, data, mode, epochs, lr):
    """The training loop written here in torch float64 on the user's own fn (not on the traced model)."""
    p = {k: v.detach().clone().double() for k, v in params.items()}
    n = next(iter(data.values())).shape[0]
    for _ in range(epochs):
        if mode == "sgd":
            for i in range(n):
                leaves = {k: v.clone().requires_grad_(True) for k, v in p.items()}
                fn(leaves, {k: v[i] for k, v in data.items()}).backward()
                p = {k: (leaves[k] - lr * leaves[k].grad).detach() for k in p}
        elif mode == "batch":
            g = torch_gradients(fn, p, data)
            p = {k: v - lr * torch.as_tensor(g[k]) for k, v in p.items()}
        else:  # newton
            mean = _mean_loss(fn, data)
            flat = _flat(p)
            h = torch.autograd.functional.hessian(lambda v: mean(_unflat(v, p)), flat)
            g = torch.autograd.functional.jacobian(lambda v: mean(_unflat(v, p)), flat)
            p = _unflat(flat - torch.linalg.solve(h, g), p)
    return {k: v.numpy() for k, v in p.items()}


@pytest.mark.parametrize("mode, epochs", [("sgd", 2), ("batch", 3), ("newton", 1)])
def test_a_traced_model_trains_as_the_users_code_does(mode, epochs):
    loss, params, data = mlp_case()
    model = gc.from_torch(loss, params=params, data=data)
    result = gc.train(model, mode=mode, epochs=epochs, lr=0.1, source="all")
    want = _trained_by_hand(loss, params, data, mode, epochs, 0.1)
    assert set(result.runs) == {"symbolic", "autograd", "finite_difference"}
    for source, run in result.runs.items():
        rtol = 1e-6 if source == "finite_difference" else 1e-10
        for key, name in zip(params, model.params):
            np.testing.assert_allclose(run.params[name], want[key], rtol=rtol, atol=1e-12, err_msg=f"{source} {name}")
    assert result.runs["autograd"].losses[-1] < result.runs["autograd"].initial_loss


def test_a_traced_models_file_runs_under_the_pytest_plugin(pytester: pytest.Pytester):
    loss, params, data = mlp_case()
    model = gc.from_torch(loss, params=params, data=data)
    pytester.path.joinpath("gradcheck_traced.yaml").write_text(model.to_yaml())
    result = pytester.runpytest("-p", "no:cacheprovider", "-v")
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(["*gradcheck_traced.yaml::check PASSED*"])
    # and a wrong traced file fails there: its loss is doubled, but not its hand-written expected
    wrong = gc.from_torch(loss, params=params, data=data).to_dict()
    wrong["model"]["loss"] = "2 * (" + wrong["model"]["loss"] + ")"
    wrong["expected"] = {name: "0 * " + name for name in model.params}
    import yaml

    pytester.path.joinpath("gradcheck_traced.yaml").write_text(yaml.safe_dump(wrong))
    pytester.runpytest("-p", "no:cacheprovider").assert_outcomes(failed=1)
