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


def partials(expr: Any, active: set[Any]) -> dict[Any, Any]:
    """d expr / d s for every active symbol s in ``expr``.

    Sums and products are split by hand (one pass, linear in their size);
    everything else is a function of a few operands and goes to ``diff``.
    """
    if expr.is_Symbol:
        return {expr: 1} if expr in active else {}
    if not (expr.free_symbols & active):
        return {}
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
            for s, p in partials(term, active).items():
                out[s] = out[s] + p if s in out else p
        return out
    if expr.is_Mul:
        factors = expr.args
        for i, factor in enumerate(factors):
            sub = partials(factor, active)
            if not sub:
                continue
            rest = factors[1 - i] if len(factors) == 2 else expr.func(*(factors[:i] + factors[i + 1 :]))
            for s, p in sub.items():
                q = rest if p == 1 else p * rest  # d(w*x)/dw is x: no product to build (a wide layer has many)
                out[s] = out[s] + q if s in out else q
        return out
    # A function of a few operands: differentiate its shape once (operands
    # replaced by canonical dummies) and reuse that for every element.
    free = sorted(expr.free_symbols, key=str)
    dummies = _dummies(len(free))
    shape = expr.xreplace(dict(zip(free, dummies)))
    back = dict(zip(dummies, free))
    for s, d in zip(free, dummies):
        if s in active:
            key = (shape, d)
            if key not in _DIFFS:
                _DIFFS[key] = shape.diff(d)
            out[s] = _DIFFS[key].xreplace(back)
    return out


#: Derivatives of op shapes by canonical dummy operand (see :func:`_partials`).
_DIFFS: dict[Any, Any] = {}


def _dummies(n: int) -> list[Any]:
    import sympy

    return [sympy.Symbol(f"_operand{i}", real=True) for i in range(n)]
