"""The guard's ``Broker`` with each call's start and end recorded: what the benches time.

Shared by ``bench/sweep.py`` and ``bench/scale.py`` (run as scripts: this directory is on
``sys.path``, in their worker processes too). Spans are ``(name, start, end)`` on
``time.monotonic``: ``session``, ``book``, ``cash``, ``master`` and ``cancel`` (a batch or a
single).
"""

from __future__ import annotations

import time
from collections.abc import Awaitable
from typing import Any

Span = tuple[str, float, float]


def timed_broker(spans: list[Span]) -> type:
    """A ``guard.broker.client.Broker`` subclass that appends every call's span to ``spans``."""
    from guard.broker.client import Broker

    class TimedBroker(Broker):
        async def _timed(self, name: str, call: Awaitable[Any]) -> Any:
            t = time.monotonic()
            try:
                return await call
            finally:
                spans.append((name, t, time.monotonic()))

        async def ensure_session(self) -> None:
            await self._timed("session", super().ensure_session())

        async def orders(self, account: str, day: Any) -> Any:
            return await self._timed("book", super().orders(account, day))

        async def cash(self, account: str) -> Any:
            return await self._timed("cash", super().cash(account))

        async def master_data(self, day: Any) -> Any:
            return await self._timed("master", super().master_data(day))

        async def cancel_batch(self, items: Any) -> Any:
            return await self._timed("cancel", super().cancel_batch(items))

        async def cancel_one(self, account: str, order_id: str) -> Any:
            return await self._timed("cancel", super().cancel_one(account, order_id))

    return TimedBroker
