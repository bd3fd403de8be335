"""Sending a plan: batches go out concurrently, paced by the SDK's limiter (which follows the
server's ``X-RateLimit-*`` headers), and no order is ever cancelled twice.

Each batch's intents are journaled before the first byte is sent. When a batch fails as a
whole, what happens depends on what the failure proves:
- ``refused`` (the broker validated and rejected the batch): nothing was applied, so each item
  is sent again as a single cancel;
- ``rate_limited`` (429): wait ``Retry-After``, re-read the book, resend only what is still open;
- ``ambiguous`` (5xx, timeout, dropped connection) or ``unavailable``: the batch may or may not
  have been applied, so re-read the book and resend only the items still open and not WC.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any, Literal

from guard.act.plan import CancelPlan, CancelTarget
from guard.broker.adapter import Broker, BrokerCallError, CancelReply
from guard.errors import BrokerReplyError
from guard.record.journal import Journal

__all__ = ["SendResult", "send_plan"]

SendStatus = Literal["accepted", "refused", "not_sent"]
TERMINAL = frozenset({"FF", "CL", "RJ", "EX", "FFPC"})
AMBIGUOUS_GRACE_S = 0.5  # let a request the server is still applying land before re-reading


@dataclass(frozen=True, slots=True)
class SendResult:
    """What the broker said to one cancel: accepted (WC), refused (with its code), or never
    sent (every attempt failed). ``intent_id`` links it to the journal."""

    target: CancelTarget
    intent_id: int
    status: SendStatus
    code: str
    detail: str


class _Batch:
    """The mutable state of one batch while it is being sent."""

    def __init__(self, targets: tuple[CancelTarget, ...], intent_ids: list[int], key: str) -> None:
        self.key = key
        self.pending: list[CancelTarget] = list(targets)
        self.intent = {t.key: i for t, i in zip(targets, intent_ids, strict=True)}
        self.results: list[SendResult] = []
        self.single = len(targets) == 1
        self.last_error = ""

    def settle(self, target: CancelTarget, status: SendStatus, code: str, detail: str) -> None:
        self.results.append(SendResult(target, self.intent[target.key], status, code, detail))


async def send_plan(
    plan: CancelPlan,
    *,
    broker: Broker,
    journal: Journal,
    sweep_id: int,
    clock: Callable[[], datetime],
    log: Any,
    concurrency: int = 4,
    max_attempts: int = 5,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
) -> list[SendResult]:
    """Send every batch of ``plan``; returns one ``SendResult`` per target.

    A batch that fails beyond retrying (``ReauthRequired``: the session is gone) fails the
    whole send, but only once every batch already started has finished: a batch left
    running after the sweep gave up would send cancels nobody records, and its intents could
    be reconciled as orphans while still on the wire. Batches not yet started do not start.
    """
    gate = asyncio.Semaphore(concurrency)
    failures: list[Exception] = []

    async def one(targets: tuple[CancelTarget, ...]) -> list[SendResult]:
        async with gate:
            if failures:
                return []  # no intent written, nothing sent
            try:
                return await _send_batch(targets, broker, journal, sweep_id, clock, log,
                                         max_attempts, sleep)
            except Exception as exc:
                failures.append(exc)
                raise

    groups = await asyncio.gather(*(one(b) for b in plan.batches), return_exceptions=True)
    if failures:
        raise failures[0]
    return [result for group in groups if isinstance(group, list) for result in group]


def _intent_rows(targets: Sequence[CancelTarget]) -> list[tuple[Any, ...]]:
    return [
        (t.order.account, t.order.order_id, ",".join(t.rules),
         None if t.order.price is None else str(t.order.price), t.order.side,
         t.order.order_type, t.order.remaining, t.order.cancelled)
        for t in targets
    ]


async def _send_batch(
    targets: tuple[CancelTarget, ...],
    broker: Broker,
    journal: Journal,
    sweep_id: int,
    clock: Callable[[], datetime],
    log: Any,
    max_attempts: int,
    sleep: Callable[[float], Awaitable[None]],
) -> list[SendResult]:
    account = targets[0].order.account
    key = uuid.uuid4().hex[:16]
    ids = journal.intents(sweep_id, clock(), key, _intent_rows(targets))
    batch = _Batch(targets, ids, key)
    blog = log.bind(account=account, request_key=key)
    for attempt in range(1, max_attempts + 1):
        if not batch.pending:
            break
        try:
            await _attempt(batch, broker, journal, sweep_id, clock, blog)
        except BrokerCallError as exc:
            batch.last_error = str(exc)
            journal.request(sweep_id, clock(), key, "error",
                            [t.order.order_id for t in batch.pending],
                            {"kind": exc.kind, "code": exc.code, "status": exc.status})
            blog.warning("cancel.retrying", kind=exc.kind, attempt=attempt,
                         orders=len(batch.pending), error=str(exc))
            if exc.kind == "refused":
                batch.single = True  # the batch was rejected whole: nothing applied
                continue
            wait = exc.retry_after if exc.kind == "rate_limited" and exc.retry_after else (
                AMBIGUOUS_GRACE_S * attempt)
            await sleep(wait)
            await _keep_still_open(batch, broker, _day(batch), blog)
    for target in batch.pending:
        batch.settle(target, "not_sent", "", batch.last_error or "gave up")
        blog.error("cancel.failed", order_id=target.order.order_id, reason="not sent",
                   error=batch.last_error)
    return batch.results


def _day(batch: _Batch) -> date:
    return batch.pending[0].order.input_time.date()


async def _attempt(batch: _Batch, broker: Broker, journal: Journal, sweep_id: int,
                   clock: Callable[[], datetime], log: Any) -> None:
    """One try at the pending items: a batch DELETE, or single DELETEs after a refusal."""
    if batch.single:
        for target in list(batch.pending):
            started = time.monotonic()
            reply = await broker.cancel_one(target.order.account, target.order.order_id)
            _record(batch, [target], [reply], journal, sweep_id, clock, "single", log,
                    time.monotonic() - started)
        return
    items = [(t.order.account, t.order.order_id) for t in batch.pending]
    started = time.monotonic()
    replies = await broker.cancel_batch(items)
    _record(batch, list(batch.pending), replies, journal, sweep_id, clock, "batch", log,
            time.monotonic() - started)


def _record(batch: _Batch, targets: list[CancelTarget], replies: list[CancelReply],
            journal: Journal, sweep_id: int, clock: Callable[[], datetime], kind: str,
            log: Any, request_s: float) -> None:
    journal.request(
        sweep_id, clock(), batch.key, kind, [t.order.order_id for t in targets],
        {"results": [{"order_id": r.order_id, "accepted": r.accepted, "status": r.status,
                      "code": r.error_code} for r in replies]},
    )
    for target, reply in zip(targets, replies, strict=True):
        batch.pending.remove(target)
        if reply.accepted:
            batch.settle(target, "accepted", "", reply.status)
            log.info("cancel.sent", order_id=target.order.order_id, symbol=target.order.symbol,
                     rule=",".join(target.rules), status=reply.status, via=kind,
                     request_s=round(request_s, 4))
        else:
            batch.settle(target, "refused", reply.error_code, reply.error_message)
            log.warning("cancel.refused", order_id=target.order.order_id,
                        code=reply.error_code, message=reply.error_message)


async def _keep_still_open(batch: _Batch, broker: Broker, day: date, log: Any) -> None:
    """After a failure that may have been applied: keep pending only what is still open and
    not WC in a fresh read of the book. A read that fails keeps everything pending."""
    try:
        book = await broker.orders(batch.pending[0].order.account, day)
    except (BrokerCallError, BrokerReplyError) as exc:
        log.warning("book.reread_failed", error=str(exc))
        return
    by_id = {o.order_id: o for o in book}
    for target in list(batch.pending):
        now = by_id.get(target.order.order_id)
        if now is None:
            continue  # not in this read: keep it, the confirm step will look again
        if now.status == "WC" or now.status in TERMINAL or now.remaining == 0:
            batch.pending.remove(target)
            # WC: our request landed. Final: it landed and settled, or the order finished on
            # its own; either way there is nothing left to send, and confirm tells which.
            batch.settle(target, "accepted", "", f"book shows {now.status} after a failed request")
            log.info("cancel.applied_despite_error", order_id=target.order.order_id,
                     status=now.status)
