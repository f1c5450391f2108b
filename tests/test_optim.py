"""fl_helpers.optim: server optimizers (Reddi et al. 2021, Algorithm 2).

The references are hand-computed numbers written as literals, with the
arithmetic in the comments; the examples use round numbers (Pythagorean
triples, exact binary fractions) so that every line checks on paper.
"""

from __future__ import annotations

import numpy as np
import pytest

from fl_helpers import optim
from fl_helpers.optim import OptState, adagrad, adam, sgd, yogi


def run_two_rounds(opt, theta0, delta1, delta2):
    """Two server steps from ``opt.init(theta0)``; returns (theta1, state1, theta2, state2)."""
    state0 = opt.init(np.array(theta0, dtype=float))
    theta1, state1 = opt.step(np.array(theta0, dtype=float), np.array(delta1, dtype=float), state0)
    theta2, state2 = opt.step(theta1, np.array(delta2, dtype=float), state1)
    return theta1, state1, theta2, state2


# --- the rules, two rounds by hand ---------------------------------------------------------


def test_sgd_two_rounds_by_hand():
    # Prepare: lr = 0.5, no momentum, theta0 = [1, 2], delta1 = [2, -4], delta2 = [4, 2]
    opt = sgd(0.5)
    # Execute
    theta1, state1, theta2, state2 = run_two_rounds(opt, [1.0, 2.0], [2.0, -4.0], [4.0, 2.0])
    # Assert: theta1 = [1, 2] + 0.5 * [2, -4] = [2, 0]
    np.testing.assert_array_equal(theta1, [2.0, 0.0])
    # theta2 = [2, 0] + 0.5 * [4, 2] = [4, 1]
    np.testing.assert_array_equal(theta2, [4.0, 1.0])
    assert (state1.t, state2.t) == (1, 2) and state2.v is None


def test_sgd_momentum_two_rounds_by_hand():
    # Prepare: FedAvgM, lr = 0.5, momentum = 0.5, same data as above
    opt = sgd(0.5, momentum=0.5)
    # Execute
    theta1, state1, theta2, state2 = run_two_rounds(opt, [1.0, 2.0], [2.0, -4.0], [4.0, 2.0])
    # Assert: m1 = 0.5 * [0, 0] + [2, -4] = [2, -4];  theta1 = [1, 2] + 0.5 * [2, -4] = [2, 0]
    np.testing.assert_array_equal(state1.m, [2.0, -4.0])
    np.testing.assert_array_equal(theta1, [2.0, 0.0])
    # m2 = 0.5 * [2, -4] + [4, 2] = [5, 0];  theta2 = [2, 0] + 0.5 * [5, 0] = [4.5, 0]
    np.testing.assert_array_equal(state2.m, [5.0, 0.0])
    np.testing.assert_array_equal(theta2, [4.5, 0.0])
    assert state2.t == 2


