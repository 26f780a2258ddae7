"""Second order (``order=2``): the Hessian of the reduced loss three ways, and the verdict per entry.

The Hessian is taken over all parameter elements flattened in file order
(entry labels ``w``, ``b``, ``W[0, 1]``). The sources:

* ``symbolic``: forward-mode tangents over the symbolic tape
  (:mod:`gradcheck.sources.symbolic.second`), evaluated exactly in mpmath;
* ``autograd``: torch's double backward of the expression as written
  (:func:`gradcheck.sources.autograd.hessian`); an ``against`` callable's
  Hessian (its own double backward) joins the same way;
* ``finite_difference``: Ridders' extrapolation of differences of the
  finite-difference gradient, from loss values only
  (:mod:`gradcheck.sources.finite_diff.second`), with an error estimate.

Each entry is judged by :func:`gradcheck.compare.judge` (the same statuses
and odd-one-out rules as gradients), the tolerance scaled by the mean over
samples of the per-sample entry's magnitude. Where a kinked function sits
on its kink (``relu`` at 0, ``abs``), one-sided second differences are
compared and entries whose sides differ are reported as ``kink``. With
``directions=K`` the check compares ``u_k . H v_k`` for K seeded random
pairs of unit vectors instead of forming the matrix.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from . import compare
from .compare import Verdict, severity, worst
from .errors import ModelError
from .model import Model
from .report import json_value

#: Rows of the Hessian block the table shows (the worst entries).
TABLE_ROWS = 6


def entry_labels(model: Model) -> list[str]:
    """``w``, ``b``, ``W[0, 1]``, ...: every parameter element in file order."""
    out = []
    for name, p in model.params.items():
        for idx in np.ndindex(*p.shape):
            out.append(name if not idx else f"{name}[{', '.join(map(str, idx))}]")
    return out


@dataclass
class HessianResult:
    """The verdict on the Hessian (or on ``u . H v`` per direction pair) at one point.

    ``values`` maps each source to an ``(n, n)`` matrix (``(K,)`` in
    directional mode); ``fd_error`` and ``verdicts`` are indexed the same way.
    In directional mode ``pairs`` holds ``(us, vs)``, the ``(K, n)`` unit
    vectors (over ``entries``) of each ``u[k] . H v[k]``, and ``seed`` the
    seed they were drawn from (:func:`pairs`).
    """

    entries: list[str]
    values: dict[str, np.ndarray]
    fd_error: np.ndarray
    verdicts: dict[tuple[int, ...], Verdict] = field(repr=False)
    directions: bool = False
    pairs: tuple[np.ndarray, np.ndarray] | None = field(default=None, repr=False)
    seed: int | None = None

    @property
    def status(self) -> str:
        return worst([v.status for v in self.verdicts.values()])

    def _grid(self, pick: Callable[[Verdict], Any]) -> Any:
        shape = np.shape(self.values["symbolic"])
        if len(shape) == 1:
            return [pick(self.verdicts[(i,)]) for i in range(shape[0])]
        return [[pick(self.verdicts[(i, j)]) for j in range(shape[1])] for i in range(shape[0])]

    def label(self, idx: tuple[int, ...]) -> str:
        if self.directions:
            return f"u[{idx[0]}] . H v[{idx[0]}]"
        return f"d2/d{self.entries[idx[0]]} d{self.entries[idx[1]]}"

    def worst(self, count: int = TABLE_ROWS) -> list[tuple[int, ...]]:
        """The ``count`` entries with the worst status, then the largest error relative to the exact value."""

        def key(idx: tuple[int, ...]) -> tuple[int, float]:
            return severity(self.values, self.verdicts[idx].status, idx)

        # a symmetric matrix: each pair once
        keys = [idx for idx in self.verdicts if len(idx) == 1 or idx[0] <= idx[1]]
        return sorted(keys, key=key, reverse=True)[:count]

    def notes(self) -> list[str]:
        bad = [idx for idx in self.worst(len(self.verdicts)) if self.verdicts[idx].status != "agree"]
        if not bad:
            return []
        first = self.verdicts[bad[0]]
        more = f" (and {len(bad) - 1} more)" if len(bad) > 1 else ""
        return [f"{self.label(bad[0])}{more}: {first.note}"]

    def to_dict(self) -> dict[str, Any]:
        """The JSON ``hessian`` object; in directional mode with ``rows`` and ``pairs`` (seed, ``u``, ``v``)."""
        out: dict[str, Any] = {
            "entries": list(self.entries),
            "values": {src: json_value(v) for src, v in self.values.items()},
            "fd_error": json_value(self.fd_error),
            "status": self._grid(lambda v: v.status),
            "odd_one_out": self._grid(lambda v: v.odd_one_out),
        }
        if self.directions and self.pairs is not None:
            us, vs = self.pairs
            out["rows"] = [self.label((k,)) for k in range(len(us))]
            out["pairs"] = {"seed": self.seed, "u": json_value(us), "v": json_value(vs)}
        return out


def unusable(model: Model) -> None:
    """Raise :class:`ModelError` where a second-order check does not apply."""
    if model.reduction == "none":
        raise ModelError(
            "order=2 checks the Hessian of the reduced loss, but the model has `reduction: none`",
            file=model.path,
            entry="reduction",
            fix="use `reduction: mean` or `reduction: sum` for --order 2",
        )


def pairs(model: Model, count: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """``(us, vs)``: ``count`` seeded random pairs of unit vectors over all parameter elements, ``(K, n)`` each."""
    rng = np.random.default_rng([seed, 0xD2])
    n = sum(p.value.size for p in model.params.values())
    u, v = rng.standard_normal((count, n)), rng.standard_normal((count, n))
    u /= np.maximum(np.linalg.norm(u, axis=1, keepdims=True), 1e-300)
    v /= np.maximum(np.linalg.norm(v, axis=1, keepdims=True), 1e-300)
    return u, v


def _split(model: Model, flat: np.ndarray) -> dict[str, np.ndarray]:
    """``(K, n)`` rows -> parameter -> ``(K,) + shape``."""
    out, start = {}, 0
    for name, p in model.params.items():
        out[name] = flat[:, start : start + p.value.size].reshape((flat.shape[0],) + p.shape)
        start += p.value.size
    return out


def _user(name: str, call: Callable[[], Any]) -> Any:
    try:
        return call()
    except ModelError:
        raise
    except Exception as err:  # the user's code failed: say which and why
        raise ModelError(
            f"{name} raised {type(err).__name__} in its double backward: {err}",
            fix="fix the function passed to `against` (order=2 differentiates its backward)",
        ) from err


def check_point(
    model: Model,
    point: dict[str, np.ndarray],
    tol: compare.Tolerance,
    dtype: str,
    *,
    against: Mapping[str, Callable[..., Any]] | None = None,
    directions: int | None = None,
    seed: int = 0,
) -> HessianResult:
    """The Hessian three ways (and each ``against`` callable's double backward) at ``point``, judged per entry."""
    from .sources import autograd
    from .sources.finite_diff import second as fd_second
    from .sources.symbolic import second as sym_second

    unusable(model)
    if directions:
        us, vs = pairs(model, directions, seed)
        sym = sym_second.directional(model, point, us, vs)
        values = {"symbolic": sym.values["uHv"], "autograd": autograd.hessian_directional(model, point, us, vs, dtype)}
        values["finite_difference"], fd_error = fd_second.directional(
            model, point, _split(model, us), _split(model, vs), dtype
        )
        for name, fn in (against or {}).items():
            values[name] = _user(name, lambda: autograd.hessian_directional(model, point, us, vs, dtype, fn, name))
        scale = sym.info["scale"]["uHv"]
        kink = None
        if _sites(model, point):
            kink = _one_sided(model, point, dtype, lambda side: _directional_sides(model, point, us, vs, dtype, side))
        result = _judge(model, entry_labels(model), values, fd_error, scale, kink, sym.loss, tol, True)
        result.pairs, result.seed = (us, vs), seed
        return result
    sym = sym_second.hessian(model, point)
    values = {"symbolic": sym.values["hessian"], "autograd": autograd.hessian(model, point, dtype)}
    values["finite_difference"], fd_error = fd_second.hessian(model, point, dtype)
    for name, fn in (against or {}).items():
        values[name] = _user(name, lambda: autograd.hessian(model, point, dtype, fn, name))
    kink = None
    if _sites(model, point):
        kink = _one_sided(model, point, dtype, lambda side: fd_second.one_sided(model, point, dtype, side))
    return _judge(
        model, entry_labels(model), values, fd_error, sym.info["scale"]["hessian"], kink, sym.loss, tol, False
    )


def _sites(model: Model, point: Mapping[str, np.ndarray]) -> list[Any]:
    from .kinks import find_sites

    return find_sites(model, point)


@dataclass
class _Sides:
    left: np.ndarray
    right: np.ndarray
    differs: np.ndarray
    note: str


def _one_sided(model: Model, point: dict[str, np.ndarray], dtype: str, sides: Callable[[float], Any]) -> _Sides:
    """Left and right second differences where a kinked function sits on its kink."""
    sites = _sites(model, point)
    (left, lerr), (right, rerr) = sides(-1.0), sides(1.0)
    scale = np.maximum(np.abs(left), np.abs(right))
    with np.errstate(invalid="ignore"):
        differs = ~(np.abs(left - right) <= 10 * (lerr + rerr) + 1e-9 * scale)
    site = sites[0]
    where = f"samples {', '.join(map(str, site.samples))} (counting from 0)" if site.samples else "this point"
    more = f" (and {len(sites) - 1} more)" if len(sites) > 1 else ""
    note = (
        f"{site.text} in {site.entry!r} is at its kink for {where}{more}: the first derivative is not "
        f"differentiable here, so the second derivative does not exist; {site.convention}"
    )
    return _Sides(left, right, differs, note)


def _directional_sides(
    model: Model, point: dict[str, np.ndarray], us: np.ndarray, vs: np.ndarray, dtype: str, side: float
) -> tuple[np.ndarray, np.ndarray]:
    from .sources.finite_diff import second as fd_second

    return fd_second.directional(model, point, _split(model, us), _split(model, vs), dtype, side=side)


def _judge(
    model: Model,
    entries: list[str],
    values: dict[str, np.ndarray],
    fd_error: np.ndarray,
    scale: np.ndarray,
    kink: _Sides | None,
    loss: Any,
    tol: compare.Tolerance,
    directional: bool,
) -> HessianResult:
    values = {k: np.asarray(v, dtype=np.float64) for k, v in values.items()}
    loss_ok = bool(np.all(np.isfinite(np.asarray(loss, dtype=np.float64))))
    verdicts = {}
    for idx in np.ndindex(*values["symbolic"].shape):
        here = {src: float(v[idx]) for src, v in values.items()}
        one_kink = None
        if kink is not None and bool(kink.differs[idx]):
            one_kink = (float(kink.left[idx]), float(kink.right[idx]), kink.note)
        verdicts[idx] = compare.judge(
            here,
            scale=compare.element_scale(scale, idx),
            fd_error=float(fd_error[idx]),
            tol=tol,
            exact_loss_finite=loss_ok,
            kink=one_kink,
        )
    return HessianResult(entries, values, np.asarray(fd_error, dtype=np.float64), verdicts, directional)
