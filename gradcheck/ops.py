"""The one table of functions of the model language.

Every function, operator and structural op an expression can use has exactly
one entry in :data:`OPS` (an :class:`Op`), and the entry holds everything
about it: name, arity and keyword attributes, how it is written (a call, or an
operator with its symbol and precedence: the parser and ``unparse`` build their
tables from the entries), its per-sample shape rule, its NumPy, torch, SymPy
and mpmath forms, whether it is analytic (the complex step applies), its kink
rule and convention, its incremental (perturbation) rule or ``DENSE``, and its
doc line (the functions table of ``docs/model-file.md`` is
:func:`markdown_table`). Nothing outside this module names an op: adding a
function means adding one entry here and nothing else, and
:func:`register_function` adds an elementwise one from Python.

Conventions shared by every form:

* Values follow the *trailing-axes* convention: the last ``len(shape)`` axes of
  an array are the per-sample shape; any leading axes are batch axes (samples,
  perturbations) and broadcast. Elementwise forms receive arguments already
  aligned by the interpreter (see :func:`align`) and the node's attributes as
  keywords: ``form(mod, *args, **attrs)``; structural forms receive the
  per-sample shapes of their arguments: ``form(mod, args, shapes, **attrs)``,
  and reduce or index trailing axes only. Shape rules are
  ``shape(*shapes, **attrs)``; kink rules ``kink(numpy, *args)``.
* A form receives the backend module first (``numpy``, ``torch``, ``sympy`` or
  ``mpmath``) so that this module imports none of them.
* SymPy forms work on NumPy object arrays of SymPy expressions (no batch axes).
* mpmath forms work on mpmath numbers or NumPy object arrays of them (batch
  axes first, as for NumPy), at the caller's ``mpmath.mp.dps``. A value that
  is undefined or infinite becomes ``mpmath.nan`` (per element, so per sample),
  and nan stays nan through every later op: the exact loss is decided on the
  expression as written, ``0 * log(0)`` is nan.
"""

from __future__ import annotations

import keyword
import operator
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from . import incremental as inc
from .errors import ModelError
from .layout import align

Shape = tuple[int, ...]
#: ``Op.incremental`` of an op that has no perturbation rule: evaluate it densely.
DENSE = "dense"

__all__ = [
    "CONSTANTS",
    "DENSE",
    "FUNCTIONS",
    "OPS",
    "Attr",
    "Op",
    "Shape",
    "ShapeError",
    "align",
    "broadcast",
    "index_shape",
    "markdown_table",
    "register_function",
    "replace_table",
]


class ShapeError(ValueError):
    """A per-sample shape rule was violated; the message says how."""


_KIND_TEXT = {"int": "an integer", "float": "a number", "bool": "True or False", "ints": "a list of integers"}


@dataclass(frozen=True)
class Attr:
    """A keyword argument of an op: ``name=default``, of one of the ``kinds``.

    ``kinds`` are ``"int"``, ``"float"`` (an int is accepted and made a
    float), ``"bool"`` and ``"ints"`` (a list of integers, held as a tuple).
    A default of ``None`` means "not given" (e.g. ``axis``: all axes).
    """

    name: str
    default: Any
    kinds: tuple[str, ...]
    doc: str = ""

    def describe(self) -> str:
        return " or ".join(_KIND_TEXT[k] for k in self.kinds)

    def coerce(self, value: Any) -> Any:
        """``value`` as this attribute holds it; :class:`TypeError` (with a message) when not allowed."""
        if isinstance(value, bool):
            if "bool" in self.kinds:
                return value
        elif isinstance(value, int):
            if "int" in self.kinds:
                return value
            if "float" in self.kinds:
                return float(value)
        elif isinstance(value, float):
            if "float" in self.kinds:
                return value
        elif isinstance(value, (list, tuple)):
            if "ints" in self.kinds and all(isinstance(v, int) and not isinstance(v, bool) for v in value):
                return tuple(value)
        raise TypeError(f"{self.name}= takes {self.describe()}, got {_show(value)}")


def _show(value: Any) -> str:
    if isinstance(value, tuple):
        return "[" + ", ".join(map(str, value)) + "]"
    return repr(value)


Rule = Callable[..., Any]


