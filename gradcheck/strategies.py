"""Hypothesis strategies for gradcheck's own inputs.

Three strategies, each with a stated guarantee (``docs/testing.md`` has
worked examples)::

    from gradcheck import strategies as gst

    gst.points(model)                 # parameter values: dict name -> float | nested list
    gst.expressions(names=("w", "x")) # text of a random differentiable expression
    gst.models()                      # a whole model as a dict for gc.Model.from_dict

Everything drawn is plain Python data (floats, lists, strings, dicts), so it
prints readably in Hypothesis' falsifying examples and can be pasted into a
model file. Importing this module imports Hypothesis (and NumPy), never
torch or SymPy.
"""

from __future__ import annotations

import functools
import math
import re
from collections.abc import Collection, Mapping, Sequence
from typing import Any

import numpy as np
from hypothesis import strategies as st

from .errors import ModelError
from .model import Model

__all__ = ["expressions", "models", "points"]


# --- points -------------------------------------------------------------------


def points(
    model: Model | Mapping[str, Any], *, scale: float = 1.0, endpoints: bool = False, dtype: str | None = None
) -> st.SearchStrategy[dict[str, Any]]:
    """Parameter values for ``model``, as ``at=`` for :func:`gradcheck.check`.

    Draws a dict with every parameter of ``model`` (a :class:`~gradcheck.Model`
    or a dict for :meth:`~gradcheck.Model.from_dict`): a float for a scalar
    parameter, nested lists in the parameter's shape for a tensor.

    Guarantees:

    * every value is a finite float, exactly representable in ``dtype``
      (default: the model's ``check.dtype``), so a float32 check sees the
      same point and never a domain edge that rounding moved it onto;
    * a parameter with a ``domain: [lo, hi]`` gets values strictly inside
      it (``lo < v < hi``), or in the closed interval with
      ``endpoints=True`` -- so ``log(s)`` with ``domain: [0, 10]`` is never
      evaluated at 0 unless you ask for it;
    * a parameter without a domain gets values within ``scale * max(1, |v|)``
      of its file value ``v`` (element by element for tensors);
    * examples shrink toward the file's values: a failure is reported at
      the point closest to the model as written (each element is drawn as
      an offset from its file value, and offsets shrink toward 0).

    It guarantees nothing about the loss: a point may sit on a kink or where
    the loss is not finite, and :func:`gradcheck.check` reports that as
    ``kink`` or ``undefined``.
    """
    if not isinstance(model, Model):
        model = Model.from_dict(model)
    if not (math.isfinite(scale) and scale > 0):
        raise ModelError(f"points(scale={scale!r}): scale must be a positive finite number")
    dtype = dtype or model.check.dtype
    if dtype not in ("float64", "float32"):
        raise ModelError(f"points(dtype={dtype!r}): dtype must be float64 or float32")
    kind = np.dtype(dtype).type
    per_param: dict[str, st.SearchStrategy[Any]] = {}
    for name, param in model.params.items():
        elements = [
            _element(float(v), param.domain, scale, endpoints, kind)
            for v in np.asarray(param.value, dtype=np.float64).flat
        ]
        shape = param.shape
        per_param[name] = st.tuples(*elements).map(functools.partial(_shaped, shape=shape))
    return st.fixed_dictionaries(per_param)


