"""The command line's contract (SPEC.md sections 4-6), tested from outside.

Runs ``python -m gradcheck`` in subprocesses: several files at once, the
reductions, random points and seeds, ``--strict``, ``--help``, and the
bad-input path (exit 2, one line on stderr naming file, entry and the unknown
name, no traceback). Expected numbers are derived by hand here.
"""

from __future__ import annotations

import concurrent.futures
import importlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
EXAMPLES = REPO / "examples"
LESSON = EXAMPLES / "lesson.yaml"
THREE = ("symbolic", "autograd", "finite_difference")

# every flag of SPEC section 4's first synopsis
FLAGS = (
    "--json",
    "--points",
    "--seed",
    "--dtype",
    "--rtol",
    "--atol",
    "--strict",
    "--against",
    "--plot",
)


def run_cli(*args: str, cwd: Path = REPO) -> subprocess.CompletedProcess:
    env = dict(os.environ, NO_COLOR="1")
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    return subprocess.run(
        [sys.executable, "-m", "gradcheck", *map(str, args)],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )


def parse(proc: subprocess.CompletedProcess):
    assert "Traceback" not in proc.stderr, proc.stderr
    try:
        return json.loads(proc.stdout)
    except json.JSONDecodeError:
        pytest.fail(
            f"--json printed no JSON (exit {proc.returncode})\n"
            f"stdout: {proc.stdout[:2000]}\nstderr: {proc.stderr[-3000:]}"
        )


def lesson_with(**changes) -> str:
    spec = yaml.safe_load(LESSON.read_text())
    spec.update(changes)
    return yaml.safe_dump(spec, sort_keys=False)


# --------------------------------------------------------------------------
# the successful runs, started together (each imports torch)


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("models")
    out = {}
    for name, text in {
        "lesson_sum": lesson_with(reduction="sum"),
        "lesson_none": lesson_with(reduction="none"),
    }.items():
        out[name] = d / f"{name}.yaml"
        out[name].write_text(text)
    return out


@pytest.fixture(scope="module")
def runs(files):
    calls = {
        "several": [EXAMPLES / "lesson.yaml", EXAMPLES / "linear.yaml", EXAMPLES / "expected_wrong.yaml", "--json"],
        "sum": [files["lesson_sum"], "--json"],
        "none": [files["lesson_none"], "--json"],
        "points_a": [LESSON, "--points", "2", "--seed", "7", "--json"],
        "points_b": [LESSON, "--points", "2", "--seed", "7", "--json"],
        "kink_strict": [EXAMPLES / "relu_kink.yaml", "--strict", "--json"],
        "table": [LESSON],
        "dtype32": [LESSON, "--dtype", "float32", "--json"],
    }
    workers = max(1, min(4, os.cpu_count() or 1))
    with concurrent.futures.ThreadPoolExecutor(workers) as pool:
        futures = {k: pool.submit(run_cli, *args) for k, args in calls.items()}
        return {k: f.result() for k, f in futures.items()}


@pytest.mark.slow
def test_several_files_give_a_list(runs):
    proc = runs["several"]
    reports = parse(proc)
    assert isinstance(reports, list)
    assert [r["model"] for r in reports] == ["lesson", "linear", "expected_wrong"]
    assert [r["status"] for r in reports] == ["agree", "agree", "mismatch"]
    assert [r["ok"] for r in reports] == [True, True, False]
    # any mismatch makes the whole run exit 1
    assert proc.returncode == 1


@pytest.mark.slow
def test_reduction_sum(runs):
    proc = runs["sum"]
    rep = parse(proc)
    assert proc.returncode == 0
    point = rep["points"][0]
    # sum over samples of (x*w - y)**2 = 1 + 4 + 9; of 2*x*(x*w - y) = -2 - 8 - 18
    assert point["loss"] == pytest.approx(14.0, rel=1e-12)
    grad = point["gradients"]["w"]
    assert grad["shape"] == []
    assert grad["values"]["symbolic"] == -28.0
    assert grad["values"]["autograd"] == pytest.approx(-28.0, rel=1e-12)
    assert grad["values"]["finite_difference"] == pytest.approx(-28.0, rel=1e-9)


@pytest.mark.slow
def test_reduction_none(runs):
    proc = runs["none"]
    rep = parse(proc)
    assert proc.returncode == 0
    assert rep["status"] == "agree"
    grad = rep["points"][0]["gradients"]["w"]
    # a leading axis of samples: per-sample 2*x*(x*w - y) = -2*x**2 at w = 1
    assert grad["shape"] == [3]
    per_sample = [2 * x * (x * 1.0 - y) for x, y in [(1.0, 2.0), (2.0, 4.0), (3.0, 6.0)]]
    assert per_sample == [-2.0, -8.0, -18.0]
    for source in THREE:
        assert grad["values"][source] == pytest.approx(per_sample, rel=1e-9), source
    assert grad["values"]["symbolic"] == per_sample


