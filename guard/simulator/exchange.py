"""The simulated broker's state: accounts, orders, cash and the cancel rules. No HTTP here.

The HTTP layer (``server.py``) turns requests into calls on ``Exchange`` and its answers into
the SDK's wire format. Keeping the exchange apart lets it be driven directly from tests
(seed orders, inject fills, move the clock) and keeps every rule of the order lifecycle in one
place:

- a placed order is QU; a buy LO holds ``price x remaining`` of cash (a market buy, the
  ceiling);
- a futures order (a symbol on the DERIVATIVES board), buy or sell, holds margin instead:
  ``price x CONTRACT_MULTIPLIER x MARGIN_RATE_PCT% x remaining`` (the ceiling at market), the
  simulator's own plausible model of initial margin, not SSI's figure (docs/market.md);
- a cancel answers WC at once and settles after ``cancel_delay`` seconds (real time) to CL,
  or FFPC when part was filled, with ``cancelQty`` set and the held cash released;
- a cancel of an order in FF, CL, RJ, EX, FFPC or WC is refused, and so is a cancel in a
  window where the exchange bans cancels (by the simulator's market clock).
"""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal

from guard.clock import EXCHANGE_TZ, Clock
from guard.model import PENDING_CANCEL, TERMINAL_STATUSES

__all__ = [
    "ERR_BAD_ORDER",
    "ERR_BANNED_WINDOW",
    "ERR_DUPLICATE",
    "ERR_NOT_CANCELLABLE",
    "ERR_NOT_FOUND",
    "ERR_NOT_OWNER",
    "Exchange",
    "ExchangeError",
    "SimAccount",
    "SimOrder",
    "Symbol",
]

# Error codes the simulator answers with (documented in README.md, "Simulator").
ERR_NOT_FOUND = "400201"
ERR_NOT_CANCELLABLE = "400202"
ERR_BANNED_WINDOW = "400203"
ERR_NOT_OWNER = "403201"
ERR_BAD_ORDER = "400210"
ERR_DUPLICATE = "409201"

TERMINAL = TERMINAL_STATUSES
UNCANCELLABLE = TERMINAL | {PENDING_CANCEL}
MARKET_WORDS = frozenset({"ATO", "ATC", "MP", "MTL", "MOK", "MAK", "PLO"})

FUTURES_BOARD = "DERIVATIVES"  # master data's board name for futures contracts
CONTRACT_MULTIPLIER = 100_000  # VND per index point of a VN30 futures contract
MARGIN_RATE_PCT = 17  # the simulator's initial margin rate on an open futures order, in %
ACCOUNT_TYPES = ("Cash", "Margin", "Derivative")  # get_account_info()'s accountType words


class ExchangeError(Exception):
    """A refusal the server turns into an error reply: ``code``, ``message`` and HTTP status."""

    def __init__(self, code: str, message: str, http_status: int = 400) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.http_status = http_status


@dataclass(frozen=True)
class Symbol:
    """Master data of one symbol."""

    symbol: str
    board: str  # HOSE, HNX, UPCOM, DERIVATIVES
    ref_price: int
    ceiling: int
    floor: int


@dataclass
class SimOrder:
    """One order as the exchange holds it."""

    order_id: str
    account: str
    client_request_id: str
    symbol: str
    side: str
    order_type: str
    price: int | str
    quantity: int
    input_time: datetime
    status: str = "QU"
    filled: int = 0
    cancel_qty: int = 0
    filled_value: int = 0
    modified_time: datetime | None = None
    message: str = ""
    hold_price: int = 0  # price per share a buy holds: the limit, or the ceiling at market
    margin: bool = False  # a futures order: hold_price is margin per contract, on either side
    cancel_due: float | None = None  # monotonic time when a WC settles
    status_override: str | None = None  # fault injection: an unknown code on the wire

    @property
    def remaining(self) -> int:
        return max(0, self.quantity - self.filled - self.cancel_qty)

    @property
    def avg_price(self) -> float:
        return self.filled_value / self.filled if self.filled else 0.0

    @property
    def held_cash(self) -> int:
        """Cash a buy holds: price x remaining (market-priced buys hold at the ceiling); a
        futures order, either side, holds its margin per contract x remaining."""
        if (self.side != "B" and not self.margin) or self.status in TERMINAL:
            return 0
        return self.hold_price * self.remaining


