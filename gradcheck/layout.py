"""How values are laid out: batch axes first, then the per-sample shape.

Shared by the op table (:mod:`gradcheck.ops`), the interpreter and the
incremental rules (:mod:`gradcheck.incremental`); it imports nothing of the
package, so every one of them can use it without an import cycle.
"""

from __future__ import annotations

from typing import Any


def align(arr: Any, rank: int, out_rank: int) -> Any:
    """Insert unit axes after the batch axes so per-sample ranks line up.

    A batched value of per-sample rank ``rank`` broadcasts against values of
    higher per-sample rank only once its batch axes are kept apart from its
    per-sample axes: ``(N,) + shape`` becomes ``(N, 1, ..., 1) + shape``.
    Plain numbers (no ``shape``) broadcast as they are.
    """
    shape = getattr(arr, "shape", None)
    if shape is None or rank == out_rank or len(shape) == rank:
        return arr
    batch = tuple(shape[: len(shape) - rank])
    return arr.reshape(batch + (1,) * (out_rank - rank) + tuple(shape[len(shape) - rank :]))
