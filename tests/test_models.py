"""fl_helpers.models: linear, logistic and softmax regression (GLMs) against independent references.

References: central finite differences, closed forms written out here (the
least-squares gradient, log 2, log K, the logistic = 2-class softmax identity),
numpy's lstsq, and hand-written per-party loops for a federated round.
"""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest

import fl_helpers as fl
from fl_helpers import models

D, M = 3, 17            # features, samples of the random problems


# --- independent references, written out here -----------------------------------------------------

def with_bias(X):
    return np.hstack([np.ones((len(X), 1)), X])


def np_softmax(Z):
    """Row-wise softmax, the textbook formula (shifted by the row maximum)."""
    E = np.exp(Z - Z.max(axis=1, keepdims=True))
    return E / E.sum(axis=1, keepdims=True)


def np_sigmoid(z):
    return 1.0 / (1.0 + np.exp(-z))


def hand_loss(name, theta, X, y, l2=0.0):
    """Mean loss + l2/2 ||W||^2 from the textbook formulas (MSE, BCE, cross-entropy)."""
    Xt = with_bias(X)
    if name == "softmax":
        Theta = theta.reshape(X.shape[1] + 1, -1)
        P = np_softmax(Xt @ Theta)
        data = -np.mean(np.log(P[np.arange(len(y)), y.astype(int)]))
        W = Theta[1:]
    else:
        z = Xt @ theta
        if name == "linear":
            data = np.mean((z - y) ** 2)
        else:
            p = np_sigmoid(z)
            data = -np.mean(y * np.log(p) + (1 - y) * np.log(1 - p))
        W = theta[1:]
    return data + 0.5 * l2 * np.sum(W**2)


def hand_gradient(name, theta, X, y):
    """The GLM gradient (c/m) X~^T (mu(Z) - Y) written out for each model, no L2."""
    Xt, m = with_bias(X), len(y)
    if name == "linear":
        return 2.0 / m * Xt.T @ (Xt @ theta - y)
    if name == "logistic":
        return Xt.T @ (np_sigmoid(Xt @ theta) - y) / m
    Theta = theta.reshape(X.shape[1] + 1, -1)
    K = Theta.shape[1]
    Y = np.eye(K)[y.astype(int)]
    return (Xt.T @ (np_softmax(Xt @ Theta) - Y) / m).ravel()


def central_differences(f, theta, h=1e-5):
    out = np.empty_like(theta)
    for j in range(len(theta)):
        e = np.zeros_like(theta)
        e[j] = h
        out[j] = (f(theta + e) - f(theta - e)) / (2 * h)
    return out


CASES = [("linear", None), ("logistic", None), ("softmax", 3), ("softmax", 10)]
CASE_IDS = ["linear", "logistic", "softmax3", "softmax10"]


def make_model(name, K, l2=0.0):
    base = {"linear": models.linear, "logistic": models.logistic, "softmax": models.softmax}[name]
    return base(n_classes=K, l2=l2) if K else base(l2=l2)


def random_problem(name, K, seed=0, m=M, d=D):
    """Random X, labels of the right kind, and a random (not small) theta."""
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((m, d))
    if name == "linear":
        y = rng.standard_normal(m)
    elif name == "logistic":
        y = rng.integers(0, 2, m).astype(np.float64)
    else:
        y = rng.integers(0, K, m).astype(np.float64)
    p = (d + 1) * (K or 1)
    theta = 0.7 * rng.standard_normal(p)
    return X, y, theta


# --- gradients --------------------------------------------------------------------------------------

@pytest.mark.parametrize("l2", [0.0, 0.3])
@pytest.mark.parametrize("name, K", CASES, ids=CASE_IDS)
def test_gradient_matches_central_finite_differences(name, K, l2):
    model = make_model(name, K, l2)
    X, y, theta = random_problem(name, K, seed=1)

    g = model.gradient(theta, X, y)
    fd = central_differences(lambda t: model.loss(t, X, y), theta)

    assert g.shape == theta.shape
    np.testing.assert_allclose(g, fd, rtol=1e-6, atol=1e-9)


