r"""Vertical federated learning (纵向联邦学习): the parties hold different *columns* of the same people.

A bank and a shop share many customers; each knows other features about them and only
the bank knows the label. Two steps, both simulated in one process with each party's
state kept apart:

1. :func:`psi`: **private set intersection** (entity alignment). The parties find their
   common IDs without showing each other the rest: Diffie-Hellman PSI (Meadows 1986;
   Huberman, Franklin, Hogg 1999). With a hash :math:`H` into a prime-order group and
   secret exponents :math:`a` (party A) and :math:`b` (party B),

   .. math::
       H(x)^{ab} = (H(x)^a)^b = (H(x)^b)^a,

   so the twice-blinded values of a common ID are equal, and a party compares only those.
   :func:`align` runs it between party 0 and every other party and returns each party's
   rows in the order of the common IDs: the blocks :func:`fit_linear` takes.

2. :func:`fit_linear`: **vertical linear regression** of Yang, Liu, Chen, Tong (2019),
   "Federated Machine Learning: Concept and Applications", ACM TIST 10(2) (vertical FL).
   Party :math:`k` holds the block :math:`X_k` (rows aligned by step 1) and the
   coefficients :math:`\theta_k`; party 0 also holds :math:`y` and the intercept :math:`b`.
   A coordinator holds a Paillier key pair (python-paillier, ``phe``); the parties only
   have the public key, so they can add ciphertexts and multiply them by plaintexts:
   :math:`[\![u]\!] + [\![v]\!] = [\![u + v]\!]`, :math:`c\,[\![u]\!] = [\![c\,u]\!]`.

   One gradient step is exactly centralized gradient descent on the joined table
   :math:`\tilde X = [\mathbf 1, X_0, X_1, \dots]` with the course's MSE
   (:func:`fl_helpers.reference.centralized_gd`):

   .. math::
       d = b\mathbf 1 + \sum_k X_k\theta_k - y, \qquad
       L = \tfrac1m d^\top d, \qquad
       \nabla_{\theta_k} L = \tfrac2m X_k^\top d, \qquad
       \partial_b L = \tfrac2m \mathbf 1^\top d.

The round of :func:`fit_linear` (``m`` rows, ``K`` parties):

====  ================  ======================================================================
1     partial scores    party :math:`k \ge 1` computes :math:`u_k = X_k\theta_k`; along a chain
                        :math:`1 \to 2 \to \dots \to K{-}1 \to 0` each adds its part to the running
                        encrypted sum :math:`[\![s]\!]` and to :math:`[\![s^\top s]\!]`
                        (:math:`[\![(s + u)^\top(s + u)]\!] = [\![s^\top s]\!] + 2u^\top[\![s]\!] + u^\top u`)
2     residual          party 0 adds its plaintext part :math:`v_0 = X_0\theta_0 + b - y`:
                        :math:`[\![d]\!] = [\![s]\!] + v_0` and :math:`[\![d^\top d]\!]`; it sends
                        :math:`[\![d]\!]` to every party and :math:`[\![d^\top d]\!]` to the coordinator
3     gradients         party :math:`k` computes :math:`[\![X_k^\top d]\!]` (party 0 also
                        :math:`[\![\mathbf 1^\top d]\!]`), adds a random mask :math:`\rho` and sends it
4     decrypt           the coordinator decrypts :math:`d^\top d` (the loss) and the masked
                        gradients, and sends those back
5     update            party :math:`k` removes :math:`\rho`, scales by :math:`2/m` and steps:
                        :math:`\theta_k \leftarrow \theta_k - \eta\,\tfrac2m X_k^\top d`
====  ================  ======================================================================

What each one learns (honest-but-curious parties that do not collude with the coordinator):

* PSI: each party learns the intersection and the size of the other's set, nothing else
  about the other's IDs under the decisional Diffie-Hellman assumption, with :math:`H`
  modelled as a random oracle. (In the one-sided variant only the receiver learns it; here
  both compute it, as both need the row order.)
* :func:`fit_linear`: the parties see only ciphertexts of one another's values (Paillier is
  semantically secure under the decisional composite residuosity assumption). Party
  :math:`k` learns its own gradients :math:`\tfrac2m X_k^\top d` every round (Yang et al.
  accept this; over many rounds it does say something about :math:`d`; at :math:`\theta = 0`,
  :math:`d = -y`, so party :math:`k` reads :math:`X_k^\top y`). Party 0 likewise learns
  :math:`\mathbf 1^\top s` and :math:`X_0^\top s` about the others' summed scores :math:`s`. The coordinator
  learns the loss each round and values it cannot read: a masked gradient is
  :math:`(g + \rho) \bmod n` with :math:`\rho` uniform in :math:`\mathbb Z_n`, a one-time pad.

Primitives, none written here:

* PSI group: the 2048-bit safe prime :math:`p = 2q + 1` of RFC 3526 (MODP group 14),
  working in its subgroup of quadratic residues, of prime order :math:`q`. :math:`H(x)`
  expands the ID with SHAKE-256 (SHA-3) to 2304 bits, reduces it mod :math:`p`
  and squares it: a nearly uniform element of that subgroup (squaring a plain 256-bit
  hash would land on a tiny, structured set of small integers). Exponentiation is
  ``gmpy2.powmod`` (GMP, about 6x faster; imported inside :func:`psi`), or Python's
  ``pow(h, a, p)`` where ``gmpy2`` is missing: the same numbers.
* Paillier: ``phe`` (imported inside the functions, so ``import fl_helpers`` does not
  load it). Floats are ``phe.EncodedNumber``\ s :math:`x = e\cdot 16^{E}`; every ciphertext
  that leaves a party has the fixed public exponent ``EXPONENT`` (one value) or
  ``2 * EXPONENT`` (a product), because ``phe``'s exponent is sent in the clear and would
  otherwise tell the size of the value. Every float of magnitude at least
  :math:`2^{53}\,16^{E} = 2^{-75}` is encoded *exactly*, so the only rounding is the final
  decode of each sum: :func:`fit_linear` matches centralized GD to about 1e-15 relative on
  the diabetes data (the difference is numpy's own rounding order; the tests ask 1e-12).

A simulation: with a ``seed``, the PSI keys, the PSI shuffles and the masks come from
``numpy.random.SeedSequence(seed, spawn_key=(...))`` (reproducible, for teaching); with
``seed=None`` from :mod:`secrets`. The Paillier key pair and its encryption randomness
always come from the operating system (``phe``), which changes no returned number.
"""

