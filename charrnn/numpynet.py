"""The trained network in NumPy, stepped one character at a time for a batch of streams, without
TensorFlow: what `sample`, `eval`, `report` and the exports' checks run.

The recurrent steps follow Keras's definitions exactly (LSTM gates i f c o; GRU gates z r h with
reset_after=True; SimpleRNN with tanh), so the logits match the Keras model's to float precision.
One of the four implementations of the cells' arithmetic; the weights' layout comes from
charrnn/cells.py.
"""

import os

# The recurrent step multiplies small matrices: BLAS threads only fight over the cores (16 streams
# ran 10x slower with them on a busy 2-core machine). Takes effect when NumPy is not yet loaded,
# as in `charrnn sample`: the modules that run this network import it before NumPy.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import numpy as np  # noqa: E402

from charrnn import cells, softmax  # noqa: E402


def _sigmoid(x):
    return 0.5 * np.tanh(0.5 * x) + 0.5


class NumpyRNN:
    """The trained network as NumPy arrays, stepped one character at a time for a batch of streams."""

    def __init__(self, cfg, weights, checked=False):
        """`weights` {name: array}, names as in charrnn/cells.py. Unless `checked` (the run directory
        checked every shape as it read them), every shape is checked before any arithmetic: a
        mismatch is a ValueError naming the weight, not a matrix product's error."""
        self.cfg = cfg
        self.weights = weights
        u = cfg.units
        if not checked:
            cells.check_weights(cfg, weights)
        self.layers = []
        for i in range(cfg.layers):
            kernel, recurrent, bias = (w.astype(np.float32) for w in cells.layer_weights(weights, i))
            input_bias, recurrent_bias = cells.split_bias(cfg.model, bias)
            if cfg.model == "lstm":
                # Reorder the gates to (i, f, o, c): one sigmoid covers the first three.
                order = np.concatenate([np.arange(4 * u)[cells.gate_columns("lstm", g, u)] for g in "ifoc"])
                kernel, recurrent, input_bias = kernel[:, order], recurrent[:, order], input_bias[order]
            self.layers.append([kernel, recurrent, input_bias, recurrent_bias])
        # The first layer's input projection of every character, computed once: (vocab, gates*units).
        first = self.layers[0]
        self.input_table = weights["embedding"].astype(np.float32) @ first[0] + first[2]
        self.output_weights = {name: weights[name].astype(np.float32) for name in softmax.weight_shapes(cfg)}

    def initial_state(self, batch=1):
        """Zero state: per layer, [h] (and [h, c] for LSTM), each (batch, units)."""
        per_layer = cells.states_per_layer(self.cfg.model)
        return [[np.zeros((batch, self.cfg.units), np.float32) for _ in range(per_layer)] for _ in self.layers]

    def step(self, tokens, state):
        """Feeds one token per stream: tokens (batch,) ints. Returns (logits (batch, vocab), state)."""
        h, state = self.advance(tokens, state)
        return self.output(h), state

    def advance(self, tokens, state):
        """The recurrence alone: feeds one token per stream, tokens (batch,) ints. Returns (the top
        layer's h (batch, units), state); `output(h)` turns h into the logits."""
        u = self.cfg.units
        x = None
        new_state = []
        for i, (kernel, recurrent, input_bias, recurrent_bias) in enumerate(self.layers):
            projected = self.input_table.take(tokens, axis=0) if i == 0 else x @ kernel + input_bias
            h = state[i][0]
            if self.cfg.model == "lstm":
                z = projected + h @ recurrent
                gates = _sigmoid(z[:, : 3 * u])
                c = gates[:, u : 2 * u] * state[i][1] + gates[:, :u] * np.tanh(z[:, 3 * u :])
                h = gates[:, 2 * u :] * np.tanh(c)
                new_state.append([h, c])
            elif self.cfg.model == "gru":
                inner = h @ recurrent + recurrent_bias
                gates = _sigmoid(projected[:, : 2 * u] + inner[:, : 2 * u])
                candidate = np.tanh(projected[:, 2 * u :] + gates[:, u:] * inner[:, 2 * u :])
                h = candidate + gates[:, :u] * (h - candidate)
                new_state.append([h])
            else:
                h = np.tanh(projected + h @ recurrent)
                new_state.append([h])
            x = h
        return x, new_state

    def output(self, h):
        """The logits (..., vocab) of top-layer states h (..., units), for any number of positions
        (the adaptive softmax's are log-probabilities: charrnn/softmax.py)."""
        return softmax.scores(self.cfg, self.output_weights, h, softmax.NUMPY_OPS)


def repeat(state, count):
    """A NumpyRNN state with each stream repeated `count` times: batch b becomes b * count."""
    return [[np.repeat(s, count, axis=0) for s in layer] for layer in state]