@pytest.mark.parametrize("l2", [0.0, 0.3])
@pytest.mark.parametrize("name, K", CASES, ids=CASE_IDS)
def test_loss_equals_the_textbook_formula(name, K, l2):
    model = make_model(name, K, l2)
    X, y, theta = random_problem(name, K, seed=2)

    assert model.loss(theta, X, y) == pytest.approx(hand_loss(name, theta, X, y, l2), rel=1e-12)


@pytest.mark.parametrize("name, K", CASES, ids=CASE_IDS)
def test_gradient_equals_the_closed_form(name, K):
    model = make_model(name, K)
    X, y, theta = random_problem(name, K, seed=3)

    np.testing.assert_allclose(model.gradient(theta, X, y), hand_gradient(name, theta, X, y),
                               rtol=1e-12, atol=1e-14)


def test_linear_gradient_is_two_over_m_xt_times_the_residual_by_hand():
    # x = [1, 2], y = [1, 3], theta = [0, 1]: residual X~theta - y = [0, -1]
    # gradient = 2/2 [[1, 1], [1, 2]] @ [0, -1] = [-1, -2]
    X, y, theta = np.array([[1.0], [2.0]]), np.array([1.0, 3.0]), np.array([0.0, 1.0])

    np.testing.assert_array_equal(models.linear.gradient(theta, X, y), [-1.0, -2.0])
    assert models.linear.loss(theta, X, y) == 0.5


def test_linear_gradient_is_zero_at_the_least_squares_solution():
    X, y, _ = random_problem("linear", None, seed=4, m=40)
    theta_star = np.linalg.lstsq(with_bias(X), y, rcond=None)[0]

    np.testing.assert_allclose(models.linear.gradient(theta_star, X, y), 0.0, atol=1e-13)
    # and not zero anywhere else: the test can fail
    assert np.abs(models.linear.gradient(theta_star + 0.1, X, y)).max() > 1e-2


# --- closed-form values -----------------------------------------------------------------------------

@pytest.mark.parametrize("l2", [0.0, 0.5])
def test_logistic_loss_at_zero_is_log_2(l2):
    X, y, _ = random_problem("logistic", None, seed=5)

    loss = models.logistic(l2=l2).loss(np.zeros(D + 1), X, y)

    assert loss == pytest.approx(math.log(2), rel=1e-14)


@pytest.mark.parametrize("K", [2, 3, 10])
def test_softmax_loss_at_zero_is_log_k(K):
    X, y, _ = random_problem("softmax", K, seed=6)

    loss = models.softmax(n_classes=K, l2=0.5).loss(np.zeros((D + 1) * K), X, y)

    assert loss == pytest.approx(math.log(K), rel=1e-14)


