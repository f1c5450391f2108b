r"""The non-IID explorer: FedAvg and its drift fixes, live, on the handwritten digits (issue 9).

Softmax regression (:func:`fl_helpers.models.softmax`, ten classes) is trained
on the digits' training set (``load_dataset("digits", subset="train")``, 1,352
images) split over :math:`N` parties, and tested after every round on the
held-out ``subset="test"`` (445 images). The knobs:

- the split: IID, label skew by a Dirichlet mix :math:`q_i \sim \mathrm{Dir}(\alpha p)`
  (Hsu, Qi and Brown 2019), or McMahan et al. (2017)'s shards (each party gets
  ``shards_per_party`` slices of the label-sorted data);
- the federation: :math:`N`, local epochs :math:`E`, client fraction :math:`C`,
  minibatch size :math:`B` (or the full batch), rounds, learning rate :math:`\eta`, seed;
- the algorithm: FedAvg (McMahan et al. 2017), FedProx (Li et al. 2020,
  proximal term :math:`\frac\mu2\lVert\theta_i - \theta\rVert^2`), SCAFFOLD
  (Karimireddy et al. 2020, control variates) or FedAdam (Reddi et al. 2021,
  Adam on the server with step size :math:`\eta_s`).

Thin, like the other widgets: :func:`simulate` is a pure function of
:class:`Settings` (it calls :func:`fl_helpers.fedavg` or
:func:`fl_helpers.scaffold` and adds nothing to the training), :func:`draw` a
pure function of its :class:`Result`, and :func:`explorer` binds sliders to
them. The split and its engine depend only on the data knobs (split,
:math:`N`, :math:`\alpha` or the shards, seed) and are kept in a
:class:`FederationCache`, so moving :math:`E`, :math:`C`, :math:`B`,
:math:`\eta` or the algorithm only retrains. The figure has four panels: test
accuracy and training loss per round, the label mix of every party, and each
party's accuracy on its own data at the final model (the fairness view: its
mean and its worst party).
"""

from __future__ import annotations

import itertools
import math
import numbers
from dataclasses import dataclass, replace
from functools import lru_cache
from typing import NamedTuple

import numpy as np

from .. import models, optim
from ..algorithms import scaffold
from ..data import label_histogram, load_dataset, split
from ..engines import make_engine
from ..evaluation import party_accuracies
from ..server import fedavg, n_selected
from .dashboard import format_bytes
from .rendering import (
    ARTISTS,
    BoundedCache,
    add_legend,
    agg_figure,
    few_ticks,
    live_box,
    panel,
    plain_log_axis,
    render_png,
    set_log_limits,
)

#: The splits offered, as :func:`fl_helpers.split` names them, and how the readouts name them.
SPLITS = {"iid": "IID", "dirichlet": "Dirichlet α", "shards": "shards"}
#: The algorithms offered, and how the readouts name them.
ALGORITHMS = {"fedavg": "FedAvg", "fedprox": "FedProx", "scaffold": "SCAFFOLD", "fedadam": "FedAdam"}
N_CLASSES = 10
#: Training samples in the digits' fixed train split (``load_dataset("digits", subset="train")``).
N_TRAIN = 1352

#: Ranges (inclusive) that :func:`simulate` accepts; the sliders show these or less.
LIMITS = {
    "alpha": (0.01, 100.0),
    "shards_per_party": (1, 10),
    "n_parties": (1, N_TRAIN),
    "local_epochs": (1, 20),
    "fraction": (0.05, 1.0),
    "prox_mu": (0.0, 10.0),
    "server_lr": (1e-3, 1.0),
    "rounds": (1, 300),
    "lr": (1e-3, 3.0),
}
_INTEGERS = ("shards_per_party", "n_parties", "local_epochs", "rounds")

#: The minibatch sizes on the widget's slider; 0 there (None in :class:`Settings`) is the full batch.
BATCH_SIZES = (1, 2, 5, 10, 20, 50, None)

#: A run estimated to take longer than this (seconds, :func:`estimated_seconds`) is refused with a message.
MAX_SECONDS = 5.0

#: Up to this many parties the label panel is :func:`fl_helpers.plotting.plot_label_histogram`'s
#: normalised bars; above, a heat map (one row per party) that stays readable and cheap to redraw.
BARS_UP_TO = 20


