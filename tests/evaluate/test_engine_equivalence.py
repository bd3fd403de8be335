"""The optimised engine against a plain, rule-by-rule reading of the semantics: equal outputs.

``reference`` below is the engine as first written (one rule at a time for each order, every
answer recomputed): slow, but it reads like docs/rules-reference.md. ``evaluate`` reorders that
work (masks per distinct value, plans per board and mask, shared constant matches), so every
``Decision`` -- matches, reasons, holds, board, order -- must come out equal, at the instants
where the semantics turn: session edges, before_close and at windows opening and closing, ages
landing exactly on ``max_age`` (and a microsecond either side), sub-second durations, naive and
UTC timestamps, overfilled orders, unknown statuses, symbols and boards.
"""

from __future__ import annotations

import random
from collections.abc import Iterable, Mapping
from datetime import UTC, date, datetime, time, timedelta, timezone
from decimal import Decimal
from fnmatch import fnmatchcase
from typing import Any
from zoneinfo import ZoneInfo

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from kit.rules import loadable

from guard.clock import EXCHANGE_TZ
from guard.config.durations import format_duration
from guard.config.schema import ORDER_TYPES, Rule, RulesFile
from guard.evaluate.engine import Decision, HoldKind, Match, evaluate
from guard.evaluate.wording import age_text
from guard.market.calendar import Board, MarketCalendar
from guard.market.holidays import build_calendar
from guard.market.instruments import BoardMap
from guard.model import TERMINAL_STATUSES, BookOrder

# What the reference decides about one order: (order, board, matches, (held, kind) or None).
Expected = tuple[BookOrder, Board | None, tuple[Match, ...], tuple[str, HoldKind] | None]

# ---- the reference: the semantics, read one rule at a time --------------------------------


def reference(
    orders: Iterable[BookOrder],
    rules: RulesFile,
    now: datetime,
    calendar: MarketCalendar,
    boards: Mapping[str, Board],
    signals: Mapping[str, str] | None = None,
) -> list[Expected]:
    if now.tzinfo is None or now.utcoffset() is None:
        raise ValueError("evaluate needs an aware 'now'")
    live = [o for o in orders if o.status not in TERMINAL_STATUSES]
    live.sort(key=lambda o: (o.account, _aware(o.input_time), o.order_id))
    decisions = []
    for order in live:
        board = _board_of(order.symbol, rules, boards)
        matches = tuple(
            Match(rule.name, reason)
            for rule in rules.rules
            if (reason := _match(rule, order, board, now, calendar, signals or {})) is not None
        )
        held = _held(order, board, rules, now, calendar)
        decisions.append((order, board, matches, held))
    return decisions


def _aware(instant: datetime) -> datetime:
    return instant.replace(tzinfo=EXCHANGE_TZ) if instant.tzinfo is None else instant


def _board_of(symbol: str, rules: RulesFile, boards: Mapping[str, Board]) -> Board | None:
    if symbol in rules.boards:
        return rules.boards[symbol]
    board = boards.get(symbol)
    return Board(board) if board is not None else None


def _held(order: BookOrder, board: Board | None, rules: RulesFile, now: datetime,
          calendar: MarketCalendar) -> tuple[str, HoldKind] | None:
    if order.status == "WC":
        return "status WC already cancelling", HoldKind.ALREADY_CANCELLING
    if order.status not in rules.cancellable:
        return f"status {order.status} not cancellable", HoldKind.NOT_CANCELLABLE
    if order.remaining <= 0:
        return "nothing left to cancel", HoldKind.NOTHING_LEFT
    for prefix in rules.protect.client_request_id_prefixes:
        if order.client_request_id.startswith(prefix):
            return f"protected prefix {prefix}", HoldKind.PROTECTED
    if board is None:
        return f"board unknown for symbol {order.symbol}", HoldKind.BOARD_UNKNOWN
    banned = calendar.why_banned(board, now)
    if banned is not None:
        return banned, HoldKind.BANNED_WINDOW
    if order.account not in rules.accounts:
        return "account not guarded", HoldKind.ACCOUNT_NOT_GUARDED
    if order.input_time.tzinfo is None:
        return "input_time has no timezone", HoldKind.OTHER
    return None


