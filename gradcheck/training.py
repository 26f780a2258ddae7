"""Gradient descent on a model, with any gradient source: the classic lesson, reproducible.

:func:`train` runs plain gradient descent, ``p = p - lr * grad``, on the
model's parameters in the model's dtype (``check.dtype``), with the gradient
from one of the three sources:

* ``autograd``: the loss is evaluated with torch and ``backward()`` is called;
  the update is the lesson's own ``w.data = w.data - lr * w.grad.data`` on the
  tensor in the model's dtype, so a float32 model reproduces the float32
  lesson to the last bit;
* ``symbolic`` and ``finite_difference``: the source computes the gradient
  (float64), which is rounded to the model's dtype and applied with the very
  same tensor update.

``mode="sgd"`` takes one step per sample, in data order (each step uses the
gradient of that one sample's loss); ``mode="batch"`` takes one step per epoch
on the reduced loss (``mean`` or ``sum``; ``reduction: none`` trains on the
sum); ``mode="newton"`` takes one Newton step per epoch on the reduced loss,
``p = p - H^{-1} g`` with the gradient and the Hessian over all parameter
elements from the same source (``lr`` is not used; a singular Hessian takes
the least-squares step). After every epoch the reduced loss is recorded, computed by the same
source. ``source="all"`` runs the three from the same start and reports the
largest difference between their parameters at any epoch.

Example::

    >>> import gradcheck as gc
    >>> result = gc.train(gc.load("examples/lesson_float32.yaml"), source="autograd", predict={"x": 4})
    >>> float(result.runs["autograd"].params["w"]), result.prediction.after["autograd"]
    (1.9999996423721313, 7.999998569488525)
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .errors import ModelError, close_match
from .model import MODES, Model
from .report import json_value

#: The gradient sources training can use, in the order they are run and shown.
SOURCES = ("symbolic", "autograd", "finite_difference")
#: What ``source=`` accepts.
SOURCE_CHOICES = SOURCES + ("all",)

#: ``progress(source, steps_done, steps_total)``, called after every step.
Progress = Callable[[str, int, int], None]


@dataclass
class SourceRun:
    """One source's training run.

    ``params`` are the final values (float64 copies of the model-dtype
    values), ``losses`` the reduced loss after each epoch, ``trajectory`` the
    parameters at the start and after each epoch (``epochs + 1`` entries).
    """

    source: str
    params: dict[str, np.ndarray]
    initial_loss: float
    losses: list[float]
    trajectory: list[dict[str, np.ndarray]] = field(repr=False, default_factory=list)


@dataclass
class Prediction:
    """The model's output at ``inputs`` before training and after, per source."""

    inputs: dict[str, np.ndarray]
    output: str
    before: Any
    after: dict[str, Any]


