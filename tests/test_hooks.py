"""The seams of the round (fl_helpers.server.train), each with a tiny consumer written here.

client_transform (L2 clipping), aggregator (coordinate median, hierarchical
aggregation, server-side noise), server_lr / server_optimizer (FedAvgM),
metrics and engine objects (among them one whose parties keep state between
rounds and whose model is its own). References: hand-written FedAvg/FedAvgM loops
over ``Party.local_update``, gradients and medians computed by hand.
"""

from __future__ import annotations

import numpy as np
import pytest

import fl_helpers as fl
from fl_helpers import randomness
from fl_helpers.aggregation import Aggregate, weighted_sum
from fl_helpers.engines import LocalWork, make_engine

SEED = 11
LR = 0.05
ROUNDS = 5
SIZES = [5, 59, 22, 6, 12, 4, 8, 4]


@pytest.fixture(scope="module")
def parties():
    X, y, _ = fl.make_regression(120, 3, noise=0.5, seed=0)
    parties = fl.split(X, y, 8, scheme="quantity", skew=1.5, seed=1)
    assert [p.n_samples for p in parties] == SIZES
    return parties


@pytest.fixture(scope="module")
def other_parties():
    X, y, _ = fl.make_regression(120, 3, noise=0.5, seed=0)
    return fl.split(X, y, 8, scheme="quantity", skew=1.5, seed=1)     # same data, other Party objects


def hand_gradient(theta, X, y):
    Xt = np.hstack([np.ones((len(y), 1)), X])
    return 2.0 / len(y) * Xt.T @ (Xt @ theta - y)


def hand_sample(seed, t, n, k):
    rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(1, t)))
    return np.sort(rng.choice(n, size=k, replace=False))


def clip(update, bound):
    norm = np.linalg.norm(update)
    return update * min(1.0, bound / norm) if norm > 0 else update


# ----------------------------------------------------------------------------- client_transform

def test_clipping_transform_bounds_every_aggregated_update(parties):
    kw = dict(lr=LR, rounds=ROUNDS, local_epochs=2, batch_size=5, fraction=0.5, seed=SEED, keep_updates=True)
    free = fl.fedavg(parties, **kw)
    norms = np.concatenate([np.linalg.norm(u, axis=1) for u in free.updates])
    bound = float(np.median(norms))                       # about half the updates get clipped
    assert np.sum(norms > bound * 1.01) >= 3
    clipped = fl.fedavg(parties, client_transform=lambda u, *, party, round, rng: clip(u, bound), **kw)
    for u in clipped.updates:
        assert np.all(np.linalg.norm(u, axis=1) <= bound * (1 + 1e-12))
    assert np.max(np.abs(clipped.thetas[-1] - free.thetas[-1])) > 1e-3
    # round 1 by hand: same broadcast model, so the clipped rows are the clipped free rows
    np.testing.assert_allclose(clipped.updates[0], np.array([clip(u, bound) for u in free.updates[0]]),
                               rtol=1e-15, atol=0)
    delta = -LR * clipped.weights[0] @ clipped.updates[0]
    np.testing.assert_allclose(clipped.thetas[1], clipped.thetas[0] + delta, rtol=0, atol=1e-15)


def test_transform_sees_its_party_round_and_documented_rng(parties):
    calls = []

    def transform(update, *, party, round, rng):
        calls.append((round, party, rng.random(3), update.dtype, update.shape))
        return update

    h = fl.fedavg(parties, lr=LR, rounds=ROUNDS, fraction=0.3, seed=SEED, client_transform=transform)
    expected = [(t, int(i)) for t in range(1, ROUNDS + 1) for i in h.selected[t - 1]]
    assert [(t, i) for t, i, *_ in calls] == expected
    for t, i, draws, dtype, shape in calls:
        assert dtype == np.float64 and shape == (4,)
        np.testing.assert_array_equal(draws, randomness.generator(SEED, "transform", t, i).random(3))
        ref = np.random.default_rng(np.random.SeedSequence(SEED, spawn_key=(2, t, i)))
        np.testing.assert_array_equal(draws, ref.random(3))


def test_identity_transform_changes_nothing(parties):
    kw = dict(lr=LR, rounds=ROUNDS, batch_size=5, fraction=0.5, seed=SEED)
    a = fl.fedavg(parties, **kw)
    b = fl.fedavg(parties, client_transform=lambda u, **_: u, **kw)
    np.testing.assert_array_equal(a.thetas, b.thetas)


