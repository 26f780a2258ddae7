"""Tensor-form derivatives: each param's gradient as one expression of the model language.

Reverse accumulation over the model's IR at tensor level. The per-sample loss
gets the cotangent ``1``; each model entry, from the loss back to the first,
passes its accumulated cotangent ``g`` through its expression, op by op, with
the op's vector-Jacobian rule from the op table (``Op.vjp``: model-language
templates in ``g``, ``out`` and the operands ``a``, ``b``, ``c``). An
operand that a broadcasting op stretched gets its cotangent summed back over
the broadcast axes. A reference to an earlier entry adds to that entry's
cotangent, a reference to a param to the param's gradient: so the formulas
name the model's entries (``y_pred``, ``h``) where the model does, and an
op's result that is an entry (``out`` of ``h: tanh(...)``) is written ``h``.
Nothing beyond the entries is named (the language has no ``let``): a
cotangent used in several places is written out in each.

A small simplifier (:func:`simplify`) keeps the result short: constant
folding, ``1*x``, ``0 + x``, ``x*0``, ``x.T.T``, ``--x``, products flattened
with repeated factors made powers and cancelled against divisors, a product
with a sum distributed when that is shorter, ``expand`` dropped where
broadcasting does its work, and linear ops of zero dropped. Formulas print
with :func:`gradcheck.expr.unparse`.

:func:`gradient_expression` is what ``Model.gradient_expression`` returns; for
a scalar param of an all-scalar model it is SymPy's simplified formula when
that text is model language (see ``docs/model-file.md``, "Formulas").
This module imports the model only for type checking.
"""

from __future__ import annotations

from collections.abc import Mapping
from fractions import Fraction
from functools import cache
from typing import TYPE_CHECKING, Any

from . import expr as _expr
from .errors import ModelError
from .expr import Node
from .ops import CONSTANTS, OPS, Shape, broadcast

if TYPE_CHECKING:
    from .model import Model

#: The placeholders of a rule's templates: the cotangent, the result, the operands.
PLACEHOLDERS = ("g", "out", "a", "b", "c")

#: Ops that are linear in every operand: a zero operand makes a zero result, a negated one a negated result.
_LINEAR = frozenset({"neg", "T", "index", "sum", "mean", "expand", "scatter", "reshape", "flatten", "diag", "trace"})
#: Ops that are linear in each operand separately: a zero operand makes a zero result.
_BILINEAR = frozenset({"mul", "matmul", "outer", "dot"})


# --- building nodes ------------------------------------------------------------------


def num(value: float) -> Node:
    """A number node; a negative number is ``neg`` of its magnitude (``-2**2`` would read wrong)."""
    if value < 0:
        return make("neg", (num(-value),))
    if float(value).is_integer():
        text = str(int(value))
    else:
        text = repr(float(value))
    return Node("num", value=float(value), text=text)


def number(node: Node) -> float | None:
    """The value of a number node (or ``neg`` of one), else ``None``."""
    if node.op == "num":
        return float(node.value)  # type: ignore[arg-type]
    if node.op == "neg" and node.args[0].op == "num":
        return -float(node.args[0].value)  # type: ignore[arg-type]
    return None


def is_zero(node: Node) -> bool:
    return number(node) == 0


def make(op: str, args: tuple[Node, ...], attrs: tuple[tuple[str, object], ...] = ()) -> Node:
    """A node of ``op`` with its shape from the op's shape rule (no simplification)."""
    entry = OPS[op]
    shape = entry.shape(*(a.shape for a in args), **entry.bind(attrs))
    value = dict(attrs).get("index") if entry.notation == "index" else None
    return Node(op, args, value=value, shape=tuple(shape), attrs=attrs)


def key(node: Node) -> tuple[str, Shape]:
    """Structural identity: the printed text and the shape."""
    return _expr.unparse(node), node.shape


def _size(node: Node) -> int:
    return sum(1 for _ in node.walk())


# --- the simplifier -----------------------------------------------------------------------


def simplify(node: Node) -> Node:
    """``node`` simplified bottom-up (see the module docstring); shapes kept or broadcast-compatible."""
    if node.op in ("num", "name"):
        return node
    args = tuple(simplify(a) for a in node.args)
    return rebuild(node.op, args, node.attrs)


