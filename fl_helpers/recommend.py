r"""Federated recommendation (联邦推荐): matrix factorisation with the ratings and user embeddings on the device.

Ammad-ud-din et al. 2019, "Federated Collaborative Filtering for Privacy-Preserving
Personalized Recommendation System" (arXiv:1901.09888): user :math:`u` keeps its ratings
:math:`\{r_{ui}\}_{i \in \Omega_u}` and its embedding :math:`\mathbf u_u \in \mathbb R^k` on its
phone; the server holds the item embeddings :math:`V \in \mathbb R^{n \times k}`, and learns
them from the users' *item gradients*. The model predicts :math:`\hat r_{ui} = \mu + \mathbf
u_u^\top \mathbf v_i` (:math:`\mu`: the mean training rating, one number the server can learn
from a single secure sum of every user's rating sum and count), and every method here
minimises the same loss (sum over the observed training pairs :math:`\Omega`, as in Koren, Bell
and Volinsky 2009, "Matrix factorization techniques for recommender systems"):

.. math::
    L(U, V) = \sum_{(u, i) \in \Omega} (r_{ui} - \mu - \mathbf u_u^\top \mathbf v_i)^2
              + \lambda\,(\lVert U\rVert_F^2 + \lVert V\rVert_F^2)

With :math:`e_{ui} = r_{ui} - \mu - \mathbf u_u^\top \mathbf v_i`, the gradients are

.. math::
    \nabla_{\mathbf u_u} L = -2 \sum_{i \in \Omega_u} e_{ui}\,\mathbf v_i + 2\lambda\,\mathbf u_u, \qquad
    \nabla_{\mathbf v_i} L = \sum_u G_u[i] + 2\lambda\,\mathbf v_i, \quad
    G_u[i] = -2\,e_{ui}\,\mathbf u_u\,[i \in \Omega_u]

:math:`G_u \in \mathbb R^{n \times k}` (:func:`item_gradients`) is what user :math:`u` sends: it
needs only :math:`u`'s own ratings and embedding, and **its row** :math:`i` **is zero exactly
when** :math:`u` **did not rate** :math:`i` (for :math:`e_{ui} \ne 0`, :math:`\mathbf u_u \ne 0`).
That is the leak :func:`guess_rated` exploits. Defences: secure aggregation
(:class:`fl_helpers.secagg.SecureAggregator` as the ``aggregator``: the server sees only
:math:`\sum_u G_u`), local noise (:class:`fl_helpers.privacy.LocalGaussian` as the
``client_transform``), and fake items (``fake_items``; Lin et al. 2020, "FedRec: Federated
Recommendation With Explicit Feedback", IEEE Intelligent Systems 36(5): each user also sends
gradients for sampled items it did not rate, with its mean rating as the virtual rating).

:func:`federated_mf` is :func:`fl_helpers.train` on the global model :math:`\theta = V` (flattened)
with two blocks swapped. Block 2, local work: a :class:`PhoneEngine` holds every user's ratings and
embedding :math:`\mathbf u_u` (state that never leaves the phone); user :math:`u` computes
:math:`G_u` at the :math:`(\mathbf u_u, V)` it holds, then takes ``local_epochs`` gradient steps on
:math:`\mathbf u_u` with :math:`V` fixed, and sends :math:`G_u` with weight 1. Block 4, server
update (:class:`ItemServer`): :math:`V \leftarrow V - \eta\,(\frac{N}{|S_t|}\sum_{u \in S_t} G_u +
2\lambda V)`. Broadcast, sampling, the ``client_transform`` and ``aggregator`` hooks and their random
streams (:mod:`fl_helpers.randomness`) are ``train``'s own. With every user in every round and one
local step this is full-batch gradient descent on :math:`L` (:func:`centralized_mf`) to rounding error.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import numpy as np

from . import randomness
from . import validation as valid
from .aggregation import weighted_sum
from .engines import LocalWork
from .parties import Party
from .server import train

# spawn keys of make_ratings and init_factors (part of the contract: never renumber)
_ITEMS, _USERS = 0, 1


# --------------------------------------------------------------------------- the data

@dataclass(frozen=True)
class Ratings:
    r"""A ratings matrix with its observed training and test entries (from :func:`make_ratings`).

    ``values`` (n_users, n_items) holds every user's rating of every item (the complete matrix,
    noise included; in real data most of it does not exist); only ``train`` and ``test`` entries
    are observed. ``user_factors`` / ``item_factors`` are the true :math:`U^*, V^*`;
    ``popularity`` the probability :math:`p_i` with which a user's ratings pick item :math:`i`.
    """

    values: np.ndarray
    train: np.ndarray
    test: np.ndarray
    user_factors: np.ndarray
    item_factors: np.ndarray
    popularity: np.ndarray

    @property
    def n_users(self) -> int:
        return self.values.shape[0]

    @property
    def n_items(self) -> int:
        return self.values.shape[1]

    @property
    def mean(self) -> float:
        r""":math:`\mu`, the mean training rating."""
        return float(self.values[self.train].mean())

    def triples(self, subset: str = "train") -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(users, items, ratings)`` of the observed ``subset`` ("train" or "test"), sorted by user then item."""
        mask = self._mask(subset)
        users, items = np.nonzero(mask)
        return users, items, self.values[users, items]

    def rated(self, user: int, subset: str = "train") -> np.ndarray:
        """The items ``user`` rated in ``subset``, sorted."""
        user = valid.integer("user", user, minimum=0, maximum=self.n_users - 1)
        return np.flatnonzero(self._mask(subset)[user])

    def _mask(self, subset: str) -> np.ndarray:
        return {"train": self.train, "test": self.test}[valid.choice("subset", subset, ("train", "test"))]


