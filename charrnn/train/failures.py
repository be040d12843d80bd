"""What a failure while building or training means to the user, in one line: memory that ran out,
or a worker that was lost."""

import contextlib
import re

from charrnn import sizing
from charrnn.errors import CharRNNError, UsageError, WorkerLost


@contextlib.contextmanager
def translated(tf, workers, settings, run):
    """Turns running out of memory into a UsageError naming the options to lower, and (with
    `workers` > 1) a failed collective operation into WorkerLost, saying what the checkpoint of
    `run` (the user's run directory) keeps."""
    try:
        yield
    except (MemoryError, tf.errors.ResourceExhaustedError):
        # What the estimate (sizing.check_fits) let through, or a device with less memory.
        model_cfg, train_cfg = settings.model, settings.train
        raise UsageError(
            f"ran out of memory building or training the model ({sizing.parameters(model_cfg):,} parameters, batches of "
            f"{train_cfg.batch_size} x {train_cfg.seq_length} characters); use a smaller --units, --layers, "
            "--embedding-dim, --batch-size or --seq-length. The last checkpoint saved, if any, is intact"
        ) from None
    except tf.errors.OpError as e:
        if workers == 1:
            raise
        raise WorkerLost(worker_lost(run, e)) from None


def worker_lost(run, error):
    """The one line for a collective operation that failed because another worker died or hung."""
    text = str(error)
    task = re.search(r"/job:(\w+)/replica:\d+/task:(\d+)", text)
    who = f"{task[1]} {task[2]}" if task else "another worker"
    lines = [line.strip() for line in text.splitlines()]
    reason = next((line for line in lines if "aborted by" in line or "timed out" in line.lower()), type(error).__name__)
    try:
        step = f"step {run.checkpoint.read_state().step:,}"
    except CharRNNError:
        step = "the last one saved"
    whose = "its" if run.writes else "the chief's"
    return (
        f"lost contact with {who} ({reason[:160]}); training stopped. The steps since "
        f"{whose} last checkpoint ({step}) are lost: relaunch every worker with "
        f"--resume to continue from it (run directory {run.path})"
    )
