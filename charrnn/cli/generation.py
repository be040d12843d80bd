"""`charrnn sample` and `charrnn export`: text from a trained run, and the model for use elsewhere."""

import sys

import click

from charrnn.cli.options import POSITIVE, SEED, Number, reports_errors, run_dir_option, weights_option


@click.command()
@run_dir_option
@click.option("--seed", default="", help="Text to start from; it is printed first.  [default: a newline, not printed]")
@click.option("--seed-file", help="Read the seed from this file (- for standard input), at most 1 MiB of UTF-8.")
@click.option("--length", type=click.IntRange(min=0), default=500, show_default=True, help="New characters per sample (at most, with --stop).")
@click.option(
    "--stop", default="",
    help="End each sample after the first TEXT it generates (TEXT is printed; the seed is not searched). "
    "Escapes: \\n, \\t, \\r, \\\\, \\xHH, \\uHHHH; e.g. --stop '\\n\\n' ends at a blank line.",
    metavar="TEXT",
)
@click.option("--temperature", type=Number(min=0), default=0.8, show_default=True, help="Higher is more surprising; 0 is argmax.")
@click.option("--argmax", is_flag=True, help="Always take the most likely character (same as --temperature 0).")
@click.option("--top-k", type=POSITIVE, help="Draw only from the K most likely characters.")
@click.option("--top-p", type=Number(0, 1, min_open=True), help="Draw only from the most likely characters that cover this probability.")
@click.option("-n", "--num-samples", type=POSITIVE, default=1, show_default=True, help="Samples to print, separated by a blank line.")
@click.option("--random-seed", type=SEED, help="Seed for the draws: the same seed gives the same text.")
@click.option(
    "-i", "--interactive", is_flag=True,
    help="Continue each line you type (state carried between lines; /reset starts afresh; Ctrl-D ends). "
    "Without a terminal: one continuation per input line on stdout.",
)
@weights_option
@click.option(
    "--raw", is_flag=True,
    help="Write control characters (escape sequences, carriage returns, bidi overrides) as they are, also to a terminal; "
    "by default a terminal gets them escaped (\\x1b). Pipes and files always get them as they are.",
)
@reports_errors
def sample(run_dir, seed, seed_file, length, stop, temperature, argmax, top_k, top_p, num_samples, random_seed, interactive, weights, raw):
    """Generate text from a trained run, streaming it to stdout."""
    from charrnn import sample as sampler  # first: it sets NumPy's BLAS threads before NumPy loads

    import numpy as np

    from charrnn.errors import UsageError
    from charrnn.snapshot import Snapshot
    from charrnn.stopping import unescape

    if argmax:
        temperature = 0.0
    stop = unescape(stop)
    if seed_file is not None:
        if seed:
            raise UsageError("give --seed or --seed-file, not both")
        if interactive and seed_file == "-":
            raise UsageError("--interactive reads its lines from standard input: give --seed-file a file, not -")
        seed = sampler.read_seed_file(seed_file, sys.stdin.buffer)
    if interactive and num_samples > 1:
        raise UsageError("--interactive continues one text: leave out --num-samples")
    run = Snapshot.load(run_dir, weights)
    if stop and run.vocab.unknown_chars(stop):
        click.echo(f"note: the --stop text has characters the model never saw, so it never occurs: samples run to --length", err=True)
    rng = np.random.default_rng(random_seed)
    writer = _Writer(escape=not raw and sys.stdout.isatty())
    try:
        if interactive:
            _interactive(run, seed, length, stop, temperature, top_k, top_p, rng, writer)
        else:
            for piece in sampler.stream_samples(run.net, run.vocab, seed, length, temperature, top_k, top_p, num_samples, rng, stop):
                writer(piece)
    finally:
        writer.close()


class _Writer:
    """Writes generated text to stdout as it comes; on a terminal its control characters escaped."""

    def __init__(self, escape):
        self.escape, self.escaped, self.out = escape, 0, sys.stdout.buffer

    def __call__(self, piece):
        from charrnn.sample import visible

        if self.escape:
            piece, count = visible(piece)
            self.escaped += count
        self.out.write(piece.encode())
        self.out.flush()

    def close(self):
        if self.escaped:
            click.echo(
                f"note: the text has {self.escaped:,} control character{'s' if self.escaped > 1 else ''} (such as terminal escape "
                "sequences), shown escaped as \\x1b, \\r, ...; pass --raw to write them as they are",
                err=True,
            )


def _interactive(run, seed, length, stop, temperature, top_k, top_p, rng, writer):
    from charrnn import chat

    terminal = sys.stdin.isatty()
    conversation = chat.Conversation(run.net, run.vocab, temperature, top_k, top_p, rng)
    conversation.feed(seed)
    if terminal:
        click.echo(f"Type a line and press Enter: the model continues it ({length} characters at most). "
                   f"{chat.RESET} starts afresh, Ctrl-D ends.", err=True)
    lines = chat.read_lines(sys.stdin.buffer, (lambda: click.echo(chat.PROMPT, err=True, nl=False)) if terminal else None)
    refused = chat.run(conversation, lines, writer, lambda m: click.echo(m, err=True), length, stop, terminal)
    if refused and not terminal:
        from charrnn.errors import SeedError

        raise SeedError(f"{refused:,} input line{'s' if refused > 1 else ''} had characters the model never saw and got empty answers")


@click.command()
@run_dir_option
@click.option("--format", "format_", type=click.Choice(["savedmodel", "tflite", "keras", "web"]), required=True, help="What to write (see above).")
@click.option("-o", "--output", type=click.Path(), required=True, help="A directory (savedmodel) or a file (tflite; keras: ends in .keras; web: ends in .html for a page, .js for a script another page loads).")
@weights_option
@click.option("--force", is_flag=True, help="Replace --output if it exists (a file, a SavedModel, or a symbolic link itself); never the vocabulary file of another export beside it.")
@reports_errors
def export(run_dir, format_, output, weights, force):
    """Export the trained model to run without charrnn.

    \b
      savedmodel  a directory for TensorFlow and TF Serving: signatures generate and step
      tflite      a .tflite file with the one-step signature step, built-in ops only
      keras       a .keras file for keras.models.load_model
      web         one .html page that generates in any browser, offline (no TensorFlow needed);
                  or, given a .js name, the same as a script for another page's <script src>

    tflite and keras exports get the vocabulary beside them, in STEM.vocab.json. Every export is
    loaded back and checked against `charrnn sample --argmax` before it is moved into place (web:
    also run in a headless Chromium when one is on PATH).
    """
    from charrnn.export import export as export_run

    result = export_run(run_dir, format_, output, force=force, which=weights)
    vocab = f" and {result.vocab_path}" if result.vocab_path else ""
    size = f"{result.size_bytes / 1e6:,.1f} MB" if result.size_bytes >= 1e6 else f"{result.size_bytes / 1e3:,.1f} kB"
    click.echo(
        f"exported {result.format} to {result.path} ({size}){vocab}; state size {result.state_size}; "
        f"verified: {result.verified_chars} argmax characters as `charrnn sample --argmax`, logits within {result.max_logit_diff:.1g}"
        + (f"; {result.note}" if result.note else ""),
        err=True,
    )
