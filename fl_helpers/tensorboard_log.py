r"""A run's numbers as TensorBoard event files: write them with TensorFlow's summary writer, read them back.

:func:`write_history` turns a :class:`~fl_helpers.History` into TensorBoard's
format with ``tf.summary.create_file_writer``: one scalar per round for every
series the run recorded, and per-party histograms. Every series of
``History.metrics`` is written, so whatever a hook logs (test accuracy,
:math:`\varepsilon` of :mod:`fl_helpers.privacy`, a robust aggregator's
diagnostics, a codec's compression ratio) reaches TensorBoard with no extra
code. The tags:

============================  ===============  =================================================
tag                           steps            value
============================  ===============  =================================================
``loss``                      0 .. R           global training loss before round 1 and after each round
``bytes/up``, ``bytes/down``  1 .. R           bytes sent in each round (``History.bytes_up/down``)
``participants``              1 .. R           parties whose work counted (``len(History.selected[t - 1])``)
``metrics/<name>``            1 .. R           every ``History.metrics`` series (``<name>/<j>``: entry j of a vector)
``party_loss`` (histogram)    0 .. R           every party's loss at the global model
``update_norm`` (histogram)   1 .. R           each participant's update norm (runs with ``keep_updates=True``)
============================  ===============  =================================================

Open them in JupyterLab with ``%load_ext tensorboard`` then ``%tensorboard
--logdir <dir>``, or from a shell with ``tensorboard --logdir <dir>``.
:func:`read_scalars` reads the scalars back with TensorBoard's own event
reader, so a notebook can draw the same curves with matplotlib (and run under
nbval with no server). TensorFlow and TensorBoard are imported when called.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from .history import History

_RUN = re.compile(r"^[A-Za-z0-9_.=-]+$")


def _run_dir(logdir, run: str) -> Path:
    if not isinstance(logdir, (str, Path)):
        raise TypeError(f"logdir must be a path (str or pathlib.Path), got {type(logdir).__name__}")
    if not isinstance(run, str) or not _RUN.match(run):
        raise ValueError(f"run must be a name of letters, digits and _.=- (one folder under logdir), got {run!r}")
    return Path(logdir) / run


def write_history(history: History, logdir, *, run: str = "run", histograms: bool = True) -> Path:
    """Write ``history`` as TensorBoard event files in ``logdir/run``; returns that folder.

    Runs written to the same ``logdir`` under different ``run`` names appear
    side by side in TensorBoard. Writing the same run twice appends a second
    event file (TensorBoard then shows both): use a fresh ``run`` name or folder.
    """
    if not isinstance(history, History):
        raise TypeError(f"history must be a fl_helpers.History, got {type(history).__name__}")
    if not isinstance(histograms, bool):
        raise TypeError(f"histograms must be True or False, got {histograms!r}")
    folder = _run_dir(logdir, run)
    rounds = len(history.losses) - 1
    for name, series in history.metrics.items():
        if len(series) != rounds:
            raise ValueError(f"history.metrics[{name!r}] must hold one value per round ({rounds}), "
                             f"got {len(series)}")
    from .tf_env import import_tensorflow

    tf = import_tensorflow()
    folder.mkdir(parents=True, exist_ok=True)
    writer = tf.summary.create_file_writer(str(folder))
    rounds = len(history.losses) - 1
    with writer.as_default():
        for t in range(rounds + 1):
            tf.summary.scalar("loss", float(history.losses[t]), step=t)
            if histograms and history.party_losses.size:
                tf.summary.histogram("party_loss", np.asarray(history.party_losses[t], dtype=np.float64), step=t)
        for t in range(1, rounds + 1):
            tf.summary.scalar("bytes/up", float(history.bytes_up[t - 1]), step=t)
            tf.summary.scalar("bytes/down", float(history.bytes_down[t - 1]), step=t)
            if history.selected:
                tf.summary.scalar("participants", float(len(history.selected[t - 1])), step=t)
            for name, series in history.metrics.items():
                row = np.asarray(series[t - 1], dtype=np.float64)
                if row.ndim == 0:
                    tf.summary.scalar(f"metrics/{name}", float(row), step=t)
                else:                                    # a per-round vector: one tag per entry
                    for j, value in enumerate(row.ravel()):
                        tf.summary.scalar(f"metrics/{name}/{j}", float(value), step=t)
            if histograms and history.updates is not None and len(history.updates[t - 1]):
                norms = np.linalg.norm(np.asarray(history.updates[t - 1], dtype=np.float64), axis=1)
                tf.summary.histogram("update_norm", norms, step=t)
    writer.flush()
    writer.close()
    return folder


def read_scalars(logdir, *, run: str = "run") -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Every scalar tag in ``logdir/run``: ``{tag: (steps, values)}``, read with TensorBoard's event reader."""
    folder = _run_dir(logdir, run)
    if not folder.is_dir():
        raise ValueError(f"logdir/run must be a folder written by write_history, got {str(folder)!r} (missing)")
    from tensorboard.backend.event_processing import event_accumulator
    from tensorboard.util import tensor_util

    acc = event_accumulator.EventAccumulator(str(folder), size_guidance={event_accumulator.TENSORS: 0})
    acc.Reload()
    out = {}
    for tag in acc.Tags()["tensors"]:
        events = acc.Tensors(tag)
        values = [tensor_util.make_ndarray(e.tensor_proto) for e in events]
        if all(np.ndim(v) == 0 for v in values):                   # scalars; histograms are (buckets, 3)
            out[tag] = (np.array([e.step for e in events]), np.array(values, dtype=np.float64))
    return out
