"""The day's report from a real journal: every figure, in English and in Vietnamese."""

from __future__ import annotations

from datetime import date
from decimal import Decimal
from pathlib import Path

from kit.report import DAY

from guard.record.journal import Journal
from guard.report.command import day_report
from guard.report.summary import render, summarise

EN = """\
ssi-guard report for 2026-11-23 (exchange day)
Cancelled 3 orders, released 42,780,000 VND and 45,968,000 VND of futures margin.

Account 0001234: 4 cancels (cancelled 1, partially cancelled 1, filled first 1, no outcome yet 1); released 42,780,000 VND
  rule close: partially cancelled 1, no outcome yet 1
  rule stale: cancelled 1, partially cancelled 1, filled first 1
  no outcome yet: order 7 (rule close): -

Account 0001238: 2 cancels (failed 1, unconfirmed 1); released 0 VND
  rule stale: failed 1, unconfirmed 1
  unconfirmed: order 4 SHS (rule stale): no final status within 30s
  failed: order 5 PVS (rule stale): broker refused

Account 0005678: 1 cancel (cancelled 1); released 45,968,000 VND of futures margin
  rule close: cancelled 1

Circuit breaker trips: 1
  11:00:00: 250 cancels wanted, limit 200; nothing cancelled
Missed sweeps: 1
  pre-close:close (due 14:25:00)
Heartbeat losses: 2
  rule strategy-a: lost at 09:29:58, back after 2 min 5 s
  rule strategy-b: lost at 13:04:50, not back yet
Orders given up on (cancel them by hand): 1
  0001238 order 4 SHS
"""  # noqa: E501

VI = """\
Báo cáo ssi-guard ngày 23/11/2026 (ngày giao dịch)
Đã hủy 3 lệnh, giải phóng 42.780.000 ₫ và 45.968.000 ₫ ký quỹ phái sinh.

Tài khoản 0001234: 4 lệnh hủy (đã hủy 1, hủy một phần 1, đã khớp trước khi hủy 1, chưa có kết quả 1); giải phóng 42.780.000 ₫
  quy tắc close: hủy một phần 1, chưa có kết quả 1
  quy tắc stale: đã hủy 1, hủy một phần 1, đã khớp trước khi hủy 1
  chưa có kết quả: lệnh 7 (quy tắc close): -

Tài khoản 0001238: 2 lệnh hủy (thất bại 1, chưa xác nhận 1); giải phóng 0 ₫
  quy tắc stale: thất bại 1, chưa xác nhận 1
  chưa xác nhận: lệnh 4 SHS (quy tắc stale): no final status within 30s
  thất bại: lệnh 5 PVS (quy tắc stale): broker refused

Tài khoản 0005678: 1 lệnh hủy (đã hủy 1); giải phóng 45.968.000 ₫ ký quỹ phái sinh
  quy tắc close: đã hủy 1

Số lần ngắt cầu dao: 1
  11:00:00: cần hủy 250 lệnh, giới hạn 200; không hủy lệnh nào
Số lượt quét bị bỏ lỡ: 1
  pre-close:close (đến hạn lúc 14:25:00)
Số lần mất tín hiệu sống: 2
  quy tắc strategy-a: mất lúc 09:29:58, có lại sau 2 phút 5 giây
  quy tắc strategy-b: mất lúc 13:04:50, chưa có lại
Lệnh đã ngừng thử hủy (hãy hủy thủ công): 1
  0001238 lệnh 4 SHS
"""  # noqa: E501


def test_the_day_in_english_and_in_vietnamese(day_journal: Path) -> None:
    j = Journal(day_journal, read_only=True)
    try:
        assert day_report(j, DAY.date(), "en") == EN
        assert day_report(j, DAY.date(), "vi") == VI
    finally:
        j.close()


def test_the_figures_as_data(day_journal: Path) -> None:
    j = Journal(day_journal, read_only=True)
    try:
        s = summarise(DAY.date(), j.cancels_on(DAY.date()), j.events_on(DAY.date()))
    finally:
        j.close()
    assert s.cancelled == 3
    assert s.released == Decimal("42780000") and s.margin == Decimal("45968000")
    assert s.counts() == {
        "day": "2026-11-23", "cancelled": 3, "released_vnd": "42780000",
        "margin_released_vnd": "45968000",
        "outcomes": {"cancelled": 2, "partially_cancelled": 1, "filled_first": 1,
                     "failed": 1, "unconfirmed": 1, "pending": 1},
        "breaker_trips": 1, "missed_sweeps": 1, "heartbeat_losses": 2, "given_up": 1}


