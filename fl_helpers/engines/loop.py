"""The readable engine: one Python call per party, exactly as derived in notebook 02."""

from __future__ import annotations

import numpy as np

from ..linear import mse
from ..parties import _local_sgd


class LoopEngine:
    """Local work as a ``for`` loop over the selected parties."""

    name = "loop"
    device = "CPU (numpy, one call per party)"
    itemsize = 8

    def __init__(self, parties):
        self.parties = list(parties)

    def local_work(self, theta, selected, *, lr, epochs, batch_size, rng):
        updates, weights = [], []
        for i in selected:                      # each party trains on its own data
            X, y = self.parties[i].data
            result = _local_sgd(X, y, theta, lr=lr, epochs=epochs, batch_size=batch_size, rng=rng)
            updates.append(result.update)       # what the party sends back: Delta_i ...
            weights.append(result.weight)       # ... and its weight m_i
        return np.array(updates), np.array(weights)

    def party_losses(self, theta):
        # unchecked mse, not Party.loss: a diverged (non-finite) theta must reach
        # the divergence rule instead of raising in the argument check
        return np.array([mse(theta, *p.data) for p in self.parties])
