r"""Checkers for the exercises of notebook 14 (hospitals and personalisation).

Each returns a :class:`~fl_helpers.check.CheckResult` that prints ``PASS ...``
or ``FAIL ... Hint: ...`` and never raises because of the student's code.

:func:`pooled_moments`
    ``fn(sums) -> (mu, sigma)``: the pooled mean and standard deviation (``ddof=0``) per feature
    from the hospitals' ``(m_i, s_i, q_i)``, :math:`s_i = \sum_j x_j`, :math:`q_i = \sum_j x_j^2`:
    :math:`\mu = \frac1M\sum_i s_i`, :math:`\sigma^2 = \frac1M\sum_i q_i - \mu^2`. Compared with
    numpy's ``mean`` and ``std`` of the stacked rows.
:func:`fine_tune`
    ``fn(theta, X, y, lr, epochs) -> theta_i``: ``epochs`` steps of full-batch gradient descent on
    the mean squared error of the linear model with intercept, :math:`\theta \leftarrow \theta -
    \eta\,\frac2m\tilde X^\top(\tilde X\theta - y)`, compared with
    :meth:`fl_helpers.Party.local_update` (what :func:`fl_helpers.cases.personalise` runs).

The reference solutions and the wrong answers each checker must reject live in
``tests/test_check_hospitals.py``.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from ._common import CheckResult, attempt, read_only, safe

# --------------------------------------------------------------------------- pooled moments

def _moment_cases() -> list[tuple[list, np.ndarray]]:
    """``(sums, X_pooled)``: one small case by hand, then hospitals of very different sizes and means."""
    cases = []
    parts = [np.array([[1.0], [3.0]]), np.array([[5.0], [5.0], [5.0], [9.0]])]        # by hand: mu 14/3
    cases.append(parts)
    rng = np.random.default_rng(1414)
    for sizes in ((200, 90, 70, 40, 22, 20), (3, 150, 1)):
        cases.append([rng.normal(loc=rng.normal(scale=3.0, size=4), scale=rng.uniform(0.5, 4.0, size=4),
                                 size=(m, 4)) + np.array([50.0, 1.5, 26.0, 95.0]) for m in sizes])
    out = []
    for parts in cases:
        sums = [(int(p.shape[0]), *read_only(p.sum(axis=0), (p ** 2).sum(axis=0), dtype=np.float64)) for p in parts]
        out.append((sums, np.vstack(parts)))
    return out


def _moment_diagnosis(sums, X, mu, sigma) -> str | None:
    """A specific hint for a typical wrong answer, or None."""
    means = np.array([s / m for m, s, _ in sums])
    if np.allclose(mu, means.mean(axis=0), rtol=1e-6) and not np.allclose(mu, X.mean(axis=0), rtol=1e-6):
        return ("Your μ is the plain mean of the hospitals' means: a hospital of 20 patients counts as much as one "
                "of 200. Add up the sums and divide by M = Σ m_i.")
    if np.allclose(sigma, X.std(axis=0, ddof=1), rtol=1e-6):
        return "That is the standard deviation with ddof = 1 (divide by M − 1); use M, as numpy's std does."
    if np.allclose(sigma, X.var(axis=0), rtol=1e-6):
        return "That is the variance σ²: take its square root."
    if np.allclose(sigma, np.sqrt((X ** 2).mean(axis=0)), rtol=1e-6):
        return "σ² = Σ q_i / M − μ²: subtract the squared mean."
    stds = np.array([np.sqrt(np.maximum(q / m - (s / m) ** 2, 0)) for m, s, q in sums])
    if np.allclose(sigma, stds.mean(axis=0), rtol=1e-6) or np.allclose(
            sigma, np.average(stds, axis=0, weights=[m for m, _, _ in sums]), rtol=1e-6):
        return ("An average of the hospitals' standard deviations misses the spread *between* hospitals (their "
                "means differ): combine the sums of squares, σ² = Σ q_i / M − μ².")
    return None


def pooled_moments(fn: Callable) -> CheckResult:
    r"""Check ``fn(sums) -> (mu, sigma)`` against numpy's mean and std of the pooled rows."""
    name = "pooled_moments"
    hint = "μ = Σ s_i / M and σ = sqrt(Σ q_i / M − μ²), with M = Σ m_i, per feature."
    if not callable(fn):
        return CheckResult(name, False, f"expected a function, got {type(fn).__name__}", hint)
    diagnose = safe(lambda args, got, want: _moment_diagnosis(*args, *got))
    for c, (sums, X) in enumerate(_moment_cases(), start=1):
        where = f"case {c} ({len(sums)} hospitals of {', '.join(str(m) for m, _, _ in sums)} patients)"
        got, stop = attempt(name, fn, (list(sums),), where=where, hint=hint)
        if stop is not None:
            return stop
        try:
            mu, sigma = (np.asarray(a, dtype=np.float64) for a in got)
        except (TypeError, ValueError):
            return CheckResult(name, False, f"{where}: return a pair (mu, sigma), got {type(got).__name__}", hint)
        d = X.shape[1]
        if mu.shape != (d,) or sigma.shape != (d,):
            return CheckResult(name, False, f"{where}: mu and sigma should each have shape ({d},), got {mu.shape} "
                                            f"and {sigma.shape}", "One mean and one spread per feature. " + hint)
        want_mu, want_sigma = X.mean(axis=0), X.std(axis=0)
        if not (np.allclose(mu, want_mu, rtol=1e-9, atol=1e-9) and np.allclose(sigma, want_sigma, rtol=1e-7)):
            which = "mu" if not np.allclose(mu, want_mu, rtol=1e-9, atol=1e-9) else "sigma"
            err = float(np.max(np.abs((mu - want_mu) if which == "mu" else (sigma - want_sigma))))
            return CheckResult(name, False, f"{where}: {which} is off by up to {err:.3g}",
                               diagnose((sums, X), (mu, sigma), None) or hint)
    return CheckResult(name, True, f"all {c} cases equal numpy's mean and std of the pooled rows, which no "
                                   "hospital had to share")


