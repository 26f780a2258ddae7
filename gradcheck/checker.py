"""Running a check: points, sources, kinks, verdicts -> :class:`Report`."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

import numpy as np

from . import compare, limits
from .errors import ModelError, close_match
from .model import Model
from .options import CheckOptions
from .report import FormulaLine, GradientResult, PointResult, Report

if TYPE_CHECKING:
    from .sources import ahead

Progress = Callable[[str], None]


def _as_point(model: Model, at: Mapping[str, Any] | None) -> dict[str, np.ndarray]:
    point = model.param_values()
    for name, value in (at or {}).items():
        if name not in model.params:
            guess = close_match(str(name), model.params)
            raise ModelError(
                f"`at` names {name!r}, which is not a parameter",
                fix=f"did you mean {guess!r}?" if guess else "parameters: " + ", ".join(model.params),
            )
        try:
            arr = np.asarray(value.detach().cpu().numpy() if hasattr(value, "detach") else value, dtype=np.float64)
        except (TypeError, ValueError):
            raise ModelError(f"`at` gives {name!r} the value {value!r}, which is not numeric") from None
        want = model.params[name].shape
        if arr.shape != want:
            raise ModelError(f"`at` gives {name!r} shape {list(arr.shape)}, but the parameter has shape {list(want)}")
        if not np.all(np.isfinite(arr)):
            raise ModelError(f"`at` gives {name!r} a value that is not finite: {value!r}")
        point[name] = arr
    return point


def random_points(model: Model, count: int, seed: int) -> list[dict[str, np.ndarray]]:
    """``count`` seeded random points: uniform in each domain, else value + N(0, 1)."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(count):
        point = {}
        for name, p in model.params.items():
            if p.domain is not None:
                point[name] = rng.uniform(p.domain[0], p.domain[1], p.shape)
            else:
                point[name] = p.value + rng.standard_normal(p.shape)
        out.append(point)
    return out


def _round(point: dict[str, np.ndarray], dtype: str) -> dict[str, np.ndarray]:
    return {k: np.asarray(v, dtype=np.dtype(dtype)).astype(np.float64) for k, v in point.items()}


def _data_in_dtype(model: Model, dtype: str) -> Model:
    """The model with its data rounded to ``dtype`` (sharing its caches)."""
    if dtype == "float64":
        return model
    data = {k: v.astype(np.dtype(dtype)).astype(np.float64) for k, v in model.data.items()}
    return dataclasses.replace(model, data=data)


def check(
    model: Model,
    options: CheckOptions | None = None,
    *,
    at: Mapping[str, Any] | None = None,
    against: Mapping[str, Any] | None = None,  # torch loss fns, gradient_fns, Engines (_against)
    progress: Progress | None = None,
) -> Report:
    """The orchestrator: check the model's gradients three ways (and against any extra sources).

    ``options`` are the check's settings (:class:`CheckOptions`; ``None``:
    all from the model file). With ``options.directions=K`` (K >= 1), K
    random unit directions over all parameters jointly are checked instead
    of every element (see :func:`random_directions` and
    ``docs/how-it-works.md``, "Directional mode").
    """
    from .sources import ahead

    settings = (options or CheckOptions()).resolve(model.check)
    against = {**model.against, **(against or {})}  # a traced model's own fn joins (gc.from_torch)
    assert settings.dtype is not None and settings.points is not None and settings.seed is not None
    dtype, tol, strict, directions = settings.dtype, settings.tolerance, settings.strict, settings.directions
    if settings.order == 2:
        from .hessian import unusable

        unusable(model)
    n_random, seed = settings.points, settings.seed
    todo = [_as_point(model, at)] + random_points(model, n_random, seed)
    budget = limits.Budget(
        file=model.path or model.name, size=sum(p.value.size for p in model.params.values())
    )  # SymPy work is bounded in time (docs/limits.md)
    sources = ["symbolic", "autograd", "finite_difference"]
    if model.expected:
        sources.append("expected")
    sources.extend(against or {})
    # Data are rounded to the dtype too, so every source sees the same function.
    model = _data_in_dtype(model, dtype)
    vs = random_directions(model, directions, seed) if directions else None
    points = [_round(raw, dtype) for raw in todo]
    # autograd from the command line's worker, which imports torch while this process runs the others (sources/ahead.py)
    pending = (
        ahead.start(model, points, dtype) if not against and settings.order == 1 else ahead.Ahead(model, points, dtype)
    )
    try:
        results = _check_points(model, points, pending, settings, tol, vs, against, budget, progress)
    finally:
        pending.close()
    with budget.spend("printing the derivative formulas"):
        formulas, formula_lines, formulas_latex, notes = _formulas(model)
    return Report(
        model=model.name,
        dtype=dtype,
        tolerance=tol,
        sources=sources,
        formulas=formulas,
        formula_lines=formula_lines,
        formulas_latex=formulas_latex,
        points=results,
        notes=notes,
        strict=strict,
        directions=directions,
    )


