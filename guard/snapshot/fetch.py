"""Reading the order books (and cash) of every guarded account, concurrently.

An account whose book cannot be read or parsed is left out of the sweep, with the reason: no
decision is ever made from a reply that failed.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import date, datetime

from guard.broker.budget import Priority, spending
from guard.broker.ports import BookReader, CashReader
from guard.errors import BrokerError
from guard.market.accounts import DerivativeCash
from guard.model import AccountSnapshot, BookOrder, CashFigures
from guard.record.log import Log

__all__ = ["STRAGGLER_S", "Snapshot", "read_cash", "take_snapshot"]


@dataclass(frozen=True, slots=True)
class Snapshot:
    """The books that were read, and why the others were not."""

    books: tuple[AccountSnapshot, ...]
    failures: tuple[tuple[str, str], ...]


STRAGGLER_S = 2.0  # an account's read may hold the others' decision up this long, no longer


async def take_snapshot(broker: BookReader, accounts: Sequence[str], day: date,
                        clock: Callable[[], datetime], log: Log, *,
                        straggler_s: float = STRAGGLER_S,
                        queued: Callable[[], int] = lambda: 0) -> Snapshot:
    """Every account's book, read concurrently at the budget's ``DECIDE`` priority (ranked
    by the order of ``accounts``).

    A sweep decides once, over every account it read, so that the circuit breaker counts
    every match before anything is sent. A slow account must not hold the others' cancels
    back: once one account is read, the rest get ``straggler_s`` without progress (no
    account finishing, and no request of theirs still queued for the budget, which is
    the budget's delay, not theirs); an account still unread then is left out of this sweep,
    reported unread with the reason (its reads are abandoned: reads only, nothing to
    undo), and read again by the next sweep. A failing account fails at once, as before.
    """
    rank = {a: i for i, a in enumerate(accounts)}

    async def one(account: str) -> tuple[BookOrder, ...] | str:
        with spending(Priority.DECIDE, rank[account]):
            try:
                return await broker.orders(account, day)
            except BrokerError as exc:
                log.error("book.read_failed", account=account, error=str(exc))
                return str(exc)

    tasks = {asyncio.ensure_future(one(a)): a for a in dict.fromkeys(accounts)}
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
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
            break
    finally:
        for task in pending:
            task.cancel()
    read: dict[str, tuple[BookOrder, ...]] = {}
    failed: dict[str, str] = {}
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
    taken = clock()
    books = tuple(AccountSnapshot(a, read[a], taken) for a in accounts if a in read)
    failures = tuple((a, failed[a]) for a in accounts if a in failed)
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
