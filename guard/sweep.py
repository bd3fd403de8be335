"""One sweep: snapshot -> evaluate -> plan -> send -> confirm -> cash -> record.

This module only composes the steps; each lives in the package named for it. A sweep is safe
to run at any time: the engine refuses banned windows, the plan refuses anything not decided,
and the sender never cancels an order twice.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Literal

from guard.act.plan import CancelPlan, plan_cancels
from guard.act.send import SendAborted, send_plan
from guard.broker.budget import Budget, Priority, answer_within, spending
from guard.broker.ports import BrokerPort
from guard.clock import EXCHANGE_TZ, Clock, system_clock
from guard.config.schema import RulesFile
from guard.confirm.cash import CashRelease, cash_release
from guard.confirm.confirm import confirm
from guard.confirm.reconcile import reconcile
from guard.errors import BrokerError, JournalError, ReauthRequired
from guard.evaluate.engine import Decision, evaluate
from guard.market.calendar import MarketCalendar
from guard.model import CancelTarget, Outcome, SendResult
from guard.record.journal import Journal
from guard.record.log import Log
from guard.snapshot.boards import BoardResolver
from guard.snapshot.fetch import STRAGGLER_S, Snapshot, read_cash, take_snapshot

__all__ = ["SweepContext", "SweepReport", "run_sweep"]

# How long the "before" cash read's requests may take (after the budget lets each go): it is
# only a measurement, and an account's cancels wait for it.
CASH_BEFORE_S = 1.0

# An order whose cancel was accepted and never applied this many times today is not sent
# again that day (see README, "Resends").
MAX_UNCONFIRMED = 3

SweepResult = Literal["ok", "nothing_to_do", "dry_run", "blocked", "incomplete", "failed"]


@dataclass
class SweepContext:
    """What every sweep needs. ``rules`` is replaced on reload (SIGHUP); the rest is fixed.

    ``clock`` is the market clock the rules are evaluated at; ``wall`` stamps the journal.
    ``owns_state`` is false for a guard that runs without the state lock (``check``): it may
    run beside a live guard, so it must not reconcile that guard's open intents (they may be
    cancels still on the wire), and it never sends.
    ``signals`` is asked once per sweep, after the books are read, for the heartbeat rules
    that are stale at that moment (rule name -> why); see ``guard.snapshot.heartbeat``.
    """

    broker: BrokerPort
    rules: RulesFile
    calendar: MarketCalendar
    journal: Journal
    state_dir: Path
    clock: Clock
    log: Log
    force_dry_run: bool = False
    wall: Clock = system_clock
    boards: BoardResolver | None = None
    in_flight: set[tuple[str, str]] = field(default_factory=set)
    owns_state: bool = True
    signals: Callable[[], Mapping[str, str]] = field(default=lambda: {})
    honour_pause: bool = True  # False only for the operator's own cancel-all
    # How long one slow account may hold the others' decision (None: no cut-off), and the
    # accounts the last sweep cut off, which this one waits for in full.
    straggler_s: float | None = STRAGGLER_S
    slow_accounts: set[str] = field(default_factory=set)

    def __post_init__(self) -> None:
        if self.boards is None:
            self.boards = BoardResolver(self.broker)

    @property
    def paused(self) -> bool:
        return self.honour_pause and (self.state_dir / "paused").exists()

    @property
    def dry_run(self) -> bool:
        return self.force_dry_run or self.rules.dry_run


@dataclass(frozen=True)
class SweepReport:
    """Everything one sweep decided and proved; ``complete`` is the exit status of --once."""

    sweep_id: int
    trigger: str
    market_time: datetime
    dry_run: bool
    decisions: tuple[Decision, ...]
    plan: CancelPlan
    sent: tuple[SendResult, ...]
    outcomes: tuple[Outcome, ...]
    cash: tuple[CashRelease, ...]
    unread_accounts: tuple[tuple[str, str], ...]
    duration_s: float
    result: SweepResult

    @property
    def complete(self) -> bool:
        """Every decided cancel reached a final, good outcome, and every account was read."""
        return self.result in ("ok", "nothing_to_do", "dry_run") and not self.unread_accounts

    def counts(self) -> dict[str, int]:
        kinds = Counter(o.kind for o in self.outcomes)
        return {
            "open_orders": len(self.decisions),
            "matched": sum(1 for d in self.decisions if d.verdict),
            "held": sum(1 for d in self.decisions if d.verdict and d.held),
            "targets": len(self.plan.targets),
            "sent": len(self.sent),
            **{k: kinds.get(k, 0) for k in ("cancelled", "partially_cancelled", "filled_first",
                                            "already_done", "failed", "unconfirmed")},
        }


def _decision_rows(decisions: list[Decision], plan: CancelPlan) -> list[tuple[Any, ...]]:
    targets = {t.key for t in plan.targets}
    rows = []
    for d in decisions:
        key = (d.order.account, d.order.order_id)
        if key in targets:
            action = "cancel" if not plan.blocked else f"blocked: {plan.blocked}"
        else:
            action = "hold" if d.verdict else "none"
        rows.append((d.order.account, d.order.order_id, d.order.symbol, d.order.status,
                     d.order.remaining, ",".join(d.rules), d.reason, d.held, action))
    return rows


def _log_decisions(log: Log, decisions: list[Decision]) -> None:
    for d in decisions:
        if not d.verdict:
            continue
        o = d.order
        bound = log.bind(account=o.account, order_id=o.order_id, symbol=o.symbol,
                         rule=",".join(d.rules))
        if d.hold is not None:
            bound.info("order.held", reason=d.hold.text, hold=d.hold.kind.value, status=o.status)
        else:
            bound.info("order.matched", reason=d.reason,
                       remaining=o.remaining, status=o.status, side=o.side,
                       price=str(o.price) if o.price is not None else o.price_word)


class _JournalWatch:
    """The sweep's one way to write the journal once anything may have been sent: a failure
    is logged (``journal.write_failed``) and kept, and the sweep goes on proving and logging
    what it already sent; it ends by raising the first failure (exit 5)."""

    def __init__(self, log: Log) -> None:
        self.log = log
        self.error: JournalError | None = None

    def failed(self, exc: JournalError, step: str) -> None:
        self.log.error("journal.write_failed", step=step, error=str(exc))
        if self.error is None:
            self.error = exc

    def write(self, step: str, fn: Callable[..., object], *args: Any) -> None:
        if self.error is not None:
            return  # the journal already failed: the log is the record from here on
        try:
            fn(*args)
        except JournalError as exc:
            self.failed(exc, step)


async def run_sweep(ctx: SweepContext, trigger: str, *, critical: bool = False) -> SweepReport:
    """Run one full sweep and record it. ``critical``: a sweep whose instant matters (the
    daemon's pre-close, ``at`` and heartbeat sweeps), which never waits past the straggler
    cut-off for a slow account.

    Raises ``ReauthRequired`` if the session is gone (the intents already written are
    reconciled on the next start), and ``JournalError`` if the journal cannot be written:
    before anything was sent, nothing is sent; after, every cancel that went out is still
    confirmed and logged, then the error ends the sweep. One account's failures (its book,
    its open intents, its cash) never stop another's sweep: that account is reported unread.
    """
    t0 = time.monotonic()
    now = ctx.clock()
    rules = ctx.rules
    dry = ctx.dry_run
    log = ctx.log.bind(trigger=trigger)
    try:
        sweep_id = ctx.journal.start_sweep(ctx.wall(), trigger, now, dry)
    except JournalError as exc:
        log.error("journal.write_failed", step="start_sweep", error=str(exc))
        raise
    log = log.bind(sweep_id=sweep_id)
    log.info("sweep.started", market_time=now.isoformat(timespec="seconds"), dry_run=dry,
             accounts=list(rules.accounts))
    watch = _JournalWatch(log)
    try:
        await ctx.broker.ensure_session()
        deferred: frozenset[tuple[str, str]] = frozenset()
        unread_at_reconcile: tuple[tuple[str, str], ...] = ()
        if ctx.owns_state and ctx.journal.open_intents():
            # Intents of a sweep still running in this process are not orphans: skip them.
            reconciled = await reconcile(
                ctx.broker, ctx.journal, wall=ctx.wall, log=log,
                timeout=rules.limits.confirm_timeout, exclude=set(ctx.in_flight),
                on_the_wire=timedelta(seconds=ctx.broker.request_timeout_s + 5))
            deferred = reconciled.deferred
            unread_at_reconcile = reconciled.unread
        # The exchange's date, whatever zone the clock answers in (``--at ...Z`` is UTC).
        day = now.astimezone(EXCHANGE_TZ).date()
        # An account whose open intents could not be reconciled may have a dead process's
        # cancel on the wire: it is not read again, and nothing of it is decided now.
        skip = {a for a, _ in unread_at_reconcile}
        # A poll waits in full for an account the last sweep cut off; a critical sweep (a
        # pre-close, an `at`, a heartbeat going stale) never does: its time is the point.
        patient = () if critical else frozenset(ctx.slow_accounts)
        snapshot = await take_snapshot(ctx.broker, [a for a in rules.accounts if a not in skip],
                                       day, ctx.clock, log, queued=_queued(ctx.broker),
                                       straggler_s=ctx.straggler_s, patient=patient)
        read = {b.account for b in snapshot.books}
        ctx.slow_accounts = (ctx.slow_accounts - read) | set(snapshot.slow)
        if unread_at_reconcile:
            snapshot = Snapshot(snapshot.books, snapshot.failures + unread_at_reconcile)
        assert ctx.boards is not None
        boards = await ctx.boards.for_day(day, rules.boards, log)
        orders = [o for book in snapshot.books for o in book.orders]
        decisions = evaluate(orders, rules, now, ctx.calendar, boards, ctx.signals())
        _log_decisions(log, decisions)

        given_up = _given_up(ctx, log, decisions, now)
        plan = plan_cancels(decisions, max_cancels=rules.limits.max_cancels_per_sweep,
                            dry_run=dry, paused=ctx.paused,
                            in_flight=ctx.in_flight | deferred | given_up)
        # Record before you act: the decisions are journaled before any DELETE can leave.
        ctx.journal.decisions(sweep_id, _decision_rows(decisions, plan))
    except JournalError as exc:
        watch.failed(exc, "before_send")
        _finish_aborted(ctx, sweep_id, log, exc)
        raise
    except Exception as exc:
        _finish_aborted(ctx, sweep_id, log, exc)
        raise
    # Claim the targets at once, with no await between planning and claiming: a sweep that
    # overlaps this one (a poll beside a fixed-time sweep) must see them as in flight, or
    # both would send a cancel for the same order.
    claimed = {t.key for b in plan.batches for t in b}
    ctx.in_flight.update(claimed)
    try:
        return await _act(ctx, trigger, log, t0, now, sweep_id, dry, snapshot, decisions, plan,
                          deferred, given_up, watch)
    except Exception as exc:
        # send_plan returns or raises only once every request it started has been answered,
        # so nothing of this sweep is on the wire: its open intents need no waiting (see
        # reconcile). A cancelled task or a killed process writes no such row.
        _finish_aborted(ctx, sweep_id, log, exc)
        raise
    finally:
        ctx.in_flight.difference_update(claimed)


def _queued(broker: object) -> Callable[[], int]:
    """How many requests wait for the broker's budget now (0 for a broker without one)."""
    budget = getattr(broker, "budget", None)
    if isinstance(budget, Budget):
        return lambda: budget.waiting
    return lambda: 0


