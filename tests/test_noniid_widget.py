"""The non-IID explorer (fl_helpers.widgets.noniid) without a browser: simulate, draw, cache, widget.

The references are written here, not taken from the module: the parties come
from ``fl.split`` called directly, the training from ``fl.fedavg`` /
``fl.scaffold`` called directly, the label counts and accuracies from loops.
"""

from __future__ import annotations

import base64
import io
import re
from dataclasses import replace

import numpy as np
import pytest
from matplotlib.collections import PolyCollection
from matplotlib.image import AxesImage
from matplotlib.lines import Line2D
from PIL import Image

import fl_helpers as fl
from fl_helpers import models, optim
from fl_helpers.widgets import noniid as nn

#: Small and quick (about 20 ms a run): the tests' base setting.
SMALL = nn.Settings(n_parties=20, rounds=6, local_epochs=2, fraction=0.5, batch_size=10, seed=3)


def digits():
    X, y, _ = fl.load_dataset("digits", subset="train")
    Xt, yt, _ = fl.load_dataset("digits", subset="test")
    return X, y, Xt, yt


def parties_by_hand(s: nn.Settings):
    X, y, _, _ = digits()
    options = {"iid": {}, "dirichlet": {"alpha": s.alpha}, "shards": {"shards_per_party": s.shards_per_party}}
    return fl.split(X, y, s.n_parties, scheme=s.split, model=models.softmax(n_classes=10), seed=s.seed,
                    **options[s.split])


def lines(axes):
    return [a for ax in axes for a in ax.get_children() if isinstance(a, Line2D)]


def assert_nothing_non_finite(axes):
    for ax in axes:
        for artist in ax.get_children():
            if isinstance(artist, Line2D):
                data = np.asarray(artist.get_xydata(), dtype=float)
            elif isinstance(artist, PolyCollection):
                paths = artist.get_paths()
                data = np.concatenate([p.vertices for p in paths]) if paths else np.zeros((0, 2))
            elif isinstance(artist, AxesImage):
                data = np.asarray(artist.get_array(), dtype=float)
            else:
                continue
            assert np.all(np.isfinite(data)), artist


# ----------------------------------------------------------------------------- simulate = the library, nothing added

def direct_call(s: nn.Settings, parties):
    """The library call each algorithm stands for, written out here."""
    _, _, Xt, yt = digits()
    common = dict(lr=s.lr, rounds=s.rounds, local_epochs=s.local_epochs, batch_size=s.batch_size,
                  fraction=s.fraction, seed=s.seed, engine="vectorized", eval_data=(Xt, yt))
    if s.algorithm == "fedavg":
        return fl.fedavg(parties, **common)
    if s.algorithm == "fedprox":
        return fl.fedavg(parties, prox_mu=s.prox_mu, **common)
    if s.algorithm == "scaffold":
        return fl.scaffold(parties, **common)
    return fl.fedavg(parties, server_optimizer=optim.adam(s.server_lr), **common)


@pytest.mark.parametrize("algorithm", ["fedavg", "fedprox", "scaffold", "fedadam"])
@pytest.mark.parametrize("split", ["shards", "dirichlet", "iid"])
def test_simulate_is_the_library_call(algorithm, split):
    s = SMALL.replace(algorithm=algorithm, split=split, alpha=0.3, prox_mu=0.5, server_lr=0.05)
    r = nn.simulate(s, cache=nn.FederationCache())
    h = direct_call(s, parties_by_hand(s))
    assert r.ok and not r.history.diverged
    np.testing.assert_array_equal(r.history.losses, h.losses)
    np.testing.assert_array_equal(r.history.thetas, h.thetas)
    np.testing.assert_array_equal(r.test_accuracy, h.metrics["test_accuracy"])
    np.testing.assert_array_equal(r.history.bytes_up, h.bytes_up)
    assert len(r.test_accuracy) == s.rounds


