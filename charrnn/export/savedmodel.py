"""The savedmodel format: a directory with the signatures `generate` and `step`; the vocabulary is
inside it, so no sidecar."""

from charrnn.export import files, tfstep, verify

DIRECTORY = True
SIDECAR = False


def build(tf, run, built, staging):
    """Saves the run's tf.Module (step and generate) as a SavedModel directory at `built`."""
    module = tfstep.module(tf, run, with_generate=True)
    signatures = {"generate": module.generate.get_concrete_function(), "step": module.step.get_concrete_function()}
    files.tf_call(lambda: tf.saved_model.save(module, str(built), signatures=signatures), "save the SavedModel")


def replay(tf, run, built, ref):
    """Loads the SavedModel at `built`; returns (the `generate` signature's argmax text from the
    reference seed, the `step` signature's teacher-forced logits)."""
    loaded = tf.saved_model.load(str(built))
    generate, step = loaded.signatures["generate"], loaded.signatures["step"]
    text = generate(
        seed=tf.constant(ref.seed), length=tf.constant(verify.VERIFY_LENGTH, tf.int32),
        temperature=tf.constant(0.0), random_seed=tf.constant(0, tf.int64),
    )["text"].numpy().decode()

    def step_fn(token, state):
        out = step(token=tf.constant([token], tf.int32), state=tf.constant(state))
        return out["logits"].numpy()[0], out["state"].numpy()

    return text, verify.teacher_forced(step_fn, run, ref)
