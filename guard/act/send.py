"""Sending a plan: batches go out concurrently, paced by the SDK's limiter (which follows the
server's ``X-RateLimit-*`` headers), and no order is ever cancelled twice.

Each batch's intents are journaled before the first byte is sent. When a batch fails as a
whole, what happens depends on what the failure proves:
- ``refused`` (the broker validated and rejected the batch): nothing was applied, so each item
  is sent again as a single cancel;
- ``rate_limited`` (429): wait ``Retry-After``, re-read the book, resend only what is still open;
- ``ambiguous`` (5xx, timeout, dropped connection): the batch may or may not have been
  applied, so re-read the book and resend only the items a fresh read shows open and not WC;
- ``unavailable`` with nothing sent (connection refused): resend after a short wait.

A cancel is sent again only on proof: a fresh, successful read of the book in this sweep that
shows the order open and not WC. While the book cannot be read the sender waits and re-reads,
up to ``proof_timeout``; if no read succeeds by then, the items are settled ``unknown`` (the
request may have been applied) and confirmation decides, from the book, what happened.

Record before you act: a batch's intents are committed to the journal before its DELETE
leaves. After a DELETE leaves, ``cancel.sent`` (or ``cancel.refused``) is logged before any
further journal write, so a journal that fails mid-batch still leaves a record of what went
out. A journal failure stops every batch not yet started; ``SendAborted`` carries the results
of the ones that were sent, for the sweep to confirm.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from datetime import date, datetime
from typing import Any

from guard.act.plan import CancelPlan
from guard.broker.budget import Priority, current, spending
from guard.broker.ports import Canceller
from guard.errors import BrokerCallError, GuardError, JournalError
from guard.model import PENDING_CANCEL, BookOrder, CancelReply, CancelTarget, SendResult, SendStatus
from guard.record.journal import Journal
from guard.record.log import Log
from guard.snapshot.read import read_books

__all__ = ["SendAborted", "SendResult", "send_plan"]

AMBIGUOUS_GRACE_S = 0.5  # let a request the server is still applying land before re-reading


class SendAborted(GuardError):
    """Sending stopped early (the journal failed, or the session is gone). ``results`` holds
    one ``SendResult`` per cancel that did go out, so the sweep can still confirm them."""

    def __init__(self, cause: Exception, results: list[SendResult]) -> None:
        super().__init__(str(cause))
        self.cause = cause
        self.results = results


class _Batch:
    """The mutable state of one batch while it is being sent. ``results`` is shared by the
    whole plan, so what was settled survives an exception in any batch."""

    def __init__(self, targets: tuple[CancelTarget, ...], intent_ids: list[int], key: str,
                 results: list[SendResult]) -> None:
        self.key = key
        self.pending: list[CancelTarget] = list(targets)
        self.intent = {t.key: i for t, i in zip(targets, intent_ids, strict=True)}
        self.results = results
        self.single = len(targets) == 1
        self.last_error = ""

    def settle(self, target: CancelTarget, status: SendStatus, code: str, detail: str) -> None:
        self.results.append(SendResult(target, self.intent[target.key], status, code, detail))


async def send_plan(
    plan: CancelPlan,
    *,
    broker: Canceller,
    journal: Journal,
    sweep_id: int,
    clock: Callable[[], datetime],
    log: Log,
    concurrency: int = 4,
    max_attempts: int = 5,
    proof_timeout: float = 30.0,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    monotonic: Callable[[], float] = time.monotonic,
    failures: list[Exception] | None = None,
) -> list[SendResult]:
    """Send every batch of ``plan``; returns one ``SendResult`` per target.

    ``failures`` may be shared by several ``send_plan`` running at once (a sweep sends each
    account's plan as soon as it is ready): a failure in any of them stops the batches not
    yet started in all of them, as within one plan.

    A batch that fails beyond retrying (``ReauthRequired``: the session is gone; a
    ``JournalError``: nothing more can be recorded) stops the whole send, but only once every
    batch already started has finished: a batch left running after the sweep gave up would
    send cancels nobody records, and its intents could be reconciled as orphans while still
    on the wire. Batches not yet started do not start. ``SendAborted`` then carries the
    results of every cancel that went out.
    """
    gate = asyncio.Semaphore(concurrency)
    failures = [] if failures is None else failures
    results: list[SendResult] = []

    async def one(targets: tuple[CancelTarget, ...]) -> None:
        async with gate:
            if failures:
                return  # no intent written, nothing sent
            try:
                await _send_batch(targets, broker, journal, sweep_id, clock, log,
                                  max_attempts, sleep, results, proof_timeout, monotonic)
            except Exception as exc:
                failures.append(exc)

    await asyncio.gather(*(one(b) for b in plan.batches))
    if failures:
        raise SendAborted(failures[0], results)
    return results


def _intent_rows(targets: Sequence[CancelTarget]) -> list[tuple[Any, ...]]:
    return [
        (t.order.account, t.order.order_id, ",".join(t.rules),
         None if t.order.price is None else str(t.order.price), t.order.side,
         t.order.order_type, t.order.remaining, t.order.cancelled)
        for t in targets
    ]


async def _send_batch(
    targets: tuple[CancelTarget, ...],
    broker: Canceller,
    journal: Journal,
    sweep_id: int,
    clock: Callable[[], datetime],
    log: Log,
    max_attempts: int,
    sleep: Callable[[float], Awaitable[None]],
    results: list[SendResult],
    proof_timeout: float,
    monotonic: Callable[[], float],
) -> None:
    account = targets[0].order.account
    key = uuid.uuid4().hex[:16]
    # Record before you act: a JournalError here means no DELETE for this batch.
    ids = journal.intents(sweep_id, clock(), key, _intent_rows(targets))
    batch = _Batch(targets, ids, key, results)
    blog = log.bind(account=account, request_key=key)
    try:
        await _retry(batch, broker, journal, sweep_id, clock, blog, max_attempts, sleep,
                     proof_timeout, monotonic)
    except JournalError:
        # What went out is settled; what is still pending may have been applied by the
        # last attempt: confirmation asks the book, nothing more is sent.
        for target in list(batch.pending):
            batch.pending.remove(target)
            batch.settle(target, "unknown", "", "the journal failed while it was being sent")
        raise


async def _retry(batch: _Batch, broker: Canceller, journal: Journal, sweep_id: int,
                 clock: Callable[[], datetime], blog: Log, max_attempts: int,
                 sleep: Callable[[float], Awaitable[None]], proof_timeout: float,
                 monotonic: Callable[[], float]) -> None:
    """Send the batch's pending items, up to ``max_attempts`` tries (see the module doc)."""
    key = batch.key
    # Whether a failed attempt may have been applied: then only a fresh read proves an
    # item still open. Until the first DELETE leaves, nothing can have been applied.
    maybe_applied = False
    for attempt in range(1, max_attempts + 1):
        if not batch.pending:
            break
        if attempt > 1:
            # A resend is journaled before it leaves, like the first request: reconcile
            # measures "may still be on the wire" from a batch's last row, and the wait for
            # proof can outlast that window.
            journal.request(sweep_id, clock(), key, "resending",
                            [t.order.order_id for t in batch.pending], {"attempt": attempt})
        try:
            await _attempt(batch, broker, journal, sweep_id, clock, blog)
        except BrokerCallError as exc:
            batch.last_error = str(exc)
            blog.warning("cancel.retrying", kind=exc.kind, attempt=attempt,
                         orders=len(batch.pending), error=str(exc))
            journal.request(sweep_id, clock(), key, "error",
                            [t.order.order_id for t in batch.pending],
                            {"kind": exc.kind, "code": exc.code, "status": exc.status})
            if exc.kind == "refused":
                batch.single = True  # the batch was rejected whole: nothing applied
                continue
            wait = exc.retry_after if exc.kind == "rate_limited" and exc.retry_after else (
                AMBIGUOUS_GRACE_S * attempt)
            await sleep(wait)
            # A 429 or a refused connection proves nothing was applied; a timeout, a 5xx or
            # a dropped connection does not, and from then on only a read is proof.
            maybe_applied = maybe_applied or exc.kind == "ambiguous"
            await _keep_still_open(batch, broker, _day(batch), blog,
                                   proof_timeout if maybe_applied else None, sleep, monotonic)
    for target in batch.pending:
        batch.settle(target, "not_sent", "", batch.last_error or "gave up")
        blog.error("cancel.failed", order_id=target.order.order_id, reason="not sent",
                   error=batch.last_error)


def _day(batch: _Batch) -> date:
    return batch.pending[0].order.input_time.date()


async def _attempt(batch: _Batch, broker: Canceller, journal: Journal, sweep_id: int,
                   clock: Callable[[], datetime], log: Log) -> None:
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
            log: Log, request_s: float) -> None:
    """Settle and log what the broker answered, then journal it: the log line comes first,
    so a journal that fails here cannot hide a DELETE that went out."""
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
    journal.request(
        sweep_id, clock(), batch.key, kind, [t.order.order_id for t in targets],
        {"results": [{"order_id": r.order_id, "accepted": r.accepted, "status": r.status,
                      "code": r.error_code} for r in replies]},
    )


