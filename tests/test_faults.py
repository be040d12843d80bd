"""Faults injected in-process: damaged run files, a full disk or read-only directory during a save,
a diverging loss, a changed corpus, a pickled checkpoint, and the directory lock."""

import errno
import json
import os
import pathlib

import numpy as np
import pytest

from charrnn.rundir import atomic as rundir_module  # the module that opens and writes run files
from charrnn.errors import RunDirError
from charrnn.rundir import RunDir
from charrnn.snapshot import network as load_run
from helpers import TINY_FLAGS, assert_error, epoch_steps, invoke

COMMANDS = {
    "sample": ["sample", "--length", "5"],
    "sample-latest": ["sample", "--length", "5", "--weights", "latest"],
    "info": ["info"],
    "resume": ["train", "--resume", "--epochs", "3"],
}


def truncate(path):
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def empty(path):
    path.write_bytes(b"")


def garbage(path):
    path.write_bytes(np.random.default_rng(0).integers(0, 256, 300, dtype=np.uint8).tobytes())


def flip_array_byte(path):
    """Changes one byte inside the largest array's data (a bit rot that only the zip CRC sees)."""
    data = bytearray(path.read_bytes())
    with np.load(path) as npz:
        key = max(npz.files, key=lambda k: npz[k].nbytes)
        raw = npz[key].tobytes()
    at = data.index(raw) + len(raw) // 2
    data[at] ^= 0x40
    path.write_bytes(bytes(data))


def wrong_json(path):
    path.write_text('{"model": "gru", "train": [], "corpus": {}}' if path.name == "settings.json" else '{"vocab_size": 2, "index_to_char": ["a", "a"]}')


def wrong_types(path):
    settings = json.loads(path.read_text())
    settings["model"]["units"] = "eight"
    path.write_text(json.dumps(settings))


# (file, damage, commands that read the file and must fail naming it)
DAMAGE = [
    ("settings.json", truncate, ["sample", "info", "resume"]),
    ("settings.json", garbage, ["sample", "info", "resume"]),
    ("settings.json", wrong_json, ["sample", "info", "resume"]),
    ("settings.json", wrong_types, ["sample", "info", "resume"]),
    ("vocab.json", truncate, ["sample", "info", "resume"]),
    ("vocab.json", empty, ["sample", "info", "resume"]),
    ("vocab.json", wrong_json, ["sample", "info", "resume"]),
    ("checkpoint.npz", truncate, ["sample-latest", "info", "resume"]),
    ("checkpoint.npz", empty, ["sample-latest", "info", "resume"]),
    ("checkpoint.npz", garbage, ["sample-latest", "info", "resume"]),
    ("checkpoint.npz", flip_array_byte, ["sample-latest", "info", "resume"]),
    ("best.npz", truncate, ["sample", "info", "resume"]),
    ("best.npz", flip_array_byte, ["sample", "info", "resume"]),
]


@pytest.mark.parametrize(
    "name, damage, command",
    [pytest.param(n, d, c, id=f"{n}-{d.__name__}-{c}") for n, d, commands in DAMAGE for c in commands],
)
def test_damaged_file_is_named_without_a_traceback(runner, run_copy, name, damage, command):
    damage(run_copy / name)
    result = invoke(runner, [*COMMANDS[command], "-r", run_copy])
    message = assert_error(result, 1, str(run_copy / name), "corrupt")
    assert "retrain the run" in message or "restore" in message


@pytest.mark.parametrize("command", ["sample", "info"])
def test_damaged_checkpoint_does_not_stop_sampling_from_best(runner, run_copy, command):
    # `sample` reads only best.npz; the damage is still reported by `info` and `train --resume`.
    truncate(run_copy / "checkpoint.npz")
    result = invoke(runner, [*COMMANDS[command], "-r", run_copy])
    if command == "sample":
        assert result.exit_code == 0 and len(result.stdout) == 6
    else:
        assert_error(result, 1, "checkpoint.npz")


def test_torn_last_metrics_line_is_dropped_on_resume(runner, run_copy):
    path = run_copy / "metrics.jsonl"
    rows = path.read_text().splitlines()
    path.write_text("\n".join(rows) + '\n{"step": 999, "val_lo')
    assert RunDir(run_copy).metrics.read() == [json.loads(r) for r in rows]
    # sample and info never need the metrics.
    assert invoke(runner, ["sample", "-r", run_copy, "--length", "5"]).exit_code == 0
    assert invoke(runner, ["info", "-r", run_copy]).exit_code == 0
    RunDir(run_copy).metrics.trim(10)
    assert path.read_text() == "".join(r + "\n" for r in rows[:10])