def test_adam_two_rounds_by_hand():
    # Prepare: lr = 2, beta1 = beta2 = 0.5, tau = 1 (so v0 = tau^2 = [1, 1]), theta0 = [1, -1],
    # delta1 = [1, 7], delta2 = [7, -5] (1 + 49 = 2 * 25 keeps the square roots whole)
    opt = adam(2.0, beta1=0.5, beta2=0.5, tau=1.0)
    # Execute
    theta1, state1, theta2, state2 = run_two_rounds(opt, [1.0, -1.0], [1.0, 7.0], [7.0, -5.0])
    # Assert, round 1:
    #   m1 = 0.5 * [0, 0] + 0.5 * [1, 7]   = [0.5, 3.5]
    #   v1 = 0.5 * [1, 1] + 0.5 * [1, 49]  = [1, 25],  sqrt(v1) + tau = [2, 6]
    #   theta1 = [1, -1] + 2 * [0.5 / 2, 3.5 / 6] = [1 + 0.5, -1 + 7/6] = [1.5, 1/6]
    np.testing.assert_allclose(state1.m, [0.5, 3.5], rtol=1e-15)
    np.testing.assert_allclose(state1.v, [1.0, 25.0], rtol=1e-15)
    np.testing.assert_allclose(theta1, [1.5, 1 / 6], rtol=1e-14)
    # round 2:
    #   m2 = 0.5 * [0.5, 3.5] + 0.5 * [7, -5] = [0.25 + 3.5, 1.75 - 2.5] = [3.75, -0.75]
    #   v2 = 0.5 * [1, 25] + 0.5 * [49, 25]  = [25, 25],  sqrt(v2) + tau = [6, 6]
    #   theta2 = [1.5, 1/6] + 2 * [3.75 / 6, -0.75 / 6] = [1.5 + 1.25, 1/6 - 0.25] = [2.75, -1/12]
    np.testing.assert_allclose(state2.m, [3.75, -0.75], rtol=1e-15)
    np.testing.assert_allclose(state2.v, [25.0, 25.0], rtol=1e-15)
    np.testing.assert_allclose(theta2, [2.75, -1 / 12], rtol=1e-14)
    assert state2.t == 2


def test_yogi_two_rounds_by_hand():
    # Prepare: lr = 1, beta1 = 0.5, beta2 = 0.75 (1 - beta2 = 0.25), tau = 2 (v0 = [4, 4]),
    # theta0 = [0, 0], delta1 = [7.5, 2], delta2 = [4, -3]
    opt = yogi(1.0, beta1=0.5, beta2=0.75, tau=2.0)
    # Execute
    theta1, state1, theta2, state2 = run_two_rounds(opt, [0.0, 0.0], [7.5, 2.0], [4.0, -3.0])
    # Assert, round 1: delta1^2 = [56.25, 4]; sign(v0 - delta1^2) = sign([-52.25, 0]) = [-1, 0]
    #   v1 = [4 + 0.25 * 56.25, 4 - 0] = [18.0625, 4]  (v grows / stays when v0 = delta^2)
    #   sqrt(v1) + tau = [4.25 + 2, 2 + 2] = [6.25, 4]
    #   m1 = 0.5 * [7.5, 2] = [3.75, 1];  theta1 = [3.75 / 6.25, 1 / 4] = [0.6, 0.25]
    np.testing.assert_allclose(state1.v, [18.0625, 4.0], rtol=1e-15)
    np.testing.assert_allclose(theta1, [0.6, 0.25], rtol=1e-14)
    # round 2: delta2^2 = [16, 9]; sign(v1 - delta2^2) = sign([2.0625, -5]) = [+1, -1]
    #   v2 = [18.0625 - 0.25 * 16, 4 + 0.25 * 9] = [14.0625, 6.25]  (v shrinks / grows)
    #   sqrt(v2) + tau = [3.75 + 2, 2.5 + 2] = [5.75, 4.5]
    #   m2 = 0.5 * [3.75, 1] + 0.5 * [4, -3] = [3.875, -1]
    #   theta2 = [0.6 + 3.875 / 5.75, 0.25 - 1 / 4.5] = [0.6 + 31/46, 0.25 - 2/9]
    np.testing.assert_allclose(state2.m, [3.875, -1.0], rtol=1e-15)
    np.testing.assert_allclose(state2.v, [14.0625, 6.25], rtol=1e-15)
    np.testing.assert_allclose(theta2, [0.6 + 31 / 46, 0.25 - 2 / 9], rtol=1e-14)
    assert state2.t == 2


