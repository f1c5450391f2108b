"""The live-demo dashboard without a browser: presets, readouts, drawing, the widget's state, checkers."""

from __future__ import annotations

from html.parser import HTMLParser

import numpy as np
import pytest
from matplotlib.collections import PolyCollection
from matplotlib.lines import Line2D

from fl_helpers import check
from fl_helpers.check import dashboard as check_db
from fl_helpers.widgets import dashboard as db
from fl_helpers.widgets.explorer import LIMITS, Result, Settings, explorer_data, explorer_parties

EXTREMES = [
    db.DEFAULT.replace(n_parties=1),
    db.DEFAULT.replace(n_parties=200),
    db.DEFAULT.replace(lr=LIMITS["lr"][0]),
    db.DEFAULT.replace(lr=LIMITS["lr"][1]),
    db.DEFAULT.replace(rounds=1),
    db.DEFAULT.replace(local_epochs=LIMITS["local_epochs"][1]),
    db.DEFAULT.replace(fraction=LIMITS["fraction"][0]),
    db.DEFAULT.replace(fraction=LIMITS["fraction"][0], n_parties=200, skew=3.0, iid=True),
    db.DEFAULT.replace(n_parties=200, rounds=500, local_epochs=50, lr=0.001),
    db.DEFAULT.replace(engine="loop", n_parties=200, rounds=500, local_epochs=50),   # refused: too slow
]


def readout_text(html: str, key: str) -> str:
    """The text a reader sees in the element with ``data-key=key`` (entities decoded)."""
    class Reader(HTMLParser):
        def __init__(self):
            super().__init__()
            self.depth, self.parts = 0, []

        def handle_starttag(self, tag, attrs):
            if self.depth or dict(attrs).get("data-key") == key:
                self.depth += 1

        def handle_endtag(self, tag):
            self.depth = max(0, self.depth - 1)

        def handle_data(self, data):
            if self.depth:
                self.parts.append(data)

    reader = Reader()
    reader.feed(html)
    return "".join(reader.parts)


def test_readout_text_reads_what_the_browser_shows():
    html = "<div data-key='status'>a &lt; b &amp; it&#x27;s <b>done</b></div><div data-key='x'>no</div>"
    assert readout_text(html, "status") == "a < b & it's done"
    assert readout_text(html, "missing") == ""


def lines_and_bars(axes):
    out = []
    for ax in axes:
        out += [a for a in ax.get_children() if isinstance(a, (Line2D, PolyCollection))]
    return out


def assert_nothing_nan(axes):
    for artist in lines_and_bars(axes):
        if isinstance(artist, Line2D):
            data = np.asarray(artist.get_xydata(), dtype=float)
        else:
            paths = artist.get_paths()
            data = np.concatenate([p.vertices for p in paths]) if paths else np.zeros((0, 2))
        assert np.all(np.isfinite(data)), artist


# ----------------------------------------------------------------------------- presets

def test_presets_set_the_documented_knobs():
    keys = [p.key for p in db.PRESETS]
    assert keys == ["iid", "unweighted", "diverge", "drift"]
    s = {p.key: p.settings for p in db.PRESETS}
    assert s["iid"].iid and s["iid"].weighting == "samples" and s["iid"].local_epochs == 1
    assert s["unweighted"].weighting == "uniform" and s["unweighted"].skew >= 1.5 and not s["unweighted"].iid
    assert s["diverge"].lr > check_db.stable_lr_limit()
    assert s["drift"].local_epochs >= 10 and s["drift"].rounds < db.DEFAULT.rounds and not s["drift"].iid
    for p in db.PRESETS:
        assert p.caption.endswith(".") and len(p.caption.split(". ")) == 1      # one sentence


def test_iid_preset_just_works():
    r = db.simulate(db.preset("iid").settings)
    assert r.ok and not r.history.diverged
    assert r.distance < 1e-6
    np.testing.assert_allclose(r.history.losses, r.reference.losses, rtol=1e-10)


