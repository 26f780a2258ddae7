"""ModelError: one message shape for every kind of bad input (issue 6).

``FILE:LINE:COL: ENTRY: what is wrong — how to fix it``, with a caret under
the position inside an expression. Pinned here: the shape itself, expression
errors with carets, the time limit, the API's argument errors and the command
line. Loading and validating a model file is tested in ``test_model.py``,
reading YAML with positions in ``test_yamlfile.py``, numbers in ``test_arrays.py``.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import BASE, caret_col, error

import gradcheck as gc
from gradcheck import expr, limits
from gradcheck.errors import ModelError

REPO = Path(__file__).resolve().parents[1]


# --- the shape of a message ---------------------------------------------------


def test_shape_file_line_col_entry_what_fix_caret():
    err = error(BASE.replace("x * w + b", "x * q + b"), r"model\.y_pred: unknown name 'q'")
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
        ("max(w, w, w)", 0, r"max\(\) takes 1 or 2 arguments, got 3 — max\(v, axis=None, keepdims=False\): "),
        ("w == 1", 2, r"'==' is not part of the model language"),
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
    err = error(f'params:\n  w: 1.0\nmodel:\n  loss: "{text}"\n', pattern)
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


# --- time limit, API and the command line --------------------------------------------------------------------


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


@pytest.mark.slow
def test_cli_one_line_no_traceback(tmp_path):
    (tmp_path / "bad.yaml").write_text(BASE.replace("x * w + b", "x * q + b"))
    proc = run_cli("bad.yaml", cwd=tmp_path)
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    assert proc.stderr.startswith("gradcheck: error: bad.yaml:8:15: model.y_pred: unknown name 'q' — known names")
    assert proc.stderr.splitlines()[1:] == ["    x * q + b", "        ^"]


@pytest.mark.slow
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


def test_a_deadline_raise_that_is_swallowed_is_sent_again():
    # A raise that lands in a gc callback (Hypothesis installs one) is ignored by Python: the
    # watchdog signals again until the body ends, so the time limit still ends the work.
    import time

    budget = limits.Budget(0.05)
    caught: list[BaseException] = []
    start = time.monotonic()
    with pytest.raises(ModelError, match=r"^busy work took longer than the time limit of 0\.05 CPU seconds"):
        with budget.spend("busy work"):
            while True:
                try:
                    while time.monotonic() - start < 10:
                        sum(range(10_000))
                    break
                except BaseException as err:  # the first one is lost, as in a gc callback
                    if caught:
                        raise
                    caught.append(err)
    assert len(caught) == 1


def test_the_deadline_never_raises_inside_a_gc_callback(monkeypatch):
    # Hypothesis installs a gc callback; a raise there would only be printed ("Exception ignored").
    import gc
    import sys

    lost: list[object] = []
    monkeypatch.setattr(sys, "unraisablehook", lost.append)

    def busy_callback(phase: str, info: dict) -> None:
        sum(range(50_000))  # most of the CPU time is spent here

    gc.callbacks.append(busy_callback)
    try:
        with pytest.raises(ModelError, match="took longer than the time limit"):
            with limits.Budget(0.1).spend("collecting"):
                for _ in range(100_000):
                    gc.collect(0)
    finally:
        gc.callbacks.remove(busy_callback)
    assert lost == []