def _element(
    value: float, domain: tuple[float, float] | None, scale: float, endpoints: bool, kind: Any
) -> st.SearchStrategy[float]:
    """One float, drawn as ``value + offset`` so that it shrinks toward ``value``."""
    if domain is None:
        width = scale * max(1.0, abs(value))
        lo, hi = value - width, value + width
    else:
        lo, hi = domain

    def place(offset: float) -> float:
        # value + offset is rounded (to float64, then to the dtype): keep it inside
        # [lo, hi], or strictly inside the domain unless endpoints=True
        x = kind(min(max(value + offset, lo), hi))
        if domain is not None and not endpoints:
            for _ in range(4):  # a few ulps at most; a domain too narrow for the dtype keeps the file's value
                if x <= lo:
                    x = np.nextafter(x, kind(math.inf))
                elif x >= hi:
                    x = np.nextafter(x, kind(-math.inf))
            if not lo < x < hi:
                return value
        return float(x)

    offsets = st.floats(
        min_value=lo - value,
        max_value=hi - value,
        exclude_min=domain is not None and not endpoints and lo - value < 0,
        exclude_max=domain is not None and not endpoints and hi - value > 0,
        allow_nan=False,
        allow_infinity=False,
        allow_subnormal=False,
    )
    if domain is not None and endpoints:
        # The edges themselves, drawn often rather than left to chance (they shrink last).
        edges = [float(kind(e)) for e in (lo, hi) if lo <= float(kind(e)) <= hi]
        return offsets.map(place) | st.sampled_from(edges)
    return offsets.map(place)


def _shaped(flat: Sequence[float], shape: tuple[int, ...]) -> Any:
    if not shape:
        return flat[0]
    return np.asarray(flat, dtype=np.float64).reshape(shape).tolist()


# --- expressions ------------------------------------------------------------------

#: Smooth on the whole real line and never large: safe around anything.
_BOUNDED = ("sin", "cos", "tanh", "sigmoid", "atan", "erf")
#: Smooth on the whole real line, growing at most linearly.
_LINEAR = ("asinh", "softplus")
#: Functions that have kinks (with ``kinks=True`` only).
_KINKED = ("abs", "relu")
#: Smooth activations, growing at most linearly (``{u}`` is the operand).
_ACTIVATIONS = ("gelu({u})", "silu({u})")
#: Comparisons, ``where`` and the kinked functions of SPEC section 3.1 (with ``kinks=True`` only):
#: ``{u}`` and ``{v}`` are operands. Comparisons and ``sign`` jump at their kink.
_LOGIC = (
    "leaky_relu({u}, slope=0.1)",
    "elu({u}, alpha=2)",
    "clamp({u}, -1, 1)",
    "where({u} > {v}, {u}, {v})",
    "sign({u})",
    "({u} > {v})",
    "({u} <= {v})",
    "where({u} >= 0.5, {v}, 2 * {u})",
)
#: Kinds of expression drawn from templates (``{u}``, ``{v}``: operands).
_TEMPLATES = {"activation": _ACTIVATIONS, "logic": _LOGIC}
#: Smooth reductions over every axis keeping them (``keepdims=True``): scalars stay scalars and
#: a vector of length k becomes one of length 1, so the result broadcasts as its operand did.
_REDUCE = ("sum", "mean", "var", "logsumexp")
#: Reductions along the one axis of a vector (``_model``'s vector terms: ``V`` and ``v`` have one length).
_AXIS_TERMS = (
    "sum(mean(V * v, axis=0, keepdims=True) * V)",
    "var(V * v, axis=-1)",
    "logsumexp(tanh(V) * v, axis=[0])",
    "sum(log_softmax(V * v, axis=0) * v)",
    "sum(softmax(V, axis=-1) * v)",
)


class _Allowed:
    """The functions a drawn expression may use: all, or only ``functions`` (the operators always)."""

    def __init__(self, functions: Collection[str] | None) -> None:
        self.functions = None if functions is None else frozenset(functions)

    def __call__(self, names: Sequence[str]) -> tuple[str, ...]:
        """Those of ``names`` that may be used (an empty tuple: none, so the template is skipped)."""
        return tuple(n for n in names if self.functions is None or n in self.functions)

    def __hash__(self) -> int:
        return hash(self.functions)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, _Allowed) and other.functions == self.functions


#: No restriction: every function may be used.
_ALL = _Allowed(None)


