r"""The federated-run explorer: the instructor's main widget (notebooks 02, 03, 04).

Thin by design: :func:`simulate` is a pure function of :class:`Settings`,
:func:`draw` a pure function of its :class:`Result`, and :func:`explorer`
only binds sliders to them. Both are tested without a browser. The drawing
helpers it shares with the other widgets (PNG rendering, plain log ticks,
reusable legends, the artists found again on a redraw) live in
:mod:`fl_helpers.widgets.rendering`; they are importable from here too.

The data are one feature, so the whole parameter space is the
:math:`(\theta_0, \theta_1)` plane drawn as contours. The world is slightly
curved, :math:`y = 1 + 2x + 0.75x^2 + \varepsilon`, and parties cover
neighbouring ranges of :math:`x` (like hospitals serving different
populations), so a party's best line differs from the global one. Then the
weighting matters: the sample-weighted mean reproduces centralized gradient
descent exactly, the unweighted mean converges to another point whenever
party sizes differ, and many local epochs drift (FedAvg's client drift).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from functools import lru_cache

import numpy as np

from ..aggregation import WEIGHTINGS
from ..data import quantity_sizes
from ..engines import ENGINES, make_engine
from ..parties import Party
from ..reference import centralized_gd, least_squares
from ..server import n_selected, train
from .rendering import (  # noqa: F401  (re-exported: notebooks and tests import them from here)
    ARTISTS,
    LEGEND_STYLE,
    BoundedCache,
    add_legend,
    agg_figure,
    draw_reusing_legends,
    few_ticks,
    live_box,
    plain_log_axis,
    power_of_ten,
    render_png,
    set_log_limits,
    tick_label,
)

#: Slider ranges (inclusive) shown to students; :func:`simulate` enforces them.
LIMITS = {
    "n_parties": (1, 200),
    "lr": (1e-3, 3.0),
    "rounds": (1, 500),
    "local_epochs": (1, 50),
    "skew": (0.0, 3.0),
    "fraction": (0.05, 1.0),
}
N_SAMPLES = 600


@dataclass(frozen=True)
class Settings:
    """All knobs of one federated run in the explorer.

    ``iid=False`` gives each party a neighbouring range of x (non-IID, the
    default); ``iid=True`` deals the samples out at random (IID).
    """

    n_parties: int = 10
    lr: float = 0.1
    rounds: int = 100
    local_epochs: int = 1
    skew: float = 0.0
    weighting: str = "samples"
    fraction: float = 1.0
    engine: str = "vectorized"
    seed: int = 0
    iid: bool = False

    def replace(self, **changes) -> "Settings":
        return replace(self, **changes)


@dataclass
class Result:
    """Everything :func:`draw` needs; ``error`` is set instead when the settings are invalid."""

    settings: Settings
    history: object = None          # fl_helpers.History of the federated run
    reference: object = None        # History of centralized gradient descent
    theta_star: np.ndarray = None   # least squares on all data
    theta_uniform: np.ndarray = None  # fixed point of the unweighted mean
    sizes: np.ndarray = None
    quadratic: tuple = None         # (A, b, c): L(theta) = theta^T A theta - 2 b^T theta + c

    def excess(self, thetas) -> np.ndarray:
        r"""Excess loss :math:`L(\theta) - L(\theta^\star) = (\theta - \theta^\star)^\top A (\theta - \theta^\star)`.

        Exact for the quadratic MSE (no cancellation between two numbers near
        :math:`L^\star`), so a gap of 1e-10 shows as 1e-10, not as rounding
        noise; floored at 1e-16 x :math:`L^\star` (the loss's own precision)
        for the log axes.
        """
        A, b, c = self.quadratic
        D = np.atleast_2d(thetas) - self.theta_star
        floor = 1e-16 * max(float(self.theta_star @ A @ self.theta_star - 2 * b @ self.theta_star + c), 1.0)
        return np.maximum(np.einsum("ti,ij,tj->t", D, A, D), floor)
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None

    @property
    def distance(self) -> float:
        """Final distance :math:`\\lVert\\theta_R - \\theta^\\star\\rVert` to least squares."""
        return float(np.linalg.norm(self.history.theta - self.theta_star))

    @property
    def message(self) -> str:
        """One line for the class: the invalid knob, the divergence, or the outcome."""
        if self.error:
            return self.error
        h = self.history
        if h.diverged:
            return h.message
        return (f"after {h.rounds} rounds: loss {h.losses[-1]:.4f} "
                f"(centralized {self.reference.losses[min(h.rounds, self.reference.rounds)]:.4f}), "
                f"distance to least squares {self.distance:.2e}")


def explorer_data(seed: int = 0, n_samples: int = N_SAMPLES):
    """The explorer's dataset: x ~ U(-2, 2), y = 1 + 2x + 0.75x^2 + N(0, 0.5^2)."""
    rng = np.random.default_rng(seed)
    x = rng.uniform(-2.0, 2.0, n_samples)
    y = 1.0 + 2.0 * x + 0.75 * x**2 + 0.5 * rng.standard_normal(n_samples)
    return x[:, None], y


def explorer_parties(n_parties: int, skew: float, seed: int = 0, *, iid: bool = False) -> list[Party]:
    """Parties covering neighbouring x-ranges, sizes from the ``"quantity"`` power law.

    With ``iid=True`` the samples are dealt out in a random order instead, so
    every party sees the whole x-range (same sizes).
    """
    X, y = explorer_data(seed)
    rng = np.random.default_rng(seed + 1)
    sizes = quantity_sizes(len(y), n_parties, skew=skew, rng=rng)
    if iid:
        order = rng.permutation(len(y))
    else:
        order = np.argsort(X[:, 0] + 0.3 * rng.standard_normal(len(y)), kind="stable")
    parts = np.split(order, np.cumsum(sizes)[:-1])
    return [Party(X[i], y[i], name=f"party {k}") for k, i in enumerate(parts)]


#: The loop engine makes one Python call per party and round; above this many
#: party-epochs (N x fraction x rounds x E, about two seconds here) a run is
#: refused with a message instead of freezing the widget.
MAX_LOOP_WORK = 200_000


def selected_per_round(n_parties: int, fraction: float) -> int:
    """Parties taking part in each round, as :func:`fl_helpers.server.sample_parties` draws them."""
    return n_selected(n_parties, fraction)


def validate(settings: Settings) -> str | None:
    """Return a student-readable message for an invalid setting, or None."""
    s = settings
    if not isinstance(s, Settings):
        return f"settings must be an explorer.Settings, got {type(s).__name__}"
    for name, (lo, hi) in LIMITS.items():
        value = getattr(s, name)
        if (isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating))
                or not np.isfinite(value) or not lo <= value <= hi):
            return f"{name} must be between {lo:g} and {hi:g}, got {value!r}"
    for name in ("n_parties", "rounds", "local_epochs", "seed"):
        value = getattr(s, name)
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 0:
            return f"{name} must be a whole number, got {value!r}"
    if s.weighting not in WEIGHTINGS:
        return f"weighting must be one of {WEIGHTINGS}, got {s.weighting!r}"
    if s.engine not in ENGINES:
        return f"engine must be one of {tuple(ENGINES)}, got {s.engine!r}"
    if not isinstance(s.iid, (bool, np.bool_)):
        return f"iid must be True or False, got {s.iid!r}"
    work = selected_per_round(s.n_parties, s.fraction) * s.rounds * s.local_epochs
    if s.engine == "loop" and work > MAX_LOOP_WORK:
        return (f"too slow for the loop engine: {work:,} local epochs (parties per round x rounds x E) "
                f"is more than {MAX_LOOP_WORK:,}; choose the vectorized engine or fewer rounds/epochs")
    return None


