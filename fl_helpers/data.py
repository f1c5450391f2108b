r"""Data: synthetic data, splitting data over parties, bundled datasets.

Partition schemes follow the usual FL benchmarks (LEAF, Caldas et al. 2018;
Flower Datasets' partitioners): ``"iid"``, ``"quantity"`` (unequal sizes),
``"covariate"`` (each party sees its own region of feature space) and two
label-skew schemes for classification: ``"shards"``, the pathological non-IID
split of McMahan et al. (2017), "Communication-Efficient Learning of Deep
Networks from Decentralized Data", and ``"dirichlet"``, the label mixes
:math:`q_i \sim \mathrm{Dir}(\alpha p)` of Hsu, Qi and Brown (2019),
"Measuring the Effects of Non-Identical Data Distribution for Federated
Visual Classification". Every partitioner takes an explicit ``seed``.

Functions
---------
make_regression         synthetic linear data
make_fedprox_synthetic  Synthetic(alpha, beta) of the FedProx paper (Li et al. 2020), as parties
split                   spread ``(X, y)`` over parties with one of :data:`SCHEMES`
label_histogram         how many samples of each label every party holds, shape (N, K)
load_dataset            the bundled datasets (``data/<name>.csv``; ``available_datasets()`` lists them)
"""

from __future__ import annotations

import csv
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from . import validation as valid
from .models import linear
from .models import softmax as softmax_model
from .parties import Party

SCHEMES = ("iid", "quantity", "covariate", "shards", "dirichlet")
#: The schemes that split by class label (``y`` must hold integer labels).
LABEL_SCHEMES = ("shards", "dirichlet")
DEFAULT_SKEW = {"iid": 0.0, "quantity": 1.0, "covariate": 3.0}
DEFAULT_ALPHA = 0.5
DEFAULT_SHARDS_PER_PARTY = 2


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


def make_fedprox_synthetic(alpha: float, beta: float, *, n_parties: int = 30, n_features: int = 60,
                           n_classes: int = 10, seed: int | None, iid: bool = False) -> list[Party]:
    r"""Synthetic(:math:`\alpha`, :math:`\beta`) of the FedProx paper, one :class:`Party` per device.

    Li, Sahu, Zaheer, Sanjabi, Talwalkar and Smith (2020), "Federated
    Optimization in Heterogeneous Networks", Section 5.1, with the conventions
    of the authors' generator (``generate_synthetic.py``); :math:`\alpha` and
    :math:`\beta` are standard deviations. For party :math:`k`:

    .. math::
        n_k = \lfloor \mathrm{lognormal}(4, 2) \rfloor + 50, \qquad
        u_k \sim \mathcal N(0, \alpha^2), \qquad B_k \sim \mathcal N(0, \beta^2),

        W_k \in \mathbb R^{d \times K},\ b_k \in \mathbb R^K \text{ with entries } \sim \mathcal N(u_k, 1),
        \qquad v_k \in \mathbb R^d \text{ with entries } \sim \mathcal N(B_k, 1),

        x \sim \mathcal N(v_k, \Sigma),\ \Sigma = \mathrm{diag}(j^{-1.2})_{j=1..d}, \qquad
        y = \arg\max_c\,(x W_k + b_k)_c

    (the paper writes :math:`\arg\max` of the softmax: the same class).
    :math:`\beta` sets how far apart the parties' features lie, and so how
    skewed their labels are; :math:`\alpha` shifts the mean of a party's
    :math:`W_k` and :math:`b_k`. Note, as in the authors' code: :math:`u_k`
    adds :math:`u_k (1 + \sum_j x_j)` to *every* class's score, so it never
    changes :math:`y`; for the same ``seed``, the labels do not depend on
    :math:`\alpha` (the parties' models differ anyway, through their own
    :math:`\mathcal N(0, 1)` draws). ``iid=True`` is the paper's Synthetic-IID: one
    :math:`W, b \sim \mathcal N(0, 1)` for all parties and :math:`v_k = 0`
    (call it with ``alpha=0, beta=0``).

    Parameters
    ----------
    alpha, beta : float >= 0
        Standard deviations of :math:`u_k` and :math:`B_k`; 0 for ``iid=True``.
    n_parties, n_features, n_classes : int
        N (30 in the paper), d (60) and K (10, at least 2).
    seed : int or None
        Seed of a ``numpy.random.Generator``; the same seed gives the same parties.
    iid : bool
        Synthetic-IID instead of Synthetic(alpha, beta).

    Returns
    -------
    list of Party
        ``model=models.softmax(n_classes=n_classes)``, named ``"party 0"``, ``"party 1"``, ...
    """
    draws = _fedprox_draws(alpha, beta, n_parties=n_parties, n_features=n_features, n_classes=n_classes,
                           seed=seed, iid=iid)
    model = softmax_model(n_classes=n_classes)
    return [Party(d["X"], d["y"], model=model, name=f"party {k}") for k, d in enumerate(draws)]


