"""How fast do the compression codecs encode and decode, and how many bytes do they send?

``fl_helpers.compression`` on one update of d = 10^4 and d = 10^6 float64
coordinates (``--dims``), i.i.d. standard normal (seed ``--seed``), values sent in
float32 (the codecs' default dtype). Rows:

    float32 cast (the baseline)    encode: update.astype(np.float32)
                                   decode: payload.astype(np.float64)
    TopK(fraction=0.01)            the 1 % largest |x_j|: values + indices (uint16 at d = 10^4, uint32 at 10^6)
    RandomK(fraction=0.01)         1 % drawn from a seed: values + the uint64 seed (scaled by d/k;
                                   unscaled with error feedback, the codec's default)
    QSGD(levels=4), QSGD(levels=16)  the norm + a sign bit and a level per coordinate, bit-packed (4 or 6 bits)
    Sign()                         the scale + one bit per coordinate

TopK, RandomK and Sign are also run with ``error_feedback=True`` ("+ EF"): the
pairing of the papers (top-k and sign are biased and need it; unscaled random-k
contracts). QSGD is not: with s = 4 or 16 levels below sqrt(d) it does not
contract, and its residual grows geometrically (the module's docstring), so
error feedback is not a setting one would run.

Encode is the client transform, the call ``train`` makes: ``codec(update, party=0,
round=t, rng=rng)`` (t = 1, 2, ... so that each call is a new round), which checks
the update, encodes it and counts its bytes; with error feedback it also adds the
party's residual first and, after encoding, decodes the payload once to compute
the new residual (x - C(x)) and its norm. To time the steady state, each call
starts from the same residual (``codec.residuals[0]``, set before each call to
the residual one call left: a dictionary store, inside the timing). Decode is
``np.asarray(payload)``, the dense float64 vector the server adds up, on a fresh
``Encoded`` holding the same wire arrays (an ``Encoded`` caches its decoding, and
the transform with error feedback has decoded it already).

MB/s: dense float64 input, 8 d bytes (10^6 bytes a MB), per second of encode or
decode. Bytes: ``payload.nbytes`` (the arrays on the wire, what ``History.bytes_up``
counts, without the party's weight) over 8 d. (A sparse decode can beat the cast:
``np.zeros`` gets zeroed pages from the system and scatters k values into them, the
cast writes all d.)

Timing. Every call is warmed up once, then repeated enough times for one sample to
last at least ``--min-sample`` seconds; ``--repeats`` passes (5) each take one encode
and one decode sample of every row of a d, the row order rotated from pass to pass.
Seconds: median per call over the passes; "x cast": the median (min-max) over the
passes of (row / the float32 cast in the same pass). Wall clock, the garbage collector off
during a sample.

Usage:
    python benchmarks/bench_compression.py [--threads 1] [--repeats 5] [--quick]
``--threads N`` (default 1; 0: leave BLAS at its default) pins BLAS before numpy is
imported (the codecs use it only for norms). ``--quick``: d = 10^3 and 10^4, 3 passes,
0.02 s samples.
Prints Markdown on stdout; progress goes to stderr.
"""

from __future__ import annotations

import argparse
import sys

from pinning import pin_from_argv

DEFAULT_THREADS = 1

#: The --threads value whose variables were set before numpy was imported (when run as a script).
PINNED_BEFORE_NUMPY = pin_from_argv(default=DEFAULT_THREADS) if __name__ == "__main__" else None  # before numpy

import statistics  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench_robust import load_average, machine_lines, ratios, spread, time_passes  # noqa: E402  (same header, timing)

from fl_helpers import compression  # noqa: E402
from fl_helpers.compression import QSGD, Encoded, RandomK, Sign, TopK  # noqa: E402

DIMS = (10_000, 1_000_000)
CAST = "float32 cast (baseline)"


def codecs() -> dict:
    """The codecs of the table, by row name (built afresh for each d)."""
    return {
        "TopK(fraction=0.01)": TopK(fraction=0.01),
        "TopK(fraction=0.01) + EF": TopK(fraction=0.01, error_feedback=True),
        "RandomK(fraction=0.01)": RandomK(fraction=0.01),
        "RandomK(fraction=0.01) + EF": RandomK(fraction=0.01, error_feedback=True),
        "QSGD(levels=4)": QSGD(4),
        "QSGD(levels=16)": QSGD(16),
        "Sign()": Sign(),
        "Sign() + EF": Sign(error_feedback=True),
    }


