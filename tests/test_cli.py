"""The command line as a user runs it: output choice, colour, exit codes, cheap failures."""

from __future__ import annotations

import configparser
import importlib
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import gradcheck as gc
from gradcheck.cli import COMMANDS, main

ROOT = Path(__file__).resolve().parents[1]


def run(*args: str, env: dict[str, str] | None = None, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    full_env = {k: v for k, v in os.environ.items() if k not in ("NO_COLOR", "FORCE_COLOR")}
    full_env.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "gradcheck", *args], capture_output=True, text=True, env=full_env, cwd=cwd, timeout=300
    )


@pytest.mark.slow
def test_table_shows_three_sources_status_and_formula():
    out = run("examples/lesson.yaml")
    assert out.returncode == 0, out.stderr
    for word in ("symbolic", "autograd", "finite", "agree", "-9.33333333333333"):
        assert word in out.stdout
    assert "w*x - y" in out.stdout or "w⋅x - y" in out.stdout  # SymPy's derivative, plain or pretty
    assert "\x1b[" not in out.stdout  # not a terminal: no colour


@pytest.mark.slow
def test_colour_only_when_asked_and_never_with_no_color():
    coloured = run("examples/lesson.yaml", env={"FORCE_COLOR": "1"})
    assert "\x1b[" in coloured.stdout
    plain = run("examples/lesson.yaml", env={"FORCE_COLOR": "1", "NO_COLOR": "1"})
    assert "\x1b[" not in plain.stdout
    assert plain.returncode == coloured.returncode == 0


@pytest.mark.slow
def test_mismatch_exits_1_and_kink_exits_0_unless_strict():
    assert run("examples/expected_wrong.yaml").returncode == 1
    assert run("examples/relu_kink.yaml").returncode == 0
    assert run("examples/relu_kink.yaml", "--strict").returncode == 1


@pytest.mark.slow
def test_several_files_give_a_json_list_in_order():
    out = run("examples/lesson.yaml", "examples/linear.yaml", "--json")
    assert out.returncode == 0, out.stderr
    docs = json.loads(out.stdout)
    assert [d["model"] for d in docs] == ["lesson", "linear"]


@pytest.mark.slow
def test_flags_override_the_file():
    out = run("examples/lesson.yaml", "--json", "--points", "2", "--seed", "3", "--dtype", "float32", "--rtol", "1e-3")
    doc = json.loads(out.stdout)
    assert len(doc["points"]) == 3
    assert doc["dtype"] == "float32" and doc["rtol"] == 1e-3


