"""The exact per-sample loss, decided on the expression as written.

SymPy simplifies as it builds: ``0*log(s)`` becomes ``0``, so an exact loss
taken from SymPy's form is defined at ``s = 0`` where the model, as written,
is not (``log(0)`` is undefined whatever multiplies it). This module
evaluates the IR itself with the ``"mpmath"`` backend of
:mod:`gradcheck.interp` at :data:`gradcheck.sources.symbolic.DPS` digits: every
op's mpmath form turns an undefined or infinite value into nan element by
element, and nan stays nan, so the answer is per sample.

The file's ``expected`` gradients are evaluated on their IR too
(:func:`expected_gradients`), with the entries they name, never through a
SymPy expression expanded element by element (a course's
``dW = outer(p - y, x)`` costs one op, not a formula per element): on whole
tensors in double-double (:func:`.symbolic.blocks.evaluate`), or in mpmath
the same way as the loss (:func:`expected_in_mpmath`) where that cannot be
trusted.

Deciding whether the data's rounding makes the loss doubtful is the
caller's business.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from .. import interp
from ..model import Model
from . import Gradients
from .symbolic import DPS
from .symbolic.numbers import collect


def _exact(mpmath: Any, value: Any) -> Any:
    """A float64 array (or number) as mpmath numbers, exactly (an object array keeps its shape)."""
    arr = np.asarray(value, dtype=np.float64)
    out = np.frompyfunc(mpmath.mpf, 1, 1)(arr)
    return np.asarray(out, dtype=object) if arr.ndim else out


def _environment(mpmath: Any, model: Model, point: Mapping[str, Any]) -> dict[str, Any]:
    """Params (``point``'s values, else the model's) and data columns as exact mpmath arrays."""
    env: dict[str, Any] = {}
    for name, p in model.params.items():
        env[name] = _exact(mpmath, point[name] if name in point else p.value)
    for name, column in model.data.items():
        env[name] = _exact(mpmath, column)
    return env


def _per_sample(value: Any, n: int, shape: tuple[int, ...]) -> np.ndarray:
    """``value`` (per-sample ``shape``, with or without the samples axis) as ``(n, *shape)`` objects."""
    arr = np.asarray(value, dtype=object)
    return np.broadcast_to(arr, (n, *shape))


def per_sample_losses(model: Model, point: Mapping[str, Any]) -> np.ndarray:
    """One exact loss per sample (float64), nan where it is undefined or infinite.

    ``point`` maps parameters to values (missing ones take the model's own);
    the loss is evaluated on the IR in mpmath at ``DPS`` digits from the
    float64 values of the parameters and the data. The result has
    ``model.n_samples`` values (one when the model has no data).
    """
    import mpmath

    with mpmath.workdps(DPS):
        env = _environment(mpmath, model, point)
        values = interp.evaluate(model.entries, env, "mpmath", mpmath, until=model.loss)
        loss = np.asarray(values[model.loss], dtype=object)
        n = model.n_samples
        loss = np.broadcast_to(loss.reshape(-1) if loss.ndim else loss, (n,))
        out = np.empty(n, dtype=np.float64)
        for i, v in enumerate(loss):
            out[i] = float(v) if mpmath.isfinite(v) else np.nan
    return out


def expected_gradients(model: Model, point: Mapping[str, Any]) -> Gradients:
    """The file's hand-derived ``expected`` gradients, evaluated exactly on their IR.

    On whole tensors in double-double where every value is finite and no sum
    cancels (:func:`.symbolic.blocks.evaluate`); otherwise each ``expected``
    expression is run by the ``"mpmath"`` backend of
    :mod:`gradcheck.interp` at ``DPS`` digits, per sample, with the model's
    entries evaluated the same way, and reduced over the samples exactly as
    the symbolic source's gradients are (:func:`~.symbolic.numbers.collect`).
    An expression undefined at a sample gives nan there, as written.
    """
    from .symbolic import blocks

    found = blocks.evaluate(model, point, model.expected, "expected")
    return found if found is not None else expected_in_mpmath(model, point)


def expected_in_mpmath(model: Model, point: Mapping[str, Any]) -> Gradients:
    """:func:`expected_gradients` element by element in mpmath: nan at each sample where a value is undefined."""
    import mpmath

    n = model.n_samples
    with mpmath.workdps(DPS):
        values = interp.evaluate(model.entries, _environment(mpmath, model, point), "mpmath", mpmath)
        columns: list[Any] = [list(_per_sample(values[model.loss], n, ()))]
        layout: list[tuple[str, tuple[int, ...]]] = []
        for name, node in model.expected.items():
            shape = model.params[name].shape
            grad = _per_sample(interp.run(node, values, "mpmath", mpmath), n, shape).reshape(n, -1)
            columns.extend(list(grad[:, k]) for k in range(grad.shape[1]))
            layout.append((name, shape))
    return collect(model, columns, layout, "expected")
