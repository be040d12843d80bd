"""What train may touch in a run directory: --force replaces an old run only once the new one has
saved; files charrnn did not write are never overwritten or deleted; the lock file; corpus input
that must be refused early (a never-ending standard input, UTF-16, a dangling link, `- -`); and a
model too big to build."""

import errno
import io
import os
import shutil

import pytest

from charrnn import corpus as corpus_lib, rundir as rundir_module, sizing
from charrnn.config import ModelConfig, TrainConfig
from charrnn.errors import CorpusError, RunDirError, UsageError
from charrnn.rundir import RunDir
from helpers import TINY_FLAGS, TINY_MODEL, TINY_TRAIN, assert_error, invoke, make_text


def snapshot(path):
    """Every file under `path` with its bytes (the lock aside)."""
    return {
        str(p.relative_to(path)): p.read_bytes()
        for p in sorted(path.rglob("*"))
        if p.is_file() and p.name != "lock"
    }


def staged_leftovers(path):
    return [p.name for p in path.iterdir() if p.name.startswith(rundir_module.STAGED)]


# --- --force replaces the old run only once the new one has saved ---------------------------------


@pytest.mark.parametrize(
    "flags, code, fragment",
    [
        (["--random-seed", "-1"], 2, "--random-seed"),
        (["--random-seed", str(2**70)], 2, "--random-seed"),
        (["--units", "60000", "--layers", "200"], 2, "would need about"),
        (["--batch-size", "1000"], 1, "is more than the 112 training windows"),
        (["--learning-rate", "nan"], 2, "not a finite number"),
    ],
)
def test_force_with_settings_that_cannot_train_keeps_the_old_run(runner, run_copy, corpus_file, flags, code, fragment):
    before = snapshot(run_copy)
    result = invoke(runner, ["train", corpus_file, "-r", run_copy, "--force", "-q", "--seq-length", "8", *flags])
    assert_error(result, code, fragment)
    assert snapshot(run_copy) == before
    assert staged_leftovers(run_copy) == []


def test_library_force_with_a_bad_seed_keeps_the_old_run(run_copy, corpus_file):
    from charrnn.train import train

    before = snapshot(run_copy)
    with pytest.raises(UsageError, match="random_seed must be in"):
        train([str(corpus_file)], str(run_copy), dict(TINY_MODEL), dict(TINY_TRAIN, random_seed=-5), force=True, quiet=True, log=lambda line: None)
    assert snapshot(run_copy) == before


@pytest.mark.parametrize(
    "error, fragment", [(UsageError("the model cannot be built here"), "cannot be built"), (MemoryError(), "ran out of memory building or training")]
)
def test_force_that_fails_to_build_keeps_the_old_run(runner, run_copy, corpus_file, monkeypatch, error, fragment):
    from charrnn import model as model_lib

    def fail(*args, **kwargs):
        raise error

    monkeypatch.setattr(model_lib, "build_model", fail)
    before = snapshot(run_copy)
    result = invoke(runner, ["train", corpus_file, "-r", run_copy, "--force", "-q", *TINY_FLAGS])
    assert_error(result, 2, fragment)
    assert snapshot(run_copy) == before
    assert staged_leftovers(run_copy) == []


def test_force_that_cannot_save_its_first_checkpoint_keeps_the_old_run(runner, run_copy, corpus_file, monkeypatch):
    real = os.replace

    def full(src, dst):
        if str(dst).endswith("checkpoint.npz") and rundir_module.STAGED in str(dst):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real(src, dst)

    monkeypatch.setattr(rundir_module.os, "replace", full)
    before = snapshot(run_copy)
    result = invoke(runner, ["train", corpus_file, "-r", run_copy, "--force", "-q", *TINY_FLAGS])
    line = assert_error(result, 1, "No space left on device", f"the run in {run_copy} is untouched", "run the same command again")
    assert "--resume" not in line
    assert snapshot(run_copy) == before
    assert staged_leftovers(run_copy) == []


@pytest.mark.slow
def test_force_replaces_the_old_run_with_the_new_one(runner, run_copy, tmp_path):
    other = tmp_path / "other.txt"
    other.write_text(make_text(1200, seed=9), encoding="utf-8")
    (run_copy / "notes.txt").write_text("the user's")
    result = invoke(runner, ["train", other, "-r", run_copy, "--force", "-q", *TINY_FLAGS, "--epochs", "1", "--eval-every", "100"])
    assert result.exit_code == 0, result.output
    settings = RunDir(run_copy).settings.read()
    assert settings.corpus["files"][0]["path"] == str(other)
    assert settings.train.epochs == 1
    # The old run's best weights and metrics went with it; the new run made its own.
    rows = RunDir(run_copy).metrics.read()
    assert [row["epoch"] for row in rows] == [1.0]
    assert RunDir(run_copy).best.read().step == rows[0]["step"]
    assert (run_copy / "notes.txt").read_text() == "the user's"
    assert staged_leftovers(run_copy) == [] and not (run_copy / "lock").exists()
    assert invoke(runner, ["sample", "-r", run_copy, "--length", "5"]).exit_code == 0


