"""The tflite format: a file with the signature `step` (TFLite built-in ops only), and the
vocabulary file beside it."""

import tempfile

import numpy as np

from charrnn.export import files, tfstep, verify

DIRECTORY = False
SIDECAR = True


def build(tf, run, built, staging):
    """Saves the run's `step` as a SavedModel in `staging`, converts it, and writes the flatbuffer
    at `built`."""
    module = tfstep.module(tf, run, with_generate=False)
    # A directory of its own, whatever the output's name.
    step_model = tempfile.mkdtemp(prefix="step-savedmodel-", dir=staging)
    signatures = {"step": module.step.get_concrete_function()}
    files.tf_call(lambda: tf.saved_model.save(module, str(step_model), signatures=signatures), "save the step function")
    converter = tf.lite.TFLiteConverter.from_saved_model(str(step_model), signature_keys=["step"])
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
    flatbuffer = files.tf_call(converter.convert, "convert the model to TFLite")
    files.write_file(built, flatbuffer)


def replay(tf, run, built, ref):
    """Loads `built` in the TFLite interpreter; returns (its argmax text, its teacher-forced logits)."""
    with files.quiet():
        interpreter = tf.lite.Interpreter(model_path=str(built))
        runner = interpreter.get_signature_runner("step")
        # The first call sets up the XNNPACK delegate, which announces itself on stderr.
        runner(token=np.zeros([1], np.int32), state=np.zeros((1, run.state_size), np.float32))

    def step_fn(token, state):
        out = runner(token=np.array([token], np.int32), state=state)
        return out["logits"][0], out["state"]

    return verify.argmax_text(step_fn, run, ref), verify.teacher_forced(step_fn, run, ref)
