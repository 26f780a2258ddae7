"""Model files: YAML (or a dict) -> a validated :class:`Model`.

Everything about a model is checked here, before anything is computed:
names, shapes, sample counts, options. This module imports neither torch nor
SymPy, so bad input is answered at once.
"""

from __future__ import annotations

import os
import re
import zlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from . import expr as _expr
from . import limits as _limits
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
_INITS = ("normal", "uniform", "zeros", "ones", "constant")
DTYPES = ("float64", "float32")
REDUCTIONS = ("mean", "sum", "none")
MODES = ("sgd", "batch")


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


# --- loading ----------------------------------------------------------------


def load(path: str | os.PathLike[str]) -> Model:
    """Read and validate a model file."""
    path = os.fspath(path)
    try:
        size = os.path.getsize(path)
        if size > MAX_FILE_BYTES:
            raise ModelError(
                f"file is {size} bytes, more than the limit of {MAX_FILE_BYTES}",
                file=path,
                fix="raise gradcheck.model.MAX_FILE_BYTES if the file is really meant to be this large",
            )
        with open(path, "rb") as fh:
            raw = fh.read(MAX_FILE_BYTES + 1)  # bounded: a pipe or device reports no size
        if len(raw) > MAX_FILE_BYTES:
            raise ModelError(
                f"file is larger than the limit of {MAX_FILE_BYTES} bytes",
                file=path,
                fix="raise gradcheck.model.MAX_FILE_BYTES if the file is really meant to be this large",
            )
        text = raw.decode("utf-8")
    except ModelError:
        raise
    except FileNotFoundError:
        raise ModelError("no such file", file=path, fix="check the path") from None
    except IsADirectoryError:
        raise ModelError("is a directory, not a model file", file=path, fix="name a .yaml file") from None
    except UnicodeDecodeError as err:
        raise ModelError(f"not UTF-8 text ({err.reason} at byte {err.start})", file=path) from None
    except OSError as err:
        raise ModelError(f"cannot read the file: {err.strerror}", file=path) from None
    stem = os.path.splitext(os.path.basename(path))[0]
    if stem.endswith(".gradcheck"):
        stem = stem[: -len(".gradcheck")]
    return loads(text, name=stem, path=path)


def loads(text: str, *, name: str | None = None, path: str | None = None) -> Model:
    """Parse and validate a model from YAML text."""
    import yaml

    if len(text.encode("utf-8", "replace")) > MAX_FILE_BYTES:
        raise ModelError(f"model text is larger than {MAX_FILE_BYTES} bytes", file=path)
    try:
        loader = yaml.SafeLoader(text)
    except yaml.reader.ReaderError as err:  # a control character: PyYAML checks them all up front
        before = text[: err.position]
        raise ModelError(
            f"invalid YAML: character {chr(err.character)!r} is not allowed",
            file=path or "<model>",
            line=before.count("\n") + 1,
            col=err.position - before.rfind("\n"),
            fix="remove it (YAML allows printable characters, tabs and line breaks only)",
        ) from None
    try:
        node = loader.get_single_node()
        marks: dict[tuple[Any, ...], Any] = {}
        if node is not None:
            _record_marks(node, (), marks, set())
            doc = loader.construct_document(node)
        else:
            doc = None
    except yaml.MarkedYAMLError as err:
        mark = err.problem_mark or err.context_mark
        what = (err.problem or err.context or "invalid YAML").strip()
        if "could not determine a constructor" in what:
            what += " (tags such as !!python/... are not allowed)"
        raise ModelError(
            f"invalid YAML: {what}",
            file=path or "<model>",
            line=mark.line + 1 if mark else None,
            col=mark.column + 1 if mark else None,
            fix="check the indentation and quoting near that position",
        ) from None
    except yaml.YAMLError as err:
        raise ModelError(f"invalid YAML: {err}", file=path or "<model>") from None
    except (ValueError, OverflowError) as err:  # e.g. an integer of more than 4300 digits
        raise ModelError(
            f"invalid YAML value: {str(err).split(';')[0]}",
            file=path or "<model>",
            fix="write numbers that fit a float64",
        ) from None
    except RecursionError:
        raise ModelError("YAML nested too deeply", file=path or "<model>") from None
    finally:
        loader.dispose()
    if not isinstance(doc, dict):
        raise ModelError(
            "a model file must be a mapping with at least `params:` and `model:`",
            file=path or "<model>",
            fix="see docs/model-file.md",
        )
    return _Builder(doc, name=name, path=path, marks=marks).build()


