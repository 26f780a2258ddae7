"""Second derivatives from loss values only: Ridders' extrapolation of differences of first derivatives.

Column ``j`` of the Hessian is the derivative along the line ``t -> point +
t e_j`` of the gradient, and each gradient is itself the finite-difference
gradient of :func:`gradcheck.sources.finite_diff.gradients` (complex step or
Richardson, from loss values only). So the second derivative is taken along
the same lines, starting at the same steps (:func:`.steps.start`: below the
nearest kink, inside every domain) and extrapolated in the same tableau
(:func:`.extrapolation.tableau`) as first derivatives, with the gradients'
own error estimates as the rounding noise of each value. The same holds
for directions: ``u . H v`` is the derivative along ``v`` of the
directional derivative along ``u``, i.e. finite differences of the loss on
the plane of ``u`` and ``v``. The result is symmetrized; the estimate grows
by the asymmetry. Everything runs in the model's dtype.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import numpy as np

from ...model import Model
from . import steps
from .extrapolation import level_steps, tableau
from .lines import Lines

#: A first derivative at a point: ``(values, errors)``, flat.
FirstDerivative = Callable[[Mapping[str, np.ndarray]], tuple[np.ndarray, np.ndarray]]


def _along(
    model: Model,
    point: Mapping[str, np.ndarray],
    lines: Lines,
    dtype: str,
    first: FirstDerivative,
    move: Callable[..., dict[str, np.ndarray]],
    side: float | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Derivative of ``first`` along each line by Ridders' extrapolation: ``(K, m)`` values and errors.

    ``side`` (+1 or -1) forces one-sided differences towards that side (the
    one-sided derivatives at a kink).
    """
    start = steps.start(model, point, lines, dtype)
    if side is None:
        plus, minus = level_steps(point, lines, start, dtype)
        ratios = [np.where(start.one_sided, 2.0**m - 1, 4.0**m - 1) for m in range(len(plus))]
    else:
        # Both ends on one side, never the point itself (where the first derivative may jump):
        # differences between side * h and side * h / 2, extrapolated as first order.
        line = np.arange(lines.size)
        plus = [lines.taken(point, line, side * start.h0 / 2**j, dtype) for j in range(steps.levels(dtype))]
        minus = [lines.taken(point, line, side * start.h0 / 2 ** (j + 1), dtype) for j in range(steps.levels(dtype))]
        ratios = [np.full(lines.size, 2.0**m - 1) for m in range(len(plus))]
    k = lines.size
    red, noise = [], None
    for up, down in zip(plus, minus):
        for t in (up, down):
            vals, errs = zip(*(first(move(point, line, float(t[line]))) for line in range(k)))
            red.append(np.stack(vals))
            e = np.stack(errs)
            noise = e if noise is None else np.maximum(noise, e)
    assert noise is not None
    with np.errstate(all="ignore"):
        return tableau(np.stack(red), [a - b for a, b in zip(plus, minus)], noise, ratios)


def _flat_gradient(model: Model, dtype: str) -> FirstDerivative:
    from . import gradients

    def first(p: Mapping[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        g = gradients(model, p, dtype)
        assert g.errors is not None
        return (
            np.concatenate([np.asarray(g.values[k]).reshape(-1) for k in model.params]),
            np.concatenate([np.asarray(g.errors[k]).reshape(-1) for k in model.params]),
        )

    return first


def _symmetrize(h: np.ndarray, err: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    return 0.5 * (h + h.T), 0.5 * (err + err.T) + 0.5 * np.abs(h - h.T)


def hessian(
    model: Model, point: Mapping[str, np.ndarray], dtype: str, side: float | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """The Hessian ``(n, n)`` of the reduced loss over the flattened params (file order), and its error estimate.

    ``side`` (+1 or -1): one-sided differences of the gradient (see :func:`one_sided`).
    """
    first = _flat_gradient(model, dtype)
    cols, errs = [], []
    for name in model.params:

        def move(p: Mapping[str, np.ndarray], line: int, t: float, name: str = name) -> dict[str, np.ndarray]:
            moved = {k: np.array(v, dtype=np.float64) for k, v in p.items()}
            flat = moved[name].reshape(-1)
            flat[line] = float(np.asarray(flat[line] + t, dtype=np.dtype(dtype)))
            moved[name] = flat.reshape(np.shape(p[name]))
            return moved

        value, error = _along(model, point, Lines.elements(model, name), dtype, first, move, side)
        cols.append(value)
        errs.append(error)
    h = np.concatenate(cols).T  # row i: d g_i / d p_j
    err = np.concatenate(errs).T
    return _symmetrize(h, err)


def one_sided(model: Model, point: Mapping[str, np.ndarray], dtype: str, side: float) -> tuple[np.ndarray, np.ndarray]:
    """The Hessian from differences of the gradient towards ``side`` only (+1 right, -1 left), and its estimate."""
    return hessian(model, point, dtype, side)


def directional(
    model: Model,
    point: Mapping[str, np.ndarray],
    us: Mapping[str, np.ndarray],
    vs: Mapping[str, np.ndarray],
    dtype: str,
    side: float | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """``u_k . H v_k`` (``(K,)``) from loss values on the plane of ``u_k``, ``v_k``, and its error estimate.

    ``us``, ``vs`` map every parameter to ``(K,) + shape``. Pair ``k`` is the
    derivative along ``v_k`` of the directional derivative along ``u_k``
    (:func:`gradcheck.sources.finite_diff.directional`).
    """
    from . import directional as first_directional

    k = int(np.asarray(next(iter(vs.values()))).shape[0])
    values, errors = np.empty(k), np.empty(k)
    for j in range(k):
        u = {name: np.asarray(a)[j : j + 1] for name, a in us.items()}
        v = {name: np.asarray(a)[j : j + 1] for name, a in vs.items()}

        def first(p: Mapping[str, np.ndarray], u: Mapping[str, np.ndarray] = u) -> tuple[np.ndarray, np.ndarray]:
            value, error, _method = first_directional(model, p, u, dtype)
            return np.asarray(value).reshape(-1), np.asarray(error).reshape(-1)

        def move(
            p: Mapping[str, np.ndarray], line: int, t: float, v: Mapping[str, np.ndarray] = v
        ) -> dict[str, np.ndarray]:
            return {name: np.asarray(p[name], dtype=np.float64) + t * np.asarray(v[name])[line] for name in p}

        value, error = _along(model, point, Lines.along(v), dtype, first, move, side)
        values[j], errors[j] = float(value[0, 0]), float(error[0, 0])
    return values, errors
