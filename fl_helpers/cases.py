r"""Case studies' common question: does a party gain by joining the federation?

Every case study (credit scoring across banks, hospitals, IoT devices) answers it the same
way, the comparison practitioners ask for first. With the same model and the same training
budget (``rounds`` x ``local_epochs`` epochs):

``local``
    each party trains alone on its own data (what it can do without anyone);
``federated``
    FedAvg over all parties (:func:`fl_helpers.train`, with any of its hooks: a robust
    aggregator, differential privacy, compression ...);
``pooled``
    one model on everyone's data put together (what a data-sharing agreement would give;
    the usual upper reference);
``personalised`` (optional)
    the federated model fine-tuned by each party on its own data for a few epochs.

:func:`compare` trains them, :func:`score` evaluates each party's model on that party's
test data (pass the same ``(X, y)`` N times for a common test set), and :func:`summarise`
averages repeated runs over seeds into mean and standard deviation.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from . import validation as valid
from .history import History
from .parties import Party, check_parties
from .server import train


@dataclass
class Comparison:
    """The models of :func:`compare`.

    Attributes
    ----------
    local : list of ndarray
        ``local[i]``: party ``i`` trained alone.
    federated : ndarray
        The federated (global) model.
    pooled : ndarray
        The model trained on all parties' data together.
    personalised : list of ndarray or None
        ``personalised[i]``: the federated model fine-tuned on party ``i``'s data.
    history : History
        The federated run.
    names : list of str
    """

    local: list
    federated: np.ndarray
    pooled: np.ndarray
    personalised: list | None
    history: History
    names: list

    def models(self, i: int) -> dict:
        """Party ``i``'s model under each setting: ``{"local": ..., "federated": ..., ...}``."""
        out = {"local": self.local[i], "federated": self.federated, "pooled": self.pooled}
        if self.personalised is not None:
            out["personalised"] = self.personalised[i]
        return out


def pool(parties: Sequence[Party], *, name: str = "pooled") -> Party:
    """One party holding every party's data (rows stacked in party order)."""
    parties = check_parties(parties)
    X = np.concatenate([p.data[0] for p in parties])
    y = np.concatenate([p.data[1] for p in parties])
    return Party(X, y, model=parties[0].model, name=name)


def personalise(parties: Sequence[Party], theta, *, lr, epochs: int, batch_size=None,
                seed: int | None = None) -> list[np.ndarray]:
    """Each party fine-tunes ``theta`` on its own data: ``epochs`` epochs of local (minibatch) GD.

    This is the party's local work of one FedAvg round (:meth:`Party.local_update`, round 1, its
    own index), kept by the party instead of sent: the cheapest personalisation there is.
    """
    parties = check_parties(parties)
    epochs = valid.integer("epochs", epochs, minimum=1)
    return [p.local_update(theta, lr=lr, epochs=epochs, batch_size=batch_size, seed=seed, round=1, index=i).theta
            for i, p in enumerate(parties)]


def compare(parties: Sequence[Party], *, lr, rounds: int, local_epochs: int = 1, batch_size=None,
            seed: int | None = None, theta0=None, engine: str = "loop", fine_tune_epochs: int = 0,
            fine_tune_lr=None, **federated) -> Comparison:
    """Train the local, federated, pooled (and personalised) models of a case study.

    Parameters
    ----------
    parties : list of Party
    lr, rounds, local_epochs, batch_size, seed, theta0, engine
        The schedule and the engine, the same for all three: the federated run is
        ``train(parties, lr=lr, rounds=rounds, local_epochs=local_epochs, ...)``; a party alone and
        the pooled data run the same ``train`` with themselves as the only party (so
        ``rounds * local_epochs`` epochs each).
    fine_tune_epochs : int
        0 (default): no personalisation; otherwise each party fine-tunes the federated model for
        this many epochs (:func:`personalise`) at ``fine_tune_lr`` (default ``lr``).
    **federated
        More keywords for the federated run only (``fraction``, ``aggregator``,
        ``client_transform``, ``server_optimizer``, ``prox_mu`` ...).

    Returns
    -------
    Comparison
    """
    parties = check_parties(parties)
    fine_tune_epochs = valid.integer("fine_tune_epochs", fine_tune_epochs, minimum=0)
    schedule = dict(lr=lr, rounds=rounds, local_epochs=local_epochs, batch_size=batch_size, seed=seed,
                    theta0=theta0, engine=engine)
    history = train(parties, **schedule, **federated)
    if history.diverged:
        raise ValueError(f"the federated run {history.message}; lower lr (got {lr!r})")
    local = []
    for i, p in enumerate(parties):
        h = train([p], **schedule)
        if h.diverged:
            raise ValueError(f"party {i} alone {h.message}; lower lr (got {lr!r})")
        local.append(h.theta)
    h = train([pool(parties)], **schedule)
    if h.diverged:
        raise ValueError(f"the pooled run {h.message}; lower lr (got {lr!r})")
    personalised = None
    if fine_tune_epochs:
        personalised = personalise(parties, history.theta, lr=lr if fine_tune_lr is None else fine_tune_lr,
                                   epochs=fine_tune_epochs, batch_size=batch_size, seed=seed)
    names = [p.name or f"party {i}" for i, p in enumerate(parties)]
    return Comparison(local=local, federated=history.theta, pooled=h.theta, personalised=personalised,
                      history=history, names=names)


def score(comparison: Comparison, tests: Sequence, metric: Callable) -> dict:
    """``metric(theta, X, y)`` of each party's model on that party's test data, per setting.

    ``tests[i] = (X_i, y_i)`` is party ``i``'s held-out data. Returns ``{setting: ndarray (N,)}``
    for ``"local"``, ``"federated"``, ``"pooled"`` (and ``"personalised"``).
    """
    n = len(comparison.local)
    if len(tests) != n:
        raise ValueError(f"tests must hold one (X, y) per party ({n}), got {len(tests)}")
    settings = comparison.models(0).keys()
    return {s: np.array([float(metric(comparison.models(i)[s], *tests[i])) for i in range(n)]) for s in settings}


def summarise(runs: Sequence[dict]) -> dict:
    """Mean and standard deviation over repeated runs (seeds) of :func:`score`'s dicts.

    Returns ``{setting: (mean, std)}`` with arrays of the runs' shape (std with ``ddof=1``,
    0 for a single run).
    """
    if not runs:
        raise ValueError("runs must hold at least one score dict, got none")
    out = {}
    for s in runs[0]:
        values = np.array([r[s] for r in runs], dtype=np.float64)
        std = values.std(axis=0, ddof=1) if len(runs) > 1 else np.zeros_like(values[0])
        out[s] = (values.mean(axis=0), std)
    return out
