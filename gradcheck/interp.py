"""One interpreter of the IR for every backend.

``evaluate`` walks a model's entries in order and applies each op's form for
the chosen backend (``"numpy"``, ``"torch"``, ``"sympy"`` or ``"mpmath"``)
from the op table, with the node's attributes (``Op.bind``). It knows nothing
about any op: elementwise arguments are aligned here (see
:func:`gradcheck.ops.align`), everything else is the table's business.

The ``"mpmath"`` backend (``mod`` is the ``mpmath`` module) takes mpmath
numbers or NumPy object arrays of them, batch axes first as for NumPy, and
evaluates at the caller's ``mpmath.mp.dps``; literals are read from their
text at that precision. A value that is undefined or infinite becomes
``mpmath.nan`` element by element (so per sample), and stays nan.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from .expr import Node
from .layout import align
from .ops import CONSTANTS, OPS

Visit = Callable[[Node, list[Any]], None]


def number(node: Node, backend: str, mod: Any) -> Any:
    """A literal as the backend wants it: exact for SymPy, a Python number otherwise."""
    digits = node.text.replace("_", "")
    if backend == "sympy":
        return mod.Integer(digits) if digits.isdigit() else mod.Rational(digits)
    if backend == "mpmath":
        return mod.mpf(digits)
    return int(digits) if digits.isdigit() else float(node.value)  # type: ignore[arg-type]


def constant(name: str, backend: str, mod: Any) -> Any:
    if backend == "sympy":
        return {"pi": mod.pi, "e": mod.E}[name]
    if backend == "mpmath":
        return mod.mpf({"pi": mod.pi, "e": mod.e}[name])
    return CONSTANTS[name]


def apply(node: Node, args: list[Any], backend: str, mod: Any, visit: Visit | None = None) -> Any:
    """Apply ``node``'s op to already evaluated operands."""
    op = OPS[node.op]
    attrs = op.bind(node.attrs)
    if backend in ("numpy", "torch") and not node.shape and not any(hasattr(a, "shape") for a in args):
        # Only numbers to a number (e.g. ``exp(2)``; ``expand(1, [3])`` makes an array): compute in float64 and hand back a Python float,
        # which combines with tensors of any dtype without promoting them.
        import numpy as np

        with np.errstate(all="ignore"):
            out = apply(node, [np.asarray(a, dtype=np.float64) for a in args], "numpy", np)
        return float(np.asarray(out))
    form = getattr(op, backend)
    if op.kind == "elementwise":
        rank = len(node.shape)
        aligned = [align(a, len(n.shape), rank) for a, n in zip(args, node.args)]
        if visit is not None:
            visit(node, aligned)
        if backend == "torch" and not any(isinstance(a, mod.Tensor) for a in aligned):
            # only constant operands (``sin(1)``): torch functions want tensors, so fold in float64
            return form(mod, *[mod.as_tensor(a, dtype=mod.float64) for a in aligned], **attrs).item()
        return form(mod, *aligned, **attrs)
    if visit is not None:
        visit(node, args)
    return form(mod, args, [a.shape for a in node.args], **attrs)


def run(
    node: Node,
    env: Mapping[str, Any],
    backend: str,
    mod: Any,
    visit: Visit | None = None,
) -> Any:
    """Evaluate one expression; ``env`` maps every name it uses to a value."""
    if node.op == "num":
        return number(node, backend, mod)
    if node.op == "name":
        name = str(node.value)
        if name in env:
            return env[name]
        return constant(name, backend, mod)
    args = [run(a, env, backend, mod, visit) for a in node.args]
    return apply(node, args, backend, mod, visit)


def evaluate(
    entries: Mapping[str, Node],
    env: Mapping[str, Any],
    backend: str,
    mod: Any,
    *,
    until: str | None = None,
    visit: Visit | None = None,
) -> dict[str, Any]:
    """Evaluate model entries in order (stopping after ``until``); returns the env with them."""
    values = dict(env)
    for name, node in entries.items():
        values[name] = run(node, values, backend, mod, visit)
        if name == until:
            break
    return values