def _allowed(functions: Collection[str] | None, who: str) -> _Allowed:
    """``functions`` checked against the model language's functions (a typo would silently narrow the models)."""
    if functions is None:
        return _ALL
    from .ops import FUNCTIONS

    if isinstance(functions, str):
        raise ModelError(f"{who}(functions={functions!r}) must be a collection of names, not one string")
    for name in functions:
        if name not in FUNCTIONS:
            from .errors import close_match

            guess = close_match(str(name), FUNCTIONS)
            raise ModelError(
                f"{who}(functions=...) names {name!r}, which is not a function of the model language",
                fix=f"did you mean {guess!r}?" if guess else "functions: " + ", ".join(sorted(FUNCTIONS)),
            )
    return _Allowed(functions)


@st.composite
def _expression(draw: Any, names: tuple[str, ...], depth: int, kinks: bool, allowed: _Allowed = _ALL) -> str:
    """Fully parenthesised text; the first choices (what shrinking moves to) are the simplest."""
    leaf = st.sampled_from(names) | st.sampled_from(("1", "2", "0.5", "3"))
    if depth <= 0:
        return str(draw(leaf))

    def sub() -> str:
        return str(draw(_expression(names, depth - 1, kinks, allowed)))

    def pick(functions: Sequence[str]) -> str:
        return str(draw(st.sampled_from(allowed(functions))))

    kinds = ["leaf", "add", "mul", "bounded", "sub", "neg", "pow", "linear", "div", "positive", "half", "reduce"]
    kinds += ["activation", "structure"]
    if kinks:
        kinds += ["kinked", "minmax", "logic", "extreme"]
    needs = {
        "bounded": _BOUNDED,
        "linear": _LINEAR,
        "half": ("asin", "acos", "atanh"),
        "kinked": _KINKED,
        "minmax": ("max", "min"),
        "extreme": ("max", "min"),
        "reduce": _REDUCE,
    }
    kinds = [k for k in kinds if k not in needs or allowed(needs[k])]
    if "half" in kinds and not allowed(("tanh", "sin")):
        kinds.remove("half")
    # Templates of several functions are drawn only where all of theirs are allowed.
    kinds = [k for k in kinds if k not in _TEMPLATES or _usable(_TEMPLATES[k], allowed)]
    if allowed.functions is not None and "structure" in kinds:
        kinds.remove("structure")
    kind = draw(st.sampled_from(kinds))
    if kind == "leaf":
        return str(draw(leaf))
    if kind in ("add", "sub", "mul"):
        op = {"add": "+", "sub": "-", "mul": "*"}[kind]
        return f"({sub()} {op} {sub()})"
    if kind == "neg":
        return f"(-{sub()})"
    if kind == "pow":
        return f"({sub()})**{draw(st.sampled_from((2, 3)))}"
    if kind == "bounded":
        return f"{pick(_BOUNDED)}({sub()})"
    if kind == "linear":
        return f"{pick(_LINEAR)}({sub()})"
    if kind == "div":
        return f"({sub()} / {_positive(draw, sub, allowed)})"
    if kind == "positive":
        # functions defined only for positive arguments, given one
        needs_fn = {"log": "log", "sqrt": "sqrt", "pow_half": None, "acosh1": "acosh", "log1p": "log1p"}
        fn = draw(st.sampled_from([f for f, g in needs_fn.items() if g is None or allowed((g,))]))
        p = _positive(draw, sub, allowed)
        if fn == "pow_half":
            return f"{p}**0.5"
        if fn == "acosh1":
            return f"acosh(1 + {p})"
        return f"{fn}({p})"
    if kind == "half":
        # functions defined only on (-1, 1), given an argument in (-0.5, 0.5)
        fn = pick(("asin", "acos", "atanh"))
        return f"{fn}({pick(('tanh', 'sin'))}({sub()}) / 2)"
    if kind in _TEMPLATES:
        return draw(st.sampled_from(_usable(_TEMPLATES[kind], allowed))).format(u=sub(), v=sub())
    if kind == "structure":
        return _structure(draw, names, sub)
    if kind == "kinked":
        return f"{pick(_KINKED)}({sub()})"
    if kind == "reduce":
        return f"{pick(_REDUCE)}({sub()}, keepdims=True)"
    if kind == "extreme":
        return f"{pick(('max', 'min'))}({sub()}, keepdims=True)"
    return f"{pick(('max', 'min'))}({sub()}, {sub()})"


