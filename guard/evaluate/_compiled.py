"""Rules compiled against one (now, calendar, boards): every answer no single order can change.

A book holds thousands of orders but only a few accounts, symbols, sides, types and statuses,
and whether a ``BookTrigger`` (``before_close``, ``at``) fires depends on the board at most.
So each filter and trigger is answered once per distinct value, as a bitmask over the rules
(bit ``i`` is ``rules.rules[i]``); per order, the engine ANDs a few masks and finds its
``input_time`` among the ``OrderTrigger`` (``max_age``) cutoffs with one ``bisect``. Which
trigger is which comes from the table in ``guard.evaluate.kinds``; a kind that is neither is
refused here too, never left to match nothing.

Built per ``evaluate`` call and never kept: it depends on ``now``, the calendar and the board
map, so a cache across calls could only go stale (and would make a benchmark time a cache).
The semantics are the engine's (see ``guard.evaluate.engine``); this module only reorders the
work. The calendar is asked once per board instead of once per order, which is the same
answer because it is pure.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import datetime
from fnmatch import translate
from typing import Final, TypeVar

from guard.clock import EXCHANGE_TZ
from guard.config.schema import Rule, RulesFile
from guard.evaluate.kinds import BookTrigger, OrderTrigger, kind_of
from guard.market.calendar import Board, MarketCalendar
from guard.model import Hold, HoldKind

__all__ = ["NOTHING_LEFT", "NOT_GUARDED", "NO_TIMEZONE", "CompiledRules", "Memo"]

# The holds that name no value: one shared ``Hold`` each.
NOTHING_LEFT: Final = Hold("nothing left to cancel", HoldKind.NOTHING_LEFT)
NOT_GUARDED: Final = Hold("account not guarded", HoldKind.ACCOUNT_NOT_GUARDED)
NO_TIMEZONE: Final = Hold("input_time has no timezone", HoldKind.OTHER)

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
    ``trigger_reason`` gives the ``BookTrigger`` reasons that ``wording`` words verdicts with.
    Every hold is a ``Hold``: its text and its ``HoldKind``.
    """

    __slots__ = (
        "_board_facts",
        "_boards",
        "_book",
        "_calendar",
        "_globs",
        "_local",
        "_no_globs",
        "_now",
        "_overrides",
        "_per_order",
        "_reasons",
        "_signals",
        "accounts",
        "crids",
        "cutoffs",
        "fired",
        "guarded",
        "keep_partial",
        "order_types",
        "prefixes",
        "qty",
        "qty_top",
        "rules",
        "sides",
        "status_holds",
        "statuses",
    )

    def __init__(
        self,
        rules: RulesFile,
        now: datetime,
        calendar: MarketCalendar,
        boards: Mapping[str, Board],
        signals: Mapping[str, str],
    ) -> None:
        self.rules: tuple[Rule, ...] = rules.rules
        self._signals = signals
        self._now = now
        self._local = now.astimezone(EXCHANGE_TZ)
        self._calendar = calendar
        self._boards = boards
        self._overrides = rules.boards
        self.guarded = frozenset(rules.accounts)
        self.prefixes = tuple(rules.protect.client_request_id_prefixes)
        cancellable = frozenset(rules.cancellable)
        # status -> the hold it imposes alone (the first two checks of the hold order)
        self.status_holds: Memo[str, Hold | None] = Memo(
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

        # client_request_id -> rules whose ``client_request_ids`` globs pass it (None: no rule
        # filters on it, so the engine skips the lookup; ids are mostly unique per order).
        crid_globs = [(1 << i, re.compile("|".join(map(translate, f.client_request_ids))).match)
                      for i, f in enumerate(filters) if f.client_request_ids is not None]
        crid_free = _mask(f.client_request_ids is None for f in filters)
        self.crids: Memo[str, int] | None = None
        if crid_globs:
            self.crids = Memo(lambda crid: crid_free | _mask_of(crid, crid_globs))

        self._no_globs = _mask(f.symbols is None for f in filters)
        # One regex per rule for all its globs: ``fnmatchcase`` semantics, one C call a symbol.
        self._globs = [(1 << i, re.compile("|".join(map(translate, f.symbols))).match)
                       for i, f in enumerate(filters) if f.symbols is not None]
        # Each rule's trigger, by the kinds table: OrderTrigger rules are decided per order by
        # their cutoffs, BookTrigger rules per board by their reasons (kept for the wording).
        self._book: list[tuple[int, BookTrigger]] = []
        self._per_order = 0
        self._reasons: dict[tuple[int, Board | None], str] = {}
        self._board_facts: dict[Board | None, tuple[int, Hold | None]] = {}

        # An OrderTrigger rule fires for an order whose input_time is at or before its cutoff.
        # ``cutoffs`` holds those instants ascending; ``fired[bisect_left(cutoffs, input_time)]``
        # is every rule except the OrderTrigger ones whose cutoff is before the input_time.
        # Cutoffs are in exchange time, like every broker input_time (see ``kinds.MaxAge``).
        aged: list[tuple[datetime, int]] = []
        for i, rule in enumerate(self.rules):
            kind = kind_of(rule)
            if isinstance(kind, OrderTrigger):
                self._per_order |= 1 << i
                cutoff = kind.cutoff(rule, now)
                if cutoff is not None:  # None: no order can fire
                    aged.append((cutoff, i))
            elif isinstance(kind, BookTrigger):
                self._book.append((i, kind))
            else:  # register() refuses these; a kind made some other way must not match nothing
                raise TypeError(f"rule {rule.name!r}: trigger kind {type(kind).__name__} has no "
                                "compile support")
        aged.sort()
        self.cutoffs = [cutoff for cutoff, _ in aged]
        fired = ~self._per_order & ((1 << len(self.rules)) - 1)
        self.fired = [fired]
        for _, i in reversed(aged):
            fired |= 1 << i
            self.fired.append(fired)
        self.fired.reverse()

    # ---- per symbol ------------------------------------------------------------------------

    def symbol_facts(self, symbol: str) -> tuple[Board | None, int, Hold | None]:
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
        held = (Hold(f"board unknown for symbol {symbol}", HoldKind.BOARD_UNKNOWN)
                if board is None else banned)
        return board, board_mask & globs, held

    def _facts_of_board(self, board: Board | None) -> tuple[int, Hold | None]:
        """Rules whose board filter passes and whose trigger can fire on ``board`` now; the ban.

        An OrderTrigger rule can fire on any board (its order decides); a BookTrigger rule
        fires when its kind gives a reason, which is kept for the wording.
        """
        facts = self._board_facts.get(board)
        if facts is None:
            mask = 0
            for i, rule in enumerate(self.rules):
                allowed = rule.match.boards
                if allowed is None or (board is not None and board in allowed):
                    mask |= self._per_order & 1 << i
            for i, kind in self._book:
                allowed = self.rules[i].match.boards
                if allowed is not None and (board is None or board not in allowed):
                    continue
                reason = kind.reason(self.rules[i], self._local, self._calendar, board,
                                     self._signals)
                if reason is not None:
                    self._reasons[i, board] = reason
                    mask |= 1 << i
            banned = None if board is None else self._calendar.why_banned(board, self._now)
            facts = self._board_facts[board] = (
                mask, None if banned is None else Hold(banned, HoldKind.BANNED_WINDOW))
        return facts

    def trigger_reason(self, index: int, board: Board | None) -> str | None:
        """Why BookTrigger rule ``index`` fires on ``board`` now; None if it does not."""
        if board not in self._board_facts:
            self._facts_of_board(board)  # fills the board's reasons
        return self._reasons.get((index, board))

    # ---- per order value -------------------------------------------------------------------

    def protected(self, client_request_id: str) -> Hold | None:
        """``protected prefix P`` for the first listed prefix the id starts with."""
        for prefix in self.prefixes:
            if client_request_id.startswith(prefix):
                return Hold(f"protected prefix {prefix}", HoldKind.PROTECTED)
        return None


def _mask_of(value: str, globs: Sequence[tuple[int, Callable[[str], object]]]) -> int:
    mask = 0
    for bit, match in globs:
        if match(value):
            mask |= bit
    return mask


def _status_hold(status: str, cancellable: frozenset[str]) -> Hold | None:
    """The hold a status alone imposes: WC is already being cancelled; others must be listed."""
    if status == "WC":
        return Hold("status WC already cancelling", HoldKind.ALREADY_CANCELLING)
    if status not in cancellable:
        return Hold(f"status {status} not cancellable", HoldKind.NOT_CANCELLABLE)
    return None
