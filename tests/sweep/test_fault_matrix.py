"""The fault matrix. ``ROWS`` below IS the matrix that
``docs/fault-matrix.md`` shows (a test keeps the two equal).

Every row drives the real pipeline (``run_sweep`` through the real ``ssi_sdk`` over HTTP to the
simulator, a real journal) with one fault injected, then proves the guard's promise on the
same six orders:

- ``a1 a2 a3`` (account 0001234) and ``b1 b2`` (0001238): stale, selected by the rule
  ``stale``; each account's cancels go out as one batch DELETE;
- ``fresh``: too young for any rule; ``kept``: stale but protected by its ``keep-`` prefix.

Checked for every row: every intent (a decided cancel) has exactly one outcome; every cancel
decided by a finished sweep has an intent; the exchange never accepted two cancels for one
order, nor a cancel for an order no rule selected; orders without an expected outcome were
never named in a DELETE; every order ends in the row's expected status with the row's outcome
kinds; and **orders lost: 0**: each selected order is cancelled (or filled), or has a
recorded non-ok outcome (``failed``/``unconfirmed``) and is still open at the simulator.

Faults land at exact points of the pipeline through ``Hooks``, the sweep's logger: e.g. "after
the last cancel was accepted" is the 5th ``cancel.sent`` event, in the sweep's own thread, so
no row sleeps or races. Rows that overlap older tests (which assert more detail on one fault)
name them in ``see``.

Run it: ``.venv/bin/pytest tests/sweep/test_fault_matrix.py -v``.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import sys
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from kit import ACCT, BATCH, BOOK, FRESH, OTHER, REPO, SINGLE, STALE
from kit.disk import fill, small_disk
from kit.sweep import (
    Guard,
    answered,
    assert_no_double_cancel,
    assert_one_outcome_per_intent,
    at,
    outcomes,
    rules_text,
    run_when,
)

from guard.broker.client import Broker
from guard.broker.tokens import TokenCache
from guard.clock import FakeClock
from guard.errors import BrokerUnavailable, JournalError, ReauthRequired
from guard.record.journal import Journal
from guard.service.daemon import Daemon
from guard.service.notify import Notifier
from guard.settings import load_credentials
from guard.simulator.control import Simulator
from guard.simulator.faults import Fault
from guard.simulator.hostile import cut_page, duplicate_row, string_booleans
from guard.sweep import SweepReport, run_sweep

SELECTED = ("a1", "a2", "a3", "b1", "b2")
UNSELECTED = ("fresh", "kept")
ROLES = SELECTED + UNSELECTED
OPEN = frozenset({"QU", "PF", "WC", "SD", "RS", "PD", "WA"})
DOC = REPO / "docs" / "fault-matrix.md"


class Hooks:
    """A structlog-like logger for the sweep that records (level, event, fields) and runs an
    action on the n-th occurrence of an event: a fault injected at an exact point."""

    def __init__(self) -> None:
        self.records: list[tuple[str, str, dict[str, Any]]] = []
        self._hooks: list[tuple[str, int, Callable[[], None]]] = []

    def when(self, event: str, action: Callable[[], None], nth: int = 1) -> None:
        self._hooks.append((event, nth, action))

    def __getattr__(self, level: str) -> Any:
        if level.startswith("_"):
            raise AttributeError(level)

        def log(event: str, **fields: Any) -> None:
            self.records.append((level, event, fields))
            seen = len(self.named(event))
            for hook in [h for h in self._hooks if h[0] == event and h[1] == seen]:
                self._hooks.remove(hook)
                hook[2]()
        return log

    def bind(self, **_: Any) -> Hooks:
        return self

    def named(self, event: str) -> list[dict[str, Any]]:
        return [fields for _, name, fields in self.records if name == event]


class Killed(Exception):
    """Raised from a hook: the guard process dies at that point (nothing after it runs)."""


@dataclass
class World:
    """One row's simulator, guard state and orders (``ids``: role -> order id)."""

    sim: Simulator
    guard: Guard
    ids: dict[str, str]
    log: Hooks
    reports: list[SweepReport] = field(default_factory=list)
    cleanup: contextlib.ExitStack = field(default_factory=contextlib.ExitStack)

    def sweep(self, **kwargs: Any) -> SweepReport:
        report = self.guard.sweep(log=self.log, **kwargs)
        self.reports.append(report)
        return report

    def deletes(self, path: str = BATCH) -> list[int]:
        return [r.status for r in self.sim.requests_to("DELETE", path)]

    def statuses(self, method: str, path: str) -> Counter[int]:
        return Counter(r.status for r in self.sim.requests_to(method, path))


