r"""Byzantine parties (拜占庭参与方): attacks on federated learning, for testing robust aggregation.

A chosen set of ``attackers`` (party indices, as in ``parties[i]``) misbehaves
in every round it takes part in; everybody else is honest. Three kinds of
attack, each plugged into the seam where it acts:

Client transforms (``fl.train(..., client_transform=...)``), on the attacker's side
    :class:`SignFlip` sends :math:`-c\,\Delta_i`; :class:`Scale` sends
    :math:`c\,\Delta_i` (boosting, as in model replacement: Bagdasaryan et al.
    2020); :class:`GaussianNoise` adds :math:`\mathcal N(0, \sigma^2 I)` to its update, or sends
    pure noise (``replace=True``, Blanchard et al. 2017's "Gaussian" Byzantine
    workers), from the party's own random stream, so runs are reproducible.
A data attack, before training
    :func:`flip_labels`: the attackers train honestly on labels
    :math:`y \mapsto K - 1 - y` (Tolpegin et al. 2020, "Data Poisoning Attacks
    Against Federated Learning Systems", flip one class to another; this flips all).
Colluding attacks that need everybody's updates: aggregator wrappers
    :class:`Alie` ("A Little Is Enough", Baruch, Baruch and Goldberg 2019) and
    :class:`Ipm` (inner-product manipulation, Xie, Koyejo and Gupta 2020, "Fall
    of Empires"). Both are crafted from the *benign* updates of the round: the
    attackers are omniscient and collude, which is the threat model robust rules
    are meant to survive. A client transform sees only its own update, so these
    are written as a wrapper ``Alie(attackers, inner=robust.Krum(2))`` around
    the server's rule: it replaces the attackers' rows of the round's updates
    with the forged vector, then calls the inner rule. That is a simulation
    device, not a claim that the server helps: the forged rows are exactly what
    the colluders would send.

:func:`attack_by_name` builds any of the client transforms and wrappers from a
name, for sweeps in notebooks.
"""

from __future__ import annotations

import numbers
from collections.abc import Iterable
from statistics import NormalDist

import numpy as np

from . import validation as valid
from .aggregation import Aggregate
from .parties import Party, check_parties


def _attackers(attackers) -> frozenset[int]:
    """A set of distinct party indices >= 0 (possibly empty: no attack)."""
    if isinstance(attackers, (str, bytes)) or not isinstance(attackers, (Iterable, np.ndarray)):
        raise TypeError(f"attackers must be a list of party indices (integers >= 0), got {attackers!r}")
    out = []
    for a in np.asarray(list(attackers), dtype=object).ravel():
        if isinstance(a, (bool, np.bool_)) or not isinstance(a, numbers.Integral) or a < 0:
            raise ValueError(f"attackers must be party indices (integers >= 0), got {list(attackers)!r}")
        out.append(int(a))
    if len(set(out)) != len(out):
        raise ValueError(f"attackers must be distinct party indices, got {sorted(out)!r}")
    return frozenset(out)


def _check_in_federation(attackers: frozenset, n_parties: int) -> None:
    if attackers and max(attackers) >= n_parties:
        raise ValueError(f"attackers must be party indices in [0, {n_parties - 1}] of this federation of "
                         f"{n_parties} parties, got {sorted(attackers)!r}")


# --------------------------------------------------------------------------- client transforms


class _PartyAttack:
    """A client transform that changes the update of the attackers only, every round."""

    uses_rng = False

    def __init__(self, attackers):
        self.attackers = _attackers(attackers)

    def _args(self) -> str:
        return ""

    def start(self, theta, n_parties) -> None:
        """Called by ``train`` before round 1: every attacker must be a party of the federation."""
        _check_in_federation(self.attackers, n_parties)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(attackers={sorted(self.attackers)}{self._args()})"

    def __call__(self, update, *, party, round, rng):
        if int(party) not in self.attackers:
            return update
        return self.forge(np.asarray(update, dtype=np.float64), rng)

    def forge(self, update, rng):
        raise NotImplementedError


class SignFlip(_PartyAttack):
    r"""Attackers send :math:`-c\,\Delta_i` (``scale`` :math:`c > 0`, default 1): they push the model uphill.

    ``SignFlip([0, 1], scale=4)``. With :math:`f` of :math:`n` equal-weight
    parties flipping, the mean becomes :math:`(n - f - cf)/n` times the honest
    direction: it reverses once :math:`(1 + c)f > n`.
    """

    uses_rng = False

    def __init__(self, attackers, scale: float = 1.0):
        super().__init__(attackers)
        self.scale = valid.positive_float("scale", scale)

    def _args(self) -> str:
        return f", scale={self.scale!r}"

    def forge(self, update, rng):
        return -self.scale * update


