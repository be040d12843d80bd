"""`charrnn eval`, `charrnn report` and `charrnn info`: what a trained run knows and holds."""

import sys

import click

from charrnn.cli.options import POSITIVE, reports_errors, run_dir_option, weights_option


@click.command("eval")
@click.argument("file", required=False, type=click.Path(allow_dash=True))
@run_dir_option
@click.option(
    "--window", type=POSITIVE, metavar="N",
    help="Score non-overlapping windows of N predicted characters, each from a zero state (as training validates), instead of carrying the state.",
)
@weights_option
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

    from charrnn.evaltext import SHOWN_UNKNOWN

    result = evaluate.evaluate(run_dir, file, window, weights, stdin=sys.stdin.buffer)
    if as_json:
        facts = result.to_dict()
        facts["seconds"] = round(facts["seconds"], 3)
        click.echo(json.dumps(facts, ensure_ascii=False, allow_nan=False))
    else:
        how = "state carried" if window is None else f"windows of {window:,} from a zero state"
        if window is None and file is None:
            # Training's best is measured otherwise: say so beside this one.
            how += " through the whole text (training's validation loss is an estimate over up to 64 stretches of it)"
        click.echo(
            f"{result.nats_per_char:.4f} nats/char ({result.bits_per_char:.4f} bits/char) over "
            f"{result.chars:,} characters of {result.text}, {how}"
        )
        if result.unknown_chars:
            shown = ", ".join(repr(c) for c in result.unknown)
            more = " and others" if len(result.unknown) == SHOWN_UNKNOWN else ""
            chars = "character" if result.unknown_chars == 1 else "characters"
            click.echo(f"skipped {result.unknown_chars:,} {chars} the model never saw: {shown}{more}", err=True)


@click.command()
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


@click.command()
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
            value = ", ".join(f"{k}={v if 'seed' in k else _human(v)}" for k, v in value.items())
        elif key == "epochs_done":
            value = f"{value:.2f} of {facts['training']['epochs']:,}"
        elif key == "best_val_loss" and value is not None:
            value = f"{value:.4f} (state carried; training's estimate, charrnn eval scores the whole validation text)"
        else:
            value = _human(value)
        # A path or name holding control characters is shown, not acted on by a terminal.
        click.echo(visible(f"{key + ':':<18} {value}")[0])


def _human(value):
    """A fact as `info` shows it: counts with thousands separators (270,408), the rest as is."""
    return f"{value:,}" if isinstance(value, int) and not isinstance(value, bool) else value
