"""Reading the books of several accounts at once, surviving the broker: the one place where
"read these books, and say which could not be read and why" is written.

Every step that looks at the book (the snapshot, the sender's proof before a resend,
confirmation, reconciliation) reads through here. A ``BrokerError`` of one account is that
account's failure, logged and returned by name; it never stops another account's read.
``ReauthRequired`` (the session is gone for every account) is raised.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date

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

    def by_id(self, account: str) -> dict[str, BookOrder] | None:
        """The account's orders by id; None if its book was not read."""
        book = self.read.get(account)
        return None if book is None else {o.order_id: o for o in book}


async def read_books(reader: BookReader, wanted: Mapping[str, date], log: Log, *,
                     event: str = "book.read_failed", level: str = "warning") -> Books:
    """Read every account of ``wanted`` (account -> exchange date) concurrently."""

    async def one(account: str, day: date) -> tuple[str, tuple[BookOrder, ...] | str]:
        try:
            return account, await reader.orders(account, day)
        except BrokerError as exc:
            getattr(log, level)(event, account=account, error=str(exc))
            return account, str(exc)

    pairs = await asyncio.gather(*(one(a, d) for a, d in wanted.items()))
    return Books({a: r for a, r in pairs if isinstance(r, tuple)},
                 {a: r for a, r in pairs if isinstance(r, str)})
