"""What does simulating N parties cost, compared with training on the pooled data?

Linear regression, d = 20 features, m = 100 samples per party (IID; with
``--max-rows``, as ``--gpu`` sets it to 10^7, m = max(10, min(100, 10^7 / N))),
N parties, lr = 0.1. Every timing is a whole call, as a user makes it, History
(losses and models of every round) included:

    fl.fedsgd(parties, lr=0.1, rounds=R, engine=eng)                   FedSGD
    fl.fedavg(parties, lr=0.1, rounds=R, local_epochs=5, engine=eng)   FedAvg E = 5
    fl.fedavg(parties, lr=0.1, rounds=R, fraction=0.1, seed=0, ...)    sampled rounds (C = 0.1, E = 1)

against centralized full-batch gradient descent on the same M = N m rows that
records its loss too, in the same framework:

    numpy engines (loop, vectorized):  fl.centralized_gd(X, y, lr=0.1, rounds=R)
    tensorflow engine:                 one compiled tf.function (this file, ``tf_centralized_gd``)
                                       on the engine's device and dtype: R + 1 passes in one call,
                                       each pass X~ theta -> residual -> loss and gradient.
                                       Also, for tensorflow rows, a second yardstick: the same
                                       engine code on one party holding all M rows,
                                       fl.fedsgd([Party(X, y)], lr=0.1, rounds=R, engine=eng1).

``eng`` is built once per configuration (its build time is its own column,
like the widget's cached engine); the parties are built once. Both sides of a
ratio have a fixed cost per call (at N = 10,000: ``centralized_gd`` checks and
copies X, about 30 ms; ``fedsgd`` checks the N parties and computes the final
model's loss, about 35 ms), so R is chosen to make a FedSGD call last about
``--target`` seconds (at least 3 rounds).
FedSGD's recording is free (its loss comes out of the round's own pass);
a sampled round also records every party's loss at the new model (one pass
over all the data), which it cannot get from the sampled work.

Ratios:
    FedSGD / centralized       R FedSGD rounds / R centralized steps
    FedSGD / 1-party engine    R FedSGD rounds / R rounds of the one-party engine (tensorflow)
    FedAvg E=5 / 5 steps       R5 = R/5 FedAvg rounds of 5 local epochs / 5 R5 centralized steps
    C=0.1 round / 1 step       R sampled rounds / R centralized steps (full data)
Each configuration is measured ``--repeats`` times (after a warm-up), the
federated call and its yardstick in turn (order alternating), and each ratio
is printed as min / median / max over the repeats, wall clock. The CPU-time
column is the median ratio of process CPU times, which other programs on a
shared machine disturb less.

Memory: peak RSS of a fresh subprocess per row (VmHWM of /proc/self/status;
``resource.getrusage`` where there is no /proc, but on Linux its ru_maxrss
starts at the parent's peak), minus that process's peak once the imports were
done and the data built: what building the engine (or the yardstick's copy)
and running adds. Only on the CPU (skipped with ``--gpu``, where the column "GPU peak"
of the main table reports ``tf.config.experimental.get_memory_info``).

Usage:
    python benchmarks/bench_engines.py [--threads 1] [--quick] [--sizes 100 1000 10000]
                                       [--engines loop vectorized tensorflow] [--tf-dtypes float32 float64]
    python benchmarks/bench_engines.py --gpu            # N = 1e4, 1e5, 1e6 on the GPU, TensorFlow only
``--threads N`` (or ``--threads=N``) pins BLAS (OPENBLAS/OMP/MKL_NUM_THREADS, set
before numpy is imported) and TensorFlow's thread pools; the header prints
the BLAS thread count read back from the library. On a shared machine a
multi-threaded BLAS stalls whenever another process holds a core: pin it.
Prints Markdown on stdout; progress goes to stderr.
"""

from __future__ import annotations

import argparse
import os
import sys

