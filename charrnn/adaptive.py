"""The adaptive softmax as a Keras layer (its layout and arithmetic are charrnn/softmax.py's), and
the ops that the exporters' TensorFlow step computes it with. Imported only after TensorFlow."""

import keras
import tensorflow as tf

from charrnn import softmax


class KERAS_OPS:
    matmul = staticmethod(keras.ops.matmul)
    log_softmax = staticmethod(lambda x: keras.ops.log_softmax(x, axis=-1))
    concat = staticmethod(lambda parts: keras.ops.concatenate(parts, axis=-1))


class TF_OPS:
    matmul = staticmethod(tf.matmul)
    log_softmax = staticmethod(tf.nn.log_softmax)
    concat = staticmethod(lambda parts: tf.concat(parts, axis=-1))


class AdaptiveSoftmax(keras.layers.Layer):
    """States (..., units) -> log-probabilities (..., vocab) of the adaptive softmax of `cfg` (a
    ModelConfig). Its weights are created in softmax.weight_shapes order, Keras's Dense
    initialisers: Glorot-uniform kernels, zero biases."""

    def __init__(self, cfg, **kwargs):
        super().__init__(**kwargs)
        self.cfg = cfg

    def build(self, input_shape):
        self.named = {}
        for name, shape in softmax.weight_shapes(self.cfg).items():
            part = name[len("output/") :]
            initializer = "zeros" if name.endswith("bias") else "glorot_uniform"
            self.named[name] = self.add_weight(shape=shape, initializer=initializer, name=part.replace("/", "_"))

    def call(self, h):
        return softmax.scores(self.cfg, self.named, h, KERAS_OPS)

    def compute_output_shape(self, input_shape):
        return (*input_shape[:-1], self.cfg.vocab_size)


# Training's loss computes a tail cluster only at the positions whose target is in it (Grave et
# al.'s training procedure), gathered into a fixed number of rows, so that XLA sees static shapes:
# this many times the tail's expected share of the positions, plus a few. A batch with more
# positions in a tail than that computes the tail at every position instead: exact either way.
CAPACITY_MARGIN, CAPACITY_EXTRA = 2.0, 64


def tail_shares(cfg, counts):
    """Each tail's share of the corpus's characters (1.0 for every tail without counts)."""
    total = sum(counts) if counts else 0
    return [sum(counts[first:end]) / total if total else 1.0 for first, end, _ in softmax.tail_ranges(cfg)]


def nll_sum(cfg, weights, h, y, shares):
    """The sum over positions of -log p(target) under the adaptive softmax: states h (..., units),
    targets y (...), `weights` {name: variable}; `shares` the tails' shares of the corpus (for
    capacities). Never forms the vocabulary-wide log-probabilities that `scores` does."""
    units = cfg.units
    h = tf.reshape(h, [-1, units])
    y = tf.reshape(tf.cast(y, tf.int32), [-1])
    positions = h.shape[0]
    head = tf.nn.log_softmax(tf.matmul(h, weights["output/kernel"]) + weights["output/bias"])
    first = softmax.head_size(cfg)
    ranges = softmax.tail_ranges(cfg)
    cluster = tf.zeros_like(y)
    for i, (start, end, _) in enumerate(ranges):
        cluster = tf.where((y >= start) & (y < end), i + 1, cluster)
    head_target = tf.where(cluster == 0, y, first + cluster - 1)
    total = -tf.reduce_sum(tf.gather(head, head_target, batch_dims=1))
    for i, ((start, end, _), capacity) in enumerate(zip(ranges, _capacities(shares, positions))):
        inside = cluster == i + 1
        total += _tail_nll_sum(weights, i, h, y - start, inside, end - start, capacity)
    return total


def _capacities(shares, positions):
    if positions is None:  # a shape XLA did not fix: every position, as scores() does
        return [None] * len(shares)
    rows = [int(CAPACITY_MARGIN * share * positions) + CAPACITY_EXTRA for share in shares]
    return [r if r < positions else None for r in rows]


def _tail_nll_sum(weights, i, h, target, inside, size, capacity):
    """-sum of log p(target | tail i) over the positions `inside` the tail."""
    projection, kernel, bias = (weights[n] for n in softmax.tail_names(i))
    target = tf.clip_by_value(target, 0, size - 1)

    def at(rows, targets, mask):
        logp = tf.nn.log_softmax(tf.matmul(tf.matmul(rows, projection), kernel) + bias)
        return -tf.reduce_sum(tf.gather(logp, targets, batch_dims=1) * mask)

    def every():
        return at(h, target, tf.cast(inside, h.dtype))

    if capacity is None:
        return every()

    def gathered():
        # The positions inside the tail first (top_k of 1s and 0s), `capacity` of them.
        rows = tf.math.top_k(tf.cast(inside, tf.float32), k=capacity, sorted=False).indices
        return at(tf.gather(h, rows), tf.gather(target, rows), tf.cast(tf.gather(inside, rows), h.dtype))

    fits = tf.reduce_sum(tf.cast(inside, tf.int32)) <= capacity
    return tf.cond(fits, gathered, every)
