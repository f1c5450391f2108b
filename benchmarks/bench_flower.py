"""What Flower costs per round on its simulation and deployment runtimes vs the in-process engines (issue 13)

``fl_helpers.interop.flower.run`` (Flower's Message API) with ``runtime="simulation"``
(``run_simulation``, Ray actors in one process) and ``runtime="deployment"`` (a ``flower-superlink``
and one ``flower-supernode`` process per party on 127.0.0.1, submitted with ``flwr run``), against
``fl.fedavg`` with the ``loop`` and ``vectorized`` engines, on the same parties and arguments
(linear regression, N parties of 40 rows and 10 features, FedAvg with 2 local epochs of
minibatches of 10, full participation, seed 0).

A Flower run pays a fixed start-up (simulation: Ray and its actors; deployment: the processes, the
app bundle, the first QUERY exchange) and then a cost per round (one TRAIN and one EVALUATE
exchange). Both come from one run per setting: the History's ``metrics["seconds"]`` holds each
round's wall time; per round is their mean, start-up the rest of the run's time. Every Flower run
is checked equal to ``fl.fedavg`` (largest parameter difference printed). The last ratio divides
Flower's per-round cost by the loop engine's.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

import fl_helpers as fl
from fl_helpers.interop import flower


def parties_for(n: int) -> list:
    rng = np.random.default_rng(0)
    w = rng.normal(size=10)
    out = []
    for _ in range(n):
        X = rng.normal(size=(40, 10))
        out.append(fl.Party(X, X @ w + 0.1 * rng.normal(size=40)))
    return out


def timed(fn) -> tuple[float, object]:
    t = time.perf_counter()
    out = fn()
    return time.perf_counter() - t, out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--simulation", type=int, nargs="+", default=[4, 16], metavar="N")
    ap.add_argument("--deployment", type=int, nargs="+", default=[2, 4], metavar="N")
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    kw = dict(lr=0.01, local_epochs=2, batch_size=10, seed=0, rounds=args.rounds)
    print(f"flwr {__import__('flwr').__version__}, {args.rounds} rounds; seconds")
    print("| runtime | N | Flower start-up | Flower per round | loop per round | vectorized per round "
          "| Flower / loop | max diff |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for runtime in ("simulation", "deployment"):
        for n in getattr(args, runtime):
            parties = parties_for(n)
            total, h = timed(lambda: flower.run(parties, runtime=runtime, **kw))
            per = float(np.mean(h.metrics["seconds"]))
            loop_t, ref = timed(lambda: fl.fedavg(parties, **kw))
            vec_t, _ = timed(lambda: fl.fedavg(parties, engine="vectorized", **kw))
            diff = float(np.abs(h.thetas - ref.thetas).max())
            r = args.rounds
            print(f"| {runtime} | {n} | {total - r * per:.1f} | {per:.3f} | {loop_t / r:.5f} | {vec_t / r:.5f} | "
                  f"{per / (loop_t / r):,.0f} | {diff:.1e} |", flush=True)


if __name__ == "__main__":
    main()
