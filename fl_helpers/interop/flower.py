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

Runtimes: ``runtime="simulation"`` runs the nodes as Flower's simulation runtime does
(``flwr.simulation.run_simulation``, Ray actors, one process); ``runtime="deployment"`` runs
Flower's deployment runtime on this machine (:mod:`fl_helpers.interop.federation`): a
``flower-superlink`` process, one ``flower-supernode`` process per party loading its own party
from a file, the run submitted with ``flwr run`` as a Flower App Bundle whose apps are
:func:`deployment_apps`. The classroom (:mod:`fl_helpers.interop.classroom`) runs the same apps
across laptops.

Costs, measured by ``benchmarks/bench_flower.py``: on the deployment runtime every message starts
a fresh ClientApp process on its node (about 1 s of imports) and a SuperNode looks for new
messages every 3 s, so an exchange costs seconds where the in-process engine needs microseconds;
Flower is built for devices that train for minutes per round.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
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

RUNTIMES = ("simulation", "deployment")
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

_NODE_PARTIES: dict = {}      # a node process loads its party once (deployment: from its node config)


def node_party(node_config) -> tuple[int, str, Party]:
    """The party a deployed node holds, from its ``--node-config``: ``(index, label, party)``.

    ``party-file=PATH`` (with ``partition-id=i``)
        a pickled :class:`~fl_helpers.Party` that :func:`run` wrote for node ``i``.
    ``classroom-party=k``
        partition ``k`` of the classroom task (:func:`fl_helpers.interop.classroom.party`).
    ``csv=PATH``
        the node's own CSV with the classroom task's columns
        (:func:`fl_helpers.interop.classroom.party_from_csv`); its index is -1 until the server
        numbers the parties.
    """
    key = tuple(sorted((str(k), str(v)) for k, v in dict(node_config).items()))
    if key in _NODE_PARTIES:
        return _NODE_PARTIES[key]
    config = dict(node_config)
    if "party-file" in config:
        import pickle

        index = _index(config.get(_PID), None)
        with open(config["party-file"], "rb") as fh:
            party = pickle.load(fh)          # written by run() on this machine, read by its own nodes
        out = (index, f"party {index}", check_parties([party])[0])
    elif "classroom-party" in config:
        from . import classroom

        index = _index(config["classroom-party"], classroom.PARTIES, key="classroom-party")
        out = (index, f"party {index}", classroom.party(index))
    elif "csv" in config:
        import hashlib

        from . import classroom

        path = str(config["csv"])
        party = classroom.party_from_csv(path)
        digest = hashlib.sha256(np.ascontiguousarray(np.c_[party.data[0], party.data[1]]).tobytes()).hexdigest()
        out = (-1, f"csv {os.path.basename(path)}#{digest[:6]}", party)   # two students' mine.csv stay two
    else:
        raise ValueError(f"the node config must give party-file, classroom-party or csv, got {sorted(config)}")
    _NODE_PARTIES[key] = out
    return out


def _index(raw, n: int | None, key: str = _PID) -> int:
    allowed = "a party index" if n is None else f"a party index 0..{n - 1}"
    try:
        index = int(raw)
    except (TypeError, ValueError):
        raise ValueError(f"node_config['{key}'] must be {allowed}, got {raw!r}") from None
    if index < 0 or (n is not None and index >= n):
        raise ValueError(f"node_config['{key}'] must be {allowed}, got {index}")
    return index