def _filters_pass(rule: Rule, order: BookOrder, board: Board | None) -> bool:
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
    if f.client_request_ids is not None and not any(
            fnmatchcase(order.client_request_id, p) for p in f.client_request_ids):
        return False
    if f.partially_filled == "skip" and (order.status == "PF" or order.filled > 0):
        return False
    return order.remaining >= f.min_remaining_qty


def _match(rule: Rule, order: BookOrder, board: Board | None, now: datetime,
           calendar: MarketCalendar, signals: Mapping[str, str]) -> str | None:
    if not _filters_pass(rule, order, board):
        return None
    if rule.heartbeat is not None:
        return signals.get(rule.name)
    if rule.max_age is not None:
        if order.input_time.tzinfo is None:
            return None
        age = now.astimezone(UTC) - order.input_time.astimezone(UTC)  # elapsed, any zones
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
                return f"fixed sweep at {at.isoformat('seconds' if at.second else 'minutes')}"
    return None


# ---- inputs aimed at the edges ------------------------------------------------------------

CAL = build_calendar([date(2026, 11, 24)])
ACCOUNTS = ["0001234", "0001238", "0002001"]
MASTER = [("SSI", "HOSE"), ("VNM", "HSX"), ("SHS", "HNX"), ("BSR", "UPCOM"),
          ("VN30F2612", "DERIVATIVES"), ("ACB", "HNX")]
PLAIN_BOARDS = {"SSI": Board.HOSE, "VNM": Board.HOSE, "SHS": Board.HNX, "BSR": Board.UPCOM,
                "VN30F2612": Board.DER, "ACB": Board.HNX}
SYMBOLS = [*PLAIN_BOARDS, "FOO", "ssi", "VEA"]
STATUSES = ["PD", "WA", "RS", "SD", "QU", "PF", "IAV", "WC", "WM", "FF", "CL", "RJ", "EX",
            "FFPC", "ZZ"]
# Trading days (twice as likely), a Saturday, 2 Sep (a holiday) and 24 Nov (the extra one).
TRADING_DAYS = [date(2026, 8, 28), date(2026, 11, 23), date(2026, 11, 27)]
DAYS = [*TRADING_DAYS, *TRADING_DAYS, date(2026, 8, 29), date(2026, 9, 2), date(2026, 11, 24)]
EDGES = ["08:45", "09:00", "09:15", "09:30", "11:25", "11:25:30", "11:30", "13:00", "14:15",
         "14:25", "14:30", "14:45", "14:55", "15:00"]
# London changes its clocks: an age must be elapsed time, never wall-clock difference.
ZONES = [EXCHANGE_TZ, UTC, timezone(timedelta(hours=7)), ZoneInfo("Europe/London")]
DURATIONS = [timedelta(milliseconds=400), timedelta(seconds=1), timedelta(seconds=59),
             timedelta(minutes=5), timedelta(minutes=15), timedelta(hours=1, seconds=30),
             timedelta(hours=3), timedelta(days=400)]
AT_TIMES = [time(9, 30), time(11, 25), time(14, 25, 30), time(14, 29), time(14, 55)]

EQUIVALENCE = settings(max_examples=300, deadline=None,
                       suppress_health_check=[HealthCheck.too_slow])


@st.composite
def instants(draw: st.DrawFn, rf: RulesFile) -> datetime:
    """A session edge, or where one of ``rf``'s windows opens or closes; +- a little."""
    day = draw(st.sampled_from(DAYS))
    turns = []
    for rule in rf.rules:
        for cutoff in (time(14, 30), time(15, 0)):
            if rule.before_close is not None:
                turns += [(datetime.combine(day, cutoff) - rule.before_close).time(), cutoff]
        for at in rule.at or ():
            turns += [at, (datetime.combine(day, at) + rule.at_window).time()]
    if not turns or draw(st.booleans()):
        turns = [time.fromisoformat(edge) for edge in EDGES]
    clock = datetime.combine(day, draw(st.sampled_from(turns)), tzinfo=EXCHANGE_TZ)
    shift = draw(st.sampled_from([timedelta(0), timedelta(0), timedelta(microseconds=-1),
                                  timedelta(microseconds=1), timedelta(seconds=-1)]))
    if draw(st.integers(0, 3)) == 0:
        shift += timedelta(seconds=draw(st.integers(-4 * 3600, 4 * 3600)),
                           microseconds=draw(st.integers(0, 999_999)))
    return (clock + shift).astimezone(draw(st.sampled_from(ZONES)))


