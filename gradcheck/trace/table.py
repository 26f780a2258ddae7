"""The one table from torch calls to model-language text.

Each entry maps one torch function or method, by the name
:func:`torch.overrides.resolve_name` gives it (``torch.tanh``,
``torch.Tensor.__add__``, ``torch.nn.functional.linear``), to a rule: a
function of the recorded :class:`Call` that returns the text of one model
entry, or ``None`` when the call changes nothing the model language sees
(``x.double()``). A variant the language cannot hold (``dilation=2``,
``reduction='none'`` where it matters) raises :class:`Unsupported`, which
the tracer turns into a :class:`~gradcheck.ModelError` naming the call
and the user's line. A name missing from :data:`TABLE` is unsupported too:
nothing is guessed.

Operands reach a rule as :class:`Arg`: ``text`` is a name or a number
(parenthesized when negative), so rules concatenate operands freely; the
concrete ``value`` (the tensor of the traced run) gives shapes.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

__all__ = ["TABLE", "Arg", "Call", "Unsupported", "markdown", "number", "rows"]


class Unsupported(Exception):
    """A call (or a variant of one) the model language cannot hold; the message says which and why."""


@dataclass
class Arg:
    """One tensor or number operand: its text in the model language and its concrete value."""

    text: str
    value: Any
    data: str | None = None  # the user's data column, when this is one sample of it

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(getattr(self.value, "shape", ()))

    @property
    def ndim(self) -> int:
        return len(self.shape)

    @property
    def integer(self) -> bool:
        """An integer (or bool) tensor or Python int: a class index, not a real number."""
        dtype = getattr(self.value, "dtype", None)
        if dtype is None:
            return isinstance(self.value, int)
        return not (dtype.is_floating_point or dtype.is_complex)


@dataclass
class Call:
    """One traced call: the torch name, its operands (``Arg`` or plain Python values), its result."""

    name: str
    args: tuple[Any, ...]
    kwargs: dict[str, Any]
    result: Any
    one_hot: Callable[[Arg, int], str] = field(repr=False, default=lambda arg, n: "")

    def get(self, i: int, key: str = "", default: Any = None) -> Any:
        """Argument ``i`` (positional) or ``key`` (keyword), else ``default``."""
        if i < len(self.args):
            return self.args[i]
        return self.kwargs.get(key, default)

    def a(self, i: int, key: str = "") -> str:
        """The text of tensor/number operand ``i`` (or keyword ``key``)."""
        arg = self.get(i, key)
        if isinstance(arg, (int, float)) and not isinstance(arg, bool):
            return number(arg)
        if not isinstance(arg, Arg):
            raise Unsupported(f"argument {key or i} is {arg!r}, not a tensor or number")
        return arg.text

    @property
    def out_shape(self) -> tuple[int, ...]:
        return tuple(self.result.shape)


def number(value: Any) -> str:
    """A Python number as an operand: exact (``repr``), parenthesized when negative."""
    if isinstance(value, bool):
        value = int(value)
    if isinstance(value, float) and not math.isfinite(value):
        raise Unsupported(f"the constant {value!r} is not finite")
    text = repr(value)
    return f"({text})" if text.startswith("-") else text


def _const(value: Any) -> str:
    """A keyword argument's constant (``slope=0.01``, ``axis=[0, 1]``)."""
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(str(int(v)) for v in value) + "]"
    return repr(value)


TABLE: dict[str, Callable[[Call], str | None]] = {}
_DOCS: list[tuple[str, str]] = []  # (torch names, model language) for docs/from-torch.md


def _add(rule: Callable[[Call], str | None], names: Sequence[str], doc: str) -> None:
    for name in names:
        assert name not in TABLE, name
        TABLE[name] = rule
    _DOCS.append((", ".join(f"`{n}`" for n in names), doc))


def _spellings(name: str, *, tensor: bool = True, functional: bool = False, special: bool = False) -> list[str]:
    out = [f"torch.{name}"]
    if tensor:
        out.append(f"torch.Tensor.{name}")
    if functional:
        out.append(f"torch.nn.functional.{name}")
    if special:
        out.append(f"torch.special.{name}")
    return out


def rows() -> list[tuple[str, str]]:
    """The table for the docs: (torch names, how the model language writes them)."""
    return list(_DOCS)


def markdown() -> str:
    """The table as Markdown, for ``docs/from-torch.md`` (tests/test_from_torch.py checks the doc holds it)."""
    lines = ["| torch | model language |", "|---|---|"]
    lines += [f"| {names} | {doc.replace('|', chr(92) + '|')} |" for names, doc in _DOCS]
    return "\n".join(lines) + "\n"


# --- arithmetic ----------------------------------------------------------------


def _binary(symbol: str, *, reverse: bool = False) -> Callable[[Call], str]:
    def rule(c: Call) -> str:
        a, b = c.a(0, "input"), c.a(1, "other")
        alpha = c.kwargs.get("alpha", 1)
        if alpha != 1:
            b = f"{number(alpha)} * {b}"
        return f"{b} {symbol} {a}" if reverse else f"{a} {symbol} {b}"

    return rule


