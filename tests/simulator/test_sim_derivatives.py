"""Simulator conformance for derivatives: account types, futures margin held and released, and
the derivative balance and PPMMR in SSI's wire shape, read through the real ``ssi_sdk``."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from kit import ACCT, OTHER
from ssi_sdk.enums import AccountType, OrderSide, OrderType

from guard.simulator.control import KRX_FUTURES, Simulator
from guard.simulator.exchange import CONTRACT_MULTIPLIER, MARGIN_RATE_PCT

DER = "0005678"
CASH = 2_000_000_000
BALANCE = "/api/v3/trading/accountBalance"
PPMMR = "/api/v3/trading/ppmmrAccount"


def margin(price: int, contracts: int) -> int:
    return price * CONTRACT_MULTIPLIER * MARGIN_RATE_PCT // 100 * contracts


def test_account_info_says_each_accounts_type(sim: Simulator, sdk: Any) -> None:
    sim.add_account(DER, CASH, account_type="Derivative")
    sim.set_account_type(OTHER, "Margin")
    _, trading = sdk()
    types = {a.account_no: a.account_type for a in trading.account.get_account_info()}
    assert types == {ACCT: AccountType.EQUITY, OTHER: AccountType.EQUITY_MARGIN,
                     DER: AccountType.DERIVATIVE}
    sim.set_account_type(DER, "Futures?")  # a word the SDK does not know comes through raw
    types = {a.account_no: a.account_type for a in trading.account.get_account_info()}
    assert types[DER] == "Futures?"


def test_a_futures_order_holds_margin_either_side_and_its_cancel_releases_it(
    sim: Simulator, sdk: Any, until: Callable[..., bool]
) -> None:
    sim.add_account(DER, CASH, account_type="Derivative")
    sim.exchange.add_symbol(KRX_FUTURES)
    _, trading = sdk()

    def figures() -> tuple[float, float, float, float]:
        balance = trading.portfolio.get_derivative_balance(DER)
        ppmmr = trading.portfolio.get_derivative_ppmmr(DER)
        return (balance.account_balance, balance.withdrawable, balance.cash_vsdc,
                ppmmr.margin_req_vsdc)

    assert figures() == (CASH, CASH, 0, 0)
    assert trading.portfolio.get_equity_balance(DER) is None  # no equity member
    buy = trading.trading.place_order(DER, "VN30F2612", OrderSide.BUY, 3, 1_350, OrderType.LO)
    sell = trading.trading.place_order(DER, "41I1FC000", OrderSide.SELL, 2, 1_360,
                                       OrderType.LO)
    held = margin(1_350, 3) + margin(1_360, 2)
    assert held == 115_090_000  # 1,350 x 100,000 x 17% x 3 + 1,360 x 100,000 x 17% x 2
    assert figures() == (CASH, CASH - held, held, held)

    trading.trading.cancel_order_by_order_id(DER, sell.order_id)
    assert until(lambda: sim.order(sell.order_id).status == "CL")
    assert figures() == (CASH, CASH - margin(1_350, 3), margin(1_350, 3), margin(1_350, 3))
    sim.fill(buy.order_id, 1)  # a fill opens a position: no cash moves, its margin goes
    assert figures() == (CASH, CASH - margin(1_350, 2), margin(1_350, 2), margin(1_350, 2))


def test_the_wire_shape_is_ssis(sim: Simulator, sdk: Any) -> None:
    """camelCase keys in the ``derivative`` member, ``equity`` null, and the other way round
    for an equity account."""
    sim.add_account(DER, CASH, account_type="Derivative")
    sim.seed_order(DER, "VN30F2612", "B", 1_350, 1)
    _, trading = sdk()
    trading.portfolio.get_derivative_balance(DER)
    trading.portfolio.get_derivative_ppmmr(DER)
    trading.portfolio.get_equity_balance(ACCT)
    balance = sim.requests_to("GET", BALANCE)
    assert len(balance) == 2
    assert balance[0].reply["equity"] is None
    member = balance[0].reply["derivative"]
    assert {"accountNo", "accountBalance", "withdrawable", "withdrawableSSI", "cashVSDC",
            "floatingPL", "tradingPL"} <= set(member)
    assert member["withdrawable"] == CASH - margin(1_350, 1)
    assert balance[1].reply["derivative"] is None
    [ppmmr] = sim.requests_to("GET", PPMMR)
    assert ppmmr.reply["equity"] is None
    assert {"marginReqVSDC", "accountRatioVSDC", "eeSSI"} <= set(ppmmr.reply["derivative"])


def test_both_code_forms_are_on_the_derivatives_board(sim: Simulator) -> None:
    sim.exchange.add_symbol(KRX_FUTURES)
    assert sim.exchange.board_of("VN30F2612") == "DERIVATIVES"
    assert sim.exchange.board_of("41I1FC000") == "DERIVATIVES"