def test_label_histogram_is_a_hand_count():
    s = SMALL.replace(split="dirichlet", alpha=0.2)
    r = nn.simulate(s)
    counts = np.zeros((s.n_parties, 10), dtype=int)
    for i, p in enumerate(r.parties):
        for label in p.data[1]:
            counts[i, int(label)] += 1
    np.testing.assert_array_equal(r.label_counts, counts)
    assert counts.sum() == len(digits()[1]) == nn.N_TRAIN == 1352
    assert set(counts.sum(axis=1)) <= {67, 68}                                   # near-equal sizes
    # the parties are those of fl.split with the same arguments
    for mine, theirs in zip(r.parties, parties_by_hand(s), strict=True):
        np.testing.assert_array_equal(mine.data[1], theirs.data[1])


def test_shards_give_each_party_at_most_its_shards_labels():
    r = nn.simulate(SMALL.replace(n_parties=50, shards_per_party=1))
    assert np.all((r.label_counts > 0).sum(axis=1) <= 2)          # a shard may straddle two labels
    assert np.mean((r.label_counts > 0).sum(axis=1) == 1) > 0.7


def argmax_accuracy(theta, X, y) -> float:
    W = np.asarray(theta).reshape(X.shape[1] + 1, 10)          # intercepts first
    right = 0
    for x, label in zip(X, y, strict=True):
        scores = W[0] + x @ W[1:]
        right += int(np.argmax(scores) == label)
    return right / len(y)


def test_party_and_test_accuracies_are_an_argmax_loop_at_the_final_theta():
    r = nn.simulate(SMALL)
    theta = r.history.theta
    by_hand = [argmax_accuracy(theta, *p.data) for p in r.parties]
    np.testing.assert_allclose(r.party_accuracy, by_hand, rtol=0, atol=1e-12)
    _, _, Xt, yt = digits()
    assert r.test_accuracy[-1] == pytest.approx(argmax_accuracy(theta, Xt, yt), abs=1e-12)


def test_message_says_the_numbers():
    r = nn.simulate(SMALL)
    acc = r.party_accuracy
    # 6 rounds x 10 parties (C = 0.5 of 20): the model down, the update and its weight up, 8 bytes a number
    p = 65 * 10
    assert r.bytes_sent == 6 * 10 * (8 * p + 8 * p + 8) == 624_480
    worst = int(np.argmin(acc))
    assert r.message == (f"final test accuracy {r.test_accuracy[-1]:.1%} · parties: worst {acc[worst]:.0%} "
                         f"(party {worst}), best {acc.max():.0%}, mean {acc.mean():.0%} · 624 kB sent")


# ----------------------------------------------------------------------------- each algorithm is its library call

def test_fedprox_with_mu_zero_is_fedavg_bit_for_bit():
    a = nn.simulate(SMALL)
    b = nn.simulate(SMALL.replace(algorithm="fedprox", prox_mu=0.0))
    np.testing.assert_array_equal(a.history.thetas, b.history.thetas)
    np.testing.assert_array_equal(a.test_accuracy, b.test_accuracy)
    c = nn.simulate(SMALL.replace(algorithm="fedprox", prox_mu=1.0))
    assert not np.array_equal(a.history.thetas, c.history.thetas)
    # the proximal term pulls each party back to the global model: smaller steps away from it
    assert np.linalg.norm(c.history.thetas[1] - c.history.thetas[0]) < \
        np.linalg.norm(a.history.thetas[1] - a.history.thetas[0])


def test_the_algorithms_differ_and_ignore_the_other_algorithms_knobs():
    runs = {a: nn.simulate(SMALL.replace(algorithm=a)) for a in nn.ALGORITHMS}
    thetas = [r.history.theta for r in runs.values()]
    for i in range(len(thetas)):
        for j in range(i):
            assert not np.allclose(thetas[i], thetas[j])
    # SCAFFOLD sends its control variates too: c down, the change of c_i up (6 rounds x 10 parties, p = 650)
    assert runs["scaffold"].bytes_sent == 6 * 10 * (2 * 8 * 650 + 2 * 8 * 650 + 8)
    # a knob of another algorithm changes nothing
    same = nn.simulate(SMALL.replace(prox_mu=5.0, server_lr=0.5))
    np.testing.assert_array_equal(same.history.thetas, runs["fedavg"].history.thetas)
    same = nn.simulate(SMALL.replace(algorithm="fedadam", prox_mu=5.0))
    np.testing.assert_array_equal(same.history.thetas, runs["fedadam"].history.thetas)


