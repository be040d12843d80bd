"""The web format: one self-contained HTML file (webpage.py) that generates text in the browser,
the network in plain JavaScript (web_engine.js), nothing loaded from anywhere.

Its check: the page's record is read back from the built file and stepped by webref.py, the
engine's arithmetic in Python, against the NumPy sampler; and when a headless Chromium is on
PATH, the page itself is run with ?seed=...&length=200&temperature=0 and its #output compared with
`charrnn sample --argmax`. Without a browser the export still succeeds, and says so.
"""

import subprocess
from pathlib import Path

from charrnn.errors import ExportError, UsageError
from charrnn.export import browser, files, verify, webpage, webref
from charrnn.sample import visible

DIRECTORY = False
SIDECAR = False
NEEDS_TENSORFLOW = False
SUFFIXES = (".html", ".htm")
# How long the browser may take to open the page and generate the check's text.
BROWSER_TIMEOUT_S = 180


def check_name(output):
    """Raises UsageError unless `output` ends in .html or .htm: a browser opening a file from the
    disk takes it for a page only then."""
    name = Path(output).name
    if not name.lower().endswith(SUFFIXES) or name.lower() in SUFFIXES:
        raise UsageError(f"a web export's file name must end in .html, e.g. model.html. Received: --output {output}")


def build(tf, run, built, staging):
    """Writes the run's page at `built`."""
    files.write_file(built, webpage.render(run).encode("utf-8"))


def replay(tf, run, built, ref):
    """Steps the page's record with the engine's arithmetic in Python; returns (its argmax text,
    its teacher-forced scores)."""
    try:
        net = webref.from_page(built)
    except (OSError, ValueError, KeyError) as e:
        raise ExportError(f"could not read back {built.name}: {e}; please report this as a bug") from None
    return verify.argmax_text(net.step, run, ref), verify.teacher_forced(net.step, run, ref)


def check_more(run, built, ref, logits):
    """Runs the built page in a headless Chromium, if there is one, and checks its argmax text as
    verify.check does (`logits`: the reference arithmetic's, for telling a near tie). Returns (the
    browser's path or None, a phrase for the export's result)."""
    found = browser.find_browser()
    if found is None:
        names = f"{', '.join(browser.BROWSERS[:-1])} or {browser.BROWSERS[-1]}"
        return None, f"the page was not run in a browser (no headless Chromium on PATH: {names}); its arithmetic was checked in Python"
    url = browser.page_url(built, seed=ref.seed, length=verify.VERIFY_LENGTH, temperature=0)
    name = Path(found).name
    try:
        result = browser.run_page(found, url, BROWSER_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        raise ExportError(f"the page did not finish generating in {name} within {BROWSER_TIMEOUT_S} s; please report this as a bug") from None
    except OSError as e:
        return None, f"the page was not run in a browser ({name} could not start: {e.strerror or e})"
    attrs, text = browser.element(result.stdout, "output")
    if attrs is None:
        last = (result.stderr.strip().splitlines() or ["no output"])[-1][:200]
        return None, f"the page was not run in a browser ({name} exited with {result.returncode}: {last})"
    if attrs.get("data-done") != "1" or "data-error" in attrs:
        raise ExportError(f"the page did not generate in {name}: {attrs.get('data-error', 'it never finished')}; please report this as a bug")
    # The page shows control characters escaped, as `charrnn sample` does on a terminal.
    expected = visible(ref.text[len(ref.seed) :])[0]
    shown = text if text == expected else _unescaped(text, ref)
    verify.check(f"web (in {name})", run, ref, ref.seed + shown, logits)
    return found, f"the page run in {name} gave the same text"


def _unescaped(text, ref):
    """The page's text mapped back to the characters it shows escaped, where that is unambiguous
    enough for a comparison: the reference's characters that `visible` escapes."""
    for c in set(ref.text):
        escaped = visible(c)[0]
        if escaped != c:
            text = text.replace(escaped, c)
    return text
