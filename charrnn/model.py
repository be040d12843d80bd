"""The Keras model: Embedding -> recurrent layers -> the output layer's scores, and its weights by name
(the names and shapes are in charrnn/cells.py)."""

from charrnn import cells
from charrnn.backend import import_tensorflow


def build_model(cfg, use_cudnn="auto"):
    """Returns an uncompiled Keras model mapping (batch, time) int32 to (batch, time, vocab) logits.

    The recurrent layers keep Keras's default activations and unroll=False, which is what lets
    Keras use cuDNN kernels on a GPU. `use_cudnn` is Keras's: "auto" (cuDNN where it can run) or
    False (TensorFlow's generic loop everywhere). cfg.recurrent_dropout is the layers' own
    `recurrent_dropout` (Keras then runs them on its generic loop, never on cuDNN).
    """
    import_tensorflow()
    import keras

    inputs = keras.Input(shape=(None,), dtype="int32", name="tokens")
    x = keras.layers.Embedding(cfg.vocab_size, cfg.embedding_dim, name="embedding")(inputs)
    for i in range(cfg.layers):
        options = {} if cfg.model == "rnn" else {"use_cudnn": use_cudnn}
        if cfg.recurrent_dropout:
            options["recurrent_dropout"] = cfg.recurrent_dropout
        x = cells.keras_layer(keras, cfg.model)(cfg.units, return_sequences=True, name=cells.layer_name(i), **options)(x)
        if cfg.dropout > 0:
            x = keras.layers.Dropout(cfg.dropout, name=f"dropout_{i}")(x)
    logits = output_layer(cfg)(x)
    return keras.Model(inputs, logits, name="charrnn")


def output_layer(cfg):
    """The Keras layer named "output" for cfg.output_layer (charrnn/softmax.py): a Dense layer of
    logits, or the adaptive softmax of log-probabilities."""
    import keras

    if cfg.output_layer == "adaptive":
        from charrnn.adaptive import AdaptiveSoftmax

        return AdaptiveSoftmax(cfg, name="output")
    return keras.layers.Dense(cfg.vocab_size, name="output")


def get_weights(model, cfg):
    """The model's weights as {name: array}."""
    return dict(zip(cells.weight_names(cfg), model.get_weights()))


def set_weights(model, cfg, weights):
    """Loads {name: array} into the model; raises ValueError on a missing name or wrong shape,
    worded as charrnn.cells.check_weights words it (as `sample` says it)."""
    cells.check_weights(cfg, weights)
    names = cells.weight_names(cfg)
    for name, variable in zip(names, model.weights):
        if tuple(variable.shape) != weights[name].shape:
            raise ValueError(f"{name} has shape {weights[name].shape}, the settings imply {tuple(variable.shape)}")
    model.set_weights([weights[n] for n in names])


def seed_states(model):
    """The state variables of the model's random seed generators (the dropout layers' and the
    cells'), in a fixed order: the model's variables that are not its weights. A checkpoint keeps
    them, so that a resumed run draws the dropout masks the uninterrupted run would have drawn."""
    weights = {id(w) for w in model.weights}
    return [v for v in model.variables if id(v) not in weights]


def run_sequence(model, cfg, x, state, training=False, scores=True):
    """(logits (batch, time, vocab), final state) for tokens x (batch, time) read from `state`
    (with `scores` False, the last layer's states (batch, time, units) instead of the logits),
    (batch, *cells.state_shape(cfg)), through Keras's own recurrent layers (cuDNN on a
    GPU). The same contract as charrnn.fastrnn.run_sequence: no gradient reaches the initial
    state."""
    tf = import_tensorflow()
    state = tf.stop_gradient(state)
    h = model.get_layer("embedding")(x)
    final = []
    for i in range(cfg.layers):
        initial = [state[:, row] for row in cells.layer_rows(cfg, i)]
        # RNN.inner_loop is what RNN.call runs (cuDNN where it can) once it has an initial state;
        # calling it directly returns the final state without rebuilding the layer with return_state.
        layer = model.get_layer(cells.layer_name(i))
        dropped = training and cfg.recurrent_dropout > 0
        if dropped:  # the masks are drawn before the loop and reused at every step, as RNN.call does
            layer._maybe_config_dropout_masks(layer.cell, h[:, 0, :], initial)
        _, h, last = layer.inner_loop(h, initial, None, training=training)
        if dropped:
            layer._maybe_reset_dropout_masks(layer.cell)
        final += list(last) if isinstance(last, (list, tuple)) else [last]
        if cfg.dropout > 0:
            h = model.get_layer(f"dropout_{i}")(h, training=training)
    final = tf.stop_gradient(tf.stack(final, axis=1))
    return (model.get_layer("output")(h), final) if scores else (h, final)
