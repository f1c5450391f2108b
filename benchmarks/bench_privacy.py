"""Privacy at full size (issue 10): how often DLG recovers a batch, and what DP-FedAvg's epsilon costs on digits.

Notebook 08 shows one batch per size and three seeds per setting; this script
repeats both over many draws and prints the tables of the README and the
issue's closing note.

Part 1, the attack. ``privacy.dlg`` (its defaults: 2,000 Adam steps, labels
counted from the last bias gradient) against notebook 08's MLP (64 -> 32
sigmoid -> 10 softmax, float64, at its initial weights) on ``--batches``
random batches of training digits per size. A batch counts as *recovered* when
its mean pixel error (``privacy.reconstruction_error``, best pairing) is below
a tenth of the error of guessing the mean training image for every sample, and
as *not recovered* when it is above that guess itself. The defences of the
notebook are applied to batches of 4: top-k pruning, party-side Gaussian noise
with multiplier z on the clipped gradient (S = its norm), and the mean gradient
of 10 parties attacked as one party of 4.

Part 2, utility against epsilon. ``privacy.dp_fedavg`` on the digits' training
split over N IID parties, softmax regression, q = 0.1, S = 2, eta = 1, one
local epoch, 100 rounds, engine "vectorized"; test accuracy on the test split
after the last round, mean, standard deviation and range over ``--seeds`` seeds
(each seed draws the split, the sampling and the noise). epsilon is the RDP
accountant's at delta = 1e-5 (the same for every N).

    python benchmarks/bench_privacy.py [--batches 10] [--seeds 10]
"""

from __future__ import annotations

import argparse
import platform
import sys
import time

import numpy as np

import fl_helpers as fl
from fl_helpers import models, privacy


def mlp_model():
    from fl_helpers.tf_env import import_keras

    keras = import_keras()

    def build():
        keras.utils.set_random_seed(0)
        return keras.Sequential([keras.Input((64,)), keras.layers.Dense(32, activation="sigmoid", dtype="float64"),
                                 keras.layers.Dense(10, activation="softmax", dtype="float64")])

    return models.keras(build, loss="sparse_categorical_crossentropy")


def attack_table(n_batches: int) -> None:
    X, y, _ = fl.load_dataset("digits", subset="train")
    mlp = mlp_model()
    theta = mlp.init()
    mean_image = X.mean(axis=0)

    def outcome(gradient, size, originals):
        found = privacy.dlg(gradient, theta, model=mlp, batch_size=size, seed=0)
        err = privacy.reconstruction_error(originals, found.x).mean()
        guess = privacy.reconstruction_error(originals, np.tile(mean_image, (len(originals), 1))).mean()
        return err, guess

    def batch(size, draw):
        idx = np.random.default_rng(10_000 * size + draw).choice(len(X), size, replace=False)
        return X[idx], y[idx]

    rows = []
    for size in (1, 2, 4, 8, 16, 32, 64):
        rows.append((f"batch of {size}", [outcome(mlp.gradient(theta, *batch(size, k)), size, batch(size, k)[0])
                                          for k in range(n_batches)]))

    def defended(transform):
        out = []
        for k in range(n_batches):
            Xb, yb = batch(4, k)
            out.append(outcome(transform(mlp.gradient(theta, Xb, yb), k), 4, Xb))
        return out

    for keep in (0.5, 0.2, 0.1):
        rows.append((f"batch of 4, top {keep:.0%} kept", defended(
            lambda g, k, keep=keep: np.where(np.abs(g) >= np.quantile(np.abs(g), 1 - keep), g, 0.0))))
    for z in (0.01, 0.1, 1.0):
        rows.append((f"batch of 4, party noise z = {z:g}", defended(
            lambda g, k, z=z: g + np.random.default_rng(k).normal(0.0, z * np.linalg.norm(g), size=len(g)))))

    def ten_parties(g, k):
        others = [batch(4, 1_000 + 10 * k + i) for i in range(9)]
        return np.mean([g] + [mlp.gradient(theta, Xo, yo) for Xo, yo in others], axis=0)

    rows.append(("batch of 4 in a sum of 10 parties", defended(ten_parties)))

    print(f"\nDLG on the MLP, {n_batches} batches per row (recovered: error < guess/10; not: error > guess)\n")
    print("| setting | mean error (median) | mean-image guess | recovered | not recovered |")
    print("|---|---:|---:|---:|---:|")
    for name, results in rows:
        err, guess = np.array(results).T
        print(f"| {name} | {np.median(err):.2g} | {np.median(guess):.3f} | {np.sum(err < guess / 10)}/{len(err)} | "
              f"{np.sum(err > guess)}/{len(err)} |")


def utility_table(n_seeds: int) -> None:
    X, y, _ = fl.load_dataset("digits", subset="train")
    Xt, yt, _ = fl.load_dataset("digits", subset="test")
    softmax = models.softmax(n_classes=10)
    ns, zs = (100, 300, 1000, 1352), (0.0, 0.5, 1.0, 2.0, 4.0, 8.0, 16.0)
    worlds = {(n, s): fl.split(X, y, n, scheme="iid", seed=s, model=softmax) for n in ns for s in range(n_seeds)}
    print(f"\nDP-FedAvg on digits: q = 0.1, S = 2, 100 rounds; test accuracy mean ± std [min, max] over "
          f"{n_seeds} seeds\n")
    print("| z | ε (δ = 1e-5) | " + " | ".join(f"N = {n:,}" for n in ns) + " |")
    print("|---:|---:|" + "---:|" * len(ns))
    for z in zs:
        cells, eps = [], np.inf
        for n in ns:
            acc = []
            for s in range(n_seeds):
                h = privacy.dp_fedavg(worlds[n, s], lr=1.0, rounds=100, clip_norm=2.0, noise_multiplier=z,
                                      sample_rate=0.1, seed=s, engine="vectorized", eval_data=(Xt, yt))
                acc.append(h.metrics["test_accuracy"][-1])
                eps = h.metrics["epsilon"][-1] if z > 0 else np.inf
            acc = np.array(acc)
            cells.append(f"{acc.mean():.3f} ± {acc.std():.3f} [{acc.min():.3f}, {acc.max():.3f}]")
        print(f"| {z:g} | {eps:.2f} | " + " | ".join(cells) + " |")


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--batches", type=int, default=10, help="batches per attack row")
    parser.add_argument("--seeds", type=int, default=10, help="seeds per DP-FedAvg setting")
    args = parser.parse_args(argv)
    print(f"python {sys.version.split()[0]}, numpy {np.__version__}, {platform.machine()}")
    start = time.perf_counter()
    attack_table(args.batches)
    utility_table(args.seeds)
    print(f"\n{time.perf_counter() - start:.0f} s in all")


if __name__ == "__main__":
    main()
