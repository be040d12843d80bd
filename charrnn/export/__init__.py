"""Export formats, each verified by loading it back: SavedModel, TFLite, Keras and a web page.

All four compute the NumPy network's recurrent step (charrnn/numpynet.py). The recurrent state of
the whole network is one float32 vector of S numbers, laid out as charrnn/cells.py says
(`state_size`, `state_layout`): the layers in order, each its h (and then c, for LSTM).

    savedmodel  a directory for tf.saved_model.load / TF Serving; the vocabulary is inside it.
                Signatures: generate(seed, length, temperature, random_seed) -> text,
                step(token [1], state [1, S]) -> logits [1, vocab_size], state [1, S], and
                vocab() -> index_to_char [vocab_size], state_size, ... (what STEM.vocab.json holds).
    tflite      FILE (e.g. model.tflite) with the signature `step` above, TFLite built-in ops only,
                and beside it STEM.vocab.json: the characters in index order and state_size.
    keras       FILE.keras for keras.models.load_model (safe mode): inputs tokens (batch, time)
                and each layer's state (rnn_0_h, ...), outputs logits (batch, time, vocab_size) and
                the new states (rnn_0_h_out, ...); beside it STEM.vocab.json as for tflite.
    web         FILE.html: one self-contained page (the weights inside, the network in plain
                JavaScript, nothing loaded from anywhere) that generates text in a browser; its
                script exposes window.CharRNN (generate, feed, probabilities). No TensorFlow.

A STEM.vocab.json that another export (of another run) beside it depends on is never changed, not
even with --force. Exports killed midway leave a staging directory (.NAME.export-PID-*) or a
SavedModel moved aside (.NAME.old-PID); the next export in that directory removes them (or puts the
SavedModel back), once their process is gone.

Every format goes through one skeleton, `export`: it is built in a temporary directory next to its
destination, loaded back, and compared with the NumPy sampler on the same weights (argmax text and
logits) before it is moved into place. A format is a module (savedmodel.py, tflite.py,
kerasfile.py, web.py) that provides:

    DIRECTORY                       True if the export is a directory, False if a file
    SIDECAR                         True if the vocabulary file STEM.vocab.json goes beside it
    NEEDS_TENSORFLOW                optional (default True): False if build and replay get tf=None
    check_name(output)              optional: raises UsageError if `output` cannot name this format
    build(tf, run, built, staging)  writes the export at `built`, a path inside `staging`
    replay(tf, run, built, ref)     loads `built` back; returns (argmax text, teacher-forced logits)
    check_more(run, built, ref, logits)  optional: a further check of `built` once replay's passed
                                    (web: the page run in a headless browser); returns (what it
                                    ran in, or None if it could not run; a phrase for the result)

where `run` is the run's charrnn.snapshot.Snapshot: cfg, vocab, weights (float32), state_size, and
net, the NumPy network the export is checked against.
"""

from dataclasses import dataclass
from pathlib import Path

from charrnn.backend import import_tensorflow
from charrnn.errors import ExportError, UsageError  # noqa: F401 (ExportError: re-exported)
from charrnn.export import files, kerasfile, savedmodel, sidecar, tflite, verify, web
from charrnn.export.sidecar import vocab_path_for  # noqa: F401 (public)
from charrnn.snapshot import Snapshot

# Each format's module, by its name on the command line.
_FORMATS = {"savedmodel": savedmodel, "tflite": tflite, "keras": kerasfile, "web": web}
FORMATS = tuple(_FORMATS)


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
    browser: str | None = None  # web: the headless browser the page was run in (None: not run)
    note: str = ""  # what a further check found (web: the browser's text, or why it was not run)


def export(run_dir, format, output, force=False, which="best"):
    """Exports the run in `run_dir` to `output` in `format` (savedmodel, tflite, keras or web); returns an
    ExportResult. Raises ExportError (or RunDirError, UsageError) with a one-line message."""
    if format not in _FORMATS:
        raise UsageError(f"format must be one of {', '.join(FORMATS)}. Received: format={format!r}")
    fmt = _FORMATS[format]
    run = Snapshot.load(run_dir, which)
    # Refuse a bad destination before the slow part: TensorFlow's import and the build.
    files.check_suffix(output, format)
    if hasattr(fmt, "check_name"):
        fmt.check_name(output)
    with files.checking(output):
        files.check_outside_run(run_dir, [Path(output), *([sidecar.vocab_path_for(output)] if fmt.SIDECAR else [])])
        output = files.check_output(output, force, directory=fmt.DIRECTORY)
        vocab_path = sidecar.check_sidecar(run, output, force) if fmt.SIDECAR else None
    tf = import_tensorflow() if getattr(fmt, "NEEDS_TENSORFLOW", True) else None
    browser, note = None, ""
    with files.staging(output) as staging:
        built = staging / output.name
        fmt.build(tf, run, built, staging)
        # Load it back and check it against the NumPy sampler before anything is moved into place.
        ref = verify.reference(run)
        text, logits = fmt.replay(tf, run, built, ref)
        diff = verify.check(format, run, ref, text, logits)
        if hasattr(fmt, "check_more"):
            browser, note = fmt.check_more(run, built, ref, logits)
        if vocab_path is not None:
            staged_vocab = files.stage_sidecar(run, vocab_path, staging)
            verify.check_vocabulary(format, run, *sidecar.read_sidecar(staged_vocab))
            # Checked again: another export may have come beside it while this one was built.
            with files.checking(output):
                sidecar.check_sidecar(run, output, force)
            files.move_into_place(staged_vocab, vocab_path)
        files.move_into_place(built, output)
    return ExportResult(
        format, str(output), None if vocab_path is None else str(vocab_path), files.size(output),
        run.state_size, run.vocab.vocab_size, verify.VERIFY_LENGTH, diff, browser, note,
    )


def export_savedmodel(run_dir, output, force=False, which="best"):
    """export(run_dir, "savedmodel", ...): a SavedModel directory with the signatures generate and step."""
    return export(run_dir, "savedmodel", output, force, which)


def export_tflite(run_dir, output, force=False, which="best"):
    """export(run_dir, "tflite", ...): a TFLite file with the signature step, and STEM.vocab.json."""
    return export(run_dir, "tflite", output, force, which)


def export_keras(run_dir, output, force=False, which="best"):
    """export(run_dir, "keras", ...): a .keras file (tokens and states in; logits and states out),
    and STEM.vocab.json."""
    return export(run_dir, "keras", output, force, which)


def export_web(run_dir, output, force=False, which="best"):
    """export(run_dir, "web", ...): one self-contained HTML page that generates text in a browser."""
    return export(run_dir, "web", output, force, which)
