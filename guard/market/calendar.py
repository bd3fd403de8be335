"""The exchange calendar: trading days, session phases and the windows when a cancel is allowed.

Pure: built from holiday dates, asked with an aware instant, answers with values. No clock, no
I/O (the shipped holiday list is read by ``guard.market.holidays``). Every interval is half-open,
``[start, end)``: at 14:29:59 a HOSE cancel is allowed, at 14:30:00 the ATC has begun.

The facts below are listed board by board in ``docs/market.md``, as this module applies them.

Cancels are allowed only in continuous trading. That rules out the opening and closing auctions
(no cancel or amend there), the 11:30-13:00 lunch break (no board accepts a place, modify or
cancel), the time outside sessions, and two board-specific windows this module decides to treat
as banned:

- HNX PLO (14:45-15:00): a PLO order can never be cancelled, and an order carried over from
  the day has been through ATC already, so the whole PLO window is banned.
- HOSE put-through (14:45-15:00): only negotiated deals trade; the day's order-book orders
  are final after ATC, so there is nothing the guard may cancel.

UPCoM has no closing auction: continuous trading runs to 15:00, and 15:00:00 is closed.
"""

from __future__ import annotations

import calendar as _stdlib_calendar
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from enum import StrEnum

from guard.clock import EXCHANGE_TZ
from guard.model import Board  # the value type; the calendar says what each board does

__all__ = ["Board", "MarketCalendar", "Phase", "Session"]


class Phase(StrEnum):
    """What a board is doing at an instant.

    ``PRE_OPEN`` is a trading day before the first session; ``CLOSED`` is after the last one,
    and the whole of a non-trading day.
    """

    PRE_OPEN = "PRE_OPEN"
    ATO = "ATO"
    CONTINUOUS = "CONTINUOUS"
    LUNCH = "LUNCH"
    ATC = "ATC"
    PUT_THROUGH = "PUT_THROUGH"
    PLO = "PLO"
    CLOSED = "CLOSED"


@dataclass(frozen=True, slots=True)
class Session:
    """One half-open ``[start, end)`` stretch of a board's day, in exchange time."""

    start: time
    end: time
    phase: Phase


def _s(start: str, end: str, phase: Phase) -> Session:
    return Session(time.fromisoformat(start), time.fromisoformat(end), phase)


# The sessions of docs/market.md ("Sessions per board"): change the two together.
_SCHEDULES: dict[Board, tuple[Session, ...]] = {
    Board.HOSE: (
        _s("09:00", "09:15", Phase.ATO),
        _s("09:15", "11:30", Phase.CONTINUOUS),
        _s("11:30", "13:00", Phase.LUNCH),
        _s("13:00", "14:30", Phase.CONTINUOUS),
        _s("14:30", "14:45", Phase.ATC),
        _s("14:45", "15:00", Phase.PUT_THROUGH),
    ),
    Board.HNX: (
        _s("09:00", "11:30", Phase.CONTINUOUS),
        _s("11:30", "13:00", Phase.LUNCH),
        _s("13:00", "14:30", Phase.CONTINUOUS),
        _s("14:30", "14:45", Phase.ATC),
        _s("14:45", "15:00", Phase.PLO),
    ),
    Board.UPCOM: (
        _s("09:00", "11:30", Phase.CONTINUOUS),
        _s("11:30", "13:00", Phase.LUNCH),
        _s("13:00", "15:00", Phase.CONTINUOUS),
    ),
    Board.DER: (
        _s("08:45", "09:00", Phase.ATO),
        _s("09:00", "11:30", Phase.CONTINUOUS),
        _s("11:30", "13:00", Phase.LUNCH),
        _s("13:00", "14:30", Phase.CONTINUOUS),
        _s("14:30", "14:45", Phase.ATC),
    ),
}

_PHASE_WORDS: dict[Phase, str] = {
    Phase.ATO: "in ATO",
    Phase.ATC: "in ATC",
    Phase.PUT_THROUGH: "in put-through after ATC",
    Phase.PLO: "in PLO",
    Phase.PRE_OPEN: "not open yet",
    Phase.CLOSED: "closed for the day",
}


