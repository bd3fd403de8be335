"""Cross-check the shipped exchange holidays against ``holidays.VN`` (public holidays).

The two lists are not the same thing: the exchange closes on weekdays only, and the exchange
list is what HOSE announces. Every known difference is listed below with why; a NEW difference
(a list changed, or ``holidays`` changed its data) fails the test so a person looks at it.
"""

from __future__ import annotations

from datetime import date

import holidays
import pytest

from guard.market.holidays import shipped_holidays, shipped_years

YEARS = (2025, 2026)

# In holidays.VN, not in the exchange list.
ONLY_PUBLIC: dict[date, str] = {
    # 4th day of Tết 2025 is a Saturday: no session anyway, so the exchange does not list it.
    date(2025, 2, 1): "Saturday",
    # Hùng Kings' day 2026 is a Sunday; the exchange closes the observed Monday 27 Apr, which
    # both lists have.
    date(2026, 4, 26): "Sunday",
    # "Vietnam Cultural Day" is a public holiday from 2026; HOSE has not confirmed a closure.
    # Operators add it with `holidays: ["2026-11-24"]` in rules.yaml once it is confirmed.
    date(2026, 11, 24): "unconfirmed for the exchange",
}

# In the exchange list, not in holidays.VN: none known today.
ONLY_EXCHANGE: dict[date, str] = {}


def public(year: int) -> set[date]:
    return set(holidays.VN(years=year))


@pytest.mark.parametrize("year", YEARS)
def test_no_new_differences(year: int) -> None:
    shipped = shipped_holidays(year)
    only_public = public(year) - shipped
    only_exchange = shipped - public(year)
    assert only_public == {d for d in ONLY_PUBLIC if d.year == year}
    assert only_exchange == {d for d in ONLY_EXCHANGE if d.year == year}


def test_documented_weekend_differences_really_are_weekends() -> None:
    for day, why in ONLY_PUBLIC.items():
        if why in {"Saturday", "Sunday"}:
            assert day.strftime("%A") == why


def test_every_shipped_year_is_cross_checked() -> None:
    assert set(YEARS) == shipped_years()


def test_unconfirmed_cultural_day_is_not_shipped() -> None:
    assert date(2026, 11, 24) in public(2026)
    assert date(2026, 11, 24) not in shipped_holidays()