def client_app(parties: Sequence[Party] | None = None):
    """A Flower ``ClientApp`` holding one party per node.

    With ``parties``, node ``i`` (``node_config["partition-id"] = i``, as Flower's simulation sets
    it) is ``parties[i]``; without, each node loads its own party from its node configuration
    (:func:`node_party`: the deployment runtime and the classroom).

    Handlers (Message API):

    ``QUERY``
        replies the node's party index and label, its sample count, its number of parameters
        and its loss at the model sent.
    ``TRAIN`` (config: ``server-round`` t, ``lr``, ``local-epochs``, ``batch-size`` (0: full
    batch), ``seed``)
        block 2: ``party.local_update(theta, lr=lr, epochs=local_epochs, batch_size=batch_size,
        seed=seed, round=t, index=i)`` with ``i`` the index the server gave the party; replies the
        update (the pseudo-gradient, float64) and the weight ``num-examples``.
    ``EVALUATE``
        replies the party's loss at the model sent and its sample count.

    The server sends the hyperparameters and the run's root seed with every ``TRAIN`` message, so
    a node needs nothing but its data; every node draws from the same seed's streams.
    """
    F = _flwr()
    if parties is not None:
        parties = check_parties(parties)
    app = F["ClientApp"]()

    def party_of(context):
        if parties is None:
            return node_party(context.node_config)
        index = _index(context.node_config.get(_PID), len(parties))
        return index, f"party {index}", parties[index]

    def theta_of(msg):
        return msg.content["arrays"].to_numpy_ndarrays()[0].astype(np.float64, copy=False)

    def reply(msg, metrics, arrays=None, label=None):
        content = {"metrics": F["MetricRecord"](metrics)}
        if arrays is not None:
            content["arrays"] = F["ArrayRecord"]([arrays])
        if label is not None:
            content["node"] = F["ConfigRecord"]({"label": label})
        return F["Message"](content=F["RecordDict"](content), reply_to=msg)

    @app.query()
    def query(msg, context):
        index, label, party = party_of(context)
        start = initial_theta(None, [party])
        theta = theta_of(msg)
        loss = party.loss(start if theta.size == 0 else theta)     # no model sent: the model's own start
        n_params = start.size
        return reply(msg, {_PID: index, "num-examples": party.n_samples, "n-params": n_params, "loss": loss},
                     label=label)

    @app.train()
    def train(msg, context):
        _, _, party = party_of(context)
        config = msg.content["config"]
        index, t = int(config["party-index"]), int(config["server-round"])
        batch = int(config["batch-size"])
        work = party.local_update(theta_of(msg), lr=float(config["lr"]), epochs=int(config["local-epochs"]),
                                  batch_size=batch or None, seed=int(config["seed"]), round=t, index=index)
        return reply(msg, {_PID: index, "num-examples": party.n_samples}, arrays=work.update)

    @app.evaluate()
    def evaluate(msg, context):
        index = int(msg.content["config"]["party-index"])
        _, _, party = party_of(context)
        return reply(msg, {_PID: index, "num-examples": party.n_samples, "loss": party.loss(theta_of(msg))})

    return app


# --------------------------------------------------------------------------- the server's side

MODES = ("fixed", "classroom")


def strategy_class():
    """:class:`CourseStrategy`, built on Flower's ``FedAvg`` when first asked for (Flower loads lazily)."""
    global CourseStrategy
    if CourseStrategy is None:
        CourseStrategy = _make_strategy_class(_flwr())
    return CourseStrategy


CourseStrategy = None      # set by strategy_class(): a subclass of flwr.serverapp.strategy.FedAvg


class _Diverged(Exception):
    """Raised inside Flower's round loop once the run diverged: nothing more is sent or recorded."""


class _AnsweredRecorder(Recorder):
    """A Recorder whose global loss averages the parties that answered (classroom: some may leave)."""

    def _global(self, party_losses) -> float:
        answered = ~np.isnan(party_losses)
        if not answered.any():
            return float("nan")
        return float(self.sizes[answered] @ party_losses[answered] / self.sizes[answered].sum())


