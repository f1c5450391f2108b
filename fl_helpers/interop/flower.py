r"""The course's parties on Flower (``flwr``, Apache-2.0): same parties, same blocks, same numbers.

Everything else in the course runs in one Python process. Flower runs the same round across
processes or machines: a ``ServerApp`` talks to ``ClientApp`` s through messages (Flower's
Message API: ``flwr.clientapp.ClientApp``, ``flwr.serverapp.ServerApp``, strategies from
``flwr.serverapp.strategy``). This module maps the course's four blocks onto it:

=====================  ==================================================  =================================
block                  in :func:`fl_helpers.train`                          on Flower (this module)
=====================  ==================================================  =================================
who takes part         :func:`~fl_helpers.server.sample_parties`,           :meth:`CourseStrategy.configure_train`,
                       stream ``("sampling", t)``                           the same function and stream
1. broadcast           :func:`~fl_helpers.server.broadcast`                 a ``TRAIN`` message with an ``ArrayRecord``
2. local work          :meth:`Party.local_update(theta, ..., seed,          the ``ClientApp``'s ``train`` handler
                       round=t, index=i) <fl_helpers.Party.local_update>`   calls exactly that, on the node
3. aggregate           ``aggregator(updates, weights, rng=...)``            :meth:`CourseStrategy.aggregate_train`
                       (:func:`~fl_helpers.aggregation.weighted_sum`)       calls the same aggregator
4. server update       :func:`~fl_helpers.server.server_update`            the same function
=====================  ==================================================  =================================

Each node knows its party index from its node configuration (``partition-id``, as Flower's
simulation and ``flower-supernode --node-config`` set it); the strategy asks every node for it
once, with a ``QUERY`` message, and then sends round ``t``'s work to the nodes of the parties that
:func:`~fl_helpers.server.sample_parties` drew. The randomness contract
(:mod:`fl_helpers.randomness`) makes a party's update computable in its own process: its
minibatch order depends only on ``(seed, t, i)``. So, with float64 parameters, a run on Flower
gives the global model of :func:`fl_helpers.fedavg` round by round (the tests ask 1e-12).

The losses of the returned :class:`~fl_helpers.History` are the parties' own: every node reports
its local loss at the model it receives (``EVALUATE`` messages after each round, the ``QUERY``
before round 1), and the server weights them by sample counts, as :func:`fl_helpers.train` does.

Runtime: ``runtime="simulation"`` runs the nodes as Flower's simulation runtime does
(``flwr.simulation.run_simulation``, Ray actors, one process). Flower's deployment runtime
(a SuperLink and SuperNodes as separate processes) is not wired here yet.
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
import warnings
from collections.abc import Callable, Sequence

import numpy as np

from .. import randomness, wire
from .. import validation as valid
from ..aggregation import WEIGHTINGS, Aggregate, aggregation_weights, weighted_sum
from ..history import History, Recorder
from ..parties import Party, check_parties, initial_theta
from ..server import broadcast, sample_parties, server_update

RUNTIMES = ("simulation",)
_PID = "partition-id"


def _flwr():
    """Import Flower on first use (``import fl_helpers`` must not)."""
    try:
        import flwr  # noqa: F401
        from flwr.app import ArrayRecord, ConfigRecord, Message, MessageType, MetricRecord, RecordDict
        from flwr.clientapp import ClientApp
        from flwr.serverapp import ServerApp
        from flwr.serverapp.strategy import FedAvg
    except ImportError as exc:                                   # pragma: no cover - an install problem
        raise ImportError("fl_helpers.interop.flower needs Flower: pip install 'flwr[simulation]>=1.42,<2' "
                          "(it is in the course's dev extra)") from exc
    return dict(ArrayRecord=ArrayRecord, ConfigRecord=ConfigRecord, Message=Message, MessageType=MessageType,
                MetricRecord=MetricRecord, RecordDict=RecordDict, ClientApp=ClientApp, ServerApp=ServerApp,
                FedAvg=FedAvg)


# --------------------------------------------------------------------------- the node's side

def client_app(parties: Sequence[Party], *, lr, local_epochs: int = 1, batch_size=None, seed: int | None = None):
    """A Flower ``ClientApp`` in which node ``i`` (``node_config["partition-id"] = i``) is ``parties[i]``.

    Handlers (Message API):

    ``QUERY``
        replies the node's party index, its sample count and its loss at the model sent.
    ``TRAIN`` (config ``"server-round"`` = t)
        block 2: ``parties[i].local_update(theta, lr=lr, epochs=local_epochs, batch_size=batch_size,
        seed=seed, round=t, index=i)``; replies the update (the pseudo-gradient, float64), the weight
        ``num-examples`` and the index.
    ``EVALUATE``
        replies the party's loss at the model sent and its sample count.

    ``seed`` must be the run's root seed (an int): every node must draw the same streams.
    """
    F = _flwr()
    parties = check_parties(parties)
    lr = valid.positive_float("lr", lr)
    local_epochs = valid.integer("local_epochs", local_epochs, minimum=1)
    batch_size = valid.optional_batch_size(batch_size)
    app = F["ClientApp"]()

    def party_of(context):
        raw = context.node_config.get(_PID)
        try:
            index = int(raw)
        except (TypeError, ValueError):
            raise ValueError(f"node_config['{_PID}'] must be a party index 0..{len(parties) - 1}, "
                             f"got {raw!r}") from None
        if not 0 <= index < len(parties):
            raise ValueError(f"node_config['{_PID}'] must be a party index 0..{len(parties) - 1}, got {index}")
        return index, parties[index]

    def theta_of(msg):
        return msg.content["arrays"].to_numpy_ndarrays()[0].astype(np.float64, copy=False)

    def reply(msg, metrics, arrays=None):
        content = {"metrics": F["MetricRecord"](metrics)}
        if arrays is not None:
            content["arrays"] = F["ArrayRecord"]([arrays])
        return F["Message"](content=F["RecordDict"](content), reply_to=msg)

    @app.query()
    def query(msg, context):
        index, party = party_of(context)
        return reply(msg, {_PID: index, "num-examples": party.n_samples, "loss": party.loss(theta_of(msg))})

    @app.train()
    def train(msg, context):
        index, party = party_of(context)
        t = int(msg.content["config"]["server-round"])
        work = party.local_update(theta_of(msg), lr=lr, epochs=local_epochs, batch_size=batch_size, seed=seed,
                                  round=t, index=index)
        return reply(msg, {_PID: index, "num-examples": party.n_samples}, arrays=work.update)

    @app.evaluate()
    def evaluate(msg, context):
        index, party = party_of(context)
        return reply(msg, {_PID: index, "num-examples": party.n_samples, "loss": party.loss(theta_of(msg))})

    return app


# --------------------------------------------------------------------------- the server's side

def strategy_class():
    """:class:`CourseStrategy`, built on Flower's ``FedAvg`` when first asked for (Flower loads lazily)."""
    global CourseStrategy
    if CourseStrategy is None:
        CourseStrategy = _make_strategy_class(_flwr())
    return CourseStrategy


