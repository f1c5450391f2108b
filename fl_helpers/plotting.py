r"""Plotting: pure draw functions for the course's figures.

Every function draws on the Axes it is given (``ax=None`` makes a new
figure), returns that Axes, never calls ``plt.show()`` and never changes
``matplotlib.rcParams``: sizes are set on the Axes only (``fontsize=`` makes
a figure readable on a classroom projector). Colours follow the
colour-blind-safe Okabe-Ito palette.

Functions
---------
plot_losses          loss vs round for several runs; a diverged run stops at
                     its last finite round, marked with an 'x'
plot_loss_contours   contours of a loss in a 2-D parameter plane
                     :math:`(\theta_0, \theta_1)`, trajectories on top
quadratic_slice      the MSE restricted to two coordinates of :math:`\theta`
                     (a vectorized ``loss2d`` for :func:`plot_loss_contours`)
quadratic_loss2d     :math:`L^\star + \tfrac12 (t - c)^\top H (t - c)` as a ``loss2d``
plot_round_diagram   the federated round as a picture (server, parties, arrows)
plot_label_histogram how many samples of each label every party holds
                     (stacked bars, one per party; :func:`fl_helpers.label_histogram`)
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import numpy as np

from . import validation as valid
from .data import label_histogram
from .history import History
from .linear import add_bias
from .parties import Party

#: Okabe & Ito (2008) colour-blind-safe colours, in the order runs get them.
COLORS = ("#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#000000")
REFERENCE_COLOR = "0.45"


# --------------------------------------------------------------------------- helpers

def _new_axes(figsize=(6.4, 4.2)):
    import matplotlib.pyplot as plt

    _, ax = plt.subplots(figsize=figsize, layout="constrained")
    return ax


def _check_fontsize(fontsize) -> float | None:
    if fontsize is None:
        return None
    return valid.positive_float("fontsize", fontsize)


def _apply_fontsize(ax, fontsize: float | None) -> None:
    """Set label, tick, title and legend sizes on this Axes only (rcParams untouched)."""
    if fontsize is None:
        return
    ax.xaxis.label.set_fontsize(fontsize)
    ax.yaxis.label.set_fontsize(fontsize)
    ax.title.set_fontsize(fontsize * 1.1)
    ax.tick_params(labelsize=fontsize * 0.9)
    legend = ax.get_legend()
    if legend is not None:
        for text in legend.get_texts():
            text.set_fontsize(fontsize * 0.9)


def _finite_prefix(values: np.ndarray) -> tuple[np.ndarray, int | None]:
    """Values up to the first non-finite one, and the index of that one (or None)."""
    bad = ~np.isfinite(values)
    if values.ndim > 1:
        bad = bad.any(axis=tuple(range(1, values.ndim)))
    if not bad.any():
        return values, None
    k = int(np.argmax(bad))
    return values[:k], k


def _loss_curve(name: str, value) -> tuple[np.ndarray, int | None]:
    """A run's finite losses and the round at which it diverged (None if it did not)."""
    if isinstance(value, History):
        losses, cut = _finite_prefix(np.asarray(value.losses, dtype=np.float64))
        return losses, value.diverged_at if value.diverged_at is not None else cut
    try:
        arr = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise TypeError(f"{name} must be a 1-D array of losses or a History, "
                        f"got {type(value).__name__}") from exc
    if arr.ndim != 1 or arr.size == 0:
        raise ValueError(f"{name} must be a non-empty 1-D array of losses or a History, got shape {arr.shape}")
    return _finite_prefix(arr)


def _point(name: str, value, dims: tuple[int, int]) -> np.ndarray:
    """A 2-D point: a length-2 array, or a full theta from which ``dims`` are taken."""
    arr = np.asarray(value, dtype=np.float64).ravel()
    if arr.size == 2:
        return arr
    if arr.size > max(dims):
        return arr[list(dims)]
    raise ValueError(f"{name} must be a point (t0, t1) or a theta with more than {max(dims)} entries, "
                     f"got shape {np.shape(value)}")