@dataclass(frozen=True)
class Settings:
    """All knobs of one run of the non-IID explorer.

    ``split`` is ``"iid"``, ``"dirichlet"`` (uses ``alpha``) or ``"shards"``
    (uses ``shards_per_party``); ``batch_size=None`` is the full batch;
    ``algorithm`` is ``"fedavg"``, ``"fedprox"`` (uses ``prox_mu``),
    ``"scaffold"`` or ``"fedadam"`` (uses ``server_lr``, Adam's step size on
    the server). A knob that the chosen split or algorithm does not use
    changes nothing (it must still be in :data:`LIMITS`).
    """

    split: str = "shards"
    alpha: float = 0.5
    shards_per_party: int = 2
    n_parties: int = 50
    local_epochs: int = 5
    fraction: float = 0.5
    batch_size: int | None = 10
    algorithm: str = "fedavg"
    prox_mu: float = 0.1
    server_lr: float = 0.03
    rounds: int = 40
    lr: float = 0.1
    seed: int = 0

    def replace(self, **changes) -> "Settings":
        return replace(self, **changes)


class Federation(NamedTuple):
    """What depends only on the data knobs: the parties, their engine and their label counts."""

    parties: list
    engine: object
    label_counts: np.ndarray


@dataclass
class Result:
    """Everything :func:`draw` needs; ``error`` is set instead when the settings are invalid.

    ``history`` is the :class:`fl_helpers.History` of the run, ``label_counts``
    the (N, 10) labels per party (:func:`fl_helpers.label_histogram`),
    ``party_accuracy`` each party's accuracy on its own data at the final
    model (:func:`fl_helpers.party_accuracies`), ``test_accuracy`` the test
    accuracy after each round 1..R (``history.metrics["test_accuracy"]``).
    """

    settings: Settings
    history: object = None
    parties: list | None = None
    label_counts: np.ndarray | None = None
    party_accuracy: np.ndarray | None = None
    test_accuracy: np.ndarray | None = None
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None

    @property
    def bytes_sent(self) -> int:
        """Bytes sent over the whole run, up (updates and weights) and down (the model)."""
        h = self.history
        return int(np.sum(h.bytes_up) + np.sum(h.bytes_down))

    @property
    def message(self) -> str:
        """One line for the class: the invalid knob, or the outcome in words."""
        if self.error:
            return self.error
        h, acc = self.history, self.party_accuracy
        worst, best = int(np.argmin(acc)), int(np.argmax(acc))
        start = f"diverged at round {h.diverged_at}, shown up to round {h.rounds}; " if h.diverged else ""
        test = f"{self.test_accuracy[-1]:.1%}" if len(self.test_accuracy) else "-"
        return (f"{start}final test accuracy {test} · parties: worst {acc[worst]:.0%} ({_party_name(worst)}), "
                f"best {acc[best]:.0%}, mean {acc.mean():.0%} · {format_bytes(self.bytes_sent)} sent")


def _party_name(i: int) -> str:
    return f"party {i}"


# --------------------------------------------------------------------------- data and parties

@lru_cache(maxsize=1)
def digits() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """``(X_train, y_train, X_test, y_test)`` of the digits' fixed split, read once (read-only arrays)."""
    X, y, _ = load_dataset("digits", subset="train")
    Xt, yt, _ = load_dataset("digits", subset="test")
    for arr in (X, y, Xt, yt):
        arr.setflags(write=False)
    return X, y, Xt, yt


def data_key(settings: Settings) -> tuple:
    """What the parties depend on: split, N, α (Dirichlet only), shards per party (shards only), seed."""
    s = settings
    return (s.split, int(s.n_parties), float(s.alpha) if s.split == "dirichlet" else None,
            int(s.shards_per_party) if s.split == "shards" else None, int(s.seed))


def make_parties(settings: Settings) -> list:
    """The parties of ``settings``: :func:`fl_helpers.split` of the digits' training set, softmax model.

    Raises :func:`fl_helpers.split`'s ValueError / TypeError for a bad split
    (e.g. more shards than samples); :func:`simulate` says it in words instead.
    """
    if not isinstance(settings, Settings):
        raise TypeError(f"settings must be a noniid.Settings, got {type(settings).__name__}")
    s = settings
    X, y, _, _ = digits()
    options = {"alpha": s.alpha} if s.split == "dirichlet" else (
        {"shards_per_party": s.shards_per_party} if s.split == "shards" else {})
    return split(X, y, s.n_parties, scheme=s.split, model=models.softmax(n_classes=N_CLASSES), seed=s.seed,
                 **options)


class FederationCache(BoundedCache):
    """The parties, their engine and their label counts, built once per data setting (:func:`data_key`).

    Bounded, least recently used first out. Each engine is stored with the
    very parties it was built for. Pass ``cache=None`` to :func:`simulate` to
    build afresh (the results are the same).
    """

    def __init__(self, maxsize: int = 8):
        super().__init__(maxsize)

    def key(self, settings: Settings):
        return data_key(settings)

    def build(self, settings: Settings) -> Federation:
        return build_federation(settings)


