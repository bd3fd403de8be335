"""Reconciling the journal on start: every intent without an outcome gets one, from the book.

An intent with no outcome means the process died between "about to cancel" and "cancel
proven". The book says what happened: WC means the cancel landed (wait for it to settle); a
final status proves the outcome; an order still open means the cancel never landed, so it is
recorded as not applied and left for the rules to decide again. Nothing is sent here, so a
crash can never cause a second cancel.

An account whose book cannot be read is left for a later sweep: its intents stay open, its
orders are ``deferred`` (not cancelled in this sweep), and it is reported ``unread`` by name.
It never stops the reconciliation, or the sweep, of another account.

Intents this process still has in flight (``exclude``) are not orphans: their sweep writes
their outcome. Reconciling them too would give one intent two outcomes, and would call a
cancel "never landed" while its request is still on the wire.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Collection
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from decimal import Decimal

from guard.broker.ports import BookReader
from guard.clock import EXCHANGE_TZ
from guard.confirm.confirm import confirm
from guard.model import (
    PENDING_CANCEL,
    TERMINAL_STATUSES,
    BookOrder,
    CancelTarget,
    Outcome,
    SendResult,
)
from guard.record.journal import Journal, OpenIntent
from guard.record.log import Log
from guard.snapshot.read import read_books

__all__ = ["Reconciled", "reconcile"]


def _book_day(intent: OpenIntent) -> datetime:
    """The market instant of the intent's sweep. Its exchange date names the order book the
    order is in; the intent's own ``created_at`` is the wall clock, which differs from the
    market day around midnight and in every rehearsal (``--at``)."""
    return datetime.fromisoformat(intent.market_time).astimezone(EXCHANGE_TZ)


def _placeholder(intent: OpenIntent) -> BookOrder:
    """The order as the intent knew it (enough to classify what the book shows now)."""
    return BookOrder(
        account=intent.account, order_id=intent.order_id, client_request_id="", symbol="",
        side=intent.side, order_type=intent.order_type,
        price=Decimal(intent.price) if intent.price else None, price_word=None,
        quantity=0, filled=0, cancelled=intent.cancelled_before, status="",
        input_time=_book_day(intent),
    )


@dataclass(frozen=True)
class Reconciled:
    """The outcomes written; the orders left open because a dead process's cancel for them
    may still be on the wire, or their book could not be read (the caller must not cancel
    them in this sweep); and the accounts whose book could not be read, with why."""

    outcomes: list[Outcome]
    deferred: frozenset[tuple[str, str]]
    unread: tuple[tuple[str, str], ...] = ()


async def reconcile(broker: BookReader, journal: Journal, *, wall: Callable[[], datetime],
                    log: Log, timeout: timedelta = timedelta(seconds=30),
                    exclude: Collection[tuple[str, str]] = (),
                    on_the_wire: timedelta = timedelta(seconds=15)) -> Reconciled:
    """Give every open intent (but those in ``exclude``) an outcome; nothing is ever sent.

    An order still open is "failed: the cancel never landed" only once the dead process's
    last request must have timed out (``on_the_wire`` after the batch's last journaled
    activity: the broker timeout plus a margin). Before that, the request may still be
    applied, so the intent stays open and the order is ``deferred``. An intent whose sweep
    was journaled as finished (or aborted) had no request left on the wire: no wait.
    """
    intents = [i for i in journal.open_intents() if (i.account, i.order_id) not in exclude]
    if not intents:
        return Reconciled([], frozenset())
    log.warning("journal.reconciling", open_intents=len(intents))
    pending: list[SendResult] = []
    by_id = {}
    for intent in intents:
        by_id[intent.intent_id] = intent
        # "accepted": a WC or final status in the book is taken as this intent's cancel landing.
        target = CancelTarget(_placeholder(intent), ("reconcile",), "open intent after a restart")
        pending.append(SendResult(target, intent.intent_id, "accepted", "", "reconciled"))
    books: dict[tuple[str, date], dict[str, BookOrder] | None] = {}
    unread: dict[str, str] = {}
    for day in sorted({_book_day(i).date() for i in intents}):
        accounts = sorted({i.account for i in intents if _book_day(i).date() == day})
        got = await read_books(broker, dict.fromkeys(accounts, day), log,
                               event="journal.reconcile_unread", level="error")
        for account in accounts:
            books[account, day] = got.by_id(account)
            if account in got.failed:
                unread.setdefault(account, f"open intents not reconciled: {got.failed[account]}")
    outcomes: list[Outcome] = []
    watch = []
    deferred: set[tuple[str, str]] = set()
    checked_at = wall()
    for sent in pending:
        order = sent.target.order
        book = books[order.account, order.input_time.date()]
        if book is None:
            deferred.add(sent.target.key)  # unread: decide on a later sweep
            continue
        now = book.get(order.order_id)
        if now is not None and now.status != PENDING_CANCEL and now.status not in TERMINAL_STATUSES:
            intent = by_id[sent.intent_id]
            if (not intent.sweep_closed
                    and checked_at - intent.last_activity < on_the_wire):
                deferred.add(sent.target.key)  # may still land: decide on a later sweep
                continue
            # Still open: the cancel never reached the exchange (or it refused it).
            outcomes.append(Outcome(sent, "failed", 0, now.status,
                                    "the cancel never landed (the guard stopped before it was "
                                    "applied)", 0.0))
        else:
            watch.append(sent)
    outcomes += await confirm(watch, broker=broker, timeout=timeout, log=log)
    for outcome in outcomes:
        intent = by_id[outcome.sent.intent_id]
        journal.outcome(intent.intent_id, wall(), intent.account, intent.order_id, outcome.kind,
                        outcome.cancelled_qty, outcome.final_status,
                        f"reconciled: {outcome.detail}")
    log.info("journal.reconciled", outcomes=dict(Counter(o.kind for o in outcomes)),
             deferred=len(deferred), unread_accounts=sorted(unread))
    return Reconciled(outcomes, frozenset(deferred), tuple(sorted(unread.items())))
