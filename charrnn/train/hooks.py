"""What happens around the training loop's events, one small writer each.

The loop calls every hook at each step, evaluation, checkpoint and at the end; a hook does only
its own thing. Hooks write files or the terminal, so only the process that should write (the
chief, when several processes train together) is given them.
"""

import math
import sys
import time

from charrnn.rundir import Best
from charrnn.units import duration


class Hook:
    """Does nothing at any event; subclasses pick theirs."""

    def on_step(self, state, loss):
        """After each optimizer step, with its training loss."""

    def on_evaluate(self, state, row, is_best):
        """After each evaluation: `row` is its metrics.jsonl row; `is_best` says whether its
        validation loss is the best so far (the state already records it)."""

    def on_checkpoint(self, state, weights, carry):
        """When the loop saves: `weights` ({name: array}) were checked to be finite and to give a
        finite loss; `carry` is the carried state (or None, when every window starts from zeros)."""

    def on_end(self, state):
        """When the loop stops, however it stops."""


class MetricsLog(Hook):
    """Appends each evaluation's row to metrics.jsonl, with the `extra` fields (how the session
    spreads the work)."""

    def __init__(self, run, extra=None):
        self.run, self.extra = run, extra or {}

    def on_evaluate(self, state, row, is_best):
        self.run.append_metrics(dict(row, **self.extra))


class BestWeights(Hook):
    """Saves best.npz whenever the validation loss is the best so far."""

    def __init__(self, run, get_weights):
        self.run, self.get_weights = run, get_weights

    def on_evaluate(self, state, row, is_best):
        if is_best:
            self.run.save_best(self.get_weights(), Best(state.step, state.best_val_loss, state.chars_seen))


class Checkpointer(Hook):
    """Saves checkpoint.npz: weights, optimizer variables and state."""

    def __init__(self, run, get_optimizer_values):
        self.run, self.get_optimizer_values = run, get_optimizer_values

    def on_checkpoint(self, state, weights, carry):
        self.run.save_checkpoint(weights, self.get_optimizer_values(), state, carry)


class ProgressBar(Hook):
    """A tqdm bar on stderr over the budget, with loss, validation loss, speed and time left."""

    def __init__(self, budget):
        from tqdm import tqdm

        self.budget = budget
        self.bar = tqdm(total=1000, file=sys.stderr, bar_format="{percentage:3.0f}%|{bar:20}| {desc}", dynamic_ncols=True)
        self.ema = None  # the training loss, smoothed
        self.started = None  # (time, chars_seen) at the first step
        self.last_draw = 0.0
        # Redraw 4 times a second on a terminal; in a log file (stderr redirected), every 5 s.
        self.interval = 0.25 if sys.stderr.isatty() else 5.0

    def on_step(self, state, loss):
        self.ema = loss if self.ema is None else 0.95 * self.ema + 0.05 * loss
        if self.started is None:
            self.started = (time.monotonic(), state.chars_seen)
        if time.monotonic() - self.last_draw >= self.interval:
            self._draw(state)

    def on_end(self, state):
        if self.ema is not None:
            self._draw(state)
        self.bar.close()

    def _draw(self, state):
        now = self.last_draw = time.monotonic()
        speed = (state.chars_seen - self.started[1]) / max(now - self.started[0], 1e-9)
        parts = [f"step {state.step:,}", f"epoch {self.budget.epochs_done(state):.2f}", f"loss {self.ema:.3f}"]
        if state.last_val_carried is not None:
            parts.append(f"val {state.last_val_carried:.3f}")
        left = self.budget.seconds_left(state, speed)
        parts += [f"{speed:,.0f} chars/s", f"{'?' if left == math.inf else duration(left)} left"]
        self.bar.n = int(self.budget.progress(state) * 1000)
        self.bar.set_description_str(", ".join(parts), refresh=True)
