"""fl_helpers.keras_fl: FedAvg of a Keras model equals the numpy course and centralized Keras training."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest

import fl_helpers as fl

if importlib.util.find_spec("tensorflow") is None:
    pytest.skip("TensorFlow is not installed (pip install -e '.[cpu]')", allow_module_level=True)

from fl_helpers.tf_env import import_keras  # noqa: E402
from fl_helpers.keras_fl import (  # noqa: E402
    KerasHistory, fedavg_keras, flatten_weights, keras_local_update, party_data, unflatten_weights)

keras = import_keras()
D = 3
LR = 2.0**-4     # Keras keeps the learning rate in float32: a power of two is the same number in float64


def linear_model():
    """theta_0 + X theta_{1:d} as a float64 Dense(1) starting at zero, like fl_helpers' theta0."""
    return keras.Sequential([keras.Input((D,), dtype="float64"),
                             keras.layers.Dense(1, kernel_initializer="zeros", dtype="float64")])


def as_theta(flat):
    """Keras' flat [kernel (d), bias] -> fl_helpers' [bias, kernel]."""
    flat = np.atleast_2d(flat)
    return np.hstack([flat[:, D:], flat[:, :D]])


@pytest.fixture(scope="module")
def regression_parties():
    X, y, _ = fl.make_regression(150, D, noise=0.5, seed=0)
    return fl.split(X, y, 5, scheme="quantity", skew=1.0, seed=1)     # unequal sizes


@pytest.fixture(scope="module")
def blobs():
    """3 Gaussian classes in 2-D (centres 4 apart), 240 samples, float32-exact inputs."""
    rng = np.random.default_rng(0)
    centres = np.array([[0.0, 0.0], [4.0, 0.0], [2.0, 3.5]])
    y = rng.integers(0, 3, size=240)
    X = (centres[y] + rng.standard_normal((240, 2))).astype(np.float32).astype(np.float64)
    return X, y


def softmax_model(dtype="float32"):
    init = keras.initializers.GlorotUniform(seed=0)
    return keras.Sequential([keras.Input((2,), dtype=dtype),
                             keras.layers.Dense(3, activation="softmax", kernel_initializer=init, dtype=dtype)])


# --- equals the numpy course ------------------------------------------------------------------

@pytest.mark.parametrize("weighting", ["samples", "uniform"])
@pytest.mark.parametrize("kw", [dict(local_epochs=1), dict(local_epochs=2, batch_size=7, fraction=0.6)],
                         ids=["fedsgd", "E2-b7-frac0.6"])
def test_linear_keras_fedavg_equals_fl_helpers_fedavg(regression_parties, kw, weighting):
    want = fl.fedavg(regression_parties, lr=LR, rounds=6, weighting=weighting, seed=3, engine="vectorized", **kw)

    got = fedavg_keras(linear_model, regression_parties, rounds=6, lr=LR, loss="mse", weighting=weighting,
                       seed=3, **kw)

    assert isinstance(got, KerasHistory) and got.engine == "keras"
    np.testing.assert_allclose(as_theta(got.thetas), want.thetas, rtol=0, atol=1e-10)
    np.testing.assert_allclose(got.losses, want.losses, rtol=1e-10)
    np.testing.assert_allclose(got.party_losses, want.party_losses, rtol=1e-10)
    for a, b in zip(got.selected, want.selected, strict=True):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(got.bytes_down, want.bytes_down)       # d + 1 float64 numbers each
    np.testing.assert_allclose(as_theta(flatten_weights(got.model.get_weights()))[0], want.theta, atol=1e-10)


@pytest.mark.parametrize("batch_size, seed", [(None, None), (4, 7)])
def test_keras_local_update_equals_party_local_update(regression_parties, batch_size, seed):
    party = regression_parties[2]
    theta = np.array([0.5, -1.0, 0.25, 2.0])
    weights = [theta[1:].reshape(D, 1), theta[:1]]

    new, m = keras_local_update(linear_model, weights, *party.data, loss="mse",
                                optimizer_fn=lambda: keras.optimizers.SGD(LR), epochs=2,
                                batch_size=batch_size, seed=seed)

    rng = None if seed is None else np.random.default_rng(seed)
    want = party.local_update(theta, lr=LR, epochs=2, batch_size=batch_size, rng=rng)
    assert m == party.n_samples
    np.testing.assert_allclose(as_theta(flatten_weights(new))[0], want.theta, rtol=0, atol=1e-12)


# --- classification -----------------------------------------------------------------------------

def test_softmax_regression_learns_blobs_over_four_parties(blobs):
    X, y = blobs
    parties = [(X[i::4], y[i::4]) for i in range(4)]

    h = fedavg_keras(softmax_model, parties, rounds=15, lr=0.3, local_epochs=2, batch_size=16,
                     loss="sparse_categorical_crossentropy", seed=0)

    accuracy = np.mean(np.argmax(h.model(X).numpy(), axis=1) == y)
    assert accuracy > 0.9
    assert h.losses[-1] < 0.5 * h.losses[0]
    assert h.thetas.shape == (16, 2 * 3 + 3) and h.bytes_down[0] == 4 * 9 * 4     # float32 weights


