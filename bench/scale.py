"""Scale: big books and many accounts under one rate limit, and the pre-close sweep's start.

Three cases, each against its own fresh simulator (10 requests/s per API key, 20 ms added to
every request, cancels WC for ``CANCEL_DELAY`` s, 2048-bit keys unless ``--key-bits``):

- 3 accounts x 2,300 orders (3 pages each);
- 20 accounts x 300 orders;
- 1 account x 10,000 orders.

Every account's book holds 200 stale open buy LOs (aged 20 min), 100 fresh open ones (20 of
them FPT) and, past 300, orders already filled. The simulator runs in this process; the guard
runs in a child process (its pure-Python RSA signing does not share a GIL with the server), on
the real ``ssi_sdk``, with a journal on disk, as in production.

Two figures per case:

1. **Sweep**: a poll sweep (``max_age: 15m``) that cancels every stale order, from the start
   of ``run_sweep`` until the last confirmation read, as a ratio of the floor
   ``(2 x book pages + cancel batches) / rate + CANCEL_DELAY``: each book read once to decide
   and once to confirm, each batch of 20 once, at the rate limit, plus the time a cancel
   stays WC. Book pages are ``ceil(orders / 1000)`` per account (the guard also reads the
   short, here empty, page that ends a book of a multiple of 1,000: that request is not in
   the floor). Target <= 1.3x.
2. **Pre-close**: a ``before_close: 5m`` rule (FPT orders, HOSE) fired by the guard's own
   scheduler at 14:25:00 market time on a clock that runs in real time, through the daemon's
   own ``fire`` and its pre-read loop (every book read ``PRE_READ_LEAD`` before the second);
   the figure is the first DELETE's arrival at the simulator after that second, by the
   simulator's clock. Target <= 1.0 s. One FPT order per account is placed 0.5 s before the
   second, after the pre-read; the figure counts only if the sweep cancels it.

The guard is warm, as a running daemon is: logged in, the day's master data and account
types read, each book read once before (so it knows how many pages to ask for at once); the
pre-read ends seconds before the second, and no request goes in the second before it (the
budget's burst is full, as the daemon keeps it before a critical job). Request counts are
the simulator's, per figure, from the second on.

Exit status: 1 if a target is missed or any stale order is left open or cancelled twice.
"""

from __future__ import annotations

import argparse
import asyncio
import concurrent.futures
import math
import multiprocessing
import os
import sys
import tempfile
import threading
import time
from collections import Counter
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

RATE = 10  # server limit, requests/s per API key
LATENCY_S = 0.02  # added to every request
CANCEL_DELAY = 0.2  # real seconds a cancel stays WC: the floor's one confirmation delay
BATCH = 20
PAGE = 1000
STALE, FRESH, FPT = 200, 100, 20  # open orders per account: stale, fresh (of which FPT)
CASES = ((3, 2_300), (20, 300), (1, 10_000))
SWEEP_AT = (2026, 11, 23, 10, 0, 0)  # Monday, continuous trading
SECOND = (2026, 11, 23, 14, 25, 0)  # the pre-close second: HOSE's ATC starts at 14:30
LEAD_S = 12.0  # the pre-close clock starts this long before its second (warm-up, then the
# daemon's pre-read at PRE_READ_LEAD)
LATE_S = 0.5  # an order is placed this long before the second
TERMINAL = frozenset({"FF", "CL", "RJ", "EX", "FFPC"})
HOSE_OTHERS = ("SSI", "VNM", "HPG", "MWG", "VCB")

RULES_SWEEP = """\
version: 1
accounts: [{accounts}]
dry_run: false
limits: {{max_cancels_per_sweep: 10000, confirm_timeout: 60s}}
rules:
  - name: stale
    max_age: 15m
"""
RULES_PRECLOSE = """\
version: 1
accounts: [{accounts}]
dry_run: false
limits: {{max_cancels_per_sweep: 10000, confirm_timeout: 60s}}
rules:
  - name: pre-close
    before_close: 5m
    match: {{symbols: ["FPT"], boards: [HOSE]}}
"""


def _market(parts: tuple[int, ...]) -> datetime:
    from guard.clock import EXCHANGE_TZ

    return datetime(*parts, tzinfo=EXCHANGE_TZ)


