"""fl_helpers.recommend: the generator, the MF loss and gradients, centralized/federated MF, the leak and defences.

References written here: a hand-written full-batch GD loop over the (user, item, rating)
triples, finite differences, scikit-learn's Ridge for the ALS user step, hand-counted
precision and recall.
"""

import numpy as np
import pytest
from sklearn.linear_model import Ridge

import fl_helpers as fl
from fl_helpers import privacy, randomness, recommend, secagg


@pytest.fixture(scope="module")
def ratings():
    return recommend.make_ratings(30, 12, rank=2, density=0.3, seed=3)


# --------------------------------------------------------------------------- the generator

def test_generator_observes_disjoint_train_and_test_entries_for_every_user(ratings):
    assert ratings.values.shape == (30, 12)
    assert not np.any(ratings.train & ratings.test)
    n_train, n_test = ratings.train.sum(axis=1), ratings.test.sum(axis=1)
    assert np.all(n_train >= 1) and np.all(n_test >= 1) and np.all(n_train + n_test >= 3)
    assert ratings.values.min() >= 1.0 and ratings.values.max() <= 5.0


def test_generator_ratings_are_the_clipped_low_rank_scores_plus_noise():
    r = recommend.make_ratings(20, 10, rank=2, density=0.5, noise=0.0, seed=1)
    want = np.clip(3.0 + r.user_factors @ r.item_factors.T, 1.0, 5.0)
    np.testing.assert_allclose(r.values, want, atol=1e-12)


def test_generator_scores_have_unit_variance_and_the_noise_its_sigma():
    r = recommend.make_ratings(2000, 40, rank=4, density=0.1, noise=0.0, seed=2)
    scores = r.user_factors @ r.item_factors.T                # Var(u*.v*) = k (k^-1/2)^2 = 1
    assert np.var(scores) == pytest.approx(1.0, abs=0.15)
    noisy = recommend.make_ratings(2000, 40, rank=4, density=0.1, noise=0.3, seed=2)
    inside = (r.values > 2.0) & (r.values < 4.0)              # 3 sigma from the clip: the noise is N(0, 0.3^2)
    assert np.std((noisy.values - r.values)[inside]) == pytest.approx(0.3, rel=0.03)


def test_generator_split_sizes_follow_the_documented_rule():
    r = recommend.make_ratings(300, 30, rank=2, density=0.05, min_per_user=4, test_fraction=0.3, seed=5)
    n_u = (r.train | r.test).sum(axis=1)
    assert n_u.min() == 4                                     # Binomial(30, 0.05) is often below 4
    want = np.minimum(n_u - 1, np.maximum(1, np.round(0.3 * n_u)))
    np.testing.assert_array_equal(r.test.sum(axis=1), want)


def test_generator_popularity_is_zipf_and_skews_the_observed_counts():
    r = recommend.make_ratings(400, 20, rank=2, density=0.2, popularity=1.0, seed=0)
    np.testing.assert_allclose(r.popularity, (1.0 / np.arange(1, 21)) / np.sum(1.0 / np.arange(1, 21)))
    counts = (r.train | r.test).sum(axis=0)
    assert counts[:3].mean() > 3 * counts[-3:].mean()
    flat = recommend.make_ratings(400, 20, rank=2, density=0.2, popularity=0.0, seed=0)
    counts = (flat.train | flat.test).sum(axis=0)
    assert counts.max() < 1.5 * counts.min()


def test_adding_users_changes_nobody_elses_data():
    a = recommend.make_ratings(5, 8, rank=2, density=0.4, seed=7)
    b = recommend.make_ratings(9, 8, rank=2, density=0.4, seed=7)
    np.testing.assert_array_equal(a.values, b.values[:5])
    np.testing.assert_array_equal(a.train, b.train[:5])
    np.testing.assert_array_equal(a.test, b.test[:5])


def test_triples_and_mean(ratings):
    users, items, values = ratings.triples("train")
    assert len(users) == ratings.train.sum()
    assert ratings.mean == pytest.approx(sum(values) / len(values))
    np.testing.assert_array_equal(ratings.rated(4), sorted(i for u, i in zip(users, items) if u == 4))


