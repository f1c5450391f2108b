"""The "2NN" MLP of McMahan et al. (2017): one FedAvg round on the TensorFlow engine vs one centralized Keras epoch.

Model: 64-200-200-10, ReLU, softmax output, sparse categorical cross-entropy,
float32, ``models.keras(build, loss="sparse_categorical_crossentropy")``: a
Keras Sequential of Dense layers, which the TensorFlow engine runs *batched*
(every selected party's weights stacked, all parties' steps in one compiled
call; ``fl_helpers/engines/keras_batched.py``). Data: digits-sized, the
1,352 rows of ``fl.load_dataset("digits", subset="train")`` replicated with
N(0, 0.03^2) pixel noise to M = N m rows (``bench_softmax.digits_rows``),
m = 100 rows per party, N = 100 parties (M = 10,000), split IID. lr = 0.1.

Timed, one round with every party (E = 1; B = 10 and full batch):

    round        fl.fedavg(parties, lr=0.1, rounds=1, local_epochs=1, batch_size=B, seed=0, engine=eng)
                 the whole call: History included (the loss at the new model is one forward pass over
                 the M rows; with B = 10 the loss at the broadcast model is one more)
    local work   eng.local_work(theta, all parties, lr=0.1, epochs=1, batch_size=B, seed=0): the round's
                 training alone, what the centralized epoch is compared with pass for pass

against one centralized epoch over the same M rows with the same batch size,
the same architecture and loss, in two ways:

    Keras fit    net.fit(X, y, epochs=1, batch_size=B (M for full batch), shuffle=False, verbose=0)
                 on a compiled Keras model (SGD, lr 0.1): what a user writes
    compiled     a tf.function over net.trainable_variables (SGD by assign_sub): the M / B steps of the
                 epoch in one tf.while_loop (as in bench_keras.py), the fastest centralized epoch here

What bounds the ratio (the script measures and prints the pieces):

- Both sides process the same M rows once, forward and backward; they differ
  in how the work is cut. A FedAvg round with B = 10 takes m / B = 10 steps,
  each over k b = 1,000 rows (10 rows of each of the k = 100 parties); the
  centralized epoch takes M / B = 1,000 steps of 10 rows. The compiled
  centralized step is tiny (10 rows x 55,210 weights, about 0.2 ms here, much
  of it TensorFlow's per-op cost); Keras fit adds over 1 ms of its own per
  step, which is why fit's B = 10 epoch is slower than the whole round.
- Per-party weights. Every batched step reads and writes k copies of the
  weights (k x 55,210 float32, 21 MiB) for the step and the running sum of the
  gradients, and its weight gradient is k copies too: "weights only" times that
  arithmetic alone, as a compiled loop of the same number of steps.
- k small matmuls per layer (einsum "kbi,kio->kbo": k products of b x 64 @
  64 x 200, ...) instead of one product of k b rows: at b = 10 about twice as
  slow as the one large product, at b = 100 about the same ("forward products").
- Recording. ``fl.fedavg`` records the loss of each model: one forward pass
  over the M rows at the new model, and with minibatches one more at the
  broadcast model (full batch gets it free from the first step). Keras fit
  reports only the running mean of its minibatch losses.
- Host work. Inside the local work: the row index of every step (an argsort
  of every party's keys), theta in and the k updates out. Around it ("rest"):
  the server's weighted mean of the k updates (as float64), History, Python.

Every path runs once to warm up (tracing), then ``--repeats`` times, in turn;
ratios are min / median / max over the repeats (path time / yardstick time in
the same repeat). Prints Markdown; about a minute on 2 cores.

Usage:
    python benchmarks/bench_mlp.py [--threads 1] [--repeats 5] [--parties 100] [--rows-per-party 100]
"""

from __future__ import annotations

import argparse
import sys

from pinning import pin_from_argv

_PINNED = pin_from_argv() if __name__ == "__main__" else None     # before numpy (as bench_engines.py does)

import statistics  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import bench_engines as be  # noqa: E402
from bench_softmax import digits_rows  # noqa: E402

import fl_helpers as fl  # noqa: E402
from fl_helpers import models  # noqa: E402

if __name__ == "__main__":
    be.PINNED_BEFORE_NUMPY = _PINNED

