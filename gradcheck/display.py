"""How results show in a Jupyter notebook: a report as an HTML table, a train result as its loss curve.

:func:`report_html` is ``Report._repr_html_``: per point, the rows of the
text table (every element of a small tensor, the worst one of a large one),
the three values and the errors, a status cell coloured as the terminal
colours it, the odd one out marked (its value cell outlined and named in the
status); then the notes and the derivative formulas as LaTeX between ``$``
(MathJax typesets them). :func:`train_png` is ``TrainResult._repr_png_``: the
figure ``gradcheck train --plot`` writes (:func:`gradcheck.plots.plot_losses`).

Everything shown is computed during the check or the training; rendering only
formats it. The number formats of the text tables (:func:`number`, :func:`error`,
:func:`short_value`) live here too, so both forms print the same digits.
"""

from __future__ import annotations

import html
import math
import os
import tempfile
from typing import Any

import numpy as np

#: Status colours (a background per status, as the terminal's foreground colours).
COLOURS = {"agree": "#d4edda", "kink": "#fff3cd", "undefined": "#f3d9fa", "mismatch": "#f8d7da"}
_ODD = "outline: 2px solid #c0392b; font-weight: bold"
_THREE = ("symbolic", "autograd", "finite_difference")


def _cell(text: str, tag: str = "td", style: str = "") -> str:
    attr = f' style="{style}"' if style else ""
    return f"<{tag}{attr}>{html.escape(text)}</{tag}>"


def number(x: float) -> str:
    """A value as the tables print it (every digit of a float64)."""
    if not math.isfinite(x):
        return str(x)
    return f"{x:.16g}"


def error(x: float) -> str:
    """An error (a difference, or an estimate) as the tables print it: its size, two digits."""
    if not math.isfinite(x):
        return str(abs(x))
    return f"{abs(x):.1e}"


def short_value(v: Any) -> str:
    """A param value or loss in a table's heading: a number, a short vector, or a tensor's shape."""
    arr = np.asarray(v, dtype=np.float64)
    if arr.ndim == 0:
        return f"{float(arr):.10g}"
    if arr.size <= 4:
        return "[" + ", ".join(f"{x:.6g}" for x in arr.reshape(-1)) + "]"
    return f"<{'x'.join(map(str, arr.shape))} tensor>"


def report_html(report: Any) -> str:
    """The HTML of a :class:`gradcheck.report.Report` (see the module docstring)."""
    status = report.status
    out = [
        '<div class="gradcheck-report">',
        f"<p><b>{html.escape(report.model)}</b>: "
        f'<span class="gradcheck-status" style="background: {COLOURS[status]}; padding: 0 0.3em">'
        f"{html.escape(status)}</span> "
        f"<small>({html.escape(report.dtype)}, rtol {report.tolerance.rtol:g}, atol {report.tolerance.atol:g})</small></p>",
    ]
    extra = [s for s in report.sources if s not in _THREE]
    for i, point in enumerate(report.points):
        where = "the model's values" if i == 0 else "random point"
        params = ", ".join(f"{k} = {short_value(v)}" for k, v in point.params.items())
        out.append(f"<p>point {i} ({where}): {html.escape(params)}; loss = {html.escape(short_value(point.loss))}</p>")
        head = ["param", *report.sources, "err autograd", "err fd", *(f"err {s}" for s in extra), "fd est.", "status"]
        out.append('<table class="gradcheck-table">')
        out.append("<tr>" + "".join(_cell(h, "th") for h in head) + "</tr>")
        notes = []
        for g in point.gradients.values():
            for idx, label in g.rows():
                verdict = g.verdicts[idx]
                ref = float(g.values["symbolic"][idx])
                cells = [_cell(label)]
                for src in report.sources:
                    odd = verdict.status != "agree" and verdict.odd_one_out == src
                    cells.append(_cell(number(float(g.values[src][idx])), style=_ODD if odd else ""))
                cells += [
                    _cell(error(float(g.values[src][idx]) - ref)) for src in ["autograd", "finite_difference", *extra]
                ]
                cells.append(_cell(error(float(g.fd_error[idx]))))
                text = verdict.status + (f" (odd one out: {verdict.odd_one_out})" if verdict.odd_one_out else "")
                cells.append(_cell(text, style=f"background: {COLOURS[verdict.status]}"))
                out.append("<tr>" + "".join(cells) + "</tr>")
            if g.note:
                notes.append(f"{g.name}: {g.note}")
        out.append("</table>")
        if point.hessian is not None:
            h = point.hessian.status
            out.append(
                f'<p>second order: <span style="background: {COLOURS[h]}; padding: 0 0.3em">{html.escape(h)}</span></p>'
            )
            notes += list(point.hessian.notes())
        out += [f"<p><small>note: {html.escape(n)}</small></p>" for n in notes]
    if report.formulas_latex:
        out.append("<p>derivatives of the per-sample loss:</p><ul>")
        out += [f"<li>${html.escape(latex)}$</li>" for latex in report.formulas_latex.values()]
        out.append("</ul>")
    out += [f"<p><small>note: {html.escape(n)}</small></p>" for n in report.notes]
    out.append("</div>")
    return "\n".join(out)


def train_png(result: Any) -> bytes:
    """The loss curve of a :class:`gradcheck.TrainResult` as PNG bytes (the ``train --plot`` figure)."""
    from .plots import plot_losses

    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "losses.png")
        plot_losses(result, path)
        with open(path, "rb") as f:
            return f.read()
