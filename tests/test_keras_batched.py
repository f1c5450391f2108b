"""The TensorFlow engine's batched path for Keras MLPs (fl_helpers/engines/keras_batched.py).

References, independent of the code under test:

* the loop engine: ``models.keras``' gradient, ``tf.GradientTape`` on the real
  ``keras.Model`` (Keras' own Dense layers and losses), one party and one step at a time;
* a hand-written numpy MLP (forward and backward by the chain rule, checked against
  finite differences here) and hand-written softmax / logistic gradients from the logits;
* schedules written out by hand.

Needs TensorFlow: without it the TensorFlow tests skip, except in CI (``CI=true``), where they fail.
"""

from __future__ import annotations

import numpy as np
import pytest
from optional import require_tensorflow

import fl_helpers as fl
from fl_helpers import models
from fl_helpers.engines.keras_batched import LOSSES, schedule
from fl_helpers.engines.tf_engine import FLOAT32_RTOL

NO_TF_NEEDED = {"test_schedule_by_hand", "test_schedule_shuffles_each_party_by_its_own_keys",
                "test_the_numpy_mlp_gradient_matches_finite_differences"}
D = 3


@pytest.fixture(autouse=True)
def _needs_tensorflow(request):
    if request.function.__name__ not in NO_TF_NEEDED:
        require_tensorflow()


def _keras():
    from fl_helpers.tf_env import import_keras
    return import_keras()


def _engine(parties, **kw):
    from fl_helpers.engines.tf_engine import TensorFlowEngine
    return TensorFlowEngine(parties, device="cpu", **kw)


# --- models -------------------------------------------------------------------------------------

def mlp_builder(dtype="float64", head="mse", hidden=(5,), activation="tanh", n_in=D, classes=3):
    """A Sequential of Dense layers: hidden layers, then Dense(1) ("mse", "bce": sigmoid) or Dense(classes, softmax)."""
    def build():
        keras = _keras()
        init = keras.initializers.GlorotUniform(seed=1)
        layers = [keras.Input((n_in,), dtype=dtype)]
        layers += [keras.layers.Dense(h, activation=activation, kernel_initializer=init,
                                      bias_initializer=keras.initializers.RandomNormal(0.0, 0.3, seed=2), dtype=dtype)
                   for h in hidden]
        out, act = {"mse": (1, None), "bce": (1, "sigmoid"), "softmax": (classes, "softmax")}[head]
        layers.append(keras.layers.Dense(out, activation=act, kernel_initializer=init,
                                         bias_initializer=keras.initializers.RandomNormal(0.0, 0.3, seed=3),
                                         dtype=dtype))
        return keras.Sequential(layers)
    build.__name__ = f"mlp_{dtype}_{head}"
    return build


LOSS = {"mse": "mse", "bce": "binary_crossentropy", "softmax": "sparse_categorical_crossentropy"}
MODELS: dict = {}


def model(dtype="float64", head="mse", **kw):
    """One KerasModel per configuration for the whole module (its compiled functions are built once)."""
    key = (dtype, head, tuple(sorted(kw.items())))
    if key not in MODELS:
        MODELS[key] = models.keras(mlp_builder(dtype, head, **kw), loss=LOSS[head])
    return MODELS[key]


def data(head, n=90, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, D))
    if head == "mse":
        y = np.sin(X[:, 0]) + 0.5 * X[:, 1] * X[:, 2] + 0.1 * rng.standard_normal(n)
    elif head == "bce":
        y = (X[:, 0] + X[:, 1] ** 2 > 0.5).astype(float)
    else:
        y = np.digitize(X[:, 0] + 0.5 * X[:, 2], [-0.5, 0.5]).astype(float)
    return X, y


SPLITS = {"equal": [15] * 6, "unequal": [3, 30, 7, 1, 24, 25]}


def parties_of(m, split="unequal", head="mse", n_parties=None):
    sizes = SPLITS[split] if n_parties is None else [15] * n_parties
    X, y = data(head, sum(sizes))
    cuts = np.cumsum(sizes)[:-1]
    return [fl.Party(Xi, yi, model=m) for Xi, yi in zip(np.split(X, cuts), np.split(y, cuts), strict=True)]


