"""fl_helpers.server: the round's blocks, fedsgd, fedavg, train, and the History they return."""

from __future__ import annotations

import numpy as np
import pytest

import fl_helpers as fl
from fl_helpers.linear import mse

ENGINES = ["loop", "vectorized"]


def stacked(parties):
    return (np.concatenate([p.data[0] for p in parties]),
            np.concatenate([p.data[1] for p in parties]))


# --- the four blocks ------------------------------------------------------------

def test_broadcast_sends_a_read_only_copy():
    theta = np.array([1.0, 2.0])

    sent = fl.broadcast(theta, np.arange(3))

    np.testing.assert_array_equal(sent, theta)
    assert not sent.flags.writeable and not np.shares_memory(sent, theta)
    assert theta.flags.writeable


def test_server_update_by_hand():
    np.testing.assert_allclose(fl.server_update(np.array([1.0, 2.0]), np.array([10.0, -10.0]), lr=0.1),
                               [0.0, 3.0], rtol=1e-15)


def test_sample_parties_all_without_drawing():
    rng = np.random.default_rng(0)

    chosen = fl.sample_parties(5, 1.0, rng)

    np.testing.assert_array_equal(chosen, np.arange(5))
    assert rng.random() == np.random.default_rng(0).random()    # rng untouched


@pytest.mark.parametrize("n, fraction, k", [(10, 0.3, 3), (10, 0.01, 1), (7, 0.5, 4), (100, 0.25, 25)])
def test_sample_parties_draws_k_sorted_distinct_indices(n, fraction, k):
    chosen = fl.sample_parties(n, fraction, np.random.default_rng(1))

    assert len(chosen) == k == len(np.unique(chosen))
    assert np.all(np.diff(chosen) > 0) and chosen.min() >= 0 and chosen.max() < n
    np.testing.assert_array_equal(chosen, fl.sample_parties(n, fraction, np.random.default_rng(1)))


# --- equivalences with centralized gradient descent ------------------------------

@pytest.mark.parametrize("engine", ENGINES)
def test_one_party_fedsgd_is_centralized_gd(regression, engine):
    X, y, _ = regression

    fed = fl.fedsgd([fl.Party(X, y)], lr=0.1, rounds=30, engine=engine)
    cen = fl.centralized_gd(X, y, lr=0.1, rounds=30)

    np.testing.assert_allclose(fed.thetas, cen.thetas, rtol=0, atol=1e-12)
    np.testing.assert_allclose(fed.losses, cen.losses, rtol=1e-12)


@pytest.mark.parametrize("engine", ENGINES)
def test_sample_weighted_fedsgd_on_unequal_parties_is_centralized_gd(unequal_parties, engine):
    X, y = stacked(unequal_parties)
    theta0 = np.array([1.0, -1.0, 0.5, 2.0])

    fed = fl.fedsgd(unequal_parties, lr=0.1, rounds=40, theta0=theta0, engine=engine)
    cen = fl.centralized_gd(X, y, lr=0.1, rounds=40, theta0=theta0)

    np.testing.assert_allclose(fed.thetas, cen.thetas, rtol=0, atol=1e-12)
    np.testing.assert_allclose(fed.losses, cen.losses, rtol=1e-12)


def test_uniform_fedsgd_on_unequal_parties_is_not_centralized_gd(unequal_parties):
    X, y = stacked(unequal_parties)

    fed = fl.fedsgd(unequal_parties, lr=0.1, rounds=40, weighting="uniform")
    cen = fl.centralized_gd(X, y, lr=0.1, rounds=40)

    assert np.abs(fed.theta - cen.theta).max() > 1e-3


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("weighting", ["samples", "uniform"])
def test_fedavg_one_full_batch_epoch_is_gradient_descent_with_the_weights(unequal_parties, engine, weighting):
    """FedAvg with E = 1, full batch: theta <- theta - lr sum_i w_i grad L_i(theta), written out here."""
    a = fl.fedavg(unequal_parties, lr=0.05, rounds=25, local_epochs=1, batch_size=None,
                  weighting=weighting, seed=0, engine=engine)

    sizes = np.array([p.n_samples for p in unequal_parties], dtype=float)
    w = sizes / sizes.sum() if weighting == "samples" else np.full(len(sizes), 1 / len(sizes))
    data = [(np.hstack([np.ones((p.n_samples, 1)), p.data[0]]), p.data[1]) for p in unequal_parties]
    theta, thetas = np.zeros(4), [np.zeros(4)]
    for _ in range(25):
        grads = [2 / len(y) * Xt.T @ (Xt @ theta - y) for Xt, y in data]
        theta = theta - 0.05 * sum(wi * g for wi, g in zip(w, grads, strict=True))
        thetas.append(theta)
    np.testing.assert_allclose(a.thetas, thetas, rtol=0, atol=1e-12)


