"""Checkers of notebook 10 (robust aggregation): reference solutions pass, typical mistakes fail with their hint.

The reference solutions are written here with plain Python loops and sorting (not with fl_helpers.robust
nor with the checker's own helpers); each typical mistake is a small change of them.
"""

import math

import numpy as np
import pytest
from checks_helpers import assert_fail, assert_pass, raises

from fl_helpers import check, robust
from fl_helpers.check import robust as checker

# ----------------------------------------------------------------- exercise 1: trimmed mean


def solution_trimmed_mean(updates, weights, beta):
    """Per coordinate: sort, cut floor(beta n) from each end, average the rest (a loop, no numpy sorting)."""
    n, p = len(updates), len(updates[0])
    b = int(beta * n)
    out = []
    for j in range(p):
        column = sorted(float(updates[i][j]) for i in range(n))
        kept = column[b:n - b]
        out.append(sum(kept) / len(kept))
    return out


def solution_trimmed_mean_numpy(updates, weights, beta):
    b = math.floor(beta * len(updates))
    return np.sort(updates, axis=0)[b:len(updates) - b].mean(axis=0)


def trimmed_with(updates, weights, beta, *, low=None, high=None, weighted=False, sort=True, divide_by_n=False):
    """The loop solution with one mistake: other cuts at the bottom/top, weights, no sorting, a sum over n."""
    n, p = len(updates), len(updates[0])
    b = int(beta * n)
    low = b if low is None else low
    high = b if high is None else high
    out = []
    for j in range(p):
        pairs = [(float(updates[i][j]), float(weights[i])) for i in range(n)]
        if sort:
            pairs.sort()
        kept = pairs[low:n - high]
        if weighted:
            out.append(sum(v * w for v, w in kept) / sum(w for _, w in kept))
        else:
            out.append(sum(v for v, _ in kept) / (n if divide_by_n else len(kept)))
    return out


def ceil_cut(u, w, beta):
    return trimmed_with(u, w, beta, low=math.ceil(beta * len(u)), high=math.ceil(beta * len(u)))


def rounded_cut(u, w, beta):
    return trimmed_with(u, w, beta, low=round(beta * len(u)), high=round(beta * len(u)))


def whole_rows(u, w, beta):
    u = np.asarray(u)
    b = int(beta * len(u))
    keep = np.argsort(np.linalg.norm(u, axis=1))[b:len(u) - b]
    return u[keep].mean(axis=0)


def test_the_reference_solutions_pass():
    assert_pass(check.trimmed_mean(solution_trimmed_mean))
    assert_pass(check.trimmed_mean(solution_trimmed_mean_numpy))
    assert_pass(check.trimmed_mean(lambda u, w, beta: robust.trimmed_mean(u, w, beta)))   # the library agrees


@pytest.mark.parametrize("wrong, words", [
    (ceil_cut, "⌈βn⌉"),
    (rounded_cut, "rounded"),
    (lambda u, w, beta: trimmed_with(u, w, beta, high=0), "cut the b largest too"),
    (lambda u, w, beta: trimmed_with(u, w, beta, low=0), "cut the b smallest too"),
    (lambda u, w, beta: trimmed_with(u, w, beta, low=int(beta * len(u) / 2), high=int(beta * len(u) / 2)),
     "*each* side"),
    (lambda u, w, beta: trimmed_with(u, w, beta, weighted=True), "ignores the weights"),
    (lambda u, w, beta: trimmed_with(u, w, beta, divide_by_n=True), "n − 2b, not by n"),
    (lambda u, w, beta: trimmed_with(u, w, beta, sort=False), "Sort each coordinate"),
    (whole_rows, "whole updates"),
    (lambda u, w, beta: np.mean(u, axis=0), "plain mean"),
    (lambda u, w, beta: np.average(u, axis=0, weights=w), "weighted mean"),
    (lambda u, w, beta: np.median(u, axis=0), "median"),
])
def test_typical_trimmed_mean_mistakes_get_their_hint(wrong, words):
    assert_fail(check.trimmed_mean(wrong), words)


def test_the_checker_recomputes_flowers_cut():
    # the cases never put beta * n on an integer, so that floor and ceil always differ
    for updates, _, beta in checker._trimmed_cases():
        assert abs(beta * len(updates) - round(beta * len(updates))) > 0.1     # not near an integer either
        assert int(beta * len(updates)) == math.floor(beta * len(updates))


# ----------------------------------------------------------------- exercise 2: Krum's scores


def solution_krum_scores(updates, f):
    """Double loop: squared distances to every other update, the n - f - 2 smallest summed."""
    n = len(updates)
    scores = []
    for i in range(n):
        dist = sorted(sum((float(a) - float(b)) ** 2 for a, b in zip(updates[i], updates[j]))
                      for j in range(n) if j != i)
        scores.append(sum(dist[:n - f - 2]))
    return scores


def krum_with(updates, f, *, neighbours=None, include_self=False, squared=True, farthest=False):
    n = len(updates)
    k = n - f - 2 if neighbours is None else neighbours
    scores = []
    for i in range(n):
        dist = [sum((float(a) - float(b)) ** 2 for a, b in zip(updates[i], updates[j]))
                for j in range(n) if include_self or j != i]
        dist = sorted((d if squared else math.sqrt(d) for d in dist), reverse=farthest)
        scores.append(sum(dist[:k]))
    return scores


