"""Reductions and vector functions over the per-sample axes.

A reduction takes ``axis=`` (``None``: every per-sample axis; an int or a
list of ints, negative counting from the end) and ``keepdims=``. Axes count
the *per-sample* axes only: a value may carry leading batch axes (samples,
perturbations), so the forms reduce the array axes ``axis - rank`` (counted
from the end). ``softmax`` and ``log_softmax`` normalise along one axis
(``axis=-1``). ``max(v)`` / ``min(v)`` are the one-argument spellings of
``max`` / ``min`` (entries ``amax`` / ``amin``); the two-argument ones are
elementwise (:mod:`.elementwise`).
"""

from __future__ import annotations

import operator
from typing import Any

from .. import incremental as inc
from .core import DENSE, Attr, Shape, ShapeError, _each, _mp, _mp_sum, _object, _size, _sum, structural

AXIS = Attr("axis", None, ("int", "ints"), "the per-sample axes to reduce (default: all)")
KEEPDIMS = Attr("keepdims", False, ("bool",), "keep each reduced axis with size 1")
ONE_AXIS = Attr("axis", -1, ("int",), "the per-sample axis to normalise along")
REDUCE = (AXIS, KEEPDIMS)


def _valid(rank: int) -> str:
    if rank == 0:
        return "a scalar has no axes: leave out axis="
    return "valid axes: " + ", ".join(f"{i} (or {i - rank})" for i in range(rank))


def axes_of(shape: Shape, axis: int | tuple[int, ...] | None) -> tuple[int, ...]:
    """The reduced per-sample axes of a value of ``shape``, as non-negative sorted ints; :class:`ShapeError` when wrong."""
    rank = len(shape)
    if axis is None:
        return tuple(range(rank))
    given = (axis,) if isinstance(axis, int) else tuple(axis)
    out = []
    for a in given:
        if not -rank <= a < rank:
            raise ShapeError(f"axis {a} is out of range for a value of shape {list(shape)}", _valid(rank))
        out.append(a % rank)
    if len(set(out)) != len(out):
        twice = next(given[i] for i in range(len(out)) if out[i] in out[:i])
        shown = list(given) if len(given) <= 8 else "[" + ", ".join(map(str, given[:8])) + ", ...]"
        raise ShapeError(f"axis {shown} names axis {twice % rank} twice", _valid(rank))
    return tuple(sorted(out))


def _dot_shape(a: Shape, b: Shape) -> Shape:
    if len(a) != 1 or a != b:
        raise ShapeError(f"dot needs two vectors of one length, got shapes {list(a)} and {list(b)}")
    return ()


def _reduced(shape: Shape, axes: tuple[int, ...], keepdims: bool) -> Shape:
    if keepdims:
        return tuple(1 if i in axes else s for i, s in enumerate(shape))
    return tuple(s for i, s in enumerate(shape) if i not in axes)


def _reduce_shape(shape: Shape, axis: Any = None, keepdims: bool = False) -> Shape:
    return _reduced(shape, axes_of(shape, axis), keepdims)


def _nonempty_shape(shape: Shape, axis: Any = None, keepdims: bool = False) -> Shape:
    axes = axes_of(shape, axis)
    if any(shape[a] == 0 for a in axes):
        raise ShapeError(f"cannot reduce an empty axis of shape {list(shape)}")
    return _reduced(shape, axes, keepdims)


def _along_shape(shape: Shape, axis: int = -1) -> Shape:
    if not shape:
        raise ShapeError("needs a vector, got a scalar", "apply it to a vector or a higher-rank value")
    axes_of(shape, axis)
    return shape


def _default(axis: Any, keepdims: bool) -> bool:
    """Every axis, no keepdims: the forms then keep the code of the whole-value reductions (same bits)."""
    return axis is None and not keepdims


def _neg(shape: Shape, axis: Any) -> tuple[int, ...]:
    """The reduced axes counted from the end of the array (so batch axes in front do not matter)."""
    rank = len(shape)
    return tuple(a - rank for a in axes_of(shape, axis))


