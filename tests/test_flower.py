"""interop.flower: the course's parties on Flower give fl.fedavg's numbers, round by round.

The reference is the in-process engine's run (``fl.fedavg`` with the loop engine, itself tested
against hand-written loops elsewhere); Flower is a different engine (its own message passing, Ray
actors), so agreement to 1e-12 says the blocks were mapped one for one. A Flower simulation starts
Ray (about half a minute here), so there is one, shared: FedAvg with minibatches, client sampling
and the coordinate median. FedSGD against a hand-written step runs on the deployment runtime
(tests/test_federation.py), the strategy's rules on an in-memory grid there too.
"""

from __future__ import annotations

import importlib.util
import sys

import numpy as np
import pytest

import fl_helpers as fl
from fl_helpers import robust
from tests.optional import require

HAS_FLOWER = importlib.util.find_spec("flwr") is not None and importlib.util.find_spec("ray") is not None


@pytest.fixture(autouse=True)
def _needs_flower():
    require(HAS_FLOWER, "Flower is not installed (pip install -e '.[dev]')", what="the Flower tests")


def make_parties(seed=0, n=5):
    rng = np.random.default_rng(seed)
    return [fl.Party(rng.normal(size=(20 + 7 * i, 3)), rng.normal(size=20 + 7 * i), name=f"p{i}") for i in range(n)]


@pytest.fixture(scope="module")
def runs():
    if not HAS_FLOWER:
        return None
    from fl_helpers.interop import flower
    parties = make_parties()
    settings = {
        "median, minibatch, sampled": dict(lr=0.05, rounds=3, local_epochs=2, batch_size=8, fraction=0.6, seed=5,
                                           aggregator=robust.Median()),
    }
    return parties, {name: (kw, flower.run(parties, **kw)) for name, kw in settings.items()}


@pytest.mark.parametrize("name", ["median, minibatch, sampled"])
def test_flower_equals_the_in_process_engine_round_by_round(runs, name):
    parties, done = runs
    kw, h = done[name]
    ref_kw = {k: (robust.Median() if k == "aggregator" else v) for k, v in kw.items()}
    ref = fl.fedavg(parties, **ref_kw)
    np.testing.assert_allclose(h.thetas, ref.thetas, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(h.losses, ref.losses, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(h.party_losses, ref.party_losses, rtol=1e-12, atol=1e-14)
    assert [s.tolist() for s in h.selected] == [s.tolist() for s in ref.selected]
    np.testing.assert_array_equal(h.bytes_up, ref.bytes_up)
    np.testing.assert_array_equal(h.bytes_down, ref.bytes_down)


def test_sampling_draws_three_of_five_parties_each_round(runs):
    _, done = runs
    _, h = done["median, minibatch, sampled"]
    assert [len(s) for s in h.selected] == [3, 3, 3]
    assert len({tuple(s) for s in h.selected}) > 1                 # not the same three every round


# --- the node's side, without a simulation: the ClientApp called with one message ----------------

def call_client(app, kind, theta, node_config, config=None):
    from flwr.app import ArrayRecord, ConfigRecord, Context, Message, RecordDict
    from flwr.supercore.task_identity import TaskIdentity

    TaskIdentity.run_id, TaskIdentity.node_id, TaskIdentity.task_id = 1, 0, 1   # what a ServerApp process sets
    content = RecordDict({"arrays": ArrayRecord([np.asarray(theta, dtype=np.float64)]),
                          "config": ConfigRecord(config or {})})
    msg = Message(content=content, dst_node_id=1, message_type=kind)
    ctx = Context(run_id=1, node_id=1, node_config=node_config, state=RecordDict(), run_config={})
    return app(msg, ctx)


def test_a_node_trains_exactly_its_party():
    from fl_helpers.interop import flower

    parties = make_parties()
    app = flower.client_app(parties)
    theta = np.arange(4.0) / 10
    settings = {"server-round": 2, "party-index": 3, "lr": 0.1, "local-epochs": 2, "batch-size": 8, "seed": 7}
    reply = call_client(app, "train", theta, {"partition-id": 3}, settings)
    update = reply.content["arrays"].to_numpy_ndarrays()[0]
    expected = parties[3].local_update(theta, lr=0.1, epochs=2, batch_size=8, seed=7, round=2, index=3)
    np.testing.assert_array_equal(update, expected.update)
    assert reply.content["metrics"]["num-examples"] == parties[3].n_samples == 41
    reply = call_client(app, "evaluate", theta, {"partition-id": 1}, {"party-index": 1})
    assert reply.content["metrics"]["loss"] == pytest.approx(parties[1].loss(theta), rel=1e-15)


@pytest.mark.parametrize("bad", [5, -1, "x", None])
def test_a_wrong_party_number_is_a_clear_error(bad):
    from fl_helpers.interop import flower

    app = flower.client_app(make_parties())
    config = {} if bad is None else {"partition-id": bad}
    with pytest.raises(ValueError, match=r"partition-id'\] must be a party index 0\.\.4, got"):
        call_client(app, "query", np.zeros(4), config)


def test_bad_arguments():
    from fl_helpers.interop import flower

    with pytest.raises(ValueError, match="runtime must be one of 'simulation', 'deployment'"):
        flower.run(make_parties(), lr=0.1, rounds=1, runtime="cloud")
    with pytest.raises(ValueError, match="lr"):
        flower.run(make_parties(), lr=-1.0, rounds=1)
    with pytest.raises(TypeError, match="aggregator must be callable"):
        flower.run(make_parties(), lr=0.1, rounds=1, aggregator="median")


def test_import_fl_helpers_does_not_import_flower():
    import subprocess

    code = "import sys, fl_helpers; print(any(m.split('.')[0] in ('flwr', 'ray') for m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"
