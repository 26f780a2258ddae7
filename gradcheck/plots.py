"""Pictures: the training curve and the finite-difference step "V".

Both are drawn with matplotlib's object API (a bare ``Figure`` written by the
Agg canvas), so nothing touches pyplot's global state or needs a display.

* :func:`plot_losses` (``gradcheck train --plot``): the loss against epoch,
  one line per gradient source (the classic lesson's figure, sources
  overlaid), and with several sources the largest difference between their
  parameters at each epoch.
* :func:`plot_steps` (``gradcheck --plot``): for each parameter (the worst
  element of a tensor), the error of a central difference against its step
  ``h`` on log axes. Large steps lose to truncation (error ~ h**2), small
  steps to rounding (error ~ eps * |f| / h): the V. Marked: the step
  gradcheck chose, the error of gradcheck's extrapolated estimate there, its
  error estimate, and the error of autograd. The reference is the exact
  symbolic value.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from typing import Any

import numpy as np

from .errors import ModelError

#: Most parameters drawn by :func:`plot_steps` (one panel each).
MAX_PANELS = 12
#: Steps per panel in :func:`plot_steps`.
N_STEPS = 61

_STYLES = {"symbolic": ("-", 3.0), "autograd": ("--", 2.0), "finite_difference": (":", 2.0)}


def _figure(n_panels: int, ncols: int) -> tuple[Any, list[Any]]:
    from matplotlib.figure import Figure

    nrows = math.ceil(n_panels / ncols)
    fig = Figure(figsize=(5.2 * ncols, 3.9 * nrows), layout="constrained")
    axes = fig.subplots(nrows, ncols, squeeze=False).reshape(-1).tolist()
    for ax in axes[n_panels:]:
        ax.set_visible(False)
    return fig, axes[:n_panels]


def _save(fig: Any, path: str | os.PathLike[str]) -> None:
    try:
        fig.savefig(os.fspath(path), dpi=110, metadata={"Software": None})
    except (OSError, ValueError) as err:
        raise ModelError(f"cannot write the plot {os.fspath(path)!r}: {err}") from None


def _positive(values: Any) -> bool:
    arr = np.asarray(values, dtype=np.float64)
    return bool(arr.size) and bool(np.all(np.isfinite(arr) & (arr > 0)))


def plot_losses(result: Any, path: str | os.PathLike[str]) -> None:
    """Write ``result``'s (a :class:`~gradcheck.training.TrainResult`) loss curves to ``path``."""
    runs = result.runs
    panels = 2 if len(runs) > 1 else 1
    fig, axes = _figure(panels, panels)
    ax = axes[0]
    every = [v for run in runs.values() for v in [run.initial_loss, *run.losses]]
    for name, run in runs.items():
        style, width = _STYLES.get(name, ("-", 1.5))
        losses = [run.initial_loss, *run.losses]
        ax.plot(range(len(losses)), losses, linestyle=style, linewidth=width, label=name)
    if _positive(every):
        ax.set_yscale("log")
    ax.set_xlabel("epoch")
    ax.set_ylabel(f"{result.reduction if result.reduction != 'none' else 'sum'} loss after the epoch")
    ax.set_title(f"{result.model}: {result.mode}, lr {result.lr:g}, {result.dtype}")
    ax.grid(True, which="major", alpha=0.3)
    ax.legend(title="gradient source")
    if panels == 2:
        ax = axes[1]
        trajectories = [run.trajectory for run in runs.values()]
        spread = []
        for epoch in range(1, len(trajectories[0])):
            worst = 0.0
            for name in trajectories[0][epoch]:
                stack = np.stack([t[epoch][name] for t in trajectories])
                worst = max(worst, float(np.max(stack.max(axis=0) - stack.min(axis=0), initial=0.0)))
            spread.append(worst)
        ax.set_xlabel("epoch")
        ax.set_ylabel("max |difference| between sources' parameters")
        ax.set_title(f"trajectories agree to {result.max_trajectory_difference:.2g}")
        ax.grid(True, which="major", alpha=0.3)
        positive = [s for s in spread if s > 0 and math.isfinite(s)]
        if positive:
            floor = min(positive) / 10
            ax.plot(range(1, len(spread) + 1), [max(s, floor) for s in spread], color="C3")
            ax.set_yscale("log")
        else:
            ax.plot(range(1, len(spread) + 1), spread, color="C3")
            ax.text(0.5, 0.5, "identical at every epoch", transform=ax.transAxes, ha="center")
    _save(fig, path)


@dataclass
class StepCurve:
    """Errors of finite differences of one gradient element against the step (for :func:`plot_steps`).

    ``h`` holds the steps, ``central`` and ``extrapolated`` the absolute
    errors against ``exact`` (the symbolic value) of a central difference at
    ``h`` and of one Richardson extrapolation of ``h`` and ``h/2``.
    ``method`` is how the finite-difference source computed its value
    (``"complex step"`` or ``"Richardson"``), ``chosen`` the central-difference
    steps it used (empty for the complex step), and ``fd_error``,
    ``fd_estimate`` and ``autograd_error`` come from the report.
    """

    name: str
    index: tuple[int, ...]
    value: float
    exact: float
    h: np.ndarray
    central: np.ndarray
    extrapolated: np.ndarray
    method: str
    chosen: np.ndarray
    fd_error: float
    fd_estimate: float
    autograd_error: float
    loss: float


