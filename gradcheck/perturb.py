"""Many one-element perturbations of a parameter, evaluated at once, incrementally.

A finite difference moves one element of one parameter. Recomputing the
whole model for each of ``M`` such perturbations costs ``M`` model
evaluations: (parameters)² for a check of every element. Yet moving
``W1[i, j]`` changes only ``(W1 @ x)[i]``, then ``tanh(...)[i]``, and the
loss. This module evaluates the model once, unperturbed, and carries each
perturbation as the one position it changes:

* :class:`Sparse`: a value equal to ``base`` except at one flat position per
  perturbation row (``pos[m]``), where it is ``vals[m]``;
* :class:`Block`: a value equal to ``base`` except in one slice along one
  axis per row (a column of ``X @ W``, an output channel of a convolution);
* a *batched* array: a plain array with a leading axis of perturbation rows
  (after a reduction, or where no rule applies);
* a plain array: a value the perturbed parameter does not reach.

Each op entry holds its own rule (``Op.incremental``, the functions of
:mod:`gradcheck.incremental`): elementwise ops share one that applies their
NumPy form to the changed values only; a few structural ops have their own
(``@``, ``sum``, ``mean``, ``dot``, ``.T``, indexing, convolutions). An op
marked ``DENSE``, and every case a rule declines (a scalar broadcast against
a vector, a product of two moved matrices, an attribute it does not handle), falls
back to the plain evaluation of the batch (:func:`densify`): correct, just
not cheaper. This module names no op.

The results equal the plain batched evaluation up to rounding (the changed
sums are formed as ``base + (new - old)``), which ``tests/test_perturb.py``
checks on every example and on random models.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from . import interp
from .expr import Node
from .incremental import Batched, Block, Context, Sparse, TooDense, Value, densify
from .layout import align
from .model import Model
from .ops import DENSE, OPS

# The values and rules live in :mod:`gradcheck.incremental` (each op entry holds its rule);
# re-exported here, where callers meet them.
__all__ = ["Batched", "Block", "Sparse", "TooDense", "crossings", "densify", "per_sample"]
_Context = Context  # the former name


def per_sample(
    model: Model,
    params: Mapping[str, np.ndarray],
    name: str,
    idx: np.ndarray,
    vals: np.ndarray,
    dtype: str,
    *,
    max_values: int | None = None,
    widths: list[int] | None = None,
) -> np.ndarray:
    """Per-sample losses ``(M,) [+ samples]`` with flat element ``idx[m]`` of ``name`` set to ``vals[m]``.

    ``params`` are already in the evaluation dtype; ``vals`` may be complex
    (the complex step). Raises :class:`TooDense` when a plain fallback would
    hold more than ``max_values`` values (evaluate fewer rows at a time then).
    Given a list ``widths``, appends the most values one row held in any
    value (what sizes the next chunk of rows).
    """
    ctx = Context(int(idx.shape[0]), bool(model.data), max_values)
    out = _evaluate(model, params, name, idx, vals, dtype, ctx)
    if widths is not None:
        widths.append(ctx.widest)
    return out


def crossings(
    model: Model,
    params: Mapping[str, np.ndarray],
    name: str,
    idx: np.ndarray,
    vals: np.ndarray,
    dtype: str,
    *,
    max_values: int | None = None,
    widths: list[int] | None = None,
) -> np.ndarray:
    """Per row, whether the perturbation moves some kinked function across its kink.

    A kinked function (``Op.kink`` in the op table) crosses when its kink
    quantity's sign at the perturbed point differs from a nonzero sign at the
    unperturbed point, for any sample and element. Same evaluation,
    :class:`TooDense` rule and ``widths`` as :func:`per_sample`.
    """
    ctx = Context(int(idx.shape[0]), bool(model.data), max_values, np.zeros(int(idx.shape[0]), dtype=bool))
    _evaluate(model, params, name, idx, vals, dtype, ctx)
    assert ctx.flips is not None
    if widths is not None:
        widths.append(ctx.widest)
    return ctx.flips


def _kink_operands(model: Model) -> tuple[set[int], set[int]]:
    """Up to the loss, the ids of the nodes a kinked function depends on (the kinked ones too), and of those
    whose value it depends on (the kinked ones only when under another).

    Crossings need only the first per perturbation row, and the values of the
    second; every other node's rows are never looked at.
    """
    entries = list(model.entries.items())
    keys = [key for key, _ in entries]
    if model.loss in keys:
        entries = entries[: keys.index(model.loss) + 1]
    used: set[str] = set()  # entries some kinked function depends on
    reach: set[int] = set()
    values: set[int] = set()

    def mark(node: Node, under: bool) -> None:
        kinked = node.op in OPS and OPS[node.op].kink is not None
        if under or kinked:
            reach.add(id(node))
        if under:
            values.add(id(node))
            if node.op == "name":
                used.add(str(node.value))
        for a in node.args:
            mark(a, under or kinked)

    for key, node in reversed(entries):
        mark(node, key in used)
    return reach, values


def _evaluate(
    model: Model,
    params: Mapping[str, np.ndarray],
    name: str,
    idx: np.ndarray,
    vals: np.ndarray,
    dtype: str,
    ctx: Context,
) -> np.ndarray:
    bases: dict[str, Any] = dict(params)
    for k, v in model.data.items():
        bases[k] = v.astype(np.dtype(dtype))
    env: dict[str, Value] = dict(bases)
    env[name] = Sparse(np.asarray(params[name]), model.params[name].shape, idx, vals)

    def plain(value: Value, shape: tuple[int, ...]) -> Any:
        if isinstance(value, (Sparse, Block)):
            return densify(value, ctx)
        return value.array if isinstance(value, Batched) else value

    # tracking crossings, only what reaches a kinked function is evaluated per row (the rest at the point)
    needed, values = _kink_operands(model) if ctx.flips is not None else (None, set())

    def run(node: Node) -> tuple[Value, Any]:
        if node.op == "num":
            v = interp.number(node, "numpy", np)
            return v, v
        if node.op == "name":
            key = str(node.value)
            if key in env:
                return env[key], bases[key]
            v = interp.constant(key, "numpy", np)
            return v, v
        done = [run(a) for a in node.args]
        args, base_args = [d[0] for d in done], [d[1] for d in done]
        base = interp.apply(node, base_args, "numpy", np)
        if not any(isinstance(a, (Sparse, Block, Batched)) for a in args):
            return base, base
        if needed is not None and id(node) not in needed:
            return base, base
        ctx.values = needed is None or id(node) in values
        out = None
        op = OPS[node.op]
        rule = op.incremental
        if (
            rule != DENSE
            and callable(rule)
            and not any(isinstance(a, Batched) for a in args)
            and (getattr(rule, "blocks", False) or not any(isinstance(a, Block) for a in args))
        ):
            out = rule(op, node, args, base, ctx)
        if out is None:
            dense = [plain(a, n.shape) for a, n in zip(args, node.args)]
            if ctx.flips is not None and op.kink is not None:
                rank = len(node.shape) if op.kind == "elementwise" else None  # structural: operands as they are
                ctx.crossed(
                    lambda mod, *a, op=op, node=node: op.kink_at(mod, node, list(a)),
                    [a if rank is None else align(a, len(n.shape), rank) for a, n in zip(dense, node.args)],
                    [a if rank is None else align(a, len(n.shape), rank) for a, n in zip(base_args, node.args)],
                )
            out = ctx.batched(interp.apply(node, dense, "numpy", np), tuple(node.shape))
        ctx.held(out)
        return out, base

    with np.errstate(all="ignore"):
        for key, node in model.entries.items():
            env[key], bases[key] = run(node)
            if key == model.loss:
                break
        loss = env[model.loss]
        if isinstance(loss, (Sparse, Block)):
            return densify(loss, ctx)
        if isinstance(loss, Batched):
            return np.asarray(loss.array)
        plain_loss = np.asarray(loss)  # the parameter does not reach the loss: the same value in every row
        return ctx.batched(np.broadcast_to(plain_loss, (ctx.rows,) + plain_loss.shape), ()).array