from __future__ import annotations

import hashlib
import random
import secrets
from collections.abc import Hashable, Sequence
from dataclasses import dataclass, field

import numpy as np

from . import validation as valid
from .history import History, Recorder

#: RFC 3526, section 3: the 2048-bit MODP group 14 prime, a safe prime p = 2q + 1 (generator 2).
MODP_2048 = int(
    "FFFFFFFFFFFFFFFFC90FDAA22168C234C4C6628B80DC1CD129024E088A67CC74020BBEA63B139B22514A08798E3404DD"
    "EF9519B3CD3A431B302B0A6DF25F14374FE1356D6D51C245E485B576625E7EC6F44C42E9A637ED6B0BFF5CB6F406B7ED"
    "EE386BFB5A899FA5AE9F24117C4B1FE649286651ECE45B3DC2007CB8A163BF0598DA48361C55D39A69163FA8FD24CF5F"
    "83655D23DCA3AD961C62F356208552BB9ED529077096966D670C354E4ABC9804F1746C08CA18217C32905E462E36CE3B"
    "E39E772C180E86039B2783A2EC07A28FB5C55DF06F4C52C9DE2BCBF6955817183995497CEA956AE515D2261898FA0510"
    "15728E5A8AACAA68FFFFFFFFFFFFFFFF", 16)
#: The order of the subgroup of quadratic residues mod MODP_2048 (a prime).
MODP_2048_Q = (MODP_2048 - 1) // 2

#: The fixed ``phe`` exponent (base 16) of every encrypted value: 16**-32 = 2**-128.
EXPONENT = -32
#: Smallest Paillier modulus accepted. 1024 bits is for tests and demonstrations only: NIST SP 800-57
#: (part 1, rev. 5, table 2) rates a 1024-bit factoring modulus at most 80 bits of security; use 2048 or more.
MIN_KEY_BITS = 1024

_GROUP_BYTES = (MODP_2048.bit_length() + 7) // 8                 # 256: one group element on the wire
_HASH_DOMAIN = b"fl_helpers.vertical.psi/v1\x00"


# --- 1. private set intersection -------------------------------------------------------------

