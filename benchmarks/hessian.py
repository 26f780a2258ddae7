"""Second-order check (``order=2``) against torch's ``gradgradcheck``, slow and fast, on tanh MLPs, in one run.

Full Hessian at about 1e2 and 1e3 parameters; ``u . H v`` for K random pairs
(``directions=K``) at 1e3, 3e3 and 1e4, whose time per parameter shows the
directional check's growth is linear in the parameter count. torch's slow
``gradgradcheck`` is skipped at 1e4 (it forms two 1e4 x 1e4 Jacobians, 800 MB
each). Run: ``python benchmarks/hessian.py [--quick]`` (``--quick``: 1e2 and
the 1e3 rows only). Prints a table for docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from typing import Any

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from models import mlp, n_params  # noqa: E402

import gradcheck as gc  # noqa: E402
from gradcheck import hessian  # noqa: E402

K = 4


def _torch_fn(model: gc.Model) -> tuple[Any, torch.Tensor]:
    d = {k: torch.as_tensor(v, dtype=torch.float64) for k, v in model.data.items()}
    names = list(model.params)
    shapes = [model.params[k].shape for k in names]
    sizes = [model.params[k].value.size for k in names]
    flat = torch.cat([torch.as_tensor(model.params[k].value, dtype=torch.float64).reshape(-1) for k in names])

    def f(v: torch.Tensor) -> torch.Tensor:
        p = {k: part.reshape(s) for k, part, s in zip(names, torch.split(v, sizes), shapes)}
        h = torch.tanh(d["x"] @ p["W1"].T + p["b1"])
        return ((h @ p["w2"] + p["b2"] - d["y"]) ** 2).mean()

    return f, flat.requires_grad_(True)


def _timed(fn: Any) -> tuple[float, Any]:
    start = time.perf_counter()
    out = fn()
    return time.perf_counter() - start, out


#: (parameters, directions or None for the full Hessian), in the order of the table.
ROWS = [(100, None), (1000, None), (1000, K), (3000, K), (10_000, K)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="only the 1e2 and 1e3 rows")
    args = parser.parse_args()
    torch.set_num_threads(1)
    rows = []
    for size, directions in ROWS:
        if args.quick and size > 1000:
            continue
        model = mlp(size)
        point = model.param_values()
        f, flat = _torch_fn(model)
        tol = gc.Tolerance.for_dtype("float64")
        t_check, result = _timed(lambda: hessian.check_point(model, point, tol, "float64", directions=directions))
        t_slow = float("nan")
        if size <= 3000:
            t_slow, _ = _timed(lambda: torch.autograd.gradgradcheck(f, (flat,), fast_mode=False))
        t_fast, _ = _timed(lambda: torch.autograd.gradgradcheck(f, (flat,), fast_mode=True))
        what = f"directions={directions}" if directions else "full Hessian"
        rows.append((n_params(model), what, t_check, result.status, t_slow, t_fast))
        print(f"  ... {n_params(model)} params, {what}: {t_check:.2f} s", file=sys.stderr, flush=True)
    print(
        f"{'params':>8} {'check':>16} {'gc order=2 (s)':>16} {'ms / param':>11} {'status':>8} "
        f"{'gradgradcheck slow':>20} {'fast':>8}"
    )
    for n, what, t, status, slow, fast in rows:
        slow_text = f"{slow:.2f}" if np.isfinite(slow) else "(skipped)"
        print(f"{n:>8} {what:>16} {t:>16.2f} {1e3 * t / n:>11.3f} {status:>8} {slow_text:>20} {fast:>8.2f}")
    directional = [(n, t) for n, what, t, *_ in rows if what.startswith("directions")]
    if len(directional) > 1:
        (n0, t0), (n1, t1) = directional[0], directional[-1]
        print(
            f"directional growth from {n0} to {n1} params: time x{t1 / t0:.1f} for params x{n1 / n0:.1f} "
            f"(exponent {np.log(t1 / t0) / np.log(n1 / n0):.2f}; 1 is linear)"
        )


if __name__ == "__main__":
    main()
