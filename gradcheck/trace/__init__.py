"""From PyTorch code to a model (tracing): :func:`from_torch`, which ``gc.from_torch`` calls.

``fn(params, sample)`` is run once, on the first sample, under a
:class:`~.tracer.Recorder`; each torch call becomes one model entry through
the table in :mod:`.table`, the returned scalar becomes ``loss``. The
model keeps ``fn`` itself as an ``against`` source (``torch:NAME``), so a
check compares the user's real code path too. See ``docs/from-torch.md``.
"""

from __future__ import annotations

import keyword
import re
from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

from ..errors import ModelError

__all__ = ["Traced", "from_factory", "from_torch", "trace", "valid_names"]

_BAD = re.compile(r"[^A-Za-z0-9_]")


def valid_names(keys: list[str], taken: set[str]) -> dict[str, str]:
    """Each key -> a name of the model language (SPEC section 6; docs/from-torch.md, "Names").

    Characters other than letters, digits and ``_`` become ``_``; a leading
    digit or ``__`` gets a ``p`` in front (``0.weight`` -> ``p0_weight``); a
    name that is a function of the language, a Python keyword, ``loss``, or
    already given to an earlier key gets ``_2``, ``_3``, ... (``exp`` ->
    ``exp_2``; ``a.b`` after ``a_b`` -> ``a_b_2``).
    """
    out: dict[str, str] = {}
    used = set(taken)
    for key in keys:
        name = _BAD.sub("_", str(key)) or "p"
        if name[0].isdigit() or name.startswith("__"):
            name = "p" + name
        if name in used or keyword.iskeyword(name) or name in ("True", "False", "None"):
            k = 2
            while f"{name}_{k}" in used:
                k += 1
            name = f"{name}_{k}"
        used.add(name)
        out[key] = name
    return out


def _reserved() -> set[str]:
    """Names a param or data column may not take: the language's functions (today's and the table's) and ``loss``."""
    from ..ops import FUNCTIONS
    from . import table

    emitted = {
        "gelu", "silu", "softsign", "leaky_relu", "elu", "sign", "clamp", "where", "var", "log_softmax",
        "outer", "diag", "trace", "reshape", "flatten", "concat", "stack", "conv1d", "conv2d",
        "maxpool2d", "avgpool2d", "square",
    }  # fmt: skip
    assert table.TABLE  # the table is loaded: its spellings are the ones above
    return set(FUNCTIONS) | emitted | {"loss"}


def _tensor(value: Any, what: str, key: str) -> Any:
    import torch

    try:
        t = torch.as_tensor(value.detach() if isinstance(value, torch.Tensor) else value)
    except (TypeError, ValueError, RuntimeError) as err:
        raise ModelError(f"from_torch: {what} {key!r} is not a tensor or number: {err}") from err
    return t.to(torch.float64) if (t.dtype.is_floating_point or t.dtype == torch.bool) else t


class Traced(NamedTuple):
    """A trace: the model file's content (a dict for ``Model.from_dict``) and ``fn`` as an ``against`` source."""

    spec: dict[str, Any]
    name: str
    against: Callable[[dict[str, Any], dict[str, Any]], Any]


def from_torch(
    fn: Callable[[dict[str, Any], dict[str, Any]], Any],
    *,
    params: Mapping[str, Any],
    data: Mapping[str, Any] | None = None,
    name: str | None = None,
) -> Any:
    """Trace ``fn(params, sample) -> scalar loss of one sample`` into a :class:`~gradcheck.Model`.

    ``params`` maps names to tensors (or arrays, numbers); ``data`` maps
    names to tensors holding the samples along the first axis. Keys that
    are no names of the language are mapped (:func:`valid_names`). The
    model's ``against`` holds ``fn`` itself under ``torch:NAME``, which
    :func:`gradcheck.check` adds to the comparison. Raises
    :class:`ModelError` for a call the table does not translate and for
    data-dependent control flow, naming the call and the user's line.
    """
    from ..model import Model

    traced = trace(fn, params=params, data=data, name=name)
    model = Model.from_dict(traced.spec, name=traced.name)
    model.against = {f"torch:{traced.name}": traced.against}
    return model


def from_factory(spec: str, flag: str = "--torch") -> Any:
    """The model of ``MODULE:FACTORY`` (``FACTORY() -> (fn, params, data)``), for ``--torch`` and ``convert``."""
    from ..custom import import_callable

    factory = import_callable(spec, flag)
    try:
        made = factory()
    except Exception as err:
        raise ModelError(f"{flag} {spec!r}: calling it raised {type(err).__name__}: {err}") from err
    if not (isinstance(made, tuple) and len(made) == 3 and callable(made[0])):
        raise ModelError(
            f"{flag} {spec!r} returned {type(made).__name__}, not (fn, params, data)",
            fix="return fn(params, sample) -> loss, the params dict and the data dict, as gc.from_torch takes them",
        )
    fn, params, data = made
    return from_torch(fn, params=params, data=data)


