"""The autograd source computed ahead in a forked worker (gradcheck/sources/ahead.py).

Each test runs a fresh interpreter (the fork happens only where torch is not
imported yet, which this test process has done long ago).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).parent.parent
CONV = ROOT / "examples" / "zoo" / "conv2d.yaml"

pytestmark = [pytest.mark.slow, pytest.mark.skipif(not sys.platform.startswith("linux"), reason="fork: Linux only")]


def _python(code: str, parallel: str = "1") -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, PYTHONPATH=str(ROOT), GRADCHECK_PARALLEL=parallel)
    return subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)


CHECK = f"""
import json, os, sys
import gradcheck as gc
from gradcheck.sources import ahead
ahead.prewarm()
forked = ahead._WORKER is not None
report = gc.check(gc.load({str(CONV)!r}))
ahead.shutdown()
try:
    os.waitpid(-1, os.WNOHANG)
    children = "left"
except ChildProcessError:
    children = "none"
print(json.dumps({{"forked": forked, "torch_here": "torch" in sys.modules, "children": children,
                  "report": report.to_dict()}}))
"""


def test_the_child_computes_autograd_and_the_report_is_the_same_as_without_it():
    parallel = _python(CHECK, "1")
    serial = _python(CHECK, "0")
    assert parallel.returncode == 0, parallel.stderr
    assert serial.returncode == 0, serial.stderr
    got, want = json.loads(parallel.stdout), json.loads(serial.stdout)
    assert got["forked"] and not want["forked"]
    assert not got["torch_here"]  # the parent never imported torch: the child did the autograd source
    assert want["torch_here"]
    assert got["children"] == "none"  # the child was reaped
    assert got["report"] == want["report"]
    assert got["report"]["status"] == "agree"


def test_the_cli_prints_the_same_json_either_way():
    """The command line's worker (forked before the files are read) serves one check after another."""
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    cmd = [
        sys.executable,
        "-m",
        "gradcheck",
        str(CONV),
        str(ROOT / "examples" / "lesson.yaml"),
        "--json",
        "--points",
        "2",
    ]
    runs = [
        subprocess.run(cmd, env=dict(env, GRADCHECK_PARALLEL=p), capture_output=True, text=True, timeout=300)
        for p in ("1", "0")
    ]
    assert runs[0].returncode == runs[1].returncode == 0
    assert runs[0].stdout == runs[1].stdout


def test_an_error_in_the_autograd_source_reads_the_same_either_way():
    code = """
import gradcheck as gc
import numpy as np

def broken(x):
    raise RuntimeError("the torch form of wobble is broken")

gc.register_function("wobble", numpy=np.sin, torch=broken, sympy=lambda x: x)
model = gc.Model.from_dict({"params": {"w": 0.5}, "model": {"loss": "wobble(w) ** 2"}})
from gradcheck.sources import ahead
ahead.prewarm()
try:
    gc.check(model)
except Exception as err:
    print(type(err).__name__, err)
"""
    got, want = _python(code, "1"), _python(code, "0")
    assert "the torch form of wobble is broken" in want.stdout
    assert got.stdout == want.stdout
    assert got.returncode == want.returncode


def test_a_check_that_ends_early_leaves_no_child_behind():
    code = f"""
import os
import gradcheck as gc
from gradcheck.sources import ahead, symbolic

def fail(model, point):
    raise gc.ModelError("the symbolic source gave up")

symbolic.gradients = fail
ahead.prewarm()
assert ahead._WORKER is not None
try:
    gc.check(gc.load({str(CONV)!r}))
except gc.ModelError as err:
    print(err)
try:
    os.waitpid(-1, os.WNOHANG)
    print("a child is left")
except ChildProcessError:
    print("no child left")
"""
    out = _python(code, "1")
    assert out.stdout.splitlines() == ["the symbolic source gave up", "no child left"], out.stderr


def test_gradcheck_parallel_0_or_an_imported_torch_means_no_child():
    code = """
import gradcheck as gc
from gradcheck.sources import ahead
before = ahead.forkable()
import torch
print(before, ahead.forkable())
"""
    assert _python(code, "1").stdout.split() == ["True", "False"]
    assert _python(code, "0").stdout.split() == ["False", "False"]


def test_the_workers_reply_is_read_back_in_step_across_models():
    code = f"""
import json
import gradcheck as gc
from gradcheck.sources import ahead
ahead.prewarm()
assert ahead._WORKER is not None
reports = [gc.check(gc.load(p), points=1).to_dict() for p in ({str(CONV)!r}, {str(ROOT / "examples" / "mlp.yaml")!r})]
ahead.shutdown()
print(json.dumps(reports))
"""
    got, want = _python(code, "1"), _python(code.replace("assert ahead._WORKER is not None", ""), "0")
    assert got.returncode == 0, got.stderr
    assert json.loads(got.stdout) == json.loads(want.stdout)


def test_the_api_alone_does_not_fork():
    """Without prewarm (the command line's), gc.check computes autograd in its own process."""
    code = f"""
import os, sys
import gradcheck as gc
report = gc.check(gc.load({str(CONV)!r}))
try:
    os.waitpid(-1, os.WNOHANG)
    children = "a child"
except ChildProcessError:
    children = "no child"
print(report.status, "torch" in sys.modules, children)
"""
    assert _python(code, "1").stdout.split() == ["agree", "True", "no", "child"]