class ShiftedClock:
    """Market time = wall time + ``offset``: the simulator's and the guard's clock alike."""

    def __init__(self, offset: timedelta) -> None:
        self.offset = offset

    def __call__(self) -> datetime:
        from guard.clock import system_clock

        return system_clock() + self.offset


def _offset_for(market: datetime) -> timedelta:
    from guard.clock import system_clock

    return market - system_clock()


# ---- the guard (child process) --------------------------------------------------------------


async def _guard(env: dict[str, str], accounts: list[str], phase: str,
                 offset_s: float, state: str) -> dict[str, Any]:
    import structlog
    from timed import timed_broker

    from guard.broker.tokens import TokenCache
    from guard.config.loader import load_rules_text
    from guard.market.holidays import build_calendar
    from guard.record.journal import Journal
    from guard.schedule.scheduler import SchedulerDriver
    from guard.schedule.triggers import plan_jobs
    from guard.service.daemon import Daemon
    from guard.settings import load_credentials
    from guard.sweep import SweepContext, SweepReport, run_sweep

    spans: list[tuple[str, float, float]] = []

    TimedBroker = timed_broker(spans)

    listed = ", ".join(f'"{a}"' for a in accounts)
    text = (RULES_SWEEP if phase == "sweep" else RULES_PRECLOSE).format(accounts=listed)
    rules = load_rules_text(text, "bench.yaml")
    calendar = build_calendar(rules.holidays)
    clock = ShiftedClock(timedelta(seconds=offset_s))
    journal = Journal(Path(state) / "journal.sqlite3")
    broker = TimedBroker(load_credentials(env), TokenCache(Path(state)))
    out: dict[str, Any] = {}
    try:
        await broker.open()
        ctx = SweepContext(broker=broker, rules=rules, calendar=calendar, journal=journal,
                           state_dir=Path(state), clock=clock,
                           log=structlog.get_logger("guard"))
        # Warm, as a running daemon is: session, master data, account types, and one read
        # of every book (a dry run), then a full budget.
        ctx.force_dry_run = True
        await run_sweep(ctx, "warm-up")
        await broker.account_typing(accounts[0])
        ctx.force_dry_run = False
        spans.clear()
        if phase == "sweep":
            await asyncio.sleep(1.1)
        # The budget's idle time before the measured sweep (the pre-close: until its second).
        idle = 1.1 if phase == "sweep" else (_market(SECOND) - clock()).total_seconds()
        if phase == "sweep":
            t0 = time.monotonic()
            report = await run_sweep(ctx, "poll")
            end = time.monotonic()
        else:
            # The daemon's own path: its fire (a critical job: the sweep starts each account
            # as its fresh book is in) and its pre-read loop, PRE_READ_LEAD before the second.
            daemon = Daemon(ctx, Path(state) / "rules.yaml")
            done: asyncio.Future[SweepReport] = asyncio.get_running_loop().create_future()
            t0 = 0.0

            async def fire(job: Any) -> None:
                nonlocal t0
                t0 = time.monotonic()
                try:
                    report = await daemon.fire(job)
                    if report is None:
                        raise RuntimeError(f"{job.job_id} did not run")
                    done.set_result(report)
                except Exception as exc:  # surfaced below
                    done.set_exception(exc)

            jobs = [j for j in plan_jobs(rules, calendar) if j.critical]
            driver = SchedulerDriver(fire, structlog.get_logger("guard"),
                                     offset=timedelta(seconds=offset_s))
            daemon.driver = driver
            driver.start(jobs)
            pre = asyncio.create_task(daemon.pre_read_loop())
            try:
                report = await asyncio.wait_for(done, 120)
            finally:
                daemon.request_stop()
                await pre
                driver.shutdown()
            end = time.monotonic()
        # The pre-read's spans came before the second: not part of the figure, but the time
        # since the last of them is the budget's idle time before it.
        before = [s for s in spans if s[1] < t0]
        if before:
            idle = t0 - max(s[2] for s in before)
        before = [s for s in before if s[0] == "book"]
        spans[:] = [s for s in spans if s[1] >= t0]
        books = [s for s in spans if s[0] == "book"]
        cancels = [s for s in spans if s[0] == "cancel"]
        out = {
            "result": report.result, "targets": len(report.plan.targets),
            "batches": len(report.plan.batches), "open": len(report.decisions),
            "outcomes": dict(Counter(o.kind for o in report.outcomes)),
            "unread": [a for a, _ in report.unread_accounts],
            "wall_s": max((s[2] for s in books), default=end) - t0,
            "sweep_s": end - t0,
            "first_cancel_s": min((s[1] for s in cancels), default=end) - t0,
            "last_cancel_s": max((s[2] for s in cancels), default=end) - t0,
            "t0_epoch": t0 + time.time() - time.monotonic(), "idle_before_s": idle,
            "pre_read_books": len(before),
        }
    finally:
        await broker.close()
        journal.close()
    return out


