"""Stateful generation in NumPy: one recurrent step per character, no TensorFlow import.

The recurrent steps follow Keras's definitions exactly (LSTM gates i f c o; GRU gates z r h with
reset_after=True; SimpleRNN with tanh), so the logits match the Keras model's to float precision.
"""

import math
import os
import re

# The recurrent step multiplies small matrices: BLAS threads only fight over the cores (16 streams
# ran 10x slower with them on a busy 2-core machine). Takes effect when NumPy is not yet loaded,
# as in `charrnn sample`.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import numpy as np  # noqa: E402

from charrnn import cells
from charrnn.checks import is_int, is_number
from charrnn.errors import SeedError, UsageError
from charrnn.rundir import RunDir

_FLOAT32_MAX = float(np.finfo(np.float32).max)


def _sigmoid(x):
    return 0.5 * np.tanh(0.5 * x) + 0.5


class NumpyRNN:
    """The trained network as NumPy arrays, stepped one character at a time for a batch of streams."""

    def __init__(self, cfg, weights):
        self.cfg = cfg
        self.weights = weights  # as loaded: {name: array}, names as in charrnn/cells.py
        u = cfg.units
        # Every shape checked before any arithmetic: a mismatch names the weight, not a matmul.
        cells.check_weights(cfg, weights)
        self.layers = []
        for i in range(cfg.layers):
            kernel = weights[f"rnn_{i}/kernel"].astype(np.float32)
            recurrent = weights[f"rnn_{i}/recurrent_kernel"].astype(np.float32)
            bias = weights[f"rnn_{i}/bias"].astype(np.float32)
            input_bias, recurrent_bias = cells.split_bias(cfg.model, bias)
            if cfg.model == "lstm":
                # Reorder the gates to (i, f, o, c): one sigmoid covers the first three.
                order = np.concatenate([np.arange(4 * u)[cells.gate_columns("lstm", g, u)] for g in "ifoc"])
                kernel, recurrent, input_bias = kernel[:, order], recurrent[:, order], input_bias[order]
            self.layers.append([kernel, recurrent, input_bias, recurrent_bias])
        # The first layer's input projection of every character, computed once: (vocab, gates*units).
        first = self.layers[0]
        self.input_table = weights["embedding"].astype(np.float32) @ first[0] + first[2]
        self.output_kernel = weights["output/kernel"].astype(np.float32)
        self.output_bias = weights["output/bias"].astype(np.float32)

    def initial_state(self, batch=1):
        """Zero state: per layer, [h] (and [h, c] for LSTM), each (batch, units)."""
        per_layer = cells.states_per_layer(self.cfg.model)
        return [[np.zeros((batch, self.cfg.units), np.float32) for _ in range(per_layer)] for _ in self.layers]

    def step(self, tokens, state):
        """Feeds one token per stream: tokens (batch,) ints. Returns (logits (batch, vocab), state)."""
        h, state = self.advance(tokens, state)
        return self.output(h), state

    def advance(self, tokens, state):
        """The recurrence alone: feeds one token per stream, tokens (batch,) ints. Returns (the top
        layer's h (batch, units), state); `output(h)` turns h into the logits."""
        u = self.cfg.units
        x = None
        new_state = []
        for i, (kernel, recurrent, input_bias, recurrent_bias) in enumerate(self.layers):
            projected = self.input_table.take(tokens, axis=0) if i == 0 else x @ kernel + input_bias
            h = state[i][0]
            if self.cfg.model == "lstm":
                z = projected + h @ recurrent
                gates = _sigmoid(z[:, : 3 * u])
                c = gates[:, u : 2 * u] * state[i][1] + gates[:, :u] * np.tanh(z[:, 3 * u :])
                h = gates[:, 2 * u :] * np.tanh(c)
                new_state.append([h, c])
            elif self.cfg.model == "gru":
                inner = h @ recurrent + recurrent_bias
                gates = _sigmoid(projected[:, : 2 * u] + inner[:, : 2 * u])
                candidate = np.tanh(projected[:, 2 * u :] + gates[:, u:] * inner[:, 2 * u :])
                h = candidate + gates[:, :u] * (h - candidate)
                new_state.append([h])
            else:
                h = np.tanh(projected + h @ recurrent)
                new_state.append([h])
            x = h
        return x, new_state

    def output(self, h):
        """The logits (..., vocab) of top-layer states h (..., units): one matrix product for any
        number of positions."""
        return h @ self.output_kernel + self.output_bias


def load(run_dir, which="best"):
    """Loads (NumpyRNN, Vocab, ModelConfig) from a run directory, without TensorFlow."""
    run = RunDir(run_dir)
    run.require_run()
    settings = run.read_settings()
    cfg = settings.model
    vocab = run.read_vocab(cfg.vocab_size)
    # Each weight's shape is checked against the settings before its data is read.
    weights = run.load_weights(which, settings)
    try:
        return NumpyRNN(cfg, weights), vocab, cfg
    except (ValueError, IndexError) as e:
        raise run.weights_unfit(e) from None


