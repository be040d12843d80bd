"""Hostile input to what reads a run and generates or scores text: hand-edited and crafted run files,
non-finite sampling options, unreadable files, inputs that would make memory grow, and generated
text that would drive a terminal."""

import io
import json
import math
import os
import pty
import subprocess
import threading
import tracemalloc
import zipfile

import numpy as np
import pytest

from charrnn import cells, evaluate, generation, numpynet, report, sample, snapshot
from charrnn import rundir as rundir_module
from charrnn.config import ModelConfig
from charrnn.errors import RunDirError, UsageError
from charrnn.rundir import RunDir
from charrnn.vocab import Vocab
from helpers import assert_error, charrnn_command, invoke, subprocess_env

# --- mutations of a trained run's files ------------------------------------------------------------


def edit_json(name, change):
    """A mutation that loads run file `name` as JSON, lets `change(data)` edit it, and writes it back
    (NaN and infinity as Python's json writes them)."""

    def mutate(run):
        path = run / name
        data = json.loads(path.read_text(encoding="utf-8"))
        change(data)
        path.write_text(json.dumps(data), encoding="utf-8")

    return mutate


def setter(*keys, value):
    """change(data) that sets data[k1][k2]... = value (or deletes it, with value DELETE)."""

    def change(data):
        for key in keys[:-1]:
            data = data[key]
        if value is DELETE:
            del data[keys[-1]]
        else:
            data[keys[-1]] = value

    return change


DELETE = object()


def write_text(name, text):
    def mutate(run):
        (run / name).write_text(text, encoding="utf-8")

    return mutate


def edit_npz(name, change):
    """A mutation that lets `change(arrays)` edit the arrays of an .npz, then saves it as np.savez does."""

    def mutate(run):
        path = run / name
        with np.load(path) as npz:
            arrays = {k: npz[k] for k in npz.files}
        change(arrays)
        np.savez(path, **arrays)

    return mutate


def edit_state(name, **fields):
    def change(arrays):
        state = json.loads(str(arrays["state"][()]))
        state.update(fields)
        arrays["state"] = np.array(json.dumps(state))

    return edit_npz(name, change)


def set_array(key, value):
    def change(arrays):
        if value is DELETE:
            del arrays[key]
        else:
            arrays[key] = value

    return change


def npy_bytes(shape, descr="<f4", data=b"\0" * 64):
    """A .npy member whose header declares `shape` of `descr`, followed by `data` (whatever its size)."""
    buffer = io.BytesIO()
    np.lib.format.write_array_header_1_0(buffer, {"descr": descr, "fortran_order": False, "shape": shape})
    return buffer.getvalue() + data


def craft_member(name, key, content, compression=zipfile.ZIP_STORED):
    """A mutation that replaces (or adds) member `key` of the .npz with the raw bytes `content`."""

    def mutate(run):
        path = run / name
        with zipfile.ZipFile(path) as archive:
            members = {info.filename: archive.read(info) for info in archive.infolist()}
        members[f"{key}.npy"] = content
        with zipfile.ZipFile(path, "w", compression) as archive:
            for member, data in members.items():
                archive.writestr(member, data)

    return mutate


def declared_size(name, key, size):
    """A mutation that patches the zip directory so that member `key` declares `size` bytes."""

    def mutate(run):
        path = run / name
        data = bytearray(path.read_bytes())
        at = 0
        while (at := data.find(b"PK\x01\x02", at)) >= 0:
            name_length = int.from_bytes(data[at + 28 : at + 30], "little")
            if data[at + 46 : at + 46 + name_length] == f"{key}.npy".encode():
                data[at + 20 : at + 28] = size.to_bytes(4, "little") * 2  # compressed, uncompressed
            at += 4
        path.write_bytes(bytes(data))

    return mutate


def compressed(name):
    def mutate(run):
        path = run / name
        with np.load(path) as npz:
            arrays = {k: npz[k] for k in npz.files}
        np.savez_compressed(path, **arrays)

    return mutate


def surrogate(data):
    data["index_to_char"][1] = "\ud800"


SETTINGS, VOCAB, CHECKPOINT, BEST = "settings.json", "vocab.json", "checkpoint.npz", "best.npz"

