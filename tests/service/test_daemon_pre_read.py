"""The daemon's pre-read before a critical job, in-process, with its real APScheduler driver,
through the real ``ssi_sdk`` to the simulator, on a market clock running in real time.

Every book is read once, ``PRE_READ_LEAD`` before the pre-close second and finished before
the quiet second that lets the budget refill; at the second the sweep starts the first
account's cancels before the last accounts' books are even asked for. Times are read off
the simulator's own request records.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import datetime, timedelta
from pathlib import Path

from kit import BATCH, BOOK, SINGLE
from kit.clocks import RunningClock
from kit.ops import Events, recording, until, write_rules

from guard.clock import EXCHANGE_TZ, system_clock
from guard.schedule.scheduler import SchedulerDriver
from guard.service.daemon import PRE_READ_LEAD, PRE_READ_STOP, Daemon
from guard.service.notify import Notifier
from guard.service.runtime import open_guard
from guard.simulator.control import Simulator
from guard.simulator.faults import Fault

ACCOUNTS = tuple(f"002{i:02d}01" for i in range(12))
SECOND = datetime(2026, 11, 23, 14, 25, 0, tzinfo=EXCHANGE_TZ)
RULES = f"""
version: 1
accounts: [{", ".join(f'"{a}"' for a in ACCOUNTS)}]
dry_run: false
poll_every: 10m
limits: {{max_cancels_per_sweep: 200, confirm_timeout: 5s}}
rules:
  - name: pull-before-atc
    before_close: 5m
    match: {{boards: [HOSE], symbols: ["FPT"]}}
