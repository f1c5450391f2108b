r"""Checkers of notebook 16, federated recommendation.

:func:`item_gradient`
    ``fn(u, V, items, r, mean) -> G`` (n_items, rank): one user's message in the plain protocol,
    :math:`G[i] = -2\,(r_i - \mu - \mathbf u^\top\mathbf v_i)\,\mathbf u` for the rated ``items``
    (with ratings ``r``), zero rows elsewhere.
:func:`user_step`
    ``fn(u, V, items, r, mean, lr, reg) -> u_new``: one gradient step on the user's embedding,
    :math:`\mathbf u - \eta(-2\sum_{i} e_i \mathbf v_i + 2\lambda\mathbf u)`, with :math:`V` fixed.
:func:`fake_item_precision`
    ``fn(n_rated, n_fake, n_items) -> float``: the precision of the server's nonzero-row guess
    when a user who rated ``n_rated`` items adds ``n_fake`` fake items (capped by the unrated ones).

The reference solutions and the wrong answers each checker must reject live in
``tests/test_check_recommend.py``.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from ._common import CheckResult, read_only, run_cases, safe


def _cases(seed: int = 1616):
    """``(u, V, items, r, mean)``: one by hand, then random users (rank 1 to 4, 5 to 40 items)."""
    rng = np.random.default_rng(seed)
    cases = [(np.array([1.0, 2.0]), np.array([[0.5, 0.0], [1.0, 1.0], [0.0, -1.0]]), np.array([0, 2]),
              np.array([4.0, 2.0]), 3.0)]
    for n, k in ((5, 1), (12, 3), (40, 4)):
        items = np.sort(rng.choice(n, size=rng.integers(1, n), replace=False))
        cases.append((rng.normal(size=k), rng.normal(size=(n, k)), items, rng.uniform(1, 5, items.size),
                      float(rng.uniform(2.5, 3.5))))
    return [(*read_only(u, V, dtype=np.float64), read_only(i)[0], read_only(r, dtype=np.float64)[0], m)
            for u, V, i, r, m in cases]


def _answered(fn):
    """``fn`` with a ``None`` result read as no answer yet (a stub), like ``raise NotImplementedError``."""
    if not callable(fn):
        return fn

    def wrapped(*args):
        out = fn(*args)
        if out is None:
            raise NotImplementedError
        return out
    return wrapped


def _errors(u, V, items, r, mean):
    return r - mean - V[items] @ u


def _reference_gradient(u, V, items, r, mean):
    G = np.zeros_like(V)
    G[items] = -2.0 * _errors(u, V, items, r, mean)[:, None] * u[None, :]
    return G


def item_gradient(fn: Callable) -> CheckResult:
    r"""Check one user's item gradient :math:`G_u` (the message of the plain protocol)."""
    hint = ("Row i of G is the gradient of the user's squared errors with respect to v_i: "
            "-2 (r_i - μ - u·v_i) u for a rated item i, and a row of zeros for every other item.")

    def diagnose(args, got, want):
        u, V, items, r, mean = args
        if np.allclose(got, -want):
            return "Sign: the error is e = r − μ − u·v, and d(e²)/dv = −2 e u."
        if np.allclose(got, want / 2):
            return "The derivative of e² is 2 e times the derivative of e: a factor 2 is missing."
        G = np.zeros_like(V)
        G[items] = -2.0 * (r - V[items] @ u)[:, None] * u[None, :]
        if np.allclose(got, G):
            return "The prediction is μ + u·v_i: subtract the mean rating μ too."
        if got.shape == want.shape and np.any(got[np.setdiff1d(np.arange(len(V)), items)] != 0):
            return ("Items the user did not rate contribute nothing to its loss: their rows must be exactly 0 "
                    "(that is what the server will see).")
        return None

    return run_cases("item_gradient", _answered(fn), _cases(), _reference_gradient, hint=hint,
                     diagnose=safe(diagnose))


def _user_cases():
    return [(*c, lr, reg) for c, lr, reg in zip(_cases(1717), (0.1, 0.05, 0.02, 0.01), (0.5, 0.0, 1.0, 0.1),
                                                 strict=True)]


def _reference_step(u, V, items, r, mean, lr, reg):
    return u - lr * (-2.0 * V[items].T @ _errors(u, V, items, r, mean) + 2.0 * reg * u)


def user_step(fn: Callable) -> CheckResult:
    r"""Check one local gradient step on the user's embedding :math:`\mathbf u` (V fixed)."""
    hint = ("∇_u = −2 Σ_i (r_i − μ − u·v_i) v_i + 2 λ u over the rated items i; return u − lr · ∇_u "
            "(a new array: do not change u in place).")

    def diagnose(args, got, want):
        u, V, items, r, mean, lr, reg = args
        grad = -2.0 * V[items].T @ _errors(u, V, items, r, mean)
        if reg and np.allclose(got, u - lr * grad):
            return "The regularisation λ‖u‖² adds 2 λ u to the gradient."
        if np.allclose(got, u + lr * (grad + 2.0 * reg * u)):
            return "Step against the gradient: u − lr · ∇_u."
        if np.allclose(got, u - lr * (grad / 2 + reg * u)):
            return "A factor 2 is missing in both terms: d(e²)/du = −2 e v and d(λ‖u‖²)/du = 2 λ u."
        return None

    return run_cases("user_step", _answered(fn), _user_cases(), _reference_step, hint=hint,
                     diagnose=safe(diagnose))


_PRECISION_CASES = [(7, 5, 50), (10, 0, 50), (3, 20, 50), (45, 10, 50), (1, 1, 2)]


def _reference_precision(n_rated, n_fake, n_items):
    return n_rated / (n_rated + min(n_fake, n_items - n_rated))


def fake_item_precision(fn: Callable) -> CheckResult:
    r"""Check the precision of the nonzero-row guess when a user adds fake items."""
    hint = ("The guess is every nonzero row: the rated items (all right) and the fake ones (all wrong). "
            "Precision = right guesses / all guesses; a user cannot fake more items than it left unrated.")

    def diagnose(args, got, want):
        n_rated, n_fake, n_items = args
        if np.isclose(got, n_rated / (n_rated + n_fake)):
            return (f"Case n_rated={n_rated}, n_fake={n_fake}, n_items={n_items}: only "
                    f"{n_items - n_rated} items are unrated, so at most that many can be fake.")
        if np.isclose(got, n_fake / (n_rated + n_fake)) or np.isclose(got, 1.0):
            return "Precision counts the right guesses, the rated items, over all guessed items."
        return None

    return run_cases("fake_item_precision", _answered(fn), _PRECISION_CASES, _reference_precision, hint=hint,
                     diagnose=safe(diagnose))
