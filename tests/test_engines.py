"""Other engines as sources: ``gc.Engine``, ``gc.gradient_fn``, fuzzing an engine, ``--against`` factories.

The engines here are what an engine author would write: the ``micrograd``
package itself (its own published test values), and a tiny scalar engine
defined in this file, once right and once with one wrong backward rule,
which must be blamed by name and found by Hypothesis through
``gst.models(functions=engine.functions)``. Expected values come from the
micrograd test suite and from hand formulas, never from gradcheck.
"""

from __future__ import annotations

import json
import math
import operator
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, find, given, settings

import gradcheck as gc
from gradcheck import strategies as gst
from gradcheck.custom import against_value

REPO = Path(__file__).resolve().parents[1]

# --- micrograd (the PyPI package, a test dependency) ---------------------------------

micrograd_engine = pytest.importorskip("micrograd.engine")
Value = micrograd_engine.Value


# The engine docs/engines.md shows (examples/engines/micrograd_engine.py): one definition for both.
sys.path.insert(0, str(REPO / "examples" / "engines"))
from micrograd_engine import OPS as MICROGRAD_OPS  # noqa: E402
from micrograd_engine import grad as micrograd_grad  # noqa: E402


def micrograd(**extra):
    return gc.Engine("micrograd", leaf=Value, ops={**MICROGRAD_OPS, **extra}, grad=micrograd_grad)


# micrograd's test/test_engine.py::test_more_ops, written as a model
MORE_OPS = """\
params: {a: -4.0, b: 2.0}
model:
  c0: a + b
  d0: a * b + b**3
  c1: c0 + c0 + 1
  c2: c1 + 1 + c1 + (-a)
  d1: d0 + d0 * 2 + relu(b + a)
  d2: d1 + 3 * d1 + relu(b - a)
  e: c2 - d2
  f: e**2
  loss: f / 2.0 + 10.0 / f
check: {points: 0}
"""


def test_micrograd_agrees_on_its_own_published_values():
    report = gc.check(gc.loads(MORE_OPS, name="more_ops"), against={"micrograd": micrograd()})
    assert report.ok and report.status == "agree"
    grads = report.to_dict()["points"][0]["gradients"]
    # the values micrograd's test asserts (there checked against PyTorch)
    assert grads["a"]["values"]["micrograd"] == pytest.approx(138.83381924198252, rel=1e-12)
    assert grads["b"]["values"]["micrograd"] == pytest.approx(645.5772594752186, rel=1e-12)
    assert report.points[0].loss == pytest.approx(24.70408163265306, rel=1e-12)


def test_micrograd_runs_the_mlp_example_with_matmul_and_dot_built_from_its_ops():
    model = gc.load(REPO / "examples" / "mlp.yaml")
    report = gc.check(model, against={"micrograd": micrograd()})
    assert report.status == "agree"
    # independently: torch float64 on the same point, mean over the samples, by backward()
    point = report.points[0].params
    W1, b1, w2, b2 = (torch.tensor(point[k], requires_grad=True) for k in ("W1", "b1", "w2", "b2"))
    x = torch.tensor(model.data["x"])
    y = torch.tensor(model.data["y"])
    loss = ((torch.tanh(x @ W1.T + b1) @ w2 + b2 - y) ** 2).mean()
    loss.backward()
    grads = report.to_dict()["points"][0]["gradients"]
    for name, t in zip(("W1", "b1", "w2", "b2"), (W1, b1, w2, b2)):
        np.testing.assert_allclose(grads[name]["values"]["micrograd"], t.grad.numpy(), rtol=1e-12, atol=1e-15)


def test_engine_functions_are_its_ops_and_what_can_be_built_from_them():
    functions = set(micrograd().functions)
    assert {"relu", "tanh", "sum", "mean", "dot"} <= functions
    assert not {"sin", "exp", "softmax", "logsumexp"} & functions  # no op, or needs more than + - * / **
    without_division = gc.Engine("nodiv", leaf=Value, ops={"+": operator.add, "*": operator.mul}, grad=micrograd_grad)
    assert "sum" in without_division.functions and "dot" in without_division.functions
    assert "mean" not in without_division.functions  # the mean divides by the count


