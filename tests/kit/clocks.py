"""Time the tests control: a market clock that runs in real time from a chosen instant, and
a file whose mtime is set to an exact wall instant (a heartbeat)."""

from __future__ import annotations

import os
import time
from datetime import datetime, timedelta
from pathlib import Path

__all__ = ["RunningClock", "touch"]


class RunningClock:
    """Market time that starts at ``start`` when made and runs in real time (the simulator
    and the daemon can share it); ``at`` maps a ``time.monotonic`` instant (the simulator
    stamps requests with one) onto it."""

    def __init__(self, start: datetime) -> None:
        self.start, self.t0 = start, time.monotonic()

    def __call__(self) -> datetime:
        return self.at(time.monotonic())

    def at(self, monotonic: float) -> datetime:
        return self.start + timedelta(seconds=monotonic - self.t0)


def touch(path: Path, at: float) -> float:
    """Set ``path``'s mtime to ``at`` (creating it); the mtime as the file system keeps it."""
    path.touch()
    ns = round(at * 1e9)
    os.utime(path, ns=(ns, ns))
    return path.stat().st_mtime
