"""Reading a corpus (files or stdin), validating it, splitting it, and windowing it for training.

The corpus is read in chunks, twice: the first pass (`scan`) validates the text, hashes it and
collects its characters; the second (`encode`) encodes it into one compact integer array, which
training keeps in the run directory (corpus.npy) and reads a window at a time (DiskText). No step
holds the decoded text, or more than one chunk of code points, in memory at once; standard input
is spooled to a temporary file.
"""

import codecs
import hashlib
import math
import os
import tempfile
from dataclasses import dataclass

import numpy as np

from charrnn.errors import CorpusError, UsageError
from charrnn.vocab import MAX_CODEPOINT, Vocab, codepoints

CHUNK_BYTES = 1 << 24
# Standard input is kept in a temporary file while it is read (twice); at most this much of it.
MAX_STDIN_BYTES = 4 << 30
STDIN = "-"
STDIN_NAME = "<stdin>"


@dataclass
class Corpus:
    ids: np.ndarray  # (num_chars,) character indices, the smallest unsigned dtype that fits
    vocab: Vocab
    files: list  # one dict per source: path, bytes, sha256


@dataclass
class Scan:
    """A corpus read once: checked, hashed and counted, not yet encoded (see `encode`)."""

    sources: list  # (name, path or spooled file) per input
    vocab: Vocab
    files: list  # one dict per source: path, bytes, sha256
    num_chars: int


def load_corpus(paths, stdin=None, vocab=None):
    """Reads and encodes the corpus files (`-` is the binary stream `stdin`) into one array in
    memory. Training uses `scan` and `encode` instead, to encode into the run's corpus.npy."""
    found = scan(paths, stdin, vocab)
    return Corpus(encode_in_memory(found), found.vocab, found.files)


def scan(paths, stdin=None, vocab=None):
    """Reads the corpus files (`-` is the binary stream `stdin`, spooled to a temporary file) once:
    validates, hashes and counts them, and returns a Scan.

    With `vocab` given (a resumed run), the text must use only its characters. Raises CorpusError
    naming the file for anything that is not usable UTF-8 text.
    """
    if not paths:
        raise CorpusError("no corpus given: pass one or more UTF-8 text files, or - to read standard input")
    if list(paths).count(STDIN) > 1:
        raise UsageError(f"- (standard input) is given {list(paths).count(STDIN)} times, but it can be read only once: give - once")
    sources = [_open_source(path, stdin) for path in paths]
    counts = np.zeros(MAX_CODEPOINT + 1, dtype=np.int64)  # occurrences of every code point
    total = 0
    files = []
    for name, source in sources:
        digest = hashlib.sha256()
        size = 0
        for raw, values in _decode_chunks(name, source):
            digest.update(raw)
            size += len(raw)
            total += len(values)
            counts += np.bincount(values, minlength=len(counts))
        if size == 0:
            raise CorpusError(f"{name} is empty: give a file with some text in it")
        files.append({"path": STDIN if name == STDIN_NAME else os.path.abspath(name), "bytes": size, "sha256": digest.hexdigest()})
    if total == 0:
        raise CorpusError("the corpus holds no characters: give a file with some text in it")
    present = np.flatnonzero(counts)
    if vocab is None:
        vocab = Vocab.from_codepoints(present, counts[present])
    else:
        unknown = sorted(set(present.tolist()) - {ord(c) for c in vocab.index_to_char})
        if unknown:
            shown = "".join(chr(c) for c in unknown[:20])
            raise CorpusError(
                f"the corpus has characters the run's vocabulary lacks: {shown!r}; "
                "resume with the text the run was started on"
            )
    return Scan(sources, vocab, files, total)


def encode(found):
    """Yields a Scan's text encoded (arrays of found.vocab.dtype), a chunk at a time: the second
    reading of the text."""
    filled = 0
    for name, source in found.sources:
        for _, values in _decode_chunks(name, source):
            filled += len(values)
            if filled > found.num_chars:
                raise CorpusError(f"{name} changed while it was being read; try again")
            yield found.vocab.encode_codepoints(values)
    if filled != found.num_chars:
        raise CorpusError("a corpus file changed while it was being read; try again")


