"""Checkers of notebook 12: reference solutions pass, typical mistakes fail with their hint, stubs get no hint.

The references are written here from the definitions: the expected profit per customer, and the
odds divided by the oversampling factor (checked against a model refitted on duplicated defaults).
"""

import numpy as np
import pytest
from checks_helpers import assert_fail, assert_pass, raises

from fl_helpers import check


def decide(p, loss_if_default, margin_if_repaid):
    return (1 - p) * margin_if_repaid > p * loss_if_default


def undo(p, factor):
    odds = p / (1 - p) / factor
    return odds / (1 + odds)


def stub(*args):
    raise NotImplementedError("write your solution here")


def test_the_references_pass():
    assert_pass(check.lending_decision(decide))
    assert_pass(check.lending_decision(lambda p, L, G: (p < G / (G + L)).astype(int)))   # 0/1 is fine
    assert_pass(check.undo_oversampling(undo))
    assert_pass(check.undo_oversampling(lambda p, k: 1 / (1 + np.exp(-(np.log(p / (1 - p)) - np.log(k))))))


def test_an_untouched_exercise_fails_without_a_hint():
    for result in (check.lending_decision(stub), check.undo_oversampling(stub),
                   check.lending_decision(lambda *a: None), check.undo_oversampling(lambda *a: None)):
        assert_fail(result)
        assert result.hint == ""


@pytest.mark.parametrize("wrong, words", [
    (lambda p, L, G: ~decide(p, L, G), "opposite"),
    (lambda p, L, G: p < 0.5, "G / (G + L)"),
    (lambda p, L, G: p < G / L, "not G / L"),
    (lambda p, L, G: p < L / (G + L), "swapped"),
    (lambda p, L, G: p * L < G, "not G / L"),
    (raises, "expected profit"),
    ("not a function", "expected profit"),
])
def test_wrong_decisions_fail_with_their_hint(wrong, words):
    assert_fail(check.lending_decision(wrong), words)


@pytest.mark.parametrize("wrong, words", [
    (lambda p, L, G: decide(p, L, G)[:-1], "one decision per customer"),
    (lambda p, L, G: p, "True (approve)"),
    (lambda p, L, G: np.where(decide(p, L, G), "yes", "no"), "True (approve)"),
])
def test_malformed_decisions_fail_saying_what_is_expected(wrong, words):
    result = check.lending_decision(wrong)
    assert_fail(result, "G / (G + L)")
    assert words in result.message


@pytest.mark.parametrize("wrong, words", [
    (lambda p, k: p / k, "odds"),
    (lambda p, k: k * p / (k * p + 1 - p), "Wrong direction"),
    (lambda p, k: np.log(p / (1 - p)) - np.log(k), "corrected logit"),
    (lambda p, k: p, "odds"),
    (lambda p, k: undo(p, k)[:2], "odds"),
    (raises, "odds"),
])
def test_wrong_corrections_fail_with_their_hint(wrong, words):
    assert_fail(check.undo_oversampling(wrong), words)


def test_the_correction_undoes_oversampling_of_a_refitted_model():
    """Population-level fact behind the exercise: duplicating positives k times shifts the logit by log k."""
    from sklearn.linear_model import LogisticRegression
    rng = np.random.default_rng(0)
    x = rng.normal(size=(40_000, 1))
    y = (rng.random(40_000) < 1 / (1 + np.exp(-(-3.0 + 1.5 * x[:, 0])))).astype(int)
    k = 5
    rep = np.where(y == 1, k, 1)
    fit = LogisticRegression(C=1e6).fit(np.repeat(x, rep, axis=0), np.repeat(y, rep))
    plain = LogisticRegression(C=1e6).fit(x, y)
    grid = np.linspace(-2, 2, 9)[:, None]
    np.testing.assert_allclose(undo(fit.predict_proba(grid)[:, 1], k), plain.predict_proba(grid)[:, 1], rtol=0.1)
