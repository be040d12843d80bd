"""The one statement of how each recurrent cell lays out its weights and its state.

Four modules implement the cells' arithmetic, each for a measured reason: the Keras model
(model.py: cuDNN on a GPU), the training recurrences with hand-written gradients (fastrnn.py:
twice as fast on a CPU), the NumPy network (numpynet.py: no TensorFlow import) and the exporters'
TensorFlow step (export/tfstep.py: runs without charrnn). They all take the layout from here.

Weights, by name (Keras's own layout, so a checkpoint is plain Keras weights):

    embedding                   (vocab, embedding_dim)
    rnn_{i}/kernel              (inputs, gates * units)    gate blocks in GATE_ORDER, units wide each
    rnn_{i}/recurrent_kernel    (units, gates * units)
    rnn_{i}/bias                (gates * units,); GRU: (2, 3 * units), the input bias, then the
                                recurrent bias (Keras's reset_after=True)
    output/kernel               (units, vocab)
    output/bias                 (vocab,)
    (the adaptive softmax's head and tails instead: charrnn/softmax.py)

State: per layer, the vectors in STATES (LSTM h then c), `units` numbers each, the layers in order:
one stream's state is a (rows, units) array of state_shape(cfg), layer i's vectors in the rows
layer_rows(cfg, i). Flattened, one float32 vector of state_size(cfg) numbers, laid out as
state_layout(cfg) says.
"""

import math

from charrnn import softmax

CELL_TYPES = ("lstm", "gru", "rnn")
# The Keras layer of each cell, by its name in keras.layers.
KERAS_LAYERS = {"lstm": "LSTM", "gru": "GRU", "rnn": "SimpleRNN"}
# The gate blocks of the kernels and the bias, in column order: LSTM input, forget, candidate (c)
# and output; GRU update (z), reset (r) and candidate (h); SimpleRNN one block.
GATE_ORDER = {"lstm": ("i", "f", "c", "o"), "gru": ("z", "r", "h"), "rnn": ("h",)}
# The state vectors of one layer, in order.
STATES = {"lstm": ("h", "c"), "gru": ("h",), "rnn": ("h",)}
# The weights of one recurrent layer, in the order of the Keras layer's `weights`.
LAYER_WEIGHTS = ("kernel", "recurrent_kernel", "bias")


def num_gates(model):
    return len(GATE_ORDER[model])


def gate_columns(model, gate, units):
    """The columns of gate `gate` (e.g. "c") in a kernel or bias of `units` per gate, as a slice."""
    start = GATE_ORDER[model].index(gate) * units
    return slice(start, start + units)


def states_per_layer(model):
    return len(STATES[model])


def state_shape(cfg):
    """(rows, units): one stream's state, a row per state vector, the layers in order (training
    carries (batch, rows, units)); flattened row by row, the state_size(cfg) vector."""
    return (cfg.layers * states_per_layer(cfg.model), cfg.units)


def state_size(cfg):
    """S: the length of the whole network's state vector."""
    rows, units = state_shape(cfg)
    return rows * units


def layer_rows(cfg, i):
    """The rows of layer i's state vectors in a state_shape(cfg) array, which are also the
    positions of its parts in state_layout(cfg): a range, h first (then c, for LSTM)."""
    per_layer = states_per_layer(cfg.model)
    return range(i * per_layer, (i + 1) * per_layer)


def layer_name(i):
    """The name of recurrent layer i (from 0): "rnn_0", ..., in the Keras model and in weight names."""
    return f"rnn_{i}"


def state_layout(cfg):
    """The state vector's parts in order, each `units` wide: ["rnn_0/h", "rnn_0/c", "rnn_1/h", ...]."""
    return [f"{layer_name(i)}/{part}" for i in range(cfg.layers) for part in STATES[cfg.model]]


def layer_weight_names(i):
    """The names of layer i's weights, in LAYER_WEIGHTS order: rnn_{i}/kernel, rnn_{i}/recurrent_kernel, rnn_{i}/bias."""
    return [f"{layer_name(i)}/{part}" for part in LAYER_WEIGHTS]


def layer_weights(weights, i):
    """(kernel, recurrent kernel, bias) of layer i, from weights {name: array}."""
    return tuple(weights[name] for name in layer_weight_names(i))


def weight_names(cfg):
    """Every weight's name, in the order of the Keras model's `weights`."""
    names = ["embedding"]
    for i in range(cfg.layers):
        names += layer_weight_names(i)
    return names + list(softmax.weight_shapes(cfg))


def weight_shapes(cfg):
    """{name: shape} of every weight, in the order of weight_names(cfg), as the settings imply."""
    gates = num_gates(cfg.model) * cfg.units
    shapes = {"embedding": (cfg.vocab_size, cfg.embedding_dim)}
    for i in range(cfg.layers):
        kernel = (cfg.embedding_dim if i == 0 else cfg.units, gates)
        bias = (2, gates) if cfg.model == "gru" else (gates,)
        shapes.update(zip(layer_weight_names(i), (kernel, (cfg.units, gates), bias)))
    shapes.update(softmax.weight_shapes(cfg))
    return shapes


def multiply_adds(cfg):
    """Multiply-adds per character of the forward pass as training runs it: every weight matrix
    but the embedding and the first layer's input kernel (the fused kernel looks their product up
    in a table), every cluster of the output layer computed. 213,248 for the default GRU-256 on
    tiny Shakespeare's 65 characters."""
    table = {"embedding", layer_weight_names(0)[0]}
    return sum(
        math.prod(shape) for name, shape in weight_shapes(cfg).items() if name not in table and not name.endswith("bias")
    )


def shape_problem(cfg, weights):
    """Why the weights {name: array} do not fit the settings `cfg` (a missing name or the first
    wrong shape), or None if they fit. Shapes are compared before any arithmetic, so that a
    mismatch is named rather than surfacing as a matrix product's error."""
    shapes = weight_shapes(cfg)
    missing = [name for name in shapes if name not in weights]
    if missing:
        return f"weights missing: {', '.join(missing)}"
    for name, expected in shapes.items():
        shape = tuple(getattr(weights[name], "shape", ()))
        if shape != expected:
            return f"{name} has shape {shape}, the settings imply {expected}"
    return None


def check_weights(cfg, weights):
    """Raises ValueError saying why the weights do not fit `cfg` (see shape_problem)."""
    reason = shape_problem(cfg, weights)
    if reason:
        raise ValueError(reason)


def split_bias(model, bias):
    """(input bias, recurrent bias) of a layer's bias array; the recurrent one is None except for
    GRU, whose bias holds both."""
    if model == "gru":
        return bias[0], bias[1]
    return bias, None


def keras_layer(keras, model):
    """The Keras layer class of a cell type."""
    return getattr(keras.layers, KERAS_LAYERS[model])
