"""The gradient sources. Each module exposes the same function::

    gradients(model, point) -> Gradients

so that the comparison never knows which source it holds. ``point`` maps
every parameter to its value (float64 arrays, already rounded to the model's
dtype); gradients are of the *reduced* loss (``mean`` or ``sum`` over
samples), or per sample with a leading sample axis for ``reduction: none``.
The sources are independent in code: ``symbolic`` imports SymPy and mpmath
only, ``autograd`` torch only, ``finite_diff`` NumPy only.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np


@dataclass
class Gradients:
    """What one source says at one point.

    ``values`` maps each param to its gradient (float64). ``errors`` holds an
    error estimate of the same shape where the source has one (finite
    differences). ``loss`` is the reduced loss (per sample for
    ``reduction: none``) where the source computes it.
    """

    source: str
    values: dict[str, np.ndarray]
    errors: dict[str, np.ndarray] | None = None
    loss: Any = None
    info: dict[str, Any] = field(default_factory=dict)
