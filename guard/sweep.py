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
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any, Literal

from guard.act.breaker import BreakerGate
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
from guard.market.calendar import Board, MarketCalendar
from guard.model import BookOrder, CancelTarget, Outcome, SendResult
from guard.record.journal import Journal
from guard.record.log import Log
from guard.snapshot.boards import BoardResolver
from guard.snapshot.fetch import STRAGGLER_S, Snapshot, read_cash, take_snapshot
from guard.snapshot.recent import RecentBooks

__all__ = ["SweepContext", "SweepReport", "run_sweep"]

# How long the "before" cash read's requests may take (after the budget lets each go): it is
# only a measurement, and an account's cancels wait for it.
CASH_BEFORE_S = 1.0

# An order whose cancel was accepted and never applied this many times today is not sent
# again that day (see README, "Resends").
MAX_UNCONFIRMED = 3

# A critical sweep estimates an account's matches from a book read at most this long ago (the
# daemon's pre-read, a few seconds before the second); an older one estimates nothing.
ESTIMATE_MAX_AGE_S = 15.0

SweepResult = Literal["ok", "nothing_to_do", "dry_run", "blocked", "incomplete", "failed"]


@dataclass
class SweepContext:
    """What every sweep needs. ``rules`` is replaced on reload (SIGHUP); the rest is fixed.

    ``clock`` is the market clock the rules are evaluated at; ``wall`` stamps the journal.
    ``owns_state`` is false for a guard that runs without the state lock (``check``): it may
    run beside a live guard, so it must not reconcile that guard's open intents (they may be
    cancels still on the wire), and it never sends.
    ``signals`` is asked once per sweep for the heartbeat rules that are stale at that moment
    (rule name -> why; see ``guard.snapshot.heartbeat``): after the books are read, or, in a
    critical sweep that estimates from ``recent`` reads, before.
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
    # Every account's last book read, for a critical sweep's estimates (guard.act.breaker).
    recent: RecentBooks = field(default_factory=RecentBooks)
    # Cancels sent today by sweeps whose breaker tripped late (exchange date -> count): later
    # sweeps count them with their own matches, so the rest of what tripped the breaker is
    # not simply cancelled by the next poll. Cleared by a sweep that fits under the limit
    # with them, and by a new day (or a restart).
    late_trips: dict[date, int] = field(default_factory=dict)

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
    cut-off for a slow account, and which starts each account's cancels as soon as its fresh
    book is in when a recent read bounds what the others can want (``guard.act.breaker``).

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
    stage: _Stage | None = None
    try:
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
            accounts = [a for a in rules.accounts if a not in skip]
            # A poll waits in full for an account the last sweep cut off; a critical sweep (a
            # pre-close, an `at`, a heartbeat going stale) never does: its time is the point.
            patient = () if critical else frozenset(ctx.slow_accounts)
            assert ctx.boards is not None
            boards = await ctx.boards.for_day(day, rules.boards, log)
            midnight = now.astimezone(EXCHANGE_TZ).replace(hour=0, minute=0, second=0,
                                                           microsecond=0)
            stage = _Stage(ctx, log, sweep_id, now, dry, rules, boards, deferred,
                           ctx.journal.unconfirmed_counts(midnight), watch, accounts,
                           carried=ctx.late_trips.get(day, 0))
            if critical:
                stage.estimate(ctx.recent.within(accounts, ESTIMATE_MAX_AGE_S))
            snapshot = await take_snapshot(ctx.broker, accounts, day, ctx.clock, log,
                                           queued=_queued(ctx.broker),
                                           straggler_s=ctx.straggler_s, patient=patient,
                                           on_read=stage.arrive)
            read = {b.account for b in snapshot.books}
            ctx.slow_accounts = (ctx.slow_accounts - read) | set(snapshot.slow)
            if unread_at_reconcile:
                snapshot = Snapshot(snapshot.books, snapshot.failures + unread_at_reconcile)
            stage.settle(snapshot)
            if watch.error is not None and not stage.runs:
                raise watch.error  # nothing went out: the sweep ends here, as before sending
        except Exception as exc:
            if stage is not None:
                await stage.wind_down()  # what already went out is confirmed and journaled
            if isinstance(exc, JournalError) and watch.error is None:
                watch.failed(exc, "before_send")
            _finish_aborted(ctx, sweep_id, log, exc)
            raise
        try:
            return await _finish(ctx, trigger, log, t0, now, sweep_id, dry, snapshot, stage,
                                 watch)
        except Exception as exc:
            # Every account run is awaited before this row is written, so nothing of this
            # sweep is on the wire: its open intents need no waiting (see reconcile). A
            # cancelled task or a killed process writes no such row.
            await stage.wind_down()
            _finish_aborted(ctx, sweep_id, log, exc)
            raise
    finally:
        if stage is not None:
            await stage.cancel_unfinished()  # only when the sweep was cancelled
            ctx.in_flight.difference_update(stage.claimed)


def _queued(broker: object) -> Callable[[], int]:
    """How many requests wait for the broker's budget now (0 for a broker without one)."""
    budget = getattr(broker, "budget", None)
    if isinstance(budget, Budget):
        return lambda: budget.waiting
    return lambda: 0


