"""`charrnn report`: one self-contained page, checked as a person would see it, in a real headless
Chromium (Debian's chromium-headless-shell or chromium; .ci/run installs it when it is missing)."""

import html
import io
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from charrnn import evaltext, evaluate, report
from charrnn.rundir import RunDir
from charrnn.snapshot import Snapshot
from helpers import TINY_MODEL, TINY_TRAIN, assert_error, invoke, make_text

DOCS = Path(__file__).resolve().parent.parent / "docs"
BROWSERS = ("chromium-headless-shell", "chromium", "chromium-browser", "google-chrome")


@pytest.fixture(scope="module")
def page(trained_run, tmp_path_factory):
    path, _ = report.build(trained_run, tmp_path_factory.mktemp("report") / "report.html")
    return path, path.read_text(encoding="utf-8")


def test_the_page_loads_nothing_from_anywhere(page):
    _, text = page
    assert "http://" not in text and "https://" not in text
    assert not re.search(r"<(script|link|img|iframe)\b", text)
    assert not re.search(r"(src|href)\s*=", text)


def test_curves_have_a_point_per_evaluation_and_the_best_is_marked(page, trained_run):
    _, text = page
    rows = RunDir(trained_run).metrics.read()
    points = {(series, int(n)) for series, n in re.findall(r'data-series="([^"]+)" data-points="(\d+)"', text)}
    for series in ("training", "validation, windows", "validation, state carried", "learning rate", "chars/s"):
        assert (series, len(rows)) in points, series
    assert text.count("<circle class=best") == 2  # on both loss charts


def test_surprisal_spans_are_the_numpy_steps_and_eval_agrees(page, trained_run, tmp_path):
    _, text = page
    run = Snapshot.load(trained_run)
    net, vocab = run.net, run.vocab
    tokens = np.concatenate(list(evaltext.validation_tokens(run, evaltext.KnownChars(vocab))))
    tokens = tokens[: report.TEXT_CHARS]
    shown = [float(s) for s in re.findall(r'data-s="([0-9.]+)"', text)]
    assert len(shown) == len(tokens) - 1  # every character but the first
    state = net.initial_state(1)
    expected = []
    for current, following in zip(tokens, tokens[1:]):
        logits, state = net.step(np.array([current]), state)
        z = logits[0].astype(np.float64)
        expected.append(np.log(np.exp(z - z.max()).sum()) + z.max() - z[following])
    np.testing.assert_allclose(shown, expected, atol=1e-4)
    # The same text through `charrnn eval`: its mean is the spans' mean.
    stretch = tmp_path / "stretch.txt"
    stretch.write_text(vocab.decode(tokens), encoding="utf-8")
    assert abs(evaluate.evaluate(trained_run, stretch).nats_per_char - np.mean(shown)) < 1e-4
    # Each tooltip gives the probability and the top five guesses.
    tip = html.unescape(re.search(r'data-s="[^"]+" style="[^"]+" title="([^"]+)"', text)[1])
    assert re.search(r": p [0-9.]+, [0-9.]+ nats", tip) and "top 5: " in tip and tip.count(", ") >= 5


def test_samples_at_three_temperatures_and_cells(page):
    _, text = page
    assert len(re.findall(r"<h3>temperature [0-9.]+</h3><pre class=sample>", text)) == 3
    assert re.search(r"<h3>position in the line: layer 1 unit \d+ \(correlation [+-][01]\.\d\d\)</h3>", text)


def test_the_cli_writes_into_the_run_and_refuses_a_text_it_cannot_read(runner, run_copy, tmp_path):
    result = invoke(runner, ["report", "-r", run_copy])
    assert result.exit_code == 0, result.output
    assert result.stdout == "" and "report.html" in result.stderr
    assert (run_copy / "report.html").read_text(encoding="utf-8").startswith("<!doctype html>")
    missing = invoke(runner, ["report", "-r", run_copy, "--text", tmp_path / "nothing.txt"])
    assert missing.exit_code != 0 and "Traceback" not in missing.output and "not found" in missing.stderr
    unwritable = invoke(runner, ["report", "-r", run_copy, "-o", tmp_path / "no-such-dir" / "r.html"])
    assert_error(unwritable, 2, "could not write the report", "give a writable --output")
    assert not (tmp_path / "no-such-dir").exists()


def _browser():
    for name in BROWSERS:
        if shutil.which(name):
            return shutil.which(name)
    pytest.fail("no Chromium to render the report: install Debian's chromium-headless-shell or chromium (.ci/run does)")


