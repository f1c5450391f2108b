"""The explorer's pure functions (simulate, draw) and its widget, without a browser."""

from __future__ import annotations

import re

import numpy as np
import pytest
from matplotlib.lines import Line2D

from fl_helpers.reference import least_squares
from fl_helpers.widgets import explorer as ex

LO, HI = ex.LIMITS["lr"]

# Every extreme a slider allows, alone.
EXTREMES = {
    "N = 1": ex.Settings(n_parties=1),
    "N = 200": ex.Settings(n_parties=200),
    "smallest lr": ex.Settings(lr=LO),
    "largest lr": ex.Settings(lr=HI),
    "rounds = 1": ex.Settings(rounds=1),
    "rounds = 500": ex.Settings(rounds=500),
    "E max": ex.Settings(local_epochs=ex.LIMITS["local_epochs"][1], lr=0.01),
    "E max, lr 0.1": ex.Settings(local_epochs=ex.LIMITS["local_epochs"][1]),
    "fraction min": ex.Settings(fraction=ex.LIMITS["fraction"][0]),
    "fraction min, N = 200": ex.Settings(fraction=ex.LIMITS["fraction"][0], n_parties=200),
    "skew max": ex.Settings(skew=ex.LIMITS["skew"][1], n_parties=200, weighting="uniform"),
    "all max (vectorized)": ex.Settings(n_parties=200, rounds=500, local_epochs=50, skew=3.0, lr=0.001),
}


def all_lines(axes):
    return [a for ax in axes for a in ax.get_children() if isinstance(a, Line2D)]


def assert_finite_lines(axes):
    lines = all_lines(axes)
    assert lines, "nothing was drawn"
    for line in lines:
        x, y = (np.asarray(v, dtype=float) for v in line.get_data())
        assert np.all(np.isfinite(x)) and np.all(np.isfinite(y)), line.get_label()


# ----------------------------------------------------------------------------- simulate

def test_weighted_fedsgd_is_centralized_gd_and_reaches_least_squares():
    r = ex.simulate(ex.Settings(n_parties=7, skew=1.5, rounds=150))
    assert r.ok and not r.history.diverged
    np.testing.assert_allclose(r.history.losses, r.reference.losses, rtol=1e-10)
    assert r.distance < 1e-6
    X, y = ex.explorer_data(0)
    np.testing.assert_allclose(r.theta_star, np.linalg.lstsq(np.c_[np.ones(len(y)), X], y, rcond=None)[0])


@pytest.mark.parametrize("name", EXTREMES)
def test_extremes_simulate_and_draw(name):
    s = EXTREMES[name]
    r = ex.simulate(s)
    assert r.ok, r.error
    h = r.history
    assert 0 <= h.rounds <= s.rounds
    assert np.all(np.isfinite(h.losses)) and np.all(np.isfinite(h.thetas))
    assert isinstance(r.message, str) and r.message
    axes = ex.draw(r)
    assert len(axes) == 2
    assert_finite_lines(axes)


def test_extreme_outcomes():
    assert ex.simulate(EXTREMES["largest lr"]).history.diverged
    assert ex.simulate(EXTREMES["E max, lr 0.1"]).distance > 0.5          # client drift
    r = ex.simulate(EXTREMES["rounds = 1"])
    assert r.history.rounds == 1 and len(r.history.losses) == 2
    r = ex.simulate(EXTREMES["N = 1"])            # one party: federated = centralized, exactly
    np.testing.assert_allclose(r.history.thetas, r.reference.thetas, rtol=1e-12, atol=1e-12)
    r = ex.simulate(EXTREMES["fraction min, N = 200"])
    assert {len(sel) for sel in r.history.selected} == {10}        # 5 % of 200
    r = ex.simulate(EXTREMES["smallest lr"])
    assert r.history.losses[-1] < r.history.losses[0] and r.distance > 1.0   # crawls


