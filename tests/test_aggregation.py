"""fl_helpers.aggregation: weights and the weighted mean of the updates."""

from __future__ import annotations

import numpy as np
import pytest

import fl_helpers as fl


def test_sample_weights_by_hand():
    np.testing.assert_array_equal(fl.aggregation_weights([1, 3]), [0.25, 0.75])
    np.testing.assert_array_equal(fl.aggregation_weights([2, 2, 4], "samples"), [0.25, 0.25, 0.5])


def test_uniform_weights_by_hand():
    np.testing.assert_array_equal(fl.aggregation_weights([1, 3], "uniform"), [0.5, 0.5])
    np.testing.assert_array_equal(fl.aggregation_weights([5, 1, 1, 1], "uniform"), [0.25] * 4)


@pytest.mark.parametrize("weighting", ["samples", "uniform"])
def test_weights_sum_to_one(weighting):
    w = fl.aggregation_weights(np.random.default_rng(0).integers(1, 100, size=37), weighting)
    assert w.sum() == pytest.approx(1.0, abs=1e-14) and np.all(w > 0)


def test_equal_sizes_make_both_weightings_agree():
    np.testing.assert_allclose(fl.aggregation_weights([7] * 5), fl.aggregation_weights([7] * 5, "uniform"))


def test_aggregate_two_updates_by_hand():
    # (1 * [1, 0] + 3 * [3, 4]) / 4 = [10/4, 12/4]
    updates = np.array([[1.0, 0.0], [3.0, 4.0]])

    delta = fl.aggregate(updates, [1.0, 3.0])

    np.testing.assert_allclose(delta, [2.5, 3.0], rtol=1e-15)


def test_aggregate_normalises_the_weights():
    rng = np.random.default_rng(1)
    updates = rng.standard_normal((6, 3))
    w = rng.uniform(0.1, 2.0, size=6)

    np.testing.assert_allclose(fl.aggregate(updates, w), fl.aggregate(updates, 10 * w), rtol=1e-14)
    np.testing.assert_allclose(fl.aggregate(updates, w), (w / w.sum()) @ updates, rtol=1e-14)


def test_aggregate_with_uniform_weights_is_the_mean():
    updates = np.random.default_rng(2).standard_normal((5, 4))

    np.testing.assert_allclose(fl.aggregate(updates, fl.aggregation_weights([1, 2, 3, 4, 5], "uniform")),
                               updates.mean(axis=0), rtol=1e-14)


def test_zero_weight_ignores_an_update():
    updates = np.array([[1.0, 1.0], [1e9, -1e9]])
    np.testing.assert_array_equal(fl.aggregate(updates, [1.0, 0.0]), [1.0, 1.0])


def test_weighted_mean_of_gradients_is_the_global_gradient(unequal_parties):
    theta = np.array([0.3, -0.2, 0.1, 0.5])
    grads = np.array([p.gradient(theta) for p in unequal_parties])
    sizes = [p.n_samples for p in unequal_parties]
    X = np.concatenate([p.data[0] for p in unequal_parties])
    y = np.concatenate([p.data[1] for p in unequal_parties])

    delta = fl.aggregate(grads, fl.aggregation_weights(sizes))

    np.testing.assert_allclose(delta, fl.Party(X, y).gradient(theta), rtol=1e-12, atol=1e-14)
    # ... while the unweighted mean is not, for these unequal sizes
    assert not np.allclose(fl.aggregate(grads, fl.aggregation_weights(sizes, "uniform")), delta, atol=1e-3)


@pytest.mark.parametrize("updates, weights, match", [
    (np.ones((2, 3)), [1.0], r"updates must have shape \(k, p\) and weights shape \(k,\), got \(2, 3\) and \(1,\)"),
    (np.ones(3), [1.0, 1.0, 1.0], r"got \(3,\) and \(3,\)"),
    (np.ones((2, 3)), [1.0, -1.0], r"weights must be non-negative with a positive sum, got"),
    (np.ones((2, 3)), [0.0, 0.0], r"weights must be non-negative with a positive sum, got"),
])
def test_aggregate_rejects_bad_shapes_and_weights(updates, weights, match):
    with pytest.raises(ValueError, match=match):
        fl.aggregate(updates, weights)


@pytest.mark.parametrize("n_samples", [[], [3, 0], [3, -1], [[1, 2]]])
def test_aggregation_weights_rejects_bad_counts(n_samples):
    with pytest.raises(ValueError, match="n_samples must be a non-empty 1-D array of positive counts"):
        fl.aggregation_weights(n_samples)


def test_aggregation_weights_rejects_unknown_weighting():
    with pytest.raises(ValueError, match=r"weighting must be one of 'samples', 'uniform'; got 'mean'"):
        fl.aggregation_weights([1, 2], "mean")
