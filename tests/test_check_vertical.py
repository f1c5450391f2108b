"""Checkers of notebook 13: reference solutions pass, typical mistakes fail with their hint, stubs get no hint.

The reference solutions are written here from the definitions (Python's ``pow`` and sets for PSI, phe's
operators for the dot product); the cost formula of ``round_cost`` is checked against what
``vertical.fit_linear`` itself records.
"""

import numpy as np
import pytest
from checks_helpers import assert_fail, assert_pass, raises

from fl_helpers import check, vertical
from fl_helpers.check.vertical import reference_round_cost
from fl_helpers.vertical import MODP_2048, hash_to_group

P = MODP_2048


# --------------------------------------------------------------------------- PSI by hand

def psi_by_hand(ids_a, ids_b, key_a, key_b, *, blind=lambda h, a, b: pow(pow(h, a, P), b, P)):
    a_double = [blind(hash_to_group(x), key_a, key_b) for x in ids_a]
    b_double = {blind(hash_to_group(y), key_b, key_a) for y in ids_b}
    return [x for x, v in zip(ids_a, a_double, strict=True) if v in b_double], a_double


def test_the_reference_psi_passes_and_agrees_with_vertical_psi():
    assert_pass(check.psi_double_blind(psi_by_hand))
    ids_a, ids_b = ["u1", "u2", "u3"], ["u3", "u1", "u9"]
    assert sorted(psi_by_hand(ids_a, ids_b, 12345, 67890)[0]) == vertical.psi(ids_a, ids_b, seed=0)[0]


def test_the_intersection_in_any_order_passes():
    assert_pass(check.psi_double_blind(lambda *a: (psi_by_hand(*a)[0][::-1], psi_by_hand(*a)[1])))


@pytest.mark.parametrize("blind, words", [
    (lambda h, a, b: pow(h, a, P), ["blinded once"]),
    (lambda h, a, b: pow(h, a + b, P), ["multiply, they do not add"]),
    (lambda h, a, b: pow(h, a * b % P, P), ["group's order q"]),
    (lambda h, a, b: h, ["hashes H(x) themselves"]),
])
def test_wrong_blinding_fails_with_its_hint(blind, words):
    assert_fail(check.psi_double_blind(lambda *args: psi_by_hand(*args, blind=blind)), *words)


def test_a_wrong_intersection_fails():
    assert_fail(check.psi_double_blind(lambda *a: (list(a[0]), psi_by_hand(*a)[1])), "a_double is right")
    assert_fail(check.psi_double_blind(lambda *a: (sorted(set(a[0]) & set(a[1])), [1, 2])), "Blind each ID twice")


# --------------------------------------------------------------------------- encrypted dot product

def dot(public_key, enc_values, weights):
    return sum((c * w for c, w in zip(enc_values, weights, strict=True)), start=public_key.encrypt(0.0))


def test_the_reference_dot_passes():
    assert_pass(check.encrypted_dot(dot))
    assert_pass(check.encrypted_dot(lambda pk, c, w: sum(ci * wi for ci, wi in zip(c, w, strict=True))))


@pytest.mark.parametrize("fn, words", [
    (lambda pk, c, w: [ci * wi for ci, wi in zip(c, w, strict=True)], ["add them up"]),
    (lambda pk, c, w: sum(c[1:], start=c[0]), ["multiply each ciphertext by its weight"]),
    (lambda pk, c, w: sum(c[1:], start=c[0]) * sum(w), ["its own weight"]),
    (lambda pk, c, w: 0.0, ["public key"]),
    (lambda pk, c, w: "abc", ["c * w"]),
    (raises, ["c * w"]),
])
def test_wrong_dots_fail_with_their_hint(fn, words):
    assert_fail(check.encrypted_dot(fn), *words)


def test_a_ciphertext_under_another_key_fails():
    from phe import paillier

    other, _ = paillier.generate_paillier_keypair(n_length=vertical.MIN_KEY_BITS)
    assert_fail(check.encrypted_dot(lambda pk, c, w: other.encrypt(1.0)), "c * w")


# --------------------------------------------------------------------------- round cost

def test_the_reference_cost_passes_and_is_what_fit_linear_records():
    assert_pass(check.round_cost(reference_round_cost))
    rng = np.random.default_rng(0)
    for m, dims in ((12, (2, 1)), (10, (1, 2, 1))):
        X, y = rng.normal(size=(m, sum(dims))), rng.normal(size=m)
        blocks = np.split(X, np.cumsum(dims)[:-1], axis=1)
        fit = vertical.fit_linear(blocks, y, lr=0.1, rounds=1, key_bits=1024, seed=0)
        ct, up, down = reference_round_cost(m, dims, 1024)
        assert fit.history.metrics["ciphertexts"][-1] == ct
        assert fit.history.bytes_up[-1] == up and fit.history.bytes_down[-1] == down
    assert reference_round_cost(442, (6, 4), 1024)[0] == 897                # tests/test_vertical.py, by hand


def cost(**changes):
    def fn(m, dims, bits):
        K, d = len(dims), sum(dims)
        ct = changes.get("ct", lambda m, K, d: (K - 1) * (2 * m + 1) + d + 2)(m, K, d)
        up = changes.get("up", lambda ct, bits: ct * 2 * bits // 8)(ct, bits)
        down = changes.get("down", lambda d, bits: (d + 1) * bits // 8)(d, bits)
        return ct, up, down
    return fn


@pytest.mark.parametrize("fn, words", [
    (cost(ct=lambda m, K, d: 2 * m + d + 3), ["two-party count"]),
    (cost(ct=lambda m, K, d: (K - 1) * (2 * m + 1) + d + 1), ["One ciphertext short"]),
    (cost(ct=lambda m, K, d: (K - 1) * 2 * m + d + 2), ["One ciphertext short", "[[s^T s]] on each hop"]),
    (cost(ct=lambda m, K, d: (K - 1) * (m + 1) + d + 2), ["m ciphertexts short per party"]),
    (cost(up=lambda ct, bits: ct * bits // 8), ["mod n^2"]),
    (cost(down=lambda d, bits: (d + 1) * 2 * bits // 8), ["mod n: key_bits / 8"]),
    (cost(down=lambda d, bits: d * bits // 8), ["intercept's gradient comes back"]),
    (cost(ct=lambda m, K, d: 3 * m), ["Follow the chain"]),
    (lambda *a: (1, 2), ["Follow the chain"]),
    (lambda *a: "abc", ["Follow the chain"]),
    (raises, ["Follow the chain"]),
])
def test_wrong_costs_fail_with_their_hint(fn, words):
    assert_fail(check.round_cost(fn), *words)


# --------------------------------------------------------------------------- untouched stubs

def stub(*args):
    raise NotImplementedError("write your solution here")


@pytest.mark.parametrize("checker", [check.psi_double_blind, check.encrypted_dot, check.round_cost])
@pytest.mark.parametrize("answer", [stub, lambda *a: None])
def test_an_untouched_exercise_fails_without_a_hint(checker, answer):
    result = checker(answer)
    assert_fail(result)
    assert result.hint == ""


@pytest.mark.parametrize("checker", [check.psi_double_blind, check.encrypted_dot, check.round_cost])
def test_not_a_function_fails(checker):
    assert_fail(checker(42))