@dataclass
class TrainResult:
    """What :func:`train` returns (exported as ``gradcheck.TrainResult``); :meth:`to_dict` is the ``train --json`` document."""

    model: str
    mode: str
    epochs: int
    lr: float
    dtype: str
    reduction: str
    runs: dict[str, SourceRun]
    max_trajectory_difference: float | None = None
    prediction: Prediction | None = None

    @property
    def primary(self) -> str:
        """The source whose prediction is reported as ``after``: autograd when it ran (the lesson's)."""
        return "autograd" if "autograd" in self.runs else next(iter(self.runs))

    def to_dict(self) -> dict[str, Any]:
        """The JSON document of ``gradcheck train --json`` (SPEC section 5)."""
        out: dict[str, Any] = {
            "model": self.model,
            "mode": self.mode,
            "epochs": self.epochs,
            "lr": self.lr,
            "dtype": self.dtype,
            "sources": {
                name: {
                    "params": {k: json_value(v) for k, v in run.params.items()},
                    "initial_loss": json_value(run.initial_loss),
                    "losses": [json_value(v) for v in run.losses],
                }
                for name, run in self.runs.items()
            },
        }
        if self.max_trajectory_difference is not None:
            out["max_trajectory_difference"] = json_value(self.max_trajectory_difference)
        if self.prediction is not None:
            p = self.prediction
            out["predict"] = {
                "inputs": {k: json_value(v) for k, v in p.inputs.items()},
                "output": p.output,
                "before": json_value(p.before),
                "after": json_value(p.after[self.primary]),
            }
            if len(p.after) > 1:
                out["predict"]["after_by_source"] = {k: json_value(v) for k, v in p.after.items()}
        return out

    def render(self, console: Any) -> None:
        """Print the result as a small table to a rich console."""
        from rich.table import Table
        from rich.text import Text

        sources = ", ".join(self.runs)
        rate = "" if self.mode == "newton" else f", lr {self.lr:g}"  # a Newton step takes no learning rate
        head = f"{self.model}: {self.mode}, {self.epochs} epochs{rate}, {self.dtype}, source {sources}"
        console.print(Text(head, style="bold"))
        p = self.prediction
        if p is not None:
            console.print(f"predict before training: {_call(p)} = {_fmt(p.before)}")
        table = Table(show_edge=False, pad_edge=False, header_style="bold")
        table.add_column("source")
        first = next(iter(self.runs.values()))
        labels = _labels(first.params)
        for label, _name, _idx in labels:
            table.add_column(label, justify="right")
        table.add_column("loss before", justify="right")
        table.add_column("loss after", justify="right")
        for name, run in self.runs.items():
            cells = [name]
            cells += [_fmt(run.params[k][idx]) for _label, k, idx in labels]
            cells += [_fmt(run.initial_loss), _fmt(run.losses[-1] if run.losses else run.initial_loss)]
            table.add_row(*cells)
        console.print(table)
        if p is not None:
            for name, value in p.after.items():
                by = f" ({name})" if len(p.after) > 1 else ""
                console.print(f"predict after training{by}: {_call(p)} = {_fmt(value)}")
        if self.max_trajectory_difference is not None:
            console.print(
                f"largest difference between the sources' parameters at any epoch: {self.max_trajectory_difference:.3g}"
            )

    def table(self, width: int = 120) -> str:
        """The readable result as plain text."""
        import io

        from rich.console import Console

        buf = io.StringIO()
        self.render(Console(file=buf, width=width, color_system=None, force_terminal=False, highlight=False))
        return buf.getvalue()

    def __str__(self) -> str:
        return self.table()

    def _repr_png_(self) -> bytes:
        """Jupyter's view: the loss curve (the ``train --plot`` figure; see :mod:`gradcheck.display`)."""
        from .display import train_png

        return train_png(self)


def train(
    model: Model,
    *,
    epochs: int | None = None,
    lr: float | None = None,
    mode: str | None = None,
    source: str = "autograd",
    predict: Mapping[str, Any] | None = None,
    progress: Progress | None = None,
) -> TrainResult:
    """Gradient descent on ``model`` with one gradient source, or ``"all"`` side by side.

    ``epochs``, ``lr``, ``mode`` and ``predict`` default to the model file's
    ``train:`` section. ``predict`` maps data columns to one sample's values;
    the model's output there is reported before and after training.
    Bad arguments raise :class:`~gradcheck.ModelError`.
    """
    epochs = model.train.epochs if epochs is None else epochs
    lr = model.train.lr if lr is None else lr
    mode = model.train.mode if mode is None else mode
    if isinstance(epochs, bool) or not isinstance(epochs, (int, np.integer)) or epochs < 0:
        raise ModelError(f"epochs must be a whole number >= 0, got {epochs!r}")
    if isinstance(lr, bool) or not isinstance(lr, (int, float, np.floating)) or not (0 < lr < math.inf):
        raise ModelError(f"lr must be a finite number > 0, got {lr!r}")
    if mode not in MODES:
        raise ModelError(f"mode must be one of {', '.join(MODES)}, got {mode!r}", fix=_guess(str(mode), MODES))
    if mode == "newton":
        from .hessian import unusable

        unusable(model)
    if source not in SOURCE_CHOICES:
        raise ModelError(
            f"unknown gradient source {source!r}",
            fix=_guess(str(source), SOURCE_CHOICES) or "sources: " + ", ".join(SOURCE_CHOICES),
        )
    inputs = prediction_inputs(model, model.train.predict if predict is None else predict)
    sources = SOURCES if source == "all" else (source,)
    dtype = model.check.dtype
    total = len(sources) * int(epochs) * (model.n_samples if mode == "sgd" else 1)
    done = 0
    runs: dict[str, SourceRun] = {}
    for name in sources:

        def tick(name: str = name) -> None:
            nonlocal done
            done += 1
            if progress is not None:
                progress(name, done, total)

        runs[name] = _run(model, name, int(epochs), float(lr), mode, dtype, tick)
    diff = _max_difference(list(runs.values())) if len(runs) > 1 else None
    prediction = None
    if inputs is not None:
        assert model.output is not None  # prediction_inputs checked it
        prediction = Prediction(
            inputs=inputs,
            output=model.output,
            before=predict_output(model, model.param_values(), inputs),
            after={name: predict_output(model, run.params, inputs) for name, run in runs.items()},
        )
    return TrainResult(
        model=model.name,
        mode=mode,
        epochs=int(epochs),
        lr=float(lr),
        dtype=dtype,
        reduction=model.reduction,
        runs=runs,
        max_trajectory_difference=diff,
        prediction=prediction,
    )


