"""The engine source: the model's IR run in a user's autodiff engine (or a user's gradient function).

An engine (:class:`gradcheck.Engine`) is an interpreter backend over the
IR. Numbers and data are computed in float64 by the NumPy backend of
:mod:`gradcheck.interp`; an op with an engine value among its operands goes
to the engine, under the key :func:`op_key` derives from the op's entry
(an infix operator's symbol, else its name). Nothing here names an op:

* ``scalar=True``: a tensor is a NumPy object array of :class:`_Scalar`
  nodes, whose Python operators call the engine's ``+ - * / ** neg``. An
  elementwise op is applied element by element (an element of numbers only
  in float64); a structural op is the op's own NumPy form run on the object
  arrays, so ``sum``, ``mean``, ``dot``, ``@``, ``.T`` and indexing come out
  built from ``+``, ``*`` and ``/``, and an op whose NumPy form needs more
  (comparisons, ``np.exp`` on objects) is refused (:func:`builds` finds which
  without calling the engine).
* ``scalar=False``: one sample at a time, every op with an engine operand
  is the engine's, called on whole tensors, its result checked for the
  node's shape.

The reduced loss is built in the engine (``+`` over samples, ``/`` by their
number for ``mean``) and ``grad`` is called once; for ``reduction: none``
once per sample, each with its own leaves. Every failure of the user's code
is a :class:`ModelError` naming the engine (and the op, and where the model
uses it).
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from .. import interp
from ..errors import ModelError, close_match
from ..model import Model
from ..ops import OPS, Op
from . import Gradients


def op_key(op: Op) -> str:
    """The key of ``op`` in an engine's ``ops``: an infix operator's symbol (``"+"``), else its name (``"neg"``, ``"tanh"``)."""
    return op.symbol if op.notation == "infix" else op.name


class _Missing(Exception):
    """The engine has no op under ``key``."""

    def __init__(self, key: str) -> None:
        self.key = key


class _Failed(Exception):
    """The engine's op ``key`` raised ``err``."""

    def __init__(self, key: str, err: Exception) -> None:
        self.key = key
        self.err = err


class _Calls:
    """Calls into the engine's ``ops`` (with ``live=False`` only checks that the op is there: probing)."""

    def __init__(self, ops: Mapping[str, Callable[..., Any]], live: bool = True) -> None:
        self.ops = ops
        self.live = live

    def __call__(self, key: str, *args: Any, **attrs: Any) -> Any:
        fn = self.ops.get(key)
        if fn is None:
            raise _Missing(key)
        if not self.live:
            return None
        try:
            return fn(*args, **attrs)
        except Exception as err:  # the engine's own failure, reported as the engine's
            raise _Failed(key, err) from err


def _raw(x: Any) -> Any:
    """What the engine receives: its own node, or a plain Python number."""
    if isinstance(x, _Scalar):
        return x.node
    return x if type(x) is int else float(x)


class _Scalar:
    """One node of a scalar engine; its operators call the engine, so NumPy object arrays of them work."""

    __slots__ = ("node", "calls")

    def __init__(self, node: Any, calls: _Calls) -> None:
        self.node = node
        self.calls = calls

    def _op(self, key: str, *xs: Any) -> _Scalar:
        return _Scalar(self.calls(key, *[_raw(x) for x in xs]), self.calls)

    def __add__(self, other: Any) -> _Scalar:
        return self._op("+", self, other)

    def __radd__(self, other: Any) -> _Scalar:
        return self._op("+", other, self)

    def __sub__(self, other: Any) -> _Scalar:
        return self._op("-", self, other)

    def __rsub__(self, other: Any) -> _Scalar:
        return self._op("-", other, self)

    def __mul__(self, other: Any) -> _Scalar:
        return self._op("*", self, other)

    def __rmul__(self, other: Any) -> _Scalar:
        return self._op("*", other, self)

    def __truediv__(self, other: Any) -> _Scalar:
        return self._op("/", self, other)

    def __rtruediv__(self, other: Any) -> _Scalar:
        return self._op("/", other, self)

    def __pow__(self, other: Any) -> _Scalar:
        return self._op("**", self, other)

    def __rpow__(self, other: Any) -> _Scalar:
        return self._op("**", other, self)

    def __neg__(self) -> _Scalar:
        return self._op("neg", self)


