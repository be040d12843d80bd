"""Character <-> index maps with vectorised encoding, and their JSON form."""

import json

import numpy as np


MAX_CODEPOINT = 0x10FFFF


def codepoints(text):
    """Returns the Unicode code points of `text` as a uint32 array, without a Python loop."""
    return np.frombuffer(text.encode("utf-32-le", "surrogatepass"), dtype="<u4")


def index_dtype(vocab_size):
    """The smallest unsigned integer type that holds every index of a vocabulary."""
    if vocab_size <= 1 << 8:
        return np.uint8
    if vocab_size <= 1 << 16:
        return np.uint16
    return np.uint32


class Vocab:
    """The characters of a corpus, sorted by code point; a character's index is its position."""

    def __init__(self, index_to_char, counts=None):
        self.index_to_char = list(index_to_char)
        self.char_to_index = {c: i for i, c in enumerate(self.index_to_char)}
        # How often each character occurs in the corpus (used when sampling starts with no seed).
        self.counts = list(counts) if counts is not None else None
        self._codepoints = np.array([ord(c) for c in self.index_to_char], dtype=np.uint32)
        self._lookup = None  # code point -> index table, built on first use

    @classmethod
    def from_text(cls, text):
        values, counts = np.unique(codepoints(text), return_counts=True)
        return cls.from_codepoints(values, counts)

    @classmethod
    def from_codepoints(cls, values, counts=None):
        values = np.asarray(values)
        return cls([chr(v) for v in values.tolist()], None if counts is None else np.asarray(counts).tolist())

    @property
    def vocab_size(self):
        return len(self.index_to_char)

    @property
    def dtype(self):
        return index_dtype(self.vocab_size)

    def unknown_chars(self, text):
        """The characters of `text` that are not in the vocabulary, in order of first appearance."""
        return [c for c in dict.fromkeys(text) if c not in self.char_to_index]

    def encode(self, text):
        """Maps text to an array of indices. Raises KeyError naming characters outside the vocabulary."""
        return self.encode_codepoints(codepoints(text))

    def encode_codepoints(self, values):
        """Maps a uint32 array of code points to indices with one table look-up per character."""
        if self._lookup is None:
            self._known = np.zeros(MAX_CODEPOINT + 1, dtype=bool)
            self._known[self._codepoints] = True
            self._lookup = np.zeros(MAX_CODEPOINT + 1, dtype=self.dtype)
            self._lookup[self._codepoints] = np.arange(self.vocab_size)
        bad = ~self._known[values]
        if bad.any():
            missing = dict.fromkeys(chr(v) for v in values[bad].tolist())
            raise KeyError("".join(missing))
        return self._lookup[values]

    def decode(self, indices):
        chars = self.index_to_char
        return "".join(chars[i] for i in np.asarray(indices).tolist())

    def to_json(self):
        data = {"vocab_size": self.vocab_size, "index_to_char": self.index_to_char}
        if self.counts is not None:
            data["counts"] = self.counts
        return json.dumps(data, ensure_ascii=False, indent=1) + "\n"

    @classmethod
    def from_json(cls, text):
        data = json.loads(text)
        chars = data["index_to_char"]
        counts = data.get("counts")
        ok = (
            isinstance(chars, list)
            and len(chars) == data["vocab_size"] > 0
            and all(isinstance(c, str) and len(c) == 1 for c in chars)
            and len(set(chars)) == len(chars)
            and (counts is None or len(counts) == len(chars))
        )
        if not ok:
            raise ValueError("index_to_char must be a list of distinct single characters")
        return cls(chars, counts)

    def __eq__(self, other):
        return isinstance(other, Vocab) and self.index_to_char == other.index_to_char
