"""The op entry and the table machinery: :class:`Op`, :data:`OPS`, and how entries are added.

The entries themselves live in the family modules of this package
(:mod:`.arithmetic`, :mod:`.elementwise`, :mod:`.reductions`); the package
imports them all. The rest of this docstring is the contract every entry keeps.

Every function, operator and structural op an expression can use has exactly
one entry in :data:`OPS` (an :class:`Op`), and the entry holds everything
about it: name, arity and keyword attributes, how it is written (a call, or an
operator with its symbol and precedence: the parser and ``unparse`` build their
tables from the entries), its per-sample shape rule, its NumPy, torch, SymPy
and mpmath forms, whether it is analytic (the complex step applies), its kink
rule and convention, its incremental (perturbation) rule or ``DENSE``, and its
doc line (the functions table of ``docs/model-file.md`` is
:func:`markdown_table`). Nothing outside this package names an op: adding a
function means adding one entry to a family module and nothing else, and
:func:`register_function` adds an elementwise one from Python.

Conventions shared by every form:

* Values follow the *trailing-axes* convention: the last ``len(shape)`` axes of
  an array are the per-sample shape; any leading axes are batch axes (samples,
  perturbations) and broadcast. Elementwise forms receive arguments already
  aligned by the interpreter (see :func:`align`) and the node's attributes as
  keywords: ``form(mod, *args, **attrs)``; structural forms receive the
  per-sample shapes of their arguments: ``form(mod, args, shapes, **attrs)``,
  and reduce or index trailing axes only. Shape rules are
  ``shape(*shapes, **attrs)``; kink rules ``kink(numpy, *args)`` (a structural
  op's also take the node's attributes, ``kink(numpy, *args, **attrs)``), giving
  a kink quantity of the op's per-sample rank (batch axes first).
* A form receives the backend module first (``numpy``, ``torch``, ``sympy`` or
  ``mpmath``) so that this module imports none of them.
* SymPy forms work on NumPy object arrays of SymPy expressions (no batch axes).
* mpmath forms work on mpmath numbers or NumPy object arrays of them (batch
  axes first, as for NumPy), at the caller's ``mpmath.mp.dps``. A value that
  is undefined or infinite becomes ``mpmath.nan`` (per element, so per sample),
  and nan stays nan through every later op: the exact loss is decided on the
  expression as written, ``0 * log(0)`` is nan.
"""

from __future__ import annotations

import keyword
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from .. import incremental as inc
from ..errors import ModelError

Shape = tuple[int, ...]
#: ``Op.incremental`` of an op that has no perturbation rule: evaluate it densely.
DENSE = "dense"


class ShapeError(ValueError):
    """A per-sample shape rule was violated; the message says how, ``fix`` (optional) what to write instead."""

    def __init__(self, message: str, fix: str | None = None) -> None:
        super().__init__(message)
        self.fix = fix


_KIND_TEXT = {"int": "an integer", "float": "a number", "bool": "True or False", "ints": "a list of integers"}


@dataclass(frozen=True)
class Attr:
    """A keyword argument of an op: ``name=default``, of one of the ``kinds``.

    ``kinds`` are ``"int"``, ``"float"`` (an int is accepted and made a
    float), ``"bool"`` and ``"ints"`` (a list of integers, held as a tuple).
    A default of ``None`` means "not given" (e.g. ``axis``: all axes).
    """

    name: str
    default: Any
    kinds: tuple[str, ...]
    doc: str = ""

    def describe(self) -> str:
        return " or ".join(_KIND_TEXT[k] for k in self.kinds)

    def coerce(self, value: Any) -> Any:
        """``value`` as this attribute holds it; :class:`TypeError` (with a message) when not allowed."""
        if isinstance(value, bool):
            if "bool" in self.kinds:
                return value
        elif isinstance(value, int):
            if "int" in self.kinds:
                return value
            if "float" in self.kinds:
                return float(value)
        elif isinstance(value, float):
            if "float" in self.kinds:
                return value
        elif isinstance(value, (list, tuple)):
            if "ints" in self.kinds and all(isinstance(v, int) and not isinstance(v, bool) for v in value):
                return tuple(value)
        raise TypeError(f"{self.name}= takes {self.describe()}, got {_show(value)}")


