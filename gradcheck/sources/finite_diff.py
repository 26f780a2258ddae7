"""The finite-difference source: the expression as written, in NumPy.

Every value comes with an error estimate (an estimate, not a bound). Two
methods, chosen per parameter (``info["method"]`` says which was used); the
rules and the reasons are in ``docs/how-it-works.md``:

* **Complex step** (float64 models whose loss uses no function of
  :data:`gradcheck.ops.NOT_ANALYTIC`): ``f'(p) = Im f(p + i h) / h`` has no
  subtractive cancellation, so ``h`` can be tiny (:data:`COMPLEX_STEP`, times
  ``max(1, |p|)``) and the truncation error ``h**2 f'''/6`` vanishes below
  rounding: the value is as accurate as evaluating ``f`` itself. It is taken
  at two steps (``h`` and ``3h``, whose roundings differ) and averaged; the
  error estimate is ``4 |D(h) - D(3h)|`` (the rounding noise, seen twice)
  plus ``32 eps`` times the sum of the per-sample derivatives' magnitudes (the
  rounding of the sum over samples). Where the complex evaluation does not
  reproduce the real loss (a branch cut, a non-finite value), the parameter
  falls back to central differences.
* **Richardson-extrapolated central differences** otherwise (and always for
  float32, evaluated in float32): central differences at
  :data:`LEVELS` steps ``h0 / 2**j`` with ``h0 = 2 eps**(1/7) max(1, |p|)``
  (shrunk to stay inside the parameter's domain; ``p ± h`` rounded to the
  dtype and the step actually taken used), extrapolated in a Neville tableau
  (Ridders' method). Each tableau entry has an error estimate: the larger
  difference to the two entries it was built from (its truncation error is
  at most that of theirs) plus the rounding error, ``ROUNDING * eps * max|f|``
  over the step, carried through the same extrapolation weights. Per element the entry with the
  smallest estimate is returned, with that estimate.

All perturbations of one parameter are one batch, and each is carried as the
one position it changes (:mod:`gradcheck.perturb`), so a parameter costs
about one model evaluation (in chunks of at most :data:`CHUNK_VALUES` values
where that does not apply; :func:`start_steps` says where the steps start).
Nothing here touches SymPy or torch.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from .. import interp, perturb
from ..model import Model
from ..ops import OPS
from . import Gradients

#: Largest number of float values one chunk of perturbations may hold.
CHUNK_VALUES = 4_000_000
#: Imaginary step of the complex-step derivative, relative to ``max(1, |p|)``.
COMPLEX_STEP = 1e-20
#: Central-difference steps (each halving the last) in the Richardson tableau, per dtype.
LEVELS = {"float64": 4, "float32": 3}
#: Rounding error of one loss evaluation, in units of ``eps * |loss|``.
ROUNDING = 32.0


def _width(model: Model) -> int:
    """A rough count of per-sample values the evaluation holds at once."""
    sizes = [1]
    for p in model.params.values():
        sizes.append(p.value.size)
    for node in model.entries.values():
        for n in node.walk():
            sizes.append(int(np.prod(n.shape, dtype=np.int64)) if n.shape else 1)
    return max(sizes)


def _per_sample(
    model: Model, params: Mapping[str, np.ndarray], dtype: str, visit: interp.Visit | None = None
) -> np.ndarray:
    """Per-sample losses; params keep their array dtype (real or complex) and may carry batch axes."""
    env: dict[str, Any] = dict(params)
    for k, v in model.data.items():
        env[k] = v.astype(np.dtype(dtype))
    with np.errstate(all="ignore"):
        values = interp.evaluate(model.entries, env, "numpy", np, until=model.loss, visit=visit)
    return np.asarray(values[model.loss])


def losses(model: Model, params: Mapping[str, np.ndarray], dtype: str) -> np.ndarray:
    """Per-sample losses; params may carry leading batch axes (before the sample axis)."""
    np_dtype = np.dtype(dtype)
    return _per_sample(model, {k: np.asarray(v, dtype=np_dtype) for k, v in params.items()}, dtype)


def _reduce(model: Model, per_sample: np.ndarray) -> np.ndarray:
    """Reduce ``(..., N)`` per-sample values as the model says (``none`` keeps them)."""
    if model.reduction == "mean":
        return per_sample.mean(-1)
    if model.reduction == "sum":
        return per_sample.sum(-1)
    return per_sample


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
    return _reduce(model, out)


def step(p: np.ndarray, dtype: str, domain: tuple[float, float] | None, power: float = 0.2) -> np.ndarray:
    """A step ``eps**power * max(1, |p|)`` per element of ``p``, inside the domain, ``p + h`` exact."""
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


def _in_chunks(
    fn: Any, model: Model, point: Mapping[str, np.ndarray], name: str, idx: np.ndarray, vals: np.ndarray, dtype: str
) -> np.ndarray:
    """``fn`` (:func:`gradcheck.perturb.per_sample` or ``crossings``) over all rows at once, or in chunks.

    Each perturbation is carried as the one position it changes, so all of
    them cost about one model evaluation; where that does not apply, in
    chunks of at most :data:`CHUNK_VALUES` values.
    """
    params = {k: np.asarray(v, dtype=np.dtype(dtype)) for k, v in point.items()}
    try:
        return np.asarray(fn(model, params, name, idx, vals, dtype, max_values=CHUNK_VALUES))
    except perturb.TooDense:
        pass
    chunk = max(1, CHUNK_VALUES // max(1, model.n_samples * _width(model)))
    parts = [fn(model, params, name, idx[i : i + chunk], vals[i : i + chunk], dtype) for i in range(0, idx.size, chunk)]
    return np.concatenate([np.asarray(part) for part in parts], axis=0)


def _batched(
    model: Model, point: Mapping[str, np.ndarray], name: str, idx: np.ndarray, delta: np.ndarray, dtype: str
) -> np.ndarray:
    """Per-sample losses ``(m, N)`` with element ``idx[j]`` of ``name`` moved by ``delta[j]``.

    ``delta`` may be complex (the complex step, float64). The perturbed values
    are rounded to the dtype and everything is evaluated in it.
    """
    n = model.n_samples
    work = np.dtype(np.complex128) if np.iscomplexobj(delta) else np.dtype(dtype)
    vals = (np.asarray(point[name], dtype=np.float64).reshape(-1)[idx] + delta).astype(work)
    f = _in_chunks(perturb.per_sample, model, point, name, idx, vals, dtype)
    f = np.broadcast_to(f, (idx.size, n)) if model.data else np.broadcast_to(f, (idx.size,))[:, None]
    return np.array(f, dtype=work)


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


def analytic(model: Model) -> bool:
    """True when every function the loss uses is analytic (the complex step applies)."""
    for name, node in model.entries.items():
        if any(n.op in OPS and not OPS[n.op].analytic for n in node.walk()):
            return False
        if name == model.loss:
            break
    return True


def _per_element(model: Model, a: np.ndarray, k: int) -> np.ndarray:
    """``(k, N)`` per-sample values -> reduced ``(k,)``, or ``(k, N)`` for reduction none."""
    return _reduce(model, a) if model.reduction != "none" else a


def _complex_step(
    model: Model, point: Mapping[str, np.ndarray], name: str, base: np.ndarray
) -> tuple[np.ndarray, np.ndarray] | None:
    """Complex-step derivative and error per element (``None`` where it does not apply)."""
    eps = float(np.finfo(np.float64).eps)
    p = np.asarray(point[name], dtype=np.float64).reshape(-1)
    k = p.size
    h = COMPLEX_STEP * np.maximum(1.0, np.abs(p))
    hs = np.concatenate([h, 3 * h])
    idx = np.concatenate([np.arange(k), np.arange(k)])
    try:
        f = _batched(model, point, name, idx, 1j * hs, "float64")
    except (TypeError, ValueError):  # a NumPy form without a complex version
        return None
    with np.errstate(all="ignore"):
        same = np.abs(f.real - base) <= 1e-10 * np.abs(base) + 1e-300
        if not (np.all(np.isfinite(f)) and np.all(np.isfinite(base)) and np.all(same)):
            return None
        d = f.imag / hs[:, None]
    d1, d2 = _per_element(model, d[:k], k), _per_element(model, d[k:], k)
    magnitude = _per_element(model, np.abs(d[:k]), k)
    value = (d1 + d2) / 2
    error = 4 * np.abs(d1 - d2) + ROUNDING * eps * magnitude
    return value, error


#: Probe steps for kinks: ``h0 / 4**j`` for ``j < KINK_PROBES`` (down to about 1e-14 of ``h0``).
KINK_PROBES = 24


def _kinked(model: Model) -> bool:
    """True when the loss uses a function with kinks (``relu``, ``abs``, ``max``, ...)."""
    return any(n.op in OPS and OPS[n.op].kink is not None for node in model.entries.values() for n in node.walk())


def _kink_sides(model: Model, params: Mapping[str, np.ndarray], dtype: str, batch: tuple[int, ...]) -> list[np.ndarray]:
    """The sign of every kinked function's kink quantity (see ``Op.kink``), batch axes first.

    Each array has the batch axes ``batch`` (perturbations, then samples)
    followed by one flattened axis of everything else.
    """
    sides: list[np.ndarray] = []

    def visit(node: Any, args: list[Any]) -> None:
        op = OPS[node.op]
        if op.kink is None:
            return
        with np.errstate(all="ignore"):
            q = np.sign(np.asarray(op.kink(np, *[np.asarray(a) for a in args])))
        per = q.ndim - len(node.shape)  # batch axes present on this value
        q = q.reshape((1,) * (len(batch) - per) + q.shape)
        q = np.broadcast_to(q, batch + q.shape[len(batch) :])
        sides.append(q.reshape(batch + (-1,)))

    _per_sample(model, params, dtype, visit)
    return sides


def _clean_steps(crossed: np.ndarray, h0: np.ndarray, floor: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """From probe crossings (``(KINK_PROBES, ±, k)`` flattened), per element the step to start from.

    The largest probe ``h0 / 4**j`` from which on every smaller probe is kink
    free, but never below ``floor`` (a step of a few ulps measures rounding,
    not slope). ``crowded`` marks elements whose nearest kink is closer than
    ``floor`` (or than every probe): their differences may straddle it, and
    the caller widens their error estimate.
    """
    k = h0.size
    bad = crossed.reshape(KINK_PROBES, 2, k).any(axis=1)  # (probe, element)
    clean_below = np.flip(np.logical_and.accumulate(np.flip(~bad, axis=0), axis=0), axis=0)
    found = clean_below.any(axis=0)
    h = np.where(found, h0 / 4.0 ** np.argmax(clean_below, axis=0), 0.0)
    crowded = h < floor
    return np.where(crowded, np.minimum(floor, h0), h), crowded


def _tableau(
    red: np.ndarray, widths: list[np.ndarray], noise: np.ndarray, ratios: list[np.ndarray]
) -> tuple[np.ndarray, np.ndarray]:
    """Ridders' extrapolation with error estimates, per element.

    ``red[2 j]`` and ``red[2 j + 1]`` are the (reduced) losses at the two
    ends of level ``j``, ``widths[j]`` the distance between them (per
    element), ``noise`` the rounding error of one loss value, ``ratios[m]``
    the extrapolation denominator of column ``m`` (``4**m - 1`` for central
    differences, ``2**m - 1`` for one-sided). Each entry's estimate is twice
    its distance to the entries it was built from plus its rounding error
    carried through the weights; per element the entry with the smallest
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


