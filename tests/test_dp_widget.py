"""The differential-privacy widget (fl_helpers.widgets.dp) without a browser: simulate, cache, draw, widget.

The references are written here, not taken from the module: the runs come
from ``privacy.dp_fedavg`` and ``fl.train`` called directly on parties from
``fl.split``, ε from ``dp_accounting`` itself, the noise scale from z·S/(qN)
worked out by hand.
"""

from __future__ import annotations

import base64
import io
import re

import numpy as np
import pytest
from PIL import Image

import fl_helpers as fl
from fl_helpers import models, privacy
from fl_helpers.widgets import dp

#: Small and quick (a few tens of ms a run): the tests' base setting.
SMALL = dp.Settings(noise_multiplier=2.0, clip_norm=1.0, sample_rate=0.2, rounds=8, n_parties=50, lr=1.0, seed=3)


def digits():
    X, y, _ = fl.load_dataset("digits", subset="train")
    Xt, yt, _ = fl.load_dataset("digits", subset="test")
    return X, y, Xt, yt


def by_hand(s: dp.Settings):
    """The DP run and the run without privacy, each one library call on parties split here."""
    X, y, Xt, yt = digits()
    parties = fl.split(X, y, s.n_parties, scheme="iid", seed=s.seed, model=models.softmax(n_classes=10))
    h = privacy.dp_fedavg(parties, lr=s.lr, rounds=s.rounds, clip_norm=s.clip_norm,
                          noise_multiplier=s.noise_multiplier, sample_rate=s.sample_rate, delta=s.delta,
                          seed=s.seed, engine="vectorized", eval_data=(Xt, yt))
    ref = fl.train(parties, lr=s.lr, rounds=s.rounds, fraction=s.sample_rate, sampling="poisson",
                   weighting="uniform", seed=s.seed, engine="vectorized", eval_data=(Xt, yt))
    return h, ref


def epsilon_by_dp_accounting(z, q, rounds, delta):
    import dp_accounting
    from dp_accounting.rdp import RdpAccountant

    event = dp_accounting.PoissonSampledDpEvent(q, dp_accounting.GaussianDpEvent(z))
    accountant = RdpAccountant()
    accountant.compose(dp_accounting.SelfComposedDpEvent(event, rounds))
    return accountant.get_epsilon(delta)


# ----------------------------------------------------------------------------- simulate = the library calls

def test_simulate_is_dp_fedavg_and_plain_fedavg_called_directly():
    r = dp.simulate(SMALL, cache=dp.Cache())
    h, ref = by_hand(SMALL)
    np.testing.assert_array_equal(r.history.thetas, h.thetas)
    np.testing.assert_array_equal(r.test_accuracy, h.metrics["test_accuracy"])
    np.testing.assert_array_equal(r.epsilon, h.metrics["epsilon"])
    np.testing.assert_array_equal(r.reference.thetas, ref.thetas)
    np.testing.assert_array_equal(r.reference_accuracy, ref.metrics["test_accuracy"])
    assert len(r.test_accuracy) == len(r.reference_accuracy) == len(r.epsilon) == SMALL.rounds
    # the same seed: the same parties take part in each round of both runs
    for a, b in zip(r.history.selected, r.reference.selected, strict=True):
        np.testing.assert_array_equal(a, b)
    # and the DP run really is another run: clipped and noised
    assert not np.allclose(r.history.theta, r.reference.theta)


def test_epsilon_is_dp_accountings_and_depends_only_on_z_q_rounds_delta():
    s = SMALL.replace(noise_multiplier=1.3, sample_rate=0.25, rounds=12)
    r = dp.simulate(s)
    for t in (1, 5, 12):
        assert r.epsilon[t - 1] == pytest.approx(epsilon_by_dp_accounting(1.3, 0.25, t, 1e-5), rel=1e-9)
    assert r.final_epsilon == r.epsilon[-1]
    assert np.all(np.diff(r.epsilon) > 0)                         # the guarantee only weakens with rounds
    assert f"ε = {r.final_epsilon:.3g} after 12 rounds (δ = 1e-05)" in r.message
    other = dp.simulate(s.replace(clip_norm=5.0, n_parties=30, lr=0.3, seed=1))
    np.testing.assert_array_equal(other.epsilon, r.epsilon)
    more_noise = dp.simulate(s.replace(noise_multiplier=4.0))
    assert more_noise.final_epsilon < r.final_epsilon