def build_federation(settings: Settings) -> Federation:
    """:func:`make_parties`, the vectorized engine for them and their label histogram."""
    parties = make_parties(settings)
    counts = label_histogram(parties, n_classes=N_CLASSES)
    counts.setflags(write=False)
    return Federation(parties, make_engine("vectorized", parties), counts)


#: The cache the widgets share (one kernel, one class demo).
CACHE = FederationCache()


# --------------------------------------------------------------------------- validation

def _is_number(value) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, (bool, np.bool_))


def estimated_seconds(settings: Settings) -> float:
    """A rough time (s) of the run on the vectorized engine, to refuse runs that would freeze the widget.

    Each local step (all working parties at once) costs about 30 µs plus
    2.5 µs per working party, and each sample gradient 0.3 µs (measured on one
    core of the course's CPU machine); the parties hold about
    :math:`\\lceil M/N \\rceil` samples each.
    """
    s = settings
    size = math.ceil(N_TRAIN / s.n_parties)
    batches = 1 if s.batch_size is None else math.ceil(size / s.batch_size)
    k = n_selected(s.n_parties, s.fraction)
    steps = s.rounds * s.local_epochs * batches
    samples = s.rounds * s.local_epochs * k * size
    return steps * (30e-6 + 2.5e-6 * k) + samples * 0.3e-6


def validate(settings: Settings) -> str | None:
    """A student-readable message for an invalid setting, or None."""
    s = settings
    if not isinstance(s, Settings):
        return f"settings must be a noniid.Settings, got {type(s).__name__}"
    if s.split not in SPLITS:
        return f"split must be one of {', '.join(map(repr, SPLITS))}, got {s.split!r}"
    if s.algorithm not in ALGORITHMS:
        return f"algorithm must be one of {', '.join(map(repr, ALGORITHMS))}, got {s.algorithm!r}"
    for name, (lo, hi) in LIMITS.items():
        value = getattr(s, name)
        whole = name in _INTEGERS
        if not _is_number(value) or (whole and not isinstance(value, (int, np.integer))):
            kind = "a whole number" if whole else "a number"
            return f"{name} must be {kind} between {lo:g} and {hi:g}, got {value!r}"
        if not (np.isfinite(value) and lo <= value <= hi):
            if name == "n_parties" and value > hi:
                return (f"n_parties must be at most {hi}, the number of training samples (every party needs "
                        f"at least one), got {value}")
            return f"{name} must be between {lo:g} and {hi:g}, got {value!r}"
    if isinstance(s.seed, (bool, np.bool_)) or not isinstance(s.seed, (int, np.integer)) or s.seed < 0:
        return f"seed must be a whole number >= 0, got {s.seed!r}"
    b = s.batch_size
    if b is not None and (isinstance(b, (bool, np.bool_)) or not isinstance(b, (int, np.integer))
                          or not 1 <= b <= N_TRAIN):
        return f"batch_size must be a whole number between 1 and {N_TRAIN}, or None for the full batch, got {b!r}"
    if s.split == "shards" and s.n_parties * s.shards_per_party > N_TRAIN:
        return (f"too many shards: N × shards per party = {s.n_parties} × {s.shards_per_party} = "
                f"{s.n_parties * s.shards_per_party} shards for {N_TRAIN} training samples (a shard needs at "
                f"least one); lower N or the shards per party")
    seconds = estimated_seconds(s)
    if seconds > MAX_SECONDS:
        return (f"too slow for a live widget: about {seconds:.0f} s of training; choose fewer rounds or local "
                f"epochs, a larger batch or fewer parties per round")
    return None


# --------------------------------------------------------------------------- simulate

def train_run(settings: Settings, parties, engine="vectorized"):
    """Train ``parties`` as ``settings`` asks: one call of :func:`fl_helpers.fedavg` or :func:`fl_helpers.scaffold`.

    FedAvg: ``fedavg(...)``; FedProx: ``fedavg(..., prox_mu=μ)``; SCAFFOLD:
    ``scaffold(...)``; FedAdam: ``fedavg(..., server_optimizer=optim.adam(η_s))``.
    All with ``eval_data`` the digits' test set. Returns the :class:`fl_helpers.History`.
    """
    s = settings
    _, _, Xt, yt = digits()
    common = dict(lr=s.lr, rounds=s.rounds, local_epochs=s.local_epochs, batch_size=s.batch_size,
                  fraction=s.fraction, seed=s.seed, engine=engine, eval_data=(Xt, yt))
    if s.algorithm == "scaffold":
        return scaffold(parties, **common)
    if s.algorithm == "fedprox":
        return fedavg(parties, prox_mu=s.prox_mu, **common)
    if s.algorithm == "fedadam":
        return fedavg(parties, server_optimizer=optim.adam(s.server_lr), **common)
    return fedavg(parties, **common)


