"""The incremental (perturbation) rules of the op table, and the values they work on.

A finite difference moves one element of one parameter; :mod:`gradcheck.perturb`
carries each such perturbation through the model as the one position it
changes. The values (:class:`Sparse`, :class:`Batched`), the context and the
rules live here so that each op entry in :mod:`gradcheck.ops` can hold its own
rule (``Op.incremental``) while this module imports nothing that imports the
op table (no import cycle: ``ops -> incremental -> layout``).

A rule is ``rule(op, node, args, base, ctx)``: ``op`` is the op's entry,
``node`` the IR node (its ``attrs`` and operand shapes), ``args`` the
operands (:class:`Sparse` or plain, never :class:`Batched`; :class:`Block`
only for a rule marked :func:`takes_blocks`), ``base`` the unperturbed
result. It returns the perturbed value, or ``None`` to decline:
the caller then evaluates the op plainly on the densified batch (correct,
just not cheaper). A rule must decline every case it does not handle,
attributes included, so it can never be silently wrong.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from .layout import align

Value = Any
Rule = Callable[[Any, Any, list[Value], Any, "Context"], Value]


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
        return gather(self.base, self.shape, self.pos)


@dataclass
class Block:
    """``base`` with one slice along one per-sample axis changed per perturbation row.

    Row ``m`` equals ``base`` except at index ``pos[m]`` of per-sample axis
    ``axis``, where it is ``vals[m]``. ``base`` has the value's batch axes
    (samples, or none) then ``shape``; ``vals`` is ``(M,)`` then the sample
    axis (of 1 or N) wherever the model has data, then ``shape`` without
    ``axis`` (any of those axes may be 1 where the slice is the same along
    it). A kernel element ``k[o, c, i, j]`` moves output channel ``o`` of a
    convolution, ``W[i, j]`` moves column ``j`` of ``X @ W``: elementwise ops
    then work on the slice only, and reductions add its change.
    """

    base: np.ndarray
    shape: tuple[int, ...]
    axis: int
    pos: np.ndarray
    vals: np.ndarray


@dataclass
class Batched:
    """A plain array with a leading axis of perturbation rows, then the sample axis (if any)."""

    array: np.ndarray


class TooDense(Exception):
    """Falling back to the plain evaluation would hold more values than allowed at once."""


@dataclass
class Context:
    rows: int
    samples: bool  # the model has data: batched arrays keep a sample axis (of 1 or N)
    max_values: int | None = None
    flips: np.ndarray | None = None  # per row: a kinked function crossed its kink (when tracked)
    widest: int = 0  # the most values one row held in one value (see held)
    values: bool = True  # the op's perturbed value is looked at (tracking crossings, a kinked op's may not be)

    def held(self, value: Any) -> None:
        """Note how many values per row ``value`` holds (:attr:`widest`)."""
        arr = value.vals if isinstance(value, (Sparse, Block)) else value.array if isinstance(value, Batched) else None
        if arr is not None and self.rows:
            self.widest = max(self.widest, int(np.size(arr)) // self.rows)

    def crossed(self, kink: Callable[..., Any] | None, new: list[Any], old: list[Any]) -> None:
        """Mark rows where the kink quantity ``kink`` changes sign from a nonzero unperturbed sign.

        ``new`` are the operands per row (``(M, ...)``), ``old`` the unperturbed
        operands, broadcastable against them.
        """
        if self.flips is None or kink is None:
            return
        self.sides_moved(sides(kink(np, *old)), kink(np, *new))

    def sides_moved(self, before: Any, after: Any) -> None:
        """Mark rows where the kink quantity ``after`` leaves the side ``before`` (:func:`sides`, nonzero).

        ``before`` and ``after`` broadcast, rows first. A quantity on the kink
        (0) or nan has left every side; a nan side ``before`` is left by every
        quantity (as ``sign(after) != sign(before)`` of floats says).
        """
        if self.flips is None:
            return
        after = np.asarray(after)
        if np.iscomplexobj(after):
            now = np.sign(after)
            before = np.where(before == 2, np.nan, before)
        else:
            now = np.asarray(after > 0).view(np.int8) - np.asarray(after < 0).view(np.int8)  # nan: 0
        before, now = np.broadcast_arrays(before, now)
        moved = (before != 0) & (now != before)
        self.flips |= moved.reshape(self.rows, -1).any(axis=1) if moved.ndim else bool(moved)

    def batched(self, arr: Any, shape: tuple[int, ...]) -> Batched:
        """``(M,) [+ samples] + shape``, with a unit sample axis where the model has data."""
        arr = np.asarray(arr)
        if self.samples and arr.ndim == 1 + len(shape):
            arr = arr.reshape(arr.shape[:1] + (1,) + arr.shape[1:])
        return Batched(arr)


def sides(q: Any) -> np.ndarray:
    """The side of its kink each kink quantity is on, as int8: 1 above, -1 below, 0 on it, 2 for nan."""
    q = np.asarray(q)
    if np.iscomplexobj(q):
        return np.sign(q)  # type: ignore[no-any-return]
    out = np.asarray(np.asarray(q > 0).view(np.int8) - np.asarray(q < 0).view(np.int8))
    if q.dtype.kind == "f":
        out[np.isnan(q)] = 2
    return out


def gather(arr: Any, shape: tuple[int, ...], pos: np.ndarray) -> np.ndarray:
    """``arr`` (batch + ``shape``) at flat per-sample positions ``pos``: ``(M,) + batch``."""
    arr = np.asarray(arr)
    batch = tuple(arr.shape[: max(0, arr.ndim - len(shape))])  # a lower-rank arr broadcasts
    flat = np.broadcast_to(arr, batch + shape).reshape(batch + (-1,))
    return np.moveaxis(flat[..., pos], -1, 0)


def _pair(*parts: Any) -> list[Any]:
    """Line up ``(M,)`` and ``(M, samples)`` arrays (Python numbers pass through)."""
    width = max((p.ndim for p in parts if isinstance(p, np.ndarray)), default=0)
    return [p.reshape(p.shape + (1,) * (width - p.ndim)) if isinstance(p, np.ndarray) and p.ndim else p for p in parts]


def densify(value: Any, ctx: Context) -> np.ndarray:
    """The plain batched array ``(M,) [+ samples] + shape`` of a :class:`Sparse` or :class:`Block` value.

    A :class:`Batched` value gives its array.
    """
    if isinstance(value, Batched):
        return value.array
    if isinstance(value, Block):
        return _densify_block(value, ctx)
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


def _densify_block(value: Block, ctx: Context) -> np.ndarray:
    base = np.asarray(value.base)
    vals = np.asarray(value.vals)
    nb = 1 if ctx.samples else 0
    batch = tuple(base.shape[: base.ndim - len(value.shape)])
    full_batch = tuple(np.broadcast_shapes(batch, vals.shape[1 : 1 + nb]))
    size = int(np.prod(value.shape, dtype=np.int64))
    if ctx.max_values is not None and ctx.rows * size * int(np.prod(full_batch, dtype=np.int64)) > ctx.max_values:
        raise TooDense
    full = np.broadcast_to(base, (ctx.rows,) + full_batch + value.shape).astype(np.result_type(base, vals))
    view = np.moveaxis(full, 1 + nb + value.axis, 1)  # (M, axis) + batch + rest
    view[np.arange(ctx.rows), value.pos] = np.broadcast_to(vals, (ctx.rows,) + view.shape[2:])
    return full


def _slab(arr: Any, rank: int, out_rank: int, axis: int, pos: np.ndarray, ctx: Context) -> Any:
    """A plain operand's slices at ``pos`` along ``axis`` of the output: ``(M or 1,) [+ samples] + rest``.

    ``arr`` is batch axes then a per-sample shape of rank ``rank`` that
    broadcasts against the output's (rank ``out_rank``); ``rest`` is that
    shape, aligned, without ``axis`` (1 where it broadcasts). Python numbers
    pass through.
    """
    if not isinstance(arr, np.ndarray) or arr.ndim == 0:
        return arr
    nb = arr.ndim - rank
    a = arr.reshape(arr.shape[:nb] + (1,) * (out_rank - rank) + arr.shape[nb:])
    if a.shape[nb + axis] == 1:
        s = np.take(a, 0, axis=nb + axis)[None]
    else:
        s = np.moveaxis(a, nb + axis, 0)
        if pos.size >= s.shape[0]:
            s = np.ascontiguousarray(s)  # every slice at least once: each row's slice then one copy
        s = s[pos]
    if ctx.samples and nb == 0:
        s = s[:, None]
    return s


def old_slices(value: Block, ctx: Context) -> np.ndarray:
    """The unperturbed slices of a :class:`Block`: ``(M,) [+ samples] + rest``."""
    out = _slab(np.asarray(value.base), len(value.shape), len(value.shape), value.axis, value.pos, ctx)
    return np.broadcast_to(out, (ctx.rows,) + out.shape[1:])


def _block(base: Any, shape: tuple[int, ...], axis: int, pos: np.ndarray, vals: Any, ctx: Context) -> Block:
    """A :class:`Block` whose ``vals`` hold every row, the sample axis where the model has data, and the slice.

    ``vals`` come with every row; slice axes of 1 are broadcast to the slice
    (a view), so every rule may take a block's ``vals`` as whole slices.
    """
    vals = np.asarray(vals)
    lead = 1 + (1 if ctx.samples else 0)
    rest = shape[:axis] + shape[axis + 1 :]
    return Block(np.asarray(base), shape, axis, pos, np.broadcast_to(vals, vals.shape[:lead] + rest))


def takes_blocks(rule: Rule) -> Rule:
    """Mark a rule that handles :class:`Block` operands (the others get them densified)."""
    setattr(rule, "blocks", True)  # noqa: B010
    return rule


# --- the rules --------------------------------------------------------------


@takes_blocks
def elementwise(op: Any, node: Any, args: list[Value], base: Any, ctx: Context) -> Value:
    """Any elementwise op on the changed positions only, when every perturbed operand changes the same one.

    Uses the op's own NumPy form (with the node's attributes), so it holds for
    every elementwise op, registered ones included. :class:`Block` operands
    (all changing the same slice) give a :class:`Block`: the op on the slices;
    so does a perturbed operand that broadcasts along every axis but one (a
    bias ``b`` in ``X @ W + b``: ``b[j]`` moves column ``j``).
    """
    shape = tuple(node.shape)
    if any(isinstance(a, Block) for a in args):
        return _elementwise_blocks(op, node, args, base, ctx)
    sparse = [a for a in args if isinstance(a, Sparse)]
    if any(a.shape != shape for a in sparse):
        spread = [_spread(a, shape, ctx) if isinstance(a, Sparse) else a for a in args]
        if any(b is None for b in spread):
            return None
        return _elementwise_blocks(op, node, spread, base, ctx)
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
            batch = tuple(aligned.shape[: max(0, aligned.ndim - len(shape))])  # none when lower rank
            parts.append(
                gather(
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
    ctx.crossed(op.kink, parts, _pair(*olds))
    vals = op.numpy(np, *parts, **op.bind(node.attrs))
    return Sparse(np.asarray(base), shape, pos, np.asarray(vals))


def _spread(a: Sparse, shape: tuple[int, ...], ctx: Context) -> Block | None:
    """A :class:`Sparse` operand that broadcasts along every axis of ``shape`` but one, as a :class:`Block`.

    Its element ``pos`` moves the whole slice ``pos`` along that axis of the
    result; ``None`` where it does not have that form.
    """
    rank = len(shape)
    aligned = (1,) * (rank - len(a.shape)) + tuple(a.shape)
    axes = [i for i, n in enumerate(aligned) if n != 1]
    if len(axes) != 1 or len(a.shape) > rank or aligned[axes[0]] != shape[axes[0]]:
        return None
    base = np.asarray(a.base)
    batch = base.shape[: base.ndim - len(a.shape)]
    vals = np.asarray(a.vals)
    if ctx.samples and vals.ndim == 1:
        vals = vals[:, None]
    return Block(base.reshape(batch + aligned), aligned, axes[0], a.pos, vals.reshape(vals.shape + (1,) * (rank - 1)))


def _elementwise_blocks(op: Any, node: Any, args: list[Value], base: Any, ctx: Context) -> Value:
    """:func:`elementwise` where the perturbed operands are :class:`Block` values changing one slice."""
    shape = tuple(node.shape)
    rank = len(shape)
    if any(isinstance(a, Sparse) for a in args):
        return None
    blocks = [a for a in args if isinstance(a, Block)]
    first = blocks[0]
    axis = first.axis + rank - len(first.shape)
    for b in blocks:
        if b.axis + rank - len(b.shape) != axis or b.shape[b.axis] != shape[axis]:
            return None
        if b.pos is not first.pos and not np.array_equal(b.pos, first.pos):
            return None
    lead = 1 + (1 if ctx.samples else 0)
    # the unperturbed sides: with a row for every slice, the kink quantity once on the whole operands and
    # the changed slices of it; with fewer rows, the kink quantity of the unperturbed slices
    whole = first.pos.size >= shape[axis]
    parts, olds = [], []
    for a, n in zip(args, node.args):
        if isinstance(a, Block):
            gap = (1,) * (rank - len(a.shape))
            parts.append(a.vals.reshape(a.vals.shape[:lead] + gap + a.vals.shape[lead:]))
            if ctx.flips is not None and whole:
                olds.append(align(np.asarray(a.base), len(a.shape), rank))
            elif ctx.flips is not None:
                old = old_slices(a, ctx)
                olds.append(old.reshape(old.shape[:lead] + gap + old.shape[lead:]))
        else:
            parts.append(_slab(a, len(n.shape), rank, axis, first.pos, ctx))
            olds.append(align(a, len(n.shape), rank) if whole else parts[-1])
    if ctx.flips is not None and op.kink is not None:
        before = sides(op.kink(np, *olds))
        ctx.sides_moved(_slab(before, rank, rank, axis, first.pos, ctx) if whole else before, op.kink(np, *parts))
    return _block(base, shape, axis, first.pos, op.numpy(np, *parts, **op.bind(node.attrs)), ctx)


def _changed_total(node: Any, args: list[Value], base: Any, ctx: Context, divide: bool) -> Value:
    """A sum (``divide``: a mean) over some axes: the one output position the change falls into moves by it."""
    attrs = dict(node.attrs)
    if set(attrs) - {"axis", "keepdims"}:
        return None
    (a,) = args
    rank = len(a.shape)
    axis = attrs.get("axis")
    if axis is None:
        axes = tuple(range(rank))
    else:
        given = (axis,) if isinstance(axis, int) else tuple(axis)  # checked by the shape rule
        axes = tuple(sorted(int(i) % rank for i in given)) if rank else ()
    if isinstance(a, Block):
        return _block_total(node, a, axes, bool(attrs.get("keepdims", False)), base, ctx, divide)
    change = a.vals - a.old()
    if divide:
        change = change / max(1, int(np.prod([a.shape[i] for i in axes], dtype=np.int64)))
    out_shape = tuple(node.shape)
    if not out_shape:
        return _plus(np.asarray(base), change, ctx)
    at = np.unravel_index(a.pos, a.shape)
    if attrs.get("keepdims", False):
        kept = [np.zeros_like(a.pos) if i in axes else at[i] for i in range(rank)]
    else:
        kept = [at[i] for i in range(rank) if i not in axes]
    out_pos = np.ravel_multi_index(tuple(kept), out_shape)
    base = np.asarray(base)
    old_out, change = _pair(gather(base, out_shape, out_pos), change)
    return Sparse(base, out_shape, out_pos, old_out + change)


def _block_total(
    node: Any, a: Block, axes: tuple[int, ...], keepdims: bool, base: Any, ctx: Context, divide: bool
) -> Value:
    """:func:`_changed_total` of a :class:`Block`: its slice's change, or its slices reduced along other axes."""
    lead = 1 + (1 if ctx.samples else 0)
    count = max(1, int(np.prod([a.shape[i] for i in axes], dtype=np.int64)))
    if not node.shape:
        change = (a.vals - old_slices(a, ctx)).sum(axis=tuple(range(lead, a.vals.ndim)))
        return _plus(np.asarray(base), change / count if divide else change, ctx)
    if a.axis in axes:
        return None  # the change spreads over the output: the plain fallback
    inner = tuple(lead + (i if i < a.axis else i - 1) for i in axes)
    vals = a.vals.sum(axis=inner, keepdims=keepdims)
    axis = a.axis if keepdims else a.axis - sum(1 for i in axes if i < a.axis)
    return _block(base, tuple(node.shape), axis, a.pos, vals / count if divide else vals, ctx)


