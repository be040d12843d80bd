"""What a person sees while `charrnn train` runs and stops: the line before training, the bar on a
terminal and in a log file, the closing line and which budget ended the run, Ctrl-C at any moment,
and validation's memory with a large vocabulary."""

import fcntl
import json
import os
import pty
import re
import select
import shutil
import signal
import struct
import subprocess
import sys
import termios
import textwrap
import time

import numpy as np
import pytest

from charrnn.rundir import RunDir
from charrnn.train import evaluation, hooks
from charrnn.config import TrainConfig
from charrnn.state import TrainState
from charrnn.train.budget import Budget
from helpers import TINY_FLAGS, assert_error, charrnn_command, invoke, subprocess_env

ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


def stderr_lines(result):
    return result.stderr.splitlines()


# --- the line before training, and the closing line -------------------------------------------------


def test_a_new_run_says_what_it_trains_then_which_budget_ended_it(cli_run):
    run, result = cli_run  # `charrnn train CORPUS -r RUN TINY_FLAGS --epochs 2`
    assert result.exit_code == 0, result.output
    parameters = json.loads((run / "settings.json").read_text())["parameters"]
    vocab = json.loads((run / "settings.json").read_text())["corpus"]["vocab_size"]
    lines = stderr_lines(result)
    assert lines[0] == (
        f"training GRU 8x1 ({parameters:,} parameters) on 900 characters ({vocab} distinct; 100 more validate) "
        "for 2 epochs (no time limit: --max-time sets one)"
    )
    closing = lines[-2]
    state = RunDir(run).checkpoint.read_state()
    assert closing.startswith(f"all 2 epochs done: trained {state.step:,} steps ({state.chars_seen:,} chars) in ")
    assert "\r" not in result.stderr  # stderr is not a terminal: no bar redrawn in place


@pytest.mark.slow
def test_a_time_budget_says_so_at_the_start_and_the_end(runner, corpus_file, tmp_path):
    run = tmp_path / "run"
    args = ["train", corpus_file, "-r", run, *TINY_FLAGS, "--layers", "1", "--dropout", "0", "--recurrent-dropout", "0",
            "--learning-rate", "0.006", "--final-lr-fraction", "0.1"]
    result = invoke(runner, [*args, "--epochs", "100000", "--max-time", "1s", "--eval-every", "0.001"])
    assert result.exit_code == 0, result.output
    assert "for 100,000 epochs or 1s, whichever ends first" in stderr_lines(result)[0]
    state = RunDir(run).checkpoint.read_state()
    closing = stderr_lines(result)[-2]
    assert re.match(rf"stopped: 1s time budget reached at \d+\.\d\d of 100,000 epochs: trained {state.step:,} steps? ", closing), closing
    # The last evaluation and checkpoint count as training time: the checkpoint's clock is later
    # than the last evaluation's row (before, they were the same, and the time they took was not
    # counted against the budget).
    rows = RunDir(run).metrics.read()
    assert rows[-1]["step"] == state.step
    assert state.elapsed_s > rows[-1]["elapsed_s"]


@pytest.fixture(scope="module")
def resumed(trained_run, tmp_path_factory):
    """A copy of the trained run (2 epochs) resumed with `train --resume --epochs 3 -q`: (run, its
    checkpoint's state before the resume, the CliRunner result). Do not modify: copy it first."""
    from click.testing import CliRunner

    run = tmp_path_factory.mktemp("resumed") / "run"
    shutil.copytree(trained_run, run)
    before = RunDir(run).checkpoint.read_state()
    return run, before, invoke(CliRunner(), ["train", "--resume", "-r", run, "--epochs", "3", "-q"])


def test_a_resume_says_where_it_is_and_what_is_left(resumed):
    run_copy, before, result = resumed
    assert result.exit_code == 0, result.output
    start = stderr_lines(result)[0]
    assert start.startswith(f"resuming {run_copy} at step {before.step:,} (2.00 of 3 epochs done, ")
    assert start.endswith("for 1.00 more epochs (no time limit: --max-time sets one)")
    after = RunDir(run_copy).checkpoint.read_state()
    closing = stderr_lines(result)[-2]
    assert closing.startswith(f"all 3 epochs done: trained {after.step - before.step:,} more steps in ")
    assert f"({after.step:,} steps, {after.chars_seen:,} chars, " in closing


