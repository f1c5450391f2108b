r"""Systems heterogeneity: a simulated wall clock, stragglers, and asynchronous federated learning.

Every party runs on a device. Party :math:`i` has a compute cost :math:`c_i` (seconds per sample
per epoch), a network latency :math:`\ell_i` (seconds per message) and a bandwidth :math:`b_i`
(bytes per second), drawn once from named :class:`Distribution` s (:class:`DeviceProfile`) or
written by hand (:class:`Clock`). One *job* of party :math:`i` (receive the model, train, send the
result) takes

.. math::
    T_i = \underbrace{\ell_i + \frac{B_\downarrow}{b_i}}_{\text{download}}
        + \underbrace{c_i\,E\,m_i}_{\text{compute}}
        + \underbrace{\ell_i + \frac{B_\uparrow}{b_i}}_{\text{upload}} + J_{i,k}

seconds: :math:`B_\downarrow` the model's bytes, :math:`B_\uparrow` the update's, :math:`E` local
epochs over :math:`m_i` samples, :math:`J_{i,k} \ge 0` an optional jitter of its :math:`k`-th job.

Three ways to run the server against that clock, each returning a :class:`TimedHistory` (a
:class:`~fl_helpers.History` with a simulated time axis, ``times``):

:func:`sync_fedavg`
    FedAvg's rounds (McMahan et al. 2017). A round lasts until every selected party has
    reported; with a ``deadline`` the server closes it at the deadline and drops the late
    parties (FedAvg's rule), or, ``partial_work=True``, aggregates the epochs each finished in
    time (FedProx's, Li et al. 2020, "Federated Optimization in Heterogeneous Networks").
    It *is* :func:`fl_helpers.train`: the clock only swaps block 2's straggler plan
    (:class:`ClockPlan`, the epochs each selected party finishes in time), the round loop is
    ``train``'s.
:func:`fedasync`
    Xie, Koyejo and Gupta 2019, "Asynchronous Federated Optimization": the server mixes each
    local model in as it arrives, :math:`\theta \leftarrow (1 - \alpha_t)\theta + \alpha_t\theta_i`,
    :math:`\alpha_t = \alpha\,s(\tau)` with :math:`\tau` the update's staleness
    (:func:`staleness_weight`), and the party restarts at once from the new model.
:func:`fedbuff`
    Nguyen et al. 2022, "Federated Learning with Buffered Asynchronous Aggregation": the server
    sums arriving updates (each scaled by :math:`s(\tau)`, by default :math:`1/\sqrt{1 + \tau}`)
    in a buffer and, every ``buffer_size`` :math:`K` of them, applies their mean with a server
    learning rate: :math:`\theta \leftarrow \theta - \eta_s\,\eta\,\frac1K\sum_j s(\tau_j)\Delta_j`.

Staleness :math:`\tau` is the number of server updates applied between the moment a party
received its model and the moment its result is applied (0: fresh).

Why the asynchronous two are not :func:`fl_helpers.train`. ``train``'s unit is the synchronous
round: one broadcast of :math:`\theta_t` to the selected parties, then one aggregate of work that
*all* started from :math:`\theta_t`, then one server update; its straggler plan can only say how
much of this round's work counts. FedAsync and FedBuff have no such round: a party starts from
whatever model is current when it becomes idle, results arrive one at a time, and a server update
applies one result (FedAsync) or ``K`` (FedBuff, the same party possibly twice) computed from
*different*, older models, weighted by their staleness. No round boundary exists at which every
applied result shares one broadcast model, so they keep their own event loop; inside it they use
the same blocks as ``train``: :func:`~fl_helpers.server.broadcast`, the engine's ``local_work``
(the minibatch streams of :mod:`fl_helpers.randomness`, the job number playing the round),
:func:`~fl_helpers.aggregation.weighted_sum` and :func:`~fl_helpers.server.server_update` (FedBuff);
FedAsync's mixing step is its own server update (the paper's rule).

The event engine is :class:`EventQueue`, a ``heapq`` of "party ``i`` finishes at time ``T``"
events. That is the simulation's only event type (a party's next job is scheduled when its last
one is handled), so a priority queue *is* the whole engine: about 30 readable lines, no
dependency. SimPy would add a dependency and a process/generator abstraction we do not need.
Ties leave in the order they were scheduled, so a run is deterministic.

Randomness. The device draws, the jitter and FedBuff's choice of the next party come from
``numpy.random.SeedSequence(seed, spawn_key=(stream, ...))`` (:func:`fl_helpers.randomness.generator`)
with streams of their own, registered in :data:`fl_helpers.randomness.STREAMS` with numbers from
100 (no clash with the round's streams):

=================  ===========================  =====================================================
stream (number)    key                          used for
=================  ===========================  =====================================================
compute (100)      ``(seed, i)``                party ``i``'s seconds per sample
latency (101)      ``(seed, i)``                party ``i``'s latency
bandwidth (102)    ``(seed, i)``                party ``i``'s bandwidth
jitter (103)       ``(seed, k, i)``             the jitter of party ``i``'s ``k``-th job
dispatch (104)     ``(seed, j)``                who starts the ``j``-th new job (concurrency < N)
=================  ===========================  =====================================================

Each device attribute has its own stream, so changing the latency distribution leaves every
party's compute speed as it was. Local work follows the contract of :mod:`fl_helpers.randomness`:
round ``t``'s minibatches of party ``i`` in :func:`sync_fedavg` (exactly as :func:`fl_helpers.fedavg`),
and its ``k``-th job's in the asynchronous runs (the job number plays the round).
"""

