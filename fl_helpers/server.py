r"""The central server (中央服务器) and the federated round.

A round is four blocks, each a small function that later topics swap:

1. :func:`broadcast` - send the global model :math:`\theta` to the selected parties;
2. local work - each party returns an update :math:`\Delta_i` and a weight
   (:meth:`fl_helpers.Party.local_update`; an engine computes it for all parties);
3. :func:`fl_helpers.aggregation.aggregate` - :math:`\Delta = \sum_i w_i\Delta_i`;
4. :func:`server_update` - :math:`\theta \leftarrow \theta - \eta\,\Delta`.

:func:`fedsgd` (one local gradient per round) and :func:`fedavg` (``E`` local
epochs, client sampling; McMahan et al. 2017) are both :func:`train` with
different local work.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from . import _validate as check
from .aggregation import WEIGHTINGS, aggregate, aggregation_weights
from .engines import make_engine
from .history import History, Recorder
from .parties import Party


def broadcast(theta: np.ndarray, selected: np.ndarray) -> np.ndarray:
    """Block 1: what each selected party receives, a read-only copy of the global model."""
    sent = np.array(theta, dtype=np.float64)
    sent.setflags(write=False)
    return sent


def server_update(theta: np.ndarray, delta: np.ndarray, *, lr: float) -> np.ndarray:
    r"""Block 4: the global update :math:`\theta \leftarrow \theta - \eta\,\Delta`."""
    return theta - lr * delta


def n_selected(n_parties: int, fraction: float) -> int:
    """How many parties take part in a round: ``max(1, round(fraction * n_parties))``."""
    return n_parties if fraction == 1.0 else max(1, int(round(fraction * n_parties)))


def sample_parties(n_parties: int, fraction: float, rng: np.random.Generator | None) -> np.ndarray:
    """Indices of the parties taking part in a round, sorted.

    ``max(1, round(fraction * n_parties))`` parties drawn without replacement;
    all of them (no random draw) when ``fraction == 1``.
    """
    n_parties = check.integer("n_parties", n_parties, minimum=1)
    fraction = check.fraction(fraction)
    if fraction == 1.0:
        return np.arange(n_parties)
    if not isinstance(rng, np.random.Generator):
        raise TypeError(f"rng must be a numpy.random.Generator when fraction < 1, got {type(rng).__name__}")
    return np.sort(rng.choice(n_parties, size=n_selected(n_parties, fraction), replace=False))


def check_parties(parties) -> list[Party]:
    """Validate a non-empty sequence of parties with the same number of features."""
    if isinstance(parties, Party) or not isinstance(parties, Sequence) or isinstance(parties, str):
        raise TypeError(f"parties must be a list of Party objects, got {type(parties).__name__}")
    if len(parties) < 1:
        raise ValueError("parties must hold at least one Party, got an empty list")
    for i, p in enumerate(parties):
        if not isinstance(p, Party):
            raise TypeError(f"parties[{i}] must be a Party, got {type(p).__name__}")
    d = {p.n_features for p in parties}
    if len(d) != 1:
        raise ValueError(f"all parties must have the same number of features, got {sorted(d)}")
    return list(parties)


def initial_theta(theta0, n_features: int) -> np.ndarray:
    if theta0 is None:
        return np.zeros(n_features + 1)
    return check.theta(theta0, n_features + 1)


def train(parties, *, lr, rounds, local_epochs=1, batch_size=None, fraction=1.0,
          weighting="samples", theta0=None, seed=None, engine="loop",
          aggregator: Callable = aggregate, keep_updates: bool = False) -> History:
    """Run federated rounds: broadcast -> local work -> aggregate -> server update.

    This is FedAvg in general; :func:`fedsgd` and :func:`fedavg` are the named
    entry points. ``aggregator(updates, weights)`` replaces block 3 (e.g. a
    robust aggregate); ``keep_updates=True`` stores every round's per-party
    updates in the History.
    """
    parties = check_parties(parties)
    lr = check.positive_float("lr", lr)
    rounds = check.integer("rounds", rounds, minimum=0)
    local_epochs = check.integer("local_epochs", local_epochs, minimum=1)
    batch_size = check.optional_batch_size(batch_size)
    fraction = check.fraction(fraction)
    weighting = check.choice("weighting", weighting, WEIGHTINGS)
    theta = initial_theta(theta0, parties[0].n_features)
    rng = np.random.default_rng(check.seed(seed))
    eng = make_engine(engine, parties)
    sizes = np.array([p.n_samples for p in parties])
    n_numbers = len(theta)

    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        rec = Recorder(theta, eng.party_losses(theta), sizes)
        for t in range(1, rounds + 1):
            selected = sample_parties(len(parties), fraction, rng)
            sent = broadcast(theta, selected)                                       # 1. broadcast
            updates, counts = eng.local_work(sent, selected, lr=lr, epochs=local_epochs,
                                             batch_size=batch_size, rng=rng)      # 2. local work
            weights = aggregation_weights(counts, weighting)
            delta = aggregator(updates, weights)                                    # 3. aggregate
            theta = server_update(theta, delta, lr=lr)                              # 4. server update
            ok = rec.record(t, theta, eng.party_losses(theta),
                            bytes_up=len(selected) * (n_numbers + 1) * eng.itemsize,
                            bytes_down=len(selected) * n_numbers * eng.itemsize,
                            selected=selected, updates=updates if keep_updates else None,
                            weights=weights)
            if not ok:
                break
    return rec.history(engine=eng.name, device=eng.device, keep_updates=keep_updates)


def fedsgd(parties, *, lr, rounds, weighting="samples", theta0=None, engine="loop") -> History:
    r"""Federated SGD: each round every party sends its local gradient.

    .. math::
        \Delta_i = \nabla L_i(\theta),\quad
        \Delta = \sum_i w_i \Delta_i,\quad \theta \leftarrow \theta - \eta\Delta

    with :math:`w_i = m_i/M` (``weighting="samples"``, equal to centralized
    gradient descent) or :math:`w_i = 1/N` (``"uniform"``, the article's mean).
    """
    return train(parties, lr=lr, rounds=rounds, local_epochs=1, batch_size=None, fraction=1.0,
                 weighting=weighting, theta0=theta0, seed=None, engine=engine)


def fedavg(parties, *, lr, rounds, local_epochs=1, batch_size=None, fraction=1.0,
           weighting="samples", theta0=None, seed=None, engine="loop") -> History:
    r"""Federated averaging (McMahan et al. 2017).

    Each round a ``fraction`` of the parties trains ``local_epochs`` epochs of
    (minibatch, ``batch_size``) gradient descent from the global model; the
    server averages the local models: :math:`\theta \leftarrow \sum_i w_i\theta_i`.
    With ``local_epochs=1, batch_size=None, fraction=1`` this is :func:`fedsgd`.
    ``seed`` drives client sampling and minibatch shuffling.
    """
    return train(parties, lr=lr, rounds=rounds, local_epochs=local_epochs, batch_size=batch_size,
                 fraction=fraction, weighting=weighting, theta0=theta0, seed=seed, engine=engine)
