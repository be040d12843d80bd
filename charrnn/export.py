"""Export formats, each verified by loading it back: SavedModel, TFLite and Keras.

All three compute the NumPy sampler's recurrent step (charrnn/sample.py). The recurrent state of
the whole network is one float32 vector of S = layers * units * (2 for LSTM, else 1) numbers: the
layers in order, each its h (and then c, for LSTM), `units` numbers each.

    savedmodel  a directory for tf.saved_model.load / TF Serving; the vocabulary is inside it.
                Signatures: generate(seed, length, temperature, random_seed) -> text, and
                step(token [1], state [1, S]) -> logits [1, vocab_size], state [1, S].
    tflite      FILE (e.g. model.tflite) with the signature `step` above, TFLite built-in ops only,
                and beside it STEM.vocab.json: the characters in index order and state_size.
    keras       FILE.keras for keras.models.load_model (safe mode): inputs tokens (batch, time)
                and each layer's state, outputs logits (batch, time, vocab_size) and the new states;
                beside it STEM.vocab.json as for tflite.

Each export is built in a temporary directory next to its destination, loaded back, and compared
with the NumPy sampler on the same weights (argmax text and logits) before it is moved into place.
"""

import contextlib
import json
import os
import shutil
import sys
import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from charrnn import sample
from charrnn.backend import import_tensorflow, verbose
from charrnn.config import ModelConfig
from charrnn.errors import CharRNNError, UsageError

FORMATS = ("savedmodel", "tflite", "keras")
# The verification generates this many characters with the export and with the NumPy sampler.
VERIFY_LENGTH = 200
# Logits may differ by this much (relative to the largest logit, at least 1) from the NumPy step's.
LOGIT_TOLERANCE = 1e-4


class ExportError(CharRNNError):
    """An export could not be written, or does not reproduce the run."""


@dataclass
class ExportResult:
    format: str
    path: str  # the export: a directory (savedmodel) or a file
    vocab_path: str | None  # the vocabulary file beside it (tflite, keras)
    size_bytes: int  # of the export itself (all files of a SavedModel)
    state_size: int  # S: the length of the state vector
    vocab_size: int
    verified_chars: int  # characters of argmax text compared with the NumPy sampler
    max_logit_diff: float  # largest difference from the NumPy step's logits


@dataclass
class Run:
    """What an export needs from a run directory."""

    cfg: ModelConfig
    vocab: object  # charrnn.vocab.Vocab
    weights: dict  # {name: array}, names as in charrnn/model.py
    net: sample.NumpyRNN  # the reference the export is checked against

    @property
    def state_size(self):
        return self.cfg.layers * self.cfg.units * (2 if self.cfg.model == "lstm" else 1)

    def state_layout(self):
        parts = ("h", "c") if self.cfg.model == "lstm" else ("h",)
        return [f"rnn_{i}/{p}" for i in range(self.cfg.layers) for p in parts]


def load_run(run_dir, which="best"):
    """Reads a run's settings, vocabulary and weights (`which`: best or latest). Raises RunDirError."""
    net, vocab, cfg = sample.load(run_dir, which)
    weights = {k: np.asarray(v, np.float32) for k, v in net.weights.items()}
    return Run(cfg, vocab, weights, net)


def export(run_dir, format, output, force=False, which="best"):
    """Exports the run in `run_dir` to `output` in `format` (savedmodel, tflite or keras); returns an
    ExportResult. Raises ExportError (or RunDirError, UsageError) with a one-line message."""
    functions = {"savedmodel": export_savedmodel, "tflite": export_tflite, "keras": export_keras}
    if format not in functions:
        raise UsageError(f"format must be one of {', '.join(FORMATS)}. Received: format={format!r}")
    return functions[format](run_dir, output, force=force, which=which)


def export_savedmodel(run_dir, output, force=False, which="best"):
    """Writes a SavedModel directory at `output` with the signatures `generate` and `step`."""
    run = load_run(run_dir, which)
    output = _check_output(output, force, directory=True)
    tf = import_tensorflow()
    with _staging(output) as staging:
        built = staging / output.name
        module = _tf_module(tf, run, with_generate=True)
        signatures = {"generate": module.generate.get_concrete_function(), "step": module.step.get_concrete_function()}
        _tf_call(lambda: tf.saved_model.save(module, str(built), signatures=signatures), "save the SavedModel")
        ref = _reference(run)
        loaded = tf.saved_model.load(str(built))
        generate, step = loaded.signatures["generate"], loaded.signatures["step"]
        text = generate(
            seed=tf.constant(ref.seed), length=tf.constant(VERIFY_LENGTH, tf.int32),
            temperature=tf.constant(0.0), random_seed=tf.constant(0, tf.int64),
        )["text"].numpy().decode()

        def step_fn(token, state):
            out = step(token=tf.constant([token], tf.int32), state=tf.constant(state))
            return out["logits"].numpy()[0], out["state"].numpy()

        diff = _verify("savedmodel", run, ref, text, _teacher_forced(step_fn, run.state_size, ref.fed))
        _move_into_place(built, output)
    return _result("savedmodel", run, output, None, diff)


