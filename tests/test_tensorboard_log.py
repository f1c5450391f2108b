"""TensorBoard logging: what write_history writes is what the run recorded, read back by an independent reader.

The reference reader is TensorFlow's record reader (``tf.data.TFRecordDataset``
and the ``Event`` protocol buffer), not TensorBoard's event accumulator that
:func:`fl_helpers.tensorboard_log.read_scalars` uses.
Without TensorFlow the module skips, except under ``CI=true``, where it fails.
"""

from __future__ import annotations

import numpy as np
import pytest
from optional import TF_MISSING, has_tensorflow, in_ci

import fl_helpers as fl
from fl_helpers import privacy

if not has_tensorflow():
    if in_ci():
        pytest.fail(f"{TF_MISSING}; CI=true: the TensorBoard tests must run here", pytrace=False)
    pytest.skip(TF_MISSING, allow_module_level=True)

from fl_helpers import tensorboard_log  # noqa: E402
from fl_helpers.tf_env import import_tensorflow  # noqa: E402

tf = import_tensorflow()


def records(folder):
    """{tag: {step: value}} of every summary in the folder's event files, read with TensorFlow's record reader."""
    out = {}
    for path in sorted(folder.glob("events.out.tfevents.*")):
        for raw in tf.data.TFRecordDataset(str(path)):
            event = tf.compat.v1.Event.FromString(raw.numpy())
            for value in event.summary.value:
                out.setdefault(value.tag, {})[event.step] = tf.make_ndarray(value.tensor)
    return out


@pytest.fixture(scope="module")
def run():
    X, y, _ = fl.make_regression(300, 3, noise=0.5, seed=0)
    parties = fl.split(X, y, 12, seed=0)
    return privacy.dp_fedavg(parties, lr=0.1, rounds=6, clip_norm=5.0, noise_multiplier=1.0, sample_rate=0.5,
                             seed=1, keep_updates=True)


def test_every_scalar_is_the_runs_number(run, tmp_path):
    folder = tensorboard_log.write_history(run, tmp_path, run="dp")
    got = records(folder)
    # TensorBoard stores scalars as float32: the run's numbers rounded to float32, exactly
    assert {t: float(v) for t, v in got["loss"].items()} == {t: float(np.float32(run.losses[t])) for t in range(7)}
    for t in range(1, 7):
        assert float(got["bytes/up"][t]) == run.bytes_up[t - 1]
        assert float(got["bytes/down"][t]) == run.bytes_down[t - 1]
        assert float(got["participants"][t]) == len(run.selected[t - 1])
        assert float(got["metrics/epsilon"][t]) == float(np.float32(run.metrics["epsilon"][t - 1]))


def test_histograms_hold_every_party_and_every_update(run, tmp_path):
    got = records(tensorboard_log.write_history(run, tmp_path))
    for t in (0, 3, 6):
        buckets = got["party_loss"][t]                 # rows: (left edge, right edge, count)
        assert buckets[:, 2].sum() == run.party_losses.shape[1]
        assert buckets[0, 0] == pytest.approx(run.party_losses[t].min(), rel=1e-6)
        assert buckets[-1, 1] == pytest.approx(run.party_losses[t].max(), rel=1e-6)
    for t in range(1, 7):
        assert got["update_norm"][t][:, 2].sum() == len(run.selected[t - 1])


def test_read_scalars_gives_back_what_was_written(run, tmp_path):
    tensorboard_log.write_history(run, tmp_path, run="a")
    scalars = tensorboard_log.read_scalars(tmp_path, run="a")
    steps, values = scalars["loss"]
    np.testing.assert_array_equal(steps, np.arange(7))
    np.testing.assert_allclose(values, run.losses, rtol=1e-6)                  # float32 in the event file
    np.testing.assert_allclose(scalars["metrics/epsilon"][1], run.metrics["epsilon"], rtol=1e-6)
    assert "party_loss" not in scalars


def test_bad_input_is_named(run, tmp_path):
    with pytest.raises(TypeError, match="history must be a fl_helpers.History"):
        tensorboard_log.write_history({"loss": 1}, tmp_path)
    with pytest.raises(ValueError, match="run must be a name"):
        tensorboard_log.write_history(run, tmp_path, run="../escape")
    with pytest.raises(ValueError, match="missing"):
        tensorboard_log.read_scalars(tmp_path, run="never")


def test_a_vector_per_round_gets_one_tag_per_entry_and_a_short_series_is_refused(tmp_path):
    from fl_helpers.hierarchy import hierarchical_fedavg

    X, y, _ = fl.make_regression(120, 2, noise=0.5, seed=0)
    ps = fl.split(X, y, 4, seed=0)
    run = hierarchical_fedavg([ps[:2], ps[2:]], lr=0.05, rounds=3, edge_rounds=2, seed=0)
    got = records(tensorboard_log.write_history(run, tmp_path, run="hier"))
    table = np.asarray(run.metrics["edge_round_losses"])
    for j in range(2):
        assert [float(got[f"metrics/edge_round_losses/{j}"][t]) for t in (1, 2, 3)] == \
            [float(np.float32(v)) for v in table[:, j]]
    run.metrics["short"] = np.zeros(2)
    with pytest.raises(ValueError, match=r"history.metrics\['short'\] must hold one value per round \(3\), got 2"):
        tensorboard_log.write_history(run, tmp_path, run="bad")
