"""Building a session from a Prepared run: the strategy and the kernel, the model and its
optimizer, the run's first checkpoint or the restored one, the steps, and the loop with the chief's
hooks."""

import platform
from dataclasses import dataclass

import numpy as np

from charrnn import __version__, model as model_lib
from charrnn.backend import make_strategy
from charrnn.errors import UsageError
from charrnn.rundir import RunDir, Settings
from charrnn.state import TrainState
from charrnn.train.batching import batching_for
from charrnn.train.budget import Budget
from charrnn.train.checkpoints import Checkpoints
from charrnn.train.evaluation import Validation
from charrnn.train.forward import choose_kernel
from charrnn.train.hooks import MetricsLog, ProgressBar, start_line
from charrnn.train.loop import Loop
from charrnn.train.steps import build_steps
from charrnn.train.tensorboard import TensorBoardLog
from charrnn.units import duration


@dataclass
class SessionOptions:
    """How this session runs, beside the run's settings: it may change when resuming."""

    strategy: str = "auto"  # --strategy (backend.make_strategy)
    replicas: int | None = None  # --replicas
    kernel: str = "auto"  # --kernel (train.forward.choose_kernel)
    hooks: list = None  # more train.hooks.Hook objects to call
    quiet: bool = False  # no progress bar


@dataclass
class Session:
    """A built session, ready to run."""

    run: RunDir  # where it trains (for --force, the old run's place once the new one is adopted)
    settings: Settings
    budget: Budget
    state: TrainState  # where it starts; the loop moves it on
    loop: Loop


def distribution_and_kernel(tf, options, settings, log):
    """(backend.Distribution, train.forward.RecurrenceKernel) of this session for the run's
    `settings`, said in `log` when they are not the defaults. Call it before TensorFlow runs
    anything."""
    train_cfg = settings.train
    spread = make_strategy(tf, options.strategy, options.replicas, train_cfg.batch_size)
    kernel = choose_kernel(tf, options.kernel, settings.model.model)
    if train_cfg.batch_size % spread.replicas:
        raise UsageError(
            f"--batch-size {train_cfg.batch_size} does not split evenly over {spread.replicas} replicas; "
            f"use a multiple of {spread.replicas} (it is the global batch, whatever the replicas)"
        )
    if options.strategy != "auto" or spread.workers > 1 or options.kernel != "auto":
        log(f"training on {spread.describe()} with the {kernel.name} kernel")
    return spread, kernel


def build(tf, prepared, spread, kernel, options, log, announce):
    """The Session of a Prepared run under `spread` with `kernel`: a new run's first files and
    checkpoint written, or the resumed one restored. `announce` is the chief's log."""
    import keras

    settings, model_cfg, train_cfg = prepared.settings, prepared.settings.model, prepared.settings.train
    keras.utils.set_random_seed(train_cfg.random_seed)
    with spread.strategy.scope():
        model = model_lib.build_model(model_cfg, use_cudnn=kernel.use_cudnn)
        optimizer = global_clip_adam(
            keras, tf, train_cfg.learning_rate, train_cfg.clipnorm, train_cfg.adam_beta2, train_cfg.weight_decay
        )
        optimizer.build(model.trainable_variables)
    checkpoints = Checkpoints(prepared.run, model, model_cfg, optimizer)
    settings.spread = dict(spread.facts(), kernel=kernel.name)
    state = _open_run(tf, keras, prepared, checkpoints, int(model.count_params()))
    batching = batching_for(train_cfg)
    step, evaluator = build_steps(
        tf, spread.strategy, model, model_cfg, optimizer, kernel, prepared.train_ids, train_cfg.seq_length,
        batching, several_workers=spread.workers > 1, counts=prepared.vocab.counts,
    )
    if prepared.checkpoint is not None:
        checkpoints.restore_carried(prepared.checkpoint, step.state, train_cfg.batch_size, announce)
    budget = Budget(train_cfg, len(prepared.train_ids))
    run = checkpoints.run
    hooks = _chief_hooks(tf, run, prepared, checkpoints, budget, options.quiet) if run.writes else []
    validation = Validation(evaluator, prepared.val_ids, train_cfg.seq_length)
    loop = Loop(step, batching, validation, checkpoints, budget, state, hooks + list(options.hooks or ()), log)
    # The time budget counts from this line: compiling, evaluations and checkpoints included.
    what = start_line(model_cfg, int(model.count_params()), prepared.train_ids, prepared.val_ids, prepared.vocab.vocab_size, budget, state)
    if prepared.checkpoint is None:
        announce(f"training {what}")
    else:
        done = f"{budget.describe_done(state)}, {duration(state.elapsed_s)} trained"
        announce(f"resuming {run.path} at step {state.step:,} ({done}): {what}")
    return Session(run, settings, budget, state, loop)


