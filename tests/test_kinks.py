"""Kinks: sites from the expression, confirmed by one-sided derivatives (per element and along directions)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import gradcheck as gc
from gradcheck import kinks
from gradcheck.sources import finite_diff

EXAMPLES = Path(__file__).parent.parent / "examples"


def test_sites_name_the_function_the_entry_and_the_samples():
    model = gc.load(EXAMPLES / "relu_kink.yaml")
    (site,) = kinks.find_sites(model, model.param_values())
    assert site.function == "relu"
    assert site.entry == "y_pred"
    assert site.samples == [1]  # x = 2: 2 * 1 - 2 = 0
    assert site.params == {"w", "b"}


def test_no_sites_away_from_the_kink():
    model = gc.load(EXAMPLES / "relu_kink.yaml")
    assert kinks.find_sites(model, {"w": np.array(1.1), "b": np.array(-2.0)}) == []
    assert kinks.find(model, {"w": np.array(1.1), "b": np.array(-2.0)}, "float64") == {}


def test_one_sided_derivatives_at_the_relu_example():
    # The example's comment derives them by hand: dL/dw left -2, right -10/3; dL/db left -2/3, right -4/3.
    model = gc.load(EXAMPLES / "relu_kink.yaml")
    found = kinks.find(model, model.param_values(), "float64")
    assert set(found) == {"w", "b"}
    for name, left, right in [("w", -2.0, -10 / 3), ("b", -2 / 3, -4 / 3)]:
        k = found[name]
        assert float(k.left) == pytest.approx(left, rel=1e-8)
        assert float(k.right) == pytest.approx(right, rel=1e-8)
        assert bool(k.differs)
        assert 0 < float(k.error) < 1e-4 * abs(left - right)
        assert "left derivative -2" in found["w"].note() and "(counting from 0)" in found["w"].note()


def test_a_smooth_point_of_a_kinked_function_has_equal_sides():
    model = gc.Model.from_dict({"params": {"w": [0.0, 1.0]}, "model": {"loss": "sum(relu(w)**2) + abs(w[0])"}})
    k = kinks.find(model, model.param_values(), "float64")["w"]
    # w[0]: relu(w)**2 is smooth but abs(w[0]) is not; w[1] sits at no kink: equal sides.
    assert k.differs.tolist() == [True, False]
    assert k.left[0] == pytest.approx(-1.0) and k.right[0] == pytest.approx(1.0)
    assert k.left[1] == pytest.approx(2.0) and k.right[1] == pytest.approx(2.0)


def test_along_directions_the_sides_are_projected():
    # abs(w) at w = 0 along v: right derivative |v|, left -|v|; b is smooth (its share is v_b * 1).
    model = gc.Model.from_dict({"params": {"w": 0.0, "b": 0.5}, "model": {"loss": "abs(w) + b"}})
    vs = {"w": np.array([0.6, -0.8, 0.0]), "b": np.array([0.8, 0.6, 1.0])}
    k = kinks.find_along(model, model.param_values(), vs)
    assert k is not None and k.along
    np.testing.assert_allclose(k.right, np.abs(vs["w"]) + vs["b"], rtol=1e-8)
    np.testing.assert_allclose(k.left, -np.abs(vs["w"]) + vs["b"], rtol=1e-8)
    assert k.differs.tolist() == [True, True, False]
    assert "left derivative along this direction" in k.entry(0).note()
    assert kinks.find_along(model, {"w": np.array(0.3), "b": np.array(0.5)}, vs) is None


def test_an_element_line_and_the_same_direction_give_the_same_sides():
    """One one-sided function for both: the line of element i and the direction e_i agree."""
    model = gc.load(EXAMPLES / "relu_kink.yaml")
    point = model.param_values()
    for name in model.params:
        elements = finite_diff.sides(model, point, finite_diff.Lines.elements(model, name), "float64")
        e = {n: np.full((1,) + p.shape, float(n == name)) for n, p in model.params.items()}
        along = finite_diff.sides(model, point, finite_diff.Lines.along(e), "float64")
        np.testing.assert_allclose(elements[0], along[0], rtol=1e-9, err_msg=name)  # left
        np.testing.assert_allclose(elements[1], along[1], rtol=1e-9, err_msg=name)  # right
        # The estimates are rounding noise: of the same size (the element's step is rounded to the dtype).
        np.testing.assert_allclose(elements[2], along[2], rtol=0.1, err_msg=name)