@dataclass(frozen=True)
class Op:
    """One function of the model language, and everything about it.

    ``kind`` is ``"elementwise"`` (broadcasting, forms take aligned arrays) or
    ``"structural"`` (forms take ``(args, shapes, **attrs)``). ``arity`` is
    the number of positional operands (the least number when ``variadic``).
    ``attrs`` are its keyword arguments. ``kink``, when set, maps the aligned
    NumPy argument values to an array whose zeros are the kinks (where the
    function is not differentiable) and whose sign says which smooth piece
    applies; ``kink_doc`` says where in words and ``convention`` what each
    source returns at a kink. ``analytic`` says the NumPy form is analytic
    wherever the function is defined and accepts complex input, so the
    complex-step finite difference is exact for it. ``incremental`` is the
    perturbation rule (a function of :mod:`gradcheck.incremental`) or
    :data:`DENSE`. ``notation`` is ``"call"`` (``f(x)``), ``"infix"``,
    ``"prefix"``, ``"postfix"`` (``x.T``: ``symbol`` is ``".T"``) or
    ``"index"``; operators carry their ``symbol`` and ``precedence`` (higher
    binds tighter; ``right`` for right-associative, ``associative`` when
    ``a op (b op c)`` may be printed without parentheses).
    """

    name: str
    arity: int
    kind: str
    numpy: Callable[..., Any]
    torch: Callable[..., Any]
    sympy: Callable[..., Any]
    mpmath: Callable[..., Any]
    shape: Callable[..., Shape]
    doc: str
    kink: Callable[..., Any] | None = None
    kink_doc: str = ""
    convention: str = ""
    analytic: bool = True
    incremental: Rule | str = DENSE
    attrs: tuple[Attr, ...] = ()
    variadic: bool = False
    notation: str = "call"
    symbol: str = ""
    precedence: int = 0
    right: bool = False
    associative: bool = False
    builtin: bool = True
    defaults: Mapping[str, Any] = field(default_factory=dict, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "defaults", {a.name: a.default for a in self.attrs})

    @property
    def call(self) -> bool:
        """Written as a call ``f(x)`` (False for operators)."""
        return self.notation == "call"

    def attr(self, name: str) -> Attr | None:
        return next((a for a in self.attrs if a.name == name), None)

    def bind(self, given: tuple[tuple[str, Any], ...] | Mapping[str, Any] = ()) -> dict[str, Any]:
        """Every attribute's value: the defaults, overridden by the ``given`` ``(name, value)`` pairs."""
        out = dict(self.defaults)
        out.update(dict(given))
        return out

    def signature(self) -> str:
        """How the function is written, e.g. ``max(a, b)`` or ``sum(v)``."""
        if self.kind == "elementwise":
            names = ["x"] if self.arity == 1 else ["a", "b", "c", "d"][: self.arity]
        else:
            names = ["v"] if self.arity == 1 else ["a", "b", "c", "d"][: self.arity]
        if self.variadic:
            names.append("...")
        names += [f"{a.name}={_show(a.default)}" for a in self.attrs]
        return f"{self.name}({', '.join(names)})"


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


def _scalar(*shapes: Shape, **attrs: Any) -> Shape:
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
            out[i, j] = S.Add(*[A2[i, t] * B2[t, j] for t in range(A2.shape[1])])
    return out.reshape(A.shape[:-1] + B.shape[1:])


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


# --- mpmath: exact values on the expression as written ---------------------


def _guarded(M: Any, fn: Callable[..., Any]) -> Callable[..., Any]:
    """``fn`` on mpmath numbers, giving ``nan`` where undefined, infinite or not real, and for nan input."""

    def one(*xs: Any) -> Any:
        for x in xs:
            if M.isnan(x):
                return M.nan
        try:
            y = fn(*xs)
        except (ZeroDivisionError, ValueError, OverflowError):
            return M.nan
        if isinstance(y, M.mpc):
            if y.imag != 0:
                return M.nan
            y = y.real
        elif not isinstance(y, M.mpf):
            y = M.mpf(y)
        if not M.isfinite(y):
            return M.nan
        return y

    return one


