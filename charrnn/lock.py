"""RunLock: one training at a time per run directory, and a killed training's lock taken over."""

import contextlib
import errno
import fcntl
import os
import re

from charrnn.errors import RunDirError

# What charrnn writes in a lock file: its process id and a newline (or nothing, once released).
_LOCK_TEXT = re.compile(rb"\d{0,20}\n?")


def is_lock_text(data):
    """Whether `data` (bytes) is what a charrnn lock file holds."""
    return _LOCK_TEXT.fullmatch(data) is not None


class RunLock:
    """An flock on a file that holds the process id of its holder.

    The kernel drops an flock when its process dies, so the lock of a killed training is stale by
    construction and is simply taken over; the pid in the file only names the holder in messages.
    The holder deletes the file when it lets go, so a finished run leaves no lock behind. A file
    called `lock` that charrnn did not write (anything but a pid) is never changed.
    """

    def __init__(self, path):
        self.path = path
        self._fd = None

    def acquire(self):
        """Takes the lock; raises RunDirError naming the holder if a live process has it. Returns
        the pid of the dead process whose lock was taken over, or None."""
        while True:
            fd = self._open()
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as e:
                holder = os.pread(fd, 100, 0).decode(errors="replace").strip()
                os.close(fd)
                if e.errno not in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
                    raise RunDirError(f"cannot lock run directory {self.path.parent}: {e.strerror}") from None
                raise RunDirError(
                    f"run directory {self.path.parent} is being trained by another process "
                    f"(pid {holder if holder.isdigit() else 'unknown'}); wait for it to finish, stop it, or use another --run-dir"
                ) from None
            # The holder before us may have deleted the file as it let go, after we opened it: then
            # this lock is on a file nobody else will find. Start again on the file now at the path.
            if _same_file(fd, self.path):
                break
            os.close(fd)
        try:
            stale = os.pread(fd, 100, 0)
            if not is_lock_text(stale):
                raise RunDirError(
                    f"{self.path} is not a lock file of charrnn's (it holds other data), so charrnn will not "
                    "overwrite it; move it away, or use another --run-dir"
                )
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        except BaseException:
            os.close(fd)
            raise
        self._fd = fd
        stale = stale.decode().strip()
        return stale if stale.isdigit() and stale != str(os.getpid()) else None

    def _open(self):
        parent = self.path.parent
        try:
            if parent.is_symlink() and not parent.exists():
                raise RunDirError(
                    f"run directory {parent} is a symbolic link to {os.readlink(parent)}, which does not exist; "
                    "create that directory, or use another --run-dir"
                )
            if parent.exists() and not parent.is_dir():
                raise RunDirError(f"{parent} is a file, not a directory; use another --run-dir")
            parent.mkdir(parents=True, exist_ok=True)
            if self.path.is_dir() or (self.path.exists() and not self.path.is_file()):
                raise RunDirError(f"{self.path} is not a lock file of charrnn's; move it away, or use another --run-dir")
            # O_NOFOLLOW: a symbolic link called `lock` is not followed to some other file.
            return os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o644)
        except OSError as e:
            if e.errno == errno.ELOOP:
                raise RunDirError(f"{self.path} is a symbolic link, not a lock file of charrnn's; move it away, or use another --run-dir") from None
            raise RunDirError(
                f"cannot use run directory {parent}: {e.strerror or e}; training needs a directory "
                "it can write to: fix its permissions or use another --run-dir"
            ) from None

    def release(self):
        """Deletes the file and drops the lock."""
        if self._fd is not None:
            if _same_file(self._fd, self.path):
                try:
                    os.unlink(self.path)
                except OSError:
                    with contextlib.suppress(OSError):
                        os.ftruncate(self._fd, 0)  # cannot delete it: at least name no holder
            os.close(self._fd)
            self._fd = None


def _same_file(fd, path):
    """Whether the open file `fd` is the file at `path`."""
    try:
        here, there = os.fstat(fd), os.stat(path, follow_symlinks=False)
    except OSError:
        return False
    return (here.st_dev, here.st_ino) == (there.st_dev, there.st_ino)
