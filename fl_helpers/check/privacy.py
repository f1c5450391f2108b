r"""Checkers for the exercises of notebook 08 (privacy: attacks and differential privacy).

Each returns a :class:`~fl_helpers.check.CheckResult` that prints ``PASS ...``
or ``FAIL ... Hint: ...`` and never raises because of the student's code.

:func:`recover_digit`
    ``fn(G, W, l2)``: from the gradient ``G`` ((d + 1) x K, intercept row first)
    of softmax regression's cross-entropy on *one* sample, with the penalty
    :math:`\frac{\lambda}{2}\lVert W_{1:}\rVert^2` (``l2`` :math:`= \lambda`; the
    intercepts are not penalised), at the broadcast weights ``W``, return
    ``(x, label)``. The cases are gradients written here by hand,
    :math:`G = [1, x]^\top(p - e_y) + \lambda[0; W_{1:}]`, and the answer is
    compared with the sample itself.
:func:`noise_for_epsilon`
    A number: the standard deviation of the noise on the server's *average*
    update, :math:`zS/(qN)`, with :math:`z` the smallest noise multiplier whose
    RDP epsilon is at most the target (dp-accounting, called here directly).

The reference solutions and the wrong answers each checker must reject live in
``tests/test_check_privacy.py``.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from ._common import CheckResult, no_answer, read_only

#: The exercise's setting: target epsilon, delta, sample rate q, rounds, clip S, parties N.
DP_EXERCISE = {"target_epsilon": 2.0, "delta": 1e-5, "sample_rate": 0.05, "rounds": 200, "clip_norm": 0.5,
               "n_parties": 2000}


def _digit_cases():
    """``(G, W, l2, x, label)``: penalised softmax gradients of single samples, by hand, 3 to 10 classes."""
    rng = np.random.default_rng(808)
    cases = []
    for d, K, l2 in ((2, 3, 0.0), (5, 4, 0.1), (64, 10, 0.01), (8, 10, 0.5), (3, 5, 1.0)):
        x = rng.uniform(0.0, 1.0, size=d)
        label = int(rng.integers(K))
        W = 0.3 * rng.normal(size=(d + 1, K))
        z = np.concatenate([[1.0], x]) @ W
        p = np.exp(z - z.max())
        p /= p.sum()
        G = np.outer(np.concatenate([[1.0], x]), p - np.eye(K)[label])
        G[1:] += l2 * W[1:]
        G, W = read_only(G, W)
        cases.append((G, W, l2, x, label))
    return cases


def recover_digit(fn: Callable) -> CheckResult:
    r"""Check ``fn(G, W, l2) -> (x, label)`` on single-sample softmax gradients with an L2 penalty on ``W[1:]``."""
    name = "recover_digit"
    hint = ("The server knows W and λ, so first remove the penalty: G[1:] − λ W[1:]. Then column c is "
            "(p_c − [c = y]) · [1, x]; row 0 (the intercepts, not penalised) is p − e_y, negative only in the "
            "label's column. Any column divided by its row-0 entry is [1, x]; drop the leading 1.")
    if not callable(fn):
        return CheckResult(name, False, f"expected a function, got {type(fn).__name__}", hint)
    for k, (G, W, l2, x, label) in enumerate(_digit_cases(), start=1):
        try:
            got = fn(G, W, l2)
        except NotImplementedError:
            return no_answer(name)
        except Exception as exc:  # the student's bug, reported, not raised
            return CheckResult(name, False, f"case {k} raised {type(exc).__name__}: {exc}", hint)
        try:
            got_x, got_label = got
            got_x = np.asarray(got_x, dtype=np.float64)
        except (TypeError, ValueError):
            return CheckResult(name, False, f"case {k}: return a pair (x, label), got {type(got).__name__}", hint)
        if got_x.shape != x.shape:
            specific = None
            if got_x.shape == (len(x) + 1,):
                specific = "You returned [1, x]: drop the first entry (the intercept's 1)."
            return CheckResult(name, False, f"case {k}: x should have shape {x.shape}, got {got_x.shape}",
                               specific or hint)
        if not np.allclose(got_x, x, rtol=1e-8, atol=1e-10):
            specific = None
            if l2 > 0 and np.allclose(got_x, G[1:, label] / G[0, label]):
                specific = ("You read x from the penalised gradient: subtract λ W[1:] from rows 1.. first "
                            "(the intercept row has no penalty).")
            elif np.allclose(got_x, -x) or np.allclose(got_x, G[1:, label] - l2 * W[1:, label]):
                specific = ("Divide the column by its own row-0 entry (p_c − [c = y]), sign included, so the "
                            "factor cancels exactly.")
            return CheckResult(name, False, f"case {k}: x is off by up to {np.max(np.abs(got_x - x)):.3g}",
                               specific or hint)
        try:
            got_label = int(np.asarray(got_label).item())
        except (TypeError, ValueError):
            return CheckResult(name, False, f"case {k}: the label should be one integer, got {got_label!r}", hint)
        if got_label != label:
            specific = None
            if got_label == int(np.argmax(G[0])):
                specific = "The label's entry of row 0 is p_y − 1 < 0: look for the negative one (argmin), not max."
            return CheckResult(name, False, f"case {k}: label should be {label}, got {got_label!r}",
                               specific or hint)
    return CheckResult(name, True, f"all {len(_digit_cases())} samples recovered exactly, labels included")


def _reference_sigma() -> tuple[float, float]:
    """``(z, sigma)`` for :data:`DP_EXERCISE`, from dp-accounting directly."""
    import dp_accounting as dpa
    from dp_accounting.rdp import rdp_privacy_accountant as rdp

    e = DP_EXERCISE

    def event(z):
        return dpa.SelfComposedDpEvent(dpa.PoissonSampledDpEvent(e["sample_rate"], dpa.GaussianDpEvent(z)),
                                       e["rounds"])

    z = dpa.calibrate_dp_mechanism(rdp.RdpAccountant, event, e["target_epsilon"], e["delta"],
                                   bracket_interval=dpa.LowerEndpointAndGuess(1e-3, 1.0), tol=1e-5)
    return float(z), float(z) * e["clip_norm"] / (e["sample_rate"] * e["n_parties"])


def noise_for_epsilon(answer) -> CheckResult:
    r"""Check a number: the noise standard deviation on the average update, :math:`zS/(qN)`, for :data:`DP_EXERCISE`."""
    name = "noise_for_epsilon"
    hint = ("First z = privacy.noise_multiplier(target_epsilon, sample_rate, rounds, delta). The server adds "
            "N(0, z²S²) to the sum of the clipped updates and divides by the expected number of parties qN.")
    if answer is None:
        return no_answer(name, "no answer yet: set MY_SIGMA to a number (a hint appears after a first wrong "
                               "attempt)")
    try:
        value = float(answer)
    except (TypeError, ValueError):
        return CheckResult(name, False, f"expected a number, got {type(answer).__name__}", hint)
    z, sigma = _reference_sigma()
    if abs(value - sigma) <= 1e-3 * sigma:
        return CheckResult(name, True, f"σ = {sigma:.5f} on the average (z = {z:.4f})")
    e = DP_EXERCISE
    specific = None
    if abs(value - z) <= 1e-3 * z:
        specific = "That is z itself; the noise on the sum is z·S, and the server divides the sum by qN."
    elif abs(value - z * e["clip_norm"]) <= 1e-3 * z:
        specific = "That is the noise on the *sum* (z·S); the average divides it by the expected count qN."
    elif abs(value - z * e["clip_norm"] / e["n_parties"]) <= 1e-3 * sigma:
        specific = "DP-FedAvg divides by the expected number of participants qN, not by N."
    return CheckResult(name, False, f"{value:.6g} is not the expected σ", specific or hint)