def simulate(settings: Settings = Settings(), *, cache: FederationCache | None = CACHE) -> Result:
    """Split, train and evaluate for ``settings`` (deterministic: the same settings give the same numbers).

    Never raises for a bad setting: the result then has ``error`` set to a
    message for the class. ``cache`` reuses the parties and engine of an
    earlier call with the same data knobs (``cache=None`` builds them afresh).
    """
    error = validate(settings)
    if error:
        return Result(settings=settings, error=error)
    s = settings
    fed = build_federation(s) if cache is None else cache.get(s)
    history = train_run(s, fed.parties, fed.engine)
    return Result(settings=s, history=history, parties=fed.parties, label_counts=fed.label_counts,
                  party_accuracy=party_accuracies(fed.parties, history.theta),
                  test_accuracy=history.metrics.get("test_accuracy", np.zeros(0)))


# --------------------------------------------------------------------------- readouts

def describe(settings: Settings) -> str:
    """The knobs in one line, e.g. ``FedAvg · shards, 2 per party · N = 50 · E = 5 · ...``."""
    s = settings
    algo = ALGORITHMS.get(s.algorithm, str(s.algorithm))
    if s.algorithm == "fedprox":
        algo += f" (μ = {s.prox_mu:g})"
    elif s.algorithm == "fedadam":
        algo += f" (ηₛ = {s.server_lr:g})"
    data = {"iid": "IID split", "dirichlet": f"Dirichlet α = {s.alpha:g}",
            "shards": f"shards, {s.shards_per_party} per party"}.get(s.split, str(s.split))
    batch = "full batch" if s.batch_size is None else f"B = {s.batch_size}"
    return (f"{algo} · {data} · N = {s.n_parties} · E = {s.local_epochs} · C = {s.fraction:g} · {batch} · "
            f"η = {s.lr:g} · {s.rounds} rounds · seed {s.seed}")


# --------------------------------------------------------------------------- drawing

def new_axes(*, dpi: float = 80):
    """A figure (outside pyplot) with the four Axes: ``(accuracy, loss, labels, parties)``.

    Accuracy and loss on top; below, each party's accuracy (left) and the
    label mix (right, its key in the right margin). A fixed layout, so a redraw
    only updates artists (see :func:`fl_helpers.widgets.rendering.agg_figure`).
    """
    fig = agg_figure((11.5, 7.0), dpi=dpi, left=0.065, right=0.925, bottom=0.085, top=0.89,
                     wspace=0.2, hspace=0.42)
    (acc, loss), (parties, labels) = fig.subplots(2, 2)
    return acc, loss, labels, parties


def artists_of(ax):
    """The artists :func:`draw` made on ``ax`` (any of its four Axes), or None."""
    return ARTISTS.get(ax, "noniid")


def note_of(fig):
    """The figure-wide line of :func:`draw` (a ``Text``: the settings, or the error message), or None."""
    entry = ARTISTS.get(fig, "noniid note")
    return None if entry is None else entry["note"]


def _check_axes(axes):
    """``axes`` as a tuple of four Axes (a 2 x 2 array from ``plt.subplots(2, 2)`` is read row by row)."""
    from matplotlib.axes import Axes

    flat = tuple(np.asarray(axes, dtype=object).ravel()) if axes is not None and not isinstance(axes, Axes) else ()
    if len(flat) != 4 or not all(isinstance(ax, Axes) for ax in flat):
        raise TypeError(f"axes must be four matplotlib Axes (accuracy, loss, labels, parties), or None; "
                        f"got {type(axes).__name__} of {len(flat)} object(s)")
    return flat


def _figure_note(fig, fontsize):
    note = note_of(fig)
    if note is None:
        note = fig.text(0.5, 0.965, "", ha="center", va="center", fontsize=fontsize)
        ARTISTS.set(fig, "noniid note", {"note": note})
    return note


def _finite(values) -> np.ndarray:
    """The values up to the first one that is not finite."""
    values = np.asarray(values, dtype=np.float64)
    bad = ~np.isfinite(values)
    return values[:int(np.argmax(bad))] if bad.any() else values


