"""What a run directory holds, as a dict of facts, without loading TensorFlow."""

import dataclasses

from charrnn import softmax
from charrnn.snapshot import Snapshot
from charrnn.units import bits_per_char


def run_info(run_dir):
    """Returns the run's settings, corpus facts, parameter count, progress and best validation loss:
    JSON types only, every number finite (rundir checks each fact it reads)."""
    snapshot = Snapshot.load(run_dir, which=None)
    run, settings = snapshot.run, snapshot.settings
    # Reading every array checks each file whole: a damaged one is an error that names it.
    state = run.checkpoint.load(settings).state
    best = run.best.read(settings)
    return facts(snapshot, state, best)


def facts(snapshot, state, best):
    """The facts of run_info from a Snapshot, the latest checkpoint's TrainState and the Best (or
    None)."""
    settings = snapshot.settings
    corpus = settings.corpus
    files = corpus["files"]
    found = {
        "run_dir": str(snapshot.run.path),
        "model": dataclasses.asdict(settings.model),
        "output_layer": softmax.describe(settings.model),
        "parameters": settings.parameters,
        "training": dataclasses.asdict(settings.train),
        "corpus": ", ".join(f["path"] for f in files),
        "corpus_bytes": sum(f["bytes"] for f in files),
        "corpus_chars": corpus.get("chars"),
        "train_chars": corpus.get("train_chars"),
        "val_chars": corpus.get("val_chars"),
        "vocab_size": snapshot.vocab.vocab_size,
        "steps": state.step,
        "epochs_done": epochs_done(settings, state),
        "chars_seen": state.chars_seen,
        "training_time_s": round(state.elapsed_s, 1),
        "best_val_loss": None,
        "best_val_bpc": None,
        "best_step": None,
        "spread": settings.spread,  # how the latest session ran: strategy, replicas, workers, kernel
        "versions": settings.versions,
        # A fine-tuned run: the base it started from (train/transfer.py); absent otherwise.
        **({"origin": settings.origin} if settings.origin else {}),
    }
    if best is not None:
        found["best_val_loss"] = round(best.val_loss, 4)
        found["best_val_bpc"] = round(bits_per_char(best.val_loss), 4)
        found["best_step"] = best.step
    return found


def epochs_done(settings, state):
    """Epochs done as every message counts them (Budget.epochs_done, to 2 decimals): 3.63, not 3."""
    from charrnn.train.budget import Budget

    num_train = settings.corpus.get("train_chars")
    if not num_train:
        return float(state.epoch)
    return round(Budget(settings.train, num_train).epochs_done(state), 2)
