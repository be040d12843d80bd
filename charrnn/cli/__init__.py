"""The command line: parses options, calls one library function, prints.

Heavy modules (NumPy, TensorFlow) are imported inside the commands that need them, so that
`charrnn --help` is instant and `charrnn sample` never loads TensorFlow. The commands live in
training.py (train), generation.py (sample, export) and inspection.py (eval, report, info); their
shared option types, options and the one error boundary in options.py.
"""

import os

import click

from charrnn import __version__
from charrnn.cli.generation import export, sample
from charrnn.cli.inspection import eval_, info, report
from charrnn.cli.options import DURATION  # noqa: F401  (part of the package's API)
from charrnn.cli.training import train


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


for _command in (train, sample, eval_, report, info, export):
    cli.add_command(_command)


def main():
    cli(prog_name="charrnn")

