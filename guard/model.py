"""The values every step of a sweep passes along, parsed once at the edge.

Nothing past the broker sees a raw JSON dict or an ``ssi_sdk`` model: it sees these.
This module is a leaf: it imports nothing of the guard's, so every package may use it and no
package cycle can run through it. The order-status facts live here, once.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Final, Literal

__all__ = [
    "FINAL_OK",
    "PENDING_CANCEL",
    "TERMINAL_STATUSES",
    "AccountSnapshot",
    "BookOrder",
    "CancelReply",
    "CancelTarget",
    "CashFigures",
    "Outcome",
    "OutcomeKind",
    "SendResult",
    "SendStatus",
]

# An order in one of these statuses is done: nothing is left to cancel (docs/market.md).
TERMINAL_STATUSES: Final = frozenset({"FF", "CL", "RJ", "EX", "FFPC"})
# A cancel for the order is already on its way at the exchange: never send another.
PENDING_CANCEL: Final = "WC"


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

    @property
    def final(self) -> bool:
        """Done at the exchange, or nothing left: no cancel can change it."""
        return self.status in TERMINAL_STATUSES or self.remaining == 0


@dataclass(frozen=True, slots=True)
class CashFigures:
    """Cash as the broker reports it; ``purchasing_power`` comes from PPMMR."""

    withdrawable: Decimal
    on_hold_cash: Decimal
    purchasing_power: Decimal


@dataclass(frozen=True, slots=True)
class AccountSnapshot:
    """The order book of one account, read at ``taken_at``. Cash is read separately, and only
    for accounts with cancels to send."""

    account: str
    orders: tuple[BookOrder, ...]
    taken_at: datetime


@dataclass(frozen=True, slots=True)
class CancelTarget:
    """One order the rules want cancelled, with the rules and reasons that chose it."""

    order: BookOrder
    rules: tuple[str, ...]
    reason: str

    @property
    def key(self) -> tuple[str, str]:
        return (self.order.account, self.order.order_id)


@dataclass(frozen=True, slots=True)
class CancelReply:
    """The broker's answer for one cancel item: accepted (normally WC) or refused with a code."""

    account: str
    order_id: str
    accepted: bool
    status: str
    error_code: str
    error_message: str


# ``unknown``: a request that may have been applied, with no read of the book to prove either
# way before the deadline; never resent, and confirmation asks the book.
SendStatus = Literal["accepted", "refused", "not_sent", "unknown"]


@dataclass(frozen=True, slots=True)
class SendResult:
    """What the broker said to one cancel: accepted (WC), refused (with its code), never sent
    (every attempt failed), or unknown. ``intent_id`` links it to the journal."""

    target: CancelTarget
    intent_id: int
    status: SendStatus
    code: str
    detail: str


OutcomeKind = Literal[
    "cancelled", "partially_cancelled", "filled_first", "already_done", "failed", "unconfirmed"
]
FINAL_OK: Final = frozenset({"cancelled", "partially_cancelled", "filled_first", "already_done"})


@dataclass(frozen=True, slots=True)
class Outcome:
    """The final word on one cancel the guard decided."""

    sent: SendResult
    kind: OutcomeKind
    cancelled_qty: int
    final_status: str
    detail: str
    latency_s: float

    @property
    def ok(self) -> bool:
        return self.kind in FINAL_OK
