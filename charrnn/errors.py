"""Errors the library raises; the CLI shows each as one line on stderr."""


class CharRNNError(Exception):
    """Something the user can fix. The message says what is wrong and what to do."""

    exit_code = 1


class UsageError(CharRNNError):
    """An option value or combination that cannot work."""

    exit_code = 2


class CorpusError(CharRNNError):
    """A corpus file is missing, empty, binary, not UTF-8 or too short."""


class RunDirError(CharRNNError):
    """A run directory is missing, incomplete, corrupt, or in use."""


class SeedError(CharRNNError):
    """Seed text the model cannot start from."""


class TrainingDiverged(CharRNNError):
    """The loss became NaN or infinite."""
