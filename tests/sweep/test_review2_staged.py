"""A second adversarial pass on the staged critical sweep (review 2): combinations of the late
breaker trip, the pause file, a fresh book refused by the paging cross-check, a heartbeat
sweep estimating from a poll's books, and what the alerts make of each.

Set up as ``test_preclose_staged.py``: twelve accounts, the daemon's pre-read at 14:24:52,
the sweep at 14:25, through the real SDK on the simulator. Events are injected from the
sweep's own log (in the event loop), never by a timer.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from pathlib import Path

from kit import BOOK
from kit.log import OnEvent, Recorder
from kit.staged import (
    ACCOUNTS,
    LAST,
    TRIGGER,
    cancelled_ids,
    open_fpt,
    pre_read_then_sweep,
    rules,
    setup,
)
from kit.sweep import Guard, assert_no_double_cancel, assert_one_outcome_per_intent, at

from guard.service.alerts import Alerter, AlertRules
from guard.simulator.control import Simulator
from guard.simulator.hostile import cut_page, duplicate_row
from guard.sweep import SweepReport, run_sweep

TRIP_27 = "blocked: circuit breaker: 27 matches > max_cancels_per_sweep 20"
PAUSED = "blocked: paused by the pause file"


def actions(guard: Guard) -> dict[str, str]:
    with guard.journal() as j:
        return dict(j.query("SELECT order_id, action FROM decisions"))


def finish_row(guard: Guard) -> tuple[str, str]:
    with guard.journal() as j:
        [(result, summary)] = j.query("SELECT result, summary FROM sweep_results")
    return str(result), str(summary)


def alerts_of(log: Recorder) -> dict[str, str]:
    """Feed what the sweep logged to the daemon's alert rules: condition -> state."""
    alerter = Alerter(None, remind_every_s=600, clock=lambda: 1_000_000.0)
    watch = AlertRules(alerter)
    for _, event, fields in log.records:
        watch.observe({"event": event, "trigger": TRIGGER, **fields})
    return {a.condition: a.state for a in alerter.sent}


def test_a_late_trip_reports_one_coherent_story_in_report_log_journal_and_alerts(
        sim: Simulator, tmp_path: Path) -> None:
    """The late trip of test_preclose_staged, read from every side: the report's counts, the
    sweep.finished line, the journal's finish row and the alerts agree on what started and
    what did not, and none of them says the sweep was fine or that nothing was cancelled."""
    opened = setup(sim)
    guard = Guard(sim, tmp_path / "state", rules(max_cancels=20))
    surge: list[str] = []
    log = Recorder()

    async def scenario() -> SweepReport:
        async with guard.context(log=log) as ctx:
            return await pre_read_then_sweep(ctx, sim, lambda: surge.extend(
                open_fpt(sim, LAST, 15)))

    report = asyncio.run(scenario())
    sent = cancelled_ids(sim)
    counts = report.counts()
    assert report.result == "blocked" and not report.complete and report.plan.tripped
    assert counts["targets"] == 27 and counts["matched"] == 27
    assert 0 < counts["sent"] == len(sent) == counts["cancelled"] <= 20
    [finished] = log.named("sweep.finished")
    assert finished["result"] == "blocked" and finished["sent"] == len(sent)
    assert "paused" not in finished  # a trip is not a pause
    result, summary = finish_row(guard)
    assert result == "blocked" and f'"sent": {len(sent)}' in summary
    [tripped] = log.named("breaker.tripped")
    assert tripped["late"] is True and tripped["started"] == len(sent)
    assert log.named("cancel.skipped") == []  # the trip is the one line that says why
    fired = alerts_of(log)
    assert fired.get("circuit_breaker") == "firing"
    assert "sweep_failed" not in fired or fired["sweep_failed"] == "firing"
    # Every DELETE follows a journaled "cancel"; every order of the tripping account is the
    # breaker's; nothing was sent twice, and every intent has its outcome.
    acts = actions(guard)
    assert {acts[o] for o in sent} == {"cancel"}
    assert {acts[o] for o in set(surge) | set(opened[LAST])} == {TRIP_27}
    assert_one_outcome_per_intent(guard.journal_path)
    assert_no_double_cancel(sim)