class FederationCache(BoundedCache):
    """The explorer's parties and their engine, built once per data setting and reused across redraws.

    An explicit, bounded cache (least recently used first out): the key is
    everything the parties depend on, and each engine is stored with the very
    parties it was built for, so ``train`` always gets a matching pair (it
    raises otherwise). Pass ``cache=None`` to :func:`simulate` to build afresh.
    """

    def key(self, settings: Settings):
        s = settings
        return (s.engine, s.n_parties, float(s.skew), s.seed, bool(s.iid))

    def build(self, settings: Settings):
        """``(parties, engine)`` for ``settings``' data and engine."""
        s = settings
        parties = explorer_parties(s.n_parties, s.skew, s.seed, iid=bool(s.iid))
        return parties, make_engine(s.engine, parties)


#: The cache the widgets share (one kernel, one class demo).
CACHE = FederationCache()


def simulate(settings: Settings = Settings(), *, cache: FederationCache | None = CACHE) -> Result:
    """Run the federated training and its references for ``settings`` (deterministic).

    ``cache`` reuses the parties and engine of an earlier call with the same
    data settings (the results are the same with ``cache=None``).
    """
    error = validate(settings)
    if error:
        return Result(settings=settings, error=error)
    s = settings
    if cache is None:
        parties = explorer_parties(s.n_parties, s.skew, s.seed, iid=bool(s.iid))
        engine = s.engine
    else:
        parties, engine = cache.get(s)
    history = train(parties, lr=s.lr, rounds=s.rounds, local_epochs=s.local_epochs,
                    fraction=s.fraction, weighting=s.weighting, seed=s.seed, engine=engine)
    X, y = explorer_data(s.seed)
    Xt = np.hstack([np.ones((len(y), 1)), X])
    quadratic = (Xt.T @ Xt / len(y), Xt.T @ y / len(y), float(y @ y) / len(y))
    return Result(
        settings=s,
        history=history,
        reference=_centralized(s.lr, s.rounds, s.seed),
        theta_star=least_squares(parties),
        theta_uniform=least_squares(parties, weighting="uniform"),
        sizes=np.array([p.n_samples for p in parties]),
        quadratic=quadratic,
    )


