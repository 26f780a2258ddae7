"""LaTeX for model-language expressions, in matrix notation (what ``formulas --latex`` and notebooks show).

:func:`to_latex` prints an IR node whose shapes are known
(:func:`gradcheck.expr.infer_shapes`); :func:`expression_latex` parses and
shapes a text first. The notation is the courses': an elementwise product of
two tensors is ``\\odot`` (of a scalar and anything, juxtaposition), ``x.T`` is
``x^{\\top}``, ``W @ x`` is ``\\mathbf{W} \\mathbf{x}`` and ``a @ B`` with a
vector on the left ``\\mathbf{a}^{\\top} \\mathbf{B}``, ``outer(a, b)`` is
``\\mathbf{a} \\mathbf{b}^{\\top}``, a division is ``\\frac``, a comparison an
Iverson bracket ``[z > 0]`` (1 where true, 0 elsewhere), the sum of a vector
``\\mathbf{1}^{\\top} \\mathbf{v}`` and other sums ``\\sum`` with their axes
under the sign, a broadcast (``expand``) a product with ones (``s \\mathbf{1}``,
``\\mathbf{1} \\mathbf{v}^{\\top}``). Names print as in the courses: a tensor in bold, trailing
digits and ``_`` parts as a subscript (``W1`` is ``\\mathbf{W}_{1}``,
``y_pred`` is ``y_{\\mathrm{pred}}``), Greek names as letters.

Only commands that both MathJax and matplotlib's mathtext read are used (the
tests render every formula with mathtext). How an op prints is looked up by
its entry's spelling in :data:`_CALLS` and :data:`_NAMED`; an op found in
neither (a new entry, a registered function) prints generically as
``\\operatorname{name}(args, key=value)``, so adding an op never breaks this
printer.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING

from . import expr as _expr
from .expr import Node
from .ops import CONSTANTS, OPS, Shape
from .ops.arithmetic import index_text

if TYPE_CHECKING:
    from .model import Model

# Precedences of the printed forms: higher binds tighter. A matrix product (juxtaposition of
# tensors) binds tighter than an elementwise one: `\mathbf{W} \mathbf{x} \odot \mathbf{h}` is (Wx) ⊙ h.
_SUM, _PRODUCT, _MATRIX, _POWER, _ATOM = 1, 2, 3, 4, 5

_GREEK = frozenset(
    "alpha beta gamma delta epsilon zeta eta theta iota kappa lambda mu nu xi pi rho sigma tau upsilon phi chi "
    "psi omega Gamma Delta Theta Lambda Xi Pi Sigma Upsilon Phi Psi Omega".split()
)

#: Functions that LaTeX (and mathtext) know by a command of their own.
_NAMED = {
    "exp": r"\exp",
    "log": r"\log",
    "sin": r"\sin",
    "cos": r"\cos",
    "tan": r"\tan",
    "asin": r"\arcsin",
    "acos": r"\arccos",
    "atan": r"\arctan",
    "sinh": r"\sinh",
    "cosh": r"\cosh",
    "tanh": r"\tanh",
    "sigmoid": r"\sigma",
    "max": r"\max",
    "min": r"\min",
    "trace": r"\operatorname{tr}",
}

_COMPARISONS = {"<": "<", "<=": r"\leq", ">": ">", ">=": r"\geq"}

_NAME_PARTS = re.compile(r"([A-Za-z]*?)([0-9]*)\Z")


def name_latex(name: str, tensor: bool = False) -> str:
    """A model name in course notation: ``W1`` -> ``\\mathbf{W}_{1}``, ``y_pred`` -> ``y_{\\mathrm{pred}}``.

    ``tensor`` prints the letters bold. Trailing digits and every ``_`` part
    join the subscript; a Greek name prints as its letter, another name of
    several letters upright.
    """
    head, *rest = name.split("_")
    match = _NAME_PARTS.match(head)
    letters, digits = (match.group(1), match.group(2)) if match else (head, "")
    if not letters:  # a name such as `_x` or `_1`: print it whole, upright
        return rf"\mathrm{{{_escape(name)}}}"
    subscript = ([digits] if digits else []) + [_word(part) for part in rest if part]
    if letters in _GREEK:
        base = "\\" + letters
    elif len(letters) == 1:
        base = rf"\mathbf{{{letters}}}" if tensor else letters
    else:
        base = rf"\mathbf{{{letters}}}" if tensor else rf"\mathrm{{{letters}}}"
    return base + (f"_{{{','.join(subscript)}}}" if subscript else "")


def _word(part: str) -> str:
    return part if part.isdigit() or len(part) == 1 else rf"\mathrm{{{part}}}"


def _number(text: str) -> str:
    text = text.replace("_", "")
    if "e" in text.lower():
        mantissa, exponent = re.split("[eE]", text)
        exponent = str(int(exponent))
        return f"10^{{{exponent}}}" if float(mantissa) == 1 else rf"{mantissa} \times 10^{{{exponent}}}"
    return text


def _paren(text: str) -> str:
    return rf"\left({text}\right)"


class _Printer:
    """Turns one shaped node into ``(latex, precedence)``."""

    def __call__(self, node: Node) -> tuple[str, int]:
        if node.op == "num":
            return _number(node.text or repr(node.value)), _ATOM
        if node.op == "name":
            return name_latex(str(node.value), tensor=bool(node.shape)), _ATOM
        op = OPS[node.op]
        if op.notation == "prefix":
            return _neg(self, node)
        rule = _OPERATORS.get(op.symbol) if not op.call else None
        if rule is None and op.call:
            rule = _CALLS.get(op.spelling)
        if rule is not None:
            return rule(self, node)
        return self.call(node, _NAMED.get(op.spelling, rf"\operatorname{{{_escape(op.spelling)}}}"))

    def at(self, node: Node, least: int) -> str:
        """``node`` printed, in parentheses unless it binds at least as tight as ``least``."""
        text, prec = self(node)
        return text if prec >= least else _paren(text)

    def call(self, node: Node, head: str) -> tuple[str, int]:
        parts = [self(a)[0] for a in node.args]
        parts += [rf"\mathrm{{{_escape(k)}}}={_attr(v)}" for k, v in node.attrs]
        return head + _paren(", ".join(parts)), _ATOM


def _escape(text: str) -> str:
    return text.replace("_", r"\_")


def _attr(value: object) -> str:
    if isinstance(value, tuple):
        return "[" + ", ".join(map(str, value)) + "]"
    return str(value)


def _tensor(node: Node) -> bool:
    return bool(node.shape)


def _add(p: _Printer, node: Node) -> tuple[str, int]:
    return f"{p.at(node.args[0], _SUM)} + {p.at(node.args[1], _SUM)}", _SUM


def _sub(p: _Printer, node: Node) -> tuple[str, int]:
    return f"{p.at(node.args[0], _SUM)} - {p.at(node.args[1], _PRODUCT)}", _SUM


def _neg(p: _Printer, node: Node) -> tuple[str, int]:
    # printed at the level of a sum: `a * -b` keeps its parentheses, `-(a*b)` needs none
    return f"-{p.at(node.args[0], _PRODUCT)}", _SUM


def _mul(p: _Printer, node: Node) -> tuple[str, int]:
    a, b = node.args
    left, right = p.at(a, _PRODUCT), p.at(b, _PRODUCT)
    if _tensor(a) and _tensor(b):
        return rf"{left} \odot {right}", _PRODUCT
    # juxtaposition, except where a number would run into what precedes it
    glue = r" \cdot " if right[:1].isdigit() else r" \, "
    return f"{left}{glue}{right}", _PRODUCT


def _div(p: _Printer, node: Node) -> tuple[str, int]:
    return rf"\frac{{{p(node.args[0])[0]}}}{{{p(node.args[1])[0]}}}", _ATOM


def _pow(p: _Printer, node: Node) -> tuple[str, int]:
    return f"{p.at(node.args[0], _ATOM)}^{{{p(node.args[1])[0]}}}", _POWER


def _transpose(p: _Printer, node: Node) -> tuple[str, int]:
    return rf"{p.at(node.args[0], _ATOM)}^{{\top}}", _POWER


def _matmul(p: _Printer, node: Node) -> tuple[str, int]:
    a, b = node.args
    left = p.at(a, _POWER) + r"^{\top}" if len(a.shape) == 1 else p.at(a, _MATRIX)
    return rf"{left} \, {p.at(b, _MATRIX)}", _MATRIX


def _dot(p: _Printer, node: Node) -> tuple[str, int]:
    a, b = node.args
    if len(a.shape) == 1 and len(b.shape) == 1:
        return rf"{p.at(a, _POWER)}^{{\top}} \, {p.at(b, _MATRIX)}", _MATRIX
    return p.call(node, r"\operatorname{dot}")


def _outer(p: _Printer, node: Node) -> tuple[str, int]:
    a, b = node.args
    return rf"{p.at(a, _MATRIX)} \, {p.at(b, _POWER)}^{{\top}}", _MATRIX


def _compare(p: _Printer, node: Node) -> tuple[str, int]:
    symbol = _COMPARISONS[OPS[node.op].symbol]
    return rf"\left[{p(node.args[0])[0]} {symbol} {p(node.args[1])[0]}\right]", _ATOM


def _index(p: _Printer, node: Node) -> tuple[str, int]:
    index = dict(node.attrs).get("index", node.value)
    return f"{p.at(node.args[0], _ATOM)}[{index_text(index)}]", _ATOM  # type: ignore[arg-type]


def _axes(node: Node) -> str:
    attrs = dict(node.attrs)
    axis = attrs.get("axis")
    if axis is None:
        return ""
    axes = ", ".join(map(str, axis)) if isinstance(axis, tuple) else str(axis)
    return rf"\mathrm{{axis}}\,{axes}"


def _reduction(head: str) -> Callable[[_Printer, Node], tuple[str, int]]:
    def rule(p: _Printer, node: Node) -> tuple[str, int]:
        (v,) = node.args
        axes = _axes(node)
        keep = r", \mathrm{keepdims}" if dict(node.attrs).get("keepdims") else ""
        return rf"{head}_{{{axes}{keep}}} {p.at(v, _POWER)}" if axes or keep else rf"{head} {p.at(v, _POWER)}", _PRODUCT

    return rule


def _sum(p: _Printer, node: Node) -> tuple[str, int]:
    (v,) = node.args
    if len(v.shape) == 1 and not node.attrs:
        return rf"\mathbf{{1}}^{{\top}} \, {p.at(v, _MATRIX)}", _MATRIX
    return _reduction(r"\sum")(p, node)


def _abs(p: _Printer, node: Node) -> tuple[str, int]:
    return rf"\left|{p(node.args[0])[0]}\right|", _ATOM


def _norm(p: _Printer, node: Node) -> tuple[str, int]:
    if node.attrs:
        return p.call(node, r"\operatorname{norm}")
    return rf"\left\|{p(node.args[0])[0]}\right\|", _ATOM


def _sqrt(p: _Printer, node: Node) -> tuple[str, int]:
    return rf"\sqrt{{{p(node.args[0])[0]}}}", _ATOM


def _square(p: _Printer, node: Node) -> tuple[str, int]:
    return f"{p.at(node.args[0], _ATOM)}^{{2}}", _POWER


def _expand(p: _Printer, node: Node) -> tuple[str, int]:
    r"""A broadcast as a product with ones: ``v \mathbf{1}``, ``\mathbf{1} \mathbf{v}^{\top}``, ``\mathbf{v} \mathbf{1}^{\top}``."""
    (v,) = node.args
    a, out = tuple(v.shape), tuple(node.shape)
    if not a:
        return rf"{p.at(v, _PRODUCT)} \, \mathbf{{1}}", _PRODUCT
    if len(out) == 2 and a == out[1:]:
        return rf"\mathbf{{1}} \, {p.at(v, _POWER)}^{{\top}}", _MATRIX
    if len(out) == 2 and a == (out[0], 1):
        return rf"{p.at(v, _MATRIX)} \, \mathbf{{1}}^{{\top}}", _MATRIX
    return p.call(node, r"\operatorname{expand}")


_OPERATORS: dict[str, Callable[[_Printer, Node], tuple[str, int]]] = {
    "+": _add,
    "-": _sub,
    "*": _mul,
    "/": _div,
    "**": _pow,
    ".T": _transpose,
    "@": _matmul,
    "[]": _index,
    "<": _compare,
    "<=": _compare,
    ">": _compare,
    ">=": _compare,
}

_CALLS: dict[str, Callable[[_Printer, Node], tuple[str, int]]] = {
    "abs": _abs,
    "sqrt": _sqrt,
    "square": _square,
    "dot": _dot,
    "outer": _outer,
    "sum": _sum,
    "mean": _reduction(r"\operatorname{mean}"),
    "norm": _norm,
    "expand": _expand,
}


def to_latex(node: Node) -> str:
    """LaTeX (math mode, without ``$``) for ``node``, whose shapes are filled in (see the module docstring)."""
    return _Printer()(node)[0]


def expression_latex(text: str, shapes: Mapping[str, Shape]) -> str:
    """:func:`to_latex` of the expression ``text``, every name's per-sample shape in ``shapes`` (constants need none)."""
    node = _expr.infer_shapes(_expr.parse(text), {**{c: () for c in CONSTANTS}, **shapes}, text)
    return to_latex(node)


def derivative_latex(loss: str, param: str, shape: Shape, formula: str) -> str:
    """``\\frac{\\partial \\ell}{\\partial \\mathbf{W}_{1}} = ...`` for one param's formula (LaTeX of ``formula``)."""
    top = r"\ell" if loss == "loss" else name_latex(loss)
    return rf"\frac{{\partial {top}}}{{\partial {name_latex(param, bool(shape))}}} = {formula}"


def formula_latex(model: Model, param: str, text: str) -> str:
    """The equation ``d loss/d param = text`` in LaTeX, the names shaped as in ``model`` (``formulas --latex``)."""
    return derivative_latex(model.loss, param, model.shape_of(param), expression_latex(text, model.shapes))
