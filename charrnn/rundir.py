"""The run directory: the only module that knows the names of the files inside it.

    settings.json     model and training settings, corpus facts, library versions
    vocab.json        the characters in index order, with their corpus counts
    checkpoint.npz    latest weights, optimizer variables and training state (for --resume)
    best.npz          the weights with the best validation loss so far (what `sample` uses)
    metrics.jsonl     one JSON object per evaluation
    lock              the process id of the training that holds the directory

Every file is replaced atomically (written to a temporary file, flushed, fsynced, renamed), so a
kill at any instant leaves the old or the new version, never a torn one. Arrays are stored as
.npz and loaded with allow_pickle=False: loading a run never executes code from it.
"""

import contextlib
import errno
import fcntl
import io
import json
import os
import zipfile
from pathlib import Path

import numpy as np

from charrnn.errors import RunDirError

SETTINGS = "settings.json"
VOCAB = "vocab.json"
CHECKPOINT = "checkpoint.npz"
BEST = "best.npz"
METRICS = "metrics.jsonl"
LOCK = "lock"
RUN_FILES = (SETTINGS, VOCAB, CHECKPOINT, BEST, METRICS)


class RunDir:
    def __init__(self, path):
        self.path = Path(path)
        self._lock_fd = None

    def file(self, name):
        return self.path / name

    def has_run(self):
        """Whether the directory holds (part of) a run."""
        return any(self.file(name).exists() for name in RUN_FILES)

    def how_to_train(self):
        return f"train one with: charrnn train CORPUS --run-dir {self.path}"

    def require_run(self):
        """Raises RunDirError unless the directory holds a run that can be sampled from."""
        if not self.path.is_dir():
            raise RunDirError(f"no run directory at {self.path}; {self.how_to_train()}")
        for name in (SETTINGS, VOCAB, CHECKPOINT):
            if not self.file(name).exists():
                raise RunDirError(f"run directory {self.path} is incomplete ({name} is missing); {self.how_to_train()}")

    # --- writing --------------------------------------------------------------------------------

    def write_atomic(self, name, data):
        """Replaces file `name` with `data` (bytes): the old or the new content survives any crash."""
        target = self.file(name)
        temp = self.file(f".{name}.tmp-{os.getpid()}")
        try:
            with open(temp, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            os.replace(temp, target)
            _fsync_dir(self.path)
        except OSError as e:
            with contextlib.suppress(OSError):
                temp.unlink()
            raise RunDirError(_write_error(target, e)) from None

    def write_json(self, name, data):
        self.write_atomic(name, (json.dumps(data, indent=2, ensure_ascii=False) + "\n").encode())

    def write_settings(self, settings):
        self.write_json(SETTINGS, settings)

    def write_vocab(self, vocab):
        self.write_atomic(VOCAB, vocab.to_json().encode())

    def save_checkpoint(self, weights, optimizer_variables, state):
        """Saves what an exact resume needs in one file: weights, optimizer variables, state."""
        arrays = {f"weights/{k}": v for k, v in weights.items()}
        arrays.update({f"optimizer/{i:04d}": v for i, v in enumerate(optimizer_variables)})
        arrays["state"] = np.array(json.dumps(state))
        self.write_atomic(CHECKPOINT, _npz_bytes(arrays))

    def save_best(self, weights, meta):
        arrays = {f"weights/{k}": v for k, v in weights.items()}
        arrays["state"] = np.array(json.dumps(meta))
        self.write_atomic(BEST, _npz_bytes(arrays))

    def append_metrics(self, row):
        """Appends one JSON line with a single write, so a kill cannot leave half a line behind."""
        line = (json.dumps(row) + "\n").encode()
        try:
            fd = os.open(self.file(METRICS), os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
            try:
                os.write(fd, line)
                os.fsync(fd)
            finally:
                os.close(fd)
        except OSError as e:
            raise RunDirError(_write_error(self.file(METRICS), e)) from None

    def trim_metrics(self, last_step):
        """Keeps the metric rows up to `last_step` (a resume redoes the steps after it) and drops a
        torn last line."""
        rows = [row for row in self.read_metrics() if row.get("step", 0) <= last_step]
        self.write_atomic(METRICS, "".join(json.dumps(row) + "\n" for row in rows).encode())

    def clear(self):
        """Deletes the run's files (for --force), leaving anything else in the directory alone."""
        for name in RUN_FILES:
            with contextlib.suppress(FileNotFoundError):
                self.file(name).unlink()

    # --- reading --------------------------------------------------------------------------------

    def read_json(self, name):
        path = self.file(name)
        try:
            return json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise RunDirError(f"run directory {self.path} is incomplete ({name} is missing); {self.how_to_train()}") from None
        except (OSError, UnicodeDecodeError, ValueError) as e:
            raise RunDirError(_corrupt(path, e)) from None

    def read_settings(self):
        settings = self.read_json(SETTINGS)
        if not isinstance(settings, dict) or not {"model", "train", "corpus"} <= settings.keys():
            raise RunDirError(_corrupt(self.file(SETTINGS), "model, train or corpus section missing"))
        return settings

    def read_vocab(self):
        from charrnn.vocab import Vocab

        path = self.file(VOCAB)
        try:
            return Vocab.from_json(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise RunDirError(f"run directory {self.path} is incomplete ({VOCAB} is missing); {self.how_to_train()}") from None
        except (OSError, UnicodeDecodeError, ValueError, KeyError, TypeError) as e:
            raise RunDirError(_corrupt(path, e)) from None

    def load_checkpoint(self):
        """Returns (weights dict, optimizer variable list, state dict) of the latest checkpoint."""
        arrays, state = self._load_npz(CHECKPOINT)
        weights = {k[len("weights/") :]: v for k, v in arrays.items() if k.startswith("weights/")}
        optimizer = [arrays[k] for k in sorted(k for k in arrays if k.startswith("optimizer/"))]
        return weights, optimizer, state

    def load_weights(self, which="best"):
        """Returns (weights dict, state dict) of the best checkpoint (or the latest, if no
        evaluation has happened yet, or if `which` is "latest")."""
        name = BEST if which == "best" and self.file(BEST).exists() else CHECKPOINT
        arrays, state = self._load_npz(name)
        weights = {k[len("weights/") :]: v for k, v in arrays.items() if k.startswith("weights/")}
        return weights, state

    def read_best_state(self):
        """The state saved with the best weights, or None if there are none yet."""
        if not self.file(BEST).exists():
            return None
        with self._open_npz(BEST) as npz:
            return self._state(npz, BEST)

    def read_checkpoint_state(self):
        with self._open_npz(CHECKPOINT) as npz:
            return self._state(npz, CHECKPOINT)

    def read_metrics(self):
        """The metric rows; a torn or corrupt line (from a crash mid-write) is skipped."""
        rows = []
        with contextlib.suppress(FileNotFoundError):
            for line in self.file(METRICS).read_text(encoding="utf-8", errors="replace").splitlines():
                with contextlib.suppress(ValueError):
                    row = json.loads(line)
                    if isinstance(row, dict):
                        rows.append(row)
        return rows

    def _open_npz(self, name):
        path = self.file(name)
        try:
            return np.load(path, allow_pickle=False)
        except FileNotFoundError:
            raise RunDirError(f"run directory {self.path} is incomplete ({name} is missing); {self.how_to_train()}") from None
        except (OSError, ValueError, EOFError, zipfile.BadZipFile) as e:
            raise RunDirError(_corrupt(path, e)) from None

    def _state(self, npz, name):
        try:
            state = json.loads(str(npz["state"]))
        except (KeyError, ValueError, OSError, EOFError, zipfile.BadZipFile) as e:
            raise RunDirError(_corrupt(self.file(name), e)) from None
        if not isinstance(state, dict):
            raise RunDirError(_corrupt(self.file(name), "state is not an object"))
        return state

    def _load_npz(self, name):
        with self._open_npz(name) as npz:
            state = self._state(npz, name)
            try:
                arrays = {k: npz[k] for k in npz.files if k != "state"}
            except (ValueError, OSError, EOFError, zipfile.BadZipFile) as e:
                raise RunDirError(_corrupt(self.file(name), e)) from None
        return arrays, state

    # --- the lock -------------------------------------------------------------------------------

    def lock(self):
        """Takes the directory for this process; refuses if another live process holds it.

        The lock is an flock on `lock`, which the kernel drops when its process dies, so the lock
        of a killed training is stale by construction and is simply taken over.
        Returns the pid of the process whose stale lock was taken over, or None.
        """
        try:
            self.path.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.file(LOCK), os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as e:
            raise RunDirError(f"cannot use run directory {self.path}: {e.strerror}") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as e:
            holder = os.read(fd, 100).decode(errors="replace").strip() or "unknown"
            os.close(fd)
            if e.errno not in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
                raise RunDirError(f"cannot lock run directory {self.path}: {e.strerror}") from None
            raise RunDirError(
                f"run directory {self.path} is being trained by another process (pid {holder}); "
                "wait for it to finish, stop it, or use another --run-dir"
            ) from None
        stale = os.read(fd, 100).decode(errors="replace").strip()
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self._lock_fd = fd
        return stale if stale and stale != str(os.getpid()) else None

    def unlock(self):
        if self._lock_fd is not None:
            with contextlib.suppress(OSError):
                os.ftruncate(self._lock_fd, 0)
            os.close(self._lock_fd)
            self._lock_fd = None


def _npz_bytes(arrays):
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    return buffer.getvalue()


def _fsync_dir(path):
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_error(path, error):
    reason = error.strerror or str(error)
    hint = "free some disk space" if error.errno == errno.ENOSPC else "check the directory's permissions"
    return f"could not write {path}: {reason}; the previous version is intact; {hint}, then resume with --resume"


def _corrupt(path, reason):
    return f"{path} is corrupt or truncated ({reason}); retrain the run, or restore the file from a backup"