@takes_blocks
def changed_sum(op: Any, node: Any, args: list[Value], base: Any, ctx: Context) -> Value:
    """``sum`` of a perturbed value (over ``axis=``, default all): the old total plus the one change."""
    return _changed_total(node, args, base, ctx, divide=False)


@takes_blocks
def changed_mean(op: Any, node: Any, args: list[Value], base: Any, ctx: Context) -> Value:
    """``mean`` of a perturbed value (over ``axis=``): the old mean plus the change over the reduced size."""
    return _changed_total(node, args, base, ctx, divide=True)


def dot(op: Any, node: Any, args: list[Value], base: Any, ctx: Context) -> Value:
    """``dot`` of a perturbed vector with an unperturbed one: the old dot plus change times factor."""
    if node.attrs:
        return None
    a, b = args
    if isinstance(a, Sparse) == isinstance(b, Sparse):
        return None
    moved, other = (a, b) if isinstance(a, Sparse) else (b, a)
    total = np.asarray(base)
    change, factor = _pair(moved.vals - moved.old(), gather(other, moved.shape, moved.pos))
    return _plus(total, change * factor, ctx)


@takes_blocks
def matvec(op: Any, node: Any, args: list[Value], base: Any, ctx: Context) -> Value:
    """``a @ b`` with one operand perturbed (see :func:`_matmul_blocks` for :class:`Block` operands).

    A perturbed element of a matrix times a vector changes one output
    element (:class:`Sparse`); times a matrix, one row (``W @ X``) or one
    column (``X @ W``) of the product (:class:`Block`). A perturbed element
    of a vector moves the product by a row or column of the other operand
    (:func:`_moved_vector`).
    """
    if node.attrs:
        return None
    a, b = args
    ra, rb = len(node.args[0].shape), len(node.args[1].shape)
    if isinstance(a, Block) or isinstance(b, Block):
        return _matmul_blocks(node, a, b, ra, rb, base, ctx)
    if isinstance(a, Sparse) and not isinstance(b, Sparse) and ra == 2:
        moved, cols = a, a.shape[1]
        row, col = a.pos // cols, a.pos % cols
        if rb == 2:  # W @ X: row `row` moves by the change times X[col, :]
            return _moved_slice(node, base, 0, row, moved, _slab(b, 2, 2, 0, col, ctx), ctx)
        out_pos, factor = row, gather(b, (cols,), col)
    elif isinstance(b, Sparse) and not isinstance(a, Sparse) and rb == 2:
        moved, cols = b, b.shape[1]
        row, col = b.pos // cols, b.pos % cols
        if ra == 2:  # X @ W: column `col` moves by the change times X[:, row]
            return _moved_slice(node, base, 1, col, moved, _slab(a, 2, 2, 1, row, ctx), ctx)
        out_pos, factor = col, gather(a, (b.shape[0],), row)
    elif isinstance(a, Sparse) != isinstance(b, Sparse):  # a moved vector
        return _moved_vector(node, a, b, ra, rb, base, ctx)
    else:
        return None
    base = np.asarray(base)
    old_out, change, factor = _pair(gather(base, tuple(node.shape), out_pos), moved.vals - moved.old(), factor)
    return Sparse(base, tuple(node.shape), out_pos, old_out + change * factor)


