r"""Checkers for the exercises of notebook 02 (federated linear regression).

Each returns a :class:`~fl_helpers.check.CheckResult` that prints ``PASS ...``
or ``FAIL ... Hint: ...`` and never raises because of the student's code.

:func:`local_gradient`
    ``fn(theta, X, y)`` = :math:`\Delta_i = \frac2{m_i}\tilde X_i^\top(\tilde X_i\theta - y_i)`.
:func:`weighted_aggregate`
    ``fn(updates, n_samples)`` = :math:`\sum_i \frac{m_i}{M}\Delta_i`.
:func:`fixed_point`
    ``fn([(X_1, y_1), ...], votes)`` = :math:`\theta_v = \big(\sum_i \tfrac{v_i}{m_i}\tilde X_i^\top\tilde X_i\big)^{-1}
    \sum_i \tfrac{v_i}{m_i}\tilde X_i^\top y_i`, where FedSGD stops when party :math:`i` gets the vote
    :math:`v_i` (:math:`\theta^\star` for :math:`v_i = m_i`, the article's :math:`\theta^\circ` for :math:`v_i = 1`).

The reference solutions and the wrong answers each checker must reject live in
``tests/test_check_federated.py``.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from ..linear import add_bias
from ..linear import mse_gradient as _mse_gradient
from ._common import CheckResult, read_only, regression_cases, run_cases, safe


def _probe_shape(student: Callable, args):
    try:
        return np.shape(np.asarray(student(*args), dtype=np.float64))
    except Exception:  # run_cases reports the error with its message
        return None


# --------------------------------------------------------------------------- local gradient

def _gradient_cases():
    return regression_cases(21, ((7, 3), (1, 2), (25, 1), (13, 4)))


def local_gradient(fn: Callable) -> CheckResult:
    r"""Check ``fn(theta, X, y)``: a party's local gradient :math:`\frac2{m_i}\tilde X_i^\top(\tilde X_i\theta - y_i)`.

    ``X`` (m_i, d) holds the party's features without the bias column, ``y``
    (m_i,) its targets, ``theta`` (d + 1,) the broadcast model, intercept first.
    """
    name = "local_gradient"
    hint = ("Δ_i = (2/m_i) X̃_iᵀ(X̃_i θ − y_i) with X̃_i = [1, X_i]: average the per-sample gradients "
            "2 (x̃_jᵀθ − y_j) x̃_j over the party's own m_i = len(y) samples.")

    def diagnose(args, got, want):
        theta, X, y = args
        m = len(y)
        if np.allclose(got, want / 2):
            return "Missing factor 2: the derivative of (x̃ᵀθ − y)² is 2 (x̃ᵀθ − y) x̃."
        if np.allclose(got, -want):
            return "Wrong sign: the residual is prediction − target, r = X̃θ − y."
        if m > 1 and np.allclose(got, m * want):
            return "You summed over the samples: divide by m_i = len(y), the party's number of samples."
        no_intercept = _mse_gradient(np.concatenate([[0.0], theta[1:]]), X, y)
        if np.allclose(got, no_intercept):
            return "The prediction must include the intercept: ŷ = θ0 + X θ[1:] (θ0 is theta[0])."
        scale = float(got @ want) / float(want @ want) if float(want @ want) > 0 else 0.0
        if not np.isclose(scale, 1.0) and np.allclose(got, scale * want):
            return (f"Your gradient is {scale:.3g} x the expected one: divide by m_i = len(y), the party's "
                    "own sample count (not the total M, not N). A party does not even know M.")
        if np.allclose(got[1:], want[1:]):
            return "The slopes are right; the intercept entry is (2/m_i) Σ_j r_j (its feature is the constant 1)."
        return None

    if not callable(fn):
        return CheckResult(name, False, f"expected a function, got {type(fn).__name__}", hint)
    cases = _gradient_cases()
    probe = cases[1]
    if _probe_shape(fn, probe) == (probe[1].shape[1],):
        d = probe[1].shape[1]
        return CheckResult(name, False, f"expected {d + 1} entries (d + 1), got {d} (d)",
                           "You forgot the intercept: θ has d + 1 entries, θ0 first, and so has its gradient; "
                           "use X̃ = [1, X] (a column of ones in front).")
    result = run_cases(name, fn, cases, _mse_gradient, hint=hint, diagnose=safe(diagnose))
    if not result:
        return result
    # the skill the exercise names: a loop over the samples, not the matrix product of notebook 01
    theta, X, y = cases[-1]
    watched = X.view(_RowReads)
    watched.reads = 0
    fn(theta, watched, y)
    if watched.reads < len(y):
        return CheckResult(name, False, "the values are right, but your function works on the whole matrix "
                           "at once; this exercise asks for the loop over the party's samples",
                           "Visit the rows one at a time (for j in range(len(y)): x_j = X[j] ...), add up "
                           "the per-sample gradients 2 (x̃_jᵀθ − y_j) x̃_j and divide by m_i.")
    return result


class _RowReads(np.ndarray):
    """A feature matrix that counts how many of its rows a function reads one by one."""

    reads = 0

    def __getitem__(self, key):
        if self.ndim == 2 and (isinstance(key, (int, np.integer))
                               or (isinstance(key, tuple) and key and isinstance(key[0], (int, np.integer)))):
            self.reads += 1
        out = super().__getitem__(key)
        return out.view(np.ndarray) if isinstance(out, np.ndarray) else out

    def __iter__(self):
        if self.ndim == 2:
            self.reads += self.shape[0]
        return iter(self.view(np.ndarray))


# --------------------------------------------------------------------------- weighted aggregate

def _aggregate_cases():
    rng = np.random.default_rng(22)
    cases = [tuple(read_only([[1.0, 0.0], [0.0, 1.0]], [1, 3], dtype=np.float64))]   # by hand: [0.25, 0.75]
    for sizes, p in (([5, 59, 22, 6, 12], 3), ([40], 2), ([3, 300, 30], 4), ([10, 10, 80], 1)):
        cases.append(tuple(read_only(rng.normal(size=(len(sizes), p)), sizes, dtype=np.float64)))
    return cases


def _weighted_mean(updates, n_samples):
    return n_samples @ updates / n_samples.sum()


def weighted_aggregate(fn: Callable) -> CheckResult:
    r"""Check ``fn(updates, n_samples)`` = :math:`\sum_i \frac{m_i}{M}\Delta_i`, :math:`M = \sum_i m_i`.

    ``updates`` (N, p) holds one update per row, ``n_samples`` (N,) the counts
    :math:`m_i`; the result has shape (p,).
    """
    name = "weighted_aggregate"
    hint = "Δ = Σ_i (m_i / M) Δ_i with M = Σ_i m_i: weights proportional to the sample counts, summing to 1."

    def diagnose(args, got, want):
        updates, n = args
        if np.allclose(got, updates.mean(axis=0)):
            return ("That is the article's unweighted mean (1/N) Σ Δ_i: a small party counts as much as a big "
                    "one. Weight each update by m_i / M.")
        if np.allclose(got, n @ updates):
            return "The weights are not normalised: divide Σ m_i Δ_i by M = Σ m_i."
        if np.allclose(got, n @ updates / len(n)):
            return "Divide by M = Σ m_i (the total number of samples), not by N (the number of parties)."
        if np.allclose(got, updates.sum(axis=0)):
            return "You summed the updates: weight each by m_i / M."
        return None

    if not callable(fn):
        return CheckResult(name, False, f"expected a function, got {type(fn).__name__}", hint)
    return run_cases(name, fn, _aggregate_cases(), _weighted_mean, hint=hint, diagnose=safe(diagnose))


# --------------------------------------------------------------------------- fixed point of any votes

def _fixed_point_cases():
    rng = np.random.default_rng(23)
    cases = []
    for sizes, d in (((3, 10, 40), 1), ((4, 15, 60, 200), 2), ((25,), 3), ((8, 8, 30), 1)):
        data = []
        for i, m in enumerate(sizes):     # parties differ in x-range and intercept: non-IID
            X = rng.normal(size=(m, d)) + 0.7 * i
            y = X @ np.linspace(1.0, -1.0, d) + 1.5 * i + 0.2 * rng.normal(size=m)
            data.append(tuple(read_only(X, y, dtype=np.float64)))
        m = np.array(sizes, dtype=np.float64)
        for votes in (np.ones_like(m), m, np.sqrt(m), rng.uniform(0.5, 3.0, size=len(m))):
            cases.append((data, read_only(votes)[0]))
    return cases


def _normal_equations_solution(data, weight: Callable):
    A = sum(weight(i, len(y)) * add_bias(X).T @ add_bias(X) for i, (X, y) in enumerate(data))
    b = sum(weight(i, len(y)) * add_bias(X).T @ y for i, (X, y) in enumerate(data))
    return np.linalg.solve(A, b)


def _fixed_point(data, votes):
    return _normal_equations_solution(data, lambda i, m: votes[i] / m)


def fixed_point(fn: Callable) -> CheckResult:
    r"""Check ``fn(data, votes)``: where FedSGD stops when party :math:`i` gets the vote :math:`v_i`.

    ``data`` is a list of the parties' ``(X_i, y_i)``, ``votes`` (N,) positive
    aggregation weights (normalised by the server). The answer solves
    :math:`\sum_i v_i\nabla L_i(\theta) = 0`:

    .. math::
        \theta_v = \Big(\sum_i \tfrac{v_i}{m_i}\tilde X_i^\top\tilde X_i\Big)^{-1}
                   \sum_i \tfrac{v_i}{m_i}\tilde X_i^\top y_i ,

    :math:`\theta^\star` for :math:`v_i = m_i`, :math:`\theta^\circ` for :math:`v_i = 1`.
    """
    name = "fixed_point"
    hint = ("Set Σ_i v_i ∇L_i(θ) = 0 with ∇L_i = (2/m_i) X̃_iᵀ(X̃_iθ − y_i): solve "
            "(Σ_i v_i X̃_iᵀX̃_i / m_i) θ = Σ_i v_i X̃_iᵀy_i / m_i, with X̃_i = [1, X_i].")

    def diagnose(args, got, want):
        data, votes = args
        if not np.allclose(votes, votes[0]) and np.allclose(got, _normal_equations_solution(data, lambda i, m: 1 / m)):
            return "That is θ°, the fixed point of equal votes: weight party i's equations by its vote v_i too."
        if len(data) > 1 and np.allclose(got, _normal_equations_solution(data, lambda i, m: 1.0)):
            return ("That is θ*, least squares on all the data: the answer for votes v_i = m_i only. Party i's "
                    "gradient is an average over its m_i samples: weight its normal equations by v_i and "
                    "divide by m_i (v_i / m_i).")
        if np.allclose(got, _normal_equations_solution(data, lambda i, m: votes[i])):
            return ("You weighted party i's equations by v_i alone: its gradient is an average over its m_i "
                    "samples, so divide by m_i as well (v_i / m_i).")
        local = [_normal_equations_solution([(X, y)], lambda i, m: 1.0) for X, y in data]
        if np.allclose(got, np.asarray(votes) @ np.array(local) / np.sum(votes)):
            return ("That is the vote-weighted mean of the parties' own least-squares solutions; the fixed point "
                    "is where the weighted mean of the local *gradients* vanishes, a different point.")
        return None

    if not callable(fn):
        return CheckResult(name, False, f"expected a function, got {type(fn).__name__}", hint)
    cases = _fixed_point_cases()
    probe = cases[4]
    d = probe[0][0][0].shape[1]
    if _probe_shape(fn, probe) == (d,):
        return CheckResult(name, False, f"expected {d + 1} entries (d + 1), got {d} (d)",
                           "You forgot the intercept: use X̃_i = [1, X_i] (a column of ones in front).")
    return run_cases(name, fn, cases, _fixed_point, hint=hint, diagnose=safe(diagnose))