def _fold(op: str, values: list[float]) -> float | None:
    try:
        if op == "add":
            return values[0] + values[1]
        if op == "sub":
            return values[0] - values[1]
        if op == "mul":
            return values[0] * values[1]
        if op == "div":
            out = values[0] / values[1]
            return out if out.is_integer() else None
        if op == "pow":
            out = values[0] ** values[1]
            return out if isinstance(out, float) and out.is_integer() else None
        if op == "neg":
            return -values[0]
    except (ZeroDivisionError, OverflowError):
        return None
    return None


def rebuild(op: str, args: tuple[Node, ...], attrs: tuple[tuple[str, object], ...] = ()) -> Node:
    """``op(*args)`` with the simplifier's rules applied at the top (operands already simple)."""
    values = [number(a) for a in args]
    if OPS[op].kind == "elementwise" and args and all(v is not None for v in values):
        folded = _fold(op, values)  # type: ignore[arg-type]
        if folded is not None:
            return num(folded)
    if op in _LINEAR and is_zero(args[0]):
        return num(0)
    if op in _BILINEAR and any(is_zero(a) for a in args):
        return num(0)
    if op in _LINEAR and op != "neg" and args[0].op == "neg" and not is_zero(args[0]):
        return rebuild("neg", (rebuild(op, (args[0].args[0],), attrs),))
    if op == "neg":
        (a,) = args
        if a.op == "neg":
            return a.args[0]
        if a.op == "sub":
            return rebuild("sub", (a.args[1], a.args[0]))
        return make("neg", (a,))
    if op == "add":
        return _add(args[0], args[1])
    if op == "sub":
        return _sub(args[0], args[1])
    if op in ("mul", "div"):
        return _product(op, args)
    if op == "pow":
        a, b = args
        if values[1] == 1:
            return a
        if values[1] == 0 or values[0] == 1:
            return num(1)
        if a.op == "sqrt" and values[1] is not None and values[1] % 2 == 0:  # real wherever sqrt(x) is
            return rebuild("pow", (a.args[0], num(values[1] / 2)))
        if a.op == "pow" and number(a.args[1]) is not None and values[1] is not None:
            return rebuild("pow", (a.args[0], num(number(a.args[1]) * values[1])))  # type: ignore[operator]
        return make("pow", args)
    if op == "T":
        (a,) = args
        if len(a.shape) < 2:
            return a
        if a.op == "T":
            return a.args[0]
        if a.op == "matmul":  # (x @ y).T = y.T @ x.T, kept when shorter
            swapped = rebuild("matmul", (rebuild("T", (a.args[1],)), rebuild("T", (a.args[0],))))
            plain = make("T", args)
            return swapped if _size(swapped) <= _size(plain) else plain
        if a.op == "mul" and number(a.args[0]) is not None:
            return rebuild("mul", (a.args[0], rebuild("T", (a.args[1],))))
        return make("T", args)
    if op in ("matmul", "outer"):  # a number factor moves out: (2 * x) @ y = 2 * (x @ y)
        for i, a in enumerate(args):
            if a.op == "mul" and number(a.args[0]) is not None and not a.args[0].shape:
                rest = list(args)
                rest[i] = a.args[1]
                return rebuild("mul", (a.args[0], rebuild(op, tuple(rest), attrs)))
    if op in ("expand", "reshape") and args[0].shape == make(op, args, attrs).shape:
        return args[0]
    if op in ("expand", "reshape"):  # a constant tensor keeps one form: expand(c, shape=new) [* or / a number]
        shape = make(op, args, attrs).shape
        a = args[0]
        if a.op == "expand" and number(a.args[0]) is not None:
            return make("expand", (a.args[0],), (("shape", shape),))
        if a.op in ("mul", "div") and a.args[0].op == "expand" and number(a.args[0].args[0]) is not None:
            if number(a.args[1]) is not None:
                return rebuild(a.op, (make("expand", (a.args[0].args[0],), (("shape", shape),)), a.args[1]))
    if op == "exp" and args[0].op == "log_softmax":  # exp(log_softmax(z)) = softmax(z)
        return make("softmax", args[0].args, args[0].attrs)
    if op == "sum" and not args[0].shape:
        return args[0]
    if op == "where" and is_zero(args[1]) and is_zero(args[2]):
        return num(0)
    return make(op, args, attrs)


