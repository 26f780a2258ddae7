"""gradcheck: is this gradient right?

A model is written once, as expressions in a YAML file. gradcheck derives
d(loss)/d(param) three independent ways (SymPy, torch autograd, finite
differences), compares them against the exact symbolic value and says
whether they agree, and if not, which one is wrong and why.

The public API is exactly :data:`__all__` (documented in ``docs/api.md``)::

    import gradcheck as gc
    model = gc.load("linear.yaml")            # or gc.loads(text) / gc.Model.from_dict({...})
    report = gc.check(model, at={"w": 0.5}, against={"mine": fn})
    report.ok, report.status, report.to_dict()
    gc.assert_agree(model)                    # AssertionError: the table + a reproducing model file

Hypothesis strategies live in :mod:`gradcheck.strategies` and the pytest
plugin in :mod:`gradcheck.pytest_plugin`; both are imported only on demand.
torch and SymPy are imported only when a check or training runs.
"""

# No ``from __future__ import annotations`` here: it would bind a public name
# ``annotations`` in the package namespace (tests/test_api.py checks it is clean).
from collections.abc import Callable as _Callable
from collections.abc import Mapping as _Mapping
from typing import TYPE_CHECKING as _TYPE_CHECKING
from typing import Any as _Any

from .compare import Tolerance
from .engines import Engine, gradient_fn
from .engines import GradientFn as _GradientFn
from .errors import ModelError
from .model import Model, load, loads
from .ops import register_function
from .options import CheckOptions
from .report import Report
from .training import TrainResult

if _TYPE_CHECKING:  # Unpack is in typing from Python 3.11; the annotations are strings
    from typing_extensions import Unpack as _Unpack

    from .options import CheckSettings as _CheckSettings

__all__ = [
    "CheckOptions",
    "Engine",
    "Model",
    "ModelError",
    "Report",
    "Tolerance",
    "TrainResult",
    "assert_agree",
    "check",
    "from_torch",
    "gradient_fn",
    "load",
    "loads",
    "register_function",
    "train",
]
__version__ = "0.1.0"

#: A user implementation for ``against``: ``fn(params, data) -> per-sample losses`` (torch), a
#: :func:`gradient_fn` or an :class:`Engine`.
_LossFn = _Callable[[dict[str, _Any], dict[str, _Any]], _Any] | _GradientFn | Engine


def check(
    model: Model,
    *,
    at: _Mapping[str, _Any] | None = None,
    against: _Mapping[str, _LossFn] | None = None,
    **options: "_Unpack[_CheckSettings]",
) -> Report:
    """Check ``model``'s gradients three ways (and against each of ``against``).

    ``at`` maps parameter names to values (numbers, nested lists, arrays or
    tensors) and replaces the file's values at the first point; parameters
    it leaves out keep the file's values. ``against`` maps a name to
    ``fn(params: dict[str, Tensor], data: dict[str, Tensor]) -> Tensor`` of
    per-sample losses (its autograd gradient joins the comparison under that
    name), or to a :func:`gradient_fn` (a hand-written gradient) or an
    :class:`Engine` (the model run in another autodiff engine). The other
    keywords are the fields of :class:`CheckOptions`
    (``dtype``, ``rtol``, ``atol``, ``points``, ``seed``, ``strict``,
    ``directions``, ``order``), documented there: they override the model's
    ``check:`` section; ``strict`` makes a kink fail ``report.ok``;
    ``directions=K`` checks K seeded random unit directions instead of every
    element; ``order=2`` checks the Hessian too (``gradcheck/hessian.py``).

    Raises :class:`ModelError` for an unusable argument (an unknown
    parameter in ``at``, a wrong shape, a non-finite value, a bad dtype or
    setting) and when a function in ``against`` raises or returns the wrong
    shape; ``TypeError`` for an unknown keyword.
    """
    from .checker import check as _check

    return _check(model, CheckOptions.from_keywords("check", **options), at=at, against=against)