# --------------------------------------------------------------------------- loss and gradients

def hand_loss(U, V, r, reg):
    mu = r.mean
    total = sum((v - mu - U[u] @ V[i]) ** 2 for u, i, v in zip(*r.triples("train")))
    return total + reg * (np.sum(U ** 2) + np.sum(V ** 2))


def hand_gradients(U, V, r, reg):
    gU, gV = 2 * reg * U.copy(), 2 * reg * V.copy()
    for u, i, v in zip(*r.triples("train")):
        e = v - r.mean - U[u] @ V[i]
        gU[u] += -2 * e * V[i]
        gV[i] += -2 * e * U[u]
    return gU, gV


def test_loss_and_gradients_match_a_loop_and_finite_differences(ratings):
    U, V = recommend.init_factors(30, 12, 2, scale=0.5, seed=0)
    assert recommend.loss(U, V, ratings, reg=0.3) == pytest.approx(hand_loss(U, V, ratings, 0.3), rel=1e-12)
    gU, gV = recommend.gradients(U, V, ratings, reg=0.3)
    hU, hV = hand_gradients(U, V, ratings, 0.3)
    np.testing.assert_allclose(gU, hU, atol=1e-12)
    np.testing.assert_allclose(gV, hV, atol=1e-12)
    h = 1e-6
    for A, g, idx in ((U, gU, (4, 1)), (V, gV, (0, 0)), (V, gV, (7, 1))):
        A[idx] += h
        up = recommend.loss(U, V, ratings, reg=0.3)
        A[idx] -= 2 * h
        down = recommend.loss(U, V, ratings, reg=0.3)
        A[idx] += h
        assert g[idx] == pytest.approx((up - down) / (2 * h), rel=1e-6, abs=1e-8)


def test_item_gradients_sum_to_the_data_part_and_are_zero_off_the_rated_items(ratings):
    U, V = recommend.init_factors(30, 12, 2, seed=1)
    G = recommend.item_gradients(U, V, ratings)
    _, hV = hand_gradients(U, V, ratings, 0.0)
    np.testing.assert_allclose(G.sum(axis=0), hV, atol=1e-12)
    np.testing.assert_array_equal(np.any(G != 0, axis=2), ratings.train)
    np.testing.assert_array_equal(recommend.item_gradients(U, V, ratings, users=[5, 2]), G[[5, 2]])


def test_rmse_and_baselines_match_hand_computation(ratings):
    U, V = recommend.init_factors(30, 12, 2, seed=1)
    users, items, values = ratings.triples("test")
    pred = [ratings.mean + U[u] @ V[i] for u, i in zip(users, items)]
    assert recommend.rmse(U, V, ratings) == pytest.approx(np.sqrt(np.mean((values - pred) ** 2)), rel=1e-12)
    assert recommend.baseline_rmse(ratings, kind="global mean") == pytest.approx(
        np.sqrt(np.mean((values - ratings.mean) ** 2)), rel=1e-12)
    tu, ti, tv = ratings.triples("train")
    item_mean = {i: np.mean(tv[ti == i]) for i in set(ti)}
    pred = [item_mean.get(i, ratings.mean) for i in items]
    assert recommend.baseline_rmse(ratings) == pytest.approx(np.sqrt(np.mean((values - pred) ** 2)), rel=1e-12)


# --------------------------------------------------------------------------- training

def hand_gd(r, U, V, lr, reg, steps):
    U, V = U.copy(), V.copy()
    for _ in range(steps):
        gU, gV = hand_gradients(U, V, r, reg)
        U, V = U - lr * gU, V - lr * gV
    return U, V