# (id, file, mutation, a fragment of the error that `info` must give, or None where either a clean
# success or a clean error will do). Mutations of the files `sample` reads (all but checkpoint.npz)
# must stop `sample` and `eval` too.
MUTATIONS = [
    ("layers-1e8", SETTINGS, edit_json(SETTINGS, setter("model", "layers", value=10**8)), "layers must be at most 256"),
    ("units-negative", SETTINGS, edit_json(SETTINGS, setter("model", "units", value=-1)), "units must be positive"),
    ("units-fraction", SETTINGS, edit_json(SETTINGS, setter("model", "units", value=1.5)), "wrong form"),
    ("units-string", SETTINGS, edit_json(SETTINGS, setter("model", "units", value="8")), "wrong form"),
    ("units-null", SETTINGS, edit_json(SETTINGS, setter("model", "units", value=None)), "wrong form"),
    ("units-bool", SETTINGS, edit_json(SETTINGS, setter("model", "units", value=True)), "wrong form"),
    ("units-doubled", SETTINGS, edit_json(SETTINGS, setter("model", "units", value=16)),
     "rnn_0/kernel has shape (4, 24), the settings imply (4, 48)"),
    ("embedding-changed", SETTINGS, edit_json(SETTINGS, setter("model", "embedding_dim", value=5)),
     "embedding has shape (22, 4), the settings imply (22, 5)"),
    ("vocab-size-huge", SETTINGS, edit_json(SETTINGS, setter("model", "vocab_size", value=10**7)), "vocab_size must be at most"),
    ("vocab-size-other", SETTINGS, edit_json(SETTINGS, setter("model", "vocab_size", value=23)), "vocabulary size"),
    ("dropout-nan", SETTINGS, edit_json(SETTINGS, setter("model", "dropout", value=math.nan)), "dropout"),
    ("recurrent-dropout-one", SETTINGS, edit_json(SETTINGS, setter("model", "recurrent_dropout", value=1.0)), "recurrent_dropout must be in"),
    ("lr-inf", SETTINGS, edit_json(SETTINGS, setter("train", "learning_rate", value=math.inf)), "learning_rate"),
    ("model-extra-field", SETTINGS, edit_json(SETTINGS, setter("model", "heads", value=4)), "unknown ModelConfig fields"),
    ("batch-huge", SETTINGS, edit_json(SETTINGS, setter("train", "batch_size", value=10**12)), None),
    ("chars-string", SETTINGS, edit_json(SETTINGS, setter("corpus", "chars", value="many")), "corpus chars must be a count"),
    ("chars-negative", SETTINGS, edit_json(SETTINGS, setter("corpus", "chars", value=-1)), "corpus chars must be a count"),
    ("chars-nan", SETTINGS, edit_json(SETTINGS, setter("corpus", "val_chars", value=math.nan)), "corpus val_chars must be a count"),
    ("chars-huge", SETTINGS, edit_json(SETTINGS, setter("corpus", "chars", value=10**12)), None),
    ("bytes-negative", SETTINGS, edit_json(SETTINGS, setter("corpus", "files", 0, "bytes", value=-3)), "bytes is not valid"),
    ("bytes-string", SETTINGS, edit_json(SETTINGS, setter("corpus", "files", 0, "bytes", value="3")), "bytes is not valid"),
    ("path-number", SETTINGS, edit_json(SETTINGS, setter("corpus", "files", 0, "path", value=5)), "path is not valid"),
    ("path-nul", SETTINGS, edit_json(SETTINGS, setter("corpus", "files", 0, "path", value="a\0b")), "path is not valid"),
    ("files-not-list", SETTINGS, edit_json(SETTINGS, setter("corpus", "files", value="x")), "no list of files"),
    ("corpus-list", SETTINGS, edit_json(SETTINGS, setter("corpus", value=[])), "no list of files"),
    ("corpus-missing", SETTINGS, edit_json(SETTINGS, setter("corpus", value=DELETE)), "section missing"),
    ("spread-nan", SETTINGS, edit_json(SETTINGS, setter("spread", "replicas", value=math.nan)), "not a finite number"),
    ("versions-inf", SETTINGS, edit_json(SETTINGS, setter("versions", "numpy", value=[math.inf])), "not a finite number"),
    ("parameters-negative", SETTINGS, edit_json(SETTINGS, setter("parameters", value=-5)), None),
    ("parameters-string", SETTINGS, edit_json(SETTINGS, setter("parameters", value="many")), None),
    ("settings-deep", SETTINGS, write_text(SETTINGS, "[" * 100_000 + "]" * 100_000), "corrupt"),
    ("settings-huge", SETTINGS, write_text(SETTINGS, " " * (17 << 20) + "{}"), "more than a run's settings.json can hold"),
    ("settings-list", SETTINGS, write_text(SETTINGS, "[1, 2]"), "section missing"),
    ("vocab-surrogate", VOCAB, edit_json(VOCAB, surrogate), "surrogate code point U+D800"),
    ("counts-negative", VOCAB, edit_json(VOCAB, setter("counts", 0, value=-1)), "counts must be whole numbers"),
    ("counts-fraction", VOCAB, edit_json(VOCAB, setter("counts", 0, value=1.5)), "counts must be whole numbers"),
    ("counts-string", VOCAB, edit_json(VOCAB, setter("counts", 0, value="3")), "counts must be whole numbers"),
    ("counts-null", VOCAB, edit_json(VOCAB, setter("counts", 0, value=None)), "counts must be whole numbers"),
    ("counts-huge", VOCAB, edit_json(VOCAB, setter("counts", 0, value=10**400)), "counts must be whole numbers"),
    ("counts-nan", VOCAB, edit_json(VOCAB, setter("counts", 0, value=math.nan)), "counts must be whole numbers"),
    ("counts-zero", VOCAB, edit_json(VOCAB, lambda data: data.update(counts=[0] * len(data["counts"]))), "not all 0"),
    ("counts-short", VOCAB, edit_json(VOCAB, lambda data: data["counts"].pop()), "one count per character"),
    ("counts-number", VOCAB, edit_json(VOCAB, setter("counts", value=5)), "one count per character"),
    ("vocab-size-float", VOCAB, edit_json(VOCAB, setter("vocab_size", value=22.0)), "vocab_size must be the number"),
    ("vocab-size-wrong", VOCAB, edit_json(VOCAB, setter("vocab_size", value=23)), "vocab_size must be the number"),
    ("vocab-chars-twice", VOCAB, edit_json(VOCAB, setter("index_to_char", 1, value="a")), "a character twice"),
    ("vocab-two-chars", VOCAB, edit_json(VOCAB, setter("index_to_char", 1, value="ab")), "single characters"),
    ("vocab-number", VOCAB, edit_json(VOCAB, setter("index_to_char", 1, value=7)), "single characters"),
    ("vocab-list", VOCAB, write_text(VOCAB, "[]"), "not an object"),
    ("vocab-huge", VOCAB, write_text(VOCAB, " " * (65 << 20)), "more than a run's vocab.json can hold"),
]
for name in (CHECKPOINT, BEST):
    MUTATIONS += [
        (f"{name}-step-fraction", name, edit_state(name, step=1.5), "no valid step"),
        (f"{name}-step-string", name, edit_state(name, step="12"), "no valid step"),
        (f"{name}-chars-negative", name, edit_state(name, chars_seen=-1), "no valid chars_seen"),
        (f"{name}-state-list", name, edit_npz(name, set_array("state", np.array("[1, 2]"))), "not an object"),
        (f"{name}-state-not-json", name, edit_npz(name, set_array("state", np.array("{step"))), "not JSON"),
        (f"{name}-state-deep", name, edit_npz(name, set_array("state", np.array("[" * 50_000))), "corrupt"),
        (f"{name}-state-long", name, edit_npz(name, set_array("state", np.array(" " * 100_000 + "{}"))), "state"),
        (f"{name}-state-number", name, edit_npz(name, set_array("state", np.arange(3))), "state is not a short string"),
        (f"{name}-state-missing", name, edit_npz(name, set_array("state", DELETE)), "no state"),
        (f"{name}-extra-layer", name, edit_npz(name, set_array("weights/rnn_1/kernel", np.zeros((8, 24), np.float32))),
         "weights/rnn_1/kernel', which is not part of a run's"),
        (f"{name}-extra-member", name, edit_npz(name, set_array("junk", np.zeros(3))), "'junk', which is not part of"),
        (f"{name}-missing-weight", name, edit_npz(name, set_array("weights/output/bias", DELETE)), "weights missing: output/bias"),
        (f"{name}-wrong-shape", name, edit_npz(name, set_array("weights/rnn_0/kernel", np.zeros((5, 24), np.float32))),
         "rnn_0/kernel has shape (5, 24), the settings imply (4, 24)"),
        (f"{name}-bool-weight", name, edit_npz(name, set_array("weights/output/bias", np.zeros(22, bool))), "not a numeric array"),
        (f"{name}-complex-weight", name, edit_npz(name, set_array("weights/output/bias", np.zeros(22, complex))), "not a numeric array"),
        (f"{name}-header-1e9", name, craft_member(name, "weights/embedding", npy_bytes((10**9,))),
         "embedding has shape (1000000000,), the settings imply (22, 4)"),
        (f"{name}-header-lies", name, craft_member(name, "weights/output/bias", npy_bytes((22,), data=b"\0" * 8)),
         "output/bias holds 8 bytes of data, its header declares 88"),
        (f"{name}-header-object", name, craft_member(name, "weights/output/bias", npy_bytes((22,), descr="|O")), "allow_pickle=False"),
        (f"{name}-declares-2gb", name, declared_size(name, "weights/embedding", 2**31 - 1), "declares 2,147,483,647 bytes"),
        (f"{name}-compressed", name, compressed(name), "compressed"),
        (f"{name}-not-npy", name, craft_member(name, "weights/output/bias", b"not an array"), "corrupt"),
    ]
