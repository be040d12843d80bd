"""The run directory: the only module that knows the files inside it and words their errors.

    settings.json     model and training settings, corpus facts, library versions (Settings)
    vocab.json        the characters in index order, with their corpus counts (Vocab)
    checkpoint.npz    latest weights, optimizer variables and training state (Checkpoint)
    best.npz          the weights with the best validation loss so far (Best): what `sample` uses
    metrics.jsonl     one JSON object per evaluation
    corpus.npy        the training text, encoded: one index per character (a .npy array that
                      training reads a window at a time, so that a corpus need not fit in memory)
    lock              the process id of the training that holds the directory (RunLock)

Every file is replaced atomically (written to a temporary file, flushed, fsynced, renamed), so a
kill at any instant leaves the old or the new version, never a torn one. Arrays are stored as
.npz and loaded with allow_pickle=False: loading a run never executes code from it. Every read
checks what it reads and returns it typed; anything wrong is a RunDirError naming the file.
"""

import contextlib
import dataclasses
import errno
import io
import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import numpy as np

from charrnn.config import ModelConfig, TrainConfig, from_dict
from charrnn.errors import CharRNNError, RunDirError
from charrnn.lock import RunLock
from charrnn.state import TrainState

SETTINGS = "settings.json"
VOCAB = "vocab.json"
CHECKPOINT = "checkpoint.npz"
BEST = "best.npz"
METRICS = "metrics.jsonl"
CORPUS = "corpus.npy"
TENSORBOARD = "tensorboard"  # a folder of TensorBoard event files
LOCK = "lock"
RUN_FILES = (SETTINGS, VOCAB, CHECKPOINT, BEST, METRICS)  # any of them makes the directory a run
WRITTEN = (*RUN_FILES, CORPUS)  # every file training writes, but the lock


@dataclass
class Settings:
    """settings.json: what the run is."""

    model: ModelConfig
    train: TrainConfig
    corpus: dict  # files (each path, bytes, sha256), chars, train_chars, val_chars, vocab_size
    versions: dict  # library versions that trained it
    parameters: int | None  # trainable parameters
    # How the latest session ran: strategy, replicas, workers, kernel (it may change on resume).
    spread: dict = dataclasses.field(default_factory=dict)

    def to_dict(self):
        return {
            "model": dataclasses.asdict(self.model),
            "train": dataclasses.asdict(self.train),
            "corpus": self.corpus,
            "versions": self.versions,
            "parameters": self.parameters,
            "spread": self.spread,
        }


class Checkpoint(NamedTuple):
    """checkpoint.npz: what an exact resume needs."""

    weights: dict  # {name: array}, names as in charrnn/cells.py
    optimizer: list  # the optimizer's variables, in its order
    state: TrainState
    carry: np.ndarray | None = None  # the carried state (batch, layers * states per layer, units), with --state carry


@dataclass
class Best:
    """What best.npz records beside its weights."""

    step: int
    val_loss: float
    chars_seen: int | None = None


