r"""Low-cost PM2.5 sensors co-located with reference monitors: a documented simulator.

Each of ``n_devices`` low-cost particle sensors (a PurpleAir-like Plantower optical counter) stands
next to a reference monitor for ``days`` days at its own site and logs hourly averages of its raw
PM2.5 reading :math:`P` (µg/m³), relative humidity :math:`H` (%) and temperature :math:`T` (°C).
The task of a device is **calibration**: predict the reference concentration :math:`C` from
:math:`(P, H, T)`.

Ground truth: the published correction
--------------------------------------
Barkjohn, Gantt and Clements (2021), "Development and application of a United States-wide correction
for PM2.5 data collected with the PurpleAir sensor", *Atmos. Meas. Tech.* 14, 4617-4637, fit one
correction for the whole US from 39 co-location sites (their eq. 2, 24-hour averages, the ``cf_1``
channel):

.. math::
    C = 0.524\,P - 0.0862\,H + 5.75 .

A *typical* device here reads exactly the inverse of that formula,
:math:`P = (C + 0.0862\,H - 5.75) / 0.524` (the sensor over-reads, and more so when humid: particles
take up water, hygroscopic growth). Device :math:`i` differs by a gain :math:`g_i` and an offset
:math:`o_i` (manufacturing spread) and by its own humidity sensitivity :math:`k_i`:

.. math::
    P_i = g_i\,\frac{C + 0.0862\,k_i H - 5.75}{0.524} + o_i + \varepsilon_P ,

so its exact calibration is the affine map (:func:`true_coefficients`)

.. math::
    C = \frac{0.524}{g_i} P_i - 0.0862\,k_i\,H + 0\cdot T + 5.75 - \frac{0.524\,o_i}{g_i} .

Temperature does not enter the truth: it is a feature a model may wrongly lean on. Readings are
clipped at 0 (a sensor reports no negative mass); with the defaults this is rare and counted in
:attr:`Fleet.clipped`.

Every constant and its source (``assumption``: chosen for this course, of a realistic order)
---------------------------------------------------------------------------------------------
==========================  ==============  ===================================================================
constant                    value           source
==========================  ==============  ===================================================================
``BARKJOHN``                5.75, 0.524,    Barkjohn, Gantt and Clements (2021), eq. 2 (intercept, P, H)
                            -0.0862
``PM_GEOMEAN``              10 µg/m³        assumption, near US annual PM2.5 means (EPA Air Trends: 7-10)
``SITE_LOG_SD``             0.3             assumption: sites differ (log scale)
``DIURNAL``                 0.15            assumption: log-amplitude of a 12-hour cycle peaking at 8 h and
                                            20 h (traffic and the evening boundary layer)
``EPISODE_SD``,             0.5, 48 h       assumption: log-normal weather-driven episodes, an AR(1) in
``EPISODE_HOURS``                           :math:`\log C` with a 48-hour correlation time (Ott 1990 explains
                                            log-normal concentrations by successive random dilutions)
``T_MEAN``, ``T_SITE_SD``   15 °C, 6 °C     assumption: a site's mean temperature
``T_DIURNAL``               5 °C            assumption: amplitude of the daily cycle, warmest at 15 h
``WEATHER_SD``              3 °C            assumption: AR(1) weather anomaly (same 48 h correlation time)
``DEW_DEPRESSION``          3 to 10 °C      assumption: a site's mean dew-point depression (uniform)
``MAGNUS``                  17.625, 243.04  Alduchov and Eskridge (1996), J. Appl. Meteor. 35, 601-609:
                                            :math:`H = 100\,e^{aT_d/(b+T_d)} / e^{aT/(b+T)}`
``GAIN_SD``                 0.10            assumption from the Plantower PMS5003 data sheet's unit-to-unit
                                            consistency of ±10 %: :math:`\log g_i \sim N(0, 0.10^2)`
``OFFSET_SD``               2 µg/m³         assumption, inside the data sheet's ±10 µg/m³ (0-100 µg/m³):
                                            :math:`o_i \sim N(0, 2^2)`, in raw-reading units
``RH_SD``                   0.2             assumption: :math:`k_i \sim N(1, 0.2^2)`
``NOISE_SD``                2 µg/m³         assumption: the sensor's hourly noise :math:`\varepsilon_P` (sd)
``REFERENCE_SD``            2 µg/m³         assumption: the reference monitor's hourly noise (sd)
==========================  ==============  ===================================================================

Features
--------
Models see standardised features :math:`x = ((P - 20)/20, (H - 60)/20, (T - 15)/10)` (:func:`features`):
fixed constants, the same on every device, so no statistics are shared. :func:`to_physical` and
:func:`from_physical` convert a parameter vector ``theta = (intercept, 3 slopes)`` between these
features and physical units.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from . import validation as valid
from .models import linear
from .parties import Party

#: Barkjohn, Gantt and Clements (2021), eq. 2: C = 0.524 P - 0.0862 H + 5.75 (intercept, P slope, H slope).
BARKJOHN = (5.75, 0.524, -0.0862)
PM_GEOMEAN = 10.0
SITE_LOG_SD = 0.3
DIURNAL = 0.15
EPISODE_SD = 0.5
EPISODE_HOURS = 48.0
T_MEAN, T_SITE_SD, T_DIURNAL, WEATHER_SD = 15.0, 6.0, 5.0, 3.0
DEW_DEPRESSION = (3.0, 10.0)
MAGNUS = (17.625, 243.04)
GAIN_SD, OFFSET_SD, RH_SD = 0.10, 2.0, 0.2
NOISE_SD, REFERENCE_SD = 2.0, 2.0
#: Feature standardisation: x = (raw - CENTER) / SCALE for (P, H, T).
CENTER = np.array([20.0, 60.0, 15.0])
SCALE = np.array([20.0, 20.0, 10.0])
FEATURE_NAMES = ("raw PM2.5 P (µg/m³)", "relative humidity H (%)", "temperature T (°C)")


def correct(raw, rh) -> np.ndarray:
    """Barkjohn et al. (2021), eq. 2: the US-wide correction :math:`C = 0.524 P - 0.0862 H + 5.75` (µg/m³)."""
    b0, b1, b2 = BARKJOHN
    return b0 + b1 * np.asarray(raw, dtype=np.float64) + b2 * np.asarray(rh, dtype=np.float64)


def _device(gain, offset, rh_factor) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Broadcast per-device parameters; ``gain`` must be positive, all finite."""
    g, o, k = np.broadcast_arrays(*(valid._as_float_array(n, a) for n, a in
                                    (("gain", gain), ("offset", offset), ("rh_factor", rh_factor))))
    for name, a in (("gain", g), ("offset", o), ("rh_factor", k)):
        valid._finite(name, a)
    if np.any(g <= 0):
        raise ValueError(f"gain must be positive (a sensor reads g times the typical reading), got {float(g.min())!r}")
    return g, o, k


