"""Checkers of notebook 04 and appendix A1: accept the reference solutions, reject typical wrong answers.

The reference solutions of the exercises live here (not in the notebook).

Needs TensorFlow: without it these tests skip, except in CI (``CI=true``),
where they fail (as ``tests/test_browser.py`` does without Chromium).
"""

from __future__ import annotations

import importlib.util
import subprocess
import sys

import numpy as np
import pytest
from checks_helpers import assert_fail, assert_pass, raises
from optional import require

from fl_helpers import check
from fl_helpers.tf_env import import_tensorflow

HAS_TF = importlib.util.find_spec("tensorflow") is not None
NO_TF_NEEDED = {"test_importing_the_checkers_does_not_import_tensorflow"}


def _require(ok: bool, message: str) -> None:
    require(ok, message, what="the TensorFlow tests")


@pytest.fixture(autouse=True)
def _needs_tensorflow(request):
    if request.function.__name__ not in NO_TF_NEEDED:
        _require(HAS_TF, "TensorFlow is not installed (pip install -e '.[cpu]')")


# TensorFlow for the reference solutions below (None without it: every test that uses it is skipped)
tf = import_tensorflow() if HAS_TF else None


def test_importing_the_checkers_does_not_import_tensorflow():
    code = ("import sys, fl_helpers.check, fl_helpers.check.tensorflow_ex; "
            "assert 'tensorflow' not in sys.modules, 'check imported tensorflow'")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr


# ----------------------------------------------------------------- reference solutions


def solution_tape_gradient(theta, X, y):
    """Intercept and slopes as two variables (like Keras' Dense), the loss inside the tape."""
    b = tf.Variable(theta[0], dtype=tf.float64)
    w = tf.Variable(theta[1:], dtype=tf.float64)
    with tf.GradientTape() as tape:
        pred = b + tf.linalg.matvec(tf.constant(X), w)
        loss = tf.reduce_mean(tf.square(pred - y))
    db, dw = tape.gradient(loss, [b, w])
    return tf.concat([db[None], dw], axis=0)


def solution_segment_gradients(Theta, X, y, segment_ids):
    Xt = tf.concat([tf.ones([tf.shape(X)[0], 1], tf.float64), X], axis=1)
    r = tf.reduce_sum(Xt * tf.gather(Theta, segment_ids), axis=1) - y
    sums = tf.math.segment_sum(Xt * r[:, None], segment_ids)
    m = tf.math.segment_sum(tf.ones_like(y), segment_ids)
    return 2.0 * sums / m[:, None]


def make_solution_traced_once():
    """A fresh tf.function each time: its tracing count starts at 0."""
    @tf.function(input_signature=[tf.TensorSpec([None], tf.float64), tf.TensorSpec([None, None], tf.float64),
                                  tf.TensorSpec([None], tf.float64), tf.TensorSpec([], tf.float64)])
    def gd_step(theta, X, y, lr):
        r = theta[0] + tf.linalg.matvec(X, theta[1:]) - y
        m = tf.cast(tf.size(y), tf.float64)
        grad = 2.0 / m * tf.concat([[tf.reduce_sum(r)], tf.linalg.matvec(X, r, transpose_a=True)], axis=0)
        return theta - lr * grad
    return gd_step


# ----------------------------------------------------------------- tape_gradient

def test_tape_gradient_accepts_the_solution_and_a_single_variable_version():
    def one_variable(theta, X, y):
        t = tf.Variable(theta)
        Xt = tf.constant(np.hstack([np.ones((len(y), 1)), X]))
        with tf.GradientTape() as tape:
            loss = tf.reduce_mean((tf.linalg.matvec(Xt, t) - y) ** 2)
        return tape.gradient(loss, t)

    assert_pass(check.tape_gradient(solution_tape_gradient))
    assert_pass(check.tape_gradient(one_variable))


def test_tape_gradient_accepts_a_list_intercept_first():
    def as_list(theta, X, y):
        b, w = tf.Variable(theta[0]), tf.Variable(theta[1:])
        with tf.GradientTape() as tape:
            loss = tf.reduce_mean(tf.square(b + tf.linalg.matvec(tf.constant(X), w) - y))
        return tape.gradient(loss, [b, w])

    assert_pass(check.tape_gradient(as_list))


