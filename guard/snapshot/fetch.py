"""Reading the order books (and cash) of every guarded account, concurrently.

An account whose book cannot be read or parsed is left out of the sweep, with the reason: no
decision is ever made from a reply that failed.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import date, datetime

from guard.broker.ports import BookReader, CashReader
from guard.errors import BrokerError
from guard.market.accounts import DerivativeCash
from guard.model import AccountSnapshot, CashFigures
from guard.record.log import Log
from guard.snapshot.read import read_books

__all__ = ["Snapshot", "read_cash", "take_snapshot"]


@dataclass(frozen=True, slots=True)
class Snapshot:
    """The books that were read, and why the others were not."""

    books: tuple[AccountSnapshot, ...]
    failures: tuple[tuple[str, str], ...]


async def take_snapshot(broker: BookReader, accounts: Sequence[str], day: date,
                        clock: Callable[[], datetime], log: Log) -> Snapshot:
    got = await read_books(broker, dict.fromkeys(accounts, day), log, level="error")
    taken = clock()
    books = tuple(AccountSnapshot(a, got.read[a], taken) for a in accounts if a in got.read)
    failures = tuple((a, got.failed[a]) for a in accounts if a in got.failed)
    return Snapshot(books, failures)


async def read_cash(broker: CashReader, accounts: Sequence[str],
                    log: Log) -> dict[str, CashFigures | DerivativeCash]:
    """Cash per account (a derivatives account's is its derivative balance); an account whose
    cash cannot be read is left out (and logged)."""
    async def one(account: str) -> tuple[str, CashFigures | DerivativeCash | None]:
        try:
            return account, await broker.cash(account)
        except BrokerError as exc:
            log.warning("cash.read_failed", account=account, error=str(exc))
            return account, None

    pairs = await asyncio.gather(*(one(a) for a in accounts))
    return {a: c for a, c in pairs if c is not None}
