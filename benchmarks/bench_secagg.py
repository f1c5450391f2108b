"""What does secure aggregation cost? Client and server time, and bytes per party (issue 10).

``fl_helpers.secagg`` (Bonawitz et al. 2017, the honest-but-curious protocol, all
parties simulated in one process), N parties, d coordinates, inputs uniform in
(-1, 1), the module's defaults: 16 fractional bits, k = 64 bits per coordinate
(``modulus_bits``), threshold t = floor(N/2) + 1.

Time. ``secagg.aggregate`` runs everything in one call, but each party is a
``secagg._Client`` with one method per round, so this script drives the same calls in
the same order as ``aggregate`` (``run_protocol`` below) and times each party's
calls apart from the server's work:

    client  party u's own calls: advertise_keys (round 0), share_keys (round 1),
            masked_input (round 2), unmask (round 3); median (and max) over the parties
    server  everything else: relaying the messages (dictionary updates), then summing
            the masked vectors, Shamir-reconstructing one seed or key per party and
            removing the self masks (and a dropped party's pairwise masks)

The driver's sum is checked to equal ``aggregate``'s bit for bit (same seed), and the
whole ``aggregate`` call is timed once too. Each row is run ``--repeats`` times (3):
client time is the median over the parties within a run, then the median over the
runs (max: the slowest party of any run); server time: median and range over the runs.

A full run costs about N^2 key agreements, N^2 d PRG outputs (every pair's mask),
N Shamir sharings of N shares (N^3 multiplications in the 521-bit field, in Python, spread
over the parties) and N reconstructions from N shares (the Lagrange weights once, N^2, then
one N-term sum per party): a row whose estimated cost (calibrated at start-up)
exceeds ``--max-seconds`` is not run in full ("skipped (estimated X s)"). Such rows
(N = 1,000) are measured on a few parties instead ("sampled"): all N parties
advertise their keys; the sampled parties run rounds 1-3 for real against the N - 1
others, whose ciphertexts to them are built with the same key agreement and AEAD
(right key, right length, zero plaintext: the peers' Shamir sharing, 0.2 s each at
N = 1,000, is skipped). The server's summation and self-mask removal are timed in
full (N vectors, N PRG expansions); of its N reconstructions, the first (which computes
the Lagrange weights) is timed, and the others on a few, multiplied by N - 1. A sampled
row at N = 100 is checked against the full run.

Bytes per party, counted from the transcript of the full runs (what the server saw
or relayed: the ``secagg.Transcript`` the driver fills as ``aggregate`` does) and from
the protocol's definition otherwise (the two are checked equal): round 0 two X25519
public keys sent (2 x 32 bytes) and the
N - 1 others' received; round 1 one ChaCha20-Poly1305 ciphertext per party (its two
66-byte shares of b_u and s_u^SK, over the field 2^521 - 1, plus a 16-byte tag:
148 bytes) sent and one received from every party; round 2 the masked vector,
ceil(d k / 8) bytes; round 3 one 66-byte share per party. Party indices, nonces and
the list of survivors are not counted (the paper does not count them either).
Expansion factor: bytes a party sends / bytes of its vector sent in the clear at the
same bit width (d k / 8); the paper counts sent + received, so both are printed.

The paper's 1.73x (N = 2^10, d = 2^20, 16-bit inputs) is computed, not run: its
per-user total transfer 2N a_K + (5N - 4) a_S + d R bits (a_K = a_S = 256 bits, the
masked vector at R = 16 + log2 N = 26 bits) over the clear 16 d bits; next to it
this protocol's counts at k = 64 and at the minimal k = 26.

Usage:
    python benchmarks/bench_secagg.py [--quick] [--repeats 3] [--max-seconds 30]
Prints Markdown on stdout; progress goes to stderr.
"""

from __future__ import annotations

import argparse
import gc
import math
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench_engines import cpu_model  # noqa: E402  (the same machine header as the other benchmarks)

from fl_helpers import secagg

