"""The finite-difference source: the expression as written, in NumPy.

Every value comes with an error estimate (an estimate, not a bound). The
method, step rule and estimate are documented in ``docs/how-it-works.md``:

* central differences at steps ``h`` and ``h/2``, combined by one Richardson
  extrapolation (fourth order): ``D = D(h/2) + (D(h/2) - D(h)) / 3``;
* ``h = eps**(1/5) * max(1, |p|)`` for the dtype's machine epsilon (the step
  that balances the fourth-order truncation error against rounding), shrunk
  to keep ``p ± h`` inside the parameter's domain, and rounded so that
  ``p + h`` is exactly representable;
* error estimate = ``|D(h/2) - D(h)| / 3`` (the truncation error of the
  coarser of the two, which the extrapolation removes) plus the rounding
  error ``4 * eps * max|f| / h``.

All perturbations of one parameter form one batch axis, so a parameter costs
one vectorized evaluation (in chunks when memory would be large). Nothing
here touches SymPy or torch.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from .. import interp
from ..model import Model
from . import Gradients

#: Largest number of float values one chunk of perturbations may hold.
CHUNK_VALUES = 4_000_000


def _width(model: Model) -> int:
    """A rough count of per-sample values the evaluation holds at once."""
    sizes = [1]
    for p in model.params.values():
        sizes.append(p.value.size)
    for node in model.entries.values():
        for n in node.walk():
            sizes.append(int(np.prod(n.shape, dtype=np.int64)) if n.shape else 1)
    return max(sizes)


def losses(model: Model, params: Mapping[str, np.ndarray], dtype: str) -> np.ndarray:
    """Per-sample losses; params may carry leading batch axes (before the sample axis)."""
    np_dtype = np.dtype(dtype)
    env: dict[str, Any] = {k: np.asarray(v, dtype=np_dtype) for k, v in params.items()}
    for k, v in model.data.items():
        env[k] = v.astype(np_dtype)
    with np.errstate(all="ignore"):
        values = interp.evaluate(model.entries, env, "numpy", np, until=model.loss)
    return np.asarray(values[model.loss])


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
    if model.reduction == "mean":
        return out.mean(-1)
    if model.reduction == "sum":
        return out.sum(-1)
    return out


def step(p: np.ndarray, dtype: str, domain: tuple[float, float] | None, power: float = 0.2) -> np.ndarray:
    """The base step for each element of ``p`` (see the module docstring)."""
    eps = float(np.finfo(np.dtype(dtype)).eps)
    h = eps**power * np.maximum(1.0, np.abs(p))
    if domain is not None:
        lo, hi = domain
        room = np.minimum(p - lo, hi - p) * 0.99
        h = np.minimum(h, np.maximum(room, 0.0))
    # Make p + h exactly representable in the dtype, so the step taken is h.
    t = np.dtype(dtype).type
    h = (p.astype(t) + h.astype(t)).astype(np.float64) - p
    return h


def _evaluate_offsets(
    model: Model, point: Mapping[str, np.ndarray], name: str, offsets: np.ndarray, dtype: str
) -> np.ndarray:
    """Reduced loss with ``point[name]`` replaced by ``point[name] + offsets[m]`` for each m."""
    shape = model.params[name].shape
    m = offsets.shape[0]
    base = np.asarray(point[name], dtype=np.float64)
    chunk = max(1, CHUNK_VALUES // max(1, model.n_samples * _width(model)))
    out = []
    for start in range(0, m, chunk):
        block = base + offsets[start : start + chunk]
        if model.data:
            block = block.reshape((block.shape[0], 1) + shape)
        params = dict(point)
        params[name] = block
        out.append(reduced(model, params, dtype, block.shape[0]))
    return np.concatenate(out, axis=0)


def gradients(model: Model, point: Mapping[str, np.ndarray], dtype: str | None = None) -> Gradients:
    """Richardson-extrapolated central differences with error estimates."""
    dtype = dtype or model.check.dtype
    eps = float(np.finfo(np.dtype(dtype)).eps)
    values: dict[str, np.ndarray] = {}
    errors: dict[str, np.ndarray] = {}
    f0 = reduced(model, point, dtype)
    for name, param in model.params.items():
        p = np.asarray(point[name], dtype=np.float64)
        k = p.size
        h = step(p.reshape(-1), dtype, param.domain)
        # Four perturbations per element: +h, -h, +h/2, -h/2.
        offsets = np.zeros((4 * k, k))
        idx = np.arange(k)
        for j, factor in enumerate((1.0, -1.0, 0.5, -0.5)):
            offsets[j * k + idx, idx] = factor * h
        f = _evaluate_offsets(model, point, name, offsets.reshape((4 * k,) + p.shape), dtype)
        f = f.reshape((4, k) + f.shape[1:])  # (4, k) or (4, k, N) for reduction none
        hh = h.reshape((k,) + (1,) * (f.ndim - 2))
        with np.errstate(all="ignore"):
            d1 = (f[0] - f[1]) / (2 * hh)
            d2 = (f[2] - f[3]) / hh
            est = d2 + (d2 - d1) / 3
            fmax = np.max(np.abs(f), axis=0)
            err = np.abs(d2 - d1) / 3 + 4 * eps * np.maximum(fmax, np.abs(f0 if np.ndim(f0) == 0 else 0)) / hh
        if model.reduction == "none":
            est, err = np.moveaxis(est, -1, 0), np.moveaxis(err, -1, 0)  # samples first
            values[name] = est.reshape((est.shape[0],) + p.shape)
            errors[name] = err.reshape((err.shape[0],) + p.shape)
        else:
            values[name] = est.reshape(p.shape)
            errors[name] = err.reshape(p.shape)
    loss = f0 if model.reduction == "none" else float(f0)
    return Gradients("finite_difference", values, errors, loss)


def one_sided(
    model: Model, point: Mapping[str, np.ndarray], name: str, dtype: str | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Left and right derivatives of the reduced loss for each element of ``name``.

    Second-order one-sided differences (``(-3 f0 + 4 f(h) - f(2h)) / 2h``) at a
    small step, for telling a kink from a smooth point. Returns
    ``(left, right, error)``.
    """
    dtype = dtype or model.check.dtype
    eps = float(np.finfo(np.dtype(dtype)).eps)
    p = np.asarray(point[name], dtype=np.float64)
    k = p.size
    h = step(p.reshape(-1), dtype, None, power=1 / 3) / 4
    offsets = np.zeros((4 * k, k))
    idx = np.arange(k)
    for j, factor in enumerate((1.0, 2.0, -1.0, -2.0)):
        offsets[j * k + idx, idx] = factor * h
    f = _evaluate_offsets(model, point, name, offsets.reshape((4 * k,) + p.shape), dtype)
    f = f.reshape((4, k) + f.shape[1:])
    f0 = reduced(model, point, dtype)
    if model.reduction == "none":
        f0 = np.asarray(f0)[None, :]
    hh = h.reshape((k,) + (1,) * (f.ndim - 2))
    with np.errstate(all="ignore"):
        right = (-3 * f0 + 4 * f[0] - f[1]) / (2 * hh)
        left = (3 * f0 - 4 * f[2] + f[3]) / (2 * hh)
        err = 16 * eps * np.max(np.abs(f), axis=0) / hh + np.abs((f[0] - f0) / hh - right) / 3
    if model.reduction == "none":
        left, right, err = (np.moveaxis(a, -1, 0).reshape((-1,) + p.shape) for a in (left, right, err))
    else:
        left, right, err = (a.reshape(p.shape) for a in (left, right, err))
    return left, right, err
