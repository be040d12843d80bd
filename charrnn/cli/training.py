"""`charrnn train`: its options, the one call to charrnn.train, and the summary it prints."""

import sys

import click

from charrnn.backend import KERNELS, STRATEGIES
from charrnn.cells import CELL_TYPES
from charrnn.cli.options import DURATION, FRACTION, POSITIVE, SEED, Number, reports_errors, run_dir_option
from charrnn.config import LR_DECAYS, STATE_HANDLING, ModelConfig, TrainConfig
from charrnn.softmax import ADAPTIVE_FROM, OUTPUT_LAYERS

_M, _T = ModelConfig(), TrainConfig()
# Options whose config fields are named after their unit.
_RENAMES = {"max_time": "max_time_s", "eval_every": "eval_every_s", "checkpoint_every": "checkpoint_every_s"}


@click.command()
@click.argument("corpus", nargs=-1, type=click.Path(dir_okay=True, allow_dash=True))
@run_dir_option
@click.option("--model", type=click.Choice(CELL_TYPES), help=f"Recurrent cell type.  [default: {_M.model}]")
@click.option("--layers", type=POSITIVE, help=f"Number of recurrent layers.  [default: {_M.layers}]")
@click.option("--units", type=POSITIVE, help=f"Units per recurrent layer.  [default: {_M.units}]")
@click.option("--embedding-dim", type=POSITIVE, help=f"Size of the character embedding.  [default: {_M.embedding_dim}]")
@click.option("--dropout", type=Number(0, 1, max_open=True), help=f"Dropout between layers.  [default: {_M.dropout}]")
@click.option(
    "--recurrent-dropout", type=Number(0, 1, max_open=True),
    help=f"Dropout of the state inside each recurrence, one mask per window (variational; training only).  [default: {_M.recurrent_dropout}]",
)
@click.option(
    "--output-layer", type=click.Choice(("auto",) + OUTPUT_LAYERS),
    help=f"full: a softmax over every character; adaptive: the commonest characters in a head, the rarer behind "
    f"narrower clusters (much faster for large alphabets). auto: adaptive from {ADAPTIVE_FROM} distinct characters.  [default: auto]",
)
@click.option("--seq-length", type=POSITIVE, help=f"Characters per training window.  [default: {_T.seq_length}]")
@click.option("--batch-size", type=POSITIVE, help=f"Windows per step.  [default: {_T.batch_size}]")
@click.option("--learning-rate", type=Number(0, min_open=True), help=f"Peak learning rate.  [default: {_T.learning_rate:g}]")
@click.option(
    "--adam-beta2", type=Number(0, 1, min_open=True, max_open=True),
    help=f"Adam's beta2, the decay of its squared-gradient average (0.99 forgets faster).  [default: {_T.adam_beta2:g}]",
)
@click.option(
    "--weight-decay", type=Number(0, 1, max_open=True),
    help=f"Decoupled weight decay (AdamW): each step shrinks the weights (not the biases) by learning rate x this.  [default: {_T.weight_decay:g}]",
)
@click.option(
    "--lr-decay", type=click.Choice(LR_DECAYS),
    help=f"How the learning rate decays after its warm-up, over the whole budget, to --final-lr-fraction of the peak.  [default: {_T.lr_decay}]",
)
@click.option(
    "--final-lr-fraction", type=Number(0, 1),
    help=f"The learning rate at the budget's end, as a share of the peak.  [default: {_T.final_lr_fraction:g}]",
)
@click.option("--epochs", type=POSITIVE, help=f"Stop after this many passes over the text.  [default: {_T.epochs}]")
@click.option("--max-time", type=DURATION, help="Stop after this much training time (90, 90s, 15m, 2h), if sooner.")
@click.option("--val-fraction", type=FRACTION, help=f"Share of the corpus, from its end, held out to validate.  [default: {_T.val_fraction}]")
@click.option("--eval-every", type=DURATION, help=f"Time between validation passes.  [default: {_T.eval_every_s:g}s]")
@click.option("--checkpoint-every", type=DURATION, help=f"Time between checkpoints (also at every epoch end).  [default: {_T.checkpoint_every_s:g}s]")
@click.option("--random-seed", type=SEED, help=f"Seed for weights and data order.  [default: {_T.random_seed}]")
@click.option(
    "--state", type=click.Choice(STATE_HANDLING),
    help="carry: each window goes on from the state the window before it in the text left (as sampling reads text); "
    f"reset: every window from a zero state.  [default: {_T.state}]",
)
@click.option(
    "--init-from", type=click.Path(file_okay=False), metavar="BASE",
    help="Start a new run from the best weights of the run in BASE (only read): its shape, its characters and any new ones of "
    "this text; for a small text of your own. Fine-tuning's defaults: learning rate 0.002, no dropout, no weight decay.",
)
@click.option("--resume", is_flag=True, help="Continue the run in --run-dir where it stopped.")
@click.option("--force", is_flag=True, help="Start over in a --run-dir that holds a run (replaced once the new run has saved its first checkpoint; only charrnn's files); with --resume, accept a changed corpus.")
@click.option("-q", "--quiet", is_flag=True, help="No progress bar; only the line that says what trains, and the final summary.")
@click.option(
    "--strategy", type=click.Choice(STRATEGIES), default="auto", show_default=True,
    help="How to spread training. auto: multi-worker when TF_CONFIG names a cluster, mirrored over several GPUs, "
    "one GPU, or without a GPU mirrored over 2 logical CPUs (measured faster on 2 cores), else one device.",
)
@click.option("--replicas", type=POSITIVE, help="For mirrored training: the GPUs to use, or without GPUs the logical devices to split the CPU into.")
@click.option(
    "--kernel", type=click.Choice(KERNELS), default="auto", show_default=True,
    help="The recurrences: fused (XLA; fastest on CPUs), cudnn (GPU), keras (Keras's generic loop).",
)
@reports_errors
def train(corpus, run_dir, init_from, resume, force, quiet, strategy, replicas, kernel, **options):
    """Train on CORPUS: UTF-8 text files, or - for standard input.

    Training stops at whichever of --epochs and --max-time comes first; Ctrl-C saves a checkpoint.
    The learning rate warms up, then decays over that budget. With --resume, CORPUS may be left
    out: the files the run was started on are read again (and must not have changed).
    """
    from charrnn.errors import UsageError
    from charrnn.train import train as train_run

    if not corpus and not resume:
        raise UsageError("no corpus given: pass one or more UTF-8 text files, or - for standard input")
    model_options, train_options = _configs(options)
    result = train_run(
        corpus, run_dir, model_options, train_options, resume=resume, force=force, quiet=quiet, stdin=sys.stdin.buffer,
        strategy=strategy, replicas=replicas, kernel=kernel, init_from=init_from,
    )
    if not result.chief:
        click.echo(f"worker done: trained {result.step:,} steps with the others; the chief saved the run", err=True)
        return
    click.echo(_summary(result), err=True)
    click.echo(
        f"next: charrnn sample -r {result.run_dir} (text from the model); see the run: charrnn report -r "
        f"{result.run_dir} (one HTML page), or tensorboard --logdir {result.run_dir} (pip install 'charrnn[tensorboard]')",
        err=True,
    )