def export_tflite(run_dir, output, force=False, which="best"):
    """Writes a TFLite model at `output` with the signature `step` (built-in ops only), and the
    vocabulary file STEM.vocab.json beside it."""
    run = load_run(run_dir, which)
    output = _check_output(output, force, directory=False)
    vocab_path = _check_sidecar(run, output, force)
    tf = import_tensorflow()
    with _staging(output) as staging:
        module = _tf_module(tf, run, with_generate=False)
        step_model = staging / "step-savedmodel"
        _tf_call(
            lambda: tf.saved_model.save(module, str(step_model), signatures={"step": module.step.get_concrete_function()}),
            "save the step function",
        )
        converter = tf.lite.TFLiteConverter.from_saved_model(str(step_model), signature_keys=["step"])
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
        flatbuffer = _tf_call(converter.convert, "convert the model to TFLite")
        built = staging / output.name
        _write_file(built, flatbuffer)

        with _quiet():
            interpreter = tf.lite.Interpreter(model_path=str(built))
            runner = interpreter.get_signature_runner("step")
            # The first call sets up the XNNPACK delegate, which announces itself on stderr.
            runner(token=np.zeros([1], np.int32), state=np.zeros((1, run.state_size), np.float32))

        def step_fn(token, state):
            out = runner(token=np.array([token], np.int32), state=state)
            return out["logits"][0], out["state"]

        ref = _reference(run)
        text = ref.seed + _argmax_text(step_fn, run, ref.prime, VERIFY_LENGTH)
        diff = _verify("tflite", run, ref, text, _teacher_forced(step_fn, run.state_size, ref.fed))
        _write_sidecar(run, vocab_path, staging)
        _move_into_place(built, output)
    return _result("tflite", run, output, vocab_path, diff)


def export_keras(run_dir, output, force=False, which="best"):
    """Writes a .keras model at `output` (inputs: tokens and each layer's state; outputs: logits and
    the new states) and the vocabulary file STEM.vocab.json beside it."""
    run = load_run(run_dir, which)
    if not str(output).endswith(".keras"):
        raise UsageError(f"a Keras export's file name must end in .keras. Received: --output {output}")
    output = _check_output(output, force, directory=False)
    vocab_path = _check_sidecar(run, output, force)
    import_tensorflow()
    import keras

    with _staging(output) as staging:
        built = staging / output.name
        model = _keras_step_model(keras, run)
        _tf_call(lambda: model.save(str(built)), "save the Keras model")
        loaded = keras.models.load_model(str(built), safe_mode=True, compile=False)
        call = _compiled(loaded)
        layout = _keras_state_layout(run)

        def step_fn(token, state):
            outputs = call([np.array([[token]], np.int32), *_split_state(state, layout)])
            return outputs[0].numpy()[0, -1], np.concatenate([s.numpy() for s in outputs[1:]], axis=1)

        ref = _reference(run)
        text = ref.seed + _argmax_text(step_fn, run, ref.prime, VERIFY_LENGTH)
        # The whole reference sequence in one call, as the training model would see it.
        zero = np.zeros((1, run.state_size), np.float32)
        outputs = call([np.array([ref.fed], np.int32), *_split_state(zero, layout)])
        diff = _verify("keras", run, ref, text, outputs[0].numpy()[0])
        _write_sidecar(run, vocab_path, staging)
        _move_into_place(built, output)
    return _result("keras", run, output, vocab_path, diff)


def _result(format, run, output, vocab_path, max_logit_diff):
    return ExportResult(
        format, str(output), None if vocab_path is None else str(vocab_path), _size(output), run.state_size,
        run.vocab.vocab_size, VERIFY_LENGTH, max_logit_diff,
    )


def vocab_path_for(output):
    """The vocabulary file written beside a tflite or keras export: model.tflite -> model.vocab.json."""
    output = Path(output)
    return output.with_name(output.stem + ".vocab.json")