def test_reduction_sum_and_none_and_data_as_plain_floats():
    seen = []

    def mul(a, b):
        seen.extend(type(v) for v in (a, b) if not isinstance(v, Value))
        return a * b

    text = "params: {w: 0.5}\ndata: {x: [1.0, 2.0, 3.0]}\nmodel:\n  loss: tanh(w * x)\nreduction: {r}\ncheck: {{points: 0}}\n"
    for reduction in ("sum", "none"):
        model = gc.loads(text.replace("{r}", reduction).replace("{{", "{").replace("}}", "}"))
        report = gc.check(model, against={"micrograd": micrograd(**{"*": mul})})
        assert report.ok
        x = np.array([1.0, 2.0, 3.0])
        per_sample = x * (1 - np.tanh(0.5 * x) ** 2)  # d tanh(w x) / dw by hand
        want = per_sample.sum() if reduction == "sum" else per_sample
        got = report.to_dict()["points"][0]["gradients"]["w"]["values"]["micrograd"]
        np.testing.assert_allclose(got, want, rtol=1e-12)
    assert seen and set(seen) == {float}


# --- a tiny engine written here, with one wrong rule ---------------------------------


class Node:
    """A scalar reverse-mode node: value, parents with local derivatives."""

    def __init__(self, value, parents=()):
        self.value = float(value)
        self.parents = parents  # (node, d self / d node)
        self.grad = 0.0


def lift(x):
    return x if isinstance(x, Node) else Node(x)


def add(a, b):
    a, b = lift(a), lift(b)
    return Node(a.value + b.value, ((a, 1.0), (b, 1.0)))


def sub(a, b):
    a, b = lift(a), lift(b)
    return Node(a.value - b.value, ((a, 1.0), (b, -1.0)))


def mul(a, b):
    a, b = lift(a), lift(b)
    return Node(a.value * b.value, ((a, b.value), (b, a.value)))


def div(a, b):
    a, b = lift(a), lift(b)
    return Node(a.value / b.value, ((a, 1 / b.value), (b, -a.value / b.value**2)))


def power(a, k):
    assert not isinstance(k, Node), "constant exponents only"
    a = lift(a)
    return Node(a.value**k, ((a, k * a.value ** (k - 1)),))


def neg(a):
    return Node(-a.value, ((a, -1.0),))


def sin(a):
    return Node(math.sin(a.value), ((a, math.cos(a.value)),))


def wrong_sin(a):
    return Node(math.sin(a.value), ((a, -math.cos(a.value)),))  # the sign of the rule is wrong


def backward(loss, leaves):
    order, seen = [], set()

    def visit(node):
        if id(node) not in seen:
            seen.add(id(node))
            for parent, _ in node.parents:
                visit(parent)
            order.append(node)

    visit(loss)
    loss.grad = 1.0
    for node in reversed(order):
        for parent, local in node.parents:
            parent.grad += local * node.grad
    return [leaf.grad for leaf in leaves]


def tiny(name="tiny", sine=sin, **extra):
    ops = {"+": add, "-": sub, "*": mul, "/": div, "**": power, "neg": neg, "sin": sine, **extra}
    return gc.Engine(name, leaf=Node, ops=ops, grad=backward)


SINE = "params: {w: 0.7, b: -0.3}\ndata: {x: [0.5, -1.0, 2.0]}\nmodel:\n  loss: sin(w * x + b)**2\ncheck: {points: 2}\n"


def test_a_right_tiny_engine_agrees():
    report = gc.check(gc.loads(SINE), against={"tiny": tiny()})
    assert report.ok
    x = np.array([0.5, -1.0, 2.0])
    u = 0.7 * x - 0.3
    dw = np.mean(2 * np.sin(u) * np.cos(u) * x)  # by hand
    assert report.to_dict()["points"][0]["gradients"]["w"]["values"]["tiny"] == pytest.approx(dw, rel=1e-12)


def test_a_wrong_backward_rule_is_the_odd_one_out_by_the_engines_name():
    report = gc.check(gc.loads(SINE), against={"right": tiny("right"), "broken": tiny("broken", wrong_sin)})
    assert report.status == "mismatch"
    for point in report.to_dict()["points"]:
        for g in point["gradients"].values():
            assert g["status"] == "mismatch"
            assert g["odd_one_out"] == "broken"
            assert g["values"]["broken"] == pytest.approx(-g["values"]["symbolic"], rel=1e-9)
            assert g["values"]["right"] == pytest.approx(g["values"]["symbolic"], rel=1e-9)


