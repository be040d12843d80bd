"""Export: each format, from a tiny trained run of each cell type, loaded back with plain
TensorFlow / Keras / the TFLite interpreter and compared with the NumPy sampler and the Keras model."""

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from charrnn import export, generation, snapshot
from charrnn.backend import import_tensorflow
from charrnn.cli import cli
from charrnn.export import leftovers, verify
from charrnn.errors import RunDirError, UsageError
from charrnn.train import train
from helpers import charrnn_command, subprocess_env

tf = import_tensorflow()
import keras  # noqa: E402

# tf.lite.Interpreter still works in TF 2.21 but warns that it moves to the ai_edge_litert package.
pytestmark = pytest.mark.filterwarnings("ignore:.*tf.lite.Interpreter is deprecated:UserWarning")

TEXT = (
    "In the beginning God created the heaven and the earth.\n"
    "And the earth was without form, and void; naïve Ünïcode — ok.\n"
    "And God said, Let there be light: and there was light.\n"
) * 3
SEED = "And God"
LENGTH = 60
TOLERANCE = 1e-4


def _train_run(tmp_path_factory, cell):
    root = tmp_path_factory.mktemp(f"run-{cell}")
    corpus = root / "corpus.txt"
    corpus.write_text(TEXT, encoding="utf-8")
    run_dir = root / "run"
    train(
        [str(corpus)], str(run_dir),
        model_options={"model": cell, "layers": 2, "units": 8, "embedding_dim": 4},
        train_options={"seq_length": 16, "batch_size": 4, "epochs": 1, "learning_rate": 0.02},
        quiet=True, log=lambda line: None,
    )
    return run_dir


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """Trains each cell type's run once, when a test first asks for it."""
    runs = {}

    def get(cell):
        if cell not in runs:
            runs[cell] = _train_run(tmp_path_factory, cell)
        return runs[cell]

    return get


# The GRU run is trained for the quick subset too (the tests on the command line use it); the
# other two cells' runs only for the whole suite.
@pytest.fixture(scope="module", params=[pytest.param("rnn", marks=pytest.mark.slow), pytest.param("lstm", marks=pytest.mark.slow), "gru"])
def run_dir(request, trained):
    return trained(request.param)


@pytest.fixture(scope="module")
def gru_run(trained):
    return trained("gru")


def _numpy_text(run_dir, seed, length=LENGTH):
    net, vocab, _ = snapshot.network(run_dir)
    return generation.sample_text(net, vocab, seed, length, temperature=0.0)[0]


def _numpy_logits(run_dir, tokens):
    """The NumPy step's logits after each of `tokens`, from the zero state: (len, vocab_size)."""
    net, _, _ = snapshot.network(run_dir)
    state, rows = net.initial_state(1), []
    for token in tokens:
        logits, state = net.step(np.array([token]), state)
        rows.append(logits[0])
    return np.array(rows)


def _tokens(run_dir, text):
    _, vocab, _ = snapshot.network(run_dir)
    return [vocab.char_to_index[c] for c in text]


def _argmax_text(step, state_size, vocab_chars, seed, length):
    """Argmax generation with a step(token, state) -> (logits (vocab,), state) function."""
    index = {c: i for i, c in enumerate(vocab_chars)}
    state = np.zeros((1, state_size), np.float32)
    for c in seed:
        logits, state = step(index[c], state)
    text = seed
    for _ in range(length):
        token = int(np.argmax(logits))
        text += vocab_chars[token]
        logits, state = step(token, state)
    return text


