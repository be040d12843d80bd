"""The run's encoded corpus and where its validation text is, through the corpus store: no
TensorFlow, no training."""

import numpy as np
import pytest

from charrnn.config import ModelConfig, TrainConfig
from charrnn.errors import RunDirError
from charrnn.rundir import RunDir, Settings

FIX = "give a FILE"


@pytest.fixture
def run(tmp_path):
    run = RunDir(tmp_path / "run")
    run.path.mkdir()
    return run


def settings(files, chars=100):
    corpus = {"files": files, "chars": chars, "train_chars": 90, "val_chars": 10, "vocab_size": 5}
    return Settings(ModelConfig(vocab_size=5), TrainConfig(val_fraction=0.1), corpus, {}, None)


def test_corpus_round_trip_in_chunks(run):
    text = run.corpus.write(100, np.uint8, [np.arange(60) % 5, np.arange(40) % 5])
    np.testing.assert_array_equal(np.asarray(text), np.concatenate([np.arange(60) % 5, np.arange(40) % 5]))
    assert run.owns("corpus.npy")
    assert len(run.corpus.read(100, np.uint8)) == 100


@pytest.mark.parametrize(("num_chars", "dtype"), [(99, np.uint8), (100, np.uint16)])
def test_corpus_of_another_length_or_dtype_is_not_reused(run, num_chars, dtype):
    run.corpus.write(100, np.uint8, [np.zeros(100)])
    assert run.corpus.read(num_chars, dtype) is None


def test_missing_corpus_reads_as_none(run):
    assert run.corpus.read(100, np.uint8) is None


def test_read_only_run_writes_a_private_copy(run):
    text = RunDir(run.path, read_only=True).corpus.write(4, np.uint8, [np.arange(4)])
    np.testing.assert_array_equal(np.asarray(text), np.arange(4))
    assert not run.file("corpus.npy").exists()


def test_validation_from_the_encoded_corpus(run):
    run.corpus.write(100, np.uint8, [np.arange(100) % 5])
    start, text, files = run.corpus.validation(settings([]), FIX)
    assert start == 90 and len(text) == 100 and files == []


def test_validation_from_the_corpus_files_when_the_encoded_one_is_gone(run, tmp_path):
    novel = tmp_path / "novel.txt"
    novel.write_text("x" * 100)
    facts = [{"path": str(novel), "bytes": 100, "sha256": "0" * 64}]
    assert run.corpus.validation(settings(facts), FIX) == (90, None, facts)


@pytest.mark.parametrize(
    ("path", "where"),
    [("-", "the corpus was read from standard input"), ("/nowhere/novel.txt", "the corpus file /nowhere/novel.txt is not there")],
)
def test_validation_text_that_cannot_be_found(run, path, where):
    with pytest.raises(RunDirError) as error:
        run.corpus.validation(settings([{"path": path, "bytes": 1, "sha256": ""}]), FIX)
    assert str(error.value) == f"the run's validation text cannot be found: {run.file('corpus.npy')} is missing and {where}; {FIX}"


def test_validation_without_the_corpus_length(run):
    with pytest.raises(RunDirError, match=f"settings.json does not say how long the corpus is; {FIX}"):
        run.corpus.validation(settings([], chars=None), FIX)
