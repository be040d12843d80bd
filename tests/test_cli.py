"""The command line: an end-to-end run, and one clear line and the right exit code for every bad
input."""

import json
import subprocess

import pytest

from charrnn.cli import cli
from charrnn.data import min_corpus_chars
from helpers import TINY_FLAGS, assert_error, charrnn_command, invoke, make_text, subprocess_env


@pytest.mark.parametrize("command", [[], ["train"], ["sample"], ["info"]])
def test_help(runner, command):
    result = invoke(runner, [*command, "--help"])
    assert result.exit_code == 0, result.output
    assert "Usage: " in result.stdout and "--run-dir" in result.stdout or not command
    if not command:
        assert all(name in result.stdout for name in ("train", "sample", "info"))


def test_every_command_has_help(runner):
    for name in cli.commands:
        result = invoke(runner, [name, "-h"])
        assert result.exit_code == 0 and f"Usage: cli {name}" in result.stdout, name


@pytest.mark.slow
def test_end_to_end_from_stdin_train_resume_sample_info(runner, tmp_path):
    text = make_text(600, seed=1)
    run = tmp_path / "run"
    train = ["train", "-", "-r", run, *TINY_FLAGS, "--epochs", "1", "--eval-every", "0.001", "-q"]
    result = invoke(runner, train, input=text.encode())
    assert result.exit_code == 0, result.output
    assert result.stdout == ""  # everything a training says goes to stderr
    assert "trained " in result.stderr and "best validation loss" in result.stderr
    settings = json.loads((run / "settings.json").read_text())
    assert settings["corpus"]["files"][0]["path"] == "-"
    first = json.loads(invoke(runner, ["info", "-r", run, "--json"]).stdout)
    assert first["steps"] > 0 and first["epochs_done"] == 1

    rows_before = (run / "metrics.jsonl").read_text().splitlines()

    # Resume with a larger budget and another learning rate: the corpus is standard input again,
    # and the step count, the metrics and the loss go on from where they were.
    resume = ["train", "--resume", "-r", run, "--epochs", "2", "--learning-rate", "0.002", "-q"]
    result = invoke(runner, resume, input=text.encode())
    assert result.exit_code == 0, result.output
    assert result.stdout == ""
    assert f"resuming {run} at step {first['steps']:,}" in result.stderr
    second = json.loads(invoke(runner, ["info", "-r", run, "--json"]).stdout)
    assert second["steps"] == 2 * first["steps"] and second["epochs_done"] == 2
    assert second["chars_seen"] == 2 * first["chars_seen"]
    assert second["training_time_s"] >= first["training_time_s"]
    assert second["training"]["epochs"] == 2 and second["training"]["learning_rate"] == 0.002
    rows = (run / "metrics.jsonl").read_text().splitlines()
    assert rows[: len(rows_before)] == rows_before
    assert [json.loads(row)["step"] for row in rows] == list(range(1, second["steps"] + 1))
    # An untrained model's loss is about 0.4 higher: resuming did not start over.
    assert abs(json.loads(rows[len(rows_before)])["val_loss"] - json.loads(rows_before[-1])["val_loss"]) < 0.05

    result = invoke(runner, ["sample", "-r", run, "--seed", "the café", "--length", "40", "--random-seed", "3"])
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith("the café") and len(result.stdout) == len("the café") + 40 + 1
    assert result.stderr == ""
    again = invoke(runner, ["sample", "-r", run, "--seed", "the café", "--length", "40", "--random-seed", "3"])
    assert again.stdout == result.stdout
    samples = invoke(runner, ["sample", "-r", run, "--length", "30", "-n", "3", "--argmax"]).stdout
    assert samples.count("\n\n") >= 2

    result = invoke(runner, ["info", "-r", run])
    assert result.exit_code == 0, result.output
    assert f"steps:             {second['steps']:,}" in result.stdout
    assert "vocab_size:" in result.stdout and "best_val_loss:" in result.stdout


def test_resume_from_stdin_refuses_other_text(runner, trained_run, tmp_path):
    import shutil

    run = tmp_path / "run"
    shutil.copytree(trained_run, run)
    settings = json.loads((run / "settings.json").read_text())
    settings["corpus"]["files"][0]["path"] = "-"
    (run / "settings.json").write_text(json.dumps(settings))
    result = invoke(runner, ["train", "--resume", "-r", run], input=b"the and of to a in that is")
    assert_error(result, 1, "differs from the one this run was trained on", "--force")
    result = invoke(runner, ["train", "--resume", "-r", run], input=b"")
    assert_error(result, 1, "standard input is empty, but the run in", "was trained from standard input", "charrnn train --resume -r")


