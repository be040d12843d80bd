"""Where a sample ends: `--stop TEXT` (escape sequences such as \\n read as the characters they
name), watched for in the characters generated after the seed, for every stream at once."""

import re

import numpy as np

from charrnn.errors import UsageError

_ESCAPE = re.compile(r"\\(x[0-9a-fA-F]{2}|u[0-9a-fA-F]{4}|U[0-9a-fA-F]{8}|.)", re.S)
_SIMPLE = {"n": "\n", "t": "\t", "r": "\r", "0": "\0", "\\": "\\", "e": "\x1b"}


def unescape(text):
    """`text` with \\n, \\t, \\r, \\0, \\e, \\\\, \\xHH, \\uHHHH and \\UHHHHHHHH read as the characters
    they name. Any other backslash is a UsageError (a typo would otherwise stop nothing)."""

    def one(m):
        code = m.group(1)
        if code in _SIMPLE:
            return _SIMPLE[code]
        if code[0] in "xuU" and len(code) > 1:
            value = int(code[1:], 16)
            if value > 0x10FFFF or 0xD800 <= value <= 0xDFFF:
                raise UsageError(f"--stop: \\{code} is not a character; give a code point up to \\U0010ffff, not a surrogate")
            return chr(value)
        raise UsageError(f"--stop: unknown escape \\{code}; use \\n, \\t, \\r, \\\\, \\xHH or \\uHHHH (\\\\ for a backslash)")

    if text.endswith("\\") and not text.endswith("\\\\"):
        raise UsageError("--stop ends in a lone backslash; write \\\\ for a backslash")
    return _ESCAPE.sub(one, text)


class Stops:
    """Watches `streams` streams of generated tokens for the token sequence `stop`; `update(tokens)`
    after each step returns which streams have just generated its last character. A stop text with a
    character outside the vocabulary can never occur: `possible` is False and nothing ever stops."""

    def __init__(self, vocab, text, streams):
        self.text = text
        self.possible = bool(text) and not vocab.unknown_chars(text)
        self.ids = vocab.encode(text) if self.possible else np.zeros(0, np.int64)
        # The last len(text) tokens of each stream; -1 where fewer have been generated.
        self.recent = np.full((streams, len(self.ids)), -1, np.int64)
        self.stopped = np.zeros(streams, bool)

    def update(self, tokens):
        """Records one token per stream; returns a bool array: True where the stop text just ended."""
        if not self.possible:
            return np.zeros(len(tokens), bool)
        self.recent[:, :-1] = self.recent[:, 1:]
        self.recent[:, -1] = tokens
        ended = (self.recent == self.ids).all(axis=1) & ~self.stopped
        self.stopped |= ended
        return ended

    @property
    def all_stopped(self):
        return self.possible and bool(self.stopped.all())


def cut(text, stop):
    """`text` up to and including the first `stop` in it (all of it when there is none)."""
    at = text.find(stop) if stop else -1
    return text if at < 0 else text[: at + len(stop)]
