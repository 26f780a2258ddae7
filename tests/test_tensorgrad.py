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
