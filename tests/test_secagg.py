"""Secure aggregation (Bonawitz et al. 2017): the sum is right, the server sees only masks."""

from __future__ import annotations

import itertools
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from scipy import stats

import fl_helpers as fl
from fl_helpers import secagg

ROOT = Path(__file__).resolve().parent.parent
N, T, D = 6, 4, 10


@pytest.fixture(scope="module")
def updates():
    return np.random.default_rng(0).normal(size=(N, D))


# --- the sum -------------------------------------------------------------------------------

@pytest.mark.parametrize("dropped", [
    {},
    {2: "before_input"},
    {2: "after_input"},
    {1: "before_input", 4: "before_input"},                 # n - t of each kind
    {1: "after_input", 4: "after_input"},
    {0: "before_input", 5: "after_input"},
])
def test_the_sum_is_numpys_sum_of_the_survivors(updates, dropped):
    result = secagg.aggregate(updates, threshold=T, dropped=dropped, seed=3, scale_bits=16)

    counted = [u for u in range(N) if dropped.get(u) != "before_input"]
    assert result.survivors == tuple(counted)
    np.testing.assert_allclose(result.sum, updates[counted].sum(axis=0), rtol=0, atol=len(counted) * 2.0**-17)


def test_plain_indices_drop_before_input(updates):
    result = secagg.aggregate(updates, threshold=T, dropped=[0, 3], seed=1)

    assert result.survivors == (1, 2, 4, 5)
    np.testing.assert_allclose(result.sum, updates[[1, 2, 4, 5]].sum(axis=0), atol=4 * 2.0**-17)


@pytest.mark.parametrize("dropped", [
    {0: "before_input", 1: "before_input", 2: "before_input"},
    {0: "after_input", 1: "after_input", 2: "after_input"},
    {0: "before_input", 3: "after_input", 5: "after_input"},
])
def test_more_than_n_minus_t_dropouts_abort(updates, dropped):
    with pytest.raises(ValueError, match=r"too many dropouts: 3 of n=6 parties dropped, at most n - threshold = 2"):
        secagg.aggregate(updates, threshold=T, dropped=dropped, seed=0)


@pytest.mark.parametrize("kwargs, message", [
    (dict(threshold=0), r"threshold must be an integer in \[1, 6\], got 0"),
    (dict(threshold=7), r"threshold must be an integer in \[1, 6\], got 7"),
    (dict(threshold=T, dropped=[6]), r"dropped must name parties by index in \[0, 5\], got 6"),
    (dict(threshold=T, dropped={1: "late"}), r"dropped\[1\] must be one of 'before_input', 'after_input'; got 'late'"),
    (dict(threshold=T, scale_bits=70), r"scale_bits must be an integer in \[0, 62\], got 70"),
])
def test_bad_arguments_name_the_parameter(updates, kwargs, message):
    with pytest.raises(ValueError, match=message):
        secagg.aggregate(updates, seed=0, **kwargs)


def test_a_seed_makes_a_run_reproducible(updates):
    a, b, c = (secagg.aggregate(updates, threshold=T, seed=s).transcript for s in (5, 5, 6))

    assert a.public_keys == b.public_keys and all(np.array_equal(a.masked[u], b.masked[u]) for u in range(N))
    assert not np.array_equal(a.masked[0], c.masked[0])


# --- what the server sees --------------------------------------------------------------------

def test_a_masked_vector_looks_uniform_and_uncorrelated_with_its_input():
    n_draws, d, bins = 150, 32, 16
    xs, ys, plain = [], [], []
    for s in range(n_draws):
        x = np.random.default_rng(1000 + s).normal(size=(3, d))
        result = secagg.aggregate(x, threshold=2, seed=s, scale_bits=16)
        xs.append(x[0])
        ys.append(result.transcript.masked[0])
        plain.append(secagg.encode(x[0], scale_bits=16, modulus_bits=64, n_parties=3))
    xs, ys, plain = np.concatenate(xs), np.concatenate(ys), np.concatenate(plain)

    def chi_square(values):              # 16 buckets of the top 4 bits, expected equal counts
        counts = np.bincount((values >> np.uint64(60)).astype(np.int64), minlength=bins)
        return stats.chisquare(counts).statistic

    limit = stats.chi2.ppf(0.999, bins - 1)
    assert chi_square(ys) < limit
    assert chi_square(plain) > 100 * limit               # the check has power: unmasked inputs fail it
    assert abs(np.corrcoef(xs, ys.astype(np.float64))[0, 1]) < 4 / np.sqrt(xs.size)
    assert np.corrcoef(xs, plain.view(np.int64).astype(np.float64))[0, 1] > 0.99


