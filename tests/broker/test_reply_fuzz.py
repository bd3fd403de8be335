"""Hostile order-book rows: whatever the server sends, the real SDK's parsing
(``Order.from_dict`` / the ``OrderBook`` path) followed by the guard's adapter either yields a
plausible ``BookOrder`` or raises ``BrokerReplyError``. Never another exception (which would
crash a sweep), and never a value the rules could be evaluated on wrongly.
"""

from __future__ import annotations

import math
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from kit import ACCT
from ssi_sdk.enums import OrderStatus
from ssi_sdk.models import Order

from guard.broker.replies import MARKET_PRICE_WORDS, parse_order_book, to_book_order
from guard.clock import EXCHANGE_TZ
from guard.errors import BrokerReplyError
from guard.model import BookOrder

FAST = settings(max_examples=150, deadline=None, derandomize=True,
                suppress_health_check=[HealthCheck.too_slow])

# Any JSON value, nested a little.
json_leaf = (st.none() | st.booleans() | st.integers(-(10**20), 10**20)
             | st.floats(allow_nan=True, allow_infinity=True) | st.text(max_size=12))
any_json = st.recursive(json_leaf, lambda inner: st.lists(inner, max_size=3)
                        | st.dictionaries(st.text(max_size=6), inner, max_size=3), max_leaves=6)

numberish = (st.integers(-5, 10**13) | st.floats(-1e3, 1e15)
             | st.sampled_from(["100", "1,000", "100.0", "1.5", "-3", "abc", "", " 7 ", "1e400",
                                "NaN", "Infinity", "0x10"]))
wire_time = st.datetimes(datetime(1, 1, 1), datetime(9999, 12, 31)).map(
    lambda d: d.strftime("%Y/%m/%d %H:%M:%S"))
field_values: dict[str, st.SearchStrategy[Any]] = {
    "orderId": st.text(max_size=70) | st.integers(-3, 10**9) | st.just("00000001"),
    "clientRequestId": st.text(max_size=70) | st.just("keep-1"),
    "accountNo": st.sampled_from([ACCT, "0001238", "", 1234]),
    "symbol": st.sampled_from(["SSI", "VNM", ""]) | st.text(max_size=40),
    "side": st.sampled_from(["B", "S", "b", "BUY", "X", ""]),
    "orderType": st.sampled_from(["LO", "ATC", "MP", "??"]),
    "price": numberish | st.sampled_from(["ATC", "atc", "LO", "27,000", "-1", "inf"]),
    "quantity": numberish,
    "filledQty": numberish,
    "cancelQty": numberish,
    "filledQuantity": numberish,
    "orderStatus": st.sampled_from([s.value for s in OrderStatus] + ["ZZ", "qu", "", "\x00"]),
    "inputTime": wire_time | st.sampled_from(["2026-11-23 10:00:00", "", "2026/13/01 00:00:00"]),
    "modifiedTime": wire_time,
    "message": st.text(max_size=20),
}
WELL_FORMED = {
    "orderId": "00000001", "clientRequestId": "algo-1", "accountNo": ACCT, "symbol": "SSI",
    "side": "B", "orderType": "LO", "price": "27000", "quantity": 300, "filledQty": 100,
    "cancelQty": 0, "orderStatus": "PF", "inputTime": "2026/11/23 09:20:00",
    "modifiedTime": "2026/11/23 09:25:00", "message": "",
}
_GONE = object()
# A well-formed row with one to four fields deleted, or replaced by a value of their own kind
# (often wrong), or by any JSON at all: every check gets reached, not only the first one.
order_dicts = st.dictionaries(
    st.sampled_from(sorted(field_values)),
    st.just(_GONE) | any_json,
    min_size=1, max_size=4,
).flatmap(lambda picks: st.fixed_dictionaries(
    {k: (st.just(_GONE) if v is _GONE else st.just(v) | field_values[k])
     for k, v in picks.items()}
)).map(lambda changes: {k: v for k, v in {**WELL_FORMED, **changes}.items() if v is not _GONE})


