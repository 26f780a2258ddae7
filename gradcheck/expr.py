"""The expression language: a whitelisted parser into a small IR, and shapes.

The parser is written here, character by character: nothing in an expression
ever reaches ``eval``, ``exec``, ``compile``, ``ast``, ``sympify`` or an
importer. Anything that is not a number, a name, an operator of the op
table, parentheses, an integer index or slice ``v[i]`` / ``M[i, j]`` /
``v[1:3]`` / ``M[:, 0]``, a constant list argument (``reshape(x, [2, 3])``), a postfix
attribute (``.T``) or a call of a function in :data:`gradcheck.ops.FUNCTIONS`
is a syntax error. The operators, their symbols and precedences come from the
op entries (``Op.notation``, ``symbol``, ``precedence``): this module names no
op.

Grammar (Python's precedence; ``**`` binds tighter than unary minus on its
left and is right-associative). Today's table gives::

    expr    := sum (('<' | '<=' | '>' | '>=') sum)?     (does not chain: `a < b < c` is an error)
    sum     := term (('+' | '-') term)*
    term    := unary (('*' | '/' | '@') unary)*
    unary   := ('-' | '+') unary | power
    power   := postfix ('**' unary)?
    postfix := atom ('[' item (',' item)* ']' | '.T')*
    item    := SINT | [SINT] ':' [SINT] [':' [INT]]      (an index, or a slice; step >= 1)
    atom    := NUMBER | NAME | NAME '(' args ')' | '(' expr ')'
    args    := arg (',' arg)*          (operands first, then a LIST, then keywords)
    arg     := expr | LIST | NAME '=' CONST
    CONST   := ['-'] NUMBER | 'True' | 'False' | LIST
    LIST    := '[' SINT (',' SINT)* ']'
    SINT    := ['-'] INT

Keyword arguments are checked against the op's attributes (``Op.attrs``) and
stored on the node (``Node.attrs``). A ``LIST`` written as an operand sets the
op's one attribute that takes a list of integers (``reshape(x, [2, 3])`` is
``reshape(x, shape=[2, 3])``). Indices and slices are stored on the index node
as ``attrs == (("index", items),)``: an item is an integer, or a slice
``(start, stop, step)`` with ``None`` for a part not written.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field

from .errors import ModelError, close_match
from .ops import FUNCTIONS, OPS, Op, Shape, ShapeError, lookup, overloads
from .ops.arithmetic import index_text

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
    (``args`` are the operands). ``attrs`` are the op's attributes given in
    the text, ``(name, value)`` pairs in the order written (integers, floats,
    bools, tuples of integers); the index op holds its indices as
    ``attrs == (("index", (i, j)),)`` and, for older callers, ``value``; a
    slice is an item ``(start, stop, step)`` (``None`` where not written:
    ``M[:, 1:]`` holds ``((None, None, None), (1, None, None))``).
    ``pos`` is the character offset in the expression.
    """

    op: str
    args: tuple[Node, ...] = ()
    value: object = None
    pos: int = 0
    text: str = ""
    shape: Shape = field(default=(), compare=False)
    attrs: tuple[tuple[str, object], ...] = ()

    def walk(self) -> Iterator[Node]:
        """This node and every node below it, operands first."""
        for arg in self.args:
            yield from arg.walk()
        yield self

    def names(self) -> set[str]:
        """Every name the expression refers to."""
        return {str(n.value) for n in self.walk() if n.op == "name"}


_PUNCTUATION = ("+", "(", ")", "[", "]", ",", ".")


def _operators() -> tuple[str, ...]:
    """Every operator symbol of the op table and the punctuation, longest first."""
    symbols = {op.symbol for op in OPS.values() if op.notation in ("infix", "prefix")}
    return tuple(sorted(symbols | set(_PUNCTUATION), key=len, reverse=True))


# ASCII only: str.isdigit() is also true of '¹' and '٣', which float() rejects or reads as 3.
_DIGITS = frozenset("0123456789")


