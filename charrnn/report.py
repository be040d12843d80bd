"""`charrnn report`: one self-contained HTML page about a run, for a person to look at.

It shows the run's settings, its learning curves (inline SVG), samples at a few temperatures, a
stretch of text coloured by how surprised the model is at each character, and the cells of the
network whose activations follow the text most visibly (as in Karpathy, Johnson and Fei-Fei,
"Visualizing and Understanding Recurrent Networks", 2015). Nothing on the page is loaded from
anywhere: no scripts, fonts or style sheets from a network; it opens in any browser offline.
Built in NumPy from the run directory, without TensorFlow.
"""

import html
import math
import time
from dataclasses import dataclass
from pathlib import Path

from charrnn import sample  # first: it sets NumPy's BLAS threads before NumPy loads

import numpy as np

from charrnn import evaluate
from charrnn.errors import CorpusError, UsageError
from charrnn.info import run_info
from charrnn.rundir import RunDir, replace_file
from charrnn.units import bits_per_char, duration

REPORT = "report.html"
# Characters of text scored and drawn by default.
TEXT_CHARS = 2_000
TEMPERATURES = (0.5, 0.8, 1.0)
SAMPLE_LENGTH = 400
TOP = 5  # predictions shown in each character's tooltip
# Surprisal (nats) drawn at full colour.
FULL_SURPRISAL = 6.0


@dataclass
class Reading:
    """The network reading a text, state carried from its first character."""

    tokens: np.ndarray  # (n,)
    surprisal: np.ndarray  # (n,) nats: -log p of each character given those before; NaN for the first
    top: np.ndarray  # (n, TOP) the most likely characters at each position, before it was read
    top_p: np.ndarray  # (n, TOP) their probabilities
    activations: np.ndarray  # (n, cells): every layer's cell values after each character
    cell_names: list  # "layer 1 unit 37", one per column of activations


def build(run_dir, output=None, text_path=None, chars=TEXT_CHARS, stdin=None):
    """Writes the report of the run in `run_dir` to `output` (default RUN/report.html) and returns
    (its path, seconds taken). `text_path` names the text to colour (default: the run's
    validation text; "-": `stdin`); its first `chars` known characters are used."""
    started = time.monotonic()
    run = RunDir(run_dir)
    facts = run_info(run_dir)
    rows = run.read_metrics()
    net, vocab, cfg = sample.load(run_dir, "best")
    known = evaluate.KnownChars(vocab)
    if text_path is None:
        chunks, text_name = evaluate.validation_tokens(run, known), "the validation text"
    else:
        chunks, text_name = known.tokens(evaluate.codepoint_chunks(text_path, stdin)), str(text_path)
    tokens = _first(chunks, chars)
    if len(tokens) < 2:
        raise CorpusError(f"{text_name} has fewer than 2 characters the model knows; give another --text")
    reading = read(net, tokens)
    samples = [
        (t, sample.sample_text(net, vocab, length=SAMPLE_LENGTH, temperature=t, random_seed=0)[0]) for t in TEMPERATURES
    ]
    page = render(facts, rows, vocab, reading, samples, text_name, cells(reading, vocab))
    path = Path(output) if output else run.path / REPORT
    try:
        replace_file(path, lambda f: f.write(page.encode("utf-8")))
    except OSError as e:
        raise UsageError(f"could not write the report to {path}: {e.strerror or e}; give a writable --output") from None
    return path, time.monotonic() - started


def _first(token_chunks, count):
    taken, total = [], 0
    for chunk in token_chunks:
        taken.append(chunk[: count - total])
        total += len(taken[-1])
        if total >= count:
            break
    return np.concatenate(taken).astype(np.int64) if taken else np.zeros(0, np.int64)


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


# --- the page ------------------------------------------------------------------------------------


