"""fl_helpers.engines.tf_engine: the TensorFlow engine computes what the numpy engines compute.

References: the vectorized numpy engine (another implementation), and a
FedAvg written out in this file from the formulas (the GLM gradients by hand,
client sampling and minibatch order from the documented randomness contract).

Needs TensorFlow: without it these tests skip, except in CI (``CI=true``),
where they fail (as ``tests/test_browser.py`` does without Chromium).
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from optional import require

import fl_helpers as fl
from fl_helpers import models
from fl_helpers.engines import make_engine

# these modules import TensorFlow only when an engine is built (checked below)
from fl_helpers.engines.tf_engine import FLOAT32_RTOL, TensorFlowEngine, compiled_functions, minibatch_schedule
from fl_helpers.tf_env import import_keras, import_tensorflow

ROOT = Path(__file__).resolve().parent.parent
HAS_TF = importlib.util.find_spec("tensorflow") is not None
NO_TF_NEEDED = {                            # these run (and must pass) without TensorFlow too
    "test_import_fl_helpers_does_not_import_tensorflow", "test_the_hand_written_fedavg_is_right_on_one_party",
    "test_minibatch_schedule_by_hand", "test_bad_parties",
    "test_minibatch_schedule_shuffles_by_the_keys_party_after_party_epoch_after_epoch"}


def _require(ok: bool, message: str) -> None:
    require(ok, message, what="the TensorFlow tests")


@pytest.fixture(scope="module")
def tf():
    _require(HAS_TF, "TensorFlow is not installed (pip install -e '.[cpu]')")
    return import_tensorflow()


@pytest.fixture(autouse=True)
def _needs_tensorflow(request):
    if request.function.__name__ not in NO_TF_NEEDED:
        request.getfixturevalue("tf")


# --- data: the same features, targets for each model ------------------------------------------

SOFTMAX3 = models.softmax(n_classes=3)
MODELS = {"linear": models.linear, "logistic": models.logistic, "softmax": SOFTMAX3}
K = {"linear": 1, "logistic": 1, "softmax": 3}


def labels(kind, y):
    """Targets for model ``kind``: y itself, y above its median (0/1), or y's tercile (0, 1, 2)."""
    if kind == "linear":
        return y
    cuts = [np.median(y)] if kind == "logistic" else np.quantile(y, [1 / 3, 2 / 3])
    return np.digitize(y, cuts).astype(float)


def with_model(kind, parties):
    """The same rows as parties of model ``kind``."""
    return [fl.Party(*p.data, model=MODELS[kind], name=p.name) for p in parties]


@pytest.fixture(scope="module")
def party_sets():
    """Equal sizes (12 x 50: the batched path), unequal (quantity: segment sums), nearly equal (47/46)."""
    X, y, _ = fl.make_regression(600, 4, noise=0.5, seed=1)
    out = {}
    for kind in MODELS:
        target = labels(kind, y)
        out[kind, "equal"] = with_model(kind, fl.split(X, target, 12, seed=2))
        out[kind, "quantity"] = with_model(kind, fl.split(X, target, 9, scheme="quantity", skew=1.5, seed=2))
        out[kind, "iid-47-46"] = with_model(kind, fl.split(X, target, 13, seed=2))
    return out


@pytest.fixture(scope="module")
def engines(tf, party_sets):
    """One engine per party set and dtype, built once (the data move to the device once)."""
    return {(kind, split, dtype): TensorFlowEngine(parties, dtype=dtype, device="cpu")
            for (kind, split), parties in party_sets.items() for dtype in ("float64", "float32")}


RUNS = {
    "fedsgd": dict(),
    "E3-full": dict(local_epochs=3),
    "E2-b7": dict(local_epochs=2, batch_size=7),
    "E1-b1": dict(local_epochs=1, batch_size=1),
    "E2-b100": dict(local_epochs=2, batch_size=100),          # larger than every party
    "frac0.4-E2-b5": dict(local_epochs=2, batch_size=5, fraction=0.4),
    "frac0.5-E3-full": dict(local_epochs=3, fraction=0.5),
}
LR = {"linear": 0.05, "logistic": 0.5, "softmax": 0.5}