# --- the network in TensorFlow ops ----------------------------------------------------------------


def _tf_module(tf, run, with_generate):
    """A tf.Module with the one-step function `step` and, if asked, the generation loop `generate`."""
    cfg, vocab, w = run.cfg, run.vocab, run.weights
    size, vocab_size = run.state_size, vocab.vocab_size
    module = tf.Module()
    module.embedding = tf.Variable(w["embedding"], trainable=False, name="embedding")
    module.layers = []
    for i in range(cfg.layers):
        bias = w[f"rnn_{i}/bias"]
        input_bias, recurrent_bias = (bias[0], bias[1]) if cfg.model == "gru" else (bias, np.zeros_like(bias))
        module.layers.append([
            tf.Variable(w[f"rnn_{i}/kernel"], trainable=False, name=f"rnn_{i}_kernel"),
            tf.Variable(w[f"rnn_{i}/recurrent_kernel"], trainable=False, name=f"rnn_{i}_recurrent_kernel"),
            tf.Variable(input_bias, trainable=False, name=f"rnn_{i}_bias"),
            tf.Variable(recurrent_bias, trainable=False, name=f"rnn_{i}_recurrent_bias"),
        ])
    module.output_kernel = tf.Variable(w["output/kernel"], trainable=False, name="output_kernel")
    module.output_bias = tf.Variable(w["output/bias"], trainable=False, name="output_bias")

    def cell(token, state):
        """token (1,) int32, state (1, S) -> logits (1, vocab_size), state (1, S)."""
        x = tf.gather(module.embedding, token)  # (1, embedding_dim)
        per_layer = 2 if cfg.model == "lstm" else 1
        parts = tf.split(state, per_layer * cfg.layers, axis=1)
        new_state = []
        for i, (kernel, recurrent, input_bias, recurrent_bias) in enumerate(module.layers):
            h = parts[per_layer * i]
            projected = tf.matmul(x, kernel) + input_bias  # (1, gates * units)
            if cfg.model == "lstm":
                z = projected + tf.matmul(h, recurrent)
                i_gate, f_gate, candidate, o_gate = tf.split(z, 4, axis=1)
                c = tf.sigmoid(f_gate) * parts[2 * i + 1] + tf.sigmoid(i_gate) * tf.tanh(candidate)
                h = tf.sigmoid(o_gate) * tf.tanh(c)
                new_state += [h, c]
            elif cfg.model == "gru":
                inner = tf.matmul(h, recurrent) + recurrent_bias
                x_z, x_r, x_h = tf.split(projected, 3, axis=1)
                h_z, h_r, h_h = tf.split(inner, 3, axis=1)
                update, reset = tf.sigmoid(x_z + h_z), tf.sigmoid(x_r + h_r)
                candidate = tf.tanh(x_h + reset * h_h)
                h = update * h + (1.0 - update) * candidate
                new_state.append(h)
            else:
                h = tf.tanh(projected + tf.matmul(h, recurrent))
                new_state.append(h)
            x = h
        logits = tf.matmul(x, module.output_kernel) + module.output_bias
        return logits, tf.concat(new_state, axis=1)

    @tf.function(input_signature=[
        tf.TensorSpec([1], tf.int32, name="token"), tf.TensorSpec([1, size], tf.float32, name="state"),
    ])
    def step(token, state):
        logits, state = cell(token, state)
        return {"logits": tf.identity(logits, name="logits"), "state": tf.identity(state, name="state")}

    module.step = step
    if not with_generate:
        return module

    # The vocabulary: code points in index order, and sorted (with their indices) for encoding.
    codepoints = np.array([ord(c) for c in vocab.index_to_char], np.int32)
    order = np.argsort(codepoints, kind="stable").astype(np.int32)
    module.index_to_char = tf.Variable(vocab.index_to_char, trainable=False, name="index_to_char")
    module.codepoints = tf.Variable(codepoints, trainable=False, name="codepoints")
    module.sorted_codepoints = tf.Variable(codepoints[order], trainable=False, name="sorted_codepoints")
    module.sorted_indices = tf.Variable(order, trainable=False, name="sorted_indices")
    module.state_size = tf.Variable(size, trainable=False, name="state_size")
    newline = vocab.char_to_index.get("\n")
    # Without a seed the network is primed with a newline, as `charrnn sample` does; a corpus with
    # no newline starts from a character drawn from the corpus's character frequencies instead.
    counts = np.asarray(vocab.counts if vocab.counts else np.ones(vocab_size), np.float64)
    module.count_logits = tf.Variable(np.log(np.maximum(counts, 1e-30))[None].astype(np.float32), trainable=False)

    @tf.function(input_signature=[
        tf.TensorSpec([], tf.string, name="seed"), tf.TensorSpec([], tf.int32, name="length"),
        tf.TensorSpec([], tf.float32, name="temperature"), tf.TensorSpec([], tf.int64, name="random_seed"),
    ])
    def generate(seed, length, temperature, random_seed):
        values = tf.strings.unicode_decode(seed, "UTF-8")  # (n,) code points; invalid UTF-8 raises
        positions = tf.minimum(tf.searchsorted(module.sorted_codepoints, values), vocab_size - 1)
        known = tf.equal(tf.gather(module.sorted_codepoints, positions), values)
        unknown = tf.strings.unicode_encode(tf.boolean_mask(values, tf.logical_not(known)), "UTF-8")
        checks = [
            tf.debugging.Assert(tf.reduce_all(known), [
                "the seed has characters the model never saw:", unknown, "use only characters from the training text",
            ]),
            tf.debugging.assert_non_negative(length, message="length must be 0 or more"),
            tf.debugging.assert_non_negative(temperature, message="temperature must be 0 or more (0 is argmax)"),
        ]
        with tf.control_dependencies(checks):
            tokens = tf.gather(module.sorted_indices, positions)
            length = tf.identity(length)
        no_seed = tf.equal(tf.size(tokens), 0)
        if newline is not None:
            tokens = tf.cond(no_seed, lambda: tf.constant([newline], tf.int32), lambda: tokens)
        first_from_counts = tf.logical_and(no_seed, newline is None)

        def prime(i, logits, state):
            logits, state = cell(tf.reshape(tokens[i], [1]), state)
            return i + 1, logits, state

        _, logits, state = tf.while_loop(
            lambda i, *_: i < tf.size(tokens), prime,
            (tf.constant(0), module.count_logits, tf.zeros([1, size])),
        )

        def next_char(i, logits, state, chosen):
            first = tf.logical_and(first_from_counts, tf.equal(i, 0))
            t = tf.where(first, 1.0, temperature)
            token = tf.cond(
                t > 0,
                lambda: tf.random.stateless_categorical(
                    logits / t, 1, seed=tf.stack([random_seed, tf.cast(i, tf.int64)]), dtype=tf.int32,
                )[:, 0],
                lambda: tf.argmax(logits, axis=1, output_type=tf.int32),
            )
            chosen = chosen.write(i, token[0])
            logits, state = cell(token, state)
            return i + 1, logits, state, chosen

        _, _, _, chosen = tf.while_loop(
            lambda i, *_: i < length, next_char,
            (tf.constant(0), logits, state, tf.TensorArray(tf.int32, size=length)),
        )
        new_text = tf.strings.unicode_encode(tf.gather(module.codepoints, chosen.stack()), "UTF-8")
        return {"text": seed + new_text}

    module.generate = generate
    return module