def _mp(M: Any, fn: Callable[..., Any], *args: Any) -> Any:
    """Apply ``fn`` (guarded, see :func:`_guarded`) elementwise to mpmath numbers or object arrays."""
    import numpy as np

    g = _guarded(M, fn)
    if not any(isinstance(a, np.ndarray) for a in args):
        return g(*args)
    return np.asarray(np.frompyfunc(g, len(args), 1)(*args), dtype=object)


def _mp_atan2(M: Any) -> Callable[[Any, Any], Any]:
    def atan2(a: Any, b: Any) -> Any:
        if a == 0 and b == 0:
            return M.nan  # the angle of the origin is undefined (SymPy: nan)
        return M.atan2(a, b)

    return atan2


def _mp_sum(x: Any, rank: int) -> Any:
    """Sum over the last ``rank`` axes of an object array (nan stays nan)."""
    import numpy as np

    if rank == 0:
        return x
    out = np.asarray(x, dtype=object).sum(axis=_axes(rank))
    return np.asarray(out, dtype=object) if isinstance(out, np.ndarray) else out


def _mp_matmul(M: Any, a: Any, b: Any, ra: int, rb: int) -> Any:
    import numpy as np

    a = np.asarray(a, dtype=object)
    b = np.asarray(b, dtype=object)
    if ra == 1 and rb == 1:
        return _mp_sum(a * b, 1)
    return np.asarray(_matmul(np, a, b, ra, rb), dtype=object)


def _mp_softmax(M: Any, x: Any) -> Any:
    import numpy as np

    ex = _mp(M, M.exp, x)
    return _mp(M, operator.truediv, ex, np.asarray(ex, dtype=object).sum(axis=-1, keepdims=True))


def _mp_logsumexp(M: Any, x: Any, rank: int) -> Any:
    return _mp(M, M.log, _mp_sum(_mp(M, M.exp, x), rank))


# --- the table ------------------------------------------------------------

OPS: dict[str, Op] = {}
#: Functions a model file may call, by name (kept in step with :data:`OPS`).
FUNCTIONS: dict[str, Op] = {}
#: Names of constants and their values.
CONSTANTS: dict[str, float] = {"pi": 3.141592653589793, "e": 2.718281828459045}


def _add(op: Op) -> None:
    assert op.name not in OPS, op.name
    OPS[op.name] = op
    if op.call:
        FUNCTIONS[op.name] = op


def _broadcast_rule(*shapes: Shape, **attrs: Any) -> Shape:
    return broadcast(*shapes)


def elementwise(
    name: str,
    arity: int,
    numpy: Callable[..., Any],
    torch: Callable[..., Any],
    sympy: Callable[..., Any],
    mpmath: Callable[..., Any],
    doc: str,
    *,
    kink: Callable[..., Any] | None = None,
    kink_doc: str = "",
    convention: str = "",
    analytic: bool = True,
    attrs: tuple[Attr, ...] = (),
    notation: str = "call",
    symbol: str = "",
    precedence: int = 0,
    right: bool = False,
    associative: bool = False,
) -> None:
    """Add an elementwise (broadcasting) op; it gets the shared elementwise perturbation rule."""
    _add(
        Op(
            name, arity, "elementwise", numpy, torch, sympy, mpmath, _broadcast_rule, doc,
            kink=kink, kink_doc=kink_doc, convention=convention, analytic=analytic,
            incremental=inc.elementwise, attrs=attrs, notation=notation, symbol=symbol,
            precedence=precedence, right=right, associative=associative,
        )
    )  # fmt: skip


def structural(
    name: str,
    arity: int,
    numpy: Callable[..., Any],
    torch: Callable[..., Any],
    sympy: Callable[..., Any],
    mpmath: Callable[..., Any],
    shape: Callable[..., Shape],
    doc: str,
    *,
    incremental: Rule | str,
    attrs: tuple[Attr, ...] = (),
    variadic: bool = False,
    notation: str = "call",
    symbol: str = "",
    precedence: int = 0,
) -> None:
    """Add a structural op (reductions, products, indexing); ``incremental`` is its rule or :data:`DENSE`."""
    _add(
        Op(
            name, arity, "structural", numpy, torch, sympy, mpmath, shape, doc,
            incremental=incremental, attrs=attrs, variadic=variadic, notation=notation,
            symbol=symbol, precedence=precedence,
        )
    )  # fmt: skip


