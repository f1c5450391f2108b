"""fl_helpers.compression: codecs count the bytes they send, decode what they sent, and keep their promises.

References independent of the codecs' code: sizes counted by hand (values x
bytes per value + indices x bytes per index, bits / 8), bit strings written
out in Python, the indices a seed stands for drawn here with numpy, the exact
variance of each codec in closed form (Monte Carlo means and spreads checked
against it within 5 standard errors), QSGD's Lemma 3.1 (Alistarh et al. 2017),
sorting for top-k, and ``History.bytes_up`` of a real ``train`` run.
"""

from __future__ import annotations

import math
import re

import numpy as np
import pytest

import fl_helpers as fl
from fl_helpers import compression, wire
from fl_helpers.compression import QSGD, RandomK, Sign, TopK

N, P = 8, 21                                          # 8 parties, p = d + 1 = 21 parameters


@pytest.fixture(scope="module")
def parties():
    X, y, _ = fl.make_regression(160, P - 1, noise=0.5, seed=0)
    return fl.split(X, y, N, seed=1)


def bit_string(packed: np.ndarray) -> str:
    """The bytes as a string of '0' and '1', most significant bit first."""
    return "".join(format(int(b), "08b") for b in packed)


def dense(payload) -> np.ndarray:
    return np.asarray(payload, dtype=np.float64)


# ------------------------------------------------------------------------------ bit packing and index dtypes

def test_pack_bits_by_hand():
    np.testing.assert_array_equal(compression.pack_bits(np.array([1, 0, 3]), 2), [0b01001100])
    np.testing.assert_array_equal(compression.pack_bits(np.array([5, 1]), 3), [0b10100100])
    np.testing.assert_array_equal(compression.pack_bits(np.array([True, False, True]), 1), [0b10100000])
    assert compression.pack_bits(np.array([], dtype=np.uint8), 5).size == 0


@pytest.mark.parametrize("bits", [1, 2, 3, 5, 7, 8, 9, 13, 16, 17, 31, 32, 33, 63, 64])
def test_pack_bits_round_trips_and_matches_a_bit_string(bits):
    rng = np.random.default_rng(bits)
    n = 37
    values = rng.integers(0, 2 ** bits - 1, size=n, dtype=np.uint64, endpoint=True)
    values[0], values[1] = 0, 2 ** bits - 1                           # both ends of the range
    packed = compression.pack_bits(values, bits)
    assert packed.dtype == np.uint8 and packed.size == math.ceil(n * bits / 8)
    expected = "".join(format(int(v), f"0{bits}b") for v in values)   # each value in `bits` bits, in turn
    assert bit_string(packed) == expected.ljust(8 * packed.size, "0")
    back = compression.unpack_bits(packed, bits, n)
    np.testing.assert_array_equal(back, values)


@pytest.mark.parametrize("size, dtype", [(1, np.uint8), (256, np.uint8), (257, np.uint16), (65536, np.uint16),
                                         (65537, np.uint32), (2 ** 32, np.uint32), (2 ** 32 + 1, np.uint64)])
def test_index_dtype_is_the_smallest_that_holds_every_index(size, dtype):
    assert compression.index_dtype(size) == np.dtype(dtype)
    assert np.iinfo(dtype).max >= size - 1


# ------------------------------------------------------------------------------ top-k

def test_topk_keeps_the_largest_magnitudes_and_ties_go_to_the_lowest_index():
    x = np.array([1.0, -3.0, 3.0, 2.0, -3.0, 0.5])
    for k, kept in [(1, [1]), (2, [1, 2]), (3, [1, 2, 4]), (4, [1, 2, 3, 4]), (6, [0, 1, 2, 3, 4, 5])]:
        values, indices = TopK(k=k).encode(x).wire_arrays()
        np.testing.assert_array_equal(indices, kept)
        np.testing.assert_array_equal(values, x[kept])
        want = np.zeros_like(x)
        want[kept] = x[kept]
        np.testing.assert_array_equal(dense(TopK(k=k).encode(x)), want)


