"""The seed tutorial's own sample flows ("9. Hủy lệnh", shared/seed/09-cancel-order.vi.txt),
run against the simulator with the real ``ssi_sdk``.

They are transcribed as written, changed only where the seed is wrong (each change is marked
``# seed:``): ``ensure_auth`` prompts with ``input()`` (here ``authenticate(otp=...)``),
``get_today_orders`` uses the host's date (here the exchange date), ``balance.available_cash``
does not exist (here ``withdrawable``/``on_hold_cash`` and ``get_equity_ppmmr``), and the book
is re-read until the cancel settles instead of once.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest
from ssi_sdk import AsyncAuth, AsyncTrading, Auth, Config, RateLimitError, Trading
from ssi_sdk.enums import OrderStatus

from guard.clock import EXCHANGE_TZ
from guard.simulator.control import Simulator

CANCELLABLE_STATUSES = {
    OrderStatus.PENDING_APPROVAL, OrderStatus.READY,
    OrderStatus.SENT, OrderStatus.QUEUED, OrderStatus.PARTIAL_FILLED,
}


def _config(sim: Simulator, **extra: Any) -> Config:
    c = sim.credentials
    return Config(
        client_id=c.client_id,
        api_key=c.api_key,
        api_secret=c.api_secret,
        private_key=c.private_key,
        api_url=sim.url,  # seed: the production URL by default
        **extra,
    )


def _exchange_day(sim: Simulator) -> str:
    return sim.clock().astimezone(EXCHANGE_TZ).strftime("%Y/%m/%d")


def test_seed_sync_sample(sim: Simulator, until: Callable[..., bool],
                          capsys: pytest.CaptureFixture[str]) -> None:
    ACCOUNT_NO = "0001234"  # the seed's names
    first = sim.seed_order(ACCOUNT_NO, "SSI", "B", 27_000, 1_000)
    partial = sim.seed_order(ACCOUNT_NO, "VNM", "B", 62_000, 500)
    sim.fill(partial, 200)
    sim.fill(sim.seed_order(ACCOUNT_NO, "FPT", "B", 95_000, 100))
    sim.set_status(sim.seed_order(ACCOUNT_NO, "HPG", "S", 26_000, 100), "RJ")
    config = _config(sim)
    today = _exchange_day(sim)  # seed: datetime.today() on the host, inside get_today_orders

    with Auth(config) as auth:
        auth.authenticate(otp=sim.credentials.otp)  # seed: ensure_auth(auth, otp=...)
        with Trading(auth) as trading:
            # Bước 1: Tìm lệnh đang mở
            orders = trading.portfolio.get_historical_orders(ACCOUNT_NO, today, today)
            open_orders = [o for o in orders if o.status in CANCELLABLE_STATUSES]
            print(f"Tổng lệnh: {len(orders)} | Đang mở: {len(open_orders)}")
            before = trading.portfolio.get_equity_balance(ACCOUNT_NO)
            power_before = trading.portfolio.get_equity_ppmmr(ACCOUNT_NO).purchasing_power

            if open_orders:
                # Bước 2: Hủy lệnh đầu tiên
                target = open_orders[0]
                print(f" Hủy lệnh: {target.order_id}")
                result = trading.trading.cancel_order_by_order_id(
                    account_no=ACCOUNT_NO,
                    order_id=target.order_id,
                )
                print(f" Kết quả: {result}")

                # Bước 3: Xác nhận trạng thái (seed: read once, when WC may still show)
                def status_now() -> Any:
                    book = trading.portfolio.get_historical_orders(ACCOUNT_NO, today, today)
                    return next(o for o in book if o.order_id == target.order_id).status

                assert until(lambda: status_now() is not OrderStatus.PENDING_CANCEL)
                orders_after = trading.portfolio.get_historical_orders(ACCOUNT_NO, today, today)
                for order in orders_after:
                    if order.order_id == target.order_id:
                        print(f" Status: {order.status.value} | Đã hủy: {order.cancel_quantity}")

                # Bước 4: Cập nhật số dư
                balance = trading.portfolio.get_equity_balance(ACCOUNT_NO)
                assert not hasattr(balance, "available_cash")  # seed: balance.available_cash
                print(f" Tiền mặt khả dụng: {balance.withdrawable:,.0f}")
                power = trading.portfolio.get_equity_ppmmr(ACCOUNT_NO).purchasing_power

    out = capsys.readouterr().out
    assert "Tổng lệnh: 4 | Đang mở: 2" in out
    assert target.order_id == first and result.status is OrderStatus.PENDING_CANCEL
    assert " Status: CL | Đã hủy: 1000" in out
    released = 27_000 * 1_000
    assert balance.withdrawable - before.withdrawable == released
    assert before.on_hold_cash - balance.on_hold_cash == released
    assert power - power_before == released
    assert sim.order(partial).status == "PF"  # the sample cancels only the first


def test_seed_async_sample_loses_cancels_to_429(sim: Simulator,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    """The seed's unbounded ``asyncio.gather`` of single cancels: with the client's limiter off,
    the gateway's 10 requests/s refuses part of the burst and the SDK never retries a DELETE,
    so those orders stay open. This is the defect ssi-guard exists to fix."""
    ACCOUNT_NO = "0001234"  # the seed's names
    ids = [sim.seed_order(ACCOUNT_NO, "HPG", "B", 26_000 + 50 * (i % 5), 100) for i in range(30)]
    config = _config(sim, rate_limit_per_second=0)  # seed: Config(...) with its default 10/s
    today = _exchange_day(sim)

    async def main() -> tuple[list[Any], list[Any]]:
        async with AsyncAuth(config) as auth:
            await auth.authenticate(otp=sim.credentials.otp)  # seed: ensure_auth_async(...)
            async with AsyncTrading(auth) as trading:
                orders = await trading.portfolio.get_historical_orders(ACCOUNT_NO, today, today)
                open_orders = [o for o in orders if o.status in CANCELLABLE_STATUSES]
                results: list[Any] = []
                if open_orders:
                    # Hủy tất cả lệnh đang mở (song song)
                    cancel_tasks = [
                        trading.trading.cancel_order_by_order_id(
                            account_no=ACCOUNT_NO, order_id=o.order_id,
                        )
                        for o in open_orders
                    ]
                    results = await asyncio.gather(*cancel_tasks, return_exceptions=True)
                    for order, result in zip(open_orders, results, strict=True):
                        status = "LỖI" if isinstance(result, Exception) else "OK"
                        print(f" {order.order_id}: {status}")
                return open_orders, results

    open_orders, results = asyncio.run(main())
    assert [o.order_id for o in open_orders] == ids
    lost = [o.order_id for o, r in zip(open_orders, results, strict=True)
            if isinstance(r, Exception)]
    assert len(lost) > 0
    assert all(isinstance(r, RateLimitError) for r in results if isinstance(r, Exception))
    assert all(sim.order(order_id).status == "QU" for order_id in lost)  # still open
    done = set(ids) - set(lost)
    assert all(sim.order(order_id).status in ("WC", "CL") for order_id in done)
    assert sorted(sim.accepted_cancels()) == sorted(done)
    assert capsys.readouterr().out.count(": LỖI") == len(lost)
