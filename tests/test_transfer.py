"""Fine-tuning from another run (`--init-from BASE`): the vocabulary merged, BASE's rows kept and
new ones added, BASE never changed, the run's origin recorded, resume exact, bad bases refused."""

import hashlib
import json
import os
import signal

import numpy as np
import pytest

from charrnn import cells
from charrnn.config import ModelConfig
from charrnn.rundir import RunDir
from charrnn.rundir.metrics import MetricsStore
from charrnn.snapshot import Snapshot
from charrnn.train import train, transfer
from charrnn.vocab import Vocab
from helpers import TINY_TRAIN, assert_error, invoke, make_text

NEW_CHARS = "αβγδεζηθικλμνξοπρστυφχψω"  # 24 characters of another script


def files_digest(run_dir):
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(run_dir.iterdir()) if p.is_file()}


@pytest.fixture(scope="module")
def small_text(tmp_path_factory):
    """A text in the base's style with 24 Greek letters the base never saw, each several times."""
    rng = np.random.default_rng(5)
    words = make_text(1200, seed=9).split(" ")
    for i in range(0, len(words), 3):
        words[i] += "".join(rng.choice(list(NEW_CHARS), 2))
    path = tmp_path_factory.mktemp("small") / "small.txt"
    path.write_text(" ".join(words) + "".join(NEW_CHARS), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def fine_tuned(tmp_path_factory, trained_run, small_text):
    before = files_digest(trained_run)
    run_dir = tmp_path_factory.mktemp("tuned") / "run"
    lines = []
    result = train([str(small_text)], str(run_dir), {}, dict(TINY_TRAIN, epochs=1), quiet=True, log=lines.append, init_from=str(trained_run))
    assert files_digest(trained_run) == before  # BASE is only read
    return run_dir, result, lines


def test_the_vocabulary_is_the_bases_then_the_new_characters(fine_tuned, trained_run):
    run_dir, _, lines = fine_tuned
    base, tuned = Snapshot.load(trained_run, "best"), Snapshot.load(run_dir, "best")
    known = base.vocab.vocab_size
    assert tuned.vocab.index_to_char[:known] == base.vocab.index_to_char
    assert sorted(tuned.vocab.index_to_char[known:]) == sorted(set(NEW_CHARS) - set(base.vocab.index_to_char))
    origin = tuned.settings.origin
    assert origin["path"] == str(trained_run.resolve()) and origin["step"] == base.step
    assert origin["weights_sha256"] == transfer.digest(base.weights) and origin["added_chars"] == len(NEW_CHARS)
    assert (tuned.cfg.model, tuned.cfg.units, tuned.cfg.embedding_dim) == (base.cfg.model, base.cfg.units, base.cfg.embedding_dim)
    assert any(line.startswith(f"fine-tuning from {trained_run}") and "24 of this text's new to it" in line for line in lines)


def test_rows_of_known_characters_are_kept_and_new_ones_start_at_their_frequency(trained_run, small_text):
    base = Snapshot.load(trained_run, "best")
    text = small_text.read_text(encoding="utf-8")
    start = transfer.start(base, Vocab.from_text(text), {}, str(trained_run))
    known = base.vocab.vocab_size
    w, b = start.weights, base.weights
    assert np.array_equal(w["embedding"][:known], b["embedding"])
    assert np.array_equal(w["output/kernel"][:, :known], b["output/kernel"]) and not w["output/kernel"][:, known:].any()
    assert np.array_equal(w["output/bias"][:known], b["output/bias"])
    for name in cells.weight_names(start.model_cfg):
        if name not in ("embedding", "output/kernel", "output/bias"):
            assert np.array_equal(w[name], b[name]), name
    # New characters: their biases rank as their frequencies in the new text do.
    counts = np.array(start.vocab.counts[known:])
    new_bias = w["output/bias"][known:]
    assert np.all(np.diff(new_bias[np.argsort(counts)]) >= -1e-6)
    assert np.isfinite(w["embedding"]).all() and w["embedding"].shape == (known + len(NEW_CHARS), base.cfg.embedding_dim)


def test_the_adaptive_softmax_grows_its_last_tail():
    cfg = ModelConfig(vocab_size=600, units=8, embedding_dim=4, output_layer="adaptive", tails=[[344, 2]])
    rng = np.random.default_rng(0)
    weights = {k: rng.normal(size=s).astype(np.float32) for k, s in cells.weight_shapes(cfg).items()}
    chars = [chr(0x4E00 + i) for i in range(600)]
    grown = ModelConfig(vocab_size=603, units=8, embedding_dim=4, output_layer="adaptive", tails=[[347, 2]])
    vocab = Vocab(chars + ["a", "b", "c"], [10] * 600 + [5, 3, 1])
    new = transfer.grown_weights(weights, grown, vocab)
    assert {k: v.shape for k, v in new.items()} == {k: tuple(s) for k, s in cells.weight_shapes(grown).items()}
    assert np.array_equal(new["output/tail_0/kernel"][:, :344], weights["output/tail_0/kernel"])
    assert np.array_equal(new["output/kernel"], weights["output/kernel"])  # the head is unchanged
    tail_bias = new["output/tail_0/bias"]
    assert tail_bias[344] > tail_bias[345] > tail_bias[346]


def test_a_fine_tuned_run_samples_its_new_characters_and_resumes_exactly(fine_tuned, runner, small_text, tmp_path, monkeypatch):
    run_dir, _, _ = fine_tuned
    sampled = invoke(runner, ["sample", "-r", run_dir, "--seed", "α", "--length", "300", "--random-seed", "1"])
    assert sampled.exit_code == 0, sampled.output
    assert set(sampled.stdout[1:]) & set(NEW_CHARS)  # the new characters are drawn
    # Interrupted mid-run, then resumed: the same weights as the run trained in one go.
    base = Snapshot.load(run_dir, None).settings.origin["path"]
    interrupted = tmp_path / "interrupted"
    append = MetricsStore.append

    def append_then_interrupt(self, row):
        append(self, row)
        if row["step"] == 5:
            os.kill(os.getpid(), signal.SIGINT)

    monkeypatch.setattr(MetricsStore, "append", append_then_interrupt)
    args = ["train", small_text, "-r", interrupted, "-q", "--init-from", base, "--seq-length", "8", "--batch-size", "4",
            "--epochs", "1", "--eval-every", "0.001"]
    assert invoke(runner, args).exit_code == 130
    monkeypatch.undo()
    train([], str(interrupted), {}, {}, resume=True, quiet=True, log=lambda line: None)
    expected, got = RunDir(run_dir).checkpoint.load(), RunDir(interrupted).checkpoint.load()
    assert got.state.step == expected.state.step
    for name, value in expected.weights.items():
        np.testing.assert_array_equal(got.weights[name], value, err_msg=name)
    settings = json.loads((interrupted / "settings.json").read_text())
    assert settings["origin"]["path"] == base
    # A fine-tuned run can itself be a base.
    again = tmp_path / "again"
    assert invoke(runner, ["train", small_text, "-r", again, "-q", "--init-from", run_dir, "--seq-length", "8",
                           "--batch-size", "4", "--epochs", "1"]).exit_code == 0
    info = invoke(runner, ["info", "-r", again, "--json"])
    assert json.loads(info.stdout)["origin"]["path"] == str(run_dir.resolve())


def test_bad_bases_and_shape_flags_are_refused(runner, trained_run, run_copy, small_text, tmp_path):
    def start(*extra, run=tmp_path / "new"):
        return invoke(runner, ["train", small_text, "-r", run, "-q", "--seq-length", "8", "--batch-size", "4", *extra])

    assert_error(start("--init-from", tmp_path / "missing"), 1, "missing")
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("not a run")
    assert_error(start("--init-from", foreign), 1, str(foreign))
    line = assert_error(start("--init-from", trained_run, "--units", "16"), 2, "--units 16 differs from the base's")
    assert "GRU 8x1" in line
    assert_error(start("--init-from", trained_run, "--output-layer", "adaptive"), 2, "--output-layer adaptive differs")
    before = files_digest(run_copy)
    assert_error(start("--init-from", run_copy, "--force", run=run_copy), 2, "is the run being trained")
    assert files_digest(run_copy) == before
    assert_error(start("--init-from", trained_run, "--resume"), 2, "--init-from starts a new run")
    assert not (tmp_path / "new").exists()
