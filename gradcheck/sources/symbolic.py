"""The symbolic source: SymPy differentiates, mpmath evaluates exactly.

How the gradient is derived (see ``docs/how-it-works.md``):

* **Reverse accumulation over the IR.** The model's entries are run once on
  NumPy object arrays of SymPy symbols. Every element an op produces becomes
  a fresh real symbol with its defining expression (a *tape*: the entries'
  values are shared subexpressions by construction, nothing is inlined), and
  SymPy differentiates each of those small expressions with respect to its
  own operands only (the local partials). The adjoints are then accumulated
  backwards over the tape, each again a named subexpression. The cost is
  proportional to the number of (output, operand) pairs of the ops, i.e.
  linear in the model's size, where differentiating the inlined loss once
  per parameter element is quadratic.
* **Evaluation in mpmath at** :data:`DPS` **digits, vectorized over samples.**
  The tape is printed once as straight-line Python (SymPy's mpmath printer;
  the tape already is the common-subexpression elimination that
  ``sympy.cse`` would find, at no search cost) and compiled; the compiled
  function is cached on ``model.cache``. Parameters are mpmath scalars and
  every data element is a NumPy object array of mpmath numbers over the
  samples, so each tape line runs once for all samples and subexpressions
  that depend on parameters only run once. Where a line cannot run on arrays
  (a ``Piecewise``) or raises (a division by zero), the samples are evaluated
  one at a time, each tape line guarded, so one undefined value poisons only
  what depends on it. Only the final sums over samples (``mpmath.fsum``) are
  rounded to float64, so this column is exact to the last bit where float
  evaluation is not (overflow, cancellation).
* **Readable formulas** (:func:`formula`) are built separately and lazily:
  the per-sample loss inlined into one expression and differentiated with
  ``sympy.diff`` per element, only for the parameters a caller asks about
  (the report asks for those with at most 16 elements).

Nothing here touches torch or the finite differences.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .. import interp
from ..model import Model
from . import Gradients

#: Significant digits of the mpmath evaluation.
DPS = 40

#: Exceptions an mpmath evaluation raises where a value is undefined.
_ERRORS = (ZeroDivisionError, ValueError, OverflowError, TypeError, ArithmeticError)


# --- readable symbols, the inlined loss, per-element formulas -------------


@dataclass
class _Built:
    param_symbols: dict[str, np.ndarray]  # object arrays of Symbols, in param shape
    data_symbols: dict[str, np.ndarray]  # object arrays, in per-sample shape
    inlined: Any = None  # the per-sample loss as one expression (built on demand)
    grads: dict[str, np.ndarray] = field(default_factory=dict)  # formulas built so far

    @property
    def loss(self) -> Any:
        return self.inlined


def _symbols(name: str, shape: tuple[int, ...], label: str | None = None) -> np.ndarray:
    import sympy

    label = name if label is None else label
    if not shape:
        return np.asarray(sympy.Symbol(label, real=True), dtype=object)
    out = np.empty(shape, dtype=object)
    for idx in np.ndindex(*shape):
        inner = ", ".join(map(str, idx)) if label == name else "_".join(map(str, idx))
        out[idx] = sympy.Symbol(f"{label}[{inner}]" if label == name else f"{label}_{inner}", real=True)
    return out


def _build(model: Model) -> _Built:
    cached = model.cache.get("symbolic")
    if cached is None:
        import sympy

        params = {k: _symbols(k, p.shape) for k, p in model.params.items()}
        data = {k: _symbols(k, model.shape_of(k)) for k in model.data}
        values = interp.evaluate(model.entries, {**params, **data}, "sympy", sympy, until=model.loss)
        loss = np.asarray(values[model.loss], dtype=object).item()
        cached = model.cache["symbolic"] = _Built(params, data, loss)
    return cached  # type: ignore[no-any-return]


#: Largest estimated size of the inlined per-sample loss (see :func:`inlined_size`)
#: for which :func:`formula` inlines it; bigger models get the chain-rule form.
MAX_INLINED_SIZE = 100


def inlined_size(model: Model) -> int:
    """A cheap estimate of the size of the inlined per-sample loss, from the IR.

    Every node counts its number of elements, and a reference to an earlier
    entry counts that entry's whole size (it is copied in by inlining), so
    chains of entries that reuse each other grow as their inlined form does.
    """
    size: dict[str, int] = {}
    for entry, node in model.entries.items():
        total = 0
        for n in node.walk():
            if n.op == "name" and n.value in size:
                total += size[str(n.value)]
            else:
                total += int(np.prod(n.shape, dtype=np.int64)) if n.shape else 1
        size[entry] = total
        if entry == model.loss:
            break
    return size.get(model.loss, 0)


def formula_in_entries(model: Model) -> bool:
    """True when :func:`formula` writes derivatives in terms of the model's entries."""
    return inlined_size(model) > MAX_INLINED_SIZE