def test_unweighted_preset_ends_far_from_theta_star_at_its_fixed_point():
    r = db.simulate(db.preset("unweighted").settings)
    assert r.distance > 0.5
    assert np.linalg.norm(r.history.theta - r.theta_uniform) < 1e-3
    assert r.history.losses[-1] > 1.5 * r.reference.losses[-1]
    # what 1/N minimises: the plain mean of the party losses is lower at theta_u than at theta*,
    # and the global (size-weighted) loss is lower at theta* (party losses computed here by hand)
    s = db.preset("unweighted").settings
    data = [p.data for p in explorer_parties(s.n_parties, s.skew, s.seed, iid=s.iid)]
    sizes = np.array([len(y) for _, y in data])

    def party_losses(theta):
        return np.array([np.mean((theta[0] + theta[1] * X[:, 0] - y) ** 2) for X, y in data])

    at_end, at_star = party_losses(r.history.theta), party_losses(r.theta_star)
    np.testing.assert_allclose(r.history.party_losses[-1], at_end, rtol=1e-12)
    assert at_end.mean() < at_star.mean()
    assert sizes @ at_end / sizes.sum() > sizes @ at_star / sizes.sum()


def test_diverge_preset_diverges_with_a_message():
    r = db.simulate(db.preset("diverge").settings)
    assert r.history.diverged
    assert r.message.startswith("diverged at round")
    assert "diverged at round" in db.readouts(r)["rounds"]


def test_drift_preset_fewer_rounds_but_drifts():
    r = db.simulate(db.preset("drift").settings)
    h, ref = r.history, r.reference
    full = db.simulate(db.preset("drift").settings.replace(local_epochs=1, rounds=500)).history
    rounds_fedsgd_needs = int(np.argmax(full.losses <= h.losses[10]))
    assert rounds_fedsgd_needs > 5 * 10                     # 10 FedAvg rounds beat 50 FedSGD rounds
    assert h.losses[-1] < ref.losses[-1]                     # ahead of centralized GD at the same round
    assert 0.05 < r.distance < 1.0                           # but stops short of theta*
    assert abs(h.losses[-1] - h.losses[-5]) < 1e-3 * h.losses[-1]   # levelled off


def test_preset_lookup():
    assert db.preset("drift") is db.PRESETS[3]
    with pytest.raises(ValueError, match="key must be one of 'iid', 'unweighted', 'diverge', 'drift'; got 'x'"):
        db.preset("x")


# ----------------------------------------------------------------------------- simulate, readouts

@pytest.mark.parametrize("settings", EXTREMES, ids=lambda s: db.describe(s))
def test_extremes_draw_a_picture_or_a_message(settings):
    r = db.simulate(settings)
    axes = db.draw(r)
    assert len(axes) == 4
    assert_nothing_nan(axes)
    readouts = db.readouts(r)
    assert set(readouts) == {"settings", "status", "loss", "distance", "rounds", "bytes", "engine"}
    assert readouts["status"] == r.message
    if r.ok:
        assert readouts["rounds"].startswith(f"{r.history.rounds} of {settings.rounds}")
    else:
        assert readouts["loss"] == "-" and "too slow" in r.error
        assert db.note_of(axes[0].figure).get_visible()
    png = db.render(r, axes)
    assert png[:4] == b"\x89PNG"


def test_unavailable_engine_is_a_message(monkeypatch):
    monkeypatch.setattr(db, "available_engines", lambda: ("vectorized", "loop"))
    r = db.simulate(db.DEFAULT.replace(engine="tensorflow"))
    assert not r.ok and "'tensorflow' engine is not available here" in r.error


def test_available_engines_follow_the_installed_packages(monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "fl_helpers.engines.tf_engine" else real(name, *a))
    assert db.available_engines() == ("vectorized", "loop")
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: object())
    assert db.available_engines() == ("vectorized", "loop", "tensorflow")