def _objects_reduce(x: Any, shape: Shape, axis: Any, keepdims: bool, fn: Any) -> Any:
    """``fn(list of elements)`` per output element of an object array (batch axes first, if any)."""
    import numpy as np

    neg = _neg(shape, axis)
    arr = np.asarray(x, dtype=object)
    if not neg:
        return arr if arr.ndim else arr[()]
    k = len(neg)
    moved = np.moveaxis(arr, neg, tuple(range(-k, 0)))
    flat = moved.reshape(moved.shape[: moved.ndim - k] + (-1,))
    out = np.empty(flat.shape[:-1], dtype=object)
    for idx in np.ndindex(*out.shape):
        out[idx] = fn(list(flat[idx]))
    if keepdims:
        out = out.reshape(arr.shape[: arr.ndim - len(shape)] + _reduced(shape, axes_of(shape, axis), True))
    return out if out.ndim else out[()]


def _mp_total(M: Any, items: list[Any]) -> Any:
    return M.nan if any(M.isnan(v) for v in items) else M.fsum(items)


def _mp_extreme(M: Any, items: list[Any], pick: Any) -> Any:
    return M.nan if any(M.isnan(v) for v in items) else pick(items)


# --- sum, mean, var, norm ----------------------------------------------------


def _rsum(mod: Any, x: Any, shape: Shape, axis: Any, keepdims: bool) -> Any:
    """Sum over the reduced axes (NumPy or torch, batch axes in front)."""
    if _default(axis, keepdims):
        return _sum(mod, x, len(shape))
    neg = _neg(shape, axis)
    if not neg:
        return x
    if mod.__name__ == "torch":
        return x.sum(dim=neg, keepdim=keepdims)
    return x.sum(axis=neg, keepdims=keepdims)


def _count(shape: Shape, axis: Any) -> int:
    return _size(tuple(shape[a] for a in axes_of(shape, axis)))


def _sympy_sum(S: Any, x: Any, shape: Shape, axis: Any, keepdims: bool) -> Any:
    return _object(_objects_reduce(x, shape, axis, keepdims, lambda items: S.Add(*items)))


def _mp_rsum(M: Any, x: Any, shape: Shape, axis: Any, keepdims: bool) -> Any:
    if _default(axis, keepdims):
        return _mp_sum(x, len(shape))
    return _objects_reduce(x, shape, axis, keepdims, lambda items: _mp_total(M, items))


def _mean(mod: Any, x: Any, shape: Shape, axis: Any, keepdims: bool) -> Any:
    return _rsum(mod, x, shape, axis, keepdims) / _count(shape, axis)


def _keep(shape: Shape, axis: Any) -> dict[str, Any]:
    return {"axis": tuple(axes_of(shape, axis)), "keepdims": True}


def _var(mod: Any, x: Any, shape: Shape, axis: Any, keepdims: bool) -> Any:
    """Population variance: the mean square deviation from the mean (written out, so the complex step applies)."""
    if not shape:
        return x * 0
    d = x - _mean(mod, x, shape, **_keep(shape, axis))
    return _rsum(mod, d * d, shape, axis, keepdims) / _count(shape, axis)


def _sympy_var(S: Any, x: Any, shape: Shape, axis: Any, keepdims: bool) -> Any:
    n = _count(shape, axis)

    def one(items: list[Any]) -> Any:
        m = S.Add(*items) / n
        return S.Add(*[(v - m) ** 2 for v in items]) / n

    if not shape:
        return _object(S.Integer(0) * x)
    return _object(_objects_reduce(x, shape, axis, keepdims, one))


def _mp_var(M: Any, x: Any, shape: Shape, axis: Any, keepdims: bool) -> Any:
    n = _count(shape, axis)

    def one(items: list[Any]) -> Any:
        if any(M.isnan(v) for v in items):
            return M.nan
        m = M.fsum(items) / n
        return M.fsum((v - m) ** 2 for v in items) / n

    if not shape:
        return _mp(M, lambda v: v * 0, x)
    return _objects_reduce(x, shape, axis, keepdims, one)


def _norm(mod: Any, x: Any, shape: Shape, axis: Any, keepdims: bool) -> Any:
    return mod.sqrt(_rsum(mod, x * x, shape, axis, keepdims))


# --- logsumexp, softmax, log_softmax -----------------------------------------