class RunDir:
    def __init__(self, path):
        self.path = Path(path)
        self._lock = RunLock(self.path / LOCK)

    def file(self, name):
        return self.path / name

    def has_run(self):
        """Whether the directory holds (part of) a run."""
        return any(self.file(name).exists() for name in RUN_FILES)

    def has_best(self):
        return self.file(BEST).exists()

    def how_to_train(self):
        if self.has_run():
            # train refuses a directory that holds (part of) a run unless told to start over.
            return f"train it again with: charrnn train CORPUS --force --run-dir {self.path}"
        return f"train one with: charrnn train CORPUS --run-dir {self.path}"

    def require_run(self):
        """Raises RunDirError unless the directory holds a run that can be sampled from."""
        if not self.path.is_dir():
            raise RunDirError(f"no run directory at {self.path}; {self.how_to_train()}")
        if not self.has_run():
            raise RunDirError(f"{self.path} holds no run; {self.how_to_train()}")
        for name in (SETTINGS, VOCAB, CHECKPOINT):
            if not self.file(name).exists():
                raise RunDirError(self._missing(name))

    # --- errors about what the files hold ---------------------------------------------------------

    def _missing(self, name):
        return f"run directory {self.path} is incomplete ({name} is missing); {self.how_to_train()}"

    def weights_unfit(self, reason):
        """The error for weights that do not fit the run's settings."""
        return RunDirError(f"the weights in {self.path} do not fit the run's settings ({reason}); retrain the run")

    def checkpoint_unfit(self, reason):
        """The error for a checkpoint whose weights or optimizer state do not fit the run's settings."""
        return RunDirError(f"{self.file(CHECKPOINT)} does not fit the run's settings ({reason}); retrain the run")

    # --- writing --------------------------------------------------------------------------------

    def write_atomic(self, name, data):
        """Replaces file `name` with `data` (bytes): the old or the new content survives any crash."""
        self._replace(name, lambda f: f.write(data))

    def _replace(self, name, write):
        """Replaces file `name` with what `write(f)` writes into a temporary file, flushed and
        fsynced before the rename. A temporary file left by a failure is removed; an OSError is a
        RunDirError that says the previous version is intact."""
        target = self.file(name)
        try:
            replace_file(target, write)
        except OSError as e:
            raise RunDirError(_write_error(target, e, kept=target.exists())) from None

    def _write_json(self, name, data):
        self.write_atomic(name, (json.dumps(data, indent=2, ensure_ascii=False) + "\n").encode())

    def write_settings(self, settings):
        self._write_json(SETTINGS, settings.to_dict())

    def write_vocab(self, vocab):
        self.write_atomic(VOCAB, vocab.to_json().encode())

    def save_checkpoint(self, weights, optimizer_variables, state, carry=None):
        """Saves what an exact resume needs in one file: weights, optimizer variables, TrainState,
        and the carried state if there is one."""
        arrays = {f"weights/{k}": v for k, v in weights.items()}
        arrays.update({f"optimizer/{i:04d}": v for i, v in enumerate(optimizer_variables)})
        if carry is not None:
            arrays["carry"] = carry
        arrays["state"] = np.array(json.dumps(state.to_dict()))
        self.write_atomic(CHECKPOINT, _npz_bytes(arrays))

    def save_best(self, weights, best):
        arrays = {f"weights/{k}": v for k, v in weights.items()}
        arrays["state"] = np.array(json.dumps(dataclasses.asdict(best)))
        self.write_atomic(BEST, _npz_bytes(arrays))

    def append_metrics(self, row):
        """Appends one JSON line with a single write, so a kill cannot leave half a line behind."""
        line = (json.dumps(row) + "\n").encode()
        try:
            fd = os.open(self.file(METRICS), os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
            try:
                size = os.fstat(fd).st_size
                written = os.write(fd, line)
                if written != len(line):
                    # A short write (a full disk): take the partial line back rather than leave it.
                    os.ftruncate(fd, size)
                    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
                os.fsync(fd)
            finally:
                os.close(fd)
        except OSError as e:
            raise RunDirError(_write_error(self.file(METRICS), e)) from None

    def trim_metrics(self, last_step):
        """Keeps the metric rows up to `last_step` (a resume redoes the steps after it) and drops a
        torn last line."""
        rows = [row for row in self.read_metrics() if row["step"] <= last_step]
        self.write_atomic(METRICS, "".join(json.dumps(row) + "\n" for row in rows).encode())

    def write_corpus(self, num_chars, dtype, chunks):
        """Writes corpus.npy atomically from `chunks` (arrays of `dtype`, `num_chars` in all) and
        returns it as a charrnn.data.DiskText. Written with plain writes, not through a memory map,
        so that a full disk is an error rather than a crash."""

        def write(f):
            header = {"descr": np.lib.format.dtype_to_descr(np.dtype(dtype)), "fortran_order": False, "shape": (num_chars,)}
            np.lib.format.write_array_header_2_0(f, header)
            for chunk in chunks:
                f.write(np.ascontiguousarray(chunk, dtype=dtype).tobytes())

        self._replace(CORPUS, write)
        corpus = self.read_corpus(num_chars, dtype)
        if corpus is None:
            raise RunDirError(f"{self.file(CORPUS)} could not be read back after writing it; check the run directory")
        return corpus

    def read_corpus(self, num_chars, dtype):
        """corpus.npy as a charrnn.data.DiskText (read where needed, never whole), or None if it is
        missing or is not `num_chars` of `dtype` (then training encodes the text again)."""
        from charrnn.data import DiskText

        try:
            text = DiskText.open_npy(self.file(CORPUS))
        except (OSError, ValueError):
            return None
        if len(text) != num_chars or text.dtype != np.dtype(dtype):
            text.file.close()
            return None
        return text

    def clear(self):
        """Deletes the run's files (for --force), leaving anything else in the directory alone."""
        for name in WRITTEN:
            with contextlib.suppress(FileNotFoundError):
                self.file(name).unlink()
        shutil.rmtree(self.tensorboard_dir(), ignore_errors=True)

    def tensorboard_dir(self):
        """The folder of the run's TensorBoard event files (charrnn.train.tensorboard writes them)."""
        return self.file(TENSORBOARD)

    # --- reading --------------------------------------------------------------------------------

    def _read_json(self, name):
        path = self.file(name)
        try:
            return json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise RunDirError(self._missing(name)) from None
        except (OSError, UnicodeDecodeError, ValueError) as e:
            raise RunDirError(_corrupt(path, e)) from None

    def read_settings(self):
        """settings.json as Settings, its configs checked as the command line's are."""
        data = self._read_json(SETTINGS)
        path = self.file(SETTINGS)
        if not isinstance(data, dict) or not {"model", "train", "corpus"} <= data.keys():
            raise RunDirError(_corrupt(path, "model, train or corpus section missing"))
        corpus = data["corpus"]
        ok = (
            _fields_ok(ModelConfig, data["model"])
            and _fields_ok(TrainConfig, data["train"])
            and isinstance(corpus, dict)
            and isinstance(corpus.get("files"), list)
            and all(
                isinstance(f, dict)
                and isinstance(f.get("path"), str)
                and _is_int(f.get("bytes"))
                and isinstance(f.get("sha256"), str)
                for f in corpus["files"]
            )
        )
        if not ok:
            raise RunDirError(_corrupt(path, "a section has the wrong form"))
        # Runs from before `--state` trained every window from a zero state.
        train_data = {"state": "reset", **data["train"]}
        try:
            model, train = from_dict(ModelConfig, data["model"]), from_dict(TrainConfig, train_data)
            model.validate()
            train.validate()
        except (TypeError, ValueError, CharRNNError) as e:
            raise RunDirError(_corrupt(path, e)) from None
        versions = data.get("versions") if isinstance(data.get("versions"), dict) else {}
        parameters = data.get("parameters") if _is_int(data.get("parameters")) else None
        spread = data.get("spread") if isinstance(data.get("spread"), dict) else {}
        return Settings(model, train, corpus, versions, parameters, spread)

    def read_vocab(self, vocab_size=None):
        """vocab.json as a Vocab; with `vocab_size`, it must have that many characters."""
        from charrnn.vocab import Vocab

        path = self.file(VOCAB)
        try:
            vocab = Vocab.from_json(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise RunDirError(self._missing(VOCAB)) from None
        except (OSError, UnicodeDecodeError, ValueError, KeyError, TypeError) as e:
            raise RunDirError(_corrupt(path, e)) from None
        if vocab_size is not None and vocab.vocab_size != vocab_size:
            raise RunDirError(f"{path} does not match the run's settings (vocabulary size); retrain the run")
        return vocab

    def load_checkpoint(self):
        """The latest checkpoint, whole, as a Checkpoint."""
        arrays, state = self._load_npz(CHECKPOINT)
        weights = {k[len("weights/") :]: v for k, v in arrays.items() if k.startswith("weights/")}
        optimizer = [arrays[k] for k in sorted(k for k in arrays if k.startswith("optimizer/"))]
        return Checkpoint(weights, optimizer, self._train_state(state), arrays.get("carry"))

    def read_checkpoint_state(self):
        """The latest checkpoint's TrainState, without reading its arrays."""
        with self._open_npz(CHECKPOINT) as npz:
            state = self._state(npz, CHECKPOINT)
        return self._train_state(state)

    def load_weights(self, which="best"):
        """The weights {name: array} of the best checkpoint (or of the latest, if no evaluation has
        happened yet, or if `which` is "latest")."""
        name = BEST if which == "best" and self.has_best() else CHECKPOINT
        arrays, _ = self._load_npz(name)
        return {k[len("weights/") :]: v for k, v in arrays.items() if k.startswith("weights/")}

    def read_best(self):
        """What best.npz records (Best), or None if there are no best weights yet. The weights are
        read too, so that a damaged file is reported now rather than when it is needed."""
        if not self.has_best():
            return None
        _, state = self._load_npz(BEST)
        step, val_loss, chars_seen = state.get("step"), state.get("val_loss"), state.get("chars_seen")
        if not (_is_int(step) and isinstance(val_loss, (int, float)) and not isinstance(val_loss, bool)):
            raise RunDirError(_corrupt(self.file(BEST), "its state lacks step or val_loss"))
        return Best(step, float(val_loss), chars_seen if _is_int(chars_seen) else None)

    def read_metrics(self):
        """The metric rows. A torn last line (a crash mid-write) is dropped; any other line that is
        not a JSON object with an integer step is an error naming the file and the line."""
        path = self.file(METRICS)
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return []
        except (OSError, UnicodeDecodeError) as e:
            raise RunDirError(_corrupt(path, e, _METRICS_FIX)) from None
        lines = text.split("\n")
        # A last line without its newline was cut short by a crash; nothing after it was lost.
        torn = lines.pop()
        rows = []
        for number, line in enumerate(lines, 1):
            try:
                row = json.loads(line)
            except ValueError:
                row = None
            if not (isinstance(row, dict) and _is_int(row.get("step"))):
                raise RunDirError(_corrupt(path, f"line {number} is not a metrics row", _METRICS_FIX))
            rows.append(row)
        if torn.strip():
            with contextlib.suppress(ValueError):
                row = json.loads(torn)
                if isinstance(row, dict) and _is_int(row.get("step")):
                    rows.append(row)
        return rows

    def _train_state(self, data):
        try:
            return TrainState.from_dict(data)
        except ValueError as e:
            raise RunDirError(_corrupt(self.file(CHECKPOINT), e)) from None

    def _open_npz(self, name):
        path = self.file(name)
        try:
            return np.load(path, allow_pickle=False)
        except FileNotFoundError:
            raise RunDirError(self._missing(name)) from None
        except Exception as e:  # noqa: BLE001 - whatever a damaged file makes NumPy or zipfile raise
            raise RunDirError(_corrupt(path, _reason(e))) from None

    def _state(self, npz, name):
        try:
            state = json.loads(str(npz["state"][()]))
        except Exception as e:  # noqa: BLE001
            raise RunDirError(_corrupt(self.file(name), _reason(e))) from None
        if not isinstance(state, dict):
            raise RunDirError(_corrupt(self.file(name), "state is not an object"))
        return state

    def _load_npz(self, name):
        """Returns ({key: float array}, state dict) of an .npz file; anything else in it is an error."""
        path = self.file(name)
        with self._open_npz(name) as npz:
            state = self._state(npz, name)
            try:
                arrays = {k: npz[k] for k in npz.files if k != "state"}
            except Exception as e:  # noqa: BLE001
                raise RunDirError(_corrupt(path, _reason(e))) from None
        for key, value in arrays.items():
            if not (isinstance(value, np.ndarray) and value.dtype.kind in "fiu"):
                raise RunDirError(_corrupt(path, f"{key} is not a numeric array"))
        return arrays, state

    # --- the lock -------------------------------------------------------------------------------

    def lock(self):
        """Takes the directory for this process (creating it); refuses if another live process
        holds it. Removes what saves cut short by a killed process left behind. Returns the pid
        of the process whose stale lock was taken over, or None."""
        try:
            stale = self._lock.acquire()
        except OSError as e:
            raise RunDirError(_write_error(self.file(LOCK), e)) from None
        self._remove_temporaries()
        return stale

    def unlock(self):
        self._lock.release()

    def _remove_temporaries(self):
        for name in WRITTEN:
            for temp in self.path.glob(f".{name}.tmp-*"):
                with contextlib.suppress(OSError):
                    temp.unlink()

    def remove_if_empty(self):
        """Deletes the directory, if it holds nothing but the lock and an encoded corpus."""
        with contextlib.suppress(OSError):
            if {p.name for p in self.path.iterdir()} <= {LOCK, CORPUS}:
                self.file(CORPUS).unlink(missing_ok=True)
                self.file(LOCK).unlink(missing_ok=True)
                self.path.rmdir()


def replace_file(path, write):
    """Replaces the file at `path` with what `write(f)` writes into a temporary file beside it,
    flushed and fsynced before the rename, so that a crash leaves the old or the new content. A
    temporary file left by a failure is removed; errors propagate."""
    path = Path(path)
    temp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        with open(temp, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(temp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            temp.unlink()
        raise
    _fsync_dir(path.parent)


def _npz_bytes(arrays):
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    return buffer.getvalue()


def _fsync_dir(path):
    """Makes a rename durable. Best effort: some file systems cannot fsync a directory, and the
    rename itself has already happened."""
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _is_int(value):
    return isinstance(value, int) and not isinstance(value, bool)


def _fields_ok(cls, section):
    """Whether a settings section is a dict whose known fields have their defaults' types."""
    if not isinstance(section, dict):
        return False
    for field in dataclasses.fields(cls):
        if field.name not in section:
            continue
        value, default = section[field.name], field.default
        if default is None and value is None:
            continue
        number = (int, float) if isinstance(default, float) or default is None else type(default)
        if not isinstance(value, number) or isinstance(value, bool) != isinstance(default, bool):
            return False
    return True


def _write_error(path, error, kept=True):
    reason = error.strerror or str(error)
    kept = "the previous version is intact" if kept else "no partial file was left"
    if error.errno == errno.ENOSPC:
        hint = "free some disk space"
    elif error.errno in (errno.EROFS, errno.EACCES, errno.EPERM):
        hint = "make the run directory writable"
    else:
        hint = "check the run directory"
    return f"could not write {path}: {reason}; {kept}; {hint}, then resume with --resume"


_METRICS_FIX = "delete that line, or the file, to go on"


def _corrupt(path, reason, fix="retrain the run, or restore the file from a backup"):
    return f"{path} is corrupt or truncated ({reason}); {fix}"


def _reason(error):
    """One line about what went wrong while reading a file."""
    text = " ".join(str(error).split()) or type(error).__name__
    return text if len(text) <= 120 else text[:117] + "..."
