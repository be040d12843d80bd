"""Reading a corpus and cutting it into windows: bad files, exact byte offsets, the split's
minimum, and the off-by-one between inputs and targets."""

import hashlib
import io

import numpy as np
import pytest

from charrnn import corpus as corpus_lib, data
from charrnn.disktext import DiskText
from charrnn.errors import CorpusError
from charrnn.vocab import Vocab
from helpers import make_text


def write(tmp_path, name, content):
    path = tmp_path / name
    path.write_bytes(content if isinstance(content, bytes) else content.encode("utf-8"))
    return path


# --- reading ---------------------------------------------------------------------------------------


def test_files_are_concatenated_in_order_with_their_hashes(tmp_path):
    a = write(tmp_path, "a.txt", "héllo ")
    b = write(tmp_path, "b.txt", "wörld 🙂")
    corpus = corpus_lib.load_corpus([str(a), str(b)])
    assert corpus.vocab.decode(corpus.ids) == "héllo wörld 🙂"
    assert corpus.ids.dtype == np.uint8
    assert [f["path"] for f in corpus.files] == [str(a.resolve()), str(b.resolve())]
    assert corpus.files[1]["bytes"] == len("wörld 🙂".encode())
    assert corpus.files[1]["sha256"] == hashlib.sha256("wörld 🙂".encode()).hexdigest()


def test_stdin_is_read_and_recorded_as_dash():
    corpus = corpus_lib.load_corpus(["-"], stdin=io.BytesIO("from a pipe 🙂\n".encode()))
    assert corpus.vocab.decode(corpus.ids) == "from a pipe 🙂\n"
    assert corpus.files[0]["path"] == "-"


def test_stdin_that_is_a_terminal_is_refused():
    class Terminal(io.BytesIO):
        def isatty(self):
            return True

    with pytest.raises(CorpusError, match="standard input is a terminal"):
        corpus_lib.load_corpus(["-"], stdin=Terminal(b"never read"))


def test_resuming_a_stdin_run_from_a_terminal_or_an_empty_stdin_says_how_to_resume():
    # The run was trained from standard input: the hint resumes it (--resume), and an empty stdin
    # says that the run needs its text piped in again.
    class Terminal(io.BytesIO):
        def isatty(self):
            return True

    with pytest.raises(CorpusError) as refused:
        corpus_lib.scan(["-"], stdin=Terminal(b""), resuming="my-run")
    assert "the corpus of the run in my-run is - (standard input)" in str(refused.value)
    assert str(refused.value).endswith("cat novel.txt | charrnn train --resume -r my-run -")
    with pytest.raises(CorpusError) as empty:
        corpus_lib.scan(["-"], stdin=io.BytesIO(b""), resuming="my-run")
    assert "standard input is empty, but the run in my-run was trained from standard input" in str(empty.value)
    assert str(empty.value).endswith("cat novel.txt | charrnn train --resume -r my-run -")


def test_a_byte_order_mark_is_not_text(tmp_path):
    corpus = corpus_lib.load_corpus([str(write(tmp_path, "bom.txt", b"\xef\xbb\xbfabc"))])
    assert corpus.vocab.decode(corpus.ids) == "abc"


def test_multibyte_characters_split_across_chunks(tmp_path, monkeypatch):
    monkeypatch.setattr(corpus_lib, "CHUNK_BYTES", 3)
    text = "aé🙂b€日"
    corpus = corpus_lib.load_corpus([str(write(tmp_path, "c.txt", text))])
    assert corpus.vocab.decode(corpus.ids) == text


def test_missing_file(tmp_path):
    with pytest.raises(CorpusError, match="corpus file not found: .*nope.txt"):
        corpus_lib.load_corpus([str(tmp_path / "nope.txt")])


def test_directory(tmp_path):
    with pytest.raises(CorpusError, match="is a directory"):
        corpus_lib.load_corpus([str(tmp_path)])


def test_empty_file_is_named(tmp_path):
    full = write(tmp_path, "full.txt", "some text")
    empty = write(tmp_path, "empty.txt", "")
    with pytest.raises(CorpusError, match=r"empty.txt is empty"):
        corpus_lib.load_corpus([str(full), str(empty)])


