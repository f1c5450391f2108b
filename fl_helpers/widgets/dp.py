r"""The differential-privacy widget: what a privacy guarantee :math:`\varepsilon` costs in accuracy, live.

Softmax regression on the handwritten digits (1,352 training images split
IID over :math:`N` parties, tested on the 445 held-out ones) is trained with
DP-FedAvg (McMahan, Ramage, Talwar and Zhang 2018;
:func:`fl_helpers.privacy.dp_fedavg`): every round each party takes part with
probability :math:`q` (Poisson sampling), clips its update to norm :math:`S`,
and the server adds :math:`\mathcal N(0, z^2S^2 I)` to the sum and divides by
the expected number of participants :math:`qN`. So the noise on the average
update has standard deviation :math:`zS/(qN)` per coordinate: many parties a
round drown the noise, few do not.

The guarantee is user-level :math:`(\varepsilon, \delta)`-DP, accounted with
Rényi DP by Google's ``dp-accounting`` (``History.metrics["epsilon"]``); it
depends only on :math:`z`, :math:`q`, the rounds and :math:`\delta`, never on
:math:`S` or :math:`N`. :math:`z = 0` means no noise: no guarantee at all
(:math:`\varepsilon = \infty`), though the updates are still clipped.

The reference "without privacy" is plain FedAvg with the same Poisson sampling
and uniform weights, neither clipped nor noised:
``fl.train(parties, lr, rounds, fraction=q, sampling="poisson", weighting="uniform", ...)``.
With the same seed the same parties take part in each round of both runs, so
the gap between the curves is the clipping and the noise alone.

Thin, like the other widgets: :func:`simulate` is a pure function of
:class:`Settings`, :func:`draw` a pure function of its :class:`Result`, and
:func:`widget` binds sliders to them. The parties are cached by
:math:`(N, \text{seed})` and the reference run by the knobs it depends on
(:func:`reference_key`), so moving :math:`z` or :math:`S` reruns only the DP run.
"""

from __future__ import annotations

import math
import numbers
import textwrap
from dataclasses import dataclass, replace
from functools import lru_cache
from typing import NamedTuple

import numpy as np

from .. import models
from ..data import load_dataset, split
from ..engines import make_engine
from ..server import train
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

N_CLASSES = 10
#: Training samples in the digits' fixed train split: with N = 1352 every image is its own party.
N_TRAIN = 1352

#: Ranges (inclusive) that :func:`simulate` accepts; the sliders show these or less.
LIMITS = {
    "noise_multiplier": (0.0, 20.0),
    "clip_norm": (0.05, 20.0),
    "sample_rate": (0.01, 1.0),
    "rounds": (1, 300),
    "n_parties": (10, N_TRAIN),
    "lr": (1e-3, 10.0),
    "delta": (1e-10, 1e-2),
}
_INTEGERS = ("rounds", "n_parties")

#: A run estimated to take longer than this (seconds, :func:`estimated_seconds`) is refused with a message.
MAX_SECONDS = 5.0

#: Horizontal guides on the ε panel: levels often quoted as "strong" and "weak" privacy (conventions, not laws).
GUIDES = {1.0: "ε = 1 (often called strong)", 8.0: "ε = 8 (often called weak)"}


@dataclass(frozen=True)
class Settings:
    """All knobs of one run: noise multiplier z (0 = no noise), clip norm S, sampling rate q, rounds, N, η, δ, seed."""

    noise_multiplier: float = 1.0
    clip_norm: float = 2.0
    sample_rate: float = 0.1
    rounds: int = 100
    n_parties: int = 1000
    lr: float = 1.0
    delta: float = 1e-5
    seed: int = 0

    def replace(self, **changes) -> "Settings":
        return replace(self, **changes)


class Federation(NamedTuple):
    """What depends only on (N, seed): the parties and their vectorized engine."""

    parties: list
    engine: object


