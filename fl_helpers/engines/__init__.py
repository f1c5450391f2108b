"""Engines: how the *local work* block of a round is computed.

A round has four blocks (``fl_helpers.server``): broadcast, local work,
aggregate, server update. An engine implements only the local work and the
monitoring losses; the other blocks are shared, so every engine runs the very
same algorithm and per-party updates are always available to the aggregate.

An engine is built for one list of parties and offers

``local_work(theta, selected, *, lr, epochs, batch_size, rng) -> (updates, weights)``
    ``updates``: (k, d + 1) pseudo-gradients of the selected parties, in the
    order of ``selected`` (sorted party indices); ``weights``: (k,) sample counts.
``party_losses(theta) -> (N,)``
    Every party's local MSE at ``theta``.

plus the attributes ``name``, ``device`` (a human-readable string) and
``itemsize`` (bytes per number sent, for the communication count).

Engines
-------
``"loop"``
    One Python call per party (:mod:`.loop`): the code the notebooks derive.
``"vectorized"``
    All parties at once on the stacked data with numpy (:mod:`.vectorized`).
``"tensorflow"``
    All parties in one compiled TensorFlow function, GPU when available
    (:mod:`.tf_engine`, imported only when asked for).
"""

from __future__ import annotations

import importlib

from .. import _validate as check

ENGINES = {
    "loop": ("fl_helpers.engines.loop", "LoopEngine"),
    "vectorized": ("fl_helpers.engines.vectorized", "VectorizedEngine"),
    "tensorflow": ("fl_helpers.engines.tf_engine", "TensorFlowEngine"),
}


def make_engine(engine, parties, **options):
    """Return an engine for ``parties``: a name from ``ENGINES`` or an engine object.

    An engine object (anything with ``local_work`` and ``party_losses``) is
    returned as it is, so a widget can build one engine (and move the data to
    the GPU) once and reuse it for many runs.
    """
    if hasattr(engine, "local_work") and hasattr(engine, "party_losses"):
        if options:
            raise ValueError(f"engine options {sorted(options)} only apply when engine is a name")
        return engine
    if not isinstance(engine, str):
        raise TypeError(f"engine must be one of {', '.join(map(repr, ENGINES))} or an engine object, "
                        f"got {type(engine).__name__}")
    check.choice("engine", engine, ENGINES)
    module, cls = ENGINES[engine]
    return getattr(importlib.import_module(module), cls)(parties, **options)
