"""Checkers of notebook 08: reference solutions pass, typical mistakes fail with a specific hint, stubs get no hint.

The reference solutions are written here from the formulas (and dp-accounting,
called directly), not with the checkers' own helpers.
"""

import numpy as np
import pytest

from fl_helpers import check


def solution(G, W, l2):
    rows = G[1:] - l2 * W[1:]                    # the server knows W and the penalty
    label = int(np.argmin(G[0]))
    return rows[:, label] / G[0, label], label


def test_the_reference_solution_passes():
    assert check.recover_digit(solution)


def stub(G, W, l2):
    raise NotImplementedError("write your solution here")


def test_an_untouched_exercise_fails_without_a_hint():
    for result in (check.recover_digit(stub), check.noise_for_epsilon(None)):
        assert not result and result.hint == ""


def first_col(G, W, l2):
    c = int(np.argmin(G[0]))
    return c, G[1:] - l2 * W[1:]


@pytest.mark.parametrize("wrong, words", [
    (lambda G, W, l2: ((lambda c, R: (np.concatenate([[1.0], R[:, c] / G[0, c]]), c))(*first_col(G, W, l2))),
     "drop the first"),
    (lambda G, W, l2: (G[1:, int(np.argmin(G[0]))] / G[0, int(np.argmin(G[0]))], int(np.argmin(G[0]))),
     "penalised gradient"),
    (lambda G, W, l2: ((lambda c, R: (R[:, int(np.argmax(G[0]))] / G[0, int(np.argmax(G[0]))],
                                      int(np.argmax(G[0]))))(*first_col(G, W, l2))), "argmin"),
    (lambda G, W, l2: ((lambda c, R: (R[:, c], c))(*first_col(G, W, l2))), "Divide the column"),
    (lambda G, W, l2: 3, "pair"),
    (lambda G, W, l2: (solution(G, W, l2)[0], G[0] < 0), "one integer"),
])
def test_typical_mistakes_get_their_hint(wrong, words):
    result = check.recover_digit(wrong)
    assert not result and words in result.hint + result.message


def reference_sigma():
    import dp_accounting as dpa
    from dp_accounting.rdp import rdp_privacy_accountant as rdp

    e = check.privacy.DP_EXERCISE
    lo, hi = 0.1, 20.0                                       # bisection on z, written here
    for _ in range(60):
        mid = (lo + hi) / 2
        acc = rdp.RdpAccountant()
        acc.compose(dpa.SelfComposedDpEvent(dpa.PoissonSampledDpEvent(e["sample_rate"], dpa.GaussianDpEvent(mid)),
                                            e["rounds"]))
        lo, hi = (lo, mid) if acc.get_epsilon(e["delta"]) <= e["target_epsilon"] else (mid, hi)
    return hi, hi * e["clip_norm"] / (e["sample_rate"] * e["n_parties"])


def test_the_right_sigma_passes_and_typical_mistakes_fail():
    z, sigma = reference_sigma()
    assert check.noise_for_epsilon(sigma)
    assert not check.noise_for_epsilon(1.01 * sigma)
    e = check.privacy.DP_EXERCISE
    assert "qN, not by N" in check.noise_for_epsilon(z * e["clip_norm"] / e["n_parties"]).hint
    assert "*sum*" in check.noise_for_epsilon(z * e["clip_norm"]).hint
    assert "number" in check.noise_for_epsilon("two").message
