"""The course zoo (examples/zoo/): every layer gives the verdict its file states.

Each file states its verdict in one ``# expect: agree|mismatch|kink`` line and
names its course in its comment header. The verdicts are checked through the
public API (``gc.load`` + ``gc.check``) and once through the command line
with every file in one call (``--json`` prints a list). The course's
hand-derived gradient (the file's ``expected``) and the symbolic source are
compared with torch float64 autograd of the same layer written here in torch,
mostly with torch's own layer functions (``batch_norm``, ``layer_norm``,
``conv1d``, ``conv2d``, ``max_pool2d``, ``avg_pool2d``, ``embedding``,
``scaled_dot_product_attention``): a route that shares nothing with the file.

"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml
from helpers import expectation

import gradcheck as gc

torch = pytest.importorskip("torch")
F = torch.nn.functional

REPO = Path(__file__).resolve().parents[1]
ZOO = sorted(REPO.glob("examples/zoo/*.yaml"))
IDS = [p.stem for p in ZOO]

COURSES = ("CS231n", "d2l", "makemore", "Let's build GPT")
THREE = ("symbolic", "autograd", "finite_difference")


def spec_of(path: Path) -> dict:
    return yaml.safe_load(path.read_text())


_REPORTS: dict[Path, dict] = {}


def report_of(path: Path) -> dict:
    """``gc.check`` of the file at its own values, as the JSON dict (once per file)."""
    if path not in _REPORTS:
        _REPORTS[path] = gc.check(gc.load(str(path))).to_dict()
    return _REPORTS[path]


# --------------------------------------------------------------------------
# each layer in torch float64: fn(params, one sample's data) -> the per-sample loss


def t(v):
    return torch.as_tensor(np.asarray(v, dtype=np.float64))


def affine_relu(p, d):
    return (F.relu(d["x"] @ p["W"] + p["b"]) * d["dout"]).sum()


def softmax_ce(p, d):
    return F.cross_entropy((p["W"] @ d["x"] + p["b"])[None], d["y"].argmax()[None])


def svm(p, d):
    s = p["W"] @ d["x"]
    label = int(d["y"].argmax())
    margins = torch.clamp(s - s[label] + 1, min=0)
    return margins.sum() - margins[label]


def batchnorm(p, d):
    x = p.get("X", d.get("X"))
    out = F.batch_norm(x, None, None, p["gamma"], p["beta"], training=True, eps=1e-5)
    return (out * d["dout"]).sum()


def layernorm(p, d):
    out = F.layer_norm(p["X"], (p["X"].shape[-1],), p["gamma"], p["beta"], eps=1e-5)
    return (out * d["dout"]).sum()


def dropout(p, d):
    return ((d["x"] @ p["W"] + p["b"]) * d["mask"] / 0.5 * d["dout"]).sum()


def conv1d(p, d):
    return ((F.conv1d(d["x"][None], p["k"], padding=1)[0] + p["b"]) * d["dout"]).sum()


def conv2d(p, d):
    return ((F.conv2d(d["x"][None], p["k"], stride=2, padding=1)[0] + p["b"]) * d["dout"]).sum()


def maxpool(p, d):
    return (F.max_pool2d(p["X"][None], 2)[0] * d["dout"]).sum()


def avgpool(p, d):
    return (F.avg_pool2d(F.conv2d(d["x"][None], p["k"]), 2)[0] * d["dout"]).sum()


def lstm(p, d):
    a = d["x"] @ p["Wx"] + d["prev_h"] @ p["Wh"] + p["b"]
    i, f, o, g = a.sigmoid()[0:2], a.sigmoid()[2:4], a.sigmoid()[4:6], a[6:8].tanh()
    c = f * d["prev_c"] + i * g
    h = o * c.tanh()
    return (h * d["dnext_h"]).sum() + (c * d["dnext_c"]).sum()


def embedding(p, d):
    return (F.embedding(d["X"].argmax(dim=1), p["W"]) * d["dout"]).sum()


def two_layer_net(p, d):
    h = F.relu(d["x"] @ p["W1"] + p["b1"])
    scores = h @ p["W2"] + p["b2"]
    reg = 0.05 * ((p["W1"] ** 2).sum() + (p["W2"] ** 2).sum())
    return F.cross_entropy(scores[None], d["y"].argmax()[None]) + reg


def rnn(p, d):
    h, loss = d["h0"], 0
    for step in range(len(d["x"])):
        h = torch.tanh(d["x"][step] @ p["Wx"] + h @ p["Wh"] + p["b"])
        loss = loss + (h * d["dh"][step]).sum()
    return loss


def attention(p, d):
    x = d["X"]
    out = F.scaled_dot_product_attention((x @ p["Wq"])[None], (x @ p["Wk"])[None], (x @ p["Wv"])[None])[0]
    return (out * d["dout"]).sum()


def makemore_mlp(p, d):
    n = d["Yoh"].shape[0]
    emb = F.embedding(d["Xoh"].argmax(dim=1), p["C"]).reshape(n, -1)
    hpre = emb @ p["W1"] + p["b1"]
    # Bessel-corrected batch variance, as the lecture: torch's batch_norm normalizes with the biased one
    var = hpre.var(dim=0, unbiased=True)
    hpreact = p["bngain"] * (hpre - hpre.mean(dim=0)) / torch.sqrt(var + 1e-5) + p["bnbias"]
    logits = torch.tanh(hpreact) @ p["W2"] + p["b2"]
    return F.cross_entropy(logits, d["Yoh"].argmax(dim=1))


TORCH = {
    "affine_relu": affine_relu,
    "softmax_ce": softmax_ce,
    "svm": svm,
    "svm_slip": svm,
    "batchnorm": batchnorm,
    "batchnorm_dx": batchnorm,
    "layernorm": layernorm,
    "dropout": dropout,
    "conv1d": conv1d,
    "conv2d": conv2d,
    "maxpool": maxpool,
    "avgpool": avgpool,
    "lstm": lstm,
    "embedding": embedding,
    "two_layer_net": two_layer_net,
    "rnn": rnn,
    "rnn_3steps": rnn,
    "attention": attention,
    "makemore_mlp": makemore_mlp,
}


def torch_gradients(path: Path) -> dict[str, np.ndarray]:
    """d(reduced loss)/d(param) by torch float64 autograd of the layer written above."""
    spec = spec_of(path)
    params = {k: t(v).requires_grad_() for k, v in spec["params"].items()}
    data = {k: [t(s) for s in col] for k, col in (spec.get("data") or {}).items()}
    n = len(next(iter(data.values())))
    losses = torch.stack([TORCH[path.stem](params, {k: col[i] for k, col in data.items()}) for i in range(n)])
    total = losses.sum() if spec.get("reduction") == "sum" else losses.mean()
    grads = torch.autograd.grad(total, list(params.values()), allow_unused=True)
    return {k: (np.zeros(tuple(p.shape)) if g is None else g.numpy()) for (k, p), g in zip(params.items(), grads)}


def assert_close(got, want, what: str) -> None:
    got, want = np.asarray(got, dtype=np.float64), np.asarray(want, dtype=np.float64)
    assert got.shape == want.shape, what
    np.testing.assert_allclose(got, want, rtol=1e-9, atol=1e-12, err_msg=what)


def assert_expected_is_torch(path: Path, rep: dict) -> None:
    spec = spec_of(path)
    want = torch_gradients(path)
    grads = rep["points"][0]["gradients"]
    for name in spec["params"]:
        assert_close(grads[name]["values"]["symbolic"], want[name], f"{path.stem}: symbolic d/d{name}")
        if name in spec.get("expected", {}) and path.stem != "svm_slip":
            assert_close(grads[name]["values"]["expected"], want[name], f"{path.stem}: expected d/d{name}")


# --------------------------------------------------------------------------
# the files


def test_zoo_has_every_layer_the_issue_names():
    stems = set(IDS)
    for layer in (
        "affine_relu",
        "softmax_ce",
        "svm",
        "svm_slip",
        "two_layer_net",
        "batchnorm",
        "batchnorm_dx",
        "layernorm",
        "dropout",
        "conv1d",
        "conv2d",
        "maxpool",
        "avgpool",
        "rnn",
        "lstm",
        "embedding",
        "attention",
        "makemore_mlp",
    ):
        assert layer in stems
    assert set(TORCH) == stems, "every zoo layer has its torch twin here"


@pytest.mark.parametrize("path", ZOO, ids=IDS)
def test_file_names_its_course_and_verdict(path):
    text = path.read_text()
    expectation(path)
    lines = text.splitlines()
    header = "\n".join(lines[: next(i for i, line in enumerate(lines) if not line.startswith("#"))])
    assert any(course in header for course in COURSES), f"{path.name}: the header names no course"
    spec = spec_of(path)
    assert spec["expected"], f"{path.name}: the course's gradient as `expected`"
    assert set(spec["expected"]) <= set(spec["params"])


@pytest.mark.parametrize("path", ZOO, ids=IDS)
def test_api_verdict(path):
    rep = report_of(path)
    assert rep["status"] == expectation(path)
    assert "expected" in rep["sources"]
    for name, grad in rep["points"][0]["gradients"].items():
        if expectation(path) == "agree":
            assert grad["status"] == "agree", (path.stem, name, grad["note"])
            assert grad["odd_one_out"] is None


@pytest.mark.parametrize("path", [p for p in ZOO if p.stem in TORCH], ids=[p.stem for p in ZOO if p.stem in TORCH])
def test_expected_and_symbolic_equal_torch_autograd(path):
    assert_expected_is_torch(path, report_of(path))


def test_svm_slip_blames_expected_on_the_correct_rows():
    path = REPO / "examples" / "zoo" / "svm_slip.yaml"
    rep = report_of(path)
    assert rep["status"] == "mismatch" and rep["ok"] is False
    grad = rep["points"][0]["gradients"]["W"]
    assert grad["status"] == "mismatch"
    assert grad["odd_one_out"] == "expected"
    # the slip, by hand in NumPy: outer(m, x) per sample, the correct row left at zero
    spec = spec_of(path)
    W = np.array(spec["params"]["W"])
    slip, right = [], []
    for x, y in zip(np.array(spec["data"]["x"]), np.array(spec["data"]["y"])):
        s = W @ x
        m = ((s - s @ y + 1) > 0) * (1 - y)
        slip.append(np.outer(m, x))
        right.append(np.outer(m - y * m.sum(), x))
    assert_close(grad["values"]["expected"], np.mean(slip, axis=0), "the slip")
    want = torch_gradients(path)["W"]
    assert_close(np.mean(right, axis=0), want, "the right dW by hand")
    for source in THREE:
        assert_close(grad["values"][source], want, source)
    # the slip and the truth differ exactly by the forgotten correct-class rows
    assert not np.allclose(np.mean(slip, axis=0), want)


def test_no_zoo_point_sits_on_a_kink():
    """The files that have kinks keep their points away from them, by a margin computed here."""
    spec = spec_of(REPO / "examples" / "zoo" / "svm.yaml")
    W = np.array(spec["params"]["W"])
    margins = []
    for x, y in zip(np.array(spec["data"]["x"]), np.array(spec["data"]["y"])):
        s = W @ x
        margins.extend((s - s @ y + 1)[y == 0])
    assert min(abs(m) for m in margins) > 0.05
    spec = spec_of(REPO / "examples" / "zoo" / "affine_relu.yaml")
    pre = np.array(spec["data"]["x"]) @ np.array(spec["params"]["W"]) + np.array(spec["params"]["b"])
    assert np.abs(pre).min() > 0.05
    spec = spec_of(REPO / "examples" / "zoo" / "two_layer_net.yaml")
    pre = np.array(spec["data"]["x"]) @ np.array(spec["params"]["W1"]) + np.array(spec["params"]["b1"])
    assert np.abs(pre).min() > 0.05
    spec = spec_of(REPO / "examples" / "zoo" / "maxpool.yaml")
    X = np.array(spec["params"]["X"])
    assert len(set(X.ravel().tolist())) == X.size, "no two inputs equal, so no window ties"


@pytest.mark.slow
def test_cli_all_files_in_one_call():
    env = dict(os.environ, NO_COLOR="1")
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    proc = subprocess.run(
        [sys.executable, "-m", "gradcheck", *map(str, ZOO), "--json"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert "Traceback" not in proc.stderr, proc.stderr
    reports = json.loads(proc.stdout)
    assert isinstance(reports, list) and len(reports) == len(ZOO)
    statuses = {}
    for path, rep in zip(ZOO, reports):
        assert rep["model"] == spec_of(path).get("name", path.stem)
        assert rep["status"] == expectation(path), path.stem
        assert set(THREE) | {"expected"} <= set(rep["sources"])
        json.dumps(rep, allow_nan=False)
        statuses[path.stem] = rep["status"]
    # a mismatch anywhere (the SVM slip) makes the exit status 1
    assert proc.returncode == (1 if "mismatch" in statuses.values() else 0), proc.stderr
    assert statuses["svm_slip"] == "mismatch"
    slip = reports[IDS.index("svm_slip")]["points"][0]["gradients"]["W"]
    assert slip["odd_one_out"] == "expected"


def test_every_file_is_named_in_the_docs():
    text = (REPO / "docs" / "zoo.md").read_text()
    for path in ZOO:
        assert f"{path.parent.name}/{path.name}" in text, path.name