def test_topk_matches_sorting_on_vectors_full_of_ties():
    rng = np.random.default_rng(0)
    for _ in range(50):
        d = int(rng.integers(1, 40))
        x = rng.integers(-3, 4, size=d).astype(np.float64)                # many equal magnitudes
        k = int(rng.integers(1, d + 1))
        reference = sorted(sorted(range(d), key=lambda j: (-abs(x[j]), j))[:k])
        _, indices = TopK(k=k, dtype="float64").encode(x).wire_arrays()
        assert list(indices) == reference


def test_topk_fraction_rounds_to_a_count_of_at_least_one():
    x = np.arange(1.0, 41.0)
    assert TopK(fraction=0.1).encode(x).wire_arrays()[0].size == 4
    assert TopK(fraction=0.01).encode(x).wire_arrays()[0].size == 1
    assert TopK(fraction=1.0).encode(x).wire_arrays()[0].size == 40


def test_topk_treats_nan_as_the_largest_magnitude():
    x = np.array([1.0, np.nan, -5.0])
    _, indices = TopK(k=2).encode(x).wire_arrays()
    np.testing.assert_array_equal(indices, [1, 2])


# ------------------------------------------------------------------------------ bytes: what the encoding holds

@pytest.mark.parametrize("d, k, dtype, value_bytes, index_bytes", [
    (200, 10, "float32", 4, 1), (1000, 10, "float32", 4, 2), (1000, 10, "float64", 8, 2),
    (70000, 7, "float32", 4, 4)])
def test_topk_bytes_are_values_plus_indices(d, k, dtype, value_bytes, index_bytes):
    x = np.random.default_rng(d).normal(size=d)
    enc = TopK(k=k, dtype=dtype).encode(x)
    assert enc.nbytes == wire.nbytes(enc) == k * (value_bytes + index_bytes)
    idx = np.sort(np.argsort(-np.abs(x))[:k])                         # no ties in Gaussian data
    assert wire.encode(enc) == (x[idx].astype(dtype).tobytes()
                                + idx.astype(f"<u{index_bytes}").tobytes())


@pytest.mark.parametrize("dtype, value_bytes", [("float32", 4), ("float64", 8)])
def test_randomk_sends_k_values_and_a_seed_and_the_seed_gives_the_indices(dtype, value_bytes):
    d, k = 1000, 10
    x = np.random.default_rng(1).normal(size=d)
    enc = RandomK(k=k, dtype=dtype).encode(x, np.random.default_rng(2))
    values, seed = enc.wire_arrays()
    assert enc.nbytes == wire.nbytes(enc) == k * value_bytes + 8
    assert seed.dtype == np.uint64 and seed.shape == (1,)
    idx = np.random.default_rng(int(seed[0])).choice(d, size=k, replace=False)   # what the server draws
    np.testing.assert_array_equal(values, x[idx].astype(dtype))
    want = np.zeros(d)
    want[idx] = x[idx].astype(dtype).astype(np.float64) * (d / k)
    np.testing.assert_allclose(dense(enc), want, rtol=1e-15, atol=0)
    assert wire.encode(enc) == values.tobytes() + seed.tobytes()


@pytest.mark.parametrize("d, s, bits", [(1000, 1, 2), (1000, 2, 3), (1000, 3, 3), (1000, 4, 4), (1000, 7, 4),
                                        (1000, 8, 5), (3, 1, 2), (21, 255, 9)])
def test_qsgd_bytes_are_a_norm_and_packed_signs_and_levels(d, s, bits):
    x = np.random.default_rng(s).normal(size=d)
    for dtype, b in (("float32", 4), ("float64", 8)):
        enc = QSGD(s, dtype=dtype).encode(x, np.random.default_rng(0))
        assert enc.nbytes == wire.nbytes(enc) == b + math.ceil(d * bits / 8)