def encode_in_memory(found):
    """A Scan's text encoded into one array in memory."""
    ids = np.empty(found.num_chars, dtype=found.vocab.dtype)
    filled = 0
    for chunk in encode(found):
        ids[filled : filled + len(chunk)] = chunk
        filled += len(chunk)
    return ids


def encode_to_temporary(found):
    """A Scan's text encoded into an unnamed temporary file, as a DiskText (for a worker that may
    not write the run directory)."""
    spool = tempfile.TemporaryFile()
    for chunk in encode(found):
        spool.write(chunk.tobytes())
    spool.flush()
    return DiskText(spool, 0, found.num_chars, found.vocab.dtype)


class DiskText:
    """An encoded text in a file, read where it is needed: `rows(starts, width)` reads each window
    with one pread. What is read stays in the operating system's page cache, shared and
    reclaimable, not in this process: its memory does not grow with the corpus (a memory map's
    resident pages would, as training touches every part of the text in an epoch).

    Slicing (`text[a:b]`) gives a DiskText of part of it; `np.asarray(text)` reads it whole.
    """

    def __init__(self, file, offset, length, dtype):
        self.file, self.offset, self.length, self.dtype = file, offset, length, np.dtype(dtype)

    @classmethod
    def open_npy(cls, path):
        """The 1-D array in a .npy file; raises OSError or ValueError if it is not one."""
        f = open(path, "rb")  # noqa: SIM115  (kept open: the DiskText reads from it)
        try:
            version = np.lib.format.read_magic(f)
            read_header = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
            shape, fortran_order, dtype = read_header(f)
            if len(shape) != 1 or fortran_order or dtype.hasobject:
                raise ValueError("not a 1-D array of numbers")
            if os.fstat(f.fileno()).st_size != f.tell() + shape[0] * dtype.itemsize:
                raise ValueError("the file's size does not match its header")
            return cls(f, f.tell(), shape[0], dtype)
        except BaseException:
            f.close()
            raise

    def __len__(self):
        return self.length

    def __getitem__(self, key):
        start, stop, step = key.indices(self.length)
        if step != 1:
            raise ValueError("a DiskText slices with step 1 only")
        return DiskText(self.file, self.offset + start * self.dtype.itemsize, max(0, stop - start), self.dtype)

    def __array__(self, dtype=None, copy=None):
        whole = self.rows(np.zeros(1, np.int64), self.length)[0]
        return whole if dtype is None else whole.astype(dtype)

    def rows(self, starts, width):
        """(len(starts), width) array: text[start : start + width] for each start."""
        size = self.dtype.itemsize
        fd = self.file.fileno()
        out = np.empty((len(starts), width), self.dtype)
        for row, start in enumerate(starts):
            if not 0 <= start <= self.length - width:
                raise IndexError(f"window {start}:{start + width} is outside the text (length {self.length})")
            data = os.pread(fd, width * size, self.offset + int(start) * size)
            out[row] = np.frombuffer(data, self.dtype)
        return out


def _open_source(path, stdin):
    """Returns (name, source): source is a path to read in chunks, or for stdin a temporary file
    it was copied into (so that it can be read twice without holding it in memory)."""
    if path == STDIN:
        if stdin is None:
            raise CorpusError("cannot read the corpus from standard input here")
        if stdin.isatty():
            raise CorpusError(
                "the corpus is - (standard input), but standard input is a terminal: "
                "pipe the text in, for example: cat novel.txt | charrnn train -"
            )
        return STDIN_NAME, _spool(stdin)
    if os.path.islink(path) and not os.path.exists(path):
        raise CorpusError(f"corpus file {path} is a symbolic link to {os.readlink(path)}, which does not exist")
    if not os.path.exists(path):
        raise CorpusError(f"corpus file not found: {path}")
    if os.path.isdir(path):
        raise CorpusError(f"{path} is a directory: give the text files inside it, for example {path}/*.txt")
    if not os.access(path, os.R_OK):
        raise CorpusError(f"cannot read corpus file {path}: permission denied")
    return path, path


