"""The Keras model: Embedding -> recurrent layers -> Dense logits, and its weights by name.

Weights are exchanged as a dict of NumPy arrays with stable names, so checkpoints need no Keras
format and the NumPy sampler can read them:

    embedding                   (vocab, embedding_dim)
    rnn_{i}/kernel              (inputs, gates * units)   gates: lstm 4 (i f c o), gru 3 (z r h), rnn 1
    rnn_{i}/recurrent_kernel    (units, gates * units)
    rnn_{i}/bias                (gates * units,); gru: (2, 3 * units), input and recurrent bias
    output/kernel               (units, vocab)
    output/bias                 (vocab,)
"""

from charrnn.backend import import_tensorflow

GATES = {"lstm": 4, "gru": 3, "rnn": 1}


def build_model(cfg):
    """Returns an uncompiled Keras model mapping (batch, time) int32 to (batch, time, vocab) logits.

    The recurrent layers keep Keras's default activations, no recurrent dropout and unroll=False,
    which is what lets Keras use cuDNN kernels on a GPU.
    """
    import_tensorflow()
    import keras

    layer_types = {"lstm": keras.layers.LSTM, "gru": keras.layers.GRU, "rnn": keras.layers.SimpleRNN}
    inputs = keras.Input(shape=(None,), dtype="int32", name="tokens")
    x = keras.layers.Embedding(cfg.vocab_size, cfg.embedding_dim, name="embedding")(inputs)
    for i in range(cfg.layers):
        x = layer_types[cfg.model](cfg.units, return_sequences=True, name=f"rnn_{i}")(x)
        if cfg.dropout > 0:
            x = keras.layers.Dropout(cfg.dropout, name=f"dropout_{i}")(x)
    logits = keras.layers.Dense(cfg.vocab_size, name="output")(x)
    return keras.Model(inputs, logits, name="charrnn")


def weight_names(cfg):
    names = ["embedding"]
    for i in range(cfg.layers):
        names += [f"rnn_{i}/kernel", f"rnn_{i}/recurrent_kernel", f"rnn_{i}/bias"]
    return names + ["output/kernel", "output/bias"]


def get_weights(model, cfg):
    """The model's weights as {name: array}."""
    return dict(zip(weight_names(cfg), model.get_weights()))


def set_weights(model, cfg, weights):
    """Loads {name: array} into the model; raises ValueError on a missing name or wrong shape."""
    names = weight_names(cfg)
    missing = [n for n in names if n not in weights]
    if missing:
        raise ValueError(f"weights missing: {', '.join(missing)}")
    for name, variable in zip(names, model.weights):
        if tuple(variable.shape) != weights[name].shape:
            raise ValueError(f"{name} has shape {weights[name].shape}, the model expects {tuple(variable.shape)}")
    model.set_weights([weights[n] for n in names])


def count_parameters(weights):
    return int(sum(w.size for w in weights.values()))
