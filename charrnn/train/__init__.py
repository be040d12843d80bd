"""`charrnn train`: takes the run directory's lock, sets up a new or a resumed run, and wires the
model, the inner step (steps.py), the outer loop (loop.py) and its hooks (hooks.py) together."""

import dataclasses
import platform
import re
import sys
from dataclasses import dataclass

import numpy as np

from charrnn import __version__, config, data, model as model_lib, sizing
from charrnn.backend import import_tensorflow, make_strategy, writes_run
from charrnn.errors import CharRNNError, CorpusError, RunDirError, UsageError, WorkerLost
from charrnn.rundir import CHECKPOINT, RunDir, Settings
from charrnn.state import TrainState
from charrnn.train.budget import Budget
from charrnn.train.hooks import BestWeights, Checkpointer, MetricsLog, ProgressBar, start_line
from charrnn.train.loop import Loop, diverged  # noqa: F401  (diverged: part of the package's API)
from charrnn.train.steps import Steps, choose_kernel, global_clip_adam
from charrnn.train.tensorboard import TensorBoardLog
from charrnn.units import duration

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
):
    """Trains a model on the corpus into `run_dir` and returns a TrainResult.

    `model_options` and `train_options` are ModelConfig / TrainConfig fields given by the user;
    the rest take their defaults, or, with `resume`, the run's saved values. `log` receives status
    lines (default: stderr). `strategy`, `replicas` and `kernel` say how the work is spread and
    run (backend.make_strategy, steps.choose_kernel); they may change from session to session.
    `hooks` are more train.hooks.Hook objects to call. Raises CharRNNError subclasses for anything
    the user can fix, and Interrupted after saving a checkpoint when stopped by a signal.
    """
    log = log or (lambda line: print(line, file=sys.stderr, flush=True))
    run = RunDir(run_dir)
    runtime = _Runtime(strategy, replicas, kernel, list(hooks))
    if not writes_run(strategy):
        # A worker other than the chief: it reads the run directory (to resume) but never writes it.
        return _train_locked(
            run, corpus_paths, model_options or {}, train_options or {}, resume, False, True, stdin, log, runtime, writes=False
        )
    created = not run.path.exists() and not run.path.is_symlink()
    stale = run.lock()
    try:
        if stale:
            log(f"note: took over the lock of a training that is no longer running (pid {stale})")
        return _train_locked(run, corpus_paths, model_options or {}, train_options or {}, resume, force, quiet, stdin, log, runtime)
    finally:
        # A new run built beside an old one (--force) that failed before it replaced it: the old
        # run stays as it was.
        run.remove_temporaries()
        run.unlock()
        if created and not run.has_run():
            # Training failed before it saved anything: leave no empty run directory behind.
            run.remove_if_empty()


@dataclass
class _Runtime:
    """How this session runs, beside the run's settings: it may change when resuming."""

    strategy: str
    replicas: int | None
    kernel: str
    hooks: list


@dataclass
class _Setup:
    """A run ready to build: its settings, its text, and (resuming) its last checkpoint."""

    settings: Settings
    train_ids: np.ndarray
    val_ids: np.ndarray
    vocab: object  # charrnn.vocab.Vocab
    checkpoint: object = None  # charrnn.rundir.Checkpoint, when resuming
    # With --force over an old run: the run directory that this new run (built in a staged RunDir
    # inside it) replaces once it has saved its first checkpoint.
    replaces: object = None


