"""The market calendar at exact instants: every boundary on both sides."""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, time, timedelta

import pytest
from freezegun import freeze_time
from kit import REPO

from guard.clock import EXCHANGE_TZ
from guard.market.calendar import Board, MarketCalendar, Phase
from guard.market.holidays import build_calendar, has_holiday_data, shipped_holidays

FRIDAY = date(2026, 11, 27)  # an ordinary trading day
SATURDAY = date(2026, 11, 28)
NATIONAL_DAY = date(2026, 9, 2)

CAL = build_calendar()


def at(hms: str, day: date = FRIDAY) -> datetime:
    return datetime.combine(day, time.fromisoformat(hms), tzinfo=EXCHANGE_TZ)


# (board, time, phase, cancel allowed)
TABLE = [
    (Board.HOSE, "08:59:59", Phase.PRE_OPEN, False),
    (Board.HOSE, "09:00:00", Phase.ATO, False),
    (Board.HOSE, "09:14:59", Phase.ATO, False),
    (Board.HOSE, "09:15:00", Phase.CONTINUOUS, True),
    (Board.HOSE, "11:29:59", Phase.CONTINUOUS, True),
    (Board.HOSE, "11:30:00", Phase.LUNCH, False),
    (Board.HOSE, "12:59:59", Phase.LUNCH, False),
    (Board.HOSE, "13:00:00", Phase.CONTINUOUS, True),
    (Board.HOSE, "14:29:59", Phase.CONTINUOUS, True),
    (Board.HOSE, "14:30:00", Phase.ATC, False),
    (Board.HOSE, "14:44:59", Phase.ATC, False),
    (Board.HOSE, "14:45:00", Phase.PUT_THROUGH, False),
    (Board.HOSE, "15:00:00", Phase.CLOSED, False),
    (Board.HNX, "08:59:59", Phase.PRE_OPEN, False),
    (Board.HNX, "09:00:00", Phase.CONTINUOUS, True),
    (Board.HNX, "11:29:59", Phase.CONTINUOUS, True),
    (Board.HNX, "11:30:00", Phase.LUNCH, False),
    (Board.HNX, "13:00:00", Phase.CONTINUOUS, True),
    (Board.HNX, "14:29:59", Phase.CONTINUOUS, True),
    (Board.HNX, "14:30:00", Phase.ATC, False),
    (Board.HNX, "14:45:00", Phase.PLO, False),
    (Board.HNX, "14:59:59", Phase.PLO, False),
    (Board.HNX, "15:00:00", Phase.CLOSED, False),
    (Board.UPCOM, "09:00:00", Phase.CONTINUOUS, True),
    (Board.UPCOM, "11:30:00", Phase.LUNCH, False),
    (Board.UPCOM, "13:00:00", Phase.CONTINUOUS, True),
    (Board.UPCOM, "14:30:00", Phase.CONTINUOUS, True),
    (Board.UPCOM, "14:59:59", Phase.CONTINUOUS, True),
    (Board.UPCOM, "15:00:00", Phase.CLOSED, False),
    (Board.DER, "08:44:59", Phase.PRE_OPEN, False),
    (Board.DER, "08:45:00", Phase.ATO, False),
    (Board.DER, "08:59:59", Phase.ATO, False),
    (Board.DER, "09:00:00", Phase.CONTINUOUS, True),
    (Board.DER, "11:30:00", Phase.LUNCH, False),
    (Board.DER, "14:29:59", Phase.CONTINUOUS, True),
    (Board.DER, "14:30:00", Phase.ATC, False),
    (Board.DER, "14:45:00", Phase.CLOSED, False),
]


@pytest.mark.parametrize(("board", "hms", "phase", "allowed"), TABLE)
def test_phase_and_cancel_at_exact_instants(
    board: Board, hms: str, phase: Phase, allowed: bool
) -> None:
    instant = at(hms)
    assert CAL.phase(board, instant) is phase
    assert CAL.cancel_allowed(board, instant) is allowed
    assert (CAL.why_banned(board, instant) is None) is allowed


@pytest.mark.parametrize(("board", "hms", "phase", "allowed"), TABLE)
def test_same_answers_from_another_timezone(
    board: Board, hms: str, phase: Phase, allowed: bool
) -> None:
    instant = at(hms).astimezone(UTC)
    assert CAL.phase(board, instant) is phase
    assert CAL.cancel_allowed(board, instant) is allowed


@pytest.mark.parametrize(
    ("board", "hms", "reason"),
    [
        (Board.HOSE, "14:30:00", "HOSE in ATC: cancel banned"),
        (Board.HNX, "14:30:00", "HNX in ATC: cancel banned"),
        (Board.DER, "14:30:00", "DER in ATC: cancel banned"),
        (Board.HOSE, "09:00:00", "HOSE in ATO: cancel banned"),
        (Board.HOSE, "11:30:00", "lunch break: cancel banned"),
        (Board.HNX, "14:50:00", "HNX in PLO: cancel banned"),
        (Board.UPCOM, "15:00:00", "UPCOM closed for the day: cancel banned"),
        (Board.HOSE, "08:00:00", "HOSE not open yet: cancel banned"),
    ],
)
def test_why_banned_reasons(board: Board, hms: str, reason: str) -> None:
    assert CAL.why_banned(board, at(hms)) == reason