CourseStrategy = None      # set by strategy_class(): a subclass of flwr.serverapp.strategy.FedAvg


def _make_strategy_class(F):
    class _CourseStrategy(F["FedAvg"]):
        """Flower's FedAvg loop with the course's blocks: sampling, aggregate, server update, History.

        Flower's ``Strategy.start`` runs the rounds; this class swaps what each round does:
        :meth:`configure_train` samples with :func:`~fl_helpers.server.sample_parties` (stream
        ``("sampling", t)`` of ``seed``), :meth:`aggregate_train` aggregates the parties' updates with
        the course's ``aggregator`` and steps with :func:`~fl_helpers.server.server_update`, and the
        parties' losses after every round land in :attr:`recorder`.
        """

        def __init__(self, n_parties: int, *, lr, fraction=1.0, seed: int, weighting="samples",
                     aggregator: Callable | None = None, sizes=None):
            super().__init__(fraction_train=1.0, fraction_evaluate=1.0, min_train_nodes=1,
                             min_evaluate_nodes=n_parties, min_available_nodes=n_parties)
            self.n_parties = n_parties
            self.lr = lr
            self.fraction = fraction
            self.seed = seed
            self.weighting = weighting
            self.aggregator = aggregator or weighted_sum
            self.nodes: dict[int, int] = {}           # party index -> Flower node ID
            self.recorder = Recorder(np.asarray(sizes))
            self.selected: dict[int, np.ndarray] = {}
            self.info: dict = {}
            self.theta: np.ndarray | None = None

        def summary(self) -> None:                    # Flower logs a summary; the course's runs are quiet
            pass

        def _messages(self, arrays, config, node_ids, kind):
            record = F["RecordDict"]({"arrays": arrays, "config": config})
            return [F["Message"](content=record, message_type=kind, dst_node_id=n) for n in node_ids]

        def discover(self, grid, arrays, timeout):
            """Ask every node its party index (and its loss at the first model): the QUERY round."""
            node_ids = _wait_for_nodes(grid, self.n_parties, timeout)
            replies = grid.send_and_receive(self._messages(arrays, F["ConfigRecord"](), node_ids,
                                                           F["MessageType"].QUERY), timeout=timeout)
            losses = np.full(self.n_parties, np.nan)
            for r in replies:
                if r.has_error():
                    raise RuntimeError(f"node {r.metadata.src_node_id} failed to answer: {r.error.reason}")
                m = r.content["metrics"]
                index = int(m[_PID])
                if index in self.nodes:
                    raise ValueError(f"two nodes claim party {index}: check each node's {_PID}")
                self.nodes[index] = r.metadata.src_node_id
                losses[index] = m["loss"]
            missing = sorted(set(range(self.n_parties)) - set(self.nodes))
            if missing:
                raise ValueError(f"no node answered for parties {missing}: start one node per party "
                                 f"({_PID} 0..{self.n_parties - 1})")
            self.theta = np.asarray(arrays.to_numpy_ndarrays()[0], dtype=np.float64)
            self.recorder.record(0, self.theta, losses)

        def configure_train(self, server_round, arrays, config, grid):
            draw = None if self.fraction == 1.0 else randomness.generator(self.seed, "sampling", server_round)
            selected = sample_parties(self.n_parties, self.fraction, draw)
            self.selected[server_round] = selected
            sent = broadcast(self.theta, selected)                                             # 1. broadcast
            config["server-round"] = server_round
            self.info = {"bytes_down": len(selected) * sent.nbytes}
            return self._messages(F["ArrayRecord"]([np.array(sent)]), config,
                                  [self.nodes[int(i)] for i in selected], F["MessageType"].TRAIN)

        def aggregate_train(self, server_round, replies):
            replies = list(replies)
            bad = [r for r in replies if r.has_error()]
            if bad:
                raise RuntimeError(f"round {server_round}: {len(bad)} node(s) failed: {bad[0].error.reason}")
            by_party = sorted(replies, key=lambda r: int(r.content["metrics"][_PID]))
            selected = np.array([int(r.content["metrics"][_PID]) for r in by_party])
            if not np.array_equal(selected, self.selected[server_round]):
                raise RuntimeError(f"round {server_round}: replies from parties {selected.tolist()}, "
                                   f"sent to {self.selected[server_round].tolist()}")
            updates = np.stack([r.content["arrays"].to_numpy_ndarrays()[0] for r in by_party])
            counts = np.array([float(r.content["metrics"]["num-examples"]) for r in by_party])
            weights = aggregation_weights(counts, self.weighting)
            rng = None if self.aggregator is weighted_sum else randomness.generator(self.seed, "aggregate",
                                                                                    server_round)
            agg = self.aggregator(updates, weights, rng=rng)                                   # 3. aggregate
            mean = agg.mean if isinstance(agg, Aggregate) else np.asarray(agg, dtype=np.float64)
            self.theta = server_update(self.theta, mean, lr=self.lr)                           # 4. server update
            self.info.update(bytes_up=wire.nbytes(updates) + wire.nbytes(counts), selected=selected)
            return F["ArrayRecord"]([self.theta.copy()]), None

        def aggregate_evaluate(self, server_round, replies):
            if self.recorder.diverged_at is not None:     # as train: nothing is recorded after divergence
                return None
            losses = np.full(self.n_parties, np.nan)
            for r in replies:
                if r.has_error():
                    raise RuntimeError(f"round {server_round}: node {r.metadata.src_node_id} failed to "
                                       f"evaluate: {r.error.reason}")
                losses[int(r.content["metrics"][_PID])] = r.content["metrics"]["loss"]
            self.recorder.record(server_round, self.theta, losses, **self.info)
            return None

        def configure_evaluate(self, server_round, arrays, config, grid):
            config["server-round"] = server_round
            return self._messages(arrays, config, [self.nodes[i] for i in range(self.n_parties)],
                                  F["MessageType"].EVALUATE)

    return _CourseStrategy


