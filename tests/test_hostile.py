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
    with pytest.raises(ModelError, match=r"^evil\.yaml:\d+:\d+: model\.loss: \S"):
        gc.loads(as_model(payload), path="evil.yaml")
    with pytest.raises(ModelError, match=r"^<model>: model\.loss: \S"):
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
    assert "class Loader(yaml.SafeLoader)" in (REPO / "gradcheck" / "yamlfile.py").read_text()


CLI_PAYLOADS = [
    as_model(TOUCH),
    as_model("w.__class__"),
    as_model("lambda: w"),
    YAML_PAYLOADS[0],
    YAML_PAYLOADS[2],
    as_model("w + 1/0"),
    as_model("(w - 2)**99999999999999999999"),  # issue 9: was OverflowError: int too big to convert
]


@pytest.mark.slow
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


# --- huge numbers: a ModelError or a report, never an OverflowError (issue 9, fix 4) ----------

FUZZED = """\
params: {w: 1.0}
data: {x: [1.0, 2.0], y: [2.0, 3.0]}
model:
  y_pred: x * w
  loss: (y_pred - y)**99999999999999999999
"""


def test_huge_integer_exponent_is_a_model_error():
    with pytest.raises(
        ModelError,
        match=r"^f\.yaml:5:23: model\.loss: integer 99999999999999999999 is larger than 2\*\*53, beyond which float64 "
        r"cannot hold whole numbers exactly — write it as a float \(1e\+20\)",
    ):
        gc.loads(FUZZED, path="f.yaml")


@pytest.mark.parametrize(
    ("expression", "pattern"),
    [
        ("w + 99999999999999999999999", r"model\.loss: integer 99999999999999999999999 is larger than 2\*\*53"),
        ("w * 2**99999999999999999999", r"integer 99999999999999999999 is larger than 2\*\*53"),
        ("w**-99999999999999999999", r"integer 99999999999999999999 is larger than 2\*\*53"),
        ("w + 9007199254740993", r"integer 9007199254740993 is larger than 2\*\*53"),
        ("w * 2**-99999999999999", r"constant '2\*\*-99999999999999' is too large to compute exactly"),
        ("w * 0.5**99999999999999", r"constant '0\.5\*\*99999999999999' is too large to compute exactly"),
        ("w * 10**400", r"constant '10\*\*400' is not a finite float64 number \(inf\)"),
        ("w * 1" + "0" * 400, r"number 10+ is out of range — numbers must be finite"),
    ],
)
def test_huge_numbers_in_expressions(expression, pattern):
    with pytest.raises(ModelError, match=pattern):
        gc.loads(f"params: {{w: 1.0}}\nmodel:\n  loss: {expression}\n")


def test_huge_integer_in_expected_is_a_model_error():
    text = "params: {w: 1.0}\nmodel: {loss: w**2}\nexpected: {w: 2*w*99999999999999999999}\n"
    with pytest.raises(ModelError, match=r"expected\.w: integer 99999999999999999999 is larger than 2\*\*53"):
        gc.loads(text)


def test_integers_up_to_2_53_and_huge_float_exponents_give_reports():
    gc.loads("params: {w: 1.0}\nmodel: {loss: w + 9007199254740992}\n")
    # a constant exponent folds to a float: every source computes w**1e20, the report says what they make of it
    m = gc.loads("params: {w: 1.0}\nmodel: {loss: w**(10**20)}\n")
    # at w = 1 the exact gradient is 1e20 and finite differences overflow; at 1.5 the loss is not finite
    assert gc.check(m, at={"w": 1.0}).status == "mismatch"
    assert gc.check(m, at={"w": 1.5}).status == "undefined"
    report = gc.check(gc.loads("params: {w: 1.0}\nmodel: {loss: w**1e20}\n"))
    grads = report.to_dict()["points"][0]["gradients"]["w"]["values"]
    assert grads["symbolic"] == pytest.approx(1e20, rel=1e-9)