def test_adagrad_two_rounds_by_hand():
    # Prepare: lr = 2, tau = 3 (v0 = [9, 9]), default beta1 = 0 so m = delta,
    # theta0 = [1, -1], delta1 = [4, 0], delta2 = [12, -4]  (triples 3-4-5 and 5-12-13)
    opt = adagrad(2.0, tau=3.0)
    # Execute
    theta1, state1, theta2, state2 = run_two_rounds(opt, [1.0, -1.0], [4.0, 0.0], [12.0, -4.0])
    # Assert, round 1: v1 = [9 + 16, 9 + 0] = [25, 9], sqrt(v1) + tau = [8, 6]
    #   theta1 = [1, -1] + 2 * [4 / 8, 0 / 6] = [2, -1]
    np.testing.assert_allclose(state1.v, [25.0, 9.0], rtol=1e-15)
    np.testing.assert_allclose(theta1, [2.0, -1.0], rtol=1e-15)
    # round 2: v2 = [25 + 144, 9 + 16] = [169, 25], sqrt(v2) + tau = [16, 8]
    #   theta2 = [2, -1] + 2 * [12 / 16, -4 / 8] = [3.5, -2]
    np.testing.assert_allclose(state2.v, [169.0, 25.0], rtol=1e-15)
    np.testing.assert_allclose(theta2, [3.5, -2.0], rtol=1e-15)
    np.testing.assert_array_equal(state2.m, [12.0, -4.0])
    assert state2.t == 2


def test_adagrad_with_beta1_by_hand():
    # Prepare: as above with beta1 = 0.5
    opt = adagrad(2.0, beta1=0.5, tau=3.0)
    # Execute
    theta1, _, theta2, state2 = run_two_rounds(opt, [1.0, -1.0], [4.0, 0.0], [12.0, -4.0])
    # Assert: m1 = 0.5 * [4, 0] = [2, 0];  theta1 = [1, -1] + 2 * [2 / 8, 0 / 6] = [1.5, -1]
    np.testing.assert_allclose(theta1, [1.5, -1.0], rtol=1e-15)
    # m2 = 0.5 * [2, 0] + 0.5 * [12, -4] = [7, -2];  theta2 = [1.5, -1] + 2 * [7 / 16, -2 / 8] = [2.375, -1.5]
    np.testing.assert_allclose(state2.m, [7.0, -2.0], rtol=1e-15)
    np.testing.assert_allclose(theta2, [2.375, -1.5], rtol=1e-15)


# --- properties ----------------------------------------------------------------------------


def test_sgd_lr_one_is_exactly_fedavg():
    # Prepare: arbitrary (non-round) numbers, where any extra arithmetic would show in the bits
    rng = np.random.default_rng(0)
    theta, delta = rng.normal(size=7), rng.normal(size=7) * 1e-3
    opt = sgd(1.0)
    # Execute
    new_theta, state = opt.step(theta, delta, opt.init(theta))
    # Assert: bit for bit theta + delta
    np.testing.assert_array_equal(new_theta, theta + delta)
    assert state.t == 1


def test_yogi_sign_rule_differs_from_adam():
    # Prepare: beta2 = 0.5, tau = 0.5 so v0 = 0.25; delta = [2, 0.25]:
    #   component 0: v0 = 0.25 < delta^2 = 4       (v must grow)
    #   component 1: v0 = 0.25 > delta^2 = 0.0625  (v must shrink)
    theta, delta = np.zeros(2), np.array([2.0, 0.25])
    opts = {name: f(1.0, beta1=0.0, beta2=0.5, tau=0.5) for name, f in [("adam", adam), ("yogi", yogi)]}
    # Execute
    v = {name: opt.step(theta, delta, opt.init(theta))[1].v for name, opt in opts.items()}
    # Assert: Adam v1 = 0.5 * 0.25 + 0.5 * [4, 0.0625] = [2.125, 0.15625]
    np.testing.assert_array_equal(v["adam"], [2.125, 0.15625])
    # Yogi v1 = 0.25 - 0.5 * [4, 0.0625] * sign([0.25 - 4, 0.25 - 0.0625]) = 0.25 - 0.5 * [-4, 0.0625]
    #         = [2.25, 0.21875]: Yogi steps by 0.5 * delta^2 either way; Adam by 0.5 * |v0 - delta^2|
    np.testing.assert_array_equal(v["yogi"], [2.25, 0.21875])
    assert v["yogi"][0] > v["adam"][0] and v["yogi"][1] > v["adam"][1]


