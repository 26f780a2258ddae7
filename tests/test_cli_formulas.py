"""``gradcheck formulas``: per param the derivative formula, as text, as an ``expected:`` block, as LaTeX.

The round trip is the test of the formulas themselves: pasted into a copy of
each example as ``expected``, they agree with the three sources.
"""

from __future__ import annotations

import io
import textwrap
from pathlib import Path

import pytest
import sympy
import yaml

import gradcheck as gc
from gradcheck.cli import main
from gradcheck.cli.formulas import expected_block

REPO = Path(__file__).resolve().parents[1]
EXAMPLES = sorted(REPO.glob("examples/*.yaml"))
ZOO = sorted(REPO.glob("examples/zoo/*.yaml"))


def formulas(capsys: pytest.CaptureFixture[str], *argv: str) -> str:
    assert main(["formulas", *argv]) == 0
    return capsys.readouterr().out


def test_lesson_formula_is_the_hand_derivative(capsys):
    out = formulas(capsys, str(REPO / "examples" / "lesson.yaml"))
    name, text = out.strip().split(": ", 1)
    assert name == "w"
    x, w, y = sympy.symbols("x w y")
    # d/dw (x*w - y)**2 = 2*x*(x*w - y), by hand
    assert sympy.simplify(sympy.sympify(text.replace("y_pred", "(x*w)")) - 2 * x * (x * w - y)) == 0


def test_mlp_formulas_are_tensor_forms_in_the_params_shapes(capsys):
    path = str(REPO / "examples" / "mlp.yaml")
    lines = dict(line.split(": ", 1) for line in formulas(capsys, path).strip().splitlines())
    model = gc.load(path)
    assert list(lines) == list(model.params)
    assert lines["W1"].startswith("outer(")
    assert all(len(text) < 120 for text in lines.values())
    for name, text in lines.items():  # each reads as an `expected` of its param's shape
        assert gc.loads(_with_expected(path, {name: text})).expected[name].shape == model.shape_of(name)


def _with_expected(path: str | Path, formulas: dict[str, str]) -> str:
    """The model file's text with ``formulas`` as its ``expected`` block (an old block dropped)."""
    spec = yaml.safe_load(Path(path).read_text())
    spec.pop("expected", None)
    return yaml.safe_dump(spec, sort_keys=False) + expected_block(formulas)


def _status_without_expected(path: Path) -> str:
    spec = yaml.safe_load(path.read_text())
    spec.pop("expected", None)
    return gc.check(gc.Model.from_dict(spec, name=path.stem)).status


