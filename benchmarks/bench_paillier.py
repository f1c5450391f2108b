"""What does Paillier encryption cost, and what does one round of ``vertical.fit_linear`` cost?

Issue 12. ``phe`` (python-paillier), which does its big-integer arithmetic with ``gmpy2`` when that is
installed (a dependency of the course; pure Python otherwise, several times slower); the header says
which. Two parts:

1. Primitives, at ``--key-bits`` 1024, 2048 and 3072, encoded as ``fl_helpers.vertical``
   encodes them (``EncodedNumber.encode(pk, x, max_exponent=vertical.EXPONENT)``):

       key generation        paillier.generate_paillier_keypair(n_length=bits); ``--keygen-repeats``
                             calls (3 per key size; without gmpy2 a 3072-bit key can take a minute)
       encryption            pk.encrypt_encoded(encoding, None): fresh randomness r^n mod n^2, as
                             fit_linear encrypts; values uniform in [-10, 10)
       decryption            sk.decrypt(c) (CRT), the ciphertexts just made
       ct + ct addition      c_i + c_j, both at the fixed exponent (one multiplication mod n^2)
       ct x pt product       c_i * x_j, x_j a float64 uniform in [0, 10) encoded by ``phe``'s default
                             (53-bit mantissa), as fit_linear multiplies [[d]] by the features
       ciphertext size       bytes of an element of Z_{n^2}, as fit_linear counts them (n: key bits / 8)

   Each operation is timed over a batch of N distinct operands (N per key size and operation, in
   the table); ``--repeats`` passes (3), the median (min-max) over the passes of operations per
   second. The yardstick: a float64 numpy multiply-add ``np.add(np.multiply(a, b, out=o), c, out=o)``
   on arrays of the same count N, timed in the same pass (repeated for at least 0.02 s); the ratio
   is the median over the passes of (seconds per Paillier operation) / (seconds per numpy element).
   At these small N numpy's per-call overhead dominates its time, so the ratio is what one
   encrypted element costs against one element of the plaintext code that would do the same work.

2. ``vertical.fit_linear`` on synthetic data (X standard normal, y = X w + noise), the d features
   split over 2 parties (d // 2 each), ``--rounds`` rounds (1), at 1024 and 2048-bit keys for
   m in (100, 400) x d in (4, 16), and at 3072 bits for m = 100, d = 4. One call per setting.
   The call is instrumented by wrapping, for its duration only: ``phe``'s key generation (timed and
   subtracted), ``vertical._encrypted_residual`` (the last one, which only measures the final loss, is
   subtracted), ``EncryptedNumber.obfuscate`` (one per fresh encryption), ``EncryptedNumber.__mul__``
   (ct x pt products; less the alignments, which ``phe`` makes as products),
   ``EncryptedNumber.decrease_exponent_to`` (exponent alignments before an addition, one ciphertext
   power each) and ``PaillierPrivateKey.raw_decrypt``. So "seconds per round" is the call's wall time
   less key generation and the final loss pass (its one decryption, a few ms, stays in), over the
   rounds; the counts are per round likewise (the final loss decryption taken off).
   Ciphertexts and bytes per round are the History's (``metrics["ciphertexts"]``, ``bytes_up``,
   ``bytes_down``). Predicted by the code per round: m + 1 fresh encryptions (party 1 encrypts its m
   partial scores and their sum of squares: proportional to m) and m (d + 4) + d + 2 products (X^T d
   with the intercept column, party 0's cross term, the negations [[-d]]: proportional to m d for
   large d); the scaling table divides m = 400 by m = 100 and d = 16 by d = 4.

Usage:
    python benchmarks/bench_paillier.py [--threads 1] [--repeats 3] [--rounds 1] [--quick]
``--threads N`` (default 1; 0: leave BLAS at its default) pins BLAS before numpy is imported.
``--quick``: 1024-bit keys only (``vertical.MIN_KEY_BITS``), 2 passes, fit_linear at m in (50, 100),
d in (2, 4) (a smoke test, seconds). Prints Markdown on stdout; progress goes to stderr. Wall clock
(``time.perf_counter``), the garbage collector off during a timed batch.
"""

from __future__ import annotations

import argparse
import sys

from pinning import pin_from_argv

DEFAULT_THREADS = 1

#: The --threads value whose variables were set before numpy was imported (when run as a script).
PINNED_BEFORE_NUMPY = pin_from_argv(default=DEFAULT_THREADS) if __name__ == "__main__" else None  # before numpy

import contextlib  # noqa: E402
import gc  # noqa: E402
import statistics  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench_robust import load_average, machine_lines, spread  # noqa: E402  (the same machine header)

from fl_helpers import vertical  # noqa: E402

