"""Character <-> index maps with vectorised encoding, and their JSON form."""

import json

import numpy as np

from charrnn.checks import is_int, short


MAX_CODEPOINT = 0x10FFFF
# The most a character's count in vocab.json may be: the longest corpus an int64 index counts.
MAX_COUNT = 2**63 - 1


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


def listed_chars(record):
    """The characters a vocabulary record (a parsed vocab.json) lists, unchecked: KeyError or
    TypeError if it lists none (Vocab.from_record checks them)."""
    return record["index_to_char"]


class Vocab:
    """The characters of a corpus, sorted by code point (or by frequency, for the adaptive softmax:
    by_frequency); a character's index is its position."""

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

    def by_frequency(self):
        """The same characters, the commonest first (ties by code point); needs the counts."""
        order = sorted(range(self.vocab_size), key=lambda i: (-self.counts[i], ord(self.index_to_char[i])))
        return Vocab([self.index_to_char[i] for i in order], [self.counts[i] for i in order])

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

    def record(self, **facts):
        """The vocabulary as a JSON object: vocab_size, index_to_char, then `facts` (what an
        export's vocabulary file adds), then counts when known. vocab.json holds it without facts."""
        data = {"vocab_size": self.vocab_size, "index_to_char": self.index_to_char, **facts}
        if self.counts is not None:
            data["counts"] = self.counts
        return data

    def to_json(self, **facts):
        """record(**facts) as the text of a JSON file."""
        return json.dumps(self.record(**facts), ensure_ascii=False, indent=1) + "\n"

    @classmethod
    def from_json(cls, text):
        """The Vocab of to_json's text; ValueError saying what is wrong with anything else (the
        same checks a corpus's characters pass: single code points, no surrogates, distinct)."""
        return cls.from_record(json.loads(text))

    @classmethod
    def from_record(cls, data):
        """The Vocab of a record (a parsed JSON object, other fields ignored); ValueError as from_json."""
        if not isinstance(data, dict):
            raise ValueError("it is not an object")
        chars, size, counts = data.get("index_to_char"), data.get("vocab_size"), data.get("counts")
        if not isinstance(chars, list) or not all(isinstance(c, str) and len(c) == 1 for c in chars):
            raise ValueError("index_to_char must be a list of single characters")
        if not (is_int(size) and 0 < size == len(chars)):
            raise ValueError(f"vocab_size must be the number of characters ({len(chars)}). Received: vocab_size={short(size)}")
        surrogates = [c for c in chars if 0xD800 <= ord(c) <= 0xDFFF]
        if surrogates:
            # A lone surrogate is no character: UTF-8 text cannot hold one, nor can output be written with it.
            raise ValueError(f"index_to_char holds the surrogate code point U+{ord(surrogates[0]):04X}, which is not a character")
        if len(set(chars)) != len(chars):
            raise ValueError("index_to_char has a character twice")
        if counts is not None:
            if not (isinstance(counts, list) and len(counts) == len(chars)):
                raise ValueError("counts must be a list with one count per character")
            if not all(is_int(n) and 0 <= n <= MAX_COUNT for n in counts) or not any(counts):
                raise ValueError("counts must be whole numbers, 0 or more, not all 0")
        return cls(chars, counts)

    def __eq__(self, other):
        return isinstance(other, Vocab) and self.index_to_char == other.index_to_char