@pytest.mark.slow
def test_chromium_renders_it_without_errors_and_takes_a_screenshot(page, tmp_path):
    path, _ = page
    browser = _browser()
    flags = [browser, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", "--enable-logging=stderr", "--v=0"]
    dom = subprocess.run([*flags, "--dump-dom", path.as_uri()], capture_output=True, text=True, timeout=120)
    assert dom.returncode == 0, dom.stderr[-2000:]
    # The page as the browser built it: the charts' lines and the coloured characters are there.
    assert dom.stdout.count("<polyline") >= 5 and dom.stdout.count("data-s=") > 50
    console = [line for line in dom.stderr.splitlines() if "CONSOLE" in line or "Uncaught" in line]
    assert console == [], console
    shot = tmp_path / "report.png"
    result = subprocess.run([*flags, f"--screenshot={shot}", "--window-size=1200,2200", path.as_uri()],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 20_000
    # For a person to look at: the latest screenshot of the test run (not the one in docs/).
    shutil.copy(shot, tmp_path.parent / "report-screenshot.png")


def _rows(train, val):
    """Metrics rows of evaluations at 1,000 characters apart with these losses."""
    return [{"step": i + 1, "chars_seen": 1000 * i, "elapsed_s": 2.0 * i, "train_loss": t, "val_loss": v,
             "val_loss_carried": v, "learning_rate": 0.002, "chars_per_s": 500.0} for i, (t, v) in enumerate(zip(train, val))]


def _plotted(chart):
    """([(series, [y])], [best circle cy], number of cut marks) of a chart's SVG."""
    lines = [(name, [float(p.split(",")[1]) for p in pts.split()])
             for name, pts in re.findall(r'data-series="([^"]+)" data-points="\d+" points="([^"]+)"', chart)]
    return lines, [float(y) for y in re.findall(r'<circle class=best cx="[^"]+" cy="([^"]+)"', chart)], chart.count("<path class=cut")


@pytest.mark.parametrize("gap", [1.5, 3.0, 10.0])
def test_the_loss_axis_covers_a_validation_loss_far_above_training(gap):
    from charrnn.report import charts, page

    train = [2.0 - 0.1 * i for i in range(10)]
    val = [t + gap + 0.05 * i for i, t in enumerate(train)]  # overfitting: the gap grows
    html_ = page._curves(_rows(train, val), best_step=1)
    for chart in re.findall(r"<svg .*?</svg>", html_)[:2]:  # the two loss charts
        lines, circles, cut = _plotted(chart)
        assert cut == 0 and "above the axis" not in chart
        for name, ys in lines:
            # Inside the plot area, off its edges, and each value at its own height: nothing clamped.
            assert all(charts.TOP < y < charts.HEIGHT - charts.BOTTOM for y in ys), name
            assert len(set(ys)) == len(ys), name
        assert circles and all(charts.TOP < y < charts.HEIGHT - charts.BOTTOM for y in circles)


def test_early_losses_above_the_axis_are_marked_where_they_are_cut():
    from charrnn.report import charts

    train = [4.4] + [1.6 - 0.01 * i for i in range(19)]  # the first loss of a run, then the rest
    series = [("training", "train", [(1000 * i, y) for i, y in enumerate(train)])]
    chart = charts.line_chart("loss", series, charts.compact, y_span=1.0)
    lines, _, cut = _plotted(chart)
    assert cut == 1 and "1 early point above" in chart
    assert all(charts.TOP < y < charts.HEIGHT - charts.BOTTOM for y in lines[0][1][1:])


ESCAPED = "\x1b[31m紅\x1b[0m\r\u202e"


@pytest.fixture(scope="module")
def stdin_run(tmp_path_factory):
    """A run trained on standard input and on a file whose name holds an ESC, both with colour
    codes, CR and a bidirectional override in the text."""
    from charrnn.train import train

    where = tmp_path_factory.mktemp("stdin")
    named = where / "tang\x1b[31m.txt"
    named.write_text(make_text(500).replace(" ", ESCAPED, 40), encoding="utf-8")
    piped = io.BytesIO(make_text(500).replace(" ", ESCAPED, 40).encode())
    train(["-", str(named)], str(where / "run"), dict(TINY_MODEL), dict(TINY_TRAIN), quiet=True, stdin=piped, log=lambda line: None)
    return where / "run"


@pytest.mark.parametrize("text", [None, "-"])
def test_no_control_character_reaches_the_page_and_stdin_is_named(stdin_run, tmp_path, text):
    stdin = io.BytesIO((ESCAPED * 30 + "plain text\n" * 20).encode())
    path, _ = report.build(stdin_run, tmp_path / "r.html", text_path=text, stdin=stdin)
    page = path.read_text(encoding="utf-8")
    bad = {c for c in page if (ord(c) < 0x20 and c not in "\n\t") or 0x7F <= ord(c) <= 0x9F or c in "\u202a\u202b\u202c\u202d\u202e"}
    assert not bad, sorted(bad)
    assert "\\x1b" in page and "\\u202e" in page and "\\r" in page
    facts = html.unescape(re.search(r"<dt>corpus</dt><dd>(.*?)</dd>", page)[1])
    assert facts.startswith("standard input, ") and "tang\\x1b[31m.txt" in facts and ": " in facts
    if text == "-":
        assert "characters of standard input, each coloured" in page


@pytest.mark.slow
def test_chart_text_is_readable_on_a_phone(page, tmp_path):
    # The page as a 390 px wide phone shows it: each chart label's size on the screen, in CSS px.
    _, text = page
    probe = tmp_path / "probe.html"
    measure = ("<script>const s=[...document.querySelectorAll('svg text')].map(t=>parseFloat(getComputedStyle(t).fontSize)"
               "*t.getScreenCTM().a);const p=document.createElement('pre');p.id='sizes';p.textContent=s.join(' ');"
               "document.body.append(p)</script>")
    probe.write_text(text.replace("</body>", measure + "</body>"), encoding="utf-8")
    flags = [_browser(), "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", "--window-size=390,900"]
    dom = subprocess.run([*flags, "--dump-dom", probe.as_uri()], capture_output=True, text=True, timeout=120, check=True)
    sizes = [float(s) for s in re.search(r'<pre id="sizes">([^<]*)</pre>', dom.stdout)[1].split()]
    assert len(sizes) > 20 and min(sizes) >= 12, min(sizes)
