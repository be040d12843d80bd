"""The command line: parses options, calls one library function, prints.

Heavy modules (NumPy, TensorFlow) are imported inside the commands that need them, so that
`charrnn --help` is instant and `charrnn sample` never loads TensorFlow.
"""

import functools
import math
import os
import re
import sys

import click

from charrnn import __version__
from charrnn.backend import KERNELS, STRATEGIES
from charrnn.cells import CELL_TYPES
from charrnn.config import MAX_SEED, STATE_HANDLING, ModelConfig, TrainConfig

DEFAULT_RUN_DIR = "charrnn-run"
_M, _T = ModelConfig(), TrainConfig()


class Duration(click.ParamType):
    """A duration: 90, 90s, 15m, 2h or 1h30m; returned in seconds."""

    name = "duration"
    _part = re.compile(r"(\d+(?:\.\d+)?)([smh]?)")

    def convert(self, value, param, ctx):
        if isinstance(value, (int, float)):
            seconds = float(value)
        else:
            text = value.strip().lower()
            parts = self._part.findall(text)
            if not text or "".join(n + u for n, u in parts) != text:
                self.fail(f"{value!r} is not a duration; use e.g. 90, 90s, 15m or 2h", param, ctx)
            seconds = sum(float(n) * {"": 1, "s": 1, "m": 60, "h": 3600}[u] for n, u in parts)
        if not math.isfinite(seconds):
            self.fail(f"{value!r} is too long a duration", param, ctx)
        if seconds <= 0:
            self.fail(f"{value!r} must be longer than zero", param, ctx)
        return seconds


class Number(click.FloatRange):
    """A finite float in a range: NaN and infinity are refused (click's FloatRange lets NaN through,
    since every comparison with it is false)."""

    def convert(self, value, param, ctx):
        number = click.FLOAT.convert(value, param, ctx)
        if not math.isfinite(number):
            self.fail(f"{value!r} is not a finite number", param, ctx)
        return super().convert(number, param, ctx)


DURATION = Duration()
POSITIVE = click.IntRange(min=1)
FRACTION = Number(0, 1, min_open=True, max_open=True)
# Random seeds: what NumPy's legacy seeding, and so keras.utils.set_random_seed, accepts.
SEED = click.IntRange(0, MAX_SEED)


def run_dir_option(f):
    return click.option(
        "-r", "--run-dir", default=DEFAULT_RUN_DIR, show_default=True, type=click.Path(file_okay=False),
        help="Directory that holds the run: settings, vocabulary, checkpoints, metrics.",
    )(f)


def reports_errors(f):
    """Turns library errors into one line on stderr and an exit code; no tracebacks."""

    @functools.wraps(f)
    def wrapper(*args, **kwargs):
        from charrnn.errors import CharRNNError

        try:
            return f(*args, **kwargs)
        except CharRNNError as e:
            click.echo(f"{e.prefix}{e}", err=True)
            sys.exit(e.exit_code)
        except KeyboardInterrupt:
            message = "interrupted"
            if f.__name__ == "train":  # before its loop began: say what the run directory holds
                from charrnn.train.loop import interrupted_before_training

                message = interrupted_before_training(kwargs["run_dir"], kwargs["resume"])
            click.echo(f"\n{message}", err=True)
            sys.exit(130)
        except BrokenPipeError:
            # The reader went away (`charrnn sample | head`): stop quietly.
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
            sys.exit(0)

    return wrapper


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="charrnn")
@click.option("-v", "--verbose", is_flag=True, help="Show TensorFlow's own log messages.")
def cli(verbose):
    """Train a character-level recurrent network on any text, then generate text in its style.

    \b
      charrnn train novel.txt                 train into ./charrnn-run
      charrnn sample --seed "Once upon a"     generate from it
      charrnn eval                            its loss on the validation text
      charrnn info                            what the run holds
    """
    if verbose:
        os.environ["CHARRNN_VERBOSE"] = "1"


