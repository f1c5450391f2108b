"""Privacy: a single-sample gradient is the sample; epsilon comes from dp-accounting and matches published values.

References independent of fl_helpers.privacy: the model's gradient of one real
row (diabetes, digits) written by hand here, the residual-weighted mix computed
by a loop, TensorFlow Privacy's published epsilon, and dp-accounting used
directly.
"""

import logging

import numpy as np
import pytest

import fl_helpers as fl
from fl_helpers import models, privacy


def add_one(x):
    return np.concatenate([[1.0], x])


# ----------------------------------------------------------------- leak_sample


def test_a_linear_gradient_gives_back_a_diabetes_patient_exactly():
    X, y, _ = fl.load_dataset("diabetes")
    X = (X - X.mean(axis=0)) / X.std(axis=0)
    theta = np.random.default_rng(0).normal(size=11)
    for j in (0, 17, 441):
        r = add_one(X[j]) @ theta - y[j]
        g = 2 * r * add_one(X[j])                     # the MSE gradient on one sample, by hand
        x, target = privacy.leak_sample(g, theta, model=models.linear)
        np.testing.assert_allclose(x, X[j], rtol=0, atol=1e-10)
        assert abs(target - y[j]) < 1e-10 * max(1.0, abs(y[j]))


def test_a_softmax_gradient_gives_back_a_digit_and_its_label():
    X, y, _ = fl.load_dataset("digits", subset="train")
    model = models.softmax(n_classes=10)
    theta = 0.01 * np.random.default_rng(1).normal(size=65 * 10)
    for j in (0, 5, 1351):
        z = add_one(X[j]) @ theta.reshape(65, 10)
        p = np.exp(z - z.max()) / np.exp(z - z.max()).sum()
        G = np.outer(add_one(X[j]), p - np.eye(10)[y[j]])      # cross-entropy gradient, by hand
        x, label = privacy.leak_sample(G.ravel(), theta, model=model)
        np.testing.assert_allclose(x, X[j], rtol=0, atol=1e-10)
        assert label == y[j]
        np.testing.assert_allclose(model.gradient(theta, X[j:j + 1], y[j:j + 1]), G.ravel(), atol=1e-12)


def test_a_logistic_gradient_gives_back_the_sample_and_its_label():
    rng = np.random.default_rng(2)
    theta = rng.normal(size=4)
    for label in (0, 1):
        x0 = rng.normal(size=3)
        g = (1 / (1 + np.exp(-add_one(x0) @ theta)) - label) * add_one(x0)
        x, got = privacy.leak_sample(g, theta, model=models.logistic)
        np.testing.assert_allclose(x, x0, atol=1e-10)
        assert got == label


def test_l2_is_removed_before_reading_the_sample():
    model = models.linear(l2=0.3)
    rng = np.random.default_rng(3)
    theta, x0, y0 = rng.normal(size=4), rng.normal(size=3), 0.7
    g = model.gradient(theta, x0[None, :], np.array([y0]))
    x, y = privacy.leak_sample(g, theta, model=model)
    np.testing.assert_allclose(x, x0, atol=1e-10)
    assert abs(y - y0) < 1e-10


def test_on_a_batch_the_formula_returns_the_residual_weighted_mix():
    rng = np.random.default_rng(4)
    X, y = rng.normal(size=(5, 3)), rng.normal(size=5)
    theta = rng.normal(size=4)
    g = models.linear.gradient(theta, X, y)
    r = np.array([add_one(x) @ theta - t for x, t in zip(X, y)])
    mix = sum(rj * xj for rj, xj in zip(r, X)) / r.sum()         # Σ r_j x_j / Σ r_j, by a loop
    x, _ = privacy.leak_sample(g, theta, model=models.linear)
    np.testing.assert_allclose(x, mix, rtol=1e-10)
    assert min(np.linalg.norm(x - row) for row in X) > 1e-3      # not any one of the samples


def test_a_sample_the_model_fits_exactly_leaks_no_x():
    theta = np.array([1.0, 2.0])
    with pytest.raises(ValueError, match="fits this sample exactly"):
        privacy.leak_sample(np.zeros(2), theta, model=models.linear)


@pytest.mark.parametrize("kwargs, error, match", [
    (dict(gradient=np.zeros(3), theta=np.zeros(2), model=models.linear), ValueError, "gradient must have the shape"),
    (dict(gradient=np.ones(4), theta=np.zeros(4), model=models.softmax), ValueError, "n_classes"),
    (dict(gradient=np.ones(2), theta=np.zeros(2), model="linear"), TypeError, "model must be"),
    (dict(gradient=[np.nan, 1.0], theta=np.zeros(2), model=models.linear), ValueError, "gradient"),
])
def test_bad_input_to_leak_sample_is_named(kwargs, error, match):
    with pytest.raises(error, match=match):
        privacy.leak_sample(**kwargs)


