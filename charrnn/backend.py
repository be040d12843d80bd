"""Importing TensorFlow quietly, and only when a command needs it; the tf.distribute strategy that
training runs under.

TensorFlow's C++ start-up chatter (CUDA stubs, oneDNN notices) is written straight to file
descriptor 2 before its logging can be configured, so stderr is parked while it imports and shown
only if the import fails. Set CHARRNN_VERBOSE=1 (or pass --verbose) to see everything.
"""

import contextlib
import json
import os
import sys
import tempfile
from dataclasses import dataclass

from charrnn.errors import UsageError


def verbose():
    return os.environ.get("CHARRNN_VERBOSE", "") not in ("", "0")


def import_tensorflow():
    """Returns the tensorflow module, imported with its start-up noise hidden unless verbose."""
    if "tensorflow" in sys.modules and "keras" in sys.modules:
        return sys.modules["tensorflow"]
    # TensorFlow's best-fit allocator reuses freed buffers instead of asking the OS for fresh
    # pages; a training step on a CPU runs about 1.3x faster with it (measured on 2 cores).
    os.environ.setdefault("TF_CPU_ALLOCATOR_USE_BFC", "true")
    if verbose():
        import keras  # noqa: F401
        import tensorflow as tf

        return tf
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    with _stderr_parked():
        import keras  # noqa: F401
        import tensorflow as tf

        # Looking for GPUs is what prints the CUDA errors on a machine without one.
        tf.config.list_physical_devices()
    tf.get_logger().setLevel("ERROR")
    with contextlib.suppress(ImportError):
        from absl import logging as absl_logging

        absl_logging.set_verbosity(absl_logging.ERROR)
    return tf


@contextlib.contextmanager
def _stderr_parked():
    """Sends file descriptor 2 to a temporary file; replays it to stderr if the body fails (to
    show why), but not when Ctrl-C stopped it: the user asked for that, and the log says nothing."""
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as parked:
        os.dup2(parked.fileno(), 2)
        try:
            yield
        except KeyboardInterrupt:
            raise
        except BaseException:
            os.dup2(saved, 2)
            parked.seek(0)
            sys.stderr.write(parked.read().decode(errors="replace"))
            raise
        finally:
            os.dup2(saved, 2)
            os.close(saved)


STRATEGIES = ("auto", "one", "mirrored", "multi-worker")
# Without a GPU, `--strategy auto` trains this many replicas on as many logical devices of the
# CPU, when it has the cores. Measured on 2 cores (docs/benchmarks.md): 1.6x the characters per
# second of one device for the default GRU and for LSTM-256, 1.5x for two layers, 1.1x for 512
# units, with the same losses. Not measured with more cores, so never more by default.
CPU_REPLICAS = 2
# How the recurrences run (charrnn.train.forward.choose_kernel).
KERNELS = ("auto", "fused", "cudnn", "keras")
# A collective operation (a step's all-reduce) that waits longer than this for another worker
# fails, so that a worker that hangs or is cut off cannot hang the others for ever. A worker that
# dies closes its connections, which the others notice within a second or two. The environment
# variable CHARRNN_WORKER_TIMEOUT (seconds) overrides it.
WORKER_TIMEOUT_S = 300.0


@dataclass
class Distribution:
    """The tf.distribute strategy that training runs under, and how it spreads the work (what
    the run's settings record as "spread")."""

    strategy: object
    name: str  # "one", "mirrored" or "multi-worker"
    replicas: int  # in all workers together
    workers: int

    def describe(self):
        where = f"{self.replicas} replica{'s' if self.replicas > 1 else ''}"
        if self.workers > 1:
            where += f" on {self.workers} workers"
        return f"{self.name} ({where})"

    def facts(self):
        return {"strategy": self.name, "replicas": self.replicas, "workers": self.workers}


def tf_config():
    """The cluster that TF_CONFIG names, as (cluster, task) dicts, or None when it names none."""
    text = os.environ.get("TF_CONFIG", "").strip()
    if not text:
        return None
    try:
        parsed = json.loads(text)
        cluster, task = parsed.get("cluster") or {}, parsed.get("task") or {}
        members = {kind: list(addresses) for kind, addresses in cluster.items()}
    except (ValueError, AttributeError, TypeError) as e:
        raise UsageError(f"TF_CONFIG is not a valid cluster description ({e}); see the README's \"More than one device\"") from None
    if not members:
        return None
    kind, index = task.get("type"), task.get("index", 0)
    if kind not in members or not isinstance(index, int) or not 0 <= index < len(members[kind]):
        raise UsageError(f"TF_CONFIG's task {task} is not one of its cluster's members {members}")
    return members, {"type": kind, "index": index}


def writes_run(name="auto"):
    """Whether this process writes the run directory under `--strategy name`: it does unless it is
    a worker other than the chief of a TF_CONFIG cluster. Decided without TensorFlow, and before
    make_strategy: it also refuses a task that is neither chief nor worker."""
    if name not in ("auto", "multi-worker"):
        return True
    cluster = tf_config()
    return cluster is None or _worker_index(*cluster) == 0