class _Box:
    """A whole tensor of a ``scalar=False`` engine."""

    __slots__ = ("value",)

    def __init__(self, value: Any) -> None:
        self.value = value


#: Per-sample shapes a structural op is tried on by :func:`builds` (the first its shape rule accepts).
_PROBE_SHAPES = ((3,), (2, 3), (3, 2))


def builds(engine: Any, op: Op) -> bool:
    """Whether a scalar ``engine`` can run the structural ``op``: its NumPy form built from the engine's ops.

    The form runs on object arrays of placeholder nodes whose operators only
    check that the engine has them; the engine itself is not called.
    """
    if op.kind != "structural":
        return False
    calls = _Calls(engine.ops, live=False)
    attrs = op.bind()
    for shapes in itertools.product(_PROBE_SHAPES, repeat=op.arity):
        try:
            op.shape(*shapes, **attrs)
        except Exception:
            continue
        args = [_nodes(np.zeros(s), lambda _x: None, calls) for s in shapes]
        try:
            op.numpy(np, args, list(shapes), **attrs)
        except Exception:
            return False
        return True
    return False


def _nodes(value: np.ndarray, make: Callable[[float], Any], calls: _Calls) -> Any:
    """One scalar node per element: a :class:`_Scalar` for a scalar, else an object array of them."""
    if value.ndim == 0:
        return _Scalar(make(float(value)), calls)
    out = np.empty(value.shape, dtype=object)
    for idx in np.ndindex(*value.shape):
        out[idx] = _Scalar(make(float(value[idx])), calls)
    return out


