"""Finding non-differentiable points from the expression.

A kink is a point where one-sided derivatives differ. Candidates come from
the expression: every op with a ``kink`` rule in the op table (``relu``,
``abs``, ``max``/``min`` ties, ...) is evaluated at the point, and where its
argument sits exactly on the kink for some sample, the parameters it depends
on are candidates. A candidate is confirmed by one-sided finite differences
(left and right derivatives that differ beyond their error).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from . import interp
from .expr import Node, unparse
from .model import Model
from .ops import OPS


@dataclass
class KinkSite:
    """One application of a kinked function that sits on its kink."""

    function: str
    text: str
    entry: str
    samples: list[int]
    params: set[str]
    convention: str


@dataclass
class Kink:
    """One-sided derivatives at kink sites: of one parameter's elements, or along directions.

    ``left``, ``right``, ``error`` and ``differs`` are shaped like the
    gradient they belong to (per element, or per direction); ``along`` is
    True for directions (the notes say so).
    """

    left: np.ndarray
    right: np.ndarray
    error: np.ndarray
    differs: np.ndarray  # True where the two sides differ
    sites: list[KinkSite] = field(default_factory=list)
    along: bool = False

    def entry(self, j: int) -> Kink:
        """The sides of line ``j`` only (one direction)."""
        return Kink(self.left[j], self.right[j], self.error[j], self.differs[j], self.sites, self.along)

    def note(self, index: tuple[int, ...] = ()) -> str:
        site = self.sites[0]
        where = (
            f"sample{'s' if len(site.samples) > 1 else ''} {', '.join(map(str, site.samples))}"
            + ("" if self.along else " (counting from 0)")
            if site.samples
            else "this point"
        )
        left, right = float(np.asarray(self.left)[index]), float(np.asarray(self.right)[index])
        more = f" (and {len(self.sites) - 1} more)" if len(self.sites) > 1 else ""
        sides = (
            f"left derivative along this direction {left:.10g}, right {right:.10g}"
            if self.along
            else f"left derivative {left:.10g}, right derivative {right:.10g}"
        )
        return f"{site.text} in {site.entry!r} is at its kink for {where}{more}: {sides}; {site.convention}"


def _confirm(sides: tuple[np.ndarray, np.ndarray, np.ndarray], sites: list[KinkSite], along: bool = False) -> Kink:
    """A :class:`Kink` from one-sided derivatives: the sides differ beyond their error."""
    left, right, err = sides
    scale = np.maximum(np.abs(left), np.abs(right))
    return Kink(left, right, err, np.abs(left - right) > 10 * err + 1e-9 * scale, sites, along)


def _dependencies(model: Model) -> dict[str, set[str]]:
    """For each entry, the parameters it depends on (through earlier entries)."""
    deps: dict[str, set[str]] = {}
    for name, node in model.entries.items():
        out: set[str] = set()
        for ref in node.names():
            if ref in model.params:
                out.add(ref)
            elif ref in deps:
                out |= deps[ref]
        deps[name] = out
    return deps


def find_sites(model: Model, point: Mapping[str, np.ndarray]) -> list[KinkSite]:
    """Kinked functions whose argument lies exactly on the kink at ``point``."""
    deps = _dependencies(model)
    owner: dict[int, str] = {}
    for name, node in model.entries.items():
        for n in node.walk():
            owner[id(n)] = name
    sites: list[KinkSite] = []

    def visit(node: Node, args: list[Any]) -> None:
        op = OPS[node.op]
        if op.kink is None:
            return
        with np.errstate(all="ignore"):
            # a structural op's kink rule takes the node's attributes too (a pool's window size)
            attrs = op.bind(node.attrs) if op.kind == "structural" else {}
            mask = np.asarray(op.kink(np, *[np.asarray(a) for a in args], **attrs)) == 0
        if not mask.any():
            return
        params: set[str] = set()
        for arg in node.args:
            for ref in arg.names():
                if ref in model.params:
                    params.add(ref)
                elif ref in deps:
                    params |= deps[ref]
        if not params:
            return
        samples: list[int] = []
        if model.data and mask.ndim > len(node.shape):
            n = model.n_samples
            flat = np.broadcast_to(mask, mask.shape[:1] + mask.shape[1:]).reshape(mask.shape[0], -1)
            if flat.shape[0] == n:
                samples = [int(i) for i in np.nonzero(flat.any(axis=1))[0]]
        sites.append(KinkSite(op.name, unparse(node), owner.get(id(node), "?"), samples, params, op.convention))

    env: dict[str, Any] = {k: np.asarray(v, dtype=np.float64) for k, v in point.items()}
    env.update(model.data)
    with np.errstate(all="ignore"):
        interp.evaluate(model.entries, env, "numpy", np, until=model.loss, visit=visit)
    return sites


def find(model: Model, point: Mapping[str, np.ndarray], dtype: str) -> dict[str, Kink]:
    """One-sided derivatives of each parameter that a kinked function at its kink depends on.

    ``differs`` marks the elements where the sides differ (a real kink); where
    they agree the point is smooth, but a central difference there straddles
    a jump in the second derivative, so the check widens its error estimate.
    """
    from .sources import finite_diff

    sites = find_sites(model, point)
    out: dict[str, Kink] = {}
    for name in model.params:
        mine = [s for s in sites if name in s.params]
        if not mine:
            continue
        out[name] = _confirm(finite_diff.one_sided(model, point, name, "float64"), mine)
    return out


def find_along(model: Model, point: Mapping[str, np.ndarray], directions: Mapping[str, np.ndarray]) -> Kink | None:
    """One-sided derivatives along each direction (parameter -> ``(K,) + shape``) when some kink site exists.

    Arrays ``(K,)`` (``(K, N)`` for ``reduction: none``); ``None`` when no
    kinked function sits on its kink at ``point``.
    """
    from .sources import finite_diff

    sites = find_sites(model, point)
    if not sites:
        return None
    return _confirm(finite_diff.sides(model, point, finite_diff.Lines.along(directions), "float64"), sites, along=True)
