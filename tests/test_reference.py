"""fl_helpers.reference: least squares (weighted and unweighted) and centralized gradient descent."""

from __future__ import annotations

import numpy as np
import pytest

import fl_helpers as fl
from fl_helpers.linear import add_bias, mse, mse_gradient


def stacked(parties):
    return (np.concatenate([p.data[0] for p in parties]),
            np.concatenate([p.data[1] for p in parties]))


# --- least_squares ----------------------------------------------------------------

def test_least_squares_by_hand():
    # points (0, 1), (1, 3), (2, 5) lie on y = 1 + 2x, split over two parties
    parties = [fl.Party([[0.0], [1.0]], [1.0, 3.0]), fl.Party([[2.0]], [5.0])]

    np.testing.assert_allclose(fl.least_squares(parties), [1.0, 2.0], atol=1e-14)
    np.testing.assert_allclose(fl.least_squares(parties, weighting="uniform"), [1.0, 2.0], atol=1e-14)


def test_least_squares_equals_numpy_on_the_union(unequal_parties):
    X, y = stacked(unequal_parties)

    want = np.linalg.lstsq(add_bias(X), y, rcond=None)[0]

    np.testing.assert_allclose(fl.least_squares(unequal_parties), want, rtol=1e-12, atol=1e-13)
    np.testing.assert_allclose(mse_gradient(fl.least_squares(unequal_parties), X, y), 0.0, atol=1e-12)


def test_uniform_least_squares_solves_the_weighted_normal_equations(concept_shift_parties):
    # theta_circ = (sum_i X~_i^T X~_i / m_i)^-1 sum_i X~_i^T y_i / m_i
    A = sum(add_bias(p.data[0]).T @ add_bias(p.data[0]) / p.n_samples for p in concept_shift_parties)
    b = sum(add_bias(p.data[0]).T @ p.data[1] / p.n_samples for p in concept_shift_parties)

    theta_circ = fl.least_squares(concept_shift_parties, weighting="uniform")

    np.testing.assert_allclose(theta_circ, np.linalg.solve(A, b), rtol=1e-10)
    mean_grad = np.mean([p.gradient(theta_circ) for p in concept_shift_parties], axis=0)
    np.testing.assert_allclose(mean_grad, 0.0, atol=1e-10)


def test_the_two_weightings_differ_for_unequal_non_iid_parties(concept_shift_parties):
    star = fl.least_squares(concept_shift_parties)
    circ = fl.least_squares(concept_shift_parties, weighting="uniform")

    assert np.linalg.norm(star - circ) > 1.0
    X, y = stacked(concept_shift_parties)
    assert mse(star, X, y) < mse(circ, X, y)          # theta_star minimises the global loss


def test_the_two_weightings_agree_for_equal_sizes(regression):
    X, y, _ = regression
    parties = fl.split(X, y, 6, scheme="covariate", seed=0)          # 6 x 20 samples

    np.testing.assert_allclose(fl.least_squares(parties, weighting="uniform"), fl.least_squares(parties),
                               rtol=1e-10)


def test_least_squares_recovers_noise_free_parameters():
    X, y, theta_true = fl.make_regression(60, 4, noise=0.0, seed=9)

    np.testing.assert_allclose(fl.least_squares(fl.split(X, y, 3, seed=0)), theta_true, atol=1e-12)


# --- centralized_gd ---------------------------------------------------------------------

def test_centralized_gd_two_steps_by_hand():
    # x = [1, 2], y = [1, 3], theta0 = [0, 1], lr = 0.5
    # step 1: grad = [-1, -2]  -> theta1 = [0.5, 2.0]; y_hat = [2.5, 4.5], r = [1.5, 1.5]
    # step 2: grad = [2/2 * 3, 2/2 * (1.5 + 3)] = [3, 4.5] -> theta2 = [-1.0, -0.25]
    X, y = np.array([[1.0], [2.0]]), np.array([1.0, 3.0])

    h = fl.centralized_gd(X, y, lr=0.5, rounds=2, theta0=[0.0, 1.0])

    np.testing.assert_allclose(h.thetas, [[0.0, 1.0], [0.5, 2.0], [-1.0, -0.25]], atol=1e-15)
    np.testing.assert_allclose(h.losses, [0.5, 1.5 ** 2, mse(np.array([-1.0, -0.25]), X, y)])


def test_centralized_gd_history(regression):
    X, y, _ = regression

    h = fl.centralized_gd(X, y, lr=0.1, rounds=5)

    assert h.thetas.shape == (6, 4) and h.losses.shape == (6,) and h.party_losses.shape == (6, 1)
    np.testing.assert_array_equal(h.party_losses[:, 0], h.losses)
    np.testing.assert_array_equal(h.bytes_up, np.zeros(5, dtype=np.int64), strict=True)
    np.testing.assert_array_equal(h.bytes_down, np.zeros(5, dtype=np.int64), strict=True)
    assert h.engine == "centralized" and h.diverged_at is None
    np.testing.assert_array_equal(h.thetas[0], np.zeros(4))
    assert np.all(np.diff(h.losses) < 0)                # small lr: monotone descent


def test_centralized_gd_converges_to_least_squares(regression):
    X, y, _ = regression

    h = fl.centralized_gd(X, y, lr=0.2, rounds=500)

    np.testing.assert_allclose(h.theta, fl.least_squares([fl.Party(X, y)]), atol=1e-10)


def test_centralized_gd_rounds_zero(regression):
    X, y, _ = regression

    h = fl.centralized_gd(X, y, lr=0.1, rounds=0, theta0=[1.0, 2.0, 3.0, 4.0])

    assert h.rounds == 0 and h.thetas.shape == (1, 4)
    np.testing.assert_array_equal(h.theta, [1.0, 2.0, 3.0, 4.0])


@pytest.mark.filterwarnings("error")
@pytest.mark.parametrize("lr", [5.0, 1e200, 1e308])
def test_centralized_gd_divergence(regression, lr):
    X, y, _ = regression

    h = fl.centralized_gd(X, y, lr=lr, rounds=50)

    k = h.diverged_at
    assert isinstance(k, int) and len(h.losses) == k and h.thetas.shape == (k, 4)
    assert np.all(np.isfinite(h.losses)) and np.all(np.isfinite(h.thetas))
    assert f"diverged at step {k}" in h.message       # centralized GD has steps


def test_lr_just_below_the_stability_limit_converges_and_just_above_diverges(regression):
    """Gradient descent on a quadratic is stable iff lr < 2 / lambda_max(H)."""
    X, y, _ = regression
    from fl_helpers.linear import hessian

    limit = 2.0 / np.linalg.eigvalsh(hessian(X)).max()

    assert fl.centralized_gd(X, y, lr=0.95 * limit, rounds=2000).diverged_at is None
    assert fl.centralized_gd(X, y, lr=1.05 * limit, rounds=2000).diverged_at is not None
