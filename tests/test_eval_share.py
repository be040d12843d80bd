"""Training's evaluations take a bounded share of the time, on the same validation characters
every time, and a time budget holds with its last evaluation and checkpoint (issue 20).

Most tests run without TensorFlow: the decision functions of train.evalplan, the validation subset
with a fake evaluation step, and the whole loop on fakes that spend a fake clock's time."""

from types import SimpleNamespace

import numpy as np
import pytest

from charrnn import data
from charrnn.config import TrainConfig
from charrnn.state import TrainState
from charrnn.train import evalplan, evaluation
from charrnn.train import loop as loop_module
from charrnn.train.batching import batching_for
from charrnn.train.budget import Budget
from charrnn.train.evalplan import EndCosts, allowance_s, evaluations_expected, layout, round_down, subset_steps, windows_scored
from charrnn.train.evaluation import Evaluator, Validation, eval_batch
from charrnn.train.hooks import MetricsLog
from charrnn.train.loop import Loop

# --- the decision functions --------------------------------------------------------------------


@pytest.mark.parametrize("count, expected", [(1, 1), (2, 2), (3, 3), (5, 4), (6, 6), (7, 6), (11, 8), (12, 12), (100, 96)])
def test_sizes_are_rounded_down_to_round_figures(count, expected):
    assert round_down(count) == expected


@pytest.mark.parametrize("eval_every_s", [0.5, 30.0, 600.0])
@pytest.mark.parametrize("session_s", [5.0, 45.0, 60.0, 180.0, 3600.0, float("inf")])
def test_the_allowances_of_a_session_add_up_to_its_share(eval_every_s, session_s):
    compile_s = 2.0
    allowance = allowance_s(eval_every_s, session_s, compile_s)
    assert allowance <= evalplan.EVAL_SHARE * eval_every_s + 1e-12
    if session_s != float("inf"):
        # Every evaluation, the last one at the end included.
        total = evaluations_expected(session_s, eval_every_s) * allowance
        assert total <= evalplan.EVAL_SHARE * (session_s - compile_s) + 1e-9


@pytest.mark.parametrize("session_s, expected", [(10.0, 1), (60.0, 2), (61.0, 3)])
def test_the_last_evaluation_counts(session_s, expected):
    assert evaluations_expected(session_s, 30.0) == expected


@pytest.mark.parametrize("vocab_size", [65, 2_277, 6_000, 80_000])
@pytest.mark.parametrize("session_s, eval_every_s", [(60.0, 30.0), (180.0, 30.0), (20.0, 30.0), (3600.0, 30.0)])
@pytest.mark.parametrize("slow", [1.0, 5.0])
def test_evaluations_take_at_most_a_tenth_of_training_given_their_measured_cost(vocab_size, session_s, eval_every_s, slow):
    """A fake measured cost: an evaluation step costs its logits (windows x seq_length x vocab) at
    a fixed rate, `slow` times slower on a busy machine; the validation text is 110,000 characters."""
    seq_length, compile_s = 100, 3.0
    batch = eval_batch(seq_length, vocab_size, 1)
    step_s = slow * batch * seq_length * vocab_size / 2e9
    windows = (110_000 - 1) // seq_length
    stretches = evalplan.stretch_count(batch, windows, evaluation.CARRIED_STREAMS)
    most = windows // stretches
    size = windows_scored(allowance_s(eval_every_s, session_s, compile_s), step_s, stretches, batch, most)
    steps = subset_steps(*layout(size, stretches), batch)
    total = evaluations_expected(session_s, eval_every_s) * steps * step_s
    assert batch <= size <= stretches * most
    if steps > 2:  # one step each way is the least an evaluation takes
        assert total <= 0.1 * (session_s - compile_s - total)


def test_the_size_grows_with_the_allowance_up_to_the_whole_text():
    sizes = [windows_scored(allowance, 0.01, 54, 27, most=40) for allowance in (0.0, 0.04, 0.1, 0.5, 1.0, 100.0)]
    # One step each way, then two stretches' worth, then more windows per stretch, then all.
    assert sizes == sorted(sizes) and sizes[:2] == [27, 54] and sizes[-1] == 54 * 40
    assert all(subset_steps(*layout(size, 54), 27) * 0.01 <= allowance for size, allowance in zip(sizes[1:-1], (0.04, 0.1, 0.5, 1.0)))


