"""fl_helpers.keras_fl and models.keras: FedAvg of a Keras model equals the numpy course and Keras' own training.

References: finite differences, ``fl.fedavg`` on ``models.linear`` (a float64
Dense(1) is linear regression), ``keras.Model.fit`` with SGD, and literals.
Without TensorFlow the module skips, except under ``CI=true``, where it fails.
"""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
from optional import TF_MISSING, has_tensorflow, in_ci

import fl_helpers as fl
from fl_helpers import models

if not has_tensorflow():
    if in_ci():
        pytest.fail(f"{TF_MISSING}; CI=true: the Keras tests must run here", pytrace=False)
    pytest.skip(TF_MISSING, allow_module_level=True)

from fl_helpers.keras_fl import KerasHistory, fedavg_keras, party_data  # noqa: E402
from fl_helpers.models import KerasModel  # noqa: E402
from fl_helpers.tf_env import import_keras  # noqa: E402

keras = import_keras()
D = 3
LR = 2.0**-4     # Keras keeps the learning rate in float32: a power of two is the same number in float64


def linear_model():
    """theta_0 + X theta_{1:d} as a float64 Dense(1) starting at zero, like fl_helpers' theta0."""
    return keras.Sequential([keras.Input((D,), dtype="float64"),
                             keras.layers.Dense(1, kernel_initializer="zeros", dtype="float64")])


def mlp64():
    """A tiny float64 MLP: 3 -> 4 (tanh) -> 1, 21 weights."""
    init = keras.initializers.GlorotUniform(seed=1)
    return keras.Sequential([keras.Input((D,), dtype="float64"),
                             keras.layers.Dense(4, activation="tanh", kernel_initializer=init,
                                                bias_initializer="ones", dtype="float64"),
                             keras.layers.Dense(1, kernel_initializer=init, dtype="float64")])


def softmax_model(dtype="float32"):
    init = keras.initializers.GlorotUniform(seed=0)
    return keras.Sequential([keras.Input((2,), dtype=dtype),
                             keras.layers.Dense(3, activation="softmax", kernel_initializer=init, dtype=dtype)])


def softmax_model64():
    return softmax_model("float64")


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


# --- models.keras: flat parameters ------------------------------------------------------------------

def test_flatten_and_unflatten_round_trip():
    model = models.keras(mlp64)
    net = model.model
    theta = np.arange(21.0)

    parts = model.unflatten(theta)

    # keras order: kernel (3, 4), bias (4,), kernel (4, 1), bias (1,)
    assert [p.shape for p in parts] == [(3, 4), (4,), (4, 1), (1,)]
    assert all(p.dtype == np.float64 for p in parts) and model.dtype == np.float64
    np.testing.assert_array_equal(parts[0], np.arange(12.0).reshape(3, 4))
    np.testing.assert_array_equal(parts[1], [12, 13, 14, 15])
    np.testing.assert_array_equal(parts[3], [20])
    np.testing.assert_array_equal(model.flatten(parts), theta)
    assert model.n_params() == 21
    # init() is the builder's weights, in model.trainable_variables order
    np.testing.assert_array_equal(model.init(), np.concatenate([np.ravel(w) for w in net.get_weights()]))
    np.testing.assert_array_equal(model.init()[12:16], 1.0)          # bias_initializer="ones"


def test_unflatten_keeps_the_float32_dtype_of_the_layers():
    model = models.keras(softmax_model)

    parts = model.unflatten(np.arange(9.0))

    assert model.dtype == np.float32 and [p.dtype for p in parts] == [np.float32, np.float32]
    np.testing.assert_array_equal(parts[0], [[0, 1, 2], [3, 4, 5]])
    np.testing.assert_array_equal(model.flatten(parts), np.arange(9.0))


