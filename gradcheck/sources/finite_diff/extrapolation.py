"""Ridders' extrapolation of finite differences along lines, with error estimates.

Central differences at :data:`~.steps.LEVELS` steps ``h0 / 2**j`` (where
:func:`.steps.start` says; one-sided next to a domain edge), each step the
one the dtype can actually take, extrapolated in a Neville tableau. Each
entry's error estimate is twice its distance to the entries it was built
from (its truncation error is at most that of theirs) plus the rounding
error, ``ROUNDING * eps * max|f|`` over the step, carried through the same
extrapolation weights. Per line the entry with the smallest estimate wins.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from ...model import Model
from . import lines as _lines
from . import steps
from .lines import Lines

#: Rounding error of one loss evaluation, in units of ``eps * |loss|``.
ROUNDING = 32.0


def tableau(
    red: np.ndarray, widths: list[np.ndarray], noise: np.ndarray, ratios: list[np.ndarray]
) -> tuple[np.ndarray, np.ndarray]:
    """Ridders' extrapolation with error estimates, per line.

    ``red[2 j]`` and ``red[2 j + 1]`` are the (reduced) losses at the two
    ends of level ``j``, ``widths[j]`` the distance between them (per
    line), ``noise`` the rounding error of one loss value, ``ratios[m]``
    the extrapolation denominator of column ``m`` (``4**m - 1`` for central
    differences, ``2**m - 1`` for one-sided). Each entry's estimate is twice
    its distance to the entries it was built from plus its rounding error
    carried through the weights; per line the entry with the smallest
    estimate wins.
    """
    shape = red.shape[1:]
    k = shape[0]

    def col(a: np.ndarray) -> np.ndarray:
        return np.asarray(a).reshape((k,) + (1,) * (len(shape) - 1))

    table: list[list[np.ndarray]] = []
    rounding: list[list[np.ndarray]] = []
    best = np.full(shape, np.nan)
    best_err = np.full(shape, np.inf)
    for j, width in enumerate(widths):
        w = col(width)
        row = [(red[2 * j] - red[2 * j + 1]) / w]
        rrow = [2 * noise / np.abs(w)]
        for m in range(1, j + 1):
            c = col(ratios[m])
            row.append(row[m - 1] + (row[m - 1] - table[j - 1][m - 1]) / c)
            rrow.append(((c + 1) * rrow[m - 1] + rounding[j - 1][m - 1]) / c)
        for m in range(j + 1):
            if m == 0:
                trunc = np.abs(row[0] - table[j - 1][0]) if j else np.full(shape, np.inf)
            else:
                trunc = np.maximum(np.abs(row[m] - row[m - 1]), np.abs(row[m] - table[j - 1][m - 1]))
            err = 2 * trunc + rrow[m]
            better = np.isfinite(err) & (err < best_err)
            best = np.where(better, row[m], best)
            best_err = np.where(better, err, best_err)
        table.append(row)
        rounding.append(rrow)
    # Where nothing was finite, report the plain central difference (nan or inf).
    return np.where(np.isfinite(best_err), best, table[-1][0]), best_err


def _straddle(right: np.ndarray, left: np.ndarray, crowded: np.ndarray, err: np.ndarray) -> np.ndarray:
    """Widen the estimate of crowded lines by the jump between their one-sided slopes."""
    k = crowded.size
    mask = crowded.reshape((k,) + (1,) * (err.ndim - 1))
    with np.errstate(all="ignore"):
        jump = np.abs(right - left)
    return np.where(mask & np.isfinite(jump), np.maximum(err, jump + err), err)


def level_steps(
    point: Mapping[str, np.ndarray], lines: Lines, start: steps.Start, dtype: str
) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Per level, the steps taken up and down each line (``t``, as the dtype can take them)."""
    line = np.arange(lines.size)
    plus, minus = [], []
    for j in range(steps.levels(dtype)):
        h = start.h0 / 2**j
        up = np.where(start.one_sided, start.side * h, h)
        down = np.where(start.one_sided, 0.0, -h)
        plus.append(lines.taken(point, line, up, dtype))
        minus.append(lines.taken(point, line, down, dtype))
    return plus, minus


def richardson(
    model: Model, point: Mapping[str, np.ndarray], lines: Lines, dtype: str, f0: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Derivative along each line by Ridders' extrapolation, with its error estimate.

    ``f0`` holds the per-sample losses at the point (:func:`.lines.at_point`).
    Returns ``(K,)`` arrays (``(K, N)`` for ``reduction: none``).
    """
    eps = float(np.finfo(np.dtype(dtype)).eps)
    k = lines.size
    start = steps.start(model, point, lines, dtype)
    plus, minus = level_steps(point, lines, start, dtype)
    t = np.concatenate([d for pair in zip(plus, minus) for d in pair])
    f = _lines.evaluate(model, point, lines, np.tile(np.arange(k), 2 * len(plus)), t, dtype).astype(np.float64)
    with np.errstate(all="ignore"):
        red = _lines.reduce(model, f)
        red = red.reshape((2 * len(plus), k) + red.shape[1:])
        mags = _lines.reduce(model, np.abs(f)).reshape(red.shape)
        noise = ROUNDING * eps * np.max(mags, axis=0)
        ratios = [np.where(start.one_sided, 2.0**m - 1, 4.0**m - 1) for m in range(len(plus))]
        best, best_err = tableau(red, [a - b for a, b in zip(plus, minus)], noise, ratios)
        if start.crowded.any():
            red0 = _lines.reduce(model, f0)
            col = (k,) + (1,) * (red.ndim - 2)
            right = (red[-2] - red0) / plus[-1].reshape(col)
            left = (red0 - red[-1]) / -minus[-1].reshape(col)
            best_err = _straddle(right, left, start.crowded, best_err)
    return best, best_err
