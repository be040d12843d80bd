"""The output layer, from the top recurrent layer's state h to the next character's scores: its
kinds, their weights, and their arithmetic written once for NumPy, TensorFlow and Keras.

full: one dense layer over the whole vocabulary; its outputs are logits (softmax normalises them).
    Per character, units x vocab multiply-adds: 17k of the default GRU's 213k for English, but
    1.5 million, nine tenths of all the work, for a Chinese text with 6,000 distinct characters.

adaptive: the adaptive softmax (Grave et al. 2017, "Efficient softmax approximation for GPUs";
    PyTorch's nn.AdaptiveLogSoftmaxWithLoss). The vocabulary is ordered by frequency (the run's
    vocab.json lists the commonest character first); the head is a dense layer over the `head`
    commonest characters plus one entry per tail cluster; each tail cluster is a run of rarer
    characters behind a narrower projection (units -> dim -> size). The distribution is exact and
    normalised: log p(c) = log_softmax(head)[c] for a head character, log_softmax(head)[cluster]
    + log_softmax(tail)[c] for one in a tail. Its outputs are those log-probabilities, which
    every reader of logits takes as they are (softmax of log-probabilities is the distribution).

The settings hold the layout: ModelConfig.output_layer ("full" or "adaptive") and
ModelConfig.tails, a list of [size, dim] per tail cluster in vocabulary order; the head is the
rest, at the start of the vocabulary.
"""

import numpy as np

OUTPUT_LAYERS = ("full", "adaptive")
# `--output-layer auto` chooses the adaptive softmax from this many distinct characters (measured:
# docs/benchmarks.md, "Any alphabet"): below it the full softmax costs little.
ADAPTIVE_FROM = 512
# The default layout: the head's characters, and each tail's share of the units as in Grave et
# al. (each cluster's projection a quarter of the one before) and the characters it may hold
# (None: the rest).
HEAD = 256
TAILS = ((1024, 4), (None, 16))


def head_size(cfg):
    """The characters in the head: the vocabulary less the tails' (all of it for "full")."""
    return cfg.vocab_size - sum(size for size, _ in cfg.tails)


def tail_ranges(cfg):
    """[(first index, end index, dim)] of each tail cluster, in vocabulary order."""
    ranges, start = [], head_size(cfg)
    for size, dim in cfg.tails:
        ranges.append((start, start + size, dim))
        start += size
    return ranges


def tail_names(i):
    """The weight names of tail cluster i: projection, kernel, bias."""
    return [f"output/tail_{i}/{part}" for part in ("projection", "kernel", "bias")]


def weight_shapes(cfg):
    """{name: shape} of the output layer's weights, in the order the Keras layer creates them."""
    head = head_size(cfg) + len(cfg.tails)
    shapes = {"output/kernel": (cfg.units, head), "output/bias": (head,)}
    for i, (start, end, dim) in enumerate(tail_ranges(cfg)):
        shapes.update(zip(tail_names(i), ((cfg.units, dim), (dim, end - start), (end - start,))))
    return shapes


def default_tails(vocab_size, units):
    """The tails of the default layout for a vocabulary of `vocab_size` characters ordered by
    frequency, as ModelConfig.tails: [[size, dim], ...]; [] when everything fits in the head."""
    tails, start = [], HEAD
    for most, divisor in TAILS:
        if start >= vocab_size:
            break
        size = vocab_size - start if most is None else min(most, vocab_size - start)
        tails.append([size, max(1, units // divisor)])
        start += size
    return tails


def choose(requested, vocab_size, units):
    """(output_layer, tails) for `--output-layer requested` (auto, full or adaptive)."""
    if requested == "auto":
        requested = "adaptive" if vocab_size >= ADAPTIVE_FROM else "full"
    if requested == "full":
        return "full", []
    return "adaptive", default_tails(vocab_size, units)


def check_layout(cfg):
    """Why the output layout of `cfg` cannot be (a sentence), or None when it can."""
    if cfg.output_layer not in OUTPUT_LAYERS:
        return f"output_layer must be one of {', '.join(OUTPUT_LAYERS)}. Received: {cfg.output_layer!r}"
    if not isinstance(cfg.tails, (list, tuple)) or not all(_is_pair(t) for t in cfg.tails):
        return "tails must be a list of [size, dim] pairs of positive whole numbers"
    if cfg.output_layer == "full" and cfg.tails:
        return "the full softmax has no tails"
    if cfg.vocab_size and cfg.tails and head_size(cfg) < 1:
        return f"the tails hold {sum(s for s, _ in cfg.tails):,} characters, more than the vocabulary's {cfg.vocab_size:,} less a head"
    return None


def _is_pair(tail):
    return (
        isinstance(tail, (list, tuple)) and len(tail) == 2
        and all(isinstance(n, int) and not isinstance(n, bool) and 0 < n <= 1 << 24 for n in tail)
    )


def scores(cfg, weights, h, ops):
    """The output layer on states h (..., units): logits (full) or log-probabilities (adaptive),
    (..., vocab). `weights` {name: array or variable}; `ops` gives matmul, log_softmax (over the
    last axis) and concat (along it) for the arrays at hand: NUMPY_OPS, or charrnn.adaptive's for
    TensorFlow and Keras."""

    def dense(x, kernel, bias=None):
        y = ops.matmul(x, weights[kernel])
        return y if bias is None else y + weights[bias]

    return scores_by(cfg, dense, h, ops)


def scores_by(cfg, dense, h, ops):
    """scores() with the layer's matrix products given as `dense(x, kernel name, bias name or
    None)`: x times that kernel, plus that bias (the Keras export's stock Dense layers)."""
    logits = dense(h, "output/kernel", "output/bias")
    if cfg.output_layer == "full":
        return logits
    head = ops.log_softmax(logits)
    first = head_size(cfg)
    parts = [head[..., :first]]
    for i, _ in enumerate(cfg.tails):
        projection, kernel, bias = tail_names(i)
        tail = dense(dense(h, projection), kernel, bias)
        parts.append(head[..., first + i : first + i + 1] + ops.log_softmax(tail))
    return ops.concat(parts)


def _np_log_softmax(x):
    shifted = x - x.max(axis=-1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))


class NUMPY_OPS:
    matmul = staticmethod(np.matmul)
    log_softmax = staticmethod(_np_log_softmax)
    concat = staticmethod(lambda parts: np.concatenate(parts, axis=-1))


def describe(cfg):
    """"full softmax" or "adaptive softmax (head 256, tails 1,024 x 64, 4,685 x 16)"."""
    if cfg.output_layer == "full":
        return "full softmax"
    tails = ", ".join(f"{size:,} x {dim}" for size, dim in cfg.tails)
    return f"adaptive softmax (head {head_size(cfg):,}, tails {tails})" if tails else "adaptive softmax"
