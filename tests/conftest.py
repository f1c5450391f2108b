"""Shared fixtures of the unit tests: small, seeded datasets and party lists."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")   # no display in tests; set before anything imports pyplot

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

import fl_helpers as fl  # noqa: E402


@pytest.fixture(autouse=True)
def close_figures():
    """Close every pyplot figure a test opened."""
    yield
    plt.close("all")


@pytest.fixture
def regression():
    """120 samples, 3 features, noisy linear targets: (X, y, theta_true)."""
    return fl.make_regression(120, 3, noise=0.5, seed=0)


@pytest.fixture
def unequal_parties(regression):
    """8 parties of unequal sizes [5, 59, 22, 6, 12, 4, 8, 4] (quantity skew 1.5)."""
    X, y, _ = regression
    parties = fl.split(X, y, 8, scheme="quantity", skew=1.5, seed=1)
    assert [p.n_samples for p in parties] == [5, 59, 22, 6, 12, 4, 8, 4]
    return parties


@pytest.fixture
def concept_shift_parties():
    """4 parties of sizes 4, 15, 60, 200 whose intercepts differ (non-IID labels).

    Their local optima differ, so sample-weighted and unweighted averaging
    have different fixed points.
    """
    rng = np.random.default_rng(3)
    parties = []
    for i, m in enumerate([4, 15, 60, 200]):
        X = rng.standard_normal((m, 2)) + 0.5 * i
        y = X @ np.array([1.0, -1.0]) + 2.0 * i + 0.1 * rng.standard_normal(m)
        parties.append(fl.Party(X, y, name=f"p{i}"))
    return parties

