"""The network in TensorFlow ops, for the savedmodel and tflite exports: a tf.Module holding the
run's weights, with the one-step function `step` and, for a SavedModel, the generation loop
`generate`. It needs only TensorFlow to run, not charrnn.

This is one of the four implementations of the cells' arithmetic (see charrnn/cells.py); the
weights' and the state's layout come from cells.py.
"""

import numpy as np

from charrnn import cells, softmax
from charrnn.export import sidecar


def module(tf, run, with_generate):
    """A tf.Module with the run's weights and the one-step function `step`:
    token (1,) int32, state (1, S) -> {"logits": (1, vocab_size), "state": (1, S)};
    if `with_generate`, also the vocabulary, the loop `generate` (see _generate) and `vocab` (see _vocab)."""
    module = tf.Module()
    _add_weights(tf, module, run)
    cell = _cell(tf, module, run.cfg)
    size = cells.state_size(run.cfg)

    @tf.function(input_signature=[
        tf.TensorSpec([1], tf.int32, name="token"), tf.TensorSpec([1, size], tf.float32, name="state"),
    ])
    def step(token, state):
        logits, state = cell(token, state)
        return {"logits": tf.identity(logits, name="logits"), "state": tf.identity(state, name="state")}

    module.step = step
    if with_generate:
        _add_vocabulary(tf, module, run)
        module.generate = _generate(tf, module, cell, run)
        module.vocab = _vocab(tf, module, run)
    return module


def _add_weights(tf, module, run):
    """Adds the run's weights to `module` as constant tf.Variables: embedding, layers (each
    [kernel, recurrent kernel, input bias, recurrent bias]), and the output layer's weights by name."""
    cfg, w = run.cfg, run.weights
    module.embedding = tf.Variable(w["embedding"], trainable=False, name="embedding")
    module.layers = []
    for i in range(cfg.layers):
        kernel, recurrent, bias = cells.layer_weights(w, i)
        input_bias, recurrent_bias = cells.split_bias(cfg.model, bias)
        # Every layer gets a recurrent bias variable; only GRU's is not zero.
        if recurrent_bias is None:
            recurrent_bias = np.zeros_like(input_bias)
        name = cells.layer_name(i)
        module.layers.append([
            tf.Variable(kernel, trainable=False, name=f"{name}_kernel"),
            tf.Variable(recurrent, trainable=False, name=f"{name}_recurrent_kernel"),
            tf.Variable(input_bias, trainable=False, name=f"{name}_bias"),
            tf.Variable(recurrent_bias, trainable=False, name=f"{name}_recurrent_bias"),
        ])
    module.output = {
        name: tf.Variable(w[name], trainable=False, name=name.replace("/", "_")) for name in softmax.weight_shapes(cfg)
    }


def _cell(tf, module, cfg):
    """The network's step on `module`'s weights, as a function:
    token (1,) int32, state (1, S) -> logits (1, vocab_size), state (1, S)."""
    rows, _ = cells.state_shape(cfg)

    def gates(z):
        # (1, gates * units) -> {gate name: (1, units)}, in cells.GATE_ORDER.
        return dict(zip(cells.GATE_ORDER[cfg.model], tf.split(z, cells.num_gates(cfg.model), axis=1)))

    def cell(token, state):
        x = tf.gather(module.embedding, token)  # (1, embedding_dim)
        parts = tf.split(state, rows, axis=1)  # (1, units) each, in cells.state_layout order
        new_state = []
        for i, (kernel, recurrent, input_bias, recurrent_bias) in enumerate(module.layers):
            mine = [parts[row] for row in cells.layer_rows(cfg, i)]  # h (and c, for LSTM)
            h = mine[0]
            projected = tf.matmul(x, kernel) + input_bias  # (1, gates * units)
            if cfg.model == "lstm":
                g = gates(projected + tf.matmul(h, recurrent))
                c = tf.sigmoid(g["f"]) * mine[1] + tf.sigmoid(g["i"]) * tf.tanh(g["c"])
                h = tf.sigmoid(g["o"]) * tf.tanh(c)
                new_state += [h, c]
            elif cfg.model == "gru":
                from_x, from_h = gates(projected), gates(tf.matmul(h, recurrent) + recurrent_bias)
                update, reset = tf.sigmoid(from_x["z"] + from_h["z"]), tf.sigmoid(from_x["r"] + from_h["r"])
                candidate = tf.tanh(from_x["h"] + reset * from_h["h"])
                h = update * h + (1.0 - update) * candidate
                new_state.append(h)
            else:
                h = tf.tanh(projected + tf.matmul(h, recurrent))
                new_state.append(h)
            x = h
        logits = softmax.scores(cfg, module.output, x, _tf_ops())
        return logits, tf.concat(new_state, axis=1)

    return cell


def _add_vocabulary(tf, module, run):
    """Adds the vocabulary to `module` as constant tf.Variables: the characters and their code points
    in index order, the code points sorted (with their indices) for encoding, the state size, and
    the log character counts (the first character's logits when there is no newline to prime with)."""
    vocab = run.vocab
    codepoints = np.array([ord(c) for c in vocab.index_to_char], np.int32)
    order = np.argsort(codepoints, kind="stable").astype(np.int32)
    module.index_to_char = tf.Variable(vocab.index_to_char, trainable=False, name="index_to_char")
    module.codepoints = tf.Variable(codepoints, trainable=False, name="codepoints")
    module.sorted_codepoints = tf.Variable(codepoints[order], trainable=False, name="sorted_codepoints")
    module.sorted_indices = tf.Variable(order, trainable=False, name="sorted_indices")
    module.state_size = tf.Variable(cells.state_size(run.cfg), trainable=False, name="state_size")
    counts = np.asarray(vocab.counts if vocab.counts else np.ones(vocab.vocab_size), np.float64)
    module.count_logits = tf.Variable(np.log(np.maximum(counts, 1e-30))[None].astype(np.float32), trainable=False)


