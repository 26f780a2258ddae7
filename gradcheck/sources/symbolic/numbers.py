"""Exact numbers to float64: per-sample mpmath columns reduced into a :class:`Gradients`.

Only the final sums over samples (``mpmath.fsum`` at :data:`DPS` digits) are
rounded to float64, so the symbolic column is exact to the last bit where
float evaluation is not (overflow, cancellation).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np

from .. import Gradients

if TYPE_CHECKING:
    from ...model import Model

#: Significant digits of the mpmath evaluation.
DPS = 40

#: Exceptions an mpmath evaluation raises where a value is undefined.
ERRORS = (ZeroDivisionError, ValueError, OverflowError, TypeError, ArithmeticError)


def to_float(value: Any) -> float:
    """An mpmath (or Python) number as a float; ``nan`` where it is complex or not a number."""
    import mpmath

    if isinstance(value, mpmath.mpc) or isinstance(value, complex):
        if value.imag != 0:
            return math.nan
        value = value.real
    try:
        return float(value)
    except (TypeError, ValueError, OverflowError):
        return math.nan


def reduce_exact(column: list[Any], reduction: str) -> Any:
    """The exact sum (or mean) of one column of per-sample mpmath values."""
    import mpmath

    with mpmath.workdps(DPS):
        total = mpmath.fsum(column) if all(not isinstance(v, mpmath.mpc) for v in column) else mpmath.nan
        return total / len(column) if reduction == "mean" else total


class Product(NamedTuple):
    """A column given as two factors per sample (adjoint and data element): ``a[s] * b[s]``."""

    a: list[Any]
    b: list[Any]


def _floats(rows: list[list[Any]]) -> np.ndarray:
    exact = np.array(rows, dtype=object)
    with np.errstate(invalid="ignore"):  # nan where the loss is undefined is reported, not warned about
        try:  # every value a real mpmath number: float() each, in C
            return exact.astype(np.float64)
        except (TypeError, ValueError, OverflowError):
            return np.asarray(np.frompyfunc(to_float, 1, 1)(exact), dtype=np.float64)


def _reduce_product(c: Product, reduction: str, real: dict[int, bool]) -> Any:
    """The exact sum (or mean) over samples of ``c.a * c.b``; the caller holds :data:`DPS` digits.

    ``real`` caches, per factor list, whether it holds real numbers only.
    """
    import mpmath

    for f in (c.a, c.b):
        if id(f) not in real:
            real[id(f)] = not any(isinstance(v, mpmath.mpc) for v in f)
    if not (real[id(c.a)] and real[id(c.b)]):
        return mpmath.nan
    total = mpmath.fdot(zip(c.a, c.b))
    return total / len(c.a) if reduction == "mean" else total


def collect(model: Model, columns: list[Any], layout: list[tuple[str, tuple[int, ...]]], source: str) -> Gradients:
    """Reduce per-sample mpmath columns ``[loss, *grad elements]`` into a result.

    A :class:`Product` column is reduced exactly as one dot product over the
    samples; its per-sample values (which only scale the tolerance) are the
    float products of its factors. With ``reduction: none`` every value is
    per sample, so products are multiplied exactly first.
    """
    import mpmath

    if model.reduction == "none":
        with mpmath.workdps(DPS):
            columns = [[x * y for x, y in zip(c.a, c.b)] if isinstance(c, Product) else c for c in columns]
    products = [k for k, c in enumerate(columns) if isinstance(c, Product)]
    plain = [k for k, c in enumerate(columns) if not isinstance(c, Product)]
    n = len(columns[plain[0]] if plain else columns[0].a)
    per_sample = np.empty((n, len(columns)))
    per_sample[:, plain] = _floats([columns[k] for k in plain]).reshape(-1, n).T
    if products:  # the factors repeat (a layer's adjoints, its inputs): each converted once
        factors = {id(f): f for k in products for f in columns[k]}
        order = {key: i for i, key in enumerate(factors)}
        floats = _floats(list(factors.values())).reshape(-1, n)
        a = floats[[order[id(columns[k].a)] for k in products]]
        b = floats[[order[id(columns[k].b)] for k in products]]
        per_sample[:, products] = (a * b).T
    real: dict[int, bool] = {}
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
            with mpmath.workdps(DPS):  # once, not once per element
                reduced = [
                    to_float(
                        _reduce_product(c, model.reduction, real)
                        if isinstance(c := columns[k + j], Product)
                        else reduce_exact(c, model.reduction)
                    )
                    for j in range(size)
                ]
            values[name] = np.array(reduced, dtype=np.float64).reshape(shape)
            mags = np.abs(cols).sum(axis=0) / (n if model.reduction == "mean" else 1)
            scale[name] = mags.reshape(shape)
        k += size
    if model.reduction == "none":
        loss: Any = per_sample[:, 0]
    else:
        loss = to_float(reduce_exact(columns[0], model.reduction))
    return Gradients(source, values, None, loss, {"scale": scale, "per_sample_loss": per_sample[:, 0]})
