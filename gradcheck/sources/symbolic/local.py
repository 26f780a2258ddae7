"""Local derivatives: the element symbols expressions are written in, and d expr / d operand.

Both the tape and the chain-rule formulas differentiate one small expression
at a time with respect to its own operands; this is that one mechanism.
"""

from __future__ import annotations

from typing import Any

import numpy as np


def symbols(name: str, shape: tuple[int, ...], label: str | None = None) -> np.ndarray:
    """Real SymPy symbols for a value of ``shape``: ``name`` / ``name[i, j]``, or ``label`` / ``label_i_j``."""
    import sympy

    label = name if label is None else label
    if not shape:
        return np.asarray(sympy.Symbol(label, real=True), dtype=object)
    out = np.empty(shape, dtype=object)
    for idx in np.ndindex(*shape):
        inner = ", ".join(map(str, idx)) if label == name else "_".join(map(str, idx))
        out[idx] = sympy.Symbol(f"{label}[{inner}]" if label == name else f"{label}_{inner}", real=True)
    return out


def partials(expr: Any, active: set[Any], name: Any = None) -> dict[Any, Any]:
    """d expr / d s for every active symbol s in ``expr``.

    Sums and products are split by hand (one pass, linear in their size);
    everything else is a function of a few operands and goes to ``diff``.
    With ``name`` (the tape's symbol for ``expr``), a function's derivative
    that repeats the function has it written as ``name`` (``1 - t**2``).
    """
    if expr.is_Symbol:
        return {expr: 1} if expr in active else {}
    out: dict[Any, Any] = {}
    if expr.is_Add:
        for term in expr.args:
            if term.is_Mul and len(term.args) == 2 and term.args[0].is_Symbol and term.args[1].is_Symbol:
                # w*x, a layer's term: d/dw is x (no Mul rebuilt)
                a, b = term.args
                for s, q in ((a, 2 * a),) if a is b else ((a, b), (b, a)):  # w*w as it stands: 2*w
                    if s in active:
                        out[s] = out[s] + q if s in out else q
                continue
            for s, p in partials(term, active, None).items():
                out[s] = out[s] + p if s in out else p
        return out
    if expr.is_Mul:
        factors = expr.args
        for i, factor in enumerate(factors):
            sub = partials(factor, active, None)
            if not sub:
                continue
            rest = factors[1 - i] if len(factors) == 2 else expr.func(*(factors[:i] + factors[i + 1 :]))
            for s, p in sub.items():
                q = rest if p == 1 else p * rest  # d(w*x)/dw is x: no product to build (a wide layer has many)
                out[s] = out[s] + q if s in out else q
        return out
    if not (expr.free_symbols & active):
        return {}
    # A function of a few operands: differentiate its shape once (operands
    # replaced by dummies in order of appearance) and reuse that for every
    # element of the same shape; the shape is found by a walk of the tree,
    # without building it (SymPy would evaluate tanh(d0 + d1) again each time).
    order: dict[Any, int] = {}
    key = (template(expr, order), name is not None)
    free = list(order)
    done = _DIFFS.get(key)
    if done is None:
        dummies = _dummies(len(free))
        shape = expr.xreplace(dict(zip(free, dummies)))
        done = _DIFFS[key] = {}
        for i, d in enumerate(dummies):
            # Where the derivative repeats the expression (tanh' = 1 - tanh**2), it is named.
            done[i] = shape.diff(d) if name is None else shape.diff(d).xreplace({shape: _whole()})
    back: dict[Any, Any] = {d: s for d, s in zip(_dummies(len(free)), free)}
    if name is not None:
        back[_whole()] = name
    for i, s in enumerate(free):
        if s in active:
            d = done[i]
            out[s] = d if d.is_Number else d.xreplace(back)
    return out


def template(expr: Any, order: dict[Any, int]) -> Any:
    """``expr``'s shape (hashable): its tree with each symbol replaced by its number in order of first appearance."""
    if expr.is_Symbol:
        return order.setdefault(expr, len(order))
    if not expr.args:
        return (type(expr), expr)
    return (expr.func, tuple(template(a, order) for a in expr.args))


#: Derivatives of op shapes by operand number, per shape (see :func:`partials`).
_DIFFS: dict[Any, dict[int, Any]] = {}


def _dummies(n: int) -> list[Any]:
    import sympy

    return [sympy.Symbol(f"_operand{i}", real=True) for i in range(n)]


def _whole() -> Any:
    """The symbol standing for the whole expression in a cached derivative."""
    import sympy

    return sympy.Symbol("_whole_expression", real=True)
