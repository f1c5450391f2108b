"""Argument checks shared by the public functions.

Every check raises at the public function's boundary with a message that names
the parameter, the allowed values and the value received, e.g.
``ValueError("lr must be a positive finite number, got -0.1")``.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Iterable

import numpy as np


def _is_bool(value) -> bool:
    return isinstance(value, (bool, np.bool_))


def positive_float(name: str, value, *, allow_zero: bool = False) -> float:
    """Return ``value`` as a float after checking it is finite and > 0 (or >= 0)."""
    if _is_bool(value) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a real number, got {value!r} ({type(value).__name__})")
    value = float(value)
    ok = math.isfinite(value) and (value >= 0 if allow_zero else value > 0)
    if not ok:
        kind = "a non-negative" if allow_zero else "a positive"
        raise ValueError(f"{name} must be {kind} finite number, got {value!r}")
    return value


def integer(name: str, value, *, minimum: int | None = None, maximum: int | None = None) -> int:
    """Return ``value`` as an int after checking minimum <= value <= maximum."""
    if _is_bool(value) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an integer, got {value!r} ({type(value).__name__})")
    value = int(value)
    if (minimum is not None and value < minimum) or (maximum is not None and value > maximum):
        lo = "-inf" if minimum is None else str(minimum)
        hi = "inf" if maximum is None else str(maximum)
        raise ValueError(f"{name} must be an integer in [{lo}, {hi}], got {value}")
    return value


def optional_batch_size(value) -> int | None:
    if value is None:
        return None
    return integer("batch_size", value, minimum=1)


def fraction(value) -> float:
    if _is_bool(value) or not isinstance(value, numbers.Real):
        raise TypeError(f"fraction must be a real number in (0, 1], got {value!r}")
    value = float(value)
    if not (0.0 < value <= 1.0):
        raise ValueError(f"fraction must be in (0, 1], got {value!r}")
    return value


def choice(name: str, value, allowed: Iterable[str]) -> str:
    allowed = tuple(allowed)
    if value not in allowed:
        raise ValueError(f"{name} must be one of {', '.join(map(repr, allowed))}; got {value!r}")
    return value


def seed(value) -> int | None:
    if value is None:
        return None
    return integer("seed", value, minimum=0)


def features(X, *, name: str = "X") -> np.ndarray:
    """Return ``X`` as a finite float64 matrix of shape (m, d), m >= 1, d >= 1."""
    arr = _as_float_array(name, X)
    if arr.ndim != 2:
        raise ValueError(f"{name} must be a 2-D array of shape (n_samples, n_features), got shape {arr.shape}")
    if arr.shape[0] < 1 or arr.shape[1] < 1:
        raise ValueError(f"{name} must have at least one sample and one feature, got shape {arr.shape}")
    _finite(name, arr)
    return arr


def targets(y, n_samples: int, *, name: str = "y", x_name: str = "X") -> np.ndarray:
    """Return ``y`` as a finite float64 vector of length ``n_samples``."""
    arr = _as_float_array(name, y)
    if arr.ndim != 1:
        raise ValueError(f"{name} must be a 1-D array of shape (n_samples,), got shape {arr.shape}")
    if arr.shape[0] != n_samples:
        raise ValueError(
            f"{x_name} and {name} must have the same number of samples, "
            f"got {n_samples} rows in {x_name} and {arr.shape[0]} values in {name}"
        )
    _finite(name, arr)
    return arr


def theta(value, n_params: int, *, name: str = "theta0") -> np.ndarray:
    """Return a float64 parameter vector of length ``n_params`` (= n_features + 1)."""
    arr = _as_float_array(name, value)
    if arr.shape != (n_params,):
        raise ValueError(
            f"{name} must have shape ({n_params},) = (n_features + 1,) with theta[0] the intercept, "
            f"got shape {arr.shape}"
        )
    _finite(name, arr)
    return arr


def _as_float_array(name: str, value) -> np.ndarray:
    try:
        arr = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise TypeError(f"{name} must be numeric array-like, got {type(value).__name__}") from exc
    return arr


def _finite(name: str, arr: np.ndarray) -> None:
    if not np.all(np.isfinite(arr)):
        bad = int(np.size(arr) - np.count_nonzero(np.isfinite(arr)))
        raise ValueError(f"{name} must contain only finite numbers, got {bad} NaN/inf value(s)")


def as_vector(value, *, name: str = "theta") -> np.ndarray:
    """Return a finite float64 1-D parameter vector."""
    arr = _as_float_array(name, value)
    if arr.ndim != 1:
        raise ValueError(f"{name} must be a 1-D parameter vector, got shape {arr.shape}")
    _finite(name, arr)
    return arr


def param_count(theta: np.ndarray, model, n_features: int, *, name: str = "theta") -> None:
    """Check that ``theta`` has as many entries as ``model`` has parameters for ``n_features``."""
    expected = model.expected_params(n_features, len(theta)) if hasattr(model, "expected_params") else None
    if expected is not None and len(theta) != expected:
        layout = model.layout(n_features) if hasattr(model, "layout") else ""
        raise ValueError(f"{name} must have shape ({expected},){layout}, got shape {theta.shape}")