# --- one source's run -----------------------------------------------------------


def per_sample_models(model: Model) -> list[Model]:
    """One model per sample, holding that sample's data (for per-sample SGD).

    The ``cache`` dict is shared: the symbolic source caches only expressions,
    which do not depend on data values, so SymPy differentiates once.
    """
    if not model.data:
        return [model]
    return [
        dataclasses.replace(model, data={k: v[i : i + 1] for k, v in model.data.items()}, cache=model.cache)
        for i in range(model.n_samples)
    ]


def _run(
    model: Model, source: str, epochs: int, lr: float, mode: str, dtype: str, tick: Callable[[], None]
) -> SourceRun:
    import torch

    from .sources.autograd import torch_dtype

    tdtype = torch_dtype(dtype)
    params = {k: torch.as_tensor(p.value, dtype=tdtype).clone() for k, p in model.params.items()}
    batches = per_sample_models(model) if mode == "sgd" else [model]
    step = _stepper(source, batches, dtype)
    if mode == "newton":
        step, lr = _newton(source, model, dtype, step), 1.0
    loss_of = _loss_fn(model, source, dtype)
    trajectory = [_snapshot(params)]
    initial = loss_of(params)
    losses = []
    for _ in range(epochs):
        for i in range(len(batches)):
            grads = step(i, params)
            for k in params:
                # The lesson's update, on the tensor in the model's dtype.
                params[k] = params[k] - lr * grads[k]
            tick()
        trajectory.append(_snapshot(params))
        losses.append(loss_of(params))
    return SourceRun(source, _snapshot(params), initial, losses, trajectory)


def _snapshot(params: Mapping[str, Any]) -> dict[str, np.ndarray]:
    import torch

    return {k: t.detach().to(torch.float64).numpy().copy() for k, t in params.items()}


def _total(losses: Any, reduction: str) -> Any:
    """The objective a step descends: the reduced loss (the sum for ``reduction: none``)."""
    return losses.mean() if reduction == "mean" else losses.sum()


def _stepper(source: str, batches: list[Model], dtype: str) -> Callable[[int, dict[str, Any]], dict[str, Any]]:
    """``step(i, params) -> grads``: gradients (tensors in the model's dtype) of batch ``i``'s loss."""
    import torch

    from .sources import autograd, finite_diff, symbolic

    tdtype = autograd.torch_dtype(dtype)
    if source == "autograd":
        fns = [autograd.expression_loss(b) for b in batches]
        data = [autograd.data_tensors(b, dtype) for b in batches]

        def step(i: int, params: dict[str, Any]) -> dict[str, Any]:
            leaves = {k: t.detach().requires_grad_(True) for k, t in params.items()}
            losses = fns[i](leaves, data[i])
            if not isinstance(losses, torch.Tensor):
                return {k: torch.zeros_like(t) for k, t in params.items()}  # a constant loss
            _total(losses, batches[i].reduction).backward()
            return {k: torch.zeros_like(t) if t.grad is None else t.grad for k, t in leaves.items()}

        return step

    def from_values(i: int, params: dict[str, Any]) -> dict[str, Any]:
        point = {k: t.detach().to(torch.float64).numpy() for k, t in params.items()}
        b = batches[i]
        if source == "symbolic":
            values = symbolic.gradients(b, point).values
        else:
            values = finite_diff.gradients(b, point, dtype).values
        if b.reduction == "none":
            values = {k: np.asarray(v).sum(axis=0) for k, v in values.items()}
        return {k: torch.as_tensor(np.asarray(values[k], dtype=np.float64), dtype=tdtype) for k in params}

    return from_values


