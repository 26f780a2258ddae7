"""The Python API (SPEC.md section 6), used as a library user would.

load / loads / Model.from_dict, check with ``at`` and ``against``,
assert_agree's message (the table plus a model file that reproduces the
failure), gradient_formula, ModelError, the public surface (``__all__``,
``py.typed``, no torch or SymPy on import).
"""

from __future__ import annotations

import dataclasses
import inspect
import json
import re
import subprocess
import sys
import types
import typing
from pathlib import Path

import pytest
import sympy
import torch
import yaml

import gradcheck as gc

REPO = Path(__file__).resolve().parents[1]
LINEAR = REPO / "examples" / "linear.yaml"

LINEAR_TEXT = """\
params: {w: 1.0, b: 0.0}
data: {x: [1.0, 2.0, 3.0], y: [2.0, 4.0, 6.0]}
model:
  y_pred: x * w + b
  loss: (y_pred - y)**2
"""


def linear_loss(params, data):
    return (data["x"] * params["w"] + params["b"] - data["y"]) ** 2


class WrongSquare(torch.autograd.Function):
    """u -> u**2 whose backward forgets the factor 2."""

    @staticmethod
    def forward(ctx, u):
        ctx.save_for_backward(u)
        return u**2

    @staticmethod
    def backward(ctx, grad):
        (u,) = ctx.saved_tensors
        return grad * u


def wrong_linear_loss(params, data):
    return WrongSquare.apply(data["x"] * params["w"] + params["b"] - data["y"])


# --- the public surface ----------------------------------------------------------


def test_all_is_exactly_the_public_names():
    public = {
        name for name, value in vars(gc).items() if not name.startswith("_") and not isinstance(value, types.ModuleType)
    }
    assert set(gc.__all__) == public
    assert sorted(gc.__all__) == gc.__all__
    for name in gc.__all__:
        assert getattr(gc, name).__doc__, f"{name} has no docstring"


def test_all_is_what_docs_api_lists():
    text = (REPO / "docs" / "api.md").read_text()
    listing = text.split("The public names are exactly `gc.__all__`:", 1)[1].split(". Besides", 1)[0]
    assert sorted(re.findall(r"`(\w+)`", listing)) == gc.__all__


def test_strategies_all_is_exactly_the_public_names():
    from gradcheck import strategies as gst

    public = {
        name
        for name, value in vars(gst).items()
        if not name.startswith("_")
        and not isinstance(value, types.ModuleType)
        and getattr(value, "__module__", None) == gst.__name__
    }
    assert set(gst.__all__) == public == {"points", "expressions", "models"}


def test_py_typed_is_shipped():
    assert (Path(gc.__file__).parent / "py.typed").is_file()


@pytest.mark.slow
def test_import_does_not_import_torch_or_sympy():
    code = "import sys, gradcheck; print(sorted(m for m in ('torch', 'sympy') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=REPO)
    assert out.stdout.strip() == "[]"


def test_check_stays_a_function_after_a_check():
    # importing gradcheck's submodules must not shadow the API's functions
    gc.check(gc.loads(LINEAR_TEXT))
    assert callable(gc.check) and callable(gc.assert_agree) and callable(gc.train)
    assert isinstance(gc.check, types.FunctionType)


# --- loading ---------------------------------------------------------------------


def test_load_loads_and_from_dict_build_the_same_model():
    a = gc.load(LINEAR)
    b = gc.loads(LINEAR_TEXT, name="linear")
    c = gc.Model.from_dict(yaml.safe_load(LINEAR_TEXT), name="linear")
    assert a.name == b.name == c.name == "linear"
    for m in (b, c):
        assert gc.check(m).to_dict()["points"][0]["gradients"] == gc.check(a).to_dict()["points"][0]["gradients"]


def test_to_dict_round_trips():
    model = gc.load(LINEAR)
    again = gc.Model.from_dict(model.to_dict())
    assert gc.check(again).to_dict() == gc.check(model).to_dict()


def test_bad_input_raises_model_error_only():
    assert issubclass(gc.ModelError, ValueError)
    with pytest.raises(gc.ModelError, match=r"loss: unknown name 'q'"):
        gc.loads("params: {w: 1.0}\nmodel:\n  loss: w * q\n")
    with pytest.raises(gc.ModelError, match=r"did you mean 'w'"):
        gc.Model.from_dict({"params": {"w": 1.0}, "model": {"loss": "ww * 2"}})
    with pytest.raises(gc.ModelError, match="invalid YAML"):
        gc.loads("params: [")
    with pytest.raises(gc.ModelError, match=r"no such file|cannot read|not found"):
        gc.load(REPO / "no-such-model.yaml")