def _strip(node: Node) -> Node:
    """``node`` without an ``expand`` on top or among its top product's factors (its shape may shrink)."""
    if node.op == "expand":
        return node.args[0]
    if node.op == "neg":
        inner = _strip(node.args[0])
        return node if inner is node.args[0] else make("neg", (inner,))
    if node.op in ("mul", "div"):
        a, b = _strip(node.args[0]), node.args[1] if node.op == "div" else _strip(node.args[1])
        if a is node.args[0] and b is node.args[1]:
            return node
        return make(node.op, (a, b))
    return node


def _unexpand2(a: Node, b: Node) -> tuple[Node, Node]:
    """Drop an ``expand`` from one side of ``a ± b`` when the other side broadcasts to its shape anyway."""
    for first, second in ((a, b), (b, a)):
        if second.shape == first.shape:
            bare = _strip(first)
            if bare is not first and broadcast(bare.shape, second.shape) == second.shape:
                a, b = (bare, b) if first is a else (a, bare)
    return a, b


def _summands(node: Node) -> list[Node]:
    return _summands(node.args[0]) + _summands(node.args[1]) if node.op == "add" else [node]


def _as_concat(terms: list[Node]) -> Node | None:
    """A sum of ``scatter``s that tile their shape along one axis, as the ``concat`` of their values.

    The gates of an LSTM come back as ``concat(di, df, do, dg)``, as the courses write them.
    """
    if len(terms) < 2 or any(t.op != "scatter" for t in terms) or len({t.shape for t in terms}) != 1:
        return None
    shape = terms[0].shape
    axes: set[int] = set()
    spans = []
    for t in terms:
        attrs = OPS["scatter"].bind(t.attrs)
        value = t.args[0].shape
        if len(value) != len(shape) or any(k != 1 for k in attrs["step"] or ()):
            return None
        start = tuple(attrs["start"] or ()) + (0,) * (len(shape) - len(attrs["start"] or ()))
        for i, (v, n, s0) in enumerate(zip(value, shape, start)):
            if v != n or s0 != 0:
                axes.add(i)
        spans.append((t, start))
    if len(axes) != 1:
        return None
    (axis,) = axes
    spans.sort(key=lambda ts: ts[1][axis])
    at = 0
    for t, start in spans:
        if start[axis] != at:
            return None
        at += t.args[0].shape[axis]
    if at != shape[axis]:
        return None
    return make("concat", tuple(t.args[0] for t, _ in spans), (("axis", axis),) if axis else ())


def _add(a: Node, b: Node) -> Node:
    joined = _as_concat(_summands(a) + _summands(b))
    if joined is not None:
        return joined
    a, b = _unexpand2(a, b)
    if is_zero(a):
        return b if b.shape == broadcast(a.shape, b.shape) else make("add", (a, b))
    if is_zero(b):
        return a if a.shape == broadcast(a.shape, b.shape) else make("add", (a, b))
    if b.op == "neg":
        return _sub(a, b.args[0])
    if a.op == "neg":
        return _sub(b, a.args[0])
    if key(a) == key(b):
        return _product("mul", (num(2), a))
    return make("add", (a, b))


def _sub(a: Node, b: Node) -> Node:
    a, b = _unexpand2(a, b)
    if is_zero(b):
        return a if a.shape == broadcast(a.shape, b.shape) else make("sub", (a, b))
    if is_zero(a):
        return rebuild("neg", (b,)) if b.shape == broadcast(a.shape, b.shape) else make("sub", (a, b))
    if b.op == "neg":
        return _add(a, b.args[0])
    if a.op == "neg":
        return rebuild("neg", (_add(a.args[0], b),))
    if key(a) == key(b):
        return num(0)
    return make("sub", (a, b))


def _exact(value: float) -> Fraction | float:
    return Fraction(int(value)) if float(value).is_integer() else value


def _factors(node: Node, power: float, out: list[tuple[Node, float]]) -> Fraction | float:
    """Collect ``node ** power`` as (base, exponent) factors into ``out``; returns the numeric coefficient."""
    value = number(node)
    if value is not None:
        if power in (1, -1) and value != 0:
            return _exact(value) ** int(power)
        return _keep(node, power, out)
    if node.op == "neg":
        return -_factors(node.args[0], power, out) if power in (1, -1) else _keep(node, power, out)
    if node.op == "mul":
        return _factors(node.args[0], power, out) * _factors(node.args[1], power, out)
    if node.op == "div":
        return _factors(node.args[0], power, out) * _factors(node.args[1], -power, out)
    if node.op == "pow" and number(node.args[1]) is not None:
        return _factors(node.args[0], power * number(node.args[1]), out)  # type: ignore[operator]
    return _keep(node, power, out)


