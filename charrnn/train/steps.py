"""The inner step: compiled training and evaluation steps of one model under one tf.distribute
strategy, with the recurrent kernel chosen explicitly."""

from dataclasses import dataclass

import numpy as np

# Validation windows per evaluation step (the last batch is padded and masked).
EVAL_BATCH = 128


@dataclass(frozen=True)
class Kernel:
    """How the recurrences run, and whether XLA may compile the steps around them."""

    name: str  # "fastrnn" (charrnn.fastrnn's hand-written gradients) or "keras" (Keras's layers)
    jit_compile: bool
    why: str


def choose_kernel(tf, strategy):
    """On a GPU, Keras's layers, which use cuDNN there; XLA has no kernel for cuDNN's RNN ops
    (keras-team/keras#18456), so those steps are not XLA-compiled. On CPUs, charrnn.fastrnn: the
    same logits from the same weights, with a backward pass about twice as fast, compiled by XLA
    unless the strategy spreads the step over several replicas (XLA around strategy.run fails
    there: keras-team/keras#19005)."""
    if tf.config.list_physical_devices("GPU"):
        return Kernel("keras", False, "GPU: Keras's recurrent layers (cuDNN), no XLA")
    one_replica = strategy.num_replicas_in_sync == 1
    return Kernel("fastrnn", one_replica, "CPU: charrnn.fastrnn" + (", XLA-compiled" if one_replica else ""))


class Steps:
    """`train(x, y)` takes one optimizer step on a global batch of windows and returns its loss;
    `mean_loss(x, y)` is the mean loss (nats per character) over any number of windows."""

    def __init__(self, tf, strategy, model, model_cfg, optimizer, batch_size, kernel):
        self.tf, self.strategy, self.kernel, self.optimizer = tf, strategy, kernel, optimizer
        if kernel.name == "keras":
            logits_of = model
        else:
            from charrnn import fastrnn

            def logits_of(x, training):
                return fastrnn.sequence_logits(model, model_cfg, x, training=training)

        def train_replica(x, y):
            with tf.GradientTape() as tape:
                logits = logits_of(x, training=True)  # (batch, time, vocab)
                losses = tf.nn.sparse_softmax_cross_entropy_with_logits(labels=y, logits=logits)
                loss = tf.nn.compute_average_loss(tf.reduce_mean(losses, axis=1), global_batch_size=batch_size)
            grads = tape.gradient(loss, model.trainable_variables)
            optimizer.apply_gradients(zip(grads, model.trainable_variables))
            return loss

        def eval_replica(x, y, mask):
            losses = tf.nn.sparse_softmax_cross_entropy_with_logits(labels=y, logits=logits_of(x, training=False))
            return tf.reduce_sum(losses * mask[:, None])

        def across_replicas(fn):
            def step(*args):
                return strategy.reduce("SUM", strategy.run(fn, args=args), axis=None)

            return tf.function(step, jit_compile=kernel.jit_compile, reduce_retracing=True)

        self._train = across_replicas(train_replica)
        self._eval = across_replicas(eval_replica)

    def distribute(self, dataset):
        """A tf.data dataset of global batches, split over the strategy's replicas."""
        return self.strategy.experimental_distribute_dataset(dataset)

    def set_learning_rate(self, value):
        self.optimizer.learning_rate.assign(value)

    def learning_rate(self):
        return float(self.optimizer.learning_rate.numpy())

    def train(self, x, y):
        return float(self._train(x, y))

    def mean_loss(self, x, y):
        """Mean cross-entropy over windows x, y (windows, time), in nats per character."""
        pad = -len(x) % EVAL_BATCH
        mask = np.concatenate([np.ones(len(x), np.float32), np.zeros(pad, np.float32)])
        x = np.concatenate([x, np.zeros((pad, x.shape[1]), np.int32)])
        y = np.concatenate([y, np.zeros((pad, y.shape[1]), np.int32)])
        batches = self.tf.data.Dataset.from_tensor_slices((x, y, mask)).batch(EVAL_BATCH)
        total = sum(float(self._eval(*batch)) for batch in self.distribute(batches))
        return total / (float(mask.sum()) * x.shape[1])
