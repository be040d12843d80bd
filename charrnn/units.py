"""Units shown to people: durations as text, and nats per character as bits."""

import math


def bits_per_char(nats):
    """A loss in nats per character, in bits per character."""
    return nats / math.log(2)


def duration(seconds):
    """Seconds as short text: 42s, 3m07s, 2h05m."""
    seconds = int(round(seconds))
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds // 60 % 60:02d}m"
