"""Reductions with axis= and keepdims=: every source against torch float64 written in the test."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import gradcheck as gc
from gradcheck import kinks
from gradcheck.errors import ModelError
from gradcheck.expr import parse, unparse

RNG = np.random.default_rng(1234)
# Values per shape, rounded so that no two elements tie (max/min are smooth there).
VALUES = {
    (): 0.7,
    (4,): [0.3, -1.2, 0.9, 0.1],
    (3, 4): RNG.uniform(-1.5, 1.5, size=(3, 4)).round(3).tolist(),
    (2, 3, 2): RNG.uniform(-1.5, 1.5, size=(2, 3, 2)).round(3).tolist(),
}


def _dims(rank: int, axis: object, batch: int) -> tuple[int, ...]:
    """Torch dims of the per-sample ``axis`` for a tensor with ``batch`` leading axes."""
    if axis is None:
        axes = list(range(rank))
    else:
        axes = [axis] if isinstance(axis, int) else list(axis)  # type: ignore[call-overload]
    return tuple(a % rank + batch for a in axes)


def _torch_reduce(name: str, x: torch.Tensor, rank: int, axis: object, keepdims: bool, batch: int) -> torch.Tensor:
    """The reduction written with torch's own functions (torch.var with correction=0 is numpy.var)."""
    if name in ("softmax", "log_softmax"):
        dim = (-1 if axis is None else axis) % rank + batch  # type: ignore[operator]
        return torch.softmax(x, dim) if name == "softmax" else torch.log_softmax(x, dim)
    if rank == 0:
        return x * 0 if name == "var" else x
    dims = _dims(rank, axis, batch)
    if name == "sum":
        return torch.sum(x, dim=dims, keepdim=keepdims)
    if name == "mean":
        return torch.mean(x, dim=dims, keepdim=keepdims)
    if name == "var":
        return torch.var(x, dim=dims, correction=0, keepdim=keepdims)
    if name == "norm":
        return torch.linalg.vector_norm(x, dim=dims, keepdim=keepdims)
    if name == "logsumexp":
        return torch.logsumexp(x, dim=dims, keepdim=keepdims)
    if name == "max":
        return torch.amax(x, dim=dims, keepdim=keepdims)
    if name == "min":
        return torch.amin(x, dim=dims, keepdim=keepdims)
    raise AssertionError(name)


def _call(name: str, arg: str, axis: object, keepdims: bool) -> str:
    parts = [arg]
    if axis is not None:
        parts.append(f"axis={list(axis) if isinstance(axis, tuple) else axis}")
    if keepdims:
        parts.append("keepdims=True")
    return f"{name}({', '.join(parts)})"


def _values(report: gc.Report, name: str) -> dict[str, np.ndarray]:
    g = report.points[0].gradients[name]
    return {src: np.asarray(v, dtype=np.float64) for src, v in g.values.items()}


def _agree_with(report: gc.Report, name: str, want: np.ndarray) -> None:
    """Symbolic and autograd within 1e-10 relative of torch; finite differences within their own error estimate."""
    got = _values(report, name)
    scale = max(1.0, float(np.abs(want).max()))
    for src in ("symbolic", "autograd"):
        np.testing.assert_allclose(got[src], want, rtol=1e-10, atol=1e-10 * scale, err_msg=src)
    fd_error = np.asarray(report.points[0].gradients[name].fd_error, dtype=np.float64)
    assert np.all(np.abs(got["finite_difference"] - want) <= fd_error + 1e-10 * scale), (got, want, fd_error)


REDUCTIONS = ("sum", "mean", "var", "norm", "logsumexp", "max", "min")
# (shape, axis, keepdims): scalars, vectors, matrices and rank-3 values
AXES = [
    ((), None, False),
    ((4,), None, False),
    ((4,), 0, True),
    ((4,), -1, False),
    ((3, 4), None, False),
    ((3, 4), 0, False),
    ((3, 4), -1, True),
    ((3, 4), (1, 0), False),
    ((2, 3, 2), 1, False),
    ((2, 3, 2), (0, -1), True),
    ((2, 3, 2), (-3, 1, 2), False),
]


