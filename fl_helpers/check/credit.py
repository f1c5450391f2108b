r"""Checkers for the exercises of notebook 12 (credit scoring across banks).

Each returns a :class:`~fl_helpers.check.CheckResult` that prints ``PASS ...``
or ``FAIL ... Hint: ...`` and never raises because of the student's code.

:func:`lending_decision`
    ``fn(p, loss_if_default, margin_if_repaid) -> approve``: a boolean array, True where lending
    has a positive expected profit, :math:`(1 - p)\,G - p\,L > 0`, i.e. :math:`p < G/(G + L)`
    (``p`` the calibrated default probabilities, :math:`L` the loss if the customer defaults,
    :math:`G` the margin if they repay). The cases have no probability exactly at the threshold.
:func:`undo_oversampling`
    ``fn(p, factor) -> probabilities``: the prior correction of a model trained with every default
    repeated ``factor`` :math:`k` times (King and Zeng 2001). Oversampling multiplies the odds by
    :math:`k`, so the correction divides them by :math:`k`:
    :math:`\operatorname{logit} p' = \operatorname{logit} p - \log k`, i.e.
    :math:`p' = p / (p + k(1 - p))`.

The reference solutions and the wrong answers each checker must reject live in
``tests/test_check_credit.py``.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from ._common import RETURNED_NONE, CheckResult, attempt, read_only

# --------------------------------------------------------------------------- lending decision

def _decision_cases():
    """``(p, L, G)``: one by hand (threshold 0.2), then random probabilities with other costs."""
    rng = np.random.default_rng(1212)
    cases = [(np.array([0.01, 0.19, 0.21, 0.3, 0.45, 0.5, 0.9, 0.05]), 4000.0, 1000.0)]
    for loss, margin in ((10_000.0, 300.0), (2_000.0, 2_000.0), (500.0, 1_500.0)):
        p = rng.beta(0.5, 8.0, size=200)
        threshold = margin / (margin + loss)
        p = p[np.abs(p - threshold) > 1e-6]
        cases.append((p, loss, margin))
    return [(read_only(p, dtype=np.float64)[0], loss, margin) for p, loss, margin in cases]


def _approve(p, loss, margin):
    return (1 - p) * margin - p * loss > 0


def lending_decision(fn: Callable) -> CheckResult:
    r"""Check ``fn(p, loss_if_default, margin_if_repaid)``: approve where :math:`(1 - p)G - pL > 0`."""
    name = "lending_decision"
    hint = ("Lending to a customer earns the margin G with probability 1 − p and loses L with probability p: "
            "approve when the expected profit (1 − p)·G − p·L is positive, i.e. p < G / (G + L).")
    if not callable(fn):
        return CheckResult(name, False, f"expected a function, got {type(fn).__name__}", hint)
    for c, (p, loss, margin) in enumerate(_decision_cases(), start=1):
        where = f"case {c} (L = {loss:,.0f}, G = {margin:,.0f}, {len(p)} customers)"
        got, stop = attempt(name, fn, (p, loss, margin), where=where, hint=hint, none=RETURNED_NONE)
        if stop is not None:
            return stop
        try:
            got = np.asarray(got)
        except Exception:  # an object numpy cannot read
            return CheckResult(name, False, f"{where}: expected an array of True/False", hint)
        if got.shape != p.shape:
            return CheckResult(name, False, f"{where}: expected one decision per customer, shape {p.shape}, got "
                                            f"{got.shape}", hint)
        if got.dtype.kind not in "biu" or not np.all(np.isin(got, (0, 1))):
            return CheckResult(name, False, f"{where}: expected True (approve) / False (decline), got values of "
                                            f"dtype {got.dtype}", hint)
        want = _approve(p, loss, margin)
        got = got.astype(bool)
        if not np.array_equal(got, want):
            specific = None
            if np.array_equal(got, ~want):
                specific = "Your decisions are the opposite: approve the customers *unlikely* to default."
            elif np.array_equal(got, p < 0.5):
                specific = ("You approved everyone with p < 1/2, as a classifier would. Money decides here: one "
                            "default costs L, one repaid loan earns G, so the threshold is G / (G + L).")
            elif np.array_equal(got, p < margin / loss):
                specific = "Close: solve (1 − p)·G = p·L for p; the threshold is G / (G + L), not G / L."
            elif np.array_equal(got, p < loss / (margin + loss)):
                specific = "You swapped L and G: the threshold on p is G / (G + L)."
            wrong = int(np.sum(got != want))
            return CheckResult(name, False, f"{where}: {wrong} of {len(p)} decisions differ from the expected ones",
                               specific or hint)
    p, loss, margin = _decision_cases()[1]
    return CheckResult(name, True, f"all {len(_decision_cases())} cases agree; with L = {loss:,.0f} and G = "
                                   f"{margin:,.0f} a bank lends only below p = {margin / (margin + loss):.3f}")


# --------------------------------------------------------------------------- prior correction

def _correction_cases():
    rng = np.random.default_rng(1213)
    cases = [(np.array([0.5, 0.9, 0.1, 0.75]), 3)]
    for k in (1, 10, 29):
        cases.append((rng.uniform(0.001, 0.999, size=50), k))
    return [(read_only(p, dtype=np.float64)[0], k) for p, k in cases]


def _corrected(p, k):
    return p / (p + k * (1.0 - p))


def undo_oversampling(fn: Callable) -> CheckResult:
    r"""Check ``fn(p, factor)``: the probabilities of a model trained on oversampled defaults, corrected."""
    name = "undo_oversampling"
    hint = ("Repeating every default k times multiplies the odds p / (1 − p) by k. Divide the predicted odds by k "
            "and turn them back into a probability: odds / (1 + odds).")
    if not callable(fn):
        return CheckResult(name, False, f"expected a function, got {type(fn).__name__}", hint)
    for c, (p, k) in enumerate(_correction_cases(), start=1):
        where = f"case {c} (factor = {k}, {len(p)} probabilities)"
        got, stop = attempt(name, fn, (p, k), where=where, hint=hint, none=RETURNED_NONE)
        if stop is not None:
            return stop
        try:
            got = np.asarray(got, dtype=np.float64)
        except (TypeError, ValueError):
            return CheckResult(name, False, f"{where}: expected an array of probabilities", hint)
        if got.shape != p.shape:
            return CheckResult(name, False, f"{where}: expected shape {p.shape}, got {got.shape}", hint)
        want = _corrected(p, k)
        if not np.allclose(got, want, rtol=1e-9, atol=1e-12):
            specific = None
            if np.allclose(got, p / k, rtol=1e-9):
                specific = ("Dividing p by k is right only for tiny p: it is the odds p / (1 − p) that oversampling "
                            "multiplied by k.")
            elif np.allclose(got, k * p / (k * p + 1 - p), rtol=1e-9):
                specific = "Wrong direction: you multiplied the odds by k again; divide them by k."
            elif np.allclose(got, np.log(p / (1 - p)) - np.log(k), rtol=1e-9):
                specific = "That is the corrected logit; return the probability, 1 / (1 + exp(−logit))."
            err = float(np.nanmax(np.abs(got - want))) if np.any(np.isfinite(got)) else float("nan")
            return CheckResult(name, False, f"{where}: largest difference {err:.3g} from the expected probabilities",
                               specific or hint)
    return CheckResult(name, True, f"all {len(_correction_cases())} cases agree: p = 0.5 from a model trained "
                                   f"with every default 29 times is p = {_corrected(0.5, 29):.4f}")