@lru_cache(maxsize=64)
def _centralized(lr: float, rounds: int, seed: int):
    """Centralized GD on the explorer's data, the dashed reference of every plot.

    Cached in-process with :func:`functools.lru_cache` (the 64 most recent
    ``(lr, rounds, seed)``), since most slider moves keep them: the
    :class:`~fl_helpers.History` returned is shared by every :class:`Result`
    with those values, so treat ``Result.reference`` as read-only.
    ``_centralized.cache_clear()`` empties the cache.
    """
    X, y = explorer_data(seed)
    return centralized_gd(X, y, lr=lr, rounds=rounds)


def _limits(result: Result, margin: float = 0.35):
    pts = np.array([result.history.thetas[0], result.theta_star, result.theta_uniform])
    lo, hi = pts.min(axis=0), pts.max(axis=0)
    pad = margin * np.maximum(hi - lo, 1.0)
    return (lo[0] - pad[0], hi[0] + pad[0]), (lo[1] - pad[1], hi[1] + pad[1])


def draw(result: Result, axes=None, *, fontsize: float = 11):
    """Draw ``result`` on two Axes: (a) loss vs rounds, (b) path on the loss contours.

    ``axes`` is a pair of matplotlib Axes. When None, a new figure is made
    outside pyplot (:func:`new_axes`): a notebook shows it as an image only
    once ``matplotlib.pyplot`` has been imported (which registers the PNG
    display); otherwise pass ``plt.subplots(1, 2)[1]``. Drawing again on the
    same pair updates the lines in place (a widget redraw then costs a few
    tens of milliseconds instead of rebuilding every tick); the artists are
    found again through :func:`artists_of`.
    An invalid setting or a diverged run is said in words, never drawn as NaN.
    Returns the pair of Axes.
    """
    if axes is None:
        axes = new_axes()
    ax_loss, ax_path = axes
    if not result.ok:
        _draw_error(result, axes, fontsize)
        return axes
    art = artists_of(ax_loss)
    if art is None:
        art = _build(axes, fontsize)
    h, ref, s = result.history, result.reference, result.settings
    A, b, c = result.quadratic
    theta_star, theta_u = result.theta_star, result.theta_uniform
    label = ("FedAvg" if s.local_epochs > 1 else "FedSGD") + (", weights mᵢ/M" if s.weighting == "samples"
                                                              else ", weights 1/N")

    fed, central = result.excess(h.thetas), result.excess(ref.thetas)
    art["ref"].set_data(np.arange(len(central)), central)
    art["fed"].set_data(np.arange(len(fed)), fed)
    art["fed"].set_label(label)
    finite = np.concatenate([central, fed])
    ax_loss.set_xlim(0, max(s.rounds, 1))
    set_log_limits(ax_loss.yaxis, 0.5 * finite.min(), 2.0 * finite.max())
    add_legend(ax_loss, loc="upper right", fontsize=fontsize - 1)
    diverged = h.diverged
    ax_loss.set_title(f"N = {s.n_parties} parties, η = {s.lr:.3g}, E = {s.local_epochs}",
                      fontsize=fontsize, y=1.0)   # a fixed y skips re-measuring the tick labels
    art["note"].set_text(f"diverged at round {h.diverged_at}:\nlearning rate too large for this data"
                         if diverged else "")
    art["note"].set_visible(diverged)

    limits = _limits(result)
    if art.get("limits") != limits:      # the contours only change with the plane shown
        if art.get("contour") is not None:
            art["contour"].remove()
        (x0, x1), (y0, y1) = limits
        t0, t1 = np.meshgrid(np.linspace(x0, x1, 100), np.linspace(y0, y1, 100))
        T = np.stack([t0, t1], axis=-1)
        Z = np.einsum("...i,ij,...j->...", T, A, T) - 2 * T @ b + c
        art["contour"] = ax_path.contour(t0, t1, Z, levels=np.geomspace(max(Z.min(), 1e-3), Z.max(), 14),
                                         colors="0.75", linewidths=0.8, zorder=0)
        ax_path.set_xlim(x0, x1)
        ax_path.set_ylim(y0, y1)
        art["limits"] = limits
    art["ref_path"].set_data(*ref.thetas[:, :2].T)
    art["fed_path"].set_data(*h.thetas[:, :2].T)
    art["fed_path"].set_label(label)
    art["start"].set_data([h.thetas[0, 0]], [h.thetas[0, 1]])
    art["star"].set_data([theta_star[0]], [theta_star[1]])
    art["uniform"].set_data([theta_u[0]], [theta_u[1]])
    # theta° only where the run heads for it: with the unweighted mean and unequal sizes
    art["uniform"].set_visible(result.settings.weighting == "uniform"
                               and not np.allclose(theta_u, theta_star, atol=1e-6))
    art["uniform"].set_label("unweighted fixed point θ°" if art["uniform"].get_visible() else "_hidden")
    add_legend(ax_path, loc="lower right", fontsize=fontsize - 2)
    ax_path.set_title(f"distance to θ*: {result.distance:.2e}", fontsize=fontsize, y=1.0)
    return axes


