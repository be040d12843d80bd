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
# The same for the small model (measured 59,000 there; a little less, to allow for evaluations).
SMALL_CHARS_PER_S = 50_000
# Dropout of the large model by the passes over the text that the budget allows.
LARGE_DROPOUT = ((8, 0.2), (3, 0.1), (0, 0.0))
# The fields the rule sets; a flag the user gives for one of them always wins.
FIELDS = ("units", "layers", "dropout", "learning_rate")


def choose(num_train, max_time_s, epochs=None):
    """The rule's {field: value} for `num_train` training characters and a budget of
    `max_time_s` seconds and `epochs` passes (None: no limit), whichever ends first; {} without a
    time budget (epochs alone: the defaults)."""
    if not max_time_s:
        return {}
    if max_time_s < LARGE_FROM_S:
        return dict(SMALL)
    epochs = min(passes(num_train, max_time_s), epochs or float("inf"))
    dropout = next(rate for least, rate in LARGE_DROPOUT if epochs >= least)
    return dict(LARGE, dropout=dropout)


def passes(num_train, max_time_s):
    """About how many passes over `num_train` characters the rule's model makes in `max_time_s`
    seconds, at the speed measured for it (SMALL_CHARS_PER_S or LARGE_CHARS_PER_S)."""
    speed = LARGE_CHARS_PER_S if max_time_s >= LARGE_FROM_S else SMALL_CHARS_PER_S
    return max_time_s * speed / max(num_train, 1)


def describe(cfg, model_cfg, num_train):
    """The one line that says what the rule chose, for the budget that is likely to end first:
    cfg.max_time_s, or cfg.epochs when they end before it (at the speed measured for the model)."""
    from charrnn.units import duration

    budget = f"{duration(cfg.max_time_s)} budget"
    allowed = passes(num_train, cfg.max_time_s)
    if allowed >= cfg.epochs:
        epochs = f"{cfg.epochs:,} epoch, which likely ends" if cfg.epochs == 1 else f"{cfg.epochs:,} epochs, which likely end"
        took = max(1.0, cfg.max_time_s * cfg.epochs / allowed)
        budget = f"{epochs} before the {budget} (about {duration(took)} on a 2-core CPU),"
    else:
        budget = f"a {budget}"
    return (
        f"chose {model_cfg.model.upper()} {model_cfg.units}x{model_cfg.layers}, dropout {model_cfg.dropout:g}, "
        f"learning rate {cfg.learning_rate:g} for {budget} on {num_train:,} training "
        "characters (--units, --layers, --dropout and --learning-rate choose for yourself)"
    )


def parameters(model_cfg):
    """The trainable parameters of a model of `model_cfg` (its vocab_size set)."""
    from charrnn import cells

    units, gates = model_cfg.units, cells.num_gates(model_cfg.model)
    biases = 2 if model_cfg.model == "gru" else 1  # GRU keeps an input and a recurrent bias
    total = model_cfg.vocab_size * model_cfg.embedding_dim
    inputs = model_cfg.embedding_dim
    for _ in range(model_cfg.layers):
        total += gates * units * (inputs + units + biases)
        inputs = units
    return total + units * model_cfg.vocab_size + model_cfg.vocab_size


def training_bytes(model_cfg, train_cfg):
    """About how many bytes of memory training a model of `model_cfg` with `train_cfg` takes:
    the weights six times over (weights, gradients, Adam's two moments, the copies a checkpoint
    takes and the compiler's), and each step's activations: per character of the batch, every
    layer's gates (kept for the backward pass) and state, the embedding, and the logits with their
    softmax and gradient. An estimate, to refuse what cannot fit before building it."""
    from charrnn import cells

    gates = cells.num_gates(model_cfg.model)
    per_char = model_cfg.layers * model_cfg.units * (2 * gates + 2) + model_cfg.embedding_dim + 3 * model_cfg.vocab_size
    return 4 * (6 * parameters(model_cfg) + train_cfg.batch_size * train_cfg.seq_length * per_char)


def available_memory():
    """Bytes of memory available to a new process (Linux's MemAvailable), or None if unknown."""
    try:
        with open("/proc/meminfo", encoding="ascii") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        import os

        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def check_fits(model_cfg, train_cfg, available=None):
    """Raises UsageError, with the estimate, if training this model would need more memory than is
    available (`available` bytes; by default what the machine has free now)."""
    from charrnn.errors import UsageError

    need = training_bytes(model_cfg, train_cfg)
    available = available_memory() if available is None else available
    if available is not None and need > available:
        raise UsageError(
            f"this model would need about {_gb(need)} of memory to train ({parameters(model_cfg):,} parameters, "
            f"batches of {train_cfg.batch_size} x {train_cfg.seq_length} characters over a vocabulary of "
            f"{model_cfg.vocab_size:,}), more than the {_gb(available)} available; use a smaller --units, --layers, "
            "--embedding-dim, --batch-size or --seq-length"
        )


def _gb(size):
    return f"{size / 1e9:,.1f} GB" if size >= 1e8 else f"{size / 1e6:,.0f} MB"