SIZES = (10, 100, 1_000)
DIMS = (1_000, 10_000, 100_000)
DROP_SHARE = 0.1                 # the dropout rows: 10 % of the parties drop before input
DROP_AT = 10_000                 # ... at this d
SCALE_BITS, MODULUS_BITS = 16, 64
KEY_BYTES = 32                                   # an X25519 public key
SHARE_BYTES = secagg._SHARE_BYTES                # 66: one element of the field 2^521 - 1
TAG_BYTES = 16                                   # Poly1305
CIPHERTEXT_BYTES = 2 * SHARE_BYTES + TAG_BYTES   # round 1: shares of b_u and s_u^SK, encrypted
PAPER = {"n": 2**10, "d": 2**20, "input_bits": 16, "a_k": 256, "a_s": 256, "factor": 1.73}


def threshold_for(n: int) -> int:
    return n // 2 + 1


# --- the machine -----------------------------------------------------------------------------

def machine_lines() -> list[str]:
    import cryptography
    try:
        from cryptography.hazmat.backends.openssl import backend
        openssl = backend.openssl_version_text()
    except (ImportError, AttributeError):
        openssl = "OpenSSL version unknown"
    load = ", load average {:.2f} {:.2f} {:.2f}".format(*os.getloadavg()) if hasattr(os, "getloadavg") else ""
    line = (f"- CPU: {cpu_model()}, {os.cpu_count()} logical cores{load}; Python {platform.python_version()}, "
            f"numpy {np.__version__}, cryptography {cryptography.__version__} ({openssl}); one process, "
            "one thread (every party and the server in turn)")
    return [line]


# --- the protocol, timed party by party ------------------------------------------------------

def run_protocol(x: np.ndarray, *, threshold: int, drops: dict, seed: int) -> dict:
    """``secagg.aggregate``'s steps, the same calls in the same order, each party's calls timed apart.

    Returns the per-party round times (N x 4), the server's seconds (relaying, summing,
    reconstructing) and the transcript and sum, for the checks and the byte counts.
    """
    n, d = x.shape
    k = MODULUS_BITS
    encoded = secagg.encode(x, scale_bits=SCALE_BITS, modulus_bits=k, n_parties=n)
    clients = {u: secagg._Client(u, encoded[u], np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(u,))),
                                 threshold=threshold, modulus_bits=k) for u in range(n)}
    rounds = np.zeros((n, 4))
    seen = secagg.Transcript()
    clock = time.perf_counter
    start = clock()

    for u, c in clients.items():                                    # round 0: AdvertiseKeys
        t = clock()
        keys = c.advertise_keys()
        rounds[u, 0] = clock() - t
        seen.public_keys[u] = keys
    for u, c in clients.items():                                    # round 1: ShareKeys
        t = clock()
        out = c.share_keys(seen.public_keys)
        rounds[u, 1] = clock() - t
        seen.ciphertexts.update(out)
    for u, c in clients.items():                                    # round 2: MaskedInputCollection
        if drops.get(u) == "before_input":
            continue
        t = clock()
        y = c.masked_input(seen.ciphertexts)
        rounds[u, 2] = clock() - t
        seen.masked[u] = y
    survivors = tuple(sorted(seen.masked))
    replies = {}
    for v, c in clients.items():                                    # round 3: Unmasking
        if v in seen.masked and drops.get(v) is None:
            t = clock()
            replies[v] = c.unmask(survivors)
            rounds[v, 3] = clock() - t
    seen.responders = tuple(sorted(replies))
    for v, reply in replies.items():
        for u, share in reply["self_mask"].items():
            seen.self_mask_shares.setdefault(u, {})[v] = share
        for u, share in reply["mask_key"].items():
            seen.mask_key_shares.setdefault(u, {})[v] = share

    reconstruct = 0.0
    total = np.zeros(d, dtype=np.uint64)
    for y in seen.masked.values():
        total = total + y
    for u, shares in seen.self_mask_shares.items():
        t = clock()
        b_u = secagg.shamir_reconstruct(shares.values()).to_bytes(KEY_BYTES, "big")
        reconstruct += clock() - t
        seen.self_mask_seeds[u] = b_u
        total = total - secagg.prg(b_u, d, modulus_bits=k)
    for u, shares in seen.mask_key_shares.items():
        t = clock()
        s_sk = secagg.shamir_reconstruct(shares.values()).to_bytes(KEY_BYTES, "big")
        reconstruct += clock() - t
        seen.mask_keys[u] = s_sk
        survivor_keys = {v: seen.public_keys[v][1] for v in survivors}
        total = total + secagg.pairwise_mask(u, secagg.private_key(s_sk), survivor_keys, d, modulus_bits=k)
    total = total & np.uint64((1 << k) - 1)
    end = clock()
    server = (end - start) - rounds.sum()
    return {"rounds": rounds, "server": server, "reconstruct": reconstruct, "transcript": seen,
            "survivors": survivors, "sum": secagg.decode(total, scale_bits=SCALE_BITS, modulus_bits=k)}


