"""The command line: flags, output choice, exit codes.

Exit status: 0 every gradient agrees (kinks only warn, unless ``--strict``);
1 any ``mismatch`` or ``undefined`` (or a kink with ``--strict``); 2 the input
is unusable (one message on stderr, no traceback). Nothing heavy (torch,
SymPy) is imported before the input has been validated.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from typing import Any

from .errors import ModelError

EXIT_OK, EXIT_FAIL, EXIT_USAGE = 0, 1, 2

_CHECK_EPILOG = """\
statuses: agree < kink (one-sided derivatives differ; warns) < undefined
(loss or derivative not finite) < mismatch (a source differs beyond
tolerance; the report names the odd one out).

exit status: 0 all agree (kinks allowed unless --strict); 1 mismatch or
undefined; 2 unusable input (bad file, YAML, expression, name, shape, flag).

Train a model with: gradcheck train MODEL.yaml --help
Docs: docs/cli.md, docs/model-file.md, docs/how-it-works.md
"""


class _Parser(argparse.ArgumentParser):
    """argparse, with usage errors as one line and exit status 2."""

    def error(self, message: str) -> Any:  # type: ignore[override]
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 0, got {text!r}")
    return value


def finite_number(text: str, *, zero: bool = True) -> float:
    """A finite number >= 0 (> 0 unless ``zero``) from a flag's text."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not (value >= 0 if zero else value > 0) or value == float("inf"):
        raise argparse.ArgumentTypeError(f"expected a finite number {'>=' if zero else '>'} 0, got {text!r}")
    return value


def _tolerance(text: str) -> float:
    return finite_number(text)


def check_parser() -> argparse.ArgumentParser:
    p = _Parser(
        prog="gradcheck",
        description=(
            "Is this gradient right? Derive d(loss)/d(param) of each model file three ways\n"
            "(SymPy exactly, torch autograd, finite differences), compare them against the\n"
            "exact symbolic value and say whether they agree, and if not, which one is wrong and why."
        ),
        epilog=_CHECK_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("models", nargs="+", metavar="MODEL.yaml", help="model file(s) to check")
    p.add_argument("--json", action="store_true", help="print one JSON report on stdout (a list for several files)")
    p.add_argument(
        "--points",
        type=_positive_int,
        metavar="N",
        help="random parameter points to check besides the file's values (default: check.points, 0)",
    )
    p.add_argument(
        "--seed", type=_positive_int, metavar="S", help="seed for every random choice (default: check.seed, 0)"
    )
    p.add_argument(
        "--dtype",
        choices=("float64", "float32"),
        help="dtype of autograd and finite differences (default: check.dtype, float64)",
    )
    p.add_argument(
        "--rtol", type=_tolerance, metavar="R", help="relative tolerance (default: 1e-6 for float64, 1e-4 for float32)"
    )
    p.add_argument(
        "--atol", type=_tolerance, metavar="A", help="absolute tolerance (default: 1e-9 for float64, 1e-6 for float32)"
    )
    p.add_argument("--strict", action="store_true", help="treat kinks (non-differentiable points) as failures")
    p.add_argument(
        "--directions",
        type=_positive_int,
        metavar="K",
        help="check K random unit directions (gradient . v, seeded by --seed) instead of every parameter element; for big models",
    )
    p.add_argument(
        "--against",
        action="append",
        default=[],
        metavar="MODULE:CALLABLE",
        help="also compare the autograd gradient of fn(params, data) -> per-sample losses, imported from MODULE (repeatable)",
    )
    p.add_argument("--plot", metavar="FILE.png", help="draw finite-difference error against step size per parameter")
    p.add_argument(
        "--time-limit",
        type=_tolerance,
        metavar="SECONDS",
        help="bound on the SymPy work of each check (default: 5, or GRADCHECK_TIME_LIMIT; 0: none); see docs/limits.md",
    )
    p.add_argument("--debug", action="store_true", help="show the traceback of an internal error")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status."""
    args = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in args
    try:
        if args and args[0] == "train":
            from .train_cli import run_train

            return run_train(args[1:])
        return run_check(args)
    except ModelError as err:
        print(f"gradcheck: error: {err}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("gradcheck: interrupted", file=sys.stderr)
        return 130
    except Exception as err:  # an internal error: one line, traceback only with --debug
        if debug:
            raise
        print(
            f"gradcheck: internal error: {type(err).__name__}: {err} "
            "(this is a bug in gradcheck; please report it with the model file; --debug shows the traceback)",
            file=sys.stderr,
        )
        return 3


def _load_all(paths: Sequence[str]) -> list[Any]:
    from .model import load

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
    from .custom import import_callable

    return {spec: import_callable(spec) for spec in specs}


def _console(stderr: bool = False) -> Any:
    from rich.console import Console

    stream = sys.stderr if stderr else sys.stdout
    # Off a terminal there is no width to fit: keep rows whole rather than wrap at 80.
    width = None if stream.isatty() else 160
    if os.environ.get("NO_COLOR"):  # https://no-color.org: no colour, and no other escapes either
        return Console(stderr=stderr, highlight=False, width=width, color_system=None)
    return Console(stderr=stderr, highlight=False, width=width)


class _Progress:
    """A status line on stderr while a check runs, only on a terminal."""

    def __init__(self, enabled: bool) -> None:
        self.status: Any = None
        if enabled and sys.stderr.isatty():
            self.status = _console(stderr=True).status("loading")
            self.status.start()

    def __call__(self, message: str) -> None:
        if self.status is not None:
            self.status.update(message)

    def stop(self) -> None:
        if self.status is not None:
            self.status.stop()


def run_check(argv: Sequence[str]) -> int:
    args = check_parser().parse_args(argv)
    if args.time_limit is not None:
        from . import limits

        limits.SYMBOLIC_SECONDS = args.time_limit
        os.environ.pop("GRADCHECK_TIME_LIMIT", None)  # the flag wins over the environment
    models = _load_all(args.models)
    against = _against(args.against)
    from .checker import check

    progress = _Progress(enabled=not args.json)
    reports = []
    try:
        for model in models:
            progress(f"{model.name}: starting")
            reports.append(
                check(
                    model,
                    against=against,
                    dtype=args.dtype,
                    rtol=args.rtol,
                    atol=args.atol,
                    points=args.points,
                    seed=args.seed,
                    strict=args.strict,
                    directions=args.directions or None,
                    progress=_prefixed(progress, model.name),
                )
            )
            if args.plot:
                from .plots import plot_steps

                progress(f"{model.name}: plot")
                plot_steps(model, reports[-1], _plot_path(args.plot, model.name, len(models)))
    finally:
        progress.stop()
    if args.json:
        docs = [r.to_dict() for r in reports]
        print(json.dumps(docs[0] if len(docs) == 1 else docs, indent=2))
    else:
        console = _console()
        for i, report in enumerate(reports):
            if i:
                console.print()
            report.render(console)
    return EXIT_OK if all(r.ok for r in reports) else EXIT_FAIL


def _prefixed(progress: _Progress, name: str) -> Any:
    def say(message: str) -> None:
        progress(f"{name}: {message}")

    return say


def _plot_path(path: str, name: str, count: int) -> str:
    """One file per model: ``out.png`` stays for one model, else ``out-NAME.png``."""
    if count == 1:
        return path
    root, ext = os.path.splitext(path)
    return f"{root}-{name}{ext or '.png'}"