class Scale(_PartyAttack):
    r"""Attackers send :math:`c\,\Delta_i` (boosting; ``factor`` :math:`c > 0`): ``Scale([3], factor=10)``.

    A single boosted update of weight :math:`w_i` moves the mean by
    :math:`(c - 1)w_i\Delta_i`; boosting with :math:`c = 1/w_i` is model
    replacement (Bagdasaryan et al. 2020).
    """

    uses_rng = False

    def __init__(self, attackers, factor: float):
        super().__init__(attackers)
        self.factor = valid.positive_float("factor", factor)

    def _args(self) -> str:
        return f", factor={self.factor!r}"

    def forge(self, update, rng):
        return self.factor * update


class GaussianNoise(_PartyAttack):
    r"""Attackers add noise :math:`\mathcal N(0, \sigma^2 I)` (``std`` :math:`\sigma`): ``GaussianNoise([0], 5)``.

    ``replace=True`` sends the noise alone (Blanchard et al. 2017's Gaussian
    Byzantine workers). The noise comes from the ``rng`` ``train`` passes, the
    party's ``"transform"`` stream keyed by ``(seed, round, party)``: the same
    ``seed`` gives the same attack.
    """

    uses_rng = True

    def __init__(self, attackers, std: float, *, replace: bool = False):
        super().__init__(attackers)
        self.std = valid.positive_float("std", std)
        if not isinstance(replace, bool):
            raise TypeError(f"replace must be True or False, got {replace!r}")
        self.replace = replace

    def _args(self) -> str:
        return f", std={self.std!r}" + (", replace=True" if self.replace else "")

    def forge(self, update, rng):
        if not isinstance(rng, np.random.Generator):
            raise TypeError(f"rng must be a numpy.random.Generator (train passes the party's stream), "
                            f"got {type(rng).__name__}")
        noise = rng.normal(0.0, self.std, size=update.shape)
        return noise if self.replace else update + noise


# --------------------------------------------------------------------------- a data attack


def flip_labels(parties, attackers, n_classes: int | None = None) -> list[Party]:
    r"""New parties in which the ``attackers`` hold flipped labels :math:`y \mapsto K - 1 - y`.

    The attackers then train honestly on poisoned data (a data attack: no
    client transform needed). Classes 0..K-1 are reversed: with :math:`K = 2`,
    0 and 1 swap; with the digits (:math:`K = 10`), 0 <-> 9, 1 <-> 8, ...
    The other parties are returned as they are (a :class:`Party`'s data is
    read-only); features, model and name are kept.

    Parameters
    ----------
    parties : list of Party
        Parties with integer class labels 0..K-1.
    attackers : list of int
        Indices into ``parties``.
    n_classes : int >= 2, optional
        :math:`K`. Default: the model's (2 for ``models.logistic``,
        ``n_classes`` of ``models.softmax(n_classes=K)``), else the largest
        label over all parties + 1.
    """
    parties = check_parties(parties)
    attackers = _attackers(attackers)
    if attackers and max(attackers) >= len(parties):
        raise ValueError(f"attackers must be indices into the {len(parties)} parties, in [0, {len(parties) - 1}], "
                         f"got {max(attackers)}")
    labels = [p.data[1] for p in parties]
    if not all(np.all(y == np.round(y)) and y.min() >= 0 for y in labels):
        raise ValueError("parties must hold class labels (integers >= 0) to flip, got non-integer or negative targets")
    top = int(max(y.max() for y in labels))
    if n_classes is None:
        model = parties[0].model
        if getattr(model, "link", None) == "sigmoid":
            n_classes = 2
        else:
            n_classes = getattr(model, "n_classes", None) or top + 1
    n_classes = valid.integer("n_classes", n_classes, minimum=2)
    if top >= n_classes:
        raise ValueError(f"n_classes must exceed every label (labels go up to {top}), got {n_classes}")
    out = []
    for i, p in enumerate(parties):
        if i in attackers:
            X, y = p.data
            p = Party(X, (n_classes - 1) - y, model=p.model, name=p.name)
        out.append(p)
    return out


