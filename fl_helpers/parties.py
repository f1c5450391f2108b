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

from dataclasses import dataclass

import numpy as np

from . import _validate as check
from .linear import mse, mse_gradient


@dataclass(frozen=True)
class ClientUpdate:
    """What one party sends back after its local work.

    Attributes
    ----------
    update : ndarray, shape (d + 1,)
        Pseudo-gradient :math:`\\Delta_i = (\\theta - \\theta_i) / \\eta`.
    weight : float
        The party's aggregation weight before normalisation: its sample count.
    theta : ndarray, shape (d + 1,)
        The local model :math:`\\theta_i` after local training (stays on the party
        in a real deployment; kept here for teaching).
    """

    update: np.ndarray
    weight: float
    theta: np.ndarray


class Party:
    """One participant holding local data ``(X, y)``.

    Parameters
    ----------
    X : array, shape (m, d)
        Local features, no bias column (the intercept is ``theta[0]``).
    y : array, shape (m,)
        Local targets.
    name : str, optional
        Label used in plots and tables.
    """

    def __init__(self, X, y, *, name: str | None = None):
        X = np.asarray(X, dtype=np.float64) if not isinstance(X, np.ndarray) else X
        if isinstance(X, np.ndarray) and X.ndim == 2 and X.shape[0] == 0:
            raise ValueError(f"a Party needs at least one sample, got an empty X of shape {X.shape}")
        # private copies: the read-only flags below must not freeze the caller's arrays
        self._X = check.features(X).copy()
        self._y = check.targets(y, self._X.shape[0]).copy()
        self._X.setflags(write=False)
        self._y.setflags(write=False)
        if name is not None and not isinstance(name, str):
            raise TypeError(f"name must be a str or None, got {type(name).__name__}")
        self.name = name

    def __repr__(self) -> str:
        label = f"{self.name!r}, " if self.name else ""
        return f"Party({label}n_samples={self.n_samples}, n_features={self.n_features})"

    @property
    def n_samples(self) -> int:
        """Number of local samples :math:`m_i`."""
        return self._X.shape[0]

    @property
    def n_features(self) -> int:
        """Number of features :math:`d` (the model has d + 1 parameters)."""
        return self._X.shape[1]

    @property
    def data(self) -> tuple[np.ndarray, np.ndarray]:
        """Read-only view of the local data, for simulation and teaching only.

        In a real federation this never leaves the party; engines that simulate
        many parties at once read it to stack the data.
        """
        return self._X, self._y

    def _theta(self, theta, name="theta") -> np.ndarray:
        return check.theta(theta, self.n_features + 1, name=name)

    def loss(self, theta) -> float:
        """Local mean squared error :math:`L_i(\\theta) = \\frac1{m_i}\\lVert\\tilde X_i\\theta - y_i\\rVert^2`."""
        return mse(self._theta(theta), self._X, self._y)

    def gradient(self, theta) -> np.ndarray:
        """Local gradient :math:`\\Delta_i = \\frac2{m_i}\\tilde X_i^\\top(\\tilde X_i\\theta - y_i)`."""
        return mse_gradient(self._theta(theta), self._X, self._y)

    def local_update(self, theta, *, lr, epochs, batch_size=None, rng=None) -> ClientUpdate:
        """Train locally from the broadcast ``theta`` and return the update.

        Runs ``epochs`` passes of gradient descent over the local data. With
        ``batch_size=None`` each epoch is one full-batch step; otherwise each
        epoch shuffles the data (a permutation from ``rng``: ``argsort`` of
        ``rng.random(m)``) and takes ``ceil(m / batch_size)`` minibatch steps,
        the last batch possibly smaller. Without ``rng`` minibatches follow the
        data order.

        Returns
        -------
        ClientUpdate
            ``update`` = sum of the step gradients = (theta - theta_i) / lr,
            ``weight`` = n_samples, ``theta`` = the local model theta_i.
        """
        theta = self._theta(theta)
        lr = check.positive_float("lr", lr)
        epochs = check.integer("epochs", epochs, minimum=1)
        batch_size = check.optional_batch_size(batch_size)
        if rng is not None and not isinstance(rng, np.random.Generator):
            raise TypeError(f"rng must be a numpy.random.Generator or None, got {type(rng).__name__}")
        return _local_sgd(self._X, self._y, theta, lr=lr, epochs=epochs, batch_size=batch_size, rng=rng)


def _local_sgd(X, y, theta, *, lr, epochs, batch_size, rng) -> ClientUpdate:
    """Unchecked local training shared by Party.local_update and the loop engine."""
    m = len(y)
    local = theta.copy()
    total = np.zeros_like(theta)
    for _ in range(epochs):
        if batch_size is None:  # one full-batch step per epoch
            g = mse_gradient(local, X, y)
            local -= lr * g
            total += g
            continue
        order = np.arange(m) if rng is None else np.argsort(rng.random(m), kind="stable")
        for start in range(0, m, batch_size):
            idx = order[start:start + batch_size]
            g = mse_gradient(local, X[idx], y[idx])
            local -= lr * g
            total += g
    return ClientUpdate(update=total, weight=float(m), theta=local)