def _given_up(decisions: list[Decision],
              unconfirmed: Mapping[tuple[str, str], int]) -> frozenset[tuple[str, str]]:
    """The selected orders whose cancels the broker accepted and never applied
    ``MAX_UNCONFIRMED`` times today: not sent again (each is an error in the log, and the
    sweep is incomplete), so a broker that swallows cancels is not asked forever."""
    if not unconfirmed:
        return frozenset()
    return frozenset((d.order.account, d.order.order_id) for d in decisions
                     if d.cancel and unconfirmed.get((d.order.account, d.order.order_id), 0)
                     >= MAX_UNCONFIRMED)


def _log_given_up(log: Log, decisions: list[Decision], given_up: frozenset[tuple[str, str]],
                  unconfirmed: Mapping[tuple[str, str], int]) -> None:
    for d in decisions:
        key = (d.order.account, d.order.order_id)
        if key in given_up:
            log.error("cancel.given_up", account=d.order.account, order_id=d.order.order_id,
                      symbol=d.order.symbol, unconfirmed=unconfirmed[key],
                      action="cancel it by hand; the guard will not send it again today")


class _Stage:
    """One sweep's accounts, from book to cancels.

    Without estimates (a poll) every book is evaluated once all are in, and the breaker counts
    every match before anything starts. With estimates (a critical sweep after the pre-read)
    each book is evaluated as it arrives, and its account starts the moment ``BreakerGate``
    lets it: the first DELETE does not wait for the last account's book.
    """

    def __init__(self, ctx: SweepContext, log: Log, sweep_id: int, now: datetime, dry: bool,
                 rules: RulesFile, boards: Mapping[str, Board],
                 deferred: frozenset[tuple[str, str]],
                 unconfirmed: Mapping[tuple[str, str], int], watch: _JournalWatch,
                 accounts: list[str], *, carried: int = 0) -> None:
        self.ctx, self.log, self.sweep_id, self.now, self.dry = ctx, log, sweep_id, now, dry
        # One rule set and calendar for the whole sweep: a reload (SIGHUP) while books are
        # still arriving must not mix two rule sets in one sweep, nor judge orders by rules
        # whose dry_run this sweep does not honour.
        self.rules, self.calendar = rules, ctx.calendar
        # The pause file is looked at as each account starts, and once seen it holds for the
        # rest of the sweep: the operator's stop is never outrun by a later account.
        self.paused = False
        self.boards, self.deferred, self.unconfirmed, self.watch = (boards, deferred,
                                                                     unconfirmed, watch)
        self.limit = rules.limits.max_cancels_per_sweep
        # Cancels a late trip sent earlier today count against this sweep's limit too.
        self.carried = carried
        self.gate = BreakerGate(max(0, self.limit - carried), tuple(accounts))
        self.rank = {a: i for i, a in enumerate(rules.accounts)}
        self.counted: dict[str, frozenset[tuple[str, str]]] = {}  # the targets the gate counted
        self.signals: Mapping[str, str] | None = None
        self.waiting: dict[str, tuple[BookOrder, ...]] = {}  # read, not yet evaluated
        self.decisions: dict[str, list[Decision]] = {}
        self.given_up: frozenset[tuple[str, str]] = frozenset()
        self.plans: dict[str, CancelPlan] = {}  # the accounts started (decisions journaled)
        self.runs: dict[str, asyncio.Task[_AccountRun]] = {}
        self.claimed: set[tuple[str, str]] = set()
        self.failures: list[Exception] = []  # shared: one journal failure stops every account

    def _signals(self) -> Mapping[str, str]:
        if self.signals is None:
            self.signals = self.ctx.signals()
        return self.signals

    def _excluded(self, given_up: frozenset[tuple[str, str]]) -> set[tuple[str, str]]:
        return self.ctx.in_flight | self.deferred | given_up

    def _targets(self, decisions: list[Decision], given_up: frozenset[tuple[str, str]],
                 ) -> tuple[CancelTarget, ...]:
        return plan_cancels(decisions, max_cancels=self.limit, dry_run=False, paused=False,
                            in_flight=self._excluded(given_up)).targets

    def estimate(self, books: Mapping[str, tuple[BookOrder, ...]]) -> None:
        """Count each account's matches, at this sweep's instant, on a recent read."""
        counts = {}
        for account, orders in books.items():
            decisions = evaluate(orders, self.rules, self.now, self.calendar, self.boards,
                                 self._signals())
            counts[account] = len(self._targets(decisions,
                                                _given_up(decisions, self.unconfirmed)))
        self.gate.estimates = counts

    def arrive(self, account: str, orders: tuple[BookOrder, ...]) -> None:
        """A fresh book: kept for the next critical sweep's estimate, and evaluated now if
        this sweep starts accounts as they arrive."""
        self.ctx.recent.put(account, orders)
        if self.gate.estimates:
            self._evaluate(account, orders)
            self._start_ready()
        else:
            self.waiting[account] = orders

    def settle(self, snapshot: Snapshot) -> None:
        """Every book is in or given up: evaluate what waited, count nothing for the accounts
        not read, and start what the breaker lets."""
        for account in sorted(self.waiting):
            self._evaluate(account, self.waiting[account])
        self.waiting.clear()
        for account, _ in snapshot.failures:
            self.gate.drop(account)
        self._start_ready()

    def _evaluate(self, account: str, orders: tuple[BookOrder, ...]) -> None:
        decisions = evaluate(orders, self.rules, self.now, self.calendar, self.boards,
                             self._signals())
        _log_decisions(self.log, decisions)
        given_up = _given_up(decisions, self.unconfirmed)
        _log_given_up(self.log, decisions, given_up, self.unconfirmed)
        self.given_up |= given_up
        self.decisions[account] = decisions
        counted = self._targets(decisions, given_up)
        self.counted[account] = frozenset(t.key for t in counted)
        self.gate.read(account, len(counted))

    def _start_ready(self) -> None:
        if self.watch.error is not None or self.failures:
            return  # the journal failed: nothing more starts (see _JournalWatch)
        for account in self.gate.ready():
            self._start(account)

    def _start(self, account: str) -> None:
        """Plan, journal, claim and send one account's cancels, with no await in between: a
        sweep that overlaps this one (a poll beside a fixed-time sweep) must see them as in
        flight, or both would send a cancel for the same order. Record before you act: the
        decisions are journaled before any DELETE can leave."""
        ctx, decisions = self.ctx, self.decisions[account]
        # Only what the gate counted, and of that only what is still unclaimed: a claim
        # another sweep released since must not add cancels the breaker never counted.
        uncounted = {(d.order.account, d.order.order_id) for d in decisions
                     if d.cancel} - self.counted[account]
        self.paused = self.paused or ctx.paused
        plan = plan_cancels(decisions, max_cancels=self.limit, dry_run=self.dry,
                            paused=self.paused,
                            in_flight=self._excluded(self.given_up) | uncounted)
        try:
            ctx.journal.decisions(self.sweep_id, _decision_rows(decisions, plan))
        except JournalError as exc:
            self.watch.failed(exc, "decisions")
            self.failures.append(exc)  # the accounts already sending stop too
            return
        self.plans[account] = plan
        claimed = {t.key for b in plan.batches for t in b}
        ctx.in_flight.update(claimed)
        self.claimed |= claimed
        if plan.batches:
            self.runs[account] = asyncio.ensure_future(_account_run(
                ctx, self.rules, self.log, self.sweep_id, account, plan.batches,
                self.rank.get(account, len(self.rank)), self.failures, self.watch))

    async def wind_down(self) -> None:
        """Wait for every account run started: nothing is left on the wire."""
        if self.runs:
            await asyncio.gather(*self.runs.values(), return_exceptions=True)

    async def cancel_unfinished(self) -> None:
        """The sweep itself was cancelled: cancel the account runs still going, as a gather
        inside the sweep would, and wait for them, so that no claim is released while a
        run still sends (what is left open is reconciled from the journal's intents)."""
        unfinished = [t for t in self.runs.values() if not t.done()]
        for task in unfinished:
            task.cancel()
        if unfinished:
            await asyncio.gather(*unfinished, return_exceptions=True)

    def all_decisions(self) -> list[Decision]:
        return [d for a in sorted(self.decisions) for d in self.decisions[a]]

    def plan(self) -> CancelPlan:
        """The sweep's plan as it came to be: every target, the batches that started, and why
        the rest did not. Journals the decisions of the accounts the breaker never started."""
        targets: list[CancelTarget] = []
        batches: list[tuple[CancelTarget, ...]] = []
        blocked: str | None = None
        for account in sorted(self.decisions):
            plan = self.plans.get(account)
            if plan is None:
                targets.extend(self._targets(self.decisions[account], self.given_up))
                continue
            targets.extend(plan.targets)
            batches.extend(plan.batches)
            blocked = blocked or plan.blocked
        tripped = self.gate.tripped
        if tripped:
            carried = (f" + {self.carried} sent earlier today before a late trip"
                       if self.carried else "")
            blocked = (f"circuit breaker: {self.gate.total} matches{carried} > "
                       f"max_cancels_per_sweep {self.limit}")
        out = CancelPlan(tuple(targets), tuple(batches), blocked, tripped=tripped)
        for account in sorted(self.decisions):
            if account not in self.plans and self.watch.error is None:
                self.watch.write("decisions", self.ctx.journal.decisions, self.sweep_id,
                                 _decision_rows(self.decisions[account], out))
        return out


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


