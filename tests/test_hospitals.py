"""fl_helpers.hospitals: the hospital split of the diabetes data, federated moments, fine-tuning curves.

References are written here: numpy's mean/std of the pooled rows, hand-written gradient-descent loops,
and the sort that an overwhelming pull must reproduce.
"""

import numpy as np
import pytest

import fl_helpers as fl
from fl_helpers import cases, hospitals, linear

X_ALL, Y_ALL, NAMES = fl.load_dataset("diabetes")
AGE, BMI = NAMES.index("age"), NAMES.index("bmi")


def by_name(hs):
    return {h.name: h for h in hs}


def mean_of(h, column):
    return np.r_[h.X_train[:, column], h.X_test[:, column]].mean()


@pytest.mark.parametrize("seed", [0, 3])
def test_sizes_and_test_parts_are_as_documented(seed):
    hs = hospitals.load_hospitals(seed=seed, test_fraction=0.3)
    assert [h.name for h in hs] == [p.name for p in hospitals.HOSPITALS]
    assert [h.n_train + h.n_test for h in hs] == [200, 90, 70, 40, 22, 20]
    assert [h.n_test for h in hs] == [60, 27, 21, 12, 7, 6]          # round(0.3 n), by hand
    assert sum(p.patients for p in hospitals.HOSPITALS) == 442


def test_the_parts_are_disjoint_cover_the_data_and_hold_its_rows():
    hs = hospitals.load_hospitals(seed=1)
    idx = np.concatenate([np.r_[h.train, h.test] for h in hs])
    assert len(idx) == 442 and np.array_equal(np.sort(idx), np.arange(442))
    for h in hs:
        np.testing.assert_array_equal(h.X_train, X_ALL[h.train])
        np.testing.assert_array_equal(h.y_test, Y_ALL[h.test])


@pytest.mark.parametrize("seed", range(5))
def test_the_case_mixes_shift_in_the_documented_direction(seed):
    h = by_name(hospitals.load_hospitals(seed=seed))
    assert mean_of(h["young adults clinic"], AGE) < mean_of(h["city general"], AGE) - 8
    assert mean_of(h["rural practice"], AGE) > mean_of(h["city general"], AGE) + 5
    assert mean_of(h["district"], AGE) > mean_of(h["city general"], AGE)
    assert mean_of(h["bariatric centre"], BMI) > mean_of(h["city general"], BMI) + 4
    assert mean_of(h["sports clinic"], BMI) < mean_of(h["city general"], BMI) - 1


def test_the_same_seed_gives_the_same_hospitals_and_another_seed_others():
    a, b, c = (hospitals.load_hospitals(seed=s) for s in (7, 7, 8))
    for x, y in zip(a, b, strict=True):
        np.testing.assert_array_equal(x.train, y.train)
        np.testing.assert_array_equal(x.test, y.test)
    assert not all(np.array_equal(x.train, z.train) for x, z in zip(a, c, strict=True))


def test_an_overwhelming_pull_takes_the_extremes_and_zero_pulls_the_rest_in_any_order():
    age = np.array([30.0, 70, 50, 20, 60, 40, 80, 10])
    bmi = np.array([25.0, 22, 35, 19, 30, 28, 24, 21])
    profiles = (hospitals.Profile("big", 4), hospitals.Profile("old", 2, age=200.0),
                hospitals.Profile("heavy", 2, bmi=200.0))
    parts = hospitals.assign_patients(age, bmi, profiles, seed=0)
    # smallest first, in profile order among equal sizes: "old" takes the 2 oldest (80, 70), then "heavy"
    # the 2 highest BMI of those left (35, 30), "big" the rest
    np.testing.assert_array_equal(parts[1], np.sort(np.argsort(-age)[:2]))
    left = np.setdiff1d(np.arange(8), parts[1])
    np.testing.assert_array_equal(parts[2], np.sort(left[np.argsort(-bmi[left])[:2]]))
    np.testing.assert_array_equal(parts[0], np.setdiff1d(left, parts[2]))


