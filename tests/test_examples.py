"""Every bundled example gives the verdict its file announces.

Black-box tests written against SPEC.md sections 2 and 4-6 only: they run
``python -m gradcheck FILE --json`` in a subprocess and the public API
(``gc.load``, ``gc.check``, ``report.ok``, ``report.status``,
``report.to_dict()``), and compare with gradients derived by hand in this file
(plain Python arithmetic; gradcheck is never asked for an expected value).

Each example states its verdict in a comment line ``# expect: agree``,
``# expect: mismatch`` or ``# expect: kink``.
"""

from __future__ import annotations

import concurrent.futures
import importlib
import json
import math
import os
import subprocess
import sys
from fractions import Fraction
from pathlib import Path

import pytest
import yaml
from helpers import expectation

REPO = Path(__file__).resolve().parents[1]
EXAMPLES = sorted(REPO.glob("examples/*.yaml"))
IDS = [p.stem for p in EXAMPLES]

EXIT_CODE = {"agree": 0, "kink": 0, "mismatch": 1}
STATUSES = ("agree", "kink", "undefined", "mismatch")  # in order of severity
THREE = ("symbolic", "autograd", "finite_difference")


# --------------------------------------------------------------------------
# helpers


def load_yaml(path: Path) -> dict:
    return yaml.safe_load(path.read_text())


def dtype_of(spec: dict) -> str:
    return (spec.get("check") or {}).get("dtype", "float64")


def run_cli(*args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, NO_COLOR="1")
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    return subprocess.run(
        [sys.executable, "-m", "gradcheck", *args],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )


def is_number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def nested_shape(v) -> list[int]:
    """Shape of a number (``[]``) or of a rectangular nested list."""
    if is_number(v):
        return []
    assert isinstance(v, list) and v, f"not a number or a non-empty list: {v!r}"
    inner = [nested_shape(e) for e in v]
    assert all(s == inner[0] for s in inner), f"ragged nested list: {v!r}"
    return [len(v), *inner[0]]


def flat(v) -> list[float]:
    if is_number(v):
        return [float(v)]
    return [x for e in v for x in flat(e)]


def param_shape(value) -> list[int]:
    """The shape of a parameter as SPEC section 2 writes it in the file."""
    if isinstance(value, dict):
        if "shape" in value:
            return list(value["shape"])
        return param_shape(value["value"])
    return nested_shape(value)


def mean(xs):
    xs = list(xs)
    return sum(xs) / len(xs)


def sigmoid(z: float) -> float:
    return 1.0 / (1.0 + math.exp(-z))


# --------------------------------------------------------------------------
# gradients derived by hand, at the point the report says it used
#
# Each returns {"loss": L, "grads": {param: value}} for the mean reduction,
# where value is a float or a nested list in the param's shape; optional
# "sources": {source: {param: value}} for sources that differ on purpose.


def hand_lesson(spec, params):
    # w = 1: residual x*w - y = -x; loss x**2 -> mean(1, 4, 9);
    # dL/dw = 2*x*(x*w - y) = -2*x**2 -> mean(-2, -8, -18)
    assert params == {"w": 1.0}
    return {"loss": 14 / 3, "grads": {"w": -28 / 3}}


def hand_linear(spec, params):
    # w = 1, b = 0: residual -x; dL/db = 2*(x*w + b - y) -> mean(-2, -4, -6) = -4
    assert params == {"w": 1.0, "b": 0.0}
    return {"loss": 14 / 3, "grads": {"w": -28 / 3, "b": -4.0}}


def hand_exercise(spec, params):
    # w1 = w2 = b = 1: y_pred = x**2 + x + 1 = 3, 7, 13; r = y_pred - y = 1, 3, 7
    # dw1 = 2*r*x**2 = 2, 24, 126; dw2 = 2*r*x = 2, 12, 42; db = 2*r = 2, 6, 14
    assert params == {"w1": 1.0, "w2": 1.0, "b": 1.0}
    return {
        "loss": 59 / 3,
        "grads": {"w1": 152 / 3, "w2": 56 / 3, "b": 22 / 3},
    }


