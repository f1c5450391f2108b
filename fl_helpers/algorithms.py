r"""Fixes for client drift that change the local work: SCAFFOLD (FedProx is ``fedavg(prox_mu=...)``).

SCAFFOLD (Karimireddy, Kale, Mohri, Reddi, Stich and Suresh 2020, "SCAFFOLD:
Stochastic Controlled Averaging for Federated Learning") keeps a *control
variate* on the server, :math:`c`, and one on each party, :math:`c_i`: estimates
of the global and the local gradient. Every local step is corrected by their
difference,

.. math::
    \theta_i \leftarrow \theta_i - \eta\,\big(g_i(\theta_i) - c_i + c\big),

so a party walks along (an estimate of) the *global* gradient instead of its
own, and client drift disappears. After its :math:`K_i` local steps, party
:math:`i` updates its control variate with the paper's option II,

.. math::
    c_i^+ = c_i - c + \frac{\theta - \theta_i}{K_i\eta} = c_i - c + \frac{\Delta_i}{K_i},

the average of the corrected steps plus the correction removed again (that is,
the mean raw gradient along its path), and sends :math:`\Delta c_i = c_i^+ - c_i`
with its update. The server averages the updates as FedAvg does (block 4,
``server_lr``) and moves :math:`c \leftarrow c + \sum_{i \in S} s_i\,\Delta c_i`,
:math:`s_i` party :math:`i`'s share of the objective (:math:`m_i/M`, or
:math:`1/N` for ``weighting="uniform"``), which keeps :math:`c = \sum_i s_i c_i`
over *all* parties (the paper's :math:`\frac1N\sum_{i\in S}\Delta c_i` with equal shares).

At :math:`\theta^\star` with :math:`c_i = \nabla L_i(\theta^\star)` and :math:`c = \nabla L(\theta^\star) = 0`
every corrected step is zero: :math:`\theta^\star` is a fixed point for any
number of local steps, where FedAvg's fixed point :math:`\bar\theta_E` is not
(tests/test_algorithms.py checks it to 1e-8 on least squares).
"""

from __future__ import annotations

import numpy as np

from .server import _only_hooks, train

#: The control-variate updates of the SCAFFOLD paper; only option II is implemented.
OPTIONS = ("II",)


class Scaffold:
    """SCAFFOLD's client state for :func:`fl_helpers.server.train` (``control=Scaffold()``).

    Attributes after a run: ``c`` (p,) the server's control variate, ``c_parties`` (N, p) the
    parties' (in a deployment each party keeps its own row).
    """

    def __init__(self, option: str = "II"):
        if option not in OPTIONS:
            raise ValueError(f"option must be one of {', '.join(map(repr, OPTIONS))} (the paper's option I, "
                             f"an extra gradient pass at the broadcast model, is not implemented); got {option!r}")
        self.option = option
        self.c = self.c_parties = None

    def __repr__(self) -> str:
        return f"Scaffold(option={self.option!r})"

    def start(self, theta, n_parties: int) -> None:
        """Zero control variates, as in the paper (Algorithm 1)."""
        self.c = np.zeros(np.size(theta))
        self.c_parties = np.zeros((n_parties, np.size(theta)))

    def correction(self, selected) -> np.ndarray:
        """Block 2's correction for each selected party, :math:`c - c_i`, shape (k, p)."""
        return self.c[None, :] - self.c_parties[selected]

    def update(self, selected, updates, steps, shares) -> None:
        """Option II: :math:`c_i^+ = c_i - c + \\Delta_i / K_i`; then :math:`c \\mathrel{+}= \\sum s_i \\Delta c_i`."""
        new = self.c_parties[selected] - self.c[None, :] + updates / np.asarray(steps, dtype=np.float64)[:, None]
        change = new - self.c_parties[selected]
        self.c_parties[selected] = new
        self.c = self.c + np.asarray(shares, dtype=np.float64) @ change

    def bytes_down(self, k: int) -> int:
        """The server's :math:`c` sent to each of the ``k`` selected parties (float64)."""
        return int(k * self.c.nbytes)

    def bytes_up(self, k: int) -> int:
        """Each of the ``k`` working parties sends :math:`\\Delta c_i` besides its update (float64)."""
        return int(k * self.c.nbytes)


def scaffold(parties, *, lr, rounds, local_epochs=1, batch_size=None, fraction=1.0, server_lr=1.0,
             weighting="samples", theta0=None, seed=None, engine="loop", option="II", **hooks):
    r"""SCAFFOLD: FedAvg whose local steps are corrected by control variates (see the module docstring).

    The same arguments and the same :class:`~fl_helpers.History` as :func:`fl_helpers.fedavg`
    (``server_lr`` is the paper's global step size :math:`\eta_g`); ``option`` must be ``"II"``.
    The server's final control variate is not returned; use ``train(..., control=Scaffold())`` to keep it.
    """
    _only_hooks(hooks)
    return train(parties, lr=lr, rounds=rounds, local_epochs=local_epochs, batch_size=batch_size,
                 fraction=fraction, weighting=weighting, theta0=theta0, seed=seed, engine=engine,
                 server_lr=server_lr, control=Scaffold(option), **hooks)