def _newton(
    source: str, model: Model, dtype: str, gradient: Callable[[int, dict[str, Any]], dict[str, Any]]
) -> Callable[[int, dict[str, Any]], dict[str, Any]]:
    """``step(0, params) -> H^{-1} g`` (tensors in the model's dtype), both from ``source``."""
    import torch

    from .sources import autograd
    from .sources.finite_diff import second as fd_second
    from .sources.symbolic import second as sym_second

    tdtype = autograd.torch_dtype(dtype)

    def step(i: int, params: dict[str, Any]) -> dict[str, Any]:
        grads = gradient(i, params)
        point = {k: t.detach().to(torch.float64).numpy() for k, t in params.items()}
        if source == "symbolic":
            h = sym_second.hessian(model, point).values["hessian"]
        elif source == "autograd":
            h = autograd.hessian(model, point, dtype)
        else:
            h = fd_second.hessian(model, point, dtype)[0]
        g = np.concatenate([grads[k].detach().to(torch.float64).numpy().reshape(-1) for k in params])
        try:
            delta = np.linalg.solve(h, g)
        except np.linalg.LinAlgError:
            delta = np.linalg.lstsq(h, g, rcond=None)[0]
        out, start = {}, 0
        for k, t in params.items():
            size = t.numel()
            out[k] = torch.as_tensor(delta[start : start + size].reshape(tuple(t.shape)), dtype=tdtype)
            start += size
        return out

    return step


def _loss_fn(model: Model, source: str, dtype: str) -> Callable[[dict[str, Any]], float]:
    """The reduced loss over all samples, computed by ``source`` (the sum for ``reduction: none``)."""
    import torch

    from .sources import autograd, finite_diff, symbolic

    if source == "autograd":
        fn = autograd.expression_loss(model)
        data = autograd.data_tensors(model, dtype)

        def by_torch(params: dict[str, Any]) -> float:
            with torch.no_grad():
                losses = torch.as_tensor(fn(params, data))
                return float(_total(losses, model.reduction))

        return by_torch

    def point_of(params: dict[str, Any]) -> dict[str, np.ndarray]:
        return {k: t.detach().to(torch.float64).numpy() for k, t in params.items()}

    if source == "symbolic":

        def by_sympy(params: dict[str, Any]) -> float:
            return float(np.sum(symbolic.gradients(model, point_of(params)).loss))

        return by_sympy

    def by_numpy(params: dict[str, Any]) -> float:
        return float(np.sum(finite_diff.reduced(model, point_of(params), dtype)))

    return by_numpy


def _max_difference(runs: list[SourceRun]) -> float:
    """Largest absolute difference between any two runs' parameters at any epoch."""
    worst = 0.0
    for epoch in range(len(runs[0].trajectory)):
        for name in runs[0].trajectory[epoch]:
            stack = np.stack([r.trajectory[epoch][name] for r in runs])
            with np.errstate(invalid="ignore"):
                spread = np.max(stack, axis=0) - np.min(stack, axis=0)
            if np.any(np.isnan(spread)):
                return math.nan
            worst = max(worst, float(np.max(spread, initial=0.0)))
    return worst


# --- prediction -------------------------------------------------------------------