def test_hypothesis_finds_the_wrong_rule_through_models_with_the_engines_functions():
    broken = tiny("broken", wrong_sin)
    assert broken.functions == ("sin",) or set(broken.functions) >= {"sin", "sum", "dot", "mean"}

    def fails(spec):
        try:
            gc.assert_agree(gc.Model.from_dict(spec), against={"broken": broken}, points=1)
        except AssertionError:
            return True
        return False

    smallest = find(
        gst.models(functions=broken.functions, max_depth=2),
        fails,
        settings=settings(
            max_examples=200, derandomize=True, database=None, suppress_health_check=list(HealthCheck), deadline=None
        ),
    )
    # shrunk to one parameter and a loss with the wrong rule applied to it
    text = " ".join(smallest["model"].values())
    assert "sin(" in text
    assert len(smallest["params"]) == 1 and len(text) <= 20, smallest
    with pytest.raises(AssertionError) as failed:
        gc.assert_agree(gc.Model.from_dict(smallest), against={"broken": broken}, points=1)
    message = str(failed.value)
    assert "broken" in message
    # the message ends with a model file that reproduces the failure
    reproducer = gc.loads(message.split("A model file that reproduces this", 1)[1].split("\n\n", 1)[1])
    assert not gc.check(reproducer, against={"broken": broken}).ok
    assert gc.check(reproducer, against={"right": tiny("right")}).ok


@settings(max_examples=15, derandomize=True, deadline=None, suppress_health_check=list(HealthCheck))
@given(gst.models(functions=tiny().functions))
def test_a_right_engine_agrees_on_random_models(spec):
    gc.assert_agree(gc.Model.from_dict(spec), against={"tiny": tiny()}, points=1)


@settings(max_examples=40, derandomize=True, deadline=None)
@given(gst.models(functions=("sin", "sum")))
def test_models_use_only_the_given_functions(spec):
    model = gc.Model.from_dict(spec)
    called = set()
    for node in model.entries.values():
        for sub in node.walk():
            if sub.op not in ("num", "name"):
                called.add(sub.op)
    assert called <= {"sin", "sum", "add", "sub", "mul", "div", "pow", "neg"}


def test_models_functions_must_be_functions_of_the_language():
    with pytest.raises(gc.ModelError, match=r"models\(functions=...\) names 'sigmod'.*did you mean 'sigmoid'"):
        gst.models(functions=("sigmod",))
    with pytest.raises(gc.ModelError, match=r"must be a collection of names, not one string"):
        gst.expressions(functions="sin")


# --- errors that name the engine -------------------------------------------------------


def test_an_op_the_engine_lacks_is_a_model_error_naming_op_and_engine():
    model = gc.loads("params: {w: 0.5}\nmodel:\n  y: w * 2\n  loss: exp(y)\n", path="m.yaml")
    with pytest.raises(gc.ModelError, match=r"m.yaml: model.loss: the engine 'tiny' has no op 'exp'.*functions: .*sin"):
        gc.check(model, against={"tiny": tiny()})


def test_a_structural_op_a_scalar_engine_cannot_build_is_a_model_error():
    model = gc.loads("params: {V: [0.1, 0.2, 0.3]}\nmodel:\n  loss: logsumexp(V)\n")
    with pytest.raises(gc.ModelError, match=r"the engine 'micrograd' cannot run `logsumexp`"):
        gc.check(model, against={"micrograd": micrograd()})


def test_an_engine_that_raises_is_a_model_error_naming_the_engine():
    def bad_sin(a):
        raise ZeroDivisionError("oops")

    model = gc.loads("params: {w: 0.5}\nmodel:\n  loss: sin(w)\n")
    with pytest.raises(
        gc.ModelError, match=r"model.loss: the engine 'tiny' raised ZeroDivisionError in ops\['sin'\]: oops"
    ):
        gc.check(model, against={"tiny": tiny(sine=bad_sin)})
    short = gc.Engine("short", leaf=Node, ops={"sin": sin}, grad=lambda loss, leaves: [1.0])
    two = gc.loads("params: {w: 0.5, b: 1.0}\nmodel:\n  loss: sin(w) + sin(b)\n")
    with pytest.raises(gc.ModelError, match=r"the engine 'short' has no op '\+'"):
        gc.check(two, against={"short": short})
    short = gc.Engine("short", leaf=Node, ops={"+": add, "sin": sin}, grad=lambda loss, leaves: [1.0])
    with pytest.raises(gc.ModelError, match=r"the engine 'short' returned 1 gradient\(s\) from grad for 2 leaves"):
        gc.check(two, against={"short": short})


