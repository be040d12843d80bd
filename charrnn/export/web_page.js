// The page of a charrnn web export: the run's facts, the form, the streamed text, and the URL
// contract (?seed=ROMEO:&length=200&temperature=0 generates at once into #output, then sets
// data-done="1" on it; data-error too if it could not start).
(function () {
  "use strict";
  const E = window.CharRNNEngine;
  const $ = (id) => document.getElementById(id);
  const model = JSON.parse($("charrnn-model").textContent);
  const rnn = new E.CharRNN(model);
  window.CharRNN = rnn;
  const output = $("output"), status = $("status"), generateButton = $("generate"), stopButton = $("stop");
  const FIELDS = ["seed", "length", "temperature", "topk", "topp", "randomseed"];
  let stopping = false;

  function showFacts() {
    const info = model.info;
    $("name").textContent = E.visible(info.name);
    document.title = E.visible(info.name) + " · charrnn";
    const facts = [
      `${model.cell.toUpperCase()} ${model.units} × ${model.layers}`,
      `vocabulary ${model.vocab.length.toLocaleString("en")}`,
      info.output_layer,
      info.parameters ? `${info.parameters.toLocaleString("en")} parameters` : null,
      `${info.steps.toLocaleString("en")} steps`,
      info.best_loss === null ? "no evaluation yet" : `best validation loss ${info.best_loss.toFixed(4)} nats/char`,
    ];
    for (const fact of facts.filter(Boolean)) $("facts").appendChild(document.createElement("span")).textContent = fact;
  }

  // The options of `raw` (from the form or the URL: text; the engine's defaults for empty ones, a
  // new random seed), or a sentence saying which one cannot be used.
  function validated(raw) {
    let o;
    try {
      o = E.normalise(raw);
    } catch (error) {
      return error.message;
    }
    const unknown = rnn.unknown(o.seed);
    return unknown.length ? new E.SeedError(unknown).message : o;
  }

  // The form's fields (or the URL's parameters) by option.
  const read = (get) => ({ seed: get("seed"), length: get("length"), temperature: get("temperature"), topK: get("topk"), topP: get("topp"), randomSeed: get("randomseed") });

  function begin(seed) {
    $("seed-shown").textContent = E.visible(seed);
    output.textContent = "";
    for (const key of ["done", "error", "stopped", "chars", "ms", "charsPerS"]) delete output.dataset[key];
    $("logits").textContent = "";
    status.textContent = "generating…";
    status.className = "";
  }

  function finish(text, ms, options) {
    const chars = Array.from(text).length;
    const speed = ms > 0 ? Math.round((chars * 1000) / ms) : 0;
    Object.assign(output.dataset, { chars: String(chars), ms: ms.toFixed(1), charsPerS: String(speed) });
    if (stopping) output.dataset.stopped = "1";
    status.textContent = `${stopping ? "stopped after " : ""}${chars.toLocaleString("en")} characters in ${(ms / 1000).toFixed(2)} s` +
      `${speed ? ` (${speed.toLocaleString("en")} per second)` : ""}; random seed ${options.randomSeed}`;
    output.dataset.done = "1";
  }

  function fail(message) {
    status.textContent = message;
    status.className = "error";
    output.dataset.error = message;
    output.dataset.done = "1";
  }

  // The scores after every character fed to reach `text` (the seed or a newline, then each
  // generated character but the last), written as JSON into #logits: for the tests.
  function recordLogits(options, text) {
    const start = options.seed || (rnn.index.has("\n") ? "\n" : "");
    const fed = Array.from(start).concat(Array.from(text).slice(0, -1));
    const rows = [];
    rnn.reset();
    for (const c of fed) rows.push(Array.from(rnn.feed(c).logits()));
    $("logits").textContent = JSON.stringify(rows);
  }

  async function run(options, how = {}) {
    begin(typeof options === "string" ? "" : options.seed);
    if (typeof options === "string") return fail(options);
    stopping = false;
    generateButton.disabled = true;
    stopButton.disabled = false;
    const text = output.appendChild(document.createTextNode(""));
    const started = performance.now();
    let generated;
    try {
      if (how.sync) {
        generated = rnn.generateSync(options);
        text.appendData(E.visible(generated));
      } else {
        generated = await rnn.generate(Object.assign({ onText: (piece) => text.appendData(E.visible(piece)), shouldStop: () => stopping }, options));
      }
    } catch (error) {
      return fail(String(error.message || error));
    } finally {
      generateButton.disabled = false;
      stopButton.disabled = true;
    }
    const ms = performance.now() - started;
    if (how.logits) recordLogits(options, generated);
    finish(generated, ms, options);
  }

  showFacts();
  $("controls").addEventListener("submit", (event) => {
    event.preventDefault();
    run(validated(read((id) => $(id).value)));
  });
  stopButton.addEventListener("click", () => { stopping = true; });
  const params = new URLSearchParams(location.search);
  for (const field of FIELDS) if (params.has(field)) $(field).value = params.get(field);
  if (FIELDS.some((field) => params.has(field))) run(validated(read((id) => params.get(id))), { sync: params.get("sync") === "1", logits: params.get("logits") === "1" });
})();
