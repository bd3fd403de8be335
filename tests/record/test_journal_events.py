"""The events table and its recorder: the log events the day's report needs land in the
journal, stamped with the market day; a journal that fails is said once per streak and never
breaks the log call (and so the sweep) that carried the event."""

from __future__ import annotations

import io
import json
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import structlog

from guard.clock import EXCHANGE_TZ, FakeClock
from guard.errors import JournalError
from guard.record.journal import RECORDED_EVENTS, EventRecorder, Journal
from guard.record.log import add_observers, remove_observers
from guard.record.redact import MASK

MARKET = datetime(2026, 11, 23, 14, 25, tzinfo=EXCHANGE_TZ)


class FlakyJournal(Journal):
    """A real journal whose event writes fail while ``broken`` (as a full disk makes them)."""

    broken = False

    def event(self, *args: Any, **kwargs: Any) -> None:
        if self.broken:
            raise JournalError(f"cannot write the journal {self.path}: database or disk is full")
        super().event(*args, **kwargs)


def lines(buffer: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(x) for x in buffer.getvalue().splitlines() if x.startswith("{")]


def test_recorded_events_land_in_the_journal_on_the_market_day(
        tmp_path: Path, captured: io.StringIO) -> None:
    j = Journal(tmp_path / "j.sqlite3")
    # A rehearsal: the market clock is a day ahead of the wall clock.
    recorder = EventRecorder(j, FakeClock(MARKET), wall=FakeClock(MARKET - timedelta(days=1)))
    add_observers(recorder)
    try:
        log = structlog.get_logger("guard")
        log.error("breaker.tripped", matches=250, limit=200, rules={"stale": 250})
        log.info("cash.released", account="0001234", basis="equity",
                 withdrawable_delta="27000000", expected="27000000", mismatch=False)
        log.warning("heartbeat.lost", rule="strategy-a", file="/run/a/hb",
                    stale_since="2026-11-23T07:24:50+00:00", age_s=None)
        log.info("heartbeat.resumed", rule="strategy-a", lost_for_s=12.5)
        log.error("schedule.missed", job="pre-close:close", scheduled="x", critical=True)
        log.error("cancel.given_up", account="0001238", order_id="4", symbol="SHS",
                  access_token="s3cr3t-token-value-xyz")
        log.info("sweep.finished", result="ok")  # not one the report reads
        log.info("order.matched", order_id="1")
    finally:
        remove_observers(recorder)
    rows = j.query("SELECT at, market_time, kind, account, rule, data FROM events ORDER BY id")
    assert [r[2] for r in rows] == ["breaker.tripped", "cash.released", "heartbeat.lost",
                                    "heartbeat.resumed", "schedule.missed", "cancel.given_up"]
    assert {r[2] for r in rows} == RECORDED_EVENTS
    assert {r[1] for r in rows} == {"2026-11-23T14:25:00.000+07:00"}
    assert {r[0] for r in rows} == {"2026-11-22T14:25:00.000+07:00"}
    assert [(r[3], r[4]) for r in rows] == [(None, None), ("0001234", None), (None, "strategy-a"),
                                            (None, "strategy-a"), (None, None), ("0001238", None)]
    breaker = json.loads(rows[0][5])
    assert breaker["matches"] == 250 and breaker["rules"] == {"stale": 250}
    assert "event" not in breaker and "timestamp" not in breaker
    assert json.loads(rows[2][5])["age_s"] is None
    # Stored redacted, like the log line.
    assert json.loads(rows[5][5])["access_token"] == MASK
    assert "s3cr3t-token-value-xyz" not in rows[5][5]
    [day] = [e for e in j.events_on(MARKET.date()) if e.kind == "heartbeat.resumed"]
    assert day.data["lost_for_s"] == 12.5 and day.market_time == MARKET
    assert j.events_on(MARKET.date() - timedelta(days=1)) == []
    j.close()