#: The function names a template calls.
_CALLED = re.compile(r"([A-Za-z_][A-Za-z_0-9]*)\(")


def _usable(templates: Sequence[str], allowed: _Allowed) -> tuple[str, ...]:
    """Those of ``templates`` whose every function call is allowed."""
    return tuple(t for t in templates if len(allowed(_CALLED.findall(t))) == len(_CALLED.findall(t)))


def _structure(draw: Any, names: tuple[str, ...], sub: Any) -> str:
    """A structure op or a slice (issue 10), smooth, of operands of any shape, making a scalar.

    Each operand holds a name (so it is never constant-only) and goes through
    ``flatten`` first, which makes a vector of a scalar and of a vector alike.
    """

    def vec() -> str:
        name = draw(st.sampled_from(names))
        return f"flatten({name})" if draw(st.booleans()) else f"flatten({sub()} * {name})"

    form = draw(st.sampled_from(("slice", "concat", "stack", "reshape", "outer", "diag")))
    if form == "slice":
        return draw(
            st.sampled_from((f"{vec()}[0]", f"sum({vec()}[-1:])", f"sum({vec()}[:1] ** 2)", f"{vec()}[::1][0]"))
        )
    if form == "concat":
        return f"sum(sin(concat({vec()}, {vec()}, axis=-1)))"
    if form == "stack":
        return f"sum(stack(sum({vec()}), {vec()}[0], axis=0) ** 2)"
    if form == "reshape":
        return f"sum(tanh(reshape({vec()}, [-1, 1])))"
    if form == "outer":
        return f"trace(outer({vec()}, {vec()}))"
    return f"sum(tanh(diag({vec()})))"


def _positive(draw: Any, sub: Any, allowed: _Allowed = _ALL) -> str:
    """Text of an expression that is positive (>= exp(-1)) wherever ``sub()`` is finite."""
    needs = {"square": (), "exp": ("exp",), "two_sin": ("sin",), "one_sigmoid": ("sigmoid",)}
    forms = [f for f, fns in needs.items() if all(allowed((fn,)) for fn in fns)]
    if not allowed(_BOUNDED) and "exp" in forms:
        forms.remove("exp")
    form = draw(st.sampled_from(forms))
    if form == "square":
        return f"(1 + ({sub()})**2)"
    if form == "exp":
        return f"exp({draw(st.sampled_from(allowed(_BOUNDED)))}({sub()}))"
    if form == "two_sin":
        return f"(2 + sin({sub()}))"
    return f"(1 + sigmoid({sub()}))"