def test_a_hospital_draws_a_patient_with_probability_proportional_to_exp_of_its_pulls():
    # two patients, standardised ages -1 and +1: a 1-patient hospital of age pull a takes the older one with
    # probability e^a / (e^a + e^-a), the logistic function of 2a (closed form); 4000 seeds, 4.5 binomial sigmas
    age, bmi = np.array([20.0, 60.0]), np.array([25.0, 25.0])
    profiles = (hospitals.Profile("x", 1, age=0.6), hospitals.Profile("rest", 1))    # equal sizes: x draws first
    n = 4000
    older = sum(int(hospitals.assign_patients(age, bmi, profiles, seed=s)[0][0] == 1) for s in range(n))
    p = np.exp(0.6) / (np.exp(0.6) + np.exp(-0.6))
    assert abs(older / n - p) < 4.5 * np.sqrt(p * (1 - p) / n)


def test_federated_moments_equal_numpys_on_the_pooled_rows():
    hs = hospitals.load_hospitals(seed=2)
    mu, sigma = hospitals.federated_moments([hospitals.local_sums(h.X_train) for h in hs])
    pooled = np.vstack([h.X_train for h in hs])
    np.testing.assert_allclose(mu, pooled.mean(axis=0), rtol=1e-12)
    np.testing.assert_allclose(sigma, pooled.std(axis=0), rtol=1e-9)
    m, s, q = hospitals.local_sums([[1.0, 2.0], [3.0, 4.0]])
    assert m == 2 and s.tolist() == [4.0, 6.0] and q.tolist() == [10.0, 20.0]


def test_federation_standardises_every_part_with_the_training_moments():
    parties, tests = hospitals.federation(seed=4)
    Z = np.vstack([p.data[0] for p in parties])
    np.testing.assert_allclose(Z.mean(axis=0), 0.0, atol=1e-12)
    np.testing.assert_allclose(Z.std(axis=0), 1.0, rtol=1e-9)
    hs = hospitals.load_hospitals(seed=4)
    pooled = np.vstack([h.X_train for h in hs])
    np.testing.assert_allclose(tests[3][0], (hs[3].X_test - pooled.mean(0)) / pooled.std(0), rtol=1e-9, atol=1e-12)
    assert [p.name for p in parties] == [h.name for h in hs]


def hand_gd(theta, X, y, lr, steps):
    Xt = np.column_stack([np.ones(len(y)), X])
    out = [theta]
    for _ in range(steps):
        theta = theta - lr * 2 / len(y) * Xt.T @ (Xt @ theta - y)
        out.append(theta)
    return out


def test_the_fine_tuning_curve_is_local_gradient_descent_and_personalise():
    parties, tests = hospitals.federation(seed=0)
    theta = fl.fedavg(parties, lr=0.1, rounds=5, local_epochs=2).theta
    curve = hospitals.fine_tuning_curve(parties, theta, tests, lr=0.05, epochs=6)
    assert curve.shape == (7, 6)
    for i, (p, (X, y)) in enumerate(zip(parties, tests, strict=True)):
        path = hand_gd(theta, *p.data, 0.05, 6)
        want = [np.mean((np.column_stack([np.ones(len(y)), X]) @ t - y) ** 2) for t in path]
        np.testing.assert_allclose(curve[:, i], want, rtol=1e-10)
    tuned = cases.personalise(parties, theta, lr=0.05, epochs=6)
    np.testing.assert_allclose(curve[-1], [linear.mse(t, *tests[i]) for i, t in enumerate(tuned)], rtol=1e-10)


def test_a_site_effect_shifts_only_the_targets():
    parties, tests = hospitals.federation(seed=0)
    offsets = [0, 0, 0, 0, 50.0, -20.0]
    shifted, shifted_tests = hospitals.site_effect(parties, tests, offsets)
    for p, q, (_, y), (_, y2), o in zip(parties, shifted, tests, shifted_tests, offsets, strict=True):
        np.testing.assert_array_equal(q.data[0], p.data[0])
        np.testing.assert_array_equal(q.data[1], p.data[1] + o)
        np.testing.assert_array_equal(y2, y + o)
    with pytest.raises(ValueError, match=r"offsets and tests must hold one entry per party \(6\), got 2"):
        hospitals.site_effect(parties, tests, [1.0, 2.0])


def test_rounds_to_target():
    assert hospitals.rounds_to_target([5.0, 3.0, 1.0, 0.5], 1.0) == 2
    assert hospitals.rounds_to_target([5.0, 3.0], 1.0) is None
    assert hospitals.rounds_to_target([0.5, 3.0], 1.0) == 0
    assert hospitals.rounds_to_target([np.nan, 2.0, 0.9], 1.0) == 2          # a NaN never reaches the target


