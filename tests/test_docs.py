"""The docs cannot drift from the code: every command they show is run here.

Conventions for ``docs/*.md`` (written down in ``docs/cli.md``):

* In a ```` ```console ```` block, a line ``$ gradcheck ...`` or
  ``$ python -m gradcheck ...`` is a command; the lines after it, up to the
  next ``$`` line or the end of the block, are its output (stdout, then
  stderr). The shown output must match what the command prints, line by
  line (trailing spaces ignored); a line ``...`` stands for any number of
  lines. A block that shows no output only checks the exit status.
* The command must exit 0, unless the next command in the block is
  ``$ echo $?`` followed by the expected status.
* Commands run from a scratch copy of the repository (so ``--plot``
  writes no files into the checkout), with ``NO_COLOR=1`` and off a
  terminal.
* A fenced block directly after ``<!-- file: PATH -->`` must equal that file,
  and ``$$ ... $$`` directly after ``<!-- latex: MODEL.yaml PARAM -->`` must be
  ``sympy.latex`` of the model's derivative formula.
* Every image a doc links to exists and is a PNG.
"""

from __future__ import annotations

import concurrent.futures
import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
DOCS = sorted((REPO / "docs").glob("*.md")) + [REPO / "README.md"]
TIMEOUT = 900


@dataclass
class Command:
    doc: str
    line: int
    text: str
    output: list[str]
    status: int

    @property
    def id(self) -> str:
        return f"{self.doc}:{self.line}"


def _commands(path: Path) -> list[Command]:
    out: list[Command] = []
    lines = path.read_text(encoding="utf-8").splitlines()
    i = 0
    while i < len(lines):
        if lines[i].strip().startswith("```console"):
            j = i + 1
            block: list[tuple[int, str]] = []
            while j < len(lines) and not lines[j].strip().startswith("```"):
                block.append((j + 1, lines[j]))
                j += 1
            out.extend(_block_commands(path.name, block))
            i = j
        i += 1
    return out


def _block_commands(doc: str, block: list[tuple[int, str]]) -> list[Command]:
    found: list[Command] = []
    current: Command | None = None
    k = 0
    while k < len(block):
        lineno, text = block[k]
        if text.startswith("$ "):
            cmd = text[2:].strip()
            if cmd == "echo $?" and current is not None:
                status = block[k + 1][1].strip() if k + 1 < len(block) else ""
                assert status.isdigit(), f"{doc}:{lineno}: `$ echo $?` must be followed by the status"
                current.status = int(status)
                current = None
                k += 2
                continue
            current = None
            if re.match(r"(gradcheck|python -m gradcheck)(\s|$)", cmd):
                current = Command(doc, lineno, cmd, [], 0)
                found.append(current)
        elif current is not None:
            current.output.append(text)
        k += 1
    return found


COMMANDS = [c for path in DOCS for c in _commands(path)]


def _matches(shown: list[str], actual: list[str]) -> bool:
    """Line-by-line match where a ``...`` line in ``shown`` matches any number of lines."""
    shown = [s.rstrip() for s in shown]
    actual = [a.rstrip() for a in actual]
    while shown and not shown[-1]:
        shown.pop()
    while actual and not actual[-1]:
        actual.pop()

    def go(i: int, j: int) -> bool:
        if i == len(shown):
            return j == len(actual)
        if shown[i].strip() == "...":
            return any(go(i + 1, k) for k in range(j, len(actual) + 1))
        return j < len(actual) and shown[i] == actual[j] and go(i + 1, j + 1)

    return go(0, 0)


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    """Run every command once, in parallel, in a scratch copy of the repository."""
    root = tmp_path_factory.mktemp("repo")
    shutil.copytree(
        REPO,
        root,
        dirs_exist_ok=True,
        ignore=shutil.ignore_patterns(".*", "__pycache__", "*.egg-info", "build", "dist"),
    )
    env = dict(os.environ, NO_COLOR="1")
    env.pop("COLUMNS", None)
    bindir = os.path.dirname(sys.executable)
    env["PATH"] = bindir + os.pathsep + env.get("PATH", "")
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))

    def run(cmd: Command) -> subprocess.CompletedProcess:
        text = cmd.text
        if text.startswith("gradcheck"):
            text = f'"{sys.executable}" -m {text}'  # the console script, without relying on PATH
        elif text.startswith("python "):
            text = f'"{sys.executable}" {text[len("python ") :]}'
        return subprocess.run(["bash", "-c", text], cwd=root, env=env, capture_output=True, text=True, timeout=TIMEOUT)

    workers = min(8, os.cpu_count() or 2)
    with concurrent.futures.ThreadPoolExecutor(workers) as pool:
        done = dict(zip([c.id for c in COMMANDS], pool.map(run, COMMANDS), strict=True))
    return done