def _fedprox_draws(alpha, beta, *, n_parties, n_features, n_classes, seed, iid) -> list[dict]:
    """The draws behind :func:`make_fedprox_synthetic`, per party: X, y, W, b, v (for tests and teaching).

    Call order on ``numpy.random.default_rng(seed)``: the sizes first
    (``lognormal(4, 2, n_parties)``), then u, B, v (non-IID) or the shared W, b
    (IID), then per party W_k, b_k (non-IID) and x.
    """
    alpha = valid.positive_float("alpha", alpha, allow_zero=True)
    beta = valid.positive_float("beta", beta, allow_zero=True)
    n_parties = valid.integer("n_parties", n_parties, minimum=1)
    d = valid.integer("n_features", n_features, minimum=1)
    n_classes = valid.integer("n_classes", n_classes, minimum=2)
    if not isinstance(iid, (bool, np.bool_)):
        raise TypeError(f"iid must be True or False, got {iid!r} ({type(iid).__name__})")
    if iid and (alpha, beta) != (0.0, 0.0):
        raise ValueError(f"alpha and beta must be 0 with iid=True (Synthetic-IID shares one W, b and has v = 0), "
                         f"got alpha={alpha!r}, beta={beta!r}")
    rng = np.random.default_rng(valid.seed(seed))

    sizes = np.floor(rng.lognormal(4.0, 2.0, n_parties)).astype(np.int64) + 50
    sd_x = np.arange(1, d + 1, dtype=np.float64) ** -0.6            # sqrt of Sigma's diagonal j^-1.2
    if iid:
        v = np.zeros((n_parties, d))
        W_all = rng.normal(0.0, 1.0, (d, n_classes))
        b_all = rng.normal(0.0, 1.0, n_classes)
    else:
        u = rng.normal(0.0, alpha, n_parties)
        B = rng.normal(0.0, beta, n_parties)
        v = rng.normal(B[:, None], 1.0, (n_parties, d))
    draws = []
    for k, n in enumerate(sizes):
        if iid:
            W, b = W_all, b_all
        else:
            W = rng.normal(u[k], 1.0, (d, n_classes))
            b = rng.normal(u[k], 1.0, n_classes)
        X = v[k] + sd_x * rng.standard_normal((int(n), d))
        y = np.argmax(X @ W + b, axis=1).astype(np.int64)
        draws.append({"X": X, "y": y, "W": W, "b": b, "v": v[k]})
    return draws


