"""Numbers in a model file -> float64 arrays, with errors that name the element.

One job: turn a value read from YAML (a number or nested lists) or a
parameter's init spec (``{shape: [3, 2], init: normal, std: 0.1}``) into a
float64 array, within a size limit. A value that is not a number is named by
its path with indices (``params.W1[17][42]``), so a generated matrix with one
bad cell says which. Where in the file that element stands is the caller's
business: errors are built by the ``fail`` callback it passes.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable, Mapping
from typing import Any, Protocol

import numpy as np


class Fail(Protocol):
    """Builds the error for a problem at a path in the document (the caller adds file and position)."""

    def __call__(self, what: str, where: tuple[Any, ...], *, fix: str | None = None) -> Exception: ...


_FLOAT_MAX = float(np.finfo(np.float64).max)
_PLAIN = {int, float}

#: The ``init:`` choices of a parameter given by shape.
INITS = ("normal", "uniform", "zeros", "ones", "constant")


def path_text(where: tuple[Any, ...]) -> str:
    """A document path as messages show it: ``("params", "W1", 17, 42)`` -> ``params.W1[17][42]``."""
    out = ""
    for step in where:
        if isinstance(step, int) and not isinstance(step, bool):
            out += f"[{step}]"
        else:
            out += ("." if out else "") + str(step)
    return out


def is_number(value: Any) -> bool:
    """An ``int`` or ``float`` (not a ``bool``, which YAML also reads from ``true``)."""
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def number(
    value: Any, where: tuple[Any, ...], fail: Fail, *, positive: bool = False, zero: bool = False
) -> float | None:
    """One option's number (``None`` stays ``None``); ``positive`` refuses negatives and, unless ``zero``, 0."""
    if value is None:
        return None
    if not is_number(value):
        raise fail(f"expected a number, got {value!r}", where)
    try:
        value = float(value)
    except OverflowError:
        raise fail("a number is too large for a float64", where, fix="numbers must lie within ±1.8e308") from None
    if not np.isfinite(value) or (positive and (value < 0 or (value == 0 and not zero))):
        raise fail(f"expected a {'non-negative' if zero else 'positive'} finite number, got {value!r}", where)
    return value


def to_array(
    value: Any, where: tuple[Any, ...], fail: Fail, *, limit: int, too_many: Callable[[], Exception]
) -> np.ndarray:
    """``value`` (a number or nested lists of numbers, rows of one length) as a float64 array.

    More than ``limit`` numbers raises ``too_many()`` before anything is
    expanded (YAML aliases can make a small file name a huge list).
    """
    count_numbers(value, limit, too_many)
    if not isinstance(value, list) and not is_number(value):
        fix = "write it without quotes" if isinstance(value, str) and _parses_as_float(value) else None
        raise fail(f"expected a number or nested lists of numbers, got {short(value)}", where, fix=fix)
    problem = first_problem(value, where)
    if problem is not None:
        at, what, fix = problem
        raise fail(what, at, fix=fix)
    try:
        arr = np.asarray(value, dtype=np.float64)
    except OverflowError:
        raise fail("a number is too large for a float64", where, fix="numbers must lie within ±1.8e308") from None
    if arr.size == 0:
        raise fail("empty value", where, fix="give at least one number")
    if not np.all(np.isfinite(arr)):
        bad = tuple(int(i) for i in np.argwhere(~np.isfinite(arr))[0])
        raise fail(f"values must be finite (no .nan or .inf), got {float(arr[bad])}", where + bad)
    return arr


