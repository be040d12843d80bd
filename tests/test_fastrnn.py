"""fastrnn's logits and hand-written gradients agree with the Keras model's."""

import numpy as np
import pytest

from charrnn import config, model as model_lib
from charrnn.backend import import_tensorflow

tf = import_tensorflow()

from charrnn import fastrnn  # noqa: E402  (after the quiet TensorFlow import)

BATCH, TIME, VOCAB = 3, 6, 11


def _random_model(cell, layers, dropout=0.0):
    cfg = config.ModelConfig(model=cell, layers=layers, units=5, embedding_dim=4, dropout=dropout, vocab_size=VOCAB)
    model = model_lib.build_model(cfg)
    rng = np.random.default_rng(len(cell) * 10 + layers)
    # Random biases too, so that every bias gradient is exercised.
    model.set_weights([rng.normal(0, 0.5, w.shape).astype(np.float32) for w in model.get_weights()])
    return model, cfg


def _inputs():
    rng = np.random.default_rng(0)
    x = rng.integers(0, VOCAB, (BATCH, TIME)).astype(np.int32)
    y = rng.integers(0, VOCAB, (BATCH, TIME)).astype(np.int32)
    return tf.constant(x), tf.constant(y)


def _loss_and_grads(model, logits_fn, x, y):
    with tf.GradientTape() as tape:
        logits = logits_fn(x)  # (batch, time, vocab)
        loss = tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(labels=y, logits=logits))
    return logits, tape.gradient(loss, model.trainable_variables)


def _assert_match(model, keras_result, fast_result):
    (keras_logits, keras_grads), (fast_logits, fast_grads) = keras_result, fast_result
    np.testing.assert_allclose(fast_logits.numpy(), keras_logits.numpy(), atol=1e-5)
    for variable, expected, got in zip(model.trainable_variables, keras_grads, fast_grads):
        np.testing.assert_allclose(
            tf.convert_to_tensor(got).numpy(), tf.convert_to_tensor(expected).numpy(), atol=1e-4, err_msg=variable.path
        )


@pytest.mark.parametrize("jit", [False, pytest.param(True, marks=pytest.mark.slow)])  # XLA compiles for seconds
@pytest.mark.parametrize("layers", [1, 2])
@pytest.mark.parametrize("cell", ["lstm", "gru", "rnn"])
def test_logits_and_gradients_match_keras(cell, layers, jit):
    model, cfg = _random_model(cell, layers)
    x, y = _inputs()

    @tf.function(jit_compile=jit)
    def keras_step(x, y):
        return _loss_and_grads(model, lambda x: model(x, training=True), x, y)

    @tf.function(jit_compile=jit)
    def fast_step(x, y):
        return _loss_and_grads(model, lambda x: fastrnn.sequence_logits(model, cfg, x, training=True), x, y)

    _assert_match(model, keras_step(x, y), fast_step(x, y))


def test_eager_call_matches_keras():
    model, cfg = _random_model("gru", 1)
    x, y = _inputs()
    _assert_match(
        model,
        _loss_and_grads(model, lambda x: model(x, training=False), x, y),
        _loss_and_grads(model, lambda x: fastrnn.sequence_logits(model, cfg, x), x, y),
    )


@pytest.mark.parametrize("cell", ["lstm", "gru", "rnn"])
def test_unknown_batch_and_time_at_trace(cell):
    # As a train step with reduce_retracing=True may be traced; the function is also passed
    # around as a value, which AutoGraph must not unwrap.
    model, cfg = _random_model(cell, 2)
    x, y = _inputs()
    logits_fn = fastrnn.sequence_logits
    spec = tf.TensorSpec([None, None], tf.int32)

    @tf.function(input_signature=[spec, spec])
    def fast_step(x, y):
        return _loss_and_grads(model, lambda x: logits_fn(model, cfg, x, training=True), x, y)

    _assert_match(model, _loss_and_grads(model, lambda x: model(x, training=True), x, y), fast_step(x, y))