@dataclass
class Result:
    """Everything :func:`draw` needs; ``error`` is set instead (and nothing else) when the settings are invalid.

    ``history`` is the DP-FedAvg run, ``reference`` the same federation
    without clipping or noise (see the module docstring), both
    :class:`fl_helpers.History` with ``metrics["test_accuracy"]``.
    """

    settings: Settings
    history: object = None
    reference: object = None
    parties: list | None = None
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None

    @property
    def test_accuracy(self) -> np.ndarray:
        return np.asarray(self.history.metrics.get("test_accuracy", ()), dtype=np.float64)

    @property
    def reference_accuracy(self) -> np.ndarray:
        return np.asarray(self.reference.metrics.get("test_accuracy", ()), dtype=np.float64)

    @property
    def epsilon(self) -> np.ndarray:
        """ε after each round (empty when z = 0: no noise, no guarantee)."""
        return np.asarray(self.history.metrics.get("epsilon", ()), dtype=np.float64)

    @property
    def final_epsilon(self) -> float:
        """ε after the last round run (``inf`` when z = 0)."""
        eps = self.epsilon
        return float(eps[-1]) if len(eps) else math.inf

    @property
    def noise_std(self) -> float:
        """Standard deviation of the noise on each coordinate of the average update: :math:`zS/(qN)`."""
        s = self.settings
        return s.noise_multiplier * s.clip_norm / (s.sample_rate * s.n_parties)

    @property
    def message(self) -> str:
        """The status line: ε, the accuracy with and without privacy, the noise on the average update."""
        if self.error:
            return self.error
        s, h = self.settings, self.history
        acc, ref = self.test_accuracy, self.reference_accuracy
        start = (f"the DP run diverged at round {h.diverged_at}, shown up to round {h.rounds}; "
                 if h.diverged else "")
        guarantee = (f"ε = {format_epsilon(self.final_epsilon)} after {h.rounds} rounds (δ = {s.delta:g})"
                     if s.noise_multiplier > 0 else "z = 0: no noise, no guarantee (ε = ∞)")
        return (f"{start}{guarantee} · test accuracy {percent(acc)} vs {percent(ref)} without privacy · "
                f"noise std on the average update z·S/(qN) = {self.noise_std:.3g}")


def percent(accuracy) -> str:
    """The last accuracy of a series as ``86.1 %`` (``-`` when no round completed)."""
    return f"{100 * accuracy[-1]:.1f} %" if len(accuracy) else "-"


def format_epsilon(eps: float) -> str:
    """``1.08``, ``24.5``, ``1,651`` or ``∞``."""
    if not math.isfinite(eps):
        return "∞"
    return f"{eps:,.0f}" if eps >= 1000 else f"{eps:.3g}"


# --------------------------------------------------------------------------- data, parties, caches

@lru_cache(maxsize=1)
def digits() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """``(X_train, y_train, X_test, y_test)`` of the digits' fixed split, read once (read-only arrays)."""
    X, y, _ = load_dataset("digits", subset="train")
    Xt, yt, _ = load_dataset("digits", subset="test")
    for arr in (X, y, Xt, yt):
        arr.setflags(write=False)
    return X, y, Xt, yt


def make_parties(settings: Settings) -> Federation:
    """The IID split of the digits' training set over ``n_parties`` (softmax model), and its engine."""
    X, y, _, _ = digits()
    parties = split(X, y, settings.n_parties, scheme="iid", seed=settings.seed,
                    model=models.softmax(n_classes=N_CLASSES))
    return Federation(parties, make_engine("vectorized", parties))


def reference_key(settings: Settings) -> tuple:
    """What the run without privacy depends on: N, seed, q, rounds, η (not z, S or δ)."""
    s = settings
    return (int(s.n_parties), int(s.seed), float(s.sample_rate), int(s.rounds), float(s.lr))


def reference_run(settings: Settings, federation: Federation):
    """Plain FedAvg with the DP run's Poisson sampling and uniform weights: no clipping, no noise."""
    s = settings
    _, _, Xt, yt = digits()
    return train(federation.parties, lr=s.lr, rounds=s.rounds, fraction=s.sample_rate, sampling="poisson",
                 weighting="uniform", seed=s.seed, engine=federation.engine, eval_data=(Xt, yt))


def dp_run(settings: Settings, federation: Federation):
    """:func:`fl_helpers.privacy.dp_fedavg` with the settings' knobs (imports dp-accounting when called)."""
    from ..privacy import dp_fedavg

    s = settings
    _, _, Xt, yt = digits()
    return dp_fedavg(federation.parties, lr=s.lr, rounds=s.rounds, clip_norm=s.clip_norm,
                     noise_multiplier=s.noise_multiplier, sample_rate=s.sample_rate, delta=s.delta, seed=s.seed,
                     engine=federation.engine, eval_data=(Xt, yt))


class PartiesCache(BoundedCache):
    """The parties and their engine, built once per (N, seed)."""

    def key(self, settings):
        return (int(settings.n_parties), int(settings.seed))

    def build(self, settings):
        return make_parties(settings)


class ReferenceCache(BoundedCache):
    """The run without privacy, built once per :func:`reference_key`, on the parties of ``parties``."""

    def __init__(self, parties: PartiesCache, maxsize: int = 16):
        super().__init__(maxsize)
        self.parties = parties

    def key(self, settings):
        return reference_key(settings)

    def build(self, settings):
        return reference_run(settings, self.parties.get(settings))


