"""The cash released is a measurement: a cash read that hangs never holds its account's
cancels back by more than ``CASH_BEFORE_S`` (a pre-close at 14:29:55 must not miss ATC for
it); the cancels go, and the release is reported as not measured."""

from __future__ import annotations

from pathlib import Path

from kit import ACCT, BATCH, BOOK, STALE
from kit.log import Recorder
from kit.sweep import Guard, answered, rules_text

from guard.simulator.control import Simulator
from guard.simulator.faults import Fault
from guard.sweep import CASH_BEFORE_S

BALANCE = "/api/v3/trading/accountBalance"


def test_a_hanging_cash_read_does_not_hold_the_cancels(sim: Simulator, tmp_path: Path) -> None:
    orders = [sim.seed_order(ACCT, "SSI", "B", 27_000, 100, age=STALE) for _ in range(3)]
    sim.inject(Fault("latency", "GET", BALANCE, seconds=8.0, times=None, account=ACCT))
    log = Recorder()
    report = Guard(sim, tmp_path / "state", rules_text()).sweep(log=log)
    answered(sim, timeout=30.0)

    books = [r.at for r in sim.requests_to("GET", BOOK)]
    deletes = [r.at for r in sim.requests_to("DELETE", BATCH)]
    assert deletes and min(deletes) - min(books) < CASH_BEFORE_S + 0.5
    assert report.result == "ok" and all(sim.order(o).status == "CL" for o in orders)
    [failed] = log.named("cash.read_failed")
    assert failed["account"] == ACCT and "no answer within 1s" in failed["error"]
    assert not log.named("cash.released") and report.cash == ()