def new_axes(*, dpi: float = 80):
    """A figure (not registered with pyplot) with the explorer's two Axes.

    A fixed layout rather than ``constrained`` (see :func:`fl_helpers.widgets.rendering.agg_figure`).
    """
    fig = agg_figure((11, 4.3), dpi=dpi, left=0.07, right=0.985, bottom=0.12, top=0.92, wspace=0.2)
    return fig.subplots(1, 2)


def artists_of(ax):
    """The artists :func:`draw` made on ``ax`` (the loss Axes of its pair), or None.

    An :class:`fl_helpers.widgets.rendering.Artists` mapping: ``"fed"``, ``"ref"``
    (loss panel), ``"fed_path"``, ``"ref_path"``, ``"start"``,
    ``"star"``, ``"uniform"``, ``"contour"`` (path panel), ``"note"``, and
    ``"limits"``, the plane the contours were drawn for.
    """
    return ARTISTS.get(ax, "explorer")


def _build(axes, fontsize):
    """Create the explorer's artists once; later draws only update their data."""
    ax_loss, ax_path = axes
    for ax in axes:
        ax.clear()
        ax.set_axis_on()
        ax.tick_params(labelsize=fontsize - 1)
    art = ARTISTS.set(ax_loss, "explorer", {
        "ref": ax_loss.plot([], [], "--", color="0.45", lw=2, label="centralized GD")[0],
        "fed": ax_loss.plot([], [], color="tab:blue", lw=2, label="federated")[0],
        "ref_path": ax_path.plot([], [], "--", color="0.45", lw=1.5, label="centralized GD")[0],
        "fed_path": ax_path.plot([], [], "-", color="tab:blue", lw=2, marker="o", ms=2.5,
                                 label="federated")[0],
        "start": ax_path.plot([], [], "s", color="k", ms=7, label="start")[0],
        "star": ax_path.plot([], [], "*", color="tab:green", ms=16, label="least squares θ*")[0],
        "uniform": ax_path.plot([], [], "X", color="tab:red", ms=11, label="unweighted fixed point θ°")[0],
        "note": ax_loss.text(0.5, 0.5, "", transform=ax_loss.transAxes, ha="center", va="center",
                             fontsize=fontsize + 3, color="tab:red", visible=False,
                             bbox={"boxstyle": "round", "facecolor": "white", "edgecolor": "tab:red"}),
        "contour": None,
        "limits": None,
    })
    ax_loss.set_yscale("log")
    plain_log_axis(ax_loss.yaxis)      # fewer tick objects, no mathtext: faster redraws
    few_ticks(ax_loss.xaxis, ax_path.xaxis, ax_path.yaxis)
    ax_loss.set_xlabel("round", fontsize=fontsize)
    ax_loss.set_ylabel("excess loss L(θ) − L(θ*)", fontsize=fontsize)
    ax_path.set_xlabel("θ0 (intercept)", fontsize=fontsize)
    ax_path.set_ylabel("θ1 (slope)", fontsize=fontsize)
    return art