def split(X, y, n_parties: int, *, scheme: str = "iid", skew: float | None = None,
          alpha: float | None = None, shards_per_party: int | None = None, model=linear,
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
    ``"shards"``
        Label skew, McMahan et al. (2017)'s pathological non-IID split. The
        samples are shuffled (seeded), sorted by label (stable, so ties keep
        the shuffled order), cut into ``n_parties * shards_per_party`` shards of
        near-equal size (sizes differ by at most one) and the shards are dealt
        out at random, ``shards_per_party`` to each party. A party then sees
        only the labels of its few shards: with equal-size classes and a shard
        size that divides the class size, at most ``shards_per_party`` labels.
    ``"dirichlet"``
        Label skew of tunable strength, Hsu, Qi and Brown (2019). With
        :math:`p` the overall class frequencies, party :math:`i` draws a label
        mix :math:`q_i \sim \mathrm{Dir}(\alpha p)` and gets near-equal share
        :math:`m_i \in \{\lfloor m/N\rfloor, \lceil m/N\rceil\}` of the samples,
        drawn by label without replacement following :math:`q_i`. Parties draw
        in order 0, 1, ...: party :math:`i`'s label counts are
        :math:`\mathrm{Multinomial}(m_i, q_i)`; draws beyond what a class has
        left are redrawn over the classes that still have samples, with
        :math:`q_i` renormalised over them (the same as drawing one sample at a
        time and renormalising once a class is exhausted); should :math:`q_i`
        put no mass on any class left, the party draws in proportion to the
        counts left. Within a class, samples are taken in a seeded random order.
        :math:`E[q_i] = p`; :math:`\alpha \to \infty` tends to IID,
        :math:`\alpha \to 0` to one label per party.

    Parameters
    ----------
    X : array, shape (m, d)
    y : array, shape (m,)
        Targets; integer class labels for ``"shards"`` and ``"dirichlet"``.
    n_parties : int
        Number of parties N, 1 <= N <= m.
    scheme : {"iid", "quantity", "covariate", "shards", "dirichlet"}
    skew : float >= 0, optional
        ``"quantity"`` and ``"covariate"`` only (``"iid"`` ignores it). Default
        1.0 for ``"quantity"`` and 3.0 for ``"covariate"``.
    alpha : float > 0, optional
        ``"dirichlet"`` only: the concentration :math:`\alpha` (default 0.5).
    shards_per_party : int >= 1, optional
        ``"shards"`` only (default 2, as in McMahan et al.); at most
        ``m // n_parties`` so that no shard is empty.
    model : a model from :mod:`fl_helpers.models`
        The parties' model (``models.linear`` by default; e.g.
        ``models.softmax(n_classes=10)`` for the digits).
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
    _only_for("alpha", alpha, scheme, ("dirichlet",))
    _only_for("shards_per_party", shards_per_party, scheme, ("shards",))
    if scheme in LABEL_SCHEMES:
        _only_for("skew", skew, scheme, ("quantity", "covariate"))
    else:
        skew = DEFAULT_SKEW[scheme] if skew is None else valid.positive_float("skew", skew, allow_zero=True)
    if scheme == "dirichlet":
        alpha = DEFAULT_ALPHA if alpha is None else valid.positive_float("alpha", alpha)
    if scheme == "shards":
        shards_per_party = _shards_per_party(shards_per_party, m, n_parties)
    if scheme in LABEL_SCHEMES:
        _integer_labels(y, scheme)
    rng = np.random.default_rng(valid.seed(seed))

    if scheme == "iid":
        parts = np.array_split(rng.permutation(m), n_parties)
    elif scheme == "quantity":
        sizes = quantity_sizes(m, n_parties, skew=skew, rng=rng)
        parts = np.split(rng.permutation(m), np.cumsum(sizes)[:-1])
    elif scheme == "covariate":
        centred = X - X.mean(axis=0)
        direction = np.linalg.svd(centred, full_matrices=False)[2][0]
        z = centred @ direction
        z = z / z.std() if z.std() > 0 else z
        key = skew * z + rng.standard_normal(m)
        parts = np.array_split(np.argsort(key, kind="stable"), n_parties)
    elif scheme == "shards":
        parts = _shard_parts(y, n_parties, shards_per_party, rng)
    else:
        parts = _dirichlet_parts(y, n_parties, alpha, rng)
    return [Party(X[idx], y[idx], model=model, name=f"party {i}") for i, idx in enumerate(parts)]


def _only_for(name: str, value, scheme: str, schemes: tuple[str, ...]) -> None:
    """Refuse an option that ``scheme`` would silently ignore."""
    if value is not None and scheme not in schemes:
        raise ValueError(f"{name} applies to scheme={' or '.join(map(repr, schemes))} only (leave it None for "
                         f"scheme={scheme!r}), got {name}={value!r}")


def _integer_labels(y: np.ndarray, scheme: str) -> None:
    bad = np.flatnonzero(y != np.round(y))
    if bad.size:
        raise ValueError(f"y must hold integer class labels (such as 0 .. K - 1) for scheme={scheme!r}, "
                         f"which splits by label; got {float(y[bad[0]])!r} at index {bad[0]}")


