"""Data: synthetic regression data, splitting data over parties, bundled datasets.

Partition schemes follow the usual FL benchmarks (LEAF, Caldas et al. 2018;
Flower Datasets' partitioners): ``"iid"``, ``"quantity"`` (unequal sizes) and
``"covariate"`` (each party sees its own region of feature space). Every
partitioner takes an explicit ``seed``.
"""

from __future__ import annotations

import csv
import os
from pathlib import Path

import numpy as np

from . import validation as valid
from .parties import Party

SCHEMES = ("iid", "quantity", "covariate")
DEFAULT_SKEW = {"iid": 0.0, "quantity": 1.0, "covariate": 3.0}


def make_regression(n_samples: int, n_features: int, *, noise: float, seed: int | None):
    r"""Synthetic linear data :math:`y = \theta_0 + X\theta_{1:d} + \varepsilon`.

    ``X`` has i.i.d. standard normal entries, ``theta_true`` is uniform in
    [-2, 2] (intercept in ``theta_true[0]``) and :math:`\varepsilon \sim
    \mathcal N(0, \text{noise}^2)`.

    Returns
    -------
    X : ndarray, shape (n_samples, n_features)
    y : ndarray, shape (n_samples,)
    theta_true : ndarray, shape (n_features + 1,)
    """
    n_samples = valid.integer("n_samples", n_samples, minimum=1)
    n_features = valid.integer("n_features", n_features, minimum=1)
    noise = valid.positive_float("noise", noise, allow_zero=True)
    rng = np.random.default_rng(valid.seed(seed))
    theta_true = rng.uniform(-2.0, 2.0, size=n_features + 1)
    X = rng.standard_normal((n_samples, n_features))
    y = theta_true[0] + X @ theta_true[1:] + noise * rng.standard_normal(n_samples)
    return X, y, theta_true


def split(X, y, n_parties: int, *, scheme: str = "iid", skew: float | None = None,
          seed: int | None = None) -> list[Party]:
    r"""Split ``(X, y)`` over ``n_parties`` parties; every party gets >= 1 sample.

    Schemes
    -------
    ``"iid"``
        A random permutation cut into near-equal parts (``skew`` is ignored).
    ``"quantity"``
        Sizes follow a power law :math:`m_i \propto (i + 1)^{-\text{skew}}` (in a
        random order of parties): ``skew=0`` gives equal sizes, ``skew=1`` a
        Zipf law, larger values a few big parties and many tiny ones. Samples
        are assigned at random, so the parties' data are still i.i.d.
    ``"covariate"``
        Each party covers a region of feature space: samples are sorted by
        :math:`\text{skew}\cdot z_j + \epsilon_j`, :math:`z` the standardised
        projection on the data's first principal direction and
        :math:`\epsilon \sim \mathcal N(0, 1)`, then cut into near-equal parts.
        ``skew=0`` is IID; large values give disjoint regions.

    Parameters
    ----------
    skew : float >= 0, optional
        Default 1.0 for ``"quantity"`` and 3.0 for ``"covariate"``.
    seed : int, optional
        Seed of the random assignment; the same seed gives the same parties.
    """
    X = valid.features(X)
    y = valid.targets(y, X.shape[0])
    m = X.shape[0]
    n_parties = valid.integer("n_parties", n_parties, minimum=1)
    if n_parties > m:
        raise ValueError(
            f"n_parties must be at most the number of samples ({m}) so that every party "
            f"gets at least one sample, got {n_parties}")
    scheme = valid.choice("scheme", scheme, SCHEMES)
    skew = DEFAULT_SKEW[scheme] if skew is None else valid.positive_float("skew", skew, allow_zero=True)
    rng = np.random.default_rng(valid.seed(seed))

    if scheme == "iid":
        parts = np.array_split(rng.permutation(m), n_parties)
    elif scheme == "quantity":
        sizes = quantity_sizes(m, n_parties, skew=skew, rng=rng)
        parts = np.split(rng.permutation(m), np.cumsum(sizes)[:-1])
    else:
        centred = X - X.mean(axis=0)
        direction = np.linalg.svd(centred, full_matrices=False)[2][0]
        z = centred @ direction
        z = z / z.std() if z.std() > 0 else z
        key = skew * z + rng.standard_normal(m)
        parts = np.array_split(np.argsort(key, kind="stable"), n_parties)
    return [Party(X[idx], y[idx], name=f"party {i}") for i, idx in enumerate(parts)]


def quantity_sizes(m: int, n_parties: int, *, skew: float, rng: np.random.Generator) -> np.ndarray:
    """Party sizes for the ``"quantity"`` scheme: >= 1 each, summing to ``m``.

    Each party first gets one sample; the other ``m - n_parties`` are shared in
    proportion to :math:`(i + 1)^{-\\text{skew}}` by largest remainders, and the
    sizes are handed to the parties in a random order.
    """
    share = np.arange(1, n_parties + 1, dtype=float) ** -skew
    share /= share.sum()
    extra = (m - n_parties) * share
    sizes = np.floor(extra).astype(int)
    left = (m - n_parties) - sizes.sum()
    sizes[np.argsort(-(extra - sizes), kind="stable")[:left]] += 1
    return rng.permutation(sizes + 1)


def data_dir() -> Path:
    """Folder of the bundled datasets: ``$FL_HELPERS_DATA`` or the repository's ``data/``."""
    return Path(os.environ.get("FL_HELPERS_DATA", Path(__file__).resolve().parent.parent / "data"))


def available_datasets() -> list[str]:
    """Names accepted by :func:`load_dataset` (the CSV files in :func:`data_dir`)."""
    return sorted(p.stem for p in data_dir().glob("*.csv"))


def load_dataset(name: str):
    """Load a bundled regression dataset: the last CSV column is the target.

    Each dataset comes with a data card ``data/<name>.md`` (source, licence,
    columns, units).

    Returns
    -------
    X : ndarray, shape (m, d)
    y : ndarray, shape (m,)
    feature_names : list[str]
    """
    if not isinstance(name, str):
        raise TypeError(f"name must be a str, got {type(name).__name__}")
    names = available_datasets()
    if name not in names:
        raise ValueError(f"name must be one of {', '.join(map(repr, names))}; got {name!r}")
    with open(data_dir() / f"{name}.csv", newline="", encoding="utf-8") as fh:
        header = next(csv.reader(fh))
        table = np.loadtxt(fh, delimiter=",", dtype=np.float64, ndmin=2)
    return table[:, :-1], table[:, -1], header[:-1]