async def _keep_still_open(batch: _Batch, broker: Canceller, day: date, log: Log,
                           proof_timeout: float | None,
                           sleep: Callable[[float], Awaitable[None]],
                           monotonic: Callable[[], float]) -> None:
    """Before a resend: keep pending only what a fresh read of the book shows open and not
    WC. WC or final means the request landed (or the order ended by itself): never resent.

    With ``proof_timeout`` (an earlier request may have been applied), nothing is resent
    without that proof: an order missing from the read, or a book that could not be read
    before the timeout, is settled ``unknown`` and confirmation reads the book for its
    outcome. Without it (every failure so far proved nothing was applied: a 429, a refused
    connection), a failed read keeps everything pending."""
    account = batch.pending[0].order.account
    deadline = None if proof_timeout is None else monotonic() + proof_timeout
    delay = 0.2
    while True:
        with spending(Priority.PROOF, current()[1]):  # a resend waits on it
            got = await read_books(broker, {account: day}, log, event="book.reread_failed")
        book = got.read.get(account)
        if book is not None:
            break
        if deadline is None:
            return  # nothing was applied: everything stays pending
        left = deadline - monotonic()
        if left <= 0:
            for target in list(batch.pending):
                _unproven(batch, target, log, "no read of the book proved the order open after "
                          "a request that may have been applied")
            return
        await sleep(min(delay, left))
        delay = min(delay * 2, 2.0)
    _keep_open_in(batch, book, log, must_prove=deadline is not None)


def _unproven(batch: _Batch, target: CancelTarget, log: Log, why: str) -> None:
    """Never resend without proof: the item is settled ``unknown`` for confirmation."""
    batch.pending.remove(target)
    batch.settle(target, "unknown", "", why)
    log.warning("cancel.not_resent", order_id=target.order.order_id, reason=why)


def _keep_open_in(batch: _Batch, book: Sequence[BookOrder], log: Log, *,
                  must_prove: bool) -> None:
    by_id = {o.order_id: o for o in book}
    for target in list(batch.pending):
        now = by_id.get(target.order.order_id)
        if now is None:
            if not must_prove:
                continue  # nothing was applied: it stays pending
            _unproven(batch, target, log, "the order is missing from the book read after a "
                      "request that may have been applied")
            continue
        if now.status == PENDING_CANCEL or now.final:
            batch.pending.remove(target)
            # WC: our request landed. Final: it landed and settled, or the order finished on
            # its own; either way there is nothing left to send, and confirm tells which.
            batch.settle(target, "accepted", "", f"book shows {now.status} after a failed request")
            log.info("cancel.applied_despite_error", order_id=target.order.order_id,
                     status=now.status)