class _Runner:
    """Runs one model in one engine: the walk over the IR and the errors that name the engine."""

    def __init__(self, model: Model, engine: Any, source: str) -> None:
        self.model = model
        self.engine = engine
        self.source = source
        self.calls = _Calls(engine.ops)
        self.entry = ""

    # -- values ---------------------------------------------------------------

    def live(self, value: Any) -> bool:
        """Whether ``value`` holds engine nodes (else it is numbers: float64)."""
        if self.engine.scalar:
            return isinstance(value, _Scalar) or (isinstance(value, np.ndarray) and value.dtype == object)
        return isinstance(value, _Box)

    def leaves(self, point: Mapping[str, np.ndarray]) -> tuple[dict[str, Any], list[Any]]:
        """The parameters as engine values, and the leaves in the order ``grad`` gets them."""
        made: list[Any] = []

        def make(value: Any) -> Any:
            try:
                node = self.engine.leaf(value)
            except Exception as err:
                raise self.failed("leaf", err) from err
            made.append(node)
            return node

        env: dict[str, Any] = {}
        for name, value in point.items():
            arr = np.asarray(value, dtype=np.float64)
            env[name] = _nodes(arr, make, self.calls) if self.engine.scalar else _Box(make(arr.copy()))
        return env, made

    def sample(self, i: int) -> dict[str, Any]:
        """The data of sample ``i``: plain floats for a scalar, float64 arrays otherwise."""
        out: dict[str, Any] = {}
        for name, column in self.model.data.items():
            value = np.asarray(column[i], dtype=np.float64)
            out[name] = float(value) if value.ndim == 0 else value
        return out

    # -- the walk -------------------------------------------------------------

    def loss(self, env: dict[str, Any]) -> Any:
        values = dict(env)
        for entry, node in self.model.entries.items():
            self.entry = entry
            values[entry] = self.run(node, values)
            if entry == self.model.loss:
                break
        return values[self.model.loss]

    def run(self, node: Any, env: dict[str, Any]) -> Any:
        if node.op == "num":
            return interp.number(node, "numpy", np)
        if node.op == "name":
            name = str(node.value)
            return env[name] if name in env else interp.constant(name, "numpy", np)
        args = [self.run(a, env) for a in node.args]
        if not any(self.live(a) for a in args):
            with np.errstate(all="ignore"):
                return interp.apply(node, args, "numpy", np)
        op = OPS[node.op]
        try:
            return self.scalar_op(node, op, args) if self.engine.scalar else self.tensor_op(node, op, args)
        except _Missing as err:
            needs = "which this model uses" if err.key == op_key(op) else f"which `{op.name}` is built from"
            raise self.at(
                node,
                f"the engine {self.engine.name!r} has no op {err.key!r}, {needs}",
                f"add {err.key!r} to the engine's ops, or use only its functions: {', '.join(self.engine.functions)}",
            ) from None
        except _Failed as err:
            raise self.failed(err.key, err.err, node) from err.err
        except ModelError:
            raise
        except Exception as err:  # the op's NumPy form does not run on scalar nodes
            raise self.at(
                node,
                f"the engine {self.engine.name!r} cannot run `{op.name}`: a scalar engine builds it from "
                f"+ - * / **, which `{op.name}` is not ({type(err).__name__}: {err})",
                f"write it with operators and the engine's functions ({', '.join(self.engine.functions)})",
            ) from err

    def scalar_op(self, node: Any, op: Op, args: list[Any]) -> Any:
        if op.kind == "elementwise":
            key, attrs = op_key(op), dict(node.attrs)

            def one(*xs: Any) -> Any:
                if any(isinstance(x, _Scalar) for x in xs):
                    return _Scalar(self.calls(key, *[_raw(x) for x in xs], **attrs), self.calls)
                with np.errstate(all="ignore"):
                    return interp.apply(node, list(xs), "numpy", np)

            return np.frompyfunc(one, len(args), 1)(*args)
        objects = [a.astype(object) if isinstance(a, np.ndarray) else a for a in args]
        return op.numpy(np, objects, [a.shape for a in node.args], **op.bind(node.attrs))

    def tensor_op(self, node: Any, op: Op, args: list[Any]) -> _Box:
        key = op_key(op)
        out = self.calls(key, *[a.value if isinstance(a, _Box) else a for a in args], **dict(node.attrs))
        shape = getattr(out, "shape", None)
        got = () if shape is None else tuple(shape)
        if got != tuple(node.shape):
            raise self.at(
                node,
                f"the engine {self.engine.name!r} returned shape {list(got)} from ops[{key!r}], "
                f"where the model has shape {list(node.shape)}",
                "fix the engine's op (it gets one sample's values, without a samples axis)",
            )
        return _Box(out)

    def combine(self, key: str, a: Any, b: Any) -> Any:
        """``a key b`` of two losses (numbers stay numbers)."""
        if not (self.live(a) or self.live(b)):
            return {"+": lambda: a + b, "/": lambda: a / b}[key]()
        try:
            if self.engine.scalar:
                return _Scalar(self.calls(key, _raw(a), _raw(b)), self.calls)
            return _Box(self.calls(key, *[x.value if isinstance(x, _Box) else x for x in (a, b)]))
        except _Missing:
            raise ModelError(
                f"the engine {self.engine.name!r} has no op {key!r}, which the {self.model.reduction} over samples needs",
                fix=f"add {key!r} to the engine's ops",
            ) from None
        except _Failed as err:
            raise self.failed(err.key, err.err) from err.err

    # -- errors ---------------------------------------------------------------

    def at(self, node: Any, what: str, fix: str) -> ModelError:
        return ModelError(
            what,
            fix=fix,
            file=self.model.path,
            entry=f"model.{self.entry}",
            text=self.model.texts.get(("model", self.entry)),
            offset=node.pos,
        )

    def failed(self, key: str, err: Exception, node: Any = None) -> ModelError:
        where = "leaf" if key == "leaf" else "grad" if key == "grad" else f"ops[{key!r}]"
        what = f"the engine {self.engine.name!r} raised {type(err).__name__} in {where}: {err}"
        fix = "fix the engine (gradcheck called it as SPEC section 6 says)"
        return self.at(node, what, fix) if node is not None else ModelError(what, fix=fix, file=self.model.path)

    # -- gradients ------------------------------------------------------------

    def gradients(self, env: dict[str, Any], loss: Any, leaves: list[Any], point: Mapping[str, Any]) -> dict[str, Any]:
        """``grad(loss, leaves)``, checked, as one array per parameter."""
        shapes = {name: np.shape(value) for name, value in point.items()}
        if not self.live(loss):  # the loss does not depend on any parameter
            return {name: np.zeros(shape) for name, shape in shapes.items()}
        node = loss.node if isinstance(loss, _Scalar) else loss.value if isinstance(loss, _Box) else loss
        try:
            got = list(self.engine.grad(node, list(leaves)))
        except Exception as err:
            raise self.failed("grad", err) from err
        if len(got) != len(leaves):
            raise ModelError(
                f"the engine {self.engine.name!r} returned {len(got)} gradient(s) from grad for {len(leaves)} leaves",
                fix="return one gradient per leaf, in the order of the leaves",
            )
        out: dict[str, Any] = {}
        start = 0
        for name, shape in shapes.items():
            if self.engine.scalar:
                size = int(np.prod(shape))
                flat = [self.number(g, name) for g in got[start : start + size]]
                out[name] = np.asarray(flat, dtype=np.float64).reshape(shape)
                start += size
            else:
                out[name] = self.array(got[start], name, shape)
                start += 1
        return out

    def number(self, g: Any, name: str) -> float:
        try:
            return float(g)
        except (TypeError, ValueError):
            raise ModelError(
                f"the engine {self.engine.name!r} returned {g!r} as a gradient of {name!r}, which is not a number",
                fix="grad must return numbers for a scalar engine",
            ) from None

    def array(self, g: Any, name: str, shape: tuple[int, ...]) -> np.ndarray:
        if g is None:  # an unused leaf (torch.autograd.grad(..., allow_unused=True))
            return np.zeros(shape)
        arr = _as_array(g)
        if arr is None or arr.shape != shape:
            shown = "a value that is not numeric" if arr is None else f"shape {list(arr.shape)}"
            raise ModelError(
                f"the engine {self.engine.name!r} returned {shown} as the gradient of {name!r}, "
                f"which has shape {list(shape)}",
                fix="grad must return one array per leaf, in the leaf's shape",
            )
        return arr


