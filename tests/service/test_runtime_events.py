"""open_guard journals the report's events for a guard that holds the state lock: a real
daemon's breaker trip and cash release land in the events table on the market day, and
nothing is recorded once the guard is closed."""

from __future__ import annotations

import asyncio
from decimal import Decimal
from pathlib import Path

import structlog
from kit import ACCT, MONDAY_10AM, OTHER, STALE
from kit.ops import job, rules_yaml, running_guard

from guard.clock import FakeClock
from guard.record.journal import Journal
from guard.simulator.control import Simulator


def test_a_daemons_breaker_trip_and_cash_release_are_journaled(
        sim: Simulator, market_clock: FakeClock, tmp_path: Path) -> None:
    sim.seed_order(ACCT, "SSI", "B", 27_000, 1_000, age=STALE)
    sim.seed_order(OTHER, "HPG", "B", 26_400, 500, age=STALE)

    async def main() -> None:
        async with running_guard(sim, tmp_path, rules_yaml(max_cancels=1), market_clock,
                                 metrics_port=None) as (daemon, _):
            blocked = await daemon.fire(job(daemon))
            assert blocked is not None and blocked.result == "blocked"
            daemon.ctx.rules = daemon.ctx.rules.model_copy(update={"limits": daemon.ctx.rules
                                                           .limits.model_copy(update={
                                                               "max_cancels_per_sweep": 5})})
            done = await daemon.fire(job(daemon))
            assert done is not None and done.result == "ok"
        # Closed: an event now is not recorded (and the closed journal raises nothing).
        structlog.get_logger("guard").error("breaker.tripped", matches=9, limit=1)

    asyncio.run(main())
    j = Journal(tmp_path / "state" / "journal.sqlite3", read_only=True)
    try:
        events = j.events_on(MONDAY_10AM.date())
    finally:
        j.close()
    assert [(e.kind, e.account) for e in events] == [
        ("breaker.tripped", None), ("cash.released", ACCT), ("cash.released", OTHER)]
    assert events[0].data["matches"] == 2 and events[0].data["limit"] == 1
    assert [Decimal(e.data["withdrawable_delta"]) for e in events[1:]] == [27_000_000,
                                                                         13_200_000]
    assert {e.market_time for e in events} == {MONDAY_10AM}