def optional(draw: st.DrawFn, values: list[Any]) -> list[Any] | None:
    """A filter, present one time in three (so that rules still match often)."""
    if draw(st.integers(0, 2)):
        return None
    return draw(st.lists(st.sampled_from(values), min_size=1, max_size=4, unique=True))


@st.composite
def rules_files(draw: st.DrawFn) -> RulesFile:
    accounts = draw(st.lists(st.sampled_from(ACCOUNTS), min_size=1, max_size=3, unique=True))
    cancellable = draw(st.lists(st.sampled_from(["PD", "WA", "RS", "SD", "QU", "PF", "IAV"]),
                                min_size=1, max_size=6, unique=True))
    pinned: dict[str, str] = draw(st.sampled_from(
        [{}, {"VEA": "UPCOM"}, {"SSI": "UPCOM", "FOO": "HNX"}]))
    rules = []
    for i in range(draw(st.integers(1, 8))):
        rule: dict[str, Any] = {"name": f"r{i}"}
        trigger = draw(st.sampled_from(["max_age", "max_age", "before_close", "at",
                                        "heartbeat"]))
        if trigger == "heartbeat":
            rule["heartbeat"] = {"file": f"/run/s{i}/hb", "stale_after": "10s"}
        elif trigger == "max_age":
            rule["max_age"] = draw(st.sampled_from(DURATIONS))
        elif trigger == "before_close":
            rule["before_close"] = draw(st.sampled_from(DURATIONS[:-1]))
        else:
            rule["at"] = draw(st.lists(st.sampled_from(AT_TIMES), min_size=1, max_size=3,
                                       unique=True))
            if draw(st.booleans()):
                rule["at_window"] = draw(st.sampled_from(DURATIONS[:6]))
        match = {
            "accounts": optional(draw, accounts),
            "boards": optional(draw, list(Board)),
            "symbols": optional(draw, ["SSI", "S*", "V?M", "[AB]*", "[!S]*", "FOO", "VN30F*"]),
            "sides": optional(draw, ["B", "S"]),
            "order_types": optional(draw, [t for t in ORDER_TYPES if t != "PLO"]),
            "statuses": optional(draw, cancellable),
            "client_request_ids": optional(draw, ["cr-*", "keep-?", "*7", "[cm]*", "cr-1"]),
        }
        match = {k: v for k, v in match.items() if v is not None}
        match["partially_filled"] = draw(st.sampled_from(["cancel_rest", "skip"]))
        match["min_remaining_qty"] = draw(st.sampled_from([0, 0, 1, 100, 1000]))
        rule["match"] = loadable(match, cancellable, pinned)
        rules.append(rule)
    return RulesFile.model_validate({
        "version": 1,
        "accounts": accounts,
        "cancellable": cancellable,
        "protect": {"client_request_id_prefixes": draw(st.sampled_from(
            [["keep-"], ["keep-", "kee"], ["manual-", "keep-"]]))},
        "boards": pinned,
        "rules": rules,
    })