def test_federated_mf_with_everyone_and_one_step_is_full_batch_gd(ratings):
    U0, V0 = recommend.init_factors(30, 12, 2, scale=0.3, seed=5)
    U, V = hand_gd(ratings, U0, V0, 0.02, 0.5, 25)
    fed = recommend.federated_mf(ratings, rank=2, lr=0.02, rounds=25, reg=0.5, init=(U0, V0))
    cen = recommend.centralized_mf(ratings, rank=2, lr=0.02, rounds=25, reg=0.5, init=(U0, V0))
    for h in (fed, cen):
        np.testing.assert_allclose(h.U, U, rtol=0, atol=1e-12)
        np.testing.assert_allclose(h.V, V, rtol=0, atol=1e-12)
    assert fed.losses[-1] == pytest.approx(hand_loss(U, V, ratings, 0.5), rel=1e-12)
    assert fed.losses[-1] < 0.5 * fed.losses[0]


def test_partial_participation_moves_only_the_selected_users_embeddings(ratings):
    U0, V0 = recommend.init_factors(30, 12, 2, seed=9)          # the run's default start
    h = recommend.federated_mf(ratings, rank=2, lr=0.02, rounds=1, fraction=0.2, local_epochs=3, seed=9)
    want = np.sort(randomness.generator(9, "sampling", 1).choice(30, size=6, replace=False))
    np.testing.assert_array_equal(h.selected[0], want)
    moved = np.flatnonzero(np.any(h.U != U0, axis=1))
    np.testing.assert_array_equal(moved, want)
    # three local steps on u_u with V fixed, by hand, for one selected user
    u = want[0]
    m = ratings.train[u]
    x = U0[u].copy()
    for _ in range(3):
        e = ratings.values[u, m] - ratings.mean - V0[m] @ x
        x = x - 0.02 * (-2 * V0[m].T @ e + 2 * 0.1 * x)
    np.testing.assert_allclose(h.U[u], x, atol=1e-12)


def test_als_user_step_is_ridge_regression_and_the_loss_never_increases(ratings):
    U0, V0 = recommend.init_factors(30, 12, 2, seed=2)
    h = recommend.als(ratings, rank=2, sweeps=1, reg=0.4, init=(U0, V0))
    u = 3
    m = ratings.train[u]
    ridge = Ridge(alpha=0.4, fit_intercept=False).fit(V0[m], ratings.values[u, m] - ratings.mean)
    assert h.rounds == 1
    np.testing.assert_allclose(h.U[u], ridge.coef_, atol=1e-10)     # the sweep's U step, from V0
    many = recommend.als(ratings, rank=2, sweeps=8, reg=0.4, init=(U0, V0))
    assert np.all(np.diff(many.losses) <= 1e-9)


def test_a_too_large_learning_rate_is_reported_not_recorded_as_nan(ratings):
    h = recommend.federated_mf(ratings, rank=2, lr=5.0, rounds=50, seed=0)
    assert h.diverged and "diverged at round" in h.message
    assert np.all(np.isfinite(h.losses)) and np.all(np.isfinite(h.V))


def test_federated_mf_is_train_with_the_phones_as_engine_and_the_item_server(ratings):
    U0, V0 = recommend.init_factors(30, 12, 2, seed=6)
    kw = dict(lr=0.02, rounds=4, fraction=0.5, local_epochs=2, seed=6)
    fed = recommend.federated_mf(ratings, rank=2, reg=0.2, init=(U0, V0), **kw)
    phones = recommend.PhoneEngine(ratings, U0, reg=0.2)
    h = fl.train(phones.parties, engine=phones, theta0=V0, server_optimizer=recommend.ItemServer(30, lr=0.02, reg=0.2),
                 **kw)
    np.testing.assert_array_equal(h.theta, fed.V.ravel())
    np.testing.assert_array_equal(phones.U, fed.U)
    assert len(fed.selected) == 4 and fed.history.rounds == 4
    # train's loss is L / |Omega|, each round's at the embeddings the phones held when V arrived
    M = ratings.train.sum()
    assert h.losses[0] * M == pytest.approx(hand_loss(U0, V0, ratings, 0.2), rel=1e-12)
    assert h.losses[-1] * M == pytest.approx(hand_loss(fed.U, fed.V, ratings, 0.2), rel=1e-12)
    np.testing.assert_allclose(h.losses * M, fed.losses, rtol=1e-12)
    np.testing.assert_array_equal(fed.bytes_up, 15 * (12 * 2 + 1) * 8)     # 15 users: message and weight, float64


