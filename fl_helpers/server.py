r"""The central server (中央服务器) and the federated round.

A round is four blocks, each a small function or hook that later topics swap
or wrap (never copy):

1. :func:`broadcast` - send the global model :math:`\theta` to the selected parties;
2. local work - each party returns an update :math:`\Delta_i` (its pseudo-gradient,
   :math:`(\theta - \theta_i)/\eta`) and a weight (:meth:`fl_helpers.Party.local_update`;
   an engine computes it for all parties), then its ``client_transform``
   (clipping, compression, an attack) runs on the party's side;
3. aggregate - ``aggregator(updates, weights, *, rng)``, by default
   :func:`fl_helpers.aggregation.weighted_sum`: :math:`\bar\Delta = \sum_i w_i\Delta_i`;
4. :func:`server_update` - with the average model change
   :math:`\Delta_t = \sum_i w_i(\theta_i - \theta) = -\eta\bar\Delta`:
   :math:`\theta \leftarrow \theta + \eta_s \Delta_t` (``server_lr`` :math:`\eta_s = 1`:
   FedAvg), or a stateful ``server_optimizer`` from :mod:`fl_helpers.optim`
   (FedAvgM, FedAdam, FedYogi, FedAdagrad; Reddi et al. 2021, "Adaptive
   Federated Optimization").

:func:`fedsgd` (one local gradient per round) and :func:`fedavg` (``E`` local
epochs, client sampling; McMahan et al. 2017) are both :func:`train` with
different local work. Every random number comes from the randomness contract
(:mod:`fl_helpers.randomness`): sampling, each party's local work and each
hook have their own stream keyed by ``(seed, round[, party])``.

Bytes are measured, not computed: ``History.bytes_up`` adds up
:func:`fl_helpers.wire.nbytes` of what each party sends (its update in the
engine's dtype, or what its ``client_transform`` returned, and its weight),
``bytes_down`` of the model each selected party receives.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

import numpy as np

from . import randomness, wire
from . import validation as valid
from .aggregation import WEIGHTINGS, Aggregate, aggregation_weights, weighted_sum
from .engines import LocalWork, make_engine
from .evaluation import eval_metrics
from .history import History, Recorder
from .parties import check_parties, initial_theta, local_steps


def broadcast(theta: np.ndarray, selected: np.ndarray, *, dtype=np.float64) -> np.ndarray:
    """Block 1: what each selected party receives, a read-only copy of the global model."""
    sent = np.array(theta, dtype=dtype)
    sent.setflags(write=False)
    return sent


def server_update(theta: np.ndarray, delta: np.ndarray, *, lr: float) -> np.ndarray:
    r"""Block 4 of FedSGD/FedAvg: :math:`\theta \leftarrow \theta - \eta\,\bar\Delta` (pseudo-gradients)."""
    return theta - lr * delta


def n_selected(n_parties: int, fraction: float) -> int:
    """How many parties take part in a round: ``max(1, round(fraction * n_parties))``."""
    return n_parties if fraction == 1.0 else max(1, int(round(fraction * n_parties)))


SAMPLINGS = ("fixed", "poisson")


def sample_parties(n_parties: int, fraction: float, rng: np.random.Generator | None, *,
                   sampling: str = "fixed") -> np.ndarray:
    """Indices of the parties taking part in a round, sorted.

    ``sampling="fixed"``: ``max(1, round(fraction * n_parties))`` parties drawn
    without replacement. ``"poisson"``: each party independently with
    probability ``fraction`` (what differential-privacy accounting assumes; a
    round may have no party at all). All of them (no random draw) when
    ``fraction == 1``. :func:`train` passes the round's sampling stream,
    ``randomness.generator(seed, "sampling", t)``.
    """
    n_parties = valid.integer("n_parties", n_parties, minimum=1)
    fraction = valid.fraction(fraction)
    sampling = valid.choice("sampling", sampling, SAMPLINGS)
    if fraction == 1.0:
        return np.arange(n_parties)
    if not isinstance(rng, np.random.Generator):
        raise TypeError(f"rng must be a numpy.random.Generator when fraction < 1, got {type(rng).__name__}")
    if sampling == "poisson":
        return np.flatnonzero(rng.random(n_parties) < fraction)
    return np.sort(rng.choice(n_parties, size=n_selected(n_parties, fraction), replace=False))


@dataclass(frozen=True)
class RoundInfo:
    """One round, as the ``metrics`` functions of :func:`train` see it.

    ``theta`` is the model broadcast in round ``round``, ``new_theta`` the
    model after it; ``updates`` (k, p) are the dense updates the server
    aggregated (after the client transforms), ``weights`` (k,) their
    normalised weights, ``delta`` the average model change :math:`\\Delta_t`.
    """

    round: int
    theta: np.ndarray
    new_theta: np.ndarray
    selected: np.ndarray
    updates: np.ndarray
    weights: np.ndarray
    delta: np.ndarray
    server_state: object = None


def _hook(name: str, value):
    if value is None:
        return None
    if not callable(value):
        raise TypeError(f"{name} must be callable or None, got {type(value).__name__}")
    return value


def _server_lr(value) -> Callable[[int], float]:
    """``server_lr`` as a schedule ``t -> eta_s``, each value checked when it is used."""
    if callable(value):
        return lambda t: valid.positive_float(f"server_lr({t})", value(t))
    lr = valid.positive_float("server_lr", value)
    return lambda _t: lr


def train(parties, *, lr, rounds, local_epochs=1, batch_size=None, fraction=1.0,
          weighting="samples", theta0=None, seed=None, engine="loop",
          server_lr=1.0, server_optimizer=None, client_transform=None, aggregator=None,
          metrics: Mapping[str, Callable] | None = None, keep_updates: bool = False,
          prox_mu=0.0, stragglers=0.0, drop_stragglers=True, control=None, eval_data=None,
          sampling="fixed") -> History:
    r"""Run federated rounds: broadcast -> local work -> aggregate -> server update.

    This is FedAvg in general; :func:`fedsgd` and :func:`fedavg` are the named
    entry points. The local work (block 2) takes three options:

    ``prox_mu`` :math:`\mu \ge 0`
        FedProx (Li et al. 2020): each party descends :math:`L_i(\theta_i) + \frac\mu2\lVert\theta_i
        - \theta\rVert^2`; ``prox_mu=0`` is FedAvg, bit for bit.
    ``stragglers`` (share in [0, 1)) and ``drop_stragglers``
        As in the FedProx paper's experiments: each round ``floor(stragglers * k)`` of the ``k`` selected
        parties (drawn from the ``"stragglers"`` stream, per party) manage only ``x`` of the ``E`` local
        epochs, ``x`` uniform in 1..E. ``drop_stragglers=True`` (FedAvg's rule) leaves them out of the round;
        ``False`` (FedProx's) aggregates their partial work.
        ``stragglers`` may also be a *plan*: a function ``plan(selected, round) -> epochs`` giving, for
        each selected party, the local epochs it completes (an integer array of ``len(selected)`` in
        0..E; 0: its work does not count this round). A simulated clock with a deadline is such a plan
        (:func:`fl_helpers.systems.sync_fedavg`). ``drop_stragglers`` is then unused; a plan with a
        ``metrics(info)`` method adds its own series to the History.
    ``control``
        A client-state hook such as :class:`fl_helpers.algorithms.Scaffold`: it adds a correction to
        every local step and updates its state from the round's updates (``correction(selected)``,
        ``update(selected, updates, steps, shares)``, ``bytes_down(k)``, ``bytes_up(k)``, and
        ``start(theta, n_parties)`` before the first round).

    ``sampling="poisson"`` draws each party with probability ``fraction`` instead of a fixed number
    (:func:`sample_parties`). ``eval_data=(X, y)`` records ``"test_loss"`` (and ``"test_accuracy"`` for
    classifiers) of the model after every round in ``History.metrics``. The hooks, each with its own
    random stream:

    ``client_transform(update, *, party, round, rng) -> payload``
        Runs on the party's side after its local work: ``update`` is its
        pseudo-gradient (float64, (p,)); the payload returned is what it sends
        (an array of any float dtype, or an object with ``__array__`` and
        ``wire_arrays()``), and its bytes are what ``bytes_up`` counts. A
        transform with ``uses_rng = False`` gets ``rng=None`` (no generator
        is built for it: faster with many parties, e.g. ``privacy.Clip``); the
        attribute counts on the transform's own class, not inherited.
    ``aggregator(updates, weights, *, rng) -> Aggregate | ndarray``
        Block 3 (default :func:`~fl_helpers.aggregation.weighted_sum`); an
        ``ndarray`` result is taken as the final mean update.
    ``server_lr`` (float, or a function of the round ``t``) or ``server_optimizer``
        Block 4: see :mod:`fl_helpers.optim`.
    ``metrics``: ``{name: fn(RoundInfo) -> float}``
        Extra per-round series in ``History.metrics``; a hook object with a
        ``metrics(info) -> dict`` method adds its own series too.

    A ``client_transform`` or ``aggregator`` with a ``start(theta, n_parties)`` method has it
    called before round 1: per-run state (error-feedback residuals, say) starts afresh.

    ``keep_updates=True`` stores every round's per-party updates in the History.

    Two seams for an engine *object* whose parties keep state between rounds (the user embeddings of
    federated matrix factorisation, :func:`fl_helpers.recommend.federated_mf`; see :mod:`fl_helpers.engines`):

    ``engine.initial_theta(theta0) -> theta``
        If the engine has it, ``train`` asks the engine for the starting model (and to check ``theta0``)
        instead of checking ``theta0`` against the parties' model, which then plays no part in the run
        (``eval_data`` still uses it).
    ``LocalWork.losses`` of length ``N`` (every party, not only the selected ones)
        The losses of the model broadcast this round, recorded instead of calling ``party_losses``
        *after* the local work, which may have changed the parties' state.
    """
    parties = check_parties(parties)
    lr = valid.positive_float("lr", lr)
    rounds = valid.integer("rounds", rounds, minimum=0)
    local_epochs = valid.integer("local_epochs", local_epochs, minimum=1)
    batch_size = valid.optional_batch_size(batch_size)
    fraction = valid.fraction(fraction)
    sampling = valid.choice("sampling", sampling, SAMPLINGS)
    weighting = valid.choice("weighting", weighting, WEIGHTINGS)
    own_model = hasattr(engine, "local_work") and hasattr(engine, "initial_theta")   # the engine's own model
    theta = None if own_model else initial_theta(theta0, parties)
    root = randomness.root_seed(seed)
    eng = make_engine(engine, parties)
    if own_model:                                     # e.g. matrix factorisation: theta is V, U stays on the parties
        theta = valid.as_vector(eng.initial_theta(theta0), name="theta0")
    step_size = _server_lr(server_lr)
    if server_optimizer is not None:
        if not (hasattr(server_optimizer, "init") and hasattr(server_optimizer, "step")):
            raise TypeError("server_optimizer must be an optimizer from fl_helpers.optim (with init and step), "
                            f"got {type(server_optimizer).__name__}")
        if server_lr != 1.0:
            raise ValueError(f"server_lr must stay 1.0 when a server_optimizer is given (the optimizer has "
                             f"its own lr), got {server_lr!r}")
    client_transform = _hook("client_transform", client_transform)
    aggregator = _hook("aggregator", aggregator) or weighted_sum
    if metrics is not None and not isinstance(metrics, Mapping):
        raise TypeError(f"metrics must be a dict of name -> function of a RoundInfo, or None, "
                        f"got {type(metrics).__name__}")
    metrics = dict(metrics or {})
    for name, fn in metrics.items():
        if not isinstance(name, str) or not callable(fn):
            raise TypeError(f"metrics must map names (str) to functions of a RoundInfo, got {name!r}: {fn!r}")
    prox_mu = valid.positive_float("prox_mu", prox_mu, allow_zero=True)
    planned = getattr(stragglers, "local_epochs", local_epochs) if callable(stragglers) else local_epochs
    if planned != local_epochs:                       # a plan that counts epochs of another run
        raise ValueError(f"stragglers plan must plan local_epochs={local_epochs} like train, got a plan for "
                         f"local_epochs={planned!r}")
    if not callable(stragglers):
        stragglers = valid.positive_float("stragglers", stragglers, allow_zero=True)
        if stragglers >= 1.0:
            raise ValueError(f"stragglers must be a share in [0, 1) or a plan function, got {stragglers!r}")
    if not isinstance(drop_stragglers, bool):
        raise TypeError(f"drop_stragglers must be True or False, got {drop_stragglers!r}")
    if control is not None:
        missing = [m for m in ("start", "correction", "update", "bytes_down", "bytes_up") if not hasattr(control, m)]
        if missing:
            raise TypeError(f"control must be a client-state hook (e.g. fl_helpers.algorithms.Scaffold), "
                            f"got {type(control).__name__} without {', '.join(missing)}")
        control.start(theta, len(parties))
    for hook in (client_transform, aggregator):          # a hook with per-run state starts afresh
        if hook is not None and hasattr(hook, "start"):
            hook.start(theta, len(parties))
    if eval_data is not None:
        metrics = {**eval_metrics(parties[0].model, eval_data, theta=theta, n_features=parties[0].n_features),
                   **metrics}
    hooks = (client_transform, aggregator, server_optimizer, control, stragglers if callable(stragglers) else None)
    reporters = [h for h in hooks if hasattr(h, "metrics")]
    state = server_optimizer.init(theta) if server_optimizer is not None else None
    sizes = np.array([p.n_samples for p in parties])
    shares = aggregation_weights(sizes, weighting)         # each party's share of the objective (control's)

    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        rec = Recorder(sizes)
        info: dict = {}
        for t in range(1, rounds + 2):
            if t <= rounds:
                draw = None if fraction == 1.0 else randomness.generator(root, "sampling", t)   # only if used
                selected = sample_parties(len(parties), fraction, draw, sampling=sampling)
                sent = broadcast(theta, selected, dtype=eng.dtype)                     # 1. broadcast
                working, party_epochs = _stragglers(selected, stragglers, drop_stragglers, local_epochs, root, t)
                options = {}
                if prox_mu != 0.0:
                    options["prox_mu"] = prox_mu
                if party_epochs is not None:
                    options["party_epochs"] = party_epochs
                if control is not None:
                    options["correction"] = control.correction(working)
                if len(working):
                    work = eng.local_work(sent, working, lr=lr, epochs=local_epochs,
                                          batch_size=batch_size, seed=root, round=t, **options)  # 2. local work
                else:                                 # every selected party straggled and was dropped
                    work = LocalWork(np.zeros((0, theta.size), dtype=eng.dtype), np.zeros(0))
                # every party's loss at theta came with the work: all parties worked, or the engine sent all N
                free = work.losses is not None and len(work.losses) == len(parties)
            else:
                free = False
            # the model of the previous round is recorded now: its loss came out of this round's pass
            losses = work.losses if free else eng.party_losses(theta)
            if not rec.record(t - 1, theta, losses, **info):
                break
            if t > rounds:
                break
            payloads, updates = _transformed(work.updates, working, client_transform, root, t)
            weights = aggregation_weights(work.weights, weighting) if len(working) else np.zeros(0)
            if len(working) or getattr(aggregator, "handles_empty_rounds", False):  # e.g. DP noise for no one
                rng = None if aggregator is weighted_sum else randomness.generator(root, "aggregate", t)
                agg = aggregator(updates, weights, rng=rng)                             # 3. aggregate
                mean = agg.mean if isinstance(agg, Aggregate) else np.asarray(agg, dtype=np.float64)
            else:                                     # no party's work this round (sampling, stragglers)
                mean = np.zeros_like(theta)
            delta = -(lr * mean)                      # the average model change: sum_i w_i (theta_i - theta)
            if control is not None and len(working):
                epochs_done = local_epochs if party_epochs is None else party_epochs
                steps = local_steps(sizes[working], epochs=epochs_done, batch_size=batch_size)
                control.update(working, np.asarray(work.updates, dtype=np.float64), steps, shares[working])
            old = theta
            if server_optimizer is None:                                                # 4. server update
                theta = theta + step_size(t) * delta
            else:
                theta, state = server_optimizer.step(theta, delta, state)
            up = wire.nbytes(payloads) + wire.nbytes(work.weights.astype(eng.dtype)) if len(working) else 0
            down = len(selected) * sent.nbytes
            if control is not None:                   # SCAFFOLD: c down to every selected party, c_i changes up
                up, down = up + control.bytes_up(len(working)), down + control.bytes_down(len(selected))
            info = dict(bytes_up=up, bytes_down=down, selected=working,
                        updates=updates if keep_updates else None, weights=weights,
                        metrics=_metrics(metrics, reporters, RoundInfo(t, old, theta, working, updates,
                                                                       weights, delta, state)))
    return rec.history(engine=eng.name, device=eng.device, keep_updates=keep_updates)


def _stragglers(selected, share, drop, epochs, root, t):
    """The parties whose work counts this round, and their epochs (None: all ``epochs``).

    ``floor(share * k)`` of the ``k`` selected parties straggle (never all of them, as ``share < 1``):
    each selected party ``i`` draws, from its own stream ``"stragglers"`` keyed ``(seed, t, i)``, a
    key and the ``x`` uniform in 1..``epochs`` epochs it would manage; the parties with the smallest
    keys straggle. So a straggler's ``x`` never depends on which other parties were sampled. Dropped,
    stragglers leave the round; kept, they send their partial work.
    """
    if callable(share):                                # a plan: the epochs each selected party completes
        done = np.asarray(share(selected, t))
        if done.shape != selected.shape or not np.issubdtype(done.dtype, np.integer) \
                or np.any(done < 0) or np.any(done > epochs):
            raise ValueError(f"stragglers plan must return {len(selected)} integer epochs in 0..{epochs}, one per "
                             f"selected party, got {done!r}")
        keep = done > 0
        return selected[keep], (None if np.all(done[keep] == epochs) else done[keep])
    if share == 0.0 or len(selected) == 0:
        return selected, None
    draws = [randomness.generator(root, "stragglers", t, int(i)) for i in selected]
    keys = np.array([g.random() for g in draws])
    done = np.array([g.integers(1, epochs + 1) for g in draws])
    slow = np.zeros(len(selected), dtype=bool)
    slow[np.argsort(keys, kind="stable")[:int(share * len(selected))]] = True
    if drop:
        return selected[~slow], None
    return selected, np.where(slow, done, epochs)


def _transformed(updates, selected, transform, root, t):
    """Each party's payload (what it sends) and the dense float64 updates the server aggregates."""
    if transform is None or len(selected) == 0:
        return updates, np.asarray(updates, dtype=np.float64)
    dense64 = np.asarray(updates, dtype=np.float64)
    # a transform whose own class says uses_rng = False gets no generators (a subclass must say it again)
    draws = type(transform).__dict__.get("uses_rng", True)
    payloads = [transform(dense64[q].copy(), party=int(i), round=t,
                          rng=randomness.generator(root, "transform", t, int(i)) if draws else None)
                for q, i in enumerate(selected)]
    dense = np.array([np.asarray(p, dtype=np.float64) for p in payloads])
    if dense.shape != dense64.shape:
        raise ValueError(f"client_transform must return a payload that reads as an update of shape "
                         f"({dense64.shape[1]},), got {dense.shape[1:]}")
    return payloads, dense


def _metrics(metrics, reporters, info: RoundInfo) -> dict:
    out = {name: float(fn(info)) for name, fn in metrics.items()}
    for hook in reporters:
        out.update({k: float(v) for k, v in hook.metrics(info).items()})
    return out


_HOOKS = ("server_lr", "server_optimizer", "client_transform", "aggregator", "metrics", "keep_updates",
          "eval_data", "sampling")


def fedsgd(parties, *, lr, rounds, weighting="samples", theta0=None, engine="loop", seed=None,
           **hooks) -> History:
    r"""Federated SGD: each round every party sends its local gradient.

    .. math::
        \Delta_i = \nabla L_i(\theta),\quad
        \bar\Delta = \sum_i w_i \Delta_i,\quad \theta \leftarrow \theta - \eta\bar\Delta

    with :math:`w_i = m_i/M` (``weighting="samples"``, equal to centralized
    gradient descent) or :math:`w_i = 1/N` (``"uniform"``, the article's mean).
    ``hooks``: the keyword hooks of :func:`train` (``aggregator``, ``client_transform``, ...).
    """
    _only_hooks(hooks)
    return train(parties, lr=lr, rounds=rounds, local_epochs=1, batch_size=None, fraction=1.0,
                 weighting=weighting, theta0=theta0, seed=seed, engine=engine, **hooks)


def fedavg(parties, *, lr, rounds, local_epochs=1, batch_size=None, fraction=1.0,
           weighting="samples", theta0=None, seed=None, engine="loop", prox_mu=0.0, stragglers=0.0,
           drop_stragglers=None, **hooks) -> History:
    r"""Federated averaging (McMahan et al. 2017).

    Each round a ``fraction`` of the parties trains ``local_epochs`` epochs of
    (minibatch, ``batch_size``) gradient descent from the global model; the
    server averages the local models: :math:`\theta \leftarrow \sum_i w_i\theta_i`.
    With ``local_epochs=1, batch_size=None, fraction=1`` this is :func:`fedsgd`.
    ``prox_mu > 0`` is FedProx (Li et al. 2020); ``stragglers`` the share of selected parties that
    finish only part of their epochs, dropped by FedAvg and kept by FedProx (``drop_stragglers``
    defaults to ``prox_mu == 0``).
    ``seed`` keys client sampling and minibatch shuffling (see
    :mod:`fl_helpers.randomness`); ``hooks`` are :func:`train`'s
    (``server_lr``, ``server_optimizer``, ``client_transform``, ``aggregator``, ``metrics``, ``keep_updates``).
    """
    _only_hooks(hooks)
    if drop_stragglers is None:
        drop_stragglers = valid.positive_float("prox_mu", prox_mu, allow_zero=True) == 0.0
    return train(parties, lr=lr, rounds=rounds, local_epochs=local_epochs, batch_size=batch_size,
                 fraction=fraction, weighting=weighting, theta0=theta0, seed=seed, engine=engine,
                 prox_mu=prox_mu, stragglers=stragglers, drop_stragglers=drop_stragglers, **hooks)


def _only_hooks(hooks) -> None:
    unknown = sorted(set(hooks) - set(_HOOKS))
    if unknown:
        raise TypeError(f"unexpected keyword argument(s) {unknown}; the hooks are {', '.join(_HOOKS)}")
