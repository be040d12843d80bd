"""How much of the validation text the training loop scores, and what the end of a run costs.

The share. An evaluation scores validation characters twice (windows from a zero state, and
stretches read with the state carried). What a character costs grows with the vocabulary (the
output layer) and with the machine's load, so a fixed number of characters cannot be a fixed
share of the time (262,144 of them took 45% of a 3-minute run on a 6,000-character Chinese text).
Instead each session times an evaluation step when it starts (`Validation.costs`, where it is
compiled), and again at its first evaluation, where it decides once how many windows to score
(`Plan.choose`):
as many as fit in EVAL_SHARE of the time that falls to each evaluation (`allowance_s`: the
session's time budget, or the length its epochs will take at the speed measured so far, without
compiling, shared among its evaluations, the last one at the end included). `windows_scored`
shrinks the evenly spaced stretches first (fewer windows each, down to one), then their number
(down to one evaluation step each way, the least an evaluation takes), and rounds down to a round
figure (`round_down`), so that two runs on one machine usually score the same characters.

The characters are then the same at every evaluation of the session (Validation.use: evenly
spaced, chosen without randomness), so that the losses stay comparable, and each metrics row says
how many (val_chars_scored). A size is decided rather than a cadence because the last evaluation
cannot be put off, and because --eval-every is the user's: it stays the cadence. Only a cadence so
short that a single evaluation step each way is more than the share (a few training steps apart)
makes evaluations take more.

The end. A run with a time budget must finish its last evaluation and checkpoint inside the
budget. After every step, evaluation and checkpoint the loop asks whether one more step, the last
evaluation and the last checkpoint still fit (`EndCosts.reserve`): each as measured (the longest
recent step, the longest evaluation, the last checkpoint; estimated until then), with a margin.
It cannot stop inside a step, so it ends up to about one step before the budget.
"""

import math
from collections import deque

# Each evaluation's size is chosen to take this share of the session's time without compiling.
EVAL_SHARE = 0.07
# Evaluations are put off while the session's, the next one included, would take more than this
# share of its time so far without compiling: the safety net for evaluations that cost more than
# their size was chosen for (the machine got busier). Both shares leave room under the 10% of
# training time promised for the last evaluation, checkpoints and the estimates' errors.
CADENCE_SHARE = 0.075
# The costs still to come at the end are reserved with this factor, plus RESERVE_EXTRA_S.
RESERVE_FACTOR = 1.1
RESERVE_EXTRA_S = 0.1
# The longest of this many recent steps is what one more step is expected to take.
RECENT_STEPS = 8
# A checkpoint writes the weights and Adam's two moments; before one has been timed, the writing
# is estimated at this many bytes a second.
WRITE_BYTES_PER_S = 100e6


def evaluations_expected(session_s, eval_every_s):
    """How many evaluations a session of `session_s` seconds has, the last one at its end
    included (at least 1)."""
    return max(1, math.ceil(session_s / eval_every_s - 1e-9))


def allowance_s(eval_every_s, session_s=math.inf, compile_s=0.0, share=EVAL_SHARE):
    """Seconds one evaluation may take so that all of a session's evaluations take at most
    `share` of it: `share` of the time between two evaluations or, in a session of `session_s`
    seconds (its time budget, or how long its epochs take), of its time without compiling shared
    among its evaluations."""
    if not math.isfinite(session_s):
        return share * eval_every_s
    return share * max(0.0, session_s - compile_s) / evaluations_expected(session_s, eval_every_s)


def round_down(count):
    """The largest of 1, 2, 3, 4, 6, 8, 12, 16, 24, ... (powers of two and 1.5 times them) that is
    at most `count` (at least 1)."""
    power = 1 << (max(1, int(count)).bit_length() - 1)
    return power * 3 // 2 if power * 3 // 2 <= count else power


def stretch_count(eval_batch, windows, streams):
    """How many stretches a part of the validation text is read as: a multiple of `eval_batch`
    near `streams` (so that every evaluation step is full), at most `windows`, at least 1."""
    return max(1, min(windows, eval_batch * max(1, round(streams / eval_batch))))


