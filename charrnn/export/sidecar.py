"""The vocabulary file beside a tflite or keras export (STEM.vocab.json; in a SavedModel,
assets/vocab.json): its name, its text, reading it back, and whether an existing one may be
replaced. The vocabulary's own fields are charrnn.vocab's; this file adds the state's."""

import json
from pathlib import Path

from charrnn import cells
from charrnn.errors import ExportError
from charrnn.vocab import Vocab, listed_chars

SUFFIX = ".vocab.json"


def vocab_path_for(output):
    """The vocabulary file written beside a tflite or keras export: model.tflite -> model.vocab.json."""
    output = Path(output)
    return output.with_name(output.stem + SUFFIX)


def state_facts(cfg):
    """What the vocabulary file of an export adds to the run's vocabulary: the state's size and
    layout, and the model's shape."""
    return {
        "state_size": cells.state_size(cfg),
        "state_layout": cells.state_layout(cfg),  # each `units` numbers wide, in this order
        "model": cfg.model,
        "layers": cfg.layers,
        "units": cfg.units,
    }


def sidecar_text(run):
    """The vocabulary file of tflite and keras exports, as text: the run's vocab.json fields with
    state_facts among them."""
    return run.vocab.to_json(**state_facts(run.cfg))


def read_sidecar(path):
    """(index_to_char, state_size) from the vocabulary file at `path`; raises ExportError if it cannot be read."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
        return Vocab.from_record(data).index_to_char, data["state_size"]
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise ExportError(f"could not read back {path}: {e}; check the directory's permissions and free space") from None


def check_sidecar(run, output, force):
    """The vocabulary file's Path for `output`. Raises ExportError if it is a directory, or if it
    exists with other content and either another export beside it (STEM.tflite, STEM.keras: not
    `output` itself) depends on it, whatever `force` says, or `force` is not given."""
    path = vocab_path_for(output)
    if path.is_dir():
        raise ExportError(f"{path} is a directory; choose another --output")
    if not path.exists():
        return path
    try:
        old = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        old = None
    if old == sidecar_text(run):
        return path
    # What the exports that use it read: a rewrite that keeps these changes nothing for them.
    others = [] if force and _essentials(old) == _essentials(sidecar_text(run)) else dependents(path, output)
    if others:
        raise ExportError(
            f"{path} is the vocabulary file of {others[0]}, an export of another run; --force never changes another export's files, "
            f"so choose another --output name, or remove {others[0]} and {path.name} first"
        )
    if not force:
        raise ExportError(f"{path} already exists (from another export); pass --force to replace it, or choose another --output")
    return path


def _essentials(text):
    """(index_to_char, state_size, state_layout) of a vocabulary file's text, or None if it has none."""
    try:
        data = json.loads(text)
        return listed_chars(data), data["state_size"], data["state_layout"]
    except (TypeError, ValueError, KeyError):
        return None


def dependents(vocab_path, output):
    """The exports beside `vocab_path` other than `output` whose vocabulary file it is: files named
    STEM or STEM.EXT that are TFLite flatbuffers or .keras archives."""
    stem = vocab_path.name[: -len(SUFFIX)]
    try:
        siblings = sorted(vocab_path.parent.iterdir())
    except OSError:
        return []
    return [p for p in siblings if p.name != output.name and p.name != vocab_path.name and Path(p.name).stem == stem and _is_export_file(p)]


def _is_export_file(path):
    """True if `path` is a file that begins as a TFLite flatbuffer or (named .keras) a zip archive does."""
    try:
        with open(path, "rb") as f:
            head = f.read(8)
    except OSError:
        return False
    return head[4:8] == b"TFL3" or (head[:4] == b"PK\x03\x04" and path.name.endswith(".keras"))
