r"""Secure aggregation (安全聚合): the server learns the sum of the updates and nothing else.

Bonawitz et al. 2017, "Practical Secure Aggregation for Privacy-Preserving
Machine Learning" (CCS '17), the honest-but-curious protocol, simulated in one
process with explicit per-party state. Each party :math:`u` hides its input
:math:`x_u` (an integer vector mod :math:`2^k`) behind two kinds of mask:

.. math::
    y_u = x_u + \mathrm{PRG}(b_u) + \sum_{v > u} \mathrm{PRG}(s_{uv}) - \sum_{v < u} \mathrm{PRG}(s_{uv})
    \pmod{2^k}

* the **pairwise masks** :math:`\mathrm{PRG}(s_{uv})`: :math:`s_{uv}` is a key that
  :math:`u` and :math:`v` agree on (Diffie-Hellman), added by one and subtracted by
  the other, so they cancel in :math:`\sum_u y_u`;
* the **self mask** :math:`\mathrm{PRG}(b_u)`: a random seed of :math:`u`'s own, removed by
  the server at the end. Without it, a party that is merely late would be unmasked
  when the server reconstructs its pairwise keys to cancel a dropout's masks.

Dropouts are handled with Shamir :math:`t`-of-:math:`n` secret sharing: every party
shares :math:`b_u` and its mask private key :math:`s_u^{SK}` among all parties. For
each party the server asks the survivors for shares of *one* of the two, never both:
:math:`b_u` if :math:`u` sent its masked input (then :math:`\sum y_u - \sum
\mathrm{PRG}(b_u)` is the sum), :math:`s_u^{SK}` if it dropped before (then the server
recomputes and removes :math:`u`'s pairwise masks with the survivors).

The four rounds (the paper's Figure 4, without its round 3 ConsistencyCheck, which
only matters against an active server):

====  ===================  ==================================================================
0     AdvertiseKeys        :math:`u` sends two X25519 public keys: :math:`c_u^{PK}` (encrypts shares),
                           :math:`s_u^{PK}` (pairwise masks)
1     ShareKeys            :math:`u` Shamir-shares :math:`b_u` and :math:`s_u^{SK}`; the share for
                           :math:`v` travels through the server, encrypted with a key only
                           :math:`u` and :math:`v` know
2     MaskedInputCollect   :math:`u` sends :math:`y_u`; the survivors :math:`U_3` are those who did
3     Unmasking            each responding party sends, for every :math:`u`, a share of
                           :math:`b_u` (:math:`u \in U_3`) or of :math:`s_u^{SK}` (:math:`u \notin U_3`)
====  ===================  ==================================================================

Dropout semantics (the paper's): a party that drops ``"before_input"`` (after round 1,
before sending :math:`y_u`) is not in the sum; one that drops ``"after_input"`` (after
sending :math:`y_u`, before unmasking) *is*: its input reached the server, and the others'
shares of :math:`b_u` remove its self mask. With more than :math:`n - t` dropouts the
server cannot reconstruct and aborts (a ``ValueError``), it never returns a wrong sum.

Primitives, all from the ``cryptography`` package (imported inside the functions that use
it, so ``import fl_helpers`` does not load it); nothing cryptographic is written here
except Shamir's scheme, which is plain polynomial arithmetic:

* key agreement: X25519; its shared secret goes through HKDF-SHA256 to a 32-byte seed;
* PRG: the ChaCha20 keystream (ChaCha20 encryption of zeros, 16-byte zero nonce) of a 32-byte
  seed, read as little-endian uint64 and reduced mod :math:`2^k`; every seed is fresh per
  aggregation, so a fixed nonce is safe;
* share encryption: ChaCha20-Poly1305 (an AEAD) with a key derived like the mask seeds from
  :math:`c_u, c_v`; the sender and receiver indices are the nonce and the associated data;
* Shamir shares live in the prime field :math:`\mathbb F_p`, :math:`p = 2^{521} - 1` (a
  Mersenne prime, the modulus of NIST P-521): secrets are 32-byte seeds and keys, below
  :math:`2^{256} < p`.

A simulation: every private key and seed is drawn from ``numpy.random.SeedSequence(seed,
spawn_key=(u,))``, so a run is reproducible. Real parties draw them from the operating
system (``X25519PrivateKey.generate()``, ``os.urandom``, ``secrets``).

Fixed point: the protocol adds integers mod :math:`2^k` (``modulus_bits``); floats are
encoded as :math:`\mathrm{round}(x\,2^f)` (``scale_bits`` :math:`f`) in two's complement,
with :math:`k` large enough that the sum of :math:`n` encoded values cannot wrap.
"""

