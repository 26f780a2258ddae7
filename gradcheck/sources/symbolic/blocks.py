"""Block evaluation: the symbolic source one whole tensor per op, for layers of any width.

The tape (:mod:`.tape`) records one SymPy line per tensor element: exact, but
a conv layer's 900 thousand products cost seconds. Here each op of the IR is
one step on whole arrays of all samples at once:

* values are double-double arrays (:mod:`gradcheck.ddarray`, about 32
  significant digits): the op table's ``dd`` forms evaluate the arithmetic and
  the linear ops (sums, ``@``, conv, pooling) with error-free products and
  pairwise sums; every other op runs its mpmath form at :data:`.numbers.DPS`
  digits on the elements;
* backwards, an elementwise op's partial derivatives are SymPy's: SymPy
  differentiates the op's own SymPy form once per op (with the result named
  ``out``, so ``tanh' = 1 - out**2``), and the partial is evaluated on the
  arrays (in double-double where it is a rational function, else per
  element in mpmath, printed as the tape prints it, so kinks take the tape's
  values); a structural op is linear in each operand it passes a gradient to,
  or a composition the op table's ``vjp`` rule writes out in other ops
  (``softmax``), so its adjoint is that rule, evaluated the same way.

The result is the tape's to the last bit wherever both are defined. Where a
value is not finite (an overflow, ``log(0)``), a kinked op without a
``dd_vjp`` sits on a tie, or an op has no rule, :func:`gradients` returns
``None`` and the tape answers. The kinked ops with a ``dd_vjp`` in the op
table (``maxpool2d``, ``max(v)``, ``min(v)``) take SymPy's derivative at
their ties themselves.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

import numpy as np

from ... import ddarray as D
from ... import interp, tensorgrad
from ...expr import Node
from ...layout import align
from ...ops import OPS
from .. import Gradients
from .numbers import DPS, ERRORS

if TYPE_CHECKING:
    from ...model import Model


def supported(model: Model) -> bool:
    """Whether every op the loss uses can be evaluated here (see the module docstring)."""
    cached = model.cache.get("symbolic_blocks")
    if cached is None:
        cached = model.cache["symbolic_blocks"] = _supported(model)
    return bool(cached)


def _supported(model: Model) -> bool:
    for name in _order(model):
        for node in model.entries[name].walk():
            if node.op in ("num", "name"):
                continue
            op = OPS[node.op]
            if op.kind == "elementwise":
                continue
            if op.dd_vjp is not None:
                continue
            if op.vjp is None:
                return False
            try:
                _rules(node)
            except Exception:  # noqa: BLE001  (a rule that cannot be written here: the tape answers)
                return False
    return True


def _order(model: Model) -> list[str]:
    order = list(model.entries)
    return order[: order.index(model.loss) + 1]


def gradients(model: Model, point: Mapping[str, np.ndarray]) -> Gradients | None:
    """Exact gradients of the reduced loss at ``point`` (as :func:`..symbolic.gradients`), or ``None``."""
    if not supported(model):
        return None
    import mpmath

    with mpmath.workdps(DPS), np.errstate(all="ignore"):
        try:
            run = _Run(model, point)
            loss, grads = run.loss(), run.backward()
        except (*ERRORS, NameError, _StepAside, D.LostDigits):  # NameError: a SymPy form mpmath cannot run
            return None
    return _collect(model, loss, grads, "symbolic")


def evaluate(model: Model, point: Mapping[str, np.ndarray], exprs: Mapping[str, Node], source: str) -> Gradients | None:
    """Given expressions of the model (the file's ``expected``), on whole tensors, reduced as gradients are.

    Every model entry is evaluated first (the expressions may name any), then
    each expression, all in double-double; ``None`` where a value is not
    finite or a sum cancels (the caller's mpmath evaluation decides those,
    sample by sample).
    """
    import mpmath

    with mpmath.workdps(DPS), np.errstate(all="ignore"):
        try:
            run = _Run(model, point, list(model.entries))
            values = {name: run.value(node, run.env, keep=False) for name, node in exprs.items()}
        except (*ERRORS, NameError, _StepAside, D.LostDigits):
            return None
    return _collect(model, run.loss(), values, source)


class _StepAside(Exception):
    """A value overflowed or is undefined, or a kinked op sits on a tie: the tape decides it exactly."""


class _Run:
    """One evaluation: the forward values of every node, then the adjoints."""

    def __init__(self, model: Model, point: Mapping[str, np.ndarray], entries: list[str] | None = None) -> None:
        self.model = model
        self.env: dict[str, D.DD] = {
            k: D.DD(np.asarray(point[k] if k in point else p.value, dtype=np.float64)) for k, p in model.params.items()
        }
        self.env.update({k: D.DD(np.asarray(v, dtype=np.float64)) for k, v in model.data.items()})
        self.values: dict[int, D.DD] = {}
        self.live: set[str] = set(model.params)
        for name in _order(model) if entries is None else entries:
            self.env[name] = self.value(model.entries[name], self.env)
            if model.entries[name].names() & self.live:
                self.live.add(name)

    def loss(self) -> D.DD:
        return self.env[self.model.loss]

    # --- forward ----------------------------------------------------------------

    def value(self, node: Node, env: dict[str, D.DD], keep: bool = True) -> D.DD:
        """``node``'s value (every sample); kept by node for the backward pass when ``keep``."""
        if node.op == "num":
            return _number(node)
        if node.op == "name":
            name = str(node.value)
            return env[name] if name in env else _constant(name)
        args = [self.value(a, env, keep) for a in node.args]
        out = _apply(node, args)
        if not D.finite(out):
            raise _StepAside(node.op)
        if keep:
            self.values[id(node)] = out
        return out

    # --- backward ---------------------------------------------------------------

    def backward(self) -> dict[str, D.DD]:
        model = self.model
        adjoint: dict[str, D.DD] = {model.loss: D.DD(np.ones(()))}
        for name in reversed(_order(model)):
            g = adjoint.pop(name, None)
            if g is None or name not in self.live:
                continue
            self.back(model.entries[name], g, adjoint)
        return {k: adjoint.get(k, D.DD(np.zeros(()))) for k in model.params}

    def depends(self, node: Node) -> bool:
        return bool(node.names() & self.live)

    def back(self, node: Node, g: D.DD, adjoint: dict[str, D.DD]) -> None:
        if node.op == "num":
            return
        if node.op == "name":
            name = str(node.value)
            if name in self.live:
                adjoint[name] = D.add(adjoint[name], g) if name in adjoint else g
            return
        if not self.depends(node):
            return
        op = OPS[node.op]
        args = [self.values.get(id(a)) if a.op not in ("num", "name") else self.value(a, self.env) for a in node.args]
        out = self.values[id(node)]
        if op.kind == "elementwise":
            rank = len(node.shape)
            aligned = [align(a, len(n.shape), rank) for a, n in zip(args, node.args)]
            for i, operand in enumerate(node.args):
                if not self.depends(operand):
                    continue
                partial = _partial(node, i, self.env)(out, aligned)
                part = D.mul(g, partial)
                if not D.finite(part):
                    raise _StepAside(node.op)
                self.back(operand, _unbroadcast(part, rank, operand.shape), adjoint)
            return
        if op.dd_vjp is not None:  # SymPy's derivative, ties included
            part = D.lift(op.dd_vjp(D, args, g, [a.shape for a in node.args], **op.bind(node.attrs)))
            self.back(node.args[0], _unbroadcast(part, len(node.args[0].shape), node.args[0].shape), adjoint)
            return
        if op.kink is not None and _tied(node, args):
            raise _StepAside(f"a tie in {node.op}")  # the tape's convention (SymPy's) decides a tie
        env = {"g": g, "out": out}
        env.update(zip(("a", "b", "c"), args))  # type: ignore[arg-type]
        for operand, rule in zip(node.args, _rules(node)):
            if rule is None or not self.depends(operand):
                continue
            part = self.value(rule, env, keep=False)
            self.back(operand, _unbroadcast(part, len(rule.shape), operand.shape), adjoint)


def _tied(node: Node, args: list[Any]) -> bool:
    """Whether a kinked structural op (``max(v)``, ``maxpool2d``) sits on a tie at these operands.

    Away from ties its ``vjp`` rule (the gradient to the maximum) is the only
    derivative there is; at a tie SymPy's convention differs from the rule's.
    The kink quantity is taken on the high parts: where they differ the
    double-doubles differ the same way, and where they are equal the tie is
    left to the tape even if the low parts would break it.
    """
    q = OPS[node.op].kink_at(np, node, [a.hi for a in args])
    return bool(np.any(np.asarray(q) == 0))


def _number(node: Node) -> D.DD:
    import mpmath

    return D.from_mpmath(interp.number(node, "mpmath", mpmath))


def _constant(name: str) -> D.DD:
    import mpmath

    return D.from_mpmath(interp.constant(name, "mpmath", mpmath))


def _apply(node: Node, args: list[D.DD]) -> D.DD:
    """``node``'s op on double-double operands: its ``dd`` form, else its mpmath form."""
    op = OPS[node.op]
    attrs = op.bind(node.attrs)
    if op.kind == "elementwise":
        rank = len(node.shape)
        args = [align(a, len(n.shape), rank) for a, n in zip(args, node.args)]
        if op.dd is not None:
            out = op.dd(D, *args, **attrs)
            if out is not NotImplemented:
                return D.lift(out)
        import mpmath

        return D.from_mpmath(op.mpmath(mpmath, *(D.to_mpmath(a) for a in args), **attrs))
    shapes = [a.shape for a in node.args]
    if op.dd is not None:
        out = op.dd(D, args, shapes, **attrs)
        if out is not NotImplemented:
            return D.lift(out)
    import mpmath

    return D.from_mpmath(op.mpmath(mpmath, [D.to_mpmath(a) for a in args], shapes, **attrs))


def _unbroadcast(g: D.DD, rank: int, shape: tuple[int, ...]) -> D.DD:
    """``g`` (batch axes, then ``rank`` per-sample axes) summed back to the per-sample ``shape``; batch axes kept."""
    batch = g.ndim - rank
    lead = rank - len(shape)
    axes = [batch + i for i in range(lead)]
    axes += [batch + lead + i for i, n in enumerate(shape) if n == 1 and g.shape[batch + lead + i] != 1]
    if not axes:
        return g
    out = D.total(g, axes, keepdims=True)
    return out.reshape(out.shape[:batch] + tuple(shape))


# --- the rules: SymPy's partials of elementwise ops, the table's vjp for the rest ------------

_RULES: dict[tuple[Any, ...], tuple[Node | None, ...]] = {}


def _rules(node: Node) -> tuple[Node | None, ...]:
    """The op's ``vjp`` templates at ``node``, parsed and shaped (placeholders ``g``, ``out``, ``a``, ``b``, ``c``)."""
    key = (node.op, node.attrs, tuple(a.shape for a in node.args))
    found = _RULES.get(key)
    if found is None:
        found = _RULES[key] = tensorgrad.rule_nodes(node)
    return found


Partial = Callable[[D.DD, list[D.DD]], D.DD]
_PARTIALS: dict[tuple[Any, ...], Partial] = {}


def _partial(node: Node, i: int, names: Any) -> Partial:
    """d op / d operand ``i`` at ``node``, as a function of the op's result and its aligned operands.

    ``names`` are the model's own names (a param or entry called ``e`` is not Euler's number).
    """
    constants = tuple(_literal(a, names) for a in node.args)
    key = (node.op, node.attrs, constants, i)
    found = _PARTIALS.get(key)
    if found is None:
        found = _PARTIALS[key] = _derive(node.op, node.attrs, constants, i)
    return found


def _literal(node: Node, names: Any) -> str | None:
    """A number's (or a constant's) text: SymPy differentiates with it in place of a symbol."""
    if node.op == "num":
        return node.text
    if node.op == "name" and str(node.value) in ("pi", "e") and str(node.value) not in names:
        return str(node.value)
    return None


def _derive(op_name: str, attrs: Any, constants: tuple[str | None, ...], i: int) -> Partial:
    import sympy

    op = OPS[op_name]
    syms = [sympy.Symbol(f"_a{j}", real=True) for j in range(len(constants))]
    given = [syms[j] if c is None else _sympy_number(sympy, c) for j, c in enumerate(constants)]
    expr = op.sympy(sympy, *given, **op.bind(attrs))
    if isinstance(expr, np.ndarray):
        expr = expr.reshape(-1)[0]
    out = sympy.Symbol("_out", real=True)
    d = sympy.diff(expr, syms[i])
    if not d.is_Atom and not expr.is_Atom:
        d = d.xreplace({expr: out})
    args = [out, *syms]
    dd = _dd_form(d, args)
    if dd is not None:
        return dd
    from . import codegen

    scalar = np.frompyfunc(codegen.scalar_function(d, args), len(args), 1)

    def per_element(value: D.DD, operands: list[D.DD]) -> D.DD:
        return D.from_mpmath(scalar(D.to_mpmath(value), *(D.to_mpmath(a) for a in operands)))

    return per_element


def _sympy_number(sympy: Any, text: str) -> Any:
    """A literal's (or constant's) exact SymPy value, read as the interpreter reads it."""
    if text in ("pi", "e"):
        return interp.constant(text, "sympy", sympy)
    return interp.number(Node("num", text=text), "sympy", sympy)


def _dd_form(expr: Any, args: list[Any]) -> Partial | None:
    """``expr`` (SymPy) as double-double arithmetic when it is a rational function of ``args``, else ``None``."""

    def build(e: Any) -> Callable[[list[D.DD]], D.DD] | None:
        if e.is_Symbol:
            if e not in args:
                return None
            k = args.index(e)
            return lambda v: v[k]
        if e.is_Integer or e.is_Rational:
            import mpmath

            with mpmath.workdps(DPS):
                c = D.from_mpmath(mpmath.mpf(int(e.p)) / int(e.q))
            return lambda v: c
        if e.is_Add or e.is_Mul:
            parts = [build(a) for a in e.args]
            if any(p is None for p in parts):
                return None
            combine = D.add if e.is_Add else D.mul

            def fold(v: list[D.DD]) -> D.DD:
                acc = parts[0](v)  # type: ignore[misc]
                for p in parts[1:]:
                    acc = combine(acc, p(v))  # type: ignore[misc]
                return acc

            return fold
        if e.func.__name__ == "Heaviside":  # Heaviside(z, h0): 1 above 0, h0 (1/2) at 0, 0 below
            inner = build(e.args[0])
            at_zero = float(e.args[1]) if len(e.args) > 1 else 0.5
            if inner is None or not (len(e.args) == 1 or e.args[1].is_Rational):
                return None

            def step(v: list[D.DD]) -> D.DD:
                z = D.sign(inner(v))  # type: ignore[misc]
                return D.DD(np.select([z > 0, z == 0], [1.0, at_zero], 0.0))

            return step
        if e.is_Pow and e.exp.is_Integer:
            base = build(e.base)
            n = int(e.exp)
            return None if base is None else (lambda v: D.power(base(v), n))
        return None

    fn = build(expr)
    if fn is None:
        return None
    return lambda value, operands: fn([value, *operands])


# --- the result ---------------------------------------------------------------------


def _collect(model: Model, loss: D.DD, grads: dict[str, D.DD], source: str) -> Gradients:
    """Per-sample values to the reduced gradients, summed over samples in double-double and rounded once."""
    n = model.n_samples
    per_loss = np.broadcast_to(D.value(loss), (n,)) if loss.ndim <= 1 else D.value(loss)
    values: dict[str, np.ndarray] = {}
    scale: dict[str, np.ndarray] = {}
    for name, g in grads.items():
        shape = model.params[name].shape
        full = D.DD(*(np.broadcast_to(part, (n,) + shape) for part in np.broadcast_arrays(g.hi, g.lo)))
        per_sample = D.value(full)
        if model.reduction == "none":
            values[name] = per_sample.copy()
            scale[name] = np.abs(per_sample)
            continue
        reduced = D.total(full, [0])
        if model.reduction == "mean":
            reduced = D.div(reduced, float(n))
        values[name] = D.value(reduced).reshape(shape)
        scale[name] = np.abs(per_sample).sum(axis=0) / (n if model.reduction == "mean" else 1)
    full_loss = D.DD(*(np.broadcast_to(part, (n,)) for part in np.broadcast_arrays(loss.hi, loss.lo)))
    if model.reduction == "none":
        reduced_loss: Any = D.value(full_loss).copy()
    else:
        total = D.total(full_loss, [0])
        reduced_loss = float(D.value(D.div(total, float(n)) if model.reduction == "mean" else total))
    return Gradients(
        "symbolic",
        values,
        None,
        reduced_loss,
        {"scale": scale, "per_sample_loss": np.array(per_loss, dtype=np.float64)},
    )
