"""The broker adapter: the only module that calls ``ssi_sdk``.

It turns SDK calls into the guard's values (``BookOrder``, ``CashFigures``, ``CancelReply``) and
SDK/httpx failures into a small, honest set of errors:

- ``ReauthRequired``: the session is gone and only ``ssi-guard login`` can bring it back;
- ``BrokerCallError(kind=...)``: ``rate_limited`` (with ``retry_after``), ``ambiguous`` (a
  write that may or may not have been applied: timeout, 5xx, dropped connection),
  ``unavailable`` (nothing was sent: connection refused), ``refused`` (the broker said no);
- ``BrokerReplyError``: the reply did not parse. Nothing is ever decided from such a reply.

Replies are read from the raw JSON where the SDK's models would guess: an order book is
checked row by row and then as a whole (``parse_order_book``), and a cancel is accepted only
on the broker's explicit ``success: true`` (``_cancel_reply``).
"""

from __future__ import annotations

import asyncio
import reprlib
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal, InvalidOperation
from enum import Enum
from typing import Any, Literal, TypeVar

import httpx
import structlog
from ssi_sdk import (
    APIError,
    AsyncAuth,
    AsyncData,
    AsyncTrading,
    AuthenticationError,
    Config,
    RateLimitError,
    ReauthenticationRequired,
    SSIError,
)
from ssi_sdk.constant import (
    EP_ORDER_HISTORY,
    EP_TRADING_ORDER,
    EP_TRADING_ORDER_BATCH,
    HEADER_SIGNATURE,
)
from ssi_sdk.exceptions import ValidationError
from ssi_sdk.models import (
    BatchOrderRequest,
    CancelOrderRequest,
    OrderBook,
    OrderBookRequest,
    Token,
)
from ssi_sdk.utils import (
    generate_request_id,
    get_device_id,
    is_no_content,
    require_non_empty,
    sign,
)

from guard.broker.tokens import TokenCache
from guard.clock import EXCHANGE_TZ
from guard.errors import BrokerReplyError, BrokerUnavailable, ReauthRequired
from guard.record.redact import secrets_registry
from guard.settings import Credentials
from guard.snapshot.model import BookOrder, CashFigures

__all__ = ["Broker", "BrokerCallError", "CallKind", "CancelReply", "parse_order_book",
           "to_book_order"]

T = TypeVar("T")
CallKind = Literal["rate_limited", "ambiguous", "unavailable", "refused"]

REFRESH_AHEAD_S = 300  # refresh this long before the access token expires
# Pace below SSI's published 10 requests/s: the server meters arrivals, the SDK departures, and
# loopback or network jitter between the two is enough to trip a 429 at exactly the limit.
DEFAULT_RATE_LIMIT = 9
MAX_BOOK_ROWS = 1000  # the SDK reads one page of 1000; more would be silently cut
MAX_ID_CHARS = 64  # an orderId or clientRequestId longer than this is not a broker's id
MAX_PLAUSIBLE = 10**12  # no price (VND) or quantity comes near; beyond it Decimal maths overflows
MARKET_PRICE_WORDS = frozenset({"ATO", "ATC", "MP", "MTL", "MOK", "MAK", "PLO"})


class BrokerCallError(BrokerUnavailable):
    """A call that failed in a way the caller must tell apart (see the module docstring).

    ``reached`` is False only when no connection was made (refused, connect timeout): not a
    byte of the request left this host.
    """

    def __init__(
        self,
        kind: CallKind,
        message: str,
        *,
        retry_after: float | None = None,
        code: str | None = None,
        status: int | None = None,
        reached: bool = True,
    ) -> None:
        super().__init__(message)
        self.kind = kind
        self.retry_after = retry_after
        self.code = code
        self.status = status
        self.reached = reached


@dataclass(frozen=True, slots=True)
class CancelReply:
    """The broker's answer for one cancel item: accepted (normally WC) or refused with a code."""

    account: str
    order_id: str
    accepted: bool
    status: str
    error_code: str
    error_message: str


def _code(value: Any) -> str:
    if isinstance(value, Enum):
        return str(value.value)
    return "" if value is None else str(value)


_SHOW = reprlib.Repr()
_SHOW.maxstring = _SHOW.maxother = 40
_SHOW.maxlist = _SHOW.maxdict = 4


def _show(value: Any) -> str:
    """A short, bounded rendering of a value from a reply, for an error message."""
    return _SHOW.repr(value)


def _kind(value: Any) -> str:
    """What a JSON value is, in words: "null", "a list", "an int" ..."""
    if value is None:
        return "null"
    name = {"dict": "object", "str": "string"}.get(type(value).__name__, type(value).__name__)
    return f"{'an' if name[0] in 'aeiou' else 'a'} {name}"


