"""Limits that keep a hostile or broken model file from hanging gradcheck.

Every limit, its default and how to raise it is listed in ``docs/limits.md``.
The size limits live beside the code they guard (``gradcheck.model``:
``MAX_FILE_BYTES``, ``MAX_PARAM_VALUES``, ``MAX_DATA_VALUES``;
``gradcheck.expr``: ``MAX_LENGTH``, ``MAX_DEPTH``, ``MAX_TREE_DEPTH``); this
module holds the rest: the time bound on symbolic work, the rules for
constant subexpressions and integer literals, and the number of random
points a file may ask for.
"""

from __future__ import annotations

import gc
import math
import os
import signal
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from .errors import ModelError

#: CPU seconds (of the checking thread) that the SymPy work of one check may
#: take in all (differentiation, evaluation, formulas; importing SymPy is not
#: counted), plus :data:`PER_VALUE` per parameter value; ``None`` or ``0`` for
#: no bound. CPU time, not wall time, so that a busy machine does not turn a
#: report into an error. Raise it with
#: ``--time-limit``, the environment variable ``GRADCHECK_TIME_LIMIT`` or by
#: assigning this constant. A model file cannot raise it.
SYMBOLIC_SECONDS: float | None = 5.0

#: Extra CPU seconds per parameter value (element), so that a big model that
#: is legitimately slow to differentiate is not cut off: 1e4 values add 50 s.
PER_VALUE = 0.005

#: Largest exact constant SymPy is asked to compute, in bits (about 300,000
#: decimal digits): ``(1/3)**10**9`` would hang in C code no timer can stop.
MAX_CONSTANT_BITS = 1_000_000

#: Most random points a model file's ``check: {points: N}`` may ask for (each
#: point is a whole check); ``--points`` and ``check(points=...)`` are not bounded.
MAX_POINTS = 10_000

#: Largest integer literal (in magnitude) an expression may hold: 2**53, the
#: last whole number every float64 source holds exactly. Beyond it SymPy would
#: compute with one number and torch/NumPy with another (or fail to convert
#: it: ``x**99999999999999999999`` overflowed torch's int64).
MAX_INTEGER = 2**53

_ENV = "GRADCHECK_TIME_LIMIT"


def symbolic_seconds() -> float | None:
    """The time bound in force: ``GRADCHECK_TIME_LIMIT`` if set, else :data:`SYMBOLIC_SECONDS`."""
    raw = os.environ.get(_ENV)
    if raw:
        try:
            value = float(raw)
        except ValueError:
            raise ModelError(
                f"{_ENV}={raw!r} is not a number", fix=f"set {_ENV} to seconds, e.g. 60, or 0 for no limit"
            ) from None
        if not value >= 0 or math.isinf(value):
            raise ModelError(f"{_ENV}={raw!r} must be a finite number >= 0", fix="use 0 for no limit")
        return value or None
    return SYMBOLIC_SECONDS or None


class _Expired(BaseException):
    """Raised by the timer inside SymPy; a ``BaseException`` so no ``except Exception`` there swallows it."""


class Budget:
    """The time left for a check's symbolic work, spent across several calls.

    ``with budget.spend("symbolic differentiation"):`` runs its body while a
    watchdog thread reads the *calling thread's* CPU clock
    (``time.pthread_getcpuclockid``); when the budget is spent it signals that
    thread, whose handler raises inside SymPy. Only the calling thread's own
    CPU time counts, so torch's worker threads spinning next to it, or a
    busy machine, do not eat the budget. Main thread on POSIX only; elsewhere
    the work is unbounded. Running out of time, or SymPy recursing too deeply,
    becomes a :class:`ModelError`.
    """

    #: How often the watchdog looks at the clock, in seconds.
    POLL = 0.02

    def __init__(self, seconds: float | None = None, *, file: str | None = None, size: int = 0) -> None:
        base = symbolic_seconds() if seconds is None else (seconds or None)
        # A big model legitimately needs more: PER_VALUE seconds per parameter value.
        self.total = None if base is None else base + PER_VALUE * size
        self.left = self.total
        self.file = file

    def _armed(self) -> bool:
        return (
            self.left is not None
            and hasattr(time, "pthread_getcpuclockid")
            and hasattr(signal, "pthread_kill")
            and threading.current_thread() is threading.main_thread()
        )

    @contextmanager
    def spend(self, what: str) -> Iterator[None]:
        armed = self._armed()
        if armed:
            import mpmath  # noqa: F401  (imports are not the model's work)
            import sympy  # noqa: F401
        start = time.thread_time()
        old: Any = None
        stop = threading.Event()
        try:
            if armed:
                assert self.left is not None
                if self.left <= 0:
                    raise _Expired
                clock = time.pthread_getcpuclockid(threading.get_ident())
                deadline = time.clock_gettime(clock) + self.left
                target = threading.get_ident()

                def on_signal(signum: int, frame: Any) -> None:
                    if not stop.is_set() and not _in_gc_callback(frame):
                        raise _Expired

                def watch() -> None:
                    # Once the budget is spent, signal again every POLL until the body has ended: a raise
                    # that lands where Python ignores exceptions (a gc callback, a __del__) is not lost.
                    while not stop.wait(self.POLL):
                        if time.clock_gettime(clock) >= deadline:
                            signal.pthread_kill(target, _SIGNAL)

                old = signal.signal(_SIGNAL, on_signal)
                threading.Thread(target=watch, name="gradcheck-time-limit", daemon=True).start()
            try:
                yield
            finally:
                stop.set()
        except _Expired:
            raise ModelError(
                f"{what} took longer than the time limit of {self.total:g} CPU seconds",
                file=self.file,
                fix=f"simplify the model or make its tensors smaller, or raise the limit with --time-limit SECONDS "
                f"(or {_ENV}, or gradcheck.limits.SYMBOLIC_SECONDS; 0 for none)",
            ) from None
        except RecursionError:
            raise ModelError(
                f"{what}: the loss nests too deeply for SymPy once the model entries are substituted",
                file=self.file,
                fix="write the model with fewer nested operations (use sum() or dot() over vectors for long sums)",
            ) from None
        finally:
            if armed and old is not None:
                signal.signal(_SIGNAL, old)
            if self.left is not None:
                self.left -= time.thread_time() - start


