"""Accuracy and speed of gradcheck against its peers, in one run.

    python benchmarks/run.py            # the full run (a few minutes), rewrites docs/benchmarks.md
    python benchmarks/run.py --quick    # small models only (under a minute)

Peers: torch.autograd.gradcheck (slow and fast mode), numdifftools,
scipy.differentiate (when the installed SciPy has it) and "naive" SymPy
(``diff`` of the inlined per-sample loss once per parameter element, as
gradcheck itself did before). Times are wall-clock on this machine, so only
the ratios within one run mean anything. Not a test: nothing here asserts.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import gradcheck as gc  # noqa: E402
from benchmarks.models import mlp, n_params  # noqa: E402
from gradcheck import limits  # noqa: E402
from gradcheck.sources import finite_diff, symbolic  # noqa: E402

OUT: list[str] = []


def say(line: str = "") -> None:
    print(line, flush=True)
    OUT.append(line)


def timed(fn: Callable[[], Any], repeat: int = 1) -> tuple[float, Any]:
    best, result = float("inf"), None
    for _ in range(repeat):
        t = time.perf_counter()
        result = fn()
        best = min(best, time.perf_counter() - t)
    return best, result


# --- the model as a function of one flat parameter vector -------------------


def flat_loss(model: gc.Model) -> tuple[Callable[[np.ndarray], float], np.ndarray]:
    """NumPy ``f(theta) -> reduced loss`` and the point, for the NumPy-based peers."""
    names = list(model.params)
    shapes = [model.params[k].shape for k in names]
    sizes = [model.params[k].value.size for k in names]
    theta0 = np.concatenate([model.params[k].value.reshape(-1) for k in names])

    def unflat(theta: np.ndarray) -> dict[str, np.ndarray]:
        out, i = {}, 0
        for k, s, n in zip(names, shapes, sizes):
            out[k] = theta[..., i : i + n].reshape(theta.shape[:-1] + s)
            i += n
        return out

    def f(theta: np.ndarray) -> float:
        return float(finite_diff.reduced(model, unflat(np.asarray(theta, dtype=np.float64)), "float64"))

    return f, theta0


def torch_loss(model: gc.Model) -> tuple[Callable[[Any], Any], Any]:
    import torch

    from gradcheck.sources import autograd

    names = list(model.params)
    sizes = [model.params[k].value.size for k in names]
    shapes = [model.params[k].shape for k in names]
    fn = autograd.expression_loss(model)
    data = autograd.data_tensors(model, "float64")
    theta0 = torch.as_tensor(np.concatenate([model.params[k].value.reshape(-1) for k in names]), dtype=torch.float64)

    def f(theta: Any) -> Any:
        params, i = {}, 0
        for k, s, n in zip(names, shapes, sizes):
            params[k] = theta[i : i + n].reshape(s)
            i += n
        losses = fn(params, data)
        return losses.mean() if model.reduction == "mean" else losses.sum()

    return f, theta0


def exact_flat(model: gc.Model) -> np.ndarray:
    g = symbolic.gradients(model, model.param_values())
    return np.concatenate([np.asarray(g.values[k]).reshape(-1) for k in model.params])


def scale_flat(model: gc.Model) -> np.ndarray:
    g = symbolic.gradients(model, model.param_values())
    return np.concatenate([np.maximum(np.abs(g.values[k]), g.info["scale"][k]).reshape(-1) for k in model.params])


# --- peers -----------------------------------------------------------------


def peer_gradcheck_fd(model: gc.Model) -> np.ndarray:
    g = finite_diff.gradients(model, model.param_values(), "float64")
    return np.concatenate([np.asarray(g.values[k]).reshape(-1) for k in model.params])


def peer_torch_central(model: gc.Model) -> np.ndarray:
    """torch.autograd.gradcheck's numerical derivative: central difference, eps = 1e-6."""
    import torch

    f, theta = torch_loss(model)
    out = np.empty(theta.numel())
    with torch.no_grad():
        for i in range(theta.numel()):
            tp, tm = theta.clone(), theta.clone()
            tp[i] += 1e-6
            tm[i] -= 1e-6
            out[i] = float((f(tp) - f(tm)) / 2e-6)
    return out


def peer_numdifftools(model: gc.Model) -> np.ndarray | None:
    try:
        import numdifftools as nd
    except ImportError:  # an optional peer (benchmarks/requirements.txt): "n/a" where it is not installed
        return None

    f, theta = flat_loss(model)
    return np.asarray(nd.Gradient(f)(theta), dtype=np.float64).reshape(-1)