def draw(result: Result, axes=None, *, fontsize: float = 12):
    """Draw ``result`` on four Axes: test accuracy, training loss, labels per party, accuracy per party.

    ``axes`` is ``(accuracy, loss, labels, parties)`` (:func:`new_axes` when
    None). Drawing again on the same Axes updates the artists in place; the
    label panel is redrawn only when the split changed. An invalid setting is
    a message across the figure; a diverged run shows its finite rounds and
    says where it stopped: nothing non-finite is ever plotted. Returns the Axes.
    """
    if not isinstance(result, Result):
        raise TypeError(f"result must be a noniid.Result (from noniid.simulate), got {type(result).__name__}")
    axes = new_axes() if axes is None else _check_axes(axes)
    fig = axes[0].figure
    note = _figure_note(fig, fontsize)
    if not result.ok:
        for ax in axes:
            ax.clear()
            ax.set_axis_off()
            ARTISTS.forget(ax, "noniid")
        note.set_text(_wrap(result.error, 80))
        note.set_color("#b00")
        note.set_position((0.5, 0.55))
        note.set_fontsize(fontsize + 3)
        return axes
    note.set_text(describe(result.settings))
    note.set_color("0.15")
    note.set_position((0.5, 0.965))
    note.set_fontsize(fontsize)
    ax_acc, ax_loss, ax_labels, ax_parties = axes
    _draw_curves(result, ax_acc, ax_loss, fontsize)
    _draw_labels(result, ax_labels, fontsize)
    _draw_parties(result, ax_parties, fontsize)
    return axes


def _wrap(text: str, width: int) -> str:
    import textwrap

    return "\n".join(textwrap.wrap(text, width))


def _panel(ax, fontsize, build):
    return panel(ax, fontsize, build, "noniid")


def _draw_curves(result, ax_acc, ax_loss, fontsize):
    def build_acc(ax):
        art = {"line": ax.plot([], [], color="#0072B2", lw=2)[0],
               "chance": ax.axhline(1 / N_CLASSES, color="0.5", lw=1, ls=":"),
               "note": ax.text(0.5, 0.5, "", transform=ax.transAxes, ha="center", va="center",
                               fontsize=fontsize + 1, color="#b00", visible=False,
                               bbox={"boxstyle": "round", "facecolor": "white", "edgecolor": "#b00"})}
        ax.set_ylim(0, 1)
        few_ticks(ax.xaxis, ax.yaxis)
        ax.set_xlabel("round", fontsize=fontsize)
        ax.set_ylabel("test accuracy", fontsize=fontsize)
        return art

    def build_loss(ax):
        art = {"line": ax.plot([], [], color="#D55E00", lw=2)[0]}
        ax.set_yscale("log")
        plain_log_axis(ax.yaxis)
        few_ticks(ax.xaxis)
        ax.set_xlabel("round", fontsize=fontsize)
        ax.set_ylabel("training loss (all parties)", fontsize=fontsize)
        return art

    h, s = result.history, result.settings
    acc = _finite(result.test_accuracy)
    art = _panel(ax_acc, fontsize, build_acc)
    art["line"].set_data(np.arange(1, len(acc) + 1), acc)
    ax_acc.set_xlim(0, max(s.rounds, 1))
    final = f"{acc[-1]:.1%} after round {len(acc)}" if len(acc) else "no round completed"
    ax_acc.set_title(f"test accuracy: {final}", fontsize=fontsize, y=1.0)
    diverged = bool(h.diverged)
    art["note"].set_text(f"diverged at round {h.diverged_at}:\nshown up to round {h.rounds}" if diverged else "")
    art["note"].set_visible(diverged)

    loss = _finite(h.losses)
    loss = loss[loss > 0]
    art = _panel(ax_loss, fontsize, build_loss)
    art["line"].set_data(np.arange(len(loss)), loss)
    ax_loss.set_xlim(0, max(s.rounds, 1))
    if len(loss):
        set_log_limits(ax_loss.yaxis, 0.8 * loss.min(), 1.25 * loss.max())
        ax_loss.set_title(f"training loss: {loss[-1]:.3g}", fontsize=fontsize, y=1.0)