from __future__ import annotations

import heapq
import math
import numbers
from dataclasses import dataclass, field
from typing import NamedTuple

import numpy as np

from . import randomness, server
from . import validation as valid
from .aggregation import WEIGHTINGS, weighted_sum
from .engines import make_engine
from .history import History, Recorder
from .parties import check_parties, initial_theta
from .server import broadcast, server_update

#: Spawn-key stream numbers of this module (registered in ``randomness.STREAMS``, from 100).
SYSTEM_STREAMS = {name: randomness.STREAMS[name] for name in ("compute", "latency", "bandwidth", "jitter", "dispatch")}

#: Distribution names and their parameters, in order.
DISTRIBUTIONS = {"constant": ("value",), "exponential": ("mean",), "lognormal": ("median", "sigma"),
                 "pareto": ("minimum", "alpha")}

#: Staleness functions of FedAsync (Xie et al. 2019).
STALENESS = ("constant", "polynomial", "hinge")


# --- distributions and devices ---------------------------------------------------------------------

class Distribution:
    r"""A named distribution of a non-negative quantity (seconds, bytes per second).

    ==================================  ==================================  ======================================
    ``Distribution(...)``               draws                               mean
    ==================================  ==================================  ======================================
    ``("constant", value=v)``           :math:`v`                           :math:`v`
    ``("exponential", mean=\mu)``       :math:`\mathrm{Exp}` of mean \mu    :math:`\mu`
    ``("lognormal", median=m, sigma=s)``  :math:`m\,e^{sZ}`, Z standard normal  :math:`m\,e^{s^2/2}`
    ``("pareto", minimum=x, alpha=a)``  :math:`P(X > u) = (x/u)^a`, u >= x  :math:`ax/(a - 1)` (inf for a <= 1)
    ==================================  ==================================  ======================================

    Lognormal and Pareto are heavy-tailed: a few devices are many times slower than the median.
    """

    __slots__ = ("kind", "params")

    def __init__(self, kind: str, **params):
        valid.choice("kind", kind, DISTRIBUTIONS)
        names = DISTRIBUTIONS[kind]
        if set(params) != set(names):
            raise TypeError(f"a {kind!r} distribution takes {', '.join(names)}; "
                            f"got {', '.join(sorted(params)) or 'no parameter'}")
        self.kind = kind
        self.params = {n: valid.positive_float(n, params[n], allow_zero=n in ("value", "sigma")) for n in names}

    def __repr__(self) -> str:
        return f"{self.kind}({', '.join(f'{k}={v:g}' for k, v in self.params.items())})"

    def __eq__(self, other) -> bool:
        return isinstance(other, Distribution) and (self.kind, self.params) == (other.kind, other.params)

    __hash__ = None

    @property
    def mean(self) -> float:
        """The distribution's mean (``inf`` for a Pareto with ``alpha <= 1``)."""
        p = self.params
        if self.kind == "constant":
            return p["value"]
        if self.kind == "exponential":
            return p["mean"]
        if self.kind == "lognormal":
            return p["median"] * math.exp(p["sigma"] ** 2 / 2)
        return math.inf if p["alpha"] <= 1 else p["alpha"] * p["minimum"] / (p["alpha"] - 1)

    def sample(self, rng: np.random.Generator | None, size=None):
        """Draws from ``rng`` (a constant draws nothing and accepts ``rng=None``)."""
        p = self.params
        if self.kind == "constant":
            return p["value"] if size is None else np.full(size, p["value"])
        if self.kind == "exponential":
            return rng.exponential(p["mean"], size)
        if self.kind == "lognormal":
            return rng.lognormal(math.log(p["median"]), p["sigma"], size)
        return p["minimum"] * (1.0 + rng.pareto(p["alpha"], size))       # numpy's pareto is Lomax: shift by 1


def _as_distribution(name: str, value, *, positive: bool = False) -> Distribution:
    """A :class:`Distribution`, or a number read as a constant (``positive``: a constant must be > 0)."""
    if isinstance(value, Distribution):
        if positive and value.kind == "constant" and value.params["value"] == 0:
            raise ValueError(f"{name} must be positive, got {value!r}")
        return value
    if isinstance(value, numbers.Real) and not isinstance(value, (bool, np.bool_)):
        return Distribution("constant", value=valid.positive_float(name, value, allow_zero=not positive))
    raise TypeError(f"{name} must be a Distribution or a number, got {value!r} ({type(value).__name__})")