def _record_marks(node: Any, where: tuple[Any, ...], marks: dict[tuple[Any, ...], Any], seen: set[int]) -> None:
    """Remember where each value of the document starts (for messages)."""
    import yaml

    if id(node) in seen or len(where) > 6:
        return
    seen.add(id(node))
    marks[where] = node
    if isinstance(node, yaml.MappingNode):
        keys: dict[str, Any] = {}
        for key, value in node.value:
            if isinstance(key, yaml.ScalarNode) and key.value != "<<":
                if key.value in keys:
                    raise yaml.constructor.ConstructorError(
                        None,
                        None,
                        f"duplicate key {key.value!r} (also at line {keys[key.value].line + 1}; "
                        "the later one would silently win)",
                        key.start_mark,
                    )
                keys[key.value] = key.start_mark
                _record_marks(value, where + (key.value,), marks, seen)
    elif isinstance(node, yaml.SequenceNode) and len(where) < 2:
        for i, value in enumerate(node.value[:1000]):
            _record_marks(value, where + (i,), marks, seen)


# --- validation -------------------------------------------------------------


class _Builder:
    def __init__(
        self,
        spec: Mapping[str, Any],
        *,
        name: str | None,
        path: str | None,
        marks: dict[tuple[Any, ...], Any] | None = None,
    ) -> None:
        self.spec = spec
        self.name = name
        self.path = path
        self.file = path or "<model>"
        self.marks = marks or {}

    # -- messages -------------------------------------------------------------

    def error(self, what: str, where: tuple[Any, ...] = (), *, fix: str | None = None) -> ModelError:
        node = None
        for cut in range(len(where), -1, -1):
            node = self.marks.get(where[:cut])
            if node is not None:
                break
        line = node.start_mark.line + 1 if node is not None else None
        col = node.start_mark.column + 1 if node is not None else None
        entry = ".".join(str(w) for w in where) or None
        return ModelError(what, fix=fix, file=self.file, entry=entry, line=line, col=col)

    def expr_error(self, err: ModelError, where: tuple[str, str]) -> ModelError:
        node = self.marks.get(where)
        line = col = None
        if node is not None:
            line = node.start_mark.line + 1
            col = node.start_mark.column + 1
            style = getattr(node, "style", None)
            if err.offset is not None and node.start_mark.line == node.end_mark.line:
                col += err.offset + (1 if style in ("'", '"') else 0)
            elif err.offset is not None and err.text is not None:
                line, col = _position_in_buffer(node, err.text, err.offset) or (line, col)
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
        taken: dict[str, str] = {}
        for kind, names in (("constant", CONSTANTS), ("function", FUNCTIONS), ("param", params), ("data column", data)):
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
            raise self.error(f"mode must be sgd or batch, got {mode!r}", ("train", "mode"))
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
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise self.error(f"expected a number, got {value!r}", where)
        value = float(value)
        if not np.isfinite(value) or (positive and (value < 0 or (value == 0 and not zero))):
            raise self.error(f"expected a {'non-negative' if zero else 'positive'} finite number, got {value!r}", where)
        return value

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
                or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in d)
                or not d[0] < d[1]
            ):
                raise self.error(f"domain must be [low, high] with low < high, got {d!r}", where + ("domain",))
            domain = (float(d[0]), float(d[1]))
        if "value" in spec and "init" not in spec:
            if "shape" in spec:
                raise self.error("give either `value` or `shape` with `init`, not both", where)
            return self.array(spec["value"], where + ("value",), "a parameter"), domain
        shape_raw = spec.get("shape", [])
        if not isinstance(shape_raw, list) or not all(
            isinstance(s, int) and not isinstance(s, bool) and s > 0 for s in shape_raw
        ):
            raise self.error(f"shape must be a list of positive whole numbers, got {shape_raw!r}", where + ("shape",))
        size = 1
        for s in shape_raw:
            size *= s
            if size > MAX_PARAM_VALUES:
                raise self.error(
                    f"shape {shape_raw} holds more than {MAX_PARAM_VALUES} numbers",
                    where + ("shape",),
                    fix="raise gradcheck.model.MAX_PARAM_VALUES for a model this large",
                )
        shape = tuple(shape_raw)
        init = spec.get("init", "normal" if "value" not in spec else "constant")
        if init not in _INITS:
            raise self.error(f"init must be one of {', '.join(_INITS)}, got {init!r}", where + ("init",))
        rng = np.random.default_rng([seed, zlib.crc32(name.encode())])

        def opt(key: str, default: float) -> float:
            v = self.number(spec.get(key, default), where + (key,))
            return float(default if v is None else v)

        if init == "normal":
            value = opt("mean", 0.0) + opt("std", 1.0) * rng.standard_normal(shape)
        elif init == "uniform":
            lo, hi = domain if domain and "low" not in spec else (opt("low", -1.0), opt("high", 1.0))
            value = rng.uniform(lo, hi, shape)
        elif init == "zeros":
            value = np.zeros(shape)
        elif init == "ones":
            value = np.ones(shape)
        else:
            value = np.full(shape, opt("value", 0.0))
        return np.asarray(value, dtype=np.float64), domain

    def array(self, value: Any, where: tuple[Any, ...], what: str, limit: int | None = None) -> np.ndarray:
        limit = MAX_PARAM_VALUES if limit is None else limit
        const, full, whole = (
            ("MAX_DATA_VALUES", MAX_DATA_VALUES, "all data columns")
            if where[0] == "data"
            else ("MAX_PARAM_VALUES", MAX_PARAM_VALUES, "all parameters")
        )
        _check_size(
            value,
            limit,
            lambda: self.error(
                f"{what} holds too many numbers (the limit is {full} in {whole} together)",
                where,
                fix=f"raise gradcheck.model.{const} for a model this large",
            ),
        )
        if isinstance(value, bool) or value is None or isinstance(value, str):
            fix = None
            if isinstance(value, str) and re.fullmatch(r"[-+]?\d+(\.\d*)?[eE][-+]?\d+", value.strip()):
                fix = "YAML 1.1 reads this as text: write a dot and a signed exponent, e.g. 1.0e-3 or 1.0e+3"
            raise self.error(f"expected a number or nested lists of numbers, got {_short(value)}", where, fix=fix)
        try:
            arr = np.asarray(value, dtype=np.float64)
        except OverflowError:
            raise self.error(
                "a number is too large for a float64", where, fix="numbers must lie within ±1.8e308"
            ) from None
        except (ValueError, TypeError):
            raise self.error(
                f"expected a number or nested lists of numbers of one shape, got {_short(value)}",
                where,
                fix="every row must have the same length",
            ) from None
        if _has_bool_or_str(value):
            raise self.error(f"expected numbers, got {_short(value)}", where)
        if arr.size == 0:
            raise self.error("empty value", where, fix="give at least one number")
        if not np.all(np.isfinite(arr)):
            raise self.error("values must be finite (no .nan or .inf)", where)
        return arr

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
            _limits.check_constants(node, text)
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


