"""Setting up a session: a new run, a resumed one, or a new one over an old one (`--force`), with
its settings, its vocabulary and its text, checked before anything is built.

Only the chief (a writable RunDir) decides about the directory: it refuses to overwrite a run or
files charrnn did not write, and builds a `--force` run beside the old one. A worker other than
the chief (a read-only RunDir) follows the same rules for everything else.
"""

import dataclasses
import math
from dataclasses import dataclass, field

import numpy as np

from charrnn import config, corpus, data, sizing, softmax
from charrnn.errors import CorpusError, RunDirError, UsageError
from charrnn.rundir import Settings
from charrnn.train import transfer
from charrnn.train.batching import batching_for
from charrnn.train.budget import Budget


@dataclass
class Request:
    """What the user asked for: the corpus, the options given, and --resume / --force."""

    corpus_paths: list  # or a tuple; "-" is `stdin`
    model_options: dict = field(default_factory=dict)  # ModelConfig fields given
    train_options: dict = field(default_factory=dict)  # TrainConfig fields given
    resume: bool = False
    force: bool = False
    stdin: object = None  # the binary stream that `-` reads
    init_from: str | None = None  # --init-from: the run directory whose best weights a new run starts from


@dataclass
class Prepared:
    """A run ready to build: its settings, its text, and (resuming) its last checkpoint."""

    run: object  # the RunDir it trains into
    settings: Settings
    train_ids: np.ndarray  # or a DiskText
    val_ids: np.ndarray
    vocab: object  # charrnn.vocab.Vocab
    checkpoint: object = None  # charrnn.rundir.Checkpoint, when resuming
    # With --force over an old run: the old run, which this one (`run`, built in a staged RunDir
    # inside it) replaces once it has saved its first checkpoint.
    replacing: object = None
    # A fine-tuned run's first weights ({name: array}, train/transfer.py), else None.
    initial_weights: dict | None = None


def prepare(run, request, log):
    """The Prepared run for `request` in `run`; RunDirError or CorpusError when the request
    cannot be met, before anything in the directory changes (but corpus.npy, for a new run)."""
    if request.init_from is not None:
        transfer.check_not_self(request.init_from, run.path)
    if request.resume:
        if request.init_from is not None:
            raise UsageError(f"--init-from starts a new run; leave it out to resume {run.path}, which keeps the weights it has")
        if not run.has_run():
            raise RunDirError(_nothing_to_resume(run))
        return _resumed(run, request)
    if run.writes:
        # Files at charrnn's names that charrnn did not write are never overwritten, nor deleted.
        run.check_not_foreign()
        if run.has_run():
            if not request.force:
                raise RunDirError(
                    f"{run.path} already holds a run; continue it with --resume, "
                    "or start over with --force (which replaces it once the new run has saved its first checkpoint), "
                    "or use another --run-dir"
                )
            # The old run stays whole until the new one, built beside it, has saved its first checkpoint.
            prepared = _new(run.staged(), request, log)
            prepared.replacing = run
            return prepared
    return _new(run, request, log)


def _nothing_to_resume(run):
    if not run.writes:
        return (
            f"nothing to resume in {run.path}: every worker resumes from the chief's run directory, "
            "so it must see it too (a shared filesystem, or a copy of it)"
        )
    return f"nothing to resume in {run.path}; start a run with: charrnn train CORPUS --run-dir {run.path}"


def _new(run, request, log):
    model_options, train_options = dict(request.model_options), request.train_options
    output_layer = model_options.pop("output_layer", "auto")
    base = None
    if request.init_from is not None:
        base = transfer.read_base(request.init_from)
        transfer.check_shape(base.cfg, dict(model_options, output_layer=output_layer), request.init_from)
    model_cfg = config.ModelConfig(**model_options)
    train_cfg = config.TrainConfig(**train_options)
    model_cfg.validate()
    train_cfg.validate()
    scanned = corpus.scan(request.corpus_paths, stdin=request.stdin)
    model_cfg.vocab_size = scanned.vocab.vocab_size
    _check_length(scanned.num_chars, train_cfg)
    num_train, _ = data.split_sizes(scanned.num_chars, train_cfg.val_fraction)
    data.check_batch(num_train, train_cfg.seq_length, train_cfg.batch_size)
    if base is None:
        model_cfg = _shaped(model_cfg, train_cfg, model_options, train_options, output_layer, num_train, log)
        if model_cfg.output_layer == "adaptive":
            scanned.vocab = scanned.vocab.by_frequency()  # the head holds the commonest characters
        start = None
    else:
        start = transfer.start(base, scanned.vocab, model_options, request.init_from)
        model_cfg, scanned.vocab = start.model_cfg, start.vocab
        for name, value in transfer.DEFAULTS.items():
            if name not in model_options and name not in train_options and hasattr(train_cfg, name):
                setattr(train_cfg, name, value)
        log(transfer.start_line(start, base, train_cfg))
    warning = hopeless_budget(model_cfg, train_cfg, num_train)
    if warning:
        log(warning)
    # Refuse what cannot fit before building it (and, with --force, before the old run goes).
    sizing.check_fits(model_cfg, train_cfg)
    train_ids, val_ids = data.split(_encoded(run, scanned), train_cfg.seq_length, train_cfg.val_fraction)
    facts = _corpus_facts(scanned, train_ids, val_ids)
    settings = Settings(model_cfg, train_cfg, facts, versions={}, parameters=None, origin=start.origin if start else {})
    return Prepared(run, settings, train_ids, val_ids, scanned.vocab, initial_weights=start.weights if start else None)


