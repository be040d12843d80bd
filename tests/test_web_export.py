"""The web export: one HTML page whose JavaScript steps the network. Runs of every cell, one and two
layers, the full and the adaptive softmax (random weights written with NumPy: no TensorFlow), and
the trained GRU run; the page run in the real headless Chromium that CI installs, its text and its
scores at every step compared with the NumPy sampler."""

import json
import re
import subprocess
import sys

import numpy as np
import pytest

from charrnn import cells, snapshot
from charrnn.config import ModelConfig, TrainConfig
from charrnn.errors import UsageError
from charrnn.export import browser, export, webpage, webref
from charrnn.rundir import Best, RunDir, Settings
from charrnn.sample import visible
from charrnn.state import TrainState
from charrnn.vocab import Vocab
from helpers import invoke

# 16 characters: a newline to start after, CJK, one outside the BMP, and ESC (shown escaped).
CHARS = ["\n", " ", "a", "b", "c", "d", "e", "f", "g", "h", "é", "中", "文", "🙂", "<", "\x1b"]
ADAPTIVE = [[7, 3], [5, 2]]  # head of 4, tails of 7 and 5
SEED = "a中🙂 <"
LENGTH = 60
TOLERANCE = 1e-4
CASES = [  # (cell, layers, output layer); the first is in the quick subset
    ("gru", 2, "adaptive"),
    pytest.param("gru", 1, "full", marks=pytest.mark.slow),
    pytest.param("lstm", 1, "adaptive", marks=pytest.mark.slow),
    pytest.param("lstm", 2, "full", marks=pytest.mark.slow),
    pytest.param("rnn", 1, "full", marks=pytest.mark.slow),
    pytest.param("rnn", 2, "adaptive", marks=pytest.mark.slow),
]


def write_run(path, cfg, chars=CHARS, seed=0):
    """A run directory with random weights for `cfg` (biases too), as training would leave it."""
    rng = np.random.default_rng(seed)
    weights = {name: rng.normal(0, 0.6, shape).astype(np.float32) for name, shape in cells.weight_shapes(cfg).items()}
    run = RunDir(path)
    path.mkdir(parents=True)
    corpus = {"files": [{"path": "corpus.txt", "bytes": 100, "sha256": "ab" * 32}], "chars": 100, "train_chars": 90, "val_chars": 10, "vocab_size": len(chars)}
    parameters = sum(int(np.prod(s)) for s in cells.weight_shapes(cfg).values())
    run.settings.write(Settings(cfg, TrainConfig(), corpus, {"numpy": np.__version__}, parameters, {"workers": 1}))
    run.vocab.write(Vocab(chars, list(range(len(chars), 0, -1))))
    run.checkpoint.save(weights, [], TrainState(step=7, epoch=1))
    run.best.save(weights, Best(step=7, val_loss=2.25))
    return path


def model_cfg(cell, layers, output_layer, vocab_size=len(CHARS)):
    tails = ADAPTIVE if output_layer == "adaptive" else []
    return ModelConfig(model=cell, layers=layers, units=6, embedding_dim=3, vocab_size=vocab_size, output_layer=output_layer, tails=tails)


def chromium():
    found = browser.find_browser()
    if found is None:
        pytest.fail("no headless Chromium to run the page: install Debian's chromium-headless-shell or chromium (.ci/run does)")
    return found


