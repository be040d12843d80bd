"""The loss of a run's model on any text, in nats and bits per character, without TensorFlow.

Two protocols:

    carried   the text is read as `sample` reads a seed: one recurrent step per character, the
              state carried from the first character to the last. The first character is context
              only; every later one is a prediction target.
    window    --window N: non-overlapping windows of N + 1 characters stepping by N from the start,
              each from a zero state, N targets each: the training loop's validation protocol
              (data.validation_windows without its cap on the number of characters).

Characters outside the run's vocabulary are skipped (neither fed nor predicted) and counted. The
text is read and decoded a chunk at a time (charrnn/evaltext.py), so memory does not grow with its
length.
"""

import dataclasses
import math
import time
from dataclasses import dataclass

from charrnn.snapshot import Snapshot  # first: via charrnn.numpynet, it sets NumPy's BLAS threads before NumPy loads

import numpy as np

from charrnn import evaltext
from charrnn.corpus import source_name
from charrnn.errors import CorpusError, RunDirError
from charrnn.units import bits_per_char

# Positions whose logits one matrix product computes: at most BLOCK, and fewer when the vocabulary
# is large, so that a block's logits stay under BLOCK_LOGITS numbers (16 MB of float32; scoring a
# block holds about three such arrays, so memory stays under 64 MB whatever the vocabulary).
BLOCK = 4096
BLOCK_LOGITS = 1 << 22
# Windows stepped together under --window.
WINDOW_BATCH = 512
VALIDATION = "validation"


@dataclass
class Loss:
    """A summed cross-entropy: `nats` over `chars` prediction targets."""

    nats: float
    chars: int

    @property
    def mean(self):
        """Nats per character (NaN with no targets)."""
        return self.nats / self.chars if self.chars else math.nan


@dataclass
class Evaluation:
    """What `charrnn eval` reports."""

    nats_per_char: float
    bits_per_char: float
    chars: int  # prediction targets scored
    unknown_chars: int  # characters skipped because the vocabulary lacks them
    unknown: list  # the first evaltext.SHOWN_UNKNOWN distinct ones, in order of first appearance
    weights: str  # "best" or "latest": the weights actually used
    step: int  # the training step of those weights
    protocol: str  # "carried" or "window"
    window: int | None  # N of --window N
    text: str  # the file name, "<stdin>" or "validation"
    seconds: float

    def to_dict(self):
        return dataclasses.asdict(self)


def evaluate(run_dir, path=None, window=None, which="best", stdin=None):
    """Evaluates the run's model on the text at `path` ("-": the binary stream `stdin`; None: the
    run's validation text). `window` None carries the state over the whole text; N scores windows
    of N + 1 characters (N targets each) from a zero state. `which` is "best" or "latest". Returns an
    Evaluation; raises CharRNNError subclasses."""
    started = time.monotonic()
    snapshot = Snapshot.load(run_dir, which)
    net = snapshot.net
    known = evaltext.KnownChars(snapshot.vocab)
    if path is None:
        name = VALIDATION
        token_chunks = evaltext.validation_tokens(snapshot, known)
    else:
        name = source_name(path)
        token_chunks = known.tokens(evaltext.codepoint_chunks(path, stdin))
    if window is None:
        loss = carried_loss(net, token_chunks)
    else:
        loss = _windows_loss(net, window_batches(token_chunks, window), window)
    _check_scored(loss, known, "the validation text" if path is None else name, window)
    return Evaluation(
        nats_per_char=loss.mean,
        bits_per_char=bits_per_char(loss.mean),
        chars=loss.chars,
        unknown_chars=known.unknown_count,
        unknown=list(known.unknown),
        weights=snapshot.which,
        step=snapshot.step,
        protocol="carried" if window is None else "window",
        window=window,
        text=name,
        seconds=time.monotonic() - started,
    )


# --- the two protocols, on token arrays ----------------------------------------------------------


