r"""Checkers for the exercises of notebooks 00 (welcome and tour) and 01 (centralized linear regression).

Each returns a :class:`~fl_helpers.check.CheckResult` that prints ``PASS ...``
or ``FAIL ... Hint: ...`` and never raises because of the student's code.

Notebook 00: :func:`round_order`, :func:`glossary`, :func:`recover_sample_from_gradient`.
Notebook 01: :func:`mse_gradient`, :func:`stable_learning_rate`, :func:`standardize`.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping

import numpy as np

from ..linear import add_bias, hessian
from ..linear import mse_gradient as _mse_gradient
from ._common import CheckResult, no_answer, run_cases

# --------------------------------------------------------------------------- notebook 00

#: The four blocks of a federated round, in order (notebook 00 shows them shuffled).
ROUND_STEPS = (
    "broadcast the global model",
    "local work: each party returns an update and a weight",
    "aggregate the updates",
    "server update of the global model",
)

#: The article's Chinese terms and the English answers accepted for each.
GLOSSARY = {
    "参与方": ("party", "parties", "participant", "participants", "client", "clients"),
    "中央服务器": ("central server", "server", "aggregator"),
    "本地数据": ("local data", "local dataset", "local datasets", "local training data", "private data"),
    "模型参数": ("model parameters", "model parameter", "parameters"),
    "本地梯度": ("local gradient", "local gradients", "client gradient", "party gradient"),
    "聚合更新": ("aggregated update", "aggregated updates", "aggregation update", "aggregation updates",
             "aggregate update"),
    "联邦学习": ("federated learning", "fl"),
}


def _words(text) -> str:
    return re.sub(r"\s+", " ", str(text).strip().lower())


def round_order(steps) -> CheckResult:
    """Check the order of the five steps of a federated round (a list of the strings in ``ROUND_STEPS``)."""
    name = "round_order"
    hint = "A round starts at the server, which holds the global model, and ends when the server has a new one."
    try:
        if isinstance(steps, (str, bytes)):
            raise TypeError
        steps = list(steps)
        got = [_words(s) for s in steps]
    except TypeError:
        return CheckResult(name, False, f"expected a list of step strings, got {type(steps).__name__}", hint)
    if not got:
        return no_answer(name, "no answer yet: put the four strings in my_order, in the order of a round")
    want = [_words(s) for s in ROUND_STEPS]
    if sorted(got) != sorted(want):
        unknown = [s for s in got if s not in want]
        missing = [s for s in want if s not in got]
        what = f"unknown step {unknown[0]!r}" if unknown else f"missing step {missing[0]!r}" if missing \
            else "a step appears twice"
        return CheckResult(name, False, f"{what}; use each of the four strings exactly once",
                           "Copy the strings from the shuffled list.")
    if got == want:
        return CheckResult(name, True, "broadcast -> local work (update + weight up) -> aggregate -> server update")
    k = next(i for i, (a, b) in enumerate(zip(got, want, strict=True)) if a != b)
    if any(got == want[r:] + want[:r] for r in range(1, len(want))):
        specific = ("Right cycle, wrong start: the parties can only work on the model once the server has "
                    "sent (broadcast) it to them.")
    elif got.index(want[2]) < got.index(want[1]):
        specific = "The server can only aggregate updates it has received: the parties' local work comes first."
    elif got.index(want[3]) < got.index(want[2]):
        specific = "The server updates θ with the aggregated update Δ, so aggregation comes first."
    else:
        specific = hint
    return CheckResult(name, False, f"step {k + 1} should be {ROUND_STEPS[k]!r}, got {steps[k]!r}", specific)


def glossary(answers) -> CheckResult:
    """Check a dict mapping each Chinese term of the article to its English name."""
    name = "glossary"
    hint = "Compare with the glossary table in the notebook; spelling counts, capitals do not."
    if not isinstance(answers, Mapping):
        return CheckResult(name, False, f"expected a dict term -> English, got {type(answers).__name__}", hint)
    if all(_words(v) in ("", "...") for v in answers.values()):
        return no_answer(name, "no answer yet: replace each '...' with the English term")
    missing = [t for t in GLOSSARY if t not in answers]
    if missing:
        return CheckResult(name, False, f"no answer for {', '.join(missing)}", hint)
    wrong = [t for t, ok in GLOSSARY.items() if _words(answers[t]) not in ok]
    if wrong:
        t = wrong[0]
        more = f" (and {len(wrong) - 1} more)" if len(wrong) > 1 else ""
        return CheckResult(name, False, f"{t}: {answers[t]!r} is not right{more}", hint)
    return CheckResult(name, True, f"all {len(GLOSSARY)} terms matched")


def _sample_from_gradient(theta, grad):
    """Reference: the one sample (x, y) behind the MSE gradient 2 r [1, x] at theta."""
    theta, grad = np.asarray(theta, dtype=float), np.asarray(grad, dtype=float)
    r = grad[0] / 2.0
    x = grad[1:] / grad[0]
    return np.concatenate([x, [theta[0] + x @ theta[1:] - r]])


def _one_sample_cases():
    rng = np.random.default_rng(7)
    cases = []
    for d in (1, 1, 3, 5):
        x, y, theta = rng.normal(size=d), rng.normal(), rng.normal(size=d + 1)
        if abs(theta[0] + x @ theta[1:] - y) < 0.1:  # keep the residual away from 0
            y += 1.0
        cases.append((theta, _mse_gradient(theta, x[None, :], np.array([y]))))
    return cases


def recover_sample_from_gradient(fn: Callable) -> CheckResult:
    """Check ``fn(theta, grad) -> (x, y)``: the sample behind a one-sample MSE gradient."""
    name = "recover_sample_from_gradient"
    hint = ("Start from grad = 2r [1, x] with r = theta[0] + x·theta[1:] − y: grad[0] / 2 gives r, "
            "grad[1:] / grad[0] gives x, and then y = prediction − r.")

    def student(theta, grad):
        out = fn(theta.copy(), grad.copy())
        if not isinstance(out, (tuple, list)) or len(out) != 2:
            raise TypeError(f"return a pair (x, y), got {type(out).__name__}")
        x, y = out
        return np.concatenate([np.ravel(np.asarray(x, dtype=float)), np.ravel(np.asarray(y, dtype=float))])

    def diagnose(args, got, want):
        theta, grad = args
        d = len(grad) - 1
        if np.allclose(got[:d], grad[1:]) or np.allclose(got[:d], grad[1:] / 2):
            return "x is grad[1:] divided by grad[0] = 2r, not grad[1:] itself: the residual r scales all entries."
        if np.allclose(got[:d], want[:d]) and np.isclose(got[d], want[d] + grad[0]):
            return "x is right; for y mind the sign: r = prediction − y, so y = prediction − r."
        if np.allclose(got[:d], want[:d]):
            return "x is right; y = theta[0] + x·theta[1:] − r with r = grad[0]/2."
        return None

    if not callable(fn):
        return CheckResult(name, False, f"expected a function, got {type(fn).__name__}", hint)
    return run_cases(name, student, _one_sample_cases(), _sample_from_gradient, hint=hint, diagnose=diagnose)


# --------------------------------------------------------------------------- notebook 01

def _regression_cases():
    rng = np.random.default_rng(11)
    cases = [(np.array([0.5, -1.0]), np.array([[1.0], [2.0], [3.0]]), np.array([1.0, 0.0, 2.0]))]
    for m, d in ((7, 1), (9, 3), (1, 2), (12, 4)):
        cases.append((rng.normal(size=d + 1), rng.normal(size=(m, d)) + 1.0, rng.normal(size=m)))
    return cases


def mse_gradient(fn: Callable) -> CheckResult:
    r"""Check ``fn(theta, X, y)`` = :math:`\frac2m\tilde X^\top(\tilde X\theta - y)`, shape (d + 1,)."""
    name = "mse_gradient"
    hint = ("∇L = (2/m) X̃ᵀ(X̃θ − y) with X̃ = [1, X]: one entry per parameter, the first one (θ0, the "
            "intercept) is (2/m) Σ r_j.")

    def student(theta, X, y):
        return fn(theta.copy(), X.copy(), y.copy())

    def reference(theta, X, y):
        return _mse_gradient(theta, X, y)

    def diagnose(args, got, want):
        theta, X, y = args
        m, p = X.shape[0], X.shape[1] + 1
        if np.allclose(got, want / 2):
            return "Missing factor 2: the derivative of r² is 2r."
        if np.allclose(got, -want):
            return "Wrong sign: with r = ŷ − y the gradient is +(2/m) X̃ᵀ r (or use −(2/m) X̃ᵀ(y − ŷ))."
        if m > 1 and np.allclose(got, want * m):
            return "You summed over the samples: divide by m, the number of samples (L is a mean)."
        if p != m and np.allclose(got, want * m / p):
            return "You divided by the number of parameters (d + 1); divide by m, the number of samples."
        if np.allclose(got[1:], want[1:]):
            return "The slopes are right; the intercept entry is (2/m) Σ_j r_j (its feature is the constant 1)."
        return None

    if not callable(fn):
        return CheckResult(name, False, f"expected a function, got {type(fn).__name__}", hint)
    probe = _regression_cases()[1]
    try:
        shape = np.shape(student(*probe))
    except Exception:  # run_cases reports it with the message
        shape = None
    if shape == (probe[1].shape[1],):
        return CheckResult(name, False, f"expected {probe[1].shape[1] + 1} entries (d + 1), got {shape[0]} (d)",
                           "You forgot the intercept: prepend a column of ones to X (X̃ = [1, X]) so θ0 gets "
                           "its gradient entry too.")
    return run_cases(name, student, _regression_cases(), reference, hint=hint, diagnose=diagnose)


def _stable_learning_rate(X):
    return 2.0 / np.linalg.eigvalsh(hessian(X))[-1]


def stable_learning_rate(fn: Callable) -> CheckResult:
    r"""Check ``fn(X)`` = :math:`2/\lambda_{\max}(H)`, :math:`H = \frac2m\tilde X^\top\tilde X`."""
    name = "stable_learning_rate"
    hint = "H = (2/m) X̃ᵀX̃ with X̃ = [1, X]; the limit is 2 / (largest eigenvalue of H) (np.linalg.eigvalsh)."

    def student(X):
        return fn(X.copy())

    def diagnose(args, got, want):
        (X,) = args
        Xt, m = add_bias(X), X.shape[0]
        lam_gram = np.linalg.eigvalsh(Xt.T @ Xt)[-1]
        if np.isclose(got, want / 2):
            return "That is 1/λmax; gradient descent is stable up to 2/λmax (|1 − ηλ| < 1)."
        if np.isclose(got, 2 * want):
            return "You used (1/m) X̃ᵀX̃: the Hessian of the MSE has the factor 2/m."
        if m > 1 and (np.isclose(got, 2.0 / lam_gram) or np.isclose(got, 1.0 / lam_gram)):
            return "Divide by m, the number of samples: H = (2/m) X̃ᵀX̃."
        if np.isclose(got, 2.0 / np.linalg.eigvalsh(2 * X.T @ X / m)[-1]):
            return "Include the intercept: use X̃ = [1, X], not X."
        if np.isclose(got, 2.0 / np.linalg.eigvalsh(hessian(X))[0]):
            return "Use the largest eigenvalue (eigvalsh sorts them ascending: take [-1])."
        return None

    if not callable(fn):
        return CheckResult(name, False, f"expected a function, got {type(fn).__name__}", hint)
    cases = [(X,) for _, X, _ in _regression_cases()]
    return run_cases(name, student, cases, _stable_learning_rate, hint=hint, diagnose=diagnose)


def _standardize(X):
    return (X - X.mean(axis=0)) / X.std(axis=0)


def standardize(fn: Callable) -> CheckResult:
    r"""Check ``fn(X)`` = each column minus its mean, divided by its standard deviation."""
    name = "standardize"
    hint = "Work column by column: (X − X.mean(axis=0)) / X.std(axis=0)."

    def student(X):
        return fn(X.copy())

    def diagnose(args, got, want):
        (X,) = args
        if np.allclose(got, X - X.mean(axis=0)):
            return "You centred the columns; also divide by their standard deviation."
        if np.allclose(got, (X - X.mean()) / X.std()):
            return "Use one mean and standard deviation per column (axis=0), not of the whole matrix."
        if np.allclose(got, X / X.std(axis=0)):
            return "You scaled the columns; also subtract their mean."
        if np.allclose(got, (X - X.mean(axis=0)) / X.std(axis=0, ddof=1)):
            return ("You used the sample standard deviation (ddof=1, divides by m − 1); the course's "
                    "standardisation uses the population one, numpy's default ddof=0 (divides by m).")
        return None

    if not callable(fn):
        return CheckResult(name, False, f"expected a function, got {type(fn).__name__}", hint)
    rng = np.random.default_rng(5)
    cases = [(np.array([[1.0, 10.0], [2.0, 30.0], [3.0, 20.0]]),),
             (3.0 + 2.0 * rng.normal(size=(20, 1)),),
             (rng.normal(size=(15, 3)) * np.array([1.0, 5.0, 0.1]) + np.array([2.0, -1.0, 7.0]),)]
    return run_cases(name, student, cases, _standardize, hint=hint, diagnose=diagnose)
