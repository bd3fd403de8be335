"""Simulator conformance: master data (symbol -> board, ceiling, floor, refPrice) through
``AsyncData``/``Data``, with paging, and account info through ``trading.account``.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from kit import DAY
from ssi_sdk import AsyncData, Data, ValidationError
from ssi_sdk.enums import AccountType, Board

from guard.simulator.control import DEFAULT_SYMBOLS, Simulator

MASTER = "/api/v3/data/masterdata"


def _fetch(sim: Simulator, async_sdk: Any, day: str = DAY) -> list[Any]:
    async def run() -> list[Any]:
        async with async_sdk() as (auth, _):
            return list(await AsyncData(auth).market_data.get_master_data_historical(day, day))

    return asyncio.run(run())


def test_master_data_maps_every_symbol_to_its_board_and_prices(
    sim: Simulator, async_sdk: Any
) -> None:
    rows = {r.symbol: r for r in _fetch(sim, async_sdk)}
    assert set(rows) == {s.symbol for s in DEFAULT_SYMBOLS}
    vnm = rows["VNM"]
    assert (vnm.board, vnm.ceiling, vnm.floor, vnm.ref_price, vnm.trading_date) == (
        Board.HOSE, 66_300, 57_700, 62_000, DAY)
    assert rows["SHS"].board is Board.HNX
    assert rows["BSR"].board is Board.UPCOM
    assert rows["VN30F2612"].board is Board.DERIVATIVES
    assert all(r.floor < r.ref_price < r.ceiling for r in rows.values())
    [request] = sim.requests_to("GET", MASTER)
    assert request.query == {"from": DAY, "to": DAY, "pageIndex": "1", "pageSize": "1000"}


def test_master_data_is_paged_when_the_gateway_caps_the_page(
    sim: Simulator, async_sdk: Any
) -> None:
    sim.server.master_page_size = 5
    rows = _fetch(sim, async_sdk)
    assert sorted(r.symbol for r in rows) == sorted(s.symbol for s in DEFAULT_SYMBOLS)
    assert len(rows) == len(DEFAULT_SYMBOLS) == 13
    assert [r.query["pageIndex"] for r in sim.requests_to("GET", MASTER)] == ["1", "2", "3"]


def test_master_data_dates_are_validated_by_the_sdk(sim: Simulator, async_sdk: Any) -> None:
    with pytest.raises(ValidationError):
        _fetch(sim, async_sdk, day="2026-11-23")
    assert sim.requests_to("GET", MASTER) == []


def test_sync_master_data(sim: Simulator, sdk: Any) -> None:
    auth, _ = sdk()
    with Data(auth) as data:
        rows = data.market_data.get_master_data_historical(DAY, DAY)
    assert {r.symbol: r.board for r in rows}["PVS"] is Board.HNX


def test_account_info_lists_the_accounts(sim: Simulator, sdk: Any, async_sdk: Any) -> None:
    _, trading = sdk()
    accounts = trading.account.get_account_info()
    assert [(a.account_no, a.account_type) for a in accounts] == [
        ("0001234", AccountType.EQUITY), ("0001238", AccountType.EQUITY)]

    async def run() -> list[str]:
        async with async_sdk() as (_, async_trading):
            return [a.account_no for a in await async_trading.account.get_account_info()]

    assert asyncio.run(run()) == ["0001234", "0001238"]
