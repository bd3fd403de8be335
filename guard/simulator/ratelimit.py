"""The server-side token bucket, counted per API key, as SSI meters FastConnect clients."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

__all__ = ["Admission", "TokenBuckets"]


@dataclass(frozen=True)
class Admission:
    """The outcome for one request: admitted or not, and the headers to send."""

    allowed: bool
    limit: int
    remaining: int
    retry_after: float


class TokenBuckets:
    """``rate`` requests per second per key, with a burst of ``rate``; 0 disables limiting."""

    def __init__(self, rate: int = 10, *,
                 monotonic: Callable[[], float] = time.monotonic) -> None:
        self.rate = rate
        self._now = monotonic
        self._buckets: dict[str, tuple[float, float]] = {}  # key -> (tokens, last refill)
        self._lock = threading.Lock()
        self.refused = 0

    def admit(self, key: str) -> Admission:
        if self.rate <= 0:
            return Admission(True, 0, 0, 0.0)
        now = self._now()
        with self._lock:
            tokens, last = self._buckets.get(key, (float(self.rate), now))
            tokens = min(float(self.rate), tokens + (now - last) * self.rate)
            if tokens >= 1.0:
                tokens -= 1.0
                self._buckets[key] = (tokens, now)
                return Admission(True, self.rate, int(tokens), 0.0)
            self._buckets[key] = (tokens, now)
            self.refused += 1
            wait = (1.0 - tokens) / self.rate
            return Admission(False, self.rate, 0, wait)