def formula(model: Model, name: str) -> Any:
    """The derivative of the per-sample loss with respect to ``name`` (SymPy).

    Built on first request. For a small model the loss is inlined and
    differentiated per element, so it reads as SymPy writes it (e.g.
    ``2*x*(b + w*x - y)``). When the inlined loss would be large
    (:func:`formula_in_entries`), the derivative is the chain rule over the
    model's entries instead, with the entries as symbols (e.g.
    ``2*(y_pred - y)`` for an MLP's output bias): its size is that of the
    entries that depend on ``name``, not of the whole inlined loss.
    """
    import sympy

    if formula_in_entries(model):
        cache = model.cache.setdefault("symbolic_entry_formulas", {})
        if name not in cache:
            cache[name] = _entry_formula(model, name)
        g = cache[name]
        return g.item() if g.ndim == 0 else sympy.Array(g.tolist())
    built = _build(model)
    g = built.grads.get(name)
    if g is None:
        syms = built.param_symbols[name]
        g = np.empty(syms.shape, dtype=object)
        for idx in np.ndindex(*syms.shape):
            g[idx] = sympy.diff(built.loss, syms[idx])
        built.grads[name] = g
    return g.item() if g.ndim == 0 else sympy.Array(g.tolist())


def _entry_formula(model: Model, name: str) -> np.ndarray:
    """d loss / d ``name`` per element by the chain rule over the entries (entries as symbols)."""
    import sympy

    # The entries that depend on `name` (directly or through earlier entries).
    deps: set[str] = set()
    for entry, node in model.entries.items():
        if any(ref == name or ref in deps for ref in node.names()):
            deps.add(entry)
        if entry == model.loss:
            break
    # Symbols only for what the dependent entries use (a big weight matrix elsewhere costs nothing).
    used = {name} | {ref for e in deps for ref in model.entries[e].names()}
    env: dict[str, Any] = {k: _symbols(k, model.shape_of(k)) for k in used if k in model.params or k in model.data}
    local: dict[str, np.ndarray] = {}  # each dependent entry in terms of earlier entries' symbols
    for entry, node in model.entries.items():
        if entry in deps:
            local[entry] = np.asarray(interp.run(node, env, "sympy", sympy), dtype=object)
        if entry in used or entry in deps:
            env[entry] = _symbols(entry, model.shape_of(entry))
        if entry == model.loss:
            break
    wanted = env[name]
    active: set[Any] = {s for e in deps for s in np.asarray(env[e]).reshape(-1)}
    active |= set(np.asarray(wanted).reshape(-1))
    adjoint: dict[Any, list[Any]] = {}
    if model.loss in deps:
        adjoint[np.asarray(env[model.loss]).item()] = [sympy.Integer(1)]
    for entry in reversed([e for e in local]):
        syms, exprs = np.asarray(env[entry]), np.broadcast_to(local[entry], model.shape_of(entry))
        for idx in np.ndindex(*syms.shape):
            terms = adjoint.pop(syms[idx], None)
            if not terms:
                continue
            a = sympy.Add(*terms)
            e = exprs[idx] if isinstance(exprs[idx], sympy.Basic) else sympy.Integer(0) + exprs[idx]
            for s, p in _partials(e, active).items():
                # Name the entry where its derivative repeats it (tanh' = 1 - h**2).
                adjoint.setdefault(s, []).append((a * p).xreplace({e: syms[idx]}))
    out = np.empty(np.shape(wanted), dtype=object)
    for idx in np.ndindex(*out.shape):
        out[idx] = sympy.factor_terms(sympy.Add(*adjoint.get(np.asarray(wanted)[idx], [])))
    return out


