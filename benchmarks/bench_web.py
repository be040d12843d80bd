"""bench.py's `web` section: the default run exported as one web page (`charrnn export --format
web`), its size, and its generation in the headless Chromium the tests use.

    python benchmarks/bench.py --only web --run-dir RUN

Per page: its size (target: at most 3 MB), the export's wall time (the build, the Python check and
the page run once in the browser), the characters per second the page itself reports for
gen_length characters at temperature 1, streaming as a person sees it (the text shown as it
comes, the browser's clock real: driven over the DevTools protocol, not --virtual-time-budget,
under which the page's clock is virtual; target: at least 5,000), the same with ?sync=1 (the
engine alone: no turns of the event loop, no text shown until the end), and whether its argmax
text is `charrnn sample --argmax`'s.
"""

import json
import os
import statistics
import subprocess
import tempfile
import time

import bench

ARGMAX_LENGTH = 200  # as the export's own check (charrnn/export/verify.py)


def bench_web(b):
    from charrnn.export import browser

    run_dir = b.run_to_sample()
    page = b.work_dir / "web" / "page.html"
    page.parent.mkdir(parents=True, exist_ok=True)
    bench.log(f"web: exporting {run_dir} to {page}")
    start = time.monotonic()
    result = bench.in_fresh_process(export_page, str(run_dir), str(page))
    export_s = time.monotonic() - start
    found = browser.find_browser()
    figures = {"page": str(page), "bytes": result["size_bytes"], "export_s": export_s, "note": result["note"], "browser": found}
    b.add("web", "page size, default model", round(result["size_bytes"] / 1e6, 3), "MB", key="web_size",
          note=f"{result['vocab_size']} characters, state {result['state_size']}")
    b.add("web", "`charrnn export --format web` wall time", round(export_s, 2), "s", note=result["note"])
    if found is None:
        b.add("web", "generation in headless Chromium", None, "chars/s", key="web_chars_per_s", note="no headless Chromium on PATH")
        b.details["web"] = figures
        return
    length, repeats = b.durations["gen_length"], b.durations["gen_repeats"]
    bench.log(f"web: {length:,} characters in the page, {repeats} times streaming and {repeats} times with ?sync=1")
    streaming = [streaming_speed(found, browser.page_url(page, length=length, temperature=1, randomseed=seed)) for seed in range(repeats)]
    engine = [page_speed(browser, found, page, length, seed) for seed in range(repeats)]
    figures["streaming_chars_per_s"], figures["sync_chars_per_s"] = streaming, engine
    b.add("web", f"generation in headless Chromium, {length:,} chars at temperature 1", round(statistics.median(streaming)),
          "chars/s", key="web_chars_per_s", note=f"the page's own timing, streaming, real clock; median of {repeats}")
    b.add("web", "the same, the engine alone (?sync=1: nothing shown until the end)", round(statistics.median(engine)), "chars/s",
          note=f"median of {repeats}")
    same = argmax_matches(b, browser, found, page, run_dir)
    figures["argmax_identical"] = same
    b.add("web", f"page's argmax text ({ARGMAX_LENGTH} chars) = `charrnn sample --argmax`", int(same), "1 = yes", key="web_argmax")
    b.details["web"] = figures


def export_page(run_dir, page):
    """Exports the run as a web page (a fresh process: bench.in_fresh_process); the result as a dict."""
    import dataclasses

    from charrnn.export import export

    return dataclasses.asdict(export(run_dir, "web", page, force=True))


def page_speed(browser, found, page, length, random_seed):
    """The characters per second the page reports for `length` characters at temperature 1."""
    url = browser.page_url(page, length=length, temperature=1, randomseed=random_seed, sync=1)
    dom = browser.run_page(found, url, timeout=600, virtual_time=False).stdout
    attrs, _ = browser.element(dom, "output")
    if not attrs or attrs.get("data-done") != "1" or "data-error" in attrs:
        raise RuntimeError(f"the page did not generate: {attrs}")
    return int(attrs["data-chars-per-s"])


def streaming_speed(found, url, timeout=600):
    """The characters per second the page reports when opened at `url` in `found` driven over the
    DevTools protocol (--remote-debugging-pipe), so that its clock is real, streaming as usual."""
    done = "(() => { const o = document.getElementById('output'); return o && o.dataset.done ? Object.assign({}, o.dataset) : null; })()"
    with tempfile.TemporaryDirectory(prefix="charrnn-bench-browser-") as profile, DevTools(found, profile) as tools:
        session = tools.page_session()
        tools.send("Page.navigate", {"url": url}, session)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            reply = tools.send("Runtime.evaluate", {"expression": done, "returnByValue": True}, session)
            found_attrs = reply.get("result", {}).get("result", {}).get("value")
            if found_attrs:
                if "error" in found_attrs:
                    raise RuntimeError(f"the page did not generate: {found_attrs['error']}")
                return int(found_attrs["charsPerS"])
            time.sleep(0.05)
    raise RuntimeError(f"the page did not finish within {timeout} s")


class DevTools:
    """A headless browser spoken to over --remote-debugging-pipe: JSON messages ending in a NUL,
    commands on its descriptor 3, replies and events on its descriptor 4."""

    def __init__(self, browser, profile):
        to_browser, self._commands = os.pipe()
        self._replies, from_browser = os.pipe()

        def descriptors():  # in the browser's process, before it starts
            first, second = os.dup(to_browser), os.dup(from_browser)
            os.dup2(first, 3)
            os.dup2(second, 4)

        self.proc = subprocess.Popen(
            [browser, "--headless", "--no-sandbox", "--disable-gpu", f"--user-data-dir={profile}", "--remote-debugging-pipe", "about:blank"],
            close_fds=False, preexec_fn=descriptors, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        os.close(to_browser)
        os.close(from_browser)
        self._next, self._buffer = 0, b""

    def send(self, method, params=None, session=None):
        """Sends one command; returns its reply (events before it are dropped)."""
        self._next += 1
        message = {"id": self._next, "method": method, "params": params or {}, **({"sessionId": session} if session else {})}
        os.write(self._commands, json.dumps(message).encode() + b"\0")
        while True:
            while b"\0" not in self._buffer:
                chunk = os.read(self._replies, 1 << 16)
                if not chunk:
                    raise RuntimeError("the browser closed its DevTools pipe")
                self._buffer += chunk
            line, self._buffer = self._buffer.split(b"\0", 1)
            reply = json.loads(line)
            if reply.get("id") == self._next:
                return reply

    def page_session(self):
        """A session attached to the browser's first page."""
        targets = self.send("Target.getTargets")["result"]["targetInfos"]
        page = next(t for t in targets if t["type"] == "page")
        return self.send("Target.attachToTarget", {"targetId": page["targetId"], "flatten": True})["result"]["sessionId"]

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        try:
            self.send("Browser.close")
            self.proc.wait(30)
        except (OSError, RuntimeError, subprocess.TimeoutExpired):
            self.proc.kill()
            self.proc.wait()
        finally:
            os.close(self._commands)
            os.close(self._replies)


def argmax_matches(b, browser, found, page, run_dir):
    """Whether the page's argmax text after a newline is `charrnn sample --argmax`'s."""
    sampled = subprocess.run([*b.charrnn, "sample", "-r", str(run_dir), "--argmax", "--length", str(ARGMAX_LENGTH)],
                             capture_output=True, text=True, check=True).stdout
    url = browser.page_url(page, seed="", length=ARGMAX_LENGTH, temperature=0)
    _, text = browser.element(browser.run_page(found, url, timeout=600).stdout, "output")
    return text + "\n" == sampled
