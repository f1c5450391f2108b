r"""Checkers for the exercises of notebook 10 (robust aggregation).

Each returns a :class:`~fl_helpers.check.CheckResult` that prints ``PASS ...``
or ``FAIL ... Hint: ...`` and never raises because of the student's code. The
expected answers are computed here from the formulas (per-coordinate sorting,
distances of every pair), not with :mod:`fl_helpers.robust`, so a checker also
tests the library's semantics.

:func:`trimmed_mean`
    ``fn(updates, weights, beta)``: the coordinate-wise :math:`\beta`-trimmed
    mean with Flower's semantics: in every coordinate sort the :math:`n` values,
    drop the :math:`b = \lfloor\beta n\rfloor` smallest and the :math:`b` largest,
    average the :math:`n - 2b` left; the weights are ignored (one party, one
    vote). The cases are chosen so that :math:`\beta n` is not an integer
    (nor within a rounding error of one, where ``int(beta * n)`` and the
    mathematical floor can differ: ``0.29 * 100`` is ``28.999999999999996``),
    the weights are unequal and the outliers sit in different rows in
    different coordinates, so each typical mistake gives a different answer.
:func:`krum_scores`
    ``fn(updates, f)``: Krum's score of every update, :math:`s(i) = \sum_{j \in
    N_i}\lVert\Delta_i - \Delta_j\rVert^2` over the :math:`n - f - 2` updates
    nearest to :math:`\Delta_i`, itself excluded (Blanchard et al. 2017). All
    distances in a case are distinct, so neighbourhoods are unambiguous. Its
    second argument ``keeps`` is the student's answer to the question of the
    exercise, the update Krum keeps among the one-dimensional updates
    :data:`KEEPS_UPDATES` with :math:`f = 1`; the verdict is PASS only when both
    are right, and no message names the kept update before the student has
    answered.

A wrong answer is matched against the answers of the typical mistakes on
*every* case (ceil instead of floor, one side only, the weights used; the
update itself among its neighbours, :math:`n - f` neighbours, distances not
squared, ...), and the hint names the one it matches. The reference solutions
and the mistakes each checker must recognise live in
``tests/test_check_robust.py``.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable

import numpy as np

from ._common import CheckResult, no_answer, read_only

# --------------------------------------------------------------------------- shared


def _as_floats(value) -> np.ndarray:
    """The student's answer as a float64 array; raises (caught by the caller) on anything that is not numeric."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")              # a complex answer must not be cast silently
        return np.asarray(value, dtype=np.float64)


def _answers(name: str, fn: Callable, cases, call, shape_of, hint: str):
    """Run ``fn`` on every case: (list of float arrays, None) or (None, a FAIL CheckResult)."""
    if not callable(fn):
        return None, CheckResult(name, False, f"expected a function, got {type(fn).__name__}", hint)
    answers = []
    for k, case in enumerate(cases, start=1):
        try:
            raw = call(fn, case)
        except NotImplementedError:
            return None, no_answer(name)
        except Exception as exc:  # the student's bug, reported, not raised
            return None, CheckResult(name, False, f"case {k} raised {type(exc).__name__}: {exc}", hint)
        try:
            got = _as_floats(raw)
        except Exception:
            return None, CheckResult(name, False, f"case {k}: expected an array of numbers of shape "
                                                  f"{shape_of(case)}, got {type(raw).__name__}", hint)
        answers.append(got)
    return answers, None


def _matches(answers, expected) -> bool:
    return all(a.shape == e.shape and np.allclose(a, e, rtol=1e-9, atol=1e-9) for a, e in zip(answers, expected))