@pytest.mark.parametrize("n, fraction, k", [
    (37, 0.3, 11),        # 11.1 -> 11
    (37, 0.05, 2),        # 1.85 -> 2
    (200, 0.05, 10),
    (10, 0.35, 4),        # 3.5 is a tie; 0.35 x 10 = 3.5000000000000004 in floating point -> 4
    (13, 0.5, 6),         # 6.5 -> 6 (round half to even) ...
    (7, 0.5, 4),          # ... 3.5 -> 4
    (1, 0.05, 1),         # 0.05 -> 0, but at least one party
    (3, 0.1, 1),
    (10, 1.0, 10),
])
def test_selected_per_round_by_hand(n, fraction, k):
    """max(1, round(fraction x N)) parties a round, counted by hand; the server samples that many."""
    assert ex.selected_per_round(n, fraction) == k
    if n >= 3:
        r = ex.simulate(ex.Settings(n_parties=n, fraction=fraction, rounds=3), cache=None)
        assert [len(s) for s in r.history.selected] == [k] * 3
        assert all(len(set(s)) == k and 0 <= s.min() and s.max() < n for s in r.history.selected)


@pytest.mark.parametrize("changes, words", [
    ({"n_parties": 0}, "n_parties must be between 1 and 200, got 0"),
    ({"n_parties": 201}, "n_parties must be between 1 and 200"),
    ({"n_parties": 2.5}, "n_parties must be a whole number"),
    ({"lr": 0.0}, "lr must be between 0.001 and 3"),
    ({"lr": float("nan")}, "lr must be between"),
    ({"lr": 3.5}, "got 3.5"),
    ({"rounds": 0}, "rounds must be between 1 and 500"),
    ({"local_epochs": 51}, "local_epochs must be between 1 and 50"),
    ({"fraction": 0.0}, "fraction must be between 0.05 and 1"),
    ({"skew": -1.0}, "skew must be between 0 and 3"),
    ({"weighting": "median"}, "weighting must be one of"),
    ({"engine": "gpu"}, "engine must be one of"),
    ({"iid": "yes"}, "iid must be True or False"),
    ({"n_parties": True}, "n_parties must be between"),
    ({"engine": "loop", "n_parties": 200, "rounds": 500, "local_epochs": 50}, "too slow for the loop engine"),
])
def test_invalid_settings_give_a_message_not_an_exception(changes, words):
    r = ex.simulate(ex.Settings().replace(**changes))
    assert not r.ok and r.history is None
    assert words in r.error and r.message == r.error
    axes = ex.draw(r)                                   # says it, does not raise
    texts = [t.get_text() for t in axes[0].texts]
    assert r.error in texts
    assert not axes[0].axison and not axes[1].axison
    assert not all_lines(axes)


def test_loop_engine_budget_boundary():
    ok = ex.Settings(engine="loop", n_parties=200, rounds=100, local_epochs=10)      # 200 000
    assert ex.validate(ok) is None
    assert "too slow" in ex.validate(ok.replace(rounds=101))
    assert ex.validate(ok.replace(rounds=101, engine="vectorized")) is None


def test_diverged_run_is_said_and_never_drawn_as_nan():
    r = ex.simulate(ex.Settings(lr=2.0))
    h = r.history
    assert h.diverged and r.ok
    assert r.message.startswith(f"diverged at round {h.diverged_at}: learning rate too large")
    axes = ex.draw(r)
    assert_finite_lines(axes)
    note = [t for t in axes[0].texts if t.get_visible() and t.get_text()]
    assert note and f"diverged at round {h.diverged_at}" in note[0].get_text()


def test_unweighted_mean_converges_to_its_fixed_point():
    r = ex.simulate(ex.Settings(skew=2.0, weighting="uniform", rounds=300))
    parties = ex.explorer_parties(10, 2.0, 0)
    np.testing.assert_allclose(r.theta_uniform, least_squares(parties, weighting="uniform"))
    assert np.linalg.norm(r.history.theta - r.theta_uniform) < 1e-6
    assert r.distance > 0.5


def test_iid_split_has_the_same_sizes_and_data_but_mixed_ranges():
    non, iid = ex.explorer_parties(8, 1.0, 0), ex.explorer_parties(8, 1.0, 0, iid=True)
    assert [p.n_samples for p in non] == [p.n_samples for p in iid]
    x_non = np.sort(np.concatenate([p.data[0][:, 0] for p in non]))
    x_iid = np.sort(np.concatenate([p.data[0][:, 0] for p in iid]))
    np.testing.assert_array_equal(x_non, x_iid)
    spread = lambda parties: np.mean([np.ptp(p.data[0]) for p in parties if p.n_samples > 5])  # noqa: E731
    assert spread(iid) > 3.0 > 1.5 > spread(non)          # x in [-2, 2]: width 4 vs neighbouring ranges


