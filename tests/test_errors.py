"""Every kind of bad input gives one ModelError of one shape (issue 6).

``FILE:LINE:COL: ENTRY: what is wrong — how to fix it``, with a caret under
the position inside an expression. Each message is pinned here with
``pytest.raises(ModelError, match=...)``; line and column numbers are checked
against real YAML text (plain, quoted and block scalars).
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

import gradcheck as gc
from gradcheck import expr, limits, model
from gradcheck.errors import ModelError

REPO = Path(__file__).resolve().parents[1]

BASE = """\
params:
  w: 1.0
  b: 0.0
data:
  x: [1.0, 2.0, 3.0]
  y: [2.0, 4.0, 6.0]
model:
  y_pred: x * w + b
  loss: (y_pred - y)**2
"""


def error(text: str, path: str | None = "m.yaml") -> ModelError:
    with pytest.raises(ModelError) as info:
        gc.loads(text, path=path)
    message = str(info.value)
    assert message and "Traceback" not in message
    return info.value


def caret_col(err: ModelError) -> int:
    """The 0-based offset the caret line points at, inside the shown expression."""
    lines = str(err).splitlines()
    assert lines[-1].strip() == "^", str(err)
    return len(lines[-1]) - 5  # the expression and caret are indented by four spaces


# --- the shape of a message ---------------------------------------------------


def test_shape_file_line_col_entry_what_fix_caret():
    err = error(BASE.replace("x * w + b", "x * q + b"))
    first, shown, caret = str(err).splitlines()
    assert re.fullmatch(r"m\.yaml:8:15: model\.y_pred: unknown name 'q' — .+", first), first
    assert shown == "    x * q + b"
    assert caret == "        ^"
    assert (err.file, err.line, err.col, err.entry) == ("m.yaml", 8, 15, "model.y_pred")


def test_no_file_means_model_placeholder():
    with pytest.raises(ModelError, match=r"^<model>:8:15: model\.y_pred: unknown name 'q'"):
        gc.loads(BASE.replace("x * w + b", "x * q + b"))


def test_from_dict_has_no_position():
    spec = {"params": {"w": 1.0}, "model": {"loss": "w * q"}}
    with pytest.raises(ModelError, match=r"^<model>: model\.loss: unknown name 'q' — ") as info:
        gc.Model.from_dict(spec)
    assert info.value.line is None and caret_col(info.value) == 4


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
        (
            "params: {pi: 1.0}\nmodel: {loss: pi}\n",
            r"params\.pi: param 'pi' shadows the constant of that name — rename",
        ),
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
            r"train\.mode: mode must be sgd or batch, got 'adam'",
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
        ("1e-3", r"got '1e-3' — YAML 1\.1 reads this as text: write a dot and a signed exponent"),
        ("true", r"expected a number or nested lists of numbers, got True"),
        ("null", r"expected a number or nested lists of numbers, got None"),
        (
            "[[1.0, 2.0], [3.0]]",
            r"nested lists of numbers of one shape, got \[\[1\.0, 2\.0\], \[3\.0\]\] — every row must have",
        ),
        ("[1.0, true]", r"expected numbers, got \[1\.0, True\]"),
        ("[]", r"params\.w: empty value — give at least one number"),
        (".nan", r"values must be finite \(no \.nan or \.inf\)"),
        ("[1.0, -.inf]", r"values must be finite"),
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
        ("{value: 1.0, domain: [2.0, 1.0]}", r"params\.w\.domain: domain must be \[low, high\] with low < high"),
        ("{value: 1.0, domain: [0.0]}", r"domain must be \[low, high\] with low < high, got \[0\.0\]"),
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
        ("{x: [[1.0, 2.0], [1.0]]}", r"data\.x: expected a number or nested lists of numbers of one shape"),
        ("{x: [a, b]}", r"data\.x: expected a number or nested lists of numbers of one shape, got \['a', 'b'\]"),
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


# --- expressions: syntax, with carets --------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "offset", "pattern"),
    [
        ("w +", 3, r"expected a number, a name or '\(', found the end of the expression"),
        ("(w + 1", 6, r"expected '\)', found the end"),
        ("w + 1)", 5, r"unexpected '\)'"),
        ("w $ 2", 2, r"unexpected character '\$'"),
        ("w + 'a'", 4, r"strings are not allowed"),
        ("w.real", 2, r"attribute 'real' is not allowed — the only attribute is \.T \(transpose\)"),
        ("w[x]", 2, r"an index must be an integer constant — write v\[0\] or M\[1, 2\]"),
        ("w[1.5]", 2, r"an index must be an integer constant"),
        ("2w", 0, r"bad number '2w' — write numbers like 2, 0\.5 or 1e-3"),
        ("w * 1e400", 4, r"number 1e400 is out of range — numbers must be finite"),
        ("w * 1__0", 4, r"bad number '1__0' — write numbers like 2"),  # found by fuzzing: was a ValueError
        ("w * ¹", 4, r"unexpected character '¹'"),  # found by fuzzing: str.isdigit() is true of it
        ("exp(w, w)", 0, r"exp\(\) takes 1 argument, got 2 — exp: "),
        ("max(w)", 0, r"max\(\) takes 2 arguments, got 1"),
        ("w == 1", 2, r"unexpected character '='"),
        ("lambda: w", 6, r"unexpected character ':'"),
        ("w if w else 1", 2, r"unexpected 'if'"),
        ("w + 1/0", 5, r"division by zero — divide by something that is not 0"),
        (
            "w * 10**400",
            6,
            r"constant '10\*\*400' is not a finite float64 number \(inf\) — constant expressions must be finite",
        ),
        ("w + log(0)", 4, r"constant 'log\(0\)' is not a finite float64 number \(-inf\)"),
        ("w + sqrt(-1)", 4, r"constant 'sqrt\(-1\)' is not a finite float64 number \(nan\)"),
        ("w * (1/3)**10**9", 9, r"constant '\(1 / 3\)\*\*10\*\*9' is too large to compute exactly"),
        ("w * 9**9**9", 5, r"constant '9\*\*9\*\*9' is too large to compute exactly"),
        ("sum(w", 5, r"expected '\)', found the end"),
        ("w[0]", 1, r"shape error: 1 indices into a value of shape \[\] — check the shapes of the operands"),
        ("w @ w", 2, r"shape error: @ needs vectors or matrices"),
    ],
)
def test_expression_errors_with_caret(text, offset, pattern):
    err = error(f'params:\n  w: 1.0\nmodel:\n  loss: "{text}"\n')
    assert re.search(pattern, str(err)), str(err)
    assert err.entry == "model.loss"
    assert caret_col(err) == offset
    assert err.line == 4 and err.col == 10 + offset  # the text starts after `  loss: "` (col 9, 1-based)


def test_tree_and_nesting_depth():
    with pytest.raises(ModelError, match=r"nesting deeper than 100 levels — split the expression"):
        expr.parse("(" * 150 + "w" + ")" * 150)
    with pytest.raises(ModelError, match=r"expression is more than 300 operations deep — split it into several"):
        expr.parse("+".join(["w"] * 400))
    assert expr.parse("+".join(["w"] * 250)).op == "add"


def test_expression_length(monkeypatch):
    with pytest.raises(ModelError, match=r"expression is 10001 characters long, more than 10000 — split it"):
        expr.parse("w" * 10_001)
    monkeypatch.setattr(expr, "MAX_LENGTH", 20_000)
    assert expr.parse("w" * 10_001).op == "name"


@pytest.mark.parametrize(
    ("value", "pattern"),
    [
        ("[1, 2]", r"model\.loss: expected an expression, got \[1, 2\] — write the expression as text"),
        ("", r"got None"),
        ("' '", r"empty expression — write an expression such as `x \* w`"),
    ],
)
def test_expression_not_text(value, pattern):
    with pytest.raises(ModelError, match=pattern):
        gc.loads(f"params: {{w: 1.0}}\nmodel:\n  loss: {value}\n")


# --- line and column in real YAML: plain, quoted, block scalars -----------------------------


@pytest.mark.parametrize(
    ("entry", "line", "col"),
    [
        ("  loss: w * q\n", 4, 13),  # plain
        ("  loss: 'w * q'\n", 4, 14),  # single-quoted: one more for the quote
        ('  loss: "w * q"\n', 4, 14),  # double-quoted
        ("  loss: |\n    w * q\n", 5, 9),  # block scalar: the line and column in the file
        ("  loss: >-\n    w *\n      q\n", 6, 7),  # folded over lines
        ("  loss: w *\n    sin(w) + q\n", 5, 14),  # a plain scalar over two lines
        ('  loss: "w *\n    sin(w) + q"\n', 5, 14),  # a quoted scalar over two lines
        ("  loss:   w    *  q\n", 4, 19),  # spacing
    ],
)
def test_line_col_in_yaml(entry, line, col):
    err = error("params:\n  w: 1.0\nmodel:\n" + entry)
    assert (err.line, err.col) == (line, col), str(err)
    assert str(err).startswith(f"m.yaml:{line}:{col}: model.loss: unknown name 'q'")


def test_block_scalar_caret_points_inside_text():
    err = error("params:\n  w: 1.0\nmodel:\n  loss: |\n    w * q\n")
    shown = str(err).splitlines()
    assert shown[-2] == "    w * q"  # a one-line block scalar keeps its caret
    assert caret_col(err) == 4


def test_line_col_of_sections_and_values():
    text = "params:\n  w: 1.0\n  v: {shape: [2], init: nope}\nmodel:\n  loss: w\nreduction: avg\n"
    err = error(text)
    assert (err.line, err.col, err.entry) == (3, 25, "params.v.init")
    err = error(text.replace("init: nope", "init: zeros"))
    assert (err.line, err.col, err.entry) == (6, 12, "reduction")


def test_expected_errors():
    text = BASE + "expected:\n  w: 2*x*(y_pred - y)\n  bb: 1.0\n"
    with pytest.raises(ModelError, match=r"m\.yaml:12:7: expected\.bb: 'bb' is not a parameter — did you mean 'b'\?"):
        gc.loads(text, path="m.yaml")
    text = BASE + "expected:\n  w: 2*x*(y_pred - yy)\n"
    err = error(text)
    assert (err.line, err.col, err.entry) == (11, 20, "expected.w")
    assert re.search(r"unknown name 'yy' — did you mean 'y'\?", str(err))
    text = "params: {w: [1.0, 2.0]}\ndata: {x: [[1.0, 2.0, 3.0]]}\nmodel: {loss: sum(w)}\nexpected: {w: x}\n"
    with pytest.raises(
        ModelError, match=r"expected\.w: the expected gradient has per-sample shape \[3\], but 'w' has shape \[2\]"
    ):
        gc.loads(text)
    with pytest.raises(ModelError, match=r"expected: expected must map param names to gradient expressions"):
        gc.loads("params: {w: 1.0}\nmodel: {loss: w}\nexpected: [1]\n")


def test_shapes_checked_before_computing():
    text = "params: {W: [[1.0, 2.0], [3.0, 4.0]], v: [1.0, 2.0, 3.0]}\nmodel:\n  loss: sum(W @ v)\n"
    err = error(text)
    assert re.search(r"model\.loss: shape error: .*\[2, 2\].*\[3\]", str(err)), str(err)
    with pytest.raises(
        ModelError, match=r"the loss 'loss' has per-sample shape \[2\], but must be a scalar per sample — reduce it"
    ):
        gc.loads("params: {w: [1.0, 2.0]}\nmodel: {loss: w*2}\n")


# --- YAML itself ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "pattern"),
    [
        (
            "params: {w: 1.0\nmodel: {loss: w}\n",
            r"^m\.yaml:2:\d+: invalid YAML: .+ — check the indentation and quoting",
        ),
        ("params:\n  w: 1.0\n w2: 3\n", r"^m\.yaml:3:\d+: invalid YAML"),
        (
            "params: {w: 1.0, w: 2.0}\nmodel: {loss: w}\n",
            r"^m\.yaml:1:18: invalid YAML: duplicate key 'w' \(also at line 1; the later one would silently win\)",
        ),
        (
            "params: !!python/object/apply:os.system [echo]\n",
            r"^m\.yaml:1:9: invalid YAML: could not determine a constructor .*tags such as !!python/\.\.\. are not allowed",
        ),
        (
            "params: {w: " + "9" * 5000 + "}\nmodel: {loss: w}\n",
            r"^m\.yaml: invalid YAML value: Exceeds the limit \(4300 digits\)",
        ),
        ("params: " + "[" * 5000 + "]" * 5000 + "\n", r"^m\.yaml: YAML nested too deeply"),
        ("a: *nowhere\n", r"^m\.yaml:1:4: invalid YAML: found undefined alias 'nowhere'"),
    ],
)
def test_bad_yaml(text, pattern):
    with pytest.raises(ModelError, match=pattern):
        gc.loads(text, path="m.yaml")


def test_billion_laughs_rejected_before_expanding():
    lines = ["params:", "  a: &a [1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0]"]
    for prev, name in zip("abcdefgh", "bcdefghi"):
        lines.append(f"  {name}: &{name} [" + ", ".join([f"*{prev}"] * 10) + "]")
    text = "\n".join(lines) + "\nmodel: {loss: sum(a)}\n"
    with pytest.raises(ModelError, match=r"params\.\w: (a parameter holds too many numbers|parameters hold more than)"):
        gc.loads(text)
    with pytest.raises(ModelError, match=r"data\.\w: a data column holds too many numbers"):
        gc.loads("params: {w: 1.0}\n" + text.replace("params:", "data:").replace("sum(a)", "w"))


# --- files and the command line --------------------------------------------------------------------


def test_file_errors(tmp_path, monkeypatch):
    with pytest.raises(ModelError, match=r"nope\.yaml: no such file — check the path"):
        gc.load(tmp_path / "nope.yaml")
    with pytest.raises(ModelError, match=r": is a directory, not a model file — name a \.yaml file"):
        gc.load(tmp_path)
    bad = tmp_path / "latin1.yaml"
    bad.write_bytes(b"params: {w: 1.0}\n# caf\xe9\nmodel: {loss: w}\n")
    with pytest.raises(ModelError, match=r"latin1\.yaml: not UTF-8 text \(invalid continuation byte at byte 22\)"):
        gc.load(bad)
    big = tmp_path / "big.yaml"
    big.write_text(BASE)
    monkeypatch.setattr(model, "MAX_FILE_BYTES", 50)
    with pytest.raises(
        ModelError,
        match=r"big\.yaml: file is \d+ bytes, more than the limit of 50 — raise gradcheck\.model\.MAX_FILE_BYTES",
    ):
        gc.load(big)
    with pytest.raises(ModelError, match=r"model text is larger than 50 bytes"):
        gc.loads(BASE)


def test_time_limit_ends_in_model_error(monkeypatch):
    # one parameter (a budget of 0.505 s) but 20,000 data elements per sample: the symbolic tape
    # has tens of thousands of lines, seconds of SymPy work; the deadline must end it
    xs = ", ".join(str(i / 1000) for i in range(20_000))
    m = gc.loads(
        f"params: {{w: 0.5}}\ndata: {{x: [[{xs}]]}}\nmodel:\n  loss: sum(sin(w * x) * cos(w * x))\n", path="slow.yaml"
    )
    monkeypatch.setattr(limits, "SYMBOLIC_SECONDS", 0.5)
    monkeypatch.delenv("GRADCHECK_TIME_LIMIT", raising=False)
    with pytest.raises(
        ModelError, match=r"^slow\.yaml: [a-z ]+ took longer than the time limit of 0\.505 CPU seconds — .*--time-limit"
    ):
        gc.check(m)


def test_time_limit_environment(monkeypatch):
    monkeypatch.setenv("GRADCHECK_TIME_LIMIT", "12.5")
    assert limits.symbolic_seconds() == 12.5
    monkeypatch.setenv("GRADCHECK_TIME_LIMIT", "0")
    assert limits.symbolic_seconds() is None
    monkeypatch.setenv("GRADCHECK_TIME_LIMIT", "soon")
    with pytest.raises(
        ModelError, match=r"GRADCHECK_TIME_LIMIT='soon' is not a number — set GRADCHECK_TIME_LIMIT to seconds"
    ):
        limits.symbolic_seconds()


def test_api_errors():
    m = gc.loads(BASE)
    with pytest.raises(ModelError, match=r"`at` names 'ww', which is not a parameter — did you mean 'w'\?"):
        gc.check(m, at={"ww": 1.0})
    with pytest.raises(ModelError, match=r"`at` gives 'w' shape \[2\], but the parameter has shape \[\]"):
        gc.check(m, at={"w": [1.0, 2.0]})
    with pytest.raises(ModelError, match=r"`at` gives 'w' a value that is not finite"):
        gc.check(m, at={"w": float("nan")})
    with pytest.raises(ModelError, match=r"dtype must be float64 or float32, got 'float16'"):
        gc.check(m, dtype="float16")
    with pytest.raises(ModelError, match=r"no parameter named 'ww' — did you mean 'w'\?"):
        m.gradient_formula("ww")


def run_cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "gradcheck", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
        env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(REPO), "NO_COLOR": "1"},
    )


def test_cli_one_line_no_traceback(tmp_path):
    (tmp_path / "bad.yaml").write_text(BASE.replace("x * w + b", "x * q + b"))
    proc = run_cli("bad.yaml", cwd=tmp_path)
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    assert proc.stderr.startswith("gradcheck: error: bad.yaml:8:15: model.y_pred: unknown name 'q' — known names")
    assert proc.stderr.splitlines()[1:] == ["    x * q + b", "        ^"]


def test_cli_internal_error_is_one_line(tmp_path):
    # a callable that cannot be imported is a user mistake (exit 2); a crash inside gradcheck is exit 3
    (tmp_path / "m.yaml").write_text(BASE)
    (tmp_path / "boom.py").write_text(
        "import gradcheck.checker as c\n"
        "def _crash(*a, **k):\n    raise RuntimeError('kaboom')\n"
        "c._judge_point = _crash\n"
        "def fn(params, data):\n    return (data['x'] * params['w'] + params['b'] - data['y']) ** 2\n"
    )
    proc = run_cli("m.yaml", "--against", "boom:fn", cwd=tmp_path)
    assert proc.returncode == 3, proc.stderr
    assert proc.stderr.count("\n") == 1 and "Traceback" not in proc.stderr
    assert re.match(
        r"gradcheck: internal error: RuntimeError: kaboom \(this is a bug in gradcheck; please report it", proc.stderr
    )
    proc = run_cli("m.yaml", "--against", "boom:fn", "--debug", cwd=tmp_path)
    assert "Traceback" in proc.stderr and "kaboom" in proc.stderr