MUTATIONS += [
    ("checkpoint-val-loss-nan", CHECKPOINT, edit_state(CHECKPOINT, last_val_loss=math.nan), "no valid last_val_loss"),
    ("checkpoint-best-loss-string", CHECKPOINT, edit_state(CHECKPOINT, best_val_loss="low"), "no valid best_val_loss"),
    ("checkpoint-elapsed-inf", CHECKPOINT, edit_state(CHECKPOINT, elapsed_s=math.inf), "no valid elapsed_s"),
    ("checkpoint-optimizer-1e9", CHECKPOINT, craft_member(CHECKPOINT, "optimizer/0002", npy_bytes((10**9,))),
     "optimizer/0002 has shape (1000000000,)"),
    ("checkpoint-optimizer-gap", CHECKPOINT, edit_npz(CHECKPOINT, set_array("optimizer/0003", DELETE)), "not numbered"),
    ("checkpoint-optimizer-far", CHECKPOINT, edit_npz(CHECKPOINT, set_array("optimizer/9999", np.zeros(()))), "not part of"),
    ("checkpoint-carry-huge", CHECKPOINT, craft_member(CHECKPOINT, "carry", npy_bytes((10**5, 1, 8))), "carry has shape (100000, 1, 8)"),
    ("checkpoint-carry-fits", CHECKPOINT, edit_npz(CHECKPOINT, set_array("carry", np.zeros((4, 1, 8), np.float32))), None),
    ("best-val-loss-string", BEST, edit_state(BEST, val_loss="low"), "no valid val_loss"),
    ("best-val-loss-nan", BEST, edit_state(BEST, val_loss=math.nan), "no valid val_loss"),
    ("best-val-loss-inf", BEST, edit_state(BEST, val_loss=math.inf), "no valid val_loss"),
    ("best-val-loss-null", BEST, edit_state(BEST, val_loss=None), "no valid val_loss"),
]

