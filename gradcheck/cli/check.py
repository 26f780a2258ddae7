"""``gradcheck [check] MODEL.yaml ...``: check gradients three ways, print a table or JSON.

Exit status: 0 every gradient agrees (kinks only warn, unless ``--strict``);
1 any ``mismatch`` or ``undefined`` (or a kink with ``--strict``); 2 the input
is unusable. Nothing heavy (torch, SymPy) is imported before the input has
been validated.
"""

from __future__ import annotations

import argparse
import json
import os
from collections.abc import Sequence
from typing import Any

from ..errors import ModelError
from .common import EXIT_FAIL, EXIT_OK, StatusLine, console, finite_number, whole_number

NAME = "check"
SUMMARY = "check gradients three ways (the default command)"

_EPILOG = """\
statuses: agree < kink (one-sided derivatives differ; warns) < undefined
(loss or derivative not finite) < mismatch (a source differs beyond
tolerance; the report names the odd one out).

exit status: 0 all agree (kinks allowed unless --strict); 1 mismatch or
undefined; 2 unusable input (bad file, YAML, expression, name, shape, flag).

commands (the first argument; anything else is a model file to check):
{commands}

A model file named like a command: gradcheck ./train or gradcheck check train.
Docs: docs/cli.md, docs/model-file.md, docs/how-it-works.md
"""