def _position_in_buffer(node: Any, text: str, offset: int) -> tuple[int, int] | None:
    """1-based line and column in the file of ``text[offset]`` for a scalar spread over lines.

    Block (``|``, ``>``) and multi-line plain or quoted scalars lose their
    indentation and line breaks on loading; the characters that are not
    blanks still come in order, so they are matched one by one.
    """
    buffer = getattr(node.start_mark, "buffer", None)
    if not buffer:
        return None
    p, end = node.start_mark.pointer, node.end_mark.pointer
    if getattr(node, "style", None) in ("|", ">"):
        p = buffer.find("\n", p, end) + 1  # the content starts on the next line
        if p == 0:
            return None
    elif getattr(node, "style", None) in ("'", '"'):
        p += 1
    target = p
    for i, ch in enumerate(text[: offset + 1]):
        if ch.isspace():
            continue
        while p < end and buffer[p] != ch:
            p += 1
        if p >= end:
            return None
        target = p
        p += 1
        if i == offset:
            break
    else:
        target = p  # the offset is a blank or the end: just after the last character matched
    line = buffer.count("\n", 0, target) + 1
    return line, target - buffer.rfind("\n", 0, target)


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _has_bool_or_str(value: Any) -> bool:
    if isinstance(value, (bool, str)):
        return True
    if isinstance(value, list):
        return any(_has_bool_or_str(v) for v in value)
    return False


def _check_size(value: Any, limit: int, error: Any) -> None:
    """Count numbers in nested lists without expanding YAML aliases twice."""
    memo: dict[int, int] = {}

    def count(v: Any) -> int:
        if not isinstance(v, list):
            return 1
        key = id(v)
        if key in memo:
            return memo[key]
        n = 0
        for item in v:
            n += count(item)
            if n > limit:
                raise error()
        memo[key] = n
        return n

    count(value)
