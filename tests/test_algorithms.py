"""FedProx, SCAFFOLD, stragglers and held-out evaluation: the local-work options of the round.

References are independent of the library: hand-written loops of the papers'
update rules, closed forms on least squares, and numpy's lstsq on pooled data.
"""

import numpy as np
import pytest
from optional import require_tensorflow

import fl_helpers as fl
from fl_helpers import models
from fl_helpers.linear import add_bias
from fl_helpers.widgets.explorer import explorer_parties

LR = 0.05


@pytest.fixture(scope="module")
def drifting():
    """Five parties on neighbouring x-ranges of a curve: FedAvg with E = 10 drifts (about 0.3 from θ*)."""
    return explorer_parties(5, 1.5, seed=0)


def pooled_lstsq(parties):
    X = np.vstack([p.data[0] for p in parties])
    y = np.concatenate([p.data[1] for p in parties])
    return np.linalg.lstsq(add_bias(X), y, rcond=None)[0]


def quadratic(p):
    Xt, y = add_bias(p.data[0]), p.data[1]
    return 2 / len(y) * Xt.T @ Xt, 2 / len(y) * Xt.T @ y


def softmax_parties(n=6, seed=0):
    rng = np.random.default_rng(seed)
    model = models.softmax(n_classes=3)
    out = []
    for i in range(n):
        m = 20 + 7 * i
        X = rng.normal(size=(m, 4)) + 0.5 * i
        y = (np.argmax(X[:, :3] + rng.normal(size=(m, 3)), axis=1) + i) % 3
        out.append(fl.Party(X, y, model=model, name=f"party {i}"))
    return out


# ----------------------------------------------------------------- FedProx


@pytest.mark.parametrize("engine", ["loop", "vectorized"])
@pytest.mark.parametrize("batch_size", [None, 8])
def test_prox_mu_zero_is_fedavg_bit_for_bit(drifting, engine, batch_size):
    kw = dict(lr=LR, rounds=15, local_epochs=3, batch_size=batch_size, fraction=0.6, seed=4, engine=engine)
    plain = fl.fedavg(drifting, **kw)
    prox = fl.fedavg(drifting, prox_mu=0.0, **kw)
    np.testing.assert_array_equal(prox.thetas, plain.thetas)
    np.testing.assert_array_equal(prox.losses, plain.losses)


def test_fedprox_local_update_is_the_hand_written_proximal_descent(drifting):
    p, theta, mu = drifting[2], np.array([0.3, -0.7]), 0.8
    local = theta.copy()
    for _ in range(6):                      # E steps on L_i(θ_i) + μ/2 |θ_i − θ|²
        local = local - LR * (p.gradient(local) + mu * (local - theta))
    got = p.local_update(theta, lr=LR, epochs=6, prox_mu=mu)
    np.testing.assert_allclose(got.theta, local, rtol=1e-12)
    np.testing.assert_allclose(got.update, (theta - local) / LR, rtol=1e-10)


def fedprox_fixed_point(parties, *, lr, epochs, mu):
    """θ_i = θ − η P_i ∇L_i(θ), P_i = Σ_{s<E} (I − η(H_i + μ I))^s; the round stops where Σ w_i P_i ∇L_i = 0."""
    M = sum(p.n_samples for p in parties)
    n = parties[0].n_features + 1
    lhs, rhs = np.zeros((n, n)), np.zeros(n)
    for p in parties:
        H, b = quadratic(p)
        step = np.eye(n) - lr * (H + mu * np.eye(n))
        P = sum(np.linalg.matrix_power(step, s) for s in range(epochs))
        lhs += p.n_samples / M * P @ H
        rhs += p.n_samples / M * P @ b
    return np.linalg.solve(lhs, rhs)


@pytest.mark.parametrize("mu", [0.0, 0.5, 5.0])
def test_fedprox_converges_to_its_closed_form_fixed_point(drifting, mu):
    run = fl.fedavg(drifting, lr=LR, rounds=400, local_epochs=10, prox_mu=mu, engine="vectorized")
    np.testing.assert_allclose(run.theta, fedprox_fixed_point(drifting, lr=LR, epochs=10, mu=mu), atol=1e-9)


def test_a_larger_mu_moves_the_fixed_point_towards_theta_star(drifting):
    star = pooled_lstsq(drifting)
    gaps = [np.linalg.norm(fedprox_fixed_point(drifting, lr=LR, epochs=10, mu=mu) - star)
            for mu in (0.0, 0.5, 2.0, 10.0)]
    assert gaps[0] > 0.25 and all(a > b for a, b in zip(gaps, gaps[1:])) and gaps[-1] < 0.5 * gaps[0]


