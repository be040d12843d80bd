"""The web format: one self-contained HTML file (webpage.py) that generates text in the browser,
the network in plain JavaScript (web_engine.js), nothing loaded from anywhere; or, when the output
ends in .js, the same engine and weights as a script that another page loads with <script src>.

Its check: the page's record is read back from the built file and stepped by webref.py, the
engine's arithmetic in Python, against the NumPy sampler; and when a headless Chromium is on
PATH, the page itself is run with ?seed=...&length=200&temperature=0 and its #output compared with
`charrnn sample --argmax`. Without a browser the export still succeeds, and says so.
"""

import html
import subprocess
import urllib.parse
from pathlib import Path

from charrnn.errors import ExportError, UsageError
from charrnn.export import browser, files, verify, webpage, webref
from charrnn.sample import visible

DIRECTORY = False
SIDECAR = False
NEEDS_TENSORFLOW = False
SUFFIXES = (".html", ".htm", ".js")
# How long the browser may take to open the page and generate the check's text.
BROWSER_TIMEOUT_S = 180


def check_name(output):
    """Raises UsageError unless `output` ends in .html or .htm (a browser opening a file from the
    disk takes it for a page only then) or .js (a script)."""
    name = Path(output).name
    if not name.lower().endswith(SUFFIXES) or name.lower() in SUFFIXES:
        raise UsageError(f"a web export's file name must end in .html (a page, e.g. model.html) or .js (a script for another page). Received: --output {output}")


def is_script(path):
    return Path(path).name.lower().endswith(".js")


def build(tf, run, built, staging):
    """Writes the run's page (or script) at `built`."""
    text = webpage.render_script(run) if is_script(built) else webpage.render(run)
    files.write_file(built, text.encode("utf-8"))


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
    page = _script_check_page(built) if is_script(built) else built
    url = browser.page_url(page, seed=ref.seed, length=verify.VERIFY_LENGTH, temperature=0)
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


# A page that loads a script export as another page would and keeps the page's URL contract.
_SCRIPT_CHECK = """<!doctype html><meta charset="utf-8"><pre id="output"></pre>
<script src="{src}"></script>
<script>
const output = document.getElementById("output"), params = new URLSearchParams(location.search);
try {{
  const text = CharRNN.generateSync({{ seed: params.get("seed"), length: Number(params.get("length")), temperature: Number(params.get("temperature")) }});
  output.textContent = CharRNNEngine.visible(text);
}} catch (e) {{
  output.setAttribute("data-error", String(e && e.message || e));
}}
output.setAttribute("data-done", "1");
</script>
"""


def _script_check_page(built):
    """The page, beside the built script in the staging directory, that runs it for the check."""
    page = built.with_name(built.name + ".check.html")
    page.write_text(_SCRIPT_CHECK.format(src=html.escape(urllib.parse.quote(built.name))), encoding="utf-8")
    return page


def _unescaped(text, ref):
    """The page's text mapped back to the characters it shows escaped, where that is unambiguous
    enough for a comparison: the reference's characters that `visible` escapes."""
    for c in set(ref.text):
        escaped = visible(c)[0]
        if escaped != c:
            text = text.replace(escaped, c)
    return text
