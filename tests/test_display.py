"""Notebook views: a report's HTML table (``_repr_html_``), a train result's loss curve (``_repr_png_``)."""

from __future__ import annotations

import io
from html.parser import HTMLParser
from pathlib import Path

import gradcheck as gc

REPO = Path(__file__).resolve().parents[1]


class _Table(HTMLParser):
    """The rows of every <table> as lists of (text, style) cells."""

    def __init__(self) -> None:
        super().__init__()
        self.rows: list[list[tuple[str, str]]] = []
        self.styles: list[str] = []
        self._cell: list[str] | None = None
        self._style = ""

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "tr":
            self.rows.append([])
        elif tag in ("td", "th"):
            self._cell, self._style = [], dict(attrs).get("style") or ""

    def handle_endtag(self, tag: str) -> None:
        if tag in ("td", "th") and self._cell is not None:
            self.rows[-1].append(("".join(self._cell), self._style))
            self._cell = None

    def handle_data(self, data: str) -> None:
        if self._cell is not None:
            self._cell.append(data)


def rows(html: str) -> list[list[tuple[str, str]]]:
    parser = _Table()
    parser.feed(html)
    return parser.rows


def test_report_html_lesson_rows_and_values() -> None:
    model = gc.load(str(REPO / "examples" / "lesson.yaml"))
    html = gc.check(model)._repr_html_()
    table = rows(html)
    head = [text for text, _ in table[0]]
    assert head[:4] == ["param", "symbolic", "autograd", "finite_difference"]
    assert head[-1] == "status"
    (w,) = table[1:]
    assert w[0][0] == "w"
    # dL/dw at w = 1: the mean of 2*x*(x*w - y) = -2*x**2 over x = 1, 2, 3 is -28/3
    for text, _ in w[1:4]:
        assert abs(float(text) - (-28 / 3)) < 1e-9
    status, style = w[-1]
    assert status == "agree"
    assert "#d4edda" in style  # green
    assert "agree" in html.split("</p>")[0]  # the verdict heads the view


def test_report_html_marks_the_odd_one_out() -> None:
    model = gc.load(str(REPO / "examples" / "expected_wrong.yaml"))
    report = gc.check(model)
    table = rows(report._repr_html_())
    head = [text for text, _ in table[0]]
    by_param = {row[0][0]: row for row in table[1:]}
    w = by_param["w"]
    assert w[-1][0] == "mismatch (odd one out: expected)"
    assert "#f8d7da" in w[-1][1]  # red
    marked = [head[i] for i, (_, style) in enumerate(w) if "outline" in style]
    assert marked == ["expected"]
    assert by_param["b"][-1][0] == "agree"
    assert not any("outline" in style for _, style in by_param["b"])


def test_report_html_escapes_text() -> None:
    model = gc.loads("params: {w: 1.0}\nmodel: {loss: w**2}\n", name="<b>x</b>")
    html = gc.check(model)._repr_html_()
    assert "<b>x</b>" not in html
    assert "&lt;b&gt;x&lt;/b&gt;" in html


def test_train_result_png_is_the_loss_curve() -> None:
    from matplotlib.image import imread

    result = gc.train(gc.load(str(REPO / "examples" / "lesson.yaml")), epochs=5)
    png = result._repr_png_()
    assert png.startswith(b"\x89PNG\r\n\x1a\n")
    image = imread(io.BytesIO(png), format="png")
    # plots.plot_losses draws one 5.2 x 3.9 inch panel at 110 dpi
    assert image.shape[:2] == (round(3.9 * 110), round(5.2 * 110))