def test_the_server_never_gets_both_shares_of_a_party(updates):
    dropped = {1: "before_input", 4: "after_input"}
    seen = secagg.aggregate(updates, threshold=T, dropped=dropped, seed=2).transcript

    assert not set(seen.self_mask_shares) & set(seen.mask_key_shares)
    assert set(seen.mask_key_shares) == set(seen.mask_keys) == {1}            # the dropout's mask key
    assert set(seen.self_mask_seeds) == {0, 2, 3, 4, 5}
    # the late party 4: its self-mask seed is reconstructed, its pairwise key is not
    assert 4 in seen.masked and 4 in seen.self_mask_seeds and 4 not in seen.mask_keys
    assert 4 not in seen.responders and 1 not in seen.masked
    # shares came from the responders only, t or more of them
    assert all(set(s) == set(seen.responders) and len(s) >= T for s in seen.self_mask_shares.values())


def test_the_reconstructed_mask_key_is_the_dropouts_key(updates):
    seen = secagg.aggregate(updates, threshold=T, dropped={3: "before_input"}, seed=4).transcript

    public = X25519PrivateKey.from_private_bytes(seen.mask_keys[3]).public_key().public_bytes_raw()
    assert public == seen.public_keys[3][1]


def test_the_relayed_shares_are_encrypted(updates):
    seen = secagg.aggregate(updates, threshold=T, seed=2).transcript
    share = seen.self_mask_shares[0][1][1].to_bytes(66, "big")

    assert set(seen.ciphertexts) == {(u, v) for u in range(N) for v in range(N)}
    assert all(len(c) == 2 * 66 + 16 for c in seen.ciphertexts.values())       # two field elements + Poly1305 tag
    assert not any(share in c for c in seen.ciphertexts.values())


# --- the primitives ----------------------------------------------------------------------

@pytest.mark.parametrize("modulus_bits", [64, 20])
def test_pairwise_masks_cancel(modulus_bits):
    keys = [X25519PrivateKey.from_private_bytes(bytes([u + 1]) * 32) for u in range(5)]
    public = {u: k.public_key().public_bytes_raw() for u, k in enumerate(keys)}

    masks = [secagg.pairwise_mask(u, k, public, 8, modulus_bits=modulus_bits) for u, k in enumerate(keys)]

    total = sum(mask.astype(object) for mask in masks)      # Python integers: no wrapping
    assert all(v % 2**modulus_bits == 0 for v in total)
    assert all(np.any(m != 0) and np.all(m < 2**modulus_bits) for m in masks)


def test_key_agreement_is_symmetric():
    a, b = (X25519PrivateKey.from_private_bytes(bytes([i]) * 32) for i in (7, 9))
    pub = lambda k: k.public_key().public_bytes_raw()  # noqa: E731

    assert secagg.agree(a, pub(b)) == secagg.agree(b, pub(a))
    assert secagg.agree(a, pub(b)) != secagg.agree(a, pub(b), purpose=b"share encryption")


def test_the_prg_is_the_chacha20_keystream():
    # RFC 8439, appendix A.1, test vector 1: all-zero key and nonce, block counter 0
    first = bytes.fromhex("76b8e0ada0f13d90405d6ae55386bd28")
    out = secagg.prg(b"\0" * 32, 2, modulus_bits=64)

    assert out.tolist() == [int.from_bytes(first[:8], "little"), int.from_bytes(first[8:], "little")]
    assert secagg.prg(b"\0" * 32, 2, modulus_bits=12).tolist() == [v % 2**12 for v in out.tolist()]


# --- Shamir ------------------------------------------------------------------------------

def test_any_t_shares_reconstruct_the_secret():
    secret = int.from_bytes(bytes(range(32)), "big")
    shares = secagg.shamir_share(secret, threshold=3, n_shares=5, rng=np.random.default_rng(0))

    assert [x for x, _ in shares] == [1, 2, 3, 4, 5]
    for k in (3, 4, 5):
        for subset in itertools.combinations(shares, k):
            assert secagg.shamir_reconstruct(subset) == secret
    assert secagg.shamir_reconstruct(shares[:2]) != secret


def test_t_minus_one_shares_fit_every_secret_exactly_once():
    p, t = 11, 3
    shares = secagg.shamir_share(7, threshold=t, n_shares=4, rng=np.random.default_rng(1), prime=p)[:t - 1]

    for candidate in range(p):          # brute force every polynomial s + a1 x + a2 x^2 over F_11
        fits = [(a1, a2) for a1 in range(p) for a2 in range(p)
                if all((candidate + a1 * x + a2 * x * x) % p == y for x, y in shares)]
        assert len(fits) == 1, (candidate, fits)