def _div(c: Call) -> str:
    if c.kwargs.get("rounding_mode") is not None:
        raise Unsupported(f"rounding_mode={c.kwargs['rounding_mode']!r} is not differentiable")
    return f"{c.a(0)} / {c.a(1)}"


_add(
    _binary("+"),
    _spellings("add") + ["torch.Tensor.__add__", "torch.Tensor.__radd__"],
    "`a + b` (`alpha`: `a + alpha * b`)",
)
_add(_binary("-"), _spellings("sub") + _spellings("subtract") + ["torch.Tensor.__sub__"], "`a - b`")
_add(_binary("-", reverse=True), ["torch.rsub", "torch.Tensor.__rsub__"], "`b - a`")
_add(
    _binary("*"),
    _spellings("mul") + _spellings("multiply") + ["torch.Tensor.__mul__", "torch.Tensor.__rmul__"],
    "`a * b`",
)
_add(
    _div, _spellings("div") + _spellings("divide") + _spellings("true_divide") + ["torch.Tensor.__truediv__"], "`a / b`"
)
_add(_binary("/", reverse=True), ["torch.Tensor.__rtruediv__", "torch.Tensor.__rdiv__"], "`b / a`")
_add(_binary("**"), _spellings("pow") + ["torch.Tensor.__pow__", "torch.float_power"], "`a ** b`")
_add(_binary("**", reverse=True), ["torch.Tensor.__rpow__"], "`b ** a`")
_add(lambda c: f"-{c.a(0)}", _spellings("neg") + _spellings("negative") + ["torch.Tensor.__neg__"], "`-a`")
_add(lambda c: None, _spellings("positive") + ["torch.Tensor.__pos__"], "(nothing)")
_add(lambda c: f"{c.a(0)} ** 2", _spellings("square"), "`x ** 2`")
_add(lambda c: f"1 / sqrt({c.a(0)})", _spellings("rsqrt"), "`1 / sqrt(x)`")
_add(lambda c: f"1 / {c.a(0)}", _spellings("reciprocal"), "`1 / x`")
_add(lambda c: f"log({c.a(0)}) / log(2)", _spellings("log2"), "`log(x) / log(2)`")
_add(lambda c: f"log({c.a(0)}) / log(10)", _spellings("log10"), "`log(x) / log(10)`")
_add(lambda c: f"2 ** {c.a(0)}", _spellings("exp2") + ["torch.special.exp2"], "`2 ** x`")


# --- matrix products -------------------------------------------------------------

_add(_binary("@"), _spellings("matmul") + _spellings("mm") + _spellings("mv") + ["torch.Tensor.__matmul__"], "`a @ b`")
_add(_binary("@", reverse=True), ["torch.Tensor.__rmatmul__"], "`b @ a`")
_add(lambda c: f"dot({c.a(0)}, {c.a(1)})", _spellings("dot") + _spellings("inner"), "`dot(a, b)` (vectors)")
_add(lambda c: f"outer({c.a(0)}, {c.a(1)})", _spellings("outer") + _spellings("ger"), "`outer(a, b)`")


def _bmm(a: Arg, b: Arg) -> str:
    """A batch of matrix products, ``(B, n, m) @ (B, m, p)``: one ``@`` per batch element, stacked."""
    if a.ndim != 3 or b.ndim != 3 or a.shape[0] != b.shape[0]:
        raise Unsupported(f"bmm of shapes {list(a.shape)} and {list(b.shape)} (needs (B, n, m) and (B, m, p))")
    return "stack(" + ", ".join(f"{a.text}[{k}] @ {b.text}[{k}]" for k in range(a.shape[0])) + ")"


_add(lambda c: _bmm(c.get(0, "input"), c.get(1, "mat2")), _spellings("bmm"), "`stack(a[0] @ b[0], a[1] @ b[1], ...)`")

#: Two-operand (and one-operand) einsum equations, letters renamed in order of first appearance.
_EINSUM: dict[str, Callable[[str, str], str]] = {
    "ab,bc->ac": lambda a, b: f"{a} @ {b}",
    "ab,b->a": lambda a, b: f"{a} @ {b}",
    "a,ab->b": lambda a, b: f"{a} @ {b}",
    "ab,cb->ac": lambda a, b: f"{a} @ {b}.T",
    "ab,ac->bc": lambda a, b: f"{a}.T @ {b}",
    "a,a->": lambda a, b: f"dot({a}, {b})",
    "a,b->ab": lambda a, b: f"outer({a}, {b})",
    "a,a->a": lambda a, b: f"{a} * {b}",
    "ab,ab->ab": lambda a, b: f"{a} * {b}",
    "ab,ab->": lambda a, b: f"sum({a} * {b})",
    "ab,ab->a": lambda a, b: f"sum({a} * {b}, axis=1)",
    "ab,ab->b": lambda a, b: f"sum({a} * {b}, axis=0)",
    "ab,ba->": lambda a, b: f"sum({a} * {b}.T)",
    "ab->ba": lambda a, _b: f"{a}.T",
    "aa->": lambda a, _b: f"trace({a})",
    "a->": lambda a, _b: f"sum({a})",
    "ab->": lambda a, _b: f"sum({a})",
    "ab->a": lambda a, _b: f"sum({a}, axis=1)",
    "ab->b": lambda a, _b: f"sum({a}, axis=0)",
}


