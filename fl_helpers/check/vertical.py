r"""Checkers for the exercises of notebook 13 (vertical federated learning).

Each returns a :class:`~fl_helpers.check.CheckResult` that prints ``PASS ...``
or ``FAIL ... Hint: ...`` and never raises because of the student's code.

:func:`psi_double_blind`
    ``fn(ids_a, ids_b, key_a, key_b) -> (common, a_double)``: Diffie-Hellman private set intersection
    (Meadows 1986; Huberman, Franklin, Hogg 1999) worked by hand. ``a_double[i]`` is
    :math:`H(x_i)^{ab} \bmod p` for A's ``ids_a[i]`` (:math:`H`: :func:`fl_helpers.vertical.hash_to_group`,
    :math:`p`: ``MODP_2048``), ``common`` the IDs of both parties. Compared with ``pow`` written here
    and with Python's set intersection. Diagnosed: a value blinded once, exponents added instead of
    multiplied, the exponent product reduced mod :math:`p` instead of the group order :math:`q`.
:func:`encrypted_dot`
    ``fn(public_key, enc_values, weights) -> [[w^T v]]``: what a party of Yang et al. (2019) computes
    for its gradient :math:`[\![X_k^\top d]\!]`, from ciphertexts and plaintext weights, with the
    public key only. The checker holds the private key (a fresh 1024-bit ``phe`` key pair), decrypts
    the answer and compares with the plaintext dot product. Diagnosed: products not summed, weights
    forgotten, a plaintext (not a ciphertext) returned.
:func:`round_cost`
    ``fn(m, dims, key_bits) -> (ciphertexts, bytes_up, bytes_down)``: the messages of one round of
    :func:`fl_helpers.vertical.fit_linear` with :math:`K` = ``len(dims)`` parties, as its ``History``
    counts them: :math:`(K - 1)(2m + 1) + d + 2` ciphertexts (:math:`d` = ``sum(dims)``) of
    :math:`2\,\mathrm{key\_bits}/8` bytes (elements of :math:`\mathbb Z_{n^2}`), :math:`d + 1` plaintexts
    of :math:`\mathrm{key\_bits}/8` bytes back. ``tests/test_check_vertical.py`` checks that formula
    against ``fit_linear`` itself.

The reference solutions and the wrong answers each checker must reject live in
``tests/test_check_vertical.py``.
"""

from __future__ import annotations

import numbers
from collections.abc import Callable

import numpy as np

from ..vertical import MIN_KEY_BITS, MODP_2048, MODP_2048_Q, _powmod, hash_to_group
from ._common import CheckResult, attempt

# --------------------------------------------------------------------------- 1. PSI by hand

#: The cases of :func:`psi_double_blind`: A's IDs, B's IDs (the keys are drawn from a fixed seed).
PSI_CASES = (
    (["ana", "ben", "chen", "dara"], ["chen", "eve", "ana"]),
    ([101, 205, 333, 478, 512], [512, 999, 101, 205]),
    (["x1", "x2"], ["y1", "y2", "y3"]),
)


def _psi_cases():
    rng = np.random.default_rng(1313)
    keys = [1 + int.from_bytes(rng.bytes(256), "big") % (MODP_2048_Q - 1) for _ in range(2 * len(PSI_CASES))]
    return [(list(a), list(b), keys[2 * k], keys[2 * k + 1]) for k, (a, b) in enumerate(PSI_CASES)]


def _sorted_ids(ids) -> list:
    return sorted(ids, key=lambda i: (type(i).__name__, i))


def psi_double_blind(fn: Callable) -> CheckResult:
    r"""Check ``fn(ids_a, ids_b, key_a, key_b) -> (common, a_double)``, DH-PSI by hand."""
    name = "psi_double_blind"
    hint = ("Blind each ID twice: h = vertical.hash_to_group(x), then pow(pow(h, key_a, p), key_b, p) with "
            "p = vertical.MODP_2048, in the order of ids_a. Do the same to B's IDs (key_b first, then key_a) "
            "and keep the IDs of A whose value appears among B's.")
    if not callable(fn):
        return CheckResult(name, False, f"expected a function, got {type(fn).__name__}", hint)
    for k, (ids_a, ids_b, key_a, key_b) in enumerate(_psi_cases(), start=1):
        got, stop = attempt(name, fn, (list(ids_a), list(ids_b), key_a, key_b), where=f"case {k}", hint=hint)
        if stop is not None:
            return stop
        try:
            common, a_double = got
            a_double = [int(v) for v in a_double]
            common = list(common)
        except Exception:
            return CheckResult(name, False, f"case {k}: expected a pair (common, a_double), got {got!r:.80}", hint)
        hashes = [hash_to_group(x) for x in ids_a]
        power = _powmod()                                           # pow(h, e, p), with GMP if installed
        want = [power(power(h, key_a), key_b) for h in hashes]
        if len(a_double) != len(ids_a):
            return CheckResult(name, False, f"case {k}: a_double should hold one value per ID of A "
                                            f"({len(ids_a)}), got {len(a_double)}", hint)
        if a_double != want:
            return CheckResult(name, False, f"case {k}: {sum(g != w for g, w in zip(a_double, want, strict=True))} "
                                            f"of {len(want)} values of a_double differ",
                               _diagnose_blinding(a_double, hashes, key_a, key_b) or hint)
        expected = _sorted_ids(set(ids_a) & set(ids_b))
        try:
            same = _sorted_ids(common) == expected and len(common) == len(expected)
        except TypeError:
            same = False
        if not same:
            return CheckResult(name, False, f"case {k}: common should be the {len(expected)} IDs both hold, "
                                            f"got {common!r:.80}",
                               "a_double is right. Now blind B's IDs the same way (key_b, then key_a) and keep "
                               "the IDs of A whose doubly blinded value is among B's.")
    return CheckResult(name, True, f"all {len(PSI_CASES)} cases: H(x)^(ab) right and the intersection found "
                                   "from blinded values only")


