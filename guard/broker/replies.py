"""Reading the broker's replies: pure functions from the JSON (or the SDK's models of it) to
the guard's values, refusing by field name whatever the SDK would silently guess.

An order book is checked row by row and then as a whole (``parse_order_book``); a cancel is
accepted only on the broker's explicit ``success: true`` (``cancel_reply``); master data becomes
``Instrument`` rows, prices kept. No request is made here: ``guard.broker.client`` makes them.
"""

from __future__ import annotations

import reprlib
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal, InvalidOperation
from enum import Enum
from typing import Any

from ssi_sdk.models import OrderBook
from ssi_sdk.utils import is_no_content

from guard.clock import EXCHANGE_TZ
from guard.errors import BrokerCallError, BrokerReplyError, call_error
from guard.market.accounts import DerivativeCash
from guard.market.instruments import Instrument
from guard.model import BookOrder, CancelReply
from guard.record.redact import Redactor

__all__ = ["BookChanged", "Page", "account_types", "assemble_book", "batch_replies",
           "cancel_reply", "derivative_cash", "instruments", "money", "parse_order_book",
           "parse_order_page", "to_book_order"]

PAGE_SIZE = 1000  # rows asked for per order-book page: SSI's cap
MAX_PAGES = 100  # a book of more than 100,000 orders in a day is not plausible
MAX_ID_CHARS = 64  # an orderId or clientRequestId longer than this is not a broker's id
MAX_PLAUSIBLE = 10**12  # no price (VND) or quantity comes near; beyond it Decimal maths overflows
MARKET_PRICE_WORDS = frozenset({"ATO", "ATC", "MP", "MTL", "MOK", "MAK", "PLO"})

def _code(value: Any) -> str:
    if isinstance(value, Enum):
        return str(value.value)
    return "" if value is None else str(value)


_REDACT = Redactor()
_SHOW = reprlib.Repr()
_SHOW.maxstring = _SHOW.maxother = 40
_SHOW.maxlist = _SHOW.maxdict = 4


def _show(value: Any) -> str:
    """A short, bounded rendering of a value from a reply, for an error message. Secrets are
    masked before it is shortened: a secret cut short is a prefix no redactor recognises."""
    if isinstance(value, str):
        value = _REDACT.scrub(value)
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


class BookChanged(BrokerReplyError):
    """The book changed while it was paged (a total that moved, a row on two pages): every
    page parsed, but together they are no one moment's book. The client reads it again."""


@dataclass(frozen=True, slots=True)
class Page:
    """One page of an order book: its rows, and the book's own count (``totalRecord``), or
    None when the reply makes no claim."""

    orders: tuple[BookOrder, ...]
    total: int | None


