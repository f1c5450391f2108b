r"""Centralized references: what federated training should reproduce.

:func:`least_squares` solves the normal equations on the union of the
parties' data; :func:`centralized_gd` is plain gradient descent on one
machine holding all data. Both exist only to check the federated results.
"""

from __future__ import annotations

import numpy as np

from . import validation as valid
from .aggregation import WEIGHTINGS
from .history import History, Recorder
from .linear import add_bias
from .models import GLM, check_model, linear
from .parties import Party, check_parties, initial_theta


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
    weighting = valid.choice("weighting", weighting, WEIGHTINGS)
    model = parties[0].model
    if not isinstance(model, GLM) or model.link != "identity" or model.l2 != 0.0:
        raise ValueError(f"least_squares solves unpenalised linear regression only (models.linear), got "
                         f"parties with model {model!r}")
    rows, targets = [], []
    for p in parties:
        X, y = p.data
        w = 1.0 if weighting == "samples" else 1.0 / np.sqrt(p.n_samples)
        rows.append(w * add_bias(X))
        targets.append(w * y)
    return np.linalg.lstsq(np.vstack(rows), np.concatenate(targets), rcond=None)[0]


def centralized_gd(X, y, *, lr, rounds, theta0=None, model=linear) -> History:
    r"""Full-batch gradient descent on all data: :math:`\theta \leftarrow \theta - \eta\nabla L(\theta)`.

    Returns a :class:`History` with one "party" (the whole dataset) and no
    communication, stopping with ``diverged_at`` set if the loss blows up.
    The loss of each model comes from the residual of its gradient pass (as
    the federated engines do), so a recorded step is one pass over the data.
    """
    model = check_model(model)
    party = Party(X, y, model=model)              # checks X, y and the labels once
    X, y = party.data
    lr = valid.positive_float("lr", lr)
    rounds = valid.integer("rounds", rounds, minimum=0)
    theta = initial_theta(theta0, [party])
    with np.errstate(over="ignore", invalid="ignore"):
        rec = Recorder([len(y)])
        for t in range(rounds + 1):
            loss, g = model.loss_and_gradient(theta, X, y)   # one pass: the scores give loss and gradient
            if not rec.record(t, theta, [loss]) or t == rounds:
                break
            theta = theta - lr * g
    return rec.history(engine="centralized", device="CPU (numpy)")
