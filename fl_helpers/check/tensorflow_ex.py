r"""Checkers for the exercises of notebook 04 (TensorFlow and the GPU) and appendix A1.

Each returns a :class:`~fl_helpers.check.CheckResult` that prints ``PASS ...``
or ``FAIL ... Hint: ...`` and never raises because of the student's code.
TensorFlow is imported inside the checkers, never by ``import fl_helpers.check``.

:func:`tape_gradient`
    ``fn(theta, X, y)``: the MSE gradient :math:`\frac2m\tilde X^\top(\tilde X\theta - y)`
    computed with ``tf.GradientTape`` (intercept and slopes as two variables, like a Keras ``Dense`` layer).
:func:`segment_gradients`
    ``fn(Theta, X, y, segment_ids)``: every party's gradient at its *own* model,
    :math:`\Delta_i = \frac2{m_i}\sum_{j:\,s_j = i}\tilde x_j(\tilde x_j^\top\theta_{s_j} - y_j)`,
    with ``tf.gather`` and ``tf.math.segment_sum``.
:func:`traced_once`
    ``fn(theta, X, y, lr)``: a ``tf.function`` gradient-descent step that traces once
    for every data size and learning rate.

The reference solutions and the wrong answers each checker must reject live in
``tests/test_check_tensorflow.py``.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from ..linear import mse_gradient as _mse_gradient
from ._common import CheckResult, no_answer, read_only, regression_cases, safe

TAPE_HINT = ("tape.gradient returned None: it only sees what was computed inside `with tf.GradientTape() "
             "as tape:` from the tf.Variable(s). Build the prediction b + X w from the variables and the "
             "loss from the prediction, both inside the `with` block; call tape.gradient after it.")


class _NoGradient(Exception):
    """The student's answer holds a None: a gradient the tape did not record."""




def _as_vector(result) -> np.ndarray:
    """The student's answer as float64: a tensor, an array, or a list of parts (flattened in order)."""
    if result is None:
        raise _NoGradient
    if isinstance(result, (list, tuple)):
        if any(part is None for part in result):
            raise _NoGradient
        parts = [np.ravel(np.asarray(part, dtype=np.float64)) for part in result]
        return np.concatenate(parts) if parts else np.zeros(0)
    return np.asarray(result, dtype=np.float64)


def _mentions_none(exc: Exception) -> bool:
    text = f"{type(exc).__name__}: {exc}"
    return "NoneType" in text or "None values not supported" in text or "zero-dimensional" in text


def _tensorflow():
    """TensorFlow, quietly; None (and the checker FAILs with the install hint) when it is missing."""
    from ..tf_env import import_tensorflow
    try:
        return import_tensorflow()
    except ImportError:
        return None


def _missing_tf(name: str) -> CheckResult:
    from ..tf_env import INSTALL_HINT
    return CheckResult(name, False, "TensorFlow is not available", INSTALL_HINT)


def _compare(name, student, cases, reference, *, hint, diagnose, convert=_as_vector,
             rtol=1e-6, atol=1e-9) -> CheckResult:
    """Like :func:`~fl_helpers.check._common.run_cases`, with a hint for None gradients and errors."""
    for k, args in enumerate(cases, start=1):
        want = np.asarray(reference(*args), dtype=np.float64)
        try:
            got = convert(student(*args))
        except NotImplementedError:
            return no_answer(name)
        except _NoGradient:
            return CheckResult(name, False, f"case {k}: your function returned None (or a list holding None)",
                               TAPE_HINT)
        except Exception as exc:  # the student's bug, reported, not raised
            message = f"case {k} raised {type(exc).__name__}: {str(exc)[:300]}"
            return CheckResult(name, False, message, TAPE_HINT if _mentions_none(exc) else hint)
        if got.shape != want.shape:
            specific = diagnose(args, got, want)
            return CheckResult(name, False, f"case {k}: expected shape {want.shape}, got {got.shape}",
                               specific or hint)
        if not np.allclose(got, want, rtol=rtol, atol=atol):
            specific = diagnose(args, got, want)
            err = float(np.max(np.abs(got - want))) if np.all(np.isfinite(got)) else float("nan")
            return CheckResult(name, False, f"case {k}: largest difference {err:.3g} from the expected value",
                               specific or hint)
    return CheckResult(name, True, f"all {len(cases)} cases agree with the reference")