def test_the_krum_reference_passes_and_agrees_with_the_library():
    assert_pass(check.krum_scores(solution_krum_scores, 1))
    assert_pass(check.krum_scores(lambda u, f: robust.krum_scores(u, f), 1))
    # the hand-worked case of the checker: 1-D points 0, 1, 3, 7, 20 and f = 1
    np.testing.assert_allclose(solution_krum_scores([[0.0], [1.0], [3.0], [7.0], [20.0]], 1), [10, 5, 13, 52, 458])
    assert checker.KEEPS_UPDATES == (0.0, 1.0, 3.0, 7.0, 20.0) and checker.KEEPS_F == 1


@pytest.mark.parametrize("answer", [1, 1.0, np.int64(1), np.float32(1.0)])
def test_the_kept_update_may_be_any_kind_of_number(answer):
    result = check.krum_scores(solution_krum_scores, answer)
    assert_pass(result)
    assert "Krum keeps 1" in result.message and "10, 5, 13, 52, 458" in result.message


def test_right_scores_without_an_answer_fail_and_give_nothing_away():
    result = check.krum_scores(solution_krum_scores)
    assert_fail(result)
    assert result.hint == "" and "MY_KRUM_KEEPS" in result.message
    assert "keeps 1" not in result.message and "458" not in result.message


@pytest.mark.parametrize("answer, words", [
    (0, "smallest update"), (3, "median"), (7, "*lowest*"), (20, "largest"),
    (2, "not its position"), (5, "not its position"), ("1", "number"), (True, "number"), ([1], "number"),
    (float("nan"), "number"), (None, "MY_KRUM_KEEPS"),
])
def test_a_wrong_kept_update_fails_with_its_hint(answer, words):
    result = check.krum_scores(solution_krum_scores, answer)
    assert_fail(result)
    assert words in result.message + result.hint
    assert "Krum keeps 1" not in result.message + result.hint


def test_wrong_scores_fail_whatever_the_kept_update():
    assert_fail(check.krum_scores(lambda u, f: krum_with(u, f, squared=False), 1), "*squared*")
    assert_fail(check.krum_scores(stub, 1))


@pytest.mark.parametrize("wrong, words", [
    (lambda u, f: krum_with(u, f, include_self=True), "the update itself"),
    (lambda u, f: krum_with(u, f, neighbours=len(u) - f), "not n − f"),
    (lambda u, f: krum_with(u, f, neighbours=len(u) - f - 1), "not n − f − 1"),
    (lambda u, f: krum_with(u, f, neighbours=len(u) - f, include_self=True), "not n − f − 1"),
    (lambda u, f: krum_with(u, f, squared=False), "*squared*"),
    (lambda u, f: krum_with(u, f, farthest=True), "*nearest*"),
    (lambda u, f: krum_with(u, f, neighbours=len(u) - 1), "all other updates"),
    (lambda u, f: int(np.argmin(solution_krum_scores(u, f))), "not the index"),
])
def test_typical_krum_mistakes_get_their_hint(wrong, words):
    assert_fail(check.krum_scores(wrong), words)


def test_the_krum_cases_have_distinct_distances_and_satisfy_krums_condition():
    for updates, f in checker._krum_cases():
        n = len(updates)
        assert 2 * f + 2 < n
        d = [float(np.sum((updates[i] - updates[j]) ** 2)) for i in range(n) for j in range(i + 1, n)]
        assert len(set(d)) == len(d)


# ----------------------------------------------------------------- stubs and odd answers


def stub(*args):
    raise NotImplementedError("write your solution here")


def test_an_untouched_exercise_fails_without_a_hint():
    for result in (check.trimmed_mean(stub), check.krum_scores(stub)):
        assert_fail(result)
        assert result.hint == "" and "no answer yet" in result.message


class Weird:
    def __array__(self, dtype=None, copy=None):
        raise RuntimeError("no array here")


@pytest.mark.parametrize("answer", [
    None, "abc", [1.0], {"a": 1}, Weird(), object(), [[1.0, 2.0], [3.0]], np.array([np.nan] * 3),
    np.array([1 + 2j, 3j, 0j]), float("inf"),
])
def test_odd_answers_fail_and_never_raise(answer):
    for checker_fn in (check.trimmed_mean, check.krum_scores):
        assert_fail(checker_fn(lambda *args: answer))


def test_non_functions_and_crashing_functions_fail():
    assert_fail(check.trimmed_mean(3), "sort")
    assert_fail(check.krum_scores("krum"), "squared")
    result = check.krum_scores(raises)
    assert_fail(result) and "RuntimeError" in result.message
    result = check.trimmed_mean(raises)
    assert_fail(result) and "RuntimeError" in result.message


def test_the_cases_are_read_only():
    def writes(updates, *args):
        updates[0, 0] = 1e9
        return np.zeros(updates.shape[1])

    result = check.trimmed_mean(writes)
    assert not result and "raised ValueError" in result.message
