"""Reports: the result of a check, as the JSON schema and as a readable table."""

from __future__ import annotations

import io
import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .compare import Tolerance, Verdict, severity, worst
from .display import error, number, short_value

#: Tensors with at most this many elements get one table row per element.
MAX_TABLE_ELEMENTS = 8


def _json_number(x: float) -> float | str:
    """A float for JSON: non-finite values become the strings "nan", "inf", "-inf"."""
    x = float(x)
    if math.isfinite(x):
        return x
    return "nan" if math.isnan(x) else ("inf" if x > 0 else "-inf")


def json_value(a: Any) -> Any:
    """A number or array for JSON: nested lists of floats, non-finite values as strings."""
    arr = np.asarray(a, dtype=np.float64)
    if arr.ndim == 0:
        return _json_number(float(arr))
    return [json_value(x) for x in arr]


def _label(name: str, idx: tuple[int, ...]) -> str:
    return name if not idx else f"{name}[{', '.join(map(str, idx))}]"


@dataclass
class GradientResult:
    """The verdict on one parameter's gradient at one point."""

    name: str
    shape: tuple[int, ...]
    values: dict[str, np.ndarray]
    fd_error: np.ndarray
    status: str
    odd_one_out: str | None
    note: str | None
    verdicts: dict[tuple[int, ...], Verdict] = field(repr=False, default_factory=dict)

    @classmethod
    def combine(
        cls,
        name: str,
        shape: tuple[int, ...],
        *,
        per_sample: bool,
        values: dict[str, np.ndarray],
        fd_error: np.ndarray,
        verdicts: dict[tuple[int, ...], Verdict],
    ) -> GradientResult:
        status = worst([v.status for v in verdicts.values()])
        bad = {idx: v for idx, v in verdicts.items() if v.status == status and status != "agree"}
        odd = {v.odd_one_out for v in bad.values()}
        odd_one_out = odd.pop() if len(odd) == 1 else None
        note = None
        if bad:
            idx, v = next(iter(bad.items()))
            note = v.note
            if shape:
                more = f" (and {len(bad) - 1} more element{'s' if len(bad) > 2 else ''})" if len(bad) > 1 else ""
                note = f"{_label(name, idx)}{more}: {note}"
        return cls(name, shape, values, fd_error, status, odd_one_out, note, verdicts)

    def worst_index(self) -> tuple[int, ...]:
        """The element with the worst status, then the largest relative error."""

        def key(idx: tuple[int, ...]) -> tuple[int, float]:
            return severity(self.values, self.verdicts[idx].status, idx)

        return max(self.verdicts, key=key) if self.verdicts else ()

    def rows(self) -> list[tuple[tuple[int, ...], str]]:
        """The table's rows, ``(index, label)``: every element of a small tensor, else the worst one."""
        size = int(np.prod(self.values["symbolic"].shape, dtype=np.int64))
        if size <= MAX_TABLE_ELEMENTS:
            return [(idx, _label(self.name, idx)) for idx in self.verdicts]
        idx = self.worst_index()
        return [(idx, f"{_label(self.name, idx)} (worst of {size})")]

    def to_dict(self) -> dict[str, Any]:
        return {
            "shape": list(self.shape),
            "values": {src: json_value(v) for src, v in self.values.items()},
            "fd_error": json_value(self.fd_error),
            "status": self.status,
            "odd_one_out": self.odd_one_out,
            "note": self.note,
        }


@dataclass
class PointResult:
    """Every parameter's verdict at one point."""

    params: dict[str, np.ndarray]
    loss: Any
    gradients: dict[str, GradientResult]
    #: With ``order=2``: the :class:`gradcheck.hessian.HessianResult` at this point.
    hessian: Any = None

    @property
    def status(self) -> str:
        return worst([g.status for g in self.gradients.values()] + ([self.hessian.status] if self.hessian else []))

    def to_dict(self) -> dict[str, Any]:
        out = {
            "params": {k: json_value(v) for k, v in self.params.items()},
            "loss": json_value(self.loss),
            "status": self.status,
            "gradients": {k: g.to_dict() for k, g in self.gradients.items()},
        }
        if self.hessian is not None:
            out["hessian"] = self.hessian.to_dict()
        return out


@dataclass(frozen=True)
class FormulaLine:
    """One derivative formula as the table prints it: text made during the check, not while rendering."""

    loss: str  # the loss entry's name
    param: str
    text: str  # the model-language formula, as in the JSON ``formulas``

    def text_for(self, unicode: bool) -> str:
        """``  ∂loss/∂W1 = outer(...)`` (``d`` for ``∂`` off a Unicode console)."""
        d = "\u2202" if unicode else "d"
        return f"  {d}{self.loss}/{d}{self.param} = {self.text}"