def hash_to_group(identifier) -> int:
    r""":math:`H(x) = (\mathrm{SHAKE256}(x) \bmod p)^2 \bmod p`, an element of the prime-order subgroup.

    ``identifier`` is a ``str``, ``int`` or ``bytes``; the type is part of the hashed
    bytes, so ``"7"`` and ``7`` are different IDs. 2304 hash bits reduced mod the 2048-bit
    :math:`p` are uniform up to :math:`2^{-256}`.
    """
    digest = hashlib.shake_256(_HASH_DOMAIN + _id_bytes(identifier)).digest(_GROUP_BYTES + 32)
    h = int.from_bytes(digest, "big") % MODP_2048
    return pow(h, 2, MODP_2048) if h > 1 else 4          # 0 and 1 are not in the group; probability 2^-2047


def _id_bytes(identifier) -> bytes:
    if isinstance(identifier, bool) or not isinstance(identifier, (str, int, bytes)):
        raise TypeError(f"ids must be str, int or bytes, got {identifier!r} ({type(identifier).__name__})")
    if isinstance(identifier, str):
        return b"s" + identifier.encode("utf-8")
    if isinstance(identifier, int):
        return b"i" + str(identifier).encode("ascii")
    return b"b" + identifier


@dataclass
class PSITranscript:
    """Everything that crossed the wire in :func:`psi`, and what each party concluded.

    ``a_blinded`` (:math:`H(x)^a`, shuffled) is all B ever sees of A's IDs; ``a_double``
    (:math:`H(x)^{ab}`, in ``a_blinded``'s order) is B's answer. Likewise for B.
    """

    a_blinded: list[int]
    b_blinded: list[int]
    a_double: list[int]
    b_double: list[int]
    common_a: list
    common_b: list
    bytes_sent: int


def psi(ids_a: Sequence[Hashable], ids_b: Sequence[Hashable], *, seed: int | None = None):
    r"""Diffie-Hellman private set intersection of two parties' ID lists.

    1. A draws :math:`a`, B draws :math:`b`, uniform in :math:`[1, q)`.
    2. A sends :math:`\{H(x)^a\}` (shuffled), B sends :math:`\{H(y)^b\}` (shuffled).
    3. Each raises what it received to its own key and sends it back in the same order:
       B returns :math:`H(x)^{ab}`, A returns :math:`H(y)^{ba}`.
    4. A's ID :math:`x` is common iff :math:`H(x)^{ab}` is among the :math:`H(y)^{ba}`
       (and symmetrically for B).

    Parameters
    ----------
    ids_a, ids_b : sequence of str, int or bytes
        Each party's IDs, without duplicates.
    seed : int or None
        Keys and shuffles from a seeded generator (a reproducible simulation); ``None``
        draws them with :mod:`secrets`, as a real party must.

    Returns
    -------
    common : list
        The common IDs, sorted.
    transcript : PSITranscript
        The messages and each party's own result (both equal ``common``).
    """
    seed = valid.seed(seed)
    ids_a, ids_b = _check_ids("ids_a", ids_a), _check_ids("ids_b", ids_b)
    rng_a, rng_b = _party_random(seed, 0, "psi"), _party_random(seed, 1, "psi")
    key_a, key_b = 1 + rng_a.randrange(MODP_2048_Q - 1), 1 + rng_b.randrange(MODP_2048_Q - 1)

    # 2. each party blinds its own IDs with its key and sends them in a random order
    order_a, order_b = _shuffled(len(ids_a), rng_a), _shuffled(len(ids_b), rng_b)
    power = _powmod()
    a_blinded = [power(hash_to_group(ids_a[i]), key_a) for i in order_a]
    b_blinded = [power(hash_to_group(ids_b[i]), key_b) for i in order_b]
    # 3. each blinds what it received once more and returns it in the order received
    a_double = [power(v, key_b) for v in a_blinded]                    # B's work on A's values
    b_double = [power(v, key_a) for v in b_blinded]                    # A's work on B's values
    # 4. each party compares its own doubly blinded IDs with the other's
    common_a = [ids_a[i] for i, v in zip(order_a, a_double, strict=True) if v in set(b_double)]
    common_b = [ids_b[i] for i, v in zip(order_b, b_double, strict=True) if v in set(a_double)]
    common_a, common_b = _sorted_ids(common_a), _sorted_ids(common_b)
    n_sent = 2 * (len(ids_a) + len(ids_b))
    transcript = PSITranscript(a_blinded, b_blinded, a_double, b_double, common_a, common_b,
                               bytes_sent=n_sent * _GROUP_BYTES)
    return common_a, transcript


def _powmod():
    """``(h, e) -> h**e mod MODP_2048`` as a Python int: GMP's ``powmod`` if ``gmpy2`` is installed."""
    try:
        from gmpy2 import mpz, powmod
    except ImportError:
        return lambda h, e: pow(h, e, MODP_2048)
    p = mpz(MODP_2048)
    return lambda h, e: int(powmod(h, e, p))