D, HIDDEN, CLASSES, LR, B = 64, 200, 10, 0.1, 10
N_PARTIES, M_PER_PARTY = 100, 100
BATCHES = (B, None)


def mlp_builder():
    """The 2NN: 64-200-200-10, ReLU, softmax output, float32, Glorot-uniform weights (seed 0)."""
    from fl_helpers.tf_env import import_keras

    def mlp_2nn():
        keras = import_keras()
        init = keras.initializers.GlorotUniform(seed=0)
        return keras.Sequential([keras.Input((D,), dtype="float32"),
                                 keras.layers.Dense(HIDDEN, activation="relu", kernel_initializer=init),
                                 keras.layers.Dense(HIDDEN, activation="relu", kernel_initializer=init),
                                 keras.layers.Dense(CLASSES, activation="softmax", kernel_initializer=init)])
    return mlp_2nn


def keras_fit(X, y):
    """``epoch(batch) -> None``: ``net.fit`` for one epoch, as a user writes it."""
    from fl_helpers.tf_env import import_keras
    keras = import_keras()
    net = mlp_builder()()
    net.compile(optimizer=keras.optimizers.SGD(learning_rate=LR), loss="sparse_categorical_crossentropy")
    X32, y32 = X.astype(np.float32), y.astype(np.int64)

    def epoch(batch):
        net.fit(X32, y32, epochs=1, batch_size=batch or len(y32), shuffle=False, verbose=0)
    return epoch, net


def compiled_epoch(X, y):
    """``epoch(batch) -> loss``: one compiled epoch of SGD steps on the M rows (a tf.while_loop)."""
    from fl_helpers.tf_env import import_keras, import_tensorflow
    tf, keras = import_tensorflow(), import_keras()
    net = mlp_builder()()
    loss = keras.losses.get("sparse_categorical_crossentropy")
    variables = net.trainable_variables
    Xt, yt = tf.constant(X.astype(np.float32)), tf.constant(y.astype(np.float32))
    M = len(y)

    def sgd_step(Xb, yb):
        with tf.GradientTape() as tape:
            value = tf.reduce_mean(loss(yb, net(Xb, training=True)))
        for v, g in zip(variables, tape.gradient(value, variables), strict=True):
            v.assign_sub(LR * g)
        return value

    @tf.function
    def full_batch():
        return sgd_step(Xt, yt)

    @tf.function
    def minibatch_epoch(b):
        total = tf.constant(0.0)
        for s in tf.range(0, M, b):
            total += sgd_step(Xt[s:s + b], yt[s:s + b])
        return total

    def epoch(batch):
        return (full_batch() if batch is None else minibatch_epoch(tf.constant(batch))).numpy()
    return epoch


def weights_only(k: int, n_params: int):
    """``run(steps)``: the per-party weight arithmetic of a batched round alone, compiled.

    Tile theta to k copies, then each step: a gradient-sized tensor, the SGD
    step on the k copies and the running sum; the k summed gradients come back
    to the host, as the engine's updates do.
    """
    from fl_helpers.tf_env import import_tensorflow
    tf = import_tensorflow()
    theta = tf.constant(np.full(n_params, 0.01, dtype=np.float32))

    @tf.function(input_signature=[tf.TensorSpec([None], tf.float32), tf.TensorSpec([], tf.int32),
                                  tf.TensorSpec([], tf.int32)])
    def arithmetic(theta, k, steps):
        params = tf.tile(theta[None], [k, 1])
        total = tf.zeros_like(params)
        for _ in tf.range(steps):
            grad = 0.5 * params                        # stands for the k weight gradients
            params -= LR * grad
            total += grad
        return total

    return lambda steps: arithmetic(theta, tf.constant(k), tf.constant(steps)).numpy()