def test_simulate_is_deterministic_with_and_without_the_cache():
    s = ex.Settings(n_parties=20, fraction=0.3, local_epochs=3, skew=1.0)
    fresh = [ex.simulate(s, cache=None) for _ in range(2)]
    cache = ex.FederationCache()
    cached = [ex.simulate(s, cache=cache) for _ in range(2)]
    assert len(cache) == 1
    for r in fresh[1:] + cached:
        np.testing.assert_array_equal(r.history.thetas, fresh[0].history.thetas)
        np.testing.assert_array_equal(r.sizes, fresh[0].sizes)


def test_the_cache_keys_on_the_data_settings_and_pairs_each_engine_with_its_parties():
    cache = ex.FederationCache(maxsize=2)
    a = ex.Settings(n_parties=6, skew=1.0)
    parties, engine = cache.get(a)
    assert len(parties) == 6 and engine.name == "vectorized"
    assert len(engine.parties) == 6 and all(x is y for x, y in zip(engine.parties, parties, strict=True))
    # knobs of the run, not of the data: the same entry
    for same in (a.replace(lr=0.5), a.replace(rounds=3, local_epochs=4), a.replace(fraction=0.5),
                 a.replace(weighting="uniform")):
        got = cache.get(same)
        assert got[0] is parties and got[1] is engine
    assert len(cache) == 1
    # knobs of the data or the engine: another entry each, at most maxsize, least recently used out
    for other in (a.replace(engine="loop"), a.replace(n_parties=7), a.replace(skew=2.0), a.replace(seed=1),
                  a.replace(iid=True)):
        cache.get(a)                                      # a: the most recently used
        got = cache.get(other)
        assert got[0] is not parties and got[1] is not engine and len(cache) == 2
        assert all(x is y for x, y in zip(got[1].parties, got[0], strict=True))
        assert got[1].name == other.engine
    cache.get(a)
    b = a.replace(n_parties=7)
    kept = cache.get(b)
    cache.get(a)                                          # a used after b
    cache.get(a.replace(seed=1))                          # evicts b, the least recently used
    assert cache.get(a)[0] is parties
    assert cache.get(b)[0] is not kept[0]
    cache.clear()
    assert len(cache) == 0


@pytest.mark.parametrize("maxsize, error, words", [(0, ValueError, "maxsize must be an integer in [1, inf], got 0"),
                                                   (1.5, TypeError, "maxsize must be an integer, got 1.5")])
def test_cache_size_must_be_a_positive_integer(maxsize, error, words):
    with pytest.raises(error, match=re.escape(words)):
        ex.FederationCache(maxsize=maxsize)


def test_a_cached_engine_is_only_used_with_its_own_parties():
    """Settings that differ only in data would need other parties: the cache never mixes them up."""
    cache = ex.FederationCache()
    for n in (5, 6, 5):
        parties, engine = cache.get(ex.Settings(n_parties=n))
        assert len(engine.parties) == n and engine.parties[0] is parties[0]
    r = ex.simulate(ex.Settings(n_parties=5, skew=2.0, weighting="uniform", rounds=300), cache=cache)
    np.testing.assert_allclose(r.history.theta, r.theta_uniform, atol=1e-6)


def test_engines_agree():
    s = ex.Settings(n_parties=13, fraction=0.5, local_epochs=4, skew=1.0, rounds=30, lr=0.05)
    a, b = ex.simulate(s), ex.simulate(s.replace(engine="loop"))
    np.testing.assert_allclose(a.history.thetas, b.history.thetas, rtol=1e-10, atol=1e-12)


# ----------------------------------------------------------------------------- draw

