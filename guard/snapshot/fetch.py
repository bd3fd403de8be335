"""Reading the order books (and cash) of every guarded account, concurrently.

An account whose book cannot be read or parsed is left out of the sweep, with the reason: no
decision is ever made from a reply that failed.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass
from datetime import date, datetime

from guard.broker.budget import Priority
from guard.broker.ports import BookReader, CashReader
from guard.errors import BrokerError
from guard.market.accounts import DerivativeCash
from guard.model import AccountSnapshot, BookOrder, CashFigures
from guard.record.log import Log
from guard.snapshot.read import read_books
from guard.snapshot.recent import RecentBooks

__all__ = ["STRAGGLER_S", "Snapshot", "pre_read", "read_cash", "take_snapshot"]


@dataclass(frozen=True, slots=True)
class Snapshot:
    """The books that were read, and why the others were not."""

    books: tuple[AccountSnapshot, ...]
    failures: tuple[tuple[str, str], ...]
    slow: frozenset[str] = frozenset()  # left out by the straggler cut-off


STRAGGLER_S = 2.0  # an account's read may hold the others' decision up this long, no longer


async def take_snapshot(broker: BookReader, accounts: Sequence[str], day: date,
                        clock: Callable[[], datetime], log: Log, *,
                        straggler_s: float | None = STRAGGLER_S,
                        queued: Callable[[], int] = lambda: 0,
                        patient: Collection[str] = (),
                        on_read: Callable[[str, tuple[BookOrder, ...]], None] | None = None,
                        ) -> Snapshot:
    """Every account's book, read concurrently at the budget's ``DECIDE`` priority (ranked
    by the order of ``accounts``).

    A poll decides once, over every account it read, so that the circuit breaker counts
    every match before anything is sent (a critical sweep may start an account as its book
    arrives, through ``on_read``: see ``guard.act.breaker``). A slow account must not hold
    the others' cancels back: once one account is read, the rest get ``straggler_s``
    without progress (no account finishing, and no request of theirs still queued for the
    budget, which is the budget's delay, not theirs); an account still unread then is left
    out of this sweep, reported unread with the reason (its reads are abandoned: reads
    only, nothing to undo), and read again, in full, by the next sweep (pass it in
    ``patient``). A failing account fails at once, as before. ``straggler_s=None``: no
    cut-off (the operator's own cancel-all, which has no breaker to wait for).
    """
    got = await read_books(broker, dict.fromkeys(accounts, day), log, level="error",
                           priority=Priority.DECIDE, straggler_s=straggler_s, queued=queued,
                           patient=patient, on_read=on_read)
    taken = clock()
    books = tuple(AccountSnapshot(a, got.read[a], taken) for a in accounts if a in got.read)
    failures = tuple((a, got.failed[a]) for a in accounts if a in got.failed)
    return Snapshot(books, failures, got.slow)


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


async def pre_read(broker: BookReader, accounts: Sequence[str], day: date, recent: RecentBooks,
                   log: Log) -> int:
    """Read every account's book into ``recent``, at the budget's lowest priority (a running
    sweep's requests go first), a few seconds before a critical sweep: its estimates. Reads
    only; an account that fails is logged and simply has no estimate. Returns how many were
    read."""
    got = await read_books(broker, dict.fromkeys(accounts, day), log, event="book.pre_read_failed",
                           priority=Priority.BACKGROUND, on_read=recent.put)
    return len(got.read)