def hand_logistic(spec, params):
    # BCE(sigmoid(z)) has dL/dz = p - y; z = dot(w, x) + b
    xs, ys = spec["data"]["x"], spec["data"]["y"]
    w, b = params["w"], params["b"]
    losses, gw, gb = [], [], []
    for x, y in zip(xs, ys):
        p = sigmoid(w[0] * x[0] + w[1] * x[1] + b)
        losses.append(-(y * math.log(p) + (1 - y) * math.log(1 - p)))
        gw.append([(p - y) * x[0], (p - y) * x[1]])
        gb.append(p - y)
    grads = {"w": [mean(g[0] for g in gw), mean(g[1] for g in gw)], "b": mean(gb)}
    # the numbers written in logistic.yaml's comment
    assert grads["w"] == pytest.approx([-0.121287358716125, 0.186685897705066], rel=1e-12)
    assert grads["b"] == pytest.approx(0.0951992694944706, rel=1e-12)
    return {"loss": mean(losses), "grads": grads}


def hand_mlp(spec, params):
    # backprop by hand: a = W1 @ x + b1, h = tanh(a), y_pred = dot(w2, h) + b2
    xs, ys = spec["data"]["x"], spec["data"]["y"]
    W1, b1, w2, b2 = params["W1"], params["b1"], params["w2"], params["b2"]
    n_hidden = len(b1)
    losses = []
    gW1 = [[0.0, 0.0] for _ in range(n_hidden)]
    gb1 = [0.0] * n_hidden
    gw2 = [0.0] * n_hidden
    gb2 = 0.0
    for x, y in zip(xs, ys):
        h = [math.tanh(W1[i][0] * x[0] + W1[i][1] * x[1] + b1[i]) for i in range(n_hidden)]
        r = sum(w2[i] * h[i] for i in range(n_hidden)) + b2 - y
        losses.append(r * r)
        gb2 += 2 * r
        for i in range(n_hidden):
            gw2[i] += 2 * r * h[i]
            da = 2 * r * w2[i] * (1 - h[i] ** 2)
            gb1[i] += da
            gW1[i][0] += da * x[0]
            gW1[i][1] += da * x[1]
    n = len(xs)
    return {
        "loss": mean(losses),
        "grads": {
            "W1": [[g / n for g in row] for row in gW1],
            "b1": [g / n for g in gb1],
            "w2": [g / n for g in gw2],
            "b2": gb2 / n,
        },
    }


def hand_softmax_regression(spec, params):
    # cross-entropy of softmax with one-hot y: dL/dz = p - y; z = W @ x + b
    xs, ys = spec["data"]["x"], spec["data"]["y"]
    W, b = params["W"], params["b"]
    k, d = len(W), len(W[0])
    losses = []
    gW = [[0.0] * d for _ in range(k)]
    gb = [0.0] * k
    for x, y in zip(xs, ys):
        z = [sum(W[i][j] * x[j] for j in range(d)) + b[i] for i in range(k)]
        m = max(z)
        s = sum(math.exp(t - m) for t in z)
        p = [math.exp(t - m) / s for t in z]
        losses.append(-sum(yi * math.log(pi) for yi, pi in zip(y, p)))
        for i in range(k):
            gb[i] += p[i] - y[i]
            for j in range(d):
                gW[i][j] += (p[i] - y[i]) * x[j]
    n = len(xs)
    grads = {"W": [[g / n for g in row] for row in gW], "b": [g / n for g in gb]}
    assert grads["b"] == pytest.approx([-0.0159070371815478, 0.0631515374315895, -0.0472445002500416], rel=1e-12)
    return {"loss": mean(losses), "grads": grads}


def hand_expected_correct(spec, params):
    out = hand_linear(spec, params)
    out["sources"] = {"expected": dict(out["grads"])}
    return out


def hand_expected_wrong(spec, params):
    # the file's expected w drops the chain-rule factor x: mean(2*(-x)) = -4
    out = hand_linear(spec, params)
    out["sources"] = {"expected": {"w": -4.0, "b": -4.0}}
    return out


HAND = {
    "lesson": hand_lesson,
    "lesson_float32": hand_lesson,
    "linear": hand_linear,
    "exercise": hand_exercise,
    "logistic": hand_logistic,
    "mlp": hand_mlp,
    "softmax_regression": hand_softmax_regression,
    "expected_correct": hand_expected_correct,
    "expected_wrong": hand_expected_wrong,
}

