"""Tensor-form derivatives (``Model.gradient_expression``): the round trip, each op's rule, the course forms.

The round trip is the test: every derived formula, written as the model's
``expected``, must agree with SymPy, torch and finite differences. Each op's
vector-Jacobian rule is also checked alone against torch float64's VJP at
random points, so a wrong rule fails here and not only somewhere downstream.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import gradcheck as gc

ROOT = Path(__file__).parent.parent
MODEL_FILES = sorted((ROOT / "examples").glob("*.yaml")) + sorted((ROOT / "examples" / "zoo").glob("*.yaml"))


def _with_expected(model: gc.Model) -> gc.Model:
    """``model`` with every param's derived formula as its ``expected``."""
    spec = model.to_dict()
    spec["expected"] = {name: model.gradient_expression(name) for name in model.params}
    return gc.Model.from_dict(spec, name=model.name)


def _assert_round_trip(model: gc.Model) -> gc.Report:
    report = gc.check(_with_expected(model))
    rtol = 1e-9 if model.check.dtype == "float64" else 1e-5
    for point in report.points:
        for name, grad in point.gradients.items():
            assert "expected" in grad.values, name
            want = np.asarray(grad.values["autograd"], dtype=float)  # torch: the kinks' convention too
            got = np.asarray(grad.values["expected"], dtype=float)
            np.testing.assert_allclose(got, want, rtol=rtol, atol=rtol * 1e-3, err_msg=f"{model.name}: {name}")
            assert grad.odd_one_out != "expected", (model.name, name)
    return report


@pytest.mark.parametrize("path", MODEL_FILES, ids=lambda p: p.stem)
def test_round_trip_every_model_file(path):
    model = gc.load(path)
    report = _assert_round_trip(model)
    assert report.status in ("agree", "kink"), report.table()


# --- each op's rule against torch float64's VJP ------------------------------------------

RNG = np.random.default_rng(20261128)

