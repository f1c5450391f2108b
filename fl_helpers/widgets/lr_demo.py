r"""The learning-rate demo of notebook 01: what the step size does to gradient descent.

For the MSE of linear regression the Hessian is constant,
:math:`H = \frac2m\tilde X^\top\tilde X` with eigenvalues
:math:`\lambda_{\min} \le \dots \le \lambda_{\max}`, and gradient descent
:math:`\theta_{t+1} = \theta_t - \eta\nabla L(\theta_t)` obeys

.. math::
    \theta_t - \theta^\star = (I - \eta H)^t\,(\theta_0 - \theta^\star).

So it converges iff :math:`0 < \eta < 2/\lambda_{\max}`; the error shrinks per
step by the factor :math:`\rho(\eta) = \max_k |1 - \eta\lambda_k|`, smallest at
:math:`\eta^\star = 2/(\lambda_{\min} + \lambda_{\max})` where
:math:`\rho = (\kappa - 1)/(\kappa + 1)`, :math:`\kappa = \lambda_{\max}/\lambda_{\min}`
(e.g. Nocedal & Wright, *Numerical Optimization*, 2nd ed., section 3.3).

Thin widget: :func:`simulate` is pure, :func:`draw` only draws; the notebook
binds sliders to them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from .. import validation as valid
from ..history import History
from ..linear import hessian, mse
from ..plotting import _dims, plot_loss_contours, plot_losses, quadratic_slice
from ..reference import centralized_gd


@dataclass(frozen=True)
class LearningRateLimits:
    r"""The learning rates that matter for gradient descent on one dataset.

    Attributes
    ----------
    eigenvalues : ndarray
        Eigenvalues of :math:`H = \frac2m\tilde X^\top\tilde X`, ascending.
    lr_max : float
        :math:`2/\lambda_{\max}`: gradient descent converges iff :math:`0 < \eta <` lr_max.
    lr_opt : float
        :math:`2/(\lambda_{\min} + \lambda_{\max})`, the fastest constant step.
    condition_number : float
        :math:`\kappa = \lambda_{\max}/\lambda_{\min}` (inf if :math:`H` is singular).
    rate_opt : float
        :math:`(\kappa - 1)/(\kappa + 1)`, the error's shrink factor per step at lr_opt.
    """

    eigenvalues: np.ndarray
    lr_max: float
    lr_opt: float
    condition_number: float
    rate_opt: float


def learning_rate_limits(X) -> LearningRateLimits:
    r"""Eigenvalues of the MSE Hessian and the learning rates they fix (see the module docstring)."""
    X = valid.features(X)
    lam = np.linalg.eigvalsh(hessian(X))
    lo, hi = float(max(lam[0], 0.0)), float(lam[-1])
    kappa = hi / lo if lo > 0 else float("inf")
    rate = (kappa - 1) / (kappa + 1) if np.isfinite(kappa) else 1.0
    return LearningRateLimits(eigenvalues=lam, lr_max=2.0 / hi, lr_opt=2.0 / (lo + hi),
                              condition_number=kappa, rate_opt=rate)


def contraction_factor(X, *, lr) -> float:
    r""":math:`\rho(\eta) = \max_k |1 - \eta\lambda_k|`: the error's shrink factor per step (< 1 iff stable)."""
    X = valid.features(X)
    lr = valid.positive_float("lr", lr)
    lam = np.linalg.eigvalsh(hessian(X))
    return float(np.max(np.abs(1.0 - lr * lam)))


@dataclass(frozen=True)
class LearningRateRun:
    """Everything :func:`draw` needs about one gradient-descent run."""

    history: History
    lr: float
    limits: LearningRateLimits
    theta_star: np.ndarray
    loss_star: float
    loss2d: Callable
    dims: tuple[int, int]

    @property
    def message(self) -> str:
        """One line for the class: the step size relative to 2/λ_max and the outcome."""
        ratio = self.lr / self.limits.lr_max
        head = f"η = {self.lr:.3g} = {ratio:.2f} × 2/λmax"
        if self.history.diverged:
            return f"{head}: diverged at step {self.history.diverged_at}"
        rho = abs(1.0 - self.lr * self.limits.eigenvalues).max()
        return f"{head}: converges, error × {rho:.3f} per step"