@pytest.mark.slow
def test_one_bad_file_among_good_ones_exits_2_before_any_work(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("params: {w: 1.0}\nmodel:\n  loss: (x * w\n")
    out = run("examples/lesson.yaml", str(bad), "--json")
    assert out.returncode == 2
    assert out.stdout == ""
    assert "bad.yaml:3:" in out.stderr and "model.loss" in out.stderr
    assert "Traceback" not in out.stderr


def _modules_after(argv: list[str], cwd: Path = ROOT) -> tuple[int, set[str]]:
    code = (
        "import sys\n"
        "from gradcheck.cli import main\n"
        "try:\n"
        f"    rc = main({argv!r})\n"
        "except SystemExit as e:\n"
        "    rc = e.code\n"
        "print(rc, ' '.join(m for m in ('torch', 'sympy', 'mpmath') if m in sys.modules), file=sys.stderr)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=cwd, timeout=120)
    rc, _, mods = out.stderr.strip().splitlines()[-1].partition(" ")
    return int(rc), set(mods.split())


@pytest.mark.slow
def test_help_and_bad_input_do_not_import_torch_or_sympy(tmp_path):
    assert _modules_after(["--help"]) == (0, set())
    bad = tmp_path / "bad.yaml"
    bad.write_text("params: {w: 1.0}\nmodel: {loss: w * q}\n")
    assert _modules_after([str(bad)]) == (2, set())
    assert _modules_after(["no-such-file.yaml"]) == (2, set())
    assert _modules_after(["examples/lesson.yaml", "--no-such-flag"]) == (2, set())


# --- commands and dispatch (docs/cli.md, "Commands") -------------------------------

LINEAR_TEXT = """\
params: {w: 1.0, b: 0.0}
data: {x: [1.0, 2.0, 3.0], y: [2.0, 4.0, 6.0]}
model:
  y_pred: x * w + b
  loss: (y_pred - y)**2
"""


def _help(argv: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == 0
    return capsys.readouterr().out


def test_top_level_help_is_check_help_and_lists_every_command(capsys):
    top = _help(["--help"], capsys)
    assert top.startswith("usage: gradcheck [check] ")
    for name, module in COMMANDS.items():
        assert re.search(rf"^  {name} +{re.escape(module.SUMMARY)}$", top, re.MULTILINE), name
    assert "gradcheck ./train or gradcheck check train" in top
    assert _help(["check", "--help"], capsys) == top
    train = _help(["train", "--help"], capsys)
    assert train.startswith("usage: gradcheck train ") and "--epochs" in train and "--epochs" not in top


def test_every_command_is_one_module_with_the_same_shape():
    assert list(COMMANDS)[:2] == ["check", "train"]
    for name, module in COMMANDS.items():
        assert module.NAME == name and module.SUMMARY and callable(module.add_to) and callable(module.run)


def test_implicit_check_is_the_check_command(capsys):
    args = [str(ROOT / "examples" / "linear.yaml"), "--json", "--points", "1"]
    assert main(args) == 0
    implicit = capsys.readouterr().out
    assert main(["check", *args]) == 0
    assert capsys.readouterr().out == implicit and json.loads(implicit)["model"] == "linear"


def test_flags_build_the_same_options_as_the_api(capsys):
    path = ROOT / "examples" / "linear.yaml"
    argv = [str(path), "--json", "--points", "2", "--seed", "3", "--dtype", "float32", "--rtol", "1e-3", "--strict"]
    assert main(argv) == 0
    cli_doc = json.loads(capsys.readouterr().out)
    api_doc = gc.check(gc.load(path), points=2, seed=3, dtype="float32", rtol=1e-3, strict=True).to_dict()
    assert cli_doc == json.loads(json.dumps(api_doc))
    assert cli_doc["dtype"] == "float32" and cli_doc["rtol"] == 1e-3 and len(cli_doc["points"]) == 3


def test_a_model_file_named_like_a_command(tmp_path, monkeypatch, capsys):
    (tmp_path / "train").write_text(LINEAR_TEXT)
    monkeypatch.chdir(tmp_path)
    assert main(["./train", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["model"] == "train"
    assert main(["check", "train", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["model"] == "train"
    # the bare name is the command, which trains the file it is given
    assert main(["train", "train", "--epochs", "1", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["epochs"] == 1


def test_a_first_argument_that_is_no_command_is_a_model_file(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main(["summary", "linear.yaml"]) == 2
    err = capsys.readouterr().err
    assert err.splitlines() == [
        "gradcheck: error: summary: no such file — check the path",
        "linear.yaml: no such file — check the path",
    ]


@pytest.mark.parametrize(
    "argv, prog",
    [
        (["examples/linear.yaml", "--bogus"], "gradcheck"),
        (["check", "examples/linear.yaml", "--bogus"], "gradcheck"),
        (["train", "examples/linear.yaml", "--bogus"], "gradcheck train"),
    ],
)
def test_unknown_flags_are_named_by_their_command(argv, prog, capsys, monkeypatch):
    monkeypatch.chdir(ROOT)
    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == 2
    assert capsys.readouterr().err == f"{prog}: error: unrecognized arguments: --bogus (see {prog} --help)\n"


def test_no_arguments_asks_for_a_model_file(capsys):
    with pytest.raises(SystemExit) as exc:
        main([])
    assert exc.value.code == 2
    assert "gradcheck: error: the following arguments are required: MODEL.yaml" in capsys.readouterr().err


def test_console_script_is_the_same_main():
    config = configparser.ConfigParser()
    config.read(ROOT / "setup.cfg")
    scripts = dict(line.split(" = ") for line in config["options.entry_points"]["console_scripts"].strip().splitlines())
    module, _, attr = scripts["gradcheck"].partition(":")
    assert getattr(importlib.import_module(module), attr) is main


@pytest.mark.slow
def test_python_m_and_subcommand_help_in_a_process():
    top = run("--help")
    assert top.returncode == 0 and "train" in top.stdout and "--points" in top.stdout
    train = run("train", "--help")
    assert train.returncode == 0 and "--epochs" in train.stdout


@pytest.mark.slow
def test_a_reader_that_stops_early_gets_no_error(tmp_path):
    # `gradcheck FILE --json | head -1`: the pipe closes while gradcheck still writes (over 64 KiB of JSON).
    rng = np.random.default_rng(0)
    model = tmp_path / "wide.yaml"
    model.write_text(
        "params:\n  W: " + str(np.round(rng.normal(size=(40, 40)), 3).tolist()) + "\nmodel:\n  loss: sum(W**2)\n"
    )
    env = {k: v for k, v in os.environ.items() if k not in ("NO_COLOR", "FORCE_COLOR")}
    proc = subprocess.Popen(
        [sys.executable, "-m", "gradcheck", str(model), "--json"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
        cwd=ROOT,
    )
    assert proc.stdout is not None and proc.stderr is not None
    proc.stdout.readline()
    proc.stdout.close()
    err = proc.stderr.read().decode()
    proc.stderr.close()
    assert proc.wait(timeout=300) == 0, err
    assert err == "", err
