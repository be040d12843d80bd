"""The loss of a run's model on any text, in nats and bits per character, without TensorFlow.

Two protocols:

    carried   the text is read as `sample` reads a seed: one recurrent step per character, the
              state carried from the first character to the last. The first character is context
              only; every later one is a prediction target.
    window    --window N: non-overlapping windows of N + 1 characters stepping by N from the start,
              each from a zero state, N targets each: the training loop's validation protocol
              (data.validation_windows without its cap on the number of characters).

Characters outside the run's vocabulary are skipped (neither fed nor predicted) and counted. The
text is read and decoded a chunk at a time, so memory does not grow with its length.
"""

import dataclasses
import hashlib
import math
import os
import time
from dataclasses import dataclass

from charrnn import sample  # first: it sets NumPy's BLAS threads before NumPy loads

import numpy as np

from charrnn import data
from charrnn.errors import CharRNNError, CorpusError, RunDirError
from charrnn.rundir import RunDir
from charrnn.units import bits_per_char
from charrnn.vocab import index_dtype

# What is read at a time: bytes of a text file, or characters of the run's corpus.npy.
CHUNK = 1 << 20
# Positions whose logits one matrix product computes: at most BLOCK, and fewer when the vocabulary
# is large, so that a block's logits stay under BLOCK_LOGITS numbers (16 MB of float32; scoring a
# block holds about three such arrays, so memory stays under 64 MB whatever the vocabulary).
BLOCK = 4096
BLOCK_LOGITS = 1 << 22
# Windows stepped together under --window.
WINDOW_BATCH = 512
# Distinct unknown characters kept to show.
SHOWN_UNKNOWN = 20
STDIN = "-"
STDIN_NAME = "<stdin>"
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
    unknown: list  # the first SHOWN_UNKNOWN distinct ones, in order of first appearance
    weights: str  # "best" or "latest": the weights actually used
    step: int | None  # the training step of those weights, if known
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
    run = RunDir(run_dir)
    net, vocab, _ = sample.load(run_dir, which)
    used = "best" if which == "best" and run.has_best() else "latest"
    known = KnownChars(vocab)
    if path is None:
        name = VALIDATION
        token_chunks = validation_tokens(run, known)
    else:
        name = STDIN_NAME if path == STDIN else str(path)
        token_chunks = known.tokens(codepoint_chunks(path, stdin))
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
        weights=used,
        step=_weights_step(run, used),
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


# --- reading the text ------------------------------------------------------------------------------


class KnownChars:
    """Encodes code points with a run's vocabulary, skipping (and counting) the characters it lacks."""

    def __init__(self, vocab):
        values = np.array([ord(c) for c in vocab.index_to_char], np.int64)
        self.order = np.argsort(values)
        self.sorted = values[self.order]
        self.unknown_count = 0
        self.unknown = {}  # the first SHOWN_UNKNOWN distinct unknown characters: None each
        self.more_unknown = False  # whether there were more distinct ones than those
        self.seen = 0  # characters read, known or not

    def tokens(self, codepoint_chunks):
        """Yields the token array of each code point chunk, unknown characters left out."""
        for values in codepoint_chunks:
            yield self.encode(values)

    def counted(self, token_chunks):
        """Yields token arrays that need no encoding (the run's own corpus), counting them as read."""
        for tokens in token_chunks:
            self.seen += len(tokens)
            yield tokens

    def encode(self, values):
        """Token indices (int64) of the known characters among the code points `values`."""
        values = np.asarray(values, np.int64)
        self.seen += len(values)
        at = np.minimum(np.searchsorted(self.sorted, values), len(self.sorted) - 1)
        known = self.sorted[at] == values
        if not known.all():
            self._note_unknown(values[~known])
        return self.order[at[known]]

    def _note_unknown(self, values):
        self.unknown_count += len(values)
        distinct, first = np.unique(values, return_index=True)
        for value in distinct[np.argsort(first)].tolist():
            c = chr(value)
            if c in self.unknown:
                continue
            if len(self.unknown) < SHOWN_UNKNOWN:
                self.unknown[c] = None
            else:
                self.more_unknown = True

    def describe_unknown(self):
        """The unknown characters as text: 'Z', '€' (and more)."""
        shown = ", ".join(repr(c) for c in self.unknown)
        return shown + (" and more" if self.more_unknown else "")


