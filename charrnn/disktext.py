"""An encoded text in a file (the run's corpus.npy, or a worker's temporary copy), read a window
at a time."""

import os

import numpy as np


class DiskText:
    """An encoded text in a file, read where it is needed: `rows(starts, width)` reads each window
    with one pread. What is read stays in the operating system's page cache, shared and
    reclaimable, not in this process: its memory does not grow with the corpus (a memory map's
    resident pages would, as training touches every part of the text in an epoch).

    Slicing (`text[a:b]`) gives a DiskText of part of it; `np.asarray(text)` reads it whole.
    """

    def __init__(self, file, offset, length, dtype):
        self.file, self.offset, self.length, self.dtype = file, offset, length, np.dtype(dtype)

    @classmethod
    def open_npy(cls, path):
        """The 1-D array in a .npy file; raises OSError or ValueError if it is not one."""
        f = open(path, "rb")  # noqa: SIM115  (kept open: the DiskText reads from it)
        try:
            version = np.lib.format.read_magic(f)
            read_header = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
            shape, fortran_order, dtype = read_header(f)
            if len(shape) != 1 or fortran_order or dtype.hasobject:
                raise ValueError("not a 1-D array of numbers")
            if os.fstat(f.fileno()).st_size != f.tell() + shape[0] * dtype.itemsize:
                raise ValueError("the file's size does not match its header")
            return cls(f, f.tell(), shape[0], dtype)
        except BaseException:
            f.close()
            raise

    def __len__(self):
        return self.length

    def __getitem__(self, key):
        start, stop, step = key.indices(self.length)
        if step != 1:
            raise ValueError("a DiskText slices with step 1 only")
        return DiskText(self.file, self.offset + start * self.dtype.itemsize, max(0, stop - start), self.dtype)

    def __array__(self, dtype=None, copy=None):
        whole = self.rows(np.zeros(1, np.int64), self.length)[0]
        return whole if dtype is None else whole.astype(dtype)

    def rows(self, starts, width):
        """(len(starts), width) array: text[start : start + width] for each start."""
        size = self.dtype.itemsize
        fd = self.file.fileno()
        out = np.empty((len(starts), width), self.dtype)
        for row, start in enumerate(starts):
            if not 0 <= start <= self.length - width:
                raise IndexError(f"window {start}:{start + width} is outside the text (length {self.length})")
            data = os.pread(fd, width * size, self.offset + int(start) * size)
            out[row] = np.frombuffer(data, self.dtype)
        return out
