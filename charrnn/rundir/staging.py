"""A new run built beside an old one (train --force) and moved into place once it has saved its
first checkpoint; and clearing what a killed training left behind. Only charrnn's own files are
ever deleted (layout.owns)."""

import contextlib
import os
import shutil

from charrnn.errors import RunDirError
from charrnn.rundir import atomic, messages
from charrnn.rundir.layout import (
    BEST,
    CHECKPOINT,
    CORPUS,
    LOCK,
    METRICS,
    SETTINGS,
    STAGED,
    TENSORBOARD,
    VOCAB,
    WRITTEN,
    is_empty_file,
    only_event_files,
    owns,
)


def staged_path(directory):
    """Where this process builds a new run inside `directory`."""
    return directory / f"{STAGED}{os.getpid()}"


def prepare(staged, replaces):
    """Creates the empty folder `staged` (removing one left there) for the new run that replaces
    the run in `replaces`."""
    shutil.rmtree(staged, ignore_errors=True)
    try:
        staged.mkdir()
    except OSError as e:
        raise RunDirError(messages.write_error(staged, e, kept=False, staged_for=replaces)) from None


def adopt(directory, staged):
    """Replaces the run in `directory` with the one built in the folder `staged`, which has saved
    its first checkpoint: the old run's files (charrnn's own only) go, the new ones move in by
    renames, the settings last."""
    tensorboard = directory / TENSORBOARD
    try:
        for name in (BEST, METRICS):
            if owns(directory, name) or is_empty_file(directory / name):
                (directory / name).unlink()
        if tensorboard.is_dir() and only_event_files(tensorboard):
            shutil.rmtree(tensorboard)
        for name in (CORPUS, VOCAB, CHECKPOINT, SETTINGS):
            if (staged / name).exists():
                os.replace(staged / name, directory / name)
            elif owns(directory, name):
                (directory / name).unlink()
        staged.rmdir()
    except OSError as e:
        raise RunDirError(messages.adopt_failed(directory, e)) from None
    atomic.fsync_dir(directory)


def remove_temporaries(directory):
    """Removes what a killed training left in `directory`: temporary files of saves cut short, and
    a new run it was building beside an old one (train --force)."""
    for name in WRITTEN:
        for temp in atomic.temporaries(directory, name):
            with contextlib.suppress(OSError):
                temp.unlink()
    for staged in directory.glob(f"{STAGED}*"):
        if staged.is_dir() and not staged.is_symlink() and staged.name[len(STAGED) :].isdigit():
            remove_staged(staged)


def remove_staged(staged):
    """Deletes a new run built in the folder `staged` that was not adopted (its training failed or
    was killed): only charrnn's files in it, then the folder."""
    for name in WRITTEN:
        if owns(staged, name) or is_empty_file(staged / name):
            with contextlib.suppress(OSError):
                (staged / name).unlink()
    for temp in atomic.temporaries(staged):
        with contextlib.suppress(OSError):
            temp.unlink()
    tensorboard = staged / TENSORBOARD
    if tensorboard.is_dir() and only_event_files(tensorboard):
        shutil.rmtree(tensorboard, ignore_errors=True)
    with contextlib.suppress(OSError):
        staged.rmdir()


def remove_if_empty(directory):
    """Deletes `directory` if it holds nothing but the lock and an encoded corpus."""
    with contextlib.suppress(OSError):
        if {p.name for p in directory.iterdir()} <= {LOCK, CORPUS}:
            (directory / CORPUS).unlink(missing_ok=True)
            (directory / LOCK).unlink(missing_ok=True)
            directory.rmdir()
