"""The budget of a run (epochs or time, whichever ends first) and the learning rate over it."""

import math

from charrnn.train.batching import batching_for
from charrnn.units import duration

# A time budget with less than this share of it left (and at least 1 s) counts as reached when a
# run resumes: a run stops early enough to finish its last evaluation and checkpoint within the
# budget, so it usually ends a little before it.
TIME_SLACK = 0.01


class Budget:
    """How far a run's TrainState is through the budget of its TrainConfig, on `num_train`
    training characters."""

    def __init__(self, cfg, num_train):
        self.cfg, self.num_train = cfg, num_train
        self.batches_per_epoch = batching_for(cfg).per_epoch(num_train)

    def progress(self, state):
        """0 to 1: whichever of epochs and time is further along."""
        by_chars = state.chars_seen / (self.cfg.epochs * self.num_train)
        by_time = state.elapsed_s / self.cfg.max_time_s if self.cfg.max_time_s else 0.0
        return min(1.0, max(by_chars, by_time))

    def spent(self, state):
        """Whether the run has nothing left to train: all its epochs, or its time (TIME_SLACK)."""
        return state.epoch >= self.cfg.epochs or self.progress(state) >= 1.0 or self._time_reached(state)

    def out_of_time(self, state, reserve=0.0):
        """Whether training must stop to end within the time budget, `reserve` seconds (the last
        evaluation and checkpoint) being still to come."""
        return bool(self.cfg.max_time_s) and state.elapsed_s + reserve >= self.cfg.max_time_s

    def _time_reached(self, state):
        max_time = self.cfg.max_time_s
        return bool(max_time) and max_time - state.elapsed_s < max(1.0, TIME_SLACK * max_time)

    def stopped_by(self, state):
        """Which budget a run that has spent it reached: "epochs" or "time"."""
        return "epochs" if state.epoch >= self.cfg.epochs else "time"

    def describe_done(self, state):
        """How far through its epochs a run is, as every message says it: "2.31 of 20 epochs done"."""
        return f"{self.epochs_done(state):.2f} of {self.cfg.epochs:,} epochs done"

    def describe_left(self, state):
        """What is left of the budget: "20 epochs or 2m00s, whichever ends first"; "17.69 more
        epochs" on a run that has trained."""
        more = self.cfg.epochs - self.epochs_done(state)
        epochs = f"{more:,.2f} more epochs" if state.step else plural(self.cfg.epochs, "epoch")
        if not self.cfg.max_time_s:
            return f"for {epochs} (no time limit: --max-time sets one)"
        left = duration(max(0.0, self.cfg.max_time_s - state.elapsed_s))
        return f"for {epochs} or {left}, whichever ends first"

    def finished_message(self, run_path, state):
        """The refusal to resume a run that has spent its budget: which budget, and the flag to raise."""
        if self.stopped_by(state) == "epochs":
            why = f"{all_epochs(self.cfg.epochs)} done, {duration(state.elapsed_s)} of training"
            flag = f"--epochs (now {self.cfg.epochs:,})"
        else:
            why = f"its {duration(self.cfg.max_time_s)} time budget reached, {self.describe_done(state)}"
            flag = f"--max-time (now {duration(self.cfg.max_time_s)})"
        return f"the run in {run_path} already finished its budget ({why}); raise {flag} to train further"

    def epochs_done(self, state):
        """Epochs completed, with the current one's share (its batch count is close to exact: the
        windows' offset moves by less than one window between epochs)."""
        return state.epoch + state.batch_in_epoch / max(1, self.batches_per_epoch)

    def seconds_left(self, state, chars_per_s):
        """Seconds until the budget ends at `chars_per_s`; inf while that speed is not known."""
        by_time = self.cfg.max_time_s - state.elapsed_s if self.cfg.max_time_s else math.inf
        chars_left = self.cfg.epochs * self.num_train - state.chars_seen
        by_chars = chars_left / chars_per_s if chars_per_s > 0 else math.inf
        return max(0.0, min(by_time, by_chars))

    def learning_rate(self, state):
        return learning_rate(self.cfg, self.progress(state))


def plural(count, noun):
    return f"{count:,} {noun}{'' if count == 1 else 's'}"


def all_epochs(epochs):
    """"all 20 epochs", "the 1 epoch"."""
    return f"all {epochs:,} epochs" if epochs != 1 else "the 1 epoch"


def learning_rate(cfg, progress):
    """Linear warm-up, then a cosine or linear decay (cfg.lr_decay) to final_lr_fraction of the
    peak at progress 1."""
    peak = cfg.learning_rate
    if progress < cfg.warmup_fraction:
        return peak * (progress + 1e-3) / cfg.warmup_fraction
    t = min(1.0, (progress - cfg.warmup_fraction) / (1.0 - cfg.warmup_fraction))
    floor = peak * cfg.final_lr_fraction
    left = 0.5 * (1.0 + math.cos(math.pi * t)) if cfg.lr_decay == "cosine" else 1.0 - t
    return floor + (peak - floor) * left