def test_qsgd_decodes_from_the_bits_by_hand():
    """d = 5, s = 3: a sign bit and a 2-bit level each, 15 bits in 2 bytes; decoded here from the bit string."""
    x = np.array([0.3, -1.2, 0.0, 2.0, -0.05])
    enc = QSGD(3, dtype="float64").encode(x, np.random.default_rng(4))
    norm, packed = enc.wire_arrays()
    assert norm.dtype == np.float64 and norm[0] == np.linalg.norm(x) and packed.size == 2
    bits = bit_string(packed)
    assert bits[15:] == "0"                                           # padding
    want = []
    for j in range(5):
        sign, level = bits[3 * j], int(bits[3 * j + 1: 3 * j + 3], 2)
        assert sign == ("1" if x[j] < 0 else "0")
        r = 3 * abs(x[j]) / norm[0]                                   # the level rounds r up or down
        assert level in (math.floor(r), math.ceil(r))
        want.append((-1 if sign == "1" else 1) * norm[0] * level / 3)
    np.testing.assert_allclose(dense(enc), want, rtol=1e-15)


def test_qsgd_float32_norm_is_rounded_up_and_levels_stay_in_range():
    x = np.zeros(50)
    x[7] = 1.0 + 1e-9                                                 # all the norm on one coordinate
    enc = QSGD(4).encode(x, np.random.default_rng(0))
    norm, _ = enc.wire_arrays()
    assert norm.dtype == np.float32 and float(norm[0]) >= np.linalg.norm(x)
    out = dense(enc)
    assert out[7] == float(norm[0]) and np.count_nonzero(out) == 1    # level s, nothing above it


@pytest.mark.parametrize("d", [1, 8, 9, 1000, 1001])
def test_sign_bytes_are_a_scale_and_one_bit_a_coordinate(d):
    x = np.random.default_rng(d).normal(size=d)
    x[0] = 0.0                                                        # a zero goes as positive
    enc = Sign().encode(x)
    scale, packed = enc.wire_arrays()
    assert enc.nbytes == wire.nbytes(enc) == 4 + math.ceil(d / 8)
    assert scale[0] == np.float32(np.abs(x).sum() / d)
    assert bit_string(packed)[:d] == "".join("1" if v < 0 else "0" for v in x)
    np.testing.assert_array_equal(dense(enc), np.where(x < 0, -1.0, 1.0) * float(scale[0]))
    assert Sign(dtype="float64").encode(x).nbytes == 8 + math.ceil(d / 8)


@pytest.mark.parametrize("make", [lambda: TopK(k=3), lambda: RandomK(k=3),
                                  lambda: RandomK(fraction=0.2, unbiased=False), lambda: QSGD(5),
                                  lambda: Sign(dtype="float64")])
def test_the_server_decodes_from_the_wire_arrays_alone(make):
    x = np.random.default_rng(3).normal(size=17)
    enc = make().encode(x, np.random.default_rng(5))
    received = tuple(np.frombuffer(a.tobytes(), dtype=a.dtype) for a in enc.wire_arrays())  # bytes, re-read
    np.testing.assert_array_equal(make().decode(received, 17), dense(enc))


def test_train_counts_each_partys_encoded_bytes_and_its_weight(parties):
    cases = {                                      # p = 21 parameters, float32 values
        "topk": (TopK(k=5), 5 * (4 + 1)),
        "topk fraction": (TopK(fraction=0.25), 5 * (4 + 1)),        # round(0.25 * 21) = 5
        "randomk": (RandomK(k=5), 5 * 4 + 8),
        "qsgd": (QSGD(2), 4 + math.ceil(21 * 3 / 8)),
        "sign": (Sign(), 4 + math.ceil(21 / 8)),
        "sign float64": (Sign(dtype="float64"), 8 + math.ceil(21 / 8)),
    }
    for name, (transform, per_party) in cases.items():
        h = fl.fedsgd(parties, lr=0.05, rounds=3, seed=0, client_transform=transform, keep_updates=True)
        np.testing.assert_array_equal(h.bytes_up, np.full(3, N * (per_party + 8)), err_msg=name)  # + the weight
        np.testing.assert_allclose(h.metrics["compression_ratio"], 21 * 8 / per_party, rtol=1e-12, err_msg=name)
        if name.startswith("topk"):
            assert all(np.all(np.count_nonzero(u, axis=1) == 5) for u in h.updates)