def test_fedavgm_constant_delta_matches_geometric_series():
    # Prepare: constant delta; m_t = sum_{k<t} beta^k delta = delta (1 - beta^t) / (1 - beta)
    lr, beta, n_steps = 0.5, 0.9, 40
    theta0, delta = np.array([3.0, 4.0]), np.array([1.0, -2.0])
    opt = sgd(lr, momentum=beta)
    # Execute
    theta, state = theta0, opt.init(theta0)
    for _ in range(n_steps):
        theta, state = opt.step(theta, delta, state)
    # Assert: theta_T - theta_0 = lr * delta * sum_{t=1..T} (1 - beta^t) / (1 - beta)
    factor = sum((1 - beta**t) / (1 - beta) for t in range(1, n_steps + 1))
    np.testing.assert_allclose(theta - theta0, lr * delta * factor, rtol=1e-12)
    assert state.t == n_steps


ALL = [sgd(0.5), sgd(0.5, momentum=0.9), adam(0.1), yogi(0.1), adagrad(0.1, beta1=0.5)]


@pytest.mark.parametrize("opt", ALL, ids=lambda o: repr(o))
def test_step_is_pure_and_deterministic(opt):
    # Prepare: a state with non-trivial m and v (one step taken), and copies of every input
    theta0 = np.array([1.0, -2.0, 0.5])
    theta, state = opt.step(theta0, np.array([0.3, 0.1, -0.2]), opt.init(theta0))
    delta = np.array([-0.4, 0.2, 0.7])
    before = [theta.copy(), delta.copy(), state.m.copy(), None if state.v is None else state.v.copy()]
    # Execute
    theta_a, state_a = opt.step(theta, delta, state)
    theta_b, state_b = opt.step(theta, delta, state)
    # Assert: inputs unchanged, same answer twice, a new state
    np.testing.assert_array_equal(theta, before[0])
    np.testing.assert_array_equal(delta, before[1])
    np.testing.assert_array_equal(state.m, before[2])
    if state.v is not None:
        np.testing.assert_array_equal(state.v, before[3])
    assert state.t == 1 and state_a.t == state_b.t == 2
    np.testing.assert_array_equal(theta_a, theta_b)
    np.testing.assert_array_equal(state_a.m, state_b.m)
    assert state_a is not state and theta_a is not theta
    assert not np.array_equal(theta_a, theta)           # it did move
    with pytest.raises(ValueError, match="read-only"):  # state arrays cannot be edited in place
        state_a.m[0] = 0.0


def test_registry_names_match():
    # Prepare / Execute
    built = {key: factory(0.1) for key, factory in optim.OPTIMIZERS.items()}
    # Assert
    assert sorted(built) == ["adagrad", "adam", "sgd", "yogi"]
    assert all(opt.name == key for key, opt in built.items())
    assert all(isinstance(opt, optim.ServerOptimizer) for opt in built.values())
    assert set(optim.OPTIMIZERS) <= set(optim.__all__) and "OptState" in optim.__all__


def test_edge_values_are_accepted():
    # Prepare / Execute: the closed ends of [0, 1) and tiny positive numbers
    opts = [sgd(1e-9, momentum=0.0), adam(1.0, beta1=0.0, beta2=0.0, tau=1e-12), yogi(1.0, beta1=0.0),
            adagrad(1.0, beta1=0.0)]
    # Assert
    assert [o.name for o in opts] == ["sgd", "adam", "yogi", "adagrad"]
    assert opts[1].beta1 == 0.0 and opts[1].tau == 1e-12


# --- bad input -----------------------------------------------------------------------------


