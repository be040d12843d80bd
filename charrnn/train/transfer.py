"""`charrnn train TEXT --init-from BASE`: a new run whose weights start from BASE's best ones.

BASE is only read (its settings, vocabulary and best.npz, each file whole: a training that holds
BASE's lock replaces them atomically, so each read is one consistent version). The new run has
BASE's shape; its vocabulary is BASE's, in BASE's order, followed by the characters of the new
text BASE never saw, commonest first. Their rows are new: embedding rows drawn around BASE's
(its rows' mean and spread, dimension by dimension), output weights zero, and output biases set so
that the new characters start at their frequency in the new text, on the scale BASE's biases have
for the characters both texts share. BASE's rows keep their meaning. With the adaptive softmax the
new characters join the last tail.

The run records where it came from in settings.json's `origin`: BASE's path, the step of the
weights taken and their digest, how many characters were added.
"""

import dataclasses
import hashlib
from pathlib import Path

import numpy as np

from charrnn import cells
from charrnn.errors import UsageError
from charrnn.vocab import Vocab

# The model fields a fine-tuned run takes from BASE (a flag that gives another value is refused).
SHAPE = ("model", "layers", "units", "embedding_dim", "output_layer")
# Fine-tuning's defaults where the user gives none (measured: docs/benchmarks.md, "Fine-tuning").
DEFAULTS = {"learning_rate": 2e-3, "dropout": 0.0, "recurrent_dropout": 0.0, "weight_decay": 0.0}


@dataclasses.dataclass
class Start:
    """What a fine-tuned run starts from: its model config, vocabulary and weights, and its origin."""

    model_cfg: object
    vocab: Vocab
    weights: dict
    origin: dict


def check_not_self(base_dir, run_path):
    """UsageError when BASE is the run directory being trained (or holds it)."""
    base, run = Path(base_dir).resolve(), Path(run_path).resolve()
    if base == run or base in run.parents:
        raise UsageError(f"--init-from {base_dir} is the run being trained; give another run directory as the base")


def read_base(base_dir):
    """BASE's Snapshot, with its best weights (the latest before its first evaluation)."""
    from charrnn.snapshot import Snapshot

    return Snapshot.load(base_dir, "best")


def check_shape(base_cfg, model_options, base_dir):
    """UsageError when a flag would give the new run another shape than BASE's."""
    for name in SHAPE:
        given = model_options.get(name)
        if given is not None and given != "auto" and given != getattr(base_cfg, name):
            flag = "--" + name.replace("_", "-")
            raise UsageError(
                f"{flag} {given} differs from the base's: {base_dir} is {describe(base_cfg)}, and a run started "
                f"from it keeps that shape; leave out {flag} (or train from zero weights without --init-from)"
            )


def describe(cfg):
    layer = "" if cfg.output_layer == "full" else f", {cfg.output_layer} softmax"
    return f"a {cfg.model.upper()} {cfg.units}x{cfg.layers} with {cfg.embedding_dim}-wide embeddings{layer}"


def start(snapshot, text_vocab, model_options, base_dir):
    """The Start of a run on a text whose characters and counts are `text_vocab`, from BASE's
    `snapshot`."""
    base_cfg, base_vocab = snapshot.cfg, snapshot.vocab
    new_chars = [c for c in text_vocab.by_frequency().index_to_char if c not in base_vocab.char_to_index]
    counts = dict(zip(text_vocab.index_to_char, text_vocab.counts))
    chars = base_vocab.index_to_char + new_chars
    vocab = Vocab(chars, [counts.get(c, 0) for c in chars])
    dropouts = {name: model_options.get(name, DEFAULTS[name]) for name in ("dropout", "recurrent_dropout")}
    model_cfg = dataclasses.replace(base_cfg, vocab_size=len(chars), **dropouts)
    if base_cfg.output_layer == "adaptive" and new_chars:
        tails = [list(t) for t in base_cfg.tails]
        tails[-1][0] += len(new_chars)
        model_cfg.tails = tails
    weights = grown_weights(snapshot.weights, model_cfg, vocab)
    origin = {
        "path": str(Path(base_dir).resolve()),
        "step": int(snapshot.step),
        "weights_sha256": digest(snapshot.weights),
        "vocab_size": base_vocab.vocab_size,
        "added_chars": len(new_chars),
    }
    return Start(model_cfg, vocab, weights, origin)