def _run(parties, run, engine, weighting, kind="linear", rounds=12):
    kw = dict(RUNS[run], weighting=weighting, engine=engine)
    if run == "fedsgd":
        return fl.fedsgd(parties, lr=LR[kind], rounds=rounds, **kw)
    return fl.fedavg(parties, lr=LR[kind], rounds=rounds, seed=3, **kw)


# --- a FedAvg written out from the formulas -----------------------------------------------------

def _softmax(Z):
    E = np.exp(Z - Z.max(axis=1, keepdims=True))
    return E / E.sum(axis=1, keepdims=True)


def hand_gradient(kind, theta, X, y, n_classes):
    """c/m X~^T (mu(X~ Theta) - Y), flattened row by row (intercepts first)."""
    Xt = np.column_stack([np.ones(len(y)), X])
    if kind == "linear":
        return 2.0 / len(y) * Xt.T @ (Xt @ theta - y)
    if kind == "logistic":
        return Xt.T @ (1.0 / (1.0 + np.exp(-(Xt @ theta))) - y) / len(y)
    Theta = theta.reshape(Xt.shape[1], n_classes)
    onehot = np.eye(n_classes)[y.astype(int)]
    return (Xt.T @ (_softmax(Xt @ Theta) - onehot) / len(y)).ravel()


def hand_loss(kind, theta, X, y, n_classes):
    Xt = np.column_stack([np.ones(len(y)), X])
    if kind == "linear":
        return np.mean((Xt @ theta - y) ** 2)
    if kind == "logistic":
        z = Xt @ theta
        return np.mean(np.log1p(np.exp(z)) - y * z)
    Z = Xt @ theta.reshape(Xt.shape[1], n_classes)
    return np.mean(np.log(np.exp(Z).sum(axis=1)) - Z[np.arange(len(y)), y.astype(int)])


def hand_fedavg(kind, data, *, lr, rounds, local_epochs=1, batch_size=None, fraction=1.0,
                weighting="samples", seed=3, theta0=None):
    """FedAvg by the book: sample, train locally from theta, average the local models (zeros to start)."""
    n, k = len(data), K[kind]
    theta = np.zeros((data[0][0].shape[1] + 1) * k) if theta0 is None else np.array(theta0, dtype=float)
    thetas = [theta]
    for t in range(1, rounds + 1):
        if fraction == 1.0:
            selected = np.arange(n)
        else:                               # the contract: generator(seed, "sampling", t).choice(n, k), sorted
            rng = fl.randomness.generator(seed, "sampling", t)
            selected = np.sort(rng.choice(n, max(1, round(fraction * n)), replace=False))
        local, sizes = [], []
        for i in selected:
            X, y = data[i]
            m = len(y)
            keys = None if batch_size is None else fl.randomness.shuffle_keys(seed, t, [i], [m], local_epochs)
            th = theta.copy()
            for e in range(local_epochs):
                if batch_size is None:
                    batches = [np.arange(m)]
                else:
                    order = np.argsort(keys[e * m:(e + 1) * m], kind="stable")
                    batches = [order[s:s + batch_size] for s in range(0, m, batch_size)]
                for b in batches:
                    th = th - lr * hand_gradient(kind, th, X[b], y[b], k)
            local.append(th)
            sizes.append(m)
        w = np.array(sizes, float) / sum(sizes) if weighting == "samples" else np.full(len(sizes), 1 / len(sizes))
        theta = w @ np.array(local)
        thetas.append(theta)
    return np.array(thetas)


def test_the_hand_written_fedavg_is_right_on_one_party():
    """The hand-written gradients match finite differences of the hand-written losses, and one party
    with one full-batch epoch per round is plain gradient descent."""
    X, y, _ = fl.make_regression(30, 2, noise=0.3, seed=0)
    h = 1e-6
    for kind in MODELS:
        target = labels(kind, y)
        theta = np.linspace(-0.3, 0.3, 3 * K[kind])
        numeric = [(hand_loss(kind, theta + h * e, X, target, K[kind]) - hand_loss(kind, theta - h * e, X, target,
                                                                                   K[kind])) / (2 * h)
                   for e in np.eye(len(theta))]
        np.testing.assert_allclose(hand_gradient(kind, theta, X, target, K[kind]), numeric, atol=1e-7)
    thetas = hand_fedavg("linear", [(X, y)], lr=0.1, rounds=2)
    step1 = thetas[0] - 0.1 * hand_gradient("linear", thetas[0], X, y, 1)
    np.testing.assert_allclose(thetas[1], step1, rtol=0, atol=0)


