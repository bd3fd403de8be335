"""Property tests: for any book and any valid rules, nothing the engine selects breaks a rule.

The invariants are checked independently of the engine's code: a selected order is cancellable,
has something left, is not protected, belongs to a guarded account, has a known board whose
cancel window is open now, and passes every filter of each rule that matched. And the reverse:
an order that passes every guard is not held.
"""

from __future__ import annotations

import random
from datetime import UTC, date, datetime, time, timedelta
from fnmatch import fnmatchcase
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from kit.rules import loadable

from guard.clock import EXCHANGE_TZ
from guard.config.schema import CANCELLABLE_CHOICES, ORDER_TYPES, Rule, RulesFile
from guard.evaluate.engine import Decision, evaluate
from guard.market.calendar import Board
from guard.market.holidays import build_calendar
from guard.model import TERMINAL_STATUSES, BookOrder

CAL = build_calendar([date(2026, 11, 24)])
ACCOUNTS = ["0001234", "0001238"]
BOARDS = {"SSI": Board.HOSE, "SHS": Board.HNX, "BSR": Board.UPCOM, "VN30F2612": Board.DER}
SYMBOLS = [*BOARDS, "FOO", "VNM"]
STATUSES = ["PD", "WA", "RS", "SD", "QU", "PF", "IAV", "WC", "WM", "FF", "CL", "RJ", "EX",
            "FFPC", "SOI", "ZZ"]
TERMINAL = TERMINAL_STATUSES
PREFIXES = ["keep-", "manual-"]
# Fri 28 Aug 2026 .. Fri 4 Sep 2026 spans a weekend and three holidays.
START = datetime(2026, 8, 28, 0, 0, tzinfo=EXCHANGE_TZ)
# And a normal week with the operator's extra holiday.
START2 = datetime(2026, 11, 20, 0, 0, tzinfo=EXCHANGE_TZ)

PROPERTY = settings(
    max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)


@st.composite
def instants(draw: st.DrawFn) -> datetime:
    base = draw(st.sampled_from([START, START2]))
    day = draw(st.integers(0, 7))
    # Bias towards the session edges, where mistakes live.
    edge = draw(st.sampled_from(["08:45", "09:00", "09:15", "11:25", "11:30", "13:00",
                                 "14:25", "14:30", "14:45", "14:55", "15:00"]))
    offset = draw(st.integers(-90, 90))
    if draw(st.booleans()):
        offset = draw(st.integers(-8 * 3600, 8 * 3600))
    clock = datetime.combine(date.min, time.fromisoformat(edge)) + timedelta(seconds=offset)
    instant = base + timedelta(days=day, hours=clock.hour, minutes=clock.minute,
                               seconds=clock.second)
    return instant.astimezone(UTC) if draw(st.booleans()) else instant


@st.composite
def books(draw: st.DrawFn, now: datetime) -> list[BookOrder]:
    orders = []
    for i in range(draw(st.integers(0, 25))):
        quantity = draw(st.integers(0, 5000))
        filled = draw(st.integers(0, quantity + 100))
        cancelled = draw(st.integers(0, 200))
        orders.append(BookOrder(
            account=draw(st.sampled_from([*ACCOUNTS, "0009999"])),
            order_id=str(draw(st.integers(1, 40))) + f"-{i}",
            client_request_id=draw(st.sampled_from(["", "cr-1", "keep-1", "manual-7", "kee"])),
            symbol=draw(st.sampled_from(SYMBOLS)),
            side=draw(st.sampled_from(["B", "S"])),
            order_type=draw(st.sampled_from(ORDER_TYPES)),
            price=None,
            price_word=None,
            quantity=quantity,
            filled=filled,
            cancelled=cancelled,
            status=draw(st.sampled_from(STATUSES)),
            input_time=now - timedelta(seconds=draw(st.integers(-600, 6 * 3600))),
        ))
    return orders


def optional(draw: st.DrawFn, values: list[Any]) -> list[Any] | None:
    if draw(st.booleans()):
        return None
    return draw(st.lists(st.sampled_from(values), min_size=1, max_size=3, unique=True))


@st.composite
def rules_files(draw: st.DrawFn) -> RulesFile:
    accounts = draw(st.lists(st.sampled_from(ACCOUNTS), min_size=1, max_size=2, unique=True))
    cancellable = draw(
        st.lists(st.sampled_from(CANCELLABLE_CHOICES), min_size=1, max_size=5, unique=True)
    )
    pinned: dict[str, str] = draw(st.sampled_from([{}, {"VNM": "HOSE"}, {"SSI": "UPCOM"}]))
    rules = []
    for i in range(draw(st.integers(1, 4))):
        trigger = draw(st.sampled_from(["max_age", "before_close", "at"]))
        rule: dict[str, Any] = {"name": f"r{i}"}
        if trigger == "max_age":
            rule["max_age"] = draw(st.sampled_from(["1s", "30s", "5m", "15m", "1h", "3h"]))
        elif trigger == "before_close":
            rule["before_close"] = draw(st.sampled_from(["1s", "5m", "30m", "2h"]))
        else:
            rule["at"] = draw(st.lists(st.sampled_from(["09:30", "11:25", "14:25:30", "14:55"]),
                                       min_size=1, max_size=2, unique=True))
            if draw(st.booleans()):
                rule["at_window"] = draw(st.sampled_from(["1s", "60s", "10m"]))
        match = {
            "accounts": optional(draw, accounts),
            "boards": optional(draw, [b.value for b in Board]),
            "symbols": optional(draw, ["SSI", "S*", "VN*", "?SR", "FOO"]),
            "sides": optional(draw, ["B", "S"]),
            "order_types": optional(draw, [t for t in ORDER_TYPES if t != "PLO"]),
            "statuses": optional(draw, cancellable),
        }
        match = {k: v for k, v in match.items() if v is not None}
        match["partially_filled"] = draw(st.sampled_from(["cancel_rest", "skip"]))
        match["min_remaining_qty"] = draw(st.sampled_from([0, 1, 100, 1000]))
        rule["match"] = loadable(match, cancellable, pinned)
        rules.append(rule)
    data = {
        "version": 1,
        "accounts": accounts,
        "cancellable": cancellable,
        "protect": {"client_request_id_prefixes": draw(
            st.lists(st.sampled_from(PREFIXES), min_size=1, max_size=2, unique=True))},
        "boards": pinned,
        "rules": rules,
    }
    return RulesFile.model_validate(data)