# Operators (written as syntax, not calls). Precedence as Python's: + - 1, * / @ 2, unary - 3,
# ** 4 (right-associative; its exponent may be a unary minus), postfix .T and [i] 5.
elementwise("add", 2, lambda N, a, b: a + b, lambda T, a, b: a + b, lambda S, a, b: a + b, lambda M, a, b: _mp(M, operator.add, a, b), "a + b", notation="infix", symbol="+", precedence=1, associative=True)  # fmt: skip
elementwise("sub", 2, lambda N, a, b: a - b, lambda T, a, b: a - b, lambda S, a, b: a - b, lambda M, a, b: _mp(M, operator.sub, a, b), "a - b", notation="infix", symbol="-", precedence=1)  # fmt: skip
elementwise("mul", 2, lambda N, a, b: a * b, lambda T, a, b: a * b, lambda S, a, b: a * b, lambda M, a, b: _mp(M, operator.mul, a, b), "a * b", notation="infix", symbol="*", precedence=2, associative=True)  # fmt: skip
elementwise("div", 2, lambda N, a, b: a / b, lambda T, a, b: a / b, lambda S, a, b: a / b, lambda M, a, b: _mp(M, operator.truediv, a, b), "a / b", notation="infix", symbol="/", precedence=2)  # fmt: skip
elementwise("pow", 2, lambda N, a, b: a**b, lambda T, a, b: a**b, lambda S, a, b: a**b, lambda M, a, b: _mp(M, operator.pow, a, b), "a ** b", notation="infix", symbol="**", precedence=4, right=True)  # fmt: skip
elementwise("neg", 1, lambda N, a: -a, lambda T, a: -a, lambda S, a: -a, lambda M, a: _mp(M, operator.neg, a), "-a", notation="prefix", symbol="-", precedence=3)  # fmt: skip
structural(
    "matmul", 2,
    lambda N, args, shapes: _matmul(N, args[0], args[1], len(shapes[0]), len(shapes[1])),
    lambda T, args, shapes: _matmul(T, args[0], args[1], len(shapes[0]), len(shapes[1])),
    lambda S, args, shapes: _matmul(S, args[0], args[1], len(shapes[0]), len(shapes[1])),
    lambda M, args, shapes: _mp_matmul(M, args[0], args[1], len(shapes[0]), len(shapes[1])),
    _matmul_shape, "a @ b: matrix product of vectors and matrices",
    incremental=inc.matvec, notation="infix", symbol="@", precedence=2,
)  # fmt: skip
structural(
    "T", 1,
    lambda N, args, shapes: args[0] if len(shapes[0]) < 2 else N.swapaxes(args[0], -1, -2),
    lambda T, args, shapes: args[0] if len(shapes[0]) < 2 else args[0].transpose(-1, -2),
    lambda S, args, shapes: args[0] if len(shapes[0]) < 2 else args[0].T,
    lambda M, args, shapes: args[0] if len(shapes[0]) < 2 else _object(args[0]).swapaxes(-1, -2),
    _transpose_shape, "M.T: transpose (a vector is unchanged)",
    incremental=inc.transpose, notation="postfix", symbol=".T", precedence=5,
)  # fmt: skip
structural(
    "index", 1,
    lambda N, args, shapes, index: args[0][(Ellipsis,) + _trailing_index(index, shapes[0])],
    lambda T, args, shapes, index: args[0][(Ellipsis,) + _trailing_index(index, shapes[0])],
    lambda S, args, shapes, index: _object(args[0][index]),
    lambda M, args, shapes, index: _object(_object(args[0])[(Ellipsis,) + _trailing_index(index, shapes[0])]),
    lambda shape, index=(): index_shape(shape, index), "v[i], M[i, j]: integer constant indices",
    incremental=inc.index, attrs=(Attr("index", (), ("ints",)),), notation="index", symbol="[]", precedence=5,
)  # fmt: skip


def _trailing_index(index: tuple[int, ...], shape: Shape) -> tuple[Any, ...]:
    """``index`` applied to the per-sample axes, after any batch axes."""
    return tuple(index) + (slice(None),) * (len(shape) - len(index))