from pinning import THREAD_VARIABLES, pin_from_argv

#: The --threads value whose variables were set before numpy was imported (when run as a script).
PINNED_BEFORE_NUMPY = pin_from_argv() if __name__ == "__main__" else None     # before numpy, below

import ctypes  # noqa: E402
import gc  # noqa: E402
import json  # noqa: E402
import math  # noqa: E402
import platform  # noqa: E402
import statistics  # noqa: E402
import subprocess  # noqa: E402
import time  # noqa: E402
from dataclasses import dataclass  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import fl_helpers as fl  # noqa: E402
from fl_helpers.engines import make_engine  # noqa: E402
from fl_helpers.engines.vectorized import stack_with_bias  # noqa: E402

D, M_PER_PARTY, LR, EPOCHS, FRACTION = 20, 100, 0.1, 5, 0.1
CPU_SIZES = (100, 1_000, 10_000)
GPU_SIZES = (10_000, 100_000, 1_000_000)
LOOP_MAX = 1_000           # the loop engine (one Python call per party) only up to this N
MEMORY_AT = 10_000
#: (engine label, N, target) for the median FedSGD / centralized ratio
TARGETS = (("vectorized", 1_000, 1.2), ("vectorized", 10_000, 1.2), ("tensorflow float32", 10_000, 1.5))


# --- the machine -----------------------------------------------------------------------------

def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def _openblas_library():
    """numpy's OpenBLAS, loaded with ctypes from the process's mapped libraries (Linux), or None."""
    try:
        paths = {line.split()[-1] for line in Path("/proc/self/maps").read_text().splitlines()
                 if "openblas" in line.lower() and line.split()[-1].startswith("/")}
    except OSError:
        return None, None
    for path in sorted(paths):
        lib = ctypes.CDLL(path)
        for prefix, suffix in (("scipy_openblas", "64_"), ("scipy_openblas", ""), ("openblas", "64_"),
                               ("openblas", "")):
            if hasattr(lib, f"{prefix}_get_num_threads{suffix}"):
                return lib, (prefix, suffix)
    return None, None


def blas_threads() -> tuple[int | None, str]:
    """The BLAS thread count numpy will use, read back from the library, and how it was read."""
    try:
        from threadpoolctl import threadpool_info
        for pool in threadpool_info():
            if pool.get("user_api") == "blas":
                return pool["num_threads"], (f"{pool.get('internal_api')} {pool.get('version') or ''}".strip()
                                             + ", read with threadpoolctl")
    except ImportError:
        pass
    lib, (prefix, suffix) = _openblas_library()
    if lib is None:
        return None, "not read back (no threadpoolctl, and numpy's BLAS is not OpenBLAS)"
    get = getattr(lib, f"{prefix}_get_num_threads{suffix}")
    get.restype = ctypes.c_int
    version = ""
    if hasattr(lib, f"{prefix}_get_config{suffix}"):
        config = getattr(lib, f"{prefix}_get_config{suffix}")
        config.restype = ctypes.c_char_p
        version = " ".join(config().decode().split()[:2])
    return get(), f"{version or 'OpenBLAS'}, read with {prefix}_get_num_threads{suffix}() (threadpoolctl not installed)"


def set_blas_threads(threads: int) -> str:
    """Limit BLAS to ``threads`` at run time (numpy already imported); returns how."""
    try:
        from threadpoolctl import threadpool_limits
        threadpool_limits(limits=threads, user_api="blas")
        return "threadpoolctl.threadpool_limits"
    except ImportError:
        pass
    lib, names = _openblas_library()
    if lib is None:
        return "not possible (no threadpoolctl, and numpy's BLAS is not OpenBLAS)"
    name = f"{names[0]}_set_num_threads{names[1]}"
    getattr(lib, name)(ctypes.c_int(threads))
    return f"{name}() (ctypes)"