# per-sample derivative formulas (as text in the example's names) that the
# report's `formulas` must be equal to as functions
HAND_FORMULAS = {
    "lesson": {"w": "2*x*(x*w - y)"},
    "lesson_float32": {"w": "2*x*(x*w - y)"},
    "linear": {"w": "2*x*(x*w + b - y)", "b": "2*(x*w + b - y)"},
    "expected_correct": {"w": "2*x*(x*w + b - y)", "b": "2*(x*w + b - y)"},
    "expected_wrong": {"w": "2*x*(x*w + b - y)", "b": "2*(x*w + b - y)"},
    "exercise": {
        "w1": "2*x**2*(w1*x**2 + w2*x + b - y)",
        "w2": "2*x*(w1*x**2 + w2*x + b - y)",
        "b": "2*(w1*x**2 + w2*x + b - y)",
    },
}


def tolerance(source: str, exact: float, dtype: str, fd_error: float) -> float:
    """How far a source may be from the hand-derived value.

    symbolic is exact and rounded; autograd and `expected` are one float
    evaluation; finite differences are allowed their own error estimate
    plus a margin for the step rule.
    """
    scale = max(1.0, abs(exact))
    if dtype == "float32":
        rel = 1e-3 if source == "finite_difference" else 1e-5
    elif source == "symbolic":
        rel = 1e-13
    elif source == "finite_difference":
        rel = 1e-6
    else:
        rel = 1e-10
    extra = fd_error if source == "finite_difference" else 0.0
    return rel * scale + extra


def fd_errors(grad: dict, n: int) -> list[float]:
    err = grad["fd_error"]
    if is_number(err):
        return [float(err)] * n
    values = flat(err)
    assert len(values) == n
    return values


# --------------------------------------------------------------------------
# fixtures: every example through the command line once, in parallel


@pytest.fixture(scope="module")
def cli():
    """{stem: CompletedProcess} for `python -m gradcheck FILE --json`."""
    workers = max(1, min(4, os.cpu_count() or 1))
    with concurrent.futures.ThreadPoolExecutor(workers) as pool:
        futures = {p.stem: pool.submit(run_cli, str(p), "--json") for p in EXAMPLES}
        return {stem: f.result() for stem, f in futures.items()}


@pytest.fixture(scope="module")
def reports(cli):
    """{stem: parsed JSON report} (fails the test that asks for a bad one)."""
    out = {}
    for stem, proc in cli.items():
        try:
            out[stem] = json.loads(proc.stdout)
        except json.JSONDecodeError:
            out[stem] = None
    return out


def report_of(reports, cli, path: Path) -> dict:
    rep = reports[path.stem]
    proc = cli[path.stem]
    assert rep is not None, (
        f"{path.name}: --json printed no JSON (exit {proc.returncode})\n"
        f"stdout: {proc.stdout[:2000]}\nstderr: {proc.stderr[-3000:]}"
    )
    return rep


@pytest.fixture(scope="module")
def gc():
    if str(REPO) not in sys.path:
        sys.path.insert(0, str(REPO))
    return importlib.import_module("gradcheck")


# --------------------------------------------------------------------------
# the files themselves (no gradcheck needed)


def test_examples_exist():
    stems = set(IDS)
    for required in (
        "lesson",
        "lesson_float32",
        "linear",
        "exercise",
        "logistic",
        "mlp",
        "softmax_regression",
        "expected_correct",
        "expected_wrong",
        "relu_kink",
    ):
        assert required in stems


@pytest.mark.parametrize("path", EXAMPLES, ids=IDS)
def test_example_file_is_well_formed(path):
    expectation(path)
    spec = load_yaml(path)
    assert isinstance(spec, dict)
    assert isinstance(spec["params"], dict) and spec["params"]
    assert isinstance(spec["model"], dict) and spec["model"]
    assert all(isinstance(v, str) for v in spec["model"].values())
    assert set(spec) <= {
        "name",
        "description",
        "params",
        "data",
        "model",
        "output",
        "reduction",
        "expected",
        "train",
        "check",
    }
    data = spec.get("data") or {}
    counts = {len(col) for col in data.values()}
    assert len(counts) <= 1, "data columns must have equal sample counts"


def test_hand_fractions_are_what_the_comments_say():
    # the lesson, done with exact fractions
    xs, ys, w = [1, 2, 3], [2, 4, 6], 1
    n = Fraction(len(xs))
    assert sum(Fraction(2 * x * (x * w - y)) for x, y in zip(xs, ys)) / n == Fraction(-28, 3)
    assert sum(Fraction((x * w - y) ** 2) for x, y in zip(xs, ys)) / n == Fraction(14, 3)
    # the exercise at w1 = w2 = b = 1
    r = [x * x + x + 1 - y for x, y in zip(xs, ys)]
    assert r == [1, 3, 7]
    assert sum(Fraction(2 * ri * x * x) for ri, x in zip(r, xs)) / n == Fraction(152, 3)
    assert sum(Fraction(2 * ri * x) for ri, x in zip(r, xs)) / n == Fraction(56, 3)
    assert sum(Fraction(2 * ri) for ri in r) / n == Fraction(22, 3)


