"""Checkers of notebooks 00 and 01: accept the reference solutions, reject typical wrong answers.

The reference solutions of the exercises live here (not in the notebooks).
"""

import numpy as np
import pytest
from checks_helpers import assert_fail, raises

from fl_helpers import check
from fl_helpers.check.centralized import GLOSSARY, ROUND_STEPS

# ----------------------------------------------------------------- reference solutions


def solution_recover(theta, grad):
    r = grad[0] / 2
    x = grad[1:] / grad[0]
    return x, theta[0] + x @ theta[1:] - r


def solution_mse_gradient(theta, X, y):
    Xt = np.hstack([np.ones((X.shape[0], 1)), X])
    return 2 / X.shape[0] * Xt.T @ (Xt @ theta - y)


def solution_stable_learning_rate(X):
    Xt = np.hstack([np.ones((X.shape[0], 1)), X])
    H = 2 / X.shape[0] * Xt.T @ Xt
    return 2 / np.linalg.eigvalsh(H)[-1]


def solution_standardize(X):
    return (X - X.mean(axis=0)) / X.std(axis=0)


SOLUTION_GLOSSARY = {
    "参与方": "party", "中央服务器": "central server", "本地数据": "local data",
    "模型参数": "model parameters", "本地梯度": "local gradient", "聚合更新": "aggregated update",
    "联邦学习": "federated learning",
}




# ----------------------------------------------------------------- notebook 00


def test_round_order_accepts_the_round():
    result = check.round_order(list(ROUND_STEPS))
    assert result and str(result).startswith("PASS")


def test_round_order_accepts_other_case_and_spaces():
    assert check.round_order([f"  {s.upper()} " for s in ROUND_STEPS])


def test_round_order_rotation_gets_the_broadcast_hint():
    rotated = list(ROUND_STEPS[1:]) + [ROUND_STEPS[0]]   # the article's order: train first
    assert_fail(check.round_order(rotated), "broadcast")


def test_round_order_aggregate_before_local_work():
    steps = list(ROUND_STEPS)
    steps[1], steps[2] = steps[2], steps[1]
    assert_fail(check.round_order(steps), "received")


def test_round_order_update_before_aggregate():
    steps = list(ROUND_STEPS)
    steps[2], steps[3] = steps[3], steps[2]
    assert_fail(check.round_order(steps), "aggregation comes first")


def test_round_order_rejects_missing_unknown_and_wrong_type():
    assert_fail(check.round_order(list(ROUND_STEPS[:3])))
    assert "missing" in check.round_order(list(ROUND_STEPS[:3])).message
    assert "unknown" in check.round_order(list(ROUND_STEPS[:3]) + ["train"]).message
    assert_fail(check.round_order("broadcast"))
    assert_fail(check.round_order(42))


def test_glossary_accepts_solution_and_synonyms():
    assert check.glossary(SOLUTION_GLOSSARY)
    assert check.glossary({**SOLUTION_GLOSSARY, "参与方": "Clients", "本地梯度": "Local  Gradients"})


def test_glossary_rejects_swapped_and_missing_terms():
    swapped = {**SOLUTION_GLOSSARY, "本地数据": "local gradient", "本地梯度": "local data"}
    result = check.glossary(swapped)
    assert_fail(result)
    assert "本地数据" in result.message and "1 more" in result.message
    missing = dict(SOLUTION_GLOSSARY)
    del missing["联邦学习"]
    assert "联邦学习" in check.glossary(missing).message
    assert_fail(check.glossary(["party"]))


def test_glossary_covers_the_articles_terms():
    assert set(GLOSSARY) == set(SOLUTION_GLOSSARY)


def test_recover_sample_accepts_solution():
    assert check.recover_sample_from_gradient(solution_recover)


def test_recover_sample_rejects_typical_mistakes():
    assert_fail(check.recover_sample_from_gradient(lambda theta, g: (g[1:], 0.0)), "divided by grad[0]")
    def wrong_sign(theta, g):
        x = g[1:] / g[0]
        return x, theta[0] + x @ theta[1:] + g[0] / 2
    assert_fail(check.recover_sample_from_gradient(wrong_sign), "sign")
    def only_x(theta, g):
        return g[1:] / g[0]
    result = check.recover_sample_from_gradient(only_x)
    assert_fail(result)
    assert "pair" in result.message


def test_recover_sample_never_raises():
    result = check.recover_sample_from_gradient(raises)
    assert_fail(result)
    assert "RuntimeError" in result.message
    assert_fail(check.recover_sample_from_gradient("not a function"))


# ----------------------------------------------------------------- notebook 01


def test_mse_gradient_accepts_solution_and_library():
    from fl_helpers.linear import mse_gradient
    assert check.mse_gradient(solution_mse_gradient)
    assert check.mse_gradient(mse_gradient)