def _object(x: Any) -> Any:
    import numpy as np

    return np.asarray(x, dtype=object)


# Elementwise functions: one line each. `N` is numpy, `T` torch, `S` sympy, `M` mpmath.
# Note: numpy forms must accept complex input where the function is analytic
# (the complex-step finite difference uses them).
elementwise("exp", 1, lambda N, x: N.exp(x), lambda T, x: T.exp(x), lambda S, x: _each(S.exp, x), lambda M, x: _mp(M, M.exp, x), "e to the x")  # fmt: skip
elementwise("log", 1, lambda N, x: N.log(x), lambda T, x: T.log(x), lambda S, x: _each(S.log, x), lambda M, x: _mp(M, M.log, x), "natural logarithm")  # fmt: skip
elementwise("log1p", 1, lambda N, x: N.log1p(x), lambda T, x: T.log1p(x), lambda S, x: _each(lambda a: S.log(1 + a), x), lambda M, x: _mp(M, M.log1p, x), "log(1 + x), accurate for small x")  # fmt: skip
elementwise("expm1", 1, lambda N, x: N.expm1(x), lambda T, x: T.expm1(x), lambda S, x: _each(lambda a: S.exp(a) - 1, x), lambda M, x: _mp(M, M.expm1, x), "exp(x) - 1, accurate for small x")  # fmt: skip
elementwise("sqrt", 1, lambda N, x: N.sqrt(x), lambda T, x: T.sqrt(x), lambda S, x: _each(S.sqrt, x), lambda M, x: _mp(M, M.sqrt, x), "square root")  # fmt: skip
elementwise(
    "abs", 1, lambda N, x: N.abs(x), lambda T, x: T.abs(x), lambda S, x: _each(S.Abs, x), lambda M, x: _mp(M, M.fabs, x),
    "absolute value",
    kink=lambda N, x: x, kink_doc="at 0", analytic=False,
    convention="torch: abs'(0) = 0; SymPy: sign(0) = 0; central difference: the average of both sides",
)  # fmt: skip
elementwise("sin", 1, lambda N, x: N.sin(x), lambda T, x: T.sin(x), lambda S, x: _each(S.sin, x), lambda M, x: _mp(M, M.sin, x), "sine")  # fmt: skip
elementwise("cos", 1, lambda N, x: N.cos(x), lambda T, x: T.cos(x), lambda S, x: _each(S.cos, x), lambda M, x: _mp(M, M.cos, x), "cosine")  # fmt: skip
elementwise("tan", 1, lambda N, x: N.tan(x), lambda T, x: T.tan(x), lambda S, x: _each(S.tan, x), lambda M, x: _mp(M, M.tan, x), "tangent")  # fmt: skip
elementwise("asin", 1, lambda N, x: N.arcsin(x), lambda T, x: T.asin(x), lambda S, x: _each(S.asin, x), lambda M, x: _mp(M, M.asin, x), "inverse sine")  # fmt: skip
elementwise("acos", 1, lambda N, x: N.arccos(x), lambda T, x: T.acos(x), lambda S, x: _each(S.acos, x), lambda M, x: _mp(M, M.acos, x), "inverse cosine")  # fmt: skip
elementwise("atan", 1, lambda N, x: N.arctan(x), lambda T, x: T.atan(x), lambda S, x: _each(S.atan, x), lambda M, x: _mp(M, M.atan, x), "inverse tangent")  # fmt: skip
elementwise("sinh", 1, lambda N, x: N.sinh(x), lambda T, x: T.sinh(x), lambda S, x: _each(S.sinh, x), lambda M, x: _mp(M, M.sinh, x), "hyperbolic sine")  # fmt: skip
elementwise("cosh", 1, lambda N, x: N.cosh(x), lambda T, x: T.cosh(x), lambda S, x: _each(S.cosh, x), lambda M, x: _mp(M, M.cosh, x), "hyperbolic cosine")  # fmt: skip
elementwise("tanh", 1, lambda N, x: N.tanh(x), lambda T, x: T.tanh(x), lambda S, x: _each(S.tanh, x), lambda M, x: _mp(M, M.tanh, x), "hyperbolic tangent")  # fmt: skip
elementwise("asinh", 1, lambda N, x: N.arcsinh(x), lambda T, x: T.asinh(x), lambda S, x: _each(S.asinh, x), lambda M, x: _mp(M, M.asinh, x), "inverse hyperbolic sine")  # fmt: skip
elementwise("acosh", 1, lambda N, x: N.arccosh(x), lambda T, x: T.acosh(x), lambda S, x: _each(S.acosh, x), lambda M, x: _mp(M, M.acosh, x), "inverse hyperbolic cosine")  # fmt: skip
elementwise("atanh", 1, lambda N, x: N.arctanh(x), lambda T, x: T.atanh(x), lambda S, x: _each(S.atanh, x), lambda M, x: _mp(M, M.atanh, x), "inverse hyperbolic tangent")  # fmt: skip
elementwise(
    "sigmoid", 1, lambda N, x: 1 / (1 + N.exp(-x)), lambda T, x: T.sigmoid(x),
    lambda S, x: _each(lambda a: 1 / (1 + S.exp(-a)), x), lambda M, x: _mp(M, lambda a: 1 / (1 + M.exp(-a)), x),
    "logistic function 1 / (1 + exp(-x))",
)  # fmt: skip
elementwise(
    "softplus", 1, lambda N, x: N.log1p(N.exp(-N.abs(x))) + N.maximum(x, 0) if not N.iscomplexobj(x) else N.log(1 + N.exp(x)),
    lambda T, x: T.nn.functional.softplus(x),
    lambda S, x: _each(lambda a: S.log(1 + S.exp(a)), x), lambda M, x: _mp(M, lambda a: M.log1p(M.exp(a)), x),
    "log(1 + exp(x)), computed stably", analytic=False,
)  # fmt: skip
elementwise(
    "relu", 1, lambda N, x: N.maximum(x, 0), lambda T, x: T.relu(x), lambda S, x: _each(lambda a: S.Max(0, a), x),
    lambda M, x: _mp(M, lambda a: max(a, M.mpf(0)), x),
    "max(x, 0)",
    kink=lambda N, x: x, kink_doc="at 0", analytic=False,
    convention="torch: relu'(0) = 0; SymPy: Heaviside(0) = 1/2; central difference: the average of both sides",
)  # fmt: skip
elementwise("erf", 1, lambda N, x: _np_erf(x), lambda T, x: T.erf(x), lambda S, x: _each(S.erf, x), lambda M, x: _mp(M, M.erf, x), "error function", analytic=False)  # fmt: skip
elementwise(
    "max", 2, lambda N, a, b: N.maximum(a, b), lambda T, a, b: T.maximum(T.as_tensor(a), T.as_tensor(b)),
    lambda S, a, b: _each(S.Max, a, b), lambda M, a, b: _mp(M, max, a, b), "the larger of a and b",
    kink=lambda N, a, b: a - b, kink_doc="where a = b", analytic=False,
    convention="torch: a tie splits the gradient evenly (1/2 each); SymPy: Heaviside(0) = 1/2; central difference: the average of both sides",
)  # fmt: skip
elementwise(
    "min", 2, lambda N, a, b: N.minimum(a, b), lambda T, a, b: T.minimum(T.as_tensor(a), T.as_tensor(b)),
    lambda S, a, b: _each(S.Min, a, b), lambda M, a, b: _mp(M, min, a, b), "the smaller of a and b",
    kink=lambda N, a, b: a - b, kink_doc="where a = b", analytic=False,
    convention="torch: a tie splits the gradient evenly (1/2 each); SymPy: Heaviside(0) = 1/2; central difference: the average of both sides",
)  # fmt: skip
elementwise(
    "atan2", 2, lambda N, a, b: N.arctan2(a, b), lambda T, a, b: T.atan2(T.as_tensor(a), T.as_tensor(b)),
    lambda S, a, b: _each(S.atan2, a, b), lambda M, a, b: _mp(M, _mp_atan2(M), a, b), "angle of the point (b, a)",
    analytic=False,
)  # fmt: skip

