"""Structure: outer, diag, trace, reshape, flatten, concat and stack (slices are the index op, in arithmetic).

Every form acts on the trailing (per-sample) axes only: NumPy, torch and
mpmath values may carry leading batch axes (samples, perturbations), which
broadcast between operands; SymPy values are object arrays without them.
Ops that only move elements (``reshape``, ``flatten``, ``diag``, ``concat``,
``stack``) share the incremental rule :func:`gradcheck.incremental.moves`;
``outer`` and ``trace`` are evaluated densely.
"""

from __future__ import annotations

import operator
from typing import Any

from .. import incremental as inc
from .arithmetic import fixed
from .core import DENSE, Attr, Shape, _mp, _mp_sum, _size, moves, structural

#: Most per-sample axes a structural op may make (NumPy holds at most 32 with the batch axes).
MAX_RANK = 16


def _shown(shapes: tuple[Shape, ...]) -> str:
    return " and ".join(str(list(s)) for s in shapes)


def _exact(mod: Any) -> bool:
    """SymPy and mpmath values are NumPy object arrays."""
    return bool(mod.__name__ in ("sympy", "mpmath"))


def _array(mod: Any, x: Any) -> Any:
    """``x`` as an array of the backend (tensors stay tensors; SymPy and mpmath make object arrays)."""
    if mod.__name__ == "torch":
        return x
    import numpy as np

    return np.asarray(x, dtype=object) if _exact(mod) else np.asarray(x)


def _batched(mod: Any, args: list[Any], shapes: list[Shape]) -> list[Any]:
    """The operands with their leading (batch) axes broadcast to one shape, per-sample shapes kept."""
    if mod.__name__ == "torch":
        ref = next(a for a in args if isinstance(a, mod.Tensor))
        arrs = [a if isinstance(a, mod.Tensor) else mod.as_tensor(a, dtype=ref.dtype) for a in args]
        batches = [tuple(a.shape[: a.dim() - len(s)]) for a, s in zip(arrs, shapes)]
        batch = tuple(mod.broadcast_shapes(*batches))
        return [a.expand(batch + tuple(s)) for a, s in zip(arrs, shapes)]
    import numpy as np

    arrs = [_array(mod, a) for a in args]
    batch = tuple(np.broadcast_shapes(*(a.shape[: a.ndim - len(s)] for a, s in zip(arrs, shapes))))
    return [np.broadcast_to(a, batch + tuple(s)) for a, s in zip(arrs, shapes)]


# --- outer ------------------------------------------------------------------


def _outer_shape(a: Shape, b: Shape) -> Shape:
    if len(a) != 1 or len(b) != 1:
        raise fixed(f"outer needs two vectors, got shapes {_shown((a, b))}", "flatten(x) makes a vector of any array")
    return (a[0], b[0])


def _outer(mod: Any, a: Any, b: Any) -> Any:
    a, b = _array(mod, a), _array(mod, b)
    if mod.__name__ == "mpmath":
        return _mp(mod, operator.mul, a[..., :, None], b[..., None, :])
    out = a[..., :, None] * b[..., None, :]
    return _array(mod, out) if _exact(mod) else out


# --- diag and trace -----------------------------------------------------------


def _diag_shape(a: Shape) -> Shape:
    if len(a) == 1:
        return (a[0], a[0])
    if len(a) == 2:
        return (min(a),)
    raise fixed(
        f"diag needs a vector (it makes a diagonal matrix) or a matrix (it takes its diagonal), got shape {list(a)}",
        "index or reshape the value to a vector or a matrix first",
    )


def _diagonal(mod: Any, x: Any) -> Any:
    """The main diagonal of the last two axes (a copy), as a vector along the last axis."""
    if mod.__name__ == "torch":
        return mod.diagonal(x, dim1=-2, dim2=-1)
    import numpy as np

    return np.diagonal(_array(mod, x), axis1=-2, axis2=-1).copy()


def _diag(mod: Any, x: Any, shape: Shape) -> Any:
    if len(shape) == 2:
        return _diagonal(mod, x)
    if mod.__name__ == "torch":
        return mod.diag_embed(x)
    import numpy as np

    arr = _array(mod, x)
    n = shape[0]
    if mod.__name__ == "sympy":
        out = np.full(arr.shape + (n,), mod.Integer(0), dtype=object)
    elif mod.__name__ == "mpmath":
        out = np.full(arr.shape + (n,), mod.mpf(0), dtype=object)
    else:
        out = np.zeros(arr.shape + (n,), dtype=arr.dtype)
    every = np.arange(n)
    out[..., every, every] = arr
    return out