@pytest.mark.parametrize(("kwargs", "error", "message"), [
    (dict(seed=0, test_fraction=0.0), ValueError, r"test_fraction must be in \(0, 1\), got 0.0"),
    (dict(seed=0, test_fraction=1.5), ValueError, r"test_fraction must be in \(0, 1\), got 1.5"),
    (dict(seed=0, test_fraction="a"), TypeError, r"test_fraction must be a number in \(0, 1\), got 'a'"),
    (dict(seed=-1), ValueError, r"seed must be an integer in \[0, inf\], got -1"),
    (dict(seed=0, profiles=(hospitals.Profile("a", 400), hospitals.Profile("b", 2))), ValueError,
     r"patients must add up to the 442 patients, got 402"),
    (dict(seed=0, profiles=(hospitals.Profile("a", 441), hospitals.Profile("b", 1))), ValueError,
     r"at least 2 patients .* got 1"),
    (dict(seed=0, profiles=[("a", 442)]), TypeError, r"profiles must be a non-empty sequence of hospitals.Profile"),
])
def test_bad_input_names_the_parameter_the_range_and_the_value(kwargs, error, message):
    with pytest.raises(error, match=message):
        hospitals.load_hospitals(**kwargs)


def test_bad_input_to_the_other_functions():
    parties, tests = hospitals.federation(seed=0)
    with pytest.raises(ValueError, match=r"epochs must be an integer in \[0, inf\], got -1"):
        hospitals.fine_tuning_curve(parties, np.zeros(11), tests, lr=0.1, epochs=-1)
    with pytest.raises(ValueError, match=r"tests must hold one \(X, y\) per party \(6\), got 1"):
        hospitals.fine_tuning_curve(parties, np.zeros(11), tests[:1], lr=0.1, epochs=1)
    with pytest.raises(ValueError, match=r"sums must be a non-empty list"):
        hospitals.federated_moments([])
    with pytest.raises(ValueError, match=r"sigma must be positive in every feature, got 0.0"):
        hospitals.standardised(hospitals.load_hospitals(seed=0), np.zeros(10), np.zeros(10))
    with pytest.raises(ValueError, match=r"age and bmi must have the same length, got 3 and 2"):
        hospitals.assign_patients([1.0, 2, 3], [1.0, 2], (hospitals.Profile("a", 3),), seed=0)
    with pytest.raises(ValueError, match=r"sums\[0\] must be a triple \(m_i, s_i, q_i\) from local_sums, got \(1, 2\)"):
        hospitals.federated_moments([(1, 2)])
    with pytest.raises(ValueError, match=r"must add up to at least 1, got 0"):
        hospitals.federated_moments([(0, np.zeros(2), np.zeros(2))])
    with pytest.raises(ValueError, match=r"every s_i and q_i must have the shape of sums\[0\]\[1\], \(2,\), got"):
        hospitals.federated_moments([(1, np.zeros(2), np.zeros(2)), (1, np.zeros(3), np.zeros(3))])
    with pytest.raises(ValueError, match=r"sums\[0\]\[0\] \(m_i\) must be an integer in \[0, inf\], got -1"):
        hospitals.federated_moments([(-1, np.zeros(2), np.zeros(2))])
    with pytest.raises(ValueError, match=r"mu and sigma must have one entry per feature \(\[10\]\), got 3 and 3"):
        hospitals.standardised(hospitals.load_hospitals(seed=0), np.zeros(3), np.ones(3))
    with pytest.raises(ValueError, match=r"theta must have shape \(11,\)"):
        hospitals.fine_tuning_curve(parties, np.zeros(3), tests, lr=0.1, epochs=1)
    with pytest.raises(ValueError, match=r"tests\[1\]\[0\] must have the 10 features of party 1, got 2"):
        hospitals.fine_tuning_curve(parties, np.zeros(11), [tests[0], (np.zeros((3, 2)), np.zeros(3))] + tests[2:],
                                    lr=0.1, epochs=1)
    with pytest.raises(ValueError, match=r"target must be a finite number, got nan"):
        hospitals.rounds_to_target([1.0, 2.0], float("nan"))
    with pytest.raises(ValueError, match=r"losses must be a 1-D sequence \(one loss per round\), got shape \(1, 2\)"):
        hospitals.rounds_to_target([[1.0, 2.0]], 1.0)
