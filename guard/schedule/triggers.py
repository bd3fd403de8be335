"""When sweeps fire: pure APScheduler triggers, arithmetic on datetimes and the calendar.

Each trigger answers ``get_next_fire_time(previous_fire_time, now)`` with no clock and no I/O,
so "does the pre-close sweep fire at 14:25:00 on a trading day, and not on a holiday?" is a
test with two datetimes. The same triggers drive APScheduler in the daemon and the virtual
clock of ``ssi-guard demo``.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta

from apscheduler.triggers.base import BaseTrigger

from guard.clock import EXCHANGE_TZ
from guard.config.schema import RulesFile
from guard.market.calendar import Board, MarketCalendar

__all__ = [
    "ALL_BOARDS",
    "CancelWindowTrigger",
    "JobSpec",
    "ShiftedTrigger",
    "TradingDayTimesTrigger",
    "guarded_boards",
    "plan_jobs",
]

ALL_BOARDS: tuple[Board, ...] = (Board.HOSE, Board.HNX, Board.UPCOM, Board.DER)
_HORIZON_DAYS = 30  # look this far ahead for the next trading day; holidays never run longer


def _local(instant: datetime) -> datetime:
    if instant.tzinfo is None:
        raise ValueError("triggers need aware datetimes")
    return instant.astimezone(EXCHANGE_TZ)


class CancelWindowTrigger(BaseTrigger):  # type: ignore[misc]
    """Every ``interval`` while at least one of ``boards`` allows cancels on a trading day.

    Outside those windows (before the open, lunch, after the close, weekends, holidays) it
    does not fire at all; the next fire time is the start of the next window.
    """

    def __init__(self, interval: timedelta, calendar: MarketCalendar,
                 boards: Iterable[Board] = ALL_BOARDS) -> None:
        if interval <= timedelta(0):
            raise ValueError("interval must be positive")
        self.interval = interval
        self.calendar = calendar
        self.boards = tuple(boards)

    def windows(self, day: date) -> list[tuple[datetime, datetime]]:
        """The union of the boards' cancel windows on ``day``, merged and sorted."""
        spans = sorted(w for b in self.boards for w in self.calendar.cancel_windows(b, day))
        merged: list[tuple[datetime, datetime]] = []
        for start, end in spans:
            if merged and start <= merged[-1][1]:
                merged[-1] = (merged[-1][0], max(end, merged[-1][1]))
            else:
                merged.append((start, end))
        return merged

    def next_open(self, instant: datetime) -> datetime | None:
        """The first instant >= ``instant`` inside a window."""
        local = _local(instant)
        day = local.date()
        for _ in range(_HORIZON_DAYS):
            for start, end in self.windows(day):
                if local < end:
                    return max(start, local)
            day += timedelta(days=1)
            local = datetime.combine(day, time(0), tzinfo=EXCHANGE_TZ)
        return None

    def get_next_fire_time(self, previous_fire_time: datetime | None,
                           now: datetime) -> datetime | None:
        # After a long stall (suspend, a slow sweep) resume from now rather than replaying
        # every missed interval.
        candidate = now if previous_fire_time is None else max(
            _local(previous_fire_time) + self.interval, _local(now))
        return self.next_open(candidate)

    def __str__(self) -> str:
        return f"every {self.interval} while cancels are allowed"


class TradingDayTimesTrigger(BaseTrigger):  # type: ignore[misc]
    """Fixed exchange-time instants (``times``) on trading days only; holidays are skipped."""

    def __init__(self, times: Iterable[time], calendar: MarketCalendar) -> None:
        self.times = tuple(sorted(set(times)))
        if not self.times:
            raise ValueError("at least one time is needed")
        self.calendar = calendar

    def get_next_fire_time(self, previous_fire_time: datetime | None,
                           now: datetime) -> datetime | None:
        after = _local(previous_fire_time) if previous_fire_time is not None else None
        local = _local(now)
        # Resume from the previous fire (so a late run is seen as missed, not skipped), unless
        # it is days old: then from yesterday, so the horizon always reaches the future.
        day = local.date()
        if after is not None and after.date() >= local.date() - timedelta(days=1):
            day = after.date()
        for _ in range(_HORIZON_DAYS):
            if self.calendar.is_trading_day(day):
                for t in self.times:
                    fire = datetime.combine(day, t, tzinfo=EXCHANGE_TZ)
                    if (after is None and fire >= local) or (after is not None and fire > after):
                        return fire
            day += timedelta(days=1)
        return None

    def __str__(self) -> str:
        return "on trading days at " + ", ".join(t.isoformat() for t in self.times)


