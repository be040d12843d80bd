"""The size rule: what it chooses for a budget, that it says so, and that a flag always wins."""

import json

import pytest

from charrnn import sizing
from charrnn.train import train
from helpers import TINY_TRAIN, make_text


@pytest.mark.parametrize(
    "num_train, max_time_s, expected",
    [
        (1_000_000, None, {}),  # epochs alone: the defaults
        (1_000_000, 110, {"units": 256, "layers": 1, "dropout": 0.1, "recurrent_dropout": 0.0, "learning_rate": 8e-3, "final_lr_fraction": 0.0}),
        # 30 passes allowed: 45 epochs, so that the 20 minutes end the run.
        (1_000_000, 20 * 60, {"units": 512, "layers": 1, "dropout": 0.2, "recurrent_dropout": 0.15, "learning_rate": 3e-3, "epochs": 45}),
        (10_000_000, 20 * 60, {"units": 512, "layers": 1, "dropout": 0.1, "recurrent_dropout": 0.0, "learning_rate": 3e-3, "epochs": 20}),  # 3 passes
        (100_000_000, 20 * 60, {"units": 512, "layers": 1, "dropout": 0.0, "recurrent_dropout": 0.0, "learning_rate": 3e-3, "epochs": 20}),  # a third of one
        # 300 passes allowed over a short text: no more than 60 epochs.
        (100_000, 20 * 60, {"units": 512, "layers": 1, "dropout": 0.2, "recurrent_dropout": 0.15, "learning_rate": 3e-3, "epochs": 60}),
    ],
)
def test_the_rule_by_corpus_and_budget(num_train, max_time_s, expected):
    assert sizing.choose(num_train, max_time_s) == expected


def test_the_rule_counts_only_the_passes_the_epochs_allow():
    # 20 minutes allow 30 passes over 1,000,000 characters, but 2 epochs end first: no dropout.
    assert sizing.choose(1_000_000, 20 * 60, epochs=2)["dropout"] == 0.0
    assert sizing.choose(1_000_000, 20 * 60, epochs=20)["dropout"] == 0.2
    assert sizing.choose(1_000_000, 20 * 60, epochs=2)["recurrent_dropout"] == 0.0
    assert sizing.choose(1_000_000, 20 * 60, epochs=20)["recurrent_dropout"] == 0.15
    # The epochs given are the user's: the rule does not choose them.
    assert "epochs" not in sizing.choose(1_000_000, 20 * 60, epochs=20)


@pytest.mark.parametrize(
    "num_train, max_time_s, epochs, says",
    [
        # 20 epochs of 1,000 characters end long before 20 minutes: the line speaks of the epochs.
        (1_000, 20 * 60, 20, "for 20 epochs, which likely end before the 20m00s budget (about 1s on a 2-core CPU), on 1,000 "),
        (100_000, 110, 20, "for 20 epochs, which likely end before the 1m50s budget (about 40s on a 2-core CPU), on 100,000 "),
        # The budget ends first: the line speaks of it.
        (10_000_000, 20 * 60, 20, "for a 20m00s budget on 10,000,000 "),
    ],
)
def test_the_rule_line_names_the_budget_that_ends_first(num_train, max_time_s, epochs, says):
    from charrnn.config import ModelConfig, TrainConfig

    cfg = TrainConfig(epochs=epochs, max_time_s=max_time_s, learning_rate=3e-3)
    model = ModelConfig(units=512 if max_time_s >= sizing.LARGE_FROM_S else 256, vocab_size=65)  # the rule's model
    line = sizing.describe(cfg, model, num_train)
    assert says in line, line