from __future__ import annotations

import functools
import numbers
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import numpy as np

from . import validation as valid
from .aggregation import Aggregate

#: The Shamir field's prime: 2**521 - 1, a Mersenne prime (the field of NIST P-521).
PRIME = 2**521 - 1

#: When a party drops (see the module docstring).
DROP_KINDS = ("before_input", "after_input")

_SEED_BYTES = 32                       # X25519 keys, self-mask seeds and ChaCha20 keys are 32 bytes
_SHARE_BYTES = (PRIME.bit_length() + 7) // 8          # 66: one field element


# --- 1. fixed-point encoding ----------------------------------------------------------------

def _check_bits(scale_bits, modulus_bits) -> tuple[int, int]:
    modulus_bits = valid.integer("modulus_bits", modulus_bits, minimum=2, maximum=64)
    scale_bits = valid.integer("scale_bits", scale_bits, minimum=0, maximum=modulus_bits - 2)
    return scale_bits, modulus_bits


def encode(updates, *, scale_bits: int, modulus_bits: int, n_parties: int) -> np.ndarray:
    r"""Floats as integers mod :math:`2^k`: :math:`\mathrm{round}(x\,2^f) \bmod 2^k` (two's complement).

    Every encoded value must satisfy :math:`|\mathrm{round}(x\,2^f)| < 2^{k-1}/n` so that
    the sum of ``n_parties`` of them stays in :math:`(-2^{k-1}, 2^{k-1})` and cannot wrap;
    a larger value raises a ``ValueError``. Returns uint64 (values below :math:`2^k`), the
    shape of ``updates``.
    """
    scale_bits, modulus_bits = _check_bits(scale_bits, modulus_bits)
    n_parties = valid.integer("n_parties", n_parties, minimum=1)
    x = np.asarray(updates, dtype=np.float64)
    if not np.all(np.isfinite(x)):
        raise ValueError("updates must contain only finite numbers, got NaN or inf")
    fixed = np.rint(x * 2.0**scale_bits)
    limit = 2.0 ** (modulus_bits - 1) / n_parties
    if fixed.size and np.max(np.abs(fixed)) >= limit:
        raise ValueError(f"updates must lie in (-{limit * 2.0**-scale_bits:g}, {limit * 2.0**-scale_bits:g}) "
                         f"so that the sum of n_parties={n_parties} encoded values fits modulus_bits="
                         f"{modulus_bits} with scale_bits={scale_bits}; got a value of magnitude "
                         f"{np.max(np.abs(x)):g} (raise modulus_bits or lower scale_bits)")
    return fixed.astype(np.int64).view(np.uint64) & _mask(modulus_bits)


def decode(values, *, scale_bits: int, modulus_bits: int) -> np.ndarray:
    r"""The inverse of :func:`encode` for one value or a sum: read mod :math:`2^k` as signed, divide by :math:`2^f`.

    A sum of :math:`n` encoded values decodes to the sum of the floats within
    :math:`n\,2^{-(f+1)}` per coordinate (each rounding is off by at most :math:`2^{-(f+1)}`).
    """
    scale_bits, modulus_bits = _check_bits(scale_bits, modulus_bits)
    z = np.asarray(values, dtype=np.uint64) & _mask(modulus_bits)
    signed = z.view(np.int64) if modulus_bits == 64 else \
        np.where(z >= np.uint64(1 << (modulus_bits - 1)), z.astype(np.int64) - (1 << modulus_bits),
                 z.astype(np.int64))
    return signed.astype(np.float64) * 2.0**-scale_bits


def _mask(modulus_bits: int) -> np.uint64:
    return np.uint64((1 << modulus_bits) - 1)


# --- 2. Shamir t-of-n secret sharing --------------------------------------------------------

