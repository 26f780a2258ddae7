"""Second order (``order=2``): the Hessian three ways, the user's double backward, kinks, the JSON fields.

Every expected Hessian is computed here by an independent route: a hand
formula, or ``torch.func.hessian`` in float64 of the loss written out in
torch by hand (not through gradcheck's interpreter).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import gradcheck as gc
from gradcheck import ModelError
from gradcheck.cli import main

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"
SOURCES = ("symbolic", "autograd", "finite_difference")


def _load(name: str) -> gc.Model:
    return gc.load(EXAMPLES / f"{name}.yaml")


def _flat(model: gc.Model, params: dict[str, np.ndarray]) -> torch.Tensor:
    return torch.cat([torch.as_tensor(np.asarray(params[k], dtype=np.float64)).reshape(-1) for k in model.params])


def _torch_hessian(model: gc.Model, params: dict[str, np.ndarray], loss) -> np.ndarray:
    """torch.func (jacrev of jacrev) in float64 of ``loss(dict of tensors) -> reduced loss``, over the flattened params."""
    names = list(model.params)
    shapes = [tuple(model.params[k].shape) for k in names]
    sizes = [int(np.prod(s, dtype=np.int64)) for s in shapes]

    def f(flat: torch.Tensor) -> torch.Tensor:
        parts = torch.split(flat, sizes)
        return loss({k: part.reshape(s) for k, part, s in zip(names, parts, shapes)})

    # reverse over reverse (torch.func.hessian is forward over reverse, which warns here)
    return torch.func.jacrev(torch.func.jacrev(f))(_flat(model, params)).numpy()


def _data(model: gc.Model) -> dict[str, torch.Tensor]:
    return {k: torch.as_tensor(v, dtype=torch.float64) for k, v in model.data.items()}


def _by_hand(name: str, model: gc.Model) -> object:
    d = _data(model)
    if name == "logistic":
        return lambda p: torch.nn.functional.binary_cross_entropy_with_logits(d["x"] @ p["w"] + p["b"], d["y"])
    if name == "mlp":

        def mlp(p):
            h = torch.tanh(d["x"] @ p["W1"].T + p["b1"])
            return ((h @ p["w2"] + p["b2"] - d["y"]) ** 2).mean()

        return mlp
    if name == "softmax_regression":
        return lambda p: -(d["y"] * torch.log_softmax(d["x"] @ p["W"].T + p["b"], dim=1)).sum(1).mean()
    raise AssertionError(name)


def _hessian_values(report: gc.Report, point: int = 0) -> dict[str, np.ndarray]:
    h = report.points[point].hessian
    return {src: np.asarray(v) for src, v in h.values.items()}


def test_lesson_hessian_is_twice_the_mean_square_of_x_from_all_three():
    model = _load("lesson")
    report = gc.check(model, order=2)
    x = model.data["x"]
    expected = 2 * np.mean(x**2)  # d2/dw2 mean((x w - y)^2)
    values = _hessian_values(report)
    for src in SOURCES:
        assert values[src].shape == (1, 1)
        assert values[src][0, 0] == pytest.approx(expected, rel=1e-12, abs=1e-12), src
    assert report.status == "agree" and report.points[0].hessian.status == "agree"


def test_linear_hessian_by_hand():
    model = _load("linear")
    x = model.data["x"]
    # loss = mean((x w + b - y)^2): H = 2 [[mean x^2, mean x], [mean x, 1]]
    expected = 2 * np.array([[np.mean(x**2), np.mean(x)], [np.mean(x), 1.0]])
    report = gc.check(model, order=2, points=1)
    assert report.points[0].hessian.entries == ["w", "b"]
    for k in range(2):  # a quadratic: the same Hessian at every point
        values = _hessian_values(report, k)
        for src in SOURCES:
            np.testing.assert_allclose(values[src], expected, rtol=1e-10, atol=1e-10, err_msg=src)
    assert report.ok


@pytest.mark.parametrize("name", ["logistic", "mlp", "softmax_regression"])
def test_example_hessians_match_torch_func_hessian_written_by_hand(name):
    model = _load(name)
    report = gc.check(model, order=2, points=1)
    for k, point in enumerate(report.points):
        expected = _torch_hessian(model, point.params, _by_hand(name, model))
        values = _hessian_values(report, k)
        scale = np.max(np.abs(expected))
        np.testing.assert_allclose(values["symbolic"], expected, rtol=1e-10, atol=1e-12 * scale)
        np.testing.assert_allclose(values["autograd"], expected, rtol=1e-10, atol=1e-12 * scale)
        np.testing.assert_allclose(values["finite_difference"], expected, rtol=1e-7, atol=1e-9 * scale)
        # the finite differences' estimate covers their true error
        fd_error = np.asarray(point.hessian.fd_error)
        assert np.all(np.abs(values["finite_difference"] - expected) <= fd_error + 1e-13 * scale)
    assert report.status == "agree"


def test_mlp_entries_are_the_flattened_elements_in_file_order():
    model = _load("mlp")
    report = gc.check(model, order=2)
    entries = report.points[0].hessian.entries
    assert entries[:3] == ["W1[0, 0]", "W1[0, 1]", "W1[1, 0]"]
    assert entries[8:] == ["b1[0]", "b1[1]", "b1[2]", "b1[3]", "w2[0]", "w2[1]", "w2[2]", "w2[3]", "b2"]
    # d2/db2^2 of mean((... + b2 - y)^2) is exactly 2
    for src in SOURCES:
        assert _hessian_values(report)[src][-1, -1] == pytest.approx(2.0, rel=1e-9), src


def test_float32_lesson_agrees_within_float32_tolerances():
    model = _load("lesson_float32")
    report = gc.check(model, order=2)
    values = _hessian_values(report)
    expected = 2 * np.mean(model.data["x"] ** 2)
    assert values["symbolic"][0, 0] == pytest.approx(expected, rel=1e-14)
    assert values["autograd"][0, 0] != expected  # float32 evaluation really happened
    for src in ("autograd", "finite_difference"):
        assert abs(values[src][0, 0] - expected) <= 1e-4 * expected, src
    assert report.dtype == "float32" and report.ok


def test_float32_mlp_agrees_within_float32_tolerances():
    model = _load("mlp")
    report = gc.check(model, order=2, dtype="float32")
    point = report.points[0]
    expected = _torch_hessian(model, point.params, _by_hand("mlp", model))
    values = _hessian_values(report)
    scale = np.max(np.abs(expected))
    np.testing.assert_allclose(values["autograd"], expected, rtol=1e-4, atol=1e-5 * scale)
    assert np.all(np.abs(values["finite_difference"] - expected) <= np.asarray(point.hessian.fd_error) + 1e-5 * scale)
    assert point.hessian.status == "agree"


# --- the user's double backward ---------------------------------------------------

# Cube (tests/fixtures/against/mymodule.py): its backward is built from differentiable ops on the
# saved input, so its double backward works.
sys.path.insert(0, str(Path(__file__).parent / "fixtures" / "against"))
from mymodule import Cube  # noqa: E402


class _DetachedCube(torch.autograd.Function):
    """u -> u**3; the backward is right but uses a detached copy of u: its own derivative is lost."""

    @staticmethod
    def forward(ctx, u):
        ctx.save_for_backward(u.detach())
        return u**3

    @staticmethod
    def backward(ctx, grad):
        (u,) = ctx.saved_tensors
        return grad * 3 * u**2


CUBE = """\
params: {w: 0.5, b: 0.25}
data: {x: [1.0, 2.0, 3.0], y: [1.0, 8.0, 27.0]}
model:
  y_pred: (x * w + b)**3
  loss: (y_pred - y)**2
