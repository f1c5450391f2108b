"""fl_helpers.data: synthetic data, partition schemes, bundled datasets."""

from __future__ import annotations

import csv
import hashlib
import importlib.util
import itertools

import matplotlib
import numpy as np
import pytest
from optional import require

import fl_helpers as fl
from fl_helpers.data import _fedprox_draws, quantity_sizes
from fl_helpers.plotting import plot_label_histogram

SCHEMES = ["iid", "quantity", "covariate"]
SKLEARN_MISSING = "scikit-learn is not installed (pip install -e '.[dev]')"


def sklearn_datasets():
    """sklearn.datasets; skips without scikit-learn, except under CI=true, where it fails."""
    require(importlib.util.find_spec("sklearn") is not None, SKLEARN_MISSING, what="the scikit-learn cross-checks")
    from sklearn import datasets

    return datasets


def sorted_rows(X, y):
    """The rows of [X, y] in lexicographic order: compares datasets as multisets of rows."""
    table = np.column_stack([X, y])
    return table[np.lexsort(table.T[::-1])]


def stacked(parties):
    return (np.concatenate([p.data[0] for p in parties]),
            np.concatenate([p.data[1] for p in parties]))


# --- make_regression ---------------------------------------------------------

def test_make_regression_shapes_and_ranges():
    X, y, theta = fl.make_regression(50, 4, noise=0.1, seed=0)

    assert X.shape == (50, 4) and y.shape == (50,) and theta.shape == (5,)
    assert np.all(np.abs(theta) <= 2.0)


def test_make_regression_without_noise_is_exactly_linear():
    X, y, theta = fl.make_regression(40, 3, noise=0.0, seed=1)

    np.testing.assert_array_equal(y, theta[0] + X @ theta[1:])


def test_make_regression_noise_has_the_requested_scale():
    X, y, theta = fl.make_regression(20000, 2, noise=0.5, seed=2)

    residual = y - theta[0] - X @ theta[1:]

    assert residual.std() == pytest.approx(0.5, rel=0.03)


def test_make_regression_is_deterministic():
    a = fl.make_regression(30, 2, noise=1.0, seed=5)
    b = fl.make_regression(30, 2, noise=1.0, seed=5)
    c = fl.make_regression(30, 2, noise=1.0, seed=6)

    for u, v in zip(a, b, strict=True):
        np.testing.assert_array_equal(u, v)
    assert not np.array_equal(a[0], c[0])


# --- split: properties shared by every scheme --------------------------------

@pytest.mark.parametrize("scheme", SCHEMES)
@pytest.mark.parametrize("n_parties", [1, 7, 60])
def test_split_gives_n_nonempty_parties_whose_union_is_the_data(regression, scheme, n_parties):
    X, y, _ = regression

    parties = fl.split(X, y, n_parties, scheme=scheme, seed=3)

    assert len(parties) == n_parties
    assert all(isinstance(p, fl.Party) and p.n_samples >= 1 for p in parties)
    np.testing.assert_array_equal(sorted_rows(*stacked(parties)), sorted_rows(X, y))
    assert [p.name for p in parties] == [f"party {i}" for i in range(n_parties)]


@pytest.mark.parametrize("scheme", SCHEMES)
def test_split_with_as_many_parties_as_samples(scheme):
    X, y, _ = fl.make_regression(9, 2, noise=0.1, seed=0)

    parties = fl.split(X, y, 9, scheme=scheme, skew=4.0, seed=0)

    assert [p.n_samples for p in parties] == [1] * 9


@pytest.mark.parametrize("scheme", SCHEMES)
def test_split_is_deterministic(regression, scheme):
    X, y, _ = regression

    a = fl.split(X, y, 5, scheme=scheme, seed=11)
    b = fl.split(X, y, 5, scheme=scheme, seed=11)
    c = fl.split(X, y, 5, scheme=scheme, seed=12)

    for p, q in zip(a, b, strict=True):
        np.testing.assert_array_equal(p.data[0], q.data[0])
        np.testing.assert_array_equal(p.data[1], q.data[1])
    assert any(not np.array_equal(p.data[1], q.data[1]) for p, q in zip(a, c, strict=True))


def test_split_does_not_modify_the_input(regression):
    X, y, _ = regression
    X0, y0 = X.copy(), y.copy()

    fl.split(X, y, 4, scheme="covariate", seed=0)

    np.testing.assert_array_equal(X, X0)
    np.testing.assert_array_equal(y, y0)
    assert X.flags.writeable and y.flags.writeable


# --- iid -----------------------------------------------------------------------

@pytest.mark.parametrize("n_parties", [3, 7, 11])
def test_iid_sizes_differ_by_at_most_one(regression, n_parties):
    X, y, _ = regression

    sizes = [p.n_samples for p in fl.split(X, y, n_parties, scheme="iid", seed=0)]

    assert sum(sizes) == 120 and max(sizes) - min(sizes) <= 1


# --- quantity --------------------------------------------------------------------

def test_quantity_sizes_hand_computed():
    # m=10, N=3: one sample each, then 7 shared.
    # skew 0: 7/3 each -> floors [2, 2, 2], the largest remainder (first, stable) gets the 7th -> [3, 2, 2] + 1
    # skew 1: shares [6, 3, 2]/11 -> 7 x = [3.82, 1.91, 1.27] -> floors [3, 1, 1];
    #         the 2 left go to the largest remainders (2nd, 1st) -> [4, 2, 1] + 1
    rng = np.random.default_rng(0)
    assert sorted(quantity_sizes(10, 3, skew=0.0, rng=rng)) == [3, 3, 4]
    assert sorted(quantity_sizes(10, 3, skew=1.0, rng=rng)) == [2, 3, 5]