def _path(name: str, value, dims: tuple[int, int]) -> np.ndarray:
    """A trajectory of shape (R, 2): from an array (R, 2), an array (R, p) or a History."""
    arr = value.thetas if isinstance(value, History) else value
    try:
        arr = np.asarray(arr, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise TypeError(f"{name} must be an array of shape (R, 2) or a History, got {type(value).__name__}") from exc
    if arr.ndim != 2 or arr.shape[0] == 0 or arr.shape[1] < 2:
        raise ValueError(f"{name} must be an array of shape (R, 2) or (R, p) or a History, got shape {arr.shape}")
    if arr.shape[1] > 2:                      # a full theta per row: keep the plotted coordinates
        if arr.shape[1] <= max(dims):
            raise ValueError(f"{name} has {arr.shape[1]} columns, too few for dims={tuple(dims)}")
        arr = arr[:, list(dims)]
    return _finite_prefix(arr)[0]


def _dims(dims) -> tuple[int, int]:
    if (not isinstance(dims, (tuple, list)) or len(dims) != 2
            or not all(isinstance(k, (int, np.integer)) and not isinstance(k, bool) for k in dims)):
        raise TypeError(f"dims must be a pair of parameter indices such as (0, 1), got {dims!r}")
    if dims[0] == dims[1] or min(dims) < 0:
        raise ValueError(f"dims must be two different non-negative indices, got {tuple(dims)}")
    return int(dims[0]), int(dims[1])


def _colors(colors, labels) -> list:
    """One colour per label: the Okabe-Ito cycle, a sequence in label order, or a dict label -> colour."""
    if colors is None:
        return [COLORS[k % len(COLORS)] for k in range(len(labels))]
    if isinstance(colors, Mapping):
        return [colors.get(label, COLORS[k % len(COLORS)]) for k, label in enumerate(labels)]
    if isinstance(colors, str) or len(colors) < len(labels):
        raise ValueError(f"colors must be a dict label -> colour or a sequence of at least {len(labels)} "
                         f"colours, got {colors!r}")
    return list(colors)


def _mapping(name: str, value) -> Mapping:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise TypeError(f"{name} must be a dict label -> data, got {type(value).__name__}")
    return value


# --------------------------------------------------------------------------- loss curves

def plot_losses(curves: Mapping, ax=None, *, log: bool = True, reference=None,
                reference_label: str = "centralized reference", optimum: float | None = None,
                title: str | None = None, xlabel: str = "round", ylabel: str | None = None,
                colors=None, fontsize: float | None = None):
    r"""Loss vs round for several runs, one line each.

    A run is an array of losses :math:`L(\theta_0), L(\theta_1), \dots` or a
    :class:`~fl_helpers.History`. Runs may have different lengths. A run that
    diverged (a History with ``diverged_at`` set, or an array that turns
    NaN/inf) is drawn up to its last finite round only, ends with an 'x' and
    the note "diverged at round k" ("step k" when ``xlabel`` says step); no NaN is ever handed to matplotlib.

    Parameters
    ----------
    curves : dict label -> array or History
        The runs, drawn in the Okabe-Ito colours in order.
    ax : matplotlib Axes, optional
        Where to draw; a new figure when None.
    log : bool
        Logarithmic loss axis (default). Points <= 0 are left out on a log axis.
    reference : array, History or float, optional
        A reference run drawn dashed grey (e.g. centralized gradient
        descent), or a constant drawn as a dashed horizontal line (e.g. the
        least-squares loss :math:`L^\star`).
    optimum : float, optional
        If given, every curve is drawn as the excess loss
        :math:`L(\theta_t) - L^\star` (the quantity that shrinks geometrically
        in gradient descent).
    title, xlabel, ylabel : str, optional
    colors : sequence or dict label -> colour, optional
        Default: the Okabe-Ito colours in order. Pass the same to
        :func:`plot_loss_contours` to keep a run's colour in both panels.
    fontsize : float, optional
        Font size of labels, ticks and legend (e.g. 16 for projection).

    Returns
    -------
    matplotlib Axes
        One Line2D per run, one per divergence marker, one for the reference.
    """
    curves = _mapping("curves", curves)
    if not curves:
        raise ValueError("curves must hold at least one run, got an empty dict")
    fontsize = _check_fontsize(fontsize)
    if optimum is not None:
        if isinstance(optimum, bool) or not isinstance(optimum, (int, float, np.floating, np.integer)) \
                or not np.isfinite(optimum):
            raise TypeError(f"optimum must be a finite number (the minimum loss), got {optimum!r}")
        optimum = float(optimum)
    ax = _new_axes() if ax is None else ax
    unit = "step" if str(xlabel).startswith("step") else "round"     # centralized GD has steps, FL rounds

    def shown(losses: np.ndarray):
        rounds = np.arange(len(losses))
        vals = losses - optimum if optimum is not None else losses
        keep = vals > 0 if log else np.ones(len(vals), dtype=bool)
        return rounds[keep], vals[keep]

    if reference is not None:
        if np.ndim(reference) == 0 and not isinstance(reference, History):
            level = float(reference) - (optimum or 0.0)
            if not log or level > 0:
                ax.axhline(level, color=REFERENCE_COLOR, ls="--", lw=1.5, label=reference_label)
        else:
            ref, _ = _loss_curve("reference", reference)
            ax.plot(*shown(ref), "--", color=REFERENCE_COLOR, lw=2, label=reference_label, zorder=3)

    for color, (label, run) in zip(_colors(colors, list(curves)), curves.items()):
        losses, diverged_at = _loss_curve(f"curves[{label!r}]", run)
        x, v = shown(losses)
        ax.plot(x, v, "-", color=color, lw=2, label=str(label))
        if diverged_at is not None and len(x):
            ax.plot([x[-1]], [v[-1]], "x", color=color, ms=11, mew=2.5, label=f"_diverged {label}")
            ax.annotate(f"diverged at {unit} {diverged_at}", (x[-1], v[-1]), xytext=(-10, 0),
                        textcoords="offset points", ha="right", va="center", color=color,
                        fontsize=(fontsize or 10) * 0.9)
    if log:
        ax.set_yscale("log")
    ax.set_xlabel(xlabel)
    if ylabel is None:
        ylabel = "loss above the minimum  L(θ) − L*" if optimum is not None else "training loss (MSE)"
    ax.set_ylabel(ylabel)
    if title:
        ax.set_title(title)
    ax.grid(True, which="major", alpha=0.3)
    ax.legend(loc="best", frameon=False)
    _apply_fontsize(ax, fontsize)
    return ax


# --------------------------------------------------------------------------- loss landscapes

def quadratic_slice(X, y, theta_ref, dims=(0, 1)) -> Callable:
    r"""The MSE as a function of two coordinates of :math:`\theta`, the others fixed.

    With :math:`\theta = \theta_{\rm ref} + a\,e_j + b\,e_k` (``dims = (j, k)``)
    the residual is :math:`r = r_0 + a\,\tilde x_j + b\,\tilde x_k`, so

    .. math::
        L(a, b) = \tfrac1m\lVert r_0\rVert^2 + 2a\,\overline{r_0\tilde x_j}
                  + 2b\,\overline{r_0\tilde x_k} + a^2\,\overline{\tilde x_j^2}
                  + 2ab\,\overline{\tilde x_j\tilde x_k} + b^2\,\overline{\tilde x_k^2}

    (bars are means over the samples, :math:`\tilde X = [\mathbf 1, X]`).

    Parameters
    ----------
    X : array (m, d), y : array (m,)
    theta_ref : array (d + 1,)
        Values of the coordinates not in ``dims``; ``theta_ref[dims]`` is ignored.
    dims : pair of int
        Which coordinates vary (0 is the intercept :math:`\theta_0`).

    Returns
    -------
    loss2d : callable (t0, t1) -> array
        Vectorized: ``loss2d(T0, T1)`` has the broadcast shape of ``T0, T1`` and
        equals ``mse(theta, X, y)`` with ``theta[dims] = (t0, t1)``.
    """
    X = valid.features(X)
    y = valid.targets(y, X.shape[0])
    ref = valid.theta(theta_ref, X.shape[1] + 1, name="theta_ref")
    j, k = _dims(dims)
    if max(j, k) > X.shape[1]:
        raise ValueError(f"dims must index theta, i.e. lie in [0, {X.shape[1]}], got {(j, k)}")
    Xt = add_bias(X)
    base = ref.copy()
    base[[j, k]] = 0.0
    r0 = Xt @ base - y
    xj, xk = Xt[:, j], Xt[:, k]
    c0, cj, ck = r0 @ r0, r0 @ xj, r0 @ xk
    qjj, qjk, qkk = xj @ xj, xj @ xk, xk @ xk
    m = len(y)

    def loss2d(t0, t1):
        a = np.asarray(t0, dtype=np.float64)
        b = np.asarray(t1, dtype=np.float64)
        return (c0 + 2 * a * cj + 2 * b * ck + a * a * qjj + 2 * a * b * qjk + b * b * qkk) / m

    return loss2d


def quadratic_loss2d(hessian, minimum, *, min_loss: float = 0.0) -> Callable:
    r"""A 2-D quadratic :math:`L(t) = L^\star + \tfrac12 (t - c)^\top H (t - c)` as a ``loss2d``.

    Parameters
    ----------
    hessian : array (2, 2)
        Symmetric positive semi-definite :math:`H`.
    minimum : array (2,)
        The minimiser :math:`c`.
    min_loss : float
        :math:`L^\star`, the value at the minimum.
    """
    H = np.asarray(hessian, dtype=np.float64)
    c = np.asarray(minimum, dtype=np.float64)
    if H.shape != (2, 2) or not np.all(np.isfinite(H)) or not np.allclose(H, H.T):
        raise ValueError(f"hessian must be a finite symmetric 2 x 2 matrix, got {H!r}")
    if np.linalg.eigvalsh(H).min() < -1e-12 * max(1.0, np.abs(H).max()):
        raise ValueError(f"hessian must be positive semi-definite, got eigenvalues {np.linalg.eigvalsh(H)}")
    if c.shape != (2,) or not np.all(np.isfinite(c)):
        raise ValueError(f"minimum must be a finite point of shape (2,), got shape {c.shape}")
    if isinstance(min_loss, bool) or not np.isfinite(min_loss):
        raise ValueError(f"min_loss must be a finite number, got {min_loss!r}")

    def loss2d(t0, t1):
        a = np.asarray(t0, dtype=np.float64) - c[0]
        b = np.asarray(t1, dtype=np.float64) - c[1]
        return float(min_loss) + 0.5 * (H[0, 0] * a * a + 2 * H[0, 1] * a * b + H[1, 1] * b * b)

    return loss2d


def _window(center, span, points: list[np.ndarray]):
    if center is None:
        if not points:
            raise ValueError("center is required when there is no optimum to centre the plot on")
        center = points[0]
    center = np.asarray(center, dtype=np.float64).ravel()
    if center.shape != (2,) or not np.all(np.isfinite(center)):
        raise ValueError(f"center must be a finite point (t0, t1), got {center!r}")
    if span is None:
        far = np.zeros(2)
        for p in points:
            far = np.maximum(far, np.abs(p - center))
        span = np.maximum(1.3 * far, 0.5)
    span = np.broadcast_to(np.asarray(span, dtype=np.float64), (2,)).copy()
    if not np.all(np.isfinite(span)) or np.any(span <= 0):
        raise ValueError(f"span must be a positive half-width or a pair of them, got {span!r}")
    return center, span


def plot_loss_contours(loss2d, ax=None, *, center=None, span=None, paths: Mapping | None = None,
                       optimum=None, optimum_label: str = "least squares θ*", marks: Mapping | None = None,
                       dims=(0, 1), levels=14, resolution: int = 121,
                       labels: tuple[str, str] = ("θ0 (intercept)", "θ1 (slope)"),
                       title: str | None = None, legend: bool = True, colors=None,
                       fontsize: float | None = None):
    r"""Contours of a loss in a 2-D parameter plane, with trajectories drawn on top.

    Parameters
    ----------
    loss2d : callable or tuple
        ``loss2d(T0, T1) -> Z`` evaluated on a ``resolution`` x ``resolution``
        grid (e.g. from :func:`quadratic_slice` or :func:`quadratic_loss2d`),
        or precomputed grids ``(T0, T1, Z)``.
    ax : matplotlib Axes, optional
    center, span : point and float or pair, optional
        The window :math:`[c - s, c + s]^2` of a callable ``loss2d``, a square; both axes have the same
        scale, so the contours show the loss's true shape (a long thin ellipse
        means a badly conditioned Hessian). ``center`` defaults to
        ``optimum``; ``span`` to 1.3 x the farthest of the optimum, the marks
        and the paths' starting points (at least 0.5); of a pair
        :math:`(s_0, s_1)` the larger half-width is used for both axes.
    paths : dict label -> array (R, 2) or (R, p) or History
        Trajectories :math:`\theta^{(0)}, \theta^{(1)}, \dots` (from a History its
        ``thetas[:, dims]``). Each is drawn as a line with small dots, a
        white square at the start and a filled circle at the end. Rows after
        the first non-finite one are dropped; the axes keep the window, so a
        diverging path leaves the picture instead of rescaling it.
    optimum : point, optional
        Drawn as a star (a full theta is reduced to ``theta[dims]``).
    marks : dict label -> point, optional
        Further labelled points (e.g. the fixed point of the unweighted mean).
    dims : pair of int
        Which coordinates of a full theta / History the axes show.
    levels : int or sequence
        Number of contour levels (spaced geometrically above the grid's
        minimum, so the ellipses near the optimum are visible) or the levels.
        Every third level, counted from the highest, is labelled with its loss value.
    labels : pair of str
        Axis labels.
    colors : sequence or dict label -> colour, optional
        Colours of the paths (default: the Okabe-Ito colours in order).

    Returns
    -------
    matplotlib Axes
        Per path three Line2D (path, start, end); one per optimum and mark.
        Equal aspect; markers (start, end, optimum, marks) are drawn above
        all paths, so a later path never hides an earlier one's start.
    """
    dims = _dims(dims)
    paths = _mapping("paths", paths)
    marks = _mapping("marks", marks)
    fontsize = _check_fontsize(fontsize)
    resolution = valid.integer("resolution", resolution, minimum=5, maximum=1000)
    opt = None if optimum is None else _point("optimum", optimum, dims)
    mark_pts = {label: _point(f"marks[{label!r}]", p, dims) for label, p in marks.items()}
    path_pts = {label: _path(f"paths[{label!r}]", p, dims) for label, p in paths.items()}

    if callable(loss2d):
        points = ([opt] if opt is not None else []) + list(mark_pts.values()) \
            + [p[0] for p in path_pts.values() if len(p)]
        c, s = _window(center, span, points)
        s = np.full(2, s.max())                       # a square window: equal scales on both axes
        T0, T1 = np.meshgrid(np.linspace(c[0] - s[0], c[0] + s[0], resolution),
                             np.linspace(c[1] - s[1], c[1] + s[1], resolution))
        Z = np.asarray(loss2d(T0, T1), dtype=np.float64)
        if Z.shape != T0.shape:
            raise ValueError(f"loss2d must return an array shaped like its inputs {T0.shape}, got {Z.shape}")
    elif isinstance(loss2d, tuple) and len(loss2d) == 3:
        T0, T1, Z = (np.asarray(a, dtype=np.float64) for a in loss2d)
        if not (T0.shape == T1.shape == Z.shape) or T0.ndim != 2:
            raise ValueError(f"grids (T0, T1, Z) must be 2-D with equal shapes, got {T0.shape}, {T1.shape}, {Z.shape}")
    else:
        raise TypeError(f"loss2d must be a callable loss2d(T0, T1) or a tuple of grids (T0, T1, Z), "
                        f"got {type(loss2d).__name__}")
    if not np.all(np.isfinite(Z)):
        raise ValueError("the loss grid contains NaN/inf values")

    if isinstance(levels, (int, np.integer)) and not isinstance(levels, bool):
        n = valid.integer("levels", int(levels), minimum=2)
        lo, hi = float(Z.min()), float(Z.max())
        spread = max(hi - lo, 1e-12)
        levels = lo + np.geomspace(2e-3 * spread, spread, n)
    else:
        levels = np.sort(np.asarray(levels, dtype=np.float64))

    ax = _new_axes(figsize=(5.6, 4.6)) if ax is None else ax
    contours = ax.contour(T0, T1, Z, levels=levels, colors="0.72", linewidths=0.9, zorder=1)
    ax.clabel(contours, contours.levels[::-3], fmt="%.3g", fontsize=7, colors="0.4")
    for color, (label, p) in zip(_colors(colors, list(path_pts)), path_pts.items()):
        ax.plot(p[:, 0], p[:, 1], "-", color=color, lw=2, marker=".", ms=4, label=str(label), zorder=3)
        if len(p):
            ax.plot(p[0, 0], p[0, 1], "s", mfc="white", mec=color, mew=2, ms=8, label=f"_start {label}", zorder=4)
            ax.plot(p[-1, 0], p[-1, 1], "o", color=color, mec="black", ms=8, label=f"_end {label}", zorder=4)
    if opt is not None:
        ax.plot(opt[0], opt[1], "*", color="#009E73", mec="black", ms=18, label=optimum_label, zorder=5)
    for k, (label, p) in enumerate(mark_pts.items()):
        ax.plot(p[0], p[1], "XPDv^"[k % 5], color="#D55E00", mec="black", ms=11, label=str(label), zorder=5)
    ax.set_xlim(float(T0.min()), float(T0.max()))
    ax.set_ylim(float(T1.min()), float(T1.max()))
    ax.set_aspect("equal", adjustable="box")
    ax.set_xlabel(labels[0])
    ax.set_ylabel(labels[1])
    if title:
        ax.set_title(title)
    if legend and (path_pts or opt is not None or mark_pts):
        ax.legend(loc="best", framealpha=0.9)
    _apply_fontsize(ax, fontsize)
    return ax


# --------------------------------------------------------------------------- the round as a picture

def plot_round_diagram(ax=None, *, n_parties: int = 3, fontsize: float | None = None):
    r"""The federated round as a picture: one server, ``n_parties`` parties, the round's four blocks.

    1. broadcast :math:`\theta` (arrows down, labelled with what travels);
    2. local work, drawn **inside each party's box**, since it happens on the
    party, on its local data: it computes the update :math:`\Delta_i`, which
    travels up with the weight :math:`m_i` (arrows up);
    3. aggregate :math:`\Delta = \sum_i \frac{m_i}{M}\Delta_i` and
    4. server update :math:`\theta \leftarrow \theta - \eta\Delta`, both in
    the server's box (the blocks of :mod:`fl_helpers.server`).

    The same picture as the notebooks' Mermaid diagram, drawn with matplotlib
    so that it shows wherever a PNG shows. Text is English only (the default
    font has no Chinese glyphs).
    """
    from matplotlib.patches import FancyArrowPatch, FancyBboxPatch

    n_parties = valid.integer("n_parties", n_parties, minimum=1, maximum=5)
    fontsize = _check_fontsize(fontsize) or 10.0
    ax = _new_axes(figsize=(9.5, 5.4)) if ax is None else ax
    ax.set_xlim(0, 10)
    ax.set_ylim(0, 6.2)
    ax.set_axis_off()
    blue, orange = "#0072B2", "#D55E00"

    def box(x, y, w, h, color):
        ax.add_patch(FancyBboxPatch((x - w / 2, y - h / 2), w, h, boxstyle="round,pad=0.08",
                                    fc=color, ec="0.25", lw=1.2))

    def arrow(x, y0, y1, color, label):
        ax.add_patch(FancyArrowPatch((x, y0), (x, y1), arrowstyle="-|>", mutation_scale=16,
                                     color=color, lw=1.8))
        ax.text(x, (y0 + y1) / 2, label, ha="center", va="center", color=color,
                fontsize=fontsize * 0.9, bbox={"fc": "white", "ec": "none", "pad": 1})

    box(5, 5.4, 9.0, 1.1, "#dbe9f6")                     # server: x 0.5..9.5, y 4.77..6.03
    ax.text(5, 5.4, "Central server: holds the global model θ\n"
            "3. aggregate  Δ = Σ (m$_i$/M) Δ$_i$     4. server update  θ ← θ − η Δ",
            ha="center", va="center", fontsize=fontsize)
    xs = np.linspace(1.7, 8.3, n_parties) if n_parties > 1 else np.array([5.0])
    width = min(2.6, 8.6 / n_parties - 0.3)
    top, bottom = 4.7, 2.4                               # arrows run between the boxes
    for i, x in enumerate(xs, start=1):
        box(x, 1.3, width, 2.0, "#fde7d6")               # party: y 0.22..2.38
        ax.text(x, 1.78, f"Party {i}\nlocal data D$_{i}$\n(m$_{i}$ samples,\nstays here)",
                ha="center", va="center", fontsize=fontsize)
        ax.text(x, 0.72, f"2. local work\non D$_{i}$ → Δ$_{i}$", ha="center", va="center",
                fontsize=fontsize * 0.9, fontweight="bold",
                bbox={"boxstyle": "round,pad=0.3", "fc": "white", "ec": "0.55", "lw": 0.8})
        arrow(x - 0.35, top, bottom, blue, "θ")
        arrow(x + 0.35, bottom, top, orange, f"Δ$_{i}$, m$_{i}$")
    ax.text(xs[0] - 0.5, 3.0, "1. broadcast θ", ha="right", va="center", color=blue,
            fontsize=fontsize * 0.95)                  # below the arrow labels, clear of the edge
    ax.text(xs[-1] + 0.5, 3.0, "update Δ$_i$\n+ weight m$_i$", ha="left", va="center",
            color=orange, fontsize=fontsize * 0.95)
    return ax


# --------------------------------------------------------------------------- labels per party

def _class_colors(n_classes: int) -> list:
    """Okabe-Ito for up to 7 classes, then matplotlib's tab10 / tab20, then viridis."""
    if n_classes <= len(COLORS):
        return list(COLORS[:n_classes])
    import matplotlib

    if n_classes <= 20:
        cmap = matplotlib.colormaps["tab10" if n_classes <= 10 else "tab20"]
        return [cmap(k) for k in range(n_classes)]
    cmap = matplotlib.colormaps["viridis"]
    return [cmap(k / (n_classes - 1)) for k in range(n_classes)]


def _label_counts(parties_or_counts, n_classes) -> tuple[np.ndarray, list[str] | None]:
    if isinstance(parties_or_counts, (list, tuple)) and parties_or_counts \
            and all(isinstance(p, Party) for p in parties_or_counts):
        names = [p.name if p.name else f"party {i}" for i, p in enumerate(parties_or_counts)]
        return label_histogram(parties_or_counts, n_classes), names
    try:
        counts = np.asarray(parties_or_counts, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise TypeError("parties_or_counts must be a list of Party objects or an (N, K) array of label counts, "
                        f"got {type(parties_or_counts).__name__}") from exc
    if counts.ndim != 2 or 0 in counts.shape:
        raise ValueError("parties_or_counts must be a list of Party objects or an (N, K) array of label counts, "
                         f"got shape {counts.shape}")
    if not np.all(np.isfinite(counts)) or counts.min() < 0:
        raise ValueError(f"parties_or_counts must hold finite counts >= 0, got values such as "
                         f"{counts[~np.isfinite(counts) | (counts < 0)][:3].tolist()}")
    if n_classes is not None and valid.integer("n_classes", n_classes, minimum=1) != counts.shape[1]:
        raise ValueError(f"n_classes must equal the number of columns of the counts ({counts.shape[1]}), "
                         f"got {n_classes}")
    return counts, None


def plot_label_histogram(parties_or_counts, ax=None, *, n_classes: int | None = None, normalize: bool = False,
                         title: str | None = None, fontsize: float | None = None):
    r"""Labels per party as stacked horizontal bars: one bar per party, one colour per class.

    The picture of label skew: with ``split(..., scheme="iid")`` every bar
    shows all colours in the same proportions; with ``scheme="shards"`` or a
    small Dirichlet :math:`\alpha` each bar is one or two colours.

    Parameters
    ----------
    parties_or_counts : list of Party, or array (N, K)
        Parties holding class labels (counted with
        :func:`fl_helpers.label_histogram`), or the counts themselves.
    ax : matplotlib Axes, optional
        Where to draw; a new figure (taller for more parties) when None.
    n_classes : int, optional
        K, for parties that miss the top labels (default: the largest label + 1).
    normalize : bool
        Draw each party's label mix (fractions summing to 1) instead of counts.
    title : str, optional
    fontsize : float, optional
        Font size of labels, ticks and legend (e.g. 16 for projection).

    Returns
    -------
    matplotlib Axes
        N x K bar patches (party 0 at the top) and a legend with one entry per class.
    """
    counts, names = _label_counts(parties_or_counts, n_classes)
    fontsize = _check_fontsize(fontsize)
    if not isinstance(normalize, (bool, np.bool_)):
        raise TypeError(f"normalize must be True or False, got {normalize!r}")
    n, k = counts.shape
    if normalize:
        totals = counts.sum(axis=1, keepdims=True)
        counts = np.divide(counts, totals, out=np.zeros_like(counts, dtype=np.float64), where=totals > 0)
    ax = _new_axes(figsize=(7.0, min(10.0, 1.4 + 0.3 * n))) if ax is None else ax
    rows = np.arange(n)
    left = np.zeros(n)
    height = 0.8 if n <= 60 else 1.0                      # many parties: bars touch, no white stripes
    for label, color in zip(range(k), _class_colors(k), strict=True):
        ax.barh(rows, counts[:, label], left=left, height=height, color=color, label=str(label),
                edgecolor="white" if n <= 60 else "none", linewidth=0.5)
        left = left + counts[:, label]
    if names is not None and n <= 30:
        ax.set_yticks(rows, names)
    else:                                                 # party numbers: whole numbers only
        from matplotlib.ticker import MaxNLocator

        ax.yaxis.set_major_locator(MaxNLocator(nbins=min(n, 10), integer=True))
    ax.set_ylim(n - 0.5, -0.5)                            # party 0 at the top
    ax.set_ylabel("party")
    ax.set_xlabel("fraction of the party's samples" if normalize else "samples")
    if normalize:
        ax.set_xlim(0, 1)
    if title:
        ax.set_title(title)
    ax.legend(title="label", loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False,
              ncols=1 if k <= 15 else 2, fontsize=(fontsize or 10) * 0.9)
    ax.grid(True, axis="x", alpha=0.3)
    ax.set_axisbelow(True)
    _apply_fontsize(ax, fontsize)
    return ax
