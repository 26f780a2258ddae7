"""``--plot`` for ``train`` and ``check``: real PNG files, and curves whose numbers are right."""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np
import pytest

import gradcheck as gc
from gradcheck import plots
from gradcheck.cli import main

REPO = Path(__file__).resolve().parents[1]
EXAMPLES = REPO / "examples"


def png_size(path: Path) -> tuple[int, int]:
    """Width and height from the PNG header; fails unless the file is a PNG."""
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", f"{path} is not a PNG"
    assert data[12:16] == b"IHDR"
    return struct.unpack(">II", data[16:24])


def assert_drawn(path: Path) -> None:
    """A PNG of a sensible size that is not one flat colour."""
    import matplotlib.image

    width, height = png_size(path)
    assert width >= 400 and height >= 300
    pixels = matplotlib.image.imread(path)
    assert pixels.std() > 0.01
    assert (pixels[..., :3] < 0.5).mean() > 0.001  # some dark ink (lines, labels)


@pytest.fixture(scope="module")
def logistic():
    model = gc.load(EXAMPLES / "logistic.yaml")
    return model, gc.check(model)


def test_train_plot_writes_a_png(tmp_path, capsys):
    out = tmp_path / "loss.png"
    assert main(["train", str(EXAMPLES / "lesson.yaml"), "--source", "all", "--epochs", "20", "--plot", str(out)]) == 0
    assert_drawn(out)
    assert f"loss plot written to {out}" in capsys.readouterr().out


def test_train_plot_single_source_and_json(tmp_path, capsys):
    out = tmp_path / "loss.png"
    assert main(["train", str(EXAMPLES / "lesson_float32.yaml"), "--json", "--plot", str(out)]) == 0
    assert_drawn(out)
    assert capsys.readouterr().out.lstrip().startswith("{")  # JSON only on stdout


def test_check_plot_writes_a_png(tmp_path):
    out = tmp_path / "steps.png"
    assert main([str(EXAMPLES / "lesson_float32.yaml"), "--plot", str(out)]) == 0
    assert_drawn(out)


def test_check_plot_one_file_per_model(tmp_path):
    out = tmp_path / "steps.png"
    assert main([str(EXAMPLES / "lesson.yaml"), str(EXAMPLES / "mlp.yaml"), "--plot", str(out), "--json"]) == 0
    assert_drawn(tmp_path / "steps-lesson.png")
    assert_drawn(tmp_path / "steps-mlp.png")
    assert not out.exists()


def test_plot_to_a_missing_directory_is_bad_input(tmp_path, capsys):
    out = tmp_path / "nope" / "steps.png"
    assert main([str(EXAMPLES / "lesson.yaml"), "--plot", str(out)]) == 2
    assert "cannot write the plot" in capsys.readouterr().err


def test_step_curve_is_a_central_difference(logistic):
    """The curve's points are central differences of the loss, against the exact value."""
    from gradcheck.sources import finite_diff

    model, report = logistic
    point = report.points[0].params
    for name in model.params:
        c = plots.step_curve(model, report, name)
        assert c is not None
        assert c.exact == float(report.points[0].gradients[name].values["symbolic"][c.index])
        k = len(c.h) // 2
        h = c.h[k]
        up, down = ({**point, name: np.array(point[name], dtype=float)} for _ in range(2))
        up[name][c.index] += h
        down[name][c.index] -= h
        d = (float(finite_diff.reduced(model, up, "float64")) - float(finite_diff.reduced(model, down, "float64"))) / (
            (point[name][c.index] + h) - (point[name][c.index] - h)
        )
        assert c.central[k] == pytest.approx(abs(d - c.exact), rel=1e-6, abs=1e-300)
        assert c.method in ("complex step", "Richardson")


def test_step_curve_is_a_v(logistic):
    """Too small a step loses to rounding, too large to truncation; one in between beats both."""
    model, report = logistic
    for name in model.params:
        c = plots.step_curve(model, report, name)
        best = np.nanmin(c.central)
        assert best < 1e-8
        assert c.central[0] > 1e3 * best  # h = eps: rounding
        assert c.central[-1] > 1e3 * best  # h = 1: truncation


def test_richardson_steps_marked_for_float32():
    model = gc.load(EXAMPLES / "lesson_float32.yaml")
    c = plots.step_curve(model, gc.check(model), "w")
    assert c.method == "Richardson"
    assert c.chosen.size >= 1 and np.all(np.diff(c.chosen) < 0)  # halving steps
    assert c.fd_error <= c.fd_estimate


def test_step_curve_for_reduction_none_and_domains():
    model = gc.Model.from_dict(
        {"params": {"s": {"value": 0.5, "domain": [0.0, 10.0]}}, "data": {"x": [1.0, 2.0]},
         "model": {"loss": "log(s) * x"}, "reduction": "none"}
    )  # fmt: skip
    report = gc.check(model)
    c = plots.step_curve(model, report, "s")
    assert c is not None and c.index[0] in (0, 1)
    assert c.h.max() < 0.5 and np.all(c.chosen < 0.5)  # inside the domain
    assert c.exact == pytest.approx([2.0, 4.0][c.index[0]])