def test_tape_gradient_loss_outside_the_tape_gives_the_none_hint():
    def outside(theta, X, y):
        b, w = tf.Variable(theta[0]), tf.Variable(theta[1:])
        loss = tf.reduce_mean(tf.square(b + tf.linalg.matvec(tf.constant(X), w) - y))
        with tf.GradientTape() as tape:
            pass
        return tape.gradient(loss, [b, w])          # [None, None]

    def outside_concat(theta, X, y):
        b, w = tf.Variable(theta[0]), tf.Variable(theta[1:])
        loss = tf.reduce_mean(tf.square(b + tf.linalg.matvec(tf.constant(X), w) - y))
        with tf.GradientTape() as tape:
            loss = loss + 0.0
        db, dw = tape.gradient(loss, [b, w])
        return tf.concat([db[None], dw], axis=0)    # raises: None is not a tensor

    def no_variable(theta, X, y):                   # a constant, not a Variable: the tape does not watch it
        t = tf.constant(theta)
        Xt = tf.constant(np.hstack([np.ones((len(y), 1)), X]))
        with tf.GradientTape() as tape:
            loss = tf.reduce_mean((tf.linalg.matvec(Xt, t) - y) ** 2)
        return tape.gradient(loss, t)

    for fn in (outside, outside_concat, no_variable):
        result = check.tape_gradient(fn)
        assert_fail(result, "tape.gradient returned None")


def test_tape_gradient_rejects_a_forgotten_intercept():
    def slopes_only(theta, X, y):
        w = tf.Variable(theta[1:])
        with tf.GradientTape() as tape:
            loss = tf.reduce_mean(tf.square(theta[0] + tf.linalg.matvec(tf.constant(X), w) - y))
        return tape.gradient(loss, w)

    def no_intercept_in_prediction(theta, X, y):
        b, w = tf.Variable(theta[0]), tf.Variable(theta[1:])
        with tf.GradientTape() as tape:
            loss = tf.reduce_mean(tf.square(0.0 * b + tf.linalg.matvec(tf.constant(X), w) - y))
        db, dw = tape.gradient(loss, [b, w])
        return tf.concat([db[None], dw], axis=0)

    assert_fail(check.tape_gradient(slopes_only), "only the slopes")
    assert_fail(check.tape_gradient(no_intercept_in_prediction), "intercept")


def test_tape_gradient_rejects_keras_order_sum_and_half():
    def keras_order(theta, X, y):
        db, dw = np.split(np.asarray(solution_tape_gradient(theta, X, y)), [1])
        return np.concatenate([dw, db])

    def summed(theta, X, y):
        return len(y) * np.asarray(solution_tape_gradient(theta, X, y))

    def half(theta, X, y):
        return 0.5 * np.asarray(solution_tape_gradient(theta, X, y))

    assert_fail(check.tape_gradient(keras_order), "wrong order")
    assert_fail(check.tape_gradient(summed), "mean")
    assert_fail(check.tape_gradient(half), "factor 2")


def test_tape_gradient_reports_exceptions_and_non_functions():
    result = check.tape_gradient(raises)
    assert_fail(result)
    assert "RuntimeError: student bug" in result.message
    assert_fail(check.tape_gradient(42))


def test_tape_gradient_hand_case():
    # x = [1, 2], y = [1, 3], theta = [0, 1]: residuals [0, -1], gradient (2/2) [-1, -2]
    np.testing.assert_allclose(solution_tape_gradient(np.array([0.0, 1.0]), np.array([[1.0], [2.0]]),
                                                      np.array([1.0, 3.0])), [-1.0, -2.0])


# ----------------------------------------------------------------- segment_gradients

def test_segment_gradients_accepts_the_solution():
    assert_pass(check.segment_gradients(solution_segment_gradients))


def test_segment_gradients_hand_case():
    got = solution_segment_gradients(tf.constant([[0.0, 1.0], [1.0, 0.0]], tf.float64),
                                     tf.constant([[1.0], [2.0], [3.0]], tf.float64),
                                     tf.constant([1.0, 3.0, 0.0], tf.float64), tf.constant([0, 0, 1]))
    np.testing.assert_allclose(got, [[-1.0, -2.0], [2.0, 6.0]])