# --- parity with the numpy engines ----------------------------------------------------------

@pytest.mark.parametrize("weighting", ["samples", "uniform"])
@pytest.mark.parametrize("run", list(RUNS))
@pytest.mark.parametrize("split", ["equal", "quantity", "iid-47-46"])
def test_float64_linear_runs_equal_the_vectorized_engine(party_sets, engines, split, run, weighting):
    parties = party_sets["linear", split]
    want = _run(parties, run, "vectorized", weighting)

    got = _run(parties, run, engines["linear", split, "float64"], weighting)

    assert got.diverged_at is None and not np.allclose(want.thetas[-1], want.thetas[0])
    assert got.thetas.dtype == got.party_losses.dtype == np.float64
    np.testing.assert_allclose(got.thetas, want.thetas, rtol=0, atol=1e-10)
    np.testing.assert_allclose(got.party_losses, want.party_losses, rtol=0, atol=1e-10)
    for a, b in zip(got.selected, want.selected, strict=True):
        np.testing.assert_array_equal(a, b)
    assert (got.engine, got.device) == ("tensorflow", "CPU")


CLASSIFICATION_RUNS = ["fedsgd", "E3-full", "E2-b7", "frac0.4-E2-b5", "frac0.5-E3-full"]


@pytest.mark.parametrize("run", CLASSIFICATION_RUNS)
@pytest.mark.parametrize("split", ["equal", "quantity"])
@pytest.mark.parametrize("kind", ["logistic", "softmax"])
def test_float64_classification_runs_equal_the_vectorized_engine_and_the_hand_written_fedavg(
        party_sets, engines, kind, split, run):
    parties = party_sets[kind, split]
    want = _run(parties, run, "vectorized", "samples", kind)

    got = _run(parties, run, engines[kind, split, "float64"], "samples", kind)

    by_hand = hand_fedavg(kind, [p.data for p in parties], lr=LR[kind], rounds=12, **RUNS[run])
    assert got.thetas.shape == (13, 5 * K[kind]) and got.diverged_at is None
    assert np.abs(got.thetas[-1] - got.thetas[0]).max() > 0.1
    np.testing.assert_allclose(got.thetas, by_hand, rtol=0, atol=1e-10)
    np.testing.assert_allclose(got.thetas, want.thetas, rtol=0, atol=1e-10)
    np.testing.assert_allclose(got.party_losses, want.party_losses, rtol=0, atol=1e-10)
    for a, b in zip(got.selected, want.selected, strict=True):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("run", ["fedsgd", "E3-full", "E2-b7", "frac0.4-E2-b5"])
@pytest.mark.parametrize("split", ["equal", "quantity"])
def test_float64_linear_runs_equal_the_hand_written_fedavg(party_sets, engines, split, run):
    parties = party_sets["linear", split]

    got = _run(parties, run, engines["linear", split, "float64"], "uniform")

    by_hand = hand_fedavg("linear", [p.data for p in parties], lr=LR["linear"], rounds=12,
                          weighting="uniform", **RUNS[run])
    np.testing.assert_allclose(got.thetas, by_hand, rtol=0, atol=1e-10)


@pytest.mark.parametrize("kind", list(MODELS))
@pytest.mark.parametrize("run", ["fedsgd", "E3-full", "E2-b7", "frac0.4-E2-b5"])
@pytest.mark.parametrize("split", ["equal", "quantity"])
def test_float32_runs_agree_within_the_stated_tolerance(party_sets, engines, split, run, kind):
    parties = party_sets[kind, split]
    want = _run(parties, run, "vectorized", "samples", kind)

    got = _run(parties, run, engines[kind, split, "float32"], "samples", kind)

    scale = np.abs(want.thetas).max()
    assert np.abs(got.thetas - want.thetas).max() <= FLOAT32_RTOL * scale
    np.testing.assert_allclose(got.losses, want.losses, rtol=FLOAT32_RTOL)
    assert got.thetas.dtype == np.float64


