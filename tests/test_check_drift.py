"""Checkers of notebook 07 (fixing client drift): accept the reference solutions, reject typical wrong answers.

The reference solutions of the exercises live here (not in the notebook).
"""

import numpy as np
import pytest
from checks_helpers import assert_fail, assert_pass, raises

import fl_helpers as fl
from fl_helpers import check, optim
from fl_helpers.check import drift
from fl_helpers.linear import hessian
from fl_helpers.widgets.explorer import explorer_parties

# ----------------------------------------------------------------- reference solution


def solution_fedprox_local_update(theta, X, y, *, lr, epochs, mu):
    """E full-batch steps on L_i(θ_i) + (μ/2)‖θ_i − θ‖², from θ_i = θ; the pseudo-gradient (θ − θ_i)/η."""
    Xt = np.hstack([np.ones((len(y), 1)), X])
    local = np.array(theta, dtype=float)
    for _ in range(epochs):
        g = 2 / len(y) * Xt.T @ (Xt @ local - y) + mu * (local - theta)
        local = local - lr * g
    return (theta - local) / lr


def walk(theta, X, y, *, lr, epochs, mu, sign=1.0, anchor=None, scale=1.0, what="update"):
    """The solution with one typical mistake switched on (independent of the checker's own walk)."""
    Xt = np.hstack([np.ones((len(y), 1)), X])
    anchor = theta if anchor is None else anchor
    local, total, data_only, last = np.array(theta, dtype=float), 0.0, 0.0, 0.0
    for _ in range(epochs):
        g = 2 / len(y) * Xt.T @ (Xt @ local - y)
        last = g + sign * scale * mu * (local - anchor)
        total, data_only = total + last, data_only + g
        local = local - lr * last
    return {"update": total, "data_only": data_only, "last": last, "local": local, "mean": total / epochs,
            "change": theta - local}[what]


# ----------------------------------------------------------------- fedprox_local_update


def test_the_cases_are_stable_and_varied():
    cases = drift._fedprox_cases()
    for theta, X, y, lr, epochs, mu in cases:
        assert lr * (np.linalg.eigvalsh(hessian(X))[-1] + mu) < 1
    assert {c[5] for c in cases} >= {0.0, 1.0} and any(c[4] == 1 for c in cases) and max(c[4] for c in cases) >= 10


def test_the_solution_is_the_libraries_fedprox_step():
    """Independent of the checker: the solution against Party.local_update(prox_mu=...) on its own data."""
    rng = np.random.default_rng(5)
    X, y = rng.normal(size=(25, 3)), rng.normal(size=25)
    theta = rng.normal(size=4)
    got = solution_fedprox_local_update(theta, X, y, lr=0.05, epochs=8, mu=3.0)
    np.testing.assert_allclose(got, fl.Party(X, y).local_update(theta, lr=0.05, epochs=8, prox_mu=3.0).update,
                               rtol=1e-12)


def test_fedprox_local_update_accepts_the_solutions():
    assert_pass(check.fedprox_local_update(solution_fedprox_local_update))
    assert_pass(check.fedprox_local_update(
        lambda theta, X, y, *, lr, epochs, mu: fl.Party(X, y).local_update(theta, lr=lr, epochs=epochs,
                                                                             prox_mu=mu).update))


@pytest.mark.parametrize("mistake, words", [
    (dict(sign=-1.0), ["Wrong sign of the proximal term", "+μ (θ_i − θ)"]),
    (dict(anchor="zero"), ["towards 0", "μ (θ_i − θ)"]),
    (dict(scale=0.5), ["1/2 cancels"]),
    (dict(mu=0.0), ["FedAvg's update", "in place"]),
    (dict(what="last"), ["last step", "Accumulate"]),
    (dict(what="mean"), ["averaged"]),
    (dict(what="data_only"), ["data gradients only", "proximal pull included"]),
    (dict(what="local"), ["local model"]),
    (dict(what="change"), ["Divide the model change by η"]),
])
def test_fedprox_local_update_rejects_each_typical_mistake_with_its_hint(mistake, words):
    def wrong(theta, X, y, *, lr, epochs, mu):
        kw = dict(mistake)
        if kw.get("anchor") == "zero":
            kw["anchor"] = np.zeros_like(theta)
        mu = kw.pop("mu", mu)
        return walk(theta, X, y, lr=lr, epochs=epochs, mu=mu, **kw)

    assert_fail(check.fedprox_local_update(wrong), *words)


def test_fedprox_local_update_rejects_updating_the_broadcast_model_in_place():
    """A common bug: stepping `theta` itself; on the checker's read-only inputs it fails with the error."""
    def in_place(theta, X, y, *, lr, epochs, mu):
        start = theta.copy()
        for _ in range(epochs):
            theta -= lr * (fl.Party(X, y).gradient(theta) + mu * (theta - theta))
        return (start - theta) / lr

    result = check.fedprox_local_update(in_place)
    assert_fail(result)
    assert "read-only" in result.message


