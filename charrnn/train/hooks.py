"""What happens around the training loop's events, one small writer each.

The loop calls every hook at each step, evaluation, checkpoint and at the end; a hook does only
its own thing. Hooks write files or the terminal, so only the process that should write (the
chief, when several processes train together) is given them. The checkpoints themselves are the
loop's (train.checkpoints), saved before the hooks hear of them.
"""

import math
import os
import sys
import time

from charrnn.units import duration


class Hook:
    """Does nothing at any event; subclasses pick theirs."""

    def on_start(self, state):
        """When the loop starts, before anything is compiled."""

    def on_step(self, state, loss):
        """After each optimizer step, with its training loss."""

    def on_evaluate(self, state, row, is_best):
        """After each evaluation: `row` is its metrics.jsonl row; `is_best` says whether its
        validation loss is the best so far (the state already records it, and best.npz holds its
        weights)."""

    def on_checkpoint(self, state, weights, carry):
        """When the loop has saved a checkpoint: `weights` ({name: array}) were checked to be
        finite and to give a finite loss; `carry` is the carried state (or None, when every window
        starts from zeros)."""

    def on_end(self, state):
        """When the loop stops, however it stops."""


class MetricsLog(Hook):
    """Appends each evaluation's row to metrics.jsonl, with the `extra` fields (how the session
    spreads the work)."""

    def __init__(self, run, extra=None):
        self.run, self.extra = run, extra or {}

    def on_evaluate(self, state, row, is_best):
        self.run.metrics.append(dict(row, **self.extra))


def start_line(model_cfg, parameters, train_ids, val_ids, vocab_size, budget, state):
    """What is about to train, on what, for how long: "GRU 256x1 (268,161 parameters) on 1,003,855
    characters (65 distinct; 111,539 more validate) for 20 epochs or 1m00s, whichever ends first";
    an output layer other than the full softmax is named after the parameters."""
    from charrnn import softmax

    layer = "" if model_cfg.output_layer == "full" else f", {softmax.describe(model_cfg)}"
    return (
        f"{model_cfg.model.upper()} {model_cfg.units}x{model_cfg.layers} ({parameters:,} parameters{layer}) on "
        f"{len(train_ids):,} characters ({vocab_size:,} distinct; {len(val_ids):,} more validate) "
        f"{budget.describe_left(state)}"
    )


