"""Model files: YAML (or a dict) -> a validated :class:`Model`.

Everything about a model is checked here, before anything is computed:
names, shapes, sample counts, options. This module imports neither torch nor
SymPy, so bad input is answered at once.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from . import arrays, yamlfile
from . import expr as _expr
from . import limits as _limits
from .arrays import short as _short
from .errors import ModelError, close_match
from .ops import CONSTANTS, FUNCTIONS, Shape

#: Largest model file read, in bytes (see docs/limits.md).
MAX_FILE_BYTES = 10 * 1024 * 1024
#: Most numbers in all parameters together.
MAX_PARAM_VALUES = 10_000_000
#: Most numbers in all data columns together.
MAX_DATA_VALUES = 10_000_000

_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
_TOP_KEYS = ("name", "description", "params", "data", "model", "output", "reduction", "expected", "train", "check")
DTYPES = ("float64", "float32")
REDUCTIONS = ("mean", "sum", "none")
MODES = ("sgd", "batch", "newton")


@dataclass(frozen=True)
class Param:
    """A trainable parameter: its value (float64) and an optional domain."""

    value: np.ndarray
    domain: tuple[float, float] | None = None

    @property
    def shape(self) -> Shape:
        return tuple(self.value.shape)


@dataclass(frozen=True)
class CheckConfig:
    """The ``check:`` section. ``rtol``/``atol`` of ``None`` mean the dtype's defaults."""

    dtype: str = "float64"
    rtol: float | None = None
    atol: float | None = None
    points: int = 0
    seed: int = 0


@dataclass(frozen=True)
class TrainConfig:
    """The ``train:`` section: defaults for ``gradcheck train``."""

    epochs: int = 100
    lr: float = 0.01
    mode: str = "sgd"
    predict: dict[str, Any] = field(default_factory=dict)


