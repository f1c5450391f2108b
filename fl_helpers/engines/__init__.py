"""Engines: how the *local work* block of a round is computed.

A round has four blocks (:mod:`fl_helpers.server`): broadcast, local work,
aggregate, server update. An engine implements only the local work and the
monitoring losses; the other blocks are shared, so every engine runs the very
same algorithm, with the same random numbers (:mod:`fl_helpers.randomness`).

An engine is built for one list of parties (``engine.parties``; ``train``
refuses an engine built for other parties) and offers

``local_work(theta, selected, *, lr, epochs, batch_size, seed, round, prox_mu, correction, party_epochs)``
    returns a ``LocalWork`` (``prox_mu=0.0``, ``correction=None``, ``party_epochs=None`` by default):
    ``updates`` (k, p): the pseudo-gradients of the selected parties, in the
    order of ``selected`` (sorted party indices) and in the engine's wire
    dtype; ``weights`` (k,): sample counts; ``losses`` (k,) or None: the
    parties' losses at ``theta`` when the work computed them anyway (the
    residual of a full-batch step is the loss's residual: recording is free).
    Every local step moves along the gradient plus ``prox_mu * (theta_i - theta)``
    (FedProx) plus the party's row of ``correction`` (k, p) (SCAFFOLD); party
    ``q`` stops after ``party_epochs[q]`` epochs (stragglers; None: ``epochs``).
``party_losses(theta) -> (N,)``
    Every party's local loss at ``theta``.

plus ``name``, ``device`` (a human-readable string), ``model`` and ``dtype``
(the numpy dtype of the numbers sent).

Parties with state. An engine object may keep state on the parties between rounds (the user
embeddings of federated matrix factorisation: :class:`fl_helpers.recommend.PhoneEngine`). Two
seams of :func:`fl_helpers.train` serve it:

``initial_theta(theta0) -> theta``
    The starting global model (``theta0`` checked by the engine): ``train`` then uses it instead of
    the parties' model, whose layout need not be the global model's.
``LocalWork.losses`` of length ``N``
    Every party's loss at the broadcast ``theta``, computed before the local work changed the
    parties' state; ``train`` records it instead of calling ``party_losses(theta)`` after the work.
    (A plain engine returns the selected parties' losses, which are all N only when all took part.)

Engines
-------
``"loop"``
    One Python call per party (:mod:`.loop`), any model: the code the notebooks derive.
``"vectorized"``
    All parties at once on the stacked data with numpy (:mod:`.vectorized`); the GLMs.
``"tensorflow"``
    All parties in one compiled TensorFlow function, GPU when available
    (:mod:`.tf_engine`, imported only when asked for); the GLMs, and Keras
    models: a Sequential of Dense layers with all parties' weights stacked in
    one compiled call (:mod:`.keras_batched`), any other Keras model one party
    at a time through its compiled gradient.
"""

from __future__ import annotations

import importlib
from typing import NamedTuple

import numpy as np

from .. import validation as valid

ENGINES = {
    "loop": ("fl_helpers.engines.loop", "LoopEngine"),
    "vectorized": ("fl_helpers.engines.vectorized", "VectorizedEngine"),
    "tensorflow": ("fl_helpers.engines.tf_engine", "TensorFlowEngine"),
}


class LocalWork(NamedTuple):
    """What an engine returns for one round's local work.

    ``losses``: the selected parties' losses at the broadcast model, every party's (length N), or None.
    """

    updates: np.ndarray
    weights: np.ndarray
    losses: np.ndarray | None = None


def make_engine(engine, parties, **options):
    """Return an engine for ``parties``: a name from ``ENGINES``, or an engine object built for them.

    An engine object is checked to be built for exactly these parties (the
    same ``Party`` objects, in the same order) and returned as it is, so a
    widget can build one engine (and move the data to the GPU) once and reuse
    it for many runs.
    """
    if hasattr(engine, "local_work") and hasattr(engine, "party_losses"):
        if options:
            raise ValueError(f"engine options {sorted(options)} only apply when engine is a name")
        check_bound(engine, parties)
        return engine
    if not isinstance(engine, str):
        raise TypeError(f"engine must be one of {', '.join(map(repr, ENGINES))} or an engine object, "
                        f"got {type(engine).__name__}")
    valid.choice("engine", engine, ENGINES)
    module, cls = ENGINES[engine]
    return getattr(importlib.import_module(module), cls)(parties, **options)


def check_bound(engine, parties) -> None:
    """Raise ``ValueError`` unless ``engine`` was built for these very ``parties``."""
    own = getattr(engine, "parties", None)
    if own is None:
        raise TypeError(f"engine objects must record the parties they were built for in .parties, "
                        f"got a {type(engine).__name__} without it")
    if len(own) != len(parties) or any(a is not b for a, b in zip(own, parties, strict=True)):
        raise ValueError(f"engine was built for other parties ({len(own)} parties, not these "
                         f"{len(parties)}): build one for these parties, e.g. "
                         f"make_engine({getattr(engine, 'name', 'name')!r}, parties), or pass its name")