class ProgressBar(Hook):
    """Progress over the budget on `stream` (stderr): the time left, the training loss (smoothed),
    the last validation loss, epochs done, the step and the speed, most important first.

    On a terminal, a tqdm bar redrawn in place a few times a second, fitted to the terminal's
    width: when it is narrow, the speed goes first, then the step, the epochs, the bar itself. At
    the end it is drawn once more with the final numbers (those of the closing summary) and left.
    Elsewhere (stderr sent to a log file), a plain line every LOG_EVERY_S seconds and none at the
    end, where the summary follows. The speed is that of training alone (not the first step,
    which compiles, nor evaluations and checkpoints), shown once measured over MEASURE_S."""

    REDRAW_S = 0.25
    LOG_EVERY_S = 30.0
    MEASURE_S = 1.0
    BAR_WIDTHS = (20, 10)

    def __init__(self, budget, stream=None):
        self.budget = budget
        self.stream = stream or sys.stderr
        self.tty = _isatty(self.stream)
        self.bar = None  # the tqdm bar on a terminal, from the first draw
        self.ema = None  # the training loss, smoothed
        self.last_step = None  # (time, chars_seen) when the last step ended, unless training paused since
        self.measured = [0.0, 0]  # seconds of training between steps, and their characters
        self.speed = None  # training characters per second, once measured over MEASURE_S
        self.last_draw = time.monotonic()

    def on_start(self, state):
        if self.tty:
            self._draw(state, note="compiling the steps")

    def on_step(self, state, loss):
        first = self.ema is None
        self.ema = loss if first else 0.95 * self.ema + 0.05 * loss
        now = time.monotonic()
        if self.last_step is not None:
            self.measured[0] += now - self.last_step[0]
            self.measured[1] += state.chars_seen - self.last_step[1]
            if self.measured[0] >= self.MEASURE_S:
                self.speed = self.measured[1] / self.measured[0]
        self.last_step = (now, state.chars_seen)
        if self.tty and (first or now - self.last_draw >= self.REDRAW_S):
            self._draw(state)
        elif not self.tty and now - self.last_draw >= self.LOG_EVERY_S:
            pct, parts = self._parts(state)
            shown = ", ".join(text for name, text in parts if name != "step")
            print(f"step {state.step:,} ({pct:.0f}%): {shown}", file=self.stream, flush=True)
            self.last_draw = now

    def on_evaluate(self, state, row, is_best):
        self.last_step = None  # the time until the next step is not training

    def on_checkpoint(self, state, weights, carry):
        self.last_step = None

    def on_end(self, state):
        if self.tty and self.ema is not None:
            self._draw(state, final=True)
        if self.bar is not None:
            self.bar.close()
            self.bar = None

    def _parts(self, state, final=False, note=None):
        """(percent done, [(name, text)] in the order shown). At the end: 100% if the budget is
        spent, and neither the time left nor the speed (the summary says them)."""
        budget = self.budget
        pct = 100.0 if final and budget.spent(state) else 100.0 * budget.progress(state)
        parts = []
        left = budget.seconds_left(state, self.speed or 0.0)
        if not final and left != math.inf:
            parts.append(("left", f"{duration(left)} left"))
        if note:
            return pct, parts + [("note", note)]
        parts.append(("loss", f"loss {self.ema:.3f}"))
        if state.last_val_carried is not None:
            parts.append(("val", f"val {state.last_val_carried:.3f}"))
        parts.append(("epochs", f"epochs {budget.epochs_done(state):.2f}/{budget.cfg.epochs:,}"))
        parts.append(("step", f"step {state.step:,}"))
        if not final and self.speed is not None:
            parts.append(("speed", f"{self.speed:,.0f} chars/s"))
        return pct, parts

    def _draw(self, state, final=False, note=None):
        from tqdm import tqdm

        self.last_draw = time.monotonic()
        pct, parts = self._parts(state, final, note)
        bar_format, desc = fit_line(parts, _columns(self.stream) - 1, self.BAR_WIDTHS)
        n = int(round(pct * 10))
        if self.bar is None:
            self.bar = tqdm(
                total=1000, initial=n, file=self.stream, bar_format=bar_format, desc=desc, leave=True, dynamic_ncols=True
            )
            return
        self.bar.n = n
        self.bar.bar_format = bar_format
        self.bar.set_description_str(desc, refresh=True)


# Which of a bar line's parts go first when the terminal is narrow ("bar" halves the bar, then
# removes it); the time left and the loss stay.
DROP_ORDER = ("speed", "step", "epochs", "bar", "bar", "val")


def fit_line(parts, width, bar_widths=ProgressBar.BAR_WIDTHS):
    """(tqdm bar_format, description) for a line of at most `width` characters: "NN%|BAR| " then
    the parts' texts joined by ", ", dropping parts and narrowing the bar in DROP_ORDER until it
    fits (and cutting the description, if even the least does not)."""
    shown, bars, drops = [name for name, _ in parts], [*bar_widths, 0], iter(DROP_ORDER)

    def line():
        bar = bars[0]
        prefix = f"{{percentage:3.0f}}%|{{bar:{bar}}}| " if bar else "{percentage:3.0f}% "
        desc = ", ".join(text for name, text in parts if name in shown)
        return prefix, desc, (bar + 7 if bar else 5) + len(desc)

    prefix, desc, length = line()
    while length > width:
        drop = next(drops, None)
        if drop is None:
            desc = desc[: max(0, width - (length - len(desc)))]
            break
        if drop == "bar":
            bars.pop(0)
        elif drop in shown:
            shown.remove(drop)
        prefix, desc, length = line()
    return prefix + "{desc}", desc


def _isatty(stream):
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


def _columns(stream):
    """The width of the terminal `stream` writes to (else COLUMNS, else 80)."""
    try:
        return os.get_terminal_size(stream.fileno()).columns or 80
    except (AttributeError, OSError, ValueError):
        try:
            return int(os.environ.get("COLUMNS", "")) or 80
        except ValueError:
            return 80