def _first_wrong(answers, expected) -> str:
    for k, (a, e) in enumerate(zip(answers, expected), start=1):
        if a.shape != e.shape:
            return f"case {k}: expected shape {e.shape}, got {a.shape}"
        if not np.allclose(a, e, rtol=1e-9, atol=1e-9):
            if not np.all(np.isfinite(a)):
                return f"case {k}: the answer contains NaN or inf"
            return f"case {k}: largest difference {float(np.max(np.abs(a - e))):.3g} from the expected value"
    return "all cases agree"                       # not reached when the caller saw a mismatch


def _diagnose(answers, cases, variants, reference) -> str | None:
    """The hint of the first typical mistake whose answers equal the student's on every case."""
    for compute, hint in variants:
        try:
            mistaken = [np.asarray(compute(*case), dtype=np.float64) for case in cases]
        except Exception:                        # a mistake that cannot be computed on some case: not this one
            continue
        if _matches(answers, mistaken) and not _matches(mistaken, [reference(*c) for c in cases]):
            return hint
    return None


# --------------------------------------------------------------------------- exercise 1: the trimmed mean


def _trim(updates, low: int, high: int) -> np.ndarray:
    """Sort every coordinate, drop ``low`` values at the bottom and ``high`` at the top, average the rest."""
    ordered = np.sort(np.asarray(updates, dtype=np.float64), axis=0)
    return ordered[low:len(ordered) - high].mean(axis=0)


def _floor_cut(beta, n) -> int:
    return int(beta * n)                         # Flower's int(beta * n), the floor for beta * n >= 0


def _trimmed_reference(updates, weights, beta) -> np.ndarray:
    b = _floor_cut(beta, len(updates))
    return _trim(updates, b, b)


def _trimmed_weighted(updates, weights, beta) -> np.ndarray:
    """The mistake of weighting: in each coordinate, the kept values averaged with their parties' weights."""
    updates, weights = np.asarray(updates, dtype=np.float64), np.asarray(weights, dtype=np.float64)
    n = len(updates)
    b = _floor_cut(beta, n)
    order = np.argsort(updates, axis=0, kind="stable")[b:n - b]
    values = np.take_along_axis(updates, order, axis=0)
    w = weights[order]
    return (w * values).sum(axis=0) / w.sum(axis=0)


def _trimmed_rows(updates, weights, beta) -> np.ndarray:
    """The mistake of trimming whole updates: drop the b shortest and the b longest rows, average the rest."""
    updates = np.asarray(updates, dtype=np.float64)
    n = len(updates)
    b = _floor_cut(beta, n)
    order = np.argsort(np.linalg.norm(updates, axis=1), kind="stable")
    return updates[order[b:n - b]].mean(axis=0)


_TRIMMED_MISTAKES = [
    (lambda u, w, beta: _trim(u, math.ceil(beta * len(u)), math.ceil(beta * len(u))),
     "You cut ⌈βn⌉ values from each side; the rule cuts b = ⌊βn⌋ (Flower's int(beta * n)): with n = 7 and "
     "β = 0.2 that is 1 value from each side, not 2."),
    (lambda u, w, beta: _trim(u, round(beta * len(u)), round(beta * len(u))),
     "You rounded βn to the nearest integer; the rule cuts b = ⌊βn⌋ (Flower's int(beta * n)), rounding down."),
    (lambda u, w, beta: _trim(u, _floor_cut(beta, len(u)), 0),
     "You cut only the b smallest values; cut the b largest too (a trimmed mean is symmetric)."),
    (lambda u, w, beta: _trim(u, 0, _floor_cut(beta, len(u))),
     "You cut only the b largest values; cut the b smallest too (a trimmed mean is symmetric)."),
    (lambda u, w, beta: _trim(u, int(beta * len(u) / 2), int(beta * len(u) / 2)),
     "β is the share cut from *each* side (b = ⌊βn⌋ at the bottom and b at the top), not the total share."),
    (_trimmed_weighted,
     "The trimmed mean ignores the weights (one party, one vote, as in Flower): a plain mean of the kept values. "
     "Weights would let a party that lies about its sample count outvote the others."),
    (lambda u, w, beta: np.sort(np.asarray(u, dtype=np.float64), axis=0)[
        _floor_cut(beta, len(u)):len(u) - _floor_cut(beta, len(u))].sum(axis=0) / len(u),
     "Divide by the number of values kept, n − 2b, not by n."),
    (lambda u, w, beta: np.asarray(u, dtype=np.float64)[
        _floor_cut(beta, len(u)):len(u) - _floor_cut(beta, len(u))].mean(axis=0),
     "Sort each coordinate before cutting (np.sort(updates, axis=0)): the rows come in no particular order."),
    (_trimmed_rows,
     "Trim each coordinate on its own: an attacker may be extreme in one coordinate and ordinary in another, "
     "so dropping whole updates (by their norm) is a different rule."),
    (lambda u, w, beta: np.asarray(u, dtype=np.float64).mean(axis=0),
     "That is the plain mean: nothing was cut. Drop the b = ⌊βn⌋ smallest and largest values of each coordinate."),
    (lambda u, w, beta: np.average(np.asarray(u, dtype=np.float64), axis=0, weights=w),
     "That is the weighted mean: nothing was cut, and the weights are not used by the trimmed mean."),
    (lambda u, w, beta: np.median(np.asarray(u, dtype=np.float64), axis=0),
     "That is the median; the trimmed mean keeps the n − 2b middle values of each coordinate and averages them."),
]


