"""Where a training run stands: the counters that a checkpoint saves and `--resume` restores."""

import dataclasses
import math
from dataclasses import dataclass


@dataclass
class TrainState:
    step: int = 0  # optimizer steps done
    epoch: int = 0  # epochs completed
    batch_in_epoch: int = 0  # batches of the current epoch done
    chars_seen: int = 0  # training targets seen
    elapsed_s: float = 0.0  # training wall time, summed over resumes
    best_val_loss: float = math.inf  # the best validation loss so far, state carried (nats/char)
    best_step: int = 0  # the step that reached it
    last_val_loss: float | None = None  # of the latest evaluation, windows from a zero state
    last_val_carried: float | None = None  # of the latest evaluation, state carried
    last_train_loss: float | None = None  # mean training loss since the evaluation before it

    def to_dict(self):
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data):
        """Builds a state from a checkpoint's JSON; raises ValueError naming the first field that
        is missing or invalid. Fields it does not know are ignored (a newer charrnn's)."""
        if not isinstance(data, dict):
            raise ValueError("it is not an object")
        values = {}
        for field in dataclasses.fields(cls):
            missing = dataclasses.MISSING if field.name in _REQUIRED else field.default
            value = data.get(field.name, missing)
            if not _valid(field.name, value):
                raise ValueError(f"its training state has no valid {field.name}")
            values[field.name] = value
        return cls(**values)


# What each field may hold: counters are non-negative integers, losses numbers or unset.
_COUNTERS = ("step", "epoch", "batch_in_epoch", "chars_seen", "best_step")
_REQUIRED = ("step", "epoch", "batch_in_epoch", "chars_seen", "elapsed_s")


def _valid(name, value):
    if value is dataclasses.MISSING:
        return False
    if value is None:
        return name in ("last_val_loss", "last_val_carried", "last_train_loss")
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return False
    if name in _COUNTERS:
        return isinstance(value, int) and value >= 0
    if name == "elapsed_s":
        return 0 <= value < math.inf
    return not math.isnan(value)