def test_readouts_of_the_default_run():
    r = db.simulate(db.DEFAULT)
    out = db.readouts(r)
    # 10 parties x 100 rounds x (2 + 1) x 8 bytes up, 10 x 100 x 2 x 8 down
    assert out["bytes"] == "40 kB (up 24 kB, down 16 kB)"
    assert db.total_bytes(r) == (24_000, 16_000)
    assert out["rounds"] == "100 of 100"
    assert out["distance"] == f"{r.distance:.2e}"
    assert out["engine"].startswith("vectorized on CPU")
    assert out["settings"].startswith("N = 10 · η = 0.1 · R = 100 · E = 1 · C = 1 · skew = 0")
    html = db.readout_html(r)
    for key in ("status", "settings", "loss", "distance", "rounds", "bytes", "engine"):
        assert f"data-key='{key}'" in html
    assert "fl-bad" not in html
    assert "fl-bad" in db.readout_html(db.simulate(db.preset("diverge").settings))


@pytest.mark.parametrize("n, text", [(0, "0 B"), (999, "999 B"), (1000, "1 kB"), (40_000, "40 kB"),
                                     (1_234_567, "1.23 MB"), (5e9, "5 GB")])
def test_format_bytes(n, text):
    assert db.format_bytes(n) == text


# ----------------------------------------------------------------------------- drawing

def test_party_bars_by_hand():
    bars = db.party_bars(np.array([1, 3]), np.array([2.0, 4.0]))
    np.testing.assert_array_equal(bars[0], [[0, 0], [0, 2], [1, 2], [1, 0]])
    np.testing.assert_array_equal(bars[1], [[1, 0], [1, 4], [4, 4], [4, 0]])
    area = np.sum((bars[:, 2, 0] - bars[:, 0, 0]) * bars[:, 1, 1])
    assert area == 1 * 2 + 3 * 4 == 4 * 3.5        # M x (size-weighted mean loss)


def test_draw_shows_party_sizes_and_the_global_loss_as_their_weighted_mean():
    r = db.simulate(db.DEFAULT.replace(skew=2.0))
    axes = db.draw(r)
    art = db.artists_of(axes[2])
    widths = [p.vertices[2, 0] - p.vertices[0, 0] for p in art["bars"].get_paths()]
    np.testing.assert_array_equal(widths, r.sizes)
    heights = [p.vertices[1, 1] for p in art["bars"].get_paths()]
    np.testing.assert_allclose(heights, r.history.party_losses[-1])
    m = r.sizes
    assert art["global"].get_ydata()[0] == pytest.approx(m @ r.history.party_losses[-1] / m.sum())
    assert art["plain"].get_ydata()[0] == pytest.approx(r.history.party_losses[-1].mean())


def test_draw_communication_is_cumulative_bytes():
    r = db.simulate(db.DEFAULT.replace(n_parties=20, fraction=0.25, rounds=7))
    axes = db.draw(r)
    x, y = db.artists_of(axes[3])["line"].get_data()
    per_round = 8 * 5 * (2 * 2 + 1)                       # k = 5 of 20, p = 2
    np.testing.assert_allclose(x, np.arange(8) * per_round / 1e3)
    # the excess loss over the pooled minimum; the centralized run of 7 steps is not at the
    # minimum yet, so compute L(θ*) from the pooled data by hand
    X, y_all = explorer_data(r.settings.seed)
    Xt = np.hstack([np.ones((len(y_all), 1)), X])
    star = np.linalg.lstsq(Xt, y_all, rcond=None)[0]
    np.testing.assert_allclose(y, r.history.losses - np.mean((Xt @ star - y_all) ** 2), rtol=1e-6, atol=1e-12)
    assert "1.4 kB in 7 rounds" in axes[3].get_title()


