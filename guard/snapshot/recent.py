"""The last book read of each account, and when: what a critical sweep estimates from.

A pre-close sweep cannot wait for twenty fresh books before its first DELETE (see
``guard.act.breaker``). It counts each account's matches, at its own instant, on the book read
a few seconds before, and lets fresh reads replace those counts as they arrive. Ages are
monotonic: a wall-clock step never makes an old book look fresh.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable

from guard.model import BookOrder

__all__ = ["RecentBooks"]


class RecentBooks:
    """Account -> (when read, its orders); every book read by a sweep or the pre-read."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._books: dict[str, tuple[float, tuple[BookOrder, ...]]] = {}

    def put(self, account: str, orders: tuple[BookOrder, ...]) -> None:
        self._books[account] = (self._clock(), orders)

    def within(self, accounts: Iterable[str],
               max_age_s: float) -> dict[str, tuple[BookOrder, ...]]:
        """The books of ``accounts`` read at most ``max_age_s`` ago."""
        now = self._clock()
        return {a: book for a in accounts
                if (got := self._books.get(a)) is not None
                for read_at, book in (got,) if now - read_at <= max_age_s}