def test_the_closing_lines_give_both_speeds_the_estimate_and_sample_first(resumed):
    run_copy, _, result = resumed
    closing, hint = stderr_lines(result)[-2:]
    # Training's speed and the session's average (evaluations included), each named.
    assert re.search(r" at [\d,]+ chars/s training \([\d,]+ chars/s over the session, evaluations included\)", closing), closing
    # The best carried loss is training's estimate: on what, and as how many stretches.
    assert re.search(r"state carried; an estimate on all [\d,]+ validation characters, as [\d,]+ stretch", closing), closing
    assert hint.startswith(f"next: charrnn sample -r {run_copy} (text from the model); see the run: charrnn report -r "), hint


def test_info_counts_epochs_as_train_does_with_separators(runner, resumed):
    from types import SimpleNamespace

    from charrnn import info

    run_copy, _, _ = resumed
    facts = json.loads(invoke(runner, ["info", "-r", run_copy, "--json"]).stdout)
    assert facts["epochs_done"] == 3.0
    shown = invoke(runner, ["info", "-r", run_copy]).stdout
    assert "epochs_done:       3.00 of 3\n" in shown
    assert f"chars_seen:        {facts['chars_seen']:,}\n" in shown
    assert "(state carried; training's estimate, charrnn eval scores the whole validation text)" in shown
    # Mid-epoch: 3 epochs and 63 of 100 batches is 3.63, as train says, not 3.
    cfg = TrainConfig(batch_size=1, seq_length=10)
    settings = SimpleNamespace(corpus={"train_chars": 100 * 10 + 1}, train=cfg)
    assert info.epochs_done(settings, TrainState(epoch=3, batch_in_epoch=63)) == 3.63
    assert info.epochs_done(settings, TrainState(epoch=0, batch_in_epoch=30)) == 0.3


def test_every_message_counts_epochs_done(runner, resumed, tmp_path):
    # "epoch 1" in one message and "epoch 0.33" in the next: now always epochs done, "N.NN of M".
    run_copy, _, result = resumed  # resumed with `train --resume --epochs 3 -q`
    run_copy = shutil.copytree(run_copy, tmp_path / "run")
    assert not re.search(r"\(epoch \d", result.stderr), result.stderr
    refused = invoke(runner, ["train", "--resume", "-r", run_copy])
    assert not re.search(r"\bepoch \d", refused.stderr), refused.stderr


# --- a finished budget: exit 1, which budget, which flag ------------------------------------------------


def test_a_finished_epoch_budget_is_exit_1_and_names_the_flag(runner, run_copy):
    result = invoke(runner, ["train", "--resume", "-r", run_copy])
    assert_error(result, 1, "already finished its budget (all 2 epochs done", "raise --epochs (now 2)")


def test_a_finished_time_budget_is_exit_1_and_names_the_flag(runner, run_copy):
    result = invoke(runner, ["train", "--resume", "-r", run_copy, "--epochs", "9", "--max-time", "1s"])
    assert_error(result, 1, "already finished its budget (its 1s time budget reached, 2.00 of 9 epochs done", "raise --max-time (now 1s)")


@pytest.mark.parametrize(
    "elapsed, reserve, out",
    [(99.0, 0.0, False), (99.0, 1.0, True), (100.0, 0.0, True), (90.0, 5.0, False)],
)
def test_training_stops_early_enough_for_the_last_evaluation(elapsed, reserve, out):
    budget = Budget(TrainConfig(max_time_s=100.0), 1000)
    assert budget.out_of_time(TrainState(step=1, elapsed_s=elapsed), reserve) is out


@pytest.mark.parametrize("elapsed, spent", [(0.0, False), (98.0, False), (99.5, True), (100.0, True)])
def test_a_run_that_stopped_just_short_of_its_time_has_spent_it(elapsed, spent):
    # A run stops before its time to leave room for its last evaluation and checkpoint: a resume
    # must not train for the few tenths of a second left.
    assert Budget(TrainConfig(max_time_s=100.0), 1000).spent(TrainState(step=1, elapsed_s=elapsed)) is spent