def test_full_batch_and_seed():
    full = nn.simulate(SMALL.replace(batch_size=None))
    h = direct_call(SMALL.replace(batch_size=None), parties_by_hand(SMALL))
    np.testing.assert_array_equal(full.history.thetas, h.thetas)
    assert not np.array_equal(full.history.thetas, nn.simulate(SMALL).history.thetas)
    other = nn.simulate(SMALL.replace(seed=4))
    assert not np.array_equal(other.label_counts, nn.simulate(SMALL).label_counts)


# ----------------------------------------------------------------------------- cache and determinism

def test_training_knobs_reuse_the_parties_data_knobs_rebuild_them():
    cache = nn.FederationCache()
    base = SMALL.replace(split="dirichlet", alpha=0.5)
    first = nn.simulate(base, cache=cache)
    for training in (dict(local_epochs=3), dict(fraction=1.0), dict(batch_size=None), dict(lr=0.3),
                     dict(algorithm="scaffold"), dict(algorithm="fedprox", prox_mu=0.2), dict(rounds=3),
                     dict(shards_per_party=5)):                     # shards: a knob of another split
        r = nn.simulate(base.replace(**training), cache=cache)
        assert r.parties is first.parties and r.label_counts is first.label_counts, training
    assert len(cache) == 1
    for data in (dict(split="iid"), dict(split="shards"), dict(n_parties=21), dict(alpha=0.6), dict(seed=4)):
        r = nn.simulate(base.replace(**data), cache=cache)
        assert r.parties is not first.parties, data
    assert len(cache) == 6
    # alpha is not a knob of the shards split
    shards = cache.get(base.replace(split="shards"))
    assert cache.get(base.replace(split="shards", alpha=0.01)) is shards


def test_the_cache_is_bounded_and_pairs_each_engine_with_its_parties():
    cache = nn.FederationCache(maxsize=2)
    a, b, c = (SMALL.replace(n_parties=n) for n in (10, 11, 12))
    fa = cache.get(a)
    assert all(x is y for x, y in zip(fa.engine.parties, fa.parties, strict=True))
    cache.get(b)
    cache.get(a)                       # a used after b
    cache.get(c)                       # evicts b
    assert cache.get(a) is fa and len(cache) == 2
    with pytest.raises(ValueError, match=re.escape("maxsize must be an integer in [1, inf], got 0")):
        nn.FederationCache(maxsize=0)


def test_same_settings_same_numbers_with_or_without_the_cache():
    s = SMALL.replace(split="dirichlet", alpha=0.1, algorithm="fedadam")
    runs = [nn.simulate(s, cache=None), nn.simulate(s, cache=None), nn.simulate(s), nn.simulate(s)]
    for r in runs[1:]:
        np.testing.assert_array_equal(r.history.thetas, runs[0].history.thetas)
        np.testing.assert_array_equal(r.test_accuracy, runs[0].test_accuracy)
        np.testing.assert_array_equal(r.party_accuracy, runs[0].party_accuracy)
        np.testing.assert_array_equal(r.label_counts, runs[0].label_counts)


# ----------------------------------------------------------------------------- bad settings: words, not tracebacks

@pytest.fixture(scope="module")
def shared_axes():
    return nn.new_axes()