def _keras_state_layout(run):
    """The Keras model's state inputs, in order: (name, width)."""
    return [(name.replace("/", "_"), run.cfg.units) for name in run.state_layout()]


def _keras_step_model(keras, run):
    """A Keras model with the run's weights: [tokens (batch, time), *states (batch, units)] ->
    [logits (batch, time, vocab_size), *new states]. Built from stock layers only, so it loads in
    safe mode with no custom objects."""
    cfg, w = run.cfg, run.weights
    layer_types = {"lstm": keras.layers.LSTM, "gru": keras.layers.GRU, "rnn": keras.layers.SimpleRNN}
    tokens = keras.Input(shape=(None,), dtype="int32", name="tokens")
    state_inputs = [keras.Input(shape=(width,), dtype="float32", name=name) for name, width in _keras_state_layout(run)]
    per_layer = len(state_inputs) // cfg.layers
    embedding = keras.layers.Embedding(cfg.vocab_size, cfg.embedding_dim, name="embedding")
    x = embedding(tokens)
    rnn_layers, state_outputs = [], []
    for i in range(cfg.layers):
        layer = layer_types[cfg.model](cfg.units, return_sequences=True, return_state=True, name=f"rnn_{i}")
        x, *states = layer(x, initial_state=state_inputs[per_layer * i : per_layer * (i + 1)])
        rnn_layers.append(layer)
        state_outputs += states
    dense = keras.layers.Dense(cfg.vocab_size, name="output")
    logits = dense(x)
    model = keras.Model([tokens, *state_inputs], [logits, *state_outputs], name="charrnn_step")
    embedding.set_weights([w["embedding"]])
    for i, layer in enumerate(rnn_layers):
        layer.set_weights([w[f"rnn_{i}/kernel"], w[f"rnn_{i}/recurrent_kernel"], w[f"rnn_{i}/bias"]])
    dense.set_weights([w["output/kernel"], w["output/bias"]])
    return model


