"""fl_helpers.parties: Party and its local update (the pseudo-gradient)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

import fl_helpers as fl
from fl_helpers.linear import mse_gradient


@pytest.fixture
def party():
    rng = np.random.default_rng(7)
    X = rng.standard_normal((11, 3))
    y = X @ np.array([1.0, -2.0, 0.5]) + 0.3 + 0.1 * rng.standard_normal(11)
    return fl.Party(X, y, name="clinic A")


# --- the data it holds -------------------------------------------------------

def test_two_sample_party_loss_and_gradient_by_hand():
    # x = [1, 2], y = [1, 3], theta = [0, 1]: residuals [0, -1]
    p = fl.Party([[1.0], [2.0]], [1.0, 3.0])

    assert p.loss([0.0, 1.0]) == 0.5
    np.testing.assert_array_equal(p.gradient([0.0, 1.0]), [-1.0, -2.0])


def test_sizes_name_and_repr(party):
    assert (party.n_samples, party.n_features) == (11, 3)
    assert party.name == "clinic A"
    assert repr(party) == "Party('clinic A', n_samples=11, n_features=3)"
    assert repr(fl.Party([[1.0]], [2.0])) == "Party(n_samples=1, n_features=1)"


def test_data_is_read_only(party):
    X, y = party.data
    with pytest.raises(ValueError, match="read-only"):
        X[0, 0] = 99.0
    with pytest.raises(ValueError, match="read-only"):
        y[0] = 99.0


def test_party_keeps_a_private_copy_and_leaves_callers_arrays_writable():
    X = np.arange(6.0).reshape(3, 2)
    y = np.array([1.0, 2.0, 3.0])

    p = fl.Party(X, y)
    X[0, 0] = 100.0          # the caller can still write to its own arrays ...
    y[0] = 100.0

    assert p.data[0][0, 0] == 0.0      # ... and the party does not see the change
    assert p.data[1][0] == 1.0


def test_integer_lists_are_accepted_as_float64():
    p = fl.Party([[1, 2], [3, 4]], [5, 6])
    assert p.data[0].dtype == np.float64 and p.data[1].dtype == np.float64


# --- local_update -----------------------------------------------------------

def test_one_full_batch_epoch_update_is_exactly_the_gradient(party):
    theta = np.array([0.1, 0.2, -0.3, 0.4])

    out = party.local_update(theta, lr=0.05, epochs=1)

    np.testing.assert_array_equal(out.update, party.gradient(theta))
    np.testing.assert_allclose(out.theta, theta - 0.05 * party.gradient(theta), rtol=1e-15)


@pytest.mark.parametrize("epochs, batch_size", [(1, None), (3, None), (1, 4), (2, 3), (4, 20)])
@pytest.mark.parametrize("with_rng", [False, True])
def test_update_is_the_model_change_over_lr(party, epochs, batch_size, with_rng):
    theta = np.array([0.5, -0.5, 1.0, 0.0])
    lr = 0.03
    seed = 0 if with_rng else None

    out = party.local_update(theta, lr=lr, epochs=epochs, batch_size=batch_size, seed=seed)

    np.testing.assert_allclose(out.update, (theta - out.theta) / lr, rtol=1e-10, atol=1e-12)
    assert out.weight == party.n_samples == 11


def test_several_full_batch_epochs_by_hand(party):
    theta = np.zeros(4)
    lr = 0.1
    local, total = theta.copy(), np.zeros(4)
    for _ in range(3):
        g = party.gradient(local)
        local = local - lr * g
        total = total + g

    out = party.local_update(theta, lr=lr, epochs=3)

    np.testing.assert_allclose(out.theta, local, rtol=1e-14)
    np.testing.assert_allclose(out.update, total, rtol=1e-14)


def test_minibatch_order_is_argsort_of_the_partys_own_keys(party):
    """Epoch e visits the samples in the order argsort(keys of epoch e), batch by batch.

    The keys are party ``index``'s local stream in round ``round`` (the randomness contract).
    """
    theta = np.array([0.2, 0.0, -0.1, 0.3])
    lr, epochs, batch_size, m = 0.05, 2, 4, party.n_samples
    X, y = party.data

    keys = fl.randomness.local_uniforms(42, 3, [5], [epochs * m])
    local, total = theta.copy(), np.zeros(4)
    for e in range(epochs):
        order = np.argsort(keys[e * m:(e + 1) * m])
        for batch in (order[0:4], order[4:8], order[8:11]):      # last batch smaller: 11 = 4 + 4 + 3
            Xb = np.hstack([np.ones((len(batch), 1)), X[batch]])      # the gradient written out
            g = 2.0 / len(batch) * Xb.T @ (Xb @ local - y[batch])
            local = local - lr * g
            total = total + g

    out = party.local_update(theta, lr=lr, epochs=epochs, batch_size=batch_size, seed=42, round=3, index=5)

    np.testing.assert_allclose(out.theta, local, rtol=1e-13, atol=1e-15)
    np.testing.assert_allclose(out.update, total, rtol=1e-13, atol=1e-15)


def test_minibatches_without_rng_follow_the_data_order(party):
    theta = np.zeros(4)
    X, y = party.data
    local = theta.copy()
    for start in range(0, 11, 5):
        local = local - 0.1 * mse_gradient(local, X[start:start + 5], y[start:start + 5])

    out = party.local_update(theta, lr=0.1, epochs=1, batch_size=5)

    np.testing.assert_allclose(out.theta, local, rtol=1e-14)


def test_shuffling_changes_the_path(party):
    theta = np.zeros(4)
    a = party.local_update(theta, lr=0.1, epochs=1, batch_size=3, seed=1)
    b = party.local_update(theta, lr=0.1, epochs=1, batch_size=3, seed=2)
    c = party.local_update(theta, lr=0.1, epochs=1, batch_size=3, seed=1)
    d = party.local_update(theta, lr=0.1, epochs=1, batch_size=3, seed=1, round=2)
    e = party.local_update(theta, lr=0.1, epochs=1, batch_size=3, seed=1, index=1)

    assert not np.allclose(a.theta, b.theta)
    assert not np.allclose(a.theta, d.theta) and not np.allclose(a.theta, e.theta)   # keyed by round, index
    np.testing.assert_array_equal(a.theta, c.theta)


def test_batch_larger_than_the_data_is_one_full_batch_step(party):
    theta = np.array([1.0, 1.0, 1.0, 1.0])

    out = party.local_update(theta, lr=0.1, epochs=1, batch_size=1000, seed=0)

    np.testing.assert_allclose(out.update, party.gradient(theta), rtol=1e-13)


def test_local_update_leaves_the_broadcast_model_untouched(party):
    theta = np.array([0.1, 0.2, 0.3, 0.4])
    theta.setflags(write=False)                 # what broadcast() sends is read-only

    out = party.local_update(theta, lr=0.1, epochs=2, batch_size=2, seed=0)

    np.testing.assert_array_equal(theta, [0.1, 0.2, 0.3, 0.4])
    assert not np.shares_memory(out.theta, theta)


def test_client_update_is_frozen(party):
    out = party.local_update(np.zeros(4), lr=0.1, epochs=1)
    with pytest.raises(dataclasses.FrozenInstanceError):
        out.weight = 1.0
