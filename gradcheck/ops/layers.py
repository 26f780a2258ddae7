"""Layers of one sample (no batch axis), shaped as ``torch.nn.functional`` without its batch axis.

``conv1d(x, k)`` with ``x: [C_in, L]``, ``k: [C_out, C_in, K]``; ``conv2d(x, k)`` with
``x: [C_in, H, W]``, ``k: [C_out, C_in, kH, kW]`` (cross-correlation, as torch), both with
``stride=`` and ``padding=`` (an int, or a list of one int per spatial axis);
``maxpool2d(x, size)`` and ``avgpool2d(x, size)`` with ``x: [C, H, W]``, ``size`` and ``stride=``
(default: ``size``) an int or a list of two ints, no padding.

NumPy forms take any leading batch axes on both operands (samples, perturbations;
complex values for the analytic conv and average pool); torch forms flatten them
into torch's batch axis (a batched kernel becomes a grouped convolution); SymPy
forms build each output element as one ``Add`` of its window's terms; mpmath forms
work on object arrays (nan stays nan, a window's maximum is nan when any element is).
"""

from __future__ import annotations

from typing import Any

from .. import incremental as inc
from .core import DENSE, Attr, Op, Shape, ShapeError, _add  # noqa: F401  (DENSE: entries without a rule)

_INT_OR_INTS = ("int", "ints")


def _per_axis(value: Any, d: int, what: str, least: int) -> tuple[int, ...]:
    """``value`` (an int or a list of ints) as one int per spatial axis, each at least ``least``."""
    out = (int(value),) * d if isinstance(value, int) else tuple(int(v) for v in value)
    if len(out) != d:
        raise ShapeError(f"{what} needs one integer or a list of {d}, got {list(out)}")
    for v in out:
        if v < least:
            raise ShapeError(f"{what} must be at least {least}, got {v}")
    return out