def _keep(node: Node, power: float, out: list[tuple[Node, float]]) -> Fraction:
    out.append((node, power))
    return Fraction(1)


def _product(op: str, args: tuple[Node, ...]) -> Node:
    """A product (or quotient) flattened: one coefficient, repeated factors as powers, divisors cancelled."""
    whole = make(op, args)
    if op == "div" and is_zero(args[0]):
        return num(0)
    factors: list[tuple[Node, float]] = []
    coef = _factors(whole, 1.0, factors)
    if coef == 0:
        return num(0)
    merged = _merge(factors)
    kept = [(b, p) for b, p in merged.values() if p != 0]
    # ``expand(s, S)`` as a factor: the other factors broadcast to S anyway, so ``s`` does
    kept = _unexpand(kept, whole.shape)
    coef, kept = _numbers(coef, kept)
    out = _assemble(coef, kept)
    if out.shape != whole.shape:  # a cancelled factor carried the shape: keep it broadcast
        out = make("expand", (out,), (("shape", whole.shape),)) if whole.shape else whole
    best = _distribute(out)
    return best if best is not None and _size(best) < _size(out) else out


def _merge(factors: list[tuple[Node, float]]) -> dict[tuple[str, Shape], list[Any]]:
    """Factors with one base (by :func:`key`) as one ``[base, total power]``, in order of first appearance."""
    merged: dict[tuple[str, Shape], list[Any]] = {}
    for base, power in factors:
        k = key(base)
        if k in merged:
            merged[k][1] += power
        else:
            merged[k] = [base, power]
    return merged


def _unexpand(kept: list[tuple[Node, float]], shape: Shape) -> list[tuple[Node, float]]:
    out = list(kept)
    for i, (base, power) in enumerate(out):
        if base.op != "expand":
            continue
        others = [b.shape for j, (b, _) in enumerate(out) if j != i]
        try:
            if broadcast(*others, base.args[0].shape) == shape:
                out[i] = (base.args[0], power)
        except ValueError:
            continue
    return out


def _numbers(
    coef: Fraction | float, kept: list[tuple[Node, float]]
) -> tuple[Fraction | float, list[tuple[Node, float]]]:
    """Number factors (an ``expand`` of a number, unwrapped) moved into the coefficient."""
    out = []
    for base, power in kept:
        value = number(base)
        if value is not None and value != 0 and power in (1, -1):
            coef = coef * _exact(value) ** int(power)
        else:
            out.append((base, power))
    return coef, out


def _power(base: Node, p: float) -> Node:
    return base if p == 1 else make("pow", (base, num(p)))


def _assemble(coef: Fraction | float, kept: list[tuple[Node, float]]) -> Node:
    top = [_power(b, p) for b, p in kept if p > 0]
    bottom = [_power(b, -p) for b, p in kept if p < 0]
    sign = coef < 0
    coef = -coef if sign else coef
    if isinstance(coef, Fraction) and coef.denominator != 1:
        bottom.insert(0, num(coef.denominator))
        coef = Fraction(coef.numerator)
    numer: Node | None = None
    for f in ([num(float(coef))] if coef != 1 or not top else []) + top:
        numer = f if numer is None else make("mul", (numer, f))
    assert numer is not None
    if bottom:
        den = bottom[0]
        for f in bottom[1:]:
            den = make("mul", (den, f))
        numer = make("div", (numer, den))
    return make("neg", (numer,)) if sign else numer


