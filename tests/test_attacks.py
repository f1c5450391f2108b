"""Attacks: each changes exactly the attackers' updates, by the formula its paper gives.

References independent of fl_helpers.attacks: honest runs of the same round
(the attack must change only the attackers' rows, to the multiple the attack
names), per-coordinate means and standard deviations of the benign rows by
Python loops, the normal quantiles Phi^-1(0.6) and Phi^-1(0.72) written out
(and scipy.stats.norm.ppf where scipy is installed), and the labels of the
digits dataset.
"""

import importlib.util
import math

import numpy as np
import pytest
from optional import require

import fl_helpers as fl
from fl_helpers import attacks, models, robust


@pytest.fixture(scope="module")
def parties():
    X, y, _ = fl.make_regression(200, 3, noise=0.5, seed=0)
    return fl.split(X, y, 6, seed=1)


def first_round(parties, **hooks):
    """The updates (after the client transforms) of round 1, one row per party."""
    h = fl.fedsgd(parties, lr=0.05, rounds=1, seed=3, keep_updates=True, **hooks)
    return np.asarray(h.updates[0])


# ----------------------------------------------------------------- client transforms


def test_sign_flip_and_scale_change_exactly_the_attackers_rows(parties):
    honest = first_round(parties)
    flipped = first_round(parties, client_transform=attacks.SignFlip([1, 4], scale=3))
    boosted = first_round(parties, client_transform=attacks.Scale([0], factor=10))
    for i in range(6):
        np.testing.assert_array_equal(flipped[i], -3 * honest[i] if i in (1, 4) else honest[i])
        np.testing.assert_array_equal(boosted[i], 10 * honest[i] if i == 0 else honest[i])
    np.testing.assert_array_equal(first_round(parties, client_transform=attacks.SignFlip([])), honest)


def test_gaussian_noise_changes_only_the_attackers_and_repeats_under_a_seed(parties):
    honest = first_round(parties)
    noisy = first_round(parties, client_transform=attacks.GaussianNoise([2, 5], std=4.0))
    again = first_round(parties, client_transform=attacks.GaussianNoise([2, 5], std=4.0))
    np.testing.assert_array_equal(noisy, again)                      # the parties' streams, keyed by seed
    for i in range(6):
        if i in (2, 5):
            assert np.all(noisy[i] != honest[i])
        else:
            np.testing.assert_array_equal(noisy[i], honest[i])
    pure = first_round(parties, client_transform=attacks.GaussianNoise([2, 5], std=4.0, replace=True))
    np.testing.assert_allclose(pure[[2, 5]], (noisy - honest)[[2, 5]], rtol=1e-12)   # the same draws, alone
    other = fl.fedsgd(parties, lr=0.05, rounds=1, seed=4, keep_updates=True,
                      client_transform=attacks.GaussianNoise([2, 5], std=4.0)).updates[0]
    assert np.all(np.asarray(other)[[2, 5]] != noisy[[2, 5]])


def test_gaussian_noise_has_the_asked_standard_deviation():
    attack = attacks.GaussianNoise([0], std=2.5)
    draws = attack(np.zeros(20000), party=0, round=1, rng=np.random.default_rng(0))
    assert abs(draws.std() - 2.5) < 0.05 and abs(draws.mean()) < 0.05
    honest = np.arange(3.0)
    assert attack(honest, party=1, round=1, rng=np.random.default_rng(0)) is honest


def test_transforms_by_hand_on_one_update():
    u = np.array([1.0, -2.0, 0.5])
    np.testing.assert_array_equal(attacks.SignFlip([7])(u, party=7, round=3, rng=None), [-1.0, 2.0, -0.5])
    np.testing.assert_array_equal(attacks.Scale([7], 4)(u, party=7, round=3, rng=None), [4.0, -8.0, 2.0])
    np.testing.assert_array_equal(attacks.Scale([7], 4)(u, party=6, round=3, rng=None), u)


# ----------------------------------------------------------------- label flipping


def test_flip_labels_flips_only_the_attackers_digits():
    X, y, _ = fl.load_dataset("digits", subset="train")
    model = models.softmax(n_classes=10)
    parties = fl.split(X[:300], y[:300], 5, model=model, seed=0)
    flipped = attacks.flip_labels(parties, [1, 3])
    for i, (before, after) in enumerate(zip(parties, flipped, strict=True)):
        if i in (1, 3):
            np.testing.assert_array_equal(after.data[0], before.data[0])
            np.testing.assert_array_equal(after.data[1], 9 - before.data[1])     # 0 <-> 9, 1 <-> 8, ...
            assert after.name == before.name and after.model == model
        else:
            assert after is before


def test_flip_labels_swaps_zero_and_one_for_logistic_parties():
    rng = np.random.default_rng(0)
    X = rng.standard_normal((40, 2))
    y = (X[:, 0] > 0).astype(float)
    parties = fl.split(X, y, 4, model=models.logistic, seed=0)
    flipped = attacks.flip_labels(parties, [0])
    np.testing.assert_array_equal(flipped[0].data[1], 1 - parties[0].data[1])


