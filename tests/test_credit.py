"""fl_helpers.credit (the banks of notebook 12) and the credit-scoring scores of fl_helpers.evaluation.

References written here: the bank rule row by row in a Python loop, moments by np.mean/np.std of
the stacked data, AUC by a double loop over (positive, negative) pairs, and scikit-learn's
roc_auc_score and brier_score_loss.
"""

import numpy as np
import pytest
from sklearn.metrics import brier_score_loss, roc_auc_score

import fl_helpers as fl
from fl_helpers import credit, evaluation

X_ALL, Y_ALL, _ = fl.load_dataset("default")


@pytest.fixture(scope="module")
def dealt():
    return credit.banks(X_ALL, Y_ALL, seed=0)


# --------------------------------------------------------------------------- the bank rule

def affinity_by_hand(student, balance, income):
    return [6.0 if student else 0.3,
            4.2 if (income >= 45_000 and not student) else 0.2,
            4.6 if balance >= 1_200 else 0.6,
            0.3]


def test_affinities_follow_the_documented_rule_row_by_row():
    rows = np.array([[1, 1500.0, 50_000.0], [0, 100.0, 45_000.0], [0, 1200.0, 44_999.0], [1, 0.0, 0.0],
                     [0, 1199.99, 80_000.0]])
    a = credit.affinities(rows)
    np.testing.assert_array_equal(a, [affinity_by_hand(*r) for r in rows])
    np.testing.assert_array_equal(credit.affinities(rows, n_banks=2), a[:, :2])


def test_the_banks_are_disjoint_and_together_the_data(dealt):
    assert dealt.names == ["Campus", "Premium", "Card", "Regional"]
    n = len(Y_ALL)
    assert dealt.assignment.shape == (n,) and set(np.unique(dealt.assignment)) == {0, 1, 2, 3}
    total = sum(p.n_samples for p in dealt.parties) + sum(len(t[1]) for t in dealt.tests)
    assert total == n
    # the parties' rows, unscaled, are exactly the data's rows of that bank, train part
    for k, (party, test) in enumerate(zip(dealt.parties, dealt.tests, strict=True)):
        train_rows = (dealt.assignment == k) & ~dealt.test_mask
        test_rows = (dealt.assignment == k) & dealt.test_mask
        np.testing.assert_allclose(party.data[0] * dealt.std + dealt.mean, X_ALL[train_rows], rtol=1e-12, atol=1e-8)
        np.testing.assert_array_equal(party.data[1], Y_ALL[train_rows])
        np.testing.assert_allclose(test[0] * dealt.std + dealt.mean, X_ALL[test_rows], rtol=1e-12, atol=1e-8)
        np.testing.assert_array_equal(test[1], Y_ALL[test_rows])


def test_the_assignment_frequencies_match_the_affinities():
    a = credit.affinities(X_ALL)
    expected = (a / a.sum(axis=1, keepdims=True)).sum(axis=0)          # expected customers per bank
    counts = np.mean([np.bincount(credit.banks(X_ALL, Y_ALL, seed=s).assignment, minlength=4)
                      for s in range(8)], axis=0)
    # binomial sd per seed < sqrt(10,000 / 4) = 50, so < 18 for the mean of 8; allow 4 sd
    np.testing.assert_allclose(counts, expected, atol=72)


