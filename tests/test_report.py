"""`charrnn report`: one self-contained page, checked as a person would see it, in a real headless
Chromium (Debian's chromium-headless-shell or chromium; .ci/run installs it when it is missing)."""

import html
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from charrnn import evaltext, evaluate, report
from charrnn.rundir import RunDir
from charrnn.snapshot import Snapshot
from helpers import assert_error, invoke

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
