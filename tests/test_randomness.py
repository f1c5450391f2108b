"""fl_helpers.randomness: the randomness contract, checked against hand-written references.

Every random number of a run is keyed by (seed, stream, round[, party]):

* (a) batch size, local epochs and the engine never change which parties are sampled;
* (b) a party's update does not depend on which other parties were sampled;
* (c) a party computes its round-t update alone, bit-identical to its row in a full run;
* (d) every engine draws the same numbers, so their histories agree to rounding.

The references are written here: client sampling from ``SeedSequence(seed,
spawn_key=(1, t))`` (the documented stream numbers), the minibatch loop and
the linear model's gradient by hand, the SplitMix64 test vector, Monte Carlo
moments of U(0, 1).
"""

from __future__ import annotations

import numpy as np
import pytest
from optional import require_tensorflow

import fl_helpers as fl
from fl_helpers import randomness
from fl_helpers.engines import make_engine

SEED = 7
LR = 0.05
ROUNDS = 6
N_PARTIES = 8
SIZES = [5, 59, 22, 6, 12, 4, 8, 4]          # fl.split(..., "quantity", skew=1.5, seed=1)


# ----------------------------------------------------------------------------- helpers



def _tf_engine(parties):
    require_tensorflow()
    return make_engine("tensorflow", parties, dtype="float64", device="cpu")


@pytest.fixture(scope="module")
def parties():
    X, y, _ = fl.make_regression(120, 3, noise=0.5, seed=0)
    parties = fl.split(X, y, N_PARTIES, scheme="quantity", skew=1.5, seed=1)
    assert [p.n_samples for p in parties] == SIZES
    return parties


def hand_sample(seed: int, t: int, n: int, k: int) -> np.ndarray:
    """Client sampling of round t, from the documented stream ("sampling" = 1) without the library."""
    rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(1, t)))
    return np.sort(rng.choice(n, size=k, replace=False))


def hand_gradient(theta, X, y):
    """The linear model's gradient, 2/m X~^T (X~ theta - y), written out."""
    Xt = np.hstack([np.ones((len(y), 1)), X])
    return 2.0 / len(y) * Xt.T @ (Xt @ theta - y)


