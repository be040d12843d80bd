"""The file plumbing of an export: checking the destination and the vocabulary file beside it,
staging next to it, writing, moving into place, and keeping TensorFlow's failures and noise to one
line."""

import contextlib
import fcntl
import json
import os
import re
import shutil
import sys
import tempfile
import warnings
from pathlib import Path

from charrnn import cells
from charrnn.backend import verbose
from charrnn.errors import ExportError, UsageError


def vocab_path_for(output):
    """The vocabulary file written beside a tflite or keras export: model.tflite -> model.vocab.json."""
    output = Path(output)
    return output.with_name(output.stem + ".vocab.json")


# The longest file name most file systems take, in bytes.
NAME_MAX = 255
# What a SavedModel directory holds; --force replaces only a directory with nothing else in it.
SAVEDMODEL_ENTRIES = {"saved_model.pb", "saved_model.pbtxt", "variables", "assets", "assets.extra", "fingerprint.pb", "keras_metadata.pb"}
# The file name endings that say which format an export is.
SUFFIXES = {".keras": "keras", ".tflite": "tflite"}
# Leftovers of an export that was killed, as `staging` and `move_into_place` name them.
_STAGING_NAME = re.compile(r"\..+\.export-(\d+)-\w+")
_OLD_NAME = re.compile(r"\.(.+)\.old-(\d+)")


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
    if output.name.endswith(".vocab.json"):
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


def check_sidecar(run, output, force):
    """The vocabulary file's Path for `output`. Raises ExportError if it is a directory, or if it
    exists with other content and either another export beside it (STEM.tflite, STEM.keras: not
    `output` itself) depends on it, whatever `force` says, or `force` is not given."""
    path = vocab_path_for(output)
    if path.is_dir():
        raise ExportError(f"{path} is a directory; choose another --output")
    if not path.exists():
        return path
    try:
        old = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        old = None
    if old == sidecar_text(run):
        return path
    # What the exports that use it read: a rewrite that keeps these changes nothing for them.
    others = [] if force and _essentials(old) == _essentials(sidecar_text(run)) else dependents(path, output)
    if others:
        raise ExportError(
            f"{path} is the vocabulary file of {others[0]}, an export of another run; --force never changes another export's files, "
            f"so choose another --output name, or remove {others[0]} and {path.name} first"
        )
    if not force:
        raise ExportError(f"{path} already exists (from another export); pass --force to replace it, or choose another --output")
    return path


def _essentials(text):
    """(index_to_char, state_size, state_layout) of a vocabulary file's text, or None if it has none."""
    try:
        data = json.loads(text)
        return data["index_to_char"], data["state_size"], data["state_layout"]
    except (TypeError, ValueError, KeyError):
        return None


def dependents(vocab_path, output):
    """The exports beside `vocab_path` other than `output` whose vocabulary file it is: files named
    STEM or STEM.EXT that are TFLite flatbuffers or .keras archives."""
    stem = vocab_path.name[: -len(".vocab.json")]
    try:
        siblings = sorted(vocab_path.parent.iterdir())
    except OSError:
        return []
    return [p for p in siblings if p.name != output.name and p.name != vocab_path.name and Path(p.name).stem == stem and _is_export_file(p)]


def _is_export_file(path):
    """True if `path` is a file that begins as a TFLite flatbuffer or (named .keras) a zip archive does."""
    try:
        with open(path, "rb") as f:
            head = f.read(8)
    except OSError:
        return False
    return head[4:8] == b"TFL3" or (head[:4] == b"PK\x03\x04" and path.name.endswith(".keras"))


def read_sidecar(path):
    """(index_to_char, state_size) from the vocabulary file at `path`; raises ExportError if it cannot be read."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
        return data["index_to_char"], data["state_size"]
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise ExportError(f"could not read back {path}: {e}; check the directory's permissions and free space") from None


def sidecar_text(run):
    """The vocabulary file of tflite and keras exports, as text: the run's vocab.json fields plus
    the state's size and layout."""
    vocab, cfg = run.vocab, run.cfg
    data = {
        "vocab_size": vocab.vocab_size,
        "index_to_char": vocab.index_to_char,
        "state_size": cells.state_size(cfg),
        "state_layout": cells.state_layout(cfg),  # each `units` numbers wide, in this order
        "model": cfg.model,
        "layers": cfg.layers,
        "units": cfg.units,
    }
    if vocab.counts is not None:
        data["counts"] = vocab.counts
    return json.dumps(data, ensure_ascii=False, indent=1) + "\n"


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
        remove_leftovers(parent)
        path = Path(tempfile.mkdtemp(prefix=f".{output.name[:100]}.export-{os.getpid()}-", dir=parent))
    except OSError as e:
        raise ExportError(f"cannot write to {parent}: {e.strerror or e}; choose another --output") from None
    lock = _lock(path)
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
            old = output.with_name(f".{output.name}.old-{os.getpid()}")
            lock = None if output.is_symlink() else _lock(output)
            try:
                os.rename(output, old)
                os.rename(built, output)
                _remove(old)
            finally:
                if lock is not None:
                    os.close(lock)
        else:
            os.replace(built, output)
    except OSError as e:
        raise ExportError(f"could not write {output}: {e.strerror or e}; check the directory's permissions") from None


def remove_leftovers(parent):
    """Removes what exports killed midway left in `parent`: their staging directories, and the
    SavedModels (or links to one) they had moved aside, which go back to their name if nothing has
    taken it since. What a running export uses is left alone."""
    try:
        entries = sorted(parent.iterdir())
    except OSError:
        return
    for path in entries:
        staged, old = _STAGING_NAME.fullmatch(path.name), _OLD_NAME.fullmatch(path.name)
        if staged and path.is_dir() and not path.is_symlink() and _abandoned(path, int(staged[1])):
            shutil.rmtree(path, ignore_errors=True)
        elif old and (path / "saved_model.pb").is_file() and _abandoned(path, int(old[2])):
            original = parent / old[1]
            try:
                if original.exists() or original.is_symlink():
                    _remove(path)
                else:
                    os.rename(path, original)
            except OSError:
                pass  # left for the next time


def _abandoned(path, pid):
    """True if the process `pid` that named `path` is not running and no process holds its lock."""
    if pid == os.getpid():
        return False
    try:
        os.kill(pid, 0)
        return False
    except ProcessLookupError:
        pass
    except (OSError, OverflowError, ValueError):
        return False  # someone else's process, or no way to tell: keep it
    if path.is_symlink():
        return True
    fd = _lock(path)
    if fd is None:
        return False
    os.close(fd)
    return True


def _lock(path):
    """An open descriptor of the directory `path` holding an exclusive flock on it, or None if
    another process holds one or the file system cannot lock."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
    except OSError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return fd
    except OSError:
        os.close(fd)
        return None


def _remove(path):
    """Removes a symbolic link (never what it points to), or a directory with everything in it."""
    if path.is_symlink():
        path.unlink()
    else:
        shutil.rmtree(path, ignore_errors=True)


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
