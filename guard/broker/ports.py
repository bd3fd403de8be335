"""What each step asks of the broker, as small protocols: a step depends on the calls it
makes, not on the SDK client, so a test (or another broker) can stand in with no casts.

``Broker`` (``guard.broker.client``) implements them all.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date
from typing import Protocol

from guard.market.accounts import DerivativeCash
from guard.market.instruments import Instrument
from guard.model import BookOrder, CancelReply, CashFigures

__all__ = ["BookReader", "BrokerPort", "Canceller", "CashReader", "InstrumentSource",
           "Session"]


class BookReader(Protocol):
    """Reads one account's order book for an exchange date. Raises ``BrokerError``."""

    async def orders(self, account: str, day: date) -> tuple[BookOrder, ...]: ...


class Canceller(BookReader, Protocol):
    """Sends cancels; reads the book too, because a cancel is resent only on a read's proof."""

    async def cancel_batch(self, items: Sequence[tuple[str, str]]) -> list[CancelReply]: ...

    async def cancel_one(self, account: str, order_id: str) -> CancelReply: ...


class CashReader(Protocol):
    """Reads an account's cash: an equity account's ``CashFigures``, a derivatives
    account's ``DerivativeCash`` (the broker knows which the account is)."""

    async def cash(self, account: str) -> CashFigures | DerivativeCash: ...


class InstrumentSource(Protocol):
    async def master_data(self, day: date) -> list[Instrument]: ...


class Session(Protocol):
    """The session every call rides on. ``session_changed_at`` is when a login (by this
    process or by ``ssi-guard login``) last replaced the cached token, 0 if never."""

    async def ensure_session(self) -> None: ...

    @property
    def token_expires_at(self) -> int: ...

    @property
    def request_timeout_s(self) -> float: ...

    def session_changed_at(self) -> float: ...

    @property
    def token_unsaved(self) -> str | None:
        """Why the session in memory could not be cached (None when it is)."""
        ...


class BrokerPort(Session, Canceller, CashReader, InstrumentSource, Protocol):
    """Everything a sweep and the daemon use."""
