"""The dead-man switch in a running daemon, in-process, through the real ``ssi_sdk`` over
loopback HTTP to the simulator: the heartbeat loop, its sweeps, and what reaches the broker.

Heartbeats are real files whose mtimes are set with ``os.utime``; staleness is judged on the
real wall clock. Latency is measured on the simulator's own request records (monotonic
``at``), with the wall instant ``mtime + stale_after`` mapped onto the monotonic clock.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from kit import ACCT, BATCH, OTHER, SINGLE
from kit.clocks import RunningClock, touch
from kit.ops import Events, recording, until, write_rules

from guard.clock import EXCHANGE_TZ, Clock, FakeClock
from guard.service.daemon import Daemon
from guard.service.health import read_status
from guard.service.notify import Notifier
from guard.service.runtime import open_guard
from guard.simulator.control import Simulator

RECENT = timedelta(minutes=1)  # young orders: no age rule would touch them


def rules_text(hb: Path, *, stale_after: str = "2s", dry_run: bool = False,
               boards: str = "", heartbeat: bool = True) -> str:
    text = f"""
version: 1
accounts: ["{ACCT}", "{OTHER}"]
dry_run: {"true" if dry_run else "false"}
poll_every: 30s
limits:
  max_cancels_per_sweep: 50
  confirm_timeout: 5s
protect:
  client_request_id_prefixes: ["keep-"]
rules:
  - name: stale
    max_age: 15m
