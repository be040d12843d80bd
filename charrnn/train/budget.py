"""The budget of a run (epochs or time, whichever ends first) and the learning rate over it."""

import math

from charrnn import data


class Budget:
    """How far a run's TrainState is through the budget of its TrainConfig, on `num_train`
    training characters."""

    def __init__(self, cfg, num_train):
        self.cfg, self.num_train = cfg, num_train

    def progress(self, state):
        """0 to 1: whichever of epochs and time is further along."""
        by_chars = state.chars_seen / (self.cfg.epochs * self.num_train)
        by_time = state.elapsed_s / self.cfg.max_time_s if self.cfg.max_time_s else 0.0
        return min(1.0, max(by_chars, by_time))

    def spent(self, state):
        return self.progress(state) >= 1.0 or state.epoch >= self.cfg.epochs

    def out_of_time(self, state):
        return bool(self.cfg.max_time_s) and state.elapsed_s >= self.cfg.max_time_s

    def epochs_done(self, state):
        """Epochs completed, with the current one's share (its batch count is close to exact: the
        windows' offset moves by less than one window between epochs)."""
        cfg = self.cfg
        batches = data.batches_per_epoch(self.num_train, cfg.seq_length, cfg.batch_size, cfg.state == "carry")
        return state.epoch + state.batch_in_epoch / max(1, batches)

    def seconds_left(self, state, chars_per_s):
        """Seconds until the budget ends at `chars_per_s`; inf while that speed is not known."""
        by_time = self.cfg.max_time_s - state.elapsed_s if self.cfg.max_time_s else math.inf
        chars_left = self.cfg.epochs * self.num_train - state.chars_seen
        by_chars = chars_left / chars_per_s if chars_per_s > 0 else math.inf
        return max(0.0, min(by_time, by_chars))

    def learning_rate(self, state):
        return learning_rate(self.cfg, self.progress(state))


def learning_rate(cfg, progress):
    """Linear warm-up, then cosine decay to final_lr_fraction of the peak at progress 1."""
    peak = cfg.learning_rate
    if progress < cfg.warmup_fraction:
        return peak * (progress + 1e-3) / cfg.warmup_fraction
    t = min(1.0, (progress - cfg.warmup_fraction) / (1.0 - cfg.warmup_fraction))
    floor = peak * cfg.final_lr_fraction
    return floor + (peak - floor) * 0.5 * (1.0 + math.cos(math.pi * t))