# ----------------------------------------------------------------- SCAFFOLD


def scaffold_by_hand(parties, *, lr, rounds, epochs, server_lr=1.0):
    """Karimireddy et al. 2020, Algorithm 1, full participation, full-batch steps, option II,
    with the server's averages weighted by m_i/M."""
    n, N = parties[0].n_features + 1, len(parties)
    w = np.array([p.n_samples for p in parties], dtype=float)
    w /= w.sum()
    x, c, ci = np.zeros(n), np.zeros(n), np.zeros((N, n))
    xs = [x.copy()]
    for _ in range(rounds):
        dy, dc = np.zeros((N, n)), np.zeros((N, n))
        for i, p in enumerate(parties):
            y = x.copy()
            for _ in range(epochs):
                y = y - lr * (p.gradient(y) - ci[i] + c)
            new_ci = ci[i] - c + (x - y) / (epochs * lr)
            dy[i], dc[i] = y - x, new_ci - ci[i]
            ci[i] = new_ci
        x = x + server_lr * w @ dy
        c = c + w @ dc
        xs.append(x.copy())
    return np.array(xs)


@pytest.mark.parametrize("engine", ["loop", "vectorized"])
def test_scaffold_is_the_papers_algorithm(drifting, engine):
    run = fl.scaffold(drifting, lr=LR, rounds=12, local_epochs=4, server_lr=0.7, engine=engine)
    np.testing.assert_allclose(run.thetas, scaffold_by_hand(drifting, lr=LR, rounds=12, epochs=4, server_lr=0.7),
                               rtol=0, atol=1e-12)


def test_scaffold_reaches_theta_star_where_fedavg_drifts(drifting):
    star = pooled_lstsq(drifting)
    kw = dict(lr=LR, rounds=300, local_epochs=10, engine="vectorized")
    avg, scaf = fl.fedavg(drifting, **kw), fl.scaffold(drifting, **kw)
    assert np.linalg.norm(avg.theta - star) > 0.25
    assert np.linalg.norm(scaf.theta - star) < 1e-8


def test_scaffold_keeps_the_server_control_variate_the_mean_of_the_parties(drifting):
    control = fl.Scaffold()
    fl.train(drifting, lr=LR, rounds=20, local_epochs=3, fraction=0.4, seed=1, control=control)
    w = np.array([p.n_samples for p in drifting], dtype=float)
    np.testing.assert_allclose(control.c, w / w.sum() @ control.c_parties, atol=1e-12)
    assert np.count_nonzero(np.abs(control.c_parties).sum(axis=1)) >= 3     # sampled parties got state


def test_scaffold_sends_the_control_variates_too(drifting):
    kw = dict(lr=LR, rounds=5, local_epochs=2, fraction=0.6, seed=2)
    avg, scaf = fl.fedavg(drifting, **kw), fl.scaffold(drifting, **kw)
    k, p = 3, 2
    np.testing.assert_array_equal(scaf.bytes_up - avg.bytes_up, k * p * 8)
    np.testing.assert_array_equal(scaf.bytes_down, 2 * avg.bytes_down)


def test_scaffold_refuses_option_one():
    with pytest.raises(ValueError, match=r"option must be one of 'II'.*got 'I'"):
        fl.Scaffold("I")
    with pytest.raises(ValueError, match="option"):
        fl.scaffold(explorer_parties(3, 0.0, seed=0), lr=0.1, rounds=1, option="I")


# ----------------------------------------------------------------- stragglers


def test_dropped_stragglers_leave_the_round(drifting):
    run = fl.fedavg(drifting, lr=LR, rounds=30, local_epochs=4, stragglers=0.4, seed=3, keep_updates=True)
    counts = [len(u) for u in run.updates]
    assert counts == [5 - 2] * 30                       # floor(0.4 * 5) = 2 stragglers dropped each round
    assert [len(s) for s in run.selected] == counts     # History.selected: the parties whose work counted
    full = fl.fedavg(drifting, lr=LR, rounds=1, local_epochs=4, seed=3)
    np.testing.assert_array_equal(run.bytes_down, full.bytes_down[0])   # all five still received the model
    t0 = run.thetas[0]                                                  # row q is party selected[q]'s update
    for q, i in enumerate(run.selected[0]):
        np.testing.assert_allclose(run.updates[0][q], drifting[i].local_update(t0, lr=LR, epochs=4).update,
                                   rtol=1e-12)