RUNS = {
    "fedsgd": dict(),
    "E3-full": dict(local_epochs=3),
    "E2-b4-frac0.5-seed": dict(local_epochs=2, batch_size=4, fraction=0.5, seed=7),
    "E2-b7-seed": dict(local_epochs=2, batch_size=7, seed=3),
    "E1-b5-seed": dict(local_epochs=1, batch_size=5, seed=2),
    "E1-b100": dict(local_epochs=1, batch_size=100, seed=1),        # larger than every party
}


def run(parties, name, engine, lr=0.2, rounds=3):
    kw = dict(RUNS[name], engine=engine)
    if name == "fedsgd":
        return fl.fedsgd(parties, lr=lr, rounds=rounds, **kw)
    return fl.fedavg(parties, lr=lr, rounds=rounds, **kw)


# --- the schedule (no TensorFlow needed) --------------------------------------------------------

def test_schedule_by_hand():
    # parties of 3 and 5 rows at rows 10.. and 0.. of the stacked data; batches of 2, data order
    index = schedule(np.array([10, 0]), np.array([3, 5]), batch_size=2, epochs=2, keys=None)

    assert index.shape == (1, 3, 2, 2) and index.dtype == np.int32          # one order, 3 steps, 2 parties
    np.testing.assert_array_equal(index[0], [[[10, 11], [0, 1]],
                                             [[12, -1], [2, 3]],
                                             [[-1, -1], [4, -1]]])
    full = schedule(np.array([10, 0]), np.array([3, 5]), batch_size=None, epochs=4, keys=np.zeros(32))
    np.testing.assert_array_equal(full, [[[[10, 11, 12, -1, -1], [0, 1, 2, 3, 4]]]])


def test_schedule_shuffles_each_party_by_its_own_keys():
    sizes, epochs, b = np.array([4, 2]), 2, 3
    keys = fl.randomness.shuffle_keys(11, 5, [3, 8], sizes, epochs)     # party 3 (4 rows), party 8 (2 rows)

    index = schedule(np.array([100, 200]), sizes, batch_size=b, epochs=epochs, keys=keys)

    assert index.shape == (2, 2, 2, 3)
    for e in range(epochs):
        # party 8 alone: keys (seed, round, party) only, independent of the other selected parties
        own = fl.randomness.shuffle_keys(11, 5, [8], [2], epochs)
        o1 = np.argsort(own[e * 2:(e + 1) * 2], kind="stable")
        o0 = np.argsort(keys[e * 4:(e + 1) * 4], kind="stable")
        np.testing.assert_array_equal(index[e, 0, 0], 100 + o0[:3])
        np.testing.assert_array_equal(index[e, 1, 0], [100 + o0[3], -1, -1])
        np.testing.assert_array_equal(index[e, 0, 1], [200 + o1[0], 200 + o1[1], -1])
        np.testing.assert_array_equal(index[e, 1, 1], [-1, -1, -1])
    assert not np.array_equal(index[0], index[1])                      # a new order each epoch
    one = schedule(np.array([100, 200]), sizes, batch_size=b, epochs=1, keys=keys[[0, 1, 2, 3, 8, 9]])
    o0 = np.argsort(keys[:4], kind="stable")
    assert one.shape == (1, 2, 2, 3) and not np.array_equal(o0, np.arange(4))
    np.testing.assert_array_equal(one[0, :, 0].ravel()[:4], 100 + o0)  # one epoch is shuffled too


# --- a hand-written numpy MLP -------------------------------------------------------------------

def numpy_mlp(theta, X, y, head, hidden=5):
    """Loss and gradient of d -> hidden (tanh) -> output, theta = [W1 (d, H), b1, W2 (H, K), b2] (Keras order)."""
    d, m = X.shape[1], len(y)
    K = 3 if head == "softmax" else 1
    W1 = theta[:d * hidden].reshape(d, hidden)
    b1 = theta[d * hidden:(d + 1) * hidden]
    W2 = theta[(d + 1) * hidden:(d + 1) * hidden + hidden * K].reshape(hidden, K)
    b2 = theta[(d + 1) * hidden + hidden * K:]
    H = np.tanh(X @ W1 + b1)
    Z = H @ W2 + b2
    if head == "mse":
        r = Z[:, 0] - y
        loss, dZ = np.mean(r ** 2), (2 * r / m)[:, None]
    elif head == "bce":
        z = Z[:, 0]
        loss = np.mean(np.logaddexp(0.0, z) - y * z)                      # -y log p - (1 - y) log(1 - p)
        dZ = ((1 / (1 + np.exp(-z)) - y) / m)[:, None]
    else:
        logZ = Z - np.logaddexp.reduce(Z, axis=1, keepdims=True)
        onehot = np.eye(K)[y.astype(int)]
        loss, dZ = -np.mean(np.sum(onehot * logZ, axis=1)), (np.exp(logZ) - onehot) / m
    dA = (dZ @ W2.T) * (1 - H ** 2)
    grad = np.concatenate([(X.T @ dA).ravel(), dA.sum(0), (H.T @ dZ).ravel(), dZ.sum(0)])
    return loss, grad