def test_float32_is_not_float64(party_sets, engines):
    """The float32 engine really computes in float32: it differs from numpy by more than rounding in float64."""
    want = _run(party_sets["linear", "equal"], "E3-full", "vectorized", "samples")

    got = _run(party_sets["linear", "equal"], "E3-full", engines["linear", "equal", "float32"], "samples")

    assert np.abs(got.thetas - want.thetas).max() > 1e-10


@pytest.mark.parametrize("selected", [np.arange(9), np.array([1, 4, 6]), np.array([8])])
@pytest.mark.parametrize("epochs, batch_size, seed", [(1, None, None), (3, None, None), (2, 4, 5),
                                                      (2, 4, None), (1, 100, 5)])
def test_local_work_equals_party_local_update(party_sets, engines, selected, epochs, batch_size, seed):
    """Each row is what the party computes alone, keyed by (seed, round, its index)."""
    parties, eng = party_sets["linear", "quantity"], engines["linear", "quantity", "float64"]
    theta = np.array([0.3, 0.0, -0.2, 0.1, 0.5])

    work = eng.local_work(theta, selected, lr=0.05, epochs=epochs, batch_size=batch_size, seed=seed, round=4)

    want = [parties[i].local_update(theta, lr=0.05, epochs=epochs, batch_size=batch_size, seed=seed,
                                    round=4, index=int(i)) for i in selected]
    assert isinstance(work.updates, np.ndarray) and work.updates.dtype == np.float64
    assert work.updates.shape == (len(selected), 5)
    np.testing.assert_allclose(work.updates, [u.update for u in want], rtol=0, atol=1e-10)
    np.testing.assert_array_equal(work.weights, [u.weight for u in want])


@pytest.mark.parametrize("dtype, rtol", [("float64", 1e-12), ("float32", FLOAT32_RTOL)])
@pytest.mark.parametrize("kind, l2", [("linear", 0.0), ("logistic", 0.0), ("softmax", 0.0), ("linear", 0.3),
                                      ("softmax", 0.2)])
@pytest.mark.parametrize("selected", [np.arange(9), np.array([0, 2, 7])])
def test_local_work_losses_are_the_party_losses_at_theta(tf, party_sets, kind, l2, dtype, rtol, selected):
    """The losses a full-batch local work returns are the parties' losses at the broadcast theta."""
    base = party_sets[kind, "quantity"]
    model = MODELS[kind] if l2 == 0.0 else MODELS[kind](l2=l2)
    parties = [fl.Party(*p.data, model=model) for p in base]
    eng = TensorFlowEngine(parties, dtype=dtype, device="cpu")
    theta = np.linspace(-0.4, 0.5, 5 * K[kind])

    work = eng.local_work(theta, selected, lr=0.1, epochs=2, batch_size=None, seed=1, round=1)

    W = theta.reshape(5, K[kind])[1:]
    by_hand = [hand_loss(kind, theta, *parties[i].data, K[kind]) + 0.5 * l2 * np.sum(W * W) for i in selected]
    assert work.losses.dtype == np.float64 and work.losses.shape == (len(selected),)
    np.testing.assert_allclose(work.losses, by_hand, rtol=rtol)
    np.testing.assert_allclose(work.losses, eng.party_losses(theta)[selected], rtol=rtol)
    assert eng.local_work(theta, selected, lr=0.1, epochs=2, batch_size=4, seed=1).losses is None


@pytest.mark.parametrize("kind", list(MODELS))
def test_party_losses(party_sets, engines, kind):
    theta = np.linspace(0.3, -0.2, 5 * K[kind])

    losses = engines[kind, "quantity", "float64"].party_losses(theta)

    assert losses.dtype == np.float64 and losses.shape == (9,)
    np.testing.assert_allclose(losses, [hand_loss(kind, theta, *p.data, K[kind]) for p in party_sets[kind, "quantity"]],
                               rtol=1e-12)