@pytest.mark.parametrize("name", REDUCTIONS)
@pytest.mark.parametrize(("shape", "axis", "keepdims"), AXES)
def test_reduction_of_a_param_three_ways(name, shape, axis, keepdims):
    if name == "norm" and shape == ():
        pytest.skip("norm of a scalar is abs: a kink at 0, tested with abs")
    call = _call(name, "W", axis, keepdims)
    loss = f"sum(sin({call}) + 0.5 * {call}**2)"
    model = gc.Model.from_dict({"params": {"W": VALUES[shape]}, "model": {"loss": loss}})
    report = gc.check(model)
    assert report.status == "agree", report.table()

    W = torch.tensor(VALUES[shape], dtype=torch.float64, requires_grad=True)
    r = _torch_reduce(name, W, len(shape), axis, keepdims, 0)
    (torch.sin(r) + 0.5 * r**2).sum().backward()
    _agree_with(report, "W", W.grad.numpy())


@pytest.mark.parametrize("name", ("softmax", "log_softmax"))
@pytest.mark.parametrize(("shape", "axis"), [((4,), None), ((3, 4), 0), ((3, 4), -1), ((3, 4), 1), ((2, 3, 2), 1)])
def test_softmax_along_an_axis_three_ways(name, shape, axis):
    weights = RNG.uniform(-1, 1, size=shape).round(3).tolist()
    call = _call(name, "W", axis, False)
    model = gc.Model.from_dict(
        {"params": {"W": VALUES[shape]}, "data": {"K": [weights]}, "model": {"loss": f"sum({call} * K)"}}
    )
    report = gc.check(model)
    assert report.status == "agree", report.table()

    W = torch.tensor(VALUES[shape], dtype=torch.float64, requires_grad=True)
    (_torch_reduce(name, W, len(shape), axis, False, 0) * torch.tensor(weights, dtype=torch.float64)).sum().backward()
    _agree_with(report, "W", W.grad.numpy())


def test_softmax_over_axis_0_normalises_each_column():
    M = np.asarray(VALUES[(3, 4)])
    model = gc.Model.from_dict({"params": {"M": M.tolist()}, "model": {"s": "softmax(M, axis=0)", "loss": "sum(s[0])"}})
    report = gc.check(model)
    want = (np.exp(M) / np.exp(M).sum(axis=0))[0].sum()
    assert report.points[0].loss == pytest.approx(want, rel=1e-12)


@pytest.mark.parametrize("name", REDUCTIONS)
@pytest.mark.parametrize(("axis", "keepdims"), [(None, False), (0, False), ((0, 2), True), (-2, True)])
def test_reduction_of_rank3_data_per_sample(name, axis, keepdims):
    """Data with a sample axis in front: the axes count the per-sample axes only."""
    X = RNG.uniform(-1, 1, size=(3, 2, 3, 2)).round(3)
    call = _call(name, "X * w", axis, keepdims)
    model = gc.Model.from_dict(
        {"params": {"w": VALUES[(2, 3, 2)]}, "data": {"X": X.tolist()}, "model": {"loss": f"sum(tanh({call}))"}}
    )
    report = gc.check(model)
    assert report.status == "agree", report.table()

    w = torch.tensor(VALUES[(2, 3, 2)], dtype=torch.float64, requires_grad=True)
    r = _torch_reduce(name, torch.tensor(X) * w, 3, axis, keepdims, 1)
    per_sample = torch.tanh(r).reshape(3, -1).sum(dim=1)
    per_sample.mean().backward()  # reduction: mean over the samples
    _agree_with(report, "w", w.grad.numpy())


def test_var_is_numpy_var():
    M = np.asarray(VALUES[(3, 4)])
    for axis, keepdims in [(None, False), (0, False), (1, True), ((0, 1), False)]:
        call = _call("var", "M", axis, keepdims)
        model = gc.Model.from_dict({"params": {"M": M.tolist()}, "model": {"loss": f"sum({call} * {call})"}})
        want = (np.var(M, axis=axis, keepdims=keepdims) ** 2).sum()
        assert gc.check(model).points[0].loss == pytest.approx(want, rel=1e-12), (axis, keepdims)