@pytest.mark.parametrize("m, n", [(10, 10), (11, 10), (100, 7), (1000, 50)])
@pytest.mark.parametrize("skew", [0.0, 0.5, 1.0, 3.0, 10.0])
def test_quantity_sizes_sum_to_m_and_are_at_least_one(m, n, skew):
    sizes = quantity_sizes(m, n, skew=skew, rng=np.random.default_rng(0))

    assert len(sizes) == n and sizes.sum() == m and sizes.min() >= 1


def test_quantity_skew_zero_gives_equal_sizes(regression):
    X, y, _ = regression

    sizes = [p.n_samples for p in fl.split(X, y, 6, scheme="quantity", skew=0.0, seed=0)]

    assert sizes == [20] * 6


def test_larger_quantity_skew_gives_more_unequal_sizes():
    X, y, _ = fl.make_regression(1000, 2, noise=0.1, seed=0)
    ratios = []
    for skew in [0.0, 0.5, 1.0, 2.0]:
        sizes = [p.n_samples for p in fl.split(X, y, 10, scheme="quantity", skew=skew, seed=0)]
        ratios.append(max(sizes) / min(sizes))

    assert ratios[0] == 1.0
    assert all(a < b for a, b in zip(ratios, ratios[1:]))


def power_law_sizes(m, n, skew):
    """The documented rule, written out: one sample each, the other m - n shared in proportion to
    (i + 1)^-skew by largest remainders (ties to the earlier party)."""
    shares = [(i + 1) ** -skew for i in range(n)]
    exact = [(m - n) * s / sum(shares) for s in shares]
    sizes = [int(e) for e in exact]
    by_remainder = sorted(range(n), key=lambda i: -(exact[i] - sizes[i]))
    for i in by_remainder[:m - n - sum(sizes)]:
        sizes[i] += 1
    return sorted(1 + s for s in sizes)


def test_quantity_split_sizes_by_hand(regression):
    # m = 120, N = 8, skew 1.5: 112 shared in proportion to 1, 2^-1.5, ..., 8^-1.5 (sum 1.9267):
    # 58.13, 20.55, 11.19, 7.27, 5.20, 3.96, 3.14, 2.57 -> floors 58, 20, 11, 7, 5, 3, 3, 2 (109);
    # the 3 left go to the largest remainders .96, .57, .55 (6th, 8th, 2nd) -> 58, 21, 11, 7, 5, 4, 3, 3
    X, y, _ = regression

    parties = fl.split(X, y, 8, scheme="quantity", skew=1.5, seed=1)

    assert sorted(p.n_samples for p in parties) == [4, 4, 5, 6, 8, 12, 22, 59]
    assert power_law_sizes(120, 8, 1.5) == [4, 4, 5, 6, 8, 12, 22, 59]


@pytest.mark.parametrize("m, n, skew", [(120, 8, 1.5), (1000, 10, 1.0), (600, 37, 0.7), (50, 50, 2.0),
                                        (400, 6, 3.0), (97, 5, 0.0)])
def test_quantity_split_sizes_follow_the_power_law(m, n, skew):
    X, y, _ = fl.make_regression(m, 2, noise=0.1, seed=0)

    sizes = [p.n_samples for p in fl.split(X, y, n, scheme="quantity", skew=skew, seed=5)]

    assert sorted(sizes) == power_law_sizes(m, n, skew)
    assert sum(sizes) == m and min(sizes) >= 1


def test_quantity_sizes_are_handed_out_in_a_random_order():
    X, y, _ = fl.make_regression(1000, 2, noise=0.1, seed=0)
    orders = {tuple(p.n_samples for p in fl.split(X, y, 6, scheme="quantity", skew=1.0, seed=s)) for s in range(8)}

    assert len({tuple(sorted(o)) for o in orders}) == 1               # the same sizes ...
    assert len(orders) > 1                                            # ... to different parties
    assert any(list(o) != sorted(o, reverse=True) for o in orders)    # not always the largest first


# --- covariate -------------------------------------------------------------------

def _party_means_on_first_pc(X, parties):
    centred_mean = X.mean(axis=0)
    direction = np.linalg.svd(X - centred_mean, full_matrices=False)[2][0]
    scale = ((X - centred_mean) @ direction).std()
    return np.array([((p.data[0] - centred_mean) @ direction).mean() / scale for p in parties])


def test_covariate_skew_orders_and_separates_the_parties():
    X, y, _ = fl.make_regression(1000, 3, noise=0.1, seed=0)

    spread = {}
    for skew in [0.0, 1.0, 10.0]:
        means = _party_means_on_first_pc(X, fl.split(X, y, 5, scheme="covariate", skew=skew, seed=0))
        spread[skew] = means.max() - means.min()
        if skew == 10.0:
            assert np.all(np.diff(means) > 0.3)     # party i covers the i-th region along the PC

    assert spread[0.0] < 0.5                          # IID: every party's mean is near 0
    assert spread[0.0] < spread[1.0] < spread[10.0]
    assert spread[10.0] > 2.0


def test_covariate_sizes_are_near_equal(regression):
    X, y, _ = regression

    sizes = [p.n_samples for p in fl.split(X, y, 7, scheme="covariate", seed=0)]

    assert max(sizes) - min(sizes) <= 1


def test_default_skews():
    X, y, _ = fl.make_regression(600, 2, noise=0.1, seed=0)

    def sizes(**kw):
        return [p.n_samples for p in fl.split(X, y, 6, seed=4, **kw)]

    def means(**kw):
        return _party_means_on_first_pc(X, fl.split(X, y, 6, seed=4, **kw))

    assert sizes(scheme="quantity") == sizes(scheme="quantity", skew=1.0)
    np.testing.assert_array_equal(means(scheme="covariate"), means(scheme="covariate", skew=3.0))