def test_logistic_is_softmax_with_two_classes_and_a_zero_column():
    X, y, theta = random_problem("logistic", None, seed=7)
    # Theta (d+1, 2): column 0 (class 0) all zeros, column 1 = the logistic theta
    Theta = np.column_stack([np.zeros(D + 1), theta])
    soft = models.softmax(n_classes=2)

    P = soft.predict(Theta.ravel(), X)
    p = models.logistic.predict(theta, X)

    np.testing.assert_allclose(P[:, 1], p, rtol=1e-13)
    np.testing.assert_allclose(p, np_sigmoid(with_bias(X) @ theta), rtol=1e-13)
    assert soft.loss(Theta.ravel(), X, y) == pytest.approx(models.logistic.loss(theta, X, y), rel=1e-13)
    # the class-1 column of the softmax gradient is the logistic gradient
    G = soft.gradient(Theta.ravel(), X, y).reshape(D + 1, 2)
    np.testing.assert_allclose(G[:, 1], models.logistic.gradient(theta, X, y), rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(G[:, 0], -G[:, 1], rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize("K", [3, 10])
def test_softmax_predict_rows_are_probabilities(K):
    X, y, theta = random_problem("softmax", K, seed=8)

    P = models.softmax(n_classes=K).predict(theta, X)

    assert P.shape == (M, K)
    assert np.all(P > 0)
    np.testing.assert_allclose(P.sum(axis=1), 1.0, rtol=0, atol=1e-14)
    np.testing.assert_allclose(P, np_softmax(with_bias(X) @ theta.reshape(D + 1, K)), rtol=1e-13)


def test_sigmoid_and_softmax_are_stable_for_huge_scores():
    X = np.array([[1.0], [-1.0], [0.0]])
    big = 1e4                                     # exp(1e4) overflows float64
    with warnings.catch_warnings(), np.errstate(over="raise", invalid="raise", divide="raise"):
        warnings.simplefilter("error")
        p = models.logistic.predict(np.array([0.0, big]), X)
        P = models.softmax(n_classes=3).predict(np.array([0.0, 0.0, 0.0, big, 0.0, -big]), X)
        loss_right = models.logistic.loss(np.array([0.0, big]), X[:2], np.array([1.0, 0.0]))
        loss_wrong = models.logistic.loss(np.array([0.0, big]), X[:2], np.array([0.0, 1.0]))
        soft_loss = models.softmax(n_classes=3).loss(np.array([0.0, 0.0, 0.0, big, 0.0, -big]),
                                                     X[:2], np.array([2.0, 2.0]))
        g = models.softmax(n_classes=3).gradient(np.array([0.0, 0.0, 0.0, big, 0.0, -big]),
                                                 X[:2], np.array([2.0, 0.0]))

    np.testing.assert_array_equal(p, [1.0, 0.0, 0.5])
    np.testing.assert_array_equal(P[0], [1.0, 0.0, 0.0])
    np.testing.assert_array_equal(P[1], [0.0, 0.0, 1.0])
    np.testing.assert_allclose(P[2], [1 / 3] * 3, rtol=1e-15)
    assert loss_right == 0.0
    assert loss_wrong == big                      # log(1 + e^z) - y z = z for each wrong sample
    # sample 0: z = (1e4, 0, -1e4), y = 2 -> logsumexp - z_2 = 2e4; sample 1: z = (-1e4, 0, 1e4), y = 2 -> 0
    assert soft_loss == big
    assert np.all(np.isfinite(g))


# --- layout -----------------------------------------------------------------------------------------

@pytest.mark.parametrize("name, K", CASES, ids=CASE_IDS)
def test_intercepts_come_first(name, K):
    model = make_model(name, K)
    _, _, theta = random_problem(name, K, seed=9)
    b = theta[:K or 1]                           # row 0 of Theta (d+1, K)

    out = model.predict(theta, np.zeros((4, D)))

    want = {"linear": lambda b: b[0], "logistic": lambda b: np_sigmoid(b[0]),
            "softmax": lambda b: np_softmax(b[None, :])[0]}[name](b)
    np.testing.assert_allclose(out, np.broadcast_to(want, out.shape), rtol=1e-14)


def test_softmax_theta_is_the_d_plus_1_by_k_matrix_read_row_by_row():
    K = 3
    Theta = np.arange(12.0).reshape(D + 1, K) / 10
    x = np.array([[1.0, 2.0, -1.0]])

    scores = models.softmax(n_classes=K).scores(Theta.ravel(), x)

    # z_k = Theta[0, k] + sum_j x_j Theta[1 + j, k], by hand
    want = [Theta[0, k] + 1 * Theta[1, k] + 2 * Theta[2, k] - 1 * Theta[3, k] for k in range(K)]
    np.testing.assert_allclose(scores[0], want, rtol=1e-14)


# --- L2 ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("name, K", CASES, ids=CASE_IDS)
def test_l2_penalty_leaves_the_intercepts_alone(name, K):
    l2 = 0.4
    model, plain = make_model(name, K, l2), make_model(name, K)
    X, y, theta = random_problem(name, K, seed=10)
    k = K or 1
    W = theta[k:]
    moved = theta.copy()
    moved[:k] += 5.0                             # other intercepts, same W

    assert model.penalty(theta, D) == pytest.approx(0.5 * l2 * np.sum(W**2), rel=1e-14)
    assert model.penalty(moved, D) == model.penalty(theta, D)
    assert model.loss(theta, X, y) - plain.loss(theta, X, y) == pytest.approx(0.5 * l2 * W @ W, rel=1e-12)
    added = model.gradient(theta, X, y) - plain.gradient(theta, X, y)
    np.testing.assert_allclose(added[:k], 0.0, atol=1e-15)
    np.testing.assert_allclose(added[k:], l2 * W, rtol=1e-12)


# --- init and sizes ---------------------------------------------------------------------------------

@pytest.mark.parametrize("name, K", CASES, ids=CASE_IDS)
def test_init_zeros_and_seeded(name, K):
    model = make_model(name, K)
    p = (D + 1) * (K or 1)

    zeros = model.init(D)
    a, b, c = model.init(D, seed=1), model.init(D, seed=1), model.init(D, seed=2)

    assert model.n_params(D) == p
    np.testing.assert_array_equal(zeros, np.zeros(p))
    assert a.shape == (p,)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    assert np.all(a != 0) and np.abs(a).max() < 0.1


def test_softmax_n_classes_from_init_argument_and_its_absence():
    assert models.softmax.init(D, n_classes=4).shape == ((D + 1) * 4,)
    assert models.softmax.n_params(D, n_classes=5) == (D + 1) * 5
    assert models.linear.n_params(D) == D + 1 and models.logistic.n_params(7) == 8
    with pytest.raises(ValueError, match="n_classes"):
        models.softmax.init(D)


# --- bad input --------------------------------------------------------------------------------------

@pytest.mark.parametrize("make, message", [
    (lambda: models.linear(n_classes=3), r"n_classes applies to the softmax model only, got n_classes=3"),
    (lambda: models.logistic(n_classes=2), r"n_classes .*got n_classes=2 for the logistic model"),
    (lambda: models.softmax(n_classes=1), r"n_classes must be an integer in \[2, .*\], got 1"),
    (lambda: models.logistic(l2=-1), r"l2 must be .*got -1"),
    (lambda: models.linear(l2=float("nan")), r"l2 must be .*got nan"),
])
def test_bad_model_options(make, message):
    with pytest.raises(ValueError, match=message):
        make()


def test_bad_option_types():
    with pytest.raises(TypeError, match="l2 must be a real number, got 'big'"):
        models.linear(l2="big")
    with pytest.raises(TypeError, match="n_classes must be an integer, got 2.5"):
        models.softmax(n_classes=2.5)


@pytest.mark.parametrize("model, y, message", [
    (models.logistic, [0.0, 1.0, 2.0], r"y must hold labels in 0\.\.1 for the logistic model, got 2"),
    (models.logistic, [0.0, 1.0, -1.0], r"y must hold class labels .*got values such as \[-1\.0\]"),
    (models.softmax, [0.0, 0.5, 2.0], r"y must hold class labels .*softmax.*got values such as \[0\.5\]"),
    (models.softmax(n_classes=3), [0.0, 1.0, 3.0], r"y must hold labels in 0\.\.2 for the softmax model, got 3"),
])
def test_party_checks_labels(model, y, message):
    with pytest.raises(ValueError, match=message):
        fl.Party(np.ones((3, 2)), y, model=model)


def test_party_model_must_be_a_model_object():
    with pytest.raises(TypeError, match="model must be a model from fl_helpers.models.*got str"):
        fl.Party(np.ones((3, 2)), np.ones(3), model="linear")


def test_party_accepts_real_targets_for_linear_and_integer_labels_for_classification():
    assert fl.Party(np.ones((3, 2)), [0.5, -2.0, 7.0]).n_samples == 3
    assert fl.Party(np.ones((3, 2)), [0, 1, 1], model=models.logistic).n_samples == 3
    assert fl.Party(np.ones((3, 2)), [0, 4, 9], model=models.softmax).n_samples == 3


# --- end to end -------------------------------------------------------------------------------------

def logistic_parties(sizes=(9, 30, 14, 21), seed=0):
    """Separable-ish binary data: y = 1 when x @ w + 0.5 + noise > 0."""
    rng = np.random.default_rng(seed)
    parties = []
    for m in sizes:
        X = rng.standard_normal((m, D))
        y = (X @ np.array([1.5, -2.0, 0.5]) + 0.5 + 0.3 * rng.standard_normal(m) > 0).astype(np.float64)
        parties.append(fl.Party(X, y, model=models.logistic))
    return parties


@pytest.mark.parametrize("kw", [dict(), dict(local_epochs=2, batch_size=5, fraction=0.75, seed=4)],
                         ids=["fedsgd", "E2-b5-frac0.75"])
def test_logistic_fedavg_learns_and_engines_agree(kw):
    parties = logistic_parties()

    loop = fl.fedavg(parties, lr=0.5, rounds=15, engine="loop", **kw)
    vec = fl.fedavg(parties, lr=0.5, rounds=15, engine="vectorized", **kw)

    assert loop.losses[0] == pytest.approx(math.log(2), rel=1e-14)      # theta0 = 0
    assert loop.losses[-1] < 0.5 * math.log(2)
    np.testing.assert_allclose(vec.thetas, loop.thetas, rtol=0, atol=1e-10)
    np.testing.assert_allclose(vec.losses, loop.losses, rtol=1e-10)
    np.testing.assert_allclose(vec.party_losses, loop.party_losses, rtol=1e-10)
    # global loss = sample-weighted mean of the party losses, computed here from the pooled data
    X = np.vstack([p.data[0] for p in parties])
    y = np.concatenate([p.data[1] for p in parties])
    assert loop.losses[-1] == pytest.approx(hand_loss("logistic", loop.theta, X, y), rel=1e-12)
    accuracy = np.mean((with_bias(X) @ loop.theta > 0) == (y == 1))
    assert accuracy > 0.85


@pytest.mark.parametrize("engine", ["loop", "vectorized"])
@pytest.mark.parametrize("weighting", ["samples", "uniform"])
def test_one_fedsgd_round_of_softmax_equals_a_hand_written_loop(engine, weighting):
    K, lr = 3, 0.4
    rng = np.random.default_rng(11)
    data = []
    for m in (5, 12, 8):
        data.append((rng.standard_normal((m, D)), rng.integers(0, K, m).astype(np.float64)))
    data[0][1][:] = [0, 1, 2, 0, 1]              # every class seen, so K = 3 is inferred from the labels
    parties = [fl.Party(X, y, model=models.softmax) for X, y in data]
    theta0 = 0.3 * rng.standard_normal((D + 1) * K)

    h = fl.fedsgd(parties, lr=lr, rounds=1, weighting=weighting, theta0=theta0, engine=engine)

    # by hand: each party's softmax cross-entropy gradient, averaged with weights m_i / M or 1 / N
    grads, sizes = [], []
    for X, y in data:
        Xt = with_bias(X)
        P = np_softmax(Xt @ theta0.reshape(D + 1, K))
        Y = np.eye(K)[y.astype(int)]
        grads.append((Xt.T @ (P - Y) / len(y)).ravel())
        sizes.append(len(y))
    w = np.array(sizes) / sum(sizes) if weighting == "samples" else np.full(3, 1 / 3)
    want = theta0 - lr * sum(wi * g for wi, g in zip(w, grads, strict=True))

    np.testing.assert_allclose(h.thetas[0], theta0, rtol=0, atol=0)
    np.testing.assert_allclose(h.thetas[1], want, rtol=1e-12, atol=1e-14)
    want_losses = [hand_loss("softmax", theta0, X, y) for X, y in data]
    np.testing.assert_allclose(h.party_losses[0], want_losses, rtol=1e-12)
    assert h.losses[0] == pytest.approx(np.dot(np.array(sizes) / sum(sizes), want_losses), rel=1e-12)
