"""The rule engine: (orders, rules, now, calendar, boards) -> one ``Decision`` per live order.

Pure and deterministic: no clock, no I/O, and the same inputs always give the same decisions in
the same order. A decision records every rule that matched *and* why it is held back, so that a
dry run (or a log line) reads "matched stale-limit-orders, held: HOSE in ATC: cancel banned".

Trigger semantics (also in docs/rules-reference.md):

- ``max_age``: matches when ``now - input_time >= max_age``. ``>=`` so that the instant an
  order becomes stale, ``input_time + max_age``, is itself stale: a half-open ``[t, oo)`` like
  every other window here, which the scheduler can fire at exactly.
- ``before_close``: matches in ``[cutoff - before_close, cutoff)``, where ``cutoff`` is the
  board's last cancel chance that day (14:30 HOSE/HNX/DER, 15:00 UPCoM).
- ``at``: matches in ``[at, at + at_window)`` on trading days; ``at_window`` defaults to 60s,
  so a sweep fired at 11:25:00 and run a few seconds late still matches, and polls during the
  next minute see the same answer.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from fnmatch import fnmatchcase

from guard.clock import EXCHANGE_TZ
from guard.config.durations import format_duration
from guard.config.schema import TERMINAL_STATUSES, Rule, RulesFile
from guard.market.calendar import Board, MarketCalendar
from guard.snapshot.model import BookOrder

__all__ = ["Decision", "Match", "evaluate"]


@dataclass(frozen=True, slots=True)
class Match:
    """A rule that selected an order, and why in words (``age 17m12s >= 15m``)."""

    rule: str
    reason: str


@dataclass(frozen=True, slots=True)
class Decision:
    """What the engine concluded about one order.

    ``held`` is the first reason the order must not be cancelled now, recorded even when no
    rule matched; ``cancel`` is true only when some rule matched and nothing holds it back.
    """

    order: BookOrder
    board: Board | None
    matches: tuple[Match, ...]
    held: str | None

    @property
    def cancel(self) -> bool:
        return bool(self.matches) and self.held is None


def evaluate(
    orders: Iterable[BookOrder],
    rules: RulesFile,
    now: datetime,
    calendar: MarketCalendar,
    boards: Mapping[str, Board],
) -> list[Decision]:
    """Decide, for each order that is not final, which rules match and whether it is held.

    Orders with a terminal status (FF, CL, RJ, EX, FFPC) are left out. The result is sorted by
    (account, input_time, order_id). ``rules.boards`` overrides ``boards``.
    """
    if now.tzinfo is None or now.utcoffset() is None:
        raise ValueError("evaluate needs an aware 'now'")
    live = [o for o in orders if o.status not in TERMINAL_STATUSES]
    live.sort(key=_order_key)
    decisions = []
    for order in live:
        board = _board_of(order.symbol, rules, boards)
        matches = tuple(
            Match(rule.name, reason)
            for rule in rules.rules
            if (reason := _match(rule, order, board, now, calendar)) is not None
        )
        held = _held(order, board, rules, now, calendar)
        decisions.append(Decision(order=order, board=board, matches=matches, held=held))
    return decisions


def _aware(instant: datetime) -> datetime:
    """A naive ``input_time`` breaks the BookOrder contract; read it as exchange time."""
    return instant.replace(tzinfo=EXCHANGE_TZ) if instant.tzinfo is None else instant


def _order_key(order: BookOrder) -> tuple[str, datetime, str]:
    return (order.account, _aware(order.input_time), order.order_id)


def _board_of(symbol: str, rules: RulesFile, boards: Mapping[str, Board]) -> Board | None:
    if symbol in rules.boards:
        return rules.boards[symbol]
    board = boards.get(symbol)
    return Board(board) if board is not None else None


def _protected_prefix(order: BookOrder, rules: RulesFile) -> str | None:
    for prefix in rules.protect.client_request_id_prefixes:
        if order.client_request_id.startswith(prefix):
            return prefix
    return None


def _held(
    order: BookOrder,
    board: Board | None,
    rules: RulesFile,
    now: datetime,
    calendar: MarketCalendar,
) -> str | None:
    """The first reason this order must not be cancelled now (the order is the doc's order)."""
    if order.status == "WC":
        return "status WC already cancelling"
    if order.status not in rules.cancellable:
        return f"status {order.status} not cancellable"
    if order.remaining <= 0:
        return "nothing left to cancel"
    prefix = _protected_prefix(order, rules)
    if prefix is not None:
        return f"protected prefix {prefix}"
    if board is None:
        return f"board unknown for symbol {order.symbol}"
    banned = calendar.why_banned(board, now)
    if banned is not None:
        return banned
    if order.account not in rules.accounts:
        return "account not guarded"
    if order.input_time.tzinfo is None:
        return "input_time has no timezone"
    return None


def _filters_pass(rule: Rule, order: BookOrder, board: Board | None) -> bool:
    """All of the rule's ``match`` filters, ANDed; an absent filter passes."""
    f = rule.match
    if f.accounts is not None and order.account not in f.accounts:
        return False
    if f.boards is not None and (board is None or board not in f.boards):
        return False
    if f.symbols is not None and not any(fnmatchcase(order.symbol, p) for p in f.symbols):
        return False
    if f.sides is not None and order.side not in f.sides:
        return False
    if f.order_types is not None and order.order_type not in f.order_types:
        return False
    if f.statuses is not None and order.status not in f.statuses:
        return False
    if f.partially_filled == "skip" and (order.status == "PF" or order.filled > 0):
        return False
    return order.remaining >= f.min_remaining_qty


def _match(
    rule: Rule,
    order: BookOrder,
    board: Board | None,
    now: datetime,
    calendar: MarketCalendar,
) -> str | None:
    """The reason ``rule`` selects ``order`` at ``now``, or None if it does not."""
    if not _filters_pass(rule, order, board):
        return None
    if rule.max_age is not None:
        if order.input_time.tzinfo is None:
            return None
        age = now - order.input_time
        if age >= rule.max_age:
            return f"age {format_duration(age)} >= {format_duration(rule.max_age)}"
        return None
    local = now.astimezone(EXCHANGE_TZ)
    if rule.before_close is not None:
        if board is None:
            return None
        cutoff = calendar.cancel_cutoff(board, local.date())
        if cutoff is not None and cutoff - rule.before_close <= local < cutoff:
            what = "close" if board is Board.UPCOM else "ATC"
            left = format_duration(cutoff - local)
            return f"{local:%H:%M:%S} is {left} before {board.value} {what}"
        return None
    if rule.at is not None and calendar.is_trading_day(local.date()):
        for at in rule.at:
            start = datetime.combine(local.date(), at, tzinfo=EXCHANGE_TZ)
            if start <= local < start + rule.at_window:
                shown = at.isoformat("seconds" if at.second else "minutes")
                return f"fixed sweep at {shown}"
    return None
