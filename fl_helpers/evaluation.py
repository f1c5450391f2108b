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


# --- scores for a probabilistic binary classifier (credit scoring, screening) ------------------

def _binary_scores(y, p, *, p_name: str) -> tuple[np.ndarray, np.ndarray]:
    y = np.asarray(y)
    p = np.asarray(p, dtype=np.float64) if not isinstance(p, np.ndarray) else p.astype(np.float64, copy=False)
    if y.ndim != 1 or p.ndim != 1 or len(y) != len(p):
        raise ValueError(f"y and {p_name} must be 1-D arrays of the same length, got shapes {y.shape} and {p.shape}")
    if len(y) == 0:
        raise ValueError("y must hold at least one sample, got an empty array")
    if not np.all(np.isin(y, (0, 1))):
        raise ValueError(f"y must hold binary labels 0/1, got values {np.unique(y)[:5].tolist()}")
    if not np.all(np.isfinite(p)):
        raise ValueError(f"{p_name} must be finite, got {int(np.sum(~np.isfinite(p)))} non-finite values")
    return y.astype(np.int64), p


def roc_auc(y, score) -> float:
    r"""Area under the ROC curve: the probability that a random positive scores above a random negative.

    .. math:: \mathrm{AUC} = \frac{1}{n_1 n_0}\sum_{i: y_i = 1}\sum_{j: y_j = 0}
              \big(\mathbb 1[s_i > s_j] + \tfrac12\,\mathbb 1[s_i = s_j]\big)

    computed from ranks (the Mann-Whitney U statistic, ties averaged) in :math:`O(m\log m)`.
    0.5 is a coin, 1 a perfect ranking; it ignores calibration and the class balance, which is why
    credit scoring reports it next to a calibration table.
    """
    y, s = _binary_scores(y, score, p_name="score")
    n1 = int(y.sum())
    n0 = len(y) - n1
    if n1 == 0 or n0 == 0:
        raise ValueError(f"roc_auc needs both classes in y, got {n1} positives and {n0} negatives")
    order = np.argsort(s, kind="mergesort")
    s_sorted = s[order]
    ranks = np.empty(len(s), dtype=np.float64)
    # average rank (1-based) of each run of tied scores
    starts = np.flatnonzero(np.r_[True, s_sorted[1:] != s_sorted[:-1]])
    ends = np.r_[starts[1:], len(s)]
    avg = (starts + ends + 1) / 2.0
    ranks[order] = np.repeat(avg, ends - starts)
    u = ranks[y == 1].sum() - n1 * (n1 + 1) / 2.0
    return float(u / (n1 * n0))


def brier_score(y, p) -> float:
    r"""Mean squared error of the predicted probabilities: :math:`\frac1m\sum_i (p_i - y_i)^2` (lower is better)."""
    y, p = _binary_scores(y, p, p_name="p")
    if np.any((p < 0) | (p > 1)):
        raise ValueError(f"p must hold probabilities in [0, 1], got values from {p.min():.3g} to {p.max():.3g}")
    return float(np.mean((p - y) ** 2))


def calibration_table(y, p, *, bins: int = 10) -> dict:
    r"""Reliability table: predicted probability vs observed rate in ``bins`` groups of equal size.

    The samples are sorted by ``p`` and cut into ``bins`` groups of (nearly) equal count (quantile
    bins: with a 3 % default rate, equal-width bins would put almost everyone in the first one).

    Returns
    -------
    dict with arrays of shape (bins,): ``"predicted"`` (mean p in the group), ``"observed"`` (share of
    positives), ``"count"``; and ``"ece"``, the expected calibration error
    :math:`\sum_b \frac{n_b}{m}\,\lvert \bar p_b - \bar y_b\rvert`.
    """
    y, p = _binary_scores(y, p, p_name="p")
    if np.any((p < 0) | (p > 1)):
        raise ValueError(f"p must hold probabilities in [0, 1], got values from {p.min():.3g} to {p.max():.3g}")
    bins = valid.integer("bins", bins, minimum=1, maximum=len(y))
    order = np.argsort(p, kind="mergesort")
    groups = np.array_split(order, bins)
    count = np.array([len(g) for g in groups], dtype=np.int64)
    predicted = np.array([p[g].mean() for g in groups])
    observed = np.array([y[g].mean() for g in groups])
    ece = float(np.sum(count / len(y) * np.abs(predicted - observed)))
    return {"predicted": predicted, "observed": observed, "count": count, "ece": ece}
