"""The three sources: reductions, independence, per-sample gradients."""

from __future__ import annotations

import ast
from pathlib import Path

import numpy as np
import pytest

import gradcheck as gc
from gradcheck.sources import autograd, finite_diff, symbolic

LESSON = {
    "params": {"w": 1.0},
    "data": {"x": [1.0, 2.0, 3.0], "y": [2.0, 4.0, 6.0]},
    "model": {"y_pred": "x * w", "loss": "(y_pred - y)**2"},
}
# d/dw (x*w - y)**2 = 2*x*(x*w - y) at w = 1: -2, -8, -18.
PER_SAMPLE = np.array([-2.0, -8.0, -18.0])


@pytest.mark.parametrize("source", [symbolic, autograd, finite_diff])
@pytest.mark.parametrize(("reduction", "want"), [("mean", -28 / 3), ("sum", -28.0), ("none", PER_SAMPLE)])
def test_reductions(source, reduction, want):
    model = gc.Model.from_dict({**LESSON, "reduction": reduction})
    result = source.gradients(model, model.param_values())
    np.testing.assert_allclose(result.values["w"], want, rtol=1e-10)
    assert result.values["w"].shape == np.shape(want)


def test_reduction_none_report_has_a_sample_axis():
    model = gc.Model.from_dict({**LESSON, "reduction": "none"})
    report = gc.check(model)
    g = report.points[0].gradients["w"]
    assert g.shape == (3,)
    assert report.to_dict()["points"][0]["gradients"]["w"]["shape"] == [3]
    assert report.to_dict()["points"][0]["loss"] == [1.0, 4.0, 9.0]
    assert report.status == "agree"


def test_tensor_param_with_reduction_none():
    model = gc.Model.from_dict(
        {
            "params": {"v": [1.0, -1.0]},
            "data": {"x": [[1.0, 2.0], [3.0, 4.0]]},
            "model": {"loss": "dot(v, x)**2"},
            "reduction": "none",
        }
    )
    report = gc.check(model)
    g = report.points[0].gradients["v"]
    # d/dv (v.x)^2 = 2 (v.x) x: sample 0: v.x = -1 -> [-2, -4]; sample 1: v.x = -1 -> [-6, -8]
    np.testing.assert_allclose(g.values["symbolic"], [[-2.0, -4.0], [-6.0, -8.0]])
    assert report.status == "agree"


def test_model_without_data():
    model = gc.Model.from_dict({"params": {"a": 2.0, "b": 3.0}, "model": {"loss": "a**2 * b"}})
    report = gc.check(model)
    assert report.status == "agree"
    assert float(report.points[0].gradients["a"].values["symbolic"]) == 12.0
    assert float(report.points[0].gradients["b"].values["symbolic"]) == 4.0


def test_points_zero_is_the_given_values_then_seeded_random_points():
    model = gc.Model.from_dict({**LESSON, "params": {"w": {"value": 1.0, "domain": [0.5, 2.0]}}})
    report = gc.check(model, points=3, seed=7)
    assert len(report.points) == 4
    assert float(report.points[0].params["w"]) == 1.0
    others = [float(p.params["w"]) for p in report.points[1:]]
    assert all(0.5 <= w <= 2.0 for w in others)
    again = gc.check(model, points=3, seed=7)
    assert [float(p.params["w"]) for p in again.points[1:]] == others
    assert report.status == "agree"


def test_at_overrides_the_given_values():
    model = gc.Model.from_dict(LESSON)
    report = gc.check(model, at={"w": 2.0})
    assert float(report.points[0].gradients["w"].values["symbolic"]) == 0.0


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            names.add((node.module or "").split(".")[0] or "." * node.level)
            if node.level and node.module:
                names.add(node.module.split(".")[0])
            names |= {a.name for a in node.names}
    return names


SOURCES = Path(gc.__file__).parent / "sources"


@pytest.mark.parametrize(
    ("module", "forbidden"),
    [
        *(
            (f"symbolic/{p.name}", {"torch", "autograd", "finite_diff"})
            for p in sorted((SOURCES / "symbolic").glob("*.py"))
        ),
        ("autograd.py", {"sympy", "mpmath", "symbolic", "finite_diff"}),
        ("finite_diff", {"torch", "sympy", "mpmath", "symbolic", "autograd"}),
    ],
)
def test_sources_are_independent_in_code(module, forbidden):
    files = sorted((SOURCES / module).glob("*.py")) if (SOURCES / module).is_dir() else [SOURCES / module]
    assert files
    for path in files:
        assert not (_imports(path) & forbidden), path