def make_ratings(n_users: int, n_items: int, *, rank: int, density: float, noise: float = 0.3,
                 popularity: float = 1.0, min_per_user: int = 3, test_fraction: float = 0.2,
                 seed: int) -> Ratings:
    r"""Synthetic low-rank ratings on a 1-5 scale, observed with a Zipf-like popularity skew.

    The generator:

    1. true factors :math:`\mathbf v^*_i, \mathbf u^*_u \sim \mathcal N(0, k^{-1/2} I_k)`, so that
       :math:`\mathbf u^{*\top}_u \mathbf v^*_i` has variance 1;
    2. ratings :math:`r_{ui} = \mathrm{clip}(3 + \mathbf u^{*\top}_u \mathbf v^*_i + \sigma\varepsilon_{ui},
       1, 5)`, :math:`\varepsilon_{ui} \sim \mathcal N(0, 1)`, real-valued (not rounded);
    3. which entries a user rated: :math:`n_u = \max(m, \mathrm{Binomial}(n, \rho))` items, drawn
       without replacement with probabilities :math:`p_i \propto (i + 1)^{-a}` (Zipf-like: item 0 is
       the most popular; :math:`a = 0` is uniform);
    4. each user's split: :math:`\max(1, \mathrm{round}(f\,n_u))` of its ratings (at most
       :math:`n_u - 1`) go to the test set, the rest to training.

    Item factors come from ``SeedSequence(seed, spawn_key=(0,))``; everything about user
    :math:`u` (factors, noise, items, split) from ``SeedSequence(seed, spawn_key=(1, u))``, so
    adding users changes nobody else's data.

    Parameters
    ----------
    n_users, n_items : int, >= 2
    rank : int in [1, min(n_users, n_items)]
        :math:`k`, the true rank.
    density : float in (0, 1]
        :math:`\rho`, the expected share of items a user rated.
    noise : float >= 0
        :math:`\sigma`.
    popularity : float >= 0
        :math:`a`, the Zipf exponent.
    min_per_user : int in [2, n_items]
        :math:`m`: every user rated at least this many items (one or more for training, one for test).
    test_fraction : float in (0, 1)
        :math:`f`.
    seed : int >= 0
    """
    n_users = valid.integer("n_users", n_users, minimum=2)
    n_items = valid.integer("n_items", n_items, minimum=2)
    rank = valid.integer("rank", rank, minimum=1, maximum=min(n_users, n_items))
    density = _unit("density", density, closed=True)
    noise = valid.positive_float("noise", noise, allow_zero=True)
    popularity = valid.positive_float("popularity", popularity, allow_zero=True)
    min_per_user = valid.integer("min_per_user", min_per_user, minimum=2, maximum=n_items)
    test_fraction = _unit("test_fraction", test_fraction, closed=False)
    seed = valid.integer("seed", seed, minimum=0)

    scale = rank ** -0.25                                     # entries' std: k^(-1/4), so u.v has variance 1
    item_rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(_ITEMS,)))
    V = item_rng.normal(0.0, scale, size=(n_items, rank))
    p = (np.arange(n_items) + 1.0) ** -popularity
    p /= p.sum()
    U = np.empty((n_users, rank))
    values = np.empty((n_users, n_items))
    train = np.zeros((n_users, n_items), dtype=bool)
    test = np.zeros((n_users, n_items), dtype=bool)
    for u in range(n_users):
        rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(_USERS, u)))
        U[u] = rng.normal(0.0, scale, size=rank)
        values[u] = np.clip(3.0 + V @ U[u] + noise * rng.normal(size=n_items), 1.0, 5.0)
        n_u = max(min_per_user, int(rng.binomial(n_items, density)))
        items = rng.choice(n_items, size=n_u, replace=False, p=p)
        n_test = min(n_u - 1, max(1, int(round(test_fraction * n_u))))
        test[u, items[:n_test]] = True                        # the draw is in random order: its head is random
        train[u, items[n_test:]] = True
    for a in (values, train, test, U, V, p):
        a.setflags(write=False)
    return Ratings(values=values, train=train, test=test, user_factors=U, item_factors=V, popularity=p)