def peer_scipy(model: gc.Model) -> np.ndarray | None:
    try:
        from scipy.differentiate import jacobian
    except ImportError:
        return None
    f, theta = flat_loss(model)
    names = list(model.params)

    def vf(x: np.ndarray) -> np.ndarray:  # x: (n, ...) -> (...): vectorized over trailing axes
        flat = np.moveaxis(np.asarray(x), 0, -1)
        out = np.empty(flat.shape[:-1])
        for idx in np.ndindex(*flat.shape[:-1]):
            out[idx] = f(flat[idx])
        return out

    del names
    return np.asarray(jacobian(vf, theta).df, dtype=np.float64).reshape(-1)


def naive_sympy(model: gc.Model) -> None:
    """diff of the inlined loss for every parameter element (what gradcheck did before)."""
    import sympy

    from gradcheck.sources.symbolic import formulas

    loss = symbolic.loss_expression(model)
    for syms in formulas.build(model).param_symbols.values():
        for s in syms.reshape(-1):
            sympy.diff(loss, s)


def torch_gradcheck(model: gc.Model, fast: bool) -> float:
    import torch

    f, theta = torch_loss(model)
    x = theta.clone().requires_grad_(True)
    t = time.perf_counter()
    torch.autograd.gradcheck(f, (x,), eps=1e-6, atol=1e-5, rtol=1e-3, fast_mode=fast)
    return time.perf_counter() - t


# --- the runs --------------------------------------------------------------


def accuracy(quick: bool) -> list[tuple[str, ...]]:
    say("## Finite differences on smooth float64 models: relative error against the exact value")
    say()
    models = {p.stem: gc.load(p) for p in sorted((ROOT / "examples").glob("*.yaml"))}
    chosen = {k: models[k] for k in ("linear", "logistic", "mlp", "softmax_regression", "exercise")}
    chosen["mlp_100"] = mlp(100)
    peers: dict[str, Callable[[gc.Model], Any]] = {
        "gradcheck FD": peer_gradcheck_fd,
        "torch central (h=1e-6)": peer_torch_central,
        "numdifftools": peer_numdifftools,
        "scipy.differentiate": peer_scipy,
    }
    rows = []
    say(f"{'model':20s} {'params':>6s}  " + "  ".join(f"{p:>24s}" for p in peers))
    for name, model in chosen.items():
        exact, scale = exact_flat(model), scale_flat(model)
        cells = []
        for peer in peers.values():
            t, got = timed(lambda peer=peer, model=model: peer(model))
            if got is None:
                cells.append("n/a")
                continue
            rel = float(np.max(np.abs(got - exact) / np.maximum(scale, 1e-300)))
            cells.append(f"{rel:.1e} in {t * 1e3:.1f} ms")
        rows.append((name, str(n_params(model)), *cells))
        say(f"{name:20s} {n_params(model):6d}  " + "  ".join(f"{c:>24s}" for c in cells))
    say()
    # The error estimate against the true error, over every element of these models.
    worst = 0.0
    for model in chosen.values():
        g = finite_diff.gradients(model, model.param_values(), "float64")
        e = symbolic.gradients(model, model.param_values())
        for k in model.params:
            true = np.abs(g.values[k] - e.values[k])
            worst = max(worst, float(np.max(true / np.maximum(g.errors[k], 1e-300))))
    say(f"largest (true error / gradcheck's error estimate) over all elements: {worst:.2f} (<= 1 means covered)")
    say()
    return [("model", "params", *peers), *rows]


def torch_threads() -> None:
    """torch's slow gradcheck with 1 thread and with 2: the benchmark uses the faster."""
    import torch

    model = mlp(1000)
    times = {}
    for threads in (2, 1):
        torch.set_num_threads(threads)
        times[threads] = torch_gradcheck(model, fast=False)
    say("## torch threads: slow gradcheck of the 1e3-parameter MLP")
    say()
    say(
        f"2 threads {times[2]:.2f} s, 1 thread {times[1]:.2f} s: every op of a forward pass is tiny, so on a busy "
        "2-core machine the threads' hand-offs cost more than they save. The timings below use 1 thread."
    )
    say()


