"""``ssi-guard demo``: the real daemon, on the embedded simulator, through one trading day.

No credentials and no network: the simulator runs in-process on loopback with fresh keys, the
daemon reaches it through the real ``ssi_sdk`` over HTTP, and a virtual clock walks the day from
the open to the close, firing the same triggers APScheduler would. The shipped rules.yaml is
used as is, except ``dry_run``, which the demo turns off because nothing here is real money.
The day ends with the day's report (``guard.report``), in ``alerts.language``.
"""

from __future__ import annotations

import asyncio
import os
import tempfile
from collections.abc import Callable, MutableMapping
from dataclasses import dataclass
from datetime import date, datetime, time
from pathlib import Path
from typing import Any, TextIO

import structlog

from guard.clock import EXCHANGE_TZ, FakeClock
from guard.report.command import day_report
from guard.schedule.triggers import JobSpec
from guard.service.daemon import Daemon
from guard.service.runtime import open_guard
from guard.simulator.control import Simulator
from guard.simulator.scenario import DERIVATIVES_ACCOUNT, add_derivatives

__all__ = ["DEMO_DAY", "DemoView", "run_demo"]

DEMO_DAY = date(2026, 11, 23)  # a Monday on the shipped calendar
# The two equity accounts; the derivatives one (D) is opened by ``add_derivatives``, typed
# Derivative by get_account_info. 0001238 ends in 8 as well, but the broker says Cash.
ACCOUNTS = ("0001234", "0001238")


@dataclass(frozen=True)
class DayEvent:
    """Something the market does at a virtual instant: a new order, a fill."""

    at: time
    say: str
    act: Callable[[Simulator, dict[str, str]], None]


def _place(name: str, account: str, symbol: str, side: str, price: int, qty: int,
           crid: str = "") -> Callable[[Simulator, dict[str, str]], None]:
    def act(sim: Simulator, ids: dict[str, str]) -> None:
        ids[name] = sim.seed_order(account, symbol, side, price, qty, client_request_id=crid)
    return act


def _all(*acts: Callable[[Simulator, dict[str, str]], None]
         ) -> Callable[[Simulator, dict[str, str]], None]:
    def act(sim: Simulator, ids: dict[str, str]) -> None:
        for one in acts:
            one(sim, ids)
    return act


def _fill(name: str, qty: int | None) -> Callable[[Simulator, dict[str, str]], None]:
    def act(sim: Simulator, ids: dict[str, str]) -> None:
        sim.fill(ids[name], qty)
    return act


A, B = ACCOUNTS
D = DERIVATIVES_ACCOUNT
DAY_SCRIPT: tuple[DayEvent, ...] = (
    DayEvent(time(8, 55), "pre-open orders: SSI and FPT on HOSE, SHS on HNX, BSR on UPCoM, "
             "and a VCB order marked keep-", _all(
                 _place("ssi", A, "SSI", "B", 26_900, 1_000),
                 _place("fpt", A, "FPT", "S", 96_000, 300),
                 _place("shs", B, "SHS", "B", 14_000, 2_000),
                 _place("bsr", B, "BSR", "B", 21_000, 500),
                 _place("vcb", A, "VCB", "B", 90_500, 100, "keep-core-vcb"))),
    DayEvent(time(9, 2), "VN30F2612 sell 3 @ 1,362 in the derivatives account",
             _place("vn30f", D, "VN30F2612", "S", 1_362, 3)),
    DayEvent(time(9, 20), "HPG buy 1,000 @ 26,300 on HOSE",
             _place("hpg", A, "HPG", "B", 26_300, 1_000)),
    DayEvent(time(9, 27), "HPG fills 400 of 1,000", _fill("hpg", 400)),
    DayEvent(time(10, 5), "VNM buy 200 @ 61,800 and PVS sell 400 @ 33,500",
             _all(_place("vnm", A, "VNM", "B", 61_800, 200),
                  _place("pvs", B, "PVS", "S", 33_500, 400))),
    DayEvent(time(10, 9), "VNM fills completely", _fill("vnm", None)),
    DayEvent(time(11, 17), "MWG buy 300 @ 57,500 just before lunch",
             _place("mwg", A, "MWG", "B", 57_500, 300)),
    DayEvent(time(11, 28), "CEO buy 1,000 @ 18,400 on HNX: stale at 11:43, in the lunch break",
             _place("ceo", B, "CEO", "B", 18_400, 1_000)),
    DayEvent(time(13, 40), "SSI buy 500 @ 26,800", _place("ssi2", A, "SSI", "B", 26_800, 500)),
    DayEvent(time(14, 18), "FPT buy 100 @ 95,000: fresh, but it would rest into ATC",
             _place("fpt2", A, "FPT", "B", 95_000, 100)),
    DayEvent(time(14, 21), "41I1FC000 buy 2 @ 1,352 (a VN30 future, KRX code): fresh, but it "
             "would rest into DER's ATC", _place("krx", D, "41I1FC000", "B", 1_352, 2)),
    DayEvent(time(14, 46), "BSR buy 300 @ 21,100 on UPCoM, which trades until 15:00",
             _place("bsr2", B, "BSR", "B", 21_100, 300)),
)


