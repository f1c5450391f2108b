"""fl_helpers.linear: the model, its MSE, gradient and Hessian."""

from __future__ import annotations

import numpy as np
import pytest

from fl_helpers.linear import add_bias, hessian, mse, mse_gradient, predict


def test_add_bias_prepends_a_column_of_ones():
    X = np.array([[2.0, 3.0], [4.0, 5.0]])

    Xt = add_bias(X)

    np.testing.assert_array_equal(Xt, [[1.0, 2.0, 3.0], [1.0, 4.0, 5.0]])


def test_predict_hand_computed():
    theta = np.array([1.0, 2.0, 3.0])          # intercept 1
    X = np.array([[1.0, 1.0], [0.0, 2.0]])

    y_hat = predict(theta, X)

    np.testing.assert_array_equal(y_hat, [1 + 2 + 3, 1 + 0 + 6])


def test_two_sample_loss_and_gradient_by_hand():
    # Prepare: x = [1, 2], y = [1, 3], theta = [0, 1] -> y_hat = [1, 2], residuals r = [0, -1]
    X = np.array([[1.0], [2.0]])
    y = np.array([1.0, 3.0])
    theta = np.array([0.0, 1.0])

    # Execute
    loss = mse(theta, X, y)
    grad = mse_gradient(theta, X, y)

    # Assert: L = (0^2 + 1^2) / 2;  dL/dtheta0 = 2/2 * (0 - 1);  dL/dtheta1 = 2/2 * (1*0 + 2*(-1))
    assert loss == 0.5
    np.testing.assert_array_equal(grad, [-1.0, -2.0])


def test_gradient_is_zero_at_the_least_squares_solution():
    rng = np.random.default_rng(0)
    X = rng.standard_normal((30, 3))
    y = rng.standard_normal(30)
    theta_star = np.linalg.lstsq(add_bias(X), y, rcond=None)[0]

    np.testing.assert_allclose(mse_gradient(theta_star, X, y), 0.0, atol=1e-13)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_gradient_matches_central_finite_differences(seed):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((20, 4))
    y = rng.standard_normal(20)
    theta = rng.standard_normal(5)
    h = 1e-6

    fd = np.array([(mse(theta + h * e, X, y) - mse(theta - h * e, X, y)) / (2 * h) for e in np.eye(5)])

    np.testing.assert_allclose(mse_gradient(theta, X, y), fd, rtol=1e-7, atol=1e-8)


@pytest.mark.parametrize("seed", [0, 1])
def test_hessian_matches_finite_differences_of_the_gradient(seed):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((25, 3))
    y = rng.standard_normal(25)
    theta = rng.standard_normal(4)
    h = 1e-4

    fd = np.column_stack([(mse_gradient(theta + h * e, X, y) - mse_gradient(theta - h * e, X, y)) / (2 * h)
                          for e in np.eye(4)])

    np.testing.assert_allclose(hessian(X), fd, rtol=1e-8, atol=1e-9)
    np.testing.assert_array_equal(hessian(X), hessian(X).T)


def test_loss_is_exactly_quadratic():
    # L(theta + d) = L(theta) + g.d + d^T H d / 2 holds exactly for least squares.
    rng = np.random.default_rng(4)
    X = rng.standard_normal((15, 2))
    y = rng.standard_normal(15)
    theta, d = rng.standard_normal(3), rng.standard_normal(3)

    taylor = mse(theta, X, y) + mse_gradient(theta, X, y) @ d + d @ hessian(X) @ d / 2

    assert mse(theta + d, X, y) == pytest.approx(taylor, rel=1e-12)


def test_gradient_formula_with_explicit_bias_matrix():
    rng = np.random.default_rng(5)
    X = rng.standard_normal((9, 3))
    y = rng.standard_normal(9)
    theta = rng.standard_normal(4)
    Xt = add_bias(X)

    np.testing.assert_allclose(mse_gradient(theta, X, y), 2 / 9 * Xt.T @ (Xt @ theta - y), rtol=1e-13)
    np.testing.assert_allclose(mse(theta, X, y), np.mean((Xt @ theta - y) ** 2), rtol=1e-13)


def test_functions_do_not_modify_their_inputs():
    X = np.array([[1.0, 2.0], [3.0, 4.0]])
    y = np.array([1.0, -1.0])
    theta = np.array([0.5, 0.5, 0.5])
    copies = X.copy(), y.copy(), theta.copy()

    mse(theta, X, y), mse_gradient(theta, X, y), hessian(X), predict(theta, X)

    for before, after in zip(copies, (X, y, theta), strict=True):
        np.testing.assert_array_equal(before, after)