COMMANDS = {
    "sample": ["sample", "--length", "5"],
    "info": ["info"],
    "info --json": ["info", "--json"],
    "eval": ["eval"],
}


def _no_constants(name):
    raise ValueError(f"not strict JSON: {name}")


def check_clean(result, command):
    """The command either worked (info --json giving strict JSON) or failed with one Error line and
    exit 1, never a traceback. Returns the error line, or None."""
    if result.exit_code == 0:
        assert result.exception is None and "Traceback" not in result.output
        if command == "info --json":
            json.loads(result.stdout, parse_constant=_no_constants)
        return None
    return assert_error(result, 1)


@pytest.mark.parametrize("name, mutate, fragment", [pytest.param(*m[1:], id=m[0]) for m in MUTATIONS])
def test_mutated_run_file_is_read_cleanly(runner, run_copy, name, mutate, fragment):
    mutate(run_copy)
    for command, args in COMMANDS.items():
        result = invoke(runner, [*args, "-r", run_copy])
        line = check_clean(result, command)
        must_fail = fragment is not None and (command.startswith("info") or name != CHECKPOINT)
        if must_fail:
            assert line is not None, f"{command} accepted it: {result.stdout[:200]!r}"
            assert fragment in line, f"{command}: {fragment!r} not in {line!r}"
            assert str(run_copy / name) in line or "settings" in line