def _given_up(ctx: SweepContext, log: Log, decisions: list[Decision],
              now: datetime) -> frozenset[tuple[str, str]]:
    """The selected orders whose cancels the broker accepted and never applied
    ``MAX_UNCONFIRMED`` times today: not sent again (each is an error in the log, and the
    sweep is incomplete), so a broker that swallows cancels is not asked forever."""
    day = now.astimezone(EXCHANGE_TZ).replace(hour=0, minute=0, second=0, microsecond=0)
    counts = ctx.journal.unconfirmed_counts(day)
    if not counts:
        return frozenset()
    out = set()
    for d in decisions:
        key = (d.order.account, d.order.order_id)
        if d.cancel and counts.get(key, 0) >= MAX_UNCONFIRMED:
            out.add(key)
            log.error("cancel.given_up", account=d.order.account, order_id=d.order.order_id,
                      symbol=d.order.symbol, unconfirmed=counts[key],
                      action="cancel it by hand; the guard will not send it again today")
    return frozenset(out)


def _finish_aborted(ctx: SweepContext, sweep_id: int, log: Log, exc: BaseException) -> None:
    """Journal that the sweep ended early, if the journal still takes writes (a failing
    journal must not replace the error that ended the sweep with its own)."""
    try:
        ctx.journal.finish_sweep(sweep_id, ctx.wall(), "aborted",
                                 {"error": type(exc).__name__, "requests_on_the_wire": 0})
    except JournalError as again:
        log.error("journal.write_failed", step="finish_sweep", error=str(again))


