r"""Centralized references: what federated training should reproduce.

:func:`least_squares` solves the normal equations on the union of the
parties' data; :func:`centralized_gd` is plain gradient descent on one
machine holding all data. Both exist only to check the federated results.
"""

from __future__ import annotations

import numpy as np

from . import _validate as check
from .aggregation import WEIGHTINGS
from .history import History, Recorder
from .linear import add_bias, mse, mse_gradient
from .server import check_parties, initial_theta


def least_squares(parties, *, weighting: str = "samples") -> np.ndarray:
    r"""Closed-form minimiser of the aggregated objective.

    ``weighting="samples"``: the ordinary least-squares solution on the union
    of all data, :math:`\theta^\star = (\tilde X^\top\tilde X)^{-1}\tilde X^\top y`,
    the minimiser of the global MSE.

    ``weighting="uniform"``: the fixed point of the article's unweighted mean,
    where :math:`\frac1N\sum_i \nabla L_i(\theta) = 0`:

    .. math::
        \theta^\circ = \Big(\sum_i \tfrac1{m_i}\tilde X_i^\top\tilde X_i\Big)^{-1}
                       \sum_i \tfrac1{m_i}\tilde X_i^\top y_i

    i.e. least squares in which every sample of party i counts :math:`1/m_i`.
    Solved with ``numpy.linalg.lstsq`` on square-root-weighted rows.
    """
    parties = check_parties(parties)
    weighting = check.choice("weighting", weighting, WEIGHTINGS)
    rows, targets = [], []
    for p in parties:
        X, y = p.data
        w = 1.0 if weighting == "samples" else 1.0 / np.sqrt(p.n_samples)
        rows.append(w * add_bias(X))
        targets.append(w * y)
    return np.linalg.lstsq(np.vstack(rows), np.concatenate(targets), rcond=None)[0]


def centralized_gd(X, y, *, lr, rounds, theta0=None) -> History:
    r"""Full-batch gradient descent on all data: :math:`\theta \leftarrow \theta - \eta\nabla L(\theta)`.

    Returns a :class:`History` with one "party" (the whole dataset) and no
    communication, stopping with ``diverged_at`` set if the loss blows up.
    """
    X = check.features(X)
    y = check.targets(y, X.shape[0])
    lr = check.positive_float("lr", lr)
    rounds = check.integer("rounds", rounds, minimum=0)
    theta = initial_theta(theta0, X.shape[1])
    with np.errstate(over="ignore", invalid="ignore"):
        rec = Recorder(theta, [mse(theta, X, y)], [len(y)])
        for t in range(1, rounds + 1):
            theta = theta - lr * mse_gradient(theta, X, y)
            if not rec.record(t, theta, [mse(theta, X, y)]):
                break
    return rec.history(engine="centralized", device="CPU (numpy)")