def reading(reference, rh, *, gain=1.0, offset=0.0, rh_factor=1.0) -> np.ndarray:
    r"""Noise-free raw reading :math:`P = g\,(C + 0.0862\,k H - 5.75)/0.524 + o` (µg/m³, not clipped).

    ``reference`` :math:`C` in µg/m³, ``rh`` :math:`H` in %, ``gain`` :math:`g > 0`, ``offset`` :math:`o`
    in µg/m³ and ``rh_factor`` :math:`k` (scalars or arrays that broadcast). With ``gain=1, offset=0,
    rh_factor=1`` (the typical device) :func:`correct` inverts it exactly.
    """
    b0, b1, b2 = BARKJOHN
    g, o, k = _device(gain, offset, rh_factor)
    c, h = np.asarray(reference, dtype=np.float64), np.asarray(rh, dtype=np.float64)
    return g * (c + (-b2) * k * h - b0) / b1 + o


def true_coefficients(gain, offset, rh_factor) -> np.ndarray:
    r"""Exact calibration of devices in physical units: rows :math:`(5.75 - 0.524\,o/g,\ 0.524/g,\ -0.0862\,k,\ 0)`."""
    b0, b1, b2 = BARKJOHN
    g, o, k = _device(gain, offset, rh_factor)
    return np.stack([b0 - b1 * o / g, b1 / g, b2 * k, np.zeros_like(g)], axis=-1)