def _show(value: Any) -> str:
    if isinstance(value, tuple):
        return "[" + ", ".join(map(str, value)) + "]"
    return repr(value)


Rule = Callable[..., Any]
#: An op's vector-Jacobian rule (see :attr:`Op.vjp`): one model-language template per operand
#: (``None`` or ``"0"``: no gradient flows there), or a function of the operands' shapes and the
#: attributes that returns such a tuple; ``None`` for an op that has no rule yet.
Vjp = tuple[str | None, ...] | Callable[..., tuple[str | None, ...]] | None


@dataclass(frozen=True)
class Op:
    """One function of the model language, and everything about it.

    ``kind`` is ``"elementwise"`` (broadcasting, forms take aligned arrays) or
    ``"structural"`` (forms take ``(args, shapes, **attrs)``). ``arity`` is
    the number of positional operands (the least number when ``variadic``).
    ``attrs`` are its keyword arguments. ``kink``, when set, maps the aligned
    NumPy argument values to an array whose zeros are the kinks (where the
    function is not differentiable) and whose sign says which smooth piece
    applies; ``kink_doc`` says where in words and ``convention`` what each
    source returns at a kink. ``analytic`` says the NumPy form is analytic
    wherever the function is defined and accepts complex input, so the
    complex-step finite difference is exact for it. ``incremental`` is the
    perturbation rule (a function of :mod:`gradcheck.incremental`) or
    :data:`DENSE`. ``notation`` is ``"call"`` (``f(x)``), ``"infix"``,
    ``"prefix"``, ``"postfix"`` (``x.T``: ``symbol`` is ``".T"``) or
    ``"index"``; operators carry their ``symbol`` and ``precedence`` (higher
    binds tighter; ``right`` for right-associative, ``associative`` when
    ``a op (b op c)`` may be printed without parentheses).

    ``name`` is the entry's key in :data:`OPS` (unique, the IR's ``Node.op``);
    ``spelling`` is the name written in model files (``name`` unless given).
    Several call entries may share a spelling when their arities differ
    (``max(a, b)`` elementwise, ``max(v)`` a reduction): the parser picks the
    entry by spelling and number of positional arguments (:func:`overloads`).
    A structural op's ``kink`` rule takes ``(mod, args, shapes, **attrs)`` like
    its forms and returns one value per element of its first operand (batch
    axes first: for ``max(v)``, ``v_j`` minus the largest of the others, so
    the sign says which element is the maximum and a change of maximum is a
    change of sign); an elementwise one takes the aligned operands and
    returns one value per output element (see :meth:`kink_at`,
    :meth:`kink_rank`).

    ``vjp`` is the op's vector-Jacobian rule, written in the model language as
    HIPS autograd writes one ``defvjp`` line per primitive: one template per
    operand, the derivative of ``sum(g * op(a, b, ...))`` in that operand,
    with the placeholders ``g`` (the cotangent, in the shape of the result),
    ``out`` (the op's result) and ``a``, ``b``, ``c`` (the operands), and
    ``{attr}`` for an attribute's value (``"g * where(a > 0, 1, {slope})"``).
    ``None`` (or ``"0"``) says no gradient flows into that operand. Where the
    text depends on the shapes, ``vjp`` is a function
    ``vjp(shapes, out_shape, **attrs)`` returning the templates. An
    elementwise rule may give a result of the broadcast shape: the derivation
    sums it back over the broadcast axes (:mod:`gradcheck.tensorgrad`). A
    kinked op's rule follows its ``convention`` (torch's value at the kink).

    ``dd``, optional, is the op's double-double form (:mod:`gradcheck.ddarray`
    is its backend module), called as the NumPy form is; it may return
    ``NotImplemented`` for operands it does not handle (``a ** b`` for a ``b``
    that is not one integer). The symbolic source evaluates an op without
    one, or that declines, in mpmath (see
    :mod:`gradcheck.sources.symbolic.blocks`). :func:`moves` makes the form
    of an op that only moves elements. ``dd_vjp``, optional, is a kinked
    op's vector-Jacobian product on double-doubles as SymPy differentiates
    its SymPy form, ties included (``maxpool2d``, ``max(v)``:
    ``Heaviside(x_i - Max(others))``, 1/2 at a tie), ``dd_vjp(D, args, g, shapes, **attrs)``, the cotangent in
    the first operand: the blocks use it in place of ``vjp``, so their value
    at a tie is the tape's.
    """

    name: str
    arity: int
    kind: str
    numpy: Callable[..., Any]
    torch: Callable[..., Any]
    sympy: Callable[..., Any]
    mpmath: Callable[..., Any]
    shape: Callable[..., Shape]
    doc: str
    kink: Callable[..., Any] | None = None
    kink_doc: str = ""
    convention: str = ""
    analytic: bool = True
    incremental: Rule | str = DENSE
    attrs: tuple[Attr, ...] = ()
    variadic: bool = False
    notation: str = "call"
    symbol: str = ""
    precedence: int = 0
    right: bool = False
    associative: bool = False
    builtin: bool = True
    spelling: str = ""
    vjp: Vjp = None
    dd: Callable[..., Any] | None = None
    dd_vjp: Callable[..., Any] | None = None
    defaults: Mapping[str, Any] = field(default_factory=dict, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "defaults", {a.name: a.default for a in self.attrs})
        if not self.spelling:
            object.__setattr__(self, "spelling", self.name)

    @property
    def call(self) -> bool:
        """Written as a call ``f(x)`` (False for operators)."""
        return self.notation == "call"

    def attr(self, name: str) -> Attr | None:
        return next((a for a in self.attrs if a.name == name), None)

    def bind(self, given: tuple[tuple[str, Any], ...] | Mapping[str, Any] = ()) -> dict[str, Any]:
        """Every attribute's value: the defaults, overridden by the ``given`` ``(name, value)`` pairs."""
        out = dict(self.defaults)
        out.update(dict(given))
        return out

    def kink_at(self, mod: Any, node: Any, args: list[Any]) -> Any:
        """The kink quantity at IR ``node`` for its evaluated operands ``args`` (``None`` without a kink rule).

        Elementwise operands come aligned (as the interpreter hands them to
        ``visit``); a structural rule also gets the operands' per-sample shapes
        and the node's attributes.
        """
        if self.kink is None:
            return None
        if self.kind == "elementwise":
            return self.kink(mod, *args)
        return self.kink(mod, list(args), [tuple(a.shape) for a in node.args], **self.bind(node.attrs))

    def kink_rank(self, node: Any) -> int:
        """The per-sample rank of :meth:`kink_at`'s value at ``node`` (what follows its batch axes)."""
        if self.kind == "elementwise" or not node.args:
            return len(node.shape)
        return len(node.args[0].shape)

    def signature(self) -> str:
        """How the function is written, e.g. ``max(a, b)`` or ``sum(v)``."""
        if self.kind == "elementwise":
            names = ["x"] if self.arity == 1 else ["a", "b", "c", "d"][: self.arity]
        else:
            names = ["v"] if self.arity == 1 else ["a", "b", "c", "d"][: self.arity]
        if self.variadic:
            names.append("...")
        names += [f"{a.name}={_show(a.default)}" for a in self.attrs]
        return f"{self.spelling}({', '.join(names)})"