def _draw_labels(result, ax, fontsize):
    """The label mix of every party: normalised bars up to :data:`BARS_UP_TO` parties, else a heat map."""
    counts = np.asarray(result.label_counts)
    n = counts.shape[0]
    mode = "bars" if n <= BARS_UP_TO else "heat"
    art = artists_of(ax)
    if art is not None and art["mode"] == mode and np.array_equal(art["counts"], counts):
        return                                           # same split: nothing to redraw
    totals = counts.sum(axis=1, keepdims=True)
    shares = counts / np.maximum(totals, 1)
    if art is not None and art["mode"] == "heat" and mode == "heat":
        art["image"].set_data(shares)
        art["image"].set_extent((-0.5, N_CLASSES - 0.5, n - 0.5, -0.5))
        ax.set_ylim(n - 0.5, -0.5)
        art["counts"] = counts.copy()
        art["stamp"] = next(_STAMPS)
        ax.set_title(_labels_title(n), fontsize=fontsize, y=1.0)
        return
    if art is not None and art.get("key") is not None:
        art["key"].remove()
    ARTISTS.forget(ax, "noniid")
    ax.clear()
    ax.set_axis_on()
    if mode == "bars":
        from ..plotting import plot_label_histogram

        plot_label_histogram(counts, ax, normalize=True)
        ax.get_legend().remove()
        add_legend(ax, loc="upper left", bbox_to_anchor=(1.01, 1.0), title="label", fontsize=fontsize - 3,
                   title_fontsize=fontsize - 3, handlelength=1.0, borderaxespad=0.0)
        ax.set_ylabel("party", fontsize=fontsize)
        ax.set_xlabel("share of the party's samples", fontsize=fontsize)
        ax.tick_params(labelsize=fontsize - 2)
        entry = {"mode": mode, "counts": counts.copy(), "key": None}
    else:
        image = ax.imshow(shares, aspect="auto", interpolation="nearest", cmap="Blues", vmin=0.0, vmax=1.0,
                          extent=(-0.5, N_CLASSES - 0.5, n - 0.5, -0.5))
        ax.set_xticks(range(N_CLASSES))
        few_ticks(ax.yaxis)
        ax.set_xlabel("label", fontsize=fontsize)
        ax.set_ylabel("party", fontsize=fontsize)
        ax.tick_params(labelsize=fontsize - 1)
        key = ax.inset_axes((1.03, 0.0, 0.035, 1.0))
        colorbar = ax.figure.colorbar(image, cax=key, ticks=[0, 1])
        colorbar.ax.tick_params(labelsize=fontsize - 2)
        colorbar.set_label("share", fontsize=fontsize - 2)
        entry = {"mode": mode, "counts": counts.copy(), "image": image, "key": key}
    ax.set_title(_labels_title(n), fontsize=fontsize, y=1.0)
    entry["stamp"] = next(_STAMPS)
    ARTISTS.set(ax, "noniid", entry)


#: Each new picture of a label panel gets a new number, so that its copied pixels are known to be stale.
_STAMPS = itertools.count()


def _labels_title(n: int) -> str:
    return f"label mix of each of the {n} parties" if n > 1 else "labels of the one party"


def sorted_bars(values: np.ndarray) -> np.ndarray:
    """Rectangles (N, 4, 2) of unit width, bar j of height ``values[j]`` (already sorted)."""
    x0 = np.arange(len(values), dtype=float)
    zero = np.zeros_like(x0)
    return np.stack([np.stack([x0, zero], 1), np.stack([x0, values], 1),
                     np.stack([x0 + 1, values], 1), np.stack([x0 + 1, zero], 1)], axis=1)


def _draw_parties(result, ax, fontsize):
    """Each party's accuracy on its own data at the final model, sorted; the mean and the worst party marked."""
    from matplotlib.collections import PolyCollection

    def build(ax):
        bars = PolyCollection([], facecolors="#56B4E9", edgecolors="white", linewidths=0.8)
        ax.add_collection(bars)
        art = {"bars": bars,
               "mean": ax.axhline(0, color="k", lw=2, ls="--", label="mean over parties"),
               "worst": ax.plot([], [], "v", color="#b00", ms=10, label="worst party")[0]}
        ax.set_ylim(0, 1.12)
        ax.set_yticks([0, 0.25, 0.5, 0.75, 1.0])
        ax.set_xlabel("parties, sorted by accuracy", fontsize=fontsize)
        ax.set_ylabel("accuracy on own data", fontsize=fontsize)
        add_legend(ax, loc="lower right", fontsize=fontsize - 2)
        return art

    art = _panel(ax, fontsize, build)
    acc = np.asarray(result.party_accuracy, dtype=np.float64)
    order = np.argsort(acc, kind="stable")
    values = acc[order]
    n = len(values)
    art["bars"].set_verts(sorted_bars(values))
    colors = np.tile(np.array([0x56, 0xB4, 0xE9, 0xFF]) / 255.0, (n, 1))
    colors[0] = (0.69, 0.0, 0.0, 1.0)                   # the worst party in red
    art["bars"].set_facecolors(colors)
    art["bars"].set_linewidths(0.8 if n <= 60 else 0.0)
    art["mean"].set_ydata([acc.mean()] * 2)
    art["worst"].set_data([0.5], [values[0] + 0.05])
    ax.set_xlim(0, max(n, 1))
    ax.set_title(f"each party's accuracy: mean {acc.mean():.0%}, worst {values[0]:.0%} "
                 f"({_party_name(int(order[0]))})",
                 fontsize=fontsize, y=1.0)