# --- check -------------------------------------------------------------------------


def test_check_report_fields():
    report = gc.check(gc.load(LINEAR))
    assert report.ok is True and report.status == "agree"
    doc = report.to_dict()
    json.dumps(doc)  # plain JSON
    assert doc["model"] == "linear" and doc["ok"] is True
    assert doc["sources"] == ["symbolic", "autograd", "finite_difference"]
    w = doc["points"][0]["gradients"]["w"]
    assert w["values"]["symbolic"] == pytest.approx(-28 / 3, rel=1e-15)
    assert w["values"]["autograd"] == pytest.approx(-28 / 3, rel=1e-12)
    assert w["status"] == "agree" and w["odd_one_out"] is None
    assert isinstance(report, gc.Report)
    assert "symbolic" in report.table() and "w" in report.table()


def test_check_at_a_given_point():
    model = gc.load(LINEAR)
    report = gc.check(model, at={"w": 0.5, "b": -1.0})
    point = report.to_dict()["points"][0]
    assert point["params"] == {"w": 0.5, "b": -1.0}
    # dL/db = mean(2*(x*w + b - y)) = mean(2*(0.5x - 1 - 2x)) = mean(-3x - 2) = -8
    assert point["gradients"]["b"]["values"]["symbolic"] == pytest.approx(-8.0, rel=1e-15)
    # tensors and numpy values work too; a param left out keeps the file's value
    report = gc.check(model, at={"w": torch.tensor(0.5, dtype=torch.float64)})
    assert report.to_dict()["points"][0]["params"] == {"w": 0.5, "b": 0.0}


@pytest.mark.parametrize(
    "at, match",
    [
        ({"ww": 1.0}, r"'ww', which is not a parameter.*did you mean 'w'"),
        ({"w": [1.0, 2.0]}, r"shape \[2\]"),
        ({"w": float("nan")}, r"not finite"),
        ({"w": "one"}, r"not numeric"),
    ],
)
def test_check_bad_at(at, match):
    with pytest.raises(gc.ModelError, match=match):
        gc.check(gc.load(LINEAR), at=at)


def test_check_overrides():
    model = gc.load(LINEAR)
    report = gc.check(model, dtype="float32", rtol=1e-3, atol=1e-5, points=2, seed=3)
    doc = report.to_dict()
    assert doc["dtype"] == "float32" and doc["rtol"] == 1e-3 and doc["atol"] == 1e-5
    assert len(doc["points"]) == 3
    assert (
        gc.check(model, points=2, seed=3).to_dict()["points"] == gc.check(model, points=2, seed=3).to_dict()["points"]
    )
    with pytest.raises(gc.ModelError, match="dtype"):
        gc.check(model, dtype="float16")


def test_check_is_keyword_only():
    with pytest.raises(TypeError):
        gc.check(gc.load(LINEAR), {"w": 1.0})  # type: ignore[misc]


# --- the options object -------------------------------------------------------------


def test_check_options_defaults_mean_the_model_file():
    opts = gc.CheckOptions()
    assert (opts.dtype, opts.rtol, opts.atol, opts.points, opts.seed, opts.strict, opts.directions) == (
        None,
        None,
        None,
        None,
        None,
        False,
        None,
    )
    model = gc.loads(LINEAR_TEXT + "check: {dtype: float32, points: 2, seed: 7, atol: 1.0e-5}\n")
    resolved = opts.resolve(model.check)
    assert (resolved.dtype, resolved.rtol, resolved.atol, resolved.points, resolved.seed) == (
        "float32",
        1e-4,  # float32's default: the file gives none
        1e-5,
        2,
        7,
    )
    assert resolved.tolerance == gc.Tolerance(1e-4, 1e-5)
    mine = gc.CheckOptions(dtype="float64", atol=0.0, points=0).resolve(model.check)
    assert (mine.dtype, mine.rtol, mine.atol, mine.points, mine.seed) == ("float64", 1e-6, 0.0, 0, 7)


def test_check_options_are_frozen():
    with pytest.raises(dataclasses.FrozenInstanceError):
        gc.CheckOptions().dtype = "float32"  # type: ignore[misc]