@pytest.mark.slow
def test_the_rule_is_applied_said_in_one_line_and_a_flag_wins(tmp_path):
    corpus = tmp_path / "c.txt"
    corpus.write_text(make_text(1000), encoding="utf-8")
    lines = []
    # --units given: it stays; the rest comes from the rule for a 15-minute budget (the run itself
    # ends after its one epoch).
    train_cfg = dict(TINY_TRAIN, epochs=1, max_time_s=15 * 60)
    train([str(corpus)], str(tmp_path / "run"), {"units": 8, "embedding_dim": 4}, train_cfg, quiet=True, log=lines.append)
    settings = json.loads((tmp_path / "run" / "settings.json").read_text())
    assert settings["model"]["units"] == 8
    # Its one epoch ends long before the budget: one pass needs no dropout, and the line says so.
    assert settings["model"]["dropout"] == 0.0 and settings["train"]["learning_rate"] == 3e-3
    said = [line for line in lines if line.startswith("chose ")]
    assert said == [
        "chose GRU 8x1, dropout 0, learning rate 0.003 for 1 epoch, which likely ends before the 15m00s budget "
        "(about 1s on a 2-core CPU), on 900 training characters "
        "(--units, --layers, --dropout, --recurrent-dropout and --learning-rate choose for yourself)"
    ]


def test_the_rules_epochs_reach_the_settings_unless_given(tmp_path):
    from charrnn.rundir import RunDir
    from charrnn.train import setup

    corpus = tmp_path / "c.txt"
    corpus.write_text(make_text(1000), encoding="utf-8")
    # 20 minutes allow thousands of passes over 900 characters: the rule's most epochs, or the user's.
    # The dropout follows the passes the epochs allow: all 60, or the user's 3.
    for given, expected, dropout in (({}, sizing.LARGE_MOST_EPOCHS, 0.2), ({"epochs": 3}, 3, 0.1)):
        request = setup.Request([str(corpus)], {"units": 8}, dict(given, seq_length=8, max_time_s=20 * 60))
        (tmp_path / f"run{expected}").mkdir()
        prepared = setup.prepare(RunDir(tmp_path / f"run{expected}"), request, log=lambda line: None)
        assert prepared.settings.train.epochs == expected
        assert prepared.settings.model.units == 8 and prepared.settings.model.dropout == dropout


@pytest.mark.slow
def test_no_rule_without_a_time_budget_or_when_every_field_is_given(tmp_path):
    corpus = tmp_path / "c.txt"
    corpus.write_text(make_text(1000), encoding="utf-8")
    lines = []
    model = {"units": 8, "embedding_dim": 4, "layers": 1, "dropout": 0.0, "recurrent_dropout": 0.0}
    train([str(corpus)], str(tmp_path / "a"), model, dict(TINY_TRAIN, epochs=1, max_time_s=3600, learning_rate=1e-2),
          quiet=True, log=lines.append)
    train([str(corpus)], str(tmp_path / "b"), {"units": 8, "embedding_dim": 4}, dict(TINY_TRAIN, epochs=1),
          quiet=True, log=lines.append)
    assert not [line for line in lines if line.startswith("chose ")]
    assert json.loads((tmp_path / "b" / "settings.json").read_text())["train"]["learning_rate"] == 6e-3


# --- the memory this process may use, and the estimate against it -------------------------------

from charrnn import memory  # noqa: E402
from charrnn.config import ModelConfig, TrainConfig  # noqa: E402
from charrnn.errors import UsageError  # noqa: E402

GB = 10**9
FREE = 20 * GB  # MemAvailable of the fake machines
RSS = 100 * 2**20  # VmRSS of the fake process


def fake_system(tmp_path, cgroup="0::/\n", groups=None):
    """(proc, cgroup root) under tmp_path: /proc/meminfo with FREE, /proc/self/status with RSS,
    /proc/self/cgroup holding `cgroup`, and under the cgroup root each {directory: {file: text}}
    of `groups`."""
    proc, root = tmp_path / "proc", tmp_path / "cgroup"
    (proc / "self").mkdir(parents=True)
    (proc / "meminfo").write_text(f"MemTotal: 99999999 kB\nMemAvailable: {FREE // 1024} kB\n")
    (proc / "self" / "status").write_text(f"Name:\tpython\nVmSize:\t 9999999 kB\nVmRSS:\t {RSS // 1024} kB\n")
    (proc / "self" / "cgroup").write_text(cgroup)
    for directory, files in (groups or {}).items():
        (root / directory).mkdir(parents=True, exist_ok=True)
        for name, text in files.items():
            (root / directory / name).write_text(text)
    return proc, root


