r"""Server optimizers (服务器优化器): what the server does with the averaged update.

The rules of Reddi et al. 2021, "Adaptive Federated Optimization" (ICLR 2021),
Algorithm 2 (FedOpt): FedAvg, FedAvgM, FedAdagrad, FedAdam and FedYogi.

They are written in terms of the average *model change* of round :math:`t`

.. math:: \Delta_t = \sum_i w_i\,(\theta_i - \theta_{t-1}),

which points from the global model **towards** the clients' models, so every
rule *adds* it:

.. math::
    m_t &= \beta_1 m_{t-1} + (1 - \beta_1)\,\Delta_t \\
    v_t &= \text{rule}(v_{t-1}, \Delta_t^2) \\
    \theta_t &= \theta_{t-1} + \eta\,\frac{m_t}{\sqrt{v_t} + \tau}

with :math:`m_0 = 0`, :math:`v_0 = \tau^2` and no bias correction (squares,
square roots and divisions are element-wise). :func:`sgd` is the simpler
:math:`\theta_t = \theta_{t-1} + \eta\,m_t`, :math:`m_t = \mu m_{t-1} + \Delta_t`.

Sign convention: :mod:`fl_helpers.server` averages pseudo-gradients
:math:`(\theta - \theta_i)/\eta_\text{local}` and *subtracts* them; the
:math:`\Delta_t` here is :math:`-\eta_\text{local}` times that average.

Each optimizer is a small frozen dataclass with explicit state::

    opt = adam(0.1)
    state = opt.init(theta)
    theta, state = opt.step(theta, delta, state)   # new arrays, inputs untouched
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from . import validation as valid

__all__ = ["OPTIMIZERS", "OptState", "ServerOptimizer", "SGD", "Adam", "Yogi", "Adagrad",
           "sgd", "adam", "yogi", "adagrad"]


@dataclass(frozen=True, eq=False)
class OptState:
    """The state of a server optimizer between rounds (read-only arrays).

    Attributes
    ----------
    rule : str
        ``name`` of the optimizer that made this state (``"sgd"``, ``"adam"``, ...).
    t : int
        Number of steps taken.
    m : ndarray of float64, same shape as theta
        First moment (momentum buffer) :math:`m_t`; :math:`m_0 = 0`.
    v : ndarray of float64 or None
        Second moment :math:`v_t` (:math:`v_0 = \\tau^2`); ``None`` for ``sgd``.
    """

    rule: str
    t: int
    m: np.ndarray
    v: np.ndarray | None = None


class ServerOptimizer:
    """Interface shared by the server optimizers: ``init`` then ``step`` once per round."""

    name: str = "abstract"

    def init(self, theta: np.ndarray) -> OptState:
        """Return the state before round 1: ``t = 0``, ``m = 0`` (and ``v = tau**2``)."""
        theta = _array("theta", theta)
        return OptState(self.name, 0, _read_only(np.zeros_like(theta)), self._v0(theta))

    def step(self, theta: np.ndarray, delta: np.ndarray, state: OptState) -> tuple[np.ndarray, OptState]:
        """One server update; pure: returns a NEW theta and a NEW state.

        Parameters
        ----------
        theta : array
            The global model :math:`\\theta_{t-1}`.
        delta : array, same shape as theta
            The average model change :math:`\\Delta_t = \\sum_i w_i(\\theta_i - \\theta_{t-1})`.
        state : OptState
            The state returned by this optimizer's ``init`` or previous ``step``.

        Returns
        -------
        (theta_t, state_t) : (ndarray of float64, OptState)
        """
        theta = _array("theta", theta)
        delta = _array("delta", delta)
        if delta.shape != theta.shape:
            raise ValueError(f"delta must have theta's shape {theta.shape}, got shape {delta.shape}")
        if not isinstance(state, OptState) or state.rule != self.name:
            made_by = f"{state.rule!r}" if isinstance(state, OptState) else type(state).__name__
            raise TypeError(f"state must come from {self.name}'s init() or step(), got state of {made_by}")
        if state.m.shape != theta.shape:
            raise ValueError(f"state was made for shape {state.m.shape}, but theta has shape {theta.shape}")
        new_theta, m, v = self._update(theta, delta, state)
        return new_theta, OptState(self.name, state.t + 1, _read_only(m), None if v is None else _read_only(v))

    def _v0(self, theta: np.ndarray) -> np.ndarray | None:
        return None

    def _update(self, theta, delta, state):
        raise NotImplementedError


@dataclass(frozen=True)
class SGD(ServerOptimizer):
    r"""FedAvg / FedAvgM: :math:`m_t = \mu m_{t-1} + \Delta_t,\ \theta_t = \theta_{t-1} + \eta m_t`."""

    lr: float = 1.0
    momentum: float = 0.0
    name = "sgd"

    def __post_init__(self):
        object.__setattr__(self, "lr", valid.positive_float("lr", self.lr))
        object.__setattr__(self, "momentum", _unit_interval("momentum", self.momentum))

    def _update(self, theta, delta, state):
        if self.momentum == 0.0:        # plain FedAvg: exactly theta + lr * delta
            return theta + self.lr * delta, delta.copy(), None
        m = self.momentum * state.m + delta
        return theta + self.lr * m, m, None


@dataclass(frozen=True)
class _Adaptive(ServerOptimizer):
    r"""Shared part of Adam, Yogi, Adagrad: :math:`\theta_t = \theta_{t-1} + \eta\,m_t/(\sqrt{v_t}+\tau)`."""

    lr: float
    beta1: float
    tau: float

    def __post_init__(self):
        object.__setattr__(self, "lr", valid.positive_float("lr", self.lr))
        object.__setattr__(self, "beta1", _unit_interval("beta1", self.beta1))
        object.__setattr__(self, "tau", valid.positive_float("tau", self.tau))

    def _v0(self, theta):
        return _read_only(np.full_like(theta, self.tau**2))

    def _update(self, theta, delta, state):
        m = self.beta1 * state.m + (1.0 - self.beta1) * delta
        v = self._second_moment(state.v, delta * delta)
        return theta + self.lr * m / (np.sqrt(v) + self.tau), m, v

    def _second_moment(self, v, delta2):
        raise NotImplementedError


@dataclass(frozen=True)
class Adam(_Adaptive):
    r"""FedAdam: :math:`v_t = \beta_2 v_{t-1} + (1-\beta_2)\Delta_t^2`."""

    beta2: float = 0.99
    name = "adam"

    def __post_init__(self):
        super().__post_init__()
        object.__setattr__(self, "beta2", _unit_interval("beta2", self.beta2))

    def _second_moment(self, v, delta2):
        return self.beta2 * v + (1.0 - self.beta2) * delta2


@dataclass(frozen=True)
class Yogi(Adam):
    r"""FedYogi: :math:`v_t = v_{t-1} - (1-\beta_2)\,\Delta_t^2\,\mathrm{sign}(v_{t-1} - \Delta_t^2)`."""

    name = "yogi"

    def _second_moment(self, v, delta2):
        return v - (1.0 - self.beta2) * delta2 * np.sign(v - delta2)


@dataclass(frozen=True)
class Adagrad(_Adaptive):
    r"""FedAdagrad: :math:`v_t = v_{t-1} + \Delta_t^2`."""

    name = "adagrad"

    def _second_moment(self, v, delta2):
        return v + delta2


def sgd(lr: float = 1.0, *, momentum: float = 0.0) -> ServerOptimizer:
    r"""FedAvg (``momentum=0``) or FedAvgM (Hsu et al. 2019).

    .. math:: m_t = \mu\,m_{t-1} + \Delta_t, \qquad \theta_t = \theta_{t-1} + \eta\,m_t

    With ``momentum=0`` the step is exactly ``theta + lr * delta``; ``sgd(1.0)`` is
    FedAvg, :math:`\theta_t = \sum_i w_i \theta_i`.

    Parameters
    ----------
    lr : float, > 0
        Server learning rate :math:`\eta`.
    momentum : float in [0, 1)
        Server momentum :math:`\mu`.
    """
    return SGD(lr=lr, momentum=momentum)


def adam(lr: float, *, beta1: float = 0.9, beta2: float = 0.99, tau: float = 1e-3) -> ServerOptimizer:
    r"""FedAdam (Reddi et al. 2021, Algorithm 2), without bias correction.

    .. math::
        m_t = \beta_1 m_{t-1} + (1-\beta_1)\Delta_t, \quad
        v_t = \beta_2 v_{t-1} + (1-\beta_2)\Delta_t^2, \quad
        \theta_t = \theta_{t-1} + \eta\,\frac{m_t}{\sqrt{v_t} + \tau}

    with :math:`m_0 = 0, v_0 = \tau^2`.

    Parameters
    ----------
    lr : float, > 0
        Server learning rate :math:`\eta`.
    beta1, beta2 : float in [0, 1)
        Decay rates of the first and second moments.
    tau : float, > 0
        Adaptivity :math:`\tau`; a small ``tau`` makes the step close to ``lr`` per coordinate.
    """
    return Adam(lr=lr, beta1=beta1, beta2=beta2, tau=tau)


def yogi(lr: float, *, beta1: float = 0.9, beta2: float = 0.99, tau: float = 1e-3) -> ServerOptimizer:
    r"""FedYogi (Reddi et al. 2021, Algorithm 2): like :func:`adam` with an additive :math:`v`.

    .. math::
        v_t = v_{t-1} - (1-\beta_2)\,\Delta_t^2\,\mathrm{sign}(v_{t-1} - \Delta_t^2)

    :math:`v` moves towards :math:`\Delta_t^2` by :math:`(1-\beta_2)\Delta_t^2`, whatever
    the size of :math:`v_{t-1}`; Adam moves by :math:`(1-\beta_2)|v_{t-1} - \Delta_t^2|`.
    Same :math:`m_t`, :math:`\theta_t`, :math:`m_0 = 0, v_0 = \tau^2` and parameters as :func:`adam`.
    """
    return Yogi(lr=lr, beta1=beta1, beta2=beta2, tau=tau)


def adagrad(lr: float, *, beta1: float = 0.0, tau: float = 1e-3) -> ServerOptimizer:
    r"""FedAdagrad (Reddi et al. 2021, Algorithm 2).

    .. math::
        m_t = \beta_1 m_{t-1} + (1-\beta_1)\Delta_t, \quad
        v_t = v_{t-1} + \Delta_t^2, \quad
        \theta_t = \theta_{t-1} + \eta\,\frac{m_t}{\sqrt{v_t} + \tau}

    with :math:`m_0 = 0, v_0 = \tau^2`; the default ``beta1=0`` gives :math:`m_t = \Delta_t`.

    Parameters
    ----------
    lr : float, > 0
        Server learning rate :math:`\eta`.
    beta1 : float in [0, 1)
        Decay rate of the first moment.
    tau : float, > 0
        Adaptivity :math:`\tau`.
    """
    return Adagrad(lr=lr, beta1=beta1, tau=tau)


OPTIMIZERS = {"sgd": sgd, "adam": adam, "yogi": yogi, "adagrad": adagrad}


def _unit_interval(name: str, value) -> float:
    """Return ``value`` as a float after checking ``0 <= value < 1``."""
    try:
        value = valid.positive_float(name, value, allow_zero=True)   # TypeError if not a real number
        ok = value < 1.0
    except ValueError:                                                # negative, NaN or inf
        ok = False
    if not ok:
        raise ValueError(f"{name} must be in [0, 1), got {float(value)!r}")
    return value


def _array(name: str, value) -> np.ndarray:
    try:
        return np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise TypeError(f"{name} must be a numeric array, got {type(value).__name__}") from exc


def _read_only(arr: np.ndarray) -> np.ndarray:
    arr.setflags(write=False)
    return arr