def _einsum_key(equation: str) -> str:
    """``equation`` with explicit output and letters renamed ``a, b, ...`` in order of first appearance."""
    eq = equation.replace(" ", "")
    if "..." in eq:
        raise Unsupported(f"the ellipsis in {equation!r}")
    if "->" not in eq:  # torch's implicit output: the letters seen once, in alphabetical order
        letters = eq.replace(",", "")
        eq += "->" + "".join(sorted(ch for ch in set(letters) if letters.count(ch) == 1))
    names: dict[str, str] = {}
    out = []
    for ch in eq:
        if ch.isalpha():
            names.setdefault(ch, "abcdefghijklmnopqrstuvwxyz"[len(names)])
            out.append(names[ch])
        else:
            out.append(ch)
    return "".join(out)


def _einsum(c: Call) -> str:
    equation = c.args[0]
    operands = list(c.args[1:])
    if len(operands) == 1 and isinstance(operands[0], (list, tuple)):
        operands = list(operands[0])
    if not isinstance(equation, str) or not all(isinstance(o, Arg) for o in operands):
        raise Unsupported("einsum(equation, a[, b]) with tensor operands")
    key = _einsum_key(equation)
    if key == "abc,acd->abd":
        return _bmm(operands[0], operands[1])
    if key in ("a->a", "ab->ab"):
        return f"{operands[0].text} * 1"
    rule = _EINSUM.get(key)
    if rule is None or len(operands) != key.split("->")[0].count(",") + 1:
        raise Unsupported(
            f"the equation {equation!r} (the simple one- and two-operand forms are: matrix and batch "
            "products, dot, outer, elementwise products and their sums, transpose, trace, sums)"
        )
    return rule(operands[0].text, operands[1].text if len(operands) > 1 else "")


_add(
    _einsum,
    ["torch.einsum", "torch.functional.einsum"],
    "`a @ b`, `a.T @ b`, `a @ b.T`, `dot`, `outer`, `a * b`, `sum(a * b)`, `x.T`, `trace`, `sum` "
    "(the simple 1- and 2-operand equations; batch products as for bmm)",
)


def _linear(c: Call) -> str:
    x, w, b = c.get(0, "input"), c.get(1, "weight"), c.get(2, "bias")
    text = f"{w.text} @ {x.text}" if x.ndim == 1 else f"{x.text} @ {w.text}.T"
    return text if b is None else f"{text} + {b.text}"


_add(_linear, ["torch.nn.functional.linear"], "`W @ x + b` (one sample), `x @ W.T + b` (rows)")


# --- elementwise -------------------------------------------------------------------

_SAME = {
    "exp": ("exp",),
    "log": ("log",),
    "log1p": ("log1p",),
    "expm1": ("expm1",),
    "sqrt": ("sqrt",),
    "abs": ("abs", "absolute"),
    "sin": ("sin",),
    "cos": ("cos",),
    "tan": ("tan",),
    "asin": ("asin", "arcsin"),
    "acos": ("acos", "arccos"),
    "atan": ("atan", "arctan"),
    "sinh": ("sinh",),
    "cosh": ("cosh",),
    "tanh": ("tanh",),
    "asinh": ("asinh", "arcsinh"),
    "acosh": ("acosh", "arccosh"),
    "atanh": ("atanh", "arctanh"),
    "sign": ("sign",),
}


def _unary(fn: str) -> Callable[[Call], str]:
    return lambda c: f"{fn}({c.a(0, 'input')})"


for _fn, _names in _SAME.items():
    _add(_unary(_fn), [s for n in _names for s in _spellings(n)], f"`{_fn}(x)`")
_add(_unary("tanh"), ["torch.nn.functional.tanh"], "`tanh(x)`")
_add(
    _unary("sigmoid"),
    _spellings("sigmoid") + ["torch.nn.functional.sigmoid", "torch.special.expit"],
    "`sigmoid(x)`",
)
_add(_unary("erf"), _spellings("erf", special=True), "`erf(x)`")
_add(_unary("relu"), _spellings("relu", functional=True), "`relu(x)`")
_add(lambda c: f"atan2({c.a(0)}, {c.a(1)})", _spellings("atan2") + _spellings("arctan2"), "`atan2(a, b)`")
_add(lambda c: f"max({c.a(0)}, {c.a(1)})", _spellings("maximum") + _spellings("fmax"), "`max(a, b)`")
_add(lambda c: f"min({c.a(0)}, {c.a(1)})", _spellings("minimum") + _spellings("fmin"), "`min(a, b)`")