# --- the older schemes are unchanged ------------------------------------------------

def test_iid_and_quantity_assignments_are_unchanged():
    # recorded from the code before the "shards" and "dirichlet" schemes were added: the
    # committed notebooks' outputs depend on these assignments
    X, y = np.arange(12.0)[:, None], np.arange(12.0)

    iid = fl.split(X, y, 3, scheme="iid", seed=0)
    quantity = fl.split(X, y, 3, scheme="quantity", skew=1.0, seed=0)

    assert [p.data[1].astype(int).tolist() for p in iid] == [[9, 2, 7, 4], [5, 11, 0, 3], [6, 10, 8, 1]]
    assert [p.data[1].astype(int).tolist() for p in quantity] == [[3, 2, 0], [5, 4, 7, 1, 10, 11], [6, 9, 8]]


# --- label skew: shared helpers -------------------------------------------------------

def indexed(y):
    """Features = the sample's index, so that each party's samples can be traced back."""
    y = np.asarray(y, dtype=np.float64)
    return np.arange(len(y), dtype=np.float64)[:, None], y


def indices(parties):
    return [p.data[0][:, 0].astype(int) for p in parties]


def counts_by_hand(parties, n_classes):
    table = [[0] * n_classes for _ in parties]
    for i, p in enumerate(parties):
        for label in p.data[1]:
            table[i][int(label)] += 1
    return np.array(table)


LABEL_SCHEMES = [("shards", {"shards_per_party": 2}), ("dirichlet", {"alpha": 0.5}),
                 ("dirichlet", {"alpha": 1e-3}), ("dirichlet", {"alpha": 1e4})]


@pytest.mark.parametrize("scheme, options", LABEL_SCHEMES)
@pytest.mark.parametrize("n_parties", [1, 7, 40])
def test_label_schemes_use_every_sample_exactly_once(scheme, options, n_parties):
    X, y = indexed(np.repeat([0, 1, 2, 5], [30, 12, 50, 8]))

    parties = fl.split(X, y, n_parties, scheme=scheme, seed=2, **options)

    assert len(parties) == n_parties and min(p.n_samples for p in parties) >= 1
    used = np.concatenate(indices(parties))
    assert sorted(used.tolist()) == list(range(100))
    for p, idx in zip(parties, indices(parties), strict=True):
        np.testing.assert_array_equal(p.data[1], y[idx])          # each sample keeps its own label
    assert [p.name for p in parties] == [f"party {i}" for i in range(n_parties)]


@pytest.mark.parametrize("scheme, options", LABEL_SCHEMES)
def test_label_schemes_are_deterministic(scheme, options):
    X, y = indexed(np.arange(300) % 6)

    a = indices(fl.split(X, y, 6, scheme=scheme, seed=4, **options))
    b = indices(fl.split(X, y, 6, scheme=scheme, seed=4, **options))
    c = indices(fl.split(X, y, 6, scheme=scheme, seed=5, **options))

    assert all(np.array_equal(u, v) for u, v in zip(a, b, strict=True))
    assert any(not np.array_equal(u, v) for u, v in zip(a, c, strict=True))


def test_label_schemes_pass_the_model_to_the_parties():
    X, y, _ = fl.load_dataset("digits")
    model = fl.models.softmax(n_classes=10)

    for scheme in ("shards", "dirichlet"):
        parties = fl.split(X, y, 5, scheme=scheme, model=model, seed=0)
        assert all(p.model == model for p in parties)
    assert fl.split(X, y, 5, scheme="iid", seed=0)[0].model == fl.models.linear


def test_label_schemes_accept_any_integer_labels():
    # labels need not be 0 .. K - 1, and integer-valued floats are fine
    X, y = indexed(np.repeat([-3.0, 7.0, 10.0], 20))

    for scheme in ("shards", "dirichlet"):
        parties = fl.split(X, y, 4, scheme=scheme, seed=0)
        assert sorted(np.concatenate([p.data[1] for p in parties]).tolist()) == sorted(y.tolist())


# --- shards ---------------------------------------------------------------------------

@pytest.mark.parametrize("seed", range(6))
def test_shards_with_aligned_classes_give_each_party_at_most_two_labels(seed):
    # 4 classes x 6 samples, 4 parties x 2 shards: 8 shards of 3 samples, each inside one class
    X, y = indexed(np.repeat([0, 1, 2, 3], 6))

    parties = fl.split(X, y, 4, scheme="shards", shards_per_party=2, seed=seed)
    counts = counts_by_hand(parties, 4)

    assert [p.n_samples for p in parties] == [6, 6, 6, 6]
    assert np.all(counts % 3 == 0)                                 # whole shards only
    assert all(np.count_nonzero(row) <= 2 for row in counts)
    np.testing.assert_array_equal(counts.sum(axis=0), [6, 6, 6, 6])


def shard_label_counts(y, n_shards, n_classes):
    """The label counts of the shards, written out: sort the labels, cut into near-equal pieces
    (the first m % n_shards pieces one longer)."""
    labels = sorted(int(v) for v in y)
    base, extra = divmod(len(labels), n_shards)
    shards, start = [], 0
    for j in range(n_shards):
        size = base + (1 if j < extra else 0)
        row = [0] * n_classes
        for label in labels[start:start + size]:
            row[label] += 1
        shards.append(tuple(row))
        start += size
    return shards