def test_a_failing_journal_is_said_once_per_streak_and_never_raised(
        tmp_path: Path, captured: io.StringIO) -> None:
    j = FlakyJournal(tmp_path / "j.sqlite3")
    recorder = EventRecorder(j, FakeClock(MARKET))
    add_observers(recorder)
    try:
        log = structlog.get_logger("guard")
        j.broken = True
        for n in range(3):  # three log calls while the disk is full: each returns normally
            log.error("breaker.tripped", matches=n, limit=1)
        j.broken = False
        log.error("breaker.tripped", matches=10, limit=1)  # written: the streak ends
        j.broken = True
        log.error("breaker.tripped", matches=11, limit=1)  # a new streak: said again
        log.error("breaker.tripped", matches=12, limit=1)
    finally:
        remove_observers(recorder)
    events = lines(captured)
    said = [e for e in events if e["event"] == "journal.write_failed"]
    assert len(said) == 2
    assert said[0]["step"] == "event" and said[0]["event_kind"] == "breaker.tripped"
    assert said[0]["error"].endswith("database or disk is full")
    assert said[0]["path"] == str(tmp_path / "j.sqlite3")
    # Every event carried still reached the log, in order, around the failure lines.
    assert [e["matches"] for e in events if e["event"] == "breaker.tripped"] == [
        0, 1, 2, 10, 11, 12]
    assert j.query("SELECT kind, data FROM events") == [
        ("breaker.tripped", '{"limit": 1, "matches": 10}')]
    j.close()


def test_a_closed_journal_never_breaks_the_log_call(tmp_path: Path,
                                                    captured: io.StringIO) -> None:
    j = Journal(tmp_path / "j.sqlite3")
    recorder = EventRecorder(j, FakeClock(MARKET))
    j.close()
    add_observers(recorder)
    try:
        structlog.get_logger("guard").error("breaker.tripped", matches=3, limit=1)
    finally:
        remove_observers(recorder)
    events = lines(captured)
    assert [e["event"] for e in events] == ["journal.write_failed", "breaker.tripped"]
    assert recorder.failing


def test_an_existing_journal_gains_the_table_and_keeps_its_rows(tmp_path: Path) -> None:
    import sqlite3

    from guard.record.journal import SCHEMA

    path = tmp_path / "j.sqlite3"
    db = sqlite3.connect(path)
    db.executescript(SCHEMA.split("CREATE TABLE IF NOT EXISTS events")[0])
    db.execute("INSERT INTO sweeps VALUES (1, 'a', 'poll', '2026-11-23T10:00:00+07:00', 0)")
    db.commit()
    db.close()
    j = Journal(path)
    try:
        assert j.query("SELECT trigger FROM sweeps") == [("poll",)]
        assert j.events_on(MARKET.date()) == []
        j.event(MARKET, MARKET, "breaker.tripped", None, None, {"matches": 1})
        assert len(j.events_on(MARKET.date())) == 1
        assert j.integrity_ok()
    finally:
        j.close()


def test_a_figure_that_contains_a_secrets_digits_is_kept_and_the_secret_is_not(
        tmp_path: Path, captured: io.StringIO) -> None:
    """A six-digit OTP is a registered secret, and an amount can contain its digits
    (55,650,000 holds 650000): the amount is not masked, or a day's cash released would
    silently shrink in the report; the OTP standing alone still is."""
    from guard.record.redact import secrets_registry

    j = Journal(tmp_path / "j.sqlite3")
    recorder = EventRecorder(j, FakeClock(MARKET), wall=FakeClock(MARKET))
    secrets_registry.add("650000")
    add_observers(recorder)
    try:
        structlog.get_logger("guard").info(
            "cash.released", account="0001234", basis="equity",
            withdrawable_delta="55650000.0", expected="55650000", note="otp 650000 here")
    finally:
        remove_observers(recorder)
        secrets_registry.clear()
    [(data,)] = j.query("SELECT data FROM events")
    stored = json.loads(data)
    assert stored["withdrawable_delta"] == "55650000.0" and stored["expected"] == "55650000"
    assert "650000" not in stored["note"] and MASK in stored["note"]