def test_a_later_round_with_fewer_parties_counts_only_theirs(parties):
    h = fl.fedavg(parties, lr=0.05, rounds=4, fraction=0.5, seed=2, client_transform=Sign())
    np.testing.assert_array_equal(h.bytes_up, [len(s) * (4 + 3 + 8) for s in h.selected])


# ------------------------------------------------------------------------------ unbiased where claimed

def monte_carlo(codec, x, n, seed=0):
    rng = np.random.default_rng(seed)
    return np.array([dense(codec.encode(x, rng)) for _ in range(n)])


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_randomk_scaled_is_unbiased(dtype):
    """E[C(x)] = x; Var C(x)_j = x_j^2 (d/k - 1): the mean of n encodings within 5 standard errors."""
    d, k, n = 10, 3, 5000
    x = np.random.default_rng(7).normal(size=d)
    draws = monte_carlo(RandomK(k=k, dtype=dtype), x, n)
    se = np.abs(x) * math.sqrt(d / k - 1) / math.sqrt(n)
    assert np.all(np.abs(draws.mean(axis=0) - x) < 5 * se)
    np.testing.assert_allclose(draws.var(axis=0), x ** 2 * (d / k - 1), rtol=0.1)   # the variance, too


def test_randomk_unscaled_is_biased_by_k_over_d():
    d, k, n = 10, 3, 5000
    x = np.random.default_rng(7).normal(size=d)
    draws = monte_carlo(RandomK(k=k, unbiased=False, dtype="float64"), x, n)
    se = np.abs(x) * math.sqrt(k / d * (1 - k / d)) / math.sqrt(n)
    assert np.all(np.abs(draws.mean(axis=0) - k / d * x) < 5 * se)
    assert np.all(np.abs(draws.mean(axis=0) - x) > 20 * se)         # far from x: biased


def qsgd_variance(x, s, norm=None):
    """Exact per-coordinate variance of QSGD: (||x||/s)^2 p(1 - p), p the fractional part of s|x_j|/||x||."""
    norm = np.linalg.norm(x) if norm is None else norm
    r = s * np.abs(x) / norm
    p = r - np.floor(r)
    return (norm / s) ** 2 * p * (1 - p)


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("s", [1, 2, 5])
def test_qsgd_is_unbiased(s, dtype):
    d, n = 12, 5000
    x = np.random.default_rng(s).normal(size=d)
    draws = monte_carlo(QSGD(s, dtype=dtype), x, n)
    var = qsgd_variance(x, s)
    se = np.sqrt(var / n) + 1e-12
    assert np.all(np.abs(draws.mean(axis=0) - x) < 5 * se)
    assert abs(draws.var(axis=0).sum() / var.sum() - 1) < 0.05


@pytest.mark.parametrize("d, s", [(12, 1), (12, 4), (400, 1), (400, 3), (400, 40)])
def test_qsgd_variance_bound_of_lemma_3_1(d, s):
    """E||Q_s(v) - v||^2 <= min(d/s^2, sqrt(d)/s) ||v||^2, measured by Monte Carlo and checked in closed form."""
    rng = np.random.default_rng(d + s)
    bound = min(d / s ** 2, math.sqrt(d) / s)
    for v in (rng.normal(size=d), np.ones(d), rng.standard_cauchy(size=d)):
        exact = qsgd_variance(v, s).sum()
        assert exact <= bound * (v @ v)
        errors = ((monte_carlo(QSGD(s, dtype="float64"), v, 1000, seed=s) - v) ** 2).sum(axis=1)
        assert abs(errors.mean() - exact) < 5 * errors.std() / math.sqrt(len(errors)) + 1e-12
        assert errors.mean() <= bound * (v @ v)