@pytest.mark.parametrize(
    "content, offset",
    [
        (b"hello\xffworld", 5),
        (b"caf\xc3\xa9 \xc3(", 6),  # a lead byte followed by a non-continuation byte
        ("é".encode() * 10 + b"\x80", 20),
        (b"abc\xe2\x82", 3),  # the file ends inside a character
    ],
)
def test_invalid_utf8_names_file_and_byte_offset(tmp_path, monkeypatch, content, offset):
    monkeypatch.setattr(corpus_lib, "CHUNK_BYTES", 4)  # offsets must survive chunk boundaries
    path = write(tmp_path, "latin.txt", content)
    with pytest.raises(CorpusError) as caught:
        corpus_lib.load_corpus([str(path)])
    message = str(caught.value)
    assert "latin.txt is not valid UTF-8" in message
    assert f"byte offset {offset})" in message
    assert "iconv" in message


def test_nul_bytes_mean_binary(tmp_path):
    path = write(tmp_path, "image.png", b"\x89PNG\r\n\x1a\n\x00\x00")
    with pytest.raises(CorpusError, match=r"image.png looks like a binary file \(NUL byte at byte offset 8\)"):
        corpus_lib.load_corpus([str(path)])


def test_nul_byte_offset_counts_earlier_chunks(tmp_path, monkeypatch):
    monkeypatch.setattr(corpus_lib, "CHUNK_BYTES", 4)
    path = write(tmp_path, "notes.txt", "abcdé\x00".encode())
    with pytest.raises(CorpusError, match=r"notes.txt looks like a binary file \(NUL byte at byte offset 6\)"):
        corpus_lib.load_corpus([str(path)])


def test_resumed_vocabulary_refuses_new_characters(tmp_path):
    path = write(tmp_path, "c.txt", "abcz")
    with pytest.raises(CorpusError, match="'z'"):
        corpus_lib.load_corpus([str(path)], vocab=Vocab.from_text("abc"))
    corpus = corpus_lib.load_corpus([str(path)], vocab=Vocab.from_text("abcdz"))
    assert corpus.ids.tolist() == [0, 1, 2, 4]


# --- splitting -------------------------------------------------------------------------------------


@pytest.mark.parametrize("seq_length", [1, 2, 8, 25, 100])
@pytest.mark.parametrize("val_fraction", [0.01, 0.1, 0.25, 0.5, 0.9])
def test_min_corpus_chars_is_the_exact_minimum(seq_length, val_fraction):
    n = data.min_corpus_chars(seq_length, val_fraction)
    ids = np.zeros(n, np.uint8)
    train, val = data.split(ids, seq_length, val_fraction)
    assert min(len(train), len(val)) >= seq_length + 1
    with pytest.raises(CorpusError):
        data.split(ids[:-1], seq_length, val_fraction)


def test_too_short_says_the_minimum():
    need = data.min_corpus_chars(8, 0.1)
    with pytest.raises(CorpusError) as caught:
        data.split(np.zeros(need - 1, np.uint8), 8, 0.1)
    assert f"{need - 1:,} characters" in str(caught.value)
    assert f"needs at least {need:,}" in str(caught.value)


def test_split_holds_out_the_end():
    ids = np.arange(100, dtype=np.uint8)
    train, val = data.split(ids, 4, 0.1)
    assert train.tolist() == list(range(90)) and val.tolist() == list(range(90, 100))