def _check_points(
    model: Model,
    points: list[dict[str, np.ndarray]],
    pending: ahead.Ahead,
    settings: CheckOptions,
    tol: compare.Tolerance,
    vs: dict[str, np.ndarray] | None,
    against: Mapping[str, Any],
    budget: limits.Budget,
    progress: Progress | None,
) -> list[PointResult]:
    """Every point's sources and verdicts (``pending``: the autograd gradients, :mod:`.sources.ahead`)."""
    from .sources import exact, finite_diff, symbolic

    dtype, directions, seed = settings.dtype, settings.directions, settings.seed
    assert dtype is not None and seed is not None
    results = []
    for i, point in enumerate(points):
        say = progress or (lambda _msg: None)
        say(f"point {i + 1}/{len(points)}: symbolic")
        with budget.spend("symbolic differentiation"):
            found = {"symbolic": symbolic.gradients(model, point)}
        if vs is None:
            say(f"point {i + 1}/{len(points)}: finite differences")
            found["finite_difference"] = finite_diff.gradients(model, point, dtype)
        say(f"point {i + 1}/{len(points)}: autograd")
        found["autograd"] = pending.get(i)
        _decide_exact_loss(model, point, found)
        if model.expected:  # mpmath on the IR: no SymPy, so outside the SymPy budget
            found["expected"] = exact.expected_gradients(model, point)
        # The report's order: the three sources, then `expected`, then the user's (in the order given).
        found = {k: found[k] for k in ("symbolic", "autograd", "finite_difference") if k in found} | found
        for name, fn in (against or {}).items():
            say(f"point {i + 1}/{len(points)}: {name}")
            found[name] = _against(model, fn, point, dtype, name)
        say(f"point {i + 1}/{len(points)}: kinks")
        if vs is None:
            results.append(_judge_point(model, point, found, tol, dtype))
        else:
            results.append(_judge_directions(model, point, found, vs, tol, dtype))
        if settings.order == 2:
            from . import hessian

            say(f"point {i + 1}/{len(points)}: second order")
            with budget.spend("symbolic second derivatives"):
                results[-1].hessian = hessian.check_point(
                    model, point, tol, dtype, against=against, directions=directions, seed=seed
                )
    return results


def _decide_exact_loss(model: Model, point: dict[str, np.ndarray], found: dict[str, Any]) -> None:
    """Make the symbolic loss nan where the loss *as written* is undefined (``0 * log(0)``).

    SymPy folds ``0 * log(s)`` to ``0`` while building the tape, so the tape's
    loss can be finite where the expression as written is not. The IR itself
    is evaluated exactly (:func:`gradcheck.sources.exact.per_sample_losses`,
    mpmath, every undefined value nan) whenever the float evaluation of the
    loss (autograd's) is not finite: that is where an undefined value can hide,
    and the exact evaluation costs as much as the whole symbolic source on a
    wide layer, so it is not run where the float loss is finite.
    """
    if bool(np.all(np.isfinite(np.asarray(found["autograd"].loss, dtype=np.float64)))):
        return
    from .sources import exact

    defined = np.isfinite(exact.per_sample_losses(model, point))
    if defined.all():
        return
    sym = found["symbolic"]
    if model.reduction == "none":
        sym.loss = np.where(defined, np.asarray(sym.loss, dtype=np.float64), np.nan)
    else:
        sym.loss = float("nan")


