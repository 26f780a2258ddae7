"""Injection payloads: each is a ModelError, and none runs anything (issue 6).

Payloads that would create a marker file if any code ran are put into every
place a model file holds text (expressions, names, values, YAML tags); the
marker must not exist afterwards. A handful also go through the command line,
which must answer with one message and no traceback.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

import gradcheck as gc
from gradcheck.errors import ModelError

REPO = Path(__file__).resolve().parents[1]
MARKER = Path("/tmp") / "gradcheck-hostile-marker"  # fixed: the payload text cannot know tmp_path

TOUCH = f"__import__('os').system('touch {MARKER}')"
EXPRESSIONS = [
    TOUCH,
    f'eval("{TOUCH}")',
    f"exec('import os; os.system(\"touch {MARKER}\")')",
    f"sympify('{TOUCH}')",
    f"parse_expr('{TOUCH}')",
    f"compile('{TOUCH}', 'x', 'exec')",
    f"open('{MARKER}', 'w')",
    f"__builtins__['eval']('{TOUCH}')",
    "w.__class__.__mro__[1].__subclasses__()",
    "w.__class__",
    "().__class__.__bases__[0]",
    "w.real",
    "w.T.__dict__",
    "w.T.T.exp",
    "x.numpy()",
    "lambda: w",
    "(lambda q: q)(w)",
    "[q for q in [w]]",
    "{q: w for q in [1]}",
    "sum(q for q in [w])",
    f"f'{{{TOUCH}}}'",
    "f'{w}'",
    "b'w'",
    "import os",
    "__import__",
    "os.system",
    "w if w else w",
    "w; import os",
    "w\nimport os",
    "w := 1",
    "w == 1",
    "not w",
    "w and w",
    "w[::-1]",
    "w[0:1]",
    "w[x]",
    "w(1)",
    "sin(w)(1)",
    "getattr(w, 'T')",
    "Symbol('w')",
    "exp(w, key=1)",
    "exp(*w)",
    "exp(**w)",
    "`w`",
    "w # comment",
    "w \\\n + 1",
    "\\u0077",
    "ｗ + 1",  # fullwidth w: Python would normalise it to a plain name, we do not
    "w\x00",
    "$(touch /tmp/x)",
    "@w",
    "w @",
    "...",
    "1j * w",
    "0x10 * w",
    "w..T",
    "{}",
    "[w]",
    "print(w)",
    "globals()",
    "vars()",
    "locals()['w']",
    "breakpoint()",
    "exit()",
]

YAML_PAYLOADS = [
    f"params: !!python/object/apply:os.system ['touch {MARKER}']\nmodel: {{loss: w}}\n",
    f"params: {{w: !!python/object/apply:os.system ['touch {MARKER}']}}\nmodel: {{loss: w}}\n",
    "params: {w: !!python/name:os.system }\nmodel: {loss: w}\n",
    "params: {w: !!python/module:os }\nmodel: {loss: w}\n",
    f"params: {{w: !!python/object/new:subprocess.Popen [['touch', '{MARKER}']]}}\nmodel: {{loss: w}}\n",
    "params: {w: !!python/tuple [1, 2]}\nmodel: {loss: w}\n",
    "params: {w: !!python/object:gradcheck.model.Model {}}\nmodel: {loss: w}\n",
    f"params: {{w: 1.0}}\nmodel: {{loss: !!python/object/apply:eval ['{TOUCH}']}}\n",
    "params: {w: !!binary aGVsbG8=}\nmodel: {loss: w}\n",
    "params: {w: !!set {a: null}}\nmodel: {loss: w}\n",
    "params: {w: 1.0}\nmodel: !!omap [{loss: w}, {loss: w}]\n",
    "params: {w: !custom 1.0}\nmodel: {loss: w}\n",
    "%TAG !py! tag:yaml.org,2002:python/\n---\nparams: {w: !py!object/apply:os.system [ls]}\nmodel: {loss: w}\n",
    f"params: {{w: 1.0}}\nmodel: {{loss: w}}\nname: !!python/object/apply:os.system ['touch {MARKER}']\n",
    f"params: {{w: 1.0}}\nmodel: {{loss: w}}\n---\nparams: !!python/object/apply:os.system ['touch {MARKER}']\n",
    f"params: {{'{TOUCH}': 1.0}}\nmodel: {{loss: w}}\n",
    f"params: {{w: 1.0}}\nmodel: {{'{TOUCH}': w}}\n",
    "params: {w: 1.0}\ndata: {'__import__': [1.0]}\nmodel: {loss: w}\n",
    f"params: {{w: 1.0}}\nmodel: {{loss: w}}\noutput: '{TOUCH}'\n",
    f"params: {{w: 1.0}}\nmodel: {{loss: w}}\nexpected: {{w: '{TOUCH}'}}\n",
    f"params: {{w: 1.0}}\nmodel: {{loss: w}}\ncheck: {{dtype: '{TOUCH}'}}\n",
    f"params: {{w: 1.0}}\nmodel: {{loss: w}}\nreduction: '{TOUCH}'\n",
    f"params: {{w: 1.0}}\nmodel: {{loss: w}}\ntrain: {{mode: '{TOUCH}'}}\n",
    f"params: {{w: {{shape: [2], init: '{TOUCH}'}}}}\nmodel: {{loss: sum(w)}}\n",
    f"params: {{w: '{TOUCH}'}}\nmodel: {{loss: w}}\n",
    f"params: {{w: 1.0}}\ndata: {{x: ['{TOUCH}']}}\nmodel: {{loss: w*x}}\n",
    "params: {w: 1.0}\nmodel: {loss: w}\nagainst: os:system\n",
    "params: {w: 1.0}\nmodel: {loss: w}\ncheck: {against: 'os:system'}\n",
]


def as_model(expression: str) -> str:
    quoted = expression.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n").replace("\x00", "\\0")
    return f'params: {{w: [1.0, 2.0]}}\ndata: {{x: [1.0, 2.0]}}\nmodel:\n  loss: "{quoted}"\n'


@pytest.fixture(autouse=True)
def no_marker():
    MARKER.unlink(missing_ok=True)
    yield
    assert not MARKER.exists(), "a payload ran code"


@pytest.mark.parametrize("payload", EXPRESSIONS)
def test_expression_payload_is_rejected(payload):
    with pytest.raises(ModelError) as info:
        gc.loads(as_model(payload), path="evil.yaml")
    assert str(info.value).startswith("evil.yaml:")
    with pytest.raises(ModelError):
        gc.Model.from_dict({"params": {"w": [1.0, 2.0]}, "data": {"x": [1.0, 2.0]}, "model": {"loss": payload}})


@pytest.mark.parametrize("payload", YAML_PAYLOADS)
def test_yaml_payload_is_rejected(payload):
    with pytest.raises(ModelError, match=r"^evil\.yaml(:\d+:\d+)?: \S") as info:
        gc.loads(payload, path="evil.yaml")
    assert "\n" not in str(info.value) or "    " in str(info.value)


def test_payloads_through_check_run_nothing():
    # the nearest valid models to the payloads: the names are fine, the text is data
    model = gc.loads("params: {w: 1.0}\nmodel: {loss: w*w}\ndescription: \"__import__('os').system('x')\"\n")
    assert gc.check(model).status == "agree"


# Reviewed uses of the banned names; a new one fails the test until it is reviewed and listed.
ALLOWED = {
    # SymPy objects built by the interpreter from the IR (never text) made uniform
    ("sources/symbolic/tape.py", "sympy.sympify(arr[idx])"),
    ("sources/symbolic/tape.py", "sympy.sympify(np.asarray(env[model.loss], dtype=object).item())"),
    ("sources/symbolic/tape.py", "_reuse(sympy.sympify(p), e, t)"),
    # what sympy.lambdify does: code printed from those SymPy expressions, whose symbol
    # names are validated identifiers, compiled into one function
    ("sources/symbolic/codegen.py", 'exec(compile("\\n".join(lines), "<gradcheck symbolic tape>", "exec"), ns)'),
}


def test_no_module_evaluates_file_text():
    """No module of gradcheck passes file text to eval/exec/compile/sympify/parse_expr or imports from it.

    ``sympy.lambdify`` and the reviewed uses in :data:`ALLOWED` are fed SymPy
    expressions built by the interpreter from the IR, never file text.
    """
    banned = re.compile(
        r"(?<![.\w])(eval|exec|compile|sympify|parse_expr|S)\s*\(|\.(sympify|parse_expr)\s*\(|__import__|\bast\.|"
        r"\bimport ast\b|yaml\.(unsafe_|full_)?load\b|yaml\.(Full|Unsafe)?Loader\b|yaml\.unsafe_load|getattr\(\s*builtins"
    )
    offenders = []
    for path in sorted((REPO / "gradcheck").rglob("*.py")):
        for line in path.read_text().splitlines():
            code = line.split("  #")[0].strip()
            where = str(path.relative_to(REPO / "gradcheck"))
            if banned.search(code) and not any(f == where and snippet in code for f, snippet in ALLOWED):
                offenders.append(f"{path.relative_to(REPO)}: {code}")
    assert offenders == []
    importers = {
        (p.name, line.strip())
        for p in (REPO / "gradcheck").rglob("*.py")
        for line in p.read_text().splitlines()
        if "import_module(" in line
    }
    # only --against / against= import code named by the user, never by a model file
    assert {name for name, _line in importers} <= {"custom.py"}
    assert "yaml.SafeLoader" in (REPO / "gradcheck" / "model.py").read_text()


CLI_PAYLOADS = [
    as_model(TOUCH),
    as_model("w.__class__"),
    as_model("lambda: w"),
    YAML_PAYLOADS[0],
    YAML_PAYLOADS[2],
    as_model("w + 1/0"),
]


def test_cli_shows_no_traceback(tmp_path):
    for i, payload in enumerate(CLI_PAYLOADS):
        (tmp_path / f"evil{i}.yaml").write_text(payload)
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "gradcheck", f"evil{i}.yaml"],
            cwd=tmp_path,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(REPO), "NO_COLOR": "1"},
        )
        for i in range(len(CLI_PAYLOADS))
    ]
    for i, proc in enumerate(procs):
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 2, err
        assert out == ""
        assert "Traceback" not in err
        assert err.startswith(f"gradcheck: error: evil{i}.yaml:")