def _in_gc_callback(frame: Any) -> bool:
    """``frame`` runs inside a garbage-collector callback, where Python would only print a raise and go on.

    The watchdog signals again a moment later, when the callback has returned.
    """
    codes = {getattr(cb, "__code__", None) for cb in gc.callbacks}
    codes.discard(None)
    while codes and frame is not None:
        if frame.f_code in codes:
            return True
        frame = frame.f_back
    return False


#: The signal the watchdog sends (SIGUSR2 is left to programs far less often than SIGUSR1).
_SIGNAL = getattr(signal, "SIGUSR2", signal.SIGTERM)


# --- constant subexpressions --------------------------------------------------


def check_constants(node: Any, text: str | None = None, *, names: Any = ()) -> None:
    """Reject constant subexpressions that are not finite, divide by zero or are too big to compute.

    A subexpression is constant when it holds only numbers and ``pi``/``e``,
    where those are not in ``names`` (the params, data columns and earlier
    entries in scope: a user's ``e`` wins over the constant, as in Python).
    An integer literal larger than :data:`MAX_INTEGER` is refused.
    Its float64 value must be finite (``1/0``, ``log(0)``, ``10**400`` and
    ``sqrt(-1)`` are mistakes, not models), and SymPy, which computes
    constants exactly, must not be asked for a number of more than
    :data:`MAX_CONSTANT_BITS` bits.
    """
    import numpy as np

    from . import interp
    from .expr import unparse
    from .ops import CONSTANTS

    def fail(n: Any, what: str, fix: str) -> ModelError:
        return ModelError(what, fix=fix, text=text, offset=n.pos)

    def visit(n: Any) -> tuple[float, float] | None:
        """``(float value, bits of the exact value)`` for a constant node, else ``None``."""
        if n.op == "num":
            digits = n.text.replace("_", "")
            if digits.isdigit() and int(digits) > MAX_INTEGER:  # an integer literal (a float has a dot or an e)
                raise fail(
                    n,
                    f"integer {n.text} is larger than 2**53, beyond which float64 cannot hold whole numbers exactly",
                    f"write it as a float ({float(int(digits)):.6g}) if an approximate number is meant, "
                    "or use a smaller one",
                )
            v = float(n.value)
            return v, 4.0 * len(n.text) + (3.33 * abs(math.log10(abs(v))) if v else 0.0)
        if n.op == "name":
            constant = n.value in CONSTANTS and n.value not in names
            return (float(CONSTANTS[n.value]), 64.0) if constant else None
        found = [visit(a) for a in n.args]
        if n.op == "div" and found[1] is not None and found[1][0] == 0:
            raise fail(n, "division by zero", "divide by something that is not 0")
        # not a number: a name, or a constant tensor (``expand(1, shape=[2, 2])``, its parts checked)
        if any(f is None for f in found) or n.shape:
            return None
        values = [f[0] for f in found if f is not None]
        bits = [f[1] for f in found if f is not None]
        if n.op == "pow" and float(values[1]).is_integer() and abs(values[0]) not in (0.0, 1.0):
            size = bits[0] * max(abs(values[1]), 1.0)
        else:
            size = sum(bits)
        if size > MAX_CONSTANT_BITS:
            raise fail(
                n,
                f"constant {unparse(n)!r} is too large to compute exactly (about {size / 3.32:.3g} digits)",
                "numbers and constant expressions must fit in a float64",
            )
        with np.errstate(all="ignore"):
            try:
                value = interp.apply(n, [np.float64(v) for v in values], "numpy", np)
                result = float(np.asarray(value, dtype=np.float64))
            except (ArithmeticError, ValueError, TypeError):
                result = math.nan
        if not math.isfinite(result):
            raise fail(
                n,
                f"constant {unparse(n)!r} is not a finite float64 number ({result})",
                "constant expressions must be finite: check for division by zero, log of 0, sqrt of a negative "
                "number or overflow",
            )
        return result, size

    visit(node)
