"""cases: each party alone, federated and pooled models against hand-written gradient descent."""

from __future__ import annotations

import numpy as np
import pytest

import fl_helpers as fl
from fl_helpers import cases, models


def logistic_gd(X, y, *, lr, steps, theta=None):
    """Full-batch GD on the mean cross-entropy, intercept first, written out."""
    Xt = np.hstack([np.ones((len(y), 1)), X])
    theta = np.zeros(Xt.shape[1]) if theta is None else np.array(theta, dtype=float)
    for _ in range(steps):
        p = 1.0 / (1.0 + np.exp(-Xt @ theta))
        theta = theta - lr * Xt.T @ (p - y) / len(y)
    return theta


@pytest.fixture
def banks():
    rng = np.random.default_rng(3)
    out = []
    for i, (m, shift) in enumerate([(40, 0.0), (25, 1.0), (12, -1.0)]):
        X = rng.normal(shift, 1.0, size=(m, 2))
        y = (X[:, 0] + 0.5 * rng.normal(size=m) > shift).astype(int)
        out.append(fl.Party(X, y, model=models.logistic, name=f"bank {i}"))
    return out


def test_full_batch_models_equal_hand_written_gd(banks):
    c = cases.compare(banks, lr=0.5, rounds=6, local_epochs=3)
    for p, theta in zip(banks, c.local, strict=True):             # alone: 18 GD steps on its own data
        np.testing.assert_allclose(theta, logistic_gd(*p.data, lr=0.5, steps=18), rtol=1e-12, atol=1e-14)
    X = np.concatenate([p.data[0] for p in banks])
    y = np.concatenate([p.data[1] for p in banks])
    np.testing.assert_allclose(c.pooled, logistic_gd(X, y, lr=0.5, steps=18), rtol=1e-12, atol=1e-14)
    theta = np.zeros(3)                                          # FedAvg: 3 local steps, sample-weighted mean
    for _ in range(6):
        locals_ = [logistic_gd(*p.data, lr=0.5, steps=3, theta=theta) for p in banks]
        theta = sum(p.n_samples * t for p, t in zip(banks, locals_, strict=True)) / X.shape[0]
    np.testing.assert_allclose(c.federated, theta, rtol=1e-12, atol=1e-14)
    assert c.names == ["bank 0", "bank 1", "bank 2"] and c.personalised is None


def test_personalised_is_local_gd_from_the_federated_model(banks):
    c = cases.compare(banks, lr=0.5, rounds=4, fine_tune_epochs=5, fine_tune_lr=0.2)
    for p, theta in zip(banks, c.personalised, strict=True):
        np.testing.assert_allclose(theta, logistic_gd(*p.data, lr=0.2, steps=5, theta=c.federated), rtol=1e-12)


def test_federated_hooks_reach_only_the_federated_run(banks):
    plain = cases.compare(banks, lr=0.5, rounds=3)
    half = cases.compare(banks, lr=0.5, rounds=3, fraction=0.34, seed=0)   # one bank per round
    assert [len(s) for s in half.history.selected] == [1, 1, 1]
    assert not np.allclose(plain.federated, half.federated)
    for a, b in zip(plain.local, half.local, strict=True):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(plain.pooled, half.pooled)


def test_score_and_summarise_by_hand(banks):
    c = cases.compare(banks, lr=0.5, rounds=3, fine_tune_epochs=1)
    tests = [p.data for p in banks]
    s = cases.score(c, tests, lambda theta, X, y: models.logistic.loss(theta, X, y))
    assert set(s) == {"local", "federated", "pooled", "personalised"}
    for i, p in enumerate(banks):
        assert s["federated"][i] == pytest.approx(models.logistic.loss(c.federated, *p.data))
        assert s["local"][i] == pytest.approx(models.logistic.loss(c.local[i], *p.data))
    runs = [{"a": np.array([1.0, 2.0])}, {"a": np.array([3.0, 6.0])}]
    mean, std = cases.summarise(runs)["a"]
    np.testing.assert_allclose(mean, [2.0, 4.0])
    np.testing.assert_allclose(std, [np.sqrt(2.0), np.sqrt(8.0)])
    np.testing.assert_array_equal(cases.summarise(runs[:1])["a"][1], [0.0, 0.0])


def test_pool_stacks_in_party_order(banks):
    p = cases.pool(banks)
    assert p.n_samples == 77 and p.model is models.logistic
    np.testing.assert_array_equal(p.data[0][40:65], banks[1].data[0])


def test_bad_input(banks):
    with pytest.raises(ValueError, match="fine_tune_epochs"):
        cases.compare(banks, lr=0.5, rounds=2, fine_tune_epochs=-1)
    with pytest.raises(ValueError, match="tests must hold one"):
        cases.score(cases.compare(banks, lr=0.5, rounds=1), banks[:2], lambda *a: 0.0)
    with pytest.raises(ValueError, match="at least one"):
        cases.summarise([])
    rng = np.random.default_rng(0)
    wild = [fl.Party(rng.normal(0, 100, size=(10, 2)), rng.normal(size=10)) for _ in range(2)]
    with pytest.raises(ValueError, match="diverged"):
        cases.compare(wild, lr=10.0, rounds=20)


def test_the_engine_reaches_all_three_runs(banks):
    loop = cases.compare(banks, lr=0.5, rounds=3, local_epochs=2)
    vec = cases.compare(banks, lr=0.5, rounds=3, local_epochs=2, engine="vectorized")
    assert vec.history.engine == "vectorized"
    for a, b in zip(loop.local + [loop.pooled, loop.federated], vec.local + [vec.pooled, vec.federated], strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-15)