def _money(value: Any) -> str:
    try:
        return f"{float(value):+,.0f}"
    except (TypeError, ValueError):
        return str(value)


class DemoView:
    """A structlog renderer that tells the day as a story a person can read.

    Routine events (empty sweeps, scheduling) are dropped; a held order is told once per
    reason, not on every poll.
    """

    def __init__(self, clock: FakeClock, out: TextIO) -> None:
        self.clock = clock
        self.out = out
        self._held: set[tuple[str, str]] = set()
        self.cancelled = 0
        self.released = 0.0
        self.margin = 0.0

    def say(self, text: str, tag: str = "") -> None:
        stamp = self.clock().strftime("%H:%M:%S")
        self.out.write(f"{stamp}  {tag:<9} {text}\n")
        self.out.flush()

    def __call__(self, logger: Any, name: str, event: MutableMapping[str, Any]) -> str:
        kind = str(event.get("event", ""))
        line = self._line(kind, event)
        if line is None:
            raise structlog.DropEvent
        tag, text = line
        return f"{self.clock().strftime('%H:%M:%S')}  {tag:<9} {text}"

    def _line(self, kind: str, e: MutableMapping[str, Any]) -> tuple[str, str] | None:
        who = f"{e.get('account', '')} {e.get('symbol', '')}".strip()
        if kind == "order.matched":
            return "MATCH", (f"{who} #{e.get('order_id')} {e.get('side')} {e.get('remaining')} "
                             f"@ {e.get('price')}: {e.get('rule')} ({e.get('reason')})")
        if kind == "order.held":
            key = (str(e.get("order_id")), str(e.get("reason")))
            if key in self._held:
                return None
            self._held.add(key)
            return "HELD", f"{who} #{e.get('order_id')}: {e.get('reason')}"
        if kind == "cancel.confirmed":
            self.cancelled += 1
            return "CONFIRMED", (f"{who} #{e.get('order_id')} {e.get('outcome')} "
                                 f"{e.get('cancelled_qty')} ({e.get('final_status')}, "
                                 f"{float(e.get('latency_s', 0)):.2f}s)")
        if kind == "cash.released" and (e.get("basis") == "derivative"
                                        or e.get("expected") in (None, "None")):
            # A derivatives account: margin released, with no expected figure to check.
            self.margin += float(e.get("withdrawable_delta", 0) or 0)
            return "CASH", (f"{e.get('account')} futures margin released "
                            f"{_money(e.get('withdrawable_delta'))} VND (derivative balance; "
                            "no expected figure)")
        if kind == "cash.released":
            if not float(e.get("expected", 0) or 0) and not float(
                    e.get("withdrawable_delta", 0) or 0):
                return None  # a sell releases no cash: nothing to tell
            self.released += float(e.get("withdrawable_delta", 0) or 0)
            return "CASH", (f"{e.get('account')} withdrawable {_money(e.get('withdrawable_delta'))}"
                            f" VND, expected {_money(e.get('expected'))}"
                            + ("  MISMATCH" if e.get("mismatch") else ""))
        if kind == "sweep.finished" and e.get("targets"):
            return "SWEEP", (f"{e.get('trigger')}: {e.get('result')}, {e.get('targets')} "
                             f"cancelled of {e.get('open_orders')} open, "
                             f"{float(e.get('duration_s', 0)):.2f}s")
        if kind == "market.closed":
            until = str(e.get("until"))
            same_day = until[:10] == self.clock().date().isoformat()
            when = until[11:19] if same_day else f"{until[:10]} {until[11:19]}"
            return "SHUT", f"no board accepts cancels until {when}"
        if kind == "daemon.ready":
            return "READY", (f"daemon {e.get('state')}, dry_run={e.get('dry_run')}, jobs: "
                             + ", ".join(e.get("jobs", [])))
        if str(e.get("level", "")) in ("warning", "error", "critical") or kind.endswith(
                ("failed", "missed", "tripped")):
            details = {k: v for k, v in e.items() if k not in ("event", "level", "timestamp",
                                                                "logger")}
            return str(e.get("level", "")).upper() or "NOTE", f"{kind} {details}"
        return None


