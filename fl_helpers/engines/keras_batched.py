r"""A Keras MLP's local work for all selected parties in one compiled call: batched per-party weights.

:class:`~fl_helpers.engines.tf_engine.TensorFlowEngine` uses this for a
:func:`fl_helpers.models.keras` model that is a ``keras.Sequential`` of
``Dense`` layers (any Keras activation; the "2NN" MLP, ``Dense(1)`` linear or
logistic regression, ``Dense(K, softmax)`` softmax regression) trained with a
per-sample Keras loss given by its name (:data:`LOSSES`). Any other model
keeps running one party at a time (:func:`unsupported` says why).

Every selected party gets its own copy of the weights, stacked along a first
axis: layer :math:`l`'s kernel is :math:`W_l` (k, in, out) and its bias
:math:`b_l` (k, out), all copies of the broadcast :math:`\theta` (flat, in
``model.trainable_variables`` order: kernel, then bias, layer after layer).
A minibatch step of every party at once is

.. math::
    h^{(l)}_{q} = \sigma_l\big(h^{(l-1)}_{q} W_{l,q} + b_{l,q}\big)
    \quad(\texttt{einsum("kbi,kio->kbo")}),\qquad
    L_q = \frac{\sum_j \text{mask}_{qj}\,\ell(y_{qj}, h_{qj})}{\max(1, \sum_j \text{mask}_{qj})},

and the gradient of :math:`\sum_q L_q` with respect to the stacked weights is
every party's own gradient (party :math:`q`'s weights reach only
:math:`L_q`). Each party takes its SGD step :math:`W_q \leftarrow W_q - \eta
G_q` (a party without rows in a step has :math:`G_q = 0`) and adds
:math:`G_q` to its pseudo-gradient (the sum of its step gradients, as in
:func:`fl_helpers.parties.local_sgd`).

One ``tf.function`` runs a round's local work: all epochs and steps of all
selected parties in one ``tf.while_loop``, traced once per model and device
(every size is ``None`` in its input signature; ``lr`` and ``epochs`` are
tensors). The minibatch orders are the loop engine's (the local stream of
:mod:`fl_helpers.randomness`, stable ``argsort`` of each party's keys; data
order without a seed), computed on the host as one index tensor
(orders, steps, k, b) of rows of the stacked data, ``-1`` for padding (parties
with fewer rows or steps), sent once per round. A full-batch round has one
step of every party's ``m_q`` rows per epoch, and its first step gives every
party's loss at :math:`\theta` for free.

Agreement with the loop engine (``models.keras``' ``tf.GradientTape`` on the
real ``keras.Model``, one party and one step at a time): float64 models to
1e-10, float32 models to ``FLOAT32_RTOL`` (1e-5) relative to the largest
weight (tested in ``tests/test_keras_batched.py``).
"""

from __future__ import annotations

import weakref
from types import SimpleNamespace

import numpy as np

from .. import randomness
from ..tf_env import import_keras, import_tensorflow
from . import LocalWork
from .vectorized import exclusive_cumsum

#: Keras loss names (and aliases) run batched. Each is a per-sample loss that treats labels of shape
#: (n, 1) like ``models.keras`` treats (n,) ones; other losses (KL divergence, hinge losses, Poisson
#: broadcast (n,) labels against (n, 1) outputs there) keep the one-party-at-a-time path.
LOSSES = {
    "mse": "mean_squared_error", "mean_squared_error": "mean_squared_error",
    "mae": "mean_absolute_error", "mean_absolute_error": "mean_absolute_error",
    "mape": "mean_absolute_percentage_error",
    "mean_absolute_percentage_error": "mean_absolute_percentage_error",
    "msle": "mean_squared_logarithmic_error",
    "mean_squared_logarithmic_error": "mean_squared_logarithmic_error",
    "huber": "huber", "log_cosh": "log_cosh",
    "binary_crossentropy": "binary_crossentropy",
    "sparse_categorical_crossentropy": "sparse_categorical_crossentropy",
}
#: Losses of class labels: any output width; the other losses need a width-1 output.
LABEL_LOSSES = ("sparse_categorical_crossentropy",)

DESCRIPTION = "Keras batched per-party weights"
FALLBACK = "Keras one party at a time"


