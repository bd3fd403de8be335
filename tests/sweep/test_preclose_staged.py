"""A critical sweep after the daemon's pre-read starts each account as its fresh book is in.

Twelve accounts are more books than one burst of the request budget (9): an exact breaker
would read all twelve before its first DELETE. With a pre-read a few seconds before, the
sweep bounds the breaker with the pre-read's counts (evaluated at its own second) and starts
the first account's cancels while the last books are still being read. Every cancel is still
decided from a book read at or after the second, and the sweep never sends more than
``max_cancels_per_sweep``. Shown through the real SDK on the simulator, by the order of
requests (no stopwatch).
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from kit import BOOK
from kit.log import Recorder
from kit.staged import (
    ACCOUNTS,
    LAST,
    cancelled_ids,
    open_fpt,
    pre_read_then_sweep,
    rules,
    setup,
)
from kit.sweep import Guard, assert_no_double_cancel, at

from guard.simulator.control import Simulator
from guard.snapshot.recent import RecentBooks
from guard.sweep import ESTIMATE_MAX_AGE_S, SweepReport, run_sweep


def test_the_first_delete_leaves_before_the_last_books_are_asked_for(
        sim: Simulator, tmp_path: Path) -> None:
    opened = setup(sim)
    guard = Guard(sim, tmp_path / "state", rules())
    late: list[str] = []

    def between() -> None:
        # After the pre-read: one order filled, and one placed in the last account a second
        # before the second, which the pre-read never saw.
        sim.fill(opened[ACCOUNTS[0]][0])
        sim.set_clock(at(sim, 14, 24, 59))
        late.extend(open_fpt(sim, LAST))

    marks: list[int] = []

    async def scenario() -> SweepReport:
        async with guard.context() as ctx:
            return await pre_read_then_sweep(ctx, sim, between, marks=marks)

    report = asyncio.run(scenario())
    reqs = sim.requests[marks[0]:]
    first_delete = min(i for i, r in enumerate(reqs) if r.method == "DELETE")
    asked_before = {r.query["accountNo"] for r in reqs[:first_delete] if r.path == BOOK}
    # The first DELETE did not wait for every book: the last accounts were asked for after it.
    assert len(asked_before) < len(ACCOUNTS)
    assert LAST not in asked_before
    assert report.result == "ok" and report.unread_accounts == ()
    # Every cancel decided from the fresh book: the late order is cancelled, the filled one
    # is not sent.
    expected = {o for ids in opened.values() for o in ids} - {opened[ACCOUNTS[0]][0]}
    assert set(cancelled_ids(sim)) == expected | set(late)
    assert sim.order(late[0]).status == "CL"
    assert_no_double_cancel(sim)


def test_orders_placed_after_the_pre_read_that_pass_the_limit_trip_late_and_stop_there(
        sim: Simulator, tmp_path: Path) -> None:
    opened = setup(sim)  # one FPT order per account: the pre-read counts 12, the limit is 20
    guard = Guard(sim, tmp_path / "state", rules(max_cancels=20))
    surge: list[str] = []
    log = Recorder()

    def between() -> None:
        surge.extend(open_fpt(sim, LAST, 15))  # 27 matches at the second

    async def scenario() -> SweepReport:
        async with guard.context(log=log) as ctx:
            return await pre_read_then_sweep(ctx, sim, between)

    report = asyncio.run(scenario())
    sent = set(cancelled_ids(sim))
    # Never past the limit: the accounts that started before the last book came in, and not
    # one order of the account whose book pushed the count over.
    assert 0 < len(sent) <= 20
    assert not sent & set(surge) and opened[LAST][0] not in sent
    assert all(sim.order(o).status != "CL" for o in surge)
    assert report.plan.tripped and report.result == "blocked"
    [tripped] = log.named("breaker.tripped")
    assert tripped["matches"] == 27 and tripped["limit"] == 20 and tripped["late"] is True
    assert tripped["started"] == len(sent) == len(report.sent)
    assert LAST not in tripped["accounts_started"]
    # What started is confirmed like any cancel; the rest is journaled as the breaker's.
    assert all(o.kind == "cancelled" for o in report.outcomes)
    with guard.journal() as j:
        actions = dict(j.query("SELECT order_id, action FROM decisions WHERE account = ?",
                               (LAST,)))
    assert set(actions) == set(surge) | {opened[LAST][0]}
    assert all(a == "blocked: circuit breaker: 27 matches > max_cancels_per_sweep 20"
               for a in actions.values())
    assert_no_double_cancel(sim)


def test_a_growth_the_pre_read_saw_trips_before_anything_is_sent(
        sim: Simulator, tmp_path: Path) -> None:
    setup(sim)
    for _ in range(15):
        open_fpt(sim, LAST)  # before the pre-read: its estimate already says 27 > 20
    guard = Guard(sim, tmp_path / "state", rules(max_cancels=20))
    log = Recorder()

    async def scenario() -> SweepReport:
        async with guard.context(log=log) as ctx:
            return await pre_read_then_sweep(ctx, sim, lambda: None)

    report = asyncio.run(scenario())
    assert set(cancelled_ids(sim)) == set() and report.sent == ()
    [tripped] = log.named("breaker.tripped")
    assert tripped["matches"] == 27 and "late" not in tripped


def test_a_pre_read_older_than_the_estimate_limit_keeps_the_breaker_exact(
        sim: Simulator, tmp_path: Path) -> None:
    setup(sim)
    guard = Guard(sim, tmp_path / "state", rules(max_cancels=20))
    surge: list[str] = []
    now = [0.0]

    def between() -> None:
        surge.extend(open_fpt(sim, LAST, 15))
        now[0] += ESTIMATE_MAX_AGE_S + 0.001  # the pre-read is now too old to estimate

    async def scenario() -> SweepReport:
        async with guard.context() as ctx:
            ctx.recent = RecentBooks(clock=lambda: now[0])
            return await pre_read_then_sweep(ctx, sim, between)

    report = asyncio.run(scenario())
    # Exact: every book first, 27 > 20, nothing sent at all.
    assert set(cancelled_ids(sim)) == set() and report.plan.tripped


def test_a_poll_never_starts_early_even_with_a_recent_read(
        sim: Simulator, tmp_path: Path) -> None:
    setup(sim)
    guard = Guard(sim, tmp_path / "state", rules(max_cancels=20))

    async def scenario() -> SweepReport:
        async with guard.context() as ctx:
            return await pre_read_then_sweep(ctx, sim, lambda: open_fpt(sim, LAST, 15),
                                       critical=False)

    report = asyncio.run(scenario())
    assert set(cancelled_ids(sim)) == set() and report.plan.tripped


def test_the_next_sweep_counts_what_a_late_trip_sent_until_the_matches_fit_with_it(
        sim: Simulator, tmp_path: Path) -> None:
    """A late trip sent 11 of 27 (limit 20). The next poll sees 16 still open: alone they fit,
    but with the 11 already sent they do not, so it trips at once and sends nothing (the
    breaker is not undone one sweep later). Once the matches fit with what was sent (16 -> 9
    after fills), a sweep goes ahead and the count starts afresh."""
    opened = setup(sim)
    guard = Guard(sim, tmp_path / "state", rules(max_cancels=20))
    surge: list[str] = []
    log = Recorder()

    def between() -> None:
        surge.extend(open_fpt(sim, LAST, 15))

    async def scenario() -> tuple[SweepReport, SweepReport, SweepReport, SweepReport]:
        async with guard.context(log=log) as ctx:
            late = await pre_read_then_sweep(ctx, sim, between)
            sim.set_clock(at(sim, 14, 25, 30))
            held = await run_sweep(ctx, "poll")
            for order in surge[:7]:
                sim.fill(order)
            calm = await run_sweep(ctx, "poll")
            assert ctx.late_trips == {}
            open_fpt(sim, ACCOUNTS[0], 3)
            after = await run_sweep(ctx, "poll")
            return late, held, calm, after

    late, held, calm, after = asyncio.run(scenario())
    assert late.plan.tripped and len(late.sent) == 11
    # The next poll: 16 open + 11 sent > 20: tripped, nothing sent.
    assert held.plan.tripped and held.sent == () and held.result == "blocked"
    assert held.plan.blocked == ("circuit breaker: 16 matches + 11 sent earlier today before "
                                 "a late trip > max_cancels_per_sweep 20")
    trips = log.named("breaker.tripped")
    assert trips[1]["carried"] == 11 and "late" not in trips[1]
    # 9 open + 11 sent = 20: within the limit, the rest goes, and the carry is cleared.
    assert not calm.plan.tripped and len(calm.sent) == 9 and calm.result == "ok"
    assert after.result == "ok" and len(after.sent) == 3
    assert all(sim.order(o).status == "CL" for o in opened[LAST] + surge[7:])
    assert_no_double_cancel(sim)


def test_a_late_trip_whose_started_cancel_failed_is_incomplete_not_blocked(
        sim: Simulator, tmp_path: Path) -> None:
    """The exchange refuses one started account's cancel: the sweep says incomplete (the
    sweep_failed alert), not merely "blocked" by the breaker."""
    from guard.simulator.faults import Fault

    opened = setup(sim)
    guard = Guard(sim, tmp_path / "state", rules(max_cancels=20))
    refused = ACCOUNTS[1]
    sim.inject(Fault("error", "DELETE", status=400, times=None, account=refused))

    async def scenario() -> SweepReport:
        async with guard.context() as ctx:
            return await pre_read_then_sweep(ctx, sim, lambda: open_fpt(sim, LAST, 15))

    report = asyncio.run(scenario())
    assert report.plan.tripped and report.sent
    assert any(o.kind == "failed" for o in report.outcomes)
    assert report.result == "incomplete" and not report.complete
    assert sim.order(opened[refused][0]).status != "CL"