@pytest.mark.parametrize("board", list(Board))
def test_saturday_and_holiday_are_closed_all_day(board: Board) -> None:
    for day, reason in [
        (SATURDAY, "2026-11-28 is not a trading day (Saturday)"),
        (NATIONAL_DAY, "2026-09-02 is a holiday"),
    ]:
        for hms in ("09:30:00", "13:30:00", "14:29:59"):
            assert CAL.phase(board, at(hms, day)) is Phase.CLOSED
            assert not CAL.cancel_allowed(board, at(hms, day))
            assert CAL.why_banned(board, at(hms, day)) == reason
        assert CAL.cancel_windows(board, day) == []
        assert CAL.cancel_cutoff(board, day) is None


def test_sunday_reason_names_the_day() -> None:
    assert CAL.why_banned(Board.HOSE, at("10:00:00", date(2026, 11, 29))) == (
        "2026-11-29 is not a trading day (Sunday)"
    )


def test_exchange_day_not_utc_day() -> None:
    # 2026-11-27 23:30 UTC is Saturday 06:30 in Vietnam: closed; 02:30 UTC is Friday 09:30.
    assert CAL.phase(Board.HOSE, datetime(2026, 11, 27, 23, 30, tzinfo=UTC)) is Phase.CLOSED
    assert CAL.cancel_allowed(Board.HOSE, datetime(2026, 11, 27, 2, 30, tzinfo=UTC))


def test_naive_datetimes_are_rejected() -> None:
    naive = datetime(2026, 11, 27, 10, 0)
    for call in (CAL.phase, CAL.cancel_allowed, CAL.why_banned):
        with pytest.raises(ValueError, match="naive"):
            call(Board.HOSE, naive)


def test_date_functions_reject_datetimes() -> None:
    with pytest.raises(TypeError):
        CAL.is_trading_day(at("10:00:00"))
    with pytest.raises(TypeError):
        CAL.cancel_cutoff(Board.HOSE, at("10:00:00"))


@pytest.mark.parametrize(
    ("board", "windows"),
    [
        (Board.HOSE, [("09:15", "11:30"), ("13:00", "14:30")]),
        (Board.HNX, [("09:00", "11:30"), ("13:00", "14:30")]),
        (Board.UPCOM, [("09:00", "11:30"), ("13:00", "15:00")]),
        (Board.DER, [("09:00", "11:30"), ("13:00", "14:30")]),
    ],
)
def test_cancel_windows_and_cutoff(board: Board, windows: list[tuple[str, str]]) -> None:
    expected = [(at(a + ":00"), at(b + ":00")) for a, b in windows]
    assert CAL.cancel_windows(board, FRIDAY) == expected
    assert CAL.cancel_cutoff(board, FRIDAY) == expected[-1][1]


@pytest.mark.parametrize("board", list(Board))
def test_windows_agree_with_cancel_allowed_minute_by_minute(board: Board) -> None:
    windows = CAL.cancel_windows(board, FRIDAY)
    instant = at("08:00:00")
    while instant < at("16:00:00"):
        inside = any(start <= instant < end for start, end in windows)
        assert CAL.cancel_allowed(board, instant) is inside, instant
        instant += timedelta(seconds=30)


def test_cutoffs_are_1430_and_upcom_1500() -> None:
    assert CAL.cancel_cutoff(Board.HOSE, FRIDAY) == at("14:30:00")
    assert CAL.cancel_cutoff(Board.HNX, FRIDAY) == at("14:30:00")
    assert CAL.cancel_cutoff(Board.DER, FRIDAY) == at("14:30:00")
    assert CAL.cancel_cutoff(Board.UPCOM, FRIDAY) == at("15:00:00")


def test_trading_days() -> None:
    assert CAL.is_trading_day(FRIDAY)
    assert not CAL.is_trading_day(SATURDAY)
    assert not CAL.is_trading_day(NATIONAL_DAY)
    assert not CAL.is_trading_day(date(2026, 8, 31))
    assert CAL.is_trading_day(date(2026, 11, 24))  # unconfirmed: not shipped


def test_next_trading_day_skips_weekend_and_holidays() -> None:
    assert CAL.next_trading_day(FRIDAY) == date(2026, 11, 30)
    # Fri 28 Aug 2026 -> Mon 31 Aug, Tue 1, Wed 2 Sep are holidays -> Thu 3 Sep.
    assert CAL.next_trading_day(date(2026, 8, 28)) == date(2026, 9, 3)
    # Tết 2026: Fri 13 Feb -> Mon 16..Fri 20 closed -> Mon 23 Feb.
    assert CAL.next_trading_day(date(2026, 2, 13)) == date(2026, 2, 23)