def blas_line(threads: int | None, pinned_before_numpy: int | None = None) -> str:
    """BLAS's thread count read back from the library, and how it was pinned (``PINNED_BEFORE_NUMPY`` by default)."""
    pinned_before_numpy = PINNED_BEFORE_NUMPY if pinned_before_numpy is None else pinned_before_numpy
    if threads is None:
        pinned = "not pinned (the library's default; pin with --threads 1)"
    elif threads == pinned_before_numpy:
        pinned = (f"pinned with --threads {threads}: {'='.join(THREAD_VARIABLES)}={threads} "
                  "set before numpy was imported")
    else:                                        # main() called from Python: numpy was imported already
        pinned = f"pinned with --threads {threads} at run time by {set_blas_threads(threads)}"
    count, how = blas_threads()
    line = f"- BLAS: {count if count is not None else '?'} thread(s) ({how}); {pinned}"
    if threads is not None and count is not None and count != threads:
        line += f". WARNING: asked for {threads}, the library runs {count}"
    return line


def machine_lines(args, tf_device: str | None) -> list[str]:
    load = ", load average %.2f %.2f %.2f" % os.getloadavg() if hasattr(os, "getloadavg") else ""
    lines = [f"- CPU: {cpu_model()}, {os.cpu_count()} logical cores{load}; Python {platform.python_version()}, "
             f"numpy {np.__version__}",
             blas_line(args.threads)]
    if tf_device:
        tf = sys.modules["tensorflow"]
        pools = (f"intra-op and inter-op thread pools pinned to {args.threads}" if args.threads
                 else "thread pools: TensorFlow's default")
        lines.append(f"- TensorFlow {tf.__version__} on {tf_device}; {pools}")
    return lines


# --- the runs --------------------------------------------------------------------------------

@dataclass
class Setup:
    n: int
    m: int
    X: np.ndarray
    y: np.ndarray
    parties: list


def make_setup(n: int, m: int) -> Setup:
    X, y, _ = fl.make_regression(n * m, D, noise=0.5, seed=0)
    return Setup(n, m, X, y, fl.split(X, y, n, seed=0))


def build(name: str, parties, args):
    """The engine ``name`` ("loop", "vectorized", "tensorflow float32", ...) for ``parties``."""
    if name.startswith("tensorflow"):
        from fl_helpers.engines.tf_engine import TensorFlowEngine
        return TensorFlowEngine(parties, dtype=name.split()[1], device=args.device)
    return make_engine(name, parties)


def tf_centralized_gd(X, y, *, dtype: str, device: str):
    """Centralized gradient descent in TensorFlow, recording like ``fl.centralized_gd``.

    Returns ``run(lr, rounds) -> (thetas (R + 1, d + 1), losses (R + 1,))``: one
    compiled call (a ``tf.while_loop``) doing R + 1 passes over X~ on ``device``;
    each pass computes the residual once and takes the loss and the gradient
    from it, the last pass the final loss only.
    """
    from fl_helpers.engines.tf_engine import concrete
    from fl_helpers.tf_env import import_tensorflow
    tf = import_tensorflow()
    real = tf.as_dtype(dtype)
    with tf.device(device):
        Xt = tf.identity(tf.constant(stack_with_bias([X], dtype)))
        yt = tf.identity(tf.constant(np.asarray(y, dtype=dtype)))

    @tf.function(input_signature=[tf.TensorSpec([None, None], real), tf.TensorSpec([None], real),
                                  tf.TensorSpec([], real), tf.TensorSpec([], tf.int32)])
    def gd(X, y, lr, rounds):
        M = tf.cast(tf.size(y), real)
        theta = tf.zeros([tf.shape(X)[1]], real)
        thetas = tf.TensorArray(real, size=rounds + 1)
        losses = tf.TensorArray(real, size=rounds + 1)
        for t in tf.range(rounds):
            r = tf.linalg.matvec(X, theta) - y                       # one pass: the residual ...
            thetas = thetas.write(t, theta)
            losses = losses.write(t, tf.reduce_sum(r * r) / M)       # ... gives the loss ...
            theta -= lr * (2.0 / M) * tf.linalg.matvec(X, r, transpose_a=True)   # ... and the gradient
        r = tf.linalg.matvec(X, theta) - y
        thetas = thetas.write(rounds, theta)
        losses = losses.write(rounds, tf.reduce_sum(r * r) / M)
        return thetas.stack(), losses.stack()

    graph = concrete(gd)                      # called like the engine calls its functions

    def run(lr, rounds):
        with tf.device(device):
            thetas, losses = graph(Xt, yt, tf.constant(lr, real), tf.constant(rounds, tf.int32))
        return thetas.numpy().astype(np.float64), losses.numpy().astype(np.float64)
    return run