@pytest.mark.slow
def test_points_and_seed(runs):
    a, b = parse(runs["points_a"]), parse(runs["points_b"])
    assert runs["points_a"].returncode == 0
    # points[0] is the file's values; --points 2 adds two random points
    assert len(a["points"]) == 3
    assert a["points"][0]["params"] == {"w": 1.0}
    assert a["points"][1]["params"] != a["points"][2]["params"]
    # every random choice is seeded: same file, same flags, same report
    assert a == b
    # at any w: dL/dw = mean(2*x*(x*w - y)) = 2*(w - 2)*mean(x**2) = (28/3)*(w - 2)
    for point in a["points"]:
        w = point["params"]["w"]
        exact = 28 / 3 * (w - 2)
        for source in THREE:
            assert point["gradients"]["w"]["values"][source] == pytest.approx(exact, rel=1e-8, abs=1e-10), (w, source)


@pytest.mark.slow
def test_strict_makes_a_kink_fail(runs):
    proc = runs["kink_strict"]
    rep = parse(proc)
    assert rep["status"] == "kink"
    assert proc.returncode == 1
    assert rep["ok"] is False


@pytest.mark.slow
def test_dtype_flag(runs):
    proc = runs["dtype32"]
    rep = parse(proc)
    assert proc.returncode == 0
    assert rep["status"] == "agree"
    for source in THREE:
        value = rep["points"][0]["gradients"]["w"]["values"][source]
        assert value == pytest.approx(-28 / 3, rel=1e-5), source


@pytest.mark.slow
def test_default_output_is_a_plain_table(runs):
    proc = runs["table"]
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr
    out = proc.stdout
    assert "\x1b[" not in out, "no colour off a terminal / with NO_COLOR"
    assert "-9.333" in out  # -28/3
    assert "agree" in out.lower()
    for source in ("symbolic", "autograd"):
        assert source in out.lower()


# --------------------------------------------------------------------------
# --help


@pytest.fixture(scope="module")
def help_run():
    return run_cli("--help")


@pytest.mark.slow
def test_help_exits_0(help_run):
    assert help_run.returncode == 0, help_run.stderr
    assert "Traceback" not in help_run.stderr


@pytest.mark.slow
@pytest.mark.parametrize("flag", FLAGS)
def test_help_documents_flag(help_run, flag):
    assert flag in help_run.stdout


# --------------------------------------------------------------------------
# unusable input: exit 2, one line on stderr, no traceback


def assert_usage_error(proc: subprocess.CompletedProcess, *must_mention: str) -> str:
    assert proc.returncode == 2, (proc.returncode, proc.stdout, proc.stderr)
    assert "Traceback" not in proc.stderr, proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    # one message line; it may be followed by indented context (the offending
    # source line and a caret under the position), but by nothing else
    head = [line for line in lines if not line[:1].isspace()]
    assert len(head) == 1 and lines[0] == head[0], f"expected one message line on stderr, got:\n{proc.stderr}"
    message = lines[0]
    for text in must_mention:
        assert text in message, (text, message)
    return message


@pytest.mark.slow
def test_missing_file(tmp_path):
    missing = tmp_path / "no_such_model.yaml"
    proc = run_cli(missing, "--json")
    assert_usage_error(proc, "no_such_model.yaml")


@pytest.mark.slow
def test_bad_yaml(tmp_path):
    bad = tmp_path / "broken.yaml"
    bad.write_text("params:\n  w: [1.0, 2.0\nmodel:\n  loss: w**2\n")
    proc = run_cli(bad, "--json")
    assert_usage_error(proc, "broken.yaml")


TYPO = """\
params:
  w1: 1.0
  w2: 1.0
  b: 1.0
data:
  x: [1.0, 2.0, 3.0]
  y: [2.0, 4.0, 6.0]
model:
  y_pred: w_1*x**2 + w2*x + b
  loss: (y_pred - y)**2
"""


@pytest.mark.slow
def test_unknown_name_names_file_entry_name_and_suggests(tmp_path):
    path = tmp_path / "typo.yaml"
    path.write_text(TYPO)
    proc = run_cli(path, "--json")
    message = assert_usage_error(proc, "typo.yaml", "y_pred", "w_1")
    # a close match is suggested: w1 (the message without the typo still says w1)
    assert "w1" in message.replace("w_1", "").replace(str(tmp_path), "")


