"""The TensorFlow engine on a chosen device against the vectorized numpy engine.

A parity check for ``benchmarks/gpu_check.sh``: ``tests/test_tf_engine.py``
builds its engines with ``device="cpu"``, so on a GPU machine it does not
run the engine on the GPU; this script does. For the three GLMs, equal and
unequal parties, it runs FedSGD (20 rounds) and FedAvg (E = 3, batch 8,
C = 0.5, seed 1; 10 rounds) with ``TensorFlowEngine(parties, dtype, device)``
and with ``engine="vectorized"`` (float64 numpy, an independent
implementation), and prints the largest differences of every round's model
(relative to max |theta|) and loss (relative), against the documented
agreement: 1e-10 for float64, ``FLOAT32_RTOL`` for float32.

Usage:  python benchmarks/gpu_parity.py [--device gpu|cpu] [--dtypes float32 float64]
Exit status 1 if a difference is above its limit (the table says which).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import fl_helpers as fl  # noqa: E402
from fl_helpers import models  # noqa: E402

LIMITS = {"float64": 1e-10}


def data(kind: str, seed: int = 0, M: int = 2_000, d: int = 5):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((M, d))
    if kind == "linear":
        return X, X @ rng.uniform(-2, 2, d) + 1.0 + 0.5 * rng.standard_normal(M), models.linear
    if kind == "logistic":
        z = X @ rng.uniform(-2, 2, d) + 0.3 + rng.logistic(size=M)
        return X, (z > 0).astype(float), models.logistic
    Z = X @ rng.uniform(-2, 2, (d, 3)) + rng.gumbel(size=(M, 3))
    return X, np.argmax(Z, axis=1), models.softmax(n_classes=3)


def parties_for(kind: str, split: str):
    X, y, model = data(kind)
    scheme = dict(scheme="iid") if split == "equal" else dict(scheme="quantity", skew=1.0)
    return [fl.Party(*p.data, model=model) for p in fl.split(X, y, 20, seed=0, **scheme)]


RUNS = {
    "FedSGD R=20": lambda parties, engine: fl.fedsgd(parties, lr=0.1, rounds=20, engine=engine),
    "FedAvg E=3 b=8 C=0.5 R=10": lambda parties, engine: fl.fedavg(
        parties, lr=0.05, rounds=10, local_epochs=3, batch_size=8, fraction=0.5, seed=1, engine=engine),
}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--device", choices=["cpu", "gpu"], default="gpu")
    ap.add_argument("--dtypes", nargs="+", choices=["float32", "float64"], default=["float32", "float64"])
    args = ap.parse_args(argv)
    from fl_helpers.engines.tf_engine import FLOAT32_RTOL, TensorFlowEngine, available_device
    from fl_helpers.tf_env import import_tensorflow
    tf = import_tensorflow()
    limits = dict(LIMITS, float32=FLOAT32_RTOL)
    tf32 = getattr(tf.config.experimental, "tensor_float_32_execution_enabled", lambda: None)()
    print(f"## TensorFlow engine on {available_device(args.device)[1]} vs the vectorized numpy engine\n")
    print(f"TensorFlow {tf.__version__}; TensorFloat-32 execution enabled: {tf32} "
          "(on Ampere and later GPUs it rounds float32 matmul inputs to 10 mantissa bits).\n")
    print("| model | parties | run | dtype | max rel. Δθ | max rel. Δloss | limit | ok |")
    print("|---|---|---|---|---:|---:|---:|---|")
    failed = 0
    for kind in ("linear", "logistic", "softmax"):
        for split in ("equal", "unequal"):
            parties = parties_for(kind, split)
            for run_name, run in RUNS.items():
                ref = run(parties, "vectorized")
                for dtype in args.dtypes:
                    got = run(parties, TensorFlowEngine(parties, dtype=dtype, device=args.device))
                    dtheta = float(np.max(np.abs(got.thetas - ref.thetas)) / np.max(np.abs(ref.thetas)))
                    dloss = float(np.max(np.abs(got.losses - ref.losses) / np.abs(ref.losses)))
                    ok = got.thetas.shape == ref.thetas.shape and max(dtheta, dloss) <= limits[dtype]
                    failed += not ok
                    print(f"| {kind} | {split} | {run_name} | {dtype} | {dtheta:.2g} | {dloss:.2g} | "
                          f"{limits[dtype]:g} | {'yes' if ok else 'NO'} |", flush=True)
    print(f"\n{failed} above the limit." if failed else "\nAll within the limits.")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