def _trace_shape(a: Shape) -> Shape:
    if len(a) != 2:
        raise fixed(f"trace needs a matrix, got shape {list(a)}", "trace(M) sums the diagonal of a matrix M")
    return ()


def _trace(mod: Any, x: Any) -> Any:
    d = _diagonal(mod, x)
    if mod.__name__ == "torch":
        return d.sum(dim=-1)
    if mod.__name__ == "sympy":
        import numpy as np

        return np.asarray(mod.Add(*d), dtype=object)  # one Add (pairwise sums are quadratic in SymPy)
    if mod.__name__ == "mpmath":
        return _mp_sum(d, 1)
    return d.sum(axis=-1)


# --- reshape and flatten ------------------------------------------------------


def _target(shape: Shape, new: tuple[int, ...] | None) -> Shape:
    """The per-sample shape ``reshape`` makes of ``shape`` (its one ``-1`` filled in)."""
    if new is None:
        raise fixed("reshape needs the new shape", "write reshape(x, [2, 3])")
    shown = list(new)
    if len(new) > MAX_RANK:
        raise fixed(f"reshape to {shown}: more than {MAX_RANK} axes", f"use at most {MAX_RANK} axes")
    if sum(1 for n in new if n == -1) > 1:
        raise fixed(f"reshape to {shown}: more than one size is -1", "give every size but one (which may be -1)")
    if any(n == 0 or n < -1 for n in new):
        raise fixed(
            f"reshape to {shown}: sizes must be positive (or one -1 for what is left)",
            "write positive sizes such as reshape(x, [2, 3]) or reshape(x, [-1, 3])",
        )
    size = _size(shape)
    known = _size(tuple(n for n in new if n != -1))
    if -1 in new and size % known == 0:
        new = tuple(size // known if n == -1 else n for n in new)
    if -1 in new or _size(new) != size:
        raise fixed(
            f"cannot reshape shape {list(shape)} ({size} elements) to {shown}",
            "the new sizes must multiply to the same number of elements",
        )
    return new


def _reshape_shape(a: Shape, shape: tuple[int, ...] | None = None) -> Shape:
    return _target(a, shape)


def _reshape(mod: Any, x: Any, shape: Shape, target: Shape) -> Any:
    arr = _array(mod, x)
    rank = arr.dim() if mod.__name__ == "torch" else arr.ndim
    return arr.reshape(tuple(arr.shape[: rank - len(shape)]) + tuple(target))


# --- concat and stack ---------------------------------------------------------


def _concat_shape(*shapes: Shape, axis: int = 0) -> Shape:
    first = shapes[0]
    rank = len(first)
    if rank == 0:
        raise fixed(
            f"concat needs arrays (vectors or more), got shapes {_shown(shapes)}",
            "stack(a, b) puts scalars in a vector",
        )
    if not -rank <= axis < rank:
        raise fixed(
            f"concat: axis={axis} is out of range for operands of {rank} ax{'is' if rank == 1 else 'es'}",
            f"axis is from {-rank} to {rank - 1} (negative counts from the last axis)",
        )
    k = axis % rank
    others = first[:k] + first[k + 1 :]
    for s in shapes[1:]:
        if len(s) != rank or s[:k] + s[k + 1 :] != others:
            raise fixed(
                f"concat along axis {axis} needs shapes that agree on every other axis, got {_shown(shapes)}",
                "concat joins arrays of one rank along one axis; check the shapes, or choose another axis=",
            )
    return first[:k] + (sum(s[k] for s in shapes),) + first[k + 1 :]


def _stack_shape(*shapes: Shape, axis: int = 0) -> Shape:
    first = shapes[0]
    rank = len(first) + 1
    if any(s != first for s in shapes[1:]):
        raise fixed(
            f"stack needs operands of one shape, got {_shown(shapes)}",
            "stack puts equal shapes side by side along a new axis; concat joins along an existing one",
        )
    if rank > MAX_RANK:
        raise fixed(f"stack: the result would have more than {MAX_RANK} axes", f"use at most {MAX_RANK} axes")
    if not -rank <= axis < rank:
        raise fixed(
            f"stack: axis={axis} is out of range for a result of {rank} ax{'is' if rank == 1 else 'es'}",
            f"axis is from {-rank} to {rank - 1} (negative counts from the last axis)",
        )
    k = axis % rank
    return first[:k] + (len(shapes),) + first[k:]


def _concat(mod: Any, args: list[Any], shapes: list[Shape], axis: int) -> Any:
    rank = len(shapes[0])
    last = axis % rank - rank  # the per-sample axis, counted from the end (batch axes come first)
    arrs = _batched(mod, args, shapes)
    if mod.__name__ == "torch":
        return mod.cat(arrs, dim=last)
    import numpy as np

    return np.concatenate(arrs, axis=last)


def _stack(mod: Any, args: list[Any], shapes: list[Shape], axis: int) -> Any:
    rank = len(shapes[0]) + 1
    last = axis % rank - rank
    arrs = _batched(mod, args, shapes)
    if mod.__name__ == "torch":
        return mod.stack(arrs, dim=last)
    import numpy as np

    return np.stack(arrs, axis=last)


# --- expand and scatter (the helpers the vector-Jacobian rules need) -------------------


def _expand_shape(a: Shape, shape: tuple[int, ...] | None = None) -> Shape:
    if shape is None:
        raise fixed("expand needs the shape to broadcast to", "write expand(v, [2, 3])")
    shape = tuple(shape)
    if len(a) > len(shape) or any(n not in (1, m) for n, m in zip(a[::-1], shape[::-1])):
        raise fixed(
            f"shape {list(a)} does not broadcast to {list(shape)}",
            "expand broadcasts as NumPy does: each trailing size must be 1 or the new size",
        )
    if len(shape) > MAX_RANK or any(n < 1 for n in shape):
        raise fixed(f"expand to {list(shape)}: sizes must be positive, at most {MAX_RANK} axes", "check the shape")
    return shape


def _expand(mod: Any, x: Any, shape: Shape, target: Shape) -> Any:
    """``x`` broadcast to ``target`` (per sample), batch axes kept in front."""
    arr = _array(mod, x)
    if mod.__name__ == "torch":
        if not isinstance(arr, mod.Tensor):  # a number: expand(1, [3])
            arr = mod.as_tensor(arr, dtype=mod.float64)
        batch = tuple(arr.shape[: arr.dim() - len(shape)])
        lifted = arr.reshape(batch + (1,) * (len(target) - len(shape)) + tuple(shape))
        return lifted.expand(batch + tuple(target))
    import numpy as np

    batch = arr.shape[: arr.ndim - len(shape)]
    lifted = arr.reshape(batch + (1,) * (len(target) - len(shape)) + tuple(shape))
    return np.broadcast_to(lifted, batch + tuple(target)).copy()


def _region(shape: Shape, start: tuple[int, ...] | None, step: tuple[int, ...] | None) -> tuple[slice, ...]:
    start = tuple(start or ())
    step = tuple(step or ())
    return tuple(
        slice(start[i] if i < len(start) else 0, None, step[i] if i < len(step) else 1) for i in range(len(shape))
    )


def _scatter_shape(
    a: Shape, shape: tuple[int, ...] | None = None, start: tuple[int, ...] | None = None, step: Any = None
) -> Shape:
    if shape is None:
        raise fixed("scatter needs the shape of the result", "write scatter(v, shape=[4, 3], start=[1, 0])")
    shape = tuple(shape)
    for what, given in (("start", start), ("step", step)):
        if given is not None and len(given) > len(shape):
            raise fixed(f"scatter: {what}= has more entries than shape= has axes", "give one per leading axis")
    if len(a) != len(shape):
        raise fixed(
            f"scatter puts a value of shape {list(a)} into shape {list(shape)}: the ranks differ",
            "reshape the value to the result's rank first (a size-1 axis for an indexed one)",
        )
    if any(n < 1 for n in shape) or any(s < 1 for s in (step or ())):
        raise fixed("scatter: sizes and steps must be positive", "check shape= and step=")
    for n, size, sl in zip(a, shape, _region(shape, start, step)):
        if not 0 <= sl.start < size or len(range(size)[sl]) < n:
            raise fixed(
                f"scatter: a value of shape {list(a)} does not fit into shape {list(shape)} at start={list(start or ())}",
                "each axis needs start + step * (size - 1) inside the result",
            )
    return shape


def _scatter(mod: Any, x: Any, shape: Shape, target: Shape, start: Any, step: Any) -> Any:
    """Zeros of ``target`` with ``x`` written at ``start`` every ``step`` (per sample)."""
    arr = _array(mod, x)
    rank = arr.dim() if mod.__name__ == "torch" else arr.ndim
    batch = tuple(arr.shape[: rank - len(shape)])
    key = (Ellipsis,) + tuple(
        slice(sl.start, sl.start + sl.step * (n - 1) + 1, sl.step) for n, sl in zip(shape, _region(target, start, step))
    )
    if mod.__name__ == "torch":
        out = mod.zeros(batch + tuple(target), dtype=arr.dtype)
        out[key] = arr
        return out
    import numpy as np

    if _exact(mod):
        zero = mod.Integer(0) if mod.__name__ == "sympy" else mod.mpf(0)
        out = np.full(batch + tuple(target), zero, dtype=object)
    else:
        out = np.zeros(batch + tuple(target), dtype=arr.dtype)
    out[key] = arr
    return out


# --- vector-Jacobian rules (see Op.vjp) ---------------------------------------------


def _list(values: Any) -> str:
    return "[" + ", ".join(map(str, values)) + "]"


def _reduce_back(shape: Shape, out: Shape) -> str:
    """``g`` of shape ``out`` summed back to ``shape`` (that ``expand`` broadcast to ``out``)."""
    lead = len(out) - len(shape)
    axes = list(range(lead))
    ones = [lead + i for i, n in enumerate(shape) if n == 1 and out[lead + i] != 1]
    text = "g"
    if ones:
        text = f"sum(g, axis={_list(axes + ones)}, keepdims=True)"
        if axes:
            text = f"reshape({text}, {_list(shape)})" if shape else f"sum({text})"
    elif axes:
        text = f"sum(g, axis={_list(axes)})" if shape else "sum(g)"
    return text


def _diag_vjp(shapes: list[Shape], out: Shape) -> tuple[str]:
    a = shapes[0]
    if len(a) == 1 or a[0] == a[1]:
        return ("diag(g)",)
    return (f"scatter(diag(g), shape={_list(a)})",)


def _trace_vjp(shapes: list[Shape], out: Shape) -> tuple[str]:
    a = shapes[0]
    eye = f"diag(expand(g, [{min(a)}]))"
    return (eye if a[0] == a[1] else f"scatter({eye}, shape={_list(a)})",)


def _reshape_vjp(shapes: list[Shape], out: Shape, shape: Any = None) -> tuple[str]:
    a = shapes[0]
    if tuple(a) == tuple(out):
        return ("g",)
    if not a:
        return ("g[0]" if len(out) == 1 else f"g[{', '.join('0' * len(out))}]",)
    return (f"reshape(g, {_list(a)})",)


def _part(rank: int, axis: int, item: str) -> str:
    k = axis % rank
    return "g[" + ", ".join([":"] * k + [item]) + "]"


def _concat_vjp(shapes: list[Shape], out: Shape, axis: int = 0) -> tuple[str, ...]:
    k = axis % len(out)
    parts, lo = [], 0
    for s in shapes:
        hi = lo + s[k]
        parts.append(_part(len(out), axis, f"{lo}:{hi}"))
        lo = hi
    return tuple(parts)


def _stack_vjp(shapes: list[Shape], out: Shape, axis: int = 0) -> tuple[str, ...]:
    return tuple(_part(len(out), axis, str(i)) for i in range(len(shapes)))


# --- the entries ----------------------------------------------------------------

_AXIS = Attr("axis", 0, ("int",), "the per-sample axis (negative counts from the last)")


def _diag_form(mod: Any, args: list[Any], shapes: list[Shape]) -> Any:
    return _diag(mod, args[0], shapes[0])


def _reshape_form(mod: Any, args: list[Any], shapes: list[Shape], shape: Any) -> Any:
    return _reshape(mod, args[0], shapes[0], _target(shapes[0], shape))


def _flatten_form(mod: Any, args: list[Any], shapes: list[Shape]) -> Any:
    return _reshape(mod, args[0], shapes[0], (_size(shapes[0]),))


def _concat_form(mod: Any, args: list[Any], shapes: list[Shape], axis: Any) -> Any:
    return _concat(mod, args, shapes, axis)


def _stack_form(mod: Any, args: list[Any], shapes: list[Shape], axis: Any) -> Any:
    return _stack(mod, args, shapes, axis)


def _expand_form(mod: Any, args: list[Any], shapes: list[Shape], shape: Any) -> Any:
    return _expand(mod, args[0], shapes[0], _expand_shape(shapes[0], shape))


def _scatter_form(mod: Any, args: list[Any], shapes: list[Shape], shape: Any, start: Any, step: Any) -> Any:
    return _scatter(mod, args[0], shapes[0], tuple(shape), start, step)


def _forms(fn: Any) -> tuple[Any, Any, Any, Any]:
    """The same form for the four backends (``fn(mod, args, shapes, **attrs)``)."""
    return fn, fn, fn, fn


structural(
    "outer", 2,
    *_forms(lambda mod, args, shapes: _outer(mod, args[0], args[1])),
    _outer_shape, "outer product of two vectors: the matrix a[i] * b[j]", incremental=DENSE, vjp=("g @ b", "g.T @ a"),
    dd=lambda D, args, shapes: D.einsum("...i,...j->...ij", args[0], args[1]),
)  # fmt: skip
structural(
    "diag", 1,
    *_forms(_diag_form),
    _diag_shape, "a vector's diagonal matrix; a matrix's diagonal (a vector)", incremental=inc.moves, vjp=_diag_vjp,
    dd=moves(_diag_form),
)  # fmt: skip
structural(
    "trace", 1,
    *_forms(lambda mod, args, shapes: _trace(mod, args[0])),
    _trace_shape, "sum of a matrix's diagonal", incremental=DENSE, vjp=_trace_vjp,
    dd=lambda D, args, shapes: D.total(D.each(lambda x: x.diagonal(axis1=-2, axis2=-1), args[0]), [-1]),
)  # fmt: skip
structural(
    "reshape", 1,
    *_forms(_reshape_form),
    _reshape_shape, "the same elements in a new shape, row by row: reshape(x, [2, 3]); one size may be -1",
    incremental=inc.moves, attrs=(Attr("shape", None, ("ints",), "the new per-sample shape"),), vjp=_reshape_vjp,
    dd=moves(_reshape_form),
)  # fmt: skip
structural(
    "flatten", 1,
    *_forms(_flatten_form),
    lambda a: (_size(a),), "the elements as a vector, row by row", incremental=inc.moves, vjp=_reshape_vjp,
    dd=moves(_flatten_form),
)  # fmt: skip
structural(
    "concat", 2,
    *_forms(_concat_form),
    _concat_shape, "arrays joined along an existing axis (the others must agree)",
    incremental=inc.moves, attrs=(_AXIS,), variadic=True, vjp=_concat_vjp, dd=moves(_concat_form),
)  # fmt: skip
structural(
    "stack", 2,
    *_forms(_stack_form),
    _stack_shape, "equal shapes side by side along a new axis", incremental=inc.moves, attrs=(_AXIS,), variadic=True, vjp=_stack_vjp,
    dd=moves(_stack_form),
)  # fmt: skip
structural(
    "expand", 1,
    *_forms(_expand_form),
    _expand_shape, "v broadcast to `shape` as NumPy broadcasts (trailing axes line up): expand(g, [2, 3])",
    incremental=DENSE, attrs=(Attr("shape", None, ("ints",), "the per-sample shape to broadcast to"),),
    vjp=lambda shapes, out, shape=None: (_reduce_back(shapes[0], tuple(out)),), dd=moves(_expand_form),
)  # fmt: skip
structural(
    "scatter", 1,
    *_forms(_scatter_form),
    _scatter_shape,
    "zeros of `shape` with v written from `start` every `step` along each leading axis (what indexing takes out): "
    "scatter(v, shape=[5], start=[1], step=[2])",
    incremental=DENSE,
    attrs=(
        Attr("shape", None, ("ints",), "the shape of the result"),
        Attr("start", None, ("ints",), "where v starts along each leading axis (default 0)"),
        Attr("step", None, ("ints",), "the step along each leading axis (default 1)"),
    ),
    vjp=lambda shapes, out, shape=None, start=None, step=None: (
        "g[" + ", ".join(f"{sl.start}:{sl.start + sl.step * (n - 1) + 1}" + (f":{sl.step}" if sl.step != 1 else "")
                         for n, sl in zip(shapes[0], _region(tuple(out), start, step))) + "]",
    ),
    dd=moves(_scatter_form),
)  # fmt: skip
