"""The adaptive softmax: its layout, its probabilities (normalised, equal to a reference written
from the definition), and the same scores from every implementation: NumPy, the Keras model, the
fused training kernel and the exporters' TensorFlow step; a run trains, samples, evaluates and
exports with it."""

import json

import numpy as np
import pytest

from charrnn import cells, softmax
from charrnn.config import ModelConfig
from charrnn.numpynet import NumpyRNN
from charrnn.vocab import Vocab
from tests.helpers import TINY_FLAGS, assert_error, invoke, run_charrnn
from tests.test_model import keras_logits, random_model

ADAPTIVE = {"output_layer": "adaptive", "tails": [[7, 3], [5, 2]]}


def adaptive_cfg(cell="gru", layers=1, **more):
    return ModelConfig(model=cell, layers=layers, units=6, embedding_dim=3, vocab_size=16, **{**ADAPTIVE, **more})


def test_default_layout_covers_the_vocabulary():
    assert softmax.choose("auto", 100, 256) == ("full", [])
    layer, tails = softmax.choose("auto", 5965, 256)
    assert layer == "adaptive" and tails == [[1024, 64], [5965 - 256 - 1024, 16]]
    assert softmax.choose("adaptive", 300, 256) == ("adaptive", [[44, 64]])
    assert softmax.choose("adaptive", 200, 256) == ("adaptive", [])  # all in the head
    cfg = ModelConfig(vocab_size=5965, output_layer=layer, tails=tails)
    assert softmax.head_size(cfg) == 256
    assert softmax.tail_ranges(cfg) == [(256, 1280, 64), (1280, 5965, 16)]
    shapes = cells.weight_shapes(cfg)
    assert shapes["output/kernel"] == (256, 258) and shapes["output/tail_1/kernel"] == (16, 4685)
    assert list(shapes) == cells.weight_names(cfg)


@pytest.mark.parametrize("tails, fragment", [
    ([[16, 2]], "more than the vocabulary"), ([[3, 0]], "pairs of positive"), ([[3]], "pairs of positive"),
])
def test_a_bad_layout_is_refused(tails, fragment):
    with pytest.raises(Exception, match=fragment):
        ModelConfig(vocab_size=16, output_layer="adaptive", tails=tails).validate()


def reference_log_probs(cfg, w, h):
    """log p(c | h) from the definition, one character at a time."""
    def log_softmax(z):
        return z - np.log(np.exp(z - z.max()).sum()) - z.max()

    head = log_softmax(h @ w["output/kernel"] + w["output/bias"])
    first = softmax.head_size(cfg)
    out = list(head[:first])
    for i, (start, end, _) in enumerate(softmax.tail_ranges(cfg)):
        projection, kernel, bias = (w[n] for n in softmax.tail_names(i))
        tail = log_softmax((h @ projection) @ kernel + bias)
        out += [head[first + i] + tail[c - start] for c in range(start, end)]
    return np.array(out)


def test_probabilities_are_normalised_and_match_the_definition():
    cfg = adaptive_cfg()
    rng = np.random.default_rng(0)
    w = {name: rng.normal(0, 1, shape) for name, shape in softmax.weight_shapes(cfg).items()}
    h = rng.normal(0, 1, (5, cfg.units))
    scores = softmax.scores(cfg, w, h, softmax.NUMPY_OPS)
    assert scores.shape == (5, 16)
    np.testing.assert_allclose(np.exp(scores).sum(axis=-1), 1.0, atol=1e-12)
    for row in range(5):
        np.testing.assert_allclose(scores[row], reference_log_probs(cfg, w, h[row]), atol=1e-12)


@pytest.mark.parametrize("layers", [1, 2])
@pytest.mark.parametrize("cell", ["lstm", "gru", "rnn"])
def test_numpy_keras_and_fused_agree(cell, layers):
    from charrnn import fastrnn, model as model_lib

    cfg = adaptive_cfg(cell, layers)
    model = random_model(cfg, seed=layers)
    weights = model_lib.get_weights(model, cfg)
    assert list(weights) == cells.weight_names(cfg)
    tokens = np.random.default_rng(layers).integers(0, cfg.vocab_size, (2, 9))
    expected = keras_logits(model, tokens)
    np.testing.assert_allclose(np.exp(expected).sum(axis=-1), 1.0, atol=1e-5)
    fused = np.asarray(fastrnn.sequence_logits(model, cfg, tokens.astype(np.int32)))
    np.testing.assert_allclose(fused, expected, atol=1e-5, rtol=0)
    net = NumpyRNN(cfg, weights)
    state = net.initial_state(2)
    for t in range(tokens.shape[1]):
        logits, state = net.step(tokens[:, t], state)
        np.testing.assert_allclose(logits, expected[:, t], atol=1e-5, rtol=0)


