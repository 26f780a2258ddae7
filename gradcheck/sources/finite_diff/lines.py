"""The loss along lines ``t -> loss(point + t v)`` through a point: the one evaluator of finite differences.

A :class:`Lines` is a set of K lines through the point. Per element (the
default check) line ``i`` moves one element of one parameter (``v = e_i``)
and is evaluated incrementally (:func:`gradcheck.perturb.per_sample` and
:func:`~gradcheck.perturb.crossings`: all of a parameter's lines cost about
one model evaluation). Along directions (``--directions K``) line ``k``
moves every parameter by ``t * v_k`` and is evaluated by the plain batched
interpreter. :func:`evaluate` gives per-sample losses at many ``(line, t)``
pairs at once (``t`` real or complex), :func:`crossings` whether a kinked
function crossed its kink there; both bound the values held at once by
:data:`CHUNK_VALUES`. Everything above (steps, extrapolation, complex
step, one-sided slopes) sees only these two functions.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from ... import interp, perturb
from ...model import Model
from ...ops import OPS

#: Largest number of float values one chunk of evaluations may hold.
CHUNK_VALUES = 4_000_000

#: Values the widest array of one chunk of incremental rows aims at (about 8 MB complex: in cache).
ROW_VALUES = 2**19

#: Rows evaluated first to measure how many values a row holds.
PROBE_ROWS = 64


@dataclass(frozen=True)
class Lines:
    """K lines through a point: either the elements of one parameter or K dense directions.

    Element lines: ``name`` is the parameter, line ``i`` moves its flat
    element ``i``. Directions: ``directions`` maps every parameter to an
    array ``(K,) + shape``; row ``k`` of all of them together is ``v_k``.
    """

    name: str | None = None
    size: int = 0
    directions: Mapping[str, np.ndarray] | None = None

    @classmethod
    def elements(cls, model: Model, name: str) -> Lines:
        """One line per element of parameter ``name``."""
        return cls(name=name, size=int(model.params[name].value.size))

    @classmethod
    def along(cls, directions: Mapping[str, np.ndarray]) -> Lines:
        """One line per row of ``directions`` (parameter -> ``(K,) + shape``)."""
        k = int(np.asarray(next(iter(directions.values()))).shape[0]) if directions else 0
        return cls(size=k, directions=directions)

    def scale(self, point: Mapping[str, np.ndarray]) -> np.ndarray:
        """Per line, the step's unit ``max(1, |p_i|)`` (over every element any direction moves)."""
        if self.name is not None:
            return np.maximum(1.0, np.abs(np.asarray(point[self.name], dtype=np.float64).reshape(-1)))
        assert self.directions is not None
        big = 1.0
        for name, p in point.items():
            moved = np.any(np.asarray(self.directions[name]) != 0, axis=0)
            if np.any(moved):
                big = max(big, float(np.max(np.abs(np.asarray(p, dtype=np.float64))[moved])))
        return np.full(self.size, big)

    def room(self, model: Model, point: Mapping[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        """Per line, how far ``t`` may go below and above 0 inside every parameter's domain."""
        if self.name is not None:
            domain = model.params[self.name].domain
            if domain is None:
                return np.full(self.size, np.inf), np.full(self.size, np.inf)
            p = np.asarray(point[self.name], dtype=np.float64).reshape(-1)
            return p - domain[0], domain[1] - p
        assert self.directions is not None
        room = np.full(self.size, np.inf)
        for name, param in model.params.items():
            if param.domain is None:
                continue
            lo, hi = param.domain
            p = np.asarray(point[name], dtype=np.float64).reshape(-1)
            v = np.abs(np.asarray(self.directions[name], dtype=np.float64).reshape(self.size, -1))
            with np.errstate(divide="ignore", invalid="ignore"):
                r = np.where(v > 0, np.minimum(p - lo, hi - p)[None, :] / v, np.inf)
            room = np.minimum(room, r.min(axis=1) if r.size else room)
        return room, room

    def taken(self, point: Mapping[str, np.ndarray], line: np.ndarray, t: np.ndarray, dtype: str) -> np.ndarray:
        """The steps the dtype can take: ``t`` with ``p + t`` rounded to it (element lines; directions keep ``t``)."""
        if self.name is None:
            return np.asarray(t, dtype=np.float64)
        p = np.asarray(point[self.name], dtype=np.float64).reshape(-1)[line]
        return (p + t).astype(np.dtype(dtype)).astype(np.float64) - p


def _width(model: Model) -> int:
    """A rough count of per-sample values the evaluation holds at once."""
    sizes = [1]
    for p in model.params.values():
        sizes.append(p.value.size)
    for node in model.entries.values():
        for n in node.walk():
            sizes.append(int(np.prod(n.shape, dtype=np.int64)) if n.shape else 1)
    return max(sizes)


def _chunk(model: Model) -> int:
    """Rows per chunk of a plain batched evaluation."""
    return max(1, CHUNK_VALUES // max(1, model.n_samples * _width(model)))


def per_sample(
    model: Model, params: Mapping[str, np.ndarray], dtype: str, visit: interp.Visit | None = None
) -> np.ndarray:
    """Per-sample losses; params keep their array dtype (real or complex) and may carry batch axes."""
    env: dict[str, Any] = dict(params)
    for k, v in model.data.items():
        env[k] = v.astype(np.dtype(dtype))
    with np.errstate(all="ignore"):
        values = interp.evaluate(model.entries, env, "numpy", np, until=model.loss, visit=visit)
    return np.asarray(values[model.loss])


def at_point(model: Model, point: Mapping[str, np.ndarray], dtype: str) -> np.ndarray:
    """Per-sample losses ``(N,)`` at the point itself (``(1,)`` without data), float64."""
    real = {k: np.asarray(v, dtype=np.dtype(dtype)) for k, v in point.items()}
    f = per_sample(model, real, dtype).astype(np.float64)
    return np.broadcast_to(f, (model.n_samples,)) if model.data else np.reshape(f, (1,))


def reduce(model: Model, values: np.ndarray) -> np.ndarray:
    """Reduce ``(..., N)`` per-sample values as the model says (``none`` keeps them)."""
    if model.reduction == "mean":
        return values.mean(-1)
    if model.reduction == "sum":
        return values.sum(-1)
    return values


def kink_sides(model: Model, params: Mapping[str, np.ndarray], dtype: str, batch: tuple[int, ...]) -> list[np.ndarray]:
    """The sign of every kinked function's kink quantity (see ``Op.kink``), batch axes first.

    Each array has the batch axes ``batch`` (rows, then samples) followed by
    one flattened axis of everything else.
    """
    sides: list[np.ndarray] = []

    def visit(node: Any, args: list[Any]) -> None:
        op = OPS[node.op]
        if op.kink is None:
            return
        with np.errstate(all="ignore"):
            q = np.sign(np.asarray(op.kink_at(np, node, [np.asarray(a) for a in args])))
        per = q.ndim - op.kink_rank(node)  # batch axes present on this value
        q = q.reshape((1,) * (len(batch) - per) + q.shape)
        q = np.broadcast_to(q, batch + q.shape[len(batch) :])
        sides.append(q.reshape(batch + (-1,)))

    per_sample(model, params, dtype, visit)
    return sides


def kinked(model: Model) -> bool:
    """True when the loss uses a function with kinks (``relu``, ``abs``, ``max``, ...)."""
    return any(n.op in OPS and OPS[n.op].kink is not None for node in model.entries.values() for n in node.walk())


def _incremental(
    fn: Any, model: Model, point: Mapping[str, np.ndarray], name: str, idx: np.ndarray, vals: np.ndarray, dtype: str
) -> np.ndarray:
    """``fn`` (``perturb.per_sample`` or ``crossings``) over all rows, in chunks of about :data:`ROW_VALUES`.

    The first :data:`PROBE_ROWS` rows say how many values a row holds; the
    rest go in chunks whose widest value holds about :data:`ROW_VALUES`
    (arrays that stay in cache; each row is evaluated alike in any chunk).
    Where a plain fallback would hold more than :data:`CHUNK_VALUES` the
    rows go in the plain evaluation's chunks instead.
    """
    params = {k: np.asarray(v, dtype=np.dtype(dtype)) for k, v in point.items()}
    m = int(idx.size)
    first = PROBE_ROWS if m > 2 * PROBE_ROWS else m
    widths: list[int] = []
    try:
        parts = [fn(model, params, name, idx[:first], vals[:first], dtype, max_values=CHUNK_VALUES, widths=widths)]
        chunk = max(first, ROW_VALUES // max(1, widths[0]))
        for i in range(first, m, chunk):
            parts.append(
                fn(model, params, name, idx[i : i + chunk], vals[i : i + chunk], dtype, max_values=CHUNK_VALUES)
            )
        return np.concatenate([np.asarray(part) for part in parts], axis=0)
    except perturb.TooDense:
        pass
    chunk = _chunk(model)
    parts = [fn(model, params, name, idx[i : i + chunk], vals[i : i + chunk], dtype) for i in range(0, m, chunk)]
    return np.concatenate([np.asarray(part) for part in parts], axis=0)


def _moved(
    model: Model, point: Mapping[str, np.ndarray], lines: Lines, line: np.ndarray, t: np.ndarray, work: np.dtype
) -> dict[str, np.ndarray]:
    """Every parameter at ``point + t[m] * v_{line[m]}`` (directions), rows first, in ``work``."""
    assert lines.directions is not None
    r = line.size
    params = {}
    for name, p in point.items():
        shape = model.params[name].shape
        v = np.asarray(lines.directions[name], dtype=np.float64)[line]
        block = np.asarray(p, dtype=np.float64) + t.reshape((r,) + (1,) * len(shape)) * v
        params[name] = block.astype(work).reshape(((r, 1) if model.data else (r,)) + shape)
    return params


def evaluate(
    model: Model, point: Mapping[str, np.ndarray], lines: Lines, line: np.ndarray, t: np.ndarray, dtype: str
) -> np.ndarray:
    """Per-sample losses ``(M, N)`` at ``point + t[m] * v_{line[m]}`` (``N = 1`` without data).

    ``t`` may be complex (the complex step, float64); the moved values are
    rounded to the dtype (complex128 for complex ``t``) and everything is
    evaluated in it.
    """
    n, m = model.n_samples, line.size
    work = np.dtype(np.complex128) if np.iscomplexobj(t) else np.dtype(dtype)
    if lines.name is not None:
        vals = (np.asarray(point[lines.name], dtype=np.float64).reshape(-1)[line] + t).astype(work)
        f = _incremental(perturb.per_sample, model, point, lines.name, line, vals, dtype)
        f = np.broadcast_to(f, (m, n)) if model.data else np.broadcast_to(f, (m,))[:, None]
        return np.array(f, dtype=work)
    out = np.empty((m, n), dtype=work)
    chunk = _chunk(model)
    for start in range(0, m, chunk):
        rows = slice(start, min(start + chunk, m))
        r = rows.stop - rows.start
        f = per_sample(model, _moved(model, point, lines, line[rows], t[rows], work), dtype)
        out[rows] = np.broadcast_to(f, (r, n)) if model.data else np.broadcast_to(f, (r,))[:, None]
    return out


def crossings(
    model: Model, point: Mapping[str, np.ndarray], lines: Lines, line: np.ndarray, t: np.ndarray, dtype: str
) -> np.ndarray:
    """Per ``(line, t)`` pair, whether some kinked function crosses its kink between ``point`` and there.

    It crosses when its kink quantity's sign there differs from a nonzero
    sign at the point, for any sample and element.
    """
    work = np.dtype(dtype)
    if lines.name is not None:
        vals = (np.asarray(point[lines.name], dtype=np.float64).reshape(-1)[line] + t).astype(work)
        return _incremental(perturb.crossings, model, point, lines.name, line, vals, dtype)
    samples = (model.n_samples,) if model.data else ()
    real = {key: np.asarray(v, dtype=work) for key, v in point.items()}
    base = kink_sides(model, real, dtype, samples)
    out = np.zeros(line.size, dtype=bool)
    chunk = _chunk(model)
    for start in range(0, line.size, chunk):
        rows = slice(start, min(start + chunk, line.size))
        r = rows.stop - rows.start
        moved = _moved(model, point, lines, line[rows], t[rows], work)
        for here, there in zip(kink_sides(model, moved, dtype, (r,) + samples), base):
            out[rows] |= ((there != 0) & (here != there)).reshape(r, -1).any(axis=1)
    return out