def loss_expression(model: Model) -> Any:
    """The per-sample loss as one SymPy expression (entries inlined)."""
    return _build(model).loss


def expression(model: Model, node: Any) -> np.ndarray:
    """Any IR expression of the model (e.g. an ``expected`` entry) in SymPy."""
    import sympy

    built = _build(model)
    env = interp.evaluate(model.entries, {**built.param_symbols, **built.data_symbols}, "sympy", sympy)
    return np.asarray(interp.run(node, env, "sympy", sympy), dtype=object)


# --- the tape: reverse accumulation over the IR ---------------------------


@dataclass
class _Tape:
    """Straight-line code for ``[loss, *gradient elements]`` of the per-sample loss."""

    params: list[Any]  # input symbols of the param elements, in order
    data: list[tuple[str, tuple[int, ...], Any]]  # (column, element index, input symbol)
    lines: list[tuple[Any, Any]]  # (symbol, expression), forward then adjoints
    outputs: list[Any]  # the loss, then every param element's derivative
    layout: list[tuple[str, tuple[int, ...]]]
    vectorized: Any = None  # compiled: (params, data arrays) -> outputs
    guarded: Any = None  # compiled, every line in try/except: one sample at a time


def _partials(expr: Any, active: set[Any]) -> dict[Any, Any]:
    """d expr / d s for every active symbol s in ``expr``.

    Sums and products are split by hand (one pass, linear in their size);
    everything else is a function of a few operands and goes to ``diff``.
    """
    if expr.is_Symbol:
        return {expr: 1} if expr in active else {}
    if not (expr.free_symbols & active):
        return {}
    out: dict[Any, Any] = {}
    if expr.is_Add:
        for term in expr.args:
            for s, p in _partials(term, active).items():
                out[s] = out[s] + p if s in out else p
        return out
    if expr.is_Mul:
        factors = expr.args
        for i, factor in enumerate(factors):
            sub = _partials(factor, active)
            if not sub:
                continue
            rest = expr.func(*(factors[:i] + factors[i + 1 :]))
            for s, p in sub.items():
                out[s] = out[s] + p * rest if s in out else p * rest
        return out
    # A function of a few operands: differentiate its shape once (operands
    # replaced by canonical dummies) and reuse that for every element.
    free = sorted(expr.free_symbols, key=str)
    dummies = _dummies(len(free))
    shape = expr.xreplace(dict(zip(free, dummies)))
    back = dict(zip(dummies, free))
    for s, d in zip(free, dummies):
        if s in active:
            key = (shape, d)
            if key not in _DIFFS:
                _DIFFS[key] = shape.diff(d)
            out[s] = _DIFFS[key].xreplace(back)
    return out


#: Derivatives of op shapes by canonical dummy operand (see :func:`_partials`).
_DIFFS: dict[Any, Any] = {}


def _dummies(n: int) -> list[Any]:
    import sympy

    return [sympy.Symbol(f"_operand{i}", real=True) for i in range(n)]


