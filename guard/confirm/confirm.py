"""Confirming cancels: poll the order book, with a backoff, until every target is final or
``confirm_timeout`` passes. The book is the only proof; a cancel reply is only a promise.

Outcomes:
- ``cancelled`` (CL), ``partially_cancelled`` (FFPC, with the quantity cancelled);
- ``filled_first`` (FF: it filled before the cancel took effect);
- ``already_done``: the broker refused the cancel because the order was already final;
- ``failed``: refused (or never sent) and the order is still open, e.g. ATC began;
- ``unconfirmed``: no final status before the deadline. An error, and an alert.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Sequence
from datetime import timedelta

from guard.broker.ports import BookReader
from guard.model import BookOrder, Outcome, OutcomeKind, SendResult
from guard.record.log import Log
from guard.snapshot.read import read_books

__all__ = ["Outcome", "OutcomeKind", "classify", "confirm"]

def classify(sent: SendResult, now: BookOrder | None) -> tuple[OutcomeKind, int, str] | None:
    """Pure: the outcome that ``now`` (the order in a fresh book) proves, or None to wait."""
    if now is None:
        return None
    cancelled = max(0, now.cancelled - sent.target.order.cancelled)
    status = now.status
    if sent.status in ("accepted", "unknown"):
        # ``unknown``: a request that may have been applied; a final status is its outcome.
        if status == "CL":
            return "cancelled", cancelled, f"cancelled {cancelled}"
        if status == "FFPC":
            return "partially_cancelled", cancelled, f"filled {now.filled}, cancelled {cancelled}"
        if status == "FF":
            return "filled_first", 0, "filled before the cancel took effect"
        if status in ("RJ", "EX"):
            return "already_done", 0, f"order ended as {status}"
        if sent.status == "unknown" and status != "WC":
            return "failed", 0, f"{sent.detail}; the book shows it still {status}"
        return None
    if status == "FF":
        return "already_done", 0, "refused: the order had filled"
    if status in ("CL", "FFPC", "RJ", "EX"):
        return "already_done", cancelled, f"refused: the order was already {status}"
    if status == "WC":
        return None  # a cancel from elsewhere is in flight: wait for its result
    why = sent.detail or sent.code or "not sent"
    return "failed", 0, f"{sent.status}: {why}; order still {status}"


async def confirm(
    results: Sequence[SendResult],
    *,
    broker: BookReader,
    timeout: timedelta,
    log: Log,
    sent_at: float | None = None,
    monotonic: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    first_delay: float = 0.1,
    max_delay: float = 2.0,
) -> list[Outcome]:
    """Watch the book until every result has an outcome or the deadline passes."""
    start = sent_at if sent_at is not None else monotonic()
    deadline = monotonic() + timeout.total_seconds()
    watch = {r.intent_id: r for r in results}
    outcomes: list[Outcome] = []
    delay = first_delay
    while watch:
        got = await read_books(broker, {r.target.order.account: r.target.order.input_time.date()
                                        for r in watch.values()}, log)
        books = {account: got.by_id(account) for account in got.read}
        for key, sent in list(watch.items()):
            account, order_id = sent.target.key
            book = books.get(account)
            now = book.get(order_id) if book is not None else None
            verdict = classify(sent, now)
            if verdict is None:
                continue
            kind, qty, detail = verdict
            outcome = Outcome(sent, kind, qty, now.status if now else "", detail,
                              monotonic() - start)
            outcomes.append(outcome)
            del watch[key]
            _log_outcome(log, outcome)
        if not watch:
            break
        left = deadline - monotonic()
        if left <= 0:
            for sent in watch.values():
                outcome = Outcome(sent, "unconfirmed", 0, "", f"no final status within "
                                  f"{timeout.total_seconds():g}s", monotonic() - start)
                outcomes.append(outcome)
                _log_outcome(log, outcome)
            break
        await sleep(min(delay, left))
        delay = min(delay * 2, max_delay)
    return outcomes


def _log_outcome(log: Log, outcome: Outcome) -> None:
    order = outcome.sent.target.order
    fields = {
        "account": order.account, "order_id": order.order_id, "symbol": order.symbol,
        "rule": ",".join(outcome.sent.target.rules), "outcome": outcome.kind,
        "cancelled_qty": outcome.cancelled_qty, "final_status": outcome.final_status,
        "latency_s": round(outcome.latency_s, 3), "detail": outcome.detail,
    }
    if outcome.ok:
        log.info("cancel.confirmed", **fields)
    else:
        log.error("cancel.failed", **fields)