# --------------------------------------------------------------------------
# the command line


@pytest.mark.slow
@pytest.mark.parametrize("path", EXAMPLES, ids=IDS)
def test_cli_verdict_and_exit_code(path, cli, reports):
    expect = expectation(path)
    proc = cli[path.stem]
    assert "Traceback" not in proc.stderr, proc.stderr
    rep = report_of(reports, cli, path)
    assert isinstance(rep, dict), "one file gives one JSON object"
    assert rep["status"] == expect
    assert proc.returncode == EXIT_CODE[expect], proc.stderr
    assert rep["ok"] is (proc.returncode == 0)


@pytest.mark.slow
@pytest.mark.parametrize("path", EXAMPLES, ids=IDS)
def test_cli_json_follows_spec(path, cli, reports):
    rep = report_of(reports, cli, path)
    spec = load_yaml(path)

    assert rep["model"] == spec.get("name", path.stem)
    assert isinstance(rep["ok"], bool)
    assert rep["status"] in STATUSES

    sources = rep["sources"]
    assert isinstance(sources, list) and all(isinstance(s, str) for s in sources)
    assert set(THREE) <= set(sources)
    assert ("expected" in sources) is ("expected" in spec)

    formulas = rep["formulas"]
    assert isinstance(formulas, dict)

    # one model-language expression per param, scalar or tensor (SPEC section 5)
    assert set(formulas) == set(spec["params"])
    assert all(isinstance(v, str) and v for v in formulas.values())

    points = rep["points"]
    assert isinstance(points, list) and len(points) >= 1
    statuses = []
    for point in points:
        assert set(point["params"]) == set(spec["params"])
        assert is_number(point["loss"])
        assert math.isfinite(point["loss"])
        assert set(point["gradients"]) == set(spec["params"])
        for name, grad in point["gradients"].items():
            shape = param_shape(spec["params"][name])
            assert grad["shape"] == shape, name
            assert all(isinstance(n, int) for n in grad["shape"])
            assert set(grad["values"]) == set(sources), name
            for source, value in grad["values"].items():
                assert nested_shape(value) == shape, (name, source)
                assert all(math.isfinite(v) for v in flat(value)), (name, source)
            errors = fd_errors(grad, math.prod(shape))
            assert all(e >= 0 and math.isfinite(e) for e in errors), name
            assert grad["status"] in STATUSES
            assert grad["odd_one_out"] is None or grad["odd_one_out"] in sources
            assert grad["note"] is None or isinstance(grad["note"], str)
            statuses.append(grad["status"])
    # the top status is the worst of all
    assert rep["status"] == max(statuses, key=STATUSES.index)
    # the whole report is strict JSON
    json.dumps(rep, allow_nan=False)


@pytest.mark.slow
@pytest.mark.parametrize("path", EXAMPLES, ids=IDS)
def test_cli_first_point_is_the_files_values(path, cli, reports):
    rep = report_of(reports, cli, path)
    spec = load_yaml(path)
    got = rep["points"][0]["params"]
    rel = 1e-7 if dtype_of(spec) == "float32" else 0.0
    for name, value in spec["params"].items():
        if isinstance(value, dict) and "value" in value:
            value = value["value"]
        if isinstance(value, dict):  # {shape, init, ...}: drawn, seeded
            assert nested_shape(got[name]) == list(value["shape"]), name
            init = value.get("init")
            fixed = {"zeros": 0.0, "ones": 1.0}
            if init in fixed:
                assert flat(got[name]) == [fixed[init]] * math.prod(value["shape"])
            else:
                assert all(math.isfinite(v) for v in flat(got[name]))
            continue
        assert nested_shape(got[name]) == nested_shape(value), name
        assert flat(got[name]) == pytest.approx(flat(value), rel=rel, abs=0), name


