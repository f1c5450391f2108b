r"""Checkers for the exercises of notebook 07 (fixing client drift).

Each returns a :class:`~fl_helpers.check.CheckResult` that prints ``PASS ...``
or ``FAIL ... Hint: ...`` and never raises because of the student's code.

:func:`fedprox_local_update`
    ``fn(theta, X, y, *, lr, epochs, mu)``: FedProx's pseudo-gradient on linear regression,
    :math:`\Delta_i = (\theta - \theta_i)/\eta` after :math:`E` full-batch steps
    :math:`\theta_{i,s+1} = \theta_{i,s} - \eta\big(\nabla L_i(\theta_{i,s}) + \mu(\theta_{i,s} - \theta)\big)`
    (Li et al. 2020, "Federated Optimization in Heterogeneous Networks"), compared with
    :meth:`fl_helpers.Party.local_update` ``(prox_mu=mu)``.
:func:`fedprox_with_momentum`
    A prediction: where FedProx with server momentum (FedAvgM, Hsu et al. 2019) converges, one of
    ``"a"`` :math:`\theta^\star`, ``"b"`` FedAvg's :math:`\bar\theta_E`, ``"c"`` FedProx's
    :math:`\bar\theta_E^\mu`, ``"d"`` the average of the parties' own optima. The checker runs the
    library (:func:`fl_helpers.fedavg` with ``prox_mu`` and ``server_optimizer``) and compares.

The reference solutions and the wrong answers each checker must reject live in
``tests/test_check_drift.py``.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import lru_cache

import numpy as np

from ..linear import add_bias
from ..linear import mse_gradient as _mse_gradient
from ..optim import sgd
from ..parties import Party
from ..reference import least_squares
from ..server import fedavg
from ._common import CheckResult, no_answer, read_only, run_cases, safe

# --------------------------------------------------------------------------- FedProx's local update


def _fedprox_cases():
    """``(theta, X, y, lr, epochs, mu)``: a small one first, then parties of several shapes.

    Every case is stable: ``lr * (lambda_max(H) + mu) < 1`` (checked in the tests).
    """
    rng = np.random.default_rng(71)
    cases = [tuple(read_only([0.0, 1.0], [[1.0], [2.0]], [1.0, 3.0], dtype=np.float64)) + (0.1, 3, 1.0)]
    for m, d, lr, epochs, mu in ((12, 2, 0.05, 5, 2.0), (30, 1, 0.1, 10, 0.5), (8, 3, 0.04, 7, 5.0),
                                 (20, 4, 0.05, 1, 1.0), (15, 2, 0.05, 6, 0.0)):
        theta = rng.normal(size=d + 1)
        X = rng.normal(size=(m, d)) + 0.5
        y = X @ rng.normal(size=d) + 1.0 + 0.3 * rng.normal(size=m)
        cases.append(tuple(read_only(theta, X, y, dtype=np.float64)) + (lr, epochs, mu))
    return cases


def _reference_update(theta, X, y, lr, epochs, mu):
    """The library's FedProx local work (E full-batch steps), its pseudo-gradient."""
    return Party(X, y).local_update(theta, lr=lr, epochs=epochs, prox_mu=mu).update


def _walk(theta, X, y, lr, epochs, mu, *, sign=1.0, anchor=None, scale=1.0):
    """A hand-written proximal walk with a knob per typical mistake.

    Returns the local model, the sum of the full step directions, the sum of the data
    gradients only and the last step's direction.
    """
    anchor = theta if anchor is None else anchor
    local = np.array(theta, dtype=np.float64)
    total, data_only, last = np.zeros_like(local), np.zeros_like(local), np.zeros_like(local)
    for _ in range(epochs):
        g = _mse_gradient(local, X, y)
        last = g + sign * scale * mu * (local - anchor)
        data_only = data_only + g
        total = total + last
        local = local - lr * last
    return local, total, data_only, last