@pytest.mark.slow
def test_a_killed_force_leaves_the_old_run_and_its_leftovers_are_removed(runner, run_copy, corpus_file):
    # What `train --force` killed before it replaced the old run leaves: a half-built new run.
    staged = run_copy / f"{rundir_module.STAGED}4242424"
    staged.mkdir()
    (staged / "corpus.npy").write_bytes(b"\x93NUMPY half of it")
    (staged / ".checkpoint.npz.tmp-4242424").write_bytes(b"half")
    before = snapshot(run_copy)
    del before[f"{staged.name}/corpus.npy"], before[f"{staged.name}/.checkpoint.npz.tmp-4242424"]
    result = invoke(runner, ["train", "--resume", "-r", run_copy, "--epochs", "3", "-q"])
    assert result.exit_code == 0, result.output
    assert not staged.exists()
    assert invoke(runner, ["info", "-r", run_copy]).exit_code == 0


# --- files charrnn did not write ------------------------------------------------------------------


@pytest.mark.parametrize("name, content", [("settings.json", b'{"theme": "dark"}\n'), ("metrics.jsonl", b"my,csv\n1,2\n"), ("vocab.json", b"[1]"), ("checkpoint.npz", b"PK\x03\x04not ours"), ("corpus.npy", b"notes")])
@pytest.mark.parametrize("force", [False, True])
def test_a_file_of_the_users_at_a_charrnn_name_is_never_overwritten(runner, tmp_path, corpus_file, name, content, force):
    folder = tmp_path / "mine"
    folder.mkdir()
    (folder / name).write_bytes(content)
    assert not RunDir(folder).has_run()
    result = invoke(runner, ["train", corpus_file, "-r", folder, *TINY_FLAGS, "-q", *(["--force"] if force else [])])
    assert_error(result, 1, "files charrnn did not write", name, "not even with --force")
    assert sorted(p.name for p in folder.iterdir()) == [name]
    assert (folder / name).read_bytes() == content


def test_a_folder_with_a_foreign_settings_file_holds_no_run(runner, tmp_path):
    (tmp_path / "settings.json").write_text('{"model": "mine"}')
    for command in (["sample"], ["info"]):
        line = assert_error(invoke(runner, [*command, "-r", tmp_path]), 1, "holds no run", "settings.json", "not charrnn's")
        assert "--force" not in line


def test_a_users_lock_file_is_left_alone(runner, tmp_path, corpus_file):
    folder = tmp_path / "mine"
    folder.mkdir()
    (folder / "lock").write_text("combination: 12-34-56\n")
    result = invoke(runner, ["train", corpus_file, "-r", folder, *TINY_FLAGS, "-q"])
    assert_error(result, 1, f"{folder / 'lock'} is not a lock file of charrnn's", "move it away")
    assert (folder / "lock").read_text() == "combination: 12-34-56\n"
    assert sorted(p.name for p in folder.iterdir()) == ["lock"]


@pytest.mark.slow
def test_a_damaged_run_is_still_a_run(runner, run_copy, corpus_file):
    # Cut short, charrnn's settings.json is still recognisably its own: --force may replace it.
    path = run_copy / "settings.json"
    path.write_bytes(path.read_bytes()[:40])
    assert RunDir(run_copy).has_run()
    assert_error(invoke(runner, ["train", corpus_file, "-r", run_copy, "-q", *TINY_FLAGS]), 1, "already holds a run")
    result = invoke(runner, ["train", corpus_file, "-r", run_copy, "-q", "--force", *TINY_FLAGS, "--epochs", "1"])
    assert result.exit_code == 0, result.output
    assert RunDir(run_copy).settings.read().train.epochs == 1


# --- the lock file ----------------------------------------------------------------------------------


def test_no_lock_file_is_left_after_a_run(runner, tmp_path, cli_run):
    trained, result = cli_run  # `charrnn train CORPUS -r RUN TINY_FLAGS --epochs 2`
    assert result.exit_code == 0
    assert not (trained / "lock").exists()
    # Nor after a refused resume (of a copy: the session's run stays as it was trained).
    run = shutil.copytree(trained, tmp_path / "run")
    assert invoke(runner, ["train", "--resume", "-r", run]).exit_code == 1
    assert not (run / "lock").exists()


