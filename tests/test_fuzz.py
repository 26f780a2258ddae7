"""Fuzzing the loader, the parser and the whole check (issue 6).

Seeds are the files in ``examples/``; Hypothesis deletes, duplicates and
swaps their lines, mutates characters and puts random expressions into them.
Every input must end in a parsed IR, a model or a report, or in a
:class:`ModelError` with a non-empty message: never another exception.
``gc.check`` costs 0.1-1 s per model, so it sees fewer cases than the
loader and the parser.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, note, settings
from hypothesis import strategies as st

import gradcheck as gc
from gradcheck import expr
from gradcheck.errors import ModelError
from gradcheck.ops import FUNCTIONS

REPO = Path(__file__).resolve().parents[1]
SEEDS = {p.name: p.read_text() for p in sorted((REPO / "examples").glob("*.yaml"))}
FAST = settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck))
SLOW = settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck))

TOKENS = [
    *"wxyb",
    "W",
    "v",
    "pi",
    "e",
    "1",
    "2.5",
    "0",
    "1e3",
    "+",
    "-",
    "*",
    "/",
    "**",
    "@",
    "(",
    ")",
    "[0]",
    ".T",
    ",",
    " ",
    *sorted(FUNCTIONS),
    "(",
    "y_pred",
    "loss",
    "__",
    "'",
    "lambda",
    ":",
    "=",
    "1e400",
    "9**9**9",
    "/0",
]
CHARS = st.sampled_from(list("wxyb+-*/()[]., :{}\"'#&*!|>-\n\t0123456789eE_@T") + ["\u00e9", "\x00", "ｗ"])


def mutate(text: str, data: st.DataObject) -> str:
    """A few random edits of ``text``: lines deleted, duplicated, swapped; characters changed."""
    lines = text.splitlines(keepends=True) or ["\n"]
    for _ in range(data.draw(st.integers(1, 4), label="edits")):
        kind = data.draw(st.sampled_from(["delete", "duplicate", "swap", "char", "insert", "expression"]))
        i = data.draw(st.integers(0, len(lines) - 1))
        if kind == "delete" and len(lines) > 1:
            del lines[i]
        elif kind == "duplicate":
            lines.insert(i, lines[i])
        elif kind == "swap":
            j = data.draw(st.integers(0, len(lines) - 1))
            lines[i], lines[j] = lines[j], lines[i]
        elif kind in ("char", "insert") and lines[i]:
            k = data.draw(st.integers(0, len(lines[i]) - 1))
            ch = data.draw(CHARS)
            lines[i] = lines[i][:k] + ch + lines[i][k + (kind == "char") :]
        elif kind == "expression" and ":" in lines[i]:
            head = lines[i].split(":", 1)[0]
            lines[i] = f"{head}: {data.draw(expressions())}\n"
    return "".join(lines)


def expressions() -> st.SearchStrategy[str]:
    return st.lists(st.sampled_from(TOKENS), min_size=1, max_size=12).map("".join)


def outcome(fn, *args):
    """Run ``fn``; a ModelError must carry a message. Anything else propagates and fails the test."""
    try:
        return fn(*args)
    except ModelError as err:
        assert str(err).strip(), "empty ModelError"
        assert err.what.strip()
        return err


@FAST
@given(st.text(max_size=80))
def test_parser_random_text(text):
    outcome(expr.parse, text)


@FAST
@given(expressions())
def test_parser_token_soup(text):
    note(text)
    result = outcome(expr.parse, text)
    if isinstance(result, expr.Node):
        # what parses unparses to text that parses to the same thing
        assert expr.unparse(expr.parse(expr.unparse(result))) == expr.unparse(result)


@FAST
@given(st.sampled_from(sorted(SEEDS)), st.data())
def test_loader_mutated_examples(name, data):
    text = mutate(SEEDS[name], data)
    note(text)
    outcome(gc.loads, text)


@FAST
@given(
    st.lists(st.sampled_from(list("{}[]:,- &*!|>'\"\n#w1.0xyz") + ["params", "model", "loss"]), max_size=40).map(
        "".join
    )
)
def test_loader_yaml_soup(text):
    outcome(gc.loads, text)


@FAST
@given(
    st.recursive(
        st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=5),
        lambda children: st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=5), children, max_size=3),
        max_leaves=10,
    )
)
def test_from_dict_random_structures(params):
    outcome(gc.Model.from_dict, {"params": params, "model": {"loss": "1"}})
    outcome(gc.Model.from_dict, {"params": {"w": 1.0}, "model": params})


def _check_ends_well(text: str) -> None:
    model = outcome(gc.loads, text)
    if isinstance(model, gc.Model):
        report = outcome(gc.check, model)
        if isinstance(report, gc.Report):
            assert report.status in ("agree", "kink", "undefined", "mismatch")
            assert report.to_dict()["model"] == model.name


@pytest.fixture(autouse=True, scope="module")
def _time_limit():
    # a pathological mutant must end in ModelError quickly, whatever the environment says
    mp = pytest.MonkeyPatch()
    mp.setenv("GRADCHECK_TIME_LIMIT", "5")
    yield
    mp.undo()


@SLOW
@given(st.sampled_from(sorted(SEEDS)), st.data())
def test_check_mutated_examples(name, data):
    text = mutate(SEEDS[name], data)
    note(text)
    _check_ends_well(text)


@SLOW
@given(expressions(), expressions())
def test_check_random_expressions(first, second):
    text = (
        "params: {w: 0.7, b: -0.3, W: [[0.5, -1.0], [2.0, 0.25]], v: [1.5, -0.5]}\n"
        "data: {x: [1.0, 2.0], y: [0.5, -1.0]}\n"
        f'model:\n  y_pred: "{first}"\n  loss: "{second}"\n'
    )
    note(text)
    _check_ends_well(text)