def run_sampled(n: int, d: int, *, seed: int, reconstructions: int = 3) -> dict:
    """One party's rounds at N parties, measured on three (0, N // 2, N - 1); the server's work in parts.

    All N parties advertise keys. Each sampled party v runs share_keys, masked_input and
    unmask for real; the others' ciphertexts to v are sealed with the real key agreement
    (their c_u and v's c^PK) over a zero plaintext of the real length, which v opens in
    round 3 as it would the real ones. Server: the sum of N masked vectors and N self-mask
    expansions timed in full; N reconstructions from N shares timed on ``reconstructions``
    and multiplied by N; relaying (dictionary updates) not counted.
    """
    k = MODULUS_BITS
    threshold = threshold_for(n)
    rng = np.random.default_rng(seed)
    picked = sorted({0, n // 2, n - 1})
    zeros = np.zeros(d, dtype=np.uint64)
    rows = {v: secagg.encode(rng.uniform(-1, 1, d), scale_bits=SCALE_BITS, modulus_bits=k, n_parties=n)
            for v in picked}
    clients = {u: secagg._Client(u, rows.get(u, zeros),
                                 np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(u,))),
                                 threshold=threshold, modulus_bits=k) for u in range(n)}
    clock = time.perf_counter
    rounds = np.zeros((len(picked), 4))
    public_keys = {}
    for u, c in clients.items():
        t = clock()
        public_keys[u] = c.advertise_keys()
        if u in rows:
            rounds[picked.index(u), 0] = clock() - t
    masked = []
    everyone = tuple(range(n))
    for i, v in enumerate(picked):
        c = clients[v]
        t = clock()
        own = c.share_keys(public_keys)
        rounds[i, 1] = clock() - t
        inbox = {(u, v): secagg._seal(secagg.agree(clients[u].c_sk, public_keys[v][0], purpose=b"share encryption"),
                                      u, v, bytes(2 * SHARE_BYTES)) for u in range(n) if u != v}
        inbox[v, v] = own[v, v]
        assert all(len(cipher) == CIPHERTEXT_BYTES for cipher in inbox.values())
        t = clock()
        masked.append(c.masked_input(inbox))
        rounds[i, 2] = clock() - t
        t = clock()
        c.unmask(everyone)
        rounds[i, 3] = clock() - t
        del c.inbox, inbox

    t = clock()                                                     # server: sum N masked vectors
    total = np.zeros(d, dtype=np.uint64)
    for u in range(n):
        total = total + masked[u % len(masked)]
    summing = clock() - t
    seeds = [rng.bytes(KEY_BYTES) for _ in range(n)]
    t = clock()                                                     # ... remove N self masks
    for b in seeds:
        total = total - secagg.prg(b, d, modulus_bits=k)
    self_masks = clock() - t
    shares = secagg.shamir_share(int.from_bytes(seeds[0], "big"), threshold=threshold, n_shares=n, rng=rng)
    secagg.lagrange_at_zero.cache_clear()                           # ... N reconstructions from the same x's:
    t = clock()                                                     # the first computes the Lagrange weights,
    assert secagg.shamir_reconstruct(shares).to_bytes(KEY_BYTES, "big") == seeds[0]
    first = clock() - t
    t = clock()                                                     # the others reuse them (timed on a few)
    for _ in range(reconstructions):
        assert secagg.shamir_reconstruct(shares).to_bytes(KEY_BYTES, "big") == seeds[0]
    reconstruct = first + (clock() - t) / reconstructions * (n - 1)
    return {"rounds": rounds, "server": summing + self_masks + reconstruct, "reconstruct": reconstruct,
            "picked": picked}


