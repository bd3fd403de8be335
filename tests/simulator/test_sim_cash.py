"""Simulator conformance: cash held by buy orders and released by confirmed cancels, read
through ``get_equity_balance`` and ``get_equity_ppmmr`` of the real ``ssi_sdk``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from kit import ACCT, DAY
from ssi_sdk.enums import OrderSide, OrderStatus, OrderType

from guard.simulator.control import Simulator

CASH = 5_000_000_000  # the fixture's starting cash per account


def _cash(trading: Any) -> tuple[float, float, float, float]:
    """(account balance, withdrawable, on hold, purchasing power)."""
    balance = trading.portfolio.get_equity_balance(ACCT)
    power = trading.portfolio.get_equity_ppmmr(ACCT).purchasing_power
    return balance.account_balance, balance.withdrawable, balance.on_hold_cash, power


def test_a_buy_holds_price_times_quantity_and_a_confirmed_cancel_releases_it(
    sim: Simulator, sdk: Any, until: Callable[..., bool]
) -> None:
    _, trading = sdk()
    assert _cash(trading) == (CASH, CASH, 0, CASH)
    placed = trading.trading.place_order(ACCT, "SSI", OrderSide.BUY, 1_000, 27_000, OrderType.LO)
    held = 27_000 * 1_000
    assert _cash(trading) == (CASH, CASH - held, held, CASH - held)
    assert trading.portfolio.get_equity_balance(ACCT).buy_unmatched == held

    with sim.paused_cancels():
        trading.trading.cancel_order_by_order_id(ACCT, placed.order_id)
        assert _cash(trading) == (CASH, CASH - held, held, CASH - held)  # WC still holds
    assert until(lambda: sim.order(placed.order_id).status == "CL")
    assert _cash(trading) == (CASH, CASH, 0, CASH)


def test_a_partial_fill_spends_cash_and_the_cancel_releases_only_the_rest(
    sim: Simulator, sdk: Any, until: Callable[..., bool]
) -> None:
    order_id = sim.seed_order(ACCT, "FPT", "B", 95_000, 1_000)
    sim.fill(order_id, 300)
    _, trading = sdk()
    balance, withdrawable, hold, power = _cash(trading)
    assert balance == CASH - 300 * 95_000
    assert hold == 700 * 95_000 and power == withdrawable == balance - hold

    trading.trading.cancel_order_by_order_id(ACCT, order_id)
    assert until(lambda: sim.order(order_id).status == "FFPC")
    [order] = trading.portfolio.get_historical_orders(ACCT, DAY, DAY)
    assert order.cancel_quantity == 700
    after = _cash(trading)
    assert after[1] - withdrawable == after[3] - power == 95_000 * order.cancel_quantity
    assert after == (balance, balance, 0, balance)


def test_sells_hold_no_cash_and_market_buys_hold_at_the_ceiling(sim: Simulator, sdk: Any) -> None:
    _, trading = sdk()
    trading.trading.place_order(ACCT, "VNM", OrderSide.SELL, 500, 62_000, OrderType.LO)
    assert _cash(trading)[2] == 0
    trading.trading.place_order(ACCT, "VNM", OrderSide.BUY, 100, None, OrderType.ATO)
    assert _cash(trading)[2] == 66_300 * 100  # VNM's ceiling


def test_async_cash_after_cancel(sim: Simulator, async_sdk: Any) -> None:
    orders = [sim.seed_order(ACCT, "HPG", "B", 26_000 + 100 * i, 100) for i in range(3)]

    async def run() -> tuple[float, float, float, float]:
        async with async_sdk() as (_, trading):
            before = await trading.portfolio.get_equity_balance(ACCT)
            power0 = (await trading.portfolio.get_equity_ppmmr(ACCT)).purchasing_power
            await trading.trading.cancel_order_by_order_id(ACCT, orders[1])
            for _ in range(100):
                book = await trading.portfolio.get_historical_orders(ACCT, DAY, DAY)
                if next(o for o in book if o.order_id == orders[1]).status is \
                        OrderStatus.CANCELLED:
                    break
                await asyncio.sleep(0.02)
            after = await trading.portfolio.get_equity_balance(ACCT)
            power1 = (await trading.portfolio.get_equity_ppmmr(ACCT)).purchasing_power
            return (after.withdrawable - before.withdrawable, power1 - power0,
                    before.on_hold_cash, after.on_hold_cash)

    released, power_up, hold0, hold1 = asyncio.run(run())
    assert released == power_up == 26_100 * 100
    assert (hold0, hold1) == (100 * (26_000 + 26_100 + 26_200), 100 * (26_000 + 26_200))