def _compiled(model):
    tf = import_tensorflow()
    return tf.function(lambda inputs: model(inputs, training=False), reduce_retracing=True)


def _split_state(state, layout):
    bounds = np.cumsum([width for _, width in layout])[:-1]
    return np.split(np.asarray(state, np.float32), bounds, axis=1)


def _tf_call(fn, what):
    """Runs a TensorFlow save or convert step, turning its failure into one ExportError line."""
    try:
        return fn()
    except OSError as e:
        raise ExportError(f"could not {what}: {e.strerror or e}; check the output directory's permissions and free space") from None
    except Exception as e:  # TensorFlow raises many types here; show the first line of its message
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ExportError(f"could not {what}: {first}") from e


# --- verification ---------------------------------------------------------------------------------


@dataclass
class _Reference:
    seed: str
    prime: list  # the tokens fed before the first new character (the seed, or a newline)
    text: str  # seed + VERIFY_LENGTH argmax characters from the NumPy sampler
    fed: list  # prime + the new characters but the last: every token the network is fed
    logits: np.ndarray  # (len(fed), vocab_size): the NumPy step's logits after each fed token


def _reference(run):
    """The NumPy sampler's argmax text from a fixed seed, and its logits along the way."""
    vocab = run.vocab
    if "\n" in vocab.char_to_index:
        seed, prime = "", [vocab.char_to_index["\n"]]
    else:
        # No newline to start after: start from the most frequent character.
        counts = vocab.counts or [1] * vocab.vocab_size
        seed = vocab.index_to_char[int(np.argmax(counts))]
        prime = [vocab.char_to_index[seed]]
    text = sample.sample_text(run.net, vocab, seed, VERIFY_LENGTH, temperature=0.0)[0]
    fed = prime + [vocab.char_to_index[c] for c in text[len(seed) :]][:-1]
    state = run.net.initial_state(1)
    logits = []
    for token in fed:
        step_logits, state = run.net.step(np.array([token]), state)
        logits.append(step_logits[0])
    return _Reference(seed, prime, text, fed, np.array(logits, np.float32))


def _teacher_forced(step_fn, state_size, tokens):
    """Feeds `tokens` through step_fn(token, state) -> (logits, state); returns (len, vocab_size)."""
    state = np.zeros((1, state_size), np.float32)
    rows = []
    for token in tokens:
        logits, state = step_fn(int(token), state)
        rows.append(np.asarray(logits))
    return np.array(rows, np.float32)


def _argmax_text(step_fn, run, prime, length):
    """The `length` characters step_fn generates by argmax after the `prime` tokens."""
    state = np.zeros((1, run.state_size), np.float32)
    for token in prime:
        logits, state = step_fn(token, state)
    chosen = []
    for i in range(length):
        token = int(np.argmax(logits))
        chosen.append(token)
        if i + 1 < length:
            logits, state = step_fn(token, state)
    return run.vocab.decode(chosen)


def _verify(name, run, ref, text, logits):
    """Checks an export's argmax text and teacher-forced logits against the reference; returns the
    largest logit difference. Raises ExportError on a mismatch.

    Texts may part where the reference's two most likely characters are within the logit tolerance:
    there float rounding, not a bug, decides the argmax (the logits are still checked all along).
    """
    scale = max(1.0, float(np.abs(ref.logits).max()))
    tolerance = LOGIT_TOLERANCE * scale
    if logits.shape != ref.logits.shape or not np.all(np.isfinite(logits)):
        raise ExportError(f"the {name} export does not reproduce the run: its logits have shape {logits.shape}, expected {ref.logits.shape}")
    diff = float(np.abs(logits - ref.logits).max())
    if diff > tolerance:
        raise ExportError(
            f"the {name} export does not reproduce the run: its logits differ from the NumPy sampler's by {diff:.2g} "
            f"(tolerance {tolerance:.2g}); please report this as a bug"
        )
    if text != ref.text:
        at = next((i for i, (a, b) in enumerate(zip(text, ref.text)) if a != b), min(len(text), len(ref.text)))
        row = len(ref.prime) - 1 + (at - len(ref.seed))
        near_tie = 0 <= row < len(ref.logits) and len(text) == len(ref.text) and _top_gap(ref.logits[row]) <= tolerance
        if not near_tie:
            raise ExportError(
                f"the {name} export does not reproduce the run: its argmax text differs from `charrnn sample --argmax` "
                f"at character {at - len(ref.seed)} ({text[at:at + 10]!r} instead of {ref.text[at:at + 10]!r}); please report this as a bug"
            )
    return diff