def test_engine_arguments_are_checked():
    with pytest.raises(gc.ModelError, match=r"ops has 'sigmod'.*did you mean 'sigmoid'"):
        gc.Engine("e", leaf=Node, ops={"sigmod": sin}, grad=backward)
    with pytest.raises(gc.ModelError, match=r"Engine\('e'\): grad= must be callable"):
        gc.Engine("e", leaf=Node, ops={}, grad=None)
    with pytest.raises(gc.ModelError, match=r"ops\['sin'\] must be callable"):
        gc.Engine("e", leaf=Node, ops={"sin": 1}, grad=backward)


# --- scalar=False: whole tensors ---------------------------------------------------------


def torch_engine(**extra):
    def lift(fn):
        return lambda *args, **kw: fn(*[torch.as_tensor(a, dtype=torch.float64) for a in args], **kw)

    ops = {
        "+": lift(operator.add),
        "-": lift(operator.sub),
        "*": lift(operator.mul),
        "/": lift(operator.truediv),
        "**": lift(operator.pow),
        "neg": lift(operator.neg),
        "tanh": lift(torch.tanh),
        "@": lift(torch.matmul),
        "dot": lift(torch.dot),
        **extra,
    }
    return gc.Engine(
        "torchy",
        leaf=lambda v: torch.tensor(v, requires_grad=True),
        ops=ops,
        grad=lambda loss, leaves: torch.autograd.grad(loss, leaves, allow_unused=True),
        scalar=False,
    )


def test_a_tensor_engine_runs_the_mlp_example():
    model = gc.load(REPO / "examples" / "mlp.yaml")
    report = gc.check(model, against={"torchy": torch_engine()})
    assert report.status == "agree"
    g = report.to_dict()["points"][0]["gradients"]["W1"]
    np.testing.assert_allclose(g["values"]["torchy"], g["values"]["autograd"], rtol=1e-12, atol=1e-15)


def test_a_tensor_engine_returning_the_wrong_shape_is_a_model_error():
    engine = torch_engine(dot=lambda a, b: torch.as_tensor(a) * torch.as_tensor(b))  # no sum: shape [4]
    with pytest.raises(
        gc.ModelError,
        match=r"the engine 'torchy' returned shape \[4\] from ops\['dot'\], where the model has shape \[\]",
    ):
        gc.check(gc.load(REPO / "examples" / "mlp.yaml"), against={"torchy": engine})


# --- gradient_fn -----------------------------------------------------------------------

LINE = "params: {w: 1.5, b: 0.5}\ndata: {x: [1.0, 2.0, 3.0], y: [2.0, 4.0, 5.0]}\nmodel:\n  loss: (w * x + b - y)**2\n"


def line_gradient(params, data):
    r = params["w"] * data["x"] + params["b"] - data["y"]
    return {"w": np.mean(2 * r * data["x"]), "b": np.mean(2 * r)}


def test_gradient_functions_right_and_wrong():
    def forgot_the_two(params, data):
        return {k: v / 2 for k, v in line_gradient(params, data).items()}

    report = gc.check(
        gc.loads(LINE),
        against={"right": gc.gradient_fn(line_gradient), "wrong": gc.gradient_fn(forgot_the_two)},
        points=1,
    )
    assert report.status == "mismatch"
    for point in report.to_dict()["points"]:
        for g in point["gradients"].values():
            assert g["odd_one_out"] == "wrong"
            assert g["values"]["right"] == pytest.approx(g["values"]["symbolic"], rel=1e-12)


def test_gradient_function_per_sample_for_reduction_none():
    model = gc.loads(LINE + "reduction: none\n")

    def per_sample(params, data):
        r = params["w"] * data["x"] + params["b"] - data["y"]
        return {"w": 2 * r * data["x"], "b": 2 * r}

    assert gc.check(model, against={"mine": gc.gradient_fn(per_sample)}).ok
    with pytest.raises(
        gc.ModelError, match=r"mine returned shape \[\] as the gradient of 'w', which should have shape \[3\]"
    ):
        gc.check(model, against={"mine": gc.gradient_fn(line_gradient)})