# values by domain: where each function is defined and smooth
DOMAINS = {
    "any": (-1.5, 1.5),
    "positive": (0.2, 2.0),
    "unit": (-0.9, 0.9),
    "above_one": (1.2, 3.0),
}
# case -> (expression in params a, b, c; their shapes; their domain)
OP_CASES: dict[str, tuple[str, dict[str, tuple[int, ...]], str]] = {
    "add_broadcast": ("a + b", {"a": (3, 2), "b": (2,)}, "any"),
    "add_size_one": ("a + b", {"a": (3, 2), "b": (3, 1)}, "any"),
    "sub_scalar": ("a - b", {"a": (), "b": (3,)}, "any"),
    "mul_broadcast": ("a * b", {"a": (2, 3), "b": (3,)}, "any"),
    "div": ("a / b", {"a": (3,), "b": (2, 3)}, "positive"),
    "pow": ("a ** b", {"a": (3,), "b": (3,)}, "positive"),
    "pow_constant": ("a ** 3 + a ** 0.5", {"a": (2, 2)}, "positive"),
    "neg": ("-a", {"a": (3,)}, "any"),
    "matmul_mm": ("a @ b", {"a": (2, 3), "b": (3, 4)}, "any"),
    "matmul_mv": ("a @ b", {"a": (2, 3), "b": (3,)}, "any"),
    "matmul_vm": ("a @ b", {"a": (3,), "b": (3, 4)}, "any"),
    "matmul_vv": ("a @ b", {"a": (3,), "b": (3,)}, "any"),
    "T": ("a.T", {"a": (2, 3)}, "any"),
    "T_vector": ("a.T", {"a": (3,)}, "any"),
    "index_int": ("a[1]", {"a": (4,)}, "any"),
    "index_negative": ("a[-1, 0]", {"a": (2, 3)}, "any"),
    "index_row": ("a[1]", {"a": (3, 2)}, "any"),
    "index_column": ("a[:, 1]", {"a": (3, 2)}, "any"),
    "index_slices": ("a[1:, ::2]", {"a": (3, 5)}, "any"),
    "index_step": ("a[1:6:2]", {"a": (7,)}, "any"),
    "index_rank3": ("a[0, 1:3]", {"a": (2, 4, 2)}, "any"),
    "index_whole": ("a[:]", {"a": (3,)}, "any"),
    "max": ("max(a, b)", {"a": (4,), "b": (4,)}, "any"),
    "min": ("min(a, b)", {"a": (2, 4), "b": (4,)}, "any"),
    "atan2": ("atan2(a, b)", {"a": (3,), "b": (3,)}, "positive"),
    "leaky_relu": ("leaky_relu(a, slope=0.2)", {"a": (5,)}, "any"),
    "elu": ("elu(a, alpha=0.7)", {"a": (5,)}, "any"),
    "where": ("where(a > 0.1, a * b, b ** 2)", {"a": (5,), "b": (5,)}, "any"),
    "compare": ("(a > b) * a + (a <= b) * b + (a < 0) + (b >= 0)", {"a": (5,), "b": (5,)}, "any"),
    "sign": ("sign(a) * a", {"a": (5,)}, "any"),
    "clamp": ("clamp(a, b, c)", {"a": (6,), "b": (6,), "c": (6,)}, "any"),
    "sum_all": ("sum(a)", {"a": (3, 4)}, "any"),
    "sum_axis0": ("sum(a, axis=0)", {"a": (3, 4)}, "any"),
    "sum_axis1": ("sum(a, axis=1)", {"a": (3, 4)}, "any"),
    "sum_keepdims": ("sum(a, axis=-1, keepdims=True)", {"a": (3, 4)}, "any"),
    "sum_rank3": ("sum(a, axis=[0, 2])", {"a": (2, 3, 2)}, "any"),
    "mean_axis1": ("mean(a, axis=1)", {"a": (3, 4)}, "any"),
    "mean_all_keepdims": ("mean(a, keepdims=True)", {"a": (3, 4)}, "any"),
    "var_all": ("var(a)", {"a": (5,)}, "any"),
    "var_axis1": ("var(a, axis=1)", {"a": (3, 4)}, "any"),
    "var_axis0_keepdims": ("var(a, axis=0, keepdims=True)", {"a": (3, 4)}, "any"),
    "dot": ("dot(a, b)", {"a": (4,), "b": (4,)}, "any"),
    "norm_all": ("norm(a)", {"a": (2, 3)}, "any"),
    "norm_axis1": ("norm(a, axis=1)", {"a": (2, 3)}, "any"),
    "logsumexp_all": ("logsumexp(a)", {"a": (2, 3)}, "any"),
    "logsumexp_axis1": ("logsumexp(a, axis=1)", {"a": (2, 3)}, "any"),
    "softmax_vector": ("softmax(a)", {"a": (4,)}, "any"),
    "softmax_axis0": ("softmax(a, axis=0)", {"a": (3, 4)}, "any"),
    "log_softmax_vector": ("log_softmax(a)", {"a": (4,)}, "any"),
    "log_softmax_axis1": ("log_softmax(a, axis=1)", {"a": (3, 4)}, "any"),
    "max_all": ("max(a)", {"a": (3, 4)}, "any"),
    "max_axis1": ("max(a, axis=1)", {"a": (3, 4)}, "any"),
    "min_axis0": ("min(a, axis=0)", {"a": (3, 4)}, "any"),
    "min_keepdims": ("min(a, axis=1, keepdims=True)", {"a": (3, 4)}, "any"),
    "outer": ("outer(a, b)", {"a": (3,), "b": (2,)}, "any"),
    "diag_vector": ("diag(a)", {"a": (3,)}, "any"),
    "diag_square": ("diag(a)", {"a": (3, 3)}, "any"),
    "diag_wide": ("diag(a)", {"a": (2, 4)}, "any"),
    "trace": ("trace(a)", {"a": (3, 3)}, "any"),
    "trace_tall": ("trace(a)", {"a": (4, 2)}, "any"),
    "reshape": ("reshape(a, [3, -1])", {"a": (2, 3, 2)}, "any"),
    "flatten": ("flatten(a)", {"a": (2, 3)}, "any"),
    "flatten_scalar": ("flatten(a)", {"a": ()}, "any"),
    "concat": ("concat(a, b, c, axis=1)", {"a": (2, 1), "b": (2, 3), "c": (2, 2)}, "any"),
    "concat_vectors": ("concat(a, b)", {"a": (2,), "b": (3,)}, "any"),
    "stack": ("stack(a, b, axis=-1)", {"a": (2, 3), "b": (2, 3)}, "any"),
    "stack_scalars": ("stack(a, b, c)", {"a": (), "b": (), "c": ()}, "any"),
    "expand": ("expand(a, [2, 3, 4])", {"a": (3, 1)}, "any"),
    "expand_scalar": ("expand(a, [3])", {"a": ()}, "any"),
    "scatter": ("scatter(a, shape=[5, 3], start=[1, 1], step=[2, 1])", {"a": (2, 2)}, "any"),
    # the layers, and the backward ops their rules are written with
    "conv1d": ("conv1d(a, b, stride=2, padding=1)", {"a": (2, 7), "b": (3, 2, 3)}, "any"),
    "conv2d": ("conv2d(a, b, stride=[1, 2], padding=1)", {"a": (2, 5, 6), "b": (3, 2, 2, 3)}, "any"),
    "maxpool2d": ("maxpool2d(a, 2)", {"a": (2, 4, 6)}, "any"),
    "avgpool2d": ("avgpool2d(a, 2, stride=1)", {"a": (2, 4, 5)}, "any"),
    "conv_transpose1d": ("conv_transpose1d(a, b, stride=2, padding=1, size=7)", {"a": (3, 4), "b": (3, 2, 3)}, "any"),
    "conv_transpose2d": (
        "conv_transpose2d(a, b, stride=[1, 2], padding=1, size=[5, 6])",
        {"a": (3, 6, 3), "b": (3, 2, 2, 3)},
        "any",
    ),
    "conv1d_weight": ("conv1d_weight(a, b, size=3, stride=2, padding=1)", {"a": (2, 7), "b": (3, 4)}, "any"),
    "conv2d_weight": (
        "conv2d_weight(a, b, size=[2, 3], stride=[1, 2], padding=1)",
        {"a": (2, 5, 6), "b": (3, 6, 3)},
        "any",
    ),
    "maxpool2d_backward": ("maxpool2d_backward(a, b, size=2)", {"a": (2, 4, 6), "b": (2, 2, 3)}, "any"),
    "avgpool2d_backward": ("avgpool2d_backward(a, size=2, stride=1, shape=[2, 4, 5])", {"a": (2, 3, 4)}, "any"),
}
UNARY_DOMAINS = {
    "log": "positive",
    "sqrt": "positive",
    "log1p": "positive",
    "asin": "unit",
    "acos": "unit",
    "atanh": "unit",
    "acosh": "above_one",
}
for _fn in (
    "exp log log1p expm1 sqrt abs sin cos tan asin acos atan sinh cosh tanh asinh acosh atanh sigmoid softplus "
    "relu erf gelu silu softsign square"
).split():
    OP_CASES[_fn] = (f"{_fn}(a)", {"a": (2, 3)}, UNARY_DOMAINS.get(_fn, "any"))


