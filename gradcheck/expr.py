"""The expression language: a whitelisted parser into a small IR, and shapes.

The parser is written here, character by character: nothing in an expression
ever reaches ``eval``, ``exec``, ``compile``, ``ast``, ``sympify`` or an
importer. Anything that is not a number, a name, one of the operators
``+ - * / ** @``, parentheses, an integer index ``v[i]`` / ``M[i, j]``, ``.T``
or a call of a function in :data:`gradcheck.ops.FUNCTIONS` is a syntax error.

Grammar (Python's precedence; ``**`` binds tighter than unary minus on its
left and is right-associative)::

    expr    := term (('+' | '-') term)*
    term    := unary (('*' | '/' | '@') unary)*
    unary   := ('-' | '+') unary | power
    power   := postfix ('**' unary)?
    postfix := atom ('[' INT (',' INT)* ']' | '.T')*
    atom    := NUMBER | NAME | NAME '(' expr (',' expr)* ')' | '(' expr ')'
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field

from .errors import ModelError, close_match
from .ops import FUNCTIONS, OPS, Shape, ShapeError

#: Longest expression accepted, in characters (see docs/limits.md).
MAX_LENGTH = 10_000
#: Deepest nesting accepted (parentheses, calls, unary operators).
MAX_DEPTH = 100
#: Most operations on one path from the top of an expression to a leaf, long
#: chains such as ``a + b + c + ...`` included (each interpreter recurses once per level).
MAX_TREE_DEPTH = 300


@dataclass(frozen=True, eq=False)
class Node:
    """One node of the IR.

    ``op`` is ``"num"`` (``value`` is the number, ``text`` its spelling),
    ``"name"`` (``value`` is the name) or a key of :data:`gradcheck.ops.OPS`
    (``args`` are the operands; ``value`` holds an index tuple for
    ``"index"``). ``pos`` is the character offset in the expression.
    """

    op: str
    args: tuple[Node, ...] = ()
    value: object = None
    pos: int = 0
    text: str = ""
    shape: Shape = field(default=(), compare=False)

    def walk(self) -> Iterator[Node]:
        """This node and every node below it, operands first."""
        for arg in self.args:
            yield from arg.walk()
        yield self

    def names(self) -> set[str]:
        """Every name the expression refers to."""
        return {str(n.value) for n in self.walk() if n.op == "name"}


_OPERATORS = ("**", "+", "-", "*", "/", "@", "(", ")", "[", "]", ",", ".")
# ASCII only: str.isdigit() is also true of '¹' and '٣', which float() rejects or reads as 3.
_DIGITS = frozenset("0123456789")


@dataclass(frozen=True)
class _Token:
    kind: str  # "num", "name", "op", "end"
    text: str
    pos: int


def _tokens(text: str) -> list[_Token]:
    out: list[_Token] = []
    i, n = 0, len(text)
    while i < n:
        ch = text[i]
        if ch in " \t\r\n":
            i += 1
            continue
        if ch in _DIGITS or (ch == "." and i + 1 < n and text[i + 1] in _DIGITS):
            j = i
            while j < n and (text[j] in _DIGITS or text[j] == "_"):
                j += 1
            if j < n and text[j] == ".":
                j += 1
                while j < n and text[j] in _DIGITS:
                    j += 1
            if j < n and text[j] in "eE":
                k = j + 1
                if k < n and text[k] in "+-":
                    k += 1
                if k < n and text[k] in _DIGITS:
                    j = k
                    while j < n and text[j] in _DIGITS:
                        j += 1
            if j < n and (text[j].isalpha() or text[j] == "_"):
                raise _SyntaxError(f"bad number {text[i : j + 1]!r}", i, "write numbers like 2, 0.5 or 1e-3")
            out.append(_Token("num", text[i:j], i))
            i = j
            continue
        if ch.isascii() and (ch.isalpha() or ch == "_"):
            j = i
            while j < n and text[j].isascii() and (text[j].isalnum() or text[j] == "_"):
                j += 1
            out.append(_Token("name", text[i:j], i))
            i = j
            continue
        for op in _OPERATORS:
            if text.startswith(op, i):
                out.append(_Token("op", op, i))
                i += len(op)
                break
        else:
            hint = "strings, lambdas, comparisons and other Python syntax are not part of the model language"
            if ch in "'\"":
                raise _SyntaxError("strings are not allowed", i, hint)
            raise _SyntaxError(f"unexpected character {ch!r}", i, hint)
    out.append(_Token("end", "", n))
    return out


class _SyntaxError(Exception):
    def __init__(self, what: str, pos: int, fix: str | None = None) -> None:
        super().__init__(what)
        self.what, self.pos, self.fix = what, pos, fix


class _Parser:
    def __init__(self, text: str) -> None:
        self.text = text
        self.toks = _tokens(text)
        self.i = 0
        self.depth = 0

    @property
    def tok(self) -> _Token:
        return self.toks[self.i]

    def take(self, text: str | None = None) -> _Token:
        tok = self.tok
        if text is not None and tok.text != text:
            got = "the end" if tok.kind == "end" else repr(tok.text)
            raise _SyntaxError(f"expected {text!r}, found {got}", tok.pos)
        self.i += 1
        return tok

    def at(self, *texts: str) -> bool:
        return self.tok.kind == "op" and self.tok.text in texts

    def nest(self, pos: int) -> None:
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise _SyntaxError(
                f"nesting deeper than {MAX_DEPTH} levels", pos, "split the expression into several model entries"
            )

    def parse(self) -> Node:
        node = self.expr()
        if self.tok.kind != "end":
            tok = self.tok
            fix = None
            if tok.text == "=":
                fix = "a model entry is written `name: expression`"
            raise _SyntaxError(f"unexpected {tok.text!r}", tok.pos, fix)
        return node

    def binary(self, sub: Callable[[], Node], ops: dict[str, str]) -> Node:
        left = sub()
        while self.at(*ops):
            tok = self.take()
            right = sub()
            left = Node(ops[tok.text], (left, right), pos=tok.pos)
        return left

    def expr(self) -> Node:
        return self.binary(self.term, {"+": "add", "-": "sub"})

    def term(self) -> Node:
        return self.binary(self.unary, {"*": "mul", "/": "div", "@": "matmul"})

    def unary(self) -> Node:
        if self.at("-", "+"):
            tok = self.take()
            self.nest(tok.pos)
            operand = self.unary()
            self.depth -= 1
            return Node("neg", (operand,), pos=tok.pos) if tok.text == "-" else operand
        return self.power()

    def power(self) -> Node:
        base = self.postfix()
        if self.at("**"):
            tok = self.take()
            self.nest(tok.pos)
            exponent = self.unary()
            self.depth -= 1
            return Node("pow", (base, exponent), pos=tok.pos)
        return base

    def postfix(self) -> Node:
        node = self.atom()
        while self.at("[", "."):
            tok = self.take()
            if tok.text == ".":
                attr = self.tok
                if attr.kind != "name" or attr.text != "T":
                    raise _SyntaxError(
                        f"attribute {attr.text!r} is not allowed", attr.pos, "the only attribute is .T (transpose)"
                    )
                self.take()
                node = Node("T", (node,), pos=tok.pos)
                continue
            index = [self.integer()]
            while self.at(","):
                self.take()
                index.append(self.integer())
            self.take("]")
            node = Node("index", (node,), value=tuple(index), pos=tok.pos)
        return node

    def integer(self) -> int:
        sign = 1
        if self.at("-"):
            self.take()
            sign = -1
        tok = self.tok
        if tok.kind != "num" or not tok.text.isdigit():
            raise _SyntaxError("an index must be an integer constant", tok.pos, "write v[0] or M[1, 2]")
        self.take()
        return sign * int(tok.text)

    def atom(self) -> Node:
        tok = self.tok
        if tok.kind == "num":
            self.take()
            try:
                value = float(tok.text)
            except ValueError:  # misplaced underscores: 1__0, 1_
                raise _SyntaxError(f"bad number {tok.text!r}", tok.pos, "write numbers like 2, 0.5 or 1e-3") from None
            if not math.isfinite(value):
                raise _SyntaxError(f"number {tok.text} is out of range", tok.pos, "numbers must be finite")
            return Node("num", value=value, pos=tok.pos, text=tok.text)
        if tok.kind == "name":
            self.take()
            if self.at("("):
                return self.call(tok)
            if tok.text.startswith("__"):
                raise _SyntaxError(f"name {tok.text!r} is not allowed", tok.pos, "names may not start with '__'")
            return Node("name", value=tok.text, pos=tok.pos)
        if self.at("("):
            self.take()
            self.nest(tok.pos)
            node = self.expr()
            self.depth -= 1
            self.take(")")
            return node
        got = "the end of the expression" if tok.kind == "end" else repr(tok.text)
        raise _SyntaxError(f"expected a number, a name or '(', found {got}", tok.pos)

    def call(self, name: _Token) -> Node:
        op = FUNCTIONS.get(name.text)
        if op is None:
            guess = close_match(name.text, FUNCTIONS)
            fix = f"did you mean {guess!r}?" if guess else "functions: " + ", ".join(sorted(FUNCTIONS))
            raise _SyntaxError(f"unknown function {name.text!r}", name.pos, fix)
        self.take("(")
        self.nest(name.pos)
        args = [self.expr()]
        while self.at(","):
            self.take()
            args.append(self.expr())
        self.take(")")
        self.depth -= 1
        if len(args) != op.arity:
            raise _SyntaxError(
                f"{name.text}() takes {op.arity} argument{'s' if op.arity > 1 else ''}, got {len(args)}",
                name.pos,
                f"{name.text}: {op.doc}",
            )
        return Node(op.name, tuple(args), pos=name.pos)


def parse(text: str) -> Node:
    """Parse one expression into IR. Raises :class:`ModelError` (with ``text`` and ``offset``)."""
    if not isinstance(text, str):
        raise ModelError(f"expected an expression (text), got {text!r}", fix="write the expression as text")
    if len(text) > MAX_LENGTH:
        raise ModelError(
            f"expression is {len(text)} characters long, more than {MAX_LENGTH}",
            fix="split it into several model entries",
        )
    if not text.strip():
        raise ModelError("empty expression", fix="write an expression such as `x * w`")
    try:
        node = _Parser(text).parse()
    except _SyntaxError as err:
        raise ModelError(err.what, fix=err.fix, text=text, offset=err.pos) from None
    stack = [(node, 1)]
    while stack:  # without recursion: this is what guards the recursive walks
        top, depth = stack.pop()
        if depth > MAX_TREE_DEPTH:
            raise ModelError(
                f"expression is more than {MAX_TREE_DEPTH} operations deep",
                fix="split it into several model entries, or sum a vector with sum() instead of a long chain of +",
                text=text,
                offset=top.pos,
            )
        stack.extend((arg, depth + 1) for arg in top.args)
    return node


def infer_shapes(node: Node, shapes: Mapping[str, Shape], text: str | None = None) -> Node:
    """A copy of ``node`` with every ``shape`` filled in; names must be in ``shapes``."""
    if node.op == "num":
        return node
    if node.op == "name":
        return Node("name", value=node.value, pos=node.pos, shape=shapes[str(node.value)])
    args = tuple(infer_shapes(a, shapes, text) for a in node.args)
    op = OPS[node.op]
    try:
        if node.op == "index":
            shape = op.shape(args[0].shape, node.value)
        else:
            shape = op.shape(*(a.shape for a in args))
    except ShapeError as err:
        raise ModelError(
            f"shape error: {err}", fix="check the shapes of the operands", text=text, offset=node.pos
        ) from None
    return Node(node.op, args, node.value, node.pos, node.text, shape)


_INFIX = {"add": ("+", 1), "sub": ("-", 1), "mul": ("*", 2), "div": ("/", 2), "matmul": ("@", 2), "pow": ("**", 4)}


def unparse(node: Node, outer: int = 0) -> str:
    """Expression text for ``node`` (for messages), with only the parentheses it needs."""
    if node.op == "num":
        return node.text
    if node.op == "name":
        return str(node.value)
    if node.op in _INFIX:
        sym, prec = _INFIX[node.op]
        right_prec = prec + 1 if node.op in ("sub", "div", "matmul") else prec
        if node.op == "pow":
            text = f"{unparse(node.args[0], prec + 1)}{sym}{unparse(node.args[1], 3)}"
        else:
            text = f"{unparse(node.args[0], prec)} {sym} {unparse(node.args[1], right_prec)}"
        return f"({text})" if prec < outer else text
    if node.op == "neg":
        text = f"-{unparse(node.args[0], 3)}"
        return f"({text})" if 3 < outer else text
    if node.op == "T":
        return f"{unparse(node.args[0], 5)}.T"
    if node.op == "index":
        return f"{unparse(node.args[0], 5)}[{', '.join(map(str, node.value))}]"  # type: ignore[call-overload]
    return f"{node.op}({', '.join(unparse(a) for a in node.args)})"