# --- cost model: which full runs fit -----------------------------------------------------------

def calibrate(dims) -> dict:
    """Seconds per unit of the protocol's costly operations, measured now (about a second)."""
    rng = np.random.default_rng(1)
    clock = time.perf_counter
    key = secagg.private_key(rng.bytes(32))
    peers = [secagg.private_key(rng.bytes(32)).public_key().public_bytes_raw() for _ in range(100)]
    t = clock()
    for p in peers:
        secagg._seal(secagg.agree(key, p, purpose=b"share encryption"), 0, 1, bytes(2 * SHARE_BYTES))
    agree = (clock() - t) / len(peers)
    term = {}                                   # one pairwise mask (key agreement, PRG, add) at each d
    for d in dims:
        mask_keys = dict(enumerate(peers[:8], start=1))
        secagg.pairwise_mask(0, key, mask_keys, d, modulus_bits=MODULUS_BITS)
        times = []
        for _ in range(3):
            t = clock()
            secagg.pairwise_mask(0, key, mask_keys, d, modulus_bits=MODULUS_BITS)
            times.append((clock() - t) / len(mask_keys))
        term[d] = min(times)
    n = 200
    t = clock()
    shares = secagg.shamir_share(12345, threshold=threshold_for(n), n_shares=n, rng=rng)
    share = (clock() - t) / (n * threshold_for(n))
    secagg.lagrange_at_zero.cache_clear()
    t = clock()
    secagg.shamir_reconstruct(shares)                # the Lagrange weights (once per set of responders) ...
    weights = (clock() - t) / n**2
    t = clock()
    secagg.shamir_reconstruct(shares)                # ... then one sum per secret
    reconstruct = (clock() - t) / n
    return {"agree": agree, "term": term, "share": share, "weights": weights, "reconstruct": reconstruct}


def estimate(cal: dict, n: int, d: int, dropped: int = 0) -> float:
    """Seconds of one full run (the driver) at N = n, dimension d."""
    t = threshold_for(n)
    clients = n * (2 * cal["share"] * n * t + 2 * n * cal["agree"] + n * cal["term"][d])
    server = cal["weights"] * n**2 + n * cal["reconstruct"] * n + (n + dropped * (n - dropped)) * cal["term"][d]
    return clients + server


# --- bytes -------------------------------------------------------------------------------------

def bytes_defined(n: int, d: int, k: int = MODULUS_BITS) -> dict:
    """Bytes party u sends and receives per round, from the protocol's definition (no dropouts)."""
    return {"sent": [2 * KEY_BYTES, n * CIPHERTEXT_BYTES, math.ceil(d * k / 8), n * SHARE_BYTES],
                "received": [2 * KEY_BYTES * (n - 1), n * CIPHERTEXT_BYTES, 0, 0]}


def bytes_seen(seen: secagg.Transcript, u: int, k: int = MODULUS_BITS) -> dict:
    """Bytes party u sent and received per round, counted from the server's transcript."""
    r0_sent = sum(len(key) for key in seen.public_keys[u])
    r0_recv = sum(len(key) for v, keys in seen.public_keys.items() if v != u for key in keys)
    r1_sent = sum(len(c) for (a, _), c in seen.ciphertexts.items() if a == u)
    r1_recv = sum(len(c) for (_, b), c in seen.ciphertexts.items() if b == u)
    r2_sent = math.ceil(seen.masked[u].size * k / 8) if u in seen.masked else 0
    shares = sum(u in by_sender for table in (seen.self_mask_shares, seen.mask_key_shares)
                 for by_sender in table.values())
    for table in (seen.self_mask_shares, seen.mask_key_shares):        # every share is a field element
        assert all(0 <= y < secagg.PRIME for by_sender in table.values() for _, y in by_sender.values())
    return {"sent": [r0_sent, r1_sent, r2_sent, shares * SHARE_BYTES], "received": [r0_recv, r1_recv, 0, 0]}