# ----------------------------------------------------------------------------- aggregator

def median_aggregator(updates, weights, *, rng):
    return np.median(updates, axis=0)


@pytest.fixture
def toy():
    """Three one-feature parties whose gradients at theta = 0 are easy by hand.

    g = 2/m X~^T (X~ 0 - y) = -2/m X~^T y:
    A: x = 1, y = 1          -> (-2, -2)
    B: x = 2, y = 3          -> (-6, -12)
    C: x = (0, 0), y = (1, 3) -> (-4, 0)
    """
    return [fl.Party([[1.0]], [1.0]), fl.Party([[2.0]], [3.0]), fl.Party([[0.0], [0.0]], [1.0, 3.0])]


def test_coordinate_median_aggregator_gives_the_hand_computed_round(toy):
    h = fl.fedsgd(toy, lr=0.1, rounds=1, aggregator=median_aggregator, keep_updates=True)
    np.testing.assert_allclose(h.updates[0], [[-2, -2], [-6, -12], [-4, 0]], rtol=1e-15)
    # median (-4, -2); theta_1 = 0 - 0.1 * median
    np.testing.assert_allclose(h.thetas[1], [0.4, 0.2], rtol=1e-15, atol=0)
    # the default: sample-weighted mean with weights (1, 1, 2) / 4 = (-4, -3.5)
    d = fl.fedsgd(toy, lr=0.1, rounds=1)
    np.testing.assert_allclose(d.thetas[1], [0.4, 0.35], rtol=1e-15, atol=0)


def test_aggregate_combine_of_groups_is_the_weighted_sum_of_all():
    rng = np.random.default_rng(0)
    updates = rng.standard_normal((8, 4))
    weights = np.array(SIZES, dtype=float) / sum(SIZES)
    hand_total = np.zeros(4)
    for w, u in zip(weights, updates, strict=True):
        hand_total += w * u
    a = weighted_sum(updates[:3], weights[:3])
    b = weighted_sum(updates[3:], weights[3:])
    both = Aggregate.combine([a, b])
    everyone = weighted_sum(updates, weights)
    np.testing.assert_allclose(both.total, everyone.total, rtol=0, atol=1e-15)
    np.testing.assert_allclose(both.total, hand_total, rtol=0, atol=1e-15)
    assert both.weight == pytest.approx(1.0, abs=1e-15)
    np.testing.assert_allclose(both.mean, hand_total, rtol=0, atol=1e-15)
    with pytest.raises(TypeError, match="parts"):
        Aggregate.combine([a, np.ones(4)])


def test_hierarchical_aggregator_inside_train_gives_the_default_history(parties):
    seen = []

    def two_edges(updates, weights, *, rng):
        half = len(weights) // 2
        seen.append(len(weights))
        edges = [weighted_sum(updates[:half], weights[:half]), weighted_sum(updates[half:], weights[half:])]
        return Aggregate.combine(edges)

    kw = dict(lr=LR, rounds=ROUNDS, local_epochs=2, batch_size=5, fraction=0.5, seed=SEED)
    default = fl.fedavg(parties, **kw)
    edges = fl.fedavg(parties, aggregator=two_edges, **kw)
    assert seen == [4] * ROUNDS
    np.testing.assert_allclose(edges.thetas, default.thetas, rtol=0, atol=1e-13)
    np.testing.assert_allclose(edges.losses, default.losses, rtol=1e-13, atol=0)


def test_aggregator_draws_from_the_aggregate_stream(parties):
    """Server-side Gaussian noise: reproducible by hand from generator(seed, "aggregate", t)."""
    sigma = 0.1

    def noisy(updates, weights, *, rng):
        agg = weighted_sum(updates, weights)
        return agg.mean + sigma * rng.standard_normal(agg.mean.shape)

    h = fl.fedsgd(parties, lr=LR, rounds=ROUNDS, seed=SEED, aggregator=noisy)
    theta = np.zeros(4)
    weights = np.array(SIZES, dtype=float) / sum(SIZES)
    for t in range(1, ROUNDS + 1):
        mean = sum(w * hand_gradient(theta, *p.data) for w, p in zip(weights, parties, strict=True))
        noise = sigma * np.random.default_rng(np.random.SeedSequence(SEED, spawn_key=(3, t))).standard_normal(4)
        theta = theta - LR * (mean + noise)
        np.testing.assert_allclose(h.thetas[t], theta, rtol=0, atol=1e-12)
    # without the noise the run differs by about lr * sigma a round
    plain = fl.fedsgd(parties, lr=LR, rounds=ROUNDS, seed=SEED)
    assert np.max(np.abs(plain.thetas[1] - h.thetas[1])) > 1e-3


