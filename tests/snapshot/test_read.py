"""``snapshot/read.py`` and ``snapshot/fetch.py`` on a stand-in book reader (the ports make any
object with ``orders`` a reader: no casts): one account's failure is that account's alone."""

from __future__ import annotations

import asyncio
from datetime import date, datetime
from decimal import Decimal

import pytest
from kit import ACCT, MONDAY_10AM, OTHER
from kit.log import Recorder

from guard.errors import (
    BrokerRefused,
    BrokerReplyError,
    BrokerUnavailable,
    ReauthRequired,
)
from guard.model import BookOrder, CashFigures
from guard.snapshot.fetch import read_cash, take_snapshot
from guard.snapshot.read import read_books

DAY = date(2026, 11, 23)
THIRD = "0009998"


def order(account: str, order_id: str) -> BookOrder:
    return BookOrder(account, order_id, "", "SSI", "B", "LO", Decimal(27000), None, 100, 0, 0,
                     "QU", MONDAY_10AM)


class Reader:
    """Each account answers its book, or raises what ``fails`` names for it."""

    def __init__(self, fails: dict[str, Exception]) -> None:
        self.fails = fails
        self.asked: list[tuple[str, date]] = []

    async def orders(self, account: str, day: date) -> tuple[BookOrder, ...]:
        self.asked.append((account, day))
        await asyncio.sleep(0)
        if account in self.fails:
            raise self.fails[account]
        return (order(account, "1"), order(account, "2"))

    async def cash(self, account: str) -> CashFigures:
        if account in self.fails:
            raise self.fails[account]
        return CashFigures(Decimal(1), Decimal(2), Decimal(3))


def test_each_failing_account_is_named_and_the_others_are_read() -> None:
    reader = Reader({OTHER: BrokerUnavailable("HTTP 503"),
                     THIRD: BrokerReplyError("orderList is a string")})
    log = Recorder()
    got = asyncio.run(read_books(reader, {ACCT: DAY, OTHER: DAY, THIRD: DAY}, log))
    assert list(got.read) == [ACCT] and [o.order_id for o in got.read[ACCT]] == ["1", "2"]
    assert got.failed == {OTHER: "HTTP 503", THIRD: "orderList is a string"}
    assert sorted(f["account"] for f in log.named("book.read_failed")) == [OTHER, THIRD]
    assert got.by_id(ACCT) == {"1": order(ACCT, "1"), "2": order(ACCT, "2")}
    assert got.by_id(OTHER) is None
    assert sorted(reader.asked) == [(ACCT, DAY), (OTHER, DAY), (THIRD, DAY)]


def test_a_refusal_of_one_account_is_that_accounts_failure_too() -> None:
    reader = Reader({OTHER: BrokerRefused("broker forbids this call (HTTP 403)", status=403)})
    got = asyncio.run(read_books(reader, {ACCT: DAY, OTHER: DAY}, Recorder(),
                                 event="journal.reconcile_unread", level="error"))
    assert list(got.read) == [ACCT] and OTHER in got.failed


def test_a_lost_session_is_everyones_and_is_raised() -> None:
    reader = Reader({OTHER: ReauthRequired("run ssi-guard login")})
    with pytest.raises(ReauthRequired):
        asyncio.run(read_books(reader, {ACCT: DAY, OTHER: DAY}, Recorder()))


def test_a_bug_is_not_swallowed_as_an_unread_account() -> None:
    reader = Reader({OTHER: KeyError("x")})
    with pytest.raises(KeyError):
        asyncio.run(read_books(reader, {ACCT: DAY, OTHER: DAY}, Recorder()))


def test_the_snapshot_keeps_the_rules_order_and_stamps_the_read() -> None:
    reader = Reader({ACCT: BrokerUnavailable("down")})
    at = datetime(2026, 11, 23, 10, 0, 5, tzinfo=MONDAY_10AM.tzinfo)
    snap = asyncio.run(take_snapshot(reader, [THIRD, ACCT, OTHER], DAY, lambda: at, Recorder()))
    assert [b.account for b in snap.books] == [THIRD, OTHER]
    assert all(b.taken_at == at for b in snap.books)
    assert snap.failures == ((ACCT, "down"),)


def test_cash_that_cannot_be_read_is_left_out_not_fatal() -> None:
    log = Recorder()
    cash = asyncio.run(read_cash(Reader({OTHER: BrokerUnavailable("down")}), [ACCT, OTHER], log))
    assert list(cash) == [ACCT] and [f["account"] for f in log.named("cash.read_failed")] == [OTHER]
