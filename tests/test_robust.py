"""Robust aggregation: Flower's own test vectors, hand-computed outlier cases, loops and scipy as references.

References independent of fl_helpers.robust: the numbers in Flower's
``fedmedian_test.py``, ``krum_test.py`` and ``multikrum_test.py`` (adap/flower,
``src/py/flwr/server/strategy/``), small cases worked out by hand (the
arithmetic is in the comments), per-coordinate sorting and double loops in
plain Python, ``scipy.stats.trim_mean``, the Fermat point of a triangle, and a
brute-force grid search for the geometric median.
"""

import importlib.util
import subprocess
import sys

import numpy as np
import pytest
from optional import require

import fl_helpers as fl
from fl_helpers import attacks, robust


def scipy_stats():
    """scipy.stats; skips without scipy (a scikit-learn dependency), except under CI=true, where it fails."""
    require(importlib.util.find_spec("scipy") is not None, "scipy is not installed (pip install -e '.[dev]')",
            what="the scipy cross-checks")
    from scipy import stats
    return stats


def flower_rows(*values):
    """Flower's test updates: one float32 layer of four equal entries per client."""
    return np.array([[v] * 4 for v in values], dtype=np.float32)


# ----------------------------------------------------------------- Flower's published test vectors


def test_median_matches_flowers_fedmedian_test():
    # fedmedian_test.py::test_aggregate_fit: clients 0.2, 1.0, 0.5 (5 examples each) -> 0.5
    out = robust.median(flower_rows(0.2, 1.0, 0.5), [5, 5, 5])
    assert np.all(out.astype(np.float32) == np.float32(0.5))


def test_krum_matches_flowers_krum_test():
    # krum_test.py::test_aggregate_fit: 0.2, 0.7, 1.0, num_malicious_clients=1 -> 0.7.
    # Squared distances: d01 = 4 * 0.5^2 = 1, d02 = 4 * 0.8^2 = 2.56, d12 = 4 * 0.3^2 = 0.36; Flower's
    # max(1, 3 - 1 - 2) = 1 neighbour: scores 1, 0.36, 0.36, a tie that np.argmin gives to client 1.
    rows = flower_rows(0.2, 0.7, 1.0)
    out = robust.krum(rows, [5, 5, 5], 1, strict=False)
    assert np.all(out.astype(np.float32) == np.float32(0.7))
    np.testing.assert_allclose(robust.krum_scores(rows, 1, strict=False), [1.0, 0.36, 0.36], rtol=1e-6)
    # n = 3, f = 1 breaks Krum's 2f + 2 < n, which the default checks; with f = 0 (also 1 neighbour) it agrees
    with pytest.raises(ValueError, match=r"num_malicious must satisfy 2 \* num_malicious \+ 2 < n = 3.*got 1"):
        robust.krum(rows, [5, 5, 5], 1)
    assert np.all(robust.krum(rows, [5, 5, 5], 0).astype(np.float32) == np.float32(0.7))


def test_multikrum_matches_flowers_multikrum_test():
    # multikrum_test.py::test_aggregate_fit: 0.2, 0.5, 1.0, f=1, num_clients_to_keep=2 -> 0.35.
    # d01 = 0.36, d02 = 2.56, d12 = 1: scores 0.36, 0.36, 1; keep clients 0 and 1, (5*0.2 + 5*0.5)/10 = 0.35
    rows = flower_rows(0.2, 0.5, 1.0)
    out = robust.krum(rows, [5, 5, 5], 1, to_keep=2, strict=False)
    assert np.all(out.astype(np.float32) == np.float32(0.35))
    assert np.all(robust.krum(rows, [5, 5, 5], 0, to_keep=2).astype(np.float32) == np.float32(0.35))


# ----------------------------------------------------------------- median


def test_median_of_a_hand_computed_case_with_an_outlier():
    updates = [[1.0, 10.0], [2.0, 20.0], [3.0, 30.0], [1000.0, -1000.0]]
    # column 0 sorted: 1, 2, 3, 1000 -> (2 + 3)/2; column 1 sorted: -1000, 10, 20, 30 -> (10 + 20)/2
    np.testing.assert_array_equal(robust.median(updates, None), [2.5, 15.0])
    # odd n: the middle value
    np.testing.assert_array_equal(robust.median([[5.0], [-7.0], [1e9]], None), [5.0])


