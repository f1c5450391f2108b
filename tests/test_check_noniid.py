"""Checkers of notebook 06: accept the reference solutions, reject typical wrong answers."""

import numpy as np
import pytest
from checks_helpers import assert_fail, assert_pass, raises

from fl_helpers import check
from fl_helpers.check import noniid


def solution_dirichlet_mixes(alpha, p, n_parties, rng):
    return rng.dirichlet(alpha * np.asarray(p), size=n_parties)


def test_dirichlet_mixes_accepts_the_solution():
    assert_pass(check.dirichlet_mixes(solution_dirichlet_mixes))


def test_dirichlet_mixes_accepts_normalised_gamma_draws():
    """The textbook construction: independent Gamma(alpha p_k) draws, normalised."""
    def gammas(alpha, p, n_parties, rng):
        g = rng.gamma(alpha * np.asarray(p), size=(n_parties, len(p)))
        return g / g.sum(axis=1, keepdims=True)

    assert_pass(check.dirichlet_mixes(gammas))


def test_dirichlet_mixes_rejects_a_uniform_centre():
    assert_fail(check.dirichlet_mixes(lambda a, p, n, rng: rng.dirichlet(a * np.ones(len(p)), size=n)),
                "alpha * pi")


def test_dirichlet_mixes_rejects_ignoring_alpha():
    result = check.dirichlet_mixes(lambda a, p, n, rng: rng.dirichlet(np.asarray(p), size=n))
    assert_fail(result)
    assert "spread" in result.message


def test_dirichlet_mixes_rejects_unnormalised_rows_and_global_randomness():
    assert_fail(check.dirichlet_mixes(lambda a, p, n, rng: rng.gamma(a * np.asarray(p), size=(n, len(p)))))
    result = check.dirichlet_mixes(lambda a, p, n, rng: np.random.dirichlet(a * np.asarray(p), size=n))
    assert_fail(result, "rng")


def test_dirichlet_mixes_says_nothing_before_an_attempt():
    def stub(alpha, p, n_parties, rng):
        raise NotImplementedError("write your solution here")

    result = check.dirichlet_mixes(stub)
    assert_fail(result)
    assert result.hint == "" and "no answer yet" in result.message


@pytest.mark.parametrize("answer", [raises, None, "text", np.zeros(3), lambda *a: np.zeros((2, 2)),
                                    lambda *a: "text"])
def test_dirichlet_mixes_never_raises(answer):
    assert_fail(check.dirichlet_mixes(answer))


def test_more_rounds_runs_both_settings_and_accepts_the_slower_one():
    a, b = (noniid.rounds_to_target(*noniid.SETTINGS[k]) for k in "ab")
    slower = "a" if (a is None or (b is not None and a > b)) else "b"
    assert_pass(check.more_rounds(slower))
    assert_fail(check.more_rounds("b" if slower == "a" else "a"), "u = E * ceil(m_i / B)")


def test_more_rounds_without_an_answer_gives_no_hint():
    result = check.more_rounds(None)
    assert_fail(result)
    assert result.hint == ""
    assert_fail(check.more_rounds("c"))