def _scale_hint(got, want) -> str | None:
    """Hints shared by the gradient checkers: factor 2, sign, sum instead of mean."""
    if got.shape != want.shape:
        return None
    if np.allclose(got, want / 2):
        return "Missing factor 2: the derivative of (x̃ᵀθ − y)² is 2 (x̃ᵀθ − y) x̃ (use the squared error)."
    if np.allclose(got, -want):
        return "Wrong sign: the residual is prediction − target, r = X̃θ − y."
    return None


# --------------------------------------------------------------------------- tape gradient

def _tape_cases():
    return regression_cases(31, ((9, 3), (1, 2), (30, 1), (12, 4)))


def tape_gradient(fn: Callable) -> CheckResult:
    r"""Check ``fn(theta, X, y)``: the MSE gradient :math:`\frac2m\tilde X^\top(\tilde X\theta - y)` by ``tf.GradientTape``.

    ``theta`` (d + 1,) float64 has the intercept first, ``X`` (m, d) holds the
    features without the bias column, ``y`` (m,) the targets. The answer is one
    vector of d + 1 numbers, intercept first (a tensor or an array; a list
    ``[d_intercept, d_slopes]`` is flattened in that order).
    """
    name = "tape_gradient"
    hint = ("Inside `with tf.GradientTape() as tape:` compute pred = b + X w from the variables "
            "b = tf.Variable(theta[0]) and w = tf.Variable(theta[1:]) and loss = mean((pred − y)²); after the block, "
            "tape.gradient(loss, [b, w]) gives [∂L/∂b, ∂L/∂w]: return them as one vector, intercept first.")
    if not callable(fn):
        return CheckResult(name, False, f"expected a function, got {type(fn).__name__}", hint)
    if _tensorflow() is None:
        return _missing_tf(name)

    def diagnose(args, got, want):
        theta, X, y = args
        if got.shape == (X.shape[1],):
            return ("You returned only the slopes' gradient: the intercept b is a parameter too. Differentiate "
                    "with respect to both variables, tape.gradient(loss, [b, w]), and put ∂L/∂b first.")
        if got.shape != want.shape:
            return None
        specific = _scale_hint(got, want)
        if specific:
            return specific
        if np.allclose(got, np.concatenate([want[1:], want[:1]])) and not np.allclose(got, want):
            return ("Right numbers, wrong order: Keras lists [kernel w, bias b], the course's θ is "
                    "[θ0 (intercept), θ1 … θd]. Put ∂L/∂b first.")
        no_intercept = _mse_gradient(np.concatenate([[0.0], theta[1:]]), X, y)
        if np.allclose(got, no_intercept):
            return "The prediction must include the intercept: ŷ = b + X w with b = theta[0]."
        if len(y) > 1 and np.allclose(got, len(y) * want):
            return "You summed the squared errors: the MSE is their mean (tf.reduce_mean)."
        return None

    result = _compare(name, fn, _tape_cases(), _mse_gradient, hint=hint, diagnose=safe(diagnose))
    if not result:
        return result
    # the skill the exercise names: the gradient must come from a tape, not from the formula
    if _tapes_used(fn, *_tape_cases()[-1]) == 0:
        return CheckResult(name, False, "the values are right, but no tf.GradientTape was used: this exercise "
                           "asks TensorFlow to differentiate, not the hand-derived formula",
                           "Compute the loss inside `with tf.GradientTape() as tape:` from tf.Variable s and "
                           "ask tape.gradient for it.")
    return result


