"""Temporary: the value types now live in ``guard.model`` (removed once the adapter moves)."""

from guard.model import AccountSnapshot, BookOrder, CashFigures

__all__ = ["AccountSnapshot", "BookOrder", "CashFigures"]
