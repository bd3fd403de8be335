"""The rule engine at exact instants: triggers, filters, holds and their order."""

from __future__ import annotations

import gc
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from guard.clock import EXCHANGE_TZ
from guard.config.schema import RulesFile
from guard.evaluate.engine import Decision, HoldKind, Match, evaluate
from guard.market.calendar import Board
from guard.market.holidays import build_calendar
from guard.market.instruments import BoardMap, normalise_board
from guard.model import BookOrder

FRIDAY = date(2026, 11, 27)
CAL = build_calendar()
BOARDS = {"SSI": Board.HOSE, "SHS": Board.HNX, "BSR": Board.UPCOM, "VN30F2612": Board.DER}


def at(hms: str, day: date = FRIDAY) -> datetime:
    return datetime.combine(day, time.fromisoformat(hms), tzinfo=EXCHANGE_TZ)


def order(**kw: Any) -> BookOrder:
    base: dict[str, Any] = {
        "account": "0001234",
        "order_id": "1",
        "client_request_id": "cr-1",
        "symbol": "SSI",
        "side": "B",
        "order_type": "LO",
        "price": None,
        "price_word": None,
        "quantity": 1000,
        "filled": 0,
        "cancelled": 0,
        "status": "QU",
        "input_time": at("10:00:00"),
    }
    base.update(kw)
    return BookOrder(**base)


def rules(*rule_list: dict[str, Any], **top: Any) -> RulesFile:
    data: dict[str, Any] = {"version": 1, "accounts": ["0001234", "0001238"]}
    data.update(top)
    data["rules"] = list(rule_list)
    return RulesFile.model_validate(data)


STALE = {"name": "stale", "max_age": "15m"}
PRE_CLOSE = {"name": "pre-close", "before_close": "5m"}
LUNCH = {"name": "lunch", "at": ["11:25"]}


def one(orders: list[BookOrder] | BookOrder, rf: RulesFile, now: datetime) -> Decision:
    result = evaluate(orders if isinstance(orders, list) else [orders], rf, now, CAL, BOARDS)
    assert len(result) == 1
    return result[0]


# ---- max_age --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("now", "matches"),
    [("10:14:59", False), ("10:15:00", True), ("10:17:12", True)],
)
def test_max_age_is_inclusive(now: str, matches: bool) -> None:
    d = one(order(), rules(STALE), at(now))
    assert bool(d.matches) is matches
    assert d.cancel is matches


def test_max_age_reason_shows_the_age() -> None:
    d = one(order(), rules(STALE), at("10:17:12"))
    assert d.matches == (Match("stale", "age 17m12s >= 15m"),)


def test_max_age_future_input_time_does_not_match() -> None:
    d = one(order(input_time=at("10:30:00")), rules(STALE), at("10:20:00"))
    assert d.matches == ()


# ---- before_close ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("symbol", "now", "matches", "held"),
    [
        ("SSI", "14:24:59", False, None),
        ("SSI", "14:25:00", True, None),
        ("SSI", "14:29:59", True, None),
        ("SSI", "14:30:00", False, "HOSE in ATC: cancel banned"),
        ("SHS", "14:25:00", True, None),
        ("VN30F2612", "14:29:59", True, None),
        ("BSR", "14:25:00", False, None),
        ("BSR", "14:54:59", False, None),
        ("BSR", "14:55:00", True, None),
        ("BSR", "14:59:59", True, None),
        ("BSR", "15:00:00", False, "UPCOM closed for the day: cancel banned"),
    ],
)
def test_before_close_window(symbol: str, now: str, matches: bool, held: str | None) -> None:
    d = one(order(symbol=symbol), rules(PRE_CLOSE), at(now))
    assert bool(d.matches) is matches
    assert d.held == held
    assert d.cancel is (matches and held is None)


def test_before_close_reason() -> None:
    d = one(order(), rules(PRE_CLOSE), at("14:25:00"))
    assert d.matches == (Match("pre-close", "14:25:00 is 5m before HOSE ATC"),)
    d = one(order(symbol="BSR"), rules(PRE_CLOSE), at("14:57:30"))
    assert d.matches == (Match("pre-close", "14:57:30 is 2m30s before UPCOM close"),)