_SINK: list[Any] = []


def _child(env: dict[str, str], accounts: list[str], phase: str, offset_s: float,
           state: str) -> dict[str, Any]:
    """Entry point in the worker: logs are formatted as in production, then dropped."""
    if not _SINK:
        from guard.record.log import configure_logging

        _SINK.append(open(os.devnull, "w", encoding="utf-8"))  # noqa: SIM115 - process lifetime
        configure_logging(level="INFO", fmt="json", stream=_SINK[0])
    return asyncio.run(_guard(env, accounts, phase, offset_s, state))


# ---- the parent: simulators, seeding, counting ------------------------------------------------


@dataclass
class Case:
    accounts: int
    orders: int

    @property
    def names(self) -> list[str]:
        return [f"{1000 + i:06d}1" for i in range(self.accounts)]

    @property
    def pages(self) -> int:
        return self.accounts * math.ceil(self.orders / PAGE)

    @property
    def batches(self) -> int:
        return self.accounts * math.ceil(STALE / BATCH)

    @property
    def floor_s(self) -> float:
        return (2 * self.pages + self.batches) / RATE + CANCEL_DELAY

    def label(self) -> str:
        return f"{self.accounts} x {self.orders:,}"


def _seed(sim: Any, case: Case) -> dict[str, list[str]]:
    """Each account: filled orders, then fresh, then stale (newest last); returns the stale."""
    stale: dict[str, list[str]] = {}
    for account in case.names:
        for i in range(case.orders - STALE - FRESH):
            order = sim.seed_order(account, HOSE_OTHERS[i % 5], "S", 27_000, 100,
                                   age=timedelta(minutes=40))
            sim.set_status(order, "FF")
        for i in range(FRESH):
            symbol = "FPT" if i < FPT else HOSE_OTHERS[i % 5]
            sim.seed_order(account, symbol, "B", 88_900 if symbol == "FPT" else 25_150, 100,
                           age=timedelta(minutes=2))
        stale[account] = [sim.seed_order(account, "VNM", "B", 57_700, 100,
                                         age=timedelta(minutes=20, seconds=i % 300))
                          for i in range(STALE)]
    return stale


def _counts(reqs: list[Any]) -> dict[str, int]:
    return {
        "requests": len(reqs),
        "book": sum(1 for r in reqs if r.path == "/api/v3/trading/orderBook"),
        "cash": sum(1 for r in reqs if r.path in ("/api/v3/trading/accountBalance",
                                                   "/api/v3/trading/ppmmrAccount")),
        "delete": sum(1 for r in reqs if r.method == "DELETE"),
        "http_429": sum(1 for r in reqs if r.status == 429),
    }


