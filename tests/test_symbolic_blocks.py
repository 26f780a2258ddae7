"""The symbolic source's block evaluation (whole tensors per op, double-double) against the tape and mpmath.

The tape (one SymPy line per element, 40-digit mpmath) is the reference:
wherever the blocks answer, they give its values; where they cannot be
trusted (a cancelling sum, an overflow, a kinked structural op) they step
aside and the tape answers.
"""

from __future__ import annotations

from pathlib import Path

import mpmath
import numpy as np
import pytest

import gradcheck as gc
from gradcheck import ddarray as D
from gradcheck.checker import random_points
from gradcheck.sources import symbolic
from gradcheck.sources.symbolic import blocks

ROOT = Path(__file__).parent.parent
FILES = sorted((ROOT / "examples").glob("*.yaml")) + sorted((ROOT / "examples" / "zoo").glob("*.yaml"))


# --- double-double arithmetic against 60-digit mpmath -----------------------------------------


def _exact(x: np.ndarray) -> np.ndarray:
    return np.frompyfunc(mpmath.mpf, 1, 1)(x)


def _relative_error(got: D.DD, want: np.ndarray) -> float:
    with mpmath.workdps(60):
        worst = mpmath.mpf(0)
        for h, lo, w in zip(got.hi.reshape(-1), got.lo.reshape(-1), np.asarray(want, dtype=object).reshape(-1)):
            if w != 0:
                worst = max(worst, abs((mpmath.mpf(h) + lo - w) / w))
        return float(worst)


@pytest.fixture
def rng():
    return np.random.default_rng(7)


def test_products_sums_and_quotients_carry_32_digits(rng):
    a, b = rng.normal(size=(4, 5)), rng.normal(size=(4, 5)) * 1e3
    with mpmath.workdps(60):
        ea, eb = _exact(a), _exact(b)
        s = D.add(D.mul(a, b), D.div(D.DD(a), D.add(b, 0.1)))
        assert _relative_error(s, ea * eb + ea / (eb + mpmath.mpf(0.1))) < 1e-30
        assert _relative_error(D.power(D.DD(a), -5), ea**-5) < 1e-30
        assert _relative_error(D.power(D.DD(a), 7), ea**7) < 1e-30


def test_pairwise_sums_and_einsum_are_exact_to_32_digits(rng):
    x, w = rng.normal(size=(3, 7, 33)), rng.normal(size=(33, 5))
    with mpmath.workdps(60):
        ex, ew = _exact(x), _exact(w)
        assert _relative_error(D.total(D.DD(x), [1, 2]), ex.sum(axis=(1, 2))) < 1e-30
        got = D.einsum("...ij,...jk->...ik", x, w)
        assert got.shape == (3, 7, 5)
        assert _relative_error(got, np.einsum("nij,jk->nik", ex, ew)) < 1e-30
        kept = D.total(D.DD(x), [1], keepdims=True)
        assert kept.shape == (3, 1, 33)


def test_a_sum_of_cancelling_terms_is_exact_where_float64_is_not():
    terms = np.array([1e17, 1.0, -1e17, 1.0])
    assert terms.sum() != 2.0
    assert float(D.value(D.total(D.DD(terms), [0]))) == 2.0


def test_a_checked_sum_that_cancels_30_bits_says_so():
    one = D.DD(np.array([1.0]))
    with mpmath.workdps(40):
        near = D.from_mpmath(np.array([mpmath.cos(mpmath.mpf("1e-8"))], dtype=object))
    with pytest.raises(D.LostDigits):
        D.minus(one, near)
    assert float(D.value(D.minus(one, D.DD(np.array([0.5]))))[0]) == 0.5
    assert float(D.value(D.minus(one, one))[0]) == 0.0  # an exact zero is not a loss


def test_mpmath_round_trip_keeps_32_digits(rng):
    x = rng.normal(size=20)
    with mpmath.workdps(50):
        t = np.array([mpmath.tanh(v) for v in _exact(x)], dtype=object)
        back = D.to_mpmath(D.from_mpmath(t))
        assert max(abs((b - w) / w) for b, w in zip(back, t)) < 1e-31
    assert np.isnan(D.from_mpmath(np.array([mpmath.mpc(1, 1)], dtype=object)).hi[0])


# --- the blocks against the tape ----------------------------------------------------------------


def _both(model: gc.Model, point: dict[str, np.ndarray]):
    got = blocks.gradients(model, point)
    want = symbolic.tape_gradients(model, point)
    return got, want


def _assert_same(got, want) -> None:
    """The same float64 values; a true zero may come out as 0 or as noise 1e-28 below the model's scale (both exact)."""
    assert got is not None
    noise = 1e-28 * max(float(np.max(s, initial=0.0)) for s in want.info["scale"].values())
    for name, v in want.values.items():
        np.testing.assert_allclose(got.values[name], v, rtol=4e-16, atol=noise, err_msg=name)
        np.testing.assert_allclose(got.info["scale"][name], want.info["scale"][name], rtol=1e-12, atol=noise)
    np.testing.assert_allclose(got.loss, want.loss, rtol=4e-16)
    np.testing.assert_allclose(got.info["per_sample_loss"], want.info["per_sample_loss"], rtol=1e-15)


