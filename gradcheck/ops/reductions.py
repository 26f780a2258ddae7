"""Reductions and vector functions over the per-sample axes."""

from __future__ import annotations

import operator
from typing import Any

from .. import incremental as inc
from .core import DENSE, Shape, ShapeError, _each, _mp, _mp_sum, _object, _size, _sum, structural


def _scalar(*shapes: Shape, **attrs: Any) -> Shape:
    return ()


def _same(shape: Shape) -> Shape:
    if not shape:
        raise ShapeError("needs a vector, got a scalar")
    return shape


def _dot_shape(a: Shape, b: Shape) -> Shape:
    if len(a) != 1 or a != b:
        raise ShapeError(f"dot needs two vectors of one length, got shapes {list(a)} and {list(b)}")
    return ()


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


def _mp_softmax(M: Any, x: Any) -> Any:
    import numpy as np

    ex = _mp(M, M.exp, x)
    return _mp(M, operator.truediv, ex, np.asarray(ex, dtype=object).sum(axis=-1, keepdims=True))


def _mp_logsumexp(M: Any, x: Any, rank: int) -> Any:
    return _mp(M, M.log, _mp_sum(_mp(M, M.exp, x), rank))


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
