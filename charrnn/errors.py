"""Errors the library raises; the CLI shows each as one line on stderr."""


class CharRNNError(Exception):
    """Something the user can fix. The message says what is wrong and what to do."""

    exit_code = 1
    prefix = "Error: "  # what the CLI writes before the message


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
    """The loss became NaN, infinite or absurd."""


class ExportError(CharRNNError):
    """An export could not be written, or does not reproduce the run."""


class Interrupted(CharRNNError):
    """Training stopped on Ctrl-C or SIGTERM, after saving a checkpoint. Not a failure of the
    user's: the CLI prints the message (how to resume) as it is and exits with 130."""

    exit_code = 130
    prefix = ""


class WorkerLost(CharRNNError):
    """Another worker of a multi-worker run died or stopped answering: this one stopped too."""
