"""The command line: ``gradcheck [COMMAND] ...`` -> :func:`main` -> exit status.

One module per subcommand (:mod:`.check`, :mod:`.train`, :mod:`.formulas`, :mod:`.convert`), each with
``NAME``, ``SUMMARY``, ``add_to(subparsers, commands)`` (its argparse
subparser, whose default ``run(args) -> int`` does the work) and nothing
shared but :mod:`.common` (exit codes, flag types, console, progress,
error printing). Adding a subcommand is one module and one entry in
:data:`COMMANDS`.

Dispatch (docs/cli.md, "Commands"): when the first argument is a command
name, that command runs; otherwise the arguments are ``check``'s, so
``gradcheck MODEL.yaml`` checks and a model file named like a command is
checked as ``gradcheck ./train`` or ``gradcheck check train``.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from . import check, convert, formulas, train
from .common import EXIT_FAIL, EXIT_OK, EXIT_USAGE, Parser, run_guarded

__all__ = ["COMMANDS", "DEFAULT", "EXIT_FAIL", "EXIT_OK", "EXIT_USAGE", "main", "parser"]

#: The subcommands, in the order ``--help`` lists them.
COMMANDS = {module.NAME: module for module in (check, train, formulas, convert)}
#: The command run when the first argument is not a command name.
DEFAULT = check.NAME


def parser() -> tuple[argparse.ArgumentParser, dict[str, argparse.ArgumentParser]]:
    """The root parser (a command name, then that command's flags) and each command's own parser."""
    root = Parser(prog="gradcheck", add_help=False)
    subparsers = root.add_subparsers(dest="command", required=True, metavar="COMMAND", parser_class=Parser)
    width = max(len(name) for name in COMMANDS) + 2
    commands = "\n".join(f"  {name:<{width}}{module.SUMMARY}" for name, module in COMMANDS.items())
    return root, {name: module.add_to(subparsers, commands) for name, module in COMMANDS.items()}


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status."""
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] not in COMMANDS:
        args.insert(0, DEFAULT)

    def run() -> int:
        root, parsers = parser()
        ns, extra = root.parse_known_args(args)
        if extra:  # reported by the command's own parser, so the message names it
            parsers[ns.command].error(f"unrecognized arguments: {' '.join(extra)}")
        return int(ns.run(ns))

    return run_guarded(run, debug="--debug" in args)
