r"""Parties: the data holders of federated learning (参与方).

A :class:`Party` keeps its local data (本地数据) to itself. The server only ever
sees what :meth:`Party.local_update` returns: an update and a weight.

The update is a *pseudo-gradient*. For one full-batch step it is exactly the
local gradient :math:`\Delta_i = \nabla L_i(\theta)` (FedSGD, the article's
本地梯度). For :math:`E` local epochs of (minibatch) gradient descent it is the
sum of the gradients along the local path,

.. math::
    \Delta_i = \sum_{s} g_{i,s} = \frac{\theta - \theta_i}{\eta},

so the server's update :math:`\theta \leftarrow \theta - \eta \sum_i w_i \Delta_i`
is the weighted average of the local models :math:`\sum_i w_i \theta_i`
(FedAvg, McMahan et al. 2017, "Communication-Efficient Learning of Deep
Networks from Decentralized Data").
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from . import randomness
from . import validation as valid
from .models import check_model, linear


@dataclass(frozen=True)
class ClientUpdate:
    """What one party computes in a round.

    Attributes
    ----------
    update : ndarray, shape (p,)
        Pseudo-gradient :math:`\\Delta_i = (\\theta - \\theta_i) / \\eta`: what the party sends.
    weight : float
        The party's aggregation weight before normalisation: its sample count.
    theta : ndarray, shape (p,)
        The local model :math:`\\theta_i` after local training (stays on the party
        in a real deployment; kept here for teaching).
    """

    update: np.ndarray
    weight: float
    theta: np.ndarray


class Party:
    """One participant holding local data ``(X, y)`` and the federation's model.

    Parameters
    ----------
    X : array, shape (m, d)
        Local features, no bias column (the intercepts come first in ``theta``).
    y : array, shape (m,)
        Local targets: real values (``models.linear``) or class labels
        (``models.logistic``: 0/1, ``models.softmax``: 0 .. K - 1).
    model : a model from :mod:`fl_helpers.models`
        ``models.linear`` by default.
    name : str, optional
        Label used in plots and tables.
    """

    def __init__(self, X, y, *, model=linear, name: str | None = None):
        X = np.asarray(X, dtype=np.float64) if not isinstance(X, np.ndarray) else X
        if isinstance(X, np.ndarray) and X.ndim == 2 and X.shape[0] == 0:
            raise ValueError(f"a Party needs at least one sample, got an empty X of shape {X.shape}")
        self.model = check_model(model)
        # private copies: the read-only flags below must not freeze the caller's arrays
        self._X = valid.features(X).copy()
        self._y = valid.targets(y, self._X.shape[0]).copy()
        if hasattr(self.model, "check_labels"):
            self.model.check_labels(self._y)
        self._X.setflags(write=False)
        self._y.setflags(write=False)
        if name is not None and not isinstance(name, str):
            raise TypeError(f"name must be a str or None, got {type(name).__name__}")
        self.name = name

    def __repr__(self) -> str:
        label = f"{self.name!r}, " if self.name else ""
        model = "" if self.model is linear else f", model={self.model!r}"
        return f"Party({label}n_samples={self.n_samples}, n_features={self.n_features}{model})"

    @property
    def n_samples(self) -> int:
        """Number of local samples :math:`m_i`."""
        return self._X.shape[0]

    @property
    def n_features(self) -> int:
        """Number of features :math:`d`."""
        return self._X.shape[1]

    @property
    def data(self) -> tuple[np.ndarray, np.ndarray]:
        """Read-only view of the local data, for simulation and teaching only.

        In a real federation this never leaves the party; engines that simulate
        many parties at once read it to stack the data.
        """
        return self._X, self._y

    def _theta(self, theta, name="theta") -> np.ndarray:
        theta = valid.as_vector(theta, name=name)
        valid.param_count(theta, self.model, self.n_features, name=name)
        return theta

    def loss(self, theta) -> float:
        """Local loss :math:`L_i(\\theta)` (for ``models.linear``: :math:`\\frac1{m_i}\\lVert\\tilde X_i\\theta - y_i\\rVert^2`)."""
        return self.model.loss(self._theta(theta), self._X, self._y)

    def gradient(self, theta) -> np.ndarray:
        """Local gradient :math:`\\nabla L_i(\\theta)` (linear: :math:`\\frac2{m_i}\\tilde X_i^\\top(\\tilde X_i\\theta - y_i)`)."""
        return self.model.gradient(self._theta(theta), self._X, self._y)

    def local_update(self, theta, *, lr, epochs=1, batch_size=None, seed=None, round=1,
                     index=0, prox_mu=0.0, correction=None) -> ClientUpdate:
        """Train locally from the broadcast ``theta`` and return the update.

        Runs ``epochs`` passes of gradient descent over the local data. With
        ``batch_size=None`` each epoch is one full-batch step; otherwise each
        epoch visits the rows in a random order and takes ``ceil(m / batch_size)``
        minibatch steps, the last batch possibly smaller. The order is this
        party's local stream of the randomness contract
        (:mod:`fl_helpers.randomness`), keyed by ``(seed, round, index)``: so a
        party computes, alone, exactly its row of a federated run with that
        ``seed``. Without a ``seed`` minibatches follow the data order.

        ``prox_mu`` :math:`\\mu \\ge 0` adds FedProx's proximal term: each step descends
        :math:`L_i(\\theta_i) + \\frac\\mu2\\lVert\\theta_i - \\theta\\rVert^2`. ``correction`` (p,) is
        added to every step's gradient (SCAFFOLD's :math:`c - c_i`).

        Returns
        -------
        ClientUpdate
            ``update`` = sum of the step gradients = (theta - theta_i) / lr,
            ``weight`` = n_samples, ``theta`` = the local model theta_i.
        """
        theta = self._theta(theta)
        lr = valid.positive_float("lr", lr)
        epochs = valid.integer("epochs", epochs, minimum=1)
        batch_size = valid.optional_batch_size(batch_size)
        round_ = valid.integer("round", round, minimum=1)
        index = valid.integer("index", index, minimum=0)
        prox_mu = valid.positive_float("prox_mu", prox_mu, allow_zero=True)
        if correction is not None:
            correction = self._theta(correction, name="correction")
        keys = None
        if batch_size is not None and seed is not None:
            keys = randomness.shuffle_keys(valid.seed(seed), round_, [index], [self.n_samples], epochs)
        total, local, _ = local_sgd(self.model, self._X, self._y, theta, lr=lr, epochs=epochs,
                                    batch_size=batch_size, keys=keys, prox_mu=prox_mu, correction=correction)
        return ClientUpdate(update=total, weight=float(self.n_samples), theta=local)


def local_sgd(model, X, y, theta, *, lr, epochs, batch_size, keys, prox_mu=0.0, correction=None):
    r"""Local gradient descent of one party (unchecked): the loop engine and ``Party.local_update``.

    Every step moves along :math:`g + \mu(\theta_i - \theta) + c`: the model's gradient ``g`` on the
    step's rows, FedProx's proximal pull towards the broadcast ``theta`` (``prox_mu`` :math:`\mu`;
    Li et al. 2020) and a fixed ``correction`` :math:`c` (SCAFFOLD's :math:`c - c_i`; None: none).
    With ``prox_mu=0`` and no correction the steps are plain gradient steps, bit for bit.

    Returns the summed step directions (the pseudo-gradient), the local model and the loss at
    ``theta`` when the first step saw every row (full batch), else None.
    ``keys`` (epochs * m,) order the rows of each epoch (None: data order).
    """
    m = len(y)
    local = theta.copy()
    total = np.zeros_like(theta)
    loss = None

    def step(g):
        if prox_mu != 0.0:
            g = g + prox_mu * (local - theta)
        if correction is not None:
            g = g + correction
        local[...] -= lr * g
        total[...] += g

    for epoch in range(epochs):
        if batch_size is None:                      # one full-batch step per epoch
            first, g = model.loss_and_gradient(local, X, y, want_loss=epoch == 0)   # the loss at theta, free
            loss = first if epoch == 0 else loss
            step(g)
            continue
        order = np.arange(m) if keys is None else np.argsort(keys[epoch * m:(epoch + 1) * m], kind="stable")
        for start in range(0, m, batch_size):
            idx = order[start:start + batch_size]
            step(model.gradient(local, X[idx], y[idx]))
    return total, local, loss


def local_steps(n_samples, *, epochs, batch_size) -> np.ndarray:
    """Number of local steps: ``epochs`` full-batch steps, or ``epochs * ceil(m / batch_size)`` minibatch steps."""
    epochs = np.asarray(epochs)
    if batch_size is None:
        return epochs * np.ones_like(np.asarray(n_samples))
    return epochs * -(-np.asarray(n_samples) // batch_size)


def check_parties(parties) -> list[Party]:
    """Validate a non-empty sequence of parties with the same number of features and the same model."""
    if isinstance(parties, Party) or not isinstance(parties, Sequence) or isinstance(parties, str):
        raise TypeError(f"parties must be a list of Party objects, got {type(parties).__name__}")
    if len(parties) < 1:
        raise ValueError("parties must hold at least one Party, got an empty list")
    for i, p in enumerate(parties):
        if not isinstance(p, Party):
            raise TypeError(f"parties[{i}] must be a Party, got {type(p).__name__}")
    d = {p.n_features for p in parties}
    if len(d) != 1:
        raise ValueError(f"all parties must have the same number of features, got {sorted(d)}")
    first = parties[0].model
    if any(p.model != first for p in parties):          # GLMs compare by value, Keras models by identity
        raise ValueError(f"all parties must train the same model, got {sorted({repr(p.model) for p in parties})}")
    return list(parties)


def initial_theta(theta0, parties) -> np.ndarray:
    """``theta0`` checked against the parties' model, or the model's ``init`` (zeros for the GLMs)."""
    model, d = parties[0].model, parties[0].n_features
    if theta0 is None:
        n_classes = None
        if getattr(model, "link", None) == "softmax" and model.n_classes is None:
            n_classes = int(max(p.data[1].max() for p in parties)) + 1   # labels 0..K-1 seen anywhere
        return model.init(d, n_classes=n_classes)
    theta = valid.as_vector(theta0, name="theta0")
    valid.param_count(theta, model, d, name="theta0")
    return theta
