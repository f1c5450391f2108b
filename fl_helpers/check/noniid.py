r"""Checkers for the exercises of notebook 06 (FedAvg on non-IID data).

:func:`dirichlet_mixes`
    ``fn(alpha, p, n_parties, rng)``: one label mix per party, :math:`q_i \sim \mathrm{Dir}(\alpha p)`,
    shape (n_parties, K). Checked by its statistics, which a correct draw must show whatever the random
    numbers: rows on the simplex, mean :math:`p`, variance :math:`p_k(1 - p_k)/(\alpha + 1)` per class
    (the Dirichlet's closed form), and the same numbers for the same ``rng`` seed.
:func:`more_rounds`
    ``answer`` in ``{"a", "b"}``: which of two FedAvg settings on the digits needs more rounds to 95 %
    test accuracy. The checker runs both (about a second).

The reference solutions and the wrong answers each checker must reject live in
``tests/test_check_noniid.py``.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from ._common import CheckResult, no_answer

#: Label frequencies of the checker's cases: far from uniform, so a mix drawn around 1/K is caught.
P_CASE = np.array([0.45, 0.25, 0.15, 0.1, 0.05])
#: Concentrations of the cases, and how many parties each draws (enough for 4 % on the variance).
ALPHAS = (0.3, 5.0, 200.0)
N_DRAWS = 20_000


def _draw(fn, alpha, seed):
    out = fn(alpha, P_CASE.copy(), N_DRAWS, np.random.default_rng(seed))
    return np.asarray(out, dtype=np.float64)


def dirichlet_mixes(fn: Callable) -> CheckResult:
    r"""Check ``fn(alpha, p, n_parties, rng)`` draws :math:`q_i \sim \mathrm{Dir}(\alpha p)`, one row per party."""
    name = "dirichlet_mixes"
    hint = ("Party i's mix is one draw of a Dirichlet whose concentration is alpha times the overall "
            "frequencies: rng.dirichlet(alpha * pi, size=n_parties). Its mean is pi; larger alpha, less spread.")
    if not callable(fn):
        return CheckResult(name, False, f"expected a function, got {type(fn).__name__}", hint)
    K = len(P_CASE)
    for k, alpha in enumerate(ALPHAS, start=1):
        try:
            q = _draw(fn, alpha, seed=k)
            again = _draw(fn, alpha, seed=k)
        except NotImplementedError:
            return no_answer(name)
        except Exception as exc:  # the student's bug, reported, not raised
            return CheckResult(name, False, f"case {k} raised {type(exc).__name__}: {exc}", hint)
        if q.shape != (N_DRAWS, K):
            return CheckResult(name, False, f"case {k}: expected shape ({N_DRAWS}, {K}), got {q.shape}", hint)
        if not np.array_equal(q, again):
            return CheckResult(name, False, "two calls with the same seed gave different mixes",
                               "Draw every random number from the rng argument (rng.dirichlet), not np.random.")
        if np.any(~np.isfinite(q)) or np.any(q < 0) or not np.allclose(q.sum(axis=1), 1.0, atol=1e-9):
            return CheckResult(name, False, f"case {k}: each row must be a mix: entries >= 0 summing to 1",
                               hint)
        mean, var = q.mean(axis=0), q.var(axis=0)
        want_var = P_CASE * (1 - P_CASE) / (alpha + 1)
        if np.max(np.abs(mean - P_CASE) / np.sqrt(want_var / N_DRAWS)) > 5:
            if np.allclose(mean, 1 / K, atol=0.02):
                return CheckResult(name, False, f"case {k}: the mean mix is uniform (1/K), not p",
                                   "Dir(alpha * ones) centres every party on equal labels; the concentration "
                                   "must be alpha * pi so that the average party looks like the whole dataset.")
            return CheckResult(name, False, f"case {k}: the mean mix {np.round(mean, 3)} is not p = {P_CASE}",
                               hint)
        if np.max(np.abs(var / want_var - 1)) > 0.1:
            spread = np.median(var * (alpha + 1) / (P_CASE * (1 - P_CASE)))
            if k > 1 and np.allclose(var, _draw(fn, ALPHAS[0], seed=k).var(axis=0), rtol=0.15):
                return CheckResult(name, False, f"case {k}: the spread does not change with alpha",
                                   "alpha must scale the concentration: rng.dirichlet(alpha * pi).")
            return CheckResult(name, False, f"case {k} (alpha = {alpha:g}): the spread is {spread:.2f} times "
                               "that of Dir(alpha p)", hint)
    return CheckResult(name, True, f"mean p and variance p(1 - p)/(alpha + 1) for alpha = "
                                   f"{', '.join(f'{a:g}' for a in ALPHAS)}")


#: The two settings of the prediction exercise: (split, C, E, B), on notebook 06's 100 parties.
SETTINGS = {"a": ("iid", 0.1, 2, None), "b": ("shards", 0.1, 10, 10)}
#: Notebook 06's grid: 100 parties, learning rate, rounds, target test accuracy, seed.
GRID = dict(n_parties=100, lr=0.1, rounds=150, target=0.95, seed=0)


def rounds_to_target(split: str, fraction: float, epochs: int, batch_size) -> int | None:
    """Rounds FedAvg (softmax, vectorized engine) needs to reach GRID's test accuracy.

    None: not within GRID's rounds.
    """
    from .. import models
    from ..data import load_dataset
    from ..data import split as split_data
    from ..server import fedavg

    X, y, _ = load_dataset("digits", subset="train")
    X_test, y_test, _ = load_dataset("digits", subset="test")
    extra = {"shards_per_party": 2} if split == "shards" else {}
    parties = split_data(X, y, GRID["n_parties"], scheme=split, model=models.softmax(n_classes=10),
                         seed=GRID["seed"], **extra)
    run = fedavg(parties, lr=GRID["lr"], rounds=GRID["rounds"], local_epochs=epochs, batch_size=batch_size,
                 fraction=fraction, seed=GRID["seed"], engine="vectorized", eval_data=(X_test, y_test))
    hit = np.flatnonzero(run.metrics["test_accuracy"] >= GRID["target"])
    return int(hit[0]) + 1 if hit.size else None


def more_rounds(answer) -> CheckResult:
    """Check the prediction: which setting, ``"a"`` or ``"b"``, needs more rounds to the target."""
    name = "more_rounds"
    if answer is None:
        return no_answer(name, "no answer yet: set MY_PREDICTION to 'a' or 'b'")
    if answer not in ("a", "b"):
        return CheckResult(name, False, f"answer 'a' or 'b', got {answer!r}")
    rounds = {k: rounds_to_target(*s) for k, s in SETTINGS.items()}
    shown = {k: ("never" if r is None else str(r)) for k, r in rounds.items()}
    slower = max(rounds, key=lambda k: np.inf if rounds[k] is None else rounds[k])
    said = f"rounds to {GRID['target']:.0%}: a {shown['a']}, b {shown['b']} (of {GRID['rounds']})"
    if answer == slower:
        return CheckResult(name, True, said)
    return CheckResult(name, False, said,
                       "Count the local computation per round, u = E * ceil(m_i / B) gradient steps per party: "
                       "on these parties it buys more than IID data does.")