def _text(value: Any, name: str, where: str, *, limit: int, required: bool = False) -> str:
    """A text field of an order: a string (or a number, or an SDK enum), short, printable.
    The SDK keeps such fields raw, so a list or an object here is the server's doing."""
    if isinstance(value, Enum):
        value = value.value
    if value is None:
        value = ""
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise BrokerReplyError(f"{where}: field {name} is {_kind(value)}, not text")
    text = str(value)
    if required and not text.strip():
        raise BrokerReplyError(f"{where}: field {name} is missing")
    if len(text) > limit:
        raise BrokerReplyError(f"{where}: field {name} is {len(text)} characters (at most {limit})")
    if not text.isprintable():
        raise BrokerReplyError(f"{where}: field {name} holds control characters")
    return text


def _int_field(value: Any, name: str, where: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int | float) or (
        isinstance(value, float) and not value.is_integer()
    ):
        raise BrokerReplyError(f"{where}: field {name} is {_show(value)}, not a whole number")
    if value < 0:
        raise BrokerReplyError(f"{where}: field {name} is negative ({int(value)})")
    if value > MAX_PLAUSIBLE:
        raise BrokerReplyError(f"{where}: field {name} is implausibly large ({_show(value)})")
    return int(value)


def _price(value: Any, where: str) -> tuple[Decimal | None, str | None]:
    """A limit price, or the word of a market-priced order (ATO, ATC, MP ...)."""
    if isinstance(value, Enum):
        value = value.value
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise BrokerReplyError(f"{where}: field price is {_kind(value)}, not a number")
    if isinstance(value, str):
        text = value.strip()
        if text.upper() in MARKET_PRICE_WORDS:
            return None, text.upper()
        try:
            number = Decimal(text.replace(",", ""))
        except InvalidOperation:
            raise BrokerReplyError(
                f"{where}: field price is {_show(value)}, neither a number nor a market price "
                "word"
            ) from None
    else:
        number = Decimal(str(value))
    if not number.is_finite() or number < 0 or number > MAX_PLAUSIBLE:
        raise BrokerReplyError(f"{where}: field price is {_show(value)}, not a plausible price")
    return number, None


def to_book_order(order: Any, account: str) -> BookOrder:
    """Parse one SDK ``Order``; anything implausible raises ``BrokerReplyError`` naming the
    field. The SDK's own parsing never fails: it keeps unknown values raw (an orderId that is
    a list, a price that is an object) and turns unreadable numbers into 0, so every field
    is checked here, where a bad reply can still be refused instead of decided on."""
    order_id = _text(getattr(order, "order_id", None), "orderId", f"account {account}",
                     limit=MAX_ID_CHARS, required=True)
    where = f"order {order_id}"
    quantity = _int_field(getattr(order, "quantity", None), "quantity", where)
    filled = _int_field(getattr(order, "filled_quantity", None), "filledQty", where)
    cancelled = _int_field(getattr(order, "cancel_quantity", None), "cancelQty", where)
    if quantity == 0 or filled + cancelled > quantity:
        raise BrokerReplyError(
            f"{where}: quantity {quantity} does not cover filled {filled} "
            f"+ cancelled {cancelled}"
        )
    status = _text(getattr(order, "status", None), "orderStatus", where, limit=16,
                   required=True)
    raw_time = getattr(order, "input_time", None)
    if raw_time is None or raw_time == "":
        raise BrokerReplyError(f"{where}: field inputTime is missing")
    try:
        entered = datetime.strptime(raw_time, "%Y/%m/%d %H:%M:%S")
    except (TypeError, ValueError):
        raise BrokerReplyError(
            f"{where}: field inputTime {_show(raw_time)} is not YYYY/MM/DD HH:MM:SS"
        ) from None
    price, word = _price(getattr(order, "price", None), where)
    owner = _text(getattr(order, "account_no", ""), "accountNo", where, limit=32) or account
    if owner != account:
        raise BrokerReplyError(f"{where}: belongs to {owner}, asked for {account}")
    return BookOrder(
        account=account,
        order_id=order_id,
        client_request_id=_text(getattr(order, "client_request_id", ""), "clientRequestId",
                                where, limit=MAX_ID_CHARS),
        symbol=_text(getattr(order, "symbol", ""), "symbol", where, limit=32),
        side=_text(getattr(order, "side", ""), "side", where, limit=16),
        order_type=_text(getattr(order, "order_type", ""), "orderType", where, limit=16),
        price=price,
        price_word=word,
        quantity=quantity,
        filled=filled,
        cancelled=cancelled,
        status=status,
        input_time=entered.replace(tzinfo=EXCHANGE_TZ),
    )


