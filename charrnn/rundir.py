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
import math
import os
import re
import shutil
import stat
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import numpy as np

from charrnn import cells
from charrnn.checks import is_count, is_int, is_number, short
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
RUN_FILES = (SETTINGS, VOCAB, CHECKPOINT, BEST, METRICS)  # any of them, charrnn's own, makes the directory a run
WRITTEN = (*RUN_FILES, CORPUS)  # every file training writes, but the lock
# A new run that replaces an old one (--force) is built in a folder of this name inside the run
# directory, and moved into place only once it has saved its first checkpoint (RunDir.adopt).
STAGED = ".charrnn-new-"

# How each file charrnn writes begins, so that a file of the user's at one of these names is never
# taken for charrnn's (and neither deleted by --force nor overwritten). A file cut short still
# begins the same way, so a damaged run is still a run.
_SIGNATURES = {
    SETTINGS: (b'{\n  "model": {',),
    VOCAB: (b'{\n "vocab_size": ',),
    # A zip archive whose first member is one of charrnn's arrays.
    CHECKPOINT: (b"PK\x03\x04",),
    BEST: (b"PK\x03\x04",),
    METRICS: (b'{"step": ',),
    CORPUS: (b"\x93NUMPY",),
}
_NPZ_MEMBERS = (b"weights/", b"optimizer/", b"state.npy", b"carry.npy")


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
    def __init__(self, path, staged_for=None):
        self.path = Path(path)
        self._lock = RunLock(self.path / LOCK)
        # For a new run built beside an old one (see `staged`): the run directory it will replace.
        self.staged_for = staged_for

    def file(self, name):
        return self.path / name

    def has_run(self):
        """Whether the directory holds (part of) a run: a file of a run that charrnn wrote."""
        return any(self.owns(name) for name in RUN_FILES)

    def owns(self, name):
        """Whether the file `name` (one of WRITTEN) is there and recognisably charrnn's."""
        path = self.file(name)
        try:
            if path.is_symlink() or not path.is_file():
                return False
            with open(path, "rb") as f:
                head = f.read(64)
        except OSError:
            return False
        if not any(head.startswith(signature) for signature in _SIGNATURES[name]):
            return False
        if name in (CHECKPOINT, BEST):
            # The local header of the first member: its name starts at byte 30.
            return any(head[30:].startswith(member) for member in _NPZ_MEMBERS)
        return True

    def foreign(self):
        """The paths at the names of charrnn's files that hold something charrnn did not write (an
        empty file holds nothing to lose), which training must neither overwrite nor delete."""
        found = []
        for name in WRITTEN:
            path = self.file(name)
            if (path.exists() or path.is_symlink()) and not self.owns(name) and not _is_empty_file(path):
                found.append(path)
        tensorboard = self.tensorboard_dir()
        if tensorboard.is_symlink() or (tensorboard.exists() and not _only_event_files(tensorboard)):
            found.append(tensorboard)
        return found

    def check_not_foreign(self):
        """Raises RunDirError if any of charrnn's file names holds a file charrnn did not write."""
        found = self.foreign()
        if found:
            names = ", ".join(p.name for p in found)
            raise RunDirError(
                f"{self.path} holds files charrnn did not write under the names it uses ({names}); "
                "charrnn will not overwrite or delete them (not even with --force): move them away, or use another --run-dir"
            )

    def has_best(self):
        return self.file(BEST).exists()

    def how_to_train(self):
        if self.has_run():
            # train refuses a directory that holds (part of) a run unless told to start over.
            return f"train it again with: charrnn train CORPUS --force --run-dir {self.path}"
        foreign = self.foreign() if self.path.is_dir() else []
        if foreign:
            names = ", ".join(p.name for p in foreign)
            return f"its {names} {'is' if ',' not in names else 'are'} not charrnn's; train a run in another --run-dir"
        return f"train one with: charrnn train CORPUS --run-dir {self.path}"

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
                raise RunDirError(self._missing(name))

    # --- errors about what the files hold ---------------------------------------------------------

    def _missing(self, name):
        return f"run directory {self.path} is incomplete ({name} is missing); {self.how_to_train()}"

    def weights_unfit(self, reason):
        """The error for weights that do not fit the run's settings."""
        return RunDirError(f"the weights in {self.path} do not fit the run's settings ({reason}); retrain the run")

    def checkpoint_unfit(self, reason):
        """The error for a checkpoint whose weights or optimizer state do not fit the run's settings."""
        return self._unfit(CHECKPOINT, reason)

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
            # Until the first checkpoint is saved there is nothing to resume: training starts again.
            resumable = self.file(CHECKPOINT).exists() and self.file(SETTINGS).exists()
            raise RunDirError(_write_error(target, e, target.exists(), resumable, self.staged_for)) from None

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

    def staged(self):
        """A RunDir inside this one to build a new run in while the old one stays (train --force);
        `adopt` moves it into place. Call with the lock held."""
        staged = RunDir(self.path / f"{STAGED}{os.getpid()}", staged_for=self.path)
        shutil.rmtree(staged.path, ignore_errors=True)
        try:
            staged.path.mkdir()
        except OSError as e:
            raise RunDirError(_write_error(staged.path, e, kept=False, staged_for=self.path)) from None
        return staged

    def adopt(self, staged):
        """Replaces the run in this directory with the one built in `staged` (see `staged`), which
        has saved its first checkpoint: the old run's files (charrnn's own only) go, the new ones
        move in by renames, settings.json last. Returns self."""
        try:
            for name in (BEST, METRICS):
                if self.owns(name) or _is_empty_file(self.file(name)):
                    self.file(name).unlink()
            if self.tensorboard_dir().is_dir() and _only_event_files(self.tensorboard_dir()):
                shutil.rmtree(self.tensorboard_dir())
            for name in (CORPUS, VOCAB, CHECKPOINT, SETTINGS):
                if staged.file(name).exists():
                    os.replace(staged.file(name), self.file(name))
                elif self.owns(name):
                    self.file(name).unlink()
            staged.path.rmdir()
        except OSError as e:
            raise RunDirError(
                f"could not move the new run into {self.path}: {e.strerror or e}; the old run may be partly replaced: "
                f"start the training again with --force"
            ) from None
        _fsync_dir(self.path)
        return self

    def tensorboard_dir(self):
        """The folder of the run's TensorBoard event files (charrnn.train.tensorboard writes them)."""
        return self.file(TENSORBOARD)

    # --- reading --------------------------------------------------------------------------------

    # The most a run's JSON file may hold: far above what charrnn writes (a vocabulary of every
    # Unicode character with its counts is about 40 MB), so that a crafted file is refused unread.
    _MAX_JSON_BYTES = {SETTINGS: 16 << 20, VOCAB: 64 << 20}

    def _open_file(self, name, missing_ok=False):
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
            raise RunDirError(self._missing(name)) from None
        except OSError as e:
            raise RunDirError(_unreadable(path, e)) from None
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            os.close(fd)
            kind = "a directory" if stat.S_ISDIR(mode) else "a FIFO or device"
            raise RunDirError(_unreadable(path, f"it is {kind}, not a file"))
        return os.fdopen(fd, "rb")

    def _read_text(self, name, missing_ok=False, fix=None):
        """The UTF-8 text of run file `name` (None if missing and `missing_ok`); `fix` is the advice
        for a file that is not UTF-8."""
        path = self.file(name)
        f = self._open_file(name, missing_ok)
        if f is None:
            return None
        with f:
            limit = self._MAX_JSON_BYTES.get(name)
            size = os.fstat(f.fileno()).st_size
            if limit is not None and size > limit:
                raise RunDirError(_corrupt(path, f"{size:,} bytes, more than a run's {name} can hold ({limit:,})"))
            try:
                raw = f.read()
            except OSError as e:
                raise RunDirError(_unreadable(path, e)) from None
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError as e:
            raise RunDirError(_corrupt(path, e, fix)) from None

    def _read_json(self, name):
        path = self.file(name)
        text = self._read_text(name)
        try:
            return json.loads(text)
        except (ValueError, RecursionError) as e:
            raise RunDirError(_corrupt(path, _reason(e))) from None

    def read_settings(self):
        """settings.json as Settings, its configs checked as the command line's are, and its corpus
        facts, versions and spread checked for the types that readers print and sum."""
        data = self._read_json(SETTINGS)
        path = self.file(SETTINGS)
        if not isinstance(data, dict) or not {"model", "train", "corpus"} <= data.keys():
            raise RunDirError(_corrupt(path, "model, train or corpus section missing"))
        if not (_fields_ok(ModelConfig, data["model"]) and _fields_ok(TrainConfig, data["train"])):
            raise RunDirError(_corrupt(path, "a section has the wrong form"))
        problem = _corpus_problem(data["corpus"]) or _extras_problem(data)
        if problem:
            raise RunDirError(_corrupt(path, problem))
        # Runs from before `--state` trained every window from a zero state.
        train_data = {"state": "reset", **data["train"]}
        try:
            model, train = from_dict(ModelConfig, data["model"]), from_dict(TrainConfig, train_data)
            model.validate()
            train.validate()
        except (TypeError, ValueError, CharRNNError) as e:
            raise RunDirError(_corrupt(path, e)) from None
        versions = data.get("versions") if isinstance(data.get("versions"), dict) else {}
        parameters = data.get("parameters") if is_count(data.get("parameters")) else None
        spread = data.get("spread") if isinstance(data.get("spread"), dict) else {}
        return Settings(model, train, data["corpus"], versions, parameters, spread)

    def read_vocab(self, vocab_size=None):
        """vocab.json as a Vocab; with `vocab_size`, it must have that many characters."""
        from charrnn.vocab import Vocab

        path = self.file(VOCAB)
        text = self._read_text(VOCAB)
        try:
            vocab = Vocab.from_json(text)
        except (ValueError, KeyError, TypeError, RecursionError) as e:
            raise RunDirError(_corrupt(path, _reason(e))) from None
        if vocab_size is not None and vocab.vocab_size != vocab_size:
            raise RunDirError(f"{path} does not match the run's settings (vocabulary size); retrain the run")
        return vocab

    def load_checkpoint(self, settings=None):
        """The latest checkpoint, whole, as a Checkpoint; every array checked against what the
        settings (read if not given) imply before it is read."""
        arrays, state = self._load_npz(CHECKPOINT, settings)
        weights = {k[len("weights/") :]: v for k, v in arrays.items() if k.startswith("weights/")}
        optimizer = [arrays[k] for k in sorted(k for k in arrays if k.startswith("optimizer/"))]
        return Checkpoint(weights, optimizer, self._train_state(state), arrays.get("carry"))

    def read_checkpoint_state(self):
        """The latest checkpoint's TrainState, without reading its arrays."""
        _, state = self._load_npz(CHECKPOINT, members="state")
        return self._train_state(state)

    def load_weights(self, which="best", settings=None):
        """The weights {name: array} of the best checkpoint (or of the latest, if no evaluation has
        happened yet, or if `which` is "latest"), each of the shape the settings imply."""
        name = BEST if which == "best" and self.has_best() else CHECKPOINT
        arrays, state = self._load_npz(name, settings, members="weights")
        # The state is checked too, though unused here: a damaged file is reported by every reader.
        if name == BEST:
            self._best(state)
        else:
            self._train_state(state)
        return {k[len("weights/") :]: v for k, v in arrays.items()}

    def read_best(self, settings=None):
        """What best.npz records (Best), or None if there are no best weights yet. The weights are
        read too, so that a damaged file is reported now rather than when it is needed."""
        if not self.has_best():
            return None
        _, state = self._load_npz(BEST, settings)
        return self._best(state)

    def _best(self, state):
        """The Best of best.npz's state dict; RunDirError naming the first field that is invalid."""
        step, val_loss, chars_seen = state.get("step"), state.get("val_loss"), state.get("chars_seen")
        for field, ok in (
            ("step", is_count(step)),
            ("val_loss", is_number(val_loss) and math.isfinite(val_loss)),
            ("chars_seen", chars_seen is None or is_count(chars_seen)),
        ):
            if not ok:
                raise RunDirError(_corrupt(self.file(BEST), f"its state has no valid {field}"))
        return Best(step, float(val_loss), chars_seen)

    def read_metrics(self):
        """The metric rows. A torn last line (a crash mid-write) is dropped; any other line that is
        not a JSON object with an integer step is an error naming the file and the line."""
        path = self.file(METRICS)
        text = self._read_text(METRICS, missing_ok=True, fix=_METRICS_FIX)
        if text is None:
            return []
        lines = text.split("\n")
        # A last line without its newline was cut short by a crash; nothing after it was lost.
        torn = lines.pop()
        rows = []
        for number, line in enumerate(lines, 1):
            try:
                row = json.loads(line)
            except (ValueError, RecursionError):
                row = None
            if not (isinstance(row, dict) and is_int(row.get("step"))):
                raise RunDirError(_corrupt(path, f"line {number} is not a metrics row", _METRICS_FIX))
            rows.append(row)
        if torn.strip():
            with contextlib.suppress(ValueError, RecursionError):
                row = json.loads(torn)
                if isinstance(row, dict) and is_int(row.get("step")):
                    rows.append(row)
        return rows

    def _train_state(self, data):
        try:
            return TrainState.from_dict(data)
        except ValueError as e:
            raise RunDirError(_corrupt(self.file(CHECKPOINT), e)) from None

    def _unfit(self, name, reason):
        return RunDirError(f"{self.file(name)} does not fit the run's settings ({reason}); retrain the run")

    def _load_npz(self, name, settings=None, members="all"):
        """Returns ({key: numeric array}, state dict) of the .npz file `name`: with `members` "all",
        every array; "weights", only the weights; "state", none (and no settings are needed).

        np.load is not used: it allocates a member's whole declared shape before reading it, so a
        small crafted file could make it allocate gigabytes. Instead the zip directory is checked
        first (only members a run defines, stored uncompressed, each no larger than the settings
        allow, together no larger than the file), then each member's .npy header (dtype and shape,
        against what the settings and charrnn/cells.py imply), and only then its data, in chunks,
        into an array of exactly that size. Nothing is unpickled. Without settings (the state
        alone, or a checkpoint saved by a library caller with no settings.json beside it), shapes
        are not checked, but no member can claim more than the file holds."""
        path = self.file(name)
        if settings is None and members != "state" and self.file(SETTINGS).exists():
            settings = self.read_settings()
        rules = _NpzRules(name, settings)
        f = self._open_file(name)
        arrays = {}
        try:
            with f, zipfile.ZipFile(f) as archive:
                listing = rules.check_listing(archive.infolist(), os.fstat(f.fileno()).st_size)
                for key, info in listing.items():
                    if key == "state" or members == "all" or (members == "weights" and key.startswith("weights/")):
                        arrays[key] = rules.read_member(archive, info, key)
        except _Unfit as e:
            raise self._unfit(name, e) from None
        except OSError as e:
            if e.errno not in (None, errno.EINVAL):  # an I/O or access error, not the file's content
                raise RunDirError(_unreadable(path, e)) from None
            raise RunDirError(_corrupt(path, _reason(e))) from None
        except Exception as e:  # noqa: BLE001 - whatever a damaged archive makes zipfile or NumPy raise
            raise RunDirError(_corrupt(path, _reason(e))) from None
        if settings is not None:
            weights = {k[len("weights/") :]: v for k, v in arrays.items() if k.startswith("weights/")}
            reason = cells.shape_problem(settings.model, weights)
            if reason:
                raise self._unfit(name, reason)
        if "state" not in arrays:
            raise RunDirError(_corrupt(path, "it has no state"))
        try:
            state = json.loads(str(arrays.pop("state")[()]))
        except (ValueError, RecursionError) as e:
            raise RunDirError(_corrupt(path, f"its state is not JSON: {_reason(e)}")) from None
        if not isinstance(state, dict):
            raise RunDirError(_corrupt(path, "state is not an object"))
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
        self.remove_temporaries()
        return stale

    def unlock(self):
        self._lock.release()

    def remove_temporaries(self):
        """Removes what a killed training left: temporary files of saves cut short, and a new run
        it was building beside an old one (train --force)."""
        for name in WRITTEN:
            for temp in self.path.glob(f".{name}.tmp-*"):
                with contextlib.suppress(OSError):
                    temp.unlink()
        for staged in self.path.glob(f"{STAGED}*"):
            if staged.is_dir() and not staged.is_symlink() and staged.name[len(STAGED):].isdigit():
                RunDir(staged).remove_staged()

    def remove_staged(self):
        """Deletes a new run built by `staged` that was not adopted (its training failed or was
        killed): only charrnn's files in it, then the folder."""
        for name in WRITTEN:
            if self.owns(name) or _is_empty_file(self.file(name)):
                with contextlib.suppress(OSError):
                    self.file(name).unlink()
        for temp in self.path.glob(".*.tmp-*"):
            with contextlib.suppress(OSError):
                temp.unlink()
        if self.tensorboard_dir().is_dir() and _only_event_files(self.tensorboard_dir()):
            shutil.rmtree(self.tensorboard_dir(), ignore_errors=True)
        with contextlib.suppress(OSError):
            self.path.rmdir()

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