def broadcast(*shapes: Shape) -> Shape:
    """NumPy broadcasting of per-sample shapes."""
    ndim = max((len(s) for s in shapes), default=0)
    out = []
    for axis in range(ndim):
        sizes = {s[axis - ndim + len(s)] for s in shapes if axis - ndim + len(s) >= 0}
        sizes.discard(1)
        if len(sizes) > 1:
            shown = " and ".join(str(list(s)) for s in shapes)
            raise ShapeError(f"shapes {shown} do not broadcast")
        out.append(sizes.pop() if sizes else 1)
    return tuple(out)


# --- helpers for the forms ------------------------------------------------


def _each(fn: Callable[..., Any], *args: Any) -> Any:
    """Apply a scalar SymPy function elementwise to object arrays."""
    import numpy as np

    out = np.frompyfunc(fn, len(args), 1)(*args)
    return np.asarray(out, dtype=object)


def _axes(rank: int) -> tuple[int, ...]:
    return tuple(range(-rank, 0))


def _sum(mod: Any, x: Any, rank: int) -> Any:
    if rank == 0:
        return x
    if mod.__name__ == "torch":
        return x.sum(dim=_axes(rank))
    import numpy as np

    if mod.__name__ != "sympy":
        return x.sum(axis=_axes(rank))
    # Note: one Add per output element; NumPy's object sum adds pairwise, which SymPy
    # re-flattens every time (quadratic in the length: seconds for a 1e3-term dot).
    arr = np.asarray(x, dtype=object)
    flat = arr.reshape(arr.shape[: arr.ndim - rank] + (-1,))
    out = np.empty(flat.shape[:-1], dtype=object)
    for idx in np.ndindex(*out.shape):
        out[idx] = mod.Add(*flat[idx])
    return out if out.ndim else out[()]


