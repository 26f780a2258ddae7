"""Directional mode: K random unit directions checked three ways (``--directions K``)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest

import gradcheck as gc
from gradcheck import checker
from gradcheck.cli import main
from gradcheck.sources import finite_diff

sys.path.insert(0, str(Path(__file__).parent.parent))
from benchmarks.models import mlp  # noqa: E402

EXAMPLES = Path(__file__).parent.parent / "examples"


@pytest.mark.parametrize("name", ["linear", "logistic", "mlp", "softmax_regression", "lesson_float32"])
def test_correct_models_agree(name):
    report = gc.check(gc.load(EXAMPLES / f"{name}.yaml"), directions=4)
    assert report.status == "agree", report.table()
    assert list(report.points[0].gradients) == [f"direction[{k}]" for k in range(4)]


def test_big_mlp_agrees():
    report = gc.check(mlp(2000), directions=3)
    assert report.status == "agree", report.table()


def test_wrong_against_is_the_odd_one_out():
    model = gc.load(EXAMPLES / "linear.yaml")

    def wrong(params, data):  # drops the square's factor: the gradient is half the right one
        return (data["x"] * params["w"] + params["b"] - data["y"]).abs() ** 1.5

    def right(params, data):
        return (data["x"] * params["w"] + params["b"] - data["y"]) ** 2

    report = gc.check(model, directions=3, against={"wrong": wrong, "right": right})
    assert report.status == "mismatch"
    for g in report.points[0].gradients.values():
        assert g.status == "mismatch" and g.odd_one_out == "wrong"


def test_schema():
    report = gc.check(gc.load(EXAMPLES / "linear.yaml"), directions=2, points=1)
    doc = json.loads(json.dumps(report.to_dict()))
    assert doc["directions"] == 2
    assert len(doc["points"]) == 2
    for point in doc["points"]:
        assert set(point["gradients"]) == {"direction[0]", "direction[1]"}
        for g in point["gradients"].values():
            assert g["shape"] == []
            assert set(g) == {"shape", "values", "fd_error", "status", "odd_one_out", "note"}
            assert set(g["values"]) == {"symbolic", "autograd", "finite_difference"}
            assert isinstance(g["fd_error"], float)
    assert "directions" not in gc.check(gc.load(EXAMPLES / "linear.yaml")).to_dict()


def test_directions_are_seeded_unit_vectors_over_all_parameters():
    model = mlp(100)
    a = checker.random_directions(model, 5, seed=3)
    b = checker.random_directions(model, 5, seed=3)
    c = checker.random_directions(model, 5, seed=4)
    flat = np.concatenate([v.reshape(5, -1) for v in a.values()], axis=1)
    np.testing.assert_allclose(np.linalg.norm(flat, axis=1), 1.0)
    assert all(np.array_equal(a[k], b[k]) for k in a)
    assert not np.array_equal(a["W1"], c["W1"])
    assert {k: v.shape[1:] for k, v in a.items()} == {k: p.shape for k, p in model.params.items()}


def test_values_are_gradient_dot_direction():
    model = gc.load(EXAMPLES / "mlp.yaml")
    report = gc.check(model, directions=2)
    full = gc.check(model)
    vs = checker.random_directions(model, 2, model.check.seed)
    for k in range(2):
        want = sum(float(np.sum(full.points[0].gradients[n].values["symbolic"] * vs[n][k])) for n in model.params)
        got = float(report.points[0].gradients[f"direction[{k}]"].values["symbolic"])
        assert got == pytest.approx(want, rel=1e-13, abs=1e-15)


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_directional_fd_error_estimate_covers_the_error(dtype):
    model = mlp(60)
    point = model.param_values()
    vs = checker.random_directions(model, 6, 0)
    value, error, method = finite_diff.directional(model, point, vs, dtype)
    exact = gc.check(model, directions=6).points[0].gradients
    want = np.array([float(exact[f"direction[{k}]"].values["symbolic"]) for k in range(6)])
    assert method == ("complex step" if dtype == "float64" else "Richardson")
    assert np.all(np.abs(value - want) <= error)


def test_non_analytic_model_uses_richardson():
    model = gc.Model.from_dict(
        {
            "params": {"w": 0.3, "b": 0.2},
            "data": {"x": [1.0, -2.0, 3.0]},
            "model": {"loss": "abs(w * x + b) + relu(x * b)"},
        }
    )
    vs = checker.random_directions(model, 3, 0)
    _value, _error, method = finite_diff.directional(model, model.param_values(), vs, "float64")
    assert method == "Richardson"
    assert gc.check(model, directions=3).status == "agree"


def test_kink_is_reported_along_directions():
    report = gc.check(gc.load(EXAMPLES / "relu_kink.yaml"), directions=2)
    assert report.status == "kink"
    assert "left derivative along this direction" in report.points[0].gradients["direction[0]"].note


def test_reduction_none_per_sample():
    model = gc.Model.from_dict(
        {
            "params": {"w": 0.5, "b": 0.1},
            "data": {"x": [1.0, 2.0]},
            "model": {"loss": "(w * x + b)**2"},
            "reduction": "none",
        }
    )
    report = gc.check(model, directions=2)
    assert report.status == "agree", report.table()
    assert np.asarray(report.points[0].gradients["direction[0]"].values["finite_difference"]).shape == (2,)


def test_bad_directions_argument():
    with pytest.raises(gc.ModelError, match=r"directions must be a whole number >= 1, got -1"):
        gc.check(gc.load(EXAMPLES / "linear.yaml"), directions=-1)


def test_command_line_flag(capsys):
    assert main([str(EXAMPLES / "linear.yaml"), "--directions", "3", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["directions"] == 3 and "direction[2]" in doc["points"][0]["gradients"]
    assert main([str(EXAMPLES / "linear.yaml"), "--directions", "2"]) == 0
    assert "direction[1]" in capsys.readouterr().out
    with pytest.raises(SystemExit) as exit_:
        main([str(EXAMPLES / "linear.yaml"), "--directions", "x"])
    assert exit_.value.code == 2


def test_float32_directions_are_evaluated_in_float32():
    """Like the per-element check: float32 rounding shows, and the estimate covers it."""
    model = gc.Model.from_dict(
        {"params": {"w": 0.1, "b": 0.3}, "data": {"x": [1.0, 2.0]}, "model": {"loss": "exp(w * x + b)"}}
    )
    point = {k: np.asarray(v, dtype=np.float32).astype(np.float64) for k, v in model.param_values().items()}
    vs = checker.random_directions(model, 3, 0)
    value, error, method = finite_diff.directional(model, point, vs, "float32")
    x = np.array([1.0, 2.0])
    e = np.exp(point["w"] * x + point["b"])
    exact = vs["w"] * np.mean(x * e) + vs["b"] * np.mean(e)
    true = np.abs(value - exact)
    assert method == "Richardson"
    assert np.all(true <= error) and np.all(error <= 1e-3 * np.abs(exact))
    assert np.all(true > 1e-12)  # it was not evaluated in float64


def test_a_unit_direction_is_the_element_derivative():
    """One machinery: the derivative along e_i equals the gradient's element i, with the same method."""
    model = gc.load(EXAMPLES / "mlp.yaml")
    point = model.param_values()
    fd = finite_diff.gradients(model, point)
    for name, p in model.params.items():
        vs = {n: np.zeros((p.value.size,) + q.shape) for n, q in model.params.items()}
        vs[name].reshape(p.value.size, -1)[np.arange(p.value.size), np.arange(p.value.size)] = 1.0
        value, _error, method = finite_diff.directional(model, point, vs)
        assert method == fd.info["method"][name]
        np.testing.assert_allclose(value, fd.values[name].reshape(-1), rtol=1e-12, atol=1e-15)