def fedprox_local_update(fn: Callable) -> CheckResult:
    r"""Check ``fn(theta, X, y, *, lr, epochs, mu)``: FedProx's pseudo-gradient after ``epochs`` full-batch steps.

    Each step descends :math:`L_i(\theta_i) + \frac\mu2\lVert\theta_i - \theta\rVert^2`:
    :math:`\theta_i \leftarrow \theta_i - \eta\big(\nabla L_i(\theta_i) + \mu(\theta_i - \theta)\big)`, from
    :math:`\theta_i = \theta`; the answer is :math:`(\theta - \theta_i)/\eta`, the sum of the step directions.
    ``X`` (m, d) holds the features without the bias column, ``theta`` (d + 1,) the broadcast model.
    """
    name = "fedprox_local_update"
    hint = ("Start from a copy θ_i = θ; E times: g = ∇L_i(θ_i) + μ (θ_i − θ), θ_i ← θ_i − η g. "
            "Return (θ − θ_i)/η, the sum of the E step directions (proximal pull included).")

    def diagnose(args, got, want):
        theta, X, y, lr, epochs, mu = args
        local, total, data_only, last = _walk(theta, X, y, lr, epochs, mu)
        fedavg_update = _walk(theta, X, y, lr, epochs, 0.0)[1]
        if mu > 0 and np.allclose(got, fedavg_update):
            return ("That is FedAvg's update: your proximal term has no effect. Add μ (θ_i − θ) to every step's "
                    "gradient, with θ the broadcast model kept fixed (if you update theta in place, θ_i − θ "
                    "is always 0).")
        if np.allclose(got, _walk(theta, X, y, lr, epochs, mu, sign=-1.0)[1]):
            return ("Wrong sign of the proximal term: the derivative of (μ/2)‖θ_i − θ‖² is +μ (θ_i − θ); it "
                    "pulls θ_i back towards θ, so the step is θ_i ← θ_i − η (∇L_i(θ_i) + μ (θ_i − θ)).")
        if np.allclose(got, _walk(theta, X, y, lr, epochs, mu, anchor=np.zeros_like(theta))[1]):
            return ("Your proximal term pulls towards 0 (μ θ_i, as in weight decay). FedProx pulls towards the "
                    "broadcast model: μ (θ_i − θ).")
        if np.allclose(got, _walk(theta, X, y, lr, epochs, mu, scale=0.5)[1]):
            return "The gradient of (μ/2)‖θ_i − θ‖² is μ (θ_i − θ): the 1/2 cancels against the square."
        if epochs > 1 and np.allclose(got, last):
            return ("You returned only the last step's direction. Accumulate: the pseudo-gradient is the sum of "
                    "all E step directions, which is (θ − θ_i)/η.")
        if epochs > 1 and np.allclose(got, total / epochs):
            return "You averaged the step directions; the pseudo-gradient is their sum, (θ − θ_i)/η."
        if mu > 0 and epochs > 1 and np.allclose(got, data_only):
            return ("You summed the data gradients only. The pseudo-gradient is (θ − θ_i)/η: every step's whole "
                    "direction, proximal pull included.")
        if np.allclose(got, local):
            return "That is the local model θ_i; return the pseudo-gradient (θ − θ_i)/η."
        if np.allclose(got, theta - local) or np.allclose(got, local - theta):
            return "Divide the model change by η: the pseudo-gradient is (θ − θ_i)/η."
        if np.allclose(got, -want):
            return "Wrong sign: the pseudo-gradient is (θ − θ_i)/η, the sum of the step directions, not θ_i − θ."
        return None

    def student(theta, X, y, lr, epochs, mu):
        return fn(theta, X, y, lr=lr, epochs=epochs, mu=mu)

    if not callable(fn):
        return CheckResult(name, False, f"expected a function, got {type(fn).__name__}", hint)
    return run_cases(name, student, _fedprox_cases(), _reference_update, hint=hint, diagnose=safe(diagnose))


# --------------------------------------------------------------------------- a prediction: FedProx + FedAvgM

#: The setting of the prediction exercise: the five parties of notebook 03, FedProx, server momentum.
MOMENTUM_SETTING = dict(lr=0.05, local_epochs=10, prox_mu=5.0, momentum=0.9, rounds=400)

CHOICES = {
    "a": "θ*, the least-squares solution of the pooled data",
    "b": "θ̄_E, FedAvg's fixed point with the same η and E",
    "c": "θ̄_E^μ, FedProx's fixed point with the same η, E and μ",
    "d": "the average Σ (m_i/M) θ_i* of the parties' own optima",
}


