"""The keras format: a .keras file of stock layers (tokens and each layer's state in: rnn_0_h, ...;
logits and the new states out: logits, rnn_0_h_out, ...), and the vocabulary file beside it."""

from pathlib import Path

import numpy as np

from charrnn import cells
from charrnn.errors import ExportError, UsageError
from charrnn.export import files, verify

DIRECTORY = False
SIDECAR = True


def check_name(output):
    """Raises UsageError unless `output` ends in .keras, as keras.Model.save requires."""
    name = Path(output).name
    if not name.endswith(".keras") or name == ".keras":
        raise UsageError(f"a Keras export's file name must end in .keras, e.g. model.keras. Received: --output {output}")


def build(tf, run, built, staging):
    """Saves the run's Keras step model at `built`."""
    model = _step_model(run)
    files.tf_call(lambda: model.save(str(built)), "save the Keras model")


def replay(tf, run, built, ref):
    """Loads `built` with keras.models.load_model (safe mode); returns (its argmax text one token a
    call, its logits for the whole reference sequence in one call, as the training model sees it)."""
    import keras

    loaded = keras.models.load_model(str(built), safe_mode=True, compile=False)
    expected = ["logits", *_output_names(run)]
    if list(loaded.output_names) != expected:
        raise ExportError(f"the keras export's outputs are {loaded.output_names}, expected {expected}; please report this as a bug")
    call = tf.function(lambda inputs: loaded(inputs, training=False), reduce_retracing=True)

    def step_fn(token, state):
        outputs = call([np.array([[token]], np.int32), *_split_state(run, state)])
        return outputs[0].numpy()[0, -1], np.concatenate([s.numpy() for s in outputs[1:]], axis=1)

    text = verify.argmax_text(step_fn, run, ref)
    zero = np.zeros((1, run.state_size), np.float32)
    outputs = call([np.array([ref.fed], np.int32), *_split_state(run, zero)])
    return text, outputs[0].numpy()[0]


def _state_names(run):
    """The model's state inputs, in the state vector's order: rnn_0_h, rnn_0_c, rnn_1_h, ..."""
    return [name.replace("/", "_") for name in cells.state_layout(run.cfg)]


def _output_names(run):
    """The model's new-state outputs, in the state vector's order: rnn_0_h_out, rnn_0_c_out, ..."""
    return [f"{name}_out" for name in _state_names(run)]


def _split_state(run, state):
    """(1, S) state vector -> the model's state inputs, each (1, units)."""
    return np.split(np.asarray(state, np.float32), cells.state_shape(run.cfg)[0], axis=1)


def _step_model(run):
    """A Keras model with the run's weights: [tokens (batch, time), *states (batch, units)] ->
    [logits (batch, time, vocab_size), *new states]. Built from stock layers only, so it loads in
    safe mode with no custom objects."""
    import keras

    cfg, w = run.cfg, run.weights
    tokens = keras.Input(shape=(None,), dtype="int32", name="tokens")
    state_inputs = [keras.Input(shape=(cfg.units,), dtype="float32", name=name) for name in _state_names(run)]
    embedding = keras.layers.Embedding(cfg.vocab_size, cfg.embedding_dim, name="embedding")
    x = embedding(tokens)
    rnn_layers, state_outputs = [], []
    for i in range(cfg.layers):
        layer = cells.keras_layer(keras, cfg.model)(cfg.units, return_sequences=True, return_state=True, name=cells.layer_name(i))
        x, *states = layer(x, initial_state=[state_inputs[row] for row in cells.layer_rows(cfg, i)])
        rnn_layers.append(layer)
        state_outputs += states
    logits, output_layers = _output(keras, cfg, x)
    # Named outputs (model.output_names): logits, rnn_0_h_out, ... (layer names are unique, so a
    # new state cannot take its input's name).
    state_outputs = [keras.layers.Identity(name=output_name)(s) for output_name, s in zip(_output_names(run), state_outputs)]
    model = keras.Model([tokens, *state_inputs], [logits, *state_outputs], name="charrnn_step")
    embedding.set_weights([w["embedding"]])
    for i, layer in enumerate(rnn_layers):
        layer.set_weights(list(cells.layer_weights(w, i)))
    for layer, names in output_layers:
        layer.set_weights([w[name] for name in names])
    return model


def _output(keras, cfg, x):
    """(the logits of states x, [(layer, its weights' names)]): the output layer of stock Dense
    layers and Keras ops (charrnn/softmax.py's arithmetic), named "logits"."""
    from charrnn import softmax

    if cfg.output_layer == "full":
        dense = keras.layers.Dense(cfg.vocab_size, name="logits")
        return dense(x), [(dense, ["output/kernel", "output/bias"])]
    from charrnn.adaptive import KERAS_OPS

    layers = {}  # kernel name -> (its Dense layer, the names of its weights)
    shapes = softmax.weight_shapes(cfg)

    def dense(h, kernel, bias=None):
        name = kernel[len("output/") :].replace("/", "_")
        layer = keras.layers.Dense(shapes[kernel][1], use_bias=bias is not None, name=name)
        layers[kernel] = (layer, [kernel] + ([bias] if bias else []))
        return layer(h)

    logits = softmax.scores_by(cfg, dense, x, KERAS_OPS)
    return keras.layers.Identity(name="logits")(logits), list(layers.values())
