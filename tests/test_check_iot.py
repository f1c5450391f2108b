"""Checkers of notebook 15: reference solutions pass, typical mistakes fail with their hint, stubs get no hint.

The reference solutions are written here: the calibration by solving the sensor's equation
for C, the offset-and-gain refit with scikit-learn on the partial residual.
"""

import numpy as np
from checks_helpers import assert_fail, assert_pass, raises
from sklearn.linear_model import LinearRegression

from fl_helpers import check, sensors

# --------------------------------------------------------------------------- device calibration

def calibration(gain, offset, rh_factor):
    # P = g (C + 0.0862 k H - 5.75) / 0.524 + o  <=>  C = 0.524 (P - o) / g - 0.0862 k H + 5.75
    return [5.75 - 0.524 * offset / gain, 0.524 / gain, -0.0862 * rh_factor, 0.0]


def test_reference_calibration_passes_and_inverts_the_simulator():
    assert_pass(check.device_calibration(calibration))
    rng = np.random.default_rng(0)
    c, h, t = rng.uniform(2, 60, 20), rng.uniform(30, 95, 20), rng.uniform(0, 30, 20)
    p = sensors.reading(c, h, gain=1.2, offset=-1.0, rh_factor=0.7)
    c0, cp, ch, ct = calibration(1.2, -1.0, 0.7)
    np.testing.assert_allclose(c0 + cp * p + ch * h + ct * t, c, rtol=1e-10)


def calibration_stub(gain, offset, rh_factor):
    raise NotImplementedError("write your solution here")


def offset_stub(theta, X, y):
    raise NotImplementedError("write your solution here")


def test_untouched_exercises_fail_without_a_hint():
    for result in (check.device_calibration(calibration_stub), check.offset_and_gain(offset_stub),
                   check.device_calibration(lambda g, o, k: None), check.offset_and_gain(lambda t, X, y: None)):
        assert_fail(result)
        assert result.hint == ""


def test_typical_calibration_mistakes_fail_with_their_hint():
    assert_fail(check.device_calibration(lambda g, o, k: [5.75 - 0.524 * o, 0.524 / g, -0.0862 * k, 0.0]),
                "subtract it first")
    assert_fail(check.device_calibration(lambda g, o, k: [5.75 - 0.524 * o / g, 0.524 * g, -0.0862 * k, 0.0]),
                "divided by g")
    assert_fail(check.device_calibration(lambda g, o, k: [5.75 - 0.524 * o / g, 0.524 / g, -0.0862, 0.0]),
                "scales the humidity term")
    assert_fail(check.device_calibration(lambda g, o, k: [5.75 - 0.524 * o / g, 0.524 / g, 0.0862 * k, 0.0]),
                "subtracts it")
    assert_fail(check.device_calibration(lambda g, o, k: [5.75 - 0.524 * o / g, 0.524 / g, -0.0862 * k]),
                "Four coefficients")
    assert_fail(check.device_calibration(raises), "Solve P")
    assert_fail(check.device_calibration("not a function"), "Solve P")


# --------------------------------------------------------------------------- offset and gain

def offset_and_gain(theta, X, y):
    kept = X[:, 1:] @ theta[2:]
    fit = LinearRegression().fit(X[:, :1], y - kept)
    return np.r_[fit.intercept_, fit.coef_[0], theta[2:]]


def test_reference_offset_and_gain_passes_and_beats_the_offset_alone():
    assert_pass(check.offset_and_gain(offset_and_gain))
    fleet = sensors.devices(3, samples_per_device=30, seed=5)
    theta = np.array([12.0, 9.5, -1.7, 0.1])
    for p in fleet.parties:
        X, y = p.data
        assert sensors.rmse(offset_and_gain(theta, X, y), X, y) <= sensors.rmse(sensors.personal_offset(theta, X, y),
                                                                                  X, y) + 1e-12


def test_by_hand_case():
    got = offset_and_gain(np.array([0.0, 0.0, 1.0, 0.0]), np.array([[0.0, 1, 0], [1, 1, 0], [2, 1, 0]]),
                          np.array([1.0, 3.0, 5.0]))
    np.testing.assert_allclose(got, [0.0, 2.0, 1.0, 0.0], atol=1e-12)


def test_typical_offset_mistakes_fail_with_their_hint():
    assert_fail(check.offset_and_gain(sensors.personal_offset), "intercept only")

    def all_four(theta, X, y):
        return np.linalg.lstsq(np.c_[np.ones(len(y)), X], y, rcond=None)[0]
    assert_fail(check.offset_and_gain(all_four), "keep the federation")

    def not_subtracted(theta, X, y):
        b = np.linalg.lstsq(np.c_[np.ones(len(y)), X[:, 0]], y, rcond=None)[0]
        return np.r_[b, theta[2:]]
    assert_fail(check.offset_and_gain(not_subtracted), "Subtract the kept part")
    assert_fail(check.offset_and_gain(lambda theta, X, y: theta[:3]), "least squares")
    assert_fail(check.offset_and_gain(raises), "least squares")


def test_the_student_cannot_change_the_cases():
    def in_place(theta, X, y):
        theta[0] = 0.0
        return offset_and_gain(theta, X, y)
    result = check.offset_and_gain(in_place)
    assert_fail(result)
    assert "raised ValueError" in result.message