def test_median_equals_sorting_each_coordinate_in_python():
    rng = np.random.default_rng(0)
    for n in (1, 2, 5, 8):
        updates = rng.standard_normal((n, 6))
        expected = []
        for j in range(6):
            col = sorted(float(updates[i, j]) for i in range(n))
            expected.append(col[n // 2] if n % 2 else (col[n // 2 - 1] + col[n // 2]) / 2)
        np.testing.assert_allclose(robust.median(updates, np.ones(n) / n), expected, rtol=0, atol=1e-15)


def test_median_and_trimmed_mean_ignore_the_weights_as_flower_does():
    rng = np.random.default_rng(1)
    updates = rng.standard_normal((7, 3))
    for w in (None, np.ones(7) / 7, [100, 1, 1, 1, 1, 1, 1]):
        np.testing.assert_array_equal(robust.median(updates, w), np.median(updates, axis=0))
        np.testing.assert_array_equal(robust.trimmed_mean(updates, w, 0.2), robust.trimmed_mean(updates, None, 0.2))


# ----------------------------------------------------------------- trimmed mean


def test_trimmed_mean_of_a_hand_computed_case_with_an_outlier():
    updates = [[1.0], [2.0], [3.0], [4.0], [100.0]]
    # beta = 0.2: cut int(0.2 * 5) = 1 from each side -> (2 + 3 + 4)/3 = 3
    np.testing.assert_array_equal(robust.trimmed_mean(updates, None, 0.2), [3.0])
    # beta = 0.1: int(0.5) = 0, nothing cut -> (1 + 2 + 3 + 4 + 100)/5 = 22
    np.testing.assert_array_equal(robust.trimmed_mean(updates, None, 0.1), [22.0])
    # beta = 0.45: int(2.25) = 2 from each side -> the median, 3
    np.testing.assert_array_equal(robust.trimmed_mean(updates, None, 0.45), [3.0])
    # per coordinate: the outlier is in a different row in each column
    two = [[0.0, 50.0], [1.0, 1.0], [2.0, 2.0], [-90.0, 3.0]]
    # beta = 0.25: cut 1 each side; column 0 keeps 0, 1 -> 0.5; column 1 keeps 2, 3 -> 2.5
    np.testing.assert_array_equal(robust.trimmed_mean(two, None, 0.25), [0.5, 2.5])


def test_trimmed_mean_cuts_floor_beta_n_as_a_python_loop_does():
    rng = np.random.default_rng(2)
    for n, beta in [(10, 0.3), (100, 0.29), (7, 0.0), (9, 0.49), (4, 0.25)]:
        updates = rng.standard_normal((n, 3))
        cut = int(beta * n)               # 0.3 * 10 = 3.0000000000000004 -> 3; 0.29 * 100 = 28.999... -> 28
        expected = [np.mean(sorted(updates[:, j])[cut:n - cut]) for j in range(3)]
        np.testing.assert_allclose(robust.trimmed_mean(updates, None, beta), expected, rtol=1e-14, atol=1e-15)


def test_trimmed_mean_equals_scipy_trim_mean_bit_for_bit():
    stats = scipy_stats()
    rng = np.random.default_rng(3)
    for n in (3, 7, 10, 33):
        for beta in (0.0, 0.1, 0.25, 0.3, 0.49):
            updates = rng.standard_normal((n, 5)) * 10.0 ** rng.integers(-3, 4, size=(n, 1))
            np.testing.assert_array_equal(robust.trimmed_mean(updates, None, beta),
                                          stats.trim_mean(updates, beta, axis=0))


@pytest.mark.parametrize("beta", [-0.1, 0.5, 0.7, float("nan")])
def test_trimmed_mean_refuses_beta_outside_zero_to_one_half(beta):
    with pytest.raises(ValueError, match=r"beta must be in \[0, 0\.5\).*got " + repr(beta).replace(".", r"\.")):
        robust.trimmed_mean(np.ones((4, 2)), None, beta)
    with pytest.raises(ValueError, match=r"beta must be in \[0, 0\.5\)"):
        robust.TrimmedMean(beta)


def test_trimmed_mean_refuses_a_beta_that_is_not_a_number():
    with pytest.raises(TypeError, match="beta must be a real number in"):
        robust.trimmed_mean(np.ones((4, 2)), None, "0.1")
    with pytest.raises(TypeError, match="beta must be a real number in"):
        robust.TrimmedMean(True)


# ----------------------------------------------------------------- Krum


def krum_scores_by_loops(updates, f):
    """Blanchard et al.'s score, by a double loop: the n - f - 2 smallest distances to the others."""
    n = len(updates)
    scores = []
    for i in range(n):
        d = sorted(float(np.sum((updates[i] - updates[j]) ** 2)) for j in range(n) if j != i)
        scores.append(sum(d[:n - f - 2]))
    return np.array(scores)


def test_krum_of_a_hand_computed_case_with_outliers():
    updates = np.array([[0.0], [1.0], [2.0], [10.0], [11.0]])
    # f = 1, n - f - 2 = 2 neighbours; squared distances from each point:
    #  0: 1, 4, 100, 121 -> 1 + 4 = 5      1: 1, 1, 81, 100 -> 2     2: 4, 1, 64, 81 -> 5
    # 10: 100, 81, 64, 1 -> 65            11: 121, 100, 81, 1 -> 82
    np.testing.assert_array_equal(robust.krum_scores(updates, 1), [5.0, 2.0, 5.0, 65.0, 82.0])
    np.testing.assert_array_equal(robust.krum(updates, None, 1), [1.0])
    # Multi-Krum keeps the 3 lowest, 1 then 0 and 2 (tied at 5: lowest index first), weighted 2 : 1 : 3
    np.testing.assert_array_equal(robust.krum_select(updates, 1, 3), [1, 0, 2])
    np.testing.assert_allclose(robust.krum(updates, [1, 2, 3, 4, 5], 1, to_keep=3),
                               [(2 * 1.0 + 1 * 0.0 + 3 * 2.0) / 6], rtol=1e-15)


def test_krum_breaks_ties_to_the_lowest_index_as_np_argmin():
    # n = 3, f = 0: one neighbour each; 0, 2, 1 are all at distance 1 from their nearest -> scores 1, 1, 1
    np.testing.assert_array_equal(robust.krum([[0.0], [2.0], [1.0]], None, 0), [0.0])
    # 3, -1, 1, -3 with f = 0 (2 neighbours): scores 4 + 16 = 20, 4 + 4 = 8, 4 + 4 = 8, 4 + 16 = 20
    np.testing.assert_array_equal(robust.krum([[3.0], [-1.0], [1.0], [-3.0]], None, 0), [-1.0])
    np.testing.assert_array_equal(robust.krum([[3.0], [1.0], [-1.0], [-3.0]], None, 0), [1.0])
    # Multi-Krum: the cut falls inside a tie -> the lower indices are kept
    np.testing.assert_array_equal(robust.krum_select([[3.0], [-1.0], [1.0], [-3.0]], 0, 3), [1, 2, 0])


def test_krum_scores_equal_a_double_loop_on_both_distance_paths():
    rng = np.random.default_rng(4)
    small = rng.standard_normal((9, 4))                       # 9 * 9 * 4 entries: direct differences
    large = rng.standard_normal((40, 2000)) + 5.0             # 40 * 40 * 2000 > 2**21: Gram matrix, offset
    large[:6] += 50.0 * rng.standard_normal((6, 2000))        # and outliers
    assert small.size * len(small) <= robust.EXACT_DISTANCES_LIMIT < large.size * len(large)
    for updates, f in [(small, 3), (large, 6), (large, 18)]:
        np.testing.assert_allclose(robust.krum_scores(updates, f), krum_scores_by_loops(updates, f), rtol=1e-10)
        loops = [[float(np.sum((a - b) ** 2)) for b in updates] for a in updates]
        np.testing.assert_allclose(robust.squared_distances(updates), loops, rtol=1e-10, atol=1e-9)
        assert np.all(np.diag(robust.squared_distances(updates)) == 0)
        best = int(np.argmin(krum_scores_by_loops(updates, f)))
        np.testing.assert_array_equal(robust.krum(updates, None, f), updates[best])


def test_krum_ignores_the_weights_and_multikrum_weights_by_sample_count():
    rng = np.random.default_rng(5)
    updates = rng.standard_normal((8, 3))
    single = robust.krum(updates, None, 2)
    np.testing.assert_array_equal(robust.krum(updates, [1, 50, 1, 1, 1, 1, 1, 1], 2), single)
    counts = np.array([3, 50, 7, 1, 12, 9, 4, 20])
    kept = robust.krum_select(updates, 2, 4)
    expected = sum(counts[i] * updates[i] for i in kept) / sum(counts[i] for i in kept)
    np.testing.assert_allclose(robust.krum(updates, counts, 2, to_keep=4), expected, rtol=1e-14)
    # counts or normalised shares: only the ratios matter
    np.testing.assert_allclose(robust.krum(updates, counts / counts.sum(), 2, to_keep=4), expected, rtol=1e-14)
    # keeping all n with f = 0 is the weighted mean
    np.testing.assert_allclose(robust.krum(updates, counts, 0, to_keep=8), counts @ updates / counts.sum(),
                               rtol=1e-14)


@pytest.mark.parametrize("n, f", [(5, 2), (4, 1), (3, 1), (2, 0), (10, 4)])
def test_krum_refuses_too_many_malicious_parties(n, f):
    updates = np.arange(2.0 * n).reshape(n, 2)
    with pytest.raises(ValueError, match=rf"num_malicious must satisfy .* < n = {n}.*got {f}$"):
        robust.krum(updates, None, f)
    with pytest.raises(ValueError, match="num_malicious must satisfy"):
        robust.Krum(f)(updates, np.ones(n) / n, rng=None)


def test_krum_names_the_allowed_range_of_num_malicious():
    with pytest.raises(ValueError, match=r"integer in \[0, 3\]; got 4"):
        robust.krum(np.zeros((9, 2)), None, 4)                # 2 * 3 + 2 = 8 < 9, 2 * 4 + 2 = 10 is not
    robust.krum(np.zeros((9, 2)), None, 3)
    with pytest.raises(ValueError, match=r"num_malicious must be an integer in \[0, inf\], got -1"):
        robust.krum(np.zeros((9, 2)), None, -1)
    with pytest.raises(TypeError, match="num_malicious must be an integer"):
        robust.Krum(1.5)
    with pytest.raises(ValueError, match=r"to_keep must be an integer in \[0, 9\], got 10"):
        robust.krum(np.zeros((9, 2)), None, 1, to_keep=10)


# ----------------------------------------------------------------- geometric median


def objective(z, points, w):
    return float(np.sum(w * np.linalg.norm(points - z, axis=1)))


def test_geometric_median_of_a_triangle_is_its_fermat_point():
    # all angles below 120 degrees: the point seeing each side under 120 degrees; equilateral -> the centroid
    pts = np.array([[0.0, 0.0], [1.0, 0.0], [0.5, np.sqrt(3) / 2]])
    np.testing.assert_allclose(robust.geometric_median(pts, None), [0.5, np.sqrt(3) / 6], atol=1e-7)


def test_geometric_median_satisfies_the_weiszfeld_fixed_point_condition():
    rng = np.random.default_rng(6)
    pts = rng.standard_normal((12, 5))
    pts[:3] += 100.0                                          # outliers
    w = rng.uniform(0.5, 2.0, size=12)
    z = robust.geometric_median(pts, w, tol=1e-10, max_iter=5000)
    grad = sum(w[i] * (z - pts[i]) / np.linalg.norm(z - pts[i]) for i in range(12)) / w.sum()
    assert np.linalg.norm(grad) < 1e-8
    assert np.linalg.norm(z) < 3.0                            # the outliers barely move it


def test_geometric_median_equals_a_brute_force_grid_search():
    pts = np.array([[0.0, 0.0], [4.0, 0.0], [0.0, 3.0], [1.0, 1.0], [9.0, 9.0]])
    w = np.array([1.0, 2.0, 1.0, 1.0, 0.5])
    z = robust.geometric_median(pts, w, tol=1e-10, max_iter=5000)
    center, width = np.array([2.0, 2.0]), 8.0                 # coarse grid, then zoom in four times
    for _ in range(5):
        g = np.linspace(-width / 2, width / 2, 201)
        grid = center + np.stack(np.meshgrid(g, g), axis=-1).reshape(-1, 2)
        values = (w * np.linalg.norm(grid[:, None, :] - pts[None], axis=2)).sum(axis=1)
        center, width = grid[np.argmin(values)], width / 20
    np.testing.assert_allclose(z, center, atol=1e-6)
    assert objective(z, pts, w) <= objective(center, pts, w) + 1e-12


def test_geometric_median_uses_the_weights_and_lands_on_a_majority_point():
    pts = np.array([[0.0], [1.0], [10.0]])
    # in 1-D the geometric median is the (weighted) median
    np.testing.assert_allclose(robust.geometric_median(pts, None), [1.0], atol=1e-6)
    # a point with at least half the weight is the geometric median (smoothing makes the step finite there)
    np.testing.assert_allclose(robust.geometric_median(pts, [0.6, 0.2, 0.2]), [0.0], atol=1e-6)
    np.testing.assert_array_equal(robust.geometric_median(np.ones((4, 3)), None), np.ones(3))


def test_geometric_median_options_are_checked():
    with pytest.raises(ValueError, match="tol must be a positive finite number, got 0.0"):
        robust.geometric_median(np.ones((3, 2)), None, tol=0)
    with pytest.raises(ValueError, match=r"max_iter must be an integer in \[1, inf\], got 0"):
        robust.GeometricMedian(max_iter=0)


# ----------------------------------------------------------------- norm bounding


def test_norm_bound_clips_on_the_server_then_averages():
    # [3, 4] has norm 5 -> [0.6, 0.8]; [0, 1] has norm 1 and stays; equal weights -> [0.3, 0.9]
    np.testing.assert_allclose(robust.norm_bound([[3.0, 4.0], [0.0, 1.0]], [0.5, 0.5], 1.0), [0.3, 0.9])
    # weights 1 : 3 -> [0.15, 0.2 + 0.75]
    np.testing.assert_allclose(robust.norm_bound([[3.0, 4.0], [0.0, 1.0]], [1, 3], 1.0), [0.15, 0.95])
    np.testing.assert_array_equal(robust.norm_bound([[0.0, 0.0], [0.0, 0.5]], None, 1.0), [0.0, 0.25])
    with pytest.raises(ValueError, match="max_norm must be a positive finite number, got -1.0"):
        robust.norm_bound(np.ones((2, 2)), None, -1.0)


def test_norm_bound_wraps_another_rule_and_reports_the_clipped_share():
    updates = np.array([[3.0, 4.0], [0.0, 1.0], [0.0, 0.5], [100.0, 0.0]])
    agg = robust.NormBound(1.0, inner=robust.Median())
    # clipped: [0.6, 0.8], [0, 1], [0, 0.5], [1, 0]; medians: (0 + 0.6)/2, (0.5 + 0.8)/2
    np.testing.assert_allclose(agg(updates, np.ones(4) / 4, rng=None), [0.3, 0.65])
    assert agg.metrics(None) == {"norm_bound_clipped": 0.5}
    np.testing.assert_allclose(robust.NormBound(1.0)(updates, np.ones(4) / 4, rng=None),
                               robust.norm_bound(updates, None, 1.0))


# ----------------------------------------------------------------- breakdown under attack


def test_robust_rules_stay_bounded_while_the_mean_is_dragged_away():
    rng = np.random.default_rng(7)
    honest = rng.standard_normal((7, 5))
    for big in (1e3, 1e6, 1e12):
        updates = np.vstack([honest, np.full((3, 5), big)])   # f = 3 of n = 10 send huge vectors
        w = np.ones(10) / 10
        assert np.linalg.norm(w @ updates) > 0.2 * big
        low, high = honest.min(axis=0), honest.max(axis=0)
        for out in (robust.median(updates, w), robust.trimmed_mean(updates, w, 0.3), robust.krum(updates, w, 3),
                    robust.krum(updates, w, 3, to_keep=7)):
            assert np.all((low <= out) & (out <= high))        # inside the honest range, coordinate-wise
        assert np.linalg.norm(robust.geometric_median(updates, w)) < 5.0
        assert np.linalg.norm(robust.norm_bound(updates, w, 1.0)) <= 1.0 + 1e-12
        assert set(robust.krum_select(updates, 3, 7)) == set(range(7))


def test_bad_updates_and_weights_are_refused():
    with pytest.raises(ValueError, match=r"updates must be an \(n, p\) array with n >= 1.*got shape \(3,\)"):
        robust.median([1.0, 2.0, 3.0], None)
    with pytest.raises(ValueError, match="updates must contain only finite numbers"):
        robust.krum([[1.0], [np.nan], [0.0]], None, 0)
    with pytest.raises(ValueError, match=r"weights must have shape \(3,\), one per update, got shape \(2,\)"):
        robust.geometric_median(np.ones((3, 2)), [0.5, 0.5])
    with pytest.raises(ValueError, match="weights must be finite and non-negative"):
        robust.norm_bound(np.ones((2, 2)), [1.0, -1.0], 1.0)


# ----------------------------------------------------------------- in fl.train


@pytest.fixture(scope="module")
def federation():
    X, y, _ = fl.make_regression(400, 5, noise=0.5, seed=0)
    parties = fl.split(X, y, 10, seed=1)
    honest = [p for i, p in enumerate(parties) if i not in (0, 1, 2)]
    return parties, fl.least_squares(honest)


def test_krum_beats_the_mean_under_a_sign_flip_attack_in_train(federation):
    parties, theta_star = federation
    attack = attacks.SignFlip([0, 1, 2], scale=10)
    mean = fl.fedsgd(parties, lr=0.1, rounds=30, seed=0, client_transform=attack)
    krum = fl.fedsgd(parties, lr=0.1, rounds=30, seed=0, client_transform=attack, aggregator=robust.Krum(3))
    assert np.linalg.norm(mean.theta - theta_star) > 100.0     # (7 - 30)/10 of the gradient: uphill
    assert np.linalg.norm(krum.theta - theta_star) < 0.5
    assert not set(krum.metrics["krum_party"].astype(int)) & {0, 1, 2}   # never picked an attacker


@pytest.mark.parametrize("rule", [robust.Median(), robust.TrimmedMean(0.3), robust.Krum(3, to_keep=4),
                                  robust.GeometricMedian(), robust.NormBound(5.0, inner=robust.Median())])
def test_every_adapter_runs_in_train_and_survives_a_boosting_attack(federation, rule):
    parties, theta_star = federation
    attack = attacks.Scale([0, 1, 2], factor=100)
    h = fl.fedsgd(parties, lr=0.1, rounds=30, seed=0, client_transform=attack, aggregator=rule)
    assert not h.diverged
    assert np.linalg.norm(h.theta - theta_star) < 0.5
    for name, series in h.metrics.items():
        assert series.shape == (30,), name


def test_adapters_equal_the_functions():
    rng = np.random.default_rng(8)
    updates, w = rng.standard_normal((9, 4)), rng.dirichlet(np.ones(9))
    g = np.random.default_rng(0)
    np.testing.assert_array_equal(robust.Median()(updates, w, rng=g), robust.median(updates, w))
    np.testing.assert_array_equal(robust.TrimmedMean(0.2)(updates, w, rng=g), robust.trimmed_mean(updates, w, 0.2))
    np.testing.assert_array_equal(robust.Krum(2, 3)(updates, w, rng=g), robust.krum(updates, w, 2, 3))
    np.testing.assert_array_equal(robust.GeometricMedian()(updates, w, rng=g), robust.geometric_median(updates, w))
    np.testing.assert_array_equal(robust.NormBound(0.5)(updates, w, rng=g), robust.norm_bound(updates, w, 0.5))
    assert repr(robust.Krum(2, 3)) == "Krum(num_malicious=2, to_keep=3)"


def test_importing_robust_and_attacks_loads_neither_scipy_nor_tensorflow():
    code = ("import sys, fl_helpers.robust, fl_helpers.attacks; "
            "print(sorted(m for m in ('scipy', 'tensorflow') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_the_adapters_metrics_keep_one_value_per_round_even_when_nobody_is_aggregated():
    X, y, _ = fl.make_regression(160, 3, noise=0.5, seed=0)
    parties = fl.split(X, y, 8, seed=0)
    plan = lambda selected, t: np.zeros(len(selected), dtype=int) if t == 2 else np.ones(len(selected), dtype=int)  # noqa: E731
    for rule, names in ((robust.Krum(1, to_keep=3), ("krum_party", "krum_kept")),
                        (robust.GeometricMedian(), ("geomed_iterations",)),
                        (robust.NormBound(0.1), ("norm_bound_clipped",))):
        run = fl.train(parties, lr=0.05, rounds=4, seed=0, aggregator=rule, stragglers=plan)
        assert [len(s) for s in run.selected] == [8, 0, 8, 8]
        for name in names:
            series = run.metrics[name]
            assert len(series) == 4 and np.isnan(series[1]) and np.all(np.isfinite(series[[0, 2, 3]])), name