def _moved_vector(node: Any, a: Value, b: Value, ra: int, rb: int, base: Any, ctx: Context) -> Value:
    """``a @ b`` with a moved vector element ``v[k]``: the product moves by the change times row (column) ``k`` of the other.

    A matrix's column ``k`` (``M @ v``), its row ``k`` (``v @ M``), or the
    other vector's element ``k`` (a dot product): no matrix product is formed.
    """
    moved, other, ro = (a, b, rb) if isinstance(a, Sparse) else (b, a, ra)
    other = np.asarray(other)
    change = np.asarray(moved.vals - moved.old())
    if ro == 1:  # a dot product: one number per sample moves
        change, factor = _pair(change, gather(other, moved.shape, moved.pos))
        return _plus(np.asarray(base), change * factor, ctx)
    # M @ v moves by column k of M; v @ M by row k
    factor = _slab(other, 2, 2, 1 if moved is b else 0, moved.pos, ctx)  # (M,) [+ samples] + (n,)
    change = change.reshape(change.shape + (1,) * (factor.ndim - change.ndim))
    return _outer(base, tuple(node.shape), change * factor, ctx)


def _moved_slice(node: Any, base: Any, axis: int, pos: np.ndarray, moved: Sparse, factor: Any, ctx: Context) -> Block:
    """The output's slice ``pos`` along ``axis`` moved by the element's change times ``factor`` (``(M,) [+ samples] + rest``)."""
    shape = tuple(node.shape)
    old = _slab(np.asarray(base), len(shape), len(shape), axis, pos, ctx)
    change = np.asarray(moved.vals - moved.old())
    change = change.reshape(change.shape + (1,) * (np.ndim(factor) - change.ndim))
    return _block(base, shape, axis, pos, old + change * factor, ctx)