@pytest.mark.slow
def test_savedmodel_generates_like_the_numpy_sampler(run_dir, tmp_path):
    result = export.export_savedmodel(run_dir, tmp_path / "saved")
    loaded = tf.saved_model.load(str(tmp_path / "saved"))
    generate = loaded.signatures["generate"]

    def text(seed, length=LENGTH, temperature=0.0, random_seed=0):
        out = generate(
            seed=tf.constant(seed), length=tf.constant(length, tf.int32),
            temperature=tf.constant(temperature, tf.float32), random_seed=tf.constant(random_seed, tf.int64),
        )
        return out["text"].numpy().decode()

    assert text(SEED) == _numpy_text(run_dir, SEED)
    assert text("") == _numpy_text(run_dir, "")  # primed with a newline, like `charrnn sample`
    assert text("naïve", 0) == "naïve"
    drawn = text(SEED, 40, 1.0, 7)
    assert drawn == text(SEED, 40, 1.0, 7) and len(drawn) == len(SEED) + 40
    assert set(drawn) <= set(TEXT)
    with pytest.raises(tf.errors.InvalidArgumentError, match="never saw"):
        text("And @")

    # The one-step signature, fed the NumPy sampler's own text.
    step = loaded.signatures["step"]
    tokens = _tokens(run_dir, _numpy_text(run_dir, SEED))
    state = tf.zeros([1, result.state_size])
    rows = []
    for token in tokens:
        out = step(token=tf.constant([token], tf.int32), state=state)
        rows.append(out["logits"].numpy()[0])
        state = out["state"]
    np.testing.assert_allclose(rows, _numpy_logits(run_dir, tokens), atol=TOLERANCE)

    # What a client of `step` needs, from a signature that saved_model_cli lists, and as a file.
    _, vocab, cfg = snapshot.network(run_dir)
    facts = loaded.signatures["vocab"]()
    assert [c.decode() for c in facts["index_to_char"].numpy()] == vocab.index_to_char
    assert int(facts["state_size"]) == result.state_size and int(facts["vocab_size"]) == vocab.vocab_size
    assert [s.decode() for s in facts["state_layout"].numpy()] == [f"rnn_{i}/{p}" for i in range(cfg.layers) for p in ("hc" if cfg.model == "lstm" else "h")]
    assert list(facts["counts"].numpy()) == vocab.counts
    asset = json.loads((tmp_path / "saved" / "assets" / "vocab.json").read_text(encoding="utf-8"))
    assert asset["index_to_char"] == vocab.index_to_char and asset["state_size"] == result.state_size


def test_tflite_step_matches_the_numpy_sampler(run_dir, tmp_path):
    result = export.export_tflite(run_dir, tmp_path / "model.tflite")
    sidecar = json.loads((tmp_path / "model.vocab.json").read_text(encoding="utf-8"))
    chars = sidecar["index_to_char"]
    _, vocab, cfg = snapshot.network(run_dir)
    assert chars == vocab.index_to_char
    assert sidecar["state_size"] == result.state_size == cfg.layers * cfg.units * (2 if cfg.model == "lstm" else 1)

    interpreter = tf.lite.Interpreter(model_path=str(tmp_path / "model.tflite"))
    assert list(interpreter.get_signature_list()) == ["step"]
    ops = {op["op_name"] for op in interpreter._get_ops_details()}
    assert "FULLY_CONNECTED" in ops and all(re.fullmatch(r"[A-Z0-9_]+", op) for op in ops), ops  # no Flex or custom ops
    runner = interpreter.get_signature_runner("step")
    details = runner.get_input_details()
    assert list(details["token"]["shape"]) == [1] and details["token"]["dtype"] == np.int32
    assert list(details["state"]["shape"]) == [1, sidecar["state_size"]]

    def step(token, state):
        out = runner(token=np.array([token], np.int32), state=state)
        return out["logits"][0], out["state"]

    expected = _numpy_text(run_dir, SEED)
    assert _argmax_text(step, sidecar["state_size"], chars, SEED, LENGTH) == expected
    tokens = _tokens(run_dir, expected)
    state, rows = np.zeros((1, sidecar["state_size"]), np.float32), []
    for token in tokens:
        logits, state = step(token, state)
        rows.append(logits)
    np.testing.assert_allclose(rows, _numpy_logits(run_dir, tokens), atol=TOLERANCE)


@pytest.mark.slow
def test_keras_export_matches_the_training_model(run_dir, tmp_path):
    export.export_keras(run_dir, tmp_path / "model.keras")
    model = keras.models.load_model(str(tmp_path / "model.keras"), safe_mode=True)
    chars = json.loads((tmp_path / "model.vocab.json").read_text(encoding="utf-8"))["index_to_char"]
    zero_states = [np.zeros((1, s.shape[-1]), np.float32) for s in model.inputs[1:]]
    state_names = [s.name for s in model.inputs[1:]]
    assert [s.name for s in model.inputs] == ["tokens", *state_names] and state_names[0] == "rnn_0_h"
    assert model.output_names == ["logits", *[f"{name}_out" for name in state_names]]

    # The whole text at once, from zero states, as the training model sees it.
    from charrnn.model import build_model, set_weights
    from charrnn.rundir import RunDir

    expected = _numpy_text(run_dir, SEED)
    tokens = np.array([_tokens(run_dir, expected)], np.int32)
    net = snapshot.network(run_dir)[0]
    original = build_model(net.cfg)
    set_weights(original, net.cfg, RunDir(run_dir).load_weights("best"))
    logits = model([tokens, *zero_states])[0]
    np.testing.assert_allclose(logits, original(tokens), atol=TOLERANCE)

    # One character at a time, carrying the states.
    states = zero_states
    text, step_tokens = SEED, np.array([_tokens(run_dir, SEED)], np.int32)
    for _ in range(LENGTH):
        logits, *states = model.predict_on_batch([step_tokens, *states])
        token = int(np.argmax(logits[0, -1]))
        text += chars[token]
        step_tokens = np.array([[token]], np.int32)
    assert text == expected


