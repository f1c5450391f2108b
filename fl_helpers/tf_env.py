"""Quiet, lazy imports of TensorFlow and Keras.

``import tensorflow`` writes absl/oneDNN/CPU-feature lines straight to file
descriptor 2; in a notebook they land in the cell's stderr (and break strict
nbval). ``TF_CPP_MIN_LOG_LEVEL=3`` alone does not remove all of them, so fd 2
points at ``os.devnull`` while the import runs and is restored right after.
Only this module imports TensorFlow; ``import fl_helpers`` never does.
"""

from __future__ import annotations

import contextlib
import importlib
import os
import sys

INSTALL_HINT = ("TensorFlow is not installed; install the course extra "
                "`pip install -e '.[cpu]'` (or `.[gpu]` on a machine with an NVIDIA GPU)")


@contextlib.contextmanager
def _silenced_fd2():
    """Point file descriptor 2 (C/C++ stderr) at os.devnull inside the block."""
    sys.stderr.flush()
    saved = os.dup(2)
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


def _quiet_import(name: str):
    if name in sys.modules:
        return sys.modules[name]
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    try:
        with _silenced_fd2():
            return importlib.import_module(name)
    except ImportError as exc:
        raise ImportError(INSTALL_HINT) from exc


def import_tensorflow():
    """Return the ``tensorflow`` module, imported without log lines on stderr.

    TensorFloat-32 is turned off: on A100/H100-class GPUs TensorFlow otherwise
    multiplies float32 matrices with 10-bit significands, about 1e-3 relative
    error instead of float32's 6e-8, and the course's float32 tolerances (1e-5,
    ``engines.tf_engine.FLOAT32_RTOL``) assume IEEE float32. No effect on CPUs.
    """
    tf = _quiet_import("tensorflow")
    tf.get_logger().setLevel("ERROR")
    tf.config.experimental.enable_tensor_float_32_execution(False)
    return tf


def import_keras():
    """Return the ``keras`` module (Keras 3 on the TensorFlow backend), imported quietly."""
    import_tensorflow()
    keras = _quiet_import("keras")
    if keras.backend.backend() != "tensorflow":
        raise ImportError(f"fl_helpers.keras_fl needs Keras on the TensorFlow backend, got "
                          f"KERAS_BACKEND={keras.backend.backend()!r}")
    return keras
