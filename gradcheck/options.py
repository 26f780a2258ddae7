"""The settings of a check: one frozen dataclass, validated in one place.

:class:`CheckOptions` is what ``gc.check``, ``gc.assert_agree``, the command
line and the pytest plugin build from their keywords or flags and hand down
to :func:`gradcheck.checker.check`. ``None`` means "the model file's
``check:`` section" (and for ``rtol``/``atol`` then the dtype's default);
:meth:`CheckOptions.resolve` fills those in for one model.

Adding a setting (say ``order``) is one field here, its key in
:class:`CheckSettings` (a test pins that the two agree) and its use.
"""

from __future__ import annotations

import dataclasses
import math
import numbers
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypedDict

from .compare import Tolerance
from .errors import ModelError, close_match

if TYPE_CHECKING:
    from .model import CheckConfig

DTYPES = ("float64", "float32")


@dataclass(frozen=True)
class CheckOptions:
    """The settings of a check, with their defaults; bad values raise :class:`ModelError`.

    ``dtype``
        ``"float64"`` or ``"float32"``: the dtype of autograd and finite
        differences (symbolic is always exact). Default: the file's
        ``check.dtype``.
    ``rtol``, ``atol``
        tolerances, finite numbers >= 0. Default: the file's, else the
        dtype's (:meth:`Tolerance.for_dtype`).
    ``points``, ``seed``
        random parameter points besides the first, and the seed of every
        random choice; whole numbers >= 0. Default: the file's.
    ``strict``
        a ``kink`` makes ``report.ok`` false. Default: ``False``.
    ``directions``
        ``K >= 1``: check K seeded random unit directions (gradient . v)
        instead of every element; ``None`` (or 0): every element. With
        ``order=2``: K seeded random pairs ``u . H v`` instead of the Hessian.
    ``order``
        ``1`` (default): gradients; ``2``: gradients and the Hessian of the
        reduced loss over all parameter elements (``gradcheck/hessian.py``).
    """

    dtype: str | None = None
    rtol: float | None = None
    atol: float | None = None
    points: int | None = None
    seed: int | None = None
    strict: bool = False
    directions: int | None = None
    order: int = 1

    def __post_init__(self) -> None:
        if self.dtype is not None and self.dtype not in DTYPES:
            raise ModelError(f"dtype must be float64 or float32, got {self.dtype!r}")
        for name in ("rtol", "atol"):
            value = getattr(self, name)
            if value is None:
                continue
            if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value) or value < 0:
                raise ModelError(f"{name} must be a finite number >= 0, got {value!r}", fix=f"use e.g. {name}=1e-6")
        for name in ("points", "seed"):
            value = getattr(self, name)
            if value is not None and not _whole(value):
                raise ModelError(f"{name} must be a whole number >= 0, got {value!r}", fix=f"use e.g. {name}=3")
        if not isinstance(self.strict, bool):
            raise ModelError(f"strict must be True or False, got {self.strict!r}")
        if self.directions is not None:
            if not _whole(self.directions):
                raise ModelError(
                    f"directions must be a whole number >= 1, got {self.directions!r}", fix="use e.g. directions=8"
                )
            if self.directions == 0:  # 0 means "every element", as None
                object.__setattr__(self, "directions", None)
        if isinstance(self.order, bool) or self.order not in (1, 2):
            raise ModelError(f"order must be 1 or 2, got {self.order!r}", fix="use order=2 to check the Hessian too")

    @classmethod
    def from_keywords(cls, where: str, **settings: Any) -> CheckOptions:
        """``CheckOptions(**settings)``, with a ``TypeError`` naming ``where`` for an unknown keyword."""
        names = [f.name for f in dataclasses.fields(cls)]
        for key in settings:
            if key not in names:
                guess = close_match(key, names)
                hint = f" (did you mean {guess!r}?)" if guess else f" (settings: {', '.join(names)})"
                raise TypeError(f"{where}() got an unexpected keyword argument {key!r}{hint}")
        return cls(**settings)

    def resolve(self, config: CheckConfig) -> CheckOptions:
        """These options with every ``None`` filled in from a model's ``check:`` section.

        ``rtol``/``atol`` become the file's, else the dtype's defaults;
        ``directions`` stays ``None`` for "every element".
        """
        dtype = self.dtype or config.dtype
        tol = Tolerance.for_dtype(
            dtype, config.rtol if self.rtol is None else self.rtol, config.atol if self.atol is None else self.atol
        )
        return dataclasses.replace(
            self,
            dtype=dtype,
            rtol=tol.rtol,
            atol=tol.atol,
            points=config.points if self.points is None else self.points,
            seed=config.seed if self.seed is None else self.seed,
        )

    @property
    def tolerance(self) -> Tolerance:
        """The :class:`Tolerance` of resolved options (see :meth:`resolve`)."""
        assert self.rtol is not None and self.atol is not None, "resolve() the options first"
        return Tolerance(self.rtol, self.atol)


class CheckSettings(TypedDict, total=False):
    """The keywords of ``gc.check`` / ``gc.assert_agree`` that become :class:`CheckOptions` (for typing)."""

    dtype: str | None
    rtol: float | None
    atol: float | None
    points: int | None
    seed: int | None
    strict: bool
    directions: int | None
    order: int


def _whole(value: Any) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool) and int(value) >= 0
