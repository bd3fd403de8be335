"""Reading the order books (and cash) of every guarded account, concurrently.

An account whose book cannot be read or parsed is left out of the sweep, with the reason: no
decision is ever made from a reply that failed.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import date, datetime

from guard.broker.adapter import Broker, BrokerCallError
from guard.errors import BrokerReplyError
from guard.model import AccountSnapshot, CashFigures
from guard.record.log import Log

__all__ = ["Snapshot", "read_cash", "take_snapshot"]


@dataclass(frozen=True, slots=True)
class Snapshot:
    """The books that were read, and why the others were not."""

    books: tuple[AccountSnapshot, ...]
    failures: tuple[tuple[str, str], ...]


async def take_snapshot(broker: Broker, accounts: Sequence[str], day: date,
                        clock: Callable[[], datetime], log: Log) -> Snapshot:
    async def one(account: str) -> AccountSnapshot | tuple[str, str]:
        try:
            orders = await broker.orders(account, day)
        except (BrokerCallError, BrokerReplyError) as exc:
            log.error("book.read_failed", account=account, error=str(exc))
            return account, str(exc)
        return AccountSnapshot(account, orders, clock())

    results = await asyncio.gather(*(one(a) for a in accounts))
    books = tuple(r for r in results if isinstance(r, AccountSnapshot))
    failures = tuple(r for r in results if isinstance(r, tuple))
    return Snapshot(books, failures)


async def read_cash(broker: Broker, accounts: Sequence[str], log: Log) -> dict[str, CashFigures]:
    """Cash per account; an account whose cash cannot be read is left out (and logged)."""
    async def one(account: str) -> tuple[str, CashFigures | None]:
        try:
            return account, await broker.cash(account)
        except (BrokerCallError, BrokerReplyError) as exc:
            log.warning("cash.read_failed", account=account, error=str(exc))
            return account, None

    pairs = await asyncio.gather(*(one(a) for a in accounts))
    return {a: c for a, c in pairs if c is not None}
