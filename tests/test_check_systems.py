"""Checkers of notebook 11: reference solutions pass, typical mistakes fail with their hint, stubs get no hint.

The reference solutions are written here from the definitions: top-k with numpy's
argsort, and the FedAsync schedule by walking the arrivals with a heap, not with
the library's event queue.
"""

import heapq

import numpy as np
import pytest
from checks_helpers import assert_fail, assert_pass, raises

from fl_helpers import check, compression

E = check.systems.FEDASYNC_EXERCISE


# --------------------------------------------------------------------------- top-k

def topk(x, k):
    idx = np.argsort(-np.abs(x), kind="stable")[:k]
    p = x.size
    dtype = np.uint8 if p <= 2**8 else np.uint16 if p <= 2**16 else np.uint32
    return x[idx].astype(np.float32), idx.astype(dtype)


def test_the_reference_topk_passes_and_agrees_with_the_library():
    assert_pass(check.topk_sparsify(topk))
    x = np.random.default_rng(0).normal(size=650)
    values, indices = topk(x, 65)
    sent = compression.TopK(k=65).encode(x)
    order = np.argsort(indices)
    np.testing.assert_array_equal(values[order], sent.arrays[0])
    np.testing.assert_array_equal(indices[order], sent.arrays[1])
    assert values.nbytes + indices.nbytes == sent.nbytes == 65 * (4 + 2)


def test_any_order_of_the_pairs_passes():
    def by_index(x, k):
        values, indices = topk(x, k)
        order = np.argsort(indices)
        return values[order], indices[order]
    assert_pass(check.topk_sparsify(by_index))
    assert_pass(check.topk_sparsify(lambda x, k: tuple(a[::-1] for a in topk(x, k))))


def stub(x, k):
    raise NotImplementedError("write your solution here")


def test_an_untouched_exercise_fails_without_a_hint():
    for result in (check.topk_sparsify(stub), check.fedasync_schedule(None, None)):
        assert_fail(result)
        assert result.hint == ""


def signed(x, k):
    idx = np.argsort(-x, kind="stable")[:k]
    return x[idx].astype(np.float32), idx.astype(topk(x, k)[1].dtype)


def smallest(x, k):
    idx = np.argsort(np.abs(x), kind="stable")[:k]
    return x[idx].astype(np.float32), idx.astype(topk(x, k)[1].dtype)


@pytest.mark.parametrize("wrong, words", [
    (signed, "magnitude"),
    (smallest, "*smallest*"),
    (lambda x, k: (np.abs(topk(x, k)[0]), topk(x, k)[1]), "signed values"),
    (lambda x, k: (np.sort(topk(x, k)[0]), topk(x, k)[1]), "same index array"),
    (lambda x, k: (topk(x, k)[0].astype(np.float64), topk(x, k)[1]), "float32"),
    (lambda x, k: (topk(x, k)[0].astype(np.float16), topk(x, k)[1]), "float32"),
    (lambda x, k: (topk(x, k)[0], topk(x, k)[1].astype(np.int64)), "fits uint8"),
    (lambda x, k: (topk(x, k)[0], topk(x, k)[1].astype(np.uint8)), "needs uint16"),
    (lambda x, k: (topk(x, k)[0], topk(x, k)[1].astype(np.uint16 if x.size >= 256 else np.uint8)), "fits uint8"),
    (lambda x, k: (topk(x, k)[0], topk(x, k)[1].astype(np.float64)), "unsigned integer"),
    (lambda x, k: np.where(np.isin(np.arange(x.size), topk(x, k)[1]), x, 0.0), "dense vector"),
])
def test_typical_topk_mistakes_get_their_hint(wrong, words):
    assert_fail(check.topk_sparsify(wrong), words)


@pytest.mark.parametrize("odd", [raises, lambda x, k: 3, lambda x, k: (None, None), lambda x, k: ("a", "b"),
                                 lambda x, k: (topk(x, k)[0], np.full(k, -1)), "not a function",
                                 lambda x, k: [[1.0], [1.0, 2.0], [3.0]]])
def test_odd_topk_answers_fail_without_raising(odd):
    assert_fail(check.topk_sparsify(odd))


# --------------------------------------------------------------------------- FedAsync

def schedule():
    """(staleness, alpha) of the first updates, by walking the arrivals in time order."""
    seconds, updates = E["job_seconds"], E["updates"]
    heap = [(s, i, 0) for i, s in enumerate(seconds)]          # (arrival time, party, model version it started from)
    heapq.heapify(heap)
    taus = []
    for version in range(updates):
        time, party, started = heapq.heappop(heap)
        taus.append(version - started)
        heapq.heappush(heap, (time + seconds[party], party, version + 1))   # restarts from the new model
    taus = np.array(taus)
    return taus, E["mixing"] * (1.0 + taus) ** -E["a"]


def test_the_schedule_by_hand():
    taus, alphas = schedule()
    # arrivals: party 0 at 1, 2; party 1 at 2.4; party 0 at 3; party 2 at 3.7; party 0 at 4; party 1 at 4.8; 0 at 5
    assert taus.tolist() == [0, 0, 2, 1, 4, 1, 3, 1]
    np.testing.assert_allclose(alphas[4], 0.6 / np.sqrt(5))


def test_the_reference_schedule_passes():
    taus, alphas = schedule()
    assert_pass(check.fedasync_schedule(taus.tolist(), list(alphas)))
    assert_pass(check.fedasync_schedule(taus, alphas))


@pytest.mark.parametrize("wrong_taus, words", [
    (lambda t: t + 1, "τ = 0"),
    (lambda t: 0 * t, "Not every update is fresh"),
    (lambda t: np.array([1.0, 1.0, 2.4, 1.0, 3.7, 1.0, 2.4, 1.0]), "not seconds"),
    (lambda t: t + 0.5, "not seconds"),
    (lambda t: np.where(np.arange(len(t)) == 5, t + 1, t), "*after* its own update"),
])
def test_typical_staleness_mistakes_get_their_hint(wrong_taus, words):
    taus, alphas = schedule()
    assert_fail(check.fedasync_schedule(wrong_taus(taus), alphas), words)


@pytest.mark.parametrize("wrong_alphas, words", [
    (lambda t: 0.6 / (1 + t), "square root"),
    (lambda t: (1 + t) ** -0.5, "mixing α"),
    (lambda t: 0.6 + 0 * t, "without the staleness weight"),
])
def test_typical_alpha_mistakes_get_their_hint(wrong_alphas, words):
    taus, _ = schedule()
    assert_fail(check.fedasync_schedule(taus, wrong_alphas(taus)), words)


@pytest.mark.parametrize("taus, alphas", [(None, [0.6] * 8), ("zero", None), ([0, 0], [0.6, 0.6]),
                                          ([0, 0, 2, 1, 4, 1, 3, 1], None), ([0, 0, 2, 1, 4, 1, 3, 1], "x"),
                                          ([np.nan] * 8, [0.6] * 8), (object(), object())])
def test_odd_schedule_answers_fail_without_raising(taus, alphas):
    assert_fail(check.fedasync_schedule(taus, alphas))