def _trimmed_cases():
    """``(updates, weights, beta)``: beta * n never an integer, unequal weights, an outlier per coordinate."""
    rng = np.random.default_rng(1010)
    cases = [tuple(read_only([[1.0, 10.0], [2.0, 20.0], [3.0, 30.0], [4.0, 40.0], [100.0, -900.0],
                              [5.0, 50.0], [6.0, 60.0]], [0.1, 0.1, 0.1, 0.1, 0.4, 0.1, 0.1])) + (0.2,)]
    for n, p, beta in ((10, 4, 0.25), (9, 3, 0.4), (6, 5, 0.3), (12, 6, 0.15), (11, 3, 0.35)):
        updates = rng.normal(size=(n, p))
        rows = rng.permutation(n)[:p]
        updates[rows, np.arange(p)] = rng.choice([-1.0, 1.0], size=p) * rng.uniform(50.0, 100.0, size=p)
        weights = rng.uniform(0.5, 3.0, size=n)
        u, w = read_only(updates, weights / weights.sum())
        cases.append((u, w, beta))
    return cases


def trimmed_mean(fn: Callable) -> CheckResult:
    r"""Check ``fn(updates, weights, beta) -> (p,)``: the coordinate-wise trimmed mean, ⌊βn⌋ cut per side."""
    name = "trimmed_mean"
    hint = ("In every coordinate j: sort the n values updates[:, j], drop the b = ⌊βn⌋ smallest and the b largest, "
            "and average the n − 2b left (np.sort(updates, axis=0) sorts every column at once). The weights are "
            "not used.")
    cases = _trimmed_cases()
    answers, failed = _answers(name, fn, cases, lambda f, c: f(*c), lambda c: (c[0].shape[1],), hint)
    if failed is not None:                     # a FAIL CheckResult is falsy
        return failed
    expected = [_trimmed_reference(*c) for c in cases]
    if _matches(answers, expected):
        return CheckResult(name, True, f"all {len(cases)} cases agree with the sorted-and-cut mean, b = ⌊βn⌋")
    specific = None
    if all(a.shape == e.shape for a, e in zip(answers, expected)):
        specific = _diagnose(answers, cases, _TRIMMED_MISTAKES, _trimmed_reference)
    return CheckResult(name, False, _first_wrong(answers, expected), specific or hint)


# --------------------------------------------------------------------------- exercise 2: Krum's scores


