r"""The instructor's live demo: every knob of a federated run on one screen.

A thin layer over :mod:`fl_helpers.widgets.explorer` (notebook ``05-live-demo``, also
served as a code-free app with ``voila notebooks/05-live-demo.ipynb``),
drawn with the widgets' shared :mod:`fl_helpers.widgets.rendering`:

- :func:`simulate` is :func:`fl_helpers.widgets.explorer.simulate` plus a check that
  the chosen engine is installed;
- :func:`draw` is a pure function of the result: the explorer's two panels
  (global loss vs rounds with centralized gradient descent, the parameter path
  on the loss contours) and two more, the loss of every party at the end (bar
  width = party size :math:`m_i`, so the bars' area is
  :math:`\sum_i m_i L_i(\theta) = M\,L(\theta)`) and the loss against the
  bytes communicated, :math:`8\,k\,(2p + 1)` per round for :math:`k`
  selected parties and :math:`p` parameters (model down; update and weight up;
  8 bytes per float64 number, 4 with the TensorFlow engine's float32);
- :func:`readouts` says the key numbers in words;
- :class:`Dashboard` binds sliders, :data:`PRESETS` and a reset button to
  them. A preset sets several knobs and redraws **once**; every redraw reads
  the current value of all knobs, so the picture always matches the sliders.

Everything but the widget is tested without a browser (``tests/test_dashboard.py``);
``tests/test_browser.py`` drives the widget in JupyterLab and Voila.
"""

from __future__ import annotations

import importlib.util
import sys
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np

from . import explorer
from .explorer import LIMITS, Result, Settings
from .rendering import (
    ARTISTS,
    Artists,
    add_legend,
    agg_figure,
    few_ticks,
    panel,
    picture_bundle,
    plain_log_axis,
    power_of_ten,
    render_png,
    set_log_limits,
)

#: Font size of the figure (points at 80 dpi): readable on a projector.
FONTSIZE = 14

#: The start (and "reset") state: ten equal parties, each holding a range of x.
DEFAULT = Settings(n_parties=10, lr=0.1, rounds=100, local_epochs=1, skew=0.0,
                   weighting="samples", fraction=1.0, engine="vectorized", seed=0, iid=False)

#: Caption shown when no preset is active.
HINT = ("Move any slider, or press a preset: it sets several knobs at once "
        "and says what to look at.")


@dataclass(frozen=True)
class Preset:
    """A classroom moment: a label for the button, the settings, and what to look at."""

    key: str
    label: str
    settings: Settings
    caption: str


PRESETS: tuple[Preset, ...] = (
    Preset("iid", "weighted FedSGD: exact on any split",
           DEFAULT.replace(iid=True),
           "Sample-weighted mean, every party, one local step: the blue federated curve lies on the "
           "dashed centralized one and the path ends on the green star θ*, here on shuffled (IID) data "
           "and just as exactly on the non-IID start state, since the split does not matter for FedSGD."),
    Preset("unweighted", "unequal parties + unweighted mean = wrong answer",
           DEFAULT.replace(skew=2.0, weighting="uniform", rounds=200),
           "Parties of very different sizes, each with its own x-range, averaged with 1/N: the loss "
           "first dips (the path passes near θ*), then rises again as the run heads for the red X θ°, "
           "not θ*, where it converges to a loss above the minimum."),
    Preset("diverge", "learning rate too high (diverges)",
           DEFAULT.replace(lr=1.0, iid=True),
           "η = 1 is above the stable limit 2/λmax ≈ 0.74: every round overshoots further, the loss "
           "explodes, and the run stops with a message instead of a plot full of NaN."),
    Preset("drift", "many local steps (fewer rounds, drift)",
           DEFAULT.replace(local_epochs=20, rounds=30, lr=0.01),
           "20 local epochs per round: in 10 rounds the loss gets where one-step FedSGD (dashed) needs "
           "about 100, but each party walks toward its own optimum, so the path stops short of θ* "
           "and the curve levels off above the minimum (client drift)."),
)

_PRESETS_BY_KEY = {p.key: p for p in PRESETS}