def test_fedavg_server_model_is_the_weighted_mean_of_local_models(unequal_parties):
    """theta - lr * sum_i w_i (theta - theta_i) / lr  ==  sum_i w_i theta_i."""
    theta0 = np.array([0.5, 0.5, -0.5, 0.0])
    local = [p.local_update(theta0, lr=0.05, epochs=3) for p in unequal_parties]
    w = fl.aggregation_weights([u.weight for u in local])

    h = fl.fedavg(unequal_parties, lr=0.05, rounds=1, local_epochs=3, theta0=theta0)

    np.testing.assert_allclose(h.theta, w @ np.array([u.theta for u in local]), rtol=1e-12, atol=1e-14)


# --- fixed points ---------------------------------------------------------------

@pytest.mark.parametrize("engine", ENGINES)
def test_uniform_fedsgd_reaches_the_uniform_fixed_point_not_least_squares(concept_shift_parties, engine):
    parties = concept_shift_parties
    theta_circ = fl.least_squares(parties, weighting="uniform")
    theta_star = fl.least_squares(parties, weighting="samples")

    h = fl.fedsgd(parties, lr=0.15, rounds=400, weighting="uniform", engine=engine)

    np.testing.assert_allclose(h.theta, theta_circ, atol=1e-8)
    assert np.linalg.norm(h.theta - theta_star) > 1.0          # the sizes differ: a different point
    # the fixed point's identity: the unweighted mean of the local gradients vanishes
    mean_grad = sum(p.gradient(theta_circ) for p in parties) / len(parties)
    np.testing.assert_allclose(mean_grad, 0.0, atol=1e-10)


def test_weighted_fedsgd_reaches_least_squares(concept_shift_parties):
    h = fl.fedsgd(concept_shift_parties, lr=0.15, rounds=400)

    np.testing.assert_allclose(h.theta, fl.least_squares(concept_shift_parties), atol=1e-8)


def _nonlinear_covariate_parties():
    """Covariate split of a target with curvature: each region has its own best linear fit."""
    X, y, _ = fl.make_regression(400, 3, noise=0.0, seed=1)
    y = y + X[:, 0] ** 2 + X[:, 1] * X[:, 2]
    return fl.split(X, y, 5, scheme="covariate", skew=10.0, seed=1)


def _fedavg_limit(parties, lr, epochs):
    h = fl.fedavg(parties, lr=lr, rounds=int(40 / lr), local_epochs=epochs, engine="vectorized")
    assert np.abs(h.thetas[-1] - h.thetas[-2]).max() < 1e-12          # converged
    return h.theta


def test_fedavg_with_several_local_epochs_drifts_from_least_squares_on_non_iid_data():
    parties = _nonlinear_covariate_parties()
    theta_star = fl.least_squares(parties)

    drift = {lr: np.linalg.norm(_fedavg_limit(parties, lr, 5) - theta_star) for lr in (0.04, 0.01)}
    no_drift = np.linalg.norm(_fedavg_limit(parties, 0.04, 1) - theta_star)

    assert drift[0.04] > 1e-2                       # client drift: a biased fixed point
    assert drift[0.01] < drift[0.04] / 2            # ... which shrinks with the learning rate
    assert no_drift < 1e-10                         # one local step (FedSGD) has no drift


def test_fedavg_has_no_drift_when_all_local_optima_coincide():
    X, y, _ = fl.make_regression(400, 3, noise=0.0, seed=1)       # exact linear target
    parties = fl.split(X, y, 5, scheme="covariate", skew=10.0, seed=1)

    np.testing.assert_allclose(_fedavg_limit(parties, 0.04, 5), fl.least_squares(parties), atol=1e-10)


# --- History -----------------------------------------------------------------------

@pytest.mark.parametrize("engine", ENGINES)
def test_history_shapes_and_bytes(unequal_parties, engine):
    n, p, rounds = 8, 4, 6

    h = fl.fedsgd(unequal_parties, lr=0.05, rounds=rounds, engine=engine)

    assert h.thetas.shape == (rounds + 1, p)
    assert h.losses.shape == (rounds + 1,)
    assert h.party_losses.shape == (rounds + 1, n)
    np.testing.assert_array_equal(h.bytes_up, [n * (p + 1) * 8] * rounds)
    np.testing.assert_array_equal(h.bytes_down, [n * p * 8] * rounds)
    assert h.rounds == rounds and h.diverged_at is None and not h.diverged
    assert len(h.selected) == rounds and all(np.array_equal(s, np.arange(n)) for s in h.selected)
    assert h.engine == engine and isinstance(h.device, str) and h.device
    assert h.updates is None and h.weights is None
    assert h.message == f"{rounds} rounds, final loss {h.losses[-1]:.6g}"
    np.testing.assert_array_equal(h.theta, h.thetas[-1])


