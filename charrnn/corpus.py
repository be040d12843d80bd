"""Reading a text (corpus files or standard input): validating, hashing and encoding it.

The corpus is read in chunks, twice: the first pass (`scan`) validates the text, hashes it and
collects its characters; the second (`encode`) encodes it into one compact integer array, which
training keeps in the run directory (corpus.npy) and reads a window at a time (DiskText). No step
holds the decoded text, or more than one chunk of code points, in memory at once; standard input
is spooled to a temporary file. `charrnn eval` reads its text with `decode_utf8` and `check_piped` too.
"""

import codecs
import hashlib
import os
import tempfile
from dataclasses import dataclass

import numpy as np

from charrnn.errors import CorpusError, UsageError
from charrnn.vocab import MAX_CODEPOINT, Vocab, codepoints

CHUNK_BYTES = 1 << 24
# Standard input is kept in a temporary file while it is read (twice); at most this much of it.
MAX_STDIN_BYTES = 4 << 30
STDIN = "-"  # the path that names standard input
STDIN_NAME = "<stdin>"  # what messages call it


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


def scan(paths, stdin=None, vocab=None, resuming=None):
    """Reads the corpus files (`-` is the binary stream `stdin`, spooled to a temporary file) once:
    validates, hashes and counts them, and returns a Scan.

    With `vocab` given (a resumed run), the text must use only its characters. `resuming` is the
    directory of the run being resumed (its messages about standard input say so). Raises
    CorpusError naming the file for anything that is not usable UTF-8 text.
    """
    if not paths:
        raise CorpusError("no corpus given: pass one or more UTF-8 text files, or - to read standard input")
    if list(paths).count(STDIN) > 1:
        raise UsageError(f"- (standard input) is given {list(paths).count(STDIN)} times, but it can be read only once: give - once")
    sources = [_open_source(path, stdin, resuming) for path in paths]
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
        if size == 0 and name == STDIN_NAME and resuming is not None:
            raise CorpusError(
                f"standard input is empty, but the run in {resuming} was trained from standard input: pipe the same "
                f"text in again, for example: {_piped_resume(resuming)}"
            )
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


def _piped_resume(run_path):
    """The command that resumes the run in `run_path` on text piped in again."""
    return f"cat novel.txt | charrnn train --resume -r {run_path} -"


def _open_source(path, stdin, resuming=None):
    """Returns (name, source): source is a path to read in chunks, or for stdin a temporary file
    it was copied into (so that it can be read twice without holding it in memory)."""
    if path == STDIN:
        if stdin is None:
            raise CorpusError("cannot read the corpus from standard input here")
        if resuming is not None:
            check_piped(stdin, f"the corpus of the run in {resuming}", _piped_resume(resuming))
        check_piped(stdin, "the corpus", "cat novel.txt | charrnn train -")
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


def source_name(path):
    """What messages call the text at `path`: "<stdin>" for "-" (standard input), else the path."""
    return STDIN_NAME if path == STDIN else str(path)


def check_piped(stdin, called, example):
    """Raises CorpusError if the stream `stdin` is a terminal: nothing was piped in for the text
    `called` (for example "the corpus"); `example` is a command that pipes one in."""
    if stdin.isatty():
        raise CorpusError(
            f"{called} is - (standard input), but standard input is a terminal: "
            f"pipe the text in, for example: {example}"
        )


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