def _draw_error(result, axes, fontsize):
    for ax in axes:
        ax.clear()
        ax.set_axis_off()
    ARTISTS.forget(axes[0], "explorer")
    axes[0].text(0.02, 0.5, result.error, transform=axes[0].transAxes, color="tab:red",
                 fontsize=fontsize + 1, va="center", wrap=True)


def knob_value(name: str, value):
    """A widget's value as :func:`simulate` gets it: the number its readout shows.

    A log slider's value is ``10**x`` (0.1 may arrive as 0.10000000000000002,
    3.0 as 3.0000000000000004, just past the limit); round it to the three
    significant digits the readout shows, and the other floats to the slider's
    step.
    """
    if name == "lr":
        lo, hi = LIMITS["lr"]
        return min(max(float(f"{value:.3g}"), lo), hi)
    if name in ("skew", "fraction"):
        return round(float(value), 2)
    return value


def explorer(settings: Settings = Settings(), *, engines=("vectorized", "loop")):
    """The widget: sliders for every knob, redrawn when a slider is released.

    Every redraw reads the current value of *all* sliders (not only the one
    that moved), simulates, updates the figure in place and sends it as PNG
    bytes to an ``ipywidgets.Image`` (CSS class ``fl-plot``), so the picture
    always shows the settings on the sliders. Returns an ``ipywidgets.VBox``
    (CSS class ``fl-explorer``) whose saved output also carries a PNG of its
    state for readers without a kernel; display it as the last line of a cell.
    """
    import ipywidgets as w

    s = settings
    style = {"description_width": "110px"}
    layout = w.Layout(width="420px")
    knobs = {
        "n_parties": w.IntSlider(value=s.n_parties, min=LIMITS["n_parties"][0], max=LIMITS["n_parties"][1],
                                 description="parties N"),
        "lr": w.FloatLogSlider(value=s.lr, base=10, min=np.log10(LIMITS["lr"][0]), max=np.log10(LIMITS["lr"][1]),
                               step=0.05, description="learning rate η", readout_format=".3g"),
        "rounds": w.IntSlider(value=s.rounds, min=LIMITS["rounds"][0], max=LIMITS["rounds"][1],
                              description="rounds"),
        "local_epochs": w.IntSlider(value=s.local_epochs, min=LIMITS["local_epochs"][0],
                                    max=LIMITS["local_epochs"][1], description="local epochs E"),
        "skew": w.FloatSlider(value=s.skew, min=LIMITS["skew"][0], max=LIMITS["skew"][1], step=0.1,
                              description="size skew"),
        "weighting": w.ToggleButtons(options=list(WEIGHTINGS), value=s.weighting, description="weights"),
    }
    if len(engines) > 1:
        knobs["engine"] = w.ToggleButtons(options=list(engines), value=s.engine, description="engine")
    for knob in knobs.values():
        knob.style = style
        if hasattr(knob, "continuous_update"):
            knob.continuous_update = False
            knob.layout = layout
    # at most 1.25 x the rendered size: larger would only blur; smaller windows shrink it
    image = w.Image(format="png", layout=w.Layout(width="100%", max_width="1100px", height="auto"))
    image.add_class("fl-plot")
    status = w.HTML()
    axes = new_axes()
    fig = axes[0].figure

    def redraw(_=None):
        current = s.replace(**{k: knob_value(k, v.value) for k, v in knobs.items()})
        result = simulate(current)
        draw(result, axes)
        color = "#b00" if (not result.ok or result.history.diverged) else "#333"
        status.value = f"<span style='color:{color}; font-size:1.1em'>{result.message}</span>"
        image.value = render_png(fig)

    for knob in knobs.values():
        knob.observe(redraw, names="value")
    redraw()
    left = w.VBox(list(knobs.values())[:3])
    right = w.VBox(list(knobs.values())[3:])
    box = live_box([w.HBox([left, right]), status, image], picture=image,
                   note="Interactive explorer: run this notebook in JupyterLab to move the sliders; "
                        "the picture shows the settings it was saved with.")
    box.add_class("fl-explorer")
    return box
