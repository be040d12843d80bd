"""A run directory's files as every store reads and writes them: each write atomic (and nothing
at all in a read-only run), each read guarded against what may stand in a file's place, every
failure a RunDirError that names the file."""

import json
import os
import stat
from pathlib import Path

from charrnn.errors import RunDirError
from charrnn.rundir import atomic, messages
from charrnn.rundir.layout import CHECKPOINT, MAX_JSON_BYTES, SETTINGS


class RunFiles:
    def __init__(self, path, writes=True, staged_for=None):
        self.path = Path(path)
        # False for a worker other than the chief: it reads the run but never writes it.
        self.writes = writes
        # For a new run built beside an old one (RunDir.staged): the run directory it will replace.
        self.staged_for = staged_for

    def file(self, name):
        return self.path / name

    # --- writing --------------------------------------------------------------------------------

    def replace(self, name, write):
        """Replaces file `name` with what `write(f)` writes into a temporary file, flushed and
        fsynced before the rename. A temporary file left by a failure is removed; an OSError is a
        RunDirError that says the previous version is intact."""
        if not self.writes:
            return
        target = self.file(name)
        try:
            atomic.replace_file(target, write)
        except OSError as e:
            # Until the first checkpoint is saved there is nothing to resume: training starts again.
            resumable = self.file(CHECKPOINT).exists() and self.file(SETTINGS).exists()
            raise RunDirError(messages.write_error(target, e, target.exists(), resumable, self.staged_for)) from None

    def write_bytes(self, name, data):
        """Replaces file `name` with `data` (bytes): the old or the new content survives any crash."""
        self.replace(name, lambda f: f.write(data))

    def write_json(self, name, data):
        self.write_bytes(name, (json.dumps(data, indent=2, ensure_ascii=False) + "\n").encode())

    def append_line(self, name, line):
        """Appends `line` (bytes) to file `name` with a single write (atomic.append_line)."""
        if not self.writes:
            return
        try:
            atomic.append_line(self.file(name), line)
        except OSError as e:
            raise RunDirError(messages.write_error(self.file(name), e)) from None

    # --- reading --------------------------------------------------------------------------------

    def open(self, name, missing_ok=False):
        """Opens run file `name` for reading, binary; None if it is missing and `missing_ok`.
        Anything in the way of reading it that is not its content (permissions, a directory or a
        FIFO in its place, an I/O error) is a RunDirError that says so."""
        path = self.file(name)
        try:
            # O_NONBLOCK: a FIFO in the file's place is refused below instead of waiting for a writer.
            fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
        except FileNotFoundError:
            if missing_ok:
                return None
            raise RunDirError(messages.missing(self.path, name)) from None
        except OSError as e:
            raise RunDirError(messages.unreadable(path, e)) from None
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            os.close(fd)
            kind = "a directory" if stat.S_ISDIR(mode) else "a FIFO or device"
            raise RunDirError(messages.unreadable(path, f"it is {kind}, not a file"))
        return os.fdopen(fd, "rb")

    def read_text(self, name, missing_ok=False, fix=None):
        """The UTF-8 text of run file `name` (None if missing and `missing_ok`); `fix` is the advice
        for a file that is not UTF-8."""
        path = self.file(name)
        f = self.open(name, missing_ok)
        if f is None:
            return None
        with f:
            limit = MAX_JSON_BYTES.get(name)
            size = os.fstat(f.fileno()).st_size
            if limit is not None and size > limit:
                raise RunDirError(messages.corrupt(path, f"{size:,} bytes, more than a run's {name} can hold ({limit:,})"))
            try:
                raw = f.read()
            except OSError as e:
                raise RunDirError(messages.unreadable(path, e)) from None
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError as e:
            raise RunDirError(messages.corrupt(path, e, fix)) from None

    def read_json(self, name):
        text = self.read_text(name)
        try:
            return json.loads(text)
        except (ValueError, RecursionError) as e:
            raise RunDirError(messages.corrupt(self.file(name), messages.reason(e))) from None
