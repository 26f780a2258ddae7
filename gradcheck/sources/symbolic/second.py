"""Second derivatives, exactly: forward-mode tangents over the recorded tape (forward over reverse).

The tape's outputs (:mod:`.tape`) are the gradient elements ``g_i`` written in
tape symbols. A tangent pass along a direction ``v`` differentiates every tape
line once more, in order: ``dt = sum_s (d line / d s) * ds`` over the line's
own operands ``s`` (SymPy's ``diff`` of one small expression), so one pass
costs about as much as the tape and gives ``H v = d g / d p . v`` for every
``i`` at once. The full Hessian is one pass per parameter element
(``v = e_j``); a directional check one pass per ``v_k``, dotted with ``u_k``.
The new lines are compiled and run by :mod:`.codegen` like the gradient tape
(mpmath, :data:`~.numbers.DPS` digits) and reduced exactly over the samples by
:func:`~.numbers.collect`. ``DiracDelta`` (the derivative of a step such as
``relu'``) is taken as 0: exactly on a kink the Hessian does not exist, which
the kink check reports (``gradcheck/hessian.py``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from .. import Gradients
from . import codegen
from .local import partials
from .numbers import collect
from .tape import Tape

if TYPE_CHECKING:
    from ...model import Model


class _Partials:
    """``d expr / d s`` per (line, operand), and each line's operands, computed once for every tangent pass.

    All of a line's partials come from one :func:`~.local.partials` call (the
    tape's own: sums and products split by hand, linear in their size), not
    one ``diff`` of the whole line per operand (quadratic for a wide sum).
    """

    def __init__(self) -> None:
        self.tables: dict[Any, dict[Any, Any]] = {}
        self.operands: dict[Any, list[Any]] = {}

    def __call__(self, key: Any, expr: Any, s: Any) -> Any:
        import sympy

        table = self.tables.get(key)
        if table is None:
            table = {}
            free = set(getattr(expr, "free_symbols", ()))
            for sym, found in (partials(expr, free) if free else {}).items():
                found = sympy.Integer(found) if isinstance(found, int) else found  # d s / d s is the int 1
                if found.has(sympy.DiracDelta):
                    found = found.replace(sympy.DiracDelta, lambda *_a: sympy.Integer(0))
                table[sym] = found
            self.tables[key] = table
        return table.get(s, sympy.Integer(0))

    def of(self, key: Any, expr: Any) -> list[Any]:
        """The symbols of ``expr`` in name order (SymPy recomputes ``free_symbols`` on every access)."""
        found = self.operands.get(key)
        if found is None:
            found = self.operands[key] = sorted(getattr(expr, "free_symbols", ()), key=lambda s: s.name)
        return found


#: Widest sum one generated line holds: a wider one is split into lines of partial sums (Python's
#: compiler recurses once per ``+`` of a printed chain, and a 1e4-parameter direction makes thousands).
CHUNK = 64


def _narrow(expr: Any, tag: str, lines: list[tuple[Any, Any]]) -> Any:
    """``expr`` with every sum of more than :data:`CHUNK` terms split into new lines of partial sums."""
    import sympy

    terms = list(expr.args) if expr.is_Add else []
    if len(terms) <= CHUNK:
        return expr
    parts = []
    for start in range(0, len(terms), CHUNK):
        sym = sympy.Symbol(f"{tag}_{len(lines)}", real=True)
        lines.append((sym, sympy.Add(*terms[start : start + CHUNK])))
        parts.append(sym)
    return _narrow(sympy.Add(*parts), tag, lines)


def _tangent(
    tape: Tape, seed: dict[Any, Any], tag: str, partial: _Partials, lines: list[tuple[Any, Any]]
) -> dict[Any, Any]:
    """One forward pass: the tangent of every tape symbol along ``seed`` (param symbol -> coefficient).

    New lines are appended to ``lines``; returns symbol -> tangent (a symbol or a number).
    """
    import sympy

    dot: dict[Any, Any] = dict(seed)
    for t, e in tape.lines:
        operands = [s for s in partial.of(t, e) if s in dot]
        if not operands:
            continue
        expr = sympy.Add(*(partial(t, e, s) * dot[s] for s in operands))
        if expr == 0:
            continue
        if expr.is_Atom:
            dot[t] = expr
            continue
        expr = _narrow(expr, tag, lines)
        sym = sympy.Symbol(f"{tag}_{len(lines)}", real=True)
        lines.append((sym, expr))
        dot[t] = sym
    return dot


def _output_tangent(tape: Tape, i: int, dot: dict[Any, Any], partial: _Partials) -> Any:
    """The tangent of gradient output ``i`` (``tape.outputs[1 + i]``)."""
    import sympy

    e = tape.outputs[1 + i]  # a SymPy expression built by the tape (sympy.Add of nothing is 0)
    key = ("out", i)
    return sympy.Add(*(partial(key, e, s) * dot[s] for s in partial.of(key, e) if s in dot))


def _second_tape(
    tape: Tape, lines: list[tuple[Any, Any]], outputs: list[Any], name: str, shape: tuple[int, ...]
) -> Tape:
    second = Tape(tape.params, tape.data, tape.lines + lines, [tape.outputs[0], *outputs], [(name, shape)])
    codegen._compile(second)
    return second


def hessian_tape(model: Model) -> Tape:
    """The tape extended by one tangent pass per parameter element.

    Outputs ``[loss, H[i, j] for i <= j]`` (the upper triangle, row by row,
    as :func:`numpy.triu_indices`): the exact Hessian is symmetric, so each
    pair is built, compiled, run and reduced once (:func:`hessian` mirrors it).
    """
    cached = model.cache.get("symbolic_hessian_tape")
    if cached is not None:
        return cached  # type: ignore[no-any-return]
    import sympy

    tape = codegen.tape_of(model)
    n = len(tape.params)
    partial = _Partials()
    lines: list[tuple[Any, Any]] = []
    upper: dict[tuple[int, int], Any] = {}
    for j, p in enumerate(tape.params):
        dot = _tangent(tape, {p: sympy.Integer(1)}, f"hv{j}", partial, lines)
        for i in range(j + 1):
            upper[(i, j)] = _narrow(_output_tangent(tape, i, dot, partial), f"hv{j}", lines)
    rows, cols = np.triu_indices(n)
    outputs = [upper[(int(i), int(j))] for i, j in zip(rows, cols)]
    second = _second_tape(tape, lines, outputs, "hessian", (len(outputs),))
    model.cache["symbolic_hessian_tape"] = second
    return second


def hessian(model: Model, point: dict[str, np.ndarray]) -> Gradients:
    """The exact Hessian of the reduced loss over all parameter elements (file order), rounded to float64.

    ``values["hessian"]`` is ``(n, n)``; ``info["scale"]["hessian"]`` the
    mean over samples of each per-sample entry's magnitude. Each pair
    ``i < j`` is computed once and mirrored (the exact Hessian is symmetric).
    """
    tape = hessian_tape(model)
    out = collect(model, codegen.run(model, tape, point), tape.layout, "symbolic")
    n = len(tape.params)
    rows, cols = np.triu_indices(n)
    for table in (out.values, out.info["scale"]):
        full = np.empty((n, n))
        full[rows, cols] = table["hessian"]
        full[cols, rows] = table["hessian"]
        table["hessian"] = full
    return out


def directional(model: Model, point: dict[str, np.ndarray], us: np.ndarray, vs: np.ndarray) -> Gradients:
    """Exact ``u_k . H v_k`` for rows of ``us``, ``vs`` (``(K, n)``): one tangent pass per pair.

    The direction's float64 coefficients enter as exact rationals;
    ``values["uHv"]`` is ``(K,)``.
    """
    import sympy

    tape = codegen.tape_of(model)
    n = len(tape.params)
    partial = _Partials()
    lines: list[tuple[Any, Any]] = []
    outputs = []
    for k, (u, v) in enumerate(zip(us, vs)):
        seed = {p: sympy.Rational(float(x)) for p, x in zip(tape.params, v) if x != 0}
        dot = _tangent(tape, seed, f"uv{k}", partial, lines)
        terms = (sympy.Rational(float(u[i])) * _output_tangent(tape, i, dot, partial) for i in range(n) if u[i])
        outputs.append(_narrow(sympy.Add(*terms), f"uv{k}", lines))
    second = _second_tape(tape, lines, outputs, "uHv", (len(outputs),))
    return collect(model, codegen.run(model, second, point), second.layout, "symbolic")