def test_history_records_the_global_and_party_losses(unequal_parties):
    X, y = stacked(unequal_parties)
    theta0 = np.array([0.0, 1.0, 0.0, -1.0])

    h = fl.fedsgd(unequal_parties, lr=0.05, rounds=3, theta0=theta0)

    np.testing.assert_array_equal(h.thetas[0], theta0)
    for t in range(4):
        assert h.losses[t] == pytest.approx(mse(h.thetas[t], X, y), rel=1e-12)
        np.testing.assert_allclose(h.party_losses[t], [p.loss(h.thetas[t]) for p in unequal_parties],
                                   rtol=1e-12)


def test_bytes_count_only_the_sampled_parties(unequal_parties):
    h = fl.fedavg(unequal_parties, lr=0.05, rounds=5, fraction=0.25, seed=3)   # 2 of 8 parties

    assert all(len(s) == 2 for s in h.selected)
    np.testing.assert_array_equal(h.bytes_up, [2 * 5 * 8] * 5)
    np.testing.assert_array_equal(h.bytes_down, [2 * 4 * 8] * 5)
    assert len({tuple(s) for s in h.selected}) > 1                 # a new draw every round


@pytest.mark.parametrize("engine", ENGINES)
def test_zero_rounds_gives_a_one_row_history(unequal_parties, engine):
    h = fl.fedavg(unequal_parties, lr=0.1, rounds=0, engine=engine)

    assert h.thetas.shape == (1, 4) and h.losses.shape == (1,) and h.party_losses.shape == (1, 8)
    assert h.bytes_up.shape == (0,) and h.bytes_down.shape == (0,) and h.selected == []
    assert h.rounds == 0
    np.testing.assert_array_equal(h.theta, np.zeros(4))


def test_fedavg_is_deterministic_given_a_seed(unequal_parties):
    kw = dict(lr=0.05, rounds=4, local_epochs=2, batch_size=3, fraction=0.5)

    a = fl.fedavg(unequal_parties, seed=7, **kw)
    b = fl.fedavg(unequal_parties, seed=7, **kw)
    c = fl.fedavg(unequal_parties, seed=8, **kw)

    np.testing.assert_array_equal(a.thetas, b.thetas)
    assert not np.array_equal(a.thetas, c.thetas)


DIVERGING = [
    ("fedsgd", dict(lr=10.0, rounds=20)),
    ("fedsgd", dict(lr=1e300, rounds=5)),
    ("fedsgd", dict(lr=1e308, rounds=5)),                       # theta itself overflows in round 1
    ("fedavg", dict(lr=5.0, rounds=5, local_epochs=2000)),      # local models overflow to inf/nan
    ("fedavg", dict(lr=3.0, rounds=20, local_epochs=3, batch_size=2, fraction=0.5, seed=0)),
]


@pytest.mark.filterwarnings("error")
@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("algorithm, kwargs", DIVERGING)
def test_divergence_stops_the_run_cleanly(unequal_parties, engine, algorithm, kwargs):
    h = getattr(fl, algorithm)(unequal_parties, engine=engine, **kwargs)

    k = h.diverged_at
    assert isinstance(k, int) and 1 <= k <= kwargs["rounds"] and h.diverged
    assert len(h.losses) == k and h.thetas.shape == (k, 4) and h.party_losses.shape == (k, 8)
    assert len(h.bytes_up) == len(h.bytes_down) == len(h.selected) == k - 1
    assert np.all(np.isfinite(h.losses)) and np.all(np.isfinite(h.thetas))
    assert np.all(np.isfinite(h.party_losses))
    assert f"diverged at round {k}" in h.message and "learning rate" in h.message
    assert h.diverged_reason in h.message and h.rounds == k - 1
    assert "diverged_at=" in repr(h)


@pytest.mark.parametrize("engine", ENGINES)
def test_divergence_round_is_where_centralized_gd_diverges(unequal_parties, engine):
    """Weighted FedSGD is centralized GD, so both must blow up in the same round."""
    X, y = stacked(unequal_parties)
    h = fl.fedsgd(unequal_parties, lr=10.0, rounds=20, engine=engine)
    ref = fl.centralized_gd(X, y, lr=10.0, rounds=20)

    assert h.diverged_at == ref.diverged_at is not None
    np.testing.assert_allclose(h.losses, ref.losses, rtol=1e-10)


