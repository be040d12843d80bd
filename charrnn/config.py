"""Model and training settings. Saved as JSON in the run directory, so sampling and export need
nothing but the run directory."""

import dataclasses
import math
from dataclasses import dataclass, field

from charrnn import softmax
from charrnn.cells import CELL_TYPES
from charrnn.errors import UsageError


# How training treats the recurrent state between windows (TrainConfig.state).
STATE_HANDLING = ("carry", "reset")
DEFAULT_STATE = "reset"
# The learning rate's decay after the warm-up (TrainConfig.lr_decay), to final_lr_fraction of the peak.
LR_DECAYS = ("cosine", "linear")
# Random seeds go to NumPy's legacy seeding (through keras.utils.set_random_seed), which takes
# 0 to 2**32 - 1.
MAX_SEED = 2**32 - 1
# Upper bounds on the model's sizes, far above anything that trains (the memory a model needs is
# estimated before it is built: charrnn.sizing.estimate), so that a hand-edited settings.json
# cannot make a reader allocate for 10**8 layers before it notices.
MAX_SIZES = {"layers": 256, "units": 1 << 16, "embedding_dim": 1 << 16, "vocab_size": 0x110000}


@dataclass
class ModelConfig:
    model: str = "gru"  # recurrent cell: lstm, gru or rnn (SimpleRNN)
    layers: int = 1  # stacked recurrent layers
    units: int = 256  # hidden units per recurrent layer
    embedding_dim: int = 64  # size of each character's embedding vector
    dropout: float = 0.0  # dropout between layers and before the output layer, in [0, 1)
    # variational dropout of the state that enters each recurrence (one mask per window, the same
    # at every step), in [0, 1): training only, the weights and sampling are unchanged
    recurrent_dropout: float = 0.0
    vocab_size: int = 0  # set from the corpus
    # the output layer (charrnn/softmax.py): "full" or "adaptive", and the adaptive softmax's tail
    # clusters, [size, dim] each, in vocabulary order (the vocabulary ordered by frequency)
    output_layer: str = "full"
    tails: list = field(default_factory=list)

    def validate(self):
        if self.model not in CELL_TYPES:
            raise UsageError(f"model must be one of {', '.join(CELL_TYPES)}. Received: model={self.model!r}")
        for name in ("layers", "units", "embedding_dim"):
            _positive(name, getattr(self, name))
        for name, most in MAX_SIZES.items():
            if getattr(self, name) > most:
                raise UsageError(f"{name} must be at most {most:,}. Received: {name}={getattr(self, name):,}")
        if self.vocab_size < 0:
            raise UsageError(f"vocab_size must be 0 or more. Received: vocab_size={self.vocab_size}")
        for name in ("dropout", "recurrent_dropout"):
            if not 0.0 <= getattr(self, name) < 1.0:
                raise UsageError(f"{name} must be in [0, 1). Received: {name}={getattr(self, name)}")
        problem = softmax.check_layout(self)
        if problem:
            raise UsageError(problem)


