"""Simulator conformance: placing orders and single cancels through the real ``ssi_sdk``:
QU on place, duplicate ids, WC then CL or FFPC, refused statuses and banned windows.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from contextlib import nullcontext
from datetime import datetime
from typing import Any

import pytest
from kit import ACCT, DAY
from ssi_sdk import APIError, DuplicateRequestError
from ssi_sdk.enums import OrderSide, OrderStatus, OrderType

from guard.clock import EXCHANGE_TZ
from guard.simulator.control import Simulator


def _book(trading: Any) -> dict[str, Any]:
    return {o.order_id: o for o in trading.portfolio.get_historical_orders(ACCT, DAY, DAY)}


# ---- place --------------------------------------------------------------------------------


def test_place_order_is_queued_and_signed_as_the_sdk_sends_it(sim: Simulator, sdk: Any) -> None:
    _, trading = sdk()
    placed = trading.trading.place_order(ACCT, "SSI", OrderSide.BUY, 500, 27_000, OrderType.LO,
                                         client_request_id="cr-1")
    assert (placed.client_request_id, placed.status) == ("cr-1", OrderStatus.QUEUED)
    assert placed.order_id

    [request] = sim.requests_to("POST", "/api/v3/trading/order")
    assert request.status == 200
    assert request.body["price"] == "27000" and request.body["quantity"] == 500

    order = _book(trading)[placed.order_id]
    assert (order.symbol, order.side, order.price, order.quantity, order.status) == (
        "SSI", OrderSide.BUY, 27_000, 500, OrderStatus.QUEUED)


def test_market_order_is_accepted_with_its_word_as_price(sim: Simulator, sdk: Any) -> None:
    _, trading = sdk()
    placed = trading.trading.place_order(ACCT, "FPT", OrderSide.SELL, 100, None, OrderType.ATC)
    assert placed.status is OrderStatus.QUEUED
    assert sim.requests_to("POST", "/api/v3/trading/order")[0].body["price"] == "0"
    assert _book(trading)[placed.order_id].price is OrderType.ATC


def test_duplicate_client_request_id_is_409(sim: Simulator, sdk: Any) -> None:
    _, trading = sdk()
    trading.trading.place_order(ACCT, "SSI", OrderSide.BUY, 100, 27_000, OrderType.LO,
                                client_request_id="same-id")
    with pytest.raises(DuplicateRequestError) as exc:
        trading.trading.place_order(ACCT, "SSI", OrderSide.BUY, 100, 27_000, OrderType.LO,
                                    client_request_id="same-id")
    assert (exc.value.status_code, exc.value.code) == (409, 409201)
    assert len(_book(trading)) == 1


@pytest.mark.parametrize(
    ("symbol", "quantity", "price"),
    [("NOPE", 100, 27_000), ("SSI", 10**9, 27_000)],
    ids=["unknown-symbol", "no-purchasing-power"],
)
def test_bad_orders_are_refused(sim: Simulator, sdk: Any, symbol: str, quantity: int,
                                price: int) -> None:
    _, trading = sdk()
    with pytest.raises(APIError) as exc:
        trading.trading.place_order(ACCT, symbol, OrderSide.BUY, quantity, price, OrderType.LO)
    assert (exc.value.status_code, exc.value.code) == (400, 400210)
    assert sim.exchange.book(ACCT) == []


def test_async_place_order(sim: Simulator, async_sdk: Any) -> None:
    async def run() -> Any:
        async with async_sdk() as (_, trading):
            return await trading.trading.place_order(
                ACCT, "SHS", OrderSide.BUY, 200, 14_200, OrderType.LO)

    placed = asyncio.run(run())
    assert placed.status is OrderStatus.QUEUED
    assert sim.order(placed.order_id).symbol == "SHS"


# ---- single cancel ------------------------------------------------------------------------


def test_cancel_is_wc_at_once_then_cl(sim: Simulator, sdk: Any,
                                       until: Callable[..., bool]) -> None:
    order_id = sim.seed_order(ACCT, "SSI", quantity=1_000, client_request_id="cr-9")
    _, trading = sdk()
    with sim.paused_cancels():
        result = trading.trading.cancel_order_by_order_id(ACCT, order_id)
        assert (result.order_id, result.client_request_id) == (order_id, "cr-9")
        assert result.status is OrderStatus.PENDING_CANCEL and result.client_cancel_id
        assert _book(trading)[order_id].status is OrderStatus.PENDING_CANCEL

    assert until(lambda: _book(trading)[order_id].status is OrderStatus.CANCELLED)
    order = _book(trading)[order_id]
    assert (order.cancel_quantity, order.filled_quantity) == (1_000, 0)
    assert sim.accepted_cancels() == [order_id]

    body = sim.requests_to("DELETE", "/api/v3/trading/order")[0].body
    assert list(body) == ["accountNo", "clientCancelId", "deviceId", "userAgent", "orderId"]


def test_cancel_of_a_partial_fill_ends_ffpc(sim: Simulator, sdk: Any,
                                            until: Callable[..., bool]) -> None:
    order_id = sim.seed_order(ACCT, "SSI", quantity=1_000)
    sim.fill(order_id, 400)
    _, trading = sdk()
    assert _book(trading)[order_id].status is OrderStatus.PARTIAL_FILLED
    assert trading.trading.cancel_order_by_order_id(ACCT, order_id).status is \
        OrderStatus.PENDING_CANCEL
    assert until(lambda: _book(trading)[order_id].status is OrderStatus.PARTIAL_CANCELLED)
    order = _book(trading)[order_id]
    assert (order.filled_quantity, order.cancel_quantity) == (400, 600)


def test_cancel_by_client_request_id(sim: Simulator, sdk: Any) -> None:
    order_id = sim.seed_order(ACCT, "SSI", client_request_id="by-crid")
    _, trading = sdk()
    result = trading.trading.cancel_order(ACCT, "by-crid")
    assert (result.order_id, result.status) == (order_id, OrderStatus.PENDING_CANCEL)
    body = sim.requests_to("DELETE", "/api/v3/trading/order")[0].body
    assert body["clientRequestId"] == "by-crid" and "orderId" not in body


def _make(sim: Simulator, status: str, until: Callable[..., bool]) -> str:
    """An order in ``status``, reached the way the exchange gets there."""
    order_id = sim.seed_order(ACCT, "SSI", quantity=1_000)
    if status == "FF":
        sim.fill(order_id)
    elif status in ("RJ", "EX"):
        sim.set_status(order_id, status)
    else:  # CL, FFPC, WC: through a cancel (WC only while cancels are paused)
        if status == "FFPC":
            sim.fill(order_id, 100)
        sim.exchange.request_cancel(ACCT, order_id)
    assert until(lambda: sim.order(order_id).status == status)
    return order_id


@pytest.mark.parametrize("status", ["FF", "CL", "RJ", "EX", "FFPC", "WC"])
def test_cancel_is_refused_when_the_order_is_done_or_already_cancelling(
    sim: Simulator, sdk: Any, until: Callable[..., bool], status: str
) -> None:
    with sim.paused_cancels() if status == "WC" else nullcontext():
        order_id = _make(sim, status, until)
        accepted = sim.accepted_cancels()
        _, trading = sdk()
        with pytest.raises(APIError) as exc:
            trading.trading.cancel_order_by_order_id(ACCT, order_id)
        assert (exc.value.status_code, exc.value.code) == (400, 400202)
        assert status in exc.value.message
        assert sim.order(order_id).status == status
        assert sim.accepted_cancels() == accepted  # nothing new was accepted


def test_cancel_of_an_unknown_order_is_refused(sim: Simulator, sdk: Any) -> None:
    _, trading = sdk()
    with pytest.raises(APIError) as exc:
        trading.trading.cancel_order_by_order_id(ACCT, "99999999")
    assert exc.value.code == 400201


# ---- banned windows -----------------------------------------------------------------------

MONDAY = (2026, 11, 23)


@pytest.mark.parametrize(
    ("symbol", "when", "allowed", "reason"),
    [
        ("SSI", (*MONDAY, 8, 59, 59), False, "not open"),
        ("SSI", (*MONDAY, 9, 0, 0), False, "ATO"),
        ("SSI", (*MONDAY, 9, 14, 59), False, "ATO"),
        ("SSI", (*MONDAY, 9, 15, 0), True, ""),
        ("SSI", (*MONDAY, 11, 29, 59), True, ""),
        ("SSI", (*MONDAY, 11, 30, 0), False, "lunch"),
        ("SSI", (*MONDAY, 14, 29, 59), True, ""),
        ("SSI", (*MONDAY, 14, 30, 0), False, "ATC"),
        ("SSI", (2026, 11, 28, 10, 0, 0), False, "Saturday"),
        ("SSI", (2026, 9, 2, 10, 0, 0), False, "holiday"),  # National Day
        ("SHS", (*MONDAY, 9, 0, 0), True, ""),  # HNX has no ATO
        ("BSR", (*MONDAY, 14, 30, 0), True, ""),  # UPCoM has no ATC
    ],
    ids=lambda v: ":".join(f"{x:02d}" for x in v[3:]) if isinstance(v, tuple) else str(v),
)
def test_cancel_windows(sim: Simulator, sdk: Any, symbol: str, when: tuple[int, ...],
                        allowed: bool, reason: str) -> None:
    order_id = sim.seed_order(ACCT, symbol, price=10_000)
    _, trading = sdk()
    sim.set_clock(datetime(*when, tzinfo=EXCHANGE_TZ))
    if allowed:
        assert trading.trading.cancel_order_by_order_id(ACCT, order_id).status is \
            OrderStatus.PENDING_CANCEL
        return
    with pytest.raises(APIError) as exc:
        trading.trading.cancel_order_by_order_id(ACCT, order_id)
    assert (exc.value.status_code, exc.value.code) == (400, 400203)
    assert reason.lower() in json.dumps(exc.value.response_body).lower()
    assert sim.order(order_id).status == "QU"
