"""One guard per state directory: an advisory ``flock`` on ``$STATE_DIR/lock``.

Two guards on one state directory would share a journal and a token cache, and two guards on
one API key kill each other's sessions. The lock is released by the kernel when the process
dies, so a crash never leaves a stale lock behind.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

from guard.errors import StateError

__all__ = ["StateLock"]


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
        """Take the lock if it is free; False if another guard holds it."""
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return False
        os.ftruncate(fd, 0)
        os.write(fd, str(os.getpid()).encode())
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