def render(facts, rows, vocab, reading, samples, text_name, found_cells):
    text = vocab.decode(reading.tokens)
    best_step = facts.get("best_step")
    sections = [
        _header(facts),
        "<h2>Learning curves</h2>",
        _curves(rows, best_step),
        "<h2>Samples</h2><p class=note>From the best weights, 400 characters at each temperature, after a newline.</p>",
        "".join(f"<h3>temperature {t:g}</h3><pre class=sample>{html.escape(s)}</pre>" for t, s in samples),
        "<h2>Surprisal</h2>",
        f"<p class=note>The first {len(text):,} characters of {html.escape(text_name)}, each coloured by how surprised "
        "the model was to see it (−log p, nats; darker is more surprising), the state carried from the first "
        f"character. Hover or tap a character for its probability and the model's top {TOP} guesses. Mean: "
        f"{np.nanmean(reading.surprisal):.4f} nats/char.</p>",
        _surprisal_text(text, reading, vocab),
        "<h2>Cells that follow the text</h2>",
        _cells(text, found_cells),
    ]
    return PAGE.format(title=html.escape(f"charrnn report: {facts['run_dir']}"), body="\n".join(sections))


def _header(facts):
    model, training = facts["model"], facts["training"]
    best = (
        f"{facts['best_val_loss']:.4f} nats/char ({facts['best_val_bpc']:.4f} bits/char) at step {facts['best_step']:,}"
        if facts["best_val_loss"] is not None else "no evaluation yet"
    )
    items = [
        ("run", facts["run_dir"]),
        ("model", f"{model['model'].upper()} {model['units']}x{model['layers']}, embedding {model['embedding_dim']}, "
                  f"dropout {model['dropout']:g}; {facts['parameters'] or 0:,} parameters; vocabulary {facts['vocab_size']:,}"),
        ("training", f"windows of {training['seq_length']}, batches of {training['batch_size']}, learning rate "
                     f"{training['learning_rate']:g}, state {training.get('state', 'reset')}"),
        ("corpus", f"{facts['corpus']}: {facts['corpus_chars'] or 0:,} characters ({facts['train_chars'] or 0:,} train, "
                   f"{facts['val_chars'] or 0:,} validation)"),
        ("trained", f"{facts['steps']:,} steps, {facts['chars_seen']:,} characters, {duration(facts['training_time_s'])}"),
        ("best validation loss", f"{best}, state carried"),
    ]
    cells_html = "".join(f"<dt>{html.escape(k)}</dt><dd>{html.escape(str(v))}</dd>" for k, v in items)
    return f"<h1>charrnn report</h1><dl class=facts>{cells_html}</dl>"


def _curves(rows, best_step):
    if not rows:
        return "<p class=note>No evaluation yet: train longer to see curves.</p>"
    best = next((r for r in rows if r["step"] == best_step), None)

    def series(key, x):
        return [(r[x], r[key]) for r in rows if r.get(key) is not None]

    curves = (("training", "train", "train_loss"), ("validation, windows", "val", "val_loss"),
              ("validation, state carried", "carried", "val_loss_carried"))
    losses = [(name, css, series(key, "chars_seen")) for name, css, key in curves]
    by_time = [(name, css, series(key, "elapsed_s")) for name, css, key in curves]
    mark_chars = (best["chars_seen"], best.get("val_loss_carried", best["val_loss"])) if best else None
    mark_time = (best["elapsed_s"], best.get("val_loss_carried", best["val_loss"])) if best else None
    charts = [
        line_chart("loss (nats/char) by characters seen", losses, _count, mark_chars, y_span=1.0),
        line_chart("loss (nats/char) by training time", by_time, duration, mark_time, y_span=1.0),
        line_chart("learning rate", [("learning rate", "lr", series("learning_rate", "chars_seen"))], _count),
        line_chart("training speed (chars/s)", [("chars/s", "speed", series("chars_per_s", "elapsed_s"))], duration),
    ]
    return "<div class=charts>" + "".join(charts) + "</div>"


def _count(value):
    for size, unit in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(value) >= size:
            return f"{value / size:.3g}{unit}"
    return f"{value:.3g}"


def _ticks(low, high, count=5):
    """About `count` round values spanning [low, high]."""
    if high <= low:
        return [low]
    raw = (high - low) / count
    step = 10 ** math.floor(math.log10(raw))
    step *= next(m for m in (1, 2, 2.5, 5, 10) if raw <= m * step)
    first = math.ceil(low / step) * step
    return [first + i * step for i in range(int((high - first) / step + 1e-9) + 1)]


