"""Simulator conformance: injected faults (latency, 5xx, hangs past the client timeout before and
after a cancel took effect, malformed JSON, dropped connections) and a refused connection, as
the real ``ssi_sdk`` surfaces them: an ``SSIError`` subclass, or a raw ``httpx`` error.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from kit import ACCT, BOOK, DAY
from ssi_sdk import APIError, SSIError
from ssi_sdk.enums import OrderSide, OrderStatus, OrderType

from guard.simulator.control import Simulator
from guard.simulator.faults import Fault

CANCEL = "/api/v3/trading/order"
FAST = {"timeout_ms": 400, "max_retries": 1, "retry_delay_ms": 10}
HANG = 0.8  # s: past FAST's timeout


def test_latency_delays_but_answers(sim: Simulator, sdk: Any) -> None:
    sim.seed_order(ACCT, "SSI")
    _, trading = sdk()
    sim.inject(Fault("latency", method="GET", path=BOOK, seconds=0.25))
    started = time.monotonic()
    assert len(trading.portfolio.get_historical_orders(ACCT, DAY, DAY)) == 1
    assert time.monotonic() - started >= 0.25
    trading.portfolio.get_historical_orders(ACCT, DAY, DAY)
    assert [r.fault for r in sim.requests_to("GET", BOOK)] == ["latency", None]  # times=1


def test_a_share_of_5xx_is_api_error_with_status(sim: Simulator, sdk: Any) -> None:
    sim.seed_order(ACCT, "SSI")
    _, trading = sdk()
    sim.inject(Fault("error", method="GET", path=BOOK, status=503, rate=0.5, times=None))
    failures = []
    for _ in range(8):
        try:
            trading.portfolio.get_historical_orders(ACCT, DAY, DAY)
        except APIError as exc:
            failures.append(exc)
    assert 0 < len(failures) < 8  # seeded: the same share on every run
    assert {(e.status_code, e.code) for e in failures} == {(503, 500100)}
    assert len(sim.requests_to("GET", BOOK)) == 8  # a 5xx is never retried


def test_a_500_on_place_order_places_nothing(sim: Simulator, sdk: Any) -> None:
    _, trading = sdk()
    sim.inject(Fault("error", method="POST", path="/api/v3/trading/order", status=500))
    with pytest.raises(APIError) as exc:
        trading.trading.place_order(ACCT, "SSI", OrderSide.BUY, 100, 27_000, OrderType.LO)
    assert exc.value.status_code == 500
    assert sim.exchange.book(ACCT) == []


def test_a_get_that_hangs_once_is_retried(sim: Simulator, sdk: Any) -> None:
    sim.seed_order(ACCT, "SSI")
    _, trading = sdk(**FAST)
    sim.inject(Fault("hang", method="GET", path=BOOK, seconds=HANG))
    assert len(trading.portfolio.get_historical_orders(ACCT, DAY, DAY)) == 1
    assert len(sim.requests_to("GET", BOOK)) == 2


def test_a_get_that_keeps_hanging_raises_read_timeout(sim: Simulator, sdk: Any) -> None:
    _, trading = sdk(**FAST)
    sim.inject(Fault("hang", method="GET", path=BOOK, seconds=HANG, times=2))
    with pytest.raises(httpx.ReadTimeout):
        trading.portfolio.get_historical_orders(ACCT, DAY, DAY)
    assert len(sim.requests_to("GET", BOOK)) == 2  # max_retries=1: two tries


def test_a_cancel_that_hangs_before_it_applies(sim: Simulator, sdk: Any) -> None:
    order_id = sim.seed_order(ACCT, "SSI")
    _, trading = sdk(**FAST)
    sim.inject(Fault("hang", method="DELETE", path=CANCEL, seconds=HANG, apply_first=False))
    with pytest.raises(httpx.ReadTimeout):
        trading.trading.cancel_order_by_order_id(ACCT, order_id)
    assert len(sim.requests_to("DELETE", CANCEL)) == 1  # a DELETE is never retried
    assert sim.accepted_cancels() == []
    [order] = trading.portfolio.get_historical_orders(ACCT, DAY, DAY)
    assert order.status is OrderStatus.QUEUED


def test_a_cancel_that_hangs_after_it_applied(sim: Simulator, sdk: Any,
                                              until: Callable[..., bool]) -> None:
    order_id = sim.seed_order(ACCT, "SSI")
    _, trading = sdk(**FAST)
    sim.inject(Fault("hang", method="DELETE", path=CANCEL, seconds=HANG, apply_first=True))
    with pytest.raises(httpx.ReadTimeout):
        trading.trading.cancel_order_by_order_id(ACCT, order_id)
    assert sim.accepted_cancels() == [order_id]
    [order] = trading.portfolio.get_historical_orders(ACCT, DAY, DAY)
    # The book, not the reply, tells what happened.
    assert order.status in (OrderStatus.PENDING_CANCEL, OrderStatus.CANCELLED)
    assert until(lambda: sim.order(order_id).status == "CL")


def test_malformed_json_is_api_error(sim: Simulator, sdk: Any) -> None:
    _, trading = sdk()
    sim.inject(Fault("malformed", method="GET", path=BOOK))
    with pytest.raises(APIError, match="non-JSON") as exc:
        trading.portfolio.get_historical_orders(ACCT, DAY, DAY)
    assert exc.value.code == "200"


def test_a_dropped_connection_is_a_raw_httpx_error(sim: Simulator, sdk: Any) -> None:
    _, trading = sdk()
    sim.inject(Fault("drop", method="POST", path="/api/v3/trading/order"))
    with pytest.raises(httpx.RemoteProtocolError) as exc:
        trading.trading.place_order(ACCT, "SSI", OrderSide.BUY, 100, 27_000, OrderType.LO)
    assert isinstance(exc.value, httpx.HTTPError) and not isinstance(exc.value, SSIError)
    assert sim.exchange.book(ACCT) == []
    assert sim.requests_to("POST", "/api/v3/trading/order")[0].status == -1
    # The client recovers on a new connection.
    assert trading.trading.place_order(ACCT, "SSI", OrderSide.BUY, 100, 27_000,
                                       OrderType.LO).status is OrderStatus.QUEUED


def test_async_faults(sim: Simulator, async_sdk: Any) -> None:
    order_id = sim.seed_order(ACCT, "SSI")

    async def run() -> list[type[BaseException]]:
        seen: list[type[BaseException]] = []
        async with async_sdk(**FAST) as (_, trading):
            sim.inject(Fault("drop", method="GET", path=BOOK))
            sim.inject(Fault("hang", method="DELETE", path=CANCEL, seconds=HANG))
            for call in (trading.portfolio.get_historical_orders(ACCT, DAY, DAY),
                         trading.trading.cancel_order_by_order_id(ACCT, order_id)):
                try:
                    await call
                except Exception as exc:
                    seen.append(type(exc))
        return seen

    assert asyncio.run(run()) == [httpx.RemoteProtocolError, httpx.ReadTimeout]
    assert sim.order(order_id).status == "QU"


def test_a_stopped_simulator_refuses_the_connection(sim: Simulator, sdk: Any) -> None:
    _, trading = sdk()
    sim.stop()
    with pytest.raises(httpx.ConnectError):
        trading.portfolio.get_historical_orders(ACCT, DAY, DAY)
