"""The rule engine: (orders, rules, now, calendar, boards) -> one ``Decision`` per live order.

Pure and deterministic: no clock, no I/O, and the same inputs always give the same decisions in
the same order. A decision records every rule that matched *and* why it is held back, so that a
dry run (or a log line) reads "matched stale-limit-orders, held: HOSE in ATC: cancel banned".

Each trigger kind (``max_age``, ``before_close``, ``at``, ``heartbeat``) is one class in
``guard.evaluate.kinds``, which owns its semantics (also in docs/rules-reference.md), its check
and its wording; this module applies the filters and the holds, which are the same for every
kind. Each hold is a ``Hold``: its text and its ``HoldKind`` (what metrics count).

Everything is decided when ``evaluate`` returns; only the wording of the reasons waits until it
is read (see ``guard.evaluate.wording``).

How it is fast (the semantics above are all that matters; this is only how they are computed):
``_compiled.CompiledRules`` answers every filter and window once per distinct account, symbol,
side, type and status as a bitmask over the rules, and turns each per-order trigger
(``max_age``) into an ``input_time`` cutoff for this ``now``. Per order the engine ANDs a few
masks, one ``bisect`` among the cutoffs gives the rules old enough, and the result picks the
shared ``Verdict``.
``tests/evaluate/test_engine_equivalence.py`` holds this to a plain rule-by-rule reading.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Iterable, Mapping
from datetime import datetime
from operator import attrgetter

from guard.clock import EXCHANGE_TZ
from guard.config.schema import RulesFile
from guard.evaluate._compiled import NO_TIMEZONE, NOT_GUARDED, NOTHING_LEFT, CompiledRules, Memo
from guard.evaluate.wording import RuleWording
from guard.market.calendar import Board, MarketCalendar
from guard.model import TERMINAL_STATUSES, BookOrder, Decision, Hold, HoldKind, Match, Verdict

__all__ = ["Decision", "Hold", "HoldKind", "Match", "Verdict", "evaluate"]


def evaluate(
    orders: Iterable[BookOrder],
    rules: RulesFile,
    now: datetime,
    calendar: MarketCalendar,
    boards: Mapping[str, Board],
    signals: Mapping[str, str] | None = None,
) -> list[Decision]:
    """Decide, for each order that is not final, which rules match and whether it is held.

    Orders with a terminal status (FF, CL, RJ, EX, FFPC) are left out. The result is sorted by
    (account, input_time, order_id). ``rules.boards`` overrides ``boards``. ``signals`` names
    the heartbeat rules that are stale now, with why (measured at the edge).
    """
    if now.tzinfo is None or now.utcoffset() is None:
        raise ValueError("evaluate needs an aware 'now'")
    live = _sorted_live(orders)
    if not live:
        return []
    compiled = CompiledRules(rules, now, calendar, boards, signals or {})
    wording = RuleWording(compiled.rules, compiled.trigger_reason, now)
    verdicts: Memo[int, Verdict] = Memo(lambda mask: Verdict(mask, wording))  # shared

    # Hoisted for the loop: it runs once per order, everything else once per distinct value.
    symbols = Memo(compiled.symbol_facts)
    accounts, sides = compiled.accounts, compiled.sides
    types, statuses, status_holds = compiled.order_types, compiled.statuses, compiled.status_holds
    keep_partial, qty_top, qty = compiled.keep_partial, compiled.qty_top, compiled.qty
    prefixes, protected = compiled.prefixes, compiled.protected
    guarded = compiled.guarded
    crids = compiled.crids
    cutoffs, fired, fired_naive = compiled.cutoffs, compiled.fired, compiled.fired[-1]
    no_match = verdicts[0]
    new = tuple.__new__  # Decision's own __new__ without a Python call per order
    decisions: list[Decision] = []
    append = decisions.append
    for order in live:
        board, mask, board_held = symbols[order.symbol]
        status = order.status
        filled = order.filled
        left = order.quantity - filled - order.cancelled  # ``remaining`` before its max(0, .)
        verdict = no_match
        if mask:
            mask &= (
                accounts[order.account] & sides[order.side] & types[order.order_type]
                & statuses[status]
            )
            if mask and (status == "PF" or filled > 0):
                mask &= keep_partial
            if mask and left < qty_top:
                mask &= qty[left]
            if mask and crids is not None:
                mask &= crids[order.client_request_id]
            if mask:
                try:  # drop the per-order (max_age) rules the order is too young for
                    mask &= fired[bisect_left(cutoffs, order.input_time)]
                except TypeError:  # a naive input_time: no age is known, so none fires
                    mask &= fired_naive
                verdict = verdicts[mask]
        held = status_holds[status]
        if held is None:
            if left <= 0:
                held = NOTHING_LEFT
            elif order.client_request_id.startswith(prefixes):
                held = protected(order.client_request_id)
            elif board_held is not None:
                held = board_held
            elif order.account not in guarded:
                held = NOT_GUARDED
            elif order.input_time.tzinfo is None:
                held = NO_TIMEZONE
        append(new(Decision, (order, board, verdict, held)))
    return decisions


_ACCOUNT = attrgetter("account")
_INPUT_TIME = attrgetter("input_time")
_ORDER_ID = attrgetter("order_id")


def _sorted_live(orders: Iterable[BookOrder]) -> list[BookOrder]:
    """Non-terminal orders by (account, input_time, order_id).

    Three stable sorts, least significant key first, give the same order as one sort by the
    tuple, but each compares single values (a tuple compare asks ``==`` and then ``<`` of the
    datetimes). (They differ only for one instant written in two zones, one of them in a
    repeated hour, where Python's ``==`` says False and neither is ``<``; broker times all
    carry exchange time.) A naive ``input_time`` meeting an aware one raises; then the careful
    key runs.
    """
    live = [o for o in orders if o.status not in TERMINAL_STATUSES]
    try:
        ordered = sorted(live, key=_ORDER_ID)
        ordered.sort(key=_INPUT_TIME)
        ordered.sort(key=_ACCOUNT)
    except TypeError:
        return sorted(live, key=_order_key)
    return ordered


def _aware(instant: datetime) -> datetime:
    """A naive ``input_time`` breaks the BookOrder contract; read it as exchange time."""
    return instant.replace(tzinfo=EXCHANGE_TZ) if instant.tzinfo is None else instant


def _order_key(order: BookOrder) -> tuple[str, datetime, str]:
    return (order.account, _aware(order.input_time), order.order_id)
