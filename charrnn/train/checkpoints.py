"""A run's checkpoint and best weights as training sees them: what a save writes, what a resume
restores, and which weights are the best (as Keras's BackupAndRestore keeps its save and its
restore together; the file formats are charrnn.rundir's).

The best validation loss is kept twice on disk: in checkpoint.npz's training state, and in
best.npz beside the best weights, which may be newer than the checkpoint (a training stopped
after an evaluation and before the next checkpoint). `restore` reconciles the two, here only.
"""

import numpy as np

from charrnn import model as model_lib
from charrnn.rundir import CHECKPOINT, Best


class Checkpoints:
    """The checkpoints of `run` (a RunDir, read-only for a worker other than the chief, whose
    saves then write nothing) for `model` and its `optimizer`."""

    def __init__(self, run, model, model_cfg, optimizer):
        self.run, self.model, self.model_cfg, self.optimizer = run, model, model_cfg, optimizer

    def weights(self):
        """The model's weights as {name: array}."""
        return model_lib.get_weights(self.model, self.model_cfg)

    def optimizer_values(self):
        return [v.numpy() for v in self.optimizer.variables]

    def seed_values(self):
        """The seed generators' states, (generators, 2), or None for a model without any."""
        states = [v.numpy() for v in model_lib.seed_states(self.model)]
        return np.stack(states) if states else None

    def save(self, state, weights, carry=None):
        """Saves checkpoint.npz: `weights` (checked by the loop), the optimizer's variables, the
        TrainState and the carried state (None: not carried). A read-only run saves nothing, so
        its optimizer's variables are not fetched."""
        if self.run.writes:
            self.run.checkpoint.save(weights, self.optimizer_values(), state, carry, self.seed_values())

    def offer_best(self, state, loss):
        """Whether `loss` (an evaluation's, state carried) is the best so far; if it is, records it
        in `state` and saves the weights as best.npz."""
        if not loss < state.best_val_loss:
            return False
        state.best_val_loss, state.best_step = loss, state.step
        if self.run.writes:  # as in save: nothing fetched for a read-only run
            self.run.best.save(self.weights(), Best(state.step, state.best_val_loss, state.chars_seen))
        return True

    def start_new(self, state, replacing=None):
        """Saves a new run's step-0 checkpoint, so that the directory is loadable from the start;
        then, for a run built beside an old one (`--force`), puts it in the old one's place."""
        self.save(state, self.weights())
        if replacing is not None:
            # Built and saved: only now does the new run replace the old one.
            self.run = replacing.adopt(self.run)

    def restore(self, checkpoint, settings):
        """Loads a checkpoint's weights and optimizer variables (RunDirError if they do not fit)
        and returns its TrainState, with the best loss that best.npz holds; drops the metric rows
        of the steps after it, which the resumed run redoes."""
        try:
            model_lib.set_weights(self.model, settings.model, checkpoint.weights)
        except ValueError as e:
            raise self.run.checkpoint.unfit(e) from None
        variables = self.optimizer.variables
        shapes_ok = len(variables) == len(checkpoint.optimizer) and all(
            tuple(v.shape) == a.shape for v, a in zip(variables, checkpoint.optimizer)
        )
        if not shapes_ok:
            raise self.run.checkpoint.unfit("its optimizer state does not fit the model")
        for variable, value in zip(variables, checkpoint.optimizer):
            variable.assign(value)
        self._restore_seeds(checkpoint.seeds)
        state = checkpoint.state
        best = self.run.best.read(settings)
        if best is not None and best.val_loss < state.best_val_loss:
            state.best_val_loss, state.best_step = best.val_loss, best.step
        self.run.metrics.trim(state.step)
        return state

    def _restore_seeds(self, seeds):
        """Sets the seed generators to where the checkpoint left them. A checkpoint from before
        they were kept, or from a run whose dropout layers the resume changed (another
        --dropout), has none that fit: the generators then start from the run's seed again."""
        states = model_lib.seed_states(self.model)
        if seeds is None or len(seeds) != len(states) or any(tuple(v.shape) != seeds[0].shape for v in states):
            return
        for variable, value in zip(states, seeds):
            variable.assign(value.astype(variable.dtype))

    def restore_carried(self, checkpoint, recurrent_state, batch_size, note):
        """Resuming mid-epoch: sets the carried state saved with the checkpoint; one that is
        missing or does not fit resumes from a zero state, which `note` is told."""
        if checkpoint.state.batch_in_epoch > 0 and not recurrent_state.resume(checkpoint.carry, batch_size):
            note(f"note: {self.run.file(CHECKPOINT)} has no carried state for this run; the rest of this epoch starts from zeros")


def finite(weights):
    """Whether every weight {name: array} is finite."""
    return all(np.isfinite(w).all() for w in weights.values())