def numpy_local_sgd(theta, X, y, head, *, lr, epochs, batch_size, keys):
    m, total, local = len(y), np.zeros_like(theta), theta.copy()
    for e in range(epochs):
        order = np.arange(m) if keys is None else np.argsort(keys[e * m:(e + 1) * m], kind="stable")
        for s in range(0, m, batch_size or m):
            idx = order[s:s + (batch_size or m)]
            g = numpy_mlp(local, X[idx], y[idx], head)[1]
            local, total = local - lr * g, total + g
    return total


@pytest.mark.parametrize("head", ["mse", "bce", "softmax"])
def test_the_numpy_mlp_gradient_matches_finite_differences(head):
    X, y = data(head, 9, seed=5)
    theta = np.random.default_rng(1).normal(0, 0.7, (D + 1) * 5 + 6 * (3 if head == "softmax" else 1))
    h = 1e-6

    loss, g = numpy_mlp(theta, X, y, head)
    fd = [(numpy_mlp(theta + h * e, X, y, head)[0] - numpy_mlp(theta - h * e, X, y, head)[0]) / (2 * h)
          for e in np.eye(len(theta))]

    assert loss > 0
    np.testing.assert_allclose(g, fd, rtol=1e-6, atol=1e-8)


@pytest.mark.parametrize("head", ["mse", "bce", "softmax"])
@pytest.mark.parametrize("kw", [dict(local_epochs=1), dict(local_epochs=2, batch_size=4, fraction=0.5, seed=4)],
                         ids=["fedsgd", "E2-b4-frac0.5"])
def test_one_round_equals_a_hand_written_numpy_mlp(head, kw):
    """One FedAvg round of a d-5(tanh)-output MLP: hand-written forward/backward, local SGD and weighted mean."""
    m = model("float64", head)
    parties = parties_of(m, "unequal", head)
    lr, theta0 = 0.3, m.init()

    h = fl.fedavg(parties, lr=lr, rounds=1, engine=_engine(parties), keep_updates=True, **kw)

    selected = h.selected[0]
    updates = []
    for i in selected:
        X, y = parties[i].data
        keys = None if "batch_size" not in kw else fl.randomness.shuffle_keys(kw["seed"], 1, [i], [len(y)], 2)
        updates.append(numpy_local_sgd(theta0, X, y, head, lr=lr, epochs=kw["local_epochs"],
                                       batch_size=kw.get("batch_size"), keys=keys))
    sizes = np.array([parties[i].n_samples for i in selected], dtype=float)
    want = theta0 - lr * (sizes / sizes.sum()) @ np.array(updates)

    assert "batched per-party weights" in h.device
    np.testing.assert_allclose(h.updates[0], updates, rtol=0, atol=1e-12)
    np.testing.assert_allclose(h.thetas[1], want, rtol=0, atol=1e-12)
    losses = [numpy_mlp(theta0, *p.data, head)[0] for p in parties]
    np.testing.assert_allclose(h.party_losses[0], losses, rtol=1e-12)
    assert not np.allclose(h.thetas[1], theta0)