def test_the_end_reserves_the_longest_recent_step_and_not_the_first():
    ends = EndCosts(evaluation_s=3.0, checkpoint_s=1.0, step_s=0.5)
    assert ends.reserve() == pytest.approx(evalplan.RESERVE_FACTOR * 4.0 + 0.5 + evalplan.RESERVE_EXTRA_S)
    ends.add_step(20.0)  # the first step compiles
    assert ends.step_s() == 0.5
    for seconds in (1.0, 1.5, 1.2):
        ends.add_step(seconds)
    assert ends.step_s() == 1.5


# --- fakes: a clock, an evaluation step, a training step, checkpoints ------------------------------


class Clock:
    """time.monotonic and time.perf_counter that move only when a fake spends time."""

    now = 1_000.0

    def monotonic(self):
        return self.now

    perf_counter = monotonic

    def spend(self, seconds):
        self.now += seconds


def fake_replicas():
    def agree(stop, clock, reserve=0.0):  # as several workers agree: through float32
        return bool(stop), float(np.float32(clock)), float(np.float32(reserve))

    return SimpleNamespace(count=1, split=lambda *arrays: arrays, zeros=lambda shape: np.zeros(shape, np.float32), agree=agree)


def fake_evaluator(clock, vocab_size, seq_length, step_s, compile_s=1.0):
    """An Evaluator whose compiled step is a fake: `step_s` seconds a step (the first one
    `compile_s` more), a loss of 2 nats a target; `evaluator.targets` lists each step's targets."""
    evaluator = Evaluator.__new__(Evaluator)
    evaluator.replicas, evaluator.seq_length, evaluator.state_shape = fake_replicas(), seq_length, (1,)
    evaluator.eval_batch = eval_batch(seq_length, vocab_size, 1)
    evaluator.targets, evaluator.compiled, evaluator.step_s = [], False, step_s

    def step(x, y, mask, state):
        clock.spend(evaluator.step_s + (0.0 if evaluator.compiled else compile_s))
        evaluator.compiled = True
        evaluator.targets.append(y[mask > 0])
        return np.float32(2.0 * mask.sum()), state

    evaluator._eval = step
    return evaluator


def val_text(num_chars):
    return np.random.default_rng(0).integers(0, 50, num_chars).astype(np.int32)


# --- the validation subset -------------------------------------------------------------------------


def test_the_subset_is_the_same_characters_for_two_runs_and_two_evaluations():
    text = val_text(50_000)
    scored = []
    for _ in range(2):  # two runs
        evaluator = fake_evaluator(Clock(), vocab_size=6_000, seq_length=100, step_s=0.1)
        validation = Validation(evaluator, text, 100)
        validation.use(3 * validation.stretches)
        for _ in range(2):  # two evaluations
            evaluator.targets.clear()
            assert validation.loss() == pytest.approx(2.0) and validation.carried_loss() == pytest.approx(2.0)
            scored.append(np.concatenate(evaluator.targets))  # in the order scored
    assert all(np.array_equal(scored[0], s) for s in scored[1:])


def test_the_subset_is_evenly_spaced_stretches_scored_both_ways():
    seq_length, text = 100, val_text(110_000)
    validation = Validation(fake_evaluator(Clock(), 6_000, seq_length, 0.1), text, seq_length)
    validation.use(4 * validation.stretches)
    stretches, batch = validation.stretches, validation.evaluator.eval_batch
    assert stretches % batch == 0  # every evaluation step is full
    assert validation.chars_scored == stretches * 4 * seq_length < len(text) - 1
    gaps = np.diff(validation.starts)
    assert gaps.min() >= 4 * seq_length and gaps.max() - gaps.min() <= seq_length  # apart, evenly
    assert validation.starts[-1] + 4 * seq_length <= len(text) - 1
    # The windows are the stretches cut into seq_length pieces: the same characters both ways.
    stretch_chars = (validation.starts[:, None] + np.arange(4 * seq_length)).ravel()
    np.testing.assert_array_equal(validation.y.ravel(), text[stretch_chars + 1])