@dataclass
class _AccountRun:
    """What one account's cancels came to: sent, confirmed, cash released; ``cause`` is why
    its sending stopped early (``SendAborted``), if it did."""

    sent: list[SendResult]
    outcomes: list[Outcome] = field(default_factory=list)
    releases: list[CashRelease] = field(default_factory=list)
    cause: Exception | None = None


async def _account_run(ctx: SweepContext, log: Log, sweep_id: int, account: str,
                       batches: tuple[tuple[CancelTarget, ...], ...], rank: int,
                       failures: list[Exception], watch: _JournalWatch) -> _AccountRun:
    """One account's cancels: cash before (its cancels wait for it, so it spends at their
    priority), send, confirm, journal the outcomes, then cash after (at the lowest priority:
    nothing waits for it)."""
    rules = ctx.rules
    targets = tuple(t for b in batches for t in b)
    with spending(Priority.CANCEL, rank):
        # Only a measurement: each of its requests gets CASH_BEFORE_S once the budget lets
        # it go, or the cancels go without it (the release is then not measured).
        with answer_within(CASH_BEFORE_S):
            before = await read_cash(ctx.broker, [account], log)
        t_send = time.monotonic()
        run = _AccountRun([])
        try:
            run.sent = await send_plan(
                CancelPlan(targets, batches, None, tripped=False), broker=ctx.broker,
                journal=ctx.journal, sweep_id=sweep_id, clock=ctx.wall, log=log,
                proof_timeout=rules.limits.confirm_timeout.total_seconds(), failures=failures)
        except SendAborted as aborted:
            run.cause, run.sent = aborted.cause, aborted.results  # what went out is confirmed
    if isinstance(run.cause, ReauthRequired):
        return run
    with spending(Priority.CONFIRM, rank):
        run.outcomes = await confirm(run.sent, broker=ctx.broker, log=log, sent_at=t_send,
                                     timeout=rules.limits.confirm_timeout)
    for outcome in run.outcomes:
        order = outcome.sent.target.order
        watch.write("outcome", ctx.journal.outcome, outcome.sent.intent_id, ctx.wall(),
                    order.account, order.order_id, outcome.kind, outcome.cancelled_qty,
                    outcome.final_status, outcome.detail)
    if run.cause is not None or account not in before:
        return run
    with spending(Priority.BACKGROUND, rank):
        after = await read_cash(ctx.broker, [account], log)
    if account in after:
        release = cash_release(account, before[account], after[account], run.outcomes)
        run.releases.append(release)
        event = log.warning if release.mismatch else log.info
        event("cash.released", account=account, basis=release.basis,
              withdrawable_delta=str(release.withdrawable_delta),
              purchasing_power_delta=(None if release.purchasing_power_delta is None
                                      else str(release.purchasing_power_delta)),
              expected=None if release.expected is None else str(release.expected),
              mismatch=release.mismatch)
    return run