def _check_ids(name: str, ids) -> list:
    if isinstance(ids, (str, bytes)) or not isinstance(ids, (Sequence, set, frozenset, np.ndarray)):
        raise TypeError(f"{name} must be a sequence of str, int or bytes IDs, got {type(ids).__name__}")
    ids = [i.item() if isinstance(i, np.generic) else i for i in ids]
    for i in ids:
        try:
            _id_bytes(i)
        except TypeError as err:
            raise TypeError(f"{name}: {err}") from None
    if len(set(ids)) != len(ids):
        dup = next(i for i in ids if ids.count(i) > 1)
        raise ValueError(f"{name} must not contain duplicate IDs (one row per entity), got {dup!r} twice or more")
    return ids


def _sorted_ids(ids) -> list:
    return sorted(ids, key=lambda i: (type(i).__name__, i))


def _shuffled(n: int, rng) -> list[int]:
    order = list(range(n))
    rng.shuffle(order)
    return order


def _party_random(seed: int | None, party: int, purpose: str):
    """The random source of one party for one purpose: seeded (simulation) or the OS (``secrets``)."""
    if seed is None:
        return secrets.SystemRandom()
    tag = int.from_bytes(hashlib.sha256(purpose.encode()).digest()[:4], "big")
    state = np.random.SeedSequence(seed, spawn_key=(tag, party)).generate_state(8, dtype=np.uint32)
    return random.Random(int.from_bytes(state.tobytes(), "little"))


@dataclass
class Alignment:
    """The result of :func:`align`: the parties' rows of the common IDs, in one order.

    Attributes
    ----------
    common : list
        The IDs every party holds, sorted (by type name, then value): row ``j`` of every block is
        the entity ``common[j]``.
    blocks : list of ndarray
        ``blocks[k]``: party k's rows of ``tables[k]`` for ``common``, shape (len(common), d_k).
    y : ndarray or None
        Party 0's ``labels`` for ``common`` (``None`` if none were given).
    transcripts : list of PSITranscript
        ``transcripts[k - 1]``: the :func:`psi` run of party 0 with party k.
    """

    common: list
    blocks: list
    y: np.ndarray | None
    transcripts: list


def align(ids_per_party: Sequence, tables: Sequence, *, labels=None, common: Sequence | None = None,
          seed: int | None = None) -> Alignment:
    r"""Entity alignment: :func:`psi` of party 0 with each other party, then everyone's rows in one order.

    Party 0 (the one with the labels) runs :func:`psi` with every party :math:`k \ge 1`, keeps the IDs
    found in all of them, and announces that list; each party then takes its own rows of those IDs,
    in the sorted order. With two parties the list is the PSI's intersection and the announcement
    tells nothing new. With three or more, party :math:`k` also learns which of its common IDs the
    other parties hold (the announced list), which a two-party PSI would not tell it.

    Parameters
    ----------
    ids_per_party : sequence of sequences of str, int or bytes
        ``ids_per_party[k]``: party k's IDs, one per row of ``tables[k]``, without duplicates. At
        least two parties.
    tables : sequence of array-like, shape (len(ids_per_party[k]), d_k)
        Each party's features, row ``i`` belonging to ``ids_per_party[k][i]``; finite numbers only.
    labels : array-like, shape (len(ids_per_party[0]),), optional
        Party 0's targets, in the order of its IDs.
    common : sequence of IDs, optional
        The common IDs if the PSI has already been run (e.g. ``psi(ids_a, ids_b)[0]``): no PSI is
        run, ``transcripts`` is empty, and every party must hold every one of these IDs.
    seed : int or None
        As :func:`psi` (the run with party k gets a seed derived from ``(seed, k)``).

    Returns
    -------
    Alignment
        ``.blocks`` and ``.y`` go straight into :func:`fit_linear` or :func:`fit_logistic`.

    Raises
    ------
    ValueError
        If the numbers of parties and tables differ, a table's rows and its IDs differ in number,
        an ID appears twice, a table or ``labels`` holds NaN or inf, a party shares no ID with
        party 0 (or the parties have none in common), or a party lacks an ID of ``common``.
    """
    seed = valid.seed(seed)
    if isinstance(ids_per_party, (str, bytes)) or not isinstance(ids_per_party, Sequence) or len(ids_per_party) < 2:
        raise TypeError("ids_per_party must be a list of at least two ID lists, one per party, got "
                        + (f"{len(ids_per_party)}" if isinstance(ids_per_party, Sequence) else
                           type(ids_per_party).__name__))
    if not isinstance(tables, Sequence) or len(tables) != len(ids_per_party):
        got = f"{len(tables)} tables" if isinstance(tables, Sequence) else type(tables).__name__
        raise ValueError(f"tables must hold one table per party, {len(ids_per_party)} like ids_per_party, got {got}")
    ids = [_check_ids(f"ids_per_party[{k}]", i) for k, i in enumerate(ids_per_party)]
    tables = [valid.features(t, name=f"tables[{k}]") for k, t in enumerate(tables)]
    for k, (i, t) in enumerate(zip(ids, tables, strict=True)):
        if t.shape[0] != len(i):
            raise ValueError(f"tables[{k}] must have one row per ID of ids_per_party[{k}], got {t.shape[0]} rows "
                             f"and {len(i)} IDs")
    y = None if labels is None else valid.targets(labels, len(ids[0]), name="labels", x_name="tables[0]")
    if common is not None:
        return _rows_of(_given_common(common, ids), ids, tables, y, [])
    common, transcripts = set(ids[0]), []
    for k in range(1, len(ids)):
        pair_seed = None if seed is None else int(np.random.SeedSequence(seed, spawn_key=(k,)).generate_state(1)[0])
        found, transcript = psi(ids[0], ids[k], seed=pair_seed)
        if not found:
            raise ValueError(f"party {k} has no overlap with party 0: psi found no common ID among their "
                             f"{len(ids[0])} and {len(ids[k])} IDs (IDs match by type and value: '7' is not 7), "
                             "so there is no row to train on")
        common &= set(found)
        transcripts.append(transcript)
    if not common:
        raise ValueError(f"the {len(ids)} parties have no ID in common (each overlaps with party 0, but no ID is "
                         "held by all), so there is no row to train on")
    return _rows_of(_sorted_ids(common), ids, tables, y, transcripts)