# --- windows ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("num_train, seq_length, batch_size", [(9, 8, 4), (100, 8, 4), (1000, 7, 5), (50, 1, 3)])
def test_epoch_plan_windows_stay_inside_and_cover_each_target_once(num_train, seq_length, batch_size):
    plan = data.epoch_plan(num_train, seq_length, batch_size, seed=3, epoch=1)
    assert plan.shape[1] == batch_size
    starts = plan.ravel()
    assert starts.min() >= 0 and starts.max() + seq_length <= num_train - 1  # window of seq_length + 1 fits
    num_windows = (num_train - 1 - starts.min()) // seq_length
    distinct = np.unique(starts)
    assert len(distinct) == num_windows  # the last batch repeats windows, nothing else does
    assert np.all(np.diff(distinct) == seq_length)  # windows tile the text: each target once
    assert plan.shape[0] == -(-num_windows // batch_size)


def test_epoch_plan_depends_on_seed_and_epoch_only():
    a = data.epoch_plan(1000, 8, 4, seed=1, epoch=0)
    assert np.array_equal(a, data.epoch_plan(1000, 8, 4, seed=1, epoch=0))
    assert not np.array_equal(a, data.epoch_plan(1000, 8, 4, seed=1, epoch=1))
    assert not np.array_equal(a, data.epoch_plan(1000, 8, 4, seed=2, epoch=0))


def test_windows_targets_are_inputs_shifted_by_one():
    seq_length = 5
    ids = (np.arange(60) * 7 % 251).astype(np.uint8)  # distinct neighbours: any shift is visible
    plan = data.epoch_plan(len(ids), seq_length, 3, seed=0, epoch=0)
    for starts in plan:
        x, y = data.windows(ids, starts, seq_length)
        assert x.shape == y.shape == (3, seq_length) and x.dtype == np.int32
        for row, start in enumerate(starts):
            window = ids[start : start + seq_length + 1]
            assert x[row].tolist() == window[:-1].tolist()
            assert y[row].tolist() == window[1:].tolist()


def test_epoch_batches_resume_mid_epoch_with_the_same_batches():
    plan = data.epoch_plan(1000, 7, 5, seed=4, epoch=2)
    later = list(data.epoch_batches(1000, 7, 5, seed=4, epoch=2, first=10))
    assert np.array_equal(np.array(later), plan[10:])


def test_validation_windows_use_every_character_once():
    val = (np.arange(43) * 5 % 256).astype(np.uint8)
    x, y = data.validation_windows(val, 6, max_chars=10_000)
    assert x.shape == y.shape == (7, 6) and x.dtype == np.int32
    assert x.ravel().tolist() == val[:42].tolist()
    assert y.ravel().tolist() == val[1:43].tolist()


def test_validation_windows_are_capped_and_spread_out():
    val = np.arange(1001, dtype=np.uint16)
    x, y = data.validation_windows(val, 10, max_chars=200)
    assert x.shape == (20, 10)
    assert np.array_equal(y, x + 1)
    assert x[0, 0] == 0 and x[-1, 0] == 990  # evenly spaced from the first to the last window
    assert len(np.unique(x[:, 0])) == 20


# --- the encoded corpus on disk --------------------------------------------------------------------


def test_disk_text_reads_windows_and_slices_like_an_array(tmp_path):
    from charrnn.rundir import RunDir

    ids = (np.arange(5000) * 7 % 65521).astype(np.uint16)
    run = RunDir(tmp_path)
    text = run.corpus.write(len(ids), np.uint16, [ids[:1234], ids[1234:]])
    assert isinstance(text, DiskText) and len(text) == 5000
    assert np.array_equal(np.asarray(text), ids)
    assert np.array_equal(np.load(tmp_path / "corpus.npy"), ids)  # a plain .npy file
    train, val = data.split(text, 10, 0.1)
    assert len(train) == 4500 and np.array_equal(np.asarray(val), ids[4500:])
    starts = np.array([0, 17, 4489])
    x, y = data.windows(train, starts, 10)
    expected_x, expected_y = data.windows(ids[:4500], starts, 10)
    assert np.array_equal(x, expected_x) and np.array_equal(y, expected_y)
    with pytest.raises(IndexError):
        train.rows(np.array([4495]), 11)  # past the end of the training part
    assert run.corpus.read(5000, np.uint8) is None and run.corpus.read(4999, np.uint16) is None


@pytest.mark.parametrize("damage", [b"not an npy file", None])
def test_a_damaged_corpus_file_is_not_used(tmp_path, damage):
    from charrnn.rundir import RunDir

    run = RunDir(tmp_path)
    run.corpus.write(100, np.uint8, [np.arange(100, dtype=np.uint8)])
    path = tmp_path / "corpus.npy"
    if damage is None:
        path.write_bytes(path.read_bytes()[:-1])  # truncated: the size no longer matches the header
    else:
        path.write_bytes(damage)
    assert run.corpus.read(100, np.uint8) is None


@pytest.mark.slow
def test_training_encodes_once_and_never_reads_the_whole_corpus(tmp_path, monkeypatch):
    from charrnn.train import train
    from helpers import TINY_MODEL, TINY_TRAIN

    def whole(self, *args, **kwargs):
        raise AssertionError("the whole corpus was read into memory")

    monkeypatch.setattr(DiskText, "__array__", whole)
    corpus = write(tmp_path, "corpus.txt", make_text(3000).encode())
    run = tmp_path / "run"
    # Few steps, evaluated once at the end: the three trainings are about the encoded copy.
    options = dict(TINY_TRAIN, epochs=1, batch_size=16, eval_every_s=1000.0)
    train([str(corpus)], str(run), dict(TINY_MODEL), options, quiet=True, log=lambda line: None)
    encoded = run / "corpus.npy"
    monkeypatch.undo()
    assert np.array_equal(np.load(encoded), corpus_lib.load_corpus([str(corpus)]).ids)
    first = encoded.stat()
    # Resuming on the same text reuses the encoded copy; without one, it is written again.
    train([str(corpus)], str(run), {}, dict(epochs=2), resume=True, quiet=True, log=lambda line: None)
    assert (encoded.stat().st_ino, encoded.stat().st_mtime_ns) == (first.st_ino, first.st_mtime_ns)
    encoded.unlink()
    train([str(corpus)], str(run), {}, dict(epochs=3), resume=True, quiet=True, log=lambda line: None)
    assert np.array_equal(np.load(encoded), corpus_lib.load_corpus([str(corpus)]).ids)


# --- windows for training with the state carried ---------------------------------------------------


@pytest.mark.parametrize("num_train, seq_length, batch_size", [(33, 8, 4), (900, 8, 4), (1000, 7, 5), (5000, 10, 3)])
def test_epoch_streams_continue_each_row_and_stay_inside(num_train, seq_length, batch_size):
    expected = data.batches_per_epoch(num_train, seq_length, batch_size, carry=True)
    offsets = set()
    for epoch in range(6):
        batches = list(data.epoch_streams(num_train, seq_length, batch_size, 0, epoch))
        assert len(batches) == expected >= 1
        # Row b of each batch begins where row b of the batch before ended: one stream per row.
        for before, after in zip(batches, batches[1:]):
            np.testing.assert_array_equal(after, before + seq_length)
        first, last = batches[0], batches[-1]
        assert first.min() >= 0 and last.max() + seq_length + 1 <= num_train
        # The streams do not overlap: each target is seen at most once an epoch.
        assert (np.diff(first) >= len(batches) * seq_length).all()
        offsets.add(int(first[0]))
    if num_train - 1 >= (batch_size + 1) * seq_length:
        assert len(offsets) > 1  # window edges move from epoch to epoch


def test_epoch_streams_resume_mid_epoch_with_the_same_batches():
    whole = list(data.epoch_streams(2000, 9, 4, 3, 2))
    np.testing.assert_array_equal(np.array(list(data.epoch_streams(2000, 9, 4, 3, 2, first=5))), np.array(whole[5:]))


def test_too_short_for_streams_says_what_to_do():
    data.check_streams(33, 8, 4)  # exactly four windows of 8, plus the last target
    with pytest.raises(CorpusError, match="too short to carry the state .* needs 33.*--state reset"):
        data.check_streams(32, 8, 4)


@pytest.mark.slow
def test_carried_training_feeds_each_stream_contiguous_text(tmp_path, monkeypatch):
    # What the training step is given: row b of step k + 1 is the text that follows row b of
    # step k, within an epoch.
    from charrnn.train import train
    from helpers import TINY_MODEL

    corpus = tmp_path / "c.txt"
    corpus.write_text(make_text(1000), encoding="utf-8")
    seen = []
    windows = data.windows

    def recording(text, starts, seq_length):
        x, y = windows(text, starts, seq_length)
        if seq_length == 8 and len(starts) == 4:  # a training step's (one replica: all four rows)
            seen.append((np.asarray(starts).copy(), x, y))
        return x, y

    monkeypatch.setattr(data, "windows", recording)
    train_cfg = {"seq_length": 8, "batch_size": 4, "epochs": 1, "eval_every_s": 1000.0, "state": "carry"}
    train([str(corpus)], str(tmp_path / "run"), dict(TINY_MODEL), train_cfg, quiet=True, log=lambda line: None, strategy="one")
    assert len(seen) == data.batches_per_epoch(900, 8, 4, carry=True)
    for (starts, x, y), (next_starts, next_x, _) in zip(seen, seen[1:]):
        np.testing.assert_array_equal(next_starts, starts + 8)
        np.testing.assert_array_equal(next_x[:, 0], y[:, -1])  # the next input is this window's last target