def _tapes_used(fn, *args) -> int:
    """How many ``tf.GradientTape`` blocks ``fn(*args)`` opened (``tf.GradientTape`` counted while it runs)."""
    tf = _tensorflow()
    original = tf.GradientTape
    opened = []

    class CountingTape(original):
        def __enter__(self):
            opened.append(1)
            return super().__enter__()

    tf.GradientTape = CountingTape
    try:
        fn(*args)
    except Exception:
        pass
    finally:
        tf.GradientTape = original
    return len(opened)


# --------------------------------------------------------------------------- segment gradients

def _segment_cases():
    rng = np.random.default_rng(32)
    # by hand: party 0 holds x = [1, 2], y = [1, 3] with theta_0 = [0, 1] -> [-1, -2];
    # party 1 holds x = [3], y = [0] with theta_1 = [1, 0] -> residual 1 -> [2, 6]
    cases = [tuple(read_only([[0.0, 1.0], [1.0, 0.0]], [[1.0], [2.0], [3.0]], [1.0, 3.0, 0.0],
                              np.array([0, 0, 1], dtype=np.int32)))]
    for sizes, d, shared in (([5, 17, 2, 9], 2, False), ([6, 6, 6], 3, True), ([1, 40], 1, False),
                             ([11, 3, 7, 1, 8], 4, False)):
        sizes = np.array(sizes)
        M, N = int(sizes.sum()), len(sizes)
        X = rng.normal(size=(M, d)) + 0.3
        y = X @ rng.normal(size=d) - 0.7 + 0.2 * rng.normal(size=M)
        Theta = np.tile(rng.normal(size=d + 1), (N, 1)) if shared else rng.normal(size=(N, d + 1))
        seg = np.repeat(np.arange(N), sizes).astype(np.int32)
        cases.append(tuple(read_only(Theta, X, y, seg)))
    return cases


def _per_party(Theta, X, y, seg):
    """Reference: one numpy gradient per party, at the party's own model."""
    return np.array([_mse_gradient(Theta[i], X[seg == i], y[seg == i]) for i in range(len(Theta))])


def _as_matrix(result) -> np.ndarray:
    if result is None:
        raise _NoGradient
    return np.asarray(result, dtype=np.float64)


def segment_gradients(fn: Callable) -> CheckResult:
    r"""Check ``fn(Theta, X, y, segment_ids)``: every party's gradient at its own model, by segment sums.

    ``X`` (M, d) and ``y`` (M,) hold all parties' rows, party after party;
    ``segment_ids`` (M,) int32 (sorted) says which party owns each row;
    ``Theta`` (N, d + 1) holds one model per party (intercept first). The answer
    has shape (N, d + 1):
    :math:`\Delta_i = \frac2{m_i}\sum_{j:\,s_j = i}\tilde x_j(\tilde x_j^\top\theta_i - y_j)`.
    """
    name = "segment_gradients"
    hint = ("Row j belongs to party s_j: its prediction uses that party's model, tf.gather(Theta, segment_ids) "
            "(M, d + 1); r = Σ_k X̃_jk Θ_{s_j,k} − y_j; then tf.math.segment_sum(X̃ * r[:, None], segment_ids) "
            "sums each party's rows, and row i is divided by m_i (tf.math.segment_sum of ones) and times 2.")
    if not callable(fn):
        return CheckResult(name, False, f"expected a function, got {type(fn).__name__}", hint)
    if _tensorflow() is None:
        return _missing_tf(name)

    def diagnose(args, got, want):
        Theta, X, y, seg = args
        N, p = Theta.shape
        if got.shape == (p,):
            return ("One vector for everybody: reduce_sum adds all rows together. tf.math.segment_sum(…, "
                    "segment_ids) keeps one sum per party, shape (N, d + 1).")
        if got.shape == (N, p - 1):
            return "The intercept is missing: use X̃ = [1, X] (a column of ones in front), d + 1 entries per party."
        if got.shape != want.shape:
            return None
        specific = _scale_hint(got, want)
        if specific:
            return specific
        sizes = np.bincount(seg, minlength=N).astype(float)
        if np.allclose(got, want * sizes[:, None] / len(y)):
            return "Divide party i's sum by its own m_i (its number of rows), not by M = all rows."
        if np.allclose(got, want * sizes[:, None]):
            return "You summed each party's per-row gradients: divide row i by m_i to get the mean."
        if np.allclose(got, _per_party(np.tile(Theta[0], (N, 1)), X, y, seg)):
            return ("Every party used Theta[0]. Each party has its own model: the rows of party i are predicted "
                    "with Theta[i]; tf.gather(Theta, segment_ids) gives each row its party's model.")
        no_intercept = _per_party(np.hstack([np.zeros((N, 1)), Theta[:, 1:]]), X, y, seg)
        if np.allclose(got, no_intercept):
            return "The prediction must include each party's intercept Θ[i, 0]."
        return None

    return _compare(name, fn, _segment_cases(), _per_party, hint=hint, diagnose=safe(diagnose),
                    convert=_as_matrix)


