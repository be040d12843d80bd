"""The web export's file: the run's weights laid out for the JavaScript engine (web_network.js,
web_engine.js) and the page (web_page.html, web_page.js) they are inlined into, or the script
(NAME.js) another page loads; and reading that record back.

The record, a JSON object inside <script type="application/json" id="charrnn-model"> (a page) or
the argument of CharRNNEngine.register(...) on the script's last line (a script):

    format      "charrnn-web 1"
    cell, layers, units, embedding_dim, output_layer, tails    as the run's settings say
    vocab       the characters in index order; counts: how often each occurs in the corpus (or null)
    info        what the page shows: name, steps, best_loss (nats/char or null), parameters,
                output_layer (in words)
    arrays      {name: [offset, rows, cols]}: where each matrix is in `weights`, in floats
    weights     base64 of every array's float32 values, little-endian, one after the other

Every matrix is stored transposed, (outputs, inputs) row-major: rnn_{i}/kernel (gates * units,
inputs), rnn_{i}/recurrent_kernel (gates * units, units), output/kernel (head, units), each tail's
projection (dim, units) and kernel (size, dim); the gate blocks in charrnn/cells.py's order. A
layer's bias is rnn_{i}/input_bias (and, for GRU, rnn_{i}/recurrent_bias); vectors are (n, 1).
"""

import base64
import html
import json
import re
from importlib import resources
from pathlib import Path

import numpy as np

from charrnn import cells, softmax
from charrnn.sample import visible

FORMAT = "charrnn-web 1"
_MODEL_SCRIPT = re.compile(r'<script type="application/json" id="charrnn-model">(.*?)</script>', re.S)
_REGISTER = "\nCharRNNEngine.register("
_SLOT = re.compile(r"\{\{(\w+)\}\}")


def asset(name):
    """The text of one of the page's files shipped in charrnn/export (web_network.js, ...)."""
    return resources.files("charrnn.export").joinpath(name).read_text(encoding="utf-8")


def js_arrays(cfg, weights):
    """{name: 2-D float32 array} in the engine's layout (see the module's docstring)."""
    arrays = {"embedding": weights["embedding"]}
    for i in range(cfg.layers):
        kernel, recurrent, bias = cells.layer_weights(weights, i)
        input_bias, recurrent_bias = cells.split_bias(cfg.model, bias)
        name = cells.layer_name(i)
        arrays[f"{name}/kernel"] = kernel.T
        arrays[f"{name}/recurrent_kernel"] = recurrent.T
        arrays[f"{name}/input_bias"] = input_bias
        if recurrent_bias is not None:
            arrays[f"{name}/recurrent_bias"] = recurrent_bias
    for name in softmax.weight_shapes(cfg):
        arrays[name] = weights[name].T if weights[name].ndim == 2 else weights[name]
    return {name: np.asarray(a, np.float32).reshape(a.shape[0], -1) for name, a in arrays.items()}


def record(run):
    """The JSON record of the run `run` (a Snapshot) that the page's engine reads."""
    cfg, arrays = run.cfg, js_arrays(run.cfg, run.weights)
    layout, offset = {}, 0
    for name, a in arrays.items():
        layout[name] = [offset, *a.shape]
        offset += a.size
    blob = np.concatenate([a.ravel() for a in arrays.values()]).astype("<f4").tobytes()
    best = run.best()
    return {
        "format": FORMAT,
        "cell": cfg.model, "layers": cfg.layers, "units": cfg.units, "embedding_dim": cfg.embedding_dim,
        "output_layer": cfg.output_layer, "tails": [list(t) for t in cfg.tails],
        "vocab": run.vocab.index_to_char,
        "counts": run.vocab.counts,
        "info": {
            "name": record_name(run),
            "steps": run.step,
            "best_loss": None if best is None else round(float(best.val_loss), 4),
            "parameters": run.settings.parameters,
            "output_layer": softmax.describe(cfg),
        },
        "arrays": layout,
        "weights": base64.b64encode(blob).decode("ascii"),
    }


def render(run):
    """The whole page for the run `run` (a Snapshot), as text."""
    slots = {
        "title": html.escape(visible(record_name(run))[0]) + " · charrnn",
        "model": _record_text(run),
        "engine": engine(),
        "page": asset("web_page.js"),
    }
    # One pass: what is put into a slot is never searched for slots itself.
    return _SLOT.sub(lambda m: slots[m.group(1)], asset("web_page.html"))


def render_script(run):
    """The script for the run `run`: the engine, then the model registered with it."""
    header = "// A charrnn web export: the network's engine, then the model (see the README's \"Share a model as a web page\").\n"
    return header + engine() + _REGISTER + _record_text(run) + ");\n"


def engine():
    return asset("web_network.js") + "\n" + asset("web_engine.js")


def _record_text(run):
    data = json.dumps(record(run), ensure_ascii=False, separators=(",", ":"))
    # Inside a <script> element nothing may read as a closing tag: "<" only occurs in strings.
    return data.replace("<", "\\u003c")


def record_name(run):
    """The run directory's name: what the page is titled."""
    return Path(run.run.path).resolve().name


def read_record(text):
    """The JSON record inside a web export's text (a page or a script); ValueError if there is none."""
    found = _MODEL_SCRIPT.search(text)
    if found is not None:
        return json.loads(found.group(1))
    start = text.rfind(_REGISTER)
    if start < 0 or not text.endswith(");\n"):
        raise ValueError("no charrnn-model record in the file")
    return json.loads(text[start + len(_REGISTER) : -3])


def read_arrays(data):
    """{name: float32 array (rows, cols)} of a record, as the engine reads them."""
    floats = np.frombuffer(base64.b64decode(data["weights"]), "<f4")
    return {name: floats[offset : offset + rows * cols].reshape(rows, cols) for name, (offset, rows, cols) in data["arrays"].items()}