def test_flip_labels_refuses_bad_input(parties):
    with pytest.raises(ValueError, match="parties must hold class labels"):
        attacks.flip_labels(parties, [0])                               # regression targets
    X, y, _ = fl.load_dataset("digits", subset="test")
    digits = fl.split(X[:100], y[:100], 4, model=models.softmax(n_classes=10), seed=0)
    with pytest.raises(ValueError, match=r"attackers must be indices into the 4 parties, in \[0, 3\], got 4"):
        attacks.flip_labels(digits, [4])
    with pytest.raises(ValueError, match="n_classes must exceed every label"):
        attacks.flip_labels(digits, [0], n_classes=5)


# ----------------------------------------------------------------- ALIE and IPM


def test_alie_z_follows_baruch_et_al():
    # n = 10, f = 2: s = floor(10/2 + 1) - 2 = 4, (10 - 4)/10 = 0.6, Phi^-1(0.6) = 0.2533471031357997
    assert attacks.alie_z(10, 2) == pytest.approx(0.2533471031357997, abs=1e-12)
    # n = 50, f = 12: s = 26 - 12 = 14, (50 - 14)/50 = 0.72, Phi^-1(0.72) = 0.5828415072712162
    assert attacks.alie_z(50, 12) == pytest.approx(0.5828415072712162, abs=1e-12)
    # n = 7, f = 3: s = floor(4.5) - 3 = 1, 6/7
    assert attacks.alie_z(7, 3) == pytest.approx(1.0675705238781414, abs=1e-12)
    for f in (0, 4):
        with pytest.raises(ValueError, match=rf"f must be an integer in \[1, 3\].*got {f}"):
            attacks.alie_z(7, f)


