"""Self-checks for the notebooks' exercises.

Usage in a notebook::

    from fl_helpers import check
    check.local_gradient(my_local_gradient)   # prints PASS or FAIL with a hint

The reference solutions live in ``tests/test_check.py``, which verifies that
every checker accepts them and rejects typical wrong answers.
"""

from ._common import CheckResult
