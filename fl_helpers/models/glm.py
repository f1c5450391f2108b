r"""Generalised linear models: linear, logistic and softmax regression.

Every model of the course is a small set of pure numpy functions of one flat
parameter vector :math:`\theta` (the vector that parties send and the server
averages). Layout, intercepts first as in the source article: with ``K``
outputs and ``d`` features, :math:`\theta` is the (d + 1, K) matrix
:math:`\Theta = [b;\, W]` read row by row, so ``theta[:K]`` are the
intercepts :math:`b` and ``theta[K:]`` the weights :math:`W` (d, K).
Linear and logistic regression have K = 1, so :math:`\theta = [b, w_1, \dots, w_d]`.

With :math:`Z = \mathbf 1 b^\top + XW` (m, K), the mean :math:`\mu(Z)` (identity,
sigmoid or softmax) and targets :math:`Y` (y itself, or one-hot labels), all
three share one gradient (Nelder & Wedderburn 1972, "Generalized Linear Models"):

.. math::
    L(\theta) = \frac1m \sum_j \ell(z_j, y_j) + \frac\lambda2 \lVert W\rVert^2, \qquad
    \nabla_\Theta L = \frac{c}{m}\, \tilde X^\top \big(\mu(Z) - Y\big) + \lambda \begin{bmatrix}0\\ W\end{bmatrix}

=========  ===========  =================================  ======================  ===
model      labels       :math:`\ell(z, y)`                 :math:`\mu(z)`          c
=========  ===========  =================================  ======================  ===
linear     real         :math:`(z - y)^2`                  :math:`z`               2
logistic   0 or 1       :math:`\log(1 + e^z) - y z`        :math:`1/(1 + e^{-z})`  1
softmax    0 .. K - 1   :math:`\log\sum_k e^{z_k} - z_y`   softmax                 1
=========  ===========  =================================  ======================  ===

The L2 term (``l2`` = :math:`\lambda`) leaves the intercepts alone. These
functions do no argument checking (they are every engine's inner loop); the
public entry points (``Party``, ``train``, ...) check their inputs once.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np

from .. import validation as valid

LINKS = ("identity", "sigmoid", "softmax")


def sigmoid(z: np.ndarray) -> np.ndarray:
    """:math:`1 / (1 + e^{-z})` without overflow for large :math:`|z|`."""
    e = np.exp(-np.abs(z))
    return np.where(z >= 0, 1.0 / (1.0 + e), e / (1.0 + e))


def softmax(Z: np.ndarray) -> np.ndarray:
    """Row-wise softmax, shifted by the row maximum so that no exponential overflows."""
    E = np.exp(Z - Z.max(axis=-1, keepdims=True))
    return E / E.sum(axis=-1, keepdims=True)


def _logsumexp(Z: np.ndarray) -> np.ndarray:
    top = Z.max(axis=-1, keepdims=True)
    return (top + np.log(np.exp(Z - top).sum(axis=-1, keepdims=True)))[..., 0]


@dataclass(frozen=True)
class GLM:
    """A generalised linear model; ``models.linear``, ``models.logistic`` and ``models.softmax``.

    Call an instance to change an option: ``models.linear(l2=0.1)``,
    ``models.softmax(n_classes=10)``.

    Attributes
    ----------
    name : str
    link : {"identity", "sigmoid", "softmax"}
        The mean function :math:`\\mu`; engines look it up by this name.
    scale : float
        The factor ``c`` of the gradient (2 for the mean squared error, 1 for cross-entropy).
    n_classes : int or None
        Softmax only: the number of classes K (None: inferred from the labels by ``train``).
    l2 : float
        :math:`\\lambda` of the penalty :math:`\\frac\\lambda2\\lVert W\\rVert^2`.
    """

    name: str
    link: str
    scale: float
    n_classes: int | None = None
    l2: float = 0.0

    def __call__(self, *, n_classes: int | None = None, l2: float | None = None) -> GLM:
        """A copy with other options, e.g. ``models.softmax(n_classes=10, l2=1e-3)``."""
        changes = {}
        if l2 is not None:
            changes["l2"] = valid.positive_float("l2", l2, allow_zero=True)
        if n_classes is not None:
            if self.link != "softmax":
                raise ValueError(f"n_classes applies to the softmax model only, got n_classes={n_classes!r} "
                                 f"for the {self.name} model")
            changes["n_classes"] = valid.integer("n_classes", n_classes, minimum=2)
        return dataclasses.replace(self, **changes)

    def __repr__(self) -> str:
        opts = "".join(f", {k}={getattr(self, k)!r}" for k in ("n_classes", "l2")
                       if getattr(self, k) not in (None, 0.0))
        return f"models.{self.name}({opts[2:]})" if opts else f"models.{self.name}"

    # --- sizes and layout ---------------------------------------------------------

    def n_outputs(self, n_classes: int | None = None) -> int:
        """K: 1 for linear and logistic regression, the number of classes for softmax."""
        if self.link != "softmax":
            if n_classes is not None:
                raise ValueError(f"n_classes applies to the softmax model only, got n_classes={n_classes!r} "
                                 f"for the {self.name} model")
            return 1
        k = n_classes if n_classes is not None else self.n_classes
        if k is None:
            raise ValueError("the softmax model needs n_classes (an integer >= 2), got None")
        return valid.integer("n_classes", k, minimum=2)

    def n_params(self, n_features: int, *, n_classes: int | None = None) -> int:
        """Length of :math:`\\theta`: (d + 1) K."""
        return (n_features + 1) * self.n_outputs(n_classes)

    def expected_params(self, n_features: int, n_given: int) -> int:
        """The length ``theta`` must have for ``n_features`` (softmax without n_classes: any multiple of d + 1 >= 2(d + 1))."""
        if self.link == "softmax" and self.n_classes is None:
            if n_given % (n_features + 1) == 0 and n_given >= 2 * (n_features + 1):
                return n_given
            return 2 * (n_features + 1)
        return self.n_params(n_features)

    def layout(self, n_features: int) -> str:
        """The layout of ``theta``, in words, for error messages."""
        if self.link != "softmax":
            return " = (n_features + 1,) with theta[0] the intercept"
        return " = ((n_features + 1) * n_classes,), the intercepts first"

    def n_outputs_of(self, theta: np.ndarray, n_features: int) -> int:
        """K read off a parameter vector."""
        return 1 if self.link != "softmax" else len(theta) // (n_features + 1)

    def init(self, n_features: int, *, n_classes: int | None = None, seed: int | None = None) -> np.ndarray:
        """Initial :math:`\\theta`: zeros, or :math:`\\mathcal N(0, 0.01^2)` entries with a ``seed``."""
        n_features = valid.integer("n_features", n_features, minimum=1)
        p = self.n_params(n_features, n_classes=n_classes)
        if seed is None:
            return np.zeros(p)
        return 0.01 * np.random.default_rng(valid.seed(seed)).standard_normal(p)

    def unpack(self, theta: np.ndarray, n_features: int):
        """Views ``(b, W)`` of :math:`\\theta`: shapes () and (d,) when K = 1, (K,) and (d, K) otherwise."""
        if self.link != "softmax":
            return theta[0], theta[1:]
        Theta = theta.reshape(n_features + 1, -1)
        return Theta[0], Theta[1:]

    # --- the model ------------------------------------------------------------------

    def scores(self, theta: np.ndarray, X: np.ndarray) -> np.ndarray:
        """The linear predictor :math:`Z = \\mathbf 1 b^\\top + XW`: (m,) when K = 1, else (m, K)."""
        b, W = self.unpack(theta, X.shape[1])
        return b + X @ W

    def mean(self, Z: np.ndarray) -> np.ndarray:
        """:math:`\\mu(Z)`: the prediction for scores ``Z``."""
        if self.link == "identity":
            return Z
        return sigmoid(Z) if self.link == "sigmoid" else softmax(Z)

    def predict(self, theta: np.ndarray, X: np.ndarray) -> np.ndarray:
        """:math:`\\mu(Z)`: the regression value, P(y = 1), or the (m, K) class probabilities."""
        return self.mean(self.scores(theta, X))

    def classify(self, theta: np.ndarray, X: np.ndarray) -> np.ndarray:
        """Predicted labels (classification models): P(y = 1) > 1/2, or the most probable class."""
        Z = self.scores(theta, X)
        if self.link == "sigmoid":
            return (Z > 0).astype(np.int64)
        if self.link == "softmax":
            return Z.argmax(axis=1)
        raise ValueError("classify needs a classification model (logistic or softmax), got the linear model")

    def encode(self, y: np.ndarray, n_outputs: int) -> np.ndarray:
        """Targets :math:`Y` in the shape of the scores: ``y`` itself, or one-hot rows for softmax."""
        if self.link != "softmax":
            return y
        Y = np.zeros((len(y), n_outputs), dtype=np.float64)
        Y[np.arange(len(y)), y.astype(np.int64)] = 1.0
        return Y

    def pointwise_loss(self, Z: np.ndarray, Y: np.ndarray) -> np.ndarray:
        """:math:`\\ell(z_j, y_j)` for each sample (any leading shape), without the L2 term."""
        if self.link == "identity":
            r = Z - Y
            return r * r
        if self.link == "sigmoid":
            return np.logaddexp(0.0, Z) - Y * Z
        return _logsumexp(Z) - (Z * Y).sum(axis=-1)

    def penalty(self, theta: np.ndarray, n_features: int) -> float:
        """:math:`\\frac\\lambda2\\lVert W\\rVert^2`."""
        if self.l2 == 0.0:
            return 0.0
        W = self.unpack(theta, n_features)[1]
        return 0.5 * self.l2 * float(np.sum(W * W))

    def _data_loss(self, Z: np.ndarray, Y: np.ndarray) -> float:
        """:math:`\\frac1m\\sum_j \\ell(z_j, y_j)` from the scores (the MSE as r @ r / m, the course's formula)."""
        if self.link == "identity":
            r = Z - Y
            return float(r @ r) / len(Y)
        return float(np.mean(self.pointwise_loss(Z, Y)))

    def loss(self, theta: np.ndarray, X: np.ndarray, y: np.ndarray) -> float:
        """Mean loss :math:`\\frac1m\\sum_j \\ell(z_j, y_j) + \\frac\\lambda2\\lVert W\\rVert^2`."""
        Z = self.scores(theta, X)
        Y = self.encode(y, 1 if Z.ndim == 1 else Z.shape[1])
        return self._data_loss(Z, Y) + self.penalty(theta, X.shape[1])

    def gradient(self, theta: np.ndarray, X: np.ndarray, y: np.ndarray) -> np.ndarray:
        """:math:`\\frac cm \\tilde X^\\top(\\mu(Z) - Y) + \\lambda[0; W]`, flattened like ``theta``."""
        return self.loss_and_gradient(theta, X, y, want_loss=False)[1]

    def loss_and_gradient(self, theta: np.ndarray, X: np.ndarray, y: np.ndarray, *, want_loss: bool = True):
        """``(loss, gradient)`` from one pass: the scores give both (the loss ``None`` if not wanted)."""
        Z = self.scores(theta, X)
        Y = self.encode(y, 1 if Z.ndim == 1 else Z.shape[1])
        loss = self._data_loss(Z, Y) + self.penalty(theta, X.shape[1]) if want_loss else None
        return loss, self.gradient_from_residual(theta, X, self.mean(Z) - Y)

    def gradient_from_residual(self, theta: np.ndarray, X: np.ndarray, R: np.ndarray) -> np.ndarray:
        """The gradient given the residual :math:`R = \\mu(Z) - Y` (what every engine computes first)."""
        m = X.shape[0]
        g = np.empty_like(theta)
        gb, gW = self.unpack(g, X.shape[1])
        if R.ndim == 1:
            g[0] = self.scale * R.sum() / m
        else:
            gb[...] = self.scale * R.sum(axis=0) / m
        gW[...] = self.scale * (X.T @ R) / m
        if self.l2 != 0.0:
            gW += self.l2 * self.unpack(theta, X.shape[1])[1]
        return g

    def tf_ops(self, tf):
        """The same model in TensorFlow, for (..., K) score tensors (the TF engine's).

        Returns ``(mean, residual_and_loss)``: :math:`\\mu(Z)`, and ``(R, l)`` with
        the residual :math:`R = \\mu(Z) - Y` and the pointwise loss :math:`\\ell(z, y)`
        (for the MSE both come from one difference :math:`Z - Y`).
        """
        if self.link == "identity":
            def identity_residual(Z, Y):
                D = Z - Y
                return D, tf.reduce_sum(D * D, axis=-1)
            return (lambda Z: Z), identity_residual
        if self.link == "sigmoid":
            def sigmoid_residual(Z, Y):
                return tf.sigmoid(Z) - Y, tf.reduce_sum(tf.nn.softplus(Z) - Y * Z, axis=-1)
            return tf.sigmoid, sigmoid_residual

        def softmax_residual(Z, Y):
            return (tf.nn.softmax(Z, axis=-1) - Y,
                    tf.reduce_logsumexp(Z, axis=-1) - tf.reduce_sum(Z * Y, axis=-1))
        return (lambda Z: tf.nn.softmax(Z, axis=-1)), softmax_residual

    def check_labels(self, y: np.ndarray, *, name: str = "y") -> None:
        """Raise ``ValueError`` if ``y`` cannot be this model's labels."""
        if self.link == "identity":
            return
        if not np.all(y == np.round(y)) or y.min() < 0:
            raise ValueError(f"{name} must hold class labels (integers >= 0) for the {self.name} model, "
                             f"got values such as {y[(y != np.round(y)) | (y < 0)][:3].tolist()}")
        top = 1 if self.link == "sigmoid" else (None if self.n_classes is None else self.n_classes - 1)
        if top is not None and y.max() > top:
            raise ValueError(f"{name} must hold labels in 0..{top} for the {self.name} model, got {y.max():g}")


#: Linear regression with the mean squared error (the course's model since notebook 01).
linear = GLM("linear", "identity", 2.0)
#: Logistic regression: binary labels 0/1, binary cross-entropy.
logistic = GLM("logistic", "sigmoid", 1.0)
#: Softmax (multinomial logistic) regression: integer labels, cross-entropy.
softmax_regression = GLM("softmax", "softmax", 1.0)


def check_model(model, *, name: str = "model"):
    """Return ``model`` if it is one of the course's models (a GLM or a Keras model adapter)."""
    from .keras import KerasModel

    if not isinstance(model, (GLM, KerasModel)):
        raise TypeError(f"{name} must be a model from fl_helpers.models (linear, logistic, softmax, "
                        f"or keras(...)), got {type(model).__name__}")
    return model
