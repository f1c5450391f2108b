"""Vertical FL: PSI against Python sets, Paillier linear regression against hand-written GD.

``key_bits=1024`` (``MIN_KEY_BITS``) here is for speed only: too small for real use (the default is 2048).
"""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from fl_helpers import centralized_gd, load_dataset, vertical
from fl_helpers.vertical import MODP_2048, MODP_2048_Q, align, fit_linear, fit_logistic, hash_to_group, psi

TEST_KEY_BITS = 1024         # the smallest accepted: weak, but about 6x faster than 2048


def random_ids(rng, n, universe, kind):
    ids = rng.choice(universe, size=n, replace=False)
    return [f"user-{i}" for i in ids] if kind == "str" else [int(i) for i in ids]


@pytest.fixture(scope="module")
def diabetes():
    X, y, _ = load_dataset("diabetes")
    return (X - X.mean(axis=0)) / X.std(axis=0), y      # each party can standardise its own columns


def gd_by_hand(X, y, *, lr, rounds):
    """theta <- theta - lr * 2/m Xt^T (Xt theta - y), intercept first; losses (1/m) r^T r."""
    Xt = np.hstack([np.ones((len(y), 1)), X])
    theta, thetas, losses = np.zeros(Xt.shape[1]), [], []
    for t in range(rounds + 1):
        r = Xt @ theta - y
        thetas.append(theta)
        losses.append(r @ r / len(y))
        if t < rounds:
            theta = theta - lr * 2.0 / len(y) * (Xt.T @ r)
    return np.array(thetas), np.array(losses)


# --- PSI --------------------------------------------------------------------------------------

@pytest.mark.parametrize("seed, kind", [(0, "int"), (1, "str")])
def test_psi_is_the_set_intersection(seed, kind):
    rng = np.random.default_rng(seed)
    ids_a, ids_b = random_ids(rng, 12, 30, kind), random_ids(rng, 10, 30, kind)
    common, tr = psi(ids_a, ids_b, seed=seed)
    assert common == sorted(set(ids_a) & set(ids_b))
    assert tr.common_a == tr.common_b == common                   # both parties reach the same list
    assert len(tr.a_blinded) == len(tr.a_double) == 12 and len(tr.b_blinded) == len(tr.b_double) == 10
    assert tr.bytes_sent == 2 * (12 + 10) * 256


def test_psi_edge_cases():
    assert psi([], [1, 2], seed=0)[0] == []
    assert psi([1, 2, 3], [4, 5], seed=0)[0] == []
    assert psi(["a", "b"], ["b", "a"], seed=0)[0] == ["a", "b"]
    assert psi(["7", b"7"], [7], seed=0)[0] == []                 # the type is part of the ID
    assert psi([3, 1, 2], [2, 3], seed=None)[0] == [2, 3]         # secrets: same answer


def test_psi_blinded_values_hide_the_ids():
    ids = [f"id{i}" for i in range(5)]
    _, tr0 = psi(ids, ids, seed=0)
    _, tr1 = psi(ids, ids, seed=1)
    hashes = {hash_to_group(i) for i in ids}
    assert not hashes & set(tr0.a_blinded)                        # B does not see H(x) itself
    assert not set(tr0.a_blinded) & set(tr0.b_blinded)            # the same IDs under keys a and b differ
    assert not set(tr0.a_blinded) & set(tr1.a_blinded)            # and under two seeds' keys
    assert set(tr0.a_double) == set(tr0.b_double)                 # only H(x)^{ab} coincide
    assert psi(ids, ids, seed=0)[1].a_blinded == tr0.a_blinded    # a seed makes it reproducible


def test_powmod_equals_pythons_pow():
    rng = np.random.default_rng(7)
    power = vertical._powmod()                                    # gmpy2's when installed
    for _ in range(5):
        h, e = (int.from_bytes(rng.bytes(256), "big") % MODP_2048 for _ in range(2))
        assert power(h, e) == pow(h, e, MODP_2048) and type(power(h, e)) is int


def test_hash_lands_in_the_prime_order_subgroup():
    for x in ["alice", 42, b"\x00"]:
        h = hash_to_group(x)
        assert 1 < h < MODP_2048 and pow(h, MODP_2048_Q, MODP_2048) == 1