@pytest.mark.parametrize(
    ("text", "pattern"),
    [
        ("params: {w: 1" + "0" * 400 + "}\nmodel: {loss: w}\n", r"params\.w: a number is too large for a float64"),
        (
            "params: {w: [1.0, 1" + "0" * 400 + "]}\nmodel: {loss: sum(w)}\n",
            r"params\.w\[1\]: a number is too large for a float64 — numbers must lie within",
        ),
        (
            "params: {w: 1.0}\nmodel: {loss: w}\ncheck: {points: 99999999999999999999}\n",
            r"check\.points: 99999999999999999999 random points is more than the limit of 10000 — ask for fewer",
        ),
        (
            "params: {w: {shape: [2], init: uniform, domain: [0.0, .inf]}}\nmodel: {loss: sum(w)}\n",
            r"params\.w\.domain: domain must be \[low, high\] with finite low < high, got \[0\.0, inf\]",
        ),
        (
            "params: {w: {shape: [99999999999999999999]}}\nmodel: {loss: sum(w)}\n",
            r"params\.w\.shape: shape \[99999999999999999999\] holds more than 10000000 numbers",
        ),
        ("params: {w: 1.0}\nmodel: {loss: w}\ncheck: {rtol: 1e400}\n", r"check\.rtol: expected a positive finite"),
    ],
)
def test_huge_numbers_in_yaml(text, pattern):
    with pytest.raises(ModelError, match=pattern):
        gc.loads(text)


def test_huge_seed_is_a_report():
    text = "params: {w: 1.0}\nmodel: {loss: w**2}\ncheck: {points: 2, seed: 99999999999999999999}\n"
    assert gc.check(gc.loads(text)).status == "agree"


# Comparisons, where and keyword attributes (SPEC section 3.1): the new syntax, attacked.
LOGIC_PAYLOADS = [
    "w != 1",
    "w < 1 < 2",
    "w <> 1",
    "w =< 1",
    "w => 1",
    "w >> 1",
    "w << 1",
    "w < = 1",
    "w > 0 or w",
    "not w > 0",
    "w if w > 0 else x",
    "where(w > 0, w)",
    "where(w > 0, w, x, x)",
    "where(w > 0, w, x)(1)",
    f"where(w > 0, {TOUCH}, 0)",
    "leaky_relu(w, slope=__import__('os'))",
    "leaky_relu(w, slope=w)",
    "leaky_relu(w, slope=x > 0)",
    "leaky_relu(w, slope='0.1')",
    "leaky_relu(w, slope=1e999)",
    "leaky_relu(w, slope=0.1, slope=0.2)",
    "leaky_relu(slope=0.1, w)",
    "leaky_relu(w, **{'slope': 1})",
    "elu(w, alpha=[1, 2])",
    "elu(w, alpha=True)",
    "gelu(w, approximate='tanh')",
    "clamp(w, lo=0, hi=1)",
    "sign(w).__class__",
    "(w > 0).real",
]


@pytest.mark.parametrize("payload", LOGIC_PAYLOADS)
def test_logic_payload_is_rejected(payload):
    with pytest.raises(ModelError, match=r"^evil\.yaml:\d+:\d+: model\.loss: \S"):
        gc.loads(as_model(payload), path="evil.yaml")
    with pytest.raises(ModelError, match=r"^<model>: model\.loss: \S"):
        gc.Model.from_dict({"params": {"w": [1.0, 2.0]}, "data": {"x": [1.0, 2.0]}, "model": {"loss": payload}})


def test_logic_syntax_that_is_valid_checks():
    # the nearest valid neighbours of the payloads above
    text = "sum(where(w > 0, leaky_relu(w, slope=0.1), elu(w, alpha=2)) * (x <= 1.5) + clamp(w, -1, 1))"
    model = gc.Model.from_dict({"params": {"w": [0.5, -2.0]}, "data": {"x": [1.0, 2.0]}, "model": {"loss": text}})
    assert gc.check(model).status == "agree"


