"""The exchange holiday list shipped with ssi-guard, as data (``holidays.yaml`` beside this file).

No maintained package has a HOSE calendar (``holidays.VN`` lists public holidays, which differ),
so the exchange's own notices ship as data the operator can extend from rules.yaml. Reading
package data is the only I/O here; nothing is logged: the daemon asks ``has_holiday_data`` and
warns itself.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import date
from functools import lru_cache
from importlib import resources
from types import MappingProxyType

import yaml

from guard.market.calendar import MarketCalendar

__all__ = [
    "build_calendar",
    "has_holiday_data",
    "shipped_holiday_names",
    "shipped_holidays",
    "shipped_years",
]


@lru_cache(maxsize=1)
def _load() -> Mapping[int, Mapping[date, str]]:
    """Parse the shipped file once. A malformed file is our bug: fail loudly, at import time."""
    text = resources.files("guard.market").joinpath("holidays.yaml").read_text(encoding="utf-8")
    raw = yaml.safe_load(text)
    years: dict[int, Mapping[date, str]] = {}
    for year, entries in raw["years"].items():
        days: dict[date, str] = {}
        for entry in entries:
            day = date.fromisoformat(entry["date"])
            if day.year != year or day in days:
                raise RuntimeError(f"guard/market/holidays.yaml: bad entry {entry!r} in {year}")
            days[day] = str(entry["name"])
        years[int(year)] = MappingProxyType(days)
    return MappingProxyType(years)


def shipped_years() -> frozenset[int]:
    """The years whose exchange holiday list ships with ssi-guard."""
    return frozenset(_load())


def has_holiday_data(year: int) -> bool:
    """Whether ssi-guard knows the exchange holidays of ``year``; if not, the daemon must warn."""
    return year in _load()


def shipped_holidays(year: int | None = None) -> frozenset[date]:
    """The shipped holiday dates, of one year or of all shipped years."""
    data = _load()
    if year is not None:
        return frozenset(data.get(year, {}))
    return frozenset(d for days in data.values() for d in days)


def shipped_holiday_names() -> Mapping[date, str]:
    """Each shipped holiday with its name, for messages and docs."""
    return MappingProxyType({d: n for days in _load().values() for d, n in days.items()})


def build_calendar(extra_holidays: Iterable[date] = ()) -> MarketCalendar:
    """The calendar the daemon uses: shipped holidays plus the operator's ``holidays:``."""
    extra = set(extra_holidays)
    # A year the operator lists holidays for counts as known: that is what the "no holiday
    # data" warning asks them to do.
    return MarketCalendar(shipped_holidays() | extra,
                          data_years=shipped_years() | {d.year for d in extra})
