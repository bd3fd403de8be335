"""The report tests' day: a Monday, and instants on it in exchange time."""

from __future__ import annotations

from datetime import datetime

from guard.clock import EXCHANGE_TZ

__all__ = ["DAY", "at"]

DAY = datetime(2026, 11, 23, tzinfo=EXCHANGE_TZ)


def at(hh: int, mm: int, ss: int = 0, day: datetime = DAY) -> datetime:
    return day.replace(hour=hh, minute=mm, second=ss)