def test_status_line_noise_std_is_z_s_over_qn_worked_by_hand():
    s = SMALL.replace(noise_multiplier=3.0, clip_norm=0.5, sample_rate=0.2, n_parties=50)
    r = dp.simulate(s)
    assert r.noise_std == pytest.approx(3.0 * 0.5 / (0.2 * 50)) == pytest.approx(0.15)
    assert r.message.endswith("noise std on the average update z·S/(qN) = 0.15")
    acc, ref = r.test_accuracy[-1], r.reference_accuracy[-1]
    assert f"test accuracy {100 * acc:.1f} % vs {100 * ref:.1f} % without privacy" in r.message


def test_z_zero_is_no_guarantee_and_no_epsilon_curve():
    r = dp.simulate(SMALL.replace(noise_multiplier=0.0))
    assert len(r.epsilon) == 0 and r.final_epsilon == np.inf and r.noise_std == 0
    assert r.message.startswith("z = 0: no noise, no guarantee (ε = ∞)")
    axes = dp.draw(r)
    art = dp.artists_of(axes[1])
    assert not art["line"].get_visible() and len(art["line"].get_xdata()) == 0
    assert art["note"].get_visible() and "no guarantee" in art["note"].get_text()
    # and back to noise: the curve returns, the note goes
    dp.draw(dp.simulate(SMALL), axes)
    assert art["line"].get_visible() and not art["note"].get_visible()
    assert len(art["line"].get_ydata()) == SMALL.rounds


# ----------------------------------------------------------------------------- determinism and caches

def test_same_settings_same_numbers_with_or_without_the_cache():
    runs = [dp.simulate(SMALL, cache=None), dp.simulate(SMALL, cache=None), dp.simulate(SMALL), dp.simulate(SMALL)]
    for r in runs[1:]:
        np.testing.assert_array_equal(r.history.thetas, runs[0].history.thetas)
        np.testing.assert_array_equal(r.test_accuracy, runs[0].test_accuracy)
        np.testing.assert_array_equal(r.reference_accuracy, runs[0].reference_accuracy)
        np.testing.assert_array_equal(r.epsilon, runs[0].epsilon)
        assert r.message == runs[0].message
    assert not np.array_equal(dp.simulate(SMALL.replace(seed=4)).history.thetas, runs[0].history.thetas)


def test_moving_z_or_s_reruns_only_the_dp_run(monkeypatch):
    built = {"parties": 0, "reference": 0}
    real_parties, real_reference = dp.make_parties, dp.reference_run

    def counting_parties(s):
        built["parties"] += 1
        return real_parties(s)

    def counting_reference(s, fed):
        built["reference"] += 1
        return real_reference(s, fed)

    monkeypatch.setattr(dp, "make_parties", counting_parties)
    monkeypatch.setattr(dp, "reference_run", counting_reference)
    cache = dp.Cache()
    first = dp.simulate(SMALL, cache=cache)
    assert built == {"parties": 1, "reference": 1}
    for privacy_knobs in (dict(noise_multiplier=5.0), dict(noise_multiplier=0.0), dict(clip_norm=0.2)):
        r = dp.simulate(SMALL.replace(**privacy_knobs), cache=cache)
        assert r.parties is first.parties and r.reference is first.reference, privacy_knobs
        assert not np.array_equal(r.history.thetas, first.history.thetas)
    assert built == {"parties": 1, "reference": 1}
    r = dp.simulate(SMALL.replace(sample_rate=0.4), cache=cache)          # q: a new reference, same parties
    assert r.parties is first.parties and r.reference is not first.reference
    assert built == {"parties": 1, "reference": 2}
    dp.simulate(SMALL.replace(seed=5), cache=cache)                         # seed: new parties and reference
    assert built == {"parties": 2, "reference": 3}


