"""The autograd source computed ahead, in a forked process, while this one works on the others.

Importing torch takes about a second and a half, longer than the symbolic
and finite-difference sources take on most models. Where this process has
not imported torch yet, :func:`start` forks a child that imports it and
computes the autograd gradients at every point while the parent imports
SymPy and runs the other sources; the parent reads the results when it
needs them (:meth:`Ahead.get`). The values are the ones
:func:`gradcheck.sources.autograd.gradients` gives in the parent, to the
bit: the same code runs on the same inputs.

Only on Linux, only where torch is not imported yet (in a notebook or a
test run that has imported it there is nothing to gain), only while this
process runs no other thread (forking a threaded process is unsafe), and
never when ``GRADCHECK_PARALLEL=0``. Where the child fails for any reason
the parent computes the gradients itself, so an error reads exactly as it
would without the child. ``docs/how-it-works.md`` ("The sources in
parallel") has the story.
"""

from __future__ import annotations

import os
import pickle
import signal
import sys
import threading
from typing import TYPE_CHECKING

import numpy as np

from . import Gradients

if TYPE_CHECKING:
    from ..model import Model


def forkable() -> bool:
    """Whether :func:`start` may fork here (see the module docstring)."""
    return (
        sys.platform.startswith("linux")
        and hasattr(os, "fork")
        and "torch" not in sys.modules
        and os.environ.get("GRADCHECK_PARALLEL", "1") != "0"
        and threading.active_count() == 1
    )


class Ahead:
    """The autograd gradients at each of the points: from the child where it ran, else computed on demand."""

    def __init__(self, model: Model, points: list[dict[str, np.ndarray]], dtype: str) -> None:
        self.model, self.points, self.dtype = model, points, dtype
        self.pid = 0
        self.fd = -1
        self.results: list[Gradients] | None = None

    def get(self, i: int) -> Gradients:
        """The gradients at point ``i``."""
        if self.pid:
            self.results = self._collect()
        if self.results is not None:
            return self.results[i]
        from . import autograd

        return autograd.gradients(self.model, self.points[i], self.dtype)

    def _collect(self) -> list[Gradients] | None:
        chunks = []
        with os.fdopen(self.fd, "rb") as pipe:
            self.fd = -1
            while chunk := pipe.read(1 << 20):
                chunks.append(chunk)
        self._reap()
        try:
            got = pickle.loads(b"".join(chunks)) if chunks else None  # our own child's pickle, nothing else
        except Exception:  # noqa: BLE001  (a child that died half-way: the parent computes them)
            return None
        ok = isinstance(got, list) and len(got) == len(self.points) and all(isinstance(g, Gradients) for g in got)
        return got if ok else None

    def _reap(self) -> None:
        if self.pid:
            os.waitpid(self.pid, 0)
            self.pid = 0

    def close(self) -> None:
        """End the child if its results were not read (the check ended early); idempotent."""
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1
        if self.pid:
            try:
                os.kill(self.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            self._reap()


def start(model: Model, points: list[dict[str, np.ndarray]], dtype: str) -> Ahead:
    """Begin the autograd gradients at ``points``: in a forked child where :func:`forkable`, else lazily."""
    ahead = Ahead(model, points, dtype)
    if not forkable():
        return ahead
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: compute, write, leave without running the parent's exit handlers
        payload = b""
        try:
            os.close(read)
            from . import autograd

            results = [autograd.gradients(model, p, dtype) for p in points]
            payload = pickle.dumps(results, protocol=pickle.HIGHEST_PROTOCOL)
        except BaseException:  # noqa: BLE001, S110  (the parent recomputes and reports any error itself)
            payload = b""
        try:
            with os.fdopen(write, "wb") as pipe:
                pipe.write(payload)
        except BaseException:  # noqa: BLE001, S110  (the parent stopped reading: nothing left to do)
            pass
        os._exit(0)
    os.close(write)
    ahead.pid, ahead.fd = pid, read
    return ahead