def carried_loss(net, token_chunks):
    """The loss of `token_chunks` (an iterable of 1-D token arrays, read as one text) with the state
    carried from its first token to its last: each token's output predicts the next. Returns a Loss.

    The recurrence runs one token at a time; the logits are computed for a block of positions at
    once, from their saved top-layer states."""
    block = _block_size(net)
    hidden = np.empty((block, net.cfg.units), np.float32)  # top-layer h of positions awaiting scoring
    targets = np.empty(block, np.int64)
    state = net.initial_state(1)
    total = 0.0
    scored = 0
    filled = 0  # rows of `hidden` whose targets are known
    started = False  # whether hidden[filled] holds the previous token's h
    for chunk in token_chunks:
        chunk = np.asarray(chunk, np.int64)
        for i in range(len(chunk)):
            token = chunk[i : i + 1]
            if started:
                targets[filled] = token[0]
                filled += 1
                if filled == block:
                    total += _cross_entropy(net, hidden, targets)
                    scored += block
                    filled = 0
            h, state = net.advance(token, state)
            hidden[filled] = h[0]
            started = True
    total += _cross_entropy(net, hidden[:filled], targets[:filled])
    return Loss(total, scored + filled)


def windowed_loss(net, tokens, window):
    """The loss of the 1-D token array `tokens` under the windowed protocol: windows of window + 1
    tokens stepping by `window` from the start, each from a zero state, all `window` targets of
    each counted (as data.validation_windows gives them, without its cap). Returns a Loss."""
    return _windows_loss(net, window_batches([tokens], window), window)


def window_batches(token_chunks, window):
    """Yields the windows of the text in `token_chunks` (as windowed_loss takes them), in batches
    of at most WINDOW_BATCH: int64 arrays (windows, window + 1)."""
    rest = np.zeros(0, np.int64)  # the tail not yet in a window (with the last window's last token)
    offsets = np.arange(window + 1)
    for chunk in token_chunks:
        text = np.concatenate([rest, np.asarray(chunk, np.int64)])
        num_windows = (len(text) - 1) // window
        for first in range(0, num_windows, WINDOW_BATCH):
            starts = window * np.arange(first, min(first + WINDOW_BATCH, num_windows))
            yield text[starts[:, None] + offsets]
        rest = text[num_windows * window :]


def _windows_loss(net, batches, window):
    total = 0.0
    scored = 0
    for windows in batches:
        state = net.initial_state(len(windows))
        for t in range(window):
            h, state = net.advance(windows[:, t], state)
            total += _cross_entropy(net, h, windows[:, t + 1])
        scored += windows.size - len(windows)
    return Loss(total, scored)


def _block_size(net):
    return max(1, min(BLOCK, BLOCK_LOGITS // net.cfg.vocab_size))


def _cross_entropy(net, hidden, targets):
    """The summed -log softmax(logits)[target] of positions with top-layer states `hidden`
    (positions, units), in float64; the logits computed _block_size positions at a time."""
    block = _block_size(net)
    total = 0.0
    for a in range(0, len(targets), block):
        logits = net.output(hidden[a : a + block])  # (positions, vocab)
        z = logits - logits.max(axis=1, keepdims=True)
        log_sums = np.log(np.exp(z).sum(axis=1, dtype=np.float64))
        total += float(np.sum(log_sums - z[np.arange(len(z)), targets[a : a + block]]))
    return total


def _check_scored(loss, known, name, window):
    """Raises CorpusError when nothing could be scored, RunDirError when the loss is not finite."""
    if loss.chars == 0:
        if known.seen == 0:
            raise CorpusError(f"{name} is empty: give a file with some text in it")
        if known.unknown_count == known.seen:
            raise CorpusError(
                f"{name} has no character the model knows (all {known.seen:,} are unknown to its vocabulary, "
                f"such as {known.describe_unknown()}); give text in the training text's alphabet"
            )
        num_known = known.seen - known.unknown_count
        if window is not None and num_known > 1:
            raise CorpusError(
                f"{name} has only {num_known:,} characters the model knows, and one window of --window {window} "
                f"needs {window + 1:,}; give a longer text or a smaller --window"
            )
        raise CorpusError(f"{name} has only one character the model knows: nothing to predict; give a longer text")
    if not math.isfinite(loss.nats):
        raise RunDirError(f"the model's loss is not finite ({loss.nats}): its weights are damaged or diverged; retrain the run")

