"""Property tests, written as a user of gradcheck would write them.

The project's own strategies drive the project's own check: on a correct
model the three sources (SymPy, torch autograd, finite differences) must
never disagree. A smooth model must ``agree``; a model with kinks may say
``kink`` (and ``undefined`` where the loss is not finite), never ``mismatch``.
And a custom ``torch.autograd.Function`` with a wrong backward is caught
wherever Hypothesis puts the parameters.

Each check costs 0.1-1 s, so the example counts are modest.
"""

from __future__ import annotations

import pytest
import torch
import yaml
from hypothesis import HealthCheck, given, note, settings
from hypothesis import strategies as st

import gradcheck as gc
from gradcheck import strategies as gst

THREE = ("symbolic", "autograd", "finite_difference")
CHECKS = settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def describe(spec, at=None) -> None:
    """Print the model as a file (and the point) when an example fails."""
    note("model file:\n" + yaml.safe_dump(spec, sort_keys=False))
    if at is not None:
        note(f"at = {at!r}")


@CHECKS
@given(st.data())
def test_smooth_models_agree_everywhere(data):
    spec = data.draw(gst.models(), label="spec")
    describe(spec)
    model = gc.Model.from_dict(spec)
    at = data.draw(gst.points(model), label="at")
    report = gc.check(model, at=at)
    note(report.table())
    assert report.status == "agree"
    assert report.sources == list(THREE)


@CHECKS
@given(st.data())
def test_smooth_models_agree_in_float32(data):
    spec = data.draw(gst.models(max_depth=2), label="spec")
    spec["check"] = {"dtype": "float32"}
    describe(spec)
    model = gc.Model.from_dict(spec)
    report = gc.check(model, at=data.draw(gst.points(model), label="at"))
    note(report.table())
    assert report.status == "agree"


@CHECKS
@given(gst.expressions(names=("w", "x"), max_depth=3), st.floats(-3, 3), st.floats(-3, 3))
def test_expressions_agree(text, w, x):
    spec = {"params": {"w": w}, "data": {"x": [x, 1.0]}, "model": {"loss": text}}
    describe(spec)
    report = gc.check(gc.Model.from_dict(spec))
    note(report.table())
    assert report.status == "agree"


@CHECKS
@given(gst.models(kinks=True, max_depth=2))
def test_models_with_kinks_are_reported_honestly(spec):
    # at the file's values: two-decimal numbers, so kinks (abs(w - w), relu(0)) are hit exactly
    describe(spec)
    report = gc.check(gc.Model.from_dict(spec))
    note(report.table())
    assert report.status in ("agree", "kink", "undefined")
    for point in report.to_dict()["points"]:
        for g in point["gradients"].values():
            if g["status"] == "kink":
                assert g["note"]  # a kink is explained, never silently passed as agree


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize(
    ("loss", "w"),
    [("abs(w)", 0.001), ("abs(w)", 0.05), ("abs(w)", 1e-12), ("relu(w - 0.3) + max(w, 0.301)", 0.3005)],
)
def test_near_a_kink_is_not_a_mismatch(loss, w, dtype):
    # The finite-difference steps must stay on this side of a nearby kink.
    report = gc.check(gc.Model.from_dict({"params": {"w": w}, "model": {"loss": loss}}), dtype=dtype)
    assert report.status == "agree", report.table()
    g = report.points[0].gradients["w"]
    # The estimate covers the true error, however close the kink (1e-12 is closer than any useful step).
    assert abs(float(g.values["finite_difference"]) - float(g.values["symbolic"])) <= float(g.fd_error)


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_rounding_that_flips_a_tie_is_not_a_kink(dtype):
    # Both arguments of max are b, up to the rounding of 3 + (b - 3): the tie flips side under any
    # perturbation, but both sides have slope 1. Found by fuzzing (finite differences used to give nan).
    spec = {"params": {"b": -3.493978813475585}, "model": {"loss": "max(3 + (b - 3), b)"}}
    report = gc.check(gc.Model.from_dict(spec), dtype=dtype)
    assert report.status == "agree", report.table()


def test_float32_next_to_a_domain_edge_is_not_a_mismatch():
    # One ulp inside the edge, central steps do not fit: differences go one-sided, inward.
    model = gc.Model.from_dict(
        {
            "params": {"s": {"value": 3.999999761581421, "domain": [0.25, 4.0]}},
            "model": {"loss": "log(s)"},
            "check": {"dtype": "float32"},
        }
    )
    assert gc.check(model).status == "agree"


# --- a custom autograd.Function with a wrong backward --------------------------------


class Softplus(torch.autograd.Function):
    """softplus(u) = log(1 + exp(u)), with a hand-written backward: sigmoid(u)."""

    @staticmethod
    def forward(ctx, u):
        ctx.save_for_backward(u)
        return torch.nn.functional.softplus(u)

    @staticmethod
    def backward(ctx, grad):
        (u,) = ctx.saved_tensors
        return grad * torch.sigmoid(u)


class WrongSoftplus(Softplus):
    """The same forward; the backward uses sigmoid(-u), a plausible slip."""

    @staticmethod
    def backward(ctx, grad):
        (u,) = ctx.saved_tensors
        return grad * torch.sigmoid(-u)


SOFTPLUS_MODEL = gc.Model.from_dict(
    {
        "name": "softplus_regression",
        "params": {"w": 0.5, "b": -0.25},
        "data": {"x": [-1.0, 0.5, 2.0], "y": [0.2, 0.9, 2.5]},
        "model": {"y_pred": "softplus(x * w + b)", "loss": "(y_pred - y)**2"},
    }
)


def softplus_loss(params, data):
    return (Softplus.apply(data["x"] * params["w"] + params["b"]) - data["y"]) ** 2


def wrong_softplus_loss(params, data):
    return (WrongSoftplus.apply(data["x"] * params["w"] + params["b"]) - data["y"]) ** 2


@CHECKS
@given(gst.points(SOFTPLUS_MODEL))
def test_right_backward_agrees_everywhere(point):
    note(f"at = {point!r}")
    gc.assert_agree(SOFTPLUS_MODEL, at=point, against={"mine": softplus_loss})


@CHECKS
@given(gst.points(SOFTPLUS_MODEL))
def test_wrong_backward_is_caught_everywhere(point):
    note(f"at = {point!r}")
    report = gc.check(SOFTPLUS_MODEL, at=point, against={"mine": wrong_softplus_loss})
    note(report.table())
    # sigmoid(u) - sigmoid(-u) = tanh(u/2): wrong wherever some sample has u != 0
    assert report.status == "mismatch"
    odd = {g["odd_one_out"] for g in report.to_dict()["points"][0]["gradients"].values() if g["status"] == "mismatch"}
    assert odd == {"mine"}
    with pytest.raises(AssertionError, match=r"mismatch \(mine\)"):
        gc.assert_agree(SOFTPLUS_MODEL, at=point, against={"mine": wrong_softplus_loss})
