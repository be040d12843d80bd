"""The text that `eval` and `report` score: a UTF-8 file, standard input, or the run's validation
text (the last val_fraction of its corpus), read and decoded a chunk at a time and encoded with
the run's vocabulary; characters outside it are skipped and counted (KnownChars).
"""

import hashlib
import os

import numpy as np

from charrnn.corpus import STDIN, STDIN_NAME, check_piped, decode_utf8
from charrnn.errors import CorpusError

# What is read at a time: bytes of a text file, or characters of the run's corpus.npy.
CHUNK = 1 << 20
# Distinct unknown characters kept to show.
SHOWN_UNKNOWN = 20
_GIVE_FILE = "give a FILE to evaluate, for example: charrnn eval novel.txt"


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
    binary or invalid file, as charrnn.corpus does."""
    if path == STDIN:
        if stdin is None:
            raise CorpusError("cannot read standard input here")
        check_piped(stdin, "the text", "cat notes.txt | charrnn eval -")
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
    as charrnn.corpus checks a corpus."""
    for _, values in decode_utf8(name, iter(lambda: _read(name, stream), b"")):
        yield values


def _read(name, stream):
    """CHUNK bytes of `stream`; an OSError (a directory, an I/O error) is a CorpusError naming it."""
    try:
        return stream.read(CHUNK)
    except OSError as e:
        raise CorpusError(f"cannot read {name}: {e.strerror or e}") from None


def validation_tokens(snapshot, known):
    """Yields the tokens of the run's validation text (the last val_fraction of its corpus) a chunk
    at a time: from the run's encoded corpus, or, if that is missing, from the corpus files it was
    trained on (each checked against the size and sha256 that training recorded)."""
    start, text, files = snapshot.run.corpus.validation(snapshot.settings, _GIVE_FILE)
    if text is not None:
        return known.counted(_disk_chunks(text, start))
    changed = [f["path"] for f in files if os.path.getsize(f["path"]) != f["bytes"]]
    if changed:
        raise CorpusError(_changed(changed[0]))
    return known.tokens(_skip(_files_chunks(files), start))


def _disk_chunks(text, start):
    """The tokens of a DiskText from `start` on, CHUNK at a time; closes its file at the end."""
    try:
        for a in range(start, len(text), CHUNK):
            yield np.asarray(text[a : a + CHUNK]).astype(np.int64)
    finally:
        text.file.close()


def _files_chunks(files):
    """The code points of the corpus files (dicts with path and sha256), checking each file's
    sha256 against the one training recorded."""
    for facts in files:
        with _open(facts["path"]) as f:
            hashing = _Hashing(f)
            yield from _decode(facts["path"], hashing)
        if hashing.digest.hexdigest() != facts["sha256"]:
            raise CorpusError(_changed(facts["path"]))


class _Hashing:
    """A binary stream that hashes what is read from it."""

    def __init__(self, stream):
        self.stream, self.digest = stream, hashlib.sha256()

    def read(self, size):
        raw = self.stream.read(size)
        self.digest.update(raw)
        return raw


def _changed(path):
    return f"{path} has changed since the run was trained, so its validation part is not the one held out; {_GIVE_FILE}"


def _skip(chunks, count):
    """The chunks with their first `count` elements left out."""
    for chunk in chunks:
        if count >= len(chunk):
            count -= len(chunk)
            continue
        yield chunk[count:]
        count = 0