#: Labels of the two-valued knobs, as the buttons show them.
WEIGHT_LABELS = {"samples": "mᵢ / M", "uniform": "1 / N"}
SPLIT_LABELS = {False: "non-IID", True: "IID"}


def preset(key: str) -> Preset:
    """The preset named ``key`` (one of ``[p.key for p in PRESETS]``)."""
    if key not in _PRESETS_BY_KEY:
        raise ValueError(f"key must be one of {', '.join(map(repr, _PRESETS_BY_KEY))}; got {key!r}")
    return _PRESETS_BY_KEY[key]


def available_engines() -> tuple[str, ...]:
    """The engines this machine can run: numpy always, TensorFlow when installed.

    ``"tensorflow"`` is offered when both the ``tensorflow`` package and the
    course's TensorFlow engine (``fl_helpers.engines.tf_engine``) are present;
    looking them up does not import TensorFlow.
    """
    engines = ("vectorized", "loop")
    try:
        has_tf = (importlib.util.find_spec("tensorflow") is not None
                  and importlib.util.find_spec("fl_helpers.engines.tf_engine") is not None)
    except (ImportError, ValueError):
        has_tf = False
    return engines + ("tensorflow",) if has_tf else engines


def simulate(settings: Settings = DEFAULT) -> Result:
    """:func:`fl_helpers.widgets.explorer.simulate`, refusing an engine that is not installed.

    Never raises for a bad setting: the returned result then has ``error`` set
    to a message for the class.
    """
    if isinstance(settings, Settings) and settings.engine == "tensorflow":   # the only optional one
        engines = available_engines()
        if settings.engine not in engines:
            return Result(settings=settings, error=f"the 'tensorflow' engine is not available here "
                                                   f"(TensorFlow is not installed); choose one of {', '.join(engines)}")
    return explorer.simulate(settings)


# --------------------------------------------------------------------------- readouts

def total_bytes(result: Result) -> tuple[int, int]:
    """Bytes sent (up, down) over the whole run: updates + weights up, the model down."""
    h = result.history
    return int(np.sum(h.bytes_up)), int(np.sum(h.bytes_down))


def format_bytes(n: float) -> str:
    """``1234`` -> ``'1.23 kB'`` (decimal units, as networks count)."""
    for unit, size in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if n >= size:
            return f"{n / size:.3g} {unit}"
    return f"{int(n)} B"


def describe(settings: Settings) -> str:
    """The knob values in one line, e.g. ``N = 10 · η = 0.1 · R = 100 · ...``."""
    s = settings
    return (f"N = {s.n_parties} · η = {s.lr:.3g} · R = {s.rounds} · E = {s.local_epochs} · "
            f"C = {s.fraction:g} · skew = {s.skew:g} · {WEIGHT_LABELS.get(s.weighting, s.weighting)} · "
            f"{SPLIT_LABELS.get(bool(s.iid), s.iid)} · {s.engine}")


_NUMBERS = ("loss", "distance", "rounds", "bytes", "engine")


def _loss(value: float) -> str:
    """A loss in at most 9 characters: ``1.0003``, ``2126.7``, ``9.014e+06``."""
    return f"{value:.5g}" if 1e-3 <= abs(value) < 1e5 else f"{value:.4g}"


def readout_parts(result: Result) -> dict[str, tuple[str, str]]:
    """Each key number as (value, detail), e.g. ``"bytes": ("40 kB", "up 24 kB, down 16 kB")``.

    Keys: ``"loss"``, ``"distance"``, ``"rounds"``, ``"bytes"``, ``"engine"``.
    Numbers that do not exist (invalid setting) read ``("-", "")``.
    """
    if not result.ok:
        return {k: ("-", "") for k in _NUMBERS}
    h, ref = result.history, result.reference
    up, down = total_bytes(result)
    return {
        "loss": (_loss(h.losses[-1]), f"centralized {_loss(ref.losses[min(h.rounds, ref.rounds)])}"),
        "distance": (f"{result.distance:.2e}", ""),
        "rounds": (f"{h.rounds} of {result.settings.rounds}",
                   f"diverged at round {h.diverged_at}" if h.diverged else ""),
        "bytes": (format_bytes(up + down), f"up {format_bytes(up)}, down {format_bytes(down)}"),
        "engine": (h.engine, h.device),
    }