@pytest.mark.parametrize("changes, words", [
    ({"n_parties": 2000}, "n_parties must be at most 1352, the number of training samples"),
    ({"n_parties": 200, "shards_per_party": 10}, "too many shards: N × shards per party = 200 × 10 = 2000 shards"),
    ({"n_parties": 0}, "n_parties must be between 1 and 1352, got 0"),
    ({"n_parties": 2.5}, "n_parties must be a whole number"),
    ({"split": "pathological"}, "split must be one of 'iid', 'dirichlet', 'shards', got 'pathological'"),
    ({"algorithm": "fedsgd"}, "algorithm must be one of 'fedavg', 'fedprox', 'scaffold', 'fedadam'"),
    ({"split": "dirichlet", "alpha": 0.0}, "alpha must be between 0.01 and 100, got 0.0"),
    ({"shards_per_party": 11}, "shards_per_party must be between 1 and 10"),
    ({"batch_size": 0}, "batch_size must be a whole number between 1 and 1352, or None for the full batch"),
    ({"batch_size": 2.5}, "batch_size must be a whole number"),
    ({"fraction": 0.0}, "fraction must be between 0.05 and 1"),
    ({"lr": float("nan")}, "lr must be between 0.001 and 3, got nan"),
    ({"lr": -0.1}, "lr must be between"),
    ({"algorithm": "fedprox", "prox_mu": -1.0}, "prox_mu must be between 0 and 10"),
    ({"server_lr": 2.0}, "server_lr must be between 0.001 and 1"),
    ({"rounds": 0}, "rounds must be between 1 and 300"),
    ({"local_epochs": True}, "local_epochs must be a whole number"),
    ({"seed": -1}, "seed must be a whole number >= 0, got -1"),
    ({"n_parties": 10, "batch_size": 1, "local_epochs": 20, "rounds": 300}, "too slow for a live widget"),
])
def test_bad_settings_are_a_message_in_the_figure(changes, words, shared_axes):
    r = nn.simulate(nn.Settings().replace(**changes))
    assert not r.ok and r.history is None
    assert words in r.error and r.message == r.error
    axes = nn.draw(r, shared_axes)
    note = nn.note_of(axes[0].figure)
    assert note.get_visible() and note.get_text().replace("\n", " ") == r.error
    assert not any(ax.axison for ax in axes) and not lines(axes)
    assert nn.render(r, axes)[:4] == b"\x89PNG"


def test_the_library_functions_raise_naming_the_parameter():
    with pytest.raises(ValueError, match="shards_per_party must be an integer in \\[1, 6\\]"):
        nn.make_parties(nn.Settings(n_parties=200, shards_per_party=10))
    with pytest.raises(ValueError, match="n_parties must be at most the number of samples \\(1352\\)"):
        nn.make_parties(nn.Settings(n_parties=2000))
    with pytest.raises(TypeError, match="settings must be a noniid.Settings, got dict"):
        nn.make_parties({"n_parties": 5})
    with pytest.raises(TypeError, match="result must be a noniid.Result"):
        nn.draw("not a result")
    with pytest.raises(TypeError, match="axes must be four matplotlib Axes"):
        nn.draw(nn.simulate(SMALL), axes=nn.new_axes()[:2])
    assert nn.simulate({"n_parties": 5}).error == "settings must be a noniid.Settings, got dict"


def test_the_budget_refuses_only_slow_runs():
    assert nn.validate(nn.Settings()) is None
    assert nn.estimated_seconds(nn.Settings()) < 0.5
    slow = nn.Settings(n_parties=10, batch_size=1, local_epochs=20, rounds=300)
    assert nn.estimated_seconds(slow) > nn.MAX_SECONDS
    assert nn.validate(slow.replace(batch_size=50)) is None


# ----------------------------------------------------------------------------- draw

def diverged(r: nn.Result, at: int) -> nn.Result:
    """``r`` as the library reports a run that diverged at round ``at``: every array stops at round at - 1.

    The softmax loss grows only linearly in θ, so no knob within the limits
    makes a real run blow up; this builds the History such a run would return.
    """
    h = r.history
    k = at - 1
    h = replace(h, thetas=h.thetas[:k + 1], losses=h.losses[:k + 1], party_losses=h.party_losses[:k + 1],
                bytes_up=h.bytes_up[:k], bytes_down=h.bytes_down[:k], selected=h.selected[:k],
                metrics={name: v[:k] for name, v in h.metrics.items()}, diverged_at=at,
                diverged_reason="the loss is no longer a finite number")
    acc = np.concatenate([h.metrics["test_accuracy"], [np.nan]])         # a stray NaN is not drawn either
    return replace(r, history=h, test_accuracy=acc, party_accuracy=fl.party_accuracies(r.parties, h.theta))


