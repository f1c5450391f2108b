"""fl_helpers.hierarchy: HierFAVG (parties -> edge servers -> cloud) against flat FedAvg and a hand loop."""

from __future__ import annotations

import re

import numpy as np
import pytest

import fl_helpers as fl
from fl_helpers.hierarchy import hierarchical_fedavg


@pytest.fixture
def parties(unequal_parties):
    return unequal_parties                              # sizes [5, 59, 22, 6, 12, 4, 8, 4], p = 4


@pytest.fixture
def groups(parties):
    return [parties[:3], parties[3:5], parties[5:]]


@pytest.mark.parametrize("engine", ["loop", "vectorized"])
@pytest.mark.parametrize("batch_size", [None, 4])
def test_one_edge_round_is_flat_fedavg(parties, groups, engine, batch_size):
    args = dict(lr=0.05, rounds=8, local_epochs=2, batch_size=batch_size, seed=11, engine=engine)

    h = hierarchical_fedavg(groups, **args)
    flat = fl.fedavg(parties, **args)

    np.testing.assert_allclose(h.thetas, flat.thetas, rtol=0, atol=1e-12)
    np.testing.assert_allclose(h.losses, flat.losses, rtol=0, atol=1e-12)
    np.testing.assert_array_equal(h.bytes_up, flat.bytes_up)
    np.testing.assert_array_equal(h.bytes_down, flat.bytes_down)


def hand_two_level(groups, *, lr, rounds, edge_rounds, local_epochs, batch_size, seed):
    """HierFAVG written out: global index = position in the concatenation, round t = (c-1)k + r."""
    index, g = [], 0
    for group in groups:
        index.append(list(range(g, g + len(group))))
        g += len(group)
    theta = np.zeros(groups[0][0].n_features + 1)
    thetas = [theta]
    for c in range(1, rounds + 1):
        edge_models = []
        for group, idx in zip(groups, index, strict=True):
            te = theta.copy()
            for r in range(1, edge_rounds + 1):
                t = (c - 1) * edge_rounds + r
                locals_ = [p.local_update(te, lr=lr, epochs=local_epochs, batch_size=batch_size, seed=seed,
                                          round=t, index=i).theta for p, i in zip(group, idx, strict=True)]
                m = np.array([p.n_samples for p in group], dtype=float)
                te = m @ np.array(locals_) / m.sum()                          # edge: sample-weighted average
            edge_models.append(te)
        M = np.array([sum(p.n_samples for p in group) for group in groups], dtype=float)
        theta = M @ np.array(edge_models) / M.sum()                           # cloud: sample-weighted average
        thetas.append(theta)
    return np.array(thetas)


@pytest.mark.parametrize("edge_rounds", [2, 3])
def test_several_edge_rounds_equal_a_hand_written_two_level_loop(groups, edge_rounds):
    args = dict(lr=0.05, rounds=4, edge_rounds=edge_rounds, local_epochs=2, batch_size=5, seed=3)

    h = hierarchical_fedavg(groups, **args)

    np.testing.assert_allclose(h.thetas, hand_two_level(groups, **args), rtol=0, atol=1e-12)


def test_one_edge_server_is_fedavg_seen_every_edge_rounds(parties):
    h = hierarchical_fedavg([parties], lr=0.05, rounds=4, edge_rounds=3, batch_size=6, seed=5)
    flat = fl.fedavg(parties, lr=0.05, rounds=12, batch_size=6, seed=5)

    np.testing.assert_allclose(h.thetas, flat.thetas[::3], rtol=0, atol=1e-12)
    np.testing.assert_allclose(h.metrics["edge_round_losses"].ravel(), flat.losses[1:], rtol=1e-12)
    np.testing.assert_allclose(h.metrics["edge_drift"], 0.0, atol=1e-15)