# --------------------------------------------------------------------------- traced once

def _step_cases():
    rng = np.random.default_rng(33)
    cases = []
    # at most 4 calls: a function without input signature traces at most 4 times (no retracing warning)
    for m, d, lr in ((8, 2, 0.1), (8, 2, 0.05), (25, 2, 0.1), (3, 4, 0.3)):
        theta = rng.normal(size=d + 1)
        X = rng.normal(size=(m, d))
        y = X @ rng.normal(size=d) + 0.5 + 0.1 * rng.normal(size=m)
        cases.append((*read_only(theta, X, y), lr))     # lr: a Python float, as a slider gives it
    return cases


def _gd_step(theta, X, y, lr):
    return theta - lr * _mse_gradient(theta, X, y)


def traced_once(fn) -> CheckResult:
    r"""Check ``fn(theta, X, y, lr)``: a ``tf.function`` step :math:`\theta - \eta\frac2m\tilde X^\top(\tilde X\theta - y)`
    that is traced once for all data sizes and learning rates.

    The checker calls it with float64 arrays of several shapes (m, d) and
    Python-float learning rates, compares the values (to 1e-5 relative, so a
    float32 signature passes) and then reads ``fn.experimental_get_tracing_count()``:
    it must be 1.
    """
    name = "traced_once"
    hint = ("Give tf.function an input_signature: one tf.TensorSpec per argument, with None for every "
            "size that changes, and the learning rate as a scalar tensor rather than a Python number.")
    tf = _tensorflow()
    if tf is None:
        return _missing_tf(name)
    if fn is None:                                  # the exercise's starting point: nothing written yet
        return no_answer(name, "no answer yet: set gd_step_fixed to your tf.function "
                               "(a hint appears after a first wrong attempt)")
    if not callable(fn) or not hasattr(fn, "experimental_get_tracing_count"):
        return CheckResult(name, False, f"expected a tf.function, got {type(fn).__name__}",
                           "Put @tf.function(input_signature=[...]) on the line above `def`. " + hint)

    def diagnose(args, got, want):
        return _scale_hint(got - args[0], want - args[0])

    result = _compare(name, fn, _step_cases(), _gd_step, hint=hint, diagnose=safe(diagnose),
                      convert=_as_matrix, rtol=1e-5, atol=1e-7)
    if not result:
        if "Can not cast TensorSpec" in result.message or "incompatible" in result.message:
            return CheckResult(name, False, result.message,
                               "The input signature fixes a size that changes: use None for every dimension "
                               "(rows m, features d) in the TensorSpecs. " + hint)
        return result
    traces = fn.experimental_get_tracing_count()
    if traces != 1:
        return CheckResult(name, False,
                           f"the values are right, but the function was traced {traces} times for "
                           f"{len(_step_cases())} calls",
                           "Each new shape and each new Python number (lr) makes a new graph. " + hint)
    return CheckResult(name, True, f"all {len(_step_cases())} cases agree with the reference, traced once")