def _softplus(c: Call) -> str:
    # Note: torch switches to x above `threshold` (20): log1p(exp(-20)) ~ 2e-9, inside any tolerance.
    beta = c.get(1, "beta", 1)
    x = c.a(0, "input")
    return f"softplus({x})" if beta == 1 else f"softplus({number(beta)} * {x}) / {number(beta)}"


_add(_softplus, ["torch.nn.functional.softplus"], "`softplus(x)` (`beta`: `softplus(beta * x) / beta`)")
_add(lambda c: f"-softplus(-{c.a(0)})", ["torch.nn.functional.logsigmoid"], "`-softplus(-x)`")


def _gelu(c: Call) -> str:
    x = c.a(0, "input")
    if c.get(1, "approximate", "none") == "tanh":
        return f"0.5 * {x} * (1 + tanh(sqrt(2 / pi) * ({x} + 0.044715 * {x} ** 3)))"
    return f"gelu({x})"


_add(_gelu, ["torch.nn.functional.gelu"], "`gelu(x)` (`approximate='tanh'`: its tanh formula)")
_add(_unary("silu"), ["torch.nn.functional.silu"], "`silu(x)`")
_add(_unary("softsign"), ["torch.nn.functional.softsign"], "`softsign(x)`")
_add(
    lambda c: f"leaky_relu({c.a(0)}, slope={_const(float(c.get(1, 'negative_slope', 0.01)))})",
    ["torch.nn.functional.leaky_relu"],
    "`leaky_relu(x, slope=0.01)`",
)
_add(
    lambda c: f"elu({c.a(0)}, alpha={_const(float(c.get(1, 'alpha', 1.0)))})",
    ["torch.nn.functional.elu"],
    "`elu(x, alpha=1.0)`",
)


def _bounded(x: str, lo: Any, hi: Any) -> str:
    lo_text = lo.text if isinstance(lo, Arg) else None if lo is None else number(lo)
    hi_text = hi.text if isinstance(hi, Arg) else None if hi is None else number(hi)
    if lo_text is not None and hi_text is not None:
        return f"clamp({x}, {lo_text}, {hi_text})"
    if lo_text is not None:
        return f"max({x}, {lo_text})"
    if hi_text is not None:
        return f"min({x}, {hi_text})"
    raise Unsupported("clamp needs min or max")


_add(
    lambda c: _bounded(c.a(0, "input"), c.get(1, "min"), c.get(2, "max")),
    _spellings("clamp") + _spellings("clip"),
    "`clamp(x, lo, hi)`; one bound: `max(x, lo)` / `min(x, hi)`",
)
_add(lambda c: _bounded(c.a(0), c.get(1, "min"), None), _spellings("clamp_min"), "`max(x, lo)`")
_add(lambda c: _bounded(c.a(0), None, c.get(1, "max")), _spellings("clamp_max"), "`min(x, hi)`")
_add(lambda c: f"clamp({c.a(0)}, 0, 6)", ["torch.nn.functional.relu6"], "`clamp(x, 0, 6)`")
_add(
    lambda c: f"clamp({c.a(0)}, {number(c.get(1, 'min_val', -1.0))}, {number(c.get(2, 'max_val', 1.0))})",
    ["torch.nn.functional.hardtanh"],
    "`clamp(x, lo, hi)`",
)

# --- comparisons and where -----------------------------------------------------------

for _sym, _names in {
    ">": ("gt", "greater"),
    "<": ("lt", "less"),
    ">=": ("ge", "greater_equal"),
    "<=": ("le", "less_equal"),
}.items():
    _add(
        _binary(_sym),
        [s for n in _names for s in _spellings(n)] + [f"torch.Tensor.__{_names[0]}__"],
        f"`a {_sym} b` (1.0 where true)",
    )


def _where(c: Call) -> str:
    if len(c.args) + len(c.kwargs) < 3:
        raise Unsupported("where(condition) with one argument returns indices")
    return f"where({c.a(0, 'condition')}, {c.a(1, 'input')}, {c.a(2, 'other')})"


_add(_where, ["torch.where", "torch.Tensor.where"], "`where(c, a, b)`")


# --- reductions ---------------------------------------------------------------------


def _axes(dim: Any, ndim: int) -> tuple[int, ...] | None:
    """``dim`` normalized to non-negative axes; ``None`` for every axis."""
    if dim is None or (isinstance(dim, (list, tuple)) and len(dim) == 0):
        return None
    dims = dim if isinstance(dim, (list, tuple)) else (dim,)
    if ndim == 0:
        return None
    return tuple(sorted({int(d) % ndim for d in dims}))


