"""Shared fixtures: a tiny corpus and tiny runs trained once for the whole session (a training
costs seconds: a test that only needs some trained run takes a copy of one of these)."""

import shutil

import pytest
from click.testing import CliRunner

from helpers import TINY_FLAGS, TINY_MODEL, TINY_TRAIN, invoke, make_text


@pytest.fixture(scope="session")
def corpus_file(tmp_path_factory):
    """A 1,000-character corpus: 900 training characters (helpers.epoch_steps() an epoch), 100 validation."""
    path = tmp_path_factory.mktemp("corpus") / "corpus.txt"
    path.write_text(make_text(1000), encoding="utf-8")
    return path


@pytest.fixture(scope="session")
def trained_run(tmp_path_factory, corpus_file):
    """A run trained in-process for two epochs on `corpus_file`. Do not modify: copy it first."""
    from charrnn.train import train

    run_dir = tmp_path_factory.mktemp("trained") / "run"
    result = train([str(corpus_file)], str(run_dir), dict(TINY_MODEL), dict(TINY_TRAIN), quiet=True, log=lambda line: None)
    assert result.stop_reason == "epochs"
    return run_dir


@pytest.fixture(scope="session")
def cli_run(tmp_path_factory, corpus_file):
    """A new run trained through the command line, `charrnn train CORPUS -r RUN TINY_FLAGS
    --epochs 2` (not quiet, stderr not a terminal), with the progress bar's plain line written at
    every step: (run directory, the CliRunner result). Do not modify: copy it first."""
    from charrnn.train import hooks

    run_dir = tmp_path_factory.mktemp("cli") / "run"
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(hooks.ProgressBar, "LOG_EVERY_S", 0.0)  # a line at every step
        result = invoke(CliRunner(), ["train", corpus_file, "-r", run_dir, *TINY_FLAGS, "--epochs", "2"])
    assert result.exit_code == 0, result.output
    return run_dir, result


@pytest.fixture
def run_copy(trained_run, tmp_path):
    """A private copy of the trained run that a test may damage."""
    copy = tmp_path / "run"
    shutil.copytree(trained_run, copy)
    return copy


@pytest.fixture
def runner():
    return CliRunner()
