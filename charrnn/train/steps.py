"""The inner step: one compiled optimizer step of one model under one tf.distribute strategy.

Every step goes through `strategy.run` and `strategy.reduce`, whatever the strategy: one device,
several (MirroredStrategy) or several processes (MultiWorkerMirroredStrategy). A global batch of
windows is split evenly over the replicas; each replica gathers only its own windows.
Evaluation steps are train.evaluation's; both run the model through a train.forward.Forward.
"""

from charrnn import data
from charrnn.train.batching import ZeroState
from charrnn.train.evaluation import Evaluator
from charrnn.train.forward import Forward
from charrnn.train.replicas import Replicas, share


def build_steps(tf, strategy, model, model_cfg, optimizer, kernel, text, seq_length, batching=None, several_workers=False, counts=None):
    """(TrainStep, Evaluator) of `model` under `strategy`, the recurrences run by `kernel` (a
    train.forward.RecurrenceKernel), training on `text` (an array or a DiskText) in windows of
    `seq_length`, the recurrent state as `batching` (a train.batching.Batching) says: carried, or
    (None, the default) zeros for every batch; `counts`, the characters' counts in the corpus,
    size the adaptive softmax's tails in training's loss. Build them outside `strategy.scope()`."""
    replicas = Replicas(tf, strategy, several_workers)
    forward = Forward(tf, strategy, model, model_cfg, kernel, counts)
    if batching is None:
        state = ZeroState(replicas, forward.state_shape)
    else:
        state = batching.recurrent_state(replicas, forward.state_shape)
    return TrainStep(tf, forward, replicas, optimizer, text, seq_length, state), Evaluator(tf, forward, replicas, seq_length)


class TrainStep:
    """`train(starts)` takes one optimizer step on the global batch of windows that begin at
    `starts` (each replica reads its own share of them from `text`) and returns its loss and the
    gradient's global norm. Each step starts from what `state` (a train.batching.ZeroState or
    CarriedState) gives and hands it the state it ended in. `replicas.agree` is how the workers
    agree after a step on when to stop, evaluate and save."""

    def __init__(self, tf, forward, replicas, optimizer, text, seq_length, state):
        self.forward, self.replicas, self.optimizer = forward, replicas, optimizer
        self.text, self.seq_length, self.state = text, seq_length, state
        strategy, variables = replicas.strategy, forward.model.trainable_variables

        def loss_and_grads(x, y, state, global_batch):
            with tf.GradientTape() as tape:
                if forward.tail_shares is None:
                    logits, state = forward.run_sequence(x, state, training=True)  # (batch, time, vocab)
                    losses = tf.nn.sparse_softmax_cross_entropy_with_logits(labels=y, logits=logits)
                    loss = tf.nn.compute_average_loss(tf.reduce_mean(losses, axis=1), global_batch_size=global_batch)
                else:  # the adaptive softmax: the mean over every window's positions, as above
                    total, state = forward.adaptive_loss_sum(x, y, state, training=True)
                    loss = total / tf.cast(seq_length * global_batch, total.dtype)
            return loss, tape.gradient(loss, variables), state

        loss_and_grads = forward.per_replica(loss_and_grads)

        def train_replica(x, y, state, global_batch):
            loss, grads, state = loss_and_grads(x, y, state, global_batch)
            optimizer.apply_gradients(zip(grads, variables))  # sums over replicas, then clips
            return loss, state, optimizer.gradient_norm  # the norm: the same in every replica

        def train_step(*args):
            loss, state, norm = strategy.run(train_replica, args=args)
            return strategy.reduce("SUM", loss, axis=None), state, strategy.reduce("MEAN", norm, axis=None)

        self._train = forward.compile(train_step)

    @property
    def learning_rate(self):
        return float(self.optimizer.learning_rate.numpy())

    @learning_rate.setter
    def learning_rate(self, value):
        self.optimizer.learning_rate.assign(value)

    def train(self, starts):
        """One optimizer step on the windows that begin at `starts`; returns (its loss, the
        gradient's global norm before clipping)."""

        def windows(context):
            return data.windows(self.text, share(starts, context), self.seq_length)

        x, y = self.replicas.from_function(windows)
        loss, state, norm = self._train(x, y, self.state.start(len(starts)), len(starts))
        self.state.keep(state)
        return float(loss), float(norm)