def test_minibatch_schedule_by_hand():
    """Parties of 3 and 2 rows (stacked rows 10-12 and 20-21), batches of 2, no shuffling:
    step 0 = party 0's rows 10, 11 and party 1's rows 20, 21; step 1 = party 0's row 12."""
    order, seg, bounds = minibatch_schedule(np.array([10, 20]), np.array([3, 2]), batch_size=2, epochs=2,
                                            keys=None)

    np.testing.assert_array_equal(order, [10, 11, 20, 21, 12] * 2)
    np.testing.assert_array_equal(seg, [0, 0, 1, 1, 0])
    np.testing.assert_array_equal(bounds, [0, 4, 5])


def test_minibatch_schedule_shuffles_by_the_keys_party_after_party_epoch_after_epoch():
    """Parties of 3 rows (stacked rows 0-2) and 4 rows (3-6), 2 epochs, batches of 2; keys laid out
    party 0 epoch 0, party 0 epoch 1, party 1 epoch 0, party 1 epoch 1; ties keep the row order."""
    keys = np.array([0.5, 0.1, 0.9,   0.2, 0.2, 0.1,                 # party 0: rows [1, 0, 2], then [2, 0, 1]
                     0.3, 0.2, 0.8, 0.1,   0.9, 0.0, 0.5, 0.4])      # party 1: rows [6, 4, 3, 5], then [4, 6, 5, 3]

    order, seg, bounds = minibatch_schedule(np.array([0, 3]), np.array([3, 4]), batch_size=2, epochs=2, keys=keys)

    np.testing.assert_array_equal(order, [1, 0, 6, 4, 2, 3, 5,
                                          2, 0, 4, 6, 1, 5, 3])
    np.testing.assert_array_equal(seg, [0, 0, 1, 1, 0, 1, 1])
    np.testing.assert_array_equal(bounds, [0, 4, 7])


# --- compiled once ----------------------------------------------------------------------------

@pytest.mark.parametrize("kind", list(MODELS))
def test_no_retracing_across_sizes_rates_epochs_batches_samples_and_engines(tf, kind):
    """New N, lr, E, batch size, sample of parties or engine reuse the one traced graph of each function."""
    X, y, _ = fl.make_regression(400, 3, noise=0.5, seed=0)
    for n_parties, scheme in [(4, "iid"), (10, "quantity"), (25, "iid")]:
        parties = with_model(kind, fl.split(X, labels(kind, y), n_parties, scheme=scheme, seed=0))
        eng = TensorFlowEngine(parties, dtype="float64", device="cpu")
        for lr, epochs, batch_size, fraction in [(0.1, 1, None, 1.0), (0.01, 3, None, 0.5),
                                                 (0.05, 2, 4, 1.0), (0.2, 1, 9, 0.3)]:
            fl.fedavg(parties, lr=lr, rounds=2, local_epochs=epochs, batch_size=batch_size, fraction=fraction,
                      seed=1, engine=eng)

    model = MODELS[kind]
    functions = compiled_functions("float64", "/CPU:0", model.link, float(model.scale), float(model.l2))
    counts = {name: getattr(functions, name).experimental_get_tracing_count()
              for name in ("full_batch", "minibatch", "party_losses")}
    assert counts == {"full_batch": 1, "minibatch": 1, "party_losses": 1}
    assert eng.functions is functions


def test_compiled_functions_are_shared_by_model_options_not_by_model_objects(party_sets):
    data = [p.data for p in party_sets["softmax", "equal"]]

    def engine(model, dtype="float64"):
        return TensorFlowEngine([fl.Party(X, y, model=model) for X, y in data], dtype=dtype, device="cpu")

    plain, three = engine(models.softmax), engine(models.softmax(n_classes=3))
    assert plain.functions is three.functions                     # n_classes is not compiled in
    others = [engine(models.softmax(l2=0.1)), engine(models.softmax(l2=0.2)), engine(models.softmax, "float32"),
              engine(models.linear)]
    assert len({id(e.functions) for e in [plain, *others]}) == 5
    assert engine(models.softmax(l2=0.1)).functions is others[0].functions


# --- device, dtype, bytes and bad input --------------------------------------------------------

