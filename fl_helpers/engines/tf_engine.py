r"""All parties in one compiled TensorFlow call per round, on the GPU when there is one.

Same algorithm and numbers as the numpy engines (:mod:`.vectorized`, :mod:`.loop`).
The parties' data are concatenated once, party after party, into
:math:`\tilde X` (M, d + 1) and ``y`` (M,) on the device, with a party index
``seg`` (M,) saying which party owns each row. Party :math:`i`'s gradient is a
*segment sum* over its rows,

.. math::
    \Delta_i = \frac{2}{m_i} \sum_{j:\,\text{seg}_j = i} \tilde x_j\,
    (\tilde x_j^\top \theta_{\text{seg}_j} - y_j),

one ``tf.math.segment_sum`` for all parties, whatever their sizes (no
padding). In the first local epoch every party predicts with the broadcast
:math:`\theta` (one matrix-vector product, :math:`\tilde X\theta`); in the
later epochs of FedAvg each party's own model :math:`\theta_i` reaches its
rows by ``tf.gather(Theta, seg)``. When all selected parties have the same
size the rows reshape to (k, m, d + 1) and the same sums are batched matrix
products (a faster path giving the same numbers up to rounding).

One ``tf.function`` runs the whole local work of a round (all epochs and
minibatch steps are ``tf.while_loop`` s), traced once: every size is ``None``
in its input signature and ``lr``, ``epochs`` are tensors, so changing the
number of parties, the learning rate, the epochs, the batch size or the
sampled parties never retraces. Minibatch orders come from the same numbers
as the other engines (the local stream of :mod:`fl_helpers.randomness`: party
after party, epoch after epoch, stable ``argsort`` of each party's keys),
computed on the host and sent as row indices.

The course's three GLMs (:mod:`fl_helpers.models.glm`) share this code: the
scores are :math:`Z = \tilde X\Theta` with :math:`\Theta` the (d + 1, K)
parameter matrix, and the gradient is :math:`\frac cm \tilde X^\top(\mu(Z) - Y)`
with :math:`c`, :math:`\mu`, :math:`\ell` and the L2 term taken from the model
(:meth:`~fl_helpers.models.GLM.tf_ops`). The first full-batch epoch also
returns every party's loss at the broadcast model (its residual is already
there), so recording costs nothing. A Keras model (:func:`fl_helpers.models.keras`)
that is a Sequential of Dense layers runs all selected parties in one compiled call too,
with batched per-party weights (:mod:`.keras_batched`); any other Keras model runs one
party at a time through its compiled gradient (``device`` says which).

Agreement with :class:`~fl_helpers.engines.vectorized.VectorizedEngine`:
``dtype="float64"`` to 1e-10 (tested). ``dtype="float32"`` (the default, the
GPU's fast type): over 100 rounds of FedSGD/FedAvg (full batch and minibatch,
equal and unequal parties, M up to 20,000 standardised samples) the models
differed by at most 1e-6 x max|theta| and the losses by 1.3e-6 relative;
the tests hold them to ``FLOAT32_RTOL`` = 1e-5.

Example
-------
>>> from fl_helpers.engines.tf_engine import TensorFlowEngine     # doctest: +SKIP
>>> eng = TensorFlowEngine(parties, device="cpu", dtype="float64")  # doctest: +SKIP
>>> fl_helpers.fedavg(parties, lr=0.1, rounds=20, engine=eng)       # doctest: +SKIP
"""

from __future__ import annotations

import functools
from types import SimpleNamespace

import numpy as np

from .. import randomness
from .. import validation as valid
from ..parties import check_parties
from ..tf_env import import_tensorflow
from . import LocalWork
from .loop import LoopEngine
from .vectorized import exclusive_cumsum, stack_with_bias

DTYPES = ("float32", "float64")
DEVICES = (None, "cpu", "gpu")
#: Tested agreement of float32 results with the float64 numpy engines (see module docstring).
FLOAT32_RTOL = 1e-5


def available_device(device: str | None = None) -> tuple[str, str]:
    """Pick the device: ``(tf device name, description)``.

    ``None``: the first GPU if TensorFlow sees one, else the CPU; ``"cpu"``:
    the CPU; ``"gpu"``: the first GPU, ``ValueError`` if there is none.
    """
    if device not in DEVICES:
        raise ValueError(f"device must be one of None, 'cpu', 'gpu'; got {device!r}")
    tf = import_tensorflow()
    gpus = tf.config.list_physical_devices("GPU")
    if device == "gpu" and not gpus:
        raise ValueError("device='gpu' asked for a GPU, but TensorFlow sees none "
                         "(tf.config.list_physical_devices('GPU') is empty); use device=None or 'cpu', "
                         "or install the GPU build: pip install -e '.[gpu]'")
    if gpus and device != "cpu":
        details = tf.config.experimental.get_device_details(gpus[0])
        return "/GPU:0", f"GPU:0 ({details.get('device_name', 'GPU')})"
    return "/CPU:0", "CPU"