class ShiftedTrigger(BaseTrigger):  # type: ignore[misc]
    """``inner``, for a market clock that runs ``offset`` ahead of the wall clock.

    APScheduler asks and waits in wall time; ``inner`` answers in market time. A rehearsal
    daemon (``ssi-guard run --at ISO``) has market time = wall time + offset, so a fire at
    market 09:00:00 is a wake-up at wall ``09:00:00 - offset``. With a zero offset this is
    ``inner`` exactly.
    """

    def __init__(self, inner: BaseTrigger, offset: timedelta) -> None:
        self.inner = inner
        self.offset = offset

    def get_next_fire_time(self, previous_fire_time: datetime | None,
                           now: datetime) -> datetime | None:
        previous = None if previous_fire_time is None else previous_fire_time + self.offset
        fire = self.inner.get_next_fire_time(previous, now + self.offset)
        return None if fire is None else fire - self.offset

    def __str__(self) -> str:
        shift = self.offset.total_seconds()
        return f"{self.inner} (rehearsal: market clock = wall clock {shift:+.0f}s)"


@dataclass(frozen=True)
class JobSpec:
    """One scheduled sweep: its id, its trigger, and how late it may still run."""

    job_id: str
    trigger: BaseTrigger
    misfire_grace_s: int
    critical: bool  # a missed critical job is an alert (the pre-close sweep)


def guarded_boards(rules: RulesFile) -> tuple[Board, ...]:
    """Boards named by some rule's ``match.boards``; every board when a rule names none."""
    named: set[Board] = set()
    for rule in rules.rules:
        if rule.match.boards is None:
            return ALL_BOARDS
        named.update(Board(b) for b in rule.match.boards)
    return tuple(b for b in ALL_BOARDS if b in named)


def _cutoff_times(calendar: MarketCalendar, boards: Iterable[Board],
                  lead: timedelta) -> set[time]:
    """``cutoff - lead`` per board, read off a reference trading day's schedule."""
    # The session table is the same every trading day; read it off any one.
    day = calendar.next_trading_day(date(2026, 11, 22))
    out = set()
    for board in boards:
        cutoff = calendar.cancel_cutoff(board, day)
        if cutoff is not None:
            out.add((cutoff - lead).timetz().replace(tzinfo=None))
    return out


def plan_jobs(rules: RulesFile, calendar: MarketCalendar) -> list[JobSpec]:
    """The daemon's jobs for ``rules``: one poll job, plus one exact-time job per distinct
    pre-close and ``at`` instant. Pure; re-run after a reload."""
    boards = guarded_boards(rules)
    poll_s = int(rules.poll_every.total_seconds())
    jobs = [JobSpec("poll", CancelWindowTrigger(rules.poll_every, calendar, boards),
                    misfire_grace_s=max(1, poll_s), critical=False)]
    for rule in rules.rules:
        if rule.before_close is not None:
            rule_boards = rule.match.boards or boards
            times = _cutoff_times(calendar, (Board(b) for b in rule_boards), rule.before_close)
            # Late is still useful until the cutoff itself (the engine refuses a cancel once
            # the board is in ATC), so a pre-close sweep may run up to its whole lead late.
            grace = max(30, int(rule.before_close.total_seconds()))
            jobs.append(JobSpec(f"pre-close:{rule.name}", TradingDayTimesTrigger(times, calendar),
                                misfire_grace_s=grace, critical=True))
        elif rule.at is not None:
            jobs.append(JobSpec(f"at:{rule.name}", TradingDayTimesTrigger(rule.at, calendar),
                                misfire_grace_s=30, critical=True))
    return jobs