def _logsumexp(mod: Any, x: Any, rank: int) -> Any:
    if mod.__name__ == "torch":
        return mod.logsumexp(x.reshape(x.shape[: x.dim() - rank] + (-1,)), dim=-1)
    if mod.__name__ == "sympy":
        return _each(mod.log, _sum(mod, _each(mod.exp, x), rank))
    flat = x.reshape(x.shape[: x.ndim - rank] + (-1,))
    top = flat.real.max(axis=-1, keepdims=True)
    return mod.log(mod.exp(flat - top).sum(axis=-1)) + top[..., 0]


def _rlogsumexp(mod: Any, x: Any, shape: Shape, axis: Any, keepdims: bool) -> Any:
    if _default(axis, keepdims):
        return _logsumexp(mod, x, len(shape))
    neg = _neg(shape, axis)
    if not neg:
        return x
    if mod.__name__ == "torch":
        return mod.logsumexp(x, dim=neg, keepdim=keepdims)
    if mod.__name__ == "sympy":
        return _object(_objects_reduce(x, shape, axis, keepdims, lambda items: mod.log(mod.Add(*map(mod.exp, items)))))
    top = x.real.max(axis=neg, keepdims=True)
    out = mod.log(mod.exp(x - top).sum(axis=neg, keepdims=True)) + top
    return (
        out
        if keepdims
        else out.reshape(
            out.shape[: out.ndim - len(shape)] + _reduced(shape, tuple(a % len(shape) for a in neg), False)
        )
    )


def _mp_logsumexp(M: Any, x: Any, shape: Shape, axis: Any, keepdims: bool) -> Any:
    if _default(axis, keepdims):
        return _mp(M, M.log, _mp_sum(_mp(M, M.exp, x), len(shape)))
    return _mp(M, M.log, _objects_reduce(_mp(M, M.exp, x), shape, axis, keepdims, lambda items: _mp_total(M, items)))


def _softmax(mod: Any, x: Any, shape: Shape, axis: int, log: bool = False) -> Any:
    a = axis % len(shape) - len(shape)
    if mod.__name__ == "sympy":
        import numpy as np

        ex = _each(mod.exp, x)
        total = _objects_reduce(ex, shape, a, True, lambda items: mod.Add(*items))
        if log:
            return np.asarray(x - _each(mod.log, total), dtype=object)
        return np.asarray(ex / total, dtype=object)
    if mod.__name__ == "torch":
        return mod.log_softmax(x, dim=a) if log else mod.softmax(x, dim=a)
    shifted = x - x.real.max(axis=a, keepdims=True)  # the largest real part (what complex max compares first)
    ex = mod.exp(shifted)
    if log:
        return shifted - mod.log(ex.sum(axis=a, keepdims=True))
    return ex / ex.sum(axis=a, keepdims=True)


def _mp_softmax(M: Any, x: Any, shape: Shape, axis: int, log: bool = False) -> Any:
    a = axis % len(shape) - len(shape)
    ex = _mp(M, M.exp, x)
    total = _objects_reduce(ex, shape, a, True, lambda items: _mp_total(M, items))
    if log:
        return _mp(M, lambda v, t: v - M.log(t), x, total)
    return _mp(M, operator.truediv, ex, total)


# --- max(v), min(v) ------------------------------------------------------------


def _extreme(mod: Any, x: Any, shape: Shape, axis: Any, keepdims: bool, top: bool) -> Any:
    neg = _neg(shape, axis)
    if not neg:
        return x
    if mod.__name__ == "torch":
        # amax/amin: tied elements share the gradient evenly (half each at a tie of two, as SymPy's Max)
        return (mod.amax if top else mod.amin)(x, dim=neg, keepdim=keepdims)
    return x.max(axis=neg, keepdims=keepdims) if top else x.min(axis=neg, keepdims=keepdims)


