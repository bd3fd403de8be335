"""Injectable clocks: every piece of logic that needs "now" takes a ``Clock``.

Exchange time is Asia/Ho_Chi_Minh (UTC+7, no DST); clocks return aware datetimes so that the
host's TZ never matters.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

__all__ = ["EXCHANGE_TZ", "AcceleratedClock", "Clock", "FakeClock", "exchange_time",
           "system_clock"]

EXCHANGE_TZ = ZoneInfo("Asia/Ho_Chi_Minh")

Clock = Callable[[], datetime]


def exchange_time(iso: object, fmt: str) -> str:
    """An ISO instant from a log event or the journal, written in exchange time with ``fmt``
    for a person; anything that is not one, as it is (it is shown, never trusted)."""
    try:
        at = datetime.fromisoformat(str(iso))
    except ValueError:
        return str(iso)
    if at.tzinfo is not None:
        at = at.astimezone(EXCHANGE_TZ)
    return at.strftime(fmt)


def system_clock() -> datetime:
    """The real time, in exchange time."""
    return datetime.now(EXCHANGE_TZ)


class FakeClock:
    """A clock that moves only when told to; for tests and rehearsals (``--at``)."""

    def __init__(self, start: datetime) -> None:
        if start.tzinfo is None:
            raise ValueError("FakeClock needs an aware datetime")
        self._now = start
        self._lock = threading.Lock()

    def __call__(self) -> datetime:
        with self._lock:
            return self._now

    def set(self, instant: datetime) -> None:
        if instant.tzinfo is None:
            raise ValueError("FakeClock needs an aware datetime")
        with self._lock:
            self._now = instant

    def advance(self, delta: timedelta) -> None:
        with self._lock:
            self._now += delta


class AcceleratedClock:
    """Simulated time that runs ``speed`` times faster than the wall clock.

    The demo uses it to play a trading day in under a minute.
    """

    def __init__(self, start: datetime, speed: float) -> None:
        if start.tzinfo is None:
            raise ValueError("AcceleratedClock needs an aware datetime")
        self._start = start
        self._speed = speed
        self._t0 = time.monotonic()

    @property
    def speed(self) -> float:
        return self._speed

    def __call__(self) -> datetime:
        elapsed = time.monotonic() - self._t0
        return self._start + timedelta(seconds=elapsed * self._speed)
