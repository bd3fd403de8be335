"""Simulator conformance: batch cancel (``DELETE /api/v3/trading/order/batch``) through the real
``ssi_sdk``, and the envelope rules (size, replay window, single-use id) with raw signed bodies.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from kit import ACCT, BATCH, OTHER
from ssi_sdk import APIError, DuplicateRequestError, ValidationError
from ssi_sdk.enums import OrderSide, OrderStatus, OrderType
from ssi_sdk.transport.rest_client import _handle_response
from ssi_sdk.utils.crypto import sign

from guard.simulator.control import Simulator


def test_batch_cancel_gives_one_result_per_item_in_order(
    sim: Simulator, sdk: Any, until: Callable[..., bool]
) -> None:
    queued = sim.seed_order(ACCT, "SSI")
    partial = sim.seed_order(ACCT, "VNM", price=62_000, quantity=500)
    sim.fill(partial, 100)
    filled = sim.seed_order(ACCT, "FPT", price=95_000)
    sim.fill(filled)
    by_crid = sim.seed_order(OTHER, "SHS", price=14_000, client_request_id="crid-7")
    _, trading = sdk()

    response = trading.trading.cancel_batch_orders([
        {"account_no": ACCT, "order_id": queued},
        {"account_no": ACCT, "order_id": filled},
        {"account_no": ACCT, "order_id": "99999999"},
        {"account_no": OTHER, "client_request_id": "crid-7"},
        {"account_no": OTHER, "order_id": partial},  # not that account's order
        {"account_no": ACCT, "order_id": partial},
    ])
    results = response.results
    assert [r.success for r in results] == [True, False, False, True, False, True]
    assert [r.error_code for r in results] == ["", "400202", "400201", "", "403201", ""]
    assert results[0].status is OrderStatus.PENDING_CANCEL
    assert (results[3].order_id, results[3].client_request_id) == (by_crid, "crid-7")
    assert all(r.error_message for r in results if not r.success)
    [request] = sim.requests_to("DELETE", BATCH)
    sent = request.body
    assert response.batch_request_id == sent["batchRequestId"]
    assert [r.client_cancel_id for r in results] == [o["clientCancelId"] for o in sent["orders"]]

    assert until(lambda: sim.order(partial).status == "FFPC" and sim.order(queued).status == "CL")
    assert sim.order(filled).status == "FF"
    assert sorted(sim.accepted_cancels()) == sorted([queued, by_crid, partial])


def test_a_full_batch_of_20_and_a_refused_21(sim: Simulator, sdk: Any) -> None:
    ids = [sim.seed_order(ACCT, "HPG", price=26_000) for _ in range(21)]
    _, trading = sdk()
    with pytest.raises(ValidationError):
        trading.trading.cancel_batch_orders([{"account_no": ACCT, "order_id": i} for i in ids])
    assert sim.requests_to("DELETE", BATCH) == []  # refused before anything was sent

    response = trading.trading.cancel_batch_orders(
        [{"account_no": ACCT, "order_id": i} for i in ids[:20]])
    assert len(response.results) == 20 and all(r.success for r in response.results)
    assert sim.order(ids[20]).status == "QU"


def _signed_batch(sim: Simulator, sdk: Any, order_ids: list[str], *, sent_ms: int | None = None,
                  batch_id: str = "batch-raw-1") -> tuple[str, dict[str, str]]:
    """A batch cancel body exactly as the SDK builds it, signed with the SDK's own signer."""
    auth, _ = sdk()
    body = json.dumps({
        "batchRequestId": batch_id,
        "batchRequestTime": int(time.time() * 1000) if sent_ms is None else sent_ms,
        "orders": [{"accountNo": ACCT, "clientCancelId": f"cc-{i}", "deviceId": "test",
                    "userAgent": "SSI Python SDK/3.3.2", "orderId": order_id}
                   for i, order_id in enumerate(order_ids)],
    })
    headers = {"Authorization": f"Bearer {auth.token.access_token}",
               "Content-Type": "application/json",
               "X-Signature": sign(body, sim.credentials.private_key)}
    return body, headers


def test_a_reused_batch_request_id_is_409(sim: Simulator, sdk: Any) -> None:
    order_id = sim.seed_order(ACCT, "SSI")
    body, headers = _signed_batch(sim, sdk, [order_id])
    first = httpx.request("DELETE", sim.url + BATCH, content=body, headers=headers)
    assert first.status_code == 200 and first.json()["results"][0]["success"] is True
    again = httpx.request("DELETE", sim.url + BATCH, content=body, headers=headers)
    assert (again.status_code, again.json()["code"]) == (409, 409100)
    with pytest.raises(DuplicateRequestError) as exc:
        _handle_response(again)  # the SDK's own response handling
    assert exc.value.status_code == 409
    assert sim.accepted_cancels() == [order_id]


@pytest.mark.parametrize("skew_ms", [-60_000, 60_000])
def test_a_batch_outside_the_replay_window_is_400111(sim: Simulator, sdk: Any,
                                                     skew_ms: int) -> None:
    order_id = sim.seed_order(ACCT, "SSI")
    body, headers = _signed_batch(sim, sdk, [order_id],
                                  sent_ms=int(time.time() * 1000) + skew_ms)
    reply = httpx.request("DELETE", sim.url + BATCH, content=body, headers=headers)
    assert reply.status_code == 400
    with pytest.raises(APIError) as exc:
        _handle_response(reply)
    assert exc.value.code == 400111
    assert sim.order(order_id).status == "QU"


def test_the_server_refuses_21_items_and_an_empty_batch(sim: Simulator, sdk: Any) -> None:
    ids = [sim.seed_order(ACCT, "SSI") for _ in range(21)]
    body, headers = _signed_batch(sim, sdk, ids)
    reply = httpx.request("DELETE", sim.url + BATCH, content=body, headers=headers)
    assert (reply.status_code, reply.json()["code"]) == (400, 400100)
    empty, headers = _signed_batch(sim, sdk, [], batch_id="batch-raw-2")
    assert httpx.request("DELETE", sim.url + BATCH, content=empty,
                         headers=headers).status_code == 400
    assert sim.accepted_cancels() == []


def test_async_batch_cancel(sim: Simulator, async_sdk: Any) -> None:
    ids = [sim.seed_order(ACCT, "MWG", price=58_000) for _ in range(3)]

    async def run() -> list[bool]:
        async with async_sdk() as (_, trading):
            response = await trading.trading.cancel_batch_orders(
                [{"account_no": ACCT, "order_id": i} for i in [*ids, ids[0]]])
            return [r.success for r in response.results]

    # The repeat of ids[0] is already WC when its turn comes.
    assert asyncio.run(run()) == [True, True, True, False]
    assert sim.accepted_cancels() == ids


def test_batch_place(sim: Simulator, sdk: Any) -> None:
    _, trading = sdk()
    response = trading.trading.place_batch_orders([
        {"account_no": ACCT, "symbol": "SSI", "side": OrderSide.BUY, "quantity": 100,
         "price": 27_000, "order_type": OrderType.LO, "client_request_id": "bp-1"},
        {"account_no": ACCT, "symbol": "NOPE", "side": OrderSide.BUY, "quantity": 100,
         "price": 27_000, "order_type": OrderType.LO},
    ])
    first, second = response.results
    assert (first.success, first.status, first.client_request_id) == (
        True, OrderStatus.QUEUED, "bp-1")
    assert (second.success, second.error_code) == (False, "400210")
    assert [o.client_request_id for o in sim.exchange.book(ACCT)] == ["bp-1"]