def test_a_saturated_softmax_takes_its_gradient_from_the_logits():
    """Probabilities below Keras' epsilon (1e-7): clipping them would zero the gradient; Keras (and this path)
    hand the softmax's logits to the cross-entropy. Reference: (softmax(Z) - onehot) / m from the logits."""
    keras = _keras()
    m = models.keras(lambda: keras.Sequential([keras.Input((D,), dtype="float64"),
                                               keras.layers.Dense(3, activation="softmax", dtype="float64")]),
                     loss="sparse_categorical_crossentropy")
    X, y = data("softmax", 20, seed=2)
    parties = [fl.Party(X[:8], y[:8], model=m), fl.Party(X[8:], y[8:], model=m)]
    theta = 40 * np.random.default_rng(0).standard_normal(m.n_params())        # logits differ by ~100

    work = _engine(parties).local_work(theta, [0, 1], lr=0.1, epochs=1, batch_size=None)

    for q, rows in enumerate([slice(0, 8), slice(8, 20)]):
        Z = X[rows] @ theta[:9].reshape(3, 3) + theta[9:]
        logp = Z - np.logaddexp.reduce(Z, axis=1, keepdims=True)
        R = (np.exp(logp) - np.eye(3)[y[rows].astype(int)]) / len(Z)
        np.testing.assert_allclose(work.updates[q], np.concatenate([(X[rows].T @ R).ravel(), R.sum(0)]),
                                   rtol=0, atol=1e-12)
        assert work.losses[q] == pytest.approx(-np.mean(logp[np.arange(len(Z)), y[rows].astype(int)]), rel=1e-12)
    assert work.losses.min() > 16.2                                             # beyond -log(1e-7)


# --- parity with the loop engine ----------------------------------------------------------------

@pytest.mark.parametrize("split", ["equal", "unequal"])
@pytest.mark.parametrize("name", list(RUNS))
@pytest.mark.parametrize("head", ["mse", "softmax"])
def test_float64_equals_the_loop_engine(head, name, split):
    m = model("float64", head, hidden=(6, 4), activation="relu" if head == "mse" else "tanh")
    parties = parties_of(m, split, head)
    eng = _engine(parties)

    got, want = run(parties, name, eng), run(parties, name, "loop")

    assert eng.device == "CPU, Keras batched per-party weights" and got.device == eng.device
    np.testing.assert_allclose(got.thetas, want.thetas, rtol=0, atol=1e-10)
    np.testing.assert_allclose(got.party_losses, want.party_losses, rtol=1e-10)
    for a, b in zip(got.selected, want.selected, strict=True):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(got.bytes_up, want.bytes_up)
    assert got.losses[-1] < got.losses[0]


def test_a_dense1_linear_model_equals_the_loop_engine_and_linear_regression():
    """Dense(1), no activation, MSE: the loop engine and fl_helpers' models.linear (intercept first)."""
    keras = _keras()
    m = models.keras(lambda: keras.Sequential([keras.Input((D,), dtype="float64"),
                                               keras.layers.Dense(1, dtype="float64")]), loss="mse")
    X, y, _ = fl.make_regression(60, D, noise=0.3, seed=4)
    rows = np.split(np.arange(60), [5, 20])
    theta0 = np.array([0.2, -0.1, 0.3, 0.5])                                 # w1, w2, w3, b
    kw = dict(lr=0.05, rounds=4, local_epochs=2, batch_size=6, fraction=2 / 3, seed=7)

    got = fl.fedavg([fl.Party(X[r], y[r], model=m) for r in rows], engine="tensorflow", theta0=theta0, **kw)
    loop = fl.fedavg([fl.Party(X[r], y[r], model=m) for r in rows], engine="loop", theta0=theta0, **kw)
    glm = fl.fedavg([fl.Party(X[r], y[r]) for r in rows], engine="loop", theta0=theta0[[3, 0, 1, 2]], **kw)

    assert "batched" in got.device
    np.testing.assert_allclose(got.thetas, loop.thetas, rtol=0, atol=1e-12)
    np.testing.assert_allclose(got.thetas[:, [3, 0, 1, 2]], glm.thetas, rtol=0, atol=1e-12)


@pytest.mark.parametrize("kw", [dict(local_epochs=2), dict(local_epochs=2, batch_size=8, fraction=0.5, seed=2)])
def test_one_feature_dense1_keeps_its_shapes_through_the_loop(kw):
    """A (1, 1) kernel: the einsum gradient must not lose its static sizes in the while loop (notebook 04)."""
    keras = _keras()
    m = models.keras(lambda: keras.Sequential([keras.Input((1,), dtype="float64"),
                                               keras.layers.Dense(1, kernel_initializer="zeros",
                                                                  dtype="float64")]), loss="mse")
    X, y, _ = fl.make_regression(80, 1, noise=0.3, seed=5)
    rows = np.split(np.arange(80), [10, 45])

    got = fl.fedavg([fl.Party(X[r], y[r], model=m) for r in rows], engine="tensorflow", lr=0.1, rounds=3, **kw)
    glm = fl.fedavg([fl.Party(X[r], y[r]) for r in rows], engine="loop", lr=0.1, rounds=3, **kw)

    assert "batched" in got.device
    np.testing.assert_allclose(got.thetas[:, [1, 0]], glm.thetas, rtol=0, atol=1e-12)