# ----------------------------------------------------------------- epsilon


def test_epsilon_matches_tensorflow_privacys_published_value():
    """n = 60,000, batch 150, z = 1.3, 15 epochs, delta = 1e-5: epsilon = 0.7242 with the RDP accountant."""
    q, steps = 150 / 60_000, 15 * 60_000 // 150
    assert round(privacy.epsilon(1.3, q, steps, 1e-5), 4) == 0.7242


def test_epsilon_is_dp_accountings_own_number():
    import dp_accounting as dpa
    from dp_accounting import rdp

    acc = rdp.RdpAccountant()
    acc.compose(dpa.SelfComposedDpEvent(dpa.PoissonSampledDpEvent(0.01, dpa.GaussianDpEvent(0.8)), 500))
    assert privacy.epsilon(0.8, 0.01, 500, 1e-6) == acc.get_epsilon(1e-6)


def test_pld_is_tighter_than_rdp_and_both_grow_with_rounds_and_shrink_with_noise():
    rdp = [privacy.epsilon(1.0, 0.05, r, 1e-5) for r in (10, 100, 1000)]
    assert rdp[0] < rdp[1] < rdp[2]
    assert privacy.epsilon(2.0, 0.05, 100, 1e-5) < rdp[1]
    assert privacy.epsilon(1.0, 0.05, 100, 1e-5, accountant="pld") < rdp[1]


def test_full_participation_is_the_plain_gaussian_mechanism():
    """q = 1, one round: the Gaussian mechanism's RDP, ε(α) = α / (2 z²), converted by dp-accounting."""
    eps = privacy.epsilon(5.0, 1.0, 1, 1e-5)
    orders = np.linspace(1.01, 200, 20_000)
    bound = np.min(orders / (2 * 25.0) + np.log(1 / 1e-5) / (orders - 1))     # the classic RDP-to-DP conversion
    assert 0 < eps <= bound + 1e-9


def test_noise_multiplier_inverts_epsilon():
    q, steps = 150 / 60_000, 6_000
    z = privacy.noise_multiplier(0.7242234, q, steps, 1e-5)
    assert abs(z - 1.3) < 1e-4
    assert privacy.epsilon(z, q, steps, 1e-5) <= 0.7242234 * (1 + 1e-4)
    for target in (30.0, 200.0):                         # large targets: still the smallest z, to 1e-5
        z = privacy.noise_multiplier(target, 0.1, 100, 1e-5)
        assert privacy.epsilon(z, 0.1, 100, 1e-5) <= target < privacy.epsilon(z - 2e-5, 0.1, 100, 1e-5)


@pytest.mark.parametrize("args, kwargs, match", [
    ((0.0, 0.1, 10, 1e-5), {}, "noise_multiplier"),
    ((1.0, 1.5, 10, 1e-5), {}, r"sample_rate must be a probability in \(0, 1\], got 1.5"),
    ((1.0, 0.1, 0, 1e-5), {}, "rounds"),
    ((1.0, 0.1, 10, 1.0), {}, r"delta must be in \(0, 1\), got 1.0"),
    ((1.0, 0.1, 10, 1e-5), {"accountant": "moments"}, "accountant"),
])
def test_bad_privacy_parameters_are_named(args, kwargs, match):
    with pytest.raises(ValueError, match=match):
        privacy.epsilon(*args, **kwargs)


def test_importing_the_privacy_module_does_not_import_dp_accounting():
    import subprocess
    import sys

    code = "import sys, fl_helpers.privacy; assert 'dp_accounting' not in sys.modules"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, timeout=60).returncode == 0


# ----------------------------------------------------------------- DP-FedAvg


def dp_world(n=40, seed=0):
    X, y, _ = fl.make_regression(20 * n, 3, noise=0.3, seed=seed)
    return fl.split(X, y, n, scheme="iid", seed=seed)


def test_poisson_sampling_draws_each_party_with_probability_q():
    from fl_helpers.server import sample_parties
    counts = [len(sample_parties(200, 0.1, np.random.default_rng(s), sampling="poisson")) for s in range(400)]
    assert abs(np.mean(counts) - 20) < 4 * np.sqrt(200 * 0.1 * 0.9 / 400)     # mean qN, within 4 standard errors
    assert np.var(counts) == pytest.approx(200 * 0.1 * 0.9, rel=0.25)          # binomial variance Nq(1 - q)


