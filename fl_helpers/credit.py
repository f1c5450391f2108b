r"""Credit scoring across banks (金融风控): the case study's banks, scaling and imbalance tools.

Horizontal federated learning's textbook case: several banks hold *different customers* with the
*same columns* and want one default model, but customer data may not leave a bank (bank secrecy,
data-protection law, competition). The data are ISLP's simulated ``Default`` customers
(:func:`fl_helpers.load_dataset`, ``"default"``: ``student``, ``balance``, ``income``; 3.33 % defaults).

:func:`banks`
    Deals the customers out to up to four banks by a documented, non-IID rule (:data:`BANKS`):
    customer :math:`j` joins bank :math:`k` with probability
    :math:`a_k(x_j) / \sum_l a_l(x_j)`, the affinities :math:`a_k` below. Each bank then holds out a
    stratified test share of its own customers; every feature is standardised with the federation's
    mean and standard deviation, computed from the banks' sums (:func:`federated_moments`), never from
    pooled data.
:func:`federated_moments`
    Mean and standard deviation of the union of the banks' training data from what each bank can
    share: its count :math:`n_k`, :math:`\sum x` and :math:`\sum x^2` (per feature; a sum that secure
    aggregation, notebook 09, can add up without showing any one bank's).
:func:`oversample`
    Random-oversampling's deterministic form: every default repeated ``factor`` times. It changes the
    base rate the model learns, hence its calibration (King and Zeng 2001, "Logistic Regression in
    Rare Events Data", prior correction), and hardly its ranking.

The affinities (dollars; ``student`` 1/0), with :math:`[\cdot]` 1 when true and 0 otherwise:

- bank 0, **Campus** (students): :math:`a_0 = 6\,[\text{student}] + 0.3\,[\text{not student}]`;
- bank 1, **Premium** (high earners): :math:`a_1 = 4\,[\text{income} \ge 45{,}000 \text{ and not student}] + 0.2`;
- bank 2, **Card** (large card balances): :math:`a_2 = 4\,[\text{balance} \ge 1{,}200] + 0.6`;
- bank 3, **Regional** (a small mix of everyone): :math:`a_3 = 0.3`.

The rule looks at the features only, so the banks differ in whom they serve (covariate shift:
size, student share, balances, default rate) while :math:`P(\text{default} \mid x)` is the same law
in every bank. With fewer banks (``n_banks`` < 4) only the first ``n_banks`` banks take part.
"""

from __future__ import annotations

import numbers
from dataclasses import dataclass

import numpy as np

from . import validation as valid
from .models import logistic
from .parties import Party

#: The banks' names, in the order of the affinity table (the module docstring).
BANKS = ("Campus", "Premium", "Card", "Regional")
#: Thresholds of the rule, in dollars.
INCOME_THRESHOLD = 45_000.0
BALANCE_THRESHOLD = 1_200.0
#: The columns :func:`banks` expects, in order (``load_dataset("default")``'s feature names).
COLUMNS = ("student", "balance", "income")


def affinities(X, *, n_banks: int = 4) -> np.ndarray:
    r"""Each customer's affinity :math:`a_k(x)` to each bank (the module docstring's table), shape (m, n_banks).

    ``X`` holds the raw columns ``student`` (0/1), ``balance`` and ``income`` (dollars).
    """
    X = _raw_features(X)
    n_banks = valid.integer("n_banks", n_banks, minimum=2, maximum=len(BANKS))
    student, balance, income = X[:, 0] == 1, X[:, 1], X[:, 2]
    a = np.stack([np.where(student, 6.0, 0.3),
                  np.where((income >= INCOME_THRESHOLD) & ~student, 4.0 + 0.2, 0.2),
                  np.where(balance >= BALANCE_THRESHOLD, 4.0 + 0.6, 0.6),
                  np.full(len(X), 0.3)], axis=1)
    return a[:, :n_banks]


