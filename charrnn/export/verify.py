"""Checking an export against the NumPy network (charrnn/numpynet.py): the reference text and
logits, teacher forcing, argmax generation through an export's step, the comparison with its
tolerances, and the vocabulary an export gives its clients."""

from dataclasses import dataclass

import numpy as np

from charrnn import generation
from charrnn.errors import ExportError

# The verification generates this many characters with the export and with the NumPy sampler.
VERIFY_LENGTH = 200
# Logits may differ by this much (relative to the largest logit, at least 1) from the NumPy step's.
LOGIT_TOLERANCE = 3e-4


@dataclass
class Reference:
    seed: str
    prime: list  # the tokens fed before the first new character (the seed, or a newline)
    text: str  # seed + VERIFY_LENGTH argmax characters from the NumPy sampler
    fed: list  # prime + the new characters but the last: every token the network is fed
    logits: np.ndarray  # (len(fed), vocab_size): the NumPy step's logits after each fed token


def reference(run):
    """The NumPy sampler's argmax text from a fixed seed, and its logits along the way: a Reference."""
    vocab = run.vocab
    if "\n" in vocab.char_to_index:
        seed, prime = "", [vocab.char_to_index["\n"]]
    else:
        # No newline to start after: start from the most frequent character.
        counts = vocab.counts or [1] * vocab.vocab_size
        seed = vocab.index_to_char[int(np.argmax(counts))]
        prime = [vocab.char_to_index[seed]]
    text = generation.sample_text(run.net, vocab, seed, VERIFY_LENGTH, temperature=0.0)[0]
    fed = prime + [vocab.char_to_index[c] for c in text[len(seed) :]][:-1]
    state = run.net.initial_state(1)
    logits = []
    for token in fed:
        step_logits, state = run.net.step(np.array([token]), state)
        logits.append(step_logits[0])
    return Reference(seed, prime, text, fed, np.array(logits, np.float32))


def teacher_forced(step_fn, run, ref):
    """Feeds the reference's tokens through step_fn(token, state (1, S)) -> (logits, state) from the
    zero state; returns the logits after each, (len(ref.fed), vocab_size)."""
    state = np.zeros((1, run.state_size), np.float32)
    rows = []
    for token in ref.fed:
        logits, state = step_fn(int(token), state)
        rows.append(np.asarray(logits))
    return np.array(rows, np.float32)


def argmax_text(step_fn, run, ref):
    """The reference seed and the VERIFY_LENGTH characters step_fn(token, state) -> (logits, state)
    generates by argmax after the reference's prime tokens."""
    state = np.zeros((1, run.state_size), np.float32)
    for token in ref.prime:
        logits, state = step_fn(token, state)
    chosen = []
    for i in range(VERIFY_LENGTH):
        token = int(np.argmax(logits))
        chosen.append(token)
        if i + 1 < VERIFY_LENGTH:
            logits, state = step_fn(token, state)
    return ref.seed + run.vocab.decode(chosen)


def check(name, run, ref, text, logits):
    """Checks the `name` export's argmax text and teacher-forced logits against the reference;
    returns the largest logit difference. Raises ExportError on a mismatch.

    Texts may part where the reference's two most likely characters are within the logit tolerance:
    there float rounding, not a bug, decides the argmax (the logits are still checked all along).
    """
    scale = max(1.0, float(np.abs(ref.logits).max()))
    tolerance = LOGIT_TOLERANCE * scale
    if logits.shape != ref.logits.shape or not np.all(np.isfinite(logits)):
        raise ExportError(f"the {name} export does not reproduce the run: its logits have shape {logits.shape}, expected {ref.logits.shape}")
    diff = float(np.abs(logits - ref.logits).max())
    if diff > tolerance:
        raise ExportError(
            f"the {name} export does not reproduce the run: its logits differ from the NumPy sampler's by {diff:.2g} "
            f"(tolerance {tolerance:.2g}); please report this as a bug"
        )
    if text != ref.text:
        at = next((i for i, (a, b) in enumerate(zip(text, ref.text)) if a != b), min(len(text), len(ref.text)))
        # The row of logits the reference chose character `at` from.
        row = len(ref.prime) - 1 + (at - len(ref.seed))
        near_tie = 0 <= row < len(ref.logits) and len(text) == len(ref.text) and _top_gap(ref.logits[row]) <= tolerance
        if not near_tie:
            raise ExportError(
                f"the {name} export does not reproduce the run: its argmax text differs from `charrnn sample --argmax` "
                f"at character {at - len(ref.seed)} ({text[at:at + 10]!r} instead of {ref.text[at:at + 10]!r}); please report this as a bug"
            )
    return diff


def check_vocabulary(name, run, index_to_char, state_size):
    """Checks the characters in index order and the state size that the `name` export gives its
    clients against the run's; raises ExportError on a mismatch."""
    if list(index_to_char) != list(run.vocab.index_to_char) or state_size != run.state_size:
        raise ExportError(
            f"the {name} export does not describe the run: its vocabulary or state size ({len(index_to_char)} characters, "
            f"state size {state_size}) differs from the run's ({run.vocab.vocab_size}, {run.state_size}); please report this as a bug"
        )


def _top_gap(row):
    """How far the largest logit in `row` is above the second (inf if there is only one)."""
    top = np.sort(row)[-2:]
    return float(top[1] - top[0]) if len(top) == 2 else np.inf
