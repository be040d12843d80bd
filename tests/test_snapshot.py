"""One snapshot of a run per command: every run file that `sample`, `eval`, `report` and `info` need
is opened once, the weights' shapes are checked once (as they are read), and the sampling options
and the seed once."""

from collections import Counter

import pytest

from charrnn import cells, generation, sample
from charrnn.disktext import DiskText
from charrnn.rundir.files import RunFiles
from charrnn.snapshot import Snapshot
from helpers import invoke

# (command, the run files it reads)
COMMANDS = [
    (["sample", "--length", "5", "-n", "3", "--seed", "the"], ["settings.json", "vocab.json", "best.npz"]),
    (["sample", "--length", "5", "--weights", "latest"], ["settings.json", "vocab.json", "checkpoint.npz"]),
    (["eval"], ["settings.json", "vocab.json", "best.npz", "corpus.npy"]),
    (["eval", "--weights", "latest", "--window", "4"], ["settings.json", "vocab.json", "checkpoint.npz", "corpus.npy"]),
    (["info"], ["settings.json", "vocab.json", "checkpoint.npz", "best.npz"]),
    (["report"], ["settings.json", "vocab.json", "best.npz", "checkpoint.npz", "metrics.jsonl", "corpus.npy"]),
]


@pytest.fixture
def reads(monkeypatch):
    """Counts what a command opens: run files by name, and the checks made on the way."""
    counts = Counter()

    def counting(key, real, method=False):
        if method:
            return lambda self, *args, **kwargs: counts.update([key(*args)]) or real(self, *args, **kwargs)
        return lambda *args, **kwargs: counts.update([key(*args)]) or real(*args, **kwargs)

    monkeypatch.setattr(RunFiles, "open", counting(lambda name, *_: name, RunFiles.open, method=True))
    monkeypatch.setattr(DiskText, "open_npy", staticmethod(counting(lambda path: path.name, DiskText.open_npy)))
    for name in ("shape_problem", "check_weights"):
        monkeypatch.setattr(cells, name, counting(lambda *_: "shapes checked", getattr(cells, name)))
    options, seed = generation.check_sampling_options, generation.check_seed
    for module in (generation, sample):
        monkeypatch.setattr(module, "check_sampling_options", counting(lambda *_: "options checked", options))
        monkeypatch.setattr(module, "check_seed", counting(lambda *_: "seed checked", seed))
    return counts


@pytest.mark.parametrize("args, files", COMMANDS, ids=[" ".join(args) for args, _ in COMMANDS])
def test_each_run_file_is_read_once_and_the_weights_checked_once(runner, trained_run, tmp_path, reads, args, files):
    if args[0] == "report":
        args = [*args, "-o", tmp_path / "report.html"]
    result = invoke(runner, [*args, "-r", trained_run])
    assert result.exit_code == 0, result.output
    opened = {name: n for name, n in reads.items() if "." in name}
    assert opened == dict.fromkeys(files, 1)
    # The shapes are checked as the weights are read (info reads them for no network).
    assert reads["shapes checked"] <= (2 if args[0] == "info" else 1)
    if args[0] == "sample":
        assert reads["options checked"] == reads["seed checked"] == 1


def test_a_snapshot_builds_its_network_once(trained_run):
    snapshot = Snapshot.load(trained_run)
    assert snapshot.net is snapshot.net
    assert snapshot.which == "best" and snapshot.best() is snapshot.record
    assert snapshot.step == snapshot.record.step
    assert Snapshot.load(trained_run, "latest").train_state().step >= snapshot.step