# Reductions and vector functions.
structural(
    "sum", 1,
    lambda N, args, shapes: _sum(N, args[0], len(shapes[0])),
    lambda T, args, shapes: _sum(T, args[0], len(shapes[0])),
    lambda S, args, shapes: _object(_sum(S, args[0], len(shapes[0]))),
    lambda M, args, shapes: _mp_sum(args[0], len(shapes[0])),
    _scalar, "sum of all elements", incremental=inc.changed_sum,
)  # fmt: skip
structural(
    "mean", 1,
    lambda N, args, shapes: _sum(N, args[0], len(shapes[0])) / _size(shapes[0]),
    lambda T, args, shapes: _sum(T, args[0], len(shapes[0])) / _size(shapes[0]),
    lambda S, args, shapes: _object(_sum(S, args[0], len(shapes[0])) / S.Integer(_size(shapes[0]))),
    lambda M, args, shapes: _mp(M, operator.truediv, _mp_sum(args[0], len(shapes[0])), M.mpf(_size(shapes[0]))),
    _scalar, "mean of all elements", incremental=inc.changed_mean,
)  # fmt: skip
structural(
    "dot", 2,
    lambda N, args, shapes: _sum(N, args[0] * args[1], 1),
    lambda T, args, shapes: _sum(T, args[0] * args[1], 1),
    lambda S, args, shapes: _object(_sum(S, args[0] * args[1], 1)),
    lambda M, args, shapes: _mp_sum(_mp(M, operator.mul, args[0], args[1]), 1),
    _dot_shape, "dot product of two vectors of one length", incremental=inc.dot,
)  # fmt: skip
structural(
    "norm", 1,
    lambda N, args, shapes: N.sqrt(_sum(N, args[0] * args[0], len(shapes[0]))),
    lambda T, args, shapes: T.sqrt(_sum(T, args[0] * args[0], len(shapes[0]))),
    lambda S, args, shapes: _each(S.sqrt, _object(_sum(S, args[0] * args[0], len(shapes[0])))),
    lambda M, args, shapes: _mp(M, M.sqrt, _mp_sum(_mp(M, operator.mul, args[0], args[0]), len(shapes[0]))),
    _scalar, "Euclidean norm sqrt(sum(v**2))", incremental=DENSE,
)  # fmt: skip
structural(
    "logsumexp", 1,
    lambda N, args, shapes: _logsumexp(N, args[0], len(shapes[0])),
    lambda T, args, shapes: _logsumexp(T, args[0], len(shapes[0])),
    lambda S, args, shapes: _logsumexp(S, args[0], len(shapes[0])),
    lambda M, args, shapes: _mp_logsumexp(M, args[0], len(shapes[0])),
    _scalar, "log(sum(exp(v))), computed without overflow", incremental=DENSE,
)  # fmt: skip
structural(
    "softmax", 1,
    lambda N, args, shapes: _softmax(N, args[0]),
    lambda T, args, shapes: _softmax(T, args[0]),
    lambda S, args, shapes: _softmax(S, args[0]),
    lambda M, args, shapes: _mp_softmax(M, args[0]),
    _same, "exp(v) / sum(exp(v)) along the last axis", incremental=DENSE,
)  # fmt: skip


