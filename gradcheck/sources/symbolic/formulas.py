"""Readable derivative formulas: what ``Model.gradient_formula`` and the report show.

Built separately from the tape and lazily, only for the parameters a caller
asks about. For a small model the per-sample loss is inlined into one
expression and differentiated with ``sympy.diff`` per element, so it reads as
SymPy writes it (``2*x*(b + w*x - y)``). When the inlined loss would be large
(:func:`formula_in_entries`) the derivative is the chain rule over the model's
entries, with the entries as symbols (``2*(y_pred - y)``).

Inside, every symbol is real (so that SymPy simplifies ``Abs`` and ``sqrt`` as
the model means them); what this module hands out is in plain symbols, the
ones ``sympy.Symbol("w")`` or ``sympy.symbols("x w b y")`` make: a scalar is
named as in the model file, a tensor element ``W[0, 1]`` (``str`` of its
index). See ``docs/api.md``.

This module imports the model only for type checking: ``Model.gradient_formula``
imports it lazily, and nothing here imports the data layer back.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from math import prod
from typing import TYPE_CHECKING, Any

import numpy as np

from ... import interp
from .local import partials, symbols

if TYPE_CHECKING:
    from ...model import Model

#: Largest estimated size of the inlined per-sample loss (see :func:`inlined_size`)
#: for which :func:`formula` inlines it; bigger models get the chain-rule form.
MAX_INLINED_SIZE = 100

#: A sum with more terms than this (a wide layer's ``W @ x``) is named by a symbol
#: while the chain-rule form is built, and substituted back only where it is left.
MAX_INLINE_TERMS = 16


def plain(expr: Any) -> Any:
    """``expr`` with every symbol replaced by the plain (assumption-free) symbol of its name."""
    import sympy

    if not isinstance(expr, sympy.Basic):
        return expr
    # Without evaluation: the expression is already simplified, and re-evaluating it (a Max of many
    # arguments compares them pairwise) would cost more than building it did.
    with sympy.evaluate(False):
        return expr.xreplace({s: sympy.Symbol(s.name) for s in expr.free_symbols if isinstance(s, sympy.Symbol)})


@dataclass
class _Built:
    param_symbols: dict[str, np.ndarray]  # object arrays of Symbols, in param shape
    data_symbols: dict[str, np.ndarray]  # object arrays, in per-sample shape
    loss: Any = None  # the per-sample loss as one expression
    grads: dict[str, np.ndarray] = field(default_factory=dict)  # formulas built so far


def build(model: Model) -> _Built:
    """The model's symbols and its inlined per-sample loss (cached on ``model.cache``)."""
    cached = model.cache.get("symbolic")
    if cached is None:
        import sympy

        params = {k: symbols(k, p.shape) for k, p in model.params.items()}
        data = {k: symbols(k, model.shape_of(k)) for k in model.data}
        values = interp.evaluate(model.entries, {**params, **data}, "sympy", sympy, until=model.loss)
        loss = np.asarray(values[model.loss], dtype=object).item()
        cached = model.cache["symbolic"] = _Built(params, data, loss)
    return cached  # type: ignore[no-any-return]


def inlined_size(model: Model) -> int:
    """A cheap estimate of the size of the inlined per-sample loss, from the IR.

    Every node counts its number of elements, and a reference to an earlier
    entry counts that entry's whole size (it is copied in by inlining), so
    chains of entries that reuse each other grow as their inlined form does.
    """
    size: dict[str, int] = {}
    for entry, node in model.entries.items():
        total = 0
        for n in node.walk():
            if n.op == "name" and n.value in size:
                total += size[str(n.value)]
            else:
                total += int(np.prod(n.shape, dtype=np.int64)) if n.shape else 1
        size[entry] = total
        if entry == model.loss:
            break
    return size.get(model.loss, 0)


def formula_in_entries(model: Model) -> bool:
    """True when :func:`formula` writes derivatives in terms of the model's entries."""
    return inlined_size(model) > MAX_INLINED_SIZE


def formula(model: Model, name: str) -> Any:
    """The derivative of the per-sample loss with respect to param ``name``, in plain symbols.

    A SymPy expression for a scalar param, a ``sympy.Array`` in the param's
    shape for a tensor. Built on first request and cached on ``model.cache``.
    """
    import sympy

    cache = model.cache.setdefault("symbolic_formulas", {})
    if name not in cache:
        if formula_in_entries(model):  # factored after the renaming, which would expand 2*(a + b) again
            g = _entry_formula(model, name)
            tidy = lambda e: _factored(plain(e))  # noqa: E731
        else:
            g, tidy = _inlined_formula(model, name), plain
        cache[name] = np.vectorize(tidy, otypes=[object])(g) if g.ndim else np.asarray(tidy(g.item()), dtype=object)
    g = cache[name]
    return g.item() if g.ndim == 0 else sympy.Array(g.tolist())


def _factored(expr: Any) -> Any:
    """``factor_terms(expr)``; a wide sum (a layer's terms) gets only its common number taken out.

    ``factor_terms`` looks for common factors inside every term, seconds for a
    conv's bias (8 sums of 196 terms); the terms of such a sum are distinct
    positions with nothing in common but a number (``2*(...)`` of a squared error).
    """
    import sympy

    if not (isinstance(expr, sympy.Add) and len(expr.args) > MAX_INLINE_TERMS):
        return sympy.factor_terms(expr)
    parts = [t.as_content_primitive() for t in expr.args]  # (number, the rest) per term
    common = sympy.gcd_list([c for c, _ in parts])
    if common in (0, 1):
        return expr
    return sympy.Mul(common, sympy.Add(*((c / common) * t for c, t in parts)), evaluate=False)


