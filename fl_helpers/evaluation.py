r"""Evaluation: how good a model is on held-out data, and for each party.

A federated model is one model for everyone; whether it serves everyone is a
separate question. :func:`party_accuracies` gives each party's own accuracy at
the global model; its spread across parties is a simple fairness measure
(Li, Sanjabi, Beirami and Smith 2020, "Fair Resource Allocation in Federated
Learning", report the same per-device spread).

``train(..., eval_data=(X_test, y_test))`` records :func:`evaluate`'s numbers
after every round in ``History.metrics`` (``"test_loss"``, and
``"test_accuracy"`` for classifiers).
"""

from __future__ import annotations

import numpy as np

from . import validation as valid


def is_classifier(model) -> bool:
    """True for the logistic and softmax GLMs and for Keras models with a classification loss."""
    link = getattr(model, "link", None)
    if link is not None:
        return link in ("sigmoid", "softmax")
    return "crossentropy" in str(getattr(model, "loss_name", "")).lower()


def accuracy(model, theta, X, y) -> float:
    """Share of the samples of ``(X, y)`` that ``model`` at ``theta`` labels correctly."""
    X = valid.features(X)
    y = valid.targets(y, X.shape[0])
    if not is_classifier(model):
        raise TypeError(f"accuracy needs a classification model (logistic, softmax, or Keras with a "
                        f"cross-entropy loss), got {model!r}")
    return float(np.mean(model.classify(np.asarray(theta, dtype=np.float64), X) == y))


def evaluate(model, theta, X, y) -> dict:
    """``{"test_loss": ..., "test_accuracy": ...}`` of ``model`` at ``theta`` on ``(X, y)``.

    The accuracy only for classifiers (:func:`is_classifier`).
    """
    X = valid.features(X)
    y = valid.targets(y, X.shape[0])
    theta = np.asarray(theta, dtype=np.float64)
    out = {"test_loss": float(model.loss(theta, X, y))}
    if is_classifier(model):
        out["test_accuracy"] = accuracy(model, theta, X, y)
    return out


def party_accuracies(parties, theta) -> np.ndarray:
    """Each party's accuracy on its own data at the global model ``theta``, shape (N,)."""
    return np.array([accuracy(p.model, theta, *p.data) for p in parties])


def eval_metrics(model, eval_data, *, theta=None, n_features=None) -> dict:
    """``train``'s per-round metric functions for ``eval_data=(X, y)``, checked once here.

    With the run's starting ``theta`` and the parties' ``n_features`` the data are checked against
    the model too: the same number of features, and (softmax) no label beyond the model's classes.
    """
    if not (isinstance(eval_data, tuple | list) and len(eval_data) == 2):
        raise TypeError(f"eval_data must be a pair (X, y) of held-out data, got {type(eval_data).__name__}")
    X = valid.features(eval_data[0], name="eval_data[0]")
    y = valid.targets(eval_data[1], X.shape[0], name="eval_data[1]", x_name="eval_data[0]")
    if n_features is not None and X.shape[1] != n_features:
        raise ValueError(f"eval_data[0] must have the parties' {n_features} features, got {X.shape[1]}")
    if hasattr(model, "check_labels"):
        model.check_labels(y, name="eval_data[1]")
    if getattr(model, "link", None) == "softmax" and theta is not None and n_features is not None:
        K = len(theta) // (n_features + 1)
        if y.max() >= K:
            raise ValueError(f"eval_data[1] must hold labels 0..{K - 1}, the classes the parties' model has "
                             f"(set models.softmax(n_classes=...) if a class is missing from every party), "
                             f"got {int(y.max())}")
    metrics = {"test_loss": lambda info: model.loss(info.new_theta, X, y)}
    if is_classifier(model):
        metrics["test_accuracy"] = lambda info: accuracy(model, info.new_theta, X, y)
    return metrics
