"""``run_report``: the language from rules.yaml, the day from the clock or --day, the journal
read-only (beside a daemon writing it), and one clear line with exit 5 for a bad journal."""

from __future__ import annotations

import argparse
import hashlib
import io
import sqlite3
from datetime import UTC, datetime
from pathlib import Path

import pytest
from kit.report import DAY, at

from guard.clock import FakeClock
from guard.errors import JournalError
from guard.record.journal import SCHEMA, Journal
from guard.report.command import day_arg, run_report


def rules(tmp_path: Path, language: str | None) -> str:
    path = tmp_path / "rules.yaml"
    alerts = f"alerts: {{language: {language}}}\n" if language else ""
    path.write_text('version: 1\naccounts: ["0001234"]\n' + alerts
                    + "rules:\n  - name: stale\n    max_age: 15m\n", encoding="utf-8")
    return str(path)


def env(journal: Path) -> dict[str, str]:
    return {"SSI_GUARD_STATE_DIR": str(journal.parent)}


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_language_from_rules_and_day_from_the_exchange_clock(
        day_journal: Path, tmp_path: Path) -> None:
    # 23:30 UTC on the 22nd is already the 23rd in Vietnam: the default day is the exchange's.
    clock = FakeClock(datetime(2026, 11, 22, 23, 30, tzinfo=UTC))
    for language, title, headline in [
        ("vi", "Báo cáo ssi-guard ngày 23/11/2026 (ngày giao dịch)",
         "Đã hủy 3 lệnh, giải phóng 42.780.000 ₫ và 45.968.000 ₫ ký quỹ phái sinh."),
        (None, "ssi-guard report for 2026-11-23 (exchange day)",
         "Cancelled 3 orders, released 42,780,000 VND and 45,968,000 VND of futures margin."),
    ]:
        out = io.StringIO()
        assert run_report(rules(tmp_path, language), None, out, clock=clock,
                          env=env(day_journal)) == 0
        assert out.getvalue().splitlines()[:2] == [title, headline]


def test_day_flag_picks_another_day(day_journal: Path, tmp_path: Path) -> None:
    out = io.StringIO()
    run_report(rules(tmp_path, "en"), DAY.date().replace(day=24), out,
               env=env(day_journal))
    assert out.getvalue().splitlines()[:2] == [
        "ssi-guard report for 2026-11-24 (exchange day)", "Cancelled 1 order, released 0 VND."]


def test_beside_a_daemon_that_is_writing_the_journal(day_journal: Path, tmp_path: Path) -> None:
    daemon = Journal(day_journal)  # the daemon's handle: open, in WAL mode, writing
    try:
        daemon.event(at(15, 0), at(15, 0), "breaker.tripped", None, None,
                     {"matches": 7, "limit": 5})
        out = io.StringIO()
        run_report(rules(tmp_path, "en"), DAY.date(), out, env=env(day_journal))
        assert "Circuit breaker trips: 2" in out.getvalue()
        assert "  15:00:00: 7 cancels wanted, limit 5; nothing cancelled" in out.getvalue()
        daemon.event(at(15, 1), at(15, 1), "breaker.tripped", None, None,
                     {"matches": 8, "limit": 5})
        again = io.StringIO()
        run_report(rules(tmp_path, "en"), DAY.date(), again, env=env(day_journal))
        assert "Circuit breaker trips: 3" in again.getvalue()
    finally:
        daemon.close()


def test_the_report_never_writes(day_journal: Path, tmp_path: Path) -> None:
    before = digest(day_journal)
    run_report(rules(tmp_path, "vi"), DAY.date(), io.StringIO(), env=env(day_journal))
    assert digest(day_journal) == before
    ro = Journal(day_journal, read_only=True)
    try:
        with pytest.raises(JournalError, match="cannot write"):
            ro.event(at(15, 0), at(15, 0), "breaker.tripped", None, None, {})
    finally:
        ro.close()
    assert digest(day_journal) == before