def test_phone_engine_rejects_what_it_cannot_do(ratings):
    U0, V0 = recommend.init_factors(30, 12, 2, seed=0)
    phones = recommend.PhoneEngine(ratings, U0, reg=0.1)
    with pytest.raises(ValueError, match="theta0 must be the starting item embeddings V0, 12 x 2 = 24"):
        phones.initial_theta(None)
    with pytest.raises(ValueError, match=r"theta0 must hold V0 of shape \(12, 2\), 24 numbers, got 23"):
        phones.initial_theta(np.zeros(23))
    with pytest.raises(ValueError, match="batch_size must be None"):
        fl.train(phones.parties, engine=phones, theta0=V0, lr=0.01, rounds=1, batch_size=2)
    with pytest.raises(ValueError, match="PhoneEngine has no prox_mu"):
        fl.train(phones.parties, engine=phones, theta0=V0, lr=0.01, rounds=1, prox_mu=0.1)
    with pytest.raises(ValueError, match=r"U0 must have shape \(n_users, rank\) = \(30, rank\), got \(3, 2\)"):
        recommend.PhoneEngine(ratings, U0[:3], reg=0.1)


# --------------------------------------------------------------------------- the leak and the defences

def test_guess_rated_and_precision_recall_by_hand():
    G = np.array([[0.0, 0.0], [1.0, 0.0], [0.0, -0.1], [0.0, 0.0], [3.0, 4.0]])
    np.testing.assert_array_equal(recommend.guess_rated(G), [False, True, True, False, True])
    np.testing.assert_array_equal(recommend.guess_rated(G, top=2), [False, True, False, False, True])
    np.testing.assert_array_equal(recommend.guess_rated(G, threshold=0.5), [False, True, False, False, True])
    p, r = recommend.precision_recall([True, True, False, True], [True, False, False, False])
    assert (p, r) == (pytest.approx(1 / 3), 1.0)


def test_the_plain_protocol_reveals_exactly_the_rated_items(ratings):
    h = recommend.federated_mf(ratings, rank=2, lr=0.02, rounds=3, fraction=0.5, seed=1, keep_received=(1, 3))
    assert sorted(h.received) == [1, 3]
    for t in (1, 3):
        assert recommend.leak(h, ratings, round=t) == (1.0, 1.0)
        for u, message in zip(h.selected[t - 1], h.received[t]):
            np.testing.assert_array_equal(np.any(message != 0, axis=1), ratings.train[u])


def test_fake_items_dilute_the_guess_by_the_expected_ratio(ratings):
    h = recommend.federated_mf(ratings, rank=2, lr=0.02, rounds=1, fake_items=3, seed=4)
    n_rated = ratings.train.sum(axis=1)
    want = np.mean(n_rated / (n_rated + np.minimum(3, 12 - n_rated)))
    precision, recall = recommend.leak(h, ratings)
    assert recall == 1.0 and precision == pytest.approx(want, rel=1e-12)


def test_secure_aggregation_hides_the_rated_sets_and_keeps_the_model(ratings):
    kw = dict(rank=2, lr=0.02, rounds=2, fraction=0.2, seed=3)
    plain = recommend.federated_mf(ratings, **kw)
    safe = recommend.federated_mf(ratings, aggregator=secagg.SecureAggregator(4, scale_bits=32), **kw)
    np.testing.assert_allclose(safe.V, plain.V, atol=1e-7)
    np.testing.assert_allclose(safe.U, plain.U, atol=1e-9)     # the embeddings follow V: equal to encoding error
    precision, recall = recommend.leak(safe, ratings)
    density = np.mean([ratings.train[u].mean() for u in safe.selected[0]])
    assert recall == 1.0 and precision == pytest.approx(density)  # the guess is "every item"


def test_local_gaussian_noise_fills_every_row(ratings):
    h = recommend.federated_mf(ratings, rank=2, lr=0.02, rounds=1, seed=0,
                               client_transform=privacy.LocalGaussian(0.1, 1.0))
    assert np.all(np.linalg.norm(h.received[1], axis=2) > 0)
    assert recommend.leak(h, ratings)[1] == 1.0


