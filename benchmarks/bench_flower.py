"""What does Flower's simulation runtime cost per round, against the course's in-process engines? (issue 13)

``fl_helpers.interop.flower.run`` (Flower's Message API; simulation runtime: ``run_simulation``,
one Ray actor per node) against ``fl.fedavg`` with the ``loop`` and ``vectorized`` engines,
on the same parties and arguments (linear regression, N parties of 40 rows and 10 features,
FedAvg with 2 local epochs of minibatches of 10, full participation, seed 0).

A Flower run pays a fixed start-up (Ray, the actors, the ServerApp's thread) and then a cost per
round (messages through the simulated SuperLink, serialisation of the arrays). Both are
measured in one script run: each setting runs R1 and R2 rounds; the per-round cost is
(t(R2) - t(R1)) / (R2 - R1), the start-up t(R1) - R1 x (per round). Every Flower run is checked
equal to ``fl.fedavg`` (largest parameter difference printed). The ratio column divides Flower's
per-round cost by the loop engine's.
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
    ap.add_argument("--parties", type=int, nargs="+", default=[4, 16])
    ap.add_argument("--rounds", type=int, nargs=2, default=[2, 12], metavar=("R1", "R2"))
    args = ap.parse_args()
    r1, r2 = args.rounds
    kw = dict(lr=0.01, local_epochs=2, batch_size=10, seed=0)
    print(f"flwr {__import__('flwr').__version__}, rounds {r1} and {r2}; seconds")
    print("| N | Flower start-up | Flower per round | loop per round | vectorized per round | Flower / loop "
          "| max diff |")
    print("|---:|---:|---:|---:|---:|---:|---:|")
    for n in args.parties:
        parties = parties_for(n)
        t1, _ = timed(lambda: flower.run(parties, rounds=r1, **kw))
        t2, h = timed(lambda: flower.run(parties, rounds=r2, **kw))
        per = (t2 - t1) / (r2 - r1)
        loop_t, ref = timed(lambda: fl.fedavg(parties, rounds=r2, **kw))
        vec_t, _ = timed(lambda: fl.fedavg(parties, rounds=r2, engine="vectorized", **kw))
        diff = float(np.abs(h.thetas - ref.thetas).max())
        print(f"| {n} | {t1 - r1 * per:.2f} | {per:.3f} | {loop_t / r2:.5f} | {vec_t / r2:.5f} | "
              f"{per / (loop_t / r2):,.0f} | {diff:.1e} |")


if __name__ == "__main__":
    main()
