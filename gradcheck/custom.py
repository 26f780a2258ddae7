"""User implementations named on the command line (``--against MODULE:CALLABLE``).

Only the command line or the API can name code to import; a model file never
can. What ``MODULE:CALLABLE`` names (:func:`against_value`) joins the
comparison under the name ``MODULE:CALLABLE``; it is one of

* a :class:`gradcheck.Engine` or a :func:`gradcheck.gradient_fn` object;
* a *factory*: a callable that takes no parameters at all (``def
  make_engine():``), called once with no arguments; it must return an
  ``Engine`` or a ``gradient_fn``;
* otherwise a torch loss function ``fn(params: dict[str, Tensor], data:
  dict[str, Tensor]) -> Tensor`` of per-sample losses, whose autograd
  gradient joins (see :func:`gradcheck.sources.autograd.backward`). A
  loss function always has parameters, so the two are never confused; a
  callable whose signature cannot be read (a builtin) counts as a loss
  function.
"""

from __future__ import annotations

import importlib
import inspect
import os
import re
import sys
from collections.abc import Callable
from typing import Any

from .errors import ModelError

_SPEC = re.compile(r"[A-Za-z_][\w.]*:[A-Za-z_][\w.]*\Z")


def import_callable(spec: str, flag: str = "--against") -> Callable[..., Any]:
    """Import ``MODULE:CALLABLE`` (the current directory is searched first, as pytest does); messages name ``flag``."""
    if not _SPEC.match(spec):
        raise ModelError(
            f"{flag} {spec!r} is not of the form MODULE:CALLABLE",
            fix=f"e.g. {flag} mymodule:my_loss",
        )
    module_name, _, attr = spec.partition(":")
    cwd = os.getcwd()
    if cwd not in sys.path:
        sys.path.insert(0, cwd)
    try:
        obj: Any = importlib.import_module(module_name)
    except ImportError as err:
        raise ModelError(
            f"{flag} {spec!r}: cannot import {module_name!r}: {err}",
            fix="check the module name and that it is on the Python path",
        ) from err
    except Exception as err:
        raise ModelError(f"{flag} {spec!r}: importing {module_name!r} raised {type(err).__name__}: {err}") from err
    for part in attr.split("."):
        if not hasattr(obj, part):
            names = [n for n in dir(obj) if not n.startswith("_")]
            from .errors import close_match

            guess = close_match(part, names)
            raise ModelError(
                f"{flag} {spec!r}: {module_name!r} has no attribute {part!r}",
                fix=f"did you mean {guess!r}?" if guess else None,
            )
        obj = getattr(obj, part)
    if not callable(obj):
        raise ModelError(f"{flag} {spec!r} is not callable")
    return obj  # type: ignore[no-any-return]


def _is_factory(obj: Any) -> bool:
    """A callable that takes no parameters at all (not even ``*args``)."""
    try:
        return not inspect.signature(obj).parameters
    except (TypeError, ValueError):
        return False


def against_value(spec: str) -> Any:
    """What ``--against MODULE:CALLABLE`` names, made ready for ``check(against=...)`` (module docstring)."""
    from .engines import Engine, GradientFn

    obj = import_callable(spec)
    if isinstance(obj, (Engine, GradientFn)) or not _is_factory(obj):
        return obj
    try:
        made = obj()
    except ModelError:
        raise
    except Exception as err:
        raise ModelError(
            f"--against {spec!r}: calling the factory raised {type(err).__name__}: {err}",
            fix="a callable without parameters is called to make a gc.Engine or gc.gradient_fn",
        ) from err
    if not isinstance(made, (Engine, GradientFn)):
        raise ModelError(
            f"--against {spec!r}: the factory returned {type(made).__name__}, not a gc.Engine or gc.gradient_fn",
            fix="return gc.Engine(...) or gc.gradient_fn(fn); a torch loss function takes (params, data)",
        )
    return made