class TensorFlowEngine:
    """Local work of all selected parties in one compiled TensorFlow function.

    Parameters
    ----------
    parties : list of Party
    dtype : {"float32", "float64"} or None
        Number type on the device (and on the wire). float32 (the default for
        the GLMs) is what GPUs are fast at; float64 reproduces the numpy engines
        to 1e-10. A Keras model computes in its own dtype (None, or that dtype).
    device : {None, "cpu", "gpu"}
        ``None`` uses the GPU when TensorFlow sees one, else the CPU.

    Attributes
    ----------
    name : "tensorflow"
    device : str
        Where the work runs, e.g. ``"CPU"`` or ``"GPU:0 (NVIDIA H100 80GB HBM3)"``.
    dtype : numpy dtype
        Of the numbers sent (float32 or float64).
    functions : SimpleNamespace
        The compiled ``tf.function`` s (``full_batch``, ``minibatch``,
        ``party_losses``), shared by every engine of the same dtype, device and model.
    """

    name = "tensorflow"

    def __init__(self, parties, *, dtype: str | None = None, device: str | None = None):
        self.parties = tuple(check_parties(parties))
        self.model = self.parties[0].model
        if dtype is not None:
            valid.choice("dtype", dtype, DTYPES)
        self._device, self.device = available_device(device)
        tf = self._tf = import_tensorflow()
        if not hasattr(self.model, "link"):                 # a Keras model: its own compiled gradient
            if dtype is not None and np.dtype(dtype) != self.model.dtype:
                raise ValueError(f"dtype must be the Keras model's own dtype ({self.model.dtype.name!r}) or None, "
                                 f"got {dtype!r}; build the model with dtype={dtype!r} layers instead")
            # --- Keras models (keras_batched.py): Sequential-of-Dense batched, else one party at a time ---
            from . import keras_batched
            reason = keras_batched.unsupported(self.model)
            if reason is None:
                self._keras = keras_batched.BatchedKeras(self.parties, self._device)
                self.device = f"{self.device}, {keras_batched.DESCRIPTION}"
            else:
                self._keras = LoopEngine(self.parties)
                self.device = f"{self.device}, {keras_batched.FALLBACK} ({reason})"
            self.dtype = self.model.dtype
            self.n_parties = len(self.parties)
            return
            # --- end of the Keras branch ---
        self._keras = None
        self.dtype = np.dtype(dtype or "float32")
        Xs, ys = zip(*(p.data for p in self.parties), strict=True)
        self.sizes = np.array([len(y) for y in ys], dtype=np.int64)
        self.starts = exclusive_cumsum(self.sizes)
        self.n_parties = len(self.parties)
        K = 1
        if self.model.link == "softmax":
            K = self.model.n_outputs(self.model.n_classes or int(max(y.max() for y in ys)) + 1)
        Y = self.model.encode(np.concatenate(ys), K).reshape(-1, K)
        self.functions = compiled_functions(self.dtype.name, self._device, self.model.link,
                                            float(self.model.scale), float(self.model.l2))
        with tf.device(self._device):                    # the data move to the device once
            self._X = tf.identity(tf.constant(stack_with_bias(Xs, self.dtype)))
            self._Y = tf.identity(tf.constant(Y, self.dtype))
            self._sizes = tf.identity(tf.constant(self.sizes, tf.int32))
            self._starts = tf.identity(tf.constant(self.starts, tf.int32))
            self._everyone = tf.identity(tf.range(self.n_parties, dtype=tf.int32))

    def __repr__(self) -> str:
        return (f"TensorFlowEngine(n_parties={self.n_parties}, dtype={self.dtype.name!r}, "
                f"device={self.device!r})")

    def local_work(self, theta, selected, *, lr, epochs, batch_size, seed=None, round=1,
                   prox_mu=0.0, correction=None, party_epochs=None) -> LocalWork:
        options = dict(prox_mu=prox_mu, correction=correction, party_epochs=party_epochs)
        if self._keras is not None:                     # a Keras model (see __init__)
            keras = self._keras
            if (prox_mu != 0.0 or correction is not None or party_epochs is not None) \
                    and not isinstance(keras, LoopEngine):
                # FedProx / SCAFFOLD / stragglers: one party at a time through the compiled gradient
                keras = self._keras_loop = getattr(self, "_keras_loop", None) or LoopEngine(self.parties)
            extra = options if isinstance(keras, LoopEngine) else {}
            with self._tf.device(self._device):
                work = keras.local_work(theta, selected, lr=lr, epochs=epochs, batch_size=batch_size,
                                        seed=seed, round=round, **extra)
            return LocalWork(work.updates.astype(self.dtype), work.weights, work.losses)
        tf = self._tf
        selected = np.asarray(selected)
        sizes = self.sizes[selected]
        losses = None
        k, n_params = len(selected), len(theta)
        with tf.device(self._device):
            theta, lr = tf.constant(theta, self.dtype), tf.constant(lr, self.dtype)
            epochs_t = tf.constant(epochs, tf.int32)
            mu = tf.constant(prox_mu, self.dtype)
            corr = tf.constant(np.zeros((k, n_params)) if correction is None else correction, self.dtype)
            until = tf.constant(np.full(k, epochs) if party_epochs is None else party_epochs, tf.int32)
            if batch_size is None:
                chosen = self._everyone if len(selected) == self.n_parties else tf.constant(selected, tf.int32)
                updates, losses = call(self.functions.full_batch, self._X, self._Y, self._starts, self._sizes,
                                       chosen, theta, lr, epochs_t, mu, corr, until)
                losses = losses.numpy().astype(np.float64)
            else:
                keys = None if seed is None else randomness.shuffle_keys(seed, round, selected, sizes, epochs)
                order, seg, bounds = minibatch_schedule(self.starts[selected], sizes, batch_size=batch_size,
                                                        epochs=epochs, keys=keys)
                updates = call(self.functions.minibatch, self._X, self._Y, tf.constant(order, tf.int32),
                               tf.constant(seg, tf.int32), tf.constant(bounds, tf.int32), theta, lr, epochs_t,
                               mu, corr, until)
        return LocalWork(updates.numpy(), sizes.astype(np.float64), losses)

    def party_losses(self, theta):
        if self._keras is not None:                     # a Keras model (see __init__)
            with self._tf.device(self._device):
                return self._keras.party_losses(theta)
        tf = self._tf
        with tf.device(self._device):
            losses = call(self.functions.party_losses, self._X, self._Y, self._sizes,
                          tf.constant(theta, self.dtype))
        return losses.numpy().astype(np.float64)


