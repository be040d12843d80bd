"""Reading an .npz archive member by member, within bounds, before anything is allocated.

np.load is not used: it allocates a member's whole declared shape before reading it, so a small
crafted file could make it allocate gigabytes. Instead the zip directory is checked first (only
members the rules allow, stored uncompressed, each no larger than the rules allow, together no
larger than the file), then each member's .npy header (no Python objects, a valid shape, then the
rules' own checks of dtype and shape), and only then its data, in chunks, into an array of exactly
that size. Nothing is unpickled.

This module knows no member names: the caller's `rules` say what each member may be:

    rules.kind(key) -> (what, most data bytes or None for unchecked); ValueError for a member the
                       archive may not hold (`key` is the member's name without ".npy")
    rules.oversized(key, what, declared, limit) -> the exception for a member declaring more bytes
    rules.check_keys(keys)                     raises if the members together are not a valid set
    rules.check_header(key, what, shape, dtype) raises if the member's array may not be that
"""

import math
import os
import zipfile

import numpy as np

from charrnn.checks import is_count, short

# Beyond its array, a member of an .npz holds its .npy header, which NumPy's reader keeps under
# 10,000 bytes (and the magic string and header length before it).
NPY_HEADER_MAX = 10_000 + 64
# Bytes read at a time from a member.
_READ_CHUNK = 1 << 24


def read(f, rules, wanted=lambda key: True):
    """{key: array} of the members of the .npz archive in the binary file `f` (a real file: its
    size bounds what the members may declare) for which `wanted(key)` is true; every member is
    checked by the zip directory. Raises what zipfile, NumPy or the rules raise (ValueError,
    OSError, ...) for a damaged or disallowed archive."""
    arrays = {}
    with zipfile.ZipFile(f) as archive:
        listing = check_listing(archive.infolist(), os.fstat(f.fileno()).st_size, rules)
        for key, info in listing.items():
            if wanted(key):
                arrays[key] = read_member(archive, info, key, rules)
    return arrays


def check_listing(infos, file_size, rules):
    """{key: ZipInfo} of the members, checked from the zip directory alone."""
    listing, total = {}, 0
    for info in infos:
        if not info.filename.endswith(".npy"):
            raise ValueError(f"it holds {short(info.filename)}, which is not an array")
        key = info.filename[: -len(".npy")]
        if key in listing:
            raise ValueError(f"it holds {short(key)} twice")
        what, most = rules.kind(key)
        if info.compress_type != zipfile.ZIP_STORED:
            raise ValueError(f"{key} is compressed, and charrnn writes its arrays uncompressed")
        if most is not None and info.file_size > NPY_HEADER_MAX + most:
            raise rules.oversized(key, what, info.file_size, NPY_HEADER_MAX + most)
        total += info.compress_size
        listing[key] = info
    if total > file_size:
        raise ValueError(f"its members declare {total:,} bytes, more than the file's {file_size:,}")
    rules.check_keys(list(listing))
    return listing


def read_member(archive, info, key, rules):
    """The array of member `key`: its .npy header is read and checked before its data."""
    what, _ = rules.kind(key)
    with archive.open(info) as fp:
        version = np.lib.format.read_magic(fp)
        if version == (1, 0):
            shape, fortran_order, dtype = np.lib.format.read_array_header_1_0(fp)
        elif version == (2, 0):
            shape, fortran_order, dtype = np.lib.format.read_array_header_2_0(fp)
        else:
            raise ValueError(f"{key} is a .npy file of version {version}, which charrnn does not read")
        shape = tuple(shape)
        if dtype.hasobject:
            raise ValueError(f"{key} holds Python objects, which charrnn never loads (allow_pickle=False)")
        if not all(is_count(n) for n in shape):
            raise ValueError(f"{key} has an invalid shape {short(shape)}")
        rules.check_header(key, what, shape, dtype)
        count = math.prod(shape)
        data_bytes = info.file_size - fp.tell()
        if data_bytes != count * dtype.itemsize:
            raise ValueError(f"{key} holds {data_bytes:,} bytes of data, its header declares {count * dtype.itemsize:,}")
        # Allocated only now that its size is known to fit the rules and the file.
        array = np.empty(count, dtype)
        _read_into(fp, array.view(np.uint8), key)
        fp.read(1)  # at the end: zipfile checks the member's CRC
    return array.reshape(shape[::-1]).T if fortran_order else array.reshape(shape)


def _read_into(stream, buffer, key):
    """Fills the uint8 array `buffer` from `stream`, _READ_CHUNK bytes at a time."""
    done = 0
    while done < len(buffer):
        piece = stream.read(min(_READ_CHUNK, len(buffer) - done))
        if not piece:
            raise ValueError(f"{key} is truncated")
        buffer[done : done + len(piece)] = np.frombuffer(piece, np.uint8)
        done += len(piece)