def _inlined_formula(model: Model, name: str) -> np.ndarray:
    import sympy

    built = build(model)
    syms = built.param_symbols[name]
    g = np.empty(syms.shape, dtype=object)
    for idx in np.ndindex(*syms.shape):
        g[idx] = sympy.diff(built.loss, syms[idx])
    return g


def _entry_formula(model: Model, name: str) -> np.ndarray:
    """d loss / d ``name`` per element by the chain rule over the entries (entries as symbols).

    Wide sums are named while the chain rule runs (:data:`MAX_INLINE_TERMS`), so
    no function is ever applied to, or differentiated through, a sum of a
    layer's whole fan-in: the cost is linear in the size of the entries that
    depend on ``name``.
    """
    import sympy

    # The entries that depend on `name` (directly or through earlier entries).
    deps: set[str] = set()
    for entry, node in model.entries.items():
        if any(ref == name or ref in deps for ref in node.names()):
            deps.add(entry)
        if entry == model.loss:
            break
    # Symbols only for what the dependent entries use (a big weight matrix elsewhere costs nothing).
    used = {name} | {ref for e in deps for ref in model.entries[e].names()}
    env: dict[str, Any] = {k: symbols(k, model.shape_of(k)) for k in used if k in model.params or k in model.data}
    wanted = env[name]
    active: set[Any] = set(np.asarray(wanted).reshape(-1))
    named: list[tuple[Any, Any]] = []  # (symbol, wide sum) in order of definition
    parts: list[tuple[np.ndarray, Any, dict[str, Any]]] = []  # (symbols, IR node, its env): built on demand

    def name_wide(value: Any) -> Any:
        arr = np.asarray(value, dtype=object)
        out = np.empty(arr.shape, dtype=object)
        for idx in np.ndindex(*arr.shape):
            e = arr[idx]
            if isinstance(e, sympy.Add) and len(e.args) > MAX_INLINE_TERMS:
                s = sympy.Symbol(f"_sum{len(named)}", real=True)
                named.append((s, e))
                if e.free_symbols & active:
                    active.add(s)
                e = s
            out[idx] = e
        return out if arr.shape else out[()]

    def run(node: Any) -> Any:
        if node.op == "num":
            return interp.number(node, "sympy", sympy)
        if node.op == "name":
            ref = str(node.value)
            return env[ref] if ref in env else interp.constant(ref, "sympy", sympy)
        if (
            not (set(node.names()) & ({name} | deps))
            and sum(max(1, prod(n.shape)) for n in node.walk()) > MAX_INLINE_TERMS
        ):
            # A big part that does not depend on `name` (W @ x in a formula for b): named, built only if left in.
            syms = symbols(f"_part{len(parts)}", node.shape)
            parts.append((syms, node, dict(env)))
            return syms if node.shape else syms.item()
        return name_wide(interp.apply(node, [run(a) for a in node.args], "sympy", sympy))

    # Each dependent entry, and each named sum, in terms of earlier symbols.
    local: list[tuple[np.ndarray, np.ndarray]] = []
    for entry, node in model.entries.items():
        if entry in deps:
            before = len(named)
            value = np.broadcast_to(np.asarray(run(node), dtype=object), model.shape_of(entry))
            for s, e in named[before:]:
                local.append((np.asarray(s, dtype=object), np.asarray(e, dtype=object)))
            env[entry] = symbols(entry, model.shape_of(entry))
            active |= set(np.asarray(env[entry]).reshape(-1))
            local.append((np.asarray(env[entry]), value))
        elif entry in used:
            env[entry] = symbols(entry, model.shape_of(entry))
        if entry == model.loss:
            break
    adjoint: dict[Any, list[Any]] = {}
    if model.loss in deps:
        adjoint[np.asarray(env[model.loss]).item()] = [sympy.Integer(1)]
    for syms, exprs in reversed(local):
        for idx in np.ndindex(*syms.shape):
            terms = adjoint.pop(syms[idx], None)
            if not terms:
                continue
            a = sympy.Add(*terms)
            e = exprs[idx] if isinstance(exprs[idx], sympy.Basic) else sympy.Integer(0) + exprs[idx]
            for s, p in partials(e, active, syms[idx]).items():
                # Name the entry where its derivative repeats it (tanh' = 1 - h**2).
                adjoint.setdefault(s, []).append((a * p).xreplace({e: syms[idx]}))
    back = dict(named)
    out = np.empty(np.shape(wanted), dtype=object)
    for idx in np.ndindex(*out.shape):
        f = sympy.Add(*adjoint.get(np.asarray(wanted)[idx], []))
        for syms, node, part_env in parts:  # a part the chain rule left in: build it now
            if f.free_symbols & set(np.asarray(syms).reshape(-1)):
                value = np.broadcast_to(
                    np.asarray(interp.run(node, part_env, "sympy", sympy), dtype=object), node.shape
                )
                f = f.xreplace(
                    {syms[i]: value[i] for i in np.ndindex(*node.shape)} if node.shape else {syms.item(): value.item()}
                )
        while back and f.free_symbols & back.keys():  # a named sum that the chain rule left in
            f = f.xreplace(back)
        out[idx] = f
    return out


def loss_expression(model: Model) -> Any:
    """The per-sample loss as one SymPy expression (entries inlined; real symbols)."""
    return build(model).loss