def _write_error(path, error, kept=True, resumable=True, staged_for=None):
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


def _is_empty_file(path):
    try:
        return path.is_file() and not path.is_symlink() and path.stat().st_size == 0
    except OSError:
        return False


def _only_event_files(directory):
    """Whether a directory holds nothing but TensorBoard event files (and their temporaries)."""
    try:
        return all(
            p.is_file() and not p.is_symlink() and (p.name.startswith("events.out.tfevents.") or p.name.startswith(".events.out.tfevents."))
            for p in directory.iterdir()
        )
    except OSError:
        return False


_METRICS_FIX = "delete that line, or the file, to go on"


def _corrupt(path, reason, fix=None):
    return f"{path} is corrupt or truncated ({reason}); {fix or 'retrain the run, or restore the file from a backup'}"


def _reason(error):
    """One line about what went wrong while reading a file."""
    text = " ".join(str(error).split()) or type(error).__name__
    return text if len(text) <= 120 else text[:117] + "..."


def _unreadable(path, error):
    """The message for a run file that cannot be read for a reason other than what it holds: an
    OSError, or a sentence saying what is in the file's place."""
    if isinstance(error, str):
        return f"cannot read {path}: {error}; put the run's file back in its place, or retrain the run"
    if error.errno in (errno.EACCES, errno.EPERM):
        return f"cannot read {path}: permission denied; fix its permissions"
    return f"cannot read {path}: {error.strerror or _reason(error)}; check the file and the disk it is on"