def _diagnose_blinding(got, hashes, key_a, key_b) -> str | None:
    p = MODP_2048
    variants = {
        "once": [pow(h, key_a, p) for h in hashes],
        "once_b": [pow(h, key_b, p) for h in hashes],
        "sum": [pow(h, key_a + key_b, p) for h in hashes],
        "mod_p": [pow(h, key_a * key_b % p, p) for h in hashes],
        "raw": list(hashes),
    }
    if got in (variants["once"], variants["once_b"]):
        return "Each value is blinded once. A's H(x)^a goes to B, who raises it to its own key: (H(x)^a)^b."
    if got == variants["sum"]:
        return "Exponents multiply, they do not add: (H(x)^a)^b = H(x)^(a b), not H(x)^(a + b)."
    if got == variants["mod_p"]:
        return ("You reduced a * b mod p. Exponents live modulo the group's order q = (p - 1) / 2 "
                "(vertical.MODP_2048_Q), not p; or simply raise to key_a, then to key_b.")
    if got == variants["raw"]:
        return "Those are the hashes H(x) themselves, not blinded: B would see A's IDs' hashes."
    return None


# --------------------------------------------------------------------------- 2. encrypted dot product

#: The cases of :func:`encrypted_dot`: vector lengths (one value each, then mixed signs).
DOT_CASES = (1, 5, 12)


def encrypted_dot(fn: Callable) -> CheckResult:
    r"""Check ``fn(public_key, enc_values, weights) -> [[w^T v]]`` with a fresh 1024-bit ``phe`` key pair."""
    from phe import EncryptedNumber, paillier  # lazy: import fl_helpers must not load phe

    name = "encrypted_dot"
    hint = ("A ciphertext times a float is a ciphertext of the product, c * w; ciphertexts add with +. "
            "Return sum(c * w for c, w in zip(enc_values, weights)), one ciphertext: without the private key "
            "you cannot decrypt, and need not.")
    if not callable(fn):
        return CheckResult(name, False, f"expected a function, got {type(fn).__name__}", hint)
    public_key, private_key = paillier.generate_paillier_keypair(n_length=MIN_KEY_BITS)
    rng = np.random.default_rng(1314)
    for k, size in enumerate(DOT_CASES, start=1):
        values, weights = rng.normal(size=size), rng.normal(size=size) * 3
        enc = [public_key.encrypt(float(v)) for v in values]
        want = float(weights @ values)
        got, stop = attempt(name, fn, (public_key, list(enc), [float(w) for w in weights]), where=f"case {k}",
                            hint=hint)
        if stop is not None:
            return stop
        if isinstance(got, (list, tuple)) and got and all(isinstance(g, EncryptedNumber) for g in got):
            parts = [private_key.decrypt(g) for g in got]
            specific = ("These are the products w_i [[v_i]], one ciphertext each: add them up into one "
                        "ciphertext (+ works on ciphertexts).") if np.allclose(parts, weights * values) else None
            return CheckResult(name, False, f"case {k}: expected one ciphertext, got a list of {len(got)}",
                               specific or hint)
        if isinstance(got, numbers.Real):
            return CheckResult(name, False, f"case {k}: expected a ciphertext (phe EncryptedNumber), got a number",
                               "The party holds only the public key: it computes on ciphertexts and returns one.")
        if not isinstance(got, EncryptedNumber) or got.public_key != public_key:
            return CheckResult(name, False, f"case {k}: expected a phe EncryptedNumber under the given public "
                                            f"key, got {type(got).__name__}", hint)
        try:
            value = private_key.decrypt(got)
        except Exception as exc:  # e.g. an overflowed encoding
            return CheckResult(name, False, f"case {k}: the answer does not decrypt ({type(exc).__name__})", hint)
        if not np.isclose(value, want, rtol=1e-9, atol=1e-9):
            specific = None
            if np.isclose(value, values.sum(), rtol=1e-9):
                specific = "That is the sum of the values: multiply each ciphertext by its weight first."
            elif np.isclose(value, weights.sum() * values.sum(), rtol=1e-9):
                specific = "Multiply each ciphertext by its own weight, not the sum by the sum."
            return CheckResult(name, False, f"case {k}: decrypts to {value:.6g}, expected w^T v = {want:.6g}",
                               specific or hint)
    return CheckResult(name, True, f"all {len(DOT_CASES)} cases decrypt to w^T v, computed with the public key only")


