"""The guarantees ``gradcheck.strategies`` documents, each tested directly.

These draw many examples but check cheaply (parsing, shapes, bounds); the
expensive three-way checks on drawn models live in ``test_properties.py``.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import yaml
from hypothesis import find, given, settings
from hypothesis import strategies as st
from hypothesis.errors import NoSuchExample

import gradcheck as gc
from gradcheck import strategies as gst

DOMAIN_MODEL = gc.Model.from_dict(
    {
        "params": {
            "s": {"value": 1.0, "domain": [0.25, 4.0]},
            "W": [[1.0, 2.0], [3.0, 4.0]],
            "b": 10.0,
        },
        "model": {"loss": "log(s) * b + sum(sum(W))"},
    }
)


@settings(max_examples=200, deadline=None)
@given(gst.points(DOMAIN_MODEL))
def test_points_shapes_and_domains(point):
    assert set(point) == {"s", "W", "b"}
    assert isinstance(point["s"], float) and isinstance(point["b"], float)
    assert np.asarray(point["W"]).shape == (2, 2)
    assert 0.25 < point["s"] < 4.0
    assert abs(point["b"] - 10.0) <= 10.0  # scale * max(1, |10|)
    for row, file_row in zip(point["W"], [[1.0, 2.0], [3.0, 4.0]]):
        for v, f in zip(row, file_row):
            assert abs(v - f) <= max(1.0, abs(f)) and math.isfinite(v)


@settings(max_examples=100, deadline=None)
@given(gst.points(DOMAIN_MODEL, dtype="float32"))
def test_points_are_exact_in_the_dtype(point):
    assert np.float32(point["s"]) == point["s"]
    assert 0.25 < point["s"] < 4.0


def test_points_shrink_toward_the_file_values():
    assert find(gst.points(DOMAIN_MODEL), lambda p: True) == {"s": 1.0, "W": [[1.0, 2.0], [3.0, 4.0]], "b": 10.0}
    shrunk = find(gst.points(DOMAIN_MODEL), lambda p: p["b"] < 9.0)
    assert shrunk["s"] == 1.0 and shrunk["W"] == [[1.0, 2.0], [3.0, 4.0]] and shrunk["b"] == 8.0


def test_points_endpoints_only_when_asked():
    assert find(gst.points(DOMAIN_MODEL, endpoints=True), lambda p: p["s"] <= 0.25)["s"] == 0.25
    with pytest.raises(NoSuchExample):
        find(gst.points(DOMAIN_MODEL), lambda p: p["s"] <= 0.25 or p["s"] >= 4.0, settings=settings(max_examples=300))


def test_points_accepts_a_dict_and_rejects_bad_arguments():
    assert find(gst.points({"params": {"w": 2.0}, "model": {"loss": "w**2"}}), lambda p: True) == {"w": 2.0}
    with pytest.raises(gc.ModelError, match="scale"):
        gst.points(DOMAIN_MODEL, scale=0.0)
    with pytest.raises(gc.ModelError, match="dtype"):
        gst.points(DOMAIN_MODEL, dtype="float16")


@settings(max_examples=300, deadline=None)
@given(gst.expressions(names=("w", "x"), max_depth=4))
def test_expressions_parse_and_use_only_the_names(text):
    model = gc.Model.from_dict({"params": {"w": 0.5}, "data": {"x": [1.0, -2.0]}, "model": {"loss": text}})
    assert model.loss == "loss"
    for fn in ("abs", "relu", "max", "min"):
        assert f"{fn}(" not in text


@settings(max_examples=300, deadline=None)
@given(gst.expressions(names=("w", "x")), st.floats(-50, 50), st.floats(-50, 50))
def test_expressions_stay_inside_the_domains(text, w, x):
    # evaluated in float64 NumPy: no nan anywhere, whatever the inputs (overflow of a huge
    # polynomial is allowed by the docstring, a domain error is not)
    from gradcheck.sources import finite_diff

    model = gc.Model.from_dict({"params": {"w": w}, "data": {"x": [x]}, "model": {"loss": text}})
    with np.errstate(all="raise", over="ignore", under="ignore"):
        value = finite_diff.losses(model, {"w": np.float64(w)}, "float64")
    assert not np.any(np.isnan(value)), text


def test_expressions_shrink_to_a_name():
    assert find(gst.expressions(names=("w", "x")), lambda t: True) == "w"
    # derandomized: the shrinker's path (and so how far it gets) does not depend on the run
    steady = settings(derandomize=True, database=None, max_examples=1000)
    assert find(gst.expressions(names=("w",), kinks=True), lambda t: "abs" in t, settings=steady) == "abs(w)"


def test_expressions_bad_arguments():
    with pytest.raises(gc.ModelError, match="at least one name"):
        gst.expressions(names=())
    with pytest.raises(gc.ModelError, match="max_depth"):
        gst.expressions(max_depth=-1)


@settings(max_examples=200, deadline=None)
@given(gst.models())
def test_models_are_valid_model_files(spec):
    model = gc.Model.from_dict(spec)
    again = gc.loads(yaml.safe_dump(spec, sort_keys=False))  # model entries are ordered
    assert set(again.params) == set(model.params) and again.reduction == model.reduction
    if "s" in spec["params"]:
        assert spec["params"]["s"]["domain"] == [0.25, 4.0]
    for value in yaml.safe_dump(spec).split():
        if value.strip("[],").replace(".", "", 1).lstrip("-").isdigit():
            assert len(value.strip("[],").partition(".")[2]) <= 2


def test_models_cover_what_they_promise():
    strategy = gst.models()
    find(strategy, lambda s: s["reduction"] == "none" and "V" in s["params"] and "s" in s["params"])
    find(strategy, lambda s: "y_pred" in s["model"] and len(s["data"]["y"]) == 4)
    assert find(gst.models(vectors=False), lambda s: True)["params"] == {"w": 0.0}


def test_models_bad_arguments():
    with pytest.raises(gc.ModelError, match="max_params"):
        gst.models(max_params=0)
    with pytest.raises(gc.ModelError, match="max_samples"):
        gst.models(max_samples=0)
