"""The interpreter's mpmath backend against its NumPy backend, op by op."""

from __future__ import annotations

import mpmath
import numpy as np
import pytest

from gradcheck import interp
from gradcheck.expr import infer_shapes, parse
from gradcheck.ops import FUNCTIONS, OPS

ELEMENTWISE = sorted(n for n, op in FUNCTIONS.items() if op.builtin and op.kind == "elementwise")
# The layers take tensors of their own shapes: test_layer_mpmath_forms.
LAYERS = {
    "conv1d": "conv1d(X1, K1, stride=2, padding=1)",
    "conv2d": "conv2d(X2, K2, stride=[1, 2], padding=[1, 0])",
    "maxpool2d": "maxpool2d(X2, 2, stride=1)",
    "avgpool2d": "avgpool2d(X2, size=[2, 3])",
    "conv_transpose1d": "conv_transpose1d(G1, K1, stride=2, padding=1, size=7)",
    "conv_transpose2d": "conv_transpose2d(G2, K2, stride=[1, 2], padding=[1, 0])",
    "conv1d_weight": "conv1d_weight(X1, G1, 2, stride=2, padding=1)",
    "conv2d_weight": "conv2d_weight(X2, G2, size=[2, 3], stride=[1, 2], padding=[1, 0])",
    "maxpool2d_backward": "maxpool2d_backward(X2, P2, 2, stride=1)",
    "avgpool2d_backward": "avgpool2d_backward(P2, 2, stride=1, shape=[2, 4, 5])",
}
STRUCTURAL = sorted(n for n, op in FUNCTIONS.items() if op.builtin and op.kind == "structural" and n not in LAYERS)
# Inside and outside the domains of every function (|x| > 1, x < 0, 0, ...).
POINTS = np.array([-2.5, -1.0, -0.3, 0.0, 0.4, 1.0, 1.7, 30.0])
SHAPES = {
    "a": (), "b": (), "d": (), "v": (3,), "c": (3,), "M": (2, 3), "e": (), "pi": (),
    "X1": (2, 6), "K1": (3, 2, 2), "X2": (2, 4, 5), "K2": (3, 2, 2, 3),
    "G1": (3, 4), "G2": (3, 5, 2), "P2": (2, 3, 4),  # conv1d's, conv2d's and maxpool2d's outputs above
}  # fmt: skip


def _run(text: str, env: dict, backend: str, mod) -> object:
    node = infer_shapes(parse(text), SHAPES)
    return interp.run(node, env, backend, mod)


def _both(text: str, env: dict) -> tuple[np.ndarray, np.ndarray]:
    with np.errstate(all="ignore"):
        plain = np.asarray(_run(text, env, "numpy", np), dtype=np.float64)
    with mpmath.workdps(40):
        exact_env = {
            k: np.asarray(np.frompyfunc(mpmath.mpf, 1, 1)(np.asarray(v)), dtype=object) for k, v in env.items()
        }
        exact = _run(text, exact_env, "mpmath", mpmath)
        with np.errstate(invalid="ignore"):
            exact = np.asarray(np.frompyfunc(float, 1, 1)(np.asarray(exact, dtype=object)), dtype=np.float64)
    return plain, exact


def _agree(plain: np.ndarray, exact: np.ndarray) -> None:
    finite = np.isfinite(plain)
    # undefined (complex or infinite) in float64 exactly where mpmath says nan
    np.testing.assert_array_equal(np.isnan(exact), ~finite)
    np.testing.assert_allclose(exact[finite], plain[finite], rtol=1e-13, atol=1e-300)


@pytest.mark.parametrize("name", ELEMENTWISE)
def test_elementwise_mpmath_forms(name):
    op = OPS[name]
    if op.arity == 1:
        plain, exact = _both(f"{name}(a)", {"a": POINTS})
    elif op.arity == 3:  # where, clamp
        a, b, d = (g.ravel() for g in np.meshgrid(POINTS, POINTS, POINTS))
        plain, exact = _both(f"{name}(a, b, d)", {"a": a, "b": b, "d": d})
    else:
        a, b = np.meshgrid(POINTS, POINTS)
        plain, exact = _both(f"{name}(a, b)", {"a": a.ravel(), "b": b.ravel()})
    if name == "atan2":  # the origin's angle: 0 in float64, undefined exactly (as in SymPy)
        plain = np.where((a.ravel() == 0) & (b.ravel() == 0), np.nan, plain)
    _agree(plain, exact)


@pytest.mark.parametrize("name", STRUCTURAL)
def test_structural_mpmath_forms(name):
    rng = np.random.default_rng(0)
    env = {"v": rng.normal(size=(4, 3)), "c": rng.normal(size=(4, 3)), "M": rng.normal(size=(4, 2, 3))}
    text = f"{name}(v, c)" if OPS[name].arity == 2 else f"{name}(v)"
    text = {  # ops that need a matrix, a shape
        "trace": "trace(M)",
        "reshape": "reshape(M, [3, -1])",
        "expand": "expand(v, [2, 3])",
        "scatter": "scatter(v, shape=[6], start=[1], step=[2])",
    }.get(name, text)
    _agree(*_both(text, env))


@pytest.mark.parametrize("name", sorted(LAYERS))
def test_layer_mpmath_forms(name):
    rng = np.random.default_rng(2)
    env = {k: rng.normal(size=(3,) + SHAPES[k]) for k in ("X1", "K1", "X2", "K2", "G1", "G2", "P2")}
    env["X1"][0, 1, 2] = env["X2"][0, 1, 1, 2] = np.nan  # sample 0: nan reaches only the windows that hold it
    env["G1"][0, 1, 2] = env["G2"][0, 1, 1, 1] = env["P2"][0, 1, 1, 2] = np.nan
    assert set(LAYERS) == {n for n, op in FUNCTIONS.items() if op.builtin and op.kind == "structural"} - set(STRUCTURAL)
    with np.errstate(invalid="ignore"):  # nan input made an mpf
        plain, exact = _both(LAYERS[name], env)
    assert np.isnan(plain[0]).any() and not np.isnan(plain[0]).all() and not np.isnan(plain[1:]).any()
    _agree(plain, exact)


@pytest.mark.parametrize(
    "text",
    ["M @ v + a", "v @ M.T", "M[1] @ M.T * b", "(M @ v)[0] ** 2 - a / b", "-a ** b", "sum(M.T) * e - pi"],
)
def test_operators_mpmath(text):
    rng = np.random.default_rng(1)
    env = {
        "a": rng.uniform(1, 2, size=5),
        "b": rng.uniform(1, 2, size=5),
        "v": rng.normal(size=(5, 3)),
        "M": rng.normal(size=(5, 2, 3)),
    }
    _agree(*_both(text, env))


def test_undefined_stays_undefined_per_sample():
    plain, exact = _both("0 * log(a) + a", {"a": np.array([2.0, 0.0, -1.0])})
    assert exact[0] == 2.0
    assert np.isnan(exact[1:]).all()
    assert np.isnan(plain[1:]).all()