def _np_erf(x: Any) -> Any:
    import math

    import numpy as np

    if np.iscomplexobj(x):
        raise TypeError("erf has no complex form here")
    return np.vectorize(math.erf, otypes=[x.dtype if hasattr(x, "dtype") else float])(x)


# --- the docs table -------------------------------------------------------

#: The comments around the generated table in docs/model-file.md.
TABLE_BEGIN = "<!-- functions table: generated by gradcheck.ops.markdown_table() -->"
TABLE_END = "<!-- end of functions table -->"


def markdown_table() -> str:
    """The table of built-in functions for docs/model-file.md, from the entries' own docs."""
    lines = ["| function | meaning | kink (non-differentiable point) |", "|---|---|---|"]
    for op in OPS.values():
        if op.call and op.builtin:
            lines.append(f"| `{op.signature()}` | {op.doc} | {op.kink_doc or '—'} |")
    return "\n".join(lines) + "\n"


def replace_table(text: str) -> str:
    """``text`` (docs/model-file.md) with the part between the table's markers regenerated.

    Regenerate the docs with::

        python -c "import pathlib, gradcheck.ops as o; p = pathlib.Path('docs/model-file.md'); p.write_text(o.replace_table(p.read_text()))"
    """
    head, begin, rest = text.partition(TABLE_BEGIN)
    _, end, tail = rest.partition(TABLE_END)
    if not begin or not end:
        raise ValueError("the functions table's markers are missing")
    return f"{head}{TABLE_BEGIN}\n{markdown_table()}{TABLE_END}{tail}"