@pytest.mark.parametrize("seed", range(5))
def test_each_party_holds_whole_label_sorted_shards(seed):
    # unequal classes (5, 3, 7, 1), 3 parties x 2 shards: shard sizes 3, 3, 3, 3, 2, 2
    X, y = indexed(np.repeat([0, 1, 2, 3], [5, 3, 7, 1]))
    shards = shard_label_counts(y, 6, 4)

    counts = [tuple(row) for row in counts_by_hand(fl.split(X, y, 3, scheme="shards", seed=seed), 4)]

    def deal_exists(parties, left):
        """Can the remaining parties each be given 2 of the shards ``left`` (indices) with their counts?"""
        if not parties:
            return True
        for pair in itertools.combinations(left, 2):
            if tuple(a + b for a, b in zip(shards[pair[0]], shards[pair[1]])) == parties[0] \
                    and deal_exists(parties[1:], [j for j in left if j not in pair]):
                return True
        return False

    assert deal_exists(counts, list(range(6)))


def test_shards_are_dealt_at_random():
    X, y = indexed(np.repeat(np.arange(5), 20))

    deals = {tuple(tuple(np.flatnonzero(row)) for row in counts_by_hand(
        fl.split(X, y, 5, scheme="shards", seed=s), 5)) for s in range(10)}

    assert len(deals) > 1                                          # the seed changes who gets which labels
    assert any(0 not in deal[0] for deal in deals)                 # party 0 does not always get the first shard


def test_shard_sizes_on_the_digits():
    # 1797 samples, 20 shards: 17 of 90 and 3 of 89, two to each party
    X, y, _ = fl.load_dataset("digits")

    parties = fl.split(X, y, 10, scheme="shards", seed=0)
    sizes = sorted(p.n_samples for p in parties)
    counts = fl.label_histogram(parties, 10)

    assert sum(sizes) == 1797 and set(sizes) <= {178, 179, 180}
    assert sum(180 - size for size in sizes) == 3                  # the three shards of 89
    # a shard (89-90 samples) is shorter than every class (>= 174), so it spans at most 2 labels
    assert all(np.count_nonzero(row) <= 4 for row in counts)
    assert np.median([np.count_nonzero(row) for row in counts]) <= 3


def test_one_shard_per_party_with_as_many_shards_as_samples():
    X, y = indexed([0, 0, 1, 1, 1, 2])

    parties = fl.split(X, y, 6, scheme="shards", shards_per_party=1, seed=0)

    assert [p.n_samples for p in parties] == [1] * 6
    assert sorted(int(p.data[1][0]) for p in parties) == [0, 0, 1, 1, 1, 2]


def test_default_shards_per_party_is_two():
    X, y = indexed(np.arange(60) % 3)

    a = indices(fl.split(X, y, 5, scheme="shards", seed=3))
    b = indices(fl.split(X, y, 5, scheme="shards", shards_per_party=2, seed=3))

    assert all(np.array_equal(u, v) for u, v in zip(a, b, strict=True))


# --- dirichlet ------------------------------------------------------------------------

@pytest.mark.parametrize("m, n", [(100, 7), (1797, 10), (50, 50), (101, 1)])
def test_dirichlet_sizes_are_near_equal(m, n):
    X, y = indexed(np.arange(m) % 4)

    sizes = [p.n_samples for p in fl.split(X, y, n, scheme="dirichlet", alpha=0.1, seed=1)]

    assert sum(sizes) == m and max(sizes) - min(sizes) <= 1 and min(sizes) >= 1


def total_variation(counts, p):
    mixes = counts / counts.sum(axis=1, keepdims=True)
    return 0.5 * np.abs(mixes - p).sum(axis=1)


def test_large_alpha_gives_mixes_close_to_the_overall_frequencies():
    # 10 classes of unequal size, 20 parties of 1000: each mix is then a multinomial sample of p
    class_sizes = np.array([3000, 2500, 2000, 3500, 1500, 2500, 1000, 1500, 1500, 1000])
    X, y = indexed(np.repeat(np.arange(10), class_sizes))
    p = class_sizes / class_sizes.sum()

    tv = total_variation(counts_by_hand(fl.split(X, y, 20, scheme="dirichlet", alpha=1e4, seed=0), 10), p)
    tv_small = total_variation(counts_by_hand(fl.split(X, y, 20, scheme="dirichlet", alpha=0.1, seed=0), 10), p)

    # a multinomial(1000, p) mix is ~0.04 from p in total variation; the last parties take what the
    # others left, so they may stray further
    assert np.median(tv) < 0.06 and np.all(tv[:15] < 0.1)
    assert np.median(tv_small) > 0.5


def test_tiny_alpha_gives_almost_every_party_one_label():
    X, y = indexed(np.repeat(np.arange(10), 100))
    single, first_single, main_share = [], [], []
    for seed in range(20):
        counts = counts_by_hand(fl.split(X, y, 100, scheme="dirichlet", alpha=1e-3, seed=seed), 10)
        labels_per_party = np.count_nonzero(counts, axis=1)
        single.append(np.mean(labels_per_party == 1))
        first_single.append(labels_per_party[0] == 1)
        main_share.append(np.mean(counts.max(axis=1) / counts.sum(axis=1)))

    # party 0 draws first, from full classes: its (nearly always) one-label mix comes true; later
    # parties whose class has run out draw from what is left
    assert sum(first_single) >= 18
    assert np.mean(single) > 0.8 and np.mean(main_share) > 0.9
    alpha_one = counts_by_hand(fl.split(X, y, 100, scheme="dirichlet", alpha=1.0, seed=0), 10)
    assert np.mean(np.count_nonzero(alpha_one, axis=1) == 1) < 0.3


def test_alpha_controls_the_skew():
    X, y = indexed(np.repeat(np.arange(5), 200))
    p = np.full(5, 0.2)

    distance = [np.mean(total_variation(counts_by_hand(
        fl.split(X, y, 20, scheme="dirichlet", alpha=alpha, seed=3), 5), p)) for alpha in [0.01, 0.3, 3.0, 100.0]]

    assert all(a > b for a, b in zip(distance, distance[1:])), distance


