"""`charrnn sample` and `charrnn export`: text from a trained run, and the model for use elsewhere."""

import sys

import click

from charrnn.cli.options import POSITIVE, SEED, Number, reports_errors, run_dir_option, weights_option


@click.command()
@run_dir_option
@click.option("--seed", default="", help="Text to start from; it is printed first.  [default: a newline, not printed]")
@click.option("--length", type=click.IntRange(min=0), default=500, show_default=True, help="New characters per sample.")
@click.option("--temperature", type=Number(min=0), default=0.8, show_default=True, help="Higher is more surprising; 0 is argmax.")
@click.option("--argmax", is_flag=True, help="Always take the most likely character (same as --temperature 0).")
@click.option("--top-k", type=POSITIVE, help="Draw only from the K most likely characters.")
@click.option("--top-p", type=Number(0, 1, min_open=True), help="Draw only from the most likely characters that cover this probability.")
@click.option("-n", "--num-samples", type=POSITIVE, default=1, show_default=True, help="Samples to print, separated by a blank line.")
@click.option("--random-seed", type=SEED, help="Seed for the draws: the same seed gives the same text.")
@weights_option
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

    from charrnn.snapshot import Snapshot

    if argmax:
        temperature = 0.0
    run = Snapshot.load(run_dir, weights)
    out = sys.stdout.buffer
    # Text for a terminal shows its control characters rather than letting them act on it.
    escape = not raw and sys.stdout.isatty()
    escaped = 0
    rng = np.random.default_rng(random_seed)
    pieces = sampler.stream_samples(run.net, run.vocab, seed, length, temperature, top_k, top_p, num_samples, rng)
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


@click.command()
@run_dir_option
@click.option("--format", "format_", type=click.Choice(["savedmodel", "tflite", "keras"]), required=True, help="What to write (see above).")
@click.option("-o", "--output", type=click.Path(), required=True, help="A directory (savedmodel) or a file (tflite; keras: ends in .keras).")
@weights_option
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