def trace(
    fn: Callable[[dict[str, Any], dict[str, Any]], Any],
    *,
    params: Mapping[str, Any],
    data: Mapping[str, Any] | None = None,
    name: str | None = None,
) -> Traced:
    """:func:`from_torch` up to the model file's content, which is not validated (the text, for tests and docs)."""
    import torch

    from .tracer import Recorder

    if not isinstance(params, Mapping) or not params:
        raise ModelError("from_torch: params must map names to tensors", fix="e.g. params={'w': torch.tensor(1.0)}")
    data = dict(data or {})
    p_vals = {k: _tensor(v, "param", k) for k, v in params.items()}
    d_vals = {k: _tensor(v, "data column", k) for k, v in data.items()}
    counts = {k: (v.shape[0] if v.ndim else None) for k, v in d_vals.items()}
    if any(c is None for c in counts.values()) or len(set(counts.values())) > 1 or 0 in counts.values():
        raise ModelError(
            "from_torch: data columns must hold the same number (>= 1) of samples along their first axis, got "
            + ", ".join(f"{k}: {list(v.shape)}" for k, v in d_vals.items()),
            fix="stack the samples along the first axis",
        )
    reserved = _reserved()
    p_names = valid_names(list(p_vals), reserved)
    d_names = valid_names(list(d_vals), reserved | set(p_names.values()))
    sample = {k: v[0] for k, v in d_vals.items()}
    leaves = {id(p_vals[k]): p_names[k] for k in p_vals}
    leaves.update({id(sample[k]): d_names[k] for k in sample})
    data_leaves = {id(sample[k]): k for k in sample}
    recorder = Recorder(leaves, data_leaves, reserved | set(p_names.values()) | set(d_names.values()))
    with recorder:
        result = fn(dict(p_vals), dict(sample))
    if not isinstance(result, torch.Tensor) or id(result) not in recorder.texts:
        raise ModelError(
            f"from_torch: fn returned {type(result).__name__}, not a tensor computed from params and data",
            fix="return one sample's scalar loss as a tensor",
        )
    if result.numel() != 1:
        raise ModelError(
            f"from_torch: fn returned a tensor of shape {list(result.shape)}, not one sample's scalar loss",
            fix="reduce it, e.g. .sum() or .mean()",
        )
    entries = dict(recorder.entries)
    last = recorder.texts[id(result)]
    text = last if result.ndim == 0 else f"sum({last})"
    if text == last and entries and last == list(entries)[-1]:
        entries["loss"] = entries.pop(last)
    else:
        entries["loss"] = text
    n = next(iter(counts.values()), 1) or 1
    columns = {d_names[k]: v.numpy().tolist() for k, v in d_vals.items()}
    for column, value in recorder.constants.items():
        columns[column] = [value.tolist()] * n
    for column, (user, classes) in recorder.one_hots.items():
        columns[column] = torch.nn.functional.one_hot(d_vals[user].long(), classes).tolist()
    title = name or (fn.__name__ if re.fullmatch(r"[A-Za-z_]\w*", getattr(fn, "__name__", "")) else "traced")
    spec: dict[str, Any] = {
        "name": title,
        "params": {p_names[k]: (v.item() if v.ndim == 0 else v.tolist()) for k, v in p_vals.items()},
        "model": entries,
    }
    if columns:
        spec["data"] = columns
    return Traced(spec, title, _against(fn, p_names, d_names, d_vals, n))


def _against(
    fn: Callable[..., Any], p_names: dict[str, str], d_names: dict[str, str], d_vals: dict[str, Any], n: int
) -> Callable[[dict[str, Any], dict[str, Any]], Any]:
    """``fn`` as an ``against`` source: ``(params, data) -> per-sample losses`` over the model's names."""

    def losses(params: dict[str, Any], data: dict[str, Any]) -> Any:
        import torch

        theirs = {key: params[name] for key, name in p_names.items()}
        out = []
        for i in range(n):
            sample = {}
            for key, name in d_names.items():
                original = d_vals[key]
                floating = original.dtype.is_floating_point
                sample[key] = data[name][i] if floating else original[i]  # class indices stay integers
            out.append(torch.as_tensor(fn(dict(theirs), sample)).reshape(()))
        return torch.stack(out)

    return losses