@dataclass(frozen=True)
class _Token:
    kind: str  # "num", "name", "op", "end"
    text: str
    pos: int


def _tokens(text: str) -> list[_Token]:
    operators = _operators()
    out: list[_Token] = []
    i, n = 0, len(text)
    brackets = 0  # '[' not yet closed: a ':' (a slice) is a token only inside them
    while i < n:
        ch = text[i]
        if ch in " \t\r\n":
            i += 1
            continue
        if ch == ":" and brackets > 0:
            out.append(_Token("op", ":", i))
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
        if text.startswith(("==", "!="), i):
            raise _SyntaxError(
                f"{text[i : i + 2]!r} is not part of the model language",
                i,
                "a comparison for equality has no use in a gradient (its value is 0 almost everywhere); "
                "write (a <= b) * (a >= b) for a == b, or 1 - (a <= b) * (a >= b) for a != b",
            )
        if ch == "=":  # a keyword argument
            out.append(_Token("op", "=", i))
            i += 1
            continue
        for op in operators:
            if text.startswith(op, i):
                out.append(_Token("op", op, i))
                brackets += {"[": 1, "]": -1}.get(op, 0)
                i += len(op)
                break
        else:
            hint = "strings, lambdas, `and`/`or` and other Python syntax are not part of the model language"
            if ch in "'\"":
                raise _SyntaxError("strings are not allowed", i, hint)
            raise _SyntaxError(f"unexpected character {ch!r}", i, hint)
    out.append(_Token("end", "", n))
    return out


class _SyntaxError(Exception):
    def __init__(self, what: str, pos: int, fix: str | None = None) -> None:
        super().__init__(what)
        self.what, self.pos, self.fix = what, pos, fix


@dataclass(frozen=True)
class _Grammar:
    """The operator tables, built from the op entries."""

    levels: tuple[dict[str, str], ...]  # left-associative infix, loosest first: symbol -> op name
    prefix: dict[str, str]
    right: dict[str, str]
    postfix: dict[str, str]  # ".T" -> op name
    index: str


def _grammar() -> _Grammar:
    ops = list(OPS.values())
    left = sorted({op.precedence for op in ops if op.notation == "infix" and not op.right})
    return _Grammar(
        levels=tuple(
            {op.symbol: op.name for op in ops if op.notation == "infix" and not op.right and op.precedence == p}
            for p in left
        ),
        prefix={op.symbol: op.name for op in ops if op.notation == "prefix"},
        right={op.symbol: op.name for op in ops if op.notation == "infix" and op.right},
        postfix={op.symbol: op.name for op in ops if op.notation == "postfix"},
        index=next(op.name for op in ops if op.notation == "index"),
    )


