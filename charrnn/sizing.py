"""The size rule: the model's shape, dropout and learning rate for a corpus and a time budget, when
the user gives none of them (`charrnn train --max-time 20m novel.txt`).

Measured on a 2-core CPU without a GPU (docs/benchmarks.md, "Sizing the model"): in 110 s the
default GRU-256 reaches a lower validation loss than wider models, which see too few characters;
in 20 minutes a GRU-512 with dropout 0.2 and a lower learning rate does better, and without the
dropout it overfits tiny Shakespeare long before the budget ends.

And the memory estimate (training_bytes, measured: benchmarks/memory.py), which check_fits
compares with the tightest of the limits charrnn.memory finds before anything is built.
"""

import dataclasses
import math

from charrnn.config import ModelConfig, TrainConfig

# The epochs of a run that gives no --epochs (the rule's long budgets take at least as many).
DEFAULT_EPOCHS = TrainConfig.epochs
# Budgets of at least this many seconds get the larger model.
LARGE_FROM_S = 10 * 60
# Under it, the default GRU-256 with a little dropout and a higher peak learning rate: with the
# default weight decay, 0.027-0.043 lower at 110 s than dropout 0 and 0.006 in each of three seeds;
# and its learning rate decayed to 0, not to a tenth: another 0.002-0.005 in each of three seeds
# (docs/benchmarks.md, "Quality per CPU-minute"). At 20 minutes 0 was 0.009 worse (one run).
SMALL = {"units": 256, "layers": 1, "dropout": 0.1, "recurrent_dropout": 0.0, "learning_rate": 8e-3, "final_lr_fraction": 0.0}
LARGE = {"units": 512, "layers": 1, "learning_rate": 3e-3}
# Training characters per second of the large model on the 2-core CPU (two replicas): with it, the
# budget says how many passes over the text the large model will make.
LARGE_CHARS_PER_S = 25_000
# The same for the small model (measured 59,000 there; a little less, to allow for evaluations).
SMALL_CHARS_PER_S = 50_000
# Dropout of the large model by the passes over the text that the budget allows.
LARGE_DROPOUT = ((8, 0.2), (3, 0.1), (0, 0.0))
# And its recurrent dropout: 0.15 took 20 minutes on tiny Shakespeare (20 passes) from 1.489 to
# 1.456 windowed, still improving at the end instead of overfitting after 7 minutes (one run each,
# weight decay 0.1; docs/benchmarks.md, "Quality per CPU-minute"). Fewer passes: not measured.
LARGE_RECURRENT_DROPOUT = ((8, 0.15), (0, 0.0))
# And its epochs, unless --epochs is given: this many times the passes the budget allows (at
# LARGE_CHARS_PER_S), so that the time budget ends the run and its learning rate decays over all of
# it: the default 20 epochs ended a 20-minute run on tiny Shakespeare after 12 minutes, still
# improving. At least the default, and at most LARGE_MOST_EPOCHS, so that a short text is not
# trained for hundreds of passes (more than measured) only because the budget allows them.
LARGE_EPOCHS_PER_PASS = 1.5
LARGE_MOST_EPOCHS = 60
# The fields the rule sets; a flag the user gives for one of them always wins.
FIELDS = ("units", "layers", "dropout", "recurrent_dropout", "learning_rate", "final_lr_fraction", "epochs")


def choose(num_train, max_time_s, epochs=None):
    """The rule's {field: value} for `num_train` training characters and a budget of
    `max_time_s` seconds and, if the user gave --epochs, `epochs` passes, whichever ends first; {}
    without a time budget (epochs alone: the defaults)."""
    if not max_time_s:
        return {}
    if max_time_s < LARGE_FROM_S:
        return dict(SMALL)
    allowed = passes(num_train, max_time_s)
    chosen = {}
    if epochs is None:
        epochs = chosen["epochs"] = max(DEFAULT_EPOCHS, min(LARGE_MOST_EPOCHS, math.ceil(LARGE_EPOCHS_PER_PASS * allowed)))
    made = min(allowed, epochs)
    dropout = next(rate for least, rate in LARGE_DROPOUT if made >= least)
    recurrent = next(rate for least, rate in LARGE_RECURRENT_DROPOUT if made >= least)
    return dict(LARGE, dropout=dropout, recurrent_dropout=recurrent, **chosen)


def passes(num_train, max_time_s):
    """About how many passes over `num_train` characters the rule's model makes in `max_time_s`
    seconds, at the speed measured for it (SMALL_CHARS_PER_S or LARGE_CHARS_PER_S)."""
    speed = LARGE_CHARS_PER_S if max_time_s >= LARGE_FROM_S else SMALL_CHARS_PER_S
    return max_time_s * speed / max(num_train, 1)