def render(result: Result, axes=None, *, fontsize: float = 12) -> bytes:
    """:func:`draw`, then the PNG bytes of the figure (:func:`render_axes`)."""
    axes = draw(result, axes, fontsize=fontsize)
    return render_axes(axes)


def render_axes(axes) -> bytes:
    """PNG bytes of the figure of ``axes`` (drawn by :func:`draw`), reusing the label panel's pixels.

    The label panel changes only with the split, yet its heat map, ticks and
    key are a fifth of a redraw. After a full render its pixels are copied
    (the panel's tight box, with its key or legend); while its picture stays
    the same (:func:`draw` stamps every new one), the next renders hide the
    panel and paste the copy in its place with ``Figure.figimage``: the same
    pixels as a full render (tested), in less time. Otherwise this is
    :func:`fl_helpers.widgets.rendering.render_png`.
    """
    axes = _check_axes(axes)
    ax = axes[2]
    fig = ax.figure
    panel, cached = artists_of(ax), ARTISTS.get(ax, "noniid pixels")
    size = fig.canvas.get_width_height()
    if panel is not None and cached is not None and (cached["stamp"], cached["size"]) == (panel["stamp"], size):
        ax.set_visible(False)
        cached["image"].set_visible(True)
        try:
            return render_png(fig)
        finally:
            ax.set_visible(True)
            cached["image"].set_visible(False)
    if cached is not None:
        cached["image"].remove()
        ARTISTS.forget(ax, "noniid pixels")
    png = render_png(fig)
    if panel is not None:
        _copy_panel(ax, panel["stamp"], size)
    return png


def _copy_panel(ax, stamp, size) -> None:
    """Copy the pixels of ``ax`` (just drawn) into a hidden figure image at the same place."""
    from matplotlib.transforms import Bbox

    fig = ax.figure
    renderer = fig.canvas.get_renderer()
    boxes = [ax.get_tightbbox(renderer)] + [child.get_tightbbox(renderer) for child in ax.child_axes]
    if ax.get_legend() is not None:
        boxes.append(ax.get_legend().get_window_extent(renderer))
    (x0, y0), (x1, y1) = Bbox.union(boxes).get_points()
    width, height = size
    x0, y0 = max(int(np.floor(x0)) - 2, 0), max(int(np.floor(y0)) - 2, 0)
    x1, y1 = min(int(np.ceil(x1)) + 2, width), min(int(np.ceil(y1)) + 2, height)
    pixels = np.asarray(fig.canvas.buffer_rgba())[height - y1:height - y0, x0:x1].copy()
    image = fig.figimage(pixels, xo=x0, yo=y0, origin="upper")
    image.set_visible(False)
    ARTISTS.set(ax, "noniid pixels", {"stamp": stamp, "size": size, "image": image})


# --------------------------------------------------------------------------- the widget

_LOG_KNOBS = ("alpha", "lr", "prox_mu", "server_lr")


def knob_value(name: str, value):
    """A widget's value as :func:`simulate` gets it.

    A log slider sends ``10**x`` (0.1 may arrive as 0.10000000000000002):
    rounded to the three significant digits its readout shows and kept in
    :data:`LIMITS`; the fraction to its step 0.05; the batch slider's 0 is the
    full batch (None).
    """
    if name in _LOG_KNOBS:
        lo, hi = LIMITS[name]
        return min(max(float(f"{value:.3g}"), lo), hi)
    if name == "fraction":
        return round(float(value), 2)
    if name == "batch_size":
        return None if value == 0 else int(value)
    return value


def _batch_sizes(start) -> list:
    """The batch slider's stops: :data:`BATCH_SIZES`, plus the start value if it is another."""
    sizes = sorted({b for b in BATCH_SIZES if b is not None} | ({start} if start is not None else set()))
    return sizes + [None]


