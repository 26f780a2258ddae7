"""Reading a model file's YAML text, keeping where each value stands.

One job: text -> a Python document plus a :class:`Positions` map from a
path in the document (``("params", "W1", 17, 42)``) to its line and column.
Numbers are read as YAML 1.2 and JSON read them (``5e-06`` and ``1e3`` are
numbers, not text); duplicate keys, Python tags and control characters are
errors. No validation of the model happens here, and no backend is imported.
"""

from __future__ import annotations

import os
import re
from typing import Any

import yaml

from .errors import ModelError

#: Floats as YAML 1.2's core schema (and JSON) write them: an exponent needs no
#: dot (``1e-3``, ``5e-06``). PyYAML follows YAML 1.1, which reads those as text.
_FLOAT_1_2 = re.compile(r"^[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)(?:[eE][-+]?[0-9]+)?$")


class Loader(yaml.SafeLoader):
    """PyYAML's safe loader with YAML 1.2 numbers.

    A subclass, so that the global ``yaml.SafeLoader`` other code in the
    process uses is left as it is. Integers still resolve first (the resolver
    added here comes after PyYAML's own), so ``10`` stays an ``int``.
    """


Loader.add_implicit_resolver("tag:yaml.org,2002:float", _FLOAT_1_2, list("-+0123456789."))

#: libyaml's safe loader with the same numbers, where PyYAML was built with it: about six times
#: faster on a big matrix of numbers. Only a document it reads without complaint is taken from it;
#: anything it refuses is read again by :class:`Loader`, whose messages and positions are the ones
#: the errors quote.
FastLoader: Any = None
if getattr(yaml, "__with_libyaml__", False):

    class FastLoader(yaml.CSafeLoader):  # type: ignore[no-redef]
        """libyaml's safe loader with YAML 1.2 numbers (see :class:`Loader`)."""

    FastLoader.add_implicit_resolver("tag:yaml.org,2002:float", _FLOAT_1_2, list("-+0123456789."))


def read(path: str, max_bytes: int) -> str:
    """The UTF-8 text of the file at ``path``, refusing more than ``max_bytes``."""
    fix = "raise gradcheck.model.MAX_FILE_BYTES if the file is really meant to be this large"
    try:
        size = os.path.getsize(path)
        if size > max_bytes:
            raise ModelError(f"file is {size} bytes, more than the limit of {max_bytes}", file=path, fix=fix)
        with open(path, "rb") as fh:
            raw = fh.read(max_bytes + 1)  # bounded: a pipe or device reports no size
        if len(raw) > max_bytes:
            raise ModelError(f"file is larger than the limit of {max_bytes} bytes", file=path, fix=fix)
        return raw.decode("utf-8")
    except ModelError:
        raise
    except FileNotFoundError:
        raise ModelError("no such file", file=path, fix="check the path") from None
    except IsADirectoryError:
        raise ModelError("is a directory, not a model file", file=path, fix="name a .yaml file") from None
    except UnicodeDecodeError as err:
        raise ModelError(f"not UTF-8 text ({err.reason} at byte {err.start})", file=path) from None
    except OSError as err:
        raise ModelError(f"cannot read the file: {err.strerror}", file=path) from None


class Positions:
    """Where the values of one YAML document stand in its text.

    Looked up lazily by path, so a matrix of a million numbers costs nothing
    until one of its elements needs naming in a message.
    """

    def __init__(self, root: Any = None, text: str = "") -> None:
        self.root = root
        self.text = text

    def node(self, where: tuple[Any, ...], *, exact: bool = False) -> Any:
        """The YAML node at ``where``, else the nearest enclosing one (``None`` if ``exact``, or no document)."""
        node = self.root
        for step in where:
            child = None
            if isinstance(node, yaml.MappingNode):
                for key, value in node.value:
                    if isinstance(key, yaml.ScalarNode) and key.value == str(step):
                        child = value
            elif isinstance(node, yaml.SequenceNode) and isinstance(step, int) and 0 <= step < len(node.value):
                child = node.value[step]
            if child is None:
                return None if exact else node
            node = child
        return node

    def line_col(self, where: tuple[Any, ...]) -> tuple[int | None, int | None]:
        """1-based line and column where the value at ``where`` (or its nearest known parent) starts."""
        node = self.node(where)
        if node is None:
            return None, None
        return node.start_mark.line + 1, node.start_mark.column + 1

    def in_expression(
        self, where: tuple[Any, ...], text: str | None, offset: int | None
    ) -> tuple[int | None, int | None]:
        """1-based line and column of ``text[offset]``, ``text`` being the scalar at ``where``."""
        node = self.node(where, exact=True)
        if node is None:
            return None, None
        line, col = node.start_mark.line + 1, node.start_mark.column + 1
        if offset is None:
            return line, col
        if node.start_mark.line == node.end_mark.line:
            return line, col + offset + (1 if getattr(node, "style", None) in ("'", '"') else 0)
        if text is not None:
            return _position_in_buffer(node, text, offset, self.text) or (line, col)
        return line, col


