"""The run directory: the only package that knows the files inside it and words their errors.

    run = RunDir(path)                   the chief (or the only process): reads and writes
    run = RunDir(path, read_only=True)   a worker other than the chief: reads; writes nothing
    run.settings   Settings (settings.py)        run.vocab    the Vocab (settings.py)
    run.checkpoint Checkpoint (weights.py)       run.best     Best and its weights (weights.py)
    run.metrics    the metrics log (metrics.py)  run.corpus   the encoded corpus (corpus.py)

layout.py names the files; every file is replaced atomically (atomic.py: written to a temporary
file, flushed, fsynced, renamed), so a kill at any instant leaves the old or the new version,
never a torn one. Arrays are stored as .npz and read member by member within bounds (npzsafe.py):
loading a run never executes code from it. Every read checks what it reads and returns it typed;
anything wrong is a RunDirError naming the file (messages.py).
"""

import os
from pathlib import Path

from charrnn.errors import RunDirError
from charrnn.lock import RunLock
from charrnn.rundir import layout, messages, staging
from charrnn.rundir.atomic import replace_file
from charrnn.rundir.corpus import CorpusStore, Validation
from charrnn.rundir.files import RunFiles
from charrnn.rundir.layout import (
    BEST,
    CHECKPOINT,
    CORPUS,
    LOCK,
    METRICS,
    RUN_FILES,
    SETTINGS,
    STAGED,
    TENSORBOARD,
    VOCAB,
    WRITTEN,
)
from charrnn.rundir.metrics import MetricsStore
from charrnn.rundir.settings import Settings, SettingsStore, VocabStore
from charrnn.rundir.weights import Best, BestStore, Checkpoint, CheckpointStore, load_weights

__all__ = [
    "BEST", "CHECKPOINT", "CORPUS", "LOCK", "METRICS", "RUN_FILES", "SETTINGS", "STAGED", "TENSORBOARD", "VOCAB",
    "WRITTEN", "Best", "Checkpoint", "RunDir", "Settings", "Validation", "replace_file",
]  # fmt: skip


class RunDir:
    def __init__(self, path, read_only=False, staged_for=None):
        self.path = Path(path)
        self._lock = RunLock(self.path / LOCK)
        # For a new run built beside an old one (see `staged`): the run directory it will replace.
        self.staged_for = staged_for
        # A worker other than the chief reads the run but never writes it.
        self.writes = not read_only
        self._files = RunFiles(self.path, self.writes, staged_for)
        self.settings = SettingsStore(self._files)
        self.vocab = VocabStore(self._files)
        self.checkpoint = CheckpointStore(self._files, self.settings)
        self.best = BestStore(self._files, self.settings)
        self.metrics = MetricsStore(self._files)
        self.corpus = CorpusStore(self._files)

    def file(self, name):
        return self.path / name

    def write_atomic(self, name, data):
        """Replaces run file `name` with `data` (bytes): the old or the new content survives any crash."""
        self._files.write_bytes(name, data)

    def tensorboard_dir(self):
        """The folder of the run's TensorBoard event files (charrnn.train.tensorboard writes them)."""
        return self.file(TENSORBOARD)

    def load_weights(self, which="best", settings=None, record=False):
        """The weights {name: array} of the best checkpoint (or of the latest, if no evaluation has
        happened yet, or if `which` is "latest"), each of the shape the settings imply. With
        `record`, (weights, the Best or the latest checkpoint's TrainState that their file records)."""
        return load_weights(self._files, self.settings, which, settings, record)

    # --- what is there --------------------------------------------------------------------------

    def has_run(self):
        """Whether the directory holds (part of) a run: a file of a run that charrnn wrote."""
        return layout.has_run(self.path)

    def owns(self, name):
        """Whether the file `name` (one of WRITTEN) is there and recognisably charrnn's."""
        return layout.owns(self.path, name)

    def foreign(self):
        """The paths at the names of charrnn's files that hold something charrnn did not write,
        which training must neither overwrite nor delete."""
        return layout.foreign(self.path)

    def check_not_foreign(self):
        """Raises RunDirError if any of charrnn's file names holds a file charrnn did not write."""
        found = self.foreign()
        if found:
            raise RunDirError(messages.not_charrnns(self.path, found))

    def how_to_train(self):
        return messages.how_to_train(self.path)

    def require_run(self):
        """Raises RunDirError unless the directory holds a run that can be sampled from."""
        if self.path.is_symlink() and not self.path.exists():
            raise RunDirError(
                f"run directory {self.path} is a symbolic link to {os.readlink(self.path)}, which does not exist; "
                "point it at a run directory, or give another --run-dir"
            )
        if self.path.exists() and not self.path.is_dir():
            raise RunDirError(f"{self.path} is a file, not a run directory; give the directory that charrnn train wrote")
        if not self.path.is_dir():
            raise RunDirError(f"no run directory at {self.path}; {self.how_to_train()}")
        if not self.has_run():
            raise RunDirError(f"{self.path} holds no run; {self.how_to_train()}")
        for name in (SETTINGS, VOCAB, CHECKPOINT):
            if not self.file(name).exists():
                raise RunDirError(messages.missing(self.path, name))

    def weights_unfit(self, reason):
        """The error for weights that do not fit the run's settings."""
        return RunDirError(messages.weights_unfit(self.path, reason))

    # --- a new run beside an old one (--force), the lock, leftovers -----------------------------

    def staged(self):
        """A RunDir inside this one to build a new run in while the old one stays (train --force);
        `adopt` moves it into place. Call with the lock held."""
        staged = RunDir(staging.staged_path(self.path), read_only=not self.writes, staged_for=self.path)
        if self.writes:
            staging.prepare(staged.path, self.path)
        return staged

    def adopt(self, staged):
        """Replaces the run in this directory with the one built in `staged` (see `staged`), which
        has saved its first checkpoint: the old run's files (charrnn's own only) go, the new ones
        move in by renames, the settings last. Returns self."""
        if self.writes:
            staging.adopt(self.path, staged.path)
        return self

    def lock(self):
        """Takes the directory for this process (creating it); refuses if another live process
        holds it. Removes what saves cut short by a killed process left behind. Returns the pid
        of the process whose stale lock was taken over, or None (always, for a read-only run)."""
        if not self.writes:
            return None
        try:
            stale = self._lock.acquire()
        except OSError as e:
            raise RunDirError(messages.write_error(self.file(LOCK), e)) from None
        self.remove_temporaries()
        return stale

    def unlock(self):
        if self.writes:
            self._lock.release()

    def remove_temporaries(self):
        """Removes what a killed training left: temporary files of saves cut short, and a new run
        it was building beside an old one (train --force)."""
        if self.writes:
            staging.remove_temporaries(self.path)

    def remove_staged(self):
        """Deletes a new run built by `staged` that was not adopted: only charrnn's files in it."""
        if self.writes:
            staging.remove_staged(self.path)

    def remove_if_empty(self):
        """Deletes the directory, if it holds nothing but the lock and an encoded corpus."""
        if self.writes:
            staging.remove_if_empty(self.path)