def line_chart(title, series, x_format, mark=None, y_span=None, width=640, height=300):
    """An inline SVG line chart of `series` [(name, css class, [(x, y)])], with `mark` (x, y)
    circled: the best checkpoint. With `y_span`, the y axis shows at most that much above the
    lowest point (the first losses of a run would flatten the rest); higher points sit on the top
    edge. Each line is a polyline with data-points, its number of points."""
    points = [p for _, _, ps in series for p in ps]
    if not points:
        return ""
    left, right, top, bottom = 56, 12, 28, 36
    xs, ys = [x for x, _ in points], [y for _, y in points]
    x0, x1 = min(xs), max(xs)
    y0, y1 = min(ys), max(ys)
    if y_span is not None:
        y1 = min(y1, y0 + y_span)
    if x1 == x0:
        x1 = x0 + 1
    pad = (y1 - y0) * 0.05 or abs(y0) * 0.05 or 1
    y0, y1 = y0 - pad, y1 + pad

    def px(x):
        return left + (x - x0) / (x1 - x0) * (width - left - right)

    def py(y):
        y = min(max(y, y0), y1)
        return height - bottom - (y - y0) / (y1 - y0) * (height - top - bottom)

    parts = [f'<svg viewBox="0 0 {width} {height}" role="img" aria-label="{html.escape(title)}">',
             f'<text class=title x="{left}" y="16">{html.escape(title)}</text>']
    for y in _ticks(y0, y1):
        parts.append(f'<line class=grid x1="{left}" x2="{width - right}" y1="{py(y):.1f}" y2="{py(y):.1f}"/>'
                     f'<text class=tick x="{left - 6}" y="{py(y) + 4:.1f}" text-anchor="end">{_count(y)}</text>')
    for x in _ticks(x0, x1):
        parts.append(f'<text class=tick x="{px(x):.1f}" y="{height - bottom + 16}" text-anchor="middle">{html.escape(x_format(x))}</text>')
    for name, css, ps in series:
        if ps:
            coords = " ".join(f"{px(x):.1f},{py(y):.1f}" for x, y in ps)
            parts.append(f'<polyline class="line {css}" data-series="{html.escape(name)}" data-points="{len(ps)}" points="{coords}"/>')
    if mark is not None:
        parts.append(f'<circle class=best cx="{px(mark[0]):.1f}" cy="{py(mark[1]):.1f}" r="5"><title>best checkpoint</title></circle>')
    parts.append("</svg>")
    legend = "".join(f'<span class="key {css}">{html.escape(name)}</span>' for name, css, ps in series if ps)
    if mark is not None:
        legend += '<span class="key bestkey">best checkpoint</span>'
    return f"<figure>{''.join(parts)}<figcaption>{legend}</figcaption></figure>"


def _shown(c):
    """A character as a tooltip shows it."""
    return {"\n": "⏎ (newline)", " ": "␣ (space)", "\t": "⇥ (tab)"}.get(c, c)


def _surprisal_text(text, reading, vocab):
    spans = []
    for i, c in enumerate(text):
        s = reading.surprisal[i]
        if math.isnan(s):
            spans.append(f'<span class=first title="the first character: context only">{html.escape(c)}</span>')
            continue
        guesses = ", ".join(f"{_shown(vocab.index_to_char[t])} {p:.3f}" for t, p in zip(reading.top[i], reading.top_p[i]))
        tip = f"{_shown(c)}: p {math.exp(-s):.4f}, {s:.3f} nats ({bits_per_char(s):.3f} bits)\ntop {TOP}: {guesses}"
        alpha = min(1.0, s / FULL_SURPRISAL)
        spans.append(
            f'<span data-s="{s:.6f}" style="background:rgba(230,70,40,{alpha:.3f})" title="{html.escape(tip)}">{html.escape(c)}</span>'
        )
    return f"<div class=text>{''.join(spans)}</div>"


def _cells(text, found):
    if not found:
        return "<p class=note>The text is too uniform to find a cell that follows it.</p>"
    out = ["<p class=note>For each property of the text above, the cell whose activation follows it most closely "
           "(Pearson correlation over the text). Blue: positive activation, orange: negative; darker is larger.</p>"]
    for feature, cell, corr, acts in found:
        scale = max(float(np.abs(acts).max()), 1e-6)
        spans = "".join(
            f'<span style="background:{_activation_colour(a / scale)}" title="{a:+.3f}">{html.escape(c)}</span>'
            for c, a in zip(text, acts)
        )
        out.append(f"<h3>{html.escape(feature)}: {html.escape(cell)} (correlation {corr:+.2f})</h3><div class=text>{spans}</div>")
    return "".join(out)


