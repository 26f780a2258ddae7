"""``--against MODULE:CALLABLE`` and ``check(..., against=...)``: user code joins the comparison.

The fixtures in ``tests/fixtures/against`` are what a user would write: a
model file ``cube.yaml`` and a module ``mymodule.py`` with custom
``torch.autograd.Function``s, one with a right backward and one with a
deliberately wrong one. The command line runs in a subprocess with that
folder as its working directory, as a user would run it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import gradcheck as gc
from gradcheck.custom import import_callable

HERE = Path(__file__).resolve().parent
FIXTURES = HERE / "fixtures" / "against"
REPO = HERE.parent


def run(*args: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, NO_COLOR="1")
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    return subprocess.run(
        [sys.executable, "-m", "gradcheck", *args],
        cwd=FIXTURES,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


@pytest.mark.slow
def test_wrong_cube_is_the_odd_one_out_on_the_command_line():
    out = run("cube.yaml", "--against", "mymodule:wrong_cube")
    assert out.returncode == 1, out.stderr
    assert "mismatch" in out.stdout
    # the note names the odd one out in full (the status column may abbreviate a long name)
    assert "note: w: mymodule:wrong_cube = -290.7265625 is 145.3632812 from the exact -436.0898438" in out.stdout
    assert "autograd, finite_difference agree with" in out.stdout
    assert out.stderr == ""


@pytest.mark.slow
def test_wrong_cube_in_the_json_report():
    out = run("cube.yaml", "--against", "mymodule:wrong_cube", "--json")
    assert out.returncode == 1, out.stderr
    doc = json.loads(out.stdout)
    assert doc["status"] == "mismatch" and doc["ok"] is False
    assert doc["sources"] == ["symbolic", "autograd", "finite_difference", "mymodule:wrong_cube"]
    for g in doc["points"][0]["gradients"].values():
        assert g["status"] == "mismatch"
        assert g["odd_one_out"] == "mymodule:wrong_cube"
        # the wrong backward is 2u**2 instead of 3u**2: two thirds of the exact value
        assert g["values"]["mymodule:wrong_cube"] == pytest.approx(g["values"]["symbolic"] * 2 / 3, rel=1e-12)


@pytest.mark.slow
def test_right_cube_agrees_and_repeated_against_all_join():
    out = run("cube.yaml", "--against", "mymodule:cube", "--against", "mymodule:wrong_cube", "--json")
    assert out.returncode == 1
    doc = json.loads(out.stdout)
    assert doc["sources"][-2:] == ["mymodule:cube", "mymodule:wrong_cube"]
    w = doc["points"][0]["gradients"]["w"]
    assert w["odd_one_out"] == "mymodule:wrong_cube"
    assert w["values"]["mymodule:cube"] == pytest.approx(w["values"]["symbolic"], rel=1e-12)
    assert run("cube.yaml", "--against", "mymodule:cube").returncode == 0


@pytest.mark.slow
def test_against_at_random_points_too():
    out = run("cube.yaml", "--against", "mymodule:cube", "--points", "3", "--json")
    assert out.returncode == 0, out.stdout
    assert len(json.loads(out.stdout)["points"]) == 4


@pytest.mark.slow
@pytest.mark.parametrize(
    "spec, message",
    [
        ("mymodule", r"--against 'mymodule' is not of the form MODULE:CALLABLE"),
        ("nosuchmodule:f", r"cannot import 'nosuchmodule'"),
        ("broken_module:f", r"cannot import 'broken_module': this module is broken on purpose"),
        ("mymodule:nosuch", r"'mymodule' has no attribute 'nosuch'"),
        ("mymodule:wrong_cub", r"has no attribute 'wrong_cub' — did you mean 'wrong_cube'\?"),
        ("mymodule:not_callable", r"--against 'mymodule:not_callable' is not callable"),
        ("mymodule:raises", r"mymodule:raises raised RuntimeError: boom from the user's code"),
        ("mymodule:one_loss", r"mymodule:one_loss returned losses of shape \[\], but the model has 3 sample"),
    ],
)
def test_bad_against_exits_2_with_one_line(spec, message):
    import re

    out = run("cube.yaml", "--against", spec)
    assert out.returncode == 2, (out.stdout, out.stderr)
    assert "Traceback" not in out.stderr
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1, out.stderr
    assert re.search(message, lines[0]), lines[0]
    assert out.stdout == ""


def test_import_callable_is_the_library_form(monkeypatch):
    monkeypatch.chdir(FIXTURES)
    monkeypatch.syspath_prepend(str(FIXTURES))
    fn = import_callable("mymodule:wrong_cube")
    assert callable(fn) and fn.__name__ == "wrong_cube"
    assert import_callable("mymodule:WrongCube.apply")  # dotted attributes
    with pytest.raises(gc.ModelError, match="not of the form"):
        import_callable("mymodule:")


def test_a_model_file_cannot_name_code():
    with pytest.raises(gc.ModelError, match="strings are not allowed"):
        gc.loads("params: {w: 1.0}\nmodel:\n  loss: __import__('os')\n")
    with pytest.raises(gc.ModelError, match="unknown section 'against'"):
        gc.loads("params: {w: 1.0}\nagainst: mymodule:cube\nmodel:\n  loss: w\n")


def test_api_against_with_the_same_module(monkeypatch):
    monkeypatch.syspath_prepend(str(FIXTURES))
    import mymodule  # type: ignore[import-not-found]

    model = gc.load(FIXTURES / "cube.yaml")
    report = gc.check(model, against={"cube": mymodule.cube, "wrong": mymodule.wrong_cube}, points=2, seed=5)
    assert report.status == "mismatch"
    for point in report.to_dict()["points"]:
        for g in point["gradients"].values():
            assert g["odd_one_out"] == "wrong"
            assert g["values"]["cube"] == pytest.approx(g["values"]["symbolic"], rel=1e-9, abs=1e-12)