def _distribute(node: Node) -> Node | None:
    """``f * (u ± v)`` as ``f*u ± f*v`` (simplified), for the caller to keep when shorter."""
    inner = node.args[0] if node.op == "neg" else node
    if inner.op != "mul":
        return None
    factors: list[Node] = []
    stack = [inner]
    while stack:
        n = stack.pop()
        if n.op == "mul":
            stack.extend(reversed(n.args))
        else:
            factors.append(n)
    sums = [i for i, f in enumerate(factors) if f.op in ("add", "sub")]
    if not sums or len(factors) > 8:
        return None
    best: Node | None = None
    for i in sums:
        rest = factors[:i] + factors[i + 1 :]
        total = factors[i]
        parts = []
        for term in total.args:
            prod = term
            for f in rest:
                prod = _product_no_distribute(prod, f)
            parts.append(prod)
        out = _add(parts[0], parts[1]) if total.op == "add" else _sub(parts[0], parts[1])
        if out.shape == node.shape and (best is None or _size(out) < _size(best)):
            best = out
    if best is None:
        return None
    return rebuild("neg", (best,)) if node.op == "neg" else best


def _product_no_distribute(a: Node, b: Node) -> Node:
    whole = make("mul", (a, b))
    factors: list[tuple[Node, float]] = []
    coef = _factors(whole, 1.0, factors)
    if coef == 0:
        return num(0)
    merged = _merge(factors)
    kept = _unexpand([(b_, p) for b_, p in merged.values() if p != 0], whole.shape)
    return _assemble(*_numbers(coef, kept))


# --- sums of products: expanded, like terms collected ------------------------------------

#: Most terms :func:`collect` expands a sum into before it gives up.
MAX_TERMS = 32

Term = tuple[Any, list[tuple[Node, float]]]  # (coefficient, factors)


def _terms(node: Node) -> list[Term] | None:
    """``node`` as a sum of products (``None`` when that takes more than :data:`MAX_TERMS` terms)."""
    if node.op in ("add", "sub"):
        a, b = _terms(node.args[0]), _terms(node.args[1])
        if a is None or b is None:
            return None
        return a + (b if node.op == "add" else [(-c, f) for c, f in b])
    if node.op == "neg":
        a = _terms(node.args[0])
        return None if a is None else [(-c, f) for c, f in a]
    value = number(node)
    if value is not None:
        return [(_exact(value), [])]
    if node.op not in ("mul", "div"):
        return [(Fraction(1), [(node, 1.0)])]
    factors: list[tuple[Node, float]] = []
    coef = _factors(node, 1.0, factors)
    out: list[Term] = [(coef, [])]
    for base, power in factors:
        inner = _terms(base) if power == 1 and base.op in ("add", "sub", "neg") else None
        if inner is None:
            out = [(c, f + [(base, power)]) for c, f in out]
        else:
            out = [(c1 * c2, f1 + f2) for c1, f1 in out for c2, f2 in inner]
        if len(out) > MAX_TERMS:
            return None
    return out


def collect(node: Node) -> Node:
    """``node`` expanded into a sum of products with like terms collected, when that is shorter."""
    if node.op not in ("add", "sub", "neg", "mul", "div"):
        return node
    terms = _terms(node)
    if terms is None or len(terms) < 2:
        return node
    sums: dict[tuple[Any, ...], list[Any]] = {}
    for coef, factors in terms:
        merged = _merge(factors)
        coef, kept = _numbers(coef, [(b, p) for b, p in merged.values() if p != 0])
        k = tuple(sorted((key(b), p) for b, p in kept))
        if k in sums:
            sums[k][0] += coef
        else:
            sums[k] = [coef, kept]
    parts = [(c, f) for c, f in sums.values() if c != 0]
    if not parts:
        return node
    parts.sort(key=lambda t: t[0] < 0)  # a positive term first: `y_pred - y`, not `-y + y_pred`
    out: Node | None = None
    for coef, kept in parts:
        term = _assemble(abs(coef), kept)
        if out is None:
            out = make("neg", (term,)) if coef < 0 else term
        else:
            out = make("sub" if coef < 0 else "add", (out, term))
    assert out is not None
    if out.shape != node.shape or _size(out) >= _size(node):
        return node
    return out


# --- the rules ----------------------------------------------------------------------------


@cache
def _template(text: str) -> Node:
    return _expr.parse(text)


def _substitute(node: Node, values: Mapping[str, Node]) -> Node:
    if node.op == "name":
        return values.get(str(node.value), node)
    if node.op == "num":
        return node
    return Node(node.op, tuple(_substitute(a, values) for a in node.args), node.value, 0, node.text, (), node.attrs)