# ----------------------------------------------------------------------------- server update

def hand_fedavgm(parties, *, lr, rounds, epochs, batch_size, fraction, seed, server_lr, momentum):
    """FedAvgM by hand: Delta_t = sum_i w_i (theta_i - theta), m_t = b m_{t-1} + Delta_t, theta += lr m_t."""
    n = len(parties)
    k = max(1, round(fraction * n))
    theta, m = np.zeros(4), np.zeros(4)
    thetas = [theta]
    for t in range(1, rounds + 1):
        sel = hand_sample(seed, t, n, k) if fraction < 1 else np.arange(n)
        sizes = np.array([parties[i].n_samples for i in sel], dtype=float)
        delta = np.zeros(4)
        for w, i in zip(sizes / sizes.sum(), sel, strict=True):
            local = parties[i].local_update(theta, lr=lr, epochs=epochs, batch_size=batch_size, seed=seed,
                                            round=t, index=int(i)).theta
            delta += w * (local - theta)
        m = momentum * m + delta
        theta = theta + server_lr * m
        thetas.append(theta)
    return np.array(thetas)


def test_fedavgm_equals_the_hand_written_loop(parties):
    kw = dict(lr=LR, rounds=ROUNDS, batch_size=5, fraction=0.5, seed=SEED)
    h = fl.fedavg(parties, local_epochs=2, server_optimizer=fl.optim.sgd(1.0, momentum=0.9), **kw)
    ref = hand_fedavgm(parties, epochs=2, server_lr=1.0, momentum=0.9, **kw)
    np.testing.assert_allclose(h.thetas, ref, rtol=0, atol=1e-12)
    # momentum matters: plain FedAvg is the same loop with momentum 0
    plain = fl.fedavg(parties, local_epochs=2, **kw)
    np.testing.assert_allclose(plain.thetas, hand_fedavgm(parties, epochs=2, server_lr=1.0, momentum=0.0, **kw),
                               rtol=0, atol=1e-12)
    assert np.max(np.abs(plain.thetas[-1] - h.thetas[-1])) > 1e-2


def test_server_lr_one_without_optimizer_is_the_default(parties):
    kw = dict(lr=LR, rounds=ROUNDS, batch_size=5, fraction=0.5, seed=SEED)
    a = fl.fedavg(parties, **kw)
    b = fl.fedavg(parties, server_lr=1.0, server_optimizer=None, **kw)
    np.testing.assert_array_equal(a.thetas, b.thetas)
    c = fl.fedavg(parties, server_optimizer=fl.optim.sgd(1.0), **kw)
    np.testing.assert_array_equal(a.thetas, c.thetas)


def test_server_lr_half_halves_the_first_step(parties):
    weights = np.array(SIZES, dtype=float) / sum(SIZES)
    mean = sum(w * hand_gradient(np.zeros(4), *p.data) for w, p in zip(weights, parties, strict=True))
    full = fl.fedsgd(parties, lr=0.1, rounds=1)
    half = fl.fedsgd(parties, lr=0.1, rounds=1, server_lr=0.5)
    np.testing.assert_allclose(full.thetas[1], -0.1 * mean, rtol=1e-13, atol=0)
    np.testing.assert_allclose(half.thetas[1], -0.05 * mean, rtol=1e-13, atol=0)


def test_server_lr_schedule_is_called_each_round(parties):
    asked = []

    def schedule(t):
        asked.append(t)
        return 1.0 / t

    h = fl.fedavg(parties, lr=LR, rounds=ROUNDS, local_epochs=2, fraction=0.5, seed=SEED,
                  server_lr=schedule, keep_updates=True)
    assert asked == list(range(1, ROUNDS + 1))
    for t in range(1, ROUNDS + 1):
        delta = -LR * h.weights[t - 1] @ h.updates[t - 1]
        np.testing.assert_allclose(h.thetas[t], h.thetas[t - 1] + delta / t, rtol=0, atol=1e-14)
    assert np.max(np.abs(h.thetas[2] - h.thetas[1])) > 1e-4


