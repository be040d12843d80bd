"""The network reading a text for the report: each character's surprisal and the top guesses
before it, every cell's activation after it, and the cells that follow properties of the text most
closely (as in Karpathy, Johnson and Fei-Fei, "Visualizing and Understanding Recurrent Networks",
2015)."""

from dataclasses import dataclass

import numpy as np

from charrnn import evaluate

TOP = 5  # predictions shown in each character's tooltip


@dataclass
class Reading:
    """The network reading a text, state carried from its first character."""

    tokens: np.ndarray  # (n,)
    surprisal: np.ndarray  # (n,) nats: -log p of each character given those before; NaN for the first
    top: np.ndarray  # (n, TOP) the most likely characters at each position, before it was read
    top_p: np.ndarray  # (n, TOP) their probabilities
    activations: np.ndarray  # (n, cells): every layer's cell values after each character
    cell_names: list  # "layer 1 unit 37", one per column of activations


def read(net, tokens):
    """Runs the network over `tokens` with the state carried; returns a Reading. The logits are
    computed a block of positions at a time (charrnn.evaluate's bound on logits), so memory beyond
    the per-character results stays bounded whatever the vocabulary."""
    state = net.initial_state(1)
    per_layer = len(state[0])
    n = len(tokens)
    hidden = np.empty((n, net.cfg.units), np.float32)
    activations = []
    for i, token in enumerate(tokens):
        h, state = net.advance(np.array([token]), state)
        hidden[i] = h[0]
        # The cells of each layer: an LSTM's c (the memory), else h.
        activations.append(np.concatenate([layer[per_layer - 1][0] for layer in state]))
    k = min(TOP, net.cfg.vocab_size)
    # Row i: character i's surprisal and the predictions for it, made after reading character i - 1.
    surprisal = np.full(n, np.nan)
    top = np.zeros((n, k), np.int64)
    top_p = np.full((n, k), np.nan)
    block = max(1, evaluate.BLOCK_LOGITS // (2 * net.cfg.vocab_size))  # float64 logits
    for a in range(0, n - 1, block):
        b = min(a + block, n - 1)
        logits = net.output(hidden[a:b]).astype(np.float64)  # (positions, vocab): predict the next character
        logits -= logits.max(axis=1, keepdims=True)
        log_p = logits - np.log(np.exp(logits).sum(axis=1, keepdims=True))
        surprisal[a + 1 : b + 1] = np.maximum(0.0, -log_p[np.arange(b - a), tokens[a + 1 : b + 1]])
        likely = np.argpartition(-log_p, k - 1, axis=1)[:, :k]
        likely_p = np.take_along_axis(log_p, likely, axis=1)
        order = np.argsort(-likely_p, axis=1, kind="stable")
        top[a + 1 : b + 1] = np.take_along_axis(likely, order, axis=1)
        top_p[a + 1 : b + 1] = np.exp(np.take_along_axis(likely_p, order, axis=1))
    units = net.cfg.units
    names = [f"layer {layer + 1} unit {unit}" for layer in range(net.cfg.layers) for unit in range(units)]
    return Reading(tokens, surprisal, top, top_p, np.array(activations), names)


# --- the cells that follow the text -------------------------------------------------------------

QUOTES = {'"': '"', "“": "”", "«": "»", "「": "」"}
BRACKETS = {"(": ")", "[": "]", "{": "}"}


def features(text):
    """{name: (n,) float array} of properties of each position of `text`: inside quotes, inside
    brackets, position in the line, and being at the start of a word."""
    inside_quote, inside_bracket, column, word_start = [], [], [], []
    quote_close, depth, col, before = None, 0, 0, " "
    for c in text:
        if quote_close is not None and c == quote_close:
            quote_close = None
        elif quote_close is None and c in QUOTES:
            quote_close = QUOTES[c]
        if c in BRACKETS:
            depth += 1
        elif c in BRACKETS.values():
            depth = max(0, depth - 1)
        inside_quote.append(quote_close is not None)
        inside_bracket.append(depth > 0)
        column.append(col)
        word_start.append(c.isalnum() and not before.isalnum())
        col = 0 if c == "\n" else col + 1
        before = c
    return {
        "inside quotes": np.array(inside_quote, float),
        "inside brackets": np.array(inside_bracket, float),
        "position in the line": np.array(column, float),
        "start of a word": np.array(word_start, float),
    }


def cells(reading, vocab):
    """[(feature name, cell name, correlation, activations)]: for each property of the text that
    varies in it, the cell whose activation is most correlated with it (either sign)."""
    text = vocab.decode(reading.tokens)
    acts = reading.activations
    centred = acts - acts.mean(axis=0)
    spread = np.sqrt((centred**2).sum(axis=0))
    found = []
    for name, values in features(text).items():
        v = values - values.mean()
        if not v.any():
            continue  # the text never shows it
        with np.errstate(invalid="ignore", divide="ignore"):
            corr = centred.T @ v / (spread * np.sqrt((v**2).sum()))
        corr = np.nan_to_num(corr)
        best = int(np.argmax(np.abs(corr)))
        found.append((name, reading.cell_names[best], float(corr[best]), acts[:, best]))
    return found
