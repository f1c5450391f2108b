r"""All parties at once: numpy on stacked data, no Python loop over parties.

The local work of party :math:`i` is gradient descent on its own loss. For
the course's generalised linear models (:mod:`fl_helpers.models.glm`) every
step has the same shape,

.. math::
    \Delta_i = \sum_s g_{i,s}, \qquad
    g_{i,s} = \frac{c}{b}\,\tilde X_{i,s}^\top\big(\mu(\tilde X_{i,s}\Theta_i) - Y_{i,s}\big),
    \qquad \theta_i \leftarrow \theta_i - \eta\, g_{i,s},

(for ``models.linear``: :math:`c = 2`, :math:`\mu` the identity) and the
engine takes :math:`c`, :math:`\mu`, the targets' encoding and the L2 term from
the model object, so there is one formula per model.

with :math:`\tilde X_{i,s}` the rows of step :math:`s` (all :math:`m_i` rows
for full batch, ``b`` rows of a shuffled minibatch otherwise).

Parties of the same size :math:`m` stack into a 3-D array ``X3`` of shape
(n, m, d + 1); each party's step is then a *batched* matrix product,
``X3 @ Theta[:, :, None]`` for the predictions and ``r[:, None, :] @ X3`` for
:math:`\tilde X_i^\top r_i`, one BLAS call per party from a single numpy call.
Parties of unequal sizes need no padding: the data are stored sorted by party
size, so each size is one contiguous stack. For full-batch local work the
stacks are cut into *blocks* of about a megabyte, and a block runs all of its
local epochs while its data are in the CPU cache: parties are independent
during local training, so FedAvg with ``E`` epochs reads the data from memory
once, not ``E`` times. With minibatches each stack is one block, so a step is
one batched call for all parties of that size.

Minibatches use the same random numbers as the loop engine: the local
stream of the randomness contract (:func:`fl_helpers.randomness.shuffle_keys`),
drawn for all selected parties in one call, party after party, epoch after
epoch; each party's epoch order is the stable ``argsort`` of its keys. Both
engines therefore agree to rounding (1e-10).

Recording is free: the residual of a full-batch step at the broadcast
:math:`\theta` is the residual of the loss at :math:`\theta`, so the engine
returns the parties' losses with their updates and a FedSGD round, History
included, is one pass over the data.
"""

from __future__ import annotations

import numpy as np

from .. import randomness
from . import LocalWork

#: Bytes of party data per block (about the size of a per-core L2 cache).
BLOCK_BYTES = 1 << 20


def exclusive_cumsum(sizes: np.ndarray) -> np.ndarray:
    """``[0, s0, s0 + s1, ...]`` without the total: the start of each segment."""
    out = np.zeros(len(sizes), dtype=np.int64)
    np.cumsum(sizes[:-1], out=out[1:])
    return out


def stack_with_bias(Xs, dtype=np.float64) -> np.ndarray:
    """:math:`\\tilde X` of the concatenated ``Xs``, built in place (no temporary copy)."""
    Xt = np.empty((sum(len(X) for X in Xs), Xs[0].shape[1] + 1), dtype=dtype)
    Xt[:, 0] = 1.0
    np.concatenate(Xs, out=Xt[:, 1:], casting="same_kind")
    return Xt