def _vector(name: str, value, n: int | None, *, unit: str, positive: bool = False,
            allow_inf: bool = False) -> np.ndarray:
    """One value per party: ``value`` (N,) (``n=None``: it sets N), or a number repeated ``n`` times."""
    arr = valid._as_float_array(name, value)
    if n is None and (arr.ndim != 1 or arr.size == 0):
        raise ValueError(f"{name} must be a 1-D array with one value per party, got shape {arr.shape}")
    if n is not None and arr.ndim == 0:
        arr = np.full(n, float(arr))
    elif n is not None and arr.shape != (n,):
        raise ValueError(f"{name} must be a number or an array with one value per party ({n}), got shape {arr.shape}")
    arr = arr.astype(np.float64, copy=True)
    ok = ((arr > 0) if positive else (arr >= 0)) & (np.isfinite(arr) | (allow_inf & (arr == np.inf)))
    if not ok.all():
        q = int(np.flatnonzero(~ok)[0])
        kind = "positive" if positive else "non-negative"
        raise ValueError(f"{name} must hold {kind} {'' if allow_inf else 'finite '}numbers ({unit}), "
                         f"got {float(arr[q])!r} for party {q}")
    return arr


class Clock:
    r"""The devices of ``N`` parties: the simulated wall clock of a run.

    Parameters
    ----------
    seconds_per_sample : array (N,)
        :math:`c_i`, seconds to process one sample once (an epoch over :math:`m_i` samples takes
        :math:`c_i m_i`). Its length is the number of parties.
    latency : float or array (N,)
        :math:`\ell_i`, seconds every message waits (download and upload each pay it once).
    bandwidth : float, array (N,) or None
        :math:`b_i` in bytes per second; None (or ``inf``): transfers take no time.
    jitter : Distribution or None
        Extra seconds :math:`J_{i,k}` added to each job, drawn from stream ``"jitter"``
        keyed ``(seed, k, i)``.
    seed : int or None
        Keys the jitter (a fresh one when None and there is jitter).
    """

    def __init__(self, seconds_per_sample, *, latency=0.0, bandwidth=None, jitter=None, seed=None):
        self.seconds_per_sample = _vector("seconds_per_sample", seconds_per_sample, None, unit="seconds")
        n = len(self.seconds_per_sample)
        self.latency = _vector("latency", latency, n, unit="seconds")
        self.bandwidth = (np.full(n, np.inf) if bandwidth is None else
                          _vector("bandwidth", bandwidth, n, unit="bytes per second", positive=True, allow_inf=True))
        self.jitter = None if jitter is None else _as_distribution("jitter", jitter)
        self.seed = randomness.root_seed(seed) if self.jitter is not None else valid.seed(seed)
        for a in (self.seconds_per_sample, self.latency, self.bandwidth):
            a.setflags(write=False)

    def __repr__(self) -> str:
        return f"Clock(n_parties={self.n_parties}, jitter={self.jitter!r})"

    @property
    def n_parties(self) -> int:
        return len(self.seconds_per_sample)

    def download(self, parties, nbytes) -> np.ndarray:
        r"""Seconds to receive ``nbytes``: :math:`\ell_i + B/b_i`."""
        parties = np.asarray(parties)
        return self.latency[parties] + nbytes / self.bandwidth[parties]

    def upload(self, parties, nbytes) -> np.ndarray:
        r"""Seconds to send ``nbytes``: :math:`\ell_i + B/b_i` (one message, one latency, as a download)."""
        return self.download(parties, nbytes)

    def compute(self, parties, samples) -> np.ndarray:
        r"""Seconds to process ``samples`` samples (epochs x rows): :math:`c_i \cdot \text{samples}`."""
        return self.seconds_per_sample[np.asarray(parties)] * np.asarray(samples, dtype=np.float64)

    def extra(self, parties, task) -> np.ndarray:
        """Jitter :math:`J_{i,k}` of each party's job number ``task`` (zeros without jitter)."""
        parties = np.atleast_1d(np.asarray(parties))
        if self.jitter is None:
            return np.zeros(parties.shape)
        tasks = np.broadcast_to(np.asarray(task), parties.shape)
        draw = self.jitter.kind != "constant"
        return np.array([self.jitter.sample(randomness.generator(self.seed, "jitter", int(k), int(i)) if draw else None)
                         for i, k in zip(parties, tasks, strict=True)], dtype=np.float64)

    def job_time(self, parties, *, samples, bytes_down, bytes_up, task=1) -> np.ndarray:
        """Seconds of one job of each party: download + compute + upload + jitter (the module's :math:`T_i`)."""
        parties = np.atleast_1d(np.asarray(parties))
        return (self.download(parties, bytes_down) + self.compute(parties, samples)
                + self.upload(parties, bytes_up) + self.extra(parties, task))


@dataclass(frozen=True)
class DeviceProfile:
    """How devices vary: a distribution per attribute, drawn once per party by :meth:`clock`.

    ``compute`` seconds per sample; ``latency`` seconds per message; ``bandwidth`` bytes per second
    (None: instant transfers); ``jitter`` extra seconds per job (None: none). A number stands for a
    constant. Example: ``DeviceProfile(compute=Distribution("lognormal", median=1e-3, sigma=1.0),
    latency=Distribution("exponential", mean=0.05), bandwidth=1e6)``.
    """

    compute: Distribution | float
    latency: Distribution | float = 0.0
    bandwidth: Distribution | float | None = None
    jitter: Distribution | float | None = None

    def __post_init__(self):
        object.__setattr__(self, "compute", _as_distribution("compute", self.compute))
        object.__setattr__(self, "latency", _as_distribution("latency", self.latency))
        if self.bandwidth is not None:
            object.__setattr__(self, "bandwidth", _as_distribution("bandwidth", self.bandwidth, positive=True))
        if self.jitter is not None:
            object.__setattr__(self, "jitter", _as_distribution("jitter", self.jitter))

    def clock(self, n_parties: int, *, seed=None) -> Clock:
        """Draw every party's device: attribute ``a`` of party ``i`` from stream ``a`` keyed ``(seed, i)``."""
        n_parties = valid.integer("n_parties", n_parties, minimum=1)
        root = randomness.root_seed(seed)

        def draw(name, dist):
            if dist.kind == "constant":
                return np.full(n_parties, dist.params["value"])
            return np.array([dist.sample(randomness.generator(root, name, i)) for i in range(n_parties)])

        bandwidth = None if self.bandwidth is None else draw("bandwidth", self.bandwidth)
        return Clock(draw("compute", self.compute), latency=draw("latency", self.latency),
                     bandwidth=bandwidth, jitter=self.jitter, seed=root)


