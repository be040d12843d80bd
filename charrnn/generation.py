"""Generation from the NumPy network (charrnn/numpynet.py): the seed primes the state, then each
character is one recurrent step for all streams together and one draw: argmax at temperature 0,
else from softmax(logits / temperature) restricted to the top_k tokens and the top_p nucleus.

Pure functions: network, vocabulary, prompt, length and random generator in; tokens or text out.
`charrnn sample` streams them (charrnn/sample.py); `report` and the exports' checks call
sample_text.
"""

import math

from charrnn import numpynet  # first: it sets NumPy's BLAS threads before NumPy loads

import numpy as np

from charrnn.checks import is_int, is_number
from charrnn.errors import SeedError, UsageError

_FLOAT32_MAX = float(np.finfo(np.float32).max)


def check_sampling_options(temperature, top_k, top_p, length, num_samples):
    """Raises UsageError for options no draw can use: NaN or infinite numbers among them."""
    if not (is_number(temperature) and 0 <= temperature < math.inf):
        raise UsageError(f"temperature must be a finite number, 0 or more. Received: temperature={temperature}")
    if top_k is not None and not (is_int(top_k) and top_k >= 1):
        raise UsageError(f"top_k must be a positive whole number. Received: top_k={top_k}")
    if top_p is not None and not (is_number(top_p) and 0 < top_p <= 1):
        raise UsageError(f"top_p must be in (0, 1]. Received: top_p={top_p}")
    if not (is_int(length) and length >= 0):
        raise UsageError(f"length must be a whole number, 0 or more. Received: length={length}")
    if not (is_int(num_samples) and num_samples >= 1):
        raise UsageError(f"num_samples must be a positive whole number. Received: num_samples={num_samples}")


def check_seed(vocab, seed):
    """Raises SeedError naming the seed's characters that are not in the vocabulary."""
    unknown = vocab.unknown_chars(seed)
    if unknown:
        shown = ", ".join(repr(c) for c in unknown[:10])
        raise SeedError(f"the seed has characters the model never saw: {shown}; use only characters from the training text")


def restrict(z, top_k, top_p):
    """Sets to -inf the logits outside the top_k tokens and outside the top_p nucleus, per row."""
    if top_k is not None and top_k < z.shape[1]:
        kth = np.partition(z, -top_k, axis=1)[:, -top_k, None]
        z = np.where(z < kth, -np.inf, z)
    if top_p is not None and top_p < 1:
        order = np.argsort(-z, axis=1)
        sorted_z = np.take_along_axis(z, order, axis=1)
        p = np.exp(sorted_z - sorted_z[:, :1])
        before = np.cumsum(p, axis=1) - p  # probability mass ranked above each token
        drop = before > top_p * p.sum(axis=1, keepdims=True)
        np.put_along_axis(z, order, np.where(drop, -np.inf, sorted_z), axis=1)
    return z


class Chooser:
    """Picks one token per row of logits (batch, vocab): argmax at temperature 0, else a draw from
    softmax(logits / temperature) restricted to the top_k tokens and the top_p nucleus.

    Draws use the Gumbel-max trick, argmax(z + g) with g ~ Gumbel(0, 1), which samples exactly
    from softmax(z); the noise is drawn from `rng` in blocks, so a step costs a few array ops.
    """

    BLOCK = 512
    # At most this many bytes of noise are drawn at once (as float64, before the cast): a block is
    # fewer steps than BLOCK when the streams times the vocabulary are large (100,000 characters).
    NOISE_BYTES = 1 << 24

    def __init__(self, temperature, top_k=None, top_p=None, rng=None):
        self.temperature, self.top_k, self.top_p = temperature, top_k, top_p
        self.rng = rng if rng is not None else np.random.default_rng()
        self.noise = None
        self.used = self.block = 0
        # A temperature so small that 1 / temperature overflows float32 (below about 2.9e-39) is
        # argmax: no draw could differ from it.
        self.scale = None if temperature == 0 or 1.0 / temperature > _FLOAT32_MAX else np.float32(1.0 / temperature)

    def __call__(self, logits):
        if self.scale is None:
            return np.argmax(logits, axis=1)
        # A tiny temperature may take large logits past float32's range (-inf is harmless there).
        with np.errstate(over="ignore"):
            z = logits * self.scale
            if not np.isfinite(z).all():
                # Measured from each row's largest logit, no value can reach +inf (inf - inf is NaN).
                z = (logits - logits.max(axis=1, keepdims=True)) * self.scale
            if self.top_k is not None or self.top_p is not None:
                z = restrict(z, self.top_k, self.top_p)  # z is a fresh array: restrict may write into it
        if self.used == self.block or self.noise.shape[1:] != z.shape:
            self.block = max(1, min(self.BLOCK, self.NOISE_BYTES // (8 * z.size)))
            self.noise = self.rng.gumbel(size=(self.block, *z.shape)).astype(np.float32)
            self.used = 0
        z += self.noise[self.used]
        self.used += 1
        return np.argmax(z, axis=1)


def choose(logits, temperature, top_k=None, top_p=None, rng=None):
    """One draw with Chooser (see there); for one-off use."""
    return Chooser(temperature, top_k, top_p, rng)(logits)


def prime(net, vocab, seed, num_samples=1):
    """Runs the seed text (its characters in the vocabulary: see check_seed) through the network.
    Returns (state, logits) for `num_samples` streams.

    With no seed, generation starts after a newline when the corpus has one, else from a first
    character drawn from the corpus's character frequencies (that character is yielded first by
    `generate`, via the returned logits being None).
    """
    state = net.initial_state(1)
    if seed:
        tokens = vocab.encode(seed)
    elif "\n" in vocab.char_to_index:
        tokens = [vocab.char_to_index["\n"]]
    else:
        return numpynet.repeat(state, num_samples), None
    for token in tokens:
        logits, state = net.step(np.array([token]), state)
    return numpynet.repeat(state, num_samples), np.repeat(logits, num_samples, axis=0)


def generate(net, vocab, seed="", length=500, temperature=1.0, top_k=None, top_p=None, num_samples=1, rng=None, *, checked=False):
    """Yields `length` arrays of `num_samples` token indices: the characters that follow `seed`.

    Pure: the network, vocabulary, prompt and random generator in, tokens out. Each character costs
    one recurrent step for all streams together. The options and the seed are checked first
    (UsageError, SeedError) unless `checked` says the caller has checked them.
    """
    if not checked:
        check_sampling_options(temperature, top_k, top_p, length, num_samples)
        check_seed(vocab, seed)
    rng = rng if rng is not None else np.random.default_rng()
    draw = Chooser(temperature, top_k, top_p, rng)
    state, logits = prime(net, vocab, seed, num_samples)
    for i in range(length):
        if logits is None:
            counts = np.asarray(vocab.counts if vocab.counts else np.ones(vocab.vocab_size), np.float64)
            tokens = rng.choice(vocab.vocab_size, size=num_samples, p=counts / counts.sum())
        else:
            tokens = draw(logits)
        yield tokens
        if i + 1 < length:
            logits, state = net.step(tokens, state)


def sample_text(net, vocab, seed="", length=500, temperature=1.0, top_k=None, top_p=None, num_samples=1, random_seed=None):
    """Returns a list of `num_samples` strings, each the seed followed by `length` new characters."""
    rng = np.random.default_rng(random_seed)
    steps = list(generate(net, vocab, seed, length, temperature, top_k, top_p, num_samples, rng))
    if not steps:
        return [seed] * num_samples
    columns = np.stack(steps, axis=1)  # (num_samples, length)
    return [seed + vocab.decode(row) for row in columns]