def check_sampling_options(temperature, top_k, top_p, length, num_samples):
    """Raises UsageError for options no draw can use: NaN or infinite numbers among them."""
    if not (is_number(temperature) and 0 <= temperature < math.inf):
        raise UsageError(f"temperature must be a finite number, 0 or more. Received: temperature={temperature}")
    if top_k is not None and not (is_int(top_k) and top_k >= 1):
        raise UsageError(f"top_k must be a positive whole number. Received: top_k={top_k}")
    if top_p is not None and not (is_number(top_p) and 0 < top_p <= 1):
        raise UsageError(f"top_p must be in (0, 1]. Received: top_p={top_p}")
    if not (is_int(length) and length >= 0):
        raise UsageError(f"length must be a whole number, 0 or more. Received: length={length}")
    if not (is_int(num_samples) and num_samples >= 1):
        raise UsageError(f"num_samples must be a positive whole number. Received: num_samples={num_samples}")


def restrict(z, top_k, top_p):
    """Sets to -inf the logits outside the top_k tokens and outside the top_p nucleus, per row."""
    if top_k is not None and top_k < z.shape[1]:
        kth = np.partition(z, -top_k, axis=1)[:, -top_k, None]
        z = np.where(z < kth, -np.inf, z)
    if top_p is not None and top_p < 1:
        order = np.argsort(-z, axis=1)
        sorted_z = np.take_along_axis(z, order, axis=1)
        p = np.exp(sorted_z - sorted_z[:, :1])
        before = np.cumsum(p, axis=1) - p  # probability mass ranked above each token
        drop = before > top_p * p.sum(axis=1, keepdims=True)
        np.put_along_axis(z, order, np.where(drop, -np.inf, sorted_z), axis=1)
    return z