class _Parser:
    def __init__(self, text: str) -> None:
        self.g = _grammar()
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

    def expr(self) -> Node:
        return self.level(0)

    def level(self, i: int) -> Node:
        """Left-associative infix operators, loosest first (comparisons, ``+ -``, then ``* / @``).

        Operators of precedence 0 (the comparisons) do not chain: Python reads
        ``a < b < c`` as ``a < b and b < c``, a left-associative parse would
        read ``(a < b) < c``, so it is an error that says how to write either.
        """
        if i == len(self.g.levels):
            return self.unary()
        ops = self.g.levels[i]
        left = self.level(i + 1)
        while self.at(*ops):
            tok = self.take()
            right = self.level(i + 1)
            if OPS[ops[tok.text]].precedence == 0 and self.at(*ops):
                second = self.take()
                a, b, c = unparse(left, 1), unparse(right, 1), unparse(self.level(i + 1), 1)
                raise _SyntaxError(
                    f"chained comparison `{a} {tok.text} {b} {second.text} {c}`",
                    second.pos,
                    f"comparisons do not chain in the model language; for 'both hold' multiply them: "
                    f"({a} {tok.text} {b}) * ({b} {second.text} {c})",
                )
            left = Node(ops[tok.text], (left, right), pos=tok.pos)
        return left

    def unary(self) -> Node:
        if self.at("+", *self.g.prefix):
            tok = self.take()
            self.nest(tok.pos)
            operand = self.unary()
            self.depth -= 1
            return Node(self.g.prefix[tok.text], (operand,), pos=tok.pos) if tok.text in self.g.prefix else operand
        return self.power()

    def power(self) -> Node:
        """Right-associative operators (``**``): a postfix base, a unary exponent."""
        base = self.postfix()
        if self.at(*self.g.right):
            tok = self.take()
            self.nest(tok.pos)
            exponent = self.unary()
            self.depth -= 1
            return Node(self.g.right[tok.text], (base, exponent), pos=tok.pos)
        return base

    def postfix(self) -> Node:
        node = self.atom()
        while self.at("[", "."):
            tok = self.take()
            if tok.text == ".":
                attr = self.tok
                name = self.g.postfix.get("." + attr.text) if attr.kind == "name" else None
                if name is None:
                    shown = ", ".join(
                        f"{sym} ({OPS[n].doc.partition(': ')[2].split(' (')[0]})" for sym, n in self.g.postfix.items()
                    )
                    raise _SyntaxError(
                        f"attribute {attr.text!r} is not allowed",
                        attr.pos,
                        f"the only attribute is {shown}" if len(self.g.postfix) == 1 else f"attributes: {shown}",
                    )
                self.take()
                node = Node(name, (node,), pos=tok.pos)
                continue
            index = [self.index_item()]
            while self.at(","):
                self.take()
                index.append(self.index_item())
            self.take("]")
            node = Node(self.g.index, (node,), value=tuple(index), pos=tok.pos, attrs=(("index", tuple(index)),))
        return node

    def index_item(self) -> int | tuple[int | None, int | None, int | None]:
        """An integer index ``i``, or a slice ``start:stop`` / ``start:stop:step`` (each part optional)."""
        start = None if self.at(":") else self.integer()
        if not self.at(":"):
            assert start is not None
            return start
        self.take()
        stop = None if self.at(":", ",", "]") else self.integer()
        step = None
        if self.at(":"):
            self.take()
            tok = self.tok
            step = None if self.at(",", "]") else self.integer()
            if step is not None and step < 1:
                raise _SyntaxError(
                    f"a slice step must be a positive integer, got {step}",
                    tok.pos,
                    "write v[::2]; reversing (a negative step) is not part of the language",
                )
        return (start, stop, step)

    def integer(self, list_element: bool = False) -> int:
        sign = 1
        if self.at("-"):
            self.take()
            sign = -1
        tok = self.tok
        if tok.kind != "num" or not tok.text.isdigit():
            if list_element:
                raise _SyntaxError("a list holds integer constants", tok.pos, "write a list such as [2, 3] or [-1, 3]")
            raise _SyntaxError(
                "an index must be an integer constant", tok.pos, "write v[0] or M[1, 2], or slices such as v[1:3]"
            )
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
        forms = overloads(name.text)
        if not forms:
            guess = close_match(name.text, FUNCTIONS)
            fix = f"did you mean {guess!r}?" if guess else "functions: " + ", ".join(sorted(FUNCTIONS))
            raise _SyntaxError(f"unknown function {name.text!r}", name.pos, fix)
        self.take("(")
        self.nest(name.pos)
        args: list[Node] = []
        given: list[tuple[_Token, object, int]] = []  # keyword, value, position of the value
        while not (self.at(")") and not args and not given):  # ``f()``: no operands (an arity error below)
            if self.tok.kind == "name" and self.toks[self.i + 1].text == "=":
                key = self.take()
                self.take("=")
                if any(k.text == key.text for k, _, _ in given):
                    raise _SyntaxError(f"{name.text}() got {key.text}= twice", key.pos)
                pos = self.tok.pos
                given.append((key, self.constant(), pos))
            elif self.at("["):  # a constant list as an operand: the op's one list attribute
                pos = self.tok.pos
                if not any("ints" in a.kinds for form in forms for a in form.attrs):
                    self.list_attribute(forms[0], pos)  # raises: this function takes no list
                given.append((_Token("list", "", pos), self.constant(), pos))
            else:
                if given:
                    shown = " or ".join(op.signature() for op in forms)
                    raise _SyntaxError(
                        "a positional argument follows a keyword argument",
                        self.tok.pos,
                        f"write the operands first: {shown}",
                    )
                args.append(self.expr())
            if not self.at(","):
                break
            self.take()
        self.take(")")
        self.depth -= 1
        op = lookup(name.text, len(args))
        if op is None:
            op = self.positional_attributes(forms, args, given)
        if op is None:
            if len(forms) == 1:
                least = "at least " if forms[0].variadic else ""
                takes = f"{least}{forms[0].arity} argument{'s' if forms[0].arity > 1 else ''}"
                fix = f"{name.text}: {forms[0].doc}"
            else:
                counts = [str(f.arity) + (" or more" if f.variadic else "") for f in forms]
                takes = f"{', '.join(counts[:-1])} or {counts[-1]} arguments"
                fix = "; ".join(f"{f.signature()}: {f.doc}" for f in forms)
            raise _SyntaxError(f"{name.text}() takes {takes}, got {len(args)}", name.pos, fix)
        attrs: dict[str, object] = {}
        for key, value, pos in given:
            if key.kind == "list":
                key = self.list_attribute(op, pos)
            if key.text in attrs:
                raise _SyntaxError(f"{op.spelling}() got {key.text}= twice", key.pos)
            attrs[key.text] = self.keyword(op, key, value, pos)
        return Node(op.name, tuple(args), pos=name.pos, attrs=tuple(attrs.items()))

    def positional_attributes(
        self, forms: list[Op], args: list[Node], given: list[tuple[_Token, object, int]]
    ) -> Op | None:
        """Number constants after an op's operands fill its attributes in order, as in Python.

        ``maxpool2d(x, 2)`` is ``maxpool2d(x, size=2)``: for a form that is not
        variadic, has attributes, and is given more arguments than operands,
        all of them numbers. The constants move from ``args`` to ``given``.
        """
        for op in forms:
            extra = args[op.arity :]
            if op.variadic or not extra or len(extra) > len(op.attrs) or any(a.op != "num" for a in extra):
                continue
            del args[op.arity :]
            positional = []
            for attr, node in zip(op.attrs, extra):
                digits = node.text.replace("_", "")
                value = int(digits) if digits.isdigit() else node.value
                positional.append((_Token("name", attr.name, node.pos), value, node.pos))
            given[:0] = positional  # written before the keywords
            return op
        return None

    def list_attribute(self, op: Op, pos: int) -> _Token:
        """The attribute a constant list written as an operand sets: the op's one list attribute.

        ``reshape(x, [2, 3])`` is ``reshape(x, shape=[2, 3])``; the list comes
        after the operands, and the op must have exactly one attribute that takes
        a list of integers.
        """
        lists = [a for a in op.attrs if "ints" in a.kinds]
        if len(lists) != 1:
            takes = ", ".join(f"{a.name}=[...]" for a in lists)
            raise _SyntaxError(
                f"{op.spelling}() takes no list as an operand",
                pos,
                f"write the list as a keyword argument: {takes}" if lists else f"{op.spelling}: {op.signature()}",
            )
        return _Token("name", lists[0].name, pos)

    def keyword(self, op: Op, key: _Token, value: object, pos: int) -> object:
        """The value of keyword argument ``key`` (a constant at ``pos``), checked against ``op``'s attributes."""
        attr = op.attr(key.text)
        if attr is None:
            names = [a.name for a in op.attrs]
            if not names:
                shown = op.signature() if len(overloads(op.spelling)) > 1 else f"{op.spelling}()"
                fix = f"{shown} takes no keyword arguments"
            else:
                guess = close_match(key.text, names)
                takes = f"{op.spelling}() takes " + ", ".join(f"{a.name}=" for a in op.attrs)
                fix = f"did you mean {guess!r}? {takes}" if guess else takes
            raise _SyntaxError(f"{op.spelling}() got an unknown keyword argument {key.text!r}", key.pos, fix)
        try:
            return attr.coerce(value)
        except TypeError as err:
            raise _SyntaxError(f"{op.spelling}(): {err}", pos, f"{op.spelling}: {op.signature()}") from None

    def constant(self) -> object:
        """A keyword argument's value: a number, ``True``, ``False`` or a list of integers."""
        tok = self.tok
        if tok.kind == "name" and tok.text in ("True", "False"):
            self.take()
            return tok.text == "True"
        if self.at("["):
            self.take()
            values = [self.integer(list_element=True)]
            while self.at(","):
                self.take()
                values.append(self.integer(list_element=True))
            self.take("]")
            return tuple(values)
        sign = 1
        if self.at("-"):
            self.take()
            sign = -1
        tok = self.tok
        if tok.kind != "num":
            raise _SyntaxError(
                "a keyword argument must be a constant",
                tok.pos,
                "write a number, True, False or a list of integers such as [2, 1]",
            )
        self.take()
        digits = tok.text.replace("_", "")
        if digits.isdigit():
            return sign * int(digits)
        try:
            value = float(digits)
        except ValueError:
            raise _SyntaxError(f"bad number {tok.text!r}", tok.pos, "write numbers like 2, 0.5 or 1e-3") from None
        if not math.isfinite(value):
            raise _SyntaxError(f"number {tok.text} is out of range", tok.pos, "numbers must be finite")
        return sign * value


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
        shape = op.shape(*(a.shape for a in args), **op.bind(node.attrs))
    except ShapeError as err:
        raise ModelError(
            f"shape error: {err}", fix=err.fix or "check the shapes of the operands", text=text, offset=node.pos
        ) from None
    return Node(node.op, args, node.value, node.pos, node.text, shape, node.attrs)