def expected_board(order: BookOrder, rf: RulesFile) -> Board | None:
    return rf.boards.get(order.symbol) or BOARDS.get(order.symbol)


def passes_filters(rule: Rule, o: BookOrder, board: Board | None) -> bool:
    f = rule.match
    remaining = max(0, o.quantity - o.filled - o.cancelled)
    return (
        (f.accounts is None or o.account in f.accounts)
        and (f.boards is None or board in f.boards)
        and (f.symbols is None or any(fnmatchcase(o.symbol, p) for p in f.symbols))
        and (f.sides is None or o.side in f.sides)
        and (f.order_types is None or o.order_type in f.order_types)
        and (f.statuses is None or o.status in f.statuses)
        and not (f.partially_filled == "skip" and (o.status == "PF" or o.filled > 0))
        and remaining >= f.min_remaining_qty
    )


def may_cancel(o: BookOrder, rf: RulesFile, now: datetime) -> bool:
    board = expected_board(o, rf)
    return (
        o.status in rf.cancellable
        and o.status not in TERMINAL | {"WC", "WM"}
        and o.quantity - o.filled - o.cancelled > 0
        and not o.client_request_id.startswith(rf.protect.client_request_id_prefixes)
        and o.account in rf.accounts
        and board is not None
        and CAL.cancel_allowed(board, now)
    )


@PROPERTY
@given(st.data())
def test_nothing_selected_breaks_an_invariant(data: st.DataObject) -> None:
    now = data.draw(instants())
    orders = data.draw(books(now))
    rf = data.draw(rules_files())
    decisions = evaluate(orders, rf, now, CAL, BOARDS)

    assert len(decisions) == sum(o.status not in TERMINAL for o in orders)
    keys = [(d.order.account, d.order.input_time, d.order.order_id) for d in decisions]
    assert keys == sorted(keys)
    rules_by_name = {r.name: r for r in rf.rules}
    for d in decisions:
        o = d.order
        assert o.status not in TERMINAL
        assert d.board == expected_board(o, rf)
        # The hold is exactly the guards: held iff some guard fails.
        assert (d.held is None) == may_cancel(o, rf, now), (d, now)
        for m in d.matches:
            assert passes_filters(rules_by_name[m.rule], o, d.board)
        if d.cancel:
            assert may_cancel(o, rf, now)
            assert d.board is not None
            assert CAL.cancel_allowed(d.board, now)
            assert o.remaining > 0


@PROPERTY
@given(st.data())
def test_trigger_semantics(data: st.DataObject) -> None:
    now = data.draw(instants())
    orders = data.draw(books(now))
    rf = data.draw(rules_files())
    local = now.astimezone(EXCHANGE_TZ)
    for d in evaluate(orders, rf, now, CAL, BOARDS):
        matched = {m.rule for m in d.matches}
        for rule in rf.rules:
            if not passes_filters(rule, d.order, d.board):
                assert rule.name not in matched
                continue
            if rule.max_age is not None:
                fires = now - d.order.input_time >= rule.max_age
            elif rule.before_close is not None:
                cutoff = CAL.cancel_cutoff(d.board, local.date()) if d.board else None
                fires = cutoff is not None and cutoff - rule.before_close <= now < cutoff
            else:
                assert rule.at is not None
                starts = [datetime.combine(local.date(), t, tzinfo=EXCHANGE_TZ) for t in rule.at]
                fires = CAL.is_trading_day(local.date()) and any(
                    s <= now < s + rule.at_window for s in starts
                )
            assert (rule.name in matched) is fires, (rule, d, now)


@PROPERTY
@given(st.data())
def test_deterministic_whatever_the_input_order(data: st.DataObject) -> None:
    now = data.draw(instants())
    orders = data.draw(books(now))
    rf = data.draw(rules_files())
    shuffled = list(orders)
    random.Random(data.draw(st.integers())).shuffle(shuffled)
    first = evaluate(orders, rf, now, CAL, BOARDS)
    again = evaluate(shuffled, rf, now, CAL, BOARDS)
    assert [(d.order, d.board, d.matches, d.held) for d in again] == [
        (d.order, d.board, d.matches, d.held) for d in first]
    assert all(isinstance(d, Decision) for d in first)