@dataclass(frozen=True)
class Row:
    """One fault: what is injected, what the guard does, where every order ends."""

    id: str
    injected: str
    guard_did: str
    drive: Callable[[World], None]
    final: dict[str, str]
    kinds: dict[str, tuple[str, ...]]
    lost: int = 0
    confirm_timeout: str = "5s"
    timeout_ms: int = 10_000
    market: tuple[int, int, int] | None = None  # the simulator's clock when orders are seeded
    see: str = ""


def final(selected: str = "CL", **overrides: str) -> dict[str, str]:
    return {**dict.fromkeys(SELECTED, selected), **dict.fromkeys(UNSELECTED, "QU"), **overrides}


def kinds(*selected: str, **overrides: tuple[str, ...]) -> dict[str, tuple[str, ...]]:
    chosen = selected or ("cancelled",)
    return {**dict.fromkeys(SELECTED, chosen), **dict.fromkeys(UNSELECTED, ()), **overrides}


# ---- the rows' drivers --------------------------------------------------------------------


def book_5xx_at_snapshot(w: World) -> None:
    w.sim.inject(Fault("error", "GET", BOOK, status=503, times=2))
    first = w.sweep()
    assert sorted(a for a, _ in first.unread_accounts) == [ACCT, OTHER]
    assert all("HTTP 503" in why for _, why in first.unread_accounts)
    assert first.result == "incomplete" and first.decisions == () and w.deletes() == []
    assert w.sweep().result == "ok"


def book_5xx_during_confirm(w: World) -> None:
    w.log.when("cancel.sent", lambda: w.sim.inject(Fault("error", "GET", BOOK, status=503,
                                                         times=3)), nth=5)
    assert w.sweep().result == "ok"
    assert w.statuses("GET", BOOK)[503] == 3 and w.log.named("book.read_failed")


def batch_5xx_burst(w: World) -> None:
    w.sim.inject(Fault("error", "DELETE", BATCH, status=503, times=3))
    assert w.sweep().result == "ok"
    assert sorted(w.deletes()) == [200, 200, 503, 503, 503]


def batch_timeout_applied(w: World) -> None:
    w.sim.inject(Fault("hang", "DELETE", BATCH, seconds=0.8, apply_first=True, times=2))
    assert w.sweep().result == "ok"
    assert len(w.sim.requests_to("DELETE", BATCH)) == 2  # proven from the book: no resend
    assert len(w.log.named("cancel.applied_despite_error")) == 5


def batch_timeout_not_applied(w: World) -> None:
    w.sim.inject(Fault("hang", "DELETE", BATCH, seconds=0.8, apply_first=False, times=2))
    assert w.sweep().result == "ok"
    assert sorted(w.deletes()) == [-2, -2, 200, 200]  # each batch sent again, once


def storm_429(w: World) -> None:
    w.sim.inject(Fault("error", "GET", "/api/v3/trading/", status=429, retry_after=0.1,
                       times=3))
    w.sim.inject(Fault("error", "DELETE", BATCH, status=429, retry_after=0.2, times=3))
    assert w.sweep().result == "ok"
    assert sorted(w.deletes()) == [200, 200, 429, 429, 429]
    by_account: dict[str, list[Any]] = {}
    for request in w.sim.requests_to("DELETE", BATCH):
        by_account.setdefault(request.body["orders"][0]["accountNo"], []).append(request)
    gaps = [after.at - before.at for sent in by_account.values()
            for before, after in itertools.pairwise(sent)]
    assert len(gaps) == 3 and min(gaps) >= 0.2  # every resend waited out Retry-After


