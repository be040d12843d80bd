"""Splitting an encoded corpus into training and validation text, and windowing it for training.

Reading the corpus (files or stdin) is charrnn.corpus's job; the texts here are arrays, or
DiskText files read a window at a time.
"""

import math

import numpy as np

from charrnn.disktext import DiskText
from charrnn.errors import CorpusError


def split_sizes(num_chars, val_fraction):
    """(train, validation) lengths: the last `val_fraction` of the text validates."""
    num_val = int(round(num_chars * val_fraction))
    return num_chars - num_val, num_val


def min_corpus_chars(seq_length, val_fraction):
    """The fewest characters that give one training window and one validation window."""
    need = seq_length + 1
    # round(n * f) >= need needs n * f > need - 1: start from that bound (never above the answer).
    n = max(need, int((need - 1) / min(val_fraction, 1 - val_fraction)))
    while min(split_sizes(n, val_fraction)) < need:
        n += 1
    return n


def check_length(num_chars, seq_length, val_fraction):
    """Raises CorpusError unless a corpus of `num_chars` splits into a training and a validation
    part of one window each."""
    if min(split_sizes(num_chars, val_fraction)) < seq_length + 1:
        need = min_corpus_chars(seq_length, val_fraction)
        raise CorpusError(
            f"the corpus is too short: {num_chars:,} characters, but --seq-length {seq_length} with "
            f"--val-fraction {val_fraction:g} needs at least {need:,}; give more text or a smaller --seq-length"
        )


def check_batch(num_train, seq_length, batch_size):
    """Raises CorpusError unless the training text has at least `batch_size` windows: a batch
    larger than that would repeat windows within every step."""
    windows = (num_train - 1) // seq_length
    if batch_size > windows:
        raise CorpusError(
            f"--batch-size {batch_size} is more than the {windows:,} training windows of --seq-length {seq_length} "
            f"in this corpus ({num_train:,} training characters); use --batch-size {windows} or less, a smaller "
            "--seq-length, or more text"
        )


def split(ids, seq_length, val_fraction):
    """Splits the encoded corpus into training and validation parts, or says why it cannot."""
    check_length(len(ids), seq_length, val_fraction)
    num_train, _ = split_sizes(len(ids), val_fraction)
    return ids[:num_train], ids[num_train:]


def epoch_batches(num_train, seq_length, batch_size, seed, epoch, first=0):
    """Yields the start positions of each batch of training windows of one epoch, from batch
    `first` on, each an int64 array of batch_size.

    Windows of seq_length + 1 characters step by seq_length from a random offset, so every
    position is a target once per epoch and window edges move between epochs. The order is a
    function of (seed, epoch) alone, which makes resuming mid-epoch exact. A last partial batch is
    filled with windows from the start of the order. Memory: 4 bytes per window (the order), so
    1 GB of text costs 40 MB at --seq-length 100.
    """
    rng = np.random.default_rng([seed, epoch])
    offset = int(rng.integers(seq_length)) if num_train - 1 >= 2 * seq_length else 0
    num_windows = (num_train - 1 - offset) // seq_length
    order = np.arange(num_windows, dtype=np.int32 if num_windows < 2**31 else np.int64)
    rng.shuffle(order)  # in place; the same order as rng.permutation(num_windows) gives
    for batch in range(first, math.ceil(num_windows / batch_size)):
        chosen = order[np.arange(batch * batch_size, (batch + 1) * batch_size) % num_windows]
        yield offset + seq_length * chosen.astype(np.int64)


def epoch_streams(num_train, seq_length, batch_size, seed, epoch, first=0):
    """Yields the start positions of each batch of training windows of one epoch for training
    with the state carried (`--state carry`), from batch `first` on, each an int64 array of
    batch_size.

    After a random offset (so that window edges move between epochs) the text is cut into
    batch_size contiguous streams, and batch k holds the k-th window of every stream: row b of a
    batch continues, character for character, row b of the batch before. The characters left
    over at the end of each stream (fewer than seq_length) are not targets in that epoch.
    """
    check_streams(num_train, seq_length, batch_size)
    rng = np.random.default_rng([seed, epoch])
    # Room for the largest offset is kept in every epoch, so that each has as many batches.
    room = seq_length - 1 if num_train - 1 >= (batch_size + 1) * seq_length else 0
    offset = int(rng.integers(room + 1))
    stream = (num_train - 1 - room) // batch_size
    starts = offset + stream * np.arange(batch_size, dtype=np.int64)
    for batch in range(first, stream // seq_length):
        yield starts + batch * seq_length


def check_streams(num_train, seq_length, batch_size):
    """Raises CorpusError unless the training text holds batch_size streams of a window each."""
    need = batch_size * seq_length + 1
    if num_train < need:
        raise CorpusError(
            f"the training text ({num_train:,} characters) is too short to carry the state over "
            f"--batch-size {batch_size} streams of --seq-length {seq_length} (it needs {need:,}); "
            "use a smaller --batch-size or --seq-length, or --state reset"
        )


def batches_per_epoch(num_train, seq_length, batch_size, carry):
    """How many batches an epoch of epoch_streams (`carry`) or epoch_batches has (for the
    latter, exact up to the moving offset, which can take one window away)."""
    if carry:
        room = seq_length - 1 if num_train - 1 >= (batch_size + 1) * seq_length else 0
        return (num_train - 1 - room) // batch_size // seq_length
    return math.ceil((num_train - 1) // seq_length / batch_size)


def epoch_plan(num_train, seq_length, batch_size, seed, epoch):
    """All of epoch_batches as one (batches, batch_size) array."""
    return np.array(list(epoch_batches(num_train, seq_length, batch_size, seed, epoch)))


def windows(text, starts, seq_length):
    """(inputs, targets), each (len(starts), seq_length) int32: the windows of seq_length + 1
    characters of `text` (an array or a DiskText) that begin at `starts`."""
    chunk = rows(text, starts, seq_length + 1).astype(np.int32)
    return chunk[:, :-1], chunk[:, 1:]


def rows(text, starts, width):
    """text[start : start + width] for each start, as a (len(starts), width) array."""
    if isinstance(text, DiskText):
        return text.rows(starts, width)
    return text[np.asarray(starts)[:, None] + np.arange(width)]


def validation_windows(val_ids, seq_length, max_chars):
    """Non-overlapping (inputs, targets) windows of the validation text, as two int32 arrays.

    At most `max_chars` targets are kept, as evenly spaced windows, to bound evaluation time on
    large corpora; below that, every validation character is a target exactly once.
    """
    num_windows = (len(val_ids) - 1) // seq_length
    keep = min(num_windows, max(1, max_chars // seq_length))
    chosen = np.linspace(0, num_windows - 1, keep).round().astype(np.int64)
    windows = rows(val_ids, chosen * seq_length, seq_length + 1).astype(np.int32)
    return windows[:, :-1], windows[:, 1:]
