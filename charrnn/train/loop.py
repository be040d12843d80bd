"""The outer loop: epochs, the learning-rate schedule, the cadence of evaluations and checkpoints,
why training stops, and Ctrl-C.

It drives the inner step (train.steps.TrainStep) over the batches of each epoch, keeps the
TrainState, has the checkpoint manager (train.checkpoints) save what should be kept, and tells the
hooks (train.hooks) what happened.
"""

import math
import signal
import time

import numpy as np

from charrnn.errors import CharRNNError, Interrupted, TrainingDiverged
from charrnn.train.checkpoints import finite
from charrnn.train.evalplan import Plan, Timing
from charrnn.units import bits_per_char

# A loss above this (nats per character) means training has diverged even if it is still finite:
# a uniform guess over 100,000 characters costs 11.5.
DIVERGED_LOSS = 1000.0


def saved_checkpoint(run_path):
    """The checkpoint the run directory holds now, read from disk, as a message says it ("the
    checkpoint at step 1,200 (1.92 of 20 epochs done)"); None if none can be read. For a training
    stopped before it could save, or in the middle of a save (a checkpoint is replaced atomically:
    the disk holds the old one or the new one)."""
    from charrnn.rundir import RunDir
    from charrnn.train.budget import Budget

    run = RunDir(run_path)
    try:
        settings, state = run.settings.read(), run.checkpoint.read_state()
        budget = Budget(settings.train, int(settings.corpus["train_chars"]))
        return f"the checkpoint at step {state.step:,} ({budget.describe_done(state)})"
    except (CharRNNError, KeyError, TypeError, ValueError, ZeroDivisionError):
        return None


def resume_hint(run_path):
    return f"Resume with: charrnn train --resume --run-dir {run_path}"


def interrupted_before_training(run_path, resume):
    """The message for Ctrl-C before the loop began (the loop says its own): what is on disk."""
    saved = saved_checkpoint(run_path)
    if saved is None:
        return "interrupted before training started; nothing was saved"
    if resume:
        return f"interrupted before training went on; the run in {run_path} is as it was: {saved}. {resume_hint(run_path)}"
    return f"interrupted before training started; {run_path} holds {saved}. {resume_hint(run_path)}"


def diverged(loss):
    """Whether a training or validation loss shows that training has diverged."""
    return not math.isfinite(loss) or loss > DIVERGED_LOSS