def unsupported(model) -> str | None:
    """Why ``model`` (a :class:`~fl_helpers.models.KerasModel`) cannot run batched; None when it can."""
    keras = import_keras()
    net = model.model
    loss = model.loss_name
    if not isinstance(loss, str):
        return "the loss is not given by name"
    if loss not in LOSSES:
        return f"loss {loss!r} is not one of the batched losses"
    if not isinstance(net, keras.Sequential):
        return f"the model is a {type(net).__name__}, not a keras.Sequential"
    if not net.layers:
        return "the model has no layers"
    expected = []
    for i, layer in enumerate(net.layers):
        if type(layer) is not keras.layers.Dense:
            return f"layer {i} is a {type(layer).__name__}, not a Dense layer"
        if getattr(layer, "lora_enabled", False) or getattr(layer, "quantization_mode", None):
            return f"layer {i} is a LoRA or quantized Dense layer"
        if layer.compute_dtype != layer.variable_dtype or layer.variable_dtype != model.dtype.name:
            return f"layer {i} computes in {layer.compute_dtype}, not in its weights' {layer.variable_dtype}"
        expected += [layer.kernel] + ([layer.bias] if layer.use_bias else [])
    variables = net.trainable_variables
    if len(variables) != len(expected) or any(a is not b for a, b in zip(variables, expected, strict=False)):
        return "the trainable variables are not kernel, bias, layer after layer"
    shape = net.inputs[0].shape if getattr(net, "inputs", None) else None
    if shape is None or len(shape) != 2:
        return f"the model's input is not a matrix (shape {shape})"
    input_dtype = getattr(net.inputs[0], "dtype", None)
    if input_dtype is not None and str(input_dtype) != model.dtype.name:
        # Keras rounds the data to the Input's dtype before the first layer; the batched path would not
        return f"the model's input is {input_dtype}, its weights {model.dtype.name}"
    if LOSSES[loss] not in LABEL_LOSSES and net.layers[-1].units != 1:
        return f"loss {loss!r} needs a single output, got {net.layers[-1].units}"
    return None


