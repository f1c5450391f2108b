r"""Communication and compression: codecs a party applies to its update before sending it.

In federated learning the uplink is the bottleneck: every round each party
sends a vector as long as the model. A *codec* :math:`C` sends fewer bits; the
server aggregates the decoded vectors :math:`C(\Delta_i)` instead of
:math:`\Delta_i`. Each codec here is a client transform for
:func:`fl_helpers.train` (``client_transform=compression.TopK(k=10)``): its
payload, an :class:`Encoded`, holds the arrays actually sent
(``wire_arrays()``, counted by :mod:`fl_helpers.wire` in ``History.bytes_up``)
and decodes to the dense float64 vector the server adds up (``__array__``).
The server decodes from the sent arrays alone, plus what both sides know
before training: the length :math:`d` of the update and the codec's settings
(:math:`k`, :math:`s`, the value dtype). Those are never counted.

Bytes sent for an update of length :math:`d`, values in ``dtype`` of :math:`b` bytes (4 or 8):

- :class:`TopK` (biased): the :math:`k` entries of largest :math:`|x_j|` (ties: lowest index),
  zeros elsewhere. Values and their indices, the indices in the smallest unsigned dtype that
  holds :math:`d - 1` (uint8 up to :math:`d = 256`, uint16 up to 65 536, then uint32):
  :math:`k\,(b + b_{\text{index}})` bytes.
- :class:`RandomK` (unbiased when scaled): :math:`\frac dk x_j` on :math:`k` coordinates drawn
  uniformly without replacement. The values and a uint64 seed, from which the server regenerates
  the indices: :math:`k\,b + 8` bytes.
- :class:`QSGD` (unbiased): :math:`\lVert x\rVert_2\,\mathrm{sgn}(x_j)\,\ell_j/s`, the level
  :math:`\ell_j \in \{0, \dots, s\}` a random rounding of :math:`s|x_j|/\lVert x\rVert_2`. The norm,
  and a sign bit and a level of each coordinate, bit-packed:
  :math:`b + \lceil d\,(1 + \lceil\log_2(s + 1)\rceil)/8\rceil` bytes.
- :class:`Sign` (biased): :math:`\frac{\lVert x\rVert_1}{d}\,\mathrm{sgn}(x)`. The scale and one
  bit a coordinate: :math:`b + \lceil d/8\rceil` bytes.

Each party also sends its weight (in the engine's dtype: 8 bytes for float64), which ``bytes_up`` adds.

- Top-k sparsification: Aji and Heafield (2017), "Sparse Communication for
  Distributed Gradient Descent"; Stich, Cordonnier and Jaggi (2018),
  "Sparsified SGD with Memory" (top-k and random-k with error feedback).
- QSGD: Alistarh, Grubic, Li, Tomioka and Vojnovic (2017), "QSGD:
  Communication-Efficient SGD via Gradient Quantization and Encoding". Lemma
  3.1: :math:`E[Q_s(v)] = v` and :math:`E\lVert Q_s(v) - v\rVert^2 \le
  \min(d/s^2, \sqrt d/s)\lVert v\rVert^2`. (The paper's Elias coding of the
  levels is not done here: every coordinate takes the same number of bits.)
- Scaled sign: Karimireddy, Rebjock, Stich and Jaggi (2019), "Error Feedback
  Fixes SignSGD and other Gradient Compression Schemes" (Bernstein et al.
  2018, signSGD, without the scale).

**Error feedback** (``error_feedback=True``; Seide et al. 2014, "1-bit
stochastic gradient descent ..."; Stich et al. 2018; Karimireddy et al.
2019). Party :math:`i` keeps the residual :math:`e_i` (zero at first) of what
compression left out, and in each round it takes part:

.. math::
    s_i = C(\Delta_i + e_i)\ \text{is sent},\qquad e_i \leftarrow \Delta_i + e_i - s_i,

so nothing is lost, only delayed: :math:`\sum_t s_{i,t} + e_{i,T} = \sum_t
\Delta_{i,t}`. Biased codecs (top-k, sign) need it to converge. It keeps the
residual bounded only for a codec that *contracts*, :math:`E\lVert C(x) - x\rVert^2
\le (1 - \delta)\lVert x\rVert^2` with :math:`\delta > 0` (Stich et al. 2018;
Karimireddy et al. 2019): top-k (:math:`\delta = k/d`), unscaled random-k
(:math:`k/d`), sign (at least :math:`1/d`) and QSGD with :math:`s > \sqrt d`
levels do; random-k scaled by :math:`d/k` (a factor :math:`d/k - 1`) and QSGD
with few levels (up to :math:`\min(d/s^2, \sqrt d/s)`) do not, and the residual
grows geometrically. So random-k with error feedback is unscaled by default.
The updates are pseudo-gradients (:math:`\Delta_i = (\theta - \theta_i)/\eta`);
with a constant learning rate this is the papers' rule on :math:`\eta\Delta_i`.

Randomness comes only from the ``rng`` that :func:`~fl_helpers.train` passes
(the ``"transform"`` stream of party :math:`i` in round :math:`t`); top-k and
sign draw none (``uses_rng = False``).
"""