def readouts(result: Result) -> dict[str, str]:
    """The key numbers as text: loss, distance, rounds, bytes, engine, settings, status.

    Keys: those of :func:`readout_parts` as ``"value (detail)"`` (the engine:
    ``"vectorized on CPU (...)"``), plus
    ``"settings"`` (:func:`describe`) and ``"status"`` (one sentence: the
    outcome, the divergence or the invalid knob).
    """
    out = {"settings": describe(result.settings) if isinstance(result.settings, Settings) else "",
           "status": result.message}
    for key, (value, detail) in readout_parts(result).items():
        if not detail:
            out[key] = value
        else:
            out[key] = f"{value} on {detail}" if key == "engine" else f"{value} ({detail})"
    return out


_CARDS = (("loss", "final loss"), ("distance", "distance to θ*"), ("rounds", "rounds run"),
          ("bytes", "data sent"), ("engine", "engine"))


def readout_html(result: Result) -> str:
    """:func:`readouts` as HTML cards (``data-key`` attributes name each value)."""
    from html import escape

    r = readouts(result)
    parts = readout_parts(result)
    bad = (not result.ok) or result.history.diverged
    cards = "".join(
        f"<div class='fl-card' data-key='{key}'><div class='fl-label'>{label}</div>"
        f"<div class='fl-value'>{escape(parts[key][0])}</div>"
        f"<div class='fl-detail'>{escape(parts[key][1])}</div></div>"
        for key, label in _CARDS)
    return (f"<div class='fl-status{' fl-bad' if bad else ''}' data-key='status'>{escape(r['status'])}</div>"
            f"<div class='fl-settings' data-key='settings'>{escape(r['settings'])}</div>"
            f"<div class='fl-readouts'>{cards}</div>")


# --------------------------------------------------------------------------- drawing

def new_axes(*, dpi: float = 80):
    """A figure (not registered with pyplot) with the dashboard's four Axes.

    Returns ``(loss, path, parties, communication)``. Fixed layout (no
    ``constrained``), so a redraw only updates artists.
    """
    fig = agg_figure((11.5, 7.6), dpi=dpi, left=0.085, right=0.985, bottom=0.085, top=0.955,
                     wspace=0.22, hspace=0.42)
    return tuple(fig.subplots(2, 2).ravel())


def artists_of(ax):
    """The artists :func:`draw_party_losses` or :func:`draw_communication` made on ``ax``, or None.

    An :class:`fl_helpers.widgets.rendering.Artists` mapping: ``"bars"``,
    ``"global"``, ``"plain"`` and ``"scale"`` (party losses), or ``"line"``
    and ``"end"`` (communication). The first two panels are the explorer's:
    :func:`fl_helpers.widgets.explorer.artists_of`.
    """
    return ARTISTS.get(ax, "dashboard")


def note_of(fig):
    """The figure-wide message :func:`draw` shows for an invalid setting (a ``Text``), or None."""
    entry = ARTISTS.get(fig, "dashboard note")
    return None if entry is None else entry["note"]


def draw(result: Result, axes=None, *, fontsize: float = FONTSIZE):
    """Draw ``result`` on four Axes: loss, path, per-party loss, loss vs bytes.

    Drawing again on the same Axes updates the artists in place. An invalid
    setting is shown as a message across the figure; a diverged run shows its
    finite rounds and says where it stopped (never a NaN). Returns the Axes.
    """
    if axes is None:
        axes = new_axes()
    fig = axes[0].figure
    note = _figure_note(fig, fontsize)
    if not result.ok:
        for ax in axes:
            ax.clear()
            ax.set_axis_off()
            ARTISTS.forget(ax, "explorer")
            ARTISTS.forget(ax, "dashboard")
        note.set_text(_wrap(result.error, 70))
        note.set_visible(True)
        return axes
    note.set_visible(False)
    explorer.draw(result, axes[:2], fontsize=fontsize)
    draw_party_losses(result, axes[2], fontsize=fontsize)
    draw_communication(result, axes[3], fontsize=fontsize)
    return axes


