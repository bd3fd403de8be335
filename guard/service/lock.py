"""One guard per state directory: an advisory ``flock`` on ``$STATE_DIR/lock``.

Two guards on one state directory would share a journal and a token cache, and two guards on
one API key kill each other's sessions. The lock is released by the kernel when the process
dies, so a crash never leaves a stale lock behind.
"""

from __future__ import annotations

import errno
import fcntl
import os
from pathlib import Path

from guard.errors import StateError

__all__ = ["StateLock"]


def _why(exc: OSError) -> str:
    """``No space left on device (ENOSPC)``: the words and the name an operator can search."""
    name = errno.errorcode.get(exc.errno or 0, "")
    words = exc.strerror or type(exc).__name__
    return f"{words} ({name})" if name else words


class StateLock:
    def __init__(self, state_dir: Path) -> None:
        self.path = state_dir / "lock"
        self._fd: int | None = None

    def acquire(self) -> None:
        if not self.try_acquire():
            raise StateError(
                f"another ssi-guard holds {self.path}: only one guard may use a state directory"
            )

    def try_acquire(self) -> bool:
        """Take the lock if it is free; False if another guard holds it.

        A lock file that cannot be opened or written (a full, read-only or foreign-owned
        state directory) is a ``StateError``: a guard that cannot write its state directory
        cannot journal a cancel either, so it must not start."""
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        except OSError as exc:
            raise StateError(f"cannot open the lock file {self.path}: {_why(exc)}") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return False
        except OSError as exc:  # ENOLCK: a file system without locks (some NFS mounts)
            os.close(fd)
            raise StateError(f"cannot lock {self.path}: {_why(exc)}") from None
        try:
            os.ftruncate(fd, 0)
            pid = str(os.getpid()).encode()
            if os.write(fd, pid) != len(pid):
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        except OSError as exc:
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)
            raise StateError(f"cannot write the lock file {self.path}: {_why(exc)}") from None
        self._fd = fd
        return True

    def release(self) -> None:
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> StateLock:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()