def _raw_whole(value: Any) -> bool:
    """Whether the SDK would read ``value`` as a whole number *without* guessing: an int, an
    integral float, or a numeric string ("100", "1,000", "100.0"). The SDK reads anything
    else ("abc", a list, true) as 0."""
    if isinstance(value, bool):
        return False
    if isinstance(value, int):
        return True
    if isinstance(value, float):
        return value.is_integer()
    if isinstance(value, str):
        try:
            number = Decimal(value.strip().replace(",", ""))
        except InvalidOperation:
            return False
        return number.is_finite() and number == number.to_integral_value()
    return False


def _raw_in_range(value: Any) -> bool:
    """False for a number (or numeric string) beyond ``MAX_PLAUSIBLE`` either way. Checked
    before the SDK parses the row: its ``to_int`` turns "1e999999999" into an int with a
    billion digits (the guard hangs), and a price of "9" * 5000 overflows a float."""
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        return True  # not a number: the type checks name it
    try:
        number = Decimal(value.strip().replace(",", "")) if isinstance(value, str) else (
            Decimal(value))
    except InvalidOperation:
        return True
    return not number.is_finite() or -MAX_PLAUSIBLE <= number <= MAX_PLAUSIBLE


# The quantities of an order and the keys the SDK reads them from (``pick``: the first that
# is present and not null). ``filledQty``/``cancelQty`` may be absent (0, as the SDK reads it).
_RAW_QUANTITIES = (("quantity", ("quantity",), True),
                   ("filledQty", ("filledQty", "filledQuantity"), False),
                   ("cancelQty", ("cancelQty", "cancelQuantity"), False))


def _check_raw_order(item: Any, index: int, account: str) -> None:
    """What the SDK would silently coerce, refused here by name: an item that is not an
    object, a quantity that is not a whole number ("abc" would become 0), a price that is not
    a number or a word (a list would become the text "[...]"), and a row of another account."""
    where = f"account {account}: orderList[{index}]"
    if not isinstance(item, dict):
        raise BrokerReplyError(f"{where} is {_kind(item)}, not an object")
    order_id = item.get("orderId")
    if isinstance(order_id, str | int) and not isinstance(order_id, bool) and str(order_id):
        label = str(order_id)
        where = f"order {label if label.isprintable() and len(label) <= 40 else _show(label)}"
    for name, keys, required in _RAW_QUANTITIES:
        value = next((item[k] for k in keys if item.get(k) is not None), None)
        if value is None:
            if required:
                raise BrokerReplyError(f"{where}: field {name} is missing")
            continue
        if not _raw_whole(value):
            raise BrokerReplyError(f"{where}: field {name} is {_show(value)}, not a whole number")
        if not _raw_in_range(value):
            raise BrokerReplyError(f"{where}: field {name} is out of range ({_show(value)})")
    price = item.get("price")
    if price is not None and (isinstance(price, bool) or not isinstance(price, str | int | float)):
        raise BrokerReplyError(f"{where}: field price is {_kind(price)}, not a number")
    if not _raw_in_range(price):
        raise BrokerReplyError(f"{where}: field price is {_show(price)}, not a plausible price")
    # The SDK stamps every row with the reply's top-level accountNo and ignores the row's own.
    owner = item.get("accountNo")
    if owner not in (None, "") and str(owner) != account:
        raise BrokerReplyError(f"{where}: belongs to {_show(owner)}, asked for {account}")


def _claimed_total(body: dict[str, Any], where: str) -> int | None:
    """The book's own count of its orders (``totalRecord``), or None when it gives none
    (absent or null). A number, or a numeric string as the SDK reads it ("5", "5.0", "1,000");
    anything else (a word, a fraction, true, a list) is not a count and refuses the reply."""
    total = body.get("totalRecord")
    if total is None:
        return None
    if not _raw_whole(total):
        raise BrokerReplyError(f"{where}: field totalRecord is {_show(total)}, not a whole "
                               "number")
    count = Decimal(str(total).strip().replace(",", ""))
    if not -MAX_PLAUSIBLE <= count <= MAX_PLAUSIBLE:  # before int(): 1e999999999 is too big
        raise BrokerReplyError(f"{where}: field totalRecord is out of range")
    return int(count)


def _id_key(order_id: str) -> str:
    """Ids the broker could take for one order compare equal: surrounding blanks, letter case
    and the leading zeros of a numeric id are not told apart ("00000001" is "1")."""
    text = order_id.strip().casefold()
    return str(int(text)) if text.isascii() and text.isdigit() else text


def _check_whole_book(orders: Sequence[BookOrder], account: str) -> None:
    """One orderId on two rows makes the whole book unreadable, whatever the rows say: a
    protected row beside an unprotected copy, or an FF row beside a QU one, would have the
    copy cancelled, and a cancel is sent by orderId, so it hits the protected or filled order
    the broker actually holds. Which row is true cannot be told from the reply."""
    seen: dict[str, str] = {}
    for order in orders:
        key = _id_key(order.order_id)
        if key in seen:
            first = seen[key]
            also = "" if first == order.order_id else f" (also as {_show(first)})"
            raise BrokerReplyError(f"account {account}: order {order.order_id} is listed twice"
                                   f"{also}; the book is not trusted")
        seen[key] = order.order_id


