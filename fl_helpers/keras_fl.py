r"""Federated averaging of any small Keras model, written with ``tf.GradientTape``.

The numpy engines train the course's linear model. This module runs the very
same round for a ``tf.keras`` model (softmax regression, a small MLP, ...) on
data that need not be regression data (McMahan et al. 2017, "Communication-
Efficient Learning of Deep Networks from Decentralized Data"). A round is the
four blocks of :mod:`fl_helpers.server`:

1. **broadcast**: every selected party starts from the global weights :math:`w`;
2. **local work**: party :math:`i` runs ``local_epochs`` epochs of (minibatch)
   SGD on its own data and returns its weights :math:`w_i` and its sample count
   :math:`m_i` (:func:`keras_local_update`);
3. **aggregate**: the weighted mean :math:`\bar w = \sum_i p_i w_i`, with
   :math:`p_i = m_i / \sum_j m_j` (``weighting="samples"``) or :math:`1/k`
   (``"uniform"``), the same :func:`fl_helpers.aggregation.aggregate` as the
   numpy course;
4. **server update**: :math:`w \leftarrow \bar w`. This is the numpy course's
   :math:`w \leftarrow w - \eta\sum_i p_i\Delta_i` with the pseudo-gradients
   :math:`\Delta_i = (w - w_i)/\eta`.

For a ``Dense(1)`` model with the MSE loss and SGD this is exactly
:func:`fl_helpers.fedavg`: the parties draw their minibatch orders from one
generator in the same order (``argsort`` of ``rng.random(m_i)`` per epoch).
Tested to 1e-10 with ``dtype="float64"`` layers and a learning rate that
float32 holds exactly (e.g. ``2**-4``): Keras keeps the learning rate in
float32 even for float64 weights, which otherwise shows up at 1e-8.

Each step runs eagerly (``tf.GradientTape`` and ``optimizer.apply_gradients``,
a few milliseconds a step): plain code to read, meant for small models.

TensorFlow is imported on the first call, never when this module is imported.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, fields
from typing import Any

import numpy as np

from . import _validate as check
from ._tf import import_keras, import_tensorflow
from .aggregation import WEIGHTINGS, aggregate, aggregation_weights
from .history import History, Recorder
from .parties import Party
from .server import sample_parties


@dataclass(repr=False)
class KerasHistory(History):
    """A :class:`~fl_helpers.History` of a Keras run, plus the trained global model.

    ``thetas`` hold the model's weights flattened layer after layer
    (:func:`flatten_weights`); ``model`` carries the last finite global weights.
    """

    model: Any = field(default=None)


def flatten_weights(weights: Sequence[np.ndarray]) -> np.ndarray:
    """One float64 vector of all the weights, layer after layer (as ``model.get_weights()`` lists them)."""
    return np.concatenate([np.ravel(w) for w in weights]).astype(np.float64)


def unflatten_weights(theta: np.ndarray, like: Sequence[np.ndarray]) -> list[np.ndarray]:
    """Cut ``theta`` back into arrays shaped and typed like ``like``."""
    out, start = [], 0
    for w in like:
        out.append(np.asarray(theta[start:start + w.size], dtype=w.dtype).reshape(w.shape))
        start += w.size
    return out


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


def _model(model_or_fn):
    keras = import_keras()
    if isinstance(model_or_fn, keras.Model):
        return model_or_fn
    if not callable(model_or_fn):
        raise TypeError(f"model_fn must be a keras.Model or a function returning one, "
                        f"got {type(model_or_fn).__name__}")
    model = model_or_fn()
    if not isinstance(model, keras.Model):
        raise TypeError(f"model_fn must return a keras.Model, got {type(model).__name__}")
    return model


def _loss_fn(loss) -> Callable:
    """A function ``(y, y_pred) -> mean loss`` from a Keras loss name, object or function."""
    keras, tf = import_keras(), import_tensorflow()
    per_sample = keras.losses.get(loss) if isinstance(loss, str) else loss
    if not callable(per_sample):
        raise TypeError(f"loss must be a Keras loss name (e.g. 'mse') or callable, got {type(loss).__name__}")

    def mean_loss(y, y_pred):
        return tf.reduce_mean(per_sample(y, y_pred))
    return mean_loss


def keras_local_update(model, weights, X, y, *, loss, optimizer_fn: Callable, epochs: int = 1,
                       batch_size: int | None = None, seed=None) -> tuple[list[np.ndarray], int]:
    """Block 2 for a Keras model: train from ``weights`` on ``(X, y)``; return (new weights, m).

    Runs ``epochs`` passes of gradient descent with a fresh optimizer from
    ``optimizer_fn()``: one full-batch step per epoch (``batch_size=None``) or
    ``ceil(m / batch_size)`` minibatch steps in the order ``argsort(rng.random(m))``
    (as :meth:`fl_helpers.Party.local_update`; data order when ``seed`` is None).

    Parameters
    ----------
    model : keras.Model or callable returning one
        Used as a container: its weights are overwritten with ``weights``.
    weights : list of arrays
        The broadcast global weights (``model.get_weights()`` layout).
    loss : str or callable
        A Keras loss (``"mse"``, ``"sparse_categorical_crossentropy"``, ...).
        Prefer the name: a Keras loss *object* such as ``MeanSquaredError()``
        computes in float32 even for float64 layers (agreement with the numpy
        engine then drops from 1e-15 to about 1e-8).
    optimizer_fn : callable
        Returns a new Keras optimizer, e.g. ``lambda: keras.optimizers.SGD(0.1)``.
    seed : int, numpy Generator or None
        Minibatch shuffling; pass one Generator to share a stream across parties.

    Returns
    -------
    weights_i : list of arrays
        The local model after training (it stays on the party in a real deployment).
    m : int
        The number of local samples, the party's aggregation weight.
    """
    tf = import_tensorflow()
    model, loss_fn = _model(model), _loss_fn(loss)
    epochs = check.integer("epochs", epochs, minimum=1)
    batch_size = check.optional_batch_size(batch_size)
    rng = None if seed is None else np.random.default_rng(seed)
    X, y = np.asarray(X), np.asarray(y)
    m = len(y)
    step = m if batch_size is None else batch_size

    model.set_weights(weights)                       # 1. start from the broadcast model
    optimizer = optimizer_fn()
    for _ in range(epochs):
        order = np.arange(m)
        if batch_size is not None and rng is not None:
            order = np.argsort(rng.random(m), kind="stable")
        for start in range(0, m, step):
            idx = order[start:start + step]
            with tf.GradientTape() as tape:
                batch_loss = loss_fn(y[idx], model(X[idx], training=True))
            grads = tape.gradient(batch_loss, model.trainable_variables)
            optimizer.apply_gradients(zip(grads, model.trainable_variables))
    return model.get_weights(), m


def _global_losses(model, weights, data, loss_fn) -> np.ndarray:
    """Every party's mean loss at the global weights."""
    model.set_weights(weights)
    return np.array([float(loss_fn(y, model(X, training=False))) for X, y in data])


