"""Functions added from Python with gc.register_function, through every source."""

from __future__ import annotations

import math

import numpy as np
import pytest

import gradcheck as gc
from gradcheck import ops
from gradcheck.sources.exact import per_sample_losses


@pytest.fixture
def forget():
    """Names registered in a test are removed from the op table afterwards."""
    names: list[str] = []
    yield names.append
    for name in names:
        ops.OPS.pop(name, None)
        ops.FUNCTIONS.pop(name, None)


def _swish_forms():
    import sympy
    import torch

    return {
        "numpy": lambda x: x / (1 + np.exp(-x)),
        "torch": lambda x: x * torch.sigmoid(x),
        "sympy": lambda x: x / (1 + sympy.exp(-x)),
    }


def _swish_grad(x: float) -> float:
    s = 1 / (1 + math.exp(-x))
    return s + x * s * (1 - s)


def test_registered_function_three_ways(forget):
    forget("swish")
    gc.register_function("swish", **_swish_forms(), doc="x * sigmoid(x)")
    assert "swish" in ops.FUNCTIONS
    model = gc.Model.from_dict(
        {"params": {"w": 0.7}, "data": {"x": [0.5, -1.5, 2.0]}, "model": {"loss": "swish(w * x) ** 2"}}
    )
    report = gc.check(model)
    assert report.status == "agree", report.table()
    xs = np.array([0.5, -1.5, 2.0])
    swish = xs * 0.7 / (1 + np.exp(-xs * 0.7))
    want = np.mean([2 * s * _swish_grad(0.7 * x) * x for s, x in zip(swish, xs)])
    for src, value in report.points[0].gradients["w"].values.items():
        assert float(value) == pytest.approx(want, rel=1e-9), src
    # the exact loss goes through the mpmath form derived from the SymPy form
    np.testing.assert_allclose(per_sample_losses(model, {"w": np.float64(0.7)}), swish**2, rtol=1e-14)


def test_registered_analytic_function_uses_the_complex_step(forget):
    forget("swish_c")
    gc.register_function("swish_c", **_swish_forms(), analytic=True)
    model = gc.Model.from_dict({"params": {"w": 0.3}, "model": {"loss": "swish_c(w)"}})
    report = gc.check(model)
    assert report.status == "agree", report.table()
    g = report.points[0].gradients["w"]
    assert float(g.values["finite_difference"]) == pytest.approx(_swish_grad(0.3), rel=1e-13)


def test_wrong_custom_backward_is_blamed_on_autograd(forget):
    import sympy
    import torch

    class BadSwish(torch.autograd.Function):
        @staticmethod
        def forward(ctx, x):
            ctx.save_for_backward(x)
            return x * torch.sigmoid(x)

        @staticmethod
        def backward(ctx, grad):
            (x,) = ctx.saved_tensors
            return grad * torch.sigmoid(x)  # forgets the x * s * (1 - s) term

    forget("bad_swish")
    gc.register_function(
        "bad_swish",
        numpy=lambda x: x / (1 + np.exp(-x)),
        torch=BadSwish.apply,
        sympy=lambda x: x / (1 + sympy.exp(-x)),
    )
    model = gc.Model.from_dict({"params": {"w": [0.5, -1.0]}, "model": {"loss": "sum(bad_swish(w))"}})
    report = gc.check(model)
    g = report.points[0].gradients["w"]
    assert g.status == "mismatch", report.table()
    assert g.odd_one_out == "autograd"


def test_registered_kink_is_found(forget):
    import sympy
    import torch

    forget("hinge")
    gc.register_function(
        "hinge",
        numpy=lambda x: np.maximum(1 - x, 0),
        torch=lambda x: torch.clamp(1 - x, min=0),
        sympy=lambda x: sympy.Max(1 - x, 0),
        kink=lambda x: 1 - x,
    )
    model = gc.Model.from_dict({"params": {"w": 1.0}, "model": {"loss": "hinge(w)"}})
    assert gc.check(model).status == "kink"
    assert gc.check(model, at={"w": 0.5}).status == "agree"


@pytest.mark.parametrize("name", ["exp", "sum", "pi", "e", "add", "matmul"])
def test_clash_with_a_builtin_is_refused(name):
    forms = {"numpy": np.exp, "torch": abs, "sympy": abs}
    with pytest.raises(gc.ModelError, match=f"'{name}' is a (built-in|constant)"):
        gc.register_function(name, **forms)
    assert ops.OPS.get(name) is None or ops.OPS[name].builtin


@pytest.mark.parametrize(
    ("name", "kwargs", "match"),
    [
        ("1bad", {}, "not a valid function name"),
        ("__x", {}, "not a valid function name"),
        ("lambda", {}, "Python keyword"),
        ("ok_name", {"numpy": 3}, "numpy= must be callable"),
        ("ok_name", {"kink": "x"}, "kink= must be callable"),
        ("ok_name", {"doc": 5}, "doc= must be text"),
        ("ok_name", {"analytic": "yes"}, "analytic= must be True or False"),
    ],
)
def test_bad_arguments_are_refused(name, kwargs, match):
    forms = {"numpy": np.exp, "torch": abs, "sympy": abs, **kwargs}
    with pytest.raises(gc.ModelError, match=match):
        gc.register_function(name, **forms)
    assert "ok_name" not in ops.OPS


def test_re_registering_replaces(forget):
    forget("twice")
    gc.register_function("twice", numpy=lambda x: 2 * x, torch=lambda x: 2 * x, sympy=lambda x: 2 * x)
    gc.register_function("twice", numpy=lambda x: 3 * x, torch=lambda x: 3 * x, sympy=lambda x: 3 * x)
    model = gc.Model.from_dict({"params": {"w": 1.0}, "model": {"loss": "twice(w)"}})
    report = gc.check(model)
    assert report.status == "agree"
    for src, value in report.points[0].gradients["w"].values.items():
        assert float(value) == pytest.approx(3.0, rel=1e-12), src


def test_a_registered_function_is_in_no_docs_table(forget):
    forget("cube")
    gc.register_function("cube", numpy=lambda x: x**3, torch=lambda x: x**3, sympy=lambda x: x**3)
    assert "cube(" not in ops.markdown_table()