def centralized_for(name: str, setup: Setup, args):
    """``central(rounds) -> final theta``: the yardstick of engine ``name``."""
    if name.startswith("tensorflow"):
        run = tf_centralized_gd(setup.X, setup.y, dtype=name.split()[1], device=setup_device(args))
        return lambda rounds: run(LR, rounds)[0][-1]
    return lambda rounds: fl.centralized_gd(setup.X, setup.y, lr=LR, rounds=rounds).theta


# --- timing ----------------------------------------------------------------------------------

@dataclass
class Timing:
    fed: list
    central: list
    fed_cpu: list
    central_cpu: list

    @property
    def ratios(self) -> list:
        return [f / c for f, c in zip(self.fed, self.central, strict=True)]

    @property
    def cpu_ratio(self) -> float:
        return statistics.median(f / c for f, c in zip(self.fed_cpu, self.central_cpu, strict=True))


def compare(fed, central, repeats: int) -> Timing:
    """Time ``fed()`` and ``central()`` ``repeats`` times each, in turn, after one warm-up each."""
    fed()
    central()
    out = Timing([], [], [], [])
    for i in range(repeats):
        pair = [(fed, out.fed, out.fed_cpu), (central, out.central, out.central_cpu)]
        for fn, wall, cpu in (pair if i % 2 == 0 else pair[::-1]):
            gc.collect()
            c0, w0 = time.process_time(), time.perf_counter()
            fn()
            wall.append(time.perf_counter() - w0)
            cpu.append(time.process_time() - c0)
    return out


def rounds_for(fed_call, target: float, lo: int = 3, hi: int = 200) -> int:
    """Rounds R that make ``fed_call(R)`` last about ``target`` seconds (timed after a warm-up call)."""
    fed_call(2)
    start = time.perf_counter()
    fed_call(2)
    per_round = (time.perf_counter() - start) / 2
    return int(min(hi, max(lo, math.ceil(target / max(per_round, 1e-9)))))


def spread(values) -> str:
    return " / ".join(f"{v:.3g}" for v in (min(values), statistics.median(values), max(values)))


def gpu_memory(tf_device: str | None, reset: bool = False):
    """Peak device memory (MiB) since the last reset, on a GPU; None elsewhere."""
    if not tf_device or not tf_device.startswith("GPU"):
        return None
    tf = sys.modules["tensorflow"]
    try:
        if reset:
            tf.config.experimental.reset_memory_stats("GPU:0")
            return None
        return tf.config.experimental.get_memory_info("GPU:0")["peak"] / 2**20
    except (ValueError, AttributeError, RuntimeError):
        return None