def subset_steps(stretches, windows_each, eval_batch):
    """Evaluation steps to score `stretches` stretches of `windows_each` windows both ways: the
    windows `eval_batch` a step, then the stretches `eval_batch` side by side, a window a step."""
    windowed = -(-stretches * windows_each // eval_batch)
    carried = -(-stretches // eval_batch) * windows_each
    return windowed + carried


def layout(windows, stretches):
    """(stretches, windows each) of a part of the text of `windows` windows: `stretches` stretches
    of windows // stretches windows each or, for fewer windows, one window a stretch."""
    count = max(1, min(stretches, windows))
    return count, max(1, windows // count)


def windows_scored(allowance, step_s, stretches, eval_batch, most):
    """How many validation windows an evaluation scores to take at most `allowance` seconds at
    `step_s` seconds an evaluation step: `stretches` stretches of `most` windows (all there are) if
    that fits; else of fewer windows each, a round figure (round_down); else fewer stretches of one
    window, a round multiple of `eval_batch`; at least one step each way."""

    def fits(windows):
        return subset_steps(*layout(windows, stretches), eval_batch) * step_s <= allowance

    if step_s <= 0 or fits(stretches * most):
        return stretches * most
    if fits(stretches):
        return stretches * round_down(_largest(lambda each: fits(stretches * each), most))
    steps = _largest(lambda count: fits(count * eval_batch), max(1, stretches // eval_batch))
    return min(stretches * most, eval_batch * round_down(steps))


def _largest(fits, high):
    """The largest n in 1..high with fits(n) (fits grows false with n); 1 if none."""
    low, best = 1, 1
    while low <= high:
        middle = (low + high) // 2
        if fits(middle):
            best, low = middle, middle + 1
        else:
            high = middle - 1
    return best


class EndCosts:
    """What the end of a run will cost: one more training step (the longest of the recent ones),
    the last evaluation (Plan.record_evaluation: the longest so far) and the last checkpoint (the
    last one), each as measured, until then as estimated."""

    def __init__(self, evaluation_s, checkpoint_s, step_s):
        self.evaluation_s, self.checkpoint_s = evaluation_s, checkpoint_s
        self.first_step_s = step_s  # until a step after the first (which compiles) is timed
        self.steps = deque(maxlen=RECENT_STEPS)
        self.steps_seen = 0

    def add_step(self, seconds):
        self.steps_seen += 1
        if self.steps_seen > 1:  # the first step compiles
            self.steps.append(seconds)

    def step_s(self):
        return max(self.steps) if self.steps else self.first_step_s

    def reserve(self):
        """Seconds to keep for one more step, the last evaluation and the last checkpoint."""
        return RESERVE_FACTOR * (self.evaluation_s + self.checkpoint_s) + self.step_s() + RESERVE_EXTRA_S


def checkpoint_estimate(parameters, probe_s):
    """Seconds a checkpoint is estimated to take before one is timed: its probe, and writing the
    weights and Adam's two moments (float32) at WRITE_BYTES_PER_S."""
    return probe_s + 3 * 4 * parameters / WRITE_BYTES_PER_S


class Plan:
    """A session's evaluations as the loop runs them: their size, decided once (`choose`), and
    what the end of the run costs (`ends`, an EndCosts). `validation` is a train.evaluation.
    Validation; `budget` the run's Budget, `state` its TrainState, `timing` the session's Timing."""

    def __init__(self, validation, budget, state, timing):
        self.validation, self.budget, self.state, self.timing = validation, budget, state, timing
        self.session_start_s = state.elapsed_s
        self.eval_step_s = 0.0
        self.evaluations_s = 0.0  # this session's, measured
        self.ends = EndCosts(0.0, 0.0, 0.0)

    def start(self, parameters):
        """Compiles and times the evaluation step; estimates what the end costs from a first choice
        of the evaluations' size (for the session's time budget or its evaluation cadence) and the
        model's `parameters`."""
        compile_s, self.eval_step_s, probe_s = self.validation.costs()
        self.timing.compile_s = compile_s
        size = self.validation.choose(self.allowance(), self.eval_step_s)
        # A training step: forward and backward, about three forward passes, of batch_size windows.
        step_s = 3 * self.eval_step_s * self.budget.cfg.batch_size / self.validation.evaluator.eval_batch
        evaluation_s = self.validation.cost_s(size, self.eval_step_s)
        self.ends = EndCosts(evaluation_s, checkpoint_estimate(parameters, probe_s), step_s)

    def allowance(self):
        """Seconds one evaluation may take (allowance_s), the session's length predicted from its
        time budget and, once measured, its training speed."""
        state = self.state
        so_far = state.elapsed_s - self.session_start_s
        left = self.budget.seconds_left(state, self.timing.chars_per_s() or 0.0)
        return allowance_s(self.budget.cfg.eval_every_s, so_far + left, self.timing.compiling_s())

    def choose(self, agree):
        """Decides, at a session's first evaluation, how much of the validation text its
        evaluations score: the chief's choice, from an evaluation step timed now, which every
        worker takes through `agree` (Replicas.agree). Every worker must call it at the same
        point."""
        if self.validation.size is not None:
            return
        # Timed again: the machine's load may have changed since the start.
        self.eval_step_s = self.validation.step_s()
        size = self.validation.choose(self.allowance(), self.eval_step_s)
        _, size, _ = agree(False, float(size), 0.0)
        self.validation.use(int(round(size)))

    def record_evaluation(self, seconds):
        """Counts an evaluation of `seconds`; the last one is expected to take as long as the
        longest so far (the machine's load comes and goes)."""
        self.ends.evaluation_s = max(seconds, self.ends.evaluation_s if self.evaluations_s else 0.0)
        self.evaluations_s += seconds

    def next_evaluation_at(self, last_s):
        """When (on the run's clock) the next evaluation may begin, the last having begun at
        `last_s`: --eval-every later, and, should evaluations cost more than their size was chosen
        for (the machine's load changed), once the session's evaluations, the next one included
        (as long as the last), are at most CADENCE_SHARE of its time without compiling. The
        smallest evaluation there is (one step each way) is never put off: a cadence that asks
        for it is kept."""
        at = last_s + self.budget.cfg.eval_every_s
        if self.validation.size <= self.validation.smallest:
            return at
        needed = (self.evaluations_s + self.ends.evaluation_s) / CADENCE_SHARE
        return max(at, self.session_start_s + self.timing.compiling_s() + needed)


class Timing:
    """Where a session's time went: compiling (the evaluation step's first run, and the first
    training step's excess over the others), and the training steps after the first, for the
    session's training speed."""

    def __init__(self):
        self.compile_s = 0.0  # of the evaluation step
        self.first_step_s = None
        self.steps, self.steps_s, self.chars = 0, 0.0, 0  # after the first

    def add_step(self, seconds, chars):
        if self.first_step_s is None:
            self.first_step_s = seconds
        else:
            self.steps, self.steps_s, self.chars = self.steps + 1, self.steps_s + seconds, self.chars + chars

    def chars_per_s(self):
        """Training characters per second (None before two steps)."""
        return self.chars / self.steps_s if self.steps_s > 0 else None

    def compiling_s(self):
        typical = self.steps_s / self.steps if self.steps else 0.0
        return self.compile_s + max(0.0, (self.first_step_s or 0.0) - typical)