def refused_at_start(w: World) -> None:
    w.sim.stop()

    async def scenario() -> None:
        async with w.guard.context(log=w.log) as ctx:
            daemon = Daemon(ctx, w.guard.state_dir / "rules.yaml", notifier=Notifier({}),
                            log=w.log)
            await daemon.start()  # degraded, not dead
            assert daemon.health.state == "degraded"
            assert daemon.health.reason == (
                "broker unavailable: cannot connect to the broker (ConnectError)")
            with pytest.raises(BrokerUnavailable, match=r"^cannot connect to the broker"):
                await run_sweep(ctx, "poll")  # still down: one clear error
            w.sim.restart()
            [poll] = [j for j in daemon.jobs if j.job_id == "poll"]
            report = await daemon.fire(poll)  # back: the same daemon, no `ssi-guard login`
            assert report is not None and report.result == "ok"
            assert daemon.health.state == "healthy"
            w.reports.append(report)

    asyncio.run(scenario())
    with w.guard.journal() as j:  # the failed sweep decided nothing
        assert j.query("SELECT DISTINCT sweep_id FROM decisions") == [(2,)]
        # ... and its row says how it ended: aborted, with the error's kind.
        [(result, summary)] = j.query(
            "SELECT result, summary FROM sweep_results WHERE sweep_id = 1")
        assert result == "aborted" and "BrokerUnavailable" in summary


def down_before_confirm(w: World) -> None:
    w.log.when("cancel.sent", w.sim.stop, nth=5)  # every cancel accepted, then the broker dies
    w.log.when("book.read_failed", w.sim.restart)  # ... and is back after one failed read
    assert w.sweep().result == "ok"
    assert "cannot connect" in w.log.named("book.read_failed")[0]["error"]
    assert w.deletes() == [200, 200]


def down_through_confirm(w: World) -> None:
    w.log.when("cancel.sent", w.sim.stop, nth=5)
    # Each account confirms as soon as its own cancels are out: the cancels stay WC until the
    # broker is down, so no account's confirmation can end before it.
    with w.sim.paused_cancels():
        report = w.sweep()  # confirm_timeout 1 s, the broker down throughout
    assert report.result == "incomplete"
    w.sim.restart()
    assert w.sweep().result == "nothing_to_do"  # the cancels had landed: nothing sent again
    assert w.deletes() == [200, 200]


def down_and_guard_died(w: World) -> None:
    w.log.when("cancel.sent", w.sim.stop, nth=5)

    def die() -> None:
        raise Killed

    # Each account confirms on its own: the guard dies in both confirmations, at their
    # first failed read.
    w.log.when("book.read_failed", die)
    w.log.when("book.read_failed", die, nth=2)
    with w.sim.paused_cancels(), pytest.raises(Killed):  # WC until down (see above)
        w.sweep()
    with w.guard.journal() as j:
        assert len(j.open_intents()) == 5
    w.sim.restart()
    assert w.sweep().result == "nothing_to_do"  # reconciled from the book, nothing resent
    assert w.deletes() == [200, 200]
    details = [row[3] for rows in outcomes(w.guard.journal_path).values() for row in rows]
    assert all(d.startswith("reconciled: ") for d in details)


def token_expired_before_send(w: World) -> None:
    w.log.when("order.matched", w.sim.expire_tokens)  # after the snapshot, before any cancel
    assert w.sweep().result == "ok"
    assert w.sim.sessions.refreshes == 1 and w.sim.sessions.logins == 1
    assert any(r.status == 401 for r in w.sim.requests)


def refresh_revoked(w: World) -> None:
    w.sim.inject(Fault("latency", "DELETE", BATCH, seconds=0.2, times=2))
    revoker = run_when(lambda: bool(w.sim.requests_to("DELETE", BATCH)), w.sim.revoke_session)
    with pytest.raises(ReauthRequired, match="ssi-guard login"):
        w.sweep()  # both batches refused at the gateway, the refresh token is dead
    revoker.join()
    assert w.sim.accepted_cancels() == []
    with w.guard.journal() as j:
        assert len(j.open_intents()) == 5

    async def login() -> None:  # what `ssi-guard login` does
        creds = load_credentials(w.guard.env())
        async with Broker(creds, TokenCache(w.guard.state_dir)) as broker:
            await broker.login(otp=w.sim.credentials.otp)

    asyncio.run(login())
    assert w.sweep().result == "ok"  # reconciled ("never landed"), then decided again


def malformed_book(w: World) -> None:
    w.sim.inject(Fault("malformed", "GET", BOOK))
    first = w.sweep()
    [(unread, why)] = first.unread_accounts
    assert "not JSON" in why and first.result == "incomplete"
    assert {d.order.account for d in first.decisions} == {ACCT, OTHER} - {unread}
    assert w.sweep().result == "ok"