def _round_trip(path: Path, capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    if main(["formulas", str(path), "--expected"]) == 2:
        err = capsys.readouterr().err
        if "no tensor-form rule" in err:  # an op whose vjp rule is still to be written (conv, pooling)
            pytest.skip(err.splitlines()[0])
        raise AssertionError(err)
    block = capsys.readouterr().out
    assert yaml.safe_load(block)["expected"].keys() == gc.load(str(path)).params.keys()
    text = path.read_text()
    if "expected" in yaml.safe_load(text):
        copy = _with_expected(path, yaml.safe_load(block)["expected"])
    else:
        copy = text.rstrip("\n") + "\n" + block  # pasted at the end of the file, as a user would
    (tmp_path / path.name).write_text(copy)
    report = gc.check(gc.load(str(tmp_path / path.name)))
    assert "expected" in report.sources
    for point in report.points:
        for g in point.gradients.values():
            assert g.odd_one_out != "expected", (g.name, g.note)
    assert report.status == _status_without_expected(path)


@pytest.mark.parametrize("path", EXAMPLES, ids=[p.stem for p in EXAMPLES])
def test_expected_block_round_trip_agrees(path, capsys, tmp_path):
    _round_trip(path, capsys, tmp_path)


@pytest.mark.slow
@pytest.mark.parametrize("path", ZOO, ids=[str(p.relative_to(REPO / "examples")) for p in ZOO])
def test_expected_block_round_trip_agrees_on_the_zoo(path, capsys, tmp_path):
    _round_trip(path, capsys, tmp_path)


def test_expected_block_quotes_what_yaml_would_misread():
    texts = {"w": "-1", "on": "2", "b": "x # y", "c": "2*x*(w*x - y)", "d": "[x]"}
    block = expected_block(texts)
    assert yaml.safe_load(block) == {"expected": texts}
    assert "  c: 2*x*(w*x - y)\n" in block  # plain where plain reads back


def test_latex_lines_render(capsys):
    from matplotlib import mathtext

    path = str(REPO / "examples" / "mlp.yaml")
    lines = formulas(capsys, path, "--latex").strip().splitlines()
    assert len(lines) == 4
    assert lines[0].startswith(r"\frac{\partial \ell}{\partial \mathbf{W}_{1}} = ")
    assert r"\odot" in lines[0] and r"\mathbf{x}^{\top}" in lines[0]
    for line in lines:
        mathtext.math_to_image(f"${line}$", io.BytesIO(), format="png")


def test_help_explains_the_flags(capsys):
    with pytest.raises(SystemExit) as done:
        main(["formulas", "--help"])
    assert done.value.code == 0
    out = capsys.readouterr().out
    for word in ("--expected", "--latex", "--torch", "expected:", "model language"):
        assert word in out


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        ([], "gradcheck formulas: error: give one MODEL.yaml or --torch MODULE:FACTORY"),
        (["a.yaml", "--torch", "m:f"], "gradcheck formulas: error: give one MODEL.yaml or --torch MODULE:FACTORY"),
        (["a.yaml", "--latex", "--expected"], "gradcheck formulas: error: argument --expected: not allowed with"),
        (["nope.yaml"], "gradcheck: error: nope.yaml: no such file"),
    ],
)
def test_bad_input_exits_2_with_one_line(argv, message, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "a.yaml").write_text("params: {w: 1.0}\nmodel: {loss: w**2}\n")
    with pytest.raises(SystemExit) as done:
        code = main(["formulas", *argv])
        raise SystemExit(code)
    assert done.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith(message), err
    assert "Traceback" not in err


def test_bad_expression_names_file_entry_and_position(capsys, tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("params: {w: 1.0}\nmodel: {loss: w**2 +* 3}\n")
    assert main(["formulas", str(bad)]) == 2
    err = capsys.readouterr().err
    assert "bad.yaml" in err and "loss" in err and "^" in err


FACTORY = textwrap.dedent(
    """
    import torch

    def make():
        W = torch.tensor([[0.5, -0.25], [0.75, 1.0], [-0.5, 0.25]], dtype=torch.float64)
        b = torch.tensor([0.1, -0.2, 0.3], dtype=torch.float64)
        x = torch.tensor([[1.0, 2.0], [-1.0, 0.5]], dtype=torch.float64)
        y = torch.tensor([0.5, -0.5], dtype=torch.float64)

        def loss(p, s):
            return (torch.tanh(p["W"] @ s["x"] + p["b"]).sum() - s["y"]) ** 2

        return loss, {"W": W, "b": b}, {"x": x, "y": y}
    """
)


def test_traced_model_formulas_round_trip(capsys, tmp_path, monkeypatch):
    (tmp_path / "tracednet.py").write_text(FACTORY)
    monkeypatch.syspath_prepend(str(tmp_path))
    lines = dict(line.split(": ", 1) for line in formulas(capsys, "--torch", "tracednet:make").strip().splitlines())
    assert set(lines) == {"W", "b"}
    assert lines["W"].startswith("outer(")
    block = formulas(capsys, "--torch", "tracednet:make", "--expected")
    import tracednet  # type: ignore[import-not-found]

    fn, params, data = tracednet.make()
    model = gc.from_torch(fn, params=params, data=data)
    assert {n: model.gradient_expression(n) for n in model.params} == lines
    copy = gc.loads(model.to_yaml().rstrip("\n") + "\n" + block)
    report = gc.check(copy)
    assert report.status == "agree"
    assert "expected" in report.sources
