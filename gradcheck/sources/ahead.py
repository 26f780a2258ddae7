"""The autograd source computed ahead, in a forked worker, while this process works on the others.

Importing torch takes about a second and a half, longer than the symbolic
and finite-difference sources take on most models. The command line calls
:func:`prewarm` before it reads any model file: where this process has not
imported torch yet, it forks a worker that imports torch at once and then
answers one request after another, each a check's model, points and dtype
(pickled; a thread of the worker takes them in, so the parent never waits
on a full pipe), with the autograd gradients at those points. The checker
sends its request before it runs the other sources (:func:`start`) and reads
the reply when it judges the first point (:meth:`Ahead.get`). The values are
the ones :func:`gradcheck.sources.autograd.gradients` gives in the parent, to
the bit: the same code runs on the same inputs.

Only on Linux, only where torch is not imported yet, only while this
process runs no other thread (forking a threaded process is unsafe), and
never when ``GRADCHECK_PARALLEL=0``; the API (``gc.check``) does not fork
unless :func:`prewarm` was called (a long-lived process imports torch once
anyway). Where the worker fails for any reason the parent computes the
gradients itself, so an error reads exactly as it would without it.
``docs/how-it-works.md`` ("The sources in parallel") has the story.
"""

from __future__ import annotations

import copy
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
    """Whether :func:`prewarm` may fork here (see the module docstring)."""
    return (
        sys.platform.startswith("linux")
        and hasattr(os, "fork")
        and "torch" not in sys.modules
        and os.environ.get("GRADCHECK_PARALLEL", "1") != "0"
        and threading.active_count() == 1
    )


class _Worker:
    """A forked process that has imported torch and computes autograd gradients on request (length-prefixed pickles)."""

    def __init__(self, pid: int, to_child: int, from_child: int) -> None:
        self.pid, self.to_child, self.from_child = pid, to_child, from_child
        self.owner = os.getpid()

    def send(self, payload: bytes) -> None:
        _write(self.to_child, payload)

    def receive(self) -> bytes:
        return _read(self.from_child) or b""

    def stop(self) -> None:
        for fd in (self.to_child, self.from_child):
            try:
                os.close(fd)
            except OSError:
                pass
        try:
            os.kill(self.pid, signal.SIGKILL)
            os.waitpid(self.pid, 0)
        except (ProcessLookupError, ChildProcessError):  # already gone (or reaped by a SIGCHLD handler)
            pass


_WORKER: _Worker | None = None


def _write(fd: int, payload: bytes) -> None:
    data = len(payload).to_bytes(8, "little") + payload
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def _read(fd: int) -> bytes | None:
    """One length-prefixed message, ``None`` at the end of the stream."""
    head = _exactly(fd, 8)
    if head is None:
        return None
    return _exactly(fd, int.from_bytes(head, "little"))


def _exactly(fd: int, n: int) -> bytes | None:
    parts, left = [], n
    while left:
        chunk = os.read(fd, min(left, 1 << 20))
        if not chunk:
            return None
        parts.append(chunk)
        left -= len(chunk)
    return b"".join(parts)


def _serve(requests: int, replies: int) -> None:
    """The worker's life: import torch, then answer each request until the parent closes the pipe.

    A thread takes the requests in as they come, so the parent never waits on
    a full pipe while torch is being imported here.
    """
    try:
        import queue

        waiting: queue.SimpleQueue[bytes | None] = queue.SimpleQueue()

        def pump() -> None:
            while (got := _read(requests)) is not None:
                waiting.put(got)
            waiting.put(None)

        threading.Thread(target=pump, name="gradcheck-requests", daemon=True).start()
        import torch  # noqa: F401  (the point of the worker: the import overlaps the parent's work)

        from . import autograd

        while (request := waiting.get()) is not None:
            try:
                model, points, dtype = pickle.loads(request)  # our own parent's pickle, nothing else
                payload = pickle.dumps(
                    [autograd.gradients(model, p, dtype) for p in points], protocol=pickle.HIGHEST_PROTOCOL
                )
            except Exception:  # noqa: BLE001  (the parent recomputes and reports any error itself)
                payload = b""
            _write(replies, payload)
    finally:
        os._exit(0)


def prewarm() -> None:
    """Fork the worker now, where :func:`forkable` (the command line calls this before it reads any file)."""
    global _WORKER
    if _WORKER is not None or not forkable():
        return
    req_read, req_write = os.pipe()
    rep_read, rep_write = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(req_write)
        os.close(rep_read)
        _serve(req_read, rep_write)
    os.close(req_read)
    os.close(rep_write)
    _WORKER = _Worker(pid, req_write, rep_read)


def shutdown() -> None:
    """End the worker, if this process has one."""
    global _WORKER
    if _WORKER is not None and _WORKER.owner == os.getpid():
        _WORKER.stop()
    _WORKER = None


def _request(model: Model, points: list[dict[str, np.ndarray]], dtype: str) -> bytes | None:
    """The pickled request for the worker (the model without its caches of compiled code), ``None`` if it won't pickle."""
    bare = copy.copy(model)
    object.__setattr__(bare, "cache", {})
    try:
        return pickle.dumps((bare, points, dtype), protocol=pickle.HIGHEST_PROTOCOL)
    except Exception:  # noqa: BLE001  (a model holding a user's function: the parent computes the gradients)
        return None


class Ahead:
    """The autograd gradients at each of the points: the worker's where it took the request, else computed here."""

    def __init__(self, model: Model, points: list[dict[str, np.ndarray]], dtype: str) -> None:
        self.model, self.points, self.dtype = model, points, dtype
        self.worker: _Worker | None = None
        self.results: list[Gradients] | None = None

    def get(self, i: int) -> Gradients:
        """The gradients at point ``i``."""
        if self.worker is not None:
            reply, self.worker = self.worker.receive(), None
            self.results = self._unpack(reply)
        if self.results is not None:
            return self.results[i]
        from . import autograd

        return autograd.gradients(self.model, self.points[i], self.dtype)

    def _unpack(self, reply: bytes) -> list[Gradients] | None:
        try:
            got = pickle.loads(reply) if reply else None  # our own worker's pickle, nothing else
        except Exception:  # noqa: BLE001  (a worker that died half-way: the parent computes them)
            return None
        ok = isinstance(got, list) and len(got) == len(self.points) and all(isinstance(g, Gradients) for g in got)
        return got if ok else None

    def close(self) -> None:
        """End the worker if its reply was not read (the check ended early: it is out of step); idempotent."""
        if self.worker is not None:
            self.worker = None
            shutdown()


def start(model: Model, points: list[dict[str, np.ndarray]], dtype: str) -> Ahead:
    """Begin the autograd gradients at ``points``: sent to the worker where there is one, else computed on demand."""
    ahead = Ahead(model, points, dtype)
    worker = _WORKER
    if worker is None or worker.owner != os.getpid():  # a process forked from ours must not share its pipes
        return ahead
    request = _request(model, points, dtype)
    if request is not None:
        try:
            worker.send(request)
            ahead.worker = worker
        except OSError:  # the worker is gone: the parent computes the gradients
            shutdown()
    return ahead