def digest(weights):
    """sha256 of the weights, name by name in sorted order (names, shapes and float32 bytes)."""
    h = hashlib.sha256()
    for name in sorted(weights):
        array = np.ascontiguousarray(weights[name], np.float32)
        h.update(f"{name}{array.shape}".encode())
        h.update(array.tobytes())
    return h.hexdigest()


def grown_weights(base_weights, model_cfg, vocab, seed=0):
    """BASE's weights for `model_cfg`: each one as it is, or grown where the vocabulary grew (the
    embedding's rows, the output layer's last axis), the new parts initialised as the module says."""
    rng = np.random.default_rng(seed)
    logp = _log_frequencies(vocab)
    ranges = _output_ranges(model_cfg)
    weights = {}
    for name, shape in cells.weight_shapes(model_cfg).items():
        old = np.asarray(base_weights[name], np.float32)
        if old.shape == tuple(shape):
            weights[name] = old
        elif name == "embedding":
            mean, spread = old.mean(axis=0), old.std(axis=0)
            new = rng.normal(mean, spread, size=(shape[0] - old.shape[0], shape[1]))
            weights[name] = np.concatenate([old, new.astype(np.float32)])
        elif name.endswith("bias"):
            first, _ = ranges[name]  # the vocabulary indices this bias's entries stand for
            weights[name] = _grown_bias(old, logp[first : first + shape[0]], old.shape[0])
        else:  # an output kernel: (inputs, outputs), new output columns zero
            weights[name] = np.concatenate([old, np.zeros((shape[0], shape[1] - old.shape[1]), np.float32)], axis=1)
    return weights


def _grown_bias(old, logp, known):
    """The bias with entries for the new characters: log-frequency in the new text plus the offset
    that, for the characters both know and the new text has, takes log-frequency to BASE's bias."""
    shared = np.isfinite(logp[:known])
    offset = float(np.median(old[shared] - logp[:known][shared])) if shared.any() else float(np.min(old))
    new = np.where(np.isfinite(logp[known:]), logp[known:] + offset, np.min(old))
    return np.concatenate([old, new.astype(np.float32)])


def _log_frequencies(vocab):
    counts = np.asarray(vocab.counts, np.float64)
    with np.errstate(divide="ignore"):
        return np.log(counts / max(counts.sum(), 1.0))


def _output_ranges(cfg):
    """{bias name: (first vocabulary index, size)} for the output layer's biases that stand for
    characters (the full softmax's, each tail's)."""
    from charrnn import softmax

    if cfg.output_layer == "full" or not cfg.tails:  # the head alone holds every character
        return {"output/bias": (0, cfg.vocab_size)}
    return {softmax.tail_names(i)[2]: (first, end - first) for i, (first, end, _) in enumerate(softmax.tail_ranges(cfg))}


def start_line(start, snapshot, train_cfg):
    """"fine-tuning from base-run (GRU 256x1, its best weights of step 1,800): 65 characters, 3 of
    this text's new to it; learning rate 0.002 ...": what the run starts from, in one line."""
    added = start.origin["added_chars"]
    new = f", {added:,} of this text's new to it" if added else ""
    return (
        f"fine-tuning from {snapshot.run.path} ({describe(snapshot.cfg)[2:]}, its best weights of step {snapshot.step:,}): "
        f"{start.origin['vocab_size']:,} characters{new}; learning rate {train_cfg.learning_rate:g}, a fresh optimizer "
        "(--learning-rate and --dropout choose for yourself)"
    )
