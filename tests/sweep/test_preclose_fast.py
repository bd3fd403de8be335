"""The pre-close sweep starts cancelling at once, from the book as it is at its second.

A running guard has read each book before (a poll): it knows how many pages each book has,
and asks for all of them at once at the second, with a full budget. Only that count is kept
from the earlier read, never a row: every decision is taken from pages read at or after the
second. Shown through the real SDK on the paging simulator, by the order of requests (no
stopwatch): the pages of every account go out in one wave, an order placed a second before
is caught, an order filled since the earlier read is not cancelled, and a book that grew a
page since then is read whole.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from kit import BATCH, BOOK, FRESH, STALE
from kit.sweep import Guard, assert_no_double_cancel, at

from guard.broker.budget import Priority
from guard.simulator.control import Simulator
from guard.sweep import SweepReport, run_sweep

THIRD = "0001231"
ACCOUNTS = ("0001234", "0001238", THIRD)
BALANCE = "/api/v3/trading/accountBalance"
RULES = f"""
version: 1
accounts: [{", ".join(f'"{a}"' for a in ACCOUNTS)}]
dry_run: false
limits: {{max_cancels_per_sweep: 200, confirm_timeout: 5s}}
rules:
  - name: pull-before-atc
    before_close: 5m
    match: {{boards: [HOSE], symbols: ["FPT"]}}
"""


def seed(sim: Simulator, account: str, done: int) -> list[str]:
    """``done`` filled orders (paging bulk), then 3 open FPT buys; returns the open ones."""
    for _ in range(done):
        sim.set_status(sim.seed_order(account, "SSI", "S", 27_000, 100, age=STALE), "FF")
    return [sim.seed_order(account, "FPT", "B", 95_000, 100, age=FRESH) for _ in range(3)]


def test_preclose_reads_every_page_at_its_second_in_one_wave_and_decides_only_from_them(
    sim: Simulator, tmp_path: Path
) -> None:
    sim.add_account(THIRD)
    sim.set_clock(at(sim, 14, 24, 50))
    opened = {a: seed(sim, a, 1_300) for a in ACCOUNTS[:2]}
    opened[THIRD] = seed(sim, THIRD, 1_996)  # 1,999 orders: 2 pages at the poll
    guard = Guard(sim, tmp_path / "state", RULES)

    async def scenario() -> tuple[SweepReport, SweepReport]:
        async with guard.context() as ctx:
            poll = await run_sweep(ctx, "poll")  # 14:24:50: the rule is not due yet
            # Between the poll and the second: one order filled, one placed a second before
            # it, and THIRD's book grows onto a third page.
            sim.fill(opened[ACCOUNTS[0]][0])
            sim.set_clock(at(sim, 14, 24, 59))
            late = sim.seed_order(ACCOUNTS[1], "FPT", "B", 95_000, 100)
            grown = [sim.seed_order(THIRD, "FPT", "B", 95_000, 100) for _ in range(5)]
            opened[ACCOUNTS[1]].append(late)
            opened[THIRD].extend(grown)
            # The daemon keeps the budget full before a critical job: no request in the
            # second before it (the SDK's and the simulator's buckets refill too).
            await asyncio.sleep(1.1)
            sim.set_clock(at(sim, 14, 25, 0))
            mark = len(sim.requests)
            started = time.monotonic()
            pre = await run_sweep(ctx, "pre-close:pull-before-atc")
            budget = ctx.broker.budget  # type: ignore[attr-defined]
            grants.extend(g for g in budget.granted if g[0] >= started)
            return poll, pre, mark  # type: ignore[return-value]

    grants: list[tuple[float, Priority, int]] = []
    poll, pre, mark = asyncio.run(scenario())  # type: ignore[misc]
    assert poll.result == "nothing_to_do"
    assert pre.result == "ok" and pre.unread_accounts == ()
    reqs = sim.requests[mark:]
    first_delete = min(i for i, r in enumerate(reqs) if r.method == "DELETE")
    before = reqs[:first_delete]
    pages = {a: sorted(int(r.query["pageIndex"]) for r in before
                       if r.path == BOOK and r.query["accountNo"] == a) for a in ACCOUNTS}
    assert pages == {ACCOUNTS[0]: [1, 2], ACCOUNTS[1]: [1, 2], THIRD: [1, 2, 3]}
    # Nothing but the pages and the first account's cash went before the first DELETE.
    assert {r.path for r in before} <= {BOOK, BALANCE, "/api/v3/trading/ppmmrAccount"}
    # One wave: the budget let every page the earlier read announced go before any page
    # came back (the simulator shares this process's clock).
    wave = [r for r in before if r.path == BOOK and not (r.query["accountNo"] == THIRD
                                                         and r.query["pageIndex"] == "3")]
    decide = sorted(t for t, priority, _ in grants if priority is Priority.DECIDE)
    assert len(decide) == 7 and len(wave) == 6
    assert decide[5] < min(r.answered_at or time.monotonic() for r in wave)
    # THIRD's third page was asked for once its page 1 said the book had grown.
    third = [r for r in before if r.query.get("accountNo") == THIRD]
    page1 = next(r for r in third if r.query["pageIndex"] == "1")
    page3 = next(r for r in third if r.query["pageIndex"] == "3")
    assert page1.answered_at is not None and page3.at >= page1.answered_at

    # Decided from the book at the second: the late order and the grown page are cancelled,
    # the order filled since the poll is not (no DELETE names it).
    filled = opened[ACCOUNTS[0]][0]
    expected = {o for ids in opened.values() for o in ids} - {filled}
    sent = {i["orderId"] for r in sim.requests_to("DELETE", BATCH) for i in r.body["orders"]}
    assert sent == expected
    late, grown = opened[ACCOUNTS[1]][-1], opened[THIRD][-5:]
    assert sim.order(late).status == "CL" and all(sim.order(o).status == "CL" for o in grown)
    assert sim.order(filled).status == "FF"
    [decided] = [d for d in pre.decisions if d.order.order_id == late]
    assert decided.cancel
    assert_no_double_cancel(sim)
