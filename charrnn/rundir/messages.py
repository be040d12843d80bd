"""Every message about a run directory's files: what went wrong, naming the file, and the fix.
Each function returns the sentence; the caller raises it (as a RunDirError)."""

import errno

from charrnn.rundir import layout

METRICS_FIX = "delete that line, or the file, to go on"


def how_to_train(directory):
    """The advice for a directory that holds no usable run: how to train one there."""
    if layout.has_run(directory):
        # train refuses a directory that holds (part of) a run unless told to start over.
        return f"train it again with: charrnn train CORPUS --force --run-dir {directory}"
    found = layout.foreign(directory) if directory.is_dir() else []
    if found:
        names = ", ".join(p.name for p in found)
        return f"its {names} {'is' if ',' not in names else 'are'} not charrnn's; train a run in another --run-dir"
    return f"train one with: charrnn train CORPUS --run-dir {directory}"


def missing(directory, name):
    return f"run directory {directory} is incomplete ({name} is missing); {how_to_train(directory)}"


def not_charrnns(directory, found):
    """The message for files at charrnn's names that charrnn did not write (layout.foreign)."""
    names = ", ".join(p.name for p in found)
    return (
        f"{directory} holds files charrnn did not write under the names it uses ({names}); "
        "charrnn will not overwrite or delete them (not even with --force): move them away, or use another --run-dir"
    )


def write_error(path, error, kept=True, resumable=True, staged_for=None):
    """The message for an OSError writing `path`: whether the previous version is `kept`, whether
    the run is `resumable`, and, for a new run built beside an old one, the run it leaves alone."""
    reason = error.strerror or str(error)
    kept = "the previous version is intact" if kept else "no partial file was left"
    if error.errno == errno.ENOSPC:
        hint = "free some disk space"
    elif error.errno in (errno.EROFS, errno.EACCES, errno.EPERM):
        hint = "make the run directory writable"
    else:
        hint = "check the run directory"
    if staged_for is not None:
        return f"could not write {path}: {reason}; the run in {staged_for} is untouched; {hint}, then run the same command again"
    if not resumable:
        return f"could not write {path}: {reason}; {kept}; nothing is saved yet to resume from: {hint}, then run the same command again"
    return f"could not write {path}: {reason}; {kept}; {hint}, then resume with --resume"


def adopt_failed(directory, error):
    return (
        f"could not move the new run into {directory}: {error.strerror or error}; the old run may be partly replaced: "
        f"start the training again with --force"
    )


def corrupt(path, reason, fix=None):
    return f"{path} is corrupt or truncated ({reason}); {fix or 'retrain the run, or restore the file from a backup'}"


def reason(error):
    """One line about what went wrong while reading a file."""
    text = " ".join(str(error).split()) or type(error).__name__
    return text if len(text) <= 120 else text[:117] + "..."


def unreadable(path, error):
    """The message for a run file that cannot be read for a reason other than what it holds: an
    OSError, or a sentence saying what is in the file's place."""
    if isinstance(error, str):
        return f"cannot read {path}: {error}; put the run's file back in its place, or retrain the run"
    if error.errno in (errno.EACCES, errno.EPERM):
        return f"cannot read {path}: permission denied; fix its permissions"
    return f"cannot read {path}: {error.strerror or reason(error)}; check the file and the disk it is on"


def unfit(path, why):
    """The message for a run file whose arrays do not fit the run's settings."""
    return f"{path} does not fit the run's settings ({why}); retrain the run"


def weights_unfit(directory, why):
    return f"the weights in {directory} do not fit the run's settings ({why}); retrain the run"


def vocab_unfit(path):
    return f"{path} does not match the run's settings (vocabulary size); retrain the run"


def read_back(path):
    return f"{path} could not be read back after writing it; check the run directory"


def no_length(path, fix):
    """The message for settings that do not record the corpus's length."""
    return f"{path} does not say how long the corpus is; {fix}"


def no_validation_text(path, where, fix):
    """The message for a run whose encoded corpus (`path`) is gone and whose corpus files cannot be
    read again (`where` says why)."""
    return f"the run's validation text cannot be found: {path} is missing and {where}; {fix}"
