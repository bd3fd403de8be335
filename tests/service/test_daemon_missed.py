"""A pre-close sweep due while the guard was down is reported when it comes back.

A restarted APScheduler only looks forward, so without this a guard that crashed at 14:20
and came back at 14:40 would never say that today's 14:25 sweep did not run.
"""

from __future__ import annotations

import asyncio
from datetime import datetime
from pathlib import Path

from kit.ops import recording, running_guard

from guard.clock import EXCHANGE_TZ, FakeClock
from guard.simulator.control import Simulator

RULES = """
version: 1
accounts: ["0001234"]
dry_run: false
rules:
  - name: stale
    max_age: 15m
  - name: pre-close
    before_close: 5m
    match: {boards: [HOSE]}
"""


def at(hh: int, mm: int) -> datetime:
    return datetime(2026, 11, 23, hh, mm, tzinfo=EXCHANGE_TZ)


def missed_events(sim: Simulator, tmp_path: Path, swept: list[tuple[str, datetime]],
                  now: datetime) -> list[dict[str, object]]:
    clock = FakeClock(now)
    sim.set_clock(now)

    async def go() -> list[dict[str, object]]:
        async with running_guard(sim, tmp_path, RULES, clock, metrics_port=None,
                                 start=False) as (daemon, _):
            for trigger, market_time in swept:
                daemon.ctx.journal.start_sweep(market_time, trigger, market_time, False)
            async with recording() as events:
                await daemon.start()
            return events.named("schedule.missed")

    return asyncio.run(go())


def test_a_preclose_due_while_down_is_an_error_event(sim: Simulator, tmp_path: Path) -> None:
    events = missed_events(sim, tmp_path, [("poll", at(14, 0))], now=at(14, 40))
    assert [(e["job"], e["scheduled"], e["critical"]) for e in events] == [
        ("pre-close:pre-close", "2026-11-23T14:25:00+07:00", True)]


def test_no_event_when_the_preclose_ran(sim: Simulator, tmp_path: Path) -> None:
    swept = [("poll", at(14, 0)), ("pre-close:pre-close", at(14, 25))]
    assert missed_events(sim, tmp_path, swept, now=at(14, 40)) == []


def test_no_event_on_a_first_start_of_the_day(sim: Simulator, tmp_path: Path) -> None:
    assert missed_events(sim, tmp_path, [], now=at(14, 40)) == []


def test_no_event_within_the_grace_of_the_due_time(sim: Simulator, tmp_path: Path) -> None:
    """At 14:27 the pre-close sweep can still be run by the poll: not missed yet."""
    assert missed_events(sim, tmp_path, [("poll", at(14, 0))], now=at(14, 27)) == []
