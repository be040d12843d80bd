"""What a run directory holds, as a dict of facts, without loading TensorFlow."""

import dataclasses

from charrnn.rundir import RunDir
from charrnn.units import bits_per_char


def run_info(run_dir):
    """Returns the run's settings, corpus facts, parameter count, progress and best validation loss:
    JSON types only, every number finite (rundir checks each fact it reads)."""
    run = RunDir(run_dir)
    run.require_run()
    settings = run.read_settings()
    vocab = run.read_vocab(settings.model.vocab_size)
    # Reading every array checks each file whole: a damaged one is an error that names it.
    state = run.load_checkpoint(settings).state
    best = run.read_best(settings)
    corpus = settings.corpus
    files = corpus["files"]
    facts = {
        "run_dir": str(run.path),
        "model": dataclasses.asdict(settings.model),
        "parameters": settings.parameters,
        "training": dataclasses.asdict(settings.train),
        "corpus": ", ".join(f["path"] for f in files),
        "corpus_bytes": sum(f["bytes"] for f in files),
        "corpus_chars": corpus.get("chars"),
        "train_chars": corpus.get("train_chars"),
        "val_chars": corpus.get("val_chars"),
        "vocab_size": vocab.vocab_size,
        "steps": state.step,
        "epochs_done": state.epoch,
        "chars_seen": state.chars_seen,
        "training_time_s": round(state.elapsed_s, 1),
        "best_val_loss": None,
        "best_val_bpc": None,
        "best_step": None,
        "spread": settings.spread,  # how the latest session ran: strategy, replicas, workers, kernel
        "versions": settings.versions,
    }
    if best is not None:
        facts["best_val_loss"] = round(best.val_loss, 4)
        facts["best_val_bpc"] = round(bits_per_char(best.val_loss), 4)
        facts["best_step"] = best.step
    return facts