@pytest.mark.parametrize("where", ["params", "data"])
def test_batch_norm_of_a_batch_held_as_one_sample(where):
    """``mean(X, axis=0)``, ``var(X, axis=0)``: against torch.nn.functional.batch_norm in training mode."""
    X = RNG.normal(size=(4, 3)).round(3)
    gamma, beta = [1.5, -0.5, 0.8], [0.1, 0.2, -0.3]
    target = RNG.normal(size=(4, 3)).round(3)
    spec = {
        "params": {"gamma": gamma, "beta": beta},
        "data": {"T": [target.tolist()]},
        "model": {
            "xhat": "(X - mean(X, axis=0)) / sqrt(var(X, axis=0) + 1e-5)",
            "y": "gamma * xhat + beta",
            "loss": "sum((y - T)**2)",
        },
    }
    if where == "params":
        spec["params"]["X"] = X.tolist()  # type: ignore[index]
    else:
        spec["data"]["X"] = [X.tolist()]  # type: ignore[index]
    report = gc.check(gc.Model.from_dict(spec))
    assert report.status == "agree", report.table()

    tX = torch.tensor(X, requires_grad=True)
    tg = torch.tensor(gamma, dtype=torch.float64, requires_grad=True)
    tb = torch.tensor(beta, dtype=torch.float64, requires_grad=True)
    y = torch.nn.functional.batch_norm(tX, None, None, weight=tg, bias=tb, training=True, eps=1e-5)
    ((y - torch.tensor(target)) ** 2).sum().backward()
    _agree_with(report, "gamma", tg.grad.numpy())
    _agree_with(report, "beta", tb.grad.numpy())
    if where == "params":
        _agree_with(report, "X", tX.grad.numpy())


@pytest.mark.parametrize(("name", "row"), [("max", [0.5, 1.25, -0.3, 1.25]), ("min", [0.5, -0.75, -0.75, 2.0])])
def test_max_and_min_at_a_tie_are_kinks(name, row):
    """At a tie of the top two: status kink; autograd (torch.amax) and symbolic (SymPy) split the gradient in half."""
    M = [row, [0.1, 0.4, -0.2, 0.3]]
    model = gc.Model.from_dict({"params": {"M": M}, "model": {"loss": f"sum({name}(M, axis=1) ** 2)"}})
    report = gc.check(model)
    grad = report.points[0].gradients["M"]
    assert report.status == "kink", report.table()
    assert name in (grad.note or "")

    tM = torch.tensor(M, dtype=torch.float64, requires_grad=True)
    (_torch_reduce(name, tM, 2, 1, False, 0) ** 2).sum().backward()
    want = tM.grad.numpy()
    assert sorted(abs(want[0][want[0] != 0])) == [abs(row[1])] * 2  # torch: half of 2 * top to each tied element
    got = _values(report, "M")
    for src in ("symbolic", "autograd"):
        np.testing.assert_allclose(got[src], want, rtol=1e-10, atol=1e-12, err_msg=src)
    # The smooth row agrees in all three sources.
    np.testing.assert_allclose(got["finite_difference"][1], want[1], rtol=1e-8)

    (site,) = kinks.find_sites(model, model.param_values())
    assert site.function == name
    assert site.params == {"M"}


def test_a_tie_in_one_sample_names_that_sample():
    X = [[0.5, 0.2, -1.0], [0.3, 0.3, 0.1], [1.0, -2.0, 0.0]]  # sample 1: a tie of the top two at w = 1
    model = gc.Model.from_dict({"params": {"w": 1.0}, "data": {"x": X}, "model": {"loss": "max(w * x)**2"}})
    (site,) = kinks.find_sites(model, model.param_values())
    assert site.function == "max"
    assert site.samples == [1]
    # at w = -1 the order turns round: sample 1's tie is now at the bottom, no kink of max
    assert kinks.find_sites(model, {"w": np.array(-1.0)}) == []


def test_a_tie_below_the_top_two_is_smooth():
    M = [0.9, 0.2, 0.2, -0.5]
    model = gc.Model.from_dict({"params": {"M": M}, "model": {"loss": "max(M)**2 + min(M)"}})
    report = gc.check(model)
    assert report.status == "agree", report.table()
    want = np.array([1.8, 0.0, 0.0, 1.0])
    _agree_with(report, "M", want)


def test_two_arguments_stay_elementwise():
    model = gc.Model.from_dict(
        {"params": {"a": [0.5, 2.0], "b": [1.0, -1.0]}, "model": {"loss": "sum(max(a, b) * min(a, b))"}}
    )
    report = gc.check(model)
    assert report.status == "agree"
    _agree_with(report, "a", np.array([1.0, -1.0]))  # d(max*min)/da: min where a wins, max where b wins
    _agree_with(report, "b", np.array([0.5, 2.0]))