def test_a_crafted_header_is_refused_before_its_array_is_allocated(run_copy):
    # np.load allocates a member's declared shape before reading it: 4 GB for this 2 kB member.
    craft_member(BEST, "weights/embedding", npy_bytes((10**9,)))(run_copy)
    tracemalloc.start()
    try:
        with pytest.raises(RunDirError, match=r"embedding has shape \(1000000000,\), the settings imply \(22, 4\)"):
            RunDir(run_copy).best.read()
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 8 << 20


def test_a_member_declaring_more_than_the_file_holds_is_refused_unread(run_copy):
    declared_size(CHECKPOINT, "optimizer/0000", 11_000)(run_copy)  # within the settings' bound, beyond the file
    with pytest.raises(RunDirError, match="more than the file's"):
        RunDir(run_copy).checkpoint.load()


def test_the_run_as_written_reads_back_exactly(trained_run):
    """The checked reader gives what np.load gives, for every member."""
    checkpoint = RunDir(trained_run).checkpoint.load()
    with np.load(trained_run / CHECKPOINT) as npz:
        for name, value in checkpoint.weights.items():
            np.testing.assert_array_equal(value, npz[f"weights/{name}"])
            assert value.dtype == npz[f"weights/{name}"].dtype and value.flags.writeable
        assert len(checkpoint.optimizer) == sum(k.startswith("optimizer/") for k in npz.files)
        for i, value in enumerate(checkpoint.optimizer):
            np.testing.assert_array_equal(value, npz[f"optimizer/{i:04d}"])
        assert checkpoint.state.to_dict() == json.loads(str(npz["state"][()]))


# --- shapes are named, the same way by sample and by resume ---------------------------------------


def test_weight_shapes_follow_cells_and_the_sampler_names_a_mismatch(trained_run):
    run = RunDir(trained_run)
    cfg = run.settings.read().model
    weights = run.load_weights()
    assert {k: v.shape for k, v in weights.items()} == cells.weight_shapes(cfg)
    wide = ModelConfig(**{**cfg.__dict__, "units": 16})
    with pytest.raises(ValueError, match=r"^rnn_0/kernel has shape \(4, 24\), the settings imply \(4, 48\)$"):
        numpynet.NumpyRNN(wide, weights)


def test_resume_names_a_mismatched_weight_as_sample_does(trained_run):
    from charrnn import model as model_lib

    run = RunDir(trained_run)
    cfg = run.settings.read().model
    wide = ModelConfig(**{**cfg.__dict__, "units": 16})
    with pytest.raises(ValueError, match=r"^rnn_0/kernel has shape \(4, 24\), the settings imply \(4, 48\)$"):
        model_lib.set_weights(model_lib.build_model(wide), wide, run.load_weights())


# --- files that cannot be read are not called corrupt ---------------------------------------------


def denied(target):
    """os.open as it behaves for a file its user may not read."""
    real = os.open

    def fake(path, *args, **kwargs):
        if str(path) == str(target):
            raise PermissionError(13, "Permission denied", str(path))
        return real(path, *args, **kwargs)

    return fake


