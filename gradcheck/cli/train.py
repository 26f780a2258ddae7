"""``gradcheck train MODEL.yaml``: the command line of :func:`gradcheck.training.train`.

Nothing heavy is imported until the flags and the model file are valid, so
``--help`` and bad input answer at once (no torch import).
"""

from __future__ import annotations

import argparse
import json
import os
from collections.abc import Sequence
from typing import Any

from ..errors import ModelError
from .common import EXIT_OK, ProgressBar, console, positive_number, whole_number

NAME = "train"
SUMMARY = "gradient descent on a model file with any gradient source"

_EPILOG = """\
Training runs in the model's dtype (check.dtype). --mode sgd takes one step per
sample in data order (the classic PyTorch lesson); batch one step per epoch on
the reduced loss. The update is p = p - lr * grad, for autograd exactly the
lesson's `w.data = w.data - lr * w.grad.data`. newton takes one Newton step
per epoch, p = p - H^-1 grad, with the source's Hessian (no lr).

exit status: 0 trained; 2 unusable input (bad file, flag, source or --predict).

commands:
{commands}

Docs: docs/tutorial.md, docs/cli.md
"""


def add_to(subparsers: Any, commands: str) -> argparse.ArgumentParser:
    """Register ``train`` on the root parser's ``subparsers``; ``commands`` lists every command for the help."""
    p: argparse.ArgumentParser = subparsers.add_parser(
        NAME,
        prog="gradcheck train",
        help=SUMMARY,
        description=(
            "Gradient descent on a model file's parameters with the gradient from one source\n"
            "(or all three side by side), reporting the final parameters, the loss after each\n"
            "epoch and, with --predict, the model's output before and after training."
        ),
        epilog=_EPILOG.format(commands=commands),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("model", metavar="MODEL.yaml", help="the model file to train")
    p.add_argument("--epochs", type=whole_number, metavar="N", help="passes over the data (default: train.epochs, 100)")
    p.add_argument("--lr", type=positive_number, metavar="LR", help="learning rate (default: train.lr, 0.01)")
    p.add_argument(
        "--mode",
        metavar="sgd|batch|newton",
        help="sgd: one step per sample, in data order; batch: one step per epoch on the reduced loss; "
        "newton: one Newton step per epoch with the source's Hessian (default: train.mode, sgd)",
    )
    p.add_argument(
        "--source",
        default="autograd",
        metavar="symbolic|autograd|finite_difference|all",
        help="where the gradient comes from; all runs the three side by side from the same start "
        "and reports the largest difference between their parameters (default: autograd)",
    )
    p.add_argument(
        "--predict",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="a data column's value for one sample (a number, or a list such as [1, 2] for a vector "
        "column); prints the model's output there before and after training (repeatable; "
        "default: train.predict)",
    )
    p.add_argument("--json", action="store_true", help="print one JSON document on stdout")
    p.add_argument("--plot", metavar="FILE.png", help="draw the loss against epoch, one line per source, to FILE.png")
    p.add_argument("--debug", action="store_true", help="show the traceback of an internal error")
    p.set_defaults(run=run)
    return p


def parse_predict(items: Sequence[str]) -> dict[str, Any]:
    """``["x=4", "v=[1, 2]"]`` -> ``{"x": 4.0, "v": [1.0, 2.0]}``; a :class:`ModelError` if malformed."""
    out: dict[str, Any] = {}
    for item in items:
        name, sep, text = item.partition("=")
        name, text = name.strip(), text.strip()
        if not sep or not name or not text:
            raise ModelError(f"--predict expects NAME=VALUE, got {item!r}", fix="e.g. --predict x=4")
        try:
            value = json.loads(text) if text.startswith("[") else float(text)
        except ValueError:
            raise ModelError(
                f"--predict {name}= needs a number (or a [list] for a vector column), got {text!r}",
                fix="e.g. --predict x=4",
            ) from None
        out[name] = value
    return out


def _check_plot_path(path: str) -> None:
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        raise ModelError(f"--plot {path!r}: no such directory {folder!r}", fix="create it or name another file")


def run(args: argparse.Namespace) -> int:
    """Train as the flags say; returns the exit status (bad input raises :class:`ModelError`)."""
    predict = parse_predict(args.predict)
    if args.mode == "newton" and args.lr is not None:
        raise ModelError(
            f"--lr {args.lr:g} has no effect with --mode newton (a Newton step is p - H^-1 grad, no learning rate)",
            fix="drop --lr, or use --mode sgd or --mode batch",
        )
    if args.plot:
        _check_plot_path(args.plot)
    from ..model import load

    model = load(args.model)
    if predict:
        predict = {**model.train.predict, **predict}
    from ..training import train

    progress = ProgressBar(enabled=not args.json, description="training")
    try:
        result = train(
            model,
            epochs=args.epochs,
            lr=args.lr,
            mode=args.mode,
            source=args.source,
            predict=predict or None,
            progress=progress,
        )
    finally:
        progress.stop()
    if args.plot:
        from ..plots import plot_losses

        plot_losses(result, args.plot)
    if args.json:
        print(json.dumps(result.to_dict(), indent=2))
    else:
        out = console()
        result.render(out)
        if args.plot:
            out.print(f"loss plot written to {args.plot}")
    return EXIT_OK
