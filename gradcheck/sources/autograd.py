"""The autograd source: the expression as written, on torch tensors, ``backward()``.

Samples are a leading batch axis, so one forward and one backward pass cover
all of them. The reduced loss is ``mean`` or ``sum`` of the per-sample losses
and ``backward()`` is called on it, exactly as a PyTorch user would. For
``reduction: none`` every sample gets its own copy of each parameter (a
leading axis), so a single ``backward()`` yields per-sample gradients.
Nothing here touches SymPy or the finite differences.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from .. import interp
from ..errors import ModelError
from ..model import Model
from . import Gradients

LossFn = Callable[[dict[str, Any], dict[str, Any]], Any]


def torch_dtype(name: str) -> Any:
    import torch

    return {"float64": torch.float64, "float32": torch.float32}[name]


def data_tensors(model: Model, dtype: str) -> dict[str, Any]:
    """The model's data columns as tensors of ``dtype`` (samples first)."""
    import torch

    return {k: torch.as_tensor(v, dtype=torch_dtype(dtype)) for k, v in model.data.items()}


def expression_loss(model: Model) -> LossFn:
    """The model's per-sample loss as a function of tensors (the interpreter)."""
    import torch

    def loss(params: dict[str, Any], data: dict[str, Any]) -> Any:
        values = interp.evaluate(model.entries, {**params, **data}, "torch", torch, until=model.loss)
        return values[model.loss]

    return loss


def backward(model: Model, fn: LossFn, point: Mapping[str, np.ndarray], dtype: str, source: str) -> Gradients:
    """Gradients of ``fn``'s reduced per-sample loss by one ``backward()``."""
    import torch

    tdtype = torch_dtype(dtype)
    data = data_tensors(model, dtype)
    n = model.n_samples
    per_sample = model.reduction == "none"
    params = {}
    for name, value in point.items():
        t = torch.as_tensor(np.asarray(value), dtype=tdtype)
        if per_sample:
            t = t.expand((n,) + tuple(t.shape)).clone()
        params[name] = t.requires_grad_(True)
    losses = fn(params, data)
    if not isinstance(losses, torch.Tensor):
        losses = torch.as_tensor(losses, dtype=tdtype)
    if source == "autograd" and model.data and losses.ndim == 0:
        losses = losses.expand(n)  # a loss that does not involve the data is the same for every sample
    if source != "autograd" and tuple(losses.shape) not in ([(n,)] if model.data else [(), (1,)]):
        # a summed or broadcast loss would be reduced wrongly and show up as a confusing mismatch
        raise ModelError(
            f"{source} returned losses of shape {list(losses.shape)}, but the model has {n} sample(s)",
            fix=f"return one loss per sample, shape [{n}]" if model.data else "return the loss as a scalar",
        )
    if model.reduction == "sum":
        total = losses.sum()
    elif model.reduction == "mean":
        total = losses.mean()
    else:
        total = losses.sum()
    if total.requires_grad:  # else the loss does not depend on any parameter: every gradient is 0
        total.backward()
    values = {}
    for name, t in params.items():
        grad = t.grad
        values[name] = np.zeros(tuple(t.shape)) if grad is None else grad.detach().to(torch.float64).numpy().copy()
    loss: Any = losses.detach().to(torch.float64).numpy().copy() if per_sample else float(total.detach())
    return Gradients(source, values, None, loss)


def gradients(model: Model, point: Mapping[str, np.ndarray], dtype: str | None = None) -> Gradients:
    """Autograd gradients of the model's reduced loss at ``point``."""
    return backward(model, expression_loss(model), point, dtype or model.check.dtype, "autograd")
