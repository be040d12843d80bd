"""The web export's arithmetic in Python, for its check at export time: the engine's step
(web_engine.js) on the page's own record, read back from the file, in its layout (transposed
matrices, the biases split) and with its precision (float32 weights, float64 sums). It is checked
against the NumPy sampler as every export is; the page itself is run in a browser when there is one
(web.py)."""

import numpy as np

from charrnn.export import webpage


def _sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


def _log_softmax(z):
    top = z.max()
    return z - (top + np.log(np.exp(z - top).sum()))


class WebReference:
    """The engine's network from a page's record: step(token, state (1, S)) -> (scores, state)."""

    def __init__(self, data):
        self.data = data
        self.cell, self.layers, self.units = data["cell"], data["layers"], data["units"]
        self.a = {name: m.astype(np.float64) for name, m in webpage.read_arrays(data).items()}
        self.per_layer = 2 if self.cell == "lstm" else 1
        self.state_size = self.layers * self.per_layer * self.units

    def matvec(self, name, x, bias=None):
        """The engine's affine(): the (outputs, inputs) matrix `name` times x, plus `bias`."""
        y = self.a[name] @ x
        return y if bias is None else y + self.a[bias][:, 0]

    def step(self, token, state):
        """Feeds one token from the flat state (1, S), laid out as charrnn/cells.py says; returns
        (the next character's scores (vocab,), the new state (1, S))."""
        u = self.units
        rows = np.asarray(state, np.float64).reshape(self.layers * self.per_layer, u).copy()
        x = self.a["embedding"][int(token)]
        for i in range(self.layers):
            name = f"rnn_{i}/"
            p = self.matvec(name + "kernel", x, name + "input_bias")
            h = rows[i * self.per_layer]
            bias = name + "recurrent_bias" if self.cell == "gru" else None
            r = self.matvec(name + "recurrent_kernel", h, bias)
            if self.cell == "lstm":
                c = rows[i * 2 + 1]
                c = _sigmoid(p[u : 2 * u] + r[u : 2 * u]) * c + _sigmoid(p[:u] + r[:u]) * np.tanh(p[2 * u : 3 * u] + r[2 * u : 3 * u])
                h = _sigmoid(p[3 * u :] + r[3 * u :]) * np.tanh(c)
                rows[i * 2 + 1] = c
            elif self.cell == "gru":
                update, reset = _sigmoid(p[:u] + r[:u]), _sigmoid(p[u : 2 * u] + r[u : 2 * u])
                candidate = np.tanh(p[2 * u :] + reset * r[2 * u :])
                h = candidate + update * (h - candidate)
            else:
                h = np.tanh(p + r)
            rows[i * self.per_layer] = h
            x = h
        return self.output(x), rows.reshape(1, -1)

    def output(self, h):
        scores = self.matvec("output/kernel", h, "output/bias")
        tails = self.data["tails"]
        if not tails:
            return scores
        head = _log_softmax(scores)
        first = len(head) - len(tails)
        parts = [head[:first]]
        for i, _ in enumerate(tails):
            name = f"output/tail_{i}/"
            tail = self.matvec(name + "kernel", self.matvec(name + "projection", h), name + "bias")
            parts.append(head[first + i] + _log_softmax(tail))
        return np.concatenate(parts)


def from_page(path):
    """The WebReference of the web export at `path`."""
    return WebReference(webpage.read_record(path.read_text(encoding="utf-8")))
