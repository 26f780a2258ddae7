"""Code generation: the tape printed as straight-line mpmath code, compiled, run over the samples.

The tape is printed once (SymPy's mpmath printer; the tape already is the
common-subexpression elimination that ``sympy.cse`` would find, at no search
cost) and compiled; the compiled function is cached on ``model.cache``.
Parameters are mpmath scalars and every data element is a NumPy object array
of mpmath numbers over the samples, so each tape line runs once for all
samples. Where a line cannot run on arrays (a ``Piecewise``) or raises (a
division by zero), the samples are evaluated one at a time, each tape line
guarded, so one undefined value poisons only what depends on it.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

import numpy as np

from .local import template
from .numbers import DPS, ERRORS, Product
from .tape import Tape, record

#: A numbered slot in a printed shape (see ``_compile``).
_SLOT = re.compile(r"_slot(\d+)_")

if TYPE_CHECKING:
    from ...model import Model


def _vectorize(fn: Any) -> Any:
    """``fn`` elementwise over object arrays, as it is on scalars."""
    ufuncs: dict[int, Any] = {}

    def call(*args: Any) -> Any:
        if not any(isinstance(a, np.ndarray) for a in args):
            return fn(*args)
        uf = ufuncs.get(len(args))
        if uf is None:
            uf = ufuncs[len(args)] = np.frompyfunc(fn, len(args), 1)
        return uf(*args)

    return call


#: mpmath functions the printed tape may call, made elementwise over samples.
_FUNCTIONS = (
    "exp log sqrt sin cos tan sec csc cot asin acos atan sinh cosh tanh sech csch coth asinh acosh atanh "
    "erf erfc sign atan2 fabs log1p expm1 cbrt"
).split()


def _namespace() -> dict[str, Any]:
    import mpmath

    ns: dict[str, Any] = {k: getattr(mpmath, k) for k in dir(mpmath) if not k.startswith("_")}
    for name in _FUNCTIONS:
        if hasattr(mpmath, name):
            ns[name] = _vectorize(getattr(mpmath, name))

    def heaviside(x: Any, at_zero: Any = None) -> Any:  # SymPy's default: Heaviside(0) = 1/2
        return mpmath.mpf(1) if x > 0 else mpmath.mpf(0) if x < 0 else mpmath.mpf(1) / 2 if at_zero is None else at_zero

    ns["_heaviside"] = _vectorize(heaviside)
    ns["_max"] = _vectorize(lambda *a: max(a))
    ns["_min"] = _vectorize(lambda *a: min(a))
    ns["_nan"] = mpmath.nan
    ns["_inf"] = mpmath.inf
    ns["_const"] = lambda p, q=1: np.full(1, mpmath.mpf(p) / q, dtype=object)
    ns["_ERRORS"] = ERRORS

    def slow_fdot(a: tuple[Any, ...], b: tuple[Any, ...]) -> Any:  # sum(a[k] * b[k]) per sample, rounded once
        pairs = np.broadcast_arrays(*(np.atleast_1d(np.asarray(v, dtype=object)) for v in a + b))
        rows = np.stack(pairs)
        k = len(a)
        out = np.empty(rows.shape[1:], dtype=object)
        for s in np.ndindex(*out.shape):
            out[s] = mpmath.fdot(zip(rows[(slice(0, k),) + s], rows[(slice(k, None),) + s]))
        return out

    exact: dict[int, Any] = {}  # id(value) -> (value, mantissas, exponents): each column split once per run

    def split(v: Any) -> Any:
        """An object array of mpmath numbers as (integer mantissas, int64 exponents), ``None`` for nan or inf."""
        got = exact.get(id(v))
        if got is not None and got[0] is v:
            return got
        arr = np.atleast_1d(np.asarray(v, dtype=object)).reshape(-1)
        mans = np.empty(arr.shape, dtype=object)
        exps = np.empty(arr.shape, dtype=np.int64)
        for i, x in enumerate(arr):
            raw = getattr(x, "_mpf_", None)
            if raw is None or (not raw[1] and raw[3]):  # not an mpf, or nan/inf
                return None
            sign, man, exp, _ = raw
            mans[i], exps[i] = -man if sign else man, exp
        exact[id(v)] = got = (v, mans, exps)
        return got

    def rows(parts: list[Any]) -> Any:
        """``(k, n)`` mantissas and exponents, or ``(k, 1)`` where every value is one number."""
        n = max(len(p[1]) for p in parts)
        if all(len(p[1]) == n for p in parts):
            return np.stack([p[1] for p in parts]), np.stack([p[2] for p in parts])
        mans, exps = np.empty((len(parts), n), dtype=object), np.empty((len(parts), n), dtype=np.int64)
        for i, p in enumerate(parts):
            mans[i], exps[i] = p[1], p[2]
        return mans, exps

    def fdot(a: tuple[Any, ...], b: tuple[Any, ...]) -> Any:
        """``sum(a[k] * b[k])`` per sample, exactly in integers, rounded once to the working precision.

        Every mpmath number is ``mantissa * 2**exponent``: the products are exact
        integer products, shifted to the smallest exponent of their sample and
        summed exactly (what ``mpmath.fdot`` does, over all samples at once).
        """
        pa, pb = [split(v) for v in a], [split(v) for v in b]
        if any(p is None for p in pa + pb):
            return slow_fdot(a, b)
        (ma, ea), (mb, eb) = rows(pa), rows(pb)
        mans, exps = ma * mb, ea + eb  # (k, n)
        low = exps.min(axis=0)
        sums = (mans << (exps - low)).sum(axis=0)
        return np.asarray(
            [mpmath.ldexp(mpmath.mpf(m), int(e)) for m, e in zip(sums, np.broadcast_to(low, sums.shape))], dtype=object
        )

    ns["_fdot"] = fdot
    ns["_fdot_columns"] = exact
    return ns


def _printer() -> Any:
    from sympy.printing.pycode import MpmathPrinter

    class Printer(MpmathPrinter):  # type: ignore[misc]
        # Calls instead of Python's max() and conditional expressions, so that
        # a line runs on object arrays of samples.
        def _print_Heaviside(self, expr: Any) -> str:
            return f"_heaviside({', '.join(self._print(a) for a in expr.args)})"

        def _print_Max(self, expr: Any) -> str:
            return f"_max({', '.join(self._print(a) for a in expr.args)})"

        def _print_Min(self, expr: Any) -> str:
            return f"_min({', '.join(self._print(a) for a in expr.args)})"

        # mpmath numbers times NumPy arrays take a slow conversion path, so
        # constants are one-element arrays (as the parameters are).
        def _print_Rational(self, expr: Any) -> str:
            return f"_const({expr.p}, {expr.q})"

        def _print_Float(self, expr: Any) -> str:
            return f"_const({super()._print_Float(expr)})"

        # SymPy folds 1/(w - w) to zoo and 0*oo to nan: undefined values, evaluated as nan
        # (so the verdict is `undefined`), never a crash of the printer.
        def _print_ComplexInfinity(self, expr: Any) -> str:
            return "_const(_nan)"

        def _print_NaN(self, expr: Any) -> str:
            return "_const(_nan)"

        def _print_Infinity(self, expr: Any) -> str:
            return "_const(_inf)"

        def _print_NegativeInfinity(self, expr: Any) -> str:
            return "_const(-_inf)"

    return Printer({"fully_qualified_modules": False, "inline": True, "allow_unknown_functions": True})


#: Sums with more terms than this are printed in their own order, not SymPy's sorted one.
WIDE = 16


def _compile(tape: Tape) -> None:
    printer = _printer()
    head = ["def _f(_p, _d):"]
    if tape.params:
        head.append(f"    {', '.join(map(str, tape.params))}, = _p")
    if tape.data:
        head.append(f"    {', '.join(str(s) for _, _, s in tape.data)}, = _d")

    def show(e: Any) -> str:
        # The common lines (a symbol, a product of symbols) skip the printer's overhead.
        if e.is_Symbol:
            return str(e.name)
        if e.is_Mul and all(a.is_Symbol for a in e.args):
            return "*".join(a.name for a in e.args)
        # A wide sum (a layer's W @ x) as it stands: the printer would sort its terms first.
        if e.is_Add and len(e.args) > WIDE:
            if all(a.is_Mul and len(a.args) == 2 and all(f.is_Symbol for f in a.args) for a in e.args):
                # sum of w*x: one exact dot product per sample
                return f"_fdot(({', '.join(a.args[0].name for a in e.args)},), ({', '.join(a.args[1].name for a in e.args)},))"
            return " + ".join(show(a) for a in e.args)
        return printed(e)

    shapes: dict[Any, list[Any]] = {}  # an expression's shape -> its printed text, cut at the operands

    def printed(e: Any) -> str:
        # Lines of the same shape (tanh(t + b) for each output) differ only in their
        # symbols: the shape is printed once with numbered slots and filled in.
        order: dict[Any, int] = {}
        key = template(e, order)
        parts = shapes.get(key)
        if parts is None:
            import sympy

            slots = {s: sympy.Symbol(f"_slot{i}_", real=True) for s, i in order.items()}
            text = str(printer.doprint(e.xreplace(slots)))
            parts = shapes[key] = [int(p) if k % 2 else p for k, p in enumerate(_SLOT.split(text))]
        names = [s.name for s in order]
        return "".join(names[p] if isinstance(p, int) else p for p in parts)

    data = {s for _, _, s in tape.data}

    def output(e: Any) -> str:
        # adjoint * data element (a weight's derivative in a layer): the two factors, multiplied
        # by the reduction over samples (numbers.collect), never one by one here.
        if e.is_Mul and len(e.args) == 2 and all(a.is_Symbol for a in e.args) and data & set(e.args):
            return f"({e.args[0].name}, {e.args[1].name})"
        return show(e)

    code = [(str(t), show(e)) for t, e in tape.lines]
    ret = f"    return [{', '.join(output(e) for e in tape.outputs)}]"
    plain = head + [f"    {t} = {e}" for t, e in code] + [ret]
    guarded = list(head)
    for t, e in code:
        guarded += ["    try:", f"        {t} = {e}", "    except _ERRORS:", f"        {t} = _nan"]
    guarded += ["    try:", "    " + ret, "    except _ERRORS:", f"        return [_nan] * {len(tape.outputs)}"]
    tape.vectorized = _load(plain)
    tape.guarded_lines = guarded  # compiled only where a sample needs it (see :func:`run`)


def _load(lines: list[str], scalar: bool = False) -> Any:
    ns = _namespace()
    if scalar:  # numbers as mpmath scalars, not one-element arrays
        ns["_const"] = lambda p, q=1: ns["mpf"](p) / q
    exec(compile("\n".join(lines), "<gradcheck symbolic tape>", "exec"), ns)  # our own printed SymPy code
    return ns["_f"]


def scalar_function(expr: Any, args: list[Any]) -> Any:
    """SymPy ``expr`` as a function of mpmath numbers for the symbols ``args``, printed as the tape prints it.

    So a ``Heaviside`` or ``Piecewise`` takes the tape's value at a kink.
    """
    lines = [f"def _f({', '.join(a.name for a in args)}):", f"    return {_printer().doprint(expr)}"]
    return _load(lines, scalar=True)


def tape_of(model: Model) -> Tape:
    tape = model.cache.get("symbolic_tape")
    if tape is None:
        tape = record(model)
        _compile(tape)
        model.cache["symbolic_tape"] = tape
    return tape  # type: ignore[no-any-return]


def run(model: Model, tape: Tape, point: dict[str, np.ndarray]) -> list[Any]:
    """``columns[k][sample]``: output k of the tape for every sample (mpmath numbers).

    A column may be a :class:`~.numbers.Product` of two columns, multiplied
    sample by sample only where the reduction needs it.
    """
    import mpmath

    n = model.n_samples
    with mpmath.workdps(DPS):
        to_mp = np.frompyfunc(mpmath.mpf, 1, 1)
        # Parameters are one-element arrays: an mpmath number times an array is slow.
        p_args = [to_mp(np.asarray(point[name], np.float64).reshape(-1, 1)) for name in model.params]
        p_args = [row for arr in p_args for row in arr]
        d_args = [to_mp(np.asarray(model.data[k], np.float64)[(slice(None),) + idx]) for k, idx, _ in tape.data]
        try:
            with np.errstate(all="ignore"):
                try:
                    outs = tape.vectorized(p_args, d_args)
                finally:
                    tape.vectorized.__globals__["_fdot_columns"].clear()
            seen: dict[int, list[Any]] = {}  # one list per factor array (a layer's adjoints and data repeat)

            def factor(v: Any) -> list[Any]:
                if id(v) not in seen:
                    seen[id(v)] = _column(v, n)
                return seen[id(v)]

            columns = [Product(factor(o[0]), factor(o[1])) if isinstance(o, tuple) else _column(o, n) for o in outs]
            if all(len(c.a) == n and len(c.b) == n if isinstance(c, Product) else len(c) == n for c in columns):
                return columns
        except ERRORS:
            pass
        if tape.guarded is None:
            tape.guarded = _load(tape.guarded_lines)
        rows = [[_item(v) for v in tape.guarded(p_args, [d[i : i + 1] for d in d_args])] for i in range(n)]
    return [list(col) for col in zip(*rows)]


def _column(value: Any, n: int) -> list[Any]:
    return list(value) if isinstance(value, np.ndarray) and value.size == n else [_item(value)] * n


def _item(value: Any) -> Any:
    if isinstance(value, tuple):  # a product left to the reduction: one sample's value
        return _item(value[0]) * _item(value[1])
    return value.reshape(-1)[0] if isinstance(value, np.ndarray) else value