def _given_common(common, ids) -> list:
    common = _check_ids("common", common)
    if not common:
        raise ValueError("common must hold at least one ID (the parties' intersection), got none: there is no row "
                         "to train on")
    for k, i in enumerate(ids):
        held = set(i)
        missing = [x for x in common if x not in held]
        if missing:
            raise ValueError(f"common must hold only IDs of every party, got {len(missing)} not in "
                             f"ids_per_party[{k}], e.g. {missing[0]!r}")
    return _sorted_ids(common)


def _rows_of(common, ids, tables, y, transcripts) -> Alignment:
    """Each party's rows of ``common``, in that order."""
    blocks = []
    for i, t in zip(ids, tables, strict=True):
        row = {x: r for r, x in enumerate(i)}
        blocks.append(t[[row[x] for x in common]])
    if y is not None:
        row = {x: r for r, x in enumerate(ids[0])}
        y = y[[row[x] for x in common]]
    return Alignment(common=common, blocks=blocks, y=y, transcripts=transcripts)


# --- 2. vertical linear regression with Paillier ----------------------------------------------

@dataclass
class VerticalFit:
    """The result of :func:`fit_linear` and :func:`fit_logistic`.

    Attributes
    ----------
    coefs : list of ndarray
        ``coefs[k]``: party k's coefficients, shape (d_k,) (known only to party k).
    intercept : float
        Party 0's intercept :math:`b`.
    history : History
        As :func:`~fl_helpers.reference.centralized_gd`'s, on the joined table:
        ``thetas[t] = [b, theta_0, theta_1, ...]``, ``losses[t]``; ``bytes_up[t-1]``:
        ciphertext bytes sent in round t (between parties and to the coordinator),
        ``bytes_down[t-1]``: plaintext bytes the coordinator sent back;
        ``metrics["ciphertexts"]``: ciphertexts sent per round.
    coordinator_view : list of dict
        Per round, all the coordinator decrypted: ``"sum_sq"`` (:math:`d^\\top d`) and
        ``"masked"`` (per party, the integers :math:`(g + \\rho) \\bmod n`).
    public_key_n : int
        The Paillier modulus :math:`n` (public).
    """

    coefs: list
    intercept: float
    history: History
    coordinator_view: list = field(default_factory=list)
    public_key_n: int = 0

    @property
    def theta(self) -> np.ndarray:
        """``[intercept, coefs[0], coefs[1], ...]``: the layout of centralized GD on the joined table."""
        return np.concatenate([[self.intercept], *self.coefs])