def test_a_pause_then_a_late_trip_sends_only_what_started_before_the_pause(
        sim: Simulator, tmp_path: Path) -> None:
    """The pause file appears as the first DELETE goes out, and the last account's fresh book
    then pushes the count over: nothing starts after the pause, nothing past the limit is
    sent, the sweep is not complete, and every order not sent is journaled as held by the
    pause or by the breaker, never as "cancel"."""
    opened = setup(sim)
    guard = Guard(sim, tmp_path / "state", rules(max_cancels=20))
    log = OnEvent("cancel.sent", (guard.state_dir / "paused").touch)
    surge: list[str] = []

    async def scenario() -> SweepReport:
        async with guard.context(log=log) as ctx:
            return await pre_read_then_sweep(ctx, sim, lambda: surge.extend(
                open_fpt(sim, LAST, 15)))

    report = asyncio.run(scenario())
    sent = cancelled_ids(sim)
    assert 0 < len(sent) <= 20 and Counter(sent) == Counter(set(sent))
    assert not set(sent) & (set(surge) | set(opened[LAST]))
    assert not report.complete and report.result in ("blocked", "incomplete")
    assert len(report.sent) == len(sent)
    acts = actions(guard)
    assert {acts[o] for o in sent} == {"cancel"}
    unsent = {o for ids in opened.values() for o in ids} | set(surge)
    assert {acts[o] for o in unsent - set(sent)} <= {PAUSED, TRIP_27}
    assert all(sim.order(o).status != "CL" for o in unsent - set(sent))
    tripped = log.named("breaker.tripped")
    if report.plan.tripped:  # the trip wins the report; it still says what had started
        assert tripped[0]["late"] is True and tripped[0]["started"] == len(sent)
    assert_one_outcome_per_intent(guard.journal_path)


def test_a_paused_incomplete_sweep_fires_sweep_failed_naming_the_held_orders(
        sim: Simulator, tmp_path: Path) -> None:
    """The pause file appears after the first DELETE of a sweep within the limit: the log
    fed to the alert rules fires sweep_failed saying how many the pause held, and does not
    resolve it (nor the breaker alert) as a good sweep would."""
    setup(sim)
    guard = Guard(sim, tmp_path / "state", rules())
    log = OnEvent("cancel.sent", (guard.state_dir / "paused").touch)

    async def scenario() -> SweepReport:
        async with guard.context(log=log) as ctx:
            return await pre_read_then_sweep(ctx, sim)

    report = asyncio.run(scenario())
    held = len(report.plan.targets) - len(report.sent)
    assert held > 0 and report.result == "incomplete"
    alerter = Alerter(None, remind_every_s=600, clock=lambda: 1_000_000.0)
    watch = AlertRules(alerter)
    for _, event, fields in log.records:
        watch.observe({"event": event, "trigger": TRIGGER, **fields})
    [alert] = [a for a in alerter.sent if a.condition == "sweep_failed"]
    assert alert.state == "firing"
    assert f"{held} held by the pause file" in alert.summary
    assert "some cancels are not final" not in alert.summary
    assert not [a for a in alerter.sent if a.state == "resolved"]


def test_an_estimated_account_whose_fresh_book_fails_the_page_check_is_unread_not_counted(
        sim: Simulator, tmp_path: Path) -> None:
    """The last account's pre-read counted 16 (with the others' 11: over 20, so it bounds
    every start); its fresh book comes back cut short (totalRecord counts rows not sent).
    Nothing is decided from that book: it is unread, its estimate stops counting once the
    reads are settled, the other eleven are cancelled once each, the breaker does not trip,
    and the sweep is incomplete."""
    opened = setup(sim)
    extra = open_fpt(sim, LAST, 15)
    guard = Guard(sim, tmp_path / "state", rules(max_cancels=20))
    log = Recorder()

    def between() -> None:
        sim.rewrite_reply("GET", BOOK, cut_page(1), account=LAST, times=None)

    async def scenario() -> SweepReport:
        async with guard.context(log=log) as ctx:
            return await pre_read_then_sweep(ctx, sim, between)

    report = asyncio.run(scenario())
    others = {o for a, ids in opened.items() if a != LAST for o in ids}
    assert Counter(cancelled_ids(sim)) == Counter(dict.fromkeys(others, 1))
    [(unread, why)] = report.unread_accounts
    assert unread == LAST and "totalRecord" in why
    assert report.result == "incomplete" and not report.plan.tripped
    assert log.named("breaker.tripped") == []
    assert all(d.order.account != LAST for d in report.decisions)
    assert not set(actions(guard)) & (set(extra) | set(opened[LAST]))
    assert_no_double_cancel(sim)


def test_an_estimated_account_whose_fresh_book_lists_an_order_twice_sends_nothing(
        sim: Simulator, tmp_path: Path) -> None:
    """The same with a fresh book that lists one order twice (within the limit this time, so
    the others start early): the account is unread and none of its orders is cancelled,
    although its estimate had let the sweep start."""
    opened = setup(sim)
    twin = opened[LAST][0]
    guard = Guard(sim, tmp_path / "state", rules(max_cancels=20))

    def between() -> None:
        sim.rewrite_reply("GET", BOOK, duplicate_row(twin), account=LAST, times=None)

    async def scenario() -> SweepReport:
        async with guard.context() as ctx:
            return await pre_read_then_sweep(ctx, sim, between)

    report = asyncio.run(scenario())
    others = {o for a, ids in opened.items() if a != LAST for o in ids}
    assert Counter(cancelled_ids(sim)) == Counter(dict.fromkeys(others, 1))
    assert [a for a, _ in report.unread_accounts] == [LAST]
    assert sim.order(twin).status != "CL"
    assert report.result == "incomplete" and not report.complete