def test_a_small_validation_text_is_scored_whole_as_before():
    text, seq_length = val_text(401), 8
    validation = Validation(fake_evaluator(Clock(), 50, seq_length, 0.001), text, seq_length)
    validation.use(validation.choose(allowance=1e-9, step_s=1.0))  # the least there is...
    x, y = data.validation_windows(text, seq_length, 10**9)
    # ...still every window: the text has fewer windows (50) than one evaluation step takes.
    assert validation.starts is None and np.array_equal(validation.x, x) and np.array_equal(validation.y, y)
    assert validation.chars_scored == y.size


def test_the_estimate_says_how_much_is_scored():
    validation = Validation(fake_evaluator(Clock(), 6_000, 100, 0.1), val_text(110_000), 100)
    validation.use(2 * validation.stretches)
    assert validation.estimate() == (
        f"an estimate on {validation.chars_scored:,} of 110,000 validation characters, "
        f"as {validation.stretches} evenly spaced stretches each from a zero state"
    )


# --- the loop on fakes: the share and the time budget ------------------------------------------------


class FakeStep:
    """A training step of `seconds(step)` seconds (the first `compile_s` more); `spent`: their
    sum without compiling."""

    def __init__(self, clock, seconds, compile_s):
        self.clock, self.seconds, self.compile_s = clock, seconds, compile_s
        self.replicas, self.learning_rate, self.count, self.spent = fake_replicas(), 0.0, 0, 0.0
        self.state = SimpleNamespace(reset=lambda: None, saved=lambda batch: None)

    def train(self, starts):
        seconds = self.seconds(self.count)
        self.clock.spend(seconds + (self.compile_s if self.count == 0 else 0.0))
        self.count, self.spent = self.count + 1, self.spent + seconds
        return 3.0, 1.0


def fake_checkpoints(clock):
    """Checkpoints of 0.5 s a save; offering the best weights takes 0.05 s."""
    return SimpleNamespace(
        run=SimpleNamespace(path="fake-run"), model=SimpleNamespace(count_params=lambda: 2_000_000),
        weights=lambda: {"w": np.zeros(3, np.float32)}, save=lambda state, weights, carry: clock.spend(0.5),
        offer_best=lambda state, loss: clock.spend(0.05) or False,
    )


# (vocab_size, training step_s, evaluation step_s): costs as a 2-core CPU gives them, and a busy one.
SHAKESPEARE, CHINESE, CHINESE_BUSY, HUGE = (65, 0.05, 0.02), (6_000, 0.4, 0.1), (6_000, 1.75, 0.6), (80_000, 3.0, 0.1)


def run_fake(monkeypatch, costs, max_time_s, eval_every_s=30.0, jitter=0.0, slower=1.0):
    """Runs the loop on fakes with `costs`; returns (its metrics rows, its end on the fake clock,
    seconds of training steps, seconds of evaluations). Training steps take up to `jitter` more
    at random; after the first evaluation, evaluation steps take `slower` times longer."""
    (vocab_size, step_s, eval_step_s), clock = costs, Clock()
    monkeypatch.setattr(loop_module, "time", clock)
    monkeypatch.setattr(evaluation, "time", clock)
    cfg = TrainConfig(max_time_s=max_time_s, eval_every_s=eval_every_s)
    evaluator = fake_evaluator(clock, vocab_size, cfg.seq_length, eval_step_s)
    rng = np.random.default_rng(1)
    step = FakeStep(clock, lambda i: step_s * (1.0 + jitter * rng.random()), compile_s=5.0)
    rows, state, real_evaluate, spent = [], TrainState(), Loop._evaluate, [0.0]

    def timed_evaluate(self, window):
        started = clock.now
        real_evaluate(self, window)
        spent[0] += clock.now - started
        evaluator.step_s = eval_step_s * slower

    monkeypatch.setattr(Loop, "_evaluate", timed_evaluate)
    hooks = [MetricsLog(SimpleNamespace(metrics=SimpleNamespace(append=rows.append)))]
    validation, checkpoints = Validation(evaluator, val_text(110_000), cfg.seq_length), fake_checkpoints(clock)
    loop = Loop(step, batching_for(cfg), validation, checkpoints, Budget(cfg, 990_000), state, hooks, lambda line: None)
    start = clock.now
    assert loop.run() == "time"
    assert state.elapsed_s == pytest.approx(clock.now - start, abs=1e-3)
    return rows, state.elapsed_s, step.spent, spent[0]


