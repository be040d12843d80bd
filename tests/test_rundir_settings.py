"""The run's JSON records (settings and vocabulary), written and read through the stores, and
refused with a message naming the file when damaged: no TensorFlow, no training."""

import json
import os

import pytest

from charrnn.config import ModelConfig, TrainConfig
from charrnn.errors import RunDirError
from charrnn.rundir import RunDir, Settings
from charrnn.vocab import Vocab

CORPUS = {
    "files": [{"path": "/data/novel.txt", "bytes": 100, "sha256": "ab" * 32}],
    "chars": 100,
    "train_chars": 90,
    "val_chars": 10,
    "vocab_size": 3,
}


def settings():
    model = ModelConfig(model="lstm", layers=2, units=8, embedding_dim=4, vocab_size=3)
    return Settings(model, TrainConfig(seq_length=10, batch_size=2), dict(CORPUS), {"numpy": "2.0"}, 1234, {"workers": 1})


@pytest.fixture
def run(tmp_path):
    run = RunDir(tmp_path / "run")
    run.path.mkdir()
    run.settings.write(settings())
    return run


def edit(run, change):
    """Rewrites the settings file with `change(data)` applied to its JSON."""
    path = run.file("settings.json")
    data = json.loads(path.read_text())
    change(data)
    path.write_text(json.dumps(data, indent=2))


def test_settings_round_trip(run):
    assert run.settings.read() == settings()
    assert run.settings.read() == settings()  # today's name


def test_settings_file_is_recognisably_charrnns(run):
    assert run.owns("settings.json") and run.has_run()


def test_run_without_state_setting_trains_from_zero_states(run):
    edit(run, lambda data: data["train"].pop("state"))
    assert run.settings.read().train.state == "reset"


def test_run_from_before_lr_decay_keeps_the_cosine(run):
    edit(run, lambda data: data["train"].pop("lr_decay"))
    assert run.settings.read().train.lr_decay == "cosine"


def test_settings_with_an_unknown_lr_decay_are_corrupt(run):
    edit(run, lambda data: data["train"].update(lr_decay="step"))
    with pytest.raises(RunDirError, match="lr_decay must be one of cosine, linear"):
        run.settings.read()


def test_run_from_before_weight_decay_resumes_without_it(run):
    assert settings().train.weight_decay == 0.1  # today's default
    edit(run, lambda data: data["train"].pop("weight_decay"))
    assert run.settings.read().train.weight_decay == 0.0


def test_optional_facts_of_the_wrong_type_are_dropped(run):
    edit(run, lambda data: data.update(versions=[1], parameters=-5, spread="x"))
    read = run.settings.read()
    assert (read.versions, read.parameters, read.spread) == ({}, None, {})


def set_in(section, field, value):
    return lambda data: data[section].__setitem__(field, value)


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        (lambda data: data.pop("train"), "model, train or corpus section missing"),
        (set_in("model", "units", "8"), "a section has the wrong form"),
        (set_in("train", "learning_rate", True), "a section has the wrong form"),
        (lambda data: data.__setitem__("model", []), "a section has the wrong form"),
        (set_in("corpus", "files", {}), "the corpus section has no list of files"),
        (set_in("corpus", "files", ["novel.txt"]), "a corpus file is not an object. Received: 'novel.txt'"),
        (lambda data: data["corpus"]["files"][0].update(bytes=-1), "a corpus file's bytes is not valid. Received: bytes=-1"),
        (lambda data: data["corpus"]["files"][0].update(path="a\0b"), "a corpus file's path is not valid"),
        (lambda data: data["corpus"]["files"][0].pop("sha256"), "a corpus file's sha256 is not valid. Received: sha256=None"),
        (set_in("corpus", "chars", 1.5), "corpus chars must be a count (a whole number, 0 or more). Received: chars=1.5"),
        (set_in("versions", "numpy", float("nan")), "its versions holds nan, which is not a finite number"),
        (set_in("spread", "replicas", float("inf")), "its spread holds inf, which is not a finite number"),
        (set_in("model", "units", 0), "units must be positive. Received: units=0"),
        (set_in("model", "colour", "red"), "unknown ModelConfig fields: colour"),
        (set_in("train", "state", "sideways"), "state"),
    ],
)
def test_damaged_settings_are_refused_naming_the_file(run, change, reason):
    edit(run, change)
    with pytest.raises(RunDirError) as error:
        run.settings.read()
    message = str(error.value)
    assert message.startswith(f"{run.file('settings.json')} is corrupt or truncated (")
    assert reason in message
    assert message.endswith("retrain the run, or restore the file from a backup")


@pytest.mark.parametrize("content", [b"{not json", b"\xff\xfe{}", b"[1, 2]"])
def test_unreadable_json_is_corrupt(run, content):
    run.file("settings.json").write_bytes(content)
    with pytest.raises(RunDirError, match=r"settings.json is corrupt or truncated"):
        run.settings.read()


def test_oversized_settings_are_refused_unread(run):
    with open(run.file("settings.json"), "r+b") as f:
        f.truncate(17 << 20)  # sparse: nothing is written
    with pytest.raises(RunDirError, match=r"\(17,825,792 bytes, more than a run's settings.json can hold \(16,777,216\)\)"):
        run.settings.read()


def test_missing_settings_say_the_run_is_incomplete(run):
    run.file("settings.json").unlink()
    with pytest.raises(RunDirError, match=r"run directory .* is incomplete \(settings.json is missing\)"):
        run.settings.read()


def test_directory_in_the_settings_place_is_unreadable(run):
    run.file("settings.json").unlink()
    run.file("settings.json").mkdir()
    with pytest.raises(RunDirError, match="cannot read .*settings.json: it is a directory, not a file"):
        run.settings.read()


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no FIFOs")
def test_fifo_in_the_settings_place_is_refused_without_waiting(run):
    run.file("settings.json").unlink()
    os.mkfifo(run.file("settings.json"))
    with pytest.raises(RunDirError, match="it is a FIFO or device, not a file"):
        run.settings.read()


def test_vocab_round_trip_and_size_check(run):
    vocab = Vocab(["a", "b", "\n"], [5, 3, 1])
    run.vocab.write(vocab)
    read = run.vocab.read(3)
    assert read.index_to_char == ["a", "b", "\n"]
    with pytest.raises(RunDirError, match=r"vocab.json does not match the run's settings \(vocabulary size\); retrain the run"):
        run.vocab.read(4)


def test_damaged_vocab_is_corrupt(run):
    run.vocab.write(Vocab(["a", "b"]))
    run.file("vocab.json").write_text('{\n "vocab_size": 2, "index_to_char": ["a", "a"]}')
    with pytest.raises(RunDirError, match="vocab.json is corrupt or truncated"):
        run.vocab.read()


def test_read_only_run_reads_but_never_writes(run):
    read_only = RunDir(run.path, read_only=True)
    assert not read_only.writes
    assert read_only.settings.read() == settings()
    changed = settings()
    changed.parameters = 1
    read_only.settings.write(changed)
    read_only.vocab.write(Vocab(["x"]))
    assert run.settings.read().parameters == 1234
    assert not run.file("vocab.json").exists()
    assert read_only.lock() is None and not run.file("lock").exists()