# --------------------------------------------------------------------------- 3. the cost of a round

#: The cases of :func:`round_cost`: (m, dims = features per party, party 0 first, key_bits).
COST_CASES = ((200, (2, 2), 1024), (442, (6, 4), 1024), (100, (2, 3, 1), 2048), (50, (1, 1, 1, 1), 3072))


def reference_round_cost(m: int, dims, key_bits: int) -> tuple[int, int, int]:
    """Ciphertexts, bytes up and bytes down of one round of ``fit_linear`` with K = len(dims) parties.

    Along the chain 1 -> 2 -> ... -> K-1 -> 0 each of the K - 1 hops carries [[s]] (m) and [[s^T s]] (1);
    party 0 sends [[d]] (m) to each of the K - 1 others and [[d^T d]] (1) to the coordinator; the masked
    gradients, one per coefficient and the intercept (d + 1, d = sum(dims)), go to the coordinator,
    which sends them back decrypted (mod n).
    """
    K, d = len(dims), sum(dims)
    ciphertexts = (K - 1) * (2 * m + 1) + d + 2
    return ciphertexts, ciphertexts * 2 * key_bits // 8, (d + 1) * key_bits // 8


def round_cost(fn: Callable) -> CheckResult:
    """Check ``fn(m, dims, key_bits) -> (ciphertexts, bytes_up, bytes_down)`` for K = len(dims) parties."""
    name = "round_cost"
    hint = ("Follow the chain 1 -> 2 -> ... -> K-1 -> 0: each hop carries m + 1 ciphertexts ([[s]] and "
            "[[s^T s]]). Party 0 then sends [[d]] to each of the K - 1 others and [[d^T d]] to the "
            "coordinator; every coefficient, and the intercept, sends one masked gradient. A ciphertext is mod "
            "n^2: 2 key_bits / 8 bytes; what the coordinator sends back is mod n: key_bits / 8 bytes.")
    if not callable(fn):
        return CheckResult(name, False, f"expected a function, got {type(fn).__name__}", hint)
    for k, (m, dims, bits) in enumerate(COST_CASES, start=1):
        got, stop = attempt(name, fn, (m, list(dims), bits), where=f"case {k}", hint=hint)
        if stop is not None:
            return stop
        try:
            got = tuple(int(v) for v in got)
        except Exception:
            return CheckResult(name, False, f"case {k}: expected three integers, got {got!r:.80}", hint)
        if len(got) != 3:
            return CheckResult(name, False, f"case {k}: expected three integers, got {len(got)}", hint)
        want = reference_round_cost(m, dims, bits)
        if got != want:
            return CheckResult(name, False, f"case {k} (m = {m}, dims = {list(dims)}, {bits} bits): expected "
                                            f"{want}, got {got}", _diagnose_cost(got, want, m, dims, bits) or hint)
    return CheckResult(name, True, f"all {len(COST_CASES)} cases, from 2 to 4 parties, match fit_linear's count")


def _diagnose_cost(got, want, m, dims, bits) -> str | None:
    K, d = len(dims), sum(dims)
    if got[0] != want[0]:
        if got[0] == 2 * m + d + 3 and K > 2:
            return ("That is the two-party count. With K parties the chain has K - 1 hops of m + 1 ciphertexts, "
                    "and party 0 sends [[d]] to each of the K - 1 others.")
        if got[0] == want[0] - 1:
            return ("One ciphertext short: the intercept's masked gradient, [[d^T d]] to the coordinator and the "
                    "running [[s^T s]] on each hop of the chain are one ciphertext each; count them all.")
        if got[0] == want[0] - (K - 1):
            return "Each hop of the chain also carries the running [[s^T s]]: m + 1 ciphertexts, not m."
        if got[0] == want[0] - (K - 1) * m:
            return "m ciphertexts short per party: [[s]] travels along the chain, and [[d]] comes back to each party."
        return None
    if got[1] == want[0] * bits // 8:
        return "A Paillier ciphertext is mod n^2: twice the key's bits, 2 key_bits / 8 bytes."
    if got[1] != want[1]:
        return "bytes_up is the number of ciphertexts times 2 key_bits / 8."
    if got[2] == (d + 1) * 2 * bits // 8:
        return "The coordinator sends back decrypted values mod n: key_bits / 8 bytes each."
    if got[2] == d * bits // 8:
        return "The intercept's gradient comes back too: d + 1 values."
    return None