def test_gradient_function_errors_name_the_source():
    model = gc.loads(LINE)
    with pytest.raises(gc.ModelError, match=r"mine returned no gradient for 'b'"):
        gc.check(model, against={"mine": gc.gradient_fn(lambda p, d: {"w": 0.0})})
    with pytest.raises(
        gc.ModelError, match=r"mine returned a gradient for 'ww', which is not a parameter — did you mean 'w'"
    ):
        gc.check(model, against={"mine": gc.gradient_fn(lambda p, d: {"ww": 0.0, "w": 0.0, "b": 0.0})})
    with pytest.raises(gc.ModelError, match=r"mine returned shape \[2\] as the gradient of 'w'"):
        gc.check(model, against={"mine": gc.gradient_fn(lambda p, d: {"w": [0.0, 1.0], "b": 0.0})})
    with pytest.raises(gc.ModelError, match=r"mine raised KeyError: 'z'"):
        gc.check(model, against={"mine": gc.gradient_fn(lambda p, d: d["z"])})
    with pytest.raises(gc.ModelError, match=r"mine returned list, not a dict of gradients"):
        gc.check(model, against={"mine": gc.gradient_fn(lambda p, d: [0.0, 0.0])})
    with pytest.raises(gc.ModelError, match=r"gradient_fn: 3 is not callable"):
        gc.gradient_fn(3)


# --- the command line ---------------------------------------------------------------------

ENGINE_MODULE = """\
import operator, math
import gradcheck as gc
from micrograd.engine import Value


def grad(loss, leaves):
    loss.backward()
    return [leaf.grad for leaf in leaves]


def engine(relu=lambda a: a.relu()):
    ops = {"+": operator.add, "-": operator.sub, "*": operator.mul, "/": operator.truediv,
           "**": operator.pow, "neg": operator.neg, "relu": relu}
    return gc.Engine("micrograd", leaf=Value, ops=ops, grad=grad)


def make_engine():
    return engine()


def broken_relu(a):
    out = Value(max(a.data, 0), (a,), "ReLU")

    def _backward():
        a.grad += (out.data > 0) * out.grad * 2   # the wrong rule: twice the slope

    out._backward = _backward
    return out


def make_broken_engine():
    return engine(relu=broken_relu)


def make_gradient():
    return gc.gradient_fn(lambda params, data: {"a": 0.0, "b": 0.0})


def make_nothing():
    return 42
"""


def run_cli(cwd, *args):
    env = dict(os.environ, NO_COLOR="1")
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    return subprocess.run(
        [sys.executable, "-m", "gradcheck", *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=300
    )


@pytest.mark.slow
def test_cli_against_a_factory_returning_an_engine(tmp_path):
    (tmp_path / "engines_mod.py").write_text(ENGINE_MODULE)
    (tmp_path / "more_ops.yaml").write_text(MORE_OPS)
    out = run_cli(tmp_path, "more_ops.yaml", "--against", "engines_mod:make_engine", "--json")
    assert out.returncode == 0, out.stderr
    doc = json.loads(out.stdout)
    assert doc["sources"][-1] == "engines_mod:make_engine"
    a = doc["points"][0]["gradients"]["a"]["values"]["engines_mod:make_engine"]
    assert a == pytest.approx(138.83381924198252, rel=1e-12)
    out = run_cli(tmp_path, "more_ops.yaml", "--against", "engines_mod:make_broken_engine", "--json")
    assert out.returncode == 1
    g = json.loads(out.stdout)["points"][0]["gradients"]
    assert {v["odd_one_out"] for v in g.values()} == {"engines_mod:make_broken_engine"}
    out = run_cli(tmp_path, "more_ops.yaml", "--against", "engines_mod:make_gradient")
    assert out.returncode == 1 and "engines_mod:make_gradient" in out.stdout
    out = run_cli(tmp_path, "more_ops.yaml", "--against", "engines_mod:make_nothing")
    assert out.returncode == 2
    assert "the factory returned int, not a gc.Engine or gc.gradient_fn" in out.stderr
    assert "Traceback" not in out.stderr


def test_against_value_tells_a_factory_from_a_loss_function(tmp_path, monkeypatch):
    (tmp_path / "engines_mod2.py").write_text(ENGINE_MODULE + "\n\ndef loss(params, data):\n    return params['a']\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    assert isinstance(against_value("engines_mod2:make_engine"), gc.Engine)
    assert against_value("engines_mod2:loss").__name__ == "loss"  # has parameters: a torch loss function
    with pytest.raises(gc.ModelError, match=r"the factory returned int"):
        against_value("engines_mod2:make_nothing")


@pytest.mark.slow
def test_the_fuzzing_script_in_the_docs_prints_what_the_docs_show():
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    out = subprocess.run(
        [sys.executable, "examples/engines/fuzz_micrograd.py"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert out.returncode == 0, out.stderr
    shown = (REPO / "docs" / "engines.md").read_text().split("$ python examples/engines/fuzz_micrograd.py\n", 1)[1]
    shown = shown.split("```", 1)[0]
    assert out.stdout == shown
    assert "'loss': '(w * (w + w))'" in shown  # shrunk to one parameter and two products