@pytest.mark.parametrize(
    "settings, match",
    [
        ({"dtype": "float16"}, r"^dtype must be float64 or float32, got 'float16'$"),
        ({"rtol": -1.0}, r"^rtol must be a finite number >= 0, got -1\.0 — use e\.g\. rtol=1e-6$"),
        ({"atol": float("inf")}, r"^atol must be a finite number >= 0, got inf"),
        ({"rtol": "1e-6"}, r"^rtol must be a finite number >= 0, got '1e-6'"),
        ({"points": -1}, r"^points must be a whole number >= 0, got -1 — use e\.g\. points=3$"),
        ({"points": 1.5}, r"^points must be a whole number >= 0, got 1\.5"),
        ({"seed": True}, r"^seed must be a whole number >= 0, got True"),
        ({"strict": "yes"}, r"^strict must be True or False, got 'yes'$"),
        ({"directions": -2}, r"^directions must be a whole number >= 1, got -2 — use e\.g\. directions=8$"),
    ],
)
def test_check_options_validation(settings, match):
    with pytest.raises(gc.ModelError, match=match):
        gc.CheckOptions(**settings)
    model = gc.load(LINEAR)
    for fn in (gc.check, gc.assert_agree):  # the public functions validate in the same place
        with pytest.raises(gc.ModelError, match=match):
            fn(model, **settings)


def test_directions_zero_means_every_element():
    assert gc.CheckOptions(directions=0) == gc.CheckOptions()


def test_check_and_assert_agree_take_the_same_keywords():
    fields = [f.name for f in dataclasses.fields(gc.CheckOptions)]
    assert fields == ["dtype", "rtol", "atol", "points", "seed", "strict", "directions", "order"]
    from gradcheck.options import CheckSettings

    assert list(typing.get_type_hints(CheckSettings)) == fields  # the typing of **options follows the fields
    for fn in (gc.check, gc.assert_agree):
        params = inspect.signature(fn).parameters
        assert list(params)[:3] == ["model", "at", "against"]
        assert all(p.kind is p.KEYWORD_ONLY for p in list(params.values())[1:3])
    model = gc.load(LINEAR)
    settings = {"dtype": "float32", "rtol": 1e-3, "atol": 1e-5, "points": 1, "seed": 4, "strict": True, "directions": 2}
    assert gc.assert_agree(model, **settings).to_dict() == gc.check(model, **settings).to_dict()


def test_unknown_setting_is_a_type_error_with_a_close_match():
    model = gc.load(LINEAR)
    with pytest.raises(
        TypeError, match=r"check\(\) got an unexpected keyword argument 'rtl' \(did you mean 'rtol'\?\)"
    ):
        gc.check(model, rtl=1e-3)  # type: ignore[call-arg]
    with pytest.raises(TypeError, match=r"assert_agree\(\) got an unexpected keyword argument 'tolerance'"):
        gc.assert_agree(model, tolerance=1e-3)  # type: ignore[call-arg]


def test_against_a_right_implementation_agrees():
    report = gc.check(gc.load(LINEAR), against={"mine": linear_loss})
    doc = report.to_dict()
    assert report.ok and doc["sources"][-1] == "mine"
    assert doc["points"][0]["gradients"]["w"]["values"]["mine"] == pytest.approx(-28 / 3, rel=1e-12)


def test_against_a_wrong_backward_is_the_odd_one_out():
    report = gc.check(gc.load(LINEAR), against={"right": linear_loss, "wrong": wrong_linear_loss})
    assert not report.ok and report.status == "mismatch"
    for g in report.to_dict()["points"][0]["gradients"].values():
        assert g["status"] == "mismatch" and g["odd_one_out"] == "wrong"
        assert g["values"]["wrong"] == pytest.approx(g["values"]["symbolic"] / 2)
        assert g["values"]["right"] == pytest.approx(g["values"]["symbolic"])


def test_against_with_reduction_none_and_sum():
    for reduction in ("none", "sum"):
        model = gc.loads(LINEAR_TEXT + f"reduction: {reduction}\n")
        assert gc.check(model, against={"mine": linear_loss}).ok
        assert gc.check(model, against={"wrong": wrong_linear_loss}).status == "mismatch"


def test_against_errors_are_model_errors():
    model = gc.load(LINEAR)

    def raises(params, data):
        raise RuntimeError("boom")

    with pytest.raises(gc.ModelError, match=r"raises raised RuntimeError: boom"):
        gc.check(model, against={"raises": raises})
    with pytest.raises(gc.ModelError, match=r"summed returned losses of shape \[\], but the model has 3 sample"):
        gc.check(model, against={"summed": lambda p, d: linear_loss(p, d).sum()})