def schedule(starts, sizes, *, batch_size, epochs, keys) -> np.ndarray:
    """Row indices of every local step: (orders, steps, k, b) int32, ``-1`` for padding.

    Party ``q`` owns rows ``starts[q]:starts[q] + sizes[q]`` of the stacked
    data. ``batch_size`` None: one step per epoch with all its rows, in data
    order (orders = 1, b = max size). Else epoch ``e`` visits its rows in the
    stable ``argsort`` of its keys (``keys`` (epochs * sum(sizes),) party after
    party, epoch after epoch: :func:`fl_helpers.randomness.shuffle_keys`;
    None: data order, orders = 1) and step ``s`` takes positions
    ``s*b:(s+1)*b``. Epoch ``e`` uses order ``e % orders``.
    """
    sizes = np.asarray(sizes, dtype=np.int64)
    k, M = len(sizes), int(sizes.sum())
    b = int(sizes.max()) if batch_size is None else min(int(batch_size), int(sizes.max()))
    steps = -(-int(sizes.max()) // b)
    shuffled = batch_size is not None and keys is not None
    orders = epochs if shuffled else 1
    party = np.repeat(np.arange(k), sizes)
    first = exclusive_cumsum(sizes)
    position = np.arange(M) - np.repeat(first, sizes)            # row's position in its party's order
    base = np.repeat(np.asarray(starts, dtype=np.int64), sizes)
    index = np.full((orders, steps, k, b), -1, dtype=np.int32)
    for epoch in range(orders):
        local = position                                          # data order
        if shuffled:
            key = keys[np.repeat(epochs * first + epoch * sizes, sizes) + position]
            local = np.lexsort((key, party)) - np.repeat(first, sizes)   # stable argsort of each party's keys
        index[epoch, position // b, party, position % b] = base + local
    return index


_CACHE: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def compiled(model, device: str) -> SimpleNamespace:
    """The ``tf.function`` s for ``model`` on ``device`` (built and traced once, shared by engines)."""
    per_device = _CACHE.setdefault(model, {})
    if device not in per_device:
        tf = import_tensorflow()
        with tf.device(device):
            per_device[device] = _functions(model)
    return per_device[device]


def _functions(model) -> SimpleNamespace:
    tf, keras = import_tensorflow(), import_keras()
    real = tf.as_dtype(model.dtype.name)
    # no reference to the model itself: the cache's values must not keep its key alive
    layers = tuple((int(layer.kernel.shape[0]), int(layer.units), bool(layer.use_bias), layer.activation)
                   for layer in model.model.layers)
    per_sample = keras.losses.get(LOSSES[model.loss_name])
    pieces = []
    for n_in, n_out, bias, _ in layers:
        pieces += [(n_in, n_out)] + ([(n_out,)] if bias else [])
    sizes = [int(np.prod(s)) for s in pieces]
    matrix, vector = tf.TensorSpec([None, None], real), tf.TensorSpec([None], real)
    index_spec = tf.TensorSpec([None, None, None, None], tf.int32)
    scalar, count = tf.TensorSpec([], real), tf.TensorSpec([], tf.int32)

    def stacked(theta, k):
        """theta (p,) -> every weight tiled over k parties: (k, in, out) kernels, (k, out) biases."""
        return [tf.tile(tf.reshape(w, (1,) + shape), [k] + [1] * len(shape))
                for w, shape in zip(tf.split(theta, sizes), pieces, strict=True)]

    def pointwise(params, X, Y):
        """Per-sample losses (k, b) of X (k, b, d), labels Y (k, b), party q with its own weights."""
        h, i = X, 0
        for j, (_, _, bias, activation) in enumerate(layers):
            z = tf.einsum("kbi,kio->kbo", h, params[i])
            if bias:
                z += params[i + 1][:, None, :]
            i += 2 if bias else 1
            if j < len(layers) - 1:
                h = activation(z)
        shape = tf.shape(z)
        # the output activation feeds the loss directly, as in keras: a softmax or sigmoid
        # output hands its logits to the cross-entropy
        _, n_out, _, activation = layers[-1]
        out = activation(tf.reshape(z, [-1, n_out]))
        return tf.reshape(per_sample(tf.reshape(Y, [-1, 1]), out), shape[:2])

    @tf.function(input_signature=[matrix, vector, index_spec, vector, scalar, count])
    def local_work(X, Y, index, theta, lr, epochs):
        """All local steps of the k parties of ``index``: summed gradients (k, p), losses at theta (k,)."""
        orders, steps, k = tf.shape(index)[0], tf.shape(index)[1], tf.shape(index)[2]
        params = stacked(theta, k)
        totals = [tf.zeros_like(w) for w in params]

        def step(i, params, totals, first):
            rows = index[(i // steps) % orders, i % steps]             # (k, b)
            valid = rows >= 0
            rows = tf.maximum(rows, 0)
            mask = tf.cast(valid, real)
            n = tf.maximum(tf.reduce_sum(mask, axis=1), 1.0)
            Xb, Yb = tf.gather(X, rows), tf.gather(Y, rows)
            with tf.GradientTape() as tape:
                tape.watch(params)
                losses = tf.reduce_sum(mask * pointwise(params, Xb, Yb), axis=1) / n
                objective = tf.reduce_sum(losses)                     # party q's weights reach only losses[q]
            # einsum's gradient can lose a static size of 1 (a Dense(1) on one feature): restore it,
            # so every loop variable keeps its shape across iterations
            grads = [tf.ensure_shape(g, w.shape) for g, w in zip(tape.gradient(objective, params), params,
                                                                   strict=True)]
            params = [w - lr * g for w, g in zip(params, grads, strict=True)]
            totals = [t + g for t, g in zip(totals, grads, strict=True)]
            return i + 1, params, totals, tf.where(i == 0, losses, first)

        _, _, totals, first = tf.while_loop(
            lambda i, *_: i < epochs * steps, step,
            [tf.constant(0), params, totals, tf.zeros([k], real)])
        return tf.concat([tf.reshape(t, [k, -1]) for t in totals], axis=1), first

    @tf.function(input_signature=[matrix, vector, tf.TensorSpec([None], tf.int32), vector, vector])
    def party_losses(X, Y, seg, sizes, theta):
        """Every party's mean loss at theta: one forward pass over the stacked data, segment means."""
        per = pointwise(stacked(theta, 1), X[None], Y[None])[0]
        return tf.math.unsorted_segment_sum(per, seg, tf.size(sizes)) / sizes

    return SimpleNamespace(local_work=local_work, party_losses=party_losses,
                           local_work_graph=local_work.get_concrete_function(),
                           party_losses_graph=party_losses.get_concrete_function())


class BatchedKeras:
    """The local work of a Sequential-of-Dense Keras model, all selected parties in one compiled call.

    What :class:`~fl_helpers.engines.tf_engine.TensorFlowEngine` delegates to for
    such a model (``local_work`` and ``party_losses`` as an engine's). The
    parties' data are stacked once on ``device`` in the model's dtype.
    """

    def __init__(self, parties, device: str):
        tf = self._tf = import_tensorflow()
        self.parties = tuple(parties)
        self.model = self.parties[0].model
        self.dtype = self.model.dtype
        self._device = device
        Xs, ys = zip(*(p.data for p in self.parties), strict=True)
        self.sizes = np.array([len(y) for y in ys], dtype=np.int64)
        self.starts = exclusive_cumsum(self.sizes)
        self.functions = compiled(self.model, device)
        with tf.device(device):
            self._X = tf.identity(tf.constant(np.concatenate(Xs).astype(self.dtype)))
            self._Y = tf.identity(tf.constant(np.concatenate(ys).astype(self.dtype)))
            self._seg = tf.identity(tf.constant(np.repeat(np.arange(len(ys)), self.sizes), tf.int32))
            self._n = tf.identity(tf.constant(self.sizes.astype(self.dtype)))

    def local_work(self, theta, selected, *, lr, epochs, batch_size, seed=None, round=1) -> LocalWork:
        tf = self._tf
        selected = np.asarray(selected)
        sizes = self.sizes[selected]
        keys = None
        if batch_size is not None and seed is not None:
            keys = randomness.shuffle_keys(seed, round, selected, sizes, epochs)
        index = schedule(self.starts[selected], sizes, batch_size=batch_size, epochs=epochs, keys=keys)
        with tf.device(self._device):
            updates, losses = self.functions.local_work_graph(
                self._X, self._Y, tf.constant(index), tf.constant(theta, self.dtype),
                tf.constant(lr, self.dtype), tf.constant(epochs, tf.int32))
        free = losses.numpy().astype(np.float64) if batch_size is None else None
        return LocalWork(updates.numpy(), sizes.astype(np.float64), free)

    def party_losses(self, theta) -> np.ndarray:
        tf = self._tf
        with tf.device(self._device):
            losses = self.functions.party_losses_graph(self._X, self._Y, self._seg, self._n,
                                                       tf.constant(theta, self.dtype))
        return losses.numpy().astype(np.float64)