"""
    if heartbeat:
        text += f"""  - name: strategy-a-alive
    heartbeat:
      file: {hb}
      stale_after: {stale_after}
    match:
      client_request_ids: ["sa-*", "keep-sa-*"]
{boards}"""
    return text


class WallToMono:
    """Maps a wall instant (``time.time``) onto ``time.monotonic``, where the simulator
    stamps requests."""

    def __init__(self) -> None:
        self.wall0, self.mono0 = time.time(), time.monotonic()

    def mono(self, wall: float) -> float:
        return self.mono0 + (wall - self.wall0)


def deletes(sim: Simulator) -> list[Any]:
    return sorted(sim.requests_to("DELETE", BATCH) + sim.requests_to("DELETE", SINGLE),
                  key=lambda r: r.at)


@asynccontextmanager
async def guard(sim: Simulator, tmp_path: Path, rules: str, clock: Clock,
                **opts: Any) -> AsyncIterator[tuple[Daemon, Events]]:
    """open_guard -> Daemon -> start() -> heartbeat_loop, in this event loop; stopped and
    drained on the way out. Every event is recorded with its bound context."""
    path = write_rules(tmp_path, rules)
    env = {**sim.env(), "SSI_GUARD_STATE_DIR": str(tmp_path / "state")}
    async with recording() as log, open_guard(path, env=env, clock=clock) as ctx:
        daemon = Daemon(ctx, path, notifier=Notifier({}), **opts)
        await daemon.start()
        loop = asyncio.create_task(daemon.heartbeat_loop())
        try:
            yield daemon, log
        finally:
            daemon.request_stop()
            await asyncio.wait_for(loop, 15)
            await daemon.drain()


def test_fresh_then_stale_then_resumed(sim: Simulator, tmp_path: Path) -> None:
    """(a) no cancel while fresh (past the grace); (b) the first DELETE <= 1.0 s after
    mtime + stale_after; (c) only matched, unprotected orders; orders placed while stale are
    cancelled too; (e) a touch stops it and logs heartbeat.resumed."""
    hb = tmp_path / "hb"
    ids = {
        "sa-1": sim.seed_order(ACCT, "SSI", age=RECENT, client_request_id="sa-1"),
        "sa-2": sim.seed_order(OTHER, "SHS", "B", 14_000, age=RECENT, client_request_id="sa-2"),
        "sb-1": sim.seed_order(ACCT, "FPT", "B", 95_000, age=RECENT, client_request_id="sb-1"),
        "none": sim.seed_order(ACCT, "VNM", "B", 62_000, age=RECENT),
        "keep": sim.seed_order(ACCT, "HPG", "B", 26_000, age=RECENT,
                               client_request_id="keep-sa-3"),
    }
    clocks = WallToMono()

    async def scenario() -> None:
        async with guard(sim, tmp_path, rules_text(hb), sim.clock) as (_daemon, log):
            # (a) Touched every 0.25 s for 3.5 s, past the 2 s grace: nothing happens.
            end = time.time() + 3.5
            while time.time() < end:
                touch(hb, time.time())
                await asyncio.sleep(0.25)
            assert deletes(sim) == [] and log.named("heartbeat.lost") == []
            # The strategy dies: its last touch is the mtime set here.
            mtime = touch(hb, time.time())
            stale_at = mtime + 2.0
            await until(lambda: bool(deletes(sim)), 5)
            first = deletes(sim)[0].at
            latency = first - clocks.mono(stale_at)
            print(f"first DELETE {latency:+.3f}s after mtime+stale_after")
            assert 0.0 <= latency <= 1.0, latency
            await until(lambda: all(sim.order(ids[k]).status == "CL" for k in ("sa-1", "sa-2")))
            [lost] = log.named("heartbeat.lost")
            assert lost["rule"] == "strategy-a-alive" and lost["file"] == str(hb)
            assert 1.9 <= lost["age_s"] < 3.0
            # (c) Only matched orders; the protected one is held and logged as such.
            assert {k: sim.order(i).status for k, i in ids.items()} == {
                "sa-1": "CL", "sa-2": "CL", "sb-1": "QU", "none": "QU", "keep": "QU"}
            held = [e for e in log.named("order.held") if e.get("hold") == "protected"]
            assert held and all("keep-" in e["reason"] for e in held)
            # `ssi-guard status` names the stale rule while it is stale (status.json).
            stale = read_status(tmp_path / "state")
            assert stale is not None and list(stale["stale_heartbeats"]) == ["strategy-a-alive"]
            # Placed while still stale: cancelled by the re-sweep.
            late = sim.seed_order(ACCT, "SSI", age=timedelta(0), client_request_id="sa-9")
            await until(lambda: sim.order(late).status == "CL", 6)
            # (e) Touched again: resumed, and an order placed now stays.
            touch(hb, time.time())
            await until(lambda: bool(log.named("heartbeat.resumed")), 2)
            [resumed] = log.named("heartbeat.resumed")
            assert resumed["rule"] == "strategy-a-alive" and resumed["lost_for_s"] > 0
            fresh = read_status(tmp_path / "state")
            assert fresh is not None and fresh["stale_heartbeats"] == {}
            sent = len(deletes(sim))
            after = sim.seed_order(ACCT, "SSI", age=timedelta(0), client_request_id="sa-10")
            for _ in range(12):  # 3 s: past a re-sweep interval, touched all along
                touch(hb, time.time())
                await asyncio.sleep(0.25)
            assert len(deletes(sim)) == sent and sim.order(after).status == "QU"
            assert len(log.named("heartbeat.lost")) == 1
            # No scheduler runs here: every sweep was the heartbeat loop's (the first, and
            # the re-sweeps while stale).
            triggers = [e["trigger"] for e in log.named("sweep.started")]
            assert len(triggers) >= 2 and set(triggers) == {"heartbeat:strategy-a-alive"}

    asyncio.run(scenario())


def test_missing_file_is_stale_after_the_grace_from_start(sim: Simulator,
                                                          tmp_path: Path) -> None:
    """(f) + (g): no heartbeat file at all. Nothing is judged for stale_after after the
    start; then the rule is stale at once and its orders are cancelled."""
    hb = tmp_path / "never"
    order = sim.seed_order(ACCT, "SSI", age=RECENT, client_request_id="sa-1")
    clocks = WallToMono()

    async def scenario() -> None:
        t0 = time.time()
        async with guard(sim, tmp_path, rules_text(hb), sim.clock) as (_daemon, log):
            await until(lambda: bool(deletes(sim)), 6)
            first = deletes(sim)[0].at
            # The grace (2 s) began when the daemon was made, after t0 and before the DELETE.
            assert first >= clocks.mono(t0 + 2.0)
            assert first - clocks.mono(t0 + 2.0) <= 1.5
            await until(lambda: sim.order(order).status == "CL")
            [lost] = log.named("heartbeat.lost")
            assert lost["age_s"] is None
            matched = [e for e in log.named("order.matched") if e.get("order_id") == order]
            assert matched and matched[0]["reason"] == f"heartbeat {hb} missing (stale_after 2s)"

    asyncio.run(scenario())


def test_dry_run_decides_and_logs_but_sends_nothing(sim: Simulator, tmp_path: Path) -> None:
    hb = tmp_path / "never"
    order = sim.seed_order(ACCT, "SSI", age=RECENT, client_request_id="sa-1")

    async def scenario() -> None:
        async with guard(sim, tmp_path, rules_text(hb, stale_after="1s", dry_run=True),
                         sim.clock) as (_daemon, log):
            await until(lambda: any(e.get("order_id") == order
                                    for e in log.named("order.matched")), 5)
            await until(lambda: any(e.get("result") == "dry_run"
                                    for e in log.named("sweep.finished")), 5)
            assert deletes(sim) == [] and sim.order(order).status == "QU"

    asyncio.run(scenario())


def test_the_pause_file_stops_a_stale_heartbeat_too(sim: Simulator, tmp_path: Path) -> None:
    hb = tmp_path / "never"
    order = sim.seed_order(ACCT, "SSI", age=RECENT, client_request_id="sa-1")
    (tmp_path / "state").mkdir(mode=0o700)
    (tmp_path / "state" / "paused").touch()

    async def scenario() -> None:
        async with guard(sim, tmp_path, rules_text(hb, stale_after="1s"),
                         sim.clock) as (_daemon, log):
            await until(lambda: any(e.get("reason") == "paused by the pause file"
                                    for e in log.named("cancel.skipped")), 5)
            assert deletes(sim) == [] and sim.order(order).status == "QU"

    asyncio.run(scenario())


def test_the_breaker_stops_a_stale_heartbeat_that_selects_too_much(
        sim: Simulator, tmp_path: Path) -> None:
    hb = tmp_path / "never"
    orders = [sim.seed_order(ACCT, "SSI", age=RECENT, client_request_id=f"sa-{i}")
              for i in range(3)]
    rules = rules_text(hb, stale_after="1s").replace("max_cancels_per_sweep: 50",
                                                     "max_cancels_per_sweep: 2")

    async def scenario() -> None:
        async with guard(sim, tmp_path, rules, sim.clock) as (_daemon, log):
            await until(lambda: bool(log.named("breaker.tripped")), 5)
            assert deletes(sim) == []
            assert all(sim.order(o).status == "QU" for o in orders)

    asyncio.run(scenario())


def test_re_sweeps_back_off_while_they_find_nothing_and_catch_a_new_order(
        sim: Simulator, tmp_path: Path) -> None:
    """A heartbeat stale all day with nothing to cancel must not sweep every 2 s: the
    interval doubles while re-sweeps find nothing (up to poll_every), and an order placed
    meanwhile is still cancelled, after which the interval is short again."""
    hb = tmp_path / "never"

    def heartbeat_sweeps(log: Any) -> list[dict[str, Any]]:
        return [e for e in log.named("sweep.started")
                if str(e.get("trigger", "")).startswith("heartbeat:")]

    async def scenario() -> None:
        async with guard(sim, tmp_path, rules_text(hb, stale_after="1s"), sim.clock,
                         heartbeat_resweep_s=0.2, heartbeat_tick_s=0.05) as (daemon, log):
            await until(lambda: bool(heartbeat_sweeps(log)), 5)
            await asyncio.sleep(3.0)
            # 0.2, 0.4, 0.8, 1.6 s apart: about 5 sweeps in 3 s, not 15
            assert 3 <= len(heartbeat_sweeps(log)) <= 6, len(heartbeat_sweeps(log))
            assert daemon._heartbeat_every >= 1.6
            order = sim.seed_order(ACCT, "SSI", age=RECENT, client_request_id="sa-1")
            await until(lambda: sim.order(order).status == "CL", 10)
            await until(lambda: daemon._heartbeat_every == 0.2, 5)

    asyncio.run(scenario())


def test_re_sweeps_back_off_in_a_dry_run_too(sim: Simulator, tmp_path: Path) -> None:
    """A dry run (the shipped default) selects orders but sends nothing: its re-sweeps back
    off like ones that found nothing (a second review's case)."""
    hb = tmp_path / "never"
    sim.seed_order(ACCT, "SSI", age=RECENT, client_request_id="sa-1")

    async def scenario() -> None:
        async with guard(sim, tmp_path, rules_text(hb, stale_after="1s", dry_run=True),
                         sim.clock, heartbeat_resweep_s=0.2,
                         heartbeat_tick_s=0.05) as (daemon, log):
            await until(lambda: bool(log.named("sweep.finished")), 5)
            await asyncio.sleep(3.0)
            started = [e for e in log.named("sweep.started")
                       if str(e.get("trigger", "")).startswith("heartbeat:")]
            assert 3 <= len(started) <= 6, len(started)
            assert daemon._heartbeat_every >= 1.6

    asyncio.run(scenario())


def test_stale_in_lunch_is_held_then_cancelled_at_13_00(tmp_path: Path) -> None:
    """(d) The heartbeat goes stale inside the lunch break: nothing is sent, the hold is
    logged; the order is cancelled at 13:00:00, when the loop wakes by the calendar (its tick
    is 5 s here, so only the calendar can explain a DELETE within half a second of 13:00)."""
    clock = RunningClock(datetime(2026, 11, 23, 12, 59, 56, tzinfo=EXCHANGE_TZ))
    one_pm = datetime(2026, 11, 23, 13, 0, tzinfo=EXCHANGE_TZ)
    hb = tmp_path / "never"
    with Simulator(clock=clock, key_bits=1024, cancel_delay=0.05,
                   accounts=(ACCT, OTHER)) as sim:
        order = sim.seed_order(ACCT, "SSI", age=RECENT, client_request_id="sa-1")

        async def scenario() -> None:
            async with guard(sim, tmp_path, rules_text(hb, stale_after="1s"), clock,
                             heartbeat_tick_s=5.0) as (_daemon, log):
                await until(lambda: bool(log.named("heartbeat.lost")), 3)
                await until(lambda: any(e.get("order_id") == order
                                        for e in log.named("order.held")), 3)
                held = [e for e in log.named("order.held") if e.get("order_id") == order]
                assert held[0]["hold"] == "banned_window" and "lunch" in held[0]["reason"]
                assert clock() < one_pm and deletes(sim) == []
                await until(lambda: sim.order(order).status == "CL", 8)
                first = clock.at(deletes(sim)[0].at)
                print(f"first DELETE at market {first.time()}")
                assert one_pm <= first <= one_pm + timedelta(seconds=0.5), first

        asyncio.run(scenario())


def test_stale_in_hose_ato_is_cancelled_when_continuous_trading_starts(tmp_path: Path) -> None:
    """(d) A HOSE-only heartbeat rule stale in the ATO (09:00-09:15): held, then cancelled at
    09:15 (the market clock jumps; the loop sees it within a tick)."""
    clock = FakeClock(datetime(2026, 11, 23, 9, 5, tzinfo=EXCHANGE_TZ))
    hb = tmp_path / "never"
    with Simulator(clock=clock, key_bits=1024, cancel_delay=0.05,
                   accounts=(ACCT, OTHER)) as sim:
        hose = sim.seed_order(ACCT, "SSI", age=RECENT, client_request_id="sa-1")
        boards = "      boards: [HOSE]\n"

        async def scenario() -> None:
            async with guard(sim, tmp_path, rules_text(hb, stale_after="1s", boards=boards),
                             clock) as (_daemon, log):
                await until(lambda: any(e.get("order_id") == hose
                                        for e in log.named("order.held")), 4)
                await asyncio.sleep(2.5)  # ATO: no re-sweep, nothing sent
                assert deletes(sim) == []
                held = [e for e in log.named("order.held") if e.get("order_id") == hose]
                assert len(held) == 1 and "ATO" in held[0]["reason"]
                clock.set(datetime(2026, 11, 23, 9, 15, tzinfo=EXCHANGE_TZ))
                await until(lambda: sim.order(hose).status == "CL", 4)

        asyncio.run(scenario())


def test_reload_adds_a_heartbeat_rule_with_its_grace_from_the_reload(sim: Simulator,
                                                                     tmp_path: Path) -> None:
    hb = tmp_path / "never"
    order = sim.seed_order(ACCT, "SSI", age=RECENT, client_request_id="sa-1")
    clocks = WallToMono()

    async def scenario() -> None:
        async with guard(sim, tmp_path, rules_text(hb, heartbeat=False),
                         sim.clock) as (daemon, log):
            await asyncio.sleep(1.5)
            write_rules(tmp_path, rules_text(hb, stale_after="1s"))
            reloaded = time.time()
            assert daemon.reload()
            await until(lambda: bool(deletes(sim)), 4)
            assert deletes(sim)[0].at >= clocks.mono(reloaded + 1.0)
            await until(lambda: sim.order(order).status == "CL")
            # Reloaded without it: the loss ends, and nothing more is swept for it.
            write_rules(tmp_path, rules_text(hb, heartbeat=False))
            assert daemon.reload()
            assert log.named("heartbeat.resumed")[-1]["reason"] == "rule removed by reload"

    asyncio.run(scenario())


def test_the_loop_wakes_at_the_staleness_instant_not_at_its_tick(sim: Simulator,
                                                                 tmp_path: Path) -> None:
    """With a 5 s tick, only the exact wake-up at ``mtime + stale_after`` can get the first
    DELETE out within 1.0 s of it (a tick-driven loop would be up to 5 s late)."""
    hb = tmp_path / "hb"
    order = sim.seed_order(ACCT, "SSI", age=RECENT, client_request_id="sa-1")
    clocks = WallToMono()
    touch(hb, time.time())

    async def scenario() -> None:
        async with guard(sim, tmp_path, rules_text(hb, stale_after="1s"), sim.clock,
                         heartbeat_tick_s=5.0) as (_daemon, _log):
            for _ in range(6):  # 1.5 s, past the grace
                touch(hb, time.time())
                await asyncio.sleep(0.25)
            mtime = touch(hb, time.time())
            await until(lambda: bool(deletes(sim)), 4)
            latency = deletes(sim)[0].at - clocks.mono(mtime + 1.0)
            print(f"first DELETE {latency:+.3f}s after mtime+stale_after (5 s tick)")
            assert 0.0 <= latency <= 1.0, latency
            await until(lambda: sim.order(order).status == "CL")

    asyncio.run(scenario())