from __future__ import annotations

import math

import numpy as np

from . import validation as valid
from . import wire

#: Value dtypes a codec may send.
DTYPES = ("float32", "float64")

#: The most levels :class:`QSGD` takes (a sign bit and a level in 0..2^16 fit in 18 bits).
MAX_LEVELS = 2 ** 16


# --------------------------------------------------------------------------- bits and indices

def index_dtype(size: int) -> np.dtype:
    """The smallest unsigned integer dtype that holds every index ``0 .. size - 1``."""
    size = valid.integer("size", size, minimum=1)
    for dtype in (np.uint8, np.uint16, np.uint32, np.uint64):
        if size - 1 <= np.iinfo(dtype).max:
            return np.dtype(dtype)
    raise ValueError(f"size must be an integer in [1, 2**64], got {size}")


def _width(bits: int) -> int:
    """Bytes of the smallest big-endian unsigned integer that holds ``bits`` bits."""
    return next(w for w in (1, 2, 4, 8) if bits <= 8 * w)


def pack_bits(values, bits: int) -> np.ndarray:
    r"""Pack non-negative integers below :math:`2^{\text{bits}}`, ``bits`` bits each, into bytes.

    Most significant bit first, one value after the other, the last byte
    padded with zeros: ``n`` values take :math:`\lceil n\,\text{bits}/8\rceil`
    bytes. ``pack_bits([1, 0, 3], 2)`` is ``01 00 11 00`` = ``[0x4C]``.
    :func:`unpack_bits` undoes it.
    """
    bits = valid.integer("bits", bits, minimum=1, maximum=64)
    v = np.asarray(values)
    if v.ndim != 1 or not (v.dtype.kind in "ub" or (v.dtype.kind == "i")):
        raise TypeError(f"values must be a 1-D array of integers, got {v.dtype} of shape {v.shape}")
    if v.size and v.dtype.kind == "i" and v.min() < 0:
        raise ValueError(f"values must be integers in [0, 2**{bits} - 1], got {int(v.min())}")
    v = v.astype(np.uint64)
    if v.size and bits < 64 and v.max() >> np.uint64(bits):
        raise ValueError(f"values must be integers in [0, 2**{bits} - 1], got {int(v.max())}")
    w = _width(bits)
    rows = v.astype(f">u{w}").view(np.uint8).reshape(-1, w)        # each value, big-endian bytes
    matrix = np.unpackbits(rows, axis=1)[:, 8 * w - bits:]         # its last `bits` bits
    return np.packbits(matrix.ravel())