@dataclass
class TrainConfig:
    seq_length: int = 100  # characters per training window (truncated backpropagation length)
    batch_size: int = 32  # windows per optimizer step
    learning_rate: float = 6e-3  # peak learning rate of Adam
    warmup_fraction: float = 0.02  # share of the budget spent raising the learning rate from 0
    final_lr_fraction: float = 0.1  # the learning rate decays to this share of the peak
    lr_decay: str = "cosine"  # how: "cosine" or "linear" (LR_DECAYS)
    clipnorm: float = 1.0  # gradients are clipped to this global norm
    adam_beta2: float = 0.999  # Adam's decay rate of the squared gradients' average
    # decoupled (AdamW): each step shrinks every weight but the biases by lr x this; 0.1 measured
    # 0.02 lower than none at 110 s on tiny Shakespeare, in each of three seeds (docs/benchmarks.md)
    weight_decay: float = 0.1
    epochs: int = 20  # stop after this many passes over the training text
    max_time_s: float | None = None  # or after this many seconds of training, if sooner
    val_fraction: float = 0.1  # the last part of the corpus held out for validation
    eval_every_s: float = 30.0  # seconds between validation passes
    checkpoint_every_s: float = 300.0  # seconds between checkpoints (also at every epoch end)
    random_seed: int = 0  # seeds weights, data order and dropout
    # "carry": each window goes on from where the window before it in its stream ended, the state
    # passed on (truncated backpropagation through time); "reset": every window from a zero state
    state: str = DEFAULT_STATE

    def validate(self):
        _positive("seq_length", self.seq_length)
        _positive("batch_size", self.batch_size)
        _positive("epochs", self.epochs)
        for name in ("learning_rate", "clipnorm", "eval_every_s", "checkpoint_every_s"):
            _positive(name, getattr(self, name))
        if self.max_time_s is not None:
            _positive("max_time", self.max_time_s)
        if not 0.0 < self.val_fraction < 1.0:
            raise UsageError(
                f"val_fraction must be between 0 and 1 (exclusive). Received: val_fraction={self.val_fraction}"
            )
        if not 0.0 <= self.warmup_fraction < 1.0:
            raise UsageError(f"warmup_fraction must be in [0, 1). Received: {self.warmup_fraction}")
        if not 0 <= self.random_seed <= MAX_SEED:
            raise UsageError(f"random_seed must be in [0, {MAX_SEED}]. Received: random_seed={self.random_seed}")
        if self.state not in STATE_HANDLING:
            raise UsageError(f"state must be one of {', '.join(STATE_HANDLING)}. Received: state={self.state!r}")
        if not 0.0 < self.adam_beta2 < 1.0:
            raise UsageError(f"adam_beta2 must be between 0 and 1 (exclusive). Received: adam_beta2={self.adam_beta2}")
        if not 0.0 <= self.weight_decay < 1.0:
            raise UsageError(f"weight_decay must be in [0, 1). Received: weight_decay={self.weight_decay}")
        if not 0.0 <= self.final_lr_fraction <= 1.0:
            raise UsageError(f"final_lr_fraction must be in [0, 1]. Received: {self.final_lr_fraction}")
        if self.lr_decay not in LR_DECAYS:
            raise UsageError(f"lr_decay must be one of {', '.join(LR_DECAYS)}. Received: lr_decay={self.lr_decay!r}")


# Model settings that fix the shape of the weights: a resumed run cannot change them.
SHAPE_FIELDS = ("model", "layers", "units", "embedding_dim", "output_layer", "tails")
# Training settings that fix the order of the data: a resumed run cannot change them either.
DATA_ORDER_FIELDS = ("seq_length", "batch_size", "val_fraction", "random_seed", "state")


def _positive(name, value):
    if not value > 0:  # also refuses NaN
        raise UsageError(f"{name} must be positive. Received: {name}={value}")
    if not math.isfinite(value):
        raise UsageError(f"{name} must be finite. Received: {name}={value}")


def resumed(saved, options, frozen):
    """The saved config with the options given on the command line set on it (a copy). Refuses a
    change to a `frozen` field with a UsageError that says what to do instead."""
    cfg = dataclasses.replace(saved)
    for name, value in options.items():
        if name in frozen and value != getattr(cfg, name):
            raise UsageError(
                f"--{name.replace('_', '-')} cannot change when resuming: the run has "
                f"{getattr(cfg, name)}, you asked for {value}; start a new run with another --run-dir"
            )
        setattr(cfg, name, value)
    cfg.validate()
    return cfg


def from_dict(cls, data):
    """Builds a config dataclass from saved JSON, ignoring nothing silently."""
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = set(data) - names
    if unknown:
        raise ValueError(f"unknown {cls.__name__} fields: {', '.join(sorted(unknown))}")
    return cls(**data)
