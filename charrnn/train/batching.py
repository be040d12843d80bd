"""`--state carry` or `--state reset`, as one object: how an epoch's training windows are laid out,
how many batches an epoch has, what a corpus needs, and what becomes of the recurrent state from
one batch to the next.

    batching = batching_for(train_cfg)
    batching.batches(num_train, epoch, first)   # start positions of each global batch
    batching.per_epoch(num_train)               # batches in an epoch
    batching.check(num_train)                   # CorpusError if the text cannot be laid out so
    batching.recurrent_state(replicas, shape)   # what a training step starts from

The windows themselves are charrnn.data's (epoch_streams, epoch_batches); this module only
chooses between them.
"""

import numpy as np

from charrnn import data


def batching_for(cfg):
    """The Batching of a TrainConfig: its `state` field is read here, and nowhere else in training."""
    return CarriedStreams(cfg) if cfg.state == "carry" else ShuffledWindows(cfg)


class Batching:
    """Windows of cfg.seq_length + 1 characters in global batches of cfg.batch_size, in an order
    that depends on (cfg.random_seed, epoch) alone, so that resuming mid-epoch is exact."""

    carries = False  # whether each window goes on from the state the window before it ended in

    def __init__(self, cfg):
        self.seq_length, self.batch_size, self.seed = cfg.seq_length, cfg.batch_size, cfg.random_seed

    def batches(self, num_train, epoch, first=0):
        """Yields the start positions (int64, batch_size) of each batch of `epoch`, from `first` on."""
        raise NotImplementedError

    def per_epoch(self, num_train):
        """How many batches an epoch of a training text of `num_train` characters has."""
        return data.batches_per_epoch(num_train, self.seq_length, self.batch_size, self.carries)

    def check(self, num_train):
        """Raises CorpusError unless a training text of `num_train` characters can be laid out so."""

    def recurrent_state(self, replicas, shape):
        """What each training step's windows start from (see CarriedState)."""
        return ZeroState(replicas, shape)


class ShuffledWindows(Batching):
    """`--state reset`: shuffled windows, each from a zero state (data.epoch_batches)."""

    def batches(self, num_train, epoch, first=0):
        return data.epoch_batches(num_train, self.seq_length, self.batch_size, self.seed, epoch, first)


class CarriedStreams(Batching):
    """`--state carry`: batch_size contiguous streams, row b of a batch going on from row b of the
    batch before, the state carried across (data.epoch_streams)."""

    carries = True

    def batches(self, num_train, epoch, first=0):
        return data.epoch_streams(num_train, self.seq_length, self.batch_size, self.seed, epoch, first)

    def check(self, num_train):
        data.check_streams(num_train, self.seq_length, self.batch_size)

    def recurrent_state(self, replicas, shape):
        return CarriedState(replicas, shape)


class ZeroState:
    """The recurrent state of training without carrying it: every batch starts from zeros.

    `start(batch)` is what a step of `batch` windows starts from, `keep(state)` takes what it
    ended in; `reset()` (at an epoch's start), `saved(batch)` (None: nothing to save) and
    `resume(array, batch)` are CarriedState's, with nothing to do."""

    def __init__(self, replicas, shape):
        self.replicas, self.shape = replicas, tuple(shape)

    def start(self, batch):
        return self.replicas.zeros((batch, *self.shape))

    def keep(self, state):
        pass

    def reset(self):
        pass

    def saved(self, batch):
        return None

    def resume(self, array, batch):
        return True


class CarriedState(ZeroState):
    """The state carried from each training step to the next, one per window of the batch, split
    over the replicas (None: zeros, as after `reset()`). `shape` is one window's,
    (layers * states per layer, units) (charrnn.cells.state_shape)."""

    def __init__(self, replicas, shape):
        super().__init__(replicas, shape)
        self.state = None

    def start(self, batch):
        return super().start(batch) if self.state is None else self.state

    def keep(self, state):
        self.state = state

    def reset(self):
        """Zeroes the state: the next step's windows start from nothing."""
        self.state = None

    def saved(self, batch):
        """The state of a global batch of `batch` windows as one (batch, *shape) array, as a
        checkpoint saves it; zeros after a reset. With several workers, every worker must call it
        at the same point (it gathers the other workers' shares)."""
        if self.state is None:
            return np.zeros((batch, *self.shape), np.float32)
        return self.replicas.gather(self.state)

    def resume(self, array, batch):
        """Sets the state saved with a checkpoint (`array`, or None); False, leaving zeros, if
        there is none that fits a batch of `batch` windows."""
        if array is None or array.shape != (batch, *self.shape) or not np.isfinite(array).all():
            return False
        (self.state,) = self.replicas.split(np.asarray(array, np.float32))
        return True