@dataclass
class Model:
    """A validated model: parameters, data, ordered per-sample expressions.

    Build one with :func:`gradcheck.load`, :func:`gradcheck.loads` or
    :meth:`Model.from_dict`.
    """

    name: str
    params: dict[str, Param]
    data: dict[str, np.ndarray]
    entries: dict[str, _expr.Node]
    loss: str
    output: str | None
    reduction: str = "mean"
    expected: dict[str, _expr.Node] = field(default_factory=dict)
    check: CheckConfig = field(default_factory=CheckConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    description: str = ""
    path: str | None = None
    texts: dict[tuple[str, str], str] = field(default_factory=dict, repr=False)
    source: dict[str, Any] = field(default_factory=dict, repr=False)
    cache: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)
    #: Code that joins every check as ``against`` (a traced model's own ``fn``; see gradcheck.from_torch).
    against: dict[str, Callable[..., Any]] = field(default_factory=dict, repr=False, compare=False)

    # -- construction -------------------------------------------------------

    @classmethod
    def from_dict(cls, spec: Mapping[str, Any], *, name: str | None = None, path: str | None = None) -> Model:
        """Validate a model given as a dict (the YAML document's structure)."""
        return _Builder(spec, name=name, path=path).build()

    # -- facts --------------------------------------------------------------

    @property
    def n_samples(self) -> int:
        """Samples in the data (1 when the model has no data)."""
        for column in self.data.values():
            return int(column.shape[0])
        return 1

    def shape_of(self, name: str) -> Shape:
        """Per-sample shape of a param, data column or entry."""
        if name in self.params:
            return self.params[name].shape
        if name in self.data:
            return tuple(self.data[name].shape[1:])
        if name in self.entries:
            return self.entries[name].shape
        return ()

    @property
    def shapes(self) -> dict[str, Shape]:
        """The per-sample shape of every param, data column and entry, by name."""
        return {k: self.shape_of(k) for k in [*self.params, *self.data, *self.entries]}

    def param_values(self) -> dict[str, np.ndarray]:
        """The file's parameter values (float64 copies)."""
        return {k: p.value.copy() for k, p in self.params.items()}

    def gradient_formula(self, name: str) -> Any:
        """SymPy's derivative of the per-sample loss with respect to param ``name``.

        A SymPy expression for a scalar param, a ``sympy.Array`` of
        expressions in the param's shape for a tensor, in plain symbols named
        as in the file (``sympy.Symbol("w")``, ``sympy.Symbol("W[0, 1]")`` for
        a tensor element; see ``docs/api.md``).
        """
        if name not in self.params:
            guess = close_match(name, self.params)
            raise ModelError(
                f"no parameter named {name!r}",
                fix=f"did you mean {guess!r}?" if guess else "parameters: " + ", ".join(self.params),
            )
        # The formula machinery imports this module for type checking only (no cycle);
        # the data layer loads SymPy only when a formula is asked for.
        from .sources.symbolic import formulas

        return formulas.formula(self, name)

    def gradient_expression(self, name: str) -> str:
        """The derivative of the per-sample loss in param ``name`` as model-language text, in its shape.

        A tensor form (``outer(p * sum(y) - y, x)``) built by reverse
        accumulation with the op table's vector-Jacobian rules, naming the
        model's entries; for a model of scalars (params, data and entries all
        scalars per sample), SymPy's simplified formula when that text is
        model language (``2*x*(b + w*x - y)``). Either text, written as the param's
        ``expected:``, agrees with the other sources. A :class:`ModelError`
        names an op that has no tensor-form rule yet (see ``docs/model-file.md``).
        """
        if name not in self.params:
            guess = close_match(name, self.params)
            raise ModelError(
                f"no parameter named {name!r}",
                fix=f"did you mean {guess!r}?" if guess else "parameters: " + ", ".join(self.params),
            )
        from . import tensorgrad  # lazily, as gradient_formula: the derivation imports this module for types only

        return tensorgrad.gradient_expression(self, name)

    def to_dict(self) -> dict[str, Any]:
        """The model as a dict that :meth:`from_dict` accepts (a model file's content)."""
        out: dict[str, Any] = {"name": self.name}
        if self.description:
            out["description"] = self.description
        params: dict[str, Any] = {}
        for key, p in self.params.items():
            value = p.value.item() if p.value.ndim == 0 else p.value.tolist()
            params[key] = value if p.domain is None else {"value": value, "domain": list(p.domain)}
        out["params"] = params
        if self.data:
            out["data"] = {k: v.tolist() for k, v in self.data.items()}
        out["model"] = {k: self.texts[("model", k)] for k in self.entries}
        if self.output is not None:
            out["output"] = self.output
        out["reduction"] = self.reduction
        if self.expected:
            out["expected"] = {k: self.texts[("expected", k)] for k in self.expected}
        check = {"dtype": self.check.dtype, "points": self.check.points, "seed": self.check.seed}
        if self.check.rtol is not None:
            check["rtol"] = self.check.rtol
        if self.check.atol is not None:
            check["atol"] = self.check.atol
        out["check"] = check
        return out

    def to_yaml(self) -> str:
        """The model file text of :meth:`to_dict`: loads back to the same model (floats written by ``repr``).

        Code in :attr:`against` cannot be written to a file; a comment at the top names it.
        """
        import yaml

        class Dumper(yaml.SafeDumper):
            """Lists of numbers on one line (``[1.0, 2.0]``), mappings as blocks."""

        Dumper.add_representer(
            list, lambda dumper, data: dumper.represent_sequence("tag:yaml.org,2002:seq", data, flow_style=True)
        )
        head = "".join(f"# checked against {name} when built in Python (gc.from_torch)\n" for name in self.against)
        return head + yaml.dump(self.to_dict(), Dumper=Dumper, sort_keys=False, width=100, allow_unicode=True)


# --- loading ----------------------------------------------------------------


def load(path: str | os.PathLike[str]) -> Model:
    """Read and validate a model file."""
    path = os.fspath(path)
    text = yamlfile.read(path, MAX_FILE_BYTES)
    stem = os.path.splitext(os.path.basename(path))[0]
    if stem.endswith(".gradcheck"):
        stem = stem[: -len(".gradcheck")]
    return loads(text, name=stem, path=path)