def test_shamir_rejects_bad_input():
    rng = np.random.default_rng(0)
    with pytest.raises(ValueError, match=r"threshold must be an integer in \[1, 3\], got 4"):
        secagg.shamir_share(5, threshold=4, n_shares=3, rng=rng)
    with pytest.raises(ValueError, match="secret must be an integer in"):
        secagg.shamir_share(secagg.PRIME, threshold=2, n_shares=3, rng=rng)
    with pytest.raises(ValueError, match="distinct nonzero x"):
        secagg.shamir_reconstruct([(1, 2), (1, 3)])


# --- encoding ----------------------------------------------------------------------------

def test_encoding_is_twos_complement_fixed_point():
    got = secagg.encode([-1.0, 0.25, 0.3], scale_bits=2, modulus_bits=8, n_parties=1)

    assert got.tolist() == [256 - 4, 1, 1]               # round(0.3 * 4) = 1
    assert secagg.decode(got, scale_bits=2, modulus_bits=8).tolist() == [-1.0, 0.25, 0.25]


@pytest.mark.parametrize("modulus_bits", [64, 32])
def test_a_decoded_sum_is_within_n_half_steps(modulus_bits):
    x = np.random.default_rng(2).uniform(-3, 3, size=(7, 200))
    encoded = secagg.encode(x, scale_bits=10, modulus_bits=modulus_bits, n_parties=7)
    total = encoded.sum(axis=0, dtype=np.uint64)           # wraps mod 2^64, hence mod 2^k

    err = np.abs(secagg.decode(total, scale_bits=10, modulus_bits=modulus_bits) - x.sum(axis=0))
    assert err.max() <= 7 * 2.0**-11
    assert err.max() > 2.0**-11                               # the bound is not vacuous here


def test_an_update_that_could_wrap_the_sum_raises():
    # 2^(k-1) / n = 2^15 / 4 = 8192 steps of 2^-4: |x| must stay below 512
    secagg.encode([511.9], scale_bits=4, modulus_bits=16, n_parties=4)
    with pytest.raises(ValueError, match=r"updates must lie in \(-512, 512\).*n_parties=4.*modulus_bits=16"):
        secagg.encode([512.0], scale_bits=4, modulus_bits=16, n_parties=4)


# --- in fedavg ---------------------------------------------------------------------------

@pytest.fixture(scope="module")
def parties():
    return fl.split(*fl.make_regression(200, 3, noise=0.3, seed=0)[:2], 5, seed=0)


def test_fedavg_with_secure_aggregation_equals_plain_fedavg(parties):
    plain = fl.fedavg(parties, lr=0.1, rounds=5, local_epochs=2, batch_size=8, seed=0)
    secure = fl.fedavg(parties, lr=0.1, rounds=5, local_epochs=2, batch_size=8, seed=0,
                       aggregator=secagg.SecureAggregator(3, scale_bits=32))

    np.testing.assert_allclose(secure.thetas, plain.thetas, rtol=0, atol=1e-6)
    assert secure.metrics["secagg_survivors"].tolist() == [5] * 5


def test_the_secure_aggregator_averages_over_the_survivors():
    updates = np.random.default_rng(3).normal(size=(4, 3))
    weights = np.array([0.1, 0.2, 0.3, 0.4])
    agg = secagg.SecureAggregator(2, scale_bits=30, drop={0: "before_input", 3: "after_input"})

    got = agg(updates, weights, rng=np.random.default_rng(0))

    assert got.weight == pytest.approx(0.9)
    np.testing.assert_allclose(got.mean, weights[1:] @ updates[1:] / 0.9, atol=1e-8)


def test_importing_secagg_does_not_import_cryptography():
    code = "import sys, fl_helpers.secagg; assert 'cryptography' not in sys.modules, 'cryptography imported'"
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr


def test_a_round_with_fewer_parties_than_the_threshold_says_so():
    X, y, _ = fl.make_regression(200, 3, noise=0.3, seed=0)
    parties = fl.split(X, y, 5, seed=0)
    with pytest.raises(ValueError, match=r"needs at least 3 parties in a round, got 2 selected"):
        fl.fedavg(parties, lr=0.1, rounds=5, fraction=0.4, seed=0, aggregator=secagg.SecureAggregator(3))


def test_the_survivor_count_of_an_empty_round_is_zero():
    X, y, _ = fl.make_regression(200, 3, noise=0.3, seed=0)
    parties = fl.split(X, y, 12, seed=0)
    run = fl.train(parties, lr=0.1, rounds=12, fraction=0.1, sampling="poisson", seed=0,
                   aggregator=secagg.SecureAggregator(1))
    selected = np.array([len(s) for s in run.selected])
    assert np.any(selected == 0)
    np.testing.assert_array_equal(run.metrics["secagg_survivors"], selected)
