// The public face of a charrnn web export's network (web_network.js): the draws (temperature,
// top-k, top-p) from a seeded generator, generation streamed with turns of the event loop, and
// the per-step feed / probabilities / predict of ml5's CharRNN. See the README's "Share a model
// as a web page".
(function (global) {
  "use strict";
  const { Network, logSoftmax } = global.CharRNNEngine;

  // A generator of uniform numbers in [0, 1) from a 32-bit seed (mulberry32).
  function seededRandom(seed) {
    let a = seed >>> 0;
    return function () {
      a = (a + 0x6d2b79f5) >>> 0;
      let t = Math.imul(a ^ (a >>> 15), 1 | a);
      t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
      return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
    };
  }

  // What a terminal would act on, written as its escape (as `charrnn sample` shows it): ESC as
  // \x1b, CR as \r, U+202E as \u202e. Newlines and tabs are left as they are.
  const CONTROL = /[\x00-\x08\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]/g;
  function visible(text) {
    return text.replace(CONTROL, (c) => {
      const code = c.charCodeAt(0);
      if (c === "\r") return "\\r";
      return code < 0x100 ? "\\x" + code.toString(16).padStart(2, "0") : "\\u" + code.toString(16).padStart(4, "0");
    });
  }

  // The index of the largest value (the first of equal ones, as NumPy's argmax).
  function argmax(z) {
    let best = 0;
    for (let j = 1; j < z.length; j++) if (z[j] > z[best]) best = j;
    return best;
  }

  // One draw from softmax(logits / temperature), restricted to the topK largest and to the topP
  // nucleus as charrnn/generation.py restricts them; argmax at temperature 0.
  function choose(logits, temperature, topK, topP, random) {
    if (!(temperature > 0) || !isFinite(1 / temperature)) return argmax(logits);
    const n = logits.length, z = new Float64Array(n);
    for (let j = 0; j < n; j++) z[j] = logits[j] / temperature;
    if (topK && topK < n) {
      const kth = Float64Array.from(z).sort()[n - topK];
      for (let j = 0; j < n; j++) if (z[j] < kth) z[j] = -Infinity;
    }
    const top = z[argmax(z)];
    if (topP && topP < 1) {
      const order = Array.from(z.keys()).sort((a, b) => z[b] - z[a]);
      let total = 0;
      for (let j = 0; j < n; j++) total += Math.exp(z[j] - top);
      let before = 0;
      for (const j of order) {
        const p = Math.exp(z[j] - top);
        if (before > topP * total) z[j] = -Infinity;
        before += p;
      }
    }
    let total = 0;
    for (let j = 0; j < n; j++) total += Math.exp(z[j] - top);
    let u = random() * total;
    for (let j = 0; j < n; j++) {
      const p = Math.exp(z[j] - top);
      if (p > 0 && (u -= p) < 0) return j;
    }
    return argmax(z);
  }

  // Gives the event loop a turn without setTimeout's 4 ms clamp.
  function pause() {
    return new Promise((resolve) => {
      const channel = new MessageChannel();
      channel.port1.onmessage = () => { channel.port1.close(); resolve(); };
      channel.port2.postMessage(0);
    });
  }

  function randomSeed() {
    return global.crypto ? global.crypto.getRandomValues(new Uint32Array(1))[0] : Math.floor(Math.random() * 4294967296);
  }

  // The model's public face: generate, and the per-step feed / probabilities / predict (as ml5's
  // CharRNN). See the README's "Share a model as a web page".
  function CharRNN(model) {
    this.model = model;
    this.info = model.info;
    this.chars = model.vocab;
    this.index = new Map(model.vocab.map((c, i) => [c, i]));
    this.net = new Network(model);
    this.ready = false; // true once a character has been fed: the scores are those after it
  }

  CharRNN.prototype.reset = function () {
    this.net.reset();
    this.ready = false;
    return this;
  };

  // The characters of `text` the model never saw, each once, in order.
  CharRNN.prototype.unknown = function (text) {
    return Array.from(new Set(Array.from(text))).filter((c) => !this.index.has(c));
  };

  CharRNN.prototype.feed = function (text) {
    const unknown = this.unknown(text);
    if (unknown.length) throw new SeedError(unknown);
    for (const c of text) this.feedIndex(this.index.get(c));
    return this;
  };

  CharRNN.prototype.feedIndex = function (token) {
    this.net.step(token);
    this.ready = true;
  };

  CharRNN.prototype.logits = function () {
    if (!this.ready) throw new Error("feed a character first");
    return Float64Array.from(this.net.logits);
  };

  // [{char, probability}] for every character, in vocabulary order, at temperature 1.
  CharRNN.prototype.probabilities = function () {
    const z = this.logits();
    logSoftmax(z);
    return this.chars.map((char, i) => ({ char, probability: Math.exp(z[i]) }));
  };

  // The next character drawn from the current scores (not fed): {sample, probabilities}.
  CharRNN.prototype.predict = function (options = {}) {
    const random = options.random || seededRandom(options.randomSeed ?? randomSeed());
    const token = choose(this.logits(), options.temperature ?? 1, options.topK, options.topP, random);
    return { sample: this.chars[token], probabilities: this.probabilities() };
  };

  // The characters after a seed, as generation.generate draws them. Yields each character's
  // index; `random` draws the first character from the corpus's frequencies when there is no
  // seed and no newline to start after.
  CharRNN.prototype.tokens = function* (options) {
    const o = normalise(options);
    const random = seededRandom(o.randomSeed);
    this.reset();
    if (o.seed) this.feed(o.seed);
    else if (this.index.has("\n")) this.feedIndex(this.index.get("\n"));
    for (let i = 0; i < o.length; i++) {
      const token = this.ready ? choose(this.net.logits, o.temperature, o.topK, o.topP, random) : firstDraw(this.model, random);
      yield token;
      if (i + 1 < o.length) this.feedIndex(token);
    }
  };

  // Generates without yielding to the event loop; returns the text after the seed.
  CharRNN.prototype.generateSync = function (options) {
    const out = [];
    for (const token of this.tokens(options)) out.push(this.chars[token]);
    return out.join("");
  };

  // Generates, giving the event loop a turn every `every` characters (or 15 ms); resolves to the
  // text after the seed. options.onText(piece) gets the text as it comes, at most every 100 ms
  // (a page's layout at every turn cost a fifth of the speed); options.shouldStop() returning
  // true ends it early.
  CharRNN.prototype.generate = async function (options = {}) {
    const every = options.every || 48, out = [];
    let shown = 0, count = 0, since = performance.now(), sinceText = since;
    const flush = () => {
      if (shown < out.length && options.onText) options.onText(out.slice(shown).join(""));
      shown = out.length;
    };
    for (const token of this.tokens(options)) {
      out.push(this.chars[token]);
      if (++count >= every || performance.now() - since > 15) {
        const now = performance.now();
        count = 0;
        if (now - sinceText >= 100) {
          flush();
          sinceText = now;
        }
        await pause();
        since = performance.now();
        if (options.shouldStop && options.shouldStop()) break;
      }
    }
    flush();
    return out.join("");
  };

  const DEFAULTS = { seed: "", length: 500, temperature: 0.8, topK: null, topP: null, randomSeed: null };

  // The options of a generation with their defaults (an option left out, null or "" takes its
  // default; no random seed: a new one); RangeError for one no draw can use.
  function normalise(options = {}) {
    const get = (key) => (options[key] === undefined || options[key] === null || options[key] === "" ? DEFAULTS[key] : options[key]);
    const o = { seed: String(get("seed")), length: Number(get("length")), temperature: Number(get("temperature")) };
    o.topK = get("topK") === null ? null : Number(get("topK"));
    o.topP = get("topP") === null ? null : Number(get("topP"));
    o.randomSeed = get("randomSeed") === null ? randomSeed() : Number(get("randomSeed"));
    if (!Number.isInteger(o.length) || o.length < 0) throw new RangeError("length must be a whole number, 0 or more");
    if (!(o.temperature >= 0 && isFinite(o.temperature))) throw new RangeError("temperature must be a finite number, 0 or more");
    if (o.topK !== null && !(Number.isInteger(o.topK) && o.topK >= 1)) throw new RangeError("top-k must be a positive whole number");
    if (o.topP !== null && !(o.topP > 0 && o.topP <= 1)) throw new RangeError("top-p must be more than 0 and at most 1");
    if (!(Number.isInteger(o.randomSeed) && o.randomSeed >= 0 && o.randomSeed < 4294967296)) throw new RangeError("the random seed must be a whole number from 0 to 4294967295");
    return o;
  }

  function firstDraw(model, random) {
    const counts = model.counts || model.vocab.map(() => 1);
    let u = random() * counts.reduce((a, b) => a + b, 0);
    for (let i = 0; i < counts.length; i++) if ((u -= counts[i]) < 0) return i;
    return counts.length - 1;
  }

  function SeedError(unknown) {
    this.name = "SeedError";
    this.unknown = unknown;
    const shown = unknown.slice(0, 10).map((c) => "'" + visible(c) + "'").join(", ");
    this.message = "the seed has characters the model never saw: " + shown + "; use only characters from the training text";
  }
  SeedError.prototype = Object.create(Error.prototype);

  // A model of a script export (export --format web -o NAME.js): kept in CharRNNEngine.models under
  // its run's name, and window.CharRNN too unless another model took it first.
  const models = {};
  function register(model) {
    const rnn = new CharRNN(model);
    models[model.info.name] = rnn;
    if (!global.CharRNN) global.CharRNN = rnn;
    return rnn;
  }

  Object.assign(global.CharRNNEngine, { CharRNN, SeedError, choose, normalise, seededRandom, visible, models, register });
})(typeof window !== "undefined" ? window : globalThis);