def hand_local_update(party, theta, *, lr, epochs, batch_size, seed, t, i):
    """Minibatch SGD of one party written out: the keys are its local stream, orders their stable argsort."""
    X, y = party.data
    m = len(y)
    keys = randomness.local_uniforms(seed, t, [i], [epochs * m])
    local = np.array(theta, dtype=np.float64)
    total = np.zeros_like(local)
    steps = 0
    for e in range(epochs):
        order = np.argsort(keys[e * m:(e + 1) * m], kind="stable")
        assert sorted(order) == list(range(m))          # a permutation of the party's rows
        for start in range(0, m, batch_size):
            idx = order[start:start + batch_size]
            g = hand_gradient(local, X[idx], y[idx])
            local = local - lr * g
            total = total + g
            steps += 1
    assert steps == epochs * -(-m // batch_size)          # ceil(m / b) steps an epoch, last one short
    return total, local


# ----------------------------------------------------------------------------- (a) sampling

def test_client_sampling_is_the_documented_stream(parties):
    h = fl.fedavg(parties, lr=LR, rounds=ROUNDS, fraction=0.3, seed=SEED)
    k = round(0.3 * N_PARTIES)                            # = 2
    assert len(h.selected) == ROUNDS
    for t, sel in enumerate(h.selected, start=1):
        np.testing.assert_array_equal(sel, hand_sample(SEED, t, N_PARTIES, k))


@pytest.mark.parametrize("options", [
    {"batch_size": 5},
    {"local_epochs": 3},
    {"local_epochs": 3, "batch_size": 5},
    {"engine": "vectorized"},
    {"engine": "vectorized", "batch_size": 5, "local_epochs": 3},
])
def test_sampling_does_not_depend_on_batch_size_epochs_or_engine(parties, options):
    base = fl.fedavg(parties, lr=LR, rounds=ROUNDS, fraction=0.3, seed=SEED)
    other = fl.fedavg(parties, lr=LR, rounds=ROUNDS, fraction=0.3, seed=SEED, **options)
    assert len(other.selected) == ROUNDS
    for a, b in zip(base.selected, other.selected, strict=True):
        np.testing.assert_array_equal(a, b)
    if set(options) - {"engine"}:       # the options did change the training, not the sampling
        assert not np.allclose(base.thetas, other.thetas)


def test_sampling_does_not_depend_on_the_tensorflow_engine(parties):
    eng = _tf_engine(parties)
    base = fl.fedavg(parties, lr=LR, rounds=ROUNDS, fraction=0.3, seed=SEED)
    other = fl.fedavg(parties, lr=LR, rounds=ROUNDS, fraction=0.3, seed=SEED, batch_size=5,
                      local_epochs=3, engine=eng)
    for a, b in zip(base.selected, other.selected, strict=True):
        np.testing.assert_array_equal(a, b)


def test_same_seed_gives_the_same_history_and_other_seeds_other_samples(parties):
    kw = dict(lr=LR, rounds=ROUNDS, fraction=0.3, batch_size=5, local_epochs=2)
    a = fl.fedavg(parties, seed=SEED, **kw)
    b = fl.fedavg(parties, seed=SEED, **kw)
    np.testing.assert_array_equal(a.thetas, b.thetas)
    np.testing.assert_array_equal(a.losses, b.losses)
    for x, y in zip(a.selected, b.selected, strict=True):
        np.testing.assert_array_equal(x, y)
    c = fl.fedavg(parties, seed=SEED + 1, **kw)
    assert any(not np.array_equal(x, y) for x, y in zip(a.selected, c.selected, strict=True))
    assert not np.array_equal(a.thetas, c.thetas)


# ----------------------------------------------------------------------------- (b), (c) local work

@pytest.mark.parametrize("engine", ["loop", "vectorized"])
def test_a_partys_update_does_not_depend_on_the_other_sampled_parties(parties, engine):
    eng = make_engine(engine, parties)
    theta = np.array([0.3, -0.2, 0.5, 0.1])
    kw = dict(lr=LR, epochs=2, batch_size=5, seed=SEED, round=4)
    a = eng.local_work(theta, np.array([0, 2, 5]), **kw)
    b = eng.local_work(theta, np.array([1, 2, 7]), **kw)
    c = eng.local_work(theta, np.arange(N_PARTIES), **kw)
    rows = (a.updates[1], b.updates[1], c.updates[2])     # party 2 in all three
    if engine == "loop":
        np.testing.assert_array_equal(rows[0], rows[1])
        np.testing.assert_array_equal(rows[0], rows[2])
    else:
        np.testing.assert_allclose(rows[1], rows[0], rtol=0, atol=1e-12)
        np.testing.assert_allclose(rows[2], rows[0], rtol=0, atol=1e-12)
    # other rounds draw other minibatch orders: the round is part of the key
    d = eng.local_work(theta, np.array([2]), **{**kw, "round": 5})
    assert np.max(np.abs(d.updates[0] - rows[0])) > 1e-6


@pytest.mark.parametrize("engine, exact", [("loop", True), ("vectorized", False)])
def test_every_row_of_a_run_is_its_partys_own_local_update(parties, engine, exact):
    """(b) + (c): a sampled party recomputes its row alone, from (theta_{t-1}, seed, t, i)."""
    kw = dict(lr=LR, local_epochs=2, batch_size=5)
    h = fl.fedavg(parties, rounds=ROUNDS, fraction=0.3, seed=SEED, engine=engine, keep_updates=True, **kw)
    assert len(h.updates) == ROUNDS
    for t in range(1, ROUNDS + 1):
        for q, i in enumerate(h.selected[t - 1]):
            alone = parties[i].local_update(h.thetas[t - 1], lr=LR, epochs=2, batch_size=5, seed=SEED,
                                            round=t, index=int(i))
            if exact:
                np.testing.assert_array_equal(h.updates[t - 1][q], alone.update)
            else:
                np.testing.assert_allclose(h.updates[t - 1][q], alone.update, rtol=0, atol=1e-12)


def test_local_update_is_the_hand_written_minibatch_loop(parties):
    """The shuffle order (stable argsort of the party's keys) and every minibatch, the last short one too."""
    theta = np.array([0.2, 0.1, -0.4, 0.3])
    for i, t, epochs, b in [(1, 3, 2, 5), (2, 1, 3, 4), (4, 6, 1, 5), (0, 2, 2, 2)]:
        # sizes 59 (12 batches, last 4 rows), 22 (6 batches, last 2), 12 (3, last 2), 5 (3, last 1)
        total, local = hand_local_update(parties[i], theta, lr=LR, epochs=epochs, batch_size=b,
                                         seed=SEED, t=t, i=i)
        got = parties[i].local_update(theta, lr=LR, epochs=epochs, batch_size=b, seed=SEED, round=t, index=i)
        np.testing.assert_allclose(got.update, total, rtol=1e-13, atol=1e-13)
        np.testing.assert_allclose(got.theta, local, rtol=1e-13, atol=1e-13)
        assert got.weight == SIZES[i]


def test_without_a_seed_local_minibatches_follow_the_data_order(parties):
    p = parties[2]
    X, y = p.data
    theta = np.zeros(4)
    local, total = theta.copy(), np.zeros(4)
    for start in range(0, len(y), 5):
        g = hand_gradient(local, X[start:start + 5], y[start:start + 5])
        local, total = local - LR * g, total + g
    got = p.local_update(theta, lr=LR, batch_size=5)
    np.testing.assert_allclose(got.update, total, rtol=1e-13, atol=1e-13)


# ----------------------------------------------------------------------------- (d) engines agree

def _engine_runs(parties, engines):
    kw = dict(lr=LR, rounds=ROUNDS, local_epochs=2, batch_size=5, fraction=0.5, seed=SEED, keep_updates=True)
    return {name: fl.fedavg(parties, engine=eng, **kw) for name, eng in engines.items()}


def _assert_histories_agree(ref, other):
    np.testing.assert_allclose(other.thetas, ref.thetas, rtol=0, atol=1e-10)
    np.testing.assert_allclose(other.losses, ref.losses, rtol=1e-10, atol=0)
    for a, b in zip(ref.selected, other.selected, strict=True):
        np.testing.assert_array_equal(a, b)
    for a, b in zip(ref.updates, other.updates, strict=True):
        np.testing.assert_allclose(b, a, rtol=0, atol=1e-10)


def test_loop_and_vectorized_engines_use_the_same_numbers(parties):
    runs = _engine_runs(parties, {"loop": "loop", "vectorized": "vectorized"})
    _assert_histories_agree(runs["loop"], runs["vectorized"])
    assert runs["loop"].losses[-1] < 0.5 * runs["loop"].losses[0]        # it trained


def test_tensorflow_float64_engine_uses_the_same_numbers(parties):
    runs = _engine_runs(parties, {"loop": "loop", "tensorflow": _tf_engine(parties)})
    assert runs["tensorflow"].engine == "tensorflow"
    _assert_histories_agree(runs["loop"], runs["tensorflow"])


# ----------------------------------------------------------------------------- the local stream

def test_splitmix64_finaliser_matches_the_published_test_vector():
    """SplitMix64 seeded with 0 first outputs mix(0x9E3779B97F4A7C15) = 0xE220A8397B1DCDAF (Vigna's splitmix64.c)."""
    out = randomness._mix(np.array([0x9E3779B97F4A7C15, 2 * 0x9E3779B97F4A7C15 % 2**64], dtype=np.uint64))
    assert int(out[0]) == 0xE220A8397B1DCDAF
    assert int(out[1]) == 0x6E789E6AA1B965F4


def test_local_uniforms_of_one_party_alone_equal_its_slice_of_a_many_party_draw():
    parties = np.array([6, 0, 3, 11])
    counts = np.array([4, 7, 0, 5])
    many = randomness.local_uniforms(SEED, 3, parties, counts)
    assert many.shape == (16,)
    start = 0
    for i, c in zip(parties, counts, strict=True):
        alone = randomness.local_uniforms(SEED, 3, [i], [c])
        np.testing.assert_array_equal(many[start:start + c], alone)
        start += c
    # the j-th number depends on j only, not on how many are drawn
    np.testing.assert_array_equal(randomness.local_uniforms(SEED, 3, [6], [2]), many[:2])
    # shuffle_keys: epochs * m_i numbers per party, party after party
    keys = randomness.shuffle_keys(SEED, 3, [6, 0], [2, 3], 2)
    np.testing.assert_array_equal(keys, np.concatenate([randomness.local_uniforms(SEED, 3, [6], [4]),
                                                        randomness.local_uniforms(SEED, 3, [0], [6])]))


def test_local_uniforms_differ_across_seeds_rounds_and_parties():
    draws = [randomness.local_uniforms(s, t, [i], [64]) for s, t, i in
             [(SEED, 1, 0), (SEED + 1, 1, 0), (SEED, 2, 0), (SEED, 1, 1), (0, 1, 0), (SEED, 0, 0)]]
    for a in range(len(draws)):
        for b in range(a + 1, len(draws)):
            assert not np.any(draws[a] == draws[b]), (a, b)


def test_local_uniforms_look_uniform():
    """n = 200,000 draws: mean 1/2 and variance 1/12 within 5 standard errors.

    SE(mean) = sqrt(1/(12 n)) = 6.5e-4; SE(variance) = sqrt(Var((U - 1/2)^2) / n) with
    Var((U - 1/2)^2) = 1/80 - 1/144 = 1/180, i.e. 5.3e-4. 20 bins: each holds n/20 within 5 sqrt(n/20).
    """
    n = 200_000
    u = randomness.local_uniforms(SEED, 1, np.arange(100), np.full(100, n // 100))
    assert u.shape == (n,)
    assert u.min() >= 0.0 and u.max() < 1.0
    assert abs(u.mean() - 0.5) < 5 * np.sqrt(1 / 12 / n)
    assert abs(((u - 0.5) ** 2).mean() - 1 / 12) < 5 * np.sqrt(1 / 180 / n)
    counts = np.bincount((u * 20).astype(int), minlength=20)
    assert np.all(np.abs(counts - n / 20) < 5 * np.sqrt(n / 20))
    # neighbouring parties' streams are uncorrelated: |r| < 5 / sqrt(2000)
    a, b = u[:2000], u[2000:4000]
    assert abs(np.corrcoef(a, b)[0, 1]) < 5 / np.sqrt(2000)
    # consecutive numbers of one stream too
    assert abs(np.corrcoef(u[:-1], u[1:])[0, 1]) < 5 / np.sqrt(n)


# ----------------------------------------------------------------------------- hook generators

def test_generator_is_the_seed_sequence_with_the_documented_spawn_key():
    for stream, number in [("local", 0), ("sampling", 1), ("transform", 2), ("aggregate", 3), ("server", 4)]:
        ref = np.random.default_rng(np.random.SeedSequence(SEED, spawn_key=(number, 5)))
        np.testing.assert_array_equal(randomness.generator(SEED, stream, 5).random(4), ref.random(4))
    ref = np.random.default_rng(np.random.SeedSequence(SEED, spawn_key=(2, 5, 3)))
    np.testing.assert_array_equal(randomness.generator(SEED, "transform", 5, 3).random(4), ref.random(4))


def test_generator_streams_differ_across_streams_rounds_and_parties():
    keys = [("sampling", 1, None), ("transform", 1, None), ("aggregate", 1, None), ("server", 1, None),
            ("sampling", 2, None), ("transform", 1, 0), ("transform", 1, 1), ("transform", 2, 0)]
    draws = [randomness.generator(SEED, s, t, i).integers(0, 2**62, size=4) for s, t, i in keys]
    for a in range(len(draws)):
        for b in range(a + 1, len(draws)):
            assert not np.array_equal(draws[a], draws[b]), (keys[a], keys[b])
    # and are reproducible
    np.testing.assert_array_equal(randomness.generator(SEED, "transform", 2, 0).integers(0, 2**62, size=4),
                                  draws[-1])


def test_generator_rejects_an_unknown_stream():
    with pytest.raises(ValueError, match="stream.*'sampling'.*'noise'"):
        randomness.generator(SEED, "noise", 1)


# ----------------------------------------------------------------------------- seed=None

def test_seed_none_draws_a_fresh_root_seed_and_keeps_the_contract_within_the_run(parties, monkeypatch):
    roots = []
    real = randomness.root_seed

    def spy(seed):
        roots.append(real(seed))
        return roots[-1]

    monkeypatch.setattr(randomness, "root_seed", spy)
    kw = dict(lr=LR, rounds=ROUNDS, fraction=0.3, batch_size=5, local_epochs=2, keep_updates=True)
    a = fl.fedavg(parties, seed=None, **kw)
    b = fl.fedavg(parties, seed=None, **kw)
    assert len(roots) == 2 and roots[0] != roots[1]
    assert all(isinstance(r, int) and 0 <= r < 2**64 for r in roots)
    # two unseeded runs differ (identical samples in all 6 rounds: probability 28**-6)
    assert any(not np.array_equal(x, y) for x, y in zip(a.selected, b.selected, strict=True))
    for h, root in [(a, roots[0]), (b, roots[1])]:
        assert np.all(np.isfinite(h.thetas)) and h.losses[-1] < h.losses[0]
        for t in range(1, ROUNDS + 1):
            np.testing.assert_array_equal(h.selected[t - 1], hand_sample(root, t, N_PARTIES, 2))
            for q, i in enumerate(h.selected[t - 1]):
                alone = parties[i].local_update(h.thetas[t - 1], lr=LR, epochs=2, batch_size=5, seed=root,
                                                round=t, index=int(i))
                np.testing.assert_array_equal(h.updates[t - 1][q], alone.update)


def test_root_seed_passes_a_seed_through():
    assert randomness.root_seed(12345) == 12345
    with pytest.raises(ValueError, match="seed"):
        randomness.root_seed(-1)