@pytest.mark.parametrize("name", [SETTINGS, VOCAB, CHECKPOINT, BEST])
def test_permission_denied_says_so_not_corrupt(runner, run_copy, monkeypatch, name):
    # Tests run as root, where chmod 000 does not stop a read: the refusal is injected.
    monkeypatch.setattr(rundir_module.os, "open", denied(run_copy / name))
    for command in ("info", "info --json"):
        result = invoke(runner, [*COMMANDS[command], "-r", run_copy])
        line = assert_error(result, 1, f"cannot read {run_copy / name}: permission denied; fix its permissions")
        assert "corrupt" not in line and "retrain" not in line


def test_permission_denied_on_metrics(run_copy, monkeypatch):
    monkeypatch.setattr(rundir_module.os, "open", denied(run_copy / "metrics.jsonl"))
    with pytest.raises(RunDirError, match="permission denied; fix its permissions"):
        RunDir(run_copy).metrics.read()


def _feed(fifo):
    try:
        fd = os.open(fifo, os.O_WRONLY)  # waits for a reader
        try:
            os.write(fd, b"not a run file")
        finally:
            os.close(fd)
    except OSError:  # the reader went away first
        pass


@pytest.mark.parametrize("name", [VOCAB, BEST])
@pytest.mark.parametrize("kind", ["directory", "fifo"])
def test_a_directory_or_fifo_in_a_files_place_is_named_without_waiting(runner, run_copy, name, kind):
    path = run_copy / name
    path.unlink()
    if kind == "directory":
        path.mkdir()
    else:
        os.mkfifo(path)
    expected = "a directory" if kind == "directory" else "a FIFO"
    for command in ("sample", "info"):
        # A writer for a reader that waits for one (a plain open() does): such a reader then gets
        # text that is no run file and fails this test, instead of waiting for ever.
        writer = threading.Thread(target=_feed, args=(path,), daemon=True) if kind == "fifo" else None
        if writer:
            writer.start()
        result = invoke(runner, [*COMMANDS[command], "-r", run_copy])
        if writer:
            release = os.open(path, os.O_RDONLY | os.O_NONBLOCK)  # lets a writer still waiting go on
            writer.join()
            os.close(release)
        line = assert_error(result, 1, f"cannot read {path}: it is {expected}")
        assert "corrupt" not in line


# --- sampling options ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def loaded(trained_run):
    net, vocab, _ = snapshot.network(trained_run)
    return net, vocab


@pytest.mark.parametrize(
    "options",
    [
        {"temperature": math.nan}, {"temperature": math.inf}, {"temperature": -1.0},
        {"top_p": math.nan}, {"top_p": math.inf}, {"top_p": 0.0}, {"top_k": 0}, {"top_k": 1.5},
        {"length": -1}, {"num_samples": 0},
    ],
    ids=str,
)
def test_the_library_refuses_options_no_draw_can_use(loaded, options):
    net, vocab = loaded
    given = {"temperature": 1.0, "top_k": None, "top_p": None, "length": 5, "num_samples": 1, **options}
    with pytest.raises(UsageError):
        generation.check_sampling_options(**given)
    with pytest.raises(UsageError):
        generation.sample_text(net, vocab, "", **given)


@pytest.mark.parametrize("option, value", [("--temperature", "nan"), ("--temperature", "inf"), ("--top-p", "nan")])
def test_the_command_line_refuses_non_finite_options(runner, trained_run, option, value):
    assert_error(invoke(runner, ["sample", "-r", trained_run, option, value]), 2, "not a finite number")


@pytest.mark.parametrize("temperature", [1e-40, 1e-38, 1e-30])
def test_a_vanishing_temperature_is_argmax(loaded, temperature):
    net, vocab = loaded
    argmax = generation.sample_text(net, vocab, "the ", 60, temperature=0)
    for options in ({}, {"top_p": 0.9}, {"top_k": 3}):
        assert generation.sample_text(net, vocab, "the ", 60, temperature=temperature, random_seed=1, **options) == argmax


def test_scaled_logits_never_reach_nan():
    # Scaled by 1e30, the first two overflow to +inf: inf - inf would be NaN, and a tie.
    logits = np.array([[1e30, 3e30, -3e30, 0.0]], np.float32)
    for options in ({}, {"top_p": 0.5}, {"top_k": 2}):
        assert generation.Chooser(1e-30, rng=np.random.default_rng(0), **options)(logits).tolist() == [1]