def test_sample_into_head_ends_quietly(trained_run, tmp_path):
    command = " ".join(f"'{part}'" for part in charrnn_command("sample", "-r", trained_run, "--length", "100000", "-n", "2"))
    script = f"set -u; {command} 2>'{tmp_path}/err' | head -c 10 > '{tmp_path}/out'; echo ${{PIPESTATUS[0]}}"
    done = subprocess.run(["bash", "-c", script], capture_output=True, text=True, timeout=120, env=subprocess_env())
    assert done.stdout.strip() == "0", done.stdout + done.stderr
    assert (tmp_path / "err").read_text() == ""
    assert len((tmp_path / "out").read_bytes()) == 10


def test_version(runner):
    result = invoke(runner, ["--version"])
    assert result.exit_code == 0 and result.stdout.startswith("charrnn, version ")


# --- bad input -------------------------------------------------------------------------------------


def corpus(tmp_path, content, name="corpus.txt"):
    path = tmp_path / name
    path.write_bytes(content if isinstance(content, bytes) else content.encode())
    return path


def test_missing_corpus_file(runner, tmp_path):
    result = invoke(runner, ["train", tmp_path / "novel.txt", "-r", tmp_path / "run"])
    assert_error(result, 1, f"corpus file not found: {tmp_path / 'novel.txt'}")


def test_empty_corpus(runner, tmp_path):
    result = invoke(runner, ["train", corpus(tmp_path, ""), "-r", tmp_path / "run"])
    assert_error(result, 1, "corpus.txt is empty")


def test_corpus_too_short_says_the_minimum(runner, tmp_path):
    need = min_corpus_chars(8, 0.1)
    result = invoke(runner, ["train", corpus(tmp_path, "ab" * 20), "-r", tmp_path / "run", "--seq-length", "8"])
    assert_error(result, 1, "the corpus is too short: 40 characters", f"needs at least {need}")


def test_invalid_utf8_names_file_and_offset(runner, tmp_path):
    path = corpus(tmp_path, "naïve ".encode() + b"caf\xe9 au lait", "latin1.txt")
    result = invoke(runner, ["train", path, "-r", tmp_path / "run"])
    assert_error(result, 1, f"{path} is not valid UTF-8 (byte offset 10)")


def test_binary_corpus(runner, tmp_path):
    path = corpus(tmp_path, b"ELF\x00\x01\x02", "a.out")
    result = invoke(runner, ["train", path, "-r", tmp_path / "run"])
    assert_error(result, 1, f"{path} looks like a binary file (NUL byte at byte offset 3)")


def test_unseen_seed_characters_are_named(runner, trained_run):
    result = invoke(runner, ["sample", "-r", trained_run, "--seed", "the Qx€"])
    assert_error(result, 1, "characters the model never saw", "'Q'", "'x'", "'€'")


@pytest.mark.parametrize("command", ["sample", "info"])
def test_missing_run_dir_says_how_to_train(runner, tmp_path, command):
    result = invoke(runner, [command, "-r", tmp_path / "nothing"])
    assert_error(result, 1, f"no run directory at {tmp_path / 'nothing'}", "charrnn train CORPUS --run-dir")


@pytest.mark.parametrize("command", ["sample", "info"])
def test_empty_run_dir_says_how_to_train(runner, tmp_path, command):
    result = invoke(runner, [command, "-r", tmp_path])
    assert_error(result, 1, f"{tmp_path} holds no run", f"charrnn train CORPUS --run-dir {tmp_path}")


