"""Models: what the parties train, as pure functions of one flat parameter vector.

``linear`` (mean squared error, the default), ``logistic`` (binary
cross-entropy, labels 0/1) and ``softmax`` (cross-entropy, labels 0 .. K - 1)
are :class:`GLM` objects (:mod:`.glm`); :func:`keras` adapts a Keras model
(:mod:`.keras`, TensorFlow loaded on first use). Every model offers
``init(n_features, *, n_classes=None, seed=None)``, ``predict(theta, X)``,
``loss(theta, X, y)`` and ``gradient(theta, X, y)``.
"""

from .glm import GLM, check_model, linear, logistic
from .glm import softmax_regression as softmax
from .keras import KerasModel, keras

__all__ = ["GLM", "KerasModel", "check_model", "keras", "linear", "logistic", "softmax"]