class Cache:
    """The widget's two caches: ``parties`` (by N and seed) and ``references`` (the runs without privacy)."""

    def __init__(self, maxsize: int = 8):
        self.parties = PartiesCache(maxsize)
        self.references = ReferenceCache(self.parties, 2 * maxsize)


#: The cache the widgets share (one kernel, one class demo).
CACHE = Cache()


# --------------------------------------------------------------------------- checks and simulate

def estimated_seconds(settings: Settings) -> float:
    """A rough time (s) of both runs: about 2.5 ms a round plus 28 µs per expected participant (qN) per round."""
    s = settings
    return s.rounds * (2.5e-3 + 28e-6 * s.sample_rate * s.n_parties)


def check(settings: Settings) -> Settings:
    """Raise ``TypeError`` / ``ValueError`` naming the knob, its range and its value, unless ``settings`` is valid."""
    s = settings
    if not isinstance(s, Settings):
        raise TypeError(f"settings must be a dp.Settings, got {type(s).__name__}")
    for name, (lo, hi) in LIMITS.items():
        value = getattr(s, name)
        whole = name in _INTEGERS
        wrong = isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real)
        if wrong or (whole and not isinstance(value, (int, np.integer))):
            raise TypeError(f"{name} must be {'a whole number' if whole else 'a number'} between {lo:g} and "
                            f"{hi:g}, got {value!r}")
        if not (lo <= value <= hi and math.isfinite(float(value) if not whole else 0.0)):
            raise ValueError(f"{name} must be between {lo:g} and {hi:g}, got {value!r}")
    if isinstance(s.seed, (bool, np.bool_)) or not isinstance(s.seed, (int, np.integer)):
        raise TypeError(f"seed must be a whole number >= 0, got {s.seed!r}")
    if s.seed < 0:
        raise ValueError(f"seed must be a whole number >= 0, got {s.seed!r}")
    seconds = estimated_seconds(s)
    if seconds > MAX_SECONDS:
        raise ValueError(f"too slow for a live widget: about {seconds:.0f} s of training "
                         f"({s.rounds} rounds × {s.sample_rate * s.n_parties:.0f} parties a round); "
                         f"choose fewer rounds, a lower sampling rate q or fewer parties N")
    return s


def simulate(settings: Settings = Settings(), *, cache: Cache | None = CACHE) -> Result:
    """The DP run and the reference for ``settings`` (deterministic: the same settings give the same numbers).

    Raises ``TypeError`` / ``ValueError`` for bad settings (:func:`check`);
    :func:`attempt` returns them as a :class:`Result` with ``error`` instead.
    ``cache=None`` builds the parties and the reference afresh (same numbers).
    """
    s = check(settings)
    if cache is None:
        fed = make_parties(s)
        reference = reference_run(s, fed)
    else:
        fed, reference = cache.parties.get(s), cache.references.get(s)
    return Result(settings=s, history=dp_run(s, fed), reference=reference, parties=fed.parties)


def attempt(settings: Settings, *, cache: Cache | None = CACHE) -> Result:
    """:func:`simulate`, but a bad setting gives a :class:`Result` whose ``error`` says what is wrong."""
    try:
        check(settings)
    except (TypeError, ValueError) as exc:
        return Result(settings=settings, error=str(exc))
    return simulate(settings, cache=cache)


def describe(settings: Settings) -> str:
    """The knobs in one line, e.g. ``z = 1 · S = 2 · q = 0.1 · N = 1000 · 100 rounds · η = 1 · seed 0``."""
    s = settings
    return (f"DP-FedAvg: z = {s.noise_multiplier:g} · S = {s.clip_norm:g} · q = {s.sample_rate:g} · "
            f"N = {s.n_parties} (about {s.sample_rate * s.n_parties:.3g} a round) · {s.rounds} rounds · "
            f"η = {s.lr:g} · seed {s.seed}")


# --------------------------------------------------------------------------- drawing

def new_axes(*, dpi: float = 80):
    """A figure (outside pyplot) with its two Axes: ``(accuracy, epsilon)``."""
    fig = agg_figure((11.5, 4.6), dpi=dpi, left=0.06, right=0.985, bottom=0.19, top=0.84, wspace=0.2)
    return tuple(fig.subplots(1, 2))


def _texts(fig, fontsize):
    entry = ARTISTS.get(fig, "dp texts")
    if entry is None:
        entry = ARTISTS.set(fig, "dp texts", {
            "note": fig.text(0.5, 0.95, "", ha="center", va="center", fontsize=fontsize),
            "caption": fig.text(0.985, 0.02, "Guide lines: conventions often quoted for strong and weak privacy, "
                                             "not laws.", ha="right", va="bottom", fontsize=fontsize - 2,
                                color="0.35")})
    return entry


