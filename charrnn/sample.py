"""`charrnn sample`'s library: samples streamed as text, in groups whose memory does not grow with
their length, and text made safe to show on a terminal. The draws are charrnn/generation.py's, on
the NumPy network of charrnn/numpynet.py: no TensorFlow import."""

import re

# First: through charrnn.numpynet, it sets NumPy's BLAS threads before NumPy loads.
from charrnn.generation import check_sampling_options, check_seed, generate

import numpy as np  # noqa: E402

# The most tokens stream_samples holds back. Samples are generated in groups whose streams step
# together: the first of a group is written as it is generated, the others are held until it ends
# (as tokens, at most 4 bytes each: 64 MB), then written. A group has as many samples as keep the
# held tokens under this, and at least one, so memory does not grow with --length.
HELD_TOKENS = 1 << 24
# Characters decoded at a time when a held sample is written.
DECODE_CHUNK = 1 << 16


def group_size(num_samples, length):
    """How many samples stream_samples generates together."""
    return max(1, min(num_samples, 1 + HELD_TOKENS // max(length, 1)))


def stream_samples(net, vocab, seed="", length=500, temperature=1.0, top_k=None, top_p=None, num_samples=1, rng=None):
    """Yields the text of `num_samples` samples in pieces, as it is to be written: each sample the
    seed and `length` new characters, a blank line between samples, a newline at the end. The first
    sample of each group (group_size) comes piece by piece as it is generated (a piece ends at a
    newline or after 64 characters); the others of the group follow it. Options no draw can use,
    and a seed the model cannot start from, fail before the first piece."""
    check_sampling_options(temperature, top_k, top_p, length, num_samples)
    check_seed(vocab, seed)
    rng = rng if rng is not None else np.random.default_rng()
    chars = vocab.index_to_char
    per_group = group_size(num_samples, length)
    for first in range(0, num_samples, per_group):
        group = min(per_group, num_samples - first)
        held = np.empty((group - 1, length), vocab.dtype)  # (samples held back, length)
        yield ("\n\n" if first else "") + seed
        pending = []
        for t, tokens in enumerate(generate(net, vocab, seed, length, temperature, top_k, top_p, group, rng, checked=True)):
            c = chars[tokens[0]]
            pending.append(c)
            if c == "\n" or len(pending) >= 64:
                yield "".join(pending)
                pending = []
            held[:, t] = tokens[1:]
        if pending:
            yield "".join(pending)
        for row in held:
            yield "\n\n" + seed
            for a in range(0, length, DECODE_CHUNK):
                yield vocab.decode(row[a : a + DECODE_CHUNK])
    yield "\n"


# What a terminal acts on rather than shows: the C0 controls but newline and tab (ESC starts the
# sequences that recolour, move the cursor or reset it; CR overwrites the line), DEL, the C1
# controls, and the bidirectional overrides and isolates that reorder the text around them.
_CONTROL = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")


def visible(text):
    """(text with each control character written as its escape: ESC as \\x1b, CR as \\r, U+202E
    as \\u202e; how many there were). Newlines and tabs are left as they are."""
    return _CONTROL.subn(lambda m: m.group().encode("unicode_escape").decode("ascii"), text)