def test_verification_catches_an_export_that_differs(run_dir):
    run = snapshot.Snapshot.load(run_dir)
    ref = verify.reference(run)
    assert verify.check("test", run, ref, ref.text, ref.logits.copy()) == 0.0
    with pytest.raises(export.ExportError, match="logits differ"):
        verify.check("test", run, ref, ref.text, ref.logits + 1e-2)
    other = next(c for c in run.vocab.index_to_char if c != ref.text[-5])
    wrong = ref.text[:-5] + other + ref.text[-4:]
    with pytest.raises(export.ExportError, match="argmax text differs"):
        verify.check("test", run, ref, wrong, ref.logits.copy())
    # The vocabulary an export gives its clients.
    verify.check_vocabulary("test", run, run.vocab.index_to_char, run.state_size)
    with pytest.raises(export.ExportError, match="vocabulary or state size"):
        verify.check_vocabulary("test", run, run.vocab.index_to_char[::-1], run.state_size)
    with pytest.raises(export.ExportError, match="vocabulary or state size"):
        verify.check_vocabulary("test", run, run.vocab.index_to_char, run.state_size + 1)


@pytest.mark.slow
def test_cli_exports_and_refuses_to_overwrite(gru_run, tmp_path):
    out = tmp_path / "m.tflite"
    args = ["export", "-r", str(gru_run), "--format", "tflite", "--output", str(out)]
    first = CliRunner().invoke(cli, args)
    assert first.exit_code == 0, first.output
    assert out.exists() and (tmp_path / "m.vocab.json").exists() and "verified" in first.output
    again = CliRunner().invoke(cli, args)
    assert again.exit_code == 1 and "already exists" in again.output and "--force" in again.output
    assert len(again.output.strip().splitlines()) == 1
    forced = CliRunner().invoke(cli, args + ["--force"])
    assert forced.exit_code == 0, forced.output
    # A Keras export of the same run may share the vocabulary file: it is the same.
    keras_export = CliRunner().invoke(cli, ["export", "-r", str(gru_run), "--format", "keras", "-o", str(tmp_path / "m.keras")])
    assert keras_export.exit_code == 0, keras_export.output
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no temporary left


@pytest.mark.parametrize(
    "format, output, message, code",
    [
        ("tflite", "a-file/m.tflite", "a-file is not a directory", 1),
        ("savedmodel", "a-file/deeper/sm", "a-file is not a directory", 1),
        ("keras", "m.h5", "must end in .keras", 2),
        ("keras", ".keras", "must end in .keras", 2),
        ("savedmodel", "not-a-savedmodel", "not a SavedModel", 1),
        ("savedmodel", "savedmodel-and-notes", "not part of a SavedModel (notes.txt)", 1),
        ("savedmodel", "link-to-notes", "not a SavedModel", 1),
        ("tflite", "m.vocab.json", "must not end in .vocab.json", 2),
        ("tflite", "m.keras", "the keras format's", 2),
        ("savedmodel", "m.tflite", "the tflite format's", 2),
        ("tflite", "dangling-dir/m.tflite", "dangling-dir is a symbolic link to nowhere, which does not exist", 1),
        ("tflite", "x" * 250 + ".tflite", "at most 255 bytes", 2),
    ],
)
def test_cli_bad_output_is_one_line(gru_run, tmp_path, format, output, message, code):
    (tmp_path / "a-file").write_text("x")
    (tmp_path / "not-a-savedmodel").mkdir()
    (tmp_path / "not-a-savedmodel" / "notes.txt").write_text("keep me")
    (tmp_path / "link-to-notes").symlink_to("not-a-savedmodel")
    (tmp_path / "savedmodel-and-notes").mkdir()
    (tmp_path / "savedmodel-and-notes" / "saved_model.pb").write_bytes(b"pb")
    (tmp_path / "savedmodel-and-notes" / "notes.txt").write_text("keep me")
    (tmp_path / "dangling-dir").symlink_to("nowhere")
    before = sorted(p.name for p in tmp_path.iterdir())
    result = CliRunner().invoke(cli, ["export", "-r", str(gru_run), "--format", format, "-o", str(tmp_path / output), "--force"])
    assert result.exit_code == code and message in result.output, result.output
    assert len(result.output.strip().splitlines()) == 1
    assert (tmp_path / "not-a-savedmodel" / "notes.txt").read_text() == "keep me"
    assert (tmp_path / "savedmodel-and-notes" / "notes.txt").read_text() == "keep me"
    assert sorted(p.name for p in tmp_path.iterdir()) == before  # refused before anything was written


