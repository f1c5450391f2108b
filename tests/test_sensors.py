"""Tests of fl_helpers.sensors: the low-cost PM2.5 sensor simulator (Barkjohn et al. 2021 as ground truth)."""

import numpy as np
import pytest
from sklearn.linear_model import LinearRegression
from sklearn.metrics import mean_squared_error

from fl_helpers import sensors

NOISE_FREE = dict(noise_sd=0.0, reference_sd=0.0, clip=False)
IDENTICAL = dict(gain_sd=0.0, offset_sd=0.0, rh_sd=0.0)


@pytest.fixture(scope="module")
def many():
    """Enough devices for the moments of the per-device parameters."""
    return sensors.devices(1500, samples_per_device=5, test_per_device=1, days=4, seed=11)


def test_published_correction_by_hand():
    # 0.524 * 10 - 0.0862 * 50 + 5.75 = 5.24 - 4.31 + 5.75 = 6.68 (Barkjohn et al. 2021, eq. 2)
    assert sensors.correct(10.0, 50.0) == pytest.approx(6.68, abs=1e-12)
    assert sensors.BARKJOHN == (5.75, 0.524, -0.0862)


def test_noise_free_reading_inverts_through_the_formula():
    rng = np.random.default_rng(0)
    c, h = rng.uniform(1, 80, 200), rng.uniform(20, 100, 200)
    np.testing.assert_allclose(sensors.correct(sensors.reading(c, h), h), c, rtol=1e-12, atol=1e-12)
    # a device with gain 1.2, offset -1.5 and humidity factor 0.8, written out by hand
    want = 1.2 * (c + 0.0862 * 0.8 * h - 5.75) / 0.524 - 1.5
    np.testing.assert_allclose(sensors.reading(c, h, gain=1.2, offset=-1.5, rh_factor=0.8), want, rtol=1e-12)


def test_true_coefficients_invert_a_device():
    rng = np.random.default_rng(1)
    c, h, t = rng.uniform(1, 80, 50), rng.uniform(20, 100, 50), rng.uniform(-5, 30, 50)
    g, o, k = 0.9, 2.5, 1.3
    p = sensors.reading(c, h, gain=g, offset=o, rh_factor=k)
    coef = sensors.true_coefficients(g, o, k)
    np.testing.assert_allclose(coef[0] + coef[1] * p + coef[2] * h + coef[3] * t, c, rtol=1e-10)
    assert coef[3] == 0.0


def test_shapes_and_sizes():
    fleet = sensors.devices(30, samples_per_device=(10, 40), test_per_device=7, seed=3)
    assert len(fleet.parties) == len(fleet.tests) == 30
    assert fleet.theta.shape == (30, 4) and fleet.gain.shape == (30,)
    sizes = np.array([p.n_samples for p in fleet.parties])
    assert sizes.min() >= 10 and sizes.max() <= 40 and len(np.unique(sizes)) > 5
    assert all(p.n_features == 3 for p in fleet.parties)
    assert all(X.shape == (7, 3) and y.shape == (7,) for X, y in fleet.tests)
    fixed = sensors.devices(4, samples_per_device=12, seed=3)
    assert [p.n_samples for p in fixed.parties] == [12] * 4


def test_deterministic_by_seed_and_device_independent_of_fleet_size():
    a, b = sensors.devices(5, seed=7), sensors.devices(8, seed=7)
    c = sensors.devices(5, seed=8)
    for pa, pb in zip(a.parties, b.parties[:5], strict=True):
        np.testing.assert_array_equal(pa.data[0], pb.data[0])
        np.testing.assert_array_equal(pa.data[1], pb.data[1])
    np.testing.assert_array_equal(a.theta, b.theta[:5])
    assert not np.array_equal(a.parties[0].data[1][:5], c.parties[0].data[1][:5])


def test_per_device_parameter_moments(many):
    n = len(many.gain)
    log_g = np.log(many.gain)
    assert abs(log_g.mean()) < 4 * sensors.GAIN_SD / np.sqrt(n)
    assert log_g.std(ddof=1) == pytest.approx(sensors.GAIN_SD, rel=0.08)
    assert abs(many.offset.mean()) < 4 * sensors.OFFSET_SD / np.sqrt(n)
    assert many.offset.std(ddof=1) == pytest.approx(sensors.OFFSET_SD, rel=0.08)
    assert many.rh_factor.mean() == pytest.approx(1.0, abs=4 * sensors.RH_SD / np.sqrt(n))
    assert many.rh_factor.std(ddof=1) == pytest.approx(sensors.RH_SD, rel=0.08)