def features(raw, rh, temperature) -> np.ndarray:
    """Standardised features ``(m, 3)``: ``((P - 20)/20, (H - 60)/20, (T - 15)/10)``."""
    cols = np.stack(np.broadcast_arrays(*(np.asarray(a, dtype=np.float64) for a in (raw, rh, temperature))), axis=-1)
    return (cols - CENTER) / SCALE


def to_physical(theta) -> np.ndarray:
    """``theta`` (intercept + 3 slopes on :func:`features`) as coefficients of ``(1, P, H, T)`` in physical units."""
    theta = np.asarray(theta, dtype=np.float64)
    if theta.shape[-1] != 4:
        raise ValueError(f"theta must have 4 entries (intercept, P, H, T) in its last axis, got shape {theta.shape}")
    slopes = theta[..., 1:] / SCALE
    return np.concatenate([theta[..., :1] - slopes @ CENTER[:, None], slopes], axis=-1)


def from_physical(coefficients) -> np.ndarray:
    """Inverse of :func:`to_physical`: coefficients of ``(1, P, H, T)`` as ``theta`` on :func:`features`."""
    c = np.asarray(coefficients, dtype=np.float64)
    if c.shape[-1] != 4:
        raise ValueError(f"coefficients must have 4 entries (1, P, H, T) in its last axis, got shape {c.shape}")
    return np.concatenate([c[..., :1] + c[..., 1:] @ CENTER[:, None], c[..., 1:] * SCALE], axis=-1)


def _data(theta, X, y) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    X = valid.features(X)
    return valid.theta(theta, X.shape[1] + 1, name="theta"), X, valid.targets(y, X.shape[0])


def rmse(theta, X, y) -> float:
    r"""Root mean squared error :math:`\sqrt{\frac1m\sum_j(\tilde x_j^\top\theta - y_j)^2}` (µg/m³) of a calibration.

    :math:`\tilde x_j = (1, x_j)`: ``theta[0]`` is the intercept, ``X`` has shape ``(m, len(theta) - 1)``.
    """
    theta, X, y = _data(theta, X, y)
    return float(np.sqrt(np.mean((linear.predict(theta, X) - y) ** 2)))


def device_rmse(fleet: Fleet, theta) -> np.ndarray:
    """Each device's :func:`rmse` on its own test hours: ``theta`` one model ``(4,)`` or one per device ``(N, 4)``."""
    thetas = valid._as_float_array("theta", theta)
    n = len(fleet.tests)
    if thetas.shape == (4,):
        thetas = np.broadcast_to(thetas, (n, 4))
    if thetas.shape != (n, 4):
        raise ValueError(f"theta must have shape (4,) or (n_devices, 4) = ({n}, 4), got shape {thetas.shape}")
    return np.array([rmse(t, X, y) for t, (X, y) in zip(thetas, fleet.tests, strict=True)])


def personal_offset(theta, X, y) -> np.ndarray:
    r"""Keep the slopes of ``theta``, refit the intercept on ``(X, y)``: :math:`\theta_0 + \frac1m\sum_j r_j`.

    The least-squares intercept for fixed slopes is the mean residual :math:`r_j = y_j - \tilde x_j^\top\theta`:
    a device corrects its own offset with one number, the cheapest personalisation.
    """
    theta, X, y = _data(theta, X, y)
    theta = theta.copy()
    theta[0] += float(np.mean(y - linear.predict(theta, X)))
    return theta


