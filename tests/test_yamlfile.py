"""Reading YAML with positions: numbers as YAML 1.2, duplicate keys, line and column of values."""

from __future__ import annotations

import pytest
import yaml
from helpers import BASE, caret_col, error

import gradcheck as gc
from gradcheck import model, yamlfile
from gradcheck.errors import ModelError

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
    err = error("params:\n  w: 1.0\nmodel:\n" + entry, r"model\.loss: unknown name 'q'")
    assert (err.line, err.col) == (line, col), str(err)
    assert str(err).startswith(f"m.yaml:{line}:{col}: model.loss: unknown name 'q'")


def test_block_scalar_caret_points_inside_text():
    err = error("params:\n  w: 1.0\nmodel:\n  loss: |\n    w * q\n", r"unknown name 'q'")
    shown = str(err).splitlines()
    assert shown[-2] == "    w * q"  # a one-line block scalar keeps its caret
    assert caret_col(err) == 4


def test_line_col_of_sections_and_values():
    text = "params:\n  w: 1.0\n  v: {shape: [2], init: nope}\nmodel:\n  loss: w\nreduction: avg\n"
    err = error(text, r"params\.v\.init: init must be one of")
    assert (err.line, err.col, err.entry) == (3, 25, "params.v.init")
    err = error(text.replace("init: nope", "init: zeros"), r"reduction: reduction must be one of")
    assert (err.line, err.col, err.entry) == (6, 12, "reduction")


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


# --- numbers as YAML 1.2 and JSON read them ------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("5e-06", 5e-06),
        ("1e3", 1000.0),
        ("-2E+2", -200.0),
        ("+.5e1", 5.0),
        ("1.0e-3", 1e-3),
        ("0.5", 0.5),
        ("10", 10),
        ("-3", -3),
        ("1_000", 1000),
        (".inf", float("inf")),
    ],
)
def test_numbers(text, value):
    doc, _ = yamlfile.parse(f"a: {text}\n", "m.yaml")
    assert doc["a"] == value and type(doc["a"]) is type(value)


@pytest.mark.parametrize("text", ["'1e-3'", '"5e-06"', "1e", "e3", "1e-3x", "1,5", "0x1p3"])
def test_text_stays_text(text):
    doc, _ = yamlfile.parse(f"a: {text}\n", "m.yaml")
    assert isinstance(doc["a"], str)


def test_the_global_safe_loader_is_left_as_it_is():
    assert yaml.safe_load("a: 5e-06\n") == {"a": "5e-06"}  # PyYAML's own YAML 1.1 reading, for other code
    assert yaml.load("a: 5e-06\n", Loader=yamlfile.Loader) == {"a": 5e-06}
    assert issubclass(yamlfile.Loader, yaml.SafeLoader)


def test_positions_of_nested_elements():
    text = "params:\n  W:\n    - [1.0, 2.0]\n    - [3.0,   oops]\nmodel: {loss: sum(W)}\n"
    doc, positions = yamlfile.parse(text, "m.yaml")
    assert doc["params"]["W"][1][1] == "oops"
    assert positions.line_col(("params", "W", 1, 1)) == (4, 15)
    assert positions.line_col(("params", "W", 0)) == (3, 7)
    assert positions.line_col(("params", "W", 7, 0)) == (3, 5)  # no such element: the nearest parent, the list
    assert positions.line_col(("nowhere",)) == (1, 1)  # the document
    assert yamlfile.Positions().line_col(("params",)) == (None, None)  # a dict has no positions
    err = error(text, r"params\.W\[1\]\[1\]: expected a number, got 'oops'")
    assert (err.entry, err.line, err.col) == ("params.W[1][1]", 4, 15)
    assert str(err).startswith("m.yaml:4:15: params.W[1][1]: expected a number, got 'oops'")


def test_duplicate_keys_deep_inside_lists():
    text = "params:\n  w: {value: [1.0], init: zeros, init: ones}\nmodel: {loss: sum(w)}\n"
    with pytest.raises(ModelError, match=r"^m\.yaml:2:34: invalid YAML: duplicate key 'init' \(also at line 2;"):
        gc.loads(text, path="m.yaml")
    with pytest.raises(ModelError, match=r"^m\.yaml:1:14: invalid YAML: duplicate key 'a'"):
        yamlfile.parse("- [1, {a: 1, a: 2}]\n", "m.yaml")


def test_read_refuses_more_than_the_limit(tmp_path):
    path = tmp_path / "m.yaml"
    path.write_text("x" * 100)
    assert yamlfile.read(str(path), 100) == "x" * 100
    with pytest.raises(ModelError, match=r"m\.yaml: file is 101 bytes, more than the limit of 100"):
        path.write_text("x" * 101)
        yamlfile.read(str(path), 100)