def test_fedprox_local_update_rejects_a_wrong_sign_of_the_pseudo_gradient():
    result = check.fedprox_local_update(lambda t, X, y, **kw: -solution_fedprox_local_update(t, X, y, **kw))
    assert_fail(result, "Wrong sign")


def test_fedprox_local_update_calls_with_keywords():
    """The exercise's signature has keyword-only options: a positional-only answer fails with the error."""
    result = check.fedprox_local_update(lambda theta, X, y, lr, epochs, mu, /: theta)
    assert_fail(result)
    assert "TypeError" in result.message


def test_fedprox_local_update_untouched_stub_has_no_hint():
    def stub(theta, X, y, *, lr, epochs, mu):
        raise NotImplementedError("write your solution here")

    result = check.fedprox_local_update(stub)
    assert not result and result.hint == ""
    assert str(result).startswith("FAIL fedprox_local_update: no answer yet")


def test_fedprox_local_update_never_raises_and_keeps_inputs_read_only():
    assert_fail(check.fedprox_local_update(lambda *a, **k: raises()))
    assert "RuntimeError: student bug" in check.fedprox_local_update(lambda *a, **k: raises()).message
    for answer in (None, "text", [1.0, 2.0, 3.0, 4.0, 5.0, 6.0], float("nan"), np.full(2, np.inf), np.zeros((2, 2))):
        assert_fail(check.fedprox_local_update(lambda *a, _answer=answer, **k: _answer))
    result = check.fedprox_local_update(np.zeros(3))
    assert_fail(result)
    assert "expected a function, got ndarray" in result.message

    def mutate(theta, X, y, **kw):
        X[...] = 0.0
        return theta

    assert "read-only" in check.fedprox_local_update(mutate).message


# ----------------------------------------------------------------- fedprox_with_momentum


def fixed_point(parties, *, lr, epochs, mu):
    """Written here, independent of the checker: Σ w_i P_i^μ (H_i θ − b_i) = 0."""
    M = sum(p.n_samples for p in parties)
    n = parties[0].n_features + 1
    lhs, rhs = np.zeros((n, n)), np.zeros(n)
    for p in parties:
        Xt = np.hstack([np.ones((p.n_samples, 1)), p.data[0]])
        H, b = 2 / p.n_samples * Xt.T @ Xt, 2 / p.n_samples * Xt.T @ p.data[1]
        step = np.eye(n) - lr * (H + mu * np.eye(n))
        P = sum(np.linalg.matrix_power(step, s) for s in range(epochs))
        lhs += p.n_samples / M * P @ H
        rhs += p.n_samples / M * P @ b
    return np.linalg.solve(lhs, rhs)


def test_the_right_letter_is_fedprox_fixed_point_and_the_others_are_far():
    """Independent of the checker: a run of the setting ends on FedProx's fixed point, clear of the others."""
    s = drift.MOMENTUM_SETTING
    parties = explorer_parties(5, 1.5, seed=0)
    run = fl.fedavg(parties, lr=s["lr"], rounds=s["rounds"], local_epochs=s["local_epochs"], prox_mu=s["prox_mu"],
                    server_optimizer=optim.sgd(1.0, momentum=s["momentum"]))
    prox = fixed_point(parties, lr=s["lr"], epochs=s["local_epochs"], mu=s["prox_mu"])
    assert np.linalg.norm(run.theta - prox) < 1e-8
    others = [fl.least_squares(parties), fixed_point(parties, lr=s["lr"], epochs=s["local_epochs"], mu=0.0)]
    assert all(np.linalg.norm(prox - o) > 0.1 for o in others)
    letter, distances = drift.momentum_outcome()
    assert letter == "c" and distances["c"] < 1e-8 and min(distances["a"], distances["b"], distances["d"]) > 0.1


@pytest.mark.parametrize("answer", ["c", "C", " (c) "])
def test_fedprox_with_momentum_accepts_the_right_letter(answer):
    result = check.fedprox_with_momentum(answer)
    assert_pass(result)
    assert "FedProx's fixed point" in result.message


@pytest.mark.parametrize("answer, words", [
    ("a", ["not where the parties' updates cancel"]),
    ("b", ["does not undo the proximal term"]),
    ("d", ["E → ∞ with μ = 0"]),
])
def test_fedprox_with_momentum_rejects_each_wrong_letter_with_its_hint(answer, words):
    result = check.fedprox_with_momentum(answer)
    assert_fail(result, *words)
    assert "distances" not in result.message            # a wrong answer does not reveal the measured outcome


def test_fedprox_with_momentum_untouched_answer_has_no_hint():
    result = check.fedprox_with_momentum(None)
    assert not result and result.hint == ""
    assert str(result) == "FAIL fedprox_with_momentum: no answer yet: set MY_ANSWER to 'a', 'b', 'c' or 'd'"


@pytest.mark.parametrize("answer", [3, "e", "", ["c"], float("nan"), b"c"])
def test_fedprox_with_momentum_odd_answers_are_a_fail_not_an_exception(answer):
    result = check.fedprox_with_momentum(answer)
    assert_fail(result, "letter")
    assert "expected one of" in result.message