def paper_factor(n: int, d: int, input_bits: int, a_k: int, a_s: int) -> float:
    """The paper's per-user total transfer 2n a_K + (5n - 4) a_S + d R bits, R = input bits + log2 n, over 16 d."""
    r = input_bits + math.ceil(math.log2(n))
    return (2 * n * a_k + (5 * n - 4) * a_s + d * r) / (d * input_bits)


def summary(rounds: list, outs: list) -> dict:
    """Per-repeat round times (parties x 4) to the table's cells: medians over the parties, then the repeats."""
    per_run = [statistics.median(r.sum(axis=1)) for r in rounds]
    return {"client": statistics.median(per_run), "client_max": float(max(r.sum(axis=1).max() for r in rounds)),
            "rounds": np.median(np.stack([np.median(r, axis=0) for r in rounds]), axis=0),
            "server": [o["server"] for o in outs], "reconstruct": [o["reconstruct"] for o in outs]}


def secs(seconds: float) -> str:
    return f"{seconds:.2g}" if seconds < 10 else f"{seconds:,.0f}"


def size(nbytes: float) -> str:
    for unit, scale in (("MiB", 2**20), ("KiB", 2**10)):
        if nbytes >= scale:
            return f"{nbytes / scale:,.1f} {unit}"
    return f"{nbytes:,.0f} B"


def pair(b: dict, i: int) -> str:
    return f"{size(b['sent'][i])} / {size(b['received'][i])}" if b["received"][i] else size(b["sent"][i])


# --- main --------------------------------------------------------------------------------------