def test_gradients_reach_every_tail():
    import tensorflow as tf

    from charrnn import fastrnn

    cfg = adaptive_cfg()
    model = random_model(cfg, seed=3)
    tokens = tf.constant(np.arange(32, dtype=np.int32).reshape(2, 16) % 16)
    with tf.GradientTape() as tape:
        logits = fastrnn.sequence_logits(model, cfg, tokens[:, :-1])
        loss = tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(labels=tokens[:, 1:], logits=logits))
    grads = tape.gradient(loss, model.trainable_variables)
    named = dict(zip(cells.weight_names(cfg), grads))
    for i in range(len(cfg.tails)):
        for name in softmax.tail_names(i):
            assert float(tf.reduce_sum(tf.abs(named[name]))) > 0, name


def test_vocabulary_by_frequency_keeps_counts():
    vocab = Vocab(list("abcd"), [1, 5, 5, 2]).by_frequency()
    assert vocab.index_to_char == list("bcda") and vocab.counts == [5, 5, 2, 1]
    assert vocab.decode(vocab.encode("dab")) == "dab"


@pytest.fixture(scope="module")
def adaptive_run(tmp_path_factory):
    """A tiny run on 600 distinct characters, the adaptive softmax chosen by auto."""
    rng = np.random.default_rng(1)
    chars = [chr(0x4E00 + i) for i in range(600)]
    ids = rng.zipf(1.3, 6000) % 600
    text = "".join(chars) + "".join(chars[i] for i in ids)  # every character at least once
    corpus = tmp_path_factory.mktemp("zh") / "zh.txt"
    corpus.write_text(text, encoding="utf-8")
    run_dir = corpus.parent / "run"
    result = run_charrnn("train", corpus, "-r", run_dir, *TINY_FLAGS, "--epochs", "1", "-q")
    assert result.returncode == 0, result.stderr
    return run_dir


def test_auto_trains_the_adaptive_softmax_on_a_large_alphabet(adaptive_run):
    settings = json.loads((adaptive_run / "settings.json").read_text())
    assert settings["model"]["output_layer"] == "adaptive"
    assert settings["model"]["tails"] == [[344, 2]]  # 600 - 256, units 8 // 4
    vocab = json.loads((adaptive_run / "vocab.json").read_text())
    counts = vocab["counts"]
    assert counts == sorted(counts, reverse=True)  # the commonest character first
    sample = run_charrnn("sample", "-r", adaptive_run, "--length", "50", "--random-seed", "1")
    assert sample.returncode == 0 and len(sample.stdout) >= 50, sample.stderr
    evaluated = run_charrnn("eval", "-r", adaptive_run, "--json")
    assert evaluated.returncode == 0, evaluated.stderr
    assert 0 < json.loads(evaluated.stdout)["nats_per_char"] < np.log(600) + 1


@pytest.mark.parametrize("fmt", ["savedmodel", "tflite", "keras"])
def test_exports_verify_the_adaptive_softmax(adaptive_run, tmp_path, fmt):
    out = tmp_path / {"savedmodel": "model", "tflite": "model.tflite", "keras": "model.keras"}[fmt]
    result = run_charrnn("export", "-r", adaptive_run, "--format", fmt, "--output", out, timeout=300)
    assert result.returncode == 0, result.stderr
    assert "verified" in result.stderr


def test_resume_cannot_change_the_output_layer(adaptive_run, tmp_path, runner):
    result = invoke(runner, ["train", "--resume", "-r", adaptive_run, "--output-layer", "full"])
    assert_error(result, 2, "--output-layer cannot change when resuming")


def test_multiply_adds_count_what_training_multiplies():
    # The default GRU-256 on 65 characters: the recurrent kernel and the output layer (the first
    # layer's input projection is a table look-up); the adaptive softmax computes every cluster.
    assert cells.multiply_adds(ModelConfig(vocab_size=65)) == 256 * 768 + 256 * 65
    adaptive = ModelConfig(vocab_size=6000, output_layer="adaptive", tails=[[1024, 64], [4720, 16]])
    assert cells.multiply_adds(adaptive) == 256 * 768 + 256 * 258 + 256 * 64 + 64 * 1024 + 256 * 16 + 16 * 4720
    assert cells.multiply_adds(ModelConfig(vocab_size=65, layers=2)) == 256 * 768 * 3 + 256 * 65