def transform_calls(codec, update: np.ndarray, seed: int):
    """(encode, decode, payload): the client transform as ``train`` calls it, and the server's decoding."""
    rng = np.random.default_rng(seed)
    round_ = [0]

    def transform():
        round_[0] += 1
        return codec(update, party=0, round=round_[0], rng=rng)

    payload = transform()                                    # round 1: no residual yet
    if codec.error_feedback:
        residual = codec.residuals[0]                        # what round 1 left: the steady state's input

        def encode():
            codec.residuals[0] = residual
            return transform()
    else:
        encode = transform
    arrays, size = payload.wire_arrays(), payload.size

    def decode():
        return np.asarray(Encoded(codec, size, arrays))

    return encode, decode, payload


def parse(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", type=int, default=DEFAULT_THREADS,
                    help="BLAS threads (default 1; 0: the library's default)")
    ap.add_argument("--repeats", type=int, default=5, help="timed passes per d (default 5)")
    ap.add_argument("--dims", type=int, nargs="+", default=list(DIMS), help="update lengths d (10000 1000000)")
    ap.add_argument("--min-sample", type=float, default=0.2, help="seconds one sample lasts at least (0.2)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--quick", action="store_true", help="d = 1,000, 10,000; 3 passes, 0.02 s samples (a smoke test)")
    args = ap.parse_args(argv)
    if args.quick:
        args.dims, args.repeats, args.min_sample = [1_000, 10_000], 3, 0.02
    args.dims = sorted(args.dims)
    if args.threads is not None and args.threads <= 0:
        args.threads = None
    return args


def mbps(d: int, seconds: float) -> str:
    return f"{8 * d / seconds / 1e6:,.0f}"


def main(argv=None) -> None:
    args = parse(argv)
    started = time.perf_counter()
    print("## Compression codecs: encode and decode throughput\n")
    print("\n".join(machine_lines(args.threads, PINNED_BEFORE_NUMPY)))
    print(f"- One update of d float64 coordinates, i.i.d. N(0, 1), seed {args.seed}; values sent in float32. "
          f"{args.repeats} passes per d, order rotated; seconds: median per call over the passes; "
          "x cast: median (min-max) over the passes of row / float32 cast in the same pass. MB/s: MB (10^6 bytes) of "
          "dense float64 input (8 d bytes) per second. Sent / dense: `payload.nbytes` / 8 d.")
    print(flush=True)

    tables = []
    for d in args.dims:
        update = np.random.default_rng([args.seed, d]).standard_normal(d)
        encode, decode, payloads = {}, {}, {}
        cast = update.astype(np.float32)
        encode[CAST] = lambda update=update: update.astype(np.float32)
        decode[CAST] = lambda cast=cast: cast.astype(np.float64)
        payloads[CAST] = cast.nbytes
        for name, codec in codecs().items():
            encode[name], decode[name], payload = transform_calls(codec, update, args.seed)
            payloads[name] = payload.nbytes
            if not np.all(np.isfinite(np.asarray(payload))):
                raise SystemExit(f"{name} at d = {d:,} decoded to non-finite values")
        calls = {("encode", k): f for k, f in encode.items()} | {("decode", k): f for k, f in decode.items()}
        print(f"d = {d:,}: warming up and calibrating", file=sys.stderr, flush=True)
        times = time_passes(calls, args.repeats, args.min_sample, label=f"d = {d:,}: ")
        tables.append((d, times, payloads))

    for d, times, payloads in tables:
        print(f"### d = {d:,} ({8 * d / 1e6:g} MB dense float64)\n")
        print("| codec | encode s per call | encode MB/s | encode x cast | decode s per call | decode MB/s "
              "| decode x cast | bytes sent | sent / dense |")
        print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
        for name in payloads:
            cells = [name]
            for step in ("encode", "decode"):
                seconds = statistics.median(times[step, name])
                cells += [f"{seconds:.3g}", mbps(d, seconds), spread(ratios(times, (step, name), (step, CAST)))]
            cells += [f"{payloads[name]:,}", f"{payloads[name] / (8 * d):.4f}"]
            print("| " + " | ".join(cells) + " |")
        print()
    print(f"Index dtype: {', '.join(f'{compression.index_dtype(d)} at d = {d:,}' for d in args.dims)}.\n")
    print(f"({time.perf_counter() - started:.0f} s; {load_average()} at the end)")


if __name__ == "__main__":
    main()