def chars_per_s(model_cfg, max_time_s):
    """About how many characters a second `model_cfg` (vocab_size and output layer set) trains at
    on a 2-core CPU: the speed measured for the rule's model of that budget on English
    (SMALL_CHARS_PER_S, LARGE_CHARS_PER_S), scaled by the multiply-adds per character of each
    (cells.multiply_adds), so that a large alphabet's output layer counts."""
    from charrnn import cells

    large = max_time_s >= LARGE_FROM_S
    measured = ModelConfig(vocab_size=65, units=(LARGE if large else SMALL)["units"])
    speed = LARGE_CHARS_PER_S if large else SMALL_CHARS_PER_S
    return speed * cells.multiply_adds(measured) / cells.multiply_adds(model_cfg)


def describe(cfg, model_cfg, num_train):
    """The one line that says what the rule chose, for the budget that is likely to end first:
    cfg.max_time_s, or cfg.epochs when they end before it (at chars_per_s for the model)."""
    from charrnn.units import duration

    budget = f"{duration(cfg.max_time_s)} budget"
    allowed = cfg.max_time_s * chars_per_s(model_cfg, cfg.max_time_s) / max(num_train, 1)
    if allowed >= cfg.epochs:
        epochs = f"{cfg.epochs:,} epoch, which likely ends" if cfg.epochs == 1 else f"{cfg.epochs:,} epochs, which likely end"
        took = max(1.0, cfg.max_time_s * cfg.epochs / allowed)
        budget = f"{epochs} before the {budget} (about {duration(took)} on a 2-core CPU),"
    else:
        budget = f"a {budget}"
    recurrent = f" (recurrent {model_cfg.recurrent_dropout:g})" if model_cfg.recurrent_dropout else ""
    return (
        f"chose {model_cfg.model.upper()} {model_cfg.units}x{model_cfg.layers}, dropout {model_cfg.dropout:g}{recurrent}, "
        f"learning rate {cfg.learning_rate:g} for {budget} on {num_train:,} training "
        "characters (--units, --layers, --dropout, --recurrent-dropout and --learning-rate choose for yourself)"
    )


def parameters(model_cfg):
    """The trainable parameters of a model of `model_cfg` (its vocab_size set): every weight that
    cells.weight_shapes names, the output layer's (full or adaptive) included."""
    from charrnn import cells

    return sum(math.prod(shape) for shape in cells.weight_shapes(model_cfg).values())


# The memory estimate: the peak resident memory (ru_maxrss) of a whole `charrnn train` run
# (compiling, evaluations and checkpoints included), measured by benchmarks/memory.py on a 2-core
# CPU with two replicas, GRUs of 64 to 2,048 units and vocabularies of 65 to 80,000 characters
# (docs/benchmarks.md, "Memory"). Fitted by least squares and rounded; floats are 4 bytes.
#
# Python with TensorFlow imported (543 MiB alone), the compiled steps and the two devices.
FIXED_BYTES = 850 * 2**20
# Per parameter: the weights, their gradients and Adam's two moments on each replica, the
# gradients' sum and clip, Adam's temporaries, and the checkpoint's copies (fitted: 16.1).
FLOATS_PER_PARAMETER = 16
# Per entry of the first layer's input table (vocab x gates * units, fastrnn.py): the table and
# its gradient on each replica (fitted: 5.1).
FLOATS_PER_TABLE_ENTRY = 5
# Per character of a batch and per unit of a recurrent layer with g gates, kept for the backward
# pass and made by it: the gate activations, the states, their gradients (fitted for the GRU: 19.3).
FLOATS_PER_GATE_UNIT, FLOATS_PER_UNIT = 6, 2
# Per character of a batch and per character of the vocabulary, by output layer: its scores, their
# copy in (batch, time) order, the loss's gradient of them and its copy back (full: fitted 3.7).
# Both layers give scores over the whole vocabulary at every position; the adaptive softmax also
# its tails' log-softmax and their concatenation (fitted 5.3, at 80,000 characters, on the
# layer as it was when measured).
OUTPUT_FLOATS_PER_CHAR = {"full": 4, "adaptive": 5}
# Address space that TensorFlow reserves and never touches (thread stacks, malloc's arenas, its
# allocator's regions): measured 1.9 to 5.7 GiB beyond the resident peak on 2 cores, more with
# more cores. The least of it is added to the resident estimate for a limit on the address space.
RESERVED_ADDRESS_SPACE = 2 * 2**30