def _needed(model: Model, entry: str) -> tuple[list[str], list[str]]:
    """The entries (in order) and data columns that ``entry`` depends on."""
    entries: set[str] = set()
    data: set[str] = set()
    todo = [entry]
    while todo:
        name = todo.pop()
        if name in entries:
            continue
        entries.add(name)
        for ref in model.entries[name].names():
            if ref in model.entries:
                todo.append(ref)
            elif ref in model.data:
                data.add(ref)
    return [e for e in model.entries if e in entries], [d for d in model.data if d in data]


def prediction_inputs(model: Model, predict: Mapping[str, Any] | None) -> dict[str, np.ndarray] | None:
    """Validate ``predict`` (data column -> one sample's value); ``None`` when empty."""
    if not predict:
        return None
    if model.output is None:
        raise ModelError("the model has no output to predict", fix="name one with `output:` in the model file")
    inputs: dict[str, np.ndarray] = {}
    for name, value in predict.items():
        if name not in model.data:
            raise ModelError(
                f"predict names {name!r}, which is not a data column",
                fix=_guess(str(name), model.data) or "data columns: " + (", ".join(model.data) or "none"),
            )
        try:
            arr = np.asarray(value, dtype=np.float64)
        except (TypeError, ValueError):
            raise ModelError(f"predict gives {name!r} the value {value!r}, which is not numeric") from None
        want = model.shape_of(name)
        if arr.shape != want:
            raise ModelError(
                f"predict gives {name!r} shape {list(arr.shape)}, but one sample of it has shape {list(want)}"
            )
        inputs[name] = arr
    _entries, columns = _needed(model, model.output)
    missing = [c for c in columns if c not in inputs]
    if missing:
        raise ModelError(
            f"predicting {model.output!r} needs {', '.join(map(repr, missing))}",
            fix="give " + " ".join(f"--predict {c}=VALUE" for c in missing),
        )
    return inputs


def predict_output(model: Model, params: Mapping[str, np.ndarray], inputs: Mapping[str, np.ndarray]) -> Any:
    """The model's output for one sample ``inputs`` at ``params``, computed with torch in the model's dtype.

    A float for a scalar output, nested lists for a vector.
    """
    import torch

    from . import interp
    from .sources.autograd import torch_dtype

    assert model.output is not None
    tdtype = torch_dtype(model.check.dtype)
    entries, _columns = _needed(model, model.output)
    env: dict[str, Any] = {k: torch.as_tensor(np.asarray(v), dtype=tdtype) for k, v in params.items()}
    env.update({k: torch.as_tensor(np.asarray(v)[None], dtype=tdtype) for k, v in inputs.items()})
    with torch.no_grad():
        values = interp.evaluate({e: model.entries[e] for e in entries}, env, "torch", torch, until=model.output)
    out = torch.as_tensor(values[model.output], dtype=tdtype).to(torch.float64).numpy()
    if out.ndim and out.shape[0] == 1:
        out = out[0]  # the sample axis
    return out.item() if out.ndim == 0 else out.tolist()


# --- helpers ----------------------------------------------------------------------


def _guess(name: str, options: Any) -> str | None:
    guess = close_match(name, options)
    return f"did you mean {guess!r}?" if guess else None


def _fmt(value: Any) -> str:
    arr = np.asarray(value, dtype=np.float64)
    if arr.ndim == 0:
        return repr(float(arr))
    if arr.size <= 4:
        return "[" + ", ".join(f"{x:.8g}" for x in arr.reshape(-1)) + "]"
    return f"<{'x'.join(map(str, arr.shape))} tensor>"


def _labels(params: Mapping[str, np.ndarray], limit: int = 8) -> list[tuple[str, str, tuple[int, ...]]]:
    """Table columns: one per element of small params, one per large param (its shape)."""
    out: list[tuple[str, str, tuple[int, ...]]] = []
    for name, v in params.items():
        if v.ndim == 0:
            out.append((name, name, ()))
        elif v.size <= limit:
            out.extend((f"{name}[{', '.join(map(str, idx))}]", name, idx) for idx in np.ndindex(*v.shape))
        else:
            out.append((name, name, (...,)))  # type: ignore[arg-type]
    return out


def _call(p: Prediction) -> str:
    args = ", ".join(f"{k}={_fmt(v)}" for k, v in p.inputs.items())
    return f"{p.output}({args})"