@pytest.mark.parametrize("edge_rounds", [1, 4])
def test_bytes_on_each_link_by_hand(groups, edge_rounds):
    h = hierarchical_fedavg(groups, lr=0.05, rounds=3, edge_rounds=edge_rounds)

    p, n_parties, n_edges = 4, 8, 3                                    # float64: 8 bytes a number
    per_cloud_round = {
        "bytes_edge_to_party": edge_rounds * n_parties * p * 8,        # the edge model to each party
        "bytes_party_to_edge": edge_rounds * n_parties * (p + 1) * 8,  # update + weight
        "bytes_cloud_to_edge": n_edges * p * 8,                        # the cloud model to each edge
        "bytes_edge_to_cloud": n_edges * (p + 1) * 8,                  # the edge's Aggregate: sum + weight
    }
    for link, expected in per_cloud_round.items():
        np.testing.assert_array_equal(h.metrics[link], [expected] * 3, err_msg=link)
    np.testing.assert_array_equal(h.bytes_up, h.metrics["bytes_party_to_edge"])
    np.testing.assert_array_equal(h.bytes_down, h.metrics["bytes_edge_to_party"])


def test_more_edge_rounds_cut_backbone_bytes_and_let_edges_drift(concept_shift_parties):
    groups = [concept_shift_parties[:2], concept_shift_parties[2:]]       # the groups' optima differ
    one = hierarchical_fedavg(groups, lr=0.01, rounds=12, edge_rounds=1)
    four = hierarchical_fedavg(groups, lr=0.01, rounds=3, edge_rounds=4)   # the same 12 edge rounds

    assert one.metrics["bytes_edge_to_cloud"].sum() == 4 * four.metrics["bytes_edge_to_cloud"].sum()
    assert one.metrics["bytes_party_to_edge"].sum() == four.metrics["bytes_party_to_edge"].sum()
    assert four.metrics["edge_drift"][-1] > one.metrics["edge_drift"][-1]
    np.testing.assert_allclose(four.metrics["edge_round_losses"][:, -1], four.losses[1:], rtol=1e-12)


def test_same_seed_same_history(groups):
    a = hierarchical_fedavg(groups, lr=0.05, rounds=3, edge_rounds=2, batch_size=4, seed=8)
    b = hierarchical_fedavg(groups, lr=0.05, rounds=3, edge_rounds=2, batch_size=4, seed=8)
    c = hierarchical_fedavg(groups, lr=0.05, rounds=3, edge_rounds=2, batch_size=4, seed=9)

    np.testing.assert_array_equal(a.thetas, b.thetas)
    assert not np.array_equal(a.thetas, c.thetas)


def test_zero_rounds_has_empty_series(groups):
    h = hierarchical_fedavg(groups, lr=0.05, rounds=0, edge_rounds=2)

    assert h.rounds == 0 and h.metrics["bytes_edge_to_cloud"].shape == (0,)
    assert h.metrics["edge_round_losses"].shape == (0, 2)


@pytest.mark.parametrize("call, exc, fragments", [
    (lambda g: hierarchical_fedavg(g, lr=0.1, rounds=1, edge_rounds=0), ValueError,
     ["edge_rounds must be an integer in [1", "got 0"]),
    (lambda g: hierarchical_fedavg([], lr=0.1, rounds=1), ValueError,
     ["groups must hold at least one", "got an empty"]),
    (lambda g: hierarchical_fedavg([g[0], []], lr=0.1, rounds=1), ValueError,
     ["groups[1] must hold at least one Party", "got an empty list"]),
    (lambda g: hierarchical_fedavg(g[0], lr=0.1, rounds=1), TypeError,
     ["groups[0] must be a list of parties", "got Party"]),
    (lambda g: hierarchical_fedavg([g[0], g[0][:1]], lr=0.1, rounds=1), ValueError,
     ["groups[1][0] is also groups[0][0]", "one edge server only"]),
    (lambda g: hierarchical_fedavg([[g[0][0], "x"]], lr=0.1, rounds=1), TypeError,
     ["groups[0][1] must be a Party", "got str"]),
    (lambda g: hierarchical_fedavg(g, lr=-1.0, rounds=1), ValueError, ["lr must be a positive", "got -1.0"]),
    (lambda g: hierarchical_fedavg(g, lr=0.1, rounds=1, local_epochs=0), ValueError,
     ["local_epochs must be an integer in [1", "got 0"]),
], ids=["edge_rounds-0", "no-groups", "empty-group", "flat-list", "party-twice", "not-a-party", "lr", "epochs"])
def test_bad_input_names_the_parameter(groups, call, exc, fragments):
    with pytest.raises(exc, match=".*".join(re.escape(f) for f in fragments)):
        call(groups)
