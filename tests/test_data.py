"""fl_helpers.data: synthetic data, partition schemes, bundled datasets."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest

import fl_helpers as fl
from fl_helpers.data import quantity_sizes

SCHEMES = ["iid", "quantity", "covariate"]


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


# --- bundled datasets --------------------------------------------------------------

DIABETES_NAMES = ["age", "sex", "bmi", "bp", "tc", "ldl", "hdl", "tch", "ltg", "glu"]


def test_load_diabetes_shape_and_names():
    X, y, names = fl.load_dataset("diabetes")

    assert X.shape == (442, 10) and y.shape == (442,)
    assert X.dtype == np.float64 and y.dtype == np.float64
    assert names == DIABETES_NAMES
    assert "diabetes" in fl.available_datasets()


def test_load_diabetes_equals_scikit_learns_copy():
    datasets = pytest.importorskip("sklearn.datasets")
    X, y, _ = fl.load_dataset("diabetes")

    ref = datasets.load_diabetes(scaled=False)

    np.testing.assert_allclose(X, ref.data, rtol=1e-12)
    np.testing.assert_allclose(y, ref.target, rtol=1e-12)


# SHA-256 of data/diabetes.csv, recorded when it was checked equal to
# sklearn.datasets.load_diabetes(scaled=False) (scikit-learn 1.9.1), so CI,
# which does not install scikit-learn, still notices any change to the file.
DIABETES_SHA256 = "9e2fc477338dd292c6361948a1e8e49737044c4a04e5be7f35ae8e4d27b75c48"


def test_diabetes_file_is_the_verified_copy():
    digest = hashlib.sha256((fl.data.data_dir() / "diabetes.csv").read_bytes()).hexdigest()
    assert digest == DIABETES_SHA256


def test_diabetes_matches_the_published_summary():
    # the target as distributed: progression scores 25-346, mean 152.13, sample sd 77.09
    _, y, _ = fl.load_dataset("diabetes")
    assert (y.min(), y.max()) == (25.0, 346.0)
    assert round(y.mean(), 2) == 152.13 and round(y.std(ddof=1), 2) == 77.09


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