def test_reference_concentration_is_log_normal_around_the_documented_mean(many):
    y = np.concatenate([p.data[1] for p in many.parties])       # noisy reference; its median barely moves
    assert np.median(y) == pytest.approx(sensors.PM_GEOMEAN, rel=0.1)


def test_site_series_documented_properties():
    s = sensors.site_series(24 * 400, seed=5)
    assert np.all(s["rh"] > 0) and np.all(s["rh"] <= 100)
    z = np.log(s["reference"])
    z = z - z.mean()
    lag1 = np.sum(z[1:] * z[:-1]) / np.sum(z * z)           # the AR(1) part dominates the lag-1 correlation
    assert 0.9 < lag1 < 1.0


def test_relative_humidity_against_saturation_vapour_pressure_tables():
    # saturation vapour pressure over water: 12.28 hPa at 10 °C, 23.39 hPa at 20 °C (Wexler 1976 / WMO tables)
    assert sensors.relative_humidity(20.0, 10.0) == pytest.approx(100 * 12.28 / 23.39, rel=3e-3)
    # 30 °C: 42.47 hPa; dew point 25 °C: 31.69 hPa
    assert sensors.relative_humidity(30.0, 25.0) == pytest.approx(100 * 31.69 / 42.47, rel=3e-3)
    assert sensors.relative_humidity(15.0, 15.0) == pytest.approx(100.0, rel=1e-12)      # saturated


def test_noise_free_pooled_least_squares_recovers_the_published_correction():
    fleet = sensors.devices(60, seed=2, **NOISE_FREE, **IDENTICAL)
    X = np.concatenate([p.data[0] for p in fleet.parties])
    y = np.concatenate([p.data[1] for p in fleet.parties])
    fit = LinearRegression().fit(X, y)
    coef = sensors.to_physical(np.r_[fit.intercept_, fit.coef_])
    np.testing.assert_allclose(coef, [5.75, 0.524, -0.0862, 0.0], atol=1e-9)


def test_noise_free_device_least_squares_recovers_its_true_parameters():
    fleet = sensors.devices(20, seed=4, **NOISE_FREE)
    for p, theta in zip(fleet.parties, fleet.theta, strict=True):
        X, y = p.data
        solution, *_ = np.linalg.lstsq(np.c_[np.ones(len(y)), X], y, rcond=None)
        np.testing.assert_allclose(solution, theta, atol=1e-8)


def test_clipping():
    kept = sensors.devices(200, seed=0, clip=False)
    clipped = sensors.devices(200, seed=0)
    assert kept.clipped == clipped.clipped > 0
    low = (0.0 - sensors.CENTER[0]) / sensors.SCALE[0]
    assert min(p.data[0][:, 0].min() for p in clipped.parties) >= low
    assert min(p.data[0][:, 0].min() for p in kept.parties) < low


def test_feature_conversions_by_hand():
    theta = np.array([1.0, 2.0, -3.0, 0.5])
    coef = sensors.to_physical(theta)
    raw = np.array([[30.0, 70.0, 10.0], [5.0, 40.0, 25.0]])
    X = sensors.features(*raw.T)
    np.testing.assert_allclose(X[0], [(30 - 20) / 20, (70 - 60) / 20, (10 - 15) / 10])
    np.testing.assert_allclose(theta[0] + X @ theta[1:], coef[0] + raw @ coef[1:], rtol=1e-12)
    np.testing.assert_allclose(sensors.from_physical(coef), theta, rtol=1e-12)


def test_rmse_and_personal_offset_against_references():
    rng = np.random.default_rng(9)
    X, y = rng.normal(size=(25, 3)), rng.normal(size=25) + 4.0
    theta = np.array([0.3, 1.0, -0.5, 0.2])
    pred = theta[0] + X @ theta[1:]
    assert sensors.rmse(theta, X, y) == pytest.approx(np.sqrt(mean_squared_error(y, pred)), rel=1e-12)
    fitted = sensors.personal_offset(theta, X, y)
    np.testing.assert_array_equal(fitted[1:], theta[1:])
    grid = fitted[0] + np.linspace(-0.5, 0.5, 1001)                    # a brute-force search over the intercept
    losses = [np.mean((b + X @ theta[1:] - y) ** 2) for b in grid]
    assert grid[int(np.argmin(losses))] == pytest.approx(fitted[0], abs=1e-3)