def _shape_of(text: str, shapes: dict[str, tuple[int, ...]]) -> tuple[int, ...]:
    from gradcheck.expr import infer_shapes, parse

    return infer_shapes(parse(text), shapes).shape


def _vjp_model(text: str, shapes: dict[str, tuple[int, ...]], domain: str, cotangent: np.ndarray) -> gc.Model:
    """``loss = sum(G * (text))`` with params at random points of ``domain`` and the cotangent ``G`` as data."""
    lo, hi = DOMAINS[domain]
    params = {k: np.round(RNG.uniform(lo, hi, size=s), 3) for k, s in shapes.items()}
    params = {k: (v.tolist() if v.ndim else float(v)) for k, v in params.items()}
    return gc.Model.from_dict(
        {"params": params, "data": {"G": [cotangent.tolist()]}, "model": {"loss": f"sum(G * ({text}))"}}
    )


def _evaluate(model: gc.Model, text: str) -> np.ndarray:
    """A derived formula's value (NumPy, float64) at the model's parameters and its one sample."""
    from gradcheck import interp
    from gradcheck.expr import infer_shapes, parse

    env = {k: p.value for k, p in model.params.items()} | {k: v[0] for k, v in model.data.items()}
    env = dict(interp.evaluate(model.entries, env, "numpy", np))  # a formula may name the model's entries
    shapes = {k: np.shape(v) for k, v in env.items()} | {"pi": (), "e": ()}
    return np.asarray(interp.run(infer_shapes(parse(text), shapes), env, "numpy", np), dtype=float)


