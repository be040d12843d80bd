"""The optimizer's settings: Adam's beta2 and decoupled weight decay reach the optimizer that
trains, weight decay shrinks the matrices and embeddings but never the biases, and the learning
rate follows its schedule (warm-up, then a cosine or linear decay to its floor)."""

import json

import numpy as np
import pytest

from helpers import TINY_FLAGS, invoke


def _optimizer(**kwargs):
    from charrnn import config, model as model_lib
    from charrnn.backend import import_tensorflow
    from charrnn.train.build import global_clip_adam

    tf = import_tensorflow()
    import keras

    model = model_lib.build_model(config.ModelConfig(model="gru", units=6, embedding_dim=4, vocab_size=9))
    optimizer = global_clip_adam(keras, tf, 0.1, 1.0, **kwargs)
    optimizer.build(model.trainable_variables)
    return tf, model, optimizer


def test_weight_decay_shrinks_weights_but_not_biases():
    tf, model, optimizer = _optimizer(weight_decay=0.5)
    before = {v.path: np.array(v) for v in model.trainable_variables}
    # A zero gradient: Adam's own update is zero, so what changes is the decay alone.
    optimizer.apply_gradients([(tf.zeros_like(v), v) for v in model.trainable_variables])
    decayed, kept = [], []
    for v in model.trainable_variables:
        after, old = np.array(v), before[v.path]
        if "bias" in v.name:
            kept.append(v.name)
            np.testing.assert_array_equal(after, old)
        else:
            decayed.append(v.name)
            np.testing.assert_allclose(after, old * (1 - 0.1 * 0.5), rtol=1e-6)
    assert kept and decayed


def test_no_weight_decay_by_default_and_beta2_is_passed():
    _, model, optimizer = _optimizer(beta_2=0.99)
    assert optimizer.weight_decay is None
    assert optimizer.beta_2 == 0.99


def test_train_records_the_settings(runner, corpus_file, tmp_path):
    run = tmp_path / "run"
    result = invoke(runner, ["train", corpus_file, "-r", run, *TINY_FLAGS, "--epochs", "1", "-q",
                             "--adam-beta2", "0.99", "--weight-decay", "0.1", "--lr-decay", "linear", "--final-lr-fraction", "0",
                             "--eval-every", "0.001"])
    assert result.exit_code == 0, result.output
    train = json.loads((run / "settings.json").read_text())["train"]
    assert (train["adam_beta2"], train["weight_decay"]) == (0.99, 0.1)
    assert (train["lr_decay"], train["final_lr_fraction"]) == ("linear", 0.0)
    # The steps after the warm-up took learning rates on a straight line down to 0.
    rates = [json.loads(line)["learning_rate"] for line in (run / "metrics.jsonl").read_text().splitlines()]
    steps = np.diff(rates[1:])
    assert len(steps) >= 5 and np.allclose(steps, steps[0], rtol=1e-4) and steps[0] < 0
    assert 0 < rates[-1] < -2 * steps[0]


def test_weight_decay_is_on_by_default_and_off_for_fine_tuning(runner, corpus_file, tmp_path):
    base, tuned = tmp_path / "base", tmp_path / "tuned"
    for run, extra in ((base, []), (tuned, ["--init-from", base])):
        result = invoke(runner, ["train", corpus_file, "-r", run, *TINY_FLAGS, "--epochs", "1", "-q", *extra])
        assert result.exit_code == 0, result.output
    decays = [json.loads((run / "settings.json").read_text())["train"]["weight_decay"] for run in (base, tuned)]
    assert decays == [0.1, 0.0]


@pytest.mark.parametrize("decay, three_quarters", [("cosine", 0.1 + 0.9 * 0.5 * (1 - 2**-0.5)), ("linear", 0.1 + 0.9 * 0.25)])
def test_the_schedule_warms_up_then_decays_to_its_floor(decay, three_quarters):
    from charrnn.config import TrainConfig
    from charrnn.train.budget import learning_rate

    cfg = TrainConfig(learning_rate=1.0, warmup_fraction=0.02, final_lr_fraction=0.1, lr_decay=decay)
    assert learning_rate(cfg, 0.01) == pytest.approx(0.55)  # halfway up the warm-up
    assert learning_rate(cfg, 0.02) == pytest.approx(1.0)  # the peak
    assert learning_rate(cfg, 0.02 + 0.98 * 0.75) == pytest.approx(three_quarters)
    assert learning_rate(cfg, 1.0) == learning_rate(cfg, 1.5) == pytest.approx(0.1)  # the floor, and no lower
