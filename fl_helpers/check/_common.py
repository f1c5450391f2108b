"""Pass/fail machinery shared by the exercise checkers.

A checker calls the student's function on a few small cases, compares with the
library's reference and returns a :class:`CheckResult` that prints as one clear
line: ``PASS: ...`` or ``FAIL: ... Hint: ...``. It never raises for a wrong
answer (an exception inside the student's code becomes a FAIL with the error),
so a notebook keeps running; ``bool(result)`` tells the test suite the verdict.
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
        try:
            got = np.asarray(student(*args), dtype=np.float64)
        except Exception as exc:  # the student's bug, reported, not raised
            return CheckResult(name, False, f"case {k} raised {type(exc).__name__}: {exc}", hint)
        if got.shape != want.shape:
            return CheckResult(name, False, f"case {k}: expected shape {want.shape}, got {got.shape}", hint)
        if not np.allclose(got, want, rtol=rtol, atol=atol):
            specific = diagnose(args, got, want) if diagnose else None
            err = float(np.max(np.abs(got - want)))
            return CheckResult(name, False, f"case {k}: largest difference {err:.3g} from the expected value",
                               specific or hint)
    return CheckResult(name, True, f"all {len(cases)} cases agree with the reference")
