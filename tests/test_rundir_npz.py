"""The bounded .npz reader (charrnn.rundir.npzsafe) and the run's weight files, on hand-made arrays:
no TensorFlow, no training."""

import io
import json
import warnings
import zipfile

import numpy as np
import pytest

from charrnn import cells
from charrnn.config import ModelConfig, TrainConfig
from charrnn.errors import RunDirError
from charrnn.rundir import Best, RunDir, Settings, npzsafe
from charrnn.state import TrainState

MODEL = ModelConfig(model="gru", layers=1, units=4, embedding_dim=3, vocab_size=5)
TRAIN = TrainConfig(batch_size=2)


@pytest.fixture
def run(tmp_path):
    run = RunDir(tmp_path / "run")
    run.path.mkdir()
    corpus = {"files": [], "chars": 100, "train_chars": 90, "val_chars": 10, "vocab_size": 5}
    run.settings.write(Settings(MODEL, TRAIN, corpus, {}, 123))
    return run


def weights(scale=1.0):
    shapes = cells.weight_shapes(MODEL)
    return {name: np.arange(np.prod(shape), dtype=np.float32).reshape(shape) * scale for name, shape in shapes.items()}


def optimizer_values():
    return [np.int64(7), np.float32(0.5), *[np.ones_like(w) for w in weights().values()]]


def npy(array):
    buffer = io.BytesIO()
    np.lib.format.write_array(buffer, np.asanyarray(array), allow_pickle=True)
    return buffer.getvalue()


