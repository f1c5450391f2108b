r"""Checkers of notebook 17, the same parties on Flower.

:func:`answered_loss`
    ``fn(sizes, losses) -> float``: the global loss of a classroom round in which some parties did
    not answer (their loss is NaN): the sample-weighted mean over the parties that answered,
    :math:`\sum_{i \in A} m_i L_i / \sum_{i \in A} m_i`; NaN if nobody answered.

The reference solution and the wrong answers the checker must reject live in
``tests/test_check_interop.py``.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from ._common import CheckResult, read_only, run_cases, safe


def _cases():
    """``(sizes, losses)``: one by hand, every party answering, one silent party, then random ones."""
    nan = float("nan")
    cases = [([10, 30, 60], [1.0, 2.0, nan]), ([5, 5], [0.5, 1.5]), ([20, 7, 13, 40], [nan, 0.3, 0.9, 0.1])]
    rng = np.random.default_rng(1717)
    for n in (6, 25):
        sizes = rng.integers(1, 100, n)
        losses = rng.uniform(0.1, 3.0, n)
        losses[rng.choice(n, n // 3, replace=False)] = nan
        cases.append((sizes, losses))
    return [tuple(read_only(s, ls, dtype=np.float64)) for s, ls in cases]


def _reference(sizes, losses):
    sizes, losses = np.asarray(sizes, dtype=np.float64), np.asarray(losses, dtype=np.float64)
    answered = ~np.isnan(losses)
    return float(np.sum(sizes[answered] * losses[answered]) / np.sum(sizes[answered]))


def answered_loss(fn: Callable) -> CheckResult:
    r"""Check the global loss of a round in which some parties did not answer."""
    hint = ("Leave out the parties whose loss is NaN (they did not answer), then weight the others by their "
            "sample counts: sum(m_i L_i) / sum(m_i), both sums over the parties that answered.")

    def diagnose(args, got, want):
        sizes, losses = (np.asarray(a, dtype=np.float64) for a in args)
        answered = ~np.isnan(losses)
        if np.isnan(got):
            return "A NaN loss entered the sum: drop the parties that did not answer first (np.isnan)."
        if np.isclose(got, np.sum(sizes[answered] * losses[answered]) / sizes.sum()):
            return ("You divided by all parties' samples: a silent party then counts as a loss of 0, a result "
                    "that is silently wrong. Divide by the samples of the parties that answered.")
        if np.isclose(got, losses[answered].mean()):
            return "That is the unweighted mean; weight each answering party by its sample count m_i."
        return None

    return run_cases("answered_loss", fn, _cases(), _reference, hint=hint, rtol=1e-12, atol=1e-12,
                     diagnose=safe(diagnose))
