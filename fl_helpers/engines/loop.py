"""The readable engine: one Python call per party, exactly as derived in notebooks 02 and 03; any model."""

from __future__ import annotations

import numpy as np

from .. import randomness
from ..parties import local_sgd
from . import LocalWork


class LoopEngine:
    """Local work as a ``for`` loop over the selected parties."""

    name = "loop"
    device = "CPU (numpy, one call per party)"
    def __init__(self, parties):
        self.parties = tuple(parties)
        self.model = self.parties[0].model
        # what is sent: float64 for the numpy models, the Keras model's own dtype otherwise
        self.dtype = np.dtype(getattr(self.model, "dtype", np.float64))

    def __repr__(self) -> str:
        return f"LoopEngine(n_parties={len(self.parties)}, model={self.model!r})"

    def local_work(self, theta, selected, *, lr, epochs, batch_size, seed=None, round=1,
                   prox_mu=0.0, correction=None, party_epochs=None) -> LocalWork:
        updates, weights, losses = [], [], []
        for q, i in enumerate(selected):        # each party trains on its own data
            X, y = self.parties[i].data
            e = epochs if party_epochs is None else int(party_epochs[q])
            keys = None
            if batch_size is not None and seed is not None:   # party i's own stream: (seed, round, i)
                keys = randomness.shuffle_keys(seed, round, [i], [len(y)], e)
            update, _, loss = local_sgd(self.model, X, y, theta, lr=lr, epochs=e, batch_size=batch_size,
                                        keys=keys, prox_mu=prox_mu,
                                        correction=None if correction is None else correction[q])
            updates.append(update)              # what the party sends back: Delta_i ...
            weights.append(float(len(y)))       # ... and its weight m_i
            losses.append(loss)
        free = None if batch_size is not None else np.array(losses, dtype=np.float64)
        updates = np.array(updates).reshape(len(selected), -1).astype(self.dtype, copy=False)
        return LocalWork(updates, np.array(weights), free)

    def party_losses(self, theta):
        # the unchecked model loss, not Party.loss: a diverged (non-finite) theta must
        # reach the divergence rule instead of raising in the argument check
        return np.array([self.model.loss(theta, *p.data) for p in self.parties])
