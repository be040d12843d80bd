"""The run's weight files: the latest checkpoint (Checkpoint: what an exact resume needs) and the
best weights (Best). Arrays are stored as .npz and read back with npzsafe, every member checked
against what the settings imply before it is read: loading a run never executes code from it."""

import dataclasses
import errno
import io
import json
import math
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

from charrnn import cells
from charrnn.checks import is_count, is_number
from charrnn.errors import RunDirError
from charrnn.rundir import messages, npzsafe
from charrnn.rundir.layout import BEST, CHECKPOINT, SETTINGS
from charrnn.rundir.members import OPTIMIZER, WEIGHTS, NpzRules, Unfit
from charrnn.state import TrainState


class Checkpoint(NamedTuple):
    """What an exact resume needs."""

    weights: dict  # {name: array}, names as in charrnn/cells.py
    optimizer: list  # the optimizer's variables, in its order
    state: TrainState
    carry: np.ndarray | None = None  # the carried state (batch, layers * states per layer, units), with --state carry
    seeds: np.ndarray | None = None  # the dropout's seed generators' states (generators, 2); None before they were kept


@dataclass
class Best:
    """What the best weights' file records beside its weights."""

    step: int
    val_loss: float
    chars_seen: int | None = None


class CheckpointStore:
    """The latest checkpoint: weights, optimizer variables, TrainState, carried state."""

    def __init__(self, files, settings):
        self._files, self._settings = files, settings

    def save(self, weights, optimizer_values, state, carry=None, seeds=None):
        """Saves what an exact resume needs in one file: weights, optimizer variables, TrainState,
        and the carried state and the seed generators' states if there are any."""
        arrays = {f"{WEIGHTS}{k}": v for k, v in weights.items()}
        arrays.update({f"{OPTIMIZER}{i:04d}": v for i, v in enumerate(optimizer_values)})
        if carry is not None:
            arrays["carry"] = carry
        if seeds is not None:
            arrays["seeds"] = seeds
        arrays["state"] = np.array(json.dumps(state.to_dict()))
        self._files.write_bytes(CHECKPOINT, _npz_bytes(arrays))

    def load(self, settings=None):
        """The latest checkpoint, whole, as a Checkpoint; every array checked against what the
        settings (read if not given) imply before it is read."""
        arrays, state = load_npz(self._files, self._settings, CHECKPOINT, settings)
        weights = _weights(arrays)
        optimizer = [arrays[k] for k in sorted(k for k in arrays if k.startswith(OPTIMIZER))]
        state = _train_state(self._files.file(CHECKPOINT), state)
        return Checkpoint(weights, optimizer, state, arrays.get("carry"), arrays.get("seeds"))

    def read_state(self):
        """The latest checkpoint's TrainState, without reading its arrays."""
        _, state = load_npz(self._files, self._settings, CHECKPOINT, members="state")
        return _train_state(self._files.file(CHECKPOINT), state)

    def unfit(self, reason):
        """The error for a checkpoint whose weights or optimizer state do not fit the run's settings."""
        return RunDirError(messages.unfit(self._files.file(CHECKPOINT), reason))


class BestStore:
    """The weights with the best validation loss so far, and their Best."""

    def __init__(self, files, settings):
        self._files, self._settings = files, settings

    def exists(self):
        return self._files.file(BEST).exists()

    def save(self, weights, best):
        arrays = {f"{WEIGHTS}{k}": v for k, v in weights.items()}
        arrays["state"] = np.array(json.dumps(dataclasses.asdict(best)))
        self._files.write_bytes(BEST, _npz_bytes(arrays))

    def read(self, settings=None):
        """What the best weights' file records (Best), or None if there are no best weights yet.
        The weights are read too, so that a damaged file is reported now rather than when needed."""
        if not self.exists():
            return None
        _, state = load_npz(self._files, self._settings, BEST, settings)
        return _best(self._files.file(BEST), state)


def load_weights(files, settings_store, which="best", settings=None, record=False):
    """The weights {name: array} of the best checkpoint (or of the latest, if no evaluation has
    happened yet, or if `which` is "latest"), each of the shape the settings imply. With `record`,
    (weights, what their file records: the Best, or the latest checkpoint's TrainState)."""
    name = BEST if which == "best" and files.file(BEST).exists() else CHECKPOINT
    arrays, state = load_npz(files, settings_store, name, settings, members="weights")
    # The state is checked too, even when unused: a damaged file is reported by every reader.
    recorded = _best(files.file(name), state) if name == BEST else _train_state(files.file(name), state)
    return (_weights(arrays), recorded) if record else _weights(arrays)


def _train_state(path, data):
    try:
        return TrainState.from_dict(data)
    except ValueError as e:
        raise RunDirError(messages.corrupt(path, e)) from None


def _best(path, state):
    """The Best of a best weights file's state dict; RunDirError naming the first field that is invalid."""
    step, val_loss, chars_seen = state.get("step"), state.get("val_loss"), state.get("chars_seen")
    for field, ok in (
        ("step", is_count(step)),
        ("val_loss", is_number(val_loss) and math.isfinite(val_loss)),
        ("chars_seen", chars_seen is None or is_count(chars_seen)),
    ):
        if not ok:
            raise RunDirError(messages.corrupt(path, f"its state has no valid {field}"))
    return Best(step, float(val_loss), chars_seen)


def load_npz(files, settings_store, name, settings=None, members="all"):
    """Returns ({key: numeric array}, state dict) of the .npz file `name`: with `members` "all",
    every array; "weights", only the weights; "state", none (and no settings are needed). Without
    settings (the state alone, or a checkpoint saved by a library caller with no settings beside
    it), shapes are not checked, but no member can claim more than the file holds."""
    path = files.file(name)
    if settings is None and members != "state" and files.file(SETTINGS).exists():
        settings = settings_store.read()
    arrays = _read_npz(files, name, NpzRules(name, settings), members)
    if settings is not None:
        reason = cells.shape_problem(settings.model, _weights(arrays))
        if reason:
            raise RunDirError(messages.unfit(path, reason))
    if "state" not in arrays:
        raise RunDirError(messages.corrupt(path, "it has no state"))
    try:
        state = json.loads(str(arrays.pop("state")[()]))
    except (ValueError, RecursionError) as e:
        raise RunDirError(messages.corrupt(path, f"its state is not JSON: {messages.reason(e)}")) from None
    if not isinstance(state, dict):
        raise RunDirError(messages.corrupt(path, "state is not an object"))
    return arrays, state


def _read_npz(files, name, rules, members):
    """The arrays of file `name` that `members` asks for, and its state; every failure a RunDirError."""
    path = files.file(name)

    def wanted(key):
        return key == "state" or members == "all" or (members == "weights" and key.startswith(WEIGHTS))

    f = files.open(name)
    try:
        with f:
            return npzsafe.read(f, rules, wanted)
    except Unfit as e:
        raise RunDirError(messages.unfit(path, e)) from None
    except OSError as e:
        if e.errno not in (None, errno.EINVAL):  # an I/O or access error, not the file's content
            raise RunDirError(messages.unreadable(path, e)) from None
        raise RunDirError(messages.corrupt(path, messages.reason(e))) from None
    except Exception as e:  # noqa: BLE001 - whatever a damaged archive makes zipfile or NumPy raise
        raise RunDirError(messages.corrupt(path, messages.reason(e))) from None


def _weights(arrays):
    return {k[len(WEIGHTS) :]: v for k, v in arrays.items() if k.startswith(WEIGHTS)}


def _npz_bytes(arrays):
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    return buffer.getvalue()
