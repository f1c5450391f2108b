"""Checkers of notebook 14: reference solutions pass, typical mistakes fail with their hint, stubs get no hint.

The reference solutions are written here from the definitions: the moments from the sums, and
fine-tuning as a loop of full-batch gradient steps on the mean squared error.
"""

import numpy as np
from checks_helpers import assert_fail, assert_pass, raises

from fl_helpers import check


def moments(sums):
    M = sum(m for m, _, _ in sums)
    mu = sum(s for _, s, _ in sums) / M
    return mu, np.sqrt(sum(q for _, _, q in sums) / M - mu ** 2)


def fine_tune(theta, X, y, lr, epochs):
    Xt = np.column_stack([np.ones(len(y)), X])
    for _ in range(epochs):
        theta = theta - lr * 2 / len(y) * Xt.T @ (Xt @ theta - y)
    return theta


def stub(*args):
    raise NotImplementedError("write your solution here")


def test_the_reference_solutions_pass():
    assert_pass(check.pooled_moments(moments))
    assert_pass(check.fine_tune(fine_tune))


def test_an_untouched_exercise_fails_without_a_hint():
    for result in (check.pooled_moments(stub), check.fine_tune(stub)):
        assert_fail(result)
        assert result.hint == ""
        assert "no answer yet" in result.message


def test_a_student_bug_is_reported_not_raised():
    assert_fail(check.pooled_moments(raises), "M = Σ m_i")
    assert_fail(check.fine_tune(raises), "column of ones")
    assert_fail(check.fine_tune("not a function"))


def test_typical_wrong_moments_fail_with_their_hint():
    def mean_of_means(sums):
        mu = np.mean([s / m for m, s, _ in sums], axis=0)
        return mu, moments(sums)[1]

    def ddof1(sums):
        mu, sigma = moments(sums)
        M = sum(m for m, _, _ in sums)
        return mu, sigma * np.sqrt(M / (M - 1))

    def variance(sums):
        mu, sigma = moments(sums)
        return mu, sigma ** 2

    def no_square_of_mean(sums):
        M = sum(m for m, _, _ in sums)
        return moments(sums)[0], np.sqrt(sum(q for _, _, q in sums) / M)

    def mean_of_stds(sums):
        stds = [np.sqrt(q / m - (s / m) ** 2) for m, s, q in sums]
        return moments(sums)[0], np.mean(stds, axis=0)

    assert_fail(check.pooled_moments(mean_of_means), "plain mean of the hospitals' means")
    assert_fail(check.pooled_moments(ddof1), "ddof = 1")
    assert_fail(check.pooled_moments(variance), "square root")
    assert_fail(check.pooled_moments(no_square_of_mean), "subtract the squared mean")
    assert_fail(check.pooled_moments(mean_of_stds), "between")
    assert_fail(check.pooled_moments(lambda sums: moments(sums)[0]), "μ = Σ s_i / M")


def test_typical_wrong_fine_tuning_fails_with_its_hint():
    def one_step(theta, X, y, lr, epochs):
        return fine_tune(theta, X, y, lr, 1)

    def no_two(theta, X, y, lr, epochs):
        return fine_tune(theta, X, y, lr / 2, epochs)

    def the_update(theta, X, y, lr, epochs):
        return (theta - fine_tune(theta, X, y, lr, epochs)) / lr

    def no_intercept(theta, X, y, lr, epochs):
        w = theta[1:]
        for _ in range(epochs):
            w = w - lr * 2 / len(y) * X.T @ (X @ w - y)
        return w

    def summed(theta, X, y, lr, epochs):
        return fine_tune(theta, X, y, lr * len(y), epochs)

    assert_fail(check.fine_tune(one_step), "You took one step")
    assert_fail(check.fine_tune(no_two), "dropped the 2")
    assert_fail(check.fine_tune(the_update), "return the fine-tuned model")
    assert_fail(check.fine_tune(no_intercept), "column of ones")
    assert_fail(check.fine_tune(summed), "Divide the summed gradient by m")


def test_the_checkers_do_not_let_a_student_modify_the_cases():
    def in_place(theta, X, y, lr, epochs):
        theta[0] = 0.0
        return theta

    assert_fail(check.fine_tune(in_place))
    assert_pass(check.fine_tune(fine_tune))