class Loop:
    """Trains from `state` until the budget ends or a signal asks it to stop.

    step: train.steps.TrainStep; batching: train.batching.Batching (the windows of each epoch);
    validation: train.evaluation.Validation; checkpoints: train.checkpoints.Checkpoints (the saves,
    the best weights, and the run directory, for messages); hooks: train.hooks.Hook objects.
    """

    def __init__(self, step, batching, validation, checkpoints, budget, state, hooks, log):
        self.step, self.batching, self.validation, self.checkpoints = step, batching, validation, checkpoints
        self.budget, self.state, self.cfg = budget, state, budget.cfg
        self.hooks, self.log = hooks, log
        self.timing = Timing()
        # How much each evaluation scores, and what the end of the run costs.
        self.plan = Plan(validation, budget, state, self.timing)

    @property
    def run_path(self):
        return self.checkpoints.run.path

    def run(self):
        """Trains; returns why it stopped, "epochs" or "time". Raises Interrupted after saving when
        a signal stopped it, or, after a second signal (which aborts at once), saying which
        checkpoint is on disk; and TrainingDiverged (keeping the last good checkpoint)."""
        try:
            with _StopRequest(self.log) as stop_request:
                try:
                    stop = self._train(stop_request)
                finally:
                    self._notify("on_end", self.state)
        except KeyboardInterrupt:
            saved = saved_checkpoint(self.run_path)
            kept = f"{saved} is kept, the steps after it are lost" if saved else f"no checkpoint in {self.run_path} could be read"
            raise Interrupted(f"aborted at step {self.state.step:,}; {kept}. {resume_hint(self.run_path)}") from None
        if stop == "interrupt":
            raise Interrupted(
                f"stopped at step {self.state.step:,}; checkpoint saved ({self.budget.describe_done(self.state)}). "
                f"{resume_hint(self.run_path)}"
            )
        return stop

    def _train(self, stop_request):
        """Every decision (evaluate, checkpoint, stop, the learning rate, how much to evaluate) is
        taken from values that every worker agrees on: the loss (reduced over the workers by the
        step), and what Replicas.agree reduces after each step and after each evaluation and
        checkpoint: a signal seen by any worker, the chief's clock and the chief's reserve for one
        more step and the last evaluation and checkpoint; and the chief's evaluation size (once) and,
        after each evaluation, when the next may begin (train.evalplan).
        Workers therefore always run the same collective operations in the same order, and never
        wait for each other in vain."""
        step, cfg, state = self.step, self.cfg, self.state
        self.t0 = time.monotonic() - state.elapsed_s
        self.next_eval_at, self.last_checkpoint = state.elapsed_s + cfg.eval_every_s, state.elapsed_s
        self._notify("on_start", state)
        # Compiled now, inside the budget; with a time budget, training stops early enough for one
        # more step and the last evaluation and checkpoint, whose costs are estimated until timed.
        self.plan.start(int(self.checkpoints.model.count_params()))
        self.window = _Window(state)  # the training losses since the last evaluation
        stop = None
        while stop is None:
            if state.batch_in_epoch == 0:
                step.state.reset()  # (a resume mid-epoch restored the carried state)
            for starts in self.batching.batches(self.budget.num_train, state.epoch, state.batch_in_epoch):
                step.learning_rate = self.budget.learning_rate(state)
                started = time.monotonic()
                loss, gradient_norm = step.train(starts)
                self._timed_step(time.monotonic() - started)
                if diverged(loss):
                    raise self._diverged(loss)
                agreed = self._agree(stop_request)
                state.step, state.batch_in_epoch = state.step + 1, state.batch_in_epoch + 1
                state.chars_seen += cfg.batch_size * cfg.seq_length
                self.window.add(loss, gradient_norm)
                agreed = self._evaluate_or_save(agreed)
                self._notify("on_step", state, loss)
                stop = self._why_stop(*agreed)
                if stop:
                    break
            else:
                state.epoch += 1
                state.batch_in_epoch = 0
                if state.epoch >= cfg.epochs:
                    stop = "epochs"
                else:
                    self._checkpoint()
                    self.last_checkpoint = state.elapsed_s
                    stop = self._why_stop(False, self._agree_clock())
        if self.window.losses and stop != "interrupt":
            self._evaluate(self.window)
        # The last evaluation and checkpoint count as training time, as every other one does.
        state.elapsed_s = max(state.elapsed_s, time.monotonic() - self.t0)
        self._checkpoint()
        state.elapsed_s = max(state.elapsed_s, time.monotonic() - self.t0)
        return stop

    def _evaluate_or_save(self, agreed):
        """The evaluation and the checkpoint that are due after a step; returns `agreed` (whether
        to stop, the reserve) with the reserve agreed anew after them, the clock having moved on
        while they ran. A signal counts from the next step on, as always."""
        state, cfg = self.state, self.cfg
        signalled, reserve = agreed
        if state.elapsed_s >= self.next_eval_at:
            began = state.elapsed_s
            self._evaluate(self.window)
            self.window = _Window(state)
            # The chief's: evalplan.Plan.next_evaluation_at reads the evaluations' measured time.
            _, self.next_eval_at, _ = self.step.replicas.agree(False, self.plan.next_evaluation_at(began), 0.0)
            reserve = self._agree_clock()
        if state.elapsed_s - self.last_checkpoint >= cfg.checkpoint_every_s:
            self.last_checkpoint = state.elapsed_s
            self._checkpoint()
            reserve = self._agree_clock()
        return signalled, reserve

    def _agree(self, stop_request):
        """(whether any worker was asked to stop, the chief's reserve); the state's clock becomes
        the chief's."""
        signalled, self.state.elapsed_s, reserve = self.step.replicas.agree(
            bool(stop_request.signal), time.monotonic() - self.t0, self.plan.ends.reserve()
        )
        return signalled, reserve

    def _agree_clock(self):
        """The chief's reserve; the state's clock becomes the chief's."""
        _, self.state.elapsed_s, reserve = self.step.replicas.agree(False, time.monotonic() - self.t0, self.plan.ends.reserve())
        return reserve

    def _why_stop(self, signalled, reserve):
        if signalled:
            return "interrupt"
        return "time" if self.budget.out_of_time(self.state, reserve) else None

    def _timed_step(self, seconds):
        self.timing.add_step(seconds, self.cfg.batch_size * self.cfg.seq_length)
        self.plan.ends.add_step(seconds)

    def _evaluate(self, window):
        """Validation, both ways: windows of seq_length from a zero state (val_loss: comparable
        with nanoGPT's figures and with runs before the state was carried), and the text read as
        a few long streams with the state carried (val_loss_carried: how `sample` and `eval` use
        the model), on the same validation characters every time (val_chars_scored of them). The
        best weights are the best by the carried loss (Checkpoints.offer_best)."""
        state = self.state
        chars_per_s = window.chars_per_s(state)  # training alone, before the evaluation's time
        started = time.monotonic()
        self.plan.choose(self.step.replicas.agree)
        val_loss = self.validation.loss()
        carried = self.validation.carried_loss()
        if diverged(val_loss) or diverged(carried):
            raise self._diverged(max(val_loss, carried))
        row = {
            "step": state.step,
            "epoch": round(self.budget.epochs_done(state), 4),
            "chars_seen": state.chars_seen,
            "elapsed_s": round(state.elapsed_s, 2),
            "train_loss": round(float(np.mean(window.losses)), 5),
            "val_loss": round(val_loss, 5),
            "val_bpc": round(bits_per_char(val_loss), 5),
            "val_loss_carried": round(carried, 5),
            "val_bpc_carried": round(bits_per_char(carried), 5),
            "val_chars_scored": self.validation.chars_scored,
            "eval_s": round(time.monotonic() - started, 3),
            "learning_rate": self.step.learning_rate,
            "grad_norm": round(float(np.mean(window.norms)), 5),
            "chars_per_s": round(chars_per_s, 1),
        }
        state.last_val_loss, state.last_val_carried, state.last_train_loss = val_loss, carried, row["train_loss"]
        is_best = self.checkpoints.offer_best(state, carried)
        self._notify("on_evaluate", state, row, is_best)
        self.plan.record_evaluation(time.monotonic() - started)

    def _checkpoint(self):
        # Never replace a good checkpoint with weights that have diverged: they must be finite and
        # still give a finite loss on one batch of validation windows.
        started = time.monotonic()
        weights = self.checkpoints.weights()
        if not finite(weights):
            raise self._diverged(math.nan)
        probe = self.validation.probe()
        if diverged(probe):
            raise self._diverged(probe)
        carry = self.step.state.saved(self.cfg.batch_size)
        self.checkpoints.save(self.state, weights, carry)
        self._notify("on_checkpoint", self.state, weights, carry)
        self.plan.ends.checkpoint_s = time.monotonic() - started

    def _notify(self, event, *args):
        for hook in self.hooks:
            getattr(hook, event)(*args)

    def _diverged(self, loss):
        lr = self.cfg.learning_rate
        return TrainingDiverged(
            f"training diverged: the loss became {loss} at step {self.state.step + 1:,}; the last good "
            f"checkpoint is kept. Use a lower --learning-rate (now {lr:g}; try {lr / 4:g}): "
            f"charrnn train --resume --learning-rate {lr / 4:g} --run-dir {self.run_path}"
        )


class _Window:
    """The training losses and throughput since an evaluation."""

    def __init__(self, state):
        self.losses, self.norms = [], []
        self.started, self.chars_at_start = time.monotonic(), state.chars_seen

    def add(self, loss, gradient_norm):
        self.losses.append(loss)
        self.norms.append(gradient_norm)

    def chars_per_s(self, state):
        return (state.chars_seen - self.chars_at_start) / max(time.monotonic() - self.started, 1e-9)


class _StopRequest:
    """While active, Ctrl-C and SIGTERM set `signal` (the loop stops after the current step); a
    second one aborts at once. The previous handlers come back on exit."""

    def __init__(self, log):
        self.log, self.signal, self.handlers = log, None, {}

    def __enter__(self):
        try:
            self.handlers = {s: signal.signal(s, self._request) for s in (signal.SIGINT, signal.SIGTERM)}
        except ValueError:  # not the main thread: leave signals alone
            self.handlers = {}
        return self

    def __exit__(self, *exc):
        for s, handler in self.handlers.items():
            signal.signal(s, handler)

    def _request(self, signum, frame):
        if self.signal:
            raise KeyboardInterrupt
        self.signal = signum
        self.log("\nstopping after this step and saving a checkpoint (press Ctrl-C again to abort)")