@pytest.mark.parametrize("alpha", [1.0, 20.0])
def test_dirichlet_mixes_follow_dir_alpha_p(alpha):
    # Party 0 draws before any class can run out (20 samples, every class >= 50), so its label
    # fractions f are Multinomial(20, q) / 20 with q ~ Dir(alpha p):
    #     E[f] = p,   Var[f_k] = p_k (1 - p_k) (1 / (alpha + 1) + alpha / ((alpha + 1) n))
    class_sizes = np.array([500, 300, 150, 50])
    X, y = indexed(np.repeat(np.arange(4), class_sizes))
    p, n, runs = class_sizes / 1000, 20, 600

    f = np.array([counts_by_hand(fl.split(X, y, 50, scheme="dirichlet", alpha=alpha, seed=s), 4)[0] / n
                  for s in range(runs)])
    var = p * (1 - p) * (1 / (alpha + 1) + alpha / ((alpha + 1) * n))

    # both within 4 standard errors (fixed seeds: the outcome never changes from run to run)
    assert np.all(np.abs(f.mean(axis=0) - p) < 4 * np.sqrt(var / runs))
    fourth = ((f - f.mean(axis=0)) ** 4).mean(axis=0)
    se_var = np.sqrt((fourth - f.var(axis=0) ** 2) / runs)
    assert np.all(np.abs(f.var(axis=0) - var) < 4 * se_var), (f.var(axis=0), var, se_var)
    np.testing.assert_allclose(f.var(axis=0), var, rtol=0.3)


def test_dirichlet_default_alpha_is_one_half():
    X, y = indexed(np.arange(90) % 3)

    a = indices(fl.split(X, y, 6, scheme="dirichlet", seed=3))
    b = indices(fl.split(X, y, 6, scheme="dirichlet", alpha=0.5, seed=3))

    assert all(np.array_equal(u, v) for u, v in zip(a, b, strict=True))


# --- label_histogram and its plot ---------------------------------------------------------

def test_label_histogram_matches_a_hand_count():
    parties = [fl.Party(np.zeros((4, 1)), [0, 2, 2, 1]), fl.Party(np.zeros((3, 1)), [2, 2, 2]),
               fl.Party(np.zeros((1, 1)), [0])]

    counts = fl.label_histogram(parties)

    np.testing.assert_array_equal(counts, [[1, 1, 2], [0, 0, 3], [1, 0, 0]])
    assert counts.dtype == np.int64
    np.testing.assert_array_equal(fl.label_histogram(parties, n_classes=5),
                                  [[1, 1, 2, 0, 0], [0, 0, 3, 0, 0], [1, 0, 0, 0, 0]])


def test_label_histogram_of_a_digits_split():
    X, y, _ = fl.load_dataset("digits")
    parties = fl.split(X, y, 8, scheme="dirichlet", alpha=0.3, seed=0)

    counts = fl.label_histogram(parties)

    np.testing.assert_array_equal(counts, counts_by_hand(parties, 10))
    np.testing.assert_array_equal(counts.sum(axis=0), np.bincount(y))


def test_plot_label_histogram_draws_one_bar_per_party_and_class():
    parties = [fl.Party(np.zeros((4, 1)), [0, 2, 2, 1], name="a"), fl.Party(np.zeros((3, 1)), [2, 2, 2], name="b")]

    ax = plot_label_histogram(parties, title="labels")

    assert isinstance(ax, matplotlib.axes.Axes)
    assert len(ax.patches) == 2 * 3
    widths = np.array([patch.get_width() for patch in ax.patches]).reshape(3, 2).T   # class by class
    np.testing.assert_array_equal(widths, [[1, 1, 2], [0, 0, 3]])
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["0", "1", "2"]
    assert [t.get_text() for t in ax.get_yticklabels()] == ["a", "b"]
    assert ax.get_title() == "labels"
    colors = {patch.get_facecolor() for patch in ax.patches}
    assert len(colors) == 3                                       # one colour per class


def test_plot_label_histogram_of_counts_normalised():
    counts = np.array([[3, 1, 0, 0, 0, 0, 0, 0, 0, 0], [1, 1, 1, 1, 1, 1, 1, 1, 1, 1], [0, 0, 0, 0, 0, 0, 0, 0, 0, 5]])
    fig, ax = matplotlib.pyplot.subplots()

    out = plot_label_histogram(counts, ax, normalize=True, fontsize=16)

    assert out is ax and len(ax.patches) == 30
    widths = np.array([patch.get_width() for patch in ax.patches]).reshape(10, 3).T
    np.testing.assert_allclose(widths.sum(axis=1), 1.0)
    np.testing.assert_allclose(widths[0, :2], [0.75, 0.25])
    assert len({patch.get_facecolor() for patch in ax.patches}) == 10
    assert ax.xaxis.label.get_fontsize() == 16


# --- bundled datasets --------------------------------------------------------------

DIABETES_NAMES = ["age", "sex", "bmi", "bp", "tc", "ldl", "hdl", "tch", "ltg", "glu"]


def test_load_diabetes_shape_and_names():
    X, y, names = fl.load_dataset("diabetes")

    assert X.shape == (442, 10) and y.shape == (442,)
    assert X.dtype == np.float64 and y.dtype == np.float64
    assert names == DIABETES_NAMES
    assert "diabetes" in fl.available_datasets()


def test_load_diabetes_equals_scikit_learns_copy():
    datasets = sklearn_datasets()
    X, y, _ = fl.load_dataset("diabetes")

    ref = datasets.load_diabetes(scaled=False)

    np.testing.assert_allclose(X, ref.data, rtol=1e-12)
    np.testing.assert_allclose(y, ref.target, rtol=1e-12)


