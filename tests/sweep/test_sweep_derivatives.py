"""A derivatives account guarded end to end: the real ``ssi_sdk`` over HTTP to the simulator,
futures in both code forms, the DER session rules at their exact instants, and the margin a
cancel releases logged from the derivative balance."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import pytest
from kit import ACCT, BATCH, SINGLE, STALE
from kit.log import Recorder
from kit.sweep import Guard, assert_no_double_cancel, at

from guard.market.calendar import Board
from guard.model import HoldKind
from guard.simulator.control import KRX_FUTURES, Simulator
from guard.simulator.exchange import CONTRACT_MULTIPLIER, MARGIN_RATE_PCT

DER = "0005678"


def margin(price: int, contracts: int) -> Decimal:
    return Decimal(price * CONTRACT_MULTIPLIER * MARGIN_RATE_PCT // 100 * contracts)


def rules(rule: str, accounts: tuple[str, ...] = (DER,)) -> str:
    listed = ", ".join(f'"{a}"' for a in accounts)
    return f"""
version: 1
accounts: [{listed}]
dry_run: false
limits:
  confirm_timeout: 5s
rules:
{rule}"""


STALE_FUTURES = """
  - name: stale-futures
    max_age: 15m
    match:
      boards: [DER]
      symbols: ["VN30F*", "41I1F*"]
"""
PRE_CLOSE = """
  - name: pre-close
    before_close: 5m
    match:
      boards: [DER]
"""


@pytest.fixture
def der(sim: Simulator) -> Simulator:
    sim.add_account(DER, 2_000_000_000, account_type="Derivative")
    sim.exchange.add_symbol(KRX_FUTURES)
    return sim


def deletes(sim: Simulator) -> list[str]:
    ids = [i["orderId"] for r in sim.requests_to("DELETE", BATCH) for i in r.body["orders"]]
    return ids + [r.body["orderId"] for r in sim.requests_to("DELETE", SINGLE)]


def test_stale_futures_in_both_code_forms_are_cancelled_and_the_margin_release_logged(
    der: Simulator, tmp_path: Path
) -> None:
    old = der.seed_order(DER, "VN30F2612", "B", 1_350, 3, age=STALE)
    krx = der.seed_order(DER, "41I1FC000", "S", 1_360, 2, age=STALE)
    fresh = der.seed_order(DER, "VN30F2612", "B", 1_340, 1)
    log = Recorder()
    report = Guard(der, tmp_path / "state", rules(STALE_FUTURES)).sweep(log=log)

    assert report.result == "ok", report
    assert sorted(der.accepted_cancels()) == sorted([old, krx])
    assert der.order(old).status == der.order(krx).status == "CL"
    assert der.order(fresh).status == "QU"
    boards = {d.order.symbol: d.board for d in report.decisions}
    assert boards == {"VN30F2612": Board.DER, "41I1FC000": Board.DER}  # from master data
    [release] = report.cash
    assert release.basis == "derivative" and release.account == DER
    assert release.withdrawable_delta == margin(1_350, 3) + margin(1_360, 2)
    assert release.expected is None and release.purchasing_power_delta is None
    assert not release.mismatch
    [logged] = log.named("cash.released")
    assert Decimal(logged["withdrawable_delta"]) == margin(1_350, 3) + margin(1_360, 2)
    assert logged["mismatch"] is False
    assert_no_double_cancel(der)


@pytest.mark.parametrize(("hh", "mm", "ss", "cancelled"), [
    (8, 44, 59, False),  # before DER opens
    (8, 45, 0, False),  # ATO begins
    (8, 59, 59, False),  # still ATO
    (9, 0, 0, True),  # continuous trading
    (11, 29, 59, True),
    (11, 30, 0, False),  # lunch
    (13, 0, 0, True),
])
def test_stale_futures_are_held_outside_der_continuous_trading(
    der: Simulator, tmp_path: Path, hh: int, mm: int, ss: int, cancelled: bool
) -> None:
    der.set_clock(at(der, hh, mm, ss))
    order = der.seed_order(DER, "41I1FC000", "B", 1_352, 1, age=STALE)
    report = Guard(der, tmp_path / "state", rules(STALE_FUTURES)).sweep(log=Recorder())
    [decision] = report.decisions
    if cancelled:
        assert decision.cancel and deletes(der) == [order]
        assert der.order(order).status == "CL"
    else:
        assert decision.hold_kind is HoldKind.BANNED_WINDOW and decision.rules
        assert deletes(der) == [] and der.order(order).status == "QU"
    if (hh, mm) == (8, 45) or (hh, mm, ss) == (8, 59, 59):
        assert decision.held == "DER in ATO: cancel banned"


@pytest.mark.parametrize(("ss_before", "cancelled"), [(True, True), (False, False)])
def test_the_pre_close_sweep_counts_back_from_1430_and_holds_in_atc(
    der: Simulator, tmp_path: Path, ss_before: bool, cancelled: bool
) -> None:
    """14:29:59 is the last second of DER continuous trading: the before_close rule cancels.
    14:30:00 is ATC: the same order is held, and no DELETE leaves."""
    der.set_clock(at(der, 14, 29, 59) if ss_before else at(der, 14, 30, 0))
    order = der.seed_order(DER, "VN30F2612", "S", 1_355, 4, age=STALE)
    report = Guard(der, tmp_path / "state", rules(PRE_CLOSE)).sweep(log=Recorder())
    [decision] = report.decisions
    if cancelled:
        assert decision.cancel and decision.reason == "14:29:59 is 1s before DER ATC"
        assert deletes(der) == [order] and der.order(order).status == "CL"
    else:
        assert decision.held == "DER in ATC: cancel banned"
        assert deletes(der) == [] and der.order(order).status == "QU"


def test_at_1425_a_stale_futures_order_is_pulled_before_atc(der: Simulator,
                                                            tmp_path: Path) -> None:
    der.set_clock(at(der, 14, 25, 0))
    order = der.seed_order(DER, "41I1FC000", "B", 1_352, 2)  # fresh: only the pre-close rule
    report = Guard(der, tmp_path / "state", rules(PRE_CLOSE)).sweep(log=Recorder())
    assert report.result == "ok"
    assert der.order(order).status == "CL"
    assert report.cash[0].withdrawable_delta == margin(1_352, 2)


def test_a_glob_over_one_code_form_does_not_match_the_other(der: Simulator,
                                                            tmp_path: Path) -> None:
    old_form = der.seed_order(DER, "VN30F2612", "B", 1_350, 1, age=STALE)
    krx_form = der.seed_order(DER, "41I1FC000", "B", 1_352, 1, age=STALE)
    only_old = """
  - name: stale-vn30f
    max_age: 15m
    match:
      symbols: ["VN30F*"]