def explorer(settings: Settings = Settings()):
    """The widget: a knob for every field of :class:`Settings`, redrawn when a slider is released.

    Every redraw reads *all* knobs, simulates, updates the figure in place and
    sends it as PNG bytes to an ``ipywidgets.Image`` (CSS class ``fl-plot``);
    a line of text above it says the outcome (or what is wrong with the
    settings). Knobs that the chosen split or algorithm does not use are
    greyed out. Returns an ``ipywidgets.VBox`` (CSS class ``fl-noniid``)
    whose saved output also carries a PNG of its state for readers without a
    kernel; display it as the last line of a cell.
    """
    if not isinstance(settings, Settings):
        raise TypeError(f"settings must be a noniid.Settings, got {type(settings).__name__}")
    import ipywidgets as w

    s = settings
    style = {"description_width": "125px"}
    slider = {"continuous_update": False, "style": style, "layout": w.Layout(width="400px")}
    toggle = {"style": {**style, "button_width": "90px"}}

    def log_slider(name, lo, hi, description):
        return w.FloatLogSlider(value=getattr(s, name), base=10, min=np.log10(lo), max=np.log10(hi), step=0.05,
                                readout_format=".3g", description=description, **slider)

    knobs = {
        "split": w.ToggleButtons(options=[(label, key) for key, label in SPLITS.items()], value=s.split,
                                 description="split", **toggle),
        "alpha": log_slider("alpha", *LIMITS["alpha"], "Dirichlet α"),
        "shards_per_party": w.IntSlider(value=s.shards_per_party, min=1, max=LIMITS["shards_per_party"][1],
                                        description="shards per party", **slider),
        "n_parties": w.IntSlider(value=s.n_parties, min=min(10, s.n_parties), max=max(200, s.n_parties),
                                 description="parties N", **slider),
        "local_epochs": w.IntSlider(value=s.local_epochs, min=1, max=LIMITS["local_epochs"][1],
                                    description="local epochs E", **slider),
        "fraction": w.FloatSlider(value=s.fraction, min=0.05, max=1.0, step=0.05, description="fraction C",
                                  **slider),
        "batch_size": w.SelectionSlider(options=[("full" if b is None else str(b), 0 if b is None else b)
                                                 for b in _batch_sizes(s.batch_size)],
                                        value=0 if s.batch_size is None else s.batch_size,
                                        description="minibatch B", **slider),
        "algorithm": w.ToggleButtons(options=[(label, key) for key, label in ALGORITHMS.items()],
                                     value=s.algorithm, description="algorithm", **toggle),
        "prox_mu": log_slider("prox_mu", 1e-3, LIMITS["prox_mu"][1], "FedProx μ"),
        "server_lr": log_slider("server_lr", *LIMITS["server_lr"], "FedAdam ηₛ"),
        "rounds": w.IntSlider(value=s.rounds, min=1, max=LIMITS["rounds"][1], description="rounds", **slider),
        "lr": log_slider("lr", *LIMITS["lr"], "learning rate η"),
        "seed": w.IntSlider(value=s.seed, min=0, max=max(20, s.seed), description="seed", **slider),
    }
    image = w.Image(format="png", layout=w.Layout(width="100%", max_width="1150px", height="auto"))
    image.add_class("fl-plot")
    status = w.HTML()
    axes = new_axes()

    def redraw(_=None):
        current = s.replace(**{k: knob_value(k, v.value) for k, v in knobs.items()})
        knobs["alpha"].disabled = current.split != "dirichlet"
        knobs["shards_per_party"].disabled = current.split != "shards"
        knobs["prox_mu"].disabled = current.algorithm != "fedprox"
        knobs["server_lr"].disabled = current.algorithm != "fedadam"
        try:
            result = simulate(current)
            draw(result, axes)
        except Exception as exc:  # shown to the class; the notebook keeps running
            result = Result(settings=current, error=f"this run failed: {type(exc).__name__}: {exc}")
            draw(result, axes)
        bad = not result.ok or result.history.diverged
        from html import escape

        status.value = (f"<span style='color:{'#b00' if bad else '#333'}; font-size:1.1em'>"
                        f"{escape(result.message)}</span>")
        image.value = render_axes(axes)

    for knob in knobs.values():
        knob.observe(redraw, names="value")
    redraw()
    names = list(knobs)
    left = w.VBox([knobs[k] for k in names[:7]])
    right = w.VBox([knobs[k] for k in names[7:]])
    box = live_box([w.HBox([left, right]), status, image], picture=image,
                   note="Interactive non-IID explorer: run this notebook in JupyterLab to move the sliders; "
                        "the picture shows the settings it was saved with.")
    box.add_class("fl-noniid")
    return box