def test_a_stragglers_epochs_do_not_depend_on_who_else_was_sampled():
    from fl_helpers.server import _stragglers

    all4 = _stragglers(np.array([0, 1, 2, 3]), 0.99, False, 5, 7, 1)[1]
    three = _stragglers(np.array([1, 2, 3]), 0.99, False, 5, 7, 1)[1]
    # with share 0.99 every party but one straggles; a straggler's epochs are its own draw
    with_0 = dict(zip([0, 1, 2, 3], all4))
    without_0 = dict(zip([1, 2, 3], three))
    compared = [i for i in (1, 2, 3) if with_0[i] < 5 and without_0[i] < 5]     # straggling in both draws
    assert compared
    assert all(with_0[i] == without_0[i] for i in compared)


def test_stragglers_never_drop_every_selected_party():
    parties = explorer_parties(3, 0.0, seed=0)
    run = fl.fedavg(parties, lr=LR, rounds=5, local_epochs=2, fraction=0.34, stragglers=0.9, seed=0,
                    keep_updates=True)
    assert [len(u) for u in run.updates] == [1] * 5     # k = 1, floor(0.9) = 0 stragglers


def test_kept_stragglers_send_partial_work(drifting):
    theta0 = np.array([0.5, -0.5])
    run = fl.fedavg(drifting, lr=LR, rounds=1, local_epochs=4, stragglers=0.6, drop_stragglers=False, seed=5,
                    theta0=theta0, keep_updates=True)
    done = []
    for i, update in enumerate(run.updates[0]):          # each update is E' full-batch steps, E' in 1..4
        options = [drifting[i].local_update(theta0, lr=LR, epochs=e).update for e in range(1, 5)]
        match = [e for e, u in zip(range(1, 5), options) if np.allclose(u, update, rtol=1e-12)]
        assert len(match) == 1
        done.append(match[0])
    assert sum(e < 4 for e in done) <= 3 and done.count(4) >= 2     # 3 stragglers, 2 finished parties


@pytest.mark.parametrize("drop", [True, False])
def test_stragglers_are_the_same_on_every_numpy_engine(drifting, drop):
    kw = dict(lr=LR, rounds=10, local_epochs=3, batch_size=16, fraction=0.8, stragglers=0.5, seed=9,
              drop_stragglers=drop, prox_mu=0.3)
    loop, vec = fl.fedavg(drifting, engine="loop", **kw), fl.fedavg(drifting, engine="vectorized", **kw)
    np.testing.assert_allclose(vec.thetas, loop.thetas, rtol=0, atol=1e-12)


def test_fedprox_with_stragglers_defaults_to_keeping_them(drifting):
    kw = dict(lr=LR, rounds=5, local_epochs=3, stragglers=0.4, seed=3, keep_updates=True)
    assert [len(u) for u in fl.fedavg(drifting, prox_mu=0.1, **kw).updates] == [5] * 5
    assert [len(u) for u in fl.fedavg(drifting, **kw).updates] == [3] * 5


def test_a_round_nobody_joins_keeps_the_model_and_custom_aggregators_are_not_called():
    from fl_helpers import aggregation

    parties = explorer_parties(4, 0.0, seed=0)
    calls = []

    def counting(updates, weights, *, rng):
        calls.append(len(updates))
        return aggregation.aggregate(updates, weights)

    run = fl.fedavg(parties, lr=LR, rounds=12, fraction=0.1, sampling="poisson", seed=0, aggregator=counting)
    empty = [t for t, s in enumerate(run.selected) if len(s) == 0]
    assert empty and 0 not in calls
    for t in empty:
        np.testing.assert_array_equal(run.thetas[t + 1], run.thetas[t])
        assert run.bytes_up[t] == 0 and run.bytes_down[t] == 0


# ----------------------------------------------------------------- the TensorFlow engine


def test_the_tensorflow_engine_runs_fedprox_scaffold_and_stragglers_like_numpy():
    require_tensorflow()
    from fl_helpers.engines import make_engine

    parties = softmax_parties()
    tf64 = make_engine("tensorflow", parties, dtype="float64")
    for batch_size in (None, 10):
        kw = dict(lr=0.2, rounds=6, local_epochs=3, batch_size=batch_size, fraction=0.7, seed=1)
        for run in (lambda e: fl.fedavg(parties, engine=e, prox_mu=0.4, stragglers=0.5, **kw),
                    lambda e: fl.scaffold(parties, engine=e, **kw)):
            np.testing.assert_allclose(run(tf64).thetas, run("vectorized").thetas, rtol=0, atol=1e-10)