def run_config(name: str, setup: Setup, args, tf_device) -> dict:
    """All measurements of one engine at one N; returns the table's cells."""
    gpu_memory(tf_device, reset=True)
    start = time.perf_counter()
    eng = build(name, setup.parties, args)
    build_s = time.perf_counter() - start
    parties = setup.parties
    central = centralized_for(name, setup, args)

    def fedsgd(rounds):
        return fl.fedsgd(parties, lr=LR, rounds=rounds, engine=eng)

    def fedavg(rounds):
        return fl.fedavg(parties, lr=LR, rounds=rounds, local_epochs=EPOCHS, engine=eng)

    def sampled(rounds):
        return fl.fedavg(parties, lr=LR, rounds=rounds, fraction=FRACTION, seed=0, engine=eng)

    R = rounds_for(fedsgd, args.target)
    R5 = max(2, round(R / EPOCHS))
    # sanity: weighted by samples, FedSGD is centralized GD (same final model, up to rounding)
    a, b = fedsgd(R).theta, central(R)
    agree = float(np.max(np.abs(a - b)) / np.max(np.abs(b)))
    sgd = compare(lambda: fedsgd(R), lambda: central(R), args.repeats)
    avg = compare(lambda: fedavg(R5), lambda: central(EPOCHS * R5), args.repeats)
    smp = compare(lambda: sampled(R), lambda: central(R), args.repeats)
    one = None
    if name.startswith("tensorflow"):      # the other yardstick: the same engine, all rows in one party
        pooled = [fl.Party(setup.X, setup.y)]
        eng1 = build(name, pooled, args)
        one = compare(lambda: fedsgd(R), lambda: fl.fedsgd(pooled, lr=LR, rounds=R, engine=eng1),
                      args.repeats).ratios
        del pooled, eng1
    return dict(
        n=setup.n, m=setup.m, engine=name, device=eng.device, build=build_s, R=R, R5=R5, agree=agree,
        sgd_s=statistics.median(sgd.fed) / R, step_s=statistics.median(sgd.central) / R,
        sgd=sgd.ratios, sgd_cpu=sgd.cpu_ratio, avg=avg.ratios, sampled=smp.ratios, one=one,
        gpu_mib=gpu_memory(tf_device))


def row_text(r: dict, gpu: bool) -> str:
    if "skipped" in r:
        return f"| {r['n']:,} | {r['m']} | {r['engine']} | {r['skipped']} |" + " |" * (9 if gpu else 8)
    cells = [f"{r['n']:,}", str(r["m"]), r["engine"], f"{r['build']:.2g}", f"{r['sgd_s']:.3g}",
             spread(r["sgd"]), f"{r['sgd_cpu']:.3g}", spread(r["one"]) if r["one"] else "-",
             spread(r["avg"]), spread(r["sampled"]),
             f"{r['step_s']:.3g}", f"{r['R']} / {r['R5']}"]
    if gpu:
        cells.append("-" if r["gpu_mib"] is None else f"{r['gpu_mib']:,.0f}")
    return "| " + " | ".join(cells) + " |"


# --- memory (a fresh process per row) -----------------------------------------------------------

MEMORY_KINDS = ("centralized numpy", "vectorized", "centralized tensorflow float32", "tensorflow float32")


def peak_rss_mib() -> float:
    """This process's peak resident set size (MiB): VmHWM of /proc/self/status, else ru_maxrss.

    On Linux ``getrusage(RUSAGE_SELF).ru_maxrss`` of a child started by
    fork + exec starts at the parent's peak (1.2 GiB here, the benchmark's own):
    VmHWM belongs to the child's own address space, fresh after exec.
    """
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 2**10
    except OSError:
        pass
    import resource
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if sys.platform == "darwin" else peak / 2**10     # bytes on macOS, KiB on Linux