# --- train: the pluggable round ---------------------------------------------------

def test_train_keeps_the_per_party_updates(unequal_parties):
    theta0 = np.array([0.1, 0.2, 0.3, 0.4])

    h = fl.train(unequal_parties, lr=0.05, rounds=2, theta0=theta0, keep_updates=True)

    assert len(h.updates) == len(h.weights) == 2 and h.updates[0].shape == (8, 4)
    np.testing.assert_allclose(h.updates[0], [p.gradient(theta0) for p in unequal_parties], rtol=1e-13)
    np.testing.assert_allclose(h.weights[0], fl.aggregation_weights([p.n_samples for p in unequal_parties]))
    np.testing.assert_allclose(h.updates[1], [p.gradient(h.thetas[1]) for p in unequal_parties], rtol=1e-12)


def test_train_uses_the_given_aggregator(unequal_parties):
    calls = []

    def first_party_only(updates, weights, *, rng):
        calls.append((updates.shape, weights.shape, type(rng).__name__))
        return updates[0]

    h = fl.train(unequal_parties, lr=0.05, rounds=3, aggregator=first_party_only)
    ref = fl.fedsgd(unequal_parties[:1], lr=0.05, rounds=3)

    assert calls == [((8, 4), (8,), "Generator")] * 3
    np.testing.assert_allclose(h.thetas, ref.thetas, rtol=1e-13)


def test_an_engine_object_is_reused(unequal_parties):
    from fl_helpers.engines.vectorized import VectorizedEngine

    eng = VectorizedEngine(unequal_parties)

    h = fl.fedsgd(unequal_parties, lr=0.05, rounds=3, engine=eng)

    assert h.engine == "vectorized"
    np.testing.assert_allclose(h.thetas, fl.fedsgd(unequal_parties, lr=0.05, rounds=3).thetas, atol=1e-13)


def test_parties_may_be_a_tuple(unequal_parties):
    a = fl.fedsgd(tuple(unequal_parties), lr=0.05, rounds=2)
    b = fl.fedsgd(unequal_parties, lr=0.05, rounds=2)
    np.testing.assert_array_equal(a.thetas, b.thetas)


def test_a_stragglers_plan_decides_each_partys_epochs():
    X, y, _ = fl.make_regression(120, 2, noise=0.3, seed=0)
    parties = fl.split(X, y, 4, seed=0)
    calls = []

    def plan(selected, round):
        calls.append((round, list(selected)))
        return np.array([0, 1, 3, 3])[: len(selected)]          # party 0 dropped, party 1 one epoch

    run = fl.train(parties, lr=0.05, rounds=2, local_epochs=3, seed=0, stragglers=plan)
    assert calls == [(1, [0, 1, 2, 3]), (2, [0, 1, 2, 3])]
    assert [list(s) for s in run.selected] == [[1, 2, 3], [1, 2, 3]]
    theta = run.thetas[0]                                      # round 1 by hand: full-batch steps
    outs, ws = [], []
    for i, epochs in ((1, 1), (2, 3), (3, 3)):
        Xi, yi = parties[i].data
        local = theta.copy()
        for _ in range(epochs):
            Xt = np.hstack([np.ones((len(Xi), 1)), Xi])
            local = local - 0.05 * 2 * Xt.T @ (Xt @ local - yi) / len(Xi)
        outs.append(local)
        ws.append(len(Xi))
    np.testing.assert_allclose(run.thetas[1], np.average(outs, axis=0, weights=ws), rtol=1e-12, atol=1e-12)
    with pytest.raises(ValueError, match="stragglers plan must return 4 integer epochs in 0..3"):
        fl.train(parties, lr=0.05, rounds=1, local_epochs=3, stragglers=lambda s, t: np.full(len(s), 4))


def test_hooks_with_a_start_method_are_started_before_each_run():
    X, y, _ = fl.make_regression(60, 2, noise=0.3, seed=0)
    parties = fl.split(X, y, 3, seed=0)

    class Counting:
        def __init__(self):
            self.starts, self.calls = [], 0

        def start(self, theta, n_parties):
            self.starts.append((theta.copy(), n_parties, self.calls))

        def __call__(self, update, *, party, round, rng):
            self.calls += 1
            return update

    hook = Counting()
    for _ in range(2):
        fl.train(parties, lr=0.05, rounds=2, seed=0, client_transform=hook)
    assert [(n, calls) for _, n, calls in hook.starts] == [(3, 0), (3, 6)]     # before round 1 of each run
    np.testing.assert_array_equal(hook.starts[0][0], np.zeros(3))