def test_a_diverged_run_is_said_and_nothing_non_finite_is_drawn():
    r = diverged(nn.simulate(SMALL.replace(rounds=10)), at=6)
    assert r.message.startswith("diverged at round 6, shown up to round 5; final test accuracy")
    axes = nn.draw(r)
    assert_nothing_non_finite(axes)
    art = nn.artists_of(axes[0])
    assert art["note"].get_visible() and "diverged at round 6" in art["note"].get_text()
    assert len(art["line"].get_xdata()) == 5
    nn.draw(nn.simulate(SMALL.replace(rounds=10)), axes)                  # and back: the note goes
    assert not art["note"].get_visible()


def test_draw_shows_the_result():
    r = nn.simulate(SMALL.replace(n_parties=40))
    axes = nn.draw(r)
    ax_acc, ax_loss, ax_labels, ax_parties = axes
    np.testing.assert_array_equal(nn.artists_of(ax_acc)["line"].get_ydata(), r.test_accuracy)
    np.testing.assert_array_equal(nn.artists_of(ax_acc)["line"].get_xdata(), np.arange(1, 7))
    np.testing.assert_array_equal(nn.artists_of(ax_loss)["line"].get_ydata(), r.history.losses)
    # the label mix: a heat map of the shares (40 parties > BARS_UP_TO)
    image = nn.artists_of(ax_labels)["image"]
    shares = r.label_counts / r.label_counts.sum(axis=1, keepdims=True)
    np.testing.assert_allclose(np.asarray(image.get_array()), shares)
    # the parties, sorted; the worst one red, the mean line at the plain mean
    art = nn.artists_of(ax_parties)
    heights = [p.vertices[1, 1] for p in art["bars"].get_paths()]
    np.testing.assert_allclose(heights, np.sort(r.party_accuracy))
    assert tuple(art["bars"].get_facecolors()[0][:3]) != tuple(art["bars"].get_facecolors()[-1][:3])
    assert art["mean"].get_ydata()[0] == pytest.approx(r.party_accuracy.mean())
    worst = int(np.argmin(r.party_accuracy))
    assert ax_parties.get_title().endswith(f"worst {r.party_accuracy.min():.0%} (party {worst})")
    assert nn.note_of(ax_acc.figure).get_text() == nn.describe(r.settings)


def test_few_parties_get_the_courses_stacked_bars():
    r = nn.simulate(SMALL.replace(n_parties=8, split="iid"))
    axes = nn.draw(r)
    bars = [p for p in axes[2].patches]
    assert len(bars) == 8 * 10                                       # plot_label_histogram: one per party and label
    widths = np.array([b.get_width() for b in bars]).reshape(10, 8)   # drawn label by label
    np.testing.assert_allclose(widths.sum(axis=0), 1.0)               # normalised: each party's bar sums to 1
    np.testing.assert_allclose(widths.T, r.label_counts / r.label_counts.sum(axis=1, keepdims=True))


def test_redraws_update_in_place_and_keep_the_label_panel_when_the_split_did_not_change():
    axes = nn.new_axes()
    nn.draw(nn.simulate(SMALL.replace(n_parties=30)), axes)
    line = nn.artists_of(axes[0])["line"]
    image = nn.artists_of(axes[2])["image"]
    nn.draw(nn.simulate(SMALL.replace(n_parties=30, local_epochs=4, lr=0.3)), axes)
    assert nn.artists_of(axes[0])["line"] is line and nn.artists_of(axes[2])["image"] is image
    r = nn.simulate(SMALL.replace(n_parties=35))
    nn.draw(r, axes)                                                  # other split: same image, new data
    assert nn.artists_of(axes[2])["image"] is image
    assert np.asarray(image.get_array()).shape == (35, 10)
    nn.draw(nn.simulate(SMALL.replace(n_parties=0)), axes)            # an error, then fine again
    nn.draw(nn.simulate(SMALL.replace(n_parties=12)), axes)          # and the bars
    assert all(ax.axison for ax in axes) and len(axes[2].patches) == 120
    assert_nothing_non_finite(axes)