async def _walk_day(daemon: Daemon, clock: FakeClock, sim: Simulator, view: DemoView,
                    end: datetime, ids: dict[str, str]) -> None:
    """Fire the daemon's jobs and the day's events in virtual time, in order."""
    day = clock().date()
    events = [(datetime.combine(day, ev.at, tzinfo=EXCHANGE_TZ), ev) for ev in DAY_SCRIPT]
    upcoming: dict[str, datetime | None] = {
        job.job_id: job.trigger.get_next_fire_time(None, clock()) for job in daemon.jobs}
    jobs = {job.job_id: job for job in daemon.jobs}
    while True:
        next_job = min(((t, not jobs[j].critical, j) for j, t in upcoming.items()
                        if t is not None), default=None)
        next_event = events[0][0] if events else None
        if next_event is not None and (next_job is None or next_event <= next_job[0]):
            if next_event > end:
                break
            clock.set(next_event)
            _, event = events.pop(0)
            view.say(event.say, "MARKET")
            event.act(sim, ids)
            continue
        if next_job is None or next_job[0] > end:
            break
        at, _, job_id = next_job
        clock.set(at)
        job: JobSpec = jobs[job_id]
        await daemon.fire(job)
        upcoming[job_id] = job.trigger.get_next_fire_time(at, at)


async def _demo(rules_path: Path, out: TextIO, state_dir: Path) -> int:
    clock = FakeClock(datetime.combine(DEMO_DAY, time(8, 50), tzinfo=EXCHANGE_TZ))
    view = DemoView(clock, out)
    from guard.record.log import configure_logging

    configure_logging(renderer_override=view, stream=out)
    # Unlimited rate on both sides: the virtual day runs ~1,000x faster than a real one.
    sim = Simulator(clock=clock, accounts=ACCOUNTS, rate_limit=0, cancel_delay=0.05)
    add_derivatives(sim)
    sim.start()
    try:
        env = {**sim.env(), "SSI_GUARD_STATE_DIR": str(state_dir)}
        out.write(f"ssi-guard demo: simulator on {sim.url}, rules {rules_path}, "
                  f"state {state_dir}\n")
        out.write(f"trading day {DEMO_DAY.isoformat()} (exchange time), played on a virtual "
                  "clock; dry_run is turned off because this is the simulator\n\n")
        ids: dict[str, str] = {}
        async with open_guard(rules_path, clock=clock, env=env, broker_rate_limit=0,
                              log=structlog.get_logger("guard")) as ctx:
            ctx.rules = ctx.rules.model_copy(update={"dry_run": False})
            daemon = Daemon(ctx, rules_path, log=structlog.get_logger("guard"))
            await daemon.start()
            await _walk_day(daemon, clock, sim, view,
                            datetime.combine(DEMO_DAY, time(15, 0), tzinfo=EXCHANGE_TZ), ids)
            reports = daemon.reports
            alerts = ctx.rules.alerts
            day_text = day_report(ctx.journal, DEMO_DAY, alerts.language if alerts else "en")
        failed = [o for r in reports for o in r.outcomes if not o.ok]
        untouched = sim.order(ids["vcb"])  # the keep- order
        out.write("\n")
        view.say(f"day over: {daemon.sweeps_run} sweeps, {view.cancelled} cancels confirmed, "
                 f"{len(failed)} failed, {view.released:,.0f} VND released and "
                 f"{view.margin:,.0f} VND of futures margin; the keep- order is "
                 f"still {untouched.status}", "DONE")
        out.write("\n" + day_text)
        out.write(f"\njournal: {state_dir / 'journal.sqlite3'} "
                  f"(SSI_GUARD_STATE_DIR={state_dir} ssi-guard history; ssi-guard report "
                  f"--day {DEMO_DAY.isoformat()})\n")
        return 0 if not failed and untouched.status == "QU" else 1
    finally:
        sim.stop()


def run_demo(rules_path: Path, out: TextIO, state_dir: Path | None = None) -> int:
    """Play the demo day; exits 0 when every cancel was confirmed and nothing protected moved."""
    if state_dir is None:
        state_dir = Path(tempfile.mkdtemp(prefix="ssi-guard-demo-"))
    state_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.chmod(state_dir, 0o700)
    return asyncio.run(_demo(rules_path, out, state_dir))