def _open_run(tf, keras, prepared, checkpoints, parameters):
    """Starts a new run on disk (vocabulary, settings, a step-0 checkpoint, and with --force the
    old run replaced), or restores a resumed one; returns the TrainState to train from."""
    settings, run = prepared.settings, prepared.run
    if prepared.checkpoint is None:
        state = TrainState()
        settings.versions = _versions(tf, keras)
        settings.parameters = parameters
        if prepared.initial_weights is not None:  # fine-tuning: the base's weights, grown (train/transfer.py)
            model_lib.set_weights(checkpoints.model, settings.model, prepared.initial_weights)
        run.vocab.write(prepared.vocab)
        run.settings.write(settings)
        checkpoints.start_new(state, replacing=prepared.replacing)
    else:
        state = checkpoints.restore(prepared.checkpoint, settings)
        run.settings.write(settings)
    return state


def _chief_hooks(tf, run, prepared, checkpoints, budget, quiet):
    """What the chief alone does around the loop: the metrics log, TensorBoard and the progress bar."""
    resumed_at = None if prepared.checkpoint is None else prepared.checkpoint.state.step
    hooks = [
        MetricsLog(run, prepared.settings.spread),
        TensorBoardLog(tf, run, checkpoints.weights, prepared.settings.model, prepared.vocab, resumed_at),
    ]
    if not quiet:
        hooks.append(ProgressBar(budget))
    return hooks


def global_clip_adam(keras, tf, learning_rate, clipnorm, beta_2=0.999, weight_decay=0.0):
    """Adam that clips the gradient by its global norm after the sum over replicas.

    Keras's own `global_clipnorm` clips each replica's share before the all-reduce, which under
    several replicas is not the global norm. Keras 3 sums the replicas' gradients in
    `_all_reduce_sum_gradients` (an identity with one replica); the clip goes right after it.
    tests/test_distribute.py checks that two replicas clip as one device does.
    """

    class GlobalClipAdam(keras.optimizers.Adam):
        gradient_norm = None  # the global norm before clipping, of the step being traced

        def _all_reduce_sum_gradients(self, grads_and_vars):
            pairs = super()._all_reduce_sum_gradients(grads_and_vars)
            # Dense: the norm of an embedding's IndexedSlices would count a repeated row's parts
            # apart instead of summing them (Keras's layers give slices; fastrnn a dense tensor).
            dense = [tf.convert_to_tensor(g) for g, _ in pairs]
            grads, self.gradient_norm = tf.clip_by_global_norm(dense, clipnorm)
            return list(zip(grads, [v for _, v in pairs]))

    optimizer = GlobalClipAdam(learning_rate=learning_rate, beta_2=beta_2, weight_decay=weight_decay or None)
    if weight_decay:
        optimizer.exclude_from_weight_decay(var_names=["bias"])  # AdamW's habit: matrices and embeddings only
    return optimizer


def _versions(tf, keras):
    return {
        "charrnn": __version__,
        "tensorflow": tf.__version__,
        "keras": keras.__version__,
        "numpy": np.__version__,
        "python": platform.python_version(),
    }
