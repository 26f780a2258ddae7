"""Other engines as gradient sources: :class:`Engine` and :func:`gradient_fn` (SPEC section 6).

A value passed in ``against=`` is one of three kinds, told apart by type:
a torch loss function ``fn(params, data)`` (its torch autograd gradient joins
the comparison, :func:`gradcheck.sources.autograd.backward`), a
:class:`GradientFn` made by :func:`gradient_fn` (a hand-written gradient in
NumPy), or an :class:`Engine` (the model's own IR run in the user's autodiff
engine). This module holds the two public classes and checks what the user
gives them; running them is :mod:`gradcheck.sources.engine`. It names no op:
the keys an engine may map are derived from the op table's entries.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from .errors import ModelError, close_match


def _keys() -> dict[str, Any]:
    from .ops import OPS
    from .sources.engine import op_key

    return {op_key(op): op for op in OPS.values()}


class GradientFn:
    """A hand-written gradient joining the comparison; made by :func:`gradient_fn`."""

    def __init__(self, fn: Callable[[dict[str, Any], dict[str, Any]], Mapping[str, Any]]) -> None:
        if not callable(fn):
            raise ModelError(f"gradient_fn: {fn!r} is not callable", fix="pass fn(params, data) -> dict of gradients")
        self.fn = fn

    def __repr__(self) -> str:
        return f"gradient_fn({getattr(self.fn, '__name__', self.fn)!r})"


def gradient_fn(fn: Callable[[dict[str, Any], dict[str, Any]], Mapping[str, Any]]) -> GradientFn:
    """Mark ``fn`` as a gradient function for ``against=`` (SPEC section 6).

    ``fn(params, data)`` receives the parameters (``dict[str, ndarray]``,
    float64, the parameters' shapes) and the data columns (float64, samples
    first) and returns ``dict[str, ndarray]``: the gradient of the *reduced*
    loss (``mean`` or ``sum`` over samples, as the model says) with respect
    to every parameter, in the parameter's shape; for ``reduction: none``
    the per-sample gradients, shape ``[n_samples] + shape``. A missing or
    unknown parameter, a wrong shape, a value that is not numeric or ``fn``
    raising is a :class:`ModelError` naming the source.
    """
    return GradientFn(fn)


class Engine:
    """A user's autodiff engine that runs the model's own expressions (SPEC section 6).

    ``Engine(name, *, leaf, ops, grad, scalar=True)``:

    * ``leaf(value)`` makes a differentiable node: from a float when
      ``scalar=True``, from a float64 ndarray in the parameter's shape when
      ``scalar=False``;
    * ``ops`` maps the operators ``"+" "-" "*" "/" "**"`` (binary, as
      written) and ``"neg"`` (unary minus) and model-language function names
      (``"tanh"``, ``"relu"``, ...) to the engine's callables;
    * ``grad(loss, leaves)`` returns the gradients of the loss node with
      respect to the leaves, in the order given (numbers when
      ``scalar=True``, arrays in the leaves' shapes when ``scalar=False``).

    With ``scalar=True`` a tensor is a NumPy object array of scalar nodes,
    one leaf per parameter element; an elementwise function is applied
    element by element, and ``@``, ``.T``, indexing, ``sum``, ``mean``,
    ``dot`` are built from the engine's ``+``, ``*`` and ``/``. Data values
    reach the engine as plain floats, and what involves data and numbers
    only is computed in float64 without it.

    With ``scalar=False`` the model is run one sample at a time (no
    samples axis): ``leaf`` and every op take and give whole tensors of the
    per-sample shapes, data arrive as float64 NumPy arrays (or floats) of
    one sample, elementwise ops broadcast as NumPy does, and every op the
    model uses must be in ``ops``: the structural ones under their own name
    (``"sum"``, ``"mean"``, ``"dot"``, ``"T"``, ``"index"`` with keyword
    ``index=(i, ...)``) or symbol (``"@"``), with the op's attributes as
    keywords. Each result must have the node's per-sample shape
    (``.shape``; a scalar may have none).

    In both modes the reduced loss (``mean``/``sum`` over samples) is built
    with the engine's ``+`` (and ``/`` for the mean); for ``reduction:
    none`` every sample gets its own leaves and its own ``grad``.
    :attr:`functions` lists the model-language functions the engine can run.
    """

    def __init__(
        self,
        name: str,
        *,
        leaf: Callable[[Any], Any],
        ops: Mapping[str, Callable[..., Any]],
        grad: Callable[[Any, list[Any]], Any],
        scalar: bool = True,
    ) -> None:
        if not isinstance(name, str) or not name:
            raise ModelError(f"Engine: the name must be non-empty text, got {name!r}")
        for key, value in (("leaf", leaf), ("grad", grad)):
            if not callable(value):
                raise ModelError(f"Engine({name!r}): {key}= must be callable, got {value!r}")
        if not isinstance(ops, Mapping):
            raise ModelError(f"Engine({name!r}): ops= must be a mapping of op names to callables, got {ops!r}")
        if not isinstance(scalar, bool):
            raise ModelError(f"Engine({name!r}): scalar= must be True or False, got {scalar!r}")
        known = _keys()
        for key, fn in ops.items():
            if key not in known:
                guess = close_match(str(key), known)
                raise ModelError(
                    f"Engine({name!r}): ops has {key!r}, which is no operator or function of the model language",
                    fix=f"did you mean {guess!r}?" if guess else "keys: " + " ".join(sorted(known)),
                )
            if not callable(fn):
                raise ModelError(f"Engine({name!r}): ops[{key!r}] must be callable, got {fn!r}")
        self.name = name
        self.leaf = leaf
        self.ops = dict(ops)
        self.grad = grad
        self.scalar = scalar

    def __repr__(self) -> str:
        return f"Engine({self.name!r}, scalar={self.scalar})"

    @property
    def functions(self) -> tuple[str, ...]:
        """The model-language functions this engine can run, sorted.

        Those it has in ``ops``, and with ``scalar=True`` also the structural
        ones that can be built from the ops it has (``sum`` from ``+``,
        ``dot`` from ``+`` and ``*``, ...: found by trying each on the
        engine's op names, without calling the engine).
        """
        from .ops import FUNCTIONS
        from .sources.engine import builds

        out = [name for name, op in FUNCTIONS.items() if name in self.ops or (self.scalar and builds(self, op))]
        return tuple(sorted(out))