def _shaped(model_cfg, train_cfg, model_options, train_options, output_layer, num_train, log):
    """`model_cfg` with what the user did not choose filled in: the size rule's choices for the
    time budget (said in one line), and the output layer for the vocabulary."""
    rule = sizing.choose(num_train, train_cfg.max_time_s, train_options.get("epochs"))
    chosen = {k: v for k, v in rule.items() if k not in model_options and k not in train_options}
    for name, value in chosen.items():
        setattr(model_cfg if hasattr(model_cfg, name) else train_cfg, name, value)
    model_cfg.output_layer, model_cfg.tails = softmax.choose(output_layer, model_cfg.vocab_size, model_cfg.units)
    if chosen:
        log(sizing.describe(train_cfg, model_cfg, num_train))
    return model_cfg


# A budget is called hopeless when the model would make fewer passes over the text than this
# and the alphabet is at least this large (a judgment: 0.87 passes over a Chinese text of 5,965
# distinct characters gave garbage in the first-time user's trials of issue 21).
HOPELESS_PASSES, HOPELESS_VOCAB = 2, 1000


def hopeless_budget(model_cfg, train_cfg, num_train):
    """One line saying what to expect and what to change when a time budget is far too short for
    a large alphabet, or None."""
    from charrnn.units import duration

    if not train_cfg.max_time_s or model_cfg.vocab_size < HOPELESS_VOCAB:
        return None
    speed = sizing.chars_per_s(model_cfg, train_cfg.max_time_s)
    passes = train_cfg.max_time_s * speed / max(num_train, 1)
    if passes >= HOPELESS_PASSES:
        return None
    enough = f"{math.ceil(train_cfg.max_time_s * HOPELESS_PASSES / passes / 60)}m"
    return (
        f"note: in {duration(train_cfg.max_time_s)} this model makes about {passes:.2f} passes over the "
        f"{num_train:,} training characters (at about {speed:,.0f} chars/s on a 2-core CPU), too little for "
        f"{model_cfg.vocab_size:,} distinct characters: expect text not yet in the corpus's style; "
        f"--max-time {enough} gives it {HOPELESS_PASSES} (or --output-layer adaptive, if it is full)"
    )


def _resumed(run, request):
    saved = run.settings.read()
    options = {k: v for k, v in request.model_options.items() if (k, v) != ("output_layer", "auto")}
    model_cfg = config.resumed(saved.model, options, frozen=config.SHAPE_FIELDS)
    train_cfg = config.resumed(saved.train, request.train_options, frozen=config.DATA_ORDER_FIELDS)
    sizing.check_fits(model_cfg, train_cfg)
    vocab = run.vocab.read()
    paths = list(request.corpus_paths) or [f["path"] for f in saved.corpus["files"]]
    # Reading the text again checks that it has not changed; the encoded copy is then reused.
    scanned = corpus.scan(paths, stdin=request.stdin, vocab=vocab, resuming=run.path)
    same = check_same_corpus(saved.corpus["files"], scanned.files, request.force)
    _check_length(scanned.num_chars, train_cfg)
    checkpoint = run.checkpoint.load(saved)
    # Refuse before anything in the directory changes.
    num_train, _ = data.split_sizes(scanned.num_chars, train_cfg.val_fraction)
    budget = Budget(train_cfg, num_train)
    if budget.spent(checkpoint.state):
        raise RunDirError(budget.finished_message(run.path, checkpoint.state))
    ids = _encoded(run, scanned, reuse=same)
    train_ids, val_ids = data.split(ids, train_cfg.seq_length, train_cfg.val_fraction)
    # The corpus as read now (it may have moved, or changed under --force): the next resume checks against it.
    corpus_facts = dict(saved.corpus, **_corpus_facts(scanned, train_ids, val_ids))
    settings = dataclasses.replace(saved, model=model_cfg, train=train_cfg, corpus=corpus_facts)
    return Prepared(run, settings, train_ids, val_ids, vocab, checkpoint)


def _check_length(num_chars, cfg):
    """CorpusError unless a corpus of `num_chars` is long enough for the run's settings."""
    data.check_length(num_chars, cfg.seq_length, cfg.val_fraction)
    batching_for(cfg).check(data.split_sizes(num_chars, cfg.val_fraction)[0])


def _encoded(run, scanned, reuse=False):
    """The encoded text, read a window at a time: the run's corpus.npy (reused when resuming on
    the same text, else written now), or for a worker other than the chief (a read-only run), a
    private temporary copy (never the chief's file, which the chief may be replacing)."""
    ids = run.corpus.read(scanned.num_chars, scanned.vocab.dtype) if reuse and run.writes else None
    if ids is None:
        ids = run.corpus.write(scanned.num_chars, scanned.vocab.dtype, corpus.encode(scanned))
    return ids


def _corpus_facts(scanned, train_ids, val_ids):
    return {
        "files": scanned.files,
        "chars": scanned.num_chars,
        "train_chars": int(len(train_ids)),
        "val_chars": int(len(val_ids)),
        "vocab_size": scanned.vocab.vocab_size,
    }


def check_same_corpus(saved_files, files, force):
    """Whether the corpus is the one the run was trained on; a CorpusError if not, unless `force`."""
    saved = [(f["bytes"], f["sha256"]) for f in saved_files]
    now = [(f["bytes"], f["sha256"]) for f in files]
    if saved != now and not force:
        names = ", ".join(f["path"] for f in files)
        raise CorpusError(
            f"the corpus ({names}) differs from the one this run was trained on (sha256 changed); "
            "resume with the original text, or add --force to continue on the new text"
        )
    return saved == now
