r"""Robust aggregation (鲁棒聚合): block 3 when some parties lie.

The mean has breakdown point 0: one party sending a huge vector drags it
anywhere. The rules here bound what ``f`` Byzantine parties can do, each a
pure numpy function ``rule(updates, weights, ...) -> ndarray`` (the final mean
update), with the semantics of Flower's ``flwr/server/strategy/aggregate.py``
so that students can move between the two:

:func:`median`
    Coordinate-wise median (Yin et al. 2018, "Byzantine-Robust Distributed
    Learning: Towards Optimal Statistical Rates"): ``np.median(updates, axis=0)``;
    the average of the two middle values when ``n`` is even.
:func:`trimmed_mean`
    Coordinate-wise trimmed mean (Yin et al. 2018): per coordinate, drop the
    :math:`\lfloor\beta n\rfloor` smallest and largest values and average the rest.
:func:`krum`
    Krum and Multi-Krum (Blanchard, El Mhamdi, Guerraoui and Stainer 2017,
    "Machine Learning with Adversaries: Byzantine Tolerant Gradient Descent"):
    :math:`s(i) = \sum_{j \in N_i} \lVert\Delta_i - \Delta_j\rVert^2` over the
    :math:`n - f - 2` nearest other updates :math:`N_i`; Krum returns the update
    with the lowest score, Multi-Krum the sample-weighted mean of the ``to_keep``
    lowest.
:func:`geometric_median`
    :math:`\arg\min_z \sum_i w_i \lVert z - \Delta_i\rVert` by Weiszfeld's
    iteration, smoothed as in RFA (Pillutla, Kakade and Harchaoui 2022, "Robust
    Aggregation for Federated Learning").
:func:`norm_bound`
    Server-side norm bounding (Sun et al. 2019, "Can You Really Backdoor
    Federated Learning?"): scale every update to norm at most ``max_norm``,
    then take the weighted mean.

Each has an adapter for ``fl.train(..., aggregator=...)``: :class:`Median`,
:class:`TrimmedMean`, :class:`Krum`, :class:`GeometricMedian`, :class:`NormBound`
(which wraps any other rule), with a ``metrics(info)`` method for the
per-round diagnostics ``train`` records.

What matches Flower, and where it differs
-----------------------------------------
Read from ``adap/flower``, ``src/py/flwr/server/strategy/aggregate.py``
(``aggregate_median``, ``aggregate_trimmed_avg`` and its ``_trim_mean``,
``aggregate_krum``, ``_compute_distances``, ``aggregate``) and its tests
``fedmedian_test.py``, ``krum_test.py``, ``multikrum_test.py``.

- Weights. Flower passes example counts, we pass normalised shares
  :math:`w_i = m_i / M`; where a weighted mean is taken only the ratios
  matter. Like Flower, :func:`median`, :func:`trimmed_mean` and single Krum
  *ignore* the weights (one party, one vote), and Multi-Krum averages the kept
  updates weighted by their sample counts (Flower's ``aggregate``).
- Median: ``np.median`` over the stacked updates, axis 0, as Flower.
- Trimmed mean: Flower's ``_trim_mean`` (a copy of ``scipy.stats.trim_mean``):
  ``lowercut = int(beta * n)`` in floating point (so ``0.3 * 10`` cuts 3 and
  ``0.29 * 100`` cuts 28), ``np.partition`` at ``(lowercut, n - lowercut - 1)``,
  then ``np.mean`` of the middle rows, the same calls, so the same bits. Flower
  accepts ``proportiontocut`` up to 0.5 (an empty mean, NaN, at 0.5 with even
  ``n``); we require :math:`0 \le \beta < 0.5`, so at least one value is left.
- Krum: squared Euclidean distances (``_compute_distances``), ``num_closest =
  n - f - 2`` neighbours excluding the update itself (Flower skips the first
  entry of each sorted row, a zero), the score is their sum in ascending order,
  single Krum returns ``updates[np.argmin(scores)]`` (ties to the lowest
  index), Multi-Krum keeps the ``to_keep`` lowest scores. Differences:
  Flower writes ``max(1, n - f - 2)`` and checks nothing; we raise unless
  :math:`2f + 2 < n`, Krum's own requirement (so that every neighbourhood of
  :math:`n - f - 2 > f` updates holds at least one honest update),
  and ``strict=False`` gives Flower's clamp instead (Flower's unit tests use
  :math:`n = 3, f = 1`, which only the clamp allows; with ``f = 0`` they give
  the same answer under the check). Multi-Krum's ties at the cut go to the lowest
  index (a stable sort; Flower's default ``np.argsort`` is quicksort, not stable, so
  its ties can go either way). Distances: for small problems (:math:`n^2 d \le 2^{21}`)
  ``np.linalg.norm(a - b) ** 2``, as Flower computes them (a square root, then squared: bit for bit
  Flower's values, which matters for exact ties); above that one Gram-matrix product
  :math:`\lVert a - b\rVert^2 = \lVert a\rVert^2 + \lVert b\rVert^2 - 2a\cdot b`
  of the updates centred on their coordinate-wise median (an :math:`O(n^2 d)`
  BLAS call instead of Flower's double loop), with rounding errors of about
  :math:`10^{-16}` times the squared norms of the centred updates, which can
  reorder only scores equal to that precision.
- Flower has no geometric median (Bulyan's comment lists it as "not
  implemented yet") and no server-side norm bounding in ``aggregate.py``
  (its ``DifferentialPrivacyServerSideFixedClipping`` clips, then adds noise).
"""