def _size(shape: Shape) -> int:
    n = 1
    for s in shape:
        n *= s
    return n


def _object(x: Any) -> Any:
    import numpy as np

    return np.asarray(x, dtype=object)


def _guarded(M: Any, fn: Callable[..., Any]) -> Callable[..., Any]:
    """``fn`` on mpmath numbers, giving ``nan`` where undefined, infinite or not real, and for nan input."""

    def one(*xs: Any) -> Any:
        for x in xs:
            if M.isnan(x):
                return M.nan
        try:
            y = fn(*xs)
        except (ZeroDivisionError, ValueError, OverflowError):
            return M.nan
        if isinstance(y, M.mpc):
            if y.imag != 0:
                return M.nan
            y = y.real
        elif not isinstance(y, M.mpf):
            y = M.mpf(y)
        if not M.isfinite(y):
            return M.nan
        return y

    return one


def _mp(M: Any, fn: Callable[..., Any], *args: Any) -> Any:
    """Apply ``fn`` (guarded, see :func:`_guarded`) elementwise to mpmath numbers or object arrays."""
    import numpy as np

    g = _guarded(M, fn)
    if not any(isinstance(a, np.ndarray) for a in args):
        return g(*args)
    return np.asarray(np.frompyfunc(g, len(args), 1)(*args), dtype=object)


def _mp_sum(x: Any, rank: int) -> Any:
    """Sum over the last ``rank`` axes of an object array (nan stays nan)."""
    import numpy as np

    if rank == 0:
        return x
    out = np.asarray(x, dtype=object).sum(axis=_axes(rank))
    return np.asarray(out, dtype=object) if isinstance(out, np.ndarray) else out


def moves(numpy_form: Callable[..., Any]) -> Callable[..., Any]:
    """The ``dd`` form of a structural op that only moves elements: its NumPy form on both parts alike."""

    def form(D: Any, args: list[Any], shapes: list[Shape], **attrs: Any) -> Any:
        import numpy as np

        return D.each(lambda *parts: numpy_form(np, list(parts), shapes, **attrs), *args)

    return form


# --- the table ------------------------------------------------------------

OPS: dict[str, Op] = {}
#: Functions a model file may call, by spelling (kept in step with :data:`OPS`): the first
#: entry of each spelling; :func:`overloads` gives all of them (``max(a, b)`` and ``max(v)``).
FUNCTIONS: dict[str, Op] = {}
#: Names of constants and their values.
CONSTANTS: dict[str, float] = {"pi": 3.141592653589793, "e": 2.718281828459045}


def _add(op: Op) -> None:
    assert op.name not in OPS, op.name
    if op.call:
        same = [o for o in OPS.values() if o.call and o.spelling == op.spelling]
        assert all(o.arity != op.arity and not (o.variadic or op.variadic) for o in same), op.spelling
    OPS[op.name] = op
    if op.call:
        first = FUNCTIONS.get(op.spelling)
        if first is None or OPS.get(first.name) is not first:
            FUNCTIONS[op.spelling] = op


def overloads(spelling: str) -> list[Op]:
    """Every call entry written ``spelling`` in model files, fewest operands first (empty when unknown)."""
    if spelling not in FUNCTIONS:
        return []
    found = [op for op in OPS.values() if op.call and op.spelling == spelling]
    if not found:  # an entry put into FUNCTIONS by hand
        found = [FUNCTIONS[spelling]]
    return sorted(found, key=lambda op: op.arity)