@st.composite
def books(draw: st.DrawFn, now: datetime, rf: RulesFile) -> list[BookOrder]:
    # Ages that land on, and a microsecond either side of, each rule's max_age.
    thresholds = [r.max_age for r in rf.rules if r.max_age is not None] or [timedelta(0)]
    orders = []
    for _ in range(draw(st.integers(0, 30))):
        kind = draw(st.sampled_from(["edge", "edge", "any", "naive", "future"]))
        if kind == "edge":
            age = draw(st.sampled_from(thresholds)) + draw(st.sampled_from(
                [timedelta(0), timedelta(microseconds=1), timedelta(microseconds=-1),
                 timedelta(seconds=1)]))
        elif kind == "future":
            age = -timedelta(seconds=draw(st.integers(1, 600)))
        else:
            age = timedelta(seconds=draw(st.integers(0, 6 * 3600)),
                            microseconds=draw(st.sampled_from([0, 1, 500_000, 999_999])))
        entered = (now - age).astimezone(draw(st.sampled_from(ZONES)))
        if kind == "naive":
            entered = entered.astimezone(EXCHANGE_TZ).replace(tzinfo=None)
        quantity = draw(st.sampled_from([0, 100, 1000, 5000]))
        filled = draw(st.sampled_from([0, 0, 50, quantity, quantity + 100]))
        orders.append(BookOrder(
            account=draw(st.sampled_from([*ACCOUNTS, "0009999"])),
            order_id=str(draw(st.integers(1, 6))),  # repeats: the stable sort must agree too
            client_request_id=draw(st.sampled_from(["", "cr-1", "keep-1", "manual-7", "kee"])),
            symbol=draw(st.sampled_from(SYMBOLS)),
            side=draw(st.sampled_from(["B", "S"])),
            order_type=draw(st.sampled_from(ORDER_TYPES)),
            price=None,
            price_word=None,
            quantity=quantity,
            filled=filled,
            cancelled=draw(st.sampled_from([0, 0, 100])),
            status=draw(st.sampled_from(STATUSES)),
            input_time=entered,
        ))
    return orders


def same(orders: list[BookOrder], rf: RulesFile, now: datetime,
         boards: Mapping[str, Board], signals: Mapping[str, str] | None = None) -> list[Decision]:
    """Both engines, compared field by field so a failure names what differs."""
    expected = reference(orders, rf, now, CAL, boards, signals)
    got = evaluate(orders, rf, now, CAL, boards, signals)
    assert len(got) == len(expected)
    for g, (order, board, matches, held) in zip(got, expected, strict=True):
        assert g.order is order
        assert (g.board, g.hold) == (board, held), (g.order, now)
        assert (g.held, g.hold_kind) == (held or (None, None)), (g.order, now)
        assert g.matches == matches, (g.order, now)
        assert g.rules == tuple(m.rule for m in matches), (g.order, now)
        assert g.reason == "; ".join(m.reason for m in matches), (g.order, now)
        assert g.cancel == (bool(matches) and held is None), (g.order, now)
    return got


@EQUIVALENCE
@given(st.data())
def test_same_decisions_as_the_reference(data: st.DataObject) -> None:
    rf = data.draw(rules_files())
    now = data.draw(instants(rf))
    orders = data.draw(books(now, rf))
    boards = data.draw(st.sampled_from([PLAIN_BOARDS, BoardMap(now.date(), MASTER)]))
    # Some heartbeat rules stale (and a signal for a name no rule has), some not.
    names = [r.name for r in rf.rules if r.heartbeat is not None] + ["nobody"]
    stale = data.draw(st.lists(st.sampled_from(names), unique=True))
    same(orders, rf, now, boards, {n: f"heartbeat of {n} stale" for n in stale})


