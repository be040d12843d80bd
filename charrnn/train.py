"""The training loop: budgets, learning-rate schedule, evaluation, checkpoints, resume, Ctrl-C."""

import dataclasses
import math
import platform
import signal
import sys
import time
from dataclasses import dataclass

import numpy as np

from charrnn import __version__, config, data, model as model_lib
from charrnn.backend import import_tensorflow
from charrnn.errors import CorpusError, RunDirError, TrainingDiverged, UsageError
from charrnn.rundir import RunDir

# Evaluation uses at most this many validation characters (evenly spaced windows), so that it
# stays quick on large corpora; tiny Shakespeare's 111,540 are all used.
MAX_EVAL_CHARS = 262_144
EVAL_BATCH = 128
# A loss above this (nats per character) means training has diverged even if it is still finite:
# a uniform guess over 100,000 characters costs 11.5.
DIVERGED_LOSS = 1000.0


def diverged(loss):
    """Whether a training or validation loss shows that training has diverged."""
    return not math.isfinite(loss) or loss > DIVERGED_LOSS


class Interrupted(Exception):
    """Training stopped on Ctrl-C or SIGTERM after saving a checkpoint."""


@dataclass
class TrainResult:
    run_dir: str
    step: int
    epoch: float
    chars_seen: int
    elapsed_s: float
    chars_per_s: float
    best_val_loss: float
    best_step: int
    stop_reason: str  # "epochs", "time" or "interrupt"


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
):
    """Trains a model on the corpus into `run_dir` and returns a TrainResult.

    `model_options` and `train_options` are ModelConfig / TrainConfig fields given by the user;
    the rest take their defaults, or, with `resume`, the run's saved values. `log` receives status
    lines (default: stderr). Raises CharRNNError subclasses for anything the user can fix, and
    Interrupted after saving a checkpoint when stopped by a signal.
    """
    log = log or (lambda line: print(line, file=sys.stderr, flush=True))
    run = RunDir(run_dir)
    created = not run.path.exists()
    stale = run.lock()
    try:
        if stale:
            log(f"note: took over the lock of a training that is no longer running (pid {stale})")
        return _train_locked(run, corpus_paths, model_options or {}, train_options or {}, resume, force, quiet, stdin, log)
    finally:
        run.unlock()
        if created and not run.has_run():
            # Training failed before it saved anything: leave no empty run directory behind.
            run.remove_if_empty()


