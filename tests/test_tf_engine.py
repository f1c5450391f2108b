"""fl_helpers.engines.tf_engine: the TensorFlow engine computes what the numpy engines compute."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import fl_helpers as fl
from fl_helpers.engines import make_engine

if importlib.util.find_spec("tensorflow") is None:
    pytest.skip("TensorFlow is not installed (pip install -e '.[cpu]')", allow_module_level=True)

from fl_helpers.tf_env import import_tensorflow  # noqa: E402
from fl_helpers.engines.tf_engine import (  # noqa: E402
    FLOAT32_RTOL, TensorFlowEngine, compiled_functions, minibatch_schedule)

ROOT = Path(__file__).resolve().parent.parent
HAS_GPU = bool(import_tensorflow().config.list_physical_devices("GPU"))


@pytest.fixture(scope="module")
def party_sets():
    """Equal sizes (12 x 50: the batched path), unequal (quantity: segment sums), nearly equal (47/46)."""
    X, y, _ = fl.make_regression(600, 4, noise=0.5, seed=1)
    return {
        "equal": fl.split(X, y, 12, seed=2),
        "quantity": fl.split(X, y, 9, scheme="quantity", skew=1.5, seed=2),
        "iid-47-46": fl.split(X, y, 13, seed=2),
    }


@pytest.fixture(scope="module")
def engines(party_sets):
    """One engine per party set and dtype, built once (the data move to the device once)."""
    return {(name, dtype): TensorFlowEngine(parties, dtype=dtype, device="cpu")
            for name, parties in party_sets.items() for dtype in ("float64", "float32")}


RUNS = {
    "fedsgd": dict(),
    "E3-full": dict(local_epochs=3),
    "E2-b7": dict(local_epochs=2, batch_size=7),
    "E1-b1": dict(local_epochs=1, batch_size=1),
    "E2-b100": dict(local_epochs=2, batch_size=100),          # larger than every party
    "frac0.4-E2-b5": dict(local_epochs=2, batch_size=5, fraction=0.4),
    "frac0.5-E3-full": dict(local_epochs=3, fraction=0.5),
}


def _run(parties, run, engine, weighting):
    kw = dict(RUNS[run], weighting=weighting, engine=engine)
    if run == "fedsgd":
        return fl.fedsgd(parties, lr=0.05, rounds=12, **kw)
    return fl.fedavg(parties, lr=0.05, rounds=12, seed=3, **kw)


# --- parity with the numpy engines ----------------------------------------------------------

@pytest.mark.parametrize("weighting", ["samples", "uniform"])
@pytest.mark.parametrize("run", list(RUNS))
@pytest.mark.parametrize("split", ["equal", "quantity", "iid-47-46"])
def test_float64_runs_equal_the_vectorized_engine(party_sets, engines, split, run, weighting):
    want = _run(party_sets[split], run, "vectorized", weighting)

    got = _run(party_sets[split], run, engines[split, "float64"], weighting)

    assert got.diverged_at is None and not np.allclose(want.thetas[-1], want.thetas[0])
    assert got.thetas.dtype == got.party_losses.dtype == np.float64
    np.testing.assert_allclose(got.thetas, want.thetas, rtol=0, atol=1e-10)
    np.testing.assert_allclose(got.party_losses, want.party_losses, rtol=0, atol=1e-10)
    for a, b in zip(got.selected, want.selected, strict=True):
        np.testing.assert_array_equal(a, b)
    assert (got.engine, got.device) == ("tensorflow", "CPU")


@pytest.mark.parametrize("run", ["fedsgd", "E3-full", "E2-b7", "frac0.4-E2-b5"])
@pytest.mark.parametrize("split", ["equal", "quantity"])
def test_float32_runs_agree_within_the_stated_tolerance(party_sets, engines, split, run):
    want = _run(party_sets[split], run, "vectorized", "samples")

    got = _run(party_sets[split], run, engines[split, "float32"], "samples")

    scale = np.abs(want.thetas).max()
    assert np.abs(got.thetas - want.thetas).max() <= FLOAT32_RTOL * scale
    np.testing.assert_allclose(got.losses, want.losses, rtol=FLOAT32_RTOL)
    assert got.thetas.dtype == np.float64


def test_float32_is_not_float64(party_sets, engines):
    """The float32 engine really computes in float32: it differs from numpy by more than rounding in float64."""
    want = _run(party_sets["equal"], "E3-full", "vectorized", "samples")

    got = _run(party_sets["equal"], "E3-full", engines["equal", "float32"], "samples")

    assert np.abs(got.thetas - want.thetas).max() > 1e-10


@pytest.mark.parametrize("selected", [np.arange(9), np.array([1, 4, 6]), np.array([8])])
@pytest.mark.parametrize("epochs, batch_size, seeded", [(1, None, False), (3, None, False), (2, 4, True),
                                                        (2, 4, False), (1, 100, True)])
def test_local_work_equals_party_local_update(party_sets, engines, selected, epochs, batch_size, seeded):
    parties, eng = party_sets["quantity"], engines["quantity", "float64"]
    theta = np.array([0.3, 0.0, -0.2, 0.1, 0.5])

    updates, weights = eng.local_work(theta, selected, lr=0.05, epochs=epochs, batch_size=batch_size,
                                      rng=np.random.default_rng(0) if seeded else None)

    rng = np.random.default_rng(0) if seeded else None        # the parties draw from one generator, in order
    want = [parties[i].local_update(theta, lr=0.05, epochs=epochs, batch_size=batch_size, rng=rng)
            for i in selected]
    assert isinstance(updates, np.ndarray) and updates.dtype == np.float64
    assert updates.shape == (len(selected), 5)
    np.testing.assert_allclose(updates, [u.update for u in want], rtol=0, atol=1e-10)
    np.testing.assert_array_equal(weights, [u.weight for u in want])


def test_party_losses(party_sets, engines):
    theta = np.array([0.2, -0.1, 0.4, 1.0, 0.0])

    losses = engines["quantity", "float64"].party_losses(theta)

    assert losses.dtype == np.float64 and losses.shape == (9,)
    np.testing.assert_allclose(losses, [p.loss(theta) for p in party_sets["quantity"]], rtol=1e-12)


def test_minibatch_schedule_by_hand():
    """Parties of 3 and 2 rows (stacked rows 10-12 and 20-21), batches of 2, no shuffling:
    step 0 = party 0's rows 10, 11 and party 1's rows 20, 21; step 1 = party 0's row 12."""
    order, seg, bounds = minibatch_schedule(np.array([10, 20]), np.array([3, 2]), batch_size=2, epochs=2, rng=None)

    np.testing.assert_array_equal(order, [10, 11, 20, 21, 12] * 2)
    np.testing.assert_array_equal(seg, [0, 0, 1, 1, 0])
    np.testing.assert_array_equal(bounds, [0, 4, 5])