# ----------------------------------------------------------------- evaluation


def test_eval_data_records_the_held_out_accuracy_and_loss_of_every_round():
    parties = softmax_parties()
    rng = np.random.default_rng(7)
    X_test = rng.normal(size=(50, 4)) + 1.0
    y_test = rng.integers(0, 3, size=50)
    run = fl.fedavg(parties, lr=0.3, rounds=8, local_epochs=2, eval_data=(X_test, y_test), engine="vectorized")
    for t in range(1, 9):
        W = run.thetas[t].reshape(5, 3)                     # intercepts first, then one row per feature
        scores = W[0] + X_test @ W[1:]
        assert run.metrics["test_accuracy"][t - 1] == np.mean(scores.argmax(axis=1) == y_test)
        logp = scores - scores.max(axis=1, keepdims=True)
        logp -= np.log(np.exp(logp).sum(axis=1, keepdims=True))
        np.testing.assert_allclose(run.metrics["test_loss"][t - 1], -np.mean(logp[np.arange(50), y_test]),
                                   rtol=1e-12)


def test_party_accuracies_are_each_partys_own_share_of_right_labels():
    parties = softmax_parties()
    theta = np.random.default_rng(0).normal(size=15)
    W = theta.reshape(5, 3)
    want = [np.mean((W[0] + p.data[0] @ W[1:]).argmax(axis=1) == p.data[1]) for p in parties]
    np.testing.assert_array_equal(fl.party_accuracies(parties, theta), want)


def test_regression_eval_data_records_the_loss_only(drifting):
    X = np.linspace(-2, 2, 30)[:, None]
    run = fl.fedsgd(drifting, lr=0.1, rounds=3, eval_data=(X, 1 + 2 * X[:, 0]))
    assert set(run.metrics) == {"test_loss"}
    np.testing.assert_allclose(run.metrics["test_loss"][-1], np.mean((add_bias(X) @ run.theta - 1 - 2 * X[:, 0]) ** 2))


# ----------------------------------------------------------------- bad input


@pytest.mark.parametrize("kwargs, error, match", [
    (dict(prox_mu=-0.1), ValueError, "prox_mu"),
    (dict(prox_mu="a"), TypeError, "prox_mu"),
    (dict(stragglers=1.0), ValueError, r"stragglers must be a share in \[0, 1\) or a plan function, got 1.0"),
    (dict(stragglers=-0.2), ValueError, "stragglers"),
    (dict(stragglers=0.5, drop_stragglers="yes"), TypeError, "drop_stragglers"),
    (dict(eval_data=np.zeros(3)), TypeError, "eval_data must be a pair"),
    (dict(eval_data=(np.zeros((3, 1)), np.zeros(4))), ValueError, "eval_data"),
])
def test_bad_local_work_options_are_named(drifting, kwargs, error, match):
    with pytest.raises(error, match=match):
        fl.fedavg(drifting, lr=0.1, rounds=1, **kwargs)


def test_eval_labels_are_checked_against_the_model():
    with pytest.raises(ValueError, match="eval_data"):
        fl.fedavg(softmax_parties(), lr=0.1, rounds=1, eval_data=(np.zeros((2, 4)), np.array([0, 7])))


def test_control_must_be_a_client_state_hook(drifting):
    with pytest.raises(TypeError, match="control must be a client-state hook"):
        fl.train(drifting, lr=0.1, rounds=1, control=object())

    class NoStart:
        correction = update = bytes_down = bytes_up = None

    with pytest.raises(TypeError, match="without start"):
        fl.train(drifting, lr=0.1, rounds=1, control=NoStart())


def test_eval_data_is_checked_against_the_parties_before_training():
    parties = softmax_parties()                          # 4 features, 3 classes
    with pytest.raises(ValueError, match="eval_data\\[0\\] must have the parties' 4 features, got 3"):
        fl.fedavg(parties, lr=0.1, rounds=1, eval_data=(np.zeros((2, 3)), np.array([0, 1])))
    unnamed = [fl.Party(p.data[0], p.data[1], model=models.softmax) for p in parties]
    with pytest.raises(ValueError, match="eval_data\\[1\\] must hold labels 0..2"):
        fl.fedavg(unnamed, lr=0.1, rounds=1, eval_data=(np.zeros((2, 4)), np.array([0, 3])))