def test_each_bank_is_what_its_rule_says(dealt):
    d = dealt.describe(X_ALL, Y_ALL)
    students = X_ALL[:, 0] == 1
    rich = (X_ALL[:, 2] >= 45_000) & ~students
    heavy = X_ALL[:, 1] >= 1_200
    a = dealt.assignment
    assert d["student_share"][0] > 0.6 and d["student_share"][0] == pytest.approx(students[a == 0].mean())
    assert np.mean(students[a == 0]) > 2 * students.mean()                # Campus: students
    assert rich[a == 1].mean() > 0.5 > rich.mean()                         # Premium: high earners
    assert heavy[a == 2].mean() > 1.5 * heavy.mean()                       # Card: large balances, the most
    assert np.argmax([heavy[a == k].mean() for k in range(4)]) == 2
    assert d["default_rate"][2] == d["default_rate"].max() > 0.045        # ... and the most defaults
    assert d["customers"][3] == d["customers"].min() < 1_500              # Regional: the smallest
    assert d["defaults"].sum() == Y_ALL.sum() == 333
    np.testing.assert_array_equal(d["customers"], np.bincount(a))
    np.testing.assert_allclose(d["mean_balance"], [X_ALL[a == k, 1].mean() for k in range(4)])


def test_every_bank_holds_out_a_stratified_share(dealt):
    for k in range(4):
        for label in (0, 1):
            rows = (dealt.assignment == k) & (Y_ALL == label)
            assert (rows & dealt.test_mask).sum() == round(0.25 * rows.sum())


def test_scaling_is_the_pooled_training_data_mean_and_std(dealt):
    stacked = X_ALL[~dealt.test_mask]
    np.testing.assert_allclose(dealt.mean, stacked.mean(axis=0), rtol=1e-12)
    np.testing.assert_allclose(dealt.std, stacked.std(axis=0), rtol=1e-10)
    np.testing.assert_allclose(dealt.scale(X_ALL[:3]), (X_ALL[:3] - stacked.mean(0)) / stacked.std(0), rtol=1e-9)


def test_federated_moments_equal_numpy_on_the_stacked_data():
    rng = np.random.default_rng(3)
    parts = [rng.normal(5, 2, size=(m, 3)) * [1, 100, 1e4] for m in (4, 50, 7)]
    mean, std = credit.federated_moments(parts)
    np.testing.assert_allclose(mean, np.vstack(parts).mean(axis=0), rtol=1e-12)
    np.testing.assert_allclose(std, np.vstack(parts).std(axis=0), rtol=1e-9)
    mean, std = credit.federated_moments([[[1.0], [3.0]], [[5.0]]])      # by hand: mean 3, var 8/3
    assert mean[0] == pytest.approx(3.0) and std[0] == pytest.approx(np.sqrt(8 / 3))


def test_banks_is_deterministic_with_a_seed_and_varies_without():
    a, b = credit.banks(X_ALL, Y_ALL, seed=5), credit.banks(X_ALL, Y_ALL, seed=5)
    np.testing.assert_array_equal(a.assignment, b.assignment)
    np.testing.assert_array_equal(a.test_mask, b.test_mask)
    assert not np.array_equal(a.assignment, credit.banks(X_ALL, Y_ALL, seed=6).assignment)


def test_fewer_banks():
    two = credit.banks(X_ALL, Y_ALL, n_banks=2, seed=0)
    assert two.names == ["Campus", "Premium"] and set(np.unique(two.assignment)) == {0, 1}
    # only the first two affinities compete: P(Campus) = a_0 / (a_0 + a_1), written out by hand
    students, rich = X_ALL[:, 0] == 1, (X_ALL[:, 2] >= 45_000) & (X_ALL[:, 0] == 0)
    q = np.where(students, 6 / 6.2, np.where(rich, 0.3 / 4.5, 0.3 / 0.5))
    assert abs((two.assignment == 0).sum() - q.sum()) < 4 * np.sqrt((q * (1 - q)).sum())


def test_oversample_repeats_each_default():
    X = np.array([[0.0], [1.0], [2.0]])
    Xo, yo = credit.oversample(X, [0, 1, 0], factor=3)
    np.testing.assert_array_equal(Xo[:, 0], [0, 1, 1, 1, 2])
    np.testing.assert_array_equal(yo, [0, 1, 1, 1, 0])
    _, y1 = credit.oversample(X, [0, 1, 0], factor=1)
    np.testing.assert_array_equal(y1, [0, 1, 0])


