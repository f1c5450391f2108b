"""What does a robust aggregation rule cost, compared with the plain weighted mean?

``fl_helpers.robust`` at n = 100 and n = 1,000 updates of d = 10,000 coordinates
(``--sizes``, ``--dim``): the updates are i.i.d. standard normal, the weights
sample shares m_i / M with m_i uniform in [50, 500) (one generator, ``--seed``;
the values only matter to the geometric median's number of steps). Every timing
is a whole call as ``fl.train`` makes it, the rule's input checks included
(``robust`` checks that every update is finite, one pass over the n x d array):

    fl.weighted_sum(U, w)                          the default aggregator (the yardstick: ratio 1)
    w @ U                                          the bare weighted sum (one BLAS matrix-vector product)
    robust.median(U, w)                            np.median over axis 0
    robust.trimmed_mean(U, w, beta=0.1)            np.partition over axis 0, mean of the middle 80 %
    robust.krum(U, w, f, to_keep=0)                Krum, f = n // 10 (2f + 2 < n is checked)
    robust.krum(U, w, f, to_keep=n - f)            Multi-Krum, the n - f best kept
    robust.geometric_median(U, w)                  Weiszfeld from the coordinate-wise median (tol 1e-7);
                                                   its number of steps is printed
    robust.norm_bound(U, w, max_norm)              max_norm = the median update norm (half the rows scaled)

Krum's distances at these sizes (n^2 d > 2^21) are one Gram product of the updates
centred on their coordinate-wise median: O(n^2 d) flops for the product, O(n d)
for the centring and the checks, O(n^2 log n) for sorting the distance rows.
The Krum scaling table divides the n = 1,000 time by the n = 100 time, for Krum
and for its parts timed alone in the same passes (``robust.squared_distances``;
``C @ C.T`` on the centred C; ``np.median(U, axis=0)``), against 100x for an
O(n^2 d) cost and 10x for an O(n d) one.

Timing. Each callable is called once (warm-up), then once more to choose how many
calls make one sample (at least ``--min-sample`` seconds; 1 for every rule but the
fast ones at n = 100). Then ``--repeats`` passes (5), each timing one sample of every
callable of that n, the order rotated by one from pass to pass; a row prints the
median seconds per call over the passes (min-max), and its ratio to the mean is
the median over the passes of (rule / ``fl.weighted_sum``) within the pass, so both
sides of a ratio ran under the same load. Wall clock (``time.perf_counter``),
the garbage collector off during a sample.

Usage:
    python benchmarks/bench_robust.py [--threads 1] [--repeats 5] [--quick]
``--threads N`` (default 1; 0: leave BLAS at its default) pins BLAS
(OPENBLAS/OMP/MKL_NUM_THREADS, set before numpy is imported); the header prints the
thread count read back from the library. ``--quick``: n = 20 and 100, d = 1,000,
3 passes (a smoke test). Prints Markdown on stdout; progress goes to stderr.
"""

from __future__ import annotations

import argparse
import sys

from pinning import pin_from_argv

DEFAULT_THREADS = 1

#: The --threads value whose variables were set before numpy was imported (when run as a script).
PINNED_BEFORE_NUMPY = pin_from_argv(default=DEFAULT_THREADS) if __name__ == "__main__" else None  # before numpy

import gc  # noqa: E402
import math  # noqa: E402
import os  # noqa: E402
import platform  # noqa: E402
import statistics  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench_engines import blas_line, cpu_model  # noqa: E402  (the same machine header)

import fl_helpers as fl  # noqa: E402
from fl_helpers import robust  # noqa: E402

SIZES = (100, 1_000)
DIM = 10_000
BETA = 0.1
MEAN = "fl.weighted_sum"


# --- the machine -------------------------------------------------------------------------------

def load_average() -> str:
    if not hasattr(os, "getloadavg"):
        return "no load average"
    return "load average {:.2f} {:.2f} {:.2f}".format(*os.getloadavg())


def machine_lines(threads: int | None, pinned_before_numpy: int | None, extra: str = "") -> list[str]:
    """The header: CPU, load, versions, and BLAS's thread count read back from the library (bench_engines')."""
    blas = blas_line(threads, pinned_before_numpy)
    return [f"- CPU: {cpu_model()}, {os.cpu_count()} logical cores, {load_average()} (at the start); "
            f"Python {platform.python_version()}, numpy {np.__version__}{extra}; one process", blas]


# --- timing -------------------------------------------------------------------------------------

def clock_sample(fn, number: int) -> float:
    """Seconds per call of ``number`` calls of ``fn``, the garbage collector off."""
    gc.collect()
    gc.disable()
    try:
        t = time.perf_counter()
        for _ in range(number):
            fn()
        return (time.perf_counter() - t) / number
    finally:
        gc.enable()


