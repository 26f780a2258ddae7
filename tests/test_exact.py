"""The exact per-sample loss on the expression as written (mpmath on the IR)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import gradcheck as gc
from gradcheck import interp
from gradcheck.sources.exact import per_sample_losses

EXAMPLES = sorted((Path(__file__).parent.parent / "examples").glob("*.yaml"))


def _scalar_model(expr: str) -> gc.Model:
    return gc.Model.from_dict({"params": {"s": 1.0}, "model": {"loss": expr}})


@pytest.mark.parametrize("expr", ["log(s)*0 + s", "(s - s)*log(s)"])
def test_zero_times_undefined_is_undefined(expr):
    # SymPy folds 0*log(s) to 0; the expression as written is undefined at s = 0.
    model = _scalar_model(expr)
    assert np.isnan(per_sample_losses(model, {"s": np.float64(0.0)})).all()
    want = {"log(s)*0 + s": 2.5, "(s - s)*log(s)": 0.0}[expr]
    got = per_sample_losses(model, {"s": np.float64(2.5)})
    assert got.shape == (1,)
    assert got[0] == want


@pytest.mark.parametrize(
    ("expr", "at"),
    [
        ("1 / s", 0.0),
        ("sqrt(s)", -1.0),
        ("asin(s)", 2.0),
        ("s ** 0.5", -4.0),
        ("exp(log(s))", 0.0),
        ("atan2(s, s)", 0.0),
    ],
)
def test_undefined_values_are_nan(expr, at):
    assert np.isnan(per_sample_losses(_scalar_model(expr), {"s": np.float64(at)})).all()


def test_no_overflow_in_exact_arithmetic():
    # float64 overflows exp(800); the exact value is finite (and too big for float64: inf is not nan).
    got = per_sample_losses(_scalar_model("exp(s) - exp(s) + 1"), {"s": np.float64(800.0)})
    assert got.tolist() == [1.0]


def test_undefined_is_per_sample():
    model = gc.Model.from_dict(
        {"params": {"w": 1.0}, "data": {"x": [2.0, 0.0, -1.0]}, "model": {"loss": "log(x) * 0 + w * x"}}
    )
    got = per_sample_losses(model, {"w": np.float64(3.0)})
    assert np.isnan(got[1]) and np.isnan(got[2])
    assert got[0] == 6.0


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.stem)
def test_examples_match_float64(path):
    model = gc.load(path)
    point = model.param_values()
    got = per_sample_losses(model, point)
    env = {**point, **model.data}
    with np.errstate(all="ignore"):
        plain = interp.evaluate(model.entries, env, "numpy", np, until=model.loss)[model.loss]
    want = np.broadcast_to(np.asarray(plain, dtype=np.float64).reshape(-1), (model.n_samples,))
    assert got.shape == (model.n_samples,)
    assert np.all(np.isfinite(got))
    np.testing.assert_allclose(got, want, rtol=1e-14, atol=1e-300)


@pytest.mark.parametrize("loss", ["log(s)*0 + s", "(s - s)*log(s) + s", "0*sqrt(s - 1) + s"])
def test_a_check_reports_undefined_where_the_loss_as_written_is(loss):
    # SymPy folds 0*log(s) to 0, so the tape alone would call the loss defined (issue 9, fix 5).
    model = gc.Model.from_dict({"params": {"s": 0.0}, "model": {"loss": loss}})
    report = gc.check(model)
    assert report.status == "undefined"
    assert report.to_dict()["points"][0]["loss"] == "nan"
    assert gc.check(model, at={"s": 2.0}).status == "agree"


def test_only_the_undefined_samples_are_undefined_with_reduction_none():
    model = gc.Model.from_dict(
        {
            "params": {"s": 1.0},
            "data": {"x": [1.0, 0.0, 2.0]},
            "model": {"loss": "0*log(x) + s*x"},
            "reduction": "none",
        }
    )
    report = gc.check(model)
    doc = report.to_dict()["points"][0]
    assert doc["loss"] == [1.0, "nan", 2.0]
    assert report.status == "undefined"


def test_expected_is_evaluated_exactly_on_the_expression_as_written():
    # (1e16 + x) - 1e16 is x exactly, but 0 in float64 at x = 1: the exact evaluation agrees.
    model = gc.Model.from_dict(
        {
            "params": {"w": 0.5},
            "data": {"x": [1.0, 1.0]},
            "model": {"loss": "w * x"},
            "expected": {"w": "(1e16 + x) - 1e16"},
        }
    )
    assert np.float64(1e16) + 1.0 - np.float64(1e16) == 0.0  # what float64 would give
    report = gc.check(model)
    assert report.status == "agree", report.to_dict()
    assert report.to_dict()["points"][0]["gradients"]["w"]["values"]["expected"] == 1.0


def test_expected_uses_the_entries_in_tensor_form():
    # The course's dW = outer(p - y, x) for softmax regression, one op on the entries.
    rng = np.random.default_rng(0)
    W, x = rng.normal(size=(3, 4)), rng.normal(size=(5, 4))
    y = np.eye(3)[[0, 2, 1, 1, 0]]
    model = gc.Model.from_dict(
        {
            "params": {"W": W.tolist()},
            "data": {"x": x.tolist(), "y": y.tolist()},
            "model": {"p": "softmax(W @ x)", "loss": "-sum(y * log(p))"},
            "expected": {"W": "outer(p - y, x)"},
        }
    )
    report = gc.check(model)
    assert report.status == "agree"
    z = x @ W.T
    p = np.exp(z - z.max(axis=1, keepdims=True))
    p /= p.sum(axis=1, keepdims=True)
    want = np.einsum("si,sj->ij", p - y, x) / len(x)
    got = np.array(report.to_dict()["points"][0]["gradients"]["W"]["values"]["expected"])
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-14)


def test_expected_undefined_as_written_is_nan_there():
    # SymPy would fold 0*log(w - 1) to 0; written so, it is undefined at w = 1.
    model = gc.Model.from_dict(
        {"params": {"w": 1.0}, "model": {"loss": "w**2"}, "expected": {"w": "2*w + 0*log(w - 1)"}}
    )
    grad = gc.check(model).to_dict()["points"][0]["gradients"]["w"]
    assert grad["values"]["symbolic"] == 2.0
    assert grad["values"]["expected"] == "nan"  # the JSON spells a non-finite value as text
    assert (grad["status"], grad["odd_one_out"]) == ("mismatch", "expected")