def assert_plausible(order: BookOrder) -> None:
    for name in ("quantity", "filled", "cancelled"):
        value = getattr(order, name)
        assert type(value) is int and value >= 0, (name, value)
    assert order.quantity > 0 and order.filled + order.cancelled <= order.quantity
    assert order.input_time.tzinfo is not None and order.input_time.utcoffset() is not None
    assert order.account == ACCT and order.order_id.strip()
    for text in (order.order_id, order.client_request_id, order.symbol, order.side,
                 order.order_type, order.status):
        assert isinstance(text, str) and text.isprintable() and len(text) <= 64
    assert order.status.strip()
    if order.price is None:
        assert order.price_word in MARKET_PRICE_WORDS
    else:
        assert order.price_word is None
        assert isinstance(order.price, Decimal) and order.price.is_finite() and order.price >= 0
    assert 0 <= order.remaining <= order.quantity


def parse_one(row: dict[str, Any]) -> BookOrder | None:
    """SDK model, then adapter: a plausible order, or None for a ``BrokerReplyError``."""
    try:
        order = to_book_order(Order.from_dict(row, account_no=row.get("accountNo", "")), ACCT)
    except BrokerReplyError as exc:
        assert str(exc)  # a message, never an empty error
        return None
    assert_plausible(order)
    return order


@FAST
@given(order_dicts)
def test_any_order_row_parses_to_a_plausible_order_or_a_reply_error(row: dict[str, Any]) -> None:
    parse_one(row)


@FAST
@given(st.lists(order_dicts, max_size=3) | any_json, st.sampled_from([ACCT, "", None]))
def test_any_book_reply_parses_to_plausible_orders_or_a_reply_error(rows: Any,
                                                                   account: Any) -> None:
    body = {"accountNo": account, "orderList": rows, "totalRecord": 3} if account is not None \
        else rows
    try:
        orders = parse_order_book(body, ACCT)
    except BrokerReplyError as exc:
        assert str(exc).startswith(("account ", "order "))
        return
    for order in orders:
        assert_plausible(order)
    if isinstance(body, dict) and isinstance(body.get("orderList"), list):
        assert len(orders) == len(body["orderList"])  # no row silently dropped


good_rows = st.fixed_dictionaries({
    "orderId": st.from_regex(r"[0-9A-Za-z]{1,20}", fullmatch=True),
    "clientRequestId": st.from_regex(r"[a-z0-9-]{0,20}", fullmatch=True),
    "symbol": st.sampled_from(["SSI", "VNM", "FPT"]),
    "side": st.sampled_from(["B", "S"]),
    "orderType": st.sampled_from(["LO", "ATC"]),
    "quantity": st.integers(1, 10**6),
    "filled_share": st.floats(0, 1), "cancel_share": st.floats(0, 1),
    "price": st.integers(100, 10**6),
    "orderStatus": st.sampled_from(["QU", "PF", "WC", "FF", "CL", "FFPC", "RJ", "EX", "ZZ"]),
    "inputTime": st.datetimes(datetime(2000, 1, 1), datetime(2099, 1, 1)),
})


@FAST
@given(good_rows, st.sampled_from([str, int]))
def test_a_well_formed_row_is_accepted_with_its_values(spec: dict[str, Any], as_text: Any) -> None:
    """The other side: the checks must not refuse good data (numbers as strings included)."""
    quantity = spec["quantity"]
    filled = math.floor(quantity * spec["filled_share"])
    cancelled = math.floor((quantity - filled) * spec["cancel_share"])
    market = spec["orderType"] == "ATC"
    entered = spec["inputTime"].replace(microsecond=0)
    row = {**{k: spec[k] for k in ("orderId", "clientRequestId", "symbol", "side", "orderType",
                                   "orderStatus")},
           "quantity": as_text(quantity), "filledQty": as_text(filled),
           "cancelQty": as_text(cancelled), "price": "ATC" if market else f"{spec['price']:,}",
           "inputTime": entered.strftime("%Y/%m/%d %H:%M:%S")}
    [order] = parse_order_book({"accountNo": ACCT, "orderList": [row]}, ACCT)
    assert_plausible(order)
    assert (order.order_id, order.quantity, order.filled, order.cancelled, order.status) == (
        spec["orderId"], quantity, filled, cancelled, spec["orderStatus"])
    assert (order.price, order.price_word) == ((None, "ATC") if market
                                               else (Decimal(spec["price"]), None))
    assert order.input_time == entered.replace(tzinfo=EXCHANGE_TZ)
    assert order.input_time - entered.replace(tzinfo=EXCHANGE_TZ) == timedelta(0)
