"""The size rule: what it chooses for a budget, that it says so, and that a flag always wins."""

import json

import pytest

from charrnn import sizing
from charrnn.train import train
from helpers import TINY_TRAIN, make_text


@pytest.mark.parametrize(
    "num_train, max_time_s, expected",
    [
        (1_000_000, None, {}),  # epochs alone: the defaults
        (1_000_000, 110, {"units": 256, "layers": 1, "dropout": 0.0, "learning_rate": 6e-3}),
        (1_000_000, 20 * 60, {"units": 512, "layers": 1, "dropout": 0.2, "learning_rate": 3e-3}),
        (10_000_000, 20 * 60, {"units": 512, "layers": 1, "dropout": 0.1, "learning_rate": 3e-3}),  # 3 passes
        (100_000_000, 20 * 60, {"units": 512, "layers": 1, "dropout": 0.0, "learning_rate": 3e-3}),  # a third of one
    ],
)
def test_the_rule_by_corpus_and_budget(num_train, max_time_s, expected):
    assert sizing.choose(num_train, max_time_s) == expected


def test_the_rule_counts_only_the_passes_the_epochs_allow():
    # 20 minutes allow 30 passes over 1,000,000 characters, but 2 epochs end first: no dropout.
    assert sizing.choose(1_000_000, 20 * 60, epochs=2)["dropout"] == 0.0
    assert sizing.choose(1_000_000, 20 * 60, epochs=20)["dropout"] == 0.2


@pytest.mark.parametrize(
    "num_train, max_time_s, epochs, says",
    [
        # 20 epochs of 1,000 characters end long before 20 minutes: the line speaks of the epochs.
        (1_000, 20 * 60, 20, "for 20 epochs, which likely end before the 20m00s budget (about 1s on a 2-core CPU), on 1,000 "),
        (100_000, 110, 20, "for 20 epochs, which likely end before the 1m50s budget (about 40s on a 2-core CPU), on 100,000 "),
        # The budget ends first: the line speaks of it.
        (10_000_000, 20 * 60, 20, "for a 20m00s budget on 10,000,000 "),
    ],
)
def test_the_rule_line_names_the_budget_that_ends_first(num_train, max_time_s, epochs, says):
    from charrnn.config import ModelConfig, TrainConfig

    cfg = TrainConfig(epochs=epochs, max_time_s=max_time_s, learning_rate=3e-3)
    line = sizing.describe(cfg, ModelConfig(units=512), num_train)
    assert says in line, line


@pytest.mark.slow
def test_the_rule_is_applied_said_in_one_line_and_a_flag_wins(tmp_path):
    corpus = tmp_path / "c.txt"
    corpus.write_text(make_text(1000), encoding="utf-8")
    lines = []
    # --units given: it stays; the rest comes from the rule for a 15-minute budget (the run itself
    # ends after its one epoch).
    train_cfg = dict(TINY_TRAIN, epochs=1, max_time_s=15 * 60)
    train([str(corpus)], str(tmp_path / "run"), {"units": 8, "embedding_dim": 4}, train_cfg, quiet=True, log=lines.append)
    settings = json.loads((tmp_path / "run" / "settings.json").read_text())
    assert settings["model"]["units"] == 8
    # Its one epoch ends long before the budget: one pass needs no dropout, and the line says so.
    assert settings["model"]["dropout"] == 0.0 and settings["train"]["learning_rate"] == 3e-3
    said = [line for line in lines if line.startswith("chose ")]
    assert said == [
        "chose GRU 8x1, dropout 0, learning rate 0.003 for 1 epoch, which likely ends before the 15m00s budget "
        "(about 1s on a 2-core CPU), on 900 training characters "
        "(--units, --layers, --dropout and --learning-rate choose for yourself)"
    ]


@pytest.mark.slow
def test_no_rule_without_a_time_budget_or_when_every_field_is_given(tmp_path):
    corpus = tmp_path / "c.txt"
    corpus.write_text(make_text(1000), encoding="utf-8")
    lines = []
    model = {"units": 8, "embedding_dim": 4, "layers": 1, "dropout": 0.0}
    train([str(corpus)], str(tmp_path / "a"), model, dict(TINY_TRAIN, epochs=1, max_time_s=3600, learning_rate=1e-2),
          quiet=True, log=lines.append)
    train([str(corpus)], str(tmp_path / "b"), {"units": 8, "embedding_dim": 4}, dict(TINY_TRAIN, epochs=1),
          quiet=True, log=lines.append)
    assert not [line for line in lines if line.startswith("chose ")]
    assert json.loads((tmp_path / "b" / "settings.json").read_text())["train"]["learning_rate"] == 6e-3
