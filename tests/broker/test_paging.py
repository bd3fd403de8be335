"""Order books over one page, read through the real SDK from the paging simulator: every page
is read, a book that changes while it is paged is read again until two passes agree, and a
book that never settles is unread: nothing is ever decided from half a book."""

from __future__ import annotations

from pathlib import Path

import pytest
from kit import ACCT, BOOK, FRESH, OTHER, STALE
from kit.log import Recorder
from kit.sweep import Guard, assert_no_double_cancel, rules_text

from guard.broker.replies import PAGE_SIZE, Page, assemble_book, parse_order_page
from guard.errors import BrokerReplyError
from guard.simulator.control import Simulator


def seed(sim: Simulator, account: str, fresh: int, stale: int) -> list[str]:
    """``fresh`` young orders, then ``stale`` old ones (returned)."""
    for _ in range(fresh):
        sim.seed_order(account, "SSI", "S", 27_000, 100, age=FRESH)  # sells hold no cash
    return [sim.seed_order(account, "VNM", "B", 62_000, 100, age=STALE) for _ in range(stale)]


def pages_read(sim: Simulator, account: str) -> list[int]:
    return [int(r.query["pageIndex"]) for r in sim.requests_to("GET", BOOK)
            if r.query.get("accountNo") == account]


def test_a_ten_thousand_order_book_is_read_whole_and_guarded(sim: Simulator,
                                                             tmp_path: Path) -> None:
    stale = seed(sim, ACCT, 9_850, 150)
    guard = Guard(sim, tmp_path / "state", rules_text(max_cancels=200))
    report = guard.sweep(log=Recorder())
    assert report.result == "ok" and report.unread_accounts == ()
    assert len(report.decisions) == 10_000
    assert sorted(sim.accepted_cancels()) == sorted(stale)
    # The snapshot: page 1, then the other nine and the empty eleventh that ends a book of a
    # multiple of 1,000, together (they reach the simulator in any order).
    assert pages_read(sim, ACCT)[0] == 1
    assert sorted(pages_read(sim, ACCT)[:11]) == list(range(1, 12))
    assert all(int(r.query["pageSize"]) == PAGE_SIZE for r in sim.requests_to("GET", BOOK))


def test_exactly_one_full_page_asks_for_the_next_and_takes_it_empty(sim: Simulator,
                                                                     tmp_path: Path) -> None:
    seed(sim, ACCT, 1_000, 0)
    report = Guard(sim, tmp_path / "state", rules_text()).sweep(log=Recorder())
    assert report.result == "nothing_to_do" and len(report.decisions) == 1_000
    assert pages_read(sim, ACCT) == [1, 2]


def test_rows_shifting_between_pages_are_read_again_until_two_passes_agree(
    sim: Simulator, tmp_path: Path
) -> None:
    """Newest first: an order placed after page 1 was read pushes page 1's last row onto
    page 2. That pass is thrown away; the next two agree, and the sweep decides from them,
    the new order included (it is fresh, so it is kept)."""
    stale = seed(sim, ACCT, 2_100, 200)
    sim.list_newest_first()
    arrived: list[str] = []
    sim.on_request("GET", BOOK, lambda: arrived.append(
        sim.seed_order(ACCT, "HPG", "B", 26_400, 100)), account=ACCT)
    report = Guard(sim, tmp_path / "state", rules_text(max_cancels=250)).sweep(log=Recorder())

    assert report.result == "ok" and report.unread_accounts == ()
    assert {d.order.order_id for d in report.decisions} >= set(arrived)
    assert len(report.decisions) == 2_301
    assert sorted(sim.accepted_cancels()) == sorted(stale)
    snapshot = pages_read(sim, ACCT)[:9]
    passes = [sorted(snapshot[i:i + 3]) for i in (0, 3, 6)]
    assert passes == [[1, 2, 3]] * 3  # changed, then two passes that agree
    assert_no_double_cancel(sim)


def test_a_book_that_never_settles_is_unread_and_nothing_is_sent(sim: Simulator,
                                                                 tmp_path: Path) -> None:
    seed(sim, ACCT, 1_500, 10)
    seed(sim, OTHER, 0, 2)
    sim.list_newest_first()
    sim.on_request("GET", BOOK, lambda: sim.seed_order(ACCT, "HPG", "B", 26_400, 100),
                   account=ACCT, times=None)
    log = Recorder()
    report = Guard(sim, tmp_path / "state", rules_text()).sweep(log=log)
    [(unread, why)] = report.unread_accounts
    assert unread == ACCT and "no two of" in why and report.result == "incomplete"
    assert {d.order.account for d in report.decisions} == {OTHER}
    accepted = sim.accepted_cancels()
    assert len(accepted) == 2 and {sim.order(o).account for o in accepted} == {OTHER}


def test_a_page_that_ignores_the_size_asked_for_is_refused() -> None:
    body = {"accountNo": ACCT, "totalRecord": 3, "orderList": [{}, {}, {}]}
    with pytest.raises(BrokerReplyError, match="did not page as asked"):
        parse_order_page(body, ACCT, 1, 2)


def test_pages_whose_totals_differ_are_a_changed_book_not_a_cut_one() -> None:
    with pytest.raises(BrokerReplyError, match="went 2 -> 3 while paging"):
        assemble_book([Page((), 2), Page((), 3)], ACCT)


def test_a_book_of_more_than_a_hundred_pages_is_not_plausible(sim: Simulator,
                                                              tmp_path: Path) -> None:
    """Bounded: a server that claims page after page never makes the guard read forever."""
    from guard.broker import replies

    old = replies.MAX_PAGES
    replies.MAX_PAGES = 2
    try:
        seed(sim, ACCT, 2_500, 0)
        report = Guard(sim, tmp_path / "state", rules_text()).sweep(log=Recorder())
    finally:
        replies.MAX_PAGES = old
    [(unread, why)] = report.unread_accounts
    assert unread == ACCT and "more than 2 pages" in why