def _top_gap(row):
    top = np.sort(row)[-2:]
    return float(top[1] - top[0]) if len(top) == 2 else np.inf


# --- files ----------------------------------------------------------------------------------------


def _check_output(output, force, directory):
    """Returns `output` as a Path after checking it may be written; raises ExportError if not."""
    output = Path(output)
    if output.name in ("", ".", ".."):
        raise UsageError(f"--output must name a file or directory to create. Received: {output}")
    if output.exists() or output.is_symlink():
        if not force:
            raise ExportError(f"{output} already exists; pass --force to replace it, or choose another --output")
        if directory:
            replaceable = output.is_dir() and (not any(output.iterdir()) or (output / "saved_model.pb").exists())
            if not replaceable:
                raise ExportError(f"{output} exists and is not a SavedModel; --force replaces only a SavedModel, so choose another --output")
        elif output.is_dir():
            raise ExportError(f"{output} is a directory; choose a file name for --output")
    return output


def _check_sidecar(run, output, force):
    """The vocabulary file's path; refused if it exists with other content, unless `force`."""
    path = vocab_path_for(output)
    if path.exists() and not force:
        try:
            same = path.read_text(encoding="utf-8") == _sidecar_text(run)
        except (OSError, UnicodeDecodeError):
            same = False
        if not same:
            raise ExportError(f"{path} already exists (from another export); pass --force to replace it, or choose another --output")
    if path.is_dir():
        raise ExportError(f"{path} is a directory; choose another --output")
    return path


def _sidecar_text(run):
    """The vocabulary file of tflite and keras exports: the run's vocab.json fields plus the state."""
    vocab = run.vocab
    data = {
        "vocab_size": vocab.vocab_size,
        "index_to_char": vocab.index_to_char,
        "state_size": run.state_size,
        "state_layout": run.state_layout(),  # each `units` numbers wide, in this order
        "model": run.cfg.model,
        "layers": run.cfg.layers,
        "units": run.cfg.units,
    }
    if vocab.counts is not None:
        data["counts"] = vocab.counts
    return json.dumps(data, ensure_ascii=False, indent=1) + "\n"


def _write_sidecar(run, path, staging):
    built = staging / path.name
    _write_file(built, _sidecar_text(run).encode())
    _move_into_place(built, path)


def _write_file(path, data):
    try:
        with open(path, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
    except OSError as e:
        raise ExportError(f"could not write {path}: {e.strerror or e}; check the directory's permissions and free space") from None


@contextlib.contextmanager
def _staging(output):
    """A temporary directory next to `output` (same file system, so a rename moves it in place);
    removed afterwards with whatever is left in it."""
    parent = output.parent
    if parent.exists() and not parent.is_dir():
        raise ExportError(f"{parent} is not a directory; choose another --output")
    try:
        parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{output.name}.export-", dir=parent))
    except OSError as e:
        raise ExportError(f"cannot write to {parent}: {e.strerror or e}; choose another --output") from None
    try:
        yield staging
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _move_into_place(built, output):
    """Renames `built` to `output`; an existing output is replaced (the caller checked --force)."""
    try:
        if built.is_dir() and output.exists():
            # A directory cannot be swapped in one rename: move the old one aside first.
            old = output.with_name(f".{output.name}.old-{os.getpid()}")
            os.rename(output, old)
            os.rename(built, output)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(built, output)
    except OSError as e:
        raise ExportError(f"could not write {output}: {e.strerror or e}; check the directory's permissions") from None


@contextlib.contextmanager
def _quiet():
    """Hides the TFLite interpreter's deprecation warning and its C++ notices on stderr (file
    descriptor 2), unless CHARRNN_VERBOSE is set."""
    if verbose():
        yield
        return
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "w") as devnull, warnings.catch_warnings():
            warnings.simplefilter("ignore")
            os.dup2(devnull.fileno(), 2)
            yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def _size(path):
    path = Path(path)
    if path.is_dir():
        return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
    return path.stat().st_size
