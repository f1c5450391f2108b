"""One round of a Keras MLP's local work: batched per-party weights vs one party at a time vs a centralized epoch.

Model: the "2NN" MLP 64-200-200-10 (ReLU, softmax output, sparse categorical
cross-entropy), float32 unless ``--dtype float64``, on random data shaped like
the 8x8 digits: M = 1,500 rows of 64 features in [0, 1), 10 classes, split
IID into N = 10 or 100 equal parties (150 or 15 rows each).

Rounds (all N parties take part):

    FedSGD           one full-batch gradient per party          (local_epochs=1, batch_size=None)
    FedAvg E=1 B=10  one local epoch of minibatches of 10 rows  (local_epochs=1, batch_size=10, seed=0)

Timed: ``engine.local_work(theta, all parties, ...)``, the block of a round
an engine computes (the server's weighted mean of N vectors is the same for
every path and small), with

    batched   TensorFlowEngine (Sequential of Dense: all parties in one compiled call)
    loop      LoopEngine on the same KerasModel, inside tf.device: what TensorFlowEngine
              does for other Keras models (one compiled gradient call per party and step)

against one centralized epoch on all M rows with the same Keras model, compiled
(a ``tf.function`` over ``model.trainable_variables``, SGD by ``assign_sub``):

    central full batch   one full-batch gradient step on the M rows
    central B=10 epoch   M / 10 minibatch steps in one compiled call (tf.while_loop)

Every path runs once to warm up (tracing), then ``--repeats`` times, the
paths in turn; each ratio is printed as min / median / max over the repeats
of (path time / yardstick time in the same repeat). Prints Markdown.

Usage:
    python benchmarks/bench_keras.py [--repeats 5] [--parties 10 100] [--device cpu|gpu] [--dtype float32]
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import fl_helpers as fl  # noqa: E402
from fl_helpers import models  # noqa: E402
from fl_helpers.engines.loop import LoopEngine  # noqa: E402
from fl_helpers.engines.tf_engine import TensorFlowEngine  # noqa: E402
from fl_helpers.tf_env import import_keras, import_tensorflow  # noqa: E402

M, D, CLASSES, HIDDEN, LR, B = 1500, 64, 10, 200, 0.1, 10


def mlp(dtype):
    def build():
        keras = import_keras()
        init = keras.initializers.GlorotUniform(seed=0)
        return keras.Sequential([keras.Input((D,), dtype=dtype),
                                 keras.layers.Dense(HIDDEN, activation="relu", kernel_initializer=init, dtype=dtype),
                                 keras.layers.Dense(HIDDEN, activation="relu", kernel_initializer=init, dtype=dtype),
                                 keras.layers.Dense(CLASSES, activation="softmax", kernel_initializer=init,
                                                    dtype=dtype)])
    build.__name__ = "mlp_64_200_200_10"
    return build


def centralized(dtype, X, y):
    """Compiled full-batch step and minibatch epoch on all rows, same architecture and loss."""
    tf, keras = import_tensorflow(), import_keras()
    net = mlp(dtype)()
    loss = keras.losses.get("sparse_categorical_crossentropy")
    variables = net.trainable_variables
    X, y = tf.constant(X.astype(dtype)), tf.constant(y.astype(dtype))

    def sgd_step(Xb, yb):
        with tf.GradientTape() as tape:
            value = tf.reduce_mean(loss(yb, net(Xb, training=True)))
        for v, g in zip(variables, tape.gradient(value, variables), strict=True):
            v.assign_sub(LR * g)
        return value

    @tf.function
    def full_batch():
        return sgd_step(X, y)

    @tf.function
    def epoch():
        total = tf.constant(0.0, X.dtype)
        for s in tf.range(0, M, B):
            total += sgd_step(X[s:s + B], y[s:s + B])
        return total

    return {"central full batch": lambda: full_batch().numpy(), "central B=10 epoch": lambda: epoch().numpy()}


def timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def stats(values) -> str:
    v = np.asarray(values)
    return f"{v.min():.3g} / {np.median(v):.3g} / {v.max():.3g}"


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--parties", type=int, nargs="+", default=[10, 100])
    ap.add_argument("--device", choices=["cpu", "gpu"], default=None)
    ap.add_argument("--dtype", choices=["float32", "float64"], default="float32")
    args = ap.parse_args(argv)
    tf = import_tensorflow()
    rng = np.random.default_rng(0)
    X, y = rng.random((M, D)), rng.integers(0, CLASSES, M).astype(float)
    yardsticks = centralized(args.dtype, X, y)
    rounds = {"FedSGD": dict(epochs=1, batch_size=None), "FedAvg E=1 B=10": dict(epochs=1, batch_size=B)}
    print(f"# Keras MLP 64-200-200-10 ({args.dtype}), M = {M} rows, one round's local work\n")
    print(f"TensorFlow {tf.__version__}, Python {platform.python_version()}, {os.cpu_count()} CPUs, "
          f"{args.repeats} repeats (after a warm-up), times in seconds, ratios min / median / max\n")
    rows = []
    for n in args.parties:
        model = models.keras(mlp(args.dtype), loss="sparse_categorical_crossentropy")
        parties = [fl.Party(Xi, yi, model=model) for Xi, yi in zip(np.array_split(X, n), np.array_split(y, n),
                                                                   strict=True)]
        start = time.perf_counter()
        batched = TensorFlowEngine(parties, device=args.device)
        build = time.perf_counter() - start
        loop = LoopEngine(parties)
        device = batched._device
        theta = model.init().astype(model.dtype)
        everyone = np.arange(n)
        print(f"N = {n}: {batched.device}; engine built (data on the device, traced) in {build:.2f} s", file=sys.stderr)
        for name, kw in rounds.items():
            def run_batched(kw=kw, eng=batched, theta=theta, everyone=everyone):
                return eng.local_work(theta, everyone, lr=LR, seed=0, round=1, **kw)

            def run_loop(kw=kw, eng=loop, theta=theta, everyone=everyone, device=device):
                with tf.device(device):
                    return eng.local_work(theta, everyone, lr=LR, seed=0, round=1, **kw)

            a, b = run_batched(), run_loop()                                   # warm-up, and the same numbers
            diff = np.abs(a.updates - b.updates).max() / np.abs(b.updates).max()
            central = yardsticks["central full batch" if kw["batch_size"] is None else "central B=10 epoch"]
            central()
            times = {"batched": [], "loop": [], "central": []}
            for _ in range(args.repeats):
                times["batched"].append(timed(run_batched))
                times["loop"].append(timed(run_loop))
                times["central"].append(timed(central))
            t = {k: np.array(v) for k, v in times.items()}
            rows.append((n, name, np.median(t["batched"]), np.median(t["loop"]), np.median(t["central"]),
                         stats(t["batched"] / t["central"]), stats(t["loop"] / t["central"]),
                         stats(t["loop"] / t["batched"]), diff))
            print(f"  {name}: done", file=sys.stderr)
    print("| N | round | batched s | loop s | central epoch s | batched / central | loop / central "
          "| loop / batched | max rel. diff |")
    print("|---:|---|---:|---:|---:|---|---|---|---:|")
    for n, name, tb, tl, tc, r1, r2, r3, diff in rows:
        print(f"| {n} | {name} | {tb:.4f} | {tl:.4f} | {tc:.4f} | {r1} | {r2} | {r3} | {diff:.1e} |")
    print("\ncentral epoch: FedSGD rows compare with one compiled full-batch step on the M rows, "
          "FedAvg rows with one compiled epoch of M / 10 minibatch steps.")


if __name__ == "__main__":
    main()