def test_qsgd_variance_bound_is_nearly_tight_for_a_flat_vector():
    """v = (1, ..., 1), s = 1: each level is 1 with probability 1/sqrt(d), so E||Q(v) - v||^2 = d (sqrt(d) - 1)."""
    d = 400
    v = np.ones(d)
    errors = ((monte_carlo(QSGD(1, dtype="float64"), v, 2000) - v) ** 2).sum(axis=1)
    by_hand = d * (math.sqrt(d) - 1)                                  # 7600, the bound sqrt(d) ||v||^2 = 8000
    assert abs(errors.mean() - by_hand) < 5 * errors.std() / math.sqrt(len(errors))
    assert errors.mean() < math.sqrt(d) * d


def test_topk_and_sign_are_biased():
    """Deterministic, so E[C(x)] = C(x), and on x = (3, 1) that is not x."""
    x = np.array([3.0, 1.0])
    np.testing.assert_array_equal(dense(TopK(k=1).encode(x)), [3.0, 0.0])
    np.testing.assert_array_equal(dense(Sign().encode(x)), [2.0, 2.0])
    assert not TopK.unbiased and not Sign.unbiased and QSGD.unbiased and RandomK(k=1).unbiased


# ------------------------------------------------------------------------------ error feedback

@pytest.mark.parametrize("make", [lambda: TopK(k=2, error_feedback=True), lambda: RandomK(k=2, error_feedback=True),
                                  lambda: QSGD(2, error_feedback=True), lambda: Sign(error_feedback=True),
                                  lambda: RandomK(k=2, unbiased=True, error_feedback=True)])
def test_error_feedback_loses_nothing(make):
    """sum_t sent_t + e_T = sum_t Delta_t for each party (to rounding)."""
    ef = make()
    rng = np.random.default_rng(0)
    raw = {0: [], 3: []}
    sent = {0: [], 3: []}
    for t in range(1, 31):
        for i in (0, 3):
            delta = rng.normal(size=9) * (1 + i)
            raw[i].append(delta)
            sent[i].append(dense(ef(delta, party=i, round=t, rng=np.random.default_rng([t, i]))))
    for i in (0, 3):
        scale = max(1.0, np.abs(sent[i]).max(), np.abs(ef.residuals[i]).max())   # rounding is relative
        np.testing.assert_allclose(np.sum(sent[i], axis=0) + ef.residuals[i], np.sum(raw[i], axis=0),
                                   rtol=0, atol=1e-12 * scale)
        assert np.linalg.norm(ef.residuals[i]) > 0


@pytest.mark.parametrize("make, contracts", [
    (lambda: TopK(k=2, error_feedback=True), True),              # E||C(x) - x||^2 <= (1 - k/d) ||x||^2
    (lambda: RandomK(k=2, error_feedback=True), True),           # unscaled: (1 - k/d) ||x||^2 on average
    (lambda: Sign(error_feedback=True), True),                   # ||x||^2 - ||x||_1^2 / d <= (1 - 1/d) ||x||^2
    (lambda: QSGD(4, error_feedback=True), True),                # s > sqrt(d): min(d/s^2, sqrt(d)/s) < 1
    (lambda: RandomK(k=2, unbiased=True, error_feedback=True), False),   # (d/k - 1) = 3.5 > 1
    (lambda: QSGD(1, error_feedback=True), False),               # up to sqrt(d) = 3 > 1
])
def test_error_feedback_needs_a_codec_that_contracts(make, contracts):
    """The residual stays near the size of an update when C contracts, and grows geometrically when it does not."""
    ef = make()
    rng = np.random.default_rng(1)
    for t in range(1, 61):
        ef(rng.normal(size=9), party=0, round=t, rng=np.random.default_rng(t))   # ||Delta|| about 3
    norm = np.linalg.norm(ef.residuals[0])
    assert (norm < 30) if contracts else (norm > 1e4)


