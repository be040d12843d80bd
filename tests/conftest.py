"""Shared fixtures: a tiny corpus and one tiny trained run for the whole session."""

import shutil

import pytest
from click.testing import CliRunner

from helpers import TINY_MODEL, TINY_TRAIN, make_text


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


@pytest.fixture
def run_copy(trained_run, tmp_path):
    """A private copy of the trained run that a test may damage."""
    copy = tmp_path / "run"
    shutil.copytree(trained_run, copy)
    return copy


@pytest.fixture
def runner():
    return CliRunner()