def _make_strategy_class(F):
    class _CourseStrategy(F["FedAvg"]):
        """Flower's FedAvg loop with the course's blocks: sampling, aggregate, server update, History.

        Flower's ``Strategy.start`` runs the rounds; this class swaps what each round does:
        :meth:`configure_train` samples with :func:`~fl_helpers.server.sample_parties` (stream
        ``("sampling", t)`` of ``seed``), :meth:`aggregate_train` aggregates the parties' updates with
        the course's ``aggregator`` and steps with :func:`~fl_helpers.server.server_update`, and the
        parties' losses after every round land in :attr:`recorder`.

        ``mode="fixed"``: exactly ``n_parties`` nodes, node ``i`` holds party ``i``; a node that
        fails or does not answer within ``timeout`` stops the run with an error naming it (the
        result must equal the in-process run). ``mode="classroom"``: the parties are the nodes
        connected when the instructor starts (``start_file`` exists, ``min_nodes`` joined),
        numbered by their labels; a node that leaves or does not answer is left out of that
        round, and the round's ``selected`` and the status file say so.
        """

        def __init__(self, n_parties: int | None = None, *, lr, local_epochs: int = 1, batch_size=None,
                     fraction=1.0, seed: int, weighting="samples", aggregator: Callable | None = None,
                     mode: str = "fixed", status: str | None = None, start_file: str | None = None,
                     min_nodes: int = 1):
            n = 1 if n_parties is None else n_parties
            super().__init__(fraction_train=1.0, fraction_evaluate=1.0, min_train_nodes=1,
                             min_evaluate_nodes=1, min_available_nodes=n)
            self.mode = valid.choice("mode", mode, MODES)
            if self.mode == "fixed" and n_parties is None:
                raise ValueError("n_parties must be given in mode='fixed'")
            self.n_parties = n_parties
            self.lr, self.local_epochs, self.batch_size = lr, local_epochs, batch_size
            self.fraction = fraction
            self.seed = seed
            self.weighting = weighting
            self.aggregator = aggregator or weighted_sum
            self.status_path, self.start_file, self.min_nodes = status, start_file, min_nodes
            self.nodes: dict[int, int] = {}           # party index -> Flower node ID
            self.labels: list[str] = []
            self.recorder: Recorder | None = None
            self.selected: dict[int, np.ndarray] = {}
            self.info: dict = {}
            self.events: list[str] = []
            self.theta: np.ndarray | None = None

        def summary(self) -> None:                    # Flower logs a summary; the course's runs are quiet
            pass

        # ---- the live status (classroom view)
        def status(self, phase: str, **fields) -> None:
            if self.status_path is None:
                return
            import json

            rec = self.recorder
            state = {"phase": phase, "parties": self.labels, "events": self.events[-20:],
                     "losses": [] if rec is None else [float(v) for v in rec.losses],
                     "selected": [] if rec is None else [[self.labels[i] for i in s] for s in rec.selected],
                     **fields}
            tmp = f"{self.status_path}.tmp"
            with open(tmp, "w", encoding="utf-8") as fh:
                json.dump(state, fh)
            os.replace(tmp, self.status_path)

        def event(self, text: str) -> None:
            self.events.append(text)
            logging.getLogger("flwr").warning(text)

        def _messages(self, arrays, configs, node_ids, kind):
            return [F["Message"](content=F["RecordDict"]({"arrays": arrays, "config": c}), message_type=kind,
                                 dst_node_id=n) for c, n in zip(configs, node_ids)]

        def discover(self, grid, theta0, timeout):
            """Ask every node its party (and its loss at the first model): the QUERY round."""
            if self.mode == "fixed":
                node_ids = _wait_for_nodes(grid, self.n_parties, timeout)
            else:
                node_ids = self._wait_for_start(grid)
            probe = np.zeros(0) if theta0 is None else np.asarray(theta0, dtype=np.float64)
            arrays = F["ArrayRecord"]([probe])
            replies = grid.send_and_receive(self._messages(arrays, [F["ConfigRecord"]()] * len(node_ids), node_ids,
                                                           F["MessageType"].QUERY), timeout=timeout)
            found = {}
            for r in replies:
                if r.has_error():
                    who = f"node {self._grid.sent.get(r.metadata.reply_to_message_id)}"
                    if self.mode == "fixed":
                        raise RuntimeError(f"{who} failed to answer: {r.error.reason}")
                    self.event(f"{who} could not load its data and is left out: {r.error.reason}")
                    continue
                m, label = r.content["metrics"], r.content["node"]["label"]
                index = int(m[_PID])
                if self.mode == "classroom":
                    index = label                      # numbered below, by label
                if index in found:
                    if self.mode == "fixed":
                        raise ValueError(f"two nodes claim party {index}: check each node's {_PID}")
                    self.event(f"{label} joined twice (nodes {found[index][0]} and {r.metadata.src_node_id}): "
                               f"the second copy is left out, or its data would count twice")
                    continue
                found[index] = (r.metadata.src_node_id, label, int(m["num-examples"]), int(m["n-params"]),
                                float(m["loss"]))
            if self.mode == "fixed":
                missing = sorted(set(range(self.n_parties)) - set(found))
                if missing:
                    raise ValueError(f"no node answered for parties {missing} within {timeout:g} s: start one node "
                                     f"per party ({_PID} 0..{self.n_parties - 1})")
                order = list(range(self.n_parties))
            else:
                order = sorted(found, key=_label_order)
                if not order:
                    raise RuntimeError(f"no node answered within {timeout:g} s: nobody to train with")
                self.n_parties = len(order)
            entries = [found[k] for k in order]
            sizes_params = {e[3] for e in entries}
            if len(sizes_params) > 1:
                raise ValueError(f"the nodes' models have different numbers of parameters: "
                                 f"{ {e[1]: e[3] for e in entries} }")
            self.nodes = {i: e[0] for i, e in enumerate(entries)}
            self.labels = [e[1] for e in entries]
            self.recorder = (Recorder if self.mode == "fixed" else _AnsweredRecorder)([e[2] for e in entries])
            # theta0=None (the classroom): zeros, the start of the course's GLMs, which each node evaluated
            self.theta = np.zeros(entries[0][3]) if theta0 is None else probe.copy()
            self.recorder.record(0, self.theta, np.array([e[4] for e in entries]))
            self.status("training", round=0)
            return F["ArrayRecord"]([self.theta.copy()])

        def _wait_for_start(self, grid) -> list[int]:
            """Classroom: wait until ``min_nodes`` have joined and the instructor said start (the start file)."""
            while True:
                node_ids = sorted(grid.get_node_ids())
                self.status("waiting", joined=len(node_ids), min_nodes=self.min_nodes)
                if len(node_ids) >= self.min_nodes and (self.start_file is None or os.path.exists(self.start_file)):
                    return node_ids
                time.sleep(0.2)

        def _config(self, server_round, index):
            return F["ConfigRecord"]({"server-round": server_round, "party-index": int(index), "lr": float(self.lr),
                                      "local-epochs": int(self.local_epochs), "batch-size": int(self.batch_size or 0),
                                      "seed": int(self.seed)})

        def configure_train(self, server_round, arrays, config, grid):
            draw = None if self.fraction == 1.0 else randomness.generator(self.seed, "sampling", server_round)
            selected = sample_parties(self.n_parties, self.fraction, draw)
            self.selected[server_round] = selected
            sent = broadcast(self.theta, selected)                                             # 1. broadcast
            self.info = {"bytes_down": len(selected) * sent.nbytes}
            self._round_start = time.perf_counter()
            self.status("training", round=server_round, participants=[self.labels[i] for i in selected])
            return self._messages(F["ArrayRecord"]([np.array(sent)]), [self._config(server_round, i) for i in selected],
                                  [self.nodes[int(i)] for i in selected], F["MessageType"].TRAIN)

        def _usable(self, server_round, replies, what):
            """The replies without errors; in fixed mode any error or silence stops the run."""
            good, bad = [], []
            for r in replies:
                (bad if r.has_error() else good).append(r)
            for r in bad:
                text = (f"round {server_round}: {self._who(r)} failed to {what}: {r.error.reason}")
                if self.mode == "fixed":
                    raise RuntimeError(text)
                self.event(text + "; left out of this round")
            return good

        def _who(self, reply) -> str:
            """The party a reply answers (an error reply may come from the SuperLink, not the node)."""
            node = getattr(getattr(self, "_grid", None), "sent", {}).get(reply.metadata.reply_to_message_id)
            party = {n: i for i, n in self.nodes.items()}.get(node)
            return self.labels[party] if party is not None and party < len(self.labels) else f"node {node}"

        def aggregate_train(self, server_round, replies):
            replies = self._usable(server_round, replies, "train")
            by_party = sorted(replies, key=lambda r: int(r.content["metrics"][_PID]))
            selected = np.array([int(r.content["metrics"][_PID]) for r in by_party], dtype=np.int64)
            sent = self.selected[server_round]
            if not np.array_equal(selected, sent):
                missing = [self.labels[i] for i in sorted(set(sent.tolist()) - set(selected.tolist()))]
                if self.mode == "fixed" or not len(selected):
                    raise RuntimeError(f"round {server_round}: no usable reply from {', '.join(missing) or 'nobody'} "
                                       f"within {self.timeout:g} s (replies from {selected.tolist()}, "
                                       f"sent to {sent.tolist()})")
                self.event(f"round {server_round}: no usable reply from {', '.join(missing)} within "
                           f"{self.timeout:g} s; the round uses the {len(selected)} of {len(sent)} parties "
                           f"that answered")
            updates = np.stack([r.content["arrays"].to_numpy_ndarrays()[0] for r in by_party])
            counts = np.array([float(r.content["metrics"]["num-examples"]) for r in by_party])
            weights = aggregation_weights(counts, self.weighting)
            rng = None if self.aggregator is weighted_sum else randomness.generator(self.seed, "aggregate",
                                                                                    server_round)
            agg = self.aggregator(updates, weights, rng=rng)                                   # 3. aggregate
            mean = agg.mean if isinstance(agg, Aggregate) else np.asarray(agg, dtype=np.float64)
            self.theta = server_update(self.theta, mean, lr=self.lr)                           # 4. server update
            self.info.update(bytes_up=wire.nbytes(updates) + wire.nbytes(counts), selected=selected)
            if not np.all(np.isfinite(self.theta)):        # as train: a non-finite model ends the run here
                self.recorder.diverged_at = server_round
                self.recorder.diverged_reason = "the loss is no longer a finite number"
                self.event(f"the run diverged at round {server_round}: {self.recorder.diverged_reason}")
                raise _Diverged
            return F["ArrayRecord"]([self.theta.copy()]), None

        def _losses(self, server_round, replies):
            losses = np.full(self.n_parties, np.nan)
            for r in self._usable(server_round, replies, "evaluate"):
                losses[int(r.content["metrics"][_PID])] = r.content["metrics"]["loss"]
            silent = [self.labels[i] for i in np.flatnonzero(np.isnan(losses))]
            if silent and self.mode == "fixed":
                raise RuntimeError(f"round {server_round}: no loss from {', '.join(silent)} within {self.timeout:g} s")
            if silent:
                self.event(f"round {server_round}: no loss from {', '.join(silent)}; the global loss averages the "
                           f"parties that answered")
            return losses

        def aggregate_evaluate(self, server_round, replies):
            if self.recorder.diverged_at is not None:     # as train: nothing is recorded after divergence
                return None
            losses = self._losses(server_round, replies)
            if np.all(np.isnan(losses)):       # nobody reported: not a divergence, a class that went away
                raise RuntimeError(f"round {server_round}: no party reported a loss within {self.timeout:g} s "
                                   f"(all left, or the network is down)")
            seconds = time.perf_counter() - self._round_start     # the round's wall time: train + evaluate
            if not self.recorder.record(server_round, self.theta, losses, **self.info,
                                        metrics={"seconds": seconds}):
                self.event(f"the run diverged at round {server_round}: {self.recorder.diverged_reason}")
                raise _Diverged
            self.status("training", round=server_round)
            return None

        def configure_evaluate(self, server_round, arrays, config, grid):
            return self._messages(arrays, [self._config(server_round, i) for i in range(self.n_parties)],
                                  [self.nodes[i] for i in range(self.n_parties)], F["MessageType"].EVALUATE)

        def run(self, grid, theta0, *, rounds: int, timeout: float):
            """The QUERY round, then ``rounds`` rounds of Flower's loop (replies polled every 20 ms)."""
            self.timeout = timeout
            grid = self._grid = _FastGrid(grid)
            arrays = self.discover(grid, theta0, timeout)
            try:
                self.start(grid=grid, initial_arrays=arrays, num_rounds=rounds, timeout=timeout)
            except _Diverged:
                pass                                      # recorded: History.diverged_at / diverged_reason
            self.status("done", round=len(self.recorder.losses) - 1)

    return _CourseStrategy