def _spool(stdin):
    """Copies standard input into an unnamed temporary file (so that it can be read twice), up to
    MAX_STDIN_BYTES: a stream that never ends is refused rather than left to fill the disk."""
    spool = tempfile.TemporaryFile()
    size = 0
    try:
        while chunk := stdin.read(CHUNK_BYTES):
            size += len(chunk)
            if size > MAX_STDIN_BYTES:
                raise CorpusError(
                    f"standard input gave more than {MAX_STDIN_BYTES / 2**30:g} GiB, the most charrnn reads from it; "
                    "save the text to a file and train on the file (files have no such limit)"
                )
            spool.write(chunk)
    except OSError as e:
        spool.close()
        raise CorpusError(
            f"could not keep standard input in a temporary file ({e.strerror or e}) after {size:,} bytes; "
            "free space in the temporary directory (or set TMPDIR to a larger disk), or save the text to a file"
        ) from None
    except BaseException:
        spool.close()
        raise
    return spool


def _read_chunks(source):
    if not isinstance(source, str):  # a spooled standard input
        source.seek(0)
        while chunk := source.read(CHUNK_BYTES):
            yield chunk
        return
    with open(source, "rb") as f:
        while chunk := f.read(CHUNK_BYTES):
            yield chunk


def _decode_chunks(name, source):
    return decode_utf8(name, _read_chunks(source))


_CONVERT = "convert it first, for example with: iconv -f latin1 -t utf-8"


def decode_utf8(name, raw_chunks):
    """Yields (raw bytes, code points) for each chunk of bytes of the text called `name`, checking
    for NUL bytes and invalid UTF-8 (CorpusError naming the byte offset); a BOM is dropped."""
    decoder = codecs.getincrementaldecoder("utf-8-sig")("strict")
    offset = 0
    for raw in raw_chunks:
        nul = raw.find(b"\x00")
        if nul >= 0:
            encoding = _other_encoding(raw) if offset == 0 else None
            if encoding:
                described, iconv_name = encoding
                raise CorpusError(
                    f"{name} is {described} text, and charrnn reads UTF-8: convert it first, for example with: "
                    f"iconv -f {iconv_name} -t UTF-8 {'FILE' if name == STDIN_NAME else name} > converted.txt"
                )
            raise CorpusError(f"{name} looks like a binary file (NUL byte at byte offset {offset + nul}); charrnn reads UTF-8 text")
        pending = len(decoder.getstate()[0])
        try:
            text = decoder.decode(raw)
        except UnicodeDecodeError as e:
            raise CorpusError(f"{name} is not valid UTF-8 (byte offset {offset - pending + e.start}); {_CONVERT}") from None
        offset += len(raw)
        yield raw, codepoints(text)
    try:
        decoder.decode(b"", final=True)
    except UnicodeDecodeError:
        pending = len(decoder.getstate()[0])
        raise CorpusError(f"{name} is not valid UTF-8 (truncated character at byte offset {offset - pending}); {_CONVERT}") from None


# Byte-order marks of the encodings that text editors save "Unicode" text in besides UTF-8; the
# UTF-32 ones first, since UTF-32LE's begins with UTF-16LE's.
_BOMS = (
    (codecs.BOM_UTF32_LE, "UTF-32 (little-endian, with a byte-order mark)", "UTF-32"),
    (codecs.BOM_UTF32_BE, "UTF-32 (big-endian, with a byte-order mark)", "UTF-32"),
    (codecs.BOM_UTF16_LE, "UTF-16 (little-endian, with a byte-order mark)", "UTF-16"),
    (codecs.BOM_UTF16_BE, "UTF-16 (big-endian, with a byte-order mark)", "UTF-16"),
)


def _other_encoding(head):
    """(description, iconv's name) of the UTF-16 or UTF-32 encoding that the first bytes of a text
    with NUL bytes in it are in, or None if they look like no such text."""
    for bom, described, iconv_name in _BOMS:
        if head.startswith(bom):
            return described, iconv_name
    # Without a mark: ASCII-range text in UTF-16 has a NUL in every other byte, on one side.
    sample = head[:4096]
    even, odd = sample[0::2], sample[1::2]
    if len(sample) >= 8:
        if odd.count(0) > 0.4 * len(odd) and even.count(0) < 0.05 * len(even):
            return "UTF-16 (little-endian, no byte-order mark)", "UTF-16LE"
        if even.count(0) > 0.4 * len(even) and odd.count(0) < 0.05 * len(odd):
            return "UTF-16 (big-endian, no byte-order mark)", "UTF-16BE"
    return None


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