def test_minibatch_schedule_shuffles_like_the_loop_engine():
    rng, ref = np.random.default_rng(4), np.random.default_rng(4)
    order, seg, bounds = minibatch_schedule(np.array([0, 3]), np.array([3, 4]), batch_size=2, epochs=1, rng=rng)

    first = np.argsort(ref.random(3), kind="stable")           # party 0's permutation, then party 1's
    second = 3 + np.argsort(ref.random(4), kind="stable")
    np.testing.assert_array_equal(order, [*first[:2], *second[:2], first[2], *second[2:]])
    np.testing.assert_array_equal(seg, [0, 0, 1, 1, 0, 1, 1])
    np.testing.assert_array_equal(bounds, [0, 4, 7])


# --- compiled once ----------------------------------------------------------------------------

def test_no_retracing_across_sizes_rates_epochs_batches_and_samples():
    """A new N, lr, E, batch size or sample of parties reuses the one traced graph of each function."""
    X, y, _ = fl.make_regression(400, 3, noise=0.5, seed=0)
    for n_parties, scheme in [(4, "iid"), (10, "quantity"), (25, "iid")]:
        parties = fl.split(X, y, n_parties, scheme=scheme, seed=0)
        eng = TensorFlowEngine(parties, dtype="float64", device="cpu")
        for lr, epochs, batch_size, fraction in [(0.1, 1, None, 1.0), (0.01, 3, None, 0.5),
                                                 (0.05, 2, 4, 1.0), (0.2, 1, 9, 0.3)]:
            fl.fedavg(parties, lr=lr, rounds=2, local_epochs=epochs, batch_size=batch_size, fraction=fraction,
                      seed=1, engine=eng)

    functions = compiled_functions("float64", "/CPU:0")
    counts = {name: getattr(functions, name).experimental_get_tracing_count()
              for name in ("full_batch", "minibatch", "party_losses")}
    assert counts == {"full_batch": 1, "minibatch": 1, "party_losses": 1}
    assert eng.functions is functions


