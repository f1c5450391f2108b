"""Deep leakage from gradients: the attack recovers real digits from an MLP's gradient, and the defences stop it.

References independent of fl_helpers.privacy: the MLP's gradient written by
hand in numpy (forward and backward pass), the original rows themselves, and
two guesses that know nothing of the gradient (the training set's mean image,
uniform noise) as the line between "recovered" and "not recovered".
Without TensorFlow the module skips, except under ``CI=true``, where it fails.
"""

from __future__ import annotations

import numpy as np
import pytest
from optional import TF_MISSING, has_tensorflow, in_ci

import fl_helpers as fl
from fl_helpers import models, privacy

if not has_tensorflow():
    if in_ci():
        pytest.fail(f"{TF_MISSING}; CI=true: the gradient-leakage tests must run here", pytrace=False)
    pytest.skip(TF_MISSING, allow_module_level=True)

from fl_helpers.tf_env import import_keras  # noqa: E402

keras = import_keras()
HIDDEN = 32


def build_mlp():
    keras.utils.set_random_seed(0)
    return keras.Sequential([keras.Input((64,)),
                             keras.layers.Dense(HIDDEN, activation="sigmoid", dtype="float64"),
                             keras.layers.Dense(10, activation="softmax", dtype="float64")])


@pytest.fixture(scope="module")
def mlp():
    return models.keras(build_mlp, loss="sparse_categorical_crossentropy")


@pytest.fixture(scope="module")
def digits():
    X, y, _ = fl.load_dataset("digits", subset="train")
    return X, y


def hand_gradient(theta, X, y):
    """Mean cross-entropy gradient of the sigmoid MLP, by hand (Keras order: W1, b1, W2, b2)."""
    d, h, k = X.shape[1], HIDDEN, 10
    sizes = [d * h, h, h * k, k]
    W1, b1, W2, b2 = np.split(theta, np.cumsum(sizes)[:-1])
    W1, W2 = W1.reshape(d, h), W2.reshape(h, k)
    a = 1 / (1 + np.exp(-(X @ W1 + b1)))
    z = a @ W2 + b2
    p = np.exp(z - z.max(axis=1, keepdims=True))
    p /= p.sum(axis=1, keepdims=True)
    dz = (p - np.eye(k)[y]) / len(X)
    da = dz @ W2.T * a * (1 - a)
    return np.concatenate([(X.T @ da).ravel(), da.sum(axis=0), (a.T @ dz).ravel(), dz.sum(axis=0)])


def batch(digits, size, seed):
    X, y = digits
    idx = np.random.default_rng(seed).choice(len(X), size, replace=False)
    return X[idx], y[idx]


def baseline(digits, Xb):
    """The error of guessing the mean training image for every sample: recovered means well below it."""
    return privacy.reconstruction_error(Xb, np.tile(digits[0].mean(axis=0), (len(Xb), 1))).mean()