def loads(text: str, *, name: str | None = None, path: str | None = None) -> Model:
    """Parse and validate a model from YAML text (numbers read as YAML 1.2: ``1e-3`` is a number)."""
    if len(text.encode("utf-8", "replace")) > MAX_FILE_BYTES:
        raise ModelError(f"model text is larger than {MAX_FILE_BYTES} bytes", file=path)
    doc, positions = yamlfile.parse(text, path or "<model>")
    if not isinstance(doc, dict):
        raise ModelError(
            "a model file must be a mapping with at least `params:` and `model:`",
            file=path or "<model>",
            fix="see docs/model-file.md",
        )
    return _Builder(doc, name=name, path=path, positions=positions).build()


# --- validation -------------------------------------------------------------


class _Builder:
    """Validates one document, section by section, into a :class:`Model`."""

    def __init__(
        self,
        spec: Mapping[str, Any],
        *,
        name: str | None,
        path: str | None,
        positions: yamlfile.Positions | None = None,
    ) -> None:
        self.spec = spec
        self.name = name
        self.path = path
        self.file = path or "<model>"
        self.positions = positions or yamlfile.Positions()
        self.taken: dict[str, str] = {}  # user names (and functions) in scope: they shadow constants

    # -- messages -------------------------------------------------------------

    def error(self, what: str, where: tuple[Any, ...] = (), *, fix: str | None = None) -> ModelError:
        """The error for the value at ``where`` (a path in the document), placed in the file when known."""
        line, col = self.positions.line_col(where)
        entry = arrays.path_text(where) or None
        return ModelError(what, fix=fix, file=self.file, entry=entry, line=line, col=col)

    def expr_error(self, err: ModelError, where: tuple[str, str]) -> ModelError:
        line, col = self.positions.in_expression(where, err.text, err.offset)
        return err.located(file=self.file, entry=".".join(where), line=line, col=col)

    # -- sections -------------------------------------------------------------

    def build(self) -> Model:
        spec = self.spec
        if not isinstance(spec, Mapping):
            raise ModelError("a model must be a mapping", file=self.file)
        self.known(spec, _TOP_KEYS, (), "section")
        name = spec.get("name", self.name or "model")
        if not isinstance(name, str) or not name:
            raise self.error(f"name must be text, got {name!r}", ("name",))
        description = spec.get("description") or ""
        if not isinstance(description, str):
            raise self.error(f"description must be text, got {description!r}", ("description",))
        check = self.check_config(spec.get("check") or {})
        params = self.params(spec.get("params"), check.seed)
        data = self.data(spec.get("data") or {})
        # Constants are not taken: a param, data column or entry named `e` or `pi` wins, as in Python.
        taken: dict[str, str] = {}
        self.taken = taken
        for kind, names in (("function", FUNCTIONS), ("param", params), ("data column", data)):
            for n in names:
                if n in taken:
                    section = "params" if kind == "param" else "data"
                    raise self.error(
                        f"{kind} {n!r} shadows the {taken[n]} of that name",
                        (section, n),
                        fix="rename one of them",
                    )
                taken[n] = kind
        shapes: dict[str, Shape] = {k: () for k in CONSTANTS}
        shapes.update({k: p.shape for k, p in params.items()})
        shapes.update({k: tuple(v.shape[1:]) for k, v in data.items()})
        texts: dict[tuple[str, str], str] = {}
        entries = self.entries(spec.get("model"), taken, shapes, texts)
        loss = "loss" if "loss" in entries else list(entries)[-1]
        if entries[loss].shape != ():
            raise self.error(
                f"the loss {loss!r} has per-sample shape {list(entries[loss].shape)}, but must be a scalar per sample",
                ("model", loss),
                fix="reduce it, e.g. sum(...) or mean(...)",
            )
        output = self.output(spec.get("output"), entries, loss)
        reduction = spec.get("reduction", "mean")
        if reduction not in REDUCTIONS:
            raise self.error(
                f"reduction must be one of {', '.join(REDUCTIONS)}, got {reduction!r}",
                ("reduction",),
            )
        visible = dict(shapes)
        visible.update({k: e.shape for k, e in entries.items()})
        expected = self.expected(spec.get("expected") or {}, params, visible, taken, entries, texts)
        train = self.train_config(spec.get("train") or {}, data)
        return Model(
            name=name,
            params=params,
            data=data,
            entries=entries,
            loss=loss,
            output=output,
            reduction=reduction,
            expected=expected,
            check=check,
            train=train,
            description=description,
            path=self.path,
            texts=texts,
            source=dict(spec),
        )

    def check_config(self, raw: Any) -> CheckConfig:
        if not isinstance(raw, Mapping):
            raise self.error(f"check must be a mapping, got {raw!r}", ("check",))
        self.known(raw, ("dtype", "rtol", "atol", "points", "seed"), ("check",), "option")
        dtype = raw.get("dtype", "float64")
        if dtype not in DTYPES:
            raise self.error(f"dtype must be float64 or float32, got {dtype!r}", ("check", "dtype"))
        rtol = self.number(raw.get("rtol"), ("check", "rtol"), positive=True)
        atol = self.number(raw.get("atol"), ("check", "atol"), positive=True, zero=True)
        points = self.count(raw.get("points", 0), ("check", "points"))
        if points > _limits.MAX_POINTS:
            raise self.error(
                f"{points} random points is more than the limit of {_limits.MAX_POINTS}",
                ("check", "points"),
                fix="ask for fewer, or pass --points N (or raise gradcheck.limits.MAX_POINTS)",
            )
        seed = self.count(raw.get("seed", 0), ("check", "seed"))
        return CheckConfig(dtype, rtol, atol, points, seed)

    def train_config(self, raw: Any, data: dict[str, np.ndarray]) -> TrainConfig:
        if not isinstance(raw, Mapping):
            raise self.error(f"train must be a mapping, got {raw!r}", ("train",))
        self.known(raw, ("epochs", "lr", "mode", "predict"), ("train",), "option")
        epochs = self.count(raw.get("epochs", 100), ("train", "epochs"))
        lr = self.number(raw.get("lr", 0.01), ("train", "lr"), positive=True)
        mode = raw.get("mode", "sgd")
        if mode not in MODES:
            raise self.error(f"mode must be sgd, batch or newton, got {mode!r}", ("train", "mode"))
        predict = raw.get("predict") or {}
        if not isinstance(predict, Mapping):
            raise self.error(f"predict must map data names to values, got {predict!r}", ("train", "predict"))
        for key in predict:
            if key not in data:
                guess = close_match(str(key), data)
                raise self.error(
                    f"predict names {key!r}, which is not a data column",
                    ("train", "predict", key),
                    fix=f"did you mean {guess!r}?" if guess else "data columns: " + ", ".join(data),
                )
        return TrainConfig(epochs, float(lr or 0.01), mode, dict(predict))

    def known(self, raw: Mapping[str, Any], allowed: tuple[str, ...], where: tuple[Any, ...], what: str) -> None:
        """Every key of ``raw`` is one of ``allowed``; else an error suggesting the closest."""
        for key in raw:
            if key not in allowed:
                guess = close_match(str(key), allowed)
                raise self.error(
                    f"unknown {what} {key!r}",
                    where + (key,),
                    fix=f"did you mean {guess!r}?" if guess else f"{what}s: " + ", ".join(allowed),
                )

    def number(self, value: Any, where: tuple[Any, ...], *, positive: bool = False, zero: bool = False) -> float | None:
        return arrays.number(value, where, self.error, positive=positive, zero=zero)

    def count(self, value: Any, where: tuple[Any, ...]) -> int:
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise self.error(f"expected a whole number >= 0, got {value!r}", where)
        return value

    def check_name(self, name: Any, where: tuple[Any, ...]) -> str:
        if not isinstance(name, str) or not _NAME.match(name):
            raise self.error(
                f"{name!r} is not a valid name", where, fix="use letters, digits and _, not starting with a digit"
            )
        if name.startswith("__"):
            raise self.error(f"{name!r} is not a valid name", where, fix="names may not start with '__'")
        return name

    def params(self, raw: Any, seed: int) -> dict[str, Param]:
        if raw is None:
            raise self.error(
                "missing section `params:`", (), fix="add `params:` with at least one parameter, e.g. `w: 1.0`"
            )
        if not isinstance(raw, Mapping) or not raw:
            raise self.error("params must map names to values", ("params",), fix="e.g. `params: {w: 1.0}`")
        out: dict[str, Param] = {}
        total = 0
        for key, value in raw.items():
            name = self.check_name(key, ("params", key))
            where = ("params", name)
            domain = None
            if isinstance(value, Mapping):
                param_value, domain = self.param_spec(value, where, seed, name)
            else:
                param_value = self.array(value, where, "a parameter", MAX_PARAM_VALUES - total)
            if domain is not None:
                lo, hi = domain
                if np.any(param_value < lo) or np.any(param_value > hi):
                    raise self.error(
                        f"value lies outside its domain [{lo}, {hi}]", where, fix="move the value or the domain"
                    )
            total += param_value.size
            if total > MAX_PARAM_VALUES:
                raise self.error(
                    f"parameters hold more than {MAX_PARAM_VALUES} numbers",
                    where,
                    fix="raise gradcheck.model.MAX_PARAM_VALUES for a model this large",
                )
            out[name] = Param(param_value, domain)
        return out

    def param_spec(
        self, spec: Mapping[str, Any], where: tuple[Any, ...], seed: int, name: str
    ) -> tuple[np.ndarray, tuple[float, float] | None]:
        self.known(spec, ("value", "shape", "init", "std", "mean", "low", "high", "domain"), where, "parameter option")
        domain = None
        if "domain" in spec:
            d = spec["domain"]
            if (
                not isinstance(d, list)
                or len(d) != 2
                or not all(arrays.is_number(v) and abs(v) < float("inf") for v in d)
                or not d[0] < d[1]
            ):
                raise self.error(
                    f"domain must be [low, high] with finite low < high, got {d!r}",
                    where + ("domain",),
                    fix="random points are drawn uniformly from the domain, so both ends must be finite",
                )
            domain = (float(d[0]), float(d[1]))
        if "value" in spec and "init" not in spec:
            if "shape" in spec:
                raise self.error("give either `value` or `shape` with `init`, not both", where)
            return self.array(spec["value"], where + ("value",), "a parameter"), domain
        value = arrays.initial_value(
            spec,
            where,
            self.error,
            seed=seed,
            name=name,
            domain=domain,
            limit=MAX_PARAM_VALUES,
            limit_fix="raise gradcheck.model.MAX_PARAM_VALUES for a model this large",
        )
        return value, domain

    def array(self, value: Any, where: tuple[Any, ...], what: str, limit: int | None = None) -> np.ndarray:
        const, full, whole = (
            ("MAX_DATA_VALUES", MAX_DATA_VALUES, "all data columns")
            if where[0] == "data"
            else ("MAX_PARAM_VALUES", MAX_PARAM_VALUES, "all parameters")
        )

        def too_many() -> ModelError:
            return self.error(
                f"{what} holds too many numbers (the limit is {full} in {whole} together)",
                where,
                fix=f"raise gradcheck.model.{const} for a model this large",
            )

        return arrays.to_array(
            value, where, self.error, limit=MAX_PARAM_VALUES if limit is None else limit, too_many=too_many
        )

    def data(self, raw: Any) -> dict[str, np.ndarray]:
        if not isinstance(raw, Mapping):
            raise self.error("data must map column names to lists of samples", ("data",))
        out: dict[str, np.ndarray] = {}
        count = None
        first = None
        total = 0
        for key, value in raw.items():
            name = self.check_name(key, ("data", key))
            where = ("data", name)
            if not isinstance(value, list):
                raise self.error(
                    f"a data column must be a list with one entry per sample, got {_short(value)}",
                    where,
                    fix=f"write `{name}: [{value!r}]` for a single sample" if isinstance(value, (int, float)) else None,
                )
            arr = self.array(value, where, "a data column", MAX_DATA_VALUES - total)
            total += arr.size
            if count is not None and arr.shape[0] != count:
                raise self.error(
                    f"has {arr.shape[0]} samples but {first!r} has {count}",
                    where,
                    fix="every data column needs one entry per sample",
                )
            count, first = arr.shape[0], first or name
            out[name] = arr
        return out

    def entries(
        self,
        raw: Any,
        taken: dict[str, str],
        shapes: dict[str, Shape],
        texts: dict[tuple[str, str], str],
    ) -> dict[str, _expr.Node]:
        if raw is None:
            raise self.error("missing section `model:`", (), fix="add `model:` with at least a `loss:` entry")
        if not isinstance(raw, Mapping) or not raw:
            raise self.error("model must map entry names to expressions", ("model",), fix="e.g. `loss: (x*w - y)**2`")
        entries: dict[str, _expr.Node] = {}
        for key, text in raw.items():
            name = self.check_name(key, ("model", key))
            if name in taken:
                raise self.error(
                    f"entry {name!r} shadows the {taken[name]} of that name", ("model", name), fix="rename the entry"
                )
            node = self.expression(text, ("model", name), shapes, entries, texts)
            entries[name] = node
            taken[name] = "model entry"
            shapes[name] = node.shape
        return entries

    def expression(
        self,
        text: Any,
        where: tuple[str, str],
        shapes: dict[str, Shape],
        earlier: Mapping[str, Any],
        texts: dict[tuple[str, str], str],
    ) -> _expr.Node:
        if isinstance(text, bool) or not isinstance(text, (str, int, float)):
            raise self.error(
                f"expected an expression, got {_short(text)}", where, fix="write the expression as text, e.g. `x * w`"
            )
        text = str(text)
        texts[where] = text
        try:
            node = _expr.parse(text)
            for n in node.walk():
                if n.op == "name" and n.value not in shapes:
                    raise self.unknown_name(str(n.value), n.pos, text, shapes, earlier, where)
            node = _expr.infer_shapes(node, shapes, text)
            _limits.check_constants(node, text, names=self.taken)
            return node
        except ModelError as err:
            raise self.expr_error(err, where) from None

    def unknown_name(
        self,
        name: str,
        pos: int,
        text: str,
        shapes: Mapping[str, Shape],
        earlier: Mapping[str, Any],
        where: tuple[str, str],
    ) -> ModelError:
        section, entry = where
        later = self.spec.get("model") if isinstance(self.spec.get("model"), Mapping) else {}
        if section == "model" and name in (later or {}) and name not in earlier:
            fix = (
                f"{name!r} is defined later; move it above {entry!r}"
                if name != entry
                else "an entry cannot refer to itself"
            )
        else:
            guess = close_match(name, shapes)
            fix = f"did you mean {guess!r}?" if guess else "known names: " + ", ".join(sorted(shapes))
        return ModelError(f"unknown name {name!r}", fix=fix, text=text, offset=pos)

    def output(self, raw: Any, entries: dict[str, _expr.Node], loss: str) -> str | None:
        if raw is not None:
            if raw not in entries:
                guess = close_match(str(raw), entries)
                raise self.error(
                    f"output {raw!r} is not a model entry",
                    ("output",),
                    fix=f"did you mean {guess!r}?" if guess else "entries: " + ", ".join(entries),
                )
            return str(raw)
        if "y_pred" in entries:
            return "y_pred"
        names = list(entries)
        i = names.index(loss)
        return names[i - 1] if i > 0 else None

    def expected(
        self,
        raw: Any,
        params: dict[str, Param],
        shapes: dict[str, Shape],
        taken: dict[str, str],
        entries: dict[str, _expr.Node],
        texts: dict[tuple[str, str], str],
    ) -> dict[str, _expr.Node]:
        if not isinstance(raw, Mapping):
            raise self.error("expected must map param names to gradient expressions", ("expected",))
        out: dict[str, _expr.Node] = {}
        for key, text in raw.items():
            if key not in params:
                guess = close_match(str(key), params)
                raise self.error(
                    f"{key!r} is not a parameter",
                    ("expected", key),
                    fix=f"did you mean {guess!r}?" if guess else "parameters: " + ", ".join(params),
                )
            node = self.expression(text, ("expected", key), shapes, entries, texts)
            want = params[key].shape
            if node.shape != want and node.shape != ():
                raise self.error(
                    f"the expected gradient has per-sample shape {list(node.shape)}, but {key!r} has shape {list(want)}",
                    ("expected", key),
                    fix="the gradient must have the parameter's shape",
                )
            out[key] = node
        return out