def write_npz(path, members, compression=zipfile.ZIP_STORED):
    """A zip of `members` ({name: array or raw .npy bytes}), named name + ".npy", in that order."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # zipfile warns of duplicate names
        with zipfile.ZipFile(path, "w", compression) as archive:
            for name, value in members:
                archive.writestr(name + ".npy", value if isinstance(value, bytes) else npy(value))


def state(**fields):
    return np.array(json.dumps(TrainState(**fields).to_dict()))


def checkpoint_members():
    members = [(f"weights/{k}", v) for k, v in weights().items()]
    members += [(f"optimizer/{i:04d}", v) for i, v in enumerate(optimizer_values())]
    return [*members, ("state", state(step=3))]


def test_checkpoint_round_trip(run):
    carry = np.full((2, 1, 4), 0.25, np.float32)
    seeds = np.array([[0, 1337], [5, 1338]], np.int64)
    run.checkpoint.save(weights(2.0), optimizer_values(), TrainState(step=3, epoch=1), carry, seeds)
    loaded = run.checkpoint.load()
    np.testing.assert_array_equal(loaded.seeds, seeds)
    assert loaded.state == TrainState(step=3, epoch=1)
    assert loaded.weights.keys() == weights().keys()
    for name, array in weights(2.0).items():
        np.testing.assert_array_equal(loaded.weights[name], array)
    assert [np.asarray(v).tolist() for v in loaded.optimizer] == [np.asarray(v).tolist() for v in optimizer_values()]
    np.testing.assert_array_equal(loaded.carry, carry)
    assert run.checkpoint.read_state() == TrainState(step=3, epoch=1)


def test_best_round_trip_and_load_weights(run):
    run.checkpoint.save(weights(1.0), optimizer_values(), TrainState(step=3))
    assert run.best.read() is None and not run.best.exists()
    # Without best weights, the latest are used.
    np.testing.assert_array_equal(run.load_weights()["embedding"], weights(1.0)["embedding"])
    run.best.save(weights(3.0), Best(2, 1.25, 40))
    assert run.best.read() == Best(2, 1.25, 40)
    np.testing.assert_array_equal(run.load_weights()["embedding"], weights(3.0)["embedding"])
    np.testing.assert_array_equal(run.load_weights("latest")["embedding"], weights(1.0)["embedding"])


def test_hand_made_good_file_loads(run):
    write_npz(run.file("checkpoint.npz"), checkpoint_members())
    assert run.checkpoint.load().state.step == 3


def test_member_that_is_not_a_runs_is_refused(run):
    write_npz(run.file("checkpoint.npz"), [*checkpoint_members(), ("extra", np.zeros(3))])
    with pytest.raises(RunDirError, match=r"checkpoint.npz is corrupt or truncated \(it holds 'extra', which is not part of a run's checkpoint.npz\)"):
        run.checkpoint.load()


def test_checkpoint_without_seeds_loads_with_none(run):
    # Checkpoints from before the seed generators were kept, and those of models without dropout.
    run.checkpoint.save(weights(), optimizer_values(), TrainState(step=3))
    assert run.checkpoint.load().seeds is None


@pytest.mark.parametrize(
    "seeds, says",
    [
        (np.zeros((2, 3), np.int64), r"seeds has shape \(2, 3\) of int64, not at most 16 pairs of integers"),
        (np.zeros((2, 2), np.float32), r"seeds has shape \(2, 2\) of float32"),
        (np.zeros((17, 2), np.int64), r"seeds has shape \(17, 2\) of int64, not at most 16"),
    ],
)
def test_seeds_that_are_not_a_few_integer_pairs_do_not_fit(run, seeds, says):
    write_npz(run.file("checkpoint.npz"), [*checkpoint_members(), ("seeds", seeds)])
    with pytest.raises(RunDirError, match=says):
        run.checkpoint.load()


def test_seeds_are_not_part_of_best(run):
    write_npz(run.file("best.npz"), [*[(f"weights/{k}", v) for k, v in weights().items()], ("seeds", np.zeros((1, 2), np.int64)), ("state", np.array("{}"))])
    with pytest.raises(RunDirError, match="which is not part of a run's best.npz"):
        run.best.read()


def test_optimizer_member_is_not_part_of_best(run):
    write_npz(run.file("best.npz"), [("optimizer/0000", np.int64(1)), ("state", np.array("{}"))])
    with pytest.raises(RunDirError, match="which is not part of a run's best.npz"):
        run.best.read()


def test_compressed_member_is_refused(run):
    write_npz(run.file("checkpoint.npz"), checkpoint_members(), zipfile.ZIP_DEFLATED)
    with pytest.raises(RunDirError, match="is compressed, and charrnn writes its arrays uncompressed"):
        run.checkpoint.load()


def test_member_declaring_more_than_the_settings_allow_does_not_fit(run):
    members = checkpoint_members()
    members[0] = ("weights/embedding", np.zeros((5000, 3)))
    write_npz(run.file("checkpoint.npz"), members)
    with pytest.raises(RunDirError, match=r"checkpoint.npz does not fit the run's settings \(weights/embedding declares .* bytes, more than the settings allow"):
        run.checkpoint.load()


def test_huge_state_is_refused_before_reading(run):
    write_npz(run.file("checkpoint.npz"), [*checkpoint_members()[:-1], ("state", np.array("x" * 100_000))])
    with pytest.raises(RunDirError, match="its state declares .* bytes, far more than charrnn writes"):
        run.checkpoint.read_state()


def test_header_shape_larger_than_the_data_is_refused_without_allocating(run):
    # No settings: shapes are not checked, but the header's claim (8 TB) must match the data.
    run.file("settings.json").unlink()
    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(header, {"descr": "<f8", "fortran_order": False, "shape": (10**12,)})
    lying = header.getvalue() + bytes(64)
    write_npz(run.file("checkpoint.npz"), [("weights/embedding", lying), ("state", state(step=1))])
    with pytest.raises(RunDirError, match="weights/embedding holds 64 bytes of data, its header declares 8,000,000,000,000"):
        run.checkpoint.load()


def test_wrong_weight_shape_does_not_fit(run):
    members = checkpoint_members()
    members[0] = ("weights/embedding", np.zeros((5, 2), np.float32))
    write_npz(run.file("checkpoint.npz"), members)
    with pytest.raises(RunDirError, match=r"does not fit the run's settings \(embedding has shape \(5, 2\), the settings imply \(5, 3\)\)"):
        run.checkpoint.load()


def test_object_dtype_is_never_unpickled(run):
    members = checkpoint_members()
    members[0] = ("weights/embedding", np.array([{"a": 1}], dtype=object))
    write_npz(run.file("checkpoint.npz"), members)
    with pytest.raises(RunDirError, match=r"weights/embedding holds Python objects, which charrnn never loads \(allow_pickle=False\)"):
        run.checkpoint.load()


@pytest.mark.parametrize("keep", [0.5, 0.9])
def test_truncated_file_is_corrupt(run, keep):
    run.checkpoint.save(weights(), optimizer_values(), TrainState(step=3))
    data = run.file("checkpoint.npz").read_bytes()
    run.file("checkpoint.npz").write_bytes(data[: int(len(data) * keep)])
    with pytest.raises(RunDirError, match="checkpoint.npz is corrupt or truncated"):
        run.checkpoint.load()


def test_truncated_member_data_is_corrupt(run):
    members = checkpoint_members()
    members[0] = ("weights/embedding", npy(weights()["embedding"])[:-8])
    write_npz(run.file("checkpoint.npz"), members)
    with pytest.raises(RunDirError, match="weights/embedding holds 52 bytes of data, its header declares 60"):
        run.checkpoint.load()


def test_duplicate_member_is_refused(run):
    write_npz(run.file("checkpoint.npz"), [*checkpoint_members(), ("state", state(step=4))])
    with pytest.raises(RunDirError, match="it holds 'state' twice"):
        run.checkpoint.read_state()


def test_optimizer_variables_must_be_numbered_from_zero(run):
    members = [m for m in checkpoint_members() if m[0] != "optimizer/0001"]
    write_npz(run.file("checkpoint.npz"), members)
    with pytest.raises(RunDirError, match=r"its optimizer variables are not numbered 0, 1, 2, \.\.\."):
        run.checkpoint.load()


def test_too_many_optimizer_variables_are_refused(run):
    # Adam's variables: a few scalars and two moments per weight; 8 + 3 per weight at most.
    count = 8 + 3 * len(weights())
    members = [*checkpoint_members()[:-1], *[(f"optimizer/{i:04d}", np.int64(0)) for i in range(len(optimizer_values()), count + 1)]]
    write_npz(run.file("checkpoint.npz"), [*members, ("state", state())])
    with pytest.raises(RunDirError, match=f"optimizer/{count:04d}"):
        run.checkpoint.load()


@pytest.mark.parametrize(
    ("state_member", "message"),
    [
        (None, r"\(it has no state\)"),
        (np.array("{not json"), "its state is not JSON"),
        (np.array("[1, 2]"), r"\(state is not an object\)"),
        (np.array(json.dumps({"step": -1})), "no valid step"),
        (np.float64(1.0), "its state is not a short string"),
    ],
)
def test_bad_state_is_refused(run, state_member, message):
    members = checkpoint_members()[:-1]
    write_npz(run.file("checkpoint.npz"), members + ([] if state_member is None else [("state", state_member)]))
    with pytest.raises(RunDirError, match=message):
        run.checkpoint.load()


def test_state_alone_reads_no_arrays_and_needs_no_settings(run):
    # Weights that do not fit the settings: reading the state alone does not look at them.
    members = checkpoint_members()
    members[0] = ("weights/embedding", np.zeros((5, 2), np.float32))
    write_npz(run.file("checkpoint.npz"), members)
    assert run.checkpoint.read_state().step == 3
    with pytest.raises(RunDirError, match="does not fit"):
        run.checkpoint.load()


def test_invalid_best_state_names_the_field(run):
    write_npz(run.file("best.npz"), [*[(f"weights/{k}", v) for k, v in weights().items()], ("state", np.array('{"step": 1, "val_loss": NaN}'))])
    with pytest.raises(RunDirError, match=r"best.npz is corrupt or truncated \(its state has no valid val_loss\)"):
        run.best.read()


class Rules:
    """Rules for an archive of one member, "a", of at most 4 int64s: npzsafe knows no run names."""

    def kind(self, key):
        if key != "a":
            raise ValueError(f"no {key}")
        return "a", 32

    def oversized(self, key, what, declared, limit):
        return OverflowError(f"{key}: {declared} > {limit}")

    def check_keys(self, keys):
        if keys != ["a"]:
            raise ValueError("want a")

    def check_header(self, key, what, shape, dtype):
        if dtype != np.int64:
            raise TypeError("want int64")


def read_with_rules(path):
    with open(path, "rb") as f:
        return npzsafe.read(f, Rules())


def test_npzsafe_reads_by_the_callers_rules(tmp_path):
    path = tmp_path / "any.npz"
    write_npz(path, [("a", np.arange(4))])
    np.testing.assert_array_equal(read_with_rules(path)["a"], np.arange(4))
    write_npz(path, [("b", np.arange(4))])
    with pytest.raises(ValueError, match="no b"):
        read_with_rules(path)
    write_npz(path, [("a", np.arange(5000))])
    with pytest.raises(OverflowError, match="a: "):
        read_with_rules(path)
    write_npz(path, [("a", np.arange(4, dtype=np.int32))])
    with pytest.raises(TypeError, match="want int64"):
        read_with_rules(path)


def test_npzsafe_wanted_members_only(tmp_path):
    path = tmp_path / "any.npz"
    write_npz(path, [("a", np.arange(4))])
    with open(path, "rb") as f:
        assert npzsafe.read(f, Rules(), wanted=lambda key: False) == {}
