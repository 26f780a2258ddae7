"""Issue 10, point 4: a conv layer and an attention head (and the conv with ReLU and max-pooling,
``benchmarks/cnn.yaml``), checked three ways, against torch's slow gradcheck.

    python benchmarks/layers.py            # time all three, print the ratios (a few minutes)
    python benchmarks/layers.py --write    # regenerate benchmarks/conv.yaml and benchmarks/attention.yaml

Whole process against whole process, wall time (and CPU time, user + system,
which a busy shared machine distorts less): ``python -m gradcheck FILE --json``
(symbolic, autograd and finite differences, at the file's values, with the
default limits) against a subprocess that imports torch, reads the same file (PyYAML), writes the same
function in torch and runs ``torch.autograd.gradcheck`` in its default slow
mode, float64, with respect to the same parameters. The ratio is gradcheck's
time over torch's; at most 1 meets the issue. Not a test: nothing here asserts.
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent

CONV = HERE / "conv.yaml"
CNN = HERE / "cnn.yaml"  # conv.yaml's params and data with ReLU and 2x2 max-pooling (written by hand, not by --write)
ATTENTION = HERE / "attention.yaml"

# The same functions in torch, as the subprocess runs them (per sample: no batch axis in the file).
_CONV_START = """
import sys, torch, yaml
import torch.nn.functional as F
doc = yaml.load(open(sys.argv[1]), Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
t = lambda v: torch.tensor(v, dtype=torch.float64)
x, y = t(doc["data"]["x"]), t(doc["data"]["y"])
k, b = t(doc["params"]["k"]).requires_grad_(), t(doc["params"]["b"]).requires_grad_()
"""
TORCH = {
    "conv": _CONV_START
    + """
def f(k, b):
    h = torch.tanh(F.conv2d(x, k) + b)
    return ((h - y) ** 2).sum(dim=(1, 2, 3)).mean()
assert torch.autograd.gradcheck(f, (k, b))
""",
    "cnn": _CONV_START
    + """
def f(k, b):
    h = F.max_pool2d(torch.relu(F.conv2d(x, k) + b), 2)
    return ((h - y[:, :, 0:7, 0:7]) ** 2).sum(dim=(1, 2, 3)).mean()
assert torch.autograd.gradcheck(f, (k, b))
""",
    "attention": """
import sys, torch, yaml
doc = yaml.load(open(sys.argv[1]), Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
t = lambda v: torch.tensor(v, dtype=torch.float64)
X, Y = t(doc["data"]["X"]), t(doc["data"]["Y"])
Wq, Wk, Wv = (t(doc["params"][n]).requires_grad_() for n in ("Wq", "Wk", "Wv"))
def f(Wq, Wk, Wv):
    Q, K, V = X @ Wq, X @ Wk, X @ Wv
    A = torch.softmax(Q @ K.transpose(-1, -2) / 32 ** 0.5, dim=-1)
    return ((A @ V - Y) ** 2).sum(dim=(1, 2)).mean()
assert torch.autograd.gradcheck(f, (Wq, Wk, Wv))
""",
}


def _rows(a: np.ndarray) -> str:
    return "[" + ", ".join(_rows(r) if r.ndim else repr(float(r)) for r in a) + "]"


def write() -> None:
    rng = np.random.default_rng(10)
    r = lambda *shape, s=1.0: np.round(rng.normal(0, s, shape), 4)  # noqa: E731
    CONV.write_text(
        "# Issue 10 point 4: a conv layer (8 channels, 3x3 kernels, 16x16 input, 8 samples).\n"
        "# Written by benchmarks/layers.py --write; timed by benchmarks/layers.py.\n"
        "description: conv layer 8->8 channels, 3x3, 16x16 input, tanh, squared error\n"
        "params:\n"
        f"  k: {_rows(r(8, 8, 3, 3, s=0.2))}\n"
        f"  b: {_rows(r(8, 1, 1, s=0.1))}\n"
        "data:\n"
        f"  x: {_rows(r(8, 8, 16, 16))}\n"
        f"  y: {_rows(r(8, 8, 14, 14, s=0.5))}\n"
        "model:\n"
        "  h: tanh(conv2d(x, k) + b)\n"
        "  loss: sum((h - y)**2)\n"
    )
    ATTENTION.write_text(
        "# Issue 10 point 4: one self-attention head (sequence 16, width 32), 4 samples.\n"
        "# Written by benchmarks/layers.py --write; timed by benchmarks/layers.py.\n"
        "description: self-attention head, sequence 16, width 32, squared error\n"
        "params:\n"
        f"  Wq: {_rows(r(32, 32, s=0.15))}\n"
        f"  Wk: {_rows(r(32, 32, s=0.15))}\n"
        f"  Wv: {_rows(r(32, 32, s=0.15))}\n"
        "data:\n"
        f"  X: {_rows(r(4, 16, 32))}\n"
        f"  Y: {_rows(r(4, 16, 32, s=0.5))}\n"
        "model:\n"
        "  Q: X @ Wq\n"
        "  K: X @ Wk\n"
        "  V: X @ Wv\n"
        "  A: softmax(Q @ K.T / sqrt(32))\n"
        "  loss: sum((A @ V - Y)**2)\n"
    )


def wall(cmd: list[str]) -> tuple[float, float]:
    """Wall time and CPU time (user + system) of one whole process."""
    env = dict(os.environ, PYTHONPATH=str(ROOT), NO_COLOR="1")
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t = time.perf_counter()
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
    elapsed = time.perf_counter() - t
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode not in (0, 1):
        raise SystemExit(f"{' '.join(cmd)} failed:\n{done.stderr}")
    return elapsed, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--write", action="store_true", help="regenerate the two model files")
    parser.add_argument("--repeat", type=int, default=3, help="runs of each process (the median is reported)")
    parser.add_argument("--only", choices=["conv", "cnn", "attention"], help="time one model only")
    parser.add_argument(
        "--torch-threads", type=int, help="torch.set_num_threads(N) in the torch process (default: torch's own)"
    )
    opts = parser.parse_args()
    if opts.write:
        write()
        return
    print(f"load average before: {os.getloadavg()[0]:.1f}")
    print(
        "| model | gradcheck, three ways: wall (CPU) s | torch gradcheck, slow, two ways: wall (CPU) s | ratio wall (CPU) |"
    )
    print("|---|---|---|---|")
    for name, path in (("conv", CONV), ("cnn", CNN), ("attention", ATTENTION)):
        if opts.only and name != opts.only:
            continue
        ours = [wall([sys.executable, "-m", "gradcheck", str(path), "--json"]) for _ in range(opts.repeat)]
        script = TORCH[name]
        if opts.torch_threads:
            script = script.replace(
                "import sys, torch", f"import sys, torch\ntorch.set_num_threads({opts.torch_threads})"
            )
        theirs = [wall([sys.executable, "-c", script, str(path)]) for _ in range(opts.repeat)]
        (ow, oc), (tw, tc) = (tuple(statistics.median(r[i] for r in runs) for i in (0, 1)) for runs in (ours, theirs))
        print(
            f"| {name} | {ow:.2f} ({oc:.2f}) | {tw:.2f} ({tc:.2f}) | {ow / tw:.2f} ({oc / tc:.2f}) |",
            flush=True,
        )
    print(f"load average after: {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