def test_local_gaussian_noise_on_unrated_rows_has_std_2zS():
    r = recommend.make_ratings(400, 30, rank=2, density=0.2, seed=8)
    h = recommend.federated_mf(r, rank=2, lr=0.01, rounds=1, seed=0,
                               client_transform=privacy.LocalGaussian(0.5, 0.3))
    unrated = ~r.train[h.selected[0]]                         # rows that are pure noise: N(0, (2 z S)^2)
    assert np.std(h.received[1][unrated]) == pytest.approx(2 * 0.3 * 0.5, rel=0.03)


# --------------------------------------------------------------------------- bad input

@pytest.mark.parametrize(("kwargs", "error", "words"), [
    (dict(rank=0), ValueError, ["rank", "[1, 4]", "got 0"]),
    (dict(density=1.5), ValueError, ["density", "(0, 1]", "1.5"]),
    (dict(density="a"), TypeError, ["density", "real number"]),
    (dict(noise=-1.0), ValueError, ["noise", "non-negative", "-1.0"]),
    (dict(min_per_user=1), ValueError, ["min_per_user", "[2, 4]", "got 1"]),
    (dict(test_fraction=1.0), ValueError, ["test_fraction", "(0, 1)", "1.0"]),
])
def test_make_ratings_rejects_bad_input(kwargs, error, words):
    args = dict(rank=2, density=0.5, seed=0) | kwargs
    with pytest.raises(error) as info:
        recommend.make_ratings(6, 4, **args)
    for word in words:
        assert word in str(info.value)


@pytest.mark.parametrize(("kwargs", "error", "words"), [
    (dict(lr=-0.1), ValueError, ["lr", "positive", "-0.1"]),
    (dict(rounds=-1), ValueError, ["rounds", "[0, inf]", "-1"]),
    (dict(fraction=0.0), ValueError, ["fraction", "(0, 1]", "0.0"]),
    (dict(fake_items=13), ValueError, ["fake_items", "[0, 12]", "13"]),
    (dict(local_epochs=0), ValueError, ["local_epochs", "[1, inf]", "0"]),
    (dict(aggregator=3), TypeError, ["aggregator", "callable", "int"]),
    (dict(init=(np.zeros((3, 2)), np.zeros((12, 2)))), ValueError, ["U", "(30, rank)", "(3, 2)"]),
])
def test_federated_mf_rejects_bad_input(ratings, kwargs, error, words):
    args = dict(rank=2, lr=0.01, rounds=1) | kwargs
    with pytest.raises(error) as info:
        recommend.federated_mf(ratings, **args)
    for word in words:
        assert word in str(info.value)


def test_other_functions_name_the_bad_argument(ratings):
    U, V = recommend.init_factors(30, 12, 2, seed=0)
    with pytest.raises(ValueError, match=r"users must be .*\[0, 29\], got \[30\]"):
        recommend.item_gradients(U, V, ratings, users=[30])
    with pytest.raises(ValueError, match=r"sweeps must be an integer in \[0, inf\], got -1"):
        recommend.als(ratings, rank=2, sweeps=-1)
    with pytest.raises(TypeError, match="keep_received must be an iterable"):
        recommend.federated_mf(ratings, rank=2, lr=0.01, rounds=1, keep_received=None)
    with pytest.raises(ValueError, match=r"top must be an integer in \[0, 12\], got 13"):
        recommend.guess_rated(np.ones((12, 2)), top=13)
    with pytest.raises(ValueError, match="kind must be one of"):
        recommend.baseline_rmse(ratings, kind="median")


def test_ratings_must_come_from_make_ratings():
    with pytest.raises(TypeError, match="ratings must be a Ratings object"):
        recommend.centralized_mf(np.ones((3, 3)), rank=1, lr=0.1, rounds=1)
    with pytest.raises(ValueError, match="round must be one of the kept rounds"):
        r = recommend.make_ratings(6, 4, rank=1, density=0.5, seed=0)
        recommend.leak(recommend.federated_mf(r, rank=1, lr=0.01, rounds=2), r, round=2)
