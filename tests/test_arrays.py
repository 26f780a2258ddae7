"""Numbers and nested lists -> float64 arrays, with errors that name the element."""

from __future__ import annotations

import numpy as np
import pytest

from gradcheck import arrays
from gradcheck.errors import ModelError


def fail(what, where, *, fix=None):
    return ModelError(what, fix=fix, entry=arrays.path_text(where))


def too_many():
    return ModelError("too many")


def convert(value, limit=1000):
    return arrays.to_array(value, ("params", "W"), fail, limit=limit, too_many=too_many)


def test_path_text():
    assert arrays.path_text(("params", "W1", 17, 42)) == "params.W1[17][42]"
    assert arrays.path_text(("params", "w", "init")) == "params.w.init"
    assert arrays.path_text(()) == ""


def test_numbers_and_nested_lists():
    assert convert(2).dtype == np.float64 and convert(2).shape == ()
    assert convert([[1, 2.5], [3, 4]]).tolist() == [[1.0, 2.5], [3.0, 4.0]]
    shared = [1.0, 2.0]
    assert convert([shared, shared]).tolist() == [[1.0, 2.0], [1.0, 2.0]]  # a YAML alias used twice


@pytest.mark.parametrize(
    ("value", "pattern"),
    [
        ([[1.0, 2.0], [3.0, "x"]], r"^params\.W\[1\]\[1\]: expected a number, got 'x'$"),
        ([[1.0, 2.0], [3.0, "4.0"]], r"^params\.W\[1\]\[1\]: expected a number, got '4\.0' — write it without quotes"),
        ([[1.0, 2.0], [3.0, None]], r"^params\.W\[1\]\[1\]: expected a number, got None"),
        ([[1.0, 2.0], [3.0, False]], r"^params\.W\[1\]\[1\]: expected a number, got False"),
        ([[1.0, 2.0], [3.0, {"a": 1}]], r"^params\.W\[1\]\[1\]: expected a number, got \{'a': 1\}"),
        ([[1.0, 2.0], [3.0]], r"^params\.W\[1\]: expected 2 elements, as params\.W\[0\] has, got 1: \[3\.0\]"),
        ([[[1.0], [2.0]], [[3.0], [4.0, 5.0]]], r"^params\.W\[1\]\[1\]: expected 1 elements, as params\.W\[0\]\[0\]"),
        ([[1.0, 2.0], 3.0], r"^params\.W\[1\]: expected a list of 2 numbers, got 3\.0"),
        ([1.0, [2.0]], r"^params\.W\[1\]: expected a number, got a list \[2\.0\]"),
        ([1.0, float("nan")], r"^params\.W\[1\]: values must be finite \(no \.nan or \.inf\), got nan"),
        ([[1.0, 2.0], [3.0, 10**400]], r"^params\.W\[1\]\[1\]: a number is too large for a float64"),
        ("1e-3", r"^params\.W: expected a number or nested lists of numbers, got '1e-3' — write it without quotes"),
        ([], r"^params\.W: empty value — give at least one number"),
    ],
)
def test_the_first_bad_element_is_named(value, pattern):
    with pytest.raises(ModelError, match=pattern):
        convert(value)


def test_first_problem_is_the_first_in_order():
    value = [[1.0] * 50 for _ in range(20)]
    value[17][42] = "a"
    value[19][3] = "b"
    assert arrays.first_problem(value, ("W1",)) == (("W1", 17, 42), "expected a number, got 'a'", None)
    value[17][42] = 0.5
    value[19][3] = 0.5
    assert arrays.first_problem(value, ("W1",)) is None


def test_size_limit_before_expanding_aliases():
    a = [1.0] * 10
    for _ in range(8):
        a = [a] * 10  # 10**9 numbers if expanded
    with pytest.raises(ModelError, match="too many"):
        convert(a, limit=10**6)
    assert arrays.count_numbers([[1.0, 2.0], [3.0, 4.0]], 10, too_many) == 4


def test_number_options():
    assert arrays.number(None, ("check", "rtol"), fail) is None
    assert arrays.number(3, ("check", "rtol"), fail, positive=True) == 3.0
    with pytest.raises(ModelError, match=r"^check\.atol: expected a non-negative finite number, got -1\.0"):
        arrays.number(-1, ("check", "atol"), fail, positive=True, zero=True)
    with pytest.raises(ModelError, match=r"^check\.rtol: expected a number, got True"):
        arrays.number(True, ("check", "rtol"), fail)


def test_initial_values_are_seeded_by_seed_and_name():
    def draw(spec, seed=0, name="V", domain=None):
        return arrays.initial_value(
            spec, ("params", name), fail, seed=seed, name=name, domain=domain, limit=100, limit_fix="raise it"
        )

    v = draw({"shape": [3, 2], "init": "normal", "std": 0.1})
    assert v.shape == (3, 2) and np.array_equal(v, draw({"shape": [3, 2], "init": "normal", "std": 0.1}))
    assert not np.array_equal(v, draw({"shape": [3, 2], "init": "normal", "std": 0.1}, seed=1))
    assert not np.array_equal(v, draw({"shape": [3, 2], "init": "normal", "std": 0.1}, name="U"))
    u = draw({"shape": [50], "init": "uniform"}, domain=(2.0, 3.0))
    assert np.all((u >= 2.0) & (u <= 3.0))
    assert draw({"shape": [2], "init": "constant", "value": 1.5}).tolist() == [1.5, 1.5]
    assert draw({"shape": [2], "init": "zeros"}).tolist() == [0.0, 0.0]
    with pytest.raises(ModelError, match=r"^params\.V\.shape: shape \[11, 10\] holds more than 100 numbers — raise it"):
        draw({"shape": [11, 10]})
    with pytest.raises(ModelError, match=r"^params\.V\.init: init must be one of normal, uniform, zeros, ones, const"):
        draw({"shape": [2], "init": "xavier"})