def expressions(
    names: Sequence[str] = ("w", "x"),
    *,
    max_depth: int = 3,
    kinks: bool = False,
    functions: Collection[str] | None = None,
) -> st.SearchStrategy[str]:
    """Text of random expressions of the model language over ``names``.

    Built from ``+ - * /``, integer powers, the elementwise functions
    (``sin cos tanh sigmoid atan erf asinh softplus``, ``exp log log1p sqrt
    acosh asin acos atanh``, ``x**0.5``) and small structure templates (a
    slice ``flatten(u)[0]`` or ``sum(flatten(u)[-1:])``, ``concat``,
    ``stack``, ``reshape``, ``trace(outer(.))``, ``diag``: each reduces to a
    scalar, so it combines with anything), nested at most ``max_depth`` deep,
    with ``names`` and the constants ``0.5 1 2 3`` as leaves. Every name must
    be elementwise-compatible (scalars, or vectors of one length).

    Guarantees:

    * the text parses, and uses only ``names``, numbers and functions;
    * with ``kinks=False`` (the default) the expression is infinitely
      differentiable wherever its names take finite values: a function with
      a restricted domain only ever sees an argument inside it -- ``log``,
      ``sqrt``, ``x**0.5``, ``log1p`` and ``acosh(1 + .)`` get a positive
      argument (``1 + u**2``, ``exp(tanh(u))``, ``2 + sin(u)``,
      ``1 + sigmoid(u)``), ``asin``/``acos``/``atanh`` get ``tanh(u)/2`` or
      ``sin(u)/2``, and a divisor is one of the same positive forms; ``exp``
      only ever sees a bounded argument, so nothing overflows from ``exp``;
    * ``gelu`` and ``silu`` may appear anywhere (smooth);
    * reductions over every axis that keep them (``sum mean var logsumexp``
      with ``keepdims=True``) may appear: a scalar stays a scalar, a vector
      becomes a vector of length 1, so the result broadcasts as before;
    * with ``kinks=True`` ``abs``, ``relu``, ``max`` and ``min`` (of two
      arguments, and of one with ``keepdims=True``) may appear, and so may
      ``leaky_relu``, ``elu``, ``clamp``, ``sign``, comparisons (``u > v``,
      ``u <= v``) and ``where`` with a comparison as its condition; at their
      kinks :func:`gradcheck.check` reports ``kink`` (or ``agree`` where both
      sides are equal).

    * with ``functions`` (names of model-language functions, e.g. an
      engine's :attr:`gradcheck.Engine.functions`) only those functions
      appear, besides the operators ``+ - * / **`` and unary ``-``; a
      template that needs another is left out (``x**0.5`` and ``1 + u**2``
      need none, so every guarantee above still holds). A name that is no
      function of the language is a :class:`ModelError`.

    Not guaranteed: that the value is small (``((x**3)**3)**3`` is allowed),
    so at large inputs rounding can make a check report ``undefined``
    honestly. Shrinking moves toward a single name.
    """
    names = tuple(names)
    if not names:
        raise ModelError("expressions(names=...) needs at least one name")
    if max_depth < 0:
        raise ModelError(f"expressions(max_depth={max_depth!r}) must be >= 0")
    return _expression(names, max_depth, kinks, _allowed(functions, "expressions"))


# --- models -------------------------------------------------------------------

_PARAM_NAMES = ("w", "b", "a", "c")
_DATA_NAMES = ("x", "z")


def _value(lo: float = -2.0, hi: float = 2.0) -> st.SearchStrategy[float]:
    """Floats with few digits: readable in a falsifying example, exact in YAML."""
    return st.integers(int(lo * 100), int(hi * 100)).map(lambda k: k / 100)


@st.composite
def _model(
    draw: Any,
    max_params: int,
    max_samples: int,
    max_depth: int,
    kinks: bool,
    vectors: bool,
    domains: bool,
    allowed: _Allowed = _ALL,
) -> dict[str, Any]:
    n_params = draw(st.integers(1, max_params))
    params: dict[str, Any] = {name: draw(_value()) for name in _PARAM_NAMES[:n_params]}
    n_data = draw(st.integers(0, len(_DATA_NAMES)))
    n = draw(st.integers(1, max_samples))
    data: dict[str, Any] = {name: [draw(_value()) for _ in range(n)] for name in _DATA_NAMES[:n_data]}
    names = tuple(params) + tuple(data)
    terms = [draw(_expression(names, max_depth, kinks, allowed))]
    if domains and allowed(("log", "sqrt")) and draw(st.booleans()):
        # a parameter with a domain, used where only that domain is safe
        params["s"] = {"value": draw(_value(0.5, 3.0)), "domain": [0.25, 4.0]}
        terms.append(f"{draw(st.sampled_from(allowed(('log', 'sqrt'))))}(s) * {draw(st.sampled_from(names))}")
    vector_terms = list(_usable(("dot(V, v)", "sum(tanh(V * v))", "logsumexp(V * v)", *_AXIS_TERMS), allowed))
    if vectors and vector_terms and draw(st.booleans()):
        k = draw(st.integers(2, 3))
        params["V"] = [draw(_value()) for _ in range(k)]
        data["v"] = [[draw(_value()) for _ in range(k)] for _ in range(n)]
        terms.append(draw(st.sampled_from(vector_terms)))
    spec: dict[str, Any] = {"params": params}
    if data:
        spec["data"] = data
    y_pred = " + ".join(terms)
    if data and draw(st.booleans()):
        data["y"] = [draw(_value()) for _ in range(n)]
        losses = ("(y_pred - y)**2",) + ("softplus(y_pred - y)",) * bool(allowed(("softplus",)))
        spec["model"] = {"y_pred": y_pred, "loss": draw(st.sampled_from(losses))}
    else:
        spec["model"] = {"loss": y_pred}
    spec["reduction"] = draw(st.sampled_from(("mean", "sum", "none")))
    return spec