def _reduced(fn: str, x: Arg, dim: Any, keepdim: bool, extra: str = "") -> str:
    """``fn(x)`` over every axis, else ``fn(x, axis=..., keepdims=True)``."""
    axes = _axes(dim, x.ndim)
    if x.ndim == 0 or ((axes is None or len(axes) == x.ndim) and not keepdim):
        return f"{fn}({x.text}{extra})"
    axes = axes if axes is not None else tuple(range(x.ndim))
    text = f"{fn}({x.text}{extra}, axis={axes[0] if len(axes) == 1 else _const(axes)}"
    return text + (", keepdims=True)" if keepdim else ")")


def _reduction(fn: str) -> Callable[[Call], str]:
    def rule(c: Call) -> str:
        return _reduced(fn, c.get(0, "input"), c.get(1, "dim"), bool(c.get(2, "keepdim", False)))

    return rule


_add(_reduction("sum"), _spellings("sum"), "`sum(x)`, `sum(x, axis=d, keepdims=True)`")
_add(_reduction("mean"), _spellings("mean"), "`mean(x)`, `mean(x, axis=d, keepdims=True)`")
_add(_reduction("logsumexp"), _spellings("logsumexp", special=True), "`logsumexp(x, axis=d)`")
_add(_reduction("max"), _spellings("amax"), "`max(x, axis=d)`")
_add(_reduction("min"), _spellings("amin"), "`min(x, axis=d)`")


def _extreme(fn: str) -> Callable[[Call], str]:
    def rule(c: Call) -> str:
        other = c.get(1, "other" if "other" in c.kwargs else "dim")
        if isinstance(other, Arg):
            return f"{fn}({c.a(0)}, {other.text})"
        if other is not None:
            raise Unsupported(f"{fn} over a dim returns (values, indices); use torch.a{fn}(x, dim)")
        return f"{fn}({c.a(0)})"

    return rule


_add(_extreme("max"), _spellings("max"), "`max(x)` (one tensor), `max(a, b)` (two)")
_add(_extreme("min"), _spellings("min"), "`min(x)` (one tensor), `min(a, b)` (two)")


def _correction(c: Call) -> int:
    if "correction" in c.kwargs:
        return int(c.kwargs["correction"] if c.kwargs["correction"] is not None else 1)
    if "unbiased" in c.kwargs:
        return int(bool(c.kwargs["unbiased"]))
    if len(c.args) > 1 and isinstance(c.args[1], bool):
        return int(c.args[1])
    return 1  # torch's default: the sample variance


def _var(c: Call, *, root: bool) -> str:
    x = c.get(0, "input")
    dim = c.get(1, "dim")
    dim = None if isinstance(dim, bool) else dim
    text = _reduced("var", x, dim, bool(c.kwargs.get("keepdim", False)))
    axes = _axes(dim, x.ndim)
    n = math.prod(x.shape[i] for i in (axes if axes is not None else range(x.ndim)))
    k = _correction(c)
    if k:
        text = f"{text} * {n} / {n - k}"
    return f"sqrt({text})" if root else text


_add(
    lambda c: _var(c, root=False),
    _spellings("var"),
    "`var(x)` (population; torch's default `correction=1`: `var(x) * n / (n - 1)`)",
)
_add(lambda c: _var(c, root=True), _spellings("std"), "`sqrt(var(x) * n / (n - 1))`")


def _norm(c: Call) -> str:
    p = c.get(1, "ord" if "ord" in c.kwargs else "p", 2)
    if p not in (2, 2.0, "fro", None):
        raise Unsupported(f"norm with p={p!r} (only the 2-norm)")
    return _reduced("norm", c.get(0, "input"), c.get(2, "dim"), bool(c.get(3, "keepdim", False)))


_add(_norm, _spellings("norm") + ["torch.linalg.norm", "torch.linalg.vector_norm"], "`norm(x)` (2-norm)")


def _softmax_like(fn: str) -> Callable[[Call], str]:
    def rule(c: Call) -> str:
        x, dim = c.get(0, "input"), c.get(1, "dim")
        if dim is None:
            raise Unsupported(f"{fn} without dim (pass dim=...)")
        axis = int(dim) % max(x.ndim, 1)
        return f"{fn}({x.text})" if x.ndim <= 1 else f"{fn}({x.text}, axis={axis})"

    return rule


_add(
    _softmax_like("softmax"), _spellings("softmax", functional=True, special=True), "`softmax(x)`, `softmax(x, axis=d)`"
)
_add(
    _softmax_like("log_softmax"),
    _spellings("log_softmax", functional=True, special=True),
    "`log_softmax(x)`, `log_softmax(x, axis=d)`",
)


# --- losses ----------------------------------------------------------------------------


def _reduce_loss(c: Call, elementwise: str, like: Arg) -> str:
    how = c.kwargs.get("reduction", "mean")
    if c.kwargs.get("size_average") is not None or c.kwargs.get("reduce") is not None:
        raise Unsupported("size_average/reduce are deprecated; pass reduction=")
    if how == "none" or (like.ndim == 0 and how in ("mean", "sum")):
        return elementwise
    if how in ("mean", "sum"):
        return f"{how}({elementwise})"
    raise Unsupported(f"reduction={how!r}")