def _extreme_kink(
    mod: Any, args: list[Any], shapes: list[Shape], axis: Any = None, keepdims: bool = False, top: bool = True
) -> Any:
    """Per element of ``v``: it minus the largest of the others in its group (for ``min``: the smallest of the others minus it).

    Positive for the maximum, negative for the others, zero exactly where the
    two largest tie: a change of maximum is a change of sign.
    """
    shape = shapes[0]
    x = mod.asarray(args[0])
    x = x if top else -x
    neg = _neg(shape, axis)
    k = len(neg)
    if not k:
        return mod.ones(x.shape)
    moved = mod.moveaxis(x, neg, tuple(range(-k, 0)))
    flat = moved.reshape(moved.shape[: moved.ndim - k] + (-1,))
    if flat.shape[-1] < 2:
        return mod.ones(x.shape)
    part = mod.partition(flat, -2, axis=-1)
    top1, top2 = part[..., -1:], part[..., -2:-1]
    q = flat - mod.where(flat >= top1, top2, top1)
    return mod.moveaxis(q.reshape(moved.shape), tuple(range(-k, 0)), neg)


def _sympy_extreme(S: Any, x: Any, shape: Shape, axis: Any, keepdims: bool, top: bool) -> Any:
    pick = S.Max if top else S.Min

    def extreme(items: Any) -> Any:
        # Nested pairs, unevaluated: an evaluated Max of n arguments compares them pairwise (and again
        # in every derivative), while nested pairs differentiate to n products of Heavisides. At a tie
        # of two the tied elements still get half the gradient each.
        out = items[0]
        for item in items[1:]:
            out = pick(out, item, evaluate=False)
        return out

    return _object(_objects_reduce(x, shape, axis, keepdims, extreme))


def _dd_extreme_vjp(D: Any, x: Any, g: Any, shape: Shape, axis: Any, keepdims: bool, top: bool) -> Any:
    """The cotangent in ``v`` as the symbolic tape differentiates ``max(v)``, ties included.

    :func:`_sympy_extreme` nests pairs, but the tape's derivative rebuilds
    them, and SymPy's ``Max`` flattens: each element takes
    ``Heaviside(v_i - Max(others))`` (:func:`gradcheck.ddarray.max_share`:
    half the gradient to each of several tied maxima); ``min`` is ``max``
    of ``-v``.
    """
    import numpy as np

    neg = _neg(shape, axis)
    x, g = D.lift(x), D.lift(g)
    if not neg:
        return g
    hi, lo = np.broadcast_arrays(x.hi, x.lo)
    hi, lo = (hi, lo) if top else (-hi, -lo)
    k = len(neg)
    ends = tuple(range(-k, 0))
    moved_hi, moved_lo = np.moveaxis(hi, neg, ends), np.moveaxis(lo, neg, ends)
    flat = moved_hi.shape[: moved_hi.ndim - k] + (-1,)
    share = D.max_share(moved_hi.reshape(flat), moved_lo.reshape(flat))
    share = np.moveaxis(share.reshape(moved_hi.shape), ends, neg)
    axes = axes_of(shape, axis)
    out_rank = len(_reduced(shape, axes, keepdims))
    g = g.reshape(g.shape[: g.ndim - out_rank] + _reduced(shape, axes, True))
    return D.mul(g, share)


def _mp_extreme_form(M: Any, x: Any, shape: Shape, axis: Any, keepdims: bool, top: bool) -> Any:
    return _objects_reduce(x, shape, axis, keepdims, lambda items: _mp_extreme(M, items, max if top else min))


# --- vector-Jacobian rules (see Op.vjp) -------------------------------------------------


def _list(values: Any) -> str:
    return "[" + ", ".join(map(str, values)) + "]"


def _axis_text(shape: Shape, axes: tuple[int, ...]) -> str:
    """``axis=...`` for the reduced ``axes`` of a value of ``shape`` ('' for all of them)."""
    if axes == tuple(range(len(shape))):
        return ""
    return f", axis={axes[0] if len(axes) == 1 else _list(axes)}"


def _kept(name: str, shape: Shape, axis: Any, keepdims: bool) -> str:
    """``name`` (a reduction's result or cotangent) as it broadcasts against the reduced value.

    With ``keepdims``, or when the reduced axes lead, it broadcasts as it is;
    otherwise it is reshaped to the kept shape (a size-1 axis for each reduced one).
    """
    axes = axes_of(shape, axis)
    if keepdims or axes == tuple(range(len(axes))):
        return name
    return f"reshape({name}, {_list(_reduced(shape, axes, True))})"