def _vocab(tf, module, run):
    """The tf.function vocab() -> what a client of `step` needs, the fields of the tflite and keras
    exports' vocabulary file (charrnn.export.sidecar): index_to_char (string [V]: the character of
    each token), vocab_size, state_size (S), state_layout (string: rnn_0/h, ...), model, layers,
    units, and counts (int64 [V], the corpus's count of each character) when the run has them."""
    record = run.vocab.record(**sidecar.state_facts(run.cfg))
    # The characters and the state size are the module's variables; the rest are constants.
    facts = {name: _constant(tf, name, value) for name, value in record.items() if name not in ("index_to_char", "state_size")}

    @tf.function(input_signature=[])
    def vocab_fn():
        return {
            "index_to_char": tf.identity(module.index_to_char), "state_size": tf.identity(module.state_size),
            **{name: tf.identity(value) for name, value in facts.items()},
        }

    return vocab_fn


def _constant(tf, name, value):
    """A vocabulary fact as vocab() gives it: counts int64, other numbers int32, text as strings."""
    if name == "counts":
        return tf.constant(np.asarray(value, np.int64))
    if isinstance(value, int):
        return tf.constant(value, tf.int32)
    return tf.constant(value, tf.string)


def _generate(tf, module, cell, run):
    """The tf.function generate(seed, length, temperature, random_seed) -> {"text": seed + `length`
    new characters}: temperature 0 is argmax, otherwise draws are stateless, from random_seed."""
    size = cells.state_size(run.cfg)
    # Without a seed the network is primed with a newline, as `charrnn sample` does; a corpus with
    # no newline starts from a character drawn from the corpus's character frequencies instead.
    newline = run.vocab.char_to_index.get("\n")

    @tf.function(input_signature=[
        tf.TensorSpec([], tf.string, name="seed"), tf.TensorSpec([], tf.int32, name="length"),
        tf.TensorSpec([], tf.float32, name="temperature"), tf.TensorSpec([], tf.int64, name="random_seed"),
    ])
    def generate(seed, length, temperature, random_seed):
        tokens, length = _checked_inputs(tf, module, run.vocab.vocab_size, seed, length, temperature)
        no_seed = tf.equal(tf.size(tokens), 0)
        if newline is not None:
            tokens = tf.cond(no_seed, lambda: tf.constant([newline], tf.int32), lambda: tokens)
        first_from_counts = tf.logical_and(no_seed, newline is None)

        def prime(i, logits, state):
            logits, state = cell(tf.reshape(tokens[i], [1]), state)
            return i + 1, logits, state

        _, logits, state = tf.while_loop(
            lambda i, *_: i < tf.size(tokens), prime,
            (tf.constant(0), module.count_logits, tf.zeros([1, size])),
        )
        chosen = _draws(tf, cell, logits, state, length, temperature, random_seed, first_from_counts)
        new_text = tf.strings.unicode_encode(tf.gather(module.codepoints, chosen), "UTF-8")
        return {"text": seed + new_text}

    return generate


def _checked_inputs(tf, module, vocab_size, seed, length, temperature):
    """(the seed's tokens (n,) int32, length), both depending on the checks that every character
    of the seed is in the vocabulary and that length and temperature are not negative."""
    values = tf.strings.unicode_decode(seed, "UTF-8")  # (n,) code points; invalid UTF-8 raises
    positions = tf.minimum(tf.searchsorted(module.sorted_codepoints, values), vocab_size - 1)
    known = tf.equal(tf.gather(module.sorted_codepoints, positions), values)
    unknown = tf.strings.unicode_encode(tf.boolean_mask(values, tf.logical_not(known)), "UTF-8")
    checks = [
        tf.debugging.Assert(tf.reduce_all(known), [
            "the seed has characters the model never saw:", unknown, "use only characters from the training text",
        ]),
        tf.debugging.assert_non_negative(length, message="length must be 0 or more"),
        tf.debugging.assert_non_negative(temperature, message="temperature must be 0 or more (0 is argmax)"),
    ]
    with tf.control_dependencies(checks):
        return tf.gather(module.sorted_indices, positions), tf.identity(length)


def _draws(tf, cell, logits, state, length, temperature, random_seed, first_from_counts):
    """The `length` tokens (length,) int32 drawn one step at a time from the primed `logits` and
    `state`: argmax at temperature 0, else stateless draws seeded by (random_seed, position); the
    first at temperature 1 when `first_from_counts` (the logits are then the log counts)."""

    def next_char(i, logits, state, chosen):
        first = tf.logical_and(first_from_counts, tf.equal(i, 0))
        t = tf.where(first, 1.0, temperature)
        token = tf.cond(
            t > 0,
            lambda: tf.random.stateless_categorical(
                logits / t, 1, seed=tf.stack([random_seed, tf.cast(i, tf.int64)]), dtype=tf.int32,
            )[:, 0],
            lambda: tf.argmax(logits, axis=1, output_type=tf.int32),
        )
        chosen = chosen.write(i, token[0])
        logits, state = cell(token, state)
        return i + 1, logits, state, chosen

    _, _, _, chosen = tf.while_loop(
        lambda i, *_: i < length, next_char,
        (tf.constant(0), logits, state, tf.TensorArray(tf.int32, size=length)),
    )
    return chosen.stack()


def _tf_ops():
    from charrnn.adaptive import TF_OPS

    return TF_OPS