def _variant(*, model="own", divide="m_i", factor=2.0, bias=True, reduce="segment"):
    def fn(Theta, X, y, seg):
        Theta, X, y = (np.asarray(a, dtype=np.float64) for a in (Theta, X, y))
        seg = np.asarray(seg)
        Xt = np.hstack([np.ones((len(y), 1)), X]) if bias else X
        models = np.tile(Theta[0], (len(y), 1)) if model == "first" else Theta[seg]
        if not bias:
            models = models[:, 1:]
        r = np.sum(Xt * models, axis=1) - y
        if reduce == "all":
            return factor * (Xt * r[:, None]).sum(axis=0) / len(y)
        sums = tf.math.segment_sum(Xt * r[:, None], seg).numpy()
        m = np.bincount(seg).astype(float)[:, None]
        scale = {"m_i": 1 / m, "M": 1 / len(y), "none": 1.0}[divide]
        return factor * sums * scale
    return fn


@pytest.mark.parametrize("wrong, word", [
    (_variant(model="first"), "Theta[0]"),
    (_variant(divide="M"), "own m_i"),
    (_variant(divide="none"), "divide row i by m_i"),
    (_variant(factor=1.0), "factor 2"),
    (_variant(bias=False), "intercept"),
    (_variant(reduce="all"), "segment_sum"),
], ids=["first-model", "divide-by-M", "sum", "factor", "no-bias", "reduce-all"])
def test_segment_gradients_rejects_typical_wrong_answers(wrong, word):
    assert_pass(check.segment_gradients(_variant()))       # the numpy twin of the solution passes
    assert_fail(check.segment_gradients(wrong), word)


def test_segment_gradients_reports_exceptions_and_none():
    assert_fail(check.segment_gradients(raises))
    assert_fail(check.segment_gradients(lambda *args: None), "tape.gradient returned None")
    assert_fail(check.segment_gradients("not a function"))


# ----------------------------------------------------------------- traced_once

def test_traced_once_accepts_the_solution_even_if_called_before():
    step = make_solution_traced_once()
    step(np.zeros(3), np.ones((5, 2)), np.ones(5), 0.5)     # the student tried it out first
    assert_pass(check.traced_once(step))
    assert step.experimental_get_tracing_count() == 1


def test_traced_once_without_an_answer_fails_without_a_hint():
    result = check.traced_once(None)
    assert_fail(result)
    assert "no answer yet" in result.message and not result.hint


def test_traced_once_rejects_a_function_without_signature():
    @tf.function
    def gd_step(theta, X, y, lr):
        r = theta[0] + tf.linalg.matvec(X, theta[1:]) - y
        m = tf.cast(tf.size(y), tf.float64)
        return theta - lr * 2.0 / m * tf.concat([[tf.reduce_sum(r)], tf.linalg.matvec(X, r, transpose_a=True)], 0)

    result = check.traced_once(gd_step)
    assert_fail(result, "input_signature")
    assert "the values are right" in result.message
    assert gd_step.experimental_get_tracing_count() > 1


def test_traced_once_rejects_fixed_shapes_and_plain_functions():
    @tf.function(input_signature=[tf.TensorSpec([3], tf.float64), tf.TensorSpec([8, 2], tf.float64),
                                  tf.TensorSpec([8], tf.float64), tf.TensorSpec([], tf.float64)])
    def fixed(theta, X, y, lr):
        return make_solution_traced_once()(theta, X, y, lr)

    def plain(theta, X, y, lr):
        return theta

    assert_fail(check.traced_once(fixed), "None for every dimension")
    assert_fail(check.traced_once(plain), "@tf.function")


def test_traced_once_rejects_wrong_values():
    inner = make_solution_traced_once()

    @tf.function(input_signature=[tf.TensorSpec([None], tf.float64), tf.TensorSpec([None, None], tf.float64),
                                  tf.TensorSpec([None], tf.float64), tf.TensorSpec([], tf.float64)])
    def wrong_sign(theta, X, y, lr):
        return 2.0 * theta - inner(theta, X, y, lr)          # theta + lr * grad

    assert_fail(check.traced_once(wrong_sign), "Wrong sign")


def test_tape_gradient_refuses_the_hand_formula():
    """Right numbers without a tape: the exercise is TensorFlow's differentiation."""
    def by_formula(theta, X, y):
        Xt = np.hstack([np.ones((len(y), 1)), X])
        return 2 / len(y) * Xt.T @ (Xt @ theta - y)

    result = check.tape_gradient(by_formula)

    assert_fail(result, "tf.GradientTape")
    assert "no tf.GradientTape was used" in result.message
