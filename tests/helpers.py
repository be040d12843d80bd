"""Helpers shared by the tests: tiny settings, a corpus maker, and ways to run the command line
in-process (CliRunner) or as a real process."""

import os
import random
import subprocess
import sys

# A network small enough to train in a few seconds on a laptop core.
TINY_MODEL = {"model": "gru", "units": 8, "embedding_dim": 4}
# Evaluating after every step makes the metrics a deterministic row per step.
TINY_TRAIN = {"seq_length": 8, "batch_size": 4, "epochs": 2, "eval_every_s": 0.001}
TINY_FLAGS = ["--units", "8", "--embedding-dim", "4", "--seq-length", "8", "--batch-size", "4"]


def epoch_steps(num_train=900, seq_length=8, batch_size=4, state=None):
    """Steps in an epoch of TINY_TRAIN on conftest's corpus_file (900 training characters), with
    the default state handling unless `state` says which."""
    from charrnn.config import TrainConfig
    from charrnn.data import batches_per_epoch

    return batches_per_epoch(num_train, seq_length, batch_size, (state or TrainConfig().state) == "carry")

WORDS = "the and of to a in that is was he for it with as his on be at by café naïve 🙂 über".split()


def make_text(num_chars, seed=0):
    """Deterministic word salad with newlines, accents and an emoji, about `num_chars` long."""
    rng = random.Random(seed)
    lines = []
    size = 0
    while size < num_chars:
        line = " ".join(rng.choice(WORDS) for _ in range(rng.randint(3, 9)))
        lines.append(line)
        size += len(line) + 1
    return "\n".join(lines)[:num_chars]


def invoke(runner, args, **kwargs):
    from charrnn.cli import cli

    return runner.invoke(cli, [str(a) for a in args], catch_exceptions=True, **kwargs)


def assert_error(result, exit_code, *fragments):
    """The command failed cleanly: the exit code, no traceback, nothing on stdout, and a last line
    on stderr that is `Error: ...` with every fragment. Returns that line."""
    assert isinstance(result.exception, SystemExit), f"unexpected exception: {result.exception!r}\n{result.output}"
    assert result.exit_code == exit_code, result.output
    assert "Traceback" not in result.output
    assert result.stdout == ""
    assert result.stderr.endswith("\n")
    line = result.stderr.splitlines()[-1]
    assert line.startswith("Error: "), result.stderr
    for fragment in fragments:
        assert fragment in line, f"{fragment!r} not in {line!r}"
    return line


def charrnn_command(*args):
    return [sys.executable, "-m", "charrnn", *[str(a) for a in args]]


def run_charrnn(*args, cwd=None, timeout=180, **kwargs):
    """Runs `python -m charrnn ARGS` as a real process and returns the CompletedProcess."""
    kwargs.setdefault("stdin", subprocess.DEVNULL)
    return subprocess.run(
        charrnn_command(*args), cwd=cwd, capture_output=True, text=True, timeout=timeout, env=subprocess_env(), **kwargs
    )


def subprocess_env():
    env = dict(os.environ)
    env.pop("CHARRNN_VERBOSE", None)
    env["PYTHONUNBUFFERED"] = "1"
    return env