def federated_moments(Xs) -> tuple[np.ndarray, np.ndarray]:
    r"""Mean and standard deviation of the stacked ``Xs`` from each bank's sums only.

    Bank :math:`k` shares :math:`n_k`, :math:`S_k = \sum_{j} x_j` and :math:`Q_k = \sum_j x_j^2`
    (per feature); the federation adds them up, :math:`n = \sum_k n_k` and

    .. math:: \mu = \frac{\sum_k S_k}{n}, \qquad \sigma^2 = \frac{\sum_k Q_k}{n} - \mu^2

    (``ddof=0``): the pooled data's own mean and standard deviation, without pooling the data.

    Parameters
    ----------
    Xs : sequence of arrays, each (m_k, d)
        The banks' feature matrices.

    Returns
    -------
    mean, std : ndarray (d,)
    """
    if isinstance(Xs, np.ndarray) or not hasattr(Xs, "__len__") or len(Xs) == 0:
        raise TypeError(f"Xs must be a non-empty list of the banks' feature matrices, got {type(Xs).__name__}")
    mats = [valid.features(X, name=f"Xs[{k}]") for k, X in enumerate(Xs)]
    d = mats[0].shape[1]
    for k, X in enumerate(mats):
        if X.shape[1] != d:
            raise ValueError(f"Xs[{k}] must have the {d} features of Xs[0], got {X.shape[1]}")
    n = sum(X.shape[0] for X in mats)
    total = sum(X.sum(axis=0) for X in mats)
    squares = sum((X * X).sum(axis=0) for X in mats)
    mean = total / n
    std = np.sqrt(np.maximum(squares / n - mean * mean, 0.0))
    if np.any(std == 0):
        raise ValueError(f"every feature must vary across the banks' data to be standardised, got std {std}")
    return mean, std


@dataclass
class Banks:
    """The banks of :func:`banks`.

    Attributes
    ----------
    parties : list of Party
        Each bank's training customers, standardised, with ``models.logistic``.
    tests : list of (X, y)
        Each bank's held-out customers, standardised the same way.
    names : list of str
    assignment : ndarray of int (m,)
        The bank of each input row.
    test_mask : ndarray of bool (m,)
        True for a held-out (test) row.
    mean, std : ndarray (d,)
        The federation's scaling (:func:`federated_moments` of the training parts).
    """

    parties: list
    tests: list
    names: list
    assignment: np.ndarray
    test_mask: np.ndarray
    mean: np.ndarray
    std: np.ndarray

    def scale(self, X) -> np.ndarray:
        """Raw features standardised with the federation's mean and standard deviation."""
        X = valid.features(X)
        if X.shape[1] != len(self.mean):
            raise ValueError(f"X must have {len(self.mean)} features, got {X.shape[1]}")
        return (X - self.mean) / self.std

    def describe(self, X, y) -> dict:
        """Per bank, all its customers (train and test) of the raw ``(X, y)`` given to :func:`banks`.

        Returns ``{"customers", "defaults", "default_rate", "student_share", "mean_balance",
        "mean_income"}``, arrays of one entry per bank.
        """
        X = _raw_features(X)
        y = valid.targets(y, X.shape[0])
        if X.shape[0] != len(self.assignment):
            raise ValueError(f"X must be the {len(self.assignment)} rows given to banks(), got {X.shape[0]}")
        rows = [self.assignment == k for k in range(len(self.names))]
        return {"customers": np.array([r.sum() for r in rows]),
                "defaults": np.array([int(y[r].sum()) for r in rows]),
                "default_rate": np.array([y[r].mean() for r in rows]),
                "student_share": np.array([X[r, 0].mean() for r in rows]),
                "mean_balance": np.array([X[r, 1].mean() for r in rows]),
                "mean_income": np.array([X[r, 2].mean() for r in rows])}


