"""The file plumbing of an export: checking the destination and the vocabulary file beside it,
staging next to it, writing, moving into place, and keeping TensorFlow's failures and noise to one
line."""

import contextlib
import json
import os
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


def check_output(output, force, directory):
    """Returns `output` as a Path after checking it may be written (as a directory if `directory`,
    else a file); raises ExportError or UsageError if not."""
    output = Path(output)
    if output.name in ("", ".", ".."):
        raise UsageError(f"--output must name a file or directory to create. Received: {output}")
    if output.exists() or output.is_symlink():
        if not force:
            raise ExportError(f"{output} already exists; pass --force to replace it, or choose another --output")
        if directory:
            replaceable = output.is_dir() and (not any(output.iterdir()) or (output / "saved_model.pb").exists())
            if not replaceable:
                raise ExportError(f"{output} exists and is not a SavedModel; --force replaces only a SavedModel, so choose another --output")
        elif output.is_dir():
            raise ExportError(f"{output} is a directory; choose a file name for --output")
    return output


def check_sidecar(run, output, force):
    """The vocabulary file's Path for `output`; raises ExportError if it exists with other content
    (unless `force`) or is a directory."""
    path = vocab_path_for(output)
    if path.exists() and not force:
        try:
            same = path.read_text(encoding="utf-8") == sidecar_text(run)
        except (OSError, UnicodeDecodeError):
            same = False
        if not same:
            raise ExportError(f"{path} already exists (from another export); pass --force to replace it, or choose another --output")
    if path.is_dir():
        raise ExportError(f"{path} is a directory; choose another --output")
    return path


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


def write_sidecar(run, path, staging):
    """Writes the vocabulary file in `staging`, then moves it to `path`."""
    built = staging / path.name
    write_file(built, sidecar_text(run).encode())
    move_into_place(built, path)


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
    moves the export in place. Removed afterwards with whatever is left in it."""
    parent = output.parent
    if parent.exists() and not parent.is_dir():
        raise ExportError(f"{parent} is not a directory; choose another --output")
    try:
        parent.mkdir(parents=True, exist_ok=True)
        path = Path(tempfile.mkdtemp(prefix=f".{output.name}.export-", dir=parent))
    except OSError as e:
        raise ExportError(f"cannot write to {parent}: {e.strerror or e}; choose another --output") from None
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def move_into_place(built, output):
    """Renames `built` to `output`; an existing output is replaced (the caller checked --force)."""
    try:
        if built.is_dir() and output.exists():
            # A directory cannot be swapped in one rename: move the old one aside first.
            old = output.with_name(f".{output.name}.old-{os.getpid()}")
            os.rename(output, old)
            os.rename(built, output)
            shutil.rmtree(old, ignore_errors=True)
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
