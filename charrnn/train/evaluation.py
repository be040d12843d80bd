"""The validation losses, both through one compiled evaluation step: windows from a zero state
(val_loss), and the text read as a few long streams with the state carried (val_loss_carried);
what an evaluation costs; and the part of the validation text the training loop scores (how much
is train.evalplan's decision)."""

import time

import numpy as np

from charrnn import data
from charrnn.train.evalplan import layout, stretch_count, subset_steps, windows_scored

# Stretches of the validation text read side by side, state carried, for the carried loss: on tiny
# Shakespeare's 111,540 validation characters, 1,742 each. Only each stretch's first characters
# lack context, and the models measured use less than 100 characters of it (docs/benchmarks.md).
CARRIED_STREAMS = 64
# Windows (or carried stretches) per evaluation step, at most: the same for both validation
# losses, so that one compiled step serves both.
EVAL_BATCH = CARRIED_STREAMS
# An evaluation step's logits, (windows, seq_length, vocab_size) float32, stay under this many
# bytes: a large vocabulary gets fewer windows per step (100,000 characters and --seq-length 100:
# one window per replica, 40 MB each, instead of 5 GB for 128 windows). Only one window per
# replica can be more. The losses are means over every window, so the batch does not change them.
EVAL_LOGITS_BYTES = 64 * 2**20
# Training's evaluations use at most this many validation characters (fewer when they would take
# more than their share of the time: train.evalplan); tiny Shakespeare's 111,540 fit.
MAX_EVAL_CHARS = 262_144
# Windows of validation text that a checkpoint's sanity check evaluates, at most: one evaluation
# step's worth (fewer for a large vocabulary).
PROBE_WINDOWS = 128


