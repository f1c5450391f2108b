r"""Linear regression: the model, its mean-squared-error loss and gradient.

Convention (the source article's): :math:`\theta = [\theta_0, \theta_1, \dots, \theta_d]`,
:math:`\theta_0` the intercept, and ``X`` has no bias column:

.. math::
    \hat y = \theta_0 + X\,\theta_{1:d} = \tilde X \theta, \qquad \tilde X = [\mathbf 1, X]

Loss: the mean squared error over the ``m`` samples (Keras' ``MeanSquaredError``)

.. math::
    L(\theta) = \frac1m \lVert \tilde X\theta - y \rVert^2, \qquad
    \nabla L(\theta) = \frac2m \tilde X^\top (\tilde X\theta - y)

The model itself is :data:`fl_helpers.models.linear` (one formula for every
engine); this module gives its functions the names the notebooks derive.
These functions do no argument checking: they are the inner loop of every engine.
"""

from __future__ import annotations

import numpy as np

from .models import linear as _model


def add_bias(X: np.ndarray) -> np.ndarray:
    """Return :math:`\\tilde X = [\\mathbf 1, X]`, shape (m, d + 1)."""
    return np.hstack([np.ones((X.shape[0], 1), dtype=X.dtype), X])


def predict(theta: np.ndarray, X: np.ndarray) -> np.ndarray:
    """Model output :math:`\\theta_0 + X\\theta_{1:d}`, shape (m,)."""
    return _model.predict(theta, X)


def mse(theta: np.ndarray, X: np.ndarray, y: np.ndarray) -> float:
    """Mean squared error :math:`\\frac1m\\sum_j (\\hat y_j - y_j)^2`."""
    return _model.loss(theta, X, y)


def mse_gradient(theta: np.ndarray, X: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Gradient :math:`\\frac2m\\tilde X^\\top(\\tilde X\\theta - y)`, shape (d + 1,)."""
    return _model.gradient(theta, X, y)


def hessian(X: np.ndarray) -> np.ndarray:
    """Hessian of the MSE (constant in theta): :math:`\\frac2m\\tilde X^\\top\\tilde X`."""
    Xt = add_bias(X)
    return 2.0 * Xt.T @ Xt / X.shape[0]
