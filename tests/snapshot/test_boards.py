"""``snapshot/boards.py``: one board map per trading day from master data (prices kept), and
only the rules' overrides when master data cannot be read (those orders are held)."""

from __future__ import annotations

import asyncio
from datetime import date
from decimal import Decimal

from kit.log import Recorder

from guard.errors import BrokerUnavailable
from guard.market.calendar import Board
from guard.market.instruments import Instrument
from guard.snapshot.boards import BoardResolver

MON, TUE = date(2026, 11, 23), date(2026, 11, 24)


class Source:
    def __init__(self, fail: bool = False) -> None:
        self.fail = fail
        self.asked: list[date] = []

    async def master_data(self, day: date) -> list[Instrument]:
        self.asked.append(day)
        if self.fail:
            raise BrokerUnavailable("down")
        return [Instrument("SSI", "HSX", Decimal(27000), Decimal(28850), Decimal(25150)),
                Instrument("VN30F2612", "DERIVATIVES"),
                Instrument("ZZZ", "MOON")]


def test_one_read_per_day_with_prices_kept_and_problems_logged() -> None:
    source, log = Source(), Recorder()
    resolver = BoardResolver(source)
    first = asyncio.run(resolver.for_day(MON, {}, log))
    again = asyncio.run(resolver.for_day(MON, {}, log))
    assert again is first and source.asked == [MON]
    assert first["SSI"] is Board.HOSE and first["VN30F2612"] is Board.DER and "ZZZ" not in first
    assert first.instruments["SSI"].ceiling == Decimal(28850)
    assert [p["problem"] for p in log.named("boards.problem")] == [
        "ZZZ: unknown board 'MOON' in master data"]
    asyncio.run(resolver.for_day(TUE, {}, log))
    assert source.asked == [MON, TUE]


def test_unreadable_master_data_leaves_only_the_overrides_and_is_asked_again() -> None:
    source, log = Source(fail=True), Recorder()
    resolver = BoardResolver(source)
    boards = asyncio.run(resolver.for_day(MON, {"SSI": Board.HOSE}, log))
    assert dict(boards) == {"SSI": Board.HOSE} and log.named("boards.read_failed")
    source.fail = False
    assert "VN30F2612" in asyncio.run(resolver.for_day(MON, {}, log))  # not cached
