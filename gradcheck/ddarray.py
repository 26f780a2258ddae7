"""Double-double arrays: NumPy float64 pairs ``hi + lo`` carrying about 32 significant digits.

The op table's ``dd`` forms receive this module as their backend (as the
NumPy forms receive ``numpy``), so that the symbolic source can evaluate a
whole tensor per op (:mod:`gradcheck.sources.symbolic.blocks`) instead of one
mpmath number per element. Every operation here is an error-free
transformation (Knuth's two-sum, Dekker's split and two-product) followed by
a renormalisation, as in Hida, Li and Bailey's QD library: a sum, product or
quotient of double-doubles is correct to about ``2**-104`` of its magnitude,
so a chain of a few thousand of them still rounds to float64 exactly except
in the rarest near-ties. Sums over axes are pairwise (``log2(n)`` vectorized
steps). Nothing here is approximate in float64: where a value overflows or is
undefined the arrays hold inf or nan, and the caller falls back to mpmath.

Values follow the op table's trailing-axes convention (batch axes first, then
the per-sample shape) and broadcast as NumPy arrays do. This module imports
NumPy only.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

#: Dekker's splitter for float64: 2**27 + 1.
_SPLIT = 134217729.0


class DD:
    """An array of double-double numbers: ``hi + lo`` with ``|lo| <= ulp(hi) / 2``."""

    __slots__ = ("hi", "lo")

    def __init__(self, hi: Any, lo: Any = None) -> None:
        self.hi = np.asarray(hi, dtype=np.float64)
        self.lo = np.zeros_like(self.hi) if lo is None else np.asarray(lo, dtype=np.float64)

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(np.broadcast_shapes(self.hi.shape, self.lo.shape))

    @property
    def ndim(self) -> int:
        return len(self.shape)

    def __getitem__(self, index: Any) -> DD:
        return DD(self.hi[index], self.lo[index])

    def reshape(self, shape: Sequence[int]) -> DD:
        return DD(self.hi.reshape(shape), self.lo.reshape(shape))

    def __repr__(self) -> str:
        return f"DD(hi={self.hi!r}, lo={self.lo!r})"


def lift(x: Any) -> DD:
    """``x`` (a DD, a NumPy array or a number) as a DD."""
    return x if isinstance(x, DD) else DD(x)


def each(fn: Callable[..., Any], *xs: Any) -> DD:
    """``fn`` applied to the high and to the low parts alike: exact for anything that only moves elements."""
    parts = [lift(x) for x in xs]
    return DD(fn(*(p.hi for p in parts)), fn(*(p.lo for p in parts)))


#: Below this magnitude the low part is subnormal: fewer than 106 bits.
TINY = 2.0**-960


def finite(x: DD) -> bool:
    """Every element finite, and 0 or at least :data:`TINY` in magnitude (so it holds all its digits)."""
    a = np.abs(x.hi)
    return bool(np.isfinite(a).all() and np.isfinite(x.lo).all() and not np.any((a != 0) & (a < TINY)))


def value(x: DD) -> np.ndarray:
    """The nearest float64 of every element."""
    return np.asarray(x.hi + x.lo, dtype=np.float64)


# --- error-free transformations -------------------------------------------------------


def _two_sum(a: Any, b: Any) -> tuple[Any, Any]:
    s = a + b
    bb = s - a
    return s, (a - (s - bb)) + (b - bb)


def _quick_two_sum(a: Any, b: Any) -> tuple[Any, Any]:
    s = a + b
    return s, b - (s - a)


def _split(a: Any) -> tuple[Any, Any]:
    t = _SPLIT * a
    hi = t - (t - a)
    return hi, a - hi


def _two_prod(a: Any, b: Any) -> tuple[Any, Any]:
    p = a * b
    ah, al = _split(a)
    bh, bl = _split(b)
    return p, ((ah * bh - p) + ah * bl + al * bh) + al * bl


# --- arithmetic ----------------------------------------------------------------------


def add(x: Any, y: Any) -> DD:
    x, y = lift(x), lift(y)
    s1, s2 = _two_sum(x.hi, y.hi)
    t1, t2 = _two_sum(x.lo, y.lo)
    s1, s2 = _quick_two_sum(s1, s2 + t1)
    return DD(*_quick_two_sum(s1, s2 + t2))


#: Most bits an elementwise sum may cancel (:func:`plus`): 30 leaves about 23 significant digits.
MAX_CANCELLED_BITS = 30


class LostDigits(ArithmeticError):
    """A sum cancelled more than :data:`MAX_CANCELLED_BITS` bits: double-double is not precise enough there."""


def plus(x: Any, y: Any) -> DD:
    """:func:`add`, raising :class:`LostDigits` where the sum is much smaller than its larger term but not 0.

    ``1 - cos(w)`` at ``w = 1e-8`` keeps 16 of its 32 digits; a model's
    ``+`` and ``-`` are checked so (the sums inside ``@``, conv and ``sum``
    are not: their error is relative to the sum of their terms' magnitudes).
    """
    out = add(x, y)
    x, y = lift(x), lift(y)
    big = np.maximum(np.abs(x.hi), np.abs(y.hi))
    small = np.abs(out.hi)
    if np.any((small != 0) & (big > small * 2.0**MAX_CANCELLED_BITS)):
        raise LostDigits("a sum cancelled more than 30 bits")
    return out


def minus(x: Any, y: Any) -> DD:
    """:func:`sub`, checked as :func:`plus` is."""
    return plus(x, neg(y))


def neg(x: Any) -> DD:
    x = lift(x)
    return DD(-x.hi, -x.lo)


def sub(x: Any, y: Any) -> DD:
    return add(x, neg(y))


def mul(x: Any, y: Any) -> DD:
    x, y = lift(x), lift(y)
    p1, p2 = _two_prod(x.hi, y.hi)
    return DD(*_quick_two_sum(p1, p2 + (x.hi * y.lo + x.lo * y.hi)))


def div(x: Any, y: Any) -> DD:
    x, y = lift(x), lift(y)
    q1 = x.hi / y.hi
    r = sub(x, mul(y, q1))
    q2 = r.hi / y.hi
    r = sub(r, mul(y, q2))
    q3 = r.hi / y.hi
    return add(DD(*_quick_two_sum(q1, q2)), q3)


def integer(x: DD) -> int | None:
    """The one integer every element of ``x`` holds, else ``None``."""
    h = x.hi.reshape(-1)
    if not h.size or np.any(x.lo != 0) or np.any(h != h[0]) or not np.isfinite(h[0]) or h[0] != np.round(h[0]):
        return None
    return int(h[0]) if abs(h[0]) < 2**31 else None


def power(x: Any, n: int) -> DD:
    """``x ** n`` for an integer ``n``, by repeated squaring (a negative ``n``: the reciprocal)."""
    x = lift(x)
    out: DD | None = None
    base, k = x, abs(n)
    while k:
        if k & 1:
            out = base if out is None else mul(out, base)
        k >>= 1
        if k:
            base = mul(base, base)
    if out is None:
        out = DD(np.ones_like(x.hi))
    return div(DD(np.ones_like(out.hi)), out) if n < 0 else out


# --- exp, log, tanh ------------------------------------------------------------------

#: log(2) in three float64 parts (hi + mid + lo: 159 bits).
_LN2 = (0.6931471805599453, 2.3190468138462996e-17, 5.707708438416212e-34)
#: Taylor terms of expm1 on |r| <= 0.35: the 27th is below 2**-110 of the sum.
_TERMS = 27


_INVERSES: list[DD] = []


def _expm1_small(r: DD) -> DD:
    """``exp(r) - 1`` for ``|r| <= 0.35``: its Taylor series by Horner's rule, every step in double-double."""
    if not _INVERSES:
        _INVERSES.extend(div(1.0, float(k)) for k in range(1, _TERMS + 1))
    acc = DD(np.zeros_like(r.hi))
    for k in range(_TERMS, 0, -1):  # r/1 * (1 + r/2 * (1 + r/3 * (...)))
        acc = mul(mul(r, _INVERSES[k - 1]), add(acc, 1.0))
    return acc


def _reduce(x: DD) -> tuple[np.ndarray, DD]:
    """``x = k*log(2) + r`` with an integer ``k`` and ``|r| <= 0.35`` (log(2) to 159 bits, so ``r`` keeps 106)."""
    k = np.round(x.hi / _LN2[0])
    r = sub(x, mul(k, _LN2[0]))
    r = sub(r, mul(k, _LN2[1]))
    return k, sub(r, k * _LN2[2])


def _scale(x: DD, k: np.ndarray) -> DD:
    return DD(np.ldexp(x.hi, k.astype(np.int64)), np.ldexp(x.lo, k.astype(np.int64)))


def exp(x: Any) -> DD:
    """``exp(x)``: ``2**k * exp(r)`` (see :func:`_reduce`); inf where float64 overflows."""
    x = lift(x)
    with np.errstate(all="ignore"):
        big = np.abs(x.hi) > 708
        k, r = _reduce(DD(np.where(big, 0.0, x.hi), np.where(big, 0.0, x.lo)))
        out = _scale(add(_expm1_small(r), 1.0), k)
        return DD(np.where(big, np.exp(x.hi), out.hi), np.where(big, 0.0, out.lo))


def expm1(x: Any) -> DD:
    """``exp(x) - 1``, to 32 digits near 0 too (the series there, :func:`exp` elsewhere)."""
    x = lift(x)
    small = np.abs(x.hi) <= 0.35
    near = _expm1_small(DD(np.where(small, x.hi, 0.0), np.where(small, x.lo, 0.0)))
    far = sub(exp(DD(np.where(small, 0.0, x.hi), np.where(small, 0.0, x.lo))), 1.0)
    return DD(np.where(small, near.hi, far.hi), np.where(small, near.lo, far.lo))


def tanh(x: Any) -> DD:
    """``tanh(x) = -expm1(-2|x|) / (2 + expm1(-2|x|))`` with the sign of x: no cancellation anywhere."""
    x = lift(x)
    sign = np.where(x.hi < 0, -1.0, 1.0)
    m = expm1(DD(-2.0 * np.abs(x.hi), -2.0 * sign * x.lo))
    t = div(neg(m), add(m, 2.0))
    return DD(sign * t.hi, sign * t.lo)


def sigmoid(x: Any) -> DD:
    """``1 / (1 + exp(-x))``, as ``exp(x) / (1 + exp(x))`` for negative x (neither overflows)."""
    x = lift(x)
    e = exp(DD(-np.abs(x.hi), -np.sign(x.hi) * x.lo))  # exp(-|x|) <= 1
    up = div(1.0, add(e, 1.0))
    down = div(e, add(e, 1.0))
    neg_x = x.hi < 0
    return DD(np.where(neg_x, down.hi, up.hi), np.where(neg_x, down.lo, up.lo))


def log(x: Any) -> DD:
    """``log(x)``: float64's log corrected by one Newton step, ``y + x*exp(-y) - 1`` (nan for x <= 0)."""
    x = lift(x)
    with np.errstate(all="ignore"):
        y = np.log(x.hi)
        ok = np.isfinite(y)
        y0 = np.where(ok, y, 0.0)
        step = sub(mul(x, exp(DD(-y0))), 1.0)
        out = add(DD(y0), step)
        return DD(np.where(ok & (x.hi > 0), out.hi, np.where(x.hi > 0, y, np.nan)), np.where(ok, out.lo, 0.0))


# --- sums and products over axes ------------------------------------------------------------


def total(x: Any, axes: Sequence[int], keepdims: bool = False) -> DD:
    """The sum over ``axes`` (non-negative), pairwise: ``log2(n)`` vectorized double-double additions."""
    x = lift(x)
    hi, lo = np.broadcast_arrays(x.hi, x.lo)
    axes = sorted(a % hi.ndim for a in axes)
    keep = [a for a in range(hi.ndim) if a not in axes]
    order = keep + axes
    lead = tuple(hi.shape[a] for a in keep)
    n = int(np.prod([hi.shape[a] for a in axes], dtype=np.int64))
    cur = DD(hi.transpose(order).reshape(lead + (n,)), lo.transpose(order).reshape(lead + (n,)))
    if n == 0:
        cur = DD(np.zeros(lead + (1,)))
    while cur.hi.shape[-1] > 1:
        m = cur.hi.shape[-1]
        half = m // 2
        summed = add(cur[..., :half], cur[..., half : 2 * half])
        if m % 2:
            summed = DD(
                np.concatenate([summed.hi, cur.hi[..., 2 * half :]], axis=-1),
                np.concatenate([summed.lo, cur.lo[..., 2 * half :]], axis=-1),
            )
        cur = summed
    out = cur[..., 0]
    if keepdims:
        shape = tuple(1 if a in axes else s for a, s in enumerate(hi.shape))
        out = out.reshape(shape)
    return out


def einsum(spec: str, a: Any, b: Any) -> DD:
    """``numpy.einsum(spec, a, b)`` for two operands, each product exact and each sum pairwise.

    ``spec`` names each operand's trailing axes with letters after an
    optional ``...`` (the batch axes, which broadcast), e.g.
    ``"...ij,...jk->...ik"``; a letter may not repeat within an operand.
    """
    a, b = lift(a), lift(b)
    inputs, out = spec.replace(" ", "").split("->")
    sa, sb = (s.replace("...", "") for s in inputs.split(","))
    so = out.replace("...", "")
    sizes: dict[str, int] = {}
    for letters, x in ((sa, a), (sb, b)):
        shape = x.shape[x.ndim - len(letters) :] if letters else ()
        for letter, n in zip(letters, shape):
            if sizes.get(letter, 1) == 1:
                sizes[letter] = n
    summed = [c for c in dict.fromkeys(sa + sb) if c not in so]
    target = list(so) + summed

    def arrange(x: DD, letters: str) -> DD:
        batch = x.shape[: x.ndim - len(letters)]
        own = [c for c in target if c in letters]
        perm = list(range(len(batch))) + [len(batch) + letters.index(c) for c in own]
        hi, lo = np.broadcast_arrays(x.hi, x.lo)
        shape = batch + tuple(sizes[c] if c in letters else 1 for c in target)
        return DD(hi.transpose(perm).reshape(shape), lo.transpose(perm).reshape(shape))

    pa, pb = arrange(a, sa), arrange(b, sb)
    batch_a, batch_b = pa.ndim - len(target), pb.ndim - len(target)
    if batch_a < batch_b:  # line up the batch axes: the shorter one gets unit axes in front
        pa = pa.reshape((1,) * (batch_b - batch_a) + pa.shape)
    elif batch_b < batch_a:
        pb = pb.reshape((1,) * (batch_a - batch_b) + pb.shape)
    prod = mul(pa, pb)
    if not summed:
        return prod
    return total(prod, range(prod.ndim - len(summed), prod.ndim))


# --- comparisons --------------------------------------------------------------------


def sign(x: Any) -> np.ndarray:
    """-1, 0 or 1 per element: the sign of ``hi + lo`` (the high part's, or the low part's where it is 0)."""
    x = lift(x)
    hi, lo = np.broadcast_arrays(x.hi, x.lo)
    return np.where(hi != 0, np.sign(hi), np.sign(lo))


def maximum(x: Any, y: Any) -> DD:
    """The larger of ``x`` and ``y`` per element (exactly: the sign of their difference decides)."""
    x, y = lift(x), lift(y)
    pick = sign(sub(x, y)) >= 0
    return DD(np.where(pick, x.hi, y.hi), np.where(pick, x.lo, y.lo))


def minimum(x: Any, y: Any) -> DD:
    return neg(maximum(neg(x), neg(y)))


def top(x: Any) -> DD:
    """The largest element along the last axis, compared exactly (high parts, then low parts)."""
    x = lift(x)
    hi, lo = np.broadcast_arrays(x.hi, x.lo)
    best = hi.max(axis=-1, keepdims=True)
    low = np.where(hi == best, lo, -np.inf).max(axis=-1)
    return DD(best[..., 0], low)


def max_share(hi: np.ndarray, lo: np.ndarray) -> np.ndarray:
    """Each element's share of SymPy's derivative of ``Max`` over the last axis: ``Heaviside(x_i - Max(others))``.

    1 for the one largest element, 1/2 for each of several that tie for the
    largest (``Heaviside(0) = 1/2``), 0 for the others. The double-doubles
    ``hi + lo`` are compared exactly: high parts first, then low parts.
    """
    on_top = hi == hi.max(axis=-1, keepdims=True)
    on_top &= lo == np.where(on_top, lo, -np.inf).max(axis=-1, keepdims=True)
    return np.where(on_top, np.where(on_top.sum(axis=-1, keepdims=True) == 1, 1.0, 0.5), 0.0)


# --- mpmath --------------------------------------------------------------------------


def to_mpmath(x: Any) -> np.ndarray:
    """An object array of mpmath numbers (at the caller's precision), each exactly ``hi + lo``."""
    import mpmath

    x = lift(x)
    hi, lo = np.broadcast_arrays(x.hi, x.lo)
    if not lo.any():
        return np.asarray(np.frompyfunc(mpmath.mpf, 1, 1)(hi), dtype=object).reshape(hi.shape)
    fn = np.frompyfunc(lambda h, low: mpmath.mpf(h) + low, 2, 1)
    return np.asarray(fn(hi, lo), dtype=object).reshape(hi.shape)


def from_mpmath(x: Any) -> DD:
    """An object array of mpmath numbers (or one number) rounded to double-double; nan where not a real number."""
    arr = np.asarray(x, dtype=object)
    hi = np.asarray(np.frompyfunc(_float, 1, 1)(arr), dtype=np.float64).reshape(arr.shape)
    low = np.frompyfunc(lambda v, h: _float(v - h) if np.isfinite(h) else 0.0, 2, 1)
    lo = np.asarray(low(arr, hi), dtype=np.float64).reshape(arr.shape)
    return DD(hi, lo)


def _float(v: Any) -> float:
    try:
        return float(v)
    except (TypeError, ValueError, OverflowError):  # complex, or not a number
        return float("nan")
