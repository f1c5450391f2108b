"""How long a widget redraw takes in the kernel: simulate, draw, PNG render.

A slider move in the explorer (notebook 02) or the dashboard (notebook 04)
runs exactly these three steps: ``simulate(settings)``, ``draw(result, axes)``
(updates the artists in place) and ``render_png(figure)`` (Agg + PNG encode),
then sends the bytes to the browser. Prints a Markdown table of medians over
``--repeat`` runs (wall clock, ms; "total (CPU)" is the process's CPU time,
which other programs on the machine disturb less); the browser adds the round trip on top
(see ``tests/test_browser.py`` for the key-press-to-picture latency).

Run:  .venv/bin/python benchmarks/bench_widget.py [--repeat 20]
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time

import matplotlib

from fl_helpers import dashboard, explorer
from fl_helpers.explorer import Settings

CASES = [
    ("explorer", Settings(n_parties=10, rounds=100)),
    ("explorer", Settings(n_parties=100, rounds=200)),
    ("explorer", Settings(n_parties=100, rounds=200, local_epochs=5, fraction=0.5, skew=1.0)),
    ("explorer", Settings(n_parties=200, rounds=500, local_epochs=50, lr=0.01)),
    ("explorer", Settings(n_parties=100, rounds=200, engine="loop")),
    ("dashboard", Settings(n_parties=10, rounds=100)),
    ("dashboard", Settings(n_parties=100, rounds=200)),
    ("dashboard", Settings(n_parties=200, rounds=500, local_epochs=50, lr=0.01)),
    ("dashboard", Settings(n_parties=10, rounds=100, lr=1.0)),            # diverges at round 14
]


def median_ms(fn, repeat: int, clock=time.perf_counter) -> float:
    fn()                                                   # warm-up (caches, first draw)
    times = []
    for _ in range(repeat):
        start = clock()
        fn()
        times.append(clock() - start)
    return 1e3 * statistics.median(times)


def bench(widget: str, settings: Settings, repeat: int) -> dict:
    module = dashboard if widget == "dashboard" else explorer
    axes = module.new_axes()
    result = module.simulate(settings)
    module.draw(result, axes)
    fig = axes[0].figure
    row = {
        "simulate": median_ms(lambda: module.simulate(settings), repeat),
        "draw": median_ms(lambda: module.draw(result, axes), repeat),
        "png": median_ms(lambda: explorer.render_png(fig), repeat),
    }
    def redraw():
        explorer.render_png(module.draw(module.simulate(settings), axes)[0].figure)

    row["total"] = median_ms(redraw, repeat)
    row["cpu"] = median_ms(redraw, repeat, clock=time.process_time)   # less sensitive to other load
    row["kB"] = len(explorer.render_png(fig)) / 1e3
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=20, help="runs per median (default 20)")
    args = parser.parse_args()
    print(f"# widget redraw, median of {args.repeat} (ms, wall clock)")
    print(f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
          f"Python {platform.python_version()}, matplotlib {matplotlib.__version__}\n")
    print("| widget | N | η | rounds | E | C | engine | simulate | draw | png | total | total (CPU) | PNG kB |")
    print("|---|---:|---:|---:|---:|---:|---|---:|---:|---:|---:|---:|---:|")
    for widget, s in CASES:
        r = bench(widget, s, args.repeat)
        print(f"| {widget} | {s.n_parties} | {s.lr:g} | {s.rounds} | {s.local_epochs} | {s.fraction:g} | {s.engine} | "
              f"{r['simulate']:.1f} | {r['draw']:.1f} | {r['png']:.1f} | {r['total']:.1f} | {r['cpu']:.1f} | "
              f"{r['kB']:.0f} |")


if __name__ == "__main__":
    main()