# --- device, dtype and bad input --------------------------------------------------------------

def test_cpu_forced(party_sets):
    eng = TensorFlowEngine(party_sets["equal"], device="cpu")

    h = fl.fedsgd(party_sets["equal"], lr=0.1, rounds=2, engine=eng)

    assert eng.device == "CPU" and h.device == "CPU" and h.engine == "tensorflow"
    assert eng._X.device.endswith("CPU:0")
    assert (eng.dtype, eng.itemsize) == ("float32", 4)


def test_default_device_is_the_gpu_when_there_is_one(party_sets):
    eng = make_engine("tensorflow", party_sets["equal"])

    assert eng.device.startswith("GPU:0 (") if HAS_GPU else eng.device == "CPU"


def test_make_engine_passes_the_options(party_sets):
    eng = make_engine("tensorflow", party_sets["equal"], dtype="float64", device="cpu")

    assert isinstance(eng, TensorFlowEngine) and (eng.dtype, eng.itemsize, eng.device) == ("float64", 8, "CPU")
    assert eng._X.dtype.name == "float64"


def test_itemsize_counts_the_bytes_sent(party_sets, engines):
    h32 = fl.fedsgd(party_sets["equal"], lr=0.1, rounds=1, engine=engines["equal", "float32"])
    h64 = fl.fedsgd(party_sets["equal"], lr=0.1, rounds=1, engine=engines["equal", "float64"])

    assert h64.bytes_down[0] == 12 * 5 * 8 and h32.bytes_down[0] == 12 * 5 * 4


@pytest.mark.skipif(HAS_GPU, reason="this machine has a GPU")
def test_gpu_asked_without_a_gpu(party_sets):
    with pytest.raises(ValueError, match=r"device='gpu' asked for a GPU, but TensorFlow sees none"):
        TensorFlowEngine(party_sets["equal"], device="gpu")


@pytest.mark.parametrize("kwargs, message", [
    (dict(dtype="float16"), r"dtype must be one of 'float32', 'float64'; got 'float16'"),
    (dict(dtype=np.float32), r"dtype must be one of 'float32', 'float64'; got"),
    (dict(device="tpu"), r"device must be one of None, 'cpu', 'gpu'; got 'tpu'"),
    (dict(device="GPU:0"), r"device must be one of None, 'cpu', 'gpu'; got 'GPU:0'"),
])
def test_bad_options(party_sets, kwargs, message):
    with pytest.raises(ValueError, match=message):
        TensorFlowEngine(party_sets["equal"], **kwargs)


def test_bad_parties():
    with pytest.raises(TypeError, match="parties must be a list of Party objects"):
        TensorFlowEngine(np.zeros((3, 2)))


# --- divergence ---------------------------------------------------------------------------------

@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_divergence_is_recorded_not_raised(party_sets, engines, dtype):
    parties = party_sets["quantity"]

    h = fl.fedavg(parties, lr=5.0, rounds=400, local_epochs=2, engine=engines["quantity", dtype])

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


def test_import_fl_helpers_does_not_import_tensorflow():
    out = _python("import sys, fl_helpers, fl_helpers.engines, fl_helpers.keras_fl\n"
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
    assert out.stderr == ""
    assert out.stdout == "2\n"
