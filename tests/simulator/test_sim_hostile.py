"""Simulator conformance: the hostile machinery the adversarial property test relies on.

Faults armed on one account, ``skip`` (the n-th request, not the first), ``rewrite`` faults
(the handler runs, only the answer lies: duplicated rows, flipped statuses, cut pages, string
booleans), ``effect`` (the exchange moves between two calls), and the reply each request got.
Driven through the real ``ssi_sdk`` over HTTP.
"""

from __future__ import annotations

from typing import Any

import pytest
from kit import BATCH, BOOK, DAY
from ssi_sdk import APIError

from guard.simulator import hostile
from guard.simulator.control import Simulator
from guard.simulator.faults import Fault

ACCT, OTHER = "0001234", "0001238"
def raw_book(auth: Any, account: str) -> Any:
    """The book as the server sent it (the SDK's raw GET, no model parsing)."""
    return auth.rest_client.get("/api/v3/trading/orderBook",
                    params={"accountNo": account, "from": DAY, "to": DAY})


def test_a_fault_on_one_account_leaves_the_other_alone(sim: Simulator, sdk: Any) -> None:
    sim.seed_order(ACCT, "SSI")
    sim.seed_order(OTHER, "VNM", "B", 62_000)
    _, trading = sdk()
    sim.inject(Fault("error", "GET", BOOK, status=503, times=None, account=ACCT))
    for _ in range(2):
        with pytest.raises(APIError):
            trading.portfolio.get_historical_orders(ACCT, DAY, DAY)
        assert len(trading.portfolio.get_historical_orders(OTHER, DAY, DAY)) == 1
    assert [r.status for r in sim.requests_to("GET", BOOK)] == [503, 200, 503, 200]


def test_skip_lets_the_first_requests_through(sim: Simulator, sdk: Any) -> None:
    sim.seed_order(ACCT, "SSI")
    _, trading = sdk()
    sim.inject(Fault("error", "GET", BOOK, status=502, times=1, skip=2))
    trading.portfolio.get_historical_orders(ACCT, DAY, DAY)
    trading.portfolio.get_historical_orders(ACCT, DAY, DAY)
    with pytest.raises(APIError):
        trading.portfolio.get_historical_orders(ACCT, DAY, DAY)
    trading.portfolio.get_historical_orders(ACCT, DAY, DAY)
    assert [r.status for r in sim.requests_to("GET", BOOK)] == [200, 200, 502, 200]


def test_the_record_keeps_the_reply_that_was_sent(sim: Simulator, sdk: Any) -> None:
    order_id = sim.seed_order(ACCT, "SSI")
    _, trading = sdk()
    trading.portfolio.get_historical_orders(ACCT, DAY, DAY)
    (read,) = sim.requests_to("GET", BOOK)
    assert [row["orderId"] for row in read.reply["orderList"]] == [order_id]
    assert read.answered_at is not None and read.answered_at >= read.at
    assert read.rewritten == ()


def test_rewrites_lie_in_the_answer_only(sim: Simulator, sdk: Any) -> None:
    a = sim.seed_order(ACCT, "SSI", client_request_id="keep-a")
    b = sim.seed_order(ACCT, "VNM", "B", 62_000)
    auth, _ = sdk()
    sim.rewrite_reply("GET", BOOK, hostile.duplicate_row(a, clientRequestId=""),
                      name="duplicate")
    body = raw_book(auth, ACCT)
    assert [(r["orderId"], r["clientRequestId"]) for r in body["orderList"]] == [
        (a, "keep-a"), (a, ""), (b, f"sim-{b}")]
    assert body["totalRecord"] == 3

    sim.rewrite_reply("GET", BOOK, hostile.flip_status(b, "FF"), name="flip")
    assert [r["orderStatus"] for r in raw_book(auth, ACCT)["orderList"]] == ["QU", "FF"]
    assert sim.order(b).status == "QU"  # the exchange never moved

    sim.rewrite_reply("GET", BOOK, hostile.cut_page(1), name="cut")
    body = raw_book(auth, ACCT)
    assert [r["orderId"] for r in body["orderList"]] == [a] and body["totalRecord"] == 2
    sim.rewrite_reply("GET", BOOK, hostile.cut_page(5), name="cut")  # longer than the page
    raw_book(auth, ACCT)
    assert [r.rewritten for r in sim.requests_to("GET", BOOK)] == [
        ("duplicate",), ("flip",), ("cut",), ()]


def test_string_booleans_tell_the_truth_in_the_wrong_type(sim: Simulator, sdk: Any) -> None:
    a = sim.seed_order(ACCT, "SSI")
    b = sim.seed_order(ACCT, "VNM", "B", 62_000)
    sim.fill(b)
    _, trading = sdk()
    sim.rewrite_reply("DELETE", BATCH, hostile.string_booleans(), name="strings")
    trading.trading.cancel_batch_orders([{"account_no": ACCT, "order_id": a},
                                         {"account_no": ACCT, "order_id": b}])
    (sent,) = sim.requests_to("DELETE", BATCH)
    assert [r["success"] for r in sent.reply["results"]] == ["true", "false"]
    assert sent.rewritten == ("strings",)
    assert sim.accepted_cancels() == [a]  # the handler ran: the cancel was applied


def test_an_effect_runs_after_the_answer(sim: Simulator, sdk: Any) -> None:
    a = sim.seed_order(ACCT, "SSI")
    auth, _ = sdk()
    sim.on_request("GET", BOOK, lambda: sim.fill(a), account=ACCT, skip=1)
    assert [r["orderStatus"] for r in raw_book(auth, ACCT)["orderList"]] == ["QU"]
    assert sim.order(a).status == "QU"  # skipped: the first read
    assert [r["orderStatus"] for r in raw_book(auth, ACCT)["orderList"]] == ["QU"]
    assert sim.order(a).status == "FF"  # filled once the second read was answered
