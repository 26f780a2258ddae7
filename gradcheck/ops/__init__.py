"""The one table of ops of the model language (a package: the machinery, then one module per family).

Every function, operator and structural op an expression can use has exactly
one entry in :data:`OPS` (an :class:`Op`, see :mod:`.core`), and the entry
holds everything about it. Nothing outside this package names an op: adding a
function means adding one entry to the family module it belongs to
(:mod:`.arithmetic`, :mod:`.elementwise`, :mod:`.reductions`) and nothing
else; :func:`register_function` adds an elementwise one from Python.
"""

from __future__ import annotations

from ..layout import align
from . import arithmetic, elementwise, layers, logic, reductions, structure  # noqa: F401  (each adds its entries to OPS)
from .arithmetic import index_shape
from .core import (
    CONSTANTS,
    DENSE,
    FUNCTIONS,
    OPS,
    TABLE_BEGIN,
    TABLE_END,
    Attr,
    Op,
    Shape,
    ShapeError,
    broadcast,
    lookup,
    markdown_table,
    overloads,
    register_function,
    replace_table,
)

__all__ = [
    "CONSTANTS",
    "DENSE",
    "FUNCTIONS",
    "OPS",
    "TABLE_BEGIN",
    "TABLE_END",
    "Attr",
    "Op",
    "Shape",
    "ShapeError",
    "align",
    "broadcast",
    "index_shape",
    "lookup",
    "markdown_table",
    "overloads",
    "register_function",
    "replace_table",
]
