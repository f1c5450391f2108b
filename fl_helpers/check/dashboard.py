r"""Self-checks for notebook 05, the live demo.

- :func:`largest_stable_lr`: the learning rate a student read off the
  dashboard's slider, compared with the limit :math:`2/\lambda_{\max}(H)` of
  the dashboard's data (weighted FedSGD with one local step is centralized
  gradient descent, so the limit is the centralized one for every N).
- :func:`bytes_per_round`: the student's count of the bytes one round sends,
  compared with what :func:`fl_helpers.server.train` records.
"""

from __future__ import annotations

import numbers
from collections.abc import Callable

import numpy as np

from ..linear import hessian
from ..parties import Party
from ..server import train
from ..widgets.explorer import explorer_data
from ._common import CheckResult, no_answer, run_cases

#: An answer within this factor below the limit passes (the slider's steps are 12 % apart).
TOLERANCE = 0.85


def stable_lr_limit(seed: int = 0) -> float:
    r"""The dashboard's stability limit :math:`\eta_{\max} = 2/\lambda_{\max}(H)`, :math:`H = \frac2M\tilde X^\top\tilde X`."""
    X, _ = explorer_data(seed)
    return float(2.0 / np.linalg.eigvalsh(hessian(X))[-1])


def largest_stable_lr(answer) -> CheckResult:
    r"""Check the largest learning rate found on the slider: stable, and within 15 % of the limit.

    Stable means :math:`|1 - \eta\lambda| < 1` for every eigenvalue
    :math:`\lambda` of the Hessian, i.e. :math:`\eta < 2/\lambda_{\max}`.
    """
    name = "largest_stable_lr"
    hint = ("Press reset, then move the learning-rate slider up one step at a time (click the handle, "
            "then the arrow keys). The answer is the last value at which the loss still goes down.")
    if answer is None:
        return no_answer(name, "no answer yet: set MY_LARGEST_STABLE_LR to the value you found on the slider")
    if isinstance(answer, bool) or not isinstance(answer, numbers.Real) or not np.isfinite(answer) or answer <= 0:
        return CheckResult(name, False, f"expected a positive number, got {answer!r}", hint)
    limit = stable_lr_limit()
    if answer >= limit:
        return CheckResult(name, False, f"at η = {answer:.3g} the loss does not go down: each step lands "
                           "farther from the minimum than it started",
                           "Look at the loss curve, not only the message: a slowly growing loss is "
                           "divergence too, it just has not reached the alarm level yet.")
    if answer < TOLERANCE * limit:
        return CheckResult(name, False, f"η = {answer:.3g} is stable, but a larger one is too", hint)
    return CheckResult(name, True, f"η = {answer:.3g} is stable; the limit is 2/λmax(H) = {limit:.4f}")


def _bytes_of_a_run(n_selected: int, n_params: int) -> int:
    """Bytes (up + down) of round 1 of a real run with ``n_selected`` parties and ``n_params`` parameters."""
    rng = np.random.default_rng(n_selected * 100 + n_params)
    parties = [Party(rng.standard_normal((3, n_params - 1)), rng.standard_normal(3))
               for _ in range(n_selected)]
    history = train(parties, lr=0.01, rounds=1, engine="vectorized")
    return int(history.bytes_up[0] + history.bytes_down[0])


def bytes_per_round(fn: Callable) -> CheckResult:
    r"""Check ``fn(n_selected, n_params)`` = the bytes one round sends, :math:`8k(2p + 1)`.

    Each of the :math:`k` selected parties downloads the model (:math:`p`
    numbers) and uploads its update (:math:`p` numbers) and its weight
    :math:`m_i` (one number); a float64 number is 8 bytes.
    """
    name = "bytes_per_round"
    hint = ("Count per selected party: the model it downloads (p numbers), the update it uploads "
            "(p numbers) and its weight m_i (1 number); each number is a float64 of 8 bytes.")

    def student(k, p):
        got = fn(k, p)
        if got is None:
            raise TypeError("your function returned None (is the `return` missing?)")
        return got

    def diagnose(args, got, want):
        k, p = args
        wrong = {
            8 * k * 2 * p: "Each party also uploads its weight m_i: one more number per party.",
            8 * k * (p + 1): "That is only the upload: the model also travels down to every party.",
            8 * k * p: "That is only the download of the model.",
            k * (2 * p + 1): "You counted numbers, not bytes: a float64 takes 8 bytes.",
            8 * (2 * p + 1): "That is one party: multiply by the number of selected parties k.",
        }
        return wrong.get(float(got))

    if not callable(fn):
        return CheckResult(name, False, f"expected a function, got {type(fn).__name__}", hint)
    cases = [(1, 2), (10, 2), (7, 5), (200, 11)]
    return run_cases(name, student, cases, _bytes_of_a_run, hint=hint, diagnose=diagnose, rtol=0, atol=0)
