"""Fault injection with real `charrnn` processes: SIGKILL mid-training and mid-save, a second
training on a live run, SIGTERM, and resumes that must carry on with nothing lost or duplicated."""

import json
import signal
import subprocess
import sys
import textwrap
import time

import pytest

from charrnn.errors import RunDirError
from charrnn.rundir import RunDir
from helpers import TINY_FLAGS, charrnn_command, make_text, run_charrnn, subprocess_env

pytestmark = pytest.mark.slow  # real processes, trained, killed and resumed

# The wrapped charrnn hangs in a save of checkpoint.npz (the third or a later one, the first after
# which metrics.jsonl has grown since the previous save, so that it holds rows the resume must
# drop), between writing the temporary file and renaming it into place, after leaving a marker:
# the test kills the process mid-save.
SLOW_SAVE = """
import os, sys, time
marker = sys.argv.pop(1)
real_replace = os.replace
saves = 0
metrics_size = 0
def replace(src, dst, *args, **kwargs):
    global saves, metrics_size
    if str(dst).endswith("checkpoint.npz"):
        saves += 1
        metrics = os.path.join(os.path.dirname(str(dst)), "metrics.jsonl")
        size = os.path.getsize(metrics) if os.path.exists(metrics) else 0
        if saves >= 3 and size > metrics_size:
            with open(marker, "w") as f:
                f.write(str(src))
            time.sleep(600)
        metrics_size = size
    return real_replace(src, dst, *args, **kwargs)
os.replace = replace
sys.argv[0] = "charrnn"
from charrnn.cli import main
main()
"""

class Process:
    """A charrnn process in the background, its stderr in a file."""

    def __init__(self, command, log):
        self.log = log
        self.popen = subprocess.Popen(
            command, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=open(log, "w"), env=subprocess_env()
        )

    @property
    def pid(self):
        return self.popen.pid

    def wait_for(self, condition, what, timeout=120):
        deadline = time.monotonic() + timeout
        while not condition():
            if self.popen.poll() is not None:
                pytest.fail(f"charrnn exited ({self.popen.returncode}) before {what}:\n{self.log.read_text()}")
            if time.monotonic() > deadline:
                self.popen.kill()
                pytest.fail(f"timed out waiting for {what}:\n{self.log.read_text()}")
            time.sleep(0.02)

    def kill(self, signum=signal.SIGKILL):
        self.popen.send_signal(signum)
        code = self.popen.wait(timeout=60)
        stdout = self.popen.stdout.read()
        self.popen.stdout.close()
        return code, stdout, self.log.read_text()

    def finish(self, timeout=180):
        code = self.popen.wait(timeout=timeout)
        stdout = self.popen.stdout.read()
        self.popen.stdout.close()
        return code, stdout, self.log.read_text()


def checkpoint_step(run):
    try:
        return RunDir(run).checkpoint.read_state().step
    except RunDirError:  # not written yet
        return -1


def metric_steps(run):
    """The steps of metrics.jsonl, checking that every line is whole JSON."""
    path = run / "metrics.jsonl"
    if not path.exists():
        return []
    text = path.read_text()
    assert text == "" or text.endswith("\n"), "torn last line"
    return [json.loads(line)["step"] for line in text.splitlines()]


def temporaries(run):
    return sorted(p.name for p in run.iterdir() if ".tmp-" in p.name)


def test_kills_and_resumes(tmp_path):
    corpus = tmp_path / "corpus.txt"
    corpus.write_text(make_text(1500, seed=2), encoding="utf-8")
    run = tmp_path / "run"

    # 1. A training that checkpoints every 0.2 s, killed with SIGKILL in the middle of a save (see
    #    SLOW_SAVE): the temporary file is written, not yet renamed.
    script = tmp_path / "slow_save.py"
    script.write_text(textwrap.dedent(SLOW_SAVE))
    marker = tmp_path / "saving"
    train = ["train", corpus, "-r", run, *TINY_FLAGS, "--epochs", "1000", "--checkpoint-every", "0.2", "--eval-every", "0.05", "-q"]
    first = Process([sys.executable, script, marker, *train], tmp_path / "first.log")
    first.wait_for(marker.exists, "a checkpoint save")

    # 2. While it lives, a second training on the same directory is refused, naming its process;
    #    --force does not delete a live run.
    for args in (["train", "--resume"], ["train", corpus, "--force"]):
        second = run_charrnn(*args, "-r", run, cwd=tmp_path)
        assert second.returncode == 1
        assert f"is being trained by another process (pid {first.pid})" in second.stderr
        assert second.stderr.startswith("Error: ") and second.stderr.count("\n") == 1

    code, stdout, _ = first.kill()
    assert code == -signal.SIGKILL and stdout == b""
    assert temporaries(run) == [f".checkpoint.npz.tmp-{first.pid}"]
    killed_at = checkpoint_step(run)  # the previous checkpoint, whole
    assert killed_at > 0
    assert max(metric_steps(run)) > killed_at  # rows a resume must not duplicate
    kept_rows = [line for line in (run / "metrics.jsonl").read_text().splitlines() if json.loads(line)["step"] <= killed_at]

    # 3. Resume; SIGKILL it at an arbitrary moment once it has checkpointed further.
    third = Process(charrnn_command("train", "--resume", "-r", run, "-q"), tmp_path / "third.log")
    third.wait_for(lambda: checkpoint_step(run) > killed_at, "a new checkpoint")
    assert temporaries(run) == []  # the killed save's leftover was cleaned up
    _, _, log = third.kill()
    assert f"note: took over the lock of a training that is no longer running (pid {first.pid})" in log
    assert f"resuming {run} at step {killed_at:,}" in log
    killed_again_at = checkpoint_step(run)
    assert killed_again_at > killed_at

    # 4. Resume again and stop it with SIGTERM: it saves, says how to resume, exits 130.
    fourth = Process(charrnn_command("train", "--resume", "-r", run, "-q"), tmp_path / "fourth.log")
    fourth.wait_for(lambda: checkpoint_step(run) > killed_again_at, "training to go on")
    code, stdout, log = fourth.kill(signal.SIGTERM)
    assert code == 130, log
    assert stdout == b""
    assert f"note: took over the lock of a training that is no longer running (pid {third.pid})" in log
    assert f"resuming {run} at step {killed_again_at:,}" in log
    assert f"Resume with: charrnn train --resume --run-dir {run}" in log
    stopped = RunDir(run).checkpoint.read_state()
    assert stopped.step > killed_again_at
    assert not (run / "lock").exists()  # released: deleted, not stale
    assert RunDir(run).checkpoint.load().state == stopped

    # Nothing lost or doubled: the rows up to the first kill are as they were, then one row per
    # evaluation, in order, none twice, none torn.
    rows = metric_steps(run)
    assert rows == sorted(set(rows)) and rows[-1] <= stopped.step
    assert (run / "metrics.jsonl").read_text().splitlines()[: len(kept_rows)] == kept_rows
    assert len(rows) > len(kept_rows)
    assert temporaries(run) == []
    sample = run_charrnn("sample", "-r", run, "--length", "20", "--random-seed", "1")
    assert sample.returncode == 0 and len(sample.stdout) == 21 and sample.stderr == ""
