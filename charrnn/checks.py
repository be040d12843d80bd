"""Small checks of values that come from run files or from library callers, shared by the modules
that read them (rundir, vocab, sample)."""

import numpy as np


def is_int(value):
    """Whether `value` is a whole number (Python's or NumPy's), not a bool."""
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)


def is_count(value):
    """Whether `value` is a whole number, 0 or more."""
    return is_int(value) and value >= 0


def is_number(value):
    """Whether `value` is a real number (Python's or NumPy's), not a bool; it may be NaN or infinite."""
    return isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool)


def short(value):
    """A value as an error message shows it: its repr, cut short."""
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."