def _train_locked(run, corpus_paths, model_options, train_options, resume, force, quiet, stdin, log, runtime, writes=True):
    """Trains with the lock held (`writes`: the chief, or the only process), or, as a worker
    other than the chief, without writing anything into the run directory."""
    if writes and not resume:
        # Files at charrnn's names that charrnn did not write are never overwritten, nor deleted.
        run.check_not_foreign()
    if writes and run.has_run() and not resume and not force:
        raise RunDirError(
            f"{run.path} already holds a run; continue it with --resume, "
            "or start over with --force (which replaces it once the new run has saved its first checkpoint), "
            "or use another --run-dir"
        )
    if resume and not run.has_run():
        if not writes:
            raise RunDirError(
                f"nothing to resume in {run.path}: every worker resumes from the chief's run directory, "
                "so it must see it too (a shared filesystem, or a copy of it)"
            )
        raise RunDirError(f"nothing to resume in {run.path}; start a run with: charrnn train CORPUS --run-dir {run.path}")
    if resume:
        setup = _resumed_setup(run, corpus_paths, model_options, train_options, force, stdin, writes)
    elif writes and force and run.has_run():
        # The old run stays whole until the new one, built beside it, has saved its first checkpoint.
        staged = run.staged()
        setup = _new_setup(staged, corpus_paths, model_options, train_options, stdin, writes, log)
        setup.replaces, run = run, staged
    else:
        setup = _new_setup(run, corpus_paths, model_options, train_options, stdin, writes, log)
    model_cfg, train_cfg = setup.settings.model, setup.settings.train

    tf = import_tensorflow()
    spread = make_strategy(tf, runtime.strategy, runtime.replicas, train_cfg.batch_size)
    kernel = choose_kernel(tf, runtime.kernel, model_cfg.model)
    if train_cfg.batch_size % spread.replicas:
        raise UsageError(
            f"--batch-size {train_cfg.batch_size} does not split evenly over {spread.replicas} replicas; "
            f"use a multiple of {spread.replicas} (it is the global batch, whatever the replicas)"
        )
    if runtime.strategy != "auto" or spread.workers > 1 or runtime.kernel != "auto":
        log(f"training on {spread.describe()} with the {kernel.name} kernel")
    try:
        return _train_spread(tf, run, setup, spread, kernel, quiet, log, runtime, writes)
    except (MemoryError, tf.errors.ResourceExhaustedError):
        # What the estimate (sizing.check_fits) let through, or a device with less memory.
        raise UsageError(
            f"ran out of memory building or training the model ({sizing.parameters(model_cfg):,} parameters, batches of "
            f"{train_cfg.batch_size} x {train_cfg.seq_length} characters); use a smaller --units, --layers, "
            "--embedding-dim, --batch-size or --seq-length. The last checkpoint saved, if any, is intact"
        ) from None
    except tf.errors.OpError as e:
        if spread.workers == 1:
            raise
        raise WorkerLost(_worker_lost(run, e, writes)) from None


def _train_spread(tf, run, setup, spread, kernel, quiet, log, runtime, writes):
    """Builds the model under the strategy, restores or starts the run, and trains it."""
    import keras

    settings, model_cfg, train_cfg = setup.settings, setup.settings.model, setup.settings.train
    keras.utils.set_random_seed(train_cfg.random_seed)
    with spread.strategy.scope():
        model = model_lib.build_model(model_cfg, use_cudnn=kernel.use_cudnn)
        optimizer = global_clip_adam(keras, tf, train_cfg.learning_rate, train_cfg.clipnorm)
        optimizer.build(model.trainable_variables)

    def get_weights():
        return model_lib.get_weights(model, model_cfg)

    def get_optimizer_values():
        return [v.numpy() for v in optimizer.variables]

    settings.spread = dict(spread.facts(), kernel=kernel.name)
    if setup.checkpoint is None:
        state = TrainState()
        settings.versions = _versions(tf, keras)
        settings.parameters = int(model.count_params())
        if writes:
            run.write_vocab(setup.vocab)
            run.write_settings(settings)
            # A step-0 checkpoint: the directory is loadable from the start.
            run.save_checkpoint(get_weights(), get_optimizer_values(), state)
            if setup.replaces is not None:
                # Built and saved: only now does the new run replace the old one (--force).
                run = setup.replaces.adopt(run)
    else:
        state = _restore(run, model, settings, optimizer, setup.checkpoint, writes)
        if writes:
            run.write_settings(settings)

    carry = train_cfg.state == "carry"
    steps = Steps(
        tf, spread.strategy, model, model_cfg, optimizer, train_cfg.seq_length, kernel, setup.train_ids,
        spread.workers > 1, carry,
    )
    if carry and setup.checkpoint is not None and state.batch_in_epoch > 0:
        _restore_carry(run, steps, setup.checkpoint, train_cfg, log if writes else None)
    budget = Budget(train_cfg, len(setup.train_ids))
    hooks = []
    if writes:
        hooks += [MetricsLog(run, settings.spread), BestWeights(run, get_weights), Checkpointer(run, get_optimizer_values)]
        resumed_at = None if setup.checkpoint is None else state.step
        hooks.append(TensorBoardLog(tf, run, get_weights, model_cfg, setup.vocab, resumed_at))
        if not quiet:
            hooks.append(ProgressBar(budget))
    hooks += runtime.hooks
    batches = _epoch_batches(len(setup.train_ids), train_cfg)
    loop = Loop(steps, batches, budget, state, setup.val_ids, get_weights, hooks, run.path, log)
    if writes:
        # The time budget counts from this line: compiling, evaluations and checkpoints included.
        what = start_line(model_cfg, int(model.count_params()), setup.train_ids, setup.val_ids, setup.vocab.vocab_size, budget, state)
        if setup.checkpoint is None:
            log(f"training {what}")
        else:
            done = f"{budget.describe_done(state)}, {duration(state.elapsed_s)} trained"
            log(f"resuming {run.path} at step {state.step:,} ({done}): {what}")
    started = (state.elapsed_s, state.step)
    stop = loop.run()
    return TrainResult(
        run_dir=str(run.path),
        step=state.step,
        epoch=budget.epochs_done(state),
        chars_seen=state.chars_seen,
        elapsed_s=state.elapsed_s,
        chars_per_s=loop.timing.chars_per_s(),
        best_val_loss=state.best_val_loss,
        best_step=state.best_step,
        stop_reason=stop,
        spread=settings.spread,
        chief=writes,
        epochs=train_cfg.epochs,
        max_time_s=train_cfg.max_time_s,
        session_steps=state.step - started[1],
        session_s=state.elapsed_s - started[0],
        compile_s=loop.timing.compiling_s(),
    )


