"""`charrnn eval`: the carried-state loss is the sampler's step by step, --window is training's
validation, unknown characters are skipped, chunked reading changes nothing, and the command line."""

import json
import os
import re
import subprocess
import sys

import numpy as np
import pytest

from charrnn import data, evaluate, evaltext, snapshot
from charrnn.errors import CorpusError
from charrnn.rundir import RunDir
from charrnn.vocab import index_dtype
from helpers import TINY_TRAIN, assert_error, invoke, make_text, subprocess_env


@pytest.fixture(scope="module")
def loaded(trained_run):
    net, vocab, _ = snapshot.network(trained_run)
    return net, vocab


@pytest.fixture(scope="module")
def val_ids(trained_run):
    """The run's validation text, encoded, as training split it."""
    run = RunDir(trained_run)
    settings = run.settings.read()
    text = run.corpus.read(settings.corpus["chars"], index_dtype(settings.model.vocab_size))
    _, val = data.split(np.asarray(text), settings.train.seq_length, settings.train.val_fraction)
    text.file.close()
    return val.astype(np.int64)


def step_by_step_loss(net, tokens):
    """Sum of -log softmax(logits)[next token], feeding the sampler's step one token at a time."""
    state = net.initial_state(1)
    total = 0.0
    for token, target in zip(tokens[:-1], tokens[1:]):
        logits, state = net.step(np.array([token]), state)
        z = logits[0].astype(np.float64)
        total += np.log(np.exp(z - z.max()).sum()) + z.max() - z[target]
    return total


@pytest.mark.parametrize("block", [evaluate.BLOCK, 7])
def test_carried_loss_is_the_samplers_step_by_step(loaded, monkeypatch, block):
    net, vocab = loaded
    monkeypatch.setattr(evaluate, "BLOCK", block)
    tokens = vocab.encode(make_text(300, seed=5)).astype(np.int64)
    expected = step_by_step_loss(net, tokens)
    whole = evaluate.carried_loss(net, [tokens])
    assert whole.chars == len(tokens) - 1
    assert whole.nats == pytest.approx(expected, rel=1e-5)
    # Chunk edges (an empty chunk, one of a single token) do not break the carried state.
    pieces = [tokens[:1], tokens[1:1], *np.array_split(tokens[1:], 6)]
    chunked = evaluate.carried_loss(net, pieces)
    assert chunked.chars == whole.chars
    assert chunked.nats == pytest.approx(whole.nats, rel=1e-9)


def keras_validation_loss(trained_run, val_ids, seq_length):
    """The mean cross-entropy the training loop's validation computes, with the run's best weights in
    the Keras model, over data.validation_windows without its cap."""
    import tensorflow as tf

    from charrnn import model as model_lib

    run = RunDir(trained_run)
    cfg = run.settings.read().model
    model = model_lib.build_model(cfg)
    model_lib.set_weights(model, cfg, run.load_weights("best"))
    x, y = data.validation_windows(val_ids, seq_length, 10**9)
    assert x.size == len(val_ids) - 1 - (len(val_ids) - 1) % seq_length  # every window kept
    losses = tf.nn.sparse_softmax_cross_entropy_with_logits(labels=y, logits=model(x, training=False))
    return float(tf.reduce_mean(losses))


@pytest.mark.parametrize("window", [TINY_TRAIN["seq_length"], 5, 1])
def test_window_is_the_training_validation(trained_run, loaded, val_ids, window):
    net, _ = loaded
    expected = keras_validation_loss(trained_run, val_ids, window)
    loss = evaluate.windowed_loss(net, val_ids, window)
    assert loss.chars == (len(val_ids) - 1) // window * window
    assert loss.mean == pytest.approx(expected, abs=1e-5)
    result = evaluate.evaluate(trained_run, window=window)
    assert (result.protocol, result.window, result.text) == ("window", window, "validation")
    assert result.nats_per_char == pytest.approx(loss.mean, rel=1e-9)


def test_window_of_seq_length_gives_the_validation_loss_training_recorded(trained_run):
    run = RunDir(trained_run)
    best = run.best.read()
    [row] = [row for row in run.metrics.read() if row["step"] == best.step]
    result = evaluate.evaluate(trained_run, window=TINY_TRAIN["seq_length"])
    assert result.step == best.step
    # metrics.jsonl rounds to 5 decimals.
    assert result.nats_per_char == pytest.approx(row["val_loss"], abs=1e-5 + 5e-6)


def test_carried_differs_from_window_on_validation(trained_run, loaded, val_ids):
    net, _ = loaded
    result = evaluate.evaluate(trained_run)
    assert (result.protocol, result.window, result.chars) == ("carried", None, len(val_ids) - 1)
    assert result.nats_per_char == pytest.approx(step_by_step_loss(net, val_ids) / (len(val_ids) - 1), rel=1e-5)
    assert result.nats_per_char != pytest.approx(evaluate.windowed_loss(net, val_ids, 8).mean, rel=1e-6)