def minibatch_schedule(starts, sizes, *, batch_size, epochs, keys):
    """Rows of every minibatch step of a round, in the numpy engines' random order.

    Party ``q`` (rows ``starts[q]:starts[q] + sizes[q]`` of the stacked data)
    shuffles its rows each epoch by the stable ``argsort`` of its keys;
    ``keys`` (epochs * M,) are laid out party after party, epoch after epoch
    (:func:`fl_helpers.randomness.shuffle_keys`; None: no shuffling). Its step
    ``s`` takes positions ``s*b:(s+1)*b`` of that order.

    Returns
    -------
    order : (epochs * M,) int
        Stacked-data rows, epoch after epoch; within an epoch step after step,
        within a step party after party.
    seg : (M,) int
        Party (0..k-1) of each row of an epoch's ``order`` (the same every epoch).
    bounds : (S + 1,) int
        Step ``s`` of an epoch is ``order[e*M + bounds[s]: e*M + bounds[s+1]]``.
    """
    M = int(sizes.sum())
    party = np.repeat(np.arange(len(sizes)), sizes)
    first = exclusive_cumsum(sizes)
    position = np.arange(M) - np.repeat(first, sizes)        # row's position in its party
    step = position // batch_size
    step_major = np.argsort(step, kind="stable")             # step 0 of every party, then step 1 ...
    rows = np.repeat(starts, sizes) + position               # stacked-data row of each (party, position)
    order = np.empty((epochs, M), dtype=np.int64)
    for epoch in range(epochs):
        shuffled = np.arange(M)
        if keys is not None:
            k = keys[np.repeat(epochs * first + epoch * sizes, sizes) + position]
            shuffled = np.lexsort((k, party))                # each party's rows sorted by its keys
        order[epoch] = rows[shuffled[step_major]]
    bounds = np.concatenate([[0], np.cumsum(np.bincount(step))])
    return order.ravel(), party[step_major], bounds