def _torch_vjp(model: gc.Model, text: str) -> dict[str, np.ndarray]:
    """torch float64's VJP of ``text`` (its torch forms, torch's own backward) with the cotangent ``G``."""
    import torch

    from gradcheck import interp
    from gradcheck.expr import infer_shapes, parse

    params = {k: torch.tensor(p.value, dtype=torch.float64, requires_grad=True) for k, p in model.params.items()}
    node = infer_shapes(parse(text), {k: tuple(p.shape) for k, p in params.items()})
    out = interp.run(node, params, "torch", torch)
    grads = torch.autograd.grad(out, list(params.values()), torch.tensor(model.data["G"][0]), allow_unused=True)
    return {k: (np.zeros(p.shape) if g is None else g.numpy()) for (k, p), g in zip(params.items(), grads)}


@pytest.mark.parametrize("case", sorted(OP_CASES))
def test_each_rule_against_torch_vjp(case):
    text, shapes, domain = OP_CASES[case]
    cotangent = np.round(RNG.uniform(-1.5, 1.5, size=_shape_of(text, shapes)), 3)
    model = _vjp_model(text, shapes, domain, cotangent)
    want = _torch_vjp(model, text)
    for name in shapes:
        formula = model.gradient_expression(name)
        got = np.broadcast_to(_evaluate(model, formula), shapes[name])
        np.testing.assert_allclose(got, want[name], rtol=1e-12, atol=1e-14, err_msg=f"{case}: {name}: {formula}")


def test_every_rule_has_a_case():
    from gradcheck.expr import parse
    from gradcheck.ops import OPS

    used = {n.op for text, _, _ in OP_CASES.values() for n in parse(text).walk()}
    ruled = {name for name, op in OPS.items() if op.vjp is not None}
    assert ruled <= used | {"lt"}, sorted(ruled - used)  # `a < 0` parses as lt


# At a kink each rule follows the convention its op-table entry states (torch's value there).
KINK_CASES = {
    "relu_at_0": ("relu(a)", {"a": [0.0, -1.0, 2.0]}),
    "abs_at_0": ("abs(a)", {"a": [0.0, -1.0, 2.0]}),
    "leaky_relu_at_0": ("leaky_relu(a, slope=0.3)", {"a": [0.0, -1.0, 2.0]}),
    "elu_at_0": ("elu(a, alpha=0.5)", {"a": [0.0, -1.0, 2.0]}),
    "max_tie": ("max(a, b)", {"a": [1.0, 2.0, 0.5], "b": [1.0, 1.0, 3.0]}),
    "min_tie": ("min(a, b)", {"a": [1.0, 2.0, 0.5], "b": [1.0, 1.0, 3.0]}),
    "amax_tie_of_two": ("max(a)", {"a": [1.0, 3.0, 3.0, 0.0]}),
    "amax_tie_of_three": ("max(a, axis=1)", {"a": [[2.0, 2.0, 2.0], [0.0, 1.0, -1.0]]}),
    "amin_tie": ("min(a)", {"a": [1.0, -3.0, -3.0, 0.0]}),
    "clamp_at_bounds": (
        "clamp(a, b, c)",
        {"a": [0.0, 1.0, 0.5, 2.0], "b": [0.0, 0.0, 1.0, 0.0], "c": [1.0, 1.0, 0.0, 1.0]},
    ),
    "sign_at_0": ("sign(a) * b", {"a": [0.0, -1.0, 2.0], "b": [1.0, 2.0, 3.0]}),
}


