"""The complex-step derivative along lines: ``f'(0) = Im f(i h) / h``, with an error estimate.

No subtractive cancellation, so ``h`` can be tiny (:data:`COMPLEX_STEP`
times the line's scale ``max(1, |p|)``) and the truncation error
``h**2 f'''/6`` vanishes below rounding. Taken at ``h`` and ``3h`` (whose
roundings differ) and averaged; the error estimate is ``4 |D(h) - D(3h)|``
(the rounding noise, seen twice) plus ``ROUNDING eps`` times the reduced
per-sample derivatives' magnitudes (the rounding of the sum over samples).
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from ...model import Model
from . import lines as _lines
from .extrapolation import ROUNDING
from .lines import Lines

#: Imaginary step of the complex-step derivative, relative to ``max(1, |p|)``.
COMPLEX_STEP = 1e-20


def complex_step(
    model: Model, point: Mapping[str, np.ndarray], lines: Lines, f0: np.ndarray
) -> tuple[np.ndarray, np.ndarray] | None:
    """Derivative and error estimate along each line (float64), or ``None`` where it does not apply.

    It does not apply when a NumPy form has no complex version, or where the
    complex evaluation does not reproduce the real per-sample losses ``f0``
    (a branch cut, a non-finite value): the caller falls back to
    :func:`.extrapolation.richardson` for the whole set of lines.
    """
    eps = float(np.finfo(np.float64).eps)
    k = lines.size
    h = COMPLEX_STEP * lines.scale(point)
    hs = np.concatenate([h, 3 * h])
    try:
        f = _lines.evaluate(model, point, lines, np.tile(np.arange(k), 2), 1j * hs, "float64")
    except (TypeError, ValueError):  # a NumPy form without a complex version
        return None
    with np.errstate(all="ignore"):
        same = np.abs(f.real - f0) <= 1e-10 * np.abs(f0) + 1e-300
        if not (np.all(np.isfinite(f)) and np.all(np.isfinite(f0)) and np.all(same)):
            return None
        d = f.imag / hs[:, None]
    d1, d2 = _lines.reduce(model, d[:k]), _lines.reduce(model, d[k:])
    value = (d1 + d2) / 2
    error = 4 * np.abs(d1 - d2) + ROUNDING * eps * _lines.reduce(model, np.abs(d[:k]))
    return value, error