def _pair_distances(updates, *, squared: bool = True) -> np.ndarray:
    u = np.asarray(updates, dtype=np.float64)
    d2 = ((u[:, None, :] - u[None, :, :]) ** 2).sum(axis=2)
    return d2 if squared else np.sqrt(d2)


def _scores(updates, neighbours: int, *, squared: bool = True, include_self: bool = False,
            farthest: bool = False) -> np.ndarray:
    """Sum over each update's ``neighbours`` nearest (or farthest) others, or itself included as a neighbour."""
    dist = _pair_distances(updates, squared=squared)
    n = len(dist)
    out = []
    for i in range(n):
        row = sorted(dist[i, j] for j in range(n) if include_self or j != i)
        if farthest:
            row = row[::-1]
        out.append(sum(row[:max(neighbours, 0)]))       # a slice, as a student's code takes it
    return np.array(out)


def _krum_reference(updates, f) -> np.ndarray:
    return _scores(updates, len(updates) - f - 2)


_KRUM_MISTAKES = [
    (lambda u, f: _scores(u, len(u) - f - 2, include_self=True),
     "You counted the update itself (distance 0) as one of its n − f − 2 neighbours: leave it out and take the "
     "n − f − 2 nearest *other* updates."),
    (lambda u, f: _scores(u, len(u) - f),
     "Krum sums over the n − f − 2 nearest neighbours, not n − f (Blanchard et al.'s choice: with 2f + 2 < n "
     "there are still more than f of them, so every neighbourhood holds an honest update)."),
    (lambda u, f: _scores(u, len(u) - f - 1),
     "Krum sums over the n − f − 2 nearest neighbours, not n − f − 1 (nor n − f with the update itself "
     "among them)."),
    (lambda u, f: _scores(u, len(u) - f - 2, squared=False),
     "Krum sums *squared* Euclidean distances ‖Δ_i − Δ_j‖², not the distances themselves."),
    (lambda u, f: _scores(u, len(u) - f - 2, farthest=True),
     "Take the *nearest* n − f − 2 neighbours (sort the distances in ascending order)."),
    (lambda u, f: _scores(u, len(u) - 1),
     "You summed the distances to all other updates; Krum keeps only the n − f − 2 nearest, so that f far-away "
     "attackers do not count."),
]


def _krum_cases():
    """``(updates, f)`` with 2f + 2 < n and all pairwise distances distinct; one case worked by hand."""
    rng = np.random.default_rng(2017)
    # by hand: 1-D points 0, 1, 3, 7, 20 with f = 1: 2 neighbours each. Squared distances from 0: 1, 9, 49, 400
    # -> 1 + 9 = 10; from 1: 1, 4, 36 -> 5; from 3: 4, 9, 16 -> 13; from 7: 16, 36 -> 52; from 20: 169, 289 -> 458
    cases = [(read_only([[0.0], [1.0], [3.0], [7.0], [20.0]])[0], 1)]
    for n, p, f in ((7, 3, 2), (9, 4, 3), (6, 2, 0), (10, 5, 1), (8, 3, 2)):
        updates = rng.normal(size=(n, p))
        updates[:f] += rng.normal(loc=6.0, size=(f, p))          # the attackers, somewhere else
        cases.append((read_only(updates)[0], f))
    return cases


KEEPS_UPDATES = (0.0, 1.0, 3.0, 7.0, 20.0)       # the exercise's question: which one does Krum keep with f = 1?
KEEPS_F = 1

_KEEPS_HINTS = {
    0.0: "0 is the smallest update, not the one with the lowest score: with f = 1 each update's score sums its "
         "squared distances to its n − f − 2 = 2 nearest others; for 0 those are 1 and 3.",
    3.0: "3 is the median of the five; Krum is not the median. Each score sums the squared distances to the "
         "n − f − 2 = 2 nearest *other* updates: compare the scores of 1 and 3.",
    7.0: "Krum keeps the update with the *lowest* score; 7's two nearest others, 3 and 1, are 4 and 6 away.",
    20.0: "Krum keeps the update with the *lowest* score, and 20, far from the others, has the largest: the "
          "attacker Krum is built to ignore.",
}