def memory_child(kind: str, n: int, args) -> None:
    """Build the data, note the peak RSS, build + run ``kind``, note it again; print JSON."""
    uses_tf = "tensorflow" in kind
    if uses_tf:
        tf = setup_tensorflow(args)
        (tf.constant(1.0) + 1.0).numpy()                     # the runtime's own allocations first
        from fl_helpers.engines import tf_engine  # noqa: F401
    rng = np.random.default_rng(0)
    w = rng.uniform(-2, 2, D)
    m = M_PER_PARTY
    if kind.startswith("centralized"):                       # the pooled data, built in place
        X = rng.standard_normal((n * m, D))
        y = X @ w + 0.5 * rng.standard_normal(n * m)
    else:                                                    # the parties' data, no pooled copy
        parties = []
        for _ in range(n):
            Xi = rng.standard_normal((m, D))
            parties.append(fl.Party(Xi, Xi @ w + 0.5 * rng.standard_normal(m)))
    before = peak_rss_mib()
    if kind == "centralized numpy":
        fl.centralized_gd(X, y, lr=LR, rounds=2)
    elif kind.startswith("centralized tensorflow"):
        tf_centralized_gd(X, y, dtype=kind.split()[-1], device=setup_device(args))(LR, 2)
    else:
        eng = build(kind, parties, args)
        fl.fedsgd(parties, lr=LR, rounds=2, engine=eng)
        fl.fedavg(parties, lr=LR, rounds=1, local_epochs=EPOCHS, engine=eng)
        fl.fedavg(parties, lr=LR, rounds=2, fraction=FRACTION, seed=0, engine=eng)
    print(json.dumps({"before": before, "after": peak_rss_mib()}))


def memory_rows(args) -> list[str]:
    rows = []
    for kind in MEMORY_KINDS:
        if "tensorflow" in kind and "tensorflow" not in args.engines:
            continue
        command = [sys.executable, str(Path(__file__).resolve()), "--memory-child", kind, "--sizes", str(MEMORY_AT)]
        if args.threads is not None:
            command.append(f"--threads={args.threads}")
        if args.device:
            command.append(f"--device={args.device}")
        done = subprocess.run(command, capture_output=True, text=True, check=False)
        try:
            out = json.loads(done.stdout.strip().splitlines()[-1])
        except (IndexError, json.JSONDecodeError):
            rows.append(f"| {kind} | failed: {done.stderr.strip().splitlines()[-1:]} | |")
            continue
        rows.append(f"| {kind} | {out['after'] - out['before']:,.0f} | {out['after']:,.0f} |")
        print(rows[-1], file=sys.stderr, flush=True)
    return rows


# --- TensorFlow ------------------------------------------------------------------------------

def setup_tensorflow(args):
    from fl_helpers.tf_env import import_tensorflow
    tf = import_tensorflow()
    if args.threads:
        tf.config.threading.set_intra_op_parallelism_threads(args.threads)
        tf.config.threading.set_inter_op_parallelism_threads(args.threads)
    return tf


def setup_device(args) -> str:
    from fl_helpers.engines.tf_engine import available_device
    return available_device(args.device)[0]


def tf_call_overhead(repeats: int = 300) -> float:
    """Seconds of one call of a compiled TensorFlow function that does (almost) nothing."""
    tf = sys.modules["tensorflow"]

    @tf.function(input_signature=[tf.TensorSpec([], tf.float32)])
    def add_one(x):
        return x + 1.0

    graph = add_one.get_concrete_function()
    x = tf.constant(0.0)
    graph(x).numpy()
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        graph(x).numpy()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


# --- main ------------------------------------------------------------------------------------

