"""The inner step: compiled training and evaluation steps of one model under one tf.distribute
strategy, with the recurrent kernel chosen explicitly.

Every step goes through `strategy.run` and `strategy.reduce`, whatever the strategy: one device,
several (MirroredStrategy) or several processes (MultiWorkerMirroredStrategy). A global batch of
windows is split evenly over the replicas; each replica gathers only its own windows.

XLA compiles the fused kernel's forward and backward pass inside each replica, never around
`strategy.run` (that fails under a real strategy: keras-team/keras#19005), except under the default
strategy (one device), where the whole step, optimizer included, is compiled.
"""

import time
from dataclasses import dataclass

import numpy as np

from charrnn import cells, data, model as model_lib
from charrnn.backend import KERNELS
from charrnn.errors import UsageError

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


def eval_batch(seq_length, vocab_size, replicas):
    """Windows per evaluation step: at most EVAL_BATCH and EVAL_LOGITS_BYTES of logits, a
    multiple of `replicas`, at least one window per replica."""
    fits = EVAL_LOGITS_BYTES // (4 * seq_length * max(1, vocab_size))
    return max(1, min(EVAL_BATCH, fits) // replicas) * replicas


@dataclass(frozen=True)
class Kernel:
    """How the recurrences run: "fused" (charrnn.fastrnn's hand-written recurrences, compiled by
    XLA), "cudnn" (Keras's layers on NVIDIA's cuDNN kernels, no XLA: XLA has no cuDNN RNN kernel,
    keras-team/keras#18456) or "keras" (Keras's layers on TensorFlow's generic loop, no XLA)."""

    name: str

    @property
    def use_cudnn(self):
        """Keras's `use_cudnn` for the model's recurrent layers."""
        return {"cudnn": "auto", "keras": False}.get(self.name, "auto")


def choose_kernel(tf, requested, cell):
    """The kernel for `--kernel requested` on this machine. `auto` is fused on CPUs (measured: 1.5x
    the training speed of Keras's layers on 2 cores, docs/benchmarks.md) and cuDNN on a GPU (what
    Keras itself uses there; not yet measured against fused on a GPU)."""
    gpu = bool(tf.config.list_physical_devices("GPU"))
    if requested == "auto":
        if gpu and cell != "rnn":
            return Kernel("cudnn")
        return Kernel("fused")  # also on a GPU for SimpleRNN, which has no cuDNN kernel
    if requested == "cudnn":
        if not gpu:
            raise UsageError("--kernel cudnn needs an NVIDIA GPU, and TensorFlow sees none; use --kernel auto")
        if cell == "rnn":
            raise UsageError("cuDNN has no kernel for --model rnn; use --kernel fused or keras")
    if requested not in KERNELS:
        raise UsageError(f"--kernel must be one of {', '.join(KERNELS)}. Received: {requested!r}")
    return Kernel(requested)


def global_clip_adam(keras, tf, learning_rate, clipnorm):
    """Adam that clips the gradient by its global norm after the sum over replicas.

    Keras's own `global_clipnorm` clips each replica's share before the all-reduce, which under
    several replicas is not the global norm. Keras 3 sums the replicas' gradients in
    `_all_reduce_sum_gradients` (an identity with one replica); the clip goes right after it.
    tests/test_distribute.py checks that two replicas clip as one device does.
    """

    class GlobalClipAdam(keras.optimizers.Adam):
        gradient_norm = None  # the global norm before clipping, of the step being traced

        def _all_reduce_sum_gradients(self, grads_and_vars):
            pairs = super()._all_reduce_sum_gradients(grads_and_vars)
            # Dense: the norm of an embedding's IndexedSlices would count a repeated row's parts
            # apart instead of summing them (Keras's layers give slices; fastrnn a dense tensor).
            dense = [tf.convert_to_tensor(g) for g, _ in pairs]
            grads, self.gradient_norm = tf.clip_by_global_norm(dense, clipnorm)
            return list(zip(grads, [v for _, v in pairs]))

    return GlobalClipAdam(learning_rate=learning_rate)


def _share(array, context):
    """The equal share of a global batch (its first axis) that the replica of `context` takes."""
    i, n = context.replica_id_in_sync_group, context.num_replicas_in_sync
    return array[len(array) // n * i : len(array) // n * (i + 1)]


def _xla_per_replica(tf, fn):
    """`fn` compiled by XLA inside each replica, one tf.function per replica: a function traced
    in one replica captures that replica's variables, and XLA cannot read a variable that lives on
    another device (https://www.tensorflow.org/xla/known_issues)."""
    compiled = {}

    def call(*args):
        replica = int(tf.get_static_value(tf.distribute.get_replica_context().replica_id_in_sync_group))
        if replica not in compiled:
            compiled[replica] = tf.function(fn, jit_compile=True)
        return compiled[replica](*args)

    return call


class Steps:
    """`train(starts)` takes one optimizer step on the global batch of windows that begin at
    `starts` and returns its loss; `agree(stop, clock)` makes the workers agree on when to stop,
    evaluate and save; `mean_loss(x, y)` is the mean loss (nats per character) over any number of
    windows, each from a zero state, and `carried_loss(text)` the loss of a text read as a few
    long streams with the state carried.

    With `carry`, each training step starts from the state the previous one ended in (one state
    per window of the batch: a window continues the window of the same row in the previous
    batch); `reset_state()` zeroes it (at an epoch's start), `carried_state()` and
    `restore_state(array)` save and restore it. Without, every window starts from zeros.

    `text` is the training text (an array or a data.DiskText): each replica reads its own share of
    the windows from it. Build Steps outside `strategy.scope()`.
    """

    def __init__(self, tf, strategy, model, model_cfg, optimizer, seq_length, kernel, text, several_workers=False, carry=False):
        self.strategy, self.optimizer, self.several_workers = strategy, optimizer, several_workers
        self.text, self.seq_length, self.carry = text, seq_length, carry
        self.replicas = strategy.num_replicas_in_sync
        self.eval_batch = eval_batch(seq_length, model_cfg.vocab_size, self.replicas)
        self.state_shape = (model_cfg.layers * cells.states_per_layer(model_cfg.model), model_cfg.units)
        default = strategy is tf.distribute.get_strategy()  # one device, no tf.distribute machinery
        fused = kernel.name == "fused"
        if fused:
            from charrnn import fastrnn

            def run_sequence(x, state, training):
                return fastrnn.run_sequence(model, model_cfg, x, state, training)
        else:

            def run_sequence(x, state, training):
                return model_lib.run_sequence(model, model_cfg, x, state, training)

        def logits_of(x, training):
            return run_sequence(x, tf.zeros([tf.shape(x)[0], *self.state_shape]), training)[0]

        self.logits_of = logits_of  # (x, training) -> logits (batch, time, vocab), as the steps compute them
        variables = model.trainable_variables

        def loss_and_grads(x, y, state, global_batch):
            with tf.GradientTape() as tape:
                logits, state = run_sequence(x, state, training=True)  # (batch, time, vocab)
                losses = tf.nn.sparse_softmax_cross_entropy_with_logits(labels=y, logits=logits)
                loss = tf.nn.compute_average_loss(tf.reduce_mean(losses, axis=1), global_batch_size=global_batch)
            return loss, tape.gradient(loss, variables), state

        def eval_sum(x, y, mask, state):
            logits, state = run_sequence(x, state, training=False)
            losses = tf.nn.sparse_softmax_cross_entropy_with_logits(labels=y, logits=logits)
            return tf.reduce_sum(losses * mask), state

        if fused and not default:
            loss_and_grads = _xla_per_replica(tf, loss_and_grads)
            eval_sum = _xla_per_replica(tf, eval_sum)

        def train_replica(x, y, state, global_batch):
            loss, grads, state = loss_and_grads(x, y, state, global_batch)
            optimizer.apply_gradients(zip(grads, variables))  # sums over replicas, then clips
            return loss, state, optimizer.gradient_norm  # the norm: the same in every replica

        def train_step(*args):
            loss, state, norm = strategy.run(train_replica, args=args)
            return strategy.reduce("SUM", loss, axis=None), state, strategy.reduce("MEAN", norm, axis=None)

        def summed(fn):
            """A step that runs `fn` in every replica and returns the sum of its first result over
            the replicas, and its second (a state) as each replica left it."""

            def step(*args):
                total, state = strategy.run(fn, args=args)
                return strategy.reduce("SUM", total, axis=None), state

            return tf.function(step, jit_compile=fused and default, reduce_retracing=True)

        self._train = tf.function(train_step, jit_compile=fused and default, reduce_retracing=True)
        self._eval = summed(eval_sum)
        self._agree = tf.function(lambda flags: strategy.reduce("SUM", strategy.run(lambda f: f, args=(flags,)), axis=None))
        self._zeros = {}  # batch -> the zero state, split over the replicas
        self.state = None  # the carried state, split over the replicas (None: zeros)

    def _split(self, *arrays):
        """The arrays (global batch first) split into equal shares, one per replica, as
        distributed values: each worker builds only the shares of its own replicas."""
        return self.strategy.experimental_distribute_values_from_function(lambda c: tuple(_share(a, c) for a in arrays))

    def _zero_state(self, batch):
        if batch not in self._zeros:
            (self._zeros[batch],) = self._split(np.zeros((batch, *self.state_shape), np.float32))
        return self._zeros[batch]

    def set_learning_rate(self, value):
        self.optimizer.learning_rate.assign(value)

    def learning_rate(self):
        return float(self.optimizer.learning_rate.numpy())

    def train(self, starts):
        """One optimizer step on the windows that begin at `starts`; returns (its loss, the
        gradient's global norm before clipping)."""

        def share(context):
            return data.windows(self.text, _share(starts, context), self.seq_length)

        x, y = self.strategy.experimental_distribute_values_from_function(share)
        state = self.state if self.carry and self.state is not None else self._zero_state(len(starts))
        loss, state, norm = self._train(x, y, state, len(starts))
        if self.carry:
            self.state = state
        return float(loss), float(norm)

    def reset_state(self):
        """Zeroes the carried state: the next step's windows start from nothing."""
        self.state = None

    def restore_state(self, array):
        """Sets the carried state from a (batch, layers * states per layer, units) array."""
        (self.state,) = self._split(np.asarray(array, np.float32))

    def carried_state(self, batch):
        """The carried state of a global batch of `batch` windows as one array, (batch, layers *
        states per layer, units); zeros after a reset. With several workers, every worker must
        call it at the same point (it gathers the other workers' shares)."""
        if self.state is None:
            return np.zeros((batch, *self.state_shape), np.float32)
        if self.replicas == 1:
            return np.asarray(self.strategy.experimental_local_results(self.state)[0])
        return self.strategy.gather(self.state, axis=0).numpy()

    def agree(self, stop, clock, reserve=0.0):
        """(whether any worker was asked to stop, the chief's clock, the chief's `reserve`), from
        this worker's `stop`, `clock` and `reserve` (seconds). One process needs no agreement;
        several sum over the replicas the stop requests, and the clock and reserve of replica 0
        (the chief's)."""
        if not self.several_workers:
            return stop, clock, reserve

        def share(context):
            chief = context.replica_id_in_sync_group == 0
            return np.float32([stop, clock if chief else 0.0, reserve if chief else 0.0])

        agreed = self._agree(self.strategy.experimental_distribute_values_from_function(share)).numpy()
        return bool(agreed[0] > 0), float(agreed[1]), float(agreed[2])

    def mean_loss(self, x, y):
        """Mean cross-entropy over windows x, y (windows, time), each from a zero state, in nats
        per character."""
        batch = self.eval_batch
        pad = -len(x) % batch
        mask = np.zeros((len(x) + pad, x.shape[1]), np.float32)
        mask[: len(x)] = 1
        x = np.concatenate([x, np.zeros((pad, x.shape[1]), np.int32)])
        y = np.concatenate([y, np.zeros((pad, y.shape[1]), np.int32)])
        zeros = self._zero_state(batch)
        total = sum(
            float(self._eval(*self._split(x[i : i + batch], y[i : i + batch], mask[i : i + batch]), zeros)[0])
            for i in range(0, len(x), batch)
        )
        return total / float(mask.sum())

    def carried_loss(self, text, streams=CARRIED_STREAMS):
        """Mean cross-entropy (nats per character) over `text` (an array or a data.DiskText) read
        as up to `streams` contiguous stretches, each from its first character to its last with
        the state carried, `seq_length` characters per step, `eval_batch` stretches side by side.
        Every character but each stretch's first (and the few left over at the end) is a target
        once."""
        seq = self.seq_length
        k, length, batch = self._carried_plan(len(text), streams)
        total = 0.0
        for first in range(0, k, batch):
            starts = np.arange(first, min(first + batch, k), dtype=np.int64) * length
            n, state = len(starts), self._zero_state(batch)
            for t in range(0, length, seq):
                width = min(seq, length - t)
                chunk = data.rows(text, starts + t, width + 1).astype(np.int32)  # (n, width + 1)
                x, y, mask = np.zeros((batch, seq), np.int32), np.zeros((batch, seq), np.int32), np.zeros((batch, seq), np.float32)
                x[:n, :width], y[:n, :width], mask[:n, :width] = chunk[:, :-1], chunk[:, 1:], 1
                part, state = self._eval(*self._split(x, y, mask), state)
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
        batch = self.eval_batch
        zeros = np.zeros((batch, self.seq_length), np.int32)
        args = self._split(zeros, zeros, zeros.astype(np.float32))
        seconds = []
        for _ in range(2):
            started = time.perf_counter()
            float(self._eval(*args, self._zero_state(batch))[0])
            seconds.append(time.perf_counter() - started)
        return seconds