# SHA-256 of data/diabetes.csv, recorded when it was checked equal to
# sklearn.datasets.load_diabetes(scaled=False) (scikit-learn 1.9.1), so that
# an environment without scikit-learn still notices any change to the file.
DIABETES_SHA256 = "9e2fc477338dd292c6361948a1e8e49737044c4a04e5be7f35ae8e4d27b75c48"


def test_diabetes_file_is_the_verified_copy():
    digest = hashlib.sha256((fl.data.data_dir() / "diabetes.csv").read_bytes()).hexdigest()
    assert digest == DIABETES_SHA256


def test_diabetes_matches_the_published_summary():
    # the target as distributed: progression scores 25-346, mean 152.13, sample sd 77.09
    _, y, _ = fl.load_dataset("diabetes")
    assert (y.min(), y.max()) == (25.0, 346.0)
    assert round(y.mean(), 2) == 152.13 and round(y.std(ddof=1), 2) == 77.09


DIGITS_CLASS_SIZES = [178, 182, 177, 183, 181, 182, 181, 179, 174, 180]


def digits_rows():
    """The raw CSV: header and rows of ints, read with the csv module (not load_dataset)."""
    with open(fl.data.data_dir() / "digits.csv", newline="", encoding="utf-8") as fh:
        reader = csv.reader(fh)
        header = next(reader)
        return header, [[int(v) for v in row] for row in reader]


def test_load_digits_shape_range_dtype_and_classes():
    X, y, names = fl.load_dataset("digits")

    assert X.shape == (1797, 64) and y.shape == (1797,)
    assert X.dtype == np.float64 and y.dtype == np.int64
    assert X.min() == 0.0 and X.max() == 1.0
    np.testing.assert_array_equal(X * 16, np.round(X * 16))      # pixel counts 0..16, divided by 16
    assert np.bincount(y).tolist() == DIGITS_CLASS_SIZES
    assert names == [f"pixel_{j}" for j in range(64)]
    assert "digits" in fl.available_datasets() and "diabetes" in fl.available_datasets()


def test_load_digits_is_the_csv_divided_by_16():
    header, rows = digits_rows()
    X, y, _ = fl.load_dataset("digits")

    assert header == [f"pixel_{j}" for j in range(64)] + ["label"]
    assert all(len(row) == 65 and all(0 <= v <= 16 for v in row[:64]) for row in rows)
    np.testing.assert_array_equal(X, np.array([row[:64] for row in rows]) / 16)
    assert y.tolist() == [row[64] for row in rows]


def test_digits_train_test_split_by_hand():
    # the documented rule: within each class, in row order, positions 3, 7, 11, ... are test samples
    _, rows = digits_rows()
    seen = {}
    train_rows, test_rows = [], []
    for i, row in enumerate(rows):
        position = seen.get(row[64], 0)
        seen[row[64]] = position + 1
        (test_rows if position % 4 == 3 else train_rows).append(i)

    X_train, y_train, _ = fl.load_dataset("digits", subset="train")
    X_test, y_test, _ = fl.load_dataset("digits", subset="test")
    X, y, _ = fl.load_dataset("digits", subset="all")

    assert (len(y_train), len(y_test)) == (1352, 445)
    assert sorted(train_rows + test_rows) == list(range(1797)) and not set(train_rows) & set(test_rows)
    np.testing.assert_array_equal(X_train, X[train_rows])
    np.testing.assert_array_equal(y_train, y[train_rows])
    np.testing.assert_array_equal(X_test, X[test_rows])
    np.testing.assert_array_equal(y_test, y[test_rows])
    assert y_test.dtype == np.int64 and X_test.dtype == np.float64