def test_extra_holidays_close_a_day() -> None:
    extra = build_calendar([date(2026, 11, 24)])
    assert not extra.is_trading_day(date(2026, 11, 24))
    assert extra.why_banned(Board.HOSE, at("10:00:00", date(2026, 11, 24))) == (
        "2026-11-24 is a holiday"
    )
    assert CAL.with_holidays([date(2026, 11, 24)]).holidays == extra.holidays


def test_holiday_data_years() -> None:
    assert has_holiday_data(2025)
    assert has_holiday_data(2026)
    assert not has_holiday_data(2027)
    assert CAL.has_holiday_data(2026)
    assert not CAL.has_holiday_data(2027)
    assert not MarketCalendar().has_holiday_data(2026)


def test_shipped_lists_are_complete_weekday_lists() -> None:
    assert len(shipped_holidays(2026)) == 12
    assert len(shipped_holidays(2025)) == 12
    assert date(2026, 11, 24) not in shipped_holidays()
    assert all(d.weekday() < 5 for d in shipped_holidays())


@freeze_time("2026-11-27 07:29:59", tz_offset=0)
def test_frozen_clock_instant_is_just_a_parameter() -> None:
    # 07:29:59 UTC = 14:29:59 in Vietnam: the last allowed HOSE second before ATC.
    now = datetime.now(UTC)
    assert CAL.cancel_allowed(Board.HOSE, now)
    assert not CAL.cancel_allowed(Board.HOSE, now + timedelta(seconds=1))


def test_a_year_the_operator_lists_holidays_for_counts_as_known() -> None:
    """The no-holiday-data warning asks the operator to add the year's holidays to rules.yaml;
    once they have, the warning must stop."""
    assert not build_calendar().has_holiday_data(2031)
    assert build_calendar([date(2031, 1, 1)]).has_holiday_data(2031)


# ---- docs/market.md states the facts the code applies ----------------------------------------

ROOT = REPO
MARKET_DOC = (ROOT / "docs" / "market.md").read_text(encoding="utf-8")
_DOC_BOARDS = {"HOSE": Board.HOSE, "HNX": Board.HNX, "UPCoM": Board.UPCOM, "DER": Board.DER}
_DOC_PHASES = {"ATO": Phase.ATO, "continuous": Phase.CONTINUOUS, "lunch": Phase.LUNCH,
               "ATC": Phase.ATC, "put-through": Phase.PUT_THROUGH, "PLO": Phase.PLO}
_SPAN = re.compile(r"(?:(put-through|PLO) )?(\d\d:\d\d)\u2013(\d\d:\d\d)")


def _doc_section(title: str) -> str:
    return MARKET_DOC.split(f"## {title}\n", 1)[1].split("\n## ", 1)[0]


def test_the_session_table_in_docs_market_is_the_calendars() -> None:
    lines = [ln for ln in _doc_section("Sessions per board").splitlines() if ln.startswith("|")]
    header = [c.strip() for c in lines[0].strip("|").split("|")]
    rows = {}
    for line in lines[2:]:
        board, *cells = (c.strip() for c in line.strip("|").split("|"))
        sessions = []
        for column, cell in zip(header[1:], cells, strict=True):
            if cell == "none":
                continue
            m = _SPAN.fullmatch(cell)
            assert m, (board, column, cell)
            sessions.append((time.fromisoformat(m[2]), time.fromisoformat(m[3]),
                             _DOC_PHASES[m[1] or column]))
        rows[_DOC_BOARDS[board]] = sessions
    assert set(rows) == set(Board)
    for board, documented in rows.items():
        code = [(s.start, s.end, s.phase) for s in CAL.sessions(board, FRIDAY)]
        assert documented == code, board


def test_the_holidays_in_docs_market_are_the_shipped_ones() -> None:
    section = _doc_section("Trading days and holidays")
    for year in (2025, 2026):
        line = next(ln for ln in section.splitlines() if ln.strip().startswith(f"- {year}:"))
        days = set()
        for item in line.split(":", 1)[1].strip().rstrip(".").split(";"):
            m = re.fullmatch(r"(\d+)(?:\u2013(\d+))? (\w{3})(?: \(.*\))?", item.strip())
            assert m, item
            month = datetime.strptime(m[3], "%b").month
            for day in range(int(m[1]), int(m[2] or m[1]) + 1):
                days.add(date(year, month, day))
        assert days == shipped_holidays(year), year


def test_market_and_evaluate_cite_only_files_in_this_repository() -> None:
    """The calendar once cited a notes file that is not here; every cited doc must exist."""
    cited = set()
    for package in ("market", "evaluate"):
        for path in (ROOT / "guard" / package).iterdir():
            if path.suffix in (".py", ".yaml"):
                text = path.read_text(encoding="utf-8")
                assert "shared/" not in text, path
                cited |= set(re.findall(r"docs/[\w-]+\.md", text))
    assert "docs/market.md" in cited
    assert all((ROOT / doc).is_file() for doc in cited), cited
