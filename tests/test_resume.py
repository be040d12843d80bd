"""Resuming continues the same run: interrupting a training with SIGINT and resuming it gives the
weights, optimizer state, step counter and metrics of the run that was never interrupted. (Resuming
with a larger budget is in test_cli's end-to-end test; after SIGKILL, in test_kill.)"""

import json
import os
import signal

import numpy as np
import pytest

from charrnn.config import STATE_HANDLING, TrainConfig
from charrnn.rundir import RunDir
from charrnn.rundir.metrics import MetricsStore
from charrnn.train import train
from helpers import TINY_MODEL, TINY_TRAIN, invoke

STOP_AT = 11  # the interrupted run stops after this step, mid-epoch


# Dropout of both kinds: the checkpoint keeps its seed generators' states, so that the resumed run
# draws the masks that the uninterrupted one drew.
DROPOUTS = {"dropout": 0.3, "recurrent_dropout": 0.3}


@pytest.mark.parametrize(
    "state_handling, dropouts",
    [(state, {}) for state in STATE_HANDLING] + [(TrainConfig().state, DROPOUTS)],
    ids=[*STATE_HANDLING, "dropout"],
)
@pytest.mark.slow
def test_interrupt_then_resume_is_the_uninterrupted_run(runner, trained_run, corpus_file, tmp_path, monkeypatch, state_handling, dropouts):
    # With the state carried, the checkpoint taken mid-epoch holds each stream's state.
    run = tmp_path / "run"
    expected_run = trained_run
    if state_handling != TrainConfig().state or dropouts:  # the fixture trains with the defaults
        expected_run = tmp_path / "expected"
        train_cfg = dict(TINY_TRAIN, state=state_handling)
        train([str(corpus_file)], str(expected_run), dict(TINY_MODEL, **dropouts), train_cfg, quiet=True, log=lambda line: None)
    append = MetricsStore.append

    # A real SIGINT (Ctrl-C) arrives just after the metrics of step STOP_AT - 1 are written. The
    # workers agree on a stop right after each step, so the training stops after the next one.
    def append_then_interrupt(self, row):
        append(self, row)
        if row["step"] == STOP_AT - 1:
            os.kill(os.getpid(), signal.SIGINT)

    monkeypatch.setattr(MetricsStore, "append", append_then_interrupt)
    # The settings of the `trained_run` fixture, as flags.
    args = ["train", corpus_file, "-r", run, "-q", "--model", TINY_MODEL["model"], "--units", TINY_MODEL["units"]]
    args += ["--embedding-dim", TINY_MODEL["embedding_dim"], "--seq-length", TINY_TRAIN["seq_length"]]
    args += ["--batch-size", TINY_TRAIN["batch_size"], "--epochs", TINY_TRAIN["epochs"], "--eval-every", TINY_TRAIN["eval_every_s"]]
    args += ["--state", state_handling]
    for name, rate in dropouts.items():
        args += [f"--{name.replace('_', '-')}", rate]
    result = invoke(runner, args)
    assert result.exit_code == 130, result.output
    assert f"stopped at step {STOP_AT}; checkpoint saved" in result.stderr
    assert f"charrnn train --resume --run-dir {run}" in result.stderr
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # the handler was put back
    state = RunDir(run).checkpoint.load().state
    assert state.step == STOP_AT and state.batch_in_epoch == STOP_AT and state.epoch == 0
    monkeypatch.undo()

    result = train([], str(run), {}, {}, resume=True, quiet=True, log=lambda line: None)
    assert result.stop_reason == "epochs"

    # Same weights, optimizer state and counters as the run trained in one go with the same settings.
    expected_weights, expected_optimizer, expected_state, expected_carry, expected_seeds = RunDir(expected_run).checkpoint.load()
    weights, optimizer, state, carry, seeds = RunDir(run).checkpoint.load()
    for key in ("step", "epoch", "batch_in_epoch", "chars_seen", "best_step"):
        assert getattr(state, key) == getattr(expected_state, key), key
    for name, value in expected_weights.items():
        np.testing.assert_allclose(weights[name], value, rtol=1e-5, atol=1e-6, err_msg=name)
    assert len(optimizer) == len(expected_optimizer)
    assert (carry is None) == (expected_carry is None) == (state_handling == "reset")
    if carry is not None:  # the state carried into the next epoch (zeros: it starts afresh)
        np.testing.assert_allclose(carry, expected_carry, rtol=1e-4, atol=1e-6)
    for value, expected in zip(optimizer, expected_optimizer):
        np.testing.assert_allclose(value, expected, rtol=1e-4, atol=1e-6)
    # The seed generators went on from where the interrupted run left them.
    np.testing.assert_array_equal(seeds, expected_seeds)

    # The metrics go on from where they stopped: one row per step, none twice, the same losses.
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    expected_rows = [json.loads(line) for line in (expected_run / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [r["step"] for r in expected_rows] == list(range(1, state.step + 1))
    np.testing.assert_allclose([r["val_loss"] for r in rows], [r["val_loss"] for r in expected_rows], atol=1e-4)


def test_resume_from_a_checkpoint_at_the_end_of_the_last_epoch(run_copy, corpus_file):
    # A time-based checkpoint can land on the last batch of the last epoch, before the epoch
    # counter moves on; resuming it runs no step and must still end cleanly, progress bar on.
    from charrnn.data import epoch_plan

    run = RunDir(run_copy)
    settings = json.loads((run_copy / "settings.json").read_text())
    weights, optimizer, state, *_ = run.checkpoint.load()
    train_cfg = settings["train"]
    batches = len(epoch_plan(settings["corpus"]["train_chars"], train_cfg["seq_length"], train_cfg["batch_size"], train_cfg["random_seed"], 1))
    state.epoch, state.batch_in_epoch = 1, batches
    run.checkpoint.save(weights, optimizer, state)
    result = train([str(corpus_file)], str(run_copy), resume=True, quiet=False, log=lambda line: None)
    assert (result.stop_reason, result.step) == ("epochs", state.step)
    assert run.checkpoint.load().state.epoch == 2


def test_the_best_weights_are_the_best_by_the_carried_loss(trained_run):
    rows = RunDir(trained_run).metrics.read()
    assert all({"val_loss", "val_loss_carried", "val_bpc_carried"} <= row.keys() for row in rows)
    best_row = min(rows, key=lambda row: row["val_loss_carried"])
    best = RunDir(trained_run).best.read()
    assert best.step == best_row["step"]
    assert abs(best.val_loss - best_row["val_loss_carried"]) < 1e-5


def test_a_run_from_before_state_handling_reads_as_reset(run_copy):
    # Runs saved before --state existed trained every window from zeros; resuming must go on so.
    path = run_copy / "settings.json"
    settings = json.loads(path.read_text())
    del settings["train"]["state"]
    path.write_text(json.dumps(settings))
    assert RunDir(run_copy).settings.read().train.state == "reset"