def _clock(profile, n_parties: int, root: int) -> Clock:
    if isinstance(profile, DeviceProfile):
        return profile.clock(n_parties, seed=root)
    if not isinstance(profile, Clock):
        raise TypeError(f"profile must be a DeviceProfile or a Clock, got {type(profile).__name__}")
    if profile.n_parties != n_parties:
        raise ValueError(f"profile must be a Clock for the {n_parties} parties, got one for {profile.n_parties}")
    return profile


# --- the event engine ------------------------------------------------------------------------------

class Event(NamedTuple):
    """Party ``party`` finishes a job at simulated time ``time``; ``job`` is what it computed."""

    time: float
    party: int
    job: object = None


class EventQueue:
    """The discrete-event engine: future events in a binary heap, popped in time order.

    Equal times leave in the order they were pushed (a counter breaks the tie), so a
    simulation is deterministic. ``push`` and ``pop`` cost O(log n).
    """

    def __init__(self):
        self._heap: list = []
        self._pushed = 0

    def push(self, time: float, party: int, job=None) -> None:
        """Schedule: party ``party`` finishes at ``time``."""
        time = valid.positive_float("time", time, allow_zero=True)
        heapq.heappush(self._heap, (time, self._pushed, Event(time, int(party), job)))
        self._pushed += 1

    def pop(self) -> Event:
        """The earliest event, removed from the queue."""
        if not self._heap:
            raise IndexError("pop from an empty EventQueue")
        return heapq.heappop(self._heap)[2]

    def __len__(self) -> int:
        return len(self._heap)


# --- results ---------------------------------------------------------------------------------------

@dataclass(repr=False)
class TimedHistory(History):
    r"""A :class:`~fl_helpers.History` whose rounds are server updates on a simulated clock.

    Row ``r`` of ``thetas``, ``losses``, ``party_losses`` is the model after the ``r``-th server
    update (row 0: the initial model), reached at simulated second ``times[r]``; ``selected[r - 1]``
    lists the parties whose work update ``r`` applied (arrival order; a party can appear twice in a
    FedBuff buffer) and ``staleness[r - 1]`` their staleness. ``contributions[i]`` counts the
    updates of party ``i`` the server applied; ``data_shares`` the share of the applied work that
    came from each party's data, to compare with ``sizes / sizes.sum()``. ``bytes_up[r - 1]`` counts
    the results update ``r`` applied, ``bytes_down[r - 1]`` the models the server sent since update
    ``r - 1`` (update 1's include the first wave).
    """

    times: np.ndarray = field(default_factory=lambda: np.zeros(1))
    staleness: list = field(default_factory=list)
    contributions: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    sizes: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    algorithm: str = ""
    clock: Clock | None = None

    @property
    def data_shares(self) -> np.ndarray:
        r"""Each party's share of the applied work, weighted by its data: :math:`n_i m_i / \sum_j n_j m_j`."""
        w = self.contributions * self.sizes.astype(np.float64)
        return w / w.sum() if w.sum() > 0 else w

    def __repr__(self) -> str:
        return (f"TimedHistory(algorithm={self.algorithm!r}, updates={self.rounds}, "
                f"time={self.times[-1]:.6g}, final_loss={self.losses[-1]:.6g}, diverged_at={self.diverged_at})")


class _Log:
    """The Recorder of one run plus its time axis, staleness and contribution counts."""

    def __init__(self, sizes, eng, theta, algorithm, clock):
        self.rec, self.eng, self.algorithm, self.clock = Recorder(sizes), eng, algorithm, clock
        self.sizes = np.asarray(sizes)
        self.times, self.staleness = [0.0], []
        self.contributions = np.zeros(len(sizes), dtype=np.int64)
        self.rec.record(0, theta, eng.party_losses(theta))

    def record(self, time, theta, *, parties, staleness, bytes_up, bytes_down, metrics=None) -> bool:
        ok = self.rec.record(len(self.times), theta, self.eng.party_losses(theta), bytes_up=bytes_up,
                             bytes_down=bytes_down, selected=np.asarray(parties, dtype=np.int64), metrics=metrics)
        if ok:
            self.times.append(float(time))
            self.staleness.append(np.asarray(staleness, dtype=np.int64))
            np.add.at(self.contributions, np.asarray(parties, dtype=np.int64), 1)
        return ok

    def history(self) -> TimedHistory:
        h = self.rec.history(engine=self.eng.name, device=self.eng.device)
        return TimedHistory(**{f: getattr(h, f) for f in History.__dataclass_fields__},
                            times=np.array(self.times), staleness=self.staleness, contributions=self.contributions,
                            sizes=self.sizes, algorithm=self.algorithm, clock=self.clock)


