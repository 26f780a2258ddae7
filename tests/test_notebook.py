"""docs/tutorial.ipynb runs top to bottom in a fresh kernel, and shows what it says it shows.

The kernel is ipykernel's ``python3`` spec, which ``pip install ipykernel``
puts into the environment (no ``ipykernel install --user`` needed); it runs
this interpreter, so it imports the gradcheck under test.
"""

from __future__ import annotations

import base64
import io
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[1]
NOTEBOOK = REPO / "docs" / "tutorial.ipynb"


def execute() -> Any:
    """The notebook, run top to bottom in a fresh kernel (from docs/, as a reader runs it)."""
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    nb = nbformat.read(NOTEBOOK, as_version=4)
    client = nbclient.NotebookClient(
        nb, kernel_name="python3", timeout=600, resources={"metadata": {"path": str(NOTEBOOK.parent)}}
    )
    client.execute()
    return nb


def _cell(nb: Any, starts: str) -> Any:
    (cell,) = [c for c in nb.cells if c.cell_type == "code" and c.source.startswith(starts)]
    return cell


def _outputs(cell: Any, mime: str) -> list[Any]:
    return [o["data"][mime] for o in cell.outputs if "data" in o and mime in o["data"]]


def _stdout(cell: Any) -> str:
    return "".join(o["text"] for o in cell.outputs if o.get("name") == "stdout")


def test_notebook_has_no_stored_outputs() -> None:
    nbformat = pytest.importorskip("nbformat")
    nb = nbformat.read(NOTEBOOK, as_version=4)
    nbformat.validate(nb)
    assert all(not c.outputs for c in nb.cells if c.cell_type == "code")


def _report_shows_as_html_table_with_verdict_and_latex(executed: Any) -> None:
    (html,) = _outputs(_cell(executed, "report = gc.check(model)"), "text/html")
    assert '<table class="gradcheck-table">' in html
    assert ">agree</span>" in html  # the verdict heads the table
    assert "-9.33333333333333" in html  # dL/dw at w = 1: mean(-2 x**2) = -28/3
    assert r"$\frac{\partial \ell}{\partial w} = " in html


def _mlp_formulas_are_tensor_forms(executed: Any) -> None:
    text = _stdout(_cell(executed, 'print("w:", model.gradient_expression("w"))'))
    lines = dict(line.split(": ", 1) for line in text.strip().splitlines())
    assert set(lines) >= {"w", "W1", "b1", "w2", "b2"}
    assert lines["W1"].startswith("outer(")
    assert all(len(v) < 200 for v in lines.values())
    (html,) = _outputs(_cell(executed, "mlp_report = gc.check(mlp)"), "text/html")
    assert r"\partial \mathbf{W}_{1}}" in html
    assert r"^{\top}" in html


def _train_result_shows_its_loss_curve(executed: Any) -> None:
    from matplotlib.image import imread

    cell = _cell(executed, "result = gc.train(model")
    # the lesson's loop in plain float64 arithmetic: w -= lr * 2 x (x w - y), per sample
    w = 1.0
    for _ in range(100):
        for x, y in zip([1.0, 2.0, 3.0], [2.0, 4.0, 6.0], strict=True):
            w -= 0.01 * 2 * x * (x * w - y)
    printed = dict(line.split(": ", 1) for line in _stdout(cell).strip().splitlines())
    assert float(printed["w after training"]) == pytest.approx(w, abs=1e-12)
    assert float(printed["predict y_pred(x=4)"]) == pytest.approx(4 * w, abs=1e-11)
    (png,) = _outputs(cell, "image/png")
    image = imread(io.BytesIO(base64.b64decode(png)), format="png")
    assert image.shape[0] > 100 and image.shape[1] > 100


def _broken_expected_is_the_odd_one_out(executed: Any) -> None:
    cell = _cell(executed, "broken = gc.loads(")
    assert _stdout(cell).strip() == "mismatch False"
    (html,) = _outputs(cell, "text/html")
    assert "mismatch (odd one out: expected)" in html


def test_tutorial_notebook_runs_and_shows_what_it_says() -> None:
    # one test, so that the kernel runs the notebook once (xdist would split a module fixture across workers)
    executed = execute()
    _report_shows_as_html_table_with_verdict_and_latex(executed)
    _mlp_formulas_are_tensor_forms(executed)
    _train_result_shows_its_loss_curve(executed)
    _broken_expected_is_the_odd_one_out(executed)