def test_the_lock_follows_the_file_at_its_path(tmp_path):
    # A holder that let go deleted the file: whoever opened the old file must not think it holds the lock.
    first = RunDir(tmp_path)
    first.lock()
    old_fd = os.open(tmp_path / "lock", os.O_RDONLY)
    first.unlock()
    assert not (tmp_path / "lock").exists()
    second, third = RunDir(tmp_path), RunDir(tmp_path)
    second.lock()
    try:
        with pytest.raises(RunDirError, match="being trained by another process"):
            third.lock()
    finally:
        second.unlock()
        os.close(old_fd)


# --- corpus input refused early -----------------------------------------------------------------------


class Endless(io.RawIOBase):
    """A standard input that never ends."""

    def readable(self):
        return True

    def readinto(self, buffer):
        buffer[:] = b"a" * len(buffer)
        return len(buffer)

    def isatty(self):
        return False


def test_a_never_ending_standard_input_is_refused_at_the_stated_bound(monkeypatch):
    monkeypatch.setattr(corpus_lib, "CHUNK_BYTES", 1 << 12)
    monkeypatch.setattr(corpus_lib, "MAX_STDIN_BYTES", 1 << 16)
    with pytest.raises(CorpusError, match="standard input gave more than .* GiB.*save the text to a file"):
        corpus_lib.scan(["-"], stdin=Endless())


def test_standard_input_twice_is_a_usage_error(runner, tmp_path):
    result = invoke(runner, ["train", "-", "-", "-r", tmp_path / "run"], input="some text\n" * 50)
    assert_error(result, 2, "- (standard input) is given 2 times", "only once")


@pytest.mark.parametrize(
    "encoding, named, iconv",
    [
        ("utf-16", "UTF-16 (little-endian, with a byte-order mark)", "iconv -f UTF-16 -t UTF-8"),
        ("utf-32", "UTF-32 (little-endian, with a byte-order mark)", "iconv -f UTF-32 -t UTF-8"),
        ("utf-16-be", "UTF-16 (big-endian, no byte-order mark)", "iconv -f UTF-16BE -t UTF-8"),
    ],
)
def test_utf16_and_utf32_text_is_named_with_how_to_convert(runner, tmp_path, encoding, named, iconv):
    path = tmp_path / "poems.txt"
    path.write_bytes(("\ufeff" if encoding == "utf-16-be" and False else "").encode() + make_text(500).encode(encoding))
    result = invoke(runner, ["train", path, "-r", tmp_path / "run"])
    assert_error(result, 1, f"{path} is {named} text", iconv)


def test_a_dangling_symlink_is_named_as_one(runner, tmp_path, corpus_file):
    link = tmp_path / "run"
    link.symlink_to(tmp_path / "gone")
    result = invoke(runner, ["train", corpus_file, "-r", link, *TINY_FLAGS])
    assert_error(result, 1, f"{link} is a symbolic link to {tmp_path / 'gone'}, which does not exist")
    assert_error(invoke(runner, ["sample", "-r", link]), 1, "symbolic link", "does not exist")
    corpus = tmp_path / "novel.txt"
    corpus.symlink_to(tmp_path / "moved.txt")
    assert_error(invoke(runner, ["train", corpus, "-r", tmp_path / "run2"]), 1, f"corpus file {corpus} is a symbolic link")


def test_the_first_checkpoint_failing_does_not_advise_resume(runner, tmp_path, corpus_file, monkeypatch):
    real = os.replace

    def full(src, dst):
        if str(dst).endswith("checkpoint.npz"):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real(src, dst)

    monkeypatch.setattr(rundir_module.os, "replace", full)
    result = invoke(runner, ["train", corpus_file, "-r", tmp_path / "run", *TINY_FLAGS, "-q"])
    line = assert_error(result, 1, "No space left on device", "nothing is saved yet", "run the same command again")
    assert "--resume" not in line


# --- models too big to build ----------------------------------------------------------------------------


@pytest.mark.parametrize("cell", ["lstm", "gru", "rnn"])
def test_parameter_estimate_is_the_models_count(cell):
    from charrnn.model import build_model

    cfg = ModelConfig(model=cell, layers=2, units=6, embedding_dim=3, vocab_size=11)
    assert sizing.parameters(cfg) == build_model(cfg).count_params()


def test_a_model_too_big_for_memory_is_refused_with_the_estimate():
    cfg = ModelConfig(units=4096, layers=4, vocab_size=100_000)
    with pytest.raises(UsageError, match=r"would need about [\d.,]+ GB of memory to train \([\d,]+ parameters.*more than the 1.0 GB available"):
        sizing.check_fits(cfg, TrainConfig(), available=10**9)
    sizing.check_fits(ModelConfig(vocab_size=65), TrainConfig(), available=10**9)  # the default fits in 1 GB