def lookup(spelling: str, nargs: int) -> Op | None:
    """The call entry written ``spelling`` that takes ``nargs`` positional operands, or ``None``."""
    for op in overloads(spelling):
        if nargs == op.arity or (op.variadic and nargs >= op.arity):
            return op
    return None


def _broadcast_rule(*shapes: Shape, **attrs: Any) -> Shape:
    return broadcast(*shapes)


def elementwise(
    name: str,
    arity: int,
    numpy: Callable[..., Any],
    torch: Callable[..., Any],
    sympy: Callable[..., Any],
    mpmath: Callable[..., Any],
    doc: str,
    *,
    kink: Callable[..., Any] | None = None,
    kink_doc: str = "",
    convention: str = "",
    analytic: bool = True,
    attrs: tuple[Attr, ...] = (),
    notation: str = "call",
    symbol: str = "",
    precedence: int = 0,
    right: bool = False,
    associative: bool = False,
    vjp: Vjp = None,
    dd: Callable[..., Any] | None = None,
) -> None:
    """Add an elementwise (broadcasting) op; it gets the shared elementwise perturbation rule."""
    _add(
        Op(
            name, arity, "elementwise", numpy, torch, sympy, mpmath, _broadcast_rule, doc,
            kink=kink, kink_doc=kink_doc, convention=convention, analytic=analytic,
            incremental=inc.elementwise, attrs=attrs, notation=notation, symbol=symbol,
            precedence=precedence, right=right, associative=associative, vjp=vjp, dd=dd,
        )
    )  # fmt: skip


def structural(
    name: str,
    arity: int,
    numpy: Callable[..., Any],
    torch: Callable[..., Any],
    sympy: Callable[..., Any],
    mpmath: Callable[..., Any],
    shape: Callable[..., Shape],
    doc: str,
    *,
    incremental: Rule | str,
    attrs: tuple[Attr, ...] = (),
    variadic: bool = False,
    notation: str = "call",
    symbol: str = "",
    precedence: int = 0,
    spelling: str = "",
    kink: Callable[..., Any] | None = None,
    kink_doc: str = "",
    convention: str = "",
    analytic: bool = True,
    vjp: Vjp = None,
    dd: Callable[..., Any] | None = None,
    dd_vjp: Callable[..., Any] | None = None,
) -> None:
    """Add a structural op (reductions, products, indexing); ``incremental`` is its rule or :data:`DENSE`.

    ``spelling`` is the name written in files when it differs from ``name``
    (an overload of a function of another arity); ``kink`` takes
    ``(mod, args, shapes, **attrs)`` (see :meth:`Op.kink_at`).
    """
    _add(
        Op(
            name, arity, "structural", numpy, torch, sympy, mpmath, shape, doc,
            incremental=incremental, attrs=attrs, variadic=variadic, notation=notation,
            symbol=symbol, precedence=precedence, spelling=spelling, kink=kink, kink_doc=kink_doc,
            convention=convention, analytic=analytic, vjp=vjp, dd=dd, dd_vjp=dd_vjp,
        )
    )  # fmt: skip


# --- the docs table -------------------------------------------------------

#: The comments around the generated table in docs/model-file.md.
TABLE_BEGIN = "<!-- functions table: generated by gradcheck.ops.markdown_table() -->"
TABLE_END = "<!-- end of functions table -->"


def markdown_table() -> str:
    """The table of built-in functions for docs/model-file.md, from the entries' own docs."""
    lines = ["| function | meaning | kink (non-differentiable point) |", "|---|---|---|"]
    for op in OPS.values():
        if op.call and op.builtin:
            lines.append(f"| `{op.signature()}` | {op.doc} | {op.kink_doc or '—'} |")
    return "\n".join(lines) + "\n"