def shamir_share(secret: int, *, threshold: int, n_shares: int, rng: np.random.Generator,
                 prime: int = PRIME) -> list[tuple[int, int]]:
    r"""Shares :math:`(x, f(x))`, :math:`x = 1..n`, of a random polynomial with :math:`f(0) =` ``secret``.

    :math:`f(x) = s + a_1 x + \dots + a_{t-1} x^{t-1} \bmod p`, the :math:`a_j` uniform in
    :math:`\mathbb F_p` (drawn from ``rng``: a simulation; real parties use ``secrets``).
    Any ``threshold`` shares determine :math:`f` and so :math:`s`; fewer are consistent with
    every secret (Shamir 1979, "How to Share a Secret").
    """
    n_shares = valid.integer("n_shares", n_shares, minimum=1)
    threshold = valid.integer("threshold", threshold, minimum=1, maximum=n_shares)
    if not isinstance(prime, numbers.Integral) or prime < 2:
        raise ValueError(f"prime must be a prime number, got {prime!r}")
    if not isinstance(secret, numbers.Integral) or not 0 <= secret < prime:
        raise ValueError(f"secret must be an integer in [0, prime - 1] = [0, {prime - 1}], got {secret!r}")
    coefficients = [int(secret)] + [_uniform_below(prime, rng) for _ in range(threshold - 1)]
    return [(x, _poly_at(coefficients, x, prime)) for x in range(1, n_shares + 1)]


def shamir_reconstruct(shares, *, prime: int = PRIME) -> int:
    r"""The secret :math:`f(0)` by Lagrange interpolation: :math:`\sum_j y_j \lambda_j`,
    :math:`\lambda_j = \prod_{m \ne j} x_m / (x_m - x_j)`.

    Pass at least ``threshold`` shares with distinct :math:`x`; with fewer the result is
    some number, unrelated to the secret. The :math:`\lambda_j` depend only on the
    :math:`x`'s, so the server, which reconstructs one secret per party from the same
    responders, computes them once (:func:`lagrange_at_zero`, cached): each further secret
    costs one sum, and unmasking N parties costs :math:`O(N^2)`, not :math:`O(N^3)`.
    """
    shares = [(int(x), int(y)) for x, y in shares]
    xs = tuple(x for x, _ in shares)
    if not shares or len(set(xs)) != len(xs) or any(x % prime == 0 for x in xs):
        raise ValueError(f"shares must be a non-empty list of (x, y) with distinct nonzero x, got x = {list(xs)}")
    weights = lagrange_at_zero(xs, prime=prime)
    return sum(y * w for (_, y), w in zip(shares, weights, strict=True)) % prime


@functools.lru_cache(maxsize=64)
def lagrange_at_zero(xs: tuple[int, ...], *, prime: int = PRIME) -> tuple[int, ...]:
    r"""The Lagrange weights :math:`\lambda_j = \prod_{m \ne j} x_m / (x_m - x_j) \bmod p` that give :math:`f(0)`."""
    out = []
    for j, xj in enumerate(xs):
        num, den = 1, 1
        for m, xm in enumerate(xs):
            if m != j:
                num, den = num * xm % prime, den * (xm - xj) % prime
        out.append(num * pow(den, -1, prime) % prime)
    return tuple(out)


def _poly_at(coefficients, x: int, prime: int) -> int:
    y = 0
    for a in reversed(coefficients):                    # Horner
        y = (y * x + a) % prime
    return y