def test_layers_without_bias_and_other_activations_equal_the_loop_engine():
    keras = _keras()
    init = keras.initializers.GlorotUniform(seed=4)
    m = models.keras(lambda: keras.Sequential([
        keras.Input((D,), dtype="float64"),
        keras.layers.Dense(6, activation="gelu", use_bias=False, kernel_initializer=init, dtype="float64"),
        keras.layers.Dense(5, activation="softplus", kernel_initializer=init, dtype="float64"),
        keras.layers.Dense(3, activation="softmax", use_bias=False, kernel_initializer=init, dtype="float64")]),
        loss="sparse_categorical_crossentropy")
    parties = parties_of(m, "unequal", "softmax")
    eng = _engine(parties)

    got, want = run(parties, "E2-b7-seed", eng, lr=0.5), run(parties, "E2-b7-seed", "loop", lr=0.5)

    assert "batched" in eng.device and m.n_params() == 3 * 6 + 6 * 5 + 5 + 5 * 3
    np.testing.assert_allclose(got.thetas, want.thetas, rtol=0, atol=1e-10)
    assert got.losses[-1] < got.losses[0]


@pytest.mark.parametrize("name", ["fedsgd", "E3-full", "E2-b4-frac0.5-seed"])
def test_float32_is_within_the_stated_tolerance_of_the_loop_engine(name):
    m = model("float32", "softmax", hidden=(8,))
    parties = parties_of(m, "unequal", "softmax")

    got, want = run(parties, name, _engine(parties), rounds=5), run(parties, name, "loop", rounds=5)

    assert _engine(parties).dtype == np.float32 and got.bytes_down[0] == want.bytes_down[0]
    scale = np.abs(want.thetas).max()
    assert np.abs(got.thetas - want.thetas).max() <= FLOAT32_RTOL * scale
    np.testing.assert_allclose(got.party_losses, want.party_losses, rtol=FLOAT32_RTOL)
    assert not np.allclose(got.thetas[-1], got.thetas[0], atol=1e-3)


# --- tracing, free losses -----------------------------------------------------------------------

def test_one_trace_across_parties_sizes_lr_epochs_and_batch_sizes():
    m = models.keras(mlp_builder("float64", "softmax", hidden=(4,)), loss="sparse_categorical_crossentropy")
    eng = _engine(parties_of(m, "unequal", "softmax"))
    other = _engine(parties_of(m, "equal", "softmax"))              # other parties, same model: shared functions
    theta = m.init()
    calls = [(eng, [0, 1, 2, 3, 4, 5], 0.1, 1, None), (eng, [1, 3], 0.5, 3, None), (eng, [2], 0.2, 2, 1),
             (eng, [0, 4, 5], 0.3, 1, 7), (other, [0, 1, 2, 3, 4, 5], 0.05, 4, 100), (other, [5], 1.0, 2, 4)]

    for e, selected, lr, epochs, b in calls:
        work = e.local_work(theta, selected, lr=lr, epochs=epochs, batch_size=b, seed=3, round=2)
        assert work.updates.shape == (len(selected), m.n_params()) and np.all(np.isfinite(work.updates))
    eng.party_losses(theta)
    other.party_losses(theta + 1)

    assert other._keras.functions is eng._keras.functions
    assert eng._keras.functions.local_work.experimental_get_tracing_count() == 1
    assert eng._keras.functions.party_losses.experimental_get_tracing_count() == 1


@pytest.mark.parametrize("epochs", [1, 3])
def test_full_batch_losses_come_for_free_and_equal_party_losses(epochs):
    m = model("float64", "mse")
    parties = parties_of(m, "unequal", "mse")
    eng = _engine(parties)
    theta = m.init() + 0.1

    work = eng.local_work(theta, np.arange(6), lr=0.1, epochs=epochs, batch_size=None)

    np.testing.assert_allclose(work.losses, eng.party_losses(theta), rtol=1e-13)
    np.testing.assert_allclose(work.losses, [m.loss(theta, *p.data) for p in parties], rtol=1e-12)
    np.testing.assert_array_equal(work.weights, SPLITS["unequal"])
    assert eng.local_work(theta, [0, 2], lr=0.1, epochs=1, batch_size=5).losses is None


