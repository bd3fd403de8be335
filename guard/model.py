"""The values every step of a sweep passes along, parsed once at the edge: orders and books,
the engine's decisions, cancel targets, send results and outcomes.

Nothing past the broker sees a raw JSON dict or an ``ssi_sdk`` model: it sees these.
This module is a leaf: it imports nothing of the guard's, so every package may use it and no
package cycle can run through it. The order-status facts live here, once.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from enum import StrEnum
from typing import Final, Literal, NamedTuple, Protocol

__all__ = [
    "FINAL_OK",
    "PENDING_CANCEL",
    "TERMINAL_STATUSES",
    "AccountSnapshot",
    "Board",
    "BookOrder",
    "CancelReply",
    "CancelTarget",
    "CashFigures",
    "Decision",
    "Hold",
    "HoldKind",
    "Match",
    "Outcome",
    "OutcomeKind",
    "SendResult",
    "SendStatus",
    "Verdict",
    "Wording",
]

# An order in one of these statuses is done: nothing is left to cancel (docs/market.md).
TERMINAL_STATUSES: Final = frozenset({"FF", "CL", "RJ", "EX", "FFPC"})
# A cancel for the order is already on its way at the exchange: never send another.
PENDING_CANCEL: Final = "WC"


class Board(StrEnum):
    """The boards the guard knows. ``DER`` is the derivatives board (VN30F...)."""

    HOSE = "HOSE"
    HNX = "HNX"
    UPCOM = "UPCOM"
    DER = "DER"


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


# ---- what the engine decides --------------------------------------------------------------
# A ``Decision`` per live order, its ``Verdict`` and ``Match``. Everything is decided when
# ``evaluate`` returns; only the *wording* of the reasons (``age 17m12s >= 15m``) waits until
# ``Decision.reason`` or ``Decision.matches`` is read (the engine's ``Wording``, see
# ``guard.evaluate.wording``), so deciding stays cheap on every poll. Wording is pure, so a
# reason read later is the same text it would have been at once.


class HoldKind(StrEnum):
    """What kind of hold keeps an order back: a bounded label beside the hold's text.

    The text (``protected prefix keep-``) names values without bound; the kind is what metrics
    count (``ssi_guard_orders_held_total{reason}``) and what code may branch on, so nothing
    has to read the English. The values are the metric labels.
    """

    PROTECTED = "protected"  # the client request id has a protected prefix
    BANNED_WINDOW = "banned_window"  # the calendar bans a cancel now (phase, weekend, holiday)
    ALREADY_CANCELLING = "already_cancelling"  # status WC: a cancel is pending
    NOT_CANCELLABLE = "not_cancellable"  # the status is not in ``cancellable``
    NOTHING_LEFT = "nothing_left"  # nothing unfilled and uncancelled remains
    BOARD_UNKNOWN = "board_unknown"  # neither master data nor ``boards:`` knows the symbol
    ACCOUNT_NOT_GUARDED = "account_not_guarded"  # the account is not in ``accounts``
    OTHER = "other"  # anything else (today: an input_time with no timezone)


class Hold(NamedTuple):
    """Why an order must not be cancelled now: the words, and their kind."""

    text: str
    kind: HoldKind


@dataclass(frozen=True, slots=True)
class Match:
    """A rule that selected an order, and why in words (``age 17m12s >= 15m``)."""

    rule: str
    reason: str


class Wording(Protocol):
    """Names and words the rules of a bitmask (bit ``i`` is the ``i``-th rule)."""

    def names(self, mask: int) -> tuple[str, ...]: ...

    def matches(self, mask: int, order: BookOrder, board: Board | None) -> tuple[Match, ...]: ...

    def text(self, mask: int, order: BookOrder, board: Board | None) -> str: ...


@dataclass(frozen=True, slots=True)
class Verdict:
    """The rules that matched an order: a bitmask over the rules, and what can word it.

    One ``Verdict`` is shared by every order the same rules matched in one ``evaluate`` call.
    Two are equal when they hold the same rules worded the same way (the same ``evaluate``
    call, or equal ``Verdict.of`` matches); compare ``Decision.matches`` across calls.
    """

    mask: int
    wording: Wording = field(repr=False)

    @classmethod
    def of(cls, *matches: Match) -> Verdict:
        """A verdict of matches already worded (for callers that made their own)."""
        return cls((1 << len(matches)) - 1, _Worded(matches))

    def __bool__(self) -> bool:
        return self.mask != 0

    @property
    def rules(self) -> tuple[str, ...]:
        """The names of the rules that matched, in rule order."""
        return self.wording.names(self.mask)

    def matches(self, order: BookOrder, board: Board | None) -> tuple[Match, ...]:
        """Each matched rule with why it selected ``order``, worded now."""
        return self.wording.matches(self.mask, order, board)

    def text(self, order: BookOrder, board: Board | None) -> str:
        """The reasons of ``matches`` joined by ``"; "``, worded now ("" for no match)."""
        return self.wording.text(self.mask, order, board)


@dataclass(frozen=True, slots=True)
class _Worded:
    """The ``Wording`` of ``Verdict.of``: fixed matches, one bit each."""

    _matches: tuple[Match, ...]

    def names(self, mask: int) -> tuple[str, ...]:
        return tuple(m.rule for i, m in enumerate(self._matches) if mask >> i & 1)

    def matches(self, mask: int, order: BookOrder, board: Board | None) -> tuple[Match, ...]:
        return tuple(m for i, m in enumerate(self._matches) if mask >> i & 1)

    def text(self, mask: int, order: BookOrder, board: Board | None) -> str:
        return "; ".join(m.reason for m in self.matches(mask, order, board))


class Decision(tuple[BookOrder, Board | None, Verdict, Hold | None]):
    """What the engine concluded about one order: (order, board, verdict, hold).

    ``held`` is the first reason the order must not be cancelled now, recorded even when no
    rule matched, and ``hold_kind`` its kind; ``cancel`` is true only when some rule matched
    and nothing holds it back. A tuple, because one is built for every live order on every
    poll; with no ``_replace``, because the verdict is worded for this order and board and must
    not be moved to others.
    """

    __slots__ = ()

    def __new__(
        cls,
        order: BookOrder,
        board: Board | None,
        verdict: Verdict,
        held: str | None,
        hold_kind: HoldKind | None = None,
    ) -> Decision:
        """``hold_kind`` defaults to ``OTHER`` for a hold (callers that word their own)."""
        if held is None:
            if hold_kind is not None:
                raise ValueError("a hold kind without a hold")
            return tuple.__new__(cls, (order, board, verdict, None))
        return tuple.__new__(
            cls, (order, board, verdict, Hold(held, HoldKind.OTHER if hold_kind is None
                                               else HoldKind(hold_kind))))

    def __repr__(self) -> str:
        return (f"Decision(order={self.order!r}, board={self.board!r}, "
                f"rules={self.rules!r}, held={self.held!r}, hold_kind={self.hold_kind!r})")

    @property
    def order(self) -> BookOrder:
        return self[0]

    @property
    def board(self) -> Board | None:
        return self[1]

    @property
    def verdict(self) -> Verdict:
        return self[2]

    @property
    def hold(self) -> Hold | None:
        """The hold, text and kind together; None when nothing holds the order back."""
        return self[3]

    @property
    def held(self) -> str | None:
        """The hold's text (``HOSE in ATC: cancel banned``), or None."""
        hold = self[3]
        return None if hold is None else hold.text

    @property
    def hold_kind(self) -> HoldKind | None:
        """The hold's kind (``HoldKind.BANNED_WINDOW``), or None when nothing holds it."""
        hold = self[3]
        return None if hold is None else hold.kind

    @property
    def rules(self) -> tuple[str, ...]:
        """The names of the rules that matched, in rule order."""
        return self.verdict.rules

    @property
    def matches(self) -> tuple[Match, ...]:
        """The rules that matched, each with its reason (worded on each read)."""
        return self.verdict.matches(self.order, self.board)

    @property
    def reason(self) -> str:
        """Every reason of ``matches`` joined by ``"; "`` ("" when no rule matched): the text a
        sweep logs and journals, worded from one template per verdict."""
        return self.verdict.text(self.order, self.board)

    @property
    def cancel(self) -> bool:
        """Send a cancel: some rule matched and nothing holds the order back."""
        return self[3] is None and bool(self.verdict)


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
