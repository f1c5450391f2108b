"""fl_helpers.engines: the loop and vectorized numpy engines compute the local work a hand-written loop does.

The reference, :func:`hand_local_update`, is written out here (MSE gradient and
minibatch loop by hand), independent of ``fl_helpers.parties.local_sgd`` which
both the loop engine and ``Party.local_update`` use.
"""

from __future__ import annotations

import numpy as np
import pytest

import fl_helpers as fl
from fl_helpers.engines import ENGINES, make_engine
from fl_helpers.engines.loop import LoopEngine
from fl_helpers.engines.vectorized import VectorizedEngine

NUMPY_ENGINES = ["loop", "vectorized"]


def hand_local_update(X, y, theta, *, lr, epochs, batch_size, keys=None):
    """Local gradient descent written out: sum of the step gradients 2/b X~^T (X~ theta_i - y)."""
    Xt = np.hstack([np.ones((len(y), 1)), X])
    local, total, m = np.array(theta, dtype=float), np.zeros(len(theta)), len(y)
    for epoch in range(epochs):
        order = np.arange(m) if keys is None else np.argsort(keys[epoch * m:(epoch + 1) * m], kind="stable")
        b = m if batch_size is None else batch_size
        for start in range(0, m, b):          # every row, the last batch possibly smaller
            rows = order[start:start + b]
            g = 2.0 / len(rows) * Xt[rows].T @ (Xt[rows] @ local - y[rows])
            local = local - lr * g
            total = total + g
    return total


# --- the engine interface ---------------------------------------------------------

@pytest.mark.parametrize("name, cls", [("loop", LoopEngine), ("vectorized", VectorizedEngine)])
def test_make_engine_by_name(unequal_parties, name, cls):
    eng = make_engine(name, unequal_parties)

    assert isinstance(eng, cls) and eng.name == name
    assert isinstance(eng.device, str) and eng.device and eng.dtype == np.float64
    assert eng.parties == tuple(unequal_parties) and eng.model is fl.models.linear


def test_make_engine_returns_an_engine_object_as_it_is(unequal_parties):
    eng = VectorizedEngine(unequal_parties)

    assert make_engine(eng, unequal_parties) is eng
    with pytest.raises(ValueError, match=r"engine options \['device'\] only apply when engine is a name"):
        make_engine(eng, unequal_parties, device="GPU")


def test_the_registry_names_the_three_engines():
    assert set(ENGINES) == {"loop", "vectorized", "tensorflow"}


@pytest.mark.parametrize("name", NUMPY_ENGINES)
def test_party_losses(unequal_parties, name):
    theta = np.array([0.2, -0.1, 0.4, 1.0])

    losses = make_engine(name, unequal_parties).party_losses(theta)

    assert losses.shape == (8,)
    want = [np.mean((p.data[1] - theta[0] - p.data[0] @ theta[1:]) ** 2) for p in unequal_parties]
    np.testing.assert_allclose(losses, want, rtol=1e-12)


@pytest.mark.parametrize("name", NUMPY_ENGINES)
@pytest.mark.parametrize("selected", [np.arange(8), np.array([1, 4, 6]), np.array([7]), np.array([0, 2, 3, 5, 7])])
@pytest.mark.parametrize("epochs, batch_size", [(1, None), (3, None), (2, 5), (1, 100), (2, 7)])
def test_local_work_equals_a_hand_written_loop(unequal_parties, name, selected, epochs, batch_size):
    theta = np.array([0.3, 0.0, -0.2, 0.1])
    eng = make_engine(name, unequal_parties)

    work = eng.local_work(theta, selected, lr=0.05, epochs=epochs, batch_size=batch_size, seed=0, round=4)

    want = []
    for i in selected:                       # party i's keys: the (seed, round, i) stream of the contract
        X, y = unequal_parties[i].data
        keys = fl.randomness.shuffle_keys(0, 4, [i], [len(y)], epochs) if batch_size else None
        want.append(hand_local_update(X, y, theta, lr=0.05, epochs=epochs, batch_size=batch_size, keys=keys))
    assert work.updates.shape == (len(selected), 4) and work.weights.shape == (len(selected),)
    np.testing.assert_allclose(work.updates, want, rtol=1e-10, atol=1e-12)
    np.testing.assert_array_equal(work.weights, [unequal_parties[i].n_samples for i in selected])


@pytest.mark.parametrize("name", NUMPY_ENGINES)
@pytest.mark.parametrize("epochs", [1, 3])
def test_full_batch_local_work_returns_the_losses_at_theta_for_free(unequal_parties, name, epochs):
    theta = np.array([0.3, 0.0, -0.2, 0.1])
    selected = np.array([0, 3, 6])

    work = make_engine(name, unequal_parties).local_work(theta, selected, lr=0.05, epochs=epochs,
                                                          batch_size=None)

    want = [np.mean((y - theta[0] - X @ theta[1:]) ** 2) for X, y in (unequal_parties[i].data for i in selected)]
    np.testing.assert_allclose(work.losses, want, rtol=1e-12)


@pytest.mark.parametrize("name", NUMPY_ENGINES)
def test_minibatch_local_work_has_no_free_losses(unequal_parties, name):
    work = make_engine(name, unequal_parties).local_work(np.zeros(4), np.arange(8), lr=0.05, epochs=1,
                                                         batch_size=3, seed=0)

    assert work.losses is None