@pytest.mark.parametrize("ids, error, match", [
    ([1, 2, 1], ValueError, "ids_a must not contain duplicate IDs.*got 1"),
    ([1.5], TypeError, "ids_a: ids must be str, int or bytes, got 1.5"),
    ("abc", TypeError, "ids_a must be a sequence"),
])
def test_psi_bad_input(ids, error, match):
    with pytest.raises(error, match=match):
        psi(ids, [1], seed=0)


# --- align ------------------------------------------------------------------------------------

def test_align_equals_numpy_intersect1d_for_three_parties():
    rng = np.random.default_rng(5)
    ids = [rng.choice(24, size=n, replace=False) for n in (16, 14, 12)]          # each party's own order
    tables = [rng.normal(size=(len(i), d)) for i, d in zip(ids, (2, 1, 3), strict=True)]
    labels = rng.normal(size=16)
    out = align([i.tolist() for i in ids], tables, labels=labels, seed=0)
    common, ia, _ = np.intersect1d(ids[0], ids[1], return_indices=True)
    common = np.intersect1d(common, ids[2])
    assert out.common == common.tolist() and len(out.transcripts) == 2
    for k, (i, t) in enumerate(zip(ids, tables, strict=True)):
        _, _, rows = np.intersect1d(common, i, return_indices=True)               # rows of common in party k
        np.testing.assert_array_equal(out.blocks[k], t[rows])
    np.testing.assert_array_equal(out.y, labels[np.intersect1d(common, ids[0], return_indices=True)[2]])
    assert 0 < len(common) < 12
    assert align([i.tolist() for i in ids], tables, seed=0).y is None


def test_align_string_ids_rows_follow_the_ids():
    ids_a, ids_b = ["c", "a", "b", "x"], ["b", "y", "c", "a"]
    value = {"a": 1.0, "b": 2.0, "c": 3.0, "x": 9.0, "y": 8.0}
    out = align([ids_a, ids_b], [[[value[i]] for i in ids_a], [[10 * value[i]] for i in ids_b]],
                labels=[value[i] for i in ids_a], seed=1)
    assert out.common == ["a", "b", "c"]
    np.testing.assert_array_equal(out.blocks[0][:, 0], [1, 2, 3])
    np.testing.assert_array_equal(out.blocks[1][:, 0], [10, 20, 30])
    np.testing.assert_array_equal(out.y, [1, 2, 3])


@pytest.mark.parametrize("ids, tables, labels, error, match", [
    ([[1, 2, 3], [4, 5]], [np.ones((3, 1)), np.ones((2, 1))], None, ValueError,
     "party 1 has no overlap with party 0: psi found no common ID among their 3 and 2 IDs"),
    ([["7"], [7]], [np.ones((1, 1)), np.ones((1, 1))], None, ValueError, "no overlap.*'7' is not 7"),
    ([[1, 2], [1, 3], [2, 3]], [np.ones((2, 1))] * 3, None, ValueError, "the 3 parties have no ID in common"),
    ([[1, 2, 3], [1, 2]], [np.ones((3, 1)), np.ones((3, 1))], None, ValueError,
     "tables\\[1\\] must have one row per ID of ids_per_party\\[1\\], got 3 rows and 2 IDs"),
    ([[1, 2, 2], [1, 2]], [np.ones((3, 1)), np.ones((2, 1))], None, ValueError,
     "ids_per_party\\[0\\] must not contain duplicate IDs.*got 2"),
    ([[1, 2], [1, 2]], [np.ones((2, 1)), [[0.0], [np.nan]]], None, ValueError,
     "tables\\[1\\] must contain only finite numbers, got 1 NaN/inf"),
    ([[1, 2], [1, 2]], [np.ones((2, 1))] * 2, [0.0, np.inf], ValueError,
     "labels must contain only finite numbers, got 1 NaN/inf"),
    ([[1, 2], [1, 2]], [np.ones((2, 1))] * 2, [0.0], ValueError,
     "tables\\[0\\] and labels must have the same number of samples"),
    ([[1, 2], [1, 2]], [np.ones((2, 1))], None, ValueError, "tables must hold one table per party, 2.*got 1 tables"),
    ([[1, 2]], [np.ones((2, 1))], None, TypeError, "ids_per_party must be a list of at least two ID lists.*got 1"),
])
def test_align_bad_input(ids, tables, labels, error, match):
    with pytest.raises(error, match=match):
        align(ids, tables, labels=labels, seed=0)