def _as_array(value: Any) -> np.ndarray | None:
    """``value`` as a float64 array (tensors of any library with ``.detach()``/``.numpy()``), or None."""
    try:
        if hasattr(value, "detach"):
            value = value.detach().cpu().numpy()
        return np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError, RuntimeError):
        return None


def engine_gradients(model: Model, engine: Any, point: Mapping[str, np.ndarray], source: str) -> Gradients:
    """The gradients of the model's reduced loss (per sample for ``reduction: none``), from ``engine``."""
    run = _Runner(model, engine, source)
    n = model.n_samples
    if model.reduction == "none":
        per_sample: list[dict[str, Any]] = []
        for i in range(n):
            env, leaves = run.leaves(point)
            loss = run.loss({**env, **run.sample(i)})
            per_sample.append(run.gradients(env, loss, leaves, point))
        values = {name: np.stack([g[name] for g in per_sample]) for name in point}
        return Gradients(source, values)
    env, leaves = run.leaves(point)
    total: Any = None
    for i in range(n):
        loss = run.loss({**env, **run.sample(i)})
        total = loss if total is None else run.combine("+", total, loss)
    if model.reduction == "mean" and n > 1:
        total = run.combine("/", total, n)
    return Gradients(source, run.gradients(env, total, leaves, point))


def function_gradients(model: Model, fn: Callable[..., Any], point: Mapping[str, np.ndarray], source: str) -> Gradients:
    """The gradients ``fn(params, data)`` returns (a :func:`gradcheck.gradient_fn`), checked."""
    params = {name: np.array(value, dtype=np.float64) for name, value in point.items()}
    data = {name: np.array(column, dtype=np.float64) for name, column in model.data.items()}
    fix = "return {param: gradient of the reduced loss}, one entry per parameter in its shape"
    try:
        out = fn(params, data)
    except Exception as err:
        raise ModelError(
            f"{source} raised {type(err).__name__}: {err}", fix="fix the function passed to gradient_fn"
        ) from err
    if not isinstance(out, Mapping):
        raise ModelError(f"{source} returned {type(out).__name__}, not a dict of gradients", fix=fix)
    for name in out:
        if name not in model.params:
            guess = close_match(str(name), model.params)
            raise ModelError(
                f"{source} returned a gradient for {name!r}, which is not a parameter",
                fix=f"did you mean {guess!r}?" if guess else "parameters: " + ", ".join(model.params),
            )
    values = {}
    for name in model.params:
        if name not in out:
            raise ModelError(f"{source} returned no gradient for {name!r}", fix=fix)
        want = np.shape(point[name])
        if model.reduction == "none":
            want = (model.n_samples,) + want
        arr = _as_array(out[name])
        if arr is None or arr.shape != want:
            shown = "a value that is not numeric" if arr is None else f"shape {list(arr.shape)}"
            raise ModelError(
                f"{source} returned {shown} as the gradient of {name!r}, which should have shape {list(want)}",
                fix=fix + (" (with the samples axis first for reduction: none)" if model.reduction == "none" else ""),
            )
        values[name] = arr
    return Gradients(source, values)