# --- functions added from Python -----------------------------------------


def register_function(
    name: str,
    *,
    numpy: Callable[..., Any],
    torch: Callable[..., Any],
    sympy: Callable[..., Any],
    kink: Callable[..., Any] | None = None,
    doc: str = "",
    analytic: bool = False,
) -> None:
    """Add an elementwise function of one argument to the model language (SPEC section 6).

    ``numpy(x)`` takes a NumPy array (a complex one too when ``analytic``),
    ``torch(x)`` a tensor (it may be a ``torch.autograd.Function``'s
    ``apply``: its backward is then what the autograd source uses), ``sympy(x)``
    one scalar SymPy expression; ``kink(x)``, optional, returns an array whose
    zeros are the kinks. ``analytic=True`` says the NumPy form is analytic and
    takes complex input, so finite differences use the complex step; the
    default ``False`` uses real steps (Richardson), which is always safe. The
    mpmath form (the exact loss) is derived from the SymPy form. The function
    works in every model parsed afterwards in this process. A built-in
    function, operator or constant name is refused with a :class:`ModelError`;
    registering a name already registered replaces that function.
    """
    if not isinstance(name, str) or not name.isidentifier() or not name.isascii() or name.startswith("__"):
        raise ModelError(
            f"register_function: {name!r} is not a valid function name",
            fix="use letters, digits and underscores, e.g. 'swish'",
        )
    if keyword.iskeyword(name) or name in ("True", "False"):
        raise ModelError(f"register_function: {name!r} is a Python keyword", fix="choose another name")
    old = OPS.get(name)
    if (old is not None and old.builtin) or name in CONSTANTS:
        what = (
            "a constant"
            if name in CONSTANTS
            else "a built-in function"
            if old is not None and old.call
            else "a built-in op"
        )
        raise ModelError(f"register_function: {name!r} is {what} of the model language", fix="choose another name")
    for key, form in (("numpy", numpy), ("torch", torch), ("sympy", sympy)):
        if not callable(form):
            raise ModelError(f"register_function({name!r}): {key}= must be callable, got {form!r}")
    if kink is not None and not callable(kink):
        raise ModelError(f"register_function({name!r}): kink= must be callable or None, got {kink!r}")
    if not isinstance(doc, str):
        raise ModelError(f"register_function({name!r}): doc= must be text, got {doc!r}")
    if not isinstance(analytic, bool):
        raise ModelError(f"register_function({name!r}): analytic= must be True or False, got {analytic!r}")

    def mp_form(M: Any, x: Any) -> Any:
        return _mp(M, _mpmath_of(name, sympy), x)

    op = Op(
        name, 1, "elementwise",
        lambda N, x: numpy(x), lambda T, x: torch(x), lambda S, x: _each(sympy, x), mp_form,
        _broadcast_rule, doc or f"{name} (registered)",
        kink=None if kink is None else (lambda N, x: kink(x)), kink_doc="where kink(x) = 0" if kink else "",
        convention="registered function: each source's own value at a kink" if kink else "",
        analytic=analytic, incremental=inc.elementwise, builtin=False,
    )  # fmt: skip
    OPS.pop(name, None)
    _add(op)
    _MPMATH.pop(name, None)


_MPMATH: dict[str, Callable[[Any], Any]] = {}


def _mpmath_of(name: str, sympy_form: Callable[..., Any]) -> Callable[[Any], Any]:
    """The mpmath form of a registered function: its SymPy form, lambdified once (lazily: SymPy is heavy)."""
    fn = _MPMATH.get(name)
    if fn is None:
        import sympy

        x = sympy.Symbol("x", real=True)
        fn = _MPMATH[name] = sympy.lambdify(x, sympy_form(x), modules="mpmath")
    return fn
