"""How fast is one federated round, compared with one centralized gradient pass?

Linear regression, d = 20 features, m = 100 samples per party (IID), N parties.
For each engine we time one FedSGD round and one FedAvg round (E = 5 local
epochs, full batch, lr = 0.1): the local work, the aggregate and the server
update (not the monitoring loss). The yardstick is one centralized full-batch
gradient pass over the same M = N m rows in the same framework,

    g = 2/M X~^T (X~ theta - y)        (numpy + BLAS, or a tf.function on the same device/dtype)

and FedAvg is compared with E such passes. A ratio near 1 means simulating the
N parties costs no more than training on the pooled data.

Usage:  python benchmarks/bench_engines.py [--sizes 100000 1000000] [--threads 1] [--quick]
Prints the machine and Markdown tables on stdout (timings vary from run to run).
On a shared machine, multi-threaded BLAS stalls whenever another process holds
a core (a 1 ms gemv then takes 8 ms): run it idle, or pin with --threads.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
import tracemalloc
from pathlib import Path

THREAD_VARIABLES = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")
if "--threads" in sys.argv[:-1]:          # BLAS reads these once, when numpy is imported
    for variable in THREAD_VARIABLES:
        os.environ[variable] = sys.argv[sys.argv.index("--threads") + 1]

import numpy as np  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import fl_helpers as fl  # noqa: E402
from fl_helpers.aggregation import aggregate, aggregation_weights  # noqa: E402
from fl_helpers.engines import make_engine  # noqa: E402
from fl_helpers.engines.vectorized import stack_with_bias  # noqa: E402
from fl_helpers.server import broadcast, server_update  # noqa: E402

D, M_PER_PARTY, LR, EPOCHS = 20, 100, 0.1, 5
DEFAULT_SIZES = (10, 100, 1000, 10_000)
MEMORY_AT = 10_000
LOOP_MAX = 10_000          # the loop engine is skipped above this many parties


# --- the machine -----------------------------------------------------------------------------

def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def machine_lines(tf_devices, threads) -> list[str]:
    pinned = f", {threads} thread(s) for BLAS and TensorFlow" if threads else ""
    lines = [f"- CPU: {cpu_model()}, {os.cpu_count()} logical cores{pinned}; numpy {np.__version__}"]
    if tf_devices:
        tf = sys.modules["tensorflow"]
        lines.append(f"- TensorFlow {tf.__version__}: " + ", ".join(tf_devices))
    return lines


# --- timing ----------------------------------------------------------------------------------

def one_round(eng, theta, selected, *, epochs, rng):
    """Blocks 1-4 of a round; returns the new global model."""
    sent = broadcast(theta, selected)
    updates, counts = eng.local_work(sent, selected, lr=LR, epochs=epochs, batch_size=None, rng=rng)
    delta = aggregate(updates, aggregation_weights(counts, "samples"))
    return server_update(theta, delta, lr=LR)


def timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def interleaved(round_fn, pass_fn, repeats: int) -> tuple[float, float, float]:
    """Median seconds of a round, of a centralized pass, and of their ratio.

    Rounds and passes are timed in turn (after a warm-up), so that each ratio
    compares two timings taken under the same load on a shared machine."""
    round_fn()
    pass_fn()
    rounds, passes = [], []
    for _ in range(repeats):
        rounds.append(timed(round_fn))
        passes.append(timed(pass_fn))
    ratios = [r / p for r, p in zip(rounds, passes, strict=True)]
    return statistics.median(rounds), statistics.median(passes), statistics.median(ratios)


def numpy_pass(parties):
    Xt = stack_with_bias([p.data[0] for p in parties])
    y = np.concatenate([p.data[1] for p in parties])
    theta = np.zeros(D + 1)

    def centralized_pass():
        return 2.0 / len(y) * (Xt.T @ (Xt @ theta - y))
    return centralized_pass


def tf_pass(eng):
    """The same pass as a tf.function on the engine's device and dtype."""
    from fl_helpers.engines.tf_engine import concrete
    tf = sys.modules["tensorflow"]
    X, y = eng._X, eng._y
    real = tf.as_dtype(eng.dtype)

    @tf.function(input_signature=[tf.TensorSpec([None, None], real), tf.TensorSpec([None], real),
                                  tf.TensorSpec([None], real)])
    def gradient(X, y, theta):
        r = tf.linalg.matvec(X, theta) - y
        return 2.0 / tf.cast(tf.size(y), real) * tf.linalg.matvec(X, r, transpose_a=True)

    with tf.device(eng._device):
        theta = tf.zeros([D + 1], real)

    def centralized_pass():
        with tf.device(eng._device):
            return concrete(gradient)(X, y, theta).numpy()     # called like the engine's functions
    return centralized_pass