def _corpus_problem(corpus):
    """Why the settings' corpus facts have the wrong form for those who print and sum them, or None."""
    if not isinstance(corpus, dict) or not isinstance(corpus.get("files"), list):
        return "the corpus section has no list of files"
    for facts in corpus["files"]:
        if not isinstance(facts, dict):
            return f"a corpus file is not an object. Received: {short(facts)}"
        path = facts.get("path")
        for field, ok in (
            ("path", isinstance(path, str) and "\0" not in path),
            ("bytes", is_count(facts.get("bytes"))),
            ("sha256", isinstance(facts.get("sha256"), str)),
        ):
            if not ok:
                return f"a corpus file's {field} is not valid. Received: {field}={short(facts.get(field))}"
    for field in ("chars", "train_chars", "val_chars", "vocab_size"):
        value = corpus.get(field)
        if value is not None and not is_count(value):
            return f"corpus {field} must be a count (a whole number, 0 or more). Received: {field}={short(value)}"
    return None


def _extras_problem(data):
    """Why the settings' corpus, versions, spread or parameters hold something no reader can print
    as JSON (NaN, infinity), or None."""
    for section in ("corpus", "versions", "spread", "parameters"):
        stack = [data.get(section)]
        while stack:
            value = stack.pop()
            if isinstance(value, dict):
                stack.extend(value.values())
            elif isinstance(value, list):
                stack.extend(value)
            elif isinstance(value, float) and not math.isfinite(value):
                return f"its {section} holds {value}, which is not a finite number"
    return None


