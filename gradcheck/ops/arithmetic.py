"""The operators: + - * / ** unary -, @ (matrix product), .T, integer indexing and slices."""

from __future__ import annotations

import operator
from typing import Any

from .. import incremental as inc
from .core import Attr, Shape, ShapeError, _mp, _mp_sum, _object, _sum, elementwise, structural


def _matmul_shape(a: Shape, b: Shape) -> Shape:
    if not (1 <= len(a) <= 2 and 1 <= len(b) <= 2):
        raise ShapeError(f"@ needs vectors or matrices, got shapes {list(a)} and {list(b)}")
    if a[-1] != b[0]:
        raise ShapeError(f"@ needs matching inner sizes, got shapes {list(a)} and {list(b)} ({a[-1]} != {b[0]})")
    return a[:-1] + b[1:]


def _transpose_shape(a: Shape) -> Shape:
    if len(a) > 2:
        raise ShapeError(f".T needs a vector or a matrix, got shape {list(a)}")
    return a[::-1]


def fixed(what: str, fix: str) -> ShapeError:
    """A :class:`ShapeError` that carries its fix (``infer_shapes`` prints it after the dash)."""
    err = ShapeError(what)
    setattr(err, "fix", fix)  # noqa: B010  (ShapeError is plain: the attribute is optional)
    return err


def _bound(value: int | None) -> str:
    return "" if value is None else str(value)


def index_text(index: tuple[Any, ...]) -> str:
    """``index`` as written between the brackets: ``1, 0:2, ::2``."""
    parts = []
    for item in index:
        if isinstance(item, tuple):
            start, stop, step = item
            parts.append(f"{_bound(start)}:{_bound(stop)}" + ("" if step is None else f":{step}"))
        else:
            parts.append(str(item))
    return ", ".join(parts)


def index_shape(shape: Shape, index: tuple[Any, ...]) -> Shape:
    """Shape after ``v[i]`` / ``M[i, j]`` / ``v[1:3]`` / ``M[:, 0]``: integer constants and slices.

    An item of ``index`` is an integer (the axis goes) or a slice
    ``(start, stop, step)`` (``None`` where not written; the axis stays). A
    slice's bounds must lie within the axis (``-size`` to ``size``; no silent
    clipping), it may not be empty, and its step is positive.
    """
    if len(index) > len(shape):
        raise ShapeError(f"{len(index)} indices into a value of shape {list(shape)}")
    out: list[int] = []
    for item, size in zip(index, shape):
        if not isinstance(item, tuple):
            if not -size <= item < size:
                raise fixed(
                    f"index {item} is out of range for an axis of size {size}",
                    f"indices of this axis are {-size} to {size - 1}",
                )
            continue
        start, stop, step = item
        for what, bound in (("start", start), ("end", stop)):
            if bound is not None and not -size <= bound <= size:
                raise fixed(
                    f"slice [{index_text((item,))}]: {what} {bound} is out of range for an axis of size {size}",
                    f"slice bounds of this axis are {-size} to {size}",
                )
        if step is not None and not 1 <= step <= size:
            raise fixed(
                f"slice [{index_text((item,))}]: step {step} is out of range for an axis of size {size}",
                f"steps of this axis are 1 to {size}",
            )
        n = len(range(size)[slice(start, stop, step)])
        if n == 0:
            raise fixed(
                f"slice [{index_text((item,))}] of an axis of size {size} is empty",
                "a slice must keep at least one element: its start must come before its end",
            )
        out.append(n)
    return tuple(out) + shape[len(index) :]


def index_key(index: tuple[Any, ...]) -> tuple[Any, ...]:
    """``index`` as a Python index: slices for the ``(start, stop, step)`` items."""
    return tuple(slice(*item) if isinstance(item, tuple) else item for item in index)


def _matmul(mod: Any, a: Any, b: Any, ra: int, rb: int) -> Any:
    if ra == 1 and rb == 1:
        return _sum(mod, a * b, 1)
    if mod.__name__ == "sympy":
        return _sympy_matmul(mod, a, b, ra, rb)
    if rb == 1:
        return mod.matmul(a, b[..., None])[..., 0]
    if ra == 1:
        return mod.matmul(a[..., None, :], b)[..., 0, :]
    return mod.matmul(a, b)


