"""The run directory's layout: the name of every file in it, how each file charrnn writes begins,
and which of them are there and charrnn's own.

    settings.json     model and training settings, corpus facts, library versions (Settings)
    vocab.json        the characters in index order, with their corpus counts (Vocab)
    checkpoint.npz    latest weights, optimizer variables and training state (Checkpoint)
    best.npz          the weights with the best validation loss so far (Best): what `sample` uses
    metrics.jsonl     one JSON object per evaluation
    corpus.npy        the training text, encoded: one index per character (a .npy array that
                      training reads a window at a time, so that a corpus need not fit in memory)
    tensorboard/      TensorBoard event files (charrnn.train.tensorboard writes them)
    lock              the process id of the training that holds the directory (RunLock)

This is the only module that spells these names; the others use the constants.
"""

from pathlib import Path

SETTINGS = "settings.json"
VOCAB = "vocab.json"
CHECKPOINT = "checkpoint.npz"
BEST = "best.npz"
METRICS = "metrics.jsonl"
CORPUS = "corpus.npy"
TENSORBOARD = "tensorboard"  # a folder of TensorBoard event files
LOCK = "lock"
RUN_FILES = (SETTINGS, VOCAB, CHECKPOINT, BEST, METRICS)  # any of them, charrnn's own, makes the directory a run
WRITTEN = (*RUN_FILES, CORPUS)  # every file training writes, but the lock
# A new run that replaces an old one (--force) is built in a folder of this name inside the run
# directory, and moved into place only once it has saved its first checkpoint (RunDir.adopt).
STAGED = ".charrnn-new-"

# The most a run's JSON file may hold: far above what charrnn writes (a vocabulary of every
# Unicode character with its counts is about 40 MB), so that a crafted file is refused unread.
MAX_JSON_BYTES = {SETTINGS: 16 << 20, VOCAB: 64 << 20}

# How each file charrnn writes begins, so that a file of the user's at one of these names is never
# taken for charrnn's (and neither deleted by --force nor overwritten). A file cut short still
# begins the same way, so a damaged run is still a run.
_SIGNATURES = {
    SETTINGS: (b'{\n  "model": {',),
    VOCAB: (b'{\n "vocab_size": ',),
    # A zip archive whose first member is one of charrnn's arrays.
    CHECKPOINT: (b"PK\x03\x04",),
    BEST: (b"PK\x03\x04",),
    METRICS: (b'{"step": ',),
    CORPUS: (b"\x93NUMPY",),
}
_NPZ_MEMBERS = (b"weights/", b"optimizer/", b"state.npy", b"carry.npy")


def owns(directory, name):
    """Whether the file `name` (one of WRITTEN) is in `directory` and recognisably charrnn's."""
    path = Path(directory) / name
    try:
        if path.is_symlink() or not path.is_file():
            return False
        with open(path, "rb") as f:
            head = f.read(64)
    except OSError:
        return False
    if not any(head.startswith(signature) for signature in _SIGNATURES[name]):
        return False
    if name in (CHECKPOINT, BEST):
        # The local header of the first member: its name starts at byte 30.
        return any(head[30:].startswith(member) for member in _NPZ_MEMBERS)
    return True


def has_run(directory):
    """Whether `directory` holds (part of) a run: a file of a run that charrnn wrote."""
    return any(owns(directory, name) for name in RUN_FILES)


def foreign(directory):
    """The paths at the names of charrnn's files in `directory` that hold something charrnn did not
    write (an empty file holds nothing to lose), which training must neither overwrite nor delete."""
    directory = Path(directory)
    found = []
    for name in WRITTEN:
        path = directory / name
        if (path.exists() or path.is_symlink()) and not owns(directory, name) and not is_empty_file(path):
            found.append(path)
    tensorboard = directory / TENSORBOARD
    if tensorboard.is_symlink() or (tensorboard.exists() and not only_event_files(tensorboard)):
        found.append(tensorboard)
    return found


def is_empty_file(path):
    try:
        return path.is_file() and not path.is_symlink() and path.stat().st_size == 0
    except OSError:
        return False


def only_event_files(directory):
    """Whether a directory holds nothing but TensorBoard event files (and their temporaries)."""
    try:
        return all(
            p.is_file() and not p.is_symlink() and (p.name.startswith("events.out.tfevents.") or p.name.startswith(".events.out.tfevents."))
            for p in directory.iterdir()
        )
    except OSError:
        return False