HEARTBEAT = """  - name: strategy-a
    heartbeat: {file: /run/strategy-a/hb, stale_after: 30s}
    match: {boards: [HOSE]}
"""


def heartbeat_scenario(sim: Simulator, tmp_path: Path, max_cancels: int,
                       log: Recorder) -> tuple[SweepReport, SweepReport, list[int]]:
    """A poll at 10:00:00 (heartbeat fresh: nothing matches), then the heartbeat goes stale
    and the daemon's critical sweep runs at 10:00:10, estimating from the poll's books."""
    guard = Guard(sim, tmp_path / "state", rules(max_cancels, extra=HEARTBEAT))
    stale: dict[str, str] = {}
    marks: list[int] = []

    async def scenario() -> tuple[SweepReport, SweepReport]:
        async with guard.context(log=log) as ctx:
            ctx.signals = lambda: dict(stale)
            sim.set_clock(at(sim, 10, 0, 0))
            poll = await run_sweep(ctx, "poll")
            stale["strategy-a"] = "heartbeat /run/strategy-a/hb is 31s old"
            await asyncio.sleep(1.2)
            sim.set_clock(at(sim, 10, 0, 10))
            marks.append(len(sim.requests))
            return poll, await run_sweep(ctx, "heartbeat:strategy-a", critical=True)

    poll, hb = asyncio.run(scenario())
    return poll, hb, marks


def test_a_heartbeat_sweep_estimates_from_the_polls_books_at_its_own_signals(
        sim: Simulator, tmp_path: Path) -> None:
    """The poll 10 s before matched nothing (the heartbeat was fresh); the critical sweep
    counts those books with the heartbeat stale: 12 within 20, so the first account starts
    before the last book is asked for, and every order is cancelled once."""
    opened = setup(sim)
    poll, hb, marks = heartbeat_scenario(sim, tmp_path, 20, Recorder())
    assert poll.result == "nothing_to_do" and poll.sent == ()
    every = {o for ids in opened.values() for o in ids}
    assert Counter(cancelled_ids(sim)) == Counter(dict.fromkeys(every, 1))
    assert hb.result == "ok" and len(hb.sent) == 12
    reqs = sim.requests[marks[0]:]
    first_delete = min(i for i, r in enumerate(reqs) if r.method == "DELETE")
    last_book = max(i for i, r in enumerate(reqs)
                    if r.path == BOOK and r.query.get("accountNo") == LAST)
    assert first_delete < last_book


def test_a_heartbeat_sweep_whose_estimate_is_over_the_limit_trips_before_sending(
        sim: Simulator, tmp_path: Path) -> None:
    """Same, limit 11: the poll's books counted with the heartbeat stale say 12, so nothing
    starts early, the fresh count trips the breaker exactly, and nothing is sent (had the
    estimate been taken without the stale heartbeat, it would have said 0 and started)."""
    setup(sim)
    log = Recorder()
    _, hb, _ = heartbeat_scenario(sim, tmp_path, 11, log)
    assert cancelled_ids(sim) == [] and hb.sent == ()
    assert hb.result == "blocked" and hb.plan.tripped
    [tripped] = log.named("breaker.tripped")
    assert tripped["matches"] == 12 and "late" not in tripped


def test_cancel_all_shares_the_guards_claims_and_leaves_its_slow_accounts_alone(
        sim: Simulator, tmp_path: Path) -> None:
    """``press`` runs on a copy of the guard's context: the claims and the recent books are
    the guard's own (a cancel-all beside a sweep never double-sends), and the copy's own
    bookkeeping (slow accounts) does not leak back into the guard's."""
    from guard.service.panic import CancelAll, press

    opened = setup(sim)
    guard = Guard(sim, tmp_path / "state", rules())
    sim.set_clock(at(sim, 10, 0, 0))

    async def scenario() -> tuple[int, set[str], bool]:
        async with guard.context() as ctx:
            ctx.slow_accounts.add("someone")
            before = id(ctx.recent)
            result = await press(ctx, CancelAll())
            shared = id(ctx.recent) == before and bool(
                ctx.recent.within(ACCOUNTS, 60.0))
            assert not ctx.in_flight  # every claim released
            return len(result.rows), set(ctx.slow_accounts), shared

    rows, slow, shared = asyncio.run(scenario())
    every = {o for ids in opened.values() for o in ids}
    assert rows == 12 and Counter(cancelled_ids(sim)) == Counter(dict.fromkeys(every, 1))
    assert slow == {"someone"} and shared
