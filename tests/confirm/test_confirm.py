"""``classify`` (pure) and the ``confirm`` loop: the book is the only proof of a cancel."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest

from guard.clock import EXCHANGE_TZ
from guard.confirm.confirm import classify, confirm
from guard.errors import BrokerCallError
from guard.model import FINAL_OK, BookOrder, CancelTarget, Outcome, SendResult, SendStatus

T0 = datetime(2026, 11, 23, 9, 30, tzinfo=EXCHANGE_TZ)
BEFORE = BookOrder(account="0001234", order_id="1", client_request_id="c1", symbol="SSI",
                   side="B", order_type="LO", price=Decimal(27_000), price_word=None,
                   quantity=1_000, filled=100, cancelled=50, status="PF", input_time=T0)


def sent(status: SendStatus = "accepted", code: str = "", detail: str = "WC",
         order: BookOrder = BEFORE, intent: int = 1) -> SendResult:
    return SendResult(CancelTarget(order, ("stale",), "age"), intent, status, code, detail)


def now(status: str, filled: int = 100, cancelled: int = 50) -> BookOrder:
    return replace(BEFORE, status=status, filled=filled, cancelled=cancelled)


@pytest.mark.parametrize(("book", "expected"), [
    (now("CL", 100, 900), ("cancelled", 850, "cancelled 850")),
    (now("FFPC", 400, 600), ("partially_cancelled", 550, "filled 400, cancelled 550")),
    (now("FF", 950, 50), ("filled_first", 0, "filled before the cancel took effect")),
    (now("RJ"), ("already_done", 0, "order ended as RJ")),
    (now("EX"), ("already_done", 0, "order ended as EX")),
])
def test_accepted_cancel_with_a_final_status(book: BookOrder, expected: tuple[Any, ...]) -> None:
    assert classify(sent("accepted"), book) == expected


@pytest.mark.parametrize("status", ["WC", "QU", "PF", "WM", "ZZ", "PD"])
def test_accepted_cancel_not_final_yet_waits(status: str) -> None:
    assert classify(sent("accepted"), now(status)) is None


def test_missing_from_the_book_waits() -> None:
    assert classify(sent("accepted"), None) is None
    assert classify(sent("refused", "400202"), None) is None


@pytest.mark.parametrize(("book", "expected"), [
    (now("FF", 950), ("already_done", 0, "refused: the order had filled")),
    (now("CL", 100, 900), ("already_done", 850, "refused: the order was already CL")),
    (now("FFPC", 500, 500), ("already_done", 450, "refused: the order was already FFPC")),
    (now("RJ"), ("already_done", 0, "refused: the order was already RJ")),
])
def test_refused_cancel_of_a_finished_order_is_already_done(
    book: BookOrder, expected: tuple[Any, ...]
) -> None:
    assert classify(sent("refused", "400202", "order is FF: cannot cancel"), book) == expected


def test_refused_cancel_of_an_open_order_is_failed_with_the_reason() -> None:
    kind, qty, detail = classify(sent("refused", "400203", "HOSE in ATC"), now("QU")) or ()
    assert (kind, qty) == ("failed", 0)
    assert detail == "refused: HOSE in ATC; order still QU"
    kind, _, detail = classify(sent("refused", "400203", ""), now("PF")) or ()
    assert kind == "failed" and "400203" in detail


def test_never_sent_and_still_open_is_failed() -> None:
    kind, _, detail = classify(sent("not_sent", "", "rate limited"), now("QU")) or ()
    assert kind == "failed" and detail == "not_sent: rate limited; order still QU"


def test_refused_while_another_cancel_is_pending_waits() -> None:
    assert classify(sent("refused", "400202"), now("WC")) is None


def test_final_ok_kinds() -> None:
    assert {"cancelled", "partially_cancelled", "filled_first", "already_done"} == FINAL_OK


# ---- the confirm loop, on a scripted book ----------------------------------------------------


class ScriptedBook:
    """Stands in for the broker adapter (not the SDK): each read returns the next book."""

    def __init__(self, *reads: dict[str, BookOrder] | Exception) -> None:
        self.reads = list(reads)
        self.calls: list[tuple[str, Any]] = []

    async def orders(self, account: str, day: Any) -> tuple[BookOrder, ...]:
        self.calls.append((account, day))
        step = self.reads.pop(0) if len(self.reads) > 1 else self.reads[0]
        if isinstance(step, Exception):
            raise step
        return tuple(step.values())


class Log:
    def __init__(self) -> None:
        self.events: list[tuple[str, dict[str, Any]]] = []

    def info(self, event: str, **kw: Any) -> None:
        self.events.append((event, kw))

    warning = error = info


class FakeTime:
    def __init__(self) -> None:
        self.t = 100.0
        self.sleeps: list[float] = []

    def monotonic(self) -> float:
        return self.t

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.t += seconds


def run_confirm(book: ScriptedBook, results: list[SendResult], timeout: float,
                clock: FakeTime, log: Log) -> list[Outcome]:
    return asyncio.run(confirm(results, broker=book, timeout=timedelta(seconds=timeout),
                               log=log, monotonic=clock.monotonic, sleep=clock.sleep))


def test_confirm_polls_with_backoff_until_final() -> None:
    wc = {"1": now("WC")}
    book = ScriptedBook(wc, wc, wc, {"1": now("CL", 100, 900)})
    clock, log = FakeTime(), Log()
    [outcome] = run_confirm(book, [sent()], 30, clock, log)
    assert (outcome.kind, outcome.cancelled_qty, outcome.final_status) == ("cancelled", 850, "CL")
    assert clock.sleeps == [0.1, 0.2, 0.4]
    assert len(book.calls) == 4 and book.calls[0] == ("0001234", T0.date())
    assert outcome.ok and log.events[-1][0] == "cancel.confirmed"


def test_confirm_deadline_gives_unconfirmed_and_logs_an_error() -> None:
    book = ScriptedBook({"1": now("WC")})
    clock, log = FakeTime(), Log()
    [outcome] = run_confirm(book, [sent()], 3, clock, log)
    assert outcome.kind == "unconfirmed" and not outcome.ok
    assert outcome.detail == "no final status within 3s"
    assert sum(clock.sleeps) == pytest.approx(3.0)
    assert max(clock.sleeps) <= 2.0  # the backoff is capped
    assert log.events[-1][0] == "cancel.failed"


def test_confirm_survives_a_failed_read() -> None:
    book = ScriptedBook(BrokerCallError("unavailable", "down"), {"1": now("CL", 100, 900)})
    clock, log = FakeTime(), Log()
    [outcome] = run_confirm(book, [sent()], 30, clock, log)
    assert outcome.kind == "cancelled"
    assert any(e == "book.read_failed" for e, _ in log.events)


def test_confirm_settles_each_order_on_its_own() -> None:
    other = replace(BEFORE, order_id="2", cancelled=0, filled=0)
    book = ScriptedBook({"1": now("CL", 100, 900), "2": replace(other, status="WC")},
                        {"1": now("CL", 100, 900), "2": replace(other, status="FF", filled=1000)})
    clock, log = FakeTime(), Log()
    got = run_confirm(book, [sent(), sent(order=other, intent=2)], 30, clock, log)
    assert [(o.sent.intent_id, o.kind) for o in got] == [(1, "cancelled"), (2, "filled_first")]