# --------------------------------------------------------------------------- fine-tuning

def _fine_tune_cases():
    """``(theta, X, y, lr, epochs)``: one by hand, then a tiny hospital and a medium one."""
    cases = [(np.array([0.0, 1.0]), np.array([[1.0], [2.0]]), np.array([1.0, 3.0]), 0.1, 1)]
    rng = np.random.default_rng(1415)
    for m, d, lr, epochs in ((14, 10, 0.05, 7), (60, 3, 0.1, 12)):
        X = rng.normal(size=(m, d))
        y = 150.0 + X @ rng.normal(scale=20.0, size=d) + rng.normal(scale=30.0, size=m)
        theta = np.r_[140.0, rng.normal(scale=15.0, size=d)]
        cases.append((theta, X, y, lr, epochs))
    return [(*read_only(t, X, y, dtype=np.float64), lr, e) for t, X, y, lr, e in cases]


def _reference_fine_tune(theta, X, y, lr, epochs):
    from ..parties import Party
    return Party(X, y).local_update(theta, lr=lr, epochs=epochs).theta


def _gd(theta, X, y, lr, steps, *, factor=2.0):
    Xt = np.column_stack([np.ones(len(y)), X])
    for _ in range(steps):
        theta = theta - lr * factor / len(y) * Xt.T @ (Xt @ theta - y)
    return theta


def _fine_tune_diagnosis(args, got, want) -> str | None:
    theta, X, y, lr, epochs = args
    if epochs > 1 and np.allclose(got, _gd(theta, X, y, lr, 1), rtol=1e-6):
        return f"You took one step; fine-tuning runs `epochs` = {epochs} full-batch steps, each from the last."
    if np.allclose(got, _gd(theta, X, y, lr, epochs, factor=1.0), rtol=1e-6):
        return "The gradient of the mean squared error is (2/m) X̃ᵀ(X̃θ − y): you dropped the 2."
    if np.allclose(got, (theta - want) / lr, rtol=1e-6):
        return "You returned the update (θ − θ_i)/η; return the fine-tuned model θ_i itself."
    if np.allclose(got, _gd(theta, X, y, lr, epochs, factor=2.0 * len(y)), rtol=1e-6):
        return "Divide the summed gradient by m, the hospital's number of patients (the loss is a mean)."
    return None


def fine_tune(fn: Callable) -> CheckResult:
    r"""Check ``fn(theta, X, y, lr, epochs)``: ``epochs`` full-batch GD steps on the MSE from ``theta``."""
    name = "fine_tune"
    hint = ("Prepend a column of ones to X (θ[0] is the intercept), then repeat `epochs` times: "
            "θ ← θ − lr · (2/m) X̃ᵀ(X̃θ − y). Return θ.")
    if not callable(fn):
        return CheckResult(name, False, f"expected a function, got {type(fn).__name__}", hint)
    for c, args in enumerate(_fine_tune_cases(), start=1):
        theta, X, y, lr, epochs = args
        where = f"case {c} (m = {len(y)}, d = {X.shape[1]}, {epochs} epoch{'s' if epochs > 1 else ''})"
        want = _reference_fine_tune(*args)
        got, stop = attempt(name, fn, args, where=where, hint=hint)
        if stop is not None:
            return stop
        try:
            got = np.asarray(got, dtype=np.float64)
        except (TypeError, ValueError):
            return CheckResult(name, False, f"{where}: expected an array of numbers, got {type(got).__name__}", hint)
        if got.shape != want.shape:
            specific = ("θ has d + 1 entries, the intercept first: add a column of ones to X."
                        if got.shape == (X.shape[1],) else None)
            return CheckResult(name, False, f"{where}: expected shape {want.shape}, got {got.shape}", specific or hint)
        if not np.allclose(got, want, rtol=1e-7, atol=1e-9):
            err = float(np.max(np.abs(got - want)))
            return CheckResult(name, False, f"{where}: largest difference {err:.3g} from the expected model",
                               safe(_fine_tune_diagnosis)(args, got, want) or hint)
    return CheckResult(name, True, f"all {c} cases agree with Party.local_update, what cases.personalise runs")
