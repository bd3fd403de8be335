"""Many accounts under one rate limit: a slow or failing account never holds back another's
cancels. Each promise is shown by the order of requests at the simulator (through the real
SDK), not by a stopwatch: the other account's DELETE (or confirmation) arrives while the slow
account's request is still unanswered."""

from __future__ import annotations

from pathlib import Path

from kit import ACCT, BATCH, BOOK, OTHER, STALE
from kit.log import Recorder
from kit.sweep import Guard, answered, assert_no_double_cancel, rules_text

from guard.simulator.control import Simulator
from guard.simulator.faults import Fault

BALANCE = "/api/v3/trading/accountBalance"


def seed(sim: Simulator) -> tuple[list[str], list[str]]:
    mine = [sim.seed_order(ACCT, "SSI", "B", 27_000, 100, age=STALE) for _ in range(3)]
    other = [sim.seed_order(OTHER, "VNM", "B", 62_000, 100, age=STALE) for _ in range(2)]
    return mine, other


def first(sim: Simulator, method: str, path: str, account: str) -> float:
    """When the simulator received the first ``method path`` request for ``account``."""
    return min(r.at for r in sim.requests_to(method, path)
               if account in (r.query.get("accountNo"), *[
                   i.get("accountNo") for i in (r.body or {}).get("orders", [])]))


def answered_at(sim: Simulator, method: str, path: str, account: str) -> float:
    times = [r.answered_at for r in sim.requests_to(method, path)
             if r.query.get("accountNo") == account or account in [
                 i.get("accountNo") for i in (r.body or {}).get("orders", [])]]
    assert all(t is not None for t in times)
    return min(t for t in times if t is not None)


def test_a_slow_book_is_left_out_and_does_not_hold_back_another_accounts_cancels(
    sim: Simulator, tmp_path: Path
) -> None:
    mine, other = seed(sim)
    sim.inject(Fault("latency", "GET", BOOK, seconds=4.0, times=1, account=OTHER))
    guard = Guard(sim, tmp_path / "state", rules_text())
    log = Recorder()
    report = guard.sweep(log=log)
    answered(sim, timeout=6.0)  # the abandoned read still sleeps at the simulator

    # ACCT's cancels left while OTHER's book was still unanswered.
    assert first(sim, "DELETE", BATCH, ACCT) < answered_at(sim, "GET", BOOK, OTHER) - 1.0
    assert sorted(sim.accepted_cancels()) == sorted(mine)
    [(unread, why)] = report.unread_accounts
    assert unread == OTHER and "left out of this sweep" in why
    assert report.result == "incomplete"
    assert [e["account"] for e in log.named("book.read_slow")] == [OTHER]
    # Its orders were never decided: nothing of it was planned or sent.
    assert {t.order.account for t in report.plan.targets} == {ACCT}

    again = guard.sweep()
    assert again.result == "ok"
    assert sorted(sim.accepted_cancels()) == sorted(mine + other)
    assert_no_double_cancel(sim)


def test_a_slow_cash_read_does_not_hold_back_another_accounts_cancels(
    sim: Simulator, tmp_path: Path
) -> None:
    mine, other = seed(sim)
    # 0.8 s: slow, but inside the 1 s a "before" read may take (tests/sweep/
    # test_cash_never_holds_cancels.py has one that is not).
    sim.inject(Fault("latency", "GET", BALANCE, seconds=0.8, times=1, account=OTHER))
    report = Guard(sim, tmp_path / "state", rules_text()).sweep()

    assert report.result == "ok"
    assert first(sim, "DELETE", BATCH, ACCT) < answered_at(sim, "GET", BALANCE, OTHER) - 0.5
    assert sorted(sim.accepted_cancels()) == sorted(mine + other)
    assert {c.account for c in report.cash} == {ACCT, OTHER}  # both releases still measured


def test_one_accounts_confirmation_does_not_wait_for_anothers_slow_cancel(
    sim: Simulator, tmp_path: Path
) -> None:
    mine, other = seed(sim)
    sim.inject(Fault("latency", "DELETE", BATCH, seconds=2.0, times=1, account=OTHER))
    log = Recorder()
    report = Guard(sim, tmp_path / "state", rules_text()).sweep(log=log)

    assert report.result == "ok"
    # ACCT's cancels were confirmed from the book while OTHER's DELETE was still unanswered.
    slow_answer = answered_at(sim, "DELETE", BATCH, OTHER)
    mine_sent = first(sim, "DELETE", BATCH, ACCT)
    confirm_reads = [r.answered_at for r in sim.requests_to("GET", BOOK)
                     if r.query.get("accountNo") == ACCT and r.at > mine_sent]
    assert confirm_reads and min(t for t in confirm_reads if t is not None) < slow_answer - 1.0
    confirmed = {e["order_id"] for e in log.named("cancel.confirmed")}
    assert confirmed == set(mine + other)
