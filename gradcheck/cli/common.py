"""What every subcommand shares: exit codes, the parser class, flag types, console, progress, errors.

Imports only the standard library at import time (rich loads when a
console or a progress display is made), so ``--help`` and bad input answer
at once.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Callable
from typing import Any

from ..errors import ModelError

#: Exit statuses (docs/cli.md, "Exit status").
EXIT_OK, EXIT_FAIL, EXIT_USAGE, EXIT_INTERNAL, EXIT_INTERRUPTED = 0, 1, 2, 3, 130


class Parser(argparse.ArgumentParser):
    """argparse, with usage errors as one line and exit status 2."""

    def error(self, message: str) -> Any:  # type: ignore[override]
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


# --- flag types -----------------------------------------------------------------


def whole_number(text: str) -> int:
    """A whole number >= 0 from a flag's text."""
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


def positive_number(text: str) -> float:
    """A finite number > 0 from a flag's text."""
    return finite_number(text, zero=False)


# --- output ---------------------------------------------------------------------


def console(stderr: bool = False) -> Any:
    """A rich console on stdout (or stderr): colour only on a terminal, none with ``NO_COLOR``."""
    from rich.console import Console

    stream = sys.stderr if stderr else sys.stdout
    # Off a terminal there is no width to fit: keep rows whole rather than wrap at 80.
    width = None if stream.isatty() else 160
    if os.environ.get("NO_COLOR"):  # https://no-color.org: no colour, and no other escapes either
        return Console(stderr=stderr, highlight=False, width=width, color_system=None)
    return Console(stderr=stderr, highlight=False, width=width)


class StatusLine:
    """A status line on stderr while work runs, only on a terminal: ``status(message)``."""

    def __init__(self, enabled: bool) -> None:
        self.status: Any = None
        if enabled and sys.stderr.isatty():
            self.status = console(stderr=True).status("loading")
            self.status.start()

    def __call__(self, message: str) -> None:
        if self.status is not None:
            self.status.update(message)

    def prefixed(self, prefix: str) -> Callable[[str], None]:
        """A ``say(message)`` that shows ``prefix: message``."""

        def say(message: str) -> None:
            self(f"{prefix}: {message}")

        return say

    def stop(self) -> None:
        if self.status is not None:
            self.status.stop()


class ProgressBar:
    """A rich progress bar on stderr, shown once work has taken more than a second: ``bar(label, done, total)``."""

    DELAY = 1.0

    def __init__(self, enabled: bool, description: str) -> None:
        self.enabled = enabled and sys.stderr.isatty()
        self.description = description
        self.start = time.monotonic()
        self.bar: Any = None
        self.task: Any = None

    def __call__(self, label: str, done: int, total: int) -> None:
        if not self.enabled:
            return
        if self.bar is None:
            if time.monotonic() - self.start < self.DELAY:
                return
            from rich.progress import Progress

            self.bar = Progress(console=console(stderr=True), transient=True)
            self.bar.start()
            self.task = self.bar.add_task(self.description, total=total)
        self.bar.update(self.task, completed=done, description=f"{self.description} ({label})")

    def stop(self) -> None:
        if self.bar is not None:
            self.bar.stop()


# --- errors ---------------------------------------------------------------------


def run_guarded(command: Callable[[], int], *, debug: bool) -> int:
    """``command()``, with bad input as one line on stderr and exit 2, an internal error as one line and exit 3.

    A :class:`ModelError` is the user's input; any other exception is a bug
    in gradcheck, whose traceback ``debug`` shows.
    """
    try:
        return command()
    except ModelError as err:
        print(f"gradcheck: error: {err}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("gradcheck: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except BrokenPipeError:  # `gradcheck ... | head`: the reader has what it wanted
        # Python would complain again when it flushes stdout at exit: point stdout at nothing.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_OK
    except Exception as err:  # an internal error: one line, traceback only with --debug
        if debug:
            raise
        print(
            f"gradcheck: internal error: {type(err).__name__}: {err} "
            "(this is a bug in gradcheck; please report it with the model file; --debug shows the traceback)",
            file=sys.stderr,
        )
        return EXIT_INTERNAL