def fit_linear(blocks, y, *, lr: float, rounds: int, key_bits: int = 2048, seed: int | None = None) -> VerticalFit:
    r"""Vertical linear regression (Yang et al. 2019): gradient descent on column blocks, under Paillier.

    Parameters
    ----------
    blocks : list of array-like, shape (m, d_k)
        Party k's features, rows already aligned (e.g. by :func:`psi`). Party 0 holds ``y``
        and the intercept.
    y : array-like, shape (m,)
        Party 0's targets.
    lr : float
        Step size :math:`\eta` > 0, as in centralized GD.
    rounds : int
        Gradient steps R >= 1.
    key_bits : int
        Paillier modulus size. 2048 (the default) or more for real use; 1024 (``MIN_KEY_BITS``,
        the smallest accepted) is quick but weak, for tests and demonstrations only.
    seed : int or None
        The masks from seeded generators (reproducible); ``None``: from :mod:`secrets`.

    Returns
    -------
    VerticalFit
        ``.theta`` equals ``centralized_gd(np.hstack(blocks), y, lr=lr, rounds=rounds).theta``
        to about 1e-15 relative (see the module docstring).

    Cost per round (two parties): ``m (d + 4) + d + 2`` ciphertext-times-plaintext products
    (``m (d + 1)`` for the gradients, ``m`` for party 0's cross term, ``2m`` for the negated
    residuals; counted by ``benchmarks/bench_paillier.py``) and ``m + 1`` encryptions (plus
    ``m`` per extra party in the chain). ``phe`` computes with ``gmpy2`` (a dependency of the course;
    pure Python, several times slower, without it). ``benchmarks/bench_paillier.py`` on one core of
    the README's machine: m = 400 rows, d = 16 features, about 1.3 s per round with 1024-bit keys and
    8 s with 2048; the m encryptions and the m (d + 4) products grow with m, only the products with d.
    """
    blocks, y = _check_blocks(blocks, y)
    return _fit(blocks, y, lr=lr, rounds=rounds, key_bits=key_bits, seed=seed,
                gradient=lambda S, m: 2.0 * S / m,                 # the course's MSE gradient: 2/m X^T d
                loss=lambda sum_sq, m: sum_sq / m)


