"""The inner step: compiled training and evaluation steps of one model under one tf.distribute
strategy, with the recurrent kernel chosen explicitly.

Every step goes through `strategy.run` and `strategy.reduce`, whatever the strategy: one device,
several (MirroredStrategy) or several processes (MultiWorkerMirroredStrategy). A global batch of
windows is split evenly over the replicas; each replica gathers only its own windows.

XLA compiles the fused kernel's forward and backward pass inside each replica, never around
`strategy.run` (that fails under a real strategy: keras-team/keras#19005), except under the default
strategy (one device), where the whole step, optimizer included, is compiled.
"""

from dataclasses import dataclass

import numpy as np

from charrnn import data
from charrnn.backend import KERNELS
from charrnn.errors import UsageError

# Validation windows per evaluation step, at least (rounded up to a multiple of the replicas).
EVAL_BATCH = 128


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
        def _all_reduce_sum_gradients(self, grads_and_vars):
            pairs = super()._all_reduce_sum_gradients(grads_and_vars)
            grads, _ = tf.clip_by_global_norm([g for g, _ in pairs], clipnorm)
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
    windows.

    `text` is the training text (an array or a data.DiskText): each replica reads its own share of
    the windows from it. Build Steps outside `strategy.scope()`.
    """

    def __init__(self, tf, strategy, model, model_cfg, optimizer, seq_length, kernel, text, several_workers=False):
        self.strategy, self.optimizer, self.several_workers = strategy, optimizer, several_workers
        self.text, self.seq_length = text, seq_length
        self.replicas = strategy.num_replicas_in_sync
        default = strategy is tf.distribute.get_strategy()  # one device, no tf.distribute machinery
        fused = kernel.name == "fused"
        if fused:
            from charrnn import fastrnn

            def logits_of(x, training):
                return fastrnn.sequence_logits(model, model_cfg, x, training=training)
        else:
            logits_of = model
        self.logits_of = logits_of  # (x, training) -> logits (batch, time, vocab), as the steps compute them
        variables = model.trainable_variables

        def loss_and_grads(x, y, global_batch):
            with tf.GradientTape() as tape:
                logits = logits_of(x, training=True)  # (batch, time, vocab)
                losses = tf.nn.sparse_softmax_cross_entropy_with_logits(labels=y, logits=logits)
                loss = tf.nn.compute_average_loss(tf.reduce_mean(losses, axis=1), global_batch_size=global_batch)
            return loss, tape.gradient(loss, variables)

        def eval_sum(x, y, mask):
            losses = tf.nn.sparse_softmax_cross_entropy_with_logits(labels=y, logits=logits_of(x, training=False))
            return tf.reduce_sum(losses * mask[:, None])

        if fused and not default:
            loss_and_grads = _xla_per_replica(tf, loss_and_grads)
            eval_sum = _xla_per_replica(tf, eval_sum)

        def train_replica(x, y, global_batch):
            loss, grads = loss_and_grads(x, y, global_batch)
            optimizer.apply_gradients(zip(grads, variables))  # sums over replicas, then clips
            return loss

        def summed(fn):
            def step(*args):
                return strategy.reduce("SUM", strategy.run(fn, args=args), axis=None)

            return tf.function(step, jit_compile=fused and default, reduce_retracing=True)

        self._train = summed(train_replica)
        self._eval = summed(eval_sum)
        self._agree = summed(lambda flags: flags)

    def _split(self, *arrays):
        """The arrays (global batch first) split into equal shares, one per replica, as
        distributed values: each worker builds only the shares of its own replicas."""
        return self.strategy.experimental_distribute_values_from_function(lambda c: tuple(_share(a, c) for a in arrays))

    def set_learning_rate(self, value):
        self.optimizer.learning_rate.assign(value)

    def learning_rate(self):
        return float(self.optimizer.learning_rate.numpy())

    def train(self, starts):
        """One optimizer step on the windows that begin at `starts`; returns its loss."""

        def share(context):
            return data.windows(self.text, _share(starts, context), self.seq_length)

        x, y = self.strategy.experimental_distribute_values_from_function(share)
        return float(self._train(x, y, len(starts)))

    def agree(self, stop, clock):
        """(whether any worker was asked to stop, the chief's clock), from this worker's `stop`
        and `clock` (seconds). One process needs no agreement; several sum over the replicas the
        stop requests and the clock of replica 0 (the chief's)."""
        if not self.several_workers:
            return stop, clock

        def share(context):
            return np.float32([stop, clock if context.replica_id_in_sync_group == 0 else 0.0])

        agreed = self._agree(self.strategy.experimental_distribute_values_from_function(share)).numpy()
        return bool(agreed[0] > 0), float(agreed[1])

    def mean_loss(self, x, y):
        """Mean cross-entropy over windows x, y (windows, time), in nats per character."""
        batch = -(-EVAL_BATCH // self.replicas) * self.replicas
        pad = -len(x) % batch
        mask = np.concatenate([np.ones(len(x), np.float32), np.zeros(pad, np.float32)])
        x = np.concatenate([x, np.zeros((pad, x.shape[1]), np.int32)])
        y = np.concatenate([y, np.zeros((pad, y.shape[1]), np.int32)])
        total = sum(
            float(self._eval(*self._split(x[i : i + batch], y[i : i + batch], mask[i : i + batch])))
            for i in range(0, len(x), batch)
        )
        return total / (float(mask.sum()) * x.shape[1])
