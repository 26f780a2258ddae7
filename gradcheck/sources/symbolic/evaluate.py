"""Evaluating given SymPy expressions of params and data exactly, per sample, in mpmath."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from .formulas import build
from .numbers import DPS

if TYPE_CHECKING:
    from ...model import Model


def evaluate_exprs(model: Model, exprs: list[Any], point: dict[str, np.ndarray]) -> list[list[Any]]:
    """Evaluate SymPy expressions of params and data per sample, in mpmath.

    The expressions are in the model's real symbols (:func:`~.formulas.build`)
    or in plain symbols of the same names. Returns ``rows[sample][k]`` as
    mpmath numbers (``nan`` where undefined).
    """
    import mpmath
    import sympy

    built = build(model)
    symbols: list[Any] = []
    for arr in list(built.param_symbols.values()) + list(built.data_symbols.values()):
        symbols.extend(arr.reshape(-1).tolist())
    real = {sympy.Symbol(s.name): s for s in symbols}
    exprs = [e.xreplace(real) if isinstance(e, sympy.Basic) else e for e in exprs]
    # lambdify costs milliseconds per call; training evaluates the same expressions hundreds of times.
    fns = model.cache.setdefault("symbolic_lambdified", {})
    fn = fns.get(tuple(exprs))
    if fn is None:
        fn = fns[tuple(exprs)] = sympy.lambdify(*_renamed(symbols, exprs), modules="mpmath")
    param_args: list[float] = []
    for name in built.param_symbols:
        param_args.extend(np.asarray(point[name], dtype=np.float64).reshape(-1).tolist())
    rows = []
    with mpmath.workdps(DPS):
        for i in range(model.n_samples):
            data_args: list[float] = []
            for name in built.data_symbols:
                data_args.extend(np.asarray(model.data[name][i], dtype=np.float64).reshape(-1).tolist())
            args = [mpmath.mpf(v) for v in param_args + data_args]
            try:
                rows.append(list(fn(*args)))
            except (ZeroDivisionError, ValueError, OverflowError, TypeError):
                rows.append([_one(fn_k, args) for fn_k in _single(symbols, exprs)])
    return rows


def _single(symbols: list[Any], exprs: list[Any]) -> list[Any]:
    import sympy

    symbols, exprs = _renamed(symbols, exprs)
    return [sympy.lambdify(symbols, e, modules="mpmath") for e in exprs]


def _renamed(symbols: list[Any], exprs: list[Any]) -> tuple[list[Any], list[Any]]:
    """Symbols named like an mpmath name (a param ``e`` or ``pi``) renamed, for lambdify.

    The printer writes ``E`` as ``e``: ``def f(e): return e*e`` would stand for
    ``e*E`` (and lambdify's ``dummify`` leaves ``e`` bound to a SymPy symbol).
    """
    import mpmath
    import sympy

    if not any(hasattr(mpmath, s.name) for s in symbols):
        return symbols, exprs
    fresh = {s: sympy.Symbol(f"_arg{i}", real=True) for i, s in enumerate(symbols)}
    return list(fresh.values()), [e.xreplace(fresh) if hasattr(e, "xreplace") else e for e in exprs]


def _one(fn: Any, args: list[Any]) -> Any:
    import mpmath

    try:
        return fn(*args)
    except ZeroDivisionError:
        return mpmath.inf
    except (ValueError, OverflowError, TypeError):
        return mpmath.nan