@pytest.mark.parametrize("bad_line", ["garbage", '{"step": "five"}', "[1, 2]", "\x00\x01"])
def test_corrupt_metrics_line_stops_resume_naming_file_and_line(runner, run_copy, bad_line):
    path = run_copy / "metrics.jsonl"
    rows = path.read_text().splitlines()
    path.write_text("\n".join(rows[:3] + [bad_line] + rows[3:]) + "\n")
    result = invoke(runner, ["train", "--resume", "--epochs", "3", "-r", run_copy])
    assert_error(result, 1, f"{path} is corrupt or truncated (line 4 is not a metrics row)", "delete that line")
    assert invoke(runner, ["info", "-r", run_copy]).exit_code == 0


def test_metrics_that_are_not_utf8(runner, run_copy):
    path = run_copy / "metrics.jsonl"
    path.write_bytes(path.read_bytes() + b'{"step": 1\xff}\n')
    assert_error(invoke(runner, ["train", "--resume", "--epochs", "4", "-r", run_copy]), 1, str(path))


def test_pickled_checkpoint_is_refused_not_executed(runner, run_copy, tmp_path):
    marker = tmp_path / "pwned"

    class Payload:
        def __reduce__(self):
            return (pathlib.Path.touch, (marker,))

    for name in ("checkpoint.npz", "best.npz"):
        with np.load(run_copy / name) as npz:
            arrays = {k: npz[k] for k in npz.files}
        arrays["weights/embedding"] = np.array([Payload()], dtype=object)
        np.savez(run_copy / name, **arrays)
    # np.load with pickles allowed would run the payload: the test's payload is live.
    with np.load(run_copy / "best.npz", allow_pickle=True) as npz:
        npz["weights/embedding"]
    assert marker.exists()
    marker.unlink()

    for command in ("sample", "sample-latest", "info", "resume"):
        result = invoke(runner, [*COMMANDS[command], "-r", run_copy])
        assert_error(result, 1, "corrupt", "allow_pickle=False")
        assert not marker.exists(), command


def test_pickled_state_is_refused(run_copy):
    with np.load(run_copy / "checkpoint.npz") as npz:
        arrays = {k: npz[k] for k in npz.files}
    arrays["state"] = np.array([{"step": 1}], dtype=object)
    np.savez(run_copy / "checkpoint.npz", **arrays)
    with pytest.raises(RunDirError, match="checkpoint.npz is corrupt"):
        RunDir(run_copy).checkpoint.load()


def test_checkpoint_state_with_missing_fields_is_refused(run_copy):
    with np.load(run_copy / "checkpoint.npz") as npz:
        arrays = {k: npz[k] for k in npz.files}
    arrays["state"] = np.array(json.dumps({"step": "12"}))
    np.savez(run_copy / "checkpoint.npz", **arrays)
    with pytest.raises(RunDirError, match=r"checkpoint.npz is corrupt or truncated \(its training state has no valid step\)"):
        RunDir(run_copy).checkpoint.read_state()


# --- saving fails ----------------------------------------------------------------------------------


def failing(error_number, when):
    """A stand-in for an os function that fails with `error_number` when `when(args)` holds."""

    def make(real):
        def fake(*args, **kwargs):
            if when(args):
                raise OSError(error_number, os.strerror(error_number))
            return real(*args, **kwargs)

        return fake

    return make


@pytest.mark.slow
def test_full_disk_during_checkpoint_keeps_the_previous_one(runner, run_copy, monkeypatch):
    before = (run_copy / "checkpoint.npz").read_bytes()
    fake = failing(errno.ENOSPC, lambda args: str(args[1]).endswith("checkpoint.npz"))(os.replace)
    monkeypatch.setattr(rundir_module.os, "replace", fake)
    result = invoke(runner, ["train", "--resume", "--epochs", "3", "--checkpoint-every", "0.001", "-q", "-r", run_copy])
    assert_error(
        result, 1, f"could not write {run_copy / 'checkpoint.npz'}: No space left on device",
        "the previous version is intact", "free some disk space", "--resume",
    )
    monkeypatch.undo()
    assert (run_copy / "checkpoint.npz").read_bytes() == before
    assert RunDir(run_copy).checkpoint.load().state.step == 2 * epoch_steps()
    assert sorted(p.name for p in run_copy.iterdir()) == ["best.npz", "checkpoint.npz", "corpus.npy", "metrics.jsonl", "settings.json", "tensorboard", "vocab.json"]
    # Nothing was lost: the run resumes from the intact checkpoint.
    assert invoke(runner, ["sample", "-r", run_copy, "--length", "5", "--weights", "latest"]).exit_code == 0


