"""pytest plugin: model files as test items.

Files named ``gradcheck_*.yaml`` or ``*.gradcheck.yaml`` are collected, one
test item per file, which passes when the report's status is ``agree`` (or
``kink``, unless ``--gradcheck-strict``) and fails with the readable table.
Registered through the ``pytest11`` entry point ``gradcheck``.
"""

from __future__ import annotations

import fnmatch
from pathlib import Path
from typing import Any

import pytest

PATTERNS = ("gradcheck_*.yaml", "*.gradcheck.yaml")


def pytest_addoption(parser: Any) -> None:
    group = parser.getgroup("gradcheck", "three-way gradient checks of model files")
    group.addoption(
        "--gradcheck-strict",
        action="store_true",
        default=False,
        help="fail model files whose gradients sit at a kink (default: kinks pass)",
    )
    group.addoption(
        "--gradcheck-points",
        type=int,
        default=None,
        metavar="N",
        help="random points to check per model file besides its values (default: the file's check.points)",
    )


def pytest_collect_file(file_path: Path, parent: Any) -> Any:
    if file_path.suffix == ".yaml" and any(fnmatch.fnmatch(file_path.name, p) for p in PATTERNS):
        return ModelFile.from_parent(parent, path=file_path)
    return None


class ModelFile(pytest.File):
    def collect(self) -> Any:
        yield ModelItem.from_parent(self, name=self.path.name)


class GradcheckFailure(Exception):
    """A model file whose gradients do not agree (or cannot be checked)."""


class ModelItem(pytest.Item):
    def runtest(self) -> None:
        from .check import check
        from .errors import ModelError
        from .model import load

        try:
            model = load(self.path)
        except ModelError as err:
            raise GradcheckFailure(str(err)) from None
        strict = bool(self.config.getoption("--gradcheck-strict"))
        report = check(model, strict=strict, points=self.config.getoption("--gradcheck-points"))
        if not report.ok:
            raise GradcheckFailure(report.table())

    def repr_failure(self, excinfo: Any, style: Any = None) -> Any:
        if isinstance(excinfo.value, GradcheckFailure):
            return str(excinfo.value)
        return super().repr_failure(excinfo)

    def reportinfo(self) -> tuple[Any, int, str]:
        return self.path, 0, f"gradcheck: {self.path.name}"