def test_before_close_works_from_a_utc_now() -> None:
    d = one(order(), rules(PRE_CLOSE), at("14:25:00").astimezone(UTC))
    assert d.cancel


def test_before_close_never_on_a_holiday() -> None:
    d = one(order(), rules(PRE_CLOSE), at("14:26:00", date(2026, 9, 2)))
    assert d.matches == ()
    assert d.held == "2026-09-02 is a holiday"


# ---- at -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("now", "matches"),
    [("11:24:59", False), ("11:25:00", True), ("11:25:59", True), ("11:26:00", False)],
)
def test_at_window_default_60s(now: str, matches: bool) -> None:
    d = one(order(), rules(LUNCH), at(now))
    assert bool(d.matches) is matches
    if matches:
        assert d.matches == (Match("lunch", "fixed sweep at 11:25"),)


def test_at_window_configurable_and_seconds_shown() -> None:
    rf = rules({"name": "x", "at": ["11:25:30", "14:00"], "at_window": "10s"})
    assert one(order(), rf, at("11:25:39")).matches == (Match("x", "fixed sweep at 11:25:30"),)
    assert one(order(), rf, at("11:25:40")).matches == ()
    assert one(order(), rf, at("14:00:05")).matches == (Match("x", "fixed sweep at 14:00"),)


def test_at_not_on_saturday() -> None:
    d = one(order(), rules(LUNCH), at("11:25:00", date(2026, 11, 28)))
    assert d.matches == ()
    assert d.held == "2026-11-28 is not a trading day (Saturday)"


# ---- banned instants ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("now", "held"),
    [
        ("09:14:59", "HOSE in ATO: cancel banned"),
        ("09:15:00", None),
        ("11:29:59", None),
        ("11:30:00", "lunch break: cancel banned"),
        ("12:59:59", "lunch break: cancel banned"),
        ("13:00:00", None),
        ("14:29:59", None),
        ("14:30:00", "HOSE in ATC: cancel banned"),
    ],
)
def test_stale_order_held_in_banned_phases(now: str, held: str | None) -> None:
    d = one(order(input_time=at("08:00:00")), rules(STALE), at(now))
    assert d.matches  # matched in every case: the hold is what stops it
    assert d.held == held
    assert d.hold_kind is (None if held is None else HoldKind.BANNED_WINDOW)
    assert d.cancel is (held is None)


# ---- holds, in their documented order -------------------------------------------------------


@pytest.mark.parametrize(
    ("changes", "held", "kind"),
    [
        ({"status": "WC"}, "status WC already cancelling", HoldKind.ALREADY_CANCELLING),
        ({"status": "WM"}, "status WM not cancellable", HoldKind.NOT_CANCELLABLE),
        ({"status": "ZZ"}, "status ZZ not cancellable", HoldKind.NOT_CANCELLABLE),
        ({"status": "PD"}, "status PD not cancellable", HoldKind.NOT_CANCELLABLE),
        ({"filled": 600, "cancelled": 400, "status": "PF"}, "nothing left to cancel",
         HoldKind.NOTHING_LEFT),
        ({"client_request_id": "keep-123"}, "protected prefix keep-", HoldKind.PROTECTED),
        ({"symbol": "FOO"}, "board unknown for symbol FOO", HoldKind.BOARD_UNKNOWN),
        ({"account": "0009999"}, "account not guarded", HoldKind.ACCOUNT_NOT_GUARDED),
    ],
)
def test_hold_reasons(changes: dict[str, Any], held: str, kind: HoldKind) -> None:
    d = one(order(**changes), rules(STALE), at("10:30:00"))
    assert d.matches, "the rule still matches so the operator sees what was held"
    assert d.held == held
    assert d.hold_kind is kind
    assert d.hold == (held, kind)
    assert not d.cancel


