// charrnn's network in plain JavaScript: the weights of a charrnn web export stepped one character
// at a time (GRU as Keras's reset_after, LSTM, SimpleRNN; any number of layers; the full or the
// adaptive softmax). The arithmetic is charrnn/numpynet.py's: float32 weights, float64 sums. The
// export stores every matrix transposed, (outputs, inputs) row-major (charrnn/export/webpage.py);
// pack() lays them out for speed when loaded. The draws and the public API: web_engine.js.
(function (global) {
  "use strict";

  function decodeFloats(base64) {
    const bytes = atob(base64);
    const view = new DataView(new ArrayBuffer(bytes.length));
    for (let i = 0; i < bytes.length; i++) view.setUint8(i, bytes.charCodeAt(i));
    const floats = new Float32Array(bytes.length / 4);
    for (let i = 0; i < floats.length; i++) floats[i] = view.getFloat32(4 * i, true);
    return floats;
  }

  // A matrix (rows, cols) row-major and its bias (or none) packed for affine(): the rows in blocks
  // of 8 (the last one padded with zeros), each block stored column by column, so that one pass
  // over the inputs feeds 8 independent sums (measured: three times as fast as a row at a time).
  function pack(w, rows, cols, bias) {
    const blocks = Math.ceil(rows / 8), packed = new Float32Array(blocks * 8 * cols);
    for (let j = 0; j < rows; j++) {
      const block = j >> 3, lane = j & 7;
      for (let k = 0; k < cols; k++) packed[(block * cols + k) * 8 + lane] = w[j * cols + k];
    }
    const b = new Float64Array(blocks * 8);
    if (bias) b.set(bias);
    return { w: packed, b, rows, cols, out: new Float64Array(blocks * 8) };
  }

  // y[j] = b[j] + sum_k m[j, k] x[k], for the packed matrix m; x and y are Float64Arrays.
  function affine(m, x, y) {
    const w = m.w, b = m.b, out = m.out, cols = m.cols, padded = out.length;
    for (let j = 0, a = 0; j < padded; j += 8) {
      let s0 = 0, s1 = 0, s2 = 0, s3 = 0, s4 = 0, s5 = 0, s6 = 0, s7 = 0;
      for (let k = 0; k < cols; k++, a += 8) {
        const xk = x[k];
        s0 += w[a] * xk; s1 += w[a + 1] * xk; s2 += w[a + 2] * xk; s3 += w[a + 3] * xk;
        s4 += w[a + 4] * xk; s5 += w[a + 5] * xk; s6 += w[a + 6] * xk; s7 += w[a + 7] * xk;
      }
      out[j] = b[j] + s0; out[j + 1] = b[j + 1] + s1; out[j + 2] = b[j + 2] + s2; out[j + 3] = b[j + 3] + s3;
      out[j + 4] = b[j + 4] + s4; out[j + 5] = b[j + 5] + s5; out[j + 6] = b[j + 6] + s6; out[j + 7] = b[j + 7] + s7;
    }
    if (y.length === padded) y.set(out);
    else y.set(out.subarray(0, m.rows));
  }

  function logSoftmax(z) {
    let top = -Infinity, total = 0;
    for (let j = 0; j < z.length; j++) if (z[j] > top) top = z[j];
    for (let j = 0; j < z.length; j++) total += Math.exp(z[j] - top);
    const shift = top + Math.log(total);
    for (let j = 0; j < z.length; j++) z[j] -= shift;
  }

  const sigmoid = (x) => 1 / (1 + Math.exp(-x));

  // The network of `model` (the export's JSON record): its layers, output layer and state.
  function Network(model) {
    const floats = decodeFloats(model.weights);
    const array = (name) => {
      const [offset, rows, cols] = model.arrays[name];
      return { w: floats.subarray(offset, offset + rows * cols), rows, cols };
    };
    const matrix = (name, bias) => {
      const m = array(name);
      return pack(m.w, m.rows, m.cols, bias ? array(bias).w : null);
    };
    const u = model.units;
    this.cell = model.cell;
    this.units = u;
    this.vocabSize = model.vocab.length;
    this.embedding = array("embedding");
    this.layers = [];
    for (let i = 0; i < model.layers; i++) {
      const name = "rnn_" + i + "/", kernel = matrix(name + "kernel", name + "input_bias");
      this.layers.push({
        kernel,
        recurrent: matrix(name + "recurrent_kernel", model.cell === "gru" ? name + "recurrent_bias" : null),
        projected: new Float64Array(kernel.rows),
        inner: new Float64Array(kernel.rows),
      });
    }
    // The first layer's input projection of each character (embedding @ kernel + input bias),
    // computed the first time the character is fed.
    this.table = new Array(this.vocabSize).fill(null);
    this.head = matrix("output/kernel", "output/bias");
    this.headScores = new Float64Array(this.head.rows);
    this.tails = (model.tails || []).map((_, i) => {
      const name = "output/tail_" + i + "/";
      const projection = matrix(name + "projection", null), kernel = matrix(name + "kernel", name + "bias");
      return { projection, kernel, projected: new Float64Array(projection.rows), scores: new Float64Array(kernel.rows) };
    });
    this.logits = new Float64Array(this.vocabSize);
    this.reset();
  }

  Network.prototype.reset = function () {
    const perLayer = this.cell === "lstm" ? 2 : 1;
    this.state = this.layers.map(() => Array.from({ length: perLayer }, () => new Float64Array(this.units)));
  };

  Network.prototype.inputRow = function (token) {
    if (this.table[token] === null) {
      const e = this.embedding, row = Float64Array.from(e.w.subarray(token * e.cols, (token + 1) * e.cols));
      const first = this.layers[0], projected = new Float64Array(first.kernel.rows);
      affine(first.kernel, row, projected);
      this.table[token] = projected;
    }
    return this.table[token];
  };

  // Feeds one token; this.logits then holds the next character's scores (logits for the full
  // softmax, log-probabilities for the adaptive one).
  Network.prototype.step = function (token) {
    const u = this.units;
    let x = null;
    this.layers.forEach((layer, i) => {
      const p = i === 0 ? this.inputRow(token) : layer.projected, r = layer.inner, h = this.state[i][0];
      if (i > 0) affine(layer.kernel, x, p);
      affine(layer.recurrent, h, r);
      if (this.cell === "lstm") {
        const c = this.state[i][1];
        for (let j = 0; j < u; j++) {
          const input = sigmoid(p[j] + r[j]), forget = sigmoid(p[u + j] + r[u + j]);
          const candidate = Math.tanh(p[2 * u + j] + r[2 * u + j]), output = sigmoid(p[3 * u + j] + r[3 * u + j]);
          c[j] = forget * c[j] + input * candidate;
          h[j] = output * Math.tanh(c[j]);
        }
      } else if (this.cell === "gru") {
        for (let j = 0; j < u; j++) {
          const update = sigmoid(p[j] + r[j]), reset = sigmoid(p[u + j] + r[u + j]);
          const candidate = Math.tanh(p[2 * u + j] + reset * r[2 * u + j]);
          h[j] = candidate + update * (h[j] - candidate);
        }
      } else {
        for (let j = 0; j < u; j++) h[j] = Math.tanh(p[j] + r[j]);
      }
      x = h;
    });
    this.output(x);
  };

  Network.prototype.output = function (h) {
    if (this.tails.length === 0) {
      affine(this.head, h, this.logits);
      return;
    }
    const head = this.headScores, first = head.length - this.tails.length;
    affine(this.head, h, head);
    logSoftmax(head);
    this.logits.set(head.subarray(0, first));
    let start = first;
    this.tails.forEach((tail, i) => {
      affine(tail.projection, h, tail.projected);
      affine(tail.kernel, tail.projected, tail.scores);
      logSoftmax(tail.scores);
      for (let c = 0; c < tail.scores.length; c++) this.logits[start + c] = head[first + i] + tail.scores[c];
      start += tail.scores.length;
    });
  };


  global.CharRNNEngine = Object.assign(global.CharRNNEngine || {}, { Network, logSoftmax });
})(typeof window !== "undefined" ? window : globalThis);