def test_draw_diverged_has_no_nan_and_says_so():
    r = db.simulate(db.preset("diverge").settings)
    axes = db.draw(r)
    assert_nothing_nan(axes)
    notes = [t.get_text() for t in axes[0].texts if t.get_visible()]
    assert any(f"diverged at round {r.history.diverged_at}" in t for t in notes)
    assert "(last finite)" in axes[2].get_title()


def test_draw_error_then_ok_again():
    axes = db.new_axes()
    bad = db.simulate(db.DEFAULT.replace(n_parties=0))
    assert db.draw(bad, axes) is axes
    note = db.note_of(axes[0].figure)
    assert note.get_visible() and "n_parties must be between 1 and 200" in note.get_text().replace("\n", " ")
    assert not any(ax.axison for ax in axes) and not lines_and_bars(axes)
    db.draw(db.simulate(db.DEFAULT), axes)
    assert not note.get_visible() and all(ax.axison for ax in axes)
    assert_nothing_nan(axes)


# ----------------------------------------------------------------------------- the widget, in-process

@pytest.fixture
def dash():
    return db.dashboard(engines=("vectorized", "loop"))


def knob_settings(d) -> Settings:
    return d.settings()


def test_dashboard_starts_at_default(dash):
    assert dash.redraws == 1
    assert dash.shown == db.DEFAULT
    assert dash.image.value[:4] == b"\x89PNG"
    assert readout_text(dash.readout.value, "settings") == db.describe(db.DEFAULT)
    assert readout_text(dash.readout.value, "status") == dash.result.message
    assert db.HINT in dash.caption.value


@pytest.mark.parametrize("key", [p.key for p in db.PRESETS])
def test_each_preset_sets_all_knobs_and_redraws_once(dash, key):
    p = db.preset(key)
    image = dash.image.value
    before = dash.redraws
    dash.preset_buttons[key].click()
    assert dash.redraws == before + 1                     # one redraw for several knobs
    assert dash.shown == p.settings == knob_settings(dash)
    for name, knob in dash.knobs.items():
        assert knob.value == pytest.approx(getattr(p.settings, name)), name
    assert dash.image.value != image
    assert p.caption in dash.caption.value
    assert readout_text(dash.readout.value, "settings") == db.describe(p.settings)
    assert readout_text(dash.readout.value, "status") == dash.result.message


def test_after_a_preset_a_knob_move_keeps_the_other_knobs(dash):
    dash.press("drift")
    dash.knobs["n_parties"].value = 25
    assert dash.redraws == 3
    assert dash.shown == db.preset("drift").settings.replace(n_parties=25)
    ax_loss = dash.axes[0]
    assert ax_loss.get_title() == "N = 25 parties, η = 0.01, E = 20"      # the picture, not only the state
    assert "R = 30" in dash.readout.value
    assert db.HINT in dash.caption.value                                     # the caption no longer applies


def test_reset(dash):
    dash.press("unweighted")
    dash.knobs["lr"].value = 0.5
    dash.reset_button.click()
    assert dash.shown == db.DEFAULT == knob_settings(dash)


def test_log_slider_values_are_rounded_to_the_readout(dash):
    dash.knobs["lr"].value = 10 ** np.log10(3.0)
    assert dash.shown.lr == 3.0 and dash.result.ok
    dash.knobs["lr"].value = 10 ** -3
    assert dash.shown.lr == 0.001 and dash.result.ok


@pytest.mark.parametrize("settings", EXTREMES, ids=lambda s: db.describe(s))
def test_dashboard_extremes(dash, settings):
    dash.apply(settings)
    assert dash.shown == settings
    refused = settings.engine == "loop"                   # the one refused as too slow
    assert dash.result.ok is not refused
    assert readout_text(dash.readout.value, "status") == dash.result.message
    if refused:
        assert dash.result.message.startswith("too slow for the loop engine")
        assert readout_text(dash.readout.value, "loss") == "final loss" + "-"     # label, no value
    assert dash.image.value[:4] == b"\x89PNG"


