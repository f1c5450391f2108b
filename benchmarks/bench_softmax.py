"""What does a softmax-regression FedAvg round cost, compared with centralized epochs over the same rows?

Softmax regression ``models.softmax(n_classes=10)`` on digits-sized data: 64
features in [0, 1], 10 classes. The 1,352 rows of
``fl.load_dataset("digits", subset="train")`` are far too few for N = 1,000
parties (1.35 rows each), so they are replicated: M = N m rows, row j a copy
of training row j mod 1,352 plus N(0, 0.03^2) pixel noise (seeded; about half
a grey level of the 17 the images have), clipped to [0, 1]. m = 100 rows per
party (``--rows-per-party``): a realistic small client (McMahan et al. 2017 give
each of 100 MNIST clients 600 rows; 100 rows makes B = 10 ten steps per
epoch), so M = 10,000 rows at N = 100 and 100,000 at N = 1,000. Split IID
(``fl.split(X, y, N, model=..., seed=0)``), every party m rows. lr = 0.1.

Timed, whole calls as a user makes them (History, i.e. the loss of every
model, included), R rounds (R chosen so that the call lasts about ``--target``
seconds):

    fl.fedavg(parties, lr=0.1, rounds=R, local_epochs=E, batch_size=B, seed=0, engine=eng)

for E = 1, 5 and B = full batch, 10, against the SAME number of centralized
epochs, R E, of full-batch gradient descent with the same model on the same
pooled M rows, in the engine's framework, recording its loss per step too:

    numpy engines (loop, vectorized):  a hand loop of the model's own formulas on the pooled rows,
                                       prepared once like an engine's (one-hot Y; no checks, no copies):
                                       Z = model.scores(theta, X); loss from Z; theta -= lr *
                                       model.gradient_from_residual(theta, X, model.mean(Z) - Y)
    tensorflow float32:                one compiled tf.function (``tf_centralized``): R E steps in a
                                       tf.while_loop with the model's ``tf_ops`` on the engine's device

and a second yardstick in the same framework as the federated call: the same
engine code on one party holding all M rows, full batch,
``fl.fedavg([Party(X, y)], lr=0.1, rounds=R, local_epochs=E, engine=eng1)``.

Work per round, both sides: every row takes part in E passes (forward:
scores and softmax; backward: X^T R). Full batch, a party takes E steps;
B = 10, it takes E m / B steps of 10 rows, so the round does the same
arithmetic in many small pieces (and the data are reshuffled every epoch).
Recording: a full-batch round gets every party's loss from its first pass
(free), as centralized gradient descent does; a minibatch round cannot, so
it adds one pass over all rows per round (the loss at the new model). That
is part of what the user's call costs and is counted.

Where the time goes (printed after the main table): for the minibatch rows,
the engine's local work alone, with the seed (each party reshuffles its rows
every epoch) and in data order (the same arithmetic, no shuffling), its loss
pass, and E centralized steps. What this measures on the project's 2-core CPU:

- vectorized: the minibatch steps themselves, batched over the parties, cost
  about as much as E centralized full-batch passes; reshuffling every party's
  rows every epoch (an argsort of its keys and a reordered copy of its rows)
  about doubles the local work, and the recording pass adds about one more
  centralized pass per round: together about 2-2.5x, over the target.
- tensorflow float32: the minibatch path of the GLMs gathers each row's party
  model (k b x 65 x 10 floats per step) and sums per-row outer products by
  party, over 10x the time of batched matrix products on (k, b, 65), which
  equal-size parties would allow (``tf_minibatch_step`` measures both).
- loop: one Python call per party and step.

Ratios are min / median / max over ``--repeats`` repeats (after a warm-up),
wall clock, the three calls timed in turn (order rotating); CPU: median ratio of
process CPU times. Target: vectorized round / centralized <= 1.5 (median).
The loop engine (one Python call per party and step) runs only where a
round has at most 10,000 party-steps (not N = 1,000, E = 5, B = 10: about 2 s
a round here).

Usage:
    python benchmarks/bench_softmax.py [--threads 1] [--quick] [--sizes 100 1000]
                                       [--engines loop vectorized tensorflow] [--repeats 7]
``--threads N`` pins BLAS (set before numpy is imported) and TensorFlow's
thread pools, as in bench_engines.py (whose machine and timing helpers this
script uses). Prints Markdown on stdout; progress goes to stderr.
"""

