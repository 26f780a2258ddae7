"""The one table of functions of the model language.

Every function, operator and structural op an expression can use has exactly
one entry in :data:`OPS`: its arity, its per-sample shape rule, its NumPy,
torch and SymPy forms, and where it has kinks. The interpreters
(``gradcheck/sources/*``) never special-case an op: adding a function means
adding one entry here and nothing else.

Conventions shared by every form:

* Values follow the *trailing-axes* convention: the last ``len(shape)`` axes of
  an array are the per-sample shape; any leading axes are batch axes (samples,
  perturbations) and broadcast. Elementwise forms receive arguments already
  aligned by the interpreter (see :func:`align`); structural forms receive the
  per-sample shapes of their arguments and reduce or index trailing axes only.
* A form receives the backend module first (``numpy``, ``torch`` or
  ``sympy``) so that this module imports none of them.
* SymPy forms work on NumPy object arrays of SymPy expressions (no batch axes).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

Shape = tuple[int, ...]


class ShapeError(ValueError):
    """A per-sample shape rule was violated; the message says how."""


@dataclass(frozen=True)
class Op:
    """One function of the model language.

    ``kind`` is ``"elementwise"`` (broadcasting, forms take aligned arrays) or
    ``"structural"`` (forms take ``(args, shapes, attrs)``). ``kink``, when
    set, maps the aligned NumPy argument values to an array whose zeros are
    the kinks (where the function is not differentiable) and whose sign says
    which smooth piece applies; ``convention`` says what each source returns
    at a kink.
    """

    name: str
    arity: int
    kind: str
    numpy: Callable[..., Any]
    torch: Callable[..., Any]
    sympy: Callable[..., Any]
    shape: Callable[..., Shape]
    doc: str
    kink: Callable[..., Any] | None = None
    convention: str = ""
    call: bool = True  # written as a call ``f(x)`` (False for operators)


# --- shape rules ----------------------------------------------------------


def broadcast(*shapes: Shape) -> Shape:
    """NumPy broadcasting of per-sample shapes."""
    ndim = max((len(s) for s in shapes), default=0)
    out = []
    for axis in range(ndim):
        sizes = {s[axis - ndim + len(s)] for s in shapes if axis - ndim + len(s) >= 0}
        sizes.discard(1)
        if len(sizes) > 1:
            shown = " and ".join(str(list(s)) for s in shapes)
            raise ShapeError(f"shapes {shown} do not broadcast")
        out.append(sizes.pop() if sizes else 1)
    return tuple(out)


def _scalar(*shapes: Shape) -> Shape:
    return ()


def _same(shape: Shape) -> Shape:
    if not shape:
        raise ShapeError("needs a vector, got a scalar")
    return shape


def _matmul_shape(a: Shape, b: Shape) -> Shape:
    if not (1 <= len(a) <= 2 and 1 <= len(b) <= 2):
        raise ShapeError(f"@ needs vectors or matrices, got shapes {list(a)} and {list(b)}")
    if a[-1] != b[0]:
        raise ShapeError(f"@ needs matching inner sizes, got shapes {list(a)} and {list(b)} ({a[-1]} != {b[0]})")
    return a[:-1] + b[1:]


def _dot_shape(a: Shape, b: Shape) -> Shape:
    if len(a) != 1 or a != b:
        raise ShapeError(f"dot needs two vectors of one length, got shapes {list(a)} and {list(b)}")
    return ()


def _transpose_shape(a: Shape) -> Shape:
    if len(a) > 2:
        raise ShapeError(f".T needs a vector or a matrix, got shape {list(a)}")
    return a[::-1]


def index_shape(shape: Shape, index: tuple[int, ...]) -> Shape:
    """Shape after ``v[i]`` / ``M[i, j]`` with integer constants."""
    if len(index) > len(shape):
        raise ShapeError(f"{len(index)} indices into a value of shape {list(shape)}")
    for i, size in zip(index, shape):
        if not -size <= i < size:
            raise ShapeError(f"index {i} is out of range for an axis of size {size}")
    return shape[len(index) :]


# --- helpers for the forms ------------------------------------------------


def align(arr: Any, rank: int, out_rank: int) -> Any:
    """Insert unit axes after the batch axes so per-sample ranks line up.

    A batched value of per-sample rank ``rank`` broadcasts against values of
    higher per-sample rank only once its batch axes are kept apart from its
    per-sample axes: ``(N,) + shape`` becomes ``(N, 1, ..., 1) + shape``.
    Plain numbers (no ``shape``) broadcast as they are.
    """
    shape = getattr(arr, "shape", None)
    if shape is None or rank == out_rank or len(shape) == rank:
        return arr
    batch = tuple(shape[: len(shape) - rank])
    return arr.reshape(batch + (1,) * (out_rank - rank) + tuple(shape[len(shape) - rank :]))


def _each(fn: Callable[..., Any], *args: Any) -> Any:
    """Apply a scalar SymPy function elementwise to object arrays."""
    import numpy as np

    out = np.frompyfunc(fn, len(args), 1)(*args)
    return np.asarray(out, dtype=object)


def _axes(rank: int) -> tuple[int, ...]:
    return tuple(range(-rank, 0))


def _sum(mod: Any, x: Any, rank: int) -> Any:
    if rank == 0:
        return x
    if mod.__name__ == "torch":
        return x.sum(dim=_axes(rank))
    import numpy as np

    if mod.__name__ != "sympy":
        return x.sum(axis=_axes(rank))
    # Note: one Add per output element; NumPy's object sum adds pairwise, which SymPy
    # re-flattens every time (quadratic in the length: seconds for a 1e3-term dot).
    arr = np.asarray(x, dtype=object)
    flat = arr.reshape(arr.shape[: arr.ndim - rank] + (-1,))
    out = np.empty(flat.shape[:-1], dtype=object)
    for idx in np.ndindex(*out.shape):
        out[idx] = mod.Add(*flat[idx])
    return out if out.ndim else out[()]


def _size(shape: Shape) -> int:
    n = 1
    for s in shape:
        n *= s
    return n


def _matmul(mod: Any, a: Any, b: Any, ra: int, rb: int) -> Any:
    if ra == 1 and rb == 1:
        return _sum(mod, a * b, 1)
    if mod.__name__ == "sympy":
        import numpy as np

        a2, b2 = (
            np.asarray(a, dtype=object).reshape((-1, a.shape[-1])),
            np.asarray(b, dtype=object).reshape((b.shape[0], -1)),
        )
        out = _sum(mod, (a2[:, None, :] * b2.T[None, :, :]), 1)  # one Add per element, not np.matmul's pairwise +
        return np.asarray(out, dtype=object).reshape(np.shape(a)[:-1] + np.shape(b)[1:])
    if rb == 1:
        return mod.matmul(a, b[..., None])[..., 0]
    if ra == 1:
        return mod.matmul(a[..., None, :], b)[..., 0, :]
    return mod.matmul(a, b)


def _softmax(mod: Any, x: Any) -> Any:
    if mod.__name__ == "sympy":
        import numpy as np

        ex = _each(mod.exp, x)
        total = ex.sum(axis=-1, keepdims=True)
        return np.asarray(ex / total, dtype=object)
    if mod.__name__ == "torch":
        return mod.softmax(x, dim=-1)
    shifted = x - x.max(axis=-1, keepdims=True).real
    ex = mod.exp(shifted)
    return ex / ex.sum(axis=-1, keepdims=True)


def _logsumexp(mod: Any, x: Any, rank: int) -> Any:
    if mod.__name__ == "torch":
        return mod.logsumexp(x.reshape(x.shape[: x.dim() - rank] + (-1,)), dim=-1)
    if mod.__name__ == "sympy":
        return _each(mod.log, _sum(mod, _each(mod.exp, x), rank))
    flat = x.reshape(x.shape[: x.ndim - rank] + (-1,))
    top = flat.real.max(axis=-1, keepdims=True)
    return mod.log(mod.exp(flat - top).sum(axis=-1)) + top[..., 0]


# --- the table ------------------------------------------------------------

OPS: dict[str, Op] = {}


def _add(op: Op) -> None:
    assert op.name not in OPS, op.name
    OPS[op.name] = op


def elementwise(
    name: str,
    arity: int,
    numpy: Callable[..., Any],
    torch: Callable[..., Any],
    sympy: Callable[..., Any],
    doc: str,
    *,
    kink: Callable[..., Any] | None = None,
    convention: str = "",
    call: bool = True,
) -> None:
    _add(Op(name, arity, "elementwise", numpy, torch, sympy, broadcast, doc, kink, convention, call))


def structural(
    name: str,
    arity: int,
    numpy: Callable[..., Any],
    torch: Callable[..., Any],
    sympy: Callable[..., Any],
    shape: Callable[..., Shape],
    doc: str,
    *,
    call: bool = True,
) -> None:
    _add(Op(name, arity, "structural", numpy, torch, sympy, shape, doc, None, "", call))


# Operators (written as syntax, not calls).
elementwise("add", 2, lambda N, a, b: a + b, lambda T, a, b: a + b, lambda S, a, b: a + b, "a + b", call=False)
elementwise("sub", 2, lambda N, a, b: a - b, lambda T, a, b: a - b, lambda S, a, b: a - b, "a - b", call=False)
elementwise("mul", 2, lambda N, a, b: a * b, lambda T, a, b: a * b, lambda S, a, b: a * b, "a * b", call=False)
elementwise("div", 2, lambda N, a, b: a / b, lambda T, a, b: a / b, lambda S, a, b: a / b, "a / b", call=False)
elementwise("pow", 2, lambda N, a, b: a**b, lambda T, a, b: a**b, lambda S, a, b: a**b, "a ** b", call=False)
elementwise("neg", 1, lambda N, a: -a, lambda T, a: -a, lambda S, a: -a, "-a", call=False)
structural(
    "matmul", 2,
    lambda N, args, shapes, attrs: _matmul(N, args[0], args[1], len(shapes[0]), len(shapes[1])),
    lambda T, args, shapes, attrs: _matmul(T, args[0], args[1], len(shapes[0]), len(shapes[1])),
    lambda S, args, shapes, attrs: _matmul(S, args[0], args[1], len(shapes[0]), len(shapes[1])),
    _matmul_shape, "a @ b: matrix product of vectors and matrices", call=False,
)  # fmt: skip
structural(
    "T", 1,
    lambda N, args, shapes, attrs: args[0] if len(shapes[0]) < 2 else N.swapaxes(args[0], -1, -2),
    lambda T, args, shapes, attrs: args[0] if len(shapes[0]) < 2 else args[0].transpose(-1, -2),
    lambda S, args, shapes, attrs: args[0] if len(shapes[0]) < 2 else args[0].T,
    _transpose_shape, "M.T: transpose of a matrix (a vector is unchanged)", call=False,
)  # fmt: skip
structural(
    "index", 1,
    lambda N, args, shapes, attrs: args[0][(Ellipsis,) + _trailing_index(attrs, shapes[0])],
    lambda T, args, shapes, attrs: args[0][(Ellipsis,) + _trailing_index(attrs, shapes[0])],
    lambda S, args, shapes, attrs: _object(args[0][attrs]),
    lambda shape, attrs=(): index_shape(shape, attrs), "v[i], M[i, j]: integer constant indices",
    call=False,
)  # fmt: skip


def _trailing_index(index: tuple[int, ...], shape: Shape) -> tuple[Any, ...]:
    """``index`` applied to the per-sample axes, after any batch axes."""
    return tuple(index) + (slice(None),) * (len(shape) - len(index))


def _object(x: Any) -> Any:
    import numpy as np

    return np.asarray(x, dtype=object)


# Elementwise functions: one line each. `N` is numpy, `T` torch, `S` sympy.
# Note: numpy forms must accept complex input where the function is analytic
# (the complex-step finite difference uses them).
elementwise("exp", 1, lambda N, x: N.exp(x), lambda T, x: T.exp(x), lambda S, x: _each(S.exp, x), "e to the x")
elementwise("log", 1, lambda N, x: N.log(x), lambda T, x: T.log(x), lambda S, x: _each(S.log, x), "natural logarithm")
elementwise("log1p", 1, lambda N, x: N.log1p(x), lambda T, x: T.log1p(x), lambda S, x: _each(lambda a: S.log(1 + a), x), "log(1 + x), accurate for small x")  # fmt: skip
elementwise("expm1", 1, lambda N, x: N.expm1(x), lambda T, x: T.expm1(x), lambda S, x: _each(lambda a: S.exp(a) - 1, x), "exp(x) - 1, accurate for small x")  # fmt: skip
elementwise("sqrt", 1, lambda N, x: N.sqrt(x), lambda T, x: T.sqrt(x), lambda S, x: _each(S.sqrt, x), "square root")
elementwise(
    "abs", 1, lambda N, x: N.abs(x), lambda T, x: T.abs(x), lambda S, x: _each(S.Abs, x), "absolute value",
    kink=lambda N, x: x,
    convention="torch: abs'(0) = 0; SymPy: sign(0) = 0; central difference: the average of both sides",
)  # fmt: skip
elementwise("sin", 1, lambda N, x: N.sin(x), lambda T, x: T.sin(x), lambda S, x: _each(S.sin, x), "sine")
elementwise("cos", 1, lambda N, x: N.cos(x), lambda T, x: T.cos(x), lambda S, x: _each(S.cos, x), "cosine")
elementwise("tan", 1, lambda N, x: N.tan(x), lambda T, x: T.tan(x), lambda S, x: _each(S.tan, x), "tangent")
elementwise("asin", 1, lambda N, x: N.arcsin(x), lambda T, x: T.asin(x), lambda S, x: _each(S.asin, x), "inverse sine")
elementwise("acos", 1, lambda N, x: N.arccos(x), lambda T, x: T.acos(x), lambda S, x: _each(S.acos, x), "inverse cosine")  # fmt: skip
elementwise("atan", 1, lambda N, x: N.arctan(x), lambda T, x: T.atan(x), lambda S, x: _each(S.atan, x), "inverse tangent")  # fmt: skip
elementwise("sinh", 1, lambda N, x: N.sinh(x), lambda T, x: T.sinh(x), lambda S, x: _each(S.sinh, x), "hyperbolic sine")
elementwise("cosh", 1, lambda N, x: N.cosh(x), lambda T, x: T.cosh(x), lambda S, x: _each(S.cosh, x), "hyperbolic cosine")  # fmt: skip
elementwise("tanh", 1, lambda N, x: N.tanh(x), lambda T, x: T.tanh(x), lambda S, x: _each(S.tanh, x), "hyperbolic tangent")  # fmt: skip
elementwise("asinh", 1, lambda N, x: N.arcsinh(x), lambda T, x: T.asinh(x), lambda S, x: _each(S.asinh, x), "inverse hyperbolic sine")  # fmt: skip
elementwise("acosh", 1, lambda N, x: N.arccosh(x), lambda T, x: T.acosh(x), lambda S, x: _each(S.acosh, x), "inverse hyperbolic cosine")  # fmt: skip
elementwise("atanh", 1, lambda N, x: N.arctanh(x), lambda T, x: T.atanh(x), lambda S, x: _each(S.atanh, x), "inverse hyperbolic tangent")  # fmt: skip
elementwise(
    "sigmoid", 1, lambda N, x: 1 / (1 + N.exp(-x)), lambda T, x: T.sigmoid(x),
    lambda S, x: _each(lambda a: 1 / (1 + S.exp(-a)), x), "logistic function 1 / (1 + exp(-x))",
)  # fmt: skip
elementwise(
    "softplus", 1, lambda N, x: N.log1p(N.exp(-N.abs(x))) + N.maximum(x, 0) if not N.iscomplexobj(x) else N.log(1 + N.exp(x)),
    lambda T, x: T.nn.functional.softplus(x),
    lambda S, x: _each(lambda a: S.log(1 + S.exp(a)), x), "log(1 + exp(x))",
)  # fmt: skip
elementwise(
    "relu", 1, lambda N, x: N.maximum(x, 0), lambda T, x: T.relu(x), lambda S, x: _each(lambda a: S.Max(0, a), x),
    "max(x, 0)",
    kink=lambda N, x: x,
    convention="torch: relu'(0) = 0; SymPy: Heaviside(0) = 1/2; central difference: the average of both sides",
)  # fmt: skip
elementwise("erf", 1, lambda N, x: _np_erf(x), lambda T, x: T.erf(x), lambda S, x: _each(S.erf, x), "error function")
elementwise(
    "max", 2, lambda N, a, b: N.maximum(a, b), lambda T, a, b: T.maximum(T.as_tensor(a), T.as_tensor(b)),
    lambda S, a, b: _each(S.Max, a, b), "the larger of a and b",
    kink=lambda N, a, b: a - b,
    convention="torch: a tie splits the gradient evenly (1/2 each); SymPy: Heaviside(0) = 1/2; central difference: the average of both sides",
)  # fmt: skip
elementwise(
    "min", 2, lambda N, a, b: N.minimum(a, b), lambda T, a, b: T.minimum(T.as_tensor(a), T.as_tensor(b)),
    lambda S, a, b: _each(S.Min, a, b), "the smaller of a and b",
    kink=lambda N, a, b: a - b,
    convention="torch: a tie splits the gradient evenly (1/2 each); SymPy: Heaviside(0) = 1/2; central difference: the average of both sides",
)  # fmt: skip
elementwise(
    "atan2", 2, lambda N, a, b: N.arctan2(a, b), lambda T, a, b: T.atan2(T.as_tensor(a), T.as_tensor(b)),
    lambda S, a, b: _each(S.atan2, a, b), "angle of the point (b, a)",
)  # fmt: skip

# Reductions and vector functions.
structural(
    "sum", 1,
    lambda N, args, shapes, attrs: _sum(N, args[0], len(shapes[0])),
    lambda T, args, shapes, attrs: _sum(T, args[0], len(shapes[0])),
    lambda S, args, shapes, attrs: _object(_sum(S, args[0], len(shapes[0]))),
    _scalar, "sum of all elements",
)  # fmt: skip
structural(
    "mean", 1,
    lambda N, args, shapes, attrs: _sum(N, args[0], len(shapes[0])) / _size(shapes[0]),
    lambda T, args, shapes, attrs: _sum(T, args[0], len(shapes[0])) / _size(shapes[0]),
    lambda S, args, shapes, attrs: _object(_sum(S, args[0], len(shapes[0])) / S.Integer(_size(shapes[0]))),
    _scalar, "mean of all elements",
)  # fmt: skip
structural(
    "dot", 2,
    lambda N, args, shapes, attrs: _sum(N, args[0] * args[1], 1),
    lambda T, args, shapes, attrs: _sum(T, args[0] * args[1], 1),
    lambda S, args, shapes, attrs: _object(_sum(S, args[0] * args[1], 1)),
    _dot_shape, "dot product of two vectors",
)  # fmt: skip
structural(
    "norm", 1,
    lambda N, args, shapes, attrs: N.sqrt(_sum(N, args[0] * args[0], len(shapes[0]))),
    lambda T, args, shapes, attrs: T.sqrt(_sum(T, args[0] * args[0], len(shapes[0]))),
    lambda S, args, shapes, attrs: _each(S.sqrt, _object(_sum(S, args[0] * args[0], len(shapes[0])))),
    _scalar, "Euclidean norm sqrt(sum(v**2))",
)  # fmt: skip
structural(
    "logsumexp", 1,
    lambda N, args, shapes, attrs: _logsumexp(N, args[0], len(shapes[0])),
    lambda T, args, shapes, attrs: _logsumexp(T, args[0], len(shapes[0])),
    lambda S, args, shapes, attrs: _logsumexp(S, args[0], len(shapes[0])),
    _scalar, "log(sum(exp(v))), computed without overflow",
)  # fmt: skip
structural(
    "softmax", 1,
    lambda N, args, shapes, attrs: _softmax(N, args[0]),
    lambda T, args, shapes, attrs: _softmax(T, args[0]),
    lambda S, args, shapes, attrs: _softmax(S, args[0]),
    _same, "exp(v) / sum(exp(v)) along the last axis",
)  # fmt: skip


def _np_erf(x: Any) -> Any:
    import math

    import numpy as np

    if np.iscomplexobj(x):
        raise TypeError("erf has no complex form here")
    return np.vectorize(math.erf, otypes=[x.dtype if hasattr(x, "dtype") else float])(x)


#: Functions a model file may call, by name.
FUNCTIONS: dict[str, Op] = {name: op for name, op in OPS.items() if op.call}
#: Names of constants and their values.
CONSTANTS: dict[str, float] = {"pi": 3.141592653589793, "e": 2.718281828459045}
#: Ops that are analytic everywhere they are defined (the complex step is exact for them).
NOT_ANALYTIC = frozenset({"abs", "relu", "max", "min", "erf", "softplus", "atan2"})