def test_one_party_one_full_batch_epoch_is_centralized_keras_training(blobs):
    """model.fit with full batches, float32: equal here to the last bit; 1e-6 leaves room for other kernels."""
    X, y = blobs
    central = softmax_model()
    central.compile(optimizer=keras.optimizers.SGD(0.3), loss="sparse_categorical_crossentropy")
    central.fit(X, y, batch_size=len(X), epochs=10, shuffle=False, verbose=0)

    h = fedavg_keras(softmax_model, [(X, y)], rounds=10, lr=0.3, loss="sparse_categorical_crossentropy")

    np.testing.assert_allclose(h.theta, flatten_weights(central.get_weights()), rtol=0, atol=1e-6)
    assert not np.allclose(h.thetas[0], h.theta)


def test_same_seed_same_run(blobs):
    X, y = blobs
    parties = [(X[:100], y[:100]), (X[100:], y[100:])]
    kw = dict(rounds=3, lr=0.2, local_epochs=1, batch_size=10, fraction=0.5,
              loss="sparse_categorical_crossentropy")

    a = fedavg_keras(softmax_model, parties, seed=5, **kw)
    b = fedavg_keras(softmax_model, parties, seed=5, **kw)
    c = fedavg_keras(softmax_model, parties, seed=6, **kw)

    np.testing.assert_array_equal(a.thetas, b.thetas)
    assert not np.array_equal(a.thetas, c.thetas)


def test_divergence_is_recorded_and_the_model_keeps_the_last_finite_weights(regression_parties):
    h = fedavg_keras(linear_model, regression_parties, rounds=300, lr=3.0, local_epochs=2)

    assert h.diverged and "learning rate too large" in h.message
    np.testing.assert_array_equal(flatten_weights(h.model.get_weights()), h.theta)
    assert np.all(np.isfinite(h.theta))


# --- helpers and bad input -----------------------------------------------------------------------

def test_flatten_and_unflatten_round_trip():
    like = [np.zeros((2, 3), np.float32), np.zeros(3, np.float32)]
    theta = np.arange(9.0)

    parts = unflatten_weights(theta, like)

    assert [p.shape for p in parts] == [(2, 3), (3,)] and parts[0].dtype == np.float32
    np.testing.assert_array_equal(parts[0], [[0, 1, 2], [3, 4, 5]])
    np.testing.assert_array_equal(flatten_weights(parts), theta)


def test_party_data_accepts_parties_and_pairs(regression_parties):
    data = party_data([regression_parties[0], (np.ones((2, 3)), np.array([0, 1]))])

    assert data[0][0] is regression_parties[0].data[0] and data[1][1].tolist() == [0, 1]


@pytest.mark.parametrize("parties, error, message", [
    ([], ValueError, "parties must hold at least one party"),
    ("abc", TypeError, "parties must be a list of Party objects or"),
    ([np.ones(3)], TypeError, r"parties\[0\] must be a Party or an \(X, y\) pair"),
    ([(np.ones((3, 2)), np.ones(2))], ValueError, r"parties\[0\] must hold X and y with the same number"),
])
def test_bad_parties(parties, error, message):
    with pytest.raises(error, match=message):
        fedavg_keras(linear_model, parties, rounds=1, lr=0.1)


@pytest.mark.parametrize("kwargs, error, message", [
    (dict(lr=0.0), ValueError, "lr must be a positive finite number, got 0.0"),
    (dict(rounds=-1), ValueError, r"rounds must be an integer in \[0, inf\], got -1"),
    (dict(local_epochs=0), ValueError, r"local_epochs must be an integer in \[1, inf\], got 0"),
    (dict(batch_size=0), ValueError, r"batch_size must be an integer in \[1, inf\], got 0"),
    (dict(weighting="mean"), ValueError, "weighting must be one of 'samples', 'uniform'; got 'mean'"),
    (dict(fraction=1.5), ValueError, r"fraction must be in \(0, 1\], got 1.5"),
    (dict(loss=3), TypeError, "loss must be a Keras loss name"),
])
def test_bad_arguments(regression_parties, kwargs, error, message):
    args = dict(rounds=1, lr=0.1) | kwargs
    with pytest.raises(error, match=message):
        fedavg_keras(linear_model, regression_parties, **args)


def test_model_fn_must_build_a_keras_model(regression_parties):
    with pytest.raises(TypeError, match="model_fn must be a keras.Model or a function returning one"):
        fedavg_keras(42, regression_parties, rounds=1, lr=0.1)
    with pytest.raises(TypeError, match="model_fn must return a keras.Model, got int"):
        fedavg_keras(lambda: 42, regression_parties, rounds=1, lr=0.1)