def test_align_with_a_given_intersection_skips_the_psi():
    ids_a, ids_b = [5, 3, 9, 1], [1, 9, 7]
    out = align([ids_a, ids_b], [np.c_[ids_a], np.c_[ids_b]], labels=ids_a, common=[9, 1])
    assert out.common == [1, 9] and out.transcripts == []
    np.testing.assert_array_equal(out.blocks[0][:, 0], [1, 9])
    np.testing.assert_array_equal(out.blocks[1][:, 0], [1, 9])
    np.testing.assert_array_equal(out.y, [1, 9])


@pytest.mark.parametrize("common, match", [
    ([1, 5], "common must hold only IDs of every party, got 1 not in ids_per_party\\[1\\], e.g. 5"),
    ([], "common must hold at least one ID"),
    ([1, 1], "common must not contain duplicate IDs"),
])
def test_align_with_a_bad_given_intersection(common, match):
    with pytest.raises(ValueError, match=match):
        align([[5, 3, 9, 1], [1, 9, 7]], [np.ones((4, 1)), np.ones((3, 1))], common=common)


def test_aligned_blocks_train_like_the_joined_table(diabetes):
    X, y = diabetes[0][:30], diabetes[1][:30]
    ids = [f"p{i}" for i in range(30)]
    order = np.random.default_rng(0).permutation(30)                               # the partner's own order
    out = align([ids, [ids[i] for i in order]], [X[:, :4], X[order, 4:]], labels=y, seed=0)
    fit = fit_linear(out.blocks, out.y, lr=0.1, rounds=1, key_bits=TEST_KEY_BITS, seed=0)
    by_id = np.argsort([f"p{i}" for i in range(30)])                               # sorted string IDs
    thetas, _ = gd_by_hand(X[by_id], y[by_id], lr=0.1, rounds=1)
    np.testing.assert_allclose(fit.theta, thetas[-1], rtol=1e-12, atol=1e-12)


# --- fit_linear -------------------------------------------------------------------------------