@pytest.mark.parametrize("fail_in", ["write", "fsync", "replace"])
@pytest.mark.parametrize("name", ["checkpoint.npz", "best.npz", "settings.json"])
def test_failed_atomic_write_leaves_the_old_file(run_copy, monkeypatch, fail_in, name):
    before = (run_copy / name).read_bytes()
    if fail_in == "write":
        real_open = open

        class FullFile:
            def __init__(self, f):
                self.f = f

            def __enter__(self):
                return self

            def __exit__(self, *exc):
                self.f.close()

            def write(self, data):
                self.f.write(data[: len(data) // 2])
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

        monkeypatch.setattr(rundir_module, "open", lambda *a, **k: FullFile(real_open(*a, **k)), raising=False)
    elif fail_in == "fsync":
        monkeypatch.setattr(rundir_module.os, "fsync", failing(errno.ENOSPC, lambda args: True)(os.fsync))
    else:
        monkeypatch.setattr(rundir_module.os, "replace", failing(errno.ENOSPC, lambda args: True)(os.replace))
    with pytest.raises(RunDirError, match=f"could not write .*{name}: No space left on device; the previous version is intact"):
        RunDir(run_copy).write_atomic(name, b"new content that never lands")
    monkeypatch.undo()
    assert (run_copy / name).read_bytes() == before
    assert not [p for p in run_copy.iterdir() if ".tmp-" in p.name]


def test_short_metrics_write_is_taken_back(run_copy, monkeypatch):
    path = run_copy / "metrics.jsonl"
    before = path.read_bytes()
    real_write = os.write
    monkeypatch.setattr(rundir_module.os, "write", lambda fd, data: real_write(fd, data[:7]))
    with pytest.raises(RunDirError, match="metrics.jsonl: No space left on device"):
        RunDir(run_copy).metrics.append({"step": 57, "val_loss": 1.0})
    monkeypatch.undo()
    assert path.read_bytes() == before


def test_read_only_run_dir_refuses_training_clearly(runner, run_copy, corpus_file, tmp_path, monkeypatch):
    # Simulated: the tests may run as root, for whom a chmod'ed directory stays writable.
    real_os_open = os.open
    real_open = open

    def read_only_os_open(path, flags, *args):
        if flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT):
            raise OSError(errno.EROFS, os.strerror(errno.EROFS))
        return real_os_open(path, flags, *args)

    def read_only_open(path, mode="r", *args, **kwargs):
        if any(m in mode for m in "wax+"):
            raise OSError(errno.EROFS, os.strerror(errno.EROFS), str(path))
        return real_open(path, mode, *args, **kwargs)

    monkeypatch.setattr(rundir_module.os, "open", read_only_os_open)
    monkeypatch.setattr(rundir_module, "open", read_only_open, raising=False)
    fresh = tmp_path / "fresh"
    fresh.mkdir()
    result = invoke(runner, ["train", corpus_file, "-r", fresh, *TINY_FLAGS])
    assert_error(result, 1, f"cannot use run directory {fresh}: Read-only file system", "use another --run-dir")
    result = invoke(runner, ["train", "--resume", "--epochs", "3", "-r", run_copy])
    assert_error(result, 1, "Read-only file system", "use another --run-dir")
    # Reading a run needs no write access.
    result = invoke(runner, ["sample", "-r", run_copy, "--length", "5"])
    assert result.exit_code == 0, result.output
    assert invoke(runner, ["info", "-r", run_copy]).exit_code == 0


def test_read_only_files_during_resume_keep_the_run(runner, run_copy, monkeypatch):
    # The lock can be taken, but no run file can be replaced.
    real_open = open

    def read_only_open(path, mode="r", *args, **kwargs):
        if any(m in mode for m in "wax+"):
            raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(path))
        return real_open(path, mode, *args, **kwargs)

    before = {p.name: p.read_bytes() for p in run_copy.iterdir() if p.name != "lock" and p.is_file()}
    monkeypatch.setattr(rundir_module, "open", read_only_open, raising=False)
    result = invoke(runner, ["train", "--resume", "--epochs", "3", "-r", run_copy])
    assert_error(result, 1, "could not write", "Permission denied", "the previous version is intact", "make the run directory writable")
    monkeypatch.undo()
    assert {p.name: p.read_bytes() for p in run_copy.iterdir() if p.name != "lock" and p.is_file()} == before


# --- the loss diverges -----------------------------------------------------------------------------