def open_page(path, **query):
    """The DOM the page built when opened with `query`; no console errors on the way."""
    result = browser.run_page(chromium(), browser.page_url(path, **query), timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    assert browser.console_errors(result.stderr) == []
    return result.stdout


def numpy_scores(run_dir, fed):
    """The NumPy sampler's scores after each character of `fed`."""
    net, vocab, _ = snapshot.network(run_dir)
    state, rows = net.initial_state(1), []
    for token in vocab.encode(fed):
        logits, state = net.step(np.array([token]), state)
        rows.append(logits[0])
    return np.array(rows)


def numpy_argmax(run_dir, seed, length):
    from charrnn import generation

    net, vocab, _ = snapshot.network(run_dir)
    return generation.sample_text(net, vocab, seed, length, temperature=0.0)[0][len(seed) :]


@pytest.fixture(scope="module")
def page_of(tmp_path_factory):
    """The exported page of a random-weight run of each case, made when a test first asks."""
    pages = {}

    def get(cell, layers, output_layer):
        key = (cell, layers, output_layer)
        if key not in pages:
            root = tmp_path_factory.mktemp(f"web-{cell}-{layers}-{output_layer}")
            run_dir = write_run(root / "run", model_cfg(*key))
            result = export(run_dir, "web", root / "page.html")
            pages[key] = run_dir, root / "page.html", result
        return pages[key]

    return get


@pytest.mark.parametrize("cell, layers, output_layer", CASES)
def test_the_page_generates_what_numpy_does_with_its_scores(page_of, cell, layers, output_layer):
    run_dir, page, result = page_of(cell, layers, output_layer)
    assert result.browser is not None and "gave the same text" in result.note
    dom = open_page(page, seed=SEED, length=LENGTH, temperature=0, logits=1)
    attrs, text = browser.element(dom, "output")
    assert attrs["data-done"] == "1" and "data-error" not in attrs
    expected = numpy_argmax(run_dir, SEED, LENGTH)
    assert text == visible(expected)[0]  # the seed not included; ESC shown as \x1b
    assert int(attrs["data-chars"]) == LENGTH
    # The scores after every character fed: the seed's, then each generated one but the last.
    _, logits = browser.element(dom, "logits")
    scores = np.array(json.loads(logits))
    reference = numpy_scores(run_dir, SEED + expected[:-1])
    assert scores.shape == reference.shape == (len(SEED) + LENGTH - 1, len(CHARS))
    assert np.abs(scores - reference).max() < TOLERANCE
    # The export's Python reference of the same arithmetic agrees too.
    net = webref.from_page(page)
    state = np.zeros((1, net.state_size))
    for token, row in zip(snapshot.network(run_dir)[1].encode(SEED), reference):
        out, state = net.step(token, state)
        assert np.abs(out - row).max() < TOLERANCE


def test_the_trained_runs_page_equals_sample_argmax(trained_run, tmp_path, runner):
    page = tmp_path / "poems.html"
    export(trained_run, "web", page)
    seed = "the "
    sampled = invoke(runner, ["sample", "-r", trained_run, "--seed", seed, "--length", "200", "--argmax"])
    assert sampled.exit_code == 0, sampled.output
    attrs, text = browser.element(open_page(page, seed=seed, length=200, temperature=0), "output")
    assert attrs["data-done"] == "1"
    assert seed + text + "\n" == sampled.stdout


def test_draws_follow_the_random_seed_top_k_and_top_p(page_of, tmp_path):
    """The engine driven through window.CharRNN by a test page: the same random seed gives the same
    text, top-k 1 and a tiny top-p give the argmax text, and the probabilities sum to 1."""
    _, page, _ = page_of("gru", 2, "adaptive")
    script = """<script>(async () => {
    const r = window.CharRNN, seed = "a", n = 80, results = {};
    results.a = r.generateSync({seed, length: n, temperature: 1, randomSeed: 5});
    results.b = r.generateSync({seed, length: n, temperature: 1, randomSeed: 5});
    results.c = r.generateSync({seed, length: n, temperature: 1, randomSeed: 6});
    results.argmax = r.generateSync({seed, length: n, temperature: 0});
    results.topk = r.generateSync({seed, length: n, temperature: 2, topK: 1, randomSeed: 1});
    results.topp = r.generateSync({seed, length: n, temperature: 2, topP: 1e-9, randomSeed: 1});
    results.sum = r.reset().feed("ab").probabilities().reduce((s, p) => s + p.probability, 0);
    results.predicted = r.predict({temperature: 0}).sample;
    results.top = r.probabilities().reduce((a, b) => (b.probability > a.probability ? b : a)).char;
    const pieces = [];
    results.streamed = await r.generate({seed, length: n, temperature: 1, randomSeed: 5, every: 8, onText: (p) => pieces.push(p)});
    results.pieces = pieces.join("");
    results.stopped = Array.from(await r.generate({seed, length: 1000, every: 8, shouldStop: () => true})).length;
    document.getElementById("output").textContent = JSON.stringify(results);
    })();</script></body>"""
    harness = tmp_path / "harness.html"
    harness.write_text(page.read_text(encoding="utf-8").replace("</body>", script), encoding="utf-8")
    found = json.loads(browser.element(open_page(harness), "output")[1])
    assert found["a"] == found["b"] != found["c"]
    assert len(found["a"]) >= 80  # characters outside the BMP are two UTF-16 units
    assert found["topk"] == found["topp"] == found["argmax"]
    assert abs(found["sum"] - 1) < 1e-9
    assert found["predicted"] == found["top"]
    assert found["streamed"] == found["pieces"] == found["a"]  # streaming draws as generateSync does
    assert found["stopped"] == 8  # Stop ends it at the next turn of the event loop


@pytest.mark.parametrize("query, message", [
    ({"seed": "aZ", "length": 10}, "never saw: 'Z'"),
    ({"length": -1}, "length must be a whole number"),
    ({"temperature": "hot"}, "temperature must be a finite number"),
    ({"topp": 2}, "top-p must be more than 0"),
])
def test_what_the_page_cannot_use_is_named_in_it(page_of, query, message):
    _, page, _ = page_of("gru", 2, "adaptive")
    attrs, text = browser.element(open_page(page, **query), "output")
    assert attrs["data-done"] == "1" and text == ""
    assert message in attrs["data-error"]


def test_the_page_loads_nothing_from_anywhere(page_of):
    _, page, _ = page_of("gru", 2, "adaptive")
    text = page.read_text(encoding="utf-8")
    assert "http://" not in text and "https://" not in text
    for call in ("fetch(", "XMLHttpRequest", "import(", "importScripts", "WebSocket", "EventSource", "sendBeacon"):
        assert call not in text, call
    assert not re.search(r"\b(src|href|action)\s*=", text)
    assert not re.search(r"<(link|img|iframe|object|embed)\b", text)
    # And the browser would refuse any load: the page's policy allows only its inline parts.
    assert "default-src 'none'" in text


def test_the_default_models_page_is_under_3_mb(tmp_path):
    cfg = ModelConfig(model="gru", layers=1, units=256, embedding_dim=64, vocab_size=65)
    chars = [chr(32 + i) for i in range(64)] + ["\n"]
    run = snapshot.Snapshot.load(write_run(tmp_path / "run", cfg, chars))
    size = len(webpage.render(run).encode("utf-8"))
    parameters = sum(int(np.prod(s)) for s in cells.weight_shapes(cfg).values())
    assert parameters == 268_161
    assert 4 * parameters * 4 / 3 < size < 4 * parameters * 4 / 3 + 100_000 < 3_000_000


def test_without_a_browser_the_export_succeeds_and_says_so(tmp_path, monkeypatch):
    run_dir = write_run(tmp_path / "run", model_cfg("lstm", 1, "full"))
    monkeypatch.setattr(browser, "find_browser", lambda: None)
    result = export(run_dir, "web", tmp_path / "m.html")
    assert result.browser is None and "not run in a browser" in result.note
    assert result.verified_chars == 200 and result.max_logit_diff < TOLERANCE
    assert (tmp_path / "m.html").is_file()


def test_the_export_imports_no_tensorflow(tmp_path):
    run_dir = write_run(tmp_path / "run", model_cfg("rnn", 1, "full"))
    code = (
        "import sys; from charrnn.export import export; from charrnn.export import browser; "
        "browser.find_browser = lambda: None; "
        f"export({str(run_dir)!r}, 'web', {str(tmp_path / 'm.html')!r}); print('tensorflow' in sys.modules)"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "False"


SCRIPT_USER = """<!doctype html><meta charset="utf-8"><pre id="output"></pre>
<script src="model.js"></script>
<script>
const rnn = CharRNNEngine.models["run"];
const text = rnn.generateSync({ seed: SEED, length: 40, temperature: 0 });
rnn.reset().feed(SEED);
const p = rnn.probabilities();
const total = p.reduce((a, x) => a + x.probability, 0);
document.getElementById("output").textContent = JSON.stringify({ text, same: window.CharRNN === rnn, chars: p.map((x) => x.char), total, next: rnn.predict({ temperature: 0 }).sample });
</script>
"""


def test_a_script_export_is_used_by_another_page(tmp_path):
    """export -o model.js: a page of one's own loads it with <script src> (from the file system, as
    a person would) and drives the model through the API; the export checked the script itself."""
    run_dir = write_run(tmp_path / "run", model_cfg("lstm", 2, "adaptive"))
    result = export(run_dir, "web", tmp_path / "model.js")
    assert result.browser is not None and "same text" in result.note
    assert not list(tmp_path.glob("*.check.html")) and not list(tmp_path.glob(".*"))
    assert "<html" not in (tmp_path / "model.js").read_text(encoding="utf-8")
    user = tmp_path / "user.html"
    user.write_text(SCRIPT_USER.replace("SEED", json.dumps(SEED)), encoding="utf-8")
    attrs, shown = browser.element(open_page(user), "output")
    got = json.loads(shown)
    expected = numpy_argmax(run_dir, SEED, 40)
    assert got["text"] == expected and got["same"] is True
    assert got["chars"] == CHARS and abs(got["total"] - 1) < 1e-9
    assert got["next"] == expected[0]


@pytest.mark.parametrize("fmt, name, fragment", [
    ("web", "model.txt", "must end in .html"),
    ("web", ".html", "must end in .html"),
    ("tflite", "model.html", "the web format's"),
    ("keras", "model.js", "the web format's"),
])
def test_a_name_that_does_not_fit_is_refused(tmp_path, fmt, name, fragment):
    run_dir = write_run(tmp_path / "run", model_cfg("gru", 1, "full"))
    with pytest.raises(UsageError, match=fragment):
        export(run_dir, fmt, tmp_path / name)
    assert not (tmp_path / name).exists()
