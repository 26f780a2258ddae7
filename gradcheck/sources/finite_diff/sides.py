"""Left and right derivatives along lines: telling a kink from a smooth point.

Second-order one-sided differences ``(-3 f0 + 4 f(h) - f(2h)) / 2h`` (and
the mirror image), at ``h = eps**(1/3) * max(1, |p|) / 4`` (as the dtype can
take it). Used by :mod:`gradcheck.kinks` for parameter elements and for
directions alike.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from ...model import Model
from . import lines as _lines
from .lines import Lines


def sides(
    model: Model, point: Mapping[str, np.ndarray], lines: Lines, dtype: str
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(left, right, error)`` along each line, each ``(K,)`` (``(K, N)`` for ``reduction: none``)."""
    eps = float(np.finfo(np.dtype(dtype)).eps)
    k = lines.size
    line = np.arange(k)
    h = lines.taken(point, line, eps ** (1 / 3) * lines.scale(point), dtype) / 4
    t = np.concatenate([h, 2 * h, -h, -2 * h])
    f = _lines.reduce(model, _lines.evaluate(model, point, lines, np.tile(line, 4), t, dtype).astype(np.float64))
    f = f.reshape((4, k) + f.shape[1:])
    f0 = _lines.reduce(model, _lines.at_point(model, point, dtype))
    hh = h.reshape((k,) + (1,) * (f.ndim - 2))
    with np.errstate(all="ignore"):
        right = (-3 * f0 + 4 * f[0] - f[1]) / (2 * hh)
        left = (3 * f0 - 4 * f[2] + f[3]) / (2 * hh)
        err = 16 * eps * np.max(np.abs(f), axis=0) / hh + np.abs((f[0] - f0) / hh - right) / 3
    return left, right, err