def simulate(X, y, *, lr, rounds, theta0=None, dims=(0, 1)) -> LearningRateRun:
    """Run centralized gradient descent at ``lr`` and collect what the picture needs.

    Pure and deterministic. ``dims`` picks the two coordinates of the contour
    plane (with one feature the plane is the whole parameter space; with more,
    it is the slice through :math:`\\theta^\\star` and the path is projected on it).
    """
    X = valid.features(X)
    y = valid.targets(y, X.shape[0])
    history = centralized_gd(X, y, lr=lr, rounds=rounds, theta0=theta0)
    theta_star = np.linalg.lstsq(np.hstack([np.ones((len(y), 1)), X]), y, rcond=None)[0]
    dims = _dims(dims)
    return LearningRateRun(history=history, lr=float(lr), limits=learning_rate_limits(X),
                           theta_star=theta_star, loss_star=mse(theta_star, X, y),
                           loss2d=quadratic_slice(X, y, theta_star, dims), dims=dims)


def draw(run: LearningRateRun, axes=None, *, fontsize: float | None = None):
    """Two panels: (a) loss above the minimum vs step, (b) the path on the loss contours.

    ``axes``: a pair of Axes (a new figure when None). Returns the pair.
    A diverged run is drawn up to its last finite step and said in the title.
    """
    if axes is None:
        import matplotlib.pyplot as plt

        _, axes = plt.subplots(1, 2, figsize=(11, 4.3), layout="constrained")
    ax_loss, ax_path = axes
    h = run.history
    label = f"gradient descent, η = {run.lr:.3g}"
    plot_losses({label: h}, ax_loss, optimum=run.loss_star, fontsize=fontsize, xlabel="step",
                title=run.message)
    ax_loss.set_xlim(0, max(h.rounds + (h.diverged_at is not None), 1))
    start = h.thetas[0][list(run.dims)]
    plot_loss_contours(run.loss2d, ax_path, center=run.theta_star[list(run.dims)],
                       span=np.maximum(1.35 * np.abs(start - run.theta_star[list(run.dims)]), 0.5),
                       paths={label: h}, dims=run.dims, optimum=run.theta_star,
                       labels=(f"θ{run.dims[0]}" + (" (intercept)" if run.dims[0] == 0 else ""),
                               f"θ{run.dims[1]}" + (" (slope)" if run.dims[0] == 0 and run.dims[1] == 1 else "")),
                       title=f"{h.rounds} steps, ‖θ − θ*‖ = {np.linalg.norm(h.theta - run.theta_star):.2g}",
                       fontsize=fontsize)
    if h.diverged:
        ax_loss.title.set_color("#D55E00")
    return axes


def widget(X, y, *, lr: float = 0.1, rounds: int = 150, lr_range=(1e-3, 1.0), max_rounds: int = 400):
    """Sliders for the learning rate (log scale) and the number of steps, redrawn on release.

    The picture is :func:`draw` of :func:`simulate`, rendered to PNG into an
    ``ipywidgets.Image`` (no ``Output`` widget capturing the figure). Returns
    an ``ipywidgets.VBox``; its ``children[1]`` is the image.
    """
    import ipywidgets as w
    from matplotlib.figure import Figure

    from .rendering import live_box, render_png

    lr_slider = w.FloatLogSlider(value=lr, base=10, min=np.log10(lr_range[0]), max=np.log10(lr_range[1]),
                                 step=0.01, readout_format=".4f", description="η", continuous_update=False)
    rounds_slider = w.IntSlider(value=rounds, min=1, max=max_rounds, description="steps",
                                continuous_update=False)
    image = w.Image(format="png")

    def redraw(_=None):
        fig = Figure(figsize=(11, 4.3), layout="constrained")
        draw(simulate(X, y, lr=lr_slider.value, rounds=rounds_slider.value), fig.subplots(1, 2))
        image.value = render_png(fig)

    for slider in (lr_slider, rounds_slider):
        slider.observe(redraw, names="value")
    redraw()
    return live_box([w.HBox([lr_slider, rounds_slider]), image], picture=image,
                    note="Interactive learning-rate demo: run this notebook in JupyterLab to move the "
                         "sliders; the picture shows the settings it was saved with.")
