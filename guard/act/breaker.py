"""The circuit breaker of a sweep that may start an account's cancels before every book is in:
pure.

A sweep whose instant matters (a pre-close, an ``at``) cannot wait for every account's book
before its first DELETE: twenty books are two seconds of the rate limit. What it can know
early is an *estimate* of each account's matches, from a read a few seconds old (the daemon's
pre-read), evaluated at the sweep's own instant. The breaker then keeps a bound:

    bound = sum(matches counted on fresh reads) + sum(estimates of accounts not yet read)

and lets the accounts read so far start whenever ``bound <= limit``. An account without an
estimate counts as unbounded, so with no estimates at all nothing starts before every book is
in: the exact breaker of a poll. Whatever the estimates say, the matches of the accounts that
started are part of the bound they started under, so **a sweep never sends more than
``limit`` cancels**. If the fresh reads end above the limit (orders placed after the pre-read
pushed the count over), the breaker trips: no further account starts. If any had started
already, the trip is *late*; an estimate that was never below the truth makes that
impossible, which is why the pre-read is taken as close to the second as the budget allows.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field

__all__ = ["BreakerGate"]


@dataclass
class BreakerGate:
    """One sweep's breaker over accounts whose books arrive one by one.

    ``estimates``: account -> matches estimated before the books are read (absent: unknown).
    Feed it ``read`` for each account read, ``drop`` for each account that will not be (it
    failed, or was too slow: it sends nothing, so it counts nothing); ``ready`` says which
    read accounts may start now.
    """

    limit: int
    accounts: tuple[str, ...]
    estimates: Mapping[str, int] = field(default_factory=dict)
    fresh: dict[str, int] = field(default_factory=dict)
    dropped: set[str] = field(default_factory=set)
    started: list[str] = field(default_factory=list)

    def read(self, account: str, matches: int) -> None:
        self.fresh[account] = matches

    def drop(self, account: str) -> None:
        self.dropped.add(account)

    @property
    def pending(self) -> tuple[str, ...]:
        """Accounts neither read nor dropped."""
        return tuple(a for a in self.accounts if a not in self.fresh and a not in self.dropped)

    def bound(self) -> float:
        """The most cancels this sweep can want, as far as it knows now."""
        unknown = sum(self.estimates.get(a, math.inf) for a in self.pending)
        return sum(self.fresh.values()) + unknown

    def ready(self) -> list[str]:
        """The read accounts that may start now, in ``accounts`` order (each only once)."""
        if self.bound() > self.limit:
            return []
        out = [a for a in self.accounts if a in self.fresh and a not in self.started]
        self.started.extend(out)
        return out

    @property
    def settled(self) -> bool:
        """Every account is read or dropped: the count is final."""
        return not self.pending

    @property
    def total(self) -> int:
        """The matches counted on fresh reads."""
        return sum(self.fresh.values())

    @property
    def tripped(self) -> bool:
        """Final only once ``settled``: the fresh reads want more than the limit."""
        return self.total > self.limit

    def sent_before_trip(self) -> int:
        """How many of the matches had started when the breaker tripped (0 unless late)."""
        return sum(self.fresh[a] for a in self.started)