def _wait_for_nodes(grid, n: int, timeout: float) -> list[int]:
    """The node IDs once ``n`` nodes have connected (nodes join after the ServerApp starts)."""
    deadline = time.monotonic() + timeout
    while True:
        node_ids = sorted(grid.get_node_ids())
        if len(node_ids) >= n:
            return node_ids
        if time.monotonic() > deadline:
            raise TimeoutError(f"only {len(node_ids)} of the {n} nodes connected within {timeout:g} s")
        time.sleep(0.05)


def server_app(strategy, theta0, *, rounds: int, timeout: float = 600.0):
    """A Flower ``ServerApp`` that runs ``strategy`` (a :func:`strategy_class` instance) from ``theta0``."""
    F = _flwr()
    rounds = valid.integer("rounds", rounds, minimum=0)
    app = F["ServerApp"]()

    @app.main()
    def main(grid, context):
        arrays = F["ArrayRecord"]([np.asarray(theta0, dtype=np.float64)])
        strategy.discover(grid, arrays, timeout)
        strategy.start(grid=grid, initial_arrays=arrays, num_rounds=rounds, timeout=timeout)

    return app


# --------------------------------------------------------------------------- one call

def run(parties, *, lr, rounds: int, local_epochs: int = 1, batch_size=None, fraction=1.0,
        weighting="samples", theta0=None, seed: int | None = None, aggregator: Callable | None = None,
        runtime: str = "simulation", timeout: float = 600.0) -> History:
    """:func:`fl_helpers.fedavg` on Flower: the same arguments, the same :class:`~fl_helpers.History`.

    Parameters
    ----------
    parties : list of Party
        Node ``i`` of the federation holds ``parties[i]``.
    lr, rounds, local_epochs, batch_size, fraction, weighting, theta0, seed
        As :func:`fl_helpers.fedavg`. ``seed=None`` draws one root seed for the run (sent to every node).
    aggregator : callable, optional
        Block 3, as in :func:`fl_helpers.train` (e.g. :func:`fl_helpers.robust.median`'s adapter
        ``robust.Median()``); default the sample-weighted mean.
    runtime : {"simulation"}
        Flower's simulation runtime (``flwr.simulation.run_simulation``: each node a Ray actor).
    timeout : float
        Seconds the server waits for the nodes' replies in each round.

    Returns
    -------
    History
        ``thetas``, ``losses``, ``party_losses``, ``bytes_up``/``bytes_down`` (the float64 updates and
        weights up, the model down), ``selected``; ``engine="flower-simulation"``.
    """
    parties = check_parties(parties)
    runtime = valid.choice("runtime", runtime, RUNTIMES)
    lr = valid.positive_float("lr", lr)
    rounds = valid.integer("rounds", rounds, minimum=0)
    fraction = valid.fraction(fraction)
    weighting = valid.choice("weighting", weighting, WEIGHTINGS)
    if aggregator is not None and not callable(aggregator):
        raise TypeError(f"aggregator must be callable or None, got {type(aggregator).__name__}")
    theta = initial_theta(theta0, parties)
    root = randomness.root_seed(seed)
    if aggregator is not None and hasattr(aggregator, "start"):
        aggregator.start(theta, len(parties))
    strategy = strategy_class()(len(parties), lr=lr, fraction=fraction, seed=root, weighting=weighting,
                                aggregator=aggregator, sizes=[p.n_samples for p in parties])
    clients = client_app(parties, lr=lr, local_epochs=local_epochs, batch_size=batch_size, seed=root)
    server = server_app(strategy, theta, rounds=rounds, timeout=timeout)
    from flwr.simulation import run_simulation

    with _quiet():
        run_simulation(server_app=server, client_app=clients, num_supernodes=len(parties),
                       backend_config={"client_resources": {"num_cpus": 1, "num_gpus": 0.0},
                                       "init_args": {"logging_level": "error", "log_to_driver": False}})
    if strategy.recorder.losses and len(strategy.recorder.losses) != rounds + 1 and not strategy.recorder.diverged_at:
        raise RuntimeError(f"the Flower run stopped after {len(strategy.recorder.losses) - 1} of {rounds} rounds "
                           f"(see Flower's log above)")
    return strategy.recorder.history(engine=f"flower-{runtime}", device="cpu")


@contextlib.contextmanager
def _quiet():
    """Flower logs every round at INFO; a course run shows warnings and errors only."""
    logger = logging.getLogger("flwr")
    level = logger.level
    logger.setLevel(logging.ERROR)       # also run_simulation's own deprecation notice (see the module docstring)
    os.environ.setdefault("RAY_ACCEL_ENV_VAR_OVERRIDE_ON_ZERO", "0")     # Ray's FutureWarning about GPUs
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", category=FutureWarning, module="ray")
            yield
    finally:
        logger.setLevel(level)
