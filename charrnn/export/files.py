"""The file plumbing of an export: checking the destination, staging next to it, writing, moving
into place, and keeping TensorFlow's failures and noise to one line. The vocabulary file beside an
export is sidecar.py's; what a killed export leaves behind, leftovers.py's."""

import contextlib
import os
import shutil
import sys
import tempfile
import warnings
from pathlib import Path

from charrnn.backend import verbose
from charrnn.errors import ExportError, UsageError
from charrnn.export import leftovers
from charrnn.export.sidecar import SUFFIX, sidecar_text, vocab_path_for


# The longest file name most file systems take, in bytes.
NAME_MAX = 255
# What a SavedModel directory holds; --force replaces only a directory with nothing else in it.
SAVEDMODEL_ENTRIES = {"saved_model.pb", "saved_model.pbtxt", "variables", "assets", "assets.extra", "fingerprint.pb", "keras_metadata.pb"}
# The file name endings that say which format an export is.
SUFFIXES = {".keras": "keras", ".tflite": "tflite", ".html": "web", ".htm": "web", ".js": "web"}
@contextlib.contextmanager
def checking(output):
    """Turns an OSError while the destination is checked (a directory on the way that this user
    may not enter) into one ExportError line."""
    try:
        yield
    except OSError as e:
        where = f"{e.filename}: " if e.filename else ""
        raise ExportError(f"cannot check --output {output}: {where}{e.strerror or e}; choose another --output") from None


def check_output(output, force, directory):
    """Returns `output` as a Path after checking it may be written (as a directory if `directory`,
    else a file) and that the directory it goes in can take it; raises ExportError or UsageError if
    not. With `force`, an existing symbolic link is itself replaced, never what it points to."""
    output = Path(output)
    if output.name in ("", ".", ".."):
        raise UsageError(f"--output must name a file or directory to create. Received: {output}")
    if output.name.endswith(SUFFIX):
        raise UsageError(f"--output must not end in .vocab.json, the name of the vocabulary files beside exports. Received: {output}")
    for name in (output.name, vocab_path_for(output).name):
        if len(os.fsencode(name)) > NAME_MAX:
            raise UsageError(f"--output's file names must be at most {NAME_MAX} bytes; {name[:40]}... is {len(os.fsencode(name))}. Choose a shorter --output")
    check_parent(output.parent)
    if output.is_symlink() and not output.exists():
        if not force:
            raise ExportError(f"{output} is a symbolic link to {os.readlink(output)}, which does not exist; pass --force to replace the link, or choose another --output")
    elif output.exists():
        if not force:
            raise ExportError(f"{output} already exists; pass --force to replace it, or choose another --output")
        if directory:
            _check_replaceable_savedmodel(output)
        elif output.is_dir():
            raise ExportError(f"{output} is a directory; choose a file name for --output")
    return output


def check_suffix(output, format):
    """Raises UsageError if `output` ends as another format's exports do (model.keras for tflite)."""
    suffix = Path(output).suffix
    claimed = SUFFIXES.get(suffix)
    if claimed is not None and claimed != format:
        raise UsageError(f"--output {output} ends in {suffix}, the {claimed} format's; choose another name for a {format} export, or pass --format {claimed}")


def check_outside_run(run_dir, paths):
    """Raises UsageError if one of `paths` is the run directory or a file of it (settings.json,
    best.npz, ...): an export must never replace the run it comes from."""
    from charrnn import rundir

    run = Path(run_dir).resolve()
    own = {*rundir.WRITTEN, rundir.LOCK, rundir.TENSORBOARD}
    for path in paths:
        # Only the directory is resolved: a symbolic link at `path` is replaced, not followed.
        where = path.parent.resolve() / path.name
        if where == run or (where.parent == run and path.name in own):
            raise UsageError(f"--output must not be the run directory or one of its files; {path} is. Choose another --output")


def check_parent(parent):
    """Raises ExportError unless `parent` is, or can be made as, a directory this process may write in."""
    # The nearest part of the path that exists must be a directory (not a file or a dangling link).
    existing = parent
    while not existing.exists():
        if existing.is_symlink():
            raise ExportError(f"{existing} is a symbolic link to {os.readlink(existing)}, which does not exist; fix the link or choose another --output")
        if existing.parent == existing:
            break
        existing = existing.parent
    if existing.exists() and not existing.is_dir():
        raise ExportError(f"{existing} is not a directory; choose another --output")
    if existing.exists() and not os.access(existing, os.W_OK | os.X_OK):
        raise ExportError(f"cannot write in {existing}: permission denied (or a read-only file system); choose another --output")