def _keeps_value(answer) -> float | None:
    """The student's answer as a number, or None when it is not one (a bool, a string, an array...)."""
    if isinstance(answer, bool | np.bool_) or not isinstance(answer, int | float | np.integer | np.floating):
        return None
    value = float(answer)
    return value if math.isfinite(value) else None


def _keeps_verdict(name: str, keeps, n_cases: int) -> CheckResult:
    """The verdict on the answer to "which update does Krum keep?", once the student's scores are right."""
    updates = np.array(KEEPS_UPDATES)[:, None]
    scores = _krum_reference(updates, KEEPS_F)
    kept = KEEPS_UPDATES[int(np.argmin(scores))]
    values = ", ".join(f"{v:g}" for v in KEEPS_UPDATES)
    column = "], [".join(f"{v:g}" for v in KEEPS_UPDATES)
    hint = (f"Call your function on the five updates, my_krum_scores(np.array([[{column}]]), {KEEPS_F}): Krum keeps "
            f"the update with the lowest score. Answer with the update's value, not its position.")
    if keeps is None:
        return no_answer(name, f"your scores agree on all {n_cases} cases; now set MY_KRUM_KEEPS to the update Krum "
                               f"keeps among {values} with f = {KEEPS_F}")
    value = _keeps_value(keeps)
    if value is None:
        return CheckResult(name, False, f"your scores agree on all {n_cases} cases, but MY_KRUM_KEEPS should be a "
                                        f"number (one of {values}), got {type(keeps).__name__}", hint)
    if value not in KEEPS_UPDATES:
        return CheckResult(name, False, f"your scores agree on all {n_cases} cases, but {keeps!r} is not one of "
                                        f"the five updates {values}", hint)
    if value != kept:
        return CheckResult(name, False, f"your scores agree on all {n_cases} cases, but Krum does not keep "
                                        f"{value:g}", _KEEPS_HINTS.get(value, hint))
    listed = ", ".join(f"{s:g}" for s in scores)
    return CheckResult(name, True, f"all {n_cases} cases agree, and Krum keeps {kept:g}: the scores of {values} "
                                   f"with f = {KEEPS_F} are {listed}, the lowest is {kept:g}'s")


def krum_scores(fn: Callable, keeps=None) -> CheckResult:
    r"""Check ``fn(updates, f) -> (n,)``, Krum's scores, and ``keeps``, the update Krum keeps in the exercise.

    The scores are squared distances to the :math:`n - f - 2` nearest others; ``keeps`` is the value (one of
    :data:`KEEPS_UPDATES`) of the update with the lowest score for :math:`f = 1`. PASS needs both.
    """
    name = "krum_scores"
    hint = ("For each update i: the squared distances ‖Δ_i − Δ_j‖² to every *other* update j, sorted in ascending "
            "order; the score is the sum of the first n − f − 2 of them. Krum then picks np.argmin of the scores.")
    cases = _krum_cases()
    answers, failed = _answers(name, fn, cases, lambda f, c: f(*c), lambda c: (len(c[0]),), hint)
    if failed is not None:                     # a FAIL CheckResult is falsy
        return failed
    expected = [_krum_reference(*c) for c in cases]
    if _matches(answers, expected):
        return _keeps_verdict(name, keeps, len(cases))
    specific = None
    if all(a.shape == e.shape for a, e in zip(answers, expected)):
        specific = _diagnose(answers, cases, _KRUM_MISTAKES, _krum_reference)
    elif answers[0].shape == ():
        specific = ("Return all n scores, one per update (shape (n,)), not the index Krum picks: the checker "
                    "compares the scores.")
    return CheckResult(name, False, _first_wrong(answers, expected), specific or hint)