def test_gradient_matches_central_finite_differences():
    model = models.keras(mlp64)
    rng = np.random.default_rng(0)
    X, y = rng.standard_normal((11, D)), rng.standard_normal(11)
    theta = model.init() + 0.3 * rng.standard_normal(model.n_params())
    h = 1e-5

    g = model.gradient(theta, X, y)
    fd = np.array([(model.loss(theta + h * e, X, y) - model.loss(theta - h * e, X, y)) / (2 * h)
                   for e in np.eye(len(theta))])

    assert g.shape == theta.shape and g.dtype == np.float64
    np.testing.assert_allclose(g, fd, rtol=1e-6, atol=1e-9)


def test_predict_and_loss_of_a_dense_layer_by_hand():
    model = models.keras(linear_model)
    theta = np.array([1.0, -2.0, 0.5, 3.0])              # kernel [1, -2, 0.5], bias 3
    X = np.array([[1.0, 1.0, 2.0], [0.0, 1.0, 0.0]])
    y = np.array([4.0, 0.0])

    out = model.predict(theta, X)

    np.testing.assert_array_equal(out[:, 0], [1 - 2 + 1 + 3, -2 + 3])   # [3, 1]
    assert model.loss(theta, X, y) == pytest.approx(((3 - 4) ** 2 + (1 - 0) ** 2) / 2, rel=1e-15)


# --- equals the numpy course ------------------------------------------------------------------------

@pytest.mark.parametrize("weighting", ["samples", "uniform"])
@pytest.mark.parametrize("kw", [dict(local_epochs=1), dict(local_epochs=2, batch_size=7, fraction=0.6, seed=3)],
                         ids=["full-batch", "E2-b7-frac0.6-seed3"])
def test_linear_keras_fedavg_equals_fl_helpers_fedavg(regression_parties, kw, weighting):
    want = fl.fedavg(regression_parties, lr=LR, rounds=6, weighting=weighting, engine="loop", **kw)

    got = fedavg_keras(linear_model, regression_parties, rounds=6, lr=LR, loss="mse", weighting=weighting, **kw)

    assert isinstance(got, KerasHistory) and got.engine == "tensorflow"
    np.testing.assert_allclose(as_theta(got.thetas), want.thetas, rtol=0, atol=1e-10)
    np.testing.assert_allclose(got.losses, want.losses, rtol=1e-10)
    np.testing.assert_allclose(got.party_losses, want.party_losses, rtol=1e-10)
    assert len(got.selected) == 6
    for a, b in zip(got.selected, want.selected, strict=True):
        np.testing.assert_array_equal(a, b)
    if kw.get("fraction"):
        assert all(len(s) == 3 for s in got.selected)                    # round(0.6 * 5) parties
    np.testing.assert_array_equal(got.bytes_down, want.bytes_down)       # d + 1 float64 numbers each
    np.testing.assert_array_equal(got.bytes_down, [len(s) * (D + 1) * 8 for s in got.selected])
    trained = np.concatenate([np.ravel(w) for w in got.model.get_weights()])
    np.testing.assert_allclose(as_theta(trained)[0], want.theta, rtol=0, atol=1e-10)
    assert not np.allclose(want.theta, want.thetas[0])                   # it did train


def test_loop_and_tensorflow_engines_give_the_same_history(regression_parties):
    kw = dict(rounds=4, lr=0.05, local_epochs=2, batch_size=8, fraction=0.8, seed=9)

    a = fedavg_keras(mlp64, regression_parties, engine="loop", **kw)
    b = fedavg_keras(mlp64, regression_parties, engine="tensorflow", **kw)

    assert (a.engine, b.engine) == ("loop", "tensorflow")
    np.testing.assert_allclose(b.thetas, a.thetas, rtol=0, atol=1e-12)
    np.testing.assert_allclose(b.losses, a.losses, rtol=1e-12)
    np.testing.assert_allclose(b.party_losses, a.party_losses, rtol=1e-12)
    np.testing.assert_array_equal(b.bytes_up, a.bytes_up)
    np.testing.assert_array_equal(b.bytes_down, a.bytes_down)
    for s, t in zip(a.selected, b.selected, strict=True):
        np.testing.assert_array_equal(s, t)
    assert a.losses[-1] < a.losses[0]