def _conv_shape(d: int, name: str) -> Any:
    def rule(x: Shape, k: Shape, stride: Any = 1, padding: Any = 0) -> Shape:
        xs = "[C_in, L]" if d == 1 else "[C_in, H, W]"
        ks = "[C_out, C_in, K]" if d == 1 else "[C_out, C_in, kH, kW]"
        if len(x) != d + 1:
            raise ShapeError(f"{name} needs an input of shape {xs}, got shape {list(x)}")
        if len(k) != d + 2:
            raise ShapeError(f"{name} needs a kernel of shape {ks}, got shape {list(k)}")
        if k[1] != x[0]:
            raise ShapeError(
                f"{name}: the kernel {list(k)} takes {k[1]} input channels but the input {list(x)} has {x[0]}"
                f" (kernel axis 1 must equal input axis 0)"
            )
        s = _per_axis(stride, d, f"{name} stride=", 1)
        p = _per_axis(padding, d, f"{name} padding=", 0)
        out = []
        for size, kk, ss, pp in zip(x[1:], k[2:], s, p):
            if kk > size + 2 * pp:
                raise ShapeError(
                    f"{name}: the kernel {list(k)} is larger than the padded input"
                    f" ({kk} > {size} + 2*{pp}); use a smaller kernel or more padding="
                )
            out.append((size + 2 * pp - kk) // ss + 1)
        return (k[0],) + tuple(out)

    return rule


def _pool_shape(name: str) -> Any:
    def rule(x: Shape, size: Any = None, stride: Any = None) -> Shape:
        if size is None:
            raise ShapeError(f"{name} needs a window size: {name}(x, 2) or {name}(x, size=[2, 2])")
        if len(x) != 3:
            raise ShapeError(f"{name} needs an input of shape [C, H, W], got shape {list(x)}")
        sz = _per_axis(size, 2, f"{name} size=", 1)
        st = _per_axis(size if stride is None else stride, 2, f"{name} stride=", 1)
        out = []
        for n, kk, ss in zip(x[1:], sz, st):
            if kk > n:
                raise ShapeError(f"{name}: the window {list(sz)} is larger than the input {list(x)} ({kk} > {n})")
            out.append((n - kk) // ss + 1)
        return (x[0],) + tuple(out)

    return rule


# --- windows (NumPy and object arrays) -------------------------------------


def _pad(N: Any, x: Any, pad: tuple[int, ...], zero: Any = 0) -> Any:
    if not any(pad):
        return x
    widths = [(0, 0)] * (x.ndim - len(pad)) + [(p, p) for p in pad]
    return N.pad(x, widths, constant_values=zero)


def _windows(x: Any, kernel: tuple[int, ...], stride: tuple[int, ...]) -> Any:
    """``batch + (C, *out, *kernel)``: each output position's window over the last ``len(kernel)`` axes."""
    import numpy as np

    d = len(kernel)
    w = np.lib.stride_tricks.sliding_window_view(x, kernel, axis=tuple(range(x.ndim - d, x.ndim)))
    index = (Ellipsis,) + tuple(slice(None, None, s) for s in stride) + (slice(None),) * d
    return w[index]


def _conv_np(N: Any, x: Any, k: Any, stride: Any, padding: Any, d: int) -> Any:
    import numpy as np

    s, p = _per_axis(stride, d, "stride", 1), _per_axis(padding, d, "padding", 0)
    x, k = np.asarray(x), np.asarray(k)
    w = _windows(_pad(np, x, p), tuple(k.shape[-d:]), s)
    letters = "hw"[:d] if d == 2 else "h"
    kl = "ij"[:d] if d == 2 else "i"
    spec = f"...c{letters}{kl},...oc{kl}->...o{letters}"
    if k.ndim == d + 2:
        return np.einsum(spec, w, k, optimize=True)
    return np.einsum(spec, w, k)


def _conv_torch(T: Any, x: Any, k: Any, stride: Any, padding: Any, d: int) -> Any:
    import torch.nn.functional as F

    s, p = _per_axis(stride, d, "stride", 1), _per_axis(padding, d, "padding", 0)
    conv = F.conv1d if d == 1 else F.conv2d
    x, k = T.as_tensor(x), T.as_tensor(k)
    xb, kb = tuple(x.shape[: x.dim() - d - 1]), tuple(k.shape[: k.dim() - d - 2])
    if not kb:
        flat = x.reshape((-1,) + tuple(x.shape[x.dim() - d - 1 :]))
        out = conv(flat, k, stride=s, padding=p)
        return out.reshape(xb + tuple(out.shape[1:]))
    # A batched kernel (perturbations): one group per batch element.
    batch = tuple(T.broadcast_shapes(xb, kb))
    xs = x.expand(batch + tuple(x.shape[len(xb) :])).reshape((1, -1) + tuple(x.shape[x.dim() - d :]))
    ks = k.expand(batch + tuple(k.shape[len(kb) :])).reshape((-1,) + tuple(k.shape[k.dim() - d - 1 :]))
    groups = 1
    for b in batch:
        groups *= b
    out = conv(xs, ks, stride=s, padding=p, groups=groups)
    return out.reshape(batch + (k.shape[-d - 2],) + tuple(out.shape[2:]))


def _conv_sympy(S: Any, x: Any, k: Any, stride: Any, padding: Any, d: int) -> Any:
    """Each output element one ``Add`` of its window's products (padding adds no terms)."""
    import numpy as np

    s, p = _per_axis(stride, d, "stride", 1), _per_axis(padding, d, "padding", 0)
    x, k = np.asarray(x, dtype=object), np.asarray(k, dtype=object)
    cin, cout, ksize = x.shape[0], k.shape[0], k.shape[2:]
    out_sp = tuple((n + 2 * pp - kk) // ss + 1 for n, kk, ss, pp in zip(x.shape[1:], ksize, s, p))
    out = np.empty((cout,) + out_sp, dtype=object)
    offsets = list(np.ndindex(*ksize))
    for pos in np.ndindex(*out_sp):
        # the input positions of this window, and the kernel offsets that land inside the input
        taps = []
        for off in offsets:
            at = tuple(q * ss - pp + o for q, ss, pp, o in zip(pos, s, p, off))
            if all(0 <= a < n for a, n in zip(at, x.shape[1:])):
                taps.append((off, at))
        for o in range(cout):
            out[(o,) + pos] = _sum_of_products(
                S, [(k[(o, c) + off], x[(c,) + at]) for c in range(cin) for off, at in taps]
            )
    return out


def _sum_of_products(S: Any, pairs: list[tuple[Any, Any]]) -> Any:
    """``Add(*[a * b for a, b in pairs])``, built without SymPy's canonicalization when every factor is a symbol.

    A conv's window is a sum of products of distinct symbols (kernel element times
    input element, as the symbolic source's tape holds them): nothing for SymPy to
    collect, so its flattening and sorting (most of the cost: ~20 us a product) are
    skipped; any other factor (a number, an expression) takes the ordinary route.
    """
    if not pairs:
        return S.Integer(0)
    if all(a.is_Symbol and b.is_Symbol for a, b in pairs):  # sympy objects: the tape's symbols
        terms = [a * b if a is b else S.Mul._from_args((a, b)) for a, b in pairs]
        return terms[0] if len(terms) == 1 else S.Add._from_args(terms)
    return S.Add(*[a * b for a, b in pairs])


def _conv_mp(M: Any, x: Any, k: Any, stride: Any, padding: Any, d: int) -> Any:
    import numpy as np

    s, p = _per_axis(stride, d, "stride", 1), _per_axis(padding, d, "padding", 0)
    x, k = np.asarray(x, dtype=object), np.asarray(k, dtype=object)
    w = _windows(_pad(np, x, p, M.mpf(0)), tuple(k.shape[-d:]), s)  # batch + (C, *out, *K)
    w = w[(Ellipsis, None) + (slice(None),) * (2 * d + 1)]  # batch + (1, C, *out, *K)
    kk = k.reshape(k.shape[: k.ndim - d] + (1,) * d + tuple(k.shape[-d:]))  # batch + (O, C, 1.., *K)
    prod = w * kk  # mpmath products: nan stays nan
    axes = (-2 * d - 1,) + tuple(range(-d, 0))
    return np.asarray(prod.sum(axis=axes), dtype=object)


def _pool_args(x_shape: Any, size: Any, stride: Any) -> tuple[tuple[int, ...], tuple[int, ...]]:
    sz = _per_axis(size, 2, "size", 1)
    return sz, _per_axis(size if stride is None else stride, 2, "stride", 1)


def _flat_windows(x: Any, size: Any, stride: Any) -> Any:
    """``batch + (C, oH, oW, size*size)``."""
    sz, st = _pool_args(None, size, stride)
    w = _windows(x, sz, st)
    return w.reshape(w.shape[:-2] + (-1,))


def _maxpool_np(N: Any, x: Any, size: Any, stride: Any) -> Any:
    import numpy as np

    return _flat_windows(np.asarray(x), size, stride).max(axis=-1)


def _avgpool_np(N: Any, x: Any, size: Any, stride: Any) -> Any:
    import numpy as np

    return _flat_windows(np.asarray(x), size, stride).mean(axis=-1)


def _pool_torch(T: Any, x: Any, size: Any, stride: Any, kind: str) -> Any:
    import torch.nn.functional as F

    sz, st = _pool_args(None, size, stride)
    pool = F.max_pool2d if kind == "max" else F.avg_pool2d
    lead = tuple(x.shape[: x.dim() - 3])
    out = pool(x.reshape((-1,) + tuple(x.shape[-3:])), sz, st)
    return out.reshape(lead + tuple(out.shape[1:]))


def _pool_sympy(S: Any, x: Any, size: Any, stride: Any, kind: str) -> Any:
    import numpy as np

    w = _flat_windows(np.asarray(x, dtype=object), size, stride)
    out = np.empty(w.shape[:-1], dtype=object)
    n = S.Integer(w.shape[-1])
    for idx in np.ndindex(*out.shape):
        out[idx] = S.Max(*w[idx]) if kind == "max" else S.Add(*w[idx]) / n
    return out


def _pool_mp(M: Any, x: Any, size: Any, stride: Any, kind: str) -> Any:
    import numpy as np

    w = _flat_windows(np.asarray(x, dtype=object), size, stride)
    out = np.empty(w.shape[:-1], dtype=object)
    n = M.mpf(w.shape[-1])
    for idx in np.ndindex(*out.shape):
        vals = list(w[idx])
        if any(M.isnan(v) for v in vals):
            out[idx] = M.nan
        else:
            out[idx] = max(vals) if kind == "max" else M.fsum(vals) / n
    return out


def _maxpool_kink(N: Any, x: Any, size: Any = None, stride: Any = None) -> Any:
    """Per window element ``x_j - max(the others)``: zero where the top ties, its sign flips when the argmax moves.

    Positive at each window's maximum, negative elsewhere; shaped ``batch + (C, oH, oW*size*size)``
    (the output's per-sample rank, as every kink quantity: the last axis holds each window's elements in turn).
    """
    w = _flat_windows(N.asarray(x), size, stride)
    k = w.shape[-1]
    if k == 1:
        q = N.ones_like(w)
    else:
        top2 = N.sort(w, axis=-1)[..., -2:]
        first = N.argmax(w, axis=-1)[..., None]
        q = w - N.where(N.arange(k) == first, top2[..., :1], top2[..., 1:])
    return q.reshape(q.shape[:-2] + (-1,))


def _conv(name: str, d: int, doc: str) -> None:
    _add(
        Op(
            name, 2, "structural",
            lambda N, args, shapes, stride, padding: _conv_np(N, args[0], args[1], stride, padding, d),
            lambda T, args, shapes, stride, padding: _conv_torch(T, args[0], args[1], stride, padding, d),
            lambda S, args, shapes, stride, padding: _conv_sympy(S, args[0], args[1], stride, padding, d),
            lambda M, args, shapes, stride, padding: _conv_mp(M, args[0], args[1], stride, padding, d),
            _conv_shape(d, name), doc,
            incremental=inc.conv,
            attrs=(
                Attr("stride", 1, _INT_OR_INTS, "step between windows (one int, or one per axis)"),
                Attr("padding", 0, _INT_OR_INTS, "zeros added on both sides of each spatial axis"),
            ),
        )
    )  # fmt: skip


_conv(
    "conv1d", 1,
    "1-D cross-correlation as torch's `conv1d` without the batch axis: x `[C_in, L]`, k `[C_out, C_in, K]`",
)  # fmt: skip
_conv(
    "conv2d", 2,
    "2-D cross-correlation as torch's `conv2d` without the batch axis: x `[C_in, H, W]`, k `[C_out, C_in, kH, kW]`",
)  # fmt: skip

_POOL_ATTRS = (
    Attr("size", None, _INT_OR_INTS, "window size (one int, or [height, width]); also the second positional argument"),
    Attr("stride", None, _INT_OR_INTS, "step between windows (default: size)"),
)
_add(
    Op(
        "maxpool2d", 1, "structural",
        lambda N, args, shapes, size, stride: _maxpool_np(N, args[0], size, stride),
        lambda T, args, shapes, size, stride: _pool_torch(T, args[0], size, stride, "max"),
        lambda S, args, shapes, size, stride: _pool_sympy(S, args[0], size, stride, "max"),
        lambda M, args, shapes, size, stride: _pool_mp(M, args[0], size, stride, "max"),
        _pool_shape("maxpool2d"),
        "maximum over each window of x `[C, H, W]` (as torch's `max_pool2d`, no padding); `maxpool2d(x, 2)`",
        kink=lambda N, args, shapes, size, stride: _maxpool_kink(N, args[0], size, stride),
        kink_doc="where two elements tie for a window's maximum",
        convention=(
            "torch: the whole gradient to the first maximal element of the window (row-major); "
            "SymPy: Heaviside(0) = 1/2 to each tied element; central difference: the average of both sides"
        ),
        analytic=False,
        incremental=inc.pool,
        attrs=_POOL_ATTRS,
    )
)  # fmt: skip
_add(
    Op(
        "avgpool2d", 1, "structural",
        lambda N, args, shapes, size, stride: _avgpool_np(N, args[0], size, stride),
        lambda T, args, shapes, size, stride: _pool_torch(T, args[0], size, stride, "avg"),
        lambda S, args, shapes, size, stride: _pool_sympy(S, args[0], size, stride, "avg"),
        lambda M, args, shapes, size, stride: _pool_mp(M, args[0], size, stride, "avg"),
        _pool_shape("avgpool2d"),
        "mean over each window of x `[C, H, W]` (as torch's `avg_pool2d`, no padding); `avgpool2d(x, 2)`",
        incremental=inc.pool,
        attrs=_POOL_ATTRS,
    )
)  # fmt: skip