def _label_order(label: str):
    """'party 2' < 'party 10' < 'csv a.csv': classroom parties first by number, then the CSV nodes."""
    kind, _, rest = label.partition(" ")
    return (0, int(rest), "") if kind == "party" and rest.isdigit() else (1, 0, label)


class _FastGrid:
    """Flower's grid with a 20 ms reply poll (its ``send_and_receive`` sleeps 3 s between polls).

    Everything else is Flower's: ``push_messages``, ``pull_messages``, ``get_node_ids`` ...
    """

    POLL = 0.02

    def __init__(self, grid):
        self._grid = grid
        self.sent: dict[str, int] = {}

    def __getattr__(self, name):
        return getattr(self._grid, name)

    def send_and_receive(self, messages, *, timeout=None):
        messages = list(messages)
        ids = list(self._grid.push_messages(messages))
        self.sent.update(zip(ids, (m.metadata.dst_node_id for m in messages)))   # who each message went to
        pending = set(ids)
        end = None if timeout is None else time.monotonic() + timeout
        replies = []
        while pending and (end is None or time.monotonic() < end):
            got = list(self._grid.pull_messages(pending))
            replies.extend(got)
            pending.difference_update(m.metadata.reply_to_message_id for m in got)
            if pending:
                time.sleep(self.POLL)
        return replies


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
        strategy.run(grid, theta0, rounds=rounds, timeout=timeout)

    return app


