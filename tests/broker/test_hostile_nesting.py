"""A reply nested deeper than Python's parser recurses (valid JSON, ``[[[...]]]``) is an
unreadable reply, never a crash: a book read makes that account unread, a cancel reply is
ambiguous (the book is re-read and what went out is confirmed)."""

from __future__ import annotations

from pathlib import Path

from kit import ACCT, BATCH, BOOK, OTHER, STALE
from kit.log import Recorder
from kit.sweep import Guard, answered, assert_no_double_cancel, rules_text

from guard.simulator.control import Simulator
from guard.simulator.faults import Fault

DEEP = b"[" * 200_000 + b"]" * 200_000


def test_one_accounts_deeply_nested_book_does_not_stop_the_other(sim: Simulator,
                                                                 tmp_path: Path) -> None:
    a = sim.seed_order(ACCT, "SSI", age=STALE)
    sim.seed_order(OTHER, "VNM", "B", 62_000, 100, age=STALE)
    sim.inject(Fault("body", "GET", BOOK, times=None, status=200, body=DEEP, account=OTHER))
    report = Guard(sim, tmp_path / "state", rules_text()).sweep(log=Recorder())
    assert [acct for acct, _ in report.unread_accounts] == [OTHER]
    assert sim.order(a).status == "CL"


def test_a_deeply_nested_cancel_reply_is_ambiguous_and_still_confirmed(sim: Simulator,
                                                                       tmp_path: Path) -> None:
    ids = [sim.seed_order(ACCT, "SSI", age=STALE) for _ in range(2)]
    sim.inject(Fault("body", "DELETE", BATCH, times=1, status=200, body=DEEP, apply_first=True))
    log = Recorder()
    report = Guard(sim, tmp_path / "state", rules_text()).sweep(log=log)
    assert report.result == "ok" and all(sim.order(i).status == "CL" for i in ids)
    assert len(sim.requests_to("DELETE", BATCH)) == 1  # the book showed WC: nothing resent
    answered(sim)
    assert_no_double_cancel(sim)
