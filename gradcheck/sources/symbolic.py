"""The symbolic source: SymPy differentiates, mpmath evaluates exactly.

The per-sample loss is built as a SymPy expression from the IR (each tensor
element its own real symbol), differentiated with ``sympy.diff`` and
evaluated with mpmath at :data:`DPS` significant digits; only the final sum
over samples is rounded to float64. So this column is exact to the last bit
where float evaluation is not (overflow, cancellation). Nothing here touches
torch or the finite differences.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from .. import interp
from ..model import Model
from . import Gradients

#: Significant digits of the mpmath evaluation.
DPS = 40


@dataclass
class _Built:
    param_symbols: dict[str, np.ndarray]  # object arrays of Symbols, in param shape
    data_symbols: dict[str, np.ndarray]  # object arrays, in per-sample shape
    loss: Any
    grads: dict[str, np.ndarray]  # object arrays of derivative expressions
    fn: Any = None  # lambdified [loss, *grads] (mpmath)


def _symbols(name: str, shape: tuple[int, ...]) -> np.ndarray:
    import sympy

    if not shape:
        return np.asarray(sympy.Symbol(name, real=True), dtype=object)
    out = np.empty(shape, dtype=object)
    for idx in np.ndindex(*shape):
        out[idx] = sympy.Symbol(f"{name}[{', '.join(map(str, idx))}]", real=True)
    return out


def _build(model: Model) -> _Built:
    cached = model.cache.get("symbolic")
    if cached is not None:
        return cached  # type: ignore[no-any-return]
    import sympy

    params = {k: _symbols(k, p.shape) for k, p in model.params.items()}
    data = {k: _symbols(k, model.shape_of(k)) for k in model.data}
    values = interp.evaluate(model.entries, {**params, **data}, "sympy", sympy, until=model.loss)
    loss = np.asarray(values[model.loss], dtype=object).item()
    grads = {}
    for name, syms in params.items():
        out = np.empty(syms.shape, dtype=object)
        for idx in np.ndindex(*syms.shape):
            out[idx] = sympy.diff(loss, syms[idx])
        grads[name] = out
    built = _Built(params, data, loss, grads)
    model.cache["symbolic"] = built
    return built


def formula(model: Model, name: str) -> Any:
    """The derivative of the per-sample loss with respect to ``name`` (SymPy)."""
    import sympy

    g = _build(model).grads[name]
    return g.item() if g.ndim == 0 else sympy.Array(g.tolist())


def loss_expression(model: Model) -> Any:
    """The per-sample loss as one SymPy expression (entries inlined)."""
    return _build(model).loss


def expression(model: Model, node: Any) -> np.ndarray:
    """Any IR expression of the model (e.g. an ``expected`` entry) in SymPy."""
    import sympy

    built = _build(model)
    env = interp.evaluate(model.entries, {**built.param_symbols, **built.data_symbols}, "sympy", sympy)
    return np.asarray(interp.run(node, env, "sympy", sympy), dtype=object)


def _flat_symbols(built: _Built) -> list[Any]:
    out: list[Any] = []
    for arr in list(built.param_symbols.values()) + list(built.data_symbols.values()):
        out.extend(arr.reshape(-1).tolist())
    return out


def _to_float(value: Any) -> float:
    import mpmath

    if isinstance(value, mpmath.mpc) or isinstance(value, complex):
        if value.imag != 0:
            return math.nan
        value = value.real
    try:
        return float(value)
    except (TypeError, ValueError, OverflowError):
        return math.nan


def evaluate_exprs(model: Model, exprs: list[Any], point: dict[str, np.ndarray]) -> list[list[Any]]:
    """Evaluate SymPy expressions of params and data per sample, in mpmath.

    Returns ``rows[sample][k]`` as mpmath numbers (``nan`` where undefined).
    """
    import mpmath
    import sympy

    built = _build(model)
    symbols = _flat_symbols(built)
    # lambdify costs milliseconds per call; training evaluates the same expressions hundreds of times.
    fns = model.cache.setdefault("symbolic_lambdified", {})
    fn = fns.get(tuple(exprs))
    if fn is None:
        fn = fns[tuple(exprs)] = sympy.lambdify(symbols, exprs, modules="mpmath")
    param_args: list[float] = []
    for name in built.param_symbols:
        param_args.extend(np.asarray(point[name], dtype=np.float64).reshape(-1).tolist())
    n = model.n_samples
    rows = []
    with mpmath.workdps(DPS):
        for i in range(n):
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

    return [sympy.lambdify(symbols, e, modules="mpmath") for e in exprs]


def _one(fn: Any, args: list[Any]) -> Any:
    import mpmath

    try:
        return fn(*args)
    except ZeroDivisionError:
        return mpmath.inf
    except (ValueError, OverflowError, TypeError):
        return mpmath.nan


def _reduce_mp(column: list[Any], reduction: str) -> Any:
    import mpmath

    with mpmath.workdps(DPS):
        total = mpmath.fsum(column) if all(not isinstance(v, mpmath.mpc) for v in column) else mpmath.nan
        return total / len(column) if reduction == "mean" else total


def gradients(model: Model, point: dict[str, np.ndarray]) -> Gradients:
    """Exact gradients of the reduced loss at ``point``, rounded to float64."""
    built = _build(model)
    exprs = [built.loss]
    layout: list[tuple[str, tuple[int, ...]]] = []
    for name, g in built.grads.items():
        exprs.extend(g.reshape(-1).tolist())
        layout.append((name, g.shape))
    rows = evaluate_exprs(model, exprs, point)
    return _collect(model, rows, layout, "symbolic")


def _collect(model: Model, rows: list[list[Any]], layout: list[tuple[str, tuple[int, ...]]], source: str) -> Gradients:
    """Reduce per-sample mpmath rows ``[loss, *grad elements]`` into a result."""
    n = len(rows)
    per_sample = np.array([[_to_float(v) for v in row] for row in rows], dtype=np.float64).reshape(n, -1)
    values: dict[str, np.ndarray] = {}
    scale: dict[str, np.ndarray] = {}
    k = 1
    for name, shape in layout:
        size = int(np.prod(shape, dtype=np.int64))
        cols = per_sample[:, k : k + size]
        if model.reduction == "none":
            values[name] = cols.reshape((n,) + shape)
            scale[name] = np.abs(values[name])
        else:
            reduced = [_to_float(_reduce_mp([row[k + j] for row in rows], model.reduction)) for j in range(size)]
            values[name] = np.array(reduced, dtype=np.float64).reshape(shape)
            mags = np.abs(cols).sum(axis=0) / (n if model.reduction == "mean" else 1)
            scale[name] = mags.reshape(shape)
        k += size
    if model.reduction == "none":
        loss: Any = per_sample[:, 0]
    else:
        loss = _to_float(_reduce_mp([row[0] for row in rows], model.reduction))
    return Gradients(source, values, None, loss, {"scale": scale, "per_sample_loss": per_sample[:, 0]})


def expected_gradients(model: Model, point: dict[str, np.ndarray]) -> Gradients:
    """The file's hand-derived ``expected`` gradients, evaluated exactly like ``symbolic``."""
    built = _build(model)
    exprs = [built.loss]
    layout: list[tuple[str, tuple[int, ...]]] = []
    for name, node in model.expected.items():
        shape = model.params[name].shape
        arr = np.broadcast_to(expression(model, node), shape)
        exprs.extend(arr.reshape(-1).tolist())
        layout.append((name, shape))
    rows = evaluate_exprs(model, exprs, point)
    return _collect(model, rows, layout, "expected")