def _sympy_matmul(S: Any, a: Any, b: Any, ra: int, rb: int) -> Any:
    """Each output element's sum built in one ``Add`` (``np.matmul`` adds pairwise: quadratic in SymPy)."""
    import numpy as np

    A = np.asarray(a, dtype=object)
    B = np.asarray(b, dtype=object)
    A2 = A.reshape(1, -1) if ra == 1 else A
    B2 = B.reshape(-1, 1) if rb == 1 else B
    out = np.empty((A2.shape[0], B2.shape[1]), dtype=object)
    for i in range(A2.shape[0]):
        for j in range(B2.shape[1]):
            row = [(A2[i, t], B2[t, j]) for t in range(A2.shape[1])]
            if len(row) > 1 and all(isinstance(x, S.Symbol) and isinstance(y, S.Symbol) and x is not y for x, y in row):
                # products of distinct symbols (the symbolic tape's): nothing to collect, built as they stand
                out[i, j] = S.Add._from_args([S.Mul._from_args((x, y), True) for x, y in row], True)
            else:
                out[i, j] = S.Add(*[x * y for x, y in row])
    return out.reshape(A.shape[:-1] + B.shape[1:])


def _mp_matmul(M: Any, a: Any, b: Any, ra: int, rb: int) -> Any:
    import numpy as np

    a = np.asarray(a, dtype=object)
    b = np.asarray(b, dtype=object)
    if ra == 1 and rb == 1:
        return _mp_sum(a * b, 1)
    return np.asarray(_matmul(np, a, b, ra, rb), dtype=object)


def _trailing_index(index: tuple[Any, ...], shape: Shape) -> tuple[Any, ...]:
    """``index`` applied to the per-sample axes, after any batch axes."""
    return index_key(index) + (slice(None),) * (len(shape) - len(index))


# --- vector-Jacobian rules (see Op.vjp) -------------------------------------------------


def _matmul_vjp(shapes: list[Shape], out: Shape) -> tuple[str, str]:
    """``a @ b`` for each pair of ranks: matrix @ matrix, matrix @ vector, vector @ matrix, vector @ vector."""
    ra, rb = len(shapes[0]), len(shapes[1])
    if ra == 2 and rb == 2:
        return ("g @ b.T", "a.T @ g")
    if ra == 2:
        return ("outer(g, b)", "a.T @ g")
    if rb == 2:
        return ("b @ g", "outer(a, g)")
    return ("g * b", "g * a")


def _index_vjp(shapes: list[Shape], out: Shape, index: tuple[Any, ...] = ()) -> tuple[str]:
    """``g`` put back where the index took it from: zeros elsewhere (``scatter``)."""
    shape = shapes[0]
    keep, start, step = [], [], []
    for item, size in zip(index, shape):
        if isinstance(item, tuple):
            r = range(size)[slice(*item)]
            keep.append(len(r))
            start.append(r.start)
            step.append(r.step)
        else:
            keep.append(1)
            start.append(item % size)
            step.append(1)
    rest = shape[len(index) :]
    keep += rest
    g = "g" if tuple(keep) == tuple(out) else f"reshape(g, {list(keep)})"
    if tuple(keep) == tuple(shape):
        return (g,)
    attrs = f"shape={list(shape)}"
    if any(start):
        attrs += f", start={start}"
    if any(s != 1 for s in step):
        attrs += f", step={step}"
    return (f"scatter({g}, {attrs})",)


def _dd_pow(D: Any, a: Any, b: Any) -> Any:
    """``a ** b`` in double-double for one integer exponent; anything else is left to mpmath."""
    n = D.integer(D.lift(b))
    return NotImplemented if n is None else D.power(a, n)


def _matmul_spec(ra: int, rb: int) -> str:
    """The ``einsum`` of ``a @ b`` for per-sample ranks ``ra`` and ``rb`` (vectors and matrices)."""
    left = "...ij" if ra == 2 else "...j"
    right = "...jk" if rb == 2 else "...j"
    out = "..." + ("i" if ra == 2 else "") + ("k" if rb == 2 else "")
    return f"{left},{right}->{out}"


