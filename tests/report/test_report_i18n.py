"""The words people read: Vietnamese numbers and amounts, English ones, spans of time."""

from __future__ import annotations

from datetime import date
from decimal import Decimal

import pytest

from guard.report import i18n


def test_amounts_the_vietnamese_way_and_the_english_way() -> None:
    assert i18n.amount(146_060_000, "vi") == "146.060.000 ₫"
    assert i18n.amount(146_060_000, "en") == "146,060,000 VND"
    assert i18n.amount(Decimal("1234567.5"), "vi") == "1.234.567,50 ₫"
    assert i18n.amount("1234567.5", "en") == "1,234,567.50 VND"
    assert i18n.amount(0, "vi") == "0 ₫"
    assert i18n.amount(-5_000, "vi") == "-5.000 ₫"


def test_numbers_and_what_is_no_number() -> None:
    assert i18n.number(12.5, "vi", 1) == "12,5"
    assert i18n.number(12.5, "en", 1) == "12.5"
    assert i18n.number(999, "vi") == "999"
    assert i18n.number("n/a", "vi") == "n/a"
    assert i18n.number("NaN", "en") == "NaN"


@pytest.mark.parametrize(("seconds", "en", "vi"), [
    (2.46, "2.5 s", "2,5 giây"),
    (45, "45 s", "45 giây"),
    (125.2, "2 min 5 s", "2 phút 5 giây"),
    (120, "2 min", "2 phút"),
    (3780, "1 h 3 min", "1 giờ 3 phút"),
    (None, "None", "None"),
])
def test_durations(seconds: float | None, en: str, vi: str) -> None:
    assert i18n.duration(seconds, "en") == en
    assert i18n.duration(seconds, "vi") == vi


def test_words_with_full_diacritics() -> None:
    assert i18n.text("report.headline", "vi", orders=i18n.count(12, "order", "vi"),
                     amount=i18n.amount(146_060_000, "vi"),
                     margin="") == "Đã hủy 12 lệnh, giải phóng 146.060.000 ₫."
    assert i18n.outcome("partially_cancelled", "vi") == "hủy một phần"
    assert i18n.outcome("unconfirmed", "vi") == "chưa xác nhận"
    assert i18n.outcome("something_new", "vi") == "something_new"
    assert i18n.state("firing", "vi") == "CẢNH BÁO"
    assert i18n.state("resolved", "en") == "RESOLVED"
    assert i18n.day(date(2026, 11, 23), "vi") == "23/11/2026"
    assert i18n.day(date(2026, 11, 23), "en") == "2026-11-23"


def test_a_brace_in_a_value_is_not_a_template() -> None:
    assert i18n.text("sweep_failed", "en", job="{x}", error="{0}") == "sweep {x} failed: {0}"


def test_every_message_exists_in_both_languages_with_the_same_fields() -> None:
    import string

    for key, (en, vi) in i18n._TEXTS.items():
        fields = {f for _, f, _, _ in string.Formatter().parse(en) if f}
        assert fields == {f for _, f, _, _ in string.Formatter().parse(vi) if f}, key
        assert en != vi or key == "daily_report", key