def _matmul_blocks(node: Any, a: Value, b: Value, ra: int, rb: int, base: Any, ctx: Context) -> Value:
    """``a @ b`` with one :class:`Block` operand (a matrix) and the other plain.

    A changed row of ``a`` (a changed column of ``b``) changes that row
    (column) of the product: a :class:`Block`, or one element of a vector
    (:class:`Sparse`). A changed column of ``a`` (row of ``b``) changes the
    whole product by an outer product: batched.
    """
    lead = 1 + (1 if ctx.samples else 0)
    shape = tuple(node.shape)
    if isinstance(a, Block) and not isinstance(b, (Block, Sparse)) and ra == 2:
        b = np.asarray(b)
        if a.axis == 0:  # row i of a: row i of a @ b
            row = a.vals[..., None, :]
            if rb == 1:
                return Sparse(np.asarray(base), shape, a.pos, np.matmul(row, b[..., None])[..., 0, 0])
            return _block(base, shape, 0, a.pos, np.matmul(row, _lift(b, rb, lead))[..., 0, :], ctx)
        change = a.vals - old_slices(a, ctx)  # column j of a: (M,) [+ samples] + (n,)
        factor = _slab(b, rb, rb, 0, a.pos, ctx)  # b[j] (rows of b): (M,) [+ samples] [+ (p,)]
        if rb == 1:
            return _outer(base, shape, change * factor[..., None], ctx)
        return _outer(base, shape, change[..., :, None] * factor[..., None, :], ctx)
    if isinstance(b, Block) and not isinstance(a, (Block, Sparse)) and rb == 2:
        a = np.asarray(a)
        if b.axis == 1:  # column j of b: column j of a @ b
            col = b.vals[..., :, None]
            if ra == 1:
                return Sparse(np.asarray(base), shape, b.pos, np.matmul(a[..., None, :], col)[..., 0, 0])
            return _block(base, shape, 1, b.pos, np.matmul(_lift(a, ra, lead), col)[..., 0], ctx)
        change = b.vals - old_slices(b, ctx)  # row j of b: (M,) [+ samples] + (p,)
        factor = _slab(a, ra, ra, ra - 1, b.pos, ctx)  # a[..., j]: (M,) [+ samples] [+ (n,)]
        if ra == 1:
            return _outer(base, shape, factor[..., None] * change, ctx)
        return _outer(base, shape, factor[..., :, None] * change[..., None, :], ctx)
    return None