def first_problem(value: Any, where: tuple[Any, ...]) -> tuple[tuple[Any, ...], str, str | None] | None:
    """The first element of nested lists that is not a number or breaks the shape: ``(path, what, fix)``.

    The shape is the one the first elements set (``value[0][0]...``); every
    row must match it. ``None`` when all is well.
    """
    shape: list[int] = []
    v = value
    while isinstance(v, list):
        shape.append(len(v))
        if not v:
            break
        v = v[0]
    done: set[tuple[int, int]] = set()  # (id, depth) of lists already found good: aliases repeat them
    stack: list[tuple[Any, tuple[Any, ...], int]] = [(value, where, 0)]
    while stack:
        v, at, depth = stack.pop()
        if isinstance(v, list):
            if depth >= len(shape):
                return at, f"expected a number, got a list {short(v)}", "every row must have the same length"
            if len(v) != shape[depth]:
                like = path_text(where + (0,) * (depth + 1))
                return (
                    at,
                    f"expected {shape[depth]} elements, as {like[: like.rfind('[')]} has, got {len(v)}: {short(v)}",
                    "every row must have the same length",
                )
            if (id(v), depth) in done:
                continue
            if depth == len(shape) - 1 and set(map(type, v)) <= _PLAIN and max(map(abs, v), default=0) <= _FLOAT_MAX:
                done.add((id(v), depth))  # a row of plain numbers, checked in bulk (the common case)
                continue
            done.add((id(v), depth))
            stack.extend((item, at + (i,), depth + 1) for i, item in reversed(list(enumerate(v))))
        elif depth < len(shape):
            return (
                at,
                f"expected a list of {shape[depth]} numbers, got {short(v)}",
                "every row must have the same length",
            )
        elif isinstance(v, int) and not isinstance(v, bool) and abs(v) > _FLOAT_MAX:
            return at, "a number is too large for a float64", "numbers must lie within ±1.8e308"
        elif not is_number(v):
            fix = "write it without quotes" if isinstance(v, str) and _parses_as_float(v) else None
            return at, f"expected a number, got {short(v)}", fix
    return None


def count_numbers(value: Any, limit: int, too_many: Callable[[], Exception]) -> int:
    """Numbers in nested lists, counted without expanding YAML aliases twice; over ``limit`` raises."""
    memo: dict[int, int] = {}

    def count(v: Any) -> int:
        if not isinstance(v, list):
            return 1
        key = id(v)
        if key in memo:
            return memo[key]
        n = 0
        for item in v:
            n += count(item)
            if n > limit:
                raise too_many()
        memo[key] = n
        return n

    return count(value)


def initial_value(
    spec: Mapping[str, Any],
    where: tuple[Any, ...],
    fail: Fail,
    *,
    seed: int,
    name: str,
    domain: tuple[float, float] | None,
    limit: int,
    limit_fix: str,
) -> np.ndarray:
    """A parameter given by ``shape`` and ``init`` (``normal``, ``uniform``, ...), drawn reproducibly.

    The generator is seeded by the check's ``seed`` and the parameter's
    name, so adding a parameter does not change the others' values.
    """
    shape_raw = spec.get("shape", [])
    if not isinstance(shape_raw, list) or not all(
        isinstance(s, int) and not isinstance(s, bool) and s > 0 for s in shape_raw
    ):
        raise fail(f"shape must be a list of positive whole numbers, got {shape_raw!r}", where + ("shape",))
    size = 1
    for s in shape_raw:
        size *= s
        if size > limit:
            raise fail(f"shape {shape_raw} holds more than {limit} numbers", where + ("shape",), fix=limit_fix)
    shape = tuple(shape_raw)
    init = spec.get("init", "normal" if "value" not in spec else "constant")
    if init not in INITS:
        raise fail(f"init must be one of {', '.join(INITS)}, got {init!r}", where + ("init",))
    rng = np.random.default_rng([seed, zlib.crc32(name.encode())])

    def opt(key: str, default: float) -> float:
        v = number(spec.get(key, default), where + (key,), fail)
        return float(default if v is None else v)

    if init == "normal":
        value = opt("mean", 0.0) + opt("std", 1.0) * rng.standard_normal(shape)
    elif init == "uniform":
        lo, hi = domain if domain and "low" not in spec else (opt("low", -1.0), opt("high", 1.0))
        value = rng.uniform(lo, hi, shape)
    elif init == "zeros":
        value = np.zeros(shape)
    elif init == "ones":
        value = np.ones(shape)
    else:
        value = np.full(shape, opt("value", 0.0))
    return np.asarray(value, dtype=np.float64)


def short(value: Any) -> str:
    """``repr(value)``, cut to 60 characters for a message."""
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _parses_as_float(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True