# Operators (written as syntax, not calls). Precedence as Python's: + - 1, * / @ 2, unary - 3,
# ** 4 (right-associative; its exponent may be a unary minus), postfix .T and [i] 5.
elementwise("add", 2, lambda N, a, b: a + b, lambda T, a, b: a + b, lambda S, a, b: a + b, lambda M, a, b: _mp(M, operator.add, a, b), "a + b", notation="infix", symbol="+", precedence=1, associative=True, vjp=("g", "g"), dd=lambda D, a, b: D.plus(a, b))  # fmt: skip
elementwise("sub", 2, lambda N, a, b: a - b, lambda T, a, b: a - b, lambda S, a, b: a - b, lambda M, a, b: _mp(M, operator.sub, a, b), "a - b", notation="infix", symbol="-", precedence=1, vjp=("g", "-g"), dd=lambda D, a, b: D.minus(a, b))  # fmt: skip
elementwise("mul", 2, lambda N, a, b: a * b, lambda T, a, b: a * b, lambda S, a, b: a * b, lambda M, a, b: _mp(M, operator.mul, a, b), "a * b", notation="infix", symbol="*", precedence=2, associative=True, vjp=("g * b", "g * a"), dd=lambda D, a, b: D.mul(a, b))  # fmt: skip
elementwise("div", 2, lambda N, a, b: a / b, lambda T, a, b: a / b, lambda S, a, b: a / b, lambda M, a, b: _mp(M, operator.truediv, a, b), "a / b", notation="infix", symbol="/", precedence=2, vjp=("g / b", "-g * a / b**2"), dd=lambda D, a, b: D.div(a, b))  # fmt: skip
elementwise("pow", 2, lambda N, a, b: a**b, lambda T, a, b: a**b, lambda S, a, b: a**b, lambda M, a, b: _mp(M, operator.pow, a, b), "a ** b", notation="infix", symbol="**", precedence=4, right=True, vjp=("g * b * a**(b - 1)", "g * out * log(a)"), dd=_dd_pow)  # fmt: skip
elementwise("neg", 1, lambda N, a: -a, lambda T, a: -a, lambda S, a: -a, lambda M, a: _mp(M, operator.neg, a), "-a", notation="prefix", symbol="-", precedence=3, vjp=("-g",), dd=lambda D, a: D.neg(a))  # fmt: skip
structural(
    "matmul", 2,
    lambda N, args, shapes: _matmul(N, args[0], args[1], len(shapes[0]), len(shapes[1])),
    lambda T, args, shapes: _matmul(T, args[0], args[1], len(shapes[0]), len(shapes[1])),
    lambda S, args, shapes: _matmul(S, args[0], args[1], len(shapes[0]), len(shapes[1])),
    lambda M, args, shapes: _mp_matmul(M, args[0], args[1], len(shapes[0]), len(shapes[1])),
    _matmul_shape, "a @ b: matrix product of vectors and matrices",
    incremental=inc.matvec, notation="infix", symbol="@", precedence=2, vjp=_matmul_vjp,
    dd=lambda D, args, shapes: D.einsum(_matmul_spec(len(shapes[0]), len(shapes[1])), args[0], args[1]),
)  # fmt: skip
structural(
    "T", 1,
    lambda N, args, shapes: args[0] if len(shapes[0]) < 2 else N.swapaxes(args[0], -1, -2),
    lambda T, args, shapes: args[0] if len(shapes[0]) < 2 else args[0].transpose(-1, -2),
    lambda S, args, shapes: args[0] if len(shapes[0]) < 2 else args[0].T,
    lambda M, args, shapes: args[0] if len(shapes[0]) < 2 else _object(args[0]).swapaxes(-1, -2),
    _transpose_shape, "M.T: transpose (a vector is unchanged)",
    incremental=inc.transpose, notation="postfix", symbol=".T", precedence=5, vjp=("g.T",),
    dd=lambda D, args, shapes: args[0] if len(shapes[0]) < 2 else D.each(lambda x: x.swapaxes(-1, -2), args[0]),
)  # fmt: skip
structural(
    "index", 1,
    lambda N, args, shapes, index: args[0][(Ellipsis,) + _trailing_index(index, shapes[0])],
    lambda T, args, shapes, index: args[0][(Ellipsis,) + _trailing_index(index, shapes[0])],
    lambda S, args, shapes, index: _object(_object(args[0])[index_key(index)]),
    lambda M, args, shapes, index: _object(_object(args[0])[(Ellipsis,) + _trailing_index(index, shapes[0])]),
    lambda shape, index=(): index_shape(shape, index),
    "v[i], M[i, j], v[1:3], M[:, 0]: integer constant indices and slices (positive steps: v[::2])",
    incremental=inc.moves, attrs=(Attr("index", (), ("ints",)),), notation="index", symbol="[]", precedence=5, vjp=_index_vjp,
    dd=lambda D, args, shapes, index: D.each(lambda x: x[(Ellipsis,) + _trailing_index(index, shapes[0])], args[0]),
)  # fmt: skip
