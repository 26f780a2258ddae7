"""The one exception bad input raises, and the shape of its message."""

from __future__ import annotations

from typing import Any


class ModelError(ValueError):
    """A model file, expression or argument that gradcheck cannot use.

    The message has one shape everywhere::

        FILE:LINE:COL: ENTRY: what is wrong — how to fix it
            the expression
            ^

    Parts that are unknown (a model built from a dict has no file) are left out.
    The parts are kept as attributes for programs that want them.
    """

    def __init__(
        self,
        what: str,
        *,
        fix: str | None = None,
        file: str | None = None,
        entry: str | None = None,
        line: int | None = None,
        col: int | None = None,
        text: str | None = None,
        offset: int | None = None,
    ) -> None:
        self.what = what
        self.fix = fix
        self.file = file
        self.entry = entry
        self.line = line
        self.col = col
        self.text = text
        self.offset = offset
        super().__init__(self._render())

    def _render(self) -> str:
        where = ""
        if self.file:
            where = self.file
            if self.line is not None:
                where += f":{self.line}"
                if self.col is not None:
                    where += f":{self.col}"
            where += ": "
        head = where + (f"{self.entry}: " if self.entry else "") + self.what
        if self.fix:
            head += f" — {self.fix}"
        if self.text is not None and self.offset is not None:
            text = self.text.rstrip("\n")  # a block scalar's final newline
            offset = min(self.offset, len(text))
            start = text.rfind("\n", 0, offset) + 1  # several lines: show the one with the caret
            end = text.find("\n", start)
            shown = text[start : len(text) if end < 0 else end]
            head += f"\n    {shown}\n    {' ' * (offset - start)}^"
        return head

    def located(self, **where: object) -> ModelError:
        """A copy with the missing location parts filled in from ``where``."""
        parts: dict[str, Any] = {
            "fix": self.fix,
            "file": self.file,
            "entry": self.entry,
            "line": self.line,
            "col": self.col,
            "text": self.text,
            "offset": self.offset,
        }
        for key, value in where.items():
            if parts.get(key) is None:
                parts[key] = value
        return ModelError(self.what, **parts)


def close_match(name: str, candidates: object) -> str | None:
    """The candidate closest to ``name``, if one is close enough to suggest."""
    import difflib

    names = sorted(str(c) for c in candidates)  # type: ignore[attr-defined]
    found = difflib.get_close_matches(name, names, n=1, cutoff=0.6)
    if not found:
        lowered = {n.lower(): n for n in names}
        if name.lower() in lowered:
            return lowered[name.lower()]
        return None
    return found[0]