def calls_per_sample(fn, min_sample: float) -> int:
    """Warm up ``fn`` once, then the number of calls that last at least ``min_sample`` seconds."""
    fn()
    return max(1, math.ceil(min_sample / max(clock_sample(fn, 1), 1e-9)))


def time_passes(callables: dict, repeats: int, min_sample: float, label: str = "") -> dict:
    """``{name: [seconds per call, one per pass]}``: ``repeats`` passes over all callables, order rotated."""
    names = list(callables)
    number = {}
    for name in names:
        number[name] = calls_per_sample(callables[name], min_sample)
    out = {name: [] for name in names}
    for r in range(repeats):
        order = names[r % len(names):] + names[:r % len(names)]
        for name in order:
            out[name].append(clock_sample(callables[name], number[name]))
        print(f"{label}pass {r + 1}/{repeats} done", file=sys.stderr, flush=True)
    return out


def ratios(times: dict, name: str, base: str) -> list:
    return [a / b for a, b in zip(times[name], times[base], strict=True)]


def spread(values) -> str:
    """median (min-max), three significant digits."""
    return f"{statistics.median(values):.3g} ({min(values):.3g}-{max(values):.3g})"


# --- the rules ----------------------------------------------------------------------------------

def problem(n: int, d: int, seed: int):
    rng = np.random.default_rng([seed, n, d])
    updates = rng.standard_normal((n, d))
    counts = rng.integers(50, 500, n)
    return updates, counts / counts.sum()


def callables_for(U: np.ndarray, w: np.ndarray) -> tuple[dict, dict]:
    """The timed calls for one n, and what the table says about them (settings, checks)."""
    n = U.shape[0]
    f = n // 10
    if not 2 * f + 2 < n:
        raise SystemExit(f"f = n // 10 = {f} does not satisfy Krum's requirement 2f + 2 < n = {n}")
    max_norm = float(np.median(np.linalg.norm(U, axis=1)))
    centred = U - np.median(U, axis=0)
    geo = robust.GeometricMedian()
    geo(U, w)                                                 # the number of steps, from the adapter
    info = {
        "f": f, "krum_check": f"2f + 2 = {2 * f + 2} < n = {n}", "geo_steps": geo.iterations,
        "geo_converged": geo.converged, "clipped": float(np.mean(np.linalg.norm(U, axis=1) > max_norm)),
        "max_norm": max_norm,
    }
    rules = {
        MEAN: lambda: fl.weighted_sum(U, w),
        "w @ U": lambda: w @ U,
        "median": lambda: robust.median(U, w),
        f"trimmed_mean(beta={BETA})": lambda: robust.trimmed_mean(U, w, BETA),
        f"krum(f={f}, to_keep=0)": lambda: robust.krum(U, w, f, to_keep=0),
        f"Multi-Krum (f={f}, to_keep={n - f})": lambda: robust.krum(U, w, f, to_keep=n - f),
        "geometric_median": lambda: robust.geometric_median(U, w),
        "norm_bound(max_norm = median norm)": lambda: robust.norm_bound(U, w, max_norm),
    }
    parts = {                                                 # Krum's parts, for the scaling table
        "squared_distances(U)": lambda: robust.squared_distances(U),
        "C @ C.T (the Gram product)": lambda: centred @ centred.T,
        "np.median(U, axis=0) (the centring)": lambda: np.median(U, axis=0),
    }
    return {**rules, **parts}, info


# --- main ---------------------------------------------------------------------------------------

def parse(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", type=int, default=DEFAULT_THREADS,
                    help="BLAS threads (default 1; 0: the library's default)")
    ap.add_argument("--repeats", type=int, default=5, help="timed passes per n (default 5)")
    ap.add_argument("--sizes", type=int, nargs="+", default=list(SIZES), help="numbers of updates n (100 1000)")
    ap.add_argument("--dim", type=int, default=DIM, help="coordinates d (10000)")
    ap.add_argument("--min-sample", type=float, default=0.02, help="seconds one sample lasts at least (0.02)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--quick", action="store_true", help="n = 20, 100; d = 1,000; 3 passes (a smoke test)")
    args = ap.parse_args(argv)
    if args.quick:
        args.sizes, args.dim, args.repeats = [20, 100], 1_000, 3
    args.sizes = sorted(args.sizes)
    if args.threads is not None and args.threads <= 0:
        args.threads = None
    return args