"""


@asynccontextmanager
async def daemon_pre_reading(sim: Simulator, clock: RunningClock,
                             tmp_path: Path) -> AsyncIterator[tuple[Daemon, Events]]:
    """The daemon on ``sim`` with its real scheduler driver and pre-read loop, as ``ssi-guard
    run`` starts them; stopped, drained and shut down on the way out."""
    path = write_rules(tmp_path, RULES)
    env = {**sim.env(), "SSI_GUARD_STATE_DIR": str(tmp_path / "state")}
    async with recording() as log, open_guard(path, env=env, clock=clock) as ctx:
        daemon = Daemon(ctx, path, notifier=Notifier({}))
        await daemon.start()
        daemon.driver = SchedulerDriver(daemon.fire, daemon.log,
                                        offset=clock() - system_clock())
        daemon.driver.start(daemon.jobs)
        loop = asyncio.create_task(daemon.pre_read_loop())
        try:
            yield daemon, log
        finally:
            daemon.request_stop()
            await asyncio.wait_for(loop, 5)
            await daemon.drain()
            daemon.driver.shutdown()


def test_the_daemon_reads_every_book_before_the_second_and_starts_cancelling_at_once(
        tmp_path: Path) -> None:
    clock = RunningClock(SECOND - timedelta(seconds=11))
    with Simulator(clock=clock, key_bits=1024, cancel_delay=0.05,
                   accounts=ACCOUNTS) as sim:
        opened = [sim.seed_order(a, "FPT", "B", 95_000, 100, age=timedelta(minutes=2))
                  for a in ACCOUNTS]
        late: list[str] = []

        async def scenario() -> None:
            async with daemon_pre_reading(sim, clock, tmp_path) as (_daemon, log):
                await until(lambda: bool(log.named("book.pre_read")), 10)
                # An order placed after the pre-read, a second before the second.
                await until(lambda: clock() >= SECOND - timedelta(seconds=1), 10)
                late.append(sim.seed_order(ACCOUNTS[-1], "FPT", "B", 95_000, 100))
                await until(lambda: all(sim.order(o).status == "CL"
                                        for o in opened + late), 15)
                # Once per fire time: still one pre-read.
                assert len(log.named("book.pre_read")) == 1
            [pre] = log.named("book.pre_read")
            assert pre["accounts"] == pre["of"] == 12

        asyncio.run(scenario())
        reqs = sorted(sim.requests, key=lambda r: r.at)
        books = [r for r in reqs if r.path == BOOK]
        deletes = [r for r in reqs if r.method == "DELETE" and r.path in (BATCH, SINGLE)]
        second = next(r.at for r in reqs if clock.at(r.at) >= SECOND)
        # (The daemon's first poll, at start, read every book before the lead.)
        pre_reads = [r for r in books
                     if SECOND - PRE_READ_LEAD <= clock.at(r.at) < SECOND]
        at_second = [r for r in books if r.at >= second]
        # The pre-read: every account once, and done before second - STOP.
        assert sorted(r.query["accountNo"] for r in pre_reads) == sorted(ACCOUNTS)
        assert all(clock.at(r.answered_at or 0) <= SECOND - PRE_READ_STOP for r in pre_reads)
        # Nothing in the last second before it: the budget is full at the second.
        assert not [r for r in reqs if SECOND - timedelta(seconds=1) <= clock.at(r.at) < SECOND]
        # At the second: the first DELETE leaves before the last books are asked for, within
        # 1.0 s of the second by the simulator's clock, and the late order is cancelled.
        first = deletes[0].at
        assert clock.at(first) - SECOND <= timedelta(seconds=1.0), clock.at(first) - SECOND
        assert any(r.at > first for r in at_second)
        assert sim.order(late[0]).status == "CL"


def test_a_pre_read_too_slow_for_one_account_leaves_it_unbounded_and_the_sweep_waits_for_it(
        tmp_path: Path) -> None:
    # Started 20 s before the second: the start poll's reads are too old (15 s) to count.
    clock = RunningClock(SECOND - timedelta(seconds=20))
    slow = ACCOUNTS[-1]
    with Simulator(clock=clock, key_bits=1024, cancel_delay=0.05,
                   accounts=ACCOUNTS) as sim:
        opened = [sim.seed_order(a, "FPT", "B", 95_000, 100, age=timedelta(minutes=2))
                  for a in ACCOUNTS]

        async def scenario() -> None:
            async with daemon_pre_reading(sim, clock, tmp_path) as (daemon, log):
                # The polls are over; the next read of the slow account's book (the
                # pre-read's, at second - 8 s) takes 7 s.
                await until(lambda: clock() >= SECOND - timedelta(seconds=9), 15)
                assert not daemon._sweep_lock.locked()
                sim.inject(Fault("latency", "GET", BOOK, seconds=7.0, account=slow))
                await until(lambda: all(sim.order(o).status == "CL" for o in opened), 30)
            assert log.named("book.pre_read_slow") and not log.named("book.pre_read")

        asyncio.run(scenario())
        reqs = sorted(sim.requests, key=lambda r: r.at)
        second = next(r.at for r in reqs if clock.at(r.at) >= SECOND)
        first = min(r.at for r in reqs if r.method == "DELETE" and r.path in (BATCH, SINGLE))
        fresh_slow = [r for r in reqs if r.path == BOOK and r.at >= second
                      and r.query["accountNo"] == slow]
        # No estimate for it: nothing started before its fresh book was read.
        assert fresh_slow and fresh_slow[0].answered_at is not None
        assert fresh_slow[0].answered_at <= first


def test_a_daemon_started_inside_the_lead_still_starts_its_pre_close_early(
        tmp_path: Path) -> None:
    """Started 5 s before the second (inside the 8 s lead): the pre-read starts at once,
    beside the first poll, and may be cut off 2 s before the second; the poll's own reads
    (under 15 s old at the second) count too. Either way the pre-close does not wait for
    every book: its first DELETE leaves before the last account's book is asked for."""
    clock = RunningClock(SECOND - timedelta(seconds=5))
    with Simulator(clock=clock, key_bits=1024, cancel_delay=0.05,
                   accounts=ACCOUNTS) as sim:
        opened = [sim.seed_order(a, "FPT", "B", 95_000, 100, age=timedelta(minutes=2))
                  for a in ACCOUNTS]

        async def scenario() -> None:
            async with daemon_pre_reading(sim, clock, tmp_path) as (_daemon, log):
                await until(lambda: all(sim.order(o).status == "CL" for o in opened), 20)
            assert log.named("book.pre_read") or log.named("book.pre_read_slow")

        asyncio.run(scenario())
        reqs = sorted(sim.requests, key=lambda r: r.at)
        second = next(r.at for r in reqs if clock.at(r.at) >= SECOND)
        first = min(r.at for r in reqs if r.method == "DELETE" and r.path in (BATCH, SINGLE))
        assert clock.at(first) - SECOND <= timedelta(seconds=1.0)
        last_book = [r for r in reqs if r.path == BOOK and r.at >= second
                     and r.query["accountNo"] == ACCOUNTS[-1]]
        assert last_book and last_book[0].at > first
