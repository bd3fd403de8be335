"""No poll starts in the seconds before a critical job: the pre-close sweep must find the
request budget full and the sweep lock free at its second."""

from __future__ import annotations

import asyncio
from datetime import datetime
from pathlib import Path

import pytest
import structlog
from kit import ACCT, OTHER
from kit.ops import recording, write_rules

from guard.clock import EXCHANGE_TZ, FakeClock
from guard.schedule.scheduler import SchedulerDriver
from guard.service.daemon import Daemon
from guard.service.notify import Notifier
from guard.service.runtime import open_guard
from guard.simulator.control import Simulator

RULES = f"""
version: 1
accounts: ["{ACCT}", "{OTHER}"]
poll_every: 1s
rules:
  - name: pull
    before_close: 5m
"""


@pytest.mark.parametrize(("second", "skipped"), [(50, False), (56, False), (57, True),
                                                  (59, True)])
def test_a_poll_within_3s_of_the_pre_close_is_skipped(
        sim: Simulator, tmp_path: Path, second: int, skipped: bool) -> None:
    market = datetime(2026, 11, 23, 14, 24, second, tzinfo=EXCHANGE_TZ)

    async def scenario() -> tuple[object, list[dict[str, object]]]:
        path = write_rules(tmp_path, RULES)
        env = {**sim.env(), "SSI_GUARD_STATE_DIR": str(tmp_path / "state")}
        async with recording() as log, open_guard(path, env=env,
                                                  clock=FakeClock(market)) as ctx:
            daemon = Daemon(ctx, path, notifier=Notifier({}))
            await daemon.start()
            offset = market - datetime.now(EXCHANGE_TZ)
            daemon.driver = SchedulerDriver(daemon.fire, structlog.get_logger("test"),
                                            offset=offset)
            daemon.driver.start(daemon.jobs)
            try:
                [poll] = [j for j in daemon.jobs if j.job_id == "poll"]
                report = await daemon.fire(poll)
            finally:
                daemon.driver.shutdown()
                daemon.request_stop()
                await daemon.drain()
            return report, [e for e in log.seen if e.get("event") == "sweep.skipped"
                            and "is due" in str(e.get("reason"))]

    report, skips = asyncio.run(scenario())
    if skipped:
        assert report is None
        assert {s["reason"] for s in skips} == {
            "pre-close:pull is due: its request budget is kept full"}
    else:
        # (the driver's own polls may be skipped for the running one: not for the pre-close)
        assert report is not None and not skips