def relative_humidity(temperature, dew_point) -> np.ndarray:
    r"""Relative humidity (%) from temperature and dew point (°C) by the Magnus formula.

    :math:`H = 100\,e_s(T_d)/e_s(T)` with :math:`e_s(T) = 6.1094\,\exp(17.625\,T/(243.04 + T))` hPa, the
    saturation vapour pressure over water of Alduchov and Eskridge (1996), J. Appl. Meteor. 35, 601-609.
    Not capped: a dew point above the temperature gives more than 100 %.
    """
    a, b = MAGNUS
    t, td = np.asarray(temperature, dtype=np.float64), np.asarray(dew_point, dtype=np.float64)
    return 100.0 * np.exp(a * td / (b + td) - a * t / (b + t))


def _ar1(rng: np.random.Generator, n: int, sd: float, hours: float) -> np.ndarray:
    """Stationary AR(1) series of ``n`` hourly values, standard deviation ``sd``, correlation ``exp(-1/hours)``."""
    phi = np.exp(-1.0 / hours)
    e = rng.normal(scale=sd * np.sqrt(1 - phi ** 2), size=n)
    e[0] = rng.normal(scale=sd)
    out = np.empty(n)
    out[0] = e[0]
    for t in range(1, n):
        out[t] = phi * out[t - 1] + e[t]
    return out


def site_series(hours: int, *, seed: int) -> dict:
    r"""One site's hourly weather and reference PM2.5: ``{"reference", "rh", "temperature", "hour"}``.

    :math:`\log C_t = \log(10) + s + 0.15 \cos(2\pi(h_t - 8)/12) + z_t`, :math:`s \sim N(0, 0.3^2)` the site,
    :math:`z_t` an AR(1) of standard deviation 0.5 and correlation time 48 h; the temperature has a daily
    cycle and an AR(1) weather anomaly, the dew point follows the daily mean temperature minus the site's
    dew-point depression, and :math:`H` comes from both by the Magnus formula (capped at 100 %).
    """
    hours = valid.integer("hours", hours, minimum=1)
    rng = np.random.default_rng(valid.seed(seed))
    hour = np.arange(hours) % 24
    log_c = (np.log(PM_GEOMEAN) + rng.normal(scale=SITE_LOG_SD) + DIURNAL * np.cos(2 * np.pi * (hour - 8) / 12)
             + _ar1(rng, hours, EPISODE_SD, EPISODE_HOURS))
    t_site = T_MEAN + rng.normal(scale=T_SITE_SD)
    weather = _ar1(rng, hours, WEATHER_SD, EPISODE_HOURS)
    temperature = t_site + T_DIURNAL * np.cos(2 * np.pi * (hour - 15) / 24) + weather
    dew = t_site - rng.uniform(*DEW_DEPRESSION) + weather + _ar1(rng, hours, 1.0, EPISODE_HOURS / 4)
    rh = np.minimum(100.0, relative_humidity(temperature, dew))
    return {"reference": np.exp(log_c), "rh": rh, "temperature": temperature, "hour": hour}


@dataclass(frozen=True)
class Fleet:
    """The devices of :func:`devices`.

    Attributes
    ----------
    parties : list of Party
        Device ``i``'s training hours: standardised features (:func:`features`) and the reference value.
    tests : list of (X, y)
        Device ``i``'s held-out hours, all from the second half of its co-location period.
    theta : ndarray (n_devices, 4)
        Each device's exact calibration on the standardised features.
    gain, offset, rh_factor : ndarray (n_devices,)
        The per-device parameters :math:`g_i, o_i, k_i`.
    clipped : int
        Readings (training and test) below 0: reported as 0 if ``clip``, else kept.
    """

    parties: list
    tests: list
    theta: np.ndarray
    gain: np.ndarray
    offset: np.ndarray
    rh_factor: np.ndarray
    clipped: int


def _spread(name: str, value) -> float:
    return valid.positive_float(name, value, allow_zero=True)


