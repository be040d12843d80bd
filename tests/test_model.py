"""Weights through a checkpoint give identical logits, and the NumPy sampler computes what the
Keras model computes, for every cell type and depth."""

import numpy as np
import pytest

from charrnn import model as model_lib
from charrnn.config import ModelConfig
from charrnn.rundir import RunDir
from charrnn.numpynet import NumpyRNN
from charrnn.state import TrainState


def random_model(cfg, seed):
    """A Keras model whose every weight, biases included, is random (not Keras's zero biases)."""
    import keras

    keras.utils.set_random_seed(seed)
    model = model_lib.build_model(cfg)
    rng = np.random.default_rng(seed)
    model.set_weights([rng.normal(0, 0.5, w.shape).astype(np.float32) for w in model.get_weights()])
    return model


def keras_logits(model, tokens):
    return np.asarray(model(np.asarray(tokens, np.int32), training=False))  # (batch, time, vocab)


def test_save_then_load_gives_identical_logits(tmp_path):
    cfg = ModelConfig(model="lstm", layers=2, units=6, embedding_dim=3, vocab_size=11)
    model = random_model(cfg, seed=1)
    state = TrainState(step=5, batch_in_epoch=5, chars_seen=160, elapsed_s=0.5)
    RunDir(tmp_path).checkpoint.save(model_lib.get_weights(model, cfg), [np.arange(3.0)], state)

    weights = RunDir(tmp_path).checkpoint.load().weights
    fresh = random_model(cfg, seed=2)
    tokens = np.random.default_rng(0).integers(0, cfg.vocab_size, (2, 13))
    assert not np.allclose(keras_logits(fresh, tokens), keras_logits(model, tokens))
    model_lib.set_weights(fresh, cfg, weights)
    assert np.array_equal(keras_logits(fresh, tokens), keras_logits(model, tokens))


def test_loaded_checkpoint_round_trips_weights_optimizer_and_state(tmp_path):
    cfg = ModelConfig(model="gru", layers=1, units=4, embedding_dim=2, vocab_size=5)
    weights = model_lib.get_weights(random_model(cfg, seed=3), cfg)
    optimizer = [np.array(7, np.int64), np.ones((2, 3), np.float32)]
    state = TrainState(step=12, epoch=1, batch_in_epoch=2, chars_seen=384, elapsed_s=1.5, best_val_loss=float("inf"))
    run = RunDir(tmp_path)
    run.checkpoint.save(weights, optimizer, state)
    loaded_weights, loaded_optimizer, loaded_state, *_ = run.checkpoint.load()
    assert loaded_weights.keys() == weights.keys()
    assert all(np.array_equal(loaded_weights[k], weights[k]) for k in weights)
    assert [a.tolist() for a in loaded_optimizer] == [a.tolist() for a in optimizer]
    assert loaded_state == state


def test_set_weights_refuses_a_wrong_shape():
    cfg = ModelConfig(model="rnn", units=4, embedding_dim=2, vocab_size=5)
    weights = model_lib.get_weights(random_model(cfg, seed=0), cfg)
    weights["output/kernel"] = np.zeros((4, 6), np.float32)
    with pytest.raises(ValueError, match="output/kernel"):
        model_lib.set_weights(model_lib.build_model(cfg), cfg, weights)


@pytest.mark.parametrize("layers", [1, 2])
@pytest.mark.parametrize("cell", ["lstm", "gru", "rnn"])
def test_numpy_sampler_matches_keras_step_by_step(cell, layers):
    cfg = ModelConfig(model=cell, layers=layers, units=5, embedding_dim=3, vocab_size=9)
    model = random_model(cfg, seed=layers)
    net = NumpyRNN(cfg, model_lib.get_weights(model, cfg))
    # Two streams with different text, fed one character at a time with the state carried over.
    tokens = np.random.default_rng(layers).integers(0, cfg.vocab_size, (2, 17))
    expected = keras_logits(model, tokens)
    state = net.initial_state(2)
    for t in range(tokens.shape[1]):
        logits, state = net.step(tokens[:, t], state)
        np.testing.assert_allclose(logits, expected[:, t], atol=1e-5, rtol=0)
