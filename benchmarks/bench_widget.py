"""How long a widget redraw takes in the kernel: simulate, draw, PNG render.

A slider move in the explorer (notebook 03) or the dashboard (notebook 05)
runs three steps: ``simulate(settings)``, ``draw(result, axes)`` (updates the
artists in place) and ``render_png(figure)`` (Agg + PNG encode), then sends
the bytes to the browser. ``simulate`` is timed two ways:

cold
    Nothing cached: the explorer's ``simulate(settings, cache=None)`` builds
    the parties and the engine afresh, the dashboard's ``simulate`` runs after
    ``explorer.CACHE.clear()``, and the centralized-GD reference
    (``explorer._centralized``, an lru_cache) is cleared before every run.
    The first move to new data settings (N, skew, IID, engine) costs this.
warm (cached engine)
    The parties and engine come from ``explorer.CACHE`` (built by an earlier
    call with the same data settings); the centralized reference is still
    recomputed. A learning-rate or rounds slider move costs this (moves of
    E, C or the weighting also reuse the reference and cost a little less).

Each repeat runs one cold and one warm redraw (simulate + draw + PNG), timing
each step inside it; "redraw" is the whole, "redraw cold (CPU)" the process
CPU time of the cold redraw, which other programs on the machine disturb
less; draw and png are medians over the cold and warm redraws. Medians of
``--repeat`` repeats after a warm-up, in ms;
the browser adds the round trip on top (``tests/test_browser.py`` measures
the key-press-to-picture latency).

Run:  .venv/bin/python benchmarks/bench_widget.py [--repeat 5]
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time

import matplotlib

from fl_helpers.widgets import dashboard, explorer
from fl_helpers.widgets.explorer import Settings

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

#: The explorer's cache of centralized-GD references (private; None if it is gone or renamed).
REFERENCE_CACHE = getattr(getattr(explorer, "_centralized", None), "cache_clear", None)


def forget_reference() -> None:
    if REFERENCE_CACHE is not None:
        REFERENCE_CACHE()


def simulate_cold(widget: str, settings: Settings):
    forget_reference()
    if widget == "dashboard":
        explorer.CACHE.clear()
        return dashboard.simulate(settings)
    return explorer.simulate(settings, cache=None)


def simulate_warm(widget: str, settings: Settings):
    forget_reference()                     # the engine comes from explorer.CACHE, filled by the warm-up
    module = dashboard if widget == "dashboard" else explorer
    return module.simulate(settings)


def bench(widget: str, settings: Settings, repeat: int) -> dict:
    """Medians (ms) of ``repeat`` cold and warm redraws, each step timed inside the redraw."""
    module = dashboard if widget == "dashboard" else explorer
    axes = module.new_axes()
    fig = axes[0].figure
    times: dict[str, list] = {}

    def redraw(kind: str, simulate) -> None:
        t0, c0 = time.perf_counter(), time.process_time()
        result = simulate(widget, settings)
        t1 = time.perf_counter()
        module.draw(result, axes)
        t2 = time.perf_counter()
        png = explorer.render_png(fig)
        t3, c3 = time.perf_counter(), time.process_time()
        for key, value in ((f"simulate {kind}", t1 - t0), (f"draw {kind}", t2 - t1), (f"png {kind}", t3 - t2),
                           (f"redraw {kind}", t3 - t0), (f"cpu {kind}", c3 - c0), ("bytes", len(png))):
            times.setdefault(key, []).append(value)

    redraw("cold", simulate_cold)           # warm-up: imports, the first draw; fills explorer.CACHE
    redraw("warm", simulate_warm)
    times.clear()
    for _ in range(repeat):
        redraw("cold", simulate_cold)
        redraw("warm", simulate_warm)
    row = {key: 1e3 * statistics.median(values) for key, values in times.items() if key != "bytes"}
    row["kB"] = times["bytes"][-1] / 1e3
    row["draw"] = 1e3 * statistics.median(times["draw cold"] + times["draw warm"])
    row["png"] = 1e3 * statistics.median(times["png cold"] + times["png warm"])
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5, help="cold and warm redraws per median (default 5)")
    args = parser.parse_args()
    started = time.perf_counter()
    print(f"## Widget redraw, median of {args.repeat} repeats (ms, wall clock unless said)\n")
    load = ", load average %.2f %.2f %.2f" % os.getloadavg() if hasattr(os, "getloadavg") else ""
    print(f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores{load}, "
          f"Python {platform.python_version()}, matplotlib {matplotlib.__version__}. "
          "simulate cold: nothing cached (parties, engine and centralized reference built afresh); "
          "warm: parties and engine from explorer.CACHE, centralized reference recomputed "
          "(an η or rounds slider move)."
          + ("" if REFERENCE_CACHE else " (explorer._centralized not found: its cache could not be cleared.)")
          + "\n")
    print("| widget | N | η | rounds | E | C | engine | simulate cold | simulate warm | draw | png "
          "| redraw cold | redraw warm | redraw cold (CPU) | PNG kB |")
    print("|---|---:|---:|---:|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for widget, s in CASES:
        r = bench(widget, s, args.repeat)
        print(f"| {widget} | {s.n_parties} | {s.lr:g} | {s.rounds} | {s.local_epochs} | {s.fraction:g} | "
              f"{s.engine} | {r['simulate cold']:.1f} | {r['simulate warm']:.1f} | {r['draw']:.1f} | "
              f"{r['png']:.1f} | {r['redraw cold']:.1f} | {r['redraw warm']:.1f} | {r['cpu cold']:.1f} | "
              f"{r['kB']:.0f} |", flush=True)
    print(f"\n({time.perf_counter() - started:.0f} s)")


if __name__ == "__main__":
    main()