# --- synchronous rounds ----------------------------------------------------------------------------

class RoundPlan(NamedTuple):
    """Who delivers in a synchronous round: ``working`` (sorted), their ``epochs`` and ``finish``
    times (seconds after the broadcast), and the round's ``duration``."""

    working: np.ndarray
    epochs: np.ndarray
    finish: np.ndarray
    duration: float


def plan_round(clock: Clock, selected, sizes, *, local_epochs: int, bytes_down: int, bytes_up: int,
               deadline=None, partial_work: bool = False, round: int = 1) -> RoundPlan:
    r"""Which selected parties deliver, after how many epochs, and when the round ends.

    Party ``i`` doing ``e`` epochs finishes :math:`T_i(e) = \ell_i + B_\downarrow/b_i + c_i e m_i
    + \ell_i + B_\uparrow/b_i + J_{i,t}` after the broadcast. Without a deadline everyone does
    ``local_epochs``. With one, a party delivers all its epochs if :math:`T_i(E) \le` ``deadline``
    and is dropped otherwise; with ``partial_work`` it delivers the largest :math:`e \le E` with
    :math:`T_i(e) \le` ``deadline`` (dropped only if :math:`e = 0`). The server closes the round when
    every selected party has delivered, else at the deadline.
    """
    selected = np.asarray(selected, dtype=np.int64)
    sizes = np.asarray(sizes)[selected]
    base = clock.download(selected, bytes_down)
    tail = clock.upload(selected, bytes_up) + clock.extra(selected, round)

    def finish(e):                                  # the same sum as Clock.job_time, in the same order
        return base + clock.compute(selected, e * sizes) + tail

    full = np.full(len(selected), local_epochs, dtype=np.int64)
    if deadline is None:
        done = finish(full)
        return RoundPlan(selected, full, done, float(done.max(initial=0.0)))
    if not partial_work:
        done = finish(full)
        on_time = done <= deadline
        epochs = full
    else:
        per_epoch = clock.compute(selected, sizes)
        with np.errstate(divide="ignore", invalid="ignore"):
            guess = np.floor((deadline - base - tail) / per_epoch)
        epochs = np.clip(np.nan_to_num(guess, nan=local_epochs, posinf=local_epochs, neginf=0),
                         0, local_epochs).astype(np.int64)
        for _ in range(2):                          # correct the division's rounding against finish() itself
            up = (epochs < local_epochs) & (finish(np.minimum(epochs + 1, local_epochs)) <= deadline)
            epochs = epochs + up
            down = (epochs > 0) & (finish(epochs) > deadline)
            epochs = epochs - down
        done = finish(epochs)
        on_time = (epochs > 0) & (done <= deadline)
    duration = float(done.max(initial=0.0)) if on_time.all() else float(deadline)
    return RoundPlan(selected[on_time], epochs[on_time], done[on_time], duration)


class ClockPlan:
    r"""A straggler plan for :func:`fl_helpers.train`: the epochs each selected party finishes on a clock.

    ``plan(selected, round)`` runs :func:`plan_round` and returns, for each selected party, the
    epochs it delivers: ``local_epochs``, fewer (``partial_work``), or 0 when it misses the
    ``deadline`` (its work does not count this round). It remembers each round's
    :class:`RoundPlan` and selection, so ``train`` can add its per-round series
    (:meth:`metrics`: ``"round_seconds"``, ``"dropped"``) and :meth:`times` gives the simulated
    clock after each round. ``train(..., stragglers=ClockPlan(...))`` is :func:`sync_fedavg`.

    ``sizes`` are the parties' sample counts :math:`m_i`, ``bytes_down`` / ``bytes_up`` the bytes
    of the model and of an update with its weight. A plan records the rounds of one run (a second
    run with the same plan overwrites them round by round): build one per run.
    """

    def __init__(self, clock: Clock, sizes, *, local_epochs: int, bytes_down: int, bytes_up: int,
                 deadline=None, partial_work: bool = False):
        if not isinstance(clock, Clock):
            raise TypeError(f"clock must be a Clock, got {type(clock).__name__}")
        self.clock = clock
        self.sizes = np.asarray(sizes)
        if self.sizes.shape != (clock.n_parties,):
            raise ValueError(f"sizes must hold one sample count per party of the clock ({clock.n_parties}), "
                             f"got shape {self.sizes.shape}")
        self.local_epochs = valid.integer("local_epochs", local_epochs, minimum=1)
        self.bytes_down = valid.integer("bytes_down", bytes_down, minimum=0)
        self.bytes_up = valid.integer("bytes_up", bytes_up, minimum=0)
        self.deadline = None if deadline is None else valid.positive_float("deadline", deadline)
        if not isinstance(partial_work, bool):
            raise TypeError(f"partial_work must be True or False, got {partial_work!r}")
        if partial_work and self.deadline is None:
            raise ValueError("partial_work=True needs a deadline (the epochs done by then are used), got deadline=None")
        self.partial_work = partial_work
        self.rounds: dict[int, tuple[RoundPlan, int]] = {}     # round -> (its plan, how many were selected)

    def __repr__(self) -> str:
        return (f"ClockPlan(n_parties={self.clock.n_parties}, local_epochs={self.local_epochs}, "
                f"deadline={self.deadline!r}, partial_work={self.partial_work})")

    def __call__(self, selected, round: int) -> np.ndarray:
        selected = np.asarray(selected, dtype=np.int64)
        plan = plan_round(self.clock, selected, self.sizes, local_epochs=self.local_epochs,
                          bytes_down=self.bytes_down, bytes_up=self.bytes_up, deadline=self.deadline,
                          partial_work=self.partial_work, round=round)
        self.rounds[int(round)] = (plan, len(selected))
        epochs = np.zeros(len(selected), dtype=np.int64)
        epochs[np.isin(selected, plan.working)] = plan.epochs      # plan.working keeps selected's order
        return epochs

    def metrics(self, info) -> dict:
        """Round ``info.round``'s seconds and the number of selected parties whose work did not count."""
        plan, k = self.rounds[info.round]
        return {"round_seconds": plan.duration, "dropped": float(k - len(plan.working))}

    def times(self, rounds: int) -> np.ndarray:
        """The simulated clock at the start (0.0) and after each of rounds 1..``rounds``."""
        now, times = 0.0, [0.0]
        for t in range(1, rounds + 1):
            now += self.rounds[t][0].duration
            times.append(float(now))
        return np.array(times)


