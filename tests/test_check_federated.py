"""Checkers of notebook 02: accept the reference solutions, reject typical wrong answers.

The reference solutions of the exercises live here (not in the notebook).
"""

import numpy as np
import pytest
from checks_helpers import assert_fail, assert_pass, raises

import fl_helpers as fl
from fl_helpers import check

# ----------------------------------------------------------------- reference solutions


def solution_local_gradient(theta, X, y):
    """The article's form: the mean of the per-sample gradients 2 (x̃ᵀθ − y) x̃."""
    total = np.zeros(len(theta))
    for x, target in zip(X, y, strict=True):
        xt = np.concatenate([[1.0], x])
        total += 2 * (xt @ theta - target) * xt
    return total / len(y)


def solution_weighted_aggregate(updates, n_samples):
    n = np.asarray(n_samples, dtype=float)
    return n @ np.asarray(updates) / n.sum()


def solution_fixed_point(data, votes):
    A, b = 0, 0
    for (X, y), v in zip(data, votes, strict=True):
        Xt = np.hstack([np.ones((len(y), 1)), X])
        A = A + v * Xt.T @ Xt / len(y)
        b = b + v * Xt.T @ y / len(y)
    return np.linalg.solve(A, b)


def _bias(X):
    return np.hstack([np.ones((X.shape[0], 1)), X])


# ----------------------------------------------------------------- local_gradient


def test_local_gradient_accepts_the_solutions():
    assert_pass(check.local_gradient(solution_local_gradient))


def test_local_gradient_refuses_the_library_matrix_form_for_this_exercise():
    """Right numbers, wrong skill: the exercise is the loop over samples."""
    result = check.local_gradient(lambda theta, X, y: fl.Party(X, y).gradient(theta))
    assert_fail(result, "one at a time")


def test_local_gradient_solution_matches_a_hand_computed_case():
    # x = [1, 2], y = [1, 3], theta = [0, 1]: residuals [0, -1], gradient (2/2) * [-1, -2]
    g = solution_local_gradient(np.array([0.0, 1.0]), np.array([[1.0], [2.0]]), np.array([1.0, 3.0]))
    np.testing.assert_allclose(g, [-1.0, -2.0])


def test_local_gradient_rejects_a_missing_factor_2():
    result = check.local_gradient(lambda t, X, y: solution_local_gradient(t, X, y) / 2)
    assert_fail(result, "factor 2")


def test_local_gradient_rejects_dividing_by_the_total_count():
    M = 600   # the federation's total, which a party should not use (and does not know)
    result = check.local_gradient(lambda t, X, y: solution_local_gradient(t, X, y) * len(y) / M)
    assert_fail(result, "m_i = len(y)", "not the total M")


def test_local_gradient_rejects_a_sum_instead_of_a_mean():
    result = check.local_gradient(lambda t, X, y: solution_local_gradient(t, X, y) * len(y))
    assert_fail(result, "summed")


def test_local_gradient_rejects_a_forgotten_intercept_column():
    def no_bias(theta, X, y):
        return 2 / len(y) * X.T @ (theta[0] + X @ theta[1:] - y)

    result = check.local_gradient(no_bias)
    assert_fail(result, "forgot the intercept")
    assert "got 3 (d)" in result.message


def test_local_gradient_rejects_a_prediction_without_intercept():
    def no_theta0(theta, X, y):
        Xt = _bias(X)
        return 2 / len(y) * Xt.T @ (X @ theta[1:] - y)

    assert_fail(check.local_gradient(no_theta0), "intercept", "theta[0]")


def test_local_gradient_rejects_a_wrong_sign():
    assert_fail(check.local_gradient(lambda t, X, y: -solution_local_gradient(t, X, y)), "sign")


def test_local_gradient_rejects_a_wrong_intercept_entry():
    def bad(theta, X, y):
        g = solution_local_gradient(theta, X, y)
        g[0] = 0.0
        return g

    assert_fail(check.local_gradient(bad), "intercept entry")


# ----------------------------------------------------------------- weighted_aggregate


def test_weighted_aggregate_accepts_the_solutions():
    assert_pass(check.weighted_aggregate(solution_weighted_aggregate))
    assert_pass(check.weighted_aggregate(fl.aggregate))
    assert_pass(check.weighted_aggregate(
        lambda U, n: fl.aggregate(U, fl.aggregation_weights(n, "samples"))))


def test_weighted_aggregate_rejects_the_articles_unweighted_mean():
    result = check.weighted_aggregate(lambda U, n: np.mean(U, axis=0))
    assert_fail(result, "unweighted mean", "m_i / M")
    assert "case 1" in result.message


def test_weighted_aggregate_rejects_unnormalised_weights():
    assert_fail(check.weighted_aggregate(lambda U, n: n @ U), "not normalised")


def test_weighted_aggregate_rejects_dividing_by_the_number_of_parties():
    assert_fail(check.weighted_aggregate(lambda U, n: n @ U / len(n)), "not by N")


def test_weighted_aggregate_rejects_a_plain_sum():
    assert_fail(check.weighted_aggregate(lambda U, n: np.sum(U, axis=0)), "summed")


# ----------------------------------------------------------------- fixed_point


def test_fixed_point_accepts_the_solutions():
    assert_pass(check.fixed_point(solution_fixed_point))
    # weighted least squares on the stacked rows, each row of party i weighted by v_i / m_i
    assert_pass(check.fixed_point(lambda data, v: np.linalg.lstsq(
        np.vstack([np.sqrt(vi / len(y)) * _bias(X) for (X, y), vi in zip(data, v)]),
        np.concatenate([np.sqrt(vi / len(y)) * y for (X, y), vi in zip(data, v)]), rcond=None)[0]))


