"""Simulator conformance: the order book (``GET /api/v3/trading/orderBook``) as the real
``ssi_sdk`` reads it: fields, date filters, the 204 reply, and unknown status codes.
"""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta
from typing import Any

import pytest
from kit import ACCT, DAY, OTHER
from ssi_sdk import APIError, SSIError
from ssi_sdk.enums import OrderSide, OrderStatus, OrderType

from guard.clock import EXCHANGE_TZ
from guard.simulator.control import Simulator


def test_book_reads_every_field_of_every_order(sim: Simulator, sdk: Any) -> None:
    queued = sim.seed_order(ACCT, "SSI", "B", 27_000, 1_000, age=timedelta(minutes=40),
                            client_request_id="cr-queued")
    partial = sim.seed_order(ACCT, "FPT", "S", 96_000, 300)
    market = sim.seed_order(ACCT, "VNM", "B", "ATC", 200, order_type="ATC")
    sim.fill(partial, 100)
    sim.seed_order(OTHER, "HPG", "B", 26_000, 100)  # another account's order

    _, trading = sdk()
    orders = {o.order_id: o for o in trading.portfolio.get_historical_orders(ACCT, DAY, DAY)}
    assert set(orders) == {queued, partial, market}

    q = orders[queued]
    assert (q.account_no, q.client_request_id, q.symbol) == (ACCT, "cr-queued", "SSI")
    assert (q.side, q.order_type, q.status) == (OrderSide.BUY, OrderType.LO, OrderStatus.QUEUED)
    assert (q.price, q.quantity, q.filled_quantity, q.cancel_quantity) == (27_000, 1_000, 0, 0)
    assert q.input_time == "2026/11/23 09:20:00"  # exchange time, 40 min before 10:00

    p = orders[partial]
    assert (p.side, p.status) == (OrderSide.SELL, OrderStatus.PARTIAL_FILLED)
    assert (p.filled_quantity, p.avg_price) == (100, 96_000)
    assert p.quantity - p.filled_quantity - p.cancel_quantity == 200

    m = orders[market]
    assert (m.order_type, m.price) == (OrderType.ATC, OrderType.ATC)

    [request] = sim.requests_to("GET", "/api/v3/trading/orderBook")
    assert request.query == {"accountNo": ACCT, "from": DAY, "to": DAY,
                             "pageIndex": "1", "pageSize": "1000"}


def test_book_filters_by_exchange_date(sim: Simulator, sdk: Any) -> None:
    today = sim.seed_order(ACCT, "SSI")
    yesterday = sim.seed_order(ACCT, "SSI", age=timedelta(days=1))
    # 2026-11-23 06:30 in Vietnam is still the 22nd in UTC: the exchange date must win.
    early = sim.seed_order(ACCT, "SSI", age=timedelta(hours=3, minutes=30))
    _, trading = sdk()
    ids = [o.order_id for o in trading.portfolio.get_historical_orders(ACCT, DAY, DAY)]
    assert ids == [today, early]
    both = trading.portfolio.get_historical_orders(ACCT, "2026/11/22", DAY)
    assert {o.order_id for o in both} == {today, yesterday, early}


def test_no_orders_is_code_204_and_an_empty_list(sim: Simulator, sdk: Any) -> None:
    sim.seed_order(OTHER, "SSI")
    _, trading = sdk()
    assert trading.portfolio.get_historical_orders(ACCT, DAY, DAY) == []
    assert trading.portfolio.get_historical_orders(OTHER, "2026/11/24", "2026/11/24") == []
    raw = sim.requests_to("GET", "/api/v3/trading/orderBook")
    assert [r.status for r in raw] == [200, 200]  # {"code": 204, "msg": ...} in a 200


def test_unknown_status_code_is_kept_raw(sim: Simulator, sdk: Any) -> None:
    odd = sim.seed_order(ACCT, "SSI")
    plain = sim.seed_order(ACCT, "VNM", price=62_000)
    sim.set_unknown_status(odd, "ZZ")
    _, trading = sdk()
    status = {o.order_id: o.status for o in trading.portfolio.get_historical_orders(ACCT, DAY, DAY)}
    assert status[odd] == "ZZ" and not isinstance(status[odd], OrderStatus)
    assert status[plain] is OrderStatus.QUEUED


def test_today_orders_use_the_host_date(sim: Simulator, sdk: Any) -> None:
    """``get_today_orders`` sends the host's date: the simulator's clock is moved to it."""
    host_today = datetime.today().date()
    sim.set_clock(datetime(host_today.year, host_today.month, host_today.day, 10,
                           tzinfo=EXCHANGE_TZ))
    mine = sim.seed_order(ACCT, "SSI")
    sim.set_clock(sim.clock() + timedelta(days=3))
    sim.seed_order(ACCT, "SSI")  # another exchange date: not "today" for the SDK

    _, trading = sdk()
    assert [o.order_id for o in trading.portfolio.get_today_orders(ACCT)] == [mine]
    [request] = sim.requests_to("GET", "/api/v3/trading/orderBook")
    assert request.query["from"] == request.query["to"] == host_today.strftime("%Y/%m/%d")


def test_bad_dates_and_unknown_accounts_are_errors(sim: Simulator, sdk: Any) -> None:
    _, trading = sdk()
    with pytest.raises(APIError) as exc:
        trading.portfolio.get_historical_orders(ACCT, "yesterday", "today")
    assert (exc.value.status_code, exc.value.code) == (400, 400100)
    with pytest.raises(SSIError) as exc2:
        trading.portfolio.get_historical_orders("9999999", DAY, DAY)
    assert exc2.value.code == 403201


def test_async_book_shows_a_cancel_settling(sim: Simulator, async_sdk: Any) -> None:
    order_id = sim.seed_order(ACCT, "SSI", quantity=1_000)
    sim.fill(order_id, 300)

    async def run() -> list[tuple[Any, int]]:
        async with async_sdk() as (_, trading):
            seen = []
            with sim.paused_cancels():
                await trading.trading.cancel_order_by_order_id(ACCT, order_id)
                [o] = await trading.portfolio.get_historical_orders(ACCT, DAY, DAY)
                seen.append((o.status, o.cancel_quantity))
            for _ in range(50):
                [o] = await trading.portfolio.get_historical_orders(ACCT, DAY, DAY)
                if o.status is not OrderStatus.PENDING_CANCEL:
                    break
                await asyncio.sleep(0.02)
            seen.append((o.status, o.cancel_quantity))
            return seen

    assert asyncio.run(run()) == [(OrderStatus.PENDING_CANCEL, 0),
                                  (OrderStatus.PARTIAL_CANCELLED, 700)]
