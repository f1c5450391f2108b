r"""Aggregation (聚合): how the server combines the parties' updates.

Small pure numpy functions in the spirit of Flower's
``flwr/server/strategy/aggregate.py``; later topics (robust aggregation,
secure aggregation, differential privacy) replace :func:`aggregate`.

Sample-weighted mean (McMahan et al. 2017):

.. math:: \Delta = \sum_i \frac{m_i}{M}\,\Delta_i, \qquad M = \sum_i m_i

The source article's unweighted mean, correct only when all :math:`m_i` are equal:

.. math:: \Delta = \frac1N \sum_i \Delta_i

An aggregator in :func:`fl_helpers.train` (block 3) is any function
``aggregator(updates, weights, *, rng) -> Aggregate | ndarray``. An
:class:`Aggregate` keeps the weighted *sum* and the total weight, so partial
aggregates compose: an edge server's :class:`Aggregate` is an update like any
other, and :meth:`Aggregate.combine` of the edges' aggregates equals the
aggregate of all their parties (hierarchical aggregation). An aggregator that
returns a plain vector (a coordinate median, say) returns the final mean.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from . import validation as valid

WEIGHTINGS = ("samples", "uniform")


@dataclass(frozen=True)
class Aggregate:
    r"""A partial aggregate: :math:`S = \sum_i w_i \Delta_i` and :math:`W = \sum_i w_i`.

    ``mean`` is :math:`S / W`. Aggregates of disjoint groups combine by
    adding both parts, so the aggregate of aggregates is the aggregate of all.
    """

    total: np.ndarray
    weight: float

    @property
    def mean(self) -> np.ndarray:
        """The weighted mean :math:`S / W`."""
        return self.total / self.weight

    @staticmethod
    def combine(parts) -> "Aggregate":
        """One aggregate of several disjoint groups' aggregates (sums and weights add)."""
        parts = list(parts)
        if not parts or not all(isinstance(a, Aggregate) for a in parts):
            raise TypeError("parts must be a non-empty sequence of Aggregate objects, got "
                            f"{[type(a).__name__ for a in parts]}")
        return Aggregate(total=sum(a.total for a in parts), weight=float(sum(a.weight for a in parts)))


def weighted_sum(updates, weights, *, rng=None) -> Aggregate:
    r"""Block 3, the default aggregator: :math:`(\sum_i w_i\Delta_i,\ \sum_i w_i)`.

    ``rng`` is unused (aggregators that add noise draw from it).
    """
    updates, weights = _checked(updates, weights)
    return Aggregate(total=weights @ updates, weight=weights.sum())


def aggregation_weights(n_samples, weighting: str = "samples") -> np.ndarray:
    """Normalised weights: :math:`m_i / M` (``"samples"``) or :math:`1/N` (``"uniform"``)."""
    weighting = valid.choice("weighting", weighting, WEIGHTINGS)
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
    updates, weights = _checked(updates, weights)
    return weights @ updates / weights.sum()


def _checked(updates, weights):
    updates = np.asarray(updates, dtype=np.float64)
    weights = np.asarray(weights, dtype=np.float64)
    if updates.ndim != 2 or weights.shape != (updates.shape[0],):
        raise ValueError(f"updates must have shape (k, p) and weights shape (k,), "
                         f"got {updates.shape} and {weights.shape}")
    if np.any(weights < 0) or weights.sum() <= 0:
        raise ValueError(f"weights must be non-negative with a positive sum, got min {weights.min():g} "
                         f"and sum {weights.sum():g}")
    return updates, weights