def _no_weight(c: Call, *keys: str) -> None:
    for key in keys:
        if c.kwargs.get(key) is not None:
            raise Unsupported(f"{key}= is not supported")


_add(
    lambda c: _reduce_loss(c, f"({c.a(0)} - {c.a(1)}) ** 2", c.get(0, "input")),
    ["torch.nn.functional.mse_loss"],
    "`mean((a - b) ** 2)`",
)
_add(
    lambda c: _reduce_loss(c, f"abs({c.a(0)} - {c.a(1)})", c.get(0, "input")),
    ["torch.nn.functional.l1_loss"],
    "`mean(abs(a - b))`",
)


def _bce_logits(c: Call) -> str:
    _no_weight(c, "weight", "pos_weight")
    z, y = c.a(0, "input"), c.a(1, "target")
    return _reduce_loss(c, f"softplus({z}) - {y} * {z}", c.get(0, "input"))


def _bce(c: Call) -> str:
    # Note: torch clamps each log at -100; the model's log does not.
    _no_weight(c, "weight")
    p, y = c.a(0, "input"), c.a(1, "target")
    return _reduce_loss(c, f"-({y} * log({p}) + (1 - {y}) * log(1 - {p}))", c.get(0, "input"))


_add(_bce_logits, ["torch.nn.functional.binary_cross_entropy_with_logits"], "`mean(softplus(z) - y * z)`")
_add(_bce, ["torch.nn.functional.binary_cross_entropy"], "`mean(-(y * log(p) + (1 - y) * log(1 - p)))`")


def _classes(c: Call, *, log_probs: bool) -> str:
    """cross_entropy / nll_loss of logits ``z`` ([C], or [N, C] held as one sample)."""
    _no_weight(c, "weight")
    if c.kwargs.get("label_smoothing", 0.0):
        raise Unsupported("label_smoothing")
    z, y = c.get(0, "input"), c.get(1, "target")
    if z.ndim not in (1, 2):
        raise Unsupported(f"logits of shape {list(z.shape)} (one sample: [C], or [N, C])")
    if y.integer and y.data is None and y.ndim == 0 and z.ndim == 1:  # a constant class
        picked = f"{z.text}[{int(y.value)}]"
        return f"-{picked}" if log_probs else f"logsumexp({z.text}) - {picked}"
    if y.integer:
        y_text = c.one_hot(y, z.shape[-1])  # index data: a one-hot data column
    elif log_probs:
        raise Unsupported("nll_loss with probability targets")
    else:
        y_text = y.text
    if z.ndim == 1:
        if log_probs:
            return f"-dot({y_text}, {z.text})"
        if y.integer:
            return f"logsumexp({z.text}) - dot({y_text}, {z.text})"
        return f"logsumexp({z.text}) * sum({y_text}) - dot({y_text}, {z.text})"
    per_row = f"-sum({y_text} * {z.text if log_probs else f'log_softmax({z.text}, axis=1)'}, axis=1)"
    how = c.kwargs.get("reduction", "mean")
    if how == "none":
        return per_row
    if how in ("mean", "sum"):
        return f"{how}({per_row})"
    raise Unsupported(f"reduction={how!r}")


_add(
    lambda c: _classes(c, log_probs=False),
    ["torch.nn.functional.cross_entropy"],
    "`logsumexp(z) - z[k]` (constant class), `logsumexp(z) - dot(y, z)` (index data, made one-hot), "
    "`logsumexp(z) * sum(y) - dot(y, z)` (probabilities); rows: `mean(-sum(y * log_softmax(z, axis=1), axis=1))`",
)
_add(
    lambda c: _classes(c, log_probs=True),
    ["torch.nn.functional.nll_loss"],
    "`-z[k]`, `-dot(y, z)` (index data, made one-hot)",
)


def _layer_norm(c: Call) -> str:
    x, shape = c.get(0, "input"), c.get(1, "normalized_shape")
    w, b, eps = c.get(2, "weight"), c.get(3, "bias"), c.get(4, "eps", 1e-5)
    k = len(shape)
    axes = tuple(range(x.ndim - k, x.ndim))
    if k == x.ndim:
        mean, var = f"mean({x.text})", f"var({x.text})"
    else:
        at = f"axis={axes[0] if k == 1 else _const(axes)}, keepdims=True"
        mean, var = f"mean({x.text}, {at})", f"var({x.text}, {at})"
    text = f"({x.text} - {mean}) / sqrt({var} + {number(float(eps))})"
    if w is not None:
        text += f" * {w.text}"
    if b is not None:
        text += f" + {b.text}"
    return text


_add(_layer_norm, ["torch.nn.functional.layer_norm"], "`(x - mean(x)) / sqrt(var(x) + eps) * w + b`")