@pytest.mark.parametrize(
    ("day", "now", "held"),
    [
        (date(2026, 11, 28), "10:30:00", "2026-11-28 is not a trading day (Saturday)"),
        (date(2026, 9, 2), "10:30:00", "2026-09-02 is a holiday"),
        (FRIDAY, "14:50:00", "HOSE in put-through after ATC: cancel banned"),
    ],
)
def test_every_calendar_ban_is_a_banned_window(day: date, now: str, held: str) -> None:
    d = one(order(input_time=at("08:00:00", day)), rules(STALE), at(now, day))
    assert (d.held, d.hold_kind) == (held, HoldKind.BANNED_WINDOW)


def test_a_decision_built_by_hand_carries_its_hold_kind() -> None:
    d = one(order(), rules(STALE), at("10:30:00"))
    assert d.hold is None and d.hold_kind is None
    assert Decision(d.order, d.board, d.verdict, "x").hold_kind is HoldKind.OTHER
    assert Decision(d.order, d.board, d.verdict, "x", HoldKind.PROTECTED).hold_kind is (
        HoldKind.PROTECTED)
    with pytest.raises(ValueError, match="without a hold"):
        Decision(d.order, d.board, d.verdict, None, HoldKind.PROTECTED)


def test_first_hold_wins() -> None:
    o = order(status="WC", client_request_id="keep-1", symbol="FOO", account="0009999")
    assert one(o, rules(STALE), at("10:30:00")).held == "status WC already cancelling"
    o = order(client_request_id="keep-1", symbol="FOO", account="0009999")
    assert one(o, rules(STALE), at("10:30:00")).held == "protected prefix keep-"
    o = order(symbol="FOO", account="0009999")
    assert one(o, rules(STALE), at("11:45:00")).held == "board unknown for symbol FOO"
    o = order(account="0009999")
    assert one(o, rules(STALE), at("11:45:00")).held == "lunch break: cancel banned"


def test_custom_protect_prefixes_and_cancellable() -> None:
    rf = rules(STALE, protect={"client_request_id_prefixes": ["manual-"]}, cancellable=["QU"])
    assert one(order(client_request_id="keep-1"), rf, at("10:30:00")).cancel
    assert one(order(client_request_id="manual-1"), rf, at("10:30:00")).held == (
        "protected prefix manual-"
    )
    assert one(order(status="PF", filled=1), rf, at("10:30:00")).held == (
        "status PF not cancellable"
    )


@pytest.mark.parametrize("status", ["FF", "CL", "RJ", "EX", "FFPC"])
def test_terminal_orders_are_skipped(status: str) -> None:
    live = order(order_id="2")
    result = evaluate([order(status=status), live], rules(STALE), at("10:30:00"), CAL, BOARDS)
    assert [d.order for d in result] == [live]


# ---- filters --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("match", "changes", "matches"),
    [
        ({"accounts": ["0001238"]}, {}, False),
        ({"accounts": ["0001238"]}, {"account": "0001238"}, True),
        ({"boards": ["HNX"]}, {}, False),
        ({"boards": ["HNX"]}, {"symbol": "SHS"}, True),
        ({"boards": ["HOSE"]}, {"symbol": "FOO"}, False),
        ({"symbols": ["VN*"]}, {}, False),
        ({"symbols": ["VN*"]}, {"symbol": "VN30F2612"}, True),
        ({"symbols": ["SS?"]}, {}, True),
        ({"symbols": ["ssi".upper()]}, {"symbol": "ssi"}, False),
        ({"sides": ["S"]}, {}, False),
        ({"sides": ["S"]}, {"side": "S"}, True),
        ({"order_types": ["MTL"]}, {}, False),
        ({"order_types": ["LO", "MTL"]}, {"order_type": "MTL"}, True),
        ({"statuses": ["PF"]}, {}, False),
        ({"statuses": ["PF"]}, {"status": "PF", "filled": 100}, True),
        ({"partially_filled": "skip"}, {"status": "PF", "filled": 100}, False),
        ({"partially_filled": "skip"}, {"status": "QU", "filled": 100}, False),
        ({"partially_filled": "skip"}, {}, True),
        ({"partially_filled": "cancel_rest"}, {"status": "PF", "filled": 100}, True),
        ({"min_remaining_qty": 500}, {"filled": 600}, False),
        ({"min_remaining_qty": 400}, {"filled": 600}, True),
    ],
)
def test_filters(match: dict[str, Any], changes: dict[str, Any], matches: bool) -> None:
    rf = rules({**STALE, "match": match})
    assert bool(one(order(**changes), rf, at("10:30:00")).matches) is matches