def parse(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", type=int, nargs="+", default=None,
                    help=f"numbers of parties N (default {' '.join(map(str, CPU_SIZES))}; "
                         f"with --gpu {' '.join(map(str, GPU_SIZES))})")
    ap.add_argument("--engines", nargs="+", default=None, choices=["loop", "vectorized", "tensorflow"],
                    help="default: all three (loop up to N = 1,000); with --gpu: tensorflow")
    ap.add_argument("--tf-dtypes", nargs="+", default=["float32"], choices=["float32", "float64"])
    ap.add_argument("--device", choices=["cpu", "gpu"], default=None,
                    help="TensorFlow device (default: the GPU if TensorFlow sees one)")
    ap.add_argument("--gpu", action="store_true",
                    help="GPU run: TensorFlow on the GPU, N = 1e4 1e5 1e6, at most --max-rows rows, --budget 300")
    ap.add_argument("--max-rows", type=int, default=None,
                    help="cap on M = N m: m = max(10, min(100, max_rows // N)) (default: none; 1e7 with --gpu)")
    ap.add_argument("--repeats", type=int, default=None, help="timed repeats per ratio (default 7; --gpu 5; --quick 3)")
    ap.add_argument("--target", type=float, default=None,
                    help="seconds one timed FedSGD call should last; sets R (default 0.3; --quick 0.1)")
    ap.add_argument("--budget", type=float, default=None,
                    help="seconds; configurations not started by then are skipped (default: none; 300 with --gpu)")
    ap.add_argument("--quick", action="store_true", help="fewer repeats and shorter calls (a smoke test)")
    ap.add_argument("--no-memory", action="store_true", help="skip the memory table")
    ap.add_argument("--threads", type=int, default=None,
                    help="threads for BLAS and TensorFlow (default: the libraries' own choice)")
    ap.add_argument("--memory-child", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.threads is not None and args.threads < 1:
        ap.error(f"--threads must be a positive integer, got {args.threads}")
    if args.gpu:
        args.device = args.device or "gpu"
        args.no_memory = True
    args.engines = args.engines or (["tensorflow"] if args.gpu else ["loop", "vectorized", "tensorflow"])
    args.sizes = sorted(set(args.sizes or (GPU_SIZES if args.gpu else CPU_SIZES)))
    args.max_rows = args.max_rows or (10_000_000 if args.gpu else None)
    args.budget = args.budget or (300.0 if args.gpu else None)
    args.repeats = args.repeats or (3 if args.quick else 5 if args.gpu else 7)
    args.target = args.target or (0.1 if args.quick else 0.3)
    return args


def rows_per_party(n: int, max_rows: int | None) -> int:
    return M_PER_PARTY if max_rows is None else max(10, min(M_PER_PARTY, max_rows // n))


def main(argv=None) -> None:
    args = parse(argv)
    if args.memory_child:
        memory_child(args.memory_child, args.sizes[0], args)
        return
    started = time.perf_counter()
    tf_device = None
    if "tensorflow" in args.engines:
        setup_tensorflow(args)
        from fl_helpers.engines.tf_engine import available_device
        tf_device = available_device(args.device)[1]

    print("## Engine benchmark\n")
    print("\n".join(machine_lines(args, tf_device)))
    print(f"- Linear regression, d = {D}, m rows per party (IID), lr = {LR}. Whole calls, History included: "
          f"`fl.fedsgd(parties, lr, rounds=R, engine=eng)`, `fl.fedavg(..., local_epochs={EPOCHS})`, "
          f"`fl.fedavg(..., fraction={FRACTION}, seed=0)` (E = 1), against centralized gradient descent "
          "recording its loss on the pooled rows in the same framework: `fl.centralized_gd(X, y, lr, rounds)` "
          "for loop/vectorized; for tensorflow one compiled `tf.function` loop (R + 1 passes: residual -> "
          "loss and gradient) on the engine's device and dtype.")
    print(f"- Ratios: min / median / max over {args.repeats} repeats (wall clock; federated call and "
          "yardstick timed in turn). FedSGD: R rounds / R centralized steps; FedAvg E=5: R5 rounds / "
          f"{EPOCHS} R5 steps; C=0.1: R sampled rounds / R steps over all the data (a sampled round also "
          "records every party's loss: one pass over all the data). CPU: median ratio of process CPU "
          "times. FedSGD / 1-party engine (tensorflow rows): against `fl.fedsgd([one party holding all "
          "rows], engine=<a TensorFlowEngine of the same dtype and device>)`, the other centralized "
          "yardstick in the same framework (same engine code, History included). R chosen so that a "
          "FedSGD call lasts about "
          f"{args.target:g} s; build: seconds to build the engine (once per row).")
    if tf_device:
        print(f"- TensorFlow's fixed cost of one compiled call (an empty function, result back on the host): "
              f"{tf_call_overhead() * 1e3:.2f} ms; it dominates rounds and passes that take well under a "
              "millisecond (small N).")
    print(flush=True)

    rows = []
    for n in args.sizes:
        names = [e for e in args.engines if e != "tensorflow" and not (e == "loop" and n > LOOP_MAX)]
        if "tensorflow" in args.engines:
            names += [f"tensorflow {dtype}" for dtype in args.tf_dtypes]
        m = rows_per_party(n, args.max_rows)
        if args.budget and time.perf_counter() - started > args.budget:
            rows += [dict(n=n, m=m, engine=name, skipped="skipped (time budget)") for name in names]
            continue
        t0 = time.perf_counter()
        setup = make_setup(n, m)
        print(f"N = {n:,}: data and parties built in {time.perf_counter() - t0:.1f} s", file=sys.stderr, flush=True)
        for name in names:
            if args.budget and time.perf_counter() - started > args.budget:
                rows.append(dict(n=n, m=m, engine=name, skipped="skipped (time budget)"))
                continue
            rows.append(run_config(name, setup, args, tf_device))
            print(row_text(rows[-1], args.gpu), file=sys.stderr, flush=True)        # progress
        del setup
        gc.collect()

    gpu = bool(args.gpu)
    print("| N | m | engine | build s | FedSGD s/round | FedSGD / centralized | CPU | FedSGD / 1-party engine "
          "| FedAvg E=5 / 5 steps | C=0.1 round / 1 step | centralized s/step | R / R5 |"
          + (" GPU peak MiB |" if gpu else ""))
    print("|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|" + ("---:|" if gpu else ""))
    print("\n".join(row_text(r, gpu) for r in rows))

    done = [r for r in rows if "skipped" not in r]
    worst = max((r["agree"] for r in done), default=None)
    if worst is not None:
        print(f"\nSanity: FedSGD's final model equals centralized GD's (weighted by samples they are the same "
              f"algorithm) to a relative {worst:.1g} at most (float32 rows included).")
    lines = []
    for engine, n, target in TARGETS:
        for r in done:
            if r["engine"] == engine and r["n"] == n:
                med = statistics.median(r["sgd"])
                lines.append(f"- {engine}, N = {n:,}: FedSGD / centralized median {med:.3g} "
                             f"(min {min(r['sgd']):.3g}, max {max(r['sgd']):.3g}; CPU time {r['sgd_cpu']:.3g}), "
                             f"target <= {target:g}: {'met' if med <= target else 'NOT met'}"
                             + (f"; against the 1-party engine: median {statistics.median(r['one']):.3g}, "
                                f"{'met' if statistics.median(r['one']) <= target else 'NOT met'}" if r["one"] else ""))
    if lines:
        print("\nTargets:\n" + "\n".join(lines))

    if not args.no_memory and MEMORY_AT in args.sizes:
        mem = memory_rows(args)
        data_mib = MEMORY_AT * M_PER_PARTY * (D + 1) * 8 / 2**20
        print(f"\nMemory at N = {MEMORY_AT:,} (m = {M_PER_PARTY}; the stacked data X~ alone: {data_mib:,.0f} MiB "
              "in float64, half in float32). Peak RSS of a fresh process per row (VmHWM of "
              "/proc/self/status), above its peak once the imports were done and the data built (the parties, or "
              "the pooled X for centralized rows): building the engine or the yardstick's copy, then "
              f"2 FedSGD rounds, 1 FedAvg E={EPOCHS} round and 2 sampled rounds (centralized: 2 steps).\n")
        print("| run | peak RSS above the data, MiB | process peak RSS, MiB |")
        print("|---|---:|---:|")
        print("\n".join(mem))
    print(f"\n({time.perf_counter() - started:.0f} s)")


if __name__ == "__main__":
    main()