def _activation_colour(a):
    if a >= 0:
        return f"rgba(40,110,230,{min(1.0, a):.3f})"
    return f"rgba(240,140,30,{min(1.0, -a):.3f})"


PAGE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="color-scheme" content="light dark">
<title>{title}</title>
<style>
:root {{ --fg: #1d1f21; --bg: #ffffff; --muted: #6a6f75; --grid: #e3e5e8; --train: #8a8f96;
        --val: #2a6fd6; --carried: #d6452a; --lr: #2b9a66; --speed: #7a4fd0; }}
@media (prefers-color-scheme: dark) {{
  :root {{ --fg: #e4e6e8; --bg: #16181b; --muted: #9aa0a6; --grid: #30343a; --train: #9aa0a6;
          --val: #6ea2f2; --carried: #f07a5e; --lr: #5cc895; --speed: #a88af0; }}
}}
body {{ margin: 0 auto; padding: 1rem; max-width: 72rem; color: var(--fg); background: var(--bg);
       font: 16px/1.5 system-ui, -apple-system, "Segoe UI", Roboto, "Noto Sans", "Noto Sans CJK SC", sans-serif; }}
h1 {{ font-size: 1.6rem; margin: 0.5rem 0; }} h2 {{ font-size: 1.25rem; margin-top: 2rem; }} h3 {{ font-size: 1rem; }}
.note {{ color: var(--muted); }}
dl.facts {{ display: grid; grid-template-columns: max-content 1fr; gap: 0.2rem 1rem; }}
dl.facts dt {{ color: var(--muted); }} dl.facts dd {{ margin: 0; overflow-wrap: anywhere; }}
.charts {{ display: grid; grid-template-columns: repeat(auto-fit, minmax(26rem, 1fr)); gap: 1rem; }}
@media (max-width: 30rem) {{ .charts {{ grid-template-columns: 1fr; }} }}
figure {{ margin: 0; }} svg {{ width: 100%; height: auto; }}
svg text {{ fill: var(--fg); font-size: 14px; }} svg text.title {{ font-size: 16px; font-weight: 600; }}
svg text.tick {{ fill: var(--muted); }} .grid {{ stroke: var(--grid); }}
.line {{ fill: none; stroke-width: 2; }} .line.train {{ stroke: var(--train); }} .line.val {{ stroke: var(--val); }}
.line.carried {{ stroke: var(--carried); }} .line.lr {{ stroke: var(--lr); }} .line.speed {{ stroke: var(--speed); }}
circle.best {{ fill: none; stroke: var(--fg); stroke-width: 2; }}
figcaption {{ font-size: 0.85rem; display: flex; flex-wrap: wrap; gap: 0.8rem; }}
.key::before {{ content: ""; display: inline-block; width: 1rem; height: 3px; margin-right: 0.3rem; vertical-align: middle; }}
.key.train::before {{ background: var(--train); }} .key.val::before {{ background: var(--val); }}
.key.carried::before {{ background: var(--carried); }} .key.lr::before {{ background: var(--lr); }}
.key.speed::before {{ background: var(--speed); }} .key.bestkey::before {{ border: 2px solid var(--fg); border-radius: 50%; width: 0.5rem; height: 0.5rem; }}
pre.sample, .text {{ font-family: ui-monospace, "SFMono-Regular", Menlo, Consolas, "DejaVu Sans Mono", "Noto Sans Mono CJK SC",
  "Noto Sans Mono", monospace; font-size: 0.9rem; white-space: pre-wrap; overflow-wrap: anywhere;
  background: color-mix(in srgb, var(--fg) 5%, var(--bg)); padding: 0.75rem; border-radius: 6px; }}
.text span {{ border-radius: 2px; }} .text span.first {{ outline: 1px dotted var(--muted); }}
</style>
</head>
<body>
{body}
</body>
</html>
"""