# --- memory that does not grow with the input ----------------------------------------------------


def test_long_samples_are_generated_in_groups_under_the_bound(loaded, monkeypatch):
    net, vocab = loaded
    assert sample.group_size(5, 10**9) == 1  # five samples of 10**9: each streamed alone, none held
    assert sample.group_size(5, 500) == 5
    monkeypatch.setattr(sample, "HELD_TOKENS", 100)
    groups = []
    real = sample.generate

    def generate(*args, **kwargs):
        groups.append(args[7])  # num_samples
        return real(*args, **kwargs)

    monkeypatch.setattr(sample, "generate", generate)
    text = "".join(sample.stream_samples(net, vocab, "the ", 60, 1.0, None, None, 5, np.random.default_rng(3)))
    assert groups == [2, 2, 1]  # (group - 1) * 60 held tokens <= 100
    samples = text[:-1].split("\n\n")
    assert text.endswith("\n") and len(samples) >= 5
    assert text.count("the ") >= 5


def test_streamed_samples_are_the_sampled_texts(loaded):
    net, vocab = loaded
    text = "".join(sample.stream_samples(net, vocab, "a", 80, 0.8, None, None, 3, np.random.default_rng(7)))
    assert text == "\n\n".join(generation.sample_text(net, vocab, "a", 80, 0.8, num_samples=3, random_seed=7)) + "\n"


def wide_net(vocab_size=100_000, units=2):
    """A NumpyRNN over a vocabulary of `vocab_size` with random weights."""
    cfg = ModelConfig(model="gru", units=units, embedding_dim=2, vocab_size=vocab_size)
    rng = np.random.default_rng(0)
    weights = {k: rng.normal(size=s).astype(np.float32) for k, s in cells.weight_shapes(cfg).items()}
    return numpynet.NumpyRNN(cfg, weights)


def recording(net, sizes):
    real = net.output

    def output(h):
        logits = real(h)
        sizes.append(logits.size)
        return logits

    net.output = output
    return net


@pytest.mark.parametrize("protocol", ["carried", "window"])
def test_eval_logits_stay_under_the_bound_for_a_large_vocabulary(protocol):
    sizes = []
    net = recording(wide_net(), sizes)
    tokens = np.random.default_rng(1).integers(0, 100_000, 700)
    if protocol == "carried":
        loss = evaluate.carried_loss(net, [tokens])
    else:
        loss = evaluate.windowed_loss(net, tokens, 1)
    assert loss.chars == 699 and math.isfinite(loss.nats)
    assert max(sizes) <= evaluate.BLOCK_LOGITS


def test_report_logits_stay_under_the_bound_for_a_large_vocabulary():
    sizes = []
    net = recording(wide_net(), sizes)
    tokens = np.random.default_rng(1).integers(0, 100_000, 200)
    reading = report.read(net, tokens)
    assert max(sizes) * 8 <= evaluate.BLOCK_LOGITS * 4  # float64 logits: at most 16 MB a block
    assert np.isnan(reading.surprisal[0]) and np.isfinite(reading.surprisal[1:]).all()
    assert reading.top.shape == (200, report.TOP)
    # The top guesses are the most likely, in order.
    assert (np.diff(reading.top_p[1:], axis=1) <= 0).all()


def test_report_reading_is_the_step_by_step_softmax(loaded, trained_run):
    net, vocab = loaded
    tokens = vocab.encode("the and of to a in that is")
    reading = report.read(net, tokens.astype(np.int64))
    state = net.initial_state(1)
    for i, token in enumerate(tokens[:-1]):
        logits, state = net.step(np.array([token]), state)
        z = logits[0].astype(np.float64)
        p = np.exp(z - z.max()) / np.exp(z - z.max()).sum()
        np.testing.assert_allclose(reading.surprisal[i + 1], -np.log(p[tokens[i + 1]]), atol=1e-5)
        assert reading.top[i + 1, 0] == int(np.argmax(p))
        np.testing.assert_allclose(reading.top_p[i + 1], np.sort(p)[::-1][: report.TOP], atol=1e-6)