KEY_BITS = (1024, 2048, 3072)
KEYGEN_REPEATS = {1024: 3, 2048: 3, 3072: 3}
#: Batch sizes N per key size: (encryptions, decryptions, additions, products).
BATCH = {1024: (200, 200, 5000, 2000), 2048: (60, 60, 3000, 600), 3072: (24, 24, 2000, 300)}
FIT_SETTINGS = [(bits, m, d) for bits in (1024, 2048) for m in (100, 400) for d in (4, 16)] + [(3072, 100, 4)]
QUICK_FIT = [(1024, 50, 2), (1024, 50, 4), (1024, 100, 2), (1024, 100, 4)]


def gmpy2_status() -> str:
    try:
        import gmpy2
    except ImportError:
        return "gmpy2 not installed (pure-Python big integers)"
    return f"gmpy2 {gmpy2.version()}"


def timed(fn) -> float:
    """Seconds for one call of ``fn``, the garbage collector off."""
    gc.collect()
    gc.disable()
    try:
        t = time.perf_counter()
        fn()
        return time.perf_counter() - t
    finally:
        gc.enable()


def numpy_seconds_per_element(count: int, rng, min_sample: float = 0.02) -> float:
    """Seconds per element of a float64 multiply-add on arrays of ``count`` elements."""
    a, b, c = rng.standard_normal((3, count))
    out = np.empty(count)

    def once():
        np.add(np.multiply(a, b, out=out), c, out=out)

    once()
    number = 1
    while True:
        t = timed(lambda: [once() for _ in range(number)])
        if t >= min_sample:
            return t / number / count
        number *= 4


# --- part 1: the primitives -------------------------------------------------------------------------

def bench_primitives(bits: int, keygen_repeats: int, repeats: int, batch, rng) -> dict:
    from phe import EncodedNumber, paillier

    keygen, keys = [], None
    for r in range(keygen_repeats):
        t = time.perf_counter()
        keys = paillier.generate_paillier_keypair(n_length=bits)
        keygen.append(time.perf_counter() - t)
        print(f"{bits} bits: key {r + 1}/{keygen_repeats} in {keygen[-1]:.2f} s", file=sys.stderr, flush=True)
    pk, sk = keys
    n_enc, n_dec, n_add, n_mul = batch
    out = {"keygen": keygen, "ct_bytes": (pk.nsquare.bit_length() + 7) // 8, "pt_bytes": (pk.n.bit_length() + 7) // 8,
           "N": {"encryption": n_enc, "decryption": n_dec, "ct + ct addition": n_add, "ct x pt product": n_mul}}
    ops = {name: [] for name in out["N"]}
    ratio = {name: [] for name in out["N"]}
    for r in range(repeats):
        values = rng.uniform(-10, 10, n_enc)
        encodings = [EncodedNumber.encode(pk, float(v), max_exponent=vertical.EXPONENT) for v in values]
        cts = []
        sec = {"encryption": timed(lambda: cts.extend(pk.encrypt_encoded(e, None) for e in encodings)) / n_enc}
        decrypted = []
        sec["decryption"] = timed(lambda: decrypted.extend(sk.decrypt(c) for c in cts[:n_dec])) / n_dec
        if not np.allclose(decrypted, values[:n_dec], rtol=0, atol=1e-12):
            raise SystemExit(f"{bits} bits: decryption does not give back the encrypted values")
        i, j = rng.integers(0, len(cts), (2, n_add))
        pairs = [(cts[a], cts[b]) for a, b in zip(i, j, strict=True)]
        sec["ct + ct addition"] = timed(lambda: [a + b for a, b in pairs]) / n_add
        xs = [float(x) for x in rng.uniform(0, 10, n_mul)]
        operands = [(cts[k % len(cts)], x) for k, x in enumerate(xs)]
        sec["ct x pt product"] = timed(lambda: [c * x for c, x in operands]) / n_mul
        for name, s in sec.items():
            ops[name].append(1.0 / s)
            ratio[name].append(s / numpy_seconds_per_element(out["N"][name], rng))
        print(f"{bits} bits: pass {r + 1}/{repeats} done", file=sys.stderr, flush=True)
    out["ops"], out["ratio"] = ops, ratio
    return out


# --- part 2: fit_linear -----------------------------------------------------------------------------

