"""Training (``gradcheck train`` and ``gc.train``) against loops written here.

The references are the classic PyTorch lesson's own loop (run literally, in
float32), torch's float64 loop for the exercise, and plain-Python gradient
descent with gradients derived by hand.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import gradcheck as gc
from gradcheck.cli import main
from gradcheck.errors import ModelError

REPO = Path(__file__).resolve().parents[1]
EXAMPLES = REPO / "examples"
X, Y = [1.0, 2.0, 3.0], [2.0, 4.0, 6.0]


def lesson_loop(epochs: int = 100, lr: float = 0.01) -> tuple[list[float], list[float], float, float]:
    """The classic lesson, verbatim: per-sample steps on a float32 tensor.

    Returns w after each epoch, the mean loss after each epoch, and the
    predictions at x = 4 before and after.
    """
    import torch

    w = torch.tensor([1.0], requires_grad=True)

    def forward(x):
        return x * w

    def loss(x, y):
        y_pred = forward(x)
        return (y_pred - y) * (y_pred - y)

    before = forward(4).item()
    ws, losses = [], []
    for _epoch in range(epochs):
        for x_val, y_val in zip(X, Y, strict=True):
            l = loss(x_val, y_val)  # noqa: E741 - the lesson's name
            l.backward()
            w.data = w.data - lr * w.grad.data
            w.grad.data.zero_()
        ws.append(w.item())
        with torch.no_grad():
            losses.append(float(((torch.tensor(X) * w - torch.tensor(Y)) ** 2).mean()))
    return ws, losses, before, forward(4).item()


def exercise_torch_loop(epochs: int = 100, lr: float = 0.01) -> list[float]:
    """The exercise with torch in float64, as a user would write it."""
    import torch

    w1, w2, b = (torch.tensor(1.0, dtype=torch.float64, requires_grad=True) for _ in range(3))
    for _ in range(epochs):
        for x, y in zip(X, Y, strict=True):
            l = (w1 * x**2 + w2 * x + b - y) ** 2  # noqa: E741
            l.backward()
            for p in (w1, w2, b):
                p.data = p.data - lr * p.grad.data
                p.grad.data.zero_()
    return [w1.item(), w2.item(), b.item()]


def exercise_python_loop(epochs: int = 100, lr: float = 0.01) -> list[float]:
    """The exercise in plain Python floats, gradients by hand: d/dw1 (r**2) = 2*r*x**2, ..."""
    w1 = w2 = b = 1.0
    for _ in range(epochs):
        for x, y in zip(X, Y, strict=True):
            r = w1 * x**2 + w2 * x + b - y
            w1, w2, b = w1 - lr * 2 * r * x**2, w2 - lr * 2 * r * x, b - lr * 2 * r
    return [w1, w2, b]


@pytest.fixture(scope="module")
def lesson_json():
    """``train --json`` on the float32 lesson, run through the real command line once."""
    env = dict(os.environ, NO_COLOR="1")
    proc = subprocess.run(
        [sys.executable, "-m", "gradcheck", "train", str(EXAMPLES / "lesson_float32.yaml"),
         "--epochs", "100", "--lr", "0.01", "--mode", "sgd", "--source", "autograd", "--predict", "x=4", "--json"],
        capture_output=True, text=True, cwd=REPO, env=env, timeout=600,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == ""  # no progress off a terminal
    return json.loads(proc.stdout)


@pytest.fixture(scope="module")
def lesson_result():
    return gc.train(gc.load(EXAMPLES / "lesson_float32.yaml"), source="autograd", predict={"x": 4})


@pytest.fixture(scope="module")
def exercise_all():
    return gc.train(gc.load(EXAMPLES / "exercise.yaml"), source="all", epochs=100, lr=0.01, mode="sgd")


# --- the lesson, bit for bit ------------------------------------------------------


@pytest.mark.slow
def test_lesson_cli_prints_the_lessons_numbers(lesson_json):
    assert lesson_json["sources"]["autograd"]["params"]["w"] == 1.9999996423721313
    assert lesson_json["predict"] == {
        "inputs": {"x": 4.0},
        "output": "y_pred",
        "before": 4.0,
        "after": 7.999998569488525,
    }
    assert lesson_json["dtype"] == "float32"
    assert (lesson_json["mode"], lesson_json["epochs"], lesson_json["lr"]) == ("sgd", 100, 0.01)
    assert len(lesson_json["sources"]["autograd"]["losses"]) == 100
    assert "max_trajectory_difference" not in lesson_json


def test_lesson_matches_the_literal_torch_loop_at_every_epoch(lesson_result):
    ws, losses, before, after = lesson_loop()
    run = lesson_result.runs["autograd"]
    assert [float(t["w"]) for t in run.trajectory] == [1.0, *ws]
    assert run.losses == losses
    assert lesson_result.prediction.before == before == 4.0
    assert lesson_result.prediction.after["autograd"] == after == 7.999998569488525


def test_lesson_text_output(capsys):
    assert main(["train", str(EXAMPLES / "lesson_float32.yaml"), "--predict", "x=4"]) == 0
    out = capsys.readouterr().out
    assert "1.9999996423721313" in out
    assert "predict before training: y_pred(x=4.0) = 4.0" in out
    assert "predict after training: y_pred(x=4.0) = 7.999998569488525" in out


def test_lesson_in_float64_is_not_the_float32_answer():
    w = float(gc.train(gc.load(EXAMPLES / "lesson.yaml"), source="autograd").runs["autograd"].params["w"])
    assert w != 1.9999996423721313
    assert abs(w - 2.0) < 1e-5


# --- the exercise, three sources ---------------------------------------------------


def test_exercise_sources_agree_along_the_whole_trajectory(exercise_all):
    assert list(exercise_all.runs) == ["symbolic", "autograd", "finite_difference"]
    assert exercise_all.max_trajectory_difference <= 1e-7
    d = exercise_all.to_dict()
    assert d["max_trajectory_difference"] == exercise_all.max_trajectory_difference
    for run in exercise_all.runs.values():
        assert len(run.trajectory) == 101 and len(run.losses) == 100


def test_exercise_ends_where_torchs_float64_loop_ends(exercise_all):
    want = exercise_torch_loop()
    for name, run in exercise_all.runs.items():
        got = [float(run.params[k]) for k in ("w1", "w2", "b")]
        assert got == pytest.approx(want, rel=1e-9, abs=1e-9), name
    autograd = [float(exercise_all.runs["autograd"].params[k]) for k in ("w1", "w2", "b")]
    assert autograd == pytest.approx(want, rel=1e-13, abs=1e-13)


def test_exercise_matches_plain_python_descent(exercise_all):
    want = exercise_python_loop()
    got = [float(exercise_all.runs["symbolic"].params[k]) for k in ("w1", "w2", "b")]
    assert got == pytest.approx(want, rel=1e-12, abs=1e-12)


def test_max_trajectory_difference_is_the_largest_spread(exercise_all):
    runs = list(exercise_all.runs.values())
    spread = max(
        abs(float(a.trajectory[e][k]) - float(b.trajectory[e][k]))
        for e in range(101)
        for k in ("w1", "w2", "b")
        for a in runs
        for b in runs
    )
    assert exercise_all.max_trajectory_difference == spread
    assert spread > 0  # the three really are independent computations


def test_losses_are_the_loss_after_each_epoch(exercise_all):
    run = exercise_all.runs["autograd"]
    for epoch in (0, 49, 99):
        p = {k: float(v) for k, v in run.trajectory[epoch + 1].items()}
        want = np.mean([(p["w1"] * x**2 + p["w2"] * x + p["b"] - y) ** 2 for x, y in zip(X, Y, strict=True)])
        assert run.losses[epoch] == pytest.approx(want, rel=1e-12)
    assert run.initial_loss == pytest.approx(59 / 3, rel=1e-15)


# --- batch mode, reductions, defaults ----------------------------------------------


def test_batch_mode_matches_plain_python():
    model = gc.load(EXAMPLES / "lesson.yaml")
    w = 1.0
    for _ in range(30):
        w -= 0.05 * np.mean([2 * x * (x * w - y) for x, y in zip(X, Y, strict=True)])
    for source in ("symbolic", "autograd", "finite_difference"):
        got = float(gc.train(model, epochs=30, lr=0.05, mode="batch", source=source).runs[source].params["w"])
        assert got == pytest.approx(w, rel=1e-10), source


def test_sum_reduction_steps_on_the_sum():
    model = gc.Model.from_dict(
        {"params": {"w": 1.0}, "data": {"x": X, "y": Y}, "model": {"y_pred": "x * w", "loss": "(y_pred - y)**2"},
         "reduction": "sum"}
    )  # fmt: skip
    w = 1.0
    for _ in range(5):
        w -= 0.01 * sum(2 * x * (x * w - y) for x, y in zip(X, Y, strict=True))
    got = gc.train(model, epochs=5, lr=0.01, mode="batch", source="all")
    for run in got.runs.values():
        assert float(run.params["w"]) == pytest.approx(w, rel=1e-9)


def test_model_without_data_and_file_defaults():
    model = gc.Model.from_dict(
        {"params": {"w": 0.0}, "model": {"loss": "(w - 3)**2"}, "train": {"epochs": 7, "lr": 0.25, "mode": "batch"}}
    )
    result = gc.train(model, source="autograd")
    assert (result.epochs, result.lr, result.mode) == (7, 0.25, "batch")
    w = 0.0
    for _ in range(7):
        w -= 0.25 * 2 * (w - 3)
    assert float(result.runs["autograd"].params["w"]) == w
    assert result.prediction is None


def test_vector_predict_and_tensor_params():
    model = gc.load(EXAMPLES / "logistic.yaml")
    n = model.shape_of(next(iter(model.data)))[0]
    result = gc.train(model, epochs=2, source="all", predict={next(iter(model.data)): [0.5] * n})
    assert result.max_trajectory_difference < 1e-9
    assert isinstance(result.prediction.before, float)
    assert set(result.prediction.after) == {"symbolic", "autograd", "finite_difference"}
    assert "after_by_source" in result.to_dict()["predict"]
    assert "w[0]" in result.table()


def test_progress_is_called_once_per_step():
    calls = []
    gc.train(gc.load(EXAMPLES / "lesson.yaml"), epochs=4, source="all", progress=lambda *a: calls.append(a))
    assert len(calls) == 3 * 4 * 3
    assert calls[-1][1:] == (36, 36)


def test_symbolic_source_differentiates_once():
    """Per-sample models share the model's cache, so SymPy's work is done once, not per step."""
    from gradcheck.training import per_sample_models

    model = gc.load(EXAMPLES / "exercise.yaml")
    assert all(sub.cache is model.cache for sub in per_sample_models(model))
    gc.train(model, epochs=1, source="symbolic")
    built = {k: id(v) for k, v in model.cache.items()}
    assert built
    gc.train(model, epochs=3, source="symbolic")
    assert {k: id(v) for k, v in model.cache.items()} == built


# --- bad input -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"source": "autogard"}, r"unknown gradient source 'autogard' — did you mean 'autograd'\?"),
        ({"mode": "minibatch"}, r"mode must be one of sgd, batch, newton, got 'minibatch'"),
        ({"lr": -1.0}, r"lr must be a finite number > 0, got -1.0"),
        ({"epochs": 1.5}, r"epochs must be a whole number >= 0, got 1.5"),
        ({"predict": {"xx": 4}}, r"predict names 'xx', which is not a data column — did you mean 'x'\?"),
        ({"predict": {"x": [1, 2]}}, r"predict gives 'x' shape \[2\], but one sample of it has shape \[\]"),
        ({"predict": {"x": "four"}}, r"predict gives 'x' the value 'four', which is not numeric"),
        ({"predict": {"y": 4}}, r"predicting 'y_pred' needs 'x' — give --predict x=VALUE"),
    ],
)
def test_bad_arguments_raise_model_error(kwargs, match):
    with pytest.raises(ModelError, match=match):
        gc.train(gc.load(EXAMPLES / "lesson.yaml"), **kwargs)


@pytest.mark.parametrize(
    ("args", "match"),
    [
        (["--source", "sympy"], "unknown gradient source 'sympy'"),
        (["--predict", "x"], "--predict expects NAME=VALUE, got 'x'"),
        (["--predict", "x=four"], r"--predict x= needs a number \(or a \[list\] for a vector column\), got 'four'"),
        (["--predict", "z=4"], "predict names 'z', which is not a data column"),
        (["--plot", "no/such/dir/loss.png"], "--plot 'no/such/dir/loss.png': no such directory"),
        (["--mode", "newton", "--lr", "0.5"], r"--lr 0.5 has no effect with --mode newton .* drop --lr"),
    ],
)
def test_bad_cli_input_exits_2_with_one_line(args, match, capsys):
    import re

    assert main(["train", str(EXAMPLES / "lesson.yaml"), *args]) == 2
    err = capsys.readouterr().err
    assert err.startswith("gradcheck: error: ") and re.search(match, err), err
    assert err.count("\n") == 1


@pytest.mark.parametrize("args", [["--lr", "0"], ["--epochs", "-3"], ["--bogus"]])
def test_bad_flags_exit_2(args, capsys):
    with pytest.raises(SystemExit) as exc:
        main(["train", str(EXAMPLES / "lesson.yaml"), *args])
    assert exc.value.code == 2
    assert "gradcheck train: error:" in capsys.readouterr().err


@pytest.mark.slow
def test_help_documents_every_flag_without_importing_torch():
    code = (
        "import sys, contextlib, io\n"
        "from gradcheck.cli import main\n"
        "buf = io.StringIO()\n"
        "with contextlib.redirect_stdout(buf):\n"
        "    try:\n"
        "        main(['train', '--help'])\n"
        "    except SystemExit as e:\n"
        "        assert e.code == 0\n"
        "print(buf.getvalue())\n"
        "print('TORCH' if 'torch' in sys.modules else 'NO-TORCH')\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=REPO)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.rstrip().endswith("NO-TORCH")
    for flag in ("--epochs", "--lr", "--mode", "--source", "--predict", "--json", "--plot"):
        assert flag in proc.stdout
    for word in ("symbolic", "autograd", "finite_difference", "all", "sgd", "batch", "NAME=VALUE"):
        assert word in proc.stdout