def deployment_apps():
    """``(server, client)``: the apps a deployed federation runs (``flwr run`` loads them).

    The server reads its whole configuration from the file named by the run config's ``spec``
    (written by :func:`run` or the classroom's ``serve``): the strategy's arguments, ``theta0``,
    ``rounds``, ``timeout``, and where to write the result (``out``: the History, or the error).
    The client is :func:`client_app` without parties: every node loads its own.
    """
    F = _flwr()
    server = F["ServerApp"]()

    @server.main()
    def main(grid, context):
        import pickle

        with open(context.run_config["spec"], "rb") as fh:
            spec = pickle.load(fh)            # written by this machine's run() / classroom serve
        strategy = None
        try:
            strategy = strategy_class()(**spec["strategy"])
            strategy.run(grid, spec["theta0"], rounds=spec["rounds"], timeout=spec["timeout"])
            result = {"history": strategy.recorder.history(engine=spec["engine"], device="cpu"),
                      "labels": strategy.labels, "events": strategy.events}
        except Exception as exc:                                       # reported by the caller, with the logs
            result = {"error": f"{type(exc).__name__}: {exc}", "events": strategy.events if strategy else []}
            if strategy is not None:
                strategy.status("failed", message=result["error"])
        tmp = spec["out"] + ".tmp"
        with open(tmp, "wb") as fh:
            pickle.dump(result, fh)
        os.replace(tmp, spec["out"])

    return server, client_app(None)