# ----------------------------------------------------------------------------- bad input: named, with range and value

@pytest.mark.parametrize("changes, error, words", [
    ({"noise_multiplier": -1.0}, ValueError, "noise_multiplier must be between 0 and 20, got -1.0"),
    ({"noise_multiplier": 25}, ValueError, "noise_multiplier must be between 0 and 20, got 25"),
    ({"clip_norm": 0.0}, ValueError, "clip_norm must be between 0.05 and 20, got 0.0"),
    ({"clip_norm": float("nan")}, ValueError, "clip_norm must be between 0.05 and 20, got nan"),
    ({"sample_rate": 1.5}, ValueError, "sample_rate must be between 0.01 and 1, got 1.5"),
    ({"rounds": 0}, ValueError, "rounds must be between 1 and 300, got 0"),
    ({"rounds": 2.5}, TypeError, "rounds must be a whole number between 1 and 300, got 2.5"),
    ({"n_parties": 5000}, ValueError, "n_parties must be between 10 and 1352, got 5000"),
    ({"lr": "fast"}, TypeError, "lr must be a number between 0.001 and 10, got 'fast'"),
    ({"delta": 0.5}, ValueError, "delta must be between 1e-10 and 0.01, got 0.5"),
    ({"noise_multiplier": True}, TypeError, "noise_multiplier must be a number between 0 and 20, got True"),
    ({"seed": -1}, ValueError, "seed must be a whole number >= 0, got -1"),
    ({"rounds": 300, "sample_rate": 1.0, "n_parties": 1352}, ValueError, "too slow for a live widget"),
])
def test_bad_settings_raise_in_simulate_and_are_a_message_in_the_widget(changes, error, words):
    s = SMALL.replace(**changes)
    with pytest.raises(error, match=re.escape(words)):
        dp.simulate(s)
    r = dp.attempt(s)
    assert not r.ok and r.history is None and words in r.error and r.message == r.error
    axes = dp.draw(r)
    assert not any(ax.axison for ax in axes) and not dp.artists_of(axes[0])
    shown = [t.get_text().replace("\n", " ") for t in axes[0].figure.texts if t.get_visible()]
    assert shown == [r.error]
    assert dp.render(r, axes)[:4] == b"\x89PNG"


def test_type_errors_name_what_was_given():
    with pytest.raises(TypeError, match="settings must be a dp.Settings, got dict"):
        dp.simulate({"noise_multiplier": 1.0})
    with pytest.raises(TypeError, match="result must be a dp.Result"):
        dp.draw("not a result")
    with pytest.raises(TypeError, match="axes must be two matplotlib Axes"):
        dp.draw(dp.simulate(SMALL), axes=dp.new_axes()[:1])
    with pytest.raises(TypeError, match="settings must be a dp.Settings"):
        dp.widget({"noise_multiplier": 1.0})


def test_the_budget_refuses_only_slow_runs():
    assert dp.estimated_seconds(dp.Settings()) < 1.0
    slow = dp.Settings(rounds=300, sample_rate=1.0, n_parties=1352)
    assert dp.estimated_seconds(slow) > dp.MAX_SECONDS
    fine = slow.replace(sample_rate=0.1)                       # 300 rounds x 135 parties: allowed
    assert dp.estimated_seconds(fine) < dp.MAX_SECONDS and dp.check(fine) is fine


# ----------------------------------------------------------------------------- draw

def test_draw_shows_both_runs_epsilon_on_a_log_axis_and_the_guides():
    r = dp.simulate(SMALL)
    ax_acc, ax_eps = dp.draw(r)
    art = dp.artists_of(ax_acc)
    np.testing.assert_array_equal(art["dp"].get_ydata(), r.test_accuracy)
    np.testing.assert_array_equal(art["ref"].get_ydata(), r.reference_accuracy)
    np.testing.assert_array_equal(art["dp"].get_xdata(), np.arange(1, SMALL.rounds + 1))
    eps = dp.artists_of(ax_eps)["line"]
    np.testing.assert_array_equal(eps.get_ydata(), r.epsilon)
    assert ax_eps.get_yscale() == "log"
    guides = sorted(line.get_ydata()[0] for line in ax_eps.get_lines() if line is not eps)
    assert guides == [1.0, 8.0]
    lo, hi = ax_eps.get_ylim()
    assert lo <= r.epsilon.min() and hi >= max(8.0, r.epsilon.max())
    legend = [t.get_text() for t in ax_eps.get_legend().texts]
    assert any("ε = 1" in t for t in legend) and any("ε = 8" in t for t in legend)
    captions = [t.get_text() for t in ax_acc.figure.texts]
    assert any("not laws" in c for c in captions) and dp.describe(SMALL) in captions