def test_same_decisions_at_every_turn_of_every_trigger() -> None:
    """Deterministically, each window's opening and closing instant, and 1us either side."""
    rules: list[dict[str, Any]] = [
        {"name": f"close-{i}", "before_close": d} for i, d in enumerate(DURATIONS[:-1])
    ]
    rules += [{"name": f"at-{i}", "at": [t], "at_window": d}
              for i, (t, d) in enumerate(zip(AT_TIMES, DURATIONS[1:], strict=False))]
    rules += [{"name": f"age-{i}", "max_age": d} for i, d in enumerate(DURATIONS)]
    rf = RulesFile.model_validate({"version": 1, "accounts": ACCOUNTS, "rules": rules,
                                   "cancellable": ["QU", "PF"], "boards": {"VEA": "UPCOM"}})
    for day in (date(2026, 11, 27), date(2026, 11, 24)):
        turns = [datetime.combine(day, time.fromisoformat(e), tzinfo=EXCHANGE_TZ) for e in EDGES]
        for rule in rf.rules:
            for cutoff in (time(14, 30), time(15, 0)):
                end = datetime.combine(day, cutoff, tzinfo=EXCHANGE_TZ)
                if rule.before_close is not None:
                    turns += [end - rule.before_close, end]
            for at in rule.at or ():
                start = datetime.combine(day, at, tzinfo=EXCHANGE_TZ)
                turns += [start, start + rule.at_window]
        for turn in turns:
            for now in (turn - timedelta(microseconds=1), turn, turn + timedelta(microseconds=1)):
                book = [
                    BookOrder(
                        account=ACCOUNTS[0], order_id=f"{symbol}-{i}", client_request_id="",
                        symbol=symbol, side="B", order_type="LO", price=None, price_word=None,
                        quantity=100, filled=0, cancelled=0, status="QU",
                        input_time=now - age,
                    )
                    for symbol in SYMBOLS
                    for i, age in enumerate(d + e for d in DURATIONS for e in (
                        timedelta(0), timedelta(microseconds=-1)))
                ]
                same(book, rf, now, PLAIN_BOARDS)


def test_same_decisions_on_a_large_mixed_book() -> None:
    """Thousands of orders at once: plans and caches shared across many orders stay exact."""
    rng = random.Random(20261123)
    now = datetime(2026, 11, 23, 14, 26, 0, tzinfo=EXCHANGE_TZ)
    rf = RulesFile.model_validate({
        "version": 1, "accounts": ACCOUNTS[:2], "cancellable": ["WA", "QU", "PF", "PD"],
        "protect": {"client_request_id_prefixes": ["keep-", "hedge-"]},
        "boards": {"VEA": "UPCOM"},
        "rules": [
            {"name": "stale", "max_age": "15m"},
            {"name": "close-hose", "before_close": "5m", "match": {"boards": ["HOSE"]}},
            {"name": "buys", "max_age": "5m", "match": {"sides": ["B"], "symbols": ["S*"]}},
            {"name": "fixed", "at": ["14:25:30"], "match": {"statuses": ["QU", "PF"]}},
            {"name": "big", "max_age": "1m", "match": {"min_remaining_qty": 1000,
                                                       "partially_filled": "skip"}},
            {"name": "close-all", "before_close": "30m", "match": {"accounts": ["0001238"]}},
        ],
    })
    orders = []
    for i in range(3000):
        quantity = rng.choice((100, 1000, 5000))
        status = rng.choice(STATUSES)
        orders.append(BookOrder(
            account=rng.choice(ACCOUNTS), order_id=f"{i:06d}",
            client_request_id=rng.choice(("keep-", "hedge-", "", "x")) + str(i),
            symbol=rng.choice(SYMBOLS), side=rng.choice("BS"),
            order_type=rng.choice(ORDER_TYPES), price=Decimal(1000), price_word=None,
            quantity=quantity, filled=rng.choice((0, quantity // 2)), cancelled=0,
            status=status, input_time=now - timedelta(seconds=rng.randrange(0, 4 * 3600)),
        ))
    decisions = same(orders, rf, now, BoardMap(now.date(), MASTER))
    assert sum(1 for d in decisions if d.cancel) > 100  # the book exercises the match paths


def test_age_text_is_format_duration() -> None:
    """The engine's integer fast path for ages renders exactly as ``format_duration``."""
    samples = [timedelta(seconds=s) for s in range(0, 100_000, 7)]
    samples += [timedelta(seconds=s, microseconds=us) for s in (0, 1, 59, 3599, 86_399, 86_400)
                for us in (1, 499_999, 999_999)]
    samples += [timedelta(seconds=2**31 + d, microseconds=us) for d in (-2, -1, 0, 1)
                for us in (0, 999_999)]
    samples += [timedelta(days=999_999, hours=23, seconds=59, microseconds=999_999)]
    for age in samples:
        assert age_text(age) == format_duration(age), age