@pytest.mark.parametrize("kwargs, error, words", [
    (dict(n_devices=0), ValueError, ("n_devices", "[1, inf]", "got 0")),
    (dict(n_devices=2.5), TypeError, ("n_devices", "2.5")),
    (dict(n_devices=3, samples_per_device=(10, 500)), ValueError, ("samples_per_device[1]", "168", "500")),
    (dict(n_devices=3, samples_per_device=(5, 2)), ValueError, ("samples_per_device[1]", "[5, 168]", "got 2")),
    (dict(n_devices=3, samples_per_device=(1, 2, 3)), ValueError, ("samples_per_device", "(1, 2, 3)")),
    (dict(n_devices=3, samples_per_device=0), ValueError, ("samples_per_device", "got 0")),
    (dict(n_devices=3, days=1), ValueError, ("days", "[2, inf]", "got 1")),
    (dict(n_devices=3, gain_sd=-0.1), ValueError, ("gain_sd", "non-negative", "-0.1")),
    (dict(n_devices=3, noise_sd=float("nan")), ValueError, ("noise_sd", "nan")),
    (dict(n_devices=3, seed=-1), ValueError, ("seed", "got -1")),
    (dict(n_devices=3, clip="yes"), TypeError, ("clip", "'yes'")),
    (dict(n_devices=3, test_per_device=0), ValueError, ("test_per_device", "got 0")),
])
def test_bad_input(kwargs, error, words):
    with pytest.raises(error) as info:
        sensors.devices(**kwargs)
    for w in words:
        assert w in str(info.value)


def test_device_rmse_is_each_devices_rmse_on_its_test_hours():
    fleet = sensors.devices(6, samples_per_device=8, test_per_device=5, seed=2)
    thetas = np.random.default_rng(3).normal(size=(6, 4))
    want = [np.sqrt(mean_squared_error(y, t[0] + X @ t[1:])) for t, (X, y) in zip(thetas, fleet.tests, strict=True)]
    np.testing.assert_allclose(sensors.device_rmse(fleet, thetas), want, rtol=1e-12)
    one = [np.sqrt(mean_squared_error(y, thetas[0, 0] + X @ thetas[0, 1:])) for X, y in fleet.tests]
    np.testing.assert_allclose(sensors.device_rmse(fleet, thetas[0]), one, rtol=1e-12)
    with pytest.raises(ValueError, match=r"\(n_devices, 4\) = \(6, 4\), got shape \(5, 4\)"):
        sensors.device_rmse(fleet, thetas[:5])


def test_bad_device_parameters_and_data():
    with pytest.raises(ValueError, match=r"gain must be positive.*got -1.0"):
        sensors.reading([10.0, 20.0], [50.0, 60.0], gain=-1.0)
    with pytest.raises(ValueError, match=r"gain must be positive.*got 0.0"):
        sensors.true_coefficients([1.0, 0.0], 0.0, 1.0)
    with pytest.raises(ValueError, match=r"offset must contain only finite numbers"):
        sensors.reading(10.0, 50.0, offset=float("nan"))
    with pytest.raises(ValueError, match=r"theta must have shape \(4,\).*got shape \(3,\)"):
        sensors.rmse([1.0, 2.0, 3.0], np.zeros((5, 3)), np.zeros(5))
    with pytest.raises(ValueError, match=r"got 5 rows in X and 4 values in y"):
        sensors.personal_offset(np.zeros(4), np.zeros((5, 3)), np.zeros(4))


def test_bad_parameter_vectors():
    with pytest.raises(ValueError, match=r"theta must have 4 entries.*got shape \(3,\)"):
        sensors.to_physical([1.0, 2.0, 3.0])
    with pytest.raises(ValueError, match=r"coefficients must have 4 entries.*got shape \(5,\)"):
        sensors.from_physical(np.zeros(5))