def test_cli_dangling_link_as_output_is_named(gru_run, tmp_path):
    (tmp_path / "m.tflite").symlink_to(tmp_path / "gone.tflite")
    args = ["export", "-r", str(gru_run), "--format", "tflite", "-o", str(tmp_path / "m.tflite")]
    refused = CliRunner().invoke(cli, args)
    assert refused.exit_code == 1 and "is a symbolic link to" in refused.output and "does not exist" in refused.output
    assert "--force" in refused.output and len(refused.output.strip().splitlines()) == 1
    forced = CliRunner().invoke(cli, args + ["--force"])
    assert forced.exit_code == 0, forced.output
    assert not (tmp_path / "m.tflite").is_symlink() and not (tmp_path / "gone.tflite").exists()


def test_an_export_never_replaces_a_file_of_its_run(run_copy):
    settings = (run_copy / "settings.json").read_bytes()
    for name in ("settings.json", "best.npz", "lock"):
        with pytest.raises(UsageError, match="the run directory or one of its files"):
            export.export_tflite(run_copy, run_copy / name, force=True)
    with pytest.raises(UsageError, match="the run directory or one of its files"):
        export.export_savedmodel(run_copy, run_copy / ".." / run_copy.name, force=True)
    assert (run_copy / "settings.json").read_bytes() == settings


def test_an_unwritable_directory_is_refused_before_the_build(gru_run, tmp_path, monkeypatch):
    import os

    real_access = os.access
    monkeypatch.setattr(os, "access", lambda path, mode: Path(path) != tmp_path and real_access(path, mode))
    with pytest.raises(export.ExportError, match=f"cannot write in {re.escape(str(tmp_path))}: permission denied"):
        export.export_tflite(gru_run, tmp_path / "sub" / "m.tflite")
    assert list(tmp_path.iterdir()) == []


def test_a_directory_that_cannot_be_entered_is_one_line(gru_run, tmp_path, monkeypatch):
    # As a user who may not enter `private` sees it (the tests may run as root, who may).
    real_exists = Path.exists

    def exists(path, *args, **kwargs):
        if "private" in path.parts:
            raise PermissionError(13, "Permission denied", str(path))
        return real_exists(path, *args, **kwargs)

    monkeypatch.setattr(Path, "exists", exists)
    result = CliRunner().invoke(cli, ["export", "-r", str(gru_run), "--format", "tflite", "-o", str(tmp_path / "private" / "m.tflite")])
    assert result.exit_code == 1 and "Permission denied; choose another --output" in result.output, result.output
    assert len(result.output.strip().splitlines()) == 1


