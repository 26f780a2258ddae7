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


def test_step_curve_reproduces_the_finite_difference_source(logistic):
    """At the chosen step the curve's extrapolated error is the source's own error."""
    model, report = logistic
    for name in model.params:
        c = plots.step_curve(model, report, name)
        assert c is not None
        at = int(np.flatnonzero(c.h == c.chosen)[0])
        assert c.extrapolated[at] == pytest.approx(c.fd_error, rel=1e-3, abs=1e-15)
        assert c.exact == float(report.points[0].gradients[name].values["symbolic"][c.index])


def test_step_curve_is_a_v(logistic):
    """Too small a step loses to rounding, too large to truncation; the chosen one beats both."""
    model, report = logistic
    for name in model.params:
        c = plots.step_curve(model, report, name)
        at = int(np.flatnonzero(c.h == c.chosen)[0])
        best = c.extrapolated[at]
        assert c.central[0] > 1e3 * best  # h = eps: rounding
        assert c.central[-1] > 1e3 * best  # h = 1: truncation
        assert np.nanmin(c.central) < 1e-8


def test_step_curve_for_reduction_none_and_domains():
    model = gc.Model.from_dict(
        {"params": {"s": {"value": 0.5, "domain": [0.0, 10.0]}}, "data": {"x": [1.0, 2.0]},
         "model": {"loss": "log(s) * x"}, "reduction": "none"}
    )  # fmt: skip
    report = gc.check(model)
    c = plots.step_curve(model, report, "s")
    assert c is not None and c.index[0] in (0, 1)
    assert c.h.max() < 0.5  # the steps stay inside the domain
    assert c.exact == pytest.approx([2.0, 4.0][c.index[0]])