def _batch_norm(c: Call) -> str:
    """Per channel (axis 1) over every other axis: the batch statistics in training, else the running ones."""
    x = c.get(0, "input")
    rm, rv = c.get(1, "running_mean"), c.get(2, "running_var")
    w, b = c.get(3, "weight"), c.get(4, "bias")
    training, eps = bool(c.get(5, "training", False)), float(c.get(7, "eps", 1e-5))
    if x.ndim < 2:
        raise Unsupported(f"an input of shape {list(x.shape)} (needs (N, C, ...))")
    channels = x.shape[1]
    tail = [1] * (x.ndim - 2)

    def per_channel(arg: Arg) -> str:
        return arg.text if not tail else f"reshape({arg.text}, {_const([channels, *tail])})"

    if training:
        axes = [0, *range(2, x.ndim)]
        at = f"axis={axes[0] if len(axes) == 1 else _const(axes)}, keepdims=True"
        mean, var = f"mean({x.text}, {at})", f"var({x.text}, {at})"
    else:
        if not isinstance(rm, Arg) or not isinstance(rv, Arg):
            raise Unsupported("training=False without running_mean and running_var")
        mean, var = per_channel(rm), per_channel(rv)
    text = f"({x.text} - {mean}) / sqrt({var} + {number(eps)})"
    if isinstance(w, Arg):
        text += f" * {per_channel(w)}"
    if isinstance(b, Arg):
        text += f" + {per_channel(b)}"
    return text


_add(
    _batch_norm,
    ["torch.nn.functional.batch_norm"],
    "`(x - mean(x, axis=0, keepdims=True)) / sqrt(var(x, axis=0, keepdims=True) + eps) * w + b` "
    "(training: the batch's statistics over every axis but 1; else the running ones)",
)


# --- structure -------------------------------------------------------------------------


def _reshape(c: Call) -> str | None:
    x = c.get(0, "input")
    if c.out_shape == x.shape:
        return None
    if len(c.out_shape) == 1 and x.ndim > 1 and c.name.endswith("flatten"):
        return f"flatten({x.text})"
    return f"reshape({x.text}, {_const(c.out_shape)})"


_add(
    _reshape,
    _spellings("reshape")
    + ["torch.Tensor.view", "torch.Tensor.view_as", "torch.Tensor.reshape_as"]
    + _spellings("flatten")
    + _spellings("squeeze")
    + _spellings("unsqueeze"),
    "`reshape(x, [shape])` (the traced shape), `flatten(x)`",
)


def _transpose(c: Call) -> str | None:
    x = c.get(0, "input")
    if c.name.endswith("permute"):
        dims = c.args[1] if len(c.args) == 2 and isinstance(c.args[1], (list, tuple)) else c.args[1:]
        dims = c.kwargs.get("dims", dims)
        if [int(d) % max(x.ndim, 1) for d in dims] == list(range(x.ndim)):
            return None
    if c.out_shape == x.shape and (
        x.ndim <= 1 or c.name.endswith(("transpose", "swapaxes")) and c.get(1) % x.ndim == c.get(2) % x.ndim
    ):
        return None
    if x.ndim == 2:
        return f"{x.text}.T"
    raise Unsupported(f"transposing a tensor of rank {x.ndim} (only matrices: x.T)")


_add(
    _transpose,
    _spellings("t")
    + _spellings("transpose")
    + _spellings("swapaxes")
    + ["torch.Tensor.T.__get__", "torch.Tensor.mT.__get__", "torch.Tensor.permute", "torch.permute"],
    "`x.T` (matrices)",
)


def _joined(fn: str) -> Callable[[Call], str]:
    def rule(c: Call) -> str:
        parts = c.get(0, "tensors")
        dim = int(c.get(1, "dim", 0))
        rank = parts[0].ndim + (1 if fn == "stack" else 0)
        axis = dim % rank
        texts = ", ".join(p.text for p in parts)
        return f"{fn}({texts})" if axis == 0 else f"{fn}({texts}, axis={axis})"

    return rule


_add(_joined("concat"), ["torch.cat", "torch.concat", "torch.concatenate"], "`concat(a, b, axis=d)`")
_add(_joined("stack"), ["torch.stack"], "`stack(a, b, axis=d)`")


def _diag(c: Call) -> str:
    x = c.get(0, "input")
    if x.ndim != 1 or c.get(1, "diagonal", 0) != 0:
        raise Unsupported("diag of a matrix, or off the main diagonal (only diag(v): a vector to a matrix)")
    return f"diag({x.text})"


_add(_diag, _spellings("diag") + ["torch.diag_embed"], "`diag(v)` (vector to matrix)")
_add(lambda c: f"trace({c.a(0)})", _spellings("trace"), "`trace(M)`")


