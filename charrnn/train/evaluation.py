"""The validation losses, both through one compiled evaluation step: windows from a zero state
(val_loss), and the text read as a few long streams with the state carried (val_loss_carried);
and what an evaluation costs."""

import time

import numpy as np

from charrnn import data

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
# Evaluation uses at most this many validation characters (evenly spaced windows), so that it
# stays quick on large corpora; tiny Shakespeare's 111,540 are all used.
MAX_EVAL_CHARS = 262_144
# Windows of validation text that a checkpoint's sanity check evaluates.
PROBE_WINDOWS = 128


def carried_estimate(num_val, seq_length):
    """What training's carried validation loss is measured on, as its messages say: "an estimate on
    the first 262,145 of 1,000,000 validation characters, as 64 stretches each from a zero state"
    (`charrnn eval` reads the whole validation text as one stretch)."""
    text = max(1, min(num_val, MAX_EVAL_CHARS + 1))
    stretches = max(1, min(CARRIED_STREAMS, (text - 1) // max(1, seq_length)))
    part = f"all {num_val:,}" if text >= num_val else f"the first {text:,} of {num_val:,}"
    each = "each from a zero state" if stretches > 1 else "from a zero state"
    noun = "stretch" if stretches == 1 else "stretches"
    return f"an estimate on {part} validation characters, as {stretches:,} {noun} {each}"


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
        seq = self.seq_length
        k, length, batch = self._carried_plan(len(text), streams)
        total = 0.0
        for first in range(0, k, batch):
            starts = np.arange(first, min(first + batch, k), dtype=np.int64) * length
            n, state = len(starts), self._zeros()
            for t in range(0, length, seq):
                width = min(seq, length - t)
                chunk = data.rows(text, starts + t, width + 1).astype(np.int32)  # (n, width + 1)
                x, y, mask = np.zeros((batch, seq), np.int32), np.zeros((batch, seq), np.int32), np.zeros((batch, seq), np.float32)
                x[:n, :width], y[:n, :width], mask[:n, :width] = chunk[:, :-1], chunk[:, 1:], 1
                part, state = self._eval(*self.replicas.split(x, y, mask), state)
                total += float(part)
        return total / (k * length)

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

    def time_eval_step(self):
        """(seconds of a first evaluation step, which compiles it if it is the first; seconds of a
        second). Every worker must call it at the same point (the step reduces over the replicas)."""
        zeros = np.zeros((self.eval_batch, self.seq_length), np.int32)
        args = self.replicas.split(zeros, zeros, zeros.astype(np.float32))
        seconds = []
        for _ in range(2):
            started = time.perf_counter()
            float(self._eval(*args, self._zeros())[0])
            seconds.append(time.perf_counter() - started)
        return seconds


class Validation:
    """The validation text as the training loop evaluates it: at most MAX_EVAL_CHARS of it, as
    windows (`loss`) and read with the state carried (`carried_loss`)."""

    def __init__(self, evaluator, val_ids, seq_length):
        self.evaluator = evaluator
        self.x, self.y = data.validation_windows(val_ids, seq_length, MAX_EVAL_CHARS)
        self.text = val_ids[: MAX_EVAL_CHARS + 1]  # read with the state carried

    def loss(self, max_windows=None):
        """Mean loss over the validation windows (or the first `max_windows`), in nats per character."""
        return self.evaluator.mean_loss(self.x[:max_windows], self.y[:max_windows])

    def carried_loss(self):
        return self.evaluator.carried_loss(self.text)

    def probe(self):
        """The loss of the first PROBE_WINDOWS windows: the sanity check before a checkpoint."""
        return self.loss(PROBE_WINDOWS)

    def costs(self):
        """Compiles the evaluation step and returns (seconds it took to compile, seconds an
        evaluation takes, seconds a checkpoint's probe takes), estimated from two steps."""
        first, step = self.evaluator.time_eval_step()
        evaluation_s = step * self.evaluator.eval_steps(len(self.x), len(self.text))
        probe_s = step * self.evaluator.eval_steps(min(PROBE_WINDOWS, len(self.x)))
        return max(0.0, first - step), evaluation_s, probe_s
