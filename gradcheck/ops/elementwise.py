"""Elementwise functions: one entry each (`N` is numpy, `T` torch, `S` sympy, `M` mpmath)."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from .core import Attr, _each, _mp, elementwise


def _np_erf(x: Any) -> Any:
    import math

    import numpy as np

    if np.iscomplexobj(x):
        raise TypeError("erf has no complex form here")
    return np.vectorize(math.erf, otypes=[x.dtype if hasattr(x, "dtype") else float])(x)


def _mp_atan2(M: Any) -> Callable[[Any, Any], Any]:
    def atan2(a: Any, b: Any) -> Any:
        if a == 0 and b == 0:
            return M.nan  # the angle of the origin is undefined (SymPy: nan)
        return M.atan2(a, b)

    return atan2


# Elementwise functions: one line each. `N` is numpy, `T` torch, `S` sympy, `M` mpmath.
# Note: numpy forms must accept complex input where the function is analytic
# (the complex-step finite difference uses them).
elementwise("exp", 1, lambda N, x: N.exp(x), lambda T, x: T.exp(x), lambda S, x: _each(S.exp, x), lambda M, x: _mp(M, M.exp, x), "e to the x", vjp=("g * out",), dd=lambda D, x: D.exp(x))  # fmt: skip
elementwise("log", 1, lambda N, x: N.log(x), lambda T, x: T.log(x), lambda S, x: _each(S.log, x), lambda M, x: _mp(M, M.log, x), "natural logarithm", vjp=("g / a",), dd=lambda D, x: D.log(x))  # fmt: skip
elementwise("log1p", 1, lambda N, x: N.log1p(x), lambda T, x: T.log1p(x), lambda S, x: _each(lambda a: S.log(1 + a), x), lambda M, x: _mp(M, M.log1p, x), "log(1 + x), accurate for small x", vjp=("g / (1 + a)",))  # fmt: skip
elementwise("expm1", 1, lambda N, x: N.expm1(x), lambda T, x: T.expm1(x), lambda S, x: _each(lambda a: S.exp(a) - 1, x), lambda M, x: _mp(M, M.expm1, x), "exp(x) - 1, accurate for small x", vjp=("g * (out + 1)",), dd=lambda D, x: D.expm1(x))  # fmt: skip
elementwise("sqrt", 1, lambda N, x: N.sqrt(x), lambda T, x: T.sqrt(x), lambda S, x: _each(S.sqrt, x), lambda M, x: _mp(M, M.sqrt, x), "square root", vjp=("g / (2 * out)",))  # fmt: skip
elementwise(
    "abs", 1, lambda N, x: N.abs(x), lambda T, x: T.abs(x), lambda S, x: _each(S.Abs, x), lambda M, x: _mp(M, M.fabs, x),
    "absolute value",
    kink=lambda N, x: x, kink_doc="at 0", analytic=False,
    convention="torch: abs'(0) = 0; SymPy: sign(0) = 0; central difference: the average of both sides", vjp=("g * sign(a)",),
)  # fmt: skip
elementwise("sin", 1, lambda N, x: N.sin(x), lambda T, x: T.sin(x), lambda S, x: _each(S.sin, x), lambda M, x: _mp(M, M.sin, x), "sine", vjp=("g * cos(a)",))  # fmt: skip
elementwise("cos", 1, lambda N, x: N.cos(x), lambda T, x: T.cos(x), lambda S, x: _each(S.cos, x), lambda M, x: _mp(M, M.cos, x), "cosine", vjp=("-g * sin(a)",))  # fmt: skip
elementwise("tan", 1, lambda N, x: N.tan(x), lambda T, x: T.tan(x), lambda S, x: _each(S.tan, x), lambda M, x: _mp(M, M.tan, x), "tangent", vjp=("g * (1 + out**2)",))  # fmt: skip
elementwise("asin", 1, lambda N, x: N.arcsin(x), lambda T, x: T.asin(x), lambda S, x: _each(S.asin, x), lambda M, x: _mp(M, M.asin, x), "inverse sine", vjp=("g / sqrt(1 - a**2)",))  # fmt: skip
elementwise("acos", 1, lambda N, x: N.arccos(x), lambda T, x: T.acos(x), lambda S, x: _each(S.acos, x), lambda M, x: _mp(M, M.acos, x), "inverse cosine", vjp=("-g / sqrt(1 - a**2)",))  # fmt: skip
elementwise("atan", 1, lambda N, x: N.arctan(x), lambda T, x: T.atan(x), lambda S, x: _each(S.atan, x), lambda M, x: _mp(M, M.atan, x), "inverse tangent", vjp=("g / (1 + a**2)",))  # fmt: skip
elementwise("sinh", 1, lambda N, x: N.sinh(x), lambda T, x: T.sinh(x), lambda S, x: _each(S.sinh, x), lambda M, x: _mp(M, M.sinh, x), "hyperbolic sine", vjp=("g * cosh(a)",))  # fmt: skip
elementwise("cosh", 1, lambda N, x: N.cosh(x), lambda T, x: T.cosh(x), lambda S, x: _each(S.cosh, x), lambda M, x: _mp(M, M.cosh, x), "hyperbolic cosine", vjp=("g * sinh(a)",))  # fmt: skip
elementwise("tanh", 1, lambda N, x: N.tanh(x), lambda T, x: T.tanh(x), lambda S, x: _each(S.tanh, x), lambda M, x: _mp(M, M.tanh, x), "hyperbolic tangent", vjp=("g * (1 - out**2)",), dd=lambda D, x: D.tanh(x))  # fmt: skip
elementwise("asinh", 1, lambda N, x: N.arcsinh(x), lambda T, x: T.asinh(x), lambda S, x: _each(S.asinh, x), lambda M, x: _mp(M, M.asinh, x), "inverse hyperbolic sine", vjp=("g / sqrt(a**2 + 1)",))  # fmt: skip
elementwise("acosh", 1, lambda N, x: N.arccosh(x), lambda T, x: T.acosh(x), lambda S, x: _each(S.acosh, x), lambda M, x: _mp(M, M.acosh, x), "inverse hyperbolic cosine", vjp=("g / sqrt(a**2 - 1)",))  # fmt: skip
elementwise("atanh", 1, lambda N, x: N.arctanh(x), lambda T, x: T.atanh(x), lambda S, x: _each(S.atanh, x), lambda M, x: _mp(M, M.atanh, x), "inverse hyperbolic tangent", vjp=("g / (1 - a**2)",))  # fmt: skip
elementwise(
    "sigmoid", 1, lambda N, x: 1 / (1 + N.exp(-x)), lambda T, x: T.sigmoid(x),
    lambda S, x: _each(lambda a: 1 / (1 + S.exp(-a)), x), lambda M, x: _mp(M, lambda a: 1 / (1 + M.exp(-a)), x),
    "logistic function 1 / (1 + exp(-x))", vjp=("g * out * (1 - out)",), dd=lambda D, x: D.sigmoid(x),
)  # fmt: skip
elementwise(
    "softplus", 1, lambda N, x: N.log1p(N.exp(-N.abs(x))) + N.maximum(x, 0) if not N.iscomplexobj(x) else N.log(1 + N.exp(x)),
    lambda T, x: T.nn.functional.softplus(x),
    lambda S, x: _each(lambda a: S.log(1 + S.exp(a)), x), lambda M, x: _mp(M, lambda a: M.log1p(M.exp(a)), x),
    "log(1 + exp(x)), computed stably", analytic=False, vjp=("g * sigmoid(a)",),
)  # fmt: skip
elementwise(
    "relu", 1, lambda N, x: N.maximum(x, 0), lambda T, x: T.relu(x), lambda S, x: _each(lambda a: S.Max(0, a), x),
    lambda M, x: _mp(M, lambda a: max(a, M.mpf(0)), x),
    "max(x, 0)",
    kink=lambda N, x: x, kink_doc="at 0", analytic=False,
    convention="torch: relu'(0) = 0; SymPy: Heaviside(0) = 1/2; central difference: the average of both sides", vjp=("g * (a > 0)",),
    dd=lambda D, x: D.maximum(x, 0.0),
)  # fmt: skip
elementwise("erf", 1, lambda N, x: _np_erf(x), lambda T, x: T.erf(x), lambda S, x: _each(S.erf, x), lambda M, x: _mp(M, M.erf, x), "error function", analytic=False, vjp=("2 * g * exp(-a**2) / sqrt(pi)",))  # fmt: skip
elementwise(
    "max", 2, lambda N, a, b: N.maximum(a, b), lambda T, a, b: T.maximum(T.as_tensor(a), T.as_tensor(b)),
    lambda S, a, b: _each(S.Max, a, b), lambda M, a, b: _mp(M, max, a, b), "the larger of a and b",
    kink=lambda N, a, b: a - b, kink_doc="where a = b", analytic=False,
    convention="torch: a tie splits the gradient evenly (1/2 each); SymPy: Heaviside(0) = 1/2; central difference: the average of both sides", vjp=("g * ((a > b) + (a >= b)) / 2", "g * ((b > a) + (b >= a)) / 2"),
    dd=lambda D, a, b: D.maximum(a, b),
)  # fmt: skip
elementwise(
    "min", 2, lambda N, a, b: N.minimum(a, b), lambda T, a, b: T.minimum(T.as_tensor(a), T.as_tensor(b)),
    lambda S, a, b: _each(S.Min, a, b), lambda M, a, b: _mp(M, min, a, b), "the smaller of a and b",
    kink=lambda N, a, b: a - b, kink_doc="where a = b", analytic=False,
    convention="torch: a tie splits the gradient evenly (1/2 each); SymPy: Heaviside(0) = 1/2; central difference: the average of both sides", vjp=("g * ((a < b) + (a <= b)) / 2", "g * ((b < a) + (b <= a)) / 2"),
    dd=lambda D, a, b: D.minimum(a, b),
)  # fmt: skip
elementwise(
    "atan2", 2, lambda N, a, b: N.arctan2(a, b), lambda T, a, b: T.atan2(T.as_tensor(a), T.as_tensor(b)),
    lambda S, a, b: _each(S.atan2, a, b), lambda M, a, b: _mp(M, _mp_atan2(M), a, b), "angle of the point (b, a)",
    analytic=False, vjp=("g * b / (a**2 + b**2)", "-g * a / (a**2 + b**2)"),
)  # fmt: skip

# Activations (SPEC section 3.1). Kinked ones follow relu: a kink rule at 0 and non-analytic NumPy forms.
elementwise(
    "leaky_relu", 1, lambda N, x, slope: N.where(x > 0, x, slope * x),
    lambda T, x, slope: T.nn.functional.leaky_relu(x, slope),
    lambda S, x, slope: _each(lambda a: S.Max(0, a) + S.Float(slope) * S.Min(0, a), x),
    lambda M, x, slope: _mp(M, lambda a: a if a > 0 else M.mpf(slope) * a, x),
    "x where x > 0, else slope * x",
    kink=lambda N, x: x, kink_doc="at 0", analytic=False, attrs=(Attr("slope", 0.01, ("float",), "the slope for x < 0"),),
    convention="torch: leaky_relu'(0) = slope; SymPy: Heaviside(0) = 1/2, so (1 + slope) / 2; central difference: the average of both sides", vjp=("g * where(a > 0, 1, {slope})",),
)  # fmt: skip
elementwise(
    "elu", 1, lambda N, x, alpha: N.where(x > 0, x, alpha * N.expm1(N.minimum(x, 0))),
    lambda T, x, alpha: T.nn.functional.elu(x, alpha),
    lambda S, x, alpha: _each(lambda a: S.Max(0, a) + S.Float(alpha) * (S.exp(S.Min(0, a)) - 1), x),
    lambda M, x, alpha: _mp(M, lambda a: a if a > 0 else M.mpf(alpha) * M.expm1(a), x),
    "x where x > 0, else alpha * (exp(x) - 1)",
    kink=lambda N, x: x, kink_doc="at 0, unless alpha = 1 (then the two sides' slopes agree and only the second derivative jumps)",
    analytic=False, attrs=(Attr("alpha", 1.0, ("float",), "the scale for x < 0"),),
    convention="torch: elu'(0) = alpha; SymPy: Heaviside(0) = 1/2, so (1 + alpha) / 2; central difference: the average of both sides", vjp=("g * where(a > 0, 1, {alpha} * exp(a))",),
)  # fmt: skip
elementwise(
    "gelu", 1, lambda N, x: x * (1 + _np_erf(x / math.sqrt(2))) / 2, lambda T, x: T.nn.functional.gelu(x),
    lambda S, x: _each(lambda a: a * (1 + S.erf(a / S.sqrt(2))) / 2, x),
    lambda M, x: _mp(M, lambda a: a * (1 + M.erf(a / M.sqrt(2))) / 2, x),
    "x * (1 + erf(x / sqrt(2))) / 2 (exact, torch's default)", analytic=False, vjp=("g * ((1 + erf(a / sqrt(2))) / 2 + a * exp(-a**2 / 2) / sqrt(2 * pi))",),
)  # fmt: skip
elementwise(
    "silu", 1, lambda N, x: x / (1 + N.exp(-x)), lambda T, x: T.nn.functional.silu(x),
    lambda S, x: _each(lambda a: a / (1 + S.exp(-a)), x), lambda M, x: _mp(M, lambda a: a / (1 + M.exp(-a)), x),
    "x * sigmoid(x)", vjp=("g * sigmoid(a) * (1 + a * (1 - sigmoid(a)))",),
)  # fmt: skip
elementwise(
    "softsign", 1, lambda N, x: x / (1 + N.abs(x)), lambda T, x: T.nn.functional.softsign(x),
    lambda S, x: _each(lambda a: a / (1 + S.Abs(a)), x), lambda M, x: _mp(M, lambda a: a / (1 + abs(a)), x),
    "x / (1 + abs(x))",
    kink=lambda N, x: x, kink_doc="none (at 0 the derivative is continuous, 1; only the second derivative jumps)",
    analytic=False, convention="smooth at 0: every source gives 1 there", vjp=("g / (1 + abs(a))**2",),
)  # fmt: skip
elementwise(
    "square", 1, lambda N, x: x * x, lambda T, x: T.square(x), lambda S, x: _each(lambda a: a**2, x),
    lambda M, x: _mp(M, lambda a: a * a, x), "x ** 2", vjp=("2 * g * a",),
)  # fmt: skip