def test_redraws_update_in_place_after_an_error_too():
    axes = dp.new_axes()
    dp.draw(dp.simulate(SMALL), axes)
    line = dp.artists_of(axes[0])["dp"]
    dp.draw(dp.simulate(SMALL.replace(noise_multiplier=6.0)), axes)
    assert dp.artists_of(axes[0])["dp"] is line
    dp.draw(dp.attempt(SMALL.replace(clip_norm=0.0)), axes)
    dp.draw(dp.simulate(SMALL), axes)
    assert all(ax.axison for ax in axes) and dp.artists_of(axes[0])["dp"] is not line
    assert dp.render(dp.simulate(SMALL), axes)[:4] == b"\x89PNG"


# ----------------------------------------------------------------------------- the widget

def parts(box):
    left, right = box.children[0].children
    return {k.description: k for k in left.children + right.children}, box.children[1], box.children[2]


def test_knob_values_are_what_the_readouts_show():
    assert dp.knob_value("clip_norm", 10 ** 0.30103) == 2.0
    assert dp.knob_value("clip_norm", 10 ** 1.3010301) == 20.0
    assert dp.knob_value("lr", 0.10000000000000002) == 0.1
    assert dp.knob_value("sample_rate", 0.30000000000000004) == 0.3
    assert dp.knob_value("noise_multiplier", 1.2000000000000002) == 1.2
    assert dp.knob_value("rounds", 7) == 7


def test_moving_a_slider_updates_the_status_and_the_picture():
    box = dp.widget(SMALL)
    knobs, status, image = parts(box)
    assert set(knobs) == {"noise multiplier z", "clip norm S", "sampling rate q", "rounds", "parties N",
                          "learning rate η", "seed"}
    first = image.value
    assert first[:4] == b"\x89PNG"
    expected = dp.simulate(SMALL).message
    assert expected in status.value.replace("&#x27;", "'")
    knobs["noise multiplier z"].value = 0.0
    assert "no guarantee (ε = ∞)" in status.value and image.value != first
    knobs["noise multiplier z"].value = 4.0
    assert f"ε = {epsilon_by_dp_accounting(4.0, 0.2, 8, 1e-5):.3g} after 8 rounds" in status.value
    assert f"z·S/(qN) = {4.0 * 1.0 / (0.2 * 50):.3g}" in status.value
    knobs["sampling rate q"].value = 1.0
    knobs["parties N"].value = 1352
    knobs["rounds"].value = 300                                        # 300 rounds x 1352 parties: refused
    assert "too slow for a live widget" in status.value and "#b00" in status.value
    knobs["rounds"].value = 5
    assert "after 5 rounds" in status.value and "#b00" not in status.value


def test_the_saved_output_is_a_picture_not_vbox_text():
    box = dp.widget(SMALL)
    image = box.children[2]
    bundle = box._repr_mimebundle_()
    assert "application/vnd.jupyter.widget-view+json" in bundle
    picture = Image.open(io.BytesIO(base64.b64decode(bundle["image/png"])))
    current = Image.open(io.BytesIO(image.value))
    assert picture.format == "PNG" and picture.size == current.size
    diff = np.abs(np.asarray(picture.convert("RGB"), dtype=int) - np.asarray(current.convert("RGB"), dtype=int))
    assert diff.mean() < 3.0
    assert "run this notebook" in bundle["text/plain"] and "VBox(" not in bundle["text/plain"]
    assert "fl-dp" in box._dom_classes
