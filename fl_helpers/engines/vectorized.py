r"""All parties at once: numpy on stacked data, no Python loop over parties.

The local work of party :math:`i` is gradient descent on its own MSE,

.. math::
    \Delta_i = \sum_s g_{i,s}, \qquad
    g_{i,s} = \frac{2}{b}\,\tilde X_{i,s}^\top(\tilde X_{i,s}\theta_i - y_{i,s}),
    \qquad \theta_i \leftarrow \theta_i - \eta\, g_{i,s},

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

Minibatches use the same random numbers as the loop engine: one draw
``rng.random(E * M)`` laid out party after party (in the order of
``selected``), epoch after epoch, and each party's epoch order is the stable
``argsort`` of its keys. Both engines therefore agree to rounding (1e-10).
"""

from __future__ import annotations

import numpy as np

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


def batched_gradients(X3, y2, Theta=None, *, theta=None):
    r"""Every party's MSE gradient :math:`\frac2m\tilde X_i^\top(\tilde X_i\theta_i - y_i)`.

    ``X3`` (n, m, p) holds n parties of m rows each, ``y2`` (n, m) their
    targets; ``Theta`` (n, p) their models, or ``theta`` (p,) one model shared
    by all of them. Returns (n, p).
    """
    n, m, p = X3.shape
    if theta is not None:
        r = X3 @ theta                         # (n, m): one gemv per party
    else:
        r = (X3 @ Theta[:, :, None])[:, :, 0]
    r -= y2
    G = (r[:, None, :] @ X3)[:, 0, :]          # (n, p): X_i^T r_i for every party
    G *= 2.0 / m
    return G


def block_local_sgd(X3, y2, theta, *, lr, epochs, batch_size, keys):
    """Local gradient descent of n parties of equal size; returns their updates (n, p).

    ``keys`` (n, epochs, m) are the shuffling keys (``None``: data order).
    """
    n, m, p = X3.shape
    if batch_size is None and epochs == 1:         # FedSGD: the update is the gradient at theta
        return batched_gradients(X3, y2, theta=theta)
    Theta = np.tile(theta, (n, 1))                 # broadcast: every party starts at theta
    total = np.zeros_like(Theta)
    for epoch in range(epochs):
        if batch_size is None:                     # one full-batch step per epoch
            G = batched_gradients(X3, y2, Theta, theta=theta if epoch == 0 else None)
            Theta -= lr * G
            total += G
            continue
        Xe, ye = X3, y2
        if keys is not None:                       # each party shuffles its own rows
            order = np.argsort(keys[:, epoch], axis=1, kind="stable")
            Xe = np.take_along_axis(X3, order[:, :, None], axis=1)
            ye = np.take_along_axis(y2, order, axis=1)
        for start in range(0, m, batch_size):
            G = batched_gradients(Xe[:, start:start + batch_size], ye[:, start:start + batch_size], Theta)
            Theta -= lr * G
            total += G
    return total


class VectorizedEngine:
    """Local work for all selected parties as batched array operations."""

    name = "vectorized"
    device = "CPU (numpy, all parties at once)"
    itemsize = 8

    def __init__(self, parties):
        parties = list(parties)
        Xs, ys = zip(*(p.data for p in parties), strict=True)
        self.sizes = np.array([len(y) for y in ys], dtype=np.int64)
        self.n_parties = len(parties)
        # store the data sorted by party size: parties of one size are one contiguous stack
        self.by_size = np.argsort(self.sizes, kind="stable")
        self.Xt = stack_with_bias([Xs[i] for i in self.by_size])
        self.y = np.concatenate([ys[i] for i in self.by_size])
        self.starts = np.empty_like(self.sizes)        # first stored row of each party
        self.starts[self.by_size] = exclusive_cumsum(self.sizes[self.by_size])
        self._everyone = {}                            # blocks of all parties, by block size

    def _blocks(self, selected, max_rows):
        """(positions in ``selected``, X3, y2) for blocks of equal-size parties."""
        if len(selected) == self.n_parties:            # everyone: views of the stored stacks, no copy
            if max_rows not in self._everyone:
                self._everyone[max_rows] = _blocks(self.Xt, self.y, self.sizes[self.by_size], self.by_size,
                                                   max_rows=max_rows)
            return self._everyone[max_rows]
        sizes = self.sizes[selected]                   # a sample: copy its rows, sorted by size
        by_size = np.argsort(sizes, kind="stable")
        rows = ranges(self.starts[selected[by_size]], sizes[by_size])
        return _blocks(self.Xt[rows], self.y[rows], sizes[by_size], by_size, max_rows=max_rows)

    def local_work(self, theta, selected, *, lr, epochs, batch_size, rng):
        selected = np.asarray(selected)
        sizes = self.sizes[selected]
        keys, key_starts = None, None
        if batch_size is not None and rng is not None:
            # the loop engine draws rng.random(m_i) for each party, epoch after epoch,
            # party after party; one draw of the same length holds the same numbers
            keys = rng.random(epochs * int(sizes.sum()))
            key_starts = epochs * exclusive_cumsum(sizes)
        # full batch: cache-sized blocks; minibatches: each size in one block (one call per step)
        max_rows = max(1, BLOCK_BYTES // (8 * len(theta))) if batch_size is None else self.Xt.shape[0]
        updates = np.empty((len(selected), len(theta)))
        for pos, X3, y2 in self._blocks(selected, max_rows):
            n, m, _ = X3.shape
            block_keys = None
            if keys is not None:
                block_keys = keys[key_starts[pos][:, None] + np.arange(epochs * m)].reshape(n, epochs, m)
            updates[pos] = block_local_sgd(X3, y2, theta, lr=lr, epochs=epochs,
                                           batch_size=batch_size, keys=block_keys)
        return updates, sizes.astype(np.float64)

    def party_losses(self, theta):
        r = self.Xt @ theta - self.y
        stored = np.add.reduceat(r * r, exclusive_cumsum(self.sizes[self.by_size]))
        losses = np.empty(self.n_parties)
        losses[self.by_size] = stored / self.sizes[self.by_size]
        return losses


def _blocks(Xt, y, sorted_sizes, positions, *, max_rows):
    """Cut rows stored by increasing party size into blocks (positions, X3, y2)."""
    blocks, row = [], 0
    for a, b in _equal_runs(sorted_sizes, max_rows=max_rows):
        m, n = int(sorted_sizes[a]), b - a
        blocks.append((positions[a:b], Xt[row:row + n * m].reshape(n, m, -1),
                       y[row:row + n * m].reshape(n, m)))
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