def test_the_days_around_it_are_their_own(day_journal: Path) -> None:
    j = Journal(day_journal, read_only=True)
    try:
        before = summarise(date(2026, 11, 22), j.cancels_on(date(2026, 11, 22)),
                           j.events_on(date(2026, 11, 22)))
        empty = summarise(date(2026, 11, 20), j.cancels_on(date(2026, 11, 20)),
                          j.events_on(date(2026, 11, 20)))
    finally:
        j.close()
    assert before.cancelled == 1 and len(before.trips) == 1
    assert render(empty, "vi") == (
        "Báo cáo ssi-guard ngày 20/11/2026 (ngày giao dịch)\n"
        "Không có lệnh hủy nào được gửi.\n\n"
        "Số lần ngắt cầu dao: 0\nSố lượt quét bị bỏ lỡ: 0\nSố lần mất tín hiệu sống: 0\n")
    assert render(empty, "en").splitlines()[1] == "No cancel was sent."


def test_an_order_given_up_on_is_one_line_and_repeated_trips_are_counted_not_listed() -> None:
    """Every poll that still selects a given-up order says so again, and a breaker can trip
    every poll: the report names the order once and lists the first trips only."""
    from datetime import timedelta

    from guard.record.journal import EventRow
    from guard.report.summary import LISTED

    given_up = [EventRow("cancel.given_up", DAY.replace(hour=10) + timedelta(seconds=30 * i),
                         "0001238", "stale", {"order_id": "4", "symbol": "SHS"})
                for i in range(8)]
    trips = [EventRow("breaker.tripped", DAY.replace(hour=11) + timedelta(seconds=30 * i),
                      None, None, {"matches": 250, "limit": 200}) for i in range(LISTED + 7)]
    text = render(summarise(DAY.date(), [], [*given_up, *trips]), "en")
    assert text.count("0001238 order 4 SHS") == 1
    assert "Orders given up on (cancel them by hand): 1" in text
    assert f"Circuit breaker trips: {LISTED + 7}" in text
    assert text.count("cancels wanted, limit 200") == LISTED and "... and 7 more" in text
    assert "... và 7 lần khác" in render(summarise(DAY.date(), [], trips), "vi")


def test_a_late_trip_is_not_reported_as_nothing_cancelled() -> None:
    """A pre-close whose count passed the limit after some accounts had started: the report
    says how many had started, in both languages, and never "nothing cancelled"."""
    from guard.record.journal import EventRow

    trips = [EventRow("breaker.tripped", DAY.replace(hour=14, minute=25), None, None,
                      {"matches": 27, "limit": 20, "late": True, "started": 11,
                       "accounts_started": ["0001234"]}),
             EventRow("breaker.tripped", DAY.replace(hour=14, minute=26), None, None,
                      {"matches": 250, "limit": 200})]
    en = render(summarise(DAY.date(), [], trips), "en")
    assert "14:25:00: 27 cancels wanted, limit 20; 11 had started before the count passed it, " \
           "no more were sent" in en
    assert "14:26:00: 250 cancels wanted, limit 200; nothing cancelled" in en
    assert en.count("nothing cancelled") == 1
    vi = render(summarise(DAY.date(), [], trips), "vi")
    assert "11 lệnh hủy đã được gửi trước khi vượt giới hạn" in vi
    assert vi.count("không hủy lệnh nào") == 1


def test_a_trip_counting_an_earlier_late_trip_lists_both_figures() -> None:
    from guard.record.journal import EventRow

    trips = [EventRow("breaker.tripped", DAY.replace(hour=14, minute=25, second=30), None, None,
                      {"matches": 16, "limit": 20, "carried": 11})]
    en = render(summarise(DAY.date(), [], trips), "en")
    assert ("14:25:30: 16 cancels wanted + 11 sent earlier by a late trip, limit 20; nothing "
            "cancelled") in en
    vi = render(summarise(DAY.date(), [], trips), "vi")
    assert "cần hủy 16 lệnh + 11 lệnh đã gửi trước đó do ngắt muộn" in vi


def test_a_late_trip_while_carrying_lists_both_figures() -> None:
    from guard.record.journal import EventRow

    trips = [EventRow("breaker.tripped", DAY.replace(hour=14, minute=26), None, None,
                      {"matches": 13, "limit": 20, "late": True, "started": 2,
                       "carried": 11})]
    en = render(summarise(DAY.date(), [], trips), "en")
    assert ("14:26:00: 13 cancels wanted + 11 sent earlier by a late trip, limit 20; 2 had "
            "started before the count passed it, no more were sent") in en
    vi = render(summarise(DAY.date(), [], trips), "vi")
    assert "cần hủy 13 lệnh + 11 lệnh đã gửi trước đó do ngắt muộn" in vi
    assert "2 lệnh hủy đã được gửi trước khi vượt giới hạn" in vi