@pytest.mark.parametrize(
    "text",
    [
        "max(v, axis=0)",
        "min(v, axis=[0, 1], keepdims=True)",
        "softmax(M, axis=0)",
        "sum(v)",
        "max(a, b)",
        "var(M, keepdims=False)",
    ],
)
def test_calls_print_as_written(text):
    assert unparse(parse(text)) == text


@pytest.mark.parametrize(
    ("loss", "pattern"),
    [
        (
            "sum(v, axis=2)",
            r"model\.loss: shape error: axis 2 is out of range for a value of shape \[3\] — valid axes: 0 \(or -1\)",
        ),
        ("sum(M, axis=[0, -2])", r"axis \[0, -2\] names axis 0 twice — valid axes: 0 \(or -2\), 1 \(or -1\)"),
        (
            "mean(w, axis=0)",
            r"axis 0 is out of range for a value of shape \[\] — a scalar has no axes: leave out axis=",
        ),
        ("sum(softmax(M, axis=-3))", r"axis -3 is out of range for a value of shape \[2, 3\]"),
        ("softmax(w)", r"needs a vector, got a scalar"),
        (
            "sum(v, keepdims=3)",
            r"sum\(\): keepdims= takes True or False, got 3 — sum: sum\(v, axis=None, keepdims=False\)",
        ),
        ("sum(v, axis=1.5)", r"sum\(\): axis= takes an integer or a list of integers, got 1\.5"),
        ("sum(log_softmax(M, axis=[0]))", r"log_softmax\(\): axis= takes an integer, got \[0\]"),
        ("max()", r"max\(\) takes 1 or 2 arguments, got 0 — max\(v, axis=None, keepdims=False\): .*; max\(a, b\): "),
        (
            "min(v, v, v)",
            r"min\(\) takes 1 or 2 arguments, got 3 — min\(v, axis=None, keepdims=False\): .*; min\(a, b\): ",
        ),
        (
            "sum(max(v, v, axis=0))",
            r"max\(\) got an unknown keyword argument 'axis' — max\(a, b\) takes no keyword arguments",
        ),
        ("max(v, axes=0)", r"max\(\) got an unknown keyword argument 'axes' — did you mean 'axis'\?"),
        ("sum(v, axis=0, axis=0)", r"sum\(\) got axis= twice"),
    ],
)
def test_wrong_axes_and_arities_are_model_errors(loss, pattern):
    text = f"params:\n  v: [1.0, 2.0, 3.0]\n  M: [[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]]\n  w: 1.0\nmodel:\n  loss: {loss}\n"
    with pytest.raises(ModelError, match=pattern) as info:
        gc.loads(text)
    assert "<model>:6:" in str(info.value)  # the file position of the entry
    assert "^" in str(info.value)  # and a caret under the call


@pytest.mark.parametrize("name", ["max", "min"])
def test_near_a_tie_the_steps_stay_below_it(name):
    """The two largest (smallest) 1e-4 apart: a change of maximum is a change of the kink quantity's sign."""
    v = [0.5, 0.5001, -0.2] if name == "max" else [-0.5, -0.5001, 0.2]
    model = gc.Model.from_dict({"params": {"v": v}, "model": {"loss": f"{name}(v)**3 + sum(v)"}})
    report = gc.check(model)
    assert report.status == "agree", report.table()
    tv = torch.tensor(v, dtype=torch.float64, requires_grad=True)
    (_torch_reduce(name, tv, 1, None, False, 0) ** 3 + tv.sum()).backward()
    _agree_with(report, "v", tv.grad.numpy())


def test_strategies_draw_reductions():
    from hypothesis import find

    from gradcheck import strategies as gst

    # One level deep: the reduction of a name, whatever else deeper drawing would wrap around it.
    text = find(gst.expressions(names=("w", "x"), max_depth=1), lambda t: "keepdims=True" in t)
    assert text in {f"{f}(w, keepdims=True)" for f in ("sum", "mean", "var", "logsumexp")}
    kinked = find(gst.expressions(names=("w",), max_depth=1, kinks=True), lambda t: "max(w, keepdims" in t)
    assert kinked == "max(w, keepdims=True)"
    spec = find(gst.models(), lambda s: "axis=" in s["model"].get("y_pred", s["model"]["loss"]))
    assert gc.check(gc.Model.from_dict(spec)).status == "agree"