def call(function, *args):
    """Run a ``tf.function`` through its one traced graph (:func:`concrete`)."""
    return concrete(function)(*args)


@functools.lru_cache(maxsize=None)
def concrete(function):
    """The traced graph of a ``tf.function`` whose input signature fixes every argument.

    Calling it directly skips ``tf.function``'s matching of the arguments to
    its signature: about 0.5 ms a call on a small CPU, more than a round's
    work for a few thousand rows.
    """
    return function.get_concrete_function()


@functools.lru_cache(maxsize=None)
def compiled_functions(dtype: str, device: str, link: str = "identity", scale: float = 2.0,
                       l2: float = 0.0) -> SimpleNamespace:
    """The engine's ``tf.function`` s for one dtype, device and GLM, traced once each."""
    from ..models.glm import GLM

    tf = import_tensorflow()
    mean, residual_and_loss = GLM("tf", link, scale, l2=l2).tf_ops(tf)
    real = tf.as_dtype(dtype)
    matrix, vector, ints = (tf.TensorSpec([None, None], real), tf.TensorSpec([None], real),
                            tf.TensorSpec([None], tf.int32))
    scalar, count = tf.TensorSpec([], real), tf.TensorSpec([], tf.int32)

    def as_matrix(theta, p):
        return tf.reshape(theta, [p, -1])                 # Theta (d + 1, K), the intercepts in row 0

    def penalty_gradient(Theta):                          # l2 [0; W] for (..., p, K) parameters
        return l2 * tf.concat([tf.zeros_like(Theta[..., :1, :]), Theta[..., 1:, :]], axis=-2)

    def penalty(theta, p):
        W = as_matrix(theta, p)[1:]
        return 0.5 * l2 * tf.reduce_sum(W * W)

    def direction(G, Theta, Theta0, mu, correction, active):
        """The step direction g + mu (theta_i - theta) + c_i, zero for parties that are done (stragglers)."""
        G = G + mu * (Theta - Theta0[None]) + tf.reshape(correction, tf.shape(G))
        return G * active[:, None, None]

    def local_descent(gradients, theta, lr, epochs, scores_shared, scores_local, p, mu, correction,
                      party_epochs):
        """``epochs`` full-batch steps from ``theta``; returns summed directions (k, p K) and losses (k,).

        Epoch 1 predicts with the broadcast ``theta`` (one matrix product) and
        also gives the losses; the later epochs use each party's own model ``Theta[i]``.
        """
        Theta0 = as_matrix(theta, p)
        G, losses = gradients(scores_shared(Theta0), Theta0[None])
        if l2 != 0.0:
            losses += penalty(theta, p)
        total = G + tf.reshape(correction, tf.shape(G))     # at theta the proximal term is zero
        total *= tf.cast(party_epochs > 0, real)[:, None, None]
        Theta = Theta0[None] - lr * total
        for epoch in tf.range(1, epochs):
            active = tf.cast(party_epochs > epoch, real)
            G, _ = gradients(scores_local(Theta), Theta)
            G = direction(G, Theta, Theta0, mu, correction, active)
            Theta -= lr * G
            total += G
        k = tf.shape(total)[0]
        return tf.reshape(total, [k, -1]), losses

    def equal_sizes(X, Y, m, theta, lr, epochs, mu, correction, party_epochs):
        """k parties of m rows: (k, m, p) and batched matrix products."""
        p, K = tf.shape(X)[1], tf.shape(Y)[1]
        X3, Y3 = tf.reshape(X, [-1, m, p]), tf.reshape(Y, [-1, m, K])
        k = tf.shape(X3)[0]
        scale_m = scale / tf.cast(m, real)

        def gradients(Z, Theta):                          # c/m X_i^T (mu(Z_i) - Y_i) for every i
            R, loss = residual_and_loss(Z, Y3)
            # R^T X3 (k, K, p): only the small R is transposed, never X3
            G = scale_m * tf.transpose(tf.matmul(R, X3, transpose_a=True), [0, 2, 1])
            if l2 != 0.0:
                G += penalty_gradient(Theta)
            return G, tf.reduce_mean(loss, axis=1)

        def scores_shared(Theta):
            return tf.reshape(tf.matmul(X, Theta), [k, m, K])

        def scores_local(Theta):
            return tf.matmul(X3, Theta)
        return local_descent(gradients, theta, lr, epochs, scores_shared, scores_local, p, mu, correction,
                             party_epochs)

    def any_sizes(X, Y, sizes, theta, lr, epochs, mu, correction, party_epochs):
        """Parties of any sizes: segment sums over the stacked rows, no padding."""
        p = tf.shape(X)[1]
        seg = tf.repeat(tf.range(tf.size(sizes)), sizes)    # party of each row
        m = tf.cast(sizes, real)

        def gradients(Z, Theta):
            R, loss = residual_and_loss(Z, Y)
            G = scale * tf.math.segment_sum(X[:, :, None] * R[:, None, :], seg) / m[:, None, None]
            if l2 != 0.0:
                G += penalty_gradient(Theta)
            return G, tf.math.segment_sum(loss, seg) / m

        def scores_shared(Theta):
            return tf.matmul(X, Theta)

        def scores_local(Theta):
            return tf.einsum("mp,mpk->mk", X, tf.gather(Theta, seg))
        return local_descent(gradients, theta, lr, epochs, scores_shared, scores_local, p, mu, correction,
                             party_epochs)

    @tf.function(input_signature=[matrix, matrix, ints, ints, ints, vector, scalar, count, scalar, matrix, ints])
    def full_batch(X, Y, starts, sizes, selected, theta, lr, epochs, mu, correction, party_epochs):
        """``epochs`` full-batch steps of every selected party; returns the updates (k, p K) and losses (k,).

        ``mu`` (FedProx), ``correction`` (k, p K; SCAFFOLD) and ``party_epochs`` (k,; stragglers):
        see :func:`fl_helpers.parties.local_sgd`.
        """
        sizes = tf.gather(sizes, selected)
        if tf.size(selected) < tf.size(starts):              # a sample: its rows only
            first = tf.gather(starts, selected)
            rows = tf.ragged.range(first, first + sizes).flat_values
            X, Y = tf.gather(X, rows), tf.gather(Y, rows)
        if tf.reduce_all(sizes == sizes[0]):
            total, losses = equal_sizes(X, Y, sizes[0], theta, lr, epochs, mu, correction, party_epochs)
        else:
            total, losses = any_sizes(X, Y, sizes, theta, lr, epochs, mu, correction, party_epochs)
        return total, losses

    @tf.function(input_signature=[matrix, matrix, ints, ints, ints, vector, scalar, count, scalar, matrix, ints])
    def minibatch(X, Y, order, seg, bounds, theta, lr, epochs, mu, correction, party_epochs):
        """Minibatch local epochs along ``order`` (see :func:`minibatch_schedule`); ``mu``, ``correction``,
        ``party_epochs`` as in ``full_batch``."""
        k = tf.reduce_max(seg) + 1
        M = tf.size(seg)
        p = tf.shape(X)[1]
        Theta0 = as_matrix(theta, p)
        Theta = tf.tile(Theta0[None], [k, 1, 1])
        total = tf.zeros_like(Theta)
        for epoch in tf.range(epochs):
            active = tf.cast(party_epochs > epoch, real)
            for s in tf.range(tf.size(bounds) - 1):
                rows = order[epoch * M + bounds[s]: epoch * M + bounds[s + 1]]
                party = seg[bounds[s]:bounds[s + 1]]          # sorted; parties out of batches are absent
                Xb, Yb = tf.gather(X, rows), tf.gather(Y, rows)
                R = mean(tf.einsum("bp,bpk->bk", Xb, tf.gather(Theta, party))) - Yb
                counts = tf.math.unsorted_segment_sum(tf.ones_like(R[:, 0]), party, k)
                sums = tf.math.unsorted_segment_sum(Xb[:, :, None] * R[:, None, :], party, k)
                G = scale * tf.math.divide_no_nan(sums, counts[:, None, None])   # 0 for parties without a batch
                if l2 != 0.0:
                    G += tf.cast(counts > 0, real)[:, None, None] * penalty_gradient(Theta)
                G = direction(G, Theta, Theta0, mu, correction, active * tf.cast(counts > 0, real))
                Theta -= lr * G
                total += G
        return tf.reshape(total, [k, -1])

    @tf.function(input_signature=[matrix, matrix, ints, vector])
    def party_losses(X, Y, sizes, theta):
        """Every party's loss at ``theta`` (N,)."""
        Z = tf.matmul(X, as_matrix(theta, tf.shape(X)[1]))
        seg = tf.repeat(tf.range(tf.size(sizes)), sizes)
        losses = tf.math.segment_sum(residual_and_loss(Z, Y)[1], seg) / tf.cast(sizes, real)
        if l2 != 0.0:
            losses += penalty(theta, tf.shape(X)[1])
        return losses

    return SimpleNamespace(full_batch=full_batch, minibatch=minibatch, party_losses=party_losses)
