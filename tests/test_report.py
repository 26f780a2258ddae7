"""Reports: data only (no model kept), and rendering that computes nothing."""

from __future__ import annotations

import copy
import dataclasses
import pickle
import sys
from pathlib import Path

import gradcheck as gc
from gradcheck.report import FormulaLine, Report

sys.path.insert(0, str(Path(__file__).parent.parent))
from benchmarks.models import mlp  # noqa: E402

LINEAR = Path(__file__).parent.parent / "examples" / "linear.yaml"


def test_report_keeps_data_not_the_model():
    report = gc.check(gc.load(LINEAR))
    assert "model_obj" not in {f.name for f in dataclasses.fields(Report)}
    assert not any(isinstance(v, gc.Model) for v in vars(report).values())
    again = pickle.loads(pickle.dumps(report))
    assert again.table() == report.table()
    assert copy.deepcopy(report).to_dict() == report.to_dict()


def test_rendering_asks_the_model_for_nothing(monkeypatch):
    report = gc.check(gc.load(LINEAR))

    def refuse(self, name):
        raise AssertionError("rendering must not build formulas")

    monkeypatch.setattr(gc.Model, "gradient_formula", refuse)
    monkeypatch.setattr(gc.Model, "gradient_expression", refuse)
    text = report.table()
    assert "d(per-sample loss)/d(param):" in text
    line = next(f for f in report.formula_lines if f.param == "w")
    assert line.text == report.formulas["w"]
    assert f"  \u2202loss/\u2202w = {report.formulas['w']}\n" in text
    html = report._repr_html_()
    assert report.formulas_latex["w"] in html


def test_formula_line_is_one_line():
    line = FormulaLine("loss", "W", "outer(2*(y_pred - y), x)")
    assert line.text_for(False) == "  dloss/dW = outer(2*(y_pred - y), x)"
    assert line.text_for(True) == "  \u2202loss/\u2202W = outer(2*(y_pred - y), x)"


def test_big_tensors_get_one_tensor_formula_not_elements():
    model = mlp(1000)
    report = gc.check(model)
    assert set(report.formulas) == set(model.params)
    assert not any("omitted" in note for note in report.notes)
    for name, text in report.formulas.items():
        assert isinstance(text, str) and len(text) < 200, (name, text)
        assert f"{name}[" not in text  # never element by element
    assert [f.param for f in report.formula_lines] == list(model.params)
    table = report.table()
    assert sum(line.startswith("  \u2202loss/\u2202") for line in table.splitlines()) == len(model.params)
