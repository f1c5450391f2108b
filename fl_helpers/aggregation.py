r"""Aggregation (聚合): how the server combines the parties' updates.

Small pure numpy functions in the spirit of Flower's
``flwr/server/strategy/aggregate.py``; later topics (robust aggregation,
secure aggregation, differential privacy) replace :func:`aggregate`.

Sample-weighted mean (McMahan et al. 2017):

.. math:: \Delta = \sum_i \frac{m_i}{M}\,\Delta_i, \qquad M = \sum_i m_i

The source article's unweighted mean, correct only when all :math:`m_i` are equal:

.. math:: \Delta = \frac1N \sum_i \Delta_i
"""

from __future__ import annotations

import numpy as np

from . import _validate as check

WEIGHTINGS = ("samples", "uniform")


def aggregation_weights(n_samples, weighting: str = "samples") -> np.ndarray:
    """Normalised weights: :math:`m_i / M` (``"samples"``) or :math:`1/N` (``"uniform"``)."""
    weighting = check.choice("weighting", weighting, WEIGHTINGS)
    n_samples = np.asarray(n_samples, dtype=np.float64)
    if n_samples.ndim != 1 or n_samples.size == 0 or np.any(n_samples <= 0):
        raise ValueError("n_samples must be a non-empty 1-D array of positive counts, got "
                         f"shape {n_samples.shape} with min {n_samples.min() if n_samples.size else 'n/a'}")
    if weighting == "uniform":
        return np.full(n_samples.shape, 1.0 / n_samples.size)
    return n_samples / n_samples.sum()


def aggregate(updates, weights) -> np.ndarray:
    r"""Weighted mean of the rows of ``updates``: :math:`\sum_i w_i \Delta_i / \sum_i w_i`.

    Parameters
    ----------
    updates : array, shape (k, d + 1)
        One update per party.
    weights : array, shape (k,)
        Non-negative weights (need not sum to one).
    """
    updates = np.asarray(updates, dtype=np.float64)
    weights = np.asarray(weights, dtype=np.float64)
    if updates.ndim != 2 or weights.shape != (updates.shape[0],):
        raise ValueError(f"updates must have shape (k, p) and weights shape (k,), "
                         f"got {updates.shape} and {weights.shape}")
    if np.any(weights < 0) or weights.sum() <= 0:
        raise ValueError(f"weights must be non-negative with a positive sum, got min {weights.min():g} "
                         f"and sum {weights.sum():g}")
    return weights @ updates / weights.sum()