@pytest.mark.parametrize("name", NUMPY_ENGINES)
def test_local_work_leaves_theta_untouched(unequal_parties, name):
    theta = fl.broadcast(np.array([0.3, 0.0, -0.2, 0.1]), np.arange(8))     # read-only

    make_engine(name, unequal_parties).local_work(theta, np.arange(8), lr=0.1, epochs=2, batch_size=3, seed=0)

    np.testing.assert_array_equal(theta, [0.3, 0.0, -0.2, 0.1])


# --- loop engine == vectorized engine for whole runs -----------------------------------

CONFIGS = {
    "fedsgd": dict(),
    "E1-full": dict(local_epochs=1),
    "E3-full": dict(local_epochs=3),
    "E2-b7": dict(local_epochs=2, batch_size=7),             # 7 divides none of 59, 22, 12, 8 and exceeds 5, 6, 4
    "E3-b5": dict(local_epochs=3, batch_size=5),
    "E1-b1": dict(local_epochs=1, batch_size=1),
    "E2-b100": dict(local_epochs=2, batch_size=100),         # larger than every party
    "frac0.5-E2-b3": dict(local_epochs=2, batch_size=3, fraction=0.5),
    "frac0.3-E1-full": dict(local_epochs=1, fraction=0.3),
    "frac0.8-E4-b4-theta0": dict(local_epochs=4, batch_size=4, fraction=0.8, theta0=[1.0, -1.0, 2.0, 0.5]),
}


def _run(parties, config, engine, weighting):
    kw = dict(CONFIGS[config], weighting=weighting, engine=engine)
    if config == "fedsgd":
        return fl.fedsgd(parties, lr=0.03, rounds=6, **kw)
    return fl.fedavg(parties, lr=0.03, rounds=6, seed=5, **kw)


@pytest.mark.parametrize("weighting", ["samples", "uniform"])
@pytest.mark.parametrize("config", list(CONFIGS))
def test_loop_and_vectorized_runs_agree(unequal_parties, config, weighting):
    loop = _run(unequal_parties, config, "loop", weighting)

    vec = _run(unequal_parties, config, "vectorized", weighting)

    assert loop.diverged_at is None and vec.diverged_at is None
    np.testing.assert_allclose(vec.thetas, loop.thetas, rtol=0, atol=1e-10)
    np.testing.assert_allclose(vec.losses, loop.losses, rtol=0, atol=1e-10)
    np.testing.assert_allclose(vec.party_losses, loop.party_losses, rtol=0, atol=1e-10)
    assert len(vec.selected) == len(loop.selected) == 6
    for a, b in zip(vec.selected, loop.selected, strict=True):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(vec.bytes_up, loop.bytes_up)
    np.testing.assert_array_equal(vec.bytes_down, loop.bytes_down)
    assert (vec.engine, loop.engine) == ("vectorized", "loop")
    assert not np.allclose(loop.thetas[-1], loop.thetas[0])        # the runs did move


def test_engines_agree_on_a_larger_quantity_split():
    X, y, _ = fl.make_regression(3000, 5, noise=1.0, seed=2)
    parties = fl.split(X, y, 40, scheme="quantity", skew=2.0, seed=2)
    kw = dict(lr=0.02, rounds=4, local_epochs=3, batch_size=16, fraction=0.6, seed=9)

    loop = fl.fedavg(parties, engine="loop", **kw)
    vec = fl.fedavg(parties, engine="vectorized", **kw)

    np.testing.assert_allclose(vec.thetas, loop.thetas, rtol=0, atol=1e-10)
    np.testing.assert_allclose(vec.party_losses, loop.party_losses, rtol=0, atol=1e-10)


# --- many parties -------------------------------------------------------------------------

def test_vectorized_engine_handles_ten_thousand_parties():
    n_parties, m, epochs, batch_size, lr, seed = 10_000, 5, 2, 2, 0.05, 0
    X, y, _ = fl.make_regression(n_parties * m, 3, noise=0.5, seed=0)
    parties = fl.split(X, y, n_parties, scheme="iid", seed=0)
    theta0 = np.array([0.5, -0.5, 0.25, 1.0])

    h = fl.fedavg(parties, lr=lr, rounds=1, local_epochs=epochs, batch_size=batch_size,
                  theta0=theta0, seed=seed, engine="vectorized", keep_updates=True)
    updates = h.updates[0]

    assert updates.shape == (n_parties, 4) and h.party_losses.shape == (2, n_parties)
    # the server step is the weighted mean of these updates (equal sizes: the plain mean)
    np.testing.assert_allclose(h.theta, theta0 - lr * updates.mean(axis=0), rtol=1e-12)
    # each party's update is what a hand-written loop computes with that party's own keys
    for i in np.random.default_rng(1).choice(n_parties, size=25, replace=False):
        Xi, yi = parties[i].data
        keys = fl.randomness.shuffle_keys(seed, 1, [i], [m], epochs)
        want = hand_local_update(Xi, yi, theta0, lr=lr, epochs=epochs, batch_size=batch_size, keys=keys)
        np.testing.assert_allclose(updates[i], want, rtol=1e-10, atol=1e-12)
        assert h.party_losses[1, i] == pytest.approx(np.mean((yi - h.theta[0] - Xi @ h.theta[1:]) ** 2), rel=1e-10)
