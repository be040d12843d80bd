"""The run's encoded corpus (a .npy array of one index per character, read a window at a time as
a DiskText, so that a corpus need not fit in memory), and where the run's validation text is."""

import os
import tempfile
from typing import NamedTuple

import numpy as np

from charrnn.corpus import STDIN
from charrnn.data import split_sizes
from charrnn.disktext import DiskText
from charrnn.errors import RunDirError
from charrnn.rundir import messages
from charrnn.rundir.layout import CORPUS, SETTINGS
from charrnn.vocab import index_dtype


class Validation(NamedTuple):
    """Where the run's validation text is: the characters from `start` on (the training part comes
    first) of `text`, the encoded corpus; or, when that is gone (`text` None), of the corpus
    `files` read again (each a dict of path, bytes and sha256, as training recorded them)."""

    start: int
    text: DiskText | None
    files: list


class CorpusStore:
    def __init__(self, files):
        self._files = files

    def write(self, num_chars, dtype, chunks):
        """Writes the encoded corpus atomically from `chunks` (arrays of `dtype`, `num_chars` in
        all) and returns it as a DiskText. Written with plain writes, not through a memory map,
        so that a full disk is an error rather than a crash. A read-only run writes a private
        temporary copy instead."""
        if not self._files.writes:
            return _temporary(num_chars, dtype, chunks)

        def write(f):
            header = {"descr": np.lib.format.dtype_to_descr(np.dtype(dtype)), "fortran_order": False, "shape": (num_chars,)}
            np.lib.format.write_array_header_2_0(f, header)
            for chunk in chunks:
                f.write(np.ascontiguousarray(chunk, dtype=dtype).tobytes())

        self._files.replace(CORPUS, write)
        corpus = self.read(num_chars, dtype)
        if corpus is None:
            raise RunDirError(messages.read_back(self._files.file(CORPUS)))
        return corpus

    def read(self, num_chars, dtype):
        """The encoded corpus as a DiskText (read where needed, never whole), or None if it is
        missing or is not `num_chars` of `dtype` (then training encodes the text again)."""
        try:
            text = DiskText.open_npy(self._files.file(CORPUS))
        except (OSError, ValueError):
            return None
        if len(text) != num_chars or text.dtype != np.dtype(dtype):
            text.file.close()
            return None
        return text

    def validation(self, settings, fix):
        """Where the run's validation text (the last val_fraction of its corpus) is, as Validation:
        the encoded corpus if it is there, else the corpus files it was trained on. A RunDirError,
        ending with the advice `fix`, if the settings do not say how long the corpus was or if
        neither is there (the files are not checked against their sha256 here)."""
        num_chars = settings.corpus.get("chars")
        files = settings.corpus["files"]
        if not isinstance(num_chars, int):
            raise RunDirError(messages.no_length(self._files.file(SETTINGS), fix))
        num_train, _ = split_sizes(num_chars, settings.train.val_fraction)
        text = self.read(num_chars, index_dtype(settings.model.vocab_size))
        if text is None:
            paths = [f["path"] for f in files]
            unreadable = [p for p in paths if p == STDIN or not os.path.isfile(p)]
            if not paths or unreadable:
                if STDIN in unreadable:
                    where = "the corpus was read from standard input"
                else:
                    where = f"the corpus file {(unreadable or ['(none recorded)'])[0]} is not there"
                raise RunDirError(messages.no_validation_text(self._files.file(CORPUS), where, fix))
        return Validation(num_train, text, files)


def _temporary(num_chars, dtype, chunks):
    """`chunks` in an unnamed temporary file, as a DiskText: the corpus of a worker that may not
    write the run directory."""
    spool = tempfile.TemporaryFile()
    for chunk in chunks:
        spool.write(np.ascontiguousarray(chunk, dtype=dtype).tobytes())
    spool.flush()
    return DiskText(spool, 0, num_chars, dtype)
