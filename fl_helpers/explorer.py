r"""The federated-run explorer: the instructor's main widget (notebooks 02, 03, 05).

Thin by design: :func:`simulate` is a pure function of :class:`Settings`,
:func:`draw` a pure function of its :class:`Result`, and :func:`explorer`
only binds sliders to them. Both are tested without a browser.

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

from dataclasses import asdict, dataclass, replace

import numpy as np

from . import _validate as check
from .aggregation import WEIGHTINGS
from .data import quantity_sizes
from .engines import ENGINES, make_engine
from .parties import Party
from .reference import centralized_gd, least_squares
from .server import train

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
    """All knobs of one federated run in the explorer."""

    n_parties: int = 10
    lr: float = 0.1
    rounds: int = 100
    local_epochs: int = 1
    skew: float = 0.0
    weighting: str = "samples"
    fraction: float = 1.0
    engine: str = "vectorized"
    seed: int = 0

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


def explorer_parties(n_parties: int, skew: float, seed: int = 0) -> list[Party]:
    """Parties covering neighbouring x-ranges, sizes from the ``"quantity"`` power law."""
    X, y = explorer_data(seed)
    rng = np.random.default_rng(seed + 1)
    sizes = quantity_sizes(len(y), n_parties, skew=skew, rng=rng)
    order = np.argsort(X[:, 0] + 0.3 * rng.standard_normal(len(y)), kind="stable")
    parts = np.split(order, np.cumsum(sizes)[:-1])
    return [Party(X[i], y[i], name=f"party {k}") for k, i in enumerate(parts)]


def validate(settings: Settings) -> str | None:
    """Return a student-readable message for an invalid setting, or None."""
    s = settings
    for name, (lo, hi) in LIMITS.items():
        value = getattr(s, name)
        if not (isinstance(value, (int, float)) and np.isfinite(value) and lo <= value <= hi):
            return f"{name} must be between {lo:g} and {hi:g}, got {value!r}"
    if s.weighting not in WEIGHTINGS:
        return f"weighting must be one of {WEIGHTINGS}, got {s.weighting!r}"
    if s.engine not in ENGINES:
        return f"engine must be one of {tuple(ENGINES)}, got {s.engine!r}"
    return None


_ENGINE_CACHE: dict = {}


def _engine(settings: Settings, parties):
    """Reuse the engine (and, for TensorFlow, the data on the device) across redraws."""
    key = (settings.engine, settings.n_parties, settings.skew, settings.seed)
    if key not in _ENGINE_CACHE:
        if len(_ENGINE_CACHE) > 32:
            _ENGINE_CACHE.clear()
        _ENGINE_CACHE[key] = make_engine(settings.engine, parties)
    return _ENGINE_CACHE[key]


def simulate(settings: Settings = Settings()) -> Result:
    """Run the federated training and its references for ``settings`` (pure, deterministic)."""
    error = validate(settings)
    if error:
        return Result(settings=settings, error=error)
    s = settings
    parties = explorer_parties(s.n_parties, s.skew, s.seed)
    history = train(parties, lr=s.lr, rounds=s.rounds, local_epochs=s.local_epochs,
                    fraction=s.fraction, weighting=s.weighting, seed=s.seed,
                    engine=_engine(s, parties))
    X, y = explorer_data(s.seed)
    Xt = np.hstack([np.ones((len(y), 1)), X])
    quadratic = (Xt.T @ Xt / len(y), Xt.T @ y / len(y), float(y @ y) / len(y))
    return Result(
        settings=s,
        history=history,
        reference=centralized_gd(X, y, lr=s.lr, rounds=s.rounds),
        theta_star=least_squares(parties),
        theta_uniform=least_squares(parties, weighting="uniform"),
        sizes=np.array([p.n_samples for p in parties]),
        quadratic=quadratic,
    )


def settings_dict(settings: Settings) -> dict:
    return asdict(settings)


def _limits(result: Result, margin: float = 0.35):
    pts = np.array([result.history.thetas[0], result.theta_star, result.theta_uniform])
    lo, hi = pts.min(axis=0), pts.max(axis=0)
    pad = margin * np.maximum(hi - lo, 1.0)
    return (lo[0] - pad[0], hi[0] + pad[0]), (lo[1] - pad[1], hi[1] + pad[1])


def draw(result: Result, axes=None, *, fontsize: float = 11):
    """Draw ``result`` on two Axes: (a) loss vs rounds, (b) path on the loss contours.

    ``axes`` is a pair of matplotlib Axes (a new figure is made when None).
    Drawing again on the same pair updates the lines in place (a widget redraw
    then costs a few tens of milliseconds instead of rebuilding every tick).
    An invalid setting or a diverged run is said in words, never drawn as NaN.
    Returns the pair of Axes.
    """
    if axes is None:
        axes = new_axes()
    ax_loss, ax_path = axes
    if not result.ok:
        _draw_error(result, axes, fontsize)
        return axes
    art = getattr(ax_loss, "_fl_explorer", None)
    if art is None:
        art = _build(axes, fontsize)
    h, ref, s = result.history, result.reference, result.settings
    A, b, c = result.quadratic
    theta_star, theta_u = result.theta_star, result.theta_uniform
    label = ("FedAvg" if s.local_epochs > 1 else "FedSGD") + f" ({s.weighting} weights)"

    art["ref"].set_data(np.arange(len(ref.losses)), ref.losses)
    art["fed"].set_data(np.arange(len(h.losses)), h.losses)
    art["fed"].set_label(label)
    art["min"].set_ydata([float(theta_star @ A @ theta_star - 2 * b @ theta_star + c)] * 2)
    finite = np.concatenate([ref.losses, h.losses])
    ax_loss.set_xlim(0, max(s.rounds, 1))
    ax_loss.set_ylim(0.8 * finite.min(), 1.5 * finite.max())
    ax_loss.legend(fontsize=fontsize - 1, loc="upper right")
    diverged = h.diverged
    ax_loss.set_title(f"N = {s.n_parties} parties, η = {s.lr:.3g}, E = {s.local_epochs}",
                      fontsize=fontsize)
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
    art["uniform"].set_visible(not np.allclose(theta_u, theta_star, atol=1e-6))
    art["uniform"].set_label("unweighted fixed point θ°" if art["uniform"].get_visible() else "_hidden")
    ax_path.legend(fontsize=fontsize - 2, loc="lower right")
    ax_path.set_title(f"distance to θ*: {result.distance:.2e}", fontsize=fontsize)
    return axes


def new_axes(*, dpi: float = 80):
    """A figure (not registered with pyplot) with the explorer's two Axes.

    A fixed layout rather than ``constrained``: re-measuring every label on
    each redraw would cost more than the simulation itself.
    """
    from matplotlib.figure import Figure

    fig = Figure(figsize=(11, 4.3), dpi=dpi)
    fig.subplots_adjust(left=0.07, right=0.985, bottom=0.12, top=0.92, wspace=0.2)
    return fig.subplots(1, 2)


def _build(axes, fontsize):
    """Create the explorer's artists once; later draws only update their data."""
    from matplotlib.ticker import NullLocator

    ax_loss, ax_path = axes
    for ax in axes:
        ax.clear()
        ax.set_axis_on()
        ax.tick_params(labelsize=fontsize - 1)
    art = {
        "ref": ax_loss.plot([], [], "--", color="0.45", lw=2, label="centralized GD")[0],
        "fed": ax_loss.plot([], [], color="tab:blue", lw=2, label="federated")[0],
        "min": ax_loss.axhline(1.0, color="tab:green", lw=1, ls=":", label="least-squares minimum"),
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
    }
    ax_loss.set_yscale("log")
    ax_loss.yaxis.set_minor_locator(NullLocator())   # fewer tick objects: faster redraws
    ax_loss.set_xlabel("round", fontsize=fontsize)
    ax_loss.set_ylabel("global training loss (MSE)", fontsize=fontsize)
    ax_path.set_xlabel("θ0 (intercept)", fontsize=fontsize)
    ax_path.set_ylabel("θ1 (slope)", fontsize=fontsize)
    ax_loss._fl_explorer = art
    return art


