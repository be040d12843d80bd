"""The report's page: one self-contained HTML document (inline SVG and CSS; no scripts, fonts or
style sheets from a network) from the run's facts, metrics, samples and Reading."""

import html
import math

import numpy as np

from charrnn.report.charts import compact, line_chart
from charrnn.report.reading import TOP
from charrnn.sample import visible
from charrnn.units import bits_per_char, duration

# Surprisal (nats) drawn at full colour.
FULL_SURPRISAL = 6.0


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
    page = PAGE.format(title=html.escape(f"charrnn report: {facts['run_dir']}"), body="\n".join(sections))
    # Control characters (the ESC of colour codes, CR, the bidirectional overrides: in a sample, the
    # text, a tooltip, a file name) written as `charrnn sample` writes them on a terminal: \x1b.
    return visible(page)[0]


def _header(facts):
    model, training = facts["model"], facts["training"]
    best = (
        f"{facts['best_val_loss']:.4f} nats/char ({facts['best_val_bpc']:.4f} bits/char) at step {facts['best_step']:,}"
        if facts["best_val_loss"] is not None else "no evaluation yet"
    )
    items = [
        ("run", facts["run_dir"]),
        ("model", f"{model['model'].upper()} {model['units']}x{model['layers']}, embedding {model['embedding_dim']}, "
                  f"dropout {model['dropout']:g}{_recurrent_dropout(model)}, {facts['output_layer']}; {facts['parameters'] or 0:,} parameters; "
                  f"vocabulary {facts['vocab_size']:,}"),
        ("training", f"windows of {training['seq_length']}, batches of {training['batch_size']}, learning rate "
                     f"{training['learning_rate']:g}, state {training.get('state', 'reset')}"),
        ("corpus", f"{facts['corpus']}: {facts['corpus_chars'] or 0:,} characters ({facts['train_chars'] or 0:,} train, "
                   f"{facts['val_chars'] or 0:,} validation)"),
        ("trained", f"{facts['steps']:,} steps, {facts['chars_seen']:,} characters, {duration(facts['training_time_s'])}"),
        ("best validation loss", f"{best}, state carried"),
    ]
    origin = facts.get("origin")
    if origin:
        added = f", {origin['added_chars']:,} characters added" if origin.get("added_chars") else ""
        items.insert(1, ("fine-tuned from", f"{origin.get('path', '?')}, its best weights of step {origin.get('step', 0):,} "
                                            f"(sha256 {str(origin.get('weights_sha256', '?'))[:12]}...){added}"))
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
        line_chart("loss (nats/char) by characters seen", losses, compact, mark_chars, y_span=1.0),
        line_chart("loss (nats/char) by training time", by_time, duration, mark_time, y_span=1.0),
        line_chart("learning rate", [("learning rate", "lr", series("learning_rate", "chars_seen"))], compact),
        line_chart("training speed (chars/s)", [("chars/s", "speed", series("chars_per_s", "elapsed_s"))], duration),
    ]
    return "<div class=charts>" + "".join(charts) + "</div>"


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
svg text {{ fill: var(--fg); font-size: 13px; }} svg text.title {{ font-size: 15px; font-weight: 600; }}
@media (max-width: 30rem) {{ svg text {{ font-size: 17px; }} svg text.title {{ font-size: 18px; }} }}
path.cut {{ fill: var(--carried); }} .cutkey {{ color: var(--muted); }}
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


def _recurrent_dropout(model):
    rate = model.get("recurrent_dropout", 0)  # run directories from before it have none
    return f" (recurrent {rate:g})" if rate else ""
