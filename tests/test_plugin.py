"""The pytest plugin, run by pytest itself (``pytester``) in a scratch folder.

A zoo of one correct and one wrong model file named for the plugin, plus a
model file not so named (which must not be collected): exactly one passed and
one failed, and the failure shows the table. The same under pytest-xdist.
"""

from __future__ import annotations

import pytest

pytest_plugins = ["pytester"]

CORRECT = """\
params: {w: 1.0, b: 0.0}
data: {x: [1.0, 2.0, 3.0], y: [2.0, 4.0, 6.0]}
model:
  y_pred: x * w + b
  loss: (y_pred - y)**2
"""

# the hand-derived gradient forgets the factor 2 in d/dw
WRONG = CORRECT + "expected:\n  w: x*(x*w + b - y)\n  b: 2*(x*w + b - y)\n"

KINK = "params: {w: 0.0}\nmodel:\n  loss: abs(w)\n"


@pytest.fixture
def zoo(pytester: pytest.Pytester) -> pytest.Pytester:
    pytester.makefile(".yaml", gradcheck_linear=CORRECT)
    pytester.path.joinpath("halved.gradcheck.yaml").write_text(WRONG)
    pytester.makefile(".yaml", not_named_for_the_plugin=WRONG)
    return pytester


def test_one_passed_one_failed_and_the_table(zoo: pytest.Pytester):
    result = zoo.runpytest("-p", "no:cacheprovider")
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(
        [
            "*halved.gradcheck.yaml: mismatch*",
            "*param*symbolic*autograd*finite_difference*expected*",
            "w *-9.33333333333333*mismatch (expected)*",
            "*FAILED halved.gradcheck.yaml::check*",
        ]
    )
    assert "not_named_for_the_plugin" not in result.stdout.str()
    assert "Traceback" not in result.stdout.str()


def test_collect_only_lists_one_item_per_file(zoo: pytest.Pytester):
    result = zoo.runpytest("--collect-only", "-q", "-p", "no:cacheprovider")
    result.stdout.fnmatch_lines(["gradcheck_linear.yaml::check", "halved.gradcheck.yaml::check"])
    assert "not_named" not in result.stdout.str()


def test_under_xdist(zoo: pytest.Pytester):
    result = zoo.runpytest_subprocess("-n", "2", "-p", "no:cacheprovider")
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(["*mismatch (expected)*"])


def test_kink_passes_unless_strict(pytester: pytest.Pytester):
    pytester.makefile(".yaml", gradcheck_kink=KINK)
    pytester.runpytest("-p", "no:cacheprovider").assert_outcomes(passed=1)
    strict = pytester.runpytest("-p", "no:cacheprovider", "--gradcheck-strict")
    strict.assert_outcomes(failed=1)
    strict.stdout.fnmatch_lines(["*gradcheck_kink.yaml: kink*"])
    pytester.makeini("[pytest]\ngradcheck_strict = true\n")
    pytester.runpytest("-p", "no:cacheprovider").assert_outcomes(failed=1)


def test_points_option(pytester: pytest.Pytester):
    # sqrt(s) agrees at s = 1; random points in the domain [-1, 1] reach s < 0, where it is undefined
    pytester.makefile(
        ".yaml", gradcheck_root="params: {s: {value: 1.0, domain: [-1.0, 1.0]}}\nmodel:\n  loss: sqrt(s)\n"
    )
    pytester.runpytest("-p", "no:cacheprovider").assert_outcomes(passed=1)
    result = pytester.runpytest("-p", "no:cacheprovider", "--gradcheck-points", "8")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*gradcheck_root.yaml: undefined*"])


@pytest.mark.slow
def test_settings_reach_the_check_as_one_options_object(pytester: pytest.Pytester):
    pytester.makefile(".yaml", gradcheck_halved=WRONG)
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "--gradcheck-dtype", "float32")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*halved: mismatch  (float32, rtol 0.0001, atol 1e-06)*"])
    # a bad value is refused where every caller's settings are validated, with its message
    bad = pytester.runpytest_subprocess("-p", "no:cacheprovider", "--gradcheck-points", "-1")
    bad.assert_outcomes(failed=1)
    bad.stdout.fnmatch_lines(["*points must be a whole number >= 0, got -1*"])


def test_unusable_file_fails_with_one_clear_message(pytester: pytest.Pytester):
    pytester.makefile(".yaml", gradcheck_typo="params: {w: 1.0}\nmodel:\n  loss: w * q\n")
    result = pytester.runpytest("-p", "no:cacheprovider")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*gradcheck_typo.yaml*loss: unknown name 'q'*"])
    assert "Traceback" not in result.stdout.str()


def test_options_are_in_a_gradcheck_group(pytester: pytest.Pytester):
    result = pytester.runpytest("--help")
    result.stdout.fnmatch_lines(
        ["gradcheck:*", "*--gradcheck-strict*", "*--gradcheck-points=N*", "*--gradcheck-dtype*"]
    )


def test_plugin_can_be_disabled(zoo: pytest.Pytester):
    result = zoo.runpytest("-p", "no:gradcheck", "-p", "no:cacheprovider")
    assert result.ret == pytest.ExitCode.NO_TESTS_COLLECTED
