"""``gradcheck convert MODULE:FACTORY``: print the model file traced from PyTorch code.

``FACTORY()`` returns ``(fn, params, data)`` as :func:`gradcheck.from_torch`
takes them; the model file goes to stdout (``> model.yaml``). Exit status 0,
or 2 when the code cannot be traced (the message names the call and line).
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from .common import EXIT_OK

NAME = "convert"
SUMMARY = "print the model file traced from PyTorch code (MODULE:FACTORY)"


def add_to(subparsers: Any, commands: str) -> argparse.ArgumentParser:
    """Register ``convert`` on the root parser's ``subparsers``."""
    p: argparse.ArgumentParser = subparsers.add_parser(
        NAME,
        prog="gradcheck convert",
        help=SUMMARY,
        description=(
            "Trace PyTorch code into the model language and print the model file.\n"
            "FACTORY() returns (fn, params, data): fn(params, sample) is one sample's scalar loss."
        ),
        epilog="example: gradcheck convert mynet:make > mynet.yaml\nDocs: docs/from-torch.md, docs/cli.md",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("factory", metavar="MODULE:FACTORY", help="FACTORY() -> (fn, params, data), imported from MODULE")
    p.add_argument("--debug", action="store_true", help="show the traceback of an internal error")
    p.set_defaults(run=run)
    return p


def run(args: argparse.Namespace) -> int:
    """Trace and print; bad input raises :class:`gradcheck.ModelError`."""
    from ..trace import from_factory

    model = from_factory(args.factory, "convert")
    sys.stdout.write(model.to_yaml())
    return EXIT_OK