# --- the bar -----------------------------------------------------------------------------------------------


def parts(speed=True):
    found = [("left", "3m07s left"), ("loss", "loss 1.523"), ("val", "val 1.601"), ("epochs", "epochs 2.31/20"), ("step", "step 1,234")]
    return found + ([("speed", "85,000 chars/s")] if speed else [])


@pytest.mark.parametrize("width", [200, 100, 79, 59, 39, 25])
def test_the_bar_fits_the_terminal_and_keeps_what_matters(width):
    from tqdm import tqdm

    bar_format, desc = hooks.fit_line(parts(), width)
    drawn = tqdm.format_meter(420, 1000, 0, bar_format=bar_format, prefix=desc)
    assert len(drawn) <= width, drawn
    assert "3m07s left" in drawn  # the time left comes first and stays
    if width >= 79:
        assert "loss 1.523, val 1.601, epochs 2.31/20" in drawn and "|" in drawn
    if width >= 120:
        assert "85,000 chars/s" in drawn and "step 1,234" in drawn


class Terminal:
    """A charrnn process whose stderr is a terminal of `columns` columns (a pseudo-terminal)."""

    def __init__(self, args, columns=80):
        master, slave = pty.openpty()
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, columns, 0, 0))
        env = subprocess_env()
        env.pop("COLUMNS", None)
        self.popen = subprocess.Popen(charrnn_command(*args), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=slave, env=env)
        os.close(slave)
        self.master, self.output = master, b""

    def read(self, timeout=180):
        """Everything it writes to the terminal until it exits."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            ready, _, _ = select.select([self.master], [], [], 1.0)
            if not ready:
                continue
            try:
                data = os.read(self.master, 4096)
            except OSError:  # the process exited: its end of the terminal is closed
                break
            if not data:
                break
            self.output += data
        else:
            self.popen.kill()
            pytest.fail(f"timed out:\n{self.output.decode(errors='replace')}")
        os.close(self.master)
        self.popen.wait(timeout=60)
        return self.output.decode()


@pytest.mark.slow
def test_on_an_80_column_terminal_the_bar_fits_and_ends_once(corpus_file, tmp_path):
    run = tmp_path / "run"
    args = ["train", corpus_file, "-r", run, *TINY_FLAGS, "--epochs", "3", "--max-time", "10m", "--eval-every", "0.5"]
    terminal = Terminal(args, columns=80)
    text = terminal.read()
    assert terminal.popen.returncode == 0, text
    lines = text.split("\r\n")
    # Each redraw of the bar (between carriage returns) fits in 80 columns, so that it overwrites
    # the one before instead of wrapping onto new lines.
    draws = [ANSI.sub("", piece).rstrip() for line in lines for piece in line.split("\r") if piece.strip()]
    bars = [d for d in draws if re.match(r"\s*\d+%", d)]
    assert bars and all(len(d) <= 79 for d in bars), bars
    assert not any(re.search(r"(?<![\d,])0 chars/s", d) for d in bars)  # no speed before it is measured
    # Every draw but the end shows the time left. The end is drawn once (tqdm draws it again,
    # identical, as it closes), with the numbers of the closing line.
    ends = [d for d in bars if " left" not in d]
    assert 1 <= len(ends) <= 2 and bars[-len(ends) :] == ends and len(set(ends)) == 1, bars
    state = RunDir(run).checkpoint.read_state()
    assert bars[-1].startswith("100%|") and bars[-1].endswith(f"epochs 3.00/3, step {state.step:,}"), bars[-1]
    closing = next(line for line in lines if line.startswith("all 3 epochs done"))
    assert f"trained {state.step:,} steps" in closing


def test_in_a_log_file_the_bar_is_plain_occasional_lines(cli_run):
    _, result = cli_run  # trained with hooks.ProgressBar.LOG_EVERY_S at 0: a line at every step
    assert result.exit_code == 0, result.output
    assert "\r" not in result.stderr and "\x1b" not in result.stderr
    progress = [line for line in stderr_lines(result) if line.startswith("step ")]
    # A line may say how long is left once the speed is known (on a slow machine, before the end).
    line_format = r"step [\d,]+ \(\d+%\): (\S+ left, )?loss \d\.\d{3}"
    assert progress and all(re.match(line_format, line) for line in progress), progress
    # No line claims a speed of zero (a figure that merely ends in 0, like 1,230, is fine).
    assert not any(re.search(r"(?<![\d,])0 chars/s", line) for line in progress), progress


# --- Ctrl-C ------------------------------------------------------------------------------------------

# The wrapped charrnn hangs in the save that a first Ctrl-C asks for (its temporary file written,
# not yet renamed), after leaving a marker: the test presses Ctrl-C again there.
HANG_IN_THE_STOPPING_SAVE = """
import os, sys, time
marker = sys.argv.pop(1)
from charrnn.train import loop
requested = []
real_request, real_replace = loop._StopRequest._request, os.replace
def request(self, signum, frame):
    requested.append(signum)
    real_request(self, signum, frame)