def test_a_journal_older_than_the_events_table(tmp_path: Path) -> None:
    """A journal written before the events table: its cancels are reported, it is not
    migrated by the report (read-only), and the daemon's next open adds the table."""
    state = tmp_path / "state"
    state.mkdir(mode=0o700)
    path = state / "journal.sqlite3"
    old = SCHEMA.split("CREATE TABLE IF NOT EXISTS events")[0]
    db = sqlite3.connect(path)
    db.executescript(old)
    db.execute("INSERT INTO sweeps VALUES (1, '2026-11-23T10:00:01.000+07:00', 'poll', "
               "'2026-11-23T10:00:00.000+07:00', 0)")
    db.execute("INSERT INTO intents VALUES (1, 1, '2026-11-23T10:00:01.000+07:00', '0001234', "
               "'1', 'k', 'stale', '26900', 'B', 'LO', 1000, 0)")
    db.execute("INSERT INTO outcomes VALUES (1, 1, '2026-11-23T10:00:02.000+07:00', '0001234', "
               "'1', 'cancelled', 1000, 'CL', '')")
    db.commit()
    db.close()
    out = io.StringIO()
    assert run_report(rules(tmp_path, "vi"), DAY.date(), out, env={
        "SSI_GUARD_STATE_DIR": str(state)}) == 0
    assert out.getvalue().splitlines()[1] == "Đã hủy 1 lệnh, giải phóng 0 ₫."
    assert "Số lần ngắt cầu dao: 0" in out.getvalue()
    tables = {r[0] for r in sqlite3.connect(path).execute(
        "SELECT name FROM sqlite_master WHERE type='table'")}
    assert "events" not in tables
    Journal(path).close()  # the daemon opening it migrates it
    tables = {r[0] for r in sqlite3.connect(path).execute(
        "SELECT name FROM sqlite_master WHERE type='table'")}
    assert "events" in tables


def test_a_missing_journal_is_one_line_and_exit_5(tmp_path: Path) -> None:
    state = tmp_path / "nowhere"
    with pytest.raises(JournalError) as caught:
        run_report(rules(tmp_path, "en"), None, io.StringIO(),
                   env={"SSI_GUARD_STATE_DIR": str(state)})
    assert caught.value.exit_code == 5
    message = str(caught.value)
    assert "\n" not in message and str(state / "journal.sqlite3") in message
    assert not state.exists()  # the report creates nothing


def test_a_file_that_is_no_journal_is_exit_5(tmp_path: Path) -> None:
    state = tmp_path / "state"
    state.mkdir(mode=0o700)
    (state / "journal.sqlite3").write_bytes(b"not a database at all" * 100)
    with pytest.raises(JournalError, match=r"journal\.sqlite3: file is not a database") as caught:
        run_report(rules(tmp_path, "en"), None, io.StringIO(),
                   env={"SSI_GUARD_STATE_DIR": str(state)})
    assert caught.value.exit_code == 5
    other = tmp_path / "other"
    other.mkdir(mode=0o700)
    sqlite3.connect(other / "journal.sqlite3").execute("CREATE TABLE t (x)").connection.close()
    with pytest.raises(JournalError, match="not an ssi-guard journal"):
        run_report(rules(tmp_path, "en"), None, io.StringIO(),
                   env={"SSI_GUARD_STATE_DIR": str(other)})


@pytest.mark.parametrize("text", ["2026-13-01", "23/11/2026", "2026-11-23T10:00", "", "today"])
def test_a_bad_day_names_the_flag(text: str, capsys: pytest.CaptureFixture[str]) -> None:
    parser = argparse.ArgumentParser(prog="ssi-guard report")
    parser.add_argument("--day", type=day_arg)
    with pytest.raises(SystemExit):
        parser.parse_args(["--day", text])
    err = capsys.readouterr().err
    assert f"argument --day: {text!r} is not a day (use YYYY-MM-DD" in err


def test_a_good_day() -> None:
    assert day_arg("2026-11-23") == DAY.date()