def _spread(text: str, shape: Shape, out: Shape) -> str:
    """``text`` broadcast to ``shape`` (unless it has that shape: the result's shape ``out`` is the reduced one)."""
    return text if out == shape else f"expand({text}, {_list(shape)})"


def _sum_vjp(shapes: list[Shape], out: Shape, axis: Any = None, keepdims: bool = False) -> tuple[str]:
    return (_spread(_kept("g", shapes[0], axis, keepdims), shapes[0], out),)


def _mean_vjp(shapes: list[Shape], out: Shape, axis: Any = None, keepdims: bool = False) -> tuple[str]:
    return (f"{_spread(_kept('g', shapes[0], axis, keepdims), shapes[0], out)} / {_count(shapes[0], axis)}",)


def _var_vjp(shapes: list[Shape], out: Shape, axis: Any = None, keepdims: bool = False) -> tuple[str]:
    shape = shapes[0]
    if not shape:
        return ("0",)
    axes = axes_of(shape, axis)
    mean = "mean(a)" if axes == tuple(range(len(shape))) else f"mean(a{_axis_text(shape, axes)}, keepdims=True)"
    return (f"2 * {_kept('g', shape, axis, keepdims)} * (a - {mean}) / {_count(shape, axis)}",)


def _norm_vjp(shapes: list[Shape], out: Shape, axis: Any = None, keepdims: bool = False) -> tuple[str]:
    return (f"{_kept('g', shapes[0], axis, keepdims)} * a / {_kept('out', shapes[0], axis, keepdims)}",)


def _logsumexp_vjp(shapes: list[Shape], out: Shape, axis: Any = None, keepdims: bool = False) -> tuple[str]:
    return (f"{_kept('g', shapes[0], axis, keepdims)} * exp(a - {_kept('out', shapes[0], axis, keepdims)})",)


def _along(shape: Shape, axis: int) -> str:
    """``, axis=k, keepdims=True`` for a sum along one axis that broadcasts back ('' for a vector)."""
    return "" if len(shape) == 1 else f", axis={axis}, keepdims=True"


def _softmax_vjp(shapes: list[Shape], out: Shape, axis: int = -1) -> tuple[str]:
    return (f"out * (g - sum(g * out{_along(shapes[0], axis)}))",)


def _log_softmax_vjp(shapes: list[Shape], out: Shape, axis: int = -1) -> tuple[str]:
    return (f"g - exp(out) * sum(g{_along(shapes[0], axis)})",)


def _extreme_vjp(shape: Shape, axis: Any, keepdims: bool, compare: str) -> tuple[str]:
    """The gradient goes to the extreme element, split evenly among ties (torch's ``amax``)."""
    axes = axes_of(shape, axis)
    hit = f"(a {compare} {_kept('out', shape, axis, keepdims)})"
    count = (
        f"sum({hit[1:-1]})" if len(axes) == len(shape) else f"sum({hit[1:-1]}{_axis_text(shape, axes)}, keepdims=True)"
    )
    return (f"{_kept('g', shape, axis, keepdims)} * {hit} / {count}",)


def _amax_vjp(shapes: list[Shape], out: Shape, axis: Any = None, keepdims: bool = False) -> tuple[str]:
    return _extreme_vjp(shapes[0], axis, keepdims, ">=")


def _amin_vjp(shapes: list[Shape], out: Shape, axis: Any = None, keepdims: bool = False) -> tuple[str]:
    return _extreme_vjp(shapes[0], axis, keepdims, "<=")


def _dd_sum(D: Any, x: Any, shape: Shape, axis: Any = None, keepdims: bool = False) -> Any:
    """The double-double sum over the per-sample ``axis`` (counted from the end: batch axes stay)."""
    return D.total(x, [a - len(shape) for a in axes_of(shape, axis)], keepdims)


def _dd_shifted(D: Any, x: Any, axes: list[int]) -> tuple[Any, Any]:
    """``x`` minus its largest element over ``axes`` (float64, kept as unit axes), and that shift."""
    import numpy as np

    x = D.lift(x)
    top = np.max(x.hi, axis=tuple(axes), keepdims=True)
    return D.sub(x, top), top


