"""Checkers of notebook 09 (secure aggregation): accept the reference solutions, reject typical wrong answers.

The reference solutions of the exercises live here (not in the notebook).
"""

import numpy as np
import pytest
from checks_helpers import assert_fail, assert_pass, raises

from fl_helpers import check, secagg
from fl_helpers.check import secagg as checker

# ----------------------------------------------------------------- reference solutions


def solution_masked_inputs(x, seeds, *, modulus_bits):
    """uint64 arithmetic wraps mod 2^64; masking with 2^k - 1 at the end reduces mod 2^k."""
    n, d = x.shape
    y = np.array(x, dtype=np.uint64)
    for (u, v), seed in seeds.items():
        mask = secagg.prg(seed, d, modulus_bits=modulus_bits)
        y[u] += mask
        y[v] -= mask
    return y & np.uint64(2**modulus_bits - 1)


def solution_masked_inputs_python_ints(x, seeds, *, modulus_bits):
    """The same with Python integers and an explicit loop over the parties."""
    n, d = x.shape
    out = []
    for u in range(n):
        row = [int(a) for a in x[u]]
        for v in range(n):
            if v == u:
                continue
            mask = secagg.prg(seeds[min(u, v), max(u, v)], d, modulus_bits=modulus_bits)
            sign = 1 if v > u else -1
            row = [r + sign * int(m) for r, m in zip(row, mask)]
        out.append([r % 2**modulus_bits for r in row])
    return out


def solution_min_modulus_bits(bound, n_parties, scale_bits):
    """n M < 2^(k-1) with M = round(B 2^f): k - 1 = bit_length(n M)."""
    return (n_parties * int(np.rint(bound * 2.0**scale_bits))).bit_length() + 1


def masked_with(x, seeds, *, modulus_bits, low=1, high=-1, reduce=True, dtype=np.uint64):
    """The solution with one typical mistake switched on (the signs of a pair, no reduction, another dtype)."""
    n, d = x.shape
    y = np.array(x, dtype=dtype)
    for (u, v), seed in seeds.items():
        mask = secagg.prg(seed, d, modulus_bits=modulus_bits).astype(dtype)
        y[u] = y[u] + low * mask if low >= 0 else y[u] - mask
        if high > 0:
            y[v] = y[v] + mask
        elif high < 0:
            y[v] = y[v] - mask
    return y & np.uint64(2**modulus_bits - 1) if reduce and dtype == np.uint64 else y


# ----------------------------------------------------------------- masked_inputs


def test_the_cases_are_varied_and_the_reference_cancels():
    cases = checker._mask_cases()
    assert [x.shape[0] for x, _, _ in cases][0] == 2 and {k for _, _, k in cases} >= {64, 12}
    for x, seeds, k in cases:
        n, d = x.shape
        assert not x.flags.writeable and all(int(v) < 2**k for v in x.ravel())
        assert set(seeds) == {(u, v) for u in range(n) for v in range(u + 1, n)}
        y = solution_masked_inputs(x, seeds, modulus_bits=k)
        total = [sum(int(r[j]) for r in y) % 2**k for j in range(d)]
        assert total == [sum(int(r[j]) for r in x) % 2**k for j in range(d)]      # the masks cancel
        assert np.all(y != x)                                                         # ... and hide x


def test_the_solution_is_the_libraries_pairwise_mask():
    """Independent of the checker: with seeds from key agreement, secagg.pairwise_mask is the same sum."""
    rng = np.random.default_rng(3)
    keys = [secagg.private_key(rng.bytes(32)) for _ in range(4)]
    public = {u: k.public_key().public_bytes_raw() for u, k in enumerate(keys)}
    seeds = {(u, v): secagg.agree(keys[u], public[v]) for u in range(4) for v in range(u + 1, 4)}
    x = rng.integers(0, 2**20, size=(4, 9), dtype=np.uint64)
    got = solution_masked_inputs(x, seeds, modulus_bits=20)
    for u in range(4):
        want = (x[u] + secagg.pairwise_mask(u, keys[u], public, 9, modulus_bits=20)) & np.uint64(2**20 - 1)
        np.testing.assert_array_equal(got[u], want)


@pytest.mark.parametrize("solution", [solution_masked_inputs, solution_masked_inputs_python_ints])
def test_masked_inputs_accepts_the_solutions(solution):
    result = check.masked_inputs(solution)
    assert_pass(result)
    assert "the smaller index of a pair adds" in result.message


def test_masked_inputs_accepts_the_mirror_convention():
    result = check.masked_inputs(lambda x, seeds, *, modulus_bits: masked_with(x, seeds, modulus_bits=modulus_bits,
                                                                               low=-1, high=1))
    assert_pass(result)
    assert "the larger index adds" in result.message


@pytest.mark.parametrize("mistake, message, words", [
    (dict(low=0, high=0), "unmasked", ["hide nothing"]),
    (dict(high=1), "do not cancel", ["Both parties of a pair added"]),
    (dict(high=0), "do not cancel", ["forgot the pairs with v < u"]),
    (dict(reduce=False), "must lie in [0, 2^16)", ["Reduce mod 2^k"]),
    (dict(dtype=np.int64, reduce=False), "must lie in [0, 2^16)", ["Negative values"]),
    (dict(dtype=np.float64, reduce=False), "must lie in [0, 2^16)", []),
])
def test_masked_inputs_rejects_each_typical_mistake_with_its_hint(mistake, message, words):
    result = check.masked_inputs(lambda x, seeds, *, modulus_bits: masked_with(x, seeds, modulus_bits=modulus_bits,
                                                                               **mistake))
    assert_fail(result, *words)
    assert message in result.message


