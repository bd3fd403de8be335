"""Rules compiled against one (now, calendar, boards): every answer no single order can change.

A book holds thousands of orders but only a few accounts, symbols, sides, types and statuses,
and whether a ``before_close`` or ``at`` window is open depends on the board at most. So each
filter and trigger is answered once per distinct value, as a bitmask over the rules (bit ``i``
is ``rules.rules[i]``); per order, the engine ANDs a few masks and finds its age among the
``max_age`` cutoffs with one ``bisect``.

Built per ``evaluate`` call and never kept: it depends on ``now``, the calendar and the board
map, so a cache across calls could only go stale (and would make a benchmark time a cache).
The semantics are the engine's (see ``guard.evaluate.engine``); this module only reorders the
work. The calendar is asked once per board instead of once per order, which is the same
answer because it is pure.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import UTC, datetime
from fnmatch import translate
from typing import TypeVar

from guard.clock import EXCHANGE_TZ
from guard.config.durations import format_duration
from guard.config.schema import Rule, RulesFile
from guard.market.calendar import Board, MarketCalendar

__all__ = ["CompiledRules", "Memo"]

K = TypeVar("K")
V = TypeVar("V")


class Memo(dict[K, V]):
    """A dict that computes a missing value once, so a hit is a single C-level ``memo[key]``."""

    __slots__ = ("_compute",)

    def __init__(self, compute: Callable[[K], V], known: Mapping[K, V] | None = None) -> None:
        super().__init__(known or {})
        self._compute = compute

    def __missing__(self, key: K) -> V:
        value = self[key] = self._compute(key)
        return value


def _value_masks(filters: Sequence[tuple[str, ...] | None]) -> Memo[str, int]:
    """Value -> the rules whose filter on it passes (a value no rule lists passes the rules
    without that filter)."""
    other = _mask(f is None for f in filters)
    named = {value for f in filters if f is not None for value in f}
    masks = {v: other | _mask(f is not None and v in f for f in filters) for v in named}
    return Memo(lambda _value: other, masks)


def _mask(flags: Iterable[bool]) -> int:
    """Bit ``i`` set where the ``i``-th flag is true."""
    mask = 0
    for i, flag in enumerate(flags):
        if flag:
            mask |= 1 << i
    return mask


class CompiledRules:
    """One ``RulesFile`` answered for one instant: filter masks, trigger masks and hold texts.

    Per order the engine looks up (each a ``Memo``, filled once per distinct value):
    ``symbol_facts`` (board, rule mask, board hold), the value masks ``accounts``, ``sides``,
    ``order_types`` and ``statuses``, ``qty`` when what is left is under ``qty_top``, and
    ``status_holds``; then ``keep_partial`` for a partly filled order and ``fired`` for its age.
    ``trigger_reason`` gives the order-independent reasons that ``wording`` words verdicts with.
    """

    __slots__ = (
        "_board_facts", "_boards", "_calendar", "_globs", "_local", "_no_globs", "_now",
        "_overrides", "_reasons", "accounts", "cutoffs", "fired", "guarded", "keep_partial",
        "order_types", "prefixes", "qty", "qty_top", "rules", "sides", "status_holds", "statuses",
    )

    def __init__(
        self,
        rules: RulesFile,
        now: datetime,
        calendar: MarketCalendar,
        boards: Mapping[str, Board],
    ) -> None:
        self.rules: tuple[Rule, ...] = rules.rules
        self._now = now
        self._local = now.astimezone(EXCHANGE_TZ)
        self._calendar = calendar
        self._boards = boards
        self._overrides = rules.boards
        self.guarded = frozenset(rules.accounts)
        self.prefixes = tuple(rules.protect.client_request_id_prefixes)
        cancellable = frozenset(rules.cancellable)
        # status -> the hold it imposes alone (the first two checks of the hold order)
        self.status_holds: Memo[str, str | None] = Memo(
            lambda status: _status_hold(status, cancellable))

        filters = [r.match for r in self.rules]
        self.accounts = _value_masks([f.accounts for f in filters])
        self.sides = _value_masks([f.sides for f in filters])
        self.order_types = _value_masks([f.order_types for f in filters])
        self.statuses = _value_masks([f.statuses for f in filters])
        self.keep_partial = _mask(f.partially_filled != "skip" for f in filters)
        self.qty_top = max((f.min_remaining_qty for f in filters), default=0)
        # what is left (quantity - filled - cancelled) -> rules whose min_remaining_qty it meets
        minimums = [f.min_remaining_qty for f in filters]  # not self: no cycle to keep alive
        self.qty: Memo[int, int] = Memo(lambda left: _mask(max(0, left) >= m for m in minimums))

        self._no_globs = _mask(f.symbols is None for f in filters)
        # One regex per rule for all its globs: ``fnmatchcase`` semantics, one C call a symbol.
        self._globs = [(1 << i, re.compile("|".join(map(translate, f.symbols))).match)
                       for i, f in enumerate(filters) if f.symbols is not None]
        # The order-independent reasons: at rules now, before_close rules per board (lazily).
        self._reasons: dict[tuple[int, Board | None], str] = {}
        trading_day = calendar.is_trading_day(self._local.date())
        for i, rule in enumerate(self.rules):
            if rule.at is not None and trading_day:
                reason = _at_reason(rule, self._local)
                if reason is not None:
                    self._reasons[i, None] = reason
        self._board_facts: dict[Board | None, tuple[int, str | None]] = {}

        # max_age: an order matches when the time elapsed since input_time is at least max_age,
        # i.e. input_time <= now - max_age. ``cutoffs`` holds those instants ascending;
        # ``fired[bisect_left(cutoffs, input_time)]`` is every rule except the max_age ones the
        # order is too young for (whose cutoff is before its input_time). A cutoff is computed
        # in UTC, so a clock change in now's zone cannot shift it, then shown in exchange time,
        # the zone of every broker input_time, so comparing them is a plain field compare. That
        # is exact while no clock change of Asia/Ho_Chi_Minh lies between them: none since
        # 1975, and a cutoff is at most the 366 days rules.yaml allows before now.
        aged: list[tuple[datetime, int]] = []
        now_utc = now.astimezone(UTC)
        for i, rule in enumerate(self.rules):
            if rule.max_age is not None:
                try:
                    aged.append(((now_utc - rule.max_age).astimezone(EXCHANGE_TZ), i))
                except OverflowError:  # older than any datetime: no order can be that old
                    continue
        aged.sort()
        self.cutoffs = [cutoff for cutoff, _ in aged]
        fired = _mask(r.max_age is None for r in self.rules)
        self.fired = [fired]
        for _, i in reversed(aged):
            fired |= 1 << i
            self.fired.append(fired)
        self.fired.reverse()

    # ---- per symbol ------------------------------------------------------------------------

    def symbol_facts(self, symbol: str) -> tuple[Board | None, int, str | None]:
        """The symbol's board, the rules its board/symbol filters and triggers let through,
        and the hold its board imposes now (unknown board, or the calendar's ban)."""
        if symbol in self._overrides:
            board: Board | None = self._overrides[symbol]
        else:
            raw = self._boards.get(symbol)
            board = raw if raw is None or isinstance(raw, Board) else Board(raw)
        board_mask, banned = self._facts_of_board(board)
        globs = self._no_globs
        for bit, match in self._globs:
            if match(symbol):
                globs |= bit
        held = f"board unknown for symbol {symbol}" if board is None else banned
        return board, board_mask & globs, held

    def _facts_of_board(self, board: Board | None) -> tuple[int, str | None]:
        """Rules whose board filter passes and whose trigger can fire on ``board`` now; the ban."""
        facts = self._board_facts.get(board)
        if facts is None:
            mask = 0
            for i, rule in enumerate(self.rules):
                allowed = rule.match.boards
                if allowed is not None and (board is None or board not in allowed):
                    continue
                if rule.max_age is not None or (i, None) in self._reasons:
                    mask |= 1 << i
                elif rule.before_close is not None and board is not None:
                    reason = _before_close_reason(rule, board, self._local, self._calendar)
                    if reason is not None:
                        self._reasons[i, board] = reason
                        mask |= 1 << i
            banned = None if board is None else self._calendar.why_banned(board, self._now)
            facts = self._board_facts[board] = (mask, banned)
        return facts

    def trigger_reason(self, index: int, board: Board | None) -> str | None:
        """Why rule ``index`` (before_close or at) fires on ``board`` now; None if it does not."""
        at = self._reasons.get((index, None))
        if at is not None:
            return at
        if board not in self._board_facts:
            self._facts_of_board(board)  # fills the board's before_close reasons
        return self._reasons.get((index, board))

    # ---- per order value -------------------------------------------------------------------

    def protected(self, client_request_id: str) -> str | None:
        """``protected prefix P`` for the first listed prefix the id starts with."""
        for prefix in self.prefixes:
            if client_request_id.startswith(prefix):
                return f"protected prefix {prefix}"
        return None


def _status_hold(status: str, cancellable: frozenset[str]) -> str | None:
    """The hold a status alone imposes: WC is already being cancelled; others must be listed."""
    if status == "WC":
        return "status WC already cancelling"
    if status not in cancellable:
        return f"status {status} not cancellable"
    return None


def _before_close_reason(
    rule: Rule, board: Board, local: datetime, calendar: MarketCalendar
) -> str | None:
    """``14:25:00 is 5m before HOSE ATC`` when ``local`` is in the rule's window on ``board``."""
    assert rule.before_close is not None
    cutoff = calendar.cancel_cutoff(board, local.date())
    if cutoff is not None and cutoff - rule.before_close <= local < cutoff:
        what = "close" if board is Board.UPCOM else "ATC"
        left = format_duration(cutoff - local)
        return f"{local:%H:%M:%S} is {left} before {board.value} {what}"
    return None


def _at_reason(rule: Rule, local: datetime) -> str | None:
    """On a trading day (checked by the caller): the first ``at`` whose window holds ``local``."""
    for at in rule.at or ():
        start = datetime.combine(local.date(), at, tzinfo=EXCHANGE_TZ)
        if start <= local < start + rule.at_window:
            shown = at.isoformat("seconds" if at.second else "minutes")
            return f"fixed sweep at {shown}"
    return None