@pytest.mark.parametrize("window", [None, 4])
def test_unknown_characters_are_skipped_and_counted(trained_run, tmp_path, window):
    text = make_text(400, seed=2)
    noisy = "QX" + text[:100] + "€€Q\t" + text[100:] + "X"
    (tmp_path / "clean.txt").write_text(text, encoding="utf-8")
    (tmp_path / "noisy.txt").write_text(noisy, encoding="utf-8")
    clean = evaluate.evaluate(trained_run, str(tmp_path / "clean.txt"), window)
    result = evaluate.evaluate(trained_run, str(tmp_path / "noisy.txt"), window)
    assert clean.unknown_chars == 0 and clean.unknown == []
    assert result.unknown_chars == 7
    assert result.unknown == ["Q", "X", "€", "\t"]  # distinct, in order of first appearance
    assert result.chars == clean.chars
    assert result.nats_per_char == pytest.approx(clean.nats_per_char, rel=1e-9)


def test_at_most_twenty_unknown_characters_are_listed(trained_run, tmp_path):
    unknown = "".join(chr(0x4E00 + i) for i in range(30))
    path = tmp_path / "cjk.txt"
    path.write_text("the " + unknown + unknown + " cat", encoding="utf-8")
    result = evaluate.evaluate(trained_run, str(path))
    assert result.unknown_chars == 60
    assert result.unknown == list(unknown[: evaltext.SHOWN_UNKNOWN])


@pytest.mark.parametrize(
    "content, window, fragments",
    [
        ("QX€QX€".encode(), None, ["has no character the model knows", "'Q'"]),
        ("€a€".encode(), None, ["only one character the model knows"]),
        (b"", None, ["is empty"]),
        (b"the cat", 8, ["only 7 characters the model knows", "--window 8 needs 9"]),
        (b"the \x00cat", None, ["binary file", "byte offset 4"]),
        (b"the caf\xe9", None, ["not valid UTF-8", "byte offset 7"]),
    ],
)
def test_text_that_cannot_be_scored_is_one_clean_line(runner, trained_run, tmp_path, content, window, fragments):
    path = tmp_path / "text.txt"
    path.write_bytes(content)
    args = ["eval", path, "-r", trained_run] + (["--window", window] if window else [])
    assert_error(invoke(runner, args), 1, str(path), *fragments)


def test_missing_file_and_directory_are_one_clean_line(runner, trained_run, tmp_path):
    assert_error(invoke(runner, ["eval", tmp_path / "nope.txt", "-r", trained_run]), 1, "file not found")
    assert_error(invoke(runner, ["eval", tmp_path, "-r", trained_run]), 1, "is a directory")


def test_validation_shorter_than_one_window_is_one_clean_line(runner, trained_run):
    result = invoke(runner, ["eval", "-r", trained_run, "--window", 500])
    assert_error(result, 1, "the validation text has only 100 characters", "--window 500 needs 501")


@pytest.mark.parametrize("window", [None, 3])
def test_reading_in_small_chunks_changes_nothing(trained_run, tmp_path, monkeypatch, window):
    path = tmp_path / "long.txt"
    path.write_text(make_text(2000, seed=3), encoding="utf-8")
    whole = evaluate.evaluate(trained_run, str(path), window)
    validation = evaluate.evaluate(trained_run, None, window)
    # 7 bytes at a time splits the multi-byte characters (é, ï, 🙂) across chunks.
    monkeypatch.setattr(evaltext, "CHUNK", 7)
    chunked = evaluate.evaluate(trained_run, str(path), window)
    assert chunked.chars == whole.chars > 1000
    assert chunked.nats_per_char == pytest.approx(whole.nats_per_char, rel=1e-6)
    small = evaluate.evaluate(trained_run, None, window)
    assert small.chars == validation.chars
    assert small.nats_per_char == pytest.approx(validation.nats_per_char, rel=1e-6)


def test_validation_without_corpus_npy_reads_the_corpus_files(run_copy, trained_run):
    expected = evaluate.evaluate(trained_run)
    os.remove(run_copy / "corpus.npy")
    result = evaluate.evaluate(run_copy)
    assert (result.text, result.chars) == ("validation", expected.chars)
    assert result.nats_per_char == pytest.approx(expected.nats_per_char, rel=1e-9)