def parse_order_book(body: Any, account: str) -> tuple[BookOrder, ...]:
    """One order-book reply, as the server sent it, to the guard's orders.

    The SDK's ``OrderBook.from_dict`` reads anything that is not an object (a list, a string,
    a number), and any object without ``orderList`` (a ``data`` envelope, an error shape), as
    an *empty* book: the guard would then report the account as read with nothing open, and
    stop guarding it without a word. So the shape is checked here first; only ``{}`` (HTTP
    204), a ``code`` 204 marker, ``totalRecord`` 0 or an ``orderList`` that is null or a list
    count as a reply. The rows then go through the SDK's own parsing and ``to_book_order``.

    The book is then checked as a whole, because rules are decided over all of it: a
    ``totalRecord`` that is not the number of rows read means the page was cut (or padded),
    and an orderId listed twice means no row of it can be trusted. Either refuses the whole
    reply (``BrokerReplyError``): the account is reported unread, and nothing is decided from
    any of its rows. A ``totalRecord`` that is absent or null makes no claim and is accepted.
    """
    where = f"account {account}: order book reply"
    if not isinstance(body, dict):
        raise BrokerReplyError(f"{where} is {_kind(body)}, not an object")
    total = _claimed_total(body, where)
    rows = body.get("orderList")
    if rows is None and (not body or is_no_content(body) or "orderList" in body or total == 0):
        rows = []
    elif rows is None:
        raise BrokerReplyError(f"{where} has no orderList (keys: {_show(sorted(map(str, body)))})")
    if not isinstance(rows, list):
        raise BrokerReplyError(f"{where}: field orderList is {_kind(rows)}, not a list")
    if rows and is_no_content(body):
        raise BrokerReplyError(f"{where} says No Content (code 204) but lists {len(rows)} rows")
    if len(rows) >= MAX_BOOK_ROWS:
        raise BrokerReplyError(f"account {account}: {len(rows)} orders in one page; the book "
                               "may be cut")
    if total is not None and total != len(rows):
        raise BrokerReplyError(
            f"account {account}: the reply says totalRecord {_show(total)} but {len(rows)} "
            f"row{'' if len(rows) == 1 else 's'} came; "
            + ("the book may be cut" if total > len(rows) else "the rows do not add up")
        )
    if not rows:
        return ()
    for index, item in enumerate(rows):
        _check_raw_order(item, index, account)
    try:
        orders = OrderBook.from_dict(body).orders
    except (ValueError, TypeError, AttributeError, KeyError) as exc:
        raise BrokerReplyError(f"{where} does not parse ({type(exc).__name__})") from None
    if len(orders) != len(rows):
        raise BrokerReplyError(f"{where}: {len(rows)} rows parsed as {len(orders)} orders")
    book = tuple(to_book_order(o, account) for o in orders)
    _check_whole_book(book, account)
    return book


_MISSING: Any = object()


def _unreadable(order_id: str, problem: str) -> BrokerCallError:
    """A cancel reply that neither proves the cancel accepted nor refuses it: the server did
    answer, so the cancel may have been applied; only a re-read of the book can tell."""
    return BrokerCallError("ambiguous", f"unreadable cancel reply for order {order_id}: "
                           f"{problem}")


def _reply_text(raw: dict[str, Any], key: str, order_id: str, *, limit: int) -> str:
    """A short text field of a cancel reply ("" when absent or null); anything else (a list,
    true, a 5 MB string) is not the broker's word."""
    value = raw.get(key)
    if value is None:
        return ""
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise _unreadable(order_id, f"{key} is {_kind(value)}")
    text = str(value)
    if len(text) > limit or not text.isprintable():
        raise _unreadable(order_id, f"{key} is not a short printable text")
    return text


