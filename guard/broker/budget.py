"""One request budget for every call on one API key, spent in the order that gets cancels out
first.

SSI meters requests per API key (10/s). Book pages, cash reads, cancel batches and confirmation
reads of every account draw on that one budget, so when they compete the order matters: a
batch of cancels ready to go must not wait behind a confirmation read of another account, and
the pages a decision waits for must not wait behind a cash read taken after the sweep.

``Budget`` is a token bucket (``rate`` per second, burst one less: see ``Budget``) whose
waiters are served by priority, then by account rank (the order of ``accounts`` in
rules.yaml), then first come first served. The SDK's limiter stays behind it, unchanged: it
still follows the server's ``X-RateLimit-*`` headers and waits out a 429, so the budget only
decides *which* request goes next, never lets more go than the SDK would.

The priority of a call is set by the step that makes it, for everything it awaits, with
``spending(priority, rank)``: a ``ContextVar``, so concurrent tasks of one sweep each carry
their own, and the ports (``guard.broker.ports``) keep their simple signatures.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from enum import IntEnum

__all__ = ["Budget", "Priority", "answer_limit", "answer_within", "current", "spending"]


class Priority(IntEnum):
    """Who goes first when requests compete for the budget (lower first)."""

    CANCEL = 0  # cancel batches and singles, and the cash read an account's cancels wait for
    DECIDE = 1  # the book pages a sweep decides from
    PROOF = 2  # the re-read that proves an order still open before a resend
    CONFIRM = 3  # confirmation reads
    BACKGROUND = 4  # cash after the sweep, master data, account typing, anything unmarked


_SPEND: ContextVar[tuple[Priority, int]] = ContextVar("guard_budget_priority",
                                                      default=(Priority.BACKGROUND, 0))


_ANSWER: ContextVar[float | None] = ContextVar("guard_answer_within", default=None)


@contextmanager
def answer_within(seconds: float) -> Iterator[None]:
    """Every read awaited inside the block must be answered within ``seconds`` of leaving the
    budget's queue (the wait for the budget itself is not counted), or it fails as
    unavailable: for a read that is only a measurement and must never hold a cancel back."""
    token = _ANSWER.set(seconds)
    try:
        yield
    finally:
        _ANSWER.reset(token)


def answer_limit() -> float | None:
    """The limit ``answer_within`` set for the calling task, if any."""
    return _ANSWER.get()


def current() -> tuple[Priority, int]:
    """The (priority, account rank) the calling task spends at."""
    return _SPEND.get()


@contextmanager
def spending(priority: Priority, rank: int = 0) -> Iterator[None]:
    """Every broker call awaited inside the block (and in tasks it starts) spends at
    ``priority``; ``rank`` orders accounts of one priority (lower first)."""
    token = _SPEND.set((priority, rank))
    try:
        yield
    finally:
        _SPEND.reset(token)


class Budget:
    """A priority-ordered token bucket: ``rate`` requests per second, burst ``burst``
    (default one less than ``rate``); a rate of 0 or less is unlimited.

    Why the smaller burst: the server meters arrivals and answers ``X-RateLimit-Remaining``
    as a whole number, and at 0 the SDK rests a full second. A full burst of ``rate`` lands
    together, and the next request, one token later, then finds the server's bucket just under
    one when the burst arrived a few milliseconds late: "0", and a second lost at exactly the
    moment a pre-close sweep is sending. One token of margin absorbs up to 1/rate seconds of
    such jitter.
    """

    def __init__(self, rate: float, *, burst: float | None = None,
                 monotonic: Callable[[], float] = time.monotonic) -> None:
        self.rate = float(rate)
        self.burst = float(burst if burst is not None else max(1.0, self.rate - 1.0))
        self._now = monotonic
        self._tokens = self.burst
        self._last = monotonic()
        self._waiters: list[tuple[int, int, int, asyncio.Future[None]]] = []
        self._seq = itertools.count()
        self._timer: asyncio.TimerHandle | None = None
        self._pause_until = 0.0
        self.granted: list[tuple[float, Priority, int]] = []  # (when, priority, rank): tests

    @property
    def waiting(self) -> int:
        """Requests queued for a token now."""
        return sum(1 for *_, f in self._waiters if not f.done())

    def full(self) -> bool:
        """Whether a whole burst could go at once now."""
        self._refill()
        return self.rate <= 0 or (self._tokens >= self.burst - 1e-9 and not self.waiting
                                  and self._now() >= self._pause_until)

    def pause(self, seconds: float) -> None:
        """Grant nothing for ``seconds`` (the server said its quota is spent, or limited the
        rate): requests then wait here, in priority order, not inside the SDK's limiter."""
        if seconds > 0:
            self._pause_until = max(self._pause_until, self._now() + seconds)

    async def take(self) -> None:
        """Wait for a token, served by the caller's ``spending`` priority and rank."""
        priority, rank = current()
        if self.rate <= 0:
            self._note(priority, rank)
            return
        self._refill()
        if not self._waiters and self._tokens >= 1.0 and self._now() >= self._pause_until:
            self._tokens -= 1.0
            self._note(priority, rank)
            return
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        heapq.heappush(self._waiters, (int(priority), rank, next(self._seq), future))
        self._pump()
        try:
            await future
        except asyncio.CancelledError:
            if future.done() and not future.cancelled():
                self._tokens += 1.0  # granted, then abandoned: give the token back
                self._pump()
            raise
        self._note(priority, rank)

    def _note(self, priority: Priority, rank: int) -> None:
        if len(self.granted) < 100_000:
            self.granted.append((self._now(), priority, rank))

    def _refill(self) -> None:
        now = self._now()
        self._tokens = min(self.burst, self._tokens + (now - self._last) * self.rate)
        self._last = now

    def _pump(self) -> None:
        """Grant tokens to the best waiters; arm a timer for the next token if any wait."""
        if self._timer is not None:
            self._timer.cancel()  # a no-op when it is the timer that called
            self._timer = None
        self._refill()
        paused = self._pause_until - self._now()
        if paused > 0:
            if self._waiters:
                self._timer = asyncio.get_running_loop().call_later(paused, self._pump)
            return
        while self._waiters:
            *_, future = self._waiters[0]
            if future.done():  # cancelled while waiting
                heapq.heappop(self._waiters)
                continue
            if self._tokens < 1.0:
                break
            heapq.heappop(self._waiters)
            self._tokens -= 1.0
            future.set_result(None)
        if self._waiters and self._timer is None:
            delay = max(0.0, (1.0 - self._tokens) / self.rate)
            self._timer = asyncio.get_running_loop().call_later(delay, self._pump)
