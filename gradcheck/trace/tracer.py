"""Recording one concrete run of the user's ``fn`` as model entries.

A :class:`torch.overrides.TorchFunctionMode` sees every torch call made
while ``fn`` runs on the first sample, at the level the user wrote it
(``F.linear``, ``F.mse_loss``, ``x @ W``, also inside ``nn.Module.forward``
under ``torch.func.functional_call``), with real tensors and so real
shapes. Each call on a traced tensor becomes one entry through
:data:`.table.TABLE`; calls on constants only run as they are. A call the
table lacks, and anything that reads a traced value into Python (a
tensor's ``__bool__`` in ``if``, ``.item()``), is a :class:`ModelError`
naming the call and the user's source line.
"""

from __future__ import annotations

import linecache
import os
import sys
from typing import Any

import torch
from torch.overrides import TorchFunctionMode, resolve_name

from ..errors import ModelError
from .table import TABLE, Arg, Call, Unsupported, number

#: Calls that read only metadata (shapes, dtypes): they run as they are.
METADATA = {
    f"torch.Tensor.{n}"
    for n in (
        "size",
        "dim",
        "ndimension",
        "numel",
        "nelement",
        "is_floating_point",
        "is_complex",
        "__len__",
        "__repr__",
        "__str__",
        "__format__",
        "__hash__",
        "requires_grad_",
    )
} | {
    f"torch.Tensor.{n}.__get__"
    for n in ("shape", "ndim", "dtype", "device", "requires_grad", "is_leaf", "grad_fn", "layout", "names", "data")
}
#: Calls that read a traced value into Python: control flow or numbers that depend on the data.
VALUE_READS = {
    f"torch.Tensor.{n}"
    for n in ("__bool__", "item", "tolist", "__float__", "__int__", "__index__", "numpy", "__array__", "__complex__")
}
#: Calls that stop the gradient of a traced value: the model language has no stop-gradient.
DETACHES = {"torch.Tensor.detach", "torch.detach", "torch.Tensor.detach_", "torch.Tensor.data.__get__"}
#: Calls that make constants from shapes alone, even given a traced tensor (``torch.zeros_like(x)``).
CONSTANT_LIKE = {f"torch.{n}_like" for n in ("zeros", "ones", "full", "empty", "rand", "randn")}