def _cancel_reply(raw: Any, account: str, order_id: str, *, batch: bool) -> CancelReply:
    """Read one cancel answer (a batch ``results`` item, or the body of a single cancel)
    strictly, from the JSON the server sent.

    Accepted only when ``success`` is the JSON boolean ``true`` and no ``errorCode`` is
    given (for a single cancel, whose answer has no ``success``, its absence also counts: the
    2xx is the acceptance). The SDK reads ``success`` as ``bool(value)``, so the string
    "false" would be an acceptance: logged as sent, watched until confirm_timeout and
    reported ``unconfirmed``, while the broker had refused it.

    - An ``errorCode`` with any ``success`` but ``true`` ("false", 0, null, missing) is a
      refusal carrying that code: the broker said no and why. The sender reports it
      ``failed`` with the code, which is true if the broker meant it, and at worst a false
      alarm (never a lost cancel the operator is not told of) if it did not.
    - ``success`` the boolean ``false`` without a code is a refusal without a code, as before.
    - Anything else (``"true"``, 1, null or missing without a code, ``true`` beside an
      ``errorCode``, a status or id that is not text, another order's id) is no word at all.
      It is not proof of acceptance, and reading it as a refusal would give up a cancel the
      broker may never have refused. So it is ``ambiguous``: the sender re-reads the book,
      takes what shows WC as applied and resends only what is still open. That costs one
      read, and can neither lose the cancel nor send one no rule asked for.
    """
    if not isinstance(raw, dict):
        raise _unreadable(order_id, f"the answer is {_kind(raw)}, not an object")
    named = raw.get("orderId")
    if named not in (None, "") and (
        isinstance(named, bool) or not isinstance(named, str | int) or str(named) != order_id
    ):
        raise _unreadable(order_id, f"it names order {_show(named)}")
    status = _reply_text(raw, "orderStatus", order_id, limit=16)
    code = _reply_text(raw, "errorCode", order_id, limit=64)
    success = raw.get("success", _MISSING)
    message = raw.get("errorMessage")
    detail = message[:200] if isinstance(message, str) and message.isprintable() else ""
    if code and success is not True:
        # The code goes into the message too: the outcome's detail is made from the message.
        said = f"code {code}: {detail}" if detail else f"code {code}"
        return CancelReply(account, order_id, False, status, code, said)
    if success is False:
        return CancelReply(account, order_id, False, status, "", detail)
    if not code and (success is True or (success is _MISSING and not batch)):
        return CancelReply(account, order_id, True, status, "", "")
    shown = "missing" if success is _MISSING else _show(success)
    raise _unreadable(order_id, f"success is {shown}" + (f" with errorCode {code}" if code
                                                          else ", without an errorCode"))


def _batch_replies(body: Any, items: Sequence[tuple[str, str]]) -> list[CancelReply]:
    """The answer to one batch DELETE, matched to ``items`` by position; any item that does
    not read makes the whole answer ambiguous (see ``_cancel_reply``)."""
    results = body.get("results") if isinstance(body, dict) else None
    if not isinstance(results, list):
        shape = _kind(body) if not isinstance(body, dict) else f"results {_kind(results)}"
        raise BrokerCallError("ambiguous", f"batch reply is not a results list ({shape})")
    if len(results) != len(items):
        raise BrokerCallError(
            "ambiguous", f"batch reply has {len(results)} results for {len(items)} cancels"
        )
    return [_cancel_reply(raw, account, order_id, batch=True)
            for (account, order_id), raw in zip(items, results, strict=True)]


def _money(value: Any, name: str) -> Decimal:
    """A cash figure as the SDK read it; its ``to_float`` reads "1e999999999" as infinity."""
    if isinstance(value, bool) or not isinstance(value, int | float | Decimal):
        raise BrokerReplyError(f"cash field {name} is not a number")
    number = Decimal(str(value))
    if not number.is_finite():
        raise BrokerReplyError(f"cash field {name} is not a finite number")
    return number