def unpack_bits(packed, bits: int, count: int) -> np.ndarray:
    """The ``count`` integers (uint64) that :func:`pack_bits` packed, ``bits`` bits each."""
    bits = valid.integer("bits", bits, minimum=1, maximum=64)
    count = valid.integer("count", count, minimum=0)
    packed = np.asarray(packed)
    if packed.dtype != np.uint8 or packed.ndim != 1:
        raise TypeError(f"packed must be a 1-D uint8 array, got {packed.dtype} of shape {packed.shape}")
    need = -(-count * bits // 8)
    if packed.size != need:
        raise ValueError(f"packed must hold ceil({count} * {bits} / 8) = {need} bytes, got {packed.size}")
    w = _width(bits)
    matrix = np.unpackbits(packed, count=count * bits).reshape(count, bits)
    padded = np.zeros((count, 8 * w), dtype=np.uint8)
    padded[:, 8 * w - bits:] = matrix
    return np.packbits(padded, axis=1).view(f">u{w}").ravel().astype(np.uint64)


# --------------------------------------------------------------------------- the payload

class Encoded:
    """What one party sends: the arrays on the wire, and the dense vector the server decodes from them.

    ``wire_arrays()`` are the arrays sent, in their own dtypes (what
    :func:`fl_helpers.wire.nbytes` counts); ``np.asarray(encoded)`` is the
    codec's decoding of exactly those arrays, a read-only float64 vector of
    length ``size``.
    """

    def __init__(self, codec: Codec, size: int, arrays: tuple):
        self.codec, self.size, self.arrays = codec, int(size), tuple(arrays)
        self._dense = None

    def wire_arrays(self) -> tuple:
        return self.arrays

    @property
    def nbytes(self) -> int:
        """Bytes on the wire."""
        return wire.nbytes(self.arrays)

    def decode(self) -> np.ndarray:
        """The dense float64 vector the server aggregates (computed once, read-only)."""
        if self._dense is None:
            dense = np.asarray(self.codec.decode(self.arrays, self.size), dtype=np.float64)
            dense.setflags(write=False)
            self._dense = dense
        return self._dense

    def __array__(self, dtype=None, copy=None):
        dense = self.decode()
        if dtype is not None and np.dtype(dtype) != dense.dtype:
            return dense.astype(dtype)
        return dense.copy() if copy else dense

    def __repr__(self) -> str:
        return f"Encoded({self.codec!r}, size={self.size}, nbytes={self.nbytes})"


# --------------------------------------------------------------------------- codecs

def _dtype(value) -> np.dtype:
    try:
        name = None if value is None else np.dtype(value).name
    except TypeError:
        name = None
    if name not in DTYPES:
        raise ValueError(f"dtype must be one of {', '.join(map(repr, DTYPES))}; got {value!r}")
    return np.dtype(name)


def _flag(name: str, value) -> bool:
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name} must be True or False, got {value!r}")
    return bool(value)