@pytest.mark.parametrize(
    ("loss", "pattern"),
    [
        (
            "sum(M, axis=99999999999999999999)",
            r"axis 99999999999999999999 is out of range for a value of shape \[2, 3\]",
        ),
        (
            "mean(M, axis=-99999999999999999999)",
            r"axis -99999999999999999999 is out of range .* valid axes: 0 \(or -2\)",
        ),
        (
            "sum(M, axis=[" + ", ".join(["1"] * 2000) + "])",
            r"axis \[1, 1, 1, 1, 1, 1, 1, 1, \.\.\.\] names axis 1 twice",
        ),
        ("var(M, axis=[0, -2])", r"axis \[0, -2\] names axis 0 twice — valid axes: 0 \(or -2\), 1 \(or -1\)"),
        ("max(M, axis=[0, 1, 2])", r"axis 2 is out of range for a value of shape \[2, 3\]"),
        ("sum(M, keepdims=3)", r"sum\(\): keepdims= takes True or False, got 3"),
        ("sum(M, keepdims=1e400)", r"number 1e400 is out of range"),
        ("sum(M, axis=True)", r"sum\(\): axis= takes an integer or a list of integers, got True"),
        ("softmax(M, axis=[0, 1])", r"softmax\(\): axis= takes an integer, got \[0, 1\]"),
        ("logsumexp(M, axis=0, axis=1)", r"logsumexp\(\) got axis= twice"),
        ("min(M, M, M, M)", r"min\(\) takes 1 or 2 arguments, got 4"),
        (
            "max(M, keepdims=True, M)",
            r"a positional argument follows a keyword argument — write the operands first: max\(v",
        ),
    ],
    ids=lambda value: value[:40],
)
def test_hostile_reduction_attributes(loss, pattern):
    text = f"params:\n  M: [[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]]\nmodel:\n  loss: {loss}\n"
    with pytest.raises(ModelError, match=pattern):
        gc.loads(text)


# --- structure ops and slices (issue 10) ----------------------------------------------


@pytest.mark.parametrize(
    ("expression", "pattern"),
    [
        ("sum(w[1:99999999999999999999])", r"slice \[1:99999999999999999999\]: end 99999999999999999999 is out of"),
        ("sum(w[-99999999999999999999:])", r"slice \[-99999999999999999999:\]: start -99999999999999999999 is out of"),
        ("w[99999999999999999999]", r"index 99999999999999999999 is out of range for an axis of size 2"),
        (
            "sum(w[::99999999999999999999])",
            r"slice \[::99999999999999999999\]: step 99999999999999999999 is out of range for an axis of size 2 "
            r"— steps of this axis are 1 to 2",
        ),
        ("sum(w[::-99999999999999999999])", r"a slice step must be a positive integer"),
        ("sum(reshape(w, [-1, -1]))", r"reshape to \[-1, -1\]: more than one size is -1 — give every size but one"),
        ("sum(reshape(w, [0]))", r"reshape to \[0\]: sizes must be positive \(or one -1 for what is left\)"),
        ("sum(reshape(w, [99999999999999999999, -1]))", r"cannot reshape shape \[2\] \(2 elements\) to"),
        (
            "sum(reshape(w, [" + ", ".join(["1"] * 40) + ", 2]))",
            r"reshape to \[1, 1, .*, 2\]: more than 16 axes — use at most 16 axes",
        ),
        ("sum(reshape(w, [2], [2]))", r"reshape\(\) got shape= twice"),
        ("sum(reshape(w, [2] + 1))", r"expected '\)', found '\+'"),
        ("sum(w[:, :, :])", r"3 indices into a value of shape \[2\]"),
        ("sum(concat(w, w, axis=99999999999999999999))", r"concat: axis=99999999999999999999 is out of range"),
        ("sum(stack(w, w, axis=-99999999999999999999))", r"stack: axis=-99999999999999999999 is out of range"),
        ("x[0:1]", r"1 indices into a value of shape \[\]"),
        ("w[1:2:3:4]", r"expected '\]', found ':'"),
        ("sum(w[[0]])", r"an index must be an integer constant"),
        ("w:1", r"unexpected character ':'"),
    ],
)
def test_hostile_structure_and_slices(expression, pattern):
    with pytest.raises(ModelError, match=r"model\.loss: (shape error: )?" + pattern):
        gc.loads(as_model(expression))


def test_stacks_stay_within_the_rank_limit():
    deep = "reshape(w, [" + ", ".join(["1"] * 15) + ", 2])"  # 16 axes: the most allowed
    gc.loads(as_model(f"sum({deep})"))
    text = f"stack({deep}, {deep})"
    with pytest.raises(ModelError, match=r"stack: the result would have more than 16 axes — use at most 16 axes"):
        gc.loads(as_model(f"sum({text})"))