@pytest.mark.parametrize("path", FILES, ids=[p.stem for p in FILES])
def test_blocks_give_the_tapes_values_on_every_example_and_zoo_file(path):
    model = gc.load(path)
    assert blocks.supported(model), path.stem
    got, want = _both(model, model.param_values())
    _assert_same(got, want)


def test_blocks_give_the_tapes_values_at_random_points_and_per_sample():
    text = """
params: {W: {shape: [3, 4], init: normal, std: 0.5}, b: [0.1, -0.2, 0.3], s: 1.5}
data:
  x: [[1.0, 2.0, -1.0, 0.5], [0.3, -0.7, 2.0, 1.0]]
  y: [[1.0, 0.0, 0.0], [0.0, 0.0, 1.0]]
model:
  h: softplus(W @ x + b) * s
  p: softmax(h)
  loss: -sum(y * log(p)) + mean(W**2) / 3 + sqrt(s)
"""
    for reduction in ("mean", "sum", "none"):
        model = gc.loads(text + f"reduction: {reduction}\n")
        for point in [model.param_values()] + random_points(model, 3, 1):
            _assert_same(*_both(model, point))


def test_conv_layer_blocks_equal_the_tape():
    rng = np.random.default_rng(3)
    model = gc.Model.from_dict(
        {
            "params": {"k": rng.normal(0, 0.3, (2, 2, 3, 3)).tolist(), "b": [[[0.1]], [[-0.1]]]},
            "data": {"x": rng.normal(size=(2, 2, 6, 6)).tolist(), "y": rng.normal(size=(2, 2, 2, 2)).tolist()},
            "model": {"h": "tanh(conv2d(x, k, stride=2, padding=1) + b)", "loss": "sum((avgpool2d(h, 2) - y)**2)"},
        }
    )
    _assert_same(*_both(model, model.param_values()))


def test_where_relu_and_abs_take_the_tapes_values_at_their_kinks():
    model = gc.Model.from_dict(
        {
            "params": {"w": [0.0, 1.0, -1.0]},
            "data": {"x": [[1.0, 2.0, 3.0]]},
            "model": {"loss": "sum(relu(w * x) + abs(w) + where(w > 0, w**2, -w) + clamp(w, -1, 1))"},
        }
    )
    got, want = _both(model, model.param_values())
    _assert_same(got, want)


@pytest.mark.parametrize(
    "params, loss",
    [
        ({"w": 1e-8}, "(1 - cos(w)) / w**2"),  # 1 - cos(w) cancels 53 bits
        ({"w": 800.0}, "log(exp(w) + 1)"),  # exp(800) overflows float64's exponent
        ({"w": -1.0}, "where(w > 0, log(w), 0)"),  # log(-1) is undefined: nan on the untaken branch
    ],
)
def test_blocks_step_aside_where_double_double_cannot_be_trusted(params, loss):
    model = gc.Model.from_dict({"params": params, "model": {"loss": loss}})
    point = model.param_values()
    assert blocks.gradients(model, point) is None
    exact = symbolic.gradients(model, point)  # the tape's answer
    assert exact.values == symbolic.tape_gradients(model, point).values


def test_the_cancelling_model_still_gets_the_exact_value():
    model = gc.Model.from_dict({"params": {"w": 1e-8}, "model": {"loss": "(1 - cos(w)) / w**2"}})
    g = symbolic.gradients(model, model.param_values())
    assert float(g.values["w"]) == pytest.approx(-1e-8 / 12, rel=1e-12)


def test_a_model_that_names_a_param_e_is_not_eulers_number():
    model = gc.Model.from_dict({"params": {"e": 2.0, "w": 3.0}, "model": {"loss": "e * w + exp(e)"}})
    got = blocks.gradients(model, model.param_values())
    assert got is not None
    assert float(got.values["w"]) == 2.0
    assert float(got.values["e"]) == pytest.approx(3.0 + np.exp(2.0), rel=1e-15)