def test_digits_split_is_stratified():
    _, y_train, _ = fl.load_dataset("digits", subset="train")
    _, y_test, _ = fl.load_dataset("digits", subset="test")

    assert np.bincount(y_test).tolist() == [n // 4 for n in DIGITS_CLASS_SIZES]
    assert np.bincount(y_train).tolist() == [n - n // 4 for n in DIGITS_CLASS_SIZES]
    share = np.bincount(y_test) / np.array(DIGITS_CLASS_SIZES)
    assert np.all(np.abs(share - 0.25) < 0.01)


def test_load_digits_equals_scikit_learns_copy():
    datasets = sklearn_datasets()
    X, y, _ = fl.load_dataset("digits")

    ref = datasets.load_digits()

    np.testing.assert_array_equal(X, ref.data / 16)
    np.testing.assert_array_equal(y, ref.target)


# SHA-256 of data/digits.csv, recorded when it was checked equal to
# sklearn.datasets.load_digits() (scikit-learn 1.9.1).
DIGITS_SHA256 = "4faf08295f17d77e9a147ed5ea842ec501bd089cc6e61627f36ef15c1b48ea5b"


def test_digits_file_is_the_verified_copy():
    digest = hashlib.sha256((fl.data.data_dir() / "digits.csv").read_bytes()).hexdigest()
    assert digest == DIGITS_SHA256


def test_diabetes_has_only_the_whole_set():
    X, y, names = fl.load_dataset("diabetes", subset="all")
    X0, y0, names0 = fl.load_dataset("diabetes")

    np.testing.assert_array_equal(X, X0)
    np.testing.assert_array_equal(y, y0)
    assert names == names0 and y.dtype == np.float64
    with pytest.raises(ValueError, match=r"subset must be 'all' for 'diabetes'.*got 'train'"):
        fl.load_dataset("diabetes", subset="train")


def test_unknown_dataset_lists_the_available_ones():
    with pytest.raises(ValueError, match=r"name must be one of .*'diabetes'.*got 'iris'"):
        fl.load_dataset("iris")


def test_datasets_are_read_from_fl_helpers_data(tmp_path, monkeypatch):
    (tmp_path / "tiny.csv").write_text("a,b,target\n1,2,3\n4,5,6\n", encoding="utf-8")
    monkeypatch.setenv("FL_HELPERS_DATA", str(tmp_path))

    X, y, names = fl.load_dataset("tiny")

    assert fl.available_datasets() == ["tiny"]
    np.testing.assert_array_equal(X, [[1.0, 2.0], [4.0, 5.0]])
    np.testing.assert_array_equal(y, [3.0, 6.0])
    assert names == ["a", "b"]


# --- make_fedprox_synthetic ------------------------------------------------------------------

def test_fedprox_synthetic_returns_softmax_parties():
    parties = fl.make_fedprox_synthetic(1.0, 1.0, seed=0)

    assert len(parties) == 30 and [p.name for p in parties] == [f"party {k}" for k in range(30)]
    assert all(p.model == fl.models.softmax(n_classes=10) and p.n_features == 60 for p in parties)
    labels = np.concatenate([p.data[1] for p in parties])
    assert set(np.unique(labels)) <= set(range(10)) and len(np.unique(labels)) > 1


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_fedprox_sizes_are_floor_lognormal_plus_50(seed):
    # the sizes are the generator's first draw: n_k = floor(lognormal(mean 4, sigma 2)) + 50
    expected = [int(np.floor(v)) + 50 for v in np.random.default_rng(seed).lognormal(4.0, 2.0, 12)]

    parties = fl.make_fedprox_synthetic(0.5, 0.5, n_parties=12, n_features=3, n_classes=4, seed=seed)

    assert [p.n_samples for p in parties] == expected
    assert min(expected) >= 50


def test_fedprox_size_distribution():
    sizes = np.array([p.n_samples for p in fl.make_fedprox_synthetic(0.0, 0.0, n_parties=2000, n_features=1,
                                                                     n_classes=2, seed=1)])
    logs = np.log(sizes[sizes > 50] - 50)                        # n - 50 = 0 only when lognormal < 1

    assert sizes.min() >= 50
    assert np.median(logs) == pytest.approx(4.0, abs=0.15)
    q25, q75 = np.percentile(np.log(np.maximum(sizes - 50, 1)), [25, 75])
    assert (q75 - q25) / 1.349 == pytest.approx(2.0, rel=0.1)     # the normal's IQR = 1.349 sigma


def fedprox_pool(draws, key):
    return np.concatenate([d[key] for d in draws])


def test_fedprox_feature_covariance_is_diag_j_to_the_minus_1_2():
    draws = _fedprox_draws(1.0, 1.0, n_parties=40, n_features=8, n_classes=3, seed=0, iid=False)
    centred = np.concatenate([d["X"] - d["v"] for d in draws])
    assert len(centred) > 5000

    j = np.arange(1, 9)
    np.testing.assert_allclose(centred.var(axis=0), j ** -1.2, rtol=0.08)
    np.testing.assert_allclose(centred.mean(axis=0), 0.0, atol=0.05)
    corr = np.corrcoef(centred.T)
    assert np.abs(corr - np.eye(8)).max() < 0.05


def test_fedprox_labels_are_the_argmax_of_x_w_plus_b():
    draws = _fedprox_draws(2.0, 1.0, n_parties=6, n_features=5, n_classes=4, seed=3, iid=False)
    parties = fl.make_fedprox_synthetic(2.0, 1.0, n_parties=6, n_features=5, n_classes=4, seed=3)

    for d, p in zip(draws, parties, strict=True):
        np.testing.assert_array_equal(p.data[0], d["X"])
        for x, label in zip(d["X"], p.data[1], strict=True):
            scores = [sum(x[i] * d["W"][i, c] for i in range(5)) + d["b"][c] for c in range(4)]
            assert label == max(range(4), key=lambda c: scores[c])
        assert d["W"].shape == (5, 4) and d["b"].shape == (4,) and d["v"].shape == (5,)


def test_fedprox_alpha_and_beta_are_standard_deviations():
    # u_k ~ N(0, alpha^2) is the mean of W_k's and b_k's entries; B_k ~ N(0, beta^2) that of v_k's
    draws = _fedprox_draws(2.0, 0.5, n_parties=1500, n_features=20, n_classes=10, seed=0, iid=False)
    W_means = np.array([np.concatenate([d["W"].ravel(), d["b"]]).mean() for d in draws])   # ~ u_k
    v_means = np.array([d["v"].mean() for d in draws])                                      # ~ B_k

    # the mean of 210 N(u_k, 1) entries has sd 1/sqrt(210) around u_k; of 20 N(B_k, 1), 1/sqrt(20)
    assert np.sqrt(W_means.var() - 1 / 210) == pytest.approx(2.0, rel=0.08)
    assert np.sqrt(v_means.var() - 1 / 20) == pytest.approx(0.5, rel=0.1)
    within = np.concatenate([d["v"] - d["v"].mean() for d in draws])
    assert within.std() * np.sqrt(20 / 19) == pytest.approx(1.0, rel=0.05)                # v_k's entries: sd 1


def test_fedprox_alpha_beta_zero_centres_every_party_at_zero():
    draws = _fedprox_draws(0.0, 0.0, n_parties=400, n_features=10, n_classes=5, seed=2, iid=False)
    W_means = np.array([np.concatenate([d["W"].ravel(), d["b"]]).mean() for d in draws])
    v_means = np.array([d["v"].mean() for d in draws])

    # u_k = B_k = 0: the per-party means scatter only by their own sampling noise
    assert W_means.std() == pytest.approx(1 / np.sqrt(55), rel=0.1)
    assert v_means.std() == pytest.approx(1 / np.sqrt(10), rel=0.1)
    assert abs(W_means.mean()) < 0.02 and abs(v_means.mean()) < 0.05
    assert not np.array_equal(draws[0]["W"], draws[1]["W"])      # still one model per party


def test_fedprox_iid_shares_w_and_b_and_centres_x():
    draws = _fedprox_draws(0.0, 0.0, n_parties=20, n_features=6, n_classes=3, seed=5, iid=True)

    assert all(np.array_equal(d["W"], draws[0]["W"]) and np.array_equal(d["b"], draws[0]["b"]) for d in draws)
    assert all(np.array_equal(d["v"], np.zeros(6)) for d in draws)
    X = fedprox_pool(draws, "X")
    np.testing.assert_allclose(X.mean(axis=0), 0.0, atol=5 * np.sqrt(1 / len(X)))
    W = draws[0]["W"]
    assert abs(W.mean()) < 1.0 and 0.5 < W.std() < 1.5          # 18 draws of N(0, 1)


def test_fedprox_is_deterministic():
    a = fl.make_fedprox_synthetic(1.0, 1.0, n_parties=5, n_features=4, n_classes=3, seed=9)
    b = fl.make_fedprox_synthetic(1.0, 1.0, n_parties=5, n_features=4, n_classes=3, seed=9)
    c = fl.make_fedprox_synthetic(1.0, 1.0, n_parties=5, n_features=4, n_classes=3, seed=10)

    for p, q in zip(a, b, strict=True):
        np.testing.assert_array_equal(p.data[0], q.data[0])
        np.testing.assert_array_equal(p.data[1], q.data[1])
    assert a[0].n_samples != c[0].n_samples or not np.array_equal(a[0].data[0], c[0].data[0])


def test_fedprox_beta_skews_the_labels():
    # larger beta: the parties' features lie further apart, so each party sees fewer labels
    def main_label_share(beta):
        parties = fl.make_fedprox_synthetic(0.0, beta, n_parties=60, n_features=10, n_classes=5, seed=0)
        counts = fl.label_histogram(parties, 5)
        return np.mean(counts.max(axis=1) / counts.sum(axis=1))

    shares = [main_label_share(beta) for beta in [0.0, 1.0, 3.0, 10.0]]

    assert all(a < b for a, b in zip(shares, shares[1:])), shares
    assert shares[-1] > 0.9


def test_fedprox_alpha_shifts_w_and_b_but_not_the_labels():
    # u_k enters every class's score as u_k (1 + sum_j x_j): the argmax does not move (the same
    # holds in the authors' generator, where mean_b = mean_W)
    a = _fedprox_draws(0.0, 1.0, n_parties=10, n_features=8, n_classes=4, seed=7, iid=False)
    b = _fedprox_draws(3.0, 1.0, n_parties=10, n_features=8, n_classes=4, seed=7, iid=False)

    shifts = []
    for u, v in zip(a, b, strict=True):
        shift = np.concatenate([(v["W"] - u["W"]).ravel(), v["b"] - u["b"]])
        np.testing.assert_allclose(shift, shift[0], atol=1e-12)            # one u_k for W_k and b_k
        shifts.append(shift[0])
        np.testing.assert_array_equal(u["X"], v["X"])
        assert np.mean(u["y"] == v["y"]) > 0.999                            # up to rounding in near-ties
    assert np.std(shifts) > 1.0                                             # u_k ~ N(0, 3^2) differs by party


# --- default (ISLP) ----------------------------------------------------------------------------

# SHA-256 of data/default.csv, written from ISLP 0.6.0's Default.csv (Yes/No as 1/0, label last)
DEFAULT_SHA256 = "c88de110ea9aa04a35937c667651bf8728a36cd53554780c599de77f9c94cb5a"


def test_default_file_is_the_documented_copy():
    digest = hashlib.sha256((fl.data.data_dir() / "default.csv").read_bytes()).hexdigest()
    assert digest == DEFAULT_SHA256


def test_load_default_counts_match_the_data_card():
    X, y, names = fl.load_dataset("default")
    assert names == ["student", "balance", "income"]
    assert X.shape == (10_000, 3) and y.dtype == np.int64
    assert int(y.sum()) == 333 and int(X[:, 0].sum()) == 2944
    Xtr, ytr, _ = fl.load_dataset("default", subset="train")
    Xte, yte, _ = fl.load_dataset("default", subset="test")
    assert (len(ytr), int(ytr.sum()), len(yte), int(yte.sum())) == (7501, 250, 2499, 83)


def _newton_logistic(A, y, steps=30):
    """Maximum-likelihood logistic regression by Newton's method, written out (the test's own reference)."""
    b = np.zeros(A.shape[1])
    for _ in range(steps):
        p = 1.0 / (1.0 + np.exp(-A @ b))
        b += np.linalg.solve((A * (p * (1 - p))[:, None]).T @ A, A.T @ (y - p))
    return b


def test_default_reproduces_the_books_logistic_regressions():
    """ISLR 2nd ed., Tables 4.1 and 4.3 (published coefficients, rounded as printed)."""
    X, y, _ = fl.load_dataset("default")
    one = np.ones(len(y))
    b = _newton_logistic(np.c_[one, X[:, 1]], y)
    assert np.all(np.abs(b - [-10.6513, 0.0055]) <= [5e-5, 5e-5]), b
    b = _newton_logistic(np.c_[one, X[:, 1], X[:, 2] / 1000, X[:, 0]], y)
    assert np.all(np.abs(b - [-10.869, 0.00574, 0.003, -0.6468]) <= [5e-4, 5e-6, 5e-4, 5e-5]), b