@pytest.mark.parametrize("case", sorted(KINK_CASES))
def test_rules_at_kinks_follow_torch(case):
    text, values = KINK_CASES[case]
    shapes = {k: np.shape(v) for k, v in values.items()}
    cotangent = np.round(RNG.uniform(0.5, 1.5, size=_shape_of(text, shapes)), 3)
    model = gc.Model.from_dict(
        {"params": values, "data": {"G": [cotangent.tolist()]}, "model": {"loss": f"sum(G * ({text}))"}}
    )
    want = _torch_vjp(model, text)
    for name in values:
        formula = model.gradient_expression(name)
        got = np.broadcast_to(_evaluate(model, formula), shapes[name])
        np.testing.assert_allclose(got, want[name], rtol=1e-12, atol=1e-14, err_msg=f"{case}: {name}: {formula}")


def test_a_wrong_rule_fails_the_round_trip(monkeypatch):
    """The round trip catches a wrong rule: tanh's with the wrong sign makes `expected` the odd one out."""
    import dataclasses

    from gradcheck import ops

    model = gc.load(ROOT / "examples" / "mlp.yaml")
    monkeypatch.setitem(ops.OPS, "tanh", dataclasses.replace(ops.OPS["tanh"], vjp=("g * (1 + out**2)",)))
    report = gc.check(_with_expected(model))
    assert report.status == "mismatch"
    assert {g.odd_one_out for g in report.points[0].gradients.values() if g.status == "mismatch"} == {"expected"}
    assert {n for n, g in report.points[0].gradients.items() if g.status == "mismatch"} == {"W1", "b1"}


# --- scalar models keep SymPy's formula --------------------------------------------------


@pytest.mark.parametrize(
    ("file", "param", "text"),
    [("linear", "w", "2*x*(b + w*x - y)"), ("linear", "b", "2*b + 2*w*x - 2*y"), ("lesson", "w", "2*x*(w*x - y)")],
)
def test_scalar_models_keep_sympy_text(file, param, text):
    model = gc.load(ROOT / "examples" / f"{file}.yaml")
    assert model.gradient_expression(param) == text == str(model.gradient_formula(param))


def test_scalar_model_whose_sympy_text_is_not_model_language_gets_the_tensor_form():
    model = gc.load(ROOT / "examples" / "relu_kink.yaml")
    assert "Heaviside" in str(model.gradient_formula("w"))
    assert model.gradient_expression("w") == "2 * (y_pred - y) * (x * w + b > 0) * x"


def test_tensor_params_get_the_tensor_form_even_when_small():
    model = gc.loads("params: {w: [1.0, 2.0]}\ndata: {x: [[1.0, 2.0]], y: [1.0]}\nmodel:\n  loss: (dot(w, x) - y)**2")
    assert model.gradient_expression("w") == "2 * (dot(w, x) - y) * x"


def test_unknown_param_is_an_error_with_a_suggestion():
    model = gc.load(ROOT / "examples" / "mlp.yaml")
    with pytest.raises(gc.ModelError, match=r"no parameter named 'W2'.*did you mean 'w2'\?"):
        model.gradient_expression("W2")


