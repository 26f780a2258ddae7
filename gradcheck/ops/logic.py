"""Comparisons, ``where``, ``sign`` and ``clamp``: the ops that choose (`N` numpy, `T` torch, `S` sympy, `M` mpmath).

A comparison is 1.0 where it holds, else 0.0, with derivative 0 (as torch's
comparisons, which carry no gradient) and a kink where its two sides are
equal (kink rule ``a - b``). ``where(c, a, b)`` is ``a`` where ``c`` is
nonzero, else ``b``; the gradient flows only through the branch taken, and
every form picks per element without looking at the other branch, so a nan
or a complex value there (``log(x)`` at ``x = -1``) does not reach the result:

* NumPy and torch: ``where`` (torch's backward sends 0 to the untaken branch;
  it is nan only where the untaken branch's own derivative is infinite or
  nan, e.g. ``log(x)`` at exactly ``x = 0``, as in torch).
* mpmath (the exact loss): a per-element choice; nan only where ``c`` is nan.
* SymPy: ``Piecewise((a, Ne(c, 0)), (b, True))``; its derivative in ``a`` is
  ``Piecewise((1, Ne(c, 0)), (0, True))``, evaluated per sample.

``where`` has no kink rule of its own: where it jumps is where its condition
jumps, and a comparison used as the condition reports that kink.

SymPy forms of the flat functions (comparisons, ``sign``) are small SymPy
functions whose derivative is 0 (SymPy's own ``Heaviside``/``sign`` would
differentiate to ``DiracDelta``, which no source returns) and which print
for mpmath through ``sign``, so a symbolic tape line runs on arrays of samples.
"""

from __future__ import annotations

import operator
from collections.abc import Callable
from typing import Any

from .core import _each, _mp, elementwise

# --- SymPy functions with derivative 0 -------------------------------------

_SYMPY: dict[str, Any] = {}


def _flat(S: Any) -> dict[str, Any]:
    """The SymPy classes ``positive`` (x > 0), ``nonnegative`` (x >= 0) and ``sign``, built once."""
    if _SYMPY:
        return _SYMPY

    class _Flat(S.Function):  # type: ignore[misc,name-defined]
        """A piecewise-constant function: derivative 0 (the jump is a kink, found separately)."""

        code = ""  # mpmath code from s = sign(x)
        text = ""

        def fdiff(self, argindex: int = 1) -> Any:
            return S.Integer(0)

        def _mpmathcode(self, printer: Any) -> str:
            s = f"sign({printer._print(self.args[0])})"
            return self.code.format(s=s)

        def _sympystr(self, printer: Any) -> str:
            return self.text.format(x=printer._print(self.args[0]))

        def _pretty(self, printer: Any) -> Any:
            from sympy.printing.pretty.stringpict import prettyForm

            return prettyForm(self.text.format(x=S.sstr(self.args[0])))

        def _latex(self, printer: Any) -> str:
            return self.text.format(x=printer._print(self.args[0])).replace(">=", r"\geq")

    class positive(_Flat):  # noqa: N801  (named as it prints)
        code = "(({s} + {s}**2)/2)"
        text = "({x} > 0)"

    class nonnegative(_Flat):  # noqa: N801
        code = "((2 + {s} - {s}**2)/2)"
        text = "({x} >= 0)"

    class flatsign(_Flat):  # noqa: N801
        code = "{s}"
        text = "sign({x})"

    # Numbers are decided here, not by the class: comparisons of constants fold to 0 or 1.
    def folded(cls: Any, value: Callable[[Any], Any]) -> Callable[[Any], Any]:
        def make(x: Any) -> Any:
            if not isinstance(x, S.Basic) or (x.is_number and x.is_extended_real):
                return value(x)
            return cls(x)

        return make

    _SYMPY.update(
        positive=folded(positive, lambda x: S.Integer(1 if x > 0 else 0)),
        nonnegative=folded(nonnegative, lambda x: S.Integer(1 if x >= 0 else 0)),
        sign=folded(flatsign, S.sign),
    )
    return _SYMPY


# --- forms ---------------------------------------------------------------------


def _np_compare(N: Any, a: Any, b: Any, fn: Callable[[Any, Any], Any]) -> Any:
    """``fn`` on the real parts, as 1.0/0.0 (the finite differences' real steps are what reach it)."""
    dtype = N.result_type(a, b)
    if not N.issubdtype(dtype, N.inexact):
        dtype = N.float64
    dtype = N.zeros((), dtype).real.dtype
    return N.asarray(fn(N.real(a), N.real(b))).astype(dtype)


def _t_dtype(T: Any, *xs: Any) -> Any:
    tensors = [x.dtype for x in xs if isinstance(x, T.Tensor) and x.is_floating_point()]
    if not tensors:
        return T.get_default_dtype()
    out = tensors[0]
    for d in tensors[1:]:
        out = T.promote_types(out, d)
    return out


def _t_compare(T: Any, a: Any, b: Any, fn: Callable[[Any, Any], Any]) -> Any:
    dtype = _t_dtype(T, a, b)
    return fn(T.as_tensor(a, dtype=dtype), T.as_tensor(b, dtype=dtype)).to(dtype)


def _s_compare(S: Any, kind: str, a: Any, b: Any) -> Any:
    """``a > b`` is ``positive(a - b)``, ``a >= b`` is ``nonnegative(a - b)``."""
    return _each(lambda x, y: _flat(S)[kind](x - y), a, b)