def test_the_hand_written_gradient_is_the_models(mlp, digits):
    Xb, yb = batch(digits, 5, seed=0)
    theta = mlp.init()
    np.testing.assert_allclose(mlp.gradient(theta, Xb, yb), hand_gradient(theta, Xb, yb), rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("size", [1, 2, 4, 8])
def test_dlg_recovers_every_digit_of_a_small_batch(mlp, digits, size):
    Xb, yb = batch(digits, size, seed=size)
    theta = mlp.init()
    found = privacy.dlg(hand_gradient(theta, Xb, yb), theta, model=mlp, batch_size=size, seed=0)
    errors = privacy.reconstruction_error(Xb, found.x)
    assert errors.max() < 1e-3 < baseline(digits, Xb) / 50
    assert sorted(found.labels) == sorted(yb)
    assert found.distance < 1e-5 and found.distances[0] > 1e3 * found.distance


def test_labels_of_a_batch_with_repeated_classes_are_counted(mlp, digits):
    X, y = digits
    idx = np.concatenate([np.flatnonzero(y == 3)[:5], np.flatnonzero(y == 7)[:2], np.flatnonzero(y == 0)[:1]])
    theta = mlp.init()
    labels = privacy.infer_labels(hand_gradient(theta, X[idx], y[idx]), theta, model=mlp, batch_size=8, seed=0)
    assert sorted(labels) == [0, 3, 3, 3, 3, 3, 7, 7]


def test_a_single_sample_label_is_the_negative_bias_entry(mlp, digits):
    Xb, yb = batch(digits, 1, seed=3)
    theta = mlp.init()
    g = hand_gradient(theta, Xb, yb)
    assert privacy.infer_labels(g, theta, model=mlp, batch_size=1)[0] == yb[0] == np.argmin(g[-10:])


def attack_error(mlp, digits, gradient, Xb, size):
    theta = mlp.init()
    found = privacy.dlg(gradient, theta, model=mlp, batch_size=size, seed=0)
    return privacy.reconstruction_error(Xb, found.x).mean()


def test_a_batch_of_64_is_not_recovered(mlp, digits):
    Xb, yb = batch(digits, 64, seed=64)
    error = attack_error(mlp, digits, hand_gradient(mlp.init(), Xb, yb), Xb, 64)
    assert error > baseline(digits, Xb)


def test_keeping_the_top_tenth_of_the_gradient_stops_the_attack(mlp, digits):
    Xb, yb = batch(digits, 4, seed=4)
    g = hand_gradient(mlp.init(), Xb, yb)
    assert attack_error(mlp, digits, g, Xb, 4) < baseline(digits, Xb) / 100          # without it: recovered
    pruned = np.where(np.abs(g) >= np.quantile(np.abs(g), 0.9), g, 0.0)
    assert np.count_nonzero(pruned) <= 0.1 * len(g) + 1
    assert attack_error(mlp, digits, pruned, Xb, 4) > baseline(digits, Xb)


def test_party_side_gaussian_noise_with_multiplier_one_stops_the_attack(mlp, digits):
    Xb, yb = batch(digits, 4, seed=4)
    g = hand_gradient(mlp.init(), Xb, yb)
    S = np.linalg.norm(g)                                  # a clip the update already meets
    assert attack_error(mlp, digits, g, Xb, 4) < baseline(digits, Xb) / 100          # without it: recovered
    noisy = g + np.random.default_rng(1).normal(0.0, 1.0 * S, size=len(g))
    assert attack_error(mlp, digits, noisy, Xb, 4) > baseline(digits, Xb)


def test_the_sum_of_ten_parties_hides_each_party(mlp, digits):
    theta = mlp.init()
    batches = [batch(digits, 4, seed=100 + i) for i in range(10)]
    mean_gradient = np.mean([hand_gradient(theta, Xb, yb) for Xb, yb in batches], axis=0)
    Xb = batches[0][0]
    alone = hand_gradient(theta, *batches[0])
    assert attack_error(mlp, digits, alone, Xb, 4) < baseline(digits, Xb) / 100      # alone: recovered
    assert attack_error(mlp, digits, mean_gradient, Xb, 4) > baseline(digits, Xb)


def test_reconstruction_error_matches_rows_in_any_order():
    rng = np.random.default_rng(0)
    for m in (3, 8, 12):
        A = rng.uniform(size=(m, 5))
        perm = rng.permutation(m)
        B = A[perm] + 0.01 * np.arange(m)[:, None]            # row j of B is A[perm[j]] shifted by 0.01 j
        want = np.empty(m)
        want[perm] = (0.01 * np.arange(m)) ** 2
        np.testing.assert_allclose(privacy.reconstruction_error(A, B), want, atol=1e-15)


@pytest.mark.parametrize("kwargs, error, match", [
    (dict(gradient=np.zeros(3)), ValueError, r"gradient must have the shape of theta \(2410,\), got \(3,\)"),
    (dict(batch_size=0), ValueError, "batch_size"),
    (dict(labels=np.array([1, 2])), ValueError, "labels must be 'infer' or 1 integer class labels"),
    (dict(steps=0), ValueError, "steps"),
    (dict(bounds=(1.0, 0.0)), ValueError, "bounds must be"),
    (dict(bounds=(0.0, np.inf)), ValueError, "two finite numbers"),
    (dict(bounds=(0.0, 1.0, 2.0)), ValueError, "bounds must be"),
    (dict(labels=np.array([10])), ValueError, r"class labels in 0\.\.9, got"),
    (dict(labels=np.array([-1])), ValueError, r"class labels in 0\.\.9, got"),
    (dict(model=models.softmax(n_classes=10)), TypeError, "models.keras"),
])
def test_bad_input_to_dlg_is_named(mlp, digits, kwargs, error, match):
    theta = mlp.init()
    Xb, yb = batch(digits, 1, seed=0)
    args = dict(gradient=hand_gradient(theta, Xb, yb), theta=theta, model=mlp, batch_size=1) | kwargs
    with pytest.raises(error, match=match):
        privacy.dlg(args.pop("gradient"), args.pop("theta"), **args)


def test_the_best_pairing_is_one_to_one_and_undoes_a_shuffle():
    rng = np.random.default_rng(1)
    for m in (5, 12):
        A = rng.uniform(size=(m, 6))
        perm = rng.permutation(m)
        pairing = privacy.best_pairing(A, A[perm] + 1e-3 * rng.normal(size=(m, 6)))
        np.testing.assert_array_equal(perm[pairing], np.arange(m))     # recovered row pairing[i] is original i


def test_an_attack_does_not_depend_on_the_attacks_before_it(mlp, digits):
    """The compiled search is reused: a second attack must equal the same attack on a fresh program."""
    theta = mlp.init()
    (Xa, ya), (Xb, yb) = batch(digits, 3, seed=30), batch(digits, 3, seed=31)
    kw_b = dict(model=mlp, batch_size=3, seed=7, lr=0.05, steps=250)
    privacy.dlg(hand_gradient(theta, Xa, ya), theta, model=mlp, batch_size=3, seed=1, lr=0.2, steps=300)
    after = privacy.dlg(hand_gradient(theta, Xb, yb), theta, **kw_b)
    for key in [k for k in mlp._state() if isinstance(k, tuple) and k[0] == "dlg"]:
        del mlp._state()[key]                                 # forget the compiled programs
    fresh = privacy.dlg(hand_gradient(theta, Xb, yb), theta, **kw_b)
    np.testing.assert_array_equal(after.x, fresh.x)
    np.testing.assert_array_equal(after.distances, fresh.distances)


def test_noisy_gradients_of_large_batches_still_give_one_label_per_sample(mlp, digits):
    Xb, yb = batch(digits, 64, seed=64)
    theta = mlp.init()
    g = hand_gradient(theta, Xb, yb)
    for k in range(20):
        noisy = g + np.random.default_rng(k).normal(0.0, np.linalg.norm(g), size=len(g))
        labels = privacy.infer_labels(noisy, theta, model=mlp, batch_size=64, seed=0)
        assert len(labels) == 64 and labels.min() >= 0 and labels.max() <= 9
    shifted = g.copy()
    shifted[-10:] += 0.5                                     # a bias gradient that no longer sums to 0
    assert len(privacy.infer_labels(shifted, theta, model=mlp, batch_size=16, seed=0)) == 16
