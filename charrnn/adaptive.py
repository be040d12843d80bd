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
