"""gradcheck: is this gradient right?

A model is written once, as expressions in a YAML file. gradcheck derives
d(loss)/d(param) three independent ways (SymPy, torch autograd, finite
differences), compares them against the exact symbolic value and says
whether they agree, and if not, which one is wrong and why.

The public API is exactly :data:`__all__`::

    import gradcheck as gc
    model = gc.load("linear.yaml")
    report = gc.check(model)
    report.ok, report.status, report.to_dict()

torch and SymPy are imported only when a check or training runs.
"""

from __future__ import annotations

from typing import Any

from .errors import ModelError
from .model import Model, load, loads

__all__ = [
    "Model",
    "ModelError",
    "Report",
    "Tolerance",
    "assert_agree",
    "check",
    "load",
    "loads",
    "train",
]
__version__ = "0.1.0"


def check(model: Model, **kwargs: Any) -> Report:
    """Check ``model``'s gradients three ways; see :func:`gradcheck.check.check`."""
    from .check import check as _check

    return _check(model, **kwargs)


def assert_agree(model: Model, **kwargs: Any) -> Report:
    """:func:`check`, raising ``AssertionError`` with the readable table unless ``report.ok``."""
    from .check import assert_agree as _assert_agree

    return _assert_agree(model, **kwargs)


def train(model: Model, **kwargs: Any) -> Any:
    """Gradient descent on ``model``; see :func:`gradcheck.train.train`."""
    from .train import train as _train

    return _train(model, **kwargs)


def __getattr__(name: str) -> Any:
    if name == "Report":
        from .report import Report

        return Report
    if name == "Tolerance":
        from .compare import Tolerance

        return Tolerance
    raise AttributeError(f"module 'gradcheck' has no attribute {name!r}")


if False:  # pragma: no cover - for type checkers only
    from .compare import Tolerance
    from .report import Report