@dataclass
class SimAccount:
    """Cash of one account. ``cash`` is the settled balance before holds; ``account_type``
    is what ``get_account_info()`` says (``Cash``, ``Margin``, ``Derivative``, or any word a
    test wants the guard to meet), and a ``Derivative`` account's balance is answered in the
    ``derivative`` member of the accountBalance and PPMMR replies."""

    account: str
    cash: int
    account_type: str = "Cash"
    orders: list[str] = field(default_factory=list)


def _fmt(dt: datetime) -> str:
    return dt.astimezone(EXCHANGE_TZ).strftime("%Y/%m/%d %H:%M:%S")


class Exchange:
    """Thread-safe state of the simulated broker.

    ``clock`` is the market clock (tests set it); ``cancel_ban(board, instant)`` returns why a
    cancel is banned at that instant, or None. ``cancel_delay`` is in real seconds so a frozen
    market clock still lets cancels settle.
    """

    def __init__(
        self,
        clock: Clock,
        cancel_ban: Callable[[str, datetime], str | None],
        symbols: Iterable[Symbol] = (),
        cancel_delay: float = 0.2,
    ) -> None:
        self.clock = clock
        self.cancel_ban = cancel_ban
        self.cancel_delay = cancel_delay
        self.symbols: dict[str, Symbol] = {s.symbol: s for s in symbols}
        self.accounts: dict[str, SimAccount] = {}
        self.orders: dict[str, SimOrder] = {}
        self.lock = threading.RLock()
        self._ids = itertools.count(1)
        # Every accepted cancel (order_id, monotonic time): the evidence for "never twice".
        self.accepted_cancels: list[tuple[str, float]] = []

    # ---- set-up -------------------------------------------------------------------------

    def add_account(self, account: str, cash: int, account_type: str = "Cash") -> None:
        with self.lock:
            self.accounts[account] = SimAccount(account, cash, account_type=account_type)

    def is_derivative(self, account: str) -> bool:
        with self.lock:
            acct = self.accounts.get(account)
            return acct is not None and acct.account_type == "Derivative"

    def is_futures(self, symbol: str) -> bool:
        sym = self.symbols.get(symbol)
        return sym is not None and sym.board == FUTURES_BOARD

    def _margin_per_contract(self, price: int) -> int:
        return price * CONTRACT_MULTIPLIER * MARGIN_RATE_PCT // 100

    def add_symbol(self, symbol: Symbol) -> None:
        with self.lock:
            self.symbols[symbol.symbol] = symbol

    def _ceiling(self, symbol: str) -> int:
        sym = self.symbols.get(symbol)
        return sym.ceiling if sym else 0

    def board_of(self, symbol: str) -> str:
        sym = self.symbols.get(symbol)
        return sym.board if sym else "HOSE"

    # ---- orders -------------------------------------------------------------------------

    def place(
        self,
        account: str,
        symbol: str,
        *,
        side: str,
        order_type: str,
        price: int | str,
        quantity: int,
        client_request_id: str = "",
        input_time: datetime | None = None,
    ) -> SimOrder:
        """Accept a new order (status QU). ``input_time`` lets tests seed aged orders."""
        with self.lock:
            acct = self.accounts.get(account)
            if acct is None:
                raise ExchangeError(ERR_NOT_OWNER, f"account {account} not found", 403)
            if quantity <= 0:
                raise ExchangeError(ERR_BAD_ORDER, "quantity must be positive")
            if side not in ("B", "S"):
                raise ExchangeError(ERR_BAD_ORDER, f"side must be B or S, not {side!r}")
            if isinstance(price, int) and price <= 0:
                raise ExchangeError(ERR_BAD_ORDER, "price must be positive")
            if isinstance(price, str) and price not in MARKET_WORDS:
                raise ExchangeError(ERR_BAD_ORDER, f"unknown price word {price!r}")
            if client_request_id and any(
                self.orders[i].client_request_id == client_request_id for i in acct.orders
            ):
                raise ExchangeError(ERR_DUPLICATE, "clientRequestId already used", 409)
            order_id = f"{next(self._ids):08d}"
            order = SimOrder(
                order_id=order_id,
                account=account,
                client_request_id=client_request_id or f"sim-{order_id}",
                symbol=symbol,
                side=side,
                order_type=order_type,
                price=price,
                quantity=quantity,
                input_time=input_time or self.clock(),
                hold_price=price if isinstance(price, int) else self._ceiling(symbol),
            )
            if self.is_futures(symbol):
                order.margin = True
                order.hold_price = self._margin_per_contract(order.hold_price)
            if order.held_cash > self.withdrawable(account):
                raise ExchangeError(ERR_BAD_ORDER, "insufficient purchasing power")
            self.orders[order_id] = order
            acct.orders.append(order_id)
            return order

    def fill(self, order_id: str, quantity: int | None = None, price: int | None = None) -> None:
        """Inject a fill: all of the remainder by default, or ``quantity`` of it."""
        with self.lock:
            self._settle()
            order = self.orders[order_id]
            if order.status in TERMINAL:
                raise ExchangeError(ERR_NOT_CANCELLABLE, f"order {order_id} is {order.status}")
            qty = order.remaining if quantity is None else min(quantity, order.remaining)
            fill_price = price or (order.price if isinstance(order.price, int) else 0)
            if not fill_price:
                sym = self.symbols.get(order.symbol)
                fill_price = sym.ref_price if sym else 1
            acct = self.accounts[order.account]
            order.filled += qty
            order.filled_value += qty * fill_price
            if not order.margin:
                # A futures fill opens a position and moves no cash here: the simulator does
                # not model position margin or daily settlement.
                acct.cash += -qty * fill_price if order.side == "B" else qty * fill_price
            order.modified_time = self.clock()
            if order.remaining == 0:
                order.status = "FF"
                order.cancel_due = None
            elif order.status != "WC":
                order.status = "PF"

    def request_cancel(self, account: str, order_id: str) -> SimOrder:
        """Validate and accept a cancel: the order goes to WC and settles later."""
        with self.lock:
            self._settle()
            order = self.orders.get(order_id)
            if order is None:
                raise ExchangeError(ERR_NOT_FOUND, f"order {order_id} not found")
            if order.account != account:
                raise ExchangeError(ERR_NOT_OWNER, f"order {order_id} is not in {account}", 403)
            if order.status in UNCANCELLABLE:
                raise ExchangeError(
                    ERR_NOT_CANCELLABLE, f"order {order_id} is {order.status}: cannot cancel"
                )
            reason = self.cancel_ban(self.board_of(order.symbol), self.clock())
            if reason:
                raise ExchangeError(ERR_BANNED_WINDOW, reason)
            order.status = "WC"
            order.modified_time = self.clock()
            order.cancel_due = time.monotonic() + self.cancel_delay
            self.accepted_cancels.append((order_id, time.monotonic()))
            return order

    def _settle(self) -> None:
        """Move every WC whose delay has passed to CL (nothing filled) or FFPC."""
        now = time.monotonic()
        for order in self.orders.values():
            if order.status == "WC" and order.cancel_due is not None and order.cancel_due <= now:
                order.cancel_qty += order.remaining
                order.status = "FFPC" if order.filled else "CL"
                order.cancel_due = None
                order.modified_time = self.clock()

    def settle(self) -> None:
        with self.lock:
            self._settle()

    # ---- reads --------------------------------------------------------------------------

    def book(self, account: str, day: date | None = None) -> list[SimOrder]:
        """Orders of ``account`` entered on ``day`` (exchange date), oldest first."""
        with self.lock:
            self._settle()
            acct = self.accounts.get(account)
            if acct is None:
                return []
            orders = [self.orders[i] for i in acct.orders]
            if day is not None:
                orders = [o for o in orders if o.input_time.astimezone(EXCHANGE_TZ).date() == day]
            return orders

    def on_hold(self, account: str) -> int:
        with self.lock:
            self._settle()
            acct = self.accounts[account]
            return sum(self.orders[i].held_cash for i in acct.orders)

    def withdrawable(self, account: str) -> int:
        with self.lock:
            return self.accounts[account].cash - self.on_hold(account)

    def order_wire(self, order: SimOrder) -> dict[str, object]:
        """One order in the order book's JSON shape."""
        return {
            "orderId": order.order_id,
            "clientRequestId": order.client_request_id,
            "accountNo": order.account,
            "symbol": order.symbol,
            "side": order.side,
            "orderType": order.order_type,
            "price": str(order.price),
            "quantity": order.quantity,
            "filledQty": order.filled,
            "cancelQty": order.cancel_qty,
            "avgPrice": order.avg_price,
            "orderStatus": order.status_override or order.status,
            "inputTime": _fmt(order.input_time),
            "modifiedTime": _fmt(order.modified_time or order.input_time),
            "message": order.message,
        }

    @staticmethod
    def cash_as_decimal(value: int) -> Decimal:
        return Decimal(value)