def scale(quick: bool) -> list[tuple[str, ...]]:
    import torch

    torch.set_num_threads(1)  # torch's fastest setting here (see torch_threads)
    limits.SYMBOLIC_SECONDS = 0  # measure, do not stop
    sizes = [10, 100, 1000] if quick else [10, 100, 1000, 3000, 10000]
    naive_max = 100 if quick else 1000
    say("## tanh MLP, 32 samples: seconds (and ratio to torch's slow two-way gradcheck)")
    say()
    head = (
        "params",
        "gc.check (3-way)",
        "gc.check --directions 8",
        "symbolic",
        "finite diff",
        "torch slow",
        "torch fast",
        "naive SymPy",
        "check / torch slow",
        "time / param vs previous",
    )
    say("  ".join(f"{h:>18s}" for h in head))
    rows: list[tuple[str, ...]] = [head]
    previous: tuple[int, float] | None = None
    for n in sizes:
        model = mlp(n)
        point = model.param_values()
        t_check, report = timed(lambda model=model: gc.check(mlp(n_params(model))))
        t_dir, report_dir = timed(lambda model=model: gc.check(mlp(n_params(model)), directions=8))
        t_sym, _ = timed(lambda: symbolic.gradients(mlp(n), point))
        t_fd, _ = timed(lambda model=model: finite_diff.gradients(model, point, "float64"))
        t_slow = torch_gradcheck(model, fast=False)
        t_fast = torch_gradcheck(model, fast=True)
        if n <= naive_max:
            t_naive, _ = timed(lambda: naive_sympy(mlp(n)))
            naive = f"{t_naive:.2f}"
        else:
            naive = "(skipped)"
        growth = "" if previous is None else f"{(t_check / n_params(model)) / (previous[1] / previous[0]):.2f}x"
        previous = (n_params(model), t_check)
        cells = (
            str(n_params(model)),
            f"{t_check:.2f} ({report.status})",
            f"{t_dir:.2f} ({report_dir.status})",
            f"{t_sym:.2f}",
            f"{t_fd:.2f}",
            f"{t_slow:.2f}",
            f"{t_fast:.2f}",
            naive,
            f"{t_check / t_slow:.1f}x",
            growth,
        )
        rows.append(cells)
        say("  ".join(f"{c:>18s}" for c in cells))
    say()
    return rows


#: Shapes of the 1e4-parameter tanh MLP run as whole processes: (inputs, hidden, what it is).
WIDE_SHAPES = [
    (1000, 10, "wide inputs"),
    (99, 100, "wide hidden layer"),
    (99, 99, "square"),
    (10, 833, "narrow inputs"),
]


def wide() -> list[tuple[str, ...]]:
    """Whole processes on the same file: ``python -m gradcheck`` against torch's slow gradcheck script."""
    import tempfile

    import yaml

    from benchmarks.models import mlp_spec

    py = sys.executable
    say("## 1e4-parameter tanh MLPs of several shapes, 32 samples: whole processes, wall clock")
    say()
    head = ("inputs x hidden", "params", "python -m gradcheck", "torch slow gradcheck script", "gradcheck / torch")
    say("  ".join(f"{h:>28s}" for h in head))
    rows: list[tuple[str, ...]] = [head]
    with tempfile.TemporaryDirectory() as tmp:
        for inputs, hidden, what in WIDE_SHAPES:
            path = Path(tmp) / f"mlp_{inputs}x{hidden}.yaml"
            path.write_text(yaml.safe_dump(mlp_spec(hidden, inputs), sort_keys=False))
            times, codes = [], []
            for cmd in ([py, "-m", "gradcheck", str(path)], [py, str(ROOT / "benchmarks" / "torch_mlp.py"), str(path)]):
                t = time.perf_counter()
                done = subprocess.run(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False)
                times.append(time.perf_counter() - t)
                codes.append(done.returncode)
            params = hidden * (inputs + 2) + 1
            cells = (
                f"{inputs} x {hidden} ({what})",
                str(params),
                f"{times[0]:.2f} (exit {codes[0]})",
                f"{times[1]:.2f} (exit {codes[1]})",
                f"{times[0] / times[1]:.2f}x",
            )
            rows.append(cells)
            say("  ".join(f"{c:>28s}" for c in cells))
    say()
    return rows