def test_every_matching_rule_is_recorded_in_rule_order() -> None:
    rf = rules(STALE, {"name": "lunch", "at": ["11:25"]}, {"name": "old", "max_age": "1h"})
    d = one(order(input_time=at("10:30:00")), rf, at("11:25:10"))
    assert [m.rule for m in d.matches] == ["stale", "lunch"]
    d = one(order(input_time=at("09:00:00")), rf, at("11:25:10"))
    assert [m.rule for m in d.matches] == ["stale", "lunch", "old"]


# ---- boards ---------------------------------------------------------------------------------


def test_rules_boards_override_wins() -> None:
    rf = rules(STALE, boards={"SSI": "UPCOM", "E1VFVN30": "HOSE"})
    d = one(order(), rf, at("14:45:00"))
    assert d.board is Board.UPCOM
    assert d.cancel  # UPCOM trades until 15:00
    d = one(order(symbol="E1VFVN30"), rf, at("10:30:00"))
    assert d.board is Board.HOSE


def test_board_map_normalises_broker_names() -> None:
    bm = BoardMap(
        FRIDAY,
        [("ssi", "HSX"), ("SHS", "hnx"), ("BSR", "UPCOM"), ("VN30F2612", "DERIVATIVES"),
         ("XYZ", "OTC"), ("DUP", "HOSE"), ("DUP", "HNX")],
        overrides={"XYZ": Board.HNX},
    )
    assert dict(bm) == {
        "SSI": Board.HOSE, "SHS": Board.HNX, "BSR": Board.UPCOM,
        "VN30F2612": Board.DER, "XYZ": Board.HNX,
    }
    assert bm.trading_date == FRIDAY
    assert bm.get("ssi") is Board.HOSE
    assert bm.get(" shs ") is Board.HNX
    assert bm.get("DUP") is None and bm.get("NOPE", Board.UPCOM) is Board.UPCOM
    assert "DUP" not in bm
    assert len(bm.problems) == 2
    assert normalise_board(" der ") is Board.DER
    assert normalise_board("NYSE") is None
    d = one(order(symbol="DUP"), rules(STALE), at("10:30:00"))
    assert evaluate([d.order], rules(STALE), at("10:30:00"), CAL, bm)[0].held == (
        "board unknown for symbol DUP"
    )


# ---- shape ----------------------------------------------------------------------------------


def test_sorted_by_account_time_id_whatever_the_input_order() -> None:
    orders = [
        order(account="0001238", order_id="9", input_time=at("09:30:00")),
        order(order_id="3", input_time=at("10:00:00")),
        order(order_id="2", input_time=at("10:00:00")),
        order(order_id="1", input_time=at("10:05:00")),
        order(order_id="7", input_time=at("09:59:00").astimezone(UTC)),
    ]
    result = evaluate(orders, rules(STALE), at("11:00:00"), CAL, BOARDS)
    assert [(d.order.account, d.order.order_id) for d in result] == [
        ("0001234", "7"), ("0001234", "2"), ("0001234", "3"), ("0001234", "1"),
        ("0001238", "9"),
    ]
    again = evaluate(reversed(orders), rules(STALE), at("11:00:00"), CAL, BOARDS)
    assert [(d.order, d.board, d.matches, d.held) for d in again] == [
        (d.order, d.board, d.matches, d.held) for d in result]


def test_no_rule_matched_still_reports_holds() -> None:
    d = one(order(input_time=at("10:29:00")), rules(STALE), at("10:30:00"))
    assert d.matches == ()
    assert d.held is None
    assert not d.cancel


def test_naive_now_rejected() -> None:
    with pytest.raises(ValueError, match="aware"):
        evaluate([order()], rules(STALE), datetime(2026, 11, 27, 10, 30), CAL, BOARDS)


