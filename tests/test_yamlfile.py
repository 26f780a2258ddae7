"""Reading YAML with positions: numbers as YAML 1.2, duplicate keys, line and column of values."""

from __future__ import annotations

import pytest

import gradcheck as gc
from gradcheck import model
from gradcheck.errors import ModelError

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