def test_cpu_forced(party_sets):
    parties = party_sets["linear", "equal"]
    eng = TensorFlowEngine(parties, device="cpu")

    h = fl.fedsgd(parties, lr=0.1, rounds=2, engine=eng)

    assert eng.device == "CPU" and h.device == "CPU" and h.engine == "tensorflow"
    assert eng._X.device.endswith("CPU:0")
    assert eng.dtype == np.dtype("float32")


def test_default_device_is_the_gpu_when_there_is_one(tf, party_sets):
    eng = make_engine("tensorflow", party_sets["linear", "equal"])

    if tf.config.list_physical_devices("GPU"):
        assert eng.device.startswith("GPU:0 (")
    else:
        assert eng.device == "CPU"


def test_make_engine_passes_the_options(party_sets):
    eng = make_engine("tensorflow", party_sets["linear", "equal"], dtype="float64", device="cpu")

    assert isinstance(eng, TensorFlowEngine) and (eng.dtype, eng.device) == (np.dtype("float64"), "CPU")
    assert eng._X.dtype.name == "float64"


@pytest.mark.parametrize("kind", list(MODELS))
def test_float32_sends_half_the_bytes_of_float64(party_sets, engines, kind):
    """Measured bytes: each selected party sends p numbers and its weight, receives the p numbers of theta."""
    parties = party_sets[kind, "equal"]
    k, p = 5, 5 * K[kind]                                     # round(0.4 x 12) = 5 parties; (d + 1) K numbers
    h = {dtype: fl.fedavg(parties, lr=0.1, rounds=3, fraction=0.4, seed=0, engine=engines[kind, "equal", dtype])
         for dtype in ("float32", "float64")}

    for dtype, itemsize in [("float32", 4), ("float64", 8)]:
        np.testing.assert_array_equal(h[dtype].bytes_up, [k * (p + 1) * itemsize] * 3)
        np.testing.assert_array_equal(h[dtype].bytes_down, [k * p * itemsize] * 3)
    np.testing.assert_array_equal(2 * h["float32"].bytes_up, h["float64"].bytes_up)
    np.testing.assert_array_equal(2 * h["float32"].bytes_down, h["float64"].bytes_down)


def test_an_engine_built_for_other_parties_is_refused(party_sets, engines):
    parties = party_sets["linear", "equal"]
    eng = engines["linear", "equal", "float64"]
    X, y, _ = fl.make_regression(600, 4, noise=0.5, seed=1)
    twins = fl.split(X, y, 12, seed=2)                         # the same data, other Party objects

    for others in (party_sets["linear", "quantity"], twins, parties[::-1], parties[:-1]):
        with pytest.raises(ValueError, match="engine was built for other parties"):
            fl.fedavg(others, lr=0.1, rounds=1, engine=eng)
    with pytest.raises(ValueError, match="engine was built for other parties"):
        make_engine(eng, twins)
    assert fl.fedavg(list(parties), lr=0.1, rounds=1, engine=eng).rounds == 1      # the same objects: fine


def test_gpu_asked_without_a_gpu(tf, party_sets):
    if tf.config.list_physical_devices("GPU"):
        pytest.skip("this machine has a GPU")
    with pytest.raises(ValueError, match=r"device='gpu' asked for a GPU, but TensorFlow sees none"):
        TensorFlowEngine(party_sets["linear", "equal"], device="gpu")


@pytest.mark.parametrize("kwargs, message", [
    (dict(dtype="float16"), r"dtype must be one of 'float32', 'float64'; got 'float16'"),
    (dict(dtype=np.float32), r"dtype must be one of 'float32', 'float64'; got"),
    (dict(device="tpu"), r"device must be one of None, 'cpu', 'gpu'; got 'tpu'"),
    (dict(device="GPU:0"), r"device must be one of None, 'cpu', 'gpu'; got 'GPU:0'"),
])
def test_bad_options(party_sets, kwargs, message):
    with pytest.raises(ValueError, match=message):
        TensorFlowEngine(party_sets["linear", "equal"], **kwargs)


def test_bad_parties():
    with pytest.raises(TypeError, match="parties must be a list of Party objects"):
        TensorFlowEngine(np.zeros((3, 2)))