def startup(runs: int) -> list[tuple[str, ...]]:
    """Median wall-clock seconds of whole processes: the import floor, a check, --help, a bad file."""
    py = sys.executable
    bad = ROOT / "benchmarks" / "_bad.yaml"
    bad.write_text("params: {w: 1.0}\nmodel:\n  loss: w * unknown_name\n")
    commands = {
        'python -c "import torch, sympy, numpy"': [py, "-c", "import torch, sympy, numpy"],
        "python -m gradcheck examples/lesson.yaml": [py, "-m", "gradcheck", "examples/lesson.yaml"],
        "python -m gradcheck --help": [py, "-m", "gradcheck", "--help"],
        "python -m gradcheck bad.yaml (unknown name)": [py, "-m", "gradcheck", str(bad)],
    }
    say(f"## Start-up: median of {runs} runs, seconds")
    say()
    medians = {}
    try:
        for label, cmd in commands.items():
            times = []
            for _ in range(runs):
                t = time.perf_counter()
                subprocess.run(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False)
                times.append(time.perf_counter() - t)
            medians[label] = statistics.median(times)
    finally:
        bad.unlink()
    floor = medians['python -c "import torch, sympy, numpy"']
    rows: list[tuple[str, ...]] = [("command", "median s", "/ import floor")]
    for label, m in medians.items():
        rows.append((f"`{label}`", f"{m:.2f}", f"{m / floor:.2f}x"))
        say(f"{label:48s} {m:6.2f} s  {m / floor:5.2f}x")
    say()
    return rows


def markdown(table: list[tuple[str, ...]]) -> list[str]:
    out = ["| " + " | ".join(table[0]) + " |", "|" + "---|" * len(table[0])]
    out += ["| " + " | ".join(r) + " |" for r in table[1:]]
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small models only")
    parser.add_argument("--out", default=str(ROOT / "docs" / "benchmarks.md"), help="where to write the table")
    args = parser.parse_args(argv)
    t0 = time.perf_counter()
    import sympy
    import torch

    say(
        f"machine: {platform.machine()}, {platform.python_version()}, torch {torch.__version__}, sympy {sympy.__version__}"
    )
    say()
    start = startup(3 if args.quick else 7)
    acc = accuracy(args.quick)
    torch_threads()
    big = scale(args.quick)
    shapes = wide()
    say(f"total {time.perf_counter() - t0:.0f} s")
    doc = [
        "# Benchmarks",
        "",
        "Written by `python benchmarks/run.py" + (" --quick" if args.quick else "") + "` (do not edit by hand;",
        "run it again). Wall-clock times on one noisy 2-core machine: compare ratios within",
        "a run, not numbers across runs.",
        "",
        "## Start-up",
        "",
        "Whole processes, wall clock (the lesson check includes printing its table and formula).",
        "",
        *markdown(start),
        "",
        "## Finite differences: accuracy",
        "",
        "Largest relative error over all gradient elements (error / max(|exact|, mean |per-sample",
        "gradient|)), against the exact symbolic value, and the time for one whole gradient.",
        "gradcheck uses the complex step on these (analytic) models.",
        "",
        *markdown(acc),
        "",
        "## Scale: a one-hidden-layer tanh MLP (10 inputs, 32 samples)",
        "",
        "`gc.check` runs all three sources on every parameter element, the kink search and the",
        "verdicts; `--directions 8` checks 8 random directions instead (docs/how-it-works.md). `symbolic` and",
        "`finite diff` are those sources alone (symbolic includes building and compiling the",
        "tape). torch's gradcheck compares two ways (autograd and its central difference).",
        "Naive SymPy differentiates the inlined loss once per parameter element. torch runs on one",
        "thread, its fastest setting here (the script's output shows both). The last column is the",
        "3-way check's time per parameter relative to the previous size (1.00x: linear growth).",
        "",
        *markdown(big),
        "",
        "## Shape: 1e4-parameter MLPs, whole process against whole process",
        "",
        "`python -m gradcheck mlp.yaml` (load, all three sources on every element, kinks, verdicts, table",
        "and formulas) against `python benchmarks/torch_mlp.py mlp.yaml` (the same file read with PyYAML,",
        "the same params and data in float64, `torch.autograd.gradcheck` in slow mode), each a fresh",
        "process, one after the other. A wide layer must cost what its parameter count says, nothing",
        "quadratic in its fan-in: the last column should stay near or below 1. gradcheck reads the file",
        "with libyaml where PyYAML has it (about 0.2 s of the 1.4 s pure-Python reading of these files),",
        "the torch script with PyYAML's `safe_load`, as most scripts do.",
        "",
        *markdown(shapes),
        "",
        "## What the script printed",
        "",
        "```",
        *OUT,
        "```",
        "",
    ]
    Path(args.out).write_text("\n".join(doc))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
