"""Writes that a crash cannot tear: a file is replaced by renaming a flushed, fsynced temporary
file over it (the old or the new content survives any kill), and a line is appended with a single
write (all of it or none). Errors propagate as OSError; the callers word them."""

import contextlib
import errno
import os
from pathlib import Path


def temporary(path):
    """The temporary file beside `path` that a replacement by this process writes first."""
    return path.with_name(f".{path.name}.tmp-{os.getpid()}")


def temporaries(directory, name="*"):
    """The temporary files in `directory` that replacements of `name` (any name: "*") left behind."""
    return Path(directory).glob(f".{name}.tmp-*")


def replace_file(path, write):
    """Replaces the file at `path` with what `write(f)` writes into a temporary file beside it,
    flushed and fsynced before the rename, so that a crash leaves the old or the new content. A
    temporary file left by a failure is removed; errors propagate."""

    def make(temp):
        with open(temp, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())

    _replace(Path(path), make)


def replace_path(path, make):
    """As replace_file, for a writer that writes a file by name: `make(temp)` writes the whole new
    content at the path `temp`, which is then fsynced and renamed over `path`."""

    def make_synced(temp):
        make(temp)
        fd = os.open(temp, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

    _replace(Path(path), make_synced)


def _replace(path, make):
    temp = temporary(path)
    try:
        make(temp)
        os.replace(temp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            temp.unlink()
        raise
    fsync_dir(path.parent)


def write_bytes(path, data):
    """Replaces the file at `path` with `data` (bytes), atomically (replace_file)."""
    replace_file(path, lambda f: f.write(data))


def append_line(path, line):
    """Appends `line` (bytes) to the file at `path` (created if missing) with a single write, so a
    kill cannot leave part of it behind; a short write (a full disk) is taken back and raised as
    ENOSPC. Fsynced before it returns."""
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        size = os.fstat(fd).st_size
        written = os.write(fd, line)
        if written != len(line):
            os.ftruncate(fd, size)
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_dir(path):
    """Makes a rename durable. Best effort: some file systems cannot fsync a directory, and the
    rename itself has already happened."""
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