def test_a_hopeless_budget_is_named_and_a_sufficient_one_is_not():
    from charrnn.config import TrainConfig
    from charrnn.train.setup import hopeless_budget

    big = ModelConfig(vocab_size=6000, output_layer="full")
    line = hopeless_budget(big, TrainConfig(max_time_s=180), 1_000_000)
    assert line.startswith("note: in 3m00s") and "6,000 distinct" in line and "--max-time" in line
    # The adaptive softmax makes the same budget go further; a small alphabet is never warned about.
    adaptive = ModelConfig(vocab_size=6000, output_layer="adaptive", tails=softmax.default_tails(6000, 256))
    assert hopeless_budget(adaptive, TrainConfig(max_time_s=180), 1_000_000) is None
    assert "0.38 passes" in hopeless_budget(adaptive, TrainConfig(max_time_s=15), 1_000_000)
    assert hopeless_budget(ModelConfig(vocab_size=65), TrainConfig(max_time_s=10), 1_000_000) is None
    assert hopeless_budget(big, TrainConfig(max_time_s=3600), 1_000_000) is None
    assert hopeless_budget(big, TrainConfig(), 1_000_000) is None  # epochs alone: no time budget


@pytest.mark.parametrize("tails", [[[9999, 2]], [[344]], "many"])
def test_hand_edited_tails_are_named_as_the_settings_fault(adaptive_run, tmp_path, runner, tails):
    import shutil

    run = tmp_path / "run"
    shutil.copytree(adaptive_run, run)
    settings = json.loads((run / "settings.json").read_text())
    settings["model"]["tails"] = tails
    (run / "settings.json").write_text(json.dumps(settings))
    assert_error(invoke(runner, ["info", "-r", run]), 1, "settings.json")


def test_the_start_line_names_an_output_layer_other_than_the_full_softmax():
    from charrnn.train.hooks import start_line

    class Budget:
        def describe_left(self, state):
            return "for 1 epoch"

    adaptive = ModelConfig(vocab_size=6000, output_layer="adaptive", tails=[[1024, 64], [4720, 16]])
    ids = np.zeros(10)
    line = start_line(adaptive, 1234, ids, ids, 6000, Budget(), None)
    assert line.startswith("GRU 256x1 (1,234 parameters, adaptive softmax (head 256, tails 1,024 x 64, 4,720 x 16)) on 10 ")
    assert "softmax" not in start_line(ModelConfig(vocab_size=65), 1234, ids, ids, 65, Budget(), None)


@pytest.mark.parametrize("jit", [False, True])
def test_trainings_loss_gathers_each_tail_and_equals_the_dense_loss(jit):
    # nll_sum computes a tail only at the positions whose target is in it: the same sum and the
    # same gradients as the dense log-probabilities, whether a tail's positions fit its capacity
    # (gathered) or not (every position), compiled by XLA or not.
    import tensorflow as tf

    from charrnn import adaptive

    cfg = adaptive_cfg()
    rng = np.random.default_rng(4)
    weights = {n: tf.Variable(rng.normal(0, 1, s).astype(np.float32)) for n, s in softmax.weight_shapes(cfg).items()}
    h = tf.constant(rng.normal(0, 1, (3, 40, cfg.units)).astype(np.float32))
    for y_values, shares in ((rng.integers(0, 4, (3, 40)), [0.05, 0.05]),  # the head only (4 characters): nothing inside a tail
                             (rng.integers(0, 16, (3, 40)), [0.05, 0.05]),  # half in the tails: past capacity
                             (rng.integers(0, 16, (3, 40)), [0.3, 0.3])):   # within capacity: gathered
        y = tf.constant(y_values.astype(np.int32))

        def both():
            with tf.GradientTape(persistent=True) as tape:
                fast = adaptive.nll_sum(cfg, weights, h, y, shares)
                scores = softmax.scores(cfg, weights, h, adaptive.TF_OPS)
                dense = -tf.reduce_sum(tf.gather(scores, y, batch_dims=2))
            return fast, dense, tape.gradient(fast, list(weights.values())), tape.gradient(dense, list(weights.values()))

        fast, dense, g_fast, g_dense = tf.function(both, jit_compile=jit)()
        np.testing.assert_allclose(float(fast), float(dense), rtol=1e-5)
        for a, b in zip(g_fast, g_dense):
            np.testing.assert_allclose(np.asarray(a), np.asarray(b), atol=1e-4)
    assert adaptive._capacities([0.05, 0.3], 120) == [76, None]  # 2 x 6 + 64 rows; 2 x 36 + 64 >= 120: every row
    assert adaptive.tail_shares(cfg, list(range(16))) == [sum(range(4, 11)) / 120, sum(range(11, 16)) / 120]
