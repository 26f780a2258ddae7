"""The command line as a user runs it: output choice, colour, exit codes, cheap failures."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def run(*args: str, env: dict[str, str] | None = None, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    full_env = {k: v for k, v in os.environ.items() if k not in ("NO_COLOR", "FORCE_COLOR")}
    full_env.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "gradcheck", *args], capture_output=True, text=True, env=full_env, cwd=cwd, timeout=300
    )


def test_table_shows_three_sources_status_and_formula():
    out = run("examples/lesson.yaml")
    assert out.returncode == 0, out.stderr
    for word in ("symbolic", "autograd", "finite", "agree", "-9.33333333333333"):
        assert word in out.stdout
    assert "w*x - y" in out.stdout or "w⋅x - y" in out.stdout  # SymPy's derivative, plain or pretty
    assert "\x1b[" not in out.stdout  # not a terminal: no colour


def test_colour_only_when_asked_and_never_with_no_color():
    coloured = run("examples/lesson.yaml", env={"FORCE_COLOR": "1"})
    assert "\x1b[" in coloured.stdout
    plain = run("examples/lesson.yaml", env={"FORCE_COLOR": "1", "NO_COLOR": "1"})
    assert "\x1b[" not in plain.stdout
    assert plain.returncode == coloured.returncode == 0


def test_mismatch_exits_1_and_kink_exits_0_unless_strict():
    assert run("examples/expected_wrong.yaml").returncode == 1
    assert run("examples/relu_kink.yaml").returncode == 0
    assert run("examples/relu_kink.yaml", "--strict").returncode == 1


def test_several_files_give_a_json_list_in_order():
    out = run("examples/lesson.yaml", "examples/linear.yaml", "--json")
    assert out.returncode == 0, out.stderr
    docs = json.loads(out.stdout)
    assert [d["model"] for d in docs] == ["lesson", "linear"]


def test_flags_override_the_file():
    out = run("examples/lesson.yaml", "--json", "--points", "2", "--seed", "3", "--dtype", "float32", "--rtol", "1e-3")
    doc = json.loads(out.stdout)
    assert len(doc["points"]) == 3
    assert doc["dtype"] == "float32" and doc["rtol"] == 1e-3


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


def test_help_and_bad_input_do_not_import_torch_or_sympy(tmp_path):
    assert _modules_after(["--help"]) == (0, set())
    bad = tmp_path / "bad.yaml"
    bad.write_text("params: {w: 1.0}\nmodel: {loss: w * q}\n")
    assert _modules_after([str(bad)]) == (2, set())
    assert _modules_after(["no-such-file.yaml"]) == (2, set())
    assert _modules_after(["examples/lesson.yaml", "--no-such-flag"]) == (2, set())