def _shaped(node: Node, shapes: Mapping[str, Shape]) -> Node:
    """``node`` with every shape filled in (the substituted operands keep theirs)."""
    if node.op == "num":
        return node
    if node.op == "name":
        name = str(node.value)
        return node if node.shape or name not in shapes else Node("name", value=name, shape=shapes[name])
    return make(node.op, tuple(_shaped(a, shapes) for a in node.args), node.attrs)


def unbroadcast(g: Node, shape: Shape) -> Node:
    """``g`` summed back to ``shape`` over the axes broadcasting added or stretched (or broadcast up to it)."""
    if g.shape == shape:
        return g
    if len(g.shape) < len(shape) or any(n != 1 and n != m for n, m in zip(shape[::-1], g.shape[::-1])):
        return rebuild("expand", (g,), (("shape", shape),))
    lead = len(g.shape) - len(shape)
    stretched = [lead + i for i, n in enumerate(shape) if n == 1 and g.shape[lead + i] != 1]
    out = g
    if stretched:
        axis: int | tuple[int, ...] = stretched[0] if len(stretched) == 1 else tuple(stretched)
        out = rebuild("sum", (out,), (("axis", axis), ("keepdims", True)))
    if lead:
        if not shape:
            return rebuild("sum", (out,))
        out = rebuild("sum", (out,), (("axis", tuple(range(lead)) if lead > 1 else 0),))
    return out


class Derivation:
    """The reverse accumulation over one model (built lazily, cached on ``model.cache``)."""

    def __init__(self, model: Model) -> None:
        self.model = model
        self.shapes: dict[str, Shape] = dict.fromkeys(CONSTANTS, ()) | model.shapes
        order = list(model.entries)
        self.order = order[: order.index(model.loss) + 1]
        live: set[str] = set(model.params)
        for name in self.order:
            if model.entries[name].names() & live:
                live.add(name)
        self.live = live
        self.grads: dict[str, Node] | None = None
        self.entry = ""
        #: each entry's expression (by :func:`key`) -> its name: a formula names what the model names
        self.named = {key(node): name for name, node in model.entries.items() if node.op not in ("name", "num")}
        #: entries that are products or quotients, as factors: found among a longer product's factors
        self.products: list[tuple[str, Shape, Fraction | float, dict[tuple[str, Shape], list[Any]]]] = []
        for name, node in model.entries.items():
            if node.op in ("mul", "div"):
                factors: list[tuple[Node, float]] = []
                coef = _factors(node, 1.0, factors)
                self.products.append((name, node.shape, coef, _merge(factors)))

    def name(self, node: Node) -> Node:
        """``node`` with every subexpression that is a model entry's expression written as the entry's name."""
        if node.op in ("name", "num"):
            return node
        found = self.named.get(key(node))
        if found is not None:
            return Node("name", value=found, shape=node.shape)
        args = tuple(self.name(a) for a in node.args)
        out = node if all(x is y for x, y in zip(args, node.args)) else rebuild(node.op, args, node.attrs)
        return self.name_factors(out) if out.op in ("mul", "div") and self.products else out

    def name_factors(self, node: Node) -> Node:
        """A product that holds all the factors of an entry that is a product, with the entry's name for them."""
        factors: list[tuple[Node, float]] = []
        coef = _factors(node, 1.0, factors)
        merged = _merge(factors)
        found = False
        for name, shape, ecoef, efactors in self.products:
            if len(efactors) < 2 or any(
                k not in merged or merged[k][1] * p <= 0 or abs(merged[k][1]) < abs(p) for k, (_, p) in efactors.items()
            ):
                continue
            for k, (_, p) in efactors.items():
                merged[k][1] -= p
            merged[("\0" + name, shape)] = [Node("name", value=name, shape=shape), 1.0]
            coef = coef / ecoef
            found = True
        if not found:
            return node
        out = _assemble(coef, [(b, p) for b, p in merged.values() if p != 0])
        return out if out.shape == node.shape else node

    def depends(self, node: Node) -> bool:
        return bool(node.names() & self.live)

    def run(self) -> dict[str, Node]:
        if self.grads is not None:
            return self.grads
        model = self.model
        adjoint: dict[str, list[Node]] = {model.loss: [num(1)]}
        for name in reversed(self.order):
            parts = adjoint.pop(name, [])
            if not parts or name not in self.live:
                continue
            g = parts[0]
            for p in parts[1:]:
                g = rebuild("add", (g, p))
            self.entry = name
            self.back(model.entries[name], g, Node("name", value=name, shape=self.shapes[name]), adjoint)
        out = {}
        for name in model.params:
            parts = adjoint.get(name, [])
            g = parts[0] if parts else num(0)
            for q in parts[1:]:
                g = rebuild("add", (g, q))
            out[name] = g
        self.grads = out
        return out

    def back(self, node: Node, g: Node, out: Node | None, adjoint: dict[str, list[Node]]) -> None:
        if is_zero(g) or node.op == "num":
            return
        if node.op == "name":
            name = str(node.value)
            if name in self.live:
                adjoint.setdefault(name, []).append(g)
            return
        if not self.depends(node):
            return
        templates = _templates(node)
        if templates is None:
            spelling = OPS[node.op].spelling
            raise ModelError(
                f"no tensor-form rule for {spelling} yet",
                fix=f"Model.gradient_formula(name) gives SymPy's formula for each element; the tensor form "
                f"needs a vjp= rule in {spelling}'s op-table entry",
                entry=f"model.{self.entry}",
                text=self.model.texts.get(("model", self.entry)),
                offset=node.pos,
            )
        values: dict[str, Node] = {"g": g, "out": out if out is not None else node}
        values.update(zip(("a", "b", "c"), node.args))
        for operand, template in zip(node.args, templates):
            if template is None or template == "0" or not self.depends(operand):
                continue
            raw = _shaped(_substitute(_template(template), values), self.shapes)
            part = unbroadcast(self.name(collect(simplify(raw))), operand.shape)
            self.back(operand, part, None, adjoint)