@dataclass
class Report:
    """The result of :func:`gradcheck.check`.

    ``status`` is the worst status of every gradient at every point; ``ok``
    is true when it is ``agree`` (or ``kink``, unless the check was strict).
    """

    model: str
    dtype: str
    tolerance: Tolerance
    sources: list[str]
    #: Per param, the derivative of the per-sample loss as model-language text (``gradcheck formulas``).
    formulas: dict[str, str]
    points: list[PointResult]
    notes: list[str] = field(default_factory=list)
    strict: bool = False
    #: What the table prints under "d(per-sample loss)/d(param)", computed during the check.
    formula_lines: list[FormulaLine] = field(default_factory=list)
    #: K in directional mode (``gradients`` then holds ``direction[0]``, ...), else None.
    directions: int | None = None
    #: Per param, ``\frac{\partial \ell}{\partial w} = ...``: the formula in LaTeX (notebooks show it).
    formulas_latex: dict[str, str] = field(default_factory=dict)

    @property
    def status(self) -> str:
        return worst([p.status for p in self.points])

    @property
    def ok(self) -> bool:
        return self.status == "agree" or (self.status == "kink" and not self.strict)

    def to_dict(self) -> dict[str, Any]:
        """The JSON report (``../shared/SPEC.md`` section 5)."""
        out: dict[str, Any] = {
            "model": self.model,
            "ok": self.ok,
            "status": self.status,
            "dtype": self.dtype,
            "rtol": self.tolerance.rtol,
            "atol": self.tolerance.atol,
            "sources": list(self.sources),
            "formulas": self.formulas,
            "points": [p.to_dict() for p in self.points],
        }
        if self.directions:
            out["directions"] = self.directions
        if self.notes:
            out["notes"] = list(self.notes)
        return out

    # -- the readable form -------------------------------------------------

    def render(self, console: Any) -> None:
        """Print the table(s), notes and formulas to a rich console."""
        from rich.table import Table
        from rich.text import Text

        colours = {"agree": "green", "kink": "yellow", "undefined": "magenta", "mismatch": "bold red"}
        title = Text(f"{self.model}: ")
        title.append(self.status, style=colours[self.status])
        title.append(f"  ({self.dtype}, rtol {self.tolerance.rtol:g}, atol {self.tolerance.atol:g})", style="dim")
        console.print(title)
        extra = [s for s in self.sources if s not in ("symbolic", "autograd", "finite_difference")]
        for i, point in enumerate(self.points):
            where = "the model's values" if i == 0 else "random point"
            params = ", ".join(f"{k} = {short_value(v)}" for k, v in point.params.items())
            console.print(Text(f"point {i} ({where}): {params}; loss = {short_value(point.loss)}", style="bold"))
            table = Table(show_edge=False, pad_edge=False, header_style="bold")
            table.add_column("param")
            for src in self.sources:
                table.add_column(src, justify="right")
            table.add_column("err autograd", justify="right")
            table.add_column("err fd", justify="right")
            for src in extra:
                table.add_column(f"err {src}", justify="right")
            table.add_column("fd est.", justify="right")
            table.add_column("status")
            notes = []
            for g in point.gradients.values():
                for idx, label in g.rows():
                    ref = float(g.values["symbolic"][idx])
                    cells = [label]
                    cells += [number(float(g.values[src][idx])) for src in self.sources]
                    for src in ["autograd", "finite_difference"] + extra:
                        cells.append(error(float(g.values[src][idx]) - ref))
                    cells.append(error(float(g.fd_error[idx])))
                    verdict = g.verdicts[idx]
                    cells.append(verdict.status + (f" ({verdict.odd_one_out})" if verdict.odd_one_out else ""))
                    table.add_row(*cells, style=None if verdict.status == "agree" else colours[verdict.status])
                if g.note:
                    notes.append(f"{g.name}: {g.note}")
            console.print(table)
            for note in notes:
                console.print(Text("  note: " + note, style="yellow"))
            if point.hessian is not None:
                self._render_hessian(console, point.hessian, colours)
        if self.formula_lines:
            console.print(Text("d(per-sample loss)/d(param):", style="bold"))
            unicode = (console.encoding or "").lower().startswith("utf")
            for line in self.formula_lines:
                console.print(Text(line.text_for(unicode)), highlight=False)
        for note in self.notes:
            console.print(Text("note: " + note, style="dim"))

    def _render_hessian(self, console: Any, h: Any, colours: dict[str, str]) -> None:
        """The Hessian block: its worst entries (each symmetric pair once)."""
        from rich.table import Table
        from rich.text import Text

        shown = h.worst()
        what = (
            f"u . H v for {len(h.verdicts)} random pairs"
            if h.directions
            else f"Hessian, {len(h.entries)}x{len(h.entries)}"
        )
        title = Text(f"second order ({what}): ")
        title.append(h.status, style=colours[h.status])
        if len(shown) < len(h.verdicts) and not h.directions:
            title.append(f"  (the {len(shown)} worst entries)", style="dim")
        console.print(title)
        sources = list(h.values)
        table = Table(show_edge=False, pad_edge=False, header_style="bold")
        table.add_column("entry")
        for src in sources:
            table.add_column(src, justify="right")
        for src in sources[1:]:
            table.add_column(f"err {src}" if src != "finite_difference" else "err fd", justify="right")
        table.add_column("fd est.", justify="right")
        table.add_column("status")
        for idx in shown:
            ref = float(h.values["symbolic"][idx])
            cells = [h.label(idx)] + [number(float(h.values[src][idx])) for src in sources]
            cells += [error(float(h.values[src][idx]) - ref) for src in sources[1:]]
            cells.append(error(float(h.fd_error[idx])))
            verdict = h.verdicts[idx]
            cells.append(verdict.status + (f" ({verdict.odd_one_out})" if verdict.odd_one_out else ""))
            table.add_row(*cells, style=None if verdict.status == "agree" else colours[verdict.status])
        console.print(table)
        for note in h.notes():
            console.print(Text("  note: " + note, style="yellow"))

    def table(self, width: int = 140) -> str:
        """The readable report as plain text (no colour)."""
        from rich.console import Console

        buf = io.StringIO()
        console = Console(file=buf, width=width, color_system=None, force_terminal=False, highlight=False)
        self.render(console)
        return buf.getvalue()

    def __str__(self) -> str:
        return self.table()

    def _repr_html_(self) -> str:
        """Jupyter's view: an HTML table with the formulas in LaTeX (see :mod:`gradcheck.display`)."""
        from .display import report_html

        return report_html(self)
