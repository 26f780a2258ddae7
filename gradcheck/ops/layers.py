"""Layers of one sample (no batch axis), shaped as ``torch.nn.functional`` without its batch axis.

``conv1d(x, k)`` with ``x: [C_in, L]``, ``k: [C_out, C_in, K]``; ``conv2d(x, k)`` with
``x: [C_in, H, W]``, ``k: [C_out, C_in, kH, kW]`` (cross-correlation, as torch), both with
``stride=`` and ``padding=`` (an int, or a list of one int per spatial axis);
``maxpool2d(x, size)`` and ``avgpool2d(x, size)`` with ``x: [C, H, W]``, ``size`` and ``stride=``
(default: ``size``) an int or a list of two ints, no padding.

Their backward ops (vector-Jacobian products, for hand-derived and derived
gradients): ``conv_transpose1d/2d(g, k, stride=, padding=, size=)`` (the
gradient in x for the cotangent g; ``size`` the forward input's spatial size),
``conv1d/2d_weight(x, g, size=, stride=, padding=)`` (the gradient in the
kernel), ``maxpool2d_backward(x, g, size=, stride=)`` (g to each window's
first maximal element, as torch) and ``avgpool2d_backward(g, size=, stride=,
shape=)``.

NumPy forms take any leading batch axes on both operands (samples, perturbations;
complex values for the analytic conv and average pool); torch forms flatten them
into torch's batch axis (a batched kernel becomes a grouped convolution); SymPy
forms build each output element as one ``Add`` of its window's terms; mpmath forms
work on object arrays (nan stays nan, a window's maximum is nan when any element is).
"""

from __future__ import annotations

from typing import Any

from .. import incremental as inc
from ..errors import ModelError
from .core import DENSE, Attr, Op, Shape, ShapeError, _add

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


def _tap(offset: tuple[int, ...], stride: tuple[int, ...], n_out: tuple[int, ...]) -> tuple[Any, ...]:
    """The index of one kernel offset's input elements, one per output position (the windows' strided grid)."""
    return (Ellipsis,) + tuple(slice(o, o + ss * (n - 1) + 1, ss) for o, ss, n in zip(offset, stride, n_out))


def _dd_add_at(D: Any, out: Any, index: tuple[Any, ...], part: Any) -> None:
    """``out[index] += part`` for double-doubles (each position of one tap is written once)."""
    added = D.add(out[index], part)
    out.hi[index], out.lo[index] = added.hi, added.lo


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


def _conv_dd(D: Any, x: Any, k: Any, stride: Any, padding: Any, d: int) -> Any:
    """Double-double form: the padded input's windows (moved exactly) against the kernel, summed pairwise."""
    import numpy as np

    s, p = _per_axis(stride, d, "stride", 1), _per_axis(padding, d, "padding", 0)
    ksize = tuple(D.lift(k).shape[-d:])
    w = D.each(lambda part: _windows(_pad(np, part, p), ksize, s), x)
    letters, kl = _spatial(d)
    return D.einsum(f"...c{letters}{kl},...oc{kl}->...o{letters}", w, k)


def _avgpool_dd(D: Any, x: Any, size: Any, stride: Any) -> Any:
    """Double-double form: each window's elements summed pairwise, divided by the window's size."""
    import numpy as np

    w = D.each(lambda part: _flat_windows(np.asarray(part), size, stride), x)
    return D.div(D.total(w, [-1]), float(w.shape[-1]))


def _conv_transpose_dd(D: Any, g: Any, k: Any, stride: Any, padding: Any, size: Any, d: int) -> Any:
    """Double-double form of :func:`_conv_transpose_arr`: each kernel offset's products added into place."""
    import numpy as np

    s, p = _per_axis(stride, d, "stride", 1), _per_axis(padding, d, "padding", 0)
    g, k = D.lift(g), D.lift(k)
    lout, ksize = tuple(g.shape[-d:]), tuple(k.shape[-d:])
    length = _transpose_size(lout, ksize, s, p, size)
    sp, kl = _spatial(d)
    t = D.einsum(f"...o{sp},...oc{kl}->...c{sp}{kl}", g, k)  # batch + (C_in, *L_out, *K)
    padded = tuple(n + 2 * pp for n, pp in zip(length, p))
    out = D.DD(np.zeros(t.shape[: t.ndim - 2 * d] + padded))
    for off in np.ndindex(*ksize):
        _dd_add_at(D, out, _tap(off, s, lout), t[(Ellipsis,) + off])
    return out[(Ellipsis,) + tuple(slice(pp, pp + n) for pp, n in zip(p, length))]


def _conv_weight_dd(D: Any, x: Any, g: Any, size: Any, stride: Any, padding: Any, d: int) -> Any:
    """Double-double form of :func:`_conv_weight_arr`: g against each window of the padded input."""
    import numpy as np

    s, p, kz = _per_axis(stride, d, "stride", 1), _per_axis(padding, d, "padding", 0), _per_axis(size, d, "size", 1)
    w = D.each(lambda part: _windows(_pad(np, part, p), kz, s), x)  # batch + (C_in, *L_out, *K)
    sp, kl = _spatial(d)
    return D.einsum(f"...o{sp},...c{sp}{kl}->...oc{kl}", g, w)


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