def _m_compare(M: Any, fn: Callable[[Any, Any], bool], a: Any, b: Any) -> Any:
    return _mp(M, lambda x, y: M.mpf(1) if fn(x, y) else M.mpf(0), a, b)


def _np_where(N: Any, c: Any, a: Any, b: Any) -> Any:
    return N.where(N.real(c) != 0, a, b)


def _t_where(T: Any, c: Any, a: Any, b: Any) -> Any:
    dtype = _t_dtype(T, a, b, c)
    a, b = (x if isinstance(x, T.Tensor) else T.as_tensor(x, dtype=dtype) for x in (a, b))
    return T.where(T.as_tensor(c) != 0, a, b)


def _s_where(S: Any, c: Any, a: Any, b: Any) -> Any:
    return _each(lambda k, x, y: S.Piecewise((x, S.Ne(k, 0)), (y, True)), c, a, b)


def _m_where(M: Any, c: Any, a: Any, b: Any) -> Any:
    """Per element: ``a`` where ``c`` is nonzero, else ``b``; the branch not taken is never looked at."""
    import numpy as np

    def one(k: Any, x: Any, y: Any) -> Any:
        if M.isnan(k):
            return M.nan
        return x if k != 0 else y

    if not any(isinstance(v, np.ndarray) for v in (c, a, b)):
        return one(c, a, b)
    return np.asarray(np.frompyfunc(one, 3, 1)(c, a, b), dtype=object)


def _t_clamp(T: Any, x: Any, lo: Any, hi: Any) -> Any:
    dtype = _t_dtype(T, x, lo, hi)
    x, lo, hi = T.broadcast_tensors(*(T.as_tensor(v, dtype=dtype) for v in (x, lo, hi)))
    return T.clamp(x, lo, hi)


_CMP_CONVENTION = (
    "torch: a comparison carries no gradient (0); SymPy: derivative 0 (the jump is not differentiated); "
    "central difference: the jump over the step, (1 - 0) / 2h"
)

# Comparisons: Python's precedence, below arithmetic (the loosest infix level; it does not chain).
for _name, _symbol, _fn, _kind, _flip in (
    ("lt", "<", operator.lt, "positive", True),
    ("le", "<=", operator.le, "nonnegative", True),
    ("gt", ">", operator.gt, "positive", False),
    ("ge", ">=", operator.ge, "nonnegative", False),
):
    elementwise(
        _name, 2,
        lambda N, a, b, fn=_fn: _np_compare(N, a, b, fn),
        lambda T, a, b, fn=_fn: _t_compare(T, a, b, fn),
        (lambda S, a, b, kind=_kind: _s_compare(S, kind, b, a)) if _flip else (lambda S, a, b, kind=_kind: _s_compare(S, kind, a, b)),
        lambda M, a, b, fn=_fn: _m_compare(M, fn, a, b),
        f"a {_symbol} b: 1.0 where it holds, else 0.0",
        kink=lambda N, a, b: a - b, kink_doc="where a = b", convention=_CMP_CONVENTION, analytic=False,
        notation="infix", symbol=_symbol, precedence=0, vjp=(None, None),
    )  # fmt: skip

elementwise(
    "where", 3, lambda N, c, a, b: _np_where(N, c, a, b), lambda T, c, a, b: _t_where(T, c, a, b),
    lambda S, c, a, b: _s_where(S, c, a, b), lambda M, c, a, b: _m_where(M, c, a, b),
    "b where a is nonzero, else c (broadcasting); the gradient flows only through the branch taken. "
    "Its kink is its condition's: write the condition as a comparison (`x > 0`), which has a kink where its sides are equal", vjp=(None, "where(a, g, 0)", "where(a, 0, g)"),
)  # fmt: skip
elementwise(
    "sign", 1, lambda N, x: N.sign(N.real(x)), lambda T, x: T.sign(x), lambda S, x: _each(_flat(S)["sign"], x),
    lambda M, x: _mp(M, M.sign, x),
    "-1, 0 or 1 as x is negative, zero or positive; derivative 0",
    kink=lambda N, x: x, kink_doc="at 0", analytic=False,
    convention="torch: sign'(0) = 0; SymPy: derivative 0 (the jump is not differentiated); central difference: the jump over the step, 2 / 2h", vjp=(None,),
)  # fmt: skip
elementwise(
    "clamp", 3, lambda N, x, lo, hi: N.minimum(N.maximum(x, lo), hi), lambda T, x, lo, hi: _t_clamp(T, x, lo, hi),
    lambda S, x, lo, hi: _each(lambda v, a, b: S.Min(S.Max(v, a), b), x, lo, hi),
    lambda M, x, lo, hi: _mp(M, lambda v, a, b: min(max(v, a), b), x, lo, hi),
    "a limited to the interval [b, c]: min(max(a, b), c)",
    kink=lambda N, x, lo, hi: (x - lo) * (x - hi), kink_doc="where a = b and where a = c", analytic=False,
    convention="torch: at a bound the gradient goes to a (1), none to the bound; SymPy: Heaviside(0) = 1/2 to each side; "
    "central difference: the average of both sides", vjp=("g * (a >= b) * (a <= c)", "g * (a < b) * (b < c)", "g * (max(a, b) > c)"),
)  # fmt: skip
