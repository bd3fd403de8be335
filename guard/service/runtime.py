"""Building a ready-to-sweep guard from rules.yaml, the environment and the state directory.

Every command that sweeps (``run``, ``run --once``, ``check``, ``demo``) opens the guard here,
so they all get the same locks, journal, broker and calendar.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from datetime import datetime
from pathlib import Path

import structlog

from guard.broker.client import DEFAULT_RATE_LIMIT, Broker
from guard.broker.tokens import TokenCache
from guard.clock import EXCHANGE_TZ, Clock, system_clock
from guard.config.loader import load_rules
from guard.market.calendar import MarketCalendar
from guard.market.holidays import build_calendar
from guard.record.journal import EventRecorder, Journal
from guard.record.log import Log, add_observers, remove_observers
from guard.service.lock import StateLock
from guard.settings import load_credentials, resolve_state_dir
from guard.sweep import SweepContext

__all__ = ["check_holiday_data", "open_guard"]

NO_HOLIDAY_DATA_ACTION = "add this year's exchange holidays to rules.yaml `holidays:`"


def check_holiday_data(calendar: MarketCalendar, instant: datetime, log: Log,
                       warned: set[int] | None = None) -> int | None:
    """The exchange year of ``instant`` if ``calendar`` has no holiday list for it, else None.

    A year without a list treats every weekday as a trading day, so a holiday is swept like
    any other day: each command that evaluates rules (the daemon, ``run --once``, ``check``)
    says so through the same ``calendar.no_holiday_data`` event, which the alert rules turn
    into the ``no_holiday_data`` alert. ``warned`` holds the years already reported, so a
    daemon says it once per year, not every poll. The year is the exchange's: 23:30Z on
    31 December is already the next year in Vietnam.
    """
    year = instant.astimezone(EXCHANGE_TZ).year
    if calendar.has_holiday_data(year):
        return None
    if warned is None or year not in warned:
        if warned is not None:
            warned.add(year)
        log.warning("calendar.no_holiday_data", year=year, action=NO_HOLIDAY_DATA_ACTION)
    return year


@asynccontextmanager
async def open_guard(
    rules_path: str | Path,
    *,
    force_dry_run: bool = False,
    clock: Clock = system_clock,
    env: Mapping[str, str] | None = None,
    log: Log | None = None,
    lock: bool = True,
    broker_rate_limit: int | None = None,
    held_lock: StateLock | None = None,
) -> AsyncIterator[SweepContext]:
    """Load and check everything first (rules, credentials, state), then connect.

    ``held_lock``: the state lock, already taken by the caller (``cancel-all``, which must
    not let it go between looking and acting); released on the way out.

    A guard that holds the state lock (the daemon, ``run --once``, the demo) also journals the
    events the day's report reads (``EventRecorder``), stamped with ``clock``'s market day;
    ``check`` (``lock=False``) writes none.
    """
    rules = load_rules(rules_path)
    creds = load_credentials(env)
    state_dir = resolve_state_dir(env)
    state_lock = held_lock or StateLock(state_dir)
    if held_lock is not None:
        session_owner = True  # the caller took it (cancel-all, which must not let it go)
    elif lock:
        state_lock.acquire()
        session_owner = True
    else:
        # ``check``: if no guard is running, hold the lock for the duration and own the
        # session (refresh, SSI_OTP login); beside a running guard, borrow its cached token
        # read-only, because a refresh or login from here would end that guard's session.
        session_owner = state_lock.try_acquire()
    journal: Journal | None = None
    broker: Broker | None = None
    recorder: EventRecorder | None = None
    try:
        journal = Journal(state_dir / "journal.sqlite3")
        if lock:
            recorder = EventRecorder(journal, clock)
            add_observers(recorder)
        broker = Broker(creds, TokenCache(state_dir), session_owner=session_owner,
                        rate_limit=DEFAULT_RATE_LIMIT if broker_rate_limit is None
                        else broker_rate_limit)
        await broker.open()
        yield SweepContext(
            broker=broker,
            rules=rules,
            calendar=build_calendar(rules.holidays),
            journal=journal,
            state_dir=state_dir,
            clock=clock,
            log=log or structlog.get_logger("guard"),
            force_dry_run=force_dry_run,
            owns_state=lock,
        )
    finally:
        if broker is not None:
            await broker.close()
        if recorder is not None:
            remove_observers(recorder)  # before the journal it writes closes
        if journal is not None:
            journal.close()
        state_lock.release()