def _record(model: Model) -> _Tape:
    """Run the entries on symbols, then accumulate adjoints backwards."""
    import sympy

    params = {k: _symbols(k, p.shape, f"p{i}") for i, (k, p) in enumerate(model.params.items())}
    data = {k: _symbols(k, model.shape_of(k), f"d{i}") for i, k in enumerate(model.data)}
    active: set[Any] = {s for arr in params.values() for s in arr.reshape(-1)}
    lines: list[tuple[Any, Any]] = []
    partials: dict[Any, dict[Any, Any]] = {}

    def materialize(value: Any) -> Any:
        arr = np.asarray(value, dtype=object)
        out = np.empty(arr.shape, dtype=object)
        for idx in np.ndindex(*arr.shape):
            e = sympy.sympify(arr[idx])
            if e.is_Atom or not e.free_symbols:
                out[idx] = e
                continue
            t = sympy.Symbol(f"t{len(lines)}", real=True)
            lines.append((t, e))
            local = _partials(e, active)
            if local:
                active.add(t)
                # Reuse the value where the derivative repeats it (tanh' = 1 - tanh**2).
                partials[t] = {s: sympy.sympify(p).xreplace({e: t}) for s, p in local.items()}
            out[idx] = t
        return out if arr.shape else out[()]

    def run(node: Any, env: dict[str, Any]) -> Any:
        if node.op == "num":
            return interp.number(node, "sympy", sympy)
        if node.op == "name":
            name = str(node.value)
            return env[name] if name in env else interp.constant(name, "sympy", sympy)
        args = [run(a, env) for a in node.args]
        return materialize(interp.apply(node, args, "sympy", sympy))

    env: dict[str, Any] = {**params, **data}
    for name, node in model.entries.items():
        env[name] = run(node, env)
        if name == model.loss:
            break
    loss = sympy.sympify(np.asarray(env[model.loss], dtype=object).item())

    # Backwards: a symbol's adjoint is complete once every later line is done.
    contributions: dict[Any, list[Any]] = {loss: [sympy.Integer(1)]} if loss.is_Symbol else {}
    backward: list[tuple[Any, Any]] = []
    for t, _ in reversed(lines):
        terms = contributions.pop(t, None)
        if not terms or t not in partials:
            continue
        adjoint = sympy.Add(*terms)
        if not adjoint.is_Atom:
            g = sympy.Symbol(f"g{len(backward)}", real=True)
            backward.append((g, adjoint))
            adjoint = g
        for s, p in partials[t].items():
            contributions.setdefault(s, []).append(adjoint * p)

    outputs: list[Any] = [loss]
    layout: list[tuple[str, tuple[int, ...]]] = []
    for name, syms in params.items():
        for s in syms.reshape(-1):
            outputs.append(sympy.Add(*contributions.get(s, [])))
        layout.append((name, syms.shape))
    data_inputs = [(k, idx, syms[idx]) for k, syms in data.items() for idx in np.ndindex(*syms.shape)]
    param_inputs = [s for syms in params.values() for s in syms.reshape(-1)]
    return _Tape(param_inputs, data_inputs, lines + backward, outputs, layout)


# --- printing and compiling the tape --------------------------------------


def _vectorize(fn: Any) -> Any:
    """``fn`` elementwise over object arrays, as it is on scalars."""
    ufuncs: dict[int, Any] = {}

    def call(*args: Any) -> Any:
        if not any(isinstance(a, np.ndarray) for a in args):
            return fn(*args)
        uf = ufuncs.get(len(args))
        if uf is None:
            uf = ufuncs[len(args)] = np.frompyfunc(fn, len(args), 1)
        return uf(*args)

    return call


#: mpmath functions the printed tape may call, made elementwise over samples.
_FUNCTIONS = (
    "exp log sqrt sin cos tan sec csc cot asin acos atan sinh cosh tanh sech csch coth asinh acosh atanh "
    "erf erfc sign atan2 fabs log1p expm1 cbrt"
).split()