def test_validation_without_corpus_npy_or_files_asks_for_a_file(runner, run_copy, tmp_path, corpus_file):
    os.remove(run_copy / "corpus.npy")
    settings = json.loads((run_copy / "settings.json").read_text())
    moved = tmp_path / "moved.txt"
    settings["corpus"]["files"][0]["path"] = str(moved)
    (run_copy / "settings.json").write_text(json.dumps(settings))
    assert_error(invoke(runner, ["eval", "-r", run_copy]), 1, "corpus.npy is missing", str(moved), "give a FILE")
    # A corpus file that changed since training is refused too.
    moved.write_text(corpus_file.read_text(encoding="utf-8") + "more", encoding="utf-8")
    assert_error(invoke(runner, ["eval", "-r", run_copy]), 1, "has changed since the run was trained")


def test_cli_prints_one_line_of_validation_loss(runner, trained_run):
    result = invoke(runner, ["eval", "-r", trained_run])
    assert result.exit_code == 0, result.output
    expected = evaluate.evaluate(trained_run)
    line = (
        f"{expected.nats_per_char:.4f} nats/char ({expected.bits_per_char:.4f} bits/char) over "
        f"{expected.chars:,} characters of validation, state carried through the whole text "
        "(training's validation loss is an estimate over up to 64 stretches of it)\n"
    )
    assert result.stdout == line
    assert result.stderr == ""


def test_cli_json_has_every_key_and_no_nan(runner, trained_run):
    result = invoke(runner, ["eval", "-r", trained_run, "--json", "--window", "8"])
    assert result.exit_code == 0, result.output
    facts = json.loads(result.stdout, parse_constant=lambda c: pytest.fail(f"{c} in the JSON"))
    assert set(facts) == {
        "nats_per_char", "bits_per_char", "chars", "unknown_chars", "unknown", "weights", "step",
        "protocol", "window", "text", "seconds",
    }
    assert facts["bits_per_char"] == pytest.approx(facts["nats_per_char"] / np.log(2))
    assert (facts["weights"], facts["protocol"], facts["window"], facts["text"]) == ("best", "window", 8, "validation")
    assert facts["step"] == RunDir(trained_run).best.read().step
    assert facts["seconds"] >= 0


def test_cli_reads_stdin_and_reports_unknown_characters(runner, trained_run, tmp_path):
    text = make_text(300, seed=4)
    path = tmp_path / "text.txt"
    path.write_text(text, encoding="utf-8")
    from_file = json.loads(invoke(runner, ["eval", path, "-r", trained_run, "--json"]).stdout)
    result = invoke(runner, ["eval", "-", "-r", trained_run, "--json"], input=text.encode())
    assert result.exit_code == 0, result.output
    from_stdin = json.loads(result.stdout)
    assert from_stdin["text"] == "<stdin>" and from_file["text"] == str(path)
    assert from_stdin["nats_per_char"] == from_file["nats_per_char"]
    assert from_stdin["chars"] == from_file["chars"] == 299

    result = invoke(runner, ["eval", "-", "-r", trained_run], input=("Q" + text + "€Q").encode())
    assert result.exit_code == 0, result.output
    assert re.fullmatch(r"\d+\.\d{4} nats/char \(\d+\.\d{4} bits/char\) over 299 characters of <stdin>, state carried\n", result.stdout)
    assert result.stderr == "skipped 3 characters the model never saw: 'Q', '€'\n"


def test_cli_latest_weights(runner, trained_run):
    best = json.loads(invoke(runner, ["eval", "-r", trained_run, "--json"]).stdout)
    latest = json.loads(invoke(runner, ["eval", "-r", trained_run, "--json", "--weights", "latest"]).stdout)
    assert latest["weights"] == "latest"
    assert latest["step"] == RunDir(trained_run).checkpoint.read_state().step
    assert latest["nats_per_char"] == pytest.approx(evaluate.evaluate(trained_run, which="latest").nats_per_char)
    if latest["step"] != best["step"]:
        assert latest["nats_per_char"] != best["nats_per_char"]


def test_cli_needs_a_run(runner, tmp_path):
    assert_error(invoke(runner, ["eval", "-r", tmp_path / "none"]), 1, "no run directory")


def test_eval_does_not_import_tensorflow(trained_run):
    code = (
        "import sys; from charrnn.cli import main; sys.argv = ['charrnn', 'eval', '-r', sys.argv[1]]\n"
        "try:\n    main()\nexcept SystemExit as e:\n    assert not e.code, e.code\n"
        "print('tensorflow' in sys.modules, 'keras' in sys.modules)"
    )
    done = subprocess.run(
        [sys.executable, "-c", code, str(trained_run)], capture_output=True, text=True, timeout=120, env=subprocess_env()
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[-1] == "False False"


def test_stdin_from_a_terminal_is_refused():
    class Terminal:
        def isatty(self):
            return True

    with pytest.raises(CorpusError, match="standard input is a terminal"):
        list(evaltext.codepoint_chunks("-", Terminal()))
