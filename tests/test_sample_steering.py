"""Steering `charrnn sample`: --stop, --seed-file and --interactive (the last also under a real
pseudo-terminal)."""

import os
import pty
import select
import subprocess
import time

import numpy as np
import pytest

from charrnn import generation, sample, snapshot
from charrnn.chat import Conversation, run
from charrnn.errors import UsageError
from charrnn.stopping import Stops, cut, unescape
from helpers import assert_error, charrnn_command, invoke, subprocess_env


@pytest.fixture(scope="module")
def loaded(trained_run):
    net, vocab, _ = snapshot.network(trained_run)
    return net, vocab


def streamed(loaded, **kwargs):
    net, vocab = loaded
    return "".join(sample.stream_samples(net, vocab, rng=np.random.default_rng(3), **kwargs))


def test_unescape_reads_escapes_and_refuses_typos():
    assert unescape(r"\n\n") == "\n\n"
    assert unescape(r"a\tb\\c\x41\u00e9\U0001F3AD\e") == "a\tb\\cAé🎭\x1b"
    assert unescape("plain é") == "plain é"
    for bad in (r"\q", "end\\", r"\ud800", r"\U00110000"):
        with pytest.raises(UsageError):
            unescape(bad)


def test_stops_watches_each_stream_and_fires_once(loaded):
    _, vocab = loaded
    ids = vocab.encode("ab")
    stops = Stops(vocab, "ab", 2)
    other = vocab.encode(" ")[0]
    assert not stops.update(np.array([ids[0], other])).any()
    assert stops.update(np.array([ids[1], ids[0]])).tolist() == [True, False]
    assert stops.update(np.array([ids[0], ids[1]])).tolist() == [False, True]
    assert stops.all_stopped
    assert not Stops(vocab, "\u4e2d", 1).possible  # never seen: never stops


def test_stop_ends_each_sample_after_the_first_stop_text(loaded):
    net, vocab = loaded
    samples = generation.sample_text(net, vocab, "the", 300, temperature=1.0, num_samples=3, random_seed=3)
    stopped = streamed(loaded, seed="the", length=300, temperature=1.0, num_samples=3, stop=" ")
    cut_samples = stopped[:-1].split("\n\n")
    assert len(cut_samples) == 3
    for whole, short in zip(samples, cut_samples):
        # The same draws up to the stop (the seed, which has no space, is not searched), the stop printed.
        assert short == "the" + cut(whole[3:], " ")
        assert short.endswith(" ") and short.count(" ") == 1
    assert len(stopped) < sum(len(s) for s in samples)


def test_stop_text_that_never_comes_leaves_the_length(loaded):
    net, vocab = loaded
    text = streamed(loaded, seed="a", length=50, temperature=0, stop="\u4e2d\u6587")
    assert text == generation.sample_text(net, vocab, "a", 50, temperature=0)[0] + "\n"


def test_cli_stop_and_seed_file(runner, trained_run, tmp_path):
    seed = tmp_path / "seed.txt"
    seed.write_text("the cat", encoding="utf-8")
    by_file = invoke(runner, ["sample", "-r", trained_run, "--seed-file", seed, "--argmax", "--length", "80"])
    by_flag = invoke(runner, ["sample", "-r", trained_run, "--seed", "the cat", "--argmax", "--length", "80"])
    assert by_file.exit_code == 0, by_file.output
    assert by_file.stdout == by_flag.stdout and by_file.stdout.startswith("the cat")
    from_stdin = invoke(runner, ["sample", "-r", trained_run, "--seed-file", "-", "--argmax", "--length", "80"], input="the cat")
    assert from_stdin.stdout == by_flag.stdout
    stopped = invoke(runner, ["sample", "-r", trained_run, "--seed", "the cat", "--argmax", "--length", "80", "--stop", r"\n"])
    assert stopped.exit_code == 0, stopped.output
    body = by_flag.stdout[len("the cat"):]
    if "\n" in body[:-1]:
        assert stopped.stdout == "the cat" + cut(body, "\n") + "\n"
    else:
        assert stopped.stdout == by_flag.stdout