def _floor(dtype: str, scale: np.ndarray | float, levels: int) -> np.ndarray:
    """The smallest starting step worth taking: the last level is ``sqrt(eps) * scale``."""
    return np.asarray(float(np.finfo(np.dtype(dtype)).eps) ** 0.5 * 2 ** (levels - 1) * np.asarray(scale))


def _straddle(right: np.ndarray, left: np.ndarray, crowded: np.ndarray, err: np.ndarray) -> np.ndarray:
    """Widen the estimate of crowded elements by the jump between their one-sided slopes."""
    k = crowded.size
    mask = crowded.reshape((k,) + (1,) * (err.ndim - 1))
    with np.errstate(all="ignore"):
        jump = np.abs(right - left)
    return np.where(mask & np.isfinite(jump), np.maximum(err, jump + err), err)


def _kink_free_steps(
    model: Model, point: Mapping[str, np.ndarray], name: str, dtype: str, h0: np.ndarray, floor: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Per element, the largest probe step ``h0 / 4**j`` whose perturbations cross no kink.

    A central difference across a kink (``abs(w)`` at ``w = 0.001`` with a
    step of 0.01) is wrong however it is extrapolated, so the Richardson
    tableau must start below the distance to the nearest kink. A step is kink
    free when ``p ± h`` and every smaller probe keep every kinked function on
    the side it is on at ``p``. Elements sitting exactly on a kink keep
    ``h0``: that is the kink detector's business (``gradcheck/kinks.py``).
    Returns the steps and the ``crowded`` mask of :func:`_clean_steps`.
    """
    if not _kinked(model):
        return h0, np.zeros(h0.size, dtype=bool)
    t = np.dtype(dtype).type
    p = np.asarray(point[name], dtype=np.float64).reshape(-1)
    steps = [h0 / 4**j for j in range(KINK_PROBES)]
    moved = np.concatenate([(p + sgn * h).astype(t) for h in steps for sgn in (1.0, -1.0)])
    idx = np.tile(np.arange(p.size), 2 * KINK_PROBES)
    crossed = _in_chunks(perturb.crossings, model, point, name, idx, moved, dtype)
    return _clean_steps(crossed, h0, floor)


def _base_step(dtype: str, scale: Any) -> np.ndarray:
    """The first Ridders step before any shrinking: ``2 eps**(1/7) * scale`` (``scale = max(1, |p|)``)."""
    return np.asarray(2 * float(np.finfo(np.dtype(dtype)).eps) ** (1 / 7) * np.asarray(scale, dtype=np.float64))


def start_steps(
    model: Model, point: Mapping[str, np.ndarray], name: str, dtype: str, domain: tuple[float, float] | None
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Per element of ``name``, where the Ridders tableau starts: ``(h0, one_sided, side, crowded)``.

    ``h0`` is :func:`_base_step`, shrunk below the nearest kink
    (:func:`_kink_free_steps`) and to fit the domain; the tableau's levels are
    ``h0 / 2**j``. Next to a domain edge, where even 1/1000 of the step does
    not fit on one side, the differences are one-sided (``one_sided``) into
    the roomier side (``side``, +1 or -1), extrapolated as first order.
    ``crowded`` marks elements whose nearest kink is closer than any useful
    step (their estimate is widened).
    """
    p = np.asarray(point[name], dtype=np.float64).reshape(-1)
    scale = np.maximum(1.0, np.abs(p))
    h0, crowded = _kink_free_steps(
        model, point, name, dtype, _base_step(dtype, scale), _floor(dtype, scale, LEVELS.get(dtype, 4))
    )
    side = np.ones(p.size)
    one_sided = np.zeros(p.size, dtype=bool)
    if domain is not None:
        below, above = (p - domain[0]) * 0.99, (domain[1] - p) * 0.99
        room = np.minimum(below, above)
        one_sided = room < 1e-3 * h0
        side = np.where(above >= below, 1.0, -1.0)
        h0 = np.where(one_sided, np.minimum(h0, np.maximum(below, above)), np.minimum(h0, np.maximum(room, 0.0)))
    return h0, one_sided, side, crowded & ~one_sided


def _richardson(
    model: Model, point: Mapping[str, np.ndarray], name: str, dtype: str, domain: tuple[float, float] | None
) -> tuple[np.ndarray, np.ndarray]:
    """Ridders' extrapolation of central differences, with error estimates, per element."""
    eps = float(np.finfo(np.dtype(dtype)).eps)
    t = np.dtype(dtype).type
    p = np.asarray(point[name], dtype=np.float64).reshape(-1)
    k = p.size
    levels = LEVELS.get(dtype, 4)
    h0, one_sided, side, crowded = start_steps(model, point, name, dtype, domain)
    plus, minus = [], []
    for j in range(levels):
        h = h0 / 2**j
        up = np.where(one_sided, side * h, h)
        down = np.where(one_sided, 0.0, -h)
        plus.append((p + up).astype(t).astype(np.float64) - p)  # the steps the dtype can take
        minus.append((p + down).astype(t).astype(np.float64) - p)
    delta = np.concatenate([d for pair in zip(plus, minus) for d in pair] + [np.zeros(1)])
    idx = np.concatenate([np.tile(np.arange(k), 2 * levels), [0]])  # the last row: the point itself
    f = _batched(model, point, name, idx, delta, dtype).astype(np.float64)
    with np.errstate(all="ignore"):
        rows = _per_element(model, f, k)
        f0, red = rows[-1], rows[:-1].reshape((2 * levels, k) + rows.shape[1:])
        mags = _per_element(model, np.abs(f[:-1]), k).reshape(red.shape)
        noise = ROUNDING * eps * np.max(mags, axis=0)
        ratios = [np.where(one_sided, 2.0**m - 1, 4.0**m - 1) for m in range(levels)]
        best, best_err = _tableau(red, [a - b for a, b in zip(plus, minus)], noise, ratios)
        if crowded.any():
            col = (k,) + (1,) * (red.ndim - 2)
            right = (red[-2] - f0) / plus[-1].reshape(col)
            left = (f0 - red[-1]) / -minus[-1].reshape(col)
            best_err = _straddle(right, left, crowded, best_err)
    return best, best_err


def gradients(model: Model, point: Mapping[str, np.ndarray], dtype: str | None = None) -> Gradients:
    """Finite-difference gradients (complex step or Richardson) with error estimates."""
    dtype = dtype or model.check.dtype
    values: dict[str, np.ndarray] = {}
    errors: dict[str, np.ndarray] = {}
    methods: dict[str, str] = {}
    real_point = {k: np.asarray(v, dtype=np.dtype(dtype)) for k, v in point.items()}
    per0 = _per_sample(model, real_point, dtype).astype(np.float64)
    per0 = np.broadcast_to(per0, (model.n_samples,)) if model.data else np.reshape(per0, (1,))
    use_complex = dtype == "float64" and analytic(model)
    for name, param in model.params.items():
        shape = param.shape
        found = _complex_step(model, point, name, per0) if use_complex else None
        methods[name] = "complex step" if found is not None else "Richardson"
        if found is None:
            found = _richardson(model, point, name, dtype, param.domain)
        est, err = found
        if model.reduction == "none":
            est, err = np.moveaxis(est, -1, 0), np.moveaxis(err, -1, 0)  # samples first
            values[name] = est.reshape((est.shape[0],) + shape)
            errors[name] = err.reshape((err.shape[0],) + shape)
        else:
            values[name] = est.reshape(shape)
            errors[name] = err.reshape(shape)
    f0 = _reduce(model, per0)
    loss = f0 if model.reduction == "none" else float(f0)
    return Gradients("finite_difference", values, errors, loss, {"method": methods})


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


# --- directional derivatives (``--directions K``) --------------------------


def _along(
    model: Model, point: Mapping[str, np.ndarray], direction: Mapping[str, np.ndarray], ts: np.ndarray, dtype: str
) -> np.ndarray:
    """Per-sample losses ``(M, N)`` at ``point + ts[m] * direction[m]`` (``ts`` may be complex)."""
    n = model.n_samples
    m = ts.shape[0]
    work = np.result_type(np.dtype(dtype), ts.dtype)
    chunk = max(1, CHUNK_VALUES // max(1, n * _width(model)))
    out = np.empty((m, n), dtype=work)
    for start in range(0, m, chunk):
        rows = slice(start, min(start + chunk, m))
        r = rows.stop - rows.start
        params = {}
        for name, p in point.items():
            shape = model.params[name].shape
            t = ts[rows].reshape((r,) + (1,) * len(shape))
            block = np.asarray(p, dtype=np.float64) + t * np.asarray(direction[name][rows], dtype=np.float64)
            params[name] = block.astype(work).reshape(((r, 1) if model.data else (r,)) + shape)
        f = _per_sample(model, params, dtype)
        out[rows] = np.broadcast_to(f, (r, n)) if model.data else np.broadcast_to(f, (r,))[:, None]
    return out


def _direction_reduce(model: Model, a: np.ndarray) -> np.ndarray:
    """``(M, N)`` per-sample values -> ``(M,)`` reduced, or ``(M, N)`` for reduction none."""
    return _reduce(model, a) if model.reduction != "none" else a


def _direction_scale(point: Mapping[str, np.ndarray], direction: Mapping[str, np.ndarray]) -> float:
    """``max(1, |p_i|)`` over the elements any direction moves: the step's unit."""
    big = 1.0
    for name, p in point.items():
        moved = np.any(np.asarray(direction[name]) != 0, axis=0)
        if np.any(moved):
            big = max(big, float(np.max(np.abs(np.asarray(p, dtype=np.float64))[moved])))
    return big


def _direction_room(
    model: Model, point: Mapping[str, np.ndarray], direction: Mapping[str, np.ndarray], k: int
) -> np.ndarray:
    """Per direction, the largest ``t`` with ``point ± t v`` inside every parameter's domain."""
    room = np.full(k, np.inf)
    for name, param in model.params.items():
        if param.domain is None:
            continue
        lo, hi = param.domain
        p = np.asarray(point[name], dtype=np.float64).reshape(-1)
        v = np.abs(np.asarray(direction[name], dtype=np.float64).reshape(k, -1))
        with np.errstate(divide="ignore", invalid="ignore"):
            r = np.where(v > 0, np.minimum(p - lo, hi - p)[None, :] / v, np.inf)
        room = np.minimum(room, r.min(axis=1) if r.size else room)
    return room


def _direction_kink_free(
    model: Model,
    point: Mapping[str, np.ndarray],
    direction: Mapping[str, np.ndarray],
    dtype: str,
    h0: np.ndarray,
    floor: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """Per direction, :func:`_kink_free_steps` along ``t``: the start step and the ``crowded`` mask."""
    if not _kinked(model):
        return h0, np.zeros(h0.size, dtype=bool)
    samples = (model.n_samples,) if model.data else ()
    real = {key: np.asarray(v, dtype=np.dtype(dtype)) for key, v in point.items()}
    base = _kink_sides(model, real, dtype, samples)
    ts = np.concatenate([sgn * h0 / 4**j for j in range(KINK_PROBES) for sgn in (1.0, -1.0)])
    tiled = {
        name: np.tile(np.asarray(v), (2 * KINK_PROBES,) + (1,) * (np.ndim(v) - 1)) for name, v in direction.items()
    }
    params = {}
    for name, p in point.items():
        shape = model.params[name].shape
        t = ts.reshape((-1,) + (1,) * len(shape))
        block = (np.asarray(p, dtype=np.float64) + t * tiled[name]).astype(np.dtype(dtype))
        params[name] = block.reshape(((ts.size, 1) if model.data else (ts.size,)) + shape)
    crossed = np.zeros(ts.size, dtype=bool)
    for here, there in zip(_kink_sides(model, params, dtype, (ts.size,) + samples), base):
        crossed |= ((there != 0) & (here != there)).reshape(ts.size, -1).any(axis=1)
    return _clean_steps(crossed, h0, floor)


def directional(
    model: Model,
    point: Mapping[str, np.ndarray],
    direction: Mapping[str, np.ndarray],
    dtype: str | None = None,
) -> tuple[np.ndarray, np.ndarray, str]:
    """Derivatives of the reduced loss along K directions, with error estimates.

    ``direction`` maps every parameter to an array ``(K,) + shape`` (row k of
    all of them together is direction k). The derivative of the
    one-dimensional function ``t -> loss(point + t v)`` at ``t = 0`` is taken
    by the same two methods as :func:`gradients`, with ``t`` in place of a
    parameter element: the complex step (float64, analytic loss; steps
    ``h`` and ``3h`` with ``h = COMPLEX_STEP * s``) or else Ridders'
    extrapolation of central differences from ``h0 = 2 eps**(1/7) * s``
    (shrunk so that ``point ± t v`` stays inside every domain and crosses no
    kink), where ``s = max(1, |p_i|)`` over the elements the directions move.
    All directions and steps are one batch: K directions cost about as much
    as K parameter elements. Returns ``(values, errors, method)``, each
    array ``(K,)`` (``(K, N)`` for ``reduction: none``).
    """
    dtype = dtype or model.check.dtype
    eps = float(np.finfo(np.dtype(dtype)).eps)
    k = int(np.asarray(next(iter(direction.values()))).shape[0]) if direction else 0
    s = _direction_scale(point, direction)
    real = {key: np.asarray(v, dtype=np.dtype(dtype)) for key, v in point.items()}
    per0 = _per_sample(model, real, dtype).astype(np.float64)
    per0 = np.broadcast_to(per0, (model.n_samples,)) if model.data else np.reshape(per0, (1,))

    def tile(times: int) -> dict[str, np.ndarray]:
        return {n: np.tile(np.asarray(v), (times,) + (1,) * (np.ndim(v) - 1)) for n, v in direction.items()}

    if dtype == "float64" and analytic(model):
        h = COMPLEX_STEP * s
        ts = 1j * np.repeat([h, 3 * h], k)
        try:
            f = _along(model, point, tile(2), ts, "float64")
        except (TypeError, ValueError):  # a NumPy form without a complex version
            f = None
        if f is not None:
            with np.errstate(all="ignore"):
                same = np.abs(f.real - per0) <= 1e-10 * np.abs(per0) + 1e-300
                if np.all(np.isfinite(f)) and np.all(np.isfinite(per0)) and np.all(same):
                    d = f.imag / ts.imag[:, None]
                    d1, d2 = _direction_reduce(model, d[:k]), _direction_reduce(model, d[k:])
                    error = 4 * np.abs(d1 - d2) + ROUNDING * eps * _direction_reduce(model, np.abs(d[:k]))
                    return (d1 + d2) / 2, error, "complex step"

    levels = LEVELS.get(dtype, 4)
    h0 = np.full(k, _base_step(dtype, s))
    room = _direction_room(model, point, direction, k)
    h0 = np.where(room > 0, np.minimum(h0, 0.99 * room), h0)
    h0, crowded = _direction_kink_free(model, point, direction, dtype, h0, _floor(dtype, np.full(k, s), levels))
    ts = np.concatenate([sgn * h0 / 2**j for j in range(levels) for sgn in (1.0, -1.0)])
    f = _along(model, point, tile(2 * levels), ts, dtype).astype(np.float64)
    with np.errstate(all="ignore"):
        red = _direction_reduce(model, f)
        red = red.reshape((2 * levels, k) + red.shape[1:])
        mags = _direction_reduce(model, np.abs(f)).reshape(red.shape)
        noise = ROUNDING * eps * np.max(mags, axis=0)
        ratios = [np.full(k, 4.0**m - 1) for m in range(levels)]
        best, best_err = _tableau(red, [2 * h0 / 2**j for j in range(levels)], noise, ratios)
        if crowded.any():
            f0 = _direction_reduce(model, per0[None, :])[0]
            col = (k,) + (1,) * (red.ndim - 2)
            last = (h0 / 2 ** (levels - 1)).reshape(col)
            best_err = _straddle((red[-2] - f0) / last, (f0 - red[-1]) / last, crowded, best_err)
    return best, best_err, "Richardson"


def directional_one_sided(
    model: Model, point: Mapping[str, np.ndarray], direction: Mapping[str, np.ndarray], dtype: str | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Left and right derivatives along each direction, as :func:`one_sided` does per element.

    Returns ``(left, right, error)``, each ``(K,)`` (``(K, N)`` for ``reduction: none``).
    """
    dtype = dtype or model.check.dtype
    eps = float(np.finfo(np.dtype(dtype)).eps)
    k = int(np.asarray(next(iter(direction.values()))).shape[0]) if direction else 0
    h = float(np.finfo(np.dtype(dtype)).eps) ** (1 / 3) * _direction_scale(point, direction) / 4
    ts = np.repeat([h, 2 * h, -h, -2 * h], k)
    tiled = {n: np.tile(np.asarray(v), (4,) + (1,) * (np.ndim(v) - 1)) for n, v in direction.items()}
    f = _direction_reduce(model, _along(model, point, tiled, ts, dtype).astype(np.float64))
    f = f.reshape((4, k) + f.shape[1:])
    f0 = np.asarray(reduced(model, point, dtype), dtype=np.float64)
    with np.errstate(all="ignore"):
        right = (-3 * f0 + 4 * f[0] - f[1]) / (2 * h)
        left = (3 * f0 - 4 * f[2] + f[3]) / (2 * h)
        err = 16 * eps * np.max(np.abs(f), axis=0) / h + np.abs((f[0] - f0) / h - right) / 3
    return left, right, err