def _namespace() -> dict[str, Any]:
    import mpmath

    ns: dict[str, Any] = {k: getattr(mpmath, k) for k in dir(mpmath) if not k.startswith("_")}
    for name in _FUNCTIONS:
        if hasattr(mpmath, name):
            ns[name] = _vectorize(getattr(mpmath, name))

    def heaviside(x: Any, at_zero: Any = None) -> Any:  # SymPy's default: Heaviside(0) = 1/2
        return mpmath.mpf(1) if x > 0 else mpmath.mpf(0) if x < 0 else mpmath.mpf(1) / 2 if at_zero is None else at_zero

    ns["_heaviside"] = _vectorize(heaviside)
    ns["_max"] = _vectorize(lambda *a: max(a))
    ns["_min"] = _vectorize(lambda *a: min(a))
    ns["_nan"] = mpmath.nan
    ns["_inf"] = mpmath.inf
    ns["_const"] = lambda p, q=1: np.full(1, mpmath.mpf(p) / q, dtype=object)
    ns["_ERRORS"] = _ERRORS
    return ns


def _printer() -> Any:
    from sympy.printing.pycode import MpmathPrinter

    class Printer(MpmathPrinter):  # type: ignore[misc]
        # Calls instead of Python's max() and conditional expressions, so that
        # a line runs on object arrays of samples.
        def _print_Heaviside(self, expr: Any) -> str:
            return f"_heaviside({', '.join(self._print(a) for a in expr.args)})"

        def _print_Max(self, expr: Any) -> str:
            return f"_max({', '.join(self._print(a) for a in expr.args)})"

        def _print_Min(self, expr: Any) -> str:
            return f"_min({', '.join(self._print(a) for a in expr.args)})"

        # mpmath numbers times NumPy arrays take a slow conversion path, so
        # constants are one-element arrays (as the parameters are).
        def _print_Rational(self, expr: Any) -> str:
            return f"_const({expr.p}, {expr.q})"

        def _print_Float(self, expr: Any) -> str:
            return f"_const({super()._print_Float(expr)})"

        # SymPy folds 1/(w - w) to zoo and 0*oo to nan: undefined values, evaluated as nan
        # (so the verdict is `undefined`), never a crash of the printer.
        def _print_ComplexInfinity(self, expr: Any) -> str:
            return "_const(_nan)"

        def _print_NaN(self, expr: Any) -> str:
            return "_const(_nan)"

        def _print_Infinity(self, expr: Any) -> str:
            return "_const(_inf)"

        def _print_NegativeInfinity(self, expr: Any) -> str:
            return "_const(-_inf)"

    return Printer({"fully_qualified_modules": False, "inline": True, "allow_unknown_functions": True})


def _compile(tape: _Tape) -> None:
    printer = _printer()
    head = ["def _f(_p, _d):"]
    if tape.params:
        head.append(f"    {', '.join(map(str, tape.params))}, = _p")
    if tape.data:
        head.append(f"    {', '.join(str(s) for _, _, s in tape.data)}, = _d")

    def show(e: Any) -> str:
        # The common lines (a symbol, a product of symbols) skip the printer's overhead.
        if e.is_Symbol:
            return str(e.name)
        if e.is_Mul and all(a.is_Symbol for a in e.args):
            return "*".join(a.name for a in e.args)
        return str(printer.doprint(e))

    code = [(str(t), show(e)) for t, e in tape.lines]
    ret = f"    return [{', '.join(show(e) for e in tape.outputs)}]"
    plain = head + [f"    {t} = {e}" for t, e in code] + [ret]
    guarded = list(head)
    for t, e in code:
        guarded += ["    try:", f"        {t} = {e}", "    except _ERRORS:", f"        {t} = _nan"]
    guarded += ["    try:", "    " + ret, "    except _ERRORS:", f"        return [_nan] * {len(tape.outputs)}"]
    for attr, lines in (("vectorized", plain), ("guarded", guarded)):
        ns = _namespace()
        exec(compile("\n".join(lines), "<gradcheck symbolic tape>", "exec"), ns)  # our own printed SymPy code
        setattr(tape, attr, ns["_f"])