def _templates(node: Node) -> tuple[str | None, ...] | None:
    """The op's ``vjp`` templates at ``node`` (attributes filled in), ``None`` where it has no rule."""
    op = OPS[node.op]
    attrs = op.bind(node.attrs)
    rule = op.vjp
    if rule is None:
        return None
    if callable(rule):
        return tuple(rule([a.shape for a in node.args], node.shape, **attrs))
    return tuple(t.format(**attrs) if t and "{" in t else t for t in rule)


def rule_nodes(node: Node) -> tuple[Node | None, ...]:
    """The op's ``vjp`` rule at ``node`` as shaped IR in the placeholders ``g``, ``out``, ``a``, ``b``, ``c``.

    One node per operand (``None`` where no gradient flows); the symbolic
    source evaluates them on the operands' values
    (:mod:`gradcheck.sources.symbolic.blocks`). :class:`ModelError` where the
    op has no rule (or none at these shapes).
    """
    templates = _templates(node)
    if templates is None:
        raise ModelError(f"no tensor-form rule for {OPS[node.op].spelling} yet")
    shapes: dict[str, Shape] = {"g": node.shape, "out": node.shape}
    shapes.update(zip(("a", "b", "c"), (a.shape for a in node.args)))
    return tuple(None if t is None or t == "0" else _shaped(_template(t), shapes) for t in templates)


def derivation(model: Model) -> Derivation:
    cached = model.cache.get("tensorgrad")
    if cached is None:
        cached = model.cache["tensorgrad"] = Derivation(model)
    return cached  # type: ignore[no-any-return]


def tensor_form(model: Model, name: str) -> str:
    """The tensor-form derivative of the per-sample loss in param ``name``, as model-language text."""
    return _expr.unparse(derivation(model).run()[name])


def _sympy_text(model: Model, name: str) -> str | None:
    """SymPy's one-line formula for a param of a model of scalars (params, data, entries), when it is model language."""
    shapes = dict.fromkeys(CONSTANTS, ()) | model.shapes
    if any(shapes.values()):  # a model of scalars only
        return None
    text = str(model.gradient_formula(name))
    try:
        node = _expr.parse(text)
    except ModelError:
        return None
    if not node.names() <= shapes.keys():
        return None
    try:
        _expr.infer_shapes(node, shapes)
    except ModelError:
        return None
    return text


def gradient_expression(model: Model, name: str) -> str:
    """What ``Model.gradient_expression`` returns (see its docstring)."""
    cache = model.cache.setdefault("gradient_expressions", {})
    if name not in cache:
        text = _sympy_text(model, name)
        cache[name] = text if text is not None else tensor_form(model, name)
    return cache[name]  # type: ignore[no-any-return]