def _worker_lost(run, error, writes):
    """The one line for a collective operation that failed because another worker died or hung."""
    text = str(error)
    task = re.search(r"/job:(\w+)/replica:\d+/task:(\d+)", text)
    who = f"{task[1]} {task[2]}" if task else "another worker"
    lines = [line.strip() for line in text.splitlines()]
    reason = next((line for line in lines if "aborted by" in line or "timed out" in line.lower()), type(error).__name__)
    try:
        step = f"step {run.read_checkpoint_state().step:,}"
    except CharRNNError:
        step = "the last one saved"
    whose = "its" if writes else "the chief's"
    return (
        f"lost contact with {who} ({reason[:160]}); training stopped. The steps since "
        f"{whose} last checkpoint ({step}) are lost: relaunch every worker with "
        f"--resume to continue from it (run directory {run.path})"
    )


def _new_setup(run, corpus_paths, model_options, train_options, stdin, writes, log):
    model_cfg = config.ModelConfig(**model_options)
    train_cfg = config.TrainConfig(**train_options)
    model_cfg.validate()
    train_cfg.validate()
    found = data.scan(corpus_paths, stdin=stdin)
    model_cfg.vocab_size = found.vocab.vocab_size
    _check_length(found.num_chars, train_cfg)
    num_train, _ = data.split_sizes(found.num_chars, train_cfg.val_fraction)
    data.check_batch(num_train, train_cfg.seq_length, train_cfg.batch_size)
    # The size rule fills in what the user did not choose, for the time budget.
    chosen = {k: v for k, v in sizing.choose(num_train, train_cfg.max_time_s).items() if k not in model_options and k not in train_options}
    if chosen:
        for name, value in chosen.items():
            setattr(model_cfg if hasattr(model_cfg, name) else train_cfg, name, value)
        if writes:
            log(sizing.describe(train_cfg, model_cfg, num_train))
    # Refuse what cannot fit before building it (and, with --force, before the old run goes).
    sizing.check_fits(model_cfg, train_cfg)
    train_ids, val_ids = data.split(_encoded(run, found, writes), train_cfg.seq_length, train_cfg.val_fraction)
    settings = Settings(model_cfg, train_cfg, _corpus_facts(found, train_ids, val_ids), versions={}, parameters=None)
    return _Setup(settings, train_ids, val_ids, found.vocab)


def _resumed_setup(run, corpus_paths, model_options, train_options, force, stdin, writes):
    saved = run.read_settings()
    model_cfg = config.resumed(saved.model, model_options, frozen=config.SHAPE_FIELDS)
    train_cfg = config.resumed(saved.train, train_options, frozen=config.DATA_ORDER_FIELDS)
    sizing.check_fits(model_cfg, train_cfg)
    vocab = run.read_vocab()
    paths = list(corpus_paths) or [f["path"] for f in saved.corpus["files"]]
    # Reading the text again checks that it has not changed; the encoded copy is then reused.
    found = data.scan(paths, stdin=stdin, vocab=vocab)
    same = _check_same_corpus(saved.corpus["files"], found.files, force)
    _check_length(found.num_chars, train_cfg)
    checkpoint = run.load_checkpoint(saved)
    # Refuse before anything in the directory changes.
    num_train, _ = data.split_sizes(found.num_chars, train_cfg.val_fraction)
    if Budget(train_cfg, num_train).spent(checkpoint.state):
        raise RunDirError(Budget(train_cfg, num_train).finished_message(run.path, checkpoint.state))
    ids = _encoded(run, found, writes, reuse=same)
    train_ids, val_ids = data.split(ids, train_cfg.seq_length, train_cfg.val_fraction)
    # The corpus as read now (it may have moved, or changed under --force): the next resume checks against it.
    corpus_facts = dict(saved.corpus, **_corpus_facts(found, train_ids, val_ids))
    settings = dataclasses.replace(saved, model=model_cfg, train=train_cfg, corpus=corpus_facts)
    return _Setup(settings, train_ids, val_ids, vocab, checkpoint)


