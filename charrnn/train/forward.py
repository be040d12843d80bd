"""The model's forward pass as the compiled steps run it, with the recurrent kernel chosen
explicitly, and where XLA compiles it.

XLA compiles the fused kernel's forward and backward pass inside each replica, never around
`strategy.run` (that fails under a real strategy: keras-team/keras#19005), except under the default
strategy (one device), where the whole step, optimizer included, is compiled.
"""

from dataclasses import dataclass

from charrnn import cells, model as model_lib
from charrnn.backend import KERNELS
from charrnn.errors import UsageError


@dataclass(frozen=True)
class RecurrenceKernel:
    """How the recurrences run (`--kernel`): "fused" (charrnn.fastrnn's hand-written recurrences,
    compiled by XLA), "cudnn" (Keras's layers on NVIDIA's cuDNN kernels, no XLA: XLA has no cuDNN
    RNN kernel, keras-team/keras#18456) or "keras" (Keras's layers on TensorFlow's generic loop,
    no XLA)."""

    name: str

    @property
    def use_cudnn(self):
        """Keras's `use_cudnn` for the model's recurrent layers."""
        return {"cudnn": "auto", "keras": False}.get(self.name, "auto")


def choose_kernel(tf, requested, cell):
    """The kernel for `--kernel requested` on this machine. `auto` is fused on CPUs (measured: 1.5x
    the training speed of Keras's layers on 2 cores, docs/benchmarks.md) and cuDNN on a GPU (what
    Keras itself uses there; not yet measured against fused on a GPU)."""
    gpu = bool(tf.config.list_physical_devices("GPU"))
    if requested == "auto":
        if gpu and cell != "rnn":
            return RecurrenceKernel("cudnn")
        return RecurrenceKernel("fused")  # also on a GPU for SimpleRNN, which has no cuDNN kernel
    if requested == "cudnn":
        if not gpu:
            raise UsageError("--kernel cudnn needs an NVIDIA GPU, and TensorFlow sees none; use --kernel auto")
        if cell == "rnn":
            raise UsageError("cuDNN has no kernel for --model rnn; use --kernel fused or keras")
    if requested not in KERNELS:
        raise UsageError(f"--kernel must be one of {', '.join(KERNELS)}. Received: {requested!r}")
    return RecurrenceKernel(requested)


class Forward:
    """`run_sequence(x, state, training)`: (logits (batch, time, vocab), final state) of the model
    on tokens x (batch, time) from `state` (batch, *state_shape), through `kernel`;
    `logits_of(x, training)` the logits from a zero state. `per_replica(fn)` and `compile(step)`
    put XLA where it can go under `strategy`."""

    def __init__(self, tf, strategy, model, model_cfg, kernel, counts=None):
        self.tf, self.strategy, self.model, self.cfg = tf, strategy, model, model_cfg
        self.tail_shares = None
        if model_cfg.output_layer == "adaptive":
            from charrnn import adaptive

            self.tail_shares = adaptive.tail_shares(model_cfg, counts)
        self.state_shape = cells.state_shape(model_cfg)
        fused = kernel.name == "fused"
        default = strategy is tf.distribute.get_strategy()  # one device, no tf.distribute machinery
        self._xla_step, self._xla_replica = fused and default, fused and not default
        if fused:
            from charrnn import fastrnn

            self._run = fastrnn.run_sequence
        else:
            self._run = model_lib.run_sequence

    def run_sequence(self, x, state, training):
        return self._run(self.model, self.cfg, x, state, training)

    def adaptive_loss_sum(self, x, y, state, training):
        """(the sum over positions of -log p(y), final state) for the adaptive softmax, without
        forming every character's log-probability (adaptive.nll_sum)."""
        from charrnn import adaptive

        h, state = self._run(self.model, self.cfg, x, state, training, scores=False)
        return adaptive.nll_sum(self.cfg, self.model.get_layer("output").named, h, y, self.tail_shares), state

    def logits_of(self, x, training):
        """Logits (batch, time, vocab) of tokens x from a zero state, as the steps compute them."""
        return self.run_sequence(x, self.tf.zeros([self.tf.shape(x)[0], *self.state_shape]), training)[0]

    def per_replica(self, fn):
        """`fn`, run inside each replica, compiled there by XLA where the whole step is not."""
        return _xla_per_replica(self.tf, fn) if self._xla_replica else fn

    def compile(self, step):
        """The tf.function of a whole step (one that calls `strategy.run`)."""
        return self.tf.function(step, jit_compile=self._xla_step, reduce_retracing=True)


def _xla_per_replica(tf, fn):
    """`fn` compiled by XLA inside each replica, one tf.function per replica: a function traced
    in one replica captures that replica's variables, and XLA cannot read a variable that lives on
    another device (https://www.tensorflow.org/xla/known_issues)."""
    compiled = {}

    def call(*args):
        replica = int(tf.get_static_value(tf.distribute.get_replica_context().replica_id_in_sync_group))
        if replica not in compiled:
            compiled[replica] = tf.function(fn, jit_compile=True)
        return compiled[replica](*args)

    return call