# --- checking an .npz before reading it ----------------------------------------------------------

# Beyond its array, a member of an .npz holds its .npy header, which NumPy's reader keeps under
# 10,000 bytes (and the magic string and header length before it).
_NPY_HEADER_MAX = 10_000 + 64
# The JSON state member is a few hundred characters; this is far above it.
_STATE_MAX_CHARS = 1 << 16
# Bytes read at a time from a member.
_READ_CHUNK = 1 << 24


class _Unfit(Exception):
    """A member whose shape or size does not fit what the run's settings imply."""


class _NpzRules:
    """What the members of a run's .npz file may be, as the settings and charrnn/cells.py imply:
    weights of exactly their shapes; in checkpoint.npz, the optimizer's variables (Adam: a few
    scalars, then moments shaped like the weights) and the carried state (at most batch_size x
    layers x states per layer x units numbers); and the state, a short JSON string. Without
    settings, the arrays' shapes are not checked."""

    def __init__(self, name, settings):
        self.name = name
        self.settings = settings
        self.shapes = {} if settings is None else cells.weight_shapes(settings.model)
        self.shape_set = set(self.shapes.values())
        self.largest = max((math.prod(shape) for shape in self.shapes.values()), default=0)
        self.optimizer_max = 8 + 3 * len(self.shapes)
        self.carry_max = 0 if settings is None else settings.train.batch_size * cells.state_size(settings.model)

    def kind(self, key):
        """(what member `key` is, the most numbers it may hold). ValueError for a member the run
        does not define."""
        if key == "state":
            return "state", _STATE_MAX_CHARS
        if self.settings is None and (key.startswith(("weights/", "optimizer/")) or key == "carry"):
            return "unchecked", 0
        if key.startswith("weights/") and key[len("weights/") :] in self.shapes:
            return "weight", math.prod(self.shapes[key[len("weights/") :]])
        if self.name == CHECKPOINT:
            if key == "carry":
                return "carry", self.carry_max
            if re.fullmatch(r"optimizer/\d{4,}", key) and int(key[len("optimizer/") :]) < self.optimizer_max:
                return "optimizer", self.largest
        raise ValueError(f"it holds {short(key)}, which is not part of a run's {self.name}")

    def check_listing(self, infos, file_size):
        """{key: ZipInfo} of the members, checked from the zip directory alone."""
        listing, total = {}, 0
        for info in infos:
            if not info.filename.endswith(".npy"):
                raise ValueError(f"it holds {short(info.filename)}, which is not an array")
            key = info.filename[: -len(".npy")]
            if key in listing:
                raise ValueError(f"it holds {short(key)} twice")
            what, most = self.kind(key)
            if info.compress_type != zipfile.ZIP_STORED:
                raise ValueError(f"{key} is compressed, and charrnn writes its arrays uncompressed")
            limit = _NPY_HEADER_MAX + most * (4 if what == "state" else 8)
            if what == "state" and info.file_size > limit:
                raise ValueError(f"its state declares {info.file_size:,} bytes, far more than charrnn writes")
            if what not in ("state", "unchecked") and info.file_size > limit:
                raise _Unfit(f"{key} declares {info.file_size:,} bytes, more than the settings allow ({limit:,})")
            total += info.compress_size
            listing[key] = info
        if total > file_size:
            raise ValueError(f"its members declare {total:,} bytes, more than the file's {file_size:,}")
        optimizer = sorted(int(k[len("optimizer/") :]) for k in listing if k.startswith("optimizer/"))
        if optimizer != list(range(len(optimizer))):
            raise ValueError("its optimizer variables are not numbered 0, 1, 2, ...")
        return listing

    def read_member(self, archive, info, key):
        """The array of member `key`: its .npy header is read and checked before its data."""
        what, most = self.kind(key)
        with archive.open(info) as fp:
            version = np.lib.format.read_magic(fp)
            if version == (1, 0):
                shape, fortran_order, dtype = np.lib.format.read_array_header_1_0(fp)
            elif version == (2, 0):
                shape, fortran_order, dtype = np.lib.format.read_array_header_2_0(fp)
            else:
                raise ValueError(f"{key} is a .npy file of version {version}, which charrnn does not read")
            self.check_header(key, what, most, tuple(shape), dtype)
            count = math.prod(shape)
            data_bytes = info.file_size - fp.tell()
            if data_bytes != count * dtype.itemsize:
                raise ValueError(f"{key} holds {data_bytes:,} bytes of data, its header declares {count * dtype.itemsize:,}")
            # Allocated only now that its size is known to fit the settings and the file.
            array = np.empty(count, dtype)
            _read_into(fp, array.view(np.uint8), key)
            fp.read(1)  # at the end: zipfile checks the member's CRC
        return array.reshape(shape[::-1]).T if fortran_order else array.reshape(shape)

    def check_header(self, key, what, most, shape, dtype):
        if dtype.hasobject:
            raise ValueError(f"{key} holds Python objects, which charrnn never loads (allow_pickle=False)")
        if not all(is_count(n) for n in shape):
            raise ValueError(f"{key} has an invalid shape {short(shape)}")
        if what == "state":
            if dtype.kind != "U" or shape != () or dtype.itemsize > 4 * most:
                raise ValueError("its state is not a short string")
            return
        if dtype.kind not in "fiu" or dtype.itemsize > 8 or dtype.fields is not None or dtype.subdtype is not None:
            raise ValueError(f"{key} is not a numeric array")
        if what == "weight":
            expected = self.shapes[key[len("weights/") :]]
            if shape != expected:
                raise _Unfit(f"{key[len('weights/') :]} has shape {shape}, the settings imply {expected}")
        elif what == "optimizer" and shape != () and shape not in self.shape_set:
            raise _Unfit(f"{key} has shape {shape}, which is neither a scalar nor the shape of a weight")
        elif what == "carry" and (len(shape) != 3 or math.prod(shape) > most):
            expected = (self.settings.train.batch_size, cells.state_size(self.settings.model) // self.settings.model.units,
                        self.settings.model.units)
            raise _Unfit(f"carry has shape {shape}, the settings imply at most {expected}")


def _read_into(stream, buffer, key):
    """Fills the uint8 array `buffer` from `stream`, _READ_CHUNK bytes at a time."""
    done = 0
    while done < len(buffer):
        piece = stream.read(min(_READ_CHUNK, len(buffer) - done))
        if not piece:
            raise ValueError(f"{key} is truncated")
        buffer[done : done + len(piece)] = np.frombuffer(piece, np.uint8)
        done += len(piece)