def _train_locked(run, corpus_paths, model_options, train_options, resume, force, quiet, stdin, log):
    if run.has_run() and not resume and not force:
        raise RunDirError(
            f"{run.path} already holds a run; continue it with --resume, "
            "or start over with --force (which deletes it), or use another --run-dir"
        )
    if resume and not run.has_run():
        raise RunDirError(f"nothing to resume in {run.path}; start a run with: charrnn train CORPUS --run-dir {run.path}")

    if resume:
        settings = run.read_settings()
        model_cfg, train_cfg = _resumed_configs(settings, model_options, train_options)
        vocab = run.read_vocab()
        paths = list(corpus_paths) or [f["path"] for f in settings["corpus"]["files"]]
        corpus = data.load_corpus(paths, stdin=stdin, vocab=vocab)
        _check_same_corpus(settings["corpus"]["files"], corpus.files, force)
        train_ids, val_ids = data.split(corpus.ids, train_cfg.seq_length, train_cfg.val_fraction)
        weights, optimizer_values, state = run.load_checkpoint()
        # Refuse before anything in the directory changes.
        if budget_progress(train_cfg, state, len(train_ids)) >= 1.0 or state["epoch"] >= train_cfg.epochs:
            raise UsageError(
                f"the run in {run.path} already finished its budget (epoch {state['epoch']}, "
                f"{_duration(state['elapsed_s'])} of training); raise --epochs or --max-time to train further"
            )
    else:
        model_cfg = config.ModelConfig(**model_options)
        train_cfg = config.TrainConfig(**train_options)
        model_cfg.validate()
        train_cfg.validate()
        corpus = data.load_corpus(corpus_paths, stdin=stdin)
        model_cfg.vocab_size = corpus.vocab.vocab_size
        train_ids, val_ids = data.split(corpus.ids, train_cfg.seq_length, train_cfg.val_fraction)
        # Only now that the new corpus is known to be usable does --force delete the old run.
        if force:
            run.clear()

    tf = import_tensorflow()
    import keras

    keras.utils.set_random_seed(train_cfg.random_seed)
    strategy = tf.distribute.get_strategy()
    with strategy.scope():
        model = model_lib.build_model(model_cfg)
        optimizer = keras.optimizers.Adam(learning_rate=train_cfg.learning_rate, global_clipnorm=train_cfg.clipnorm)
        optimizer.build(model.trainable_variables)

    if resume:
        _restore(run, model, model_cfg, optimizer, weights, optimizer_values)
        best = run.read_best_state()
        if best is not None and best.get("val_loss", math.inf) < state.get("best_val_loss", math.inf):
            state["best_val_loss"], state["best_step"] = best["val_loss"], best["step"]
        run.trim_metrics(state["step"])
        log(f"resuming {run.path} at step {state['step']:,} (epoch {state['epoch'] + 1})")
    else:
        state = {
            "step": 0,  # optimizer steps done
            "epoch": 0,  # epochs completed
            "batch_in_epoch": 0,  # batches of the current epoch done
            "chars_seen": 0,  # training targets seen
            "elapsed_s": 0.0,  # training wall time, summed over resumes
            "best_val_loss": math.inf,
            "best_step": 0,
        }
        settings = {
            "model": dataclasses.asdict(model_cfg),
            "train": dataclasses.asdict(train_cfg),
            "corpus": {
                "files": corpus.files,
                "chars": int(len(corpus.ids)),
                "train_chars": int(len(train_ids)),
                "val_chars": int(len(val_ids)),
                "vocab_size": corpus.vocab.vocab_size,
            },
            "versions": _versions(tf, keras),
            "parameters": int(model.count_params()),
        }
        run.write_vocab(corpus.vocab)
        run.write_settings(settings)
        # A step-0 checkpoint: the directory is loadable from the start.
        run.save_checkpoint(model_lib.get_weights(model, model_cfg), [v.numpy() for v in optimizer.variables], state)
    if resume:
        settings["train"] = dataclasses.asdict(train_cfg)
        # The corpus as read now (it may have moved, or changed under --force): the next resume checks against it.
        settings["corpus"].update(
            files=corpus.files, chars=int(len(corpus.ids)), train_chars=int(len(train_ids)), val_chars=int(len(val_ids))
        )
        run.write_settings(settings)

    loop = _Loop(tf, strategy, run, model, model_cfg, optimizer, train_cfg, state, train_ids, val_ids, quiet, log)
    return loop.run()


def _resumed_configs(settings, model_options, train_options):
    try:
        model_cfg = config.from_dict(config.ModelConfig, settings["model"])
        train_cfg = config.from_dict(config.TrainConfig, settings["train"])
    except (TypeError, ValueError) as e:
        raise RunDirError(f"settings.json is corrupt ({e}); retrain the run") from None
    _override(model_cfg, model_options, frozen=config.SHAPE_FIELDS)
    _override(train_cfg, train_options, frozen=config.DATA_ORDER_FIELDS)
    model_cfg.validate()
    train_cfg.validate()
    return model_cfg, train_cfg


def _override(cfg, options, frozen):
    """Sets the options given on the command line, refusing changes to the `frozen` fields."""
    for name, value in options.items():
        if name in frozen and value != getattr(cfg, name):
            raise UsageError(
                f"--{name.replace('_', '-')} cannot change when resuming: the run has "
                f"{getattr(cfg, name)}, you asked for {value}; start a new run with another --run-dir"
            )
        setattr(cfg, name, value)


def _check_same_corpus(saved_files, files, force):
    saved = [(f["bytes"], f["sha256"]) for f in saved_files]
    now = [(f["bytes"], f["sha256"]) for f in files]
    if saved != now and not force:
        names = ", ".join(f["path"] for f in files)
        raise CorpusError(
            f"the corpus ({names}) differs from the one this run was trained on (sha256 changed); "
            "resume with the original text, or add --force to continue on the new text"
        )


def _restore(run, model, model_cfg, optimizer, weights, optimizer_values):
    try:
        model_lib.set_weights(model, model_cfg, weights)
    except ValueError as e:
        raise RunDirError(f"{run.file('checkpoint.npz')} does not fit the run's settings ({e}); retrain the run") from None
    variables = optimizer.variables
    shapes_ok = len(variables) == len(optimizer_values) and all(
        tuple(v.shape) == a.shape for v, a in zip(variables, optimizer_values)
    )
    if not shapes_ok:
        raise RunDirError(f"{run.file('checkpoint.npz')} holds optimizer state that does not fit the model; retrain the run")
    for variable, value in zip(variables, optimizer_values):
        variable.assign(value)


