"""Loading a model file: sections, names, params, data, entries, expected, shapes.

Every message is pinned with ``pytest.raises(ModelError, match=...)``.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
from helpers import BASE, error

import gradcheck as gc
from gradcheck import model
from gradcheck.errors import ModelError

# --- names ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("old", "new", "pattern"),
    [
        ("x * w + b", "x * ww + b", r"unknown name 'ww' — did you mean 'w'\?"),
        ("x * w + b", "X * w + b", r"unknown name 'X' — did you mean 'x'\?"),
        ("x * w + b", "x * zzz + b", r"unknown name 'zzz' — known names: b, e, pi, w, x, y"),
        ("x * w + b", "x * w + loss", r"unknown name 'loss' — 'loss' is defined later; move it above 'y_pred'"),
        ("(y_pred - y)**2", "(loss - y)**2", r"unknown name 'loss' — an entry cannot refer to itself"),
        ("x * w + b", "x * w + __class__", r"name '__class__' is not allowed — names may not start with '__'"),
        ("x * w + b", "x * w + sine(b)", r"unknown function 'sine' — did you mean 'sin'\?"),
        ("x * w + b", "x * w + frob(b)", r"unknown function 'frob' — functions: abs, acos, "),
    ],
)
def test_unknown_names(old, new, pattern):
    with pytest.raises(ModelError, match=pattern):
        gc.loads(BASE.replace(old, new), path="m.yaml")


@pytest.mark.parametrize(
    ("text", "pattern"),
    [
        ("params: {sin: 1.0}\nmodel: {loss: sin}\n", r"params\.sin: param 'sin' shadows the function of that name"),
        ("params: {w: 1.0}\ndata: {w: [1.0]}\nmodel: {loss: w}\n", r"data\.w: data column 'w' shadows the param"),
        ("params: {w: 1.0}\nmodel: {w: w, loss: w}\n", r"model\.w: entry 'w' shadows the param of that name"),
        ("params: {w: 1.0}\nmodel: {exp: w, loss: w}\n", r"model\.exp: entry 'exp' shadows the function"),
    ],
)
def test_shadowing(text, pattern):
    with pytest.raises(ModelError, match=pattern):
        gc.loads(text)


@pytest.mark.parametrize(
    ("text", "pattern"),
    [
        ("params: {1w: 1.0}\nmodel: {loss: w}\n", r"params\.1w: '1w' is not a valid name — use letters, digits and _"),
        ("params: {__x: 1.0}\nmodel: {loss: w}\n", r"'__x' is not a valid name — names may not start with '__'"),
        ("params: {w: 1.0}\nmodel: {a-b: w}\n", r"model\.a-b: 'a-b' is not a valid name"),
        (
            "params: {w: 1.0}\nmodel: {loss: w}\noutput: yhat\n",
            r"output: output 'yhat' is not a model entry — entries: loss",
        ),
    ],
)
def test_bad_names(text, pattern):
    with pytest.raises(ModelError, match=pattern):
        gc.loads(text)


# --- sections and options -------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "pattern"),
    [
        ("[1, 2]\n", r"a model file must be a mapping with at least `params:` and `model:`"),
        ("", r"a model file must be a mapping"),
        ("model: {loss: w}\n", r"missing section `params:` — add `params:` with at least one parameter"),
        ("params: {w: 1.0}\n", r"missing section `model:` — add `model:` with at least a `loss:` entry"),
        ("params: {}\nmodel: {loss: w}\n", r"params: params must map names to values — e\.g\. `params: \{w: 1\.0\}`"),
        ("params: {w: 1.0}\nmodel: []\n", r"model: model must map entry names to expressions"),
        ("params: {w: 1.0}\nmodle: {loss: w}\n", r"modle: unknown section 'modle' — did you mean 'model'\?"),
        ("params: {w: 1.0}\nmodel: {loss: w}\nname: 3\n", r"name: name must be text, got 3"),
        ("params: {w: 1.0}\nmodel: {loss: w}\ndescription: [1]\n", r"description must be text, got \[1\]"),
        (
            "params: {w: 1.0}\nmodel: {loss: w}\nreduction: avg\n",
            r"reduction: reduction must be one of mean, sum, none, got 'avg'",
        ),
        ("params: {w: 1.0}\nmodel: {loss: w}\ncheck: 3\n", r"check: check must be a mapping, got 3"),
        (
            "params: {w: 1.0}\nmodel: {loss: w}\ncheck: {dtipe: float32}\n",
            r"check\.dtipe: unknown option 'dtipe' — did you mean 'dtype'\?",
        ),
        (
            "params: {w: 1.0}\nmodel: {loss: w}\ncheck: {dtype: float16}\n",
            r"check\.dtype: dtype must be float64 or float32, got 'float16'",
        ),
        (
            "params: {w: 1.0}\nmodel: {loss: w}\ncheck: {rtol: -1.0}\n",
            r"check\.rtol: expected a positive finite number, got -1\.0",
        ),
        (
            "params: {w: 1.0}\nmodel: {loss: w}\ncheck: {rtol: .inf}\n",
            r"check\.rtol: expected a positive finite number, got inf",
        ),
        ("params: {w: 1.0}\nmodel: {loss: w}\ncheck: {atol: x}\n", r"check\.atol: expected a number, got 'x'"),
        (
            "params: {w: 1.0}\nmodel: {loss: w}\ncheck: {points: 1.5}\n",
            r"check\.points: expected a whole number >= 0, got 1\.5",
        ),
        (
            "params: {w: 1.0}\nmodel: {loss: w}\ncheck: {seed: -1}\n",
            r"check\.seed: expected a whole number >= 0, got -1",
        ),
        (
            "params: {w: 1.0}\nmodel: {loss: w}\ncheck: {points: true}\n",
            r"check\.points: expected a whole number >= 0, got True",
        ),
        ("params: {w: 1.0}\nmodel: {loss: w}\ntrain: [1]\n", r"train: train must be a mapping, got \[1\]"),
        (
            "params: {w: 1.0}\nmodel: {loss: w}\ntrain: {epoch: 3}\n",
            r"train\.epoch: unknown option 'epoch' — did you mean 'epochs'\?",
        ),
        (
            "params: {w: 1.0}\nmodel: {loss: w}\ntrain: {mode: adam}\n",
            r"train\.mode: mode must be sgd, batch or newton, got 'adam'",
        ),
        (
            "params: {w: 1.0}\nmodel: {loss: w}\ntrain: {lr: 0}\n",
            r"train\.lr: expected a positive finite number, got 0\.0",
        ),
        (
            "params: {w: 1.0}\nmodel: {loss: w}\ntrain: {epochs: -3}\n",
            r"train\.epochs: expected a whole number >= 0, got -3",
        ),
        (
            "params: {w: 1.0}\nmodel: {loss: w}\ntrain: {predict: 4}\n",
            r"train\.predict: predict must map data names to values, got 4",
        ),
        (
            "params: {w: 1.0}\ndata: {x: [1.0]}\nmodel: {loss: w*x}\ntrain: {predict: {xx: 4}}\n",
            r"train\.predict\.xx: predict names 'xx', which is not a data column — did you mean 'x'\?",
        ),
    ],
)
def test_sections_and_options(text, pattern):
    with pytest.raises(ModelError, match=pattern):
        gc.loads(text)


# --- params: values, init, domains ------------------------------------------------------


@pytest.mark.parametrize(
    ("param", "pattern"),
    [
        ("'1.0'", r"params\.w: expected a number or nested lists of numbers, got '1\.0'"),
        ("'1e-3'", r"params\.w: expected a number or nested lists of numbers, got '1e-3'"),
        ("[1.0, '2.0']", r"params\.w\[1\]: expected a number, got '2\.0' — write it without quotes"),
        ("true", r"expected a number or nested lists of numbers, got True"),
        ("null", r"expected a number or nested lists of numbers, got None"),
        (
            "[[1.0, 2.0], [3.0]]",
            r"params\.w\[1\]: expected 2 elements, as params\.w\[0\] has, got 1: \[3\.0\] — every row must have",
        ),
        ("[[1.0, 2.0], 3.0]", r"params\.w\[1\]: expected a list of 2 numbers, got 3\.0 — every row must have"),
        ("[1.0, [2.0]]", r"params\.w\[1\]: expected a number, got a list \[2\.0\] — every row must have"),
        ("[1.0, true]", r"params\.w\[1\]: expected a number, got True"),
        ("[]", r"params\.w: empty value — give at least one number"),
        (".nan", r"values must be finite \(no \.nan or \.inf\)"),
        ("[1.0, -.inf]", r"params\.w\[1\]: values must be finite \(no \.nan or \.inf\), got -inf"),
        ("1" + "0" * 400, r"a number is too large for a float64 — numbers must lie within ±1\.8e308"),
        (
            "{shape: [2], init: gaussian}",
            r"params\.w\.init: init must be one of normal, uniform, zeros, ones, constant, got 'gaussian'",
        ),
        ("{shape: [2, 0]}", r"params\.w\.shape: shape must be a list of positive whole numbers, got \[2, 0\]"),
        ("{shape: 3}", r"shape must be a list of positive whole numbers, got 3"),
        ("{shape: [2], sdt: 1.0}", r"params\.w\.sdt: unknown parameter option 'sdt' — did you mean 'std'\?"),
        ("{shape: [2], init: normal, std: x}", r"params\.w\.std: expected a number, got 'x'"),
        ("{value: 1.0, shape: [2]}", r"params\.w: give either `value` or `shape` with `init`, not both"),
        ("{value: 1.0, domain: [2.0, 1.0]}", r"params\.w\.domain: domain must be \[low, high\] with finite low < high"),
        ("{value: 1.0, domain: [0.0]}", r"domain must be \[low, high\] with finite low < high, got \[0\.0\]"),
        (
            "{value: 5.0, domain: [0.0, 1.0]}",
            r"params\.w: value lies outside its domain \[0\.0, 1\.0\] — move the value or the domain",
        ),
        (
            "{shape: [100000, 100000]}",
            r"params\.w\.shape: shape \[100000, 100000\] holds more than 10000000 numbers — raise",
        ),
    ],
)
def test_bad_params(param, pattern):
    with pytest.raises(ModelError, match=pattern):
        gc.loads(f"params:\n  w: {param}\nmodel:\n  loss: sum(w)\n")


# --- data ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "pattern"),
    [
        (
            "{x: [1.0, 2.0], y: [1.0]}",
            r"data\.y: has 1 samples but 'x' has 2 — every data column needs one entry per sample",
        ),
        (
            "{x: 3.0}",
            r"data\.x: a data column must be a list with one entry per sample, got 3\.0 — write `x: \[3\.0\]`",
        ),
        ("[1, 2]", r"data: data must map column names to lists of samples"),
        ("{x: [[1.0, 2.0], [1.0]]}", r"data\.x\[1\]: expected 2 elements, as data\.x\[0\] has, got 1"),
        ("{x: [1.0, b]}", r"data\.x\[1\]: expected a number, got 'b'$"),
    ],
)
def test_bad_data(data, pattern):
    with pytest.raises(ModelError, match=pattern):
        gc.loads(f"params: {{w: 1.0}}\ndata: {data}\nmodel:\n  loss: w\n")


def test_data_limit_is_its_own(monkeypatch):
    monkeypatch.setattr(model, "MAX_DATA_VALUES", 5)
    text = "params: {w: [1.0, 2.0, 3.0, 4.0, 5.0, 6.0]}\ndata: {x: [1.0, 2.0, 3.0], y: [1.0, 2.0, 3.0]}\nmodel: {loss: sum(w)*x}\n"
    with pytest.raises(ModelError, match=r"data\.y: a data column holds too many numbers \(the limit is 5 in all data"):
        gc.loads(text)
    monkeypatch.setattr(model, "MAX_DATA_VALUES", 6)
    gc.loads(text)  # params count against MAX_PARAM_VALUES, not against the data's limit


def test_param_limit(monkeypatch):
    monkeypatch.setattr(model, "MAX_PARAM_VALUES", 4)
    with pytest.raises(
        ModelError,
        match=r"params\.v: a parameter holds too many numbers \(the limit is 4 in all parameters together\) — raise gradcheck\.model\.MAX_PARAM",
    ):
        gc.loads("params: {w: [1.0, 2.0, 3.0], v: [1.0, 2.0]}\nmodel: {loss: sum(w) + sum(v)}\n")


def test_expected_errors():
    text = BASE + "expected:\n  w: 2*x*(y_pred - y)\n  bb: 1.0\n"
    with pytest.raises(ModelError, match=r"m\.yaml:12:7: expected\.bb: 'bb' is not a parameter — did you mean 'b'\?"):
        gc.loads(text, path="m.yaml")
    text = BASE + "expected:\n  w: 2*x*(y_pred - yy)\n"
    err = error(text, r"unknown name 'yy' — did you mean 'y'\?")
    assert (err.line, err.col, err.entry) == (11, 20, "expected.w")
    text = "params: {w: [1.0, 2.0]}\ndata: {x: [[1.0, 2.0, 3.0]]}\nmodel: {loss: sum(w)}\nexpected: {w: x}\n"
    with pytest.raises(
        ModelError, match=r"expected\.w: the expected gradient has per-sample shape \[3\], but 'w' has shape \[2\]"
    ):
        gc.loads(text)
    with pytest.raises(ModelError, match=r"expected: expected must map param names to gradient expressions"):
        gc.loads("params: {w: 1.0}\nmodel: {loss: w}\nexpected: [1]\n")


def test_shapes_checked_before_computing():
    text = "params: {W: [[1.0, 2.0], [3.0, 4.0]], v: [1.0, 2.0, 3.0]}\nmodel:\n  loss: sum(W @ v)\n"
    error(text, r"model\.loss: shape error: .*\[2, 2\].*\[3\]")
    with pytest.raises(
        ModelError, match=r"the loss 'loss' has per-sample shape \[2\], but must be a scalar per sample — reduce it"
    ):
        gc.loads("params: {w: [1.0, 2.0]}\nmodel: {loss: w*2}\n")


def test_billion_laughs_rejected_before_expanding():
    lines = ["params:", "  a: &a [1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0]"]
    for prev, name in zip("abcdefgh", "bcdefghi"):
        lines.append(f"  {name}: &{name} [" + ", ".join([f"*{prev}"] * 10) + "]")
    text = "\n".join(lines) + "\nmodel: {loss: sum(a)}\n"
    with pytest.raises(ModelError, match=r"params\.\w: (a parameter holds too many numbers|parameters hold more than)"):
        gc.loads(text)
    with pytest.raises(ModelError, match=r"data\.\w: a data column holds too many numbers"):
        gc.loads("params: {w: 1.0}\n" + text.replace("params:", "data:").replace("sum(a)", "w"))


# --- constants: a user's `e` or `pi` wins (issue 9, fix 1) ----------------------------------

SHADOWING = """\
params: {e: 0.7, w: 2.0}
data: {pi: [1.0, 2.0, 3.0], y: [1.0, 0.0, 2.0]}
model:
  y_pred: pi * w + e * exp(1)
  loss: (y_pred - y)**2 + abs(e * pi - 1)