@pytest.mark.slow
def test_nan_loss_stops_with_advice_and_keeps_a_good_checkpoint(runner, corpus_file, tmp_path):
    run = tmp_path / "run"
    args = ["train", corpus_file, "-r", run, "--model", "rnn", *TINY_FLAGS, "--learning-rate", "1e30"]
    result = invoke(runner, [*args, "--checkpoint-every", "0.001", "--eval-every", "0.001", "-q"])
    message = assert_error(result, 1, "training diverged", "lower --learning-rate", "the last good checkpoint is kept")
    assert "charrnn train --resume --learning-rate" in message
    weights, _, state, *_ = RunDir(run).checkpoint.load()
    assert all(np.isfinite(w).all() for w in weights.values())
    # The kept weights still compute finite logits.
    net, vocab, _ = load_run(run, "latest")
    net_state = net.initial_state(1)
    for c in "the café":
        logits, net_state = net.step(np.array([vocab.char_to_index[c]]), net_state)
        assert np.isfinite(logits).all()
    # No row with a NaN loss was written.
    for line in (run / "metrics.jsonl").read_text().splitlines() if (run / "metrics.jsonl").exists() else []:
        assert all(np.isfinite(v) for v in json.loads(line).values())
    result = invoke(runner, ["sample", "-r", run, "--length", "20", "--weights", "latest"])
    assert result.exit_code == 0 and len(result.stdout) == 21


# --- the corpus changed ----------------------------------------------------------------------------


@pytest.mark.slow
def test_changed_corpus_is_refused_unless_forced(runner, run_copy, corpus_file, tmp_path):
    text = corpus_file.read_text(encoding="utf-8")
    changed = tmp_path / "changed.txt"
    changed.write_text(text[::-1], encoding="utf-8")  # the same characters, in another order
    result = invoke(runner, ["train", "--resume", changed, "-r", run_copy, "--epochs", "2"])
    assert_error(result, 1, "differs from the one this run was trained on", "--force")
    # Forced: accepted, trained on for one more epoch, and recorded as the run's text.
    result = invoke(runner, ["train", "--resume", changed, "-r", run_copy, "--epochs", "3", "--force", "-q"])
    assert result.exit_code == 0, result.output
    settings = json.loads((run_copy / "settings.json").read_text())
    assert settings["corpus"]["files"][0]["path"] == str(changed)
    # A plain resume now reads the changed text, which passes the check (and the budget is spent).
    result = invoke(runner, ["train", "--resume", "-r", run_copy, "--epochs", "3"])
    assert_error(result, 1, "already finished its budget")
    # The original text is now the one that differs.
    result = invoke(runner, ["train", "--resume", corpus_file, "-r", run_copy, "--epochs", "4"])
    assert_error(result, 1, "differs from the one this run was trained on")


def test_changed_corpus_with_new_characters_is_refused_even_forced(runner, run_copy, corpus_file, tmp_path):
    changed = tmp_path / "changed.txt"
    changed.write_text(corpus_file.read_text(encoding="utf-8") + " Zürich", encoding="utf-8")
    result = invoke(runner, ["train", "--resume", changed, "-r", run_copy, "--force"])
    assert_error(result, 1, "characters the run's vocabulary lacks", "'Z'")


# --- the lock --------------------------------------------------------------------------------------


def test_second_lock_is_refused_naming_the_holder(tmp_path):
    first = RunDir(tmp_path)
    assert first.lock() is None
    try:
        with pytest.raises(RunDirError, match=rf"being trained by another process \(pid {os.getpid()}\)"):
            RunDir(tmp_path).lock()
    finally:
        first.unlock()
    second = RunDir(tmp_path)
    assert second.lock() is None  # released: free again
    second.unlock()


def test_stale_lock_is_taken_over_and_leftovers_removed(tmp_path):
    (tmp_path / "lock").write_text("4242424\n")
    (tmp_path / ".checkpoint.npz.tmp-4242424").write_bytes(b"half a checkpoint")
    (tmp_path / "notes.txt").write_text("mine")
    run = RunDir(tmp_path)
    assert run.lock() == "4242424"
    try:
        assert (tmp_path / "lock").read_text() == f"{os.getpid()}\n"
        assert sorted(p.name for p in tmp_path.iterdir()) == ["lock", "notes.txt"]
    finally:
        run.unlock()


def test_a_live_training_refuses_a_second_one(runner, run_copy, corpus_file):
    holder = RunDir(run_copy)
    holder.lock()
    try:
        before = (run_copy / "checkpoint.npz").read_bytes()
        for args in (["train", "--resume"], ["train", corpus_file, "--force"]):
            result = invoke(runner, [*args, "-r", run_copy])
            assert_error(result, 1, f"is being trained by another process (pid {os.getpid()})")
        assert (run_copy / "checkpoint.npz").read_bytes() == before
    finally:
        holder.unlock()


@pytest.mark.parametrize("loss, expected", [(float("nan"), True), (float("inf"), True), (3.4e29, True), (1000.5, True), (4.17, False), (0.0, False)])
def test_what_counts_as_diverged(loss, expected):
    from charrnn.train import diverged

    assert diverged(loss) is expected