def fedavg_keras(model_fn, parties, *, rounds: int, lr: float, local_epochs: int = 1,
                 batch_size: int | None = None, loss="mse", weighting: str = "samples",
                 fraction: float = 1.0, seed: int | None = None,
                 optimizer_fn: Callable | None = None) -> KerasHistory:
    r"""Federated averaging of a Keras model: broadcast, local SGD, weighted mean, server update.

    .. math::
        w \leftarrow \sum_{i \in S_t} p_i\, w_i, \qquad
        p_i = \frac{m_i}{\sum_{j\in S_t} m_j} \ (\text{"samples"}) \text{ or } \frac1{|S_t|}

    Parameters
    ----------
    model_fn : callable
        Builds the model (``model_fn()`` -> keras.Model); its initial weights are round 0's.
    parties : list of Party or (X, y) pairs
        Each party's local data; labels may be integers (classification).
    rounds, lr, local_epochs, batch_size, weighting, fraction, seed
        As in :func:`fl_helpers.fedavg`; ``lr`` is the local SGD learning rate.
    loss : str or callable
        Keras loss, ``"mse"`` by default.
    optimizer_fn : callable, optional
        New local optimizer for each party and round; default ``keras.optimizers.SGD(lr)``.

    Returns
    -------
    KerasHistory
        ``thetas``: flattened global weights per round; ``losses``: global
        training loss :math:`\sum_i \frac{m_i}{M} L_i(w)`; ``model``: the global model.
    """
    keras = import_keras()
    data = party_data(parties)
    rounds = check.integer("rounds", rounds, minimum=0)
    lr = check.positive_float("lr", lr)
    local_epochs = check.integer("local_epochs", local_epochs, minimum=1)
    batch_size = check.optional_batch_size(batch_size)
    weighting = check.choice("weighting", weighting, WEIGHTINGS)
    fraction = check.fraction(fraction)
    rng = np.random.default_rng(check.seed(seed))
    model, loss_fn = _model(model_fn), _loss_fn(loss)
    if optimizer_fn is None:
        def optimizer_fn():
            return keras.optimizers.SGD(learning_rate=lr)

    weights = model.get_weights()
    n_numbers = sum(w.size for w in weights)
    itemsize = max(w.dtype.itemsize for w in weights)
    rec = Recorder(flatten_weights(weights), _global_losses(model, weights, data, loss_fn),
                   [len(y) for _, y in data])
    for t in range(1, rounds + 1):
        selected = sample_parties(len(data), fraction, rng)
        local = [keras_local_update(model, weights, *data[i], loss=loss_fn, optimizer_fn=optimizer_fn,
                                    epochs=local_epochs, batch_size=batch_size, seed=rng)
                 for i in selected]                                     # 1. broadcast + 2. local work
        p = aggregation_weights([m for _, m in local], weighting)
        average = aggregate([flatten_weights(w) for w, _ in local], p)  # 3. aggregate
        weights = unflatten_weights(average, like=weights)             # 4. server update: w <- mean
        ok = rec.record(t, average, _global_losses(model, weights, data, loss_fn),
                        bytes_up=len(selected) * (n_numbers + 1) * itemsize,
                        bytes_down=len(selected) * n_numbers * itemsize, selected=selected)
        if not ok:
            break
    history = rec.history(engine="keras", device=_device_name())
    model.set_weights(unflatten_weights(history.theta, like=weights))   # the last finite model
    return KerasHistory(**{f.name: getattr(history, f.name) for f in fields(History)}, model=model)


def _device_name() -> str:
    """The same description as the TensorFlow engine's, e.g. ``"GPU:0 (NVIDIA H100 ...)"``."""
    from .engines.tf_engine import available_device

    return available_device(None)[1]