def carried_estimate(num_val, seq_length, scored=None, stretches=None):
    """What training's carried validation loss is measured on, as its messages say: "an estimate on
    all 111,540 validation characters, as 64 stretches each from a zero state"; given the
    characters `scored` as `stretches` stretches (a part: Validation.estimate), "an estimate on
    34,560 of 1,000,000 validation characters, as 54 evenly spaced stretches each from a zero
    state" (`charrnn eval` reads the whole validation text as one stretch)."""
    if scored is None:
        text = max(1, min(num_val, MAX_EVAL_CHARS + 1))
        stretches = max(1, min(CARRIED_STREAMS, (text - 1) // max(1, seq_length)))
        part = f"all {num_val:,}" if text >= num_val else f"the first {text:,} of {num_val:,}"
    else:
        part = f"{scored:,} of {num_val:,}"
    each = "each from a zero state" if stretches > 1 else "from a zero state"
    noun = "stretch" if stretches == 1 else "stretches"
    spaced = "evenly spaced " if scored is not None and stretches > 1 else ""
    return f"an estimate on {part} validation characters, as {stretches:,} {spaced}{noun} {each}"


def eval_batch(seq_length, vocab_size, replicas):
    """Windows per evaluation step: at most EVAL_BATCH and EVAL_LOGITS_BYTES of logits, a
    multiple of `replicas`, at least one window per replica."""
    fits = EVAL_LOGITS_BYTES // (4 * seq_length * max(1, vocab_size))
    return max(1, min(EVAL_BATCH, fits) // replicas) * replicas


class Evaluator:
    """`mean_loss(x, y)` is the mean loss (nats per character) over any number of windows, each
    from a zero state, and `carried_loss(text)` the loss of a text read as a few long streams with
    the state carried; both go `eval_batch` windows a step. Every worker must call them at the same
    points (the step reduces over the replicas)."""

    def __init__(self, tf, forward, replicas, seq_length):
        self.replicas, self.seq_length = replicas, seq_length
        self.state_shape = forward.state_shape
        self.eval_batch = eval_batch(seq_length, forward.cfg.vocab_size, replicas.count)
        strategy = replicas.strategy

        def eval_sum(x, y, mask, state):
            logits, state = forward.run_sequence(x, state, training=False)
            losses = tf.nn.sparse_softmax_cross_entropy_with_logits(labels=y, logits=logits)
            return tf.reduce_sum(losses * mask), state

        eval_sum = forward.per_replica(eval_sum)

        def eval_step(*args):
            """The sum of the masked losses over the replicas, and the state as each replica left it."""
            total, state = strategy.run(eval_sum, args=args)
            return strategy.reduce("SUM", total, axis=None), state

        self._eval = forward.compile(eval_step)

    def _zeros(self):
        return self.replicas.zeros((self.eval_batch, *self.state_shape))

    def mean_loss(self, x, y):
        """Mean cross-entropy over windows x, y (windows, time), each from a zero state, in nats
        per character."""
        batch = self.eval_batch
        pad = -len(x) % batch
        mask = np.zeros((len(x) + pad, x.shape[1]), np.float32)
        mask[: len(x)] = 1
        x = np.concatenate([x, np.zeros((pad, x.shape[1]), np.int32)])
        y = np.concatenate([y, np.zeros((pad, y.shape[1]), np.int32)])
        zeros = self._zeros()
        total = sum(
            float(self._eval(*self.replicas.split(x[i : i + batch], y[i : i + batch], mask[i : i + batch]), zeros)[0])
            for i in range(0, len(x), batch)
        )
        return total / float(mask.sum())

    def carried_loss(self, text, streams=CARRIED_STREAMS):
        """Mean cross-entropy (nats per character) over `text` (an array or a DiskText) read
        as up to `streams` contiguous stretches, each from its first character to its last with
        the state carried, `seq_length` characters per step, `eval_batch` stretches side by side.
        Every character but each stretch's first (and the few left over at the end) is a target
        once."""
        k, length, _ = self._carried_plan(len(text), streams)
        return self.stretches_loss(text, np.arange(k, dtype=np.int64) * length, length)

    def stretches_loss(self, text, starts, length):
        """Mean cross-entropy (nats per character) of the stretches of `text` that begin at
        `starts`, each read from a zero state with the state carried, its `length` characters after
        the first each a target, `eval_batch` stretches side by side."""
        seq, batch = self.seq_length, self.eval_batch
        total = 0.0
        for first in range(0, len(starts), batch):
            group = np.asarray(starts[first : first + batch], np.int64)
            n, state = len(group), self._zeros()
            for t in range(0, length, seq):
                width = min(seq, length - t)
                chunk = data.rows(text, group + t, width + 1).astype(np.int32)  # (n, width + 1)
                x, y, mask = np.zeros((batch, seq), np.int32), np.zeros((batch, seq), np.int32), np.zeros((batch, seq), np.float32)
                x[:n, :width], y[:n, :width], mask[:n, :width] = chunk[:, :-1], chunk[:, 1:], 1
                part, state = self._eval(*self.replicas.split(x, y, mask), state)
                total += float(part)
        return total / (len(starts) * length)

    def _carried_plan(self, text_length, streams):
        """(stretches, targets per stretch, stretches per step) of carried_loss on a text: the
        stretches go eval_batch at a time, the step of mean_loss (one compiled shape for both)."""
        k = max(1, min(streams, (text_length - 1) // self.seq_length))
        return k, (text_length - 1) // k, self.eval_batch

    def eval_steps(self, windows, text_length=None, streams=CARRIED_STREAMS):
        """How many evaluation steps mean_loss of `windows` windows and, given `text_length`,
        carried_loss of a text that long take."""
        steps = -(-windows // self.eval_batch)
        if text_length is not None:
            k, length, batch = self._carried_plan(text_length, streams)
            steps += -(-k // batch) * -(-length // self.seq_length)
        return steps

    def time_eval_step(self, steps=2):
        """Seconds of each of `steps` evaluation steps (the first compiles it if it is the first
        run). Every worker must call it at the same point (the step reduces over the replicas)."""
        zeros = np.zeros((self.eval_batch, self.seq_length), np.int32)
        args = self.replicas.split(zeros, zeros, zeros.astype(np.float32))
        seconds = []
        for _ in range(steps):
            started = time.perf_counter()
            float(self._eval(*args, self._zeros())[0])
            seconds.append(time.perf_counter() - started)
        return seconds


class Validation:
    """The validation text as the training loop evaluates it, as windows (`loss`) and read with
    the state carried (`carried_loss`): all of it (at most MAX_EVAL_CHARS), or evenly spaced
    stretches of it, the same at every evaluation of a session. The loop says how many windows,
    once (`use`, what `choose` gives: train.evalplan); `chars_scored` is how many characters each
    loss then has as targets."""

    def __init__(self, evaluator, val_ids, seq_length):
        self.evaluator, self.val_ids, self.seq_length = evaluator, val_ids, seq_length
        self.windows = (len(val_ids) - 1) // seq_length
        self.stretches = stretch_count(evaluator.eval_batch, self.windows, CARRIED_STREAMS)
        # Windows per stretch for all of the text that is used (at most MAX_EVAL_CHARS).
        self.most = max(1, min(self.windows, MAX_EVAL_CHARS // seq_length) // self.stretches)
        self.whole = self.windows * seq_length <= MAX_EVAL_CHARS  # all of it can be scored
        probe = min(PROBE_WINDOWS, evaluator.eval_batch)
        self.probe_x, self.probe_y = data.validation_windows(val_ids, seq_length, probe * seq_length)
        self.size = None  # windows scored, from `use` on
        self.x = self.y = self.text = self.starts = self.length = None
        self.chars_scored = 0

    def choose(self, allowance, step_s):
        """Windows to score for evaluations of at most `allowance` seconds at `step_s` seconds an
        evaluation step (evalplan.windows_scored)."""
        return windows_scored(allowance, step_s, self.stretches, self.evaluator.eval_batch, self.most)

    def cost_s(self, size, step_s):
        """Seconds an evaluation of `size` windows takes at `step_s` seconds a step."""
        if self._is_whole(size):
            kept = min(self.windows, max(1, MAX_EVAL_CHARS // self.seq_length))
            return step_s * self.evaluator.eval_steps(kept, min(len(self.val_ids), MAX_EVAL_CHARS + 1))
        return step_s * subset_steps(*layout(size, self.stretches), self.evaluator.eval_batch)

    def use(self, size):
        """From now on, evaluations score `size` windows (evalplan.layout): the whole text when
        that is all of it, and it is not longer than MAX_EVAL_CHARS."""
        seq = self.seq_length
        self.size = size
        if self._is_whole(size):
            self.x, self.y = data.validation_windows(self.val_ids, seq, MAX_EVAL_CHARS)
            self.text, self.starts = self.val_ids[: MAX_EVAL_CHARS + 1], None  # read with the state carried
        else:
            # Evenly spaced stretches of `each` whole windows, apart: the k-th of `count` begins
            # at window k * (windows - each) // (count - 1).
            count, each = layout(min(size, self.stretches * self.most), self.stretches)
            k = np.arange(count, dtype=np.int64)
            self.starts = k * (self.windows - each) // max(1, count - 1) * seq
            self.length = each * seq
            windows = (self.starts[:, None] + np.arange(each) * seq).ravel()
            self.x, self.y = data.windows(self.val_ids, windows, seq)
        self.chars_scored = int(self.x.size)

    @property
    def smallest(self):
        """The fewest windows an evaluation scores: one step's worth, or every window there is."""
        return min(self.stretches * self.most, self.evaluator.eval_batch)

    def _is_whole(self, size):
        return self.whole and size >= self.stretches * self.most

    def loss(self):
        """Mean loss over the validation windows, in nats per character."""
        return self.evaluator.mean_loss(self.x, self.y)

    def carried_loss(self):
        if self.starts is None:
            return self.evaluator.carried_loss(self.text)
        return self.evaluator.stretches_loss(self.val_ids, self.starts, self.length)

    def probe(self):
        """The loss of one evaluation step of evenly spaced windows: the sanity check before a
        checkpoint."""
        return self.evaluator.mean_loss(self.probe_x, self.probe_y)

    def costs(self):
        """Compiles the evaluation step and returns (seconds it took to compile, seconds an
        evaluation step takes, seconds a checkpoint's probe takes), from two steps."""
        first, step = self.evaluator.time_eval_step()
        probe_s = step * self.evaluator.eval_steps(len(self.probe_x))
        return max(0.0, first - step), step, probe_s

    def step_s(self):
        """Seconds an evaluation step takes now (one step, timed). Every worker must call it at
        the same point."""
        return self.evaluator.time_eval_step(steps=1)[0]

    def estimate(self):
        """What the carried loss is measured on, as messages say it (carried_estimate)."""
        if self.starts is None:
            return carried_estimate(len(self.val_ids), self.seq_length)
        return carried_estimate(len(self.val_ids), self.seq_length, self.chars_scored, len(self.starts))