def _configs(options):
    """The options given (not None), as (model options, training options) by config field name."""
    given = {_RENAMES.get(k, k): v for k, v in options.items() if v is not None}
    model_fields = set(ModelConfig.__dataclass_fields__)
    model_options = {k: v for k, v in given.items() if k in model_fields}
    train_options = {k: v for k, v in given.items() if k not in model_fields}
    return model_options, train_options


def _summary(result):
    """The line that ends a training: which budget ended it, what it trained, its best loss."""
    from charrnn.train.budget import all_epochs
    from charrnn.units import bits_per_char, duration

    best = (
        f"best validation loss {result.best_val_loss:.4f} nats/char ({bits_per_char(result.best_val_loss):.3f} bits/char, "
        f"state carried; {result.val_estimate or 'an estimate'}) at step {result.best_step:,}"
        if result.best_val_loss != float("inf") else "no validation yet"
    )
    # Which budget ended the run; then what this session trained, and (resumed) the whole run.
    if result.stop_reason == "epochs":
        why = f"{all_epochs(result.epochs)} done"
    else:
        why = f"stopped: {duration(result.max_time_s)} time budget reached at {result.epoch:.2f} of {result.epochs:,} epochs"
    took = duration(result.session_s)
    if result.compile_s >= 1:
        took += f" ({duration(result.compile_s)} of it compiling)"
    took += _speeds(result)
    if result.session_steps < result.step:
        trained = (
            f"trained {result.session_steps:,} more steps in {took} "
            f"({result.step:,} steps, {result.chars_seen:,} chars, {duration(result.elapsed_s)} in all)"
        )
    else:
        steps = f"{result.step:,} step{'' if result.step == 1 else 's'}"
        trained = f"trained {steps} ({result.chars_seen:,} chars) in {took}"
    return f"{why}: {trained}; {best}; saved in {result.run_dir}"


def _speeds(result):
    """" at 8,534 chars/s training (4,853 chars/s over the session, evaluations included)": the
    speed of the training steps alone, and the session's average with its compiling, evaluations
    and checkpoints."""
    if not result.chars_per_s:
        return ""
    speeds = f" at {result.chars_per_s:,.0f} chars/s training"
    if result.session_s > 0 and result.session_chars > 0:
        speeds += f" ({result.session_chars / result.session_s:,.0f} chars/s over the session, evaluations included)"
    return speeds