# --------------------------------------------------------------------------- one call

def run(parties, *, lr, rounds: int, local_epochs: int = 1, batch_size=None, fraction=1.0,
        weighting="samples", theta0=None, seed: int | None = None, aggregator: Callable | None = None,
        runtime: str = "simulation", timeout: float = 120.0, workdir=None) -> History:
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
    runtime : {"simulation", "deployment"}
        ``"simulation"``: Flower's simulation runtime (``flwr.simulation.run_simulation``: each node a
        Ray actor, one process). ``"deployment"``: Flower's deployment runtime on this machine
        (:class:`~fl_helpers.interop.federation.LocalFederation`): a ``flower-superlink`` process and
        one ``flower-supernode`` process per party on 127.0.0.1, each node loading its own party from
        a file; the run is submitted with ``flwr run``; every process is stopped at the end.
    timeout : float
        Seconds the server waits for the nodes' replies in each round (and for the nodes to connect).
    workdir : path, optional
        Deployment only: where the logs and files go (a temporary directory by default, removed unless
        the run fails; then the error names it).

    Returns
    -------
    History
        ``thetas``, ``losses``, ``party_losses``, ``bytes_up``/``bytes_down`` (the float64 updates and
        weights up, the model down), ``selected``, ``metrics["seconds"]`` (each round's wall time,
        its TRAIN and EVALUATE exchanges); ``engine="flower-simulation"`` or ``"flower-deployment"``.
    """
    parties = check_parties(parties)
    runtime = valid.choice("runtime", runtime, RUNTIMES)
    lr = valid.positive_float("lr", lr)
    rounds = valid.integer("rounds", rounds, minimum=0)
    local_epochs = valid.integer("local_epochs", local_epochs, minimum=1)
    batch_size = valid.optional_batch_size(batch_size)
    fraction = valid.fraction(fraction)
    weighting = valid.choice("weighting", weighting, WEIGHTINGS)
    timeout = valid.positive_float("timeout", timeout)
    if aggregator is not None and not callable(aggregator):
        raise TypeError(f"aggregator must be callable or None, got {type(aggregator).__name__}")
    theta = initial_theta(theta0, parties)
    root = randomness.root_seed(seed)
    if aggregator is not None and hasattr(aggregator, "start"):
        aggregator.start(theta, len(parties))
    settings = dict(lr=lr, local_epochs=local_epochs, batch_size=batch_size, fraction=fraction, seed=root,
                    weighting=weighting, aggregator=aggregator)
    if runtime == "deployment":
        return _run_deployment(parties, settings, theta, rounds=rounds, timeout=timeout, workdir=workdir)
    _flwr()
    strategy = strategy_class()(len(parties), **settings)
    server = server_app(strategy, theta, rounds=rounds, timeout=timeout)
    with _quiet(), _without_tensorflow(parties):
        from flwr.simulation import run_simulation

        _start_ray(parties)
        run_simulation(server_app=server, client_app=client_app(parties), num_supernodes=len(parties),
                       backend_config={"client_resources": {"num_cpus": 1, "num_gpus": 0.0},
                                       "init_args": {"logging_level": "error", "log_to_driver": False}})
    if strategy.recorder is None:
        raise RuntimeError("the Flower simulation stopped before its first round (see Flower's log above)")
    if len(strategy.recorder.losses) != rounds + 1 and not strategy.recorder.diverged_at:
        raise RuntimeError(f"the Flower run stopped after {len(strategy.recorder.losses) - 1} of {rounds} rounds "
                           f"(see Flower's log above)")
    return strategy.recorder.history(engine=f"flower-{runtime}", device="cpu")


def _run_deployment(parties, settings, theta, *, rounds, timeout, workdir) -> History:
    import pickle

    from .federation import LocalFederation, write_app

    with LocalFederation(workdir) as fed:
        data = fed.workdir / "parties"
        data.mkdir(exist_ok=True)
        for i, party in enumerate(parties):          # each node's partition: its own file
            with open(data / f"party-{i}.pkl", "wb") as fh:
                pickle.dump(party, fh)
        out = fed.workdir / "result.pkl"
        spec = {"strategy": dict(n_parties=len(parties), **settings), "theta0": theta, "rounds": rounds,
                "timeout": timeout, "out": str(out), "engine": "flower-deployment"}
        with open(fed.workdir / "spec.pkl", "wb") as fh:
            pickle.dump(spec, fh)
        app = write_app(fed.workdir / "app")
        for i in range(len(parties)):
            fed.add_node(f"node-{i}", {_PID: i, "party-file": str(data / f"party-{i}.pkl")})
        fed.submit(app, {"spec": str(fed.workdir / "spec.pkl")}, timeout=60 + timeout * (2 * rounds + 3),
                   watch=tuple(f"node-{i}" for i in range(len(parties))))
        if not out.exists():
            raise fed.fail("the ServerApp ended without writing a result", "run")
        with open(out, "rb") as fh:
            result = pickle.load(fh)
        if "error" in result:
            raise fed.fail(f"the Flower run failed: {result['error']}", "run")
        return result["history"]


def _uses_tensorflow(parties) -> bool:
    return any(type(p.model).__name__ == "KerasModel" for p in parties)


@contextlib.contextmanager
def _without_tensorflow(parties):
    """Flower's simulation imports TensorFlow when it is installed (for GPU memory settings); the
    course's NumPy parties do not need it, and each import costs seconds: hide it while Flower loads."""
    if _uses_tensorflow(parties) or "tensorflow" in sys.modules:
        yield
        return
    sys.modules["tensorflow"] = None            # `import tensorflow` now raises ModuleNotFoundError
    try:
        yield
    finally:
        if sys.modules.get("tensorflow", 0) is None:
            del sys.modules["tensorflow"]


def _skip_tensorflow() -> None:
    """Ray's worker set-up hook: the same for each simulation worker (see :func:`_without_tensorflow`)."""
    sys.modules.setdefault("tensorflow", None)


def _start_ray(parties) -> None:
    """Start Ray as Flower would (its PYTHONPATH), plus a hook that keeps TensorFlow out of NumPy workers."""
    import ray

    if ray.is_initialized():
        return
    pythonpath = os.pathsep.join(sys.path + ([os.environ["PYTHONPATH"]] if os.environ.get("PYTHONPATH") else []))
    runtime_env = {"env_vars": {"PYTHONPATH": pythonpath}}
    if not _uses_tensorflow(parties):
        runtime_env["worker_process_setup_hook"] = "fl_helpers.interop.flower._skip_tensorflow"
    ray.init(runtime_env=runtime_env, include_dashboard=False, logging_level="error", log_to_driver=False)


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