def _maxpool_dd_vjp(D: Any, x: Any, g: Any, size: Any, stride: Any) -> Any:
    """The cotangent in x as SymPy differentiates each window's ``Max``: ``Heaviside(x_i - Max(others))``.

    So the window's one maximum takes g, and at a tie each tied element
    takes half of it (SymPy's ``Heaviside(0) = 1/2``); overlapping windows
    add up. Comparisons are exact on the double-doubles (high parts, then low).
    """
    import numpy as np

    sz, st = _pool_args(None, size, stride)
    x, g = D.lift(x), D.lift(g)
    hi, lo = np.broadcast_arrays(x.hi, x.lo)
    share = D.max_share(_flat_windows(hi, size, stride), _flat_windows(lo, size, stride))  # batch + (C, oH, oW, k)
    parts = D.mul(D.DD(g.hi[..., None], g.lo[..., None]), share)  # batch + (C, oH, oW, k)
    n_out = tuple(parts.shape[-3:-1])
    batch = parts.shape[: parts.ndim - 4]
    out = D.DD(np.zeros(tuple(batch) + tuple(hi.shape[-3:])))
    for i, j in np.ndindex(*sz):
        _dd_add_at(D, out, _tap((i, j), st, n_out), parts[..., i * sz[1] + j])
    return out


def _window_elements(x: Any, size: Any, stride: Any) -> list[Any]:
    """Each window element in turn (row-major in the window): ``kH*kW`` strided views ``batch + (C, oH, oW)``.

    What :func:`_flat_windows` holds along its last axis, without the copy its reshape makes.
    """
    sz, st = _pool_args(None, size, stride)
    oh, ow = (x.shape[-2] - sz[0]) // st[0] + 1, (x.shape[-1] - sz[1]) // st[1] + 1
    return [
        x[..., i : i + st[0] * (oh - 1) + 1 : st[0], j : j + st[1] * (ow - 1) + 1 : st[1]]
        for i in range(sz[0])
        for j in range(sz[1])
    ]


def _maxpool_np(N: Any, x: Any, size: Any, stride: Any) -> Any:
    import numpy as np

    parts = _window_elements(np.asarray(x), size, stride)
    out = parts[0].copy() if len(parts) == 1 else np.maximum(parts[0], parts[1])
    for part in parts[2:]:
        np.maximum(out, part, out=out)
    return out


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

    Positive at each window's maximum, negative elsewhere; shaped ``batch + (C, size*size, oH*oW)``
    (the input's per-sample rank with the channel axis first, as every kink quantity of a pooling: the
    middle axis is the element of the window, the last the window). The maximum of the others is the
    larger of the running maxima before and after ``j`` (a nan anywhere in a window makes all its
    quantities nan).
    """
    parts = _window_elements(N.asarray(x), size, stride)
    k = len(parts)
    shape = tuple(parts[0].shape)  # batch + (C, oH, oW)
    if k == 1:
        return N.ones_like(parts[0]).reshape(shape[:-2] + (1, -1))
    elems = N.empty((k,) + shape, dtype=N.result_type(parts[0]))  # each element contiguous: fast maxima
    for j, part in enumerate(parts):
        elems[j] = part
    before = [elems[0]]  # before[j]: max of elements 0..j
    for j in range(1, k - 1):
        before.append(N.maximum(before[-1], elems[j]))
    after = [elems[k - 1]]  # after[i]: max of elements k-1-i..k-1
    for j in range(k - 2, 0, -1):
        after.append(N.maximum(after[-1], elems[j]))
    q = N.empty_like(elems)  # (k,) + batch + (C, oH, oW), then viewed with the element axis after C
    N.subtract(elems[0], after[k - 2], out=q[0])
    N.subtract(elems[k - 1], before[k - 2], out=q[k - 1])
    for j in range(1, k - 1):
        N.subtract(elems[j], N.maximum(before[j - 1], after[k - 2 - j]), out=q[j])
    return N.moveaxis(q, 0, -3).reshape(shape[:-2] + (k, -1))


# --- vector-Jacobian rules (model-language templates, see ``Op.vjp``) ----------------------


def _lit(value: Any) -> str:
    """An attribute value as the language writes it: ``2`` or ``[2, 1]``."""
    return f"[{', '.join(map(str, value))}]" if isinstance(value, (tuple, list)) else str(value)


def _spatial_size(shape: Shape, d: int) -> str:
    """The last ``d`` axes of ``shape`` as a ``size=`` value (one int for one axis)."""
    return _lit(shape[-1] if d == 1 else tuple(shape[-d:]))


def _conv_kw(stride: Any, padding: Any) -> str:
    """``, stride=..., padding=...`` for the attributes that differ from their defaults (1 and 0)."""
    out = ""
    if any(v != 1 for v in ((stride,) if isinstance(stride, int) else stride)):
        out += f", stride={_lit(stride)}"
    if any(v != 0 for v in ((padding,) if isinstance(padding, int) else padding)):
        out += f", padding={_lit(padding)}"
    return out


def _conv_vjp(d: int) -> Any:
    """``conv(x, k)``: in x the transposed conv of g, in k the conv of x with g (the kernel's gradient)."""

    def rule(shapes: list[Shape], out: Shape, stride: Any = 1, padding: Any = 0) -> tuple[str, str]:
        kw = _conv_kw(stride, padding)
        return (
            f"conv_transpose{d}d(g, b{kw}, size={_spatial_size(shapes[0], d)})",
            f"conv{d}d_weight(a, g, size={_spatial_size(shapes[1], d)}{kw})",
        )

    return rule


def _conv_transpose_vjp(d: int) -> Any:
    """``conv_transpose(g, k)`` is linear in each: the adjoint of a transposed conv is the conv."""

    def rule(shapes: list[Shape], out: Shape, stride: Any = 1, padding: Any = 0, size: Any = None) -> tuple[str, str]:
        kw = _conv_kw(stride, padding)
        return f"conv{d}d(g, b{kw})", f"conv{d}d_weight(g, a, size={_spatial_size(shapes[1], d)}{kw})"

    return rule


def _conv_weight_vjp(d: int) -> Any:
    """``conv_weight(x, g)``: ``sum(G * conv_weight(x, g))`` is ``sum(g * conv(x, G))``."""

    def rule(shapes: list[Shape], out: Shape, size: Any = None, stride: Any = 1, padding: Any = 0) -> tuple[str, str]:
        kw = _conv_kw(stride, padding)
        return f"conv_transpose{d}d(b, g{kw}, size={_spatial_size(shapes[0], d)})", f"conv{d}d(a, g{kw})"

    return rule


def _pool_kw(size: Any, stride: Any) -> str:
    return f"size={_lit(size)}" + ("" if stride is None else f", stride={_lit(stride)}")


def _maxpool_backward_vjp(shapes: list[Shape], out: Shape, size: Any = None, stride: Any = None) -> tuple[Any, str]:
    """In x: 0 (piecewise constant); in g: the cotangent at each window's first maximal element.

    That gather is written for windows that do not overlap (``stride`` = ``size``):
    the argmax mask ``maxpool2d_backward(a, 1)`` times the cotangent, summed over
    each window (``avgpool2d`` times the window's size). Overlapping windows have
    no rule: a clear error, never a wrong formula.
    """
    sz, st = _pool_args(None, size, stride)
    if sz != st:
        raise ModelError(
            f"no tensor-form rule for maxpool2d_backward with overlapping windows (size={list(sz)}, stride={list(st)})",
            fix="Model.gradient_formula(name) gives SymPy's formula for each element",
        )
    ones = f"expand(1, shape={_lit(tuple(shapes[1]))})"
    kw = _pool_kw(size, stride)
    return None, f"{sz[0] * sz[1]} * avgpool2d(g * maxpool2d_backward(a, {ones}, {kw}), {kw})"


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
            vjp=_conv_vjp(d),
            dd=lambda D, args, shapes, stride, padding: _conv_dd(D, args[0], args[1], stride, padding, d),
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
        vjp=lambda shapes, out, size=None, stride=None: (f"maxpool2d_backward(a, g, {_pool_kw(size, stride)})",),
        convention=(
            "torch: the whole gradient to the first maximal element of the window (row-major); "
            "SymPy: Heaviside(0) = 1/2 to each tied element; central difference: the average of both sides"
        ),
        analytic=False,
        incremental=inc.pool,
        attrs=_POOL_ATTRS,
        dd=lambda D, args, shapes, size, stride: D.top(D.each(lambda part: _flat_windows(part, size, stride), args[0])),
        dd_vjp=lambda D, args, g, shapes, size, stride: _maxpool_dd_vjp(D, args[0], g, size, stride),
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
        vjp=lambda shapes, out, size=None, stride=None: (
            f"avgpool2d_backward(g, {_pool_kw(size, stride)}, shape={_lit(tuple(shapes[0]))})",
        ),
        dd=lambda D, args, shapes, size, stride: _avgpool_dd(D, args[0], size, stride),
        attrs=_POOL_ATTRS,
    )
)  # fmt: skip