def _local(instant: datetime) -> datetime:
    """Exchange-time view of an aware instant; a naive one is a bug upstream, never guessed."""
    if not isinstance(instant, datetime):
        raise TypeError(f"expected an aware datetime, got {type(instant).__name__}")
    if instant.tzinfo is None or instant.utcoffset() is None:
        raise ValueError(f"naive datetime {instant.isoformat()}: pass an aware instant")
    return instant.astimezone(EXCHANGE_TZ)


def _day(d: date) -> date:
    """Accept a plain date only: a datetime here usually means a timezone bug."""
    if isinstance(d, datetime) or not isinstance(d, date):
        raise TypeError(f"expected a date, got {type(d).__name__}")
    return d


def _at(d: date, t: time) -> datetime:
    return datetime.combine(d, t, tzinfo=EXCHANGE_TZ)


class MarketCalendar:
    """Trading days and phases of the four boards, from a set of holiday dates.

    ``holidays`` are the closed weekdays (shipped list plus the operator's additions);
    ``data_years`` are the years whose exchange list is known to be complete, so that the
    daemon can warn when it runs in a year it has no list for.
    """

    __slots__ = ("_data_years", "_holidays")

    def __init__(self, holidays: Iterable[date] = (), data_years: Iterable[int] = ()) -> None:
        self._holidays = frozenset(_day(d) for d in holidays)
        self._data_years = frozenset(int(y) for y in data_years)

    @property
    def holidays(self) -> frozenset[date]:
        return self._holidays

    def with_holidays(self, extra: Iterable[date]) -> MarketCalendar:
        """A copy with more holidays (the rules.yaml ``holidays:`` list)."""
        return MarketCalendar(self._holidays | {_day(d) for d in extra}, self._data_years)

    def has_holiday_data(self, year: int) -> bool:
        """Whether the exchange's holiday list for ``year`` is known (else: warn loudly)."""
        return year in self._data_years

    def is_trading_day(self, d: date) -> bool:
        """Weekdays that are not holidays. Saturday make-up days never trade."""
        return _day(d).weekday() < 5 and d not in self._holidays

    def next_trading_day(self, d: date) -> date:
        """The first trading day strictly after ``d`` (terminates: the holiday set is finite)."""
        candidate = _day(d) + timedelta(days=1)
        while not self.is_trading_day(candidate):
            candidate += timedelta(days=1)
        return candidate

    def sessions(self, board: Board, d: date) -> tuple[Session, ...]:
        """The board's schedule on ``d``: empty on a non-trading day."""
        return _SCHEDULES[Board(board)] if self.is_trading_day(d) else ()

    def phase(self, board: Board, instant: datetime) -> Phase:
        """The board's phase at ``instant``."""
        local = _local(instant)
        schedule = self.sessions(board, local.date())
        if not schedule:
            return Phase.CLOSED
        now = local.time()
        if now < schedule[0].start:
            return Phase.PRE_OPEN
        for session in schedule:
            if session.start <= now < session.end:
                return session.phase
        return Phase.CLOSED

    def cancel_allowed(self, board: Board, instant: datetime) -> bool:
        """True only in continuous trading on a trading day."""
        return self.phase(board, instant) is Phase.CONTINUOUS

    def why_banned(self, board: Board, instant: datetime) -> str | None:
        """A reason a person can read for why a cancel is banned now, or None if it is allowed."""
        local = _local(instant)
        board = Board(board)
        day = local.date()
        if day.weekday() >= 5:
            weekday = _stdlib_calendar.day_name[day.weekday()]
            return f"{day.isoformat()} is not a trading day ({weekday})"
        if day in self._holidays:
            return f"{day.isoformat()} is a holiday"
        phase = self.phase(board, local)
        if phase is Phase.CONTINUOUS:
            return None
        if phase is Phase.LUNCH:
            return "lunch break: cancel banned"
        return f"{board.value} {_PHASE_WORDS[phase]}: cancel banned"

    def cancel_windows(self, board: Board, d: date) -> list[tuple[datetime, datetime]]:
        """Half-open ``[start, end)`` intervals of ``d`` when a cancel is allowed."""
        return [
            (_at(d, s.start), _at(d, s.end))
            for s in self.sessions(board, d)
            if s.phase is Phase.CONTINUOUS
        ]

    def cancel_cutoff(self, board: Board, d: date) -> datetime | None:
        """The board's last cancel chance on ``d`` (exclusive): 14:30, or 15:00 on UPCoM."""
        windows = self.cancel_windows(board, d)
        return windows[-1][1] if windows else None