def test_error_feedback_sends_the_compressed_sum_of_update_and_residual():
    ef = TopK(k=1, error_feedback=True, dtype="float64")
    a = ef(np.array([3.0, 2.0, 0.0]), party=0, round=1, rng=None)
    np.testing.assert_array_equal(dense(a), [3.0, 0.0, 0.0])         # no residual yet: C(Delta)
    np.testing.assert_array_equal(ef.residuals[0], [0.0, 2.0, 0.0])
    b = ef(np.array([1.0, 1.5, 0.0]), party=0, round=2, rng=None)    # C((1, 3.5, 0)) = (0, 3.5, 0)
    np.testing.assert_array_equal(dense(b), [0.0, 3.5, 0.0])
    np.testing.assert_array_equal(ef.residuals[0], [1.0, 0.0, 0.0])


def test_error_feedback_identity_holds_in_a_train_run(parties):
    ef = Sign(error_feedback=True)
    raw: dict[int, list] = {}

    def recording(update, *, party, round, rng):
        raw.setdefault(party, []).append(update.copy())
        return ef(update, party=party, round=round, rng=rng)

    h = fl.fedavg(parties, lr=0.05, rounds=6, fraction=0.5, seed=3, client_transform=recording, keep_updates=True)
    sent: dict[int, list] = {}
    for selected, updates in zip(h.selected, h.updates, strict=True):   # what the server aggregated
        for i, u in zip(selected, updates, strict=True):
            sent.setdefault(int(i), []).append(u)
    assert sorted(sent) == sorted(raw) == sorted(ef.residuals)
    for i in raw:
        np.testing.assert_allclose(np.sum(sent[i], axis=0) + ef.residuals[i], np.sum(raw[i], axis=0),
                                   rtol=0, atol=1e-12)


def test_a_new_run_starts_without_residuals(parties):
    ef = TopK(k=2, error_feedback=True)
    first = fl.fedsgd(parties, lr=0.05, rounds=5, seed=1, client_transform=ef)
    again = fl.fedsgd(parties, lr=0.05, rounds=5, seed=1, client_transform=ef)
    np.testing.assert_array_equal(again.thetas, first.thetas)
    one = TopK(k=2, error_feedback=True)
    a = fl.fedsgd(parties, lr=0.05, rounds=1, seed=1, client_transform=one)
    b = fl.fedsgd(parties, lr=0.05, rounds=1, seed=1, client_transform=one)
    np.testing.assert_array_equal(a.thetas, b.thetas)


# ------------------------------------------------------------------------------ randomness and training

def test_randomness_comes_only_from_the_rng_train_passes(parties):
    for make in (lambda: RandomK(k=4), lambda: QSGD(3)):
        a = fl.fedsgd(parties, lr=0.05, rounds=3, seed=9, client_transform=make())
        b = fl.fedsgd(parties, lr=0.05, rounds=3, seed=9, client_transform=make())
        c = fl.fedsgd(parties, lr=0.05, rounds=3, seed=10, client_transform=make())
        np.testing.assert_array_equal(a.thetas, b.thetas)
        assert not np.array_equal(a.thetas, c.thetas)
    for codec, draws in ((TopK, False), (Sign, False), (RandomK, True), (QSGD, True)):
        assert codec.__dict__["uses_rng"] is draws            # train builds generators only for these
    x = np.arange(5.0)
    assert wire.encode(QSGD(3).encode(x, np.random.default_rng(1))) == \
        wire.encode(QSGD(3).encode(x, np.random.default_rng(1)))


@pytest.fixture(scope="module")
def opposite_parties():
    """Two parties whose intercepts differ by 10: their intercept gradients dwarf the others and cancel."""
    rng = np.random.default_rng(0)
    w = np.array([1.5, -1.0, 0.5])
    out = []
    for shift in (5.0, -5.0):
        X = rng.standard_normal((50, 3))
        out.append(fl.Party(X, X @ w + shift + 0.1 * rng.standard_normal(50)))
    return out