# --- backward ops: the layers' vector-Jacobian products --------------------------
#
# conv_transposeNd(g, k) is d conv(x, k) / dx applied to the cotangent g,
# convNd_weight(x, g) is d conv(x, k) / dk applied to g, and the pools' backward ops
# route g back to the input's windows. Each is linear in g (bilinear in g and the
# kernel or input for the convs) and takes the sizes the forward op had as attributes.


def _transpose_least(lout: Shape, ksize: Shape, s: Shape, p: Shape) -> tuple[int, ...]:
    """The smallest input length per axis whose conv (kernel ``ksize``, stride, padding) has ``lout`` positions."""
    return tuple((n - 1) * ss - 2 * pp + kk for n, kk, ss, pp in zip(lout, ksize, s, p))


def _transpose_shape(d: int, name: str) -> Any:
    conv = f"conv{d}d"

    def rule(g: Shape, k: Shape, stride: Any = 1, padding: Any = 0, size: Any = None) -> Shape:
        gs = "[C_out, L_out]" if d == 1 else "[C_out, H_out, W_out]"
        ks = "[C_out, C_in, K]" if d == 1 else "[C_out, C_in, kH, kW]"
        if len(g) != d + 1:
            raise ShapeError(f"{name} needs a cotangent g of shape {gs}, got shape {list(g)}")
        if len(k) != d + 2:
            raise ShapeError(f"{name} needs the forward {conv}'s kernel, of shape {ks}, got shape {list(k)}")
        if k[0] != g[0]:
            raise ShapeError(
                f"{name}: the kernel {list(k)} has {k[0]} output channels but g {list(g)} has {g[0]}"
                f" (kernel axis 0 must equal g's axis 0)"
            )
        s = _per_axis(stride, d, f"{name} stride=", 1)
        p = _per_axis(padding, d, f"{name} padding=", 0)
        least = _transpose_least(g[1:], k[2:], s, p)
        if size is None:
            if any(n < 1 for n in least):
                raise ShapeError(
                    f"{name}: padding={list(p)} leaves no input of g's {list(g[1:])} positions"
                    f" (smallest length {list(least)})",
                    fix="use less padding=, or give the forward input's size=",
                )
            return (k[1],) + least
        sz = _per_axis(size, d, f"{name} size=", 1)
        for n, want, lo, kk, ss, pp in zip(g[1:], sz, least, k[2:], s, p):
            if not lo <= want < lo + ss:
                got = (want + 2 * pp - kk) // ss + 1 if want + 2 * pp >= kk else 0
                span = (
                    f"{max(lo, 1)}" if ss == 1 or lo + ss - 1 <= max(lo, 1) else f"from {max(lo, 1)} to {lo + ss - 1}"
                )
                raise ShapeError(
                    f"{name}: size={list(sz)} does not fit g {list(g)}: {conv} of an input of length {want}"
                    f" (kernel {kk}, stride {ss}, padding {pp}) has {got} positions, not {n}",
                    fix=f"size= is the forward input's spatial size: here {span}",
                )
        return (k[1],) + sz

    return rule