def parse(text: str, file: str) -> tuple[Any, Positions]:
    """The document in ``text`` and where its values stand; every YAML problem is a :class:`ModelError`."""
    fast = _parse_fast(text)
    if fast is not None:
        return fast
    try:
        loader = Loader(text)
    except yaml.reader.ReaderError as err:  # a control character: PyYAML checks them all up front
        before = text[: err.position]
        raise ModelError(
            f"invalid YAML: character {chr(err.character)!r} is not allowed",
            file=file,
            line=before.count("\n") + 1,
            col=err.position - before.rfind("\n"),
            fix="remove it (YAML allows printable characters, tabs and line breaks only)",
        ) from None
    try:
        doc, node = _read(loader)
    except yaml.MarkedYAMLError as err:
        mark = err.problem_mark or err.context_mark
        what = (err.problem or err.context or "invalid YAML").strip()
        if "could not determine a constructor" in what:
            what += " (tags such as !!python/... are not allowed)"
        raise ModelError(
            f"invalid YAML: {what}",
            file=file,
            line=mark.line + 1 if mark else None,
            col=mark.column + 1 if mark else None,
            fix="check the indentation and quoting near that position",
        ) from None
    except yaml.YAMLError as err:
        raise ModelError(f"invalid YAML: {err}", file=file) from None
    except (ValueError, OverflowError) as err:  # e.g. an integer of more than 4300 digits
        raise ModelError(
            f"invalid YAML value: {str(err).split(';')[0]}", file=file, fix="write numbers that fit a float64"
        ) from None
    except RecursionError:
        raise ModelError("YAML nested too deeply", file=file) from None
    finally:
        loader.dispose()
    return doc, Positions(node, text)


def _read(loader: Any) -> tuple[Any, Any]:
    """The document and its root node (``None`` for an empty one); duplicate keys refused."""
    node = loader.get_single_node()
    if node is None:
        return None, None
    _refuse_duplicate_keys(node)
    return loader.construct_document(node), node


def _parse_fast(text: str) -> tuple[Any, Positions] | None:
    """The document by libyaml, or ``None`` when it is not available or finds anything wrong."""
    if FastLoader is None:
        return None
    try:
        loader = FastLoader(text)
        try:
            doc, node = _read(loader)
        finally:
            loader.dispose()
    except Exception:  # the careful reader says what is wrong, and where
        return None
    return doc, Positions(node, text)


def _refuse_duplicate_keys(root: Any) -> None:
    """A key given twice in one mapping is an error (PyYAML would let the later one silently win)."""
    seen: set[int] = set()
    stack = [root]
    while stack:
        node = stack.pop()
        if id(node) in seen:  # an alias: its nodes were walked once already
            continue
        seen.add(id(node))
        if isinstance(node, yaml.MappingNode):
            keys: dict[str, Any] = {}
            for key, value in node.value:
                if isinstance(key, yaml.ScalarNode) and key.value != "<<":
                    if key.value in keys:
                        raise yaml.constructor.ConstructorError(
                            None,
                            None,
                            f"duplicate key {key.value!r} (also at line {keys[key.value].line + 1}; "
                            "the later one would silently win)",
                            key.start_mark,
                        )
                    keys[key.value] = key.start_mark
                stack.append(value)
        elif isinstance(node, yaml.SequenceNode):
            stack.extend(v for v in node.value if not isinstance(v, yaml.ScalarNode))


def _position_in_buffer(node: Any, text: str, offset: int, buffer: str) -> tuple[int, int] | None:
    """1-based line and column in the file of ``text[offset]`` for a scalar spread over lines.

    Block (``|``, ``>``) and multi-line plain or quoted scalars lose their
    indentation and line breaks on loading; the characters that are not
    blanks still come in order, so they are matched one by one.
    """
    if not buffer:
        return None
    p, end = node.start_mark.index, node.end_mark.index  # character offsets into the document
    if getattr(node, "style", None) in ("|", ">"):
        p = buffer.find("\n", p, end) + 1  # the content starts on the next line
        if p == 0:
            return None
    elif getattr(node, "style", None) in ("'", '"'):
        p += 1
    target = p
    for i, ch in enumerate(text[: offset + 1]):
        if ch.isspace():
            continue
        while p < end and buffer[p] != ch:
            p += 1
        if p >= end:
            return None
        target = p
        p += 1
        if i == offset:
            break
    else:
        target = p  # the offset is a blank or the end: just after the last character matched
    line = buffer.count("\n", 0, target) + 1
    return line, target - buffer.rfind("\n", 0, target)