# --- assert_agree ----------------------------------------------------------------------


def test_assert_agree_returns_the_report():
    report = gc.assert_agree(gc.load(LINEAR), at={"w": 2.0})
    assert report.ok


def test_assert_agree_message_is_the_table_and_a_reproducing_file(tmp_path):
    model = gc.loads(LINEAR_TEXT + "expected:\n  w: x*(x*w + b - y)\n  b: 2*(x*w + b - y)\n", name="halved")
    with pytest.raises(AssertionError) as info:
        gc.assert_agree(model, at={"w": 0.25, "b": 0.5})
    message = str(info.value)
    assert "mismatch" in message
    assert gc.check(model, at={"w": 0.25, "b": 0.5}).table(width=200) in message
    text = message.split("(save it as halved.yaml):\n", 1)[1]
    spec = yaml.safe_load(text)
    assert spec["params"] == {"w": 0.25, "b": 0.5}
    assert spec["check"]["points"] == 0
    saved = tmp_path / "halved.yaml"
    saved.write_text(text)
    again = gc.check(gc.load(saved))
    assert again.status == "mismatch"
    assert again.to_dict()["points"][0]["gradients"]["w"]["odd_one_out"] == "expected"


def test_assert_agree_reproducer_is_at_the_failing_random_point():
    # sqrt(s) is fine at the file's value; random points in the domain reach s = 0 only at the edge,
    # so use a domain crossing 0, where sqrt is undefined
    model = gc.Model.from_dict(
        {
            "name": "root",
            "params": {"s": {"value": 1.0, "domain": [-4.0, 4.0]}},
            "model": {"loss": "sqrt(s)"},
            "check": {"points": 6, "seed": 1},
        }
    )
    report = gc.check(model)
    failing = [p for p in report.points if p.status != "agree"]
    assert report.points[0].status == "agree" and failing
    with pytest.raises(AssertionError) as info:
        gc.assert_agree(model)
    spec = yaml.safe_load(str(info.value).split("(save it as root.yaml):\n", 1)[1])
    assert spec["params"]["s"]["value"] == float(failing[0].params["s"])
    assert spec["params"]["s"]["domain"] == [-4.0, 4.0]
    assert gc.check(gc.Model.from_dict(spec)).status == report.status


def test_assert_agree_names_user_code_it_cannot_write_into_the_file():
    with pytest.raises(AssertionError, match=r"--against wrong") as info:
        gc.assert_agree(gc.load(LINEAR), against={"wrong": wrong_linear_loss})
    assert "odd" in str(info.value) or "(wrong)" in str(info.value)


def test_assert_agree_strict_kink():
    model = gc.Model.from_dict({"params": {"w": 0.0}, "model": {"loss": "abs(w)"}})
    assert gc.assert_agree(model).status == "kink"
    with pytest.raises(AssertionError, match="kink"):
        gc.assert_agree(model, strict=True)


# --- gradient_formula ---------------------------------------------------------------


def test_gradient_formula_is_sympy():
    model = gc.load(LINEAR)
    f = model.gradient_formula("w")
    assert isinstance(f, sympy.Expr)
    sym = {s.name: s for s in f.free_symbols}  # the model's own symbols (they carry assumptions)
    assert set(sym) == {"w", "b", "x", "y"}
    w, b, x, y = (sym[n] for n in "wbxy")
    assert sympy.simplify(f - 2 * x * (x * w + b - y)) == 0
    with pytest.raises(gc.ModelError, match=r"no parameter named 'W'.*did you mean 'w'"):
        model.gradient_formula("W")


def test_gradient_formula_of_a_tensor_param():
    model = gc.Model.from_dict(
        {"params": {"V": [1.0, 2.0]}, "data": {"v": [[1.0, 3.0]]}, "model": {"loss": "dot(V, v)"}}
    )
    f = model.gradient_formula("V")
    assert f.shape == (2,)


# --- train ---------------------------------------------------------------------------


def test_train_returns_the_exported_train_result():
    assert typing.get_type_hints(gc.train)["return"] is gc.TrainResult
    result = gc.train(gc.load(LINEAR), epochs=2, lr=0.01, mode="batch")
    assert isinstance(result, gc.TrainResult)
    assert result.to_dict()["epochs"] == 2 and len(result.runs["autograd"].losses) == 2