def test_an_op_without_a_rule_is_a_clear_error(monkeypatch):
    import dataclasses

    from gradcheck import ops

    monkeypatch.setitem(ops.OPS, "tanh", dataclasses.replace(ops.OPS["tanh"], vjp=None))
    model = gc.load(ROOT / "examples" / "mlp.yaml")
    with pytest.raises(gc.ModelError, match=r"model\.h.*no tensor-form rule for tanh yet.*vjp= rule"):
        model.gradient_expression("W1")


def test_a_param_that_does_not_reach_the_loss_has_gradient_zero():
    model = gc.loads("params: {w: [1.0, 2.0], u: 3.0}\nmodel:\n  unused: u * 2\n  loss: sum(w**2)")
    assert model.gradient_expression("u") == "0"
    assert model.gradient_expression("w") == "2 * w"


# --- the course forms come out short --------------------------------------------------------

BATCH_NORM = """\
name: batchnorm
params:
  W: [[0.5, -0.3], [0.2, 0.8], [-0.6, 0.1]]
  gamma: [1.0, 0.5, 2.0]
  beta: [0.1, -0.2, 0.3]
data:
  x: [[0.5, -1.0], [1.0, 0.3]]
  y: [[0.1, 0.2, 0.3], [-0.5, 0.0, 0.5]]
model:
  z: W @ x
  mu: mean(z)
  s2: var(z)
  zhat: (z - mu) / sqrt(s2 + 1e-5)
  y_pred: gamma * zhat + beta
  loss: sum((y_pred - y)**2)
"""
LSTM_STEP = """\
name: lstm_step
params:
  Wf: [[0.5, -0.3, 0.2], [0.1, 0.4, -0.2]]
  Wi: [[-0.1, 0.3, 0.6], [0.2, -0.5, 0.1]]
  Wo: [[0.3, 0.2, -0.4], [-0.3, 0.1, 0.5]]
  Wc: [[0.4, -0.6, 0.1], [0.2, 0.3, -0.1]]
  bf: [0.1, 0.2]
  bi: [0.0, -0.1]
  bo: [0.2, 0.0]
  bc: [0.0, 0.1]
data:
  x: [[0.5], [-1.0]]
  h0: [[0.1, 0.2], [0.0, 0.5]]
  c0: [[0.3, -0.2], [0.2, 0.1]]
  y: [[0.1, 0.2], [-0.5, 0.0]]
model:
  xh: concat(x, h0)
  f: sigmoid(Wf @ xh + bf)
  i: sigmoid(Wi @ xh + bi)
  o: sigmoid(Wo @ xh + bo)
  u: tanh(Wc @ xh + bc)
  c: f * c0 + i * u
  h: o * tanh(c)
  loss: sum((h - y)**2)
"""
ATTENTION = """\
name: attention
params:
  Wq: [[0.5, -0.3], [0.2, 0.8]]
  Wk: [[-0.6, 0.1], [0.3, 0.4]]
  Wv: [[0.2, -0.5], [0.7, 0.1]]
data:
  X: [[[0.5, -1.0], [1.0, 0.3], [0.0, 0.7]]]
  y: [[[0.1, 0.2], [0.3, 0.4], [-0.5, 0.0]]]
model:
  Q: X @ Wq.T
  K: X @ Wk.T
  V: X @ Wv.T
  A: softmax(Q @ K.T / sqrt(2))
  Z: A @ V
  loss: sum((Z - y)**2)
"""
RNN_UNROLLED = """\
name: rnn
params:
  W: [[0.5, -0.3], [0.2, 0.8]]
  U: [[-0.6, 0.1], [0.3, 0.4]]
data:
  x: [[[0.5, -1.0], [1.0, 0.3], [0.0, 0.7], [0.2, 0.1]]]
  y: [[0.1, 0.2]]
model:
  h1: tanh(W @ x[0])
  h2: tanh(W @ x[1] + U @ h1)
  h3: tanh(W @ x[2] + U @ h2)
  h4: tanh(W @ x[3] + U @ h3)
  loss: sum((h4 - y)**2)
"""
COURSE = {"batchnorm": BATCH_NORM, "lstm_step": LSTM_STEP, "attention": ATTENTION, "rnn": RNN_UNROLLED}