@contextlib.contextmanager
def instrumented():
    """Wrap key generation, the residual pass and phe's primitives for the duration; yields the log."""
    from phe import paillier

    log = {"keygen": 0.0, "residual": [], "fresh": 0, "products": 0, "alignments": 0, "decryptions": 0}
    saved = [(paillier, "generate_paillier_keypair"), (vertical, "_encrypted_residual"),
             (paillier.EncryptedNumber, "obfuscate"), (paillier.EncryptedNumber, "__mul__"),
             (paillier.EncryptedNumber, "decrease_exponent_to"),
             (paillier.PaillierPrivateKey, "raw_decrypt")]
    saved = [(owner, name, owner.__dict__[name]) for owner, name in saved]
    keygen, residual, obfuscate, mul, decrease, raw_decrypt = (s[2] for s in saved)

    def counts():
        return np.array([log["fresh"], log["products"], log["alignments"], log["decryptions"]])

    def w_keygen(*a, **k):
        t = time.perf_counter()
        try:
            return keygen(*a, **k)
        finally:
            log["keygen"] += time.perf_counter() - t

    def w_residual(*a, **k):
        t, c = time.perf_counter(), counts()
        result = residual(*a, **k)
        log["residual"].append((time.perf_counter() - t, counts() - c))
        return result

    def w_obfuscate(self, *a, **k):
        log["fresh"] += 1
        return obfuscate(self, *a, **k)

    def w_mul(self, *a, **k):
        log["products"] += 1
        return mul(self, *a, **k)

    def w_decrease(self, *a, **k):
        log["alignments"] += 1
        return decrease(self, *a, **k)

    def w_raw_decrypt(self, *a, **k):
        log["decryptions"] += 1
        return raw_decrypt(self, *a, **k)

    wrappers = (w_keygen, w_residual, w_obfuscate, w_mul, w_decrease, w_raw_decrypt)
    for (owner, name, _), new in zip(saved, wrappers, strict=True):
        setattr(owner, name, new)
    try:
        log["counts"] = counts
        yield log
    finally:
        for owner, name, old in saved:
            setattr(owner, name, old)