def unknown_status(w: World) -> None:
    w.sim.set_unknown_status(w.ids["a2"], "ZZ")
    report = w.sweep()
    assert report.result == "ok"
    held = {d.order.order_id: d.held for d in report.decisions}
    assert held[w.ids["a2"]] == "status ZZ not cancellable"


def fill_before_cancel(w: World) -> None:
    def fill() -> None:
        w.sim.fill(w.ids["a1"])  # in full
        w.sim.fill(w.ids["a2"], 50)  # in part: 150 of 200 left to cancel

    w.log.when("order.matched", fill)  # decided from a book where both were open
    assert w.sweep().result == "ok"
    got = outcomes(w.guard.journal_path)
    assert got[w.ids["a2"]][0][:2] == ("partially_cancelled", 150)


def atc_began(w: World) -> None:
    report = w.sweep(clock=FakeClock(at(w.sim, 14, 29, 59)))  # the exchange says 14:30:00
    assert report.result == "incomplete" and w.sim.accepted_cancels() == []
    for rows in outcomes(w.guard.journal_path).values():
        assert "ATC" in rows[0][3] and "order still QU" in rows[0][3]


def simulator_restart(w: World) -> None:
    async def scenario() -> None:
        async with w.guard.context(log=w.log) as ctx:
            await ctx.broker.ensure_session()
            await ctx.broker.orders(ACCT, w.sim.clock().date())  # a kept-alive connection
            w.sim.restart()  # the broker's process restarts; its state survives
            w.reports.append(await run_sweep(ctx, "poll"))  # the same Broker, new connections

    asyncio.run(scenario())
    assert w.reports[-1].result == "ok"
    assert w.sim.sessions.logins == 1  # the session survived the restart


def duplicate_protected_row(w: World) -> None:
    w.sim.rewrite_reply("GET", BOOK, duplicate_row(w.ids["kept"], clientRequestId=""),
                        account=ACCT)
    first = w.sweep()
    [(unread, why)] = first.unread_accounts
    assert unread == ACCT and "listed twice" in why and first.result == "incomplete"
    assert {d.order.account for d in first.decisions} == {OTHER}
    assert w.sweep().result == "ok"


def cut_page_row(w: World) -> None:
    w.sim.rewrite_reply("GET", BOOK, cut_page(1), account=ACCT)
    first = w.sweep()
    [(unread, why)] = first.unread_accounts
    assert unread == ACCT and "totalRecord" in why and first.result == "incomplete"
    assert w.sweep().result == "ok"


def string_booleans_row(w: World) -> None:
    w.sim.rewrite_reply("DELETE", BATCH, string_booleans(), times=2)
    assert w.sweep().result == "ok"
    assert w.deletes() == [200, 200]  # "true" is no proof, but the book's WC is: no resend
    assert len(w.log.named("cancel.applied_despite_error")) == 5


def disk_full_mid_batch(w: World) -> None:
    state = w.cleanup.enter_context(small_disk(w.guard.state_dir))
    fillers: list[Path] = []
    w.sim.on_request("DELETE", BATCH, lambda: fillers.append(fill(state)))
    with pytest.raises(JournalError, match="full"):
        w.sweep()
    assert len(w.log.named("cancel.sent")) == 5 and w.log.named("journal.write_failed")
    fillers[0].unlink()
    assert w.sweep().result == "nothing_to_do"  # reconciled from the book, nothing resent
    assert w.deletes() == [200, 200]


def account_down_with_open_intent(w: World) -> None:
    w.guard.state_dir.mkdir(mode=0o700)
    with w.guard.journal() as j:
        crashed = w.sim.clock() - STALE
        sweep = j.start_sweep(crashed, "crashed", w.sim.clock(), False)
        j.intents(sweep, crashed, "deadbeef", [(OTHER, w.ids["b1"], "stale", "62000", "S", "LO",
                                                100, 0)])
    w.sim.inject(Fault("error", "GET", BOOK, status=503, times=None, account=OTHER))
    first = w.sweep()
    assert [a for a, _ in first.unread_accounts] == [OTHER] and first.result == "incomplete"
    assert sorted(w.sim.accepted_cancels()) == sorted(w.ids[r] for r in ("a1", "a2", "a3"))
    w.sim.faults.clear()
    assert w.sweep().result == "ok"


