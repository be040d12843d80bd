"""Recurrent dropout (`--recurrent-dropout`): the fused kernel's hand-written gradients under a mask
agree with Keras's own cells under the same mask, the mask is a variational one, and it is off
outside training (sampling and evaluation read the same model as without it)."""

import json

import numpy as np
import pytest

from charrnn import config, model as model_lib
from charrnn.backend import import_tensorflow

tf = import_tensorflow()

from charrnn import fastrnn  # noqa: E402  (after the quiet TensorFlow import)

from helpers import TINY_FLAGS, invoke  # noqa: E402

BATCH, TIME, VOCAB, UNITS = 3, 6, 11, 5


def _random_model(cell, layers, rate):
    cfg = config.ModelConfig(
        model=cell, layers=layers, units=UNITS, embedding_dim=4, vocab_size=VOCAB, recurrent_dropout=rate
    )
    model = model_lib.build_model(cfg, use_cudnn=False)
    rng = np.random.default_rng(len(cell) + layers)
    model.set_weights([rng.normal(0, 0.5, w.shape).astype(np.float32) for w in model.get_weights()])
    return model, cfg


def _tokens(seed):
    return tf.constant(np.random.default_rng(seed).integers(0, VOCAB, (BATCH, TIME)).astype(np.int32))


def _loss_and_grads(model, run, x, y):
    with tf.GradientTape() as tape:
        logits, _ = run(x)
        loss = tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(labels=y, logits=logits))
    return logits, tape.gradient(loss, model.trainable_variables)


@pytest.mark.parametrize("layers", [1, 2])
@pytest.mark.parametrize("cell", ["lstm", "gru", "rnn"])
def test_fused_gradients_under_a_mask_match_keras_under_the_same_mask(cell, layers, monkeypatch):
    rate = 0.4
    model, cfg = _random_model(cell, layers, rate)
    x, y, zeros = _tokens(0), _tokens(1), fastrnn.zero_state(cfg, BATCH)
    rng = np.random.default_rng(7)
    masks = [tf.constant((rng.random((BATCH, UNITS)) >= rate) / (1 - rate), tf.float32) for _ in range(layers)]
    assert all(0 < float(tf.reduce_mean(tf.cast(m == 0, tf.float32))) < 1 for m in masks)  # some of each

    # Keras's cells take one mask per gate, cached for the call: give every gate the layer's mask.
    cells_ = [model.get_layer(f"rnn_{i}").cell for i in range(layers)]
    keras_masks = iter(masks)

    def keras_config(cell_, inputs, states):
        mask = next(keras_masks)
        count = getattr(cell_, "dropout_mask_count", None)
        cell_._recurrent_dropout_mask = [mask] * count if count else mask

    for layer in (model.get_layer(f"rnn_{i}") for i in range(layers)):
        monkeypatch.setattr(layer, "_maybe_config_dropout_masks", keras_config)
    expected = _loss_and_grads(model, lambda x: model_lib.run_sequence(model, cfg, x, zeros, training=True), x, y)

    fused_masks = iter(masks)
    monkeypatch.setattr(fastrnn, "_recurrent_keep", lambda cell_, r, h0: (next(fused_masks),))
    got = _loss_and_grads(model, lambda x: fastrnn.run_sequence(model, cfg, x, zeros, training=True), x, y)

    np.testing.assert_allclose(got[0].numpy(), expected[0].numpy(), atol=1e-5)
    for variable, want, have in zip(model.trainable_variables, expected[1], got[1]):
        np.testing.assert_allclose(
            tf.convert_to_tensor(have).numpy(), tf.convert_to_tensor(want).numpy(), atol=1e-4, err_msg=variable.path
        )
    assert all(c._recurrent_dropout_mask is None for c in cells_)  # Keras's cache cleared after the call


@pytest.mark.parametrize("cell", ["lstm", "gru", "rnn"])
def test_the_mask_changes_training_only(cell):
    model, cfg = _random_model(cell, 2, 0.5)
    plain_cfg = config.ModelConfig(**{**cfg.__dict__, "recurrent_dropout": 0.0})
    x = _tokens(0)
    zeros = fastrnn.zero_state(cfg, BATCH)
    plain = fastrnn.run_sequence(model, plain_cfg, x, zeros, training=True)[0].numpy()
    for run in (fastrnn.run_sequence, model_lib.run_sequence):
        np.testing.assert_allclose(run(model, cfg, x, zeros, training=False)[0].numpy(), plain, atol=1e-5)
        dropped = run(model, cfg, x, zeros, training=True)[0].numpy()
        assert np.all(np.isfinite(dropped)) and not np.allclose(dropped, plain, atol=1e-3)


def test_the_mask_keeps_the_rate_rescales_the_rest_and_is_new_each_call():
    model, cfg = _random_model("gru", 1, 0.25)
    cell = model.get_layer("rnn_0").cell
    h0 = tf.zeros((400, 50))
    (first,), (second,) = fastrnn._recurrent_keep(cell, 0.25, h0), fastrnn._recurrent_keep(cell, 0.25, h0)
    assert first.shape == (400, 50)
    assert set(np.unique(first.numpy())) <= {0.0, np.float32(1 / 0.75)}
    assert abs(float(np.mean(first.numpy() == 0)) - 0.25) < 0.02
    assert not np.array_equal(first.numpy(), second.numpy())
    assert fastrnn._recurrent_keep(cell, 0.0, h0) == ()


@pytest.mark.parametrize("kernel", ["fused", "keras"])
def test_train_with_recurrent_dropout_records_it_and_samples(runner, corpus_file, tmp_path, kernel):
    run = tmp_path / "run"
    args = ["train", corpus_file, "-r", run, *TINY_FLAGS, "--epochs", "1", "-q", "--recurrent-dropout", "0.3"]
    result = invoke(runner, [*args, "--kernel", kernel])
    assert result.exit_code == 0, result.output
    settings = json.loads((run / "settings.json").read_text())
    assert settings["model"]["recurrent_dropout"] == 0.3
    losses = [json.loads(line)["val_loss"] for line in (run / "metrics.jsonl").read_text().splitlines() if "val_loss" in line]
    assert losses and np.all(np.isfinite(losses))
    sampled = invoke(runner, ["sample", "-r", run, "--length", "40", "--random-seed", "1"])
    assert sampled.exit_code == 0, sampled.output
    assert len(sampled.stdout) >= 40