def bench_fit(bits: int, m: int, d: int, rounds: int, seed: int) -> dict:
    rng = np.random.default_rng([seed, m, d])
    X = rng.standard_normal((m, d))
    y = X @ rng.standard_normal(d) + 0.1 * rng.standard_normal(m)
    blocks = [X[:, : d // 2], X[:, d // 2:]]
    with instrumented() as log:
        gc.collect()
        t = time.perf_counter()
        fit = vertical.fit_linear(blocks, y, lr=0.05, rounds=rounds, key_bits=bits, seed=seed)
        wall = time.perf_counter() - t
        total = log["counts"]()
    last_time, last_counts = log["residual"][-1]                  # the final pass: the loss only
    total = total - last_counts - np.array([0, 0, 0, 1])              # and the final loss decryption
    total[1] -= total[2]                                               # phe aligns exponents with __mul__
    per_round = total / rounds
    h = fit.history
    return {"wall": wall, "keygen": log["keygen"], "round_s": (wall - log["keygen"] - last_time) / rounds,
            "fresh": per_round[0], "products": per_round[1], "alignments": per_round[2],
            "decryptions": per_round[3],
            "ciphertexts": float(np.mean(h.metrics["ciphertexts"][:rounds])),
            "up": float(np.mean(h.bytes_up[:rounds])), "down": float(np.mean(h.bytes_down[:rounds])),
            "loss": (float(h.losses[0]), float(h.losses[-1]))}


# --- main -------------------------------------------------------------------------------------------

def parse(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", type=int, default=DEFAULT_THREADS,
                    help="BLAS threads (default 1; 0: the library's default)")
    ap.add_argument("--repeats", type=int, default=3, help="timed passes per key size (default 3)")
    ap.add_argument("--key-bits", type=int, nargs="+", default=list(KEY_BITS), help="key sizes (1024 2048 3072)")
    ap.add_argument("--rounds", type=int, default=1, help="fit_linear rounds per setting (default 1)")
    ap.add_argument("--no-fit", action="store_true", help="skip part 2 (fit_linear)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--quick", action="store_true", help="1024 bits, 2 passes, tiny fit_linear (a smoke test)")
    args = ap.parse_args(argv)
    args.fit = FIT_SETTINGS
    if args.quick:
        args.key_bits, args.repeats, args.fit = [1024], 2, QUICK_FIT
    for bits in args.key_bits:
        if bits not in BATCH:
            raise SystemExit(f"--key-bits: choose from {sorted(BATCH)}, got {bits}")
    if args.threads is not None and args.threads <= 0:
        args.threads = None
    return args


def main(argv=None) -> None:
    args = parse(argv)
    started = time.perf_counter()
    rng = np.random.default_rng(args.seed)
    print("## Paillier (phe) cost benchmark\n")
    import phe
    print("\n".join(machine_lines(args.threads, PINNED_BEFORE_NUMPY,
                                  extra=f", phe {phe.__version__}, {gmpy2_status()}")))
    print(f"- {args.repeats} passes per key size; operations per second: median (min-max) over the passes; "
          "ratio: median (min-max) over the passes of (seconds per Paillier operation) / (seconds per element of "
          "a float64 numpy multiply-add on arrays of the same count N), timed in the same pass.")
    print(flush=True)

    prims = {bits: bench_primitives(bits, 1 if args.quick else KEYGEN_REPEATS.get(bits, 1), args.repeats,
                                    BATCH[bits], rng) for bits in args.key_bits}
    print("### Keys and ciphertexts\n")
    print("| key bits | key generation, s | keys timed | ciphertext bytes | plaintext (mod n) bytes |")
    print("|---:|---:|---:|---:|---:|")
    for bits, p in prims.items():
        print(f"| {bits} | {spread(p['keygen'])} | {len(p['keygen'])} | {p['ct_bytes']} | {p['pt_bytes']} |")
    print()
    print("### Operations per second\n")
    print("| key bits | operation | N | operations per second | ms per operation | x numpy multiply-add |")
    print("|---:|---|---:|---:|---:|---:|")
    for bits, p in prims.items():
        for name, values in p["ops"].items():
            print(f"| {bits} | {name} | {p['N'][name]} | {spread(values)} | {1e3 / statistics.median(values):.3g} "
                  f"| {spread(p['ratio'][name])} |")
    print(flush=True)

    if not args.no_fit:
        fits = {}
        for bits, m, d in args.fit:
            print(f"fit_linear: {bits} bits, m = {m}, d = {d}", file=sys.stderr, flush=True)
            fits[(bits, m, d)] = bench_fit(bits, m, d, args.rounds, args.seed)
        print(f"### `vertical.fit_linear`, 2 parties ({args.rounds} round(s) per setting, one call each)\n")
        print("Per round: the call's wall time less key generation and the final loss-only pass, over the rounds. "
              "Counted per round, predicted from the code in brackets: fresh encryptions m + 1; ct x pt products "
              "m (d + 4) + d + 2 (X^T d with the intercept column m (d + 1), party 0's cross term m, the "
              "negations [[-d]] 2m, a zero start per sum d + 2); exponent alignments (`decrease_exponent_to`, "
              "one ciphertext power each); decryptions (1 loss + d + 1 masked gradients).\n")
        print("| key bits | m | d | s per round | key gen, s | whole call, s | fresh encryptions "
              "| ct x pt products | exponent alignments | decryptions | ciphertexts sent | bytes up | bytes down |")
        print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
        for (bits, m, d), f in fits.items():
            print(f"| {bits} | {m} | {d} | {f['round_s']:.3g} | {f['keygen']:.2f} | {f['wall']:.3g} "
                  f"| {f['fresh']:.0f} ({m + 1}) | {f['products']:.0f} ({predicted_products(m, d)}) "
                  f"| {f['alignments']:.0f} | {f['decryptions']:.0f} ({d + 2}) "
                  f"| {f['ciphertexts']:.0f} | {f['up']:,.0f} | {f['down']:,.0f} |")
        print()
        print_scaling(fits)
    print(f"({time.perf_counter() - started:.0f} s; {load_average()} at the end)")


def predicted_products(m: int, d: int) -> int:
    """ct x pt products in one round of fit_linear with 2 parties (see the table's caption)."""
    return m * (d + 4) + d + 2


def print_scaling(fits: dict) -> None:
    """Ratios between settings of the same key size that differ in m alone or in d alone."""
    rows = []
    for (bits, m, d), f in fits.items():
        for (bits2, m2, d2), g in fits.items():
            if bits2 != bits or (m2, d2) == (m, d) or not (m2 >= m and d2 >= d) or (m2 != m and d2 != d):
                continue
            what = f"m {m} -> {m2} (d = {d})" if m2 != m else f"d {d} -> {d2} (m = {m})"
            pred_enc = (m2 + 1) / (m + 1)
            pred_prod = predicted_products(m2, d2) / predicted_products(m, d)
            rows.append(f"| {bits} | {what} | {g['round_s'] / f['round_s']:.2f}x | {g['fresh'] / f['fresh']:.2f}x "
                        f"({pred_enc:.2f}x) | {g['products'] / f['products']:.2f}x ({pred_prod:.2f}x) "
                        f"| {g['up'] / f['up']:.2f}x |")
    if rows:
        print("### Scaling (measured, predicted in brackets)\n")
        print("| key bits | change | s per round | fresh encryptions | ct x pt products | bytes up |")
        print("|---:|---|---:|---:|---:|---:|")
        print("\n".join(rows))
        print()


if __name__ == "__main__":
    main()
