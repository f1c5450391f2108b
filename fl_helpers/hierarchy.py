r"""Hierarchical federated averaging: parties -> edge servers -> cloud (HierFAVG).

Liu, Zhang, Song and Letaief 2020, "Client-Edge-Cloud Hierarchical Federated Learning".
Party :math:`i` talks to its edge server :math:`e` (a base station, a hospital's gateway) over a
cheap local link; only the edges talk to the cloud, over the backbone. One *cloud round*:

1. the cloud sends :math:`\theta` to every edge, :math:`\theta_e \leftarrow \theta`;
2. ``edge_rounds`` :math:`\kappa` times, each edge runs a FedAvg round with its own parties
   (broadcast :math:`\theta_e`, local work, :func:`~fl_helpers.aggregation.weighted_sum` with
   weights :math:`m_i`, :math:`\theta_e \leftarrow \theta_e - \eta\,S_{e,r}/M_e`), where
   :math:`S_{e,r} = \sum_{i \in e} m_i\Delta_i` and :math:`M_e = \sum_{i\in e} m_i`;
3. each edge sends the cloud its partial aggregate,
   :class:`~fl_helpers.aggregation.Aggregate` :math:`(\sum_r S_{e,r},\ M_e)`, and the cloud
   combines them (:meth:`Aggregate.combine`: sums and weights add):

   .. math::
       \theta \leftarrow \theta - \eta\,\frac{\sum_e \sum_r S_{e,r}}{M}
       = \sum_e \frac{M_e}{M}\,\theta_e .

With :math:`\kappa = 1` the cloud's aggregate is :math:`\sum_i m_i\Delta_i / M`: flat FedAvg,
exactly (to rounding), as partial sums compose. With :math:`\kappa > 1` the backbone carries
:math:`\kappa` times fewer messages per edge round, but the edge models drift apart between cloud
rounds (``metrics["edge_drift"]``) when the groups' data differ.

Randomness follows :mod:`fl_helpers.randomness`: edge round :math:`r` of cloud round :math:`c` is
global round :math:`t = (c - 1)\kappa + r`, and party :math:`i` is its position in the concatenation
of ``groups``, so its minibatches are those of :func:`fl_helpers.fedavg` round :math:`t`.

Bytes, measured as :func:`fl_helpers.train` measures them (:func:`fl_helpers.wire.nbytes`), per
cloud round, in ``History.metrics``: ``"bytes_edge_to_party"`` (the model, to each party each edge
round), ``"bytes_party_to_edge"`` (update and weight), ``"bytes_cloud_to_edge"`` (the model, to each
edge) and ``"bytes_edge_to_cloud"`` (the edge's aggregate: :math:`p` sums and one weight).
``History.bytes_up`` / ``bytes_down`` are the parties' links (as in flat FedAvg).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from . import randomness, wire
from . import validation as valid
from .aggregation import Aggregate, weighted_sum
from .engines import make_engine
from .history import History, Recorder
from .parties import Party, check_parties, initial_theta
from .server import broadcast, server_update


def check_groups(groups) -> list[list[Party]]:
    """``groups`` as a list of non-empty lists of parties, each party in one group only."""
    if isinstance(groups, (str, Party)) or not isinstance(groups, Sequence):
        raise TypeError(f"groups must be a list of lists of parties (one list per edge server), "
                        f"got {type(groups).__name__}")
    if len(groups) == 0:
        raise ValueError("groups must hold at least one edge server's list of parties, got an empty list")
    out, seen = [], {}
    for e, group in enumerate(groups):
        if isinstance(group, (str, Party)) or not isinstance(group, Sequence):
            raise TypeError(f"groups[{e}] must be a list of parties, got {type(group).__name__}")
        if len(group) == 0:
            raise ValueError(f"groups[{e}] must hold at least one Party (an edge server with no parties), "
                             f"got an empty list")
        for q, party in enumerate(group):
            if not isinstance(party, Party):
                raise TypeError(f"groups[{e}][{q}] must be a Party, got {type(party).__name__}")
            if id(party) in seen:
                raise ValueError(f"groups[{e}][{q}] is also groups{seen[id(party)]}: "
                                 f"a party belongs to one edge server only")
            seen[id(party)] = f"[{e}][{q}]"
        out.append(list(group))
    return out


def hierarchical_fedavg(groups, *, lr, rounds, edge_rounds=1, local_epochs=1, batch_size=None, theta0=None,
                        seed=None, engine="loop") -> History:
    r"""HierFAVG: ``rounds`` cloud rounds of ``edge_rounds`` edge rounds of FedAvg (module docstring).

    ``groups`` is a list of lists of parties, one list per edge server. Sample-weighted at both
    levels; with ``edge_rounds=1`` it is :func:`fl_helpers.fedavg` on the concatenated parties.
    Returns a :class:`~fl_helpers.History` with one row per cloud round; ``metrics`` adds the four
    ``"bytes_*"`` links, ``"edge_drift"`` (:math:`\sqrt{\sum_e \frac{M_e}{M}\lVert\theta_e -
    \theta\rVert^2}` at the cloud's aggregation, :math:`\theta` the new cloud model) and
    ``"edge_round_losses"`` (R, ``edge_rounds``): the global loss of :math:`\sum_e \frac{M_e}{M}\theta_e`
    after each edge round (the cloud model, had it aggregated then).
    """
    groups = check_groups(groups)
    parties = check_parties([p for g in groups for p in g])
    lr = valid.positive_float("lr", lr)
    rounds = valid.integer("rounds", rounds, minimum=0)
    edge_rounds = valid.integer("edge_rounds", edge_rounds, minimum=1)
    local_epochs = valid.integer("local_epochs", local_epochs, minimum=1)
    batch_size = valid.optional_batch_size(batch_size)
    theta = initial_theta(theta0, parties)
    root = randomness.root_seed(seed)
    eng = make_engine(engine, parties)
    sizes = np.array([p.n_samples for p in parties])
    starts = np.cumsum([0] + [len(g) for g in groups])
    members = [np.arange(starts[e], starts[e + 1]) for e in range(len(groups))]     # global party indices
    edge_sizes = np.array([float(sizes[idx].sum()) for idx in members])
    shares = edge_sizes / edge_sizes.sum()

    rec = Recorder(sizes)
    rec.record(0, theta, eng.party_losses(theta))
    for c in range(1, rounds + 1):
        to_edges = broadcast(theta, np.arange(len(groups)), dtype=eng.dtype)            # cloud -> each edge
        edge_thetas = [theta.copy() for _ in groups]
        totals = [np.zeros_like(theta) for _ in groups]
        party_up = party_down = 0
        virtual = []
        for r in range(1, edge_rounds + 1):
            t = (c - 1) * edge_rounds + r
            for e, idx in enumerate(members):                      # each edge: one FedAvg round of its parties
                sent = broadcast(edge_thetas[e], idx, dtype=eng.dtype)                         # 1. broadcast
                work = eng.local_work(sent, idx, lr=lr, epochs=local_epochs, batch_size=batch_size,
                                      seed=root, round=t)                                         # 2. local work
                agg = weighted_sum(np.asarray(work.updates, dtype=np.float64), work.weights)   # 3. aggregate
                edge_thetas[e] = server_update(edge_thetas[e], agg.mean, lr=lr)                # 4. edge update
                totals[e] = totals[e] + agg.total
                party_down += len(idx) * sent.nbytes
                party_up += wire.nbytes(work.updates) + wire.nbytes(work.weights.astype(eng.dtype))
            virtual.append(_global_loss(eng, sizes, shares @ np.array(edge_thetas)))
        parts = [Aggregate(total=totals[e], weight=edge_sizes[e]) for e in range(len(groups))]  # edges -> cloud
        sent_up = [(p.total.astype(eng.dtype), np.asarray(p.weight, dtype=eng.dtype)) for p in parts]
        theta = server_update(theta, Aggregate.combine(parts).mean, lr=lr)                    # cloud update
        drift = float(np.sqrt(shares @ np.array([np.sum((te - theta) ** 2) for te in edge_thetas])))
        metrics = {"bytes_edge_to_party": party_down, "bytes_party_to_edge": party_up,
                   "bytes_cloud_to_edge": len(groups) * to_edges.nbytes, "bytes_edge_to_cloud": wire.nbytes(sent_up),
                   "edge_drift": drift, "edge_round_losses": np.array(virtual)}
        if not rec.record(c, theta, eng.party_losses(theta), bytes_up=party_up, bytes_down=party_down,
                          selected=np.arange(len(parties)), metrics=metrics):
            break
    h = rec.history(engine=eng.name, device=eng.device)
    if "edge_round_losses" not in h.metrics:
        h.metrics.update({k: np.zeros(0) for k in ("bytes_edge_to_party", "bytes_party_to_edge",
                                                   "bytes_cloud_to_edge", "bytes_edge_to_cloud", "edge_drift")})
        h.metrics["edge_round_losses"] = np.zeros((0, edge_rounds))
    return h


def _global_loss(eng, sizes, theta) -> float:
    """:math:`\\sum_i \\frac{m_i}{M} L_i(\\theta)`."""
    return float(sizes @ eng.party_losses(theta) / sizes.sum())
