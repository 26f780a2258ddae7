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


def _flat_loss(model: Model, fn: LossFn, point: Mapping[str, np.ndarray], dtype: str, source: str) -> tuple[Any, Any]:
    """``(f, p0)``: the reduced loss as a function of the flattened params (file order), and the point."""
    import torch

    tdtype = torch_dtype(dtype)
    data = data_tensors(model, dtype)
    names = list(model.params)
    shapes = [model.params[k].shape for k in names]
    sizes = [int(np.prod(s, dtype=np.int64)) for s in shapes]
    p0 = torch.cat([torch.as_tensor(np.asarray(point[k]), dtype=tdtype).reshape(-1) for k in names])
    n = model.n_samples

    def f(flat: Any) -> Any:
        parts = torch.split(flat, sizes)
        params = {k: part.reshape(shape) for k, part, shape in zip(names, parts, shapes)}
        losses = fn(params, data)
        if not isinstance(losses, torch.Tensor):
            losses = torch.as_tensor(losses, dtype=tdtype)
        if source == "autograd" and model.data and losses.ndim == 0:
            losses = losses.expand(n)
        if source != "autograd" and tuple(losses.shape) not in ([(n,)] if model.data else [(), (1,)]):
            raise ModelError(
                f"{source} returned losses of shape {list(losses.shape)}, but the model has {n} sample(s)",
                fix=f"return one loss per sample, shape [{n}]" if model.data else "return the loss as a scalar",
            )
        return losses.mean() if model.reduction == "mean" else losses.sum()

    return f, p0


def hessian(
    model: Model, point: Mapping[str, np.ndarray], dtype: str, fn: LossFn | None = None, source: str = "autograd"
) -> np.ndarray:
    """The Hessian ``(n, n)`` of the reduced loss over the flattened params, by torch's double backward.

    ``fn`` is the per-sample loss (default: the model's expression); each row
    is ``d (g . e_i) / d p`` with the gradient ``g`` built with
    ``create_graph=True``, as ``torch.autograd.functional.hessian`` does. A
    gradient that does not depend on the params (a backward that is not
    differentiable) gives zero rows.
    """
    import torch

    f, p0 = _flat_loss(model, fn or expression_loss(model), point, dtype, source)
    h = torch.autograd.functional.hessian(f, p0)
    return np.asarray(h.detach().to(torch.float64).numpy(), dtype=np.float64).reshape(p0.numel(), p0.numel())


def hessian_directional(
    model: Model,
    point: Mapping[str, np.ndarray],
    us: np.ndarray,
    vs: np.ndarray,
    dtype: str,
    fn: LossFn | None = None,
    source: str = "autograd",
) -> np.ndarray:
    """``u_k . H v_k`` for rows of ``us``, ``vs`` ``(K, n)``: one double backward (Hessian-vector product) per pair."""
    import torch

    f, p0 = _flat_loss(model, fn or expression_loss(model), point, dtype, source)
    flat = p0.clone().requires_grad_(True)
    total = f(flat)
    if not total.requires_grad:
        return np.zeros(len(us))
    (g,) = torch.autograd.grad(total, flat, create_graph=True)
    out = []
    for u, v in zip(us, vs):
        gv = g @ torch.as_tensor(v, dtype=p0.dtype)
        if not gv.requires_grad:  # the gradient does not depend on the params: H v = 0
            out.append(0.0)
            continue
        (hv,) = torch.autograd.grad(gv, flat, retain_graph=True, allow_unused=True)
        out.append(0.0 if hv is None else float(torch.as_tensor(u, dtype=torch.float64) @ hv.to(torch.float64)))
    return np.asarray(out, dtype=np.float64)