def random_directions(model: Model, count: int, seed: int) -> dict[str, np.ndarray]:
    """``count`` seeded random unit directions over all parameters jointly (flattened).

    Returns, per parameter, an array ``(count,) + shape``: row k of every
    parameter together is direction k, a standard normal vector scaled to
    norm 1. The generator is seeded by ``seed`` (and differs from the one
    that draws random points), so the same check draws the same directions.
    """
    rng = np.random.default_rng([seed, 0xD1])
    sizes = [p.value.size for p in model.params.values()]
    v = rng.standard_normal((count, sum(sizes)))
    v /= np.maximum(np.linalg.norm(v, axis=1, keepdims=True), 1e-300)
    out, start = {}, 0
    for (name, p), size in zip(model.params.items(), sizes):
        out[name] = v[:, start : start + size].reshape((count,) + p.shape)
        start += size
    return out


def _project(model: Model, values: Mapping[str, Any], vs: Mapping[str, np.ndarray]) -> np.ndarray:
    """Gradient . v for every direction: ``(K,)``, or ``(K, N)`` for ``reduction: none``."""
    total: Any = 0.0
    for name, v in vs.items():
        g = np.asarray(values[name], dtype=np.float64)
        k = v.shape[0]
        flat_v = v.reshape(k, -1)
        if model.reduction == "none":
            total = total + np.einsum("ke,ne->kn", flat_v, g.reshape(g.shape[0], -1))
        else:
            total = total + flat_v @ g.reshape(-1)
    return np.asarray(total, dtype=np.float64)


def _judge_directions(
    model: Model,
    point: dict[str, np.ndarray],
    found: dict[str, Any],
    vs: dict[str, np.ndarray],
    tol: compare.Tolerance,
    dtype: str,
) -> PointResult:
    """Verdicts on gradient . v, one pseudo-parameter ``direction[k]`` per direction."""
    from . import kinks as _kinks
    from .sources import finite_diff

    sym = found["symbolic"]
    k = next(iter(vs.values())).shape[0]
    projected = {src: _project(model, res.values, vs) for src, res in found.items()}
    projected["finite_difference"], fd_error, _method = finite_diff.directional(model, point, vs, dtype)
    # The scale of gradient . v: the per-sample magnitudes projected on |v|.
    scale = _project(model, sym.info["scale"], {n: np.abs(v) for n, v in vs.items()})
    kink = _kinks.find_along(model, point, vs)
    gradients = {}
    for j in range(k):
        name = f"direction[{j}]"
        gradients[name] = _judge_entries(
            model,
            name,
            (),
            {src: np.asarray(v[j], dtype=np.float64) for src, v in projected.items()},
            np.asarray(fd_error[j], dtype=np.float64),
            scale[j],
            None if kink is None else kink.entry(j),
            sym.loss,
            tol,
        )
    return PointResult(params=point, loss=sym.loss, gradients=gradients)


def _judge_entries(
    model: Model,
    name: str,
    shape: tuple[int, ...],
    values: dict[str, np.ndarray],
    fd_error: np.ndarray,
    scale: Any,
    kink: Any,
    loss: Any,
    tol: compare.Tolerance,
) -> GradientResult:
    """Verdicts on every entry of one gradient: a parameter's elements, or one direction's gradient . v.

    ``values`` maps each source to its values (shape ``shape``, with a
    leading sample axis for ``reduction: none``), ``fd_error`` the finite
    differences' estimate, ``scale`` the per-sample magnitudes
    (:func:`compare.element_scale`), ``kink`` the one-sided derivatives
    (:class:`gradcheck.kinks.Kink`, indexed like the values) or ``None``.
    Where the sides differ the entry is judged as a kink; where they agree
    the point is smooth, but the central difference straddles a jump in the
    second derivative, so its estimate is widened to cover the distance to
    the sides' mean (the widened estimate is the one reported).
    """
    per_sample = model.reduction == "none"
    errors = np.array(fd_error, dtype=np.float64)
    loss = np.asarray(loss, dtype=np.float64)
    verdicts = {}
    for idx in np.ndindex(*np.shape(values["symbolic"])):
        here = {src: float(np.asarray(v)[idx]) for src, v in values.items()}
        one_kink = None
        if kink is not None and bool(np.asarray(kink.differs)[idx]):
            one_kink = (float(np.asarray(kink.left)[idx]), float(np.asarray(kink.right)[idx]), kink.note(idx))
        elif kink is not None:
            middle = 0.5 * (float(np.asarray(kink.left)[idx]) + float(np.asarray(kink.right)[idx]))
            widened = abs(here["finite_difference"] - middle) + float(np.asarray(kink.error)[idx])
            errors[idx] = max(float(errors[idx]), widened)
        loss_ok = bool(np.all(np.isfinite(loss[idx[0]] if per_sample else loss)))
        verdicts[idx] = compare.judge(
            here,
            scale=compare.element_scale(scale, idx),
            fd_error=float(errors[idx]),
            tol=tol,
            exact_loss_finite=loss_ok,
            kink=one_kink,
        )
    return GradientResult.combine(name, shape, per_sample=per_sample, values=values, fd_error=errors, verdicts=verdicts)


