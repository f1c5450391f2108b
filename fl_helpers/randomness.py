r"""The randomness contract: every random number is keyed by *who* draws it and *when*.

A run has one ``seed``. Each block of the round draws from its own stream,
derived from ``(seed, stream, round[, party])`` and nothing else, the way
TensorFlow Federated and Flower seed each client:

================  ================  ====================================================================
stream            key               used for
================  ================  ====================================================================
``"sampling"``    ``(seed, t)``     which parties take part in round ``t``
``"local"``       ``(seed, t, i)``  party ``i``'s minibatch order in round ``t``
``"transform"``   ``(seed, t, i)``  party ``i``'s client transform (clipping noise, ...)
``"aggregate"``   ``(seed, t)``     the aggregator (e.g. the server's DP noise)
``"server"``      ``(seed, t)``     the server optimizer
``"stragglers"``  ``(seed, t, i)``  whether party ``i`` straggles in round ``t`` (its key), and how far it gets
================  ================  ====================================================================

The simulated clock of :mod:`fl_helpers.systems` has streams of its own, numbered from 100 so that
they never meet the round's (their keys are not ``(seed, t[, i])``: see that module):

================  ================  ====================================================================
stream            key               used for
================  ================  ====================================================================
``"compute"``     ``(seed, i)``     party ``i``'s device: seconds per sample (drawn once per run)
``"latency"``     ``(seed, i)``     party ``i``'s device: latency
``"bandwidth"``   ``(seed, i)``     party ``i``'s device: bandwidth
``"jitter"``      ``(seed, k, i)``  the jitter of party ``i``'s ``k``-th job
``"dispatch"``    ``(seed, j)``     which idle party starts the ``j``-th new asynchronous job
================  ================  ====================================================================

Consequences (each is a test in ``tests/test_randomness.py``):

* changing the batch size, the local epochs or the engine never changes which
  parties are sampled;
* a party's update in round ``t`` does not depend on which other parties were
  sampled, or on earlier rounds' draws;
* a party can compute its round-``t`` update alone, from ``(theta, seed, t, i)``
  (:meth:`fl_helpers.Party.local_update`), bit-identical to its row in a full run.

The hook streams are ordinary ``numpy.random.Generator`` s built from
``numpy.random.SeedSequence(seed, spawn_key=(stream, t[, i]))``. The local
stream, which engines must draw for thousands of parties at once, is a
counter-based generator: the ``j``-th number of party ``i`` in round ``t`` is
a hash of ``(seed, t, i, j)`` (SplitMix64, Steele, Lea & Flood 2014, "Fast
Splittable Pseudorandom Number Generators"), so one vectorized numpy call
draws every party's numbers, in any order, on any engine.

``seed=None`` draws a fresh root seed once per run (:func:`root_seed`): the
run is random, but the contract holds within it.
"""

from __future__ import annotations

import numpy as np

from . import validation as valid

#: Stream numbers of the spawn keys (part of the contract: never renumber).
STREAMS = {"local": 0, "sampling": 1, "transform": 2, "aggregate": 3, "server": 4, "stragglers": 5,
           # fl_helpers.systems (simulated devices and asynchronous runs)
           "compute": 100, "latency": 101, "bandwidth": 102, "jitter": 103, "dispatch": 104}

_MASK = (1 << 64) - 1
_GOLDEN = np.uint64(0x9E3779B97F4A7C15)


def root_seed(seed) -> int:
    """The run's seed: ``seed`` itself, or fresh OS entropy when ``seed`` is None."""
    if seed is None:
        return int(np.random.SeedSequence().entropy) & _MASK
    return valid.seed(seed)


def generator(seed: int, stream: str, round_: int, party: int | None = None) -> np.random.Generator:
    """The ``numpy.random.Generator`` of ``stream`` for round ``round_`` (and ``party``)."""
    valid.choice("stream", stream, STREAMS)
    key = (STREAMS[stream], int(round_)) + (() if party is None else (int(party),))
    return np.random.default_rng(np.random.SeedSequence(int(seed), spawn_key=key))


def _mix(z: np.ndarray) -> np.ndarray:
    """SplitMix64's finaliser: a bijection of uint64 that scrambles every bit."""
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return z ^ (z >> np.uint64(31))


def _party_keys(seed: int, round_: int, parties: np.ndarray) -> np.ndarray:
    """One 64-bit key per party: (seed, round, party) mixed in turn (uint64 arithmetic wraps by design)."""
    with np.errstate(over="ignore"):
        base = _mix(np.array([(int(seed) & _MASK) ^ STREAMS["local"]], dtype=np.uint64))
        base = _mix(base + np.array([int(round_) & _MASK], dtype=np.uint64) * _GOLDEN)
        return _mix(base + (np.asarray(parties, dtype=np.uint64) + np.uint64(1)) * _GOLDEN)


def local_uniforms(seed: int, round_: int, parties, counts) -> np.ndarray:
    """The local stream: ``counts[q]`` numbers in [0, 1) for each party ``parties[q]``, concatenated.

    Party ``i``'s ``j``-th number depends only on ``(seed, round_, i, j)``:
    drawing for one party alone or for many at once gives the same numbers.
    """
    counts = np.asarray(counts, dtype=np.int64)
    keys = np.repeat(_party_keys(seed, round_, parties), counts)
    start = np.repeat(np.cumsum(counts) - counts, counts)
    j = (np.arange(int(counts.sum()), dtype=np.int64) - start).astype(np.uint64)
    with np.errstate(over="ignore"):
        bits = _mix(keys + (j + np.uint64(1)) * _GOLDEN)
    return (bits >> np.uint64(11)).astype(np.float64) * 2.0**-53


def shuffle_keys(seed: int, round_: int, parties, sizes, epochs: int) -> np.ndarray:
    """Minibatch keys of a round: party after party, ``epochs * m_i`` numbers each.

    Party ``q``'s epoch ``e`` visits its rows in the stable ``argsort`` of
    ``keys[start_q + e * m_q : start_q + (e + 1) * m_q]``.
    """
    return local_uniforms(seed, round_, parties, epochs * np.asarray(sizes, dtype=np.int64))