def replace(src, dst, *args, **kwargs):
    if requested and str(dst).endswith("checkpoint.npz"):
        open(marker, "w").close()
        time.sleep(600)
    return real_replace(src, dst, *args, **kwargs)
loop._StopRequest._request, os.replace = request, replace
sys.argv[0] = "charrnn"
from charrnn.cli import main
main()
"""


def start(script_text, tmp_path, args):
    script = tmp_path / "wrapped.py"
    script.write_text(textwrap.dedent(script_text))
    marker = tmp_path / "marker"
    log = open(tmp_path / "stderr.log", "w")
    popen = subprocess.Popen(
        [sys.executable, script, marker, *[str(a) for a in args]],
        stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=log, env=subprocess_env(),
    )
    return popen, marker, tmp_path / "stderr.log"


def wait_for(condition, popen, log, what, timeout=120):
    deadline = time.monotonic() + timeout
    while not condition():
        if popen.poll() is not None or time.monotonic() > deadline:
            popen.kill()
            pytest.fail(f"{what} did not happen ({popen.poll()}):\n{log.read_text()}")
        time.sleep(0.02)


def saved_step(run):
    try:
        return RunDir(run).checkpoint.read_state().step
    except Exception:
        return -1


@pytest.mark.slow
def test_a_second_ctrl_c_says_which_checkpoint_is_kept(corpus_file, tmp_path):
    run = tmp_path / "run"
    args = ["train", corpus_file, "-r", run, *TINY_FLAGS, "--epochs", "100000", "--checkpoint-every", "0.2", "-q"]
    popen, marker, log = start(HANG_IN_THE_STOPPING_SAVE, tmp_path, args)
    wait_for(lambda: saved_step(run) > 0, popen, log, "a checkpoint after step 0")
    popen.send_signal(signal.SIGINT)
    wait_for(marker.exists, popen, log, "the save that Ctrl-C asked for")
    kept = RunDir(run).checkpoint.read_state()  # the one before: the new one is not in place
    popen.send_signal(signal.SIGINT)
    assert popen.wait(timeout=60) == 130
    text = log.read_text()
    last = text.splitlines()[-1]
    assert re.match(r"aborted at step [\d,]+; ", last), text
    assert f"the checkpoint at step {kept.step:,} (" in last and "epochs done) is kept" in last
    assert last.endswith(f"Resume with: charrnn train --resume --run-dir {run}")
    assert "Traceback" not in text and "interrupted\n" not in text


# The wrapped charrnn stops in the middle of importing TensorFlow, after TensorFlow-like start-up
# noise on file descriptor 2 (which charrnn hides), and leaves a marker: the test presses Ctrl-C.
HANG_IN_THE_TENSORFLOW_IMPORT = """
import importlib.abc, os, sys, time
marker = sys.argv.pop(1)
class Hang(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name in ("keras", "tensorflow"):
            os.write(2, b"NOISE FROM THE TENSORFLOW START-UP\\n")
            open(marker, "w").close()
            time.sleep(600)
        return None
sys.meta_path.insert(0, Hang())
sys.argv[0] = "charrnn"
from charrnn.cli import main
main()
"""


def interrupt_the_import(tmp_path, args):
    popen, marker, log = start(HANG_IN_THE_TENSORFLOW_IMPORT, tmp_path, args)
    wait_for(marker.exists, popen, log, "the TensorFlow import")
    popen.send_signal(signal.SIGINT)
    assert popen.wait(timeout=60) == 130
    text = log.read_text()
    assert "NOISE FROM THE TENSORFLOW START-UP" not in text  # the hidden log is not replayed
    assert "Traceback" not in text
    return text.strip().splitlines()[-1]


def test_ctrl_c_before_a_new_run_trains_says_nothing_was_saved(corpus_file, tmp_path):
    run = tmp_path / "run"
    last = interrupt_the_import(tmp_path, ["train", corpus_file, "-r", run, *TINY_FLAGS])
    assert last == "interrupted before training started; nothing was saved"
    assert not run.exists()


def test_ctrl_c_before_a_resume_trains_says_the_run_is_as_it_was(run_copy, tmp_path):
    before = (run_copy / "checkpoint.npz").read_bytes()
    step = RunDir(run_copy).checkpoint.read_state().step
    last = interrupt_the_import(tmp_path, ["train", "--resume", "-r", run_copy, "--epochs", "4"])
    assert last.startswith(f"interrupted before training went on; the run in {run_copy} is as it was: the checkpoint at step {step:,} (2.00 of 2 epochs done)")
    assert last.endswith(f"Resume with: charrnn train --resume --run-dir {run_copy}")
    assert (run_copy / "checkpoint.npz").read_bytes() == before


def test_the_parked_start_up_log_is_replayed_on_a_failure_only(capfd):
    from charrnn.backend import _stderr_parked

    for error, shown in ((ImportError, True), (KeyboardInterrupt, False)):
        with pytest.raises(error):
            with _stderr_parked():
                os.write(2, b"start-up noise\n")
                raise error()
        assert ("start-up noise" in capfd.readouterr().err) is shown, error


# --- validation's memory with a large vocabulary ---------------------------------------------------------


@pytest.mark.parametrize("vocab_size", [65, 5_965, 100_000, 1_114_112])
@pytest.mark.parametrize("replicas", [1, 2])
@pytest.mark.parametrize("seq_length", [8, 100])
def test_validation_logits_stay_under_the_bound(vocab_size, replicas, seq_length):
    batch = evaluation.eval_batch(seq_length, vocab_size, replicas)
    one_window = 4 * seq_length * vocab_size
    assert batch % replicas == 0 and batch >= replicas
    assert batch * one_window <= max(evaluation.EVAL_LOGITS_BYTES, replicas * one_window)
    if vocab_size == 65:
        assert batch == evaluation.EVAL_BATCH  # small vocabularies keep the full batch


def test_a_smaller_evaluation_batch_gives_the_same_losses(monkeypatch):
    from charrnn import config, data, model as model_lib
    from charrnn.backend import import_tensorflow
    from charrnn.train.build import global_clip_adam
    from charrnn.train.forward import RecurrenceKernel as Kernel
    from charrnn.train.steps import build_steps

    tf = import_tensorflow()
    import keras

    cfg = config.ModelConfig(model="gru", units=6, embedding_dim=4, vocab_size=9)
    rng = np.random.default_rng(3)
    text = rng.integers(0, 9, 700).astype(np.uint8)
    model = model_lib.build_model(cfg)
    model.set_weights([rng.normal(0, 0.5, w.shape).astype(np.float32) for w in model.get_weights()])
    optimizer = global_clip_adam(keras, tf, 0.01, 1.0)
    optimizer.build(model.trainable_variables)
    x, y = data.validation_windows(text, 10, 10_000)
    losses = {}
    # 3 windows a step (a batch that does not divide the 69 windows nor the 8 carried stretches),
    # then the default.
    for bound in (3 * 4 * 10 * 9, evaluation.EVAL_LOGITS_BYTES):
        monkeypatch.setattr(evaluation, "EVAL_LOGITS_BYTES", bound)
        _, evaluator = build_steps(tf, tf.distribute.get_strategy(), model, cfg, optimizer, Kernel("fused"), text, 10)
        losses[evaluator.eval_batch] = (evaluator.mean_loss(x, y), evaluator.carried_loss(text, streams=8))
    assert set(losses) == {3, evaluation.EVAL_BATCH}
    np.testing.assert_allclose(losses[3], losses[evaluation.EVAL_BATCH], rtol=1e-5)
