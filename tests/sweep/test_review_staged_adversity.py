"""A critical sweep that starts accounts as their fresh books arrive, under adversity: the
journal filling after the first DELETE, the session lost after it, an account whose fresh read
is slow and that has no estimate, an account whose fresh read fails, estimates far above the
truth, a dry run whose breaker trips late, and three sweeps of one guard at once.

Set up as ``test_preclose_staged.py``: twelve accounts (more books than one burst of the
budget), the daemon's pre-read at 14:24:52, the sweep at 14:25, through the real SDK on the
simulator. Events are injected from the sweep's own log (in the event loop), never by a timer.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from kit import BATCH, BOOK, FRESH, SINGLE
from kit.disk import fill, small_disk
from kit.log import OnEvent, Recorder
from kit.ops import until
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

from guard.errors import JournalError, ReauthRequired
from guard.simulator.control import Simulator
from guard.simulator.faults import Fault
from guard.snapshot.fetch import pre_read
from guard.sweep import SweepContext, SweepReport, run_sweep


def journaled(guard: Guard) -> tuple[dict[str, str], list[str], list[str]]:
    """(order -> decision action, orders with an intent, orders with an outcome)."""
    with guard.journal() as j:
        actions = dict(j.query("SELECT order_id, action FROM decisions"))
        intents = [r[0] for r in j.query("SELECT order_id FROM intents")]
        outcomes = [r[0] for r in j.query("SELECT order_id FROM outcomes")]
    return actions, intents, outcomes


def test_a_journal_that_fills_after_the_first_delete_starts_no_other_account(
        sim: Simulator, tmp_path: Path) -> None:
    """The disk fills the moment the first DELETE is answered. The accounts whose decisions
    could not be journaled send nothing (record before you act); what went out is logged and
    confirmed in the log; the sweep ends with JournalError; once the disk is freed the next
    sweep reconciles it and cancels the rest, each order once."""
    opened = setup(sim)
    with small_disk(tmp_path / "state") as state:
        guard = Guard(sim, state, rules())
        fillers: list[Path] = []
        log = OnEvent("cancel.sent", lambda: fillers.append(fill(state)))

        async def scenario() -> SweepReport:
            async with guard.context(log=log) as ctx:
                return await pre_read_then_sweep(ctx, sim)

        with pytest.raises(JournalError, match="full"):
            asyncio.run(scenario())
        sent = cancelled_ids(sim)
        assert len(sent) == len(log.named("cancel.sent")) >= 1  # the log is the record
        assert len(log.named("cancel.confirmed")) == len(sent)
        assert "decisions" in {f.get("step") for f in log.named("journal.write_failed")}
        fillers[0].unlink()

        actions, intents, _ = journaled(guard)
        # Nothing went out for an order whose decision (and intent) is not in the journal.
        assert set(sent) <= set(intents) <= {o for o, a in actions.items() if a == "cancel"}
        assert len(actions) < len(ACCOUNTS)  # some accounts never started

        again = asyncio.run(guard.asweep(log=Recorder()))
        assert again.result == "ok"
        every = {o for ids in opened.values() for o in ids}
        assert Counter(cancelled_ids(sim)) == Counter(dict.fromkeys(every, 1))
        assert all(sim.order(o).status == "CL" for o in every)
        assert_one_outcome_per_intent(guard.journal_path)
        assert_no_double_cancel(sim)


def test_a_session_lost_after_the_first_delete_sends_nothing_more(
        sim: Simulator, tmp_path: Path) -> None:
    """Another login kills the session as the first DELETE is answered: the sweep raises
    ReauthRequired, is journaled aborted, and leaves every cancel that went out as an open
    intent for the next start to reconcile; no DELETE leaves without its journaled intent."""
    setup(sim)
    guard = Guard(sim, tmp_path / "state", rules())
    log = OnEvent("cancel.sent", sim.revoke_session)

    async def scenario() -> SweepReport:
        async with guard.context(log=log) as ctx:
            return await pre_read_then_sweep(ctx, sim)

    with pytest.raises(ReauthRequired):
        asyncio.run(scenario())
    accepted = sim.accepted_cancels()
    assert len(accepted) == len(log.named("cancel.sent")) >= 1
    actions, intents, outcomes = journaled(guard)
    assert set(accepted) <= set(intents) <= {o for o, a in actions.items() if a == "cancel"}
    assert outcomes == []  # nothing could confirm: the intents stay open for reconcile
    with guard.journal() as j:
        assert {i.order_id for i in j.open_intents()} == set(intents)
        [(result,)] = j.query("SELECT result FROM sweep_results")
    assert result == "aborted"
    assert_no_double_cancel(sim)


def test_an_account_without_an_estimate_whose_read_is_slow_holds_every_start_until_cut_off(
        sim: Simulator, tmp_path: Path) -> None:
    """The last account's pre-read failed (no estimate: unbounded), and its fresh read is
    slower than the straggler cut-off: nothing starts before it is cut off, then every other
    account goes, and the sweep is incomplete, naming it."""
    opened = setup(sim)
    sim.inject(Fault("error", "GET", BOOK, status=503, times=None, account=LAST))

    def between() -> None:
        sim.faults.clear()
        sim.inject(Fault("latency", "GET", BOOK, seconds=3.0, times=None, account=LAST))

    guard = Guard(sim, tmp_path / "state", rules())
    log = OnEvent("", lambda: None)

    async def scenario() -> SweepReport:
        async with guard.context(log=log) as ctx:
            return await pre_read_then_sweep(ctx, sim, between, pre_read_ok=11)

    report = asyncio.run(scenario())
    events = log.events()
    assert events.index("book.read_slow") < events.index("cancel.sent")
    assert [a for a, _ in report.unread_accounts] == [LAST]
    assert report.result == "incomplete" and not report.complete
    expected = {o for a, ids in opened.items() if a != LAST for o in ids}
    assert Counter(cancelled_ids(sim)) == Counter(dict.fromkeys(expected, 1))
    assert sim.order(opened[LAST][0]).status != "CL"
    actions, _, _ = journaled(guard)
    assert opened[LAST][0] not in actions  # never read: nothing decided about it
    assert_no_double_cancel(sim)


def test_an_account_whose_fresh_read_fails_counts_nothing_and_sends_nothing(
        sim: Simulator, tmp_path: Path) -> None:
    """The last account had an estimate of 16 (over the limit with the others'), then its
    fresh read fails: its estimate bounded the others until then, it sends nothing, the
    others (11, within 20) are cancelled, and the sweep is incomplete."""
    opened = setup(sim)
    surge = open_fpt(sim, LAST, 15)
    guard = Guard(sim, tmp_path / "state", rules(max_cancels=20))

    def between() -> None:
        sim.inject(Fault("error", "GET", BOOK, status=503, times=None, account=LAST))

    log = OnEvent("", lambda: None)

    async def scenario() -> SweepReport:
        async with guard.context(log=log) as ctx:
            return await pre_read_then_sweep(ctx, sim, between)

    report = asyncio.run(scenario())
    expected = {o for a, ids in opened.items() if a != LAST for o in ids}
    assert Counter(cancelled_ids(sim)) == Counter(dict.fromkeys(expected, 1))
    assert not set(cancelled_ids(sim)) & (set(surge) | set(opened[LAST]))
    assert [a for a, _ in report.unread_accounts] == [LAST]
    assert report.result == "incomplete" and not report.plan.tripped
    assert log.named("breaker.tripped") == []
    assert_no_double_cancel(sim)


def test_an_estimate_far_above_the_truth_delays_but_never_trips(
        sim: Simulator, tmp_path: Path) -> None:
    """The pre-read counts 26 (over 20); ten of them fill before the second: the fresh count
    is 16, so the breaker does not trip and every open match is cancelled, once."""
    opened = setup(sim)
    extra = open_fpt(sim, LAST, 14)
    guard = Guard(sim, tmp_path / "state", rules(max_cancels=20))

    marks: list[int] = []

    def between() -> None:
        for order in extra[:10]:
            sim.fill(order)
        marks.append(len(sim.requests))  # the sweep's requests come after this

    log = OnEvent("", lambda: None)

    async def scenario() -> SweepReport:
        async with guard.context(log=log) as ctx:
            return await pre_read_then_sweep(ctx, sim, between)

    report = asyncio.run(scenario())
    expected = {o for ids in opened.values() for o in ids} | set(extra[10:])
    assert Counter(cancelled_ids(sim)) == Counter(dict.fromkeys(expected, 1))
    assert report.result == "ok" and not report.plan.tripped
    assert len(report.plan.targets) == len(report.sent) == len(report.outcomes) == 16
    assert report.counts()["cancelled"] == 16
    assert log.named("breaker.tripped") == []
    # Nothing started while the estimate said 26: the first DELETE follows LAST's fresh book.
    reqs = sim.requests[marks[0]:]
    first_delete = min(i for i, r in enumerate(reqs) if r.method == "DELETE")
    assert min(i for i, r in enumerate(reqs)
               if r.path == BOOK and r.query.get("accountNo") == LAST) < first_delete
    assert_one_outcome_per_intent(guard.journal_path)


def test_a_dry_run_whose_breaker_trips_late_sends_nothing_and_says_what_each_row_was(
        sim: Simulator, tmp_path: Path) -> None:
    """Dry run, 15 orders placed in the last account after the pre-read (27 > 20): zero
    DELETEs, no intent, result blocked; the accounts decided before the trip are journaled
    as the dry run's, the last one as the breaker's."""
    opened = setup(sim)
    guard = Guard(sim, tmp_path / "state", rules(max_cancels=20, dry=True))
    surge: list[str] = []
    log = OnEvent("", lambda: None)

    async def scenario() -> SweepReport:
        async with guard.context(log=log) as ctx:
            return await pre_read_then_sweep(ctx, sim, lambda: surge.extend(
                open_fpt(sim, LAST, 15)))

    report = asyncio.run(scenario())
    assert cancelled_ids(sim) == [] and report.sent == () and report.outcomes == ()
    assert report.result == "blocked" and report.plan.tripped and report.plan.batches == ()
    actions, intents, _ = journaled(guard)
    assert intents == []
    last = set(surge) | set(opened[LAST])
    assert set(actions) == {o for ids in opened.values() for o in ids} | set(surge)
    assert {actions[o] for o in last} == {
        "blocked: circuit breaker: 27 matches > max_cancels_per_sweep 20"}
    assert {a for o, a in actions.items() if o not in last} <= {
        "blocked: dry run", "blocked: circuit breaker: 27 matches > max_cancels_per_sweep 20"}
    [tripped] = log.named("breaker.tripped")
    assert tripped["matches"] == 27 and "late" not in tripped  # nothing started to send


def test_three_sweeps_of_one_guard_at_the_second_cancel_each_order_once(
        sim: Simulator, tmp_path: Path) -> None:
    """A staged pre-close, a poll and a staged ``at`` sweep of one guard start together after
    the pre-read: the claims keep every order to one cancel and one outcome."""
    opened = setup(sim)
    guard = Guard(sim, tmp_path / "state", rules())

    async def scenario() -> list[SweepReport]:
        async with guard.context() as ctx:
            sim.set_clock(at(sim, 14, 24, 52))
            await ctx.broker.ensure_session()
            await pre_read(ctx.broker, list(ACCOUNTS), sim.clock().date(), ctx.recent, ctx.log)
            await asyncio.sleep(1.2)
            sim.set_clock(at(sim, 14, 25, 0))
            return list(await asyncio.gather(
                run_sweep(ctx, TRIGGER, critical=True), run_sweep(ctx, "poll"),
                run_sweep(ctx, "at:14:25", critical=True)))

    reports = asyncio.run(scenario())
    every = {o for ids in opened.values() for o in ids}
    assert Counter(cancelled_ids(sim)) == Counter(dict.fromkeys(every, 1))
    assert sum(len(r.sent) for r in reports) == len(every)
    assert all(r.result in ("ok", "nothing_to_do") for r in reports)
    assert_one_outcome_per_intent(guard.journal_path)
    assert_no_double_cancel(sim)


# ---- one rule set, one pause state per sweep (review findings, fixed) -----------------------

WIDER_DRY = rules().replace('symbols: ["FPT"]', 'symbols: ["FPT", "VNM"]').replace(
    "dry_run: false", "dry_run: true")


def test_a_reload_to_a_dry_run_rule_during_a_poll_cancels_nothing_it_selects(
        sim: Simulator, tmp_path: Path) -> None:
    """SIGHUP swaps ``ctx.rules`` at any await: a sweep decides every account by the rules it
    started with, so a new rule whose file says dry_run never cancels live."""
    from guard.config.loader import load_rules_text

    setup(sim)
    vnm = {sim.seed_order(a, "VNM", "B", 62_000, 100, age=FRESH) for a in ACCOUNTS}
    sim.inject(Fault("latency", "GET", BOOK, seconds=0.5, times=None, account=LAST))
    guard = Guard(sim, tmp_path / "state", rules())
    sim.set_clock(at(sim, 14, 25, 0))  # the FPT rule is due

    async def scenario() -> SweepReport:
        async with guard.context() as ctx:
            await ctx.broker.ensure_session()

            async def sighup() -> None:  # what Daemon.reload does, mid-read
                await until(lambda: bool(sim.requests_to("GET", BOOK)), 10)
                ctx.rules = load_rules_text(WIDER_DRY, "rules.yaml")

            task = asyncio.create_task(sighup())
            report = await run_sweep(ctx, "poll")
            await task
            return report

    report = asyncio.run(scenario())
    assert not vnm & set(cancelled_ids(sim))
    assert all(d.order.symbol == "FPT" for d in report.decisions if d.verdict)
    assert report.result == "ok" and len(report.sent) == 12


def test_a_reload_to_a_dry_run_rule_during_a_staged_sweep_cancels_nothing_it_selects(
        sim: Simulator, tmp_path: Path) -> None:
    from guard.config.loader import load_rules_text

    setup(sim)
    vnm = {sim.seed_order(a, "VNM", "B", 62_000, 100, age=FRESH) for a in ACCOUNTS}
    guard = Guard(sim, tmp_path / "state", rules())
    holder: list[SweepContext] = []
    log = OnEvent("order.matched", lambda: setattr(
        holder[0], "rules", load_rules_text(WIDER_DRY, "rules.yaml")))

    async def scenario() -> SweepReport:
        async with guard.context(log=log) as ctx:
            holder.append(ctx)
            return await pre_read_then_sweep(ctx, sim)

    report = asyncio.run(scenario())
    assert not vnm & set(cancelled_ids(sim))
    assert report.result == "ok" and len(report.sent) == 12


def test_a_pause_file_touched_mid_sweep_stops_every_account_not_yet_started(
        sim: Simulator, tmp_path: Path) -> None:
    """The pause file appears as the first DELETE goes out: the accounts already sending
    finish, no other starts, and the report says so coherently (incomplete, not "blocked",
    since cancels went out; the held ones counted and journaled as paused)."""
    opened = setup(sim)
    guard = Guard(sim, tmp_path / "state", rules())
    log = OnEvent("cancel.sent", (guard.state_dir / "paused").touch)

    async def scenario() -> SweepReport:
        async with guard.context(log=log) as ctx:
            return await pre_read_then_sweep(ctx, sim)

    report = asyncio.run(scenario())
    sent = set(cancelled_ids(sim))
    assert 0 < len(sent) < 12 and len(report.sent) == len(sent)
    assert report.result == "incomplete"
    actions, _, _ = journaled(guard)
    held = {o for ids in opened.values() for o in ids} - sent
    assert {actions[o] for o in sent} == {"cancel"}
    assert {actions[o] for o in held} == {"blocked: paused by the pause file"}
    [skipped] = log.named("cancel.skipped")
    assert skipped["would_cancel"] == len(held)
    [finished] = log.named("sweep.finished")
    assert finished["paused"] == len(held)  # what the sweep_failed alert names
    assert all(sim.order(o).status != "CL" for o in held)


def test_a_pause_file_touched_while_a_poll_reads_its_books_stops_it(
        sim: Simulator, tmp_path: Path) -> None:
    """A pause seen before any account started: nothing goes out, the sweep is "blocked"."""
    opened = setup(sim)
    sim.inject(Fault("latency", "GET", BOOK, seconds=0.5, times=None, account=LAST))
    guard = Guard(sim, tmp_path / "state", rules())
    sim.set_clock(at(sim, 14, 25, 0))

    async def scenario() -> SweepReport:
        async with guard.context() as ctx:
            await ctx.broker.ensure_session()

            async def pause() -> None:
                await until(lambda: bool(sim.requests_to("GET", BOOK)), 10)
                (guard.state_dir / "paused").touch()

            task = asyncio.create_task(pause())
            report = await run_sweep(ctx, "poll")
            await task
            return report

    report = asyncio.run(scenario())
    assert cancelled_ids(sim) == [] and report.result == "blocked"
    assert len(report.plan.targets) == len(opened)


def test_a_cancelled_sweep_releases_no_claim_while_an_account_still_sends(
        sim: Simulator, tmp_path: Path) -> None:
    """Cancelling the sweep task (a drain timing out) cancels its account runs too, and only
    then releases their claims: an overlapping sweep never sees an order as free while its
    cancel may still be going out."""
    setup(sim)
    guard = Guard(sim, tmp_path / "state", rules())
    sim.inject(Fault("latency", "DELETE", "", seconds=1.0, times=None))
    seen: list[tuple[int, bool]] = []

    async def scenario() -> None:
        async with guard.context() as ctx:
            task = asyncio.create_task(pre_read_then_sweep(ctx, sim))
            await until(lambda: bool(sim.requests_to("DELETE", BATCH)
                                     + sim.requests_to("DELETE", SINGLE)), 20)
            assert ctx.in_flight  # claimed while sending
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            running = [t for t in asyncio.all_tasks()
                       if t is not asyncio.current_task() and not t.done()]
            seen.append((len(ctx.in_flight), bool(running)))

    asyncio.run(scenario())
    # Claims released only once no account run of the sweep is left running.
    assert seen == [(0, False)]


def test_a_claim_released_between_counting_and_starting_is_not_sent_uncounted(
        sim: Simulator, tmp_path: Path) -> None:
    """Another sweep holds a claim on one order while this sweep counts; it releases it
    before this sweep starts that account. The order was not counted by the breaker, so this
    sweep does not send it (the other sweep owns its outcome)."""
    opened = setup(sim)
    first = ACCOUNTS[0]
    claimed = sim.seed_order(first, "FPT", "B", 95_000, 100, age=FRESH)
    guard = Guard(sim, tmp_path / "state", rules())
    sim.set_clock(at(sim, 14, 25, 0))
    holder: list[SweepContext] = []

    class ReleaseOnLast(Recorder):
        """Releases the claim as the last account's order is logged matched (the 13th: the
        accounts are evaluated in order, the first one has two), after the first account was
        counted and before it starts."""

        def __getattr__(self, level: str) -> Any:
            record = super().__getattr__(level)

            def log(event: str, **fields: Any) -> None:
                record(event, **fields)
                if event == "order.matched" and len(self.named("order.matched")) == 13:
                    holder[0].in_flight.discard((first, claimed))
            return log

    async def scenario() -> SweepReport:
        async with guard.context(log=ReleaseOnLast()) as ctx:
            holder.append(ctx)
            ctx.in_flight.add((first, claimed))  # another sweep's cancel of it is going out
            return await run_sweep(ctx, "poll")

    report = asyncio.run(scenario())
    assert not holder[0].in_flight  # the release happened, mid-sweep
    assert claimed not in cancelled_ids(sim)
    assert set(cancelled_ids(sim)) == {o for ids in opened.values() for o in ids}
    assert report.result == "ok"