def test_error_feedback_rescues_topk_and_sign_where_they_stall(opposite_parties):
    parties = opposite_parties
    best = fl.fedsgd(parties, lr=0.01, rounds=0, theta0=fl.least_squares(parties)).losses[0]
    for make in (lambda ef: TopK(k=1, error_feedback=ef), lambda ef: Sign(error_feedback=ef)):
        plain = fl.fedsgd(parties, lr=0.01, rounds=400, seed=0, client_transform=make(False))
        fed_back = fl.fedsgd(parties, lr=0.01, rounds=400, seed=0, client_transform=make(True))
        stuck = plain.losses[-1] - best
        assert stuck > 0.4                                           # stalled: no progress in the last 200 rounds
        assert abs(plain.losses[200] - plain.losses[-1]) < 1e-2 * stuck
        assert fed_back.losses[-1] - best < stuck / 20
    top1 = fl.fedsgd(parties, lr=0.01, rounds=50, seed=0, client_transform=TopK(k=1))
    np.testing.assert_array_equal(top1.theta[1:], 0.0)                # only the intercept was ever sent


@pytest.mark.parametrize("transform", [QSGD(4), RandomK(fraction=0.5), TopK(fraction=0.3, error_feedback=True),
                                       QSGD(8, error_feedback=True)], ids=repr)
def test_fedsgd_with_a_codec_converges(parties, transform):
    best = fl.fedsgd(parties, lr=0.05, rounds=0, theta0=fl.least_squares(parties)).losses[0]
    start = fl.fedsgd(parties, lr=0.05, rounds=0).losses[0]
    h = fl.fedsgd(parties, lr=0.05, rounds=300, seed=0, client_transform=transform)
    assert not h.diverged
    assert h.losses[-1] - best < 0.01 * (start - best)


# ------------------------------------------------------------------------------ the factory and bad input

def test_codec_factory_builds_each_codec_by_name():
    assert repr(compression.codec("topk", k=3)) == "TopK(k=3, error_feedback=False)"
    assert repr(compression.codec("randomk", fraction=0.1, error_feedback=True)) == \
        "RandomK(fraction=0.1, unbiased=False, error_feedback=True)"
    assert repr(compression.codec("qsgd", levels=4, dtype="float64")) == \
        "QSGD(levels=4, error_feedback=False, dtype='float64')"
    assert isinstance(compression.codec("sign", error_feedback=True), Sign)
    assert set(compression.CODECS) == {"topk", "randomk", "qsgd", "sign"}


@pytest.mark.parametrize("name", ["gzip", "TopK", "top-k", "", None, 3])
def test_unknown_codec_names_list_the_known_ones(name):
    with pytest.raises(ValueError, match=re.escape(f"codec name must be one of 'topk', 'randomk', 'qsgd', 'sign'; "
                                                   f"got {name!r}")):
        compression.codec(name)