def banks(X, y, *, n_banks: int = 4, test_share: float = 0.25, seed: int | None = None) -> Banks:
    r"""Deal the customers out to ``n_banks`` banks by the module's non-IID rule, hold out tests, standardise.

    1. Customer :math:`j` joins bank :math:`k` with probability :math:`a_k(x_j)/\sum_l a_l(x_j)`
       (:func:`affinities`), one uniform draw per customer.
    2. Within each bank and each class (default or not), a random ``round(test_share * count)`` of
       the customers are the bank's test customers: a stratified hold-out, so every bank's test set
       has its own default rate.
    3. The federation computes the mean and standard deviation of the banks' *training* customers
       from their sums (:func:`federated_moments`) and every bank standardises with them. (Pooled
       statistics would need the pooled data; a bank's own statistics would give each bank other
       features; a fixed public scale would also do.)

    Parameters
    ----------
    X : array (m, 3)
        Raw ``student`` (0/1), ``balance``, ``income`` (``load_dataset("default")``).
    y : array (m,)
        0/1 labels, 1 = default.
    n_banks : int in [2, 4]
    test_share : float in (0, 1)
    seed : int or None
        Drives both the assignment and the hold-out.

    Returns
    -------
    Banks
    """
    X = _raw_features(X)
    y = valid.targets(y, X.shape[0])
    if not np.all(np.isin(y, (0, 1))):
        raise ValueError(f"y must hold 0/1 labels (1 = default), got values {np.unique(y)[:5].tolist()}")
    n_banks = valid.integer("n_banks", n_banks, minimum=2, maximum=len(BANKS))
    if isinstance(test_share, bool) or not isinstance(test_share, numbers.Real):
        raise TypeError(f"test_share must be a real number in (0, 1), got {test_share!r} ({type(test_share).__name__})")
    test_share = float(test_share)
    if not 0 < test_share < 1:                     # also catches nan
        raise ValueError(f"test_share must be in (0, 1), got {test_share!r}")
    rng = np.random.default_rng(valid.seed(seed))
    a = affinities(X, n_banks=n_banks)
    cumulative = np.cumsum(a / a.sum(axis=1, keepdims=True), axis=1)
    u = rng.random(len(X))
    assignment = np.minimum((u[:, None] >= cumulative).sum(axis=1), n_banks - 1)
    test_mask = np.zeros(len(X), dtype=bool)
    for k in range(n_banks):
        for label in (0, 1):
            rows = np.flatnonzero((assignment == k) & (y == label))
            n_test = int(np.round(test_share * len(rows)))
            if len(rows) - n_test < 1 or n_test < 1:
                raise ValueError(f"bank {k} ({BANKS[k]}) has {len(rows)} customers with label {label}: too few to "
                                 f"hold out test_share={test_share} and keep some for training")
            test_mask[rng.permutation(rows)[:n_test]] = True
    train_rows = [np.flatnonzero((assignment == k) & ~test_mask) for k in range(n_banks)]
    test_rows = [np.flatnonzero((assignment == k) & test_mask) for k in range(n_banks)]
    mean, std = federated_moments([X[r] for r in train_rows])
    parties = [Party((X[r] - mean) / std, y[r].astype(np.int64), model=logistic, name=BANKS[k])
               for k, r in enumerate(train_rows)]
    tests = [((X[r] - mean) / std, y[r].astype(np.int64)) for r in test_rows]
    return Banks(parties=parties, tests=tests, names=list(BANKS[:n_banks]), assignment=assignment,
                 test_mask=test_mask, mean=mean, std=std)


def oversample(X, y, *, factor: int) -> tuple[np.ndarray, np.ndarray]:
    """Every positive row (default, ``y == 1``) repeated ``factor`` times, negatives once; row order kept.

    ``factor = 1`` returns copies of the data. The default rate rises from :math:`\\pi` to
    :math:`k\\pi / (k\\pi + 1 - \\pi)` for ``factor`` :math:`k`.
    """
    X = valid.features(X)
    y = valid.targets(y, X.shape[0])
    if not np.all(np.isin(y, (0, 1))):
        raise ValueError(f"y must hold 0/1 labels, got values {np.unique(y)[:5].tolist()}")
    factor = valid.integer("factor", factor, minimum=1)
    repeats = np.where(y == 1, factor, 1)
    return np.repeat(X, repeats, axis=0), np.repeat(y, repeats).astype(np.int64)


def _raw_features(X) -> np.ndarray:
    X = valid.features(X)
    if X.shape[1] != len(COLUMNS):
        raise ValueError(f"X must have the {len(COLUMNS)} raw columns {', '.join(COLUMNS)}, got {X.shape[1]} columns")
    if not np.all(np.isin(X[:, 0], (0, 1))):
        raise ValueError(f"X[:, 0] must be the student column (0 or 1), got values {np.unique(X[:, 0])[:5].tolist()}")
    return X