def draw(result: Result, axes=None, *, fontsize: float = 12):
    """Draw ``result`` on ``(accuracy, epsilon)`` Axes (:func:`new_axes` when None); returns the Axes.

    Left: test accuracy per round, DP run and the run without privacy. Right:
    ε per round on a log axis, with guides at ε = 1 and ε = 8 (conventions,
    not laws); for z = 0 no curve, and a note that there is no guarantee.
    An invalid setting is a message across the figure. Redraws on the same
    Axes update the artists in place.
    """
    if not isinstance(result, Result):
        raise TypeError(f"result must be a dp.Result (from dp.simulate), got {type(result).__name__}")
    from matplotlib.axes import Axes

    axes = new_axes() if axes is None else tuple(np.asarray(axes, dtype=object).ravel())
    if len(axes) != 2 or not all(isinstance(ax, Axes) for ax in axes):
        raise TypeError(f"axes must be two matplotlib Axes (accuracy, epsilon), or None; got {len(axes)} object(s)")
    ax_acc, ax_eps = axes
    texts = _texts(ax_acc.figure, fontsize)
    if not result.ok:
        for ax in axes:
            ax.clear()
            ax.set_axis_off()
            ARTISTS.forget(ax, "dp")
        texts["note"].set_text("\n".join(textwrap.wrap(result.error, 90)))
        texts["note"].set(color="#b00", position=(0.5, 0.55), fontsize=fontsize + 2)
        texts["caption"].set_visible(False)
        return axes
    s = result.settings
    texts["note"].set_text(describe(s))
    texts["note"].set(color="0.15", position=(0.5, 0.95), fontsize=fontsize)
    texts["caption"].set_visible(True)

    def build_acc(ax):
        art = {"dp": ax.plot([], [], color="#0072B2", lw=2, label="DP-FedAvg (clipped, noised)")[0],
               "ref": ax.plot([], [], color="0.45", lw=1.5, ls="--", label="without privacy")[0]}
        ax.axhline(1 / N_CLASSES, color="0.6", lw=1, ls=":")
        ax.set_ylim(0, 1)
        few_ticks(ax.xaxis, ax.yaxis)
        ax.set_xlabel("round", fontsize=fontsize)
        ax.set_ylabel("test accuracy", fontsize=fontsize)
        add_legend(ax, loc="lower right", fontsize=fontsize - 2)
        return art

    acc, ref = _finite(result.test_accuracy), _finite(result.reference_accuracy)
    art = panel(ax_acc, fontsize, build_acc, "dp")
    art["dp"].set_data(np.arange(1, len(acc) + 1), acc)
    art["ref"].set_data(np.arange(1, len(ref) + 1), ref)
    ax_acc.set_xlim(0, max(s.rounds, 1))
    ax_acc.set_title(f"test accuracy: {percent(acc)} with DP, {percent(ref)} without", fontsize=fontsize)

    def build_eps(ax):
        art = {"line": ax.plot([], [], color="#D55E00", lw=2, label="ε after each round")[0],
               "note": ax.text(0.5, 0.5, "z = 0: no noise,\nno guarantee (ε = ∞)", transform=ax.transAxes,
                               ha="center", va="center", fontsize=fontsize + 1, color="#b00", visible=False)}
        for level, label in GUIDES.items():
            ax.axhline(level, color="0.35", lw=1, ls="--" if level == 1 else ":", label=label)
        ax.set_yscale("log")
        plain_log_axis(ax.yaxis)
        few_ticks(ax.xaxis)
        ax.set_xlabel("round", fontsize=fontsize)
        add_legend(ax, loc="upper left", fontsize=fontsize - 2)
        return art

    eps = _finite(result.epsilon)
    art = panel(ax_eps, fontsize, build_eps, "dp")
    ax_eps.set_ylabel(f"ε  (δ = {s.delta:g})", fontsize=fontsize)
    art["line"].set_data(np.arange(1, len(eps) + 1), eps)
    art["line"].set_visible(len(eps) > 0)
    art["note"].set_visible(s.noise_multiplier == 0)
    ax_eps.set_xlim(0, max(s.rounds, 1))
    lo, hi = (min(0.5, 0.8 * eps.min()), max(100.0, 1.25 * eps.max())) if len(eps) else (0.1, 100.0)
    set_log_limits(ax_eps.yaxis, lo, hi)
    ax_eps.set_title(f"privacy: ε = {format_epsilon(result.final_epsilon)} after {result.history.rounds} rounds"
                     if s.noise_multiplier > 0 else "privacy: none (z = 0)", fontsize=fontsize)
    return axes


