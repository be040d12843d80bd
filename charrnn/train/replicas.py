"""What the replicas of a tf.distribute strategy share: a global batch split into equal shares,
a state gathered back into one array, and the workers' agreement after each step.

A global batch (its first axis) is split evenly over the replicas, in replica order; each worker
builds only the shares of its own replicas.
"""

import numpy as np


def share(array, context):
    """The equal share of a global batch (its first axis) that the replica of `context` takes."""
    i, n = context.replica_id_in_sync_group, context.num_replicas_in_sync
    return array[len(array) // n * i : len(array) // n * (i + 1)]


class Replicas:
    """The replicas of `strategy`; `several_workers`: whether they are in more than one process."""

    def __init__(self, tf, strategy, several_workers=False):
        self.strategy, self.several_workers = strategy, several_workers
        self.count = strategy.num_replicas_in_sync
        self._zeros = {}  # shape -> zeros of that shape, split
        self._agree = tf.function(lambda flags: strategy.reduce("SUM", strategy.run(lambda f: f, args=(flags,)), axis=None))

    def split(self, *arrays):
        """The arrays (global batch first) split into equal shares, one per replica, as
        distributed values (a tuple, one per array)."""
        return self.from_function(lambda context: tuple(share(a, context) for a in arrays))

    def from_function(self, make):
        """Distributed values from `make(replica context)`, called for this worker's replicas."""
        return self.strategy.experimental_distribute_values_from_function(make)

    def zeros(self, shape):
        """float32 zeros of `shape` (global batch first), split; made once per shape."""
        if shape not in self._zeros:
            (self._zeros[shape],) = self.split(np.zeros(shape, np.float32))
        return self._zeros[shape]

    def gather(self, value):
        """A split value as one array, the replicas' shares in order. With several workers, every
        worker must call it at the same point (it gathers the other workers' shares)."""
        if self.count == 1:
            return np.asarray(self.strategy.experimental_local_results(value)[0])
        return self.strategy.gather(value, axis=0).numpy()

    def agree(self, stop, clock, reserve=0.0):
        """(whether any worker was asked to stop, the chief's clock, the chief's `reserve`), from
        this worker's `stop`, `clock` and `reserve` (seconds). One process needs no agreement;
        several sum over the replicas the stop requests, and the clock and reserve of replica 0
        (the chief's)."""
        if not self.several_workers:
            return stop, clock, reserve

        def flags(context):
            chief = context.replica_id_in_sync_group == 0
            return np.float32([stop, clock if chief else 0.0, reserve if chief else 0.0])

        agreed = self._agree(self.from_function(flags)).numpy()
        return bool(agreed[0] > 0), float(agreed[1]), float(agreed[2])