@pytest.mark.parametrize("wrong, word", [
    (lambda t, X, y: solution_mse_gradient(t, X, y) / 2, "factor 2"),
    (lambda t, X, y: -solution_mse_gradient(t, X, y), "sign"),
    (lambda t, X, y: solution_mse_gradient(t, X, y) * X.shape[0], "divide by m"),
    (lambda t, X, y: solution_mse_gradient(t, X, y) * X.shape[0] / (X.shape[1] + 1), "number of parameters"),
    (lambda t, X, y: 2 / len(y) * X.T @ (t[0] + X @ t[1:] - y), "intercept"),
    (lambda t, X, y: np.concatenate([[0.0], 2 / len(y) * X.T @ (t[0] + X @ t[1:] - y)]), "intercept"),
])
def test_mse_gradient_rejects_typical_mistakes(wrong, word):
    assert_fail(check.mse_gradient(wrong), word)


def test_mse_gradient_never_raises_and_keeps_inputs():
    assert_fail(check.mse_gradient(raises))
    seen = []
    def mutating(theta, X, y):
        seen.append(X)
        X[:] = 0.0                       # a careless student overwrites its input
        return solution_mse_gradient(theta, X, y)
    assert_fail(check.mse_gradient(mutating))
    assert check.mse_gradient(solution_mse_gradient)   # the checker's cases are intact


def test_stable_learning_rate_accepts_solution():
    assert check.stable_learning_rate(solution_stable_learning_rate)


@pytest.mark.parametrize("wrong, word", [
    (lambda X: solution_stable_learning_rate(X) / 2, "2/λmax"),
    (lambda X: 2 * solution_stable_learning_rate(X), "factor 2/m"),
    (lambda X: 2 / np.linalg.eigvalsh(2 * X.T @ X / len(X))[-1], "intercept"),
    (lambda X: 2 / np.linalg.eigvalsh(np.hstack([np.ones((len(X), 1)), X]).T
                                      @ np.hstack([np.ones((len(X), 1)), X]))[-1], "Divide by m"),
])
def test_stable_learning_rate_rejects_typical_mistakes(wrong, word):
    assert_fail(check.stable_learning_rate(wrong), word)


def test_stable_learning_rate_smallest_eigenvalue():
    def smallest(X):
        Xt = np.hstack([np.ones((X.shape[0], 1)), X])
        return 2 / np.linalg.eigvalsh(2 / X.shape[0] * Xt.T @ Xt)[0]
    assert not check.stable_learning_rate(smallest)


def test_stable_learning_rate_never_raises():
    assert_fail(check.stable_learning_rate(raises))
    assert_fail(check.stable_learning_rate(None))


def test_standardize_accepts_solution_and_rejects_mistakes():
    assert check.standardize(solution_standardize)
    assert_fail(check.standardize(lambda X: X - X.mean(axis=0)), "divide")
    assert_fail(check.standardize(lambda X: (X - X.mean()) / X.std()), "axis=0")
    assert_fail(check.standardize(lambda X: X / X.std(axis=0)), "subtract")
    assert_fail(check.standardize(lambda X: (X - X.mean(axis=1, keepdims=True)) / X.std(axis=1, keepdims=True)))
    assert_fail(check.standardize(raises))


def test_results_print_one_line_verdicts():
    passed = check.standardize(solution_standardize)
    failed = check.standardize(lambda X: X)
    assert str(passed).startswith("PASS standardize") and "\n" not in str(passed)
    assert str(failed).startswith("FAIL standardize") and "Hint:" in str(failed)


# ----------------------------------------------------------------- untouched exercises, synonyms


def test_untouched_exercises_get_no_hint():
    """The saved notebook shows the untouched exercise: it must not print the answer's recipe."""
    def stub(*args):
        raise NotImplementedError("replace this line with your code")

    results = [check.round_order([]), check.glossary({t: "..." for t in GLOSSARY}),
               check.recover_sample_from_gradient(stub), check.mse_gradient(stub),
               check.stable_learning_rate(stub), check.standardize(stub)]

    for r in results:
        assert not r and r.hint == "" and "no answer yet" in r.message, r
        assert "Hint" not in str(r)


def test_a_wrong_attempt_gets_its_hint():
    r = check.round_order(list(reversed(ROUND_STEPS)))
    assert not r and r.hint and "Hint:" in str(r)


def test_the_glossary_accepts_reasonable_synonyms():
    answers = dict(SOLUTION_GLOSSARY, **{"联邦学习": "FL", "本地数据": "local dataset"})
    assert check.glossary(answers)


def test_standardize_with_the_sample_deviation_gets_a_targeted_hint():
    result = check.standardize(lambda X: (X - X.mean(axis=0)) / X.std(axis=0, ddof=1))
    assert_fail(result, "ddof=1", "m − 1")