# --- a Keras model ------------------------------------------------------------------------------

def _dense(d):
    keras = import_keras()
    return lambda: keras.Sequential([keras.Input((d,), dtype="float64"), keras.layers.Dense(1, dtype="float64")])


def test_a_keras_model_runs_through_the_tensorflow_engine():
    """A float64 Dense(1) with MSE is linear regression with theta = [w_1..w_d, b] (kernel, then bias):
    the TensorFlow engine equals the loop engine, and both equal linear regression's FedAvg by hand."""
    X, y, _ = fl.make_regression(90, 3, noise=0.3, seed=4)
    model = models.keras(_dense(3), loss="mse")
    rows = np.array_split(np.arange(90), [10, 40])              # sizes 10, 30, 50
    parties = [fl.Party(X[r], y[r], model=model) for r in rows]
    theta0 = np.array([0.2, -0.1, 0.3, 0.5])                    # w1, w2, w3, b
    kw = dict(lr=0.05, rounds=4, local_epochs=2, batch_size=8, fraction=2 / 3, seed=7, theta0=theta0)

    got = fl.fedavg(parties, engine="tensorflow", **kw)
    loop = fl.fedavg(parties, engine="loop", **kw)

    assert got.engine == "tensorflow" and got.thetas.shape == (5, 4)
    np.testing.assert_allclose(got.thetas, loop.thetas, rtol=0, atol=1e-12)
    np.testing.assert_allclose(got.losses, loop.losses, rtol=0, atol=1e-12)
    to_glm = [3, 0, 1, 2]                                       # [b, w1, w2, w3]
    by_hand = hand_fedavg("linear", [(X[r], y[r]) for r in rows], **dict(kw, theta0=theta0[to_glm]))
    np.testing.assert_allclose(got.thetas[:, to_glm], by_hand, rtol=0, atol=1e-12)
    np.testing.assert_array_equal(got.bytes_down, [2 * 4 * 8] * 4)          # 2 of 3 parties, float64


# --- divergence ---------------------------------------------------------------------------------

@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_divergence_is_recorded_not_raised(party_sets, engines, dtype):
    parties = party_sets["linear", "quantity"]

    h = fl.fedavg(parties, lr=5.0, rounds=400, local_epochs=2, engine=engines["linear", "quantity", dtype])

    assert h.diverged and "learning rate too large" in h.message
    assert np.all(np.isfinite(h.thetas)) and h.thetas.dtype == np.float64
    if dtype == "float64":
        assert h.diverged_at == fl.fedavg(parties, lr=5.0, rounds=400, local_epochs=2,
                                          engine="vectorized").diverged_at


# --- imports ------------------------------------------------------------------------------------

def _python(code: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    return subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=120)


def test_tensorfloat32_is_off_so_float32_means_float32(tf):
    """On A100/H100 TensorFlow would multiply float32 matrices in TF32 (10-bit significands) by default."""
    assert tf.config.experimental.tensor_float_32_execution_enabled() is False


def test_import_fl_helpers_does_not_import_tensorflow():
    out = _python("import sys, fl_helpers, fl_helpers.engines, fl_helpers.engines.tf_engine, fl_helpers.keras_fl\n"
                  "print('tensorflow' in sys.modules, 'keras' in sys.modules)")

    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "False False"


def test_tensorflow_imports_and_runs_without_a_line_on_stderr():
    out = _python(
        "import fl_helpers as fl\n"
        "from fl_helpers.engines.tf_engine import TensorFlowEngine\n"
        "X, y, _ = fl.make_regression(60, 2, noise=0.1, seed=0)\n"
        "parties = fl.split(X, y, 3, seed=0)\n"
        "h = fl.fedavg(parties, lr=0.1, rounds=2, local_epochs=2, batch_size=5, seed=0,\n"
        "              engine=TensorFlowEngine(parties))\n"
        "from fl_helpers.tf_env import import_keras\n"
        "keras = import_keras()\n"
        "keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])(X)\n"
        "print(h.rounds)\n")

    assert out.returncode == 0, out.stderr
    assert out.stdout == "2\n"
    assert out.stderr == ""