def step_curve(model: Any, report: Any, name: str, n_steps: int = N_STEPS) -> StepCurve | None:
    """The curve for param ``name`` (its worst element) at the report's first point; ``None`` without room."""
    from .sources import finite_diff

    point = {k: np.asarray(v, dtype=np.float64) for k, v in report.points[0].params.items()}
    g = report.points[0].gradients[name]
    dtype = report.dtype
    eps = float(np.finfo(np.dtype(dtype)).eps)
    idx = tuple(g.worst_index())
    per_sample = model.reduction == "none"
    sample, elem = (idx[0], idx[1:]) if per_sample else (None, idx)
    p = float(point[name][elem])
    exact = float(g.values["symbolic"][idx])
    param = model.params[name]
    info = finite_diff.gradients(model, point, dtype).info
    method = str(info.get("method", {}).get(name, "Richardson"))
    chosen = np.array([])
    flat = int(np.ravel_multi_index(elem, param.shape)) if param.shape else 0
    if method != "complex step":
        first = float(finite_diff.start_steps(model, point, name, dtype).h0[flat])
        chosen = np.array([first / 2**j for j in range(finite_diff.LEVELS.get(dtype, 4))])
    h = np.logspace(math.log10(eps), 0, n_steps) * max(1.0, abs(p))
    if param.domain is not None:
        room = min(p - param.domain[0], param.domain[1] - p) * 0.99
        h = h[h <= room] if room > 0 else h[:0]
    if h.size == 0:
        return None
    t = np.dtype(dtype).type
    # The steps as the dtype can take them: p + h and p - h rounded to the dtype.
    plus, minus, half_plus, half_minus = (
        (np.float64(p) + factor * h).astype(t).astype(np.float64) for factor in (1.0, -1.0, 0.5, -0.5)
    )
    steps = np.concatenate([plus, minus, half_plus, half_minus]) - p
    lines = finite_diff.Lines.elements(model, name)
    f = finite_diff.reduced_along(model, point, lines, np.full(steps.size, flat), steps, dtype)
    if per_sample:
        f = f[:, sample]
    f = f.reshape(4, -1)
    with np.errstate(all="ignore"):
        central = (f[0] - f[1]) / (plus - minus)
        half = (f[2] - f[3]) / (half_plus - half_minus)
        extrapolated = half + (half - central) / 3
    f0 = finite_diff.reduced(model, point, dtype)
    loss = abs(float(np.asarray(f0)[sample] if per_sample else np.sum(f0)))
    return StepCurve(
        name=name,
        index=idx,
        value=p,
        exact=exact,
        h=h,
        central=np.abs(central - exact),
        extrapolated=np.abs(extrapolated - exact),
        method=method,
        chosen=chosen,
        fd_error=abs(float(g.values["finite_difference"][idx]) - exact),
        fd_estimate=float(np.asarray(g.fd_error)[idx]),
        autograd_error=abs(float(g.values["autograd"][idx]) - exact),
        loss=loss,
    )


def plot_steps(model: Any, report: Any, path: str | os.PathLike[str]) -> None:
    """Write the finite-difference error against step size, per parameter, to ``path``.

    Uses the report's first point (the model's values, or the API's ``at``).
    """
    dtype = report.dtype
    eps = float(np.finfo(np.dtype(dtype)).eps)
    names = list(report.points[0].gradients)[:MAX_PANELS]
    fig, axes = _figure(len(names), min(3, len(names)))
    for ax, name in zip(axes, names, strict=True):
        c = step_curve(model, report, name)
        if c is None:
            ax.text(0.5, 0.5, f"{name}: no room for a step inside its domain", transform=ax.transAxes, ha="center")
            continue
        shown = np.concatenate([c.central, c.extrapolated, [c.fd_error, c.fd_estimate, c.autograd_error]])
        positive = shown[np.isfinite(shown) & (shown > 0)]
        floor = float(positive.min()) / 10 if positive.size else eps * max(abs(c.exact), 1e-300)

        def lift(a: Any, floor: float = floor) -> Any:
            return np.where(np.asarray(a) > 0, a, floor)

        ax.loglog(c.h, lift(c.central), color="C0", marker=".", markersize=3, label="central difference at step h")
        if c.loss > 0 and math.isfinite(c.loss):
            ax.loglog(c.h, eps * c.loss / c.h, color="0.6", linestyle=":", label="rounding: eps * |loss| / h")
        ax.loglog(c.h, lift(c.extrapolated), color="C1", linestyle="--", label="extrapolated from h and h/2")
        for j, step in enumerate(c.chosen):
            ax.axvline(
                step, color="0.3", linestyle=(0, (1, 3)), linewidth=1,
                label=f"steps gradcheck used: {c.chosen[-1]:.2g} .. {c.chosen[0]:.2g}" if j == 0 else None,
            )  # fmt: skip
        ax.axhline(
            max(c.fd_error, floor), color="C2", linestyle="-",
            label=f"gradcheck's finite difference ({c.method}): {c.fd_error:.1e}",
        )  # fmt: skip
        ax.axhline(
            max(c.fd_estimate, floor), color="C2", linestyle="--",
            label=f"its error estimate: {c.fd_estimate:.1e}",
        )  # fmt: skip
        ag = c.autograd_error
        ax.axhline(
            max(ag, floor), color="C3", linestyle="-.",
            label=f"autograd: {ag:.1e}" if ag > 0 else "autograd: 0 (drawn at the floor)",
        )  # fmt: skip
        label = name if not c.index else f"{name}[{', '.join(map(str, c.index))}]"
        if report.points[0].gradients[name].values["symbolic"].size > 1:
            label += " (worst element)"
        ax.set_title(f"d loss/d {label} at {c.value:.6g}")
        ax.set_xlabel(f"step h (units of {name}; {dtype}, eps = {eps:.1e})")
        ax.set_ylabel("|error| against the exact symbolic value")
        ax.grid(True, which="major", alpha=0.3)
        ax.legend(fontsize="x-small", loc="best")
    fig.suptitle(f"{report.model}: finite-difference error against step size\n(truncation ~ h², rounding ~ eps/h)")
    _save(fig, path)