from __future__ import annotations

import numbers

import numpy as np

from . import validation as valid
from .aggregation import Aggregate

#: Up to this many entries of the (n, n, d) difference array, Krum's distances are direct differences.
EXACT_DISTANCES_LIMIT = 2 ** 21


# --------------------------------------------------------------------------- checks


def _checked(updates, weights):
    """``updates`` (n, p) float64, finite, n >= 1, and weights (n,) >= 0 with a positive sum (None: uniform)."""
    try:
        updates = np.asarray(updates, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise TypeError(f"updates must be a numeric (n, p) array, got {type(updates).__name__}") from exc
    if updates.ndim != 2 or updates.shape[0] < 1:
        raise ValueError(f"updates must be an (n, p) array with n >= 1 updates, one row per party, "
                         f"got shape {updates.shape}")
    if not np.all(np.isfinite(updates)):
        raise ValueError("updates must contain only finite numbers, got NaN or inf")
    n = updates.shape[0]
    if weights is None:
        return updates, np.full(n, 1.0 / n)
    weights = np.asarray(weights, dtype=np.float64)
    if weights.shape != (n,):
        raise ValueError(f"weights must have shape ({n},), one per update, got shape {weights.shape}")
    if not np.all(np.isfinite(weights)) or np.any(weights < 0) or weights.sum() <= 0:
        raise ValueError(f"weights must be finite and non-negative with a positive sum, got {weights!r}")
    return updates, weights


def _beta(beta) -> float:
    if isinstance(beta, (bool, np.bool_)) or not isinstance(beta, numbers.Real):
        raise TypeError(f"beta must be a real number in [0, 0.5), got {beta!r} ({type(beta).__name__})")
    beta = float(beta)
    if not (0.0 <= beta < 0.5):
        raise ValueError(f"beta must be in [0, 0.5) (the share cut from each side), got {beta!r}")
    return beta


def _num_malicious(num_malicious, n: int, strict: bool) -> int:
    f = valid.integer("num_malicious", num_malicious, minimum=0)
    if strict and not 2 * f + 2 < n:
        most = (n - 3) // 2
        allowed = f"[0, {most}]" if most >= 0 else "empty (Krum needs n >= 3 updates)"
        raise ValueError(f"num_malicious must satisfy 2 * num_malicious + 2 < n = {n} (Krum's requirement), "
                         f"i.e. be an integer in {allowed}; got {f}")
    return f


# --------------------------------------------------------------------------- the rules


def median(updates, weights) -> np.ndarray:
    r"""Coordinate-wise median: :math:`\mathrm{med}_i\,\Delta_{i,j}` for each coordinate :math:`j`.

    Flower's ``aggregate_median``: ``np.median(updates, axis=0)``, the weights
    ignored (one party, one vote); with an even number of updates, the mean of
    the two middle values. Breakdown point 1/2: fewer than half the parties
    cannot move any coordinate outside the range of the honest values.

    Parameters
    ----------
    updates : array, shape (n, p)
    weights : array, shape (n,), or None
        Checked, then ignored.
    """
    updates, _ = _checked(updates, weights)
    return np.median(updates, axis=0)


def trimmed_mean(updates, weights, beta) -> np.ndarray:
    r"""Coordinate-wise :math:`\beta`-trimmed mean: drop :math:`\lfloor\beta n\rfloor` values from each side.

    .. math:: \mathrm{TM}_\beta(\Delta)_j = \frac{1}{n - 2b}\sum_{k=b+1}^{n-b} \Delta_{(k),j},
        \qquad b = \lfloor \beta n \rfloor

    with :math:`\Delta_{(1),j} \le \dots \le \Delta_{(n),j}` the sorted
    :math:`j`-th coordinates. Flower's ``aggregate_trimmed_avg`` and
    ``scipy.stats.trim_mean(updates, beta, axis=0)``: ``b = int(beta * n)``, the
    weights ignored. ``beta = 0`` is the plain mean; ``beta`` must be below 1/2.
    """
    updates, _ = _checked(updates, weights)
    beta = _beta(beta)
    n = updates.shape[0]
    low = int(beta * n)
    high = n - low
    middle = np.partition(updates, (low, high - 1), axis=0)[low:high]
    return np.mean(middle, axis=0)


def squared_distances(updates) -> np.ndarray:
    r"""The (n, n) matrix :math:`D_{ij} = \lVert\Delta_i - \Delta_j\rVert^2`, symmetric, zero diagonal.

    Direct differences while :math:`n^2 p \le` ``EXACT_DISTANCES_LIMIT``; above,
    one matrix product with the Gram identity
    :math:`\lVert a - b\rVert^2 = \lVert a\rVert^2 + \lVert b\rVert^2 - 2a\cdot b`
    on the updates centred on their coordinate-wise median (centring changes no
    distance and keeps the rounding error relative to the spread, not to the
    offset), clipped at 0.
    """
    updates, _ = _checked(updates, None)
    n, p = updates.shape
    if n * n * p <= EXACT_DISTANCES_LIMIT:                 # as Flower: the norm of the difference, squared
        diff = updates[:, None, :] - updates[None, :, :]
        return np.linalg.norm(diff, axis=2) ** 2
    centred = updates - np.median(updates, axis=0)
    sq = np.einsum("ij,ij->i", centred, centred)
    gram = centred @ centred.T
    dist = sq[:, None] + sq[None, :] - 2.0 * gram
    dist = 0.5 * (dist + dist.T)                       # exactly symmetric (a + b == b + a in IEEE)
    np.maximum(dist, 0.0, out=dist)
    np.fill_diagonal(dist, 0.0)
    return dist


def _scores(updates, f: int) -> np.ndarray:
    closest = max(1, updates.shape[0] - f - 2)
    dist = np.sort(squared_distances(updates), axis=1)
    return dist[:, 1:closest + 1].sum(axis=1)


def _select(scores, to_keep: int) -> np.ndarray:
    if to_keep == 0:
        return np.array([int(np.argmin(scores))])
    return np.argsort(scores, kind="stable")[:to_keep]


def krum_scores(updates, num_malicious, *, strict: bool = True) -> np.ndarray:
    r"""Krum's score of each update: the sum of its squared distances to its :math:`n - f - 2` nearest others.

    .. math:: s(i) = \sum_{j \in N_i} \lVert\Delta_i - \Delta_j\rVert^2

    Each row of :func:`squared_distances` is sorted; its first entry (a zero:
    the update itself, or an identical one, at the same distance) is skipped and
    the next :math:`n - f - 2` are summed in ascending order, as Flower's
    ``aggregate_krum`` does. ``strict`` (default) requires :math:`2f + 2 < n`;
    ``strict=False`` uses Flower's ``max(1, n - f - 2)`` neighbours.
    """
    updates, _ = _checked(updates, None)
    return _scores(updates, _num_malicious(num_malicious, updates.shape[0], strict))


def krum_select(updates, num_malicious, to_keep: int = 0, *, strict: bool = True) -> np.ndarray:
    """Positions (rows) Krum keeps, best first: one (``to_keep=0``) or the ``to_keep`` lowest scores.

    Ties go to the lowest index (``np.argmin``; a stable sort for Multi-Krum).
    """
    return _krum(updates, None, num_malicious, to_keep, strict)[1]


def _krum(updates, weights, num_malicious, to_keep, strict):
    """(Krum's result, the positions kept best first, the scores)."""
    updates, weights = _checked(updates, weights)
    n = updates.shape[0]
    f = _num_malicious(num_malicious, n, strict)
    to_keep = valid.integer("to_keep", to_keep, minimum=0, maximum=n)
    scores = _scores(updates, f)
    kept = _select(scores, to_keep)
    if to_keep == 0:
        return updates[kept[0]].copy(), kept, scores
    w = weights[kept]
    if w.sum() <= 0:
        raise ValueError(f"weights of the {to_keep} updates Multi-Krum keeps must have a positive sum, got {w!r}")
    return w @ updates[kept] / w.sum(), kept, scores


def krum(updates, weights, num_malicious, to_keep: int = 0, *, strict: bool = True) -> np.ndarray:
    r"""Krum (``to_keep=0``) or Multi-Krum (``to_keep`` > 0), Blanchard et al. (2017).

    Krum returns the update with the lowest :func:`krum_scores`, the one
    whose :math:`n - f - 2` nearest neighbours are closest: with
    :math:`2f + 2 < n` it is never far from the honest updates, whatever the
    :math:`f` attackers send. Multi-Krum returns the mean of the ``to_keep``
    best updates, weighted by ``weights`` (sample counts or shares, as Flower's
    ``aggregate``); single Krum ignores the weights. Ties go to the lowest index.

    Parameters
    ----------
    updates : array, shape (n, p)
    weights : array, shape (n,), or None (uniform)
    num_malicious : int
        :math:`f`, the number of attackers to tolerate; :math:`2f + 2 < n`.
    to_keep : int in [0, n]
    strict : bool
        ``False``: no check of :math:`2f + 2 < n`, Flower's ``max(1, n - f - 2)`` neighbours.
    """
    if not isinstance(strict, bool):
        raise TypeError(f"strict must be True or False, got {strict!r}")
    return _krum(updates, weights, num_malicious, to_keep, strict)[0]


def _weiszfeld(updates, weights, tol, max_iter, eps):
    """Weiszfeld's iteration from the coordinate-wise median; returns (z, iterations, converged)."""
    w = weights / weights.sum()
    z = np.median(updates, axis=0)
    dist = np.linalg.norm(updates - z, axis=1)
    near = (dist > 0) & (w > 0)
    if not near.any():                                        # every weighted update sits at z
        return z, 0, True
    floor = eps * w[near].sum() / np.sum(w[near] / dist[near])   # eps x the harmonic mean distance
    for it in range(1, max_iter + 1):
        beta = w / np.maximum(dist, floor)
        new = beta @ updates / beta.sum()
        gradient = float(np.linalg.norm(z - new)) * beta.sum()  # of the smoothed objective, at z
        z = new
        if gradient <= tol:
            return z, it, True
        dist = np.linalg.norm(updates - z, axis=1)
    return z, max_iter, False


def geometric_median(updates, weights, *, tol: float = 1e-7, max_iter: int = 500, eps: float = 1e-10) -> np.ndarray:
    r"""Weighted geometric median :math:`\arg\min_z \sum_i w_i\lVert z - \Delta_i\rVert` (Weiszfeld; RFA).

    Weiszfeld's fixed-point iteration, from the coordinate-wise median :math:`z_0`:

    .. math:: z_{k+1} = \frac{\sum_i \beta_i \Delta_i}{\sum_i \beta_i},\qquad
        \beta_i = \frac{w_i}{\max(\nu, \lVert z_k - \Delta_i\rVert)}

    With the weights normalised, :math:`(z_k - z_{k+1})\sum_i\beta_i` is the
    gradient :math:`\sum_i w_i (z_k - \Delta_i)/\lVert z_k - \Delta_i\rVert`, a sum
    of unit vectors that vanishes at the median: the iteration stops when its
    norm is at most ``tol`` (a number without units), or after ``max_iter``
    steps (then the result is the last iterate). The floor :math:`\nu` is RFA's
    smoothing: ``eps`` times the weighted harmonic mean of the distances from
    :math:`z_0`, a length set by the nearby updates, not by far outliers; it
    keeps a step finite when :math:`z_k` lands on an update. Unlike the median
    and Krum it *uses* the weights, as RFA does (:math:`w_i \propto m_i`).
    Breakdown point 1/2 (of the weight). RFA starts from the weighted mean
    and runs a few steps; starting from the median needs fewer steps when
    outliers drag the mean away.
    """
    updates, weights = _checked(updates, weights)
    tol = valid.positive_float("tol", tol)
    max_iter = valid.integer("max_iter", max_iter, minimum=1)
    eps = valid.positive_float("eps", eps)
    return _weiszfeld(updates, weights, tol, max_iter, eps)[0]


def _clip_rows(updates, max_norm):
    norms = np.linalg.norm(updates, axis=1)
    factor = np.minimum(1.0, max_norm / np.maximum(norms, np.finfo(np.float64).tiny))
    return updates * factor[:, None], norms > max_norm


def norm_bound(updates, weights, max_norm) -> np.ndarray:
    r"""Server-side norm bounding, then the weighted mean: :math:`\sum_i w_i\,\Delta_i\min(1, M/\lVert\Delta_i\rVert)`.

    The server scales each received update to L2 norm at most ``max_norm``
    :math:`M` before averaging (Sun et al. 2019), so one party moves the mean by
    at most :math:`w_i M`: a boosted (scaled) update loses its boost. Unlike
    :class:`fl_helpers.privacy.Clip`, which a party applies to itself, the
    server does this, so an attacker cannot skip it. To bound norms before
    another rule, use :class:`NormBound` with ``inner=``.
    """
    updates, weights = _checked(updates, weights)
    max_norm = valid.positive_float("max_norm", max_norm)
    clipped, _ = _clip_rows(updates, max_norm)
    return weights @ clipped / weights.sum()


# --------------------------------------------------------------------------- adapters for fl.train


class Median:
    """Aggregator for ``fl.train``: :func:`median` (``Median()``)."""

    def __repr__(self) -> str:
        return "Median()"

    def __call__(self, updates, weights, *, rng=None) -> np.ndarray:
        return median(updates, weights)


class TrimmedMean:
    """Aggregator for ``fl.train``: :func:`trimmed_mean` with ``beta`` in [0, 0.5) (``TrimmedMean(0.1)``)."""

    def __init__(self, beta: float):
        self.beta = _beta(beta)

    def __repr__(self) -> str:
        return f"TrimmedMean(beta={self.beta!r})"

    def __call__(self, updates, weights, *, rng=None) -> np.ndarray:
        return trimmed_mean(updates, weights, self.beta)


class Krum:
    """Aggregator for ``fl.train``: :func:`krum` (``Krum(num_malicious=2)``; Multi-Krum: ``to_keep=5``).

    After each call ``kept`` holds the positions (rows of that round's
    updates) Krum kept, best first, and ``scores`` their scores.
    ``metrics(info)`` reports ``"krum_party"``, the index of the party whose
    update scored best, and, for Multi-Krum, ``"krum_kept"``, how many were
    averaged. ``num_malicious`` is checked against each round's number of
    updates ``n`` (:math:`2f + 2 < n`) when the round is aggregated.
    """

    def __init__(self, num_malicious: int, to_keep: int = 0, *, strict: bool = True):
        self.num_malicious = valid.integer("num_malicious", num_malicious, minimum=0)
        self.to_keep = valid.integer("to_keep", to_keep, minimum=0)
        if not isinstance(strict, bool):
            raise TypeError(f"strict must be True or False, got {strict!r}")
        self.strict = strict
        self.kept = self.scores = None

    def __repr__(self) -> str:
        return f"Krum(num_malicious={self.num_malicious}, to_keep={self.to_keep})"

    def __call__(self, updates, weights, *, rng=None) -> np.ndarray:
        out, self.kept, self.scores = _krum(updates, weights, self.num_malicious, self.to_keep, self.strict)
        return out

    def metrics(self, info) -> dict:
        """``krum_party`` (and ``krum_kept`` for Multi-Krum); NaN in a round with no update to aggregate."""
        empty = self.kept is None or (info is not None and len(info.selected) == 0)
        out = {"krum_party": np.nan if empty else float(np.asarray(info.selected)[self.kept[0]])}
        if self.to_keep:
            out["krum_kept"] = np.nan if empty else float(len(self.kept))
        return out


class GeometricMedian:
    """Aggregator for ``fl.train``: :func:`geometric_median` (``GeometricMedian(tol=1e-7, max_iter=500)``).

    ``metrics(info)`` reports ``"geomed_iterations"``, the Weiszfeld steps of the round.
    """

    def __init__(self, *, tol: float = 1e-7, max_iter: int = 500, eps: float = 1e-10):
        self.tol = valid.positive_float("tol", tol)
        self.max_iter = valid.integer("max_iter", max_iter, minimum=1)
        self.eps = valid.positive_float("eps", eps)
        self.iterations = None
        self.converged = None

    def __repr__(self) -> str:
        return f"GeometricMedian(tol={self.tol!r}, max_iter={self.max_iter}, eps={self.eps!r})"

    def __call__(self, updates, weights, *, rng=None) -> np.ndarray:
        updates, weights = _checked(updates, weights)
        z, self.iterations, self.converged = _weiszfeld(updates, weights, self.tol, self.max_iter, self.eps)
        return z

    def metrics(self, info) -> dict:
        """``geomed_iterations``; NaN in a round with no update to aggregate."""
        empty = self.iterations is None or (info is not None and len(info.selected) == 0)
        return {"geomed_iterations": np.nan if empty else float(self.iterations)}


class NormBound:
    r"""Aggregator for ``fl.train``: bound each update's norm on the server, then aggregate.

    ``NormBound(max_norm)`` is :func:`norm_bound` (clip, then the weighted
    mean); ``NormBound(max_norm, inner=rule)`` clips, then hands the clipped
    updates to any other aggregator (``inner=TrimmedMean(0.1)``) and returns
    what it returns. ``metrics(info)`` reports ``"norm_bound_clipped"``, the
    share of the round's updates that were scaled down, and the inner rule's
    metrics.
    """

    def __init__(self, max_norm: float, inner=None):
        self.max_norm = valid.positive_float("max_norm", max_norm)
        if inner is not None and not callable(inner):
            raise TypeError(f"inner must be an aggregator (callable) or None, got {type(inner).__name__}")
        self.inner = inner
        self.clipped_share = None

    def __repr__(self) -> str:
        inner = "" if self.inner is None else f", inner={self.inner!r}"
        return f"NormBound(max_norm={self.max_norm!r}{inner})"

    def __call__(self, updates, weights, *, rng=None):
        updates, weights = _checked(updates, weights)
        clipped, hit = _clip_rows(updates, self.max_norm)
        self.clipped_share = float(hit.mean())
        if self.inner is None:
            return weights @ clipped / weights.sum()
        out = self.inner(clipped, weights, rng=rng)
        return out if isinstance(out, Aggregate) else np.asarray(out, dtype=np.float64)

    def metrics(self, info) -> dict:
        empty = self.clipped_share is None or (info is not None and len(info.selected) == 0)
        out = {"norm_bound_clipped": np.nan if empty else self.clipped_share}
        if hasattr(self.inner, "metrics"):
            out.update(self.inner.metrics(info))
        return out


#: The rules by name, for sweeps in notebooks: ``RULES["median"]()``.
RULES = {"median": Median, "trimmed_mean": TrimmedMean, "krum": Krum, "geometric_median": GeometricMedian,
         "norm_bound": NormBound}
