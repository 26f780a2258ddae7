"""Where the central differences start, per line: the base step, shrunk below kinks and into domains.

One rule for parameter elements and directions alike (a line is a line):
:func:`start_steps` begins at :func:`base_step`, probes ``±h0 / 4**j`` for
kink crossings (:func:`kink_free`, the largest probe from which on every
smaller one crosses no kink) and fits the result into every parameter's
domain, one-sided next to an edge.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from ...model import Model
from . import lines as _lines
from .lines import Lines

#: Central-difference steps (each halving the last) in the Richardson tableau, per dtype.
LEVELS = {"float64": 4, "float32": 3}
#: Probe steps for kinks: ``h0 / 4**j`` for ``j < KINK_PROBES`` (down to about 1e-14 of ``h0``).
KINK_PROBES = 24


def levels(dtype: str) -> int:
    """Number of Richardson levels for ``dtype``."""
    return LEVELS.get(dtype, 4)


def base_step(dtype: str, scale: np.ndarray | float) -> np.ndarray:
    """The first Ridders step before any shrinking: ``2 eps**(1/7) * scale`` (``scale = max(1, |p|)``)."""
    return np.asarray(2 * float(np.finfo(np.dtype(dtype)).eps) ** (1 / 7) * np.asarray(scale, dtype=np.float64))


def floor(dtype: str, scale: np.ndarray | float) -> np.ndarray:
    """The smallest starting step worth taking: the last level is ``sqrt(eps) * scale``."""
    return np.asarray(float(np.finfo(np.dtype(dtype)).eps) ** 0.5 * 2 ** (levels(dtype) - 1) * np.asarray(scale))


def _clean_steps(crossed: np.ndarray, h0: np.ndarray, low: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """From probe crossings (``(KINK_PROBES, ±, k)`` flattened), per line the step to start from.

    The largest probe ``h0 / 4**j`` from which on every smaller probe is kink
    free, but never below ``low`` (a step of a few ulps measures rounding,
    not slope). ``crowded`` marks lines whose nearest kink is closer than
    ``low`` (or than every probe): their differences may straddle it, and
    the caller widens their error estimate.
    """
    k = h0.size
    bad = crossed.reshape(KINK_PROBES, 2, k).any(axis=1)  # (probe, line)
    clean_below = np.flip(np.logical_and.accumulate(np.flip(~bad, axis=0), axis=0), axis=0)
    found = clean_below.any(axis=0)
    h = np.where(found, h0 / 4.0 ** np.argmax(clean_below, axis=0), 0.0)
    crowded = h < low
    return np.where(crowded, np.minimum(low, h0), h), crowded


def kink_free(
    model: Model, point: Mapping[str, np.ndarray], lines: Lines, dtype: str, h0: np.ndarray, low: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Per line, the largest probe step ``h0 / 4**j`` whose moves cross no kink, and the ``crowded`` mask.

    A central difference across a kink (``abs(w)`` at ``w = 0.001`` with a
    step of 0.01) is wrong however it is extrapolated, so the Richardson
    tableau must start below the distance to the nearest kink. A step is kink
    free when ``t = ±h`` and every smaller probe keep every kinked function on
    the side it is on at the point. Lines through a point exactly on a kink
    keep ``h0``: that is the kink detector's business (``gradcheck/kinks.py``).
    """
    if not _lines.kinked(model):
        return h0, np.zeros(h0.size, dtype=bool)
    k = lines.size
    t = np.concatenate([sgn * h0 / 4**j for j in range(KINK_PROBES) for sgn in (1.0, -1.0)])
    line = np.tile(np.arange(k), 2 * KINK_PROBES)
    return _clean_steps(_lines.crossings(model, point, lines, line, t, dtype), h0, low)


@dataclass(frozen=True)
class Start:
    """Where the tableau starts, per line: its levels are ``h0 / 2**j``.

    ``one_sided`` lines (next to a domain edge) step only towards ``side``
    (+1 or -1); ``crowded`` lines have a kink closer than any useful step
    (their estimate is widened by the jump between the one-sided slopes).
    """

    h0: np.ndarray
    one_sided: np.ndarray
    side: np.ndarray
    crowded: np.ndarray


def start(model: Model, point: Mapping[str, np.ndarray], lines: Lines, dtype: str) -> Start:
    """:func:`base_step`, shrunk below the nearest kink (:func:`kink_free`), then fitted into the domains.

    Where even 1/1000 of the step does not fit on one side of a line but the
    other side has room, the differences are one-sided into the roomier side,
    extrapolated as first order.
    """
    scale = lines.scale(point)
    h0, crowded = kink_free(model, point, lines, dtype, base_step(dtype, scale), floor(dtype, scale))
    below, above = (0.99 * r for r in lines.room(model, point))
    room = np.minimum(below, above)
    roomier = np.maximum(below, above)
    one_sided = (room < 1e-3 * h0) & (roomier > room)
    side = np.where(above >= below, 1.0, -1.0)
    h0 = np.where(one_sided, np.minimum(h0, roomier), np.where(room > 0, np.minimum(h0, room), h0))
    return Start(h0, one_sided, side, crowded & ~one_sided)


def start_steps(model: Model, point: Mapping[str, np.ndarray], name: str, dtype: str) -> Start:
    """:func:`start` for the elements of parameter ``name`` (flattened)."""
    return start(model, point, Lines.elements(model, name), dtype)