def models(
    *,
    max_params: int = 3,
    max_samples: int = 4,
    max_depth: int = 2,
    kinks: bool = False,
    vectors: bool = True,
    domains: bool = True,
    functions: Collection[str] | None = None,
) -> st.SearchStrategy[dict[str, Any]]:
    """Random whole models, as dicts for :meth:`gradcheck.Model.from_dict`.

    A model has 1 to ``max_params`` scalar parameters (``w b a c``) with
    values in [-2, 2]; 0 to 2 data columns (``x z``) of 1 to ``max_samples``
    samples; a loss built from :func:`expressions` (with ``max_depth`` and
    ``kinks``), sometimes as ``y_pred`` plus ``(y_pred - y)**2`` or
    ``softplus(y_pred - y)`` against a target column ``y``; a
    ``reduction`` of ``mean``, ``sum`` or ``none``. With ``domains=True``
    sometimes a parameter ``s`` with ``domain: [0.25, 4]`` used as
    ``log(s)`` or ``sqrt(s)``, and
    with ``vectors=True`` sometimes a vector parameter ``V`` with a vector
    data column ``v`` of 2 or 3 elements, used through ``dot``, ``sum`` or
    ``logsumexp``, or a reduction along its axis (``mean``, ``var``,
    ``logsumexp``, ``softmax``, ``log_softmax`` with ``axis=``).

    Guarantees:

    * ``Model.from_dict`` accepts every dict drawn (names, shapes, sample
      counts all valid), and ``yaml.safe_dump(spec, sort_keys=False)`` of
      it is a model file (keep the order: model entries are ordered);
    * numbers have at most two decimals, so they are exact in the file;
    * with ``kinks=False`` the loss is smooth at every parameter value
      (every domain-restricted function is guarded as in
      :func:`expressions`, and ``s`` stays inside its domain under
      :func:`points`), so a correct autodiff engine agrees with the exact
      gradient up to rounding; with ``kinks=True`` a check may report
      ``kink``;
    * with ``functions`` (e.g. an engine's
      :attr:`gradcheck.Engine.functions`) the model uses only those
      functions and the operators ``+ - * / **``, unary ``-``: the
      expressions as in :func:`expressions`, ``s`` only when ``log`` or
      ``sqrt`` is allowed, ``V`` only through an allowed form, the target
      through ``(y_pred - y)**2`` unless ``softplus`` is allowed. So
      ``@given(gst.models(functions=engine.functions))`` with
      :func:`gradcheck.assert_agree` fuzzes an engine (``docs/engines.md``).
    """
    if max_params < 1 or max_params > len(_PARAM_NAMES):
        raise ModelError(f"models(max_params={max_params!r}) must be between 1 and {len(_PARAM_NAMES)}")
    if max_samples < 1:
        raise ModelError(f"models(max_samples={max_samples!r}) must be >= 1")
    return _model(max_params, max_samples, max_depth, kinks, vectors, domains, _allowed(functions, "models"))