def test_alie_z_equals_scipy_norm_ppf():
    require(importlib.util.find_spec("scipy") is not None, "scipy is not installed", what="the scipy cross-checks")
    from scipy.stats import norm

    for n in range(2, 40):
        for f in range(1, n // 2 + 1):
            s = math.floor(n / 2 + 1) - f
            assert attacks.alie_z(n, f) == pytest.approx(norm.ppf((n - s) / n), abs=1e-12)


def received_by(inner_calls):
    def inner(updates, weights, *, rng):
        inner_calls.append(np.array(updates))
        return weights @ updates
    return inner


def test_alie_rows_are_the_benign_mean_minus_z_times_their_std():
    rng = np.random.default_rng(0)
    updates = rng.standard_normal((10, 4))
    calls = []
    alie = attacks.Alie([1, 7], inner=received_by(calls))
    alie(updates, np.ones(10) / 10, rng=None)
    seen = calls[0]
    benign = [i for i in range(10) if i not in (1, 7)]
    z = 0.2533471031357997                                       # n = 10, f = 2, as above
    for j in range(4):
        col = [float(updates[i, j]) for i in benign]
        mu = sum(col) / len(col)
        sd = math.sqrt(sum((v - mu) ** 2 for v in col) / len(col))      # population std (ddof = 0)
        for i in (1, 7):
            assert seen[i, j] == pytest.approx(mu - z * sd, abs=1e-14)
    np.testing.assert_array_equal(seen[benign], updates[benign])
    np.testing.assert_array_equal(alie.forged_rows, [1, 7])
    # a given z is used as is
    calls.clear()
    attacks.Alie([0], inner=received_by(calls), z=1.5)(updates, np.ones(10) / 10, rng=None)
    np.testing.assert_allclose(calls[0][0], updates[1:].mean(axis=0) - 1.5 * updates[1:].std(axis=0))


def test_ipm_rows_are_minus_epsilon_times_the_benign_mean():
    updates = np.array([[1.0, 2.0], [3.0, -2.0], [100.0, 100.0], [5.0, 6.0]])
    calls = []
    attacks.Ipm([2], inner=received_by(calls), epsilon=0.5)(updates, np.ones(4) / 4, rng=None)
    # benign mean: ((1 + 3 + 5)/3, (2 - 2 + 6)/3) = (3, 2) -> -0.5 * (3, 2)
    np.testing.assert_array_equal(calls[0][2], [-1.5, -1.0])
    np.testing.assert_array_equal(calls[0][[0, 1, 3]], updates[[0, 1, 3]])


def test_alie_slips_past_krum_where_a_sign_flip_does_not():
    X, y, _ = fl.make_regression(400, 5, noise=0.5, seed=0)
    parties = fl.split(X, y, 10, seed=1)
    krum = robust.Krum(3)
    h = fl.fedsgd(parties, lr=0.1, rounds=15, seed=0, aggregator=attacks.Alie([0, 1, 2], inner=krum))
    picked = h.metrics["krum_party"].astype(int)
    assert np.mean(np.isin(picked, [0, 1, 2])) > 0.5             # Krum prefers the forged update
    h = fl.fedsgd(parties, lr=0.1, rounds=15, seed=0, aggregator=krum,
                  client_transform=attacks.SignFlip([0, 1, 2], scale=10))
    assert not np.any(np.isin(h.metrics["krum_party"].astype(int), [0, 1, 2]))


def test_alie_finds_its_rows_through_the_roster_when_parties_are_sampled(parties):
    calls = []
    alie = attacks.Alie([0, 3], inner=received_by(calls))
    h = fl.fedavg(parties, lr=0.05, rounds=6, fraction=0.5, seed=2, keep_updates=True,
                  client_transform=alie.roster, aggregator=alie)
    assert len(calls) == 6
    for selected, honest_rows, seen in zip(h.selected, h.updates, calls, strict=True):
        bad = np.isin(selected, [0, 3])
        if bad.any() and not bad.all():
            benign = honest_rows[~bad]
            n, f = len(selected), int(bad.sum())
            z = attacks.alie_z(n, min(f, n // 2))          # a majority of colluders uses f = n // 2
            for row in seen[bad]:
                np.testing.assert_allclose(row, benign.mean(axis=0) - z * benign.std(axis=0), rtol=1e-12)
        else:
            np.testing.assert_array_equal(seen, honest_rows)
        np.testing.assert_array_equal(seen[~bad], honest_rows[~bad])
    assert any(np.isin(s, [0, 3]).any() and not np.isin(s, [0, 3]).all() for s in h.selected)


def test_a_roster_of_the_wrong_length_is_an_error():
    alie = attacks.Alie([0])
    alie.roster(np.zeros(2), party=0, round=1, rng=None)
    with pytest.raises(ValueError, match="the roster noted 1 parties but the round has 3 updates"):
        alie(np.zeros((3, 2)), np.ones(3) / 3, rng=None)


# ----------------------------------------------------------------- names and bad input


def test_attack_by_name_builds_each_attack_and_refuses_unknown_names():
    assert isinstance(attacks.attack_by_name("sign_flip", [0]), attacks.SignFlip)
    assert attacks.attack_by_name("scale", [0, 1], factor=10).factor == 10.0
    assert isinstance(attacks.attack_by_name("noise", [0], std=1.0), attacks.GaussianNoise)
    assert isinstance(attacks.attack_by_name("alie", [0], inner=robust.Median()), attacks.Alie)
    assert attacks.attack_by_name("ipm", [0], epsilon=0.1).epsilon == 0.1
    with pytest.raises(ValueError, match=r"name must be one of 'sign_flip', 'scale', 'noise', 'alie', 'ipm'.*"
                                         r"got 'gaussian'"):
        attacks.attack_by_name("gaussian", [0])


@pytest.mark.parametrize("attackers, error", [(3, TypeError), ("01", TypeError), ([-1], ValueError),
                                              ([1, 1], ValueError), ([0.5], ValueError), ([True], ValueError)])
def test_bad_attackers_are_refused(attackers, error):
    with pytest.raises(error, match="attackers must be"):
        attacks.SignFlip(attackers)


def test_bad_attack_options_are_refused():
    with pytest.raises(ValueError, match="factor must be a positive finite number, got -2.0"):
        attacks.Scale([0], -2)
    with pytest.raises(ValueError, match="std must be a positive finite number, got 0.0"):
        attacks.GaussianNoise([0], 0)
    with pytest.raises(TypeError, match="z must be a finite real number or None"):
        attacks.Alie([0], z="max")
    with pytest.raises(TypeError, match="inner must be an aggregator"):
        attacks.Ipm([0], inner=3)


def test_a_sampled_round_without_the_roster_is_refused_not_forged_silently():
    X, y, _ = fl.make_regression(200, 3, noise=0.5, seed=0)
    parties = fl.split(X, y, 10, seed=0)
    ipm = attacks.Ipm([0], inner=robust.Median(), epsilon=0.5)
    with pytest.raises(ValueError, match=r"cannot tell which of this round's 5 updates \(of 10 parties\)"):
        fl.fedavg(parties, lr=0.1, rounds=3, fraction=0.5, seed=1, aggregator=ipm)
    run = fl.fedavg(parties, lr=0.1, rounds=3, fraction=0.5, seed=1, aggregator=ipm, client_transform=ipm.roster)
    assert len(run.losses) == 4


@pytest.mark.parametrize("make", [lambda: attacks.SignFlip([7]), lambda: attacks.Scale([4], factor=3.0)])
def test_an_attacker_outside_the_federation_is_refused(make):
    X, y, _ = fl.make_regression(80, 2, noise=0.5, seed=0)
    parties = fl.split(X, y, 4, seed=0)
    with pytest.raises(ValueError, match=r"attackers must be party indices in \[0, 3\]"):
        fl.fedavg(parties, lr=0.1, rounds=1, seed=0, client_transform=make())
    with pytest.raises(ValueError, match=r"attackers must be party indices in \[0, 3\]"):
        fl.fedavg(parties, lr=0.1, rounds=1, seed=0, aggregator=attacks.Alie([9]))
