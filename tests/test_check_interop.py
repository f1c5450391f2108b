"""Checker of notebook 17: the reference solution passes, typical mistakes fail with their hint, stubs get no hint.

The reference is a plain loop over the parties, not the library's vectorised Recorder.
"""

import math

import numpy as np
from checks_helpers import assert_fail, assert_pass, raises

from fl_helpers import check


def answered(sizes, losses):
    total = weight = 0.0
    for m, loss in zip(sizes, losses):
        if not math.isnan(loss):
            total += m * loss
            weight += m
    return total / weight


def stub(sizes, losses):
    raise NotImplementedError("write your solution here")


def test_the_reference_solution_passes():
    assert_pass(check.answered_loss(answered))


def test_the_reference_is_the_classrooms_rule():
    from fl_helpers.interop.flower import _AnsweredRecorder

    sizes, losses = [10, 30, 60, 5], [1.0, float("nan"), 0.5, 2.0]
    rec = _AnsweredRecorder(sizes)
    assert rec._global(np.array(losses)) == answered(sizes, losses) == (10 + 30 + 10) / 75


def test_untouched_exercise_fails_without_a_hint():
    for answer in (stub, lambda *args: None):
        result = check.answered_loss(answer)
        assert_fail(result)
        assert result.hint == ""


def test_typical_wrong_answers_fail_with_their_hint():
    assert_fail(check.answered_loss(lambda s, ls: float(np.sum(np.asarray(s) * np.asarray(ls)) / np.sum(s))),
                "NaN loss entered")
    assert_fail(check.answered_loss(lambda s, ls: float(np.nansum(np.asarray(s) * np.asarray(ls)) / np.sum(s))),
                "silently wrong")
    assert_fail(check.answered_loss(lambda s, ls: float(np.nanmean(ls))), "unweighted mean")
    assert_fail(check.answered_loss(raises), "Leave out")
    assert_fail(check.answered_loss(3))