def test_naive_input_time_is_held_not_crashing() -> None:
    o = order(input_time=datetime(2026, 11, 27, 9, 0))
    d = one(o, rules(STALE), at("10:30:00"))
    assert d.matches == ()
    assert d.held == "input_time has no timezone"
    assert d.hold_kind is HoldKind.OTHER


def test_decisions_are_frozen_values() -> None:
    d = one(order(), rules(STALE), at("10:30:00"))
    with pytest.raises(AttributeError):
        d.held = "x"  # type: ignore[misc]
    with pytest.raises(AttributeError):
        d.verdict.mask = 0  # type: ignore[misc]
    assert not hasattr(d, "_replace")  # a verdict is worded for its own order and board
    assert Decision(d.order, d.board, d.verdict, "x").cancel is False
    again = one(order(), rules(STALE), at("10:30:00") + timedelta(0))
    assert (again.rules, again.matches, again.held) == (d.rules, d.matches, d.held)


def test_reasons_are_worded_when_read_and_read_the_same_every_time() -> None:
    """Only the wording is deferred: the verdict is fixed when evaluate returns."""
    d = one(order(input_time=at("10:12:48")), rules(STALE, {"name": "s5", "max_age": "5m"}),
            at("10:30:00"))
    assert d.rules == ("stale", "s5")
    assert d.matches == (Match("stale", "age 17m12s >= 15m"), Match("s5", "age 17m12s >= 5m"))
    assert d.matches == d.matches
    assert d.reason == "age 17m12s >= 15m; age 17m12s >= 5m"
    assert d.verdict.matches(d.order, d.board) == d.matches


def test_evaluate_leaves_no_reference_cycles() -> None:
    """A daemon evaluates every poll: what a call builds must be freed when its decisions are,
    by reference counting alone, not left for the cycle collector."""
    book = [order(order_id=str(i), symbol=s, quantity=q, input_time=at(t))
            for i, (s, q, t) in enumerate([("SSI", 1000, "10:00:00"), ("SHS", 50, "10:20:00"),
                                           ("BSR", 1000, "09:00:00"), ("FOO", 10, "10:29:00")])]
    rf = rules(STALE, PRE_CLOSE, LUNCH, {"name": "big", "max_age": "1m",
                                         "match": {"min_remaining_qty": 100, "symbols": ["S*"]}})
    gc.collect()
    gc.disable()
    try:
        for now in (at("10:30:00"), at("11:25:10"), at("14:26:00")):
            decisions = evaluate(book, rf, now, CAL, BOARDS)
            assert [d.reason for d in decisions]  # worded too: the wording memos are freed
            del decisions
        assert gc.collect() == 0
    finally:
        gc.enable()


def test_age_is_elapsed_time_across_a_clock_change() -> None:
    """now in a zone that changes its clocks (London, 29 Mar 2026): 71h30m elapsed is not 72h,
    although the wall clocks differ by 72h30m."""
    rf = rules({"name": "stale-3d", "max_age": "72h"})
    now = datetime(2026, 3, 30, 4, 0, tzinfo=ZoneInfo("Europe/London"))  # 10:00 in Hanoi
    young = order(input_time=datetime(2026, 3, 27, 10, 30, tzinfo=EXCHANGE_TZ))
    d = one(young, rf, now)
    assert (d.rules, d.cancel) == ((), False)
    old = order(input_time=datetime(2026, 3, 27, 10, 0, tzinfo=EXCHANGE_TZ))
    assert one(old, rf, now).matches == (Match("stale-3d", "age 72h >= 72h"),)


def test_a_max_age_older_than_any_datetime_never_fires() -> None:
    """A rule built in code (YAML caps durations) with an absurd max_age: no match, no crash."""
    rf = rules(STALE)
    huge = rf.rules[0].model_copy(update={"max_age": timedelta(days=900_000)})
    rf = rf.model_copy(update={"rules": (huge,)})
    d = one(order(input_time=at("09:00:00")), rf, at("10:30:00"))
    assert (d.rules, d.held) == ((), None)