def _getitem(c: Call) -> str | None:
    x, index = c.get(0), c.get(1)
    index = index if isinstance(index, tuple) else (index,)
    if any(i is Ellipsis for i in index):
        at = index.index(Ellipsis)
        index = index[:at] + (slice(None),) * (x.ndim - len(index) + 1) + index[at + 1 :]
    parts, slices = [], False
    for axis, i in enumerate(index):
        if isinstance(i, bool) or not isinstance(i, (int, slice)):
            raise Unsupported(f"indexing with {i!r} (only integer constants and slices)")
        if isinstance(i, int):
            parts.append(str(i % x.shape[axis]))
            continue
        start, stop, step = i.indices(x.shape[axis])
        if step != 1:
            raise Unsupported(f"a slice with step {step}")
        slices = True
        parts.append(f"{start if start else ''}:{stop if stop < x.shape[axis] else ''}")
    if slices:
        parts += [":"] * (x.ndim - len(parts))
        if all(p == ":" for p in parts):
            return None
    return f"{x.text}[{', '.join(parts)}]"


_add(_getitem, ["torch.Tensor.__getitem__"], "`v[i]`, `M[i, j]`, `v[1:3]`, `M[:, 0]` (integer constants)")


# --- layers ----------------------------------------------------------------------------


def _pair(value: Any, what: str) -> int | list[int]:
    """A conv/pool size as the language writes it: one int, or ``[h, w]`` when they differ."""
    values = list(value) if isinstance(value, (list, tuple)) else [value]
    if len(set(values)) == 1:
        return int(values[0])
    return [int(v) for v in values]


def _conv(fn: str, rank: int) -> Callable[[Call], str]:
    def rule(c: Call) -> str:
        x, k, b = c.get(0, "input"), c.get(1, "weight"), c.get(2, "bias")
        if x.ndim != rank + 1:
            raise Unsupported(f"{fn} of input shape {list(x.shape)} (one sample, no batch axis: [C_in, ...])")
        for key, i in (("dilation", 5), ("groups", 6)):
            v = _pair(c.get(i, key, 1), key)
            if v != 1:
                raise Unsupported(f"{key}={v!r}")
        stride = _pair(c.get(3, "stride", 1), "stride")
        padding: Any = c.get(4, "padding", 0)
        if padding == "valid":
            padding = 0
        elif padding == "same":
            padding = [(n - 1) // 2 for n in k.shape[2:]]
            if any(n % 2 == 0 for n in k.shape[2:]):
                raise Unsupported("padding='same' with an even kernel (uneven padding)")
        padding = _pair(padding, "padding")
        text = f"{fn}({x.text}, {k.text}"
        if stride != 1:
            text += f", stride={_const(stride)}"
        if padding != 0:
            text += f", padding={_const(padding)}"
        text += ")"
        if b is not None:
            text += f" + reshape({b.text}, {_const([k.shape[0]] + [1] * rank)})"
        return text

    return rule


_add(
    _conv("conv1d", 1),
    ["torch.conv1d", "torch.nn.functional.conv1d"],
    "`conv1d(x, k, stride=1, padding=0) + reshape(b, [C, 1])`",
)
_add(
    _conv("conv2d", 2),
    ["torch.conv2d", "torch.nn.functional.conv2d"],
    "`conv2d(x, k, stride=1, padding=0) + reshape(b, [C, 1, 1])`",
)


def _pool(fn: str) -> Callable[[Call], str]:
    def rule(c: Call) -> str:
        x = c.get(0, "input")
        if x.ndim != 3:
            raise Unsupported(f"{fn} of input shape {list(x.shape)} (one sample: [C, H, W])")
        size = _pair(c.get(1, "kernel_size"), "kernel_size")
        stride = c.get(2, "stride")
        stride = size if stride is None or stride == [] else _pair(stride, "stride")
        if _pair(c.get(3, "padding", 0), "padding") != 0 or c.get(4 if fn == "maxpool2d" else 5, "ceil_mode", False):
            raise Unsupported("padding or ceil_mode")
        if fn == "maxpool2d" and (_pair(c.get(4, "dilation", 1), "dilation") != 1 or c.kwargs.get("return_indices")):
            raise Unsupported("dilation or return_indices")
        text = f"{fn}({x.text}, {_const(size)}"
        return text + (f", stride={_const(stride)})" if stride != size else ")")

    return rule


_add(_pool("maxpool2d"), ["torch.nn.functional.max_pool2d", "torch.max_pool2d"], "`maxpool2d(x, size, stride=size)`")
_add(_pool("avgpool2d"), ["torch.nn.functional.avg_pool2d", "torch.avg_pool2d"], "`avgpool2d(x, size, stride=size)`")


# --- no change -------------------------------------------------------------------------


def _same(c: Call) -> None:
    return None


def _dropout(c: Call) -> None:
    if c.get(2, "training", True) and c.get(1, "p", 0.5) != 0:
        raise Unsupported("dropout while training is random; call model.eval() or pass training=False")
    return None


_add(
    _same,
    ["torch.Tensor.contiguous", "torch.clone", "torch.Tensor.clone", "torch.Tensor.float", "torch.Tensor.double"]
    + ["torch.Tensor.type_as", "torch.Tensor.cpu", "torch.Tensor.to"],
    "(nothing: the check's dtype rules)",
)
_add(_dropout, ["torch.nn.functional.dropout"], "(nothing, when not training)")