def forward_products(k: int, b: int):
    """``(batched, single)``: the three layers' forward products of k b rows, per party vs as one product."""
    from fl_helpers.tf_env import import_tensorflow
    tf = import_tensorflow()
    rng = np.random.default_rng(0)
    shapes = [(D, HIDDEN), (HIDDEN, HIDDEN), (HIDDEN, CLASSES)]
    kernels = [tf.constant(0.05 * rng.standard_normal((k,) + s).astype(np.float32)) for s in shapes]
    X3 = tf.constant(rng.random((k, b, D)).astype(np.float32))

    @tf.function
    def batched():
        h = X3
        for W in kernels:
            h = tf.nn.relu(tf.einsum("kbi,kio->kbo", h, W))
        return tf.reduce_sum(h)

    @tf.function
    def single():
        h = tf.reshape(X3, [-1, D])
        for W in kernels:
            h = tf.nn.relu(tf.matmul(h, W[0]))
        return tf.reduce_sum(h)

    return (lambda: batched().numpy()), (lambda: single().numpy())


def median_time(fn, repeats: int) -> float:
    fn()
    return statistics.median(timed(fn) for _ in range(repeats))


def timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def parse(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--parties", type=int, default=N_PARTIES, help=f"N (default {N_PARTIES})")
    ap.add_argument("--rows-per-party", type=int, default=M_PER_PARTY, help=f"m (default {M_PER_PARTY})")
    ap.add_argument("--repeats", type=int, default=5, help="timed repeats (default 5)")
    ap.add_argument("--device", choices=["cpu", "gpu"], default=None,
                    help="TensorFlow device (default: the GPU if TensorFlow sees one)")
    ap.add_argument("--threads", type=int, default=None,
                    help="threads for BLAS and TensorFlow (default: the libraries' own choice)")
    args = ap.parse_args(argv)
    for name in ("parties", "rows_per_party", "repeats"):
        if getattr(args, name) < 1:
            ap.error(f"--{name.replace('_', '-')} must be a positive integer, got {getattr(args, name)}")
    if args.threads is not None and args.threads < 1:
        ap.error(f"--threads must be a positive integer, got {args.threads}")
    return args


def main(argv=None) -> None:
    args = parse(argv)
    started = time.perf_counter()
    tf = be.setup_tensorflow(args)
    from fl_helpers.engines.tf_engine import TensorFlowEngine, available_device
    tf_device, tf_name = available_device(args.device)
    n, m = args.parties, args.rows_per_party
    M = n * m
    X, y = digits_rows(M)
    model = models.keras(mlp_builder(), loss="sparse_categorical_crossentropy")
    parties = fl.split(X, y, n, model=model, seed=0)
    start = time.perf_counter()
    eng = TensorFlowEngine(parties, device=args.device)
    build_s = time.perf_counter() - start
    theta = model.init().astype(model.dtype)
    everyone = np.arange(n)
    n_params = theta.size
    with tf.device(tf_device):
        fit, net = keras_fit(X, y)
        compiled = compiled_epoch(X, y)
    print(f"N = {n}, M = {M:,} rows, {n_params:,} weights; engine: {eng.device} (built in {build_s:.2f} s); "
          f"Keras fit jit_compile={net.jit_compile}", file=sys.stderr, flush=True)

    print("## The 2NN MLP (64-200-200-10): one FedAvg round vs one centralized Keras epoch\n")
    print("\n".join(be.machine_lines(args, tf_name)))
    print(f"- {n} parties x {m} rows (M = {M:,}; digits replicated with N(0, 0.03^2) noise, IID), "
          f"{n_params:,} float32 weights, lr = {LR}, E = 1. Engine: {eng.device}. "
          f"Keras fit: `jit_compile={net.jit_compile}` (Keras' choice).")
    print(f"- round: `fl.fedavg(parties, lr, rounds=1, local_epochs=1, batch_size=B, seed=0, engine=eng)`, "
          "History included; local work: `eng.local_work(theta, all, ...)` alone; "
          "yardsticks: one epoch over the M rows with the same B, `net.fit(X, y, epochs=1, batch_size=B, "
          "shuffle=False, verbose=0)` and a compiled tf.function epoch (one tf.while_loop of M / B SGD steps). "
          f"Ratios min / median / max over {args.repeats} repeats (after a warm-up); times are medians.")
    print(flush=True)

    traffic = weights_only(n, n_params)
    rows, pieces = [], []
    for batch in BATCHES:
        paths = {
            "round": lambda b=batch: fl.fedavg(parties, lr=LR, rounds=1, local_epochs=1, batch_size=b, seed=0,
                                               engine=eng),
            "work": lambda b=batch: eng.local_work(theta, everyone, lr=LR, epochs=1, batch_size=b, seed=0, round=1),
            "loss pass": lambda: eng.party_losses(theta),
            "fit": lambda b=batch: fit(b),
            "compiled": lambda b=batch: compiled(b),
        }
        with tf.device(tf_device):
            for fn in paths.values():
                fn()                                                    # warm-up: tracing
            wall = {k: [] for k in paths}
            names = list(paths)
            for i in range(args.repeats):                               # in turn, the order rotating
                for k in names[i % len(names):] + names[:i % len(names)]:
                    wall[k].append(timed(paths[k]))
        med = {k: statistics.median(v) for k, v in wall.items()}

        def ratio(a, b, wall=wall):
            return be.spread([x / y for x, y in zip(wall[a], wall[b], strict=True)])
        label = "full" if batch is None else str(batch)
        fed_steps = 1 if batch is None else -(-m // batch)
        central_steps = 1 if batch is None else -(-M // batch)
        rows.append(f"| {n} | {label} | {med['round']:.3f} | {med['work']:.3f} | {med['fit']:.3f} | "
                    f"{med['compiled']:.3f} | {ratio('round', 'fit')} | {ratio('round', 'compiled')} | "
                    f"{ratio('work', 'compiled')} |")
        with tf.device(tf_device):
            weights_s = median_time(lambda s=fed_steps: traffic(s), args.repeats)
        loss_passes = 1 if batch is None else 2               # full batch: the first one is free
        rest = med["round"] - med["work"] - loss_passes * med["loss pass"]
        pieces.append(f"| {label} | {fed_steps} x {n * (batch or m):,} rows | {med['work'] / fed_steps * 1e3:.1f} | "
                      f"{weights_s / fed_steps * 1e3:.1f} | {loss_passes} x {med['loss pass'] * 1e3:.1f} | "
                      f"{rest * 1e3:.0f} | {central_steps:,} x {batch or M:,} rows | "
                      f"{med['compiled'] / central_steps * 1e3:.3g} | {med['fit'] / central_steps * 1e3:.3g} |")
        print(rows[-1], file=sys.stderr, flush=True)

    print("| N | B | round s | local work s | Keras fit epoch s | compiled epoch s | round / fit "
          "| round / compiled | local work / compiled |")
    print("|---:|---:|---:|---:|---:|---:|---|---|---|")
    print("\n".join(rows))
    products = []
    with tf.device(tf_device):
        for b in sorted({B, m}):
            batched, single = forward_products(n, b)
            products.append((b, median_time(batched, args.repeats), median_time(single, args.repeats)))
    print("\nWhere the time goes (medians, ms):\n")
    print("| B | round: steps | per step | of which weights only | recording: loss passes | rest "
          "| centralized steps | per compiled step | per fit step |")
    print("|---:|---|---:|---:|---|---:|---|---:|---:|")
    print("\n".join(pieces))
    print(f"\nForward products of the three layers over k b rows (k = {n}), ms: "
          + "; ".join(f"b = {b}: k per-party products (einsum) {t1 * 1e3:.2f}, one product of {n * b:,} rows "
                      f"{t2 * 1e3:.2f} ({t1 / t2:.2g}x)" for b, t1, t2 in products) + ".")
    print(f"\nWhat bounds it: both sides process the same {M:,} rows once. A B = {B} round cuts them into "
          f"m / B = {-(-m // B)} steps of k b = {n * B:,} rows, each step on k = {n} copies of the weights "
          f"({n * n_params * 4 / 2**20:.0f} MiB read and written, 'weights only') with k small products per "
          f"layer; the centralized epoch into M / B = {-(-M // B):,} steps of {B} rows, each small enough that "
          "TensorFlow's per-step cost dominates it (and Keras fit adds its own per step). At full batch both "
          "take one step over the same rows; the round's extra is the k weight copies (tiled, k gradients, "
          "summed) and the per-party products. The round also records the loss of each model: one forward "
          "pass over the M rows at the new model, and one more at the broadcast model with minibatches; "
          "'rest' is the remainder of the call (the server's side on the host: the k updates as float64, their weighted mean, History).")
    print(f"\n({time.perf_counter() - started:.0f} s)")


if __name__ == "__main__":
    main()