_TORCH_DIR = os.path.dirname(torch.__file__)
_OWN_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def user_line() -> tuple[str | None, int | None, int | None, str | None]:
    """File, line, column and source text of the innermost frame outside torch and gradcheck."""
    frame = sys._getframe(1)
    while frame is not None:
        path = frame.f_code.co_filename
        if not (path.startswith((_TORCH_DIR, _OWN_DIR, "<frozen")) or "contextlib" in path):
            col = None
            try:
                col = list(frame.f_code.co_positions())[frame.f_lasti // 2][2]
            except (IndexError, AttributeError):
                pass
            text = linecache.getline(path, frame.f_lineno) or None
            return path, frame.f_lineno, col, text
        frame = frame.f_back  # type: ignore[assignment]
    return None, None, None, None


def located(what: str, fix: str) -> ModelError:
    """A :class:`ModelError` placed at the user's line that made the current call."""
    path, line, col, text = user_line()
    return ModelError(
        what,
        fix=fix,
        file=path,
        line=line,
        col=None if col is None else col + 1,
        text=text,
        offset=col if text is not None else None,
    )


class Recorder(TorchFunctionMode):
    """Turns the torch calls of one run into ordered model entries."""

    def __init__(self, leaves: dict[int, str], data_leaves: dict[int, str], taken: set[str]) -> None:
        super().__init__()
        self.texts: dict[int, str] = dict(leaves)  # id(tensor) -> its name or literal
        self.data_leaves = data_leaves  # id(tensor) -> the user's data column
        self.keep: list[Any] = []  # traced tensors stay alive, so their ids stay theirs
        self.taken = set(taken)
        self.entries: dict[str, str] = {}
        self.counts: dict[str, int] = {}
        self.constants: dict[str, Any] = {}  # extra data columns: name -> value (the same for every sample)
        self.one_hots: dict[str, tuple[str, int]] = {}  # extra data columns: name -> (user column, classes)
        self.grad_on = torch.is_grad_enabled()  # gradients off inside fn only: `with torch.no_grad():`

    # -- names ----------------------------------------------------------------

    def fresh(self, base: str) -> str:
        base = "".join(ch for ch in base if ch.isalnum() or ch == "_").strip("_") or "v"
        base = "v" + base if base[0].isdigit() else base
        while True:
            k = self.counts.get(base, 0) + 1
            self.counts[base] = k
            name = f"{base}_{k}" if base[-1].isdigit() else f"{base}{k}"
            if name not in self.taken:
                self.taken.add(name)
                return name

    def traced(self, value: Any) -> bool:
        return isinstance(value, torch.Tensor) and id(value) in self.texts

    def arg(self, value: Any) -> Any:
        """A call's argument as the table sees it: tensors and numbers as :class:`Arg`."""
        if isinstance(value, torch.Tensor):
            if id(value) in self.texts:
                return Arg(self.texts[id(value)], value, self.data_leaves.get(id(value)))
            return Arg(self.constant(value), value)
        if isinstance(value, list) and value and all(isinstance(v, torch.Tensor) for v in value):
            return [self.arg(v) for v in value]
        if isinstance(value, tuple) and value and all(isinstance(v, torch.Tensor) for v in value):
            return tuple(self.arg(v) for v in value)
        return value

    def constant(self, value: torch.Tensor) -> str:
        """A tensor made inside ``fn`` from no traced value: a number, or a data column of its own."""
        if value.ndim == 0:
            v = value.item()
            return number(float(v) if value.dtype.is_floating_point else v)
        name = self.fresh("const")
        self.constants[name] = value.detach().to(torch.float64).cpu().numpy()
        self.texts[id(value)] = name
        self.keep.append(value)
        return name

    def one_hot(self, arg: Arg, classes: int) -> str:
        """A data column holding ``arg`` (class indices) one-hot; ``arg`` is index data or a constant."""
        if arg.data is None and self.traced(arg.value):
            raise Unsupported("class indices computed inside fn (pass them as a data column)")
        if arg.data is None:
            name = self.fresh("onehot")
            self.constants[name] = torch.nn.functional.one_hot(arg.value.long(), classes).double().numpy()
            return name
        for name, (column, n) in self.one_hots.items():
            if column == arg.data and n == classes:
                return name
        name = self.fresh(f"{arg.text}_onehot")
        self.one_hots[name] = (arg.data, classes)
        return name

    # -- the mode ---------------------------------------------------------------

    def __torch_function__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        kwargs = kwargs or {}
        name = resolve_name(func) or getattr(func, "__qualname__", repr(func))
        if name in DETACHES and args and self.traced(args[0]):
            spelled = "`.data`" if name.endswith("data.__get__") else f"`{name.removeprefix('torch.Tensor.')}()`"
            raise located(
                f"{spelled} ({name}) stops the gradient of a traced value: the model language has no "
                "stop-gradient, so the exact derivative would not be the one torch computes",
                fix="remove it from fn; a value meant to be a constant goes in `data` "
                "(or is computed outside fn and passed in)",
            )
        if name in METADATA:
            return func(*args, **kwargs)
        flat = list(args) + list(kwargs.values())
        flat += [v for a in flat if isinstance(a, (list, tuple)) for v in a]
        if not any(self.traced(a) for a in flat) or name in CONSTANT_LIKE:
            return func(*args, **kwargs)  # constants: computed now, used as numbers later
        if name in VALUE_READS:
            raise located(
                f"data-dependent control flow: {name} reads a traced tensor's value into Python "
                "(`if`/`while` on a tensor, `.item()`, `float()`)",
                fix="a model is one expression for every sample: write the choice with torch.where(...) "
                "and keep values as tensors",
            )
        if self.grad_on and not torch.is_grad_enabled():
            raise located(
                f"{name} runs on a traced value with gradients off (torch.no_grad() or set_grad_enabled(False)): "
                "torch's gradient would skip it, the exact derivative would not",
                fix="remove the no_grad block from fn; a value meant to be a constant goes in `data` "
                "(or is computed outside fn and passed in)",
            )
        rule = TABLE.get(name)
        if rule is None:
            if name.endswith("_") and not name.endswith("__"):
                fix = "write it out of place (x = x + y, not x.add_(y))"
            else:
                fix = "write it with supported calls (docs/from-torch.md lists them)"
            raise located(f"{name} has no translation to the model language", fix=fix)
        result = func(*args, **kwargs)
        if not isinstance(result, torch.Tensor):
            raise located(
                f"{name} returned {type(result).__name__}, not one tensor: it has no translation to the model language",
                fix="write it with supported calls (docs/from-torch.md lists them)",
            )
        call = Call(
            name,
            tuple(self.arg(a) for a in args),
            {k: self.arg(v) for k, v in kwargs.items()},
            result,
            one_hot=self.one_hot,
        )
        try:
            text = rule(call)
        except Unsupported as err:
            raise located(f"{name}: {err}", fix="this variant has no translation to the model language") from None
        first = call.args[0] if call.args else None
        if text is None:
            assert isinstance(first, Arg)
            text = first.text
        else:
            entry = self.fresh(_base(name))
            self.entries[entry] = text
            text = entry
        self.texts[id(result)] = text
        self.keep.append(result)
        return result


_BASES = {
    "radd": "add",
    "rsub": "sub",
    "rmul": "mul",
    "truediv": "div",
    "rtruediv": "div",
    "rdiv": "div",
    "rpow": "pow",
    "rmatmul": "matmul",
    "getitem": "part",
    "T.get": "transpose",
    "mT.get": "transpose",
}


def _base(name: str) -> str:
    """A readable stem for an entry made by the call ``name`` (``torch.Tensor.__add__`` -> ``add``)."""
    last = name.removeprefix("torch.").removeprefix("Tensor.").removeprefix("nn.functional.")
    last = last.replace("__", "").removeprefix("special.").removeprefix("linalg.")
    return _BASES.get(last, last.split(".")[-1])
