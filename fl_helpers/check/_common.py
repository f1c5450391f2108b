"""Pass/fail machinery shared by the exercise checkers.

A checker calls the student's function on a few small cases, compares with the
library's reference and returns a :class:`CheckResult` that prints as one clear
line: ``PASS: ...`` or ``FAIL: ... Hint: ...``. It never raises for a wrong
answer (an exception inside the student's code becomes a FAIL with the error),
so a notebook keeps running; ``bool(result)`` tells the test suite the verdict.

Hints appear only after a real attempt: the untouched exercise (a stub that
raises ``NotImplementedError``, an empty answer) gets :func:`no_answer`, a
FAIL without a hint, so the saved notebook gives nothing away.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class CheckResult:
    """The verdict of one checker."""

    name: str
    passed: bool
    message: str
    hint: str = ""

    def __bool__(self) -> bool:
        return self.passed

    def __str__(self) -> str:
        if self.passed:
            return f"PASS {self.name}: {self.message}"
        hint = f"\n  Hint: {self.hint}" if self.hint else ""
        return f"FAIL {self.name}: {self.message}{hint}"

    def _repr_pretty_(self, printer, cycle) -> None:  # IPython display: just the message
        printer.text(str(self))

    def __repr__(self) -> str:
        return str(self)


NO_ANSWER = ("no answer yet: replace the `raise NotImplementedError` line with your code "
             "(a hint appears after a first wrong attempt)")


def no_answer(name: str, message: str = NO_ANSWER) -> CheckResult:
    """The verdict for an exercise not attempted yet: FAIL, and no hint."""
    return CheckResult(name, False, message)


#: What an untouched stub that returns None gets (no hint: it has not tried yet).
RETURNED_NONE = "no answer yet: your function returned None (a hint appears after a first wrong attempt)"


def attempt(name: str, student: Callable, args, *, where: str, hint: str, none: str = NO_ANSWER):
    """Call ``student(*args)`` on the student's behalf: ``(answer, None)``, or ``(None, result)`` to return.

    An untouched stub (it raises ``NotImplementedError``, or returns None: message ``none``) gets
    :func:`no_answer`, without a hint; any other exception is the student's bug, reported with
    ``where`` and the ``hint``, never raised.
    """
    try:
        got = student(*args)
    except NotImplementedError:
        return None, no_answer(name)
    except Exception as exc:  # the student's bug, reported, not raised
        return None, CheckResult(name, False, f"{where} raised {type(exc).__name__}: {exc}", hint)
    if got is None:
        return None, no_answer(name, none)
    return got, None


def run_cases(name: str, student: Callable, cases, reference: Callable, *, hint: str,
              rtol: float = 1e-6, atol: float = 1e-9, diagnose: Callable | None = None) -> CheckResult:
    """Compare ``student(*args)`` with ``reference(*args)`` on every case.

    ``diagnose(args, got, want)`` may return a more specific hint for a
    typical wrong answer (e.g. "you divided by N instead of m_i").
    """
    if not callable(student):
        return CheckResult(name, False, f"expected a function, got {type(student).__name__}", hint)
    for k, args in enumerate(cases, start=1):
        want = np.asarray(reference(*args), dtype=np.float64)
        got, stop = attempt(name, student, args, where=f"case {k}", hint=hint)
        if stop is not None:
            return stop
        try:
            got = np.asarray(got, dtype=np.float64)
        except (TypeError, ValueError):
            return CheckResult(name, False, f"case {k}: expected numbers, got {type(got).__name__}", hint)
        if got.shape != want.shape:
            return CheckResult(name, False, f"case {k}: expected shape {want.shape}, got {got.shape}", hint)
        if not np.allclose(got, want, rtol=rtol, atol=atol):
            specific = diagnose(args, got, want) if diagnose else None
            err = float(np.max(np.abs(got - want)))
            return CheckResult(name, False, f"case {k}: largest difference {err:.3g} from the expected value",
                               specific or hint)
    return CheckResult(name, True, f"all {len(cases)} cases agree with the reference")


def read_only(*arrays, dtype=None) -> list[np.ndarray]:
    """Copies of ``arrays`` that a student's function cannot modify in place."""
    out = []
    for a in arrays:
        a = np.array(a, dtype=dtype)
        a.setflags(write=False)
        out.append(a)
    return out


def safe(diagnose: Callable) -> Callable:
    """A diagnosis must never turn a student's odd answer into an exception."""
    def wrapped(args, got, want):
        try:
            return diagnose(args, got, want)
        except Exception:
            return None
    return wrapped


def regression_cases(seed: int, shapes) -> list[tuple]:
    """``(theta, X, y)`` cases: one worked by hand, then one per ``(m, d)`` in ``shapes``.

    By hand: x = [1, 2], y = [1, 3], theta = [0, 1] give residuals [0, -1]
    and the MSE gradient [-1, -2].
    """
    rng = np.random.default_rng(seed)
    cases = [tuple(read_only([0.0, 1.0], [[1.0], [2.0]], [1.0, 3.0], dtype=np.float64))]
    for m, d in shapes:
        theta = rng.normal(size=d + 1)
        X = rng.normal(size=(m, d)) + 0.5
        y = X @ rng.normal(size=d) + 1.5 + 0.3 * rng.normal(size=m)
        cases.append(tuple(read_only(theta, X, y, dtype=np.float64)))
    return cases
