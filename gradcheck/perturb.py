"""Many one-element perturbations of a parameter, evaluated at once, incrementally.

A finite difference moves one element of one parameter. Recomputing the
whole model for each of ``M`` such perturbations costs ``M`` model
evaluations: (parameters)² for a check of every element. Yet moving
``W1[i, j]`` changes only ``(W1 @ x)[i]``, then ``tanh(...)[i]``, and the
loss. This module evaluates the model once, unperturbed, and carries each
perturbation as the one position it changes:

* :class:`Sparse`: a value equal to ``base`` except at one flat position per
  perturbation row (``pos[m]``), where it is ``vals[m]``;
* a *batched* array: a plain array with a leading axis of perturbation rows
  (after a reduction, or where no rule applies);
* a plain array: a value the perturbed parameter does not reach.

Elementwise ops apply their NumPy form from the op table to the changed
values only. A few structural ops have rules below (``@`` with a vector,
``sum``, ``mean``, ``dot``, ``.T``, indexing). Every other op, and every
case a rule does not cover (a scalar broadcast against a vector, a
matrix-matrix product), falls back to the plain evaluation of the batch
(:func:`densify`): correct, just not cheaper. So a new op needs no rule.

The results equal the plain batched evaluation up to rounding (the changed
sums are formed as ``base + (new - old)``), which ``tests/test_perturb.py``
checks on every example and on random models.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from . import interp
from .expr import Node
from .model import Model
from .ops import OPS, align


@dataclass
class Sparse:
    """``base`` with one position changed per perturbation row.

    ``base`` has the value's batch axes (samples, or none) then its
    per-sample shape ``shape``; ``pos`` is ``(M,)`` flat positions into
    ``shape``; ``vals`` is ``(M,)`` or ``(M, samples)``.
    """

    base: np.ndarray
    shape: tuple[int, ...]
    pos: np.ndarray
    vals: np.ndarray

    def old(self) -> np.ndarray:
        """The unperturbed values at ``pos``."""
        return _gather(self.base, self.shape, self.pos)


@dataclass
class Batched:
    """A plain array with a leading axis of perturbation rows, then the sample axis (if any)."""

    array: np.ndarray


Value = Any
Rule = Callable[[Node, list[Value], Any, "_Context"], Value]


class TooDense(Exception):
    """Falling back to the plain evaluation would hold more values than allowed at once."""


@dataclass
class _Context:
    rows: int
    samples: bool  # the model has data: batched arrays keep a sample axis (of 1 or N)
    max_values: int | None = None
    flips: np.ndarray | None = None  # per row: a kinked function crossed its kink (when tracked)

    def crossed(self, node: Node, new: list[Any], old: list[Any]) -> None:
        """Mark rows where ``node``'s kink quantity changes sign from a nonzero unperturbed sign.

        ``new`` are the operands per row (``(M, ...)``), ``old`` the unperturbed
        operands, broadcastable against them.
        """
        kink = OPS[node.op].kink
        if self.flips is None or kink is None:
            return
        before = np.sign(np.asarray(kink(np, *old)))
        after = np.sign(np.asarray(kink(np, *new)))
        before, after = np.broadcast_arrays(before, after)
        moved = (before != 0) & (after != before)
        self.flips |= moved.reshape(self.rows, -1).any(axis=1) if moved.ndim else bool(moved)

    def batched(self, arr: Any, shape: tuple[int, ...]) -> Batched:
        """``(M,) [+ samples] + shape``, with a unit sample axis where the model has data."""
        arr = np.asarray(arr)
        if self.samples and arr.ndim == 1 + len(shape):
            arr = arr.reshape(arr.shape[:1] + (1,) + arr.shape[1:])
        return Batched(arr)


def _gather(arr: Any, shape: tuple[int, ...], pos: np.ndarray) -> np.ndarray:
    """``arr`` (batch + ``shape``) at flat per-sample positions ``pos``: ``(M,) + batch``."""
    arr = np.asarray(arr)
    batch = tuple(arr.shape[: arr.ndim - len(shape)])
    flat = np.broadcast_to(arr, batch + shape).reshape(batch + (-1,))
    return np.moveaxis(flat[..., pos], -1, 0)


def _pair(*parts: Any) -> list[Any]:
    """Line up ``(M,)`` and ``(M, samples)`` arrays (Python numbers pass through)."""
    width = max((p.ndim for p in parts if isinstance(p, np.ndarray)), default=0)
    return [p.reshape(p.shape + (1,) * (width - p.ndim)) if isinstance(p, np.ndarray) and p.ndim else p for p in parts]


def densify(value: Sparse, ctx: _Context) -> np.ndarray:
    """The plain batched array ``(M,) [+ samples] + shape`` of a :class:`Sparse` value."""
    base = np.asarray(value.base)
    batch = tuple(base.shape[: base.ndim - len(value.shape)])
    vals = np.asarray(value.vals)
    full_batch = tuple(np.broadcast_shapes(batch, vals.shape[1:]))
    if ctx.samples and not full_batch:
        full_batch = (1,)
    size = int(np.prod(value.shape, dtype=np.int64))
    if ctx.max_values is not None and ctx.rows * size * int(np.prod(full_batch, dtype=np.int64)) > ctx.max_values:
        raise TooDense
    full = np.broadcast_to(base, full_batch + value.shape).reshape(full_batch + (size,))
    full = np.broadcast_to(full, (ctx.rows,) + full.shape).astype(np.result_type(base, vals))
    index = np.broadcast_to(value.pos.reshape((-1,) + (1,) * (len(full_batch) + 1)), full.shape[:-1] + (1,))
    vals = vals.reshape(vals.shape + (1,) * (1 + len(full_batch) - vals.ndim))
    np.put_along_axis(full, index, np.broadcast_to(vals, full.shape[:-1])[..., None], axis=-1)
    return full.reshape((ctx.rows,) + full_batch + value.shape)


def _elementwise(node: Node, args: list[Value], base: Any, ctx: _Context) -> Value:
    """The op on the changed positions only, when every perturbed operand changes the same one."""
    shape = tuple(node.shape)
    sparse = [a for a in args if isinstance(a, Sparse)]
    if any(a.shape != shape for a in sparse):
        return None
    pos = sparse[0].pos
    if any(a.pos is not pos and not np.array_equal(a.pos, pos) for a in sparse[1:]):
        return None
    parts, olds = [], []
    for a, n in zip(args, node.args):
        if isinstance(a, Sparse):
            parts.append(a.vals)
            olds.append(a.old())
        elif isinstance(a, np.ndarray) and a.ndim:
            aligned = np.asarray(align(a, len(n.shape), len(shape)))
            batch = tuple(aligned.shape[: aligned.ndim - len(shape)])
            parts.append(
                _gather(
                    np.broadcast_to(aligned, batch + tuple(np.broadcast_shapes(aligned.shape[len(batch) :], shape))),
                    shape,
                    pos,
                )
            )
            olds.append(parts[-1])
        else:
            parts.append(a)
            olds.append(a)
    parts = _pair(*parts)
    ctx.crossed(node, parts, _pair(*olds))
    vals = OPS[node.op].numpy(np, *parts)
    return Sparse(np.asarray(base), shape, pos, np.asarray(vals))


def _changed_sum(node: Node, args: list[Value], base: Any, ctx: _Context) -> Value:
    """``sum``/``mean`` of a perturbed value: the old total plus the one change."""
    (a,) = args
    total = np.asarray(base)
    change = a.vals - a.old()
    if node.op == "mean":
        change = change / max(1, int(np.prod(a.shape, dtype=np.int64)))
    return _plus(total, change, ctx)


def _dot(node: Node, args: list[Value], base: Any, ctx: _Context) -> Value:
    """``dot`` of a perturbed vector with an unperturbed one: the old dot plus change times factor."""
    a, b = args
    if isinstance(a, Sparse) == isinstance(b, Sparse):
        return None
    moved, other = (a, b) if isinstance(a, Sparse) else (b, a)
    total = np.asarray(base)
    change, factor = _pair(moved.vals - moved.old(), _gather(other, moved.shape, moved.pos))
    return _plus(total, change * factor, ctx)


def _matmul(node: Node, args: list[Value], base: Any, ctx: _Context) -> Value:
    """``W @ x`` or ``x @ W`` with the matrix perturbed and the vector not: one output changes."""
    a, b = args
    ra, rb = len(node.args[0].shape), len(node.args[1].shape)
    if isinstance(a, Sparse) and not isinstance(b, Sparse) and (ra, rb) == (2, 1):
        moved, cols = a, a.shape[1]
        out_pos, factor = a.pos // cols, _gather(b, (cols,), a.pos % cols)
    elif isinstance(b, Sparse) and not isinstance(a, Sparse) and (ra, rb) == (1, 2):
        moved, cols = b, b.shape[1]
        out_pos, factor = b.pos % cols, _gather(a, (b.shape[0],), b.pos // cols)
    else:
        return None
    base = np.asarray(base)
    old_out, change, factor = _pair(_gather(base, tuple(node.shape), out_pos), moved.vals - moved.old(), factor)
    return Sparse(base, tuple(node.shape), out_pos, old_out + change * factor)


def _transpose(node: Node, args: list[Value], base: Any, ctx: _Context) -> Value:
    (a,) = args
    base = np.asarray(base)
    if len(a.shape) < 2:
        return Sparse(base, a.shape, a.pos, a.vals)
    rows, cols = a.shape
    return Sparse(base, tuple(node.shape), (a.pos % cols) * rows + a.pos // cols, a.vals)


def _index(node: Node, args: list[Value], base: Any, ctx: _Context) -> Value:
    """``v[i]``: rows whose change falls inside the selected block keep it, the others read the old value."""
    (a,) = args
    base = np.asarray(base)
    index = tuple(int(i) % s for i, s in zip(node.value, a.shape))  # type: ignore[call-overload]
    rest = a.shape[len(index) :]
    size = int(np.prod(rest, dtype=np.int64))
    start = int(np.ravel_multi_index(index + (0,) * len(rest), a.shape))
    inside = (a.pos >= start) & (a.pos < start + size)
    pos = np.where(inside, a.pos - start, 0)
    vals, unchanged = _pair(a.vals, _gather(base, rest, pos))
    mask = inside.reshape((-1,) + (1,) * (vals.ndim - 1))
    return Sparse(base, rest, pos, np.where(mask, vals, unchanged))


def _plus(total: np.ndarray, change: np.ndarray, ctx: _Context) -> Batched:
    """A reduction's old ``total`` (batch) plus each row's ``change``: a scalar per sample, batched."""
    total, change = _pair(np.asarray(total)[None, ...] if np.ndim(total) else np.asarray(total), change)
    return ctx.batched(total + change, ())


#: Incremental rules for structural ops (elementwise ops share one); every other
#: op, and every case a rule declines (returns ``None``), is evaluated plainly.
RULES: dict[str, Rule] = {
    "matmul": _matmul,
    "sum": _changed_sum,
    "mean": _changed_sum,
    "dot": _dot,
    "T": _transpose,
    "index": _index,
}


def per_sample(
    model: Model,
    params: Mapping[str, np.ndarray],
    name: str,
    idx: np.ndarray,
    vals: np.ndarray,
    dtype: str,
    *,
    max_values: int | None = None,
) -> np.ndarray:
    """Per-sample losses ``(M,) [+ samples]`` with flat element ``idx[m]`` of ``name`` set to ``vals[m]``.

    ``params`` are already in the evaluation dtype; ``vals`` may be complex
    (the complex step). Raises :class:`TooDense` when a plain fallback would
    hold more than ``max_values`` values (evaluate fewer rows at a time then).
    """
    return _evaluate(model, params, name, idx, vals, dtype, _Context(int(idx.shape[0]), bool(model.data), max_values))


def crossings(
    model: Model,
    params: Mapping[str, np.ndarray],
    name: str,
    idx: np.ndarray,
    vals: np.ndarray,
    dtype: str,
    *,
    max_values: int | None = None,
) -> np.ndarray:
    """Per row, whether the perturbation moves some kinked function across its kink.

    A kinked function (``Op.kink`` in the op table) crosses when its kink
    quantity's sign at the perturbed point differs from a nonzero sign at the
    unperturbed point, for any sample and element. Same evaluation and
    :class:`TooDense` rule as :func:`per_sample`.
    """
    ctx = _Context(int(idx.shape[0]), bool(model.data), max_values, np.zeros(int(idx.shape[0]), dtype=bool))
    _evaluate(model, params, name, idx, vals, dtype, ctx)
    assert ctx.flips is not None
    return ctx.flips


def _evaluate(
    model: Model,
    params: Mapping[str, np.ndarray],
    name: str,
    idx: np.ndarray,
    vals: np.ndarray,
    dtype: str,
    ctx: _Context,
) -> np.ndarray:
    bases: dict[str, Any] = dict(params)
    for k, v in model.data.items():
        bases[k] = v.astype(np.dtype(dtype))
    env: dict[str, Value] = dict(bases)
    env[name] = Sparse(np.asarray(params[name]), model.params[name].shape, idx, vals)

    def plain(value: Value, shape: tuple[int, ...]) -> Any:
        if isinstance(value, Sparse):
            return densify(value, ctx)
        return value.array if isinstance(value, Batched) else value

    def run(node: Node) -> tuple[Value, Any]:
        if node.op == "num":
            v = interp.number(node, "numpy", np)
            return v, v
        if node.op == "name":
            key = str(node.value)
            if key in env:
                return env[key], bases[key]
            v = interp.constant(key, "numpy", np)
            return v, v
        done = [run(a) for a in node.args]
        args, base_args = [d[0] for d in done], [d[1] for d in done]
        base = interp.apply(node, base_args, "numpy", np)
        if not any(isinstance(a, (Sparse, Batched)) for a in args):
            return base, base
        out = None
        if not any(isinstance(a, Batched) for a in args):
            rule = _elementwise if OPS[node.op].kind == "elementwise" else RULES.get(node.op)
            out = rule(node, args, base, ctx) if rule is not None else None
        if out is None:
            dense = [plain(a, n.shape) for a, n in zip(args, node.args)]
            if ctx.flips is not None and OPS[node.op].kink is not None:
                rank = len(node.shape)
                ctx.crossed(
                    node,
                    [align(a, len(n.shape), rank) for a, n in zip(dense, node.args)],
                    [align(a, len(n.shape), rank) for a, n in zip(base_args, node.args)],
                )
            out = ctx.batched(interp.apply(node, dense, "numpy", np), tuple(node.shape))
        return out, base

    with np.errstate(all="ignore"):
        for key, node in model.entries.items():
            env[key], bases[key] = run(node)
            if key == model.loss:
                break
        loss = env[model.loss]
        if isinstance(loss, Sparse):
            return densify(loss, ctx)
        return np.asarray(loss.array if isinstance(loss, Batched) else loss)