def _versions(tf, keras):
    return {
        "charrnn": __version__,
        "tensorflow": tf.__version__,
        "keras": keras.__version__,
        "numpy": np.__version__,
        "python": platform.python_version(),
    }


def budget_progress(cfg, state, num_train):
    """How far through its budget the run is, 0 to 1: whichever of epochs and time is further."""
    by_chars = state["chars_seen"] / (cfg.epochs * num_train)
    by_time = state["elapsed_s"] / cfg.max_time_s if cfg.max_time_s else 0.0
    return min(1.0, max(by_chars, by_time))


def learning_rate(cfg, progress):
    """Linear warm-up, then cosine decay to final_lr_fraction of the peak at progress 1."""
    peak = cfg.learning_rate
    if progress < cfg.warmup_fraction:
        return peak * (progress + 1e-3) / cfg.warmup_fraction
    t = min(1.0, (progress - cfg.warmup_fraction) / (1.0 - cfg.warmup_fraction))
    floor = peak * cfg.final_lr_fraction
    return floor + (peak - floor) * 0.5 * (1.0 + math.cos(math.pi * t))


class _Loop:
    def __init__(self, tf, strategy, run, model, model_cfg, optimizer, cfg, state, train_ids, val_ids, quiet, log):
        self.tf, self.run_dir, self.model, self.model_cfg = tf, run, model, model_cfg
        self.optimizer, self.cfg, self.state, self.quiet, self.log = optimizer, cfg, state, quiet, log
        self.num_train = len(train_ids)
        self.train_ids = tf.constant(train_ids)
        self.val_x, self.val_y = data.validation_windows(val_ids, cfg.seq_length, MAX_EVAL_CHARS)
        self.stop_signal = None
        self.train_step, self.eval_step = _compile_steps(tf, strategy, model, model_cfg, optimizer, cfg.batch_size)

    # Progress through the budget, 0 to 1: whichever of epochs and time is further along.
    def progress(self):
        return budget_progress(self.cfg, self.state, self.num_train)

    def run(self):
        cfg, state = self.cfg, self.state
        handlers = self._catch_signals()
        bar = _progress_bar(self.quiet)
        start_elapsed = state["elapsed_s"]
        start_chars = state["chars_seen"]
        t0 = time.monotonic() - state["elapsed_s"]
        last_eval = last_ckpt = state["elapsed_s"]
        window_losses = []
        window_start = (time.monotonic(), state["chars_seen"])
        stop = None
        loss = None  # stays None if a resume lands exactly at the end of its last epoch
        try:
            while stop is None:
                plan = data.epoch_plan(self.num_train, cfg.seq_length, cfg.batch_size, cfg.random_seed, state["epoch"])
                for x, y in data.windows_dataset(self.tf, self.train_ids, plan[state["batch_in_epoch"] :], cfg.seq_length):
                    self.optimizer.learning_rate.assign(learning_rate(cfg, self.progress()))
                    loss = float(self.train_step(x, y))
                    if diverged(loss):
                        raise self._diverged(loss)
                    state["step"] += 1
                    state["batch_in_epoch"] += 1
                    state["chars_seen"] += cfg.batch_size * cfg.seq_length
                    state["elapsed_s"] = time.monotonic() - t0
                    window_losses.append(loss)
                    if state["elapsed_s"] - last_eval >= cfg.eval_every_s:
                        self._evaluate(window_losses, window_start)
                        window_losses, window_start = [], (time.monotonic(), state["chars_seen"])
                        last_eval = state["elapsed_s"] = time.monotonic() - t0
                    if state["elapsed_s"] - last_ckpt >= cfg.checkpoint_every_s:
                        self._checkpoint()
                        last_ckpt = state["elapsed_s"]
                    bar.update(self, loss)
                    if self.stop_signal:
                        stop = "interrupt"
                    elif cfg.max_time_s and state["elapsed_s"] >= cfg.max_time_s:
                        stop = "time"
                    if stop:
                        break
                else:
                    state["epoch"] += 1
                    state["batch_in_epoch"] = 0
                    if state["epoch"] >= cfg.epochs:
                        stop = "epochs"
                    elif not self.stop_signal:
                        self._checkpoint()
                        last_ckpt = state["elapsed_s"]
            if window_losses and stop != "interrupt":
                self._evaluate(window_losses, window_start)
            self._checkpoint()
            if loss is not None:
                bar.update(self, loss, force=True)
        finally:
            bar.close()
            self._restore_signals(handlers)
        if stop == "interrupt":
            raise Interrupted(
                f"stopped at step {state['step']:,}; checkpoint saved. Resume with: "
                f"charrnn train --resume --run-dir {self.run_dir.path}"
            )
        trained_s = state["elapsed_s"] - start_elapsed
        return TrainResult(
            run_dir=str(self.run_dir.path),
            step=state["step"],
            epoch=self.epochs_done(),
            chars_seen=state["chars_seen"],
            elapsed_s=state["elapsed_s"],
            chars_per_s=(state["chars_seen"] - start_chars) / max(trained_s, 1e-9),
            best_val_loss=state["best_val_loss"],
            best_step=state["best_step"],
            stop_reason=stop,
        )

    def epochs_done(self):
        """Epochs completed, with the current one's share (its batch count is close to exact: the
        windows' offset moves by less than one window between epochs)."""
        batches = math.ceil((self.num_train - 1) // self.cfg.seq_length / self.cfg.batch_size)
        return self.state["epoch"] + self.state["batch_in_epoch"] / max(1, batches)

    def _evaluate(self, window_losses, window_start):
        state = self.state
        val_loss = self.validation_loss()
        if diverged(val_loss):
            raise self._diverged(val_loss)
        seconds = time.monotonic() - window_start[0]
        row = {
            "step": state["step"],
            "epoch": round(self.epochs_done(), 4),
            "chars_seen": state["chars_seen"],
            "elapsed_s": round(state["elapsed_s"], 2),
            "train_loss": round(float(np.mean(window_losses)), 5),
            "val_loss": round(val_loss, 5),
            "val_bpc": round(val_loss / math.log(2), 5),
            "learning_rate": float(self.optimizer.learning_rate.numpy()),
            "chars_per_s": round((state["chars_seen"] - window_start[1]) / max(seconds, 1e-9), 1),
        }
        self.run_dir.append_metrics(row)
        state["last_val_loss"] = val_loss
        state["last_train_loss"] = row["train_loss"]
        if val_loss < state["best_val_loss"]:
            state["best_val_loss"], state["best_step"] = val_loss, state["step"]
            meta = {"step": state["step"], "val_loss": val_loss, "chars_seen": state["chars_seen"]}
            self.run_dir.save_best(model_lib.get_weights(self.model, self.model_cfg), meta)

    def validation_loss(self, max_windows=None):
        """Mean cross-entropy over the validation windows (or the first `max_windows`), in nats per character."""
        x, y = self.val_x[:max_windows], self.val_y[:max_windows]
        pad = -len(x) % EVAL_BATCH
        mask = np.concatenate([np.ones(len(x), np.float32), np.zeros(pad, np.float32)])
        x = np.concatenate([x, np.zeros((pad, x.shape[1]), np.int32)])
        y = np.concatenate([y, np.zeros((pad, y.shape[1]), np.int32)])
        total = 0.0
        for i in range(0, len(x), EVAL_BATCH):
            total += float(self.eval_step(x[i : i + EVAL_BATCH], y[i : i + EVAL_BATCH], mask[i : i + EVAL_BATCH]))
        return float(total / (float(mask.sum()) * x.shape[1]))

    def _checkpoint(self):
        weights = model_lib.get_weights(self.model, self.model_cfg)
        # Never replace a good checkpoint with weights that have diverged: they must be finite and
        # still give a finite loss on one batch of validation windows.
        if not all(np.isfinite(w).all() for w in weights.values()):
            raise self._diverged(math.nan)
        probe = self.validation_loss(EVAL_BATCH)
        if diverged(probe):
            raise self._diverged(probe)
        optimizer_values = [v.numpy() for v in self.optimizer.variables]
        self.run_dir.save_checkpoint(weights, optimizer_values, self.state)

    def _diverged(self, loss):
        self._restore_signals(None)
        lr = self.cfg.learning_rate
        return TrainingDiverged(
            f"training diverged: the loss became {loss} at step {self.state['step'] + 1:,}; the last good "
            f"checkpoint is kept. Use a lower --learning-rate (now {lr:g}; try {lr / 4:g}): "
            f"charrnn train --resume --learning-rate {lr / 4:g} --run-dir {self.run_dir.path}"
        )

    def _catch_signals(self):
        """Ctrl-C and SIGTERM ask the loop to stop after the current step; a second one aborts."""

        def request_stop(signum, frame):
            if self.stop_signal:
                raise KeyboardInterrupt
            self.stop_signal = signum
            self.log("\nstopping after this step and saving a checkpoint (press Ctrl-C again to abort)")

        try:
            return {s: signal.signal(s, request_stop) for s in (signal.SIGINT, signal.SIGTERM)}
        except ValueError:  # not the main thread: leave signals alone
            return None

    def _restore_signals(self, handlers):
        for s, handler in (handlers or {}).items():
            signal.signal(s, handler)


def _compile_steps(tf, strategy, model, model_cfg, optimizer, batch_size):
    """The XLA-compiled training and evaluation steps.

    On a CPU the recurrences run through charrnn.fastrnn (same weights and logits, a backward pass
    about twice as fast as TensorFlow's own); on a GPU, through Keras's layers and so cuDNN.
    """
    if tf.config.list_physical_devices("GPU"):
        logits_of = model
    else:
        from charrnn import fastrnn

        def logits_of(x, training):
            return fastrnn.sequence_logits(model, model_cfg, x, training=training)

    def loss_per_window(y, logits):
        return tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(labels=y, logits=logits), axis=1)

    def step(x, y):
        with tf.GradientTape() as tape:
            logits = logits_of(x, training=True)  # (batch, time, vocab)
            loss = tf.nn.compute_average_loss(loss_per_window(y, logits), global_batch_size=batch_size)
        grads = tape.gradient(loss, model.trainable_variables)
        optimizer.apply_gradients(zip(grads, model.trainable_variables))
        return loss

    @tf.function(jit_compile=True, reduce_retracing=True)
    def train_step(x, y):
        losses = strategy.run(step, args=(x, y))
        return strategy.reduce("SUM", losses, axis=None)

    @tf.function(jit_compile=True, reduce_retracing=True)
    def eval_step(x, y, mask):
        logits = logits_of(x, training=False)
        losses = tf.nn.sparse_softmax_cross_entropy_with_logits(labels=y, logits=logits)
        return tf.reduce_sum(losses * mask[:, None])

    return train_step, eval_step