def _constant_text(value: object) -> str:
    if isinstance(value, tuple):
        return "[" + ", ".join(map(str, value)) + "]"
    return repr(value)


def unparse(node: Node, outer: int = 0) -> str:
    """Expression text for ``node`` (for messages), with only the parentheses it needs.

    Operators print with their entry's symbol and precedence; a call prints
    its keyword arguments as given (``f(x, slope=0.1)``).
    """
    if node.op == "num":
        return node.text
    if node.op == "name":
        return str(node.value)
    op = OPS[node.op]
    prec = op.precedence
    if op.notation == "infix" and op.right:
        # the base is a postfix expression, the exponent a unary one (see the grammar)
        unary = min((o.precedence for o in OPS.values() if o.notation == "prefix"), default=prec)
        text = f"{unparse(node.args[0], prec + 1)}{op.symbol}{unparse(node.args[1], unary)}"
        return f"({text})" if prec < outer else text
    if op.notation == "infix":
        right_prec = prec if op.associative else prec + 1
        left_prec = prec + 1 if prec == 0 else prec  # comparisons do not chain: (a < b) < c keeps its parentheses
        text = f"{unparse(node.args[0], left_prec)} {op.symbol} {unparse(node.args[1], right_prec)}"
        return f"({text})" if prec < outer else text
    if op.notation == "prefix":
        text = f"{op.symbol}{unparse(node.args[0], prec)}"
        return f"({text})" if prec < outer else text
    if op.notation == "postfix":
        return f"{unparse(node.args[0], prec)}{op.symbol}"
    if op.notation == "index":
        index = dict(node.attrs).get("index", node.value)
        return f"{unparse(node.args[0], prec)}[{index_text(index)}]"  # type: ignore[arg-type]
    parts = [unparse(a) for a in node.args] + [f"{k}={_constant_text(v)}" for k, v in node.attrs]
    return f"{op.spelling}({', '.join(parts)})"