def test_masked_inputs_rejects_masks_that_cancel_but_are_not_the_prg():
    def same_mask_everywhere(x, seeds, *, modulus_bits):
        first = next(iter(seeds.values()))
        fake = {pair: first for pair in seeds}
        return solution_masked_inputs(x, fake, modulus_bits=modulus_bits)

    result = check.masked_inputs(same_mask_everywhere)
    assert_fail(result, "a different one for every pair")
    assert "cancel, but" in result.message


def test_masked_inputs_rejects_floats_at_64_bits():
    def as_float(x, seeds, *, modulus_bits):
        y = solution_masked_inputs(x, seeds, modulus_bits=modulus_bits)
        return y.astype(np.float64) if modulus_bits == 64 else y

    result = check.masked_inputs(as_float)
    assert_fail(result, "float64 rounds")


def test_masked_inputs_untouched_stub_has_no_hint():
    def stub(x, seeds, *, modulus_bits):
        raise NotImplementedError("write your solution here")

    result = check.masked_inputs(stub)
    assert not result and result.hint == ""
    assert str(result).startswith("FAIL masked_inputs: no answer yet")


def test_masked_inputs_never_raises_and_keeps_inputs_read_only():
    assert "RuntimeError: student bug" in check.masked_inputs(lambda *a, **k: raises()).message
    for answer in (None, "text", [[1, 2], [3]], np.zeros((2, 2)), np.full((2, 6), np.nan), np.full((2, 6), 0.5),
                   np.full((2, 6), True), np.array([[object()] * 6] * 2)):
        assert_fail(check.masked_inputs(lambda *a, _answer=answer, **k: _answer))
    assert "expected a function, got int" in check.masked_inputs(3).message

    def mutate(x, seeds, *, modulus_bits):
        x[...] = 0
        return x

    assert "read-only" in check.masked_inputs(mutate).message

    def add_a_seed(x, seeds, *, modulus_bits):
        seeds[0, 0] = b"\0" * 32
        return x

    assert "TypeError" in check.masked_inputs(add_a_seed).message


def test_masked_inputs_calls_with_keywords():
    result = check.masked_inputs(lambda x, seeds, modulus_bits, /: x)
    assert_fail(result)
    assert "TypeError" in result.message


# ----------------------------------------------------------------- min_modulus_bits


def test_the_closed_form_is_the_library_on_every_case_and_around_it():
    """The solution's closed form against the checker's brute force over the library, also off the cases."""
    cases = list(checker.BITS_CASES) + [(b, n, f) for b in (1.0, 1.5, 7.9, 1e3) for n in (1, 2, 3, 8, 100)
                                          for f in (0, 8, 16)]
    for bound, n, f in cases:
        assert solution_min_modulus_bits(bound, n, f) == checker.library_min_bits(bound, n, f), (bound, n, f)


def test_the_cases_include_the_boundary_after_two_ordinary_ones():
    products = [n * int(np.rint(b * 2.0**f)) for b, n, f in checker.BITS_CASES]
    powers = [p & (p - 1) == 0 for p in products]
    assert powers[0] is False and powers[1] is False and powers[2] is True
    assert any(b * 2.0**f != np.rint(b * 2.0**f) for b, _, f in checker.BITS_CASES)     # a case that rounds


def test_min_modulus_bits_accepts_the_solutions():
    assert_pass(check.min_modulus_bits(solution_min_modulus_bits))
    assert_pass(check.min_modulus_bits(lambda b, n, f: float(solution_min_modulus_bits(b, n, f))))
    assert_pass(check.min_modulus_bits(lambda b, n, f: np.int64(solution_min_modulus_bits(b, n, f))))
    assert_pass(check.min_modulus_bits(lambda b, n, f: np.array(solution_min_modulus_bits(b, n, f))))


@pytest.mark.parametrize("wrong, message, words", [
    (lambda b, n, f: (n * int(np.rint(b * 2**f))).bit_length(), "too few", ["the sign bit"]),
    (lambda b, n, f: int(np.rint(b * 2**f)).bit_length() + 1, "too few", ["Multiply by n_parties"]),
    (lambda b, n, f: int(np.ceil(np.log2(n * np.rint(b * 2**f)))) + 1, "too few", ["power of two", "strict"]),
    (lambda b, n, f: f + int(np.ceil(np.log2(n))) + int(np.ceil(np.log2(b))) + 1, "fewer do too", ["product"]),
    (lambda b, n, f: 64, "fewer do too", ["bit_length"]),
    (lambda b, n, f: 2, "too few", ["bit_length"]),
])
def test_min_modulus_bits_rejects_each_typical_mistake_with_its_hint(wrong, message, words):
    result = check.min_modulus_bits(wrong)
    assert_fail(result, *words)
    assert message in result.message


def test_min_modulus_bits_untouched_stub_has_no_hint():
    def stub(bound, n_parties, scale_bits):
        raise NotImplementedError("write your solution here")

    result = check.min_modulus_bits(stub)
    assert not result and result.hint == ""
    assert str(result).startswith("FAIL min_modulus_bits: no answer yet")


@pytest.mark.parametrize("answer", [None, "20", 13.5, float("nan"), float("inf"), True, [13], np.array([13])])
def test_min_modulus_bits_odd_answers_are_a_fail_not_an_exception(answer):
    result = check.min_modulus_bits(lambda *a, _answer=answer: _answer)
    assert_fail(result)
    assert "expected a whole number of bits" in result.message


def test_a_huge_whole_answer_is_a_fail_not_an_overflow():
    result = check.min_modulus_bits(lambda *a: 10**400)
    assert_fail(result)
    assert "fewer do too" in result.message


def test_min_modulus_bits_never_raises():
    assert "RuntimeError: student bug" in check.min_modulus_bits(raises).message
    assert "expected a function, got str" in check.min_modulus_bits("20").message