def sync_fedavg(parties, *, profile, lr, rounds, deadline=None, partial_work=False, local_epochs=1,
                batch_size=None, fraction=1.0, weighting="samples", prox_mu=0.0, theta0=None, seed=None,
                engine="loop") -> TimedHistory:
    r"""Synchronous FedAvg rounds on a simulated clock, optionally with a deadline.

    Each round: sample (as :func:`fl_helpers.fedavg`), 1. broadcast, 2. local work of the parties
    that make it in time (:func:`plan_round`: all of them without a ``deadline``; the on-time ones
    with it; with ``partial_work=True`` every party with at least one epoch done, with the epochs
    it did, FedProx-style), 3. aggregate (:func:`~fl_helpers.aggregation.weighted_sum` of their
    updates, weights :math:`m_i/\sum m_j` over the deliverers), 4. server update
    :math:`\theta \leftarrow \theta - \eta\bar\Delta`. That round is :func:`fl_helpers.train`'s,
    with the clock as its straggler plan (:class:`ClockPlan`). Without a deadline (or one nobody
    misses) the models are those of :func:`fl_helpers.fedavg` with the same ``seed``, bit for bit;
    the round lasts as long as its slowest party.

    ``profile`` is a :class:`DeviceProfile` (drawn with ``seed``) or a :class:`Clock`. The model
    costs :math:`B_\downarrow = p \cdot` itemsize bytes, the update and its weight
    :math:`B_\uparrow = (p + 1) \cdot` itemsize (what :func:`fl_helpers.train` measures).
    ``bytes_up`` counts the updates the server aggregated; ``bytes_down`` every selected party's model.
    """
    parties = check_parties(parties)
    lr = valid.positive_float("lr", lr)
    rounds = valid.integer("rounds", rounds, minimum=0)
    local_epochs = valid.integer("local_epochs", local_epochs, minimum=1)
    batch_size = valid.optional_batch_size(batch_size)
    fraction = valid.fraction(fraction)
    weighting = valid.choice("weighting", weighting, WEIGHTINGS)
    prox_mu = valid.positive_float("prox_mu", prox_mu, allow_zero=True)
    if deadline is not None:
        deadline = valid.positive_float("deadline", deadline)
    if not isinstance(partial_work, bool):
        raise TypeError(f"partial_work must be True or False, got {partial_work!r}")
    if partial_work and deadline is None:
        raise ValueError("partial_work=True needs a deadline (the epochs done by then are used), got deadline=None")
    theta = initial_theta(theta0, parties)
    root = randomness.root_seed(seed)
    clock = _clock(profile, len(parties), root)
    eng = make_engine(engine, parties)                  # built once: train gets the object, the plan its dtype
    sizes = np.array([p.n_samples for p in parties])
    item = np.dtype(eng.dtype).itemsize
    plan = ClockPlan(clock, sizes, local_epochs=local_epochs, bytes_down=theta.size * item,
                     bytes_up=(theta.size + 1) * item, deadline=deadline, partial_work=partial_work)
    h = server.train(parties, lr=lr, rounds=rounds, local_epochs=local_epochs, batch_size=batch_size,
                     fraction=fraction, weighting=weighting, theta0=theta, seed=root, engine=eng,
                     prox_mu=prox_mu, stragglers=plan)
    contributions = np.zeros(len(parties), dtype=np.int64)
    for working in h.selected:
        np.add.at(contributions, np.asarray(working, dtype=np.int64), 1)
    return TimedHistory(**{f: getattr(h, f) for f in History.__dataclass_fields__},
                        times=plan.times(h.rounds),
                        staleness=[np.zeros(len(working), dtype=np.int64) for working in h.selected],
                        contributions=contributions, sizes=sizes,
                        algorithm="sync_fedavg" if deadline is None else "sync_fedavg(deadline)", clock=clock)


# --- asynchronous runs -----------------------------------------------------------------------------