def resident_ceilings(proc, root):
    return sorted((limit.ceiling, limit.source) for limit in memory.limits(proc, root, rlimit_as=-1))


def v2(limit, current, inactive=0):
    return {"memory.max": f"{limit}\n", "memory.current": f"{current}\n", "memory.stat": f"anon 5\ninactive_file {inactive}\n"}


def v1(limit, usage, inactive=0):
    return {"memory.limit_in_bytes": f"{limit}\n", "memory.usage_in_bytes": f"{usage}\n",
            "memory.stat": f"cache 9\ninactive_file 0\ntotal_inactive_file {inactive}\n"}


def test_machine_free_memory_alone_without_a_cgroup_limit(tmp_path):
    proc, root = fake_system(tmp_path)
    assert resident_ceilings(proc, root) == [(FREE + RSS, "available (MemAvailable: what this machine has free now)")]


def test_cgroup_v2_limit_less_what_the_group_uses_without_its_inactive_page_cache(tmp_path):
    proc, root = fake_system(tmp_path, "0::/app.slice/run\n", {"app.slice/run": v2(2 * GB, GB // 2, inactive=GB // 10)})
    limits = memory.limits(proc, root, rlimit_as=-1)
    group = [limit for limit in limits if "memory.max" in limit.source]
    # 2 GB less the 0.4 GB the group holds; the process's own 100 MiB are part of its ceiling.
    assert [limit.ceiling for limit in group] == [2 * GB - 4 * GB // 10 + RSS]
    assert group[0].kind == "resident"


def test_cgroup_v2_max_is_no_limit(tmp_path):
    proc, root = fake_system(tmp_path, "0::/app\n", {"app": v2("max", GB)})
    assert resident_ceilings(proc, root) == [(FREE + RSS, "available (MemAvailable: what this machine has free now)")]


def test_cgroup_v2_a_nested_group_is_limited_by_the_groups_above_it(tmp_path):
    groups = {"outer": v2(3 * GB, 0), "outer/middle": v2("max", 0), "outer/middle/inner": v2(5 * GB, 0)}
    proc, root = fake_system(tmp_path, "0::/outer/middle/inner\n", groups)
    assert resident_ceilings(proc, root)[0][0] == 3 * GB + RSS


def test_cgroup_v2_inside_a_container_reads_the_group_at_the_mounts_root(tmp_path):
    # /proc/self/cgroup names the host's path; the mount shows the container's own group at its root.
    proc, root = fake_system(tmp_path, "0::/system.slice/docker-abc.scope\n", {"": v2(GB, 0)})
    assert resident_ceilings(proc, root)[0][0] == GB + RSS


def test_cgroup_v2_beside_v1_in_a_hybrid_layout(tmp_path):
    proc, root = fake_system(tmp_path, "4:memory:/\n0::/job\n", {"unified/job": v2(GB, 0)})
    assert resident_ceilings(proc, root)[0][0] == GB + RSS


def test_cgroup_v1_limit_in_bytes_less_usage(tmp_path):
    cgroup = "9:cpu,cpuacct:/docker/abc\n4:memory:/docker/abc\n0::/\n"
    proc, root = fake_system(tmp_path, cgroup, {"memory/docker/abc": v1(4 * GB, GB, inactive=GB // 2)})
    ceilings = resident_ceilings(proc, root)
    assert ceilings[0] == (4 * GB - GB // 2 + RSS, "that this container's memory limit (cgroup memory.limit_in_bytes) leaves")


def test_cgroup_v1_huge_limit_is_none(tmp_path):
    proc, root = fake_system(tmp_path, "4:memory:/a\n", {"memory/a": v1(9223372036854771712, GB)})
    assert len(resident_ceilings(proc, root)) == 1  # MemAvailable alone


@pytest.mark.parametrize("cgroup", ["", "garbage\n", "4:memory\n", "0::/missing\n"])
def test_unreadable_or_odd_cgroup_files_add_no_limit(tmp_path, cgroup):
    proc, root = fake_system(tmp_path, cgroup, {"": {"memory.max": "not a number\n", "memory.current": "1\n"}})
    assert len(resident_ceilings(proc, root)) == 1


def test_rlimit_as_is_a_limit_on_the_address_space(tmp_path):
    proc, root = fake_system(tmp_path)
    virtual = [limit for limit in memory.limits(proc, root, rlimit_as=3 * GB) if limit.kind == "virtual"]
    assert [(limit.ceiling, "RLIMIT_AS" in limit.source) for limit in virtual] == [(3 * GB, True)]
    assert not [limit for limit in memory.limits(proc, root, rlimit_as=-1) if limit.kind == "virtual"]


@pytest.mark.parametrize("soft, expected", [(5 * GB, [5 * GB]), ("infinity", [])])
def test_rlimit_as_is_read_from_the_process_when_not_given(tmp_path, monkeypatch, soft, expected):
    import resource

    soft = resource.RLIM_INFINITY if soft == "infinity" else soft
    limits = {resource.RLIMIT_AS: (soft, resource.RLIM_INFINITY)}
    monkeypatch.setattr(resource, "getrlimit", limits.get)
    proc, root = fake_system(tmp_path)
    assert [limit.ceiling for limit in memory.limits(proc, root) if limit.kind == "virtual"] == expected


def test_the_address_space_need_counts_what_tensorflow_reserves():
    model_cfg, train_cfg = ModelConfig(vocab_size=65), TrainConfig()
    resident = sizing.training_bytes(model_cfg, train_cfg)
    assert sizing.address_space_bytes(model_cfg, train_cfg) == resident + sizing.RESERVED_ADDRESS_SPACE
    # Resident memory would fit in 2.5 GB; the address space does not.
    limit = memory.Limit(int(2.5 * GB), "virtual", "that the address-space limit (ulimit -v, RLIMIT_AS) allows", "raise ulimit -v")
    allows = r"more than the 2.5 GB that the address-space limit \(ulimit -v, RLIMIT_AS\) allows"
    with pytest.raises(UsageError, match=r"of address space to train .* " + allows):
        sizing.check_fits(model_cfg, train_cfg, limits=[limit])
    sizing.check_fits(model_cfg, train_cfg, limits=[memory.Limit(int(2.5 * GB), "resident", "available", "free some")])


def test_the_tightest_limit_wins(tmp_path):
    proc, root = fake_system(tmp_path, "0::/outer\n", {"outer": v2(6 * GB, 0)})
    found = memory.limits(proc, root, rlimit_as=30 * GB)
    need = {"resident": 4 * GB, "virtual": 6 * GB}
    assert "memory.max" in memory.tightest(found, need).source
    # The address-space limit is tighter for this need: 7 GB against 6 needed, 6 GB against 4.
    found = memory.limits(proc, root, rlimit_as=7 * GB)
    assert "RLIMIT_AS" in memory.tightest(found, need).source
    assert memory.tightest([], need) is None


@pytest.mark.parametrize(
    "cgroup, groups, names",
    [
        ("0::/job\n", {"job": v2(2 * GB, 0)}, "that this container's memory limit (cgroup memory.max) leaves"),
        ("4:memory:/job\n", {"memory/job": v1(2 * GB, 0)}, "that this container's memory limit (cgroup memory.limit_in_bytes) leaves"),
        ("0::/\n", {}, "available (MemAvailable: what this machine has free now)"),
    ],
)
def test_the_refusal_names_the_limit_and_what_to_change(tmp_path, cgroup, groups, names):
    proc, root = fake_system(tmp_path, cgroup, groups)
    (proc / "meminfo").write_text(f"MemAvailable: {3 * GB // 1024} kB\n")  # 3 GB free: the cgroups are tighter
    model_cfg = ModelConfig(vocab_size=80_000, output_layer="full")
    with pytest.raises(UsageError) as refused:
        sizing.check_fits(model_cfg, TrainConfig(), limits=memory.limits(proc, root, rlimit_as=-1))
    line = str(refused.value)
    assert names in line and "\n" not in line
    # The scores over 80,000 characters are most of it; the adaptive softmax would not fit either.
    assert "a smaller --batch-size or --seq-length (the scores" in line and "--output-layer adaptive" not in line
    assert ("memory limit" in line) == ("cgroup" in names)


def test_80000_characters_with_the_full_softmax_are_refused_under_6_gb():
    # Measured (benchmarks/memory.py): its peak is 7.1 GiB (7.4 GB), past the 6 GB at which it was killed.
    model_cfg, train_cfg = ModelConfig(vocab_size=80_000, output_layer="full"), TrainConfig()
    assert sizing.training_bytes(model_cfg, train_cfg) > 7 * 2**30
    limit = memory.Limit(6 * GB, "resident", "that this container's memory limit (cgroup memory.max) leaves", "raise it")
    with pytest.raises(UsageError, match=r"would need about 7\.9 GB of memory .* vocabulary of 80,000\), more than the 6\.0 GB that"):
        sizing.check_fits(model_cfg, train_cfg, limits=[limit])


def test_the_estimate_has_the_output_layers_part_by_the_vocabulary():
    small, large = ModelConfig(vocab_size=65), ModelConfig(vocab_size=80_000)
    train_cfg = TrainConfig()
    assert sizing.output_layer_bytes(large, train_cfg) == 4 * sizing.OUTPUT_FLOATS_PER_CHAR["full"] * 32 * 100 * 80_000
    # The default model on 65 characters: mostly the fixed cost of TensorFlow.
    assert sizing.FIXED_BYTES < sizing.training_bytes(small, train_cfg) < 1.2 * sizing.FIXED_BYTES
    assert sizing.parameters(large) == 80_000 * 64 + 3 * 256 * (64 + 256 + 2) + 256 * 80_000 + 80_000


def test_the_adaptive_softmax_is_suggested_when_it_alone_would_fit():
    from charrnn import softmax

    full, adaptive, train_cfg = ModelConfig(vocab_size=80_000), ModelConfig(vocab_size=80_000), TrainConfig()
    adaptive.output_layer, adaptive.tails = softmax.choose("adaptive", 80_000, adaptive.units)
    between = (sizing.training_bytes(full, train_cfg) + sizing.training_bytes(adaptive, train_cfg)) // 2
    with pytest.raises(UsageError, match=r"; use --output-layer adaptive \(about [\d.]+ GB\), or a smaller --batch-size"):
        sizing.check_fits(full, train_cfg, limits=[memory.Limit(between, "resident", "available", "free some memory")])
    sizing.check_fits(adaptive, train_cfg, limits=[memory.Limit(between, "resident", "available", "free some memory")])


def test_the_rule_line_counts_a_large_alphabets_output_layer():
    # The same budget: 20 epochs of 100,000 characters end first in English, not with 6,000
    # characters and a full softmax (8x the multiply-adds), nor is the adaptive one as fast as English.
    from charrnn.config import ModelConfig, TrainConfig

    english, chinese = ModelConfig(vocab_size=65), ModelConfig(vocab_size=6000)
    adaptive = ModelConfig(vocab_size=6000, output_layer="adaptive", tails=[[1024, 64], [4720, 16]])
    assert sizing.chars_per_s(english, 110) == pytest.approx(sizing.SMALL_CHARS_PER_S)
    assert sizing.chars_per_s(chinese, 110) < sizing.chars_per_s(adaptive, 110) < sizing.chars_per_s(english, 110) / 1.5
    assert sizing.chars_per_s(ModelConfig(vocab_size=65, units=512), 20 * 60) == pytest.approx(sizing.LARGE_CHARS_PER_S)
    cfg = TrainConfig(epochs=20, max_time_s=110, learning_rate=6e-3)
    assert "20 epochs, which likely end" in sizing.describe(cfg, english, 100_000)
    assert "for a 1m50s budget on 100,000" in sizing.describe(cfg, chinese, 100_000)
