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
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from datetime import datetime, timedelta
from fnmatch import translate
from typing import TYPE_CHECKING, TypeVar

from guard.clock import EXCHANGE_TZ
from guard.config.durations import format_duration
from guard.config.schema import Rule, RulesFile
from guard.evaluate.decision import Match
from guard.market.calendar import Board, MarketCalendar

if TYPE_CHECKING:
    from guard.snapshot.model import BookOrder

__all__ = ["CompiledRules", "Memo", "age_text"]

K = TypeVar("K")
V = TypeVar("V")

_INT_SECONDS = 2**31  # below this, int(td.total_seconds()) == td.days * 86400 + td.seconds


def age_text(age: timedelta) -> str:
    """``format_duration(age)``, by integer arithmetic where that is provably the same text.

    Called for every order some ``max_age`` rule matches, so it skips ``format_duration``'s
    float and generator. Below 2**31 s a float keeps sub-second parts far finer than the gap to
    the next whole second, so truncating ``total_seconds()`` gives exactly days * 86400 +
    seconds; anything else (a sub-second age, an absurd one) takes the general path.
    """
    seconds = age.days * 86_400 + age.seconds
    if not 0 < seconds < _INT_SECONDS:
        return format_duration(age)
    hours, rest = divmod(seconds, 3600)
    minutes, seconds = divmod(rest, 60)
    text = f"{hours}h" if hours else ""
    if minutes:
        text += f"{minutes}m"
    if seconds:
        text += f"{seconds}s"
    return text


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
    It is also the ``Wording`` of the verdicts: ``names``, ``matches`` and ``text``.
    """

    __slots__ = (
        "_age_suffix", "_board_facts", "_boards", "_calendar", "_globs", "_local", "_names",
        "_no_globs", "_now", "_overrides", "_reasons", "_templates", "accounts", "cutoffs",
        "fired", "guarded", "keep_partial", "order_types", "prefixes", "qty", "qty_top", "rules",
        "sides", "status_holds", "statuses",
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

        # max_age: an order matches when now - input_time >= max_age, i.e. input_time <= now -
        # max_age. ``cutoffs`` holds those instants ascending; ``fired[bisect_left(cutoffs,
        # input_time)]`` is every rule except the max_age ones the order is too young for
        # (whose cutoff is before its input_time).
        aged = sorted((now - r.max_age, i) for i, r in enumerate(self.rules)
                      if r.max_age is not None)
        self.cutoffs = [cutoff for cutoff, _ in aged]
        fired = _mask(r.max_age is None for r in self.rules)
        self.fired = [fired]
        for _, i in reversed(aged):
            fired |= 1 << i
            self.fired.append(fired)
        self.fired.reverse()
        self._age_suffix = {i: f" >= {age_text(r.max_age)}" for i, r in enumerate(self.rules)
                            if r.max_age is not None}
        self._names: dict[int, tuple[str, ...]] = {0: ()}
        self._templates: dict[tuple[int, Board | None], tuple[str, bool]] = {}

    # ---- per symbol ------------------------------------------------------------------------

    def symbol_facts(self, symbol: str) -> tuple[Board | None, int, str | None]:
        """The symbol's board, the rules its board/symbol filters and triggers let through,
        and the hold its board imposes now (unknown board, or the calendar's ban)."""
        if symbol in self._overrides:
            board: Board | None = self._overrides[symbol]
        else:
            raw = self._boards.get(symbol)
            board = raw if raw is None or isinstance(raw, Board) else Board(raw)
        board_mask, banned = self._board_facts.get(board) or self._facts_of_board(board)
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
        """Why rule ``index`` (before_close or at) fires on ``board`` now; None if it does not.

        Complete for ``board`` once ``symbol_facts`` has seen one of its symbols.
        """
        at = self._reasons.get((index, None))
        return at if at is not None else self._reasons.get((index, board))

    # ---- per order value -------------------------------------------------------------------

    def protected(self, client_request_id: str) -> str | None:
        """``protected prefix P`` for the first listed prefix the id starts with."""
        for prefix in self.prefixes:
            if client_request_id.startswith(prefix):
                return f"protected prefix {prefix}"
        return None


    # ---- wording a verdict (only when asked) ------------------------------------------------

    def names(self, mask: int) -> tuple[str, ...]:
        """The names of the rules in ``mask``, in rule order."""
        names = self._names.get(mask)
        if names is None:
            names = self._names[mask] = tuple(self.rules[i].name for i in _bits(mask))
        return names

    def matches(self, mask: int, order: BookOrder, board: Board | None) -> tuple[Match, ...]:
        """Each rule in ``mask`` with why it selected ``order`` (on ``board``) at ``now``."""
        out = []
        head = ""
        for i in _bits(mask):
            suffix = self._age_suffix.get(i)
            if suffix is None:
                reason = self.trigger_reason(i, board)
                assert reason is not None, "a verdict only holds rules that fired"
            else:
                head = head or "age " + age_text(self._now - order.input_time)
                reason = head + suffix
            out.append(Match(self.rules[i].name, reason))
        return tuple(out)

    def text(self, mask: int, order: BookOrder, board: Board | None) -> str:
        """``"; ".join`` of the reasons ``matches`` gives, from one template per (mask, board)
        with the order's age as its one blank: what a sweep writes for every decision."""
        template = self._templates.get((mask, board))
        if template is None:
            template = self._templates[mask, board] = self._template(mask, board)
        text, aged = template
        return text.format("age " + age_text(self._now - order.input_time) if aged else "")

    def _template(self, mask: int, board: Board | None) -> tuple[str, bool]:
        """The reasons joined for ``str.format``: ``{0}`` where the age goes, braces escaped."""
        parts = []
        for i in _bits(mask):
            suffix = self._age_suffix.get(i)
            if suffix is None:
                reason = self.trigger_reason(i, board)
                assert reason is not None, "a verdict only holds rules that fired"
                parts.append(_escaped(reason))
            else:
                parts.append("{0}" + _escaped(suffix))
        return "; ".join(parts), any(i in self._age_suffix for i in _bits(mask))


def _escaped(text: str) -> str:
    return text.replace("{", "{{").replace("}", "}}")


def _bits(mask: int) -> Iterator[int]:
    """The indexes of the set bits, lowest (first rule) first."""
    while mask:
        low = mask & -mask
        mask ^= low
        yield low.bit_length() - 1


def _status_hold(status: str, cancellable: frozenset[str]) -> str | None:
    if status == "WC":
        return "status WC already cancelling"
    if status not in cancellable:
        return f"status {status} not cancellable"
    return None


def _before_close_reason(
    rule: Rule, board: Board, local: datetime, calendar: MarketCalendar
) -> str | None:
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