def test_every_dd_form_gives_the_tapes_values():
    """One model through every op with a double-double form (forward, and backward through its vjp rule)."""
    rng = np.random.default_rng(11)
    model = gc.Model.from_dict(
        {
            "params": {
                "W": rng.normal(0, 0.5, (3, 4)).tolist(),
                "k": rng.normal(0, 0.5, (2, 3, 2)).tolist(),
                "v": rng.normal(0, 0.5, 4).tolist(),
            },
            "data": {"x": rng.normal(size=(2, 4)).tolist(), "M": rng.normal(size=(2, 3, 5)).tolist()},
            "model": {
                "h": "tanh(W @ x) + sigmoid(W @ v) - expm1(W @ x / 4)",
                "c": "conv1d(M, k, stride=2, padding=1)",
                "z": "concat(flatten(c), h, stack(h[0:2], h[1:], axis=0)[1])",
                "s": "log_softmax(z) + softmax(outer(h, v), axis=0)[:, 1].T @ W @ exp(v / 3)",
                "q": "dot(v, x) * trace(outer(h[:2], v[1:3])) + sum(diag(reshape(v, [2, 2])))",
                "r": "sum(max(h, v[0:3] / 2) - min(h, relu(h - 0.2)) + relu(W @ x)) + max(v) - min(h)",
                "loss": "-sum(s) / 7 + logsumexp(outer(h, v), axis=1, keepdims=True)[2, 0] + log(q**2 + 1) + r",
            },
        }
    )
    for point in [model.param_values()] + random_points(model, 2, 5):
        _assert_same(*_both(model, point))


def test_literals_and_constants_in_partials_are_read_as_the_tape_reads_them():
    model = gc.Model.from_dict(
        {
            "params": {"w": [0.5, 1.5]},
            "data": {"x": [[1.0, 2.0], [0.5, -1.0]]},
            "model": {"loss": "sum(1_000 * w**2 * x + 1e-3 * exp(w) + pi * w + e**w + w**0.5 + 2**w)"},
        }
    )
    _assert_same(*_both(model, model.param_values()))


EXPECTED = [p for p in FILES if "expected:" in p.read_text()]


@pytest.mark.parametrize("path", EXPECTED, ids=[p.stem for p in EXPECTED])
def test_expected_on_whole_tensors_equals_expected_in_mpmath(path):
    from gradcheck.sources import exact

    model = gc.load(path)
    point = model.param_values()
    got = blocks.evaluate(model, point, model.expected, "expected")
    want = exact.expected_in_mpmath(model, point)
    if path.stem == "conv2d":
        # the course's sum of nine outer products cancels to (nearly) nothing in some elements: a `+` that
        # loses more than 30 bits sends the whole evaluation to mpmath
        assert got is None
        assert exact.expected_gradients(model, point).values.keys() == want.values.keys()
        return
    _assert_same(got, want)


def test_expected_undefined_at_one_sample_is_nan_there_only():
    from gradcheck.sources import exact

    model = gc.Model.from_dict(
        {
            "params": {"w": 1.0},
            "data": {"x": [1.0, 0.0, 2.0]},
            "model": {"loss": "w * x"},
            "expected": {"w": "x / x * x"},
        }
    )
    point = model.param_values()
    assert blocks.evaluate(model, point, model.expected, "expected") is None  # 0 / 0 at the second sample
    got = exact.expected_gradients(model, point)
    assert np.isnan(got.values["w"])


@pytest.mark.parametrize(
    "loss",
    [
        "sum(maxpool2d(X * w, 2) ** 2)",
        "sum(maxpool2d(relu(X * w - 0.5), 2, stride=1) * X[:, 0:3, 0:3])",  # overlapping windows add up
    ],
)
def test_maxpool_gives_the_tapes_values_at_ties_too(loss):
    """maxpool2d's dd_vjp is SymPy's derivative of each window's Max: half the gradient to each tied element."""
    rng = np.random.default_rng(5)
    x = rng.normal(size=(2, 2, 4, 4))
    x[0, 0, 0, :2] = 10.0  # two tied maxima in the first window
    x[1, 1, 2:, 2:] = -3.0  # four tied maxima (and, after relu, a window of zeros)
    model = gc.Model.from_dict({"params": {"w": 1.5}, "data": {"X": x.tolist()}, "model": {"loss": loss}})
    point = model.param_values()
    _assert_same(*_both(model, point))


@pytest.mark.parametrize("rows", [2, 3])
def test_max_and_min_over_elements_give_the_tapes_values_at_ties_too(rows):
    """amax/amin's dd_vjp is the tape's derivative: SymPy's flat Max, half the gradient to each tied extreme."""
    rng = np.random.default_rng(5)
    x = rng.normal(size=(2, 4, 4))
    loss = f"max(X[0, 0:{rows}] * w) + min(X * w, axis=1)[0, 1] + sum(max(X * w, axis=[0, 2], keepdims=True))"
    spec = {"params": {"w": 1.5}, "data": {"X": [x.tolist()]}, "model": {"loss": loss}}
    model = gc.Model.from_dict(spec)
    _assert_same(*_both(model, model.param_values()))  # no ties: the gradient goes to each extreme
    x[0, :rows, :2] = 10.0  # two, four or six tied maxima in the first rows
    x[1, :, 1] = -5.0  # a column of tied minima
    model = gc.Model.from_dict(spec | {"data": {"X": [x.tolist()]}})
    _assert_same(*_both(model, model.param_values()))