def _weight_shape(d: int, name: str) -> Any:
    conv = f"conv{d}d"

    def rule(x: Shape, g: Shape, size: Any = None, stride: Any = 1, padding: Any = 0) -> Shape:
        xs = "[C_in, L]" if d == 1 else "[C_in, H, W]"
        gs = "[C_out, L_out]" if d == 1 else "[C_out, H_out, W_out]"
        if size is None:
            example = "3" if d == 1 else "[3, 3]"
            raise ShapeError(
                f"{name} needs the kernel's size: {name}(x, g, size={example})",
                fix="size= is the forward kernel's spatial size",
            )
        if len(x) != d + 1:
            raise ShapeError(f"{name} needs the forward input x, of shape {xs}, got shape {list(x)}")
        if len(g) != d + 1:
            raise ShapeError(f"{name} needs a cotangent g of shape {gs}, got shape {list(g)}")
        kz = _per_axis(size, d, f"{name} size=", 1)
        s = _per_axis(stride, d, f"{name} stride=", 1)
        p = _per_axis(padding, d, f"{name} padding=", 0)
        out = []
        for n, kk, ss, pp in zip(x[1:], kz, s, p):
            if kk > n + 2 * pp:
                raise ShapeError(
                    f"{name}: the kernel size {list(kz)} is larger than the padded input x {list(x)}"
                    f" ({kk} > {n} + 2*{pp}); use a smaller size= or more padding="
                )
            out.append((n + 2 * pp - kk) // ss + 1)
        if tuple(out) != tuple(g[1:]):
            raise ShapeError(
                f"{name}: g {list(g)} does not fit x {list(x)}: {conv} of x with a kernel of size {list(kz)},"
                f" stride={list(s)}, padding={list(p)} has {out} positions, g has {list(g[1:])}",
                fix=f"g is the cotangent of {conv}(x, k, ...)'s output: give the forward conv's size=, stride= and padding=",
            )
        return (g[0], x[0]) + kz

    return rule


def _maxpool_backward_shape(x: Shape, g: Shape, size: Any = None, stride: Any = None) -> Shape:
    name = "maxpool2d_backward"
    if size is None:
        raise ShapeError(f"{name} needs a window size: {name}(x, g, 2) or {name}(x, g, size=[2, 2])")
    out = _pool_shape(name)(x, size, stride)
    if tuple(g) != out:
        raise ShapeError(
            f"{name}: g has shape {list(g)} but maxpool2d of x {list(x)} has shape {list(out)}",
            fix="g is the cotangent of maxpool2d(x, ...)'s output: give the forward pool's size= and stride=",
        )
    return tuple(x)


def _avgpool_backward_shape(g: Shape, size: Any = None, stride: Any = None, shape: Any = None) -> Shape:
    name = "avgpool2d_backward"
    if size is None:
        raise ShapeError(f"{name} needs a window size: {name}(g, 2, shape=[C, H, W])")
    if shape is None:
        raise ShapeError(
            f"{name} needs the forward input's shape: {name}(g, 2, shape=[C, H, W])",
            fix="shape= is the shape of x in avgpool2d(x, ...)",
        )
    if len(shape) != 3 or any(n < 1 for n in shape):
        raise ShapeError(f"{name} shape= must be the forward input's [C, H, W], got {list(shape)}")
    if len(g) != 3:
        raise ShapeError(f"{name} needs a cotangent g of shape [C, H_out, W_out], got shape {list(g)}")
    out = _pool_shape(name)(tuple(shape), size, stride)
    if tuple(g) != out:
        raise ShapeError(
            f"{name}: g has shape {list(g)} but avgpool2d of an input of shape {list(shape)} has shape {list(out)}",
            fix="g is the cotangent of avgpool2d(x, ...)'s output: give the forward pool's size=, stride= and x's shape=",
        )
    return tuple(shape)


def _transpose_size(lout: Shape, ksize: Shape, s: Shape, p: Shape, size: Any) -> tuple[int, ...]:
    if size is None:
        return _transpose_least(lout, ksize, s, p)
    return _per_axis(size, len(lout), "size", 1)


def _einsum(spec: str, a: Any, b: Any) -> Any:
    """NumPy's ``einsum`` on numbers or object arrays (mpmath: no path optimisation there)."""
    import numpy as np

    if a.dtype == object or b.dtype == object:
        return np.asarray(np.einsum(spec, a, b), dtype=object)
    return np.einsum(spec, a, b, optimize=True)


def _blank(N: Any, shape: tuple[int, ...], dtype: Any, zero: Any) -> Any:
    """Zeros of ``shape``: of ``dtype``, or an object array of ``zero`` (an mpmath 0) when ``zero`` is given."""
    if zero is None:
        return N.zeros(shape, dtype=dtype)
    return N.full(shape, zero, dtype=object)


def _spatial(d: int) -> tuple[str, str]:
    return ("h", "i") if d == 1 else ("hw", "ij")


def _conv_transpose_arr(g: Any, k: Any, stride: Any, padding: Any, size: Any, d: int, zero: Any = None) -> Any:
    """NumPy (``zero`` None) or mpmath (``zero`` an mpmath 0) form: each window's products added back into it."""
    import numpy as np

    s, p = _per_axis(stride, d, "stride", 1), _per_axis(padding, d, "padding", 0)
    g, k = np.asarray(g), np.asarray(k)
    lout, ksize = tuple(g.shape[-d:]), tuple(k.shape[-d:])
    length = _transpose_size(lout, ksize, s, p, size)
    sp, kl = _spatial(d)
    t = _einsum(f"...o{sp},...oc{kl}->...c{sp}{kl}", g, k)  # batch + (C_in, *L_out, *K)
    padded = tuple(n + 2 * pp for n, pp in zip(length, p))
    out = _blank(np, t.shape[: t.ndim - 2 * d] + padded, t.dtype, zero)
    for off in np.ndindex(*ksize):
        out[_tap(off, s, lout)] += t[(Ellipsis,) + off]
    return out[(Ellipsis,) + tuple(slice(pp, pp + n) for pp, n in zip(p, length))]


def _conv_transpose_torch(T: Any, g: Any, k: Any, stride: Any, padding: Any, size: Any, d: int) -> Any:
    """torch's ``conv_transpose`` with the ``output_padding`` that gives ``size``; a batched kernel as groups."""
    import torch.nn.functional as F

    s, p = _per_axis(stride, d, "stride", 1), _per_axis(padding, d, "padding", 0)
    g, k = T.as_tensor(g), T.as_tensor(k)
    lout, ksize = tuple(g.shape[-d:]), tuple(k.shape[-d:])
    length = _transpose_size(lout, ksize, s, p, size)
    extra = tuple(n - lo for n, lo in zip(length, _transpose_least(lout, ksize, s, p)))
    conv = F.conv_transpose1d if d == 1 else F.conv_transpose2d
    gb, kb = tuple(g.shape[: g.dim() - d - 1]), tuple(k.shape[: k.dim() - d - 2])
    if not kb:
        flat = g.reshape((-1,) + tuple(g.shape[g.dim() - d - 1 :]))
        out = conv(flat, k, stride=s, padding=p, output_padding=extra)
        return out.reshape(gb + tuple(out.shape[1:]))
    # A batched kernel (perturbations): one group per batch element.
    batch = tuple(T.broadcast_shapes(gb, kb))
    groups = 1
    for b in batch:
        groups *= b
    gs = g.expand(batch + tuple(g.shape[len(gb) :])).reshape((1, -1) + lout)
    ks = k.expand(batch + tuple(k.shape[len(kb) :])).reshape((-1,) + tuple(k.shape[k.dim() - d - 1 :]))
    out = conv(gs, ks, stride=s, padding=p, output_padding=extra, groups=groups)
    return out.reshape(batch + (k.shape[-d - 1],) + length)


def _conv_transpose_sympy(S: Any, g: Any, k: Any, stride: Any, padding: Any, size: Any, d: int) -> Any:
    """Each input element one ``Add`` of the products of the windows that cover it."""
    import numpy as np

    s, p = _per_axis(stride, d, "stride", 1), _per_axis(padding, d, "padding", 0)
    g, k = np.asarray(g, dtype=object), np.asarray(k, dtype=object)
    lout, ksize = tuple(g.shape[1:]), tuple(k.shape[2:])
    length = _transpose_size(lout, ksize, s, p, size)
    taps: dict[tuple[int, ...], list[tuple[tuple[int, ...], tuple[int, ...]]]] = {}
    for pos in np.ndindex(*lout):
        for off in np.ndindex(*ksize):
            at = tuple(q * ss - pp + o for q, ss, pp, o in zip(pos, s, p, off))
            if all(0 <= a < n for a, n in zip(at, length)):
                taps.setdefault(at, []).append((pos, off))
    cout, cin = k.shape[0], k.shape[1]
    out = np.empty((cin,) + length, dtype=object)
    for at in np.ndindex(*length):
        for c in range(cin):
            pairs = [(k[(o, c) + off], g[(o,) + pos]) for o in range(cout) for pos, off in taps.get(at, ())]
            out[(c,) + at] = _sum_of_products(S, pairs)
    return out


def _conv_weight_arr(x: Any, g: Any, size: Any, stride: Any, padding: Any, d: int, zero: Any = None) -> Any:
    """NumPy (``zero`` None) or mpmath (``zero`` an mpmath 0) form: g against each window of the padded input."""
    import numpy as np

    s, p, kz = _per_axis(stride, d, "stride", 1), _per_axis(padding, d, "padding", 0), _per_axis(size, d, "size", 1)
    x, g = np.asarray(x), np.asarray(g)
    w = _windows(_pad(np, x, p, 0 if zero is None else zero), kz, s)  # batch + (C_in, *L_out, *K)
    sp, kl = _spatial(d)
    return _einsum(f"...o{sp},...c{sp}{kl}->...oc{kl}", g, w)


def _conv_weight_torch(T: Any, x: Any, g: Any, size: Any, stride: Any, padding: Any, d: int) -> Any:
    """g against each window of the padded input (``unfold``), per sample: torch's ``conv_weight`` without its sum over the batch."""
    import torch.nn.functional as F

    s, p, kz = _per_axis(stride, d, "stride", 1), _per_axis(padding, d, "padding", 0), _per_axis(size, d, "size", 1)
    x, g = T.as_tensor(x), T.as_tensor(g)
    if any(p):
        x = F.pad(x, tuple(v for pp in reversed(p) for v in (pp, pp)))
    w = x
    for axis in range(d):  # batch + (C_in, *L_out, *K)
        w = w.unfold(x.dim() - d + axis, kz[axis], s[axis])
    sp, kl = _spatial(d)
    return T.einsum(f"...o{sp},...c{sp}{kl}->...oc{kl}", g, w)


def _conv_weight_sympy(S: Any, x: Any, g: Any, size: Any, stride: Any, padding: Any, d: int) -> Any:
    """Each kernel element one ``Add``: g times the input elements that kernel element meets."""
    import numpy as np

    s, p, kz = _per_axis(stride, d, "stride", 1), _per_axis(padding, d, "padding", 0), _per_axis(size, d, "size", 1)
    x, g = np.asarray(x, dtype=object), np.asarray(g, dtype=object)
    lout = tuple(g.shape[1:])
    cout, cin = g.shape[0], x.shape[0]
    out = np.empty((cout, cin) + kz, dtype=object)
    for off in np.ndindex(*kz):
        taps = []
        for pos in np.ndindex(*lout):
            at = tuple(q * ss - pp + o for q, ss, pp, o in zip(pos, s, p, off))
            if all(0 <= a < n for a, n in zip(at, x.shape[1:])):
                taps.append((pos, at))
        for o in range(cout):
            for c in range(cin):
                out[(o, c) + off] = _sum_of_products(S, [(g[(o,) + pos], x[(c,) + at]) for pos, at in taps])
    return out


def _scatter_windows(out: Any, parts: Any, size: tuple[int, ...], stride: tuple[int, ...], n_out: Shape) -> Any:
    """Add ``parts`` (``batch + (C, oH, oW, kH, kW)``, or ``(C, oH, oW)`` for every window element) into ``out``'s windows."""
    for i in range(size[0]):
        for j in range(size[1]):
            out[_tap((i, j), stride, n_out)] += parts if parts.ndim == out.ndim else parts[..., i, j]
    return out


def _batched(x: Any, g: Any, rank: int = 3) -> tuple[Any, Any, tuple[int, ...]]:
    """``x`` and ``g`` broadcast to their common batch axes (the last ``rank`` axes are each one's own)."""
    import numpy as np

    batch = tuple(np.broadcast_shapes(x.shape[: x.ndim - rank], g.shape[: g.ndim - rank]))
    return (
        np.broadcast_to(x, batch + tuple(x.shape[x.ndim - rank :])),
        np.broadcast_to(g, batch + tuple(g.shape[g.ndim - rank :])),
        batch,
    )


def _maxpool_backward_kink(N: Any, x: Any, g: Any, size: Any, stride: Any) -> Any:
    """maxpool2d's kink quantity of x, with the batch axes of x and g both (a perturbation of g alone moves no kink)."""
    q = _maxpool_kink(N, x, size, stride)
    g = N.asarray(g)
    batch = tuple(N.broadcast_shapes(q.shape[: q.ndim - 3], g.shape[: g.ndim - 3]))
    return N.broadcast_to(q, batch + tuple(q.shape[-3:]))


def _maxpool_backward_np(N: Any, x: Any, g: Any, size: Any, stride: Any) -> Any:
    """g routed to the first maximal element (row-major) of each window, as torch; a window with a nan: nan to each element."""
    import numpy as np

    sz, st = _pool_args(None, size, stride)
    x, g, _ = _batched(np.asarray(x), np.asarray(g))
    w = _flat_windows(x, sz, st)  # batch + (C, oH, oW, kH*kW)
    first = np.argmax(w, axis=-1)[..., None]
    parts = np.where(np.arange(w.shape[-1]) == first, g[..., None], 0)
    parts = np.where(np.isnan(w).any(axis=-1, keepdims=True), np.nan, parts)  # no maximum: nan to the window
    parts = parts.reshape(parts.shape[:-1] + sz)
    out = np.zeros(x.shape, dtype=np.result_type(g.dtype, np.float64))
    return _scatter_windows(out, parts, sz, st, tuple(g.shape[-2:]))


def _maxpool_backward_torch(T: Any, x: Any, g: Any, size: Any, stride: Any) -> Any:
    """torch's own ``max_pool2d`` backward (``max_pool2d_with_indices_backward``), so its double backward too."""
    import torch.nn.functional as F

    sz, st = _pool_args(None, size, stride)
    x, g = T.as_tensor(x), T.as_tensor(g)
    dtype = T.promote_types(x.dtype, g.dtype)
    x, g = x.to(dtype), g.to(dtype)
    batch = tuple(T.broadcast_shapes(tuple(x.shape[:-3]), tuple(g.shape[:-3])))
    xs = x.expand(batch + tuple(x.shape[-3:])).reshape((-1,) + tuple(x.shape[-3:]))
    gs = g.expand(batch + tuple(g.shape[-3:])).reshape((-1,) + tuple(g.shape[-3:]))
    _, idx = F.max_pool2d(xs.detach(), sz, st, return_indices=True)
    out = T.ops.aten.max_pool2d_with_indices_backward(gs, xs, list(sz), list(st), [0, 0], [1, 1], False, idx)
    return out.reshape(batch + tuple(x.shape[-3:]))


def _maxpool_backward_sympy(S: Any, x: Any, g: Any, size: Any, stride: Any) -> Any:
    """Each element of x: the sum of g over the windows where it is the first maximal element.

    "First maximal" is ``x_j > x_i`` for the elements before it (row-major) and
    ``x_j >= x_i`` for those after it, written with the comparisons' flat SymPy
    functions (derivative 0), so the value at a tie is torch's.
    """
    import numpy as np

    from .logic import _flat

    sz, st = _pool_args(None, size, stride)
    x, g = np.asarray(x, dtype=object), np.asarray(g, dtype=object)
    positive, nonnegative = _flat(S)["positive"], _flat(S)["nonnegative"]
    terms: dict[tuple[int, ...], list[Any]] = {}
    for c, oh, ow in np.ndindex(*g.shape):
        at = [(c, oh * st[0] + i, ow * st[1] + j) for i, j in np.ndindex(*sz)]
        for j, here in enumerate(at):
            factors = [positive(x[here] - x[other]) for other in at[:j]]
            factors += [nonnegative(x[here] - x[other]) for other in at[j + 1 :]]
            terms.setdefault(here, []).append(S.Mul(g[c, oh, ow], *factors))
    out = np.empty(x.shape, dtype=object)
    for idx in np.ndindex(*x.shape):
        out[idx] = S.Add(*terms.get(idx, ()))
    return out


def _maxpool_backward_mp(M: Any, x: Any, g: Any, size: Any, stride: Any) -> Any:
    """As the NumPy form; a window with a nan in x sends nan to each of its elements."""
    import numpy as np

    sz, st = _pool_args(None, size, stride)
    x, g, _ = _batched(np.asarray(x, dtype=object), np.asarray(g, dtype=object))
    out = np.full(x.shape, M.mpf(0), dtype=object)
    for idx in np.ndindex(*g.shape):
        *b, c, oh, ow = idx
        at = [tuple(b) + (c, oh * st[0] + i, ow * st[1] + j) for i, j in np.ndindex(*sz)]
        vals = [x[a] for a in at]
        if any(M.isnan(v) for v in vals):
            for a in at:
                out[a] = M.nan
            continue
        first = max(range(len(vals)), key=lambda i: (vals[i], -i))
        out[at[first]] = out[at[first]] + g[idx]
    return out


def _avgpool_backward_arr(g: Any, size: Any, stride: Any, shape: Any, zero: Any = None) -> Any:
    """NumPy (``zero`` None) or mpmath (``zero`` an mpmath 0) form: g / window size into each window."""
    import numpy as np

    sz, st = _pool_args(None, size, stride)
    g = np.asarray(g)
    out = _blank(np, g.shape[:-3] + tuple(shape), np.result_type(g.dtype, np.float64), zero)
    out = _scatter_windows(out, g, sz, st, tuple(g.shape[-2:]))
    return out / (sz[0] * sz[1] if zero is None else zero + sz[0] * sz[1])


def _avgpool_backward_torch(T: Any, g: Any, size: Any, stride: Any, shape: Any) -> Any:
    """torch's own ``avg_pool2d`` backward (``avg_pool2d_backward``), so its double backward too."""
    sz, st = _pool_args(None, size, stride)
    g = T.as_tensor(g)
    gs = g.reshape((-1,) + tuple(g.shape[-3:]))
    like = gs.new_zeros((gs.shape[0],) + tuple(shape))
    out = T.ops.aten.avg_pool2d_backward(gs, like, list(sz), list(st), [0, 0], False, True, None)
    return out.reshape(tuple(g.shape[:-3]) + tuple(shape))


def _avgpool_backward_sympy(S: Any, g: Any, size: Any, stride: Any, shape: Any) -> Any:
    import numpy as np

    sz, st = _pool_args(None, size, stride)
    g = np.asarray(g, dtype=object)
    terms: dict[tuple[int, ...], list[Any]] = {}
    for c, oh, ow in np.ndindex(*g.shape):
        for i, j in np.ndindex(*sz):
            terms.setdefault((c, oh * st[0] + i, ow * st[1] + j), []).append(g[c, oh, ow])
    n = S.Integer(sz[0] * sz[1])
    out = np.empty(tuple(shape), dtype=object)
    for idx in np.ndindex(*out.shape):
        out[idx] = S.Add(*terms.get(idx, ())) / n
    return out


_STRIDE = Attr("stride", 1, _INT_OR_INTS, "the forward conv's stride")
_PADDING = Attr("padding", 0, _INT_OR_INTS, "the forward conv's padding")


def _conv_transpose(name: str, d: int, doc: str) -> None:
    _add(
        Op(
            name, 2, "structural",
            lambda N, args, shapes, stride, padding, size: _conv_transpose_arr(args[0], args[1], stride, padding, size, d),
            lambda T, args, shapes, stride, padding, size: _conv_transpose_torch(T, args[0], args[1], stride, padding, size, d),
            lambda S, args, shapes, stride, padding, size: _conv_transpose_sympy(S, args[0], args[1], stride, padding, size, d),
            lambda M, args, shapes, stride, padding, size: _conv_transpose_arr(args[0], args[1], stride, padding, size, d, M.mpf(0)),
            _transpose_shape(d, name), doc,
            incremental=DENSE,
            vjp=_conv_transpose_vjp(d),
            dd=lambda D, args, shapes, stride, padding, size: _conv_transpose_dd(D, args[0], args[1], stride, padding, size, d),
            attrs=(
                _STRIDE, _PADDING,
                Attr("size", None, _INT_OR_INTS, "the forward input's spatial size (default: the smallest that fits g)"),
            ),
        )
    )  # fmt: skip


def _conv_weight(name: str, d: int, doc: str) -> None:
    _add(
        Op(
            name, 2, "structural",
            lambda N, args, shapes, size, stride, padding: _conv_weight_arr(args[0], args[1], size, stride, padding, d),
            lambda T, args, shapes, size, stride, padding: _conv_weight_torch(T, args[0], args[1], size, stride, padding, d),
            lambda S, args, shapes, size, stride, padding: _conv_weight_sympy(S, args[0], args[1], size, stride, padding, d),
            lambda M, args, shapes, size, stride, padding: _conv_weight_arr(args[0], args[1], size, stride, padding, d, M.mpf(0)),
            _weight_shape(d, name), doc,
            incremental=DENSE,
            vjp=_conv_weight_vjp(d),
            dd=lambda D, args, shapes, size, stride, padding: _conv_weight_dd(D, args[0], args[1], size, stride, padding, d),
            attrs=(
                Attr("size", None, _INT_OR_INTS, "the kernel's spatial size (required); also the third positional argument"),
                _STRIDE, _PADDING,
            ),
        )
    )  # fmt: skip


_conv_transpose(
    "conv_transpose1d", 1,
    "`conv_transpose1d(g, k)`: the gradient of `conv1d(x, k)` in x for the cotangent g `[C_out, L_out]` (torch's `conv_transpose1d`): "
    "`[C_in, L]`; `size=` is L, the forward input's length, when the stride leaves a choice",
)  # fmt: skip
_conv_transpose(
    "conv_transpose2d", 2,
    "`conv_transpose2d(g, k)`: the gradient of `conv2d(x, k)` in x for the cotangent g `[C_out, H_out, W_out]` (torch's `conv_transpose2d`): "
    "`[C_in, H, W]`; `size=` is [H, W], the forward input's size, when the stride leaves a choice",
)  # fmt: skip
_conv_weight(
    "conv1d_weight", 1,
    "`conv1d_weight(x, g)`: the gradient of `conv1d(x, k)` in the kernel k for the cotangent g `[C_out, L_out]` "
    "(torch's `conv1d_weight`, one sample): `[C_out, C_in, K]`, `size=` K; `conv1d_weight(x, g, 3)`",
)  # fmt: skip
_conv_weight(
    "conv2d_weight", 2,
    "`conv2d_weight(x, g)`: the gradient of `conv2d(x, k)` in the kernel k for the cotangent g `[C_out, H_out, W_out]` "
    "(torch's `conv2d_weight`, one sample): `[C_out, C_in, kH, kW]`, `size=` [kH, kW]; `conv2d_weight(x, g, size=[3, 3])`",
)  # fmt: skip
_add(
    Op(
        "maxpool2d_backward", 2, "structural",
        lambda N, args, shapes, size, stride: _maxpool_backward_np(N, args[0], args[1], size, stride),
        lambda T, args, shapes, size, stride: _maxpool_backward_torch(T, args[0], args[1], size, stride),
        lambda S, args, shapes, size, stride: _maxpool_backward_sympy(S, args[0], args[1], size, stride),
        lambda M, args, shapes, size, stride: _maxpool_backward_mp(M, args[0], args[1], size, stride),
        _maxpool_backward_shape,
        "`maxpool2d_backward(x, g)`: the gradient of `maxpool2d(x, size)` in x for the cotangent g `[C, H_out, W_out]`: each window's g "
        "to the window's first maximal element of x (row-major), `[C, H, W]`; `maxpool2d_backward(x, g, 2)`",
        kink=lambda N, args, shapes, size, stride: _maxpool_backward_kink(N, args[0], args[1], size, stride),
        kink_doc="where two elements of x tie for a window's maximum (a jump in x)",
        convention=(
            "every source routes g to the first maximal element of the window (row-major), as torch's max_pool2d "
            "backward; its derivative in x is 0 (torch, SymPy); central difference: the jump over the step"
        ),
        analytic=False,
        incremental=DENSE,
        attrs=_POOL_ATTRS,
        vjp=_maxpool_backward_vjp,
    )
)  # fmt: skip
_add(
    Op(
        "avgpool2d_backward", 1, "structural",
        lambda N, args, shapes, size, stride, shape: _avgpool_backward_arr(args[0], size, stride, shape),
        lambda T, args, shapes, size, stride, shape: _avgpool_backward_torch(T, args[0], size, stride, shape),
        lambda S, args, shapes, size, stride, shape: _avgpool_backward_sympy(S, args[0], size, stride, shape),
        lambda M, args, shapes, size, stride, shape: _avgpool_backward_arr(args[0], size, stride, shape, M.mpf(0)),
        _avgpool_backward_shape,
        "`avgpool2d_backward(g)`: the gradient of `avgpool2d(x, size)` in x for the cotangent g `[C, H_out, W_out]`: g / (window size) "
        "into each window, `shape=` x's `[C, H, W]`; `avgpool2d_backward(g, 2, shape=[C, H, W])`",
        incremental=DENSE,
        attrs=(*_POOL_ATTRS, Attr("shape", None, ("ints",), "the forward input's shape [C, H, W] (required)")),
        vjp=lambda shapes, out, size=None, stride=None, shape=None: (f"avgpool2d(g, {_pool_kw(size, stride)})",),
    )
)  # fmt: skip