"""


def _cube_loss(function):
    def fn(params, data):
        return (function.apply(data["x"] * params["w"] + params["b"]) - data["y"]) ** 2

    return fn


def test_a_correct_double_backward_agrees():
    model = gc.loads(CUBE)
    report = gc.check(model, order=2, against={"cube": _cube_loss(Cube)})
    h = report.points[0].hessian
    x, y = model.data["x"], model.data["y"]
    u = x * 0.5 + 0.25
    # per sample l = (u^3 - y)^2, dl/du = 6 u^2 (u^3 - y), d2l/du2 = 30 u^4 - 12 u y
    d2 = 30 * u**4 - 12 * u * y
    expected = np.array([[np.mean(d2 * x * x), np.mean(d2 * x)], [np.mean(d2 * x), np.mean(d2)]])
    np.testing.assert_allclose(h.values["cube"], expected, rtol=1e-12)
    assert h.status == "agree" and report.ok


def test_a_backward_that_is_not_differentiable_is_blamed_on_the_hessian_only():
    model = gc.loads(CUBE)
    report = gc.check(model, order=2, against={"detached": _cube_loss(_DetachedCube)})
    point = report.points[0]
    assert all(g.status == "agree" for g in point.gradients.values())  # its gradient is right
    h = point.hessian
    assert h.status == "mismatch" and report.status == "mismatch" and not report.ok
    odd = h.to_dict()["odd_one_out"]
    assert odd == [["detached", "detached"], ["detached", "detached"]]
    assert "detached" in report.table()


def test_the_reproducer_of_a_hessian_failure_names_order_two():
    model = gc.loads(CUBE)
    with pytest.raises(AssertionError, match="do not agree") as err:
        gc.assert_agree(model, order=2, against={"detached": _cube_loss(_DetachedCube)})
    text = str(err.value)
    assert "--order 2" in text and "order=2" in text and "--against detached" in text
    with pytest.raises(AssertionError) as err:
        gc.assert_agree(model, order=2, directions=2, seed=3, against={"detached": _cube_loss(_DetachedCube)})
    text = str(err.value)
    assert "--order 2 --directions 2" in text and "seed: 3" in text


# --- kinks ----------------------------------------------------------------------


def test_relu_squared_at_its_kink_has_smooth_gradient_but_a_hessian_kink():
    # relu(w)**2: the gradient 2 relu(w) is continuous at w = 0, its derivative jumps from 0 to 2
    model = gc.loads("params: {w: 0.0}\nmodel:\n  loss: relu(w)**2\n")
    report = gc.check(model, order=2)
    assert report.points[0].gradients["w"].status == "agree"
    h = report.points[0].hessian
    assert h.status == "kink" and report.ok and report.status == "kink"
    assert "relu" in h.notes()[0] and "second derivative does not exist" in h.notes()[0]
    assert not gc.check(model, order=2, strict=True).ok


def test_relu_squared_away_from_its_kink_agrees():
    model = gc.loads("params: {w: 0.5}\nmodel:\n  loss: relu(w)**2\n")
    values = _hessian_values(gc.check(model, order=2))
    for src in SOURCES:
        assert values[src][0, 0] == pytest.approx(2.0, rel=1e-9), src


def test_relu_kink_example_reports_a_kink_not_a_mismatch():
    report = gc.check(_load("relu_kink"), order=2)
    assert report.points[0].hessian.status == "kink"


# --- directions -----------------------------------------------------------------


def test_directional_second_order_is_u_h_v():
    model = _load("mlp")
    report = gc.check(model, order=2, directions=3)
    h = report.points[0].hessian
    point = report.points[0]
    full = _torch_hessian(model, point.params, _by_hand("mlp", model))
    from gradcheck.hessian import pairs

    us, vs = pairs(model, 3, model.check.seed)
    expected = np.einsum("ki,ij,kj->k", us, full, vs)
    for src in SOURCES:
        np.testing.assert_allclose(h.values[src], expected, rtol=1e-7, atol=1e-12, err_msg=src)
    assert h.directions and h.status == "agree"
    assert len(h.to_dict()["status"]) == 3


def test_directional_json_names_its_pairs(capsys):
    path = EXAMPLES / "mlp.yaml"
    assert main([str(path), "--order", "2", "--directions", "2", "--seed", "7", "--json"]) == 0
    h = json.loads(capsys.readouterr().out)["points"][0]["hessian"]
    model = gc.load(path)
    n = sum(p.value.size for p in model.params.values())
    assert h["rows"] == ["u[0] . H v[0]", "u[1] . H v[1]"]
    assert h["pairs"]["seed"] == 7
    u, v = np.array(h["pairs"]["u"]), np.array(h["pairs"]["v"])
    assert u.shape == v.shape == (2, n)
    np.testing.assert_allclose(np.linalg.norm(u, axis=1), 1.0, rtol=1e-12)
    # the values are u[k] . H v[k] with the listed vectors and an independently computed Hessian
    full = _torch_hessian(model, model.param_values(), _by_hand("mlp", model))
    np.testing.assert_allclose(h["values"]["symbolic"], np.einsum("ki,ij,kj->k", u, full, v), rtol=1e-9)


def test_full_hessian_json_has_no_pairs():
    h = gc.check(_load("linear"), order=2).points[0].hessian.to_dict()
    assert "pairs" not in h and "rows" not in h


# --- the report -----------------------------------------------------------------


def test_json_holds_the_hessian_fields(capsys):
    assert main([str(EXAMPLES / "linear.yaml"), "--order", "2", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    h = doc["points"][0]["hessian"]
    assert set(h) == {"entries", "values", "fd_error", "status", "odd_one_out"}
    assert h["entries"] == ["w", "b"]
    assert set(h["values"]) == set(SOURCES)
    x = np.array([1.0, 2.0, 3.0])
    np.testing.assert_allclose(h["values"]["symbolic"], 2 * np.array([[np.mean(x**2), np.mean(x)], [np.mean(x), 1]]))
    assert h["status"] == [["agree", "agree"], ["agree", "agree"]]
    assert h["odd_one_out"] == [[None, None], [None, None]]
    assert np.shape(h["fd_error"]) == (2, 2)


def test_order_one_output_has_no_hessian(capsys):
    assert main([str(EXAMPLES / "linear.yaml"), "--json"]) == 0
    assert "hessian" not in json.loads(capsys.readouterr().out)["points"][0]


def test_table_shows_the_second_order_block():
    text = gc.check(_load("mlp"), order=2).table()
    assert "second order (Hessian, 17x17): agree" in text and "d2/d" in text


def test_order_must_be_one_or_two():
    with pytest.raises(ModelError, match="order must be 1 or 2, got 3"):
        gc.check(_load("lesson"), order=3)


NO_REDUCTION = "params: {w: 1.0}\ndata: {x: [1.0, 2.0]}\nreduction: none\nmodel:\n  loss: (x*w)**2\n"


def test_order_two_needs_a_reduced_loss():
    model = gc.loads(NO_REDUCTION)
    with pytest.raises(ModelError, match=r"Hessian of the reduced loss, but the model has `reduction: none`") as err:
        gc.check(model, order=2)
    assert "use `reduction: mean` or `reduction: sum` for --order 2" in str(err.value)
    with pytest.raises(ModelError, match="reduction: none"):
        gc.train(model, mode="newton", epochs=1)


def test_order_two_with_no_reduction_on_the_command_line_is_a_message_not_a_traceback(tmp_path, capsys):
    path = tmp_path / "perp.yaml"
    path.write_text(NO_REDUCTION)
    assert main([str(path), "--order", "2"]) != 0
    err = capsys.readouterr().err
    assert str(path) in err and "reduction" in err and "use `reduction: mean`" in err
    assert "Traceback" not in err


def test_cli_rejects_order_three(capsys):
    with pytest.raises(SystemExit) as exc:
        main([str(EXAMPLES / "linear.yaml"), "--order", "3"])
    assert exc.value.code == 2
    assert "--order" in capsys.readouterr().err


# --- Newton's method --------------------------------------------------------------


@pytest.mark.parametrize("source", SOURCES)
def test_newton_lands_on_the_lesson_minimum_in_one_step(source):
    # mean((x w - y)^2) with y = 2 x is a quadratic in w: one Newton step from anywhere lands on w = 2
    result = gc.train(_load("lesson"), mode="newton", epochs=1, source=source)
    assert result.runs[source].params["w"] == pytest.approx(2.0, abs=1e-12)
    assert result.runs[source].losses[-1] == pytest.approx(0.0, abs=1e-20)


def test_newton_header_has_no_learning_rate():
    newton = gc.train(_load("lesson"), mode="newton", epochs=1, source="autograd", lr=0.5).table()
    assert "newton, 1 epochs, float" in newton and "lr" not in newton.splitlines()[0]
    assert "lr 0.5" in gc.train(_load("lesson"), mode="batch", epochs=1, source="autograd", lr=0.5).table()


def test_newton_on_linear_lands_on_both_parameters():
    result = gc.train(_load("linear"), mode="newton", epochs=1, source="autograd")
    params = result.runs["autograd"].params
    assert params["w"] == pytest.approx(2.0, abs=1e-12) and params["b"] == pytest.approx(0.0, abs=1e-12)


def test_newton_step_on_the_mlp_is_the_hand_computed_step():
    model = _load("mlp")
    start = model.param_values()
    loss = _by_hand("mlp", model)
    flat = _flat(model, start).requires_grad_(True)
    names = list(model.params)
    sizes = [model.params[k].value.size for k in names]

    def f(v):
        parts = torch.split(v, sizes)
        return loss({k: p.reshape(model.params[k].shape) for k, p in zip(names, parts)})

    g = torch.autograd.grad(f(flat), flat)[0].numpy()
    h = _torch_hessian(model, start, loss)
    expected = _flat(model, start).numpy() - np.linalg.solve(h, g)
    for source in ("symbolic", "autograd"):
        got = gc.train(model, mode="newton", epochs=1, source=source).runs[source].params
        np.testing.assert_allclose(np.concatenate([got[k].reshape(-1) for k in names]), expected, rtol=1e-9, atol=1e-12)


def test_newton_mode_in_the_model_file_and_its_error():
    model = gc.loads(
        "params: {w: 1.0}\ndata: {x: [1.0, 2.0], y: [2.0, 4.0]}\nmodel:\n  loss: (x*w - y)**2\ntrain: {mode: newton, epochs: 1}\n"
    )
    assert gc.train(model).runs["autograd"].params["w"] == pytest.approx(2.0, abs=1e-12)
    with pytest.raises(ModelError, match="mode must be sgd, batch or newton, got 'newtn'"):
        gc.loads("params: {w: 1.0}\nmodel:\n  loss: w**2\ntrain: {mode: newtn}\n")


@pytest.mark.slow
def test_directional_second_order_at_thousands_of_parameters_compiles_and_is_exact():
    # 3000 weights: a tangent line and each u . H v output are sums of thousands of terms, which the
    # symbolic pass splits into lines of partial sums (a printed chain that long does not compile)
    rng = np.random.default_rng(0)
    n = 3000
    x = rng.standard_normal((4, n))
    spec = {
        "params": {"w": (rng.standard_normal(n) / np.sqrt(n)).tolist()},
        "data": {"x": x.tolist(), "y": rng.standard_normal(4).tolist()},
        "model": {"loss": "(dot(w, x) - y)**2"},
    }
    model = gc.Model.from_dict(spec)
    from gradcheck.hessian import check_point

    # the second-order check alone (gc.check's symbolic time limit is for interactive use)
    h = check_point(model, model.param_values(), gc.Tolerance.for_dtype("float64"), "float64", directions=2, seed=0)
    us, vs = h.pairs
    # H = 2 mean(x x^T), so u . H v = 2 mean((u . x)(v . x))
    expected = [2 * np.mean((x @ u) * (x @ v)) for u, v in zip(us, vs)]
    np.testing.assert_allclose(h.values["symbolic"], expected, rtol=1e-12)
    assert h.status == "agree", h.to_dict()