def staleness_weight(staleness, kind: str = "polynomial", *, a: float = 0.5, b: float = 4.0):
    r"""FedAsync's staleness functions :math:`s(\tau)` (Xie et al. 2019), :math:`\tau \ge 0` server updates.

    ``"constant"``: :math:`1`; ``"polynomial"``: :math:`(1 + \tau)^{-a}` (``a = 0.5`` is FedBuff's
    :math:`1/\sqrt{1 + \tau}`); ``"hinge"``: :math:`1` for :math:`\tau \le b`, else
    :math:`1 / (a(\tau - b) + 1)`.
    """
    kind = valid.choice("staleness", kind, STALENESS)
    a = valid.positive_float("a", a, allow_zero=True)
    b = valid.positive_float("b", b, allow_zero=True)
    tau = np.asarray(staleness, dtype=np.float64)
    if np.any(tau < 0) or not np.all(np.isfinite(tau)):
        raise ValueError(f"staleness must be non-negative finite numbers of server updates, "
                         f"got {float(tau.min())!r}")
    if kind == "constant":
        s = np.ones_like(tau)
    elif kind == "polynomial":
        s = (1.0 + tau) ** -a
    else:
        s = np.where(tau <= b, 1.0, 1.0 / (a * np.maximum(tau - b, 0.0) + 1.0))
    return float(s) if s.ndim == 0 else s


class Job(NamedTuple):
    """A job in flight: the model ``version`` it started from, the model ``sent`` and the ``update``."""

    version: int
    sent: np.ndarray
    update: np.ndarray


class _Workers:
    """The parties of an asynchronous run: who is busy, and each one's next job on the event queue."""

    def __init__(self, parties, clock, eng, *, lr, local_epochs, batch_size, prox_mu, root, concurrency):
        self.clock, self.eng, self.root = clock, eng, root
        self.sizes = np.array([p.n_samples for p in parties])
        self.work = dict(lr=lr, epochs=local_epochs, batch_size=batch_size)
        if prox_mu:
            self.work["prox_mu"] = prox_mu
        self.concurrency = concurrency
        self.queue = EventQueue()
        self.busy = np.zeros(len(parties), dtype=bool)
        self.jobs = np.zeros(len(parties), dtype=np.int64)       # jobs started by each party
        self.dispatched = 0                                      # jobs started after the first wave
        self.item = np.dtype(eng.dtype).itemsize
        self.bytes_sent = 0                                      # models sent since the last server update

    def start(self, theta, version: int, now: float, party: int) -> None:
        """Send party ``party`` the model, run its local work, and schedule its finish."""
        self.jobs[party] += 1
        k = int(self.jobs[party])
        sent = broadcast(theta, np.array([party]), dtype=self.eng.dtype)
        work = self.eng.local_work(sent, np.array([party]), seed=self.root, round=k, **self.work)
        nbytes = sent.nbytes
        seconds = self.clock.job_time([party], samples=self.work["epochs"] * self.sizes[party],
                                      bytes_down=nbytes, bytes_up=nbytes, task=k)[0]
        self.busy[party] = True
        self.bytes_sent += nbytes
        self.queue.push(now + float(seconds), party, Job(version, sent, np.asarray(work.updates[0], np.float64)))

    def first_wave(self, theta) -> None:
        n = len(self.busy)
        first = (np.arange(n) if self.concurrency == n else
                 np.sort(randomness.generator(self.root, "dispatch", 0).choice(n, self.concurrency, replace=False)))
        for i in first:
            self.start(theta, 0, 0.0, int(i))

    def next(self) -> Event:
        event = self.queue.pop()
        self.busy[event.party] = False
        return event

    def refill(self, theta, version: int, now: float) -> None:
        """Keep ``concurrency`` jobs running: start one on an idle party (uniformly drawn, if several)."""
        self.dispatched += 1
        idle = np.flatnonzero(~self.busy)
        pick = idle[0] if len(idle) == 1 else randomness.generator(self.root, "dispatch", self.dispatched).choice(idle)
        self.start(theta, version, now, int(pick))

    def model_bytes(self) -> int:
        sent, self.bytes_sent = self.bytes_sent, 0
        return sent


def _async_setup(parties, profile, lr, updates, local_epochs, batch_size, concurrency, prox_mu, theta0, seed,
                 engine, staleness, a, b):
    parties = check_parties(parties)
    lr = valid.positive_float("lr", lr)
    updates = valid.integer("updates", updates, minimum=0)
    local_epochs = valid.integer("local_epochs", local_epochs, minimum=1)
    batch_size = valid.optional_batch_size(batch_size)
    n = len(parties)
    concurrency = n if concurrency is None else valid.integer("concurrency", concurrency, minimum=1, maximum=n)
    prox_mu = valid.positive_float("prox_mu", prox_mu, allow_zero=True)
    staleness_weight(0, staleness, a=a, b=b)                     # checks staleness, a and b
    theta = initial_theta(theta0, parties)
    root = randomness.root_seed(seed)
    clock = _clock(profile, n, root)
    eng = make_engine(engine, parties)
    workers = _Workers(parties, clock, eng, lr=lr, local_epochs=local_epochs, batch_size=batch_size,
                       prox_mu=prox_mu, root=root, concurrency=concurrency)
    return parties, lr, updates, theta, clock, eng, workers