def test_default_run_dir(runner, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = invoke(runner, ["sample"])
    assert_error(result, 1, "no run directory at charrnn-run", "charrnn train CORPUS --run-dir charrnn-run")


@pytest.mark.parametrize("missing", ["settings.json", "vocab.json", "checkpoint.npz"])
@pytest.mark.parametrize("command", ["sample", "info", "train"])
def test_incomplete_run_dir(runner, run_copy, missing, command):
    (run_copy / missing).unlink()
    args = ["train", "--resume"] if command == "train" else [command]
    result = invoke(runner, [*args, "-r", run_copy])
    assert_error(result, 1, f"run directory {run_copy} is incomplete ({missing} is missing)", "--force")


def test_directory_with_a_run_is_not_overwritten(runner, run_copy, corpus_file):
    before = (run_copy / "checkpoint.npz").read_bytes()
    result = invoke(runner, ["train", corpus_file, "-r", run_copy])
    assert_error(result, 1, "already holds a run", "--resume", "--force")
    assert (run_copy / "checkpoint.npz").read_bytes() == before


def test_no_corpus_is_a_usage_error(runner, tmp_path):
    result = invoke(runner, ["train", "-r", tmp_path / "run"])
    assert_error(result, 2, "no corpus given")


def test_resume_cannot_change_the_model_shape(runner, run_copy):
    result = invoke(runner, ["train", "--resume", "-r", run_copy, "--units", "16"])
    assert_error(result, 2, "--units cannot change when resuming", "the run has 8, you asked for 16")


def test_finished_budget_says_how_to_go_on(runner, run_copy):
    result = invoke(runner, ["train", "--resume", "-r", run_copy])
    assert_error(result, 1, "already finished its budget", "--epochs")


@pytest.mark.parametrize(
    "option, value",
    [
        ("--units", "0"),
        ("--layers", "-1"),
        ("--embedding-dim", "0"),
        ("--seq-length", "0"),
        ("--batch-size", "-4"),
        ("--epochs", "0"),
        ("--learning-rate", "0"),
        ("--learning-rate", "-0.1"),
        ("--max-time", "0"),
        ("--max-time", "ten minutes"),
        ("--checkpoint-every", "-5m"),
        ("--eval-every", "0s"),
        ("--val-fraction", "0"),
        ("--val-fraction", "1"),
        ("--val-fraction", "1.5"),
        ("--val-fraction", "-0.1"),
        ("--dropout", "1"),
        ("--dropout", "-0.5"),
        ("--recurrent-dropout", "1"),
        ("--recurrent-dropout", "-0.1"),
        ("--adam-beta2", "1"),
        ("--adam-beta2", "0"),
        ("--weight-decay", "-0.1"),
        ("--weight-decay", "nan"),
        ("--final-lr-fraction", "1.5"),
        ("--final-lr-fraction", "-0.1"),
        ("--lr-decay", "step"),
        ("--model", "transformer"),
    ],
)
def test_bad_train_options_are_usage_errors(runner, tmp_path, option, value):
    path = corpus(tmp_path, make_text(300))
    result = invoke(runner, ["train", path, "-r", tmp_path / "run", option, value])
    assert_error(result, 2, f"Invalid value for '{option}'")
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize(
    "option, value",
    [
        ("--length", "-1"),
        ("--temperature", "-0.5"),
        ("--top-k", "0"),
        ("--top-p", "0"),
        ("--top-p", "1.5"),
        ("--num-samples", "0"),
        ("--weights", "worst"),
    ],
)
def test_bad_sample_options_are_usage_errors(runner, trained_run, option, value):
    result = invoke(runner, ["sample", "-r", trained_run, option, value])
    assert_error(result, 2, "Invalid value for", f"'{option}'")


def test_unknown_command_and_option(runner):
    assert invoke(runner, ["tran"]).exit_code == 2
    assert_error(invoke(runner, ["sample", "--colour"]), 2, "No such option", "--colour")


def test_real_process_keeps_stdout_for_text(trained_run):
    done = subprocess.run(
        charrnn_command("sample", "-r", trained_run, "--seed", "Q"),
        capture_output=True, text=True, timeout=60, env=subprocess_env(), stdin=subprocess.DEVNULL,
    )
    assert done.returncode == 1
    assert done.stdout == ""
    assert done.stderr.startswith("Error: the seed has characters the model never saw: 'Q'")
    assert done.stderr.count("\n") == 1


@pytest.mark.parametrize("text, seconds", [("90", 90), ("90s", 90), ("15m", 900), ("2h", 7200), ("1h30m", 5400), ("0.2", 0.2), ("2M", 120)])
def test_durations(text, seconds):
    from charrnn.cli import DURATION

    assert DURATION.convert(text, None, None) == pytest.approx(seconds)


def test_checkpoint_interval_is_a_few_minutes_by_default_and_changes_on_resume(runner, run_copy):
    from charrnn.config import TrainConfig

    assert 60 <= TrainConfig().checkpoint_every_s <= 600
    # Not a setting that fixes the data order: a resume may change it (here the budget is spent,
    # so nothing trains, but the option was accepted).
    result = invoke(runner, ["train", "--resume", "-r", run_copy, "--checkpoint-every", "2m"])
    assert_error(result, 1, "already finished its budget")


def test_force_with_a_bad_corpus_keeps_the_old_run(runner, run_copy, tmp_path):
    before = (run_copy / "checkpoint.npz").read_bytes()
    result = invoke(runner, ["train", tmp_path / "missing.txt", "-r", run_copy, "--force"])
    assert_error(result, 1, "corpus file not found")
    assert (run_copy / "checkpoint.npz").read_bytes() == before
    assert invoke(runner, ["sample", "-r", run_copy, "--length", "5"]).exit_code == 0


def test_refused_resume_changes_nothing(runner, run_copy):
    before = (run_copy / "settings.json").read_bytes()
    result = invoke(runner, ["train", "--resume", "-r", run_copy, "--learning-rate", "0.5"])
    assert_error(result, 1, "already finished its budget")
    assert (run_copy / "settings.json").read_bytes() == before


def test_failed_training_leaves_no_run_directory(runner, tmp_path):
    run_dir = tmp_path / "new-run"
    result = invoke(runner, ["train", tmp_path / "missing.txt", "-r", run_dir])
    assert_error(result, 1, "corpus file not found")
    assert not run_dir.exists()