def parse_order_page(body: Any, account: str, page: int = 1,
                     size: int = PAGE_SIZE) -> Page:
    """One order-book reply (page ``page`` of ``size`` rows), as the server sent it.

    The SDK's ``OrderBook.from_dict`` reads anything that is not an object (a list, a string,
    a number), and any object without ``orderList`` (a ``data`` envelope, an error shape), as
    an *empty* book: the guard would then report the account as read with nothing open, and
    stop guarding it without a word. So the shape is checked here first; only ``{}`` (HTTP
    204), a ``code`` 204 marker, ``totalRecord`` 0 or an ``orderList`` that is null or a list
    count as a reply. The rows then go through the SDK's own parsing and ``to_book_order``.

    One reply is one moment of the server's book, so it must agree with itself: its rows must
    be exactly what its ``totalRecord`` leaves for this page (more or fewer means the page was
    cut, or padded), and an orderId listed twice means no row of it can be trusted. Either
    refuses the reply (``BrokerReplyError``): the account is reported unread, and nothing is
    decided from any of its rows. A ``totalRecord`` that is absent or null makes no claim.
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
    if len(rows) > size:
        raise BrokerReplyError(f"account {account}: {len(rows)} rows on a page of {size}; the "
                               "server did not page as asked")
    if total is not None:
        expected = max(0, min(size, total - (page - 1) * size))
        if len(rows) != expected:
            raise BrokerReplyError(
                f"account {account}: the reply says totalRecord {_show(total)} but "
                f"{len(rows)} row{'' if len(rows) == 1 else 's'} came"
                + (f" on page {page}" if page > 1 else "") + "; "
                + ("the book may be cut" if len(rows) < expected else "the rows do not add up")
            )
    if not rows:
        return Page((), total)
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
    return Page(book, total)


def assemble_book(pages: Sequence[Page], account: str) -> tuple[BookOrder, ...]:
    """The pages of one pass as one book, or ``BookChanged`` when they are not one moment's
    book: a ``totalRecord`` that differs between pages (orders arrived), an order on two pages
    (rows shifted), or fewer orders than the count. Never a book decided from half."""
    totals = {p.total for p in pages if p.total is not None}
    if len(totals) > 1:
        raise BookChanged(f"account {account}: totalRecord went "
                          f"{' -> '.join(str(p.total) for p in pages)} while paging")
    book = tuple(o for p in pages for o in p.orders)
    try:
        _check_whole_book(book, account)
    except BrokerReplyError:
        raise BookChanged(f"account {account}: an order came on two pages while paging "
                          "(rows shifted)") from None
    if totals and len(book) != next(iter(totals)):
        raise BookChanged(f"account {account}: {len(book)} orders over {len(pages)} pages, "
                          f"totalRecord {next(iter(totals))}")
    return book


def parse_order_book(body: Any, account: str) -> tuple[BookOrder, ...]:
    """A one-page book (see ``parse_order_page``): its rows, checked as a whole."""
    page = parse_order_page(body, account, 1, PAGE_SIZE)
    if page.total is not None and page.total > len(page.orders):
        raise BrokerReplyError(f"account {account}: totalRecord {page.total} on one page of "
                               f"{len(page.orders)}; the book has more pages")
    return assemble_book([page], account)


_MISSING: Any = object()


def _unreadable(order_id: str, problem: str) -> BrokerCallError:
    """A cancel reply that neither proves the cancel accepted nor refuses it: the server did
    answer, so the cancel may have been applied; only a re-read of the book can tell."""
    return call_error("ambiguous", f"unreadable cancel reply for order {order_id}: "
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


def cancel_reply(raw: Any, account: str, order_id: str, *, batch: bool) -> CancelReply:
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


def batch_replies(body: Any, items: Sequence[tuple[str, str]]) -> list[CancelReply]:
    """The answer to one batch DELETE, matched to ``items`` by position; any item that does
    not read makes the whole answer ambiguous (see ``cancel_reply``)."""
    results = body.get("results") if isinstance(body, dict) else None
    if not isinstance(results, list):
        shape = _kind(body) if not isinstance(body, dict) else f"results {_kind(results)}"
        raise call_error("ambiguous", f"batch reply is not a results list ({shape})")
    if len(results) != len(items):
        raise call_error(
            "ambiguous", f"batch reply has {len(results)} results for {len(items)} cancels"
        )
    return [cancel_reply(raw, account, order_id, batch=True)
            for (account, order_id), raw in zip(items, results, strict=True)]


def money(value: Any, name: str) -> Decimal:
    """A cash figure as the SDK read it; its ``to_float`` reads "1e999999999" as infinity."""
    if isinstance(value, bool) or not isinstance(value, int | float | Decimal):
        raise BrokerReplyError(f"cash field {name} is not a number")
    number = Decimal(str(value))
    if not number.is_finite():
        raise BrokerReplyError(f"cash field {name} is not a finite number")
    return number


def _price_or_none(value: Any) -> Decimal | None:
    """A master-data price (the SDK reads them as floats); None when absent or implausible."""
    if isinstance(value, bool) or not isinstance(value, int | float | Decimal):
        return None
    number = Decimal(str(value))
    return number if number.is_finite() and 0 < number <= MAX_PLAUSIBLE else None


def instruments(rows: Sequence[Any]) -> list[Instrument]:
    """Master-data rows (the SDK's reference-price models) as ``Instrument``: the symbol, its
    board as the broker names it, and the day's reference, ceiling and floor prices."""
    out = []
    for row in rows:
        symbol, board = getattr(row, "symbol", None), getattr(row, "board", None)
        if not symbol or not board:
            continue
        out.append(Instrument(str(symbol), _code(board),
                              reference=_price_or_none(getattr(row, "ref_price", None)),
                              ceiling=_price_or_none(getattr(row, "ceiling", None)),
                              floor=_price_or_none(getattr(row, "floor", None))))
    return out


def account_types(rows: Any) -> dict[str, str]:
    """``get_account_info()``'s accounts (the SDK's ``Account`` rows) as account -> the
    broker's ``accountType`` word ("" when a row gives none). An account listed twice with two
    different types is left out: which is true cannot be told, so the caller uses the hint."""
    if not isinstance(rows, list):
        raise BrokerReplyError(f"account info reply is {_kind(rows)}, not a list of accounts")
    out: dict[str, str] = {}
    clashing: set[str] = set()
    for row in rows:
        number = getattr(row, "account_no", None)
        if not isinstance(number, str | int) or isinstance(number, bool) or not str(number):
            continue
        raw = _code(getattr(row, "account_type", None))
        word = raw if raw.isprintable() and len(raw) <= 32 else _show(raw)
        account = str(number).strip()
        if account in out and out[account] != word:
            clashing.add(account)
        out.setdefault(account, word)
    for account in clashing:
        del out[account]
    return out


def derivative_cash(balance: Any, account: str) -> DerivativeCash:
    """``get_derivative_balance``'s figures (the ``derivative`` member of the accountBalance
    reply); None (no such member: not a derivatives account, or an error shape) is refused."""
    if balance is None:
        raise BrokerReplyError(f"account {account}: no derivative balance in the reply")
    return DerivativeCash(
        withdrawable=money(getattr(balance, "withdrawable", None), "withdrawable"),
        account_balance=money(getattr(balance, "account_balance", None), "accountBalance"),
    )
