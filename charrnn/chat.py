"""`charrnn sample --interactive`: each line read is fed to the network and continued, the state
carried from turn to turn (the conversation so far is the network's context). A line `/reset`
starts again from a fresh state; end of input (Ctrl-D on a terminal) ends.

On a terminal a prompt goes to stderr and the continuation streams to stdout. Without one (a pipe
or a file), each input line gets its continuation on stdout, ended by a newline, so that a script
reads one answer per line it writes (with `--stop '\\n'`, each answer is exactly one line).
"""

# First: through charrnn.numpynet, it sets NumPy's BLAS threads before NumPy loads.
from charrnn.generation import Chooser, check_sampling_options, check_seed, prime

import numpy as np  # noqa: E402

from charrnn.errors import SeedError  # noqa: E402
from charrnn.stopping import Stops  # noqa: E402

RESET = "/reset"
PROMPT = "> "


class Conversation:
    """The network's state over a whole session: `feed` text, then `reply` continues it."""

    def __init__(self, net, vocab, temperature=0.8, top_k=None, top_p=None, rng=None):
        check_sampling_options(temperature, top_k, top_p, 0, 1)
        self.net, self.vocab = net, vocab
        self.rng = rng if rng is not None else np.random.default_rng()
        self.draw = Chooser(temperature, top_k, top_p, self.rng)
        self.reset()

    def reset(self):
        """Back to the state `sample` starts from (after a newline, when the text has one)."""
        self.state, self.logits = prime(self.net, self.vocab, "", 1)

    def feed(self, text):
        """Runs `text` through the network (SeedError, before any step, for characters it never saw)."""
        check_seed(self.vocab, text)
        for token in self.vocab.encode(text):
            self.logits, self.state = self.net.step(np.array([token]), self.state)

    def reply(self, length, stop=""):
        """Yields up to `length` new characters, each fed back in; ends after the first `stop`."""
        stops = Stops(self.vocab, stop, 1)
        for _ in range(length):
            if self.logits is None:  # a text without newlines, nothing fed yet: its frequencies
                counts = np.asarray(self.vocab.counts or np.ones(self.vocab.vocab_size), np.float64)
                token = self.rng.choice(self.vocab.vocab_size, size=1, p=counts / counts.sum())
            else:
                token = self.draw(self.logits)
            self.logits, self.state = self.net.step(token, self.state)
            yield self.vocab.index_to_char[int(token[0])]
            if stops.update(token)[0]:
                return


def run(conversation, lines, write, note, length, stop="", terminal=False):
    """Reads `lines` (an iterator of input lines, newline included) until they end; `write` takes
    generated text, `note` messages for stderr. Returns how many lines were refused (characters the
    model never saw: that line is skipped, with a note, and gets an empty answer)."""
    refused = 0
    for line in lines:
        text = line[:-1] if line.endswith("\n") else line
        if text.strip() == RESET:
            conversation.reset()
            note("(state reset)")
            continue
        try:
            conversation.feed(text)
        except SeedError as e:
            refused += 1
            note(f"skipped: {e}")
            if not terminal:
                write("\n")
            continue
        answer = []
        for c in conversation.reply(length, stop):
            answer.append(c)
            if terminal:
                write(c)
        if not terminal:
            write("".join(answer))
        if not answer or answer[-1] != "\n":
            write("\n")
    return refused


# A longer input line is cut here; the rest of it is read as the following lines would be.
MAX_LINE_BYTES = 1 << 20


def read_lines(stream, prompt=None):
    """Yields the lines of a binary stream as text (bytes that are not UTF-8 become U+FFFD, which no
    vocabulary has, so such a line is refused rather than misread), calling `prompt()` before each."""
    while True:
        if prompt is not None:
            prompt()
        line = stream.readline(MAX_LINE_BYTES)
        if not line:
            return
        yield line.decode("utf-8", errors="replace")