def codepoint_chunks(path, stdin=None):
    """Yields the code points (uint32 arrays) of the UTF-8 text at `path` ("-": the binary stream
    `stdin`), read and decoded CHUNK bytes at a time. Raises CorpusError for a missing, unreadable,
    binary or invalid file, as charrnn.data does."""
    if path == STDIN:
        if stdin is None:
            raise CorpusError("cannot read standard input here")
        if stdin.isatty():
            raise CorpusError(
                "the text is - (standard input), but standard input is a terminal: "
                "pipe the text in, for example: cat notes.txt | charrnn eval -"
            )
        yield from _decode(STDIN_NAME, stdin)
        return
    with _open(path) as f:
        yield from _decode(str(path), f)


def _open(path):
    try:
        return open(path, "rb")  # noqa: SIM115  (the caller closes it)
    except FileNotFoundError:
        raise CorpusError(f"file not found: {path}") from None
    except IsADirectoryError:
        raise CorpusError(f"{path} is a directory: give a text file") from None
    except PermissionError:
        raise CorpusError(f"cannot read {path}: permission denied; fix its permissions") from None
    except OSError as e:
        raise CorpusError(f"cannot read {path}: {e.strerror or e}") from None


def _decode(name, stream):
    """Yields the code point arrays of the binary `stream`, read CHUNK bytes at a time and checked
    as charrnn.data checks a corpus."""
    for _, values in data.decode_utf8(name, iter(lambda: _read(name, stream), b"")):
        yield values


def _read(name, stream):
    """CHUNK bytes of `stream`; an OSError (a directory, an I/O error) is a CorpusError naming it."""
    try:
        return stream.read(CHUNK)
    except OSError as e:
        raise CorpusError(f"cannot read {name}: {e.strerror or e}") from None


def validation_tokens(run, known):
    """Yields the tokens of the run's validation text (the last val_fraction of its corpus) a chunk
    at a time: from corpus.npy, or, if that is missing, from the corpus files it was trained on."""
    settings = run.read_settings()
    num_chars = settings.corpus.get("chars")
    files = settings.corpus["files"]
    paths = [f["path"] for f in files]
    give_file = "give a FILE to evaluate, for example: charrnn eval novel.txt"
    if not isinstance(num_chars, int):
        raise RunDirError(f"{run.file('settings.json')} does not say how long the corpus is; {give_file}")
    num_train, _ = data.split_sizes(num_chars, settings.train.val_fraction)
    text = run.read_corpus(num_chars, index_dtype(settings.model.vocab_size))
    if text is not None:
        return known.counted(_disk_chunks(text, num_train))
    unreadable = [p for p in paths if p == STDIN or not os.path.isfile(p)]
    if not paths or unreadable:
        if STDIN in unreadable:
            where = "the corpus was read from standard input"
        else:
            where = f"the corpus file {(unreadable or ['(none recorded)'])[0]} is not there"
        raise RunDirError(f"the run's validation text cannot be found: {run.file('corpus.npy')} is missing and {where}; {give_file}")
    changed = [f["path"] for f in files if os.path.getsize(f["path"]) != f["bytes"]]
    if changed:
        raise CorpusError(_changed(changed[0], give_file))
    return known.tokens(_skip(_files_chunks(files, give_file), num_train))


def _disk_chunks(text, start):
    """The tokens of a data.DiskText from `start` on, CHUNK at a time; closes its file at the end."""
    try:
        for a in range(start, len(text), CHUNK):
            yield np.asarray(text[a : a + CHUNK]).astype(np.int64)
    finally:
        text.file.close()


def _files_chunks(files, give_file):
    """The code points of the corpus files (dicts with path and sha256), checking each file's
    sha256 against the one training recorded."""
    for facts in files:
        with _open(facts["path"]) as f:
            hashing = _Hashing(f)
            yield from _decode(facts["path"], hashing)
        if hashing.digest.hexdigest() != facts["sha256"]:
            raise CorpusError(_changed(facts["path"], give_file))


class _Hashing:
    """A binary stream that hashes what is read from it."""

    def __init__(self, stream):
        self.stream, self.digest = stream, hashlib.sha256()

    def read(self, size):
        raw = self.stream.read(size)
        self.digest.update(raw)
        return raw


def _changed(path, give_file):
    return f"{path} has changed since the run was trained, so its validation part is not the one held out; {give_file}"


def _skip(chunks, count):
    """The chunks with their first `count` elements left out."""
    for chunk in chunks:
        if count >= len(chunk):
            count -= len(chunk)
            continue
        yield chunk[count:]
        count = 0


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


def _weights_step(run, used):
    """The training step of the weights used, or None if it cannot be read."""
    try:
        if used == "best":
            best = run.read_best()
            return None if best is None else best.step
        return run.read_checkpoint_state().step
    except CharRNNError:
        return None