@cli.command()
@click.argument("corpus", nargs=-1, type=click.Path(dir_okay=True, allow_dash=True))
@run_dir_option
@click.option("--model", type=click.Choice(CELL_TYPES), help=f"Recurrent cell type.  [default: {_M.model}]")
@click.option("--layers", type=POSITIVE, help=f"Number of recurrent layers.  [default: {_M.layers}]")
@click.option("--units", type=POSITIVE, help=f"Units per recurrent layer.  [default: {_M.units}]")
@click.option("--embedding-dim", type=POSITIVE, help=f"Size of the character embedding.  [default: {_M.embedding_dim}]")
@click.option("--dropout", type=Number(0, 1, max_open=True), help=f"Dropout between layers.  [default: {_M.dropout}]")
@click.option("--seq-length", type=POSITIVE, help=f"Characters per training window.  [default: {_T.seq_length}]")
@click.option("--batch-size", type=POSITIVE, help=f"Windows per step.  [default: {_T.batch_size}]")
@click.option("--learning-rate", type=Number(0, min_open=True), help=f"Peak learning rate.  [default: {_T.learning_rate:g}]")
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
def train(corpus, run_dir, resume, force, quiet, strategy, replicas, kernel, **options):
    """Train on CORPUS: UTF-8 text files, or - for standard input.

    Training stops at whichever of --epochs and --max-time comes first; Ctrl-C saves a checkpoint.
    The learning rate warms up, then decays over that budget. With --resume, CORPUS may be left
    out: the files the run was started on are read again (and must not have changed).
    """
    from charrnn.errors import UsageError
    from charrnn.train import train as train_run
    from charrnn.units import bits_per_char, duration

    if not corpus and not resume:
        raise UsageError("no corpus given: pass one or more UTF-8 text files, or - for standard input")
    renames = {"max_time": "max_time_s", "eval_every": "eval_every_s", "checkpoint_every": "checkpoint_every_s"}
    given = {renames.get(k, k): v for k, v in options.items() if v is not None}
    model_fields = set(ModelConfig.__dataclass_fields__)
    model_options = {k: v for k, v in given.items() if k in model_fields}
    train_options = {k: v for k, v in given.items() if k not in model_fields}
    result = train_run(
        corpus, run_dir, model_options, train_options, resume=resume, force=force, quiet=quiet, stdin=sys.stdin.buffer,
        strategy=strategy, replicas=replicas, kernel=kernel,
    )
    from charrnn.train.budget import all_epochs

    if not result.chief:
        click.echo(f"worker done: trained {result.step:,} steps with the others; the chief saved the run", err=True)
        return
    best = (
        f"best validation loss {result.best_val_loss:.4f} nats/char ({bits_per_char(result.best_val_loss):.3f} bits/char, "
        f"state carried) at step {result.best_step:,}"
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
    if result.chars_per_s:
        took += f" at {result.chars_per_s:,.0f} chars/s"
    if result.session_steps < result.step:
        trained = (
            f"trained {result.session_steps:,} more steps in {took} "
            f"({result.step:,} steps, {result.chars_seen:,} chars, {duration(result.elapsed_s)} in all)"
        )
    else:
        steps = f"{result.step:,} step{'' if result.step == 1 else 's'}"
        trained = f"trained {steps} ({result.chars_seen:,} chars) in {took}"
    click.echo(f"{why}: {trained}; {best}; saved in {result.run_dir}", err=True)
    click.echo(
        f"see the run: charrnn report -r {result.run_dir} (one HTML page), or tensorboard --logdir {result.run_dir} "
        "(pip install 'charrnn[tensorboard]')",
        err=True,
    )


@cli.command()
@run_dir_option
@click.option("--seed", default="", help="Text to start from; it is printed first.  [default: a newline, not printed]")
@click.option("--length", type=click.IntRange(min=0), default=500, show_default=True, help="New characters per sample.")
@click.option("--temperature", type=Number(min=0), default=0.8, show_default=True, help="Higher is more surprising; 0 is argmax.")
@click.option("--argmax", is_flag=True, help="Always take the most likely character (same as --temperature 0).")
@click.option("--top-k", type=POSITIVE, help="Draw only from the K most likely characters.")
@click.option("--top-p", type=Number(0, 1, min_open=True), help="Draw only from the most likely characters that cover this probability.")
@click.option("-n", "--num-samples", type=POSITIVE, default=1, show_default=True, help="Samples to print, separated by a blank line.")
@click.option("--random-seed", type=SEED, help="Seed for the draws: the same seed gives the same text.")
@click.option("--weights", type=click.Choice(["best", "latest"]), default="best", show_default=True, help="Best-by-validation or latest weights.")
@click.option(
    "--raw", is_flag=True,
    help="Write control characters (escape sequences, carriage returns, bidi overrides) as they are, also to a terminal; "
    "by default a terminal gets them escaped (\\x1b). Pipes and files always get them as they are.",
)
@reports_errors
def sample(run_dir, seed, length, temperature, argmax, top_k, top_p, num_samples, random_seed, weights, raw):
    """Generate text from a trained run, streaming it to stdout."""
    from charrnn import sample as sampler  # first: it sets NumPy's BLAS threads before NumPy loads

    import numpy as np

    if argmax:
        temperature = 0.0
    sampler.check_sampling_options(temperature, top_k, top_p, length, num_samples)
    net, vocab, _ = sampler.load(run_dir, weights)
    out = sys.stdout.buffer
    # Text for a terminal shows its control characters rather than letting them act on it.
    escape = not raw and sys.stdout.isatty()
    escaped = 0
    rng = np.random.default_rng(random_seed)
    pieces = sampler.stream_samples(net, vocab, seed, length, temperature, top_k, top_p, num_samples, rng)
    try:
        for piece in pieces:
            if escape:
                piece, count = sampler.visible(piece)
                escaped += count
            out.write(piece.encode())
            out.flush()
    finally:
        if escaped:
            click.echo(
                f"note: the text has {escaped:,} control character{'s' if escaped > 1 else ''} (such as terminal escape "
                "sequences), shown escaped as \\x1b, \\r, ...; pass --raw to write them as they are",
                err=True,
            )


@cli.command("eval")
@click.argument("file", required=False, type=click.Path(allow_dash=True))
@run_dir_option
@click.option(
    "--window", type=POSITIVE, metavar="N",
    help="Score non-overlapping windows of N predicted characters, each from a zero state (as training validates), instead of carrying the state.",
)
@click.option("--weights", type=click.Choice(["best", "latest"]), default="best", show_default=True, help="Best-by-validation or latest weights.")
@click.option("--json", "as_json", is_flag=True, help="Print the result as one JSON object.")
@reports_errors
def eval_(file, run_dir, window, weights, as_json):
    """Measure the model's loss on FILE (UTF-8 text, or - for standard input), in nats and bits per
    character. Without FILE, on the run's validation text (the last --val-fraction of its corpus).

    The text is read as `sample` reads a seed: the state is carried from the first character to
    the last, and every character after the first is predicted. Characters the model never saw are
    skipped and counted.

    \b
      charrnn eval                          the run's validation text
      charrnn eval poems.txt --window 100   windows of 100 from a zero state, as training validates
      cat notes.txt | charrnn eval - --json
    """
    from charrnn import evaluate  # first: it sets NumPy's BLAS threads before NumPy loads

    import json

    result = evaluate.evaluate(run_dir, file, window, weights, stdin=sys.stdin.buffer)
    if as_json:
        facts = result.to_dict()
        facts["seconds"] = round(facts["seconds"], 3)
        click.echo(json.dumps(facts, ensure_ascii=False, allow_nan=False))
    else:
        how = "state carried" if window is None else f"windows of {window:,} from a zero state"
        click.echo(
            f"{result.nats_per_char:.4f} nats/char ({result.bits_per_char:.4f} bits/char) over "
            f"{result.chars:,} characters of {result.text}, {how}"
        )
        if result.unknown_chars:
            shown = ", ".join(repr(c) for c in result.unknown)
            more = " and others" if len(result.unknown) == evaluate.SHOWN_UNKNOWN else ""
            chars = "character" if result.unknown_chars == 1 else "characters"
            click.echo(f"skipped {result.unknown_chars:,} {chars} the model never saw: {shown}{more}", err=True)


@cli.command()
@run_dir_option
@click.option("-o", "--output", type=click.Path(dir_okay=False), help="Where to write the page.  [default: RUN/report.html]")
@click.option("--text", "text_path", type=click.Path(allow_dash=True), help="The text to colour by surprisal (- for standard input).  [default: the validation text]")
@click.option("--chars", type=POSITIVE, default=2000, show_default=True, help="How many characters of that text to score and draw.")
@reports_errors
def report(run_dir, output, text_path, chars):
    """Write one self-contained HTML page about the run: settings, learning curves, samples, the
    text coloured by the model's surprisal, and the cells that follow the text. It loads nothing
    from the network: open it in any browser.

    \b
      charrnn report                          writes charrnn-run/report.html
      charrnn report --text poems.txt -o poems.html
    """
    from charrnn import report as report_lib

    path, seconds = report_lib.build(run_dir, output, text_path, chars, stdin=sys.stdin.buffer)
    click.echo(f"wrote {path} in {seconds:.1f}s; open it in a browser", err=True)


@cli.command()
@run_dir_option
@click.option("--json", "as_json", is_flag=True, help="Print the facts as one JSON object.")
@reports_errors
def info(run_dir, as_json):
    """Show a run's settings, corpus, size, progress and best validation loss."""
    import json

    from charrnn.info import run_info
    from charrnn.sample import visible

    facts = run_info(run_dir)
    if as_json:
        # Strict JSON: every fact is finite, and a NaN would be an error here, not output.
        click.echo(json.dumps(facts, indent=2, ensure_ascii=False, allow_nan=False))
        return
    for key, value in facts.items():
        if isinstance(value, dict):
            value = ", ".join(f"{k}={v}" for k, v in value.items())
        # A path or name holding control characters is shown, not acted on by a terminal.
        click.echo(visible(f"{key + ':':<18} {value}")[0])


@cli.command()
@run_dir_option
@click.option("--format", "format_", type=click.Choice(["savedmodel", "tflite", "keras"]), required=True, help="What to write (see above).")
@click.option("-o", "--output", type=click.Path(), required=True, help="A directory (savedmodel) or a file (tflite; keras: ends in .keras).")
@click.option("--weights", type=click.Choice(["best", "latest"]), default="best", show_default=True, help="Best-by-validation or latest weights.")
@click.option("--force", is_flag=True, help="Replace --output if it exists (a file, a SavedModel, or a symbolic link itself); never the vocabulary file of another export beside it.")
@reports_errors
def export(run_dir, format_, output, weights, force):
    """Export the trained model to run without charrnn.

    \b
      savedmodel  a directory for TensorFlow and TF Serving: signatures generate and step
      tflite      a .tflite file with the one-step signature step, built-in ops only
      keras       a .keras file for keras.models.load_model

    tflite and keras exports get the vocabulary beside them, in STEM.vocab.json. Every export is
    loaded back and checked against `charrnn sample --argmax` before it is moved into place.
    """
    from charrnn.export import export as export_run

    result = export_run(run_dir, format_, output, force=force, which=weights)
    vocab = f" and {result.vocab_path}" if result.vocab_path else ""
    size = f"{result.size_bytes / 1e6:,.1f} MB" if result.size_bytes >= 1e6 else f"{result.size_bytes / 1e3:,.1f} kB"
    click.echo(
        f"exported {result.format} to {result.path} ({size}){vocab}; state size {result.state_size}; "
        f"verified: {result.verified_chars} argmax characters as `charrnn sample --argmax`, logits within {result.max_logit_diff:.1g}",
        err=True,
    )


def main():
    cli(prog_name="charrnn")


if __name__ == "__main__":
    main()