def _unit(name: str, value, *, closed: bool) -> float:
    """A float in (0, 1] (``closed``) or (0, 1)."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, float, np.floating, np.integer)):
        raise TypeError(f"{name} must be a real number, got {value!r} ({type(value).__name__})")
    value = float(value)
    if not (0.0 < value < 1.0 or (closed and value == 1.0)):
        raise ValueError(f"{name} must be in (0, 1{']' if closed else ')'}, got {value!r}")
    return value


def _ratings(ratings) -> Ratings:
    if not isinstance(ratings, Ratings):
        raise TypeError(f"ratings must be a Ratings object from make_ratings, got {type(ratings).__name__}")
    return ratings


# --------------------------------------------------------------------------- the model

def init_factors(n_users: int, n_items: int, rank: int, *, scale: float = 0.1,
                 seed: int) -> tuple[np.ndarray, np.ndarray]:
    r"""Starting embeddings :math:`U_0, V_0` with entries :math:`\mathcal N(0, s^2)`.

    :math:`V_0` from ``SeedSequence(seed, spawn_key=(0,))`` (the server's), user :math:`u`'s row of
    :math:`U_0` from ``SeedSequence(seed, spawn_key=(1, u))`` (drawn on its phone). Neither may be
    zero: at :math:`U = 0` every item gradient is zero, at :math:`V = 0` every user gradient.
    """
    n_users = valid.integer("n_users", n_users, minimum=1)
    n_items = valid.integer("n_items", n_items, minimum=1)
    rank = valid.integer("rank", rank, minimum=1)
    scale = valid.positive_float("scale", scale)
    seed = valid.integer("seed", seed, minimum=0)
    V = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(_ITEMS,))).normal(0.0, scale, (n_items, rank))
    U = np.array([np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(_USERS, u))).normal(0.0, scale, rank)
                  for u in range(n_users)]).reshape(n_users, rank)
    return U, V


def predict(U, V, *, mean: float) -> np.ndarray:
    r"""Every predicted rating, :math:`\hat R = \mu + U V^\top`, shape (n_users, n_items)."""
    return mean + np.asarray(U, dtype=np.float64) @ np.asarray(V, dtype=np.float64).T


def _errors(U, V, ratings: Ratings, mask, users=slice(None)) -> np.ndarray:
    """:math:`e_{ui}` of the rows ``users`` (``U`` holds those rows) on ``mask``, 0 elsewhere."""
    return np.where(mask, ratings.values[users] - predict(U, V, mean=ratings.mean), 0.0)


def loss(U, V, ratings: Ratings, *, reg: float) -> float:
    r"""The loss on the training entries.

    :math:`L(U, V) = \sum_{\Omega} e_{ui}^2 + \lambda(\lVert U\rVert_F^2 + \lVert V\rVert_F^2)`.
    """
    ratings = _ratings(ratings)
    U, V = _factors(U, V, ratings)
    reg = valid.positive_float("reg", reg, allow_zero=True)
    return float(np.sum(_errors(U, V, ratings, ratings.train) ** 2) + reg * (np.sum(U * U) + np.sum(V * V)))


def gradients(U, V, ratings: Ratings, *, reg: float) -> tuple[np.ndarray, np.ndarray]:
    r"""The gradients :math:`(\nabla_U L, \nabla_V L)`.

    :math:`-2 E V + 2\lambda U` and :math:`-2 E^\top U + 2\lambda V`, :math:`E` the errors
    :math:`e_{ui}` on :math:`\Omega` and 0 elsewhere.
    """
    ratings = _ratings(ratings)
    U, V = _factors(U, V, ratings)
    reg = valid.positive_float("reg", reg, allow_zero=True)
    E = _errors(U, V, ratings, ratings.train)
    return -2.0 * E @ V + 2.0 * reg * U, -2.0 * E.T @ U + 2.0 * reg * V


def item_gradients(U, V, ratings: Ratings, users=None) -> np.ndarray:
    r"""What each user sends in the plain protocol: :math:`G_u[i] = -2\,e_{ui}\,\mathbf u_u\,[i \in \Omega_u]`.

    Shape (len(users), n_items, rank) (all users by default). :math:`\sum_u G_u + 2\lambda V` is
    :math:`\nabla_V L`: the regularisation is the server's part.
    """
    ratings = _ratings(ratings)
    U, V = _factors(U, V, ratings)
    if users is None:
        users = np.arange(ratings.n_users)
    else:
        users = np.atleast_1d(np.asarray(users))
        if users.ndim != 1 or not np.issubdtype(users.dtype, np.integer) \
                or np.any((users < 0) | (users >= ratings.n_users)):
            raise ValueError(f"users must be a 1-D list of integers in [0, {ratings.n_users - 1}], "
                             f"got {users.tolist()!r}")
    E = _errors(U[users], V, ratings, ratings.train[users], users)
    return -2.0 * E[:, :, None] * U[users][:, None, :]


def rmse(U, V, ratings: Ratings, *, subset: str = "test") -> float:
    r"""Root mean squared error :math:`\sqrt{\frac1{|T|}\sum_{(u,i)\in T}(r_{ui} - \hat r_{ui})^2}` on ``subset``."""
    ratings = _ratings(ratings)
    U, V = _factors(U, V, ratings)
    mask = ratings._mask(subset)
    return float(np.sqrt(np.sum(_errors(U, V, ratings, mask) ** 2) / mask.sum()))


def baseline_rmse(ratings: Ratings, *, kind: str = "item mean", subset: str = "test") -> float:
    r"""RMSE of a model without embeddings: ``"global mean"`` predicts :math:`\mu`; ``"item mean"``
    predicts each item's mean training rating (:math:`\mu` for an item nobody rated), the
    popularity baseline."""
    ratings = _ratings(ratings)
    kind = valid.choice("kind", kind, ("global mean", "item mean"))
    mask = ratings._mask(subset)
    pred = np.full(ratings.n_items, ratings.mean)
    if kind == "item mean":
        counts = ratings.train.sum(axis=0)
        sums = np.where(ratings.train, ratings.values, 0.0).sum(axis=0)
        pred = np.where(counts > 0, sums / np.maximum(counts, 1), ratings.mean)
    err = np.where(mask, ratings.values - pred[None, :], 0.0)
    return float(np.sqrt(np.sum(err ** 2) / mask.sum()))


def _factors(U, V, ratings: Ratings) -> tuple[np.ndarray, np.ndarray]:
    U = np.asarray(U, dtype=np.float64)
    V = np.asarray(V, dtype=np.float64)
    if U.ndim != 2 or U.shape[0] != ratings.n_users:
        raise ValueError(f"U must have shape (n_users, rank) = ({ratings.n_users}, rank), got {U.shape}")
    if V.shape != (ratings.n_items, U.shape[1]):
        raise ValueError(f"V must have shape (n_items, rank) = ({ratings.n_items}, {U.shape[1]}), got {V.shape}")
    return U, V


# --------------------------------------------------------------------------- training

@dataclass
class MFHistory:
    r"""The record of a matrix-factorisation run.

    ``U``, ``V``: the final embeddings (the last finite ones if the run diverged); ``losses``
    (R + 1,): :math:`L` before round 1 and after each round; ``train_rmse``, ``test_rmse`` likewise.
    Federated runs also keep ``selected`` (each round's users), ``received``: ``{round: array (|S_t|,
    n_items, rank)}``, the message of each selected user *as the server saw it* (what the
    aggregator got, or the masked input under secure aggregation) for the rounds in
    ``keep_received``, ``bytes_up`` per round (messages and weights, as :func:`fl_helpers.train`
    measures them) and ``history``, the :class:`fl_helpers.History` of the ``train`` run.
    """

    U: np.ndarray
    V: np.ndarray
    losses: np.ndarray
    train_rmse: np.ndarray
    test_rmse: np.ndarray
    diverged_at: int | None = None
    selected: list = field(default_factory=list)
    received: dict = field(default_factory=dict)
    bytes_up: np.ndarray | None = None
    history: object = None

    @property
    def rounds(self) -> int:
        return len(self.losses) - 1

    @property
    def diverged(self) -> bool:
        return self.diverged_at is not None

    @property
    def message(self) -> str:
        if self.diverged:
            return f"diverged at round {self.diverged_at}: learning rate too large for this data"
        return f"{self.rounds} rounds, final loss {self.losses[-1]:.6g}, test RMSE {self.test_rmse[-1]:.4f}"


class _Recorder:
    def __init__(self, ratings, reg):
        self.ratings, self.reg = ratings, reg
        self.losses, self.train, self.test = [], [], []

    def record(self, U, V) -> bool:
        """Record the model; False (and nothing recorded) if it is not finite or blew up."""
        value = loss(U, V, self.ratings, reg=self.reg) if np.all(np.isfinite(U)) and np.all(np.isfinite(V)) \
            else np.inf
        if not np.isfinite(value) or (self.losses and value > 1e6 * self.losses[0]):
            return False
        self.losses.append(value)
        self.train.append(rmse(U, V, self.ratings, subset="train"))
        self.test.append(rmse(U, V, self.ratings, subset="test"))
        return True

    def history(self, U, V, diverged_at, **extra) -> MFHistory:
        return MFHistory(U=U, V=V, losses=np.array(self.losses), train_rmse=np.array(self.train),
                         test_rmse=np.array(self.test), diverged_at=diverged_at, **extra)


def _start(ratings, rank, lr, rounds, reg, init, seed, *, rounds_name="rounds"):
    ratings = _ratings(ratings)
    rank = valid.integer("rank", rank, minimum=1)
    lr = valid.positive_float("lr", lr)
    rounds = valid.integer(rounds_name, rounds, minimum=0)
    reg = valid.positive_float("reg", reg, allow_zero=True)
    seed = valid.integer("seed", seed, minimum=0)
    if init is None:
        U, V = init_factors(ratings.n_users, ratings.n_items, rank, seed=seed)
    else:
        try:
            U, V = init
        except (TypeError, ValueError):
            raise TypeError(f"init must be None or a pair (U0, V0), got {type(init).__name__}") from None
        U, V = _factors(U, V, ratings)
        if U.shape[1] != rank:
            raise ValueError(f"init must have rank={rank} columns, got U0 of shape {U.shape}")
    return ratings, rank, lr, rounds, reg, seed, U.copy(), V.copy()


def centralized_mf(ratings: Ratings, *, rank: int, lr: float, rounds: int, reg: float = 0.1, init=None,
                   seed: int = 0) -> MFHistory:
    r"""Full-batch gradient descent on :math:`L` with all ratings in one place (the baseline).

    :math:`U \leftarrow U - \eta\nabla_U L,\ V \leftarrow V - \eta\nabla_V L`, both gradients at the
    old :math:`(U, V)` (:func:`gradients`). ``init``: ``(U0, V0)``, default :func:`init_factors`
    with ``seed``.
    """
    ratings, rank, lr, rounds, reg, seed, U, V = _start(ratings, rank, lr, rounds, reg, init, seed)
    rec = _Recorder(ratings, reg)
    rec.record(U, V)
    for t in range(1, rounds + 1):
        gU, gV = gradients(U, V, ratings, reg=reg)
        newU, newV = U - lr * gU, V - lr * gV
        if not rec.record(newU, newV):
            return rec.history(U, V, t)
        U, V = newU, newV
    return rec.history(U, V, None)


def als(ratings: Ratings, *, rank: int, sweeps: int, reg: float = 0.1, init=None, seed: int = 0) -> MFHistory:
    r"""Alternating least squares on :math:`L` (centralized): each sweep solves exactly for every
    :math:`\mathbf u_u` with :math:`V` fixed, then for every :math:`\mathbf v_i` with :math:`U` fixed:
    :math:`\mathbf u_u = (\sum_{i\in\Omega_u}\mathbf v_i\mathbf v_i^\top + \lambda I)^{-1}\sum_{i\in\Omega_u}
    (r_{ui} - \mu)\mathbf v_i` (Hu, Koren and Volinsky 2008; Zhou et al. 2008). The loss never increases.
    """
    ratings, rank, _, sweeps, reg, seed, U, V = _start(ratings, rank, 1.0, sweeps, reg, init, seed,
                                                              rounds_name="sweeps")
    rec = _Recorder(ratings, reg)
    rec.record(U, V)
    R = np.where(ratings.train, ratings.values - ratings.mean, 0.0)
    eye = reg * np.eye(rank)
    for _ in range(sweeps):
        U = np.array([np.linalg.solve(V[m].T @ V[m] + eye, V[m].T @ R[u, m])
                      for u, m in enumerate(ratings.train)])
        V = np.array([np.linalg.solve(U[m].T @ U[m] + eye, U[m].T @ R[m, i])
                      for i, m in enumerate(ratings.train.T)])
        rec.record(U, V)
    return rec.history(U, V, None)


class PhoneEngine:
    r"""Block 2 of federated MF, an engine object for :func:`fl_helpers.train`: the users' phones.

    Phone :math:`u` holds its training ratings and its embedding :math:`\mathbf u_u` (row :math:`u`
    of ``U``, state that stays on the phone across rounds; Ammad-ud-din et al. 2019). Given the
    broadcast :math:`\theta = V` (flattened), each selected user computes its message :math:`G_u`
    (:func:`item_gradients`, plus the fake-item rows when ``fake_items`` > 0) at the
    :math:`(\mathbf u_u, V)` it holds, then takes ``epochs`` steps :math:`\mathbf u_u \leftarrow
    \mathbf u_u - \eta\nabla_{\mathbf u_u}L` with :math:`V` fixed; it sends :math:`G_u` (flattened)
    with weight 1. Each :func:`fl_helpers.train` run continues from the embeddings the phones hold.

    ``parties``: one :class:`fl_helpers.Party` per user holding its training (item, rating) rows
    (``X``: the item indices, one column; ``y``: the ratings); their ``model`` plays no part, as the
    engine says what the model is (:meth:`initial_theta`, the two seams of :func:`fl_helpers.train`).
    ``party_losses`` and the losses the local work returns (every user's, before its steps) are the
    per-rating loss :math:`\ell_u = (\sum_{i\in\Omega_u} e_{ui}^2 + \lambda\lVert\mathbf u_u\rVert^2) / |\Omega_u|
    + \lambda\lVert V\rVert_F^2 / |\Omega|`, so that ``train``'s global loss
    :math:`\sum_u \frac{|\Omega_u|}{|\Omega|}\ell_u` is :math:`L / |\Omega|`.

    Parameters
    ----------
    ratings : Ratings
    U0 : array (n_users, rank)
        The embeddings the phones start with.
    reg : float >= 0
        :math:`\lambda`.
    fake_items : int in [0, n_items]
        FedRec's fake items per message (see :func:`federated_mf`).
    """

    name = "phones"
    device = "CPU (numpy, every phone's work at once)"
    dtype = np.dtype(np.float64)
    model = None                     # the model is the engine's: theta = V, and U on the phones

    def __init__(self, ratings: Ratings, U0, *, reg: float, fake_items: int = 0):
        self.ratings = _ratings(ratings)
        U0 = np.array(U0, dtype=np.float64)
        if U0.ndim != 2 or U0.shape[0] != self.ratings.n_users:
            raise ValueError(f"U0 must have shape (n_users, rank) = ({self.ratings.n_users}, rank), got {U0.shape}")
        self.U = U0
        self.reg = valid.positive_float("reg", reg, allow_zero=True)
        self.fake_items = valid.integer("fake_items", fake_items, minimum=0, maximum=self.ratings.n_items)
        train = self.ratings.train
        self._R0 = np.where(train, self.ratings.values - self.ratings.mean, 0.0)     # r_ui - mu on the phones
        self._counts = train.sum(axis=1)
        self._user_mean = self._R0.sum(axis=1) / self._counts                         # FedRec's virtual rating - mu
        self.parties = tuple(Party(np.flatnonzero(row)[:, None].astype(np.float64), self.ratings.values[u, row],
                                   name=f"user {u}") for u, row in enumerate(train))

    def __repr__(self) -> str:
        return (f"PhoneEngine(n_users={self.ratings.n_users}, n_items={self.ratings.n_items}, "
                f"rank={self.U.shape[1]}, fake_items={self.fake_items})")

    def initial_theta(self, theta0) -> np.ndarray:
        """The server's starting :math:`V_0`, flattened: ``theta0`` checked (there is no default)."""
        n, k = self.ratings.n_items, self.U.shape[1]
        if theta0 is None:
            raise ValueError(f"theta0 must be the starting item embeddings V0, {n} x {k} = {n * k} numbers: "
                             f"a PhoneEngine has no default")
        theta = valid.as_vector(np.ravel(theta0), name="theta0")
        if theta.size != n * k:
            raise ValueError(f"theta0 must hold V0 of shape ({n}, {k}), {n * k} numbers, got {theta.size}")
        return theta

    def local_work(self, theta, selected, *, lr, epochs, batch_size=None, seed=None, round=1,
                   **options) -> LocalWork:
        if batch_size is not None:
            raise ValueError(f"batch_size must be None for federated MF (full-batch steps on u_u), got {batch_size!r}")
        if options:
            raise ValueError(f"PhoneEngine has no {', '.join(sorted(options))} (FedProx, stragglers, SCAFFOLD)")
        S = np.asarray(selected)
        V = np.asarray(theta, dtype=np.float64).reshape(self.ratings.n_items, -1)
        losses = self._losses(self.U, V)                  # every phone's loss at what it holds, before its steps
        train, R0 = self.ratings.train[S], self._R0[S]
        G = _local_item_gradients(self.U[S], V, train, R0)                       # the message ...
        if self.fake_items:
            G = G + _fake_rows(self.U[S], V, train, self._user_mean[S], S, self.fake_items, seed, round)
        newU = self.U.copy()                                                     # ... and the embedding's steps
        for _ in range(epochs):
            E = np.where(train, R0 - newU[S] @ V.T, 0.0)
            newU[S] = newU[S] - lr * (-2.0 * E @ V + 2.0 * self.reg * newU[S])
        self.U = newU
        return LocalWork(G.reshape(len(S), -1).astype(self.dtype, copy=False), np.ones(len(S)), losses)

    def party_losses(self, theta) -> np.ndarray:
        return self._losses(self.U, np.asarray(theta, dtype=np.float64).reshape(self.ratings.n_items, -1))

    def _losses(self, U, V) -> np.ndarray:
        E = np.where(self.ratings.train, self._R0 - U @ V.T, 0.0)
        return (np.sum(E * E, axis=1) + self.reg * np.sum(U * U, axis=1)) / self._counts \
            + self.reg * np.sum(V * V) / self._counts.sum()


class ItemServer:
    r"""Block 4 of federated MF, a ``server_optimizer`` for :func:`fl_helpers.train`.

    With :math:`\Delta_t = -\eta\bar G` (``train``'s average model change, :math:`\bar G` the mean
    message): :math:`V \leftarrow V + N\Delta_t - 2\eta\lambda V = V - \eta\,(N\bar G + 2\lambda V)`.
    :math:`N\bar G` estimates :math:`\sum_u G_u` from the sampled users, and the server adds the
    penalty's gradient :math:`2\lambda V` itself. No state.
    """

    name = "item server"

    def __init__(self, n_users: int, *, lr: float, reg: float):
        self.n_users = valid.integer("n_users", n_users, minimum=1)
        self.lr = valid.positive_float("lr", lr)
        self.reg = valid.positive_float("reg", reg, allow_zero=True)

    def __repr__(self) -> str:
        return f"ItemServer(n_users={self.n_users}, lr={self.lr}, reg={self.reg})"

    def init(self, theta) -> None:
        return None

    def step(self, theta, delta, state):
        return theta + self.n_users * delta - 2.0 * self.lr * self.reg * theta, state


def federated_mf(ratings: Ratings, *, rank: int, lr: float, rounds: int, reg: float = 0.1, local_epochs: int = 1,
                 fraction: float = 1.0, fake_items: int = 0, client_transform: Callable | None = None,
                 aggregator: Callable | None = None, init=None, seed: int = 0,
                 keep_received: Iterable[int] = (1,)) -> MFHistory:
    r"""Federated matrix factorisation: ratings and :math:`\mathbf u_u` stay on user :math:`u`'s phone.

    :func:`fl_helpers.train` runs the rounds on :math:`\theta = V` (see the module docstring), with
    the local work of a :class:`PhoneEngine` and the server update of :class:`ItemServer`. Round
    :math:`t`: the sampled users :math:`S_t` (``fraction`` of them, stream ``"sampling"``) receive
    :math:`V`; each computes :math:`G_u` (:func:`item_gradients`) at its current :math:`\mathbf u_u`,
    then takes ``local_epochs`` steps :math:`\mathbf u_u \leftarrow \mathbf u_u - \eta\nabla_{\mathbf
    u_u}L` with :math:`V` fixed; ``client_transform(update, *, party, round, rng)`` may change the
    flattened :math:`G_u` (stream ``"transform"``); ``aggregator(updates, weights, *, rng)`` (weights
    :math:`1/|S_t|`; default :func:`fl_helpers.weighted_sum`) gives their mean :math:`\bar G`; the
    server sets :math:`V \leftarrow V - \eta\,(N \bar G + 2\lambda V)`.

    ``fake_items`` :math:`F`: each user also sends rows for :math:`F` items it did not rate (drawn
    per round from the ``"local"`` stream keyed by (seed, t, u)) computed with its mean training
    rating as a virtual rating (FedRec's filling, Lin et al. 2020); they change :math:`V`, not
    :math:`\mathbf u_u`.

    With ``fraction=1``, ``local_epochs=1``, no fake items and the default hooks, the run is
    :func:`centralized_mf` up to the order of floating-point sums.

    Parameters
    ----------
    ratings : Ratings
        From :func:`make_ratings`; user :math:`u` holds row :math:`u` of it.
    rank : int >= 1
        :math:`k`, the embeddings' width.
    lr : float > 0
        :math:`\eta`, for both the users' steps and the server's.
    rounds : int >= 0
    reg : float >= 0
        :math:`\lambda`.
    local_epochs : int >= 1
        :math:`E`, gradient steps on :math:`\mathbf u_u` per round a user takes part in.
    fraction : float in (0, 1]
        :math:`C`, the share of users sampled per round.
    fake_items : int in [0, n_items]
        :math:`F`, fake items per message (capped by the items a user left unrated).
    client_transform, aggregator : callable or None
        The hooks of :func:`fl_helpers.train` (e.g. :class:`fl_helpers.privacy.LocalGaussian`,
        :class:`fl_helpers.secagg.SecureAggregator`).
    init : (U0, V0) or None
        Default :func:`init_factors` with ``seed``.
    seed : int >= 0
    keep_received : iterable of int >= 1, or one int
        The rounds whose messages (as the server saw them) are kept in ``received``.

    Returns
    -------
    MFHistory
        ``losses``, ``train_rmse`` and ``test_rmse`` come from ``train``'s ``metrics``, ``selected``
        and ``bytes_up`` (messages and weights) from its History, kept as ``history``.
    """
    ratings, rank, lr, rounds, reg, seed, U, V = _start(ratings, rank, lr, rounds, reg, init, seed)
    local_epochs = valid.integer("local_epochs", local_epochs, minimum=1)
    fraction = valid.fraction(fraction)
    fake_items = valid.integer("fake_items", fake_items, minimum=0, maximum=ratings.n_items)
    for name, hook in (("client_transform", client_transform), ("aggregator", aggregator)):
        if hook is not None and not callable(hook):
            raise TypeError(f"{name} must be callable or None, got {type(hook).__name__}")
    if isinstance(keep_received, (int, np.integer)):
        keep_received = (keep_received,)
    try:
        keep = {valid.integer("keep_received", t, minimum=1) for t in keep_received}
    except TypeError as err:
        if "keep_received" in str(err):
            raise
        raise TypeError(f"keep_received must be an iterable of round numbers >= 1, got "
                        f"{type(keep_received).__name__}") from None
    phones = PhoneEngine(ratings, U, reg=reg, fake_items=fake_items)
    watch = _Watch(phones, aggregator if aggregator is not None else weighted_sum, keep)
    h = train(phones.parties, lr=lr, rounds=rounds, local_epochs=local_epochs, fraction=fraction,
              theta0=V.ravel(), seed=seed, engine=phones, server_optimizer=ItemServer(ratings.n_users, lr=lr, reg=reg),
              client_transform=client_transform, aggregator=aggregator, metrics=watch.metrics)
    done = h.rounds                                   # the rounds recorded: all, or those before the divergence
    first = [loss(U, V, ratings, reg=reg), rmse(U, V, ratings, subset="train"), rmse(U, V, ratings, subset="test")]
    series = [np.concatenate([[x], h.metrics.get(name, np.zeros(0))])
              for x, name in zip(first, watch.metrics, strict=True)]
    return MFHistory(U=watch.U[done], V=h.theta.reshape(V.shape), losses=series[0], train_rmse=series[1],
                     test_rmse=series[2], diverged_at=h.diverged_at, selected=h.selected,
                     received={t: m for t, m in watch.received.items() if t <= done}, bytes_up=h.bytes_up,
                     history=h)


class _Watch:
    """``train``'s ``metrics`` for federated MF, at the phones' U and the server's V after each round.

    Also keeps the embeddings of the last two rounds (a run that diverges in round t ends with those
    of round t - 1) and the messages as the server saw them in the rounds of ``keep``.
    """

    def __init__(self, phones: PhoneEngine, aggregator, keep):
        self.phones, self.aggregator, self.keep = phones, aggregator, keep
        self.U = {0: phones.U.copy()}
        self.received: dict = {}
        ratings, reg = phones.ratings, phones.reg
        self.metrics = {"loss": lambda info: loss(self._seen(info), self._V(info), ratings, reg=reg),
                        "train_rmse": lambda info: rmse(phones.U, self._V(info), ratings, subset="train"),
                        "test_rmse": lambda info: rmse(phones.U, self._V(info), ratings, subset="test")}

    def _V(self, info) -> np.ndarray:
        return info.new_theta.reshape(self.phones.ratings.n_items, -1)

    def _seen(self, info) -> np.ndarray:
        t, U = info.round, self.phones.U
        self.U[t] = U.copy()
        self.U.pop(t - 2, None)
        if t in self.keep:
            shape = (len(info.selected), self.phones.ratings.n_items, U.shape[1])
            self.received[t] = _server_view(self.aggregator, info.updates).reshape(shape)
        return U


def _local_item_gradients(U_S, V, train_S, R0_S) -> np.ndarray:
    E = np.where(train_S, R0_S - U_S @ V.T, 0.0)
    return -2.0 * E[:, :, None] * U_S[:, None, :]


def _fake_rows(U_S, V, train_S, mean_S, S, count, seed, t) -> np.ndarray:
    """Rows for ``count`` unrated items per user, with the user's mean rating as the virtual rating."""
    out = np.zeros((len(S), V.shape[0], V.shape[1]))
    for q, u in enumerate(S):
        unrated = np.flatnonzero(~train_S[q])
        fake = randomness.generator(seed, "local", t, int(u)).choice(unrated, size=min(count, unrated.size),
                                                                      replace=False)
        e = mean_S[q] - V[fake] @ U_S[q]
        out[q, fake] = -2.0 * e[:, None] * U_S[q][None, :]
    return out


def _server_view(aggregate, dense) -> np.ndarray:
    """What the server saw of each message: the masked inputs under secure aggregation, else the messages."""
    last = getattr(aggregate, "last", None)
    masked = getattr(getattr(last, "transcript", None), "masked", None)
    if masked is None:
        return np.array(dense, copy=True)
    from .secagg import decode
    rows = [decode(masked[q], scale_bits=last.scale_bits, modulus_bits=last.modulus_bits) for q in sorted(masked)]
    return np.array(rows)


# --------------------------------------------------------------------------- the leak

def guess_rated(message, *, top: int | None = None, threshold: float = 0.0) -> np.ndarray:
    r"""The server's guess of the items a user rated, from its message :math:`G_u` (n_items, rank).

    Default: the rows with norm above ``threshold`` (0: the nonzero rows). ``top``: the ``top``
    rows of largest norm instead (an attacker who knows how many items the user rated).
    Returns a boolean mask (n_items,).
    """
    G = np.asarray(message, dtype=np.float64)
    if G.ndim != 2:
        raise ValueError(f"message must be a 2-D array (n_items, rank), got shape {G.shape}")
    norms = np.linalg.norm(G, axis=1)
    if top is None:
        threshold = valid.positive_float("threshold", threshold, allow_zero=True)
        return norms > threshold
    top = valid.integer("top", top, minimum=0, maximum=G.shape[0])
    guess = np.zeros(G.shape[0], dtype=bool)
    guess[np.argsort(-norms, kind="stable")[:top]] = True
    return guess


def precision_recall(guess, truth) -> tuple[float, float]:
    r"""Precision :math:`|g \cap r| / |g|` and recall :math:`|g \cap r| / |r|` of a guessed set (masks).

    An empty guess has precision 1 by convention (it claims nothing false).
    """
    g = np.asarray(guess, dtype=bool)
    r = np.asarray(truth, dtype=bool)
    if g.shape != r.shape:
        raise ValueError(f"guess and truth must have the same shape, got {g.shape} and {r.shape}")
    hit = np.sum(g & r)
    return (float(hit / g.sum()) if g.sum() else 1.0), (float(hit / r.sum()) if r.sum() else 1.0)


def leak(history: MFHistory, ratings: Ratings, *, round: int = 1, top: str | None = None) -> tuple[float, float]:
    r"""Mean precision and recall, over the users of ``round``, of the server's guess of their rated items.

    ``top=None``: :func:`guess_rated`'s nonzero rows; ``top="count"``: the :math:`|\Omega_u|`
    rows of largest norm (the attacker knows how many items each user rated).
    """
    ratings = _ratings(ratings)
    if round not in history.received:
        raise ValueError(f"round must be one of the kept rounds {sorted(history.received)}, got {round!r} "
                         f"(pass keep_received=(..., {round}) to federated_mf)")
    if top not in (None, "count"):
        raise ValueError(f"top must be None or 'count', got {top!r}")
    pr = []
    for u, message in zip(history.selected[round - 1], history.received[round], strict=True):
        truth = ratings.train[u]
        pr.append(precision_recall(guess_rated(message, top=int(truth.sum()) if top else None), truth))
    return tuple(np.mean(pr, axis=0).tolist())