def test_server_lr_with_an_optimizer_is_refused(parties):
    with pytest.raises(ValueError, match="server_lr.*0.5"):
        fl.fedavg(parties, lr=LR, rounds=1, server_lr=0.5, server_optimizer=fl.optim.sgd(1.0, momentum=0.9))


# ----------------------------------------------------------------------------- metrics

def test_metric_functions_give_one_value_a_round(parties):
    h = fl.fedavg(parties, lr=LR, rounds=ROUNDS, local_epochs=2, fraction=0.5, seed=SEED,
                  metrics={"norm": lambda info: np.linalg.norm(info.delta),
                           "round": lambda info: info.round,
                           "k": lambda info: len(info.selected)})
    assert set(h.metrics) == {"norm", "round", "k"}
    assert h.metrics["norm"].shape == (ROUNDS,)
    steps = np.linalg.norm(np.diff(h.thetas, axis=0), axis=1)
    np.testing.assert_allclose(h.metrics["norm"], steps, rtol=1e-12, atol=0)
    np.testing.assert_array_equal(h.metrics["round"], np.arange(1, ROUNDS + 1))
    np.testing.assert_array_equal(h.metrics["k"], np.full(ROUNDS, 4))


class CountingClipper:
    """A client transform with its own metrics series: how many updates it clipped this round."""

    def __init__(self, bound):
        self.bound, self.clipped, self.round = bound, 0, None

    def __call__(self, update, *, party, round, rng):
        if round != self.round:
            self.round, self.clipped = round, 0
        if np.linalg.norm(update) > self.bound:
            self.clipped += 1
        return clip(update, self.bound)

    def metrics(self, info):
        return {"clipped": self.clipped}


def test_a_hook_object_adds_its_own_metrics(parties):
    kw = dict(lr=LR, rounds=ROUNDS, fraction=0.5, seed=SEED, keep_updates=True)
    free = fl.fedavg(parties, **kw)
    bound = float(np.median(np.linalg.norm(free.updates[0], axis=1)))
    h = fl.fedavg(parties, client_transform=CountingClipper(bound),
                  metrics={"norm": lambda info: np.linalg.norm(info.delta)}, **kw)
    assert set(h.metrics) == {"norm", "clipped"}
    assert h.metrics["clipped"][0] == np.sum(np.linalg.norm(free.updates[0], axis=1) > bound)
    assert h.metrics["clipped"][0] >= 1
    assert h.metrics["clipped"].shape == (ROUNDS,)


# ----------------------------------------------------------------------------- bad input

def test_non_callable_client_transform_is_refused(parties):
    with pytest.raises(TypeError, match="client_transform.*int"):
        fl.fedavg(parties, lr=LR, rounds=1, client_transform=5)


def test_non_callable_aggregator_is_refused(parties):
    with pytest.raises(TypeError, match="aggregator.*str"):
        fl.fedavg(parties, lr=LR, rounds=1, aggregator="median")


def test_non_callable_metric_is_refused(parties):
    with pytest.raises(TypeError, match="metrics"):
        fl.fedavg(parties, lr=LR, rounds=1, metrics={"norm": 3.0})


def test_transform_returning_a_wrong_shape_is_refused(parties):
    with pytest.raises(ValueError, match=r"client_transform.*\(4,\).*\(3,\)"):
        fl.fedavg(parties, lr=LR, rounds=1, client_transform=lambda u, **_: u[:3])


def test_unknown_hook_keyword_is_refused(parties):
    with pytest.raises(TypeError, match="client_transfrom"):
        fl.fedavg(parties, lr=LR, rounds=1, client_transfrom=lambda u, **_: u)
    with pytest.raises(TypeError, match="batch_size"):
        fl.fedsgd(parties, lr=LR, rounds=1, batch_size=5)


def test_server_optimizer_without_step_is_refused(parties):
    with pytest.raises(TypeError, match="server_optimizer"):
        fl.fedavg(parties, lr=LR, rounds=1, server_optimizer=lambda theta, delta: theta)


# ----------------------------------------------------------------------------- engine objects

