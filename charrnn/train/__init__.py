"""`charrnn train`: lock -> set-up -> build -> loop -> result.

The run directory's lock (lock.py, through RunDir) is held for the whole session by the chief;
the set-up rules for a new, resumed or replaced run are setup.py's; building the strategy, model,
optimizer, restores, steps and hooks is build.py's; the outer loop is loop.py's, the inner step
steps.py's, the checkpoints checkpoints.py's; failures.py turns what can fail midway into one line.
"""

import contextlib
import sys
from dataclasses import dataclass

from charrnn.rundir import RunDir

__all__ = ["TrainResult", "diverged", "train"]


@dataclass
class TrainResult:
    run_dir: str
    step: int
    epoch: float  # epochs done
    chars_seen: int
    elapsed_s: float  # training time over the whole run, across resumes
    chars_per_s: float | None  # this session's training steps after the first (None: fewer than two)
    best_val_loss: float
    best_step: int
    stop_reason: str  # "epochs" or "time"
    spread: dict  # strategy, replicas, workers, kernel
    chief: bool = True  # whether this process wrote the run directory
    epochs: int = 0  # the epochs budget
    max_time_s: float | None = None  # the time budget
    session_steps: int = 0  # steps of this session (fewer than `step` when it resumed)
    session_s: float = 0.0  # this session's time, from the line that starts training to its end
    compile_s: float = 0.0  # about how much of it went to compiling the steps
    session_chars: int = 0  # characters this session trained on
    val_estimate: str = ""  # what best_val_loss is measured on (evaluation.carried_estimate)


def train(
    corpus_paths,
    run_dir="charrnn-run",
    model_options=None,
    train_options=None,
    resume=False,
    force=False,
    quiet=False,
    stdin=None,
    log=None,
    strategy="auto",
    replicas=None,
    kernel="auto",
    hooks=(),
    init_from=None,
):
    """Trains a model on the corpus into `run_dir` and returns a TrainResult.

    `model_options` and `train_options` are ModelConfig / TrainConfig fields given by the user;
    the rest take their defaults, or, with `resume`, the run's saved values. `log` receives status
    lines (default: stderr). `strategy`, `replicas` and `kernel` say how the work is spread and
    run (backend.make_strategy, forward.choose_kernel); they may change from session to session.
    `hooks` are more train.hooks.Hook objects to call. `init_from` names a run directory whose best
    weights a new run starts from (train/transfer.py). Raises CharRNNError subclasses for anything
    the user can fix, and Interrupted after saving a checkpoint when stopped by a signal.
    """
    # Imported here, not with the package: `charrnn info` and `report` count epochs with
    # train.budget, which must not load the whole trainer with it.
    from charrnn.backend import import_tensorflow, writes_run
    from charrnn.train import build, failures, setup

    log = log or (lambda line: print(line, file=sys.stderr, flush=True))
    request = setup.Request(corpus_paths, model_options or {}, train_options or {}, resume, force, stdin, init_from)
    options = build.SessionOptions(strategy, replicas, kernel, list(hooks), quiet)
    # A worker other than the chief reads the run directory (to resume) but never writes it.
    run = RunDir(run_dir, read_only=not writes_run(strategy))
    # What only the chief says; the other workers train the same steps without a word of it.
    announce = log if run.writes else (lambda line: None)
    with _locked(run, log):
        prepared = setup.prepare(run, request, announce)
        tf = import_tensorflow()
        spread, recurrence = build.distribution_and_kernel(tf, options, prepared.settings, log)
        with failures.translated(tf, spread.workers, prepared.settings, run):
            session = build.build(tf, prepared, spread, recurrence, options, log, announce)
            started = (session.state.elapsed_s, session.state.step, session.state.chars_seen)
            stop = session.loop.run()
        return _result(session, stop, started)


def __getattr__(name):
    """`charrnn.train.diverged`, part of the package's API, loaded with the loop when asked for."""
    if name == "diverged":
        from charrnn.train.loop import diverged

        return diverged
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


@contextlib.contextmanager
def _locked(run, log):
    """Holds the run directory's lock (a read-only run takes none) and, however training ends,
    leaves no leftovers: no temporary files, no new run built beside an old one that it did not
    replace (--force), no empty run directory."""
    created = not run.path.exists() and not run.path.is_symlink()
    stale = run.lock()
    try:
        if stale:
            log(f"note: took over the lock of a training that is no longer running (pid {stale})")
        yield
    finally:
        # A new run built beside an old one (--force) that failed before it replaced it: the old
        # run stays as it was.
        run.remove_temporaries()
        run.unlock()
        if created and not run.has_run():
            # Training failed before it saved anything: leave no empty run directory behind.
            run.remove_if_empty()


def _result(session, stop, started):
    state, budget, cfg, timing = session.state, session.budget, session.settings.train, session.loop.timing
    return TrainResult(
        run_dir=str(session.run.path),
        step=state.step,
        epoch=budget.epochs_done(state),
        chars_seen=state.chars_seen,
        elapsed_s=state.elapsed_s,
        chars_per_s=timing.chars_per_s(),
        best_val_loss=state.best_val_loss,
        best_step=state.best_step,
        stop_reason=stop,
        spread=session.settings.spread,
        chief=session.run.writes,
        epochs=cfg.epochs,
        max_time_s=cfg.max_time_s,
        session_steps=state.step - started[1],
        session_s=state.elapsed_s - started[0],
        compile_s=timing.compiling_s(),
        session_chars=state.chars_seen - started[2],
        val_estimate=session.loop.validation.estimate(),
    )
