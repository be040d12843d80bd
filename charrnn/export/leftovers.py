"""What an export leaves beside its --output while it runs, and cleaning up after one that was
killed: the staging directory's and the moved-aside SavedModel's names, the lock that tells a
running export's from an abandoned one's, and their removal."""

import fcntl
import os
import re
import shutil

# Leftovers of an export that was killed, as `staging_prefix` and `aside` name them.
_STAGING_NAME = re.compile(r"\..+\.export-(\d+)-\w+")
_OLD_NAME = re.compile(r"\.(.+)\.old-(\d+)")


def staging_prefix(output):
    """The start of the name of this process's staging directory for `output` (a Path)."""
    return f".{output.name[:100]}.export-{os.getpid()}-"


def aside(output):
    """Where this process moves an old SavedModel at `output` (a Path) while it swaps in the new one."""
    return output.with_name(f".{output.name}.old-{os.getpid()}")


def remove_leftovers(parent):
    """Removes what exports killed midway left in `parent`: their staging directories, and the
    SavedModels (or links to one) they had moved aside, which go back to their name if nothing has
    taken it since. What a running export uses is left alone."""
    try:
        entries = sorted(parent.iterdir())
    except OSError:
        return
    for path in entries:
        staged, old = _STAGING_NAME.fullmatch(path.name), _OLD_NAME.fullmatch(path.name)
        if staged and path.is_dir() and not path.is_symlink() and _abandoned(path, int(staged[1])):
            shutil.rmtree(path, ignore_errors=True)
        elif old and (path / "saved_model.pb").is_file() and _abandoned(path, int(old[2])):
            original = parent / old[1]
            try:
                if original.exists() or original.is_symlink():
                    remove(path)
                else:
                    os.rename(path, original)
            except OSError:
                pass  # left for the next time


def _abandoned(path, pid):
    """True if the process `pid` that named `path` is not running and no process holds its lock."""
    if pid == os.getpid():
        return False
    try:
        os.kill(pid, 0)
        return False
    except ProcessLookupError:
        pass
    except (OSError, OverflowError, ValueError):
        return False  # someone else's process, or no way to tell: keep it
    if path.is_symlink():
        return True
    fd = lock(path)
    if fd is None:
        return False
    os.close(fd)
    return True


def lock(path):
    """An open descriptor of the directory `path` holding an exclusive flock on it, or None if
    another process holds one or the file system cannot lock."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
    except OSError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return fd
    except OSError:
        os.close(fd)
        return None


def remove(path):
    """Removes a symbolic link (never what it points to), or a directory with everything in it."""
    if path.is_symlink():
        path.unlink()
    else:
        shutil.rmtree(path, ignore_errors=True)