@pytest.mark.slow
def test_shape_error(tmp_path):
    path = tmp_path / "shapes.yaml"
    path.write_text(
        "params:\n"
        "  W: [[1.0, 2.0], [3.0, 4.0]]\n"
        "data:\n"
        "  x: [[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]]\n"
        "  y: [1.0, 2.0]\n"
        "model:\n"
        "  y_pred: sum(W @ x)\n"
        "  loss: (y_pred - y)**2\n"
    )
    proc = run_cli(path, "--json")
    assert_usage_error(proc, "shapes.yaml", "y_pred")


@pytest.mark.slow
def test_loss_must_be_scalar_per_sample(tmp_path):
    path = tmp_path / "vector_loss.yaml"
    path.write_text(
        "params:\n"
        "  w: [1.0, 1.0]\n"
        "data:\n"
        "  x: [[1.0, 2.0], [3.0, 4.0]]\n"
        "  y: [1.0, 2.0]\n"
        "model:\n"
        "  loss: (x*w - y)**2\n"
    )
    proc = run_cli(path, "--json")
    assert_usage_error(proc, "vector_loss.yaml", "loss")


@pytest.mark.slow
def test_unequal_sample_counts(tmp_path):
    path = tmp_path / "counts.yaml"
    path.write_text(
        "params:\n  w: 1.0\n"
        "data:\n  x: [1.0, 2.0, 3.0]\n  y: [2.0, 4.0]\n"
        "model:\n  y_pred: x * w\n  loss: (y_pred - y)**2\n"
    )
    proc = run_cli(path, "--json")
    assert_usage_error(proc, "counts.yaml")


@pytest.mark.slow
def test_unknown_flag():
    proc = run_cli(LESSON, "--frobnicate")
    assert_usage_error(proc, "--frobnicate")


@pytest.mark.slow
def test_yaml_python_tag_does_not_run(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "hostile.yaml"
    path.write_text(f"params: !!python/object/apply:os.system ['touch {marker}']\nmodel:\n  loss: w**2\n")
    proc = run_cli(path, "--json")
    assert_usage_error(proc, "hostile.yaml")
    assert not marker.exists()


@pytest.mark.slow
def test_help_and_bad_input_do_not_import_torch(tmp_path):
    """Issue 2, item 6 (beyond SPEC): instant answers, torch never imported."""
    path = tmp_path / "typo.yaml"
    path.write_text(TYPO)
    code = (
        "import runpy, sys\n"
        "sys.modules['torch'] = None  # any `import torch` now raises ImportError\n"
        "sys.argv = ['gradcheck', *sys.argv[1:]]\n"
        "runpy.run_module('gradcheck', run_name='__main__', alter_sys=True)\n"
    )
    env = dict(os.environ, NO_COLOR="1")
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    for args, rc in ((["--help"], 0), ([str(path), "--json"], 2)):
        proc = subprocess.run(
            [sys.executable, "-c", code, *args],
            cwd=REPO,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert proc.returncode == rc, (args, proc.stderr)
        assert "Traceback" not in proc.stderr, proc.stderr


# --------------------------------------------------------------------------
# the same errors through the API: gc.ModelError, same message


@pytest.fixture(scope="module")
def gc():
    if str(REPO) not in sys.path:
        sys.path.insert(0, str(REPO))
    return importlib.import_module("gradcheck")


def test_api_unknown_name_raises_model_error(gc, tmp_path):
    path = tmp_path / "typo.yaml"
    path.write_text(TYPO)
    with pytest.raises(gc.ModelError, match=r"w_1") as info:
        gc.load(str(path))
    message = str(info.value)
    assert "typo.yaml" in message and "y_pred" in message
    assert "w1" in message.replace("w_1", "").replace(str(tmp_path), "")


def test_api_bad_yaml_raises_model_error(gc, tmp_path):
    bad = tmp_path / "broken.yaml"
    bad.write_text("params:\n  w: [1.0, 2.0\nmodel:\n  loss: w**2\n")
    with pytest.raises(gc.ModelError, match=r"broken\.yaml"):
        gc.load(str(bad))


def test_api_check_at_other_point(gc):
    # at w = 0.5: dL/dw = mean(2*x*(x*w - y)) = mean(2*x*(-1.5*x)) = -3*mean(x**2) = -14
    report = gc.check(gc.load(str(LESSON)), at={"w": 0.5})
    d = report.to_dict()
    assert d["points"][0]["params"] == {"w": 0.5}
    values = d["points"][0]["gradients"]["w"]["values"]
    assert values["symbolic"] == -14.0
    assert values["autograd"] == pytest.approx(-14.0, rel=1e-12)
    assert values["finite_difference"] == pytest.approx(-14.0, rel=1e-9)
    # loss = mean((x*w - y)**2) = mean((1.5*x)**2) = 2.25 * 14/3 = 10.5
    assert d["points"][0]["loss"] == pytest.approx(10.5, rel=1e-12)
    assert report.ok
