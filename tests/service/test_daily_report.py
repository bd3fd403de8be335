"""``alerts.daily_report_at``: the day's report as an alert, once per trading day, at the exact
second (market time), never on a weekend or a holiday; in English or Vietnamese. The last two
tests run it inside ``operations()`` around a real daemon that cancelled orders on the
simulator, with the webhook on loopback."""

from __future__ import annotations

import asyncio
from datetime import date, datetime, time, timedelta
from pathlib import Path
from typing import Any

import pytest
from kit import ACCT, OTHER, STALE
from kit.ops import Receiver, job, rules_yaml, running_guard

from guard.clock import EXCHANGE_TZ, FakeClock
from guard.market.holidays import build_calendar
from guard.record.journal import Journal
from guard.report.i18n import Language
from guard.service.alerts import Alerter
from guard.service.ops import DailyReport
from guard.simulator.control import Simulator

MONDAY = date(2026, 11, 23)
SATURDAY = date(2026, 11, 28)
HOLIDAY = date(2026, 9, 2)  # National Day, on the shipped calendar (a Wednesday)


def instant(d: date, hh: int, mm: int, ss: int = 0) -> datetime:
    return datetime.combine(d, time(hh, mm, ss), tzinfo=EXCHANGE_TZ)


def one_cancel(j: Journal, d: date) -> None:
    t = instant(d, 10, 0)
    s = j.start_sweep(t, "poll", t, False)
    [i] = j.intents(s, t, "k", [(ACCT, "1", "stale", "26900", "B", "LO", 1000, 0)])
    j.outcome(i, t, ACCT, "1", "cancelled", 1000, "CL", "")
    j.event(t, t, "cash.released", ACCT, None, {"withdrawable_delta": "26900000"})


@pytest.fixture
def journal(tmp_path: Path) -> Any:
    j = Journal(tmp_path / "journal.sqlite3")
    for d in (MONDAY, MONDAY + timedelta(days=1), SATURDAY, HOLIDAY):
        one_cancel(j, d)
    yield j
    j.close()


def daily(journal: Journal, clock: FakeClock, language: Language) -> DailyReport:
    return DailyReport(time(15, 5), clock=clock, calendar=lambda: build_calendar(()),
                       journal=journal, alerter=Alerter(None, language=language),
                       language=language)


def test_exactly_at_15_05_once_a_trading_day(journal: Journal) -> None:
    clock = FakeClock(instant(MONDAY, 15, 4, 59))
    d = daily(journal, clock, "vi")
    assert d.due(clock()) is None
    assert not d.tick() and d.alerter.sent == []
    clock.set(instant(MONDAY, 15, 5, 0))
    assert d.due(clock()) == MONDAY
    assert d.tick()
    clock.set(instant(MONDAY, 15, 5, 1))
    assert not d.tick()  # once per day
    clock.set(instant(MONDAY, 23, 59, 59))
    assert not d.tick()
    [sent] = d.alerter.sent
    assert (sent.condition, sent.state) == ("daily_report", "report")
    assert sent.summary.splitlines()[:2] == [
        "Báo cáo ssi-guard ngày 23/11/2026 (ngày giao dịch)",
        "Đã hủy 1 lệnh, giải phóng 26.900.000 ₫."]
    assert sent.details["day"] == "2026-11-23" and sent.details["cancelled"] == 1
    # The next trading day gets its own, at its own 15:05:00.
    tuesday = MONDAY + timedelta(days=1)
    clock.set(instant(tuesday, 15, 4, 59))
    assert not d.tick()
    clock.set(instant(tuesday, 15, 5, 0))
    assert d.tick()
    assert d.alerter.sent[1].summary.startswith("Báo cáo ssi-guard ngày 24/11/2026")


@pytest.mark.parametrize("day", [SATURDAY, SATURDAY + timedelta(days=1), HOLIDAY])
def test_never_on_a_weekend_or_a_holiday(journal: Journal, day: date) -> None:
    clock = FakeClock(instant(day, 15, 5, 0))
    d = daily(journal, clock, "en")
    for second in range(3):
        clock.set(instant(day, 15, 5, second))
        assert not d.tick()
    assert d.alerter.sent == []


def test_late_by_under_an_hour_still_sent_later_waits_for_the_next_day(
        journal: Journal) -> None:
    clock = FakeClock(instant(MONDAY, 16, 4, 59))  # started (or back) 59:59 late
    d = daily(journal, clock, "en")
    assert d.tick()
    assert d.alerter.sent[0].summary.splitlines()[:2] == [
        "ssi-guard report for 2026-11-23 (exchange day)",
        "Cancelled 1 order, released 26,900,000 VND."]
    late = daily(journal, FakeClock(instant(MONDAY, 16, 5, 0)), "en")
    assert not late.tick() and late.alerter.sent == []


def test_a_journal_that_cannot_be_read_is_logged_and_not_retried(tmp_path: Path) -> None:
    j = Journal(tmp_path / "journal.sqlite3")
    j.close()
    clock = FakeClock(instant(MONDAY, 15, 5, 0))
    d = daily(j, clock, "en")
    assert not d.tick()
    assert d.sent_for == MONDAY and d.alerter.sent == []
    clock.set(instant(MONDAY, 15, 5, 1))
    assert not d.tick()


# ---- inside operations(), around a daemon that really cancelled orders ----------------------


@pytest.mark.parametrize(("language", "title", "headline"), [
    ("vi", "Báo cáo ssi-guard ngày 23/11/2026 (ngày giao dịch)",
     "Đã hủy 3 lệnh, giải phóng 68.850.000 ₫."),
    ("en", "ssi-guard report for 2026-11-23 (exchange day)",
     "Cancelled 3 orders, released 68,850,000 VND."),
])
def test_the_daemon_sends_the_days_report_at_15_05(
        sim: Simulator, market_clock: FakeClock, tmp_path: Path, language: str, title: str,
        headline: str) -> None:
    sim.seed_order(ACCT, "SSI", "B", 27_000, 1_000, age=STALE)
    sim.seed_order(ACCT, "FPT", "B", 95_500, 300, age=STALE)
    sim.seed_order(OTHER, "HPG", "B", 26_400, 500, age=STALE)

    async def main() -> list[dict[str, Any]]:
        async with Receiver() as hook:
            text = rules_yaml(webhook=hook.url()).replace(
                "  format: generic\n",
                f'  format: generic\n  language: {language}\n  daily_report_at: "15:05"\n')
            async with running_guard(sim, tmp_path, text, market_clock, metrics_port=None,
                                     report_tick_s=0.01) as (daemon, ops):
                report = await daemon.fire(job(daemon))
                assert report is not None and report.result == "ok"
                assert ops.daily is not None
                market_clock.set(instant(MONDAY, 15, 4, 59))
                await asyncio.sleep(0.2)  # 20 ticks at 15:04:59: nothing
                assert [b for b in hook.bodies if b["condition"] == "daily_report"] == []
                market_clock.set(instant(MONDAY, 15, 5, 0))
                await hook.wait_for(1)
                await asyncio.sleep(0.2)  # and no second one
            return [b for b in hook.bodies if b["condition"] == "daily_report"]

    [body] = asyncio.run(main())
    assert body["state"] == "report"
    assert body["summary"].splitlines()[:2] == [title, headline]
    assert body["details"]["cancelled"] == 3
    assert body["details"]["released_vnd"] == "68850000"