def _dd_softmax(D: Any, x: Any, shape: Shape, axis: int, log: bool = False) -> Any:
    """Double-double softmax (or its log) along one per-sample axis, shifted by the maximum as NumPy's form is."""
    a = axis % len(shape) - len(shape)
    shifted, _ = _dd_shifted(D, x, [a])
    ex = D.exp(shifted)
    total = D.total(ex, [a], keepdims=True)
    return D.sub(shifted, D.log(total)) if log else D.div(ex, total)


def _dd_logsumexp(D: Any, x: Any, shape: Shape, axis: Any = None, keepdims: bool = False) -> Any:
    axes = [a - len(shape) for a in axes_of(shape, axis)]
    shifted, top = _dd_shifted(D, x, axes)
    out = D.add(D.log(D.total(D.exp(shifted), axes, keepdims=True)), top)
    if keepdims:
        return out
    lead = out.ndim - len(shape)
    return out.reshape(out.shape[:lead] + tuple(n for i, n in enumerate(shape) if i - len(shape) not in axes))


# Reductions and vector functions.
structural(
    "sum", 1,
    lambda N, args, shapes, **k: _rsum(N, args[0], shapes[0], **k),
    lambda T, args, shapes, **k: _rsum(T, args[0], shapes[0], **k),
    lambda S, args, shapes, **k: _sympy_sum(S, args[0], shapes[0], **k),
    lambda M, args, shapes, **k: _mp_rsum(M, args[0], shapes[0], **k),
    _reduce_shape, "sum of the elements (over `axis`, default all)", incremental=inc.changed_sum, attrs=REDUCE, vjp=_sum_vjp,
    dd=lambda D, args, shapes, **k: _dd_sum(D, args[0], shapes[0], **k),
)  # fmt: skip
structural(
    "mean", 1,
    lambda N, args, shapes, **k: _mean(N, args[0], shapes[0], **k),
    lambda T, args, shapes, **k: _mean(T, args[0], shapes[0], **k),
    lambda S, args, shapes, **k: _object(_sympy_sum(S, args[0], shapes[0], **k) / S.Integer(_count(shapes[0], k["axis"]))),
    lambda M, args, shapes, **k: _mp(M, operator.truediv, _mp_rsum(M, args[0], shapes[0], **k), M.mpf(_count(shapes[0], k["axis"]))),
    _nonempty_shape, "mean of the elements (over `axis`, default all)", incremental=inc.changed_mean, attrs=REDUCE, vjp=_mean_vjp,
    dd=lambda D, args, shapes, **k: D.div(_dd_sum(D, args[0], shapes[0], **k), float(_count(shapes[0], k["axis"]))),
)  # fmt: skip
structural(
    "var", 1,
    lambda N, args, shapes, **k: _var(N, args[0], shapes[0], **k),
    lambda T, args, shapes, **k: _var(T, args[0], shapes[0], **k),
    lambda S, args, shapes, **k: _sympy_var(S, args[0], shapes[0], **k),
    lambda M, args, shapes, **k: _mp_var(M, args[0], shapes[0], **k),
    _nonempty_shape, "population variance mean((v - mean(v))**2), as `numpy.var` (over `axis`, default all)",
    incremental=DENSE, attrs=REDUCE, vjp=_var_vjp,
)  # fmt: skip
structural(
    "dot", 2,
    lambda N, args, shapes: _sum(N, args[0] * args[1], 1),
    lambda T, args, shapes: _sum(T, args[0] * args[1], 1),
    lambda S, args, shapes: _object(_sum(S, args[0] * args[1], 1)),
    lambda M, args, shapes: _mp_sum(_mp(M, operator.mul, args[0], args[1]), 1),
    _dot_shape, "dot product of two vectors of one length", incremental=inc.dot, vjp=("g * b", "g * a"),
    dd=lambda D, args, shapes: D.einsum("...i,...i->...", args[0], args[1]),
)  # fmt: skip
structural(
    "norm", 1,
    lambda N, args, shapes, **k: _norm(N, args[0], shapes[0], **k),
    lambda T, args, shapes, **k: _norm(T, args[0], shapes[0], **k),
    lambda S, args, shapes, **k: _each(S.sqrt, _sympy_sum(S, args[0] * args[0], shapes[0], **k)),
    lambda M, args, shapes, **k: _mp(M, M.sqrt, _mp_rsum(M, _mp(M, operator.mul, args[0], args[0]), shapes[0], **k)),
    _reduce_shape, "Euclidean norm sqrt(sum(v**2)) (over `axis`, default all)", incremental=DENSE, attrs=REDUCE, vjp=_norm_vjp,
)  # fmt: skip
structural(
    "logsumexp", 1,
    lambda N, args, shapes, **k: _rlogsumexp(N, args[0], shapes[0], **k),
    lambda T, args, shapes, **k: _rlogsumexp(T, args[0], shapes[0], **k),
    lambda S, args, shapes, **k: _rlogsumexp(S, args[0], shapes[0], **k),
    lambda M, args, shapes, **k: _mp_logsumexp(M, args[0], shapes[0], **k),
    _nonempty_shape, "log(sum(exp(v))), computed without overflow (over `axis`, default all)",
    incremental=DENSE, attrs=REDUCE, vjp=_logsumexp_vjp,
    dd=lambda D, args, shapes, **k: _dd_logsumexp(D, args[0], shapes[0], **k),
)  # fmt: skip
structural(
    "softmax", 1,
    lambda N, args, shapes, axis: _softmax(N, args[0], shapes[0], axis),
    lambda T, args, shapes, axis: _softmax(T, args[0], shapes[0], axis),
    lambda S, args, shapes, axis: _softmax(S, args[0], shapes[0], axis),
    lambda M, args, shapes, axis: _mp_softmax(M, args[0], shapes[0], axis),
    _along_shape, "exp(v) / sum(exp(v)) along `axis` (default the last)", incremental=DENSE, attrs=(ONE_AXIS,), vjp=_softmax_vjp,
    dd=lambda D, args, shapes, axis: _dd_softmax(D, args[0], shapes[0], axis),
)  # fmt: skip
structural(
    "log_softmax", 1,
    lambda N, args, shapes, axis: _softmax(N, args[0], shapes[0], axis, log=True),
    lambda T, args, shapes, axis: _softmax(T, args[0], shapes[0], axis, log=True),
    lambda S, args, shapes, axis: _softmax(S, args[0], shapes[0], axis, log=True),
    lambda M, args, shapes, axis: _mp_softmax(M, args[0], shapes[0], axis, log=True),
    _along_shape, "v - logsumexp(v) along `axis` (default the last), computed without overflow",
    incremental=DENSE, attrs=(ONE_AXIS,), vjp=_log_softmax_vjp,
    dd=lambda D, args, shapes, axis: _dd_softmax(D, args[0], shapes[0], axis, log=True),
)  # fmt: skip
for _name, _top in (("amax", True), ("amin", False)):
    _word = "largest" if _top else "smallest"
    structural(
        _name, 1,
        lambda N, args, shapes, _t=_top, **k: _extreme(N, args[0], shapes[0], top=_t, **k),
        lambda T, args, shapes, _t=_top, **k: _extreme(T, args[0], shapes[0], top=_t, **k),
        lambda S, args, shapes, _t=_top, **k: _sympy_extreme(S, args[0], shapes[0], top=_t, **k),
        lambda M, args, shapes, _t=_top, **k: _mp_extreme_form(M, args[0], shapes[0], top=_t, **k),
        _nonempty_shape, f"the {_word} element (over `axis`, default all); `{_name[1:]}(a, b)` is elementwise",
        incremental=DENSE, attrs=REDUCE, spelling=_name[1:],
        kink=lambda N, args, shapes, _t=_top, **k: _extreme_kink(N, args, shapes, top=_t, **k),
        kink_doc=f"where the two {_word} elements tie",
        convention=(
            f"at a tie of the two {_word} elements autograd (torch.a{_name[1:]}) and symbolic (SymPy's "
            f"{'Max' if _top else 'Min'}) give each half the gradient; at ties of three or more torch gives "
            "each 1/k, SymPy each 1/2"
        ),
        analytic=False, vjp=_amax_vjp if _top else _amin_vjp,
        dd_vjp=lambda D, args, g, shapes, _t=_top, **k: _dd_extreme_vjp(D, args[0], g, shapes[0], top=_t, **k),
    )  # fmt: skip