@pytest.mark.parametrize("factory, kwargs, exc, match", [
    (sgd, {"lr": 0.0}, ValueError, r"lr must be a positive finite number, got 0\.0"),
    (sgd, {"lr": -0.5}, ValueError, r"lr must be a positive finite number, got -0\.5"),
    (sgd, {"lr": float("inf")}, ValueError, r"lr must be a positive finite number, got inf"),
    (sgd, {"lr": "1"}, TypeError, r"lr must be a real number, got '1'"),
    (sgd, {"momentum": 1.0}, ValueError, r"momentum must be in \[0, 1\), got 1\.0"),
    (sgd, {"momentum": -0.1}, ValueError, r"momentum must be in \[0, 1\), got -0\.1"),
    (adam, {"lr": float("nan")}, ValueError, r"lr must be a positive finite number, got nan"),
    (adam, {"lr": 0.1, "beta1": 1.0}, ValueError, r"beta1 must be in \[0, 1\), got 1\.0"),
    (adam, {"lr": 0.1, "beta2": 1.5}, ValueError, r"beta2 must be in \[0, 1\), got 1\.5"),
    (adam, {"lr": 0.1, "tau": 0.0}, ValueError, r"tau must be a positive finite number, got 0\.0"),
    (adam, {"lr": 0.1, "beta1": True}, TypeError, r"beta1 must be a real number, got True"),
    (yogi, {"lr": -1.0}, ValueError, r"lr must be a positive finite number, got -1\.0"),
    (yogi, {"lr": 0.1, "beta2": -0.01}, ValueError, r"beta2 must be in \[0, 1\), got -0\.01"),
    (yogi, {"lr": 0.1, "tau": -1e-3}, ValueError, r"tau must be a positive finite number, got -0\.001"),
    (adagrad, {"lr": 0.0}, ValueError, r"lr must be a positive finite number, got 0\.0"),
    (adagrad, {"lr": 0.1, "beta1": 1.0}, ValueError, r"beta1 must be in \[0, 1\), got 1\.0"),
    (adagrad, {"lr": 0.1, "tau": float("nan")}, ValueError, r"tau must be a positive finite number, got nan"),
])
def test_bad_options_raise_with_name_and_value(factory, kwargs, exc, match):
    with pytest.raises(exc, match=match):
        factory(**kwargs)


def test_options_are_keyword_only():
    with pytest.raises(TypeError, match="positional"):
        adam(0.1, 0.9)


def test_delta_of_wrong_shape_is_rejected():
    # Prepare
    opt = adam(0.1)
    theta = np.zeros(2)
    # Execute / Assert: names delta, the expected shape and the one received
    with pytest.raises(ValueError, match=r"delta must have theta's shape \(2,\), got shape \(3,\)"):
        opt.step(theta, np.zeros(3), opt.init(theta))


def test_state_of_another_optimizer_is_rejected():
    # Prepare: adam and yogi states hold the same fields, but v means something else
    theta = np.zeros(2)
    adam_state = adam(0.1).init(theta)
    # Execute / Assert
    with pytest.raises(TypeError, match=r"state must come from yogi's init\(\) .*, got state of 'adam'"):
        yogi(0.1).step(theta, np.ones(2), adam_state)
    with pytest.raises(TypeError, match=r"state must come from sgd's init\(\) .*, got state of dict"):
        sgd().step(theta, np.ones(2), {"m": np.zeros(2)})


def test_state_for_another_shape_is_rejected():
    # Prepare
    opt = sgd(momentum=0.5)
    state = opt.init(np.zeros(3))
    # Execute / Assert
    with pytest.raises(ValueError, match=r"state was made for shape \(3,\), but theta has shape \(2,\)"):
        opt.step(np.zeros(2), np.ones(2), state)


def test_state_is_an_optstate_with_t_m_v():
    # Prepare / Execute
    state = adam(0.1, tau=0.5).init(np.zeros(2))
    # Assert: m0 = 0, v0 = tau^2 = 0.25, t = 0
    assert isinstance(state, OptState) and state.t == 0 and state.rule == "adam"
    np.testing.assert_array_equal(state.m, [0.0, 0.0])
    np.testing.assert_array_equal(state.v, [0.25, 0.25])