def _against(model: Model, fn: Any, point: dict[str, np.ndarray], dtype: str, name: str) -> Any:
    """The gradients of one ``against`` value: a torch loss function, a ``gradient_fn`` or an ``Engine``."""
    from .engines import Engine, GradientFn
    from .sources import autograd, engine

    if isinstance(fn, Engine):
        return engine.engine_gradients(model, fn, point, name)
    if isinstance(fn, GradientFn):
        return engine.function_gradients(model, fn.fn, point, name)
    try:
        return autograd.backward(model, fn, point, dtype, name)
    except ModelError:
        raise
    except Exception as err:  # the user's code failed: say which and why
        raise ModelError(
            f"{name} raised {type(err).__name__}: {err}", fix="fix the function passed to `against`"
        ) from err


def _judge_point(
    model: Model, point: dict[str, np.ndarray], found: dict[str, Any], tol: compare.Tolerance, dtype: str
) -> PointResult:
    """Verdicts on every element of every parameter."""
    from . import kinks as _kinks

    sym = found["symbolic"]
    kinks = _kinks.find(model, point, dtype)
    fd = found["finite_difference"]
    gradients = {}
    for name in model.params:
        shape = np.shape(sym.values[name])  # with the sample axis for reduction none
        zeros = np.zeros(shape)  # a source without this gradient (a partial `expected`) says 0
        gradients[name] = _judge_entries(
            model,
            name,
            shape,
            {src: np.asarray(res.values.get(name, zeros), dtype=np.float64) for src, res in found.items()},
            np.asarray(fd.errors[name]),
            sym.info["scale"][name],
            kinks.get(name),
            sym.loss,
            tol,
        )
    return PointResult(params=point, loss=sym.loss, gradients=gradients)


def _formulas(model: Model) -> tuple[dict[str, str], list[FormulaLine], dict[str, str], list[str]]:
    """The report's formulas: per param the model-language text, the table's lines, the LaTeX, notes.

    Each is ``Model.gradient_expression``: one expression in the param's shape,
    built at tensor level (cheap at any size, so no tensor is left out). A
    param whose derivation needs an op without a tensor-form rule gets a note
    instead. Everything the table and a notebook show is made here, during
    the check.
    """
    from .latex import formula_latex

    texts: dict[str, str] = {}
    lines: list[FormulaLine] = []
    latex: dict[str, str] = {}
    notes = []
    for name in model.params:
        try:
            text = model.gradient_expression(name)
        except ModelError as err:
            notes.append(f"no formula for {name!r}: {str(err).splitlines()[0]}")  # the message, not its caret
            continue
        texts[name] = text
        lines.append(FormulaLine(model.loss, name, text))
        latex[name] = formula_latex(model, name, text)
    return texts, lines, latex, notes


def assert_agree(model: Model, **kwargs: Any) -> Report:
    """:func:`check`, raising ``AssertionError`` with the readable table unless the report is ok."""
    report = check(model, **kwargs)
    if not report.ok:
        raise AssertionError(f"gradients do not agree ({report.status}):\n{report.table()}")
    return report
