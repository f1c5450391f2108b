"""Checkers of notebook 16: reference solutions pass, typical mistakes fail with their hint, stubs get no hint.

The reference solutions are written here with explicit loops over the rated items, not with
the library's vectorised code.
"""

import numpy as np
from checks_helpers import assert_fail, assert_pass, raises

from fl_helpers import check, recommend


def gradient(u, V, items, r, mean):
    G = np.zeros_like(V)
    for i, r_i in zip(items, r):
        G[i] = -2.0 * (r_i - mean - u @ V[i]) * u
    return G


def step(u, V, items, r, mean, lr, reg):
    g = 2.0 * reg * u
    for i, r_i in zip(items, r):
        g = g - 2.0 * (r_i - mean - u @ V[i]) * V[i]
    return u - lr * g


def precision(n_rated, n_fake, n_items):
    fake = min(n_fake, n_items - n_rated)
    return n_rated / (n_rated + fake)


def stub(*args):
    raise NotImplementedError("write your solution here")


def test_the_reference_solutions_pass():
    assert_pass(check.item_gradient(gradient))
    assert_pass(check.user_step(step))
    assert_pass(check.fake_item_precision(precision))


def test_the_reference_gradient_is_the_librarys_message():
    r = recommend.make_ratings(6, 5, rank=2, density=0.5, seed=0)
    U, V = recommend.init_factors(6, 5, 2, seed=0)
    items = r.rated(2)
    np.testing.assert_allclose(gradient(U[2], V, items, r.values[2, items], r.mean),
                               recommend.item_gradients(U, V, r, users=[2])[0], atol=1e-14)


def test_untouched_exercises_fail_without_a_hint():
    for checker in (check.item_gradient, check.user_step, check.fake_item_precision):
        for answer in (stub, lambda *args: None):
            result = checker(answer)
            assert_fail(result)
            assert result.hint == ""


def test_typical_wrong_gradients_fail_with_their_hint():
    assert_fail(check.item_gradient(lambda *a: -gradient(*a)), "Sign")
    assert_fail(check.item_gradient(lambda *a: gradient(*a) / 2), "factor 2")
    assert_fail(check.item_gradient(lambda u, V, i, r, m: gradient(u, V, i, r, 0.0)), "μ")

    def dense(u, V, items, r, mean):           # every item treated as rated with rating 0
        G = gradient(u, V, items, r, mean)
        others = np.setdiff1d(np.arange(len(V)), items)
        G[others] = -2.0 * (0.0 - mean - V[others] @ u)[:, None] * u
        return G
    assert_fail(check.item_gradient(dense), "exactly 0")
    assert_fail(check.item_gradient(raises), "-2 (r_i")
    assert_fail(check.item_gradient(3))


def test_typical_wrong_steps_fail_with_their_hint():
    assert_fail(check.user_step(lambda u, V, i, r, m, lr, reg: step(u, V, i, r, m, lr, 0.0)), "2 λ u")
    assert_fail(check.user_step(lambda u, V, i, r, m, lr, reg: 2 * u - step(u, V, i, r, m, lr, reg)),
                "against the gradient")
    assert_fail(check.user_step(lambda u, V, i, r, m, lr, reg: step(u, V, i, r, m, lr / 2, reg)), "factor 2")


def test_typical_wrong_precisions_fail_with_their_hint():
    assert_fail(check.fake_item_precision(lambda n, f, N: n / (n + f)), "unrated")
    assert_fail(check.fake_item_precision(lambda n, f, N: f / (n + f)), "right guesses")
    assert_fail(check.fake_item_precision(lambda n, f, N: 1.0), "right guesses")