def _finite(values) -> np.ndarray:
    """The values up to the first one that is not finite."""
    values = np.asarray(values, dtype=np.float64)
    bad = ~np.isfinite(values)
    return values[:int(np.argmax(bad))] if bad.any() else values


def artists_of(ax):
    """The artists :func:`draw` made on ``ax``, or None."""
    return ARTISTS.get(ax, "dp")


def render(result: Result, axes=None, *, fontsize: float = 12) -> bytes:
    """:func:`draw`, then the PNG bytes of the figure."""
    axes = draw(result, axes, fontsize=fontsize)
    return render_png(axes[0].figure)


# --------------------------------------------------------------------------- the widget

_LOG_KNOBS = ("clip_norm", "lr")


def knob_value(name: str, value):
    """A widget's value as :func:`simulate` gets it: log sliders to the 3 digits shown, q and z to 2 decimals."""
    if name in _LOG_KNOBS:
        lo, hi = LIMITS[name]
        return min(max(float(f"{value:.3g}"), lo), hi)
    if name in ("sample_rate", "noise_multiplier"):
        return round(float(value), 2)
    return int(value) if name in ("rounds", "n_parties", "seed") else value


def widget(settings: Settings = Settings()):
    """The widget: a slider for every knob of :class:`Settings` but δ (fixed, shown), redrawn on release.

    A line of text says ε, the accuracy with and without privacy and the
    noise on the average update (or what is wrong with the settings); below,
    the figure of :func:`draw` as PNG bytes in an ``ipywidgets.Image``.
    Returns an ``ipywidgets.VBox`` (CSS class ``fl-dp``) whose saved output
    also carries a PNG of its state; display it as the last line of a cell.
    """
    if not isinstance(settings, Settings):
        raise TypeError(f"settings must be a dp.Settings, got {type(settings).__name__}")
    from html import escape

    import ipywidgets as w

    s = settings
    slider = {"continuous_update": False, "style": {"description_width": "140px"}, "layout": w.Layout(width="420px")}

    def log_slider(name, description):
        lo, hi = LIMITS[name]
        return w.FloatLogSlider(value=getattr(s, name), base=10, min=np.log10(lo), max=np.log10(hi), step=0.05,
                                readout_format=".3g", description=description, **slider)

    knobs = {
        "noise_multiplier": w.FloatSlider(value=s.noise_multiplier, min=0.0, max=20.0, step=0.1,
                                          description="noise multiplier z", **slider),
        "clip_norm": log_slider("clip_norm", "clip norm S"),
        "sample_rate": w.FloatSlider(value=s.sample_rate, min=0.01, max=1.0, step=0.01,
                                     description="sampling rate q", **slider),
        "rounds": w.IntSlider(value=s.rounds, min=1, max=300, description="rounds", **slider),
        "n_parties": w.IntSlider(value=s.n_parties, min=10, max=N_TRAIN, description="parties N", **slider),
        "lr": log_slider("lr", "learning rate η"),
        "seed": w.IntSlider(value=s.seed, min=0, max=max(20, s.seed), description="seed", **slider),
    }
    image = w.Image(format="png", layout=w.Layout(width="100%", max_width="1150px", height="auto"))
    image.add_class("fl-plot")
    status = w.HTML()
    axes = new_axes()

    def redraw(_=None):
        current = s.replace(**{k: knob_value(k, v.value) for k, v in knobs.items()})
        try:
            result = attempt(current)
            draw(result, axes)
        except Exception as exc:  # shown to the class; the notebook keeps running
            result = Result(settings=current, error=f"this run failed: {type(exc).__name__}: {exc}")
            draw(result, axes)
        bad = not result.ok or result.history.diverged
        status.value = (f"<span style='color:{'#b00' if bad else '#333'}; font-size:1.1em'>"
                        f"{escape(result.message)}</span>")
        image.value = render_png(axes[0].figure)

    for knob in knobs.values():
        knob.observe(redraw, names="value")
    redraw()
    names = list(knobs)
    box = live_box([w.HBox([w.VBox([knobs[k] for k in names[:4]]), w.VBox([knobs[k] for k in names[4:]])]),
                    status, image], picture=image,
                   note="Interactive differential-privacy widget: run this notebook in JupyterLab to move the "
                        "sliders; the picture shows the settings it was saved with.")
    box.add_class("fl-dp")
    return box


#: The name the other widgets use for their entry point.
explorer = widget