@pytest.mark.parametrize("name", sorted(COURSE))
def test_course_models_round_trip(name, monkeypatch):
    from gradcheck import limits

    monkeypatch.setattr(limits, "SYMBOLIC_SECONDS", 600)  # a loaded machine: the symbolic source is not what is tested
    monkeypatch.delenv("GRADCHECK_TIME_LIMIT", raising=False)
    report = _assert_round_trip(gc.loads(COURSE[name], name=name))
    assert report.status == "agree", report.table()


@pytest.mark.parametrize(
    ("source", "param", "want"),
    [
        ("mlp", "W1", "outer(2 * (y_pred - y) * w2 * (1 - h**2), x)"),
        ("mlp", "w2", "2 * (y_pred - y) * h"),
        ("logistic", "w", "(y_pred - y) * x"),  # like terms collected: -(y * (1 - y_pred) + (y - 1) * y_pred)
        ("logistic", "b", "y_pred - y"),  # a vector param and data: not a model of scalars, so the tensor form
        ("softmax_regression", "W", "outer(sum(y) * p - y, x)"),  # p - y for a one-hot y
        ("softmax_regression", "b", "sum(y) * p - y"),
        ("lstm_step", "Wo", "outer(2 * (h - y) * h * (1 - o), xh)"),
        ("lstm_step", "Wf", "outer(2 * (h - y) * o * (1 - tanh(c)**2) * c0 * f * (1 - f), xh)"),
        ("attention", "Wv", "2 * (Z - y).T @ A @ X"),
        ("batchnorm", "gamma", "2 * (y_pred - y) * zhat"),
        # the gates, sliced out of one matmul, come back joined: da = concat(di, df, do, dg)
        (
            "zoo/lstm",
            "b",
            "concat(dc * g * i * (1 - i), dc * prev_c * f * (1 - f), dnext_h * next_h * (1 - o), dc * i * (1 - g**2))",
        ),
        # backpropagation through time: one outer product per step, each step's delta through U.T
        (
            "rnn",
            "U",
            "outer(2 * (h4 - y) * (1 - h4**2), h3) + outer(U.T @ (2 * (h4 - y) * (1 - h4**2)) * (1 - h3**2), h2) + "
            "outer(U.T @ (U.T @ (2 * (h4 - y) * (1 - h4**2)) * (1 - h3**2)) * (1 - h2**2), h1)",
        ),
    ],
)
def test_course_forms_read_as_the_courses_write_them(source, param, want):
    model = gc.loads(COURSE[source], name=source) if source in COURSE else gc.load(ROOT / "examples" / f"{source}.yaml")
    assert model.gradient_expression(param) == want


@pytest.mark.parametrize("name", sorted(COURSE))
def test_course_forms_are_short(name):
    model = gc.loads(COURSE[name], name=name)
    for param in model.params:
        assert len(model.gradient_expression(param)) < (300 if name == "rnn" else 250), param


def test_a_mean_over_the_batch_and_softmax_read_as_written():
    # mean's rule spreads g as expand(1, shape) / n; exp(log_softmax(z)) is softmax(z).
    model = gc.Model.from_dict(
        {
            "params": {"W": [[0.1, -0.2], [0.3, 0.4], [0.5, -0.6]]},
            "data": {"X": [[[1.0, 2.0, 0.5], [0.0, -1.0, 1.5]]], "Y": [[[1.0, 0.0], [0.0, 1.0]]]},
            "model": {"logits": "X @ W", "loss": "-mean(sum(Y * log_softmax(logits, axis=1), axis=1))"},
        }
    )
    text = model.gradient_expression("W")
    assert text == "X.T @ (softmax(logits, axis=1) * sum(Y / 2, axis=1, keepdims=True) - Y / 2)"
    report = _assert_round_trip(model)
    assert report.status == "agree"
