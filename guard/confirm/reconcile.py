"""Reconciling the journal on start: every intent without an outcome gets one, from the book.

An intent with no outcome means the process died between "about to cancel" and "cancel
proven". The book says what happened: WC means the cancel landed (wait for it to settle); a
final status proves the outcome; an order still open means the cancel never landed, so it is
recorded as not applied and left for the rules to decide again. Nothing is sent here, so a
crash can never cause a second cancel.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from guard.act.plan import CancelTarget
from guard.act.send import SendResult
from guard.broker.adapter import Broker
from guard.clock import EXCHANGE_TZ
from guard.confirm.confirm import Outcome, confirm
from guard.record.journal import Journal, OpenIntent
from guard.snapshot.model import BookOrder

__all__ = ["reconcile"]


def _placeholder(intent: OpenIntent) -> BookOrder:
    """The order as the intent knew it (enough to classify what the book shows now)."""
    created = datetime.fromisoformat(intent.created_at).astimezone(EXCHANGE_TZ)
    return BookOrder(
        account=intent.account, order_id=intent.order_id, client_request_id="", symbol="",
        side=intent.side, order_type=intent.order_type,
        price=Decimal(intent.price) if intent.price else None, price_word=None,
        quantity=0, filled=0, cancelled=intent.cancelled_before, status="", input_time=created,
    )


async def reconcile(broker: Broker, journal: Journal, *, wall: Callable[[], datetime],
                    log: Any, timeout: timedelta = timedelta(seconds=30)) -> list[Outcome]:
    """Give every open intent an outcome. Orders still open are "failed: not applied"."""
    intents = journal.open_intents()
    if not intents:
        return []
    log.warning("journal.reconciling", open_intents=len(intents))
    pending: list[SendResult] = []
    outcomes: list[Outcome] = []
    by_id = {}
    for intent in intents:
        order = _placeholder(intent)
        by_id[intent.intent_id] = intent
        # "accepted": a WC or final status in the book is taken as this intent's cancel landing.
        target = CancelTarget(order, ("reconcile",), "open intent after a restart")
        pending.append(SendResult(target, intent.intent_id, "accepted", "", "reconciled"))
    # An order still open after a restart never received this cancel: classify it as such.
    books = {}
    for account, day in {(i.account, _placeholder(i).input_time.date()) for i in intents}:
        books[account] = {o.order_id: o for o in await broker.orders(account, day)}
    watch = []
    for sent in pending:
        now = books.get(sent.target.order.account, {}).get(sent.target.order.order_id)
        if now is not None and now.status not in ("WC", "CL", "FFPC", "FF", "RJ", "EX"):
            outcomes.append(Outcome(sent, "failed", 0, now.status,
                                    "reconciled: the cancel never landed (crash before send)",
                                    0.0))
        else:
            watch.append(sent)
    outcomes += await confirm(watch, broker=broker, timeout=timeout, log=log)
    for outcome in outcomes:
        intent = by_id[outcome.sent.intent_id]
        journal.outcome(intent.intent_id, wall(), intent.account, intent.order_id, outcome.kind,
                        outcome.cancelled_qty, outcome.final_status,
                        f"reconciled: {outcome.detail}")
    log.info("journal.reconciled", outcomes=dict(Counter(o.kind for o in outcomes)))
    return outcomes
