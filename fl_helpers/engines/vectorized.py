r"""All parties at once: numpy on the stacked data, no Python loop over parties.

The parties' data are concatenated once, party after party, into
:math:`\tilde X` (M, d + 1) and ``y`` (M,), with ``starts[i]`` the first row of
party ``i``. A per-party gradient is then a *segment sum*:

.. math::
    \Delta_i = \frac{2}{m_i} \sum_{j \in \text{party } i} \tilde x_j\,(\tilde x_j^\top \theta_i - y_j)

computed for every party with one ``np.add.reduceat`` over the rows. Parties of
unequal sizes need no padding. FedAvg's local models :math:`\theta_i` are
gathered to the rows of their party with ``np.repeat``. Minibatches are cut
from one permutation per epoch of all rows, sorted within each party by the
same random keys the loop engine draws, so both engines give the same numbers.
"""

from __future__ import annotations

import numpy as np

from ..linear import add_bias


def _exclusive_cumsum(sizes: np.ndarray) -> np.ndarray:
    out = np.zeros_like(sizes)
    np.cumsum(sizes[:-1], out=out[1:])
    return out


def _ranges(starts: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """Concatenation of ``arange(s, s + n)`` for each (s, n), without a Python loop."""
    offsets = np.repeat(starts - _exclusive_cumsum(lengths), lengths)
    return offsets + np.arange(lengths.sum())


def segment_gradients(Xt, y, Theta, starts, sizes, *, shared_theta=None):
    """Per-segment MSE gradients; segment ``q`` is rows ``starts[q]:starts[q]+sizes[q]``.

    ``Theta`` (k, d + 1) holds each segment's model; pass ``shared_theta`` when
    all segments use the same model (one matrix-vector product instead of a
    gather).
    """
    if shared_theta is not None:
        pred = Xt @ shared_theta
    else:
        pred = np.einsum("ij,ij->i", Xt, np.repeat(Theta, sizes, axis=0))
    r = pred - y
    return 2.0 * np.add.reduceat(Xt * r[:, None], starts, axis=0) / sizes[:, None]


class VectorizedEngine:
    """Local work for all selected parties as array operations on stacked data."""

    name = "vectorized"
    device = "CPU (numpy, all parties at once)"
    itemsize = 8

    def __init__(self, parties):
        parties = list(parties)
        Xs, ys = zip(*(p.data for p in parties), strict=True)
        self.Xt = add_bias(np.concatenate(Xs))
        self.y = np.concatenate(ys)
        self.sizes = np.array([len(y) for y in ys])
        self.starts = _exclusive_cumsum(self.sizes)
        self.n_parties = len(parties)

    def _subset(self, selected):
        if len(selected) == self.n_parties:
            return self.Xt, self.y, self.sizes
        sizes = self.sizes[selected]
        rows = _ranges(self.starts[selected], sizes)
        return self.Xt[rows], self.y[rows], sizes

    def local_work(self, theta, selected, *, lr, epochs, batch_size, rng):
        Xt, y, sizes = self._subset(np.asarray(selected))
        starts = _exclusive_cumsum(sizes)
        Theta = np.tile(theta, (len(sizes), 1))       # broadcast: every party starts at theta
        total = np.zeros_like(Theta)
        if batch_size is None:
            for epoch in range(epochs):
                G = segment_gradients(Xt, y, Theta, starts, sizes,
                                      shared_theta=theta if epoch == 0 else None)
                Theta -= lr * G
                total += G
            return total, sizes.astype(np.float64)

        plan = _minibatch_plan(sizes, starts, batch_size)
        party_of_row = np.repeat(np.arange(len(sizes)), sizes)
        pos_in_party = np.arange(len(y)) - np.repeat(starts, sizes)
        # The loop engine draws rng.random(m_i) for each party, epoch after epoch,
        # party after party; one draw of the same length holds the same numbers.
        keys = None if rng is None else rng.random(epochs * len(y))
        for epoch in range(epochs):
            if keys is None:
                order = np.arange(len(y))
            else:
                k = keys[np.repeat(epochs * starts + epoch * sizes, sizes) + pos_in_party]
                order = np.lexsort((k, party_of_row))   # shuffle within each party
            Xp, yp = Xt[order], y[order]
            for rows, seg_starts, lengths, active in plan:
                G = segment_gradients(Xp[rows], yp[rows], Theta[active], seg_starts, lengths)
                Theta[active] -= lr * G
                total[active] += G
        return total, sizes.astype(np.float64)

    def party_losses(self, theta):
        r = self.Xt @ theta - self.y
        return np.add.reduceat(r * r, self.starts) / self.sizes


def _minibatch_plan(sizes, starts, batch_size):
    """For each step s: the rows of every party's s-th minibatch (in permuted order)."""
    n_steps = -(-sizes // batch_size)
    plan = []
    for s in range(int(n_steps.max())):
        active = np.flatnonzero(n_steps > s)
        lengths = np.minimum(batch_size, sizes[active] - s * batch_size)
        rows = _ranges(starts[active] + s * batch_size, lengths)
        plan.append((rows, _exclusive_cumsum(lengths), lengths, active))
    return plan
