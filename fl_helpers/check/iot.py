r"""Checkers for the exercises of notebook 15 (IoT: many small devices).

Each returns a :class:`~fl_helpers.check.CheckResult` that prints ``PASS ...``
or ``FAIL ... Hint: ...`` and never raises because of the student's code.

:func:`device_calibration`
    ``fn(gain, offset, rh_factor) -> (c0, cP, cH, cT)``: the exact calibration of a sensor of
    :mod:`fl_helpers.sensors` that reads :math:`P = g\,(C + 0.0862\,kH - 5.75)/0.524 + o`, i.e. the
    coefficients of :math:`C = c_0 + c_P P + c_H H + c_T T` (Barkjohn, Gantt and Clements 2021 for
    the typical device), compared with :func:`fl_helpers.sensors.true_coefficients`.
:func:`offset_and_gain`
    ``fn(theta, X, y) -> theta_i``: personalise the intercept *and* the slope of the raw reading
    (feature 0) by least squares on the device's own data, keeping the other slopes of ``theta``.

The reference solutions and the wrong answers each checker must reject live in
``tests/test_check_iot.py``.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from ._common import CheckResult, read_only, run_cases, safe

# --------------------------------------------------------------------------- device calibration

def _calibration(gain, offset, rh_factor) -> np.ndarray:
    """The exact calibration, written out here (not the library's)."""
    return np.array([5.75 - 0.524 * offset / gain, 0.524 / gain, -0.0862 * rh_factor, 0.0])


_CALIBRATION_CASES = [(1.0, 0.0, 1.0), (1.25, 0.0, 1.0), (1.0, 3.0, 1.0), (0.8, -2.0, 1.3), (1.1, 1.5, 0.6)]


def _diagnose_calibration(args, got, want):
    g, o, k = args
    if np.allclose(got, [5.75 - 0.524 * o, 0.524 / g, -0.0862 * k, 0.0]):
        return ("The offset o is added after the gain: subtract it first, P − o, then divide by g. The intercept "
                "is 5.75 − 0.524 o / g.")
    if g != 1.0 and np.allclose(got[1], 0.524 * g):
        return "A sensor that reads g times too much needs a slope divided by g: 0.524 / g, not 0.524 g."
    if np.allclose(got[2], -0.0862) and k != 1.0:
        return "The humidity sensitivity k scales the humidity term: −0.0862 k."
    if np.allclose(got[2], 0.0862 * k):
        return "More humidity makes the sensor over-read, so the correction subtracts it: c_H = −0.0862 k."
    return None


def device_calibration(fn: Callable) -> CheckResult:
    r"""Check ``fn(gain, offset, rh_factor) -> (c0, cP, cH, cT)``, the exact calibration of a simulated sensor."""
    name = "device_calibration"
    hint = ("Solve P = g (C + 0.0862 k H − 5.75) / 0.524 + o for C: C = 0.524 (P − o) / g − 0.0862 k H + 5.75, "
            "then read off the coefficients of 1, P, H and T (temperature does not enter).")
    if not callable(fn):
        return CheckResult(name, False, f"expected a function, got {type(fn).__name__}", hint)
    result = run_cases(name, fn, _CALIBRATION_CASES, _calibration, hint=hint, rtol=1e-9, atol=1e-12,
                       diagnose=safe(_diagnose_calibration))
    if not result:
        if "shape (4,), got (3,)" in result.message:
            return CheckResult(name, False, result.message, "Four coefficients: the intercept and the slopes of "
                                                            "P, H and T (the last is 0: temperature does not enter).")
        return result
    return CheckResult(name, True, f"all {len(_CALIBRATION_CASES)} devices agree with sensors.true_coefficients; "
                                   f"g = 1.25 needs the slope 0.524 / 1.25 = {0.524 / 1.25:.4f}")


# --------------------------------------------------------------------------- offset and gain

def _offset_and_gain(theta, X, y) -> np.ndarray:
    """Least squares over (intercept, slope 0) with the other slopes fixed, written out by the normal equations."""
    target = y - X[:, 1:] @ theta[2:]
    A = np.c_[np.ones(len(y)), X[:, 0]]
    b0, b1 = np.linalg.solve(A.T @ A, A.T @ target)
    return np.r_[b0, b1, theta[2:]]


def _offset_cases():
    """``(theta, X, y)``: one by hand, then simulated devices of 10 to 30 hours."""
    from .. import sensors

    by_hand = ([0.0, 0.0, 1.0, 0.0], [[0.0, 1.0, 0.0], [1.0, 1.0, 0.0], [2.0, 1.0, 0.0]], [1.0, 3.0, 5.0])
    cases = [tuple(read_only(*by_hand, dtype=np.float64))]                 # answer: (0, 2, 1, 0)
    fleet = sensors.devices(4, samples_per_device=(10, 30), seed=1515)
    theta = np.array([12.0, 9.5, -1.7, 0.1])                               # a global model, close to the fleet's
    for p in fleet.parties:
        cases.append(tuple(read_only(theta, *p.data, dtype=np.float64)))
    return cases


def _diagnose_offset(args, got, want):
    theta, X, y = args
    if np.allclose(got[1:], theta[1:]):
        return ("You refitted the intercept only (notebook section 2's personal offset): refit the slope of the raw "
                "reading, theta[1], as well.")
    full, *_ = np.linalg.lstsq(np.c_[np.ones(len(y)), X], y, rcond=None)
    if np.allclose(got, full, rtol=1e-6, atol=1e-8):
        return ("That is the device's own least squares on all four parameters: keep the federation's humidity "
                "and temperature slopes theta[2:], refit only theta[0] and theta[1].")
    A = np.c_[np.ones(len(y)), X[:, 0]]
    naive = np.linalg.lstsq(A, y, rcond=None)[0]
    if np.allclose(got[:2], naive, rtol=1e-6, atol=1e-8):
        return "Subtract the kept part first: fit (1, x_P) to y − X[:, 1:] @ theta[2:], not to y."
    return None


def offset_and_gain(fn: Callable) -> CheckResult:
    r"""Check ``fn(theta, X, y)``: intercept and raw-reading slope refitted by least squares, other slopes kept."""
    name = "offset_and_gain"
    hint = ("Keep theta[2:] (humidity and temperature). Fit the two numbers (b0, b1) minimising "
            "Σ_j (b0 + b1 X[j, 0] + X[j, 1:] @ theta[2:] − y_j)²: least squares of y − X[:, 1:] @ theta[2:] "
            "on the columns (1, X[:, 0]), e.g. with np.linalg.lstsq.")
    if not callable(fn):
        return CheckResult(name, False, f"expected a function, got {type(fn).__name__}", hint)
    cases = _offset_cases()
    result = run_cases(name, fn, cases, _offset_and_gain, hint=hint, rtol=1e-7, atol=1e-9,
                       diagnose=safe(_diagnose_offset))
    if not result:
        return result
    theta, X, y = cases[1]
    fitted = _offset_and_gain(theta, X, y)
    before = np.sqrt(np.mean((theta[0] + X @ theta[1:] - y) ** 2))
    after = np.sqrt(np.mean((fitted[0] + X @ fitted[1:] - y) ** 2))
    return CheckResult(name, True, f"all {len(cases)} cases agree with least squares; on the first simulated device "
                                   f"the training RMSE falls from {before:.2f} to {after:.2f} µg/m³")