class Chooser:
    """Picks one token per row of logits (batch, vocab): argmax at temperature 0, else a draw from
    softmax(logits / temperature) restricted to the top_k tokens and the top_p nucleus.

    Draws use the Gumbel-max trick, argmax(z + g) with g ~ Gumbel(0, 1), which samples exactly
    from softmax(z); the noise is drawn from `rng` in blocks, so a step costs a few array ops.
    """

    BLOCK = 512
    # At most this many bytes of noise are drawn at once (as float64, before the cast): a block is
    # fewer steps than BLOCK when the streams times the vocabulary are large (100,000 characters).
    NOISE_BYTES = 1 << 24

    def __init__(self, temperature, top_k=None, top_p=None, rng=None):
        self.temperature, self.top_k, self.top_p = temperature, top_k, top_p
        self.rng = rng if rng is not None else np.random.default_rng()
        self.noise = None
        self.used = self.block = 0
        # A temperature so small that 1 / temperature overflows float32 (below about 2.9e-39) is
        # argmax: no draw could differ from it.
        self.scale = None if temperature == 0 or 1.0 / temperature > _FLOAT32_MAX else np.float32(1.0 / temperature)

    def __call__(self, logits):
        if self.scale is None:
            return np.argmax(logits, axis=1)
        # A tiny temperature may take large logits past float32's range (-inf is harmless there).
        with np.errstate(over="ignore"):
            z = logits * self.scale
            if not np.isfinite(z).all():
                # Measured from each row's largest logit, no value can reach +inf (inf - inf is NaN).
                z = (logits - logits.max(axis=1, keepdims=True)) * self.scale
            if self.top_k is not None or self.top_p is not None:
                z = restrict(z, self.top_k, self.top_p)  # z is a fresh array: restrict may write into it
        if self.used == self.block or self.noise.shape[1:] != z.shape:
            self.block = max(1, min(self.BLOCK, self.NOISE_BYTES // (8 * z.size)))
            self.noise = self.rng.gumbel(size=(self.block, *z.shape)).astype(np.float32)
            self.used = 0
        z += self.noise[self.used]
        self.used += 1
        return np.argmax(z, axis=1)


def choose(logits, temperature, top_k=None, top_p=None, rng=None):
    """One draw with Chooser (see there); for one-off use."""
    return Chooser(temperature, top_k, top_p, rng)(logits)


def check_seed(vocab, seed):
    """Raises SeedError naming the seed's characters that are not in the vocabulary."""
    unknown = vocab.unknown_chars(seed)
    if unknown:
        shown = ", ".join(repr(c) for c in unknown[:10])
        raise SeedError(f"the seed has characters the model never saw: {shown}; use only characters from the training text")


def prime(net, vocab, seed, num_samples=1):
    """Runs the seed text through the network. Returns (state, logits) for `num_samples` streams.

    With no seed, generation starts after a newline when the corpus has one, else from a first
    character drawn from the corpus's character frequencies (that character is yielded first by
    `generate`, via the returned logits being None).
    """
    state = net.initial_state(1)
    if seed:
        check_seed(vocab, seed)
        tokens = vocab.encode(seed)
    elif "\n" in vocab.char_to_index:
        tokens = [vocab.char_to_index["\n"]]
    else:
        return [[np.repeat(s, num_samples, axis=0) for s in layer] for layer in state], None
    for token in tokens:
        logits, state = net.step(np.array([token]), state)
    state = [[np.repeat(s, num_samples, axis=0) for s in layer] for layer in state]
    return state, np.repeat(logits, num_samples, axis=0)


def generate(net, vocab, seed="", length=500, temperature=1.0, top_k=None, top_p=None, num_samples=1, rng=None):
    """Yields `length` arrays of `num_samples` token indices: the characters that follow `seed`.

    Pure: the network, vocabulary, prompt and random generator in, tokens out. Each character costs
    one recurrent step for all streams together.
    """
    check_sampling_options(temperature, top_k, top_p, length, num_samples)
    rng = rng if rng is not None else np.random.default_rng()
    draw = Chooser(temperature, top_k, top_p, rng)
    state, logits = prime(net, vocab, seed, num_samples)
    for i in range(length):
        if logits is None:
            counts = np.asarray(vocab.counts if vocab.counts else np.ones(vocab.vocab_size), np.float64)
            tokens = rng.choice(vocab.vocab_size, size=num_samples, p=counts / counts.sum())
        else:
            tokens = draw(logits)
        yield tokens
        if i + 1 < length:
            logits, state = net.step(tokens, state)


# The most tokens stream_samples holds back. Samples are generated in groups whose streams step
# together: the first of a group is written as it is generated, the others are held until it ends
# (as tokens, at most 4 bytes each: 64 MB), then written. A group has as many samples as keep the
# held tokens under this, and at least one, so memory does not grow with --length.
HELD_TOKENS = 1 << 24
# Characters decoded at a time when a held sample is written.
DECODE_CHUNK = 1 << 16


def group_size(num_samples, length):
    """How many samples stream_samples generates together."""
    return max(1, min(num_samples, 1 + HELD_TOKENS // max(length, 1)))


def stream_samples(net, vocab, seed="", length=500, temperature=1.0, top_k=None, top_p=None, num_samples=1, rng=None):
    """Yields the text of `num_samples` samples in pieces, as it is to be written: each sample the
    seed and `length` new characters, a blank line between samples, a newline at the end. The first
    sample of each group (group_size) comes piece by piece as it is generated (a piece ends at a
    newline or after 64 characters); the others of the group follow it. A seed the model cannot
    start from fails before the first piece."""
    check_sampling_options(temperature, top_k, top_p, length, num_samples)
    check_seed(vocab, seed)
    rng = rng if rng is not None else np.random.default_rng()
    chars = vocab.index_to_char
    per_group = group_size(num_samples, length)
    for first in range(0, num_samples, per_group):
        group = min(per_group, num_samples - first)
        held = np.empty((group - 1, length), vocab.dtype)  # (samples held back, length)
        yield ("\n\n" if first else "") + seed
        pending = []
        for t, tokens in enumerate(generate(net, vocab, seed, length, temperature, top_k, top_p, group, rng)):
            c = chars[tokens[0]]
            pending.append(c)
            if c == "\n" or len(pending) >= 64:
                yield "".join(pending)
                pending = []
            held[:, t] = tokens[1:]
        if pending:
            yield "".join(pending)
        for row in held:
            yield "\n\n" + seed
            for a in range(0, length, DECODE_CHUNK):
                yield vocab.decode(row[a : a + DECODE_CHUNK])
    yield "\n"


# What a terminal acts on rather than shows: the C0 controls but newline and tab (ESC starts the
# sequences that recolour, move the cursor or reset it; CR overwrites the line), DEL, the C1
# controls, and the bidirectional overrides and isolates that reorder the text around them.
_CONTROL = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")


def visible(text):
    """(text with each control character written as its escape: ESC as \\x1b, CR as \\r, U+202E
    as \\u202e; how many there were). Newlines and tabs are left as they are."""
    return _CONTROL.subn(lambda m: m.group().encode("unicode_escape").decode("ascii"), text)


def sample_text(net, vocab, seed="", length=500, temperature=1.0, top_k=None, top_p=None, num_samples=1, random_seed=None):
    """Returns a list of `num_samples` strings, each the seed followed by `length` new characters."""
    rng = np.random.default_rng(random_seed)
    steps = list(generate(net, vocab, seed, length, temperature, top_k, top_p, num_samples, rng))
    if not steps:
        return [seed] * num_samples
    columns = np.stack(steps, axis=1)  # (num_samples, length)
    return [seed + vocab.decode(row) for row in columns]
