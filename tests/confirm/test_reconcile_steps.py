"""``confirm/reconcile.py`` step by step, on a real journal and a stand-in book reader: what
each status in the book proves about a dead run's open intent, and that nothing is ever sent
(the reader has no cancel method at all)."""

from __future__ import annotations

import asyncio
from datetime import date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

from kit import ACCT, MONDAY_10AM, OTHER
from kit.log import Recorder

from guard.confirm.reconcile import Reconciled, reconcile
from guard.errors import BrokerUnavailable
from guard.model import BookOrder
from guard.record.journal import Journal

WALL = MONDAY_10AM + timedelta(minutes=5)


def book_order(account: str, order_id: str, status: str, cancelled: int = 0) -> BookOrder:
    return BookOrder(account, order_id, "", "SSI", "B", "LO", Decimal(27000), None, 100, 0,
                     cancelled, status, MONDAY_10AM - timedelta(minutes=20))


class Book:
    def __init__(self, books: dict[str, list[BookOrder]], down: set[str] = frozenset()) -> None:
        self.books, self.down = books, set(down)
        self.asked: list[tuple[str, date]] = []

    async def orders(self, account: str, day: date) -> tuple[BookOrder, ...]:
        self.asked.append((account, day))
        if account in self.down:
            raise BrokerUnavailable("HTTP 503")
        return tuple(self.books.get(account, []))


def journal_with(tmp_path: Path, intents: list[tuple[str, str]], *, created: datetime,
                 closed: bool = False) -> Journal:
    j = Journal(tmp_path / "journal.sqlite3")
    sweep = j.start_sweep(created, "crashed", MONDAY_10AM, False)
    j.intents(sweep, created, "deadbeef",
              [(a, o, "stale", "27000", "B", "LO", 100, 0) for a, o in intents])
    if closed:
        j.finish_sweep(sweep, created, "aborted", {})
    return j


def run(journal: Journal, reader: Book, **kwargs: Any) -> Reconciled:
    return asyncio.run(reconcile(reader, journal, wall=lambda: WALL, log=Recorder(),
                                 timeout=timedelta(seconds=0.2), **kwargs))


def outcomes(journal: Journal) -> dict[str, tuple[str, int]]:
    return {o: (k, q) for o, k, q in journal.query(
        "SELECT order_id, outcome, cancelled_qty FROM outcomes ORDER BY id")}


def test_each_status_proves_its_outcome(tmp_path: Path) -> None:
    j = journal_with(tmp_path, [(ACCT, "1"), (ACCT, "2"), (ACCT, "3"), (ACCT, "4")],
                     created=WALL - timedelta(hours=1))
    reader = Book({ACCT: [book_order(ACCT, "1", "CL", 100), book_order(ACCT, "2", "FF"),
                          book_order(ACCT, "3", "QU"), book_order(ACCT, "4", "EX")]})
    done = run(j, reader)
    assert outcomes(j) == {"1": ("cancelled", 100), "2": ("filled_first", 0),
                           "3": ("failed", 0), "4": ("already_done", 0)}
    assert done.deferred == frozenset() and done.unread == ()
    assert j.open_intents() == []
    assert reader.asked[0] == (ACCT, MONDAY_10AM.date())  # the sweep's market day's book


def test_an_open_order_whose_cancel_may_still_be_on_the_wire_is_deferred(tmp_path: Path) -> None:
    j = journal_with(tmp_path, [(ACCT, "1")], created=WALL - timedelta(seconds=3))
    done = run(j, Book({ACCT: [book_order(ACCT, "1", "QU")]}),
               on_the_wire=timedelta(seconds=15))
    assert done.deferred == {(ACCT, "1")} and outcomes(j) == {}
    assert [i.order_id for i in j.open_intents()] == ["1"]


def test_a_finished_sweep_had_nothing_on_the_wire(tmp_path: Path) -> None:
    j = journal_with(tmp_path, [(ACCT, "1")], created=WALL - timedelta(seconds=3), closed=True)
    run(j, Book({ACCT: [book_order(ACCT, "1", "QU")]}), on_the_wire=timedelta(seconds=15))
    assert outcomes(j) == {"1": ("failed", 0)}


def test_an_unreadable_account_keeps_its_intents_and_does_not_stop_the_other(
    tmp_path: Path
) -> None:
    j = journal_with(tmp_path, [(ACCT, "1"), (OTHER, "9")], created=WALL - timedelta(hours=1))
    done = run(j, Book({ACCT: [book_order(ACCT, "1", "CL", 100)]}, down={OTHER}))
    assert outcomes(j) == {"1": ("cancelled", 100)}
    assert done.deferred == {(OTHER, "9")}
    assert done.unread == ((OTHER, "open intents not reconciled: HTTP 503"),)
    assert [i.order_id for i in j.open_intents()] == ["9"]


def test_intents_still_in_flight_in_this_process_are_left_alone(tmp_path: Path) -> None:
    j = journal_with(tmp_path, [(ACCT, "1")], created=WALL - timedelta(hours=1))
    reader = Book({ACCT: [book_order(ACCT, "1", "CL", 100)]})
    done = run(j, reader, exclude={(ACCT, "1")})
    assert done.outcomes == [] and reader.asked == [] and outcomes(j) == {}
