"""Helpers the test modules share (imported as ``helpers``: pytest puts tests/ on the path)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

import gradcheck as gc
from gradcheck.errors import ModelError

#: The linear model, as a model file's text.
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


def error(text: str, match: str, path: str | None = "m.yaml") -> ModelError:
    """The ModelError loading ``text`` raises; its message matches ``match`` and shows no traceback."""
    with pytest.raises(ModelError, match=match) as info:
        gc.loads(text, path=path)
    message = str(info.value)
    assert message and "Traceback" not in message
    return info.value


def caret_col(err: ModelError) -> int:
    """The 0-based offset the caret line points at, inside the shown expression."""
    lines = str(err).splitlines()
    assert lines[-1].strip() == "^", str(err)
    return len(lines[-1]) - 5  # the expression and caret are indented by four spaces


#: An example file states its verdict in one comment line.
EXPECT_RE = re.compile(r"^# expect: (agree|mismatch|kink)[ \t]*$", re.MULTILINE)


def expectation(path: Path) -> str:
    """The verdict a model file states in its ``# expect: ...`` line (exactly one)."""
    found = EXPECT_RE.findall(path.read_text())
    assert len(found) == 1, f"{path.name}: needs exactly one '# expect: ...' line"
    return found[0]