def _shards_per_party(value, m: int, n_parties: int) -> int:
    value = DEFAULT_SHARDS_PER_PARTY if value is None else valid.integer("shards_per_party", value, minimum=1)
    if n_parties * value > m:
        raise ValueError(
            f"shards_per_party must be an integer in [1, {m // n_parties}] here: n_parties * shards_per_party "
            f"shards must not outnumber the {m} samples, got shards_per_party={value} "
            f"({n_parties * value} shards for {n_parties} parties)")
    return value


def _shard_parts(y: np.ndarray, n_parties: int, shards_per_party: int,
                 rng: np.random.Generator) -> list[np.ndarray]:
    """McMahan et al.'s shards: shuffle, sort by label (stable), cut, deal ``shards_per_party`` to each party."""
    shuffled = rng.permutation(len(y))
    by_label = shuffled[np.argsort(y[shuffled], kind="stable")]
    shards = np.array_split(by_label, n_parties * shards_per_party)
    deal = np.sort(rng.permutation(n_parties * shards_per_party).reshape(n_parties, shards_per_party), axis=1)
    return [np.concatenate([shards[j] for j in row]) for row in deal]


def _dirichlet_parts(y: np.ndarray, n_parties: int, alpha: float,
                     rng: np.random.Generator) -> list[np.ndarray]:
    """Hsu et al.'s label mixes: near-equal sizes, labels drawn without replacement following q_i ~ Dir(alpha p)."""
    m = len(y)
    _, labels = np.unique(y, return_inverse=True)
    counts = np.bincount(labels)
    concentration = np.maximum(alpha * counts / m, np.finfo(np.float64).tiny)
    mixes = rng.dirichlet(concentration, size=n_parties)
    pools = [rng.permutation(np.flatnonzero(labels == k)) for k in range(len(counts))]
    sizes = np.full(n_parties, m // n_parties)
    sizes[:m % n_parties] += 1
    left = counts.copy()
    parts = []
    for size, q in zip(sizes, mixes, strict=True):
        take = _label_counts(int(size), q, left, rng)
        start = counts - left
        parts.append(np.concatenate([pool[s:s + t] for pool, s, t in zip(pools, start, take, strict=True)]))
        left -= take
    return parts


def _label_counts(n: int, q: np.ndarray, left: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """How many samples of each label a party of size ``n`` takes: Multinomial(n, q) without replacement.

    Draws beyond what a class has ``left`` are redrawn over the classes with room, ``q`` renormalised
    over them (over the counts left if ``q`` has no mass there). Requires ``n <= left.sum()``.
    """
    take = np.zeros_like(left)
    while n > 0:
        room = left - take
        weights = np.where(room > 0, q, 0.0)
        if not weights.sum() > 0:
            weights = room.astype(np.float64)
        draw = rng.multinomial(n, weights / weights.sum())
        take += np.minimum(draw, room)
        n = int(np.maximum(draw - room, 0).sum())
    return take


def label_histogram(parties: Sequence[Party], n_classes: int | None = None) -> np.ndarray:
    """Label counts per party: entry ``[i, k]`` is how many samples of label ``k`` party ``i`` holds.

    Parameters
    ----------
    parties : sequence of Party
        Parties whose targets are class labels 0 .. K - 1.
    n_classes : int, optional
        K; default: the largest label + 1.

    Returns
    -------
    ndarray of int64, shape (N, K)
    """
    _check_party_list(parties)
    labels = [p.data[1] for p in parties]
    for i, y in enumerate(labels):
        if not np.all((y == np.round(y)) & (y >= 0)):
            bad = float(y[(y != np.round(y)) | (y < 0)][0])
            raise ValueError(f"parties must hold class labels (integers >= 0), got {bad!r} in party {i}")
    top = int(max(y.max() for y in labels))
    if n_classes is None:
        n_classes = top + 1
    else:
        n_classes = valid.integer("n_classes", n_classes, minimum=1)
        if top >= n_classes:
            raise ValueError(f"n_classes must be greater than the largest label ({top}), got {n_classes}")
    return np.stack([np.bincount(y.astype(np.int64), minlength=n_classes) for y in labels]).astype(np.int64)


def _check_party_list(parties) -> None:
    if isinstance(parties, (str, Party)) or not isinstance(parties, Sequence):
        raise TypeError(f"parties must be a non-empty list of Party objects, got {type(parties).__name__}")
    if not parties:
        raise ValueError("parties must be a non-empty list of Party objects, got an empty list")
    for i, p in enumerate(parties):
        if not isinstance(p, Party):
            raise TypeError(f"parties must be a list of Party objects, got {type(p).__name__} at index {i}")


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


#: Bundled classification datasets: name -> the number the raw features are divided by (digits:
#: 16, to [0, 1]; default: 1, raw dollars). Their last column holds integer labels, returned as
#: int64; they also have a train/test split.
CLASSIFICATION = {"digits": 16.0, "default": 1.0}
#: The fixed split of the classification datasets: within each class, in row order, every
#: TEST_EVERY-th sample (positions TEST_EVERY - 1, 2 TEST_EVERY - 1, ...) is a test sample.
TEST_EVERY = 4
SUBSETS = ("all", "train", "test")


def load_dataset(name: str, *, subset: str = "all"):
    """Load a bundled dataset: the last CSV column is the target.

    Each dataset comes with a data card ``data/<name>.md`` (source, licence,
    columns, units).

    ``"diabetes"``: regression, 442 patients, 10 raw features, float targets.
    ``"digits"``: classification, 1,797 8x8 images of handwritten digits;
    features are the pixel values 0..16 divided by 16 (so in [0, 1]), labels
    0..9 (int64).
    ``"default"``: classification, 10,000 credit-card customers of ISLP's
    ``Default`` data (simulated by the book's authors): ``student`` (0/1),
    ``balance`` and ``income`` (dollars, unscaled); label 1 if the customer
    defaulted (333 of them, 3.3 %).

    Parameters
    ----------
    name : str
        One of :func:`available_datasets`.
    subset : {"all", "train", "test"}
        The classification datasets have a fixed, stratified split that needs
        no random numbers: within each class, in row order, every 4th sample
        (positions 3, 7, 11, ... counted from 0 within its class) is a test
        sample, the others train. So each class is split 3:1 (test: the
        floor of a quarter of the class), and ``"train"`` and ``"test"`` keep
        the file's row order. Datasets without a split accept only ``"all"``.

    Returns
    -------
    X : ndarray of float64, shape (m, d)
    y : ndarray, shape (m,)
        float64 targets, or int64 labels for a classification dataset.
    feature_names : list[str]
    """
    if not isinstance(name, str):
        raise TypeError(f"name must be a str, got {type(name).__name__}")
    names = available_datasets()
    if name not in names:
        raise ValueError(f"name must be one of {', '.join(map(repr, names))}; got {name!r}")
    subset = valid.choice("subset", subset, SUBSETS)
    if name not in CLASSIFICATION and subset != "all":
        raise ValueError(f"subset must be 'all' for {name!r}, which has no train/test split; got {subset!r}")
    with open(data_dir() / f"{name}.csv", newline="", encoding="utf-8") as fh:
        header = next(csv.reader(fh))
        table = np.loadtxt(fh, delimiter=",", dtype=np.float64, ndmin=2)
    X, y = table[:, :-1], table[:, -1]
    if name in CLASSIFICATION:
        X = X / CLASSIFICATION[name]
        y = y.astype(np.int64)
        if subset != "all":
            test = _holdout_mask(y)
            keep = test if subset == "test" else ~test
            X, y = X[keep], y[keep]
    return X, y, header[:-1]


def _holdout_mask(y) -> np.ndarray:
    """True for the test samples of the fixed split: every 4th sample of each class, in row order.

    A sample is a test sample when its position among the samples of its class
    (0, 1, 2, ...) is 3, 7, 11, ..., i.e. ``position % 4 == 3``.
    """
    y = np.asarray(y)
    order = np.argsort(y, kind="stable")                       # classes in turn, row order within each
    sorted_y = y[order]
    first = np.searchsorted(sorted_y, sorted_y, side="left")   # where each sample's class starts
    position = np.empty(len(y), dtype=np.int64)
    position[order] = np.arange(len(y)) - first
    return position % TEST_EVERY == TEST_EVERY - 1
