"""The scheduler tells the daemon when a critical job (the pre-close) is due within a few
seconds, so that no poll starts then: the pre-close needs the request budget full, and the
sweep lock free, at its second."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta

import structlog

from guard.clock import EXCHANGE_TZ
from guard.config.loader import load_rules_text
from guard.market.holidays import build_calendar
from guard.schedule.scheduler import SchedulerDriver
from guard.schedule.triggers import JobSpec, plan_jobs

RULES = """
version: 1
accounts: ["0001234"]
rules:
  - name: pull
    before_close: 5m
    match: {boards: [HOSE]}
"""


def test_a_critical_job_due_within_the_window_is_named_and_a_poll_is_not() -> None:
    rules = load_rules_text(RULES, "rules.yaml")
    jobs = plan_jobs(rules, build_calendar())

    async def scenario(market: datetime) -> list[str | None]:
        async def fire(job: JobSpec) -> None:
            return None

        offset = market - datetime.now(EXCHANGE_TZ)  # a rehearsal clock at ``market``
        driver = SchedulerDriver(fire, structlog.get_logger("test"), offset=offset)
        driver.start(jobs)
        try:
            now = datetime.now(EXCHANGE_TZ) + offset
            return [driver.critical_due(now, timedelta(seconds=s)) for s in (3, 1)]
        finally:
            driver.shutdown()

    before = datetime(2026, 11, 23, 14, 24, 58, tzinfo=EXCHANGE_TZ)
    assert asyncio.run(scenario(before)) == ["pre-close:pull", None]
    morning = datetime(2026, 11, 23, 10, 0, 0, tzinfo=EXCHANGE_TZ)  # polls only, soon
    assert asyncio.run(scenario(morning)) == [None, None]