def ranges(starts: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """Concatenation of ``arange(s, s + n)`` for each (s, n), without a Python loop."""
    offsets = np.repeat(np.asarray(starts) - exclusive_cumsum(lengths), lengths)
    return offsets + np.arange(int(np.sum(lengths)))


def batched_gradients(model, X3, Y, Theta=None, *, theta=None, want_loss=False):
    r"""Every party's gradient :math:`\frac cm\tilde X_i^\top(\mu(\tilde X_i\Theta_i) - Y_i)` (+ L2).

    ``X3`` (n, m, p) holds n parties of m rows each, ``Y`` their targets
    ((n, m), or (n, m, K) one-hot for softmax); ``Theta`` their models ((n, p)
    or (n, p, K)), or ``theta`` one model shared by all of them. Returns the
    gradients flattened like theta, (n, p K), and with ``want_loss`` also each
    party's loss (n,) at the model used.
    """
    n, m, p = X3.shape
    if theta is not None:                          # one model for all: one matrix product for the block
        shared = theta if Y.ndim == 2 else theta.reshape(p, -1)
        Z = (X3.reshape(n * m, p) @ shared).reshape(Y.shape)
    elif Y.ndim == 2:
        Z = (X3 @ Theta[:, :, None])[:, :, 0]
    else:
        Z = X3 @ Theta
    loss = None
    if want_loss:
        loss = model.pointwise_loss(Z, Y).mean(axis=1)
    R = Z if model.link == "identity" else model.mean(Z)
    R -= Y
    if Y.ndim == 2:
        G = (R[:, None, :] @ X3)[:, 0, :]          # (n, p): X_i^T r_i for every party
    else:
        G = np.swapaxes(X3, 1, 2) @ R              # (n, p, K)
    G *= model.scale / m
    if model.l2 != 0.0:                            # + l2 W, the intercepts left alone
        P = theta.reshape(1, p, -1) if theta is not None else Theta.reshape(n, p, -1)
        G = G.reshape(n, p, -1)
        G[:, 1:] += model.l2 * P[:, 1:]
        if loss is not None:
            loss = loss + 0.5 * model.l2 * np.sum(P[:, 1:] ** 2, axis=(1, 2))
    return G.reshape(n, -1), loss


def block_local_sgd(model, X3, Y, theta, *, lr, epochs, batch_size, keys, prox_mu=0.0, correction=None,
                    party_epochs=None):
    r"""Local gradient descent of n parties of equal size; returns their updates (n, p K) and losses or None.

    ``keys`` (n, epochs, m) are the shuffling keys (``None``: data order). Each step moves along
    :math:`g + \mu(\theta_i - \theta) + c_i` (``prox_mu``, ``correction`` (n, p K): see
    :func:`fl_helpers.parties.local_sgd`); ``party_epochs`` (n,) lets party ``i`` stop after its own
    number of epochs (stragglers; None: ``epochs`` for all).
    """
    n, m, p = X3.shape
    if batch_size is None and epochs == 1:         # FedSGD: the update is the gradient at theta
        G, losses = batched_gradients(model, X3, Y, theta=theta, want_loss=True)
        return (G if correction is None else G + correction), losses
    shape = (n, p) if Y.ndim == 2 else (n, p, Y.shape[2])
    Theta = np.tile(theta, (n, 1)).reshape(shape)  # broadcast: every party starts at theta
    total = np.zeros((n, theta.size))
    flat = Theta.reshape(n, -1)                    # a view: updating it updates Theta
    losses = None

    def step(G, epoch):
        if prox_mu != 0.0:
            G = G + prox_mu * (flat - theta)
        if correction is not None:
            G = G + correction
        if party_epochs is not None:               # stragglers that are done stand still
            G = G * (party_epochs > epoch)[:, None]
        flat[...] -= lr * G
        total[...] += G

    for epoch in range(epochs):
        if batch_size is None:                     # one full-batch step per epoch
            G, loss = batched_gradients(model, X3, Y, Theta, theta=theta if epoch == 0 else None,
                                        want_loss=epoch == 0)
            losses = loss if epoch == 0 else losses
            step(G, epoch)
            continue
        Xe, Ye = X3, Y
        if keys is not None:                       # each party shuffles its own rows
            order = np.argsort(keys[:, epoch], axis=1, kind="stable")
            rows = (order + m * np.arange(n)[:, None]).ravel()       # whole rows: a fast 1-D gather
            Xe = X3.reshape(n * m, p)[rows].reshape(n, m, p)
            Ye = Y.reshape((n * m,) + Y.shape[2:])[rows].reshape(Y.shape)
        for start in range(0, m, batch_size):
            G, _ = batched_gradients(model, Xe[:, start:start + batch_size], Ye[:, start:start + batch_size],
                                     Theta)
            step(G, epoch)
    return total, losses


class VectorizedEngine:
    """Local work for all selected parties as batched array operations (the GLMs)."""

    name = "vectorized"
    device = "CPU (numpy, all parties at once)"
    dtype = np.dtype(np.float64)

    def __init__(self, parties):
        self.parties = tuple(parties)
        self.model = self.parties[0].model
        if not hasattr(self.model, "link"):
            raise ValueError(f"the vectorized engine runs the course's linear, logistic and softmax models, "
                             f"got {self.model!r}; use engine='loop' or 'tensorflow'")
        Xs, ys = zip(*(p.data for p in self.parties), strict=True)
        self.sizes = np.array([len(y) for y in ys], dtype=np.int64)
        self.n_parties = len(self.parties)
        # store the data sorted by party size: parties of one size are one contiguous stack
        self.by_size = np.argsort(self.sizes, kind="stable")
        self.Xt = stack_with_bias([Xs[i] for i in self.by_size])
        self.y = np.concatenate([ys[i] for i in self.by_size])
        self.K = None
        if self.model.link == "softmax":
            self.K = self.model.n_outputs(self.model.n_classes or int(max(y.max() for y in ys)) + 1)
            self.y = self.model.encode(self.y, self.K)
        self.starts = np.empty_like(self.sizes)        # first stored row of each party
        self.starts[self.by_size] = exclusive_cumsum(self.sizes[self.by_size])
        self._everyone = {}                            # blocks of all parties, by block size

    def __repr__(self) -> str:
        return f"VectorizedEngine(n_parties={self.n_parties}, model={self.model!r})"

    def _blocks(self, selected, max_rows):
        """(positions in ``selected``, X3, Y) for blocks of equal-size parties."""
        if len(selected) == self.n_parties:            # everyone: views of the stored stacks, no copy
            if max_rows not in self._everyone:
                self._everyone[max_rows] = _blocks(self.Xt, self.y, self.sizes[self.by_size], self.by_size,
                                                   max_rows=max_rows)
            return self._everyone[max_rows]
        sizes = self.sizes[selected]                   # a sample: copy its rows, sorted by size
        by_size = np.argsort(sizes, kind="stable")
        rows = ranges(self.starts[selected[by_size]], sizes[by_size])
        return _blocks(self.Xt[rows], self.y[rows], sizes[by_size], by_size, max_rows=max_rows)

    def local_work(self, theta, selected, *, lr, epochs, batch_size, seed=None, round=1,
                   prox_mu=0.0, correction=None, party_epochs=None) -> LocalWork:
        selected = np.asarray(selected)
        sizes = self.sizes[selected]
        keys, key_starts = None, None
        if batch_size is not None and seed is not None:
            # every selected party's own stream (seed, round, i), drawn in one call, party after party
            keys = randomness.shuffle_keys(seed, round, selected, sizes, epochs)
            key_starts = epochs * exclusive_cumsum(sizes)
        # full batch: cache-sized blocks; minibatches: each size in one block (one call per step)
        max_rows = max(1, BLOCK_BYTES // (8 * len(theta))) if batch_size is None else self.Xt.shape[0]
        updates = np.empty((len(selected), len(theta)))
        losses = np.empty(len(selected)) if batch_size is None else None
        for pos, X3, Y in self._blocks(selected, max_rows):
            n, m, _ = X3.shape
            block_keys = None
            if keys is not None:
                block_keys = keys[key_starts[pos][:, None] + np.arange(epochs * m)].reshape(n, epochs, m)
            updates[pos], block_losses = block_local_sgd(
                self.model, X3, Y, theta, lr=lr, epochs=epochs, batch_size=batch_size, keys=block_keys,
                prox_mu=prox_mu, correction=None if correction is None else correction[pos],
                party_epochs=None if party_epochs is None else np.asarray(party_epochs)[pos])
            if losses is not None:
                losses[pos] = block_losses
        return LocalWork(updates, sizes.astype(np.float64), losses)

    def party_losses(self, theta):
        d = self.Xt.shape[1] - 1
        Z = self.Xt @ (theta if self.K is None else theta.reshape(d + 1, -1))
        starts = exclusive_cumsum(self.sizes[self.by_size])
        if self.model.link == "identity":
            r = Z - self.y
            pointwise = r * r
        else:
            pointwise = self.model.pointwise_loss(Z, self.y)
        stored = np.add.reduceat(pointwise, starts)
        losses = np.empty(self.n_parties)
        losses[self.by_size] = stored / self.sizes[self.by_size]
        return losses + self.model.penalty(theta, d)


def _blocks(Xt, y, sorted_sizes, positions, *, max_rows):
    """Cut rows stored by increasing party size into blocks (positions, X3, Y)."""
    blocks, row = [], 0
    for a, b in _equal_runs(sorted_sizes, max_rows=max_rows):
        m, n = int(sorted_sizes[a]), b - a
        blocks.append((positions[a:b], Xt[row:row + n * m].reshape(n, m, -1),
                       y[row:row + n * m].reshape((n, m) + y.shape[1:])))
        row += n * m
    return blocks


def _equal_runs(sorted_sizes, *, max_rows):
    """(a, b) index ranges of equal sizes, each cut to at most ``max_rows`` rows (>= 1 party)."""
    edges = np.flatnonzero(np.diff(sorted_sizes)) + 1
    bounds = np.concatenate([[0], edges, [len(sorted_sizes)]])
    for a, b in zip(bounds[:-1], bounds[1:]):
        per_block = max(1, max_rows // int(sorted_sizes[a]))
        for start in range(a, b, per_block):
            yield int(start), int(min(b, start + per_block))