@pytest.mark.parametrize("call, error, words", [
    (lambda: credit.banks(X_ALL, Y_ALL, n_banks=5), ValueError, ["n_banks", "[2, 4]", "5"]),
    (lambda: credit.banks(X_ALL, Y_ALL, n_banks=1), ValueError, ["n_banks", "[2, 4]", "1"]),
    (lambda: credit.banks(X_ALL, Y_ALL, n_banks=2.0), TypeError, ["n_banks", "integer", "2.0"]),
    (lambda: credit.banks(X_ALL, Y_ALL, test_share=1.0), ValueError, ["test_share", "(0, 1)", "1.0"]),
    (lambda: credit.banks(X_ALL, Y_ALL, test_share=0), ValueError, ["test_share", "(0, 1)", "0"]),
    (lambda: credit.banks(X_ALL, Y_ALL, test_share=float("nan")), ValueError, ["test_share", "(0, 1)", "nan"]),
    (lambda: credit.banks(X_ALL, Y_ALL, test_share="a"), TypeError, ["test_share", "(0, 1)", "'a'"]),
    (lambda: credit.banks(X_ALL, Y_ALL, test_share=True), TypeError, ["test_share", "real number", "True"]),
    (lambda: credit.banks(X_ALL, Y_ALL, seed=-1), ValueError, ["seed", "[0, inf]", "-1"]),
    (lambda: credit.banks(X_ALL[:, :2], Y_ALL), ValueError, ["X", "3 raw columns", "2"]),
    (lambda: credit.banks(X_ALL[:, [1, 0, 2]], Y_ALL), ValueError, ["student", "0 or 1"]),
    (lambda: credit.banks(X_ALL, Y_ALL + 1), ValueError, ["y", "0/1", "2"]),
    (lambda: credit.banks(X_ALL, Y_ALL[:-1]), ValueError, ["same number of samples", "9999"]),
    (lambda: credit.banks(X_ALL[:40], Y_ALL[:40], seed=0), ValueError, ["too few", "label 1"]),
    (lambda: credit.federated_moments([]), TypeError, ["Xs", "non-empty list"]),
    (lambda: credit.federated_moments([np.ones((2, 3)), np.ones((2, 2))]), ValueError, ["Xs[1]", "3 features", "2"]),
    (lambda: credit.federated_moments([np.ones((2, 1))]), ValueError, ["vary", "std"]),
    (lambda: credit.oversample([[0.0]], [1], factor=0), ValueError, ["factor", "[1, inf]", "0"]),
    (lambda: credit.oversample([[0.0]], [3], factor=2), ValueError, ["y", "0/1", "3"]),
])
def test_bad_input_names_parameter_range_and_value(call, error, words):
    with pytest.raises(error) as info:
        call()
    for w in words:
        assert w in str(info.value), (w, str(info.value))


# --------------------------------------------------------------------------- evaluation scores

def auc_by_pairs(y, s):
    pos, neg = [a for a, b in zip(s, y, strict=True) if b == 1], [a for a, b in zip(s, y, strict=True) if b == 0]
    total = 0.0
    for a in pos:
        for b in neg:
            total += 1.0 if a > b else 0.5 if a == b else 0.0
    return total / (len(pos) * len(neg))


def test_roc_auc_by_hand_with_ties():
    y = [0, 1, 0, 1, 1, 0]
    s = [0.1, 0.4, 0.4, 0.9, 0.1, 0.2]
    # pairs (pos, neg): 0.4 > 0.1, 0.2, = 0.4; 0.9 > all; 0.1 = 0.1, < 0.2, 0.4  -> (2.5 + 3 + 0.5) / 9
    assert evaluation.roc_auc(y, s) == pytest.approx(6 / 9)
    assert auc_by_pairs(y, s) == pytest.approx(6 / 9)