def main(argv=None) -> None:
    args = parse(argv)
    started = time.perf_counter()
    print("## Robust aggregation benchmark\n")
    print("\n".join(machine_lines(args.threads, PINNED_BEFORE_NUMPY)))
    print(f"- d = {args.dim:,}, n in {', '.join(f'{n:,}' for n in args.sizes)}; updates i.i.d. N(0, 1), weights "
          f"sample shares, seed {args.seed}; {args.repeats} passes per n, order rotated; seconds per call: median "
          f"(min-max) over the passes; ratios: median (min-max) over the passes of rule / `{MEAN}` in the same pass.")
    print(flush=True)

    results = {}
    for n in args.sizes:
        U, w = problem(n, args.dim, args.seed)
        calls, info = callables_for(U, w)
        print(f"n = {n:,}: warming up and calibrating", file=sys.stderr, flush=True)
        times = time_passes(calls, args.repeats, args.min_sample, label=f"n = {n:,}: ")
        results[n] = (times, info)
        del calls, U, w
        gc.collect()

    for n in args.sizes:
        times, info = results[n]
        print(f"### n = {n:,} updates, d = {args.dim:,}\n")
        print(f"| rule | seconds per call | x `{MEAN}` | x `w @ U` | notes |")
        print("|---|---:|---:|---:|---|")
        for name in list(times)[:8]:
            note = ""
            if name.startswith("krum") or name.startswith("Multi-Krum"):
                note = info["krum_check"]
            elif name == "geometric_median":
                note = (f"{info['geo_steps']} Weiszfeld steps"
                        + ("" if info["geo_converged"] else " (max_iter reached, not converged)"))
            elif name.startswith("norm_bound"):
                note = f"max_norm = {info['max_norm']:.4g}: {info['clipped']:.0%} of the updates scaled"
            elif name == MEAN:
                note = "the yardstick (checks + `w @ U`)"
            elif name.startswith("trimmed"):
                note = f"{int(BETA * n)} cut from each side"
            print(f"| `{name}` | {spread(times[name])} | {spread(ratios(times, name, MEAN))} "
                  f"| {spread(ratios(times, name, 'w @ U'))} | {note} |")
        print()

    if len(args.sizes) >= 2:
        lo, hi = args.sizes[0], args.sizes[-1]
        factor = hi / lo
        print(f"### Krum's scaling, n = {lo:,} -> {hi:,} (d = {args.dim:,})\n")
        print(f"Time at n = {hi:,} / time at n = {lo:,}, medians over the passes. Expected: {factor ** 2:,.0f}x "
              f"for an O(n^2 d) cost, {factor:,.0f}x for an O(n d) one.\n")
        print(f"| call | seconds at n = {lo:,} | seconds at n = {hi:,} | ratio | expected |")
        print("|---|---:|---:|---:|---:|")
        lo_times, hi_times = results[lo][0], results[hi][0]
        rows = [("krum(f=n//10, to_keep=0)", f"krum(f={results[lo][1]['f']}, to_keep=0)",
                 f"krum(f={results[hi][1]['f']}, to_keep=0)", f"{factor ** 2:,.0f}x (O(n^2 d))"),
                ("Multi-Krum (to_keep = n - f)", next(k for k in lo_times if k.startswith("Multi-Krum")),
                 next(k for k in hi_times if k.startswith("Multi-Krum")), f"{factor ** 2:,.0f}x (O(n^2 d))"),
                ("robust.squared_distances(U)", "squared_distances(U)", "squared_distances(U)",
                 f"{factor ** 2:,.0f}x (O(n^2 d))"),
                ("C @ C.T alone", "C @ C.T (the Gram product)", "C @ C.T (the Gram product)",
                 f"{factor ** 2:,.0f}x (O(n^2 d))"),
                ("np.median(U, axis=0) alone", "np.median(U, axis=0) (the centring)",
                 "np.median(U, axis=0) (the centring)", f"{factor:,.0f}x (O(n d))"),
                (f"`{MEAN}` (for comparison)", MEAN, MEAN, f"{factor:,.0f}x (O(n d))")]
        for label, a, b, expected in rows:
            ta, tb = statistics.median(lo_times[a]), statistics.median(hi_times[b])
            print(f"| {label} | {ta:.3g} | {tb:.3g} | {tb / ta:,.1f}x | {expected} |")
        print()
        for n in (lo, hi):
            t = results[n][0]
            krum = statistics.median(t[f"krum(f={results[n][1]['f']}, to_keep=0)"])
            gram = statistics.median(t["C @ C.T (the Gram product)"])
            med = statistics.median(t["np.median(U, axis=0) (the centring)"])
            print(f"- n = {n:,}: of Krum's {krum:.3g} s, the Gram product alone takes {gram / krum:.0%} and the "
                  f"centring median {med / krum:.0%}.")
        print()

    print(f"({time.perf_counter() - started:.0f} s; {load_average()} at the end)")


if __name__ == "__main__":
    main()