@pytest.mark.slow
@pytest.mark.parametrize("path", [p for p in EXAMPLES if p.stem in HAND], ids=[s for s in IDS if s in HAND])
def test_cli_gradients_equal_hand_derived(path, cli, reports):
    rep = report_of(reports, cli, path)
    spec = load_yaml(path)
    dtype = dtype_of(spec)
    point = rep["points"][0]
    hand = HAND[path.stem](spec, point["params"])

    loss_tol = 1e-5 if dtype == "float32" else 1e-12
    assert point["loss"] == pytest.approx(hand["loss"], rel=loss_tol)

    for name, exact in hand["grads"].items():
        grad = point["gradients"][name]
        exact_flat = flat(exact)
        errs = fd_errors(grad, len(exact_flat))
        for source, value in grad["values"].items():
            want = flat(hand.get("sources", {}).get(source, {}).get(name, exact))
            got = flat(value)
            for i, (g, e) in enumerate(zip(got, want)):
                tol = tolerance(source, e, dtype, errs[i])
                assert abs(g - e) <= tol, (
                    f"{path.stem}: d loss/d {name}[{i}] from {source} = {g!r}, by hand {e!r} (tolerance {tol:.3g})"
                )


@pytest.mark.slow
@pytest.mark.parametrize(
    "path",
    [p for p in EXAMPLES if p.stem in HAND_FORMULAS],
    ids=[s for s in IDS if s in HAND_FORMULAS],
)
def test_cli_formulas_equal_hand_derived(path, cli, reports):
    sympy = pytest.importorskip("sympy")
    rep = report_of(reports, cli, path)
    spec = load_yaml(path)
    names = [*spec["params"], *(spec.get("data") or {}), *spec["model"]]
    symbols = {n: sympy.Symbol(n) for n in names}
    probe_points = [
        {n: v for n, v in zip(names, vals)}
        for vals in (
            [0.5, -1.25, 2.0, 0.75, 3.5, -0.5, 1.5],
            [1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0],
            [-2.0, 0.25, -0.75, 1.5, -3.0, 2.5, 0.125],
        )
    ]
    for name, text in HAND_FORMULAS[path.stem].items():
        theirs = sympy.parse_expr(rep["formulas"][name], local_dict=symbols)
        mine = sympy.parse_expr(text, local_dict=symbols)
        for probe in probe_points:
            subs = {symbols[n]: sympy.Rational(v) for n, v in probe.items() if n in symbols}
            assert (theirs - mine).subs(subs) == 0, (name, rep["formulas"][name], text)


@pytest.mark.slow
def test_lesson_all_three_sources(cli, reports):
    path = REPO / "examples" / "lesson.yaml"
    rep = report_of(reports, cli, path)
    point = rep["points"][0]
    assert point["params"] == {"w": 1.0}
    assert point["loss"] == pytest.approx(14 / 3, rel=1e-12)
    grad = point["gradients"]["w"]
    assert grad["shape"] == []
    values = grad["values"]
    # symbolic: exact, then rounded to float64 -> the float nearest -28/3
    assert values["symbolic"] == -28 / 3
    assert values["autograd"] == pytest.approx(-28 / 3, rel=1e-12)
    assert values["finite_difference"] == pytest.approx(-28 / 3, rel=1e-9)
    assert abs(values["finite_difference"] + 28 / 3) <= grad["fd_error"] + 1e-12 * 28 / 3
    assert grad["fd_error"] <= 1e-6
    assert grad["status"] == "agree"
    assert grad["odd_one_out"] is None


@pytest.mark.slow
def test_lesson_float32_agrees(cli, reports):
    path = REPO / "examples" / "lesson_float32.yaml"
    rep = report_of(reports, cli, path)
    assert rep["status"] == "agree"
    values = rep["points"][0]["gradients"]["w"]["values"]
    for source in THREE:
        assert values[source] == pytest.approx(-28 / 3, rel=1e-5), source


@pytest.mark.slow
def test_linear_bias_gradient(cli, reports):
    path = REPO / "examples" / "linear.yaml"
    rep = report_of(reports, cli, path)
    grads = rep["points"][0]["gradients"]
    # dL/db = mean(2*(x*w + b - y)) at w=1, b=0 = mean(-2, -4, -6) = -4
    for source in THREE:
        assert grads["b"]["values"][source] == pytest.approx(-4.0, rel=1e-9), source
        assert grads["w"]["values"][source] == pytest.approx(-28 / 3, rel=1e-9), source


@pytest.mark.slow
def test_expected_wrong_names_expected(cli, reports):
    path = REPO / "examples" / "expected_wrong.yaml"
    rep = report_of(reports, cli, path)
    assert rep["status"] == "mismatch"
    assert rep["ok"] is False
    w = rep["points"][0]["gradients"]["w"]
    assert w["status"] == "mismatch"
    assert w["odd_one_out"] == "expected"
    assert w["values"]["expected"] == pytest.approx(-4.0, rel=1e-12)
    for source in THREE:
        assert w["values"][source] == pytest.approx(-28 / 3, rel=1e-9)
    b = rep["points"][0]["gradients"]["b"]
    assert b["status"] == "agree"
    assert b["values"]["expected"] == pytest.approx(-4.0, rel=1e-12)