def devices(n_devices: int, *, samples_per_device=(10, 40), test_per_device: int = 48, days: int = 14,
            seed: int = 0, gain_sd: float = GAIN_SD, offset_sd: float = OFFSET_SD, rh_sd: float = RH_SD,
            noise_sd: float = NOISE_SD, reference_sd: float = REFERENCE_SD, clip: bool = True) -> Fleet:
    r"""Simulate ``n_devices`` co-located low-cost PM2.5 sensors (see the module docstring).

    Parameters
    ----------
    n_devices : int, >= 1
    samples_per_device : int or (low, high)
        Training hours per device: a fixed number, or uniform on ``low..high`` (inclusive) per device;
        drawn without replacement from the first half of the ``days``-day co-location period.
    test_per_device : int
        Held-out hours per device, from the second half.
    days : int, >= 2
        Length of the co-location period (hourly readings); training hours come from the first half.
    seed : int
        Device ``i`` draws everything from ``numpy.random.SeedSequence(seed, spawn_key=(i,))``: a device's
        data do not depend on ``n_devices``.
    gain_sd, offset_sd, rh_sd, noise_sd, reference_sd : float, >= 0
        The spreads of the module table (0 for identical devices or noise-free data).
    clip : bool
        ``True`` (default): a negative raw reading is reported as 0, as a sensor does. ``False`` keeps the
        linear structure everywhere, negative readings included (to check the formulas exactly).

    Returns
    -------
    Fleet
    """
    n_devices = valid.integer("n_devices", n_devices, minimum=1)
    days = valid.integer("days", days, minimum=2)
    half = 12 * days
    if isinstance(samples_per_device, (tuple, list)):
        if len(samples_per_device) != 2:
            raise ValueError(f"samples_per_device must be an int or a (low, high) pair, got {samples_per_device!r}")
        low = valid.integer("samples_per_device[0]", samples_per_device[0], minimum=1, maximum=half)
        high = valid.integer("samples_per_device[1]", samples_per_device[1], minimum=low, maximum=half)
    else:
        low = high = valid.integer("samples_per_device", samples_per_device, minimum=1, maximum=half)
    test_per_device = valid.integer("test_per_device", test_per_device, minimum=1, maximum=half)
    seed = valid.integer("seed", seed, minimum=0)
    if not isinstance(clip, (bool, np.bool_)):
        raise TypeError(f"clip must be True or False, got {clip!r}")
    spreads = [_spread(n, v) for n, v in (("gain_sd", gain_sd), ("offset_sd", offset_sd), ("rh_sd", rh_sd),
                                           ("noise_sd", noise_sd), ("reference_sd", reference_sd))]
    gain_sd, offset_sd, rh_sd, noise_sd, reference_sd = spreads
    parties, tests, params, clipped = [], [], [], 0
    for i in range(n_devices):
        rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(i,)))
        g, o, k = np.exp(rng.normal(scale=gain_sd)), rng.normal(scale=offset_sd), rng.normal(1.0, rh_sd)
        site = site_series(24 * days, seed=int(rng.integers(2 ** 32)))
        m = int(rng.integers(low, high + 1))
        hours = (rng.choice(half, size=m, replace=False), half + rng.choice(half, size=test_per_device, replace=False))
        for j, idx in enumerate(hours):
            c, h, t = site["reference"][idx], site["rh"][idx], site["temperature"][idx]
            raw = reading(c, h, gain=g, offset=o, rh_factor=k) + rng.normal(scale=noise_sd, size=idx.size)
            clipped += int(np.sum(raw < 0))
            X = features(np.maximum(raw, 0.0) if clip else raw, h, t)
            y = c + rng.normal(scale=reference_sd, size=idx.size)
            if j == 0:
                parties.append(Party(X, y, name=f"sensor {i}"))
            else:
                tests.append((X, y))
        params.append((g, o, k))
    g, o, k = (np.array(a) for a in zip(*params, strict=True))
    return Fleet(parties=parties, tests=tests, theta=from_physical(true_coefficients(g, o, k)), gain=g,
                 offset=o, rh_factor=k, clipped=clipped)