def _check_replaceable_savedmodel(output):
    """Raises ExportError unless `output` (or what the link `output` points to) is an empty
    directory or a SavedModel with nothing of anyone else's in it."""
    shown = f"{output} (a link to {os.readlink(output)})" if output.is_symlink() else str(output)
    if not output.is_dir():
        raise ExportError(f"{shown} exists and is not a SavedModel; --force replaces only a SavedModel, so choose another --output")
    try:
        entries = {p.name for p in output.iterdir()}
    except OSError as e:
        raise ExportError(f"cannot read {shown}: {e.strerror or e}; choose another --output") from None
    if entries and "saved_model.pb" not in entries:
        raise ExportError(f"{shown} exists and is not a SavedModel; --force replaces only a SavedModel, so choose another --output")
    others = sorted(entries - SAVEDMODEL_ENTRIES)
    if others and not output.is_symlink():
        raise ExportError(
            f"{output} holds files that are not part of a SavedModel ({', '.join(others[:3])}); --force would delete them, "
            "so move them out or choose another --output"
        )


def stage_sidecar(run, path, staging):
    """Writes the vocabulary file for `path` in `staging`; returns where it is, to be moved into place."""
    built = staging / path.name
    write_file(built, sidecar_text(run).encode())
    return built


def write_file(path, data):
    """Writes the bytes `data` to `path` and syncs them to disk; raises ExportError on failure."""
    try:
        with open(path, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
    except OSError as e:
        raise ExportError(f"could not write {path}: {e.strerror or e}; check the directory's permissions and free space") from None


@contextlib.contextmanager
def staging(output):
    """Yields a temporary directory (a Path) next to `output`: the same file system, so a rename
    moves the export in place. Its name carries this process's id and it is locked while in use, so
    that the next export can tell it from a running export's if this one is killed. Removed
    afterwards with whatever is left in it; leftovers of killed exports beside it go first."""
    parent = output.parent
    check_parent(parent)
    try:
        parent.mkdir(parents=True, exist_ok=True)
        leftovers.remove_leftovers(parent)
        path = Path(tempfile.mkdtemp(prefix=leftovers.staging_prefix(output), dir=parent))
    except OSError as e:
        raise ExportError(f"cannot write to {parent}: {e.strerror or e}; choose another --output") from None
    lock = leftovers.lock(path)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)
        if lock is not None:
            os.close(lock)


def move_into_place(built, output):
    """Renames `built` to `output`; an existing output is replaced (the caller checked --force). A
    symbolic link at `output` is replaced itself: what it points to is left as it is."""
    try:
        if built.is_dir() and (output.exists() or output.is_symlink()):
            # A directory cannot be swapped in one rename: move the old one (or the link) aside
            # first. If this process is killed in between, the next export puts it back.
            old = leftovers.aside(output)
            lock = None if output.is_symlink() else leftovers.lock(output)
            try:
                os.rename(output, old)
                os.rename(built, output)
                leftovers.remove(old)
            finally:
                if lock is not None:
                    os.close(lock)
        else:
            os.replace(built, output)
    except OSError as e:
        raise ExportError(f"could not write {output}: {e.strerror or e}; check the directory's permissions") from None


def size(path):
    """The size in bytes of a file, or of all the files under a directory."""
    path = Path(path)
    if path.is_dir():
        return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
    return path.stat().st_size


def tf_call(fn, what):
    """Returns fn(), a TensorFlow save or convert step; its failure becomes one ExportError line,
    "could not {what}: ..."."""
    try:
        return fn()
    except OSError as e:
        raise ExportError(f"could not {what}: {e.strerror or e}; check the output directory's permissions and free space") from None
    except Exception as e:  # TensorFlow raises many types here; show the first line of its message
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ExportError(f"could not {what}: {first}") from e


@contextlib.contextmanager
def quiet():
    """Hides the TFLite interpreter's deprecation warning and its C++ notices on stderr (file
    descriptor 2), unless CHARRNN_VERBOSE is set."""
    if verbose():
        yield
        return
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "w") as devnull, warnings.catch_warnings():
            warnings.simplefilter("ignore")
            os.dup2(devnull.fileno(), 2)
            yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