# --- other models fall back to one party at a time ---------------------------------------------

def _conv_model():
    keras = _keras()
    return keras.Sequential([keras.Input((D,), dtype="float64"), keras.layers.Reshape((D, 1)),
                             keras.layers.Conv1D(2, 2, activation="tanh", dtype="float64"),
                             keras.layers.Flatten(), keras.layers.Dense(1, dtype="float64")])


def _functional_model():
    keras = _keras()
    x = keras.Input((D,), dtype="float64")
    return keras.Model(x, keras.layers.Dense(1, dtype="float64")(keras.layers.Dense(4, activation="tanh",
                                                                                    dtype="float64")(x)))


@pytest.mark.parametrize("builder, loss, reason", [
    (_conv_model, "mse", "layer 0 is a Reshape, not a Dense layer"),
    (_functional_model, "mse", "the model is a Functional, not a keras.Sequential"),
    (mlp_builder("float64", "mse"), "MeanSquaredError", "loss 'MeanSquaredError' is not one of the batched losses"),
    (mlp_builder("float64", "mse"), lambda y, p: (y - p[:, 0]) ** 2, "the loss is not given by name"),
])
def test_other_models_fall_back_to_one_party_at_a_time(builder, loss, reason):
    m = models.keras(builder, loss=loss)
    parties = parties_of(m, "unequal", "mse")
    eng = _engine(parties)

    got = run(parties, "E2-b7-seed", eng, lr=0.05)
    want = run(parties, "E2-b7-seed", "loop", lr=0.05)

    assert eng.device == f"CPU, Keras one party at a time ({reason})"
    np.testing.assert_allclose(got.thetas, want.thetas, rtol=0, atol=1e-12)
    assert got.losses[-1] < got.losses[0]


def test_the_batched_losses_are_keras_losses():
    keras = _keras()
    for name, canonical in LOSSES.items():
        assert keras.losses.get(name) is keras.losses.get(canonical)


@pytest.mark.parametrize("loss", ["mae", "mean_absolute_percentage_error", "msle", "huber", "log_cosh"])
def test_the_other_regression_losses_equal_the_loop_engine(loss):
    m = models.keras(mlp_builder("float64", "mse"), loss=loss)
    parties = parties_of(m, "unequal", "mse")
    if loss in ("msle", "mean_absolute_percentage_error"):   # log(1 + y), |y - p| / |y|: targets away from 0
        parties = [fl.Party(p.data[0], 1 + np.abs(p.data[1]), model=m) for p in parties]
    eng = _engine(parties)

    lr = 0.002 if loss == "mean_absolute_percentage_error" else 0.2          # percent: 100 x the scale

    got, want = run(parties, "E2-b4-frac0.5-seed", eng, lr), run(parties, "E2-b4-frac0.5-seed", "loop", lr)

    assert "batched" in eng.device
    np.testing.assert_allclose(got.thetas, want.thetas, rtol=0, atol=1e-10)
    np.testing.assert_allclose(got.party_losses, want.party_losses, rtol=1e-10)
    assert not np.allclose(got.thetas[-1], got.thetas[0])


def test_a_float32_input_before_float64_layers_falls_back_and_matches_keras():
    """Keras rounds the data to the Input's float32; the batched path would not, so it steps aside."""
    keras = _keras()
    m = models.keras(lambda: keras.Sequential([keras.Input((D,)), keras.layers.Dense(4, activation="relu",
                                                                                      dtype="float64"),
                                               keras.layers.Dense(1, dtype="float64")]), loss="mse")
    X, y, _ = fl.make_regression(22, D, noise=0.5, seed=0)
    rows = np.split(np.arange(22), [5, 13])
    kw = dict(lr=0.1, rounds=3, local_epochs=2)

    got = fl.fedavg([fl.Party(X[r], y[r], model=m) for r in rows], engine="tensorflow", **kw)
    loop = fl.fedavg([fl.Party(X[r], y[r], model=m) for r in rows], engine="loop", **kw)

    assert "one party at a time" in got.device and "input is float32" in got.device
    np.testing.assert_allclose(got.thetas, loop.thetas, rtol=0, atol=1e-12)