def _check_length(num_chars, cfg):
    """CorpusError unless a corpus of `num_chars` is long enough for the run's settings."""
    data.check_length(num_chars, cfg.seq_length, cfg.val_fraction)
    if cfg.state == "carry":
        data.check_streams(data.split_sizes(num_chars, cfg.val_fraction)[0], cfg.seq_length, cfg.batch_size)


def _encoded(run, found, writes, reuse=False):
    """The encoded text, memory-mapped: the run's corpus.npy (reused when resuming on the same
    text, else written now), or for a worker that does not write the run directory, a private
    temporary copy."""
    if not writes:
        return data.encode_to_temporary(found)
    ids = run.read_corpus(found.num_chars, found.vocab.dtype) if reuse else None
    if ids is None:
        ids = run.write_corpus(found.num_chars, found.vocab.dtype, data.encode(found))
    return ids


def _corpus_facts(found, train_ids, val_ids):
    return {
        "files": found.files,
        "chars": found.num_chars,
        "train_chars": int(len(train_ids)),
        "val_chars": int(len(val_ids)),
        "vocab_size": found.vocab.vocab_size,
    }


def _check_same_corpus(saved_files, files, force):
    """Whether the corpus is the one the run was trained on; a CorpusError if not, unless `force`."""
    saved = [(f["bytes"], f["sha256"]) for f in saved_files]
    now = [(f["bytes"], f["sha256"]) for f in files]
    if saved != now and not force:
        names = ", ".join(f["path"] for f in files)
        raise CorpusError(
            f"the corpus ({names}) differs from the one this run was trained on (sha256 changed); "
            "resume with the original text, or add --force to continue on the new text"
        )
    return saved == now


def _restore(run, model, settings, optimizer, checkpoint, writes=True):
    """Loads a checkpoint's weights and optimizer variables (RunDirError if they do not fit) and
    returns its TrainState, with the best loss that best.npz holds; drops the metric rows of the
    steps after it, which the resumed run redoes."""
    try:
        model_lib.set_weights(model, settings.model, checkpoint.weights)
    except ValueError as e:
        raise run.checkpoint_unfit(e) from None
    variables = optimizer.variables
    shapes_ok = len(variables) == len(checkpoint.optimizer) and all(
        tuple(v.shape) == a.shape for v, a in zip(variables, checkpoint.optimizer)
    )
    if not shapes_ok:
        raise run.checkpoint_unfit("its optimizer state does not fit the model")
    for variable, value in zip(variables, checkpoint.optimizer):
        variable.assign(value)
    state = checkpoint.state
    best = run.read_best(settings)
    if best is not None and best.val_loss < state.best_val_loss:
        state.best_val_loss, state.best_step = best.val_loss, best.step
    if writes:
        run.trim_metrics(state.step)
    return state


def _restore_carry(run, steps, checkpoint, cfg, log):
    """Sets the carried state saved with the checkpoint; a checkpoint without one (or one that
    does not fit) resumes from a zero state, which `log` is told."""
    expected = (cfg.batch_size, *steps.state_shape)
    if checkpoint.carry is not None and checkpoint.carry.shape == expected and np.isfinite(checkpoint.carry).all():
        steps.restore_state(checkpoint.carry)
    elif log:
        log(f"note: {run.file(CHECKPOINT)} has no carried state for this run; the rest of this epoch starts from zeros")


def _epoch_batches(num_train, cfg):
    """batches(epoch, first): the start positions of each global batch of an epoch, from batch
    `first` on: contiguous streams with the state carried, shuffled windows without."""
    windows = data.epoch_streams if cfg.state == "carry" else data.epoch_batches

    def batches(epoch, first):
        return windows(num_train, cfg.seq_length, cfg.batch_size, cfg.random_seed, epoch, first)

    return batches


def _versions(tf, keras):
    return {
        "charrnn": __version__,
        "tensorflow": tf.__version__,
        "keras": keras.__version__,
        "numpy": np.__version__,
        "python": platform.python_version(),
    }
