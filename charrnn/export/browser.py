"""Running a web export in a headless Chromium, when one is installed: finding it, opening the page
with a query (?seed=...&temperature=0) and reading back the DOM it built. Export's check, the tests
and the benchmark use it."""

import shutil
import subprocess
import tempfile
import urllib.parse
from html.parser import HTMLParser
from pathlib import Path

# The headless Chromium commands looked for on PATH, in this order.
BROWSERS = ("chromium-headless-shell", "chromium", "chromium-browser")
# Virtual time only passes while the page is idle, so this budget never makes a run wait: it is
# how long a page that keeps scheduling work may run before the DOM is read regardless.
VIRTUAL_TIME_MS = 3_600_000


def find_browser():
    """The path of the first of BROWSERS on PATH, or None."""
    for name in BROWSERS:
        found = shutil.which(name)
        if found:
            return found
    return None


def page_url(path, **query):
    """The file: URL of the page at `path` with the query `query` (values made text)."""
    text = urllib.parse.urlencode({k: str(v) for k, v in query.items()}, quote_via=urllib.parse.quote)
    return Path(path).resolve().as_uri() + ("?" + text if text else "")


def run_page(browser, url, timeout, *, dump=True, virtual_time=True, extra=()):
    """Opens `url` in `browser` headless; returns the CompletedProcess (stdout: the DOM when `dump`).
    Without `virtual_time` the DOM is read when the page has loaded (for ?sync=1 runs, whose
    clocks are then real). Raises subprocess.TimeoutExpired after `timeout` seconds."""
    with tempfile.TemporaryDirectory(prefix="charrnn-browser-") as profile:
        command = [
            browser, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-extensions",
            "--hide-scrollbars", f"--user-data-dir={profile}", "--enable-logging=stderr", "--v=0", *extra,
        ]
        if virtual_time:
            command.append(f"--virtual-time-budget={VIRTUAL_TIME_MS}")
        if dump:
            command.append("--dump-dom")
        return subprocess.run([*command, url], capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL)


def console_errors(stderr):
    """The page's console messages and uncaught errors among the browser's log lines."""
    return [line for line in stderr.splitlines() if "CONSOLE" in line or "Uncaught" in line]


class _Finder(HTMLParser):
    """Collects the attributes and the text of the element with a given id."""

    def __init__(self, wanted):
        super().__init__(convert_charrefs=True)
        self.wanted, self.depth, self.attrs, self.parts = wanted, 0, None, []

    def handle_starttag(self, tag, attrs):
        if self.depth:
            self.depth += 1
        elif dict(attrs).get("id") == self.wanted and self.attrs is None:
            self.attrs, self.depth = dict(attrs), 1

    def handle_endtag(self, tag):
        if self.depth:
            self.depth -= 1

    def handle_data(self, data):
        if self.depth:
            self.parts.append(data)


def element(dom, wanted):
    """(attributes, text) of the element with id `wanted` in the HTML `dom`, or (None, "")."""
    finder = _Finder(wanted)
    finder.feed(dom)
    finder.close()
    return finder.attrs, "".join(finder.parts)