class Broker:
    """One authenticated connection to SSI (or the simulator) shared by every call.

    One ``AsyncAuth`` means one rate limiter for all calls, as SSI meters per API key.
    """

    def __init__(
        self,
        creds: Credentials,
        cache: TokenCache | None = None,
        *,
        rate_limit: int = DEFAULT_RATE_LIMIT,
        timeout_ms: int = 10_000,
        max_retries: int = 2,
        retry_delay_ms: int = 300,
        clock: Callable[[], float] = time.time,
        session_owner: bool = True,
    ) -> None:
        self.creds = creds
        self.cache = cache
        self._wall = clock
        # Only the guard that owns the state directory may refresh or log in: a refresh
        # rotates the refresh token, and the daemon's copy would then count as reused, which
        # makes SSI revoke the whole session. `check` borrows the cached token read-only.
        self.session_owner = session_owner
        self._log = structlog.get_logger("guard.broker")
        self.config = Config(
            client_id=creds.client_id,
            api_key=creds.api_key,
            api_secret=creds.api_secret.get_secret_value(),
            private_key=creds.private_key.get_secret_value(),
            api_url=creds.api_url,
            rate_limit_per_second=rate_limit,
            timeout_ms=timeout_ms,
            max_retries=max_retries,
            retry_delay_ms=retry_delay_ms,
            log_level="WARNING",  # the SDK resets its logger's level to this on every Auth()
        )
        self._auth: AsyncAuth | None = None
        self._trading: AsyncTrading | None = None
        self._data: AsyncData | None = None
        self._cache_mtime = 0.0
        # SSI_OTP logs in once at most: after that only `ssi-guard login` may, or two guards
        # on one API key would keep killing each other's sessions.
        self._otp_spent = False
        self._session_lock: asyncio.Lock | None = None

    # ---- lifecycle ----------------------------------------------------------------------

    async def open(self) -> None:
        self._session_lock = asyncio.Lock()
        self._auth = AsyncAuth(self.config)
        self._trading = AsyncTrading(self._auth)
        self._data = AsyncData(self._auth)
        await self._load_cached_token()

    async def close(self) -> None:
        if self._auth is not None:
            await self._auth.close()
        self._auth = self._trading = self._data = None

    async def __aenter__(self) -> Broker:
        await self.open()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    @property
    def auth(self) -> AsyncAuth:
        if self._auth is None:
            raise RuntimeError("Broker is not open")
        return self._auth

    @property
    def trading(self) -> AsyncTrading:
        if self._trading is None:
            raise RuntimeError("Broker is not open")
        return self._trading

    @property
    def rate_limit_seen(self) -> dict[str, int | None]:
        """The last ``X-RateLimit-*`` values the server sent."""
        return dict(self.auth.rest_client.rate_limit)

    # ---- session ------------------------------------------------------------------------

    async def _load_cached_token(self) -> bool:
        if self.cache is None:
            return False
        self._cache_mtime = self.cache.mtime()
        cached = self.cache.load(self.creds.api_url, self.creds.api_key)
        if cached is None:
            return False
        await self.auth.set_token(Token.from_dict(cached.token))
        return True

    def _save_token(self) -> None:
        token = self.auth.token
        if token is None:
            return
        secrets_registry.add(token.access_token, token.refresh_token)
        if self.cache is not None:
            self.cache.save(self.creds.api_url, self.creds.api_key, token.to_dict())
            self._cache_mtime = self.cache.mtime()

    @property
    def token_expires_at(self) -> int:
        token = self.auth.token
        return token.expires_at if token is not None else 0

    @property
    def has_session(self) -> bool:
        token = self.auth.token
        return token is not None and (not self.auth.is_token_expired or self.auth.can_refresh)

    async def login(self, otp: str | None = None, transaction_id: str | None = None) -> None:
        """Log in with an OTP (or an approved Smart OTP transaction) and cache the token."""
        try:
            if transaction_id:
                await self.auth.ensure_authenticated(transaction_id=transaction_id)
            else:
                await self.auth.authenticate(otp=otp)
        except ReauthenticationRequired:
            raise ReauthRequired("the broker refused the login: run ssi-guard login") from None
        except AuthenticationError as exc:
            raise ReauthRequired(f"login refused by the broker (code {exc.code})") from None
        except (SSIError, httpx.HTTPError) as exc:
            raise self._translate(exc, write=False) from None
        self._save_token()

    async def request_smart_otp(self) -> str:
        """Ask for a Smart OTP push; returns the transaction id to poll with."""
        try:
            reply = await self.auth.request_otp_typed()
        except (SSIError, httpx.HTTPError) as exc:
            raise self._translate(exc, write=False) from None
        if not reply.transaction_id:
            raise BrokerReplyError("the broker did not return a Smart OTP transaction id")
        return str(reply.transaction_id)

    async def ensure_session(self) -> None:
        """Make sure a usable token is held: pick up a fresh login from the cache, refresh
        ahead of expiry, or log in with ``SSI_OTP``. Never prompts.

        Callers are serialised: two sweeps starting together must not both log in (the
        second login ends the first session, and ``SSI_OTP`` may only be spent once), nor
        find the OTP spent while the first login is still on the wire.
        """
        if self._session_lock is None:
            raise RuntimeError("Broker is not open")
        async with self._session_lock:
            await self._ensure_session()

    async def _ensure_session(self) -> None:
        if self.cache is not None and self.cache.mtime() != self._cache_mtime:
            await self._load_cached_token()
        token = self.auth.token
        if token is not None and token.expires_at - self._wall() > REFRESH_AHEAD_S:
            return
        if not self.session_owner:
            if token is not None and not self.auth.is_token_expired:
                return
            raise ReauthRequired(
                "no valid cached session, and this command never refreshes or logs in (that "
                "would end a running guard's session): run ssi-guard login"
            )
        if token is not None and self.auth.can_refresh:
            try:
                await self.auth.refresh()
            except ReauthenticationRequired:
                raise ReauthRequired(
                    "the SSI session was revoked or expired: run ssi-guard login"
                ) from None
            except AuthenticationError as exc:
                raise ReauthRequired(f"token refresh refused (code {exc.code})") from None
            except (SSIError, httpx.HTTPError) as exc:
                raise self._translate(exc, write=False) from None
            self._save_token()
            return
        if self.creds.otp is not None and not self._otp_spent:
            self._otp_spent = True
            try:
                await self.login(otp=self.creds.otp.get_secret_value())
            except BrokerCallError as exc:
                if not exc.reached:
                    # The connection was refused: the OTP never left this host, so it is
                    # still unused. Spending it here would make a guard started while the
                    # network (or SSI) is down ask for `ssi-guard login` once it is back.
                    self._otp_spent = False
                raise
            return
        raise ReauthRequired("no valid SSI session: run ssi-guard login")

    # ---- calls --------------------------------------------------------------------------

    def _translate(self, exc: BaseException, *, write: bool) -> BrokerCallError:
        """Map an SDK or httpx failure to what the caller must do about it (and log it as
        ``broker.error``, which the metrics count by kind)."""
        error = self._classify(exc, write=write)
        self._log.info("broker.error", kind=error.kind, status=error.status, code=error.code,
                       write=write, error=str(error))
        return error

    def _classify(self, exc: BaseException, *, write: bool) -> BrokerCallError:
        if isinstance(exc, RateLimitError):
            wait = (exc.retry_after_ms or 1000) / 1000
            return BrokerCallError("rate_limited", "rate limited by the broker (429)",
                                   retry_after=wait, code=str(exc.code), status=429)
        if isinstance(exc, httpx.ConnectError | httpx.ConnectTimeout):
            name = type(exc).__name__
            return BrokerCallError("unavailable", f"cannot connect to the broker ({name})",
                                   reached=False)
        if isinstance(exc, httpx.HTTPError):
            kind: CallKind = "ambiguous" if write else "unavailable"
            return BrokerCallError(kind, f"no answer from the broker ({type(exc).__name__})")
        if isinstance(exc, APIError):
            status = exc.status_code or 0
            if 200 <= status < 300 and str(exc.code) == str(status):
                # The SDK could not read a 2xx body (not JSON: its code is then the HTTP
                # status). The server did answer "OK", so a write was run: a refusal would
                # make the caller send the same cancels again.
                kind = "ambiguous" if write else "unavailable"
                return BrokerCallError(kind, f"unreadable reply from the broker (HTTP {status},"
                                       " not JSON)", code=str(exc.code), status=status)
            if status >= 500 or status in (408, 409) or (
                status == 200 and str(exc.code).isdigit() and int(str(exc.code)) >= 500
            ):
                kind = "ambiguous" if write else "unavailable"
                return BrokerCallError(kind, f"broker error HTTP {status} (code {exc.code})",
                                       code=str(exc.code), status=status)
            return BrokerCallError("refused", f"broker refused (HTTP {status}, code {exc.code})",
                                   code=str(exc.code), status=status)
        if isinstance(exc, SSIError):
            return BrokerCallError("refused", f"SDK refused the call ({type(exc).__name__})")
        raise exc

    async def _call(self, make: Callable[[], Awaitable[T]], *, write: bool) -> T:
        """Run one SDK call. A 401 means the gateway refused it before any handler ran, so
        after a successful refresh it is safe to send again, even a cancel.

        A 403 that survives a fresh token is not about the session: it is this call being
        forbidden (e.g. an account the API key does not own). It is a refusal of this one
        call, so one bad account in rules.yaml cannot stop the others being guarded.

        A reply the SDK cannot parse is a ``BrokerReplyError`` for a read; for a write it is
        ``ambiguous``: the server answered, so the cancel may have been applied, and only a
        re-read of the book can tell.
        """
        for attempt in (1, 2):
            try:
                return await make()
            except ReauthenticationRequired:
                raise ReauthRequired("the SSI session was revoked: run ssi-guard login") from None
            except AuthenticationError as exc:
                if attempt == 2:
                    if exc.status_code == 403:
                        raise BrokerCallError(
                            "refused", f"broker forbids this call (HTTP 403, code {exc.code})",
                            code=str(exc.code), status=403,
                        ) from None
                    raise ReauthRequired("the broker keeps refusing the session") from None
                await self._recover_session()
            except (SSIError, httpx.HTTPError) as exc:
                raise self._translate(exc, write=write) from None
            except (ValueError, TypeError, AttributeError, KeyError) as exc:
                message = f"unparseable reply from the broker ({type(exc).__name__})"
                if write:
                    raise BrokerCallError("ambiguous", message) from None
                raise BrokerReplyError(message) from None
        raise AssertionError("unreachable")

    async def _recover_session(self) -> None:
        """After a 401 on a normal call: try a refresh; a dead session needs a new login."""
        if self.cache is not None and self.cache.mtime() != self._cache_mtime:
            await self._load_cached_token()
            return
        if not self.session_owner:
            raise ReauthRequired("the cached SSI session was refused: run ssi-guard login")
        if not self.auth.can_refresh:
            raise ReauthRequired("the SSI session is gone: run ssi-guard login")
        try:
            await self.auth.refresh()
        except AuthenticationError:
            raise ReauthRequired(
                "the SSI session was revoked (another login?): run ssi-guard login"
            ) from None
        except (SSIError, httpx.HTTPError) as exc:
            raise self._translate(exc, write=False) from None
        self._save_token()

    async def orders(self, account: str, day: date) -> tuple[BookOrder, ...]:
        """Today's book for ``day`` in exchange time (the SDK's "today" is the host's date)."""
        text = day.strftime("%Y/%m/%d")
        # The request ``get_historical_orders`` sends, on the same client (token, limiter,
        # retries, error mapping); but its reply is checked raw: see ``parse_order_book``.
        params = OrderBookRequest(account_no=account, from_date=text, to_date=text).to_dict()
        rest = self.auth.rest_client
        body = await self._call(lambda: rest.get(EP_ORDER_HISTORY, params=params), write=False)
        return parse_order_book(body, account)

    async def cash(self, account: str) -> CashFigures:
        balance = await self._call(
            lambda: self.trading.portfolio.get_equity_balance(account), write=False
        )
        ppmmr = await self._call(
            lambda: self.trading.portfolio.get_equity_ppmmr(account), write=False
        )
        if balance is None or ppmmr is None:
            raise BrokerReplyError(f"account {account}: no equity balance in the reply")
        return CashFigures(
            withdrawable=_money(balance.withdrawable, "withdrawable"),
            on_hold_cash=_money(balance.on_hold_cash, "onHoldCash"),
            purchasing_power=_money(ppmmr.purchasing_power, "purchasingPower"),
        )

    def _cancel_request(self, account: str, order_id: str) -> CancelOrderRequest:
        """One cancel as ``cancel_order_by_order_id`` builds it (a fresh clientCancelId, this
        machine's device id, the configured user agent)."""
        require_non_empty(account, "accountNo")
        require_non_empty(order_id, "orderId")
        request = CancelOrderRequest(account_no=account, order_id=order_id,
                                     client_cancel_id=generate_request_id(),
                                     device_id=get_device_id())
        if self.config.user_agent:
            request.user_agent = self.config.user_agent
        return request

    async def _signed_delete(self, path: str, request: CancelOrderRequest | BatchOrderRequest
                             ) -> Any:
        """Sign and send a cancel on the SDK's own client (token, limiter, error mapping, no
        retry of a write), returning the reply as the server sent it: the SDK's reply models
        read ``success`` as ``bool(value)`` and drop what does not fit, so the guard reads
        the raw JSON itself (``_cancel_reply``)."""
        rest = self.auth.rest_client
        text = request.to_str()
        signature = sign(text, rest.get_private_key())
        return await rest.delete(path, content=text.encode("utf-8"),
                                 headers={HEADER_SIGNATURE: signature})

    async def cancel_batch(self, items: Sequence[tuple[str, str]]) -> list[CancelReply]:
        """One signed batch DELETE, the request ``cancel_batch_orders`` sends; replies are
        matched to ``items`` by position and read strictly (see ``_cancel_reply``)."""
        async def send() -> Any:
            if not 1 <= len(items) <= self.config.max_batch_orders:
                raise ValidationError(f"a batch holds 1..{self.config.max_batch_orders} "
                                      f"orders, got {len(items)}")
            orders = [self._cancel_request(a, o).to_dict() for a, o in items]
            envelope = BatchOrderRequest(batch_request_id=generate_request_id(),
                                         batch_request_time=int(self._wall() * 1000),
                                         orders=orders)
            return await self._signed_delete(EP_TRADING_ORDER_BATCH, envelope)

        return _batch_replies(await self._call(send, write=True), items)

    async def cancel_one(self, account: str, order_id: str) -> CancelReply:
        """One signed single DELETE, the request ``cancel_order_by_order_id`` sends; a refusal
        comes back as a reply, not an error, and the answer is read strictly."""
        try:
            body = await self._call(
                lambda: self._signed_delete(EP_TRADING_ORDER,
                                            self._cancel_request(account, order_id)),
                write=True,
            )
        except BrokerCallError as exc:
            if exc.kind != "refused":
                raise
            return CancelReply(account, order_id, False, "", exc.code or "", str(exc))
        return _cancel_reply(body, account, order_id, batch=False)

    async def master_data(self, day: date) -> list[tuple[str, str]]:
        """(symbol, board) pairs for ``day``: the broker's map from symbol to board."""
        if self._data is None:
            raise RuntimeError("Broker is not open")
        data = self._data
        text = day.strftime("%Y/%m/%d")
        rows = await self._call(
            lambda: data.market_data.get_master_data_historical(text, text), write=False
        )
        return [(str(r.symbol), _code(r.board)) for r in rows if r.symbol and r.board]