def training_bytes(model_cfg, train_cfg):
    """About how many bytes of resident memory a `charrnn train` process training a model of
    `model_cfg` with `train_cfg` reaches at its peak: the fixed cost, the parameters' copies, the
    first layer's input table, the recurrent layers' activations, and the output layer's part
    (output_layer_bytes). An estimate, to refuse what cannot fit before building it."""
    from charrnn import cells

    chars = train_cfg.batch_size * train_cfg.seq_length
    gates = cells.num_gates(model_cfg.model)
    weights = FLOATS_PER_PARAMETER * parameters(model_cfg)
    table = FLOATS_PER_TABLE_ENTRY * model_cfg.vocab_size * gates * model_cfg.units
    recurrent = chars * model_cfg.layers * model_cfg.units * (FLOATS_PER_GATE_UNIT * gates + FLOATS_PER_UNIT)
    return FIXED_BYTES + 4 * (weights + table + recurrent) + output_layer_bytes(model_cfg, train_cfg)


def output_layer_bytes(model_cfg, train_cfg):
    """The output layer's own part of training_bytes: per character of a batch, the scores over
    the whole vocabulary and their gradients (OUTPUT_FLOATS_PER_CHAR each). Its weights are in
    parameters(), as every weight, so that its layout (softmax.weight_shapes) decides them."""
    chars = train_cfg.batch_size * train_cfg.seq_length
    return 4 * OUTPUT_FLOATS_PER_CHAR[model_cfg.output_layer] * chars * model_cfg.vocab_size


def address_space_bytes(model_cfg, train_cfg):
    """The least virtual size (address space) such a training reaches: its resident peak and the
    address space TensorFlow reserves (RESERVED_ADDRESS_SPACE). It is what a limit on the address
    space (`ulimit -v`) is compared with: the larger virtual peaks measured (up to 1.6 times the
    resident growth, as the allocator's regions double) are not counted, so only what certainly
    cannot fit is refused."""
    return training_bytes(model_cfg, train_cfg) + RESERVED_ADDRESS_SPACE


def check_fits(model_cfg, train_cfg, available=None, limits=None):
    """Raises UsageError, with the estimate and the limit that it passes, if training this model
    would need more memory than this process may use: the tightest of charrnn.memory.limits()
    (the machine's free memory, the container's memory limit, `ulimit -v`), or `limits` (a list of
    memory.Limit), or `available` bytes of memory."""
    from charrnn import memory
    from charrnn.errors import UsageError

    if available is not None:
        limits = [memory.Limit(available, "resident", "available", "free some memory")]
    elif limits is None:
        limits = memory.limits()
    need = {"resident": training_bytes(model_cfg, train_cfg), "virtual": address_space_bytes(model_cfg, train_cfg)}
    limit = memory.tightest(limits, need)
    if limit is None or need[limit.kind] <= limit.ceiling:
        return
    what = "memory" if limit.kind == "resident" else "address space"
    raise UsageError(
        f"this model would need about {_gb(need[limit.kind])} of {what} to train ({parameters(model_cfg):,} parameters, "
        f"batches of {train_cfg.batch_size} x {train_cfg.seq_length} characters over a vocabulary of "
        f"{model_cfg.vocab_size:,}), more than the {_gb(limit.ceiling)} {limit.source}; "
        f"{_what_to_lower(model_cfg, train_cfg, limit)}, or {limit.fix}"
    )


def _what_to_lower(model_cfg, train_cfg, limit):
    """"use a smaller --units, ...": the options that shrink the estimate most first, and the
    adaptive softmax when it alone would fit under `limit`."""
    if output_layer_bytes(model_cfg, train_cfg) < training_bytes(model_cfg, train_cfg) / 4:
        return "use a smaller --units, --layers, --embedding-dim, --batch-size or --seq-length"
    options = (
        "a smaller --batch-size or --seq-length (the scores over the whole vocabulary at every character "
        "of a batch are most of it)"
    )
    if model_cfg.output_layer == "full":
        from charrnn import softmax

        adaptive = dataclasses.replace(model_cfg)
        adaptive.output_layer, adaptive.tails = softmax.choose("adaptive", model_cfg.vocab_size, model_cfg.units)
        needs = training_bytes(adaptive, train_cfg) if limit.kind == "resident" else address_space_bytes(adaptive, train_cfg)
        if needs <= limit.ceiling:
            return f"use --output-layer adaptive (about {_gb(needs)}), or {options}"
    return f"use {options}"


def _gb(size):
    return f"{size / 1e9:,.1f} GB" if size >= 1e8 else f"{size / 1e6:,.0f} MB"