def test_engine_built_for_other_parties_is_refused(parties, other_parties):
    with pytest.raises(ValueError, match="other parties"):
        fl.fedsgd(parties, lr=LR, rounds=1, engine=make_engine("vectorized", other_parties))
    with pytest.raises(ValueError, match="other parties"):
        fl.fedavg(parties[:7], lr=LR, rounds=1, engine=make_engine("loop", parties))


@pytest.mark.parametrize("name", ["loop", "vectorized"])
def test_engine_built_for_these_parties_equals_its_name(parties, name):
    eng = make_engine(name, parties)
    kw = dict(lr=LR, rounds=ROUNDS, local_epochs=2, batch_size=5, fraction=0.5, seed=SEED)
    by_object = fl.fedavg(parties, engine=eng, **kw)
    by_name = fl.fedavg(parties, engine=name, **kw)
    assert by_object.engine == name
    np.testing.assert_array_equal(by_object.thetas, by_name.thetas)
    again = fl.fedavg(parties, engine=eng, **kw)             # reusable
    np.testing.assert_array_equal(again.thetas, by_name.thetas)
    assert by_name.losses[-1] < by_name.losses[0]


# ----------------------------------------------------------------------------- engines whose parties keep state

class Counters:
    """Party i holds a number c_i (state, starting at i) that its local work moves up by 1; the global
    model is one number, not the parties' linear model. Party i's loss is (theta - c_i)^2, its update
    the gradient 2 (theta - c_i), both at the c_i it holds when theta arrives."""

    name, device, dtype, model = "counters", "test", np.dtype(np.float64), None

    def __init__(self, parties, *, send_losses=True):
        self.parties, self.send_losses = tuple(parties), send_losses
        self.c = np.arange(len(parties), dtype=np.float64)

    def initial_theta(self, theta0):
        return np.array([10.0]) if theta0 is None else np.asarray(theta0, dtype=np.float64)

    def local_work(self, theta, selected, *, lr, epochs, batch_size, seed, round):
        losses = self.party_losses(theta)                 # every party's, before the work changes c
        updates = 2.0 * (theta[0] - self.c[selected])[:, None]
        self.c[selected] += 1.0
        return LocalWork(updates, np.ones(len(selected)), losses if self.send_losses else None)

    def party_losses(self, theta):
        return (theta[0] - self.c) ** 2


def hand_counters(n, rounds, lr, seed, k, theta=10.0):
    c, w = np.arange(n, dtype=np.float64), np.array(SIZES) / sum(SIZES)
    thetas, losses = [theta], []
    for t in range(1, rounds + 1):
        S = hand_sample(seed, t, n, k)
        losses.append(w @ (theta - c) ** 2)               # the model broadcast in round t, at the c it met
        theta = theta - lr * np.mean(2.0 * (theta - c[S]))
        c[S] += 1.0
        thetas.append(theta)
    losses.append(w @ (theta - c) ** 2)
    return np.array(thetas), np.array(losses)


def test_an_engine_with_party_state_chooses_the_model_and_records_its_losses(parties):
    h = fl.train(parties, lr=0.1, rounds=ROUNDS, fraction=0.5, seed=SEED, engine=Counters(parties))
    thetas, losses = hand_counters(8, ROUNDS, 0.1, SEED, 4)
    np.testing.assert_allclose(h.thetas[:, 0], thetas, rtol=1e-12)
    np.testing.assert_allclose(h.losses, losses, rtol=1e-12)
    started = fl.train(parties, lr=0.1, rounds=1, theta0=[3.0], engine=Counters(parties))
    assert h.thetas.shape == (ROUNDS + 1, 1) and started.thetas[0, 0] == 3.0   # not the parties' 4 numbers
    with pytest.raises(ValueError, match=r"theta0 must have shape \(4,\)"):
        fl.train(parties, lr=0.1, rounds=1, theta0=[3.0])                     # without the engine's seam


def test_without_all_losses_the_state_after_the_work_would_be_recorded(parties):
    late = fl.train(parties, lr=0.1, rounds=ROUNDS, fraction=0.5, seed=SEED,
                    engine=Counters(parties, send_losses=False))
    thetas, losses = hand_counters(8, ROUNDS, 0.1, SEED, 4)
    np.testing.assert_allclose(late.thetas[:, 0], thetas, rtol=1e-12)      # the same run ...
    assert not np.allclose(late.losses[:-1], losses[:-1])                   # ... with losses at the moved c
