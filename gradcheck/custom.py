"""User implementations named on the command line (``--against MODULE:CALLABLE``).

Only the command line or the API can name code to import; a model file never
can. The callable is ``fn(params: dict[str, Tensor], data: dict[str, Tensor])
-> Tensor`` of per-sample losses; its autograd gradient joins the comparison
under the name ``MODULE:CALLABLE`` (see :func:`gradcheck.sources.autograd.backward`).
"""

from __future__ import annotations

import importlib
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