def _tape(model: Model) -> _Tape:
    tape = model.cache.get("symbolic_tape")
    if tape is None:
        tape = _record(model)
        _compile(tape)
        model.cache["symbolic_tape"] = tape
    return tape  # type: ignore[no-any-return]


def _run_tape(model: Model, tape: _Tape, point: dict[str, np.ndarray]) -> list[list[Any]]:
    """``columns[k][sample]``: output k of the tape for every sample (mpmath numbers)."""
    import mpmath

    n = model.n_samples
    with mpmath.workdps(DPS):
        to_mp = np.frompyfunc(mpmath.mpf, 1, 1)
        # Parameters are one-element arrays: an mpmath number times an array is slow.
        p_args = [to_mp(np.asarray(point[name], np.float64).reshape(-1, 1)) for name in model.params]
        p_args = [row for arr in p_args for row in arr]
        d_args = [to_mp(np.asarray(model.data[k], np.float64)[(slice(None),) + idx]) for k, idx, _ in tape.data]
        try:
            with np.errstate(all="ignore"):
                outs = tape.vectorized(p_args, d_args)
            columns = [list(o) if isinstance(o, np.ndarray) and o.size == n else [_item(o)] * n for o in outs]
            if all(len(c) == n for c in columns):
                return columns
        except _ERRORS:
            pass
        rows = [[_item(v) for v in tape.guarded(p_args, [d[i : i + 1] for d in d_args])] for i in range(n)]
    return [list(col) for col in zip(*rows)]


def _item(value: Any) -> Any:
    return value.reshape(-1)[0] if isinstance(value, np.ndarray) else value


def gradients(model: Model, point: dict[str, np.ndarray]) -> Gradients:
    """Exact gradients of the reduced loss at ``point``, rounded to float64."""
    tape = _tape(model)
    columns = _run_tape(model, tape, point)
    return _collect(model, columns, tape.layout, "symbolic")


# --- evaluating given expressions (``expected``) ---------------------------


def _flat_symbols(built: _Built) -> list[Any]:
    out: list[Any] = []
    for arr in list(built.param_symbols.values()) + list(built.data_symbols.values()):
        out.extend(arr.reshape(-1).tolist())
    return out


def _to_float(value: Any) -> float:
    import mpmath

    if isinstance(value, mpmath.mpc) or isinstance(value, complex):
        if value.imag != 0:
            return math.nan
        value = value.real
    try:
        return float(value)
    except (TypeError, ValueError, OverflowError):
        return math.nan


def evaluate_exprs(model: Model, exprs: list[Any], point: dict[str, np.ndarray]) -> list[list[Any]]:
    """Evaluate SymPy expressions of params and data per sample, in mpmath.

    Returns ``rows[sample][k]`` as mpmath numbers (``nan`` where undefined).
    """
    import mpmath
    import sympy

    built = _build(model)
    symbols = _flat_symbols(built)
    # lambdify costs milliseconds per call; training evaluates the same expressions hundreds of times.
    fns = model.cache.setdefault("symbolic_lambdified", {})
    fn = fns.get(tuple(exprs))
    if fn is None:
        fn = fns[tuple(exprs)] = sympy.lambdify(*_renamed(symbols, exprs), modules="mpmath")
    param_args: list[float] = []
    for name in built.param_symbols:
        param_args.extend(np.asarray(point[name], dtype=np.float64).reshape(-1).tolist())
    n = model.n_samples
    rows = []
    with mpmath.workdps(DPS):
        for i in range(n):
            data_args: list[float] = []
            for name in built.data_symbols:
                data_args.extend(np.asarray(model.data[name][i], dtype=np.float64).reshape(-1).tolist())
            args = [mpmath.mpf(v) for v in param_args + data_args]
            try:
                rows.append(list(fn(*args)))
            except (ZeroDivisionError, ValueError, OverflowError, TypeError):
                rows.append([_one(fn_k, args) for fn_k in _single(symbols, exprs)])
    return rows