# ----------------------------------------------------------------------------- the widget

def knobs_of(box):
    left, right = box.children[0].children
    return {k.description: k for k in left.children + right.children}


def test_widget_redraws_from_all_knobs_and_says_what_is_wrong():
    box = nn.explorer(SMALL.replace(n_parties=140))
    knobs, status, image = knobs_of(box), box.children[1], box.children[2]
    first = image.value
    assert first[:4] == b"\x89PNG" and "final test accuracy" in status.value
    assert knobs["Dirichlet α"].disabled and knobs["FedProx μ"].disabled and not knobs["shards per party"].disabled
    knobs["shards per party"].value = 10                              # 1400 shards for 1352 samples
    assert "too many shards" in status.value and "#b00" in status.value
    knobs["shards per party"].value = 9
    assert "final test accuracy" in status.value and image.value != first
    knobs["split"].value = "dirichlet"
    assert not knobs["Dirichlet α"].disabled and knobs["shards per party"].disabled
    before = image.value
    knobs["algorithm"].value = "fedprox"
    assert not knobs["FedProx μ"].disabled and knobs["FedAdam ηₛ"].disabled
    assert image.value != before


def test_knob_values_are_what_the_readouts_show():
    assert nn.knob_value("lr", 0.10000000000000002) == 0.1
    assert nn.knob_value("alpha", 10 ** 2.0000001) == 100.0
    assert nn.knob_value("batch_size", 0) is None and nn.knob_value("batch_size", 10) == 10
    assert nn.knob_value("fraction", 0.15000000000000002) == 0.15


def test_the_saved_output_is_a_picture_not_vbox_text():
    box = nn.explorer(SMALL)
    image = box.children[2]
    bundle = box._repr_mimebundle_()
    assert "application/vnd.jupyter.widget-view+json" in bundle
    picture = Image.open(io.BytesIO(base64.b64decode(bundle["image/png"])))
    current = Image.open(io.BytesIO(image.value))
    assert picture.format == "PNG" and picture.size == current.size
    diff = np.abs(np.asarray(picture.convert("RGB"), dtype=int) - np.asarray(current.convert("RGB"), dtype=int))
    assert diff.mean() < 3.0
    assert "run this notebook" in bundle["text/plain"] and "VBox(" not in bundle["text/plain"]
    with pytest.raises(TypeError, match="settings must be a noniid.Settings"):
        nn.explorer({"n_parties": 5})


def _pixels(png: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(png)).convert("RGB"))


def test_render_reuses_the_label_panel_with_identical_pixels(monkeypatch):
    from matplotlib.axes import Axes

    axes = nn.new_axes()
    drawn = []
    real_draw = Axes.draw

    def counting_draw(self, renderer):
        if self is axes[2] and self.get_visible():
            drawn.append(1)
        return real_draw(self, renderer)

    monkeypatch.setattr(Axes, "draw", counting_draw)
    sequence = [SMALL.replace(n_parties=30), SMALL.replace(n_parties=30, lr=0.3),          # same split
                SMALL.replace(n_parties=31), SMALL.replace(n_parties=12),                    # heat map, bars
                SMALL.replace(n_parties=12, algorithm="scaffold"), SMALL.replace(n_parties=0)]
    counts = []
    for i, s in enumerate(sequence):
        drawn.clear()
        reused = _pixels(nn.render(nn.simulate(s), axes))
        counts.append(len(drawn))
        if i in (1, 2, 4):                   # pasted heat map, updated heat map, pasted bars: as a full render
            np.testing.assert_array_equal(reused, _pixels(nn.render(nn.simulate(s))))
    assert counts == [1, 0, 1, 1, 0, 1]      # drawn only when its picture changed (the error: an empty Axes)