class _progress_bar:
    """A tqdm bar on stderr over the budget, with loss, validation loss, speed and time left."""

    def __init__(self, quiet):
        self.bar = None
        if quiet:
            return
        from tqdm import tqdm

        self.bar = tqdm(total=1000, file=sys.stderr, bar_format="{percentage:3.0f}%|{bar:20}| {desc}", dynamic_ncols=True)
        self.ema = None
        self.started = (time.monotonic(), None)
        self.last_draw = 0.0
        # Redraw 4 times a second on a terminal; in a log file (stderr redirected), every 5 s.
        self.interval = 0.25 if sys.stderr.isatty() else 5.0

    def update(self, loop, loss, force=False):
        if self.bar is None:
            return
        state = loop.state
        now = time.monotonic()
        self.ema = loss if self.ema is None else 0.95 * self.ema + 0.05 * loss
        if self.started[1] is None:
            self.started = (now, state["chars_seen"])
        if now - self.last_draw < self.interval and not force:
            return
        self.last_draw = now
        speed = (state["chars_seen"] - self.started[1]) / max(now - self.started[0], 1e-9)
        parts = [f"step {state['step']:,}", f"epoch {loop.epochs_done():.2f}", f"loss {self.ema:.3f}"]
        if state.get("last_val_loss") is not None:
            parts.append(f"val {state['last_val_loss']:.3f}")
        parts += [f"{speed:,.0f} chars/s", f"{_time_left(loop, speed)} left"]
        self.bar.n = int(loop.progress() * 1000)
        self.bar.set_description_str(", ".join(parts), refresh=True)

    def close(self):
        if self.bar is not None:
            self.bar.close()


def _time_left(loop, speed):
    """Seconds left in the budget, as text ("?" while the speed is not known yet)."""
    cfg, state = loop.cfg, loop.state
    by_time = cfg.max_time_s - state["elapsed_s"] if cfg.max_time_s else math.inf
    by_chars = (cfg.epochs * loop.num_train - state["chars_seen"]) / speed if speed > 0 else math.inf
    left = min(by_time, by_chars)
    return "?" if left == math.inf else _duration(max(0.0, left))


def _duration(seconds):
    seconds = int(round(seconds))
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds // 60 % 60:02d}m"
