"""The run's records in JSON: its settings (Settings, checked against their schema as they are
read) and its vocabulary (charrnn.vocab.Vocab)."""

import dataclasses
import math
from dataclasses import dataclass

from charrnn.checks import is_count, short
from charrnn.config import ModelConfig, TrainConfig, from_dict
from charrnn.errors import CharRNNError, RunDirError
from charrnn.rundir import messages
from charrnn.rundir.layout import SETTINGS, VOCAB
from charrnn.vocab import Vocab


@dataclass
class Settings:
    """What the run is."""

    model: ModelConfig
    train: TrainConfig
    corpus: dict  # files (each path, bytes, sha256), chars, train_chars, val_chars, vocab_size
    versions: dict  # library versions that trained it
    parameters: int | None  # trainable parameters
    # How the latest session ran: strategy, replicas, workers, kernel (it may change on resume).
    spread: dict = dataclasses.field(default_factory=dict)
    # A fine-tuned run's start (--init-from, train/transfer.py): the base's path, the step of the
    # weights taken and their sha256, its vocab_size and the characters added; {} otherwise.
    origin: dict = dataclasses.field(default_factory=dict)

    def to_dict(self):
        data = {
            "model": dataclasses.asdict(self.model),
            "train": dataclasses.asdict(self.train),
            "corpus": self.corpus,
            "versions": self.versions,
            "parameters": self.parameters,
            "spread": self.spread,
        }
        if self.origin:
            data["origin"] = self.origin
        return data


class SettingsStore:
    """The run's settings file."""

    def __init__(self, files):
        self._files = files

    def write(self, settings):
        self._files.write_json(SETTINGS, settings.to_dict())

    def read(self):
        """The settings as Settings, their configs checked as the command line's are, and their
        corpus facts, versions and spread checked for the types that readers print and sum."""
        data = self._files.read_json(SETTINGS)
        path = self._files.file(SETTINGS)
        if not isinstance(data, dict) or not {"model", "train", "corpus"} <= data.keys():
            raise RunDirError(messages.corrupt(path, "model, train or corpus section missing"))
        if not (_fields_ok(ModelConfig, data["model"]) and _fields_ok(TrainConfig, data["train"])):
            raise RunDirError(messages.corrupt(path, "a section has the wrong form"))
        problem = _corpus_problem(data["corpus"]) or _extras_problem(data)
        if problem:
            raise RunDirError(messages.corrupt(path, problem))
        # Runs from before `--state` trained every window from a zero state, and those from before
        # `--weight-decay` without weight decay (the default since is 0.1), and those from before
        # `--lr-decay` with the cosine decay.
        train_data = {"state": "reset", "weight_decay": 0.0, "lr_decay": "cosine", **data["train"]}
        try:
            model, train = from_dict(ModelConfig, data["model"]), from_dict(TrainConfig, train_data)
            model.validate()
            train.validate()
        except (TypeError, ValueError, CharRNNError) as e:
            raise RunDirError(messages.corrupt(path, e)) from None
        versions = data.get("versions") if isinstance(data.get("versions"), dict) else {}
        parameters = data.get("parameters") if is_count(data.get("parameters")) else None
        spread = data.get("spread") if isinstance(data.get("spread"), dict) else {}
        return Settings(model, train, data["corpus"], versions, parameters, spread, _origin(data.get("origin")))


class VocabStore:
    """The run's vocabulary file."""

    def __init__(self, files):
        self._files = files

    def write(self, vocab):
        self._files.write_bytes(VOCAB, vocab.to_json().encode())

    def read(self, vocab_size=None):
        """The vocabulary as a Vocab; with `vocab_size`, it must have that many characters."""
        path = self._files.file(VOCAB)
        text = self._files.read_text(VOCAB)
        try:
            vocab = Vocab.from_json(text)
        except (ValueError, KeyError, TypeError, RecursionError) as e:
            raise RunDirError(messages.corrupt(path, messages.reason(e))) from None
        if vocab_size is not None and vocab.vocab_size != vocab_size:
            raise RunDirError(messages.vocab_unfit(path))
        return vocab


# What settings.json's origin holds, and the type of each (a file edited by hand is shown as far as
# it has these; anything else in it is dropped).
_ORIGIN = {"path": str, "step": int, "weights_sha256": str, "vocab_size": int, "added_chars": int}


def _origin(value):
    if not isinstance(value, dict):
        return {}
    return {k: value[k] for k, kind in _ORIGIN.items() if isinstance(value.get(k), kind) and not isinstance(value.get(k), bool)}


def _fields_ok(cls, section):
    """Whether a settings section is a dict whose known fields have their defaults' types."""
    if not isinstance(section, dict):
        return False
    for field in dataclasses.fields(cls):
        if field.name not in section:
            continue
        value, default = section[field.name], field.default
        if default is dataclasses.MISSING:
            default = field.default_factory()
        if default is None and value is None:
            continue
        number = (int, float) if isinstance(default, float) or default is None else type(default)
        if not isinstance(value, number) or isinstance(value, bool) != isinstance(default, bool):
            return False
    return True


def _corpus_problem(corpus):
    """Why the settings' corpus facts have the wrong form for those who print and sum them, or None."""
    if not isinstance(corpus, dict) or not isinstance(corpus.get("files"), list):
        return "the corpus section has no list of files"
    for facts in corpus["files"]:
        if not isinstance(facts, dict):
            return f"a corpus file is not an object. Received: {short(facts)}"
        path = facts.get("path")
        for field, ok in (
            ("path", isinstance(path, str) and "\0" not in path),
            ("bytes", is_count(facts.get("bytes"))),
            ("sha256", isinstance(facts.get("sha256"), str)),
        ):
            if not ok:
                return f"a corpus file's {field} is not valid. Received: {field}={short(facts.get(field))}"
    for field in ("chars", "train_chars", "val_chars", "vocab_size"):
        value = corpus.get(field)
        if value is not None and not is_count(value):
            return f"corpus {field} must be a count (a whole number, 0 or more). Received: {field}={short(value)}"
    return None


def _extras_problem(data):
    """Why the settings' corpus, versions, spread or parameters hold something no reader can print
    as JSON (NaN, infinity), or None."""
    for section in ("corpus", "versions", "spread", "parameters"):
        stack = [data.get(section)]
        while stack:
            value = stack.pop()
            if isinstance(value, dict):
                stack.extend(value.values())
            elif isinstance(value, list):
                stack.extend(value)
            elif isinstance(value, float) and not math.isfinite(value):
                return f"its {section} holds {value}, which is not a finite number"
    return None