def lost_answer_reads_failing(w: World) -> None:
    w.sim.inject(Fault("hang", "DELETE", BATCH, seconds=0.8, apply_first=True, times=2))
    for account in (ACCT, OTHER):  # after each account's snapshot read, three reads fail
        w.sim.on_request("GET", BOOK, lambda a=account: w.sim.inject(  # type: ignore[misc]
            Fault("error", "GET", BOOK, status=503, times=3, account=a)), account=account)
    assert w.sweep().result == "ok"
    assert len(w.sim.requests_to("DELETE", BATCH)) == 2  # waited for a read: never resent
    assert len(w.log.named("cancel.applied_despite_error")) == 5


ROWS: tuple[Row, ...] = (
    Row("5xx-book-at-snapshot", "GET orderBook answers 503 twice (both accounts' reads)",
        "both accounts unread, nothing decided, no DELETE, sweep incomplete; next sweep cancels",
        book_5xx_at_snapshot, final(), kinds()),
    Row("5xx-book-during-confirm", "GET orderBook answers 503 three times after the cancels",
        "confirm keeps re-reading the book (backoff) until it answers",
        book_5xx_during_confirm, final(), kinds()),
    Row("5xx-batch-burst", "DELETE batch answers 503 three times",
        "re-reads the book, resends only what is still open",
        batch_5xx_burst, final(), kinds(), see="test_sweep_faults::test_5xx_on_batch_*"),
    Row("timeout-batch-applied", "DELETE batch applied, then hangs past the client timeout",
        "re-reads the book: WC proves it landed, nothing resent",
        batch_timeout_applied, final(), kinds(), timeout_ms=300,
        see="test_sweep_faults::test_timeout_on_a_batch_that_was_applied_*"),
    Row("timeout-batch-not-applied", "DELETE batch hangs past the client timeout, not applied",
        "re-reads the book: still open, so each batch is resent once",
        batch_timeout_not_applied, final(), kinds(), timeout_ms=300,
        see="test_sweep_faults::test_timeout_on_a_batch_that_was_not_applied_*"),
    Row("429-storm", "429 + Retry-After on 3 GETs and 3 batch DELETEs",
        "the SDK waits out GETs; the guard waits Retry-After, re-reads, resends",
        storm_429, final(), kinds(), see="test_sweep_faults::test_429_*"),
    Row("refused-at-start", "simulator stopped before the guard starts",
        "daemon starts degraded (broker unavailable), the sweep fails with one clear error, "
        "nothing decided; once back, the same daemon logs in and cancels",
        refused_at_start, final(), kinds()),
    Row("down-before-confirm", "simulator stopped after every cancel is accepted, back after "
        "one failed read", "confirm's reads fail, then prove every cancel",
        down_before_confirm, final(), kinds()),
    Row("down-through-confirm", "simulator stopped after every cancel is accepted, back after "
        "the confirm deadline", "outcome unconfirmed (an alert); the next sweep finds them "
        "cancelled and sends nothing", down_through_confirm, final(), kinds("unconfirmed"),
        confirm_timeout="1s"),
    Row("down-and-guard-died", "simulator stopped after the cancels, guard dies while "
        "confirming", "next start reconciles the open intents from the book, sends nothing",
        down_and_guard_died, final(), kinds(), see="test_reconcile::*"),
    Row("token-expired-before-send", "access token expires between snapshot and send",
        "401, one refresh, the call is sent again", token_expired_before_send, final(), kinds(),
        see="test_sweep_faults::test_expired_token_on_the_cancel_*"),
    Row("refresh-revoked", "session revoked while the batches are on the wire",
        "401, refresh refused (ReauthenticationRequired): sweep stops with ReauthRequired; after "
        "ssi-guard login the intents are reconciled (never landed) and the orders cancelled",
        refresh_revoked, final(), kinds("failed", "cancelled"),
        see="test_sweep_faults::test_session_revoked_mid_cancel_*"),
    Row("malformed-json-book", "one GET orderBook answers 200 with broken JSON",
        "that account unread and undecided, the other swept; next sweep cancels the rest",
        malformed_book, final(), kinds(), see="test_sweep_faults::test_malformed_book_*"),
    Row("unknown-status", "orderStatus ZZ (unknown) on a2",
        "a2 held (not cancellable), the rest cancelled",
        unknown_status, final(a2="QU"), kinds(a2=()),
        see="test_sweep_basic::test_unknown_status_*"),
    Row("fill-before-cancel", "a1 fills in full, a2 in part, after the snapshot",
        "a1: the exchange refuses, outcome already_done; a2: rest cancelled",
        fill_before_cancel, final(a1="FF", a2="FFPC"),
        kinds(a1=("already_done",), a2=("partially_cancelled",)),
        see="test_sweep_faults::test_fill_racing_the_cancel_*"),
    Row("atc-began", "guard decides at 14:29:59, the exchange is at 14:30:00 (ATC)",
        "every cancel refused: outcome failed, orders still open, sweep incomplete",
        atc_began, final("QU"), kinds("failed"), market=(14, 30, 0),
        see="test_sweep_faults::test_atc_began_*"),
    Row("simulator-restart", "simulator restarts (state kept) under a live Broker",
        "the dead kept-alive connection is replaced; same session, cancels as usual",
        simulator_restart, final(), kinds()),
    Row("duplicate-protected-row", "the book lists the keep- order twice, the copy with no "
        "client request id (account 0001234's first read)",
        "that account's book refused whole (unread, nothing decided, no DELETE), the other "
        "swept; next sweep cancels the rest; the keep- order is never touched",
        duplicate_protected_row, final(), kinds(), see="test_book_validation::*"),
    Row("cut-page", "a book page cut to 1 row while totalRecord counts them all (0001234)",
        "that account unread, sweep incomplete; next sweep reads it whole and cancels",
        cut_page_row, final(), kinds(), see="test_book_validation::*"),
    Row("string-booleans", "batch replies say success \"true\" (a string) for both batches",
        "not read as accepted: ambiguous, the book is re-read, WC proves each applied; "
        "nothing resent", string_booleans_row, final(), kinds(),
        see="test_cancel_replies::*"),
    Row("disk-full-mid-batch", "the state directory's disk fills while the batches are on "
        "the wire", "cancel.sent logged before the failed journal write, every cancel still "
        "confirmed in the log, the sweep ends with JournalError (exit 5); once the disk is "
        "freed the next sweep reconciles from the book and sends nothing",
        disk_full_mid_batch, final(), kinds(), see="test_safety_promises::test_disk_full_*"),
    Row("account-down-open-intent", "0001238's book reads fail, and it has an open intent "
        "(b1) from a crashed run", "0001234 swept and cancelled; 0001238 unread by name, its "
        "intent kept open; once readable, reconciled (never landed) and cancelled",
        account_down_with_open_intent, final(), kinds(b1=("failed", "cancelled")),
        see="test_safety_promises::test_an_unreadable_account_*"),
    Row("lost-answer-reads-failing", "both batches applied, their answers time out, and the "
        "next three book reads of each account answer 503", "waits and re-reads (never "
        "resends blind) until a read shows WC; nothing resent", lost_answer_reads_failing,
        final(), kinds(), timeout_ms=300, see="test_safety_promises::test_a_lost_answer_*"),
)


