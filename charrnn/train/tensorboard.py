"""TensorBoard event files: RUN/tensorboard/, written with TensorFlow's own `tf.summary.write`.

`tf.summary.scalar` and `tf.summary.text` need the `tensorboard` package (TensorFlow 2.21 raises
TBNotInstalledError without it), but all they add is a small metadata record naming the
TensorBoard plugin that shows the value; it is written here directly, so training needs nothing
more and only the viewer needs the package: `pip install 'charrnn[tensorboard]'`.

`tensorboard --logdir RUN` then shows, at every evaluation, the losses (nats and bits per
character, windowed and with the state carried), the learning rate, the training speed, the
gradient's global norm before clipping, and a text sample from the weights of that moment.
"""

from charrnn.rundir import atomic
from charrnn.train.hooks import Hook

# (tag, metrics row key) of each curve.
SCALARS = (
    ("loss/train", "train_loss"),
    ("loss/validation", "val_loss"),
    ("loss/validation_carried", "val_loss_carried"),
    ("bits_per_char/validation", "val_bpc"),
    ("bits_per_char/validation_carried", "val_bpc_carried"),
    ("learning_rate", "learning_rate"),
    ("chars_per_s", "chars_per_s"),
    ("gradient_norm", "grad_norm"),
)
# The text sample at each evaluation: this many characters, drawn with a fixed seed, so that
# samples from one evaluation to the next differ only by what the network learned.
SAMPLE_LENGTH = 300
SAMPLE_TEMPERATURE = 0.8


class TensorBoardLog(Hook):
    """Writes each evaluation's curves and a text sample. Resuming at step S first drops the
    events of the steps after S from the existing files (the resumed run redoes those steps), so
    the curves never go back or show a step twice."""

    def __init__(self, tf, run, get_weights, model_cfg, vocab, resumed_at=None):
        self.tf, self.get_weights, self.model_cfg, self.vocab = tf, get_weights, model_cfg, vocab
        directory = run.tensorboard_dir()
        if resumed_at is not None:
            trim_events(tf, directory, resumed_at)
        self.writer = tf.summary.create_file_writer(str(directory))

    def on_evaluate(self, state, row, is_best):
        tf = self.tf
        with self.writer.as_default(step=state.step):
            for tag, key in SCALARS:
                if row.get(key) is not None:
                    tf.summary.write(tag, tf.constant(row[key], tf.float32), metadata=_plugin(tf, "scalars"))
            tf.summary.write("sample", tf.constant(self._sample()), metadata=_plugin(tf, "text"))
        self.writer.flush()

    def on_end(self, state):
        self.writer.close()

    def _sample(self):
        from charrnn.generation import sample_text
        from charrnn.numpynet import NumpyRNN

        net = NumpyRNN(self.model_cfg, self.get_weights())
        (text,) = sample_text(net, self.vocab, length=SAMPLE_LENGTH, temperature=SAMPLE_TEMPERATURE, random_seed=0)
        # TensorBoard renders text summaries as Markdown: a code block keeps the text as it is.
        return "```\n" + text.replace("```", "` ` `") + "\n```"


def _plugin(tf, name):
    """The summary metadata that tells TensorBoard which plugin shows a value ("scalars", "text")."""
    from tensorflow.core.framework import summary_pb2

    return summary_pb2.SummaryMetadata(plugin_data=summary_pb2.SummaryMetadata.PluginData(plugin_name=name))


def trim_events(tf, directory, last_step):
    """Drops the events of steps after `last_step` from every event file in `directory`, each file
    replaced atomically; a record cut short by a killed process is dropped too."""
    if not directory.is_dir():
        return
    for path in sorted(directory.glob("events.out.tfevents.*")):
        kept, changed = [], False
        try:
            for record in tf.data.TFRecordDataset(str(path)):
                data = record.numpy()
                if tf.compat.v1.Event.FromString(data).step > last_step:
                    changed = True
                else:
                    kept.append(data)
        except tf.errors.DataLossError:  # a torn last record
            changed = True
        if changed:
            atomic.replace_path(path, lambda temporary, kept=kept: _write_records(tf, temporary, kept))


def _write_records(tf, path, records):
    with tf.io.TFRecordWriter(str(path)) as writer:
        for data in records:
            writer.write(data)