def _worker_index(members, task):
    """This task's place among the workers, the chief first: the task called "chief", or worker 0
    when the cluster names no chief."""
    kinds = ["chief"] * len(members.get("chief", [])) + ["worker"] * len(members.get("worker", []))
    if task["type"] not in kinds:
        raise UsageError(f"TF_CONFIG's task type {task['type']!r} is not one that trains (chief or worker)")
    return kinds.index(task["type"]) + task["index"]


def worker_timeout():
    text = os.environ.get("CHARRNN_WORKER_TIMEOUT", "")
    try:
        value = float(text) if text else WORKER_TIMEOUT_S
    except ValueError:
        value = -1.0
    if not 0 < value < float("inf"):
        raise UsageError(f"CHARRNN_WORKER_TIMEOUT must be a positive number of seconds. Received: {text!r}")
    return value


_MIRRORED = {}  # device names -> MirroredStrategy


def make_strategy(tf, name="auto", replicas=None, batch_size=None):
    """The Distribution for `--strategy name --replicas replicas`. Call it before TensorFlow runs
    anything: splitting a CPU into logical devices, and joining a cluster, must come first.

    auto: multi-worker when TF_CONFIG names a cluster; mirrored over all GPUs when there are
    several; one GPU when there is one; without a GPU, mirrored over CPU_REPLICAS logical CPUs
    (or --replicas) when the CPU has the cores and `batch_size` splits evenly; else one device.
    """
    if name not in STRATEGIES:
        raise UsageError(f"--strategy must be one of {', '.join(STRATEGIES)}. Received: {name!r}")
    if replicas is not None and replicas < 1:
        raise UsageError(f"--replicas must be positive. Received: {replicas}")
    cluster = tf_config()
    gpus = tf.config.list_physical_devices("GPU")
    if name == "auto":
        name, replicas = _auto(tf, cluster, gpus, replicas, batch_size)
    if name == "one":
        if replicas not in (None, 1):
            raise UsageError("--replicas goes with --strategy mirrored (one device has one replica)")
        return Distribution(tf.distribute.get_strategy(), "one", 1, 1)
    if name == "mirrored":
        devices = tuple(_mirrored_devices(tf, gpus, replicas))
        # One strategy per set of devices in a process: a second one over the same devices reuses
        # the first one's collective keys, and their all-reduces get mixed up.
        if devices not in _MIRRORED:
            _MIRRORED[devices] = tf.distribute.MirroredStrategy(list(devices))
        return Distribution(_MIRRORED[devices], "mirrored", len(devices), 1)
    if replicas is not None:
        raise UsageError("--replicas goes with --strategy mirrored; each multi-worker worker uses all its GPUs, or its CPU")
    if not cluster:
        raise UsageError("--strategy multi-worker needs TF_CONFIG to name the cluster; see the README's \"More than one device\"")
    members, _ = cluster
    options = tf.distribute.experimental.CommunicationOptions(timeout_seconds=worker_timeout())
    strategy = tf.distribute.MultiWorkerMirroredStrategy(communication_options=options)
    workers = len(members.get("chief", [])) + len(members.get("worker", []))
    return Distribution(strategy, "multi-worker", strategy.num_replicas_in_sync, workers)


def _auto(tf, cluster, gpus, replicas, batch_size):
    """(strategy, replicas) for --strategy auto."""
    if cluster:
        return "multi-worker", replicas
    if gpus:
        return ("mirrored" if len(gpus) > 1 and replicas != 1 else "one"), replicas
    if replicas is not None:
        return ("mirrored" if replicas > 1 else "one"), replicas
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    splits = batch_size is None or batch_size % CPU_REPLICAS == 0
    if cores >= CPU_REPLICAS and splits and _split_cpu(tf, CPU_REPLICAS):
        return "mirrored", CPU_REPLICAS
    return "one", None


def _split_cpu(tf, count):
    """Makes `count` logical CPU devices; False if TensorFlow has started already with fewer (a
    library caller: the CPU cannot be split any more)."""
    cpu = tf.config.list_physical_devices("CPU")[0]
    try:
        tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * count)
    except RuntimeError:
        return len(tf.config.list_logical_devices("CPU")) >= count
    return True


def _mirrored_devices(tf, gpus, replicas):
    if gpus:
        if replicas is not None and replicas > len(gpus):
            raise UsageError(f"--replicas {replicas} asks for more GPUs than the {len(gpus)} TensorFlow sees")
        return [f"/gpu:{i}" for i in range(replicas or len(gpus))]
    if replicas is None:
        raise UsageError(
            "--strategy mirrored on a machine without GPUs needs --replicas N: the CPU is split into N logical devices"
        )
    if not _split_cpu(tf, replicas):
        raise UsageError(f"cannot split the CPU into {replicas} devices once TensorFlow has started")
    return [f"/cpu:{i}" for i in range(replicas)]
