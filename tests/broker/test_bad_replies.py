"""Garbage and hostile replies from the broker, through the real SDK over HTTP.

For the order book: one clear error naming the field (``book.read_failed``, the unread
account's reason), nothing decided and no DELETE sent from a reply that failed to parse, the
account reported unread (the sweep is ``incomplete``), and the next sweep, once the garbage
clears, works. For a cancel: a garbage answer to a batch is ambiguous, never a reason to send a
second cancel.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest
from kit import ACCT, BATCH, BOOK, SINGLE, STALE
from kit.log import Recorder
from kit.sweep import (
    Guard,
    assert_no_double_cancel,
    assert_one_outcome_per_intent,
    outcomes,
    rules_text,
)

from guard.service.daemon import Daemon
from guard.service.notify import Notifier
from guard.service.runtime import open_guard
from guard.simulator.control import Simulator

ONE_ACCOUNT = rules_text().replace('accounts: ["0001234", "0001238"]', f'accounts: ["{ACCT}"]')


def wire(sim: Simulator, order_id: str, **changes: Any) -> dict[str, Any]:
    """The order as the simulator puts it on the wire, with ``changes`` (``None`` deletes)."""
    row = {**sim.exchange.order_wire(sim.order(order_id)), **changes}
    return {k: v for k, v in row.items() if v is not None}


def book(sim: Simulator, *rows: dict[str, Any]) -> dict[str, Any]:
    return {"accountNo": ACCT, "totalRecord": len(rows), "orderList": list(rows)}


def huge_book(sim: Simulator, order_id: str) -> dict[str, Any]:
    """About 5 MB: the real order among 20,000 more rows than one page may hold."""
    row = wire(sim, order_id)
    rows = [{**row, "orderId": f"X{i:07d}", "clientRequestId": f"x-{i}",
             "message": "m" * 120} for i in range(20_000)]
    return book(sim, row, *rows)


# id -> (the reply, built from the real stale order ``a``; what the error must say)
BOOK_CASES: dict[str, tuple[Any, str]] = {
    "5MB-book-past-one-page": (huge_book, "20001 rows on a page of 1000; the server did not "
                               "page as asked"),
    "5MB-orderId": (lambda s, a: book(s, wire(s, a, orderId="9" * 5_000_000)),
                    "field orderId is 5000000 characters"),
    "quantity-abc": (lambda s, a: book(s, wire(s, a, quantity="abc")),
                     "field quantity is 'abc', not a whole number"),
    "filledQty-list": (lambda s, a: book(s, wire(s, a, filledQty=[1])),
                       "field filledQty is [1], not a whole number"),
    "price-list": (lambda s, a: book(s, wire(s, a, price=[27_000, 1])),
                   "field price is a list, not a number"),
    "price-NaN": (lambda s, a: book(s, wire(s, a, price="NaN")), "field price is 'NaN'"),
    "negative-quantity": (lambda s, a: book(s, wire(s, a, quantity=-100)),
                          "field quantity is negative (-100)"),
    "filled-beyond-quantity": (lambda s, a: book(s, wire(s, a, filledQty=150)),
                               "quantity 100 does not cover filled 150"),
    "no-orderId": (lambda s, a: book(s, wire(s, a, orderId=None)), "field orderId is missing"),
    "no-orderStatus": (lambda s, a: book(s, wire(s, a, orderStatus=None)),
                       "field orderStatus is missing"),
    "no-inputTime": (lambda s, a: book(s, wire(s, a, inputTime=None)),
                     "field inputTime is missing"),
    "orderStatus-object": (lambda s, a: book(s, wire(s, a, orderStatus={"v": "QU"})),
                           "field orderStatus is an object, not text"),
    "row-of-another-account": (lambda s, a: book(s, wire(s, a, accountNo="0009999")),
                               "belongs to '0009999'"),
    "book-of-another-account": (lambda s, a: {**book(s, wire(s, a, accountNo=None)),
                                              "accountNo": "0009999"}, "belongs to 0009999"),
    "body-a-list": (lambda s, a: [wire(s, a)], "order book reply is a list, not an object"),
    "body-a-string": (lambda s, a: json.dumps("orders"),
                      "order book reply is a string, not an object"),
    "body-null": (lambda s, a: "null", "not JSON"),
    "data-envelope": (lambda s, a: {"code": 200, "msg": "ok", "data": book(s, wire(s, a))},
                      "has no orderList"),
    "orderList-an-object": (lambda s, a: {"accountNo": ACCT, "orderList": {"0": wire(s, a)}},
                            "field orderList is an object, not a list"),
    "orderList-of-numbers": (lambda s, a: {"accountNo": ACCT, "orderList": [1, 2]},
                             "orderList[0] is an int, not an object"),
    "not-json": (lambda s, a: b"\xff<html>502 Bad Gateway", "not JSON"),
}


@pytest.mark.parametrize("case", list(BOOK_CASES))
def test_a_bad_book_is_one_clear_error_nothing_decided_then_the_next_sweep_works(
    case: str, sim: Simulator, tmp_path: Path
) -> None:
    a = sim.seed_order(ACCT, "SSI", "B", 27_000, 100, age=STALE)
    build, says = BOOK_CASES[case]
    sim.override_reply("GET", BOOK, build(sim, a), times=1)
    guard = Guard(sim, tmp_path / "state", ONE_ACCOUNT)
    log = Recorder()
    report = guard.sweep(log=log)

    [(account, why)] = report.unread_accounts
    assert account == ACCT and says in why, why
    [failed] = log.named("book.read_failed")  # one error, with the reason
    assert failed["account"] == ACCT and failed["error"] == why
    assert len(why) < 300  # a line, not the reply
    assert report.result == "incomplete" and not report.complete
    assert report.decisions == () and report.plan.targets == ()
    assert [r for r in sim.requests if r.method == "DELETE"] == []
    assert sim.order(a).status == "QU"
    with guard.journal() as j:
        assert j.query("SELECT COUNT(*) FROM decisions") == [(0,)]
        assert j.query("SELECT COUNT(*) FROM intents") == [(0,)]
        [(result, summary)] = j.query("SELECT result, summary FROM sweep_results")
    assert result == "incomplete" and json.loads(summary)["unread_accounts"] == [ACCT]

    again = guard.sweep()  # the garbage was a one-off: the account is guarded again
    assert again.result == "ok" and again.unread_accounts == ()
    assert sim.order(a).status == "CL" and sim.accepted_cancels() == [a]


def test_a_well_formed_but_5mb_book_is_read_normally(sim: Simulator, tmp_path: Path) -> None:
    """Size alone is not an error: 5 MB of ``message`` text on a real order is read, and the
    order is cancelled as usual."""
    a = sim.seed_order(ACCT, "SSI", "B", 27_000, 100, age=STALE)
    sim.override_reply("GET", BOOK, book(sim, wire(sim, a, message="x" * 5_000_000)))
    guard = Guard(sim, tmp_path / "state", ONE_ACCOUNT)
    report = guard.sweep()
    assert report.result == "ok" and report.unread_accounts == ()
    assert sim.order(a).status == "CL" and sim.accepted_cancels() == [a]


def test_the_daemon_survives_garbage_and_recovers_when_it_clears(
    sim: Simulator, tmp_path: Path
) -> None:
    """A broker answering garbage for a while: the daemon starts degraded ("broker
    unavailable"), every sweep returns an ``incomplete`` report (no exception, no DELETE),
    and the first sweep after the garbage stops is ``ok`` and healthy again."""
    a = sim.seed_order(ACCT, "SSI", "B", 27_000, 100, age=STALE)
    rules = tmp_path / "rules.yaml"
    rules.write_text(ONE_ACCOUNT + "poll_every: 1s\n")
    env = {**sim.env(), "SSI_GUARD_STATE_DIR": str(tmp_path / "state")}
    garbage = sim.override_reply("GET", BOOK, {"orderList": "none"}, times=None)
    log = Recorder()

    async def scenario() -> None:
        async with open_guard(rules, env=env, clock=sim.clock, log=log) as ctx:
            daemon = Daemon(ctx, rules, notifier=Notifier({}), log=log)
            await daemon.start()
            assert daemon.health.state == "degraded"
            assert daemon.health.reason.startswith("broker unavailable: ")
            assert "orderList is a string" in daemon.health.reason
            [poll] = [j for j in daemon.jobs if j.job_id == "poll"]
            for _ in range(3):
                report = await daemon.fire(poll)
                assert report is not None and report.result == "incomplete"
                assert [acct for acct, _ in report.unread_accounts] == [ACCT]
            assert daemon.health.state == "degraded" and not log.named("sweep.crashed")
            assert [r for r in sim.requests if r.method == "DELETE"] == []

            sim.faults.clear()
            report = await daemon.fire(poll)
            assert report is not None and report.result == "ok"
            assert daemon.health.state == "healthy"
            daemon.request_stop()

    asyncio.run(scenario())
    assert garbage.times is None  # it was armed throughout, not used up
    assert sim.order(a).status == "CL" and sim.accepted_cancels() == [a]


# Answers to a batch DELETE that do not parse as its results. With ``applied`` the exchange
# took the cancels first; either way only a re-read of the book may say what happened.
BATCH_REPLIES: dict[str, Any] = {
    "a-list": [{"success": True}],
    "results-an-object": {"batchRequestId": "x", "results": {"0": {"success": True}}},
    "too-few-results": {"batchRequestId": "x", "results": [{"success": True}]},
    "html": b"<html>internal error</html>",
}


@pytest.mark.parametrize("applied", [True, False], ids=["applied", "not-applied"])
@pytest.mark.parametrize("reply", list(BATCH_REPLIES))
def test_a_garbage_answer_to_a_batch_never_cancels_twice(
    reply: str, applied: bool, sim: Simulator, tmp_path: Path
) -> None:
    ids = [sim.seed_order(ACCT, "SSI", "B", 27_000, 100 * (i + 1), age=STALE) for i in range(3)]
    sim.override_reply("DELETE", BATCH, BATCH_REPLIES[reply], apply_first=applied)
    guard = Guard(sim, tmp_path / "state", ONE_ACCOUNT)
    report = guard.sweep()

    assert report.result == "ok"
    assert sorted(sim.accepted_cancels()) == sorted(ids)
    assert_no_double_cancel(sim)
    assert all(sim.order(i).status == "CL" for i in ids)
    # Applied: the re-read proves it and nothing is sent again. Not applied: one resend.
    assert len(sim.requests_to("DELETE", BATCH)) == (1 if applied else 2)
    assert sim.requests_to("DELETE", SINGLE) == []  # garbage is never read as a refusal
    assert {k: [r[0] for r in v] for k, v in outcomes(guard.journal_path).items()} == {
        i: ["cancelled"] for i in ids}
    assert_one_outcome_per_intent(guard.journal_path)