def _wrap(text: str, width: int) -> str:
    import textwrap

    return "\n".join(textwrap.wrap(text, width))


def _figure_note(fig, fontsize):
    """The figure-wide message (:func:`note_of`), created hidden on first use."""
    note = note_of(fig)
    if note is None:
        note = fig.text(0.5, 0.55, "", ha="center", va="center", fontsize=fontsize + 4, color="#b00",
                        visible=False, bbox={"boxstyle": "round,pad=0.8", "facecolor": "#fff4f4",
                                             "edgecolor": "#b00"})
        ARTISTS.set(fig, "dashboard note", {"note": note})
    return note


def _panel(ax, fontsize, build):
    """The artists of a panel (:func:`artists_of`), created by ``build(ax)`` on first use (or after an error)."""
    return panel(ax, fontsize, build, "dashboard")


def party_bars(sizes: np.ndarray, losses: np.ndarray) -> np.ndarray:
    r"""Rectangles (N, 4, 2) side by side: party i spans :math:`m_i` on x and :math:`L_i` on y.

    The area of bar i is :math:`m_i L_i`; all bars together cover
    :math:`\sum_i m_i L_i = M\,L(\theta)`, so the global loss is the height of
    a bar of width :math:`M` with the same area (the size-weighted mean).
    """
    edges = np.concatenate([[0], np.cumsum(sizes)]).astype(float)
    x0, x1 = edges[:-1], edges[1:]
    zero = np.zeros_like(x0)
    return np.stack([np.stack([x0, zero], 1), np.stack([x0, losses], 1),
                     np.stack([x1, losses], 1), np.stack([x1, zero], 1)], axis=1)


def draw_party_losses(result: Result, ax, *, fontsize: float = FONTSIZE):
    """Each party's loss at the final model, as bars whose width is the party size.

    Two lines compare the size-weighted mean (the global loss) with the plain
    mean of the party losses (what the 1/N average minimises). Returns ``ax``.
    """
    from matplotlib.collections import PolyCollection
    from matplotlib.ticker import FuncFormatter

    def build(ax):
        # one colour: a bar is a party; white gaps (not alternating shades) tell neighbours apart
        bars = PolyCollection([], facecolors="#56B4E9", edgecolors="white", linewidths=1.5)
        ax.add_collection(bars)
        # the very mapping stored (ARTISTS.set keeps an Artists as it is): the formatter reads its scale
        art = Artists({
            "bars": bars,
            # the black line is wide and below, the orange one dashed on top: where the two means are
            # equal (parties of one size) both stay visible, black showing between the dashes
            "global": ax.axhline(0, color="k", lw=4, zorder=3, label="global loss (mean weighted by mᵢ)"),
            "plain": ax.axhline(0, color="#D55E00", lw=2, ls=(0, (4, 3)), zorder=4,
                                label="plain mean over parties (1/N)"),
        })
        ax.set_xlabel("samples; bar width = party size mᵢ", fontsize=fontsize)
        ax.set_ylabel("party loss Lᵢ(θ)", fontsize=fontsize)
        few_ticks(ax.xaxis, ax.yaxis)
        art["scale"] = 1.0          # ticks show L / scale, the label says the scale (no "1e7" offset text)
        ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _pos: f"{v / art['scale']:g}"))
        add_legend(ax, loc="upper left", fontsize=fontsize - 2)
        return art

    art = _panel(ax, fontsize, build)
    h, sizes = result.history, result.sizes
    losses = h.party_losses[-1]
    ax.set_title(f"loss of each party after round {h.rounds}" + (" (last finite)" if h.diverged else ""),
                 fontsize=fontsize, y=1.0)
    art["bars"].set_verts(party_bars(sizes, losses))
    art["global"].set_ydata([h.losses[-1]] * 2)
    art["plain"].set_ydata([losses.mean()] * 2)
    ax.set_xlim(0, sizes.sum())
    top = 1.35 * max(losses.max(), h.losses[-1], 1e-12)
    exponent = int(np.floor(np.log10(top))) if top >= 1e4 else 0
    if art["scale"] != 10.0**exponent:
        art["scale"] = 10.0**exponent
        suffix = f" (×{power_of_ten(exponent)})" if exponent else ""
        ax.set_ylabel("party loss Lᵢ(θ)" + suffix, fontsize=fontsize)
    ax.set_ylim(0, top)
    return ax