def test_draw_updates_the_same_artists_in_place():
    axes = ex.new_axes()
    ex.draw(ex.simulate(ex.Settings()), axes)
    before = set(map(id, all_lines(axes)))
    r = ex.simulate(ex.Settings(n_parties=30, rounds=40, lr=0.2))
    assert ex.draw(r, axes) is axes
    fed = ex.artists_of(axes[0])["fed"]
    assert id(fed) in before
    # the excess loss L(θ) − L(θ*), against the pooled MSE computed here (θ* from numpy's lstsq)
    X, y = ex.explorer_data(r.settings.seed)
    Xt = np.hstack([np.ones((len(y), 1)), X])
    star = np.linalg.lstsq(Xt, y, rcond=None)[0]
    mse = np.mean((r.history.thetas @ Xt.T - y) ** 2, axis=1)
    np.testing.assert_allclose(fed.get_ydata(), mse - np.mean((Xt @ star - y) ** 2), rtol=1e-6, atol=1e-12)
    assert axes[0].get_ylabel() == "excess loss L(θ) − L(θ*)"
    assert axes[0].get_title() == "N = 30 parties, η = 0.2, E = 1"
    assert axes[0].get_xlim() == (0, 40)


def test_draw_after_an_error_rebuilds():
    axes = ex.new_axes()
    ex.draw(ex.simulate(ex.Settings(n_parties=0)), axes)
    r = ex.simulate(ex.Settings())
    ex.draw(r, axes)
    assert axes[0].axison and ex.artists_of(axes[0]) is not None
    assert_finite_lines(axes)


def test_render_png():
    axes = ex.draw(ex.simulate(ex.Settings()))
    png = ex.render_png(axes[0].figure)
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = int.from_bytes(png[16:20], "big"), int.from_bytes(png[20:24], "big")
    assert (width, height) == tuple(int(v) for v in axes[0].figure.bbox.size)
    small = ex.render_png(axes[0].figure, compress_level=9, palette=True)
    assert small[:8] == png[:8] and len(small) < len(png)


@pytest.mark.parametrize("value, text", [(1.0, "1"), (0.5, "0.5"), (20.0, "20"), (1e6, "10⁶"),
                                         (2e-4, "2×10⁻⁴"), (5e7, "5×10⁷"), (0.0, "")])
def test_tick_label(value, text):
    assert ex.tick_label(value) == text


def test_knob_value_rounds_what_the_slider_sends():
    assert ex.knob_value("lr", 10 ** np.log10(3.0)) <= 3.0
    assert ex.knob_value("lr", 10 ** 0.4771212547196624) == 3.0
    assert ex.knob_value("lr", 0.10000000000000002) == 0.1
    assert ex.knob_value("lr", 10 ** -3.0000000001) == 0.001
    assert ex.knob_value("fraction", 0.15000000000000002) == 0.15
    assert ex.knob_value("n_parties", 7) == 7


# ----------------------------------------------------------------------------- widget

def test_widget_redraws_from_all_knobs():
    box = ex.explorer()
    sliders = {c.description: c for row in box.children[0].children for c in row.children}
    status, image = box.children[1], box.children[2]
    first = image.value
    assert first[:4] == b"\x89PNG" and "after 100 rounds" in status.value
    sliders["rounds"].value = 30
    sliders["parties N"].value = 40
    assert image.value != first
    assert "after 30 rounds" in status.value           # the earlier knob still counts
    sliders["learning rate η"].value = 3.0
    assert "diverged" in status.value


def _pixels(png: bytes) -> np.ndarray:
    import io

    from PIL import Image

    return np.asarray(Image.open(io.BytesIO(png)).convert("RGB"))


def test_render_reuses_unchanged_legends_with_identical_pixels(monkeypatch):
    from matplotlib.legend import Legend

    calls = []
    real_draw = Legend.draw

    def counting_draw(self, renderer):
        if self.get_visible():
            calls.append(self)
        return real_draw(self, renderer)

    monkeypatch.setattr(Legend, "draw", counting_draw)
    axes = ex.new_axes()
    sequence = [ex.Settings(), ex.Settings(n_parties=40), ex.Settings(lr=1.5),             # same legends
                ex.Settings(local_epochs=5, rounds=30),                                    # new label
                ex.Settings(n_parties=0), ex.Settings(skew=2.0, weighting="uniform"),     # error, new entry
                ex.Settings(skew=2.5, weighting="uniform", n_parties=25)]
    drawn = []
    for s in sequence:
        calls.clear()
        reused = _pixels(ex.render_png(ex.draw(ex.simulate(s), axes)[0].figure))
        drawn.append(len(calls))
        fresh = _pixels(ex.render_png(ex.draw(ex.simulate(s))[0].figure))
        np.testing.assert_array_equal(reused, fresh)
    assert drawn == [2, 0, 0, 2, 0, 2, 0]     # legends laid out only when they changed