def test_fit_linear_equals_centralized_gd_on_diabetes(diabetes):
    X, y = diabetes
    fit = fit_linear([X[:, :6], X[:, 6:]], y, lr=0.1, rounds=2, key_bits=TEST_KEY_BITS, seed=0)
    thetas, losses = gd_by_hand(X, y, lr=0.1, rounds=2)
    np.testing.assert_allclose(fit.history.thetas, thetas, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(fit.history.losses, losses, rtol=1e-12)
    ref = centralized_gd(X, y, lr=0.1, rounds=2)
    np.testing.assert_allclose(fit.theta, ref.theta, rtol=1e-12)
    assert fit.intercept == fit.theta[0] and [c.shape for c in fit.coefs] == [(6,), (4,)]
    # per round: party 1 -> 0 sends [[u_1]] and [[u_1^T u_1]] (443), party 0 -> 1 [[d]] (442),
    # 0 -> C [[d^T d]] (1), masked gradients 7 + 4 (11); a ciphertext mod n^2 is 2 x 1024 bits = 256 bytes,
    # a decrypted masked gradient mod n 128 bytes
    np.testing.assert_array_equal(fit.history.metrics["ciphertexts"], [897, 897])
    np.testing.assert_array_equal(fit.history.bytes_up, [897 * 256] * 2)
    np.testing.assert_array_equal(fit.history.bytes_down, [11 * 128] * 2)
    assert fit.public_key_n.bit_length() == TEST_KEY_BITS


@pytest.mark.parametrize("split", [[10], [3, 3, 4]])
def test_fit_linear_one_party_and_three_parties(diabetes, split):
    X, y = diabetes[0][:40], diabetes[1][:40]
    blocks = np.split(X, np.cumsum(split)[:-1], axis=1)
    fit = fit_linear(blocks, y, lr=0.05, rounds=3, key_bits=TEST_KEY_BITS, seed=1)
    thetas, losses = gd_by_hand(X, y, lr=0.05, rounds=3)
    np.testing.assert_allclose(fit.history.thetas, thetas, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(fit.history.losses, losses, rtol=1e-12)


def test_the_coordinator_sees_only_masked_gradients(diabetes):
    from phe import EncodedNumber, PaillierPublicKey

    X, y = diabetes[0][:30], diabetes[1][:30]
    blocks = [X[:, :6], X[:, 6:]]
    fit = fit_linear(blocks, y, lr=0.1, rounds=2, key_bits=TEST_KEY_BITS, seed=2)
    key = PaillierPublicKey(fit.public_key_n)
    Xt = np.hstack([np.ones((30, 1)), X])
    assert len(fit.coordinator_view) == 2
    for theta, seen in zip(fit.history.thetas, fit.coordinator_view, strict=False):
        d = Xt @ theta - y
        assert seen["sum_sq"] == pytest.approx(d @ d, rel=1e-12)      # the loss is revealed (Yang et al.)
        true = np.concatenate([Xt[:, :7].T @ d, Xt[:, 7:].T @ d])     # party 0: [1^T d, X_0^T d]; party 1
        for z, g in zip(seen["masked"][0] + seen["masked"][1], true, strict=True):
            unmasked = EncodedNumber.encode(key, float(g), max_exponent=2 * vertical.EXPONENT)
            assert unmasked.decode() == pytest.approx(g)              # control: this is what it must not see
            assert z != unmasked.encoding
            try:
                read = EncodedNumber(key, z, 2 * vertical.EXPONENT).decode()
            except OverflowError:
                continue                                              # not even a valid encoding
            assert abs(read - g) > 1e6 * (abs(g) + 1)
    # a one-time pad: the 22 masked values z / n look uniform on [0, 1) (scipy's Kolmogorov-Smirnov test)
    from scipy.stats import kstest

    z = [v / fit.public_key_n for seen in fit.coordinator_view for v in seen["masked"][0] + seen["masked"][1]]
    assert len(z) == 22 and kstest(z, "uniform").pvalue > 1e-6


def test_fit_linear_is_reproducible_and_masks_depend_on_the_seed(diabetes):
    X, y = diabetes[0][:20], diabetes[1][:20]
    a = fit_linear([X[:, :5], X[:, 5:]], y, lr=0.1, rounds=1, key_bits=TEST_KEY_BITS, seed=3)
    b = fit_linear([X[:, :5], X[:, 5:]], y, lr=0.1, rounds=1, key_bits=TEST_KEY_BITS, seed=4)
    np.testing.assert_array_equal(a.theta, b.theta)                   # exact: the masks cancel
    assert a.coordinator_view[0]["masked"][0] != b.coordinator_view[0]["masked"][0]


@pytest.mark.parametrize("kwargs, error, match", [
    ({"blocks": [np.zeros((5, 2)), np.zeros((4, 2))]}, ValueError,
     "blocks must have the same number of rows.*vertical.align.*5 rows in blocks\\[0\\] and 4 in blocks\\[1\\]"),
    ({"blocks": [np.zeros((5, 2)), np.array([[1.0], [np.nan], [0], [0], [0]])]}, ValueError,
     "blocks\\[1\\] must contain only finite numbers, got 1 NaN/inf"),
    ({"blocks": [np.full((5, 2), np.inf), np.ones((5, 1))]}, ValueError,
     "blocks\\[0\\] must contain only finite numbers, got 10 NaN/inf"),
    ({"y": np.array([0, 1, np.nan, 0, 1])}, ValueError, "y must contain only finite numbers, got 1 NaN/inf"),
    ({"y": np.zeros(4)}, ValueError, "blocks\\[0\\] and y must have the same number of samples.*5.*4"),
    ({"blocks": []}, TypeError, "blocks must be a non-empty list"),
    ({"blocks": [np.zeros(5)]}, ValueError, "blocks\\[0\\] must be a 2-D array"),
    ({"key_bits": 512}, ValueError, "key_bits must be at least 1024 \\(MIN_KEY_BITS; 2048 or more.*got 512"),
    ({"key_bits": 1023}, ValueError, "key_bits must be at least 1024.*got 1023"),
    ({"key_bits": 1024.0}, TypeError, "key_bits must be an integer, got 1024.0"),
    ({"lr": 0.0}, ValueError, "lr must be a positive finite number, got 0.0"),
    ({"lr": -0.1}, ValueError, "lr must be a positive finite number, got -0.1"),
    ({"rounds": 0}, ValueError, "rounds must be an integer in \\[1, inf\\], got 0"),
    ({"seed": -1}, ValueError, "seed must be an integer in \\[0, inf\\], got -1"),
])
def test_fit_linear_bad_input(kwargs, error, match):
    args = {"blocks": [np.zeros((5, 2)), np.ones((5, 1))], "y": np.zeros(5), "lr": 0.1, "rounds": 1,
            "key_bits": TEST_KEY_BITS, "seed": 0} | kwargs
    with pytest.raises(error, match=match):
        fit_linear(args.pop("blocks"), args.pop("y"), **args)


def test_importing_vertical_does_not_load_phe():
    code = "import sys, fl_helpers, fl_helpers.vertical; assert not {'phe', 'gmpy2'} & set(sys.modules)"
    subprocess.run([sys.executable, "-c", code], check=True)


# --- fit_logistic -----------------------------------------------------------------------------

@pytest.fixture(scope="module")
def diabetes_binary(diabetes):
    X, y = diabetes
    return X[:100, :4], (y[:100] > np.median(y)).astype(np.float64)   # 100 rows, 4 features, labels 0/1


def logistic_gd_by_hand(X, y, *, lr, rounds, taylor):
    """Mean cross-entropy GD, intercept first; taylor: sigma(u) ~ 1/2 + u/4, loss log 2 - z/2 + z^2/8, z = (2y-1)u."""
    Xt = np.hstack([np.ones((len(y), 1)), X])
    theta, thetas, losses = np.zeros(Xt.shape[1]), [], []
    for t in range(rounds + 1):
        u, z = Xt @ theta, (2 * y - 1) * (Xt @ theta)
        thetas.append(theta)
        losses.append(np.mean(np.log(2) - z / 2 + z**2 / 8) if taylor else np.mean(np.logaddexp(0, u) - y * u))
        d = u / 4 - (2 * y - 1) / 2 if taylor else 1 / (1 + np.exp(-u)) - y
        if t < rounds:
            theta = theta - lr * (Xt.T @ d) / len(y)
    return np.array(thetas), np.array(losses)


@pytest.fixture(scope="module")
def logistic_fit(diabetes_binary):
    X, y = diabetes_binary
    return fit_logistic([X[:, :2], X[:, 2:]], y, lr=0.5, rounds=5, key_bits=TEST_KEY_BITS, seed=0)


def test_fit_logistic_equals_taylor_gd(diabetes_binary, logistic_fit):
    X, y = diabetes_binary
    thetas, losses = logistic_gd_by_hand(X, y, lr=0.5, rounds=5, taylor=True)
    np.testing.assert_allclose(logistic_fit.history.thetas, thetas, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(logistic_fit.history.losses, losses, rtol=1e-12)
    assert logistic_fit.history.losses[0] == pytest.approx(np.log(2))
    assert [c.shape for c in logistic_fit.coefs] == [(2,), (2,)]
    assert logistic_fit.intercept == logistic_fit.theta[0]


def test_fit_logistic_taylor_error_against_exact_logistic_gd(diabetes_binary, logistic_fit):
    X, y = diabetes_binary
    exact, exact_losses = logistic_gd_by_hand(X, y, lr=0.5, rounds=5, taylor=False)
    gap = np.abs(logistic_fit.theta - exact[-1]).max()
    print(f"max |theta_taylor - theta_exact| = {gap:.3e}, relative {gap / np.linalg.norm(exact[-1]):.3e}")
    assert 1e-4 < gap < 1e-2 and gap < 0.03 * np.linalg.norm(exact[-1])   # small, but not zero
    assert np.sign(logistic_fit.theta).tolist() == np.sign(exact[-1]).tolist()
    assert exact_losses[-1] < exact_losses[0]                              # the approximation still learns


@pytest.mark.parametrize("y, match", [
    (np.array([0, 1, 2, 0, 1]), "y must hold binary labels 0 or 1.*got 2"),
    (np.array([0, 1, -1, 0, 1]), "y must hold binary labels 0 or 1.*got -1"),
    (np.array([0, 1, 0.5, 0, 1]), "y must hold binary labels 0 or 1.*got 0.5"),
])
def test_fit_logistic_bad_labels(y, match):
    with pytest.raises(ValueError, match=match):
        fit_logistic([np.zeros((5, 2))], y, lr=0.1, rounds=1, key_bits=TEST_KEY_BITS, seed=0)


def test_fit_logistic_refuses_small_keys():
    with pytest.raises(ValueError, match="key_bits must be at least 1024.*got 512"):
        fit_logistic([np.zeros((5, 2))], np.array([0, 1, 0, 1, 0]), lr=0.1, rounds=1, key_bits=512, seed=0)