def test_a_failing_run_is_a_message_not_a_traceback(dash, monkeypatch):
    def broken(settings):
        raise RuntimeError("device lost")

    monkeypatch.setattr(db, "simulate", broken)
    dash.knobs["rounds"].value = 7
    assert not dash.result.ok
    assert "this run failed: RuntimeError: device lost" in dash.readout.value
    assert db.note_of(dash.axes[0].figure).get_visible()


def test_unavailable_engine_falls_back_on_the_knob():
    d = db.dashboard(db.DEFAULT.replace(engine="tensorflow"), engines=("vectorized", "loop"))
    assert d.knobs["engine"].value == "vectorized" and d.result.ok


def test_repr_for_readers_without_a_kernel(dash):
    bundle = dash._repr_mimebundle_()
    assert "application/vnd.jupyter.widget-view+json" in bundle
    assert bundle["text/plain"].startswith("Live dashboard")


# ----------------------------------------------------------------------------- the exercises' checkers

def test_stable_lr_limit_is_where_the_dashboard_starts_to_diverge():
    limit = check_db.stable_lr_limit()
    assert 0.7 < limit < 0.8
    below = db.simulate(db.DEFAULT.replace(lr=0.98 * limit, rounds=500)).history
    above = db.simulate(db.DEFAULT.replace(lr=1.02 * limit, rounds=500)).history
    assert below.losses[-1] < below.losses[0] and above.losses[-1] > above.losses[0]


@pytest.mark.parametrize("answer, passed, words", [
    (None, False, "no answer yet"),
    ("0.7", False, "expected a positive number"),
    (-1.0, False, "expected a positive number"),
    (0.708, True, "is stable; the limit is 2/λmax(H) = 0.7397"),   # the slider value just below
    (0.794, False, "the loss does not go down"),                    # the slider value just above
    (0.5, False, "a larger one is too"),
])
def test_largest_stable_lr(answer, passed, words):
    result = check.largest_stable_lr(answer)
    assert bool(result) is passed and words in str(result)


def test_bytes_per_round_accepts_the_right_count_and_matches_the_dashboard():
    def right(k, p):
        return 8 * k * (2 * p + 1)

    assert check.bytes_per_round(right)
    r = db.simulate(db.DEFAULT.replace(n_parties=50, fraction=0.2))
    assert sum(db.total_bytes(r)) == 100 * right(10, 2)


@pytest.mark.parametrize("wrong, words", [
    (lambda k, p: 8 * k * 2 * p, "also uploads its weight"),
    (lambda k, p: 8 * k * (p + 1), "only the upload"),
    (lambda k, p: k * (2 * p + 1), "not bytes"),
    (lambda k, p: 8 * (2 * p + 1), "multiply by the number of selected parties"),
    (lambda k, p: None, "returned None"),
    ("8k(2p+1)", "expected a function"),
])
def test_bytes_per_round_rejects_typical_mistakes(wrong, words):
    result = check.bytes_per_round(wrong)
    assert not result and words in str(result)


def test_result_error_type():
    assert isinstance(db.simulate(Settings(n_parties=0)), Result)


def test_redraws_reuse_legends_with_identical_pixels():
    import io

    from PIL import Image

    def pixels(png):
        return np.asarray(Image.open(io.BytesIO(png)).convert("RGB"))

    axes = db.new_axes()
    sequence = [db.DEFAULT, db.DEFAULT.replace(n_parties=60, lr=0.3)] + [p.settings for p in db.PRESETS] \
        + [db.preset("unweighted").settings.replace(n_parties=30), db.DEFAULT.replace(n_parties=0), db.DEFAULT]
    for s in sequence:
        np.testing.assert_array_equal(pixels(db.render(db.simulate(s), axes)),
                                      pixels(db.render(db.simulate(s))), err_msg=db.describe(s))