def replace_table(text: str) -> str:
    """``text`` (docs/model-file.md) with the part between the table's markers regenerated.

    Regenerate the docs with::

        python -c "import pathlib, gradcheck.ops as o; p = pathlib.Path('docs/model-file.md'); p.write_text(o.replace_table(p.read_text()))"
    """
    head, begin, rest = text.partition(TABLE_BEGIN)
    _, end, tail = rest.partition(TABLE_END)
    if not begin or not end:
        raise ValueError("the functions table's markers are missing")
    return f"{head}{TABLE_BEGIN}\n{markdown_table()}{TABLE_END}{tail}"


# --- functions added from Python -----------------------------------------


def register_function(
    name: str,
    *,
    numpy: Callable[..., Any],
    torch: Callable[..., Any],
    sympy: Callable[..., Any],
    kink: Callable[..., Any] | None = None,
    doc: str = "",
    analytic: bool = False,
) -> None:
    """Add an elementwise function of one argument to the model language (SPEC section 6).

    ``numpy(x)`` takes a NumPy array (a complex one too when ``analytic``),
    ``torch(x)`` a tensor (it may be a ``torch.autograd.Function``'s
    ``apply``: its backward is then what the autograd source uses), ``sympy(x)``
    one scalar SymPy expression; ``kink(x)``, optional, returns an array whose
    zeros are the kinks. ``analytic=True`` says the NumPy form is analytic and
    takes complex input, so finite differences use the complex step; the
    default ``False`` uses real steps (Richardson), which is always safe. The
    mpmath form (the exact loss) is derived from the SymPy form. The function
    works in every model parsed afterwards in this process. A built-in
    function, operator or constant name is refused with a :class:`ModelError`;
    registering a name already registered replaces that function.
    """
    if not isinstance(name, str) or not name.isidentifier() or not name.isascii() or name.startswith("__"):
        raise ModelError(
            f"register_function: {name!r} is not a valid function name",
            fix="use letters, digits and underscores, e.g. 'swish'",
        )
    if keyword.iskeyword(name) or name in ("True", "False"):
        raise ModelError(f"register_function: {name!r} is a Python keyword", fix="choose another name")
    old = OPS.get(name)
    if (old is not None and old.builtin) or name in CONSTANTS:
        what = (
            "a constant"
            if name in CONSTANTS
            else "a built-in function"
            if old is not None and old.call
            else "a built-in op"
        )
        raise ModelError(f"register_function: {name!r} is {what} of the model language", fix="choose another name")
    for key, form in (("numpy", numpy), ("torch", torch), ("sympy", sympy)):
        if not callable(form):
            raise ModelError(f"register_function({name!r}): {key}= must be callable, got {form!r}")
    if kink is not None and not callable(kink):
        raise ModelError(f"register_function({name!r}): kink= must be callable or None, got {kink!r}")
    if not isinstance(doc, str):
        raise ModelError(f"register_function({name!r}): doc= must be text, got {doc!r}")
    if not isinstance(analytic, bool):
        raise ModelError(f"register_function({name!r}): analytic= must be True or False, got {analytic!r}")

    def mp_form(M: Any, x: Any) -> Any:
        return _mp(M, _mpmath_of(name, sympy), x)

    op = Op(
        name, 1, "elementwise",
        lambda N, x: numpy(x), lambda T, x: torch(x), lambda S, x: _each(sympy, x), mp_form,
        _broadcast_rule, doc or f"{name} (registered)",
        kink=None if kink is None else (lambda N, x: kink(x)), kink_doc="where kink(x) = 0" if kink else "",
        convention="registered function: each source's own value at a kink" if kink else "",
        analytic=analytic, incremental=inc.elementwise, builtin=False,
    )  # fmt: skip
    OPS.pop(name, None)
    _add(op)
    _MPMATH.pop(name, None)


_MPMATH: dict[str, Callable[[Any], Any]] = {}


def _mpmath_of(name: str, sympy_form: Callable[..., Any]) -> Callable[[Any], Any]:
    """The mpmath form of a registered function: its SymPy form, lambdified once (lazily: SymPy is heavy)."""
    fn = _MPMATH.get(name)
    if fn is None:
        import sympy

        x = sympy.Symbol("x", real=True)
        fn = _MPMATH[name] = sympy.lambdify(x, sympy_form(x), modules="mpmath")
    return fn
