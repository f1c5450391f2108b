"""Optional dependencies in tests: skip where a package is missing, except in CI.

Under ``CI=true`` a missing browser or TensorFlow *fails* the test: CI must
run everything, and a green run that skipped half the suite would hide it.
"""

from __future__ import annotations

import importlib.util
import os

import pytest

TF_MISSING = "TensorFlow is not installed (pip install -e '.[cpu]')"


def in_ci() -> bool:
    """True when the environment says this is CI (``CI=true``, ``1`` or ``yes``)."""
    return os.environ.get("CI", "").lower() in ("1", "true", "yes")


def require(ok: bool, message: str, *, what: str = "these tests") -> None:
    """Skip with ``message`` unless ``ok``; under CI fail instead."""
    if not ok:
        if in_ci():
            pytest.fail(f"{message} (CI=true: {what} must run here)")
        pytest.skip(message)


def has_tensorflow() -> bool:
    return importlib.util.find_spec("tensorflow") is not None


def require_tensorflow() -> None:
    """Skip without TensorFlow, except under CI=true, where a missing TensorFlow fails."""
    require(has_tensorflow(), TF_MISSING, what="the TensorFlow tests")
