"""TensorBoard's event files: every curve at every evaluation, steps that only go forward, also
across a resume after a kill that left events beyond the last checkpoint."""

from pathlib import Path

import numpy as np
import pytest

from charrnn.backend import import_tensorflow
from charrnn.rundir import RunDir
from charrnn.train import train
from charrnn.train.tensorboard import SCALARS

tf = import_tensorflow()


def read_events(run_dir):
    """{tag: [(step, value)]} over the run's event files, in the order they were written."""
    seen = {}
    for path in sorted(Path(run_dir, "tensorboard").glob("events.out.tfevents.*")):
        for event in tf.compat.v1.train.summary_iterator(str(path)):
            for value in event.summary.value:
                seen.setdefault(value.tag, []).append((event.step, tf.make_ndarray(value.tensor)))
    return seen


def assert_forward(events, steps):
    for tag, _ in SCALARS:
        assert [step for step, _ in events[tag]] == steps, tag
    assert [step for step, _ in events["sample"]] == steps


def test_every_curve_and_a_sample_at_every_evaluation(trained_run):
    events = read_events(trained_run)
    rows = RunDir(trained_run).metrics.read()
    assert_forward(events, [row["step"] for row in rows])
    for tag, key in SCALARS:
        np.testing.assert_allclose([float(v) for _, v in events[tag]], [row[key] for row in rows], rtol=1e-5, err_msg=tag)
    sample = events["sample"][-1][1].item().decode()
    assert sample.startswith("```\n") and len(sample) > 300  # the sample, kept as a code block
    assert all(row["grad_norm"] > 0 for row in rows)


@pytest.mark.slow
def test_a_resume_drops_the_events_after_its_checkpoint(run_copy):
    run = run_copy  # trained for two epochs, an evaluation at every step
    first = RunDir(run).checkpoint.read_state()
    # A training killed after its checkpoint may have written events beyond it: as if so.
    writer = tf.summary.create_file_writer(str(run / "tensorboard"))
    with writer.as_default():
        for step in range(first.step + 1, first.step + 4):
            tf.summary.write("loss/train", tf.constant(99.0), step=step)
    writer.close()
    train([], str(run), {}, {"epochs": 3}, resume=True, quiet=True, log=lambda line: None)

    events = read_events(run)
    assert_forward(events, [row["step"] for row in RunDir(run).metrics.read()])
    assert all(value != 99.0 for _, value in events["loss/train"])
    assert len(list((run / "tensorboard").glob(".*tmp*"))) == 0