def _vector(vector) -> np.ndarray:
    """``vector`` as a float64 1-D array with at least one entry (non-finite entries pass: a diverging run)."""
    try:
        x = np.asarray(vector, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise TypeError(f"vector must be a numeric 1-D array, got {type(vector).__name__}") from exc
    if x.ndim != 1 or x.size == 0:
        raise ValueError(f"vector must be a 1-D array with at least one entry, got shape {x.shape}")
    return x


def _generator(rng) -> np.random.Generator:
    if not isinstance(rng, np.random.Generator):
        raise TypeError(f"rng must be a numpy.random.Generator (train passes one per party and round), "
                        f"got {type(rng).__name__}")
    return rng


class Codec:
    r"""A codec and the client transform that applies it, with optional error feedback.

    ``encode(vector, rng) -> Encoded``; ``decode(arrays, size) -> ndarray``;
    called as ``transform(update, *, party, round, rng)`` by ``train``.
    ``residuals`` maps each party to its error-feedback residual :math:`e_i`.
    The residuals belong to one run: a call for a round before the latest one
    seen, or for a party already seen in this round, starts over (as does
    :meth:`reset`). ``metrics`` adds ``"compression_ratio"`` (bytes of the
    dense float64 updates over bytes sent, this round) and, with error
    feedback, ``"residual_norm"`` (the mean :math:`\lVert e_i\rVert` of the
    round's parties after it) to ``History.metrics``.
    """

    name = ""
    unbiased = False

    def __init__(self, *, error_feedback: bool, dtype):
        self.error_feedback = _flag("error_feedback", error_feedback)
        self.dtype = _dtype(dtype)
        self.reset()

    def start(self, theta, n_parties) -> None:
        """Called by ``train`` before round 1: a new run starts with no residuals (:meth:`reset`)."""
        self.reset()

    def reset(self) -> None:
        """Forget every residual and counter (a new run)."""
        self.residuals: dict[int, np.ndarray] = {}
        self.encoded = 0                          # payloads encoded by the transform
        self.bytes_sent = 0                       # their bytes on the wire
        self._round, self._seen = None, set()
        self._tally = [0, 0, []]                  # this round: dense bytes, bytes sent, residual norms

    def encode(self, vector, rng=None) -> Encoded:
        raise NotImplementedError

    def decode(self, arrays, size: int) -> np.ndarray:
        raise NotImplementedError

    def __call__(self, update, *, party, round, rng) -> Encoded:
        party, round = int(party), int(round)
        if self._round is not None and (round < self._round or (round == self._round and party in self._seen)):
            self.reset()                          # a new run
        if round != self._round:
            self._round, self._seen, self._tally = round, set(), [0, 0, []]
        self._seen.add(party)
        x = _vector(update)
        if self.error_feedback:
            residual = self.residuals.get(party)
            if residual is not None:
                if residual.shape != x.shape:
                    raise ValueError(f"update must have the shape {residual.shape} of party {party}'s residual, "
                                     f"got {x.shape}")
                x = x + residual
        out = self.encode(x, rng)
        if self.error_feedback:
            self.residuals[party] = x - out.decode()
            self._tally[2].append(float(np.linalg.norm(self.residuals[party])))
        sent = out.nbytes
        self.encoded += 1
        self.bytes_sent += sent
        self._tally[0] += 8 * x.size
        self._tally[1] += sent
        return out

    def metrics(self, info) -> dict:
        here = self._round == info.round and self._tally[1] > 0
        out = {"compression_ratio": self._tally[0] / self._tally[1] if here else math.nan}
        if self.error_feedback:
            out["residual_norm"] = float(np.mean(self._tally[2])) if here else math.nan
        return out

    def _repr(self, *settings) -> str:
        extra = [s for s in settings if s] + [f"error_feedback={self.error_feedback}"]
        if self.dtype != np.float32:
            extra.append(f"dtype='{self.dtype.name}'")
        return f"{type(self).__name__}({', '.join(extra)})"


class _Sparse(Codec):
    """Shared by top-k and random-k: ``k`` entries, given as a count or as a fraction of ``d``."""

    def __init__(self, k, fraction, *, error_feedback, dtype):
        if (k is None) == (fraction is None):
            raise ValueError(f"{type(self).__name__} needs exactly one of k (a count) and fraction (a share of "
                             f"the update's d entries), got k={k!r}, fraction={fraction!r}")
        self.k = None if k is None else valid.integer("k", k, minimum=1)
        self.fraction = None if fraction is None else valid.fraction(fraction)
        super().__init__(error_feedback=error_feedback, dtype=dtype)

    def k_for(self, d: int) -> int:
        """The number of entries sent of an update of length ``d``: ``k``, or ``max(1, round(fraction * d))``."""
        if self.k is None:
            return max(1, int(round(self.fraction * d)))
        if self.k > d:
            raise ValueError(f"k must be an integer in [1, d] = [1, {d}] (d: the update's length), got {self.k}")
        return self.k

    def _settings(self) -> str:
        return f"k={self.k}" if self.k is not None else f"fraction={self.fraction}"


class TopK(_Sparse):
    r"""Top-k sparsification: send the ``k`` entries of largest magnitude, as values and indices. Biased.

    ``TopK(k=10)`` or ``TopK(fraction=0.01)`` (``k = max(1, round(fraction * d))``).
    Ties in :math:`|x_j|` go to the lowest index. Sent: the values in ``dtype``
    and their indices, sorted, in the smallest unsigned dtype that holds
    :math:`d - 1` (:func:`index_dtype`): :math:`k(b + b_{\text{index}})` bytes.
    Biased (:math:`E[C(x)] = C(x) \ne x`); use ``error_feedback=True``.
    """

    uses_rng = False
    name = "topk"

    def __init__(self, k: int | None = None, *, fraction: float | None = None, error_feedback: bool = False,
                 dtype="float32"):
        super().__init__(k, fraction, error_feedback=error_feedback, dtype=dtype)

    def __repr__(self) -> str:
        return self._repr(self._settings())

    def encode(self, vector, rng=None) -> Encoded:
        x = _vector(vector)
        d = x.size
        k = self.k_for(d)
        a = np.abs(x)
        a[np.isnan(a)] = np.inf                   # a NaN counts as the largest magnitude
        if k == d:
            idx = np.arange(d)
        else:
            kth = np.partition(a, d - k)[d - k]   # the k-th largest magnitude
            above = np.flatnonzero(a > kth)       # fewer than k of them
            ties = np.flatnonzero(a == kth)[:k - above.size]
            idx = np.sort(np.concatenate([above, ties]))
        return Encoded(self, d, (x[idx].astype(self.dtype), idx.astype(index_dtype(d))))

    def decode(self, arrays, size: int) -> np.ndarray:
        values, indices = arrays
        dense = np.zeros(size)
        dense[indices] = values
        return dense


class RandomK(_Sparse):
    r"""Random-k sparsification: ``k`` coordinates drawn uniformly without replacement.

    The party draws a 64-bit seed from its ``rng`` and the indices from the
    seed; it sends the ``k`` values (in ``dtype``) and the seed (uint64,
    8 bytes), and the server regenerates the same indices from the seed:
    :math:`kb + 8` bytes, no indices on the wire. ``unbiased=True`` (the
    default without error feedback) scales by :math:`d/k` on decoding, so
    :math:`E[C(x)] = x` with :math:`E\lVert C(x) - x\rVert^2 = (d/k - 1)\lVert x\rVert^2`;
    ``unbiased=False`` (the default with error feedback, Stich et al. 2018)
    does not: :math:`E\lVert C(x) - x\rVert^2 = (1 - k/d)\lVert x\rVert^2 < \lVert x\rVert^2`.
    """

    uses_rng = True
    name = "randomk"

    def __init__(self, k: int | None = None, *, fraction: float | None = None, unbiased: bool | None = None,
                 error_feedback: bool = False, dtype="float32"):
        super().__init__(k, fraction, error_feedback=error_feedback, dtype=dtype)
        self.unbiased = not self.error_feedback if unbiased is None else _flag("unbiased", unbiased)

    def __repr__(self) -> str:
        return self._repr(self._settings(), f"unbiased={self.unbiased}")

    @staticmethod
    def indices(seed, size: int, k: int) -> np.ndarray:
        """The ``k`` coordinates (in draw order) that ``seed`` stands for, as party and server both compute them."""
        return np.random.default_rng(int(seed)).choice(size, size=k, replace=False)

    def encode(self, vector, rng=None) -> Encoded:
        x = _vector(vector)
        rng = _generator(rng)
        k = self.k_for(x.size)
        seed = rng.integers(0, 2 ** 64 - 1, dtype=np.uint64, endpoint=True)
        values = x[self.indices(seed, x.size, k)].astype(self.dtype)
        return Encoded(self, x.size, (values, np.array([seed], dtype=np.uint64)))

    def decode(self, arrays, size: int) -> np.ndarray:
        values, seed = arrays
        k = values.size
        dense = np.zeros(size)
        dense[self.indices(seed[0], size, k)] = values.astype(np.float64) * (size / k if self.unbiased else 1.0)
        return dense


class QSGD(Codec):
    r"""QSGD's stochastic quantisation with ``levels`` :math:`s` (Alistarh et al. 2017). Unbiased.

    .. math:: Q_s(x)_j = \lVert x\rVert_2\,\mathrm{sgn}(x_j)\,\ell_j/s,

    where :math:`\ell_j` rounds :math:`r_j = s|x_j|/\lVert x\rVert_2 \in [0, s]`
    up with probability :math:`r_j - \lfloor r_j\rfloor`, down otherwise, so
    :math:`E[Q_s(x)] = x`. Sent: the norm (one number in ``dtype``, rounded up
    so that :math:`r_j \le s`) and, per coordinate, a sign bit and the level in
    :math:`\lceil\log_2(s + 1)\rceil` bits, bit-packed (:func:`pack_bits`):
    :math:`b + \lceil d(1 + \lceil\log_2(s+1)\rceil)/8\rceil` bytes.
    """

    uses_rng = True
    unbiased = True
    name = "qsgd"

    def __init__(self, levels: int, *, error_feedback: bool = False, dtype="float32"):
        self.levels = valid.integer("levels", levels, minimum=1, maximum=MAX_LEVELS)
        self.bits = 1 + self.levels.bit_length()          # a sign bit and the level 0..s
        super().__init__(error_feedback=error_feedback, dtype=dtype)

    def __repr__(self) -> str:
        return self._repr(f"levels={self.levels}")

    def encode(self, vector, rng=None) -> Encoded:
        x = _vector(vector)
        rng = _generator(rng)
        s = self.levels
        norm = float(np.linalg.norm(x))
        sent = np.array([norm], dtype=self.dtype)
        if float(sent[0]) < norm:                         # round the norm up: r_j <= s
            sent = np.nextafter(sent, np.array([np.inf], dtype=self.dtype))
        u = rng.random(x.size)
        if math.isfinite(float(sent[0])) and sent[0] > 0:
            r = np.minimum(np.abs(x) * (s / float(sent[0])), s)
            low = np.floor(r)
            level = (low + (u < r - low)).astype(np.uint64)
        else:                                             # zero (or non-finite) norm: decodes to 0 (or NaN)
            level = np.zeros(x.size, dtype=np.uint64)
        symbol = (np.signbit(x).astype(np.uint64) << np.uint64(self.bits - 1)) | level
        return Encoded(self, x.size, (sent, pack_bits(symbol, self.bits)))

    def decode(self, arrays, size: int) -> np.ndarray:
        norm, packed = arrays
        symbol = unpack_bits(packed, self.bits, size)
        shift = np.uint64(self.bits - 1)
        level = (symbol & ((np.uint64(1) << shift) - np.uint64(1))).astype(np.float64)
        sign = np.where(symbol >> shift, -1.0, 1.0)
        return float(norm[0]) * sign * (level / self.levels)


class Sign(Codec):
    r"""Scaled sign compression: :math:`C(x) = \frac{\lVert x\rVert_1}{d}\,\mathrm{sgn}(x)` (Karimireddy et al. 2019).

    Sent: the scale (one number in ``dtype``) and one bit per coordinate
    (1: negative, ``np.signbit``: +0.0 goes as positive, -0.0 as negative), packed: :math:`b + \lceil d/8\rceil`
    bytes. Biased; with ``error_feedback=True`` it is EF-SignSGD.
    """

    uses_rng = False
    name = "sign"

    def __init__(self, *, error_feedback: bool = False, dtype="float32"):
        super().__init__(error_feedback=error_feedback, dtype=dtype)

    def __repr__(self) -> str:
        return self._repr()

    def encode(self, vector, rng=None) -> Encoded:
        x = _vector(vector)
        scale = np.array([np.abs(x).sum() / x.size], dtype=self.dtype)
        return Encoded(self, x.size, (scale, np.packbits(np.signbit(x))))

    def decode(self, arrays, size: int) -> np.ndarray:
        scale, packed = arrays
        return float(scale[0]) * np.where(np.unpackbits(packed, count=size), -1.0, 1.0)


#: The codecs by name, for :func:`codec`.
CODECS = {"topk": TopK, "randomk": RandomK, "qsgd": QSGD, "sign": Sign}


def codec(name: str, **kwargs) -> Codec:
    """The codec ``name`` with its settings: ``codec("topk", k=10)``, ``codec("qsgd", levels=4)``.

    Names: ``"topk"``, ``"randomk"``, ``"qsgd"``, ``"sign"`` (see :data:`CODECS`).
    """
    if not isinstance(name, str) or name not in CODECS:
        raise ValueError(f"codec name must be one of {', '.join(map(repr, CODECS))}; got {name!r}")
    return CODECS[name](**kwargs)