def _single(symbols: list[Any], exprs: list[Any]) -> list[Any]:
    import sympy

    symbols, exprs = _renamed(symbols, exprs)
    return [sympy.lambdify(symbols, e, modules="mpmath") for e in exprs]


def _renamed(symbols: list[Any], exprs: list[Any]) -> tuple[list[Any], list[Any]]:
    """Symbols named like an mpmath name (a param ``e`` or ``pi``) renamed, for lambdify.

    The printer writes ``E`` as ``e``: ``def f(e): return e*e`` would stand for
    ``e*E`` (and lambdify's ``dummify`` leaves ``e`` bound to a SymPy symbol).
    """
    import mpmath
    import sympy

    if not any(hasattr(mpmath, s.name) for s in symbols):
        return symbols, exprs
    fresh = {s: sympy.Symbol(f"_arg{i}", real=True) for i, s in enumerate(symbols)}
    return list(fresh.values()), [e.xreplace(fresh) if hasattr(e, "xreplace") else e for e in exprs]


def _one(fn: Any, args: list[Any]) -> Any:
    import mpmath

    try:
        return fn(*args)
    except ZeroDivisionError:
        return mpmath.inf
    except (ValueError, OverflowError, TypeError):
        return mpmath.nan


def _reduce_mp(column: list[Any], reduction: str) -> Any:
    import mpmath

    with mpmath.workdps(DPS):
        total = mpmath.fsum(column) if all(not isinstance(v, mpmath.mpc) for v in column) else mpmath.nan
        return total / len(column) if reduction == "mean" else total


def _collect(
    model: Model, columns: list[list[Any]], layout: list[tuple[str, tuple[int, ...]]], source: str
) -> Gradients:
    """Reduce per-sample mpmath columns ``[loss, *grad elements]`` into a result."""
    n = len(columns[0])
    as_float = np.frompyfunc(_to_float, 1, 1)
    with np.errstate(invalid="ignore"):  # nan where the loss is undefined is reported, not warned about
        per_sample = np.asarray(as_float(np.array(columns, dtype=object)), dtype=np.float64).reshape(-1, n).T
    values: dict[str, np.ndarray] = {}
    scale: dict[str, np.ndarray] = {}
    k = 1
    for name, shape in layout:
        size = int(np.prod(shape, dtype=np.int64))
        cols = per_sample[:, k : k + size]
        if model.reduction == "none":
            values[name] = cols.reshape((n,) + shape)
            scale[name] = np.abs(values[name])
        else:
            reduced = [_to_float(_reduce_mp(columns[k + j], model.reduction)) for j in range(size)]
            values[name] = np.array(reduced, dtype=np.float64).reshape(shape)
            mags = np.abs(cols).sum(axis=0) / (n if model.reduction == "mean" else 1)
            scale[name] = mags.reshape(shape)
        k += size
    if model.reduction == "none":
        loss: Any = per_sample[:, 0]
    else:
        loss = _to_float(_reduce_mp(columns[0], model.reduction))
    return Gradients(source, values, None, loss, {"scale": scale, "per_sample_loss": per_sample[:, 0]})


def expected_gradients(model: Model, point: dict[str, np.ndarray]) -> Gradients:
    """The file's hand-derived ``expected`` gradients, evaluated exactly like ``symbolic``."""
    built = _build(model)
    exprs = [built.loss]
    layout: list[tuple[str, tuple[int, ...]]] = []
    for name, node in model.expected.items():
        shape = model.params[name].shape
        arr = np.broadcast_to(expression(model, node), shape)
        exprs.extend(arr.reshape(-1).tolist())
        layout.append((name, shape))
    rows = evaluate_exprs(model, exprs, point)
    return _collect(model, [list(col) for col in zip(*rows)], layout, "expected")
