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

How it is fast (the semantics above are all that matters; this is only how they are computed):
``_compiled.CompiledRules`` answers every filter and window once per distinct account, symbol,
side, type and status as a bitmask over the rules, so per order the engine ANDs a few masks,
looks up the ``_Plan`` for the rules left (cached per board and mask, with its constant
``Match`` objects built once and shared), and only formats an age for ``max_age`` rules that
fire. ``tests/test_engine_equivalence.py`` holds this to a plain rule-by-rule reading.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from operator import attrgetter
from typing import NamedTuple

from guard.clock import EXCHANGE_TZ
from guard.config.schema import TERMINAL_STATUSES, RulesFile
from guard.evaluate._compiled import CompiledRules, age_text
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


_AgeStep = tuple[timedelta, str, str]  # (max_age, rule name, " >= 15m")
_Step = Match | _AgeStep  # a constant rule's shared Match, or an age rule to check


class _Plan(NamedTuple):
    """What the rules an order's filters left (one mask, on one board) make of it.

    ``constant``: the matches when no ``max_age`` rule fires (or none is left). ``steps``: None
    when no ``max_age`` rule is left, else every rule left, in rule order. ``youngest``: the
    smallest ``max_age`` left; an order younger than that needs no look at ``steps``.
    """

    constant: tuple[Match, ...]
    steps: tuple[_Step, ...] | None
    youngest: timedelta


class _Plans(dict[int, _Plan]):
    """One board's plans by rule mask, each built on first use from per-rule steps made once."""

    def __init__(self, compiled: CompiledRules, board: Board | None) -> None:
        super().__init__()
        self._steps: list[_Step | None] = []  # None: the rule cannot fire on this board now
        for i, rule in enumerate(compiled.rules):
            if rule.max_age is not None:
                self._steps.append((rule.max_age, rule.name, f" >= {age_text(rule.max_age)}"))
            else:
                reason = compiled.reason(i, board)
                self._steps.append(None if reason is None else Match(rule.name, reason))

    def __missing__(self, mask: int) -> _Plan:
        steps: list[_Step] = []
        constant: list[Match] = []
        youngest = timedelta.max
        rest = mask
        while rest:  # the set bits, lowest (first rule) first
            low = rest & -rest
            rest ^= low
            step = self._steps[low.bit_length() - 1]
            assert step is not None, "a board's masks only hold rules that can fire on it"
            steps.append(step)
            if isinstance(step, Match):
                constant.append(step)
            elif step[0] < youngest:
                youngest = step[0]
        has_ages = len(steps) > len(constant)
        plan = self[mask] = _Plan(tuple(constant), tuple(steps) if has_ages else None, youngest)
        return plan


_SymbolFacts = tuple[Board | None, int, str | None, _Plans]


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
    live = _sorted_live(orders)
    if not live:
        return []
    compiled = CompiledRules(rules, now, calendar, boards)
    plans_by_board: dict[Board | None, _Plans] = {}
    symbols: dict[str, _SymbolFacts] = {}

    def facts_of(symbol: str) -> _SymbolFacts:
        """What the symbol alone decides: board, rule mask, board hold, the board's plans."""
        board, mask, held = compiled.symbol_facts(symbol)
        plans = plans_by_board.get(board)
        if plans is None:
            plans = plans_by_board[board] = _Plans(compiled, board)
        facts = symbols[symbol] = (board, mask, held, plans)
        return facts

    # Hoisted for the loop: it runs once per order, everything else once per distinct value.
    accounts, accounts_other = compiled.accounts, compiled.accounts_other
    sides, sides_other = compiled.sides, compiled.sides_other
    types, types_other = compiled.order_types, compiled.order_types_other
    statuses, statuses_other = compiled.statuses, compiled.statuses_other
    keep_partial, qty_top = compiled.keep_partial, compiled.qty_top
    qty, qty_mask = compiled.qty, compiled.qty_mask
    status_holds, status_hold = compiled.status_holds, compiled.status_hold
    prefixes, protected = compiled.prefixes, compiled.protected
    guarded = compiled.guarded
    decisions: list[Decision] = []
    append = decisions.append
    for order in live:
        board, mask, board_held, plans = symbols.get(order.symbol) or facts_of(order.symbol)
        status = order.status
        filled = order.filled
        left = order.quantity - filled - order.cancelled  # ``remaining`` before its max(0, .)
        matches: tuple[Match, ...] = ()
        if mask:
            mask &= (
                accounts.get(order.account, accounts_other)
                & sides.get(order.side, sides_other)
                & types.get(order.order_type, types_other)
                & statuses.get(status, statuses_other)
            )
            if mask and (status == "PF" or filled > 0):
                mask &= keep_partial
            if mask and left < qty_top:
                mask &= qty.get(left) or qty_mask(left)
            if mask:
                matches, steps, youngest = plans[mask]
                if steps is not None and order.input_time.tzinfo is not None:
                    age = now - order.input_time
                    if age >= youngest:
                        matches = _with_ages(steps, age)
        held = status_holds[status] if status in status_holds else status_hold(status)
        if held is None:
            if left <= 0:
                held = "nothing left to cancel"
            elif order.client_request_id.startswith(prefixes):
                held = protected(order.client_request_id)
            elif board_held is not None:
                held = board_held
            elif order.account not in guarded:
                held = "account not guarded"
            elif order.input_time.tzinfo is None:
                held = "input_time has no timezone"
        append(Decision(order, board, matches, held))
    return decisions


def _with_ages(steps: tuple[_Step, ...], age: timedelta) -> tuple[Match, ...]:
    """The matches of one order whose age some ``max_age`` rule may reach, in rule order."""
    out: list[Match] = []
    head = ""
    for step in steps:
        if isinstance(step, Match):
            out.append(step)
        elif age >= step[0]:
            if not head:
                head = "age " + age_text(age)
            out.append(Match(step[1], head + step[2]))
    return tuple(out)


_BY_KEY: Callable[[BookOrder], tuple[str, datetime, str]] = attrgetter(
    "account", "input_time", "order_id"
)


def _sorted_live(orders: Iterable[BookOrder]) -> list[BookOrder]:
    """Non-terminal orders by (account, input_time, order_id), stable.

    The C-level key is the same order as ``_order_key`` unless a naive ``input_time`` meets an
    aware one, which raises; then (on the untouched list) the careful key runs instead.
    """
    live = [o for o in orders if o.status not in TERMINAL_STATUSES]
    try:
        return sorted(live, key=_BY_KEY)
    except TypeError:
        return sorted(live, key=_order_key)


def _aware(instant: datetime) -> datetime:
    """A naive ``input_time`` breaks the BookOrder contract; read it as exchange time."""
    return instant.replace(tzinfo=EXCHANGE_TZ) if instant.tzinfo is None else instant


def _order_key(order: BookOrder) -> tuple[str, datetime, str]:
    return (order.account, _aware(order.input_time), order.order_id)