expected:
  e: 2*(y_pred - y)*exp(1) + pi*sign_of
  w: 2*(y_pred - y)*pi
"""


def test_param_and_data_column_named_like_constants_win():
    # d/de of abs(e*pi - 1) is pi where e*pi > 1 (samples 2, 3) and -pi where it is < 1 (sample 1)
    # (at e = 0.7: e*pi = 0.7, 1.4, 2.1, no sample at the kink)
    text = SHADOWING.replace("pi*sign_of", "pi*(e*pi - 1)/abs(e*pi - 1)")
    m = gc.loads(text)
    assert set(m.params) == {"e", "w"} and set(m.data) == {"pi", "y"}
    report = gc.check(m)
    assert report.status == "agree", report.to_dict()
    doc = report.to_dict()["points"][0]
    pi = np.array([1.0, 2.0, 3.0])
    y = np.array([1.0, 0.0, 2.0])
    residual = pi * 2.0 + 0.7 * math.e - y
    by_hand = {
        "e": np.mean(2 * residual * math.e + pi * np.sign(0.7 * pi - 1)),
        "w": np.mean(2 * residual * pi),
    }
    for name, want in by_hand.items():
        values = doc["gradients"][name]["values"]
        assert set(values) >= {"symbolic", "autograd", "finite_difference", "expected"}
        for source, got in values.items():
            assert got == pytest.approx(want, rel=1e-9), (name, source)
    assert doc["loss"] == pytest.approx(np.mean(residual**2 + np.abs(0.7 * pi - 1)), rel=1e-12)


def test_entry_named_e_wins_and_exp_1_stays_eulers_number():
    # micrograd's own test writes `e = c - d`
    m = gc.loads("params: {c: 2.0, d: -4.0}\nmodel:\n  e: c - d\n  loss: e * pi + exp(1) * c + e**2\n")
    report = gc.check(m)
    assert report.status == "agree"
    grads = report.to_dict()["points"][0]["gradients"]
    # loss = (c - d)*pi + E*c + (c - d)**2 with c - d = 6
    for source, got in grads["c"]["values"].items():
        assert got == pytest.approx(math.pi + math.e + 12.0, rel=1e-9), source
    for source, got in grads["d"]["values"].items():
        assert got == pytest.approx(-math.pi - 12.0, rel=1e-9), source
    assert report.to_dict()["points"][0]["loss"] == pytest.approx(6 * math.pi + 2 * math.e + 36, rel=1e-12)


def test_constant_folding_sees_the_users_names():
    # `1/(e - e)` is a division by zero only when `e` is Euler's number folded to a constant;
    # a user's `e` makes it an expression of a param (undefined at the point, reported, not refused)
    with pytest.raises(ModelError, match=r"model\.loss: constant 'log\(e - e\)' is not a finite float64 number"):
        gc.loads("params: {w: 1.0}\nmodel: {loss: w + log(e - e)}\n")
    m = gc.loads("params: {e: 1.0}\nmodel: {loss: e + log(e)}\n")
    assert gc.check(m).status == "agree"
    with pytest.raises(
        ModelError, match=r"model\.loss: constant '10\*\*pi\*\*9' is not a finite float64 number \(inf\)"
    ):
        gc.loads("params: {w: 1.0}\nmodel: {loss: w * 10**pi**9}\n")
    gc.loads("params: {pi: 1.0}\nmodel: {loss: 10**pi**9}\n")  # the user's pi: no constant to fold


def test_a_users_e_still_clashes_with_another_users_e():
    with pytest.raises(ModelError, match=r"data\.e: data column 'e' shadows the param of that name — rename"):
        gc.loads("params: {e: 1.0}\ndata: {e: [1.0]}\nmodel: {loss: e}\n")
    with pytest.raises(ModelError, match=r"model\.pi: entry 'pi' shadows the data column of that name"):
        gc.loads("params: {w: 1.0}\ndata: {pi: [1.0]}\nmodel: {pi: w, loss: pi}\n")


# --- numbers as YAML 1.2 reads them (issue 9, fix 3) ----------------------------------------


def test_exponent_without_dot_is_a_number_everywhere():
    text = (
        "params:\n  w: 5e-06\n  W: [[1e-3, 2E+2], [-3e0, .5]]\n"
        "data:\n  x: [1e0, 2e0]\n"
        "model:\n  loss: sum(W) * x * w\n"
        "check: {rtol: 1e-5, atol: 1e-12}\ntrain: {lr: 1e-2}\n"
    )
    m = gc.loads(text)
    assert m.params["w"].value == 5e-06
    assert m.params["W"].value.tolist() == [[1e-3, 200.0], [-3.0, 0.5]]
    assert m.data["x"].tolist() == [1.0, 2.0]
    assert (m.check.rtol, m.check.atol, m.train.lr) == (1e-5, 1e-12, 1e-2)


def test_json_dumped_matrix_loads_and_a_bad_cell_is_named():
    rng = np.random.default_rng(0)
    matrix = (rng.standard_normal((20, 50)) * 1e-5).tolist()
    import json

    text = "params:\n  W1: " + json.dumps(matrix) + "\nmodel:\n  loss: sum(W1)\n"
    assert "e-" in text  # json writes small numbers as 5e-06, which YAML 1.1 reads as text
    m = gc.loads(text, path="gen.yaml")
    assert np.array_equal(m.params["W1"].value, np.array(matrix))
    matrix[17][42] = "0.0095x"
    err = error(
        "params:\n  W1: " + json.dumps(matrix) + "\nmodel:\n  loss: sum(W1)\n",
        r"params\.W1\[17\]\[42\]: expected a number, got '0\.0095x'",
        path="gen.yaml",
    )
    assert err.entry == "params.W1[17][42]"
    assert str(err).startswith("gen.yaml:2:")
    assert "params.W1[17][42]: expected a number, got '0.0095x'" in str(err)
    line = ("params:\n  W1: " + json.dumps(matrix)).splitlines()[1]
    assert line[err.col - 1 :].startswith('"0.0095x"')


def test_integers_stay_integers():
    m = gc.loads("params: {w: 1.0}\nmodel: {loss: w}\ncheck: {points: 3, seed: 10}\ntrain: {epochs: 1_0}\n")
    assert (m.check.points, m.check.seed, m.train.epochs) == (3, 10, 10)
    with pytest.raises(ModelError, match=r"check\.points: expected a whole number >= 0, got 3\.0"):
        gc.loads("params: {w: 1.0}\nmodel: {loss: w}\ncheck: {points: 3e0}\n")


def test_users_e_where_a_sample_is_undefined():
    # at e = 0.5, pi = 2 the expected gradient divides 0 by 0: that sample is evaluated alone,
    # and there too the user's `e` must not be read as Euler's number (it was a TypeError)
    text = SHADOWING.replace("pi*sign_of", "pi*(e*pi - 1)/abs(e*pi - 1)").replace("e: 0.7", "e: 0.5")
    doc = gc.check(gc.loads(text)).to_dict()["points"][0]["gradients"]
    pi = np.array([1.0, 2.0, 3.0])
    residual = pi * 2.0 + 0.5 * math.e - np.array([1.0, 0.0, 2.0])
    for source, got in doc["w"]["values"].items():
        assert got == pytest.approx(np.mean(2 * residual * pi), rel=1e-9), source


def test_shapes_name_every_param_column_and_entry():
    model = gc.load(Path(__file__).parent.parent / "examples" / "mlp.yaml")
    shapes = model.shapes
    assert set(shapes) == set(model.params) | set(model.data) | set(model.entries)
    assert shapes["W1"] == model.params["W1"].value.shape
    assert shapes["x"] == model.data["x"].shape[1:]  # per sample: no samples axis
    assert shapes["loss"] == ()