async def _account_run(ctx: SweepContext, rules: RulesFile, log: Log, sweep_id: int,
                       account: str, batches: tuple[tuple[CancelTarget, ...], ...], rank: int,
                       failures: list[Exception], watch: _JournalWatch) -> _AccountRun:
    """One account's cancels: cash before (its cancels wait for it, so it spends at their
    priority), send, confirm, journal the outcomes, then cash after (at the lowest priority:
    nothing waits for it)."""
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


async def _finish(ctx: SweepContext, trigger: str, log: Log, t0: float, now: datetime,
                  sweep_id: int, dry: bool, snapshot: Snapshot, stage: _Stage,
                  watch: _JournalWatch) -> SweepReport:
    """Wait for every account run, then record what the sweep came to: its report."""
    rules = stage.rules
    plan = stage.plan()
    decisions = stage.all_decisions()
    if plan.tripped:
        # Recorded before any account run is awaited: a run that ends the sweep with an error
        # (a lost session) must not make the guard forget what this trip already started.
        day = now.astimezone(EXCHANGE_TZ).date()
        carry = stage.carried + plan.to_send
        ctx.late_trips = {day: carry} if carry else {}
    if plan.tripped:
        by_rule = Counter(r for t in plan.targets for r in t.rules)
        late = {}
        if plan.batches:
            # Orders placed after the pre-read pushed the count over once some accounts had
            # started: those go on (they were within the limit), no other account starts.
            late = {"late": True, "started": plan.to_send, "accounts_started": sorted(
                {b[0].order.account for b in plan.batches})}
        carried = {"carried": stage.carried} if stage.carried else {}
        log.error("breaker.tripped", matches=len(plan.targets),
                  limit=rules.limits.max_cancels_per_sweep, rules=dict(by_rule), **late,
                  **carried)
    elif plan.blocked and plan.targets:
        log.info("cancel.skipped", reason=plan.blocked,
                 would_cancel=len(plan.targets) - plan.to_send)

    sent: list[SendResult] = []
    outcomes: list[Outcome] = []
    releases: list[CashRelease] = []
    if stage.runs:
        # Each account's cancels went out as soon as it was decided, every account at once:
        # one slow or failing account (its cash, a batch that must be proved before a resend,
        # its confirmation) never holds another's back. The budget (guard.broker.budget)
        # orders their requests: cancels first, by the order of rules.yaml's accounts.
        order = sorted(stage.runs)
        runs = await asyncio.gather(*(stage.runs[a] for a in order), return_exceptions=True)
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

    if not plan.tripped and not snapshot.failures:
        # Every account read, and under the limit with what an earlier late trip sent: the
        # count starts afresh. (An account not read counts nothing, so a sweep that missed
        # one proves nothing about it.)
        ctx.late_trips = {}
    result: SweepResult
    if watch.error is not None:
        result = "failed"
    elif plan.tripped and plan.batches and not (
            all(o.ok for o in outcomes) and len(outcomes) == plan.to_send):
        result = "incomplete"  # a late trip, and a cancel it started did not succeed
    elif plan.tripped:
        result = "blocked"
    elif plan.blocked == "dry run":
        result = "dry_run"
    elif plan.blocked and not plan.batches:
        result = "blocked"  # nothing went out (a pause seen after some accounts started
        # leaves the sweep incomplete below: the orders it held are still open)
    elif not plan.targets:
        result = "nothing_to_do"
    elif all(o.ok for o in outcomes) and len(outcomes) == len(plan.targets):
        result = "ok"
    else:
        result = "incomplete"
    deferred, given_up = stage.deferred, stage.given_up
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
    if plan.batches and plan.blocked and not plan.tripped and plan.to_send < len(plan.targets):
        # The pause file appeared after some accounts had started: what it held back.
        summary["paused"] = len(plan.targets) - plan.to_send
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
