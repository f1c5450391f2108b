"""Pin BLAS to ``--threads`` before numpy is imported (BLAS reads its thread variables once, at import).

Imports nothing but the standard library, so a benchmark can call it first::

    from pinning import pin_from_argv
    PINNED = pin_from_argv() if __name__ == "__main__" else None
    import numpy as np  # noqa: E402
"""

from __future__ import annotations

import argparse
import os
import sys

THREAD_VARIABLES = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")


def threads_option(argv) -> int | None:
    """The value of ``--threads`` (``--threads 1`` or ``--threads=1``), parsed as ``main`` parses it."""
    pre = argparse.ArgumentParser(add_help=False)
    pre.add_argument("--threads", type=int, default=None)
    return pre.parse_known_args(argv)[0].threads


def pin_blas_environment(threads: int | None) -> None:
    """Set the BLAS thread variables; BLAS reads them once, when numpy is imported."""
    if threads is not None:
        for variable in THREAD_VARIABLES:
            os.environ[variable] = str(threads)


def pin_from_argv(argv=None, *, default: int | None = None) -> int | None:
    """Read ``--threads`` from the command line and pin BLAS to it; returns the value (None: not pinned).

    Without ``--threads`` the ``default`` applies (None: leave BLAS alone); ``--threads 0`` leaves it alone too.
    """
    threads = threads_option(sys.argv[1:] if argv is None else argv)
    threads = default if threads is None else threads
    threads = threads if threads is None or threads > 0 else None
    pin_blas_environment(threads)
    return threads
