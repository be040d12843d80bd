"""`charrnn sample`'s library: samples streamed as text, in groups whose memory does not grow with
their length, and text made safe to show on a terminal. The draws are charrnn/generation.py's, on
the NumPy network of charrnn/numpynet.py: no TensorFlow import."""

import re

# First: through charrnn.numpynet, it sets NumPy's BLAS threads before NumPy loads.
from charrnn.generation import check_sampling_options, check_seed, generate

import numpy as np  # noqa: E402

from charrnn.errors import UsageError  # noqa: E402
from charrnn.stopping import Stops  # noqa: E402

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


def stream_samples(net, vocab, seed="", length=500, temperature=1.0, top_k=None, top_p=None, num_samples=1, rng=None, stop=""):
    """Yields the text of `num_samples` samples in pieces, as it is to be written: each sample the
    seed and `length` new characters (or fewer: up to and including the first `stop` text they
    generate, when one is given), a blank line between samples, a newline at the end. The first
    sample of each group (group_size) comes piece by piece as it is generated (a piece ends at a
    newline or after 64 characters); the others of the group follow it. Options no draw can use,
    and a seed the model cannot start from, fail before the first piece."""
    check_sampling_options(temperature, top_k, top_p, length, num_samples)
    check_seed(vocab, seed)
    rng = rng if rng is not None else np.random.default_rng()
    per_group = group_size(num_samples, length)
    for first in range(0, num_samples, per_group):
        group = min(per_group, num_samples - first)
        yield ("\n\n" if first else "") + seed
        held, ends = yield from _stream_group(net, vocab, seed, length, temperature, top_k, top_p, group, rng, stop)
        for row, end in zip(held, ends[1:]):
            yield "\n\n" + seed
            for a in range(0, end, DECODE_CHUNK):
                yield vocab.decode(row[a : min(a + DECODE_CHUNK, end)])
    yield "\n"


def _stream_group(net, vocab, seed, length, temperature, top_k, top_p, group, rng, stop):
    """Yields the first stream's text as it is generated; returns (the other streams' tokens
    (group - 1, length), each stream's length: where its stop text ended, else `length`)."""
    chars = vocab.index_to_char
    held = np.empty((group - 1, length), vocab.dtype)
    stops = Stops(vocab, stop, group)
    ends = np.full(group, length)
    pending = []
    for t, tokens in enumerate(generate(net, vocab, seed, length, temperature, top_k, top_p, group, rng, checked=True)):
        ended = stops.update(tokens)
        ends[ended] = t + 1
        if ends[0] > t:  # the first stream has not stopped before this character
            c = chars[tokens[0]]
            pending.append(c)
            if c == "\n" or len(pending) >= 64 or ended[0]:
                yield "".join(pending)
                pending = []
        held[:, t] = tokens[1:]
        if stops.all_stopped:
            break
    if pending:
        yield "".join(pending)
    return held, ends


# What a terminal acts on rather than shows: the C0 controls but newline and tab (ESC starts the
# sequences that recolour, move the cursor or reset it; CR overwrites the line), DEL, the C1
# controls, and the bidirectional overrides and isolates that reorder the text around them.
_CONTROL = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")


def visible(text):
    """(text with each control character written as its escape: ESC as \\x1b, CR as \\r, U+202E
    as \\u202e; how many there were). Newlines and tabs are left as they are."""
    return _CONTROL.subn(lambda m: m.group().encode("unicode_escape").decode("ascii"), text)


# A seed file is read whole, up to this size: each of its characters is one recurrent step.
MAX_SEED_BYTES = 1 << 20


def read_seed_file(path, stdin=None):
    """The text of `path` (standard input for "-"), UTF-8, at most MAX_SEED_BYTES; UsageError else."""
    name = "standard input" if path == "-" else path
    try:
        if path == "-":
            data = stdin.read(MAX_SEED_BYTES + 1)
        else:
            with open(path, "rb") as f:
                data = f.read(MAX_SEED_BYTES + 1)
    except OSError as e:
        raise UsageError(f"cannot read the seed file {name}: {e.strerror or e}; give a readable text file or - for standard input") from None
    if len(data) > MAX_SEED_BYTES:
        raise UsageError(f"the seed file {name} is over {MAX_SEED_BYTES >> 20} MiB; give a shorter seed (each character is one step)")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise UsageError(f"the seed file {name} is not UTF-8 text (byte {e.start}); convert it, e.g. with iconv -t UTF-8") from None