@pytest.mark.slow
def test_force_never_repoints_another_exports_vocabulary(gru_run, trained_run, tmp_path):
    """model.tflite from one run, then model.keras from another run with --force, must not rewrite
    model.vocab.json, which model.tflite decodes with."""
    sidecar = tmp_path / "model.vocab.json"
    assert snapshot.Snapshot.load(gru_run).vocab.index_to_char != snapshot.Snapshot.load(trained_run).vocab.index_to_char
    export.export_tflite(gru_run, tmp_path / "model.tflite")
    before = sidecar.read_bytes()
    args = ["export", "-r", str(trained_run), "--format", "keras", "-o", str(tmp_path / "model.keras"), "--force"]
    refused = CliRunner().invoke(cli, args)
    assert refused.exit_code == 1, refused.output
    assert "model.tflite" in refused.output and "choose another --output" in refused.output
    assert len(refused.output.strip().splitlines()) == 1
    assert sidecar.read_bytes() == before and not (tmp_path / "model.keras").exists()
    # The same run's export shares it (identical), with or without --force.
    export.export_keras(gru_run, tmp_path / "model.keras", force=True)
    assert sidecar.read_bytes() == before
    # Replacing both exports of the stem with the other run's is refused until the other goes.
    with pytest.raises(export.ExportError, match="model.keras"):
        export.export_tflite(trained_run, tmp_path / "model.tflite", force=True)
    (tmp_path / "model.keras").unlink()
    export.export_tflite(trained_run, tmp_path / "model.tflite", force=True)
    assert json.loads(sidecar.read_text(encoding="utf-8"))["index_to_char"] == snapshot.Snapshot.load(trained_run).vocab.index_to_char


@pytest.mark.slow
def test_force_onto_a_symlinked_savedmodel_replaces_the_link(gru_run, tmp_path):
    target = tmp_path / "v1"
    target.mkdir()
    (target / "saved_model.pb").write_bytes(b"an older SavedModel")
    (target / "notes.txt").write_text("keep me")
    (tmp_path / "current").symlink_to("v1")
    export.export_savedmodel(gru_run, tmp_path / "current", force=True)
    assert (tmp_path / "current").is_dir() and not (tmp_path / "current").is_symlink()
    assert tf.saved_model.load(str(tmp_path / "current")).signatures["step"] is not None
    assert (target / "saved_model.pb").read_bytes() == b"an older SavedModel" and (target / "notes.txt").read_text() == "keep me"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["current", "v1"]  # no .current.old-PID left


def _dead_pid():
    """The id of a process that has ended."""
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def test_leftovers_of_ended_exports_are_removed_and_a_live_exports_kept(tmp_path):
    dead, live = _dead_pid(), os.getppid()
    for name in (f".m.tflite.export-{dead}-abc123", f".m.tflite.export-{live}-abc123", ".m.tflite.export-abc123"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "m.tflite").write_bytes(b"half")
    # SavedModels moved aside by a killed --force: one whose name is free again, one replaced.
    for name in ("gone", "replaced"):
        old = tmp_path / f".{name}.old-{dead}"
        old.mkdir()
        (old / "saved_model.pb").write_bytes(name.encode())
    (tmp_path / "replaced").mkdir()
    (tmp_path / "replaced" / "saved_model.pb").write_bytes(b"new")
    (tmp_path / f".link.old-{dead}").symlink_to("replaced")  # a link a killed --force moved aside
    (tmp_path / "link").mkdir()
    (tmp_path / f".mine.old-{dead}").mkdir()  # not a SavedModel: not recognisably an export's
    leftovers.remove_leftovers(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([
        f".m.tflite.export-{live}-abc123", ".m.tflite.export-abc123", f".mine.old-{dead}", "gone", "link", "replaced",
    ])
    assert (tmp_path / "gone" / "saved_model.pb").read_bytes() == b"gone"  # put back
    assert [p.read_bytes() for p in (tmp_path / "replaced").iterdir()] == [b"new"]  # the link's target was left alone


@pytest.mark.slow
def test_a_killed_export_is_cleaned_up_by_the_next(gru_run, tmp_path):
    killed = subprocess.Popen(
        charrnn_command("export", "-r", gru_run, "--format", "savedmodel", "-o", tmp_path / "sm"),
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=subprocess_env(),
    )
    try:
        deadline = time.monotonic() + 120
        while not list(tmp_path.glob(".sm.export-*")):
            assert killed.poll() is None and time.monotonic() < deadline, "the export ended before it staged"
            time.sleep(0.05)
    finally:
        killed.kill()
        killed.wait()
    assert [p.name for p in tmp_path.glob(".sm.export-*")] != [] and not (tmp_path / "sm").exists()
    export.export_tflite(gru_run, tmp_path / "m.tflite")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.tflite", "m.vocab.json"]


def test_missing_run_dir_is_an_error(tmp_path):
    with pytest.raises(RunDirError, match="no run directory"):
        export.export_tflite(tmp_path / "nothing", tmp_path / "m.tflite")
    with pytest.raises(UsageError, match="format must be one of"):
        export.export(tmp_path, "onnx", tmp_path / "m.onnx")
    assert not (tmp_path / "m.tflite").exists()
