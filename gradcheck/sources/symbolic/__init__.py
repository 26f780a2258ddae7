"""The symbolic source: SymPy differentiates, mpmath evaluates exactly.

One module per job (see ``docs/how-it-works.md``):

* :mod:`.blocks` evaluates whole tensors per op in double-double (layers of
  any width), where every op allows it;
* :mod:`.tape` records the entries on SymPy symbols and accumulates the
  adjoints backwards (reverse mode over the IR, linear in the model's size);
* :mod:`.codegen` prints the tape as straight-line mpmath code, compiles it
  and runs it over all samples at once (:data:`DPS` digits);
* :mod:`.numbers` reduces the exact per-sample values to float64;
* :mod:`.formulas` builds the readable derivative formulas that
  ``Model.gradient_formula`` and the report show (in plain SymPy symbols);
* :mod:`.evaluate` evaluates given SymPy expressions per sample.

Nothing here touches torch or the finite differences.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from .. import Gradients
from . import blocks, codegen
from .evaluate import evaluate_exprs
from .formulas import MAX_INLINED_SIZE, formula, formula_in_entries, inlined_size, loss_expression
from .numbers import DPS, collect

if TYPE_CHECKING:
    from ...model import Model

__all__ = [
    "DPS",
    "MAX_INLINED_SIZE",
    "evaluate_exprs",
    "formula",
    "formula_in_entries",
    "gradients",
    "inlined_size",
    "loss_expression",
    "tape_gradients",
]


def gradients(model: Model, point: dict[str, np.ndarray]) -> Gradients:
    """Exact gradients of the reduced loss at ``point``, rounded to float64.

    A whole tensor per op (:mod:`.blocks`, double-double) where every op
    allows it and no value overflows or cancels too far; else
    :func:`tape_gradients`.
    """
    found = blocks.gradients(model, point)
    return found if found is not None else tape_gradients(model, point)


def tape_gradients(model: Model, point: dict[str, np.ndarray]) -> Gradients:
    """:func:`gradients` by the tape: one SymPy line per element, evaluated in :data:`DPS`-digit mpmath."""
    tape = codegen.tape_of(model)
    columns = codegen.run(model, tape, point)
    return collect(model, columns, tape.layout, "symbolic")