def test_the_docs_show_commands():
    assert COMMANDS, "no `$ gradcheck ...` commands found in docs/*.md"
    assert {"tutorial.md", "cli.md"} <= {c.doc for c in COMMANDS}


@pytest.mark.slow
@pytest.mark.parametrize("cmd", COMMANDS, ids=[c.id for c in COMMANDS])
def test_command(cmd, results):
    proc = results[cmd.id]
    where = f"{cmd.id}: $ {cmd.text}"
    assert "Traceback" not in proc.stderr, f"{where}\n{proc.stderr}"
    assert proc.returncode == cmd.status, f"{where}\nexit {proc.returncode}, docs say {cmd.status}\n{proc.stderr}"
    if cmd.output:
        actual = proc.stdout.splitlines() + proc.stderr.splitlines()
        assert _matches(cmd.output, actual), (
            f"{where}\n--- the docs show:\n" + "\n".join(cmd.output) + "\n--- it prints:\n" + "\n".join(actual)
        )


def _marked(marker: str) -> list[tuple[str, int, str, str]]:
    """``(doc, line, argument, the block after the marker)`` for every ``<!-- marker: argument -->``."""
    found = []
    for path in DOCS:
        lines = path.read_text(encoding="utf-8").splitlines()
        for i, line in enumerate(lines):
            m = re.fullmatch(rf"\s*<!--\s*{marker}:\s*(.+?)\s*-->\s*", line)
            if not m:
                continue
            j = i + 1
            while j < len(lines) and not lines[j].strip():
                j += 1
            fence = lines[j].strip()[:3] if j < len(lines) else ""
            k = j + 1
            while k < len(lines) and not lines[k].strip().startswith(fence):
                k += 1
            found.append((path.name, i + 1, m.group(1), "\n".join(lines[j + 1 : k])))
    return found


FILES = _marked("file")
LATEX = _marked("latex")


@pytest.mark.parametrize(("doc", "line", "arg", "body"), FILES, ids=[f"{d}:{n}" for d, n, _, _ in FILES])
def test_shown_files_are_the_real_files(doc, line, arg, body):
    real = (REPO / arg).read_text(encoding="utf-8")
    assert body.strip() == real.strip(), f"{doc}:{line}: the block differs from {arg}"


@pytest.mark.parametrize(("doc", "line", "arg", "body"), LATEX, ids=[f"{d}:{n}" for d, n, _, _ in LATEX])
def test_latex_formulas_are_sympys(doc, line, arg, body):
    import sympy

    import gradcheck as gc

    path, name = arg.split()
    formula = sympy.latex(gc.load(REPO / path).gradient_formula(name))
    assert formula in body, f"{doc}:{line}: expected {formula!r}"


def test_images_exist_and_are_pngs():
    seen = 0
    for path in DOCS:
        for target in re.findall(r"!\[[^\]]*\]\(([^)\s]+)\)", path.read_text(encoding="utf-8")):
            if "://" in target:
                continue
            image = (path.parent / target).resolve()
            assert image.is_file(), f"{path.name}: {target} does not exist"
            assert image.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", f"{path.name}: {target} is not a PNG"
            seen += 1
    assert seen >= 3  # the tutorial's figures


def test_matching_rule():
    assert _matches(["a", "...", "d"], ["a", "b", "c", "d"])
    assert _matches(["a  ", ""], ["a"])
    assert not _matches(["a", "d"], ["a", "b", "d"])
    assert not _matches(["a"], ["a", "b"])