# --- what reaches a terminal ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "text, shown, count",
    [
        ("red \x1b[31mtext\x1b[0m", "red \\x1b[31mtext\\x1b[0m", 2),
        ("over\rwrite", "over\\rwrite", 1),
        ("bell\x07 del\x7f c1\x9b nul\x00", "bell\\x07 del\\x7f c1\\x9b nul\\x00", 4),
        ("\u202eevil\u202c and \u2066isolate\u2069", "\\u202eevil\\u202c and \\u2066isolate\\u2069", 4),
        ("lines\nand\ttabs stay, café 🙂", "lines\nand\ttabs stay, café 🙂", 0),
    ],
)
def test_control_characters_are_made_visible(text, shown, count):
    assert sample.visible(text) == (shown, count)


DRAW = ["--length", "100", "--temperature", "1", "--random-seed", "1"]


@pytest.fixture
def escaping_run(run_copy, trained_run):
    """A copy of the run whose vocabulary has ESC and U+202E in place of the two characters that
    its sample of DRAW uses most."""
    net, vocab, _ = snapshot.network(trained_run)
    text = generation.sample_text(net, vocab, "", 100, temperature=1.0, random_seed=1)[0]
    common = sorted({c for c in text if c != "\n"}, key=text.count, reverse=True)[:2]
    data = json.loads((run_copy / VOCAB).read_text(encoding="utf-8"))
    for c, control in zip(common, ["\x1b", "\u202e"]):
        data["index_to_char"][data["index_to_char"].index(c)] = control
    (run_copy / VOCAB).write_text(json.dumps(data), encoding="utf-8")
    return run_copy


def run_on_terminal(*args):
    """Runs charrnn with stdout on a pseudo-terminal; returns (what the terminal got, stderr, rc)."""
    master, slave = pty.openpty()
    process = subprocess.Popen(
        charrnn_command(*args), stdout=slave, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, env=subprocess_env()
    )
    os.close(slave)
    received = b""
    while True:
        try:
            chunk = os.read(master, 4096)
        except OSError:  # the other end closed
            break
        if not chunk:
            break
        received += chunk
    os.close(master)
    stderr = process.stderr.read().decode()
    return received.decode(), stderr, process.wait(timeout=60)


def test_a_terminal_gets_control_characters_escaped_and_is_told(escaping_run):
    shown, stderr, rc = run_on_terminal("sample", "-r", escaping_run, *DRAW)
    assert rc == 0, stderr
    assert "\x1b" not in shown and "\u202e" not in shown
    assert "\\x1b" in shown and "\\u202e" in shown
    assert stderr.count("note: ") == 1 and "--raw" in stderr


def test_raw_sends_them_to_a_terminal_as_they_are(escaping_run):
    shown, stderr, rc = run_on_terminal("sample", "-r", escaping_run, *DRAW, "--raw")
    assert rc == 0, stderr
    assert "\x1b" in shown and "\u202e" in shown and "\\x1b" not in shown
    assert stderr == ""


def test_a_pipe_gets_the_raw_text(runner, escaping_run):
    result = invoke(runner, ["sample", "-r", escaping_run, *DRAW])
    assert result.exit_code == 0, result.output
    assert "\x1b" in result.stdout and "\\x1b" not in result.stdout
    assert result.stderr == ""


def test_info_shows_control_characters_in_paths_escaped(runner, run_copy):
    edit_json(SETTINGS, setter("corpus", "files", 0, "path", value="/tmp/\x1b]0;pwned\x07.txt"))(run_copy)
    result = invoke(runner, ["info", "-r", run_copy])
    assert result.exit_code == 0, result.output
    assert "\x1b" not in result.stdout and "/tmp/\\x1b]0;pwned\\x07.txt" in result.stdout
    as_json = json.loads(invoke(runner, ["info", "--json", "-r", run_copy]).stdout)
    assert as_json["corpus"] == "/tmp/\x1b]0;pwned\x07.txt"


# --- the vocabulary's JSON -----------------------------------------------------------------------


def test_vocab_json_round_trips_control_characters():
    vocab = Vocab.from_text("a\x1b[0m\r\n\u202e")
    assert Vocab.from_json(vocab.to_json()) == vocab
