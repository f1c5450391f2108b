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
sampled parties never retraces. Minibatch orders come from the same numpy
random numbers as the other engines (party after party, epoch after epoch,
stable ``argsort`` of each party's keys), computed on the host and sent as
row indices.

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

from .. import _validate as check
from .._tf import import_tensorflow
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
    dtype : {"float32", "float64"}
        Number type on the device. float32 (default) is what GPUs are fast at;
        float64 reproduces the numpy engines to 1e-10.
    device : {None, "cpu", "gpu"}
        ``None`` uses the GPU when TensorFlow sees one, else the CPU.

    Attributes
    ----------
    name : "tensorflow"
    device : str
        Where the work runs, e.g. ``"CPU"`` or ``"GPU:0 (NVIDIA H100 80GB HBM3)"``.
    itemsize : int
        Bytes per number sent (4 or 8).
    functions : SimpleNamespace
        The compiled ``tf.function`` s (``full_batch``, ``minibatch``,
        ``party_losses``), shared by every engine of the same dtype and device.
    """

    name = "tensorflow"

    def __init__(self, parties, *, dtype: str = "float32", device: str | None = None):
        from ..server import check_parties

        parties = check_parties(parties)
        self.dtype = check.choice("dtype", dtype, DTYPES)
        self._device, self.device = available_device(device)
        self.itemsize = np.dtype(self.dtype).itemsize
        tf = self._tf = import_tensorflow()
        Xs, ys = zip(*(p.data for p in parties), strict=True)
        self.sizes = np.array([len(y) for y in ys], dtype=np.int64)
        self.starts = exclusive_cumsum(self.sizes)
        self.n_parties = len(parties)
        self.functions = compiled_functions(self.dtype, self._device)
        with tf.device(self._device):                    # the data move to the device once
            self._X = tf.identity(tf.constant(stack_with_bias(Xs, self.dtype)))
            self._y = tf.identity(tf.constant(np.concatenate(ys), self.dtype))
            self._sizes = tf.identity(tf.constant(self.sizes, tf.int32))
            self._starts = tf.identity(tf.constant(self.starts, tf.int32))
            self._everyone = tf.identity(tf.range(self.n_parties, dtype=tf.int32))

    def __repr__(self) -> str:
        return f"TensorFlowEngine(n_parties={self.n_parties}, dtype={self.dtype!r}, device={self.device!r})"

    def local_work(self, theta, selected, *, lr, epochs, batch_size, rng):
        tf = self._tf
        selected = np.asarray(selected)
        sizes = self.sizes[selected]
        with tf.device(self._device):
            theta, lr = tf.constant(theta, self.dtype), tf.constant(lr, self.dtype)
            epochs_t = tf.constant(epochs, tf.int32)
            if batch_size is None:
                chosen = self._everyone if len(selected) == self.n_parties else tf.constant(selected, tf.int32)
                updates = call(self.functions.full_batch, self._X, self._y, self._starts, self._sizes,
                               chosen, theta, lr, epochs_t)
            else:
                order, seg, bounds = minibatch_schedule(self.starts[selected], sizes, batch_size=batch_size,
                                                        epochs=epochs, rng=rng)
                updates = call(self.functions.minibatch, self._X, self._y, tf.constant(order, tf.int32),
                               tf.constant(seg, tf.int32), tf.constant(bounds, tf.int32), theta, lr, epochs_t)
        return updates.numpy().astype(np.float64), sizes.astype(np.float64)

    def party_losses(self, theta):
        tf = self._tf
        with tf.device(self._device):
            losses = call(self.functions.party_losses, self._X, self._y, self._sizes,
                          tf.constant(theta, self.dtype))
        return losses.numpy().astype(np.float64)


def minibatch_schedule(starts, sizes, *, batch_size, epochs, rng):
    """Rows of every minibatch step of a round, in the numpy engines' random order.

    Party ``q`` (rows ``starts[q]:starts[q] + sizes[q]`` of the stacked data)
    shuffles its rows each epoch by the stable ``argsort`` of its keys; keys are
    one draw ``rng.random(epochs * M)``, party after party, epoch after epoch
    (no shuffling when ``rng`` is None). Its step ``s`` takes positions
    ``s*b:(s+1)*b`` of that order.

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
    keys = None if rng is None else rng.random(epochs * M)
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
def compiled_functions(dtype: str, device: str) -> SimpleNamespace:
    """The engine's ``tf.function`` s for one dtype and device, traced once each."""
    tf = import_tensorflow()
    real = tf.as_dtype(dtype)
    matrix, vector, ints = (tf.TensorSpec([None, None], real), tf.TensorSpec([None], real),
                            tf.TensorSpec([None], tf.int32))
    scalar, count = tf.TensorSpec([], real), tf.TensorSpec([], tf.int32)

    def local_descent(gradients, theta, lr, epochs, pred_shared, pred_local):
        """``epochs`` full-batch steps from ``theta``; returns the summed gradients (k, p).

        Epoch 1 predicts with the broadcast ``theta`` (one matrix-vector product),
        the later epochs with each party's own model ``Theta[i]``.
        """
        total = gradients(pred_shared(theta))
        Theta = theta - lr * total
        for _ in tf.range(epochs - 1):
            G = gradients(pred_local(Theta))
            Theta -= lr * G
            total += G
        return total

    def equal_sizes(X, y, scale, theta, lr, epochs):
        """k parties of m rows: (k, m, p) and batched matrix products."""
        k = tf.shape(scale)[0]
        X3, y2 = tf.reshape(X, [k, -1, tf.shape(X)[1]]), tf.reshape(y, [k, -1])

        def gradients(pred):                                 # 2/m X_i^T (pred_i - y_i) for every i
            r = pred - y2
            return scale * tf.squeeze(tf.matmul(r[:, None, :], X3), axis=1)

        def pred_shared(theta):
            return tf.reshape(tf.linalg.matvec(X, theta), [k, -1])

        def pred_local(Theta):
            return tf.linalg.matvec(X3, Theta)
        return local_descent(gradients, theta, lr, epochs, pred_shared, pred_local)

    def any_sizes(X, y, scale, sizes, theta, lr, epochs):
        """Parties of any sizes: segment sums over the stacked rows, no padding."""
        seg = tf.repeat(tf.range(tf.size(sizes)), sizes)    # party of each row

        def gradients(pred):
            r = pred - y
            return scale * tf.math.segment_sum(X * r[:, None], seg)

        def pred_shared(theta):
            return tf.linalg.matvec(X, theta)

        def pred_local(Theta):
            return tf.reduce_sum(X * tf.gather(Theta, seg), axis=1)
        return local_descent(gradients, theta, lr, epochs, pred_shared, pred_local)

    @tf.function(input_signature=[matrix, vector, ints, ints, ints, vector, scalar, count])
    def full_batch(X, y, starts, sizes, selected, theta, lr, epochs):
        """``epochs`` full-batch steps of every selected party; returns the updates (k, p)."""
        sizes = tf.gather(sizes, selected)
        if tf.size(selected) < tf.size(starts):              # a sample: its rows only
            first = tf.gather(starts, selected)
            rows = tf.ragged.range(first, first + sizes).flat_values
            X, y = tf.gather(X, rows), tf.gather(y, rows)
        scale = 2.0 / tf.cast(sizes, real)[:, None]         # 2 / m_i
        if tf.reduce_all(sizes == sizes[0]):
            total = equal_sizes(X, y, scale, theta, lr, epochs)
        else:
            total = any_sizes(X, y, scale, sizes, theta, lr, epochs)
        return total

    @tf.function(input_signature=[matrix, vector, ints, ints, ints, vector, scalar, count])
    def minibatch(X, y, order, seg, bounds, theta, lr, epochs):
        """Minibatch local epochs along ``order`` (see :func:`minibatch_schedule`)."""
        k = tf.reduce_max(seg) + 1
        M = tf.size(seg)
        Theta = tf.tile(theta[None, :], [k, 1])
        total = tf.zeros_like(Theta)
        for epoch in tf.range(epochs):
            for s in tf.range(tf.size(bounds) - 1):
                rows = order[epoch * M + bounds[s]: epoch * M + bounds[s + 1]]
                party = seg[bounds[s]:bounds[s + 1]]          # sorted; parties out of batches are absent
                Xb, yb = tf.gather(X, rows), tf.gather(y, rows)
                r = tf.reduce_sum(Xb * tf.gather(Theta, party), axis=1) - yb
                counts = tf.math.unsorted_segment_sum(tf.ones_like(r), party, k)
                sums = tf.math.unsorted_segment_sum(Xb * r[:, None], party, k)
                G = 2.0 * tf.math.divide_no_nan(sums, counts[:, None])   # 0 for parties without a batch
                Theta -= lr * G
                total += G
        return total

    @tf.function(input_signature=[matrix, vector, ints, vector])
    def party_losses(X, y, sizes, theta):
        """Every party's MSE at ``theta`` (N,)."""
        r = tf.linalg.matvec(X, theta) - y
        seg = tf.repeat(tf.range(tf.size(sizes)), sizes)
        return tf.math.segment_sum(r * r, seg) / tf.cast(sizes, real)

    return SimpleNamespace(full_batch=full_batch, minibatch=minibatch, party_losses=party_losses)