def assert_agree(
    model: Model,
    *,
    at: _Mapping[str, _Any] | None = None,
    against: _Mapping[str, _LossFn] | None = None,
    **options: "_Unpack[_CheckSettings]",
) -> Report:
    """:func:`check` with the same keywords, raising ``AssertionError`` unless ``report.ok``; else the report.

    The message is the readable table followed by the smallest model file
    that reproduces the failure: the model with its parameters set to the
    first failing point, no random points, and the check settings used,
    as YAML ready to save and run with ``python -m gradcheck``.
    """
    from .checker import check as _check

    report = _check(model, CheckOptions.from_keywords("assert_agree", **options), at=at, against=against)
    if not report.ok:
        raise AssertionError(
            f"gradients of {model.name!r} do not agree ({report.status}):\n{report.table(width=200)}\n"
            f"A model file that reproduces this (save it as {model.name}.yaml):\n\n"
            + _reproducer(model, report, [*model.against, *(against or {})])
        )
    return report


def _reproducer(model: Model, report: Report, against: list[str]) -> str:
    """YAML text of ``model`` at the first failing point of ``report``, with no random points."""
    import yaml

    class Dumper(yaml.SafeDumper):
        """Lists of numbers on one line (``[1.0, 2.0]``), mappings as blocks."""

    Dumper.add_representer(
        list, lambda dumper, data: dumper.represent_sequence("tag:yaml.org,2002:seq", data, flow_style=True)
    )
    passing = ("agree",) if report.strict else ("agree", "kink")
    failing = next(p for p in report.points if p.status not in passing)
    spec = model.to_dict()
    for name, value in failing.params.items():
        plain = value.item() if value.ndim == 0 else value.tolist()
        old = spec["params"][name]
        spec["params"][name] = {**old, "value": plain} if isinstance(old, dict) else plain
    spec["check"] = {"dtype": report.dtype, "rtol": report.tolerance.rtol, "atol": report.tolerance.atol, "points": 0}
    head = ""
    hessian = failing.hessian
    if (
        hessian is not None and hessian.status not in passing
    ):  # a model file has no `order`: the flags go on the command line
        k = len(hessian.pairs[0]) if hessian.directions and hessian.pairs is not None else None
        if k:
            spec["check"]["seed"] = hessian.seed  # the seed of the direction pairs
        flags = "--order 2" + (f" --directions {k}" if k else "")
        keywords = "order=2" + (f", directions={k}" if k else "")
        head += (
            "# the failure is in second derivatives: run it with\n"
            f"#   python -m gradcheck {model.name}.yaml {flags}  (or check(model, {keywords}))\n"
        )
    if against:
        head += (
            "# the failure involves user code, which a model file cannot name: run it with\n"
            f"#   {' '.join('--against ' + a for a in against)}  (or check(model, against=...))\n"
        )
    return head + yaml.dump(spec, Dumper=Dumper, sort_keys=False, width=100)


def from_torch(
    fn: _Callable[[dict[str, _Any], dict[str, _Any]], _Any],
    *,
    params: _Mapping[str, _Any],
    data: _Mapping[str, _Any] | None = None,
    name: str | None = None,
) -> Model:
    """Trace ``fn(params, sample) -> one sample's scalar loss`` into a :class:`Model` (``docs/from-torch.md``).

    ``params`` maps names to tensors; ``data`` maps names to tensors with
    the samples along the first axis. Each torch call becomes a model entry;
    keys that are no names of the language are mapped (``0.weight`` ->
    ``p0_weight``). ``fn`` itself joins every check of the model as
    ``against`` (``torch:NAME``). An untranslatable call or data-dependent
    control flow raises :class:`ModelError` naming the call and the line.
    """
    from .trace import from_torch as _from_torch

    model: Model = _from_torch(fn, params=params, data=data, name=name)
    return model


def train(
    model: Model,
    *,
    epochs: int | None = None,
    lr: float | None = None,
    mode: str | None = None,
    source: str = "autograd",
    predict: _Mapping[str, _Any] | None = None,
    progress: _Callable[[str, int, int], None] | None = None,
) -> TrainResult:
    """Gradient descent on ``model``; returns a :class:`TrainResult`.

    ``epochs``, ``lr``, ``mode`` (``"sgd"``: one step per sample;
    ``"batch"``: one per epoch) and ``predict`` (data column -> one sample's
    value) default to the model file's ``train:`` section. ``source`` is
    ``"symbolic"``, ``"autograd"``, ``"finite_difference"`` or ``"all"``
    (side by side from the same start). ``progress``, if given, is called
    after every step as ``progress(source, done, total)``. Bad arguments raise
    :class:`ModelError`. See ``docs/api.md``.
    """
    from .training import train as _train

    return _train(model, epochs=epochs, lr=lr, mode=mode, source=source, predict=predict, progress=progress)
