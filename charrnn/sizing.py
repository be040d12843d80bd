"""The size rule: the model's shape, dropout and learning rate for a corpus and a time budget, when
the user gives none of them (`charrnn train --max-time 20m novel.txt`).

Measured on a 2-core CPU without a GPU (docs/benchmarks.md, "Sizing the model"): in 110 s the
default GRU-256 reaches a lower validation loss than wider models, which see too few characters;
in 20 minutes a GRU-512 with dropout 0.2 and a lower learning rate does better, and without the
dropout it overfits tiny Shakespeare long before the budget ends.
"""

# Budgets of at least this many seconds get the larger model.
LARGE_FROM_S = 10 * 60
SMALL = {"units": 256, "layers": 1, "dropout": 0.0, "learning_rate": 6e-3}
LARGE = {"units": 512, "layers": 1, "learning_rate": 3e-3}
# Training characters per second of the large model on the 2-core CPU (two replicas): with it, the
# budget says how many passes over the text the large model will make.
LARGE_CHARS_PER_S = 25_000
# Dropout of the large model by the passes over the text that the budget allows.
LARGE_DROPOUT = ((8, 0.2), (3, 0.1), (0, 0.0))
# The fields the rule sets; a flag the user gives for one of them always wins.
FIELDS = ("units", "layers", "dropout", "learning_rate")


def choose(num_train, max_time_s):
    """The rule's {field: value} for `num_train` training characters and a budget of
    `max_time_s` seconds; {} without a time budget (epochs alone: the defaults)."""
    if not max_time_s:
        return {}
    if max_time_s < LARGE_FROM_S:
        return dict(SMALL)
    epochs = max_time_s * LARGE_CHARS_PER_S / max(num_train, 1)
    dropout = next(rate for least, rate in LARGE_DROPOUT if epochs >= least)
    return dict(LARGE, dropout=dropout)


def describe(cfg, model_cfg, num_train):
    """The one line that says what the rule chose, for a budget of cfg.max_time_s."""
    from charrnn.units import duration

    return (
        f"chose {model_cfg.model.upper()} {model_cfg.units}x{model_cfg.layers}, dropout {model_cfg.dropout:g}, "
        f"learning rate {cfg.learning_rate:g} for a {duration(cfg.max_time_s)} budget on {num_train:,} training "
        "characters (--units, --layers, --dropout and --learning-rate choose for yourself)"
    )
