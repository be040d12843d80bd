"""The savedmodel format: a directory with the signatures `generate`, `step` and `vocab` (what a
client of `step` needs: the characters in index order, the state's size), and the same facts in
assets/vocab.json; no sidecar."""

import tempfile
from pathlib import Path

from charrnn.export import files, sidecar, tfstep, verify

DIRECTORY = True
SIDECAR = False
# The SavedModel's own copy of the vocabulary file (the sidecar's content, named after its suffix).
ASSET = sidecar.SUFFIX.lstrip(".")


def build(tf, run, built, staging):
    """Saves the run's tf.Module (generate, step and vocab) as a SavedModel directory at `built`,
    with the vocabulary file (as beside a tflite export) in it as assets/vocab.json."""
    module = tfstep.module(tf, run, with_generate=True)
    # A directory of its own, whatever the output's name.
    vocab_file = Path(tempfile.mkdtemp(prefix="asset-", dir=staging)) / ASSET
    files.write_file(vocab_file, sidecar.sidecar_text(run).encode())
    module.vocab_file = tf.saved_model.Asset(str(vocab_file))
    signatures = {name: getattr(module, name).get_concrete_function() for name in ("generate", "step", "vocab")}
    files.tf_call(lambda: tf.saved_model.save(module, str(built), signatures=signatures), "save the SavedModel")


def replay(tf, run, built, ref):
    """Loads the SavedModel at `built` and checks its `vocab` signature; returns (the `generate`
    signature's argmax text from the reference seed, the `step` signature's teacher-forced logits)."""
    loaded = tf.saved_model.load(str(built))
    generate, step = loaded.signatures["generate"], loaded.signatures["step"]
    facts = loaded.signatures["vocab"]()
    index_to_char = [c.decode("utf-8") for c in facts["index_to_char"].numpy()]
    verify.check_vocabulary("savedmodel", run, index_to_char, int(facts["state_size"].numpy()))
    verify.check_vocabulary("savedmodel", run, *sidecar.read_sidecar(built / "assets" / ASSET))
    text = generate(
        seed=tf.constant(ref.seed), length=tf.constant(verify.VERIFY_LENGTH, tf.int32),
        temperature=tf.constant(0.0), random_seed=tf.constant(0, tf.int64),
    )["text"].numpy().decode()

    def step_fn(token, state):
        out = step(token=tf.constant([token], tf.int32), state=tf.constant(state))
        return out["logits"].numpy()[0], out["state"].numpy()

    return text, verify.teacher_forced(step_fn, run, ref)