@pytest.mark.slow
def test_expected_correct_joins_and_agrees(cli, reports):
    path = REPO / "examples" / "expected_correct.yaml"
    rep = report_of(reports, cli, path)
    assert set(THREE) <= set(rep["sources"])
    assert "expected" in rep["sources"]
    grads = rep["points"][0]["gradients"]
    assert grads["w"]["values"]["expected"] == pytest.approx(-28 / 3, rel=1e-12)
    assert grads["b"]["values"]["expected"] == pytest.approx(-4.0, rel=1e-12)
    assert all(g["status"] == "agree" for g in grads.values())


@pytest.mark.slow
def test_relu_kink(cli, reports):
    path = REPO / "examples" / "relu_kink.yaml"
    rep = report_of(reports, cli, path)
    assert rep["status"] == "kink"
    point = rep["points"][0]
    assert point["loss"] == pytest.approx(2 / 3, rel=1e-12)
    # one-sided values of the mean gradient (sample x=2 sits on relu's corner):
    #   w: left -2, right -10/3;  b: left -2/3, right -4/3
    sides = {"w": (-10 / 3, -2.0), "b": (-4 / 3, -2 / 3)}
    for name, (lo, hi) in sides.items():
        grad = point["gradients"][name]
        assert grad["status"] == "kink", name
        assert "relu" in (grad["note"] or "").lower(), grad["note"]
        # torch's convention: relu'(0) = 0, the left derivative
        assert grad["values"]["autograd"] == pytest.approx(hi, rel=1e-12), name
        for source in ("symbolic", "finite_difference"):
            v = grad["values"][source]
            assert lo - 1e-6 <= v <= hi + 1e-6, (name, source, v)


# --------------------------------------------------------------------------
# the Python API


@pytest.fixture(scope="module")
def api_reports(gc):
    out = {}
    for path in EXAMPLES:
        model = gc.load(str(path))
        out[path.stem] = gc.check(model)
    return out


@pytest.mark.parametrize("path", EXAMPLES, ids=IDS)
def test_api_verdict(path, api_reports):
    expect = expectation(path)
    report = api_reports[path.stem]
    assert report.status == expect
    # kinks only warn (exit 0), so the report is still ok
    assert report.ok == (expect in ("agree", "kink"))
    d = report.to_dict()
    assert d["status"] == expect
    assert d["ok"] is bool(report.ok)
    json.dumps(d, allow_nan=False)


@pytest.mark.slow
@pytest.mark.parametrize("path", EXAMPLES, ids=IDS)
def test_api_report_equals_cli_report(path, api_reports, cli, reports):
    """Same file, same report: the API and the command line, seeds included."""
    rep = report_of(reports, cli, path)
    d = api_reports[path.stem].to_dict()
    assert d["model"] == rep["model"]
    assert d["sources"] == rep["sources"]
    assert d["formulas"] == rep["formulas"]
    assert len(d["points"]) == len(rep["points"])
    for mine, theirs in zip(d["points"], rep["points"]):
        assert mine["params"] == theirs["params"]
        assert mine["loss"] == pytest.approx(theirs["loss"], rel=1e-12)
        for name, grad in theirs["gradients"].items():
            other = mine["gradients"][name]
            assert other["status"] == grad["status"]
            assert other["shape"] == grad["shape"]
            for source, value in grad["values"].items():
                assert flat(other["values"][source]) == pytest.approx(flat(value), rel=1e-12), (name, source)


def test_api_gradient_formula_is_sympy(gc):
    sympy = pytest.importorskip("sympy")
    model = gc.load(str(REPO / "examples" / "lesson.yaml"))
    f = model.gradient_formula("w")
    assert isinstance(f, sympy.Expr)
    by_name = {s.name: s for s in f.free_symbols}
    assert set(by_name) == {"x", "w", "y"}
    for x, w, y in [(1, 1, 2), (2, 0.5, -1), (3, -2, 6)]:
        value = f.subs({by_name["x"]: x, by_name["w"]: w, by_name["y"]: y})
        assert float(value) == pytest.approx(2 * x * (x * w - y), rel=1e-15)