@pytest.mark.parametrize("call, error, message", [
    (lambda: TopK(k=0), ValueError, r"k must be an integer in \[1, inf\], got 0"),
    (lambda: RandomK(k=-2), ValueError, r"k must be an integer in \[1, inf\], got -2"),
    (lambda: TopK(k=2.5), TypeError, r"k must be an integer, got 2.5"),
    (lambda: TopK(k=7).encode(np.ones(5)), ValueError, r"k must be an integer in \[1, d\] = \[1, 5\].*got 7"),
    (lambda: RandomK(k=6).encode(np.ones(5), np.random.default_rng(0)), ValueError,
     r"k must be an integer in \[1, d\] = \[1, 5\].*got 6"),
    (lambda: TopK(), ValueError, r"TopK needs exactly one of k .* and fraction .*got k=None, fraction=None"),
    (lambda: RandomK(k=3, fraction=0.1), ValueError, r"exactly one of k .*got k=3, fraction=0.1"),
    (lambda: TopK(fraction=0.0), ValueError, r"fraction must be in \(0, 1\], got 0.0"),
    (lambda: TopK(fraction=1.5), ValueError, r"fraction must be in \(0, 1\], got 1.5"),
    (lambda: QSGD(0), ValueError, r"levels must be an integer in \[1, 65536\], got 0"),
    (lambda: QSGD(2 ** 16 + 1), ValueError, r"levels must be an integer in \[1, 65536\], got 65537"),
    (lambda: QSGD(2.0), TypeError, r"levels must be an integer, got 2.0"),
    (lambda: Sign(error_feedback="yes"), TypeError, r"error_feedback must be True or False, got 'yes'"),
    (lambda: RandomK(k=1, unbiased=1), TypeError, r"unbiased must be True or False, got 1"),
    (lambda: Sign(dtype="float16"), ValueError, r"dtype must be one of 'float32', 'float64'; got 'float16'"),
    (lambda: QSGD(2, dtype=None), ValueError, r"dtype must be one of 'float32', 'float64'; got None"),
    (lambda: TopK(k=1, dtype="int8"), ValueError, r"dtype must be one of 'float32', 'float64'; got 'int8'"),
    (lambda: QSGD(2).encode(np.ones(3)), TypeError, r"rng must be a numpy.random.Generator .*got NoneType"),
    (lambda: RandomK(k=1).encode(np.ones(3), 42), TypeError, r"rng must be a numpy.random.Generator .*got int"),
    (lambda: Sign().encode(np.ones((2, 3))), ValueError, r"vector must be a 1-D array .*got shape \(2, 3\)"),
    (lambda: Sign().encode(np.ones(0)), ValueError, r"vector must be a 1-D array with at least one entry"),
    (lambda: Sign().encode("abc"), TypeError, r"vector must be a numeric 1-D array, got str"),
    (lambda: compression.pack_bits(np.array([4]), 2), ValueError,
     r"values must be integers in \[0, 2\*\*2 - 1\], got 4"),
    (lambda: compression.pack_bits(np.array([-1]), 3), ValueError,
     r"values must be integers in \[0, 2\*\*3 - 1\], got -1"),
    (lambda: compression.pack_bits(np.array([0.5]), 3), TypeError, r"values must be a 1-D array of integers"),
    (lambda: compression.pack_bits(np.array([1]), 0), ValueError, r"bits must be an integer in \[1, 64\], got 0"),
    (lambda: compression.unpack_bits(np.zeros(2, np.uint8), 3, 7), ValueError,
     r"packed must hold ceil\(7 \* 3 / 8\) = 3 bytes, got 2"),
    (lambda: compression.index_dtype(0), ValueError, r"size must be an integer in \[1, inf\], got 0"),
])
def test_bad_input_names_the_parameter_the_range_and_the_value(call, error, message):
    with pytest.raises(error, match=message):
        call()


def test_a_codec_too_large_for_the_model_fails_in_train_with_the_same_message(parties):
    with pytest.raises(ValueError, match=r"k must be an integer in \[1, d\] = \[1, 21\].*got 50"):
        fl.fedsgd(parties, lr=0.05, rounds=1, client_transform=TopK(k=50))


def test_train_starts_a_codec_afresh_even_when_the_new_run_meets_other_parties(parties):
    """Run 1 ends after round 1 with parties A; run 2's round 1 holds only other parties: residuals must go."""
    def selected(seed, rounds):
        return fl.fedavg(parties, lr=0.05, rounds=rounds, fraction=0.5, seed=seed).selected

    first = selected(1, 1)[0]
    seed = next(s for s in range(2, 200) if not set(selected(s, 1)[0]) & set(first))
    ef = TopK(k=1, error_feedback=True)
    fl.fedavg(parties, lr=0.05, rounds=1, fraction=0.5, seed=1, client_transform=ef)
    assert set(ef.residuals) == set(int(i) for i in first)
    again = fl.fedavg(parties, lr=0.05, rounds=3, fraction=0.5, seed=seed, client_transform=ef)
    fresh = fl.fedavg(parties, lr=0.05, rounds=3, fraction=0.5, seed=seed,
                      client_transform=TopK(k=1, error_feedback=True))
    np.testing.assert_array_equal(again.thetas, fresh.thetas)
