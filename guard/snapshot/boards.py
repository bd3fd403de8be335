"""Symbol -> board, from the broker's master data, fetched once per trading day."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date

from guard.broker.ports import InstrumentSource
from guard.errors import BrokerError
from guard.market.calendar import Board
from guard.market.instruments import BoardMap
from guard.record.log import Log

__all__ = ["BoardResolver"]


class BoardResolver:
    """Caches one ``BoardMap`` per trading day. If master data cannot be read, only the
    rules.yaml overrides are known, and orders of other symbols are held (never cancelled)."""

    def __init__(self, broker: InstrumentSource) -> None:
        self._broker = broker
        self._cached: BoardMap | None = None

    async def for_day(self, day: date, overrides: Mapping[str, Board], log: Log) -> BoardMap:
        if self._cached is not None and self._cached.trading_date == day:
            return self._cached
        try:
            master = await self._broker.master_data(day)
        except BrokerError as exc:
            log.error("boards.read_failed", error=str(exc))
            return BoardMap(day, (), overrides)
        boards = BoardMap(day, master, overrides)
        for problem in boards.problems:
            log.warning("boards.problem", problem=problem)
        self._cached = boards
        return boards