def _fit(blocks, y, *, lr, rounds, key_bits, seed, gradient, loss) -> VerticalFit:
    """:func:`fit_linear`'s protocol for the residual ``d = Xt theta - y``: steps by ``gradient(X^T d, m)``.

    ``loss(d^T d, m)`` is what ``history.losses`` records.
    """
    lr = valid.positive_float("lr", lr)
    rounds = valid.integer("rounds", rounds, minimum=1)
    key_bits = _check_key_bits(key_bits)
    seed = valid.seed(seed)
    from phe import paillier  # lazy: only this function needs phe

    public_key, private_key = paillier.generate_paillier_keypair(n_length=key_bits)   # the coordinator's
    m, K = len(y), len(blocks)
    mask_rngs = [_party_random(seed, k, "mask") for k in range(K)]
    coefs = [np.zeros(X.shape[1]) for X in blocks]
    intercept = 0.0
    sizes = {"ct": (public_key.nsquare.bit_length() + 7) // 8, "pt": (public_key.n.bit_length() + 7) // 8}
    rec, view, last = Recorder([m]), [], {}
    for t in range(rounds + 1):
        gradients = t < rounds                                     # the last pass only measures the loss
        enc_d, enc_sum_sq, n_ct = _encrypted_residual(public_key, blocks, y, coefs, intercept)
        sum_sq = private_key.decrypt(enc_sum_sq)                   # 4. the coordinator reads d^T d
        theta = np.concatenate([[intercept], *coefs])
        if not rec.record(t, theta, [loss(sum_sq, m)], bytes_up=last.get("up", 0), bytes_down=last.get("down", 0),
                          metrics={"ciphertexts": last.get("ct", 0)}) or not gradients:
            break
        masked, grads, n_grad = {}, [], 0
        for k, X in enumerate(blocks):                             # 3.-5., party by party
            S, masked[k] = _masked_gradient_sum(public_key, private_key, X, enc_d, k == 0, mask_rngs[k])
            grads.append(gradient(S, m))
            n_grad += len(S)
        view.append({"sum_sq": sum_sq, "masked": masked})
        intercept = intercept - lr * grads[0][0]
        coefs = [w - lr * (g[1:] if k == 0 else g) for k, (w, g) in enumerate(zip(coefs, grads, strict=True))]
        last = {"ct": n_ct + n_grad, "up": (n_ct + n_grad) * sizes["ct"], "down": n_grad * sizes["pt"]}
    history = rec.history(engine="vertical (Paillier)", device="CPU (python-paillier)")
    thetas = history.thetas[-1]
    splits = np.cumsum([X.shape[1] for X in blocks])[:-1]
    return VerticalFit(coefs=list(np.split(thetas[1:], splits)), intercept=float(thetas[0]), history=history,
                       coordinator_view=view, public_key_n=public_key.n)


def fit_logistic(blocks, y, *, lr: float, rounds: int, key_bits: int = 2048,
                 seed: int | None = None) -> VerticalFit:
    r"""Vertical logistic regression with the Taylor-approximated loss (Hardy et al. 2017), under Paillier.

    Hardy, Henecka, Ivey-Law, Nock, Patrini, Smith, Thorne (2017), "Private federated
    learning on vertically partitioned data via entity resolution and additively homomorphic
    encryption", arXiv:1711.10677. The sigmoid cannot be evaluated on ciphertexts, so the
    course's logistic loss (:data:`fl_helpers.models.logistic`, labels 0/1, mean
    cross-entropy :math:`\log(1 + e^{u}) - y u` with :math:`u = b + \sum_k X_k\theta_k`) is
    written with :math:`z = (2y - 1)\,u` as :math:`\log(1 + e^{-z})` and replaced by its
    second-order Taylor expansion at 0:

    .. math::
        \log(1 + e^{-z}) \approx \log 2 - \tfrac z2 + \tfrac{z^2}8, \qquad
        \nabla_{\theta_k} \tilde L = \tfrac1m X_k^\top d, \quad
        d = \tfrac u4 - \tfrac{2y - 1}2

    (the sigmoid :math:`\sigma(u) \approx \tfrac12 + \tfrac u4`; :math:`z^2 = u^2` as
    :math:`(2y - 1)^2 = 1`). The error of the expansion is :math:`O(z^4)`: small while the
    scores stay near 0, growing as the model grows confident. On the diabetes test
    (y > median, 4 standardised features, 100 rows, lr 0.5, 5 rounds) the parameters differ from
    exact logistic GD's by 4.1e-3 in max-abs (0.9 % of their norm); see
    ``tests/test_vertical.py``.

    The round is :func:`fit_linear`'s, with the residual scaled by 4 so that party 0 forms it
    from :math:`[\![s]\!]` by an addition only (every ciphertext keeps the exponent
    ``EXPONENT``; multiplying by 1/4 would not): :math:`[\![4d]\!] = [\![s]\!] + v_0`,
    :math:`v_0 = X_0\theta_0 + b - 2(2y - 1)`; party k steps with
    :math:`\tfrac1{4m} X_k^\top (4d)`. So this is exactly :func:`fit_linear` on the target
    :math:`2(2y - 1)` with the gradient scaled by 1/8.

    Parameters
    ----------
    blocks, lr, rounds, key_bits, seed
        As :func:`fit_linear`.
    y : array-like, shape (m,)
        Party 0's labels, 0 or 1.

    Returns
    -------
    VerticalFit
        ``.theta`` equals plaintext gradient descent on the Taylor loss :math:`\tilde L` (zeros
        to start, intercept first) to about 1e-15 relative. ``history.losses`` are
        :math:`\tilde L` (the coordinator can compute it from :math:`(4d)^\top(4d)`:
        :math:`\tilde L = \log 2 - \tfrac12 + \tfrac1{8m}(4d)^\top(4d)`), not the exact
        cross-entropy; ``coordinator_view[t]["sum_sq"]`` is :math:`(4d)^\top(4d)`.
    """
    blocks, y = _check_blocks(blocks, y)
    if not np.isin(y, (0.0, 1.0)).all():
        bad = y[~np.isin(y, (0.0, 1.0))][0]
        raise ValueError(f"y must hold binary labels 0 or 1 (logistic regression), got {float(bad):g}")
    return _fit(blocks, 2.0 * (2.0 * y - 1.0), lr=lr, rounds=rounds, key_bits=key_bits, seed=seed,
                gradient=lambda S, m: 0.25 * S / m,                # 1/m X^T d = 1/(4m) X^T (4d)
                loss=lambda sum_sq, m: float(np.log(2.0)) - 0.5 + sum_sq / (8.0 * m))


def _encrypted_residual(public_key, blocks, y, coefs, intercept):
    """Steps 1-2: ``([[d]], [[d^T d]], ciphertexts sent)``, the chain 1 -> ... -> K-1 -> 0."""
    from phe import EncodedNumber

    def encrypt(value):
        encoding = EncodedNumber.encode(public_key, float(value), max_exponent=EXPONENT)
        return public_key.encrypt_encoded(encoding, None)          # None: fresh randomness (obfuscated)

    chain = list(range(1, len(blocks))) + [0]
    enc_s = enc_ss = None
    n_ct = 0
    for k in chain:
        v = blocks[k] @ coefs[k]                                   # u_k = X_k theta_k (plaintext, party k)
        if k == 0:
            v = v + intercept - y                                  # party 0: v_0 = X_0 theta_0 + b - y
        if enc_s is None:                                          # the first in the chain encrypts its part
            enc_s, enc_ss = [encrypt(vi) for vi in v], encrypt(v @ v)
        else:                                          # [[(s + v)^T (s + v)]] = [[s^T s]] + 2 v^T [[s]] + v^T v
            cross = sum((si * float(2.0 * vi) for si, vi in zip(enc_s, v, strict=True)), start=enc_s[0] * 0.0)
            enc_ss = _fixed(enc_ss + cross + float(v @ v), 2 * EXPONENT)
            enc_s = [si + float(vi) for si, vi in zip(enc_s, v, strict=True)]
        if k != 0:
            n_ct += len(enc_s) + 1                                 # party k sends [[s]] and [[s^T s]] on
    enc_ss = _fixed(enc_ss, 2 * EXPONENT)
    n_ct += (len(blocks) - 1) * len(enc_s) + 1                    # party 0: [[d]] to each party, [[d^T d]] to C
    return enc_s, enc_ss, n_ct


def _masked_gradient_sum(public_key, private_key, X, enc_d, with_intercept: bool, rng):
    """Steps 3-5 for one party: its ``X^T d`` (with ``1^T d`` first for party 0), via a masked decryption."""
    from phe import EncodedNumber

    columns = ([np.ones(X.shape[0])] if with_intercept else []) + list(X.T)
    enc_neg_d = [di * -1 for di in enc_d]         # [[-d_j]] once: phe would invert [[d_j]] for every x < 0
    enc_g = [_fixed(sum((di * float(xi) if xi >= 0 else ni * float(-xi)
                         for di, ni, xi in zip(enc_d, enc_neg_d, col, strict=True)), start=enc_d[0] * 0.0),
                    2 * EXPONENT) for col in columns]                                          # party: [[X^T d]]
    masks = [rng.randrange(public_key.n) for _ in enc_g]                                       # rho, uniform in Z_n
    sent = [g + EncodedNumber(public_key, r, g.exponent) for g, r in zip(enc_g, masks, strict=True)]
    seen = [private_key.decrypt_encoded(c).encoding for c in sent]                            # coordinator: g + rho
    S = np.array([EncodedNumber(public_key, (z - r) % public_key.n, c.exponent).decode()      # party: remove rho
                  for z, r, c in zip(seen, masks, sent, strict=True)], dtype=np.float64)
    return S, seen


def _check_key_bits(key_bits) -> int:
    key_bits = valid.integer("key_bits", key_bits)
    if key_bits < MIN_KEY_BITS:
        raise ValueError(f"key_bits must be at least {MIN_KEY_BITS} (MIN_KEY_BITS; 2048 or more for real use), "
                         f"got {key_bits}")
    return key_bits


def _fixed(enc, exponent: int):
    """``enc`` with the public exponent set to ``exponent`` (left lower only for values below 2^-75)."""
    return enc.decrease_exponent_to(exponent) if enc.exponent > exponent else enc


def _check_blocks(blocks, y):
    if not isinstance(blocks, (list, tuple)) or len(blocks) == 0:
        raise TypeError(f"blocks must be a non-empty list of feature matrices, one per party, got "
                        f"{type(blocks).__name__}" + (" of length 0" if isinstance(blocks, (list, tuple)) else ""))
    blocks = [valid.features(X, name=f"blocks[{k}]") for k, X in enumerate(blocks)]
    m = blocks[0].shape[0]
    for k, X in enumerate(blocks[1:], start=1):
        if X.shape[0] != m:
            raise ValueError(f"blocks must have the same number of rows, one per common ID in the same order "
                             f"(align them with vertical.align), got {m} rows in blocks[0] and {X.shape[0]} in "
                             f"blocks[{k}]")
    return blocks, valid.targets(y, m, x_name="blocks[0]")