async def _act(ctx: SweepContext, trigger: str, log: Log, t0: float, now: datetime,
               sweep_id: int, dry: bool, snapshot: Snapshot, decisions: list[Decision],
               plan: CancelPlan, deferred: frozenset[tuple[str, str]],
               given_up: frozenset[tuple[str, str]], watch: _JournalWatch) -> SweepReport:
    """Send, confirm, release and record what ``plan`` says; the report of the sweep."""
    rules = ctx.rules
    if plan.tripped:
        by_rule = Counter(r for t in plan.targets for r in t.rules)
        log.error("breaker.tripped", matches=len(plan.targets),
                  limit=rules.limits.max_cancels_per_sweep, rules=dict(by_rule))
    elif plan.blocked and plan.targets:
        log.info("cancel.skipped", reason=plan.blocked, would_cancel=len(plan.targets))

    sent: list[SendResult] = []
    outcomes: list[Outcome] = []
    releases: list[CashRelease] = []
    if plan.batches:
        # Each account's cancels go out as soon as the plan is made, every account at once:
        # one slow or failing account (its cash, a batch that must be proved before a resend,
        # its confirmation) never holds another's back. The budget (guard.broker.budget)
        # orders their requests: cancels first, by the order of rules.yaml's accounts.
        rank = {a: i for i, a in enumerate(rules.accounts)}
        batches: dict[str, list[tuple[CancelTarget, ...]]] = {}
        for batch in plan.batches:
            batches.setdefault(batch[0].order.account, []).append(batch)
        failures: list[Exception] = []  # shared: one journal failure stops every account
        runs = await asyncio.gather(*(
            _account_run(ctx, log, sweep_id, account, tuple(items), rank.get(account, len(rank)),
                         failures, watch)
            for account, items in batches.items()), return_exceptions=True)
        problems = [r for r in runs if isinstance(r, BaseException)]
        done = [r for r in runs if isinstance(r, _AccountRun)]
        for run in done:
            sent.extend(run.sent)
            outcomes.extend(run.outcomes)
            releases.extend(run.releases)
        causes = [r.cause for r in done if r.cause is not None]
        for error in problems + causes:
            if isinstance(error, ReauthRequired):
                raise error from None  # no read can confirm: reconciled after login
        for error in problems:
            raise error
        for cause in causes:
            if isinstance(cause, JournalError):
                watch.failed(cause, "send")
            else:
                raise cause  # a bug: raised once what went out is confirmed

    result: SweepResult
    if watch.error is not None:
        result = "failed"
    elif plan.tripped:
        result = "blocked"
    elif plan.blocked == "dry run":
        result = "dry_run"
    elif plan.blocked:
        result = "blocked"
    elif not plan.targets:
        result = "nothing_to_do"
    elif all(o.ok for o in outcomes) and len(outcomes) == len(plan.targets):
        result = "ok"
    else:
        result = "incomplete"
    if (snapshot.failures or deferred or given_up) and result in ("ok", "nothing_to_do",
                                                                    "dry_run"):
        # An account that was not read was not guarded, a deferred intent (a dead process's
        # cancel possibly still on the wire) has no outcome yet, and an order given up on is
        # still open although the rules select it: not "ok".
        result = "incomplete"
    report = SweepReport(sweep_id, trigger, now, dry, tuple(decisions), plan, tuple(sent),
                         tuple(outcomes), tuple(releases), snapshot.failures,
                         time.monotonic() - t0, result)
    summary = {**report.counts(), "duration_s": round(report.duration_s, 3),
               "unread_accounts": [a for a, _ in snapshot.failures],
               "deferred": len(deferred), "given_up": len(given_up)}
    watch.write("finish_sweep", ctx.journal.finish_sweep, sweep_id, ctx.wall(), result, summary)
    finished = log.info if report.complete else log.error
    if watch.error is not None:
        finished("sweep.finished", result=result, journal_error=str(watch.error), **summary)
        raise watch.error
    finished("sweep.finished", result=result, **summary)
    await _type_accounts(ctx, log)
    return report


async def _type_accounts(ctx: SweepContext, log: Log) -> None:
    """Read the day's account types (one ``get_account_info``, cached for the day) after a
    sweep, when nothing waits for the budget, so that the first cash read before a cancel
    (a pre-close sweep's, at its second) never has to spend a request on it."""
    typing = getattr(ctx.broker, "account_typing", None)
    if typing is None or not ctx.rules.accounts or ctx.dry_run:
        return
    try:
        with spending(Priority.BACKGROUND):
            await typing(ctx.rules.accounts[0])
    except (BrokerError, ReauthRequired) as exc:
        log.info("account.typing_deferred", error=str(exc))
