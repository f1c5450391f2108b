"""Assertions shared by the exercise-checker tests (tests/test_check_*.py)."""

from fl_helpers.check import CheckResult


def assert_pass(result):
    assert isinstance(result, CheckResult)
    assert result, str(result)
    assert str(result).startswith("PASS")


def assert_fail(result, *hint_words):
    assert isinstance(result, CheckResult)
    assert not result
    assert str(result).startswith("FAIL")
    for word in hint_words:
        assert word in result.hint, (word, result.hint)


def raises(*args):
    raise RuntimeError("student bug")
