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
    text = report.table()
    assert "d(per-sample loss)/d(param), from SymPy:" in text
    line = next(f for f in report.formula_lines if f.param == "w")
    assert line.text == report.formulas["w"]
    assert any(row.strip() in text for row in line.unicode.splitlines() + line.ascii.splitlines() if row.strip())


def test_formula_line_falls_back_to_one_line_when_too_wide():
    line = FormulaLine("loss", "W", (0, 1), "2*x[1]*(y_pred - y)", "big\nart", "big\nart")
    assert str(line.text_for(False, 4)) == "  dloss/dW[0, 1] = 2*x[1]*(y_pred - y)"
    assert str(line.text_for(True, 4)) == "  \u2202loss/\u2202W[0, 1] = 2*x[1]*(y_pred - y)"
    assert str(line.text_for(True, 80)) == "  big\n  art"


def test_big_tensors_are_summarized_not_printed():
    report = gc.check(mlp(1000))
    assert "W1" not in report.formulas
    assert any("formulas for 'W1' omitted" in note for note in report.notes)
    assert {f.param for f in report.formula_lines} == set(report.formulas)