@pytest.mark.parametrize(
    "costs, max_time_s",
    [(SHAKESPEARE, 20.0), (SHAKESPEARE, 60.0), (CHINESE, 20.0), (CHINESE, 180.0), (CHINESE_BUSY, 60.0),
     (CHINESE_BUSY, 180.0), (HUGE, 60.0), (HUGE, 180.0)],
)
def test_a_time_budget_holds_with_evaluations_at_their_share(monkeypatch, costs, max_time_s):
    rows, end, training_s, evaluating_s = run_fake(monkeypatch, costs, max_time_s, jitter=0.5)
    # It ends in time, the last evaluation and checkpoint included, no more than a step (and the
    # margins) early.
    assert max_time_s - 1.5 * costs[1] - 2.0 <= end <= max_time_s + 2.0
    assert evaluating_s <= 0.1 * training_s
    assert 1 <= len(rows) <= evaluations_expected(max_time_s, 30.0)
    # Every evaluation scores the same number of characters, and says how many.
    assert len({row["val_chars_scored"] for row in rows}) == 1 and rows[0]["val_chars_scored"] > 0


@pytest.mark.parametrize("costs, max_time_s", [(CHINESE, 600.0), (SHAKESPEARE, 240.0)])
def test_evaluations_that_become_dearer_come_less_often(monkeypatch, costs, max_time_s):
    kept = run_fake(monkeypatch, costs, max_time_s)[0]
    rows, end, training_s, evaluating_s = run_fake(monkeypatch, costs, max_time_s, slower=6.0)
    assert len(rows) < len(kept) and evaluating_s <= 0.1 * training_s
    assert end <= max_time_s + 2.0


def test_the_smallest_evaluation_keeps_the_cadence_asked_for(monkeypatch):
    # One evaluation step each way (3 s each, after the first): never put off, though it is
    # more than the share.
    rows = run_fake(monkeypatch, (6_000, 0.4, 1.0), 60.0, eval_every_s=2.0, slower=3.0)[0]
    assert rows[0]["val_chars_scored"] == eval_batch(100, 6_000, 1) * 100
    assert len(rows) >= 60 / (2.0 + 2 * 3.0 + 0.4) - 1


@pytest.mark.parametrize("max_time_s", np.arange(29.0, 35.0, 0.5))
def test_an_evaluation_due_near_the_end_does_not_push_it_past_the_budget(monkeypatch, max_time_s):
    # The evaluation due at 30 s comes just before, inside or after the reserve for the end.
    rows, end, _, _ = run_fake(monkeypatch, CHINESE, max_time_s)
    assert max_time_s - 2.0 <= end <= max_time_s + 2.0
    assert 1 <= len(rows) <= 2


# --- one real run ------------------------------------------------------------------------------


def test_a_run_records_how_many_characters_each_evaluation_scored(tmp_path, monkeypatch):
    from helpers import TINY_MODEL, make_text

    from charrnn.rundir import RunDir
    from charrnn.train import train

    corpus = tmp_path / "corpus.txt"
    corpus.write_text(make_text(3_000, seed=7), encoding="utf-8")
    # 74 windows of 4; at most 256 characters: 64 stretches of one window each.
    monkeypatch.setattr(evaluation, "MAX_EVAL_CHARS", 256)
    train_cfg = {"seq_length": 4, "batch_size": 4, "epochs": 1, "eval_every_s": 0.2}
    train([str(corpus)], str(tmp_path / "run"), dict(TINY_MODEL), train_cfg, quiet=True, log=lambda line: None)
    rows = RunDir(tmp_path / "run").metrics.read()
    assert rows and all(row["val_chars_scored"] == 64 * 4 for row in rows)