def test_without_noise_and_with_a_loose_clip_dp_fedavg_is_fedavg_with_one_vote_per_party():
    parties = dp_world()
    kw = dict(lr=0.1, rounds=5, local_epochs=2, seed=3)
    dp = fl.privacy.dp_fedavg(parties, clip_norm=1e9, noise_multiplier=0.0, sample_rate=1.0, **kw)
    plain = fl.fedavg(parties, weighting="uniform", **kw)
    np.testing.assert_allclose(dp.thetas, plain.thetas, rtol=0, atol=1e-12)
    assert "epsilon" not in dp.metrics


def test_the_server_sees_clipped_updates_and_noise_of_the_promised_size():
    parties = dp_world()
    run = fl.privacy.dp_fedavg(parties, lr=0.1, rounds=30, clip_norm=0.5, noise_multiplier=2.0, sample_rate=0.5,
                               seed=1, keep_updates=True)
    for updates, selected in zip(run.updates, run.selected):
        assert np.all(np.linalg.norm(updates, axis=1) <= 0.5 + 1e-12)
    # the server's step minus what the clipped updates explain is the noise, divided by qN = 20, times -lr
    noise = []
    for t, (updates, selected) in enumerate(zip(run.updates, run.selected)):
        step = run.thetas[t + 1] - run.thetas[t]
        noise.append(-step / 0.1 * 20 - updates.sum(axis=0))
    noise = np.concatenate(noise)
    assert noise.std() == pytest.approx(2.0 * 0.5, rel=0.15)                  # z S = 1.0
    assert abs(noise.mean()) < 4 * noise.std() / np.sqrt(noise.size)          # centred: within 4 standard errors


@pytest.mark.parametrize("accountant", ["rdp", "pld"])
def test_the_epsilon_series_is_the_accountant_after_each_round(accountant):
    import dp_accounting as dpa
    from dp_accounting.pld import pld_privacy_accountant
    from dp_accounting.rdp import rdp_privacy_accountant

    parties = dp_world()
    run = fl.privacy.dp_fedavg(parties, lr=0.1, rounds=6, clip_norm=1.0, noise_multiplier=1.1, sample_rate=0.2,
                               delta=1e-5, seed=2, accountant=accountant)
    want = []
    for t in range(1, 7):                                   # a fresh dp-accounting accountant for t rounds
        acc = (rdp_privacy_accountant.RdpAccountant() if accountant == "rdp"
               else pld_privacy_accountant.PLDAccountant())
        acc.compose(dpa.SelfComposedDpEvent(dpa.PoissonSampledDpEvent(0.2, dpa.GaussianDpEvent(1.1)), t))
        want.append(acc.get_epsilon(1e-5))
    np.testing.assert_allclose(run.metrics["epsilon"], want, rtol=1e-9 if accountant == "rdp" else 1e-6)
    assert np.all(np.diff(run.metrics["epsilon"]) > 0)


def test_a_round_nobody_joins_still_adds_noise():
    parties = dp_world(n=4)
    run = fl.privacy.dp_fedavg(parties, lr=0.1, rounds=40, clip_norm=1.0, noise_multiplier=1.0, sample_rate=0.05,
                               seed=0)
    empty = [t for t, s in enumerate(run.selected) if len(s) == 0]
    assert empty, "with q = 0.05 and 4 parties most rounds are empty"
    t = empty[0]
    assert np.linalg.norm(run.thetas[t + 1] - run.thetas[t]) > 0 and run.bytes_up[t] == 0


def test_dp_fedavg_is_deterministic_for_a_seed():
    parties = dp_world()
    kw = dict(lr=0.1, rounds=4, clip_norm=0.5, noise_multiplier=1.0, sample_rate=0.3)
    a, b = (fl.privacy.dp_fedavg(parties, seed=7, **kw) for _ in range(2))
    np.testing.assert_array_equal(a.thetas, b.thetas)
    assert not np.array_equal(a.thetas, fl.privacy.dp_fedavg(parties, seed=8, **kw).thetas)


@pytest.mark.parametrize("kwargs, match", [
    (dict(clip_norm=0.0), "clip_norm"),
    (dict(noise_multiplier=-1.0), "noise_multiplier"),
    (dict(sample_rate=1.2), "sample_rate"),
])
def test_bad_dp_fedavg_parameters_are_named(kwargs, match):
    args = dict(lr=0.1, rounds=1, clip_norm=1.0, noise_multiplier=1.0, sample_rate=0.5) | kwargs
    with pytest.raises(ValueError, match=match):
        fl.privacy.dp_fedavg(dp_world(n=4), **args)