def test_cli_refuses_bad_seed_files_and_combinations(runner, trained_run, tmp_path):
    binary = tmp_path / "latin1.txt"
    binary.write_bytes(b"caf\xe9")
    big = tmp_path / "big.txt"
    big.write_bytes(b"a" * (sample.MAX_SEED_BYTES + 1))
    cases = [
        (["--seed-file", tmp_path / "missing.txt"], "cannot read the seed file"),
        (["--seed-file", tmp_path], "cannot read the seed file"),
        (["--seed-file", binary], "is not UTF-8 text"),
        (["--seed-file", big], "is over 1 MiB"),
        (["--seed-file", binary, "--seed", "a"], "not both"),
        (["--interactive", "--seed-file", "-"], "give --seed-file a file"),
        (["--interactive", "-n", "2"], "leave out --num-samples"),
        (["--stop", r"\q"], "unknown escape"),
    ]
    for extra, fragment in cases:
        assert_error(invoke(runner, ["sample", "-r", trained_run, *extra]), 2, fragment)
    unseen = tmp_path / "unseen.txt"
    unseen.write_text("\u4e2d", encoding="utf-8")
    assert_error(invoke(runner, ["sample", "-r", trained_run, "--seed-file", unseen]), 1, "never saw")


def test_conversation_carries_state_between_turns_and_resets(loaded):
    net, vocab = loaded
    talk = Conversation(net, vocab, temperature=0)
    talk.feed("the")
    first = "".join(talk.reply(20))
    assert first == generation.sample_text(net, vocab, "the", 20, temperature=0)[0][3:]
    talk.feed(" cat")
    second = "".join(talk.reply(20))
    # The state carried: the second turn continues the whole conversation so far.
    assert second == generation.sample_text(net, vocab, "the" + first + " cat", 20, temperature=0)[0][-20:]
    talk.reset()
    talk.feed("the")
    assert "".join(talk.reply(20)) == first


def test_scripted_session_answers_each_line_on_one_line(loaded):
    net, vocab = loaded
    out, notes = [], []
    lines = ["the\n", "\u4e2d\n", "/reset\n", "the"]
    refused = run(Conversation(net, vocab, temperature=0), iter(lines), out.append, notes.append, 30, stop=" ")
    answers = "".join(out).split("\n")[:-1]
    assert refused == 1 and len(answers) == 3 and answers[1] == ""  # one answer per line, reset gives none
    assert answers[0] == answers[2]  # after /reset, the same line gets the same answer
    assert answers[0] == cut(generation.sample_text(net, vocab, "the", 30, temperature=0)[0][3:], " ").rstrip("\n")
    assert any("never saw" in n for n in notes) and "(state reset)" in notes


def test_cli_interactive_without_a_terminal(runner, trained_run):
    result = invoke(runner, ["sample", "-r", trained_run, "-i", "--argmax", "--length", "15"], input="the\ncat\n")
    assert result.exit_code == 0, result.output
    assert len(result.stdout.split("\n")) >= 3 and result.stdout.endswith("\n")
    refused = invoke(runner, ["sample", "-r", trained_run, "-i", "--length", "5"], input="\u4e2d\n")
    assert refused.exit_code == 1 and refused.stdout == "\n"  # the skipped line's empty answer
    assert refused.stderr.splitlines()[-1] == "Error: 1 input line had characters the model never saw and got empty answers"
    assert "Traceback" not in refused.output


def read_until(fd, needle, timeout=60):
    seen = b""
    deadline = time.monotonic() + timeout
    while needle not in seen and time.monotonic() < deadline:
        ready, _, _ = select.select([fd], [], [], 0.5)
        if ready:
            try:
                chunk = os.read(fd, 4096)
            except OSError:  # the child closed the terminal
                break
            if not chunk:
                break
            seen += chunk
    return seen


def test_interactive_on_a_real_terminal(trained_run, loaded):
    net, vocab = loaded
    expected = generation.sample_text(net, vocab, "the", 12, temperature=0)[0][3:]
    parent, child = pty.openpty()
    process = subprocess.Popen(
        charrnn_command("sample", "-r", trained_run, "--interactive", "--argmax", "--length", "12"),
        stdin=child, stdout=child, stderr=child, env=subprocess_env(), close_fds=True,
    )
    os.close(child)
    try:
        assert b"Ctrl-D ends" in read_until(parent, b"> ")
        os.write(parent, b"the\n")
        answer = read_until(parent, b"> ").decode("utf-8", errors="replace").replace("\r\n", "\n")
        assert expected.replace("\n", "") in answer.replace("\n", "")  # the tiny corpus has no control characters
        os.write(parent, b"\x04")  # Ctrl-D on an empty line ends the session
        assert process.wait(timeout=60) == 0
    finally:
        process.kill()
        os.close(parent)
