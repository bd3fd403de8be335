"""Reading the books of several accounts at once, surviving the broker: the one place where
"read these books, and say which could not be read and why" is written.

Every step that looks at the book (the snapshot, the sender's proof before a resend,
confirmation, reconciliation) reads through here. A ``BrokerError`` of one account is that
account's failure, logged and returned by name; it never stops another account's read.
``ReauthRequired`` (the session is gone for every account) is raised.

The snapshot, which decides once over every account, also bounds how long one slow account
may hold the others back (``straggler_s``): see ``read_books``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Collection, Mapping
from contextlib import nullcontext
from dataclasses import dataclass
from datetime import date

from guard.broker.budget import Priority, spending
from guard.broker.ports import BookReader
from guard.errors import BrokerError
from guard.model import BookOrder
from guard.record.log import Log

__all__ = ["Books", "read_books"]


@dataclass(frozen=True, slots=True)
class Books:
    """The books that were read, by account, and why the others were not."""

    read: Mapping[str, tuple[BookOrder, ...]]
    failed: Mapping[str, str]
    slow: frozenset[str] = frozenset()  # left out by the straggler cut-off

    def by_id(self, account: str) -> dict[str, BookOrder] | None:
        """The account's orders by id; None if its book was not read."""
        book = self.read.get(account)
        return None if book is None else {o.order_id: o for o in book}


async def read_books(reader: BookReader, wanted: Mapping[str, date], log: Log, *,
                     event: str = "book.read_failed", level: str = "warning",
                     priority: Priority | None = None, straggler_s: float | None = None,
                     queued: Callable[[], int] = lambda: 0,
                     patient: Collection[str] = (),
                     on_read: Callable[[str, tuple[BookOrder, ...]], None] | None = None,
                     ) -> Books:
    """Read every account of ``wanted`` (account -> exchange date) concurrently.

    ``priority``: the budget's priority for these reads, accounts ranked in ``wanted``'s order.
    ``straggler_s``: once one account is read, the rest get this long without progress (no
    account finishing, and none of their requests still ``queued`` for the budget, which is
    the budget's delay, not theirs); an account still unread then is left out, failed with the
    reason and logged as ``book.read_slow`` (its reads are abandoned: reads only, nothing to
    undo). While an account of ``patient`` (cut off last time) is still unread there is no
    cut-off: a steadily slow account is read in full every other sweep, never starved.
    ``on_read(account, orders)`` is called as each book arrives, before the others are in
    (a critical sweep starts that account's cancels from it).
    """
    rank = {a: i for i, a in enumerate(wanted)}

    async def one(account: str, day: date) -> tuple[BookOrder, ...] | str:
        spend = nullcontext() if priority is None else spending(priority, rank[account])
        try:
            with spend:
                book = await reader.orders(account, day)
        except BrokerError as exc:
            getattr(log, level)(event, account=account, error=str(exc))
            return str(exc)
        if on_read is not None:
            on_read(account, book)
        return book

    tasks = {asyncio.ensure_future(one(a, d)): a for a, d in wanted.items()}
    pending = set(tasks)
    done_any = False
    try:
        while pending:
            done, pending = await asyncio.wait(
                pending, timeout=straggler_s if done_any else None,
                return_when=asyncio.FIRST_COMPLETED)
            if done:
                done_any = True
                continue
            if queued() > 0:
                continue  # the budget is still pacing requests: not the account's slowness
            if any(tasks[t] in patient for t in pending):
                continue  # cut off last time: this time it is waited for
            break
    finally:
        for task in pending:
            task.cancel()
        if pending:
            await asyncio.gather(*pending, return_exceptions=True)
    read: dict[str, tuple[BookOrder, ...]] = {}
    failed: dict[str, str] = {}
    slow: set[str] = set()
    # ReauthRequired (or a bug) in any read is raised, once every task's outcome is taken:
    # the other reads usually failed the same way, and an exception never retrieved is noise.
    raised = [e for t in tasks if t.done() and not t.cancelled()
              for e in (t.exception(),) if e is not None]
    if raised:
        raise raised[0]
    for task, account in tasks.items():
        result = task.result() if task.done() and not task.cancelled() else None
        if isinstance(result, tuple):
            read[account] = result
        elif isinstance(result, str):
            failed[account] = result
        else:
            why = (f"its book was still not read {straggler_s:g}s after the other accounts' "
                   "were: left out of this sweep so their cancels are not delayed (the next "
                   "sweep reads it again)")
            log.error("book.read_slow", account=account, error=why)
            failed[account] = why
            slow.add(account)
    return Books(read, failed, frozenset(slow))