def repeats_for(engine: str, n: int, quick: bool) -> int:
    if engine == "loop":
        r = 7 if n <= 100 else 5 if n <= 1000 else 3
    else:
        r = 15 if n <= 1000 else 7
    return max(3, r // 2) if quick else r


# --- memory ----------------------------------------------------------------------------------

def rss_bytes(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
    raise OSError(field)


def peak_memory(build_and_run, kind: str) -> tuple[float, str]:
    """Peak extra memory (MiB) of building an engine and running a FedSGD and a FedAvg round."""
    if kind == "numpy":
        tracemalloc.start()
        build_and_run()
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        return peak / 2**20, "tracemalloc peak (numpy arrays on the host)"
    tf = sys.modules["tensorflow"]
    if kind == "gpu":
        tf.config.experimental.reset_memory_stats("GPU:0")
        before = tf.config.experimental.get_memory_info("GPU:0")["current"]
        build_and_run()
        return ((tf.config.experimental.get_memory_info("GPU:0")["peak"] - before) / 2**20,
                "tf.config.experimental.get_memory_info('GPU:0') peak, device memory")
    try:  # CPU: reset the process's peak RSS (Linux), then read it back
        Path("/proc/self/clear_refs").write_text("5")
        before = rss_bytes("VmRSS")
        build_and_run()
        return (rss_bytes("VmHWM") - before) / 2**20, "peak RSS increase (/proc VmHWM after a reset)"
    except OSError:
        import resource
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
        build_and_run()
        after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
        return (after - before) / 2**20, "increase of the process's max RSS (resource; a lower bound)"


def tf_call_overhead(repeats: int = 300) -> float:
    """Seconds of one call of a compiled TensorFlow function that does (almost) nothing."""
    from fl_helpers.tf_env import import_tensorflow
    tf = import_tensorflow()

    @tf.function(input_signature=[tf.TensorSpec([], tf.float32)])
    def add_one(x):
        return x + 1.0

    x = tf.constant(0.0)
    add_one(x).numpy()
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        add_one(x).numpy()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


# --- main ------------------------------------------------------------------------------------

def engine_specs(args):
    specs = [("loop", {}), ("vectorized", {})]
    if not args.no_tf:
        for dtype in args.tf_dtypes:
            specs.append((f"tensorflow {dtype}", {"dtype": dtype, "device": args.device}))
    return specs


def build(spec, parties):
    """The engine of ``spec`` for ``parties`` (TensorFlow ones with their dtype and device)."""
    name, opts = spec
    if name.startswith("tensorflow"):
        from fl_helpers.engines.tf_engine import TensorFlowEngine
        return TensorFlowEngine(parties, **opts)
    return make_engine(name, parties)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", type=int, nargs="*", default=[],
                    help="extra numbers of parties on top of 10 100 1000 10000 (e.g. 100000 1000000 on a GPU)")
    ap.add_argument("--only", type=int, nargs="*", default=None, help="run only these numbers of parties")
    ap.add_argument("--tf-dtypes", nargs="*", default=["float32", "float64"], choices=["float32", "float64"])
    ap.add_argument("--device", choices=["cpu", "gpu"], default=None, help="TensorFlow device (default: GPU if any)")
    ap.add_argument("--no-tf", action="store_true", help="numpy engines only")
    ap.add_argument("--quick", action="store_true", help="fewer repeats")
    ap.add_argument("--threads", type=int, default=None,
                    help="threads for BLAS and TensorFlow ops (default: the libraries' own choice)")
    args = ap.parse_args(argv)
    sizes = sorted(set(args.only if args.only is not None else [*DEFAULT_SIZES, *args.sizes]))
    specs = engine_specs(args)

    tf_devices = []
    if not args.no_tf:
        from fl_helpers.tf_env import import_tensorflow
        from fl_helpers.engines.tf_engine import available_device
        if args.threads:
            tf = import_tensorflow()
            tf.config.threading.set_intra_op_parallelism_threads(args.threads)
            tf.config.threading.set_inter_op_parallelism_threads(args.threads)
        tf_devices = [available_device(args.device)[1]]
    print("## Engine benchmark\n")
    print("\n".join(machine_lines(tf_devices, args.threads)))
    print(f"- Linear regression, d = {D}, m = {M_PER_PARTY} per party (IID), lr = {LR}; "
          f"FedAvg: E = {EPOCHS} full-batch local epochs.")
    print("- Seconds per round (median; local work + aggregate + server update), and the ratio to "
          "one centralized full-batch gradient pass over the same data in the same framework "
          f"(FedAvg: to {EPOCHS} passes; median of ratios of rounds and passes timed in turn).")
    if tf_devices:
        print(f"- TensorFlow's fixed cost of one compiled call (an empty function, result back on the host): "
              f"{tf_call_overhead() * 1e3:.3f} ms; it dominates rounds and passes that take well under a "
              "millisecond (small N).")
    print()

    rows, memory = [], []
    header = ("| N | engine | FedSGD s/round | FedSGD / 1 pass | FedAvg E=5 s/round | FedAvg / 5 passes "
              "| 1 pass (s) |")
    for n in sizes:
        X, y, _ = fl.make_regression(n * M_PER_PARTY, D, noise=0.5, seed=0)
        parties = fl.split(X, y, n, seed=0)
        del X, y
        np_pass = numpy_pass(parties)
        selected = np.arange(n)
        theta = np.zeros(D + 1)
        for spec in specs:
            name = spec[0]
            if name == "loop" and n > LOOP_MAX:
                continue
            eng = build(spec, parties)
            pass_fn = tf_pass(eng) if name.startswith("tensorflow") else np_pass
            reps = repeats_for(name, n, args.quick)
            rng = np.random.default_rng(0)
            sgd, pass_s, ratio_s = interleaved(lambda: one_round(eng, theta, selected, epochs=1, rng=rng),
                                               pass_fn, reps)
            avg, pass_a, ratio_a = interleaved(lambda: one_round(eng, theta, selected, epochs=EPOCHS, rng=rng),
                                               pass_fn, reps)
            rows.append(f"| {n:,} | {name} | {sgd:.3g} | {ratio_s:.2f} | {avg:.3g} | "
                        f"{ratio_a / EPOCHS:.2f} | {statistics.median([pass_s, pass_a]):.2g} |")
            print(rows[-1], file=sys.stderr, flush=True)          # progress
            del eng
        if n == MEMORY_AT:
            for spec in specs:
                kind = "numpy" if not spec[0].startswith("tensorflow") else (
                    "gpu" if tf_devices and tf_devices[0].startswith("GPU") else "cpu")

                def build_and_run(spec=spec):
                    eng = build(spec, parties)
                    one_round(eng, theta, selected, epochs=1, rng=None)
                    one_round(eng, theta, selected, epochs=EPOCHS, rng=None)
                mib, how = peak_memory(build_and_run, kind)
                memory.append(f"| {spec[0]} | {mib:,.0f} | {how} |")
        del parties

    print(header)
    print("|---:|---|---:|---:|---:|---:|---:|")
    print("\n".join(rows))
    if memory:
        data_mib = MEMORY_AT * M_PER_PARTY * (D + 1) * 8 / 2**20
        print(f"\nPeak memory at N = {MEMORY_AT:,} (the stacked data X~ alone: {data_mib:,.0f} MiB in float64, "
              f"half in float32), building the engine and running one FedSGD and one FedAvg round:\n")
        print("| engine | peak MiB | measured as |")
        print("|---|---:|---|")
        print("\n".join(memory))


if __name__ == "__main__":
    main()