@pytest.mark.parametrize("seed", range(4))
def test_roc_auc_matches_the_double_loop_and_sklearn(seed):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, size=60)
    y[:2] = [0, 1]
    s = rng.integers(0, 8, size=60) / 7.0                  # many ties
    assert evaluation.roc_auc(y, s) == pytest.approx(auc_by_pairs(y, s), abs=1e-12)
    assert evaluation.roc_auc(y, s) == pytest.approx(roc_auc_score(y, s), abs=1e-12)
    assert evaluation.roc_auc(y, -s) == pytest.approx(1 - roc_auc_score(y, s), abs=1e-12)


def test_brier_score_matches_sklearn_and_a_constant_forecast():
    rng = np.random.default_rng(1)
    y = rng.integers(0, 2, size=100)
    p = rng.random(100)
    assert evaluation.brier_score(y, p) == pytest.approx(brier_score_loss(y, p), abs=1e-15)
    pi = Y_ALL.mean()       # the base rate forecast: Brier = pi (1 - pi)
    assert evaluation.brier_score(Y_ALL, np.full(len(Y_ALL), pi)) == pytest.approx(pi * (1 - pi), abs=1e-15)


def test_calibration_table_by_hand():
    y = np.array([0, 0, 1, 0, 1, 1])
    p = np.array([0.1, 0.2, 0.3, 0.6, 0.7, 0.8])
    t = evaluation.calibration_table(y, p, bins=2)
    np.testing.assert_allclose(t["predicted"], [0.2, 0.7])
    np.testing.assert_allclose(t["observed"], [1 / 3, 2 / 3])
    np.testing.assert_array_equal(t["count"], [3, 3])
    assert t["ece"] == pytest.approx(0.5 * (0.2 - 1 / 3) * -1 + 0.5 * (0.7 - 2 / 3))


def test_calibration_table_quantile_bins_on_unsorted_data():
    rng = np.random.default_rng(2)
    p = rng.random(103)
    y = (rng.random(103) < p).astype(int)
    t = evaluation.calibration_table(y, p, bins=5)
    order = np.argsort(p)
    sizes = [21, 21, 21, 20, 20]                       # np.array_split: the first 103 % 5 groups one larger
    assert t["count"].tolist() == sizes
    edges = np.cumsum([0] + sizes)
    for b in range(5):
        rows = order[edges[b]:edges[b + 1]]
        assert t["predicted"][b] == pytest.approx(p[rows].mean())
        assert t["observed"][b] == pytest.approx(y[rows].mean())
    assert t["ece"] == pytest.approx(sum(len(order[edges[b]:edges[b + 1]]) / 103 * abs(t["predicted"][b]
                                                                                          - t["observed"][b])
                                         for b in range(5)))


@pytest.mark.parametrize("call, words", [
    (lambda: evaluation.roc_auc([0, 0], [0.1, 0.2]), ["both classes", "0 positives"]),
    (lambda: evaluation.roc_auc([0, 2], [0.1, 0.2]), ["y", "0/1", "2"]),
    (lambda: evaluation.roc_auc([0, 1], [0.1]), ["same length", "(2,)", "(1,)"]),
    (lambda: evaluation.roc_auc([0, 1], [0.1, np.nan]), ["score", "finite", "1 non-finite"]),
    (lambda: evaluation.roc_auc([], []), ["at least one sample"]),
    (lambda: evaluation.brier_score([0, 1], [0.1, 1.5]), ["p", "[0, 1]", "1.5"]),
    (lambda: evaluation.calibration_table([0, 1], [0.1, 0.5], bins=3), ["bins", "[1, 2]", "3"]),
    (lambda: evaluation.calibration_table([0, 1], [0.1, -0.5]), ["p", "[0, 1]", "-0.5"]),
])
def test_scores_bad_input(call, words):
    with pytest.raises(ValueError) as info:
        call()
    for w in words:
        assert w in str(info.value), (w, str(info.value))