def test_dp_fedavg_refuses_to_replace_its_own_blocks():
    with pytest.raises(TypeError, match="dp_fedavg sets aggregator itself"):
        fl.privacy.dp_fedavg(dp_world(n=4), lr=0.1, rounds=1, clip_norm=1.0, noise_multiplier=1.0,
                             sample_rate=0.5, aggregator=fl.weighted_sum)


@pytest.mark.parametrize("accountant", ["rdp", "pld"])
def test_an_epsilon_metric_reused_for_a_second_run_starts_a_new_account(accountant):
    parties = dp_world(n=8)
    metric = privacy.Epsilon(1.0, 0.5, 1e-5, accountant=accountant)
    kw = dict(lr=0.1, rounds=3, fraction=0.5, sampling="poisson", seed=0, metrics={"eps": metric})
    first, second = fl.train(parties, **kw), fl.train(parties, **kw)
    np.testing.assert_array_equal(first.metrics["eps"], second.metrics["eps"])


def test_accuracy_refuses_a_regression_model():
    with pytest.raises(TypeError, match="classification model"):
        fl.accuracy(models.linear, np.zeros(2), np.zeros((3, 1)), np.zeros(3))


def test_the_aggregator_refuses_unclipped_updates():
    agg = privacy.GaussianSum(1.0, 1.0, 5.0)
    with pytest.raises(ValueError, match="clipped"):
        agg(np.full((2, 3), 5.0), np.ones(2) / 2, rng=np.random.default_rng(0))


def test_the_accountants_dropped_orders_are_not_logged(caplog):
    with caplog.at_level(logging.WARNING):
        privacy.epsilon(2.0, 0.5, 3, 1e-5)
    assert not [r for r in caplog.records if r.name == "absl"]


def test_local_noise_is_added_by_the_party_with_twice_the_clip_as_sensitivity():
    transform = privacy.LocalGaussian(clip_norm=0.5, noise_multiplier=2.0)
    update = np.full(40_000, 1.0)                            # norm 200: clipped to 0.5
    out = transform(update, party=0, round=1, rng=np.random.default_rng(0))
    noise = out - update * (0.5 / np.linalg.norm(update))
    assert abs(noise.mean()) < 0.05 and abs(noise.std() / (2 * 2.0 * 0.5) - 1) < 0.01
    assert transform.clipped == 1 and transform.seen == 1
    with pytest.raises(ValueError, match="noise_multiplier"):
        privacy.LocalGaussian(1.0, 0.0)


def test_clipping_gets_no_generator_and_local_noise_gets_the_partys_own():
    seen = []

    class Spy(privacy.LocalGaussian):
        def __call__(self, update, *, party, round, rng):
            seen.append((type(self).__name__, rng))
            return super().__call__(update, party=party, round=round, rng=rng)

    class ClipSpy(privacy.Clip):
        uses_rng = False                                     # said again: it counts on the class itself

        def __call__(self, update, *, party, round, rng):
            seen.append((type(self).__name__, rng))
            return super().__call__(update, party=party, round=round, rng=rng)

    parties = dp_world(n=3)
    fl.train(parties, lr=0.1, rounds=1, seed=0, client_transform=ClipSpy(1.0))
    fl.train(parties, lr=0.1, rounds=1, seed=0, client_transform=Spy(1.0, 1.0))
    assert [r for name, r in seen if name == "ClipSpy"] == [None] * 3
    drawn = [r for name, r in seen if name == "Spy"]
    assert len(drawn) == 3 and all(isinstance(r, np.random.Generator) for r in drawn)


def test_the_epsilon_metric_follows_the_round_number_not_the_number_of_calls():
    from types import SimpleNamespace

    for accountant in ("rdp", "pld"):
        metric = privacy.Epsilon(1.0, 0.3, 1e-5, accountant=accountant)
        got = [metric(SimpleNamespace(round=t)) for t in (1, 2, 5)]
        want = [privacy.epsilon(1.0, 0.3, t, 1e-5, accountant=accountant) for t in (1, 2, 5)]
        np.testing.assert_allclose(got, want, rtol=1e-6)


def test_a_subclass_of_clip_that_adds_noise_gets_a_generator():
    class NoisyClip(privacy.Clip):
        def __call__(self, update, *, party, round, rng):
            return super().__call__(update, party=party, round=round, rng=rng) + rng.normal(size=update.shape)

    run = fl.train(dp_world(n=3), lr=0.1, rounds=2, seed=0, client_transform=NoisyClip(1.0))
    assert np.all(np.isfinite(run.theta))