# ---- the matrix ----------------------------------------------------------------------------


def seed(sim: Simulator) -> dict[str, str]:
    return {
        "a1": sim.seed_order(ACCT, "SSI", "B", 27_000, 100, age=STALE),
        "a2": sim.seed_order(ACCT, "SSI", "B", 27_000, 200, age=STALE),
        "a3": sim.seed_order(ACCT, "FPT", "B", 95_500, 300, age=STALE),
        "b1": sim.seed_order(OTHER, "VNM", "S", 62_000, 100, age=STALE),
        "b2": sim.seed_order(OTHER, "HPG", "B", 26_400, 500, age=STALE),
        "fresh": sim.seed_order(ACCT, "SSI", "B", 27_000, 100, age=FRESH),
        "kept": sim.seed_order(ACCT, "SSI", "B", 27_000, 100, age=STALE,
                               client_request_id="keep-hedge-1"),
    }


def deleted_ids(sim: Simulator) -> set[str]:
    ids = {i["orderId"] for r in sim.requests_to("DELETE", BATCH) for i in r.body["orders"]}
    return ids | {r.body["orderId"] for r in sim.requests_to("DELETE", SINGLE)}


def orders_lost(sim: Simulator, journal: Path) -> tuple[int, set[str]]:
    """(lost, selected): an order the rules selected is lost unless it was cancelled (or it
    filled), or its last outcome is failed/unconfirmed and it is still open."""
    j = Journal(journal)
    try:
        selected = {o for (o,) in j.query(
            "SELECT DISTINCT order_id FROM decisions WHERE action = 'cancel'")}
    finally:
        j.close()
    got = outcomes(journal)
    lost = 0
    for order_id in selected:
        last = got[order_id][-1][0] if order_id in got else None
        status = sim.order(order_id).status
        if last is None:
            lost += 1
        elif status in ("CL", "FFPC", "FF"):
            continue
        elif not (last in ("failed", "unconfirmed") and status in OPEN):
            lost += 1
    return lost, selected