# --- classification and Keras itself ----------------------------------------------------------------

def test_softmax_regression_learns_blobs_over_four_parties(blobs):
    X, y = blobs
    parties = [(X[i::4], y[i::4]) for i in range(4)]

    h = fedavg_keras(softmax_model, parties, rounds=15, lr=0.3, local_epochs=2, batch_size=16,
                     loss="sparse_categorical_crossentropy", seed=0)

    accuracy = np.mean(np.argmax(h.model(X).numpy(), axis=1) == y)
    assert accuracy > 0.9
    assert h.losses[-1] < 0.5 * h.losses[0]
    assert h.thetas.shape == (16, 2 * 3 + 3) and h.bytes_down[0] == 4 * 9 * 4     # float32 weights


@pytest.mark.parametrize("builder, atol", [(softmax_model64, 1e-12), (softmax_model, 1e-6)],
                         ids=["float64", "float32"])
def test_one_party_one_full_batch_epoch_is_keras_fit_with_sgd(blobs, builder, atol):
    """model.fit with full batches; float32: equal here to a few ulps, 1e-6 leaves room for other kernels.

    compile(loss="...") would compute the loss in Keras' floatx (float32) even for float64
    layers, so the float64 reference passes a loss object with dtype="float64".
    """
    X, y = blobs
    central = builder()
    dtype = central.trainable_variables[0].dtype
    central.compile(optimizer=keras.optimizers.SGD(0.25),
                    loss=keras.losses.SparseCategoricalCrossentropy(dtype=dtype))
    central.fit(X, y, batch_size=len(X), epochs=10, shuffle=False, verbose=0)

    h = fedavg_keras(builder, [(X, y)], rounds=10, lr=0.25, loss="sparse_categorical_crossentropy")

    want = np.concatenate([np.ravel(w) for w in central.get_weights()])
    np.testing.assert_allclose(h.theta, want, rtol=0, atol=atol)
    assert not np.allclose(h.thetas[0], h.theta, atol=1e-3)


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
    trained = np.concatenate([np.ravel(w) for w in h.model.get_weights()])
    np.testing.assert_array_equal(trained, h.theta)
    assert np.all(np.isfinite(h.theta))


# --- lazy import, helpers and bad input -------------------------------------------------------------

def test_importing_keras_fl_does_not_import_tensorflow():
    code = ("import sys, fl_helpers, fl_helpers.keras_fl, fl_helpers.models\n"
            "fl_helpers.models.keras(lambda: None)\n"                    # building the adapter is lazy too
            "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('tensorflow', 'keras'))\n"
            "assert not bad, bad\n"
            "print('ok')\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)

    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "ok"


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
    (dict(engine="vectorized"), ValueError, "vectorized"),
    (dict(loss=3), TypeError, "loss must be a Keras loss name .*got int"),
])
def test_bad_arguments(regression_parties, kwargs, error, message):
    args = dict(rounds=1, lr=0.1) | kwargs
    with pytest.raises(error, match=message):
        fedavg_keras(linear_model, regression_parties, **args)


def test_model_fn_must_build_a_keras_model(regression_parties):
    with pytest.raises(TypeError, match="model_fn must be a keras.Model or a function returning one, got int"):
        fedavg_keras(42, regression_parties, rounds=1, lr=0.1)
    with pytest.raises(TypeError, match="model_fn must be a keras.Model or a function returning one, got int"):
        KerasModel(42)
    with pytest.raises(TypeError, match="model_fn must return a keras.Model, got int"):
        fedavg_keras(lambda: 42, regression_parties, rounds=1, lr=0.1)


def test_models_with_non_trainable_weights_are_refused():
    def with_batchnorm():
        return keras.Sequential([keras.Input((D,)), keras.layers.BatchNormalization(), keras.layers.Dense(1)])

    with pytest.raises(ValueError, match=r"all trainable, got 2 non-trainable variable\(s\)"):
        models.keras(with_batchnorm).init()