def draw_communication(result: Result, ax, *, fontsize: float = FONTSIZE):
    """Excess loss against the bytes sent so far (up + down), one point per round. Returns ``ax``."""
    def build(ax):
        art = {
            "line": ax.plot([], [], "-", color="#0072B2", lw=2, marker="o", ms=3, markevery=None)[0],
            "end": ax.plot([], [], "o", color="#0072B2", ms=9)[0],
        }
        ax.set_yscale("log")
        plain_log_axis(ax.yaxis)
        ax.set_xlabel("data sent so far, up + down (kB)", fontsize=fontsize)
        ax.set_ylabel("excess loss L(θ) − L(θ*)", fontsize=fontsize)
        few_ticks(ax.xaxis)
        return art

    art = _panel(ax, fontsize, build)
    h = result.history
    sent = np.concatenate([[0], np.cumsum(h.bytes_up + h.bytes_down)]) / 1e3
    excess = result.excess(h.thetas)
    art["line"].set_data(sent, excess)
    art["line"].set_markevery(None if len(sent) <= 60 else max(1, len(sent) // 30))
    art["end"].set_data([sent[-1]], [excess[-1]])
    ax.set_title(f"loss vs communication: {format_bytes(1e3 * sent[-1])} in {h.rounds} rounds",
                 fontsize=fontsize, y=1.0)
    ax.set_xlim(0, max(sent[-1], 1e-3) * 1.05)
    set_log_limits(ax.yaxis, 0.5 * excess.min(), 2.0 * excess.max())
    return ax


def render(result: Result, axes=None, *, fontsize: float = FONTSIZE, small: bool = False) -> bytes:
    """:func:`draw` then PNG bytes of the figure (``small=True``: 256 colours, best compression)."""
    axes = draw(result, axes, fontsize=fontsize)
    if small:
        return render_png(axes[0].figure, compress_level=9, palette=True)
    return render_png(axes[0].figure)


# --------------------------------------------------------------------------- the widget

_CSS = """
<style>
/* Voila's app view (its page holds #rendered_cells and marks each cell with celltag_<tag>):
   the cells tagged voila-hide, the notebook's text, checks and exercises, are not shown */
#rendered_cells .celltag_voila-hide { display: none; }
.fl-dashboard { --jp-widgets-font-size: 16px; --jp-widgets-inline-height: 32px;
  --jp-widgets-slider-handle-size: 20px; --jp-widgets-slider-track-thickness: 6px; font-size: 16px; }
.fl-dashboard .widget-label, .fl-dashboard .widget-readout { font-size: 16px; }
.fl-dashboard button.fl-preset { font-size: 16px; font-weight: 600; }
.fl-dashboard .fl-text, .fl-dashboard .fl-text > .widget-html-content,
.fl-dashboard .fl-text > .jupyter-widget-html-content { line-height: 1.3; height: auto; overflow: visible; }
.fl-dashboard .fl-caption { font-size: 18px; padding: 6px 12px; margin: 2px 0 6px 0;
  background: #eef6fc; border-left: 6px solid #0072B2; }
.fl-dashboard .fl-status { font-size: 16px; font-weight: 600; color: #225; margin: 8px 0 4px 0; }
.fl-dashboard .fl-status.fl-bad { color: #b00; font-size: 18px; }
.fl-dashboard .fl-settings { font-size: 14px; color: #555; margin-bottom: 6px; }
.fl-dashboard .fl-readouts { display: grid; grid-template-columns: repeat(3, 1fr); gap: 6px; }
.fl-dashboard .fl-card { border: 1px solid #ccd; border-radius: 6px; padding: 3px 8px; background: #fafafa; }
.fl-dashboard .fl-label { font-size: 13px; color: #555; }
.fl-dashboard .fl-value { font-size: 20px; font-weight: 700; overflow-wrap: anywhere; }
.fl-dashboard .fl-detail { font-size: 12px; color: #444; overflow-wrap: anywhere; }
</style>
"""

#: Knob order in the left column, and their descriptions.
KNOB_LABELS = {
    "n_parties": "parties N", "skew": "size skew", "iid": "data split", "weighting": "mean weights",
    "lr": "learning rate η", "rounds": "rounds R", "local_epochs": "local epochs E",
    "fraction": "fraction C", "engine": "engine",
}


class Dashboard:
    """The live-demo widget: knobs, presets, reset, readouts and the four-panel plot.

    Attributes
    ----------
    knobs : dict of ipywidgets
        One widget per :class:`~fl_helpers.widgets.explorer.Settings` field (not ``seed``).
    preset_buttons : dict of ipywidgets.Button, by preset key; reset_button
    image : ipywidgets.Image
        The plot (CSS class ``fl-plot``); its PNG bytes change on every redraw.
    caption, readout : ipywidgets.HTML
    shown : Settings
        The settings the current picture was computed from.
    result : Result
        Their simulation.
    redraws : int
        How many times the picture was computed (a preset adds exactly one).
    widget : ipywidgets.VBox
        What to display (displaying the Dashboard itself does the same).
    """

    def __init__(self, settings: Settings = DEFAULT, *, engines: tuple[str, ...] | None = None,
                 fontsize: float = FONTSIZE):
        import ipywidgets as w

        self.engines = tuple(engines) if engines is not None else available_engines()
        self.fontsize = fontsize
        self.seed = settings.seed
        self.redraws = 0
        self.shown: Settings | None = None
        self.result: Result | None = None
        self._quiet = False
        self.knobs = self._make_knobs(w)
        self.preset_buttons = {}
        for p in PRESETS:
            b = w.Button(description=p.label, tooltip=p.caption, layout=w.Layout(width="auto", height="40px"))
            b.add_class("fl-preset")
            b.on_click(lambda _, p=p: self.apply(p.settings, caption=p.caption))
            self.preset_buttons[p.key] = b
        self.reset_button = w.Button(description="reset", icon="undo", button_style="warning",
                                     layout=w.Layout(width="auto", height="40px"))
        self.reset_button.add_class("fl-preset")
        self.reset_button.on_click(lambda _: self.reset())
        self.caption = w.HTML(f"<div class='fl-caption'>{HINT}</div>")
        self.readout = w.HTML()
        for text in (self.caption, self.readout):
            text.add_class("fl-text")
        # at most 1.25 x the rendered size (920 px): larger would only blur; narrow windows shrink it
        self.image = w.Image(format="png", layout=w.Layout(width="100%", max_width="1150px", height="auto"))
        self.image.add_class("fl-plot")
        self.axes = new_axes()
        self.figure = self.axes[0].figure
        for knob in self.knobs.values():
            knob.observe(self._on_knob, names="value")
        buttons = w.HBox([*self.preset_buttons.values(), self.reset_button],
                         layout=w.Layout(flex_flow="row wrap"))
        controls = w.VBox([*self.knobs.values(), self.readout],
                          layout=w.Layout(width="470px", min_width="470px"))
        plot = w.VBox([self.image], layout=w.Layout(flex="1 1 auto", min_width="0"))
        self.widget = w.VBox([w.HTML(_CSS), buttons, self.caption, w.HBox([controls, plot])])
        self.widget.add_class("fl-dashboard")
        self.set_knobs(settings)
        self.redraw()

    def _make_knobs(self, w) -> dict:
        lo = {k: v[0] for k, v in LIMITS.items()}
        hi = {k: v[1] for k, v in LIMITS.items()}
        slider = {"continuous_update": False, "layout": w.Layout(width="460px"),
                  "style": {"description_width": "130px"}}
        toggle = {"style": {"description_width": "130px", "button_width": "105px"}}
        knobs = {
            "n_parties": w.IntSlider(min=lo["n_parties"], max=hi["n_parties"], **slider),
            "skew": w.FloatSlider(min=lo["skew"], max=hi["skew"], step=0.1, **slider),
            "iid": w.ToggleButtons(options=[(v, k) for k, v in SPLIT_LABELS.items()], **toggle),
            "weighting": w.ToggleButtons(options=[(v, k) for k, v in WEIGHT_LABELS.items()], **toggle),
            "lr": w.FloatLogSlider(base=10, min=np.log10(lo["lr"]), max=np.log10(hi["lr"]), step=0.05,
                                   readout_format=".3g", **slider),
            "rounds": w.IntSlider(min=lo["rounds"], max=hi["rounds"], **slider),
            "local_epochs": w.IntSlider(min=lo["local_epochs"], max=hi["local_epochs"], **slider),
            "fraction": w.FloatSlider(min=lo["fraction"], max=hi["fraction"], step=0.05, **slider),
            "engine": w.ToggleButtons(options=list(self.engines), **toggle),
        }
        for name, knob in knobs.items():
            knob.description = KNOB_LABELS[name]
            knob.add_class(f"fl-knob-{name}")
        return knobs

    # -- state ---------------------------------------------------------------
    def settings(self) -> Settings:
        """The settings on the knobs right now (all of them, as the readouts show them)."""
        values = {k: explorer.knob_value(k, knob.value) for k, knob in self.knobs.items()}
        return Settings(seed=self.seed, **values)

    @contextmanager
    def quiet(self):
        """Within the block, knob changes do not redraw (a preset sets many, then redraws once)."""
        before, self._quiet = self._quiet, True
        try:
            yield
        finally:
            self._quiet = before

    def set_knobs(self, settings: Settings) -> None:
        """Move every knob to ``settings`` without redrawing."""
        with self.quiet():
            for name, knob in self.knobs.items():
                value = getattr(settings, name)
                if name == "engine" and value not in self.engines:
                    value = self.engines[0]
                knob.value = bool(value) if name == "iid" else value

    def apply(self, settings: Settings, *, caption: str | None = None) -> None:
        """Set all knobs to ``settings`` and redraw once; show ``caption`` (default: the hint)."""
        self.set_knobs(settings)
        self.caption.value = f"<div class='fl-caption'>{caption or HINT}</div>"
        self.redraw()

    def press(self, key: str) -> None:
        """Press the preset button ``key`` (as a click in the browser does)."""
        preset(key)
        self.preset_buttons[key].click()

    def reset(self) -> None:
        """Back to :data:`DEFAULT`."""
        self.apply(DEFAULT)

    def _on_knob(self, change) -> None:
        if self._quiet:
            return
        self.caption.value = f"<div class='fl-caption'>{HINT}</div>"
        self.redraw()

    def redraw(self) -> None:
        """Simulate the knobs' current settings, redraw, update readouts and picture.

        Reads every knob (never only the one that changed), so the picture
        shown always belongs to the values on the sliders, whatever order the
        front end's messages arrived in. An unexpected error (e.g. an engine
        that fails to start) becomes a message, not a traceback.
        """
        settings = self.settings()
        if settings.engine == "tensorflow" and "tensorflow" not in sys.modules:
            self.readout.value = ("<div class='fl-status'>starting TensorFlow: the first run takes "
                                  "a few seconds…</div>")
        try:
            result = simulate(settings)
            draw(result, self.axes, fontsize=self.fontsize)
        except Exception as exc:  # shown to the class; the notebook keeps running
            result = Result(settings=settings, error=f"this run failed: {type(exc).__name__}: {exc}")
            draw(result, self.axes, fontsize=self.fontsize)
        self.result, self.shown = result, settings
        self.redraws += 1
        self.readout.value = readout_html(result)
        self.image.value = render_png(self.figure)

    def _repr_mimebundle_(self, **kwargs):
        # a reader without a kernel (GitHub, nbconvert) sees the picture of the current state instead
        return picture_bundle(self.widget._repr_mimebundle_(**kwargs), self.image.value,
                              "Live dashboard: run this notebook in JupyterLab, or open it with Voila, "
                              "to use it. The picture shows the state it was saved in.")


def dashboard(settings: Settings = DEFAULT, **options) -> Dashboard:
    """The live demo: build a :class:`Dashboard`; display it as the last line of a cell."""
    return Dashboard(settings, **options)