def _run_case(pool: concurrent.futures.Executor, case: Case, key_bits: int) -> dict[str, Any]:
    from guard.simulator.control import Simulator
    from guard.simulator.faults import Fault

    clock = ShiftedClock(_offset_for(_market(SWEEP_AT)))
    names = case.names
    sim = Simulator(clock=clock, rate_limit=RATE, cancel_delay=CANCEL_DELAY,
                    key_bits=key_bits, accounts=(names[0],))
    for account in names[1:]:
        sim.add_account(account)
    sim.start()
    try:
        stale = _seed(sim, case)
        sim.inject(Fault("latency", seconds=LATENCY_S, times=None))
        out: dict[str, Any] = {}
        with tempfile.TemporaryDirectory() as state:
            os.chmod(state, 0o700)
            # 1. The sweep that cancels every stale order.
            mark = len(sim.requests)
            sweep = pool.submit(_child, sim.env(), names, "sweep",
                                clock.offset.total_seconds(), state).result()
            reqs = sim.requests[mark:]
            time.sleep(CANCEL_DELAY + 0.1)
            sim.exchange.settle()
            every = [o for ids in stale.values() for o in ids]
            left = sum(1 for o in every if sim.exchange.orders[o].status not in TERMINAL)
            accepted = Counter(sim.accepted_cancels())
            to_wall = time.time() - time.monotonic()
            measured = [r for r in reqs if r.at + to_wall >= sweep["t0_epoch"]]
            out["sweep"] = {**sweep, **_counts(measured),
                            "left_open": left, "twice": sum(1 for c in accepted.values()
                                                            if c > 1)}
            # 2. The pre-close: the clock jumps to LEAD_S before 14:25:00 and runs on.
            clock.offset = _offset_for(_market(SECOND) - timedelta(seconds=LEAD_S))
            second_wall = time.time() + LEAD_S
            late: list[str] = []

            def place_late() -> None:
                delay = second_wall - LATE_S - time.time()
                time.sleep(max(0.0, delay))
                late.extend(sim.seed_order(a, "FPT", "B", 88_900, 100) for a in names)

            placer = threading.Thread(target=place_late, daemon=True)
            placer.start()
            mark = len(sim.requests)
            pre = pool.submit(_child, sim.env(), names, "preclose",
                              clock.offset.total_seconds(), state).result()
            placer.join()
            reqs = sim.requests[mark:]
            # The simulator's clock as reference: its market time at the first DELETE.
            to_wall = time.time() - time.monotonic()
            deletes = [r for r in reqs if r.method == "DELETE"]
            first = min(r.at for r in deletes) + to_wall if deletes else float("nan")
            first_market = datetime.fromtimestamp(first, clock().tzinfo) + clock.offset
            second = _market(SECOND)
            time.sleep(CANCEL_DELAY + 0.1)
            sim.exchange.settle()
            caught = sum(1 for o in late if sim.exchange.orders[o].status in TERMINAL)
            out["preclose"] = {**pre, **_counts([r for r in reqs
                                                 if r.at + to_wall >= pre["t0_epoch"]]),
                               "first_delete_s": (first_market - second).total_seconds(),
                               "late_caught": caught, "late": len(late)}
        return out
    finally:
        sim.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--key-bits", type=int, default=2048, choices=(1024, 2048))
    parser.add_argument("--case", action="append", choices=[f"{a}x{o}" for a, o in CASES],
                        help="run only this case (repeatable); default: all three")
    args = parser.parse_args(argv)
    cases = [c for c in CASES if not args.case or f"{c[0]}x{c[1]}" in args.case]
    print(f"bench/scale.py: simulator at {RATE} req/s, +{LATENCY_S * 1000:.0f} ms on every "
          f"request, cancel_delay {CANCEL_DELAY} s, {args.key_bits}-bit RSA keys; guard in a "
          "child process, simulator in this one\n")
    t_start = time.monotonic()
    rows: list[tuple[Case, dict[str, Any]]] = []
    spawn = multiprocessing.get_context("spawn")
    with concurrent.futures.ProcessPoolExecutor(max_workers=1, mp_context=spawn) as pool:
        pool.submit(time.sleep, 0).result()
        for accounts, orders in cases:
            case = Case(accounts, orders)
            res = _run_case(pool, case, args.key_bits)
            rows.append((case, res))
            print(f"  {case.label()}: sweep {res['sweep']['wall_s']:.2f} s, pre-close first "
                  f"DELETE +{res['preclose']['first_delete_s']:.3f} s", flush=True)
    total = time.monotonic() - t_start

    head = (f"\n{'case':<10} {'pages':>5} {'batches':>7} {'floor s':>7} {'sweep s':>7} "
            f"{'x floor':>7} {'HTTP':>5} {'book':>5} {'cash':>5} {'DELETE':>6} {'429':>4} "
            f"{'left':>4} | {'pre-close 1st DELETE s':>22} {'HTTP':>5} {'book':>5} "
            f"{'late caught':>11}")
    print(head)
    print("-" * len(head))
    verdicts: list[tuple[str, bool]] = []
    for case, res in rows:
        sw, pc = res["sweep"], res["preclose"]
        ratio = sw["wall_s"] / case.floor_s
        print(f"{case.label():<10} {case.pages:>5} {case.batches:>7} {case.floor_s:>7.2f} "
              f"{sw['wall_s']:>7.2f} {ratio:>7.2f} {sw['requests']:>5} {sw['book']:>5} "
              f"{sw['cash']:>5} {sw['delete']:>6} {sw['http_429']:>4} {sw['left_open']:>4} | "
              f"{pc['first_delete_s']:>22.3f} {pc['requests']:>5} {pc['book']:>5} "
              f"{pc['late_caught']:>5}/{pc['late']:<5}")
        ok_sweep = (ratio <= 1.3 and sw["left_open"] == 0 and sw["twice"] == 0
                    and sw["result"] == "ok")
        ok_pre = (pc["first_delete_s"] <= 1.0 and pc["late_caught"] == pc["late"]
                  and pc["result"] == "ok" and pc["idle_before_s"] >= 1.0)
        verdicts.append((f"{case.label()}: sweep {ratio:.2f}x floor ({sw['wall_s']:.2f} s of "
                         f"{case.floor_s:.2f} s), result {sw['result']}, left open "
                         f"{sw['left_open']}, cancelled twice {sw['twice']}", ok_sweep))
        verdicts.append((f"{case.label()}: pre-close first DELETE {pc['first_delete_s']:.3f} s "
                         f"after 14:25:00, late orders caught {pc['late_caught']}/{pc['late']}, "
                         f"result {pc['result']}", ok_pre))
    print("\ncolumns: pages = ceil(orders/1000) per account, summed; batches = stale/20 per "
          "account, summed; floor = (2 x pages + batches)/10 + 0.2 s; sweep = run_sweep start "
          "to the end of the last confirmation read; HTTP/book/cash/DELETE/429 = requests the "
          "simulator received during the figure; left = stale orders still open after it; "
          "pre-close = the first DELETE's arrival by the simulator's market clock minus "
          "14:25:00; late caught = orders placed 0.5 s before the second that it cancelled")
    print("\ndetail")
    for case, res in rows:
        sw, pc = res["sweep"], res["preclose"]
        print(f"  {case.label()} sweep: {sw['targets']} targets in {sw['batches']} batches, "
              f"outcomes {sw['outcomes']}, first cancel +{sw['first_cancel_s']:.2f} s, last "
              f"cancel answered +{sw['last_cancel_s']:.2f} s, whole run_sweep "
              f"{sw['sweep_s']:.2f} s (cash after, journal)")
        # What the budget alone would allow if every page had to be read fresh before the
        # first DELETE (the exact breaker of a poll): every page (the empty page that ends a
        # book of a multiple of 1,000 included), then the first account's cash (2) and its
        # first batch, at the guard's pace with a full burst. With the pre-read, the first
        # account's pages, cash and batch are all that come first.
        from guard.broker.budget import Budget
        from guard.broker.client import DEFAULT_RATE_LIMIT as pace

        burst = int(Budget(pace).burst)
        need = case.accounts * (case.orders // PAGE + 1) + 3
        bound = max(0.0, (need - burst) / pace)
        print(f"  {case.label()} pre-close: {pc['pre_read_books']} books read in the daemon's "
              f"pre-read before the second; if every page had to be read first: at least "
              f"{bound:.2f} s ({need} requests, burst {burst}, {pace}/s); "
              f"{pc['targets']} targets, outcomes {pc['outcomes']}, "
              f"first cancel call +{pc['first_cancel_s']:.3f} s after the job fired, whole "
              f"sweep {pc['sweep_s']:.2f} s, result {pc['result']}; no request for "
              f"{pc['idle_before_s']:.1f} s before the second")
    print(f"\ntotal run {total:.0f} s\n\ntargets")
    for text, ok in verdicts:
        print(f"  {'PASS' if ok else 'FAIL'}  {text}")
    return 0 if all(ok for _, ok in verdicts) else 1


if __name__ == "__main__":
    sys.exit(main())
