"""pytest plugin: model files as test items.

Files named ``gradcheck_*.yaml`` or ``*.gradcheck.yaml`` are collected, one
test item (``FILE::check``) per file, which passes when the report's status
is ``agree`` (or ``kink``, unless ``--gradcheck-strict``) and fails with the
readable table. A file that cannot be used (bad YAML, unknown name, shape
error) fails with the one-line :class:`gradcheck.ModelError` message.

Registered through the ``pytest11`` entry point ``gradcheck``, so installing
gradcheck is enough; ``-p no:gradcheck`` turns it off. Items are ordinary
pytest items, so ``-k``, ``-x``, ``--lf`` and pytest-xdist (``-n 4``) work.
Options (``pytest --help``, group ``gradcheck``) and the matching ini keys:

``--gradcheck-strict`` / ``gradcheck_strict = true``
    a kink fails the item too.
``--gradcheck-points N`` / ``gradcheck_points = N``
    random points to check besides the file's values (default: the file's
    ``check.points``).
``--gradcheck-dtype float64|float32``
    override every file's ``check.dtype``.

This module imports only the standard library and pytest at import time: the
plugin loads in every pytest run of an environment where gradcheck is
installed, and should cost nothing where no model file is collected.
"""

from __future__ import annotations

import fnmatch
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from .options import CheckOptions

#: File names the plugin collects.
PATTERNS = ("gradcheck_*.yaml", "*.gradcheck.yaml")
#: Width of the table in a failure: wide enough that no number is cut short.
TABLE_WIDTH = 200


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("gradcheck", "gradcheck: three-way gradient checks of model files")
    group.addoption(
        "--gradcheck-strict",
        action="store_true",
        default=None,
        help="fail model files whose gradients sit at a kink (default: a kink passes)",
    )
    group.addoption(
        "--gradcheck-points",
        type=int,
        default=None,
        metavar="N",
        help="random points to check per model file besides its values (default: the file's check.points)",
    )
    group.addoption(
        "--gradcheck-dtype",
        choices=("float64", "float32"),
        default=None,
        help="check every model file in this dtype (default: the file's check.dtype)",
    )
    parser.addini(
        "gradcheck_strict", "fail model files at a kink (like --gradcheck-strict)", type="bool", default=False
    )
    parser.addini("gradcheck_points", "random points per model file (like --gradcheck-points)", default="")


def pytest_collect_file(file_path: Path, parent: pytest.Collector) -> pytest.Collector | None:
    if is_model_file(file_path):
        return ModelFile.from_parent(parent, path=file_path)
    return None


def is_model_file(path: Path) -> bool:
    """Whether the plugin collects ``path`` (by name only: ``gradcheck_*.yaml``, ``*.gradcheck.yaml``)."""
    return any(fnmatch.fnmatchcase(path.name, pattern) for pattern in PATTERNS)


class ModelFile(pytest.File):
    """A model file: one item, ``check``."""

    def collect(self) -> Any:
        yield ModelItem.from_parent(self, name="check")


class GradcheckFailure(Exception):
    """A model file whose gradients do not agree (or that cannot be checked)."""


class ModelItem(pytest.Item):
    """Loads the file, runs the check with :meth:`options`, fails unless the report is ok."""

    def options(self) -> CheckOptions:
        """The check settings from the command line and the ini file (unset: the model file's)."""
        from .options import CheckOptions

        config = self.config
        strict = config.getoption("--gradcheck-strict")
        if strict is None:
            strict = bool(config.getini("gradcheck_strict"))
        points = config.getoption("--gradcheck-points")
        if points is None and str(config.getini("gradcheck_points")).strip():
            raw = str(config.getini("gradcheck_points")).strip()
            try:
                points = int(raw)
            except ValueError:
                raise pytest.UsageError(f"ini option gradcheck_points must be an integer, got {raw!r}") from None
        return CheckOptions(strict=bool(strict), points=points, dtype=config.getoption("--gradcheck-dtype"))

    def runtest(self) -> None:
        from .checker import check
        from .errors import ModelError
        from .model import load

        try:
            model = load(self.path)
            report = check(model, self.options())
        except ModelError as err:
            raise GradcheckFailure(str(err)) from None
        self.user_properties.append(("gradcheck_status", report.status))
        if not report.ok:
            raise GradcheckFailure(f"{self.path.name}: {report.status}\n{report.table(width=TABLE_WIDTH)}")

    def repr_failure(self, excinfo: pytest.ExceptionInfo[BaseException], style: Any = None) -> Any:
        if isinstance(excinfo.value, GradcheckFailure):
            return str(excinfo.value)
        return super().repr_failure(excinfo)

    def reportinfo(self) -> tuple[Any, int | None, str]:
        return self.path, None, f"gradcheck {self.path.name}"