@pytest.mark.slow
def test_dropout_trains_under_xla():
    model, cfg = _random_model("lstm", 2, dropout=0.5)
    x, y = _inputs()

    @tf.function(jit_compile=True)
    def fast_step(x, y):
        return _loss_and_grads(model, lambda x: fastrnn.sequence_logits(model, cfg, x, training=True), x, y)

    logits, grads = fast_step(x, y)
    assert logits.shape == (BATCH, TIME, VOCAB)
    assert all(np.all(np.isfinite(tf.convert_to_tensor(g).numpy())) for g in grads)


def test_dropout_is_off_at_inference_and_on_in_training():
    model, cfg = _random_model("lstm", 2, dropout=0.5)
    x, _ = _inputs()
    expected = model(x, training=False).numpy()
    np.testing.assert_allclose(fastrnn.sequence_logits(model, cfg, x, training=False).numpy(), expected, atol=1e-5)
    trained = fastrnn.sequence_logits(model, cfg, x, training=True).numpy()
    assert trained.shape == expected.shape and np.all(np.isfinite(trained))
    assert not np.allclose(trained, expected, atol=1e-3)


def test_dropout_drops_the_rate_and_rescales_the_rest():
    model, cfg = _random_model("gru", 1, dropout=0.25)
    layer = model.get_layer("dropout_0")
    h = tf.ones((50, 40, 30))
    first, second = fastrnn._dropout(layer, h).numpy(), fastrnn._dropout(layer, h).numpy()
    assert set(np.unique(first)) <= {0.0, np.float32(1 / 0.75)}
    assert abs((first == 0).mean() - 0.25) < 0.02
    assert not np.array_equal(first, second)  # a new mask on every call


@pytest.mark.parametrize("kernel", ["fused", "keras"])
@pytest.mark.parametrize("cell", ["lstm", "gru", "rnn"])
def test_a_carried_state_continues_the_sequence_exactly(cell, kernel):
    # Reading a sequence in two halves, the state passed from the first to the second, gives the
    # logits of reading it whole, and the final state is the NumPy sampler's after the same text.
    from charrnn.numpynet import NumpyRNN

    model, cfg = _random_model(cell, layers=2)
    run = fastrnn.run_sequence if kernel == "fused" else model_lib.run_sequence
    x, _ = _inputs()
    zeros = tf.zeros([BATCH, 2 * (2 if cell == "lstm" else 1), cfg.units])
    whole, final = run(model, cfg, x, zeros)
    first, state = run(model, cfg, x[:, :2], zeros)
    second, state = run(model, cfg, x[:, 2:], state)
    np.testing.assert_allclose(tf.concat([first, second], 1).numpy(), whole.numpy(), atol=1e-5)
    np.testing.assert_allclose(state.numpy(), final.numpy(), atol=1e-5)

    net = NumpyRNN(cfg, model_lib.get_weights(model, cfg))
    numpy_state = net.initial_state(BATCH)
    for t in range(TIME):
        _, numpy_state = net.step(x[:, t].numpy(), numpy_state)
    flat = np.stack([s for layer in numpy_state for s in layer], axis=1)  # (batch, layers * states, units)
    np.testing.assert_allclose(final.numpy(), flat, atol=1e-5)


def test_no_gradient_flows_into_the_carried_state():
    model, cfg = _random_model("gru", layers=1)
    x, y = _inputs()
    state = tf.Variable(tf.random.normal([BATCH, 1, cfg.units]))
    with tf.GradientTape() as tape:
        logits, _ = fastrnn.run_sequence(model, cfg, x, state, training=True)
        loss = tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(labels=y, logits=logits))
    grads = tape.gradient(loss, [state, *model.trainable_variables])
    assert grads[0] is None  # truncated backpropagation: the state is a constant
    assert all(g is not None for g in grads[1:])
