"""One run, read and checked once, for sample, eval, report, info and export: its settings, its
vocabulary, the chosen weights (each shape checked against the settings as it is read, before its
data) and what the file they came from records. The NumPy network is built from them when first
asked for. Without TensorFlow.
"""

from charrnn.numpynet import NumpyRNN  # first: it sets NumPy's BLAS threads before NumPy loads

import numpy as np

from charrnn import cells
from charrnn.rundir import Best, RunDir


class Snapshot:
    """What a command reads from a run directory, read once:

        run        the RunDir
        settings   its Settings; cfg is settings.model
        vocab      its Vocab
        weights    {name: float32 array} of the chosen weights (None if none were asked for)
        record     what their file records: the Best of best.npz, or the TrainState of the
                   latest checkpoint (None if no weights were asked for)
    """

    def __init__(self, run, settings, vocab, weights=None, record=None, asked=None):
        self.run, self.settings, self.vocab = run, settings, vocab
        self.weights, self.record = weights, record
        self._asked = asked  # the `which` given to load
        self._net = None

    @classmethod
    def load(cls, run_dir, which="best"):
        """Reads the run in `run_dir`: its settings, its vocabulary and, unless `which` is None, its
        weights: "best" (the best by validation loss, or the latest before the first evaluation) or
        "latest". Raises RunDirError naming the file that is missing, damaged or does not fit."""
        run = RunDir(run_dir)
        run.require_run()
        settings = run.settings.read()
        vocab = run.vocab.read(settings.model.vocab_size)
        if which is None:
            return cls(run, settings, vocab)
        weights, record = run.load_weights(which, settings, record=True)
        weights = {name: np.asarray(value, np.float32) for name, value in weights.items()}
        return cls(run, settings, vocab, weights, record, which)

    @property
    def cfg(self):
        """The ModelConfig."""
        return self.settings.model

    @property
    def state_size(self):
        """S: the length of the network's state vector."""
        return cells.state_size(self.cfg)

    @property
    def which(self):
        """The weights in use: "best" or "latest" (None if none were loaded)."""
        if self.record is None:
            return None
        return "best" if isinstance(self.record, Best) else "latest"

    @property
    def step(self):
        """The training step of the weights in use."""
        return self.record.step

    @property
    def net(self):
        """The NumpyRNN of the weights, built on first use (their shapes were checked as read)."""
        if self._net is None:
            self._net = NumpyRNN(self.cfg, self.weights, checked=True)
        return self._net

    def best(self):
        """What best.npz records (Best), or None before the first evaluation: the record of the
        weights in use when they are the best ones; otherwise read (the whole file, checked)."""
        if self.which == "best":
            return self.record
        if self._asked == "best":
            return None  # the best were asked for, and there were none
        return self.run.best.read(self.settings)

    def train_state(self):
        """The TrainState of the latest checkpoint: the record of the weights in use when they are
        the latest; otherwise read from the checkpoint without its arrays."""
        if self.which == "latest":
            return self.record
        return self.run.checkpoint.read_state()


def network(run_dir, which="best"):
    """(NumpyRNN, Vocab, ModelConfig) of the run in `run_dir` (`which`: "best" or "latest"), for
    callers that need nothing else. Raises RunDirError."""
    snapshot = Snapshot.load(run_dir, which)
    return snapshot.net, snapshot.vocab, snapshot.cfg