def parse(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", type=int, nargs="+", default=list(SIZES), help="numbers of parties N")
    ap.add_argument("--dims", type=int, nargs="+", default=list(DIMS), help="dimensions d")
    ap.add_argument("--max-seconds", type=float, default=30.0,
                    help="a full run estimated longer than this is skipped (sampled instead); default 30")
    ap.add_argument("--quick", action="store_true", help="N = 10, 30; d = 100, 1,000 (a smoke test)")
    ap.add_argument("--repeats", type=int, default=3, help="runs per row (default 3)")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    if args.quick:
        args.sizes, args.dims = [10, 30], [100, 1_000]
    args.drop_at = min(args.dims, key=lambda d: abs(d - DROP_AT))
    return args


def main(argv=None) -> None:
    args = parse(argv)
    started = time.perf_counter()
    cal = calibrate(args.dims)
    print("## Secure aggregation benchmark\n")
    print("\n".join(machine_lines()))
    print(f"- `fl_helpers.secagg`, N parties, d coordinates, inputs uniform in (-1, 1), scale_bits = {SCALE_BITS}, "
          f"modulus_bits k = {MODULUS_BITS}, threshold t = floor(N/2) + 1, seed {args.seed}. Rounds: 0 "
          "AdvertiseKeys, 1 ShareKeys, 2 MaskedInputCollection, 3 Unmasking.")
    print("- Client: one party's own calls (`_Client.advertise_keys`, `share_keys`, `masked_input`, `unmask`), "
          "median over the parties (max in brackets). Server: the rest of the protocol (relaying, summing, "
          "Shamir reconstruction, removing masks); reconstruction alone in its own column. "
          "`aggregate()`: the whole call, timed separately.")
    terms = ", ".join(f"{cal['term'][d] * 1e3:.2g} ms at d = {d:,}" for d in sorted(cal["term"]))
    print(f"- Cost model (measured at start-up): key agreement + AEAD {cal['agree'] * 1e6:.0f} us; one pairwise "
          f"mask (agreement, PRG, add) {terms}; Shamir sharing "
          f"{cal['share'] * 1e9:.0f} ns per share per coefficient, reconstruction {cal['reconstruct'] * 1e9:.0f} ns "
          f"per share squared; full runs estimated over {args.max_seconds:g} s are skipped and sampled instead.")
    print(flush=True)

    run_protocol(np.zeros((4, 100)), threshold=3, drops={}, seed=args.seed)     # warm-up: imports, first calls
    rows, byte_rows, checks = [], [], []
    configs = [(n, d, 0) for n in sorted(args.sizes) for d in sorted(args.dims)]
    for n in sorted(args.sizes):
        dropped = round(DROP_SHARE * n)
        if dropped:
            configs.insert(configs.index((n, args.drop_at, 0)) + 1, (n, args.drop_at, dropped))
    for n, d, dropped in configs:
        est = estimate(cal, n, d, dropped)
        row = {"n": n, "d": d, "dropped": dropped, "est": est}
        if est <= args.max_seconds:
            rng = np.random.default_rng(args.seed)
            x = rng.uniform(-1, 1, (n, d))
            drops = {int(u): "before_input" for u in rng.choice(n, dropped, replace=False)}
            outs = []
            for _ in range(args.repeats):
                gc.collect()
                outs.append(run_protocol(x, threshold=threshold_for(n), drops=drops, seed=args.seed))
            gc.collect()
            t = time.perf_counter()
            ref = secagg.aggregate(x, threshold=threshold_for(n), dropped=drops, seed=args.seed)
            row["aggregate"] = time.perf_counter() - t
            exact = all(np.array_equal(o["sum"], ref.sum) and o["survivors"] == ref.survivors for o in outs)
            error = float(np.max(np.abs(ref.sum - x[list(ref.survivors)].sum(axis=0))))
            checks.append((n, d, dropped, exact, error))
            live = [u for u in range(n) if u not in drops]
            row.update(how="full run", **summary([o["rounds"][live] for o in outs], outs))
            seen = bytes_seen(outs[-1]["transcript"], live[0])
            if not dropped:
                assert seen == bytes_defined(n, d), (seen, bytes_defined(n, d))
            byte_rows.append(dict(n=n, d=d, dropped=dropped, source="transcript", **seen))
            del outs, ref, x
        elif dropped:
            row["how"] = f"skipped (estimated {secs(est)} s)"
        else:
            outs = []
            for _ in range(args.repeats):
                gc.collect()
                outs.append(run_sampled(n, d, seed=args.seed))
            row.update(how=f"sampled: parties {', '.join(map(str, outs[0]['picked']))}; server reconstruction x N",
                       **summary([o["rounds"] for o in outs], outs))
            row["aggregate_est"] = n * row["client"] + statistics.median(row["server"])
            byte_rows.append(dict(n=n, d=d, dropped=0, source="definition", **bytes_defined(n, d)))
        rows.append(row)
        print(f"N = {n:,}, d = {d:,}, dropped {dropped}: {row['how']}"
              + (f", client {row['client']:.3g} s, server {statistics.median(row['server']):.3g} s"
                 if "client" in row else ""), file=sys.stderr, flush=True)

    # a sampled row where the full run exists: does sampling reproduce it?
    validation = None
    full = [r for r in rows if r["how"] == "full run" and not r["dropped"]]
    if full:
        ref_row = max(full, key=lambda r: (r["n"], -abs(r["d"] - DROP_AT)))
        outs = []
        for _ in range(args.repeats):
            gc.collect()
            outs.append(run_sampled(ref_row["n"], ref_row["d"], seed=args.seed))
        validation = (ref_row, summary([o["rounds"] for o in outs], outs))

    print(f"### Time (seconds; client and server: {args.repeats} runs per row)\n")
    print("| N | d | dropped before input | measured | client s per party: median (max) | round 0 | round 1 "
          "| round 2 | round 3 | server s: median (min-max) | Shamir reconstruction | rest of the server "
          "| aggregate() s | aggregate() / N |")
    print("|---:|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        head = f"| {r['n']:,} | {r['d']:,} | {r['dropped']} | {r['how']} |"
        if "client" not in r:
            print(head + " |" * 10)
            continue
        rounds = " | ".join(f"{s:.2g}" for s in r["rounds"])
        server, reconstruct = r["server"], r["reconstruct"]
        rest = statistics.median(s - c for s, c in zip(server, reconstruct, strict=True))
        if "aggregate" in r:
            whole = f"{r['aggregate']:.3g} | {r['aggregate'] / r['n']:.2g}"
        else:
            whole = f"skipped (estimated {secs(r['est'])} s; {secs(r['aggregate_est'])} s from this row) | -"
        print(f"{head} {r['client']:.3g} ({r['client_max']:.3g}) | {rounds} | {statistics.median(server):.3g} "
              f"({min(server):.3g}-{max(server):.3g}) | {statistics.median(reconstruct):.3g} | {rest:.2g} | {whole} |")
    if checks:
        worst = max(c[4] for c in checks)
        print(f"\nChecks: the driver's sum equals `aggregate()`'s bit for bit (same seed, same survivors) in "
              f"{sum(c[3] for c in checks)} of {len(checks)} full runs; it is within {worst:.2g} of the survivors' "
              f"float sum (encoding: N 2^-{SCALE_BITS + 1} at most).")
    if validation:
        r, v = validation
        print(f"Sampling checked at N = {r['n']:,}, d = {r['d']:,}: client {v['client']:.3g} s per party, server "
              f"{statistics.median(v['server']):.3g} s (sampled, medians of {args.repeats}) against "
              f"{r['client']:.3g} s and {statistics.median(r['server']):.3g} s (full runs).")

    print(f"\n### Bytes per party (no dropouts unless stated; k = {MODULUS_BITS} bits per coordinate)\n")
    print("Sent / received per round; round 2 and 3 messages are only sent. Clear: the same d coordinates at "
          f"k = {MODULUS_BITS} bits, d k / 8 bytes.\n")
    print("| N | d | dropped | round 0 keys | round 1 encrypted shares | round 2 masked vector | round 3 shares "
          "| sent | received | clear | sent / clear | (sent + received) / clear | counted from |")
    print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|")
    for b in byte_rows:
        sent, received, clear = sum(b["sent"]), sum(b["received"]), b["d"] * MODULUS_BITS / 8
        print(f"| {b['n']:,} | {b['d']:,} | {b['dropped']} | " + " | ".join(pair(b, i) for i in range(4))
              + f" | {size(sent)} | {size(received)} | {size(clear)} | {sent / clear:.3g} | "
              f"{(sent + received) / clear:.3g} | {b['source']}"
              + (" (a surviving party)" if b["dropped"] else "") + " |")

    n, d, bits = PAPER["n"], PAPER["d"], PAPER["input_bits"]
    k_min = bits + math.ceil(math.log2(n))
    clear = d * bits / 8
    print(f"\n### Against the paper: N = 2^{int(math.log2(n))}, d = 2^{int(math.log2(d))}, {bits}-bit inputs "
          "(computed, not run)\n")
    print(f"Clear: {size(clear)} per party ({bits} bits per coordinate). The paper (Bonawitz et al. 2017, "
          "Section 7.1) counts per user 2N a_K + (5N - 4) a_S + d R bits, sent plus received.\n")
    print("| protocol | bits per coordinate | per-party overhead (keys, shares) sent / received | masked vector "
          "| sent / clear | (sent + received) / clear |")
    print("|---|---:|---:|---:|---:|---:|")
    for label, k in ((f"fl_helpers.secagg, modulus_bits = {MODULUS_BITS} (default)", MODULUS_BITS),
                     (f"fl_helpers.secagg, modulus_bits = {k_min} (minimal: {bits} + log2 N)", k_min)):
        b = bytes_defined(n, d, k)
        sent, received = sum(b["sent"]), sum(b["received"])
        print(f"| {label} | {k} | {size(sent - b['sent'][2])} / {size(received)} | {size(b['sent'][2])} "
              f"| {sent / clear:.3g} | {(sent + received) / clear:.3g} |")
    ours = paper_factor(n, d, bits, PAPER["a_k"], PAPER["a_s"])
    overhead_bits = 2 * n * PAPER["a_k"] + (5 * n - 4) * PAPER["a_s"]
    print(f"| the paper's count: a_K = a_S = {PAPER['a_k']} bits, R = {k_min} | {k_min} | {size(overhead_bits / 8)} "
          f"(sent + received) | {size(d * k_min / 8)} | - | {ours:.3g} (paper: {PAPER['factor']}x) |")
    print(f"\nThe same count gives {paper_factor(2**14, 2**24, 16, 256, 256):.3g}x for 2^14 users and 2^24 "
          "dimensions (the paper's second example: 1.98x).")
    print(f"\n({time.perf_counter() - started:.0f} s)")


if __name__ == "__main__":
    main()
