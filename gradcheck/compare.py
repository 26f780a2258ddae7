"""The verdict: tolerances, statuses, the odd one out, and why.

The exact symbolic value is the reference and is never outvoted. Every other
source ``s`` agrees with it when::

    |s - symbolic| <= atol + rtol * scale  (+ fd_error for finite differences)

where ``scale`` is the larger of ``|symbolic|`` and the mean over samples of
``|per-sample gradient|`` (so a gradient that is a small difference of large
per-sample terms is judged against the size of those terms). The rule, the
defaults and the reasons are written down in ``docs/how-it-works.md``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

#: Statuses from best to worst; a report's status is the worst of its parts.
STATUSES = ("agree", "kink", "undefined", "mismatch")

#: Default (rtol, atol) per dtype. float32 rounding is ~6e-8 per operation, so
#: 1e-4 leaves room for long sums while a wrong gradient (a missing factor,
#: a sign) is off by far more.
DEFAULTS = {"float64": (1e-6, 1e-9), "float32": (1e-4, 1e-6)}


@dataclass(frozen=True)
class Tolerance:
    """How far a source may be from the exact value and still agree."""

    rtol: float = 1e-6
    atol: float = 1e-9

    @classmethod
    def for_dtype(cls, dtype: str, rtol: float | None = None, atol: float | None = None) -> Tolerance:
        d_rtol, d_atol = DEFAULTS[dtype]
        return cls(d_rtol if rtol is None else rtol, d_atol if atol is None else atol)

    def allowed(self, scale: float, fd_error: float = 0.0) -> float:
        return self.atol + self.rtol * scale + fd_error


def worst(statuses: list[str]) -> str:
    """The worst of several statuses (``agree`` for none)."""
    return max(statuses, key=STATUSES.index, default="agree")


@dataclass
class Verdict:
    status: str
    odd_one_out: str | None
    note: str | None


def _fmt(x: float) -> str:
    return f"{x:.10g}"


def judge(
    values: dict[str, float],
    *,
    scale: float,
    fd_error: float,
    tol: Tolerance,
    exact_loss_finite: bool = True,
    kink: tuple[float, float, str] | None = None,
) -> Verdict:
    """The verdict for one gradient element.

    ``values`` maps each source to its value and must hold ``symbolic``.
    ``kink`` is ``(left, right, note)`` where one-sided derivatives differ.
    """
    ref = values["symbolic"]
    others = {s: v for s, v in values.items() if s != "symbolic"}

    def allowed(source: str) -> float:
        return tol.allowed(
            max(scale, abs(ref) if math.isfinite(ref) else 0.0), fd_error if source == "finite_difference" else 0.0
        )

    if not exact_loss_finite or not math.isfinite(ref):
        what = (
            "the exact loss is not finite here (a division by zero, a log of 0, ...)"
            if not exact_loss_finite
            else f"the exact derivative is {_fmt(ref)} here"
        )
        return Verdict("undefined", None, f"{what}; the gradient is undefined at this point")

    if kink is not None:
        left, right, note = kink
        lo, hi = min(left, right), max(left, right)
        outside = [
            s for s, v in values.items()
            if not (math.isfinite(v) and lo - allowed(s) - abs(hi - lo) * 1e-6 <= v <= hi + allowed(s) + abs(hi - lo) * 1e-6)
        ]  # fmt: skip
        if not outside:
            return Verdict("kink", None, note)
        return Verdict(
            "mismatch",
            outside[0] if len(outside) == 1 and outside[0] != "symbolic" else None,
            f"{', '.join(outside)} outside the one-sided derivatives [{_fmt(lo)}, {_fmt(hi)}]; {note}",
        )

    bad = [s for s, v in others.items() if not (math.isfinite(v) and abs(v - ref) <= allowed(s))]
    if not bad:
        return Verdict("agree", None, None)
    details = "; ".join(
        f"{s} = {_fmt(others[s])} is {_fmt(abs(others[s] - ref)) if math.isfinite(others[s]) else 'not finite'}"
        f" from the exact {_fmt(ref)} (allowed {_fmt(allowed(s))})"
        for s in bad
    )
    good = [s for s in others if s not in bad]
    if len(bad) == 1 and good:
        return Verdict(
            "mismatch", bad[0], f"{details}; {', '.join(good)} agree{'s' if len(good) == 1 else ''} with symbolic"
        )
    numeric = [s for s in ("autograd", "finite_difference") if s in bad]
    if len(numeric) == 2:
        a, f = others["autograd"], others["finite_difference"]
        if not (math.isfinite(a) and math.isfinite(f)):
            why = "float evaluation overflows or divides by zero here while the exact value is finite"
        elif abs(a - f) <= allowed("autograd") + allowed("finite_difference") + 1e-3 * max(abs(a), abs(f)):
            why = "they agree with each other, so float evaluation of the expression loses accuracy here (cancellation or overflow)"
        else:
            why = "float evaluation of the expression is inaccurate here"
        return Verdict(
            "mismatch",
            None,
            f"autograd and finite_difference both differ from the exact value: {why}; "
            f"the symbolic value {_fmt(ref)} is exact. {details}",
        )
    return Verdict("mismatch", None, details)


def severity(values: dict[str, np.ndarray], status: str, idx: tuple[int, ...]) -> tuple[int, float]:
    """How bad one element is, for picking the worst: its status's rank, then the largest error
    of any source relative to the exact value (``values`` must hold ``symbolic``)."""
    ref = float(values["symbolic"][idx])
    errs = [abs(float(v[idx]) - ref) for s, v in values.items() if s != "symbolic"]
    err = max(errs, default=0.0)
    rel = err / max(abs(ref), 1e-300) if math.isfinite(err) else math.inf
    return STATUSES.index(status), rel


def element_scale(scale: np.ndarray, index: tuple[int, ...]) -> float:
    value = float(np.asarray(scale)[index])
    return value if math.isfinite(value) else 0.0