def _quadratic(party):
    Xt, y = add_bias(party.data[0]), party.data[1]
    return 2 / len(y) * Xt.T @ Xt, 2 / len(y) * Xt.T @ y


def _fixed_point(parties, *, lr, epochs, mu):
    r""":math:`(\sum_i w_i P_i^\mu H_i)^{-1}\sum_i w_i P_i^\mu b_i` with :math:`P_i^\mu = \sum_{s<E}(I - \eta(H_i + \mu I))^s`."""
    total = sum(p.n_samples for p in parties)
    n = parties[0].n_features + 1
    lhs, rhs = np.zeros((n, n)), np.zeros(n)
    for p in parties:
        H, b = _quadratic(p)
        step = np.eye(n) - lr * (H + mu * np.eye(n))
        P = sum(np.linalg.matrix_power(step, s) for s in range(epochs))
        lhs += p.n_samples / total * P @ H
        rhs += p.n_samples / total * P @ b
    return np.linalg.solve(lhs, rhs)


@lru_cache(maxsize=1)
def momentum_outcome() -> tuple[str, dict]:
    """Run the setting with the library; return the letter of the nearest candidate and every distance."""
    from ..widgets.explorer import explorer_parties

    parties = explorer_parties(5, 1.5, seed=0)
    s = MOMENTUM_SETTING
    run = fedavg(parties, lr=s["lr"], rounds=s["rounds"], local_epochs=s["local_epochs"], prox_mu=s["prox_mu"],
                 server_optimizer=sgd(1.0, momentum=s["momentum"]), engine="vectorized")
    weights = np.array([p.n_samples for p in parties], dtype=np.float64)
    weights /= weights.sum()
    candidates = {
        "a": least_squares(parties),
        "b": _fixed_point(parties, lr=s["lr"], epochs=s["local_epochs"], mu=0.0),
        "c": _fixed_point(parties, lr=s["lr"], epochs=s["local_epochs"], mu=s["prox_mu"]),
        "d": weights @ np.array([least_squares([p]) for p in parties]),
    }
    distances = {k: float(np.linalg.norm(run.theta - v)) for k, v in candidates.items()}
    return min(distances, key=distances.get), distances


def fedprox_with_momentum(answer) -> CheckResult:
    r"""Check a prediction: where FedProx (:math:`\mu = 5`) with server momentum 0.9 converges.

    The setting is :data:`MOMENTUM_SETTING` on the five parties of notebook 03
    (``explorer_parties(5, 1.5, seed=0)``); ``answer`` is one of the letters of :data:`CHOICES`.
    """
    name = "fedprox_with_momentum"
    hint = ("Ask where the *average update* Δ_t is zero: the server optimizer only decides how the server moves "
            "along Δ_t, the local rule decides where Δ_t vanishes.")
    if answer is None:
        return no_answer(name, "no answer yet: set MY_ANSWER to 'a', 'b', 'c' or 'd'")
    letter = answer.strip().strip("()").strip().lower() if isinstance(answer, str) else None
    if letter not in CHOICES:
        return CheckResult(name, False, f"expected one of 'a', 'b', 'c', 'd', got {answer!r}",
                           "Answer with the letter of your choice, as a string, e.g. MY_ANSWER = 'a'.")
    right, distances = momentum_outcome()
    if letter == right:
        where = ", ".join(f"{k} {v:.2g}" for k, v in distances.items())
        return CheckResult(name, True, f"({letter}) {CHOICES[letter]}: after {MOMENTUM_SETTING['rounds']} rounds "
                           f"the run is {distances[letter]:.1e} from it (distances to a, b, c, d: {where})")
    specific = {
        "a": ("Momentum changes how the server moves, not where the parties' updates cancel. With μ = 5 and "
              "E = 10 the local work is FedProx's, and its fixed point is not θ* (section 2 of notebook 07)."),
        "b": ("The server's momentum does not undo the proximal term: the parties still run FedProx's local "
              "steps, so the average update vanishes where Σ w_i P_i^μ ∇L_i(θ) = 0, not where FedAvg's does."),
        "d": ("The average of the local optima is the limit E → ∞ with μ = 0; here E = 10 and μ = 5, and the "
              "server optimizer does not change where the local work stops."),
    }.get(letter, hint)
    return CheckResult(name, False, f"({letter}) is not where the run ends", specific)
