"""RunLock: one training at a time per run directory, and a killed training's lock taken over."""

import contextlib
import errno
import fcntl
import os

from charrnn.errors import RunDirError


class RunLock:
    """An flock on a file that holds the process id of its holder.

    The kernel drops an flock when its process dies, so the lock of a killed training is stale by
    construction and is simply taken over; the pid in the file only names the holder in messages.
    """

    def __init__(self, path):
        self.path = path
        self._fd = None

    def acquire(self):
        """Takes the lock; raises RunDirError naming the holder if a live process has it. Returns
        the pid of the dead process whose lock was taken over, or None."""
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as e:
            raise RunDirError(
                f"cannot use run directory {self.path.parent}: {e.strerror or e}; training needs a directory "
                "it can write to: fix its permissions or use another --run-dir"
            ) from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as e:
            holder = os.read(fd, 100).decode(errors="replace").strip()
            os.close(fd)
            if e.errno not in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
                raise RunDirError(f"cannot lock run directory {self.path.parent}: {e.strerror}") from None
            raise RunDirError(
                f"run directory {self.path.parent} is being trained by another process "
                f"(pid {holder if holder.isdigit() else 'unknown'}); wait for it to finish, stop it, or use another --run-dir"
            ) from None
        try:
            stale = os.read(fd, 100).decode(errors="replace").strip()
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        except OSError:
            os.close(fd)
            raise
        self._fd = fd
        return stale if stale.isdigit() and stale != str(os.getpid()) else None

    def release(self):
        """Empties the file (no holder) and drops the lock."""
        if self._fd is not None:
            with contextlib.suppress(OSError):
                os.ftruncate(self._fd, 0)
            os.close(self._fd)
            self._fd = None
