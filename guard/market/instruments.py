"""Instrument reference data: symbol -> board and the day's reference, ceiling and floor prices,
from the broker's master data for one trading day, plus rules.yaml's board overrides.

The board decides the cancel windows, so an order whose board is unknown is held, never guessed.
Pure: the caller fetches master data (and caches one ``BoardMap`` per trading day).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from types import MappingProxyType
from typing import TypeVar, overload

from guard.market.calendar import Board

__all__ = ["BoardMap", "Instrument", "normalise_board"]

_T = TypeVar("_T")

# The names the broker's master data and stream use, and the ones people write.
_ALIASES: dict[str, Board] = {
    "HOSE": Board.HOSE,
    "HSX": Board.HOSE,
    "HNX": Board.HNX,
    "UPCOM": Board.UPCOM,
    "DER": Board.DER,
    "DERIVATIVES": Board.DER,
}


@dataclass(frozen=True, slots=True)
class Instrument:
    """One symbol of the day's master data. ``board`` is the broker's name for it (``HSX``,
    ``DERIVATIVES``, ...: see ``normalise_board``); a price is None when the broker gave none."""

    symbol: str
    board: str
    reference: Decimal | None = None
    ceiling: Decimal | None = None
    floor: Decimal | None = None


def normalise_board(name: str) -> Board | None:
    """``HSX`` -> HOSE, ``DERIVATIVES`` -> DER, ...; None for a name we do not know."""
    return _ALIASES.get(name.strip().upper()) if isinstance(name, str) else None


def _symbol(symbol: str) -> str:
    return symbol.strip().upper()


class BoardMap(Mapping[str, Board]):
    """A read-only symbol -> ``Board`` mapping valid for ``trading_date``.

    Overrides win over master data. Master rows with an unknown board name, or a symbol listed
    on two boards, are left out (so the symbol's orders are held) and kept in ``problems`` for
    the caller to log.
    """

    __slots__ = ("_boards", "instruments", "problems", "trading_date")

    trading_date: date
    problems: tuple[str, ...]

    def __init__(
        self,
        trading_date: date,
        master: Iterable[Instrument | tuple[str, str]] = (),
        overrides: Mapping[str, Board] | None = None,
    ) -> None:
        boards: dict[str, Board] = {}
        conflicted: set[str] = set()
        problems: list[str] = []
        known: dict[str, Instrument] = {}
        for row in master:
            item = row if isinstance(row, Instrument) else Instrument(*row)
            raw_symbol, raw_board = item.symbol, item.board
            symbol = _symbol(raw_symbol)
            board = normalise_board(raw_board)
            if not symbol:
                continue
            if board is None:
                problems.append(f"{symbol}: unknown board {raw_board!r} in master data")
                continue
            if symbol in boards and boards[symbol] is not board:
                problems.append(f"{symbol}: listed on {boards[symbol]} and {board}")
                conflicted.add(symbol)
            boards.setdefault(symbol, board)
            known.setdefault(symbol, item)
        for symbol in conflicted:
            del boards[symbol]
            del known[symbol]
        for symbol, board in (overrides or {}).items():
            boards[_symbol(symbol)] = Board(board)
        self.trading_date = trading_date
        self.problems = tuple(problems)
        # The day's prices per symbol, kept for rules that need them (price bands).
        self.instruments: Mapping[str, Instrument] = MappingProxyType(known)
        self._boards: Mapping[str, Board] = MappingProxyType(boards)

    def __getitem__(self, symbol: str) -> Board:
        return self._boards[_symbol(symbol)]

    @overload
    def get(self, symbol: str, /) -> Board | None: ...

    @overload
    def get(self, symbol: str, /, default: Board | _T) -> Board | _T: ...

    def get(self, symbol: str, /, default: object = None) -> object:
        """``Mapping.get``, without its exception round trip: asked once per symbol per sweep."""
        board = self._boards.get(symbol)
        if board is None and isinstance(symbol, str):
            board = self._boards.get(_symbol(symbol))
        return default if board is None else board

    def __contains__(self, symbol: object) -> bool:
        return isinstance(symbol, str) and _symbol(symbol) in self._boards

    def __iter__(self) -> Iterator[str]:
        return iter(self._boards)

    def __len__(self) -> int:
        return len(self._boards)

    def __repr__(self) -> str:
        return f"BoardMap({self.trading_date.isoformat()}, {len(self)} symbols)"
