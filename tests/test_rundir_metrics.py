"""The run's metrics log through its store: appended a line at a time, a torn last line dropped,
a damaged middle line refused, trimmed on resume. No TensorFlow, no training."""

import errno
import os

import pytest

from charrnn.errors import RunDirError
from charrnn.rundir import RunDir, atomic


@pytest.fixture
def run(tmp_path):
    run = RunDir(tmp_path / "run")
    run.path.mkdir()
    return run


def test_no_log_reads_as_no_rows(run):
    assert run.metrics.read() == []


def test_append_then_read(run):
    run.metrics.append({"step": 1, "val_loss": 2.5})
    run.metrics.append({"step": 2, "val_loss": 2.0, "note": "é"})
    assert run.metrics.read() == [{"step": 1, "val_loss": 2.5}, {"step": 2, "val_loss": 2.0, "note": "é"}]
    assert run.file("metrics.jsonl").read_text().count("\n") == 2
    assert run.owns("metrics.jsonl")


def test_torn_last_line_is_dropped(run):
    run.metrics.append({"step": 1})
    with open(run.file("metrics.jsonl"), "a") as f:
        f.write('{"step": 2, "val_lo')
    assert run.metrics.read() == [{"step": 1}]


def test_whole_last_line_without_its_newline_is_kept(run):
    run.file("metrics.jsonl").write_text('{"step": 1}\n{"step": 2}')
    assert run.metrics.read() == [{"step": 1}, {"step": 2}]


@pytest.mark.parametrize("bad", ['{"step": 2, "val', '{"step": "2"}', "[2]", '{"val_loss": 1.0}', '{"step": true}'])
def test_bad_middle_line_is_refused_with_its_number(run, bad):
    run.file("metrics.jsonl").write_text(f'{{"step": 1}}\n{bad}\n{{"step": 3}}\n')
    with pytest.raises(RunDirError) as error:
        run.metrics.read()
    assert str(error.value) == (
        f"{run.file('metrics.jsonl')} is corrupt or truncated (line 2 is not a metrics row); delete that line, or the file, to go on"
    )


def test_log_that_is_not_utf8_is_refused_with_the_same_fix(run):
    run.file("metrics.jsonl").write_bytes(b'{"step": 1}\n\xff\n')
    with pytest.raises(RunDirError, match="delete that line, or the file, to go on"):
        run.metrics.read()


def test_trim_keeps_rows_up_to_the_step_and_drops_a_torn_line(run):
    for step in (1, 2, 3, 4):
        run.metrics.append({"step": step})
    with open(run.file("metrics.jsonl"), "a") as f:
        f.write('{"step": 5')
    run.metrics.trim(2)
    assert run.metrics.read() == [{"step": 1}, {"step": 2}]
    assert run.file("metrics.jsonl").read_text() == '{"step": 1}\n{"step": 2}\n'


def test_short_write_is_taken_back(run, monkeypatch):
    run.metrics.append({"step": 1})
    before = run.file("metrics.jsonl").read_bytes()
    real_write = os.write
    monkeypatch.setattr(atomic.os, "write", lambda fd, data: real_write(fd, data[:5]))
    with pytest.raises(RunDirError, match=r"could not write .*metrics.jsonl: No space left on device; the previous version is intact; free some disk space"):
        run.metrics.append({"step": 2})
    monkeypatch.undo()
    assert run.file("metrics.jsonl").read_bytes() == before


def test_append_line_raises_enospc_itself(tmp_path, monkeypatch):
    path = tmp_path / "log"
    real_write = os.write
    monkeypatch.setattr(atomic.os, "write", lambda fd, data: real_write(fd, data[:1]))
    with pytest.raises(OSError) as error:
        atomic.append_line(path, b"abc\n")
    assert error.value.errno == errno.ENOSPC
    assert path.read_bytes() == b""


def test_read_only_run_appends_and_trims_nothing(run):
    run.metrics.append({"step": 1})
    run.metrics.append({"step": 2})
    read_only = RunDir(run.path, read_only=True)
    read_only.metrics.append({"step": 3})
    read_only.metrics.trim(1)
    assert read_only.metrics.read() == [{"step": 1}, {"step": 2}]


def test_todays_names_still_work(run):
    run.metrics.append({"step": 7})
    run.metrics.trim(7)
    assert run.metrics.read() == [{"step": 7}]