# --------------------------------------------------------------------------- colluding attacks


def alie_z(n: int, f: int) -> float:
    r"""Baruch et al. (2019)'s :math:`z_{\max}` for :math:`f` colluders among :math:`n` parties.

    .. math:: s = \lfloor n/2 + 1\rfloor - f, \qquad z_{\max} = \Phi^{-1}\!\left(\frac{n - s}{n}\right)

    :math:`s` is how many honest parties the attackers need on their side for
    a majority; a shift of :math:`z_{\max}` standard deviations still leaves
    :math:`s` honest values, in expectation, farther from the mean than the
    attackers'. (Some re-implementations use :math:`(n - f - s)/(n - f)`; this is
    the paper's.) Needs :math:`1 \le f \le \lfloor n/2\rfloor`, so that
    :math:`1 \le s \le n/2` and :math:`\tfrac12 \le (n - s)/n < 1`: then :math:`z_{\max} \ge 0`.
    """
    n = valid.integer("n", n, minimum=2)
    f = valid.integer("f", f)
    if not 1 <= f <= n // 2:
        raise ValueError(f"f must be an integer in [1, {n // 2}] (at least one and at most n // 2 attackers among "
                         f"n = {n}, so that s = floor(n/2 + 1) - f >= 1) for ALIE's z_max; got {f}")
    s = (n // 2 + 1) - f
    return float(NormalDist().inv_cdf((n - s) / n))


class Roster:
    """Client transform that changes nothing and notes which parties send this round, in order.

    The colluding wrappers read it to find their rows when not every party
    takes part (``fraction < 1``, stragglers): pass ``attack.roster`` as the
    ``client_transform`` of the same ``train`` call.
    """

    uses_rng = False

    def __init__(self):
        self.parties: list[int] = []
        self._round = None

    def __call__(self, update, *, party, round, rng):
        if round != self._round:
            self.parties, self._round = [], round
        self.parties.append(int(party))
        return update

    def take(self) -> list[int]:
        parties, self.parties, self._round = self.parties, [], None
        return parties


class _Colluding:
    """Aggregator wrapper: the attackers' rows become a vector forged from the benign rows, then ``inner`` runs."""

    def __init__(self, attackers, inner=None):
        self.attackers = _attackers(attackers)
        if inner is not None and not callable(inner):
            raise TypeError(f"inner must be an aggregator (callable) or None (the weighted mean), "
                            f"got {type(inner).__name__}")
        self.inner = inner
        self.roster = Roster()
        self.forged_rows = None
        self.updates = None
        self.n_parties = None

    def start(self, theta, n_parties) -> None:
        """Called by ``train`` before round 1: the federation's size, to tell a full round from a sampled one."""
        _check_in_federation(self.attackers, n_parties)
        self.n_parties = int(n_parties)

    def _rows(self, k: int) -> np.ndarray:
        parties = self.roster.take()
        if not parties:                       # no roster: every party sends, row q is party q
            if self.n_parties is not None and k != self.n_parties:
                raise ValueError(f"{type(self).__name__} cannot tell which of this round's {k} updates (of "
                                 f"{self.n_parties} parties) are the attackers': pass "
                                 f"client_transform={type(self).__name__.lower()}.roster to the same train call")
            parties = list(range(k))
        if len(parties) != k:
            raise ValueError(f"the roster noted {len(parties)} parties but the round has {k} updates: pass "
                             f"{type(self).__name__}.roster as the client_transform of the same train call")
        return np.array([p in self.attackers for p in parties], dtype=bool)

    def __call__(self, updates, weights, *, rng=None):
        updates = np.array(updates, dtype=np.float64)
        if updates.ndim != 2:
            raise ValueError(f"updates must be an (n, p) array, one row per party, got shape {updates.shape}")
        bad = self._rows(updates.shape[0])
        if not bad.any() or bad.all():        # no attacker this round, or no benign update to imitate
            bad[:] = False
        else:
            updates[bad] = self.forge(updates[~bad], n=len(bad), f=int(bad.sum()))
        self.forged_rows = np.flatnonzero(bad)
        self.updates = updates
        if self.inner is None:
            w = np.full(len(updates), 1.0) if weights is None else np.asarray(weights, dtype=np.float64)
            return w @ updates / w.sum()
        out = self.inner(updates, weights, rng=rng)
        return out if isinstance(out, Aggregate) else np.asarray(out, dtype=np.float64)

    def metrics(self, info) -> dict:
        return self.inner.metrics(info) if hasattr(self.inner, "metrics") else {}

    def forge(self, benign, *, n, f):
        raise NotImplementedError


class Alie(_Colluding):
    r"""A Little Is Enough (Baruch et al. 2019): every attacker sends :math:`\mu - z\sigma`.

    :math:`\mu` and :math:`\sigma` are the coordinate-wise mean and standard
    deviation (``np.std``, ``ddof=0``) of the round's *benign* updates, and
    :math:`z` is ``z`` or, by default, :func:`alie_z` of the round's
    :math:`n` updates and :math:`f` attackers among them (in a round where the
    attackers hold a majority, :math:`f > n/2`, the paper's formula has no
    answer and they use its largest value, :func:`alie_z` of :math:`\lfloor n/2\rfloor`:
    our choice). The forged vector
    sits inside the honest spread in every coordinate, so the median, the
    trimmed mean and Krum keep it, yet every coordinate is pushed the same way.

    ``Alie([0, 1, 2], inner=robust.Krum(3))`` is an aggregator for
    ``fl.train``: it forges the attackers' rows, then calls ``inner`` (default:
    the weighted mean). It finds the attackers' rows by assuming row ``q`` is
    party ``q``, true when every party takes part in every round; otherwise
    pass ``client_transform=alie.roster`` too. After a call, ``updates`` holds
    the round's updates as the server saw them and ``forged_rows`` the rows
    replaced. ``metrics`` are the inner rule's.
    """

    def __init__(self, attackers, inner=None, z: float | None = None):
        super().__init__(attackers, inner)
        if z is not None:
            if isinstance(z, (bool, np.bool_)) or not isinstance(z, numbers.Real) or not np.isfinite(z):
                raise TypeError(f"z must be a finite real number or None (Baruch et al.'s z_max), got {z!r}")
            z = float(z)
        self.z = z

    def __repr__(self) -> str:
        return f"Alie(attackers={sorted(self.attackers)}, inner={self.inner!r}, z={self.z!r})"

    def forge(self, benign, *, n, f):
        z = alie_z(n, min(f, n // 2)) if self.z is None else self.z
        return benign.mean(axis=0) - z * benign.std(axis=0)


class Ipm(_Colluding):
    r"""Inner-product manipulation (Xie, Koyejo and Gupta 2020): every attacker sends :math:`-\varepsilon\mu`.

    :math:`\mu` is the mean of the round's benign updates. A small
    :math:`\varepsilon` (the paper's 0.1 against Krum) hides among the honest
    updates; a large one (e.g. 100) outvotes the mean. The aggregate's inner
    product with the true gradient turns negative once the rule keeps enough
    of it. Same wiring as :class:`Alie`: ``Ipm([0, 1], inner=robust.Median(), epsilon=0.5)``.
    """

    def __init__(self, attackers, inner=None, epsilon: float = 0.5):
        super().__init__(attackers, inner)
        self.epsilon = valid.positive_float("epsilon", epsilon)

    def __repr__(self) -> str:
        return f"Ipm(attackers={sorted(self.attackers)}, inner={self.inner!r}, epsilon={self.epsilon!r})"

    def forge(self, benign, *, n, f):
        return -self.epsilon * benign.mean(axis=0)


# --------------------------------------------------------------------------- by name

#: Attack names of :func:`attack_by_name` and what they build.
ATTACKS = {"sign_flip": SignFlip, "scale": Scale, "noise": GaussianNoise, "alie": Alie, "ipm": Ipm}


def attack_by_name(name: str, attackers, **options):
    """The attack ``name`` against ``attackers``: ``attack_by_name("scale", [0, 1], factor=10)``.

    ``"sign_flip"``, ``"scale"`` and ``"noise"`` give client transforms
    (:class:`SignFlip`, :class:`Scale`, :class:`GaussianNoise`); ``"alie"`` and
    ``"ipm"`` aggregator wrappers (:class:`Alie`, :class:`Ipm`, with ``inner=``
    the robust rule). ``options`` go to the class. Label flipping changes the
    data, not a round: :func:`flip_labels`.
    """
    if not isinstance(name, str) or name not in ATTACKS:
        raise ValueError(f"name must be one of {', '.join(map(repr, ATTACKS))} (label flipping: flip_labels); "
                         f"got {name!r}")
    return ATTACKS[name](attackers, **options)