from __future__ import annotations

import argparse
import sys

from pinning import pin_from_argv

_PINNED = pin_from_argv() if __name__ == "__main__" else None     # before numpy (bench_engines imports it)

import gc  # noqa: E402
import math  # noqa: E402
import statistics  # noqa: E402
import time  # noqa: E402
from dataclasses import dataclass, field  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import bench_engines as be  # noqa: E402

import fl_helpers as fl  # noqa: E402
from fl_helpers import models  # noqa: E402
from fl_helpers.engines import make_engine  # noqa: E402
from fl_helpers.engines.vectorized import stack_with_bias  # noqa: E402

if __name__ == "__main__":
    be.PINNED_BEFORE_NUMPY = _PINNED        # so that its header says how BLAS was pinned

CLASSES, LR, NOISE, M_PER_PARTY = 10, 0.1, 0.03, 100
SIZES = (100, 1_000)
EPOCHS = (1, 5)
BATCHES = (None, 10)
LOOP_MAX_STEPS = 10_000        # party-steps per round, N E ceil(m / B), up to which the loop engine runs
TARGET_ENGINE, TARGET = "vectorized", 1.5
MODEL = models.softmax(n_classes=CLASSES)


# --- data ------------------------------------------------------------------------------------

def digits_rows(n_rows: int, *, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """``n_rows`` rows like the digits training set: row j is training row j mod 1,352 + N(0, NOISE^2), clipped."""
    X0, y0, _ = fl.load_dataset("digits", subset="train")
    rng = np.random.default_rng(seed)
    idx = np.arange(n_rows) % len(y0)
    X = X0[idx] + NOISE * rng.standard_normal((n_rows, X0.shape[1]))
    np.clip(X, 0.0, 1.0, out=X)
    return X, y0[idx]


@dataclass
class Setup(be.Setup):
    """bench_engines' setup, plus the pooled rows as one party (the 1-party engine's yardstick)."""

    pooled: list = field(default_factory=list)


def make_setup(n: int, m: int) -> Setup:
    X, y = digits_rows(n * m)
    return Setup(n, m, X, y, fl.split(X, y, n, model=MODEL, seed=0), [fl.Party(X, y, model=MODEL)])


# --- the centralized yardsticks --------------------------------------------------------------

def numpy_centralized(X, y):
    """``run(steps) -> (theta, losses)``: full-batch gradient descent, the model's formulas, data prepared once."""
    Y = MODEL.encode(y, CLASSES)                       # once, as the engines encode it once
    theta0 = MODEL.init(X.shape[1])

    def run(steps):
        theta, losses = theta0, np.empty(steps + 1)
        for t in range(steps + 1):
            Z = MODEL.scores(theta, X)                 # one pass: the scores give the loss ...
            losses[t] = np.mean(MODEL.pointwise_loss(Z, Y))
            if t == steps:
                break
            theta = theta - LR * MODEL.gradient_from_residual(theta, X, MODEL.mean(Z) - Y)   # ... and the gradient
        return theta, losses
    return run


def tf_centralized(X, y, *, dtype: str, device: str):
    """``run(steps) -> (theta, losses)``: the same descent as one compiled TensorFlow call on ``device``."""
    from fl_helpers.engines.tf_engine import concrete
    from fl_helpers.tf_env import import_tensorflow
    tf = import_tensorflow()
    real = tf.as_dtype(dtype)
    _, residual_and_loss = MODEL.tf_ops(tf)
    with tf.device(device):
        Xt = tf.identity(tf.constant(stack_with_bias([X], dtype)))
        Yt = tf.identity(tf.constant(MODEL.encode(y, CLASSES), real))

    @tf.function(input_signature=[tf.TensorSpec([None, None], real), tf.TensorSpec([None, None], real),
                                  tf.TensorSpec([], real), tf.TensorSpec([], tf.int32)])
    def gd(X, Y, lr, steps):
        M = tf.cast(tf.shape(X)[0], real)
        Theta = tf.zeros([tf.shape(X)[1], tf.shape(Y)[1]], real)
        losses = tf.TensorArray(real, size=steps + 1)
        for t in tf.range(steps):
            R, pointwise = residual_and_loss(tf.matmul(X, Theta), Y)            # one pass: scores ...
            losses = losses.write(t, tf.reduce_sum(pointwise) / M)             # ... the loss ...
            Theta -= lr / M * tf.matmul(X, R, transpose_a=True)                # ... and the gradient
        _, pointwise = residual_and_loss(tf.matmul(X, Theta), Y)
        losses = losses.write(steps, tf.reduce_sum(pointwise) / M)
        return tf.reshape(Theta, [-1]), losses.stack()

    graph = concrete(gd)

    def run(steps):
        with tf.device(device):
            theta, losses = graph(Xt, Yt, tf.constant(LR, real), tf.constant(steps, tf.int32))
        return theta.numpy().astype(np.float64), losses.numpy().astype(np.float64)
    return run


# --- timing ----------------------------------------------------------------------------------

def compare(fns: dict, repeats: int) -> tuple[dict, dict]:
    """Time each callable ``repeats`` times, in turn (order rotating), after one warm-up each: (wall, cpu)."""
    for fn in fns.values():
        fn()
    names = list(fns)
    wall = {k: [] for k in names}
    cpu = {k: [] for k in names}
    for i in range(repeats):
        for k in names[i % len(names):] + names[:i % len(names)]:
            gc.collect()
            c0, w0 = time.process_time(), time.perf_counter()
            fns[k]()
            wall[k].append(time.perf_counter() - w0)
            cpu[k].append(time.process_time() - c0)
    return wall, cpu


def rounds_for(fed, target: float, hi: int = 200) -> int:
    """Rounds R (>= 1) that make ``fed(R)`` last about ``target`` seconds (one round timed after a warm-up)."""
    fed(1)
    start = time.perf_counter()
    fed(1)
    return int(min(hi, max(1, math.ceil(target / max(time.perf_counter() - start, 1e-9)))))


def ratios(a, b) -> list:
    return [x / y for x, y in zip(a, b, strict=True)]


def run_config(name: str, setup: Setup, epochs: int, batch: int | None, args, engines: dict) -> dict:
    """One row: engine ``name``, E = ``epochs``, B = ``batch`` at this N."""
    eng, eng1, central = engines[name]

    def fed(rounds):
        return fl.fedavg(setup.parties, lr=LR, rounds=rounds, local_epochs=epochs, batch_size=batch, seed=0,
                         engine=eng)

    def one_party(rounds):
        return fl.fedavg(setup.pooled, lr=LR, rounds=rounds, local_epochs=epochs, engine=eng1)

    R = rounds_for(fed, args.target)
    agree = None
    if epochs == 1 and batch is None:          # FedSGD weighted by samples is centralized GD: same model
        a, b = fed(R).theta, central(R)[0]
        agree = float(np.max(np.abs(a - b)) / np.max(np.abs(b)))
    wall, cpu = compare({"fed": lambda: fed(R), "central": lambda: central(R * epochs),
                         "one": lambda: one_party(R)}, args.repeats)
    return dict(n=setup.n, m=setup.m, E=epochs, B=batch, engine=name, R=R, agree=agree,
                round_s=statistics.median(wall["fed"]) / R,
                step_s=statistics.median(wall["central"]) / (R * epochs),
                central=ratios(wall["fed"], wall["central"]),
                cpu=statistics.median(ratios(cpu["fed"], cpu["central"])),
                one=ratios(wall["fed"], wall["one"]))


def breakdown(name: str, setup: Setup, epochs: int, batch: int, args, engines: dict) -> dict:
    """Where a minibatch round's time goes: the engine's local work (shuffled, and in data order) and its loss pass."""
    eng = engines[name][0]
    theta = np.asarray(MODEL.init(setup.X.shape[1]), dtype=eng.dtype)
    everyone = np.arange(setup.n)
    paths = {
        "work": lambda: eng.local_work(theta, everyone, lr=LR, epochs=epochs, batch_size=batch, seed=0, round=1),
        "in order": lambda: eng.local_work(theta, everyone, lr=LR, epochs=epochs, batch_size=batch, seed=None),
        "loss pass": lambda: eng.party_losses(theta),
    }
    wall, _ = compare(paths, min(5, args.repeats))
    return {k: statistics.median(v) for k, v in wall.items()}


def tf_minibatch_step(k: int, b: int, repeats: int) -> tuple[float, float]:
    """Seconds of one softmax minibatch step of k parties x b rows in TensorFlow float32, two ways.

    ``per row``: as the engine's minibatch function computes it (each row's party model gathered,
    (k b, d + 1, K), and per-row outer products summed by party); ``batched``: the same gradients as
    batched matrix products on (k, b, d + 1), possible when the parties have equal sizes.
    """
    from fl_helpers.tf_env import import_tensorflow
    tf = import_tensorflow()
    rng = np.random.default_rng(0)
    p = 65
    Theta = tf.constant(0.01 * rng.standard_normal((k, p, CLASSES)).astype(np.float32))
    X = tf.constant(rng.random((k * b, p)).astype(np.float32))
    Y = tf.one_hot(rng.integers(0, CLASSES, k * b), CLASSES)
    party = tf.constant(np.repeat(np.arange(k), b).astype(np.int32))

    @tf.function
    def per_row():
        R = tf.nn.softmax(tf.einsum("bp,bpk->bk", X, tf.gather(Theta, party))) - Y
        return tf.math.unsorted_segment_sum(X[:, :, None] * R[:, None, :], party, k) / b

    @tf.function
    def batched():
        X3 = tf.reshape(X, [k, b, p])
        R = tf.nn.softmax(tf.matmul(X3, Theta)) - tf.reshape(Y, [k, b, CLASSES])
        return tf.matmul(X3, R, transpose_a=True) / b

    out = []
    for fn in (per_row, batched):
        fn().numpy()
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            fn().numpy()
            times.append(time.perf_counter() - start)
        out.append(statistics.median(times))
    return out[0], out[1]


def verdict(r: dict) -> str:
    if r["engine"] != TARGET_ENGINE:
        return "-"
    return "met" if statistics.median(r["central"]) <= TARGET else "**NOT met**"


def row_text(r: dict) -> str:
    head = f"| {r['n']:,} | {r['m']} | {r['E']} | {r['B'] or 'full'} | {r['engine']} |"
    if "skipped" in r:
        return head + f" {r['skipped']} |" + " |" * 7
    cells = [f"{r['round_s']:.3g}", be.spread(r["central"]), f"{r['cpu']:.3g}", be.spread(r["one"]),
             f"{r['step_s']:.3g}", str(r["R"]), "-" if r["agree"] is None else f"{r['agree']:.0e}", verdict(r)]
    return head + " " + " | ".join(cells) + " |"


# --- main ------------------------------------------------------------------------------------

def parse(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", type=int, nargs="+", default=list(SIZES), help="numbers of parties N")
    ap.add_argument("--rows-per-party", type=int, default=M_PER_PARTY, help=f"m (default {M_PER_PARTY})")
    ap.add_argument("--engines", nargs="+", default=["vectorized", "loop", "tensorflow"],
                    choices=["loop", "vectorized", "tensorflow"])
    ap.add_argument("--device", choices=["cpu", "gpu"], default=None,
                    help="TensorFlow device (default: the GPU if TensorFlow sees one)")
    ap.add_argument("--repeats", type=int, default=None, help="timed repeats per row (default 7; --quick 3)")
    ap.add_argument("--target", type=float, default=None,
                    help="seconds one timed federated call should last; sets R (default 0.3; --quick 0.1)")
    ap.add_argument("--quick", action="store_true", help="fewer repeats and shorter calls (a smoke test)")
    ap.add_argument("--threads", type=int, default=None,
                    help="threads for BLAS and TensorFlow (default: the libraries' own choice)")
    args = ap.parse_args(argv)
    if args.threads is not None and args.threads < 1:
        ap.error(f"--threads must be a positive integer, got {args.threads}")
    if args.rows_per_party < 1:
        ap.error(f"--rows-per-party must be a positive integer, got {args.rows_per_party}")
    args.repeats = args.repeats or (3 if args.quick else 7)
    args.target = args.target or (0.1 if args.quick else 0.3)
    return args


def build_engines(names, setup: Setup, args, tf_device) -> dict:
    """``{name: (engine, one-party engine, centralized run)}``; prints the build times to stderr."""
    out = {}
    numpy_run = None
    for name in names:
        start = time.perf_counter()
        if name.startswith("tensorflow"):
            from fl_helpers.engines.tf_engine import TensorFlowEngine
            dtype = name.split()[1]
            eng = TensorFlowEngine(setup.parties, dtype=dtype, device=args.device)
            eng1 = TensorFlowEngine(setup.pooled, dtype=dtype, device=args.device)
            central = tf_centralized(setup.X, setup.y, dtype=dtype, device=be.setup_device(args))
        else:
            eng, eng1 = make_engine(name, setup.parties), make_engine(name, setup.pooled)
            numpy_run = numpy_run or numpy_centralized(setup.X, setup.y)
            central = numpy_run
        out[name] = (eng, eng1, central)
        print(f"  {name}: engines built in {time.perf_counter() - start:.2f} s", file=sys.stderr, flush=True)
    return out


def main(argv=None) -> None:
    args = parse(argv)
    started = time.perf_counter()
    tf_device = None
    if "tensorflow" in args.engines:
        be.setup_tensorflow(args)
        from fl_helpers.engines.tf_engine import available_device
        tf_device = available_device(args.device)[1]

    print("## Softmax regression: one FedAvg round vs the same number of centralized epochs\n")
    print("\n".join(be.machine_lines(args, tf_device)))
    print(f"- Data: digits-sized, 64 features, {CLASSES} classes: the 1,352 rows of "
          f"`fl.load_dataset('digits', subset='train')` replicated with N(0, {NOISE}^2) pixel noise (seeded, "
          f"clipped to [0, 1]) to M = N m rows, m = {args.rows_per_party} per party, split IID. "
          f"`models.softmax(n_classes={CLASSES})`, lr = {LR}.")
    print(f"- Federated: `fl.fedavg(parties, lr={LR}, rounds=R, local_epochs=E, batch_size=B, seed=0, "
          "engine=eng)`, History included (a minibatch round adds one pass for the loss at the new model). "
          "Centralized: R E steps of full-batch gradient descent on the pooled rows, recording the loss "
          "of every step (one pass per step), in the engine's framework: a numpy hand loop of the model's "
          "formulas (loop, vectorized), one compiled `tf.function` loop in float32 (tensorflow). "
          "1-party engine: `fl.fedavg([Party(X, y)], lr, rounds=R, local_epochs=E, engine=<same engine kind>)`, "
          "full batch.")
    print(f"- Ratios: min / median / max over {args.repeats} repeats (wall clock, the three calls in turn); "
          "CPU: median ratio of process CPU times. R: rounds per timed call (about "
          f"{args.target:g} s); centralized s/step: its call's median time / (R E), R E + 1 passes. agree: max |theta_fed - theta_central| / max |theta_central| after R rounds, "
          "for E = 1 full batch (FedSGD weighted by samples is centralized gradient descent). "
          f"Target: {TARGET_ENGINE} round / centralized <= {TARGET:g} (median).")
    if tf_device:
        print(f"- TensorFlow's fixed cost of one compiled call (an empty function): {be.tf_call_overhead() * 1e3:.2f} ms")
    print(flush=True)

    names = [e for e in args.engines if e != "tensorflow"] + (["tensorflow float32"] if tf_device else [])
    rows = []
    for n in sorted(set(args.sizes)):
        t0 = time.perf_counter()
        setup = make_setup(n, args.rows_per_party)
        print(f"N = {n:,}: M = {n * setup.m:,} rows, data and parties built in {time.perf_counter() - t0:.1f} s",
              file=sys.stderr, flush=True)
        engines = build_engines(names, setup, args, tf_device)
        for epochs in EPOCHS:
            for batch in BATCHES:
                for name in names:
                    steps = n * epochs * (1 if batch is None else math.ceil(setup.m / batch))
                    if name == "loop" and steps > LOOP_MAX_STEPS:
                        rows.append(dict(n=n, m=setup.m, E=epochs, B=batch, engine=name,
                                         skipped=f"skipped ({steps:,} party-steps a round)"))
                    else:
                        rows.append(run_config(name, setup, epochs, batch, args, engines))
                        if batch is not None and name != "loop":
                            rows[-1]["pieces"] = breakdown(name, setup, epochs, batch, args, engines)
                    print(row_text(rows[-1]), file=sys.stderr, flush=True)
        del setup, engines
        gc.collect()

    print("| N | m | E | B | engine | round s | round / centralized | CPU | round / 1-party engine "
          "| centralized s/step | R | agree | target <= 1.5 |")
    print("|---:|---:|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|---|")
    print("\n".join(row_text(r) for r in rows))
    done = [r for r in rows if "skipped" not in r and r["engine"] == TARGET_ENGINE]
    if done:
        met = sum(statistics.median(r["central"]) <= TARGET for r in done)
        print(f"\nTarget ({TARGET_ENGINE} round / centralized <= {TARGET:g}, median): met in {met} of {len(done)} rows.")
        for r in done:
            if statistics.median(r["central"]) > TARGET:
                print(f"- NOT met: N = {r['n']:,}, E = {r['E']}, B = {r['B'] or 'full'}: "
                      f"median {statistics.median(r['central']):.3g}")
    split = [r for r in rows if "pieces" in r]
    if split:
        print("\nWhere a minibatch round's time goes (medians, ms). Local work: `eng.local_work(theta, all, ...)`, "
              "the round's training (with the seed: each party reshuffles its rows every epoch; in data order: "
              "no shuffling, the same arithmetic); loss pass: `eng.party_losses(theta)`, the recording a minibatch "
              "round adds; E centralized steps: E x the centralized s/step of the main table.\n")
        print("| N | E | B | engine | round | local work | local work, data order | loss pass | E centralized steps "
              "| per party-step |")
        print("|---:|---:|---:|---|---:|---:|---:|---:|---:|---:|")
        for r in split:
            q = r["pieces"]
            steps = r["n"] * r["E"] * math.ceil(r["m"] / r["B"])
            print(f"| {r['n']:,} | {r['E']} | {r['B']} | {r['engine']} | {r['round_s'] * 1e3:.1f} | "
                  f"{q['work'] * 1e3:.1f} | {q['in order'] * 1e3:.1f} | {q['loss pass'] * 1e3:.1f} | "
                  f"{r['E'] * r['step_s'] * 1e3:.1f} | {q['work'] / steps * 1e6:.2g} us |")
    if any(r["engine"].startswith("tensorflow") for r in split):
        k = max(r["n"] for r in split)
        per_row, batched = tf_minibatch_step(k, BATCHES[-1], args.repeats)
        print(f"\nOne softmax minibatch step of k = {k:,} parties x b = {BATCHES[-1]} rows in TensorFlow float32: "
              f"{per_row * 1e3:.2f} ms as the engine's minibatch path computes it (each row's party model "
              f"gathered, k b x 65 x {CLASSES} floats, and per-row outer products summed by party), "
              f"{batched * 1e3:.2f} ms as batched matrix products on (k, b, 65) ({per_row / batched:.2g}x).")
    print(f"\n({time.perf_counter() - started:.0f} s)")


if __name__ == "__main__":
    main()
