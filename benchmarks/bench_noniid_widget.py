"""Recompute + redraw time of notebook 06's non-IID explorer, as a slider move costs it.

A slider move runs ``noniid.simulate`` (a FedAvg run on the digits, split
cached), ``noniid.draw`` and the PNG the widget shows. Two kinds of moves:
a training knob (the learning rate going back and forth: the split is reused)
and the number of parties (a new split and engine each time). Target: under
300 ms for the default setting (issue 9). Prints median, interquartile range
and extremes in milliseconds, and the machine's load, which these numbers
depend on.

    python benchmarks/bench_noniid_widget.py [--repeat 30]
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np

from fl_helpers.widgets import noniid


def one_move(settings, axes) -> dict:
    t0 = time.perf_counter()
    result = noniid.simulate(settings)
    t1 = time.perf_counter()
    noniid.draw(result, axes)
    t2 = time.perf_counter()
    noniid.render_axes(axes)
    t3 = time.perf_counter()
    return {"simulate": t1 - t0, "draw": t2 - t1, "png": t3 - t2, "total": t3 - t0}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=30)
    args = parser.parse_args()
    base = noniid.Settings()
    axes = noniid.new_axes()
    training_moves = [base, base.replace(lr=0.2)]
    for s in training_moves:                       # warm-up: imports, first draw, the split cache
        noniid.render(noniid.simulate(s), axes)
    kinds = {"training knob (split cached)": lambda i: training_moves[i % 2],
             "N knob (new split)": lambda i: base.replace(n_parties=50 + i % 2)}
    print(f"default: {noniid.describe(base)}; load average {os.getloadavg()[0]:.2f}")
    print("| move | median ms | IQR ms | min-max ms | simulate | draw | PNG |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for name, settings_of in kinds.items():
        if name.startswith("N"):
            noniid.CACHE.clear()
        rows = [one_move(settings_of(i), axes) for i in range(args.repeat)]
        ms = {k: np.array([r[k] for r in rows]) * 1e3 for k in rows[0]}
        q1, q3 = np.percentile(ms["total"], [25, 75])
        print(f"| {name} | {np.median(ms['total']):.0f} | {q1:.0f}-{q3:.0f} | {ms['total'].min():.0f}-"
              f"{ms['total'].max():.0f} | {np.median(ms['simulate']):.0f} | {np.median(ms['draw']):.0f} | "
              f"{np.median(ms['png']):.0f} |")
    print("target: under 300 ms for the default setting")


if __name__ == "__main__":
    main()