def test_fixed_point_solution_is_where_the_runs_stop(concept_shift_parties):
    """Independent of the checker: long FedSGD runs with votes 1 and m_i end on the solution's points."""
    parties = concept_shift_parties
    data = [p.data for p in parties]
    sizes = np.array([p.n_samples for p in parties], dtype=float)
    theta_u = solution_fixed_point(data, np.ones(len(parties)))
    run = fl.fedsgd(parties, lr=0.1, rounds=2000, weighting="uniform")
    np.testing.assert_allclose(run.theta, theta_u, atol=1e-8)
    np.testing.assert_allclose(solution_fixed_point(data, sizes), fl.least_squares(parties), rtol=1e-10)
    assert np.linalg.norm(theta_u - fl.least_squares(parties)) > 0.1


def test_fixed_point_rejects_the_pooled_least_squares():
    def pooled(data, votes):
        X = np.vstack([X for X, _ in data])
        y = np.concatenate([y for _, y in data])
        return np.linalg.lstsq(_bias(X), y, rcond=None)[0]

    assert_fail(check.fixed_point(pooled), "θ*", "v_i / m_i")


def test_fixed_point_rejects_ignoring_the_votes():
    assert_fail(check.fixed_point(lambda data, votes: solution_fixed_point(data, np.ones(len(data)))), "θ°")


def test_fixed_point_rejects_votes_without_the_one_over_m():
    def per_sample(data, votes):
        A = sum(v * _bias(X).T @ _bias(X) for (X, y), v in zip(data, votes))
        b = sum(v * _bias(X).T @ y for (X, y), v in zip(data, votes))
        return np.linalg.solve(A, b)

    assert_fail(check.fixed_point(per_sample), "divide by m_i")


def test_fixed_point_rejects_the_mean_of_local_solutions():
    def mean_of_local(data, votes):
        local = [np.linalg.lstsq(_bias(X), y, rcond=None)[0] for X, y in data]
        return np.asarray(votes) @ np.array(local) / np.sum(votes)

    assert_fail(check.fixed_point(mean_of_local), "own least-squares solutions")


def test_fixed_point_rejects_a_forgotten_intercept():
    def no_bias(data, votes):
        A = sum(v * X.T @ X / len(y) for (X, y), v in zip(data, votes))
        b = sum(v * X.T @ y / len(y) for (X, y), v in zip(data, votes))
        return np.linalg.solve(A, b)

    assert_fail(check.fixed_point(no_bias), "forgot the intercept")


# ----------------------------------------------------------------- never raises


CHECKERS = [check.local_gradient, check.weighted_aggregate, check.fixed_point]


@pytest.mark.parametrize("checker", CHECKERS)
def test_a_raising_student_function_is_a_fail_not_an_exception(checker):
    result = checker(raises)
    assert_fail(result)
    assert "RuntimeError: student bug" in result.message


@pytest.mark.parametrize("checker", CHECKERS)
@pytest.mark.parametrize("answer", [None, "text", [1.0, 2.0, 3.0, 4.0, 5.0, 6.0], float("nan"),
                                    np.full(2, np.inf), np.zeros((2, 2))])
def test_odd_return_values_are_a_fail_not_an_exception(checker, answer):
    assert_fail(checker(lambda *args: answer))


@pytest.mark.parametrize("checker", CHECKERS)
def test_not_a_function_is_a_fail(checker):
    result = checker(np.zeros(3))
    assert_fail(result)
    assert "expected a function, got ndarray" in result.message


@pytest.mark.parametrize("checker", CHECKERS)
def test_the_checkers_inputs_are_read_only(checker):
    def mutate(*args):
        first = args[0][0][0] if isinstance(args[0], list) else args[0]
        first[...] = 0.0
        return first

    result = checker(mutate)
    assert_fail(result)
    assert "read-only" in result.message


def test_not_implemented_stub_prints_one_fail_line_without_a_hint():
    """The untouched exercise gives nothing away: no hint before a first real attempt."""
    def stub(theta, X, y):
        raise NotImplementedError("write your solution here")

    result = check.local_gradient(stub)

    assert not result and result.hint == ""
    assert str(result) == ("FAIL local_gradient: no answer yet: replace the `raise NotImplementedError` line "
                           "with your code (a hint appears after a first wrong attempt)")


def test_local_gradient_asks_for_the_loop_over_samples():
    def matrix_form(theta, X, y):
        Xt = np.hstack([np.ones((len(y), 1)), X])
        return 2 / len(y) * Xt.T @ (Xt @ theta - y)

    def loop_form(theta, X, y):
        total = np.zeros_like(theta)
        for j in range(len(y)):
            x = np.concatenate([[1.0], X[j]])
            total += 2 * (x @ theta - y[j]) * x
        return total / len(y)

    def zip_form(theta, X, y):
        grads = [2 * (theta[0] + x @ theta[1:] - t) * np.concatenate([[1.0], x]) for x, t in zip(X, y)]
        return np.mean(grads, axis=0)

    wrong = check.local_gradient(matrix_form)

    assert not wrong and "whole matrix at once" in wrong.message and "one at a time" in wrong.hint
    assert check.local_gradient(loop_form) and check.local_gradient(zip_form)