def fedasync(parties, *, profile, lr, updates, mixing=0.5, staleness="polynomial", a=0.5, b=4.0,
             local_epochs=1, batch_size=None, concurrency=None, prox_mu=0.0, theta0=None, seed=None,
             engine="loop") -> TimedHistory:
    r"""FedAsync (Xie, Koyejo and Gupta 2019): mix each local model in as it arrives.

    ``concurrency`` parties (all by default) start from :math:`\theta_0` at time 0. When party
    :math:`i`'s job, started from model version :math:`v_i`, arrives at version :math:`v`, its
    staleness is :math:`\tau = v - v_i` and the server sets

    .. math::
        \alpha_t = \alpha\,s(\tau), \qquad
        \theta \leftarrow (1 - \alpha_t)\,\theta + \alpha_t\,\theta_i, \qquad
        \theta_i = \theta_{v_i} - \eta\,\Delta_i

    (``mixing`` :math:`\alpha \in (0, 1]`, :math:`s` from :func:`staleness_weight` with ``a``,
    ``b``), bumps the version, and a party (the one that arrived, when all are running) starts a
    new job from the new model. Every arrival counts once, whatever its :math:`m_i`: fast parties
    arrive more often and weigh more. ``prox_mu`` adds the paper's proximal term to the local work.
    ``updates`` server updates are simulated; bytes as in :class:`TimedHistory` (model down,
    local model up, :math:`p` numbers each); ``metrics["alpha"]`` holds each :math:`\alpha_t`.
    """
    mixing = valid.positive_float("mixing", mixing)
    if mixing > 1:
        raise ValueError(f"mixing must be in (0, 1], got {mixing!r}")
    parties, lr, updates, theta, clock, eng, workers = _async_setup(
        parties, profile, lr, updates, local_epochs, batch_size, concurrency, prox_mu, theta0, seed, engine,
        staleness, a, b)
    log = _Log(workers.sizes, eng, theta, "fedasync", clock)
    workers.first_wave(theta)
    for version in range(updates):
        event = workers.next()
        job = event.job
        tau = version - job.version
        alpha = mixing * staleness_weight(tau, staleness, a=a, b=b)
        local = np.asarray(job.sent, dtype=np.float64) - lr * job.update     # the model the party sends
        theta = (1.0 - alpha) * theta + alpha * local
        if not log.record(event.time, theta, parties=[event.party], staleness=[tau], bytes_up=theta.size * workers.item,
                          bytes_down=workers.model_bytes(), metrics={"alpha": alpha}):
            break
        workers.refill(theta, version + 1, event.time)
    return log.history()


def fedbuff(parties, *, profile, lr, updates, buffer_size=10, server_lr=1.0, staleness="polynomial", a=0.5,
            b=4.0, local_epochs=1, batch_size=None, concurrency=None, prox_mu=0.0, theta0=None, seed=None,
            engine="loop") -> TimedHistory:
    r"""FedBuff (Nguyen et al. 2022): buffered asynchronous aggregation of ``buffer_size`` updates.

    ``concurrency`` :math:`C` parties train at once (all by default); when one finishes, an idle
    party (drawn uniformly, stream ``"dispatch"``) starts from the current model. The server adds
    each arriving pseudo-gradient, scaled by :math:`s(\tau)` (:func:`staleness_weight`; the
    default ``"polynomial"`` with ``a=0.5`` is the paper's :math:`1/\sqrt{1 + \tau}`,
    ``"constant"`` switches it off), to a buffer; with :math:`K` in it,

    .. math::
        \theta \leftarrow \theta - \eta_s\,\eta\,\frac1K\sum_{j=1}^{K} s(\tau_j)\,\Delta_j,

    the version goes up and the buffer empties (``server_lr`` :math:`\eta_s`). :math:`\tau_j` counts
    the server updates since job :math:`j` received its model. ``updates`` server updates are
    simulated, :math:`K` arrivals each.
    """
    buffer_size = valid.integer("buffer_size", buffer_size, minimum=1)
    server_lr = valid.positive_float("server_lr", server_lr)
    parties, lr, updates, theta, clock, eng, workers = _async_setup(
        parties, profile, lr, updates, local_epochs, batch_size, concurrency, prox_mu, theta0, seed, engine,
        staleness, a, b)
    log = _Log(workers.sizes, eng, theta, "fedbuff", clock)
    workers.first_wave(theta)
    for version in range(updates):
        arrived, rows, taus = [], [], []
        while len(arrived) < buffer_size:
            event = workers.next()
            arrived.append(event.party)
            rows.append(event.job.update)
            taus.append(version - event.job.version)
            if len(arrived) < buffer_size:       # the buffer is not full: the next job gets this model
                workers.refill(theta, version, event.time)
        scale = np.atleast_1d(staleness_weight(np.array(taus), staleness, a=a, b=b))
        mean = weighted_sum(np.array(rows), scale).total / buffer_size
        theta = server_update(theta, mean, lr=server_lr * lr)
        if not log.record(event.time, theta, parties=arrived, staleness=taus,
                          bytes_up=buffer_size * theta.size * workers.item, bytes_down=workers.model_bytes()):
            break
        workers.refill(theta, version + 1, event.time)
    return log.history()
