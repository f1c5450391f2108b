r"""Linear regression: the model, its mean-squared-error loss and gradient.

Convention (the source article's): :math:`\theta = [\theta_0, \theta_1, \dots, \theta_d]`,
:math:`\theta_0` the intercept, and ``X`` has no bias column:

.. math::
    \hat y = \theta_0 + X\,\theta_{1:d} = \tilde X \theta, \qquad \tilde X = [\mathbf 1, X]

Loss: the mean squared error over the ``m`` samples (Keras' ``MeanSquaredError``)

.. math::
    L(\theta) = \frac1m \lVert \tilde X\theta - y \rVert^2, \qquad
    \nabla L(\theta) = \frac2m \tilde X^\top (\tilde X\theta - y)

These functions do no argument checking: they are the inner loop of every engine.
The public functions (``Party``, ``fedsgd``, ...) check their inputs once.
"""

from __future__ import annotations

import numpy as np


def add_bias(X: np.ndarray) -> np.ndarray:
    """Return :math:`\\tilde X = [\\mathbf 1, X]`, shape (m, d + 1)."""
    return np.hstack([np.ones((X.shape[0], 1), dtype=X.dtype), X])


def predict(theta: np.ndarray, X: np.ndarray) -> np.ndarray:
    """Model output :math:`\\theta_0 + X\\theta_{1:d}`, shape (m,)."""
    return theta[0] + X @ theta[1:]


def mse(theta: np.ndarray, X: np.ndarray, y: np.ndarray) -> float:
    """Mean squared error :math:`\\frac1m\\sum_j (\\hat y_j - y_j)^2`."""
    r = predict(theta, X) - y
    return float(r @ r) / len(y)


def mse_gradient(theta: np.ndarray, X: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Gradient :math:`\\frac2m\\tilde X^\\top(\\tilde X\\theta - y)`, shape (d + 1,)."""
    r = predict(theta, X) - y
    g = np.empty_like(theta)
    g[0] = 2.0 * r.sum() / len(y)
    g[1:] = 2.0 * (X.T @ r) / len(y)
    return g


def hessian(X: np.ndarray) -> np.ndarray:
    """Hessian of the MSE (constant in theta): :math:`\\frac2m\\tilde X^\\top\\tilde X`."""
    Xt = add_bias(X)
    return 2.0 * Xt.T @ Xt / X.shape[0]