"""
    report = Guard(der, tmp_path / "state", rules(only_old)).sweep(log=Recorder())
    assert der.accepted_cancels() == [old_form]
    assert der.order(krx_form).status == "QU"
    assert {d.order.order_id: bool(d.verdict) for d in report.decisions} == {
        old_form: True, krx_form: False}


def test_equity_and_derivatives_accounts_in_one_sweep(der: Simulator, tmp_path: Path) -> None:
    """The equity account's release is checked against price x quantity, the derivatives
    account's is margin with no expected figure; a boards: [DER] rule leaves HOSE alone."""
    stock = der.seed_order(ACCT, "SSI", "B", 27_000, 1_000, age=STALE)
    future = der.seed_order(DER, "VN30F2612", "B", 1_350, 1, age=STALE)
    both = """
  - name: stale
    max_age: 15m
"""
    report = Guard(der, tmp_path / "state", rules(both, (ACCT, DER))).sweep(log=Recorder())
    assert sorted(der.accepted_cancels()) == sorted([stock, future])
    by = {r.account: r for r in report.cash}
    assert (by[ACCT].basis, by[ACCT].expected, by[ACCT].mismatch) == (
        "equity", Decimal(27_000_000), False)
    assert by[ACCT].withdrawable_delta == Decimal(27_000_000)
    assert (by[DER].basis, by[DER].expected) == ("derivative", None)
    assert by[DER].withdrawable_delta == margin(1_350, 1)