@pytest.mark.parametrize("row", ROWS, ids=[r.id for r in ROWS])
def test_fault_matrix(row: Row, sim: Simulator, tmp_path: Path) -> None:
    if row.market is not None:
        sim.set_clock(at(sim, *row.market))
    guard = Guard(sim, tmp_path / "state", rules_text(confirm_timeout=row.confirm_timeout),
                  timeout_ms=row.timeout_ms)
    world = World(sim, guard, seed(sim), Hooks())

    with world.cleanup:
        _drive_and_check(row, world)


def _drive_and_check(row: Row, world: World) -> None:
    sim, guard = world.sim, world.guard
    row.drive(world)

    if not sim.running:
        sim.restart()
    answered(sim)
    ids, path = world.ids, guard.journal_path
    # Every decided cancel: one intent (finished sweeps), and every intent exactly one outcome.
    assert_one_outcome_per_intent(path)
    with guard.journal() as j:
        unsent = j.query(
            "SELECT d.sweep_id, d.order_id FROM decisions d "
            "JOIN sweep_results r ON r.sweep_id = d.sweep_id WHERE d.action = 'cancel' AND NOT "
            "EXISTS (SELECT 1 FROM intents i WHERE i.sweep_id = d.sweep_id "
            "AND i.order_id = d.order_id)")
    assert unsent == [], f"decided but never sent nor recorded: {unsent}"
    # Never twice, never unselected.
    assert_no_double_cancel(sim)
    lost, selected = orders_lost(sim, path)
    assert set(sim.accepted_cancels()) <= selected
    # Where every order ended, and what the journal says about it.
    assert {role: sim.order(i).status for role, i in ids.items()} == row.final
    got = outcomes(path)
    assert {role: tuple(r[0] for r in got.get(i, [])) for role, i in ids.items()} == row.kinds
    for role, expected in row.kinds.items():
        if not expected:  # no rule selected it (or it was held): never touched
            assert ids[role] not in deleted_ids(sim) and ids[role] not in selected, role
            assert sim.order(ids[role]).cancel_qty == 0
    assert lost == row.lost == 0


# ---- the document ---------------------------------------------------------------------------


def _group(by_role: dict[str, Any], show: Callable[[Any], str]) -> str:
    groups: dict[str, list[str]] = {}
    for role in ROLES:
        groups.setdefault(show(by_role[role]), []).append(role)
    return "; ".join(f"{' '.join(roles)}: {value}" for value, roles in groups.items())


def render_table() -> str:
    """The matrix as ``docs/fault-matrix.md`` shows it."""
    lines = ["| id | fault injected | what the guard did | final states | journal outcomes "
             "| orders lost |", "|---|---|---|---|---|---|"]
    for r in ROWS:
        states = _group(r.final, str)
        kinds_ = _group(r.kinds, lambda k: " then ".join(k) if k else "none")
        lines.append(f"| `{r.id}` | {r.injected} | {r.guard_did} | {states} | {kinds_} "
                     f"| {r.lost} |")
    return "\n".join(lines)


def test_the_document_shows_exactly_this_matrix() -> None:
    text = DOC.read_text(encoding="utf-8")
    doc_ids = [line.split("|")[1].strip().strip("`") for line in text.splitlines()
               if line.startswith("| `")]
    assert doc_ids == [r.id for r in ROWS]
    assert render_table() in text, (
        "stale: rerun PYTHONPATH=tests python tests/sweep/test_fault_matrix.py")
    assert ".venv/bin/pytest tests/sweep/test_fault_matrix.py -v" in text


if __name__ == "__main__":  # print the table for docs/fault-matrix.md
    sys.stdout.write(render_table() + "\n")
