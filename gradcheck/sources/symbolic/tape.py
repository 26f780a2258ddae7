"""The tape: the model's entries recorded on SymPy symbols, then reverse accumulation.

The entries are run once on NumPy object arrays of SymPy symbols. Every
element an op produces becomes a fresh real symbol with its defining
expression (nothing is inlined), and SymPy differentiates each of those small
expressions with respect to its own operands only (the local partials). The
adjoints are then accumulated backwards, each again a named subexpression.
The cost is proportional to the number of (output, operand) pairs of the ops:
linear in the model's size, whatever its shape (a wide layer's sums are one
``Add`` each, never re-flattened term by term).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from ... import interp
from .local import partials, symbols

if TYPE_CHECKING:
    from ...model import Model


@dataclass
class Tape:
    """Straight-line code for ``[loss, *gradient elements]`` of the per-sample loss."""

    params: list[Any]  # input symbols of the param elements, in order
    data: list[tuple[str, tuple[int, ...], Any]]  # (column, element index, input symbol)
    lines: list[tuple[Any, Any]]  # (symbol, expression), forward then adjoints
    outputs: list[Any]  # the loss, then every param element's derivative
    layout: list[tuple[str, tuple[int, ...]]]
    vectorized: Any = None  # compiled: (params, data arrays) -> outputs
    guarded: Any = None  # compiled, every line in try/except: one sample at a time
    guarded_lines: list[str] = field(default_factory=list)  # its source, compiled on first need


def record(model: Model) -> Tape:
    """Run the entries on symbols, then accumulate adjoints backwards."""
    import sympy

    params = {k: symbols(k, p.shape, f"p{i}") for i, (k, p) in enumerate(model.params.items())}
    data = {k: symbols(k, model.shape_of(k), f"d{i}") for i, k in enumerate(model.data)}
    active: set[Any] = {s for arr in params.values() for s in arr.reshape(-1)}
    lines: list[tuple[Any, Any]] = []
    steps: dict[Any, dict[Any, Any]] = {}  # t -> {operand: d t / d operand}

    def materialize(value: Any) -> Any:
        arr = np.asarray(value, dtype=object)
        out = np.empty(arr.shape, dtype=object)
        for idx in np.ndindex(*arr.shape):
            e = sympy.sympify(arr[idx])
            if e.is_Atom or not e.free_symbols:
                out[idx] = e
                continue
            t = sympy.Symbol(f"t{len(lines)}", real=True)
            lines.append((t, e))
            # The value reused where the derivative repeats it (tanh' = 1 - tanh**2).
            local = partials(e, active, t)
            if local:
                active.add(t)
                steps[t] = {s: _reuse(sympy.sympify(p), e, t) for s, p in local.items()}
            out[idx] = t
        return out if arr.shape else out[()]

    def run(node: Any, env: dict[str, Any]) -> Any:
        if node.op == "num":
            return interp.number(node, "sympy", sympy)
        if node.op == "name":
            name = str(node.value)
            return env[name] if name in env else interp.constant(name, "sympy", sympy)
        args = [run(a, env) for a in node.args]
        return materialize(interp.apply(node, args, "sympy", sympy))

    env: dict[str, Any] = {**params, **data}
    for name, node in model.entries.items():
        env[name] = run(node, env)
        if name == model.loss:
            break
    loss = sympy.sympify(np.asarray(env[model.loss], dtype=object).item())

    # Backwards: a symbol's adjoint is complete once every later line is done.
    # Contributions are (adjoint, partial) pairs, multiplied where they are used.
    contributions: dict[Any, list[tuple[Any, Any]]] = {loss: [(sympy.Integer(1), 1)]} if loss.is_Symbol else {}
    backward: list[tuple[Any, Any]] = []
    for t, _ in reversed(lines):
        pairs = contributions.pop(t, None)
        if not pairs or t not in steps:
            continue
        adjoint = total(times(a, p) for a, p in pairs)
        if not adjoint.is_Atom:
            g = sympy.Symbol(f"g{len(backward)}", real=True)
            backward.append((g, adjoint))
            adjoint = g
        for s, p in steps[t].items():
            contributions.setdefault(s, []).append((adjoint, p))

    outputs: list[Any] = [loss]
    layout: list[tuple[str, tuple[int, ...]]] = []
    for name, syms in params.items():
        for s in syms.reshape(-1):
            # g*x, a weight's whole derivative in a layer, or a sum of such: as it stands, never simplified.
            outputs.append(total(times(a, p) for a, p in contributions.get(s, [])))
        layout.append((name, syms.shape))
    data_inputs = [(k, idx, syms[idx]) for k, syms in data.items() for idx in np.ndindex(*syms.shape)]
    param_inputs = [s for syms in params.values() for s in syms.reshape(-1)]
    return Tape(param_inputs, data_inputs, lines + backward, outputs, layout)


def _reuse(partial: Any, expr: Any, t: Any) -> Any:
    """``partial`` with ``expr`` written as its symbol ``t`` (an atom has nothing to replace)."""
    return partial if partial.is_Atom else partial.xreplace({expr: t})


def times(a: Any, p: Any) -> Any:
    """``a * p``; a product of two distinct symbols (an adjoint times a weight or input) built as it stands.

    SymPy's canonical ``Mul`` costs tens of microseconds (flattening, sorting,
    collecting powers); two distinct symbols have nothing to collect.
    """
    import sympy

    if p == 1:
        return a
    if isinstance(a, sympy.Symbol) and isinstance(p, sympy.Symbol) and a is not p:
        return sympy.Mul._from_args((a, p), a.is_commutative and p.is_commutative)
    return a * p


def total(terms: Any) -> Any:
    """The sum of ``terms``; one of symbols and products of two symbols (:func:`times`) built as it stands.

    Such terms have nothing for SymPy to collect but repeats, which evaluate the
    same either way; anything else takes the canonical ``Add``.
    """
    import sympy

    terms = list(terms)
    if not terms:
        return sympy.Integer(0)
    if len(terms) == 1:
        return terms[0]  # a SymPy expression: times() keeps the adjoint's type
    if all(_plain(t) for t in terms):
        return sympy.Add._from_args(terms, all(t.is_commutative for t in terms))
    return sympy.Add(*terms)


def _plain(term: Any) -> bool:
    import sympy

    if isinstance(term, sympy.Symbol):
        return True
    return isinstance(term, sympy.Mul) and len(term.args) == 2 and all(isinstance(f, sympy.Symbol) for f in term.args)
