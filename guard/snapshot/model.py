"""The values a snapshot yields: what the broker said, parsed once at the edge.

Nothing past the broker adapter sees a raw JSON dict or an ``ssi_sdk`` model: it sees these.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

__all__ = ["AccountSnapshot", "BookOrder", "CashFigures"]


@dataclass(frozen=True, slots=True)
class BookOrder:
    """One order of today's order book.

    ``status`` is the raw status code ("QU", "PF", ... or an unknown code kept verbatim).
    ``price`` is None for a market-priced order (ATO/ATC/MP/MTL), whose word is ``price_word``.
    ``input_time`` is aware, in exchange time.
    """

    account: str
    order_id: str
    client_request_id: str
    symbol: str
    side: str
    order_type: str
    price: Decimal | None
    price_word: str | None
    quantity: int
    filled: int
    cancelled: int
    status: str
    input_time: datetime

    @property
    def remaining(self) -> int:
        """The unfilled, uncancelled quantity: what a cancel would release."""
        return max(0, self.quantity - self.filled - self.cancelled)


@dataclass(frozen=True, slots=True)
class CashFigures:
    """Cash as the broker reports it; ``purchasing_power`` comes from PPMMR."""

    withdrawable: Decimal
    on_hold_cash: Decimal
    purchasing_power: Decimal


@dataclass(frozen=True, slots=True)
class AccountSnapshot:
    """The order book of one account, read at ``taken_at``. Cash is read separately, and only
    for accounts with cancels to send (``snapshot.fetch.read_cash``)."""

    account: str
    orders: tuple[BookOrder, ...]
    taken_at: datetime
