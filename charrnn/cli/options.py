"""What the commands share: option types (Duration, Number), the common options, and the one
error boundary (`reports_errors`) that turns library errors into one line and an exit code."""

import functools
import math
import os
import re
import sys

import click

from charrnn.config import MAX_SEED

DEFAULT_RUN_DIR = "charrnn-run"


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


def weights_option(f):
    return click.option(
        "--weights", type=click.Choice(["best", "latest"]), default="best", show_default=True,
        help="Best-by-validation or latest weights.",
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
