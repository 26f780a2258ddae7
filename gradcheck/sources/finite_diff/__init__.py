"""The finite-difference source: the expression as written, in NumPy.

Every value comes with an error estimate (an estimate, not a bound). A
derivative is always taken along a line ``t -> loss(point + t v)`` at
``t = 0``: per element ``v = e_i`` (:func:`gradients`), or along random
directions over all parameters (:func:`directional`). One evaluator serves
both (:mod:`.lines`); on top of it, written once each:

* :mod:`.complex_step` (float64 models whose loss uses no function of
  :attr:`gradcheck.ops.Op.analytic` false): ``Im f(i h) / h``, as accurate as
  evaluating ``f`` itself. Where it does not reproduce the real loss (a
  branch cut, a non-finite value) the lines fall back to
* :mod:`.extrapolation`: Ridders' extrapolation of central differences
  (always for float32, evaluated in float32), starting where :mod:`.steps`
  says (below the nearest kink, inside every domain);
* :mod:`.sides`: left and right derivatives, for confirming kinks.

``info["method"]`` says which method each parameter used; the rules and
the reasons are in ``docs/how-it-works.md``. A parameter's lines are one
batch, each carried as the one position it changes
(:mod:`gradcheck.perturb`), so a parameter costs about one model
evaluation. Nothing here touches SymPy or torch. The constants
(:data:`CHUNK_VALUES`, :data:`LEVELS`, ...) are re-exported here for
reading; each lives in the module that uses it (set it there).
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from ...model import Model
from ...ops import OPS
from .. import Gradients
from .complex_step import COMPLEX_STEP, complex_step
from .extrapolation import ROUNDING, richardson
from .lines import CHUNK_VALUES, Lines, at_point, evaluate, reduce
from .lines import per_sample as _per_sample
from .sides import sides
from .steps import KINK_PROBES, LEVELS, Start, start, start_steps

__all__ = [
    "CHUNK_VALUES",
    "COMPLEX_STEP",
    "KINK_PROBES",
    "LEVELS",
    "ROUNDING",
    "Lines",
    "Start",
    "analytic",
    "directional",
    "evaluate",
    "gradients",
    "losses",
    "one_sided",
    "reduced",
    "reduced_along",
    "sides",
    "start",
    "start_steps",
]


def losses(model: Model, params: Mapping[str, np.ndarray], dtype: str) -> np.ndarray:
    """Per-sample losses; params may carry leading batch axes (before the sample axis)."""
    np_dtype = np.dtype(dtype)
    return _per_sample(model, {k: np.asarray(v, dtype=np_dtype) for k, v in params.items()}, dtype)


def reduced(model: Model, params: Mapping[str, np.ndarray], dtype: str, batch: int | None = None) -> np.ndarray:
    """The reduced loss, for ``batch`` perturbed copies of the params (batch axis first).

    For ``reduction: none`` the per-sample losses are kept (last axis).
    """
    out = losses(model, params, dtype).astype(np.float64)
    target: tuple[int, ...] = (model.n_samples,) if model.data else ()
    if batch is not None:
        target = (batch,) + target
    out = np.broadcast_to(out, target)
    if not model.data:
        return out[..., None] if model.reduction == "none" else out
    return reduce(model, out)


def reduced_along(
    model: Model, point: Mapping[str, np.ndarray], lines: Lines, line: np.ndarray, t: np.ndarray, dtype: str
) -> np.ndarray:
    """The reduced loss at ``point + t[m] * v_{line[m]}``: ``(M,)``, or ``(M, N)`` for ``reduction: none``."""
    with np.errstate(all="ignore"):
        return reduce(model, evaluate(model, point, lines, line, t, dtype).astype(np.float64))


def analytic(model: Model) -> bool:
    """True when every function the loss uses is analytic (the complex step applies)."""
    for name, node in model.entries.items():
        if any(n.op in OPS and not OPS[n.op].analytic for n in node.walk()):
            return False
        if name == model.loss:
            break
    return True


def _derivative(
    model: Model, point: Mapping[str, np.ndarray], lines: Lines, dtype: str, f0: np.ndarray
) -> tuple[np.ndarray, np.ndarray, str]:
    """Derivative and error along each line: the complex step where it applies, else Richardson."""
    found = complex_step(model, point, lines, f0) if dtype == "float64" and analytic(model) else None
    if found is not None:
        return found[0], found[1], "complex step"
    value, error = richardson(model, point, lines, dtype, f0)
    return value, error, "Richardson"


def gradients(model: Model, point: Mapping[str, np.ndarray], dtype: str | None = None) -> Gradients:
    """Finite-difference gradients (complex step or Richardson) with error estimates, per element."""
    dtype = dtype or model.check.dtype
    values: dict[str, np.ndarray] = {}
    errors: dict[str, np.ndarray] = {}
    methods: dict[str, str] = {}
    f0 = at_point(model, point, dtype)
    for name, param in model.params.items():
        shape = param.shape
        est, err, methods[name] = _derivative(model, point, Lines.elements(model, name), dtype, f0)
        if model.reduction == "none":
            est, err = np.moveaxis(est, -1, 0), np.moveaxis(err, -1, 0)  # samples first
            values[name] = est.reshape((est.shape[0],) + shape)
            errors[name] = err.reshape((err.shape[0],) + shape)
        else:
            values[name] = est.reshape(shape)
            errors[name] = err.reshape(shape)
    red0 = reduce(model, f0)
    loss = red0 if model.reduction == "none" else float(red0)
    return Gradients("finite_difference", values, errors, loss, {"method": methods})


def directional(
    model: Model,
    point: Mapping[str, np.ndarray],
    direction: Mapping[str, np.ndarray],
    dtype: str | None = None,
) -> tuple[np.ndarray, np.ndarray, str]:
    """Derivatives of the reduced loss along K directions, with error estimates.

    ``direction`` maps every parameter to an array ``(K,) + shape`` (row k of
    all of them together is direction k). The same lines machinery as
    :func:`gradients`, with the line's scale ``max(1, |p_i|)`` taken over
    every element the directions move. Returns ``(values, errors, method)``,
    each array ``(K,)`` (``(K, N)`` for ``reduction: none``).
    """
    dtype = dtype or model.check.dtype
    return _derivative(model, point, Lines.along(direction), dtype, at_point(model, point, dtype))


def one_sided(
    model: Model, point: Mapping[str, np.ndarray], name: str, dtype: str | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """:func:`sides` for the elements of ``name``, shaped like the gradient: ``(left, right, error)``."""
    dtype = dtype or model.check.dtype
    shape = model.params[name].shape
    out = sides(model, point, Lines.elements(model, name), dtype)
    if model.reduction == "none":
        return tuple(np.moveaxis(a, -1, 0).reshape((-1,) + shape) for a in out)  # type: ignore[return-value]
    return tuple(a.reshape(shape) for a in out)  # type: ignore[return-value]