def add_to(subparsers: Any, commands: str) -> argparse.ArgumentParser:
    """Register ``check`` on the root parser's ``subparsers``; ``commands`` lists every command for the help."""
    p: argparse.ArgumentParser = subparsers.add_parser(
        NAME,
        prog="gradcheck [check]",
        help=SUMMARY,
        description=(
            "Is this gradient right? Derive d(loss)/d(param) of each model file three ways\n"
            "(SymPy exactly, torch autograd, finite differences), compare them against the\n"
            "exact symbolic value and say whether they agree, and if not, which one is wrong and why."
        ),
        epilog=_EPILOG.format(commands=commands),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("models", nargs="*", metavar="MODEL.yaml", help="model file(s) to check")
    p.add_argument(
        "--torch",
        action="append",
        default=[],
        metavar="MODULE:FACTORY",
        help="also check PyTorch code: FACTORY() -> (fn, params, data), traced as gc.from_torch (repeatable; docs/from-torch.md)",
    )
    p.add_argument("--json", action="store_true", help="print one JSON report on stdout (a list for several files)")
    p.add_argument(
        "--points",
        type=whole_number,
        metavar="N",
        help="random parameter points to check besides the file's values (default: check.points, 0)",
    )
    p.add_argument(
        "--seed", type=whole_number, metavar="S", help="seed for every random choice (default: check.seed, 0)"
    )
    p.add_argument(
        "--dtype",
        choices=("float64", "float32"),
        help="dtype of autograd and finite differences (default: check.dtype, float64)",
    )
    p.add_argument(
        "--rtol",
        type=finite_number,
        metavar="R",
        help="relative tolerance (default: 1e-6 for float64, 1e-4 for float32)",
    )
    p.add_argument(
        "--atol",
        type=finite_number,
        metavar="A",
        help="absolute tolerance (default: 1e-9 for float64, 1e-6 for float32)",
    )
    p.add_argument("--strict", action="store_true", help="treat kinks (non-differentiable points) as failures")
    p.add_argument(
        "--directions",
        type=whole_number,
        metavar="K",
        help="check K random unit directions (gradient . v, seeded by --seed) instead of every parameter element; for big models",
    )
    p.add_argument(
        "--order",
        type=int,
        choices=(1, 2),
        default=1,
        help="2: also check second derivatives, the Hessian of the reduced loss three ways "
        "(with --directions K: u . H v for K random pairs)",
    )
    p.add_argument(
        "--against",
        action="append",
        default=[],
        metavar="MODULE:CALLABLE",
        help="also compare the autograd gradient of fn(params, data) -> per-sample losses, imported from MODULE, "
        "or the gradients of a gc.Engine / gc.gradient_fn that CALLABLE is or returns when called without "
        "arguments (repeatable; docs/engines.md)",
    )
    p.add_argument("--plot", metavar="FILE.png", help="draw finite-difference error against step size per parameter")
    p.add_argument(
        "--time-limit",
        type=finite_number,
        metavar="SECONDS",
        help="bound on the SymPy work of each check (default: 5, or GRADCHECK_TIME_LIMIT; 0: none); see docs/limits.md",
    )
    p.add_argument("--debug", action="store_true", help="show the traceback of an internal error")
    # The usage line shows the optional command name; errors name the program as before.
    p.usage = p.format_usage().removeprefix("usage: ").strip().replace("%", "%%")
    p.prog = "gradcheck"
    p.set_defaults(run=run, usage_error=p.error)
    return p


def options(args: argparse.Namespace) -> Any:
    """The :class:`gradcheck.options.CheckOptions` of the flags (unset: the model file's)."""
    from ..options import CheckOptions

    return CheckOptions(
        dtype=args.dtype,
        rtol=args.rtol,
        atol=args.atol,
        points=args.points,
        seed=args.seed,
        strict=args.strict,
        directions=args.directions or None,
        order=args.order,
    )


def run(args: argparse.Namespace) -> int:
    """Check every model file; returns the exit status (bad input raises :class:`ModelError`)."""
    settings = options(args)
    if args.time_limit is not None:
        from .. import limits

        limits.SYMBOLIC_SECONDS = args.time_limit
        os.environ.pop("GRADCHECK_TIME_LIMIT", None)  # the flag wins over the environment
    if not args.models and not args.torch:
        args.usage_error("the following arguments are required: MODEL.yaml (or --torch MODULE:FACTORY)")
    from ..sources import ahead

    if not args.against and not args.torch and settings.order in (None, 1):
        ahead.prewarm()  # torch's import starts now, beside the files' reading (sources/ahead.py)
    try:
        return _run(args, settings)
    finally:
        ahead.shutdown()


def _run(args: argparse.Namespace, settings: Any) -> int:
    models = _load_all(args.models)
    if args.torch:
        from ..trace import from_factory

        models += [from_factory(spec) for spec in args.torch]
    against = _against(args.against)
    from ..checker import check

    progress = StatusLine(enabled=not args.json)
    reports = []
    try:
        for model in models:
            progress(f"{model.name}: starting")
            reports.append(check(model, settings, against=against, progress=progress.prefixed(model.name)))
            if args.plot:
                from ..plots import plot_steps

                progress(f"{model.name}: plot")
                plot_steps(model, reports[-1], _plot_path(args.plot, model.name, len(models)))
    finally:
        progress.stop()
    if args.json:
        docs = [r.to_dict() for r in reports]
        print(json.dumps(docs[0] if len(docs) == 1 else docs, indent=2))
    else:
        out = console()
        for i, report in enumerate(reports):
            if i:
                out.print()
            report.render(out)
    return EXIT_OK if all(r.ok for r in reports) else EXIT_FAIL


def _load_all(paths: Sequence[str]) -> list[Any]:
    from ..model import load

    models, errors = [], []
    for path in paths:
        try:
            models.append(load(path))
        except ModelError as err:
            errors.append(str(err))
    if errors:
        raise ModelError("\n".join(errors)) if len(errors) > 1 else ModelError(errors[0])
    return models


def _against(specs: Sequence[str]) -> dict[str, Any]:
    from ..custom import against_value

    return {spec: against_value(spec) for spec in specs}


def _plot_path(path: str, name: str, count: int) -> str:
    """One file per model: ``out.png`` stays for one model, else ``out-NAME.png``."""
    if count == 1:
        return path
    root, ext = os.path.splitext(path)
    return f"{root}-{name}{ext or '.png'}"
