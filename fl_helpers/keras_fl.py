r"""Federated averaging of a Keras model: a thin name over the one round loop.

:func:`fedavg_keras` wraps the model builder as a course model
(:func:`fl_helpers.models.keras`: flat parameters, ``tf.GradientTape``
gradients), gives it to the parties and calls :func:`fl_helpers.fedavg`, so a
Keras model gets exactly the round of the numpy course (broadcast, local SGD,
weighted mean, server update), the same sampling and minibatch streams, the
same hooks (server optimizers, client transforms, aggregators), the same
History, and the trained ``keras.Model`` back.

For a ``Dense(1)`` model with float64 layers and the MSE loss this is
:func:`fl_helpers.fedavg` on ``models.linear`` to 1e-10 (the flat vector is in
Keras' order, kernel before bias).

TensorFlow is imported on the first call, never when this module is imported.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, fields
from typing import Any

import numpy as np

from .history import History
from .models import keras as keras_model
from .parties import Party
from .server import fedavg


@dataclass(repr=False)
class KerasHistory(History):
    """A :class:`~fl_helpers.History` of a Keras run, plus the trained global model.

    ``thetas`` hold the model's weights flattened layer after layer
    (:meth:`fl_helpers.models.KerasModel.flatten`); ``model`` carries the last
    finite global weights.
    """

    model: Any = field(default=None)


def party_data(parties) -> list[tuple[np.ndarray, np.ndarray]]:
    """The local data ``(X, y)`` of each party: :class:`~fl_helpers.Party` objects or ``(X, y)`` pairs."""
    if isinstance(parties, (str, Party)) or not isinstance(parties, Sequence):
        raise TypeError(f"parties must be a list of Party objects or (X, y) pairs, got {type(parties).__name__}")
    if len(parties) < 1:
        raise ValueError("parties must hold at least one party, got an empty list")
    data = []
    for i, p in enumerate(parties):
        if isinstance(p, Party):
            data.append(p.data)
            continue
        if not (isinstance(p, Sequence) and len(p) == 2):
            raise TypeError(f"parties[{i}] must be a Party or an (X, y) pair, got {type(p).__name__}")
        X, y = np.asarray(p[0]), np.asarray(p[1])
        if X.ndim < 1 or len(X) < 1 or len(X) != len(y):
            raise ValueError(f"parties[{i}] must hold X and y with the same number (>= 1) of samples, "
                             f"got shapes {X.shape} and {y.shape}")
        data.append((X, y))
    return data


def fedavg_keras(model_fn, parties, *, rounds: int, lr: float, local_epochs: int = 1,
                 batch_size: int | None = None, loss="mse", engine="tensorflow", **options) -> KerasHistory:
    r"""Federated averaging of a Keras model: :func:`fl_helpers.fedavg` with ``models.keras(model_fn)``.

    .. math::
        w \leftarrow \sum_{i \in S_t} p_i\, w_i, \qquad
        p_i = \frac{m_i}{\sum_{j\in S_t} m_j} \ (\text{"samples"}) \text{ or } \frac1{|S_t|}

    Parameters
    ----------
    model_fn : callable
        Builds the model (``model_fn()`` -> keras.Model); its initial weights are round 0's.
        A ``keras.Model`` instance is accepted too, but it *keeps* the trained
        weights: a second call with the same instance starts where the first ended.
    parties : list of Party or (X, y) pairs
        Each party's local data; labels may be integers (classification).
    rounds, lr, local_epochs, batch_size
        As in :func:`fl_helpers.fedavg`; ``lr`` is the local SGD learning rate.
    loss : str or callable
        Keras loss, ``"mse"`` by default.
    engine : str
        ``"tensorflow"`` (each party's steps through the compiled gradient) or ``"loop"``.
    options
        The rest of :func:`fl_helpers.fedavg`'s keywords: ``fraction``, ``seed``,
        ``weighting``, ``server_optimizer``, ``client_transform``, ...

    Returns
    -------
    KerasHistory
        ``thetas``: flattened global weights per round; ``losses``: global
        training loss :math:`\sum_i \frac{m_i}{M} L_i(w)`; ``model``: the global model.
    """
    model = keras_model(model_fn, loss=loss)
    own = [Party(X, y, model=model, name=getattr(p, "name", None))
           for p, (X, y) in zip(parties, party_data(parties), strict=True)]
    history = fedavg(own, lr=lr, rounds=rounds, local_epochs=local_epochs, batch_size=batch_size,
                     engine=engine, **options)
    model.model.set_weights(model.unflatten(history.theta))     # the last finite model
    return KerasHistory(**{f.name: getattr(history, f.name) for f in fields(History)}, model=model.model)