def _uniform_below(bound: int, rng: np.random.Generator) -> int:
    """A uniform integer in [0, bound), by rejection from random bytes."""
    bits = bound.bit_length()
    while True:
        value = int.from_bytes(rng.bytes((bits + 7) // 8), "big") >> (-bits % 8)
        if value < bound:
            return value


# --- the primitives: key agreement, PRG, authenticated encryption ---------------------------

def private_key(raw: bytes):
    """An X25519 private key from 32 bytes (a simulation's seeded bytes, or ``os.urandom(32)``)."""
    from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
    return X25519PrivateKey.from_private_bytes(bytes(raw))


def agree(own_private, other_public: bytes, *, purpose: bytes = b"pairwise mask") -> bytes:
    """A 32-byte seed both parties compute from the X25519 shared secret.

    HKDF-SHA256, no salt, ``info=b"fl_helpers.secagg " + purpose``.
    """
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PublicKey
    from cryptography.hazmat.primitives.kdf.hkdf import HKDF
    shared = own_private.exchange(X25519PublicKey.from_public_bytes(other_public))
    return HKDF(algorithm=hashes.SHA256(), length=_SEED_BYTES, salt=None,
                info=b"fl_helpers.secagg " + purpose).derive(shared)


def prg(seed: bytes, size: int, *, modulus_bits: int) -> np.ndarray:
    r"""Expand a 32-byte seed into ``size`` uniform integers mod :math:`2^k`: the ChaCha20 keystream."""
    from cryptography.hazmat.primitives.ciphers import Cipher, algorithms
    modulus_bits = valid.integer("modulus_bits", modulus_bits, minimum=2, maximum=64)
    stream = Cipher(algorithms.ChaCha20(bytes(seed), b"\0" * 16), mode=None).encryptor()
    return np.frombuffer(stream.update(b"\0" * (8 * size)), dtype="<u8").astype(np.uint64) & _mask(modulus_bits)


def pairwise_mask(u: int, own_private, public_keys: Mapping[int, bytes], size: int, *,
                  modulus_bits: int) -> np.ndarray:
    r"""Party :math:`u`'s pairwise masks, :math:`\sum_{v>u}\mathrm{PRG}(s_{uv}) - \sum_{v<u}\mathrm{PRG}(s_{uv})`
    mod :math:`2^k`.

    ``public_keys`` maps each party :math:`v` (``u`` itself is skipped) to :math:`s_v^{PK}`.
    Summed over a set of parties that all use the same ``public_keys``, these masks cancel.
    """
    total = np.zeros(size, dtype=np.uint64)
    for v, public in public_keys.items():
        if v != u:
            mask = prg(agree(own_private, public), size, modulus_bits=modulus_bits)
            total = total + mask if v > u else total - mask          # uint64 wraps: arithmetic mod 2^64
    return total & _mask(modulus_bits)


def _seal(key: bytes, u: int, v: int, plaintext: bytes) -> bytes:
    from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305
    header = u.to_bytes(4, "big") + v.to_bytes(4, "big")          # who to whom: nonce and associated data
    return ChaCha20Poly1305(key).encrypt(header + b"\0" * 4, plaintext, header)


def _open(key: bytes, u: int, v: int, ciphertext: bytes) -> bytes:
    from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305
    header = u.to_bytes(4, "big") + v.to_bytes(4, "big")
    return ChaCha20Poly1305(key).decrypt(header + b"\0" * 4, ciphertext, header)


# --- 3. the protocol: one party's state, and the server -------------------------------------

class _Client:
    """One party :math:`u` of the protocol and everything only it knows."""

    def __init__(self, u: int, x: np.ndarray, rng: np.random.Generator, *, threshold: int, modulus_bits: int):
        self.u, self.x, self.rng = u, x, rng
        self.threshold, self.modulus_bits = threshold, modulus_bits

    def advertise_keys(self) -> tuple[bytes, bytes]:
        """Round 0: two fresh X25519 key pairs; send :math:`(c_u^{PK}, s_u^{PK})`."""
        self.c_sk = private_key(self.rng.bytes(_SEED_BYTES))
        self.s_sk = private_key(self.rng.bytes(_SEED_BYTES))
        return self.c_sk.public_key().public_bytes_raw(), self.s_sk.public_key().public_bytes_raw()

    def share_keys(self, keys: Mapping[int, tuple[bytes, bytes]]) -> dict[tuple[int, int], bytes]:
        """Round 1: draw :math:`b_u`; Shamir-share it and :math:`s_u^{SK}`; encrypt share :math:`v` for :math:`v`.

        Returns the ciphertexts ``{(u, v): ...}`` for the server to relay.
        """
        self.keys = dict(keys)                                   # U_1 and their public keys
        self.b = self.rng.bytes(_SEED_BYTES)
        parties = sorted(self.keys)
        n = len(parties)
        b_shares = shamir_share(int.from_bytes(self.b, "big"), threshold=self.threshold, n_shares=n, rng=self.rng)
        s_shares = shamir_share(int.from_bytes(self.s_sk.private_bytes_raw(), "big"), threshold=self.threshold,
                                n_shares=n, rng=self.rng)
        out = {}
        for v, b_share, s_share in zip(parties, b_shares, s_shares, strict=True):
            plaintext = b"".join(y.to_bytes(_SHARE_BYTES, "big") for y in (b_share[1], s_share[1]))
            out[self.u, v] = _seal(self._share_key(v), self.u, v, plaintext)
        return out

    def masked_input(self, ciphertexts: Mapping[tuple[int, int], bytes]) -> np.ndarray:
        r"""Round 2: keep the shares sent to me; send :math:`y_u = x_u + \mathrm{PRG}(b_u) + \text{pairwise masks}`."""
        self.inbox = {u: c for (u, v), c in ciphertexts.items() if v == self.u}     # U_2: who shared keys
        n = self.x.size
        mask_keys = {v: self.keys[v][1] for v in self.inbox}
        y = self.x + prg(self.b, n, modulus_bits=self.modulus_bits) \
            + pairwise_mask(self.u, self.s_sk, mask_keys, n, modulus_bits=self.modulus_bits)
        return y & _mask(self.modulus_bits)

    def unmask(self, survivors) -> dict[str, dict[int, tuple[int, int]]]:
        r"""Round 3: for each :math:`u \in U_2`, my share of :math:`b_u` if :math:`u \in U_3`, else of :math:`s_u^{SK}`.

        Never both for the same :math:`u`: that is what keeps a late party's input secret.
        """
        survivors = set(survivors)
        if len(survivors) < self.threshold:
            raise ValueError(f"only {len(survivors)} parties sent masked inputs, fewer than threshold="
                             f"{self.threshold}: the party refuses to unmask")
        x = sorted(self.keys).index(self.u) + 1                 # my share's abscissa
        reply: dict[str, dict[int, tuple[int, int]]] = {"self_mask": {}, "mask_key": {}}
        for u, ciphertext in self.inbox.items():
            plaintext = _open(self._share_key(u), u, self.u, ciphertext)
            b_y, s_y = (int.from_bytes(plaintext[i:i + _SHARE_BYTES], "big") for i in (0, _SHARE_BYTES))
            if u in survivors:
                reply["self_mask"][u] = (x, b_y)
            else:
                reply["mask_key"][u] = (x, s_y)
        return reply

    def _share_key(self, v: int) -> bytes:
        return agree(self.c_sk, self.keys[v][0], purpose=b"share encryption")


@dataclass
class Transcript:
    """Everything the server saw or computed (no party's private state).

    ``public_keys[u] = (c_u^PK, s_u^PK)``; ``ciphertexts[u, v]``: the encrypted shares it
    relayed from ``u`` to ``v``; ``masked[u] = y_u``; ``self_mask_shares[u]`` /
    ``mask_key_shares[u]``: the shares of :math:`b_u` / :math:`s_u^{SK}` it received, by
    sender; ``self_mask_seeds[u]`` / ``mask_keys[u]``: what it reconstructed from them.
    """

    public_keys: dict = field(default_factory=dict)
    ciphertexts: dict = field(default_factory=dict)
    masked: dict = field(default_factory=dict)
    self_mask_shares: dict = field(default_factory=dict)
    mask_key_shares: dict = field(default_factory=dict)
    self_mask_seeds: dict = field(default_factory=dict)
    mask_keys: dict = field(default_factory=dict)
    responders: tuple = ()


@dataclass(frozen=True)
class SecAggResult:
    """``sum``: the decoded sum of the survivors' updates; ``survivors``: whose inputs it contains (:math:`U_3`)."""

    sum: np.ndarray
    survivors: tuple
    transcript: Transcript
    scale_bits: int
    modulus_bits: int


def aggregate(updates, *, threshold: int, dropped=(), seed: int | None, scale_bits: int = 16,
              modulus_bits: int = 64) -> SecAggResult:
    r"""Run the protocol over the rows of ``updates`` and return the server's result.

    Parameters
    ----------
    updates : array, shape (n, d)
        Party :math:`u`'s input is row ``u``.
    threshold : int in [1, n]
        Shamir's :math:`t`: any :math:`t` parties can unmask, fewer learn nothing. The paper
        takes :math:`t > n/2`; at most :math:`n - t` parties may drop.
    dropped : indices, or a mapping ``{index: "before_input" | "after_input"}``
        Who drops and when (plain indices drop ``"before_input"``); see the module docstring.
    seed : int or None
        Draws every key and seed (party :math:`u` from ``SeedSequence(seed, spawn_key=(u,))``).
    scale_bits, modulus_bits
        The fixed point of :func:`encode`: precision :math:`2^{-f}`, sums mod :math:`2^k`.

    Returns
    -------
    SecAggResult
        ``.sum`` within :math:`n\,2^{-(f+1)}` of the survivors' sum per coordinate,
        ``.survivors``, ``.transcript``.
    """
    x = valid.features(updates, name="updates")
    n, d = x.shape
    threshold = valid.integer("threshold", threshold, minimum=1, maximum=n)
    drops = _dropped(dropped, n)
    scale_bits, modulus_bits = _check_bits(scale_bits, modulus_bits)
    encoded = encode(x, scale_bits=scale_bits, modulus_bits=modulus_bits, n_parties=n)
    root = valid.seed(seed)
    root = np.random.SeedSequence().entropy if root is None else root          # None: fresh OS entropy
    clients = {u: _Client(u, encoded[u], np.random.default_rng(np.random.SeedSequence(root, spawn_key=(u,))),
                          threshold=threshold, modulus_bits=modulus_bits) for u in range(n)}
    seen = Transcript()

    # Round 0, AdvertiseKeys: the server collects and broadcasts the public keys (U_1: all n parties).
    seen.public_keys = {u: c.advertise_keys() for u, c in clients.items()}
    # Round 1, ShareKeys: the server relays the encrypted shares (U_2: all who got here).
    for c in clients.values():
        seen.ciphertexts.update(c.share_keys(seen.public_keys))
    # Round 2, MaskedInputCollection: a party that drops "before_input" sends nothing.
    seen.masked = {u: c.masked_input(seen.ciphertexts) for u, c in clients.items()
                   if drops.get(u) != "before_input"}
    survivors = tuple(sorted(seen.masked))                                         # U_3
    _enough(len(survivors), threshold, n, drops)
    # Round 3, Unmasking: a party that drops "after_input" does not answer.
    replies = {v: c.unmask(survivors) for v, c in clients.items() if v in seen.masked and drops.get(v) is None}
    seen.responders = tuple(sorted(replies))                                       # U_5
    _enough(len(replies), threshold, n, drops)
    for v, reply in replies.items():
        for u, share in reply["self_mask"].items():
            seen.self_mask_shares.setdefault(u, {})[v] = share
        for u, share in reply["mask_key"].items():
            seen.mask_key_shares.setdefault(u, {})[v] = share

    # The server: sum the masked inputs, remove the self masks of U_3 and the pairwise masks of U_2 \ U_3.
    total = np.zeros(d, dtype=np.uint64)
    for y in seen.masked.values():
        total = total + y
    for u, shares in seen.self_mask_shares.items():
        b_u = shamir_reconstruct(shares.values()).to_bytes(_SEED_BYTES, "big")
        seen.self_mask_seeds[u] = b_u
        total = total - prg(b_u, d, modulus_bits=modulus_bits)
    for u, shares in seen.mask_key_shares.items():
        s_sk = shamir_reconstruct(shares.values()).to_bytes(_SEED_BYTES, "big")
        seen.mask_keys[u] = s_sk
        # every survivor v added sign * PRG(s_uv) with sign + for u > v, - for u < v: take it out
        survivor_keys = {v: seen.public_keys[v][1] for v in survivors}
        total = total + pairwise_mask(u, private_key(s_sk), survivor_keys, d, modulus_bits=modulus_bits)
    total = total & _mask(modulus_bits)
    return SecAggResult(sum=decode(total, scale_bits=scale_bits, modulus_bits=modulus_bits), survivors=survivors,
                        transcript=seen, scale_bits=scale_bits, modulus_bits=modulus_bits)


def _dropped(dropped, n: int) -> dict[int, str]:
    """``dropped`` as ``{index: kind}``, checked."""
    if isinstance(dropped, Mapping):
        items = list(dropped.items())
    else:
        try:
            items = [(u, "before_input") for u in dropped]
        except TypeError:
            raise TypeError(f"dropped must be party indices or a mapping {{index: kind}}, got {dropped!r}") from None
    out = {}
    for u, kind in items:
        if isinstance(u, (bool, np.bool_)) or not isinstance(u, numbers.Integral) or not 0 <= u < n:
            raise ValueError(f"dropped must name parties by index in [0, {n - 1}], got {u!r}")
        out[int(u)] = valid.choice(f"dropped[{int(u)}]", kind, DROP_KINDS)
    return out


def _enough(count: int, threshold: int, n: int, drops) -> None:
    if count < threshold:
        raise ValueError(f"too many dropouts: {len(drops)} of n={n} parties dropped, at most n - threshold = "
                         f"{n - threshold} may; the server cannot unmask the sum and aborts")


# --- 4. the aggregator for fl_helpers.train --------------------------------------------------

class SecureAggregator:
    r"""Block 3 of :func:`fl_helpers.train` run through secure aggregation.

    Each selected party sends :math:`w_i\Delta_i` encoded and masked; the server learns only
    :math:`\sum_i w_i\Delta_i` over the survivors and returns it with the survivors' weight
    :math:`\sum_i w_i` as an :class:`~fl_helpers.aggregation.Aggregate`, so the mean is what
    the server would compute in the clear, to encoding precision. The weights themselves are
    not hidden: in ``train`` the server knows them already (it normalises them).

    ``drop``: who drops in a round, ``{row: "before_input" | "after_input"}`` (rows of the
    round's updates), or a function ``(n, rng) -> mapping``. The protocol's randomness comes
    from the ``rng`` that ``train`` passes (the ``"aggregate"`` stream of the round).
    ``metrics`` adds the series ``"secagg_survivors"`` to the History.
    """

    #: ``train`` calls it in a round nobody joined; it returns a zero update then.
    handles_empty_rounds = True

    def __init__(self, threshold: int, *, scale_bits: int = 16, modulus_bits: int = 64,
                 drop: Mapping[int, str] | Callable | None = None):
        self.threshold = valid.integer("threshold", threshold, minimum=1)
        self.scale_bits, self.modulus_bits = _check_bits(scale_bits, modulus_bits)
        if drop is not None and not (callable(drop) or isinstance(drop, Mapping)):
            raise TypeError(f"drop must be None, a mapping {{row: kind}} or a function (n, rng) -> mapping, "
                            f"got {type(drop).__name__}")
        self.drop = drop
        self.last: SecAggResult | None = None

    def __call__(self, updates, weights, *, rng=None) -> Aggregate:
        updates = np.asarray(updates, dtype=np.float64)
        weights = np.asarray(weights, dtype=np.float64)
        if updates.ndim != 2 or weights.shape != (updates.shape[0],):
            raise ValueError(f"updates must have shape (k, p) and weights shape (k,), "
                             f"got {updates.shape} and {weights.shape}")
        if len(weights) == 0:                          # no party this round: no update
            self.last = None
            return np.zeros(updates.shape[1])
        if len(weights) < self.threshold:             # the protocol cannot even start: never a wrong sum
            raise ValueError(f"SecureAggregator(threshold={self.threshold}) needs at least {self.threshold} "
                             f"parties in a round, got {len(weights)} selected this round; select more "
                             f"parties (fraction, sampling) or lower the threshold")
        rng = rng if rng is not None else np.random.default_rng()
        drops = self.drop(len(weights), rng) if callable(self.drop) else (self.drop or {})
        seed = int(rng.integers(2**63))
        self.last = aggregate(weights[:, None] * updates, threshold=self.threshold, dropped=drops, seed=seed,
                              scale_bits=self.scale_bits, modulus_bits=self.modulus_bits)
        return Aggregate(total=self.last.sum, weight=float(weights[list(self.last.survivors)].sum()))

    def metrics(self, info) -> dict:
        """Per-round series for the History: how many parties' updates the sum contains."""
        return {"secagg_survivors": len(self.last.survivors) if self.last is not None else 0}