def _draw_error(result, axes, fontsize):
    for ax in axes:
        ax.clear()
        ax.set_axis_off()
    axes[0]._fl_explorer = None
    axes[0].text(0.02, 0.5, result.error, transform=axes[0].transAxes, color="tab:red",
                 fontsize=fontsize + 1, va="center", wrap=True)


def explorer(settings: Settings = Settings(), *, engines=("vectorized", "loop")):
    """The widget: sliders for every knob, redrawn when a slider is released.

    Returns an ``ipywidgets.VBox``; display it as the last line of a cell.
    """
    import ipywidgets as w
    from IPython.display import display

    s = settings
    style = {"description_width": "110px"}
    layout = w.Layout(width="420px")
    knobs = {
        "n_parties": w.IntSlider(s.n_parties, *LIMITS["n_parties"], description="parties N"),
        "lr": w.FloatLogSlider(s.lr, base=10, min=np.log10(LIMITS["lr"][0]), max=np.log10(LIMITS["lr"][1]),
                               step=0.05, description="learning rate η", readout_format=".3g"),
        "rounds": w.IntSlider(s.rounds, *LIMITS["rounds"], description="rounds"),
        "local_epochs": w.IntSlider(s.local_epochs, *LIMITS["local_epochs"], description="local epochs E"),
        "skew": w.FloatSlider(s.skew, *LIMITS["skew"], step=0.1, description="size skew"),
        "weighting": w.ToggleButtons(options=list(WEIGHTINGS), value=s.weighting, description="weights"),
    }
    if len(engines) > 1:
        knobs["engine"] = w.ToggleButtons(options=list(engines), value=s.engine, description="engine")
    for knob in knobs.values():
        knob.style = style
        if hasattr(knob, "continuous_update"):
            knob.continuous_update = False
            knob.layout = layout
    out = w.Output()
    status = w.HTML()
    axes = new_axes()
    fig = axes[0].figure

    def redraw(_=None):
        current = s.replace(**{k: v.value for k, v in knobs.items()})
        result = simulate(current)
        draw(result, axes)
        color = "#b00" if (not result.ok or result.history.diverged) else "#333"
        status.value = f"<span style='color:{color}; font-size:1.1em'>{result.message}</span>"
        with out:
            out.clear_output(wait=True)
            display(fig)

    for knob in knobs.values():
        knob.observe(redraw, names="value")
    redraw()
    left = w.VBox(list(knobs.values())[:3])
    right = w.VBox(list(knobs.values())[3:])
    return w.VBox([w.HBox([left, right]), status, out])