def _lift(arr: np.ndarray, rank: int, lead: int) -> np.ndarray:
    """A plain operand with unit axes in front so its batch axes line up with ``(M,) [+ samples]``."""
    batch = arr.ndim - rank
    return arr.reshape((1,) * (lead - batch) + arr.shape)


def _outer(base: Any, shape: tuple[int, ...], change: np.ndarray, ctx: Context) -> Batched:
    """The unperturbed product plus each row's change everywhere: batched."""
    size = int(np.prod(change.shape, dtype=np.int64))
    if ctx.max_values is not None and size > ctx.max_values:
        raise TooDense
    return ctx.batched(np.asarray(base) + change, shape)


@takes_blocks
def transpose(op: Any, node: Any, args: list[Value], base: Any, ctx: Context) -> Value:
    """``.T`` moves the changed position (a changed row becomes a changed column)."""
    if node.attrs:
        return None
    (a,) = args
    base = np.asarray(base)
    if isinstance(a, Block):
        return Block(base, tuple(node.shape), len(a.shape) - 1 - a.axis, a.pos, a.vals)
    if len(a.shape) < 2:
        return Sparse(base, a.shape, a.pos, a.vals)
    rows, cols = a.shape
    return Sparse(base, tuple(node.shape), (a.pos % cols) * rows + a.pos // cols, a.vals)


def moves(op: Any, node: Any, args: list[Value], base: Any, ctx: Context) -> Value:
    """An op that only moves elements (indices, slices, reshape, concat, ...): the change moves with them.

    The op's own NumPy form is applied to the operands' element numbers
    (1, 2, ... counted through all operands; 0 is a constant the op makes, such
    as ``diag``'s zeros), which says where each output element comes from.
    Rows whose changed element reaches the output keep the change at its new
    position; the others read the old value. Declines when more than one
    operand is perturbed or an element is used twice.
    """
    sparse = [k for k, a in enumerate(args) if isinstance(a, Sparse)]
    if len(sparse) != 1:
        return None
    k = sparse[0]
    a = args[k]
    shapes = [tuple(n.shape) for n in node.args]
    sizes = [int(np.prod(s, dtype=np.int64)) for s in shapes]
    offsets = [0]
    for size in sizes:
        offsets.append(offsets[-1] + size)
    ids = [np.arange(1 + lo, 1 + lo + size, dtype=np.int64).reshape(s) for s, size, lo in zip(shapes, sizes, offsets)]
    out_shape = tuple(node.shape)
    src = np.asarray(op.numpy(np, ids, shapes, **op.bind(node.attrs))).reshape(-1)
    if src.shape[0] != int(np.prod(out_shape, dtype=np.int64)) or tuple(a.shape) != shapes[k]:
        return None
    lo = offsets[k]
    mine = (src > lo) & (src <= lo + sizes[k])
    found = src[mine] - 1 - lo
    if np.unique(found).size != found.size:
        return None
    where = np.full(sizes[k], -1, dtype=np.int64)
    where[found] = np.nonzero(mine)[0]
    out = where[a.pos]
    inside = out >= 0
    pos = np.where(inside, out, 0)
    base = np.asarray(base)
    vals, unchanged = _pair(a.vals, gather(base, out_shape, pos))
    mask = inside.reshape((-1,) + (1,) * (vals.ndim - 1))
    return Sparse(base, out_shape, pos, np.where(mask, vals, unchanged))


#: The former name of :func:`moves` (integer indexing was its first use).
index = moves


def _plus(total: np.ndarray, change: np.ndarray, ctx: Context) -> Batched:
    """A reduction's old ``total`` (batch) plus each row's ``change``: a scalar per sample, batched."""
    total, change = _pair(np.asarray(total)[None, ...] if np.ndim(total) else np.asarray(total), change)
    return ctx.batched(total + change, ())


# --- layers (conv) -------------------------------------------------------------


def _per_axis(value: Any, d: int) -> tuple[int, ...]:
    return (int(value),) * d if isinstance(value, int) else tuple(int(v) for v in value)


@takes_blocks
def conv_kernel(op: Any, node: Any, args: list[Value], base: Any, ctx: Context) -> Value:
    """``conv1d``/``conv2d`` with one kernel element ``k[o, c, i, j]`` perturbed and the input not.

    Every output position of channel ``o`` moves by the change times the input
    element its window meets at ``(c, i, j)``, and no other channel moves: a
    :class:`Block` along the channel axis. Declines a perturbed input
    (:func:`conv_input`) and :class:`Block` operands.
    """
    x, k = args
    if isinstance(x, (Sparse, Block)) or not isinstance(k, Sparse):
        return None
    attrs = op.bind(node.attrs)
    if set(attrs) != {"stride", "padding"}:
        return None
    d = len(k.shape) - 2
    stride, padding = _per_axis(attrs["stride"], d), _per_axis(attrs["padding"], d)
    x = np.asarray(x)
    xb = x.shape[: x.ndim - d - 1]
    if any(padding):
        x = np.pad(x, [(0, 0)] * (x.ndim - d) + [(p, p) for p in padding])
    w = np.lib.stride_tricks.sliding_window_view(x, k.shape[2:], axis=tuple(range(x.ndim - d, x.ndim)))
    w = w[(Ellipsis,) + tuple(slice(None, None, s) for s in stride) + (slice(None),) * d]  # xb + (C, *out, *K)
    lead = len(xb)
    w = np.moveaxis(w, [lead] + list(range(w.ndim - d, w.ndim)), list(range(d + 1)))  # (C, *K) + xb + out
    o, c, *offsets = np.unravel_index(k.pos, k.shape)
    if k.pos.size >= int(np.prod(w.shape[: d + 1])):
        w = np.ascontiguousarray(w)  # every tap at least once: each row's taps then one copy
    taps = w[(c, *offsets)]  # (M,) + xb + out
    delta = np.asarray(k.vals - k.old())
    extra = delta.shape[1:]
    if len(extra) > len(xb):
        return None
    delta = delta.reshape(delta.shape + (1,) * (taps.ndim - delta.ndim))
    if delta.shape[1:] == (1,) * (delta.ndim - 1) and taps.dtype == np.result_type(delta, taps):
        change = np.multiply(taps, delta, out=taps)  # taps is a fresh gather: no temporary
    else:
        change = delta * taps  # (M,) + batch + out
    if ctx.samples and not xb and not extra:
        change = change[:, None]
    shape = tuple(node.shape)
    old = _slab(np.asarray(base), len(shape), len(shape), 0, o, ctx)  # (M,) [+ samples] + out
    if old.shape == change.shape and old.dtype == np.result_type(old, change):
        np.add(old, change, out=old)  # old is a fresh gather: no temporary
        return _block(base, shape, 0, o, old, ctx)
    return _block(base, shape, 0, o, old + change, ctx)


def conv_input(op: Any, node: Any, args: list[Value], base: Any, ctx: Context) -> Value:
    """``conv1d``/``conv2d`` with one input element ``x[c, p]`` perturbed and the kernel not.

    The change reaches only the output positions whose window covers ``p``, one
    kernel offset each: output ``[o, q]`` moves by the change times
    ``k[o, c, p + padding - q * stride]``. One pass per kernel offset adds that
    to the unperturbed output of every row: ``(M,) + batch + shape``, batched,
    with no convolution evaluated. Declines a batched kernel.
    """
    x, k = args
    if not isinstance(x, Sparse) or isinstance(k, Sparse):
        return None
    attrs = op.bind(node.attrs)
    if set(attrs) != {"stride", "padding"}:
        return None
    k = np.asarray(k)
    d = len(x.shape) - 1
    if k.ndim != d + 2:
        return None
    stride, padding = _per_axis(attrs["stride"], d), _per_axis(attrs["padding"], d)
    delta = np.asarray(x.vals - x.old())  # (M,) + extra
    base = np.asarray(base)
    shape = tuple(node.shape)
    out_batch = tuple(base.shape[: base.ndim - len(shape)])
    extra = delta.shape[1:]
    if len(extra) > max(len(out_batch), 1 if ctx.samples else 0):
        return None
    batch = tuple(np.broadcast_shapes(out_batch, extra))
    if ctx.samples and not batch:
        batch = (1,)
    full = np.broadcast_to(base, (ctx.rows,) + batch + shape).astype(np.result_type(base, delta, k))
    nb = len(batch)
    # (M, *out, C_out, *batch): one output position of every row is a (C_out, *batch) slab
    view = np.transpose(full, [0] + list(range(2 + nb, full.ndim)) + [1 + nb] + list(range(1, 1 + nb)))
    at = np.unravel_index(x.pos, x.shape)
    c, p = at[0], at[1:]
    out_sp = shape[1:]
    for off in np.ndindex(*k.shape[2:]):
        q = [pi + pp - oi for pi, pp, oi in zip(p, padding, off)]
        valid = np.ones(ctx.rows, dtype=bool)
        for qi, ss, n in zip(q, stride, out_sp):
            valid &= (qi >= 0) & (qi % ss == 0) & (qi // ss < n)
        rows = np.nonzero(valid)[0]
        if not rows.size:
            continue
        taps = k[(slice(None), c[rows]) + off].T  # (rows, C_out)
        dv = delta[rows].reshape((rows.size, 1) + (1,) * (nb - len(extra)) + extra)
        view[(rows,) + tuple(qi[rows] // ss for qi, ss in zip(q, stride))] += taps.reshape(taps.shape + (1,) * nb) * dv
    return ctx.batched(full, shape)


def conv(op: Any, node: Any, args: list[Value], base: Any, ctx: Context) -> Value:
    """``conv1d``/``conv2d``: :func:`conv_kernel` for a perturbed kernel, :func:`conv_input` for a perturbed input."""
    x, k = args
    if isinstance(k, Sparse) and not isinstance(x, Sparse):
        return conv_kernel(op, node, args, base, ctx)
    if isinstance(x, Sparse) and not isinstance(k, Sparse):
        return conv_input(op, node, args, base, ctx)
    return None


# --- layers (pooling) ----------------------------------------------------------


@takes_blocks
def pool(op: Any, node: Any, args: list[Value], base: Any, ctx: Context) -> Value:
    """A pooling op (``size=``, ``stride=``) over windows that do not overlap, one input element perturbed.

    The element lies in at most one window: that window is gathered from the
    unperturbed input, the change put in, and the op's own NumPy form applied
    to it alone, so one output position changes (rows whose element no window
    covers keep the old output). A kink rule (a window's maximum) is tracked on
    the window. Declines overlapping windows (``stride`` below ``size``).
    A :class:`Block` along the channel axis (a kernel element moves one output
    channel of a convolution) stays one: :func:`pool_block`.
    """
    (a,) = args
    attrs = op.bind(node.attrs)
    if set(attrs) != {"size", "stride"} or len(a.shape) != 3 or attrs["size"] is None:
        return None
    if isinstance(a, Block):
        return pool_block(op, node, a, base, ctx)
    size = _per_axis(attrs["size"], 2)
    stride = _per_axis(attrs["size"] if attrs["stride"] is None else attrs["stride"], 2)
    if any(s < z for s, z in zip(stride, size)):
        return None
    shape = tuple(node.shape)
    c, h, w = np.unravel_index(a.pos, a.shape)
    oh, ow = h // stride[0], w // stride[1]
    dh, dw = h - oh * stride[0], w - ow * stride[1]
    inside = (oh < shape[1]) & (ow < shape[2]) & (dh < size[0]) & (dw < size[1])
    oh, ow, dh, dw = (np.where(inside, v, 0) for v in (oh, ow, dh, dw))
    rows = oh[:, None] * stride[0] + np.arange(size[0])  # (M, kh)
    cols = ow[:, None] * stride[1] + np.arange(size[1])  # (M, kw)
    flat = (c[:, None, None] * a.shape[1] + rows[:, :, None]) * a.shape[2] + cols[:, None, :]  # (M, kh, kw)
    m, kk = ctx.rows, size[0] * size[1]
    old = gather(a.base, a.shape, flat.reshape(-1))  # (M * kh * kw,) + batch
    batch = old.shape[1:]
    old = np.moveaxis(old.reshape((m, kk) + batch), 1, -1)  # (M,) + batch + (kh * kw,)
    vals = np.asarray(a.vals)
    extra = vals.shape[1:]
    if len(extra) > len(batch) and batch:
        return None
    full_batch = tuple(np.broadcast_shapes(batch, extra))
    old = np.broadcast_to(old, (m,) + full_batch + (kk,))
    new = old.astype(np.result_type(old, vals))
    at = dh * size[1] + dw
    vals = np.broadcast_to(vals.reshape((m,) + (1,) * (len(full_batch) - len(extra)) + extra), (m,) + full_batch)
    here = np.broadcast_to(at.reshape((m,) + (1,) * (len(full_batch) + 1)), (m,) + full_batch + (1,))
    # an element no window covers leaves every window as it was
    keep = inside.reshape((m,) + (1,) * len(full_batch))
    vals = np.where(keep, vals, np.take_along_axis(old, here, axis=-1)[..., 0])
    np.put_along_axis(new, here, vals[..., None], axis=-1)
    window = (1,) + size
    one = lambda v: v.reshape(v.shape[:-1] + window)  # noqa: E731  (M,) + batch + (1, kh, kw)
    if ctx.flips is not None and op.kink is not None:
        ctx.crossed(lambda mod, v: op.kink(mod, [v], [window], size=size, stride=size), [one(new)], [one(old)])
    got = np.asarray(op.numpy(np, [one(new)], [window], size=size, stride=size)).reshape((m,) + full_batch)
    base = np.asarray(base)
    out_pos = (c * shape[1] + oh) * shape[2] + ow
    unchanged = gather(base, shape, out_pos)
    unchanged, got, mask = _pair(unchanged, got, inside)
    return Sparse(base, shape, out_pos, np.where(mask, got, unchanged))


def pool_block(op: Any, node: Any, a: Block, base: Any, ctx: Context) -> Value:
    """A pooling op (any ``size=``, ``stride=``) on a :class:`Block` along the channel axis: a block again.

    Pooling works on each channel alone, so the op's own NumPy form on the
    changed channel is the changed output channel. Kinks (a window's maximum)
    are tracked on that channel only: the unperturbed sides are the kink
    quantity of the whole unperturbed input, its changed channels taken out
    (the others cannot cross). Declines a block along a spatial axis.
    """
    attrs = op.bind(node.attrs)
    if a.axis != 0 or len(a.shape) != 3 or len(node.shape) != 3:
        return None
    lead = 1 + (1 if ctx.samples else 0)
    vals = np.asarray(a.vals)
    new = vals.reshape(vals.shape[:lead] + (1,) + vals.shape[lead:])  # (M,) [+ samples] + (1, H, W)
    channel = (1,) + tuple(a.shape[1:])
    if ctx.flips is not None and op.kink is not None:
        after = np.asarray(op.kink(np, [new], [channel], **attrs))
        if a.pos.size >= a.shape[0]:  # a row for every channel: the sides once on the whole input, gathered
            before = _slab(sides(op.kink(np, [np.asarray(a.base)], [tuple(a.shape)], **attrs)), 3, 3, 0, a.pos, ctx)
        else:  # fewer rows: the sides of the unperturbed channels
            old = old_slices(a, ctx)
            old = old.reshape(old.shape[:lead] + (1,) + old.shape[lead:])
            before = sides(op.kink(np, [old], [channel], **attrs))
            before = before.reshape(before.shape[:lead] + before.shape[lead + 1 :])
        ctx.sides_moved(before, after.reshape(after.shape[:lead] + after.shape[lead + 1 :]))
    if not ctx.values:
        return np.asarray(base)  # only its crossings were wanted: the rows' values are never read
    got = np.asarray(op.numpy(np, [new], [channel], **attrs))
    return _block(base, tuple(node.shape), 0, a.pos, got.reshape(got.shape[:lead] + got.shape[lead + 1 :]), ctx)
