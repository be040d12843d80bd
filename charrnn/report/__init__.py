"""`charrnn report`: one self-contained HTML page about a run, for a person to look at.

It shows the run's settings, its learning curves (inline SVG: charts.py), samples at a few
temperatures, a stretch of text coloured by how surprised the model is at each character, and the
cells of the network whose activations follow the text most visibly (reading.py). Nothing on the
page (page.py) is loaded from anywhere: no scripts, fonts or style sheets from a network; it opens
in any browser offline. Built in NumPy from one Snapshot of the run, without TensorFlow.
"""

import time
from pathlib import Path

from charrnn.snapshot import Snapshot  # first: via charrnn.numpynet, it sets NumPy's BLAS threads before NumPy loads

import numpy as np

from charrnn import evaltext, generation, info
from charrnn.corpus import STDIN
from charrnn.errors import CorpusError, UsageError
from charrnn.report import page
from charrnn.report.reading import TOP, cells, read  # noqa: F401 (TOP: public)
from charrnn.rundir.atomic import replace_file

REPORT = "report.html"
# Characters of text scored and drawn by default.
TEXT_CHARS = 2_000
TEMPERATURES = (0.5, 0.8, 1.0)
SAMPLE_LENGTH = 400


def build(run_dir, output=None, text_path=None, chars=TEXT_CHARS, stdin=None):
    """Writes the report of the run in `run_dir` to `output` (default RUN/report.html) and returns
    (its path, seconds taken). `text_path` names the text to colour (default: the run's
    validation text; "-": `stdin`); its first `chars` known characters are used."""
    started = time.monotonic()
    snapshot = Snapshot.load(run_dir, "best")
    facts = info.facts(snapshot, snapshot.train_state(), snapshot.best())
    facts["corpus"] = ", ".join(named(f["path"]) for f in snapshot.settings.corpus["files"])
    rows = snapshot.run.metrics.read()
    net, vocab = snapshot.net, snapshot.vocab
    known = evaltext.KnownChars(vocab)
    if text_path is None:
        chunks, text_name = evaltext.validation_tokens(snapshot, known), "the validation text"
    else:
        chunks, text_name = known.tokens(evaltext.codepoint_chunks(text_path, stdin)), named(text_path)
    tokens = _first(chunks, chars)
    if len(tokens) < 2:
        raise CorpusError(f"{text_name} has fewer than 2 characters the model knows; give another --text")
    reading = read(net, tokens)
    samples = [
        (t, generation.sample_text(net, vocab, length=SAMPLE_LENGTH, temperature=t, random_seed=0)[0]) for t in TEMPERATURES
    ]
    html = page.render(facts, rows, vocab, reading, samples, text_name, cells(reading, vocab))
    path = Path(output) if output else snapshot.run.path / REPORT
    try:
        replace_file(path, lambda f: f.write(html.encode("utf-8")))
    except OSError as e:
        raise UsageError(f"could not write the report to {path}: {e.strerror or e}; give a writable --output") from None
    return path, time.monotonic() - started


def named(path):
    """What the page calls a text: "standard input" for "-", else its path."""
    return "standard input" if str(path) == STDIN else str(path)


def _first(token_chunks, count):
    taken, total = [], 0
    for chunk in token_chunks:
        taken.append(chunk[: count - total])
        total += len(taken[-1])
        if total >= count:
            break
    return np.concatenate(taken).astype(np.int64) if taken else np.zeros(0, np.int64)
